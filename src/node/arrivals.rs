//! Waiting for blocks to arrive. A GET for an absent block subscribes to its id; any
//! path that stores the block (a PUT now, peers later) calls `arrived`, which wakes every
//! waiter of that id at once. Waiters of one id share one slot, so one lookup; the total
//! number of waiters is capped so slow clients cannot grow memory without bound.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::id::BlockId;

/// Refused: too many requests are already waiting for blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many requests are waiting for blocks ({0}); try again later")]
pub struct TooManyWaiters(pub usize);

struct Slot {
    tx: watch::Sender<bool>,
    generation: u64,
    asked: Vec<String>,
}

#[derive(Default)]
struct Slots {
    by_id: HashMap<BlockId, Slot>,
    waiters: usize,
    generation: u64,
}

/// The registry of ids being waited for.
pub struct Arrivals {
    slots: Mutex<Slots>,
    max_waiters: usize,
}

impl Arrivals {
    /// A registry allowing at most `max_waiters` concurrent waiters.
    pub fn new(max_waiters: usize) -> Arrivals {
        Arrivals {
            slots: Mutex::new(Slots::default()),
            max_waiters,
        }
    }

    /// Registers interest in `id`. Subscribe before the last look at the store: an
    /// arrival after this call is never missed.
    pub fn subscribe(&self, id: BlockId) -> Result<Waiter<'_>, TooManyWaiters> {
        let mut slots = self.lock();
        if slots.waiters >= self.max_waiters {
            return Err(TooManyWaiters(slots.waiters));
        }
        slots.waiters += 1;
        slots.generation += 1;
        let next_generation = slots.generation;
        let mut first = false;
        let slot = slots.by_id.entry(id).or_insert_with(|| {
            first = true;
            Slot {
                tx: watch::Sender::new(false),
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

    /// Wakes everyone waiting for `id`.
    pub fn arrived(&self, id: &BlockId) {
        if let Some(slot) = self.lock().by_id.remove(id) {
            slot.tx.send_replace(true);
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

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One request's wait for one id; leaving the registry when dropped.
pub struct Waiter<'a> {
    arrivals: &'a Arrivals,
    id: BlockId,
    rx: watch::Receiver<bool>,
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

    /// Waits until the block arrives (true) or `timeout` passes (false).
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        let arrived = tokio::time::timeout(timeout, self.rx.wait_for(|arrived| *arrived)).await;
        matches!(arrived, Ok(Ok(_)))
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
            slots.by_id.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn arrival_wakes_all_waiters_of_the_id() {
        let arrivals = Arrivals::new(10);
        let id = BlockId::of(b"x");
        let mut a = arrivals.subscribe(id).unwrap();
        let mut b = arrivals.subscribe(id).unwrap();
        assert!(a.is_first() && !b.is_first());
        assert_eq!(arrivals.ids(), 1);
        arrivals.arrived(&id);
        assert!(a.wait(Duration::from_secs(5)).await);
        assert!(b.wait(Duration::from_secs(5)).await);
        drop((a, b));
        assert_eq!((arrivals.waiting(), arrivals.ids()), (0, 0));
    }

    #[tokio::test]
    async fn timeout_then_cleanup() {
        let arrivals = Arrivals::new(10);
        let id = BlockId::of(b"y");
        let mut a = arrivals.subscribe(id).unwrap();
        a.record_asked(vec!["http://peer".into()]);
        assert!(!a.wait(Duration::from_millis(10)).await);
        assert_eq!(a.asked(), vec!["http://peer".to_owned()]);
        drop(a);
        assert_eq!((arrivals.waiting(), arrivals.ids()), (0, 0));
    }

    #[test]
    fn cap_is_enforced() {
        let arrivals = Arrivals::new(2);
        let _a = arrivals.subscribe(BlockId::of(b"1")).unwrap();
        let _b = arrivals.subscribe(BlockId::of(b"2")).unwrap();
        assert_eq!(
            arrivals.subscribe(BlockId::of(b"3")).err(),
            Some(TooManyWaiters(2))
        );
    }

    #[test]
    fn stale_waiter_does_not_remove_a_newer_slot() {
        let arrivals = Arrivals::new(10);
        let id = BlockId::of(b"z");
        let old = arrivals.subscribe(id).unwrap();
        arrivals.arrived(&id);
        let new = arrivals.subscribe(id).unwrap();
        assert!(new.is_first());
        drop(old);
        assert_eq!(arrivals.ids(), 1);
        drop(new);
        assert_eq!(arrivals.ids(), 0);
    }
}
