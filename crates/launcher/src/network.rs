//! The container's network namespace: loopback up, nothing else. Done with one ioctl on
//! a throwaway socket (no `ip` program, no netlink conversation).
//!
//! Making a network namespace is the costliest step of a launch (every protocol
//! registers its per-namespace state). Without a user namespace, the launcher makes
//! it itself, on the other CPU, while the container builds its mounts, and the
//! container joins it ([`create_for_container`], [`join_launchers`]). In a user
//! namespace the container must own its network namespace, so it comes with the clone.

use std::os::fd::{FromRawFd, OwnedFd};

use crate::error::LaunchError;

/// The launcher's side: moves the launcher into a new network namespace with `lo` up,
/// for the container to join. The launcher itself has no use for the network after
/// this point.
pub fn create_for_container() -> Result<(), LaunchError> {
    // SAFETY: plain syscall.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
        return Err(LaunchError::setup(
            "creating the network namespace",
            std::io::Error::last_os_error(),
        ));
    }
    bring_up_loopback()
}

/// The container's side: joins the network namespace the launcher (`launcher`, its PID
/// on the host) made with [`create_for_container`]. Called while the host's /proc is
/// still reachable, before pivot_root.
pub fn join_launchers(launcher: libc::pid_t) -> Result<(), LaunchError> {
    let fail = |e| LaunchError::setup("joining the network namespace", e);
    let path = std::ffi::CString::new(format!("/proc/{launcher}/ns/net")).expect("no NUL");
    // SAFETY: valid C string; the fd is owned at once.
    let ns = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if ns < 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    // SAFETY: a new fd that we own.
    let ns = unsafe { OwnedFd::from_raw_fd(ns) };
    use std::os::fd::AsRawFd;
    // SAFETY: valid namespace fd.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Brings `lo` up in the current (new, empty) network namespace.
pub fn bring_up_loopback() -> Result<(), LaunchError> {
    let fail = |e| LaunchError::setup("bringing up lo", e);
    // SAFETY: plain socket call.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    // SAFETY: a new fd that we own; closed on drop.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // A fresh namespace's lo carries only IFF_LOOPBACK, so the flags are set outright
    // rather than read, changed and written back.
    request.ifr_ifru.ifru_flags =
        (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
    use std::os::fd::AsRawFd;
    // SAFETY: valid socket and ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    Ok(())
}
