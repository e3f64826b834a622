//! `exec`: another process in a running container. The runtime joins the container's
//! cgroup and namespaces (the user namespace first, which the others belong to; the
//! mount namespace last, as it changes the root the paths resolve in), forks so the
//! child is inside the PID namespace too, and the child takes the same last steps as
//! the container's own process: working directory, limits, Landlock, seccomp from the
//! bundle's config.json, user, capabilities, exec.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use crate::error::LaunchError;
use crate::landlock::ExecInsideRoot;
use crate::runtime::bundle::{BundleConfig, ProcessConfig};
use crate::runtime::seccomp::SpecFilter;
use crate::runtime::spec_process;
use crate::runtime::state::{StateRoot, Status};
use crate::{process, security};

/// How `exec` was asked.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// `--process FILE`; else `args` with the container's own process as the base.
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// `--user UID[:GID]`.
    pub user: Option<(u32, u32)>,
    pub tty: bool,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
}

/// The namespaces in the order they are joined.
const JOIN_ORDER: [(&str, libc::c_int); 8] = [
    ("user", libc::CLONE_NEWUSER),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
    ("mnt", libc::CLONE_NEWNS),
];

/// Runs the process; its exit status, or 0 at once with `detach`.
pub fn exec(root: &StateRoot, id: &str, options: &ExecOptions) -> Result<i32, LaunchError> {
    let dir = root.open(id)?;
    let saved = dir.load()?;
    match dir.status(&saved) {
        Status::Running | Status::Created => {}
        Status::Paused => {
            return Err(LaunchError::Invalid(format!(
                "container {id} is paused; resume it first"
            )))
        }
        Status::Stopped => {
            return Err(LaunchError::Invalid(
                "cannot exec in a stopped container".into(),
            ))
        }
    }
    let config = BundleConfig::load(&saved.bundle)?;
    let process = process_to_run(&config, options)?;
    let seccomp = config
        .seccomp
        .as_ref()
        .map(SpecFilter::compile)
        .transpose()?;
    let console = match (&options.console_socket, process.terminal) {
        (Some(path), true) => Some(connect(path)?),
        (None, true) => {
            return Err(LaunchError::Invalid(
                "a terminal (-t, or process.terminal) needs --console-socket".into(),
            ))
        }
        _ => None,
    };
    // Opened before any is joined: /proc/PID/ns of the host's /proc, and the pid
    // file's directory, a host path the container's mount namespace does not show.
    let namespaces = open_namespaces(saved.pid)?;
    let pid_file = options.pid_file.as_deref().map(PidFile::open).transpose()?;
    if let Some(cgroup) = &saved.cgroup {
        cgroup.add(nix::unistd::getpid().as_raw())?;
    }
    for (name, flag, fd) in &namespaces {
        // SAFETY: a valid namespace fd.
        if unsafe { libc::setns(fd.as_raw_fd(), *flag) } < 0 {
            return Err(LaunchError::setup(
                format!("joining the container's {name} namespace"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    drop(namespaces);
    // SAFETY: the runtime is single-threaded; the child only makes syscalls and execs.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(LaunchError::setup("fork", std::io::Error::last_os_error()));
    }
    if child == 0 {
        let e = child_main(&process, console, options.preserve_fds, seccomp.as_ref());
        eprintln!("launch: exec: {e}");
        // SAFETY: leaving the forked child.
        unsafe { libc::_exit(process::EXIT_CANNOT_RUN) };
    }
    if let Some(file) = &pid_file {
        file.write(child)?;
    }
    if options.detach {
        return Ok(0);
    }
    let mut status = 0;
    crate::init::forward_signals_to(child);
    loop {
        // SAFETY: waiting for our own child.
        let ret = unsafe { libc::waitpid(child, &mut status, 0) };
        if ret == child {
            return Ok(process::exit_code(status));
        }
        if ret < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(LaunchError::setup(
                "waiting for the process",
                std::io::Error::last_os_error(),
            ));
        }
    }
}

fn child_main(
    process: &ProcessConfig,
    console: Option<OwnedFd>,
    preserve_fds: u32,
    seccomp: Option<&SpecFilter>,
) -> LaunchError {
    let prepared = (|| {
        if let Some(socket) = &console {
            // SAFETY: setsid cannot fail in a fresh child (no group leader).
            unsafe { libc::setsid() };
            spec_process::attach_terminal(socket, process.console_size, false)?;
        }
        drop(console);
        let keep: Vec<RawFd> = (3..3 + preserve_fds as RawFd).collect();
        security::close_fds_except(&keep);
        let program = spec_process::find_program(process)?;
        Ok::<_, LaunchError>((program, ExecInsideRoot::new()?))
    })();
    match prepared {
        Ok((program, rule)) => spec_process::exec_process(process, &program, rule, seccomp),
        Err(e) => e,
    }
}

/// The process `exec` runs: the `--process` file, or the container's own process with
/// the command line's args, env, cwd, user and terminal.
fn process_to_run(
    config: &BundleConfig,
    options: &ExecOptions,
) -> Result<ProcessConfig, LaunchError> {
    if let Some(file) = &options.process_file {
        return ProcessConfig::load(file);
    }
    if options.args.is_empty() {
        return Err(LaunchError::Invalid(
            "exec: give the command after the container id, or --process FILE".into(),
        ));
    }
    let mut process = config.process.clone();
    process.args = options.args.clone();
    for entry in &options.env {
        let key = entry.split('=').next().unwrap_or_default();
        process.env.retain(|e| e.split('=').next() != Some(key));
        process.env.push(entry.clone());
    }
    if let Some(cwd) = &options.cwd {
        process.cwd = cwd.clone();
    }
    if let Some((uid, gid)) = options.user {
        process.uid = uid;
        process.gid = gid;
        process.additional_gids.clear();
    }
    process.terminal = options.tty;
    Ok(process)
}

/// The container's namespaces that differ from ours, in [`JOIN_ORDER`].
fn open_namespaces(
    pid: libc::pid_t,
) -> Result<Vec<(&'static str, libc::c_int, OwnedFd)>, LaunchError> {
    let mut out = Vec::new();
    for (name, flag) in JOIN_ORDER {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let ours = format!("/proc/self/ns/{name}");
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let file = std::fs::File::open(&theirs)
            .map_err(|e| LaunchError::setup(format!("opening {theirs}"), e))?;
        out.push((name, flag, OwnedFd::from(file)));
    }
    Ok(out)
}

fn connect(path: &std::path::Path) -> Result<OwnedFd, LaunchError> {
    let stream = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| LaunchError::Invalid(format!("--console-socket {}: {e}", path.display())))?;
    Ok(OwnedFd::from(stream))
}

/// `--pid-file`, opened by its directory before the runtime leaves the host's mount
/// namespace, and written through that directory after.
struct PidFile {
    dir: OwnedFd,
    name: std::ffi::CString,
    shown: PathBuf,
}

impl PidFile {
    fn open(path: &std::path::Path) -> Result<PidFile, LaunchError> {
        use std::os::unix::ffi::OsStrExt;
        let invalid =
            || LaunchError::Invalid(format!("--pid-file {}: give a file path", path.display()));
        let name = path.file_name().ok_or_else(invalid)?;
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let dir = std::fs::File::open(parent)
            .map_err(|e| LaunchError::Invalid(format!("--pid-file {}: {e}", path.display())))?;
        Ok(PidFile {
            dir: OwnedFd::from(dir),
            name: std::ffi::CString::new(name.as_bytes()).map_err(|_| invalid())?,
            shown: path.to_path_buf(),
        })
    }

    fn write(&self, pid: libc::pid_t) -> Result<(), LaunchError> {
        let failed =
            |e| LaunchError::setup(format!("writing --pid-file {}", self.shown.display()), e);
        // SAFETY: a valid directory fd and C string; the fd is closed right after.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o644,
            )
        };
        if fd < 0 {
            return Err(failed(std::io::Error::last_os_error()));
        }
        // SAFETY: a new fd that we own.
        let mut file =
            std::fs::File::from(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
        std::io::Write::write_all(&mut file, pid.to_string().as_bytes()).map_err(failed)
    }
}
