//! The container's PID 1: a minimal init in front of the command (as tini and bwrap
//! have). A PID namespace's init gets no default signal actions and inherits every
//! orphan, so a plain command as PID 1 would ignore SIGTERM and leave zombies.
//! This init forwards signals to the command, reaps orphans, and exits with the
//! command's status once it ends (the kernel then kills what is left in the namespace).

use std::os::fd::{AsRawFd, OwnedFd};

use crate::error::LaunchError;
use crate::process::{self, Command};

/// The signals `launch` passes on to the command.
pub const FORWARDED_SIGNALS: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The set the launcher blocks before cloning (so none is lost in between) and waits
/// for: the forwarded signals, SIGCHLD and SIGWINCH.
pub fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED_SIGNALS
            .into_iter()
            .chain([libc::SIGCHLD, libc::SIGWINCH])
        {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks `set`, returning the previous mask.
pub fn block(set: &libc::sigset_t) -> libc::sigset_t {
    // SAFETY: valid sigsets.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_BLOCK, set, &mut old);
        old
    }
}

pub fn set_mask(mask: &libc::sigset_t) {
    // SAFETY: valid sigset.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
}

/// Waits for the launcher's go-ahead (sent once our user namespace maps are written),
/// having first asked the kernel to kill us if the launcher dies: nothing of the
/// container may outlive a launcher killed with SIGKILL. EOF means it died already.
pub fn tie_to_launcher(go: OwnedFd) -> Result<(), LaunchError> {
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } < 0 {
        return Err(LaunchError::setup(
            "setting the parent-death signal",
            std::io::Error::last_os_error(),
        ));
    }
    let mut byte = 0u8;
    // SAFETY: reading one byte into a valid buffer.
    let n = unsafe { libc::read(go.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
    if n != 1 {
        // SAFETY: the launcher is gone; nobody is left to report to.
        unsafe { libc::_exit(process::EXIT_LAUNCH_FAILED) };
    }
    Ok(())
}

/// Runs the command under this init. `terminal` is the pty's slave end for an
/// interactive container; `command_mask` the signal mask the command starts with.
pub fn run(command: &Command, terminal: Option<OwnedFd>, command_mask: &libc::sigset_t) -> ! {
    // Init runs the launcher's binary: not dumpable, no process in the container may
    // open /proc/1/exe, /proc/1/mem or ptrace it (the command, once exec'd, is dumpable
    // again as usual).
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // A PID namespace's init only receives the signals it has a handler for; the handler
    // never runs (they stay blocked and are taken with sigwaitinfo).
    for sig in FORWARDED_SIGNALS {
        // SAFETY: installing a handler that does nothing.
        unsafe { libc::signal(sig, ignore_signal as *const () as libc::sighandler_t) };
    }
    // SAFETY: fork in a single-threaded process.
    let child = unsafe { libc::fork() };
    if child < 0 {
        eprintln!("launch: fork: {}", std::io::Error::last_os_error());
        // SAFETY: exiting PID 1 ends the container.
        unsafe { libc::_exit(process::EXIT_LAUNCH_FAILED) };
    }
    if child == 0 {
        start_command(command, terminal, command_mask);
    }
    drop(terminal);
    let waited = signal_set();
    loop {
        // SAFETY: valid sigset; the siginfo is not needed.
        let sig = unsafe { libc::sigwaitinfo(&waited, std::ptr::null_mut()) };
        if sig == libc::SIGCHLD {
            reap(child);
        } else if FORWARDED_SIGNALS.contains(&sig) {
            // SAFETY: plain kill of our own child.
            unsafe { libc::kill(child, sig) };
        }
    }
}

/// Reaps every finished child; exits with the command's status when it is among them.
fn reap(command: libc::pid_t) {
    loop {
        let mut status = 0;
        // SAFETY: valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if pid == command {
            // SAFETY: PID 1 exits; the kernel kills the rest of the namespace.
            unsafe { libc::_exit(process::exit_code(status)) };
        }
    }
}

fn start_command(command: &Command, terminal: Option<OwnedFd>, mask: &libc::sigset_t) -> ! {
    set_mask(mask);
    // A session of its own: the command cannot reach the launcher's terminal (no
    // TIOCSTI into the host's shell), and with a pty it gets that pty as its own.
    // SAFETY: plain syscalls on a valid fd.
    unsafe {
        libc::setsid();
        if let Some(tty) = &terminal {
            let fd = tty.as_raw_fd();
            libc::ioctl(fd, libc::TIOCSCTTY, 0);
            for target in 0..=2 {
                libc::dup2(fd, target);
            }
        }
    }
    process::exec(command)
}

extern "C" fn ignore_signal(_: libc::c_int) {}
