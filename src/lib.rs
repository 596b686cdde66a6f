//! libernet: a node of a peer-to-peer, content-addressed block cache.
//!
//! Layout, from the bottom up (each module knows only those above it in this list):
//!
//! - [`id`]: block ids (SHA-256), hex, XOR distance, match score. Pure.
//! - [`cid`]: IPFS CIDv1 (raw, sha2-256) of blocks, parsed strictly and printed. Pure.
//! - [`proto`]: the wire contract's header names and JSON bodies (`/node`, `/peers`,
//!   announcements), shared by server, client and mesh. Pure.
//! - [`codec`]: content to encrypted blocks and back; near-id placement. Pure.
//! - [`bundle`]: manifests, directory trees as blocks, path lookup, restore.
//! - [`clock`]: the protocol's time (`now`, `unix_now`), simulated under a paused
//!   tokio clock.
//! - [`fsutil`]: private files and directory fsync.
//! - [`memory`]: giving the heap's free memory back to the OS once a burst is over.
//! - [`identity`]: the node's ed25519 key and identity block; RFC 9421 signature bases,
//!   signing and verification. No HTTP types.
//! - [`store`]: block files, the in-memory index, quota, lock file, scrub. No HTTP.
//! - [`mesh`]: the seam to other nodes, called on a miss.
//! - [`config`]: flags and config file, validated once.
//! - [`node`]: use cases over store, identity and mesh; waiting for arrivals; metrics.
//! - [`http`]: the server: routes, handlers, response signing, error mapping. The only
//!   server-side module that touches hyper.
//! - [`sim`]: many nodes in one process over a simulated network and clock: the
//!   mesh at scale, deterministic, for tests and benchmarks.
//! - [`client`]: an HTTP client that verifies response signatures and digests.
//! - [`transfer`]: the client's use cases: put files and trees, get them back.
//! - [`backup`]: backup sets: runs, the passphrase-found index, restore, verify.
//! - [`cli`]: the command line.

pub mod arrivals;
pub mod backup;
pub mod bundle;
pub mod cid;
pub mod cli;
pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
pub mod fsutil;
pub mod http;
pub mod id;
pub mod identity;
pub mod memory;
pub mod mesh;
pub mod node;
pub mod proto;
pub mod sim;
pub mod store;
pub mod transfer;
