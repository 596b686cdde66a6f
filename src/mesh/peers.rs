//! The peer table: every node this one knows, by node id, with its key, URL and health
//! (last seen, latency, consecutive failures, backoff), plus URLs heard of through gossip
//! but not yet contacted. Pure bookkeeping: no I/O, no clocks of its own (callers pass
//! `now`), so every rule here is unit-tested.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::clock::Instant;

use ed25519_dalek::VerifyingKey;

use crate::id::BlockId;

/// Most peers kept; announcements of more are ignored (memory and gossip bounded).
pub const MAX_PEERS: usize = 1024;

/// Most gossiped URLs waiting to be contacted.
pub const MAX_CANDIDATES: usize = 256;

/// Longest backoff after repeated failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Weight of the newest sample in the latency average.
const LATENCY_WEIGHT: f64 = 0.2;

/// A known peer.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Node id (SHA-256 of its identity block).
    pub id: BlockId,
    /// Its ed25519 key, from the identity block.
    pub key: VerifyingKey,
    /// Base URL it is reached at.
    pub url: String,
    /// Last successful exchange in either direction.
    pub last_seen: Instant,
    /// Average latency of successful requests to it, in ms (None before the first).
    pub latency_ms: Option<f64>,
    /// Failures since the last success.
    pub failures: u32,
    /// Not asked again before this.
    pub backoff_until: Option<Instant>,
    /// Requests sent to it.
    pub requests: u64,
    /// Body bytes received from it.
    pub bytes_in: u64,
    /// Body bytes sent to it.
    pub bytes_out: u64,
}

/// Health of a peer as shown in `/peers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Its last exchange succeeded.
    Ok,
    /// Recent requests failed; still asked.
    Failing,
    /// Failed repeatedly; not asked until its backoff ends.
    Backoff,
}

impl Peer {
    /// Health at `now`.
    pub fn health(&self, now: Instant) -> Health {
        match (self.failures, self.backoff_until) {
            (0, _) => Health::Ok,
            (_, Some(until)) if until > now => Health::Backoff,
            _ => Health::Failing,
        }
    }

    /// True when requests may be sent to it at `now`.
    pub fn usable(&self, now: Instant) -> bool {
        self.backoff_until.is_none_or(|until| until <= now)
    }
}

/// Every peer this node knows.
#[derive(Debug)]
pub struct PeerTable {
    me: BlockId,
    peers: HashMap<BlockId, Peer>,
    /// Each peer's URL, to answer `has_url` without a pass over every peer (gossip
    /// asks it for each URL an announcement names).
    urls: HashMap<String, BlockId>,
    candidates: HashSet<String>,
}

impl PeerTable {
    /// An empty table for node `me`.
    pub fn new(me: BlockId) -> PeerTable {
        PeerTable {
            me,
            peers: HashMap::new(),
            urls: HashMap::new(),
            candidates: HashSet::new(),
        }
    }

    /// Adds a peer or refreshes its URL and key; it counts as seen now. Returns true
    /// when it is new. Refuses this node itself and peers beyond `MAX_PEERS`.
    pub fn upsert(&mut self, id: BlockId, key: VerifyingKey, url: &str, now: Instant) -> bool {
        if id == self.me {
            return false;
        }
        self.candidates.remove(url);
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.key = key;
            if peer.url != url {
                if self.urls.get(&peer.url) == Some(&id) {
                    self.urls.remove(&peer.url);
                }
                url.clone_into(&mut peer.url);
                self.urls.insert(url.to_owned(), id);
            }
            peer.last_seen = now;
            return false;
        }
        if self.peers.len() >= MAX_PEERS {
            return false;
        }
        self.urls.insert(url.to_owned(), id);
        self.peers.insert(
            id,
            Peer {
                id,
                key,
                url: url.to_owned(),
                last_seen: now,
                latency_ms: None,
                failures: 0,
                backoff_until: None,
                requests: 0,
                bytes_in: 0,
                bytes_out: 0,
            },
        );
        true
    }

    /// The peer `id`.
    pub fn get(&self, id: &BlockId) -> Option<&Peer> {
        self.peers.get(id)
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True when no peer is known.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// All peers, in no particular order.
    pub fn all(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    /// True when a peer is known at `url`.
    pub fn has_url(&self, url: &str) -> bool {
        self.urls
            .get(url)
            .is_some_and(|id| self.peers.get(id).is_some_and(|p| p.url == url))
    }

    /// Records a successful request to `id` that took `latency` and moved the given
    /// body bytes.
    pub fn record_ok(
        &mut self,
        id: &BlockId,
        latency: Duration,
        bytes_in: u64,
        bytes_out: u64,
        now: Instant,
    ) {
        if let Some(p) = self.peers.get_mut(id) {
            let ms = latency.as_secs_f64() * 1e3;
            p.latency_ms = Some(match p.latency_ms {
                Some(avg) => avg + LATENCY_WEIGHT * (ms - avg),
                None => ms,
            });
            p.failures = 0;
            p.backoff_until = None;
            p.last_seen = now;
            p.requests += 1;
            p.bytes_in += bytes_in;
            p.bytes_out += bytes_out;
        }
    }

    /// Records a request from `id` (it is alive) that brought `bytes_in` body bytes.
    pub fn record_heard(&mut self, id: &BlockId, bytes_in: u64, now: Instant) {
        if let Some(p) = self.peers.get_mut(id) {
            p.last_seen = now;
            p.bytes_in += bytes_in;
        }
    }

    /// Counts body bytes sent to `id` in answers to its requests.
    pub fn record_sent(&mut self, id: &BlockId, bytes_out: u64) {
        if let Some(p) = self.peers.get_mut(id) {
            p.bytes_out += bytes_out;
        }
    }

    /// Records a failed request to `id`: from the second failure in a row it is not
    /// asked for 2^(failures - 1) seconds, at most `MAX_BACKOFF`.
    pub fn record_failure(&mut self, id: &BlockId, now: Instant) {
        if let Some(p) = self.peers.get_mut(id) {
            p.failures = p.failures.saturating_add(1);
            p.requests += 1;
            if p.failures >= 2 {
                let secs = 1u64 << (p.failures - 2).min(6);
                p.backoff_until = Some(now + Duration::from_secs(secs).min(MAX_BACKOFF));
            }
        }
    }

    /// Drops peers that failed and have not been seen for `grace`; returns their ids.
    pub fn expire(&mut self, grace: Duration, now: Instant) -> Vec<BlockId> {
        let dead: Vec<BlockId> = self
            .peers
            .values()
            .filter(|p| p.failures > 0 && now.saturating_duration_since(p.last_seen) >= grace)
            .map(|p| p.id)
            .collect();
        for id in &dead {
            if let Some(peer) = self.peers.remove(id)
                && self.urls.get(&peer.url) == Some(id)
            {
                self.urls.remove(&peer.url);
            }
        }
        dead
    }

    /// Up to `n` usable peers nearest `target` (XOR of ids), nearest first, skipping
    /// `exclude`.
    pub fn nearest(
        &self,
        target: &BlockId,
        n: usize,
        exclude: &[BlockId],
        now: Instant,
    ) -> Vec<&Peer> {
        let mut found: Vec<&Peer> = self
            .peers
            .values()
            .filter(|p| p.usable(now) && !exclude.contains(&p.id))
            .collect();
        found.sort_unstable_by_key(|p| p.id.distance(target));
        found.truncate(n);
        found
    }

    /// True when fewer than `replicas` known nodes (peers and this node) are nearer to
    /// `block` than `peer` is: `peer` is one of the block's homes.
    /// Failing peers do not count: their blocks move on to the next nearest nodes
    /// without waiting for the peers to be dropped.
    pub fn is_home(&self, block: &BlockId, peer: &BlockId, replicas: usize) -> bool {
        if self.peers.get(peer).is_some_and(|p| p.failures > 0) {
            return false;
        }
        let d = peer.distance(block);
        let nearer = std::iter::once(&self.me)
            .chain(self.healthy())
            .filter(|other| *other != peer && other.distance(block) < d)
            .take(replicas)
            .count();
        nearer < replicas
    }

    /// The block's homes: the `replicas` nodes nearest `block` among this node and the
    /// peers whose last exchange worked, nearest first (this node may be one).
    pub fn homes(&self, block: &BlockId, replicas: usize) -> Vec<BlockId> {
        let mut all: Vec<BlockId> = std::iter::once(&self.me)
            .chain(self.healthy())
            .copied()
            .collect();
        all.sort_unstable_by_key(|id| id.distance(block));
        all.truncate(replicas);
        all
    }

    /// This node and the peers whose last exchange worked, sorted for the many
    /// nearest-by-XOR questions of one round (pushes, repair). Built in O(n log n);
    /// each question then costs about O(k log n) instead of a pass over every peer.
    pub fn ring(&self) -> Ring {
        Ring::new(
            std::iter::once(self.me)
                .chain(self.healthy().copied())
                .collect(),
        )
    }

    /// Ids of peers whose last exchange succeeded.
    fn healthy(&self) -> impl Iterator<Item = &BlockId> {
        self.peers
            .values()
            .filter(|p| p.failures == 0)
            .map(|p| &p.id)
    }

    /// Width in bits of this node's own region: blocks sharing more leading bits with
    /// it than its `replicas`-th nearest peer does are ones it is a home for (no other
    /// peer is nearer). 0 (everything) with fewer peers than that. Failing peers do
    /// not count.
    pub fn near_bits(&self, replicas: usize) -> u32 {
        let mut scores: Vec<u32> = self.healthy().map(|p| p.match_score(&self.me)).collect();
        if replicas == 0 || scores.len() < replicas {
            return 0;
        }
        scores.sort_unstable_by(|a, b| b.cmp(a));
        scores[replicas - 1] + 1
    }

    /// Remembers `url`, heard of through gossip, to be contacted later; ignores known
    /// URLs and URLs beyond `MAX_CANDIDATES`.
    pub fn add_candidate(&mut self, url: &str) {
        if self.candidates.len() < MAX_CANDIDATES && !self.has_url(url) {
            self.candidates.insert(url.to_owned());
        }
    }

    /// Takes up to `n` candidate URLs to contact.
    pub fn take_candidates(&mut self, n: usize) -> Vec<String> {
        let taken: Vec<String> = self.candidates.iter().take(n).cloned().collect();
        for url in &taken {
            self.candidates.remove(url);
        }
        taken
    }
}

/// Node ids sorted ascending: ids sharing a prefix are a contiguous run, so the ids
/// nearest a target by XOR are found by descending the implicit binary trie, the run on
/// the target's side of each bit first, as the store's index finds nearest blocks.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    ids: Vec<BlockId>,
}

/// Runs at most this long are sorted by distance outright instead of split further.
const RING_LEAF: usize = 16;

impl Ring {
    /// A ring of `ids` (any order; duplicates dropped).
    pub fn new(mut ids: Vec<BlockId>) -> Ring {
        ids.sort_unstable();
        ids.dedup();
        Ring { ids }
    }

    /// Number of nodes on the ring.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True with no node at all.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Up to `n` ids nearest `target` by XOR, nearest first.
    pub fn nearest(&self, target: &BlockId, n: usize) -> Vec<BlockId> {
        let mut out = Vec::with_capacity(n.min(self.ids.len()));
        collect_nearest(&self.ids, target, 0, n, &mut out);
        out
    }

    /// Whether `node` is among the `replicas` ids nearest `block`: one of its homes.
    pub fn is_home(&self, block: &BlockId, node: &BlockId, replicas: usize) -> bool {
        self.nearest(block, replicas).contains(node)
    }
}

/// Appends the ids of `run` (sorted, all sharing their first `depth` bits) in order of
/// distance to `target` until `out` holds `n`.
fn collect_nearest(
    run: &[BlockId],
    target: &BlockId,
    depth: u32,
    n: usize,
    out: &mut Vec<BlockId>,
) {
    if out.len() >= n || run.is_empty() {
        return;
    }
    if run.len() <= RING_LEAF || depth >= 256 {
        // Each distance computed once, as two integers that compare fast.
        let mut sorted: Vec<((u128, u128), BlockId)> = run
            .iter()
            .map(|id| (id.distance_key(target), *id))
            .collect();
        sorted.sort_unstable_by_key(|(key, _)| *key);
        let want = n - out.len();
        out.extend(sorted.into_iter().take(want).map(|(_, id)| id));
        return;
    }
    // Every id of the half that agrees with `target` on bit `depth` is nearer than any
    // id of the other half.
    let split = run.partition_point(|id| !id.bit(depth));
    let (zeros, ones) = run.split_at(split);
    let (near, far) = if target.bit(depth) {
        (ones, zeros)
    } else {
        (zeros, ones)
    };
    collect_nearest(near, target, depth + 1, n, out);
    collect_nearest(far, target, depth + 1, n, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn key() -> VerifyingKey {
        Identity::from_seed(&[1; 32]).public_key()
    }

    fn id(first: u8) -> BlockId {
        let mut b = [0u8; 32];
        b[0] = first;
        BlockId(b)
    }

    #[test]
    fn nearest_orders_by_xor_and_skips_backoff_and_excluded() {
        let now = Instant::now();
        let mut t = PeerTable::new(id(0xff));
        for first in [0x10, 0x20, 0x30, 0x80] {
            assert!(t.upsert(id(first), key(), &format!("http://p{first}"), now));
        }
        assert!(!t.upsert(id(0xff), key(), "http://me", now), "never itself");
        let near: Vec<BlockId> = t
            .nearest(&id(0x21), 3, &[], now)
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(near, vec![id(0x20), id(0x30), id(0x10)]);
        t.record_failure(&id(0x20), now);
        assert_eq!(t.get(&id(0x20)).unwrap().health(now), Health::Failing);
        t.record_failure(&id(0x20), now);
        assert_eq!(t.get(&id(0x20)).unwrap().health(now), Health::Backoff);
        let near: Vec<BlockId> = t
            .nearest(&id(0x21), 2, &[id(0x30)], now)
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(near, vec![id(0x10), id(0x80)]);
        // After the backoff it is asked again; a success clears it.
        let later = now + Duration::from_secs(2);
        assert_eq!(t.nearest(&id(0x21), 1, &[], later)[0].id, id(0x20));
        t.record_ok(&id(0x20), Duration::from_millis(4), 10, 0, later);
        assert_eq!(t.get(&id(0x20)).unwrap().health(later), Health::Ok);
    }

    #[test]
    fn expire_drops_only_failing_quiet_peers() {
        let now = Instant::now();
        let mut t = PeerTable::new(id(0));
        t.upsert(id(1), key(), "http://a", now);
        t.upsert(id(2), key(), "http://b", now);
        t.record_failure(&id(1), now);
        let later = now + Duration::from_secs(61);
        assert_eq!(t.expire(Duration::from_secs(60), later), vec![id(1)]);
        assert_eq!(t.len(), 1, "a quiet but healthy peer stays");
    }

    #[test]
    fn homes_and_near_bits_follow_the_known_nodes() {
        let now = Instant::now();
        let mut t = PeerTable::new(id(0x00));
        for first in [0x40, 0x80, 0xc0] {
            t.upsert(id(first), key(), "http://x", now);
        }
        let block = id(0x41);
        assert!(t.is_home(&block, &id(0x40), 1));
        assert!(!t.is_home(&block, &id(0xc0), 1));
        assert!(t.is_home(&block, &id(0x00), 2), "0x00 is second nearest");
        assert!(!t.is_home(&block, &id(0x80), 2));
        // Nearest peer 0x40 shares 1 bit with 0x00; second nearest (0x80 or 0xc0) 0.
        assert_eq!(t.near_bits(1), 2);
        assert_eq!(t.near_bits(2), 1);
        assert_eq!(t.near_bits(4), 0);
        // A failing peer is not a home: the next nearest node takes its place.
        t.record_failure(&id(0x40), now);
        assert!(!t.is_home(&block, &id(0x40), 1));
        assert!(t.is_home(&block, &id(0x00), 1));
        assert_eq!(t.near_bits(1), 1);
    }

    /// The ring answers exactly what a full sort by distance answers, for random ids
    /// and targets, with runs both shorter and longer than a leaf.
    #[test]
    fn ring_nearest_matches_a_full_sort() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            BlockId::of(&seed.to_le_bytes())
        };
        for size in [0usize, 1, 3, 16, 17, 200, 1000] {
            let ids: Vec<BlockId> = (0..size).map(|_| next()).collect();
            let ring = Ring::new(ids.clone());
            assert_eq!(ring.len(), size);
            for _ in 0..50 {
                let target = next();
                for n in [1usize, 3, 8, 40] {
                    let mut sorted = ids.clone();
                    sorted.sort_unstable_by_key(|id| id.distance(&target));
                    sorted.truncate(n);
                    assert_eq!(ring.nearest(&target, n), sorted, "size {size}, n {n}");
                }
            }
        }
        // A target equal to a member finds it first.
        let ids: Vec<BlockId> = (0..100).map(|_| next()).collect();
        let ring = Ring::new(ids.clone());
        assert_eq!(ring.nearest(&ids[42], 1), vec![ids[42]]);
    }

    /// The table's ring is this node plus the healthy peers, and its homes agree with
    /// the table's own answers.
    #[test]
    fn the_ring_holds_this_node_and_healthy_peers() {
        let now = Instant::now();
        let mut t = PeerTable::new(id(0x00));
        for first in [0x40, 0x80, 0xc0] {
            t.upsert(id(first), key(), "http://x", now);
        }
        t.record_failure(&id(0x40), now);
        let ring = t.ring();
        assert_eq!(ring.len(), 3);
        let block = id(0x41);
        assert_eq!(ring.nearest(&block, 2), t.homes(&block, 2));
        for node in [id(0x00), id(0x40), id(0x80), id(0xc0)] {
            assert_eq!(ring.is_home(&block, &node, 2), t.is_home(&block, &node, 2));
        }
    }

    #[test]
    fn candidates_are_bounded_and_skip_known_urls() {
        let now = Instant::now();
        let mut t = PeerTable::new(id(0));
        t.upsert(id(1), key(), "http://known", now);
        t.add_candidate("http://known");
        t.add_candidate("http://new");
        assert_eq!(t.take_candidates(10), vec!["http://new".to_owned()]);
        for i in 0..MAX_CANDIDATES + 10 {
            t.add_candidate(&format!("http://c{i}"));
        }
        assert_eq!(t.take_candidates(usize::MAX).len(), MAX_CANDIDATES);
    }
}
