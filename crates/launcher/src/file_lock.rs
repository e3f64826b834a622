//! flock(2), as the cache and the network state use it: an advisory lock the kernel drops
//! with the last descriptor, so a launch killed with SIGKILL never leaves one held.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Waits for the lock (`libc::LOCK_SH` or `libc::LOCK_EX`) on `file`.
pub fn lock(file: &File, operation: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: a valid open file.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Takes the lock if nobody holds a conflicting one, never waiting: `Ok(false)` when
/// someone does.
pub fn try_lock(file: &File, operation: libc::c_int) -> io::Result<bool> {
    match lock(file, operation | libc::LOCK_NB) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens (creating, mode 0600) the lock file at `path` and waits for its exclusive lock.
pub fn lock_file(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    lock(&file, libc::LOCK_EX)?;
    Ok(file)
}
