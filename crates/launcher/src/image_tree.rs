//! The image tree a container starts from: a read-only directory (in the cache, or the
//! user's own), reached only through an O_PATH fd, and what the launcher reads inside it
//! before the container exists (the manifest, /etc/passwd). Every read resolves inside
//! the tree, so a hostile image's symlinks cannot point the launcher at a host file.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use mkroot_common::manifest::{run_defaults_from_json, MANIFEST_PATH};
use mkroot_common::run_defaults::RunDefaults;

use crate::error::LaunchError;

/// Opens an image tree (a directory) for the container: an O_PATH fd, through which
/// alone the container's setup reaches it.
pub fn open(tree: &Path, image: &Path) -> Result<OwnedFd, LaunchError> {
    use std::os::unix::ffi::OsStrExt;
    let tree_c = CString::new(tree.as_os_str().as_bytes())
        .map_err(|_| LaunchError::Invalid(format!("{}: contains a NUL byte", image.display())))?;
    // SAFETY: valid C string.
    let fd = unsafe {
        libc::open(
            tree_c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(unreadable(image, &std::io::Error::last_os_error()));
    }
    // SAFETY: a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The run defaults (command and environment) the image's mkroot manifest records;
/// `None` when it has no manifest.
pub fn manifest_defaults(tree: &OwnedFd, image: &Path) -> Result<Option<RunDefaults>, LaunchError> {
    let where_ = || format!("{}: {MANIFEST_PATH}", image.display());
    let Some(bytes) =
        read_file(tree, MANIFEST_PATH).map_err(|e| LaunchError::setup(where_(), e))?
    else {
        return Ok(None);
    };
    run_defaults_from_json(&bytes)
        .map(Some)
        .map_err(|e| LaunchError::Invalid(format!("{}: not a valid image manifest: {e}", where_())))
}

/// Reads the file at `path` in the image tree, `None` if it is not there. Opened with
/// RESOLVE_IN_ROOT: a symlink in an image cannot make the launcher read a host file.
pub fn read_file(tree: &OwnedFd, path: &str) -> std::io::Result<Option<Vec<u8>>> {
    let path = CString::new(path).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = libc::O_RDONLY | libc::O_CLOEXEC;
    let file = match mkroot_common::in_root::open_in_root(tree.as_raw_fd(), &path, flags) {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    // The image may be hostile: a huge file is cut short rather than read into memory.
    const MAX_READ: u64 = 64 << 20;
    // Sized from the start: one read for the whole file, not a doubling series.
    let size = file.metadata().map_or(0, |m| m.len()).min(MAX_READ);
    let mut bytes = Vec::with_capacity(size as usize + 1);
    file.take(MAX_READ).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// The one-line error for an image path that cannot be used at all.
pub(crate) fn unreadable(image: &Path, e: &std::io::Error) -> LaunchError {
    LaunchError::Invalid(match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "{}: no such image; give a tarball (.tar, .tgz), a directory, an OCI layout or an image archive",
            image.display()
        ),
        _ => format!(
            "{}: cannot read the image: {e}; check the path and its permissions",
            image.display()
        ),
    })
}
