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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

/// More symlinks than this in one path is a loop (the kernel's own limit is 40).
const MAX_SYMLINKS: u32 = 40;

fn errno_is(err: &io::Error, code: Errno) -> bool {
    err.raw_os_error() == Some(code.raw_os_error())
}

/// A name from an archive as a C string; a NUL inside it cannot be a file name.
pub fn c_name(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in name"))
}

/// `openat` with `O_CLOEXEC` always added: no descriptor of the root leaks into a child.
fn open_at(dir: BorrowedFd<'_>, name: &CStr, flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
    let fd = rustix::fs::openat(
        dir,
        name,
        flags | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    Ok(fd)
}

/// The flags a directory is opened with to walk through it: no reading, no following.
const WALK: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW);

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
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(RootDir {
            fd,
            use_openat2: Cell::new(use_openat2),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the directory at `components` (already split, no empty parts) inside the root,
    /// creating missing directories (mode 0755) when `create` is set, as tar does for
    /// archives that leave out parent directory entries.
    pub fn open_dir(&self, components: &[&[u8]], create: bool) -> io::Result<OwnedFd> {
        if components.is_empty() {
            return open_at(self.fd(), c".", OFlags::PATH | OFlags::DIRECTORY, 0);
        }
        if self.use_openat2.get() {
            match self.open_dir_openat2(components) {
                Ok(fd) => return Ok(fd),
                Err(err) if errno_is(&err, Errno::NOSYS) || errno_is(&err, Errno::PERM) => {
                    self.use_openat2.set(false);
                }
                // Missing parents are made by the walk; an over-long path (the kernel's
                // PATH_MAX) and a concurrent-rename EAGAIN are handled one step at a time.
                Err(err)
                    if errno_is(&err, Errno::NOENT)
                        || errno_is(&err, Errno::NAMETOOLONG)
                        || errno_is(&err, Errno::AGAIN) => {}
                Err(err) => return Err(err),
            }
        }
        self.open_dir_walk(components, create)
    }

    fn open_dir_openat2(&self, components: &[&[u8]]) -> io::Result<OwnedFd> {
        let path = c_name(&components.join(&b'/'))?;
        crate::in_root::open_in_root(
            self.fd.as_raw_fd(),
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
            let here = stack.last().map_or(self.fd(), |fd| fd.as_fd());
            let cname = c_name(&name)?;
            match open_at(here, &cname, WALK, 0) {
                Ok(fd) => {
                    stack.push(fd);
                    just_created = false;
                }
                Err(err) if errno_is(&err, Errno::NOENT) && create && !just_created => {
                    match rustix::fs::mkdirat(here, &*cname, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(err) => return Err(err.into()),
                    }
                    just_created = true;
                    pending.push_front(name);
                }
                Err(err) if errno_is(&err, Errno::NOTDIR) || errno_is(&err, Errno::LOOP) => {
                    let target = match read_link_at(here, &cname) {
                        Ok(target) => target,
                        // Not a symlink: a file stands where a directory is needed.
                        Err(e) if errno_is(&e, Errno::INVAL) => return Err(Errno::NOTDIR.into()),
                        Err(e) => return Err(e),
                    };
                    symlinks += 1;
                    if symlinks > MAX_SYMLINKS {
                        return Err(Errno::LOOP.into());
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
            None => open_at(self.fd(), c".", OFlags::PATH | OFlags::DIRECTORY, 0),
        }
    }
}

pub fn read_link_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(dir, name, Vec::new())?.into_bytes())
}

/// A new regular file, never following or reusing whatever is at `name` (`O_EXCL`).
pub fn create_file(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<std::fs::File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
    Ok(std::fs::File::from(open_at(dir, name, flags, 0o600)?))
}

/// A new directory, owner-only until the archive's mode is applied at the end: the
/// archive's mode could forbid writing the entries that follow into it.
pub fn make_dir(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    Ok(rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?)
}

pub fn make_symlink(dir: BorrowedFd<'_>, name: &CStr, target: &CStr) -> io::Result<()> {
    Ok(rustix::fs::symlinkat(target, dir, name)?)
}

/// A hard link to `old_name` in `old_dir`, without following it if it is a symlink.
pub fn make_hardlink(
    old_dir: BorrowedFd<'_>,
    old_name: &CStr,
    dir: BorrowedFd<'_>,
    name: &CStr,
) -> io::Result<()> {
    Ok(rustix::fs::linkat(
        old_dir,
        old_name,
        dir,
        name,
        AtFlags::empty(),
    )?)
}

/// `lstat` of `name` in `dir`.
pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// `fstat` of an open fd (an O_PATH one too).
pub fn fstat(fd: &OwnedFd) -> io::Result<Stat> {
    Ok(rustix::fs::fstat(fd)?)
}

pub fn is_dir(st: &Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
}

/// utimensat/futimens times that set the mtime and leave the atime alone.
fn mtime_only(secs: i64, nanos: u32) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: secs,
            tv_nsec: nanos.into(),
        },
    }
}

/// Sets the mtime of `name` itself (a symlink is not followed); atime is left alone.
pub fn set_mtime_at(dir: BorrowedFd<'_>, name: &CStr, secs: i64, nanos: u32) -> io::Result<()> {
    let times = mtime_only(secs, nanos);
    Ok(rustix::fs::utimensat(
        dir,
        name,
        &times,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

pub fn set_mtime_fd(fd: BorrowedFd<'_>, secs: i64, nanos: u32) -> io::Result<()> {
    Ok(rustix::fs::futimens(fd, &mtime_only(secs, nanos))?)
}

/// Removes whatever is at `name` in `dir`: a file or symlink, or a directory tree. Nothing
/// is followed: the walk opens each directory with `O_NOFOLLOW` relative to its parent.
pub fn remove_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::ISDIR | Errno::PERM) => remove_tree_at(dir, name),
        Err(err) => Err(err.into()),
    }
}

/// Removes the directory `name` in `dir` and everything below it.
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    let open_sub = || open_dir_fd(dir, name);
    let sub = match open_sub() {
        // A directory the image made unreadable (mode 0): its owner may open it up. Only
        // ever reached without root (root reads any directory), and only for a directory:
        // chmodat would follow a symlink.
        Err(err) if errno_is(&err, Errno::ACCESS) && is_dir(&stat_at(dir, name)?) => {
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty())?;
            open_sub()?
        }
        other => other?,
    };
    // An image may hold read-only directories (0555); its owner (or root) may make them
    // writable again, which removing their entries needs.
    let _ = rustix::fs::fchmod(&sub, Mode::from_raw_mode(0o700));
    for child in list_dir(&sub)? {
        let cchild = c_name(&child)?;
        match rustix::fs::unlinkat(&sub, &*cchild, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::ISDIR | Errno::PERM) => match remove_tree_at(sub.as_fd(), &cchild) {
                // Someone else removing the same tree got there first.
                Err(err) if errno_is(&err, Errno::NOENT) => {}
                other => other?,
            },
            Err(err) => return Err(err.into()),
        }
    }
    drop(sub);
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// The names in a directory, without `.` and `..`.
fn list_dir(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
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
        Err(err) if errno_is(&err, Errno::NOENT) => Ok(()),
        other => other,
    }
}

/// Opens the directory `name` in `dir` for changing its metadata, not following a symlink.
pub fn open_dir_fd(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open_at(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        0,
    )
}
