//! The launcher's own binary, out of the container's reach (CVE-2019-5736 class).
//!
//! The container's first process runs this binary, and until the command's exec so does
//! the process that execs it. A command given as `/proc/self/exe`, or a script with
//! `#!/proc/self/exe`, would run the host's binary again inside the container, where it
//! could keep a handle on /proc/self/exe and reopen it for writing to overwrite the
//! host's `launch`. So, as root, the launcher first re-executes itself from a read-only
//! detached bind mount of its binary: every handle on its `/proc/<pid>/exe` then refers to
//! that mount, and opening it for writing fails with EROFS. The mount is detached, in no
//! mount namespace's tree, so nothing in the container can remount it.
//!
//! Closing the last fd of a detached mount unmounts it, which waits for an RCU grace
//! period (about a millisecond). So the launcher does not close it: the fd survives the
//! re-exec (its number in [`EXE_MOUNT_FD_VAR`]), is inherited by the container's init at
//! the clone, and the launcher lets go of its own copy right after ([`let_go`]): the
//! container's init closes the last one as it exits, when nobody waits for it.
//!
//! Where the kernel has Landlock none of this is needed: the container may not execute
//! any file outside its root (see [`crate::landlock`]), the binary included.
//!
//! Rootless, the container's root is the caller, who could overwrite the binary only if
//! they own it, and then gain nothing: no re-exec.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use mkroot_common::mount_api::{
    self, copy_tree, set_attributes, MountAttrFlags, MountAttributes, Reach,
};

/// Tells the re-executed launcher which fd holds the read-only mount of its binary.
const EXE_MOUNT_FD_VAR: &str = "MKROOT_LAUNCH_EXE_MOUNT_FD";

/// The fd of the read-only mount of the binary, in the re-executed launcher; -1 if none.
static EXE_MOUNT_FD: AtomicI32 = AtomicI32::new(-1);

/// Re-executes the launcher from a read-only mount of its binary, unless it runs from a
/// read-only mount already (the re-executed one, or a read-only /usr). Returns only when
/// no re-exec is needed or possible; a failure leaves the launcher as it was (the
/// non-dumpable init still keeps /proc/1/exe closed).
pub fn reexec_from_read_only_mount() {
    if !nix::unistd::geteuid().is_root()
        || crate::landlock::available()
        || runs_from_read_only_mount()
    {
        keep_exe_mount_fd();
        return;
    }
    let Ok(tree) = copy_tree(mount_api::CWD, c"/proc/self/exe", false) else {
        return;
    };
    let read_only = MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NODEV;
    if set_attributes(
        tree.as_fd(),
        c"",
        Reach::Mount,
        MountAttributes::set(read_only),
    )
    .is_err()
    {
        return;
    }
    // Not close-on-exec: it must outlive the exec (see the module doc).
    // SAFETY: an fd we own; F_SETFD takes a plain int.
    if unsafe { libc::fcntl(tree.as_raw_fd(), libc::F_SETFD, 0) } < 0 {
        return;
    }
    std::env::set_var(EXE_MOUNT_FD_VAR, tree.as_raw_fd().to_string());
    let args: Vec<CString> = std::env::args_os()
        .filter_map(|a| CString::new(std::os::unix::ffi::OsStringExt::into_vec(a)).ok())
        .collect();
    let mut argv: Vec<*mut libc::c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    // SAFETY: valid fd, argv NULL-terminated, environ is the process's own.
    unsafe {
        libc::execveat(
            tree.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            environ(),
            libc::AT_EMPTY_PATH,
        )
    };
    // The exec failed: carry on as we are.
    std::env::remove_var(EXE_MOUNT_FD_VAR);
}

/// In the re-executed launcher: takes the mount's fd over from the environment (which
/// the container must not see), close-on-exec from now on.
fn keep_exe_mount_fd() {
    let Some(fd) = std::env::var(EXE_MOUNT_FD_VAR)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    else {
        return;
    };
    std::env::remove_var(EXE_MOUNT_FD_VAR);
    // Only an fd on this very binary is taken (the variable could come from anywhere).
    let same_file = |a: &libc::stat, b: &libc::stat| a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    // SAFETY: stat is plain data; fstat of an fd that is not open fails harmlessly.
    let (mut held, mut binary): (libc::stat, libc::stat) = unsafe { std::mem::zeroed() };
    let ours = fd > 2
        && unsafe { libc::fstat(fd, &mut held) } == 0
        && unsafe { libc::stat(c"/proc/self/exe".as_ptr(), &mut binary) } == 0
        && same_file(&held, &binary);
    // SAFETY: plain fcntl on an open fd.
    if ours && unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0 {
        EXE_MOUNT_FD.store(fd, Ordering::Relaxed);
    }
}

/// In the launcher, right after the clone: closes its copy of the mount's fd, leaving
/// the last one to the container's init.
pub fn let_go() {
    let fd = EXE_MOUNT_FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: our fd, used nowhere else.
        unsafe { libc::close(fd) };
    }
}

fn runs_from_read_only_mount() -> bool {
    // SAFETY: statvfs is plain data; valid C string. /proc/self/exe is followed to the
    // binary, whose mount's flags statvfs reports.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let found = unsafe { libc::statvfs(c"/proc/self/exe".as_ptr(), &mut st) } == 0;
    found && st.f_flag & libc::ST_RDONLY != 0
}

extern "C" {
    #[link_name = "environ"]
    static ENVIRON: *const *mut libc::c_char;
}

fn environ() -> *const *mut libc::c_char {
    // SAFETY: reading the C library's environment pointer.
    unsafe { ENVIRON }
}
