//! The in-memory index of a store: every held block's id, size, heat (decayed request
//! count) and reader count, in one ordered map. Ordered so that LIKE
//! queries walk only the ids near their target; compact (one `BTreeMap` entry, about 70
//! bytes a block) so a million blocks fit in well under 100 MB. No I/O: the store keeps
//! it in step with the files.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::value::Valuer;
use crate::id::BlockId;

/// Blocks sampled for each eviction: the least valuable of them goes (Redis-style
/// approximation: O(k log n) per eviction, no ordered list of values to maintain).
pub const EVICTION_SAMPLES: usize = 16;

/// A subtree of the id space this small is ranked whole rather than split further (a
/// million random ids put about 250 under each 12-bit prefix: one pass).
const LIKE_LEAF: usize = 512;

/// What the index knows of one block.
#[derive(Debug)]
pub struct Entry {
    size: u32,
    /// Decayed request count and the tick it was last updated (see `Valuer`).
    heat: AtomicU64,
    /// Reads of the file in progress: a block being read is never evicted under them.
    readers: AtomicU32,
}

impl Entry {
    /// The block's size in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Marks the start of a read of the file; `end_read` must follow.
    pub fn begin_read(&self) {
        self.readers.fetch_add(1, Ordering::AcqRel);
    }

    /// Marks the end of a read started with `begin_read`.
    pub fn end_read(&self) {
        // Saturating: an entry removed and re-added during a read starts at zero.
        let _ = self
            .readers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// Why no victims could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// Pinned, custody, protected and busy blocks leave too few bytes to free.
    Full,
    /// Room could be made, but only by evicting blocks worth more than the newcomer.
    NotWorthIt,
}

/// Every block the store holds.
#[derive(Debug)]
pub struct Index {
    map: BTreeMap<BlockId, Entry>,
    bytes: u64,
    /// Bytes promised to writes in progress; counted against the quota.
    reserved: u64,
    /// Blocks that are never evicted and not listed as pins (identity blocks).
    protected: HashSet<BlockId>,
    /// Blocks pinned by a holder: never evicted.
    pinned: HashSet<BlockId>,
    /// Blocks in custody (a lease from a holder node): never evicted. Independent of
    /// `pinned`, so a block both pinned and in custody stays locked when either ends.
    custody: HashSet<BlockId>,
    /// Bytes of held blocks that are protected, pinned or in custody.
    locked_bytes: u64,
    /// Bytes and number of held blocks in custody.
    custody_bytes: u64,
    custody_blocks: u64,
    /// Bytes of custody admissions being written (counted against the custody share).
    custody_reserved: u64,
    valuer: Arc<Valuer>,
}

impl Index {
    /// Builds an index of never requested blocks from (id, size) pairs in
    /// any order.
    pub fn from_entries(mut entries: Vec<(BlockId, u32)>, valuer: Arc<Valuer>) -> Index {
        // Sorted input lets BTreeMap bulk-build full nodes: about a third less memory
        // than inserting in directory order.
        entries.sort_unstable_by_key(|e| e.0);
        entries.dedup_by_key(|e| e.0);
        let bytes = entries.iter().map(|e| u64::from(e.1)).sum();
        let now = valuer.now();
        let map = entries
            .into_iter()
            .map(|(id, size)| (id, new_entry(&valuer, size, 0.0, now)))
            .collect();
        Index {
            map,
            bytes,
            reserved: 0,
            protected: HashSet::new(),
            pinned: HashSet::new(),
            custody: HashSet::new(),
            locked_bytes: 0,
            custody_bytes: 0,
            custody_blocks: 0,
            custody_reserved: 0,
            valuer,
        }
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no block is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sum of block sizes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes held plus bytes reserved by writes in progress.
    pub fn committed(&self) -> u64 {
        self.bytes + self.reserved
    }

    /// The entry of `id`.
    pub fn get(&self, id: &BlockId) -> Option<&Entry> {
        self.map.get(id)
    }

    /// Adds `amount` requests' worth of heat to `id`; false when it is not held.
    pub fn add_heat(&self, id: &BlockId, amount: f32) -> bool {
        let Some(entry) = self.map.get(id) else {
            return false;
        };
        self.valuer.add_heat(&entry.heat, amount, self.valuer.now());
        true
    }

    /// The decayed request count of `id` now, if held.
    pub fn heat(&self, id: &BlockId) -> Option<f32> {
        let entry = self.map.get(id)?;
        Some(self.valuer.heat_at(&entry.heat, self.valuer.now()))
    }

    /// Adds a block starting with `heat`. Returns false (and changes nothing) if it was
    /// already there.
    pub fn insert(&mut self, id: BlockId, size: u32, heat: f32) -> bool {
        if self.map.contains_key(&id) {
            return false;
        }
        let entry = new_entry(&self.valuer, size, heat, self.valuer.now());
        self.map.insert(id, entry);
        self.bytes += u64::from(size);
        if self.is_locked(&id) {
            self.locked_bytes += u64::from(size);
        }
        if self.custody.contains(&id) {
            self.custody_bytes += u64::from(size);
            self.custody_blocks += 1;
        }
        true
    }

    /// Removes a block; returns its size if it was there.
    pub fn remove(&mut self, id: &BlockId) -> Option<u32> {
        let entry = self.map.remove(id)?;
        self.bytes -= u64::from(entry.size);
        if self.is_locked(id) {
            self.locked_bytes -= u64::from(entry.size);
        }
        if self.custody.contains(id) {
            self.custody_bytes -= u64::from(entry.size);
            self.custody_blocks -= 1;
        }
        Some(entry.size)
    }

    /// Counts `n` bytes against the quota for a write in progress.
    pub fn reserve(&mut self, n: u64) {
        self.reserved += n;
    }

    /// Returns bytes reserved with `reserve`.
    pub fn release(&mut self, n: u64) {
        self.reserved = self.reserved.saturating_sub(n);
    }

    /// Marks `id` as never to be evicted (an identity block).
    pub fn protect(&mut self, id: BlockId) {
        self.relock(id, |index| {
            index.protected.insert(id);
        });
    }

    /// Lets a protected block be evicted again.
    pub fn unprotect(&mut self, id: &BlockId) {
        self.relock(*id, |index| {
            index.protected.remove(id);
        });
    }

    /// True when `id` may not be evicted whatever its value.
    fn is_locked(&self, id: &BlockId) -> bool {
        self.protected.contains(id) || self.pinned.contains(id) || self.custody.contains(id)
    }

    /// Applies a change to the protected or pinned sets, keeping `locked_bytes` true.
    fn relock(&mut self, id: BlockId, change: impl FnOnce(&mut Index)) {
        let before = self.is_locked(&id);
        change(self);
        let after = self.is_locked(&id);
        if let Some(size) = self.map.get(&id).map(|e| u64::from(e.size)) {
            match (before, after) {
                (false, true) => self.locked_bytes += size,
                (true, false) => self.locked_bytes -= size,
                _ => {}
            }
        }
    }

    /// True when `id` is protected.
    pub fn is_protected(&self, id: &BlockId) -> bool {
        self.protected.contains(id)
    }

    /// Pins or unpins `id` (held or not); returns whether that changed anything.
    pub fn set_pinned(&mut self, id: BlockId, pinned: bool) -> bool {
        let mut changed = false;
        self.relock(id, |index| {
            changed = if pinned {
                index.pinned.insert(id)
            } else {
                index.pinned.remove(&id)
            };
        });
        changed
    }

    /// Puts `id` (held or not) in custody or takes it out; returns whether that changed
    /// anything. Whether it is pinned is untouched: a block pinned and in custody stays
    /// locked while either lasts.
    pub fn set_custody(&mut self, id: BlockId, kept: bool) -> bool {
        let mut changed = false;
        self.relock(id, |index| {
            changed = if kept {
                index.custody.insert(id)
            } else {
                index.custody.remove(&id)
            };
        });
        if changed && let Some(size) = self.map.get(&id).map(|e| u64::from(e.size)) {
            if kept {
                self.custody_bytes += size;
                self.custody_blocks += 1;
            } else {
                self.custody_bytes -= size;
                self.custody_blocks -= 1;
            }
        }
        changed
    }

    /// True when `id` is in custody.
    pub fn in_custody(&self, id: &BlockId) -> bool {
        self.custody.contains(id)
    }

    /// Bytes of held blocks in custody.
    pub fn custody_bytes(&self) -> u64 {
        self.custody_bytes
    }

    /// Number of held blocks in custody.
    pub fn custody_blocks(&self) -> u64 {
        self.custody_blocks
    }

    /// Bytes in custody plus custody admissions being written: what the custody share
    /// is checked against.
    pub fn custody_committed(&self) -> u64 {
        self.custody_bytes + self.custody_reserved
    }

    /// Counts `n` bytes against the custody share for a custody admission in progress.
    pub fn reserve_custody(&mut self, n: u64) {
        self.custody_reserved += n;
    }

    /// Returns bytes reserved with `reserve_custody`.
    pub fn release_custody(&mut self, n: u64) {
        self.custody_reserved = self.custody_reserved.saturating_sub(n);
    }

    /// Bytes of held blocks that can never be evicted (protected, pinned or in custody).
    pub fn locked_bytes(&self) -> u64 {
        self.locked_bytes
    }

    /// True when `id` is pinned.
    pub fn is_pinned(&self, id: &BlockId) -> bool {
        self.pinned.contains(id)
    }

    /// Every pinned id, in id order.
    pub fn pins(&self) -> Vec<BlockId> {
        let mut pins: Vec<BlockId> = self.pinned.iter().copied().collect();
        pins.sort_unstable();
        pins
    }

    /// Picks blocks to evict, least valuable first (approximately), freeing at least
    /// `need` bytes. With `worth = Some(v)` only blocks worth less than `v` may go (a
    /// push from a peer must not displace anything more valuable than itself).
    pub fn choose_victims(
        &self,
        need: u64,
        worth: Option<f32>,
        seed: &mut u64,
    ) -> Result<Vec<BlockId>, NoRoom> {
        if self.bytes - self.locked_bytes < need {
            return Err(NoRoom::Full);
        }
        let now = self.valuer.now();
        let mut chosen: HashSet<BlockId> = HashSet::new();
        let mut freed = 0u64;
        while freed < need {
            let (value, victim) = self
                .sample_cheapest(seed, &chosen, now)
                .ok_or(NoRoom::Full)?;
            if worth.is_some_and(|w| value >= w) {
                return Err(NoRoom::NotWorthIt);
            }
            freed += u64::from(self.map[&victim].size);
            chosen.insert(victim);
        }
        Ok(chosen.into_iter().collect())
    }

    fn evictable(&self, id: &BlockId, e: &Entry) -> bool {
        !self.is_locked(id) && e.readers.load(Ordering::Acquire) == 0
    }

    /// The least valuable of a few evictable blocks (all of them when few), with its
    /// value.
    fn sample_cheapest(
        &self,
        seed: &mut u64,
        skip: &HashSet<BlockId>,
        now: u32,
    ) -> Option<(f32, BlockId)> {
        let eligible = |id: &BlockId, e: &Entry| self.evictable(id, e) && !skip.contains(id);
        let valued = |(id, e): (&BlockId, &Entry)| (self.valuer.value(id, &e.heat, now), *id);
        let cheaper = |a: (f32, BlockId), b: (f32, BlockId)| if b.0 < a.0 { b } else { a };
        let scan_all = || {
            self.map
                .iter()
                .filter(|(id, e)| eligible(id, e))
                .map(valued)
                .reduce(cheaper)
        };
        if self.map.len() <= EVICTION_SAMPLES * 4 {
            return scan_all();
        }
        let mut best: Option<(f32, BlockId)> = None;
        let mut sampled = 0;
        // Bounded: a few hundred draws, then the full scan below.
        for _ in 0..EVICTION_SAMPLES * 16 {
            let probe = random_id(seed);
            let found = self
                .map
                .range(probe..)
                .next()
                .or_else(|| self.map.iter().next());
            if let Some((id, e)) = found.filter(|(id, e)| eligible(id, e)) {
                let candidate = valued((id, e));
                best = Some(best.map_or(candidate, |b| cheaper(b, candidate)));
                sampled += 1;
                if sampled == EVICTION_SAMPLES {
                    break;
                }
            }
        }
        // Random probes can miss the last few eligible blocks when most are taken
        // already (a large need in a small store): then look at all of them.
        best.or_else(scan_all)
    }

    /// The `n` held blocks with the most heat above `min_heat`, hottest first.
    pub fn hottest(&self, n: usize, min_heat: f32) -> Vec<(BlockId, f32)> {
        let now = self.valuer.now();
        let mut hot: Vec<(BlockId, f32)> = self
            .map
            .iter()
            .map(|(id, e)| (*id, self.valuer.heat_at(&e.heat, now)))
            .filter(|(_, h)| *h >= min_heat)
            .collect();
        if hot.len() > n {
            hot.select_nth_unstable_by(n, |a, b| b.1.total_cmp(&a.1));
            hot.truncate(n);
        }
        hot.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        hot
    }

    /// Up to `max` held blocks sharing at least `min_bits` leading bits with `target`,
    /// nearest (smallest XOR distance) first.
    pub fn like(&self, target: &BlockId, min_bits: u32, max: usize) -> Vec<(BlockId, u32)> {
        let mut out = Vec::new();
        self.collect_nearest(target, *target, min_bits.min(256), max, &mut out);
        out
    }

    /// Appends the blocks of the subtree "first `depth` bits of `prefix`" in order of
    /// distance to `target`, until `out` has `max`. A subtree is a contiguous key range;
    /// a large one is split on its next bit, the half on `target`'s side first, so the
    /// work is proportional to the answer, not to the store.
    fn collect_nearest(
        &self,
        target: &BlockId,
        prefix: BlockId,
        depth: u32,
        max: usize,
        out: &mut Vec<(BlockId, u32)>,
    ) {
        if out.len() >= max {
            return;
        }
        let (lo, hi) = prefix.prefix_range(depth);
        let mut range = self.map.range(lo..=hi);
        // Each candidate's distance is computed once, as two integers that compare fast.
        let ranked = |(id, e): (&BlockId, &Entry)| (id.distance_key(target), *id, e.size);
        let mut head: Vec<((u128, u128), BlockId, u32)> =
            range.by_ref().take(LIKE_LEAF + 1).map(ranked).collect();
        if head.len() <= LIKE_LEAF || depth == 256 {
            head.extend(range.map(ranked));
            let want = max - out.len();
            if head.len() > want {
                head.select_nth_unstable_by_key(want, |e| e.0);
                head.truncate(want);
            }
            head.sort_unstable_by_key(|e| e.0);
            out.extend(head.into_iter().map(|(_, id, size)| (id, size)));
            return;
        }
        let near = prefix.with_bit(depth, target.bit(depth));
        let far = prefix.with_bit(depth, !target.bit(depth));
        self.collect_nearest(target, near, depth + 1, max, out);
        self.collect_nearest(target, far, depth + 1, max, out);
    }

    /// Up to `n` ids after `cursor` (from the start when None), in id order: a stable
    /// way to walk the whole store in pieces while it changes.
    pub fn ids_after(&self, cursor: Option<BlockId>, n: usize) -> Vec<BlockId> {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = cursor.map_or(Unbounded, Excluded);
        self.map
            .range((start, Unbounded))
            .take(n)
            .map(|(id, _)| *id)
            .collect()
    }
}

fn new_entry(valuer: &Valuer, size: u32, heat: f32, now: u32) -> Entry {
    Entry {
        size,
        heat: valuer.new_heat(heat, now),
        readers: AtomicU32::new(0),
    }
}

/// xorshift64*: cheap, good enough to pick eviction samples; not for secrets.
fn next_random(seed: &mut u64) -> u64 {
    let mut x = (*seed).max(1);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *seed = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn random_id(seed: &mut u64) -> BlockId {
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        chunk.copy_from_slice(&next_random(seed).to_be_bytes());
    }
    BlockId(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<BlockId> {
        (0..n as u32)
            .map(|i| BlockId::of(&i.to_le_bytes()))
            .collect()
    }

    /// Reference answer: sort everything by distance.
    fn brute_like(all: &[BlockId], t: &BlockId, bits: u32, max: usize) -> Vec<BlockId> {
        let mut v: Vec<BlockId> = all
            .iter()
            .copied()
            .filter(|id| id.match_score(t) >= bits)
            .collect();
        v.sort_by_key(|id| id.distance(t));
        v.truncate(max);
        v
    }

    #[test]
    fn like_matches_brute_force() {
        let all = ids(20_000);
        let index = Index::from_entries(all.iter().map(|id| (*id, 1)).collect(), valuer());
        for (i, bits, max) in [
            (0, 12, 100),
            (1, 4, 100),
            (2, 0, 300),
            (3, 8, 1),
            (4, 12, 0),
        ] {
            let target = BlockId::of(format!("target {i}").as_bytes());
            let got: Vec<BlockId> = index
                .like(&target, bits, max)
                .into_iter()
                .map(|e| e.0)
                .collect();
            assert_eq!(got, brute_like(&all, &target, bits, max), "case {i}");
        }
        // An id that is held comes first, at distance 0.
        let got = index.like(&all[5], 12, 3);
        assert_eq!(got[0].0, all[5]);
    }

    #[test]
    fn like_handles_dense_clusters() {
        // 3,000 ids sharing 20 leading bits with the target: the split path.
        let t = BlockId([0x3c; 32]);
        let all: Vec<BlockId> = ids(3_000)
            .into_iter()
            .map(|id| {
                let mut b = id.0;
                b[..2].copy_from_slice(&t.0[..2]);
                b[2] = (b[2] & 0x0f) | (t.0[2] & 0xf0);
                BlockId(b)
            })
            .collect();
        let index = Index::from_entries(all.iter().map(|id| (*id, 7)).collect(), valuer());
        let got: Vec<BlockId> = index.like(&t, 12, 100).into_iter().map(|e| e.0).collect();
        assert_eq!(got, brute_like(&all, &t, 12, 100));
    }

    fn valuer() -> Arc<Valuer> {
        Arc::new(Valuer::new(super::super::value::DEFAULT_HALF_LIFE))
    }

    fn empty() -> Index {
        Index::from_entries(Vec::new(), valuer())
    }

    #[test]
    fn eviction_prefers_the_least_requested_and_spares_protected_and_pinned() {
        let all = ids(1_000);
        let mut index = empty();
        for id in &all {
            index.insert(*id, 10, 0.0);
        }
        index.protect(all[0]);
        index.set_pinned(all[1], true);
        // Request everything but the first 100, so those are worth least.
        for id in &all[100..] {
            index.add_heat(id, 1.0);
        }
        let mut seed = 42;
        let mut cold = 0;
        for _ in 0..50 {
            let v = index.choose_victims(10, None, &mut seed).unwrap();
            assert_eq!(v.len(), 1);
            assert!(v[0] != all[0] && v[0] != all[1]);
            if all[..100].contains(&v[0]) {
                cold += 1;
            }
        }
        // Picking from 16 random samples, the cold tenth nearly always wins.
        assert!(cold >= 40, "only {cold}/50 victims were among the coldest");
        assert_eq!(index.locked_bytes(), 20);
        assert_eq!(
            index
                .choose_victims(9_980, None, &mut seed)
                .map(|v| v.len()),
            Ok(998)
        );
        assert_eq!(
            index.choose_victims(9_981, None, &mut seed),
            Err(NoRoom::Full)
        );
    }

    #[test]
    fn small_index_evicts_exactly_by_value_and_respects_worth() {
        let all = ids(5);
        let mut index = empty();
        for (i, id) in all.iter().enumerate() {
            index.insert(*id, 100, i as f32);
        }
        index.add_heat(&all[0], 10.0);
        let mut seed = 1;
        assert_eq!(index.choose_victims(100, None, &mut seed), Ok(vec![all[1]]));
        let mut two = index.choose_victims(150, None, &mut seed).unwrap();
        two.sort();
        let mut want = vec![all[1], all[2]];
        want.sort();
        assert_eq!(two, want);
        // A newcomer worth 2.5 (plus nearness) may displace the blocks of heat 1 and 2,
        // not the one of heat 3.
        let near = index
            .valuer
            .nearness(&all[1])
            .max(index.valuer.nearness(&all[2]));
        assert!(
            index
                .choose_victims(200, Some(2.5 + near), &mut seed)
                .is_ok()
        );
        assert_eq!(
            index.choose_victims(300, Some(2.5), &mut seed),
            Err(NoRoom::NotWorthIt)
        );
    }

    #[test]
    fn a_block_being_read_is_not_evicted() {
        let all = ids(3);
        let mut index = empty();
        for id in &all {
            index.insert(*id, 100, 0.0);
        }
        index.add_heat(&all[1], 5.0);
        index.add_heat(&all[2], 5.0);
        let reading = index.get(&all[0]).unwrap();
        reading.begin_read();
        let mut seed = 7;
        let v = index.choose_victims(100, None, &mut seed).unwrap();
        assert_ne!(v, vec![all[0]]);
        index.get(&all[0]).unwrap().end_read();
        assert_eq!(index.choose_victims(100, None, &mut seed), Ok(vec![all[0]]));
    }

    #[test]
    fn hottest_lists_blocks_by_heat() {
        let all = ids(10);
        let mut index = empty();
        for (i, id) in all.iter().enumerate() {
            index.insert(*id, 1, i as f32);
        }
        let hot: Vec<BlockId> = index.hottest(3, 5.0).into_iter().map(|h| h.0).collect();
        assert_eq!(hot, vec![all[9], all[8], all[7]]);
        assert_eq!(index.hottest(10, 8.5).len(), 1);
    }

    #[test]
    fn insert_remove_keep_byte_counts() {
        let mut index = empty();
        let id = BlockId::of(b"a");
        index.set_pinned(id, true);
        assert!(index.insert(id, 5, 0.0));
        assert!(!index.insert(id, 5, 0.0));
        assert_eq!(
            (index.len(), index.bytes(), index.locked_bytes()),
            (1, 5, 5)
        );
        index.set_pinned(id, false);
        assert_eq!(index.locked_bytes(), 0);
        index.protect(id);
        assert_eq!(index.locked_bytes(), 5);
        assert_eq!(index.remove(&id), Some(5));
        assert_eq!(
            (index.len(), index.bytes(), index.locked_bytes()),
            (0, 0, 0)
        );
    }

    #[test]
    fn pins_and_custody_lock_a_block_independently() {
        let all = ids(2);
        let mut index = empty();
        let (both, other) = (all[0], all[1]);
        index.insert(both, 100, 0.0);
        index.insert(other, 100, 0.0);
        let mut seed = 3;
        // Either order of ending: the block stays locked while the other flag lasts.
        for pin_ends_first in [true, false] {
            index.set_pinned(both, true);
            assert!(index.set_custody(both, true));
            assert_eq!((index.custody_bytes(), index.custody_blocks()), (100, 1));
            assert_eq!(index.locked_bytes(), 100);
            if pin_ends_first {
                index.set_pinned(both, false);
            } else {
                index.set_custody(both, false);
            }
            assert_eq!(
                index.locked_bytes(),
                100,
                "pin ends first: {pin_ends_first}"
            );
            assert_eq!(index.choose_victims(100, None, &mut seed), Ok(vec![other]));
            assert_eq!(
                index.choose_victims(200, None, &mut seed),
                Err(NoRoom::Full)
            );
            if pin_ends_first {
                index.set_custody(both, false);
            } else {
                index.set_pinned(both, false);
            }
            assert_eq!(index.locked_bytes(), 0);
            assert_eq!((index.custody_bytes(), index.custody_blocks()), (0, 0));
            assert_eq!(
                index.choose_victims(200, None, &mut seed).map(|v| v.len()),
                Ok(2)
            );
        }
        // Custody of a block not held counts once it arrives, and stops when it goes.
        let late = BlockId::of(b"late");
        index.set_custody(late, true);
        assert_eq!(index.custody_bytes(), 0);
        index.insert(late, 7, 0.0);
        assert_eq!((index.custody_bytes(), index.locked_bytes()), (7, 7));
        index.remove(&late);
        assert_eq!((index.custody_bytes(), index.custody_blocks()), (0, 0));
        assert_eq!(index.locked_bytes(), 0);
    }

    #[test]
    fn ids_after_walks_everything_once() {
        let all = ids(250);
        let index = Index::from_entries(all.iter().map(|id| (*id, 1)).collect(), valuer());
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = index.ids_after(cursor, 64);
            let Some(last) = page.last() else { break };
            cursor = Some(*last);
            seen.extend(page);
        }
        let mut want = all;
        want.sort();
        assert_eq!(seen, want);
    }
}
