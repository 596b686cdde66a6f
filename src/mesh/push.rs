//! Pushes (DESIGN 6). Each round a node offers its local blocks to their homes (the
//! `REPLICAS` known nodes nearest each block) that are not known to hold them, at most
//! `PUSH_PER_PEER` per peer; and offers each of its hottest blocks to one more peer that
//! lacks it, so a block's replica count grows while it stays popular. An offer is a
//! `HEAD ?wait=0` and, when the peer lacks the block, a signed `PUT` with the
//! `libernet-push` header: the peer keeps it only if it has room or can evict something
//! worth less (else 507).
//!
//! Which blocks a round looks at is bounded, whatever the number of peers or blocks:
//! a sweep walks `PUSH_SWEEP` local blocks in id order from where the last round
//! stopped (the whole store in `blocks / PUSH_SWEEP` rounds), and a peer this node has
//! not scanned yet (one that joined) gets its `PUSH_SCAN` nearest local blocks looked at
//! once, `NEW_PEERS_PER_ROUND` such peers a round. Each look asks the round's `Ring`,
//! so a round costs O(blocks looked at x log peers), not O(peers x blocks x peers).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use crate::clock::Instant;

use super::link::{Answer, Ask};
use super::peers::Ring;
use super::{Event, Mesh, REPLICAS};
use crate::clock::unix_now;
use crate::id::BlockId;
use crate::proto::HoldState;
use crate::store::ReadOutcome;
use bytes::Bytes;

/// Blocks offered to each peer per round.
pub const PUSH_PER_PEER: usize = 10;

/// Local blocks looked at, nearest its id first, for a peer this node has not scanned
/// yet. Wide enough to reach past the blocks the peer already holds (a window of 64
/// left blocks without all their homes for good: see docs/mesh.md); walking it costs
/// about as much as a LIKE of that many ids.
pub const PUSH_SCAN: usize = 1024;

/// Peers new to this node given their `PUSH_SCAN` in one round; more wait for the next.
pub const NEW_PEERS_PER_ROUND: usize = 8;

/// Local blocks the sweep looks at per round, in id order from where it stopped: a
/// store of up to this many blocks is looked at whole every round, as before the
/// sweep; a larger one over several rounds (a million blocks in about 16 minutes at
/// 1024 per 10 s round), so a round's work stays bounded at any store size.
pub const PUSH_SWEEP: usize = 1024;

/// Hottest local blocks offered to one more peer each round.
pub const HOT_PER_ROUND: usize = 16;

/// Heat (decayed requests) a block needs to count as hot.
pub const HOT_MIN_HEAT: f32 = 2.0;

/// How long "peer holds block" (or declined it) is believed without asking again.
pub const KNOWN_TTL: Duration = Duration::from_secs(600);

/// Blocks remembered per peer as held by it.
pub const KNOWN_PER_PEER: usize = 4096;

/// Time allowed for one offer's HEAD or PUT.
const OFFER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the push sweep is, and which peers have had their first scan.
#[derive(Debug, Default)]
pub struct PushCursor {
    /// Last block the sweep finished with; None: start of the id space.
    sweep: Option<BlockId>,
    /// Peers whose nearest blocks were scanned once.
    scanned: HashSet<BlockId>,
}

/// One round's offers: (peer, block, heat), at most `PUSH_PER_PEER` per peer.
#[derive(Default)]
struct Offers {
    list: Vec<(BlockId, BlockId, f32)>,
    chosen: HashSet<(BlockId, BlockId)>,
    per_peer: HashMap<BlockId, usize>,
}

impl Offers {
    /// Whether `peer` can take one more offer this round.
    fn room(&self, peer: &BlockId) -> bool {
        self.per_peer.get(peer).copied().unwrap_or(0) < PUSH_PER_PEER
    }

    /// Adds an offer unless it is already chosen. False when the peer is full.
    fn add(&mut self, peer: BlockId, block: BlockId, heat: f32) -> bool {
        if self.chosen.contains(&(peer, block)) {
            return true;
        }
        if !self.room(&peer) {
            return false;
        }
        self.chosen.insert((peer, block));
        *self.per_peer.entry(peer).or_default() += 1;
        self.list.push((peer, block, heat));
        true
    }
}

/// Runs push rounds until the mesh is dropped.
pub(super) async fn run(mesh: Weak<Mesh>) {
    loop {
        let Some(interval) = mesh.upgrade().map(|m| m.settings.push_interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(m) = mesh.upgrade() else { return };
        m.push_round().await;
    }
}

impl Mesh {
    /// One push round: blocks to their homes first (new peers' scans, then the
    /// sweep), then popular blocks.
    pub async fn push_round(self: &Arc<Self>) {
        let now = Instant::now();
        let (mut peers, ring) = {
            let table = self.peers();
            let peers: Vec<BlockId> = table
                .all()
                .filter(|p| p.usable(now))
                .map(|p| p.id)
                .collect();
            (peers, table.ring())
        };
        // In id order, not the peer table's hash order: a simulation replays the same
        // offers in the same order from the same seed.
        peers.sort_unstable();
        let usable: HashSet<BlockId> = peers.iter().copied().collect();
        let mut offers = Offers::default();
        let new_peers: Vec<BlockId> = {
            let mut cursor = self.push_cursor();
            cursor.scanned.retain(|p| usable.contains(p));
            let fresh: Vec<BlockId> = peers
                .iter()
                .filter(|p| !cursor.scanned.contains(*p))
                .take(NEW_PEERS_PER_ROUND)
                .copied()
                .collect();
            cursor.scanned.extend(fresh.iter().copied());
            fresh
        };
        for peer in &new_peers {
            for (block, _) in self.store.nearest(peer, PUSH_SCAN) {
                if !offers.room(peer) {
                    break;
                }
                if block != *peer
                    && ring.is_home(&block, peer, REPLICAS)
                    && !self.known_held(peer, &block)
                {
                    offers.add(*peer, block, self.store.heat(&block).unwrap_or(0.0));
                }
            }
        }
        self.sweep(&ring, &usable, &mut offers);
        for (block, heat) in self.store.hottest(HOT_PER_ROUND, HOT_MIN_HEAT) {
            // The nearest peer that lacks it: looked for among the 16 nearest, then 8
            // times as many, and so on, so a block few peers hold costs one short look.
            let mut window = 16;
            let target = loop {
                let found = ring
                    .nearest(&block, window)
                    .into_iter()
                    .filter(|p| usable.contains(p))
                    .find(|p| !self.known_held(p, &block) && !offers.chosen.contains(&(*p, block)));
                if found.is_some() || window >= ring.len() {
                    break found;
                }
                window = window.saturating_mul(8);
            };
            if let Some(peer) = target {
                offers.add(peer, block, heat);
            }
        }
        // One batch existence check and one batch of pushes per peer (`offer_many`).
        let mut by_peer: std::collections::BTreeMap<BlockId, Vec<(BlockId, f32)>> =
            std::collections::BTreeMap::new();
        for (peer, block, heat) in offers.list {
            by_peer.entry(peer).or_default().push((block, heat));
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (peer, offered) in by_peer {
            let this = self.clone();
            tasks.spawn(async move { this.offer_many(peer, offered).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// The sweep's part of a round: up to `PUSH_SWEEP` local blocks after the cursor,
    /// each offered to its homes that are usable and not known to hold it. Stops early
    /// at a block a full peer could not be offered, so that block comes first next round.
    fn sweep(&self, ring: &Ring, usable: &HashSet<BlockId>, offers: &mut Offers) {
        let start = self.push_cursor().sweep;
        let blocks = self.store.ids_after(start, PUSH_SWEEP);
        let mut reached = if blocks.len() < PUSH_SWEEP {
            None // the end of the id space: start over next round
        } else {
            blocks.last().copied()
        };
        'blocks: for (i, block) in blocks.iter().enumerate() {
            for home in ring.nearest(block, REPLICAS) {
                if !usable.contains(&home) || self.known_held(&home, block) {
                    continue;
                }
                let heat = self.store.heat(block).unwrap_or(0.0);
                if !offers.add(home, *block, heat) {
                    reached = if i == 0 { start } else { Some(blocks[i - 1]) };
                    break 'blocks;
                }
            }
        }
        self.push_cursor().sweep = reached;
    }

    fn push_cursor(&self) -> std::sync::MutexGuard<'_, PushCursor> {
        self.push_cursor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Offers `offered` to `peer`: one `POST /sha256/holds` asks which it lacks, and
    /// one `POST /sha256/batch` sends those (one group commit there). A peer that does
    /// not know batches (an older node) gets them one `PUT` at a time.
    async fn offer_many(self: Arc<Self>, peer: BlockId, offered: Vec<(BlockId, f32)>) {
        let ids: Vec<BlockId> = offered.iter().map(|(block, _)| *block).collect();
        let check = Ask::Holds {
            ids,
            keep_until: None,
        };
        let states = match self.send(&peer, check, OFFER_TIMEOUT).await {
            Ok(Answer::Holds(states)) if states.len() == offered.len() => states,
            _ => return,
        };
        let mut missing = Vec::new();
        for ((block, heat), state) in offered.into_iter().zip(states) {
            match state {
                HoldState::Absent => missing.push((block, heat)),
                HoldState::Held | HoldState::Kept => self.mark_known(&peer, &block, true),
            }
        }
        if missing.is_empty() {
            return;
        }
        let wanted: Vec<BlockId> = missing.iter().map(|(block, _)| *block).collect();
        let read = crate::store::off_worker(&self.store, move |s| {
            wanted
                .into_iter()
                .filter_map(|id| match s.read(&id) {
                    Ok(ReadOutcome::Found(bytes)) => Some((id, bytes)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(blocks) = read else { return };
        if blocks.is_empty() {
            return;
        }
        let heat = missing
            .iter()
            .filter(|(block, _)| blocks.iter().any(|(id, _)| id == block))
            .map(|(_, heat)| *heat)
            .fold(0.0, f32::max);
        let ask = Ask::OfferMany {
            blocks: blocks.clone(),
            heat,
            keep_until: None,
        };
        match self.send(&peer, ask, OFFER_TIMEOUT).await {
            Ok(Answer::Batch(results)) => {
                for ((block, _), status) in blocks.iter().zip(results) {
                    self.offered(&peer, block, status);
                }
            }
            Ok(Answer::Refused { status, .. }) if matches!(status.as_u16(), 400 | 404 | 405) => {
                for (block, bytes) in blocks {
                    self.offer_one(peer, block, bytes, heat).await;
                }
            }
            Ok(answer) => tracing::debug!(%peer, ?answer, "batch push refused"),
            Err(e) => tracing::debug!(%peer, error = %e, "batch push failed"),
        }
    }

    /// Sends one block to `peer` as a single push.
    async fn offer_one(&self, peer: BlockId, block: BlockId, bytes: Bytes, heat: f32) {
        let offer = Ask::Offer {
            id: block,
            block: bytes,
            heat,
            keep_until: None,
        };
        let status = match self.send(&peer, offer, OFFER_TIMEOUT).await {
            Ok(Answer::Stored) => 201,
            Ok(Answer::Held) => 200,
            Ok(Answer::Refused { status, .. }) => status.as_u16(),
            Ok(_) => 502,
            Err(e) => {
                tracing::debug!(%peer, %block, error = %e, "push failed");
                return;
            }
        };
        self.offered(&peer, &block, status);
    }

    /// Records what `peer` answered (`status`, as to a single push) to `block`.
    fn offered(&self, peer: &BlockId, block: &BlockId, status: u16) {
        match status {
            201 => {
                self.counters.pushes_sent.fetch_add(1, Ordering::Relaxed);
                self.stats.record(block, Event::PushOut, unix_now());
                self.mark_known(peer, block, true);
            }
            200 => self.mark_known(peer, block, true),
            _ => {
                self.counters
                    .pushes_declined
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, %block, status, "push declined");
                self.mark_known(peer, block, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use bytes::Bytes;

    use super::*;
    use crate::mesh::fake::mesh_with;

    /// Whether `node` is among the `REPLICAS` nodes of `all` nearest `block`.
    fn home(all: &[BlockId], node: &BlockId, block: &BlockId) -> bool {
        let d = node.distance(block);
        let nearer = all
            .iter()
            .filter(|o| *o != node && o.distance(block) < d)
            .count();
        nearer < REPLICAS
    }

    /// Push rounds place every local block on each peer that is one of its homes and
    /// lacks it: a `HEAD ?wait=0` first, then one signed-as-push `PUT`; never on a peer
    /// that is not a home, never twice, and not at all where the peer already has it.
    #[tokio::test]
    async fn pushes_place_blocks_on_their_homes_only_and_once() {
        let (mesh, peers_ids, peers) = mesh_with(8);
        let mut all = peers_ids.clone();
        all.push(mesh.me());
        let blocks: Vec<Bytes> = (0..40u32)
            .map(|i| Bytes::from(format!("local block {i}")))
            .collect();
        for b in &blocks {
            mesh.store.put(&BlockId::of(b), b).unwrap();
        }
        // One home already has one of its blocks.
        let (had_peer, had_block) = peers_ids
            .iter()
            .flat_map(|p| blocks.iter().map(move |b| (*p, b.clone())))
            .find(|(p, b)| home(&all, p, &BlockId::of(b)))
            .unwrap();
        peers
            .holds
            .lock()
            .unwrap()
            .insert(had_peer, vec![had_block.clone()]);
        for _ in 0..5 {
            mesh.push_round().await;
        }
        let offers = peers.offers();
        let mut seen = HashSet::new();
        for (peer, id, keep) in &offers {
            assert!(home(&all, peer, id), "{id} pushed to {peer}, not a home");
            assert!(seen.insert((*peer, *id)), "{id} pushed twice to {peer}");
            assert_eq!(*keep, None, "no custody asked for unpinned blocks");
        }
        assert!(!seen.contains(&(had_peer, BlockId::of(&had_block))));
        for b in &blocks {
            let id = BlockId::of(b);
            for p in &peers_ids {
                assert_eq!(peers.holds(p, &id), home(&all, p, &id), "{id} on {p}");
            }
        }
        // Every push was offered first (asked, in a batch, whether it was there).
        let heads = peers.batch_checks();
        for (peer, id, _) in &offers {
            assert!(heads.contains(&(*peer, *id)));
        }
        assert_eq!(
            mesh.counters.pushes_sent.load(Ordering::Relaxed) as usize,
            offers.len()
        );
    }

    /// A store larger than one sweep reaches every home over several rounds, each
    /// round looking at no more than its bound: at most `PUSH_PER_PEER` offers per peer
    /// (and the first rounds' scans of new peers), never a block to a non-home.
    #[tokio::test]
    async fn the_sweep_reaches_every_home_over_rounds_within_its_bounds() {
        let (mesh, peers_ids, peers) = mesh_with(4);
        let mut all = peers_ids.clone();
        all.push(mesh.me());
        let n = PUSH_SWEEP * 2 + 100;
        let blocks: Vec<Bytes> = (0..n)
            .map(|i| Bytes::from(format!("swept block {i}")))
            .collect();
        for b in &blocks {
            mesh.store.put(&BlockId::of(b), b).unwrap();
        }
        let ids: Vec<BlockId> = blocks.iter().map(|b| BlockId::of(b)).collect();
        let expected: usize = ids
            .iter()
            .map(|id| peers_ids.iter().filter(|p| home(&all, p, id)).count())
            .sum();
        let mut rounds = 0;
        loop {
            let before = peers.offers().len();
            mesh.push_round().await;
            rounds += 1;
            let this_round = &peers.offers()[before..];
            for p in &peers_ids {
                let to_p = this_round.iter().filter(|(q, _, _)| q == p).count();
                assert!(to_p <= PUSH_PER_PEER, "{to_p} offers to {p} in one round");
            }
            let held: usize = peers.holds.lock().unwrap().values().map(Vec::len).sum();
            if held == expected {
                break;
            }
            assert!(
                rounds < 2000,
                "homes still lack blocks after {rounds} rounds"
            );
        }
        // Each peer is home to about 3/5 of the blocks: at 10 a round that is far more
        // rounds than a single sweep of the store, so the cursor carried over.
        assert!(rounds > n / PUSH_SWEEP, "{rounds} rounds");
        let offers = peers.offers();
        let offered: HashSet<(BlockId, BlockId)> =
            offers.iter().map(|(p, id, _)| (*p, *id)).collect();
        assert_eq!(
            offered.len(),
            offers.len(),
            "a block offered twice to a peer"
        );
        for (peer, id, _) in &offers {
            assert!(home(&all, peer, id), "{id} offered to {peer}, not a home");
        }
        for id in &ids {
            for p in &peers_ids {
                assert_eq!(
                    offered.contains(&(*p, *id)),
                    home(&all, p, id),
                    "{id} on {p}"
                );
            }
        }
    }
}
