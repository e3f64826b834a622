//! Closing off the parts of /proc and /sys that reach the host's kernel: the container
//! sees its own processes there, but not the kernel's memory, symbols, timers, keys or
//! firmware, and cannot change kernel settings. After pivot_root, on the container's
//! own proc and sysfs mounts (no image content lies below them, so plain paths are safe).

use std::ffi::CStr;

use crate::error::LaunchError;
use crate::rootfs;

/// Hidden: a file gets /dev/null over it, a directory an empty read-only tmpfs.
pub const MASKED: [&CStr; 12] = [
    c"/proc/acpi",
    c"/proc/asound",
    c"/proc/kcore",
    c"/proc/keys",
    c"/proc/latency_stats",
    c"/proc/timer_list",
    c"/proc/timer_stats",
    c"/proc/sched_debug",
    c"/proc/scsi",
    c"/proc/kallsyms",
    c"/sys/firmware",
    c"/sys/devices/virtual/powercap",
];

/// Readable, never writable: kernel settings (/proc/sys), interrupt and bus tuning, and
/// the magic SysRq key (which can reboot the host).
pub const READ_ONLY: [&CStr; 5] = [
    c"/proc/bus",
    c"/proc/fs",
    c"/proc/irq",
    c"/proc/sys",
    c"/proc/sysrq-trigger",
];

/// Masks [`MASKED`] and makes [`READ_ONLY`] read-only. Paths this kernel lacks are
/// skipped.
pub fn close_off() -> Result<(), LaunchError> {
    for path in MASKED {
        mask(path)?;
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
    mask(&path)
}

/// A runtime spec's `readonlyPaths` entry (in the new root).
pub fn read_only_path(path: &str) -> Result<(), LaunchError> {
    let path = std::ffi::CString::new(path).map_err(|_| {
        LaunchError::Invalid(format!("linux.readonlyPaths {path:?}: contains a NUL byte"))
    })?;
    make_read_only(&path)
}

fn mask(path: &CStr) -> Result<(), LaunchError> {
    let step = |e| LaunchError::setup(format!("masking {}", path.to_string_lossy()), e);
    let Some(is_dir) = kind(path) else {
        return Ok(());
    };
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    if is_dir {
        rootfs::mount(
            Some(c"tmpfs"),
            path,
            Some(c"tmpfs"),
            flags | libc::MS_RDONLY,
            Some(c"size=0,mode=0555"),
        )
        .map_err(step)
    } else {
        rootfs::mount(Some(c"/dev/null"), path, None, libc::MS_BIND, None).map_err(step)
    }
}

fn make_read_only(path: &CStr) -> Result<(), LaunchError> {
    let step = |e| LaunchError::setup(format!("making {} read-only", path.to_string_lossy()), e);
    if kind(path).is_none() {
        return Ok(());
    }
    rootfs::mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None).map_err(step)?;
    rootfs::set_read_only(libc::AT_FDCWD, path, libc::AT_RECURSIVE).map_err(step)
}

/// Whether `path` is a directory; `None` when it does not exist.
fn kind(path: &CStr) -> Option<bool> {
    // SAFETY: stat is plain data; valid C string.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::lstat(path.as_ptr(), &mut st) } < 0 {
        return None;
    }
    Some(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}
