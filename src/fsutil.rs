//! Small crash-safe file helpers shared by the store and the identity: private files
//! created once with mode 0600, and directory fsync. Knows nothing of blocks or HTTP.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every secret file (node key, admin token): owner read/write only.
pub const PRIVATE_MODE: u32 = 0o600;

/// Creates `path` with mode 0600 holding `bytes`, durably (file and directory fsynced).
/// Fails with `AlreadyExists` rather than overwrite: a secret is written once.
pub fn create_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_MODE)
        .open(path)?;
    // The umask may have cleared bits, never added them; set the mode exactly anyway.
    file.set_permissions(fs::Permissions::from_mode(PRIVATE_MODE))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a secret file, refusing one that others can read or write.
pub fn read_private(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} has mode {mode:o}; it must be private (chmod 600)",
                path.display()
            ),
        ));
    }
    fs::read(path)
}

/// Flushes a directory's entries (a rename or create in it) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    getrandom::fill(buf).map_err(|e| io::Error::other(format!("random source: {e}")))
}
