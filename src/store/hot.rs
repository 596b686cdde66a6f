//! The hot cache: recently read small blocks kept in memory, so that popular blocks are
//! served without opening a file. Holds only bytes that were verified against their id
//! when read; bounded in bytes; least recently used entries go first. The store removes
//! an entry whenever it removes the block from its index (eviction, quarantine).

use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use lru::LruCache;

use crate::id::BlockId;

/// Largest block kept: small blocks gain most from skipping the file system (for large
/// ones, copying the bytes to the socket dominates), and many fit.
pub const HOT_MAX_BLOCK: usize = 64 * 1024;

struct Inner {
    lru: LruCache<BlockId, Bytes>,
    bytes: u64,
}

/// A byte-bounded LRU map from id to verified block bytes.
pub struct HotCache {
    inner: Mutex<Inner>,
    capacity: u64,
}

impl HotCache {
    /// A cache holding at most `capacity` bytes of blocks (0 turns it off).
    pub fn new(capacity: u64) -> HotCache {
        HotCache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            capacity,
        }
    }

    /// The bytes of `id`, if cached (and marks them recently used).
    pub fn get(&self, id: &BlockId) -> Option<Bytes> {
        if self.capacity == 0 {
            return None;
        }
        self.lock().lru.get(id).cloned()
    }

    /// Caches verified `bytes` of `id` if they are small enough, evicting as needed.
    pub fn insert(&self, id: BlockId, bytes: Bytes) {
        let size = bytes.len() as u64;
        if bytes.len() > HOT_MAX_BLOCK || size > self.capacity {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.lru.put(id, bytes) {
            inner.bytes -= old.len() as u64;
        }
        inner.bytes += size;
        while inner.bytes > self.capacity {
            match inner.lru.pop_lru() {
                Some((_, evicted)) => inner.bytes -= evicted.len() as u64,
                None => break,
            }
        }
    }

    /// Drops `id` from the cache.
    pub fn remove(&self, id: &BlockId) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.lru.pop(id) {
            inner.bytes -= old.len() as u64;
        }
    }

    /// Bytes cached now.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_bytes_lru_first() {
        let cache = HotCache::new(10_000);
        let ids: Vec<BlockId> = (0..4u8).map(|i| BlockId::of(&[i])).collect();
        for id in &ids[..3] {
            cache.insert(*id, Bytes::from(vec![0u8; 4000]));
        }
        // Three 4000-byte entries do not fit in 10,000: the oldest went.
        assert_eq!(cache.bytes(), 8000);
        assert!(cache.get(&ids[0]).is_none());
        assert!(cache.get(&ids[1]).is_some());
        cache.insert(ids[3], Bytes::from(vec![0u8; 4000]));
        // ids[1] was just used, so ids[2] went.
        assert!(cache.get(&ids[1]).is_some() && cache.get(&ids[2]).is_none());
        cache.remove(&ids[1]);
        assert_eq!(cache.bytes(), 4000);
        cache.insert(ids[0], Bytes::from(vec![0u8; HOT_MAX_BLOCK + 1]));
        assert!(cache.get(&ids[0]).is_none());
        let off = HotCache::new(0);
        off.insert(ids[0], Bytes::from_static(b"x"));
        assert!(off.get(&ids[0]).is_none());
    }
}
