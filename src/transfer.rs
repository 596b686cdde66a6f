//! The client's use cases: putting files, directories and standard input into a node as
//! encrypted blocks and a bundle, and getting them back (a file, standard output, or a
//! whole tree restored). Composes `client` (verified HTTP), `codec` and `bundle`; the
//! keys never leave this process. Uploads and downloads run several blocks at once,
//! with memory bounded by the number in flight.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::bundle::{self, Chunk, FileEntry, Lookup, Manifest, Restore, Tree};
use crate::client::{ClientError, Remote, Sent};
use crate::codec::CodecError;
use crate::codec::{self, Encoded, Locator, MAX_CONTENT};
use crate::id::BlockId;

/// Blocks read and encoded at once: enough to keep every core encoding while the
/// batches travel, few enough that memory stays at a few MiB.
pub const UPLOAD_CONCURRENCY: usize = 8;

/// Blocks fetched at once when downloading: each is one small request whose time is
/// mostly the node's and the network's, so enough in flight to cover both.
pub const DOWNLOAD_CONCURRENCY: usize = 16;

/// Blocks at least this large are checked before being sent (in the batch existence
/// check, `Remote::holds`), so a block the node has is not uploaded again; smaller ones
/// are just sent (the check would cost as much as the upload).
pub const CHECK_BEFORE_PUT: usize = 16 * 1024;

/// Bytes of encoded blocks gathered into one batch upload before it is sent: large
/// enough that a batch of small blocks costs the node one group commit for hundreds of
/// them, small enough that the batches in flight stay a few tens of MiB (under the
/// node's `MAX_BATCH_BYTES` of 32 MiB).
pub const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Batch uploads in flight at once: one being stored while the next travels and a
/// third fills. Memory: about `BATCHES_IN_FLIGHT` x 2 x `BATCH_BYTES` (the blocks and
/// the request body).
pub const BATCHES_IN_FLIGHT: usize = 3;

/// Characters escaped in a file name appended to a bundle URL.
const URL_PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Content that did not verify: a chunk whose size differs from the manifest's.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Mismatch(String);

/// Settings of a transfer.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Show progress bars (only ever on a terminal).
    pub progress: bool,
}

/// The holder `libernet put`, `pin`, `unpin` and `pins` use unless told another.
pub const PUT_HOLDER: &str = "put";

/// What a put did.
#[derive(Debug, Clone)]
pub struct PutReport {
    /// The URL to give out.
    pub url: String,
    /// Regular files read.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Blocks uploaded.
    pub sent: u64,
    /// Blocks the node already had.
    pub skipped: u64,
    /// Paths skipped (sockets, FIFOs, devices).
    pub ignored: Vec<PathBuf>,
}

/// Splits a content URL into the server's base and the path: `http://host:port/sha256/..`
/// uses that server; a bare `/sha256/...` path uses `default_server`.
pub fn split_url(url: &str, default_server: &str) -> anyhow::Result<(String, String)> {
    let url = url.split(['?', '#']).next().unwrap_or(url);
    if url.starts_with("/sha256/") {
        return Ok((
            default_server.trim_end_matches('/').to_owned(),
            url.to_owned(),
        ));
    }
    for scheme in ["http://", "https://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            let slash = rest.find('/').unwrap_or(rest.len());
            let path = &rest[slash..];
            if path.starts_with("/sha256/") {
                return Ok((format!("{scheme}{}", &rest[..slash]), path.to_owned()));
            }
        }
    }
    bail!("not a libernet URL: {url:?} (expected http://HOST/sha256/... or /sha256/...)")
}

pub(crate) fn progress_bar(total: u64, options: Options, verb: &str) -> ProgressBar {
    if !options.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(&format!(
        "{verb} {{bar:30}} {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} eta {{eta}} {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Sends encoded blocks in batches (`Remote::put_blocks`), counting what was sent and
/// what the node already had; each id at most once.
#[derive(Clone)]
pub struct Uploader {
    remote: Remote,
    /// Pin every block for this holder (the remote carries the admin token).
    holder: Option<Arc<str>>,
    /// Ask the node before sending any block, however small: a resumed backup must not
    /// send again what arrived before it was interrupted.
    check_all: bool,
    /// Blocks sent.
    pub sent: Arc<AtomicU64>,
    /// Their bytes.
    pub sent_bytes: Arc<AtomicU64>,
    /// Blocks the node already held, or sent before by this uploader.
    pub skipped: Arc<AtomicU64>,
    seen: Arc<std::sync::Mutex<std::collections::HashSet<crate::id::BlockId>>>,
}

impl Uploader {
    /// An uploader that asks before sending blocks of `CHECK_BEFORE_PUT` bytes or more.
    pub fn new(remote: &Remote) -> Uploader {
        Uploader {
            remote: remote.clone(),
            holder: None,
            check_all: false,
            sent: Arc::default(),
            sent_bytes: Arc::default(),
            skipped: Arc::default(),
            seen: Arc::default(),
        }
    }

    /// An uploader that checks every block first, and pins each for `holder` when given.
    pub fn pinning(remote: &Remote, holder: Option<&str>) -> Uploader {
        Uploader {
            holder: holder.map(Into::into),
            check_all: true,
            ..Uploader::new(remote)
        }
    }

    /// A pinning uploader for `holder`, or a plain one.
    fn for_put(remote: &Remote, holder: Option<&str>) -> Uploader {
        match holder {
            Some(_) => Uploader::pinning(remote, holder),
            None => Uploader::new(remote),
        }
    }

    /// Makes sure the node holds `encoded` (pinned, for a pinning uploader).
    pub async fn send(&self, encoded: Encoded) -> anyhow::Result<Locator> {
        let locator = encoded.locator;
        self.send_all(vec![encoded]).await?;
        Ok(locator)
    }

    /// Makes sure the node holds every block of `blocks` (pinned, for a pinning
    /// uploader), in batches of at most `BATCH_BYTES` and `MAX_BATCH_BLOCKS` frames; returns
    /// their locators in order. A block the node refuses fails the whole call with the
    /// node's words for it.
    pub async fn send_all(&self, blocks: Vec<Encoded>) -> anyhow::Result<Vec<Locator>> {
        let locators: Vec<Locator> = blocks.iter().map(|e| e.locator).collect();
        let fresh: Vec<Encoded> = {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            blocks
                .into_iter()
                .filter(|e| seen.insert(e.locator.id))
                .collect()
        };
        let repeated = (locators.len() - fresh.len()) as u64;
        self.skipped.fetch_add(repeated, Ordering::Relaxed);
        let mut part = Vec::new();
        let mut part_bytes = 0;
        for encoded in fresh {
            let len = encoded.block.len() + crate::proto::FRAME_HEADER;
            if !part.is_empty()
                && (part_bytes + len > BATCH_BYTES || part.len() == crate::proto::MAX_BATCH_BLOCKS)
            {
                self.send_batch(std::mem::take(&mut part)).await?;
                part_bytes = 0;
            }
            part_bytes += len;
            part.push((encoded.locator.id, Bytes::from(encoded.block)));
        }
        self.send_batch(part).await?;
        Ok(locators)
    }

    /// One batch: the existence check (and the pins of what is held), then one batch
    /// upload of the rest.
    async fn send_batch(&self, blocks: Vec<(BlockId, Bytes)>) -> anyhow::Result<()> {
        if blocks.is_empty() {
            return Ok(());
        }
        let checked: Vec<BlockId> = blocks
            .iter()
            .filter(|(_, b)| self.check_all || b.len() >= CHECK_BEFORE_PUT)
            .map(|(id, _)| *id)
            .collect();
        let mut held: std::collections::HashSet<BlockId> = if checked.is_empty() {
            Default::default()
        } else {
            let states = self.remote.holds(&checked).await?;
            checked
                .iter()
                .zip(states)
                .filter_map(|(id, held)| held.then_some(*id))
                .collect()
        };
        if let (Some(holder), false) = (&self.holder, held.is_empty()) {
            let ids: Vec<BlockId> = held.iter().copied().collect();
            // Held a moment ago, evicted since: sent (and pinned) below like the rest.
            for gone in self.remote.repin(holder, &ids, &[]).await? {
                held.remove(&gone);
            }
        }
        self.skipped.fetch_add(held.len() as u64, Ordering::Relaxed);
        let send: Vec<(BlockId, Bytes)> = blocks
            .into_iter()
            .filter(|(id, _)| !held.contains(id))
            .collect();
        let outcomes = self
            .remote
            .put_blocks(&send, self.holder.as_deref())
            .await?;
        let mut refused = Vec::new();
        for (outcome, (_, block)) in outcomes.into_iter().zip(&send) {
            match outcome {
                Ok(Sent::Stored) => {
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    self.sent_bytes
                        .fetch_add(block.len() as u64, Ordering::Relaxed);
                }
                Ok(Sent::AlreadyThere) => {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => refused.push(e),
            }
        }
        let more = refused.len().saturating_sub(1);
        match refused.into_iter().next() {
            None => Ok(()),
            Some(first) if more == 0 => Err(first.into()),
            Some(first) => Err(anyhow::Error::new(first).context(format!(
                "the node refused {} blocks of a batch; the first:",
                more + 1
            ))),
        }
    }
}

/// Encoded blocks gathered into batches, `BATCHES_IN_FLIGHT` sent at once; each block
/// carries a tag `T` (where its chunk goes) back to the caller with its locator.
struct Batches<T> {
    uploader: Uploader,
    filling: Vec<(T, Encoded)>,
    bytes: usize,
    sending: JoinSet<anyhow::Result<Vec<(T, Locator)>>>,
}

impl<T: Send + 'static> Batches<T> {
    fn new(uploader: &Uploader) -> Batches<T> {
        Batches {
            uploader: uploader.clone(),
            filling: Vec::new(),
            bytes: 0,
            sending: JoinSet::new(),
        }
    }

    /// Adds a block; a full batch is sent (after waiting for one in flight to finish,
    /// when `BATCHES_IN_FLIGHT` are). `done` sees every block whose batch finished.
    async fn add(
        &mut self,
        tag: T,
        encoded: Encoded,
        done: &mut impl FnMut(T, Locator),
    ) -> anyhow::Result<()> {
        let len = encoded.block.len() + crate::proto::FRAME_HEADER;
        if !self.filling.is_empty()
            && (self.bytes + len > BATCH_BYTES
                || self.filling.len() == crate::proto::MAX_BATCH_BLOCKS)
        {
            self.flush(done).await?;
        }
        self.bytes += len;
        self.filling.push((tag, encoded));
        Ok(())
    }

    /// Sends the batch being filled.
    async fn flush(&mut self, done: &mut impl FnMut(T, Locator)) -> anyhow::Result<()> {
        while self.sending.len() >= BATCHES_IN_FLIGHT {
            self.settle_one(done).await?;
        }
        let filling = std::mem::take(&mut self.filling);
        self.bytes = 0;
        if filling.is_empty() {
            return Ok(());
        }
        let uploader = self.uploader.clone();
        self.sending.spawn(async move {
            let (tags, blocks): (Vec<T>, Vec<Encoded>) = filling.into_iter().unzip();
            let locators = uploader.send_all(blocks).await?;
            Ok(tags.into_iter().zip(locators).collect())
        });
        Ok(())
    }

    async fn settle_one(&mut self, done: &mut impl FnMut(T, Locator)) -> anyhow::Result<()> {
        if let Some(finished) = self.sending.join_next().await {
            for (tag, locator) in finished.context("internal task failed")?? {
                done(tag, locator);
            }
        }
        Ok(())
    }

    /// Sends what is left and waits for every batch.
    async fn finish(mut self, done: &mut impl FnMut(T, Locator)) -> anyhow::Result<()> {
        self.flush(done).await?;
        while !self.sending.is_empty() {
            self.settle_one(done).await?;
        }
        Ok(())
    }
}

/// Runs blocking work (file I/O, encoding) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("internal task failed: {e}"))?
}

/// Number of blocks a file of `size` bytes takes.
fn chunk_count(size: u64) -> u64 {
    size.div_ceil(MAX_CONTENT as u64)
}

/// Reads `len` bytes at `offset` of `path` and encodes them.
pub(crate) fn read_and_encode(path: &Path, offset: u64, len: usize) -> anyhow::Result<Encoded> {
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)
        .with_context(|| format!("{} changed while it was read", path.display()))?;
    Ok(codec::encode(&buf)?)
}

/// Puts a file or a directory (as a bundle) and returns its URL: `.../<key>/` for a
/// directory, `.../<key>/<name>` for a single file.
/// With `holder`, every block is pinned on the node for it (`remote` needs the token).
pub async fn put_path(
    remote: &Remote,
    path: &Path,
    options: Options,
    holder: Option<&str>,
) -> anyhow::Result<PutReport> {
    let scan = scan_path(path, true).await?;
    put_scanned(remote, path, scan, options, holder).await
}

/// Walks `path` for a put, off the runtime's threads (`bundle::scan_with`).
pub async fn scan_path(path: &Path, include_hidden: bool) -> anyhow::Result<bundle::Scan> {
    let root = path.to_owned();
    blocking(move || Ok(bundle::scan_with(&root, include_hidden, &|_, _| true)?)).await
}

/// `put_path` of what `scan_path` found at `path`.
pub async fn put_scanned(
    remote: &Remote,
    path: &Path,
    scan: bundle::Scan,
    options: Options,
    holder: Option<&str>,
) -> anyhow::Result<PutReport> {
    let single = std::fs::symlink_metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .is_file();
    let total: u64 = scan.files.iter().map(|f| f.entry.size).sum();
    let bar = progress_bar(total, options, "put");
    let uploader = Uploader::for_put(remote, holder);
    let chunks = upload_files(&uploader, &scan.files, |chunk| bar.inc(chunk.size)).await?;
    bar.finish_and_clear();
    let mut files = scan.links.clone();
    for (file, file_chunks) in scan.files.iter().zip(chunks) {
        let mut entry = file.entry.clone();
        entry.contents = file_chunks;
        files.insert(file.path.clone(), entry);
    }
    let directories = scan.directories.clone();
    let locator = put_manifest(&uploader, files, directories).await?;
    let name = match (single, scan.files.first()) {
        (true, Some(f)) => utf8_percent_encode(&f.path, URL_PATH).to_string(),
        _ => String::new(),
    };
    Ok(PutReport {
        url: format!("{}{locator}/{name}", remote.base()),
        files: scan.files.len(),
        bytes: total,
        sent: uploader.sent.load(Ordering::Relaxed),
        skipped: uploader.skipped.load(Ordering::Relaxed),
        ignored: scan.skipped,
    })
}

/// Reads and encodes the files' blocks, `UPLOAD_CONCURRENCY` at once, and uploads them
/// in batches (`Batches`); returns each file's chunks in order. `done` sees each chunk
/// once the node holds it.
pub(crate) async fn upload_files(
    uploader: &Uploader,
    files: &[bundle::ScannedFile],
    mut done: impl FnMut(&Chunk),
) -> anyhow::Result<Vec<Vec<Chunk>>> {
    let mut encoding = JoinSet::new();
    let mut batches = Batches::new(uploader);
    let mut chunks: Vec<Vec<Option<Chunk>>> = files
        .iter()
        .map(|f| vec![None; chunk_count(f.entry.size) as usize])
        .collect();
    let mut record = |(file, index, size): (usize, usize, u64), locator: Locator| {
        let chunk = Chunk {
            size,
            url: locator.to_string(),
        };
        done(&chunk);
        chunks[file][index] = Some(chunk);
    };
    for (file_index, file) in files.iter().enumerate() {
        for index in 0..chunk_count(file.entry.size) {
            while encoding.len() >= UPLOAD_CONCURRENCY {
                if let Some(encoded) = encoding.join_next().await {
                    let (tag, encoded) = encoded.context("internal task failed")??;
                    batches.add(tag, encoded, &mut record).await?;
                }
            }
            let offset = index * MAX_CONTENT as u64;
            let len = (file.entry.size - offset).min(MAX_CONTENT as u64) as usize;
            let source = file.source.clone();
            let tag = (file_index, index as usize, len as u64);
            encoding.spawn_blocking(move || {
                read_and_encode(&source, offset, len).map(|encoded| (tag, encoded))
            });
        }
    }
    while let Some(encoded) = encoding.join_next().await {
        let (tag, encoded) = encoded.context("internal task failed")??;
        batches.add(tag, encoded, &mut record).await?;
    }
    batches.finish(&mut record).await?;
    Ok(chunks
        .into_iter()
        .map(|c| c.into_iter().flatten().collect())
        .collect())
}

/// Packs and uploads a bundle's manifest blocks, sub-bundles first so the root's URL
/// only works once everything it names is there.
async fn put_manifest(
    uploader: &Uploader,
    files: std::collections::BTreeMap<String, FileEntry>,
    directories: std::collections::BTreeMap<String, Option<String>>,
) -> anyhow::Result<Locator> {
    put_manifest_blocks(uploader, files, directories)
        .await
        .map(|(root, _)| root)
}

/// `put_manifest`, also returning the ids of every manifest block (root first).
pub(crate) async fn put_manifest_blocks(
    uploader: &Uploader,
    files: std::collections::BTreeMap<String, FileEntry>,
    directories: std::collections::BTreeMap<String, Option<String>>,
) -> anyhow::Result<(Locator, Vec<crate::id::BlockId>)> {
    let packed = blocking(move || Ok(bundle::pack(files, directories, MAX_CONTENT)?)).await?;
    let mut ids = vec![packed.root.locator.id];
    let subs = uploader.send_all(packed.subs).await?;
    ids.extend(subs.iter().map(|l| l.id));
    Ok((uploader.send(packed.root).await?, ids))
}

/// Puts standard input as a one-file bundle whose file is called `name` (pinned for
/// `holder` when given).
pub async fn put_stdin(
    remote: &Remote,
    name: &str,
    options: Options,
    holder: Option<&str>,
) -> anyhow::Result<PutReport> {
    bundle::check_path(name)?;
    if name.contains('/') {
        bail!("--name must be a file name, not a path: {name:?}");
    }
    let bar = progress_bar(0, options, "put");
    let uploader = Uploader::for_put(remote, holder);
    let mut encoding = JoinSet::new();
    let mut batches = Batches::new(&uploader);
    let mut contents: Vec<Option<Chunk>> = Vec::new();
    let mut record = |(at, size): (usize, u64), locator: Locator| {
        if contents.len() <= at {
            contents.resize(at + 1, None);
        }
        contents[at] = Some(Chunk {
            size,
            url: locator.to_string(),
        });
    };
    let mut index = 0usize;
    let mut total = 0u64;
    // Bounded by standard input's end: each turn takes up to MAX_CONTENT bytes of it.
    loop {
        while encoding.len() >= UPLOAD_CONCURRENCY {
            if let Some(encoded) = encoding.join_next().await {
                let (tag, encoded) = encoded.context("internal task failed")??;
                batches.add(tag, encoded, &mut record).await?;
            }
        }
        let buf = blocking(|| {
            let mut buf = Vec::with_capacity(MAX_CONTENT);
            std::io::stdin()
                .lock()
                .take(MAX_CONTENT as u64)
                .read_to_end(&mut buf)
                .context("reading standard input")?;
            Ok(buf)
        })
        .await?;
        if buf.is_empty() {
            break;
        }
        total += buf.len() as u64;
        bar.inc(buf.len() as u64);
        let tag = (index, buf.len() as u64);
        encoding.spawn_blocking(move || {
            codec::encode(&buf)
                .map(|encoded| (tag, encoded))
                .map_err(anyhow::Error::new)
        });
        index += 1;
    }
    while let Some(encoded) = encoding.join_next().await {
        let (tag, encoded) = encoded.context("internal task failed")??;
        batches.add(tag, encoded, &mut record).await?;
    }
    batches.finish(&mut record).await?;
    contents.resize(index, None);
    bar.finish_and_clear();
    let entry = FileEntry {
        contents: contents.into_iter().flatten().collect(),
        executable: false,
        link: None,
        modified: bundle::modified_of(SystemTime::now()),
        readonly: false,
        size: total,
    };
    let files = std::collections::BTreeMap::from([(name.to_owned(), entry)]);
    let locator = put_manifest(&uploader, files, Default::default()).await?;
    Ok(PutReport {
        url: format!(
            "{}{locator}/{}",
            remote.base(),
            utf8_percent_encode(name, URL_PATH)
        ),
        files: 1,
        bytes: total,
        sent: uploader.sent.load(Ordering::Relaxed),
        skipped: uploader.skipped.load(Ordering::Relaxed),
        ignored: Vec::new(),
    })
}

/// Fetches the block of `locator` (signature and hash checked) and decrypts it
/// (verified).
pub async fn fetch(remote: &Remote, locator: Locator) -> anyhow::Result<Vec<u8>> {
    let block = remote.get_block(&locator.id, None).await?;
    blocking(move || {
        codec::decode(&block, locator.mode, &locator.key)
            .map(|d| d.content)
            .map_err(|e| anyhow::Error::new(e).context(format!("block {}", locator.id)))
    })
    .await
}

/// What a content URL holds.
pub enum Opened {
    /// One block's content.
    Data(Vec<u8>),
    /// A bundle, loaded whole.
    Bundle(Tree),
}

/// Opens a content locator: its data, or its bundle with every sub-bundle.
pub async fn open(remote: &Remote, locator: Locator) -> anyhow::Result<Opened> {
    let content = fetch(remote, locator).await?;
    if !Manifest::looks_like(&content) {
        return Ok(Opened::Data(content));
    }
    let tree = load_tree(remote, &content, |_| {}).await?;
    Ok(Opened::Bundle(tree))
}

/// Loads the tree of root manifest `content` within `Limits::CLIENT`, fetching its
/// sub-bundles from `remote`; `seen` sees each sub-bundle as it is fetched.
async fn load_tree(
    remote: &Remote,
    content: &[u8],
    mut seen: impl FnMut(Locator),
) -> anyhow::Result<Tree> {
    let manifest = Manifest::decode(content)?;
    let fetch_sub = |sub: Locator| {
        seen(sub);
        let remote = remote.clone();
        async move { fetch(&remote, sub).await }
    };
    Tree::load(manifest, content.len(), bundle::Limits::CLIENT, fetch_sub)
        .await
        .map_err(|e| match e {
            bundle::LoadError::Bundle(e) => anyhow::Error::new(e),
            bundle::LoadError::Fetch(e) => e,
        })
}

/// Resolves a content URL path to what it names: data, a file of a bundle, or a
/// directory of a bundle (as a tree of its own).
pub enum Target {
    /// One block's content.
    Data(Vec<u8>),
    /// A file (name, entry).
    File(String, FileEntry),
    /// A directory's tree.
    Tree(Tree),
}

/// Every block a content URL path stands for: `/sha256/<id>` (or a bare id) is that
/// block; a locator is its block and, for a bundle, every manifest and chunk block of
/// the whole bundle (whatever path inside it follows), loaded within `Limits::CLIENT`.
pub async fn blocks_of(remote: &Remote, path: &str) -> anyhow::Result<Vec<BlockId>> {
    let bare = path.trim_end_matches('/');
    let bare = bare.strip_prefix("/sha256/").unwrap_or(bare);
    if let Ok(id) = bare.parse::<BlockId>() {
        return Ok(vec![id]);
    }
    let (locator, _) = Locator::split(path)?;
    let content = fetch(remote, locator).await?;
    let mut ids = vec![locator.id];
    if !Manifest::looks_like(&content) {
        return Ok(ids);
    }
    let mut subs = Vec::new();
    let tree = load_tree(remote, &content, |sub| subs.push(sub.id)).await?;
    ids.extend(subs);
    let chunks = tree.files.values().flat_map(|f| &f.contents);
    ids.extend(chunks.filter_map(|c| bundle::parse_chunk_url(&c.url).map(|l| l.id)));
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Opens `path` (`/sha256/<id>/<mode>/<key>[/<path>]`).
pub async fn resolve(remote: &Remote, path: &str) -> anyhow::Result<Target> {
    let (locator, rest) = Locator::split(path)?;
    let rest = percent_decode_str(rest.unwrap_or(""))
        .decode_utf8()
        .context("the path is not UTF-8")?
        .into_owned();
    let inner = rest.trim_matches('/');
    match open(remote, locator).await? {
        Opened::Data(data) if inner.is_empty() => Ok(Target::Data(data)),
        Opened::Data(_) => bail!("{locator} is not a bundle, so it has no {inner:?}"),
        Opened::Bundle(tree) => match tree.lookup(inner) {
            Lookup::File(name, entry) => Ok(Target::File(name.to_owned(), entry.clone())),
            Lookup::Directory(dir) => Ok(Target::Tree(tree.subtree(&dir))),
            Lookup::NotFound => Err(anyhow::Error::new(crate::client::ClientError::NotFound(
                locator.id,
            ))
            .context(format!("{inner:?} is not in the bundle"))),
        },
    }
}

/// Fetches and decrypts one chunk, checking its size against the manifest.
pub(crate) async fn fetch_chunk(remote: Remote, chunk: Chunk) -> anyhow::Result<Vec<u8>> {
    let locator = bundle::parse_chunk_url(&chunk.url)
        .ok_or_else(|| Mismatch(format!("bad chunk url {}", chunk.url)))?;
    let data = fetch(&remote, locator).await?;
    if data.len() as u64 != chunk.size {
        return Err(Mismatch(format!(
            "block {} holds {} bytes, the manifest says {}",
            locator.id,
            data.len(),
            chunk.size
        ))
        .into());
    }
    Ok(data)
}

/// Writes a bundle file's contents to `out`, in order, `DOWNLOAD_CONCURRENCY` blocks
/// ahead.
pub async fn write_file(
    remote: &Remote,
    entry: &FileEntry,
    out: &mut dyn Write,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let mut ahead = std::collections::VecDeque::new();
    let mut pending = entry.contents.iter().cloned();
    loop {
        while ahead.len() < DOWNLOAD_CONCURRENCY {
            let Some(chunk) = pending.next() else { break };
            ahead.push_back(tokio::spawn(fetch_chunk(remote.clone(), chunk)));
        }
        let Some(next) = ahead.pop_front() else { break };
        let data = next
            .await
            .map_err(|e| anyhow!("internal task failed: {e}"))??;
        out.write_all(&data).context("writing the output")?;
        bar.inc(data.len() as u64);
    }
    out.flush().context("writing the output")?;
    Ok(())
}

/// Writes a bundle file to `dest` (atomically: a temp file renamed into place), with
/// its mode and modification time.
pub async fn save_file(
    remote: &Remote,
    entry: &FileEntry,
    dest: &Path,
    options: Options,
) -> anyhow::Result<()> {
    if let Some(target) = &entry.link {
        bail!("the file is a symlink to {target:?}; get its bundle to restore links");
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let bar = progress_bar(entry.size, options, "get");
    let result = async {
        // Messages name `dest`: the temporary name is an internal detail.
        let mut file =
            std::fs::File::create(&temp).with_context(|| format!("{}", dest.display()))?;
        write_file(remote, entry, &mut file, &bar).await?;
        file.sync_all()?;
        file.set_modified(bundle::time_of(entry.modified))?;
        let mut mode = 0o644;
        if entry.executable {
            mode |= 0o111;
        }
        if entry.readonly {
            mode &= !0o222;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&temp, dest).with_context(|| format!("{}", dest.display()))?;
        Ok(())
    }
    .await;
    bar.finish_and_clear();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Restores a tree into `dest` (absent or empty): all of it, or nothing. When blocks
/// are missing or corrupt, `Incomplete` names them and their files.
pub async fn restore(
    remote: &Remote,
    tree: Tree,
    dest: &Path,
    options: Options,
) -> anyhow::Result<u64> {
    let restore = {
        let (tree, dest) = (tree.clone(), dest.to_owned());
        Arc::new(blocking(move || Ok(Restore::begin(&tree, &dest)?)).await?)
    };
    let bar = progress_bar(tree.total_size(), options, "get");
    let mut problems = Problems::default();
    fetch_tree(remote, &tree, Some(restore.clone()), &bar, &mut problems).await?;
    bar.finish_and_clear();
    if !problems.is_empty() {
        return Err(Incomplete(format!("{}; nothing was written", problems.describe())).into());
    }
    let restore = Arc::try_unwrap(restore).map_err(|_| anyhow!("restore still in use"))?;
    let total = tree.total_size();
    blocking(move || Ok(restore.finish(&tree)?)).await?;
    Ok(total)
}

/// Blocks a tree needs are missing in the mesh or do not verify: nothing was written
/// (a restore), or the tree is damaged (a check). Exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Incomplete(pub String);

/// Files named in a report of missing blocks; the rest are counted.
const MAX_NAMED_FILES: usize = 20;

/// Blocks that failed while fetching a tree.
#[derive(Debug, Default)]
pub struct Problems {
    /// Blocks no node could give.
    pub missing: BTreeSet<BlockId>,
    /// Blocks that came back but did not decrypt, verify or match their size.
    pub corrupt: BTreeSet<BlockId>,
    /// Files those blocks belong to.
    pub files: BTreeSet<String>,
    /// Blocks fetched and checked.
    pub blocks: u64,
    /// Their bytes of content.
    pub bytes: u64,
}

impl Problems {
    /// True when every block was fetched and checked.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
    }

    /// How many blocks failed, and in which files (the first `MAX_NAMED_FILES`).
    pub fn describe(&self) -> String {
        let mut named: Vec<&str> = self
            .files
            .iter()
            .take(MAX_NAMED_FILES)
            .map(String::as_str)
            .collect();
        let more = self.files.len().saturating_sub(MAX_NAMED_FILES);
        let tail = if more > 0 {
            named.push("...");
            format!(" (and {more} more)")
        } else {
            String::new()
        };
        format!(
            "{} missing in the mesh and {} corrupt, in {}{tail}: /{}",
            count(self.missing.len(), "block", "blocks"),
            self.corrupt.len(),
            count(self.files.len(), "file", "files"),
            named.join(", /")
        )
    }
}

/// Fetches (and checks) every block of `tree`, writing each into `restore` when given.
/// Blocks that are missing or corrupt are recorded in `problems`; any other failure
/// (the node unreachable, a disk error) ends the fetch with an error.
pub async fn fetch_tree(
    remote: &Remote,
    tree: &Tree,
    restore: Option<Arc<Restore>>,
    bar: &ProgressBar,
    problems: &mut Problems,
) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(DOWNLOAD_CONCURRENCY));
    let mut tasks = JoinSet::new();
    let settle = |problems: &mut Problems, done: Result<Fetched, tokio::task::JoinError>| {
        match done.context("internal task failed")? {
            Fetched::Ok(len) => {
                problems.blocks += 1;
                problems.bytes += len;
                bar.inc(len);
            }
            Fetched::Bad { id, path, missing } => {
                problems.files.insert(path);
                if missing {
                    problems.missing.insert(id);
                } else {
                    problems.corrupt.insert(id);
                }
            }
            Fetched::Failed(e) => return Err(e),
        }
        Ok::<_, anyhow::Error>(())
    };
    for (path, entry) in &tree.files {
        let mut offset = 0u64;
        for chunk in &entry.contents {
            let permit = permits.clone().acquire_owned().await?;
            while let Some(done) = tasks.try_join_next() {
                settle(problems, done)?;
            }
            let (remote, restore, path, chunk) =
                (remote.clone(), restore.clone(), path.clone(), chunk.clone());
            let at = offset;
            offset += chunk.size;
            tasks.spawn(async move {
                let _permit = permit;
                fetch_and_write(remote, chunk, path, restore.map(|r| (r, at))).await
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        settle(problems, done)?;
    }
    Ok(())
}

/// Fetches one chunk of a tree, then decodes it, checks its size and writes it at its
/// offset of file `path` (`place`: the restore and the offset) in one blocking task.
async fn fetch_and_write(
    remote: Remote,
    chunk: Chunk,
    path: String,
    place: Option<(Arc<Restore>, u64)>,
) -> Fetched {
    let Some(locator) = bundle::parse_chunk_url(&chunk.url) else {
        let e = Mismatch(format!("bad chunk url {}", chunk.url));
        return classify(e.into(), BlockId([0; 32]), path);
    };
    let block = match remote.get_block(&locator.id, None).await {
        Ok(block) => block,
        Err(e) => return classify(e.into(), locator.id, path),
    };
    let work = tokio::task::spawn_blocking(move || {
        let data = match decode_chunk(&block, locator, chunk.size) {
            Ok(data) => data,
            Err(e) => return classify(e, locator.id, path),
        };
        let len = data.len() as u64;
        if let Some((restore, at)) = place
            && let Err(e) = restore.write(&path, at, &data)
        {
            return Fetched::Failed(e.into());
        }
        Fetched::Ok(len)
    });
    work.await
        .unwrap_or_else(|e| Fetched::Failed(anyhow!("internal task failed: {e}")))
}

/// Decrypts (and verifies) a chunk's block and checks its size against the manifest's.
fn decode_chunk(block: &[u8], locator: Locator, size: u64) -> anyhow::Result<Vec<u8>> {
    let data = codec::decode(block, locator.mode, &locator.key)
        .map(|d| d.content)
        .map_err(|e| anyhow::Error::new(e).context(format!("block {}", locator.id)))?;
    if data.len() as u64 != size {
        return Err(Mismatch(format!(
            "block {} holds {} bytes, the manifest says {size}",
            locator.id,
            data.len(),
        ))
        .into());
    }
    Ok(data)
}

/// How one chunk fetch ended.
enum Fetched {
    Ok(u64),
    Bad {
        id: BlockId,
        path: String,
        missing: bool,
    },
    Failed(anyhow::Error),
}

fn classify(e: anyhow::Error, id: BlockId, path: String) -> Fetched {
    if is_missing(&e) {
        return Fetched::Bad {
            id,
            path,
            missing: true,
        };
    }
    let corrupt = e.chain().any(|c| {
        c.downcast_ref::<ClientError>()
            .is_some_and(ClientError::is_not_found_or_unverified)
            || c.downcast_ref::<CodecError>().is_some()
            || c.downcast_ref::<Mismatch>().is_some()
    });
    if corrupt {
        Fetched::Bad {
            id,
            path,
            missing: false,
        }
    } else {
        Fetched::Failed(e)
    }
}

/// True when `e` is "the block is not in the mesh".
pub fn is_missing(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<ClientError>()
            .is_some_and(|c| matches!(c, ClientError::NotFound(_)))
    })
}

/// One line per entry of a tree, for `bundle ls`, sorted by path: kind and mode, size,
/// modification time, path (and link target).
pub fn list_lines(tree: &Tree) -> Vec<String> {
    let mut lines: Vec<(&str, String)> = Vec::new();
    let time = |m: f64| httpdate::fmt_http_date(bundle::time_of(m));
    for (path, f) in &tree.files {
        let line = match &f.link {
            Some(target) => format!("l     {:>12}  {}  {path} -> {target}", "", time(f.modified)),
            None => {
                let mode = match (f.readonly, f.executable) {
                    (true, true) => "r-x",
                    (true, false) => "r--",
                    (false, true) => "rwx",
                    (false, false) => "rw-",
                };
                format!("- {mode} {:>12}  {}  {path}", f.size, time(f.modified))
            }
        };
        lines.push((path, line));
    }
    for (path, d) in &tree.directories {
        let line = match d {
            Some(target) => format!("l     {:>12}  {:29}  {path}/ -> {target}", "", ""),
            None => format!("d     {:>12}  {:29}  {path}/", "", ""),
        };
        lines.push((path, line));
    }
    lines.sort();
    lines.into_iter().map(|(_, line)| line).collect()
}

/// Elapsed-time helper for summaries.
pub fn rate(bytes: u64, since: Instant) -> String {
    let secs = since.elapsed().as_secs_f64().max(1e-3);
    format!("{:.1} MB/s", bytes as f64 / secs / 1e6)
}

/// The id in an `id` argument: 64 hex digits, or a `/sha256/<id>` path.
pub fn parse_id(text: &str) -> anyhow::Result<BlockId> {
    let hex = text.trim().trim_start_matches("/sha256/");
    hex.parse().with_context(|| format!("not an id: {text:?}"))
}

/// `n` with the noun in the right number: "1 file", "2 files".
pub fn count<N: std::fmt::Display + PartialEq + From<u8>>(n: N, one: &str, many: &str) -> String {
    let noun = if n == N::from(1) { one } else { many };
    format!("{n} {noun}")
}
