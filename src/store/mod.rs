//! The block store (DESIGN 7): one file per block under `blocks/ab/cd/<id>`, written
//! crash-safely, indexed in memory, capped by a quota, guarded by a lock file. The same
//! logic runs over memory instead (`Store::in_memory`): where the bytes live is the
//! backend's business (`backend.rs`, `disk.rs`, `memory.rs`), everything else is here.
//!
//! Owns every file under the store directory except the identity's key and the admin
//! token. Knows ids and bytes; knows nothing of HTTP, peers or signatures. All methods
//! do blocking I/O: async callers run them on a blocking thread.
//!
//! Invariants:
//! - A file under `blocks/` only ever appears by rename of a fully written, fsynced temp
//!   file, followed by an fsync of its directory (`disk.rs`); `put` returns after that,
//!   not before.
//! - The index holds exactly the blocks whose files were present at start-up or written
//!   since, minus those evicted or quarantined.
//! - Bytes leave the store only if they hashed to their id in the read that took them
//!   from the file (or, for the hot cache, in the read that put them there): a file can
//!   rot or be replaced without its mtime changing. A mismatch, or anything but a
//!   regular file in a block's place, is moved to `quarantine/` and forgotten.

mod backend;
mod buffers;
mod custody;
mod disk;
mod hot;
mod index;
mod lock;
mod memory;
mod pins;
mod value;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

pub use custody::{
    CustodyBook, DEFAULT_CUSTODY_PERCENT, Kept, MAX_LEASE_SECS, clamp_until, share_of,
};
pub use hot::{HOT_MAX_BLOCK, HotCache};
pub use index::{EVICTION_SAMPLES, Entry, Index, NoRoom};
pub use lock::{LOCK_FILE, StoreLock};
pub use pins::{ADMIN_HOLDER, BadHolder, Holder, MAX_HOLDER_LEN, PinBook, UPLOAD_HOLDER};
pub use value::{DEFAULT_HALF_LIFE, NEAR_BONUS, Valuer};

use crate::fsutil;
use crate::id::{BlockId, MAX_BLOCK_SIZE};
use backend::{Backend, FileRead};
use buffers::BufferPool;
use disk::DiskFiles;
use memory::MemoryFiles;

/// Directory of block files, fanned out by the first two bytes of the id.
pub const BLOCKS_DIR: &str = "blocks";
/// Suffix of a write in progress: `blocks/ab/cd/.<id>.<pid>.<n>.tmp`, next to its
/// final name (so writers spread over the fan-out directories instead of contending for
/// one, and the rename stays in one directory). Removed at start-up if left by a crash.
pub const TEMP_SUFFIX: &str = ".tmp";
/// Directory where blocks whose bytes no longer match their id are moved.
pub const QUARANTINE_DIR: &str = "quarantine";

/// File in the store holding the node's admin bearer token (0600), created at first
/// start by the node; named here with the store's other files so the config (which
/// knows where the store is) and the node agree without knowing each other.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// File listing pins, one `<id> <holder>` line each; rewritten whole (see `pins`).
pub const PINS_FILE: &str = "pins";

/// File listing custody leases, one `<id> <until>` line each; rewritten whole (see
/// `custody`).
pub const CUSTODY_FILE: &str = "custody";

/// Default size of the hot cache of small blocks.
pub const DEFAULT_HOT_CACHE: u64 = 64 << 20;

/// Most threads used to scan the store at start-up.
const SCAN_THREADS: usize = 4;

/// Heat (decayed requests) from which an evicted block outside this node's region is
/// still handed off rather than just deleted: about one request within a half-life (an
/// upload counts as one). Colder blocks outside the region are what eviction is for.
pub const HANDOFF_MIN_HEAT: f32 = 0.5;

/// Most bytes of evicted blocks one put reads back for hand-off. The victims of a put
/// free about the new block's size (at most `MAX_BLOCK_SIZE`, plus the last victim's
/// overshoot), so two blocks' worth covers them; the bound only makes that explicit.
pub const HANDOFF_BYTES_PER_PUT: usize = 2 * MAX_BLOCK_SIZE;

/// Seed of a memory store's eviction sampling: fixed, so that a simulation replays the
/// same evictions run after run (any value does; this one spells "libernet").
const MEMORY_SEED: u64 = u64::from_le_bytes(*b"libernet");

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// What the file system said.
        source: io::Error,
    },
    /// Another process holds the store's lock.
    #[error(
        "store {} is in use by another libernet process (pid {holder}); stop it or use another --store",
        store.display()
    )]
    Locked {
        /// The store directory.
        store: PathBuf,
        /// The pid written by the holder.
        holder: String,
    },
    /// The quota leaves no room, even after evicting everything evictable.
    #[error("store full: {need} bytes needed beyond the quota of {quota}")]
    Full {
        /// Bytes that could not be found.
        need: u64,
        /// The quota.
        quota: u64,
    },
    /// A block over 1 MiB.
    #[error("a block is at most {MAX_BLOCK_SIZE} bytes, got {0}")]
    TooLarge(usize),
    /// Room could only be made by evicting blocks worth more than the newcomer.
    #[error("declined: every block that could make room is worth more")]
    Declined,
    /// Keeping the block in custody would take custody copies past the share of the
    /// quota the operator gave them. Nothing was changed.
    #[error(
        "custody share full: {size} more bytes would pass the share of {share} ({used} in custody)"
    )]
    CustodyFull {
        /// Bytes of the block.
        size: u64,
        /// Bytes in custody (and custody admissions being written).
        used: u64,
        /// The custody share.
        share: u64,
    },
    /// The block may not be deleted (the node's identity block, a peer's).
    #[error("block {0} is protected")]
    Protected(BlockId),
    /// The file system holding the store has no room left (`ENOSPC`, or a disk quota),
    /// whatever the store's own quota says. Nothing was changed.
    #[error("{context}: the file system is full: {source}")]
    DiskFull {
        /// What the store was doing.
        context: String,
        /// What the file system said.
        source: io::Error,
    },
}

/// What a `put` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The block is new and now durable.
    Stored,
    /// The block was already held.
    AlreadyHeld,
}

/// When a pin change must reach the pins file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Before the call returns.
    Now,
    /// At the next `flush_pins` (the node flushes every few seconds and at shutdown):
    /// for pins made with each uploaded block, where a rewrite per block would cost more
    /// than the upload. A crash may forget such a pin, never a block.
    Soon,
}

/// What a `read` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The block's bytes, which hash to its id.
    Found(Bytes),
    /// Not held.
    Absent,
    /// Held, but its bytes no longer matched its id: moved to quarantine, not returned.
    Quarantined,
}

/// Figures for `/node` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// Blocks held.
    pub blocks: u64,
    /// Sum of their sizes.
    pub bytes: u64,
    /// The quota.
    pub quota: u64,
    /// Bytes of held blocks that are pinned, in custody or protected (never evicted).
    pub pinned_bytes: u64,
    /// Bytes of held blocks in custody.
    pub custody_bytes: u64,
    /// Held blocks in custody.
    pub custody_blocks: u64,
    /// Most bytes custody copies may take.
    pub custody_share: u64,
    /// Blocks evicted to make room since start.
    pub evictions: u64,
    /// Blocks quarantined since start.
    pub quarantined: u64,
    /// Bytes in the hot cache.
    pub hot_cache_bytes: u64,
}

/// One step of a background scrub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrubStep {
    /// Where to continue; None when the walk reached the end.
    pub next: Option<BlockId>,
    /// Blocks looked at.
    pub blocks: u64,
    /// Bytes read and hashed.
    pub bytes: u64,
    /// Blocks found corrupt and quarantined.
    pub quarantined: Vec<BlockId>,
}

/// Size limits of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most bytes of blocks kept on disk.
    pub quota: u64,
    /// Most bytes of small blocks kept in memory (0: no hot cache).
    pub hot_cache: u64,
    /// Half-life of a request's weight in a block's value.
    pub half_life: std::time::Duration,
    /// Most bytes of the quota that blocks in custody may take (see `Store::keep`).
    pub custody_share: u64,
}

/// How a `put_with` may make room.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admission {
    /// Heat (request count) the new block starts with.
    pub heat: f32,
    /// When true, only blocks worth less than the newcomer may be evicted for it
    /// (pushes and pulls); when false, any unpinned block may (a client's PUT).
    pub must_be_worth_it: bool,
    /// When set, the block is kept in custody until this unix time (cut to
    /// `MAX_LEASE_SECS` from now), marked before it is stored: any unkept block may be
    /// evicted for it whatever `must_be_worth_it` says, and it is refused with
    /// `CustodyFull` beyond the custody share.
    pub keep_until: Option<u64>,
}

impl Admission {
    /// A client's upload: counts as one request, evicts whatever is least valuable.
    pub const UPLOAD: Admission = Admission {
        heat: 1.0,
        must_be_worth_it: false,
        keep_until: None,
    };
}

/// What a `put_with` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Put {
    /// Stored or already there.
    pub outcome: PutOutcome,
    /// Blocks evicted to make room.
    pub evicted: Vec<BlockId>,
    /// Of those, the ones worth handing off to another node (in this node's region, or
    /// at least `HANDOFF_MIN_HEAT` warm), most valuable first, with their bytes read
    /// back before their files were deleted: at most `HANDOFF_BYTES_PER_PUT` bytes.
    pub handed: Vec<Handed>,
}

/// What admitting one block of a put decided (see `Store::admit`).
enum Plan {
    /// Already held: nothing to write.
    Held,
    /// Room made and `len` bytes reserved: write it.
    Write {
        /// Evicted to make room (out of the index; files deleted next).
        victims: Vec<Victim>,
        /// The custody lease this put made or extended, if it asked for one.
        kept: Option<Kept>,
        /// The block's size.
        len: u64,
    },
}

/// An evicted block whose bytes the caller may place elsewhere (see `Put::handed`).
#[derive(Debug, Clone, PartialEq)]
pub struct Handed {
    /// The block's id.
    pub id: BlockId,
    /// Its bytes; they hashed to `id` when read back.
    pub bytes: Bytes,
    /// Its heat here when it was evicted.
    pub heat: f32,
}

/// A block chosen for eviction, as `make_room` saw it before taking it out.
struct Victim {
    id: BlockId,
    size: u32,
    /// Its worth here when it is a hand-off candidate (its heat and its value).
    candidate: Option<(f32, f32)>,
    /// Its bytes, when the hot cache had them.
    cached: Option<Bytes>,
}

impl StoreLimits {
    /// A quota with the default hot cache and custody share.
    pub fn quota(quota: u64) -> StoreLimits {
        StoreLimits {
            quota,
            hot_cache: DEFAULT_HOT_CACHE,
            half_life: DEFAULT_HALF_LIFE,
            custody_share: share_of(quota, DEFAULT_CUSTODY_PERCENT),
        }
    }
}

/// A block store over one directory, or over memory.
pub struct Store {
    /// Where the blocks and the pins file are.
    files: Box<dyn Backend>,
    quota: u64,
    index: RwLock<Index>,
    valuer: Arc<Valuer>,
    /// Who pins what; its lock also serialises rewrites of the pins file, and is taken
    /// before the index's.
    pins: Mutex<PinBook>,
    /// Custody leases; its lock also serialises rewrites of the custody file, and is
    /// taken before the index's (never together with the pins' lock).
    custody: Mutex<CustodyBook>,
    custody_share: u64,
    hot: HotCache,
    buffers: Arc<BufferPool>,
    rng: Mutex<u64>,
    evictions: AtomicU64,
    quarantined: AtomicU64,
}

impl Store {
    /// Opens (creating if needed) the store at `root`: takes the lock, removes stale
    /// temp files and rebuilds the index from the block files.
    pub fn open(root: &Path, limits: StoreLimits) -> Result<Store, StoreError> {
        let files = DiskFiles::open(root)?;
        let mut seed = [0u8; 8];
        fsutil::random_bytes(&mut seed).map_err(io_err("random seed".into()))?;
        Store::over(Box::new(files), limits, u64::from_le_bytes(seed))
    }

    /// An empty store held in memory only (no directory, no lock, no `disk_free`), with
    /// the disk store's logic: for tests, and for simulations running many stores in one
    /// process. Its eviction sampling starts from a fixed seed, so that the same calls
    /// evict the same blocks on every run. Reads copy the bytes out of memory, so a hot
    /// cache (`limits.hot_cache`) only holds second copies; 0 turns it off.
    pub fn in_memory(limits: StoreLimits) -> Store {
        match Store::over(Box::<MemoryFiles>::default(), limits, MEMORY_SEED) {
            Ok(store) => store,
            // An empty memory backend lists nothing and has no files to read.
            Err(e) => unreachable!("a memory store cannot fail to open: {e}"),
        }
    }

    /// The store over `files`: rebuilds the index from the blocks and the pins there.
    fn over(files: Box<dyn Backend>, limits: StoreLimits, seed: u64) -> Result<Store, StoreError> {
        let valuer = Arc::new(Valuer::new(limits.half_life));
        let store = Store {
            files,
            quota: limits.quota,
            index: RwLock::new(Index::from_entries(Vec::new(), valuer.clone())),
            valuer: valuer.clone(),
            pins: Mutex::new(PinBook::default()),
            custody: Mutex::new(CustodyBook::default()),
            custody_share: limits.custody_share,
            hot: HotCache::new(limits.hot_cache),
            buffers: Arc::new(BufferPool::default()),
            rng: Mutex::new(seed),
            evictions: AtomicU64::new(0),
            quarantined: AtomicU64::new(0),
        };
        let entries = store.files.scan()?;
        let mut index = Index::from_entries(entries, valuer);
        let book = store.read_pins()?;
        for id in book.ids() {
            index.set_pinned(id, true);
        }
        let leases = store.read_custody()?;
        for id in leases.ids() {
            index.set_custody(id, true);
        }
        *store.write_index() = index;
        *store.lock_pins() = book;
        *store.lock_custody() = leases;
        Ok(store)
    }

    /// The store directory; None for a store in memory.
    pub fn root(&self) -> Option<&Path> {
        self.files.root()
    }

    /// The size of `id` if held.
    pub fn contains(&self, id: &BlockId) -> Option<u32> {
        self.read_index().get(id).map(Entry::size)
    }

    /// The bytes of `id`, guaranteed to hash to `id`. Small blocks come from the hot
    /// cache when they are in it.
    pub fn read(&self, id: &BlockId) -> Result<ReadOutcome, StoreError> {
        let Some(size) = self.begin_read(id) else {
            return Ok(ReadOutcome::Absent);
        };
        let outcome = self.read_held(id, size);
        if let Some(e) = self.read_index().get(id) {
            e.end_read();
        }
        outcome
    }

    /// Size of `id`, marked as being read (so not evicted until `end_read`).
    fn begin_read(&self, id: &BlockId) -> Option<u32> {
        let index = self.read_index();
        let e = index.get(id)?;
        e.begin_read();
        Some(e.size())
    }

    /// Reads a held block from the hot cache or its file. Every read from the file is
    /// hashed before the bytes are returned: a file's bytes can rot, or be replaced,
    /// without its mtime changing, so no earlier check vouches for them. (SHA-256 costs
    /// about 1 ms per MiB on one core; blocks of `HOT_MAX_BLOCK` or less are hashed once
    /// and then served from the hot cache.)
    fn read_held(&self, id: &BlockId, size: u32) -> Result<ReadOutcome, StoreError> {
        if let Some(bytes) = self.hot.get(id) {
            return Ok(ReadOutcome::Found(bytes));
        }
        let large = size as usize > HOT_MAX_BLOCK;
        let buf = if large {
            self.buffers.take()
        } else {
            Vec::with_capacity(size as usize + 1)
        };
        let bytes = match self.files.read(id, size, buf)? {
            FileRead::Bytes(bytes) => bytes,
            FileRead::Odd(reason, buf) => {
                self.buffers.give_back(buf);
                return Ok(self.quarantine(id, reason));
            }
            FileRead::Gone => {
                // Evicted since the index lookup, or removed behind our back.
                self.forget(id);
                return Ok(ReadOutcome::Absent);
            }
        };
        if BlockId::of(&bytes) != *id {
            self.buffers.give_back(bytes);
            return Ok(self.quarantine(id, "bytes do not hash to the id"));
        }
        if large {
            return Ok(ReadOutcome::Found(self.buffers.share(bytes)));
        }
        let bytes = Bytes::from(bytes);
        self.hot.insert(*id, bytes.clone());
        Ok(ReadOutcome::Found(bytes))
    }

    /// Stores `bytes` as block `id` durably as a client upload (see
    /// `Admission::UPLOAD`).
    pub fn put(&self, id: &BlockId, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        self.put_with(id, bytes, Admission::UPLOAD)
            .map(|p| p.outcome)
    }

    /// Stores `bytes` as block `id` durably, evicting the least valuable unkept blocks
    /// when the quota requires it and `admission` allows it. The caller guarantees
    /// `sha256(bytes) == id`. With `admission.keep_until`, the block is put in custody
    /// under the same index lock that admits it, before it is written, so no eviction can
    /// come between the two; a block already held is put in custody as `keep` would.
    pub fn put_with(
        &self,
        id: &BlockId,
        bytes: &[u8],
        admission: Admission,
    ) -> Result<Put, StoreError> {
        self.put_many(&[(*id, bytes, admission)])
            .pop()
            .unwrap_or_else(|| Err(StoreError::TooLarge(bytes.len())))
    }

    /// Stores many blocks as `put_with` stores one, each with its admission, with one
    /// group commit: every block is admitted (evicting as needed), then all are written
    /// and made durable together (see `Backend::write_many`). Returns one result per
    /// block, in order; a block is `Stored` only once it survives a crash. The caller
    /// guarantees each hashes to its id. A block listed twice is stored once and
    /// `AlreadyHeld` the second time.
    pub fn put_many(&self, blocks: &[(BlockId, &[u8], Admission)]) -> Vec<Result<Put, StoreError>> {
        let plans: Vec<Result<Plan, StoreError>> = blocks
            .iter()
            .map(|(id, bytes, admission)| self.admit(id, bytes, *admission))
            .collect();
        let mut handed = Vec::with_capacity(plans.len());
        for plan in &plans {
            let (evicted, read) = match plan {
                Ok(Plan::Write { victims, .. }) => {
                    let read = self.read_handed(victims);
                    let ids: Vec<BlockId> = victims.iter().map(|v| v.id).collect();
                    self.delete_evicted(&ids);
                    (ids, read)
                }
                _ => (Vec::new(), Vec::new()),
            };
            handed.push((evicted, read));
        }
        let to_write: Vec<(BlockId, &[u8])> = blocks
            .iter()
            .zip(&plans)
            .filter(|(_, plan)| matches!(plan, Ok(Plan::Write { .. })))
            .map(|((id, bytes, _), _)| (*id, *bytes))
            .collect();
        let mut written = self.files.write_many(&to_write).into_iter();
        blocks
            .iter()
            .zip(plans)
            .zip(handed)
            .map(
                |(((id, _, admission), plan), (evicted, handed))| match plan? {
                    Plan::Held => Ok(Put {
                        outcome: PutOutcome::AlreadyHeld,
                        evicted,
                        handed,
                    }),
                    Plan::Write { len, kept, .. } => {
                        let written = written.next().unwrap_or_else(|| {
                            Err(StoreError::Io {
                                context: "group commit".into(),
                                source: io::Error::other("a write went missing"),
                            })
                        });
                        self.settle(id, len, kept, written, admission.heat, evicted, handed)
                    }
                },
            )
            .collect()
    }

    /// The first step of a put, under the locks: already held (custody extended as
    /// asked), or room made and reserved for a write.
    fn admit(&self, id: &BlockId, bytes: &[u8], admission: Admission) -> Result<Plan, StoreError> {
        if bytes.len() > MAX_BLOCK_SIZE {
            return Err(StoreError::TooLarge(bytes.len()));
        }
        debug_assert_eq!(BlockId::of(bytes), *id);
        let len = bytes.len() as u64;
        let keep_until = admission.keep_until.map(|u| clamp_until(u, unix_now()));
        // The custody lock comes before the index's; taken only for a custody admission.
        let mut book = keep_until.map(|_| self.lock_custody());
        let mut index = self.write_index();
        if index.get(id).is_some() {
            if let (Some(book), Some(until)) = (book.as_mut(), keep_until) {
                self.keep_held(book, &mut index, *id, until)?;
            }
            return Ok(Plan::Held);
        }
        if keep_until.is_some()
            && !custody::fits(index.custody_committed(), len, self.custody_share)
        {
            return Err(self.custody_full(&index, len));
        }
        let victims = self.make_room(&mut index, id, len, admission, keep_until.is_some())?;
        index.reserve(len);
        let kept = match (book.as_mut(), keep_until) {
            (Some(book), Some(until)) => {
                index.set_custody(*id, true);
                index.reserve_custody(len);
                Some(book.extend(*id, until))
            }
            _ => None,
        };
        Ok(Plan::Write { victims, kept, len })
    }

    /// The last step of a put, once its write is done or failed: the reservation is
    /// released, and the block indexed, or its new lease taken back.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        id: &BlockId,
        len: u64,
        kept: Option<Kept>,
        written: Result<(), StoreError>,
        heat: f32,
        evicted: Vec<BlockId>,
        handed: Vec<Handed>,
    ) -> Result<Put, StoreError> {
        let mut book = kept.map(|_| self.lock_custody());
        let mut index = self.write_index();
        index.release(len);
        if kept.is_some() {
            index.release_custody(len);
        }
        if let Err(e) = written {
            // A lease this put made is taken back: an error means it kept nothing (unless
            // the same block landed meanwhile through another put).
            if let (Some(book), Some(Kept::New)) = (book.as_mut(), kept)
                && index.get(id).is_none()
            {
                book.remove(id);
                index.set_custody(*id, false);
            }
            return Err(e);
        }
        let outcome = if index.insert(*id, len as u32, heat) {
            PutOutcome::Stored
        } else {
            PutOutcome::AlreadyHeld
        };
        Ok(Put {
            outcome,
            evicted,
            handed,
        })
    }

    /// Chooses blocks to evict so that `len` more bytes fit the quota, and takes them out
    /// of the index and the hot cache (their files are read back for hand-off and
    /// deleted by the caller, outside the lock). A custody admission evicts any unkept
    /// block; otherwise `admission` says whether the victims must be worth less than the
    /// newcomer.
    fn make_room(
        &self,
        index: &mut Index,
        id: &BlockId,
        len: u64,
        admission: Admission,
        custody: bool,
    ) -> Result<Vec<Victim>, StoreError> {
        let over = (index.committed() + len).saturating_sub(self.quota);
        if over == 0 {
            return Ok(Vec::new());
        }
        let worth = (admission.must_be_worth_it && !custody)
            .then(|| admission.heat + self.valuer.nearness(id));
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let victims = index
            .choose_victims(over, worth, &mut rng)
            .map_err(|e| match e {
                NoRoom::Full => StoreError::Full {
                    need: over,
                    quota: self.quota,
                },
                NoRoom::NotWorthIt => StoreError::Declined,
            })?;
        Ok(victims
            .into_iter()
            .filter_map(|victim| {
                let heat = index.heat(&victim).unwrap_or(0.0);
                let near = self.valuer.nearness(&victim);
                let candidate =
                    (near >= NEAR_BONUS || heat >= HANDOFF_MIN_HEAT).then_some((heat, heat + near));
                let cached = candidate.and_then(|_| self.hot.get(&victim));
                let size = index.remove(&victim)?;
                self.hot.remove(&victim);
                Some(Victim {
                    id: victim,
                    size,
                    candidate,
                    cached,
                })
            })
            .collect())
    }

    /// The bytes of the hand-off candidates among `victims`, most valuable first, up to
    /// `HANDOFF_BYTES_PER_PUT` bytes: read (and checked against their ids) before the
    /// caller deletes their files. A file that cannot be read, or does not hash to its
    /// id, is not handed off (it is deleted as any victim is).
    fn read_handed(&self, victims: &[Victim]) -> Vec<Handed> {
        let mut candidates: Vec<(&Victim, f32, f32)> = victims
            .iter()
            .filter_map(|v| v.candidate.map(|(heat, value)| (v, heat, value)))
            .collect();
        candidates.sort_unstable_by(|a, b| b.2.total_cmp(&a.2));
        let mut budget = HANDOFF_BYTES_PER_PUT;
        let mut handed = Vec::new();
        for (victim, heat, _) in candidates {
            let Some(left) = budget.checked_sub(victim.size as usize) else {
                continue;
            };
            let bytes = match &victim.cached {
                Some(bytes) => Some(bytes.clone()),
                None => self.read_victim(&victim.id, victim.size),
            };
            if let Some(bytes) = bytes {
                budget = left;
                handed.push(Handed {
                    id: victim.id,
                    bytes,
                    heat,
                });
            }
        }
        handed
    }

    /// The bytes of evicted block `id` from its file, if they are there and hash to it.
    fn read_victim(&self, id: &BlockId, size: u32) -> Option<Bytes> {
        let buf = Vec::with_capacity(size as usize + 1);
        match self.files.read(id, size, buf) {
            Ok(FileRead::Bytes(bytes)) if BlockId::of(&bytes) == *id => Some(Bytes::from(bytes)),
            Ok(FileRead::Bytes(_) | FileRead::Odd(..)) => {
                tracing::warn!(%id, "an evicted block did not read back whole: not handed off");
                None
            }
            Ok(FileRead::Gone) => None,
            Err(e) => {
                tracing::warn!(%id, error = %e, "could not read an evicted block for hand-off");
                None
            }
        }
    }

    /// Counts one request for `id` in its value; false when it is not held.
    pub fn record_request(&self, id: &BlockId) -> bool {
        self.read_index().add_heat(id, 1.0)
    }

    /// Adds `amount` requests' worth of heat to `id` (a peer's hint).
    pub fn add_heat(&self, id: &BlockId, amount: f32) -> bool {
        self.read_index().add_heat(id, amount)
    }

    /// The decayed request count of `id`, if held.
    pub fn heat(&self, id: &BlockId) -> Option<f32> {
        self.read_index().heat(id)
    }

    /// How values are computed (the node sets its id here; the mesh narrows the near
    /// region as it learns peers).
    pub fn valuer(&self) -> &Valuer {
        &self.valuer
    }

    /// Up to `n` held blocks with heat at least `min_heat`, hottest first.
    pub fn hottest(&self, n: usize, min_heat: f32) -> Vec<(BlockId, f32)> {
        self.read_index().hottest(n, min_heat)
    }

    /// Up to `n` held ids after `cursor` (from the start when None), in id order: a way
    /// to walk the whole store in pieces while it changes.
    pub fn ids_after(&self, cursor: Option<BlockId>, n: usize) -> Vec<BlockId> {
        self.read_index().ids_after(cursor, n)
    }

    /// Up to `n` held blocks nearest `target` (XOR), nearest first, with sizes.
    pub fn nearest(&self, target: &BlockId, n: usize) -> Vec<(BlockId, u32)> {
        self.read_index().like(target, 0, n)
    }

    fn lock_pins(&self) -> std::sync::MutexGuard<'_, PinBook> {
        self.pins.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pins `id` (held or not) for `holder`. Returns whether the holder is new. With
    /// `Durability::Soon` the pin protects the block at once but reaches the pins file
    /// at the next `flush_pins`. When the pins file cannot be written, the pin is taken
    /// back: an error means nothing changed.
    pub fn pin(
        &self,
        id: BlockId,
        holder: &Holder,
        durability: Durability,
    ) -> Result<bool, StoreError> {
        let mut book = self.lock_pins();
        let (new, was_unpinned) = book.add(id, holder);
        if was_unpinned {
            self.write_index().set_pinned(id, true);
        }
        if let Err(e) = self.save_pins(&mut book, durability) {
            if new {
                self.undo_pins(&mut book, holder, &[id], &[]);
            }
            return Err(e);
        }
        Ok(new)
    }

    /// Takes back pins of `holder` on `added` and gives back those on `removed`, after
    /// the pins file could not be written; the book stays dirty, so a later flush
    /// writes it (unchanged in content) again.
    fn undo_pins(
        &self,
        book: &mut PinBook,
        holder: &Holder,
        added: &[BlockId],
        removed: &[BlockId],
    ) {
        let mut index = self.write_index();
        // In the reverse order of the changes: an id both pinned and unpinned by one
        // `repin` ends as it began.
        for id in removed {
            if book.add(*id, holder).1 {
                index.set_pinned(*id, true);
            }
        }
        for id in added {
            if book.remove(id, Some(holder)).1 {
                index.set_pinned(*id, false);
            }
        }
    }

    /// Pins `id` for `holder` only if it is held, atomically with respect to eviction.
    /// `None` when it is not held (nothing pinned); else whether the holder is new.
    pub fn pin_if_held(
        &self,
        id: BlockId,
        holder: &Holder,
        durability: Durability,
    ) -> Result<Option<bool>, StoreError> {
        let mut book = self.lock_pins();
        {
            let mut index = self.write_index();
            if index.get(&id).is_none() {
                return Ok(None);
            }
            let (new, was_unpinned) = book.add(id, holder);
            if was_unpinned {
                index.set_pinned(id, true);
            }
            if !new {
                return Ok(Some(false));
            }
        }
        self.save_pins(&mut book, durability)?;
        Ok(Some(true))
    }

    /// Removes `holder`'s pin of `id` (every holder's with `None`). Returns whether a pin
    /// was removed; the block is evictable again once no holder is left. When the pins
    /// file cannot be written, the pins are given back: an error means nothing changed.
    pub fn unpin(
        &self,
        id: &BlockId,
        holder: Option<&Holder>,
        durability: Durability,
    ) -> Result<bool, StoreError> {
        let mut book = self.lock_pins();
        let before = match holder {
            Some(h) => vec![h.clone()],
            None => book.holders(id),
        };
        let (removed, now_unpinned) = book.remove(id, holder);
        if removed && now_unpinned {
            self.write_index().set_pinned(*id, false);
        }
        if let Err(e) = self.save_pins(&mut book, durability) {
            if removed {
                for h in &before {
                    self.undo_pins(&mut book, h, &[], &[*id]);
                }
            }
            return Err(e);
        }
        Ok(removed)
    }

    /// Pins `pin` and unpins `unpin` for `holder`, then writes the pins file once.
    /// Returns (pins added, pins removed). When the pins file cannot be written, every
    /// change is undone: an error means nothing changed.
    pub fn repin(
        &self,
        holder: &Holder,
        pin: &[BlockId],
        unpin: &[BlockId],
    ) -> Result<(usize, usize), StoreError> {
        let mut book = self.lock_pins();
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        {
            let mut index = self.write_index();
            for id in pin {
                let (new, was_unpinned) = book.add(*id, holder);
                if new {
                    added.push(*id);
                }
                if was_unpinned {
                    index.set_pinned(*id, true);
                }
            }
            for id in unpin {
                let (gone, now_unpinned) = book.remove(id, Some(holder));
                if gone {
                    removed.push(*id);
                }
                if gone && now_unpinned {
                    index.set_pinned(*id, false);
                }
            }
        }
        if let Err(e) = self.save_pins(&mut book, Durability::Now) {
            self.undo_pins(&mut book, holder, &added, &removed);
            return Err(e);
        }
        Ok((added.len(), removed.len()))
    }

    /// Writes the pins file if pins changed since it was last written.
    pub fn flush_pins(&self) -> Result<(), StoreError> {
        let mut book = self.lock_pins();
        self.save_pins(&mut book, Durability::Now)
    }

    /// With `Durability::Now`, writes the book if dirty. On failure memory stays ahead
    /// of the file (still marked dirty), so the next flush tries again.
    fn save_pins(&self, book: &mut PinBook, durability: Durability) -> Result<(), StoreError> {
        if durability == Durability::Soon || !book.dirty {
            return Ok(());
        }
        self.write_pins(&book.to_text())?;
        book.dirty = false;
        Ok(())
    }

    /// True when `id` is pinned.
    pub fn is_pinned(&self, id: &BlockId) -> bool {
        self.read_index().is_pinned(id)
    }

    /// Every pin, in id order, with its holders.
    pub fn pins(&self) -> Vec<(BlockId, Vec<Holder>)> {
        self.lock_pins().all()
    }

    /// The ids `holder` pins, in id order.
    pub fn pins_of(&self, holder: &Holder) -> Vec<BlockId> {
        self.lock_pins().held_by(holder)
    }

    fn lock_custody(&self) -> std::sync::MutexGuard<'_, CustodyBook> {
        self.custody.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the held block `id` in custody until `until` (unix seconds), or longer if
    /// its lease already runs longer; an `until` beyond `now + MAX_LEASE_SECS` is cut to
    /// that. While the lease lasts the block is never evicted, pinned or not.
    /// `Kept::Absent` when the block is not held (nothing changes). Refused with
    /// `CustodyFull` (nothing changes) when a block not yet in custody would take custody
    /// bytes past the custody share. Reaches the custody file at the next
    /// `flush_custody`: a crash may forget a lease change, which the holder's next
    /// renewal makes again; never a block.
    pub fn keep(&self, id: BlockId, until: u64, now: u64) -> Result<Kept, StoreError> {
        let mut book = self.lock_custody();
        let mut index = self.write_index();
        self.keep_held(&mut book, &mut index, id, clamp_until(until, now))
    }

    /// `keep` under both locks, with `until` already cut.
    fn keep_held(
        &self,
        book: &mut CustodyBook,
        index: &mut Index,
        id: BlockId,
        until: u64,
    ) -> Result<Kept, StoreError> {
        let Some(size) = index.get(&id).map(|e| u64::from(e.size())) else {
            return Ok(Kept::Absent);
        };
        if !index.in_custody(&id)
            && !custody::fits(index.custody_committed(), size, self.custody_share)
        {
            return Err(self.custody_full(index, size));
        }
        index.set_custody(id, true);
        Ok(book.extend(id, until))
    }

    fn custody_full(&self, index: &Index, size: u64) -> StoreError {
        StoreError::CustodyFull {
            size,
            used: index.custody_committed(),
            share: self.custody_share,
        }
    }

    /// Ends every lease whose `until` is `now` or earlier; returns those ids, in id
    /// order. The blocks stay, evictable by value again unless pinned.
    pub fn expire_custody(&self, now: u64) -> Vec<BlockId> {
        let mut book = self.lock_custody();
        let gone = book.expire(now);
        let mut index = self.write_index();
        for id in &gone {
            index.set_custody(*id, false);
        }
        gone
    }

    /// Ends `id`'s lease now; returns whether it had one. The block stays.
    pub fn release_custody(&self, id: &BlockId) -> bool {
        let mut book = self.lock_custody();
        let gone = book.remove(id);
        if gone {
            self.write_index().set_custody(*id, false);
        }
        gone
    }

    /// When `id`'s custody lease ends (unix seconds), if it has one.
    pub fn custody_until(&self, id: &BlockId) -> Option<u64> {
        self.lock_custody().until(id)
    }

    /// Up to `n` leases after `after` (from the start when None), in id order, with
    /// their ends: a way to walk every lease in batches while they change. A lease may
    /// name a block no longer held (quarantined since): its holder's renewal then gets
    /// `Kept::Absent`.
    pub fn custody_page(&self, after: Option<BlockId>, n: usize) -> Vec<(BlockId, u64)> {
        self.lock_custody().page(after, n)
    }

    /// True when `id` is pinned or in custody (never evicted for either reason).
    pub fn is_kept(&self, id: &BlockId) -> bool {
        let index = self.read_index();
        index.is_pinned(id) || index.in_custody(id)
    }

    /// Writes the custody file if leases changed since it was last written. On failure
    /// memory stays ahead of the file (still marked dirty), so the next flush tries again.
    pub fn flush_custody(&self) -> Result<(), StoreError> {
        let mut book = self.lock_custody();
        if !book.dirty {
            return Ok(());
        }
        self.write_custody(&book.to_text())?;
        book.dirty = false;
        Ok(())
    }

    /// Removes block `id` from this store (unpinning it and ending its custody first).
    /// Returns false when it was not held. Protected blocks (identity blocks) are
    /// refused.
    pub fn delete(&self, id: &BlockId) -> Result<bool, StoreError> {
        if self.read_index().is_protected(id) {
            return Err(StoreError::Protected(*id));
        }
        self.unpin(id, None, Durability::Now)?;
        // Reaches the file at the next flush; a lease reloaded after a crash names a
        // block not held, which costs nothing and runs out.
        self.release_custody(id);
        if self.write_index().remove(id).is_none() {
            return Ok(false);
        }
        self.hot.remove(id);
        self.files.remove(id)?;
        Ok(true)
    }

    /// Up to `max` held ids sharing at least `min_bits` leading bits with `target`,
    /// nearest first, with their sizes. Answered from memory.
    pub fn like(&self, target: &BlockId, min_bits: u32, max: usize) -> Vec<(BlockId, u32)> {
        self.read_index().like(target, min_bits, max)
    }

    /// Marks a block as never to be evicted nor deleted (identity blocks).
    pub fn protect(&self, id: BlockId) {
        self.write_index().protect(id);
    }

    /// Undoes `protect` (a peer that was dropped).
    pub fn unprotect(&self, id: &BlockId) {
        self.write_index().unprotect(id);
    }

    /// Re-hashes up to `max_blocks` blocks after `cursor`, quarantining any that no
    /// longer match. Does not change recency.
    pub fn scrub(&self, cursor: Option<BlockId>, max_blocks: usize) -> ScrubStep {
        let ids = self.read_index().ids_after(cursor, max_blocks);
        let mut step = ScrubStep {
            next: ids.last().copied(),
            blocks: ids.len() as u64,
            bytes: 0,
            quarantined: Vec::new(),
        };
        let mut buf = self.buffers.take();
        for id in ids {
            let Some(size) = self.read_index().get(&id).map(Entry::size) else {
                continue;
            };
            match self.files.read(&id, size, std::mem::take(&mut buf)) {
                Ok(FileRead::Bytes(bytes)) => {
                    step.bytes += bytes.len() as u64;
                    if BlockId::of(&bytes) != id {
                        self.quarantine(&id, "scrub: bytes do not hash to the id");
                        step.quarantined.push(id);
                    }
                    buf = bytes;
                    buf.clear();
                }
                Ok(FileRead::Odd(reason, back)) => {
                    tracing::debug!(%id, reason, "scrub found a block it cannot serve");
                    self.quarantine(&id, reason);
                    step.quarantined.push(id);
                    buf = back;
                }
                // Evicted meanwhile.
                Ok(FileRead::Gone) => tracing::debug!(%id, "scrub skipped a block now gone"),
                // An I/O error the next read will report.
                Err(e) => tracing::debug!(%id, error = %e, "scrub skipped a block"),
            }
        }
        self.buffers.give_back(buf);
        step
    }

    /// Current figures.
    pub fn stats(&self) -> StoreStats {
        let index = self.read_index();
        StoreStats {
            blocks: index.len() as u64,
            bytes: index.bytes(),
            quota: self.quota,
            pinned_bytes: index.locked_bytes(),
            custody_bytes: index.custody_bytes(),
            custody_blocks: index.custody_blocks(),
            custody_share: self.custody_share,
            evictions: self.evictions.load(Ordering::Relaxed),
            quarantined: self.quarantined.load(Ordering::Relaxed),
            hot_cache_bytes: self.hot.bytes(),
        }
    }

    /// Bytes the file system holding the store still lets this process write
    /// (`statvfs`: available blocks times the fragment size), or None when it cannot say
    /// (always None for a store in memory). Can be less than the quota leaves: the quota
    /// is a cap, not a reservation.
    pub fn disk_free(&self) -> Option<u64> {
        self.files.disk_free()
    }

    /// The pins recorded in `PINS_FILE` (none when it does not exist). Lines that are
    /// not pins are skipped with a warning.
    fn read_pins(&self) -> Result<PinBook, StoreError> {
        let Some(text) = self.files.read_meta(PINS_FILE)? else {
            return Ok(PinBook::default());
        };
        let (book, skipped) = PinBook::from_text(&text);
        for line in skipped {
            tracing::warn!(line, file = PINS_FILE, "not a pin; skipped");
        }
        Ok(book)
    }

    /// Replaces `PINS_FILE` crash-safely.
    fn write_pins(&self, text: &str) -> Result<(), StoreError> {
        self.files.write_meta(PINS_FILE, text, true)
    }

    /// The leases recorded in `CUSTODY_FILE` (none when it does not exist). Lines that
    /// are not leases are skipped with a warning.
    fn read_custody(&self) -> Result<CustodyBook, StoreError> {
        let Some(text) = self.files.read_meta(CUSTODY_FILE)? else {
            return Ok(CustodyBook::default());
        };
        let (book, skipped) = CustodyBook::from_text(&text);
        if skipped > 0 {
            tracing::warn!(
                skipped,
                file = CUSTODY_FILE,
                "lines that are not leases skipped"
            );
        }
        Ok(book)
    }

    /// Replaces `CUSTODY_FILE` crash-safely.
    fn write_custody(&self, text: &str) -> Result<(), StoreError> {
        self.files.write_meta(CUSTODY_FILE, text, true)
    }

    /// Where block `id`'s file is, `blocks/ab/cd/<hex>`; None for a store in memory.
    pub fn block_path(&self, id: &BlockId) -> Option<PathBuf> {
        self.files.block_path(id)
    }

    fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn delete_evicted(&self, victims: &[BlockId]) {
        for id in victims {
            match self.files.remove(id) {
                Ok(true) => {
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%id, "evicted");
                }
                Ok(false) => tracing::warn!(%id, "eviction found the block already gone"),
                Err(e) => tracing::warn!(%id, error = %e, "eviction could not remove the file"),
            }
        }
    }

    /// Removes `id` from the index and the hot cache.
    fn forget(&self, id: &BlockId) {
        self.write_index().remove(id);
        self.hot.remove(id);
    }

    /// Moves a corrupt block out of `blocks/` and forgets it.
    fn quarantine(&self, id: &BlockId, reason: &str) -> ReadOutcome {
        self.forget(id);
        match self.files.quarantine(id) {
            Ok(Some(to)) => {
                self.quarantined.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%id, reason, to, "block quarantined");
            }
            // Another reader got there first.
            Ok(None) => {}
            Err(e) => tracing::error!(%id, error = %e, "could not quarantine block"),
        }
        ReadOutcome::Quarantined
    }
}

/// Runs store work `f` where it belongs: on tokio's blocking pool for a store on disk
/// (file I/O must not stall the async workers), inline for a store in memory (its work
/// is map lookups, far cheaper than a thread hand-off, and running it inline keeps an
/// in-process simulation's schedule deterministic: a blocking thread finishes whenever
/// the OS lets it).
pub async fn off_worker<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(Arc<Store>) -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    if store.files.root().is_none() {
        return Ok(f(store.clone()));
    }
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store)).await
}

/// Seconds since the Unix epoch in protocol time (custody leases follow the
/// simulated clock in a simulation; see `clock`).
fn unix_now() -> u64 {
    crate::clock::unix_now()
}

/// The store's error for an I/O failure while doing `context`: `DiskFull` when the
/// file system has no room (so the HTTP layer answers `507`, not `500`), else `Io`.
fn io_err(context: String) -> impl FnOnce(io::Error) -> StoreError {
    move |source| {
        if is_disk_full(&source) {
            StoreError::DiskFull { context, source }
        } else {
            StoreError::Io { context, source }
        }
    }
}

/// True for `ENOSPC` and `EDQUOT`: the file system, or the user's share of it, is full.
fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::fs;

    use super::disk::is_temp;
    use super::*;

    fn block(n: usize, seed: u8) -> (BlockId, Vec<u8>) {
        let bytes: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        (BlockId::of(&bytes), bytes)
    }

    /// A new store of each kind with `limits`: on disk (with its directory, removed when
    /// dropped after the store), then in memory. Tests of the store's logic run on both.
    fn each_kind(limits: StoreLimits) -> [(Store, Option<tempfile::TempDir>); 2] {
        let dir = tempfile::tempdir().unwrap();
        let disk = Store::open(dir.path(), limits).unwrap();
        [(disk, Some(dir)), (Store::in_memory(limits), None)]
    }

    #[test]
    fn put_then_read_on_each_kind() {
        for (store, _dir) in each_kind(StoreLimits::quota(1 << 30)) {
            let (id, bytes) = block(5000, 1);
            let (large, large_bytes) = block(HOT_MAX_BLOCK + 1, 2);
            assert_eq!(store.read(&id).unwrap(), ReadOutcome::Absent);
            assert_eq!(store.put(&id, &bytes).unwrap(), PutOutcome::Stored);
            assert_eq!(store.put(&id, &bytes).unwrap(), PutOutcome::AlreadyHeld);
            assert_eq!(store.put(&large, &large_bytes).unwrap(), PutOutcome::Stored);
            assert_eq!(store.contains(&id), Some(5000));
            assert_eq!(
                store.read(&id).unwrap(),
                ReadOutcome::Found(bytes.clone().into())
            );
            assert_eq!(
                store.read(&large).unwrap(),
                ReadOutcome::Found(large_bytes.into())
            );
            assert!(store.delete(&id).unwrap());
            assert!(!store.delete(&id).unwrap());
            assert_eq!(store.read(&id).unwrap(), ReadOutcome::Absent);
            assert!(!store.files.has(&id));
            assert_eq!(store.stats().blocks, 1);
        }
    }

    #[test]
    fn a_group_stores_each_block_once_and_fails_only_the_bad_one() {
        for (store, dir) in each_kind(StoreLimits::quota(1 << 30)) {
            let mut blocks: Vec<(BlockId, Vec<u8>)> =
                (0..12).map(|i| block(3000 + i, i as u8)).collect();
            // Too large to be a block, in the middle; and one block listed twice.
            let big = vec![1u8; MAX_BLOCK_SIZE + 1];
            blocks.insert(5, (BlockId::of(&big), big));
            blocks.push(blocks[0].clone());
            let group: Vec<(BlockId, &[u8], Admission)> = blocks
                .iter()
                .map(|(id, b)| (*id, &b[..], Admission::UPLOAD))
                .collect();
            let outcomes: Vec<Result<PutOutcome, String>> = store
                .put_many(&group)
                .into_iter()
                .map(|r| r.map(|p| p.outcome).map_err(|e| e.to_string()))
                .collect();
            for (i, outcome) in outcomes.iter().enumerate() {
                match i {
                    5 => assert!(outcome.is_err(), "{outcome:?}"),
                    13 => assert_eq!(outcome, &Ok(PutOutcome::AlreadyHeld)),
                    _ => assert_eq!(outcome, &Ok(PutOutcome::Stored), "block {i}"),
                }
            }
            assert_eq!(store.stats().blocks, 12);
            let Some(dir) = dir else { continue };
            drop(store);
            let store = Store::open(dir.path(), StoreLimits::quota(1 << 30)).unwrap();
            assert_eq!(store.stats().blocks, 12);
            for (i, (id, b)) in blocks.iter().enumerate().filter(|(i, _)| *i != 5) {
                assert_eq!(
                    store.read(id).unwrap(),
                    ReadOutcome::Found(b.clone().into()),
                    "block {i}"
                );
            }
            assert_eq!(temp_files(dir.path()), 0);
        }
    }

    #[test]
    fn put_read_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (id, bytes) = block(5000, 1);
        {
            let store = Store::open(dir.path(), StoreLimits::quota(1 << 30)).unwrap();
            assert_eq!(store.put(&id, &bytes).unwrap(), PutOutcome::Stored);
            assert_eq!(store.put(&id, &bytes).unwrap(), PutOutcome::AlreadyHeld);
            assert_eq!(
                store.read(&id).unwrap(),
                ReadOutcome::Found(bytes.clone().into())
            );
        }
        let store = Store::open(dir.path(), StoreLimits::quota(1 << 30)).unwrap();
        assert_eq!(store.stats().blocks, 1);
        assert_eq!(store.read(&id).unwrap(), ReadOutcome::Found(bytes.into()));
        assert!(store.block_path(&id).unwrap().ends_with(format!(
            "blocks/{}/{}/{id}",
            &id.to_string()[..2],
            &id.to_string()[2..4]
        )));
    }

    #[test]
    fn concurrent_writers_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let blocks: Vec<(BlockId, Vec<u8>)> = (0..200).map(|i| block(1000 + i, i as u8)).collect();
        {
            let store = Store::open(dir.path(), StoreLimits::quota(1 << 30)).unwrap();
            std::thread::scope(|scope| {
                for chunk in blocks.chunks(25) {
                    let store = &store;
                    scope.spawn(move || {
                        for (id, bytes) in chunk {
                            assert_eq!(store.put(id, bytes).unwrap(), PutOutcome::Stored);
                        }
                    });
                }
            });
        }
        let store = Store::open(dir.path(), StoreLimits::quota(1 << 30)).unwrap();
        for (id, bytes) in &blocks {
            assert_eq!(
                store.read(id).unwrap(),
                ReadOutcome::Found(bytes.clone().into())
            );
        }
        assert_eq!(temp_files(dir.path()), 0);
    }

    #[test]
    fn concurrent_writers_all_land_in_memory() {
        let blocks: Vec<(BlockId, Vec<u8>)> = (0..200).map(|i| block(1000 + i, i as u8)).collect();
        let store = Store::in_memory(StoreLimits::quota(1 << 30));
        std::thread::scope(|scope| {
            for chunk in blocks.chunks(25) {
                let store = &store;
                scope.spawn(move || {
                    for (id, bytes) in chunk {
                        assert_eq!(store.put(id, bytes).unwrap(), PutOutcome::Stored);
                    }
                });
            }
        });
        assert_eq!(store.stats().blocks, 200);
        for (id, bytes) in &blocks {
            assert_eq!(
                store.read(id).unwrap(),
                ReadOutcome::Found(bytes.clone().into())
            );
        }
    }

    #[test]
    fn second_open_is_refused_with_the_holder_pid() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), StoreLimits::quota(1 << 20)).unwrap();
        let err = Store::open(dir.path(), StoreLimits::quota(1 << 20))
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.contains(&std::process::id().to_string()), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
    }

    #[test]
    fn misplaced_and_foreign_files_are_not_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let (id, bytes) = block(100, 1);
        drop(Store::open(dir.path(), StoreLimits::quota(1 << 20)).unwrap());
        let wrong = dir.path().join(BLOCKS_DIR).join("00").join("00");
        fs::create_dir_all(&wrong).unwrap();
        fs::write(wrong.join(id.to_string()), &bytes).unwrap();
        fs::write(wrong.join("notes.txt"), b"hello").unwrap();
        let store = Store::open(dir.path(), StoreLimits::quota(1 << 20)).unwrap();
        assert_eq!(store.stats().blocks, 0);
        assert!(
            dir.path()
                .join(QUARANTINE_DIR)
                .join(id.to_string())
                .exists()
        );
        assert!(wrong.join("notes.txt").exists());
    }

    /// Writes in progress (or left over) anywhere under `blocks/`.
    fn temp_files(root: &Path) -> usize {
        walkdir::WalkDir::new(root.join(BLOCKS_DIR))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| is_temp(e.file_name()))
            .count()
    }

    #[test]
    fn stale_temps_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (id, bytes) = block(100, 9);
        drop(Store::open(dir.path(), StoreLimits::quota(1 << 20)).unwrap());
        let hex = id.to_string();
        let fan = dir.path().join(BLOCKS_DIR).join(&hex[..2]).join(&hex[2..4]);
        fs::create_dir_all(&fan).unwrap();
        fs::write(fan.join(format!(".{id}.1.0.tmp")), &bytes[..50]).unwrap();
        let store = Store::open(dir.path(), StoreLimits::quota(1 << 20)).unwrap();
        assert_eq!(temp_files(dir.path()), 0);
        assert_eq!(store.stats().blocks, 0);
    }

    #[test]
    fn quota_evicts_the_least_requested_then_refuses() {
        for (store, _dir) in each_kind(StoreLimits::quota(3000)) {
            let (a, ab) = block(1000, 1);
            let (b, bb) = block(1000, 2);
            let (c, cb) = block(1000, 3);
            let (d, db) = block(1000, 4);
            for (id, bytes) in [(&a, &ab), (&b, &bb), (&c, &cb)] {
                store.put(id, bytes).unwrap();
            }
            store.protect(a);
            // c is read (so it is in the hot cache) but only b is requested: c is worth
            // least among the evictable, and it goes, from the backend and the hot cache.
            store.read(&c).unwrap();
            store.record_request(&b);
            store.put(&d, &db).unwrap();
            assert_eq!(store.read(&c).unwrap(), ReadOutcome::Absent);
            assert!(!store.files.has(&c));
            assert_eq!(store.stats().evictions, 1);
            let (big, bigb) = block(2500, 5);
            assert!(matches!(
                store.put(&big, &bigb),
                Err(StoreError::Full { .. })
            ));
            assert_eq!(store.contains(&a), Some(1000));
        }
    }

    #[test]
    fn corruption_is_quarantined_on_read_and_by_scrub() {
        for (store, dir) in each_kind(StoreLimits::quota(1 << 30)) {
            let (a, ab) = block(4096, 1);
            let (b, bb) = block(4096, 2);
            store.put(&a, &ab).unwrap();
            store.put(&b, &bb).unwrap();
            // Same size, different bytes, and (on disk) a different mtime than when
            // verified.
            if let Some(path) = store.block_path(&a) {
                std::thread::sleep(std::time::Duration::from_millis(20));
                let mut evil = ab.clone();
                evil[0] ^= 1;
                fs::write(path, &evil).unwrap();
            } else {
                store.files.damage(&a, 0);
            }
            assert_eq!(store.read(&a).unwrap(), ReadOutcome::Quarantined);
            assert_eq!(store.read(&a).unwrap(), ReadOutcome::Absent);
            // Silent corruption keeping the mtime: the scrub sees it.
            store.files.damage(&b, 9);
            let step = store.scrub(None, 100);
            assert_eq!(step.quarantined, vec![b]);
            assert_eq!(store.read(&b).unwrap(), ReadOutcome::Absent);
            // And so does a read, whenever it comes: a block read (and so checked) before
            // its bytes rot is checked again, not trusted for its unchanged mtime.
            let (c, cb) = block(HOT_MAX_BLOCK + 1, 3);
            store.put(&c, &cb).unwrap();
            assert_eq!(store.read(&c).unwrap(), ReadOutcome::Found(cb.into()));
            store.files.damage(&c, 65_000);
            assert_eq!(store.read(&c).unwrap(), ReadOutcome::Quarantined);
            assert_eq!(store.read(&c).unwrap(), ReadOutcome::Absent);
            assert_eq!(store.stats().quarantined, 3);
            assert!(!store.files.has(&c));
            if let Some(dir) = dir {
                let moved = fs::read_dir(dir.path().join(QUARANTINE_DIR)).unwrap();
                assert_eq!(moved.count(), 3);
            }
        }
    }

    #[test]
    fn odd_files_in_place_of_blocks_are_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreLimits::quota(1 << 30)).unwrap();
        let (fifo, fifo_bytes) = block(100, 1);
        let (folder, folder_bytes) = block(4096, 2);
        let (link, link_bytes) = block(100, 3);
        let (scrubbed, scrubbed_bytes) = block(100, 4);
        for (id, bytes) in [
            (&fifo, &fifo_bytes),
            (&folder, &folder_bytes),
            (&link, &link_bytes),
            (&scrubbed, &scrubbed_bytes),
        ] {
            store.put(id, bytes).unwrap();
            fs::remove_file(store.block_path(id).unwrap()).unwrap();
        }
        make_fifo(&store.block_path(&fifo).unwrap());
        make_fifo(&store.block_path(&scrubbed).unwrap());
        fs::create_dir(store.block_path(&folder).unwrap()).unwrap();
        // A symlink to a file with the right bytes: still never followed.
        let good = dir.path().join("elsewhere");
        fs::write(&good, &link_bytes).unwrap();
        std::os::unix::fs::symlink(&good, store.block_path(&link).unwrap()).unwrap();
        // A FIFO with no writer would block a plain open forever.
        for id in [&fifo, &folder, &link] {
            assert_eq!(store.read(id).unwrap(), ReadOutcome::Quarantined, "{id}");
            assert_eq!(store.read(id).unwrap(), ReadOutcome::Absent, "{id}");
            assert!(
                fs::symlink_metadata(store.block_path(id).unwrap()).is_err(),
                "{id}"
            );
        }
        let step = store.scrub(None, 100);
        assert_eq!(step.quarantined, vec![scrubbed]);
        assert_eq!(store.contains(&scrubbed), None);
        assert_eq!(store.stats().quarantined, 4);
        assert_eq!(
            fs::read(&good).unwrap(),
            link_bytes,
            "the target is untouched"
        );
    }

    fn make_fifo(path: &Path) {
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            path,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
    }

    #[test]
    fn a_full_file_system_is_disk_full_not_an_io_error() {
        for code in [rustix::io::Errno::NOSPC, rustix::io::Errno::DQUOT] {
            let e = io::Error::from_raw_os_error(code.raw_os_error());
            assert!(matches!(
                io_err("write".into())(e),
                StoreError::DiskFull { .. }
            ));
        }
        let e = io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error());
        assert!(matches!(io_err("write".into())(e), StoreError::Io { .. }));
    }

    #[test]
    fn a_memory_store_keeps_pins_and_counts_like_a_disk_one() {
        let limits = StoreLimits::quota(3000);
        let [(disk, _dir), (memory, _)] = each_kind(limits);
        assert_eq!(memory.root(), None);
        assert_eq!(memory.disk_free(), None);
        assert!(disk.disk_free().is_some());
        let alice: Holder = "alice".parse().unwrap();
        let blocks: Vec<(BlockId, Vec<u8>)> = (0..4).map(|i| block(1000, i)).collect();
        for store in [&disk, &memory] {
            let (a, b) = (&blocks[0], &blocks[1]);
            store.put(&a.0, &a.1).unwrap();
            store.pin(a.0, &alice, Durability::Soon).unwrap();
            store.pin(b.0, &Holder::admin(), Durability::Now).unwrap();
            for (id, bytes) in &blocks[1..] {
                store.put(id, bytes).unwrap();
            }
            store.flush_pins().unwrap();
        }
        // The same calls made the same changes: b pinned before it came, a pinned, so
        // the 4th block evicted the 3rd.
        assert_eq!(memory.stats(), disk.stats());
        assert_eq!(memory.stats().evictions, 1);
        assert_eq!(memory.stats().pinned_bytes, 2000);
        assert_eq!(memory.pins(), disk.pins());
        assert_eq!(memory.pins_of(&alice), vec![blocks[0].0]);
        assert!(memory.is_pinned(&blocks[1].0));
        assert_eq!(memory.contains(&blocks[2].0), None);
        // The pins reached the named file, in the same text as on disk.
        let on_disk = disk.files.read_meta(PINS_FILE).unwrap().unwrap();
        assert_eq!(memory.files.read_meta(PINS_FILE).unwrap(), Some(on_disk));
        assert!(memory.unpin(&blocks[0].0, None, Durability::Now).unwrap());
        let text = memory.files.read_meta(PINS_FILE).unwrap().unwrap();
        assert!(!text.contains(&blocks[0].0.to_string()), "{text}");
    }

    #[test]
    fn named_files_are_kept_by_name_on_each_kind() {
        for (store, dir) in each_kind(StoreLimits::quota(1 << 20)) {
            assert_eq!(store.files.read_meta("custody").unwrap(), None);
            for durable in [true, false] {
                store.files.write_meta("custody", "one\n", durable).unwrap();
                store.files.write_meta("other", "two\n", durable).unwrap();
                let read = |name| store.files.read_meta(name).unwrap();
                assert_eq!(read("custody").as_deref(), Some("one\n"));
                assert_eq!(read("other").as_deref(), Some("two\n"));
            }
            store.files.write_meta("custody", "", true).unwrap();
            assert_eq!(
                store.files.read_meta("custody").unwrap().as_deref(),
                Some("")
            );
            if let Some(dir) = dir {
                assert_eq!(fs::read(dir.path().join("other")).unwrap(), b"two\n");
            }
        }
    }

    #[test]
    fn pin_changes_that_cannot_be_saved_are_undone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreLimits::quota(1 << 30)).unwrap();
        let (a, ab) = block(100, 1);
        let (b, _) = block(100, 2);
        store.put(&a, &ab).unwrap();
        let alice: Holder = "alice".parse().unwrap();
        let bob: Holder = "bob".parse().unwrap();
        store.pin(a, &alice, Durability::Now).unwrap();
        store.pin(a, &bob, Durability::Now).unwrap();
        let before = store.pins();
        // The pins file's temp name taken by a directory: every save fails.
        let temp = dir.path().join(format!(".{PINS_FILE}{TEMP_SUFFIX}"));
        fs::create_dir(&temp).unwrap();
        assert!(store.pin(b, &alice, Durability::Now).is_err());
        assert!(store.unpin(&a, None, Durability::Now).is_err());
        assert!(store.unpin(&a, Some(&bob), Durability::Now).is_err());
        assert!(store.repin(&alice, &[b], &[a]).is_err());
        assert!(store.delete(&a).is_err());
        assert_eq!(store.pins(), before);
        assert!(store.is_pinned(&a));
        assert!(!store.is_pinned(&b));
        assert_eq!(store.contains(&a), Some(100));
        fs::remove_dir(&temp).unwrap();
        assert!(store.unpin(&a, None, Durability::Now).unwrap());
        assert!(!store.is_pinned(&a));
    }

    /// A store of `quota` bytes whose custody copies may take `share`.
    fn custody_store(dir: &Path, quota: u64, share: u64) -> Store {
        let limits = StoreLimits {
            custody_share: share,
            ..StoreLimits::quota(quota)
        };
        Store::open(dir, limits).unwrap()
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn eviction_never_takes_custody_blocks_until_their_lease_runs_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = custody_store(dir.path(), 4000, 2000);
        let (kept, kb) = block(1000, 1);
        store.put(&kept, &kb).unwrap();
        assert_eq!(store.keep(kept, NOW + 100, NOW).unwrap(), Kept::New);
        assert!(store.is_kept(&kept));
        // Fresh, more requested blocks push and push: the cold kept block stays.
        for n in 0..12 {
            let (id, bytes) = block(1000, 10 + n);
            store.put(&id, &bytes).unwrap();
            store.add_heat(&id, 5.0);
        }
        assert_eq!(store.contains(&kept), Some(1000));
        assert_eq!(store.stats().evictions, 9);
        let s = store.stats();
        assert_eq!((s.custody_bytes, s.custody_blocks), (1000, 1));
        // The lease lasts while now < until.
        assert_eq!(store.expire_custody(NOW + 99), Vec::<BlockId>::new());
        assert_eq!(store.expire_custody(NOW + 100), vec![kept]);
        assert!(!store.is_kept(&kept));
        assert_eq!(store.custody_until(&kept), None);
        assert_eq!(store.contains(&kept), Some(1000), "expiry keeps the block");
        assert_eq!(store.stats().custody_bytes, 0);
        let (id, bytes) = block(1000, 99);
        store.put(&id, &bytes).unwrap();
        assert_eq!(
            store.contains(&kept),
            None,
            "then it is the coldest, and goes"
        );
    }

    #[test]
    fn leases_only_grow_are_cut_to_the_longest_and_need_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let store = custody_store(dir.path(), 1 << 20, 1 << 20);
        let (a, ab) = block(100, 1);
        let (absent, _) = block(100, 2);
        assert_eq!(store.keep(absent, NOW + 10, NOW).unwrap(), Kept::Absent);
        assert!(!store.is_kept(&absent));
        store.put(&a, &ab).unwrap();
        assert_eq!(store.keep(a, NOW + 10, NOW).unwrap(), Kept::New);
        assert_eq!(store.keep(a, NOW + 5, NOW).unwrap(), Kept::Unchanged);
        assert_eq!(store.keep(a, NOW + 20, NOW).unwrap(), Kept::Extended);
        assert_eq!(store.custody_until(&a), Some(NOW + 20));
        assert_eq!(store.keep(a, u64::MAX, NOW).unwrap(), Kept::Extended);
        assert_eq!(store.custody_until(&a), Some(NOW + MAX_LEASE_SECS));
        assert!(store.release_custody(&a));
        assert!(!store.release_custody(&a));
        assert!(!store.is_kept(&a));
        // A custody admission far in the future is cut the same way (from the clock).
        let (b, bb) = block(100, 3);
        let far = Admission {
            keep_until: Some(u64::MAX),
            ..Admission::UPLOAD
        };
        store.put_with(&b, &bb, far).unwrap();
        let until = store.custody_until(&b).unwrap();
        assert!(until <= unix_now() + MAX_LEASE_SECS, "{until}");
        assert!(until + 3600 > unix_now() + MAX_LEASE_SECS, "{until}");
    }

    #[test]
    fn the_custody_share_refuses_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = custody_store(dir.path(), 10_000, 2500);
        let blocks: Vec<(BlockId, Vec<u8>)> = (0..4).map(|n| block(1000, n)).collect();
        for (id, bytes) in &blocks {
            store.put(id, bytes).unwrap();
        }
        store.keep(blocks[0].0, NOW + 10, NOW).unwrap();
        store.keep(blocks[1].0, NOW + 10, NOW).unwrap();
        let before = (store.stats(), store.custody_page(None, 10));
        let refused = store.keep(blocks[2].0, NOW + 10, NOW);
        assert!(
            matches!(
                refused,
                Err(StoreError::CustodyFull {
                    size: 1000,
                    used: 2000,
                    share: 2500
                })
            ),
            "{refused:?}"
        );
        assert!(!store.is_kept(&blocks[2].0));
        // Renewing what is already kept costs nothing more.
        assert_eq!(
            store.keep(blocks[1].0, NOW + 20, NOW).unwrap(),
            Kept::Extended
        );
        // A custody admission past the share stores nothing and evicts nothing.
        let (new, nb) = block(1000, 50);
        let keep = Admission {
            keep_until: Some(NOW + 10),
            ..Admission::UPLOAD
        };
        assert!(matches!(
            store.put_with(&new, &nb, keep),
            Err(StoreError::CustodyFull { .. })
        ));
        assert_eq!(store.contains(&new), None);
        assert_eq!(store.custody_until(&new), None);
        let after = (store.stats(), store.custody_page(None, 10));
        assert_eq!(after.0, before.0);
        assert_eq!(after.1.len(), before.1.len());
        assert!(!store.block_path(&new).unwrap().exists());
    }

    #[test]
    fn a_block_pinned_and_in_custody_stays_while_either_lasts() {
        let holder: Holder = "backup:1".parse().unwrap();
        for pin_ends_first in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let store = custody_store(dir.path(), 3000, 3000);
            let (both, bb) = block(1000, 1);
            store.put(&both, &bb).unwrap();
            store.pin(both, &holder, Durability::Now).unwrap();
            store.keep(both, NOW + 10, NOW).unwrap();
            if pin_ends_first {
                store.unpin(&both, Some(&holder), Durability::Now).unwrap();
            } else {
                store.expire_custody(NOW + 10);
            }
            assert!(store.is_kept(&both));
            for n in 0..4 {
                let (id, bytes) = block(1000, 10 + n);
                store.put(&id, &bytes).unwrap();
                store.add_heat(&id, 5.0);
            }
            assert_eq!(
                store.contains(&both),
                Some(1000),
                "pin first: {pin_ends_first}"
            );
            if pin_ends_first {
                store.release_custody(&both);
            } else {
                store.unpin(&both, None, Durability::Now).unwrap();
            }
            assert!(!store.is_kept(&both));
            let (id, bytes) = block(2000, 30);
            store.put(&id, &bytes).unwrap();
            assert_eq!(store.contains(&both), None, "pin first: {pin_ends_first}");
        }
    }

    #[test]
    fn custody_survives_a_reopen_and_bad_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (a, ab) = block(1000, 1);
        let (b, bb) = block(1000, 2);
        {
            let store = custody_store(dir.path(), 1 << 20, 1 << 20);
            store.put(&a, &ab).unwrap();
            store.put(&b, &bb).unwrap();
            store.keep(a, NOW + 10, NOW).unwrap();
            store.keep(b, NOW + 20, NOW).unwrap();
            store.release_custody(&b);
            store.flush_custody().unwrap();
        }
        let file = dir.path().join(CUSTODY_FILE);
        let mut text = fs::read_to_string(&file).unwrap();
        assert_eq!(text, format!("{a} {}\n", NOW + 10));
        text.push_str("garbage\n");
        fs::write(&file, text).unwrap();
        let store = custody_store(dir.path(), 3000, 3000);
        assert_eq!(store.custody_page(None, 10), vec![(a, NOW + 10)]);
        assert!(store.is_kept(&a) && !store.is_kept(&b));
        assert_eq!(store.stats().custody_bytes, 1000);
        // Reloaded custody protects as before.
        let (c, cb) = block(2000, 3);
        store.put(&c, &cb).unwrap();
        assert_eq!((store.contains(&a), store.contains(&b)), (Some(1000), None));
        // A flush with nothing changed does not rewrite the file.
        let temp = dir.path().join(format!(".{CUSTODY_FILE}{TEMP_SUFFIX}"));
        fs::create_dir(&temp).unwrap();
        store.flush_custody().unwrap();
        store.release_custody(&a);
        assert!(store.flush_custody().is_err(), "the temp name is taken");
        fs::remove_dir(&temp).unwrap();
        store.flush_custody().unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "");
    }

    #[test]
    fn a_custody_admission_stores_and_protects_in_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let store = custody_store(dir.path(), 3000, 2000);
        let warm: Vec<(BlockId, Vec<u8>)> = (0..3).map(|n| block(1000, n)).collect();
        for (id, bytes) in &warm {
            store.put(id, bytes).unwrap();
            store.add_heat(id, 50.0);
        }
        let (new, nb) = block(1000, 9);
        let cold_push = Admission {
            heat: 0.0,
            must_be_worth_it: true,
            keep_until: None,
        };
        assert!(matches!(
            store.put_with(&new, &nb, cold_push),
            Err(StoreError::Declined)
        ));
        // The same push with custody is never declined for its worth: it evicts.
        let kept = Admission {
            keep_until: Some(unix_now() + 60),
            ..cold_push
        };
        let put = store.put_with(&new, &nb, kept).unwrap();
        assert_eq!(put.outcome, PutOutcome::Stored);
        assert_eq!(put.evicted.len(), 1);
        assert!(store.is_kept(&new));
        assert_eq!(store.stats().custody_bytes, 1000);
        // Already held: the admission still puts it in custody.
        let (held, held_bytes) = warm
            .iter()
            .find(|(id, _)| !put.evicted.contains(id))
            .unwrap();
        let again = store.put_with(held, held_bytes, kept).unwrap();
        assert_eq!(again.outcome, PutOutcome::AlreadyHeld);
        assert!(store.is_kept(held));
        // Past the share now: refused, and no lease is left behind.
        let (last, lb) = block(1000, 10);
        assert!(matches!(
            store.put_with(&last, &lb, kept),
            Err(StoreError::CustodyFull { .. })
        ));
        assert!(!store.is_kept(&last));
        // A write that fails takes its lease back, and its reservation.
        store.release_custody(held);
        let hex = last.to_string();
        fs::write(dir.path().join(BLOCKS_DIR).join(&hex[..2]), b"in the way").unwrap();
        assert!(store.put_with(&last, &lb, kept).is_err());
        assert!(!store.is_kept(&last));
        assert_eq!(store.custody_until(&last), None);
        assert_eq!(store.stats().custody_bytes, 1000);
        assert_eq!(store.keep(*held, NOW + 1, NOW).unwrap(), Kept::New);
        // Concurrent custody admissions never take custody past the share.
        let dir = tempfile::tempdir().unwrap();
        let store = custody_store(dir.path(), 1 << 20, 10_000);
        let blocks: Vec<(BlockId, Vec<u8>)> = (0..40).map(|n| block(1000, n)).collect();
        std::thread::scope(|scope| {
            for chunk in blocks.chunks(10) {
                let store = &store;
                scope.spawn(move || {
                    for (id, bytes) in chunk {
                        let _ = store.put_with(id, bytes, kept);
                    }
                });
            }
        });
        let s = store.stats();
        assert_eq!((s.custody_blocks, s.custody_bytes), (10, 10_000));
        assert_eq!(store.custody_page(None, 100).len(), 10);
    }

    /// Eviction hands back the bytes of the victims worth placing elsewhere (those in
    /// this node's region, and warm ones), most valuable first, and only deletes cold
    /// blocks outside the region; on disk (from the files, or the hot cache for blocks
    /// read before) and in memory alike.
    #[test]
    fn eviction_returns_the_bytes_of_region_and_warm_victims_only() {
        let cold = Admission {
            heat: 0.0,
            must_be_worth_it: false,
            keep_until: None,
        };
        for (store, _dir) in each_kind(StoreLimits::quota(12_000)) {
            store.valuer().set_home(BlockId([0; 32]));
            // The region: ids whose first bit is 0 (half of them).
            store.valuer().set_near_bits(1);
            let blocks: Vec<(BlockId, Vec<u8>)> = (0..12).map(|n| block(1000, n)).collect();
            let near = |id: &BlockId| id.0[0] < 0x80;
            let mut worth_handing = HashSet::new();
            for (n, (id, bytes)) in blocks.iter().enumerate() {
                store.put_with(id, bytes, cold).unwrap();
                if n % 3 == 0 {
                    store.add_heat(id, 3.0);
                }
                if n % 2 == 0 {
                    // Read once: now in the hot cache (no heat: reads do not count).
                    assert!(matches!(store.read(id).unwrap(), ReadOutcome::Found(_)));
                }
                if near(id) || n % 3 == 0 {
                    worth_handing.insert(*id);
                }
            }
            assert!(
                worth_handing.len() < blocks.len(),
                "some cold foreign blocks"
            );
            assert!(!worth_handing.is_empty());
            let (big, big_bytes) = block(12_000, 99);
            let put = store.put_with(&big, &big_bytes, Admission::UPLOAD).unwrap();
            assert_eq!(put.evicted.len(), blocks.len(), "everything made room");
            let handed: HashSet<BlockId> = put.handed.iter().map(|h| h.id).collect();
            assert_eq!(handed, worth_handing);
            for h in &put.handed {
                assert_eq!(BlockId::of(&h.bytes), h.id);
                assert!(!store.files.has(&h.id), "the file is deleted all the same");
            }
            // Most valuable first: the warm ones lead.
            let values: Vec<f32> = put
                .handed
                .iter()
                .map(|h| h.heat + store.valuer().nearness(&h.id))
                .collect();
            assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
            assert!(put.handed[0].heat >= 3.0 - 0.01);
        }
    }
}
