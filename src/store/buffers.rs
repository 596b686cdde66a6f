//! Reusable read buffers for large blocks. Reading a 1 MiB block into a fresh allocation
//! page-faults 256 new pages (zeroed and charged one by one), which cost more than the
//! copy itself; a returned buffer's pages are already mapped. A buffer goes back to the
//! pool when the last `Bytes` pointing into it is dropped (when hyper has sent it).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::id::MAX_BLOCK_SIZE;

/// Capacity of every pooled buffer: the largest block plus the one byte `read_file`
/// reads past the expected end to notice a file that grew.
const BUFFER_CAPACITY: usize = MAX_BLOCK_SIZE + 1;

/// Buffers kept for reuse at most (64 MiB): more than the large reads in flight on a
/// busy node; beyond that, buffers are freed.
const MAX_POOLED: usize = 64;

/// A bounded stack of spare read buffers.
#[derive(Default)]
pub struct BufferPool {
    spare: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// An empty buffer able to hold any block.
    pub fn take(&self) -> Vec<u8> {
        self.lock()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY))
    }

    /// Shares `buf` as `Bytes`; the buffer returns to the pool when they are dropped.
    pub fn share(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    /// Spare buffers now.
    #[cfg(test)]
    pub fn spare(&self) -> usize {
        self.lock().len()
    }

    /// Returns a buffer taken with `take` and not shared.
    pub fn give_back(&self, mut buf: Vec<u8>) {
        if buf.capacity() < BUFFER_CAPACITY {
            return;
        }
        buf.clear();
        let mut spare = self.lock();
        if spare.len() < MAX_POOLED {
            spare.push(buf);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.spare.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Pooled {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_bytes_are_dropped() {
        let pool = Arc::new(BufferPool::default());
        let mut buf = pool.take();
        buf.extend_from_slice(b"block bytes");
        let bytes = pool.share(buf);
        let part = bytes.slice(0..5);
        drop(bytes);
        assert_eq!(pool.spare(), 0, "a slice still points into the buffer");
        assert_eq!(&part[..], b"block");
        drop(part);
        assert_eq!(pool.spare(), 1);
        let again = pool.take();
        assert!(again.is_empty() && again.capacity() >= BUFFER_CAPACITY);
    }
}
