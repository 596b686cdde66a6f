//! Custody and repair (docs/mesh.md "Custody"). Content a client asks to keep is pinned
//! on the node that took it (the holder); each repair round, every node checks the
//! kept blocks it answers for (those pinned here, and those it keeps in custody for
//! others) on the blocks' homes, the `REPLICAS` live nodes nearest each block:
//! one `Holds` ask per home listing many ids (never one `HEAD` per block), renewing the
//! custody lease of those the home holds, then a custody `Offer` of each block a home
//! lacks, within `REPAIR_BYTES_PER_ROUND`. The holder's rounds renew the lease to
//! `CUSTODY_LEASE` from now; a custodian passes on the lease it has, never a longer
//! one, so custody ends once no holder renews it. A home that left (failing, then
//! dropped) stops counting at once: the next nearest node becomes a home and gets a
//! copy in the next round.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use super::link::{Answer, Ask};
use super::{Event, Mesh, REPLICAS};
use crate::clock::unix_now;
use crate::id::BlockId;
use crate::proto::{HoldState, MAX_HOLDS_IDS};
use crate::store::ReadOutcome;

/// How long custody lasts without renewal. A holder renews every round; a holder that
/// is gone for this long (its node lost, the backup never run again) lets its blocks
/// become ordinary cache. A week covers a node down for a long weekend and its owner's
/// repair of it; it must stay below the store's `MAX_LEASE_SECS`.
pub const CUSTODY_LEASE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Kept blocks checked per round: with a round a minute, a node keeping a million
/// blocks checks each about every four hours, in about 250 `Holds` asks per home.
pub const REPAIR_BATCH: usize = 4096;

/// Bytes of copies one round may send: the repair's bandwidth bound (about 1 MiB/s at
/// the default round of a minute). What is left over waits for the next round.
pub const REPAIR_BYTES_PER_ROUND: u64 = 64 << 20;

/// Time allowed for one `Holds` ask or one custody offer.
const REPAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the last round stopped in each list of kept blocks.
#[derive(Debug, Default)]
pub struct RepairCursor {
    pins: Option<BlockId>,
    custody: Option<BlockId>,
}

/// What one repair round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RepairReport {
    /// Kept blocks checked.
    pub checked: usize,
    /// `Holds` asks sent.
    pub asks: usize,
    /// Copies sent to homes that lacked them (and kept them).
    pub copied: usize,
    /// Homes that hold a block but refused its custody (over their share).
    pub refused: usize,
    /// Copies left for a later round by the byte bound.
    pub deferred: usize,
}

/// Runs repair rounds until the mesh is dropped.
pub(super) async fn run(mesh: Weak<Mesh>) {
    loop {
        let Some(interval) = mesh.upgrade().map(|m| m.settings.repair_interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(m) = mesh.upgrade() else { return };
        let report = m.repair_round().await;
        if report.copied > 0 || report.refused > 0 {
            tracing::info!(?report, "repair round");
        }
    }
}

impl Mesh {
    /// One repair round: expired custody ends; the next `REPAIR_BATCH` kept blocks are
    /// checked on their homes and copied where missing.
    pub async fn repair_round(self: &Arc<Self>) -> RepairReport {
        let now = unix_now();
        let expired = crate::store::off_worker(&self.store, move |s| s.expire_custody(now))
            .await
            .unwrap_or_default();
        if !expired.is_empty() {
            tracing::debug!(n = expired.len(), "custody leases ended");
        }
        let batch = self.kept_batch(now);
        let mut report = RepairReport {
            checked: batch.len(),
            ..RepairReport::default()
        };
        // Per home: the blocks it should keep, and the lease each should have.
        let me = self.me();
        let mut per_home: BTreeMap<BlockId, Vec<(BlockId, u64)>> = BTreeMap::new();
        {
            let ring = self.peers().ring();
            for (id, until) in &batch {
                for home in ring.nearest(id, REPLICAS) {
                    if home != me {
                        per_home.entry(home).or_default().push((*id, *until));
                    }
                }
            }
        }
        let mut asks = tokio::task::JoinSet::new();
        for (home, blocks) in per_home {
            for chunk in blocks.chunks(MAX_HOLDS_IDS) {
                let (this, chunk) = (self.clone(), chunk.to_vec());
                asks.spawn(async move { (home, this.check_home(home, chunk).await) });
            }
        }
        let mut missing: Vec<(BlockId, BlockId, u64)> = Vec::new();
        while let Some(done) = asks.join_next().await {
            let Ok((home, checked)) = done else { continue };
            report.asks += 1;
            let Some(states) = checked else { continue };
            for ((id, until), state) in states {
                match state {
                    HoldState::Absent => missing.push((home, id, until)),
                    HoldState::Held => report.refused += 1,
                    HoldState::Kept => {}
                }
            }
        }
        let mut budget = REPAIR_BYTES_PER_ROUND;
        for (home, id, until) in missing {
            let size = u64::from(self.store.contains(&id).unwrap_or(0));
            if size == 0 {
                continue;
            }
            if size > budget {
                report.deferred += 1;
                continue;
            }
            budget -= size;
            if self.copy_to(home, id, until).await {
                report.copied += 1;
            }
        }
        let c = &self.counters;
        c.repair_checks
            .fetch_add(report.checked as u64, Ordering::Relaxed);
        c.repair_copies
            .fetch_add(report.copied as u64, Ordering::Relaxed);
        c.repair_bytes
            .fetch_add(REPAIR_BYTES_PER_ROUND - budget, Ordering::Relaxed);
        report
    }

    /// The next kept blocks this node answers for, with the lease each should have:
    /// pinned here (a fresh `CUSTODY_LEASE`), then in custody here (the lease it has).
    fn kept_batch(&self, now: u64) -> Vec<(BlockId, u64)> {
        let mut cursor = self
            .repair_cursor
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let renewed = now + CUSTODY_LEASE.as_secs();
        let pins = self.store.pins();
        let after = cursor.pins;
        let mut batch: Vec<(BlockId, u64)> = pins
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| after.is_none_or(|a| *id > a))
            .filter(|id| self.store.contains(id).is_some())
            .take(REPAIR_BATCH)
            .map(|id| (id, renewed))
            .collect();
        cursor.pins = if batch.len() < REPAIR_BATCH {
            None
        } else {
            batch.last().map(|(id, _)| *id)
        };
        let room = REPAIR_BATCH - batch.len();
        if room > 0 {
            let custody = self.store.custody_page(cursor.custody, room);
            cursor.custody = if custody.len() < room {
                None
            } else {
                custody.last().map(|(id, _)| *id)
            };
            batch.extend(
                custody
                    .into_iter()
                    .filter(|(id, _)| !self.store.is_pinned(id)),
            );
        }
        batch
    }

    /// Asks `home` which of `blocks` it holds, renewing their custody; each block's
    /// state there, or None when the home did not answer.
    async fn check_home(
        &self,
        home: BlockId,
        blocks: Vec<(BlockId, u64)>,
    ) -> Option<Vec<((BlockId, u64), HoldState)>> {
        // One lease per ask: the shortest, so no custodian lengthens a lease it was
        // given (renewals from the holder all carry the same one).
        let keep_until = blocks.iter().map(|(_, until)| *until).min();
        let ask = Ask::Holds {
            ids: blocks.iter().map(|(id, _)| *id).collect(),
            keep_until,
        };
        match self.send(&home, ask, REPAIR_TIMEOUT).await {
            Ok(Answer::Holds(states)) if states.len() == blocks.len() => {
                for ((id, _), state) in blocks.iter().zip(&states) {
                    if *state != HoldState::Absent {
                        self.mark_known(&home, id, true);
                    }
                }
                Some(blocks.into_iter().zip(states).collect())
            }
            Ok(answer) => {
                tracing::debug!(%home, ?answer, "holds check refused");
                None
            }
            Err(e) => {
                tracing::debug!(%home, error = %e, "holds check failed");
                None
            }
        }
    }

    /// Sends `id` to `home` for custody until `until`; whether the home kept it.
    async fn copy_to(&self, home: BlockId, id: BlockId, until: u64) -> bool {
        let read = crate::store::off_worker(&self.store, move |s| s.read(&id)).await;
        let Ok(Ok(ReadOutcome::Found(block))) = read else {
            return false;
        };
        let offer = Ask::Offer {
            id,
            block,
            heat: self.store.heat(&id).unwrap_or(0.0),
            keep_until: Some(until),
        };
        match self.send(&home, offer, REPAIR_TIMEOUT).await {
            Ok(Answer::Stored | Answer::Held) => {
                self.stats.record(&id, Event::PushOut, unix_now());
                self.mark_known(&home, &id, true);
                true
            }
            Ok(answer) => {
                tracing::debug!(%home, %id, ?answer, "custody copy refused");
                false
            }
            Err(e) => {
                tracing::debug!(%home, %id, error = %e, "custody copy failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::clock::Instant;
    use std::collections::HashMap;

    use bytes::Bytes;

    use super::*;
    use crate::mesh::fake::mesh_with;
    use crate::store::{Durability, Holder};

    /// The `REPLICAS` nodes of `all` nearest `block`.
    fn homes(all: &[BlockId], block: &BlockId) -> Vec<BlockId> {
        let mut all = all.to_vec();
        all.sort_by_key(|n| n.distance(block));
        all.truncate(REPLICAS);
        all
    }

    /// The `Holds` asks sent, per peer.
    fn holds_asks(peers: &crate::mesh::fake::Peers) -> HashMap<BlockId, usize> {
        let mut n = HashMap::new();
        for (peer, ()) in peers.asks(|a| matches!(a, Ask::Holds { .. }).then_some(())) {
            *n.entry(peer).or_default() += 1;
        }
        n
    }

    /// A repair round asks each home once about all its blocks (not once per block),
    /// copies each pinned block to the homes that lack it with a fresh lease, and only
    /// to homes; a home that holds a block gets its lease renewed, not a copy. The next
    /// round copies nothing. When a home fails, the next nearest node gets a copy.
    #[tokio::test]
    async fn repair_copies_kept_blocks_to_their_homes_in_batches() {
        let (mesh, peer_ids, peers) = mesh_with(8);
        let mut all = peer_ids.clone();
        all.push(mesh.me());
        let holder: Holder = "backup-1".parse().unwrap();
        let blocks: Vec<Bytes> = (0..40u32)
            .map(|i| Bytes::from(format!("kept block {i}")))
            .collect();
        for b in &blocks {
            let id = BlockId::of(b);
            mesh.store.put(&id, b).unwrap();
            mesh.store.pin(id, &holder, Durability::Soon).unwrap();
        }
        // One home already has one of its blocks.
        let (had_peer, had) = peer_ids
            .iter()
            .flat_map(|p| blocks.iter().map(move |b| (*p, b.clone())))
            .find(|(p, b)| homes(&all, &BlockId::of(b)).contains(p))
            .unwrap();
        peers.give(had_peer, had.clone());
        let now = unix_now();
        let report = mesh.repair_round().await;
        assert_eq!(report.checked, blocks.len());
        let asked = holds_asks(&peers);
        assert!(asked.values().all(|n| *n == 1), "{asked:?}");
        let offers = peers.offers();
        assert_eq!(report.copied, offers.len());
        let lease = now + CUSTODY_LEASE.as_secs();
        for (peer, id, keep) in &offers {
            assert!(homes(&all, id).contains(peer), "{id} copied to {peer}");
            let keep = keep.expect("a custody copy asks for custody");
            assert!((lease..lease + 5).contains(&keep), "{keep} vs {lease}");
        }
        assert!(!offers.contains(&(had_peer, BlockId::of(&had), Some(lease))));
        for b in &blocks {
            let id = BlockId::of(b);
            for home in homes(&all, &id).into_iter().filter(|h| *h != mesh.me()) {
                assert!(peers.holds(&home, &id), "{id} not on its home {home}");
                let kept = peers.kept.lock().unwrap().get(&(home, id)).copied();
                assert!(kept.is_some_and(|k| k >= lease), "{id} on {home}: {kept:?}");
            }
            for p in &peer_ids {
                if !homes(&all, &id).contains(p) {
                    assert!(!peers.holds(p, &id), "{id} on {p}, not a home");
                }
            }
        }
        assert_eq!(
            mesh.counters.repair_copies.load(Ordering::Relaxed) as usize,
            offers.len()
        );
        // Everything is in place: the next round only asks.
        peers.asked.lock().unwrap().clear();
        let again = mesh.repair_round().await;
        assert_eq!((again.copied, again.checked), (0, blocks.len()));
        assert!(peers.offers().is_empty());
        assert!(holds_asks(&peers).values().all(|n| *n == 1));
        // A home fails: its blocks go to the next nearest node.
        let failed = peer_ids[0];
        mesh.peers_mut().record_failure(&failed, Instant::now());
        let remaining: Vec<BlockId> = all.iter().copied().filter(|n| *n != failed).collect();
        peers.asked.lock().unwrap().clear();
        let moved = mesh.repair_round().await;
        assert!(!holds_asks(&peers).contains_key(&failed));
        assert!(moved.copied > 0);
        for b in &blocks {
            let id = BlockId::of(b);
            for home in homes(&remaining, &id)
                .into_iter()
                .filter(|h| *h != mesh.me())
            {
                assert!(peers.holds(&home, &id), "{id} not moved to {home}");
            }
        }
    }

    /// A custodian (not a holder) passes on the lease it was given, never a longer one;
    /// and a block whose lease ran out is no longer repaired.
    #[tokio::test]
    async fn a_custodian_passes_on_its_own_lease() {
        let (mesh, _peer_ids, peers) = mesh_with(6);
        let block = Bytes::from_static(b"kept for someone else");
        let id = BlockId::of(&block);
        mesh.store.put(&id, &block).unwrap();
        let now = unix_now();
        let until = now + 3600;
        mesh.store.keep(id, until, now).unwrap();
        mesh.repair_round().await;
        let offers = peers.offers();
        assert!(!offers.is_empty());
        assert!(offers.iter().all(|(_, _, keep)| *keep == Some(until)));
        let asked = peers.asks(|a| match a {
            Ask::Holds { keep_until, .. } => Some(*keep_until),
            _ => None,
        });
        assert!(asked.iter().all(|(_, keep)| *keep == Some(until)));
        // The lease ends: nothing to repair any more.
        mesh.store.expire_custody(until + 1);
        peers.asked.lock().unwrap().clear();
        let report = mesh.repair_round().await;
        assert_eq!(report.checked, 0);
        assert!(peers.asked.lock().unwrap().is_empty());
    }
}
