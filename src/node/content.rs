//! Decrypted content for the browsing routes (`/sha256/<id>/<mode>/<key>[/<path>]`):
//! opening a locator, loading and caching bundle trees, and reading files of a bundle
//! block by block, in order, with a few blocks fetched ahead and never more held. Works
//! through `Node::get_block`, so missing blocks are waited for (and asked of the mesh)
//! exactly like raw block requests. No HTTP types.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lru::LruCache;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Metrics, Node, NodeError, blocking};
use crate::bundle::{
    FileEntry, Limits, LoadError, Loader, Manifest, Outline, Part, Tree, parse_chunk_url,
};
use crate::codec::{self, Key, Locator, Mode, Recipe};
use crate::id::BlockId;
use crate::mesh::Event;

/// Blocks of a file fetched and decrypted ahead of the one being sent: enough to keep
/// the cores busy and to fetch missing blocks from up to this many peers at once
/// (swarming), while a reader holds at most this many MiB.
pub const PREFETCH_BLOCKS: usize = 8;

/// Decrypted blocks queued between the reader task and the connection.
const STREAM_QUEUE: usize = 2;

/// Recipes remembered (about 100 bytes each): which blocks already verified under which
/// mode and key, so re-reading them skips the plaintext hash. The mode is part of the
/// name: a passphrase opening (tag only) must never vouch for a convergent one.
const RECIPE_CACHE_ENTRIES: usize = 65_536;

/// Bundle outlines kept, measured by `Outline::footprint`: the root manifest's entries
/// and a few paths per sub-bundle, so even the largest tree `SERVE_LIMITS` allows
/// outlines in a few MiB, and reading its files does not outline it again.
const OUTLINE_CACHE_BYTES: usize = 32 << 20;

/// Sub-bundles kept parsed (`Tree::part`), measured by `Tree::footprint`: a full block
/// of entries takes a few MiB parsed, so this keeps the handful a site's requests read
/// most (a sub-bundle not kept costs one block read and parse, a few milliseconds).
const PART_CACHE_BYTES: usize = 16 << 20;

/// Sub-bundle blocks one listing page reads (beyond the part cache) before it ends early
/// with a `next` cursor: about 8 MiB of manifests to parse, some tens of milliseconds,
/// when every entry of a directory lies in another sub-bundle.
const PAGE_PART_READS: usize = 8;

/// Most sub-bundle blocks one request reads (beyond the part cache). Resolving a path
/// reads at most `MAX_PART_OVERLAP` blocks for each of its map searches (3 for a path
/// with no link in what `pack` writes, as many again per link followed, 8 links at
/// most), so only crafted bundles reach it: a `422` then.
const MAX_PART_READS: usize = 64;

/// Bundles refused (`BadBundle`) remembered with their reason, so a request for a
/// malformed or oversized tree is answered without outlining it again.
const REFUSED_ENTRIES: usize = 4_096;

/// Longest reason remembered for a refused bundle (longer ones are cut): 4,096 of them
/// take at most 2 MiB.
const MAX_REASON_BYTES: usize = 512;

/// Most sub-bundles in a tree the node serves. Outlining a tree reads each one once
/// (one block fetch and decryption, at most 1 MiB); `SERVE_MAX_MANIFEST_BYTES` bounds
/// their bytes together (`pack` fills each to about one block, so 128 of them reach
/// it; the rest is headroom for writers of smaller ones).
pub const SERVE_MAX_SUB_BUNDLES: usize = 1_024;

/// Most entries in a tree the node serves (and most directories its paths imply):
/// outlining checks the whole tree with 8 bytes per entry, so 12 MiB at most, and the
/// outline keeps none of them. A million and a half: the issue 13 bundle of a million
/// entries with room to spare, while a tree past it is refused within about 0.8
/// CPU-seconds (1.6 million short entries, release build; at 2 Mi entries it took 1.0).
pub const SERVE_MAX_ENTRIES: usize = 3 << 19;

/// Most manifest bytes (decrypted JSON) in a tree the node serves: what outlining one
/// tree parses, about a CPU-second at most, once (the outline is then cached, and a
/// refused tree's reason too). About 500,000 files of one chunk each (a chunk's URL
/// is most of an entry); the entry bound comes first for shorter entries.
pub const SERVE_MAX_MANIFEST_BYTES: usize = 128 << 20;

/// What the node loads of anyone's bundle: bounded work and memory per request, and a
/// quick `422` past any bound (a client loading its own data uses `Limits::CLIENT`).
pub const SERVE_LIMITS: Limits = Limits {
    sub_bundles: SERVE_MAX_SUB_BUNDLES,
    depth: crate::bundle::MAX_DEPTH,
    entries: SERVE_MAX_ENTRIES,
    manifest_bytes: SERVE_MAX_MANIFEST_BYTES,
};

// Whatever the dashboard uploads stays browsable here: at most `MAX_UPLOAD_FILES`
// entries, and 16 GiB of chunks is about 3 MB of their JSON.
const _: () = assert!(super::upload::MAX_UPLOAD_FILES < SERVE_MAX_ENTRIES);

/// Trees outlined at once (others wait their turn): outlining is CPU work (one core
/// each) and holds up to 32 MiB of path hashes at the bounds, so concurrent requests for
/// different large trees hold at most this many outlines in the making.
const MAX_OUTLINES_BUILT: usize = 2;

/// Sub-bundles parsed at once (others wait their turn): each holds a block and its
/// parsed entries, a few MiB, until the part cache takes it.
const MAX_PARTS_PARSED: usize = 4;

/// Whole-file digests remembered (64 bytes each, 1 MiB in all), keyed by the hash of the
/// file's chunk list (its chunks' URLs name their plaintexts' SHA-256, so the list names
/// the file's bytes immutably). `Repr-Digest` needs the whole file's SHA-256 before the
/// first byte is sent, so the first request for a large file reads it twice (once to
/// digest it, then to send it; the first pass also fills the plaintext cache, so for a
/// file that fits there the second pass reads memory); later requests read it once.
const DIGEST_CACHE_ENTRIES: usize = 16_384;

/// Default of `content_cache`, the bytes of decrypted file blocks kept for hot files:
/// a 100 MiB file served to many readers at once is then read, hashed and decrypted
/// once, not once per reader (each block otherwise costs a read, a SHA-256 and an
/// AES-256-GCM pass, about 2 ms a MiB on one core). Twice the store's hot cache: this
/// one holds whole blocks.
pub const DEFAULT_CONTENT_CACHE: u64 = 128 << 20;

/// Plaintext buffers kept for reuse at most (`MAX_CONTENT` bytes each, 16 MiB): enough
/// for the blocks a few readers have in flight beyond the plaintext cache; a fresh 1 MiB
/// buffer costs 256 page faults, more than the copy into it.
const POOLED_PLAIN: usize = 16;

/// Blocks of at least this many bytes are opened into a pooled `MAX_CONTENT` buffer;
/// smaller ones into a buffer of their own size, so that a small plaintext never holds
/// (and is never charged for) a whole block's buffer.
const POOL_FROM: usize = 256 << 10;

/// What a locator opens to.
#[derive(Debug, Clone)]
pub enum Opened {
    /// The content of one block that is not a manifest.
    Data(Bytes),
    /// A bundle, outlined and checked (its sub-bundles are read as paths need them).
    Bundle(Arc<Outline>),
}

/// Caches behind the content routes.
pub(super) struct ContentCaches {
    recipes: Mutex<LruCache<(BlockId, Mode, Key), Recipe>>,
    outlines: Mutex<SizedLru<Outline>>,
    parts: Mutex<SizedLru<Tree>>,
    refused: Mutex<LruCache<Locator, String>>,
    digests: Mutex<LruCache<[u8; 32], [u8; 32]>>,
    /// Decrypted file blocks (`content_cache` bytes).
    plain: PlainCache,
    /// Buffers decrypted file blocks are opened into.
    pool: Arc<PlainPool>,
    /// One turn per outline or part being made: requests for one that is being made
    /// wait for it and then find it cached, instead of making it again beside it.
    loading: Gates<Locator>,
    /// One turn per whole file being digested: concurrent first requests for a file
    /// wait for one pass instead of each reading the file.
    digesting: Gates<[u8; 32]>,
    /// `MAX_OUTLINES_BUILT` permits.
    outlining: tokio::sync::Semaphore,
    /// `MAX_PARTS_PARSED` permits.
    parsing: tokio::sync::Semaphore,
}

/// An LRU cache bounded by the bytes its values hold (measured by the caller).
struct SizedLru<V> {
    entries: LruCache<Locator, (Arc<V>, usize)>,
    bytes: usize,
    max: usize,
}

impl<V> SizedLru<V> {
    fn new(max: usize) -> SizedLru<V> {
        SizedLru {
            entries: LruCache::unbounded(),
            bytes: 0,
            max,
        }
    }

    fn get(&mut self, locator: &Locator) -> Option<Arc<V>> {
        self.entries.get(locator).map(|(value, _)| value.clone())
    }

    /// Keeps `value`, whose footprint is `size` (measured before taking the lock).
    fn put(&mut self, locator: Locator, value: Arc<V>, size: usize) {
        if size > self.max / 2 {
            return;
        }
        self.bytes += size;
        if let Some((_, old)) = self.entries.put(locator, (value, size)) {
            self.bytes -= old;
        }
        while self.bytes > self.max {
            let Some((_, (_, old))) = self.entries.pop_lru() else {
                break;
            };
            self.bytes -= old;
        }
    }
}

impl ContentCaches {
    /// The caches, with `DEFAULT_CONTENT_CACHE` bytes of decrypted blocks.
    pub(super) fn new() -> ContentCaches {
        ContentCaches::with_plain_cache(DEFAULT_CONTENT_CACHE)
    }

    /// The caches, with `plain_bytes` bytes of decrypted blocks (0: none kept).
    pub(super) fn with_plain_cache(plain_bytes: u64) -> ContentCaches {
        let n = |n: usize| std::num::NonZeroUsize::new(n).unwrap_or(std::num::NonZeroUsize::MIN);
        ContentCaches {
            recipes: Mutex::new(LruCache::new(n(RECIPE_CACHE_ENTRIES))),
            outlines: Mutex::new(SizedLru::new(OUTLINE_CACHE_BYTES)),
            parts: Mutex::new(SizedLru::new(PART_CACHE_BYTES)),
            refused: Mutex::new(LruCache::new(n(REFUSED_ENTRIES))),
            digests: Mutex::new(LruCache::new(n(DIGEST_CACHE_ENTRIES))),
            plain: PlainCache::new(usize::try_from(plain_bytes).unwrap_or(usize::MAX)),
            pool: Arc::default(),
            loading: Mutex::new(HashMap::new()),
            digesting: Mutex::new(HashMap::new()),
            outlining: tokio::sync::Semaphore::new(MAX_OUTLINES_BUILT),
            parsing: tokio::sync::Semaphore::new(MAX_PARTS_PARSED),
        }
    }
}

/// Plaintext known to be the content of block `id` under convergent `key`: it hashed to
/// the key (`codec::decode` in `Mode::Aes256`), or it was opened by the recipe
/// `decode` learned for this id and key from bytes the store had checked against the
/// id (`Node::get_block` only returns such bytes), which are then the very bytes that
/// verified. Made only in this file; the plaintext cache takes nothing else.
#[derive(Clone)]
pub(super) struct Verified {
    bytes: Bytes,
    /// Bytes of memory the plaintext holds (its buffer's capacity).
    footprint: usize,
}

impl Verified {
    /// `bytes` if they hash to `key` (what the convergent mode promises).
    #[cfg(test)]
    fn check(key: &Key, bytes: Bytes) -> Option<Verified> {
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        (hash == key.0).then(|| Verified {
            footprint: bytes.len(),
            bytes,
        })
    }
}

/// Decrypted file blocks of hot files, least recently used first out, bounded by the
/// bytes their buffers hold (not by a count: blocks are 1 byte to 1 MiB). Holds only
/// `Verified` plaintexts of `Mode::Aes256` blocks, keyed by block id and key.
pub(super) struct PlainCache {
    inner: Mutex<PlainLru>,
    max: usize,
}

struct PlainLru {
    entries: LruCache<(BlockId, Key), Verified>,
    bytes: usize,
}

impl PlainCache {
    /// A cache of at most `max` bytes (0: keeps nothing).
    pub(super) fn new(max: usize) -> PlainCache {
        PlainCache {
            inner: Mutex::new(PlainLru {
                entries: LruCache::unbounded(),
                bytes: 0,
            }),
            max,
        }
    }

    /// The plaintext of block `id` under `key`, if kept.
    fn get(&self, id: &BlockId, key: &Key) -> Option<Bytes> {
        lock(&self.inner)
            .entries
            .get(&(*id, *key))
            .map(|v| v.bytes.clone())
    }

    /// Keeps `plain` as block `id`'s content under `key`, evicting the least recently
    /// used until the bytes fit; a plaintext over a quarter of the cache is not kept
    /// (it would evict too much for one block).
    fn put(&self, id: BlockId, key: Key, plain: Verified) {
        if plain.footprint > self.max / 4 {
            return;
        }
        debug_assert!(
            Sha256::digest(&plain.bytes)[..] == key.0,
            "unverified plaintext offered to the plaintext cache"
        );
        let size = plain.footprint;
        let mut inner = lock(&self.inner);
        inner.bytes += size;
        if let Some(old) = inner.entries.put((id, key), plain) {
            inner.bytes -= old.footprint;
        }
        // Each turn removes an entry, so this ends.
        while inner.bytes > self.max {
            let Some((_, old)) = inner.entries.pop_lru() else {
                break;
            };
            inner.bytes -= old.footprint;
        }
    }

    /// Forgets block `id` under `key`.
    fn remove(&self, id: &BlockId, key: &Key) {
        let mut inner = lock(&self.inner);
        if let Some(old) = inner.entries.pop(&(*id, *key)) {
            inner.bytes -= old.footprint;
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        lock(&self.inner).bytes
    }
}

/// Reusable `MAX_CONTENT` buffers that file blocks are decrypted into: a buffer goes
/// back when the last `Bytes` of it is dropped (sent by hyper and out of the cache).
#[derive(Default)]
pub(super) struct PlainPool {
    spare: Mutex<Vec<Vec<u8>>>,
}

impl PlainPool {
    /// A buffer of `MAX_CONTENT` initialised bytes (reused, or zeroed when new).
    fn take(&self) -> Vec<u8> {
        lock(&self.spare)
            .pop()
            .unwrap_or_else(|| vec![0; codec::MAX_CONTENT])
    }

    /// `buf[..len]` as `Bytes`; the buffer comes back to the pool when they are dropped.
    fn share(self: &Arc<Self>, buf: Vec<u8>, len: usize) -> Bytes {
        Bytes::from_owner(PooledPlain {
            buf,
            pool: self.clone(),
        })
        .slice(..len)
    }

    fn give_back(&self, buf: Vec<u8>) {
        if buf.len() != codec::MAX_CONTENT {
            return;
        }
        let mut spare = lock(&self.spare);
        if spare.len() < POOLED_PLAIN {
            spare.push(buf);
        }
    }
}

struct PooledPlain {
    buf: Vec<u8>,
    pool: Arc<PlainPool>,
}

impl AsRef<[u8]> for PooledPlain {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledPlain {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

/// Opens a file block read from the store (bytes checked against the id) under `key`:
/// by the recipe `known` when there is one (into a pooled buffer when the block is
/// large), else by `codec::decode`, which verifies and learns the recipe (returned).
fn open_block(
    block: &[u8],
    key: &Key,
    known: Option<Recipe>,
    pool: &Arc<PlainPool>,
) -> Result<(Verified, Option<Recipe>), codec::CodecError> {
    let Some(recipe) = known else {
        let decoded = codec::decode(block, Mode::Aes256, key)?;
        let footprint = decoded.content.capacity();
        let bytes = Bytes::from(decoded.content);
        return Ok((Verified { bytes, footprint }, Some(decoded.recipe)));
    };
    if block.len() >= POOL_FROM {
        let mut buf = pool.take();
        match codec::decode_by_into(block, key, recipe, &mut buf) {
            Ok(Some(len)) => {
                let footprint = buf.len();
                let bytes = pool.share(buf, len);
                return Ok((Verified { bytes, footprint }, None));
            }
            Ok(None) => pool.give_back(buf),
            Err(e) => {
                pool.give_back(buf);
                return Err(e);
            }
        }
    }
    let plain = codec::decode_by(block, key, recipe)?;
    let footprint = plain.capacity();
    Ok((
        Verified {
            bytes: Bytes::from(plain),
            footprint,
        },
        None,
    ))
}

/// Gates of work being done once for many requests, by what the work is on.
type Gates<K> = Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>;

/// A request's place in line for loading one tree (or digesting one file): requests for
/// the same one share a gate, so one does the work and the others then find it cached.
/// The gate leaves the map when its last holder drops its turn (also when a request is
/// dropped mid-load).
struct Turn<'a, K: std::hash::Hash + Eq + Copy> {
    map: &'a Gates<K>,
    key: K,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl<'a, K: std::hash::Hash + Eq + Copy> Turn<'a, K> {
    fn take(map: &'a Gates<K>, key: &K) -> Turn<'a, K> {
        let gate = lock(map).entry(*key).or_default().clone();
        Turn {
            map,
            key: *key,
            gate,
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy> Drop for Turn<'_, K> {
    fn drop(&mut self) {
        let mut map = lock(self.map);
        // The map's reference and this one: nobody else holds or waits at the gate (a
        // new holder would have to take it from the map, under this lock).
        if Arc::strong_count(&self.gate) <= 2 {
            map.remove(&self.key);
        }
    }
}

/// Locks a cache mutex; a panic elsewhere while holding it leaves a usable cache.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The decrypted bytes of a file range, in order, as they are read.
pub struct FileStream {
    rx: mpsc::Receiver<Result<Bytes, NodeError>>,
    task: JoinHandle<()>,
}

impl FileStream {
    /// The next piece; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Bytes, NodeError>> {
        self.rx.recv().await
    }

    /// Splits into the receiver (for a response body) and a guard that stops the reader
    /// when dropped.
    pub fn into_parts(self) -> (mpsc::Receiver<Result<Bytes, NodeError>>, StreamGuard) {
        (self.rx, StreamGuard(self.task))
    }
}

/// A node's `Loader` of outline parts, with one request's wait for missing blocks.
pub struct Parts {
    node: Arc<Node>,
    wait: Duration,
    /// Sub-bundle blocks read (not found in the part cache) so far.
    reads: AtomicUsize,
}

impl Loader for Parts {
    type Error = NodeError;

    fn part(&self, part: &Part) -> impl Future<Output = Result<Arc<Tree>, NodeError>> + Send {
        self.node.part(part, self.wait, &self.reads)
    }

    fn spent(&self) -> bool {
        self.reads.load(Ordering::Relaxed) >= PAGE_PART_READS
    }
}

/// Stops a file stream's reader task when dropped.
pub struct StreamGuard(JoinHandle<()>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Node {
    /// Opens `locator`: the decrypted block, or the outline of the bundle it is the root
    /// of (built within `SERVE_LIMITS`). A wrong key is `WrongKey`; a malformed manifest,
    /// or one past a bound, is `BadBundle` (remembered: asked again, it is refused at once).
    pub async fn open_content(
        self: &Arc<Self>,
        locator: &Locator,
        wait: Duration,
    ) -> Result<Opened, NodeError> {
        if let Some(outline) = self.cached_outline(locator)? {
            return Ok(Opened::Bundle(outline));
        }
        let content = self.decrypt(locator, wait).await?;
        // Passphrase content is a single record (DESIGN 3 gives it no paths).
        if locator.mode == Mode::Passphrase || !Manifest::looks_like(&content) {
            return Ok(Opened::Data(content));
        }
        // Requests for a tree being outlined wait here, holding only its root's bytes,
        // then find it cached.
        let turn = Turn::take(&self.content.loading, locator);
        let _turn = turn.gate.lock().await;
        if let Some(outline) = self.cached_outline(locator)? {
            return Ok(Opened::Bundle(outline));
        }
        let built = self.outline(&content, wait).await.and_then(|outline| {
            // What cannot be cached would be built again for every request.
            match outline.footprint() {
                size if size > OUTLINE_CACHE_BYTES / 2 => Err(NodeError::BadBundle(format!(
                    "the bundle's outline takes {} MiB, more than a node keeps",
                    size >> 20
                ))),
                _ => Ok(outline),
            }
        });
        let outline = match built {
            Err(NodeError::BadBundle(mut why)) => {
                // A reason names at most a path's start: remembered reasons stay small.
                if why.len() > MAX_REASON_BYTES {
                    why = why.chars().take(MAX_REASON_BYTES / 4).collect();
                }
                lock(&self.content.refused).put(*locator, why.clone());
                return Err(NodeError::BadBundle(why));
            }
            other => Arc::new(other?),
        };
        let size = outline.footprint();
        lock(&self.content.outlines).put(*locator, outline.clone(), size);
        Ok(Opened::Bundle(outline))
    }

    /// The outline of `locator` if cached; its refusal if it was refused.
    fn cached_outline(&self, locator: &Locator) -> Result<Option<Arc<Outline>>, NodeError> {
        if let Some(why) = lock(&self.content.refused).get(locator) {
            return Err(NodeError::BadBundle(why.clone()));
        }
        Ok(lock(&self.content.outlines).get(locator))
    }

    /// Outlines the bundle of root manifest `content` within `SERVE_LIMITS`, fetching
    /// sub-bundles through `decrypt`.
    async fn outline(
        self: &Arc<Self>,
        content: &[u8],
        wait: Duration,
    ) -> Result<Outline, NodeError> {
        let manifest =
            Manifest::decode(content).map_err(|e| NodeError::BadBundle(e.to_string()))?;
        // One block has nothing to fetch and is bounded by itself: no permit to wait for.
        let _permit = match manifest.bundles.is_empty() {
            true => None,
            false => Some(
                self.content
                    .outlining
                    .acquire()
                    .await
                    .map_err(|e| NodeError::Task(e.to_string()))?,
            ),
        };
        let node = self.clone();
        let fetch = move |sub: Locator| {
            let node = node.clone();
            async move {
                let content = node.decrypt(&sub, wait).await?;
                let bytes = content.len();
                let manifest = blocking(move || Manifest::decode_sub(&sub, &content)).await?;
                let manifest = manifest.map_err(|e| NodeError::BadBundle(e.to_string()))?;
                Ok((manifest, bytes))
            }
        };
        // The parts are parsed anyway: the first requests after find them cached.
        let keep = |locator: Locator, part: Tree| {
            let size = part.footprint();
            lock(&self.content.parts).put(locator, Arc::new(part), size);
        };
        Outline::build(manifest, content.len(), SERVE_LIMITS, fetch, keep)
            .await
            .map_err(|e| match e {
                LoadError::Bundle(e) => NodeError::BadBundle(e.to_string()),
                LoadError::Fetch(e) => e,
            })
    }

    /// The parsed entries of one sub-bundle of an outline (cached); `reads` counts the
    /// blocks read for one request, which reads at most `MAX_PART_READS`.
    async fn part(
        self: &Arc<Self>,
        part: &Part,
        wait: Duration,
        reads: &AtomicUsize,
    ) -> Result<Arc<Tree>, NodeError> {
        let locator = part.locator;
        if let Some(tree) = lock(&self.content.parts).get(&locator) {
            return Ok(tree);
        }
        let turn = Turn::take(&self.content.loading, &locator);
        let _turn = turn.gate.lock().await;
        if let Some(tree) = lock(&self.content.parts).get(&locator) {
            return Ok(tree);
        }
        if reads.fetch_add(1, Ordering::Relaxed) >= MAX_PART_READS {
            return Err(NodeError::BadBundle(format!(
                "answering needs more than {MAX_PART_READS} of the bundle's sub-bundles"
            )));
        }
        let _permit = self
            .content
            .parsing
            .acquire()
            .await
            .map_err(|e| NodeError::Task(e.to_string()))?;
        let content = self.decrypt(&locator, wait).await?;
        let bytes = content.len();
        let tree = blocking(move || Manifest::decode_sub(&locator, &content))
            .await?
            .map(|m| Arc::new(Tree::part(m, bytes)))
            .map_err(|e| NodeError::BadBundle(e.to_string()))?;
        let size = tree.footprint();
        lock(&self.content.parts).put(locator, tree.clone(), size);
        Ok(tree)
    }

    /// Reads the sub-bundles of outlines for one request.
    pub fn parts(self: &Arc<Self>, wait: Duration) -> Parts {
        Parts {
            node: self.clone(),
            wait,
            reads: AtomicUsize::new(0),
        }
    }

    /// The block of `locator`, decrypted and verified (once per block and key; later
    /// reads follow the remembered recipe).
    pub async fn decrypt(&self, locator: &Locator, wait: Duration) -> Result<Bytes, NodeError> {
        let block = self.get_block(locator.id, wait).await?;
        let cache_key = (locator.id, locator.mode, locator.key);
        let known = lock(&self.content.recipes).get(&cache_key).copied();
        let (mode, key) = (locator.mode, locator.key);
        let id = locator.id;
        let decoded = blocking(move || match known {
            Some(recipe) => codec::decode_by(&block, &key, recipe).map(|c| (c, None)),
            None => codec::decode(&block, mode, &key).map(|d| (d.content, Some(d.recipe))),
        })
        .await?
        .map_err(|_| NodeError::WrongKey(id))?;
        let (content, learned) = decoded;
        if let Some(recipe) = learned {
            lock(&self.content.recipes).put(cache_key, recipe);
        }
        Ok(Bytes::from(content))
    }

    /// Block `locator` of a bundle file, decrypted: from the plaintext cache while the
    /// node still holds the block (counted as a request for it, as a read is), else
    /// read, opened into a pooled buffer, and kept there.
    async fn file_block(&self, locator: &Locator, wait: Duration) -> Result<Bytes, NodeError> {
        let (id, key) = (locator.id, locator.key);
        let convergent = locator.mode == Mode::Aes256;
        if convergent && let Some(plain) = self.content.plain.get(&id, &key) {
            // A block deleted or evicted since is not served from here either.
            if self.store.contains(&id).is_some() {
                self.store.record_request(&id);
                self.mesh
                    .stats()
                    .record(&id, Event::Request, crate::clock::unix_now());
                Metrics::add(&self.metrics.hits, 1);
                return Ok(plain);
            }
            self.content.plain.remove(&id, &key);
        }
        if !convergent {
            return self.decrypt(locator, wait).await;
        }
        let block = self.get_block(id, wait).await?;
        let recipe_key = (id, locator.mode, key);
        let known = lock(&self.content.recipes).get(&recipe_key).copied();
        let pool = self.content.pool.clone();
        let (plain, learned) = blocking(move || open_block(&block, &key, known, &pool))
            .await?
            .map_err(|_| NodeError::WrongKey(id))?;
        if let Some(recipe) = learned {
            lock(&self.content.recipes).put(recipe_key, recipe);
        }
        let bytes = plain.bytes.clone();
        self.content.plain.put(id, key, plain);
        Ok(bytes)
    }

    /// Reads bytes `start..=end` of a bundle file as a stream of decrypted pieces,
    /// `PREFETCH_BLOCKS` blocks ahead. Each block's plaintext must have the size the
    /// manifest says (else the stream ends with `BadBundle`).
    pub fn read_file(
        self: &Arc<Self>,
        file: &FileEntry,
        start: u64,
        end: u64,
        wait: Duration,
    ) -> FileStream {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let node = self.clone();
        let mut pieces = Vec::new();
        let mut offset = 0u64;
        for chunk in &file.contents {
            let (first, last) = (offset, offset + chunk.size - 1);
            offset += chunk.size;
            if last < start || first > end {
                continue;
            }
            let from = start.saturating_sub(first) as usize;
            let to = (end.min(last) - first) as usize;
            pieces.push((chunk.url.clone(), chunk.size, from, to));
        }
        let task = tokio::spawn(async move {
            let mut ahead: VecDeque<JoinHandle<Result<Bytes, NodeError>>> = VecDeque::new();
            let mut pending = pieces.into_iter();
            loop {
                while ahead.len() < PREFETCH_BLOCKS {
                    let Some((url, size, from, to)) = pending.next() else {
                        break;
                    };
                    let node = node.clone();
                    ahead.push_back(tokio::spawn(async move {
                        let locator = parse_chunk_url(&url)
                            .ok_or_else(|| NodeError::BadBundle(format!("bad chunk url {url}")))?;
                        let plain = node.file_block(&locator, wait).await?;
                        if plain.len() as u64 != size {
                            return Err(NodeError::BadBundle(format!(
                                "block {} holds {} bytes, the manifest says {size}",
                                locator.id,
                                plain.len()
                            )));
                        }
                        Ok(plain.slice(from..=to))
                    }));
                }
                let Some(next) = ahead.pop_front() else { break };
                let piece = next
                    .await
                    .unwrap_or_else(|e| Err(NodeError::Task(e.to_string())));
                let failed = piece.is_err();
                if tx.send(piece).await.is_err() || failed {
                    break;
                }
            }
            for handle in ahead {
                handle.abort();
            }
        });
        FileStream { rx, task }
    }

    /// SHA-256 of bytes `start..=end` of a file (whole-file digests are remembered).
    pub async fn file_digest(
        self: &Arc<Self>,
        file: &FileEntry,
        start: u64,
        end: u64,
        wait: Duration,
    ) -> Result<[u8; 32], NodeError> {
        let whole = start == 0 && end + 1 == file.size;
        let cache_key = whole.then(|| file_identity(file));
        if let Some(key) = &cache_key
            && let Some(digest) = lock(&self.content.digests).get(key)
        {
            return Ok(*digest);
        }
        let turn = cache_key.map(|key| Turn::take(&self.content.digesting, &key));
        let _turn = match &turn {
            Some(turn) => Some(turn.gate.lock().await),
            None => None,
        };
        if let Some(key) = &cache_key
            && let Some(digest) = lock(&self.content.digests).get(key)
        {
            return Ok(*digest);
        }
        let mut hasher = Sha256::new();
        if file.size > 0 {
            let mut stream = self.read_file(file, start, end, wait);
            while let Some(piece) = stream.next().await {
                hasher.update(&piece?);
            }
        }
        let digest: [u8; 32] = hasher.finalize().into();
        if let Some(key) = cache_key {
            lock(&self.content.digests).put(key, digest);
        }
        Ok(digest)
    }
}

/// A name for a file's contents: the hash of its chunk list.
fn file_identity(file: &FileEntry) -> [u8; 32] {
    let mut h = Sha256::new();
    for chunk in &file.contents {
        h.update(chunk.url.as_bytes());
        h.update(chunk.size.to_le_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::codec::tests::noise;

    /// A verified plaintext of `len` bytes, its id and key.
    fn block(len: usize, seed: u64) -> (BlockId, Key, Verified) {
        let content = noise(len, seed);
        let e = codec::encode(&content).unwrap();
        let plain = Verified::check(&e.locator.key, Bytes::from(content)).unwrap();
        (e.locator.id, e.locator.key, plain)
    }

    #[test]
    fn plain_cache_is_bounded_by_bytes_and_keeps_the_recent() {
        const MIB: usize = 1 << 20;
        let cache = PlainCache::new(4 * MIB);
        let blocks: Vec<_> = (0..10).map(|i| block(MIB - 100, 2 * i + 1)).collect();
        for (n, (id, key, plain)) in blocks.iter().enumerate() {
            cache.put(*id, *key, plain.clone());
            assert!(cache.bytes() <= 4 * MIB, "after {n}: {}", cache.bytes());
            // The first block is read after every insertion: never the least recent.
            assert!(cache.get(&blocks[0].0, &blocks[0].1).is_some(), "after {n}");
        }
        let kept: Vec<bool> = blocks
            .iter()
            .map(|(id, key, _)| cache.get(id, key).is_some())
            .collect();
        // Four fit; the first (used) and the three newest are they.
        assert_eq!(
            kept,
            [
                true, false, false, false, false, false, false, true, true, true
            ]
        );
        let (id, key, plain) = &blocks[9];
        assert_eq!(cache.get(id, key).unwrap(), plain.bytes);
        // The bytes follow a removal, and a key names the plaintext with its block.
        cache.remove(id, key);
        assert!(cache.get(id, key).is_none());
        assert_eq!(cache.bytes(), 3 * (MIB - 100));
        assert!(cache.get(id, &blocks[8].1).is_none());
        // A plaintext over a quarter of the cache is not kept; nor anything in none.
        let small = PlainCache::new(MIB);
        small.put(*id, *key, plain.clone());
        assert_eq!(small.bytes(), 0);
        let none = PlainCache::new(0);
        let (id, key, plain) = block(10, 99);
        none.put(id, key, plain);
        assert!(none.get(&id, &key).is_none());
    }

    #[test]
    fn only_verified_plaintext_is_made_for_the_cache() {
        let pool = Arc::new(PlainPool::default());
        let content = noise(codec::MAX_CONTENT, 3);
        let e = codec::encode(&content).unwrap();
        let key = e.locator.key;
        // Bytes that do not hash to the key are refused.
        assert!(Verified::check(&key, Bytes::from(noise(100, 4))).is_none());
        // A wrong key opens nothing, with or without a recipe.
        let other = codec::encode(b"other").unwrap().locator.key;
        assert!(open_block(&e.block, &other, None, &pool).is_err());
        // First opening: verified by decode, and the recipe learned.
        let (plain, learned) = open_block(&e.block, &key, None, &pool).unwrap();
        let recipe = learned.unwrap();
        assert_eq!(&plain.bytes[..], &content[..]);
        // Later openings follow the recipe into a pooled buffer, charged whole.
        let (again, learned) = open_block(&e.block, &key, Some(recipe), &pool).unwrap();
        assert!(learned.is_none());
        assert_eq!(&again.bytes[..], &content[..]);
        assert_eq!(again.footprint, codec::MAX_CONTENT);
        drop((plain, again));
        assert_eq!(lock(&pool.spare).len(), 1, "the buffer came back");
        // A block damaged after its recipe was learned fails its tag.
        let mut rotten = e.block.clone();
        rotten[e.block.len() / 2] ^= 0x20;
        assert!(open_block(&rotten, &key, Some(recipe), &pool).is_err());
        assert_eq!(lock(&pool.spare).len(), 1, "and the failed one too");
        // Small blocks get buffers of their own size.
        let small = codec::encode(&noise(1000, 5)).unwrap();
        let r = open_block(&small.block, &small.locator.key, None, &pool).unwrap();
        let (plain, _) = open_block(&small.block, &small.locator.key, r.1, &pool).unwrap();
        assert_eq!(plain.footprint, 1000);
    }
}
