//! Pushes (DESIGN 6). Each round a node offers every peer the local blocks nearest that
//! peer's id that the peer should hold (it is among the `REPLICAS` known nodes nearest
//! the block) and is not known to hold, about `PUSH_PER_PEER` of them; and offers each of
//! its hottest blocks to one more peer that lacks it, so a block's replica count grows
//! while it stays popular. An offer is a `HEAD ?wait=0` and, when the peer lacks the
//! block, a signed `PUT` with the `libernet-push` header: the peer keeps it only if it has
//! room or can evict something worth less (else 507).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::clock::Instant;

use super::link::{Answer, Ask};
use super::{Event, Mesh, REPLICAS};
use crate::clock::unix_now;
use crate::id::BlockId;
use crate::store::ReadOutcome;

/// Blocks offered to each peer per round, nearest its id first.
pub const PUSH_PER_PEER: usize = 10;

/// Local blocks looked at per peer to find those offers, nearest its id first. Wide
/// enough to reach past the blocks the peer already holds (a window of 64 left blocks
/// without all their homes for good: see docs/mesh.md); walking it costs about as much
/// as a LIKE of that many ids.
pub const PUSH_SCAN: usize = 1024;

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
    /// One push round: homes first, then popular blocks.
    pub async fn push_round(self: &Arc<Self>) {
        let now = Instant::now();
        let mut peers: Vec<BlockId> = self
            .peers()
            .all()
            .filter(|p| p.usable(now))
            .map(|p| p.id)
            .collect();
        // In id order, not the peer table's hash order: a simulation replays the same
        // offers in the same order from the same seed.
        peers.sort_unstable();
        let mut offers: Vec<(BlockId, BlockId, f32)> = Vec::new();
        for peer in &peers {
            let nearest = self.store.nearest(peer, PUSH_SCAN);
            let table = self.peers();
            offers.extend(
                nearest
                    .into_iter()
                    .map(|(block, _)| block)
                    .filter(|block| block != peer && !self.known_held(peer, block))
                    .filter(|block| table.is_home(block, peer, REPLICAS))
                    .take(PUSH_PER_PEER)
                    .map(|block| (*peer, block, self.store.heat(&block).unwrap_or(0.0))),
            );
        }
        for (block, heat) in self.store.hottest(HOT_PER_ROUND, HOT_MIN_HEAT) {
            let table = self.peers();
            let target = table
                .nearest(&block, peers.len(), &[], now)
                .into_iter()
                .map(|p| p.id)
                .find(|p| {
                    !self.known_held(p, &block) && !offers.iter().any(|o| o.0 == *p && o.1 == block)
                });
            if let Some(peer) = target {
                offers.push((peer, block, heat));
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (peer, block, heat) in offers {
            let this = self.clone();
            tasks.spawn(async move { this.offer(peer, block, heat).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Offers `block` to `peer`: sends it if the peer lacks it.
    async fn offer(self: Arc<Self>, peer: BlockId, block: BlockId, heat: f32) {
        match self
            .send(&peer, Ask::Has { id: block }, OFFER_TIMEOUT)
            .await
        {
            Ok(Answer::Held) => {
                self.mark_known(&peer, &block, true);
                return;
            }
            Ok(Answer::Missing) => {}
            _ => return,
        }
        let read = crate::store::off_worker(&self.store, move |s| s.read(&block)).await;
        let Ok(Ok(ReadOutcome::Found(bytes))) = read else {
            return;
        };
        let offer = Ask::Offer {
            id: block,
            block: bytes,
            heat,
            keep_until: None,
        };
        match self.send(&peer, offer, OFFER_TIMEOUT).await {
            Ok(Answer::Stored) => {
                self.counters.pushes_sent.fetch_add(1, Ordering::Relaxed);
                self.stats.record(&block, Event::PushOut, unix_now());
                self.mark_known(&peer, &block, true);
            }
            Ok(Answer::Held) => self.mark_known(&peer, &block, true),
            Ok(answer) => {
                self.counters
                    .pushes_declined
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, %block, ?answer, "push declined");
                self.mark_known(&peer, &block, false);
            }
            Err(e) => tracing::debug!(%peer, %block, error = %e, "push failed"),
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
        // Every push was offered first (asked whether it was there).
        let heads = peers.has_asks();
        for (peer, id, _) in &offers {
            assert!(heads.contains(&(*peer, *id)));
        }
        assert_eq!(
            mesh.counters.pushes_sent.load(Ordering::Relaxed) as usize,
            offers.len()
        );
    }
}
