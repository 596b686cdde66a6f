//! The seam between `Store`'s logic (index, quota, eviction, pins, hot cache,
//! quarantine, scrub) and where block bytes and the store's small named files live: on
//! disk (`disk.rs`, the node's store) or in memory (`memory.rs`, for tests and for
//! simulations that run many stores in one process). A backend knows ids, bytes and file
//! names; it never decides what to keep, and it never hashes.

use std::path::{Path, PathBuf};

use super::StoreError;
use crate::id::BlockId;

/// Where a store keeps its blocks and named files. Every method may block.
pub(crate) trait Backend: Send + Sync {
    /// Stores `bytes` as block `id` (not held yet); returns once they survive a crash
    /// (disk) or once later reads see them (memory).
    fn write(&self, id: &BlockId, bytes: &[u8]) -> Result<(), StoreError>;

    /// Stores many blocks as `write` stores one, with one result per block in order;
    /// each `Ok` survives a crash once this returns. A backend may make them durable
    /// together (a group commit) rather than one by one.
    fn write_many(&self, blocks: &[(BlockId, &[u8])]) -> Vec<Result<(), StoreError>> {
        blocks
            .iter()
            .map(|(id, bytes)| self.write(id, bytes))
            .collect()
    }

    /// Reads block `id`, expected to be `size` bytes, into `buf` (empty, any capacity).
    /// The bytes are not checked against the id: that is the caller's job.
    fn read(&self, id: &BlockId, size: u32, buf: Vec<u8>) -> Result<FileRead, StoreError>;

    /// Removes block `id`. `Ok(false)` when it was not there.
    fn remove(&self, id: &BlockId) -> Result<bool, StoreError>;

    /// Moves block `id` out of the blocks, never to be served again. `Ok(Some(where))`
    /// once done, `Ok(None)` when it was not there (another reader got there first).
    fn quarantine(&self, id: &BlockId) -> std::io::Result<Option<String>>;

    /// Every block at start-up: (id, size). Drops what cannot be a block (interrupted
    /// writes, misplaced or oversized files).
    fn scan(&self) -> Result<Vec<(BlockId, u32)>, StoreError>;

    /// The text of the store's file `name` (such as `PINS_FILE`), None when absent.
    fn read_meta(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// Replaces the store's file `name` whole with `text`, atomically: a reader sees the
    /// old text or the new, never a mix. With `durable`, the new text survives a crash
    /// once this returns.
    fn write_meta(&self, name: &str, text: &str, durable: bool) -> Result<(), StoreError>;

    /// Bytes the medium still lets this process write, None when it cannot say.
    fn disk_free(&self) -> Option<u64>;

    /// The store's directory, None for a store that has none.
    fn root(&self) -> Option<&Path>;

    /// Where block `id`'s file is, None for a store without files.
    fn block_path(&self, id: &BlockId) -> Option<PathBuf>;

    /// Flips one bit of byte `at` of block `id` behind the store's back, as rot would
    /// (keeping a file's mtime).
    #[cfg(test)]
    fn damage(&self, id: &BlockId, at: usize);

    /// True when block `id`'s bytes are there, whatever the index says.
    #[cfg(test)]
    fn has(&self, id: &BlockId) -> bool;
}

/// What a backend's `read` found in a block's place.
pub(crate) enum FileRead {
    /// The block's bytes, exactly as many as expected; not yet checked against the id.
    Bytes(Vec<u8>),
    /// Something never to be served, and why (a symlink, FIFO, socket, device or
    /// directory, or a file of another size); the buffer comes back, empty.
    Odd(&'static str, Vec<u8>),
    /// Nothing there: evicted since the index lookup, or removed behind the store's back.
    Gone,
}
