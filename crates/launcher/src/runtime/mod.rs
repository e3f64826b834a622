//! launch as an OCI runtime: runc's command line (`create`, `start`, `state`, `kill`,
//! `delete`, `run`, `exec`, `ps`, `pause`, `resume`, `list`, `spec`, `features`), the one
//! every engine drives (podman through conmon, containerd through its runc shim, hence
//! Kubernetes). A verb reads the bundle's config.json ([`bundle`]) or a container's
//! record under `--root` ([`state`]), and the container is set up by [`container`]
//! (and joined by [`exec`]) with the same kernel-concept modules `launch IMAGE` uses.

pub mod bundle;
pub mod cgroups;
pub mod container;
pub mod exec;
pub mod mounts;
pub mod seccomp;
mod self_description;
mod signals;
mod spec_devices;
mod spec_process;
pub mod state;
pub mod syscall_numbers;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::error::LaunchError;
use bundle::BundleConfig;
use cgroups::RuntimeCgroup;
pub use self_description::{features, write_default_spec};
pub use signals::parse_signal;
use state::{ContainerDir, Saved, StateRoot, Status};

/// The verbs engines call, by name: how `launch`'s command line tells them from an image.
pub const VERBS: [&str; 14] = [
    "create", "start", "state", "kill", "delete", "run", "exec", "ps", "pause", "resume", "list",
    "spec", "features", "update",
];

/// Whether `args` (without the program name) ask for a runtime verb: the first word
/// after the global runtime flags is one. An image file named like a verb is given as
/// `./create`.
pub fn is_runtime_command(args: &[String]) -> bool {
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--root" | "--log" | "--log-format" | "--log-level" | "--criu" => {
                words.next();
            }
            "--systemd-cgroup" | "--debug" => {}
            w if w.starts_with("--root=")
                || w.starts_with("--log=")
                || w.starts_with("--log-format=")
                || w.starts_with("--log-level=") => {}
            verb => return VERBS.contains(&verb),
        }
    }
    false
}

/// The program that does the verbs: `launch-runtime`, installed next to `launch`.
pub const RUNTIME_PROGRAM: &str = "launch-runtime";

/// `create`'s options besides the ID.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
}

/// Creates container `id` from its bundle, leaving its process blocked until `start`.
pub fn create(root: &StateRoot, id: &str, options: &CreateOptions) -> Result<(), LaunchError> {
    let config = BundleConfig::load(&options.bundle)?;
    let dir = root.claim(id)?;
    match create_in(&dir, &config, options) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = dir.remove();
            Err(e)
        }
    }
}

fn create_in(
    dir: &ContainerDir,
    config: &BundleConfig,
    options: &CreateOptions,
) -> Result<(), LaunchError> {
    let console_socket = options
        .console_socket
        .as_deref()
        .map(connect_console_socket)
        .transpose()?;
    let fifo = dir.fifo();
    make_fifo(&fifo)?;
    // In a user namespace the process opens the fifo as the namespace's root: the
    // host ids that map to it own the fifo (mode 0600 keeps everyone else out).
    let root_inside = |ranges: &[crate::userns::IdRange]| {
        ranges.iter().find(|r| r.inside == 0).map(|r| r.outside)
    };
    if config.namespaces.create & libc::CLONE_NEWUSER as u64 != 0 {
        let uid = root_inside(&config.uid_mappings);
        let gid = root_inside(&config.gid_mappings);
        std::os::unix::fs::chown(&fifo, uid, gid).map_err(|e| {
            LaunchError::setup(
                format!("handing {} to the container's root", fifo.display()),
                e,
            )
        })?;
    }
    let rootless = !nix::unistd::getuid().is_root();
    let cgroup_path = match (&config.cgroups_path, rootless) {
        (Some(path), _) => Some(path.clone()),
        // Without a path, runc's default: /ID (root only: an ordinary user has no cgroup
        // tree of its own to make one in unless one was delegated and named).
        (None, false) => Some(format!("/{}", dir.id)),
        (None, true) => None,
    };
    let cgroup = cgroup_path
        .map(|path| RuntimeCgroup::create(&path, &config.resources))
        .transpose()?;
    let created = container::create(container::CreateRequest {
        id: &dir.id,
        config,
        fifo: &fifo,
        console_socket,
        preserve_fds: options.preserve_fds,
        cgroup: cgroup.as_ref(),
    });
    let pid = match created {
        Ok(pid) => pid,
        Err(e) => {
            if let Some(cgroup) = &cgroup {
                let _ = cgroup.remove();
            }
            return Err(e);
        }
    };
    let saved = Saved {
        id: dir.id.clone(),
        pid,
        start_time: state::process_stat(pid).map_or(0, |(_, t)| t),
        bundle: config.bundle.clone(),
        rootfs: config.rootfs.clone(),
        created: state::now_rfc3339(),
        owner: nix::unistd::getuid().as_raw(),
        annotations: config.annotations.clone(),
        cgroup,
        poststart: config.hooks.poststart.clone(),
        poststop: config.hooks.poststop.clone(),
    };
    // createRuntime and prestart ran during the setup, before pivot_root (see
    // `container::create`).
    let finished = dir.save(&saved).and_then(|()| match &options.pid_file {
        Some(file) => state::write_pid_file(file, pid),
        None => Ok(()),
    });
    if let Err(e) = finished {
        container::kill_and_reap(pid);
        if let Some(cgroup) = &saved.cgroup {
            let _ = cgroup.remove();
        }
        return Err(e);
    }
    Ok(())
}

/// Lets a created container's process exec.
pub fn start(root: &StateRoot, id: &str) -> Result<(), LaunchError> {
    let dir = root.open(id)?;
    let saved = dir.load()?;
    match dir.status(&saved) {
        Status::Created => {}
        status => {
            return Err(LaunchError::Invalid(format!(
                "cannot start a container that has {}",
                match status {
                    Status::Stopped => "stopped",
                    _ => "already started (it is running)",
                }
            )))
        }
    }
    let fifo = dir.fifo();
    // Non-blocking: a process that died at the fifo leaves no writer, and a blocking
    // open would wait for ever.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblock()
        .open(&fifo)
        .map_err(|e| LaunchError::setup(format!("opening {}", fifo.display()), e))?;
    let started = read_start_byte(&file, &saved);
    let _ = std::fs::remove_file(&fifo);
    started?;
    let hooks_state = state::spec_state(&saved, Status::Running);
    // A poststart hook's failure is reported, not undone (the spec: log a warning).
    if let Err(e) = state::run_hooks("poststart", &saved.poststart, &hooks_state) {
        eprintln!("launch: warning: {e}");
    }
    Ok(())
}

trait NonBlocking {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlocking for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
    }
}

/// Waits for the byte the container's process writes once it has opened the fifo.
fn read_start_byte(file: &std::fs::File, saved: &Saved) -> Result<(), LaunchError> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    loop {
        let mut pollfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pollfd, 1, 100) };
        match (&*file).read(&mut byte) {
            Ok(1) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(_) | Err(_) => {}
        }
        if !state::is_alive(saved.pid, saved.start_time) {
            return Err(LaunchError::Invalid(format!(
                "container {}: its process ended before it started",
                saved.id
            )));
        }
    }
}

/// The runtime spec's state of container `id`, as JSON.
pub fn state_json(root: &StateRoot, id: &str) -> Result<serde_json::Value, LaunchError> {
    let dir = root.open(id)?;
    let saved = dir.load()?;
    Ok(state::spec_state(&saved, dir.status(&saved)))
}

/// Sends `signal` to the container's process (`all`: to every process of its cgroup).
pub fn kill(root: &StateRoot, id: &str, signal: &str, all: bool) -> Result<(), LaunchError> {
    let signal = parse_signal(signal)?;
    let dir = root.open(id)?;
    let saved = dir.load()?;
    let status = dir.status(&saved);
    if status == Status::Stopped {
        return Err(LaunchError::Invalid("container not running".into()));
    }
    let pids = match (&saved.cgroup, all) {
        (Some(cgroup), true) => cgroup.pids(),
        _ => vec![saved.pid],
    };
    for pid in pids {
        // SAFETY: plain kill.
        if unsafe { libc::kill(pid, signal) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                if pid == saved.pid {
                    return Err(LaunchError::Invalid("container not running".into()));
                }
                continue;
            }
            return Err(LaunchError::setup(format!("kill {pid}"), e));
        }
    }
    // A paused container gets the signal once it thaws; SIGKILL must end it now.
    if status == Status::Paused && signal == libc::SIGKILL {
        if let Some(cgroup) = &saved.cgroup {
            let _ = cgroup.set_frozen(false);
        }
    }
    Ok(())
}

/// Removes container `id`: its cgroup, its record, after its poststop hooks. A live
/// container only with `force` (killed first).
pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<(), LaunchError> {
    let dir = match root.open(id) {
        Ok(dir) => dir,
        // Nothing to delete: `delete --force` succeeds then, as runc's does.
        Err(_) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let saved = dir.load()?;
    let status = dir.status(&saved);
    if status != Status::Stopped && !force {
        return Err(LaunchError::Invalid(format!(
            "cannot delete container {id} that is not stopped: {}",
            status.as_str()
        )));
    }
    if status != Status::Stopped {
        if let Some(cgroup) = &saved.cgroup {
            if status == Status::Paused {
                let _ = cgroup.set_frozen(false);
            }
        }
        // SAFETY: plain kill of the container's process.
        unsafe { libc::kill(saved.pid, libc::SIGKILL) };
        wait_until_stopped(&saved);
    }
    if let Some(cgroup) = &saved.cgroup {
        cgroup.remove()?;
    }
    let hooks_state = state::spec_state(&saved, Status::Stopped);
    let poststop = state::run_hooks("poststop", &saved.poststop, &hooks_state);
    dir.remove()?;
    if let Err(e) = poststop {
        eprintln!("launch: warning: {e}");
    }
    Ok(())
}

/// Waits (up to 10 s) until the container's process is gone or a zombie.
fn wait_until_stopped(saved: &Saved) {
    for _ in 0..10_000 {
        if !state::is_alive(saved.pid, saved.start_time) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// `run`: create and start container `id`, then (unless detached) wait for it, delete
/// it and return its exit status.
pub fn run(
    root: &StateRoot,
    id: &str,
    options: &CreateOptions,
    detach: bool,
) -> Result<i32, LaunchError> {
    create(root, id, options)?;
    if let Err(e) = start(root, id) {
        let _ = delete(root, id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let saved = root.open(id)?.load()?;
    let code = wait_for_child(saved.pid);
    delete(root, id, true)?;
    Ok(code)
}

/// Waits for our own child `pid`, passing the usual terminal signals on to it.
fn wait_for_child(pid: libc::pid_t) -> i32 {
    crate::init::forward_signals_to(pid);
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            return crate::process::exit_code(status);
        }
        if ret < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return crate::process::EXIT_LAUNCH_FAILED;
        }
    }
}

/// `pause` (`frozen`) or `resume`.
pub fn set_paused(root: &StateRoot, id: &str, frozen: bool) -> Result<(), LaunchError> {
    let dir = root.open(id)?;
    let saved = dir.load()?;
    let status = dir.status(&saved);
    match (status, frozen) {
        (Status::Running, true) | (Status::Paused, false) => {}
        (Status::Stopped, _) => return Err(LaunchError::Invalid("container not running".into())),
        (Status::Paused, true) => {
            return Err(LaunchError::Invalid(format!(
                "container {id} is already paused"
            )))
        }
        (_, false) => {
            return Err(LaunchError::Invalid(format!(
                "container {id} is not paused"
            )))
        }
        (Status::Created, true) => {
            return Err(LaunchError::Invalid("container not running".into()))
        }
    }
    let cgroup = saved.cgroup.as_ref().ok_or_else(|| {
        LaunchError::Invalid(format!("container {id} has no cgroup of its own to freeze"))
    })?;
    cgroup.set_frozen(frozen)
}

/// The PIDs of the container's processes (from its cgroup).
pub fn pids(root: &StateRoot, id: &str) -> Result<Vec<libc::pid_t>, LaunchError> {
    let dir = root.open(id)?;
    let saved = dir.load()?;
    Ok(match &saved.cgroup {
        Some(cgroup) => cgroup.pids(),
        None if dir.status(&saved) != Status::Stopped => vec![saved.pid],
        None => Vec::new(),
    })
}

/// Every container's (id, pid, status, bundle, created, owner).
pub fn list(root: &StateRoot) -> Vec<serde_json::Value> {
    root.ids()
        .into_iter()
        .filter_map(|id| {
            let dir = root.open(&id).ok()?;
            let saved = dir.load().ok()?;
            let status = dir.status(&saved);
            Some(serde_json::json!({
                "ociVersion": state::OCI_VERSION,
                "id": id,
                "pid": if status == Status::Stopped { 0 } else { saved.pid },
                "status": status.as_str(),
                "bundle": saved.bundle,
                "rootfs": saved.rootfs,
                "created": saved.created,
                "owner": owner_name(saved.owner),
            }))
        })
        .collect()
}

fn owner_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?;
                (id.parse() == Ok(uid)).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

/// Connects to the engine's `--console-socket`.
fn connect_console_socket(path: &Path) -> Result<OwnedFd, LaunchError> {
    let stream = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| LaunchError::Invalid(format!("--console-socket {}: {e}", path.display())))?;
    Ok(OwnedFd::from(stream))
}

fn make_fifo(path: &Path) -> Result<(), LaunchError> {
    let mode = rustix::fs::Mode::from_raw_mode(0o600);
    rustix::fs::mkfifoat(rustix::fs::CWD, path, mode)
        .map_err(|e| LaunchError::setup(format!("making {}", path.display()), e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_told_from_images() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_runtime_command(&args(&["create", "x"])));
        assert!(is_runtime_command(&args(&[
            "--root",
            "/r",
            "--log-format=json",
            "state",
            "x"
        ])));
        assert!(is_runtime_command(&args(&[
            "--systemd-cgroup",
            "start",
            "x"
        ])));
        assert!(!is_runtime_command(&args(&["img.tgz", "--", "create"])));
        assert!(!is_runtime_command(&args(&["./create"])));
        assert!(!is_runtime_command(&args(&["--root", "/r"])));
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGKILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("sigusr1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse_signal("FLY").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn the_default_spec_reads_back_as_a_bundle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        write_default_spec(dir.path(), false).unwrap();
        let config = BundleConfig::load(dir.path()).unwrap();
        assert_eq!(config.process.args, ["sh"]);
        assert!(config.root_read_only);
        assert_eq!(config.mounts.len(), 7);
        assert!(write_default_spec(dir.path(), false).is_err());
    }
}
