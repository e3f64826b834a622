//! Step 4 of the probe's sandbox: the kernel's filesystems (/proc, /sys, /dev) as
//! launch gives them to a container.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use mkroot_common::mount_api::{attach, new_mount, FsValue, MountAttrFlags};

use super::{bind, bind_read_only, einval, einval_step, mkdir_at, open_path, step, StepError};

/// Step 4: a fresh proc of the probe's own PID namespace. /proc/sys and
/// /proc/sysrq-trigger are made read-only: through them root could change the host's
/// kernel.
pub(super) fn mount_proc(root: &OwnedFd) -> Result<(), StepError> {
    let hidden = MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    let proc = new_mount(c"proc", &[], hidden).map_err(|e| step("mounting a fresh /proc", e))?;
    let target = open_path(root.as_raw_fd(), c"proc", libc::O_DIRECTORY)
        .map_err(|e| step("opening /proc in the new root", e))?;
    attach(&proc, &target).map_err(|e| step("attaching /proc", e))?;
    for inside in [c"sys", c"sysrq-trigger"] {
        let Ok(path) = open_path(proc.as_raw_fd(), inside, 0) else {
            continue;
        };
        bind_read_only(&path, &path).map_err(|e| {
            let what = format!("making /proc/{} read-only", inside.to_string_lossy());
            step(&what, e)
        })?;
    }
    Ok(())
}

/// `/sys`, read-only: a fresh sysfs shows only the probe's network devices; where the
/// kernel refuses one (the host's network in a user namespace), the host's is bound.
pub(super) fn mount_sys(root: &OwnedFd, new_network: bool) -> Result<(), StepError> {
    let target = open_path(root.as_raw_fd(), c"sys", libc::O_DIRECTORY)
        .map_err(|e| step("opening /sys in the new root", e))?;
    let flags = MountAttrFlags::MOUNT_ATTR_RDONLY
        | MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    let fresh = if new_network {
        new_mount(c"sysfs", &[], flags)
    } else {
        Err(einval())
    }
    .and_then(|sys| attach(&sys, &target));
    if fresh.is_ok() {
        return Ok(());
    }
    let host = open_path(libc::AT_FDCWD, c"/sys", libc::O_DIRECTORY)
        .map_err(|e| step("opening the host's /sys", e))?;
    bind_read_only(&host, &target).map_err(|e| step("binding /sys read-only", e))
}

/// The devices a probe gets (name, major, minor): launch's set.
const DEVICES: [(&CStr, u32, u32); 6] = [
    (c"null", 1, 3),
    (c"zero", 1, 5),
    (c"full", 1, 7),
    (c"random", 1, 8),
    (c"urandom", 1, 9),
    (c"tty", 5, 0),
];

const DEV_LINKS: [(&CStr, &CStr); 5] = [
    (c"fd", c"/proc/self/fd"),
    (c"stdin", c"/proc/self/fd/0"),
    (c"stdout", c"/proc/self/fd/1"),
    (c"stderr", c"/proc/self/fd/2"),
    (c"ptmx", c"pts/ptmx"),
];

/// `/dev`: a small tmpfs of harmless character devices (not the host's disks), its own
/// devpts and /dev/shm. In a user namespace device nodes cannot be made, so the host's
/// are bound in, as bubblewrap does.
pub(super) fn populate_dev(root: &OwnedFd, user_namespace: bool) -> Result<(), StepError> {
    let dev_step = |what: &str| {
        let what = format!("/dev in the sandbox: {what}");
        move |e| step(&what, e)
    };
    let dev = new_mount(
        c"tmpfs",
        &[
            (c"mode", FsValue::Str(c"0755")),
            (c"size", FsValue::Str(c"64k")),
        ],
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(dev_step("mounting its tmpfs"))?;
    let target = open_path(root.as_raw_fd(), c"dev", libc::O_DIRECTORY)
        .map_err(dev_step("opening /dev in the new root"))?;
    attach(&dev, &target).map_err(dev_step("attaching its tmpfs"))?;
    let at = dev.as_raw_fd();
    for (name, major, minor) in DEVICES {
        // SAFETY: valid fd and C strings.
        let made = unsafe {
            if user_namespace {
                let fd = libc::openat(at, name.as_ptr(), libc::O_CREAT | libc::O_CLOEXEC, 0o666);
                if fd >= 0 {
                    libc::close(fd);
                }
                fd
            } else {
                libc::mknodat(
                    at,
                    name.as_ptr(),
                    libc::S_IFCHR | 0o666,
                    libc::makedev(major, minor),
                )
            }
        };
        if made < 0 {
            return Err(dev_step("making a device")(io::Error::last_os_error()));
        }
        if user_namespace {
            let host =
                CString::new([b"/dev/", name.to_bytes()].concat()).map_err(|_| einval_step())?;
            let source =
                open_path(libc::AT_FDCWD, &host, 0).map_err(dev_step("opening a host device"))?;
            let place = open_path(at, name, 0).map_err(dev_step("opening a device"))?;
            bind(&source, &place, false).map_err(dev_step("binding a host device"))?;
        }
    }
    for (name, target) in DEV_LINKS {
        // SAFETY: valid fd and C strings.
        if unsafe { libc::symlinkat(target.as_ptr(), at, name.as_ptr()) } < 0 {
            return Err(dev_step("making a link")(io::Error::last_os_error()));
        }
    }
    for (dir, fstype, options) in [
        (
            c"pts",
            c"devpts",
            &[
                (c"newinstance", FsValue::Flag),
                (c"ptmxmode", FsValue::Str(c"0666")),
                (c"mode", FsValue::Str(c"0620")),
            ][..],
        ),
        (c"shm", c"tmpfs", &[(c"mode", FsValue::Str(c"1777"))][..]),
    ] {
        mkdir_at(at, dir, 0o755).map_err(dev_step("making a directory"))?;
        let place =
            open_path(at, dir, libc::O_DIRECTORY).map_err(dev_step("opening a directory"))?;
        let mounted = new_mount(
            fstype,
            options,
            MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
        )
        .and_then(|m| attach(&m, &place));
        mounted.map_err(dev_step(&format!("mounting {}", fstype.to_string_lossy())))?;
    }
    Ok(())
}
