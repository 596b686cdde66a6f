//! Custody leases: the blocks this node keeps for the mesh because it is one of their
//! homes (issue 14). A holder node asks the homes of a block it was trusted with to keep
//! it until a unix time `until`, and renews that lease while it still holds the block;
//! a lease nobody renews runs out and the block becomes an ordinary cached block again.
//!
//! The book lives in memory and in the store's `custody` file: one `<id> <until>` line
//! per lease. The file is rewritten whole, crash-safely, by `Store`; this module only
//! keeps the book, formats and parses it, and does the sums of the custody share. No I/O.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};

use crate::id::BlockId;

/// Longest lease a holder can ask for, counted from now: a later `until` is cut to this.
/// A holder renews its leases far more often (the mesh renews every few hours), so this
/// only bounds what a holder that left for good can cost: its blocks are locked out of
/// eviction for at most 30 days, long enough for a holder to be away a few weeks (a
/// laptop on holiday) without its copies going, short enough that a departed holder's
/// share comes back within a month. It also stops a peer from asking for "forever".
pub const MAX_LEASE_SECS: u64 = 30 * 86_400;

/// Default share of the quota that custody copies may take, in percent: half, so a node
/// keeps its neighbours' copies safe and still has half its room for the popular blocks
/// that make lookups fast.
pub const DEFAULT_CUSTODY_PERCENT: u8 = 50;

/// What a `keep` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// The block was not in custody; it is now.
    New,
    /// The lease runs longer now.
    Extended,
    /// The lease already ran at least as long.
    Unchanged,
    /// The block is not held here: nothing changed (the holder should send it).
    Absent,
}

/// `until` cut to at most `MAX_LEASE_SECS` after `now`.
pub fn clamp_until(until: u64, now: u64) -> u64 {
    until.min(now.saturating_add(MAX_LEASE_SECS))
}

/// `percent` of `quota`, in bytes (a percent over 100 counts as 100).
pub fn share_of(quota: u64, percent: u8) -> u64 {
    let percent = u128::from(percent.min(100));
    (u128::from(quota) * percent / 100) as u64
}

/// True when `add` more bytes in custody, beside the `held` already there, stay within
/// `share`.
pub fn fits(held: u64, add: u64, share: u64) -> bool {
    held.checked_add(add).is_some_and(|total| total <= share)
}

/// Every custody lease: the unix time (seconds) each kept id is kept until.
#[derive(Debug, Default)]
pub struct CustodyBook {
    until: BTreeMap<BlockId, u64>,
    /// Changed since the file was last written.
    pub dirty: bool,
}

impl CustodyBook {
    /// Sets `id`'s lease to the later of its current end and `until` (never shortens).
    /// Returns `New`, `Extended` or `Unchanged`.
    pub fn extend(&mut self, id: BlockId, until: u64) -> Kept {
        let kept = match self.until.get(&id) {
            None => Kept::New,
            Some(old) if until > *old => Kept::Extended,
            Some(_) => return Kept::Unchanged,
        };
        self.until.insert(id, until);
        self.dirty = true;
        kept
    }

    /// Ends `id`'s lease; returns whether there was one.
    pub fn remove(&mut self, id: &BlockId) -> bool {
        let gone = self.until.remove(id).is_some();
        self.dirty |= gone;
        gone
    }

    /// When `id`'s lease ends, if it has one.
    pub fn until(&self, id: &BlockId) -> Option<u64> {
        self.until.get(id).copied()
    }

    /// Ends every lease whose end is `now` or earlier; returns those ids in id order.
    pub fn expire(&mut self, now: u64) -> Vec<BlockId> {
        let gone: Vec<BlockId> = self
            .until
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.until.remove(id);
        }
        self.dirty |= !gone.is_empty();
        gone
    }

    /// Up to `n` leases after `after` (from the start when None), in id order.
    pub fn page(&self, after: Option<BlockId>, n: usize) -> Vec<(BlockId, u64)> {
        let start = after.map_or(Unbounded, Excluded);
        self.until
            .range((start, Unbounded))
            .take(n)
            .map(|(id, until)| (*id, *until))
            .collect()
    }

    /// Ids in custody, in id order.
    pub fn ids(&self) -> impl Iterator<Item = BlockId> + '_ {
        self.until.keys().copied()
    }

    /// Number of leases.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// True when there is no lease.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }

    /// The book as the custody file's text.
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(self.until.len() * 80);
        for (id, until) in &self.until {
            text.push_str(&id.to_string());
            text.push(' ');
            text.push_str(&until.to_string());
            text.push('\n');
        }
        text
    }

    /// Reads the custody file's text; returns the book and how many non-blank lines were
    /// skipped (not `<id> <until>`). An id listed twice keeps its later end.
    pub fn from_text(text: &str) -> (CustodyBook, usize) {
        let mut book = CustodyBook::default();
        let mut skipped = 0;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut words = line.split_whitespace();
            let id = words.next().and_then(|w| w.parse::<BlockId>().ok());
            let until = words.next().and_then(|w| w.parse::<u64>().ok());
            match (id, until, words.next()) {
                (Some(id), Some(until), None) => {
                    book.extend(id, until);
                }
                _ => skipped += 1,
            }
        }
        book.dirty = false;
        (book, skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> BlockId {
        BlockId([n; 32])
    }

    #[test]
    fn a_lease_only_grows_until_it_expires_or_is_released() {
        let mut book = CustodyBook::default();
        assert_eq!(book.extend(id(1), 100), Kept::New);
        assert_eq!(book.extend(id(1), 90), Kept::Unchanged);
        assert_eq!(book.extend(id(1), 100), Kept::Unchanged);
        assert_eq!(book.extend(id(1), 150), Kept::Extended);
        assert_eq!(book.until(&id(1)), Some(150));
        book.extend(id(2), 50);
        book.extend(id(3), 200);
        book.dirty = false;
        assert_eq!(book.expire(49), Vec::<BlockId>::new());
        assert!(!book.dirty);
        // A lease lasts while now < until.
        assert_eq!(book.expire(150), vec![id(1), id(2)]);
        assert!(book.dirty);
        assert_eq!(book.until(&id(1)), None);
        assert!(book.remove(&id(3)));
        assert!(!book.remove(&id(3)));
        assert!(book.is_empty());
    }

    #[test]
    fn pages_walk_every_lease_once_in_id_order() {
        let mut book = CustodyBook::default();
        for n in (0..10).rev() {
            book.extend(id(n), u64::from(n));
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = book.page(after, 3);
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            seen.extend(page);
        }
        let want: Vec<(BlockId, u64)> = (0..10).map(|n| (id(n), u64::from(n))).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn the_file_round_trips_and_bad_lines_are_counted() {
        let mut book = CustodyBook::default();
        book.extend(id(1), 1_800_000_000);
        book.extend(id(2), u64::MAX);
        let (again, skipped) = CustodyBook::from_text(&book.to_text());
        assert_eq!(skipped, 0);
        assert_eq!(again.page(None, 10), book.page(None, 10));
        assert!(!again.dirty);

        let text = format!(
            "{a} 10\n\nnot-an-id 5\n{b}\n{b} -1\n{b} 1 2\n{a} 20\n{a} 15\n",
            a = id(5),
            b = id(6)
        );
        let (book, skipped) = CustodyBook::from_text(&text);
        assert_eq!(book.page(None, 10), vec![(id(5), 20)]);
        assert_eq!(skipped, 4);
    }

    #[test]
    fn far_leases_are_cut_and_shares_are_summed_without_overflow() {
        assert_eq!(clamp_until(u64::MAX, 1_000), 1_000 + MAX_LEASE_SECS);
        assert_eq!(clamp_until(2_000, 1_000), 2_000);
        assert_eq!(clamp_until(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(share_of(1000, 50), 500);
        assert_eq!(share_of(1000, 0), 0);
        assert_eq!(share_of(1000, 200), 1000);
        assert_eq!(share_of(u64::MAX, 100), u64::MAX);
        assert!(fits(400, 100, 500));
        assert!(!fits(401, 100, 500));
        assert!(!fits(u64::MAX, 1, u64::MAX));
    }
}
