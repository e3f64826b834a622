//! Filesystem operations confined to one directory tree: the root an image is unpacked into.
//!
//! Every path taken from an archive is resolved *inside* the root, the way the kernel
//! would resolve it after a chroot: `..` stops at the root, an absolute symlink means the
//! root, and a symlink planted by an earlier entry can point anywhere without leading out.
//! The parent directory is opened with `openat2(RESOLVE_IN_ROOT)` (Linux >= 5.6, through
//! [`crate::in_root`], the launcher's resolver too); where that syscall is missing
//! (ENOSYS, or EPERM from a seccomp filter) a walk of `openat(O_NOFOLLOW)` calls that
//! resolves each symlink itself does the same. The last component is then created
//! relative to that directory fd with `O_NOFOLLOW`/`O_EXCL`, so nothing is ever written
//! *through* a symlink.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// More symlinks than this in one path is a loop (the kernel's own limit is 40).
const MAX_SYMLINKS: u32 = 40;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn errno_is(err: &io::Error, code: libc::c_int) -> bool {
    err.raw_os_error() == Some(code)
}

/// A name from an archive as a C string; a NUL inside it cannot be a file name.
pub fn c_name(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in name"))
}

fn open_at(dir: RawFd, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let fd = cvt(unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The root of an unpack: a directory fd every other path is resolved under.
pub struct RootDir {
    fd: OwnedFd,
    /// Cleared once openat2 turned out to be unusable, so later lookups go straight to
    /// the walk.
    use_openat2: Cell<bool>,
}

impl RootDir {
    /// Opens the root at `path`; `use_openat2: false` always takes the `openat` walk
    /// (for tests of the fallback, and kernels where openat2 misbehaves).
    pub fn open(path: &Path, use_openat2: bool) -> io::Result<RootDir> {
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))?;
        let fd = open_at(
            libc::AT_FDCWD,
            &cpath,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )?;
        Ok(RootDir {
            fd,
            use_openat2: Cell::new(use_openat2),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Opens the directory at `components` (already split, no empty parts) inside the root,
    /// creating missing directories (mode 0755) when `create` is set, as tar does for
    /// archives that leave out parent directory entries.
    pub fn open_dir(&self, components: &[&[u8]], create: bool) -> io::Result<OwnedFd> {
        if components.is_empty() {
            return open_at(self.fd(), c".", libc::O_PATH | libc::O_DIRECTORY, 0);
        }
        if self.use_openat2.get() {
            match self.open_dir_openat2(components) {
                Ok(fd) => return Ok(fd),
                Err(err) if errno_is(&err, libc::ENOSYS) || errno_is(&err, libc::EPERM) => {
                    self.use_openat2.set(false);
                }
                // Missing parents are made by the walk; an over-long path (the kernel's
                // PATH_MAX) and a concurrent-rename EAGAIN are handled one step at a time.
                Err(err)
                    if errno_is(&err, libc::ENOENT)
                        || errno_is(&err, libc::ENAMETOOLONG)
                        || errno_is(&err, libc::EAGAIN) => {}
                Err(err) => return Err(err),
            }
        }
        self.open_dir_walk(components, create)
    }

    fn open_dir_openat2(&self, components: &[&[u8]]) -> io::Result<OwnedFd> {
        let path = c_name(&components.join(&b'/'))?;
        crate::in_root::open_in_root(
            self.fd(),
            &path,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    }

    /// The openat2-free resolver: one `openat(O_NOFOLLOW)` per component; a symlink met on
    /// the way is read and its target spliced into the remaining components, an absolute
    /// target restarting at the root and `..` never climbing above it.
    fn open_dir_walk(&self, components: &[&[u8]], create: bool) -> io::Result<OwnedFd> {
        // The directories walked through below the root, so `..` can step back.
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut pending: VecDeque<Vec<u8>> = components.iter().map(|c| c.to_vec()).collect();
        let mut symlinks = 0;
        let mut just_created = false;
        while let Some(name) = pending.pop_front() {
            if name.is_empty() || name == b"." {
                continue;
            }
            if name == b".." {
                stack.pop();
                continue;
            }
            let here = stack.last().map_or(self.fd(), |fd| fd.as_raw_fd());
            let cname = c_name(&name)?;
            match open_at(
                here,
                &cname,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            ) {
                Ok(fd) => {
                    stack.push(fd);
                    just_created = false;
                }
                Err(err) if errno_is(&err, libc::ENOENT) && create && !just_created => {
                    match cvt(unsafe { libc::mkdirat(here, cname.as_ptr(), 0o755) }) {
                        Ok(_) => {}
                        Err(err) if errno_is(&err, libc::EEXIST) => {}
                        Err(err) => return Err(err),
                    }
                    just_created = true;
                    pending.push_front(name);
                }
                Err(err) if errno_is(&err, libc::ENOTDIR) || errno_is(&err, libc::ELOOP) => {
                    let target = match read_link_at(here, &cname) {
                        Ok(target) => target,
                        // Not a symlink: a file stands where a directory is needed.
                        Err(e) if errno_is(&e, libc::EINVAL) => {
                            return Err(io::Error::from_raw_os_error(libc::ENOTDIR))
                        }
                        Err(e) => return Err(e),
                    };
                    symlinks += 1;
                    if symlinks > MAX_SYMLINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    if target.first() == Some(&b'/') {
                        stack.clear();
                    }
                    for part in target.split(|&b| b == b'/').rev() {
                        pending.push_front(part.to_vec());
                    }
                    just_created = false;
                }
                Err(err) => return Err(err),
            }
        }
        match stack.pop() {
            Some(fd) => Ok(fd),
            None => open_at(self.fd(), c".", libc::O_PATH | libc::O_DIRECTORY, 0),
        }
    }
}

pub fn read_link_at(dir: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    let n = unsafe {
        libc::readlinkat(
            dir,
            name.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// A new regular file, never following or reusing whatever is at `name` (`O_EXCL`).
pub fn create_file(dir: RawFd, name: &CStr) -> io::Result<std::fs::File> {
    let fd = open_at(
        dir,
        name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0o600,
    )?;
    Ok(std::fs::File::from(fd))
}

/// A new directory, owner-only until the archive's mode is applied at the end: the
/// archive's mode could forbid writing the entries that follow into it.
pub fn make_dir(dir: RawFd, name: &CStr) -> io::Result<()> {
    cvt(unsafe { libc::mkdirat(dir, name.as_ptr(), 0o700) }).map(drop)
}

pub fn make_symlink(dir: RawFd, name: &CStr, target: &CStr) -> io::Result<()> {
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) }).map(drop)
}

/// A hard link to `old_name` in `old_dir`, without following it if it is a symlink.
pub fn make_hardlink(old_dir: RawFd, old_name: &CStr, dir: RawFd, name: &CStr) -> io::Result<()> {
    cvt(unsafe { libc::linkat(old_dir, old_name.as_ptr(), dir, name.as_ptr(), 0) }).map(drop)
}

/// `lstat` of `name` in `dir`.
pub fn stat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

/// `fstat` of an open fd (an O_PATH one too).
pub fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// utimensat/futimens times that set the mtime and leave the atime alone.
fn mtime_only(secs: i64, nanos: u32) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nanos as libc::c_long,
        },
    ]
}

/// Sets the mtime of `name` itself (a symlink is not followed); atime is left alone.
pub fn set_mtime_at(dir: RawFd, name: &CStr, secs: i64, nanos: u32) -> io::Result<()> {
    let times = mtime_only(secs, nanos);
    cvt(unsafe {
        libc::utimensat(
            dir,
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn set_mtime_fd(fd: RawFd, secs: i64, nanos: u32) -> io::Result<()> {
    let times = mtime_only(secs, nanos);
    cvt(unsafe { libc::futimens(fd, times.as_ptr()) }).map(drop)
}

/// Removes whatever is at `name` in `dir`: a file or symlink, or a directory tree. Nothing
/// is followed: the walk opens each directory with `O_NOFOLLOW` relative to its parent.
pub fn remove_at(dir: RawFd, name: &CStr) -> io::Result<()> {
    match cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), 0) }) {
        Ok(_) => Ok(()),
        Err(err) if errno_is(&err, libc::EISDIR) || errno_is(&err, libc::EPERM) => {
            remove_tree_at(dir, name)
        }
        Err(err) => Err(err),
    }
}

/// Removes the directory `name` in `dir` and everything below it.
pub fn remove_tree_at(dir: RawFd, name: &CStr) -> io::Result<()> {
    let open_sub = || {
        open_at(
            dir,
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )
    };
    let sub = match open_sub() {
        // A directory the image made unreadable (mode 0): its owner may open it up. Only
        // ever reached without root (root reads any directory), and only for a directory:
        // fchmodat would follow a symlink.
        Err(err) if errno_is(&err, libc::EACCES) && is_dir(&stat_at(dir, name)?) => {
            cvt(unsafe { libc::fchmodat(dir, name.as_ptr(), 0o700, 0) })?;
            open_sub()?
        }
        other => other?,
    };
    // An image may hold read-only directories (0555); its owner (or root) may make them
    // writable again, which removing their entries needs.
    unsafe { libc::fchmod(sub.as_raw_fd(), 0o700) };
    for child in list_dir(&sub)? {
        let cchild = c_name(&child)?;
        match cvt(unsafe { libc::unlinkat(sub.as_raw_fd(), cchild.as_ptr(), 0) }) {
            Ok(_) => {}
            Err(err) if errno_is(&err, libc::EISDIR) || errno_is(&err, libc::EPERM) => {
                match remove_tree_at(sub.as_raw_fd(), &cchild) {
                    // Someone else removing the same tree got there first.
                    Err(err) if errno_is(&err, libc::ENOENT) => {}
                    other => other?,
                }
            }
            Err(err) if errno_is(&err, libc::ENOENT) => {}
            Err(err) => return Err(err),
        }
    }
    drop(sub);
    match cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) }) {
        Err(err) if !errno_is(&err, libc::ENOENT) => Err(err),
        _ => Ok(()),
    }
}

/// The names in a directory, without `.` and `..`.
fn list_dir(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    // fdopendir takes ownership of the fd it is given, so give it a duplicate.
    let dup = cvt(unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
    let stream = unsafe { libc::fdopendir(dup) };
    if stream.is_null() {
        let err = io::Error::last_os_error();
        unsafe { libc::close(dup) };
        return Err(err);
    }
    let mut names = Vec::new();
    loop {
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            break;
        }
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    unsafe { libc::closedir(stream) };
    Ok(names)
}

/// Removes the tree at `path` (a directory or anything else), without following symlinks
/// and coping with read-only directories; a missing `path` is not an error.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to remove a path without a final name",
        ));
    };
    let dir = RootDir::open(parent, false)?;
    match remove_at(dir.fd(), &c_name(name.as_bytes())?) {
        Err(err) if errno_is(&err, libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// Opens the directory `name` in `dir` for changing its metadata, not following a symlink.
pub fn open_dir_fd(dir: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    open_at(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}
