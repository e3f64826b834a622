//! Closing off the parts of /proc and /sys that reach the host's kernel: the container
//! sees its own processes there, but not the kernel's memory, symbols, timers, keys or
//! firmware, and cannot change kernel settings. After pivot_root, on the container's
//! own proc and sysfs mounts (no image content lies below them, so plain paths are safe).

use std::ffi::CStr;

use mkroot_common::mount_api::Reach;

use crate::error::LaunchError;
use crate::rootfs;

/// What a masked path is on the kernels this was written against: tried first, so
/// that a path costs one mount call and no stat.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
}

/// Hidden: a file gets /dev/null over it, a directory an empty read-only tmpfs.
const MASKED: [(&CStr, Kind); 12] = [
    (c"/proc/acpi", Kind::Dir),
    (c"/proc/asound", Kind::Dir),
    (c"/proc/kcore", Kind::File),
    (c"/proc/keys", Kind::File),
    (c"/proc/latency_stats", Kind::File),
    (c"/proc/timer_list", Kind::File),
    (c"/proc/timer_stats", Kind::File),
    (c"/proc/sched_debug", Kind::File),
    (c"/proc/scsi", Kind::Dir),
    (c"/proc/kallsyms", Kind::File),
    (c"/sys/firmware", Kind::Dir),
    (c"/sys/devices/virtual/powercap", Kind::Dir),
];

/// Readable, never writable: kernel settings (/proc/sys), interrupt and bus tuning, and
/// the magic SysRq key (which can reboot the host).
const READ_ONLY: [&CStr; 5] = [
    c"/proc/bus",
    c"/proc/fs",
    c"/proc/irq",
    c"/proc/sys",
    c"/proc/sysrq-trigger",
];

/// Masks [`MASKED`] and makes [`READ_ONLY`] read-only. Paths this kernel lacks are
/// skipped.
pub fn close_off() -> Result<(), LaunchError> {
    for (path, kind) in MASKED {
        mask(path, kind)?;
    }
    for path in READ_ONLY {
        make_read_only(path)?;
    }
    Ok(())
}

/// A runtime spec's `maskedPaths` entry (in the new root); one the kernel lacks is skipped.
pub fn mask_path(path: &str) -> Result<(), LaunchError> {
    let path = std::ffi::CString::new(path).map_err(|_| {
        LaunchError::Invalid(format!("linux.maskedPaths {path:?}: contains a NUL byte"))
    })?;
    // Most entries of the engines' lists are files.
    mask(&path, Kind::File)
}

/// A runtime spec's `readonlyPaths` entry (in the new root).
pub fn read_only_path(path: &str) -> Result<(), LaunchError> {
    let path = std::ffi::CString::new(path).map_err(|_| {
        LaunchError::Invalid(format!("linux.readonlyPaths {path:?}: contains a NUL byte"))
    })?;
    make_read_only(&path)
}

/// Masks `path` as the `likely` kind, else as the other: the kernel answers ENOTDIR
/// when a mount's kind and its mount point's differ, and ENOENT when the path is not
/// there, which skips it.
fn mask(path: &CStr, likely: Kind) -> Result<(), LaunchError> {
    let step = |e| LaunchError::setup(format!("masking {}", path.to_string_lossy()), e);
    let other = match likely {
        Kind::File => Kind::Dir,
        Kind::Dir => Kind::File,
    };
    match mask_as(path, likely) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => mask_as(path, other),
        result => result,
    }
    .or_else(absent_is_fine)
    .map_err(step)
}

fn mask_as(path: &CStr, kind: Kind) -> std::io::Result<()> {
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    match kind {
        Kind::Dir => rootfs::mount(
            Some(c"tmpfs"),
            path,
            Some(c"tmpfs"),
            flags | libc::MS_RDONLY,
            Some(c"size=0,mode=0555"),
        ),
        Kind::File => rootfs::mount(Some(c"/dev/null"), path, None, libc::MS_BIND, None),
    }
}

fn make_read_only(path: &CStr) -> Result<(), LaunchError> {
    let step = |e| LaunchError::setup(format!("making {} read-only", path.to_string_lossy()), e);
    match rootfs::mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None) {
        Ok(()) => rootfs::set_read_only(libc::AT_FDCWD, path, Reach::Recursive).map_err(step),
        Err(e) => absent_is_fine(e).map_err(step),
    }
}

/// A path this kernel lacks needs no masking.
fn absent_is_fine(e: std::io::Error) -> std::io::Result<()> {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Ok(()),
        _ => Err(e),
    }
}
