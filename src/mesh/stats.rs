//! Per-block statistics (DESIGN 6): first and last request, requests, downloads (fetched
//! from peers), pushes in and out, purges (evictions), deletion. Kept for blocks
//! something happened to, held or not, in 16 shards so concurrent requests rarely meet
//! on a lock, and bounded by bytes (`STATS_BUDGET`): when a shard is full a quarter of
//! it goes, plain request counts that changed longest ago first (requests for absent
//! ids are anyone's to make up; downloads, pushes, purges and deletions are not). Plain
//! request counts have a smaller budget of their own (`PLAIN_BUDGET`): a flood of made-up
//! ids replaces older plain counts and never grows the tables past it. Whether a block is
//! held or pinned is the store's to say, not this.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::id::BlockId;

/// Most bytes the tracked entries' tables may take. Requests for absent ids each add an
/// entry, so anyone can fill the tables: they filled about 300 MB at the former cap of a
/// million entries. 32 MiB still tracks about 165,000 blocks.
pub const STATS_BUDGET: usize = 32 << 20;

/// Bytes of one bucket of a shard's table: key, value and control byte.
const BUCKET_BYTES: usize = std::mem::size_of::<BlockId>() + std::mem::size_of::<BlockStat>() + 1;

/// Bytes one tracked entry may cost: a table has up to 16/7 buckets per entry (it
/// doubles its buckets when 7/8 of them are full).
const ENTRY_COST: usize = BUCKET_BYTES * 16 / 7;

/// Most blocks tracked: what `STATS_BUDGET` pays for.
pub const MAX_TRACKED: usize = STATS_BUDGET / ENTRY_COST;

/// Most bytes the entries with nothing but requests may take (any id may be requested,
/// held or not, so anyone can make these up). At a 32 MiB share a million made-up ids
/// left the node 84 MiB above idle with the response signatures; 8 MiB still keeps the
/// request counts of about 41,000 blocks (held blocks' heat is kept by the store's
/// index regardless).
pub const PLAIN_BUDGET: usize = 8 << 20;

/// Most entries with nothing but requests: what `PLAIN_BUDGET` pays for.
pub const MAX_PLAIN: usize = PLAIN_BUDGET / ENTRY_COST;

const SHARDS: usize = 16;

/// What happened to one block. Times are unix seconds, 0 for never.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BlockStat {
    /// First request seen since start.
    pub first_request: u64,
    /// Latest request.
    pub last_request: u64,
    /// Requests (GET or HEAD, from clients and peers).
    pub requests: u64,
    /// Times it was fetched from a peer for a request here.
    pub downloads: u32,
    /// Times a peer pushed it here and it was kept.
    pub pushes_in: u32,
    /// Times this node pushed it to a peer that kept it.
    pub pushes_out: u32,
    /// Times it was evicted here.
    pub purges: u32,
    /// Deleted here by the operator (and not uploaded again since).
    pub deleted: bool,
    #[serde(skip)]
    touched: u64,
}

/// Which event to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A request for the block.
    Request,
    /// Fetched from a peer.
    Download,
    /// Kept after a peer pushed it.
    PushIn,
    /// A peer kept it after this node pushed it.
    PushOut,
    /// Evicted.
    Purge,
    /// Deleted by the operator.
    Delete,
    /// Uploaded by a client (clears `deleted`).
    Upload,
}

impl BlockStat {
    /// True when nothing but requests happened to it (anyone can make those up).
    fn is_plain(&self) -> bool {
        !self.deleted
            && self.downloads == 0
            && self.pushes_in == 0
            && self.pushes_out == 0
            && self.purges == 0
    }
}

/// The statistics of every tracked block.
pub struct Stats {
    shards: Vec<Mutex<Shard>>,
}

/// One shard: its entries and how many of them are plain (`BlockStat::is_plain`).
#[derive(Default)]
struct Shard {
    map: HashMap<BlockId, BlockStat>,
    plain: usize,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }
}

impl Stats {
    /// Records `event` for `id` at unix time `now`.
    pub fn record(&self, id: &BlockId, event: Event, now: u64) {
        let mut guard = self.shard(id);
        let shard = &mut *guard;
        if event == Event::Upload && !shard.map.get(id).is_some_and(|s| s.deleted) {
            return; // uploads are not tracked unless they undo a deletion
        }
        let was_plain = match shard.map.get(id) {
            Some(s) => s.is_plain(),
            None => {
                if shard.map.len() >= MAX_TRACKED / SHARDS {
                    shard.prune();
                }
                if event == Event::Request && shard.plain >= MAX_PLAIN / SHARDS {
                    shard.prune_plain();
                }
                false
            }
        };
        let s = shard.map.entry(*id).or_default();
        s.touched = now;
        match event {
            Event::Request => {
                if s.first_request == 0 {
                    s.first_request = now;
                }
                s.last_request = now;
                s.requests += 1;
            }
            Event::Download => s.downloads += 1,
            Event::PushIn => s.pushes_in += 1,
            Event::PushOut => s.pushes_out += 1,
            Event::Purge => s.purges += 1,
            Event::Delete => s.deleted = true,
            Event::Upload => s.deleted = false,
        }
        match (was_plain, s.is_plain()) {
            (false, true) => shard.plain += 1,
            (true, false) => shard.plain -= 1,
            _ => {}
        }
    }

    /// The statistics of `id`, if tracked.
    pub fn get(&self, id: &BlockId) -> Option<BlockStat> {
        self.shard(id).map.get(id).copied()
    }

    /// True when the operator deleted `id` here (so peers' pushes of it are refused).
    pub fn is_deleted(&self, id: &BlockId) -> bool {
        self.shard(id).map.get(id).is_some_and(|s| s.deleted)
    }

    /// Number of tracked blocks.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `limit` tracked blocks with ids after `after`, in id order, and the cursor
    /// for the next page (None at the end).
    pub fn page(
        &self,
        after: Option<BlockId>,
        limit: usize,
    ) -> (Vec<(BlockId, BlockStat)>, Option<BlockId>) {
        let mut all: Vec<(BlockId, BlockStat)> = Vec::new();
        for shard in &self.shards {
            all.extend(
                lock(shard)
                    .map
                    .iter()
                    .filter(|(id, _)| after.is_none_or(|a| **id > a))
                    .map(|(id, s)| (*id, *s)),
            );
        }
        let more = all.len() > limit;
        if more {
            all.select_nth_unstable_by_key(limit, |e| e.0);
            all.truncate(limit);
        }
        all.sort_unstable_by_key(|e| e.0);
        let next = if more { all.last().map(|e| e.0) } else { None };
        (all, next)
    }

    /// The `n` most requested tracked blocks, most first.
    pub fn top(&self, n: usize) -> Vec<(BlockId, BlockStat)> {
        let mut all: Vec<(BlockId, BlockStat)> = Vec::new();
        for shard in &self.shards {
            all.extend(lock(shard).map.iter().map(|(id, s)| (*id, *s)));
        }
        let key = |e: &(BlockId, BlockStat)| (std::cmp::Reverse(e.1.requests), e.0);
        if all.len() > n {
            all.select_nth_unstable_by_key(n, key);
            all.truncate(n);
        }
        all.sort_unstable_by_key(key);
        all
    }

    /// Bytes the tables take now: their buckets, full or not (a table's capacity is
    /// 7/8 of its buckets).
    pub fn footprint(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).map.capacity() * 8 / 7 * BUCKET_BYTES)
            .sum()
    }

    fn shard(&self, id: &BlockId) -> MutexGuard<'_, Shard> {
        lock(&self.shards[id.0[0] as usize % SHARDS])
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shard {
    /// Drops a quarter of a full shard: entries with nothing but requests first (anyone
    /// can make those up), then the ones with events; within each, those that changed
    /// longest ago. Deleted marks go last: they guard against re-pushes.
    fn prune(&mut self) {
        let mut ages: Vec<(bool, bool, u64, BlockId)> = self
            .map
            .iter()
            .map(|(id, s)| (s.deleted, !s.is_plain(), s.touched, *id))
            .collect();
        let drop = (ages.len() / 4).max(1);
        ages.select_nth_unstable(drop - 1);
        for (_, kept, _, id) in &ages[..drop] {
            self.map.remove(id);
            if !kept {
                self.plain -= 1;
            }
        }
    }

    /// Drops the quarter of the plain entries that changed longest ago.
    fn prune_plain(&mut self) {
        let mut ages: Vec<(u64, BlockId)> = self
            .map
            .iter()
            .filter(|(_, s)| s.is_plain())
            .map(|(id, s)| (s.touched, *id))
            .collect();
        if ages.is_empty() {
            return;
        }
        let drop = (ages.len() / 4).max(1);
        ages.select_nth_unstable(drop - 1);
        for (_, id) in &ages[..drop] {
            self.map.remove(id);
        }
        self.plain -= drop;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_add_up_and_pages_walk_everything() {
        let stats = Stats::default();
        let ids: Vec<BlockId> = (0..100u32).map(|i| BlockId::of(&i.to_le_bytes())).collect();
        for (i, id) in ids.iter().enumerate() {
            for t in 0..=i as u64 % 3 {
                stats.record(id, Event::Request, 10 + t);
            }
        }
        stats.record(&ids[0], Event::Download, 20);
        stats.record(&ids[0], Event::Purge, 21);
        let s = stats.get(&ids[2]).unwrap();
        assert_eq!((s.first_request, s.last_request, s.requests), (10, 12, 3));
        let s = stats.get(&ids[0]).unwrap();
        assert_eq!((s.downloads, s.purges, s.requests), (1, 1, 1));
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = stats.page(cursor, 30);
            seen.extend(page.into_iter().map(|e| e.0));
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let mut want = ids.clone();
        want.sort();
        assert_eq!(seen, want);
        assert!(stats.top(5).iter().all(|e| e.1.requests == 3));
    }

    #[test]
    fn delete_marks_until_an_upload() {
        let stats = Stats::default();
        let id = BlockId::of(b"d");
        stats.record(&id, Event::Upload, 1);
        assert!(stats.get(&id).is_none(), "plain uploads are not tracked");
        stats.record(&id, Event::Delete, 2);
        assert!(stats.is_deleted(&id));
        stats.record(&id, Event::Upload, 3);
        assert!(!stats.is_deleted(&id));
    }

    #[test]
    fn a_full_shard_drops_its_oldest_entries() {
        let mut shard = Shard::default();
        for i in 0..8u64 {
            let s = BlockStat {
                touched: i,
                purges: u32::from(i % 2 == 0),
                ..BlockStat::default()
            };
            shard.map.insert(BlockId::of(&i.to_le_bytes()), s);
        }
        shard.plain = 4;
        shard.prune();
        assert_eq!((shard.map.len(), shard.plain), (6, 2));
        // The two oldest plain entries went, though events older than them exist.
        assert!(shard.map.values().all(|s| !s.is_plain() || s.touched >= 5));
        shard.prune_plain();
        assert_eq!((shard.map.len(), shard.plain), (5, 1));
        assert!(shard.map.values().all(|s| !s.is_plain() || s.touched == 7));
    }

    #[test]
    fn made_up_ids_stay_within_the_plain_budget_and_events_keep_their_room() {
        let stats = Stats::default();
        for i in 0..(3 * MAX_PLAIN) as u64 {
            stats.record(&BlockId::of(&i.to_le_bytes()), Event::Request, 1 + i);
        }
        assert!(stats.len() <= MAX_PLAIN, "{} entries", stats.len());
        assert!(
            stats.footprint() <= PLAIN_BUDGET,
            "{} bytes of made-up requests",
            stats.footprint()
        );
        // Entries with events are not held to the plain share, and a request turned
        // into a download leaves it.
        let downloaded: Vec<BlockId> = (0..MAX_PLAIN as u64 + 100)
            .map(|i| BlockId::of(&(u64::MAX - i).to_le_bytes()))
            .collect();
        for id in &downloaded {
            stats.record(id, Event::Request, 1 << 40);
            stats.record(id, Event::Download, 1 << 40);
        }
        assert!(downloaded.iter().all(|id| stats.get(id).is_some()));
        let plain: usize = stats.shards.iter().map(|s| lock(s).plain).sum();
        let counted = stats
            .page(None, usize::MAX)
            .0
            .iter()
            .filter(|e| e.1.is_plain())
            .count();
        assert_eq!(plain, counted);
        assert!(plain <= MAX_PLAIN);
    }

    #[test]
    fn requests_for_made_up_ids_stay_within_the_byte_budget() {
        let stats = Stats::default();
        let kept = BlockId::of(b"downloaded");
        stats.record(&kept, Event::Download, 1);
        for i in 0..(3 * MAX_TRACKED) as u64 {
            stats.record(&BlockId::of(&i.to_le_bytes()), Event::Request, 2 + i);
        }
        assert!(stats.len() <= MAX_TRACKED, "{} entries", stats.len());
        assert!(
            stats.footprint() <= STATS_BUDGET,
            "{} bytes",
            stats.footprint()
        );
        assert!(
            stats.get(&kept).is_some(),
            "made-up requests pushed out a download"
        );
    }
}
