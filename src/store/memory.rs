//! The memory backend: blocks and the store's named files in maps, gone with the store.
//! For unit tests and for simulations that run many stores in one process: no files, no
//! lock, no directory. Quarantined blocks are dropped (only the store's count remains).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::StoreError;
use super::backend::{Backend, FileRead};
use crate::id::BlockId;

/// Blocks and named files held in memory.
#[derive(Default)]
pub(crate) struct MemoryFiles {
    blocks: Mutex<HashMap<BlockId, Bytes>>,
    meta: Mutex<HashMap<String, String>>,
}

impl MemoryFiles {
    fn blocks(&self) -> MutexGuard<'_, HashMap<BlockId, Bytes>> {
        self.blocks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn meta(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.meta.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for MemoryFiles {
    fn write(&self, id: &BlockId, bytes: &[u8]) -> Result<(), StoreError> {
        self.blocks().insert(*id, Bytes::copy_from_slice(bytes));
        Ok(())
    }

    /// Copies the bytes into `buf`, as a file read would: the caller hashes them and may
    /// share the buffer back to its pool.
    fn read(&self, id: &BlockId, size: u32, mut buf: Vec<u8>) -> Result<FileRead, StoreError> {
        let Some(bytes) = self.blocks().get(id).cloned() else {
            return Ok(FileRead::Gone);
        };
        if bytes.len() != size as usize {
            return Ok(FileRead::Odd("size differs from the index", buf));
        }
        buf.extend_from_slice(&bytes);
        Ok(FileRead::Bytes(buf, None))
    }

    fn remove(&self, id: &BlockId) -> Result<bool, StoreError> {
        Ok(self.blocks().remove(id).is_some())
    }

    fn quarantine(&self, id: &BlockId) -> std::io::Result<Option<String>> {
        Ok(self
            .blocks()
            .remove(id)
            .map(|_| "nowhere (a memory store drops it)".to_owned()))
    }

    fn scan(&self) -> Result<Vec<(BlockId, u32)>, StoreError> {
        Ok(self
            .blocks()
            .iter()
            .map(|(id, bytes)| (*id, bytes.len() as u32))
            .collect())
    }

    fn read_meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.meta().get(name).cloned())
    }

    fn write_meta(&self, name: &str, text: &str, _durable: bool) -> Result<(), StoreError> {
        self.meta().insert(name.to_owned(), text.to_owned());
        Ok(())
    }

    fn disk_free(&self) -> Option<u64> {
        None
    }

    fn root(&self) -> Option<&Path> {
        None
    }

    fn block_path(&self, _id: &BlockId) -> Option<PathBuf> {
        None
    }

    #[cfg(test)]
    fn damage(&self, id: &BlockId, at: usize) {
        let mut blocks = self.blocks();
        let bytes = blocks.get_mut(id).expect("damage a held block");
        let mut rotten = bytes.to_vec();
        rotten[at] ^= 0x20;
        *bytes = Bytes::from(rotten);
    }

    #[cfg(test)]
    fn has(&self, id: &BlockId) -> bool {
        self.blocks().contains_key(id)
    }
}
