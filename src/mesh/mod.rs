//! The mesh: how a node reaches other nodes (DESIGN 6).
//!
//! This is the seam the node calls when a block is missing locally. The node of this
//! release has no peers, so its mesh is `Standalone`, which asks nobody and says so in
//! the answer; the peer-to-peer mesh implements the same trait and delivers found blocks
//! through the node's normal put path, which wakes every waiter.

use crate::id::BlockId;

/// What a node can ask of the other nodes.
pub trait Mesh: Send + Sync + 'static {
    /// Starts looking for block `id` elsewhere; returns the URLs of the peers asked, for
    /// the status body of a request that times out. Must not block: a lookup runs in the
    /// background and reports an arrival by storing the block in the node.
    fn want(&self, id: BlockId) -> Vec<String>;
}

/// A node with no peers: misses are answered from the local store and arrivals only.
#[derive(Debug, Default, Clone, Copy)]
pub struct Standalone;

impl Mesh for Standalone {
    fn want(&self, _id: BlockId) -> Vec<String> {
        Vec::new()
    }
}
