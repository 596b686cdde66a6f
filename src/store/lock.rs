//! The store's lock file: held for the life of the process so that two servers never
//! share one store. The holder writes its pid into the file, so a second server can say
//! who is in the way.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// Name of the lock file inside the store.
pub const LOCK_FILE: &str = "lock";

/// An exclusive lock on a store, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock of `root` at once, or fails naming the store and the holder's pid.
    pub fn acquire(root: &Path) -> Result<StoreLock, StoreError> {
        let path = root.join(LOCK_FILE);
        let io = |source| StoreError::Io {
            context: format!("lock file {}", path.display()),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    store: PathBuf::from(root),
                    holder: read_holder(&mut file),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(StoreLock { _file: file })
    }
}

/// The pid written by the lock's holder, as text ("unknown" if unreadable).
fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    match file.read_to_string(&mut text) {
        Ok(_) if !text.trim().is_empty() => text.trim().to_owned(),
        _ => "unknown".to_owned(),
    }
}
