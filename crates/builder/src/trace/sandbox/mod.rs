//! The probe's sandbox: the host's tree, read-only under a throwaway writable layer, in
//! namespaces of its own. Read [`probe_main`] top to bottom to follow one probe from
//! the clone to the exec of `/bin/sh -c CMD`; each step is a small function below it.
//!
//! The supervisor ([`start`]) clones the probe's first process into new mount, PID,
//! IPC, UTS and network namespaces at once (and a user namespace when it is not root),
//! writes the user namespace's maps, lets it go on and arms the time limit. That
//! process, PID 1 of its namespace, then:
//!
//! 1. dies with the supervisor, and becomes root of its user namespace if it has one;
//! 2. makes every mount private, so nothing it mounts reaches the host;
//! 3. builds the new root: an overlay of the host's `/` (the lower layer, never written)
//!    with a tmpfs upper layer, then one such overlay for every other host mount, so
//!    the probe sees the whole host tree and may write anywhere in it. From a user
//!    namespace overlayfs refuses a `/` with mounts beneath it, so an ordinary user's
//!    root is a tmpfs with one overlay per top-level directory instead
//!    ([`host_tree`]);
//! 4. mounts a fresh /proc (its own PID namespace's), /sys read-only, and a small /dev
//!    of harmless devices, as launch gives a container ([`kernel_fs`]);
//! 5. pivot_root into the new root, the host's tree detached;
//! 6. enters the caller's working directory, brings loopback up, points stdin and
//!    stdout at /dev/null and stderr at the pipe `trace` reads;
//! 7. asks to be traced, installs the seccomp filter, stops until the tracer is ready,
//!    and executes the probe with a clean environment.
//!
//! A failure is reported in one `E` message on the report pipe, naming the step.

mod host_tree;
mod kernel_fs;

use host_tree::writable_host_tree;
use kernel_fs::{mount_proc, mount_sys, populate_dev};

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use mkroot_common::clone3::{fork_into_namespaces, ForkError, ForkOptions, Forked};
use mkroot_common::mount_api::{
    self, attach, copy_tree, set_attributes, MountAttrFlags, MountAttributes, Reach,
};

use super::{
    c_path, c_string, file_calls, setup_error_message, write_all, Probe, StepError, TraceError,
    TraceNet,
};

/// The environment every probe starts with, before its own (TERM comes from the caller).
const BASE_ENV: [(&str, &str); 3] = [
    ("PATH", crate::programs::DEFAULT_PATH),
    ("HOME", "/root"),
    ("LANG", "C.UTF-8"),
];

/// The exit status of a probe process whose setup failed (after saying why).
const EXIT_SETUP_FAILED: i32 = 125;

/// Everything the probe's process needs, made before any fork: no allocation decides
/// anything after the clone.
pub struct ProbeLaunch {
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    namespaces: u64,
    user_namespace: bool,
    /// The process that called `trace`: the supervisor dies with it.
    caller: libc::pid_t,
}

impl ProbeLaunch {
    pub fn new(probe: &Probe) -> Result<ProbeLaunch, String> {
        let argv = vec![
            c"/bin/sh".to_owned(),
            c"-c".to_owned(),
            c_string(probe.command.as_bytes(), "the command")?,
        ];
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".to_string());
        let mut env: Vec<(String, String)> = BASE_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("TERM".to_string(), term)])
            .collect();
        for (key, value) in &probe.env {
            if key.is_empty() || key.contains('=') {
                return Err(format!("`{key}` is not an environment variable's name"));
            }
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value.clone()));
        }
        let envp = env
            .iter()
            .map(|(k, v)| c_string(format!("{k}={v}").as_bytes(), "the environment"))
            .collect::<Result<_, _>>()?;
        let mut namespaces =
            (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS)
                as u64;
        if probe.net == TraceNet::None {
            namespaces |= libc::CLONE_NEWNET as u64;
        }
        let (euid, caller) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getpid().as_raw(),
        );
        let user_namespace = euid != 0;
        if user_namespace {
            namespaces |= libc::CLONE_NEWUSER as u64;
        }
        Ok(ProbeLaunch {
            argv,
            envp,
            cwd: c_path(&probe.cwd, "the working directory")?,
            namespaces,
            user_namespace,
            caller,
        })
    }

    fn new_network(&self) -> bool {
        self.namespaces & libc::CLONE_NEWNET as u64 != 0
    }
}

/// The probe's first process, as the supervisor holds it.
pub struct Started {
    pub pid: libc::pid_t,
}

const CLONE_STEP: &str = "cloning into new namespaces";

/// In the supervisor: ties it to the caller, clones the probe's first process into its
/// namespaces, writes its user namespace's maps, lets it go on and arms the time limit.
pub fn start(
    launch: &ProbeLaunch,
    filter: &[libc::sock_filter],
    report: RawFd,
    stderr: OwnedFd,
    timeout: Duration,
) -> Result<Started, StepError> {
    // SAFETY: plain prctl; getppid cannot fail.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) < 0 {
            return Err(fail("setting the parent-death signal"));
        }
        // The caller died before the prctl: nothing would kill us.
        if nix::unistd::getppid().as_raw() != launch.caller {
            libc::_exit(1);
        }
    }
    unblock_all_signals();
    let (go_read, go_write) = super::pipe().map_err(|e| step("making a pipe", e))?;
    let options = ForkOptions {
        flags: launch.namespaces,
        cgroup: None,
        pidfd: true,
    };
    let (pid, pidfd) = match fork_into_namespaces(options) {
        Ok(Forked::Child) => {
            drop(go_write);
            probe_main(launch, filter, report, go_read, stderr);
        }
        Ok(Forked::Parent { pid, pidfd }) => (pid, pidfd),
        Err(ForkError::Clone(e)) => return Err(step(CLONE_STEP, e)),
        Err(e) => return Err(step(CLONE_STEP, io::Error::other(e))),
    };
    drop(go_read);
    drop(stderr);
    // CLONE_PIDFD was asked for, so the kernel made one.
    let Some(pidfd) = pidfd else {
        kill_and_reap(pid);
        return Err(step(CLONE_STEP, io::Error::other("clone3 gave no pidfd")));
    };
    if launch.user_namespace {
        if let Err(e) = write_id_maps(pid) {
            kill_and_reap(pid);
            return Err(e);
        }
    }
    arm_time_limit(pidfd, timeout).inspect_err(|_| kill_and_reap(pid))?;
    // The go-ahead: one byte.
    if let Err(e) = write_all(go_write.as_raw_fd(), b"g") {
        kill_and_reap(pid);
        return Err(step("letting the probe go on", e));
    }
    Ok(Started { pid })
}

/// Rootless: the caller's uid and gid become root inside, the one mapping an
/// unprivileged process may write. `setgroups` is denied first, as the kernel requires.
fn write_id_maps(pid: libc::pid_t) -> Result<(), StepError> {
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    for (file, content) in [
        ("setgroups", "deny".to_string()),
        ("uid_map", format!("0 {uid} 1\n")),
        ("gid_map", format!("0 {gid} 1\n")),
    ] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, content).map_err(|e| step(&format!("writing {path}"), e))?;
    }
    Ok(())
}

// The time limit: a one-shot timer whose handler kills the probe's first process
// through its pidfd (never a reused PID); the kernel then ends its whole namespace.
static PROBE_PIDFD: AtomicI32 = AtomicI32::new(-1);
static TIMED_OUT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_time_limit(_: libc::c_int) {
    let fd = PROBE_PIDFD.load(Ordering::SeqCst);
    if fd >= 0 {
        TIMED_OUT.store(true, Ordering::SeqCst);
        // SAFETY: pidfd_send_signal is async-signal-safe; a valid pidfd.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
}

fn arm_time_limit(pidfd: OwnedFd, timeout: Duration) -> Result<(), StepError> {
    // Kept open (leaked into the static) until the supervisor exits.
    PROBE_PIDFD.store(pidfd.as_raw_fd(), Ordering::SeqCst);
    std::mem::forget(pidfd);
    // SAFETY: sigaction is plain data; the handler only makes async-signal-safe calls.
    // SA_RESTART: the tracer's waitpid goes on and sees the probe die.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_time_limit as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()) < 0 {
            return Err(fail("installing the time limit's handler"));
        }
    }
    // A zero timer would never fire: the shortest limit is a microsecond.
    let timeout = timeout.max(Duration::from_micros(1));
    let timer = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        },
    };
    // SAFETY: a valid itimerval.
    if unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) } < 0 {
        return Err(fail("arming the time limit"));
    }
    Ok(())
}

/// Stops the timer; whether it had fired.
pub fn disarm_time_limit() -> bool {
    // SAFETY: a zeroed itimerval disarms the timer.
    unsafe {
        let off: libc::itimerval = std::mem::zeroed();
        libc::setitimer(libc::ITIMER_REAL, &off, std::ptr::null_mut());
    }
    PROBE_PIDFD.store(-1, Ordering::SeqCst);
    TIMED_OUT.load(Ordering::SeqCst)
}

/// The probe's first process, PID 1 of its namespace: the sandbox's setup in kernel
/// order, then the exec of the probe. Never returns.
fn probe_main(
    launch: &ProbeLaunch,
    filter: &[libc::sock_filter],
    report: RawFd,
    go: OwnedFd,
    stderr: OwnedFd,
) -> ! {
    let result = set_up(launch, go, stderr).and_then(|()| {
        // 7. Traced from here: the tracer sets its options at our SIGSTOP, before the
        // exec, whose seccomp stop it must see.
        // SAFETY: plain ptrace and kill calls.
        unsafe {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) < 0 {
                return Err(fail("ptrace: PTRACE_TRACEME"));
            }
        }
        file_calls::install(filter).map_err(|e| step("installing the seccomp filter", e))?;
        // SAFETY: kill of our own pid cannot fail here. (PID 1 ignores its own SIGSTOP
        // unless traced, which it now is: the tracer sees the stop.)
        unsafe { libc::kill(nix::unistd::getpid().as_raw(), libc::SIGSTOP) };
        exec(launch)
    });
    if let Err(e) = result {
        let _ = write_all(report, &setup_error_message(&e.step, &e.source));
    }
    // SAFETY: leaving the forked child without running the parent's cleanup.
    unsafe { libc::_exit(EXIT_SETUP_FAILED) }
}

/// Steps 1 to 6 of the module's sequence.
fn set_up(launch: &ProbeLaunch, go: OwnedFd, stderr: OwnedFd) -> Result<(), StepError> {
    // 1. Die with the supervisor; wait for its go-ahead (our maps are written then).
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } < 0 {
        return Err(fail("setting the parent-death signal"));
    }
    let mut byte = 0u8;
    // SAFETY: reading one byte into a valid buffer.
    if unsafe { libc::read(go.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) } != 1 {
        // SAFETY: the supervisor is gone; nobody is left to report to.
        unsafe { libc::_exit(EXIT_SETUP_FAILED) };
    }
    drop(go);
    if launch.user_namespace {
        // SAFETY: plain syscalls.
        if unsafe { libc::setresgid(0, 0, 0) < 0 || libc::setresuid(0, 0, 0) < 0 } {
            return Err(fail("becoming root in the user namespace"));
        }
    }
    // Modes below are given exactly (device nodes 0666, /dev/shm 1777).
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0) };

    // 2. Nothing mounted from here on propagates to the host.
    mount_classic(c"/", libc::MS_REC | libc::MS_PRIVATE)
        .map_err(|e| step("making mounts private", e))?;

    // 3. The new root: the host's tree under a writable tmpfs layer.
    let root = writable_host_tree(launch.user_namespace)?;

    // 4. The kernel's trees, fresh or read-only.
    mount_proc(&root)?;
    mount_sys(&root, launch.new_network())?;
    populate_dev(&root, launch.user_namespace)?;

    // 5. Into the new root; the host's tree is detached and out of reach.
    pivot_into(&root)?;
    drop(root);

    // 6. The caller's directory, loopback, standard streams.
    // SAFETY: a valid C string.
    if unsafe { libc::chdir(launch.cwd.as_ptr()) } < 0 {
        let what = format!(
            "entering the working directory {}",
            launch.cwd.to_string_lossy()
        );
        return Err(fail(&what));
    }
    if launch.new_network() {
        bring_up_loopback()?;
    }
    standard_streams(stderr)?;
    // The probe gets default signal actions and an empty mask, not the caller's (a
    // Rust program ignores SIGPIPE; mkroot blocks SIGINT and SIGTERM for its own
    // thread), and no descriptor of the caller's but the three streams.
    reset_signals();
    // SAFETY: plain syscalls.
    unsafe {
        libc::umask(0o022);
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    Ok(())
}

fn exec(launch: &ProbeLaunch) -> Result<(), StepError> {
    let argv: Vec<*const libc::c_char> = launch
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let envp: Vec<*const libc::c_char> = launch
        .envp
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    // SAFETY: NULL-terminated arrays of valid C strings.
    unsafe { libc::execve(argv[0], argv.as_ptr(), envp.as_ptr()) };
    Err(fail("executing /bin/sh"))
}

/// Step 5: pivot_root(".", ".") in the new root, then the old root (stacked on it)
/// detached: no path leads back to the host's tree.
fn pivot_into(root: &OwnedFd) -> Result<(), StepError> {
    mount_api::pivot_into(root).map_err(|e| step(&format!("pivot_root: {}", e.step), e.source))
}

/// `lo` up in the probe's network namespace (a fresh one has it down).
fn bring_up_loopback() -> Result<(), StepError> {
    mkroot_common::loopback::bring_up().map_err(|e| step("bringing up lo", e))
}

/// stdin and stdout on the sandbox's /dev/null, stderr on the pipe `trace` reads.
fn standard_streams(stderr: OwnedFd) -> Result<(), StepError> {
    // SAFETY: a valid C string; dup2 on fds we hold.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 {
            return Err(fail("opening /dev/null"));
        }
        if libc::dup2(null, 0) < 0
            || libc::dup2(null, 1) < 0
            || libc::dup2(stderr.as_raw_fd(), 2) < 0
        {
            return Err(fail("setting up the standard streams"));
        }
        libc::close(null);
    }
    Ok(())
}

fn reset_signals() {
    // SAFETY: restoring default actions and an empty mask; errors (SIGKILL, SIGSTOP,
    // the signals glibc keeps) change nothing.
    unsafe {
        for signal in 1..libc::SIGRTMAX() {
            libc::signal(signal, libc::SIG_DFL);
        }
    }
    unblock_all_signals();
}

fn unblock_all_signals() {
    // SAFETY: an empty, initialised sigset.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: our own child, not yet reaped.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL);
    }
}

/// Turns a failed step into the error `trace` returns: a refused user namespace names
/// the kernel setting that refuses it; a ptrace step is the tracer's.
pub fn explain_failure(step: String, source: io::Error) -> TraceError {
    let refused = matches!(
        source.raw_os_error(),
        Some(libc::EPERM | libc::ENOSPC | libc::EUSERS | libc::EACCES)
    );
    if step == CLONE_STEP && refused && !nix::unistd::geteuid().is_root() {
        let setting = |path: &str, forbidden: &str| {
            std::fs::read_to_string(path)
                .map(|v| v.trim() == forbidden)
                .unwrap_or(false)
        };
        let named = [
            (
                "/proc/sys/kernel/unprivileged_userns_clone",
                "0",
                "kernel.unprivileged_userns_clone = 0",
            ),
            (
                "/proc/sys/user/max_user_namespaces",
                "0",
                "user.max_user_namespaces = 0",
            ),
            (
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
                "1",
                "kernel.apparmor_restrict_unprivileged_userns = 1",
            ),
        ]
        .into_iter()
        .find(|(path, value, _)| setting(path, value));
        return TraceError::UserNamespacesForbidden {
            setting: named.map_or_else(
                || format!("cloning into a user namespace: {source}"),
                |(_, _, s)| s.to_string(),
            ),
        };
    }
    if step.starts_with("ptrace") {
        return TraceError::Tracer { step, source };
    }
    TraceError::Sandbox { step, source }
}

fn step(what: &str, source: io::Error) -> StepError {
    StepError {
        step: what.to_string(),
        source,
    }
}

/// The step failed with the last OS error.
fn fail(what: &str) -> StepError {
    step(what, io::Error::last_os_error())
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

fn einval_step() -> StepError {
    step("a path with a NUL byte", einval())
}

/// Binds a copy of the tree at `source` (with its submounts) onto `target`, made
/// read-only before it is attached, so it is never writable in the sandbox.
fn bind_read_only(source: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    bind(source, target, true)
}

fn bind(source: &OwnedFd, target: &OwnedFd, read_only: bool) -> io::Result<()> {
    let tree = copy_tree(source, c"", true)?;
    if read_only {
        let read_only = MountAttributes::set(MountAttrFlags::MOUNT_ATTR_RDONLY);
        set_attributes(tree.as_fd(), c"", Reach::Recursive, read_only)?;
    }
    attach(&tree, target)
}

/// mount(2) for a propagation change.
fn mount_classic(target: &CStr, flags: libc::c_ulong) -> io::Result<()> {
    // SAFETY: valid C string; null source, type and data are allowed here.
    let ret = unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An O_PATH fd of `name` under `dir`, never through a symlink at its end.
fn open_path(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let name = if name.is_empty() { c"." } else { name };
    // SAFETY: valid fd and C string.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC | flags,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn mkdir_at(dir: RawFd, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: valid fd and C string.
    if unsafe { libc::mkdirat(dir, name.as_ptr(), mode) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn fd_path(fd: RawFd) -> CString {
    CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_environment_starts_clean_and_takes_the_probes_own() {
        let mut probe = Probe::new("true");
        probe.env = vec![("LANG".to_string(), "de_DE.UTF-8".to_string())];
        let launch = ProbeLaunch::new(&probe).unwrap();
        let env: Vec<String> = launch
            .envp
            .iter()
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        assert!(env.contains(&"HOME=/root".to_string()));
        assert!(env.contains(&"LANG=de_DE.UTF-8".to_string()));
        assert!(!env.contains(&"LANG=C.UTF-8".to_string()));
        probe.env = vec![("A=B".to_string(), String::new())];
        assert!(ProbeLaunch::new(&probe).is_err());
    }
}
