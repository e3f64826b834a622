//! The new mount API and pivot_root, as the launcher's container and the builder's
//! trace sandbox both use them: every mount is made detached (fsopen, fsconfig, fsmount,
//! or open_tree for a copy of an existing tree), given its attributes while detached
//! (mount_setattr), then attached where an fd points (move_mount). No path is looked up
//! twice, and no mount is ever reachable half set up (writable or suid for an instant).
//!
//! rustix wraps these calls with typed flags; only mount_setattr, which rustix lacks, is
//! made by hand here.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// The working directory as a directory fd, for a path relative to it (or absolute).
pub use rustix::fs::CWD;
pub use rustix::mount::MountAttrFlags;
use rustix::mount::{
    fsconfig_create, fsconfig_set_fd, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen,
    move_mount, open_tree, unmount, FsMountFlags, FsOpenFlags, MoveMountFlags, OpenTreeFlags,
    UnmountFlags,
};

/// A value of one of [`new_mount`]'s options.
#[derive(Clone, Copy)]
pub enum FsValue<'a> {
    /// A flag option (`ro`, `userxattr`).
    Flag,
    /// An fd option (overlayfs' `lowerdir+`).
    Fd(BorrowedFd<'a>),
    /// A string option (`mode`, `size`).
    Str(&'a CStr),
}

/// A new instance of filesystem `fstype`, configured with `options` and mounted
/// detached with `attributes`.
pub fn new_mount(
    fstype: &CStr,
    options: &[(&CStr, FsValue)],
    attributes: MountAttrFlags,
) -> io::Result<OwnedFd> {
    let fs = fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    for &(key, value) in options {
        match value {
            FsValue::Flag => fsconfig_set_flag(&fs, key)?,
            FsValue::Fd(fd) => fsconfig_set_fd(&fs, key, fd)?,
            FsValue::Str(text) => fsconfig_set_string(&fs, key, text)?,
        }
    }
    fsconfig_create(&fs)?;
    Ok(fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attributes)?)
}

/// A detached copy of the mount at `path` under `dir` (of `dir`'s own mount when `path`
/// is empty), with its submounts when `recursive`.
pub fn copy_tree(dir: impl AsFd, path: &CStr, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if path.is_empty() {
        flags |= OpenTreeFlags::AT_EMPTY_PATH;
    }
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    Ok(open_tree(dir, path, flags)?)
}

/// Attaches the detached mount `mount` on what `target` (an O_PATH fd) refers to.
pub fn attach(mount: impl AsFd, target: impl AsFd) -> io::Result<()> {
    let flags = MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH;
    Ok(move_mount(mount, c"", target, c"", flags)?)
}

/// `struct mount_attr` of mount_setattr(2): attributes to set and to clear, and for
/// MOUNT_ATTR_IDMAP the user namespace whose mapping the mount takes.
#[derive(Debug, Clone, Copy)]
pub struct MountAttributes {
    pub set: MountAttrFlags,
    pub clear: MountAttrFlags,
    pub userns: Option<i32>,
}

impl MountAttributes {
    /// Just `set`.
    pub fn set(set: MountAttrFlags) -> MountAttributes {
        MountAttributes {
            set,
            clear: MountAttrFlags::empty(),
            userns: None,
        }
    }
}

/// Which mounts [`set_attributes`] changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The mount alone.
    Mount,
    /// The mount and every mount beneath it.
    Recursive,
}

/// mount_setattr(2) on the mount at `path` under `dir` (`dir`'s own when `path` is
/// empty).
pub fn set_attributes(
    dir: BorrowedFd,
    path: &CStr,
    reach: Reach,
    attributes: MountAttributes,
) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: attributes.set.bits().into(),
        attr_clr: attributes.clear.bits().into(),
        propagation: 0,
        userns_fd: attributes.userns.map_or(0, |fd| fd as u64),
    };
    let mut flags = 0;
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH;
    }
    if reach == Reach::Recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: a valid fd, C string and struct, of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dir.as_raw_fd(),
            path.as_ptr(),
            flags as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The MS_* flags of mount(2) and of an OCI spec's mount options as mount_setattr's
/// attributes; MS_* flags with no attribute are left out. The atime modes are one field
/// of the attributes: setting one clears the field first.
pub fn attributes_of(ms_flags: libc::c_ulong) -> MountAttributes {
    let set = [
        (libc::MS_RDONLY, MountAttrFlags::MOUNT_ATTR_RDONLY),
        (libc::MS_NOSUID, MountAttrFlags::MOUNT_ATTR_NOSUID),
        (libc::MS_NODEV, MountAttrFlags::MOUNT_ATTR_NODEV),
        (libc::MS_NOEXEC, MountAttrFlags::MOUNT_ATTR_NOEXEC),
        (libc::MS_NOATIME, MountAttrFlags::MOUNT_ATTR_NOATIME),
        (libc::MS_STRICTATIME, MountAttrFlags::MOUNT_ATTR_STRICTATIME),
        (libc::MS_NODIRATIME, MountAttrFlags::MOUNT_ATTR_NODIRATIME),
    ]
    .into_iter()
    .filter(|&(ms, _)| ms_flags & ms != 0)
    .fold(MountAttrFlags::empty(), |all, (_, attr)| all | attr);
    let clear = if set.intersects(MountAttrFlags::MOUNT_ATTR__ATIME) {
        MountAttrFlags::MOUNT_ATTR__ATIME
    } else {
        MountAttrFlags::empty()
    };
    MountAttributes {
        set,
        clear,
        userns: None,
    }
}

/// The step of [`pivot_into`] that failed.
#[derive(Debug, thiserror::Error)]
#[error("pivot_root: {step}: {source}")]
pub struct PivotError {
    pub step: &'static str,
    #[source]
    pub source: io::Error,
}

/// Makes `root` the process's `/` and detaches the old root, so no path, not even `..`
/// from a leaked fd's mount, leads back to the tree it came from.
///
/// pivot_root(".", "."): the old root ends up stacked on the new one and is then
/// detached; this needs no directory for it inside the new root.
pub fn pivot_into(root: impl AsFd) -> Result<(), PivotError> {
    let failed = |step| {
        move |e: rustix::io::Errno| PivotError {
            step,
            source: e.into(),
        }
    };
    rustix::process::fchdir(root).map_err(failed("entering the new root"))?;
    rustix::process::pivot_root(c".", c".").map_err(failed("switching roots"))?;
    unmount(c".", UnmountFlags::DETACH).map_err(failed("detaching the old root"))?;
    rustix::process::chdir(c"/").map_err(failed("entering /"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_flags_become_the_attributes_of_the_same_name() {
        let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_REC | libc::MS_NOATIME;
        let attributes = attributes_of(flags);
        assert_eq!(
            attributes.set,
            MountAttrFlags::MOUNT_ATTR_RDONLY
                | MountAttrFlags::MOUNT_ATTR_NOSUID
                | MountAttrFlags::MOUNT_ATTR_NOATIME
        );
        assert_eq!(attributes.clear, MountAttrFlags::MOUNT_ATTR__ATIME);
        let plain = attributes_of(libc::MS_BIND | libc::MS_NODEV);
        assert_eq!(plain.set, MountAttrFlags::MOUNT_ATTR_NODEV);
        assert_eq!(plain.clear, MountAttrFlags::empty());
    }
}
