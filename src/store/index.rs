//! The in-memory index of a store: every held block's id, size, recency and verification
//! mark, in one ordered map. Ordered so that LIKE queries walk only the ids near their
//! target; compact (one `BTreeMap` entry, about 60 bytes a block) so a million blocks fit
//! in well under 100 MB. No I/O: the store keeps it in step with the files.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::id::BlockId;

/// Blocks sampled for each eviction: the least recently used of them goes (Redis-style
/// approximated LRU: O(k log n) per eviction, no per-block list to keep in memory).
pub const EVICTION_SAMPLES: usize = 16;

/// A subtree of the id space this small is ranked whole rather than split further (a
/// million random ids put about 250 under each 12-bit prefix: one pass).
const LIKE_LEAF: usize = 512;

/// What the index knows of one block.
#[derive(Debug)]
pub struct Entry {
    size: u32,
    /// Logical clock value of the last read or write; higher is more recent.
    last_used: AtomicU64,
    /// mtime (ns since the epoch, never 0) of the file when its bytes were last hashed
    /// and found to match the id; 0 when not verified since start-up.
    verified_mtime: AtomicU64,
}

impl Entry {
    /// The block's size in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The file mtime at the last successful verification, or 0.
    pub fn verified_mtime(&self) -> u64 {
        self.verified_mtime.load(Ordering::Relaxed)
    }

    /// Records that the file with this mtime hashed to its id.
    pub fn mark_verified(&self, mtime: u64) {
        self.verified_mtime.store(mtime.max(1), Ordering::Relaxed);
    }
}

/// Every block the store holds.
#[derive(Debug, Default)]
pub struct Index {
    map: BTreeMap<BlockId, Entry>,
    bytes: u64,
    /// Bytes promised to writes in progress; counted against the quota.
    reserved: u64,
    /// Blocks that are never evicted (the node's identity block; pins later).
    protected: HashSet<BlockId>,
    clock: AtomicU64,
}

impl Index {
    /// Builds an index of unverified blocks from (id, size) pairs in any order.
    pub fn from_entries(mut entries: Vec<(BlockId, u32)>) -> Index {
        // Sorted input lets BTreeMap bulk-build full nodes: about a third less memory
        // than inserting in directory order.
        entries.sort_unstable_by_key(|e| e.0);
        entries.dedup_by_key(|e| e.0);
        let bytes = entries.iter().map(|e| u64::from(e.1)).sum();
        let map = entries
            .into_iter()
            .map(|(id, size)| (id, new_entry(size, 0, 0)))
            .collect();
        Index {
            map,
            bytes,
            ..Index::default()
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

    /// The entry of `id`, marked as just used.
    pub fn touch(&self, id: &BlockId) -> Option<&Entry> {
        let entry = self.map.get(id)?;
        entry.last_used.store(self.tick(), Ordering::Relaxed);
        Some(entry)
    }

    /// The entry of `id`, without changing its recency.
    pub fn peek(&self, id: &BlockId) -> Option<&Entry> {
        self.map.get(id)
    }

    /// Adds a block whose bytes were verified with file mtime `mtime`. Returns false
    /// (and changes nothing but recency) if it was already there.
    pub fn insert(&mut self, id: BlockId, size: u32, mtime: u64) -> bool {
        if self.touch(&id).is_some() {
            return false;
        }
        let tick = self.tick();
        self.map.insert(id, new_entry(size, tick, mtime));
        self.bytes += u64::from(size);
        true
    }

    /// Removes a block; returns its size if it was there.
    pub fn remove(&mut self, id: &BlockId) -> Option<u32> {
        let entry = self.map.remove(id)?;
        self.bytes -= u64::from(entry.size);
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

    /// Marks `id` as never to be evicted.
    pub fn protect(&mut self, id: BlockId) {
        self.protected.insert(id);
    }

    /// Picks blocks to evict, least recently used first (approximately), freeing at least
    /// `need` bytes. None when that cannot be done without touching protected blocks.
    pub fn choose_victims(&self, need: u64, seed: &mut u64) -> Option<Vec<BlockId>> {
        let evictable: u64 = self.bytes
            - self
                .protected
                .iter()
                .filter_map(|id| self.map.get(id))
                .map(|e| u64::from(e.size))
                .sum::<u64>();
        if evictable < need {
            return None;
        }
        let mut chosen: HashSet<BlockId> = HashSet::new();
        let mut freed = 0u64;
        while freed < need {
            let victim = self.sample_oldest(seed, &chosen)?;
            freed += u64::from(self.map[&victim].size);
            chosen.insert(victim);
        }
        Some(chosen.into_iter().collect())
    }

    /// The least recently used of a few evictable blocks (all of them when few).
    fn sample_oldest(&self, seed: &mut u64, skip: &HashSet<BlockId>) -> Option<BlockId> {
        let eligible = |id: &BlockId| !self.protected.contains(id) && !skip.contains(id);
        let by_age = |(id, e): (&BlockId, &Entry)| (e.last_used.load(Ordering::Relaxed), *id);
        if self.map.len() <= EVICTION_SAMPLES * 4 {
            return self
                .map
                .iter()
                .filter(|(id, _)| eligible(id))
                .map(by_age)
                .min()
                .map(|(_, id)| id);
        }
        let mut best: Option<(u64, BlockId)> = None;
        let mut sampled = 0;
        // Bounded: the caller checked that evictable bytes exist, and with more than 64
        // blocks a few hundred draws find the samples (or at least one candidate).
        for _ in 0..EVICTION_SAMPLES * 16 {
            let probe = random_id(seed);
            let found = self
                .map
                .range(probe..)
                .next()
                .or_else(|| self.map.iter().next());
            if let Some((id, e)) = found.filter(|(id, _)| eligible(id)) {
                let candidate = by_age((id, e));
                best = Some(best.map_or(candidate, |b| b.min(candidate)));
                sampled += 1;
                if sampled == EVICTION_SAMPLES {
                    break;
                }
            }
        }
        best.map(|(_, id)| id)
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
        let ranked = |(id, e): (&BlockId, &Entry)| (distance_key(id, target), *id, e.size);
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

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// XOR distance of two ids as a (high, low) pair of big-endian integers: orders exactly as
/// `BlockId::distance` does, without a 32-byte memcmp per comparison.
fn distance_key(a: &BlockId, b: &BlockId) -> (u128, u128) {
    let d = a.distance(b).0;
    let mut hi = [0u8; 16];
    let mut lo = [0u8; 16];
    hi.copy_from_slice(&d[..16]);
    lo.copy_from_slice(&d[16..]);
    (u128::from_be_bytes(hi), u128::from_be_bytes(lo))
}

fn new_entry(size: u32, tick: u64, mtime: u64) -> Entry {
    Entry {
        size,
        last_used: AtomicU64::new(tick),
        verified_mtime: AtomicU64::new(mtime),
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
        let index = Index::from_entries(all.iter().map(|id| (*id, 1)).collect());
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
        let index = Index::from_entries(all.iter().map(|id| (*id, 7)).collect());
        let got: Vec<BlockId> = index.like(&t, 12, 100).into_iter().map(|e| e.0).collect();
        assert_eq!(got, brute_like(&all, &t, 12, 100));
    }

    #[test]
    fn eviction_prefers_least_recently_used_and_spares_protected() {
        let all = ids(1_000);
        let mut index = Index::default();
        for id in &all {
            index.insert(*id, 10, 1);
        }
        index.protect(all[0]);
        // Touch everything but the first 100 again, so those are oldest.
        for id in &all[100..] {
            index.touch(id);
        }
        let mut seed = 42;
        let mut old = 0;
        for _ in 0..50 {
            let v = index.choose_victims(10, &mut seed).unwrap();
            assert_eq!(v.len(), 1);
            assert_ne!(v[0], all[0]);
            if all[..100].contains(&v[0]) {
                old += 1;
            }
        }
        // Picking from 16 random samples, the oldest tenth nearly always wins.
        assert!(old >= 40, "only {old}/50 victims were among the oldest");
        assert_eq!(index.choose_victims(10_000, &mut seed), None);
    }

    #[test]
    fn small_index_evicts_exactly_in_lru_order() {
        let all = ids(5);
        let mut index = Index::default();
        for id in &all {
            index.insert(*id, 100, 1);
        }
        index.touch(&all[0]);
        let mut seed = 1;
        assert_eq!(index.choose_victims(100, &mut seed), Some(vec![all[1]]));
        let mut two = index.choose_victims(150, &mut seed).unwrap();
        two.sort();
        let mut want = vec![all[1], all[2]];
        want.sort();
        assert_eq!(two, want);
    }

    #[test]
    fn insert_remove_keep_byte_count() {
        let mut index = Index::default();
        let id = BlockId::of(b"a");
        assert!(index.insert(id, 5, 1));
        assert!(!index.insert(id, 5, 1));
        assert_eq!((index.len(), index.bytes()), (1, 5));
        assert_eq!(index.remove(&id), Some(5));
        assert_eq!((index.len(), index.bytes()), (0, 0));
    }

    #[test]
    fn ids_after_walks_everything_once() {
        let all = ids(250);
        let index = Index::from_entries(all.iter().map(|id| (*id, 1)).collect());
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
