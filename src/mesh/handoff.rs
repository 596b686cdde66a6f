//! Hand-off (issue 14, docs/mesh.md "Hand-off"): blocks this node evicts that are worth
//! keeping somewhere (in its own region, or recently requested: the store decides, see
//! `store::Put::handed`) are offered to other nodes instead of vanishing. Each goes to
//! the usable peers nearest the block by XOR that are not known to hold it, nearest
//! first, at most `HANDOFF_TRIES` of them: a `Has` (held there: placed), then an `Offer`
//! (kept: placed; refused or failed: the next peer). A block no peer takes is lost here,
//! as it was before hand-off existed.
//!
//! The honest limit: the store deletes the file when it evicts the block, and the bytes
//! wait in this queue, in memory, until a peer takes them. A crash in that window, or a
//! queue already holding `HANDOFF_QUEUE_BYTES` (the block is then dropped and counted),
//! loses that copy. Only cached copies are ever at stake: pinned blocks and blocks in
//! custody are never evicted, so never handed off.
//!
//! Owns the queue and the placing task; knows the peer table, the typed peer API and the
//! counters, never the store's files.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::link::{Answer, Ask};
use super::{Event, Mesh, push};
use crate::clock::{Instant, unix_now};
use crate::id::BlockId;
use crate::store::Handed;

/// Most bytes of evicted blocks waiting for a place (queued or being offered). A put
/// hands off at most about two blocks' worth (`store::HANDOFF_BYTES_PER_PUT`), so this
/// absorbs a burst of eight full-size evictions per in-flight offer while keeping the
/// memory a node spends on hand-off small next to its connection buffers.
pub const HANDOFF_QUEUE_BYTES: u64 = 16 << 20;

/// Peers offered one block before it is given up: its next homes, nearest first. More
/// would carry the block ever further from where lookups look for it.
pub const HANDOFF_TRIES: usize = 3;

/// Blocks being offered at once (each to one peer at a time).
pub const HANDOFF_PARALLEL: usize = 4;

/// Time allowed for one `Has` or `Offer` of a hand-off.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an idle placing task checks whether its mesh is gone.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// A push's heat hint is halved by its receiver (`node::MAX_PUSH_HEAT`): replicas share
/// a block's demand. A hand-off moves the copy rather than adding one, so it sends twice
/// the heat: the receiver weighs the block by the heat it had here (still capped there).
const HANDOFF_HINT_FACTOR: f32 = 2.0;

/// Evicted blocks waiting for a place, bounded in bytes.
#[derive(Default)]
pub(super) struct HandoffQueue {
    inner: Mutex<Waiting>,
    ready: Notify,
}

#[derive(Default)]
struct Waiting {
    blocks: VecDeque<Handed>,
    /// Bytes of the queued blocks and of those being offered.
    bytes: u64,
}

impl HandoffQueue {
    /// Queues `block`; false (nothing queued) when it would take the queue past
    /// `HANDOFF_QUEUE_BYTES`.
    fn push(&self, block: Handed) -> bool {
        let len = block.bytes.len() as u64;
        {
            let mut w = self.lock();
            if w.bytes + len > HANDOFF_QUEUE_BYTES {
                return false;
            }
            w.bytes += len;
            w.blocks.push_back(block);
        }
        self.ready.notify_one();
        true
    }

    /// The oldest queued block; its bytes still count until `done`.
    fn pop(&self) -> Option<Handed> {
        self.lock().blocks.pop_front()
    }

    /// A popped block of `len` bytes was placed or given up.
    fn done(&self, len: usize) {
        let mut w = self.lock();
        w.bytes = w.bytes.saturating_sub(len as u64);
    }

    /// Bytes queued or being offered.
    pub(super) fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Places queued blocks as they come, until the mesh is dropped.
pub(super) async fn run(mesh: Weak<Mesh>) {
    loop {
        let Some(m) = mesh.upgrade() else { return };
        m.hand_off_queued().await;
        let queue = m.handoffs.clone();
        drop(m);
        // Woken by the next block queued; now and then to see whether the mesh is gone.
        let _ = tokio::time::timeout(IDLE_CHECK, queue.ready.notified()).await;
    }
}

impl Mesh {
    /// Queues blocks the store evicted for hand-off to other nodes (see the module doc);
    /// those the queue has no room for are dropped and counted.
    pub fn hand_off(&self, handed: Vec<Handed>) {
        for block in handed {
            let id = block.id;
            if !self.handoffs.push(block) {
                self.counters
                    .handoffs_dropped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%id, "hand-off queue full: evicted block dropped");
            }
        }
    }

    /// Offers every queued block until the queue is empty, `HANDOFF_PARALLEL` at once.
    pub async fn hand_off_queued(self: &Arc<Self>) {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.len() < HANDOFF_PARALLEL {
                let Some(block) = self.handoffs.pop() else {
                    break;
                };
                let this = self.clone();
                tasks.spawn(async move {
                    let len = block.bytes.len();
                    this.place(block).await;
                    this.handoffs.done(len);
                });
            }
            if tasks.join_next().await.is_none() {
                return;
            }
        }
    }

    /// Offers `block` to its nearest peers not known to hold it, until one has it.
    async fn place(&self, block: Handed) {
        let id = block.id;
        let targets: Vec<BlockId> = self
            .peers()
            .nearest(&id, super::MAX_PEERS, &[], Instant::now())
            .into_iter()
            .map(|p| p.id)
            .filter(|p| !self.known_holding(p, &id))
            .take(HANDOFF_TRIES)
            .collect();
        for peer in targets {
            if self.offer_handed(peer, &block).await {
                self.counters
                    .handoffs_placed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%id, %peer, "evicted block handed off");
                return;
            }
        }
        self.counters
            .handoffs_failed
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%id, "no peer took an evicted block");
    }

    /// Whether `peer` has `block` now: it had it, or kept it when offered.
    async fn offer_handed(&self, peer: BlockId, block: &Handed) -> bool {
        let id = block.id;
        match self.send(&peer, Ask::Has { id }, HANDOFF_TIMEOUT).await {
            Ok(Answer::Held) => {
                self.mark_known(&peer, &id, true);
                return true;
            }
            Ok(Answer::Missing) => {}
            Ok(answer) => {
                tracing::debug!(%peer, %id, ?answer, "hand-off: odd answer to has");
                return false;
            }
            Err(e) => {
                tracing::debug!(%peer, %id, error = %e, "hand-off: has failed");
                return false;
            }
        }
        let offer = Ask::Offer {
            id,
            block: block.bytes.clone(),
            heat: block.heat * HANDOFF_HINT_FACTOR,
            keep_until: None,
        };
        match self.send(&peer, offer, HANDOFF_TIMEOUT).await {
            Ok(Answer::Stored) => {
                self.stats.record(&id, Event::PushOut, unix_now());
                self.mark_known(&peer, &id, true);
                true
            }
            Ok(Answer::Held) => {
                self.mark_known(&peer, &id, true);
                true
            }
            Ok(answer) => {
                tracing::debug!(%peer, %id, ?answer, "hand-off declined");
                self.mark_known(&peer, &id, false);
                false
            }
            Err(e) => {
                tracing::debug!(%peer, %id, error = %e, "hand-off failed");
                false
            }
        }
    }

    /// Whether `peer` is known (recently) to hold `block`: a peer that only declined
    /// it is still worth offering a hand-off, since its store may have changed.
    fn known_holding(&self, peer: &BlockId, block: &BlockId) -> bool {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known
            .get_mut(peer)
            .and_then(|k| k.get(block).copied())
            .is_some_and(|learned| learned.held && learned.at.elapsed() < push::KNOWN_TTL)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::mesh::fake::mesh_with;

    fn handed(text: &str, heat: f32) -> Handed {
        let bytes = Bytes::from(text.to_owned());
        Handed {
            id: BlockId::of(&bytes),
            bytes,
            heat,
        }
    }

    /// The peers of `all` by XOR distance to `id`, nearest first.
    fn by_distance(all: &[BlockId], id: &BlockId) -> Vec<BlockId> {
        let mut sorted = all.to_vec();
        sorted.sort_unstable_by_key(|p| p.distance(id));
        sorted
    }

    /// A handed-off block goes to the nearest peers first, skipping one known to hold
    /// it, asking `Has` before each `Offer`, moving on when a peer refuses (full), and
    /// stopping at the first that keeps it; the offer carries the block's heat doubled
    /// (the receiver halves a push's hint).
    #[tokio::test]
    async fn a_handed_block_goes_to_the_nearest_peer_that_takes_it() {
        let (mesh, ids, peers) = mesh_with(8);
        let block = handed("an evicted block", 1.5);
        let near = by_distance(&ids, &block.id);
        mesh.note_holder(&near[0], &block.id);
        peers.full.lock().unwrap().push(near[1]);
        mesh.hand_off(vec![block.clone()]);
        mesh.hand_off_queued().await;
        assert_eq!(peers.order(), vec![near[1], near[1], near[2], near[2]]);
        assert_eq!(
            peers.has_asks(),
            vec![(near[1], block.id), (near[2], block.id)]
        );
        assert_eq!(
            peers.offers(),
            vec![(near[1], block.id, None), (near[2], block.id, None)]
        );
        let heats = peers.asks(|a| match a {
            Ask::Offer { heat, .. } => Some(*heat),
            _ => None,
        });
        assert!(
            heats.iter().all(|(_, h)| (*h - 3.0).abs() < 1e-6),
            "{heats:?}"
        );
        assert!(peers.holds(&near[2], &block.id));
        assert!(!peers.holds(&near[1], &block.id));
        let c = &mesh.counters;
        assert_eq!(c.handoffs_placed.load(Ordering::Relaxed), 1);
        assert_eq!(c.handoffs_failed.load(Ordering::Relaxed), 0);
        assert_eq!(mesh.handoffs.bytes(), 0, "nothing left waiting");
        // Known to hold it now: the next hand-off of the same block skips that peer too
        // (and offers it again to the one that only declined).
        mesh.hand_off(vec![block.clone()]);
        mesh.hand_off_queued().await;
        assert_eq!(peers.has_asks().last(), Some(&(near[3], block.id)));
    }

    /// A peer that has the block already (unknown to this node) counts as its place: no
    /// bytes sent. With every peer full, the block is given up after `HANDOFF_TRIES`.
    #[tokio::test]
    async fn a_holder_places_it_and_full_peers_fail_it_after_three_tries() {
        let (mesh, ids, peers) = mesh_with(8);
        let held = handed("held at its nearest peer", 0.0);
        peers.give(by_distance(&ids, &held.id)[0], held.bytes.clone());
        mesh.hand_off(vec![held.clone()]);
        mesh.hand_off_queued().await;
        assert_eq!(peers.has_asks().len(), 1);
        assert!(peers.offers().is_empty());
        assert_eq!(mesh.counters.handoffs_placed.load(Ordering::Relaxed), 1);

        peers.asked.lock().unwrap().clear();
        *peers.full.lock().unwrap() = ids.clone();
        let refused = handed("nobody has room", 0.0);
        mesh.hand_off(vec![refused.clone()]);
        mesh.hand_off_queued().await;
        let near = by_distance(&ids, &refused.id);
        let offered: Vec<BlockId> = peers.offers().into_iter().map(|(p, _, _)| p).collect();
        assert_eq!(offered, near[..HANDOFF_TRIES].to_vec());
        let c = &mesh.counters;
        assert_eq!(c.handoffs_failed.load(Ordering::Relaxed), 1);
        assert_eq!(c.handoffs_placed.load(Ordering::Relaxed), 1);
    }

    /// Past `HANDOFF_QUEUE_BYTES` of waiting blocks, further ones are dropped and
    /// counted; those queued are all placed.
    #[tokio::test]
    async fn the_queue_drops_and_counts_past_its_byte_cap() {
        let (mesh, _ids, peers) = mesh_with(4);
        let size = crate::id::MAX_BLOCK_SIZE;
        let fit = (HANDOFF_QUEUE_BYTES / size as u64) as usize;
        let blocks: Vec<Handed> = (0..fit + 2)
            .map(|n| {
                let bytes = Bytes::from(vec![n as u8; size]);
                Handed {
                    id: BlockId::of(&bytes),
                    bytes,
                    heat: 1.0,
                }
            })
            .collect();
        mesh.hand_off(blocks.clone());
        let c = &mesh.counters;
        assert_eq!(c.handoffs_dropped.load(Ordering::Relaxed), 2);
        assert_eq!(mesh.handoffs.bytes(), (fit * size) as u64);
        mesh.hand_off_queued().await;
        assert_eq!(c.handoffs_placed.load(Ordering::Relaxed), fit as u64);
        assert_eq!(mesh.handoffs.bytes(), 0);
        let holds = peers.holds.lock().unwrap();
        for b in &blocks[..fit] {
            assert!(holds.values().flatten().any(|x| *x == b.bytes));
        }
        drop(holds);
        let mut metrics = String::new();
        mesh.render_metrics(&mut metrics);
        assert!(
            metrics.contains("libernet_handoffs_dropped_total 2\n"),
            "{metrics}"
        );
        assert!(metrics.contains(&format!("libernet_handoffs_placed_total {fit}\n")));
    }
}
