//! Opening a path inside an image's root as the kernel resolves it there: every `..`
//! stops at the root and every symlink, absolute ones included, is followed relative to
//! it (openat2 with RESOLVE_IN_ROOT, Linux 5.6+). Both the unpacker and the launcher's
//! mount-point and image-file lookups go through here, so a hostile image cannot point
//! either at a host path.

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Opens `path` beneath the directory `root` with `flags` (`O_PATH | O_CLOEXEC`, ...),
/// resolved as if `root` were `/`. Magic links (`/proc/self/fd/N`) are refused: they are
/// the one kind of link that can jump out of a root even when resolved inside it.
pub fn open_in_root(root: RawFd, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain data; the kernel may grow it, so start from all zeroes.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: a valid C string and open_how, of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn an_absolute_symlink_resolves_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), b"image's own\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        let fd = open_in_root(root.as_raw_fd(), c"link", libc::O_RDONLY | libc::O_CLOEXEC).unwrap();
        let text = std::io::read_to_string(std::fs::File::from(fd)).unwrap();
        assert_eq!(text, "image's own\n");
        let up = open_in_root(root.as_raw_fd(), c"../../etc/passwd", libc::O_RDONLY).unwrap();
        let text = std::io::read_to_string(std::fs::File::from(up)).unwrap();
        assert_eq!(text, "image's own\n");
    }
}
