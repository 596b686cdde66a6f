//! The mesh (DESIGN 6): how a node reaches the others. Owns the peer table, one worker
//! per peer (`link`), lookups of missing blocks (`lookup`), gossip (`gossip`), pushes
//! (`push`), custody repair (`repair`), hand-off of evicted blocks (`handoff`) and
//! per-block statistics (`stats`).
//!
//! A service that finds bytes: the node calls `look_up` on a miss and gets the block
//! (or nothing) back; storing what arrives and waking the requests waiting for it are
//! the node's (one `store_block` path for PUTs, pushes and fetched blocks). Knows the
//! store (to read what it offers) and the identity; never HTTP server types (it speaks
//! the typed peer API of `link`).

#[cfg(test)]
mod fake;
mod gossip;
mod handoff;
pub mod link;
mod lookup;
pub mod peers;
mod push;
pub mod rate;
mod repair;
pub mod stats;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::clock::Instant;

use ed25519_dalek::VerifyingKey;
use lru::LruCache;

pub use peers::{Health, MAX_PEERS, Ring};
pub use repair::{CUSTODY_LEASE, RepairReport};
pub use stats::{BlockStat, Event, Stats};

use crate::client::{ClientError, NodeKey, unix_now};
use crate::id::BlockId;
use crate::identity::{Identity, parse_identity_block};
use crate::store::{ReadOutcome, Store};
use link::{HttpTransport, PeerLink, Transport};
use peers::PeerTable;

/// Forwards a client's request may take: the node asks peers, who may ask theirs, and so
/// on, this many times. Enough for a mesh where every node knows a few dozen others.
pub const MAX_HOPS: u32 = 4;

/// Peers a lookup asks at once.
pub const LOOKUP_PARALLEL: usize = 3;

/// Most peers one lookup asks in all (never a broadcast to every peer).
pub const LOOKUP_MAX_PEERS: usize = 8;

/// Share of its remaining time a node lets the peer it asks wait in turn, so answers
/// come back up the chain before each asker's own deadline.
pub const FORWARD_WAIT_SHARE: f64 = 0.7;

/// Nodes nearest a block (by XOR) that should hold it: push targets and the width of a
/// node's own region.
pub const REPLICAS: usize = 3;

/// Peers asked for their part of a LIKE answer.
pub const LIKE_PEERS: usize = 3;

/// Time peers get to answer a LIKE.
pub const LIKE_TIMEOUT: Duration = Duration::from_secs(1);

/// Request ids remembered to detect forwarding loops.
pub const RECENT_REQUESTS: usize = 8192;

/// How long a request id is remembered.
pub const REQUEST_MEMORY: Duration = Duration::from_secs(60);

/// Where a request for a block comes from, and how far it may travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The peer that forwarded it, if any (never asked back).
    pub from: Option<BlockId>,
    /// Forwards still allowed.
    pub hops: u32,
    /// Request id, shared along the whole chain of forwards.
    pub request: u64,
    /// Whether the request counts toward the block's popularity (a peer's check
    /// before a push does not).
    pub counted: bool,
}

impl Origin {
    /// A request from a client of this node: the full hop budget and a fresh id.
    pub fn client() -> Origin {
        Origin {
            from: None,
            hops: MAX_HOPS,
            request: next_request_id(),
            counted: true,
        }
    }
}

/// A request id unique to this process (a counter) and, with its random start, very
/// likely across the mesh. No system call per request.
fn next_request_id() -> u64 {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without OS randomness, the clock still separates processes.
        if crate::fsutil::random_bytes(&mut bytes).is_err() {
            bytes = unix_now().to_le_bytes();
        }
        u64::from_le_bytes(bytes)
    });
    // An odd multiplier makes successive ids differ in every bit position.
    start
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Settings of the mesh, from the node's config.
#[derive(Debug, Clone)]
pub struct MeshSettings {
    /// Seed URLs.
    pub seeds: Vec<String>,
    /// Pause between gossip rounds; zero: seeds only.
    pub gossip_interval: Duration,
    /// Pause between push rounds; zero: no pushes.
    pub push_interval: Duration,
    /// Pause between repair rounds; zero: no repair.
    pub repair_interval: Duration,
}

/// Errors of mesh operations.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// A peer's request or announcement is unacceptable.
    #[error("{0}")]
    BadPeer(String),
    /// Talking to a peer failed.
    #[error("peer {url}: {source}")]
    Peer {
        /// The peer.
        url: String,
        /// What went wrong.
        source: link::LinkError,
    },
}

impl From<(String, ClientError)> for MeshError {
    fn from((url, e): (String, ClientError)) -> MeshError {
        MeshError::Peer {
            url,
            source: link::LinkError::Client(e),
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Lookups started here.
    pub lookups: AtomicU64,
    /// Lookups that found the block.
    pub lookups_found: AtomicU64,
    /// Lookups that asked every peer they could and found nothing.
    pub lookups_failed: AtomicU64,
    /// Sum of hops of found lookups (hops / found = mean path length).
    pub lookup_hops: AtomicU64,
    /// Found lookups by hop count: 1, 2, 3, 4 or more.
    pub hops_histogram: [AtomicU64; 4],
    /// Peers asked by lookups.
    pub asks: AtomicU64,
    /// Forwarded requests received from peers.
    pub forwarded_in: AtomicU64,
    /// Forwarded requests answered locally because their id was seen already.
    pub loops: AtomicU64,
    /// Blocks fetched from peers (pulls).
    pub downloads: AtomicU64,
    /// Pushes sent and kept by the peer.
    pub pushes_sent: AtomicU64,
    /// Pushes the peer declined.
    pub pushes_declined: AtomicU64,
    /// Pushes received and kept.
    pub pushes_received: AtomicU64,
    /// Pushes received and declined.
    pub pushes_refused: AtomicU64,
    /// Announcements sent.
    pub gossip_sent: AtomicU64,
    /// Announcements received.
    pub gossip_received: AtomicU64,
    /// Signed requests refused (forged, stale, unknown key).
    pub peer_auth_refused: AtomicU64,
    /// Peers dropped after failing for a grace period.
    pub peers_dropped: AtomicU64,
    /// Evicted blocks handed off: a peer had them or kept them.
    pub handoffs_placed: AtomicU64,
    /// Evicted blocks that no peer offered took.
    pub handoffs_failed: AtomicU64,
    /// Evicted blocks dropped because the hand-off queue was full.
    pub handoffs_dropped: AtomicU64,
    /// Kept blocks checked by repair rounds.
    pub repair_checks: AtomicU64,
    /// Custody copies repair rounds placed.
    pub repair_copies: AtomicU64,
    /// Bytes of custody copies repair rounds sent.
    pub repair_bytes: AtomicU64,
}

/// What was learned about a peer and a block, and when.
#[derive(Debug, Clone, Copy)]
struct Learned {
    at: Instant,
    /// It holds the block (else it declined a push of it).
    held: bool,
}

/// A peer's link, as the transport made it.
type SharedLink = Arc<dyn PeerLink>;

/// The node's view of the mesh.
pub struct Mesh {
    identity: Arc<Identity>,
    url: String,
    store: Arc<Store>,
    peers: RwLock<PeerTable>,
    links: Mutex<HashMap<BlockId, (String, SharedLink)>>,
    transport: Arc<dyn Transport>,
    stats: Stats,
    counters: Counters,
    settings: MeshSettings,
    recent: Mutex<LruCache<u64, Instant>>,
    /// Per peer: blocks it is known to hold (or declined), and when that was learned.
    known: Mutex<HashMap<BlockId, LruCache<BlockId, Learned>>>,
    rng: Mutex<u64>,
    /// How joining each `--peer` seed went (`GET /peers`).
    seeds: Mutex<HashMap<String, gossip::SeedState>>,
    /// Evicted blocks waiting to be handed off.
    handoffs: Arc<handoff::HandoffQueue>,
    /// Where the repair rounds are in the lists of kept blocks.
    repair_cursor: Mutex<repair::RepairCursor>,
    /// Where the push sweep is, and which peers had their first scan.
    push_cursor: Mutex<push::PushCursor>,
}

impl Mesh {
    /// The mesh of the node `identity` reached at `url`, over `store`. Call `start` to
    /// join the seeds and run gossip and pushes.
    pub fn new(
        identity: Arc<Identity>,
        url: String,
        store: Arc<Store>,
        settings: MeshSettings,
    ) -> Arc<Mesh> {
        Mesh::with_transport(identity, url, store, settings, Arc::new(HttpTransport))
    }

    /// `new`, reaching peers through `transport` instead of HTTP.
    pub fn with_transport(
        identity: Arc<Identity>,
        url: String,
        store: Arc<Store>,
        settings: MeshSettings,
        transport: Arc<dyn Transport>,
    ) -> Arc<Mesh> {
        let me = identity.id();
        let mut seed = [0u8; 8];
        let _ = crate::fsutil::random_bytes(&mut seed);
        Arc::new(Mesh {
            identity,
            url,
            store,
            peers: RwLock::new(PeerTable::new(me)),
            links: Mutex::new(HashMap::new()),
            transport,
            stats: Stats::default(),
            counters: Counters::default(),
            settings,
            recent: Mutex::new(LruCache::new(
                NonZeroUsize::new(RECENT_REQUESTS).unwrap_or(NonZeroUsize::MIN),
            )),
            known: Mutex::new(HashMap::new()),
            rng: Mutex::new(u64::from_le_bytes(seed) | 1),
            seeds: Mutex::new(HashMap::new()),
            handoffs: Arc::default(),
            repair_cursor: Mutex::default(),
            push_cursor: Mutex::default(),
        })
    }

    /// Starts joining the seeds, gossip, push rounds and hand-off as background tasks.
    /// They stop when the last other reference to the mesh is dropped.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(gossip::run(Arc::downgrade(self)));
        tokio::spawn(handoff::run(Arc::downgrade(self)));
        if !self.settings.push_interval.is_zero() {
            tokio::spawn(push::run(Arc::downgrade(self)));
        }
        if !self.settings.repair_interval.is_zero() {
            tokio::spawn(repair::run(Arc::downgrade(self)));
        }
    }

    /// Per-block statistics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// This node's id.
    pub fn me(&self) -> BlockId {
        self.identity.id()
    }

    /// The key of node `id` if it is a peer or its identity block is held here.
    pub fn peer_key(&self, id: &BlockId) -> Option<VerifyingKey> {
        if let Some(p) = self.peers().get(id) {
            return Some(p.key);
        }
        match self.store.read(id) {
            Ok(ReadOutcome::Found(block)) => parse_identity_block(&block).ok(),
            _ => None,
        }
    }

    /// Notes a request from peer `id` that brought `bytes_in` body bytes and got
    /// `bytes_out` back.
    pub fn heard_from(&self, id: &BlockId, bytes_in: u64, bytes_out: u64) {
        let mut peers = self.peers_mut();
        peers.record_heard(id, bytes_in, Instant::now());
        peers.record_sent(id, bytes_out);
    }

    /// Records that a forwarded request `request` is being handled here; false when it
    /// was seen in the last `REQUEST_MEMORY` (a loop: answer locally).
    pub fn first_sight(&self, request: u64) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match recent.get(&request) {
            Some(at) if now.duration_since(*at) < REQUEST_MEMORY => false,
            _ => {
                recent.put(request, now);
                true
            }
        }
    }

    /// The origin of a request from peer `from` allowed `hops` forwards (capped at
    /// `MAX_HOPS`) with the request id `request`: a request id seen before means a loop,
    /// and then no further hops.
    pub fn forwarded(
        &self,
        from: BlockId,
        hops: u32,
        request: Option<u64>,
        counted: bool,
    ) -> Origin {
        let mut origin = Origin {
            from: Some(from),
            hops: hops.min(MAX_HOPS),
            counted,
            ..Origin::client()
        };
        if let Some(id) = request {
            origin.request = id;
            self.counters.forwarded_in.fetch_add(1, Ordering::Relaxed);
            if !self.first_sight(id) {
                self.counters.loops.fetch_add(1, Ordering::Relaxed);
                origin.hops = 0;
            }
        }
        origin
    }

    /// Counts a refused peer signature.
    pub fn refused_signature(&self) {
        self.counters
            .peer_auth_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Adds (or refreshes) a verified peer: a worker for it, and its identity block
    /// protected here so its key stays known.
    fn add_peer(&self, node: NodeKey, url: &str) -> bool {
        let new = self
            .peers_mut()
            .upsert(node.id, node.key, url, Instant::now());
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let stale = links.get(&node.id).is_none_or(|(u, _)| u != url);
        if stale && self.peers().get(&node.id).is_some() {
            let link = self.transport.link(url, node, self.identity.clone());
            links.insert(node.id, (url.to_owned(), link));
        }
        drop(links);
        if new {
            self.store.protect(node.id);
            tracing::info!(peer = %node.id, url, "peer added");
        }
        new
    }

    /// Forgets peers that have failed for `grace`.
    fn expire_peers(&self, grace: Duration) {
        let dead = self.peers_mut().expire(grace, Instant::now());
        for id in dead {
            self.links
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            self.known
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            self.store.unprotect(&id);
            self.counters.peers_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer = %id, "peer dropped after failing for the grace period");
        }
    }

    /// The worker of peer `id`.
    fn link(&self, id: &BlockId) -> Option<Arc<dyn PeerLink>> {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .map(|(_, l)| l.clone())
    }

    /// Sends `ask` to peer `id` (within `timeout`), recording its health and traffic.
    async fn send(
        &self,
        id: &BlockId,
        ask: link::Ask,
        timeout: Duration,
    ) -> Result<link::Answer, link::LinkError> {
        let link = self.link(id).ok_or(link::LinkError::Closed)?;
        let sent = ask.body_len();
        let started = Instant::now();
        let result = link.send(ask, timeout).await;
        let mut peers = self.peers_mut();
        match &result {
            Ok(answer) => peers.record_ok(
                id,
                started.elapsed(),
                answer.body_len(),
                sent,
                Instant::now(),
            ),
            // A busy queue says nothing about the peer's health.
            Err(link::LinkError::Busy) => {}
            Err(_) => peers.record_failure(id, Instant::now()),
        }
        result
    }

    /// Sends `GET path` to every peer at once (at most `MAX_PEERS`), each within
    /// `timeout`; every peer's id, URL and answer (or why there is none), in the order of
    /// `/peers`. Answers are verified as every peer answer is.
    pub async fn ask_every_peer(
        self: &Arc<Self>,
        path: &str,
        timeout: Duration,
    ) -> Vec<(BlockId, String, Result<crate::client::Reply, String>)> {
        let peers: Vec<(BlockId, String)> = {
            let me = self.me();
            let table = self.peers();
            let mut rows: Vec<(BlockId, String)> =
                table.all().map(|p| (p.id, p.url.clone())).collect();
            rows.sort_unstable_by_key(|(id, _)| id.distance(&me));
            rows
        };
        let mut tasks = tokio::task::JoinSet::new();
        for (index, (id, _)) in peers.iter().enumerate() {
            let (mesh, id, ask) = (
                self.clone(),
                *id,
                link::Ask::Read {
                    path: path.to_owned(),
                },
            );
            tasks.spawn(async move {
                let answer = match mesh.send(&id, ask, timeout).await {
                    Ok(link::Answer::Raw(reply)) => Ok(reply),
                    Ok(other) => Err(link::LinkError::Unexpected(format!("{other:?}"))),
                    Err(e) => Err(e),
                };
                (index, answer)
            });
        }
        let mut answers: Vec<Option<Result<crate::client::Reply, String>>> =
            peers.iter().map(|_| None).collect();
        while let Some(done) = tasks.join_next().await {
            if let Ok((index, answer)) = done {
                answers[index] = Some(answer.map_err(|e| e.to_string()));
            }
        }
        peers
            .into_iter()
            .zip(answers)
            .map(|((id, url), answer)| {
                (
                    id,
                    url,
                    answer.unwrap_or_else(|| Err("internal task failed".into())),
                )
            })
            .collect()
    }

    /// Whether peer `peer` is known to hold `block` (or to have declined it) recently.
    fn known_held(&self, peer: &BlockId, block: &BlockId) -> bool {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known
            .get_mut(peer)
            .and_then(|k| k.get(block).copied())
            .is_some_and(|learned| learned.at.elapsed() < push::KNOWN_TTL)
    }

    /// Remembers that `peer` holds `block` (`held`) or declined it.
    fn mark_known(&self, peer: &BlockId, block: &BlockId, held: bool) {
        let mut all = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let known = all
            .entry(*peer)
            // Unbounded and trimmed by hand: `LruCache::new` would allocate room for
            // all `KNOWN_PER_PEER` entries of every peer up front.
            .or_insert_with(LruCache::unbounded);
        known.put(
            *block,
            Learned {
                at: Instant::now(),
                held,
            },
        );
        if known.len() > push::KNOWN_PER_PEER {
            known.pop_lru();
        }
    }

    /// Notes that peer `peer` holds `block` (it pushed the block here).
    pub fn note_holder(&self, peer: &BlockId, block: &BlockId) {
        self.mark_known(peer, block, true);
    }

    /// How many peers are known to hold `block`: they answered it, pushed it here or
    /// kept it when it was pushed to them, within `KNOWN_TTL`. A lower bound: peers
    /// that got it elsewhere are not counted.
    pub fn known_holders(&self, block: &BlockId) -> usize {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known
            .values()
            .filter_map(|k| k.peek(block))
            .filter(|learned| learned.held && learned.at.elapsed() < push::KNOWN_TTL)
            .count()
    }

    /// Restarts the mesh's own random choices (gossip targets, push picks) from `seed`
    /// instead of OS randomness, so that a simulation replays them run after run.
    pub fn seed_random(&self, seed: u64) {
        *self.rng.lock().unwrap_or_else(PoisonError::into_inner) = seed | 1;
    }

    fn random(&self) -> u64 {
        let mut x = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    fn peers(&self) -> RwLockReadGuard<'_, PeerTable> {
        self.peers.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn peers_mut(&self) -> RwLockWriteGuard<'_, PeerTable> {
        self.peers.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Prometheus lines for the mesh: counters, peer gauges, per-peer traffic.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let c = &self.counters;
        let counters: [(&str, &AtomicU64, &str); 24] = [
            (
                "lookups_sent_total",
                &c.lookups,
                "Lookups of missing blocks started here.",
            ),
            (
                "lookups_found_total",
                &c.lookups_found,
                "Lookups that found the block.",
            ),
            (
                "lookups_failed_total",
                &c.lookups_failed,
                "Lookups that found nothing.",
            ),
            (
                "lookup_hops_total",
                &c.lookup_hops,
                "Sum of hops of found lookups.",
            ),
            ("lookup_asks_total", &c.asks, "Peers asked by lookups."),
            (
                "forwarded_in_total",
                &c.forwarded_in,
                "Forwarded requests from peers.",
            ),
            (
                "forward_loops_total",
                &c.loops,
                "Forwarded requests seen before (loops).",
            ),
            (
                "downloads_total",
                &c.downloads,
                "Blocks fetched from peers.",
            ),
            ("pushes_sent_total", &c.pushes_sent, "Pushes kept by peers."),
            (
                "pushes_declined_total",
                &c.pushes_declined,
                "Pushes peers declined.",
            ),
            (
                "pushes_received_total",
                &c.pushes_received,
                "Pushes received and kept.",
            ),
            (
                "pushes_refused_total",
                &c.pushes_refused,
                "Pushes received and declined.",
            ),
            (
                "gossip_sent_total",
                &c.gossip_sent,
                "Announcements sent to peers.",
            ),
            (
                "gossip_received_total",
                &c.gossip_received,
                "Announcements received.",
            ),
            (
                "peer_auth_refused_total",
                &c.peer_auth_refused,
                "Signed requests refused.",
            ),
            (
                "peers_dropped_total",
                &c.peers_dropped,
                "Peers dropped as dead.",
            ),
            (
                "handoffs_placed_total",
                &c.handoffs_placed,
                "Evicted blocks handed off to a peer that has them now.",
            ),
            (
                "handoffs_failed_total",
                &c.handoffs_failed,
                "Evicted blocks no peer offered took.",
            ),
            (
                "handoffs_dropped_total",
                &c.handoffs_dropped,
                "Evicted blocks dropped: the hand-off queue was full.",
            ),
            (
                "handoff_queue_bytes",
                &AtomicU64::new(self.handoffs.bytes()),
                "Bytes of evicted blocks waiting for a hand-off.",
            ),
            (
                "repair_checks_total",
                &c.repair_checks,
                "Kept blocks checked on their homes by repair rounds.",
            ),
            (
                "repair_copies_total",
                &c.repair_copies,
                "Custody copies placed on homes that lacked them.",
            ),
            (
                "repair_bytes_total",
                &c.repair_bytes,
                "Bytes of custody copies sent by repair rounds.",
            ),
            (
                "tracked_blocks",
                &AtomicU64::new(self.stats.len() as u64),
                "Blocks with statistics.",
            ),
        ];
        for (name, value, help) in counters {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP libernet_{name} {help}");
            let _ = writeln!(out, "# TYPE libernet_{name} {kind}");
            let _ = writeln!(out, "libernet_{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP libernet_lookup_hops Found lookups by hops taken."
        );
        let _ = writeln!(out, "# TYPE libernet_lookup_hops counter");
        for (i, h) in c.hops_histogram.iter().enumerate() {
            let label = if i == 3 {
                "4+".to_owned()
            } else {
                (i + 1).to_string()
            };
            let _ = writeln!(
                out,
                "libernet_lookup_hops{{hops=\"{label}\"}} {}",
                h.load(Ordering::Relaxed)
            );
        }
        let now = Instant::now();
        let peers = self.peers();
        let healthy = peers.all().filter(|p| p.health(now) == Health::Ok).count();
        let _ = writeln!(out, "# HELP libernet_peers Known peers.");
        let _ = writeln!(out, "# TYPE libernet_peers gauge");
        let _ = writeln!(out, "libernet_peers {}", peers.len());
        let _ = writeln!(
            out,
            "# HELP libernet_peers_healthy Peers whose last exchange worked."
        );
        let _ = writeln!(out, "# TYPE libernet_peers_healthy gauge");
        let _ = writeln!(out, "libernet_peers_healthy {healthy}");
        type Figure = fn(&peers::Peer) -> u64;
        let per_peer: [(&str, &str, Figure); 4] = [
            (
                "peer_bytes_in_total",
                "Body bytes received from each peer.",
                |p| p.bytes_in,
            ),
            (
                "peer_bytes_out_total",
                "Body bytes sent to each peer.",
                |p| p.bytes_out,
            ),
            ("peer_requests_total", "Requests sent to each peer.", |p| {
                p.requests
            }),
            ("peer_failures", "Consecutive failures of each peer.", |p| {
                u64::from(p.failures)
            }),
        ];
        for (name, help, get) in per_peer {
            let _ = writeln!(out, "# HELP libernet_{name} {help}");
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# TYPE libernet_{name} {kind}");
            for p in peers.all() {
                let short = &p.id.to_string()[..16];
                let _ = writeln!(out, "libernet_{name}{{peer=\"{short}\"}} {}", get(p));
            }
        }
    }
}
