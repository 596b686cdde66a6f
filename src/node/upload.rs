//! Files sent to the node whole (the dashboard's drag and drop), stored as one bundle:
//! the node does what `libernet put` does on a client. Each file's bytes are cut into
//! `MAX_CONTENT` chunks as they arrive and encoded (convergent AES-256-GCM, as the codec
//! does for every client); the encoded blocks are stored in groups of at most
//! `GROUP_BLOCKS` blocks and `GROUP_BYTES` bytes, each with one group commit, so an
//! upload holds at most one group and one chunk in memory whatever its size. The
//! manifest is packed and stored last: the bundle's URL works only once everything it
//! names is here.
//!
//! Every block is pinned for the holder `upload` before it is stored, so the operator's own
//! content is never evicted to make room for cached blocks (`DELETE
//! /pins/{id}?holder=upload` lets one go). An upload that fails or is abandoned takes
//! back the pins it added; the blocks it stored stay, as ordinary evictable blocks.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;

use super::{BatchSender, Node, NodeError, blocking};
use crate::bundle::{self, Chunk, FileEntry};
use crate::codec::{self, Encoded, Locator, MAX_CONTENT};
use crate::id::BlockId;
use crate::store::{Durability, Holder, PutOutcome, Store};

/// Most files in one upload: a bigger tree is a job for the CLI, which resumes.
pub const MAX_UPLOAD_FILES: usize = 50_000;

/// Encoded blocks an upload gathers before storing them as one group commit (see
/// `Node::put_batch`): many small files cost a few `syncfs` calls instead of two fsyncs
/// each, and at most this many blocks (`GROUP_BYTES` of them) wait in memory.
const GROUP_BLOCKS: usize = 256;

/// Bytes of encoded blocks an upload gathers at most before storing them.
const GROUP_BYTES: usize = 4 * 1024 * 1024;

/// What an upload stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Uploaded {
    /// The bundle's path: `/sha256/<id>/aes256/<key>/`.
    pub url: String,
    /// Files in it.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Blocks stored that were not here before (manifests included).
    pub blocks: u64,
    /// Blocks that were here already.
    pub already_held: u64,
    /// The root has an `index.html`: the URL opens as a website.
    pub index: bool,
}

/// A bundle being received, file by file.
pub struct BundleUpload<'a> {
    node: &'a Node,
    files: BTreeMap<String, FileEntry>,
    /// The file being received: its path, entry and bytes not yet stored.
    current: Option<(String, FileEntry, Vec<u8>)>,
    bytes: u64,
    stored: u64,
    already_held: u64,
    /// Pins this upload added; taken back on drop unless it finished.
    pins: PinsAdded,
    /// Encoded blocks not yet stored (at most `GROUP_BLOCKS`, `GROUP_BYTES`).
    group: Vec<(BlockId, Bytes)>,
    group_bytes: usize,
}

impl Node {
    /// Starts receiving a bundle.
    pub fn begin_upload(&self) -> BundleUpload<'_> {
        BundleUpload {
            node: self,
            files: BTreeMap::new(),
            current: None,
            bytes: 0,
            stored: 0,
            already_held: 0,
            pins: PinsAdded {
                store: self.store.clone(),
                holder: Holder::upload(),
                ids: Vec::new(),
                finished: false,
            },
            group: Vec::new(),
            group_bytes: 0,
        }
    }
}

impl BundleUpload<'_> {
    /// Starts the file at `path` (relative, `/`-separated), modified at `modified`
    /// (now when unknown). Ends the file before it.
    pub async fn begin_file(
        &mut self,
        path: &str,
        modified: Option<SystemTime>,
    ) -> Result<(), NodeError> {
        self.end_file().await?;
        let bad = |why: String| Err(NodeError::BadUpload(why));
        if let Err(e) = bundle::check_path(path) {
            let why = match e {
                bundle::BundleError::BadPath(_, why) => why.to_owned(),
                other => other.to_string(),
            };
            return bad(format!("file name {path:?}: {why}"));
        }
        if self.files.contains_key(path) {
            return bad(format!("{path:?} is sent twice"));
        }
        if self.files.len() >= MAX_UPLOAD_FILES {
            return bad(format!("more than {MAX_UPLOAD_FILES} files"));
        }
        let modified = bundle::modified_of(modified.unwrap_or_else(SystemTime::now));
        let entry = FileEntry {
            modified,
            ..FileEntry::empty()
        };
        self.current = Some((path.to_owned(), entry, Vec::new()));
        Ok(())
    }

    /// Adds `data` to the current file, storing each chunk as it fills.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), NodeError> {
        super::Metrics::add(&self.node.metrics.bytes_in, data.len() as u64);
        while !data.is_empty() {
            let Some((_, _, pending)) = self.current.as_mut() else {
                return Err(NodeError::BadUpload("file data before any file".into()));
            };
            let take = (MAX_CONTENT - pending.len()).min(data.len());
            pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if pending.len() == MAX_CONTENT {
                self.flush_chunk().await?;
            }
        }
        Ok(())
    }

    /// Ends the current file, if any.
    pub async fn end_file(&mut self) -> Result<(), NodeError> {
        if self.current.is_none() {
            return Ok(());
        }
        self.flush_chunk().await?;
        if let Some((path, entry, _)) = self.current.take() {
            self.bytes += entry.size;
            self.files.insert(path, entry);
        }
        Ok(())
    }

    /// Stores the manifest and answers the bundle's URL. An upload of no file is
    /// refused.
    pub async fn finish(mut self) -> Result<Uploaded, NodeError> {
        self.end_file().await?;
        if self.files.is_empty() {
            return Err(NodeError::BadUpload("no file in the upload".into()));
        }
        let files = std::mem::take(&mut self.files);
        let count = files.len();
        let index = files.contains_key("index.html");
        let packed = blocking(move || bundle::pack(files, BTreeMap::new(), MAX_CONTENT))
            .await?
            .map_err(|e| NodeError::BadUpload(e.to_string()))?;
        for sub in packed.subs {
            self.store_encoded(sub).await?;
        }
        // Everything the root names is stored before the root itself.
        self.store_group().await?;
        let root = self.store_encoded(packed.root).await?;
        self.store_group().await?;
        self.pins.finished = true;
        Ok(Uploaded {
            url: format!("{root}/"),
            files: count,
            bytes: self.bytes,
            blocks: self.stored,
            already_held: self.already_held,
            index,
        })
    }

    /// Encodes and stores what is pending of the current file (nothing for an empty
    /// file) as its next chunk.
    async fn flush_chunk(&mut self) -> Result<(), NodeError> {
        let Some((_, _, pending)) = self.current.as_mut() else {
            return Ok(());
        };
        if pending.is_empty() {
            return Ok(());
        }
        let content = std::mem::take(pending);
        let size = content.len() as u64;
        let encoded = blocking(move || codec::encode(&content))
            .await?
            .map_err(|e| NodeError::BadUpload(e.to_string()))?;
        let locator = self.store_encoded(encoded).await?;
        if let Some((_, entry, _)) = self.current.as_mut() {
            entry.size += size;
            entry.contents.push(Chunk {
                size,
                url: locator.to_string(),
            });
        }
        Ok(())
    }

    /// Adds one block to the group to store, storing the group once it is full.
    async fn store_encoded(&mut self, encoded: Encoded) -> Result<Locator, NodeError> {
        let locator = encoded.locator;
        self.group_bytes += encoded.block.len();
        self.group.push((locator.id, Bytes::from(encoded.block)));
        if self.group.len() >= GROUP_BLOCKS || self.group_bytes >= GROUP_BYTES {
            self.store_group().await?;
        }
        Ok(locator)
    }

    /// Pins and stores the group's blocks with one group commit; the first refusal
    /// fails the upload.
    async fn store_group(&mut self) -> Result<(), NodeError> {
        let group = std::mem::take(&mut self.group);
        self.group_bytes = 0;
        if group.is_empty() {
            return Ok(());
        }
        let ids: Vec<BlockId> = group.iter().map(|(id, _)| *id).collect();
        let sender = BatchSender::Client {
            pin: Some(self.pins.holder.clone()),
        };
        let mut failed = None;
        for (id, result) in ids.into_iter().zip(self.node.ingest(group, sender).await) {
            match result {
                Ok((outcome, pinned)) => {
                    if pinned {
                        self.pins.ids.push(id);
                    }
                    match outcome {
                        PutOutcome::Stored => self.stored += 1,
                        PutOutcome::AlreadyHeld => self.already_held += 1,
                    }
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The pins an upload added, taken back when it is dropped unfinished.
struct PinsAdded {
    store: std::sync::Arc<Store>,
    holder: Holder,
    ids: Vec<BlockId>,
    finished: bool,
}

impl Drop for PinsAdded {
    fn drop(&mut self) {
        if self.finished || self.ids.is_empty() {
            return;
        }
        let (store, holder, ids) = (
            self.store.clone(),
            self.holder.clone(),
            std::mem::take(&mut self.ids),
        );
        let unpin = move || {
            for id in &ids {
                if let Err(e) = store.unpin(id, Some(&holder), Durability::Soon) {
                    tracing::warn!(%id, error = %e, "taking back an abandoned upload's pin");
                }
            }
        };
        // Dropped on a runtime worker when a request is abandoned: the pins file is
        // written off it.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(unpin)),
            Err(_) => unpin(),
        }
    }
}
