//! `create`: a bundle's container, set up in kernel order up to the last step, its
//! process then blocked on the exec fifo until `start` opens it. The runtime's side
//! ([`create`]) returns once the container says it is ready, and the runtime exits,
//! leaving the container's process to whoever called it (conmon, containerd-shim:
//! subreapers that wait for it). The container's side (`container_main`) uses the same
//! kernel-concept modules as `launch IMAGE` ([`crate::rootfs`], [`crate::capabilities`],
//! [`crate::landlock`], [`crate::pty`], ...), configured by config.json instead of the
//! command line; as runc does, the process is exec'd as the container's PID 1.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::container::pipe;
use crate::error::LaunchError;
use crate::landlock::ExecInsideRoot;
use crate::namespaces::{self, CloneResult};
use crate::process::{self};
use crate::rootfs::path_c;
use crate::rootfs::{self};
use crate::runtime::bundle::BundleConfig;
use crate::runtime::cgroups::RuntimeCgroup;
use crate::runtime::mounts::MountKind;
use crate::runtime::seccomp::SpecFilter;
use crate::security;
use crate::userns::IdRange;

use super::spec_devices::{default_devices, make_device};
use super::spec_process::{attach_terminal, exec_process, find_program};

/// What `create` is given besides the config.
pub struct CreateRequest<'a> {
    pub id: &'a str,
    pub config: &'a BundleConfig,
    /// The exec fifo (made by the caller in the state directory).
    pub fifo: &'a Path,
    /// Where a terminal's master end goes (`--console-socket`, connected).
    pub console_socket: Option<OwnedFd>,
    /// `--preserve-fds N`: descriptors 3..3+N stay open in the container.
    pub preserve_fds: u32,
    pub cgroup: Option<&'a RuntimeCgroup>,
}

/// The bytes the container's side sends on the sync pipe: ready (blocked on the fifo
/// from now on), or an error message that follows.
const READY: u8 = 0;
const FAILED: u8 = 1;
/// Before pivot_root, when the config has hooks to run then.
const AT_HOOKS: u8 = 2;

/// Creates the container; its process's PID, as the host sees it, once it waits at the
/// exec fifo.
pub fn create(request: CreateRequest) -> Result<libc::pid_t, LaunchError> {
    let config = request.config;
    // Compiled before the clone, while allocating and failing are still cheap.
    let seccomp = config
        .seccomp
        .as_ref()
        .map(SpecFilter::compile)
        .transpose()?;
    let fifo = open_path(request.fifo)?;
    let (go_read, go_write) = pipe()?;
    let (sync_read, sync_write) = pipe()?;
    // Joined by the runtime itself: the clone's child is born in them.
    for (flag, path) in &config.namespaces.join {
        join_namespace(*flag, path)?;
    }
    let mut flags = config.namespaces.create;
    let v1_cgroups = request.cgroup.is_some_and(|c| !c.v1.is_empty());
    let own_cgroup_namespace = flags & libc::CLONE_NEWCGROUP as u64 != 0 && v1_cgroups;
    if own_cgroup_namespace {
        // Made by the child once it is in its v1 cgroups, so it is rooted there.
        flags &= !(libc::CLONE_NEWCGROUP as u64);
    }
    let v2_dir = match request.cgroup.and_then(|c| c.v2.as_ref()) {
        Some(dir) => Some(open_path(dir)?),
        None => None,
    };
    let child =
        match namespaces::clone_into_namespaces(flags, v2_dir.as_ref().map(AsRawFd::as_raw_fd)) {
            Ok(CloneResult::Child) => {
                drop(go_write);
                drop(sync_read);
                container_main(
                    request.id,
                    config,
                    request.cgroup,
                    Channels {
                        go: go_read,
                        sync: sync_write,
                        fifo,
                        console: request.console_socket,
                    },
                    request.preserve_fds,
                    own_cgroup_namespace,
                    seccomp,
                )
            }
            Ok(CloneResult::Parent(pid)) => pid,
            Err(e) => return Err(e),
        };
    drop(go_read);
    drop(sync_write);
    drop(fifo);
    let prepared = (|| {
        if config.namespaces.create & libc::CLONE_NEWUSER as u64 != 0 {
            write_id_maps(child, &config.uid_mappings, &config.gid_mappings)?;
        }
        if let Some(cgroup) = request.cgroup {
            if v1_cgroups || cgroup.v2.is_none() {
                cgroup.add(child)?;
            }
        }
        Ok::<(), LaunchError>(())
    })();
    if let Err(e) = prepared {
        kill_and_reap(child);
        return Err(e);
    }
    // SAFETY: writing one byte from a valid buffer.
    unsafe { libc::write(go_write.as_raw_fd(), b"g".as_ptr().cast(), 1) };
    let mut sync = std::fs::File::from(sync_read);
    loop {
        let mut byte = [0u8; 1];
        let answer = match sync.read(&mut byte) {
            Ok(1) => byte[0],
            _ => {
                kill_and_reap(child);
                return Err(LaunchError::Invalid(
                    "the container's process ended during its setup".into(),
                ));
            }
        };
        match answer {
            READY => return Ok(child),
            // The mounts are made, pivot_root is next: the runtime's hooks run now,
            // then the container's own (createContainer) get its PID.
            AT_HOOKS => {
                let state = hook_state(request.id, child, config, "created");
                let hooks = &config.hooks;
                let ran = super::state::run_hooks("createRuntime", &hooks.create_runtime, &state)
                    .and_then(|()| super::state::run_hooks("prestart", &hooks.prestart, &state));
                if let Err(e) = ran {
                    kill_and_reap(child);
                    return Err(e);
                }
                let pid = child.to_ne_bytes();
                // SAFETY: writing from a valid buffer.
                unsafe { libc::write(go_write.as_raw_fd(), pid.as_ptr().cast(), pid.len()) };
            }
            _ => {
                let mut message = Vec::new();
                let _ = sync.read_to_end(&mut message);
                kill_and_reap(child);
                return Err(LaunchError::Invalid(
                    String::from_utf8_lossy(&message).into_owned(),
                ));
            }
        }
    }
}

/// The state hooks read on stdin while the container is being created: "created", as
/// runc reports it and runtime-tools checks for prestart.
fn hook_state(
    id: &str,
    pid: libc::pid_t,
    config: &BundleConfig,
    status: &str,
) -> serde_json::Value {
    let mut state = serde_json::json!({
        "ociVersion": super::state::OCI_VERSION,
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": config.bundle,
    });
    if !config.annotations.is_empty() {
        state["annotations"] = serde_json::json!(config.annotations);
    }
    state
}

/// In the container, before pivot_root: lets the runtime run its hooks, then runs the
/// createContainer ones (their paths resolve in the runtime's mount namespace, still
/// visible here). `state` carries the id; the PID comes from the runtime.
fn hooks_before_pivot(
    config: &BundleConfig,
    id: &str,
    go: &OwnedFd,
    sync: RawFd,
) -> Result<(), LaunchError> {
    let hooks = &config.hooks;
    if hooks.create_runtime.is_empty()
        && hooks.prestart.is_empty()
        && hooks.create_container.is_empty()
    {
        return Ok(());
    }
    // SAFETY: writing one byte from a valid buffer.
    unsafe { libc::write(sync, [AT_HOOKS].as_ptr().cast(), 1) };
    let mut pid = [0u8; 4];
    // SAFETY: reading into a valid buffer.
    if unsafe { libc::read(go.as_raw_fd(), pid.as_mut_ptr().cast(), pid.len()) } != 4 {
        // The runtime's hooks failed and it said so; it kills us.
        // SAFETY: leaving the forked child.
        unsafe { libc::_exit(process::EXIT_LAUNCH_FAILED) };
    }
    let state = hook_state(id, libc::pid_t::from_ne_bytes(pid), config, "created");
    super::state::run_hooks("createContainer", &hooks.create_container, &state)
}

/// The container's ends of the runtime's pipes, and what it keeps until exec.
struct Channels {
    go: OwnedFd,
    sync: OwnedFd,
    fifo: OwnedFd,
    console: Option<OwnedFd>,
}

/// The container's first process: sets up, reports, waits at the fifo, execs.
fn container_main(
    id: &str,
    config: &BundleConfig,
    cgroup: Option<&RuntimeCgroup>,
    channels: Channels,
    preserve_fds: u32,
    own_cgroup_namespace: bool,
    seccomp: Option<SpecFilter>,
) -> ! {
    let Channels {
        go,
        sync,
        fifo,
        console,
    } = channels;
    security::hide_host_command_line_and_environment(b"launch-init");
    let prepared = set_up(
        config,
        &go,
        own_cgroup_namespace,
        console,
        cgroup,
        (id, sync.as_raw_fd()),
    )
    .and_then(|()| {
        drop(go);
        let program = find_program(&config.process)?;
        let keep: Vec<RawFd> = [sync.as_raw_fd(), fifo.as_raw_fd()]
            .into_iter()
            .chain((3..3 + preserve_fds as RawFd).filter(|fd| *fd != sync.as_raw_fd()))
            .collect();
        security::close_fds_except(&keep);
        Ok(program)
    })
    .and_then(|program| Ok((program, ExecInsideRoot::new()?)));
    let (program, exec_inside_root) = match prepared {
        Ok(ready) => ready,
        Err(e) => {
            let mut message = vec![FAILED];
            message.extend_from_slice(e.to_string().as_bytes());
            // SAFETY: writing from a valid buffer, then leaving the forked child.
            unsafe {
                libc::write(sync.as_raw_fd(), message.as_ptr().cast(), message.len());
                libc::_exit(process::EXIT_LAUNCH_FAILED)
            }
        }
    };
    // From here the container outlives the runtime: no parent-death signal.
    // SAFETY: plain prctl; writing one byte from a valid buffer.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0);
        libc::write(sync.as_raw_fd(), [READY].as_ptr().cast(), 1);
    }
    drop(sync);
    wait_for_start(fifo);
    // startContainer: in the container, before the program (paths resolve inside).
    if !config.hooks.start_container.is_empty() {
        // The PID as the host sees it is not known in here; hooks that need it are
        // the runtime's own (prestart, poststart).
        let state = hook_state(id, 0, config, "created");
        if let Err(e) =
            super::state::run_hooks("startContainer", &config.hooks.start_container, &state)
        {
            eprintln!("launch: {e}");
            // SAFETY: leaving the container's process.
            unsafe { libc::_exit(process::EXIT_CANNOT_RUN) }
        }
    }
    let e = exec_process(
        &config.process,
        &program,
        exec_inside_root,
        seccomp.as_ref(),
    );
    eprintln!("launch: {e}");
    // SAFETY: leaving the container's process.
    unsafe { libc::_exit(process::EXIT_CANNOT_RUN) }
}

/// Everything between the clone and the fifo, in kernel order.
fn set_up(
    config: &BundleConfig,
    go: &OwnedFd,
    own_cgroup_namespace: bool,
    console: Option<OwnedFd>,
    cgroup: Option<&RuntimeCgroup>,
    (id, sync): (&str, RawFd),
) -> Result<(), LaunchError> {
    let in_userns = config.namespaces.create & libc::CLONE_NEWUSER as u64 != 0;
    // 1. A session of our own; die with the runtime until ready; wait for its go-ahead
    // (maps written, cgroups joined).
    // SAFETY: setsid cannot fail here (the clone is no group leader).
    unsafe { libc::setsid() };
    crate::init::tie_to_launcher(go)?;
    if own_cgroup_namespace {
        crate::cgroup::enter_own_namespace()?;
    }
    if in_userns {
        crate::userns::become_root_inside()?;
    }
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0) };

    // 2. Mounts, in our own mount namespace: nothing propagates to the host. The rootfs
    // is bound onto itself so it is a mount pivot_root can switch to.
    rootfs::make_mounts_private()?;
    let rootfs_c = path_c(&config.rootfs)?;
    rootfs::mount(
        Some(&rootfs_c),
        &rootfs_c,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(|e| {
        LaunchError::setup(
            format!("binding {} onto itself", config.rootfs.display()),
            e,
        )
    })?;
    let root = open_dir(&config.rootfs)?;
    for mount in &config.mounts {
        mount.mount_in(&root, &config.bundle, cgroup)?;
    }
    let dev_is_tmpfs = config.mounts.iter().any(|m| {
        m.destination == "/dev"
            && matches!(&m.kind, MountKind::Fresh { fstype, .. } if fstype == "tmpfs")
    });
    if dev_is_tmpfs {
        default_devices(&root, in_userns)?;
    }
    for device in &config.devices {
        make_device(&root, device, in_userns)?;
    }

    // 3. Names (UTS): only in a namespace of our own.
    if config.namespaces.has(libc::CLONE_NEWUTS) {
        if let Some(name) = &config.hostname {
            // SAFETY: valid buffer and length.
            if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } < 0 {
                return Err(LaunchError::setup(
                    "sethostname",
                    std::io::Error::last_os_error(),
                ));
            }
        }
        if let Some(name) = &config.domainname {
            // SAFETY: valid buffer and length.
            if unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) } < 0 {
                return Err(LaunchError::setup(
                    "setdomainname",
                    std::io::Error::last_os_error(),
                ));
            }
        }
    }

    // 4. The hooks that run before pivot_root, then into the new root; the host's tree
    // is detached.
    hooks_before_pivot(config, id, go, sync)?;
    rootfs::pivot_into(&root)?;
    drop(root);
    // The root mount's own propagation; the mounts on it keep theirs (a `shared`
    // bind stays shared).
    rootfs::mount(
        None,
        c"/",
        None,
        config.rootfs_propagation & !libc::MS_REC,
        None,
    )
    .map_err(|e| LaunchError::setup("setting the root's propagation", e))?;
    // Sysctls first: /proc/sys is among the paths made read-only next.
    for (key, value) in &config.sysctl {
        write_sysctl(key, value)?;
    }
    for path in &config.masked_paths {
        crate::masked_paths::mask_path(path)?;
    }
    for path in &config.readonly_paths {
        crate::masked_paths::read_only_path(path)?;
    }
    if let Some(score) = config.process.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", score.to_string())
            .map_err(|e| LaunchError::setup("writing /proc/self/oom_score_adj", e))?;
    }

    // 5. The terminal: a pty of the container's devpts, its master end to the engine.
    if config.process.terminal {
        let socket = console.ok_or_else(|| {
            LaunchError::Invalid(
                "process.terminal is true: give --console-socket, or set it to false".into(),
            )
        })?;
        attach_terminal(&socket, config.process.console_size, true)?;
    }
    if config.root_read_only {
        rootfs::make_root_read_only()?;
    }
    Ok(())
}

/// Blocks until `start` opens the fifo for reading, then tells it we are going.
fn wait_for_start(fifo: OwnedFd) {
    let path = rootfs::fd_path_c(fifo.as_raw_fd());
    // SAFETY: valid C string; the fd is closed right after.
    unsafe {
        let writer = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if writer < 0 {
            libc::_exit(process::EXIT_LAUNCH_FAILED);
        }
        libc::write(writer, b"0".as_ptr().cast(), 1);
        libc::close(writer);
    }
    drop(fifo);
}

/// linux.sysctl: only the namespaced ones are the container's to set; the kernel
/// refuses the others in a container's /proc/sys (EPERM or EROFS), and that is the error.
fn write_sysctl(key: &str, value: &str) -> Result<(), LaunchError> {
    if key.contains("..") || key.contains('/') && key.contains('.') {
        return Err(LaunchError::Invalid(format!(
            "linux.sysctl {key}: not a sysctl name"
        )));
    }
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value)
        .map_err(|e| LaunchError::setup(format!("linux.sysctl {key}={value}"), e))
}

fn write_id_maps(pid: libc::pid_t, uids: &[IdRange], gids: &[IdRange]) -> Result<(), LaunchError> {
    let line = |ranges: &[IdRange]| {
        ranges
            .iter()
            .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
            .collect::<String>()
    };
    let write = |file: &str, content: String| {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, content).map_err(|e| LaunchError::setup(format!("writing {path}"), e))
    };
    if !nix::unistd::getuid().is_root() {
        // The one way an unprivileged process may write a gid map.
        write("setgroups", "deny".to_string())?;
    }
    write("uid_map", line(uids))?;
    write("gid_map", line(gids))
}

fn join_namespace(flag: libc::c_int, path: &Path) -> Result<(), LaunchError> {
    let fd = std::fs::File::open(path).map_err(|e| {
        LaunchError::Invalid(format!("linux.namespaces path {}: {e}", path.display()))
    })?;
    // SAFETY: a valid namespace fd.
    if unsafe { libc::setns(fd.as_raw_fd(), flag) } < 0 {
        return Err(LaunchError::setup(
            format!("joining the namespace {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn open_path(path: &Path) -> Result<OwnedFd, LaunchError> {
    let c = path_c(path)?;
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(LaunchError::setup(
            format!("opening {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn open_dir(path: &Path) -> Result<OwnedFd, LaunchError> {
    let c = path_c(path)?;
    // SAFETY: valid C string.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(LaunchError::setup(
            format!("opening {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn kill_and_reap(child: libc::pid_t) {
    // SAFETY: our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
}
