//! Lookups of missing blocks (DESIGN 6): ask the peer nearest the id (XOR) first, then
//! the next nearest when one fails or is slow (at most `LOOKUP_PARALLEL` at once, never
//! more than `LOOKUP_MAX_PEERS` in all); each ask forwards the request with one hop less and the same
//! request id. A found block (checked against its id) is the lookup's result; the node
//! stores it if it is worth a place (pull-through) and hands it to every waiter.
//! Also LIKE queries, merged from the nearest peers' answers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock::Instant;

use bytes::Bytes;
use tokio::task::JoinSet;

use super::link::{Answer, Ask};
use super::{
    Event, FORWARD_WAIT_SHARE, LIKE_PEERS, LIKE_TIMEOUT, LOOKUP_MAX_PEERS, LOOKUP_PARALLEL, Mesh,
    Origin,
};
use crate::clock::unix_now;
use crate::id::BlockId;
use crate::store::{Admission, StoreError};

/// A lookup asks one peer; when it has not answered after this long, one more is
/// asked alongside (up to `LOOKUP_PARALLEL`). Asking several at once from the start
/// would make each of them fetch the block too, over links that may be slow.
const HEDGE_AFTER: Duration = Duration::from_millis(750);

/// Time allowed beyond a forwarded wait for the answer to travel back.
const ANSWER_SLACK: Duration = Duration::from_millis(250);

/// A lookup under way: the URL of the peer asked first, and the block when (if) one
/// is found.
pub struct Lookup {
    /// The peer asked first.
    pub asked: Vec<String>,
    /// The block (it hashes to the id) and the hops it took; `None` when the lookup ran
    /// out of peers or of time.
    pub found: tokio::task::JoinHandle<Option<(Bytes, u32)>>,
}

impl Mesh {
    /// Starts looking for `id` among peers (unless `origin` allows no more hops or no
    /// peer can be asked). Returns at once; the lookup runs in the background for at
    /// most `budget`, whether or not its result is awaited.
    pub fn look_up(
        self: &Arc<Self>,
        id: BlockId,
        origin: Origin,
        budget: Duration,
    ) -> Option<Lookup> {
        if origin.hops == 0 || budget.is_zero() {
            return None;
        }
        let exclude: Vec<BlockId> = origin.from.into_iter().collect();
        let candidates: Vec<(BlockId, String)> = self
            .peers()
            .nearest(&id, LOOKUP_MAX_PEERS, &exclude, Instant::now())
            .into_iter()
            .map(|p| (p.id, p.url.clone()))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        self.first_sight(origin.request);
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        let asked = candidates
            .iter()
            .take(1)
            .map(|(_, url)| url.clone())
            .collect();
        let deadline = Instant::now() + budget;
        let found = tokio::spawn(self.clone().lookup(id, origin, candidates, deadline));
        Some(Lookup { asked, found })
    }

    async fn lookup(
        self: Arc<Self>,
        id: BlockId,
        origin: Origin,
        candidates: Vec<(BlockId, String)>,
        deadline: Instant,
    ) -> Option<(Bytes, u32)> {
        let mut pending = candidates.into_iter().map(|(peer, _)| peer);
        let mut asks = JoinSet::new();
        if let Some(peer) = pending.next() {
            asks.spawn(self.clone().ask(peer, id, origin, deadline));
        }
        loop {
            let hedge = tokio::time::sleep(HEDGE_AFTER);
            let more = asks.len() < LOOKUP_PARALLEL;
            tokio::select! {
                done = asks.join_next() => {
                    let Some(done) = done else { break };
                    if let Ok(Some((bytes, hops))) = done {
                        asks.abort_all();
                        self.found(id, hops);
                        return Some((bytes, hops));
                    }
                    // A failure widens the lookup to the next nearest peer at once.
                    if Instant::now() < deadline
                        && let Some(peer) = pending.next()
                    {
                        asks.spawn(self.clone().ask(peer, id, origin, deadline));
                    }
                }
                () = hedge, if more => {
                    // No answer yet: ask one more peer alongside.
                    match pending.next() {
                        Some(peer) if Instant::now() < deadline => {
                            asks.spawn(self.clone().ask(peer, id, origin, deadline));
                        }
                        _ => {}
                    }
                }
            }
        }
        self.counters.lookups_failed.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Asks one peer for `id`; the block and the hops it took, if that peer found it.
    async fn ask(
        self: Arc<Self>,
        peer: BlockId,
        id: BlockId,
        origin: Origin,
        deadline: Instant,
    ) -> Option<(Bytes, u32)> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return None;
        }
        self.counters.asks.fetch_add(1, Ordering::Relaxed);
        let hops = origin.hops - 1;
        let wait = if hops == 0 {
            Duration::ZERO
        } else {
            remaining.mul_f64(FORWARD_WAIT_SHARE)
        };
        let ask = Ask::Get {
            id,
            hops,
            request: origin.request,
            wait,
        };
        let (bytes, further) = match self.send(&peer, ask, remaining + ANSWER_SLACK).await {
            Ok(Answer::Block { bytes, hops }) => (bytes, hops),
            Ok(_) => return None,
            Err(e) => {
                tracing::debug!(%peer, %id, error = %e, "lookup ask failed");
                return None;
            }
        };
        if further == 0 {
            self.mark_known(&peer, &id, true); // it had the block itself
        }
        Some((bytes, further.saturating_add(1)))
    }

    /// A lookup found `id` `hops` away: count it.
    fn found(&self, id: BlockId, hops: u32) {
        let c = &self.counters;
        c.lookups_found.fetch_add(1, Ordering::Relaxed);
        c.downloads.fetch_add(1, Ordering::Relaxed);
        c.lookup_hops.fetch_add(u64::from(hops), Ordering::Relaxed);
        let bucket = (hops.clamp(1, 4) - 1) as usize;
        c.hops_histogram[bucket].fetch_add(1, Ordering::Relaxed);
        self.stats.record(&id, Event::Download, unix_now());
    }

    /// Stores a peer's identity block (how its signatures are checked); records
    /// evictions and hands off the victims worth it. Returns whether it is held now.
    pub(super) async fn keep(&self, id: BlockId, bytes: Bytes, admission: Admission) -> bool {
        let put =
            crate::store::off_worker(&self.store, move |s| s.put_with(&id, &bytes, admission))
                .await;
        match put {
            Ok(Ok(put)) => {
                let now = unix_now();
                for victim in &put.evicted {
                    self.stats.record(victim, Event::Purge, now);
                }
                self.hand_off(put.handed);
                true
            }
            Ok(Err(StoreError::Declined | StoreError::Full { .. })) => false,
            Ok(Err(e)) => {
                tracing::warn!(%id, error = %e, "could not store a block from a peer");
                false
            }
            Err(e) => {
                tracing::error!(%id, error = %e, "store task failed");
                false
            }
        }
    }

    /// Held blocks near `id` according to the `LIKE_PEERS` nearest peers (each answers
    /// from its own store only), merged; unless `origin` allows no hops.
    pub async fn like_from_peers(
        self: &Arc<Self>,
        id: BlockId,
        origin: Origin,
    ) -> Vec<(BlockId, u32)> {
        if origin.hops == 0 {
            return Vec::new();
        }
        let exclude: Vec<BlockId> = origin.from.into_iter().collect();
        let peers: Vec<BlockId> = self
            .peers()
            .nearest(&id, LIKE_PEERS, &exclude, Instant::now())
            .into_iter()
            .map(|p| p.id)
            .collect();
        let mut asks = JoinSet::new();
        for peer in peers {
            let this = self.clone();
            asks.spawn(async move {
                let ask = Ask::Like {
                    id,
                    request: origin.request,
                };
                match this.send(&peer, ask, LIKE_TIMEOUT).await {
                    Ok(Answer::Like(found)) => found,
                    _ => Vec::new(),
                }
            });
        }
        let mut found = Vec::new();
        while let Some(done) = asks.join_next().await {
            let Ok(theirs) = done else { continue };
            found.extend(
                theirs
                    .into_iter()
                    .map(|(id, size)| (id, u32::try_from(size).unwrap_or(u32::MAX))),
            );
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::Origin;
    use crate::mesh::fake::mesh_with;

    /// A lookup asks the peers nearest the block first, widens to the next at once when
    /// one does not have it, stops at the first that does (returning the block), and
    /// forwards with one hop fewer and a share of its time as the wait.
    #[tokio::test]
    async fn a_lookup_asks_nearest_first_and_widens_until_found() {
        let (mesh, mut ids, peers) = mesh_with(6);
        let block = Bytes::from_static(b"wanted block");
        let id = BlockId::of(&block);
        ids.sort_by_key(|p| p.distance(&id));
        // The third nearest has it.
        peers
            .holds
            .lock()
            .unwrap()
            .insert(ids[2], vec![block.clone()]);
        let origin = Origin {
            from: None,
            hops: 2,
            request: 7,
            counted: true,
        };
        let lookup = mesh.look_up(id, origin, Duration::from_secs(5)).unwrap();
        let nearest_url = mesh.peers().get(&ids[0]).map(|p| p.url.clone());
        assert_eq!(lookup.asked, nearest_url.into_iter().collect::<Vec<_>>());
        let (found, hops) = lookup.found.await.unwrap().expect("found");
        assert_eq!((found, hops), (block, 1));
        let order = peers.order();
        assert_eq!(order, ids[..3]);
        for (_, ask) in peers.asked.lock().unwrap().iter() {
            let Ask::Get {
                id: asked_for,
                hops,
                request,
                wait,
            } = ask
            else {
                panic!("{ask:?}");
            };
            assert_eq!((*asked_for, *hops, *request), (id, 1, 7));
            assert!(*wait > Duration::ZERO && *wait < Duration::from_secs(5));
        }
        assert_eq!(mesh.counters.lookups_found.load(Ordering::Relaxed), 1);
        // Finding is the mesh's part; storing is the node's.
        assert!(mesh.store.contains(&id).is_none());
    }

    /// A block nobody has: the lookup asks at most `LOOKUP_MAX_PEERS` peers, nearest
    /// first, never the one that forwarded the request, then gives up.
    #[tokio::test]
    async fn a_lookup_never_asks_more_than_its_bound_nor_its_origin() {
        let (mesh, mut ids, peers) = mesh_with(12);
        let id = BlockId::of(b"nobody has this");
        ids.sort_by_key(|p| p.distance(&id));
        let origin = Origin {
            from: Some(ids[0]),
            hops: 1,
            request: 9,
            counted: true,
        };
        let lookup = mesh.look_up(id, origin, Duration::from_secs(5)).unwrap();
        assert!(lookup.found.await.unwrap().is_none());
        let order = peers.order();
        assert_eq!(order, ids[1..=LOOKUP_MAX_PEERS]);
        // The last hop: peers answer from their own stores, without waiting.
        for (_, ask) in peers.asked.lock().unwrap().iter() {
            assert!(
                matches!(ask, Ask::Get { hops: 0, wait, .. } if wait.is_zero()),
                "{ask:?}"
            );
        }
        assert_eq!(mesh.counters.lookups_failed.load(Ordering::Relaxed), 1);
        // Hops exhausted: no lookup at all.
        let spent = Origin {
            hops: 0,
            ..Origin::client()
        };
        assert!(mesh.look_up(id, spent, Duration::from_secs(5)).is_none());
    }

    /// A peer that does not answer is not waited for: after `HEDGE_AFTER` the next
    /// nearest is asked alongside, and its answer ends the lookup.
    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_hedged_after_a_while() {
        let (mesh, mut ids, peers) = mesh_with(4);
        let block = Bytes::from_static(b"behind a silent peer");
        let id = BlockId::of(&block);
        ids.sort_by_key(|p| p.distance(&id));
        peers.silent.lock().unwrap().push(ids[0]);
        peers.holds.lock().unwrap().insert(ids[1], vec![block]);
        let started = tokio::time::Instant::now();
        let lookup = mesh
            .look_up(id, Origin::client(), Duration::from_secs(5))
            .unwrap();
        assert!(lookup.found.await.unwrap().is_some());
        let order = peers.order();
        assert_eq!(order, ids[..2]);
        assert!(started.elapsed() >= HEDGE_AFTER, "{:?}", started.elapsed());
        assert_eq!(mesh.counters.lookups_found.load(Ordering::Relaxed), 1);
    }
}
