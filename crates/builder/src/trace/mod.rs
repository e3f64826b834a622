//! Watching a program work once, to learn the files no ELF header names.
//!
//! [`trace`] runs a probe (`/bin/sh -c CMD`) in a throwaway sandbox and returns the host
//! files it and all its descendants successfully opened, executed, stat'ed or read as a
//! link, as [`TraceRecord`]: sets of files, symlinks and directories, the same for the
//! same host files and the same probe, whatever order the events came in.
//!
//! One trace, in order:
//!
//! 1. `trace` forks a *supervisor*, a single-threaded process of its own, so that its
//!    `waitpid(-1)` sees the probe's processes and nothing else of the caller's.
//! 2. The supervisor clones the probe's first process into new mount, PID, IPC, UTS and
//!    (unless [`TraceNet::Host`]) network namespaces ([`sandbox`]): the host's tree,
//!    read-only, under a tmpfs writable layer; fresh /proc, /sys, a small /dev.
//! 3. That process asks to be traced, installs a seccomp filter that stops only the file
//!    and exec calls ([`file_calls`]), stops itself, then executes `/bin/sh -c CMD`.
//! 4. The supervisor follows every process with ptrace ([`tracer`]): at each stop it reads the path
//!    the call names and makes it absolute as the program named it ([`paths`]), lets
//!    the call run, and keeps the path if the call succeeded. A timer kills the probe at
//!    its time limit.
//! 5. Once the probe's PID namespace is gone, the supervisor sends what it saw through
//!    a pipe, and `trace` walks each path against the host's tree, keeping every
//!    symlink passed through and the real file at the end ([`paths`], [`record`]).
//!
//! Nothing the probe writes reaches the host: its only writable layer is a tmpfs in a
//! mount namespace that dies with it. No process outlives a trace: the supervisor dies
//! with the thread that called `trace` (PR_SET_PDEATHSIG), every probe process dies with
//! the supervisor (PTRACE_O_EXITKILL), and all of them with the PID namespace's first
//! process. Root is the main case; an ordinary user traces in a user namespace where the
//! kernel allows one.

pub mod file_calls;
pub mod paths;
pub mod record;
pub mod sandbox;
pub mod tracer;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

pub use record::TraceRecord;

/// One probe to trace: a shell command line, where and how long it may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Run as `/bin/sh -c COMMAND`.
    pub command: String,
    /// The probe's working directory (the caller's, as a rule): an absolute host path.
    pub cwd: PathBuf,
    /// Past this the probe is killed and the trace is [`TraceError::TimedOut`].
    pub timeout: Duration,
    pub net: TraceNet,
    /// Set in the probe's environment after the defaults (PATH, HOME, TERM, LANG).
    pub env: Vec<(String, String)>,
    /// Globs of paths left out of the record (`*` within one component, `**` across).
    pub exclude: Vec<String>,
}

/// The default time limit of a probe.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

impl Probe {
    /// A probe of `command` in the caller's working directory, with the defaults: 120 s,
    /// no network, no extra environment, nothing excluded.
    pub fn new(command: impl Into<String>) -> Probe {
        Probe {
            command: command.into(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            timeout: DEFAULT_TIMEOUT,
            net: TraceNet::None,
            env: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

/// The network a probe sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceNet {
    /// A network namespace of its own with only loopback, up.
    #[default]
    None,
    /// The host's network.
    Host,
}

/// Why a trace gave no record (or, for [`TraceError::ProbeFailed`], a record of a probe
/// that failed).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("the probe `{command}` exited with status {status}{}; fix the command, or pass --trace-allow-fail", last_line(stderr))]
    ProbeFailed {
        command: String,
        status: i32,
        /// The end of what the probe wrote to its standard error.
        stderr: String,
        /// What the probe did before it failed, for callers that go on anyway.
        record: Box<TraceRecord>,
    },
    #[error(
        "the probe `{command}` names a program that does not exist (exit status 127){}",
        last_line(stderr)
    )]
    NotFound { command: String, stderr: String },
    #[error("the probe `{command}` was killed at its time limit of {}; raise the limit or shorten the probe", seconds(*limit))]
    TimedOut { command: String, limit: Duration },
    #[error("the probe `{command}` is not usable: {reason}")]
    InvalidProbe { command: String, reason: String },
    #[error("the exclude glob `{glob}` is not valid: {source}")]
    Exclude {
        glob: String,
        source: globset::Error,
    },
    #[error("setting up the trace sandbox: {step}: {source}")]
    Sandbox { step: String, source: io::Error },
    #[error("tracing as an ordinary user needs a user namespace, and the kernel refuses one ({setting}); trace as root, or change that setting")]
    UserNamespacesForbidden { setting: String },
    #[error("following the probe with ptrace: {step}: {source}")]
    Tracer { step: String, source: io::Error },
}

fn last_line(stderr: &str) -> String {
    match last_words(stderr) {
        Some(line) => format!(" ({line})"),
        None => String::new(),
    }
}

/// The last line a probe wrote that is not blank.
pub fn last_words(stderr: &str) -> Option<String> {
    let line = stderr.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(line.trim().to_string())
}

fn seconds(limit: Duration) -> String {
    format!("{} s", limit.as_secs_f64())
}

/// Runs `probe` in the sandbox, following it and every process it starts, and returns
/// what it used of the host's tree.
pub fn trace(probe: &Probe) -> Result<TraceRecord, TraceError> {
    let invalid = |reason: &str| TraceError::InvalidProbe {
        command: probe.command.clone(),
        reason: reason.to_string(),
    };
    if !probe.cwd.is_absolute() {
        return Err(invalid("its working directory must be an absolute path"));
    }
    let exclusions = record::Exclusions::new(&probe.exclude)?;
    let launch = sandbox::ProbeLaunch::new(probe).map_err(|reason| invalid(&reason))?;
    let filter = file_calls::file_call_filter();
    let (report_read, report_write) = pipe().map_err(|e| setup("making a pipe", e))?;
    let (stderr_read, stderr_write) = pipe().map_err(|e| setup("making a pipe", e))?;

    // SAFETY: the child runs only the supervisor (its own single-threaded process,
    // which allocates: glibc's malloc is usable after fork) and ends with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(setup("forking the supervisor", io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(report_read);
        drop(stderr_read);
        supervise(&launch, &filter, probe.timeout, report_write, stderr_write);
    }
    let supervisor = Supervisor { pid, reaped: false };
    drop(report_write);
    drop(stderr_write);
    let (report, stderr) = read_both(report_read, stderr_read).map_err(|e| TraceError::Tracer {
        step: "reading the supervisor's report".to_string(),
        source: e,
    })?;
    supervisor.reap();

    let report = Report::parse(&report);
    if let Some((errno, step)) = report.setup_error {
        let source = io::Error::from_raw_os_error(errno);
        return Err(sandbox::explain_failure(step, source));
    }
    let Some(status) = report.exit_status else {
        return Err(TraceError::Tracer {
            step: "the supervisor ended without reporting the probe's exit".to_string(),
            source: io::Error::other("no report"),
        });
    };
    if report.timed_out {
        return Err(TraceError::TimedOut {
            command: probe.command.clone(),
            limit: probe.timeout,
        });
    }
    let record = record::build(&report.accesses, &exclusions, status);
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    match status {
        0 => Ok(record),
        127 => Err(TraceError::NotFound {
            command: probe.command.clone(),
            stderr,
        }),
        status => Err(TraceError::ProbeFailed {
            command: probe.command.clone(),
            status,
            stderr,
            record: Box::new(record),
        }),
    }
}

/// A step of the sandbox's setup or of the tracer that failed, as the supervisor
/// reports it.
#[derive(Debug)]
pub struct StepError {
    pub step: String,
    pub source: io::Error,
}

fn setup(step: &str, source: io::Error) -> TraceError {
    TraceError::Sandbox {
        step: step.to_string(),
        source,
    }
}

/// The supervisor's process, as `trace` holds it: killed and reaped if `trace` leaves
/// early (its probe processes then die with it, PTRACE_O_EXITKILL).
struct Supervisor {
    pid: libc::pid_t,
    reaped: bool,
}

impl Supervisor {
    fn reap(mut self) {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
        self.reaped = true;
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: our own child, not yet reaped, so the PID is still its.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// The supervisor: starts the sandboxed probe, follows it to its end and reports.
/// Never returns.
fn supervise(
    launch: &sandbox::ProbeLaunch,
    filter: &[libc::sock_filter],
    timeout: Duration,
    report: OwnedFd,
    stderr: OwnedFd,
) -> ! {
    let mut out = Vec::new();
    let code = match sandbox::start(launch, filter, report.as_raw_fd(), stderr, timeout) {
        Ok(started) => match tracer::follow(started.pid) {
            Ok(followed) => {
                let timed_out = sandbox::disarm_time_limit();
                for access in &followed.accesses {
                    out.push(match (access.executed, access.follow_last) {
                        (true, _) => b'R',
                        (false, true) => b'F',
                        (false, false) => b'L',
                    });
                    out.extend_from_slice(&access.path);
                    out.push(0);
                }
                if timed_out {
                    out.extend_from_slice(b"T\0");
                }
                out.extend_from_slice(format!("X{}\0", followed.exit_status).as_bytes());
                0
            }
            Err(e) => {
                out.extend_from_slice(&setup_error_message(&e.step, &e.source));
                1
            }
        },
        Err(e) => {
            out.extend_from_slice(&setup_error_message(&e.step, &e.source));
            1
        }
    };
    let _ = write_all(report.as_raw_fd(), &out);
    // SAFETY: leaving the forked child without running the parent's cleanup.
    unsafe { libc::_exit(code) }
}

/// `E<errno> <step>\0`: how the sandbox or the tracer says a step failed.
fn setup_error_message(step: &str, source: &io::Error) -> Vec<u8> {
    let errno = source.raw_os_error().unwrap_or(0);
    format!("E{errno} {step}\0").into_bytes()
}

/// What the supervisor sent: NUL-terminated messages, one letter then text.
#[derive(Debug, Default)]
struct Report {
    /// Paths named by successful calls: (absolute path, whether its last component was
    /// followed if a symlink).
    accesses: BTreeSet<tracer::Access>,
    exit_status: Option<i32>,
    timed_out: bool,
    setup_error: Option<(i32, String)>,
}

impl Report {
    fn parse(bytes: &[u8]) -> Report {
        let mut report = Report::default();
        for message in bytes.split(|b| *b == 0) {
            let Some((&kind, rest)) = message.split_first() else {
                continue;
            };
            let text = || String::from_utf8_lossy(rest).into_owned();
            match kind {
                b'F' | b'L' | b'R' => {
                    report.accesses.insert(tracer::Access {
                        path: rest.to_vec(),
                        follow_last: kind != b'L',
                        executed: kind == b'R',
                    });
                }
                b'X' => report.exit_status = text().parse().ok(),
                b'T' => report.timed_out = true,
                // The first error is the cause; later ones follow from it.
                b'E' if report.setup_error.is_none() => {
                    let text = text();
                    let (errno, step) = text.split_once(' ').unwrap_or(("0", &text));
                    report.setup_error = Some((errno.parse().unwrap_or(0), step.to_string()));
                }
                _ => {}
            }
        }
        report
    }
}

/// How much of the probe's standard error is kept, from its end.
const STDERR_KEPT: usize = 4096;

/// Reads the report and the probe's standard error until both end (the supervisor and
/// every probe process gone); keeps all of the report, the last bytes of stderr.
fn read_both(report: OwnedFd, stderr: OwnedFd) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut open = [Some(report), Some(stderr)];
    let mut data = [Vec::new(), Vec::new()];
    let mut buf = vec![0u8; 65536];
    while open.iter().any(Option::is_some) {
        let mut fds: Vec<libc::pollfd> = open
            .iter()
            .map(|fd| libc::pollfd {
                fd: fd.as_ref().map_or(-1, AsRawFd::as_raw_fd),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: a valid array of pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for (i, polled) in fds.iter().enumerate() {
            if polled.revents == 0 || open[i].is_none() {
                continue;
            }
            // SAFETY: reading into a valid buffer.
            let n = unsafe { libc::read(polled.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                open[i] = None;
                continue;
            }
            data[i].extend_from_slice(&buf[..n as usize]);
            if i == 1 && data[1].len() > 2 * STDERR_KEPT {
                let cut = data[1].len() - STDERR_KEPT;
                data[1].drain(..cut);
            }
        }
    }
    let [report, mut stderr] = data;
    if stderr.len() > STDERR_KEPT {
        let cut = stderr.len() - STDERR_KEPT;
        stderr.drain(..cut);
    }
    Ok((report, stderr))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: valid array of two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two new fds that we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// write(2) until all of `bytes` is written; for the forked processes, which have no
/// `File` to lend.
fn write_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: writing from a valid buffer.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// A C string of a path or argument; `what` names it in the error.
fn c_string(bytes: &[u8], what: &str) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| format!("{what} contains a NUL byte"))
}

fn c_path(path: &std::path::Path, what: &str) -> Result<CString, String> {
    c_string(path.as_os_str().as_bytes(), what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_parses_into_accesses_status_and_errors() {
        let report = Report::parse(b"F/etc/hostname\0L/usr/bin/awk\0R/bin/ls\0T\0X3\0");
        assert_eq!(report.exit_status, Some(3));
        assert!(report.timed_out);
        assert_eq!(report.accesses.len(), 3);
        assert!(report.accesses.contains(&tracer::Access {
            path: b"/usr/bin/awk".to_vec(),
            follow_last: false,
            executed: false,
        }));
        assert!(report.accesses.contains(&tracer::Access {
            path: b"/bin/ls".to_vec(),
            follow_last: true,
            executed: true,
        }));
        let failed = Report::parse(b"E2 mounting the overlay root\0E9 later\0X125\0");
        assert_eq!(
            failed.setup_error,
            Some((2, "mounting the overlay root".to_string()))
        );
    }

    #[test]
    fn errors_name_the_probe_and_its_last_words() {
        let e = TraceError::NotFound {
            command: "nosuch".to_string(),
            stderr: "sh: 1: nosuch: not found\n".to_string(),
        };
        assert_eq!(
            e.to_string(),
            "the probe `nosuch` names a program that does not exist (exit status 127) (sh: 1: nosuch: not found)"
        );
    }
}
