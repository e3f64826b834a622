//! The loopback device of a new network namespace, which the kernel makes down: both
//! the launcher's containers and the builder's trace sandbox bring it up.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Brings `lo` up in the calling process's network namespace.
pub fn bring_up() -> io::Result<()> {
    // SAFETY: plain socket call.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
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
    // SAFETY: valid socket and ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
