//! The container's PID 1: a minimal init in front of the command (as tini and bwrap
//! have), unless the command is an init itself. A PID namespace's init gets no default
//! signal actions and inherits every orphan, so a plain command as PID 1 would ignore
//! SIGTERM and leave zombies. This init forwards signals to the command, reaps orphans,
//! and exits with the command's status once it ends (the kernel then kills what is left
//! in the namespace).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::capabilities::{self, Capability};
use crate::error::LaunchError;
use crate::process::{self, Command, PreparedCommand};
use crate::security::BeforeExec;

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
pub fn tie_to_launcher(go: &OwnedFd) -> Result<(), LaunchError> {
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } < 0 {
        return Err(LaunchError::setup(
            "setting the parent-death signal",
            std::io::Error::last_os_error(),
        ));
    }
    wait_for_launcher(go);
    Ok(())
}

/// Waits for the launcher's next go-ahead byte on `go`; exits at EOF (it is gone).
pub fn wait_for_launcher(go: &OwnedFd) {
    let mut byte = 0u8;
    // SAFETY: reading one byte into a valid buffer.
    let n = unsafe { libc::read(go.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
    if n != 1 {
        // SAFETY: the launcher is gone; nobody is left to report to.
        unsafe { libc::_exit(process::EXIT_LAUNCH_FAILED) };
    }
}

/// The launcher's side of [`wait_for_launcher`].
pub fn let_container_go_on(go: &OwnedFd) {
    // SAFETY: writing one byte from a valid buffer.
    unsafe { libc::write(go.as_raw_fd(), b"g".as_ptr().cast(), 1) };
}

/// Runs the command under this init. `terminal` is the pty's slave end for an
/// interactive container; `command_mask` the signal mask the command starts with.
pub fn run(
    command: &Command,
    terminal: Option<OwnedFd>,
    status: OwnedFd,
    command_mask: &libc::sigset_t,
    before_exec: BeforeExec,
) -> ! {
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
    // The launcher ignores SIGPIPE (its `main`, as Rust's runtime would), and an ignored
    // signal stays ignored across exec: the command would never get it (`yes | head -1`
    // would end in EPIPE errors instead). Back to the default, as std's own Command does
    // for its children.
    // SAFETY: plain signal disposition change.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let prepared = PreparedCommand::new(
        command,
        terminal.as_ref().map(AsRawFd::as_raw_fd),
        *command_mask,
    );
    // Init itself is confined as the command will be, before the command exists: a
    // process of the container allowed to trace init (--cap-add SYS_PTRACE) would
    // otherwise make the calls the filter refuses, or exec outside the root, through it.
    // The command's process inherits both.
    if let Err(e) = confine(before_exec) {
        eprintln!("launch: {e}");
        // SAFETY: exiting PID 1 ends the container.
        unsafe { libc::_exit(process::EXIT_LAUNCH_FAILED) };
    }
    if command.is_an_init() {
        // It reaps and passes signals on itself: it becomes PID 1. Exec closes the
        // status pipe unwritten, so the launcher takes this process's own exit status.
        for sig in FORWARDED_SIGNALS {
            // SAFETY: back to the default action before exec (which would reset the
            // handler anyway).
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
        drop(status);
        prepared.exec_here();
    }
    let child = match prepared.spawn() {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("launch: starting the command: {e}");
            // SAFETY: exiting PID 1 ends the container.
            unsafe { libc::_exit(process::EXIT_LAUNCH_FAILED) };
        }
    };
    drop(prepared);
    drop(terminal);
    // From now on init only reaps and passes signals on: kill(-1) at the end needs
    // CAP_KILL (the command may run as another user), nothing else does.
    if let Err(e) = capabilities::keep_only(&[Capability::KILL]) {
        eprintln!("launch: {e}");
    }
    let waited = signal_set();
    loop {
        // SAFETY: valid sigset; the siginfo is not needed.
        let sig = unsafe { libc::sigwaitinfo(&waited, std::ptr::null_mut()) };
        if sig == libc::SIGCHLD {
            if let Some(code) = reap(child) {
                finish(code, status);
            }
        } else if FORWARDED_SIGNALS.contains(&sig) {
            // SAFETY: plain kill of our own child.
            unsafe { libc::kill(child, sig) };
        }
    }
}

/// Enforces the Landlock rule and installs the seccomp filter on init.
fn confine(before_exec: BeforeExec) -> Result<(), LaunchError> {
    let failed = |step: &str, errno| {
        LaunchError::setup(step.to_string(), std::io::Error::from_raw_os_error(errno))
    };
    if let Some(rule) = &before_exec.exec_inside_root {
        rule.enforce()
            .map_err(|e| failed("enforcing the Landlock rule", e))?;
    }
    if let Some(profile) = &before_exec.seccomp {
        profile
            .install()
            .map_err(|e| failed("installing the seccomp filter", e))?;
    }
    Ok(())
}

/// Reaps every finished child; the command's exit code when it is among them.
fn reap(command: libc::pid_t) -> Option<i32> {
    loop {
        let mut status = 0;
        // SAFETY: valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return None;
        }
        if pid == command {
            return Some(process::exit_code(status));
        }
    }
}

/// The command has ended: kill and reap whatever it left running, so the container is
/// empty, then tell the launcher the exit code and leave. The kernel's teardown of the
/// namespaces (and their mounts) follows without holding the launcher up.
fn finish(code: i32, status: OwnedFd) -> ! {
    // SAFETY: kill(-1) from a PID namespace's init reaches every other process in it
    // and nothing outside; then reap them all. Outside a PID namespace kill(-1) would
    // reach every process of the host: only PID 1 may ever make this call, so a
    // mistake elsewhere can never turn it loose on the host.
    unsafe {
        if nix::unistd::getpid().as_raw() == 1 {
            libc::kill(-1, libc::SIGKILL);
        }
        while libc::waitpid(-1, std::ptr::null_mut(), 0) > 0 {}
        let bytes = code.to_ne_bytes();
        libc::write(status.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
        libc::_exit(code)
    }
}

/// The launcher's side: reads the exit code `finish` sent; `None` when init died
/// without sending one.
pub fn read_exit_status(status: &OwnedFd) -> Option<i32> {
    let mut bytes = [0u8; 4];
    loop {
        // SAFETY: reading into a valid buffer.
        let n = unsafe { libc::read(status.as_raw_fd(), bytes.as_mut_ptr().cast(), bytes.len()) };
        if n == 4 {
            return Some(i32::from_ne_bytes(bytes));
        }
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
}

/// Where the launcher's signal handlers send what they catch: the container's init.
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// The launcher's side: passes the forwarded signals on to `child` (its init) from
/// now on. The signals must still be blocked; unblock them afterwards.
pub fn forward_signals_to(child: libc::pid_t) {
    FORWARD_TO.store(child, Ordering::Relaxed);
    for sig in FORWARDED_SIGNALS {
        // SAFETY: sigaction is plain data; the handler is async-signal-safe. SA_RESTART
        // keeps the launcher's read of the exit status going.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forward_signal as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

extern "C" fn ignore_signal(_: libc::c_int) {}
