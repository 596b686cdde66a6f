//! Waiting for blocks to arrive. A GET for an absent block subscribes to its id; any
//! path that delivers the block (a client's PUT, a peer's push, a lookup's answer) calls
//! `arrived` with its bytes, which wakes every waiter of that id at once and hands them
//! the bytes (so they are served even if the store could not keep them). Waiters of one
//! id share one slot, so one lookup; a lookup that exhausted its peers calls `gave_up`,
//! which answers them all at once. Waiters are capped in number and in bytes (each is
//! counted at `WAITER_COST`, what a waiting request holds in the whole node) so slow
//! clients cannot grow memory without bound, and the table of slots gives its memory back
//! once a burst of waiters is over (a hash table never shrinks by itself).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::id::BlockId;

/// What one waiting request holds, for the byte budget: its connection (hyper's 8 KiB
/// read and 8 KiB write buffers, the task), the parsed request, the handler's state and
/// its share of the registry. Measured on a release node: 1,500 to 4,000 connections each
/// waiting for an absent block took 20.0 to 21.1 KiB apiece above idle.
pub const WAITER_COST: usize = 21 << 10;

/// Refused: too many requests are already waiting for blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many requests are waiting for blocks ({waiting}, at most {limit} by {bound}); try again later"
)]
pub struct TooManyWaiters {
    /// Requests waiting now.
    pub waiting: usize,
    /// The most that may wait.
    pub limit: usize,
    /// Which bound set the limit: `max_waiters` (a count) or `waiter_memory` (bytes).
    pub bound: &'static str,
}

/// The most waiters allowed by a count cap and a byte budget, and which of the two binds.
pub fn waiter_limit(max_waiters: usize, memory: u64) -> (usize, &'static str) {
    let by_memory = usize::try_from(memory / WAITER_COST as u64).unwrap_or(usize::MAX);
    if by_memory < max_waiters {
        (by_memory, "waiter_memory")
    } else {
        (max_waiters, "max_waiters")
    }
}

/// Slots the table keeps room for however empty it gets: shrinking below that would
/// only make the next few waiters grow it again.
const MIN_SLOT_CAPACITY: usize = 256;

/// What a slot's waiters are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing yet (or, from `wait`, the timeout passed).
    Pending,
    /// The block, and how many hops away it was found (0: delivered here).
    Arrived(Bytes, u32),
    /// The lookup asked every peer it could; none had it.
    GaveUp,
}

struct Slot {
    tx: watch::Sender<Outcome>,
    generation: u64,
    asked: Vec<String>,
}

#[derive(Default)]
struct Slots {
    by_id: HashMap<BlockId, Slot>,
    waiters: usize,
    generation: u64,
}

impl Slots {
    /// Removes `id`'s slot; when the table is under a quarter full, halves its room
    /// (amortised: it takes as many removals as it had entries to shrink again).
    fn remove(&mut self, id: &BlockId) -> Option<Slot> {
        let slot = self.by_id.remove(id)?;
        let capacity = self.by_id.capacity();
        if capacity > MIN_SLOT_CAPACITY && self.by_id.len() < capacity / 4 {
            self.by_id
                .shrink_to((self.by_id.len() * 2).max(MIN_SLOT_CAPACITY));
        }
        Some(slot)
    }
}

/// The registry of ids being waited for.
pub struct Arrivals {
    slots: Mutex<Slots>,
    limit: usize,
    bound: &'static str,
}

impl Arrivals {
    /// A registry allowing at most `max_waiters` concurrent waiters, and no more than
    /// `memory` bytes of them at `WAITER_COST` each.
    pub fn new(max_waiters: usize, memory: u64) -> Arrivals {
        let (limit, bound) = waiter_limit(max_waiters, memory);
        Arrivals {
            slots: Mutex::new(Slots::default()),
            limit,
            bound,
        }
    }

    /// Registers interest in `id`. Subscribe before the last look at the store: an
    /// arrival after this call is never missed.
    pub fn subscribe(&self, id: BlockId) -> Result<Waiter<'_>, TooManyWaiters> {
        let mut slots = self.lock();
        if slots.waiters >= self.limit {
            return Err(TooManyWaiters {
                waiting: slots.waiters,
                limit: self.limit,
                bound: self.bound,
            });
        }
        slots.waiters += 1;
        slots.generation += 1;
        let next_generation = slots.generation;
        let mut first = false;
        let slot = slots.by_id.entry(id).or_insert_with(|| {
            first = true;
            Slot {
                tx: watch::Sender::new(Outcome::Pending),
                generation: next_generation,
                asked: Vec::new(),
            }
        });
        Ok(Waiter {
            arrivals: self,
            id,
            rx: slot.tx.subscribe(),
            generation: slot.generation,
            first,
        })
    }

    /// Wakes everyone waiting for `id` with its bytes, found `hops` away.
    pub fn arrived(&self, id: &BlockId, bytes: &Bytes, hops: u32) {
        if let Some(slot) = self.lock().remove(id) {
            slot.tx.send_replace(Outcome::Arrived(bytes.clone(), hops));
        }
    }

    /// Tells everyone waiting for `id` that the lookup found nothing.
    pub fn gave_up(&self, id: &BlockId) {
        if let Some(slot) = self.lock().remove(id) {
            slot.tx.send_replace(Outcome::GaveUp);
        }
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.lock().waiters
    }

    /// Distinct ids being waited for now.
    pub fn ids(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Slots the table has room for now (its memory, in slots).
    pub fn capacity(&self) -> usize {
        self.lock().by_id.capacity()
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One request's wait for one id; leaving the registry when dropped.
pub struct Waiter<'a> {
    arrivals: &'a Arrivals,
    id: BlockId,
    rx: watch::Receiver<Outcome>,
    generation: u64,
    first: bool,
}

impl Waiter<'_> {
    /// True for the waiter that created the slot: it starts the one lookup.
    pub fn is_first(&self) -> bool {
        self.first
    }

    /// Records whom the lookup asked, for everyone's timeout answer.
    pub fn record_asked(&self, asked: Vec<String>) {
        if let Some(slot) = self.own_slot(&mut self.arrivals.lock()) {
            slot.asked = asked;
        }
    }

    /// Whom the shared lookup asked.
    pub fn asked(&self) -> Vec<String> {
        self.own_slot(&mut self.arrivals.lock())
            .map(|s| s.asked.clone())
            .unwrap_or_default()
    }

    /// Waits until the block arrives, the lookup gives up, or `timeout` passes
    /// (`Outcome::Pending`).
    pub async fn wait(&mut self, timeout: Duration) -> Outcome {
        let settled = self.rx.wait_for(|o| *o != Outcome::Pending);
        match tokio::time::timeout(timeout, settled).await {
            Ok(Ok(outcome)) => outcome.clone(),
            _ => Outcome::Pending,
        }
    }

    fn own_slot<'s>(&self, slots: &'s mut Slots) -> Option<&'s mut Slot> {
        slots
            .by_id
            .get_mut(&self.id)
            .filter(|s| s.generation == self.generation)
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut slots = self.arrivals.lock();
        slots.waiters -= 1;
        // The last waiter of a slot nobody filled removes it (a slot filled by an
        // arrival is already gone, and a newer slot for the id is not ours).
        let last = self
            .own_slot(&mut slots)
            .is_some_and(|s| s.tx.receiver_count() == 1);
        if last {
            slots.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn arrival_wakes_all_waiters_of_the_id() {
        let arrivals = Arrivals::new(10, u64::MAX);
        let id = BlockId::of(b"x");
        let mut a = arrivals.subscribe(id).unwrap();
        let mut b = arrivals.subscribe(id).unwrap();
        assert!(a.is_first() && !b.is_first());
        assert_eq!(arrivals.ids(), 1);
        let bytes = Bytes::from_static(b"x");
        arrivals.arrived(&id, &bytes, 2);
        assert_eq!(
            a.wait(Duration::from_secs(5)).await,
            Outcome::Arrived(bytes.clone(), 2)
        );
        assert_eq!(
            b.wait(Duration::from_secs(5)).await,
            Outcome::Arrived(bytes, 2)
        );
        drop((a, b));
        assert_eq!((arrivals.waiting(), arrivals.ids()), (0, 0));
    }

    #[tokio::test]
    async fn timeout_then_cleanup() {
        let arrivals = Arrivals::new(10, u64::MAX);
        let id = BlockId::of(b"y");
        let mut a = arrivals.subscribe(id).unwrap();
        a.record_asked(vec!["http://peer".into()]);
        assert_eq!(a.wait(Duration::from_millis(10)).await, Outcome::Pending);
        assert_eq!(a.asked(), vec!["http://peer".to_owned()]);
        drop(a);
        assert_eq!((arrivals.waiting(), arrivals.ids()), (0, 0));
    }

    #[tokio::test]
    async fn giving_up_answers_every_waiter_at_once() {
        let arrivals = Arrivals::new(10, u64::MAX);
        let id = BlockId::of(b"w");
        let mut a = arrivals.subscribe(id).unwrap();
        arrivals.gave_up(&id);
        assert_eq!(a.wait(Duration::from_secs(60)).await, Outcome::GaveUp);
        // The next request starts afresh.
        assert!(arrivals.subscribe(id).unwrap().is_first());
    }

    #[test]
    fn cap_is_enforced() {
        let arrivals = Arrivals::new(2, u64::MAX);
        let _a = arrivals.subscribe(BlockId::of(b"1")).unwrap();
        let _b = arrivals.subscribe(BlockId::of(b"2")).unwrap();
        assert_eq!(
            arrivals.subscribe(BlockId::of(b"3")).err(),
            Some(TooManyWaiters {
                waiting: 2,
                limit: 2,
                bound: "max_waiters"
            })
        );
    }

    #[test]
    fn the_byte_budget_caps_waiters_below_the_count() {
        let mib = 1u64 << 20;
        assert_eq!(waiter_limit(4096, 21 * mib), (1024, "waiter_memory"));
        assert_eq!(waiter_limit(100, 32 * mib), (100, "max_waiters"));
        assert_eq!(waiter_limit(4096, 0), (0, "waiter_memory"));
        assert_eq!(waiter_limit(7, u64::MAX), (7, "max_waiters"));
        // Three waiters' worth of bytes, less one: two may wait.
        let arrivals = Arrivals::new(1000, 3 * WAITER_COST as u64 - 1);
        let a = arrivals.subscribe(BlockId::of(b"1")).unwrap();
        let _b = arrivals.subscribe(BlockId::of(b"1")).unwrap();
        let refused = arrivals.subscribe(BlockId::of(b"2")).err().unwrap();
        assert_eq!((refused.limit, refused.bound), (2, "waiter_memory"));
        drop(a);
        assert!(arrivals.subscribe(BlockId::of(b"2")).is_ok());
    }

    #[test]
    fn stale_waiter_does_not_remove_a_newer_slot() {
        let arrivals = Arrivals::new(10, u64::MAX);
        let id = BlockId::of(b"z");
        let old = arrivals.subscribe(id).unwrap();
        arrivals.gave_up(&id);
        let new = arrivals.subscribe(id).unwrap();
        assert!(new.is_first());
        drop(old);
        assert_eq!(arrivals.ids(), 1);
        drop(new);
        assert_eq!(arrivals.ids(), 0);
    }

    #[test]
    fn the_table_shrinks_after_a_burst() {
        let arrivals = Arrivals::new(20_000, u64::MAX);
        let ids: Vec<BlockId> = (0..10_000u32)
            .map(|i| BlockId::of(&i.to_le_bytes()))
            .collect();
        let waiters: Vec<Waiter<'_>> = ids
            .iter()
            .map(|id| arrivals.subscribe(*id).unwrap())
            .collect();
        assert!(arrivals.capacity() >= 10_000);
        // Half are answered, half time out.
        for id in &ids[..5000] {
            arrivals.gave_up(id);
        }
        drop(waiters);
        assert_eq!((arrivals.waiting(), arrivals.ids()), (0, 0));
        assert!(
            arrivals.capacity() <= 2 * MIN_SLOT_CAPACITY,
            "room for {} slots kept",
            arrivals.capacity()
        );
    }
}
