//! Which large block files were hashed lately and have not changed since, so a read of
//! one may skip hashing it again. Hashing a 1 MiB block costs about half a millisecond
//! of a core, a third of what serving it costs; popular large blocks are read again and
//! again. Small blocks need none of this: once verified they are served from the hot
//! cache.
//!
//! What vouches for a file: its stamp (device, inode, modification and change times)
//! is the one it had when its bytes were hashed, and that was at most `TRUST_FOR` ago.
//! Any write to the file, a replacement or a `touch` moves the change time, which no
//! process can set back, so such a file is hashed again. A change time within
//! `SETTLE` of the hash is not trusted, since the kernel keeps change times at a coarse
//! tick and a write right after could leave the same one. What the stamp cannot see is
//! rot on the medium itself; the background scrub looks for that, and every file is
//! hashed again at most `TRUST_FOR` after its last good hash. Clients check every
//! block against its id in any case.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lru::LruCache;

use super::backend::FileStamp;
use crate::id::BlockId;

/// How long a good hash vouches for an unchanged file.
pub const TRUST_FOR: Duration = Duration::from_secs(60);

/// A file changed less than this before its hash is not vouched for (the kernel's
/// change times have a coarse granularity).
pub const SETTLE: Duration = Duration::from_secs(2);

/// Files remembered at most (about 100 bytes each: 1.6 MiB), least recently hashed
/// first out; 16 GiB of 1 MiB blocks.
pub const VERIFIED_FILES: usize = 16 * 1024;

/// Lately hashed files, bounded by count.
pub struct Verified {
    files: Mutex<LruCache<BlockId, (FileStamp, u64)>>,
}

impl Default for Verified {
    fn default() -> Verified {
        let cap =
            std::num::NonZeroUsize::new(VERIFIED_FILES).unwrap_or(std::num::NonZeroUsize::MIN);
        Verified {
            files: Mutex::new(LruCache::new(cap)),
        }
    }
}

/// Now, in milliseconds since the epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Verified {
    /// True when `id`'s file, now stamped `stamp`, had its bytes hashed to `id` less
    /// than `TRUST_FOR` ago and has not changed since.
    pub fn vouches(&self, id: &BlockId, stamp: &FileStamp) -> bool {
        let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        match files.peek(id) {
            Some((seen, at)) => {
                seen == stamp && now_ms().saturating_sub(*at) < TRUST_FOR.as_millis() as u64
            }
            None => false,
        }
    }

    /// Records that `id`'s file, stamped `stamp` when opened, hashed to `id` now; a file
    /// that changed within `SETTLE` is not recorded.
    pub fn record(&self, id: BlockId, stamp: FileStamp) {
        let now = now_ms();
        let changed_ms =
            (stamp.ctime.0.max(0) as u64) * 1000 + (stamp.ctime.1.max(0) as u64) / 1_000_000;
        if now.saturating_sub(changed_ms) < SETTLE.as_millis() as u64 {
            return;
        }
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        files.put(id, (stamp, now));
    }

    /// Forgets `id` (its block left the store).
    pub fn forget(&self, id: &BlockId) {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        files.pop(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ctime_secs: i64) -> FileStamp {
        FileStamp {
            dev: 1,
            ino: 2,
            mtime: (ctime_secs, 0),
            ctime: (ctime_secs, 5),
        }
    }

    fn secs_ago(n: u64) -> i64 {
        (now_ms() / 1000) as i64 - n as i64
    }

    #[test]
    fn only_an_unchanged_settled_file_is_vouched_for() {
        let v = Verified::default();
        let id = BlockId::of(b"x");
        let old = stamp(secs_ago(30));
        assert!(!v.vouches(&id, &old), "nothing hashed yet");
        v.record(id, old);
        assert!(v.vouches(&id, &old));
        // Any change of the file is another stamp.
        for changed in [
            FileStamp { ino: 3, ..old },
            FileStamp { dev: 9, ..old },
            FileStamp {
                mtime: (old.mtime.0 + 1, 0),
                ..old
            },
            FileStamp {
                ctime: (old.ctime.0, 6),
                ..old
            },
        ] {
            assert!(!v.vouches(&id, &changed), "{changed:?}");
        }
        v.forget(&id);
        assert!(!v.vouches(&id, &old));
        // A file changed just now is not vouched for even once hashed.
        let fresh = stamp(secs_ago(0));
        v.record(id, fresh);
        assert!(!v.vouches(&id, &fresh));
    }

    #[test]
    fn the_memory_is_bounded_by_count() {
        let v = Verified::default();
        let old = stamp(secs_ago(30));
        for i in 0..VERIFIED_FILES + 10 {
            v.record(BlockId::of(&i.to_le_bytes()), old);
        }
        assert_eq!(v.files.lock().unwrap().len(), VERIFIED_FILES);
        assert!(!v.vouches(&BlockId::of(&0usize.to_le_bytes()), &old));
    }
}
