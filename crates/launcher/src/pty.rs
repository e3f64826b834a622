//! Interactive containers: a pty from the container's own devpts instance, its master
//! end passed out to the launcher, which relays it to the user's terminal in raw mode,
//! keeps the window size in sync, and restores the terminal on every way out.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};
use rustix::fs::OFlags;
use rustix::pty::OpenptFlags;

use crate::error::LaunchError;
use crate::init;
use crate::process;

/// Opens a new pty in the container's devpts (after pivot_root): (master, slave).
pub fn open_pair() -> Result<(OwnedFd, OwnedFd), LaunchError> {
    let fail = |what: &'static str| move |e: rustix::io::Errno| LaunchError::setup(what, e.into());
    let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
    let master = rustix::fs::open(c"/dev/pts/ptmx", flags, rustix::fs::Mode::empty())
        .map_err(fail("opening /dev/pts/ptmx"))?;
    rustix::pty::unlockpt(&master).map_err(fail("unlocking the pty"))?;
    // TIOCGPTPEER opens the slave through the master, never by a path someone could
    // swap.
    let peer = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, peer)
        .map_err(fail("opening the pty's slave end"))?;
    Ok((master, slave))
}

/// Passes `fd` over the unix socket `socket` (SCM_RIGHTS).
pub fn send_fd(socket: &OwnedFd, fd: &OwnedFd) -> Result<(), LaunchError> {
    let fds = [fd.as_raw_fd()];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(b"m")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| LaunchError::setup("passing the pty to the launcher", e.into()))?;
    Ok(())
}

/// Receives the fd sent with [`send_fd`]; `None` when the container ended first.
pub fn receive_fd(socket: &OwnedFd) -> Result<Option<OwnedFd>, LaunchError> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| LaunchError::setup("receiving the container's pty", e.into()))?;
    for cmsg in msg
        .cmsgs()
        .map_err(|e| LaunchError::setup("receiving the container's pty", e.into()))?
    {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel installed this fd for us.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
    }
    Ok(None)
}

/// The user's terminal in raw mode; put back as it was when dropped.
pub struct RawTerminal {
    saved: Termios,
}

impl RawTerminal {
    /// Switches stdin's terminal to raw mode; `None` when stdin is not a terminal.
    pub fn enter() -> Option<RawTerminal> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// Copies the user's window size onto the pty (the kernel then sends SIGWINCH inside).
pub fn sync_window_size(master: BorrowedFd) {
    if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdin()) {
        let _ = rustix::termios::tcsetwinsize(master, size);
    }
}

/// Relays between the user's stdin/stdout and the pty `master` until the container's
/// init (`child`) reports the command's exit status on `status`; forwards signals to
/// it meanwhile. Returns that status.
pub fn relay(master: OwnedFd, child: libc::pid_t, status: &OwnedFd) -> Result<i32, LaunchError> {
    let _terminal = RawTerminal::enter();
    sync_window_size(master.as_fd());
    let set = init::signal_set();
    // SAFETY: valid sigset; the signals are blocked already.
    let signals = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
    if signals < 0 {
        return Err(LaunchError::setup(
            "signalfd",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a new fd that we own.
    let signals = unsafe { OwnedFd::from_raw_fd(signals) };
    let mut stdin_open = true;
    let mut master_open = true;
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [
            pollfd(signals.as_raw_fd(), true),
            pollfd(master.as_raw_fd(), master_open),
            pollfd(libc::STDIN_FILENO, stdin_open && master_open),
            pollfd(status.as_raw_fd(), true),
        ];
        // SAFETY: valid pollfd array.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(LaunchError::setup("poll", std::io::Error::last_os_error()));
        }
        if fds[1].revents != 0 && !copy(master.as_raw_fd(), libc::STDOUT_FILENO, &mut buf) {
            master_open = false;
        }
        if fds[2].revents != 0 && !copy(libc::STDIN_FILENO, master.as_raw_fd(), &mut buf) {
            // Input ended (stdin was a pipe or file): pass it on as the terminal's
            // end-of-file character, as a user would type it.
            stdin_open = false;
            // SAFETY: writing one byte from a valid buffer.
            unsafe { libc::write(master.as_raw_fd(), b"\x04".as_ptr().cast(), 1) };
        }
        if fds[0].revents != 0 {
            // SAFETY: signalfd_siginfo is plain data, read whole.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: reading into a buffer of the right size.
            unsafe {
                libc::read(
                    signals.as_raw_fd(),
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    size,
                )
            };
            let sig = info.ssi_signo as libc::c_int;
            if sig == libc::SIGWINCH {
                sync_window_size(master.as_fd());
            } else if init::FORWARDED_SIGNALS.contains(&sig) {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(child, sig) };
            }
        }
        if fds[3].revents != 0 {
            let code = init::read_exit_status(status).unwrap_or_else(|| {
                let mut wait_status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(child, &mut wait_status, 0) };
                process::exit_code(wait_status)
            });
            // The command may have written its last words just before exiting.
            while master_open && readable(master.as_raw_fd()) {
                master_open = copy(master.as_raw_fd(), libc::STDOUT_FILENO, &mut buf);
            }
            return Ok(code);
        }
    }
}

fn pollfd(fd: RawFd, wanted: bool) -> libc::pollfd {
    libc::pollfd {
        fd: if wanted { fd } else { -1 },
        events: libc::POLLIN,
        revents: 0,
    }
}

fn readable(fd: RawFd) -> bool {
    let mut p = [pollfd(fd, true)];
    // SAFETY: valid pollfd array.
    unsafe { libc::poll(p.as_mut_ptr(), 1, 0) == 1 && p[0].revents & libc::POLLIN != 0 }
}

/// Copies one read's worth from `from` to `to`; false at EOF or error (for a pty
/// master: EIO once no process holds the slave end).
fn copy(from: RawFd, to: RawFd, buf: &mut [u8]) -> bool {
    // SAFETY: reading into a valid buffer.
    let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
    }
    let mut rest = &buf[..n as usize];
    while !rest.is_empty() {
        // SAFETY: writing from a valid buffer.
        let w = unsafe { libc::write(to, rest.as_ptr().cast(), rest.len()) };
        if w < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return false;
        }
        rest = &rest[w as usize..];
    }
    true
}
