//! One container, start to end, in the order the kernel needs it. Read this file top
//! to bottom to follow a launch: the launcher's side ([`run`]) and the container's side
//! (`set_up`), each step a call into the module of its kernel concept.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::cgroup::ContainerCgroup;
use crate::error::LaunchError;
use crate::namespaces::{self, CloneResult, CONTAINER_NAMESPACES};
use crate::network::{NameFiles, NamespaceSource};
use crate::process::{self, EXIT_LAUNCH_FAILED};
use crate::rootfs::{self, MountPoint, WritableLayer};
use crate::seccomp::SeccompProfile;
use crate::security::BeforeExec;
use crate::spec::ContainerSpec;
use crate::storage;
use crate::{
    cgroup, cpu_spread, devices, etc_files, init, landlock, masked_paths, network, pty,
    read_only_exe, security, userns,
};

/// Starts the container and waits for it; returns the exit status `launch` exits with.
pub fn run(spec: &ContainerSpec) -> Result<i32, LaunchError> {
    // Signals are blocked before the clone so none sent in between is lost; once the
    // child's PID is known the launcher passes them on.
    let signals = init::signal_set();
    let command_mask = init::block(&signals);
    let (go_read, go_write) = pipe()?;
    // The container's init reports the command's exit status here once everything in
    // the container is dead, so the launcher can exit without also waiting while the
    // kernel tears the namespaces down (several RCU grace periods).
    let (status_read, status_write) = pipe()?;
    let pty_channel = spec.tty.then(socket_pair).transpose()?;

    // The image tree goes to the container as our working directory: the clone moves it
    // into the new mount namespace (see `WritableLayer::mount`). Nothing the launcher
    // does afterwards depends on its cwd.
    rustix::process::fchdir(&spec.image)
        .map_err(|e| LaunchError::setup("entering the image tree", e.into()))?;
    let launcher = nix::unistd::getpid().as_raw();
    // Without a user namespace the launcher makes a `--net none` namespace in
    // parallel (see `network`); with one, it comes with the clone. A bridge address
    // is leased before the clone, so /etc/hosts can name it.
    let net_source = spec.network.source(spec.id_mapping.is_some());
    let (bridge_reservation, name_files) = network::prepare(&spec.network)?;
    // Root with --userns: the image's mount, to be idmapped into the container's user
    // namespace once it exists (see `rootfs::idmapped_copy`).
    let idmapped_image = match (&spec.id_mapping, nix::unistd::getuid().as_raw()) {
        (Some(_), 0) => Some(rootfs::detached_copy(&spec.image)?),
        _ => None,
    };
    // The cgroup comes first: the child is moved in before it goes on. The seccomp
    // filter is compiled now, while allocating is still fine.
    let cgroup = ContainerCgroup::create(&spec.limits)?;
    let seccomp = spec.security.seccomp_profile()?;
    let mut flags = CONTAINER_NAMESPACES;
    let move_into_cgroup = cgroup.as_ref().is_some_and(ContainerCgroup::needs_move);
    if move_into_cgroup {
        // The child makes its cgroup namespace itself, once it is in its cgroups.
        flags &= !(libc::CLONE_NEWCGROUP as u64);
    }
    if !net_source.with_clone() {
        flags &= !(libc::CLONE_NEWNET as u64);
    }
    if spec.id_mapping.is_some() {
        flags |= libc::CLONE_NEWUSER as u64;
    }
    let in_other_network = network::enter_for_clone(&spec.network)?;
    let clone_cgroup = cgroup.as_ref().and_then(ContainerCgroup::clone_target);
    let child = match namespaces::clone_into_namespaces(flags, clone_cgroup) {
        Ok(CloneResult::Child) => {
            drop(go_write);
            drop(status_read);
            let pty_end = pty_channel.map(|(_, container_end)| container_end);
            container_main(
                spec,
                launcher,
                Channels {
                    go: go_read,
                    status: status_write,
                    pty: pty_end,
                },
                idmapped_image,
                &name_files,
                &command_mask,
                Confinement {
                    own_cgroup_namespace: move_into_cgroup,
                    seccomp,
                },
            )
        }
        Ok(CloneResult::Parent(pid)) => {
            read_only_exe::let_go();
            pid
        }
        Err(e) if spec.id_mapping.is_some() => return Err(userns::explain_clone_failure(e)),
        Err(e) => return Err(e),
    };
    drop(in_other_network);
    drop(go_read);
    drop(status_write);

    if let Some(mapping) = &spec.id_mapping {
        let mapped = mapping
            .write_for(child)
            .and_then(|()| match &idmapped_image {
                Some(tree) => rootfs::idmapped_copy(tree, child),
                None => Ok(()),
            });
        if let Err(e) = mapped {
            kill_and_reap(child);
            return Err(e);
        }
    }
    drop(idmapped_image);
    let moved = match &cgroup {
        Some(cgroup) if move_into_cgroup => cgroup.add(child),
        _ => Ok(()),
    };
    if let Err(e) = moved {
        kill_and_reap(child);
        return Err(e);
    }
    init::let_container_go_on(&go_write);
    // The launcher's network namespace is made in parallel with the container's mounts,
    // so on another CPU than its; the launcher's CPUs are restored once the container
    // has its go-ahead, not before.
    let elsewhere = match net_source {
        NamespaceSource::Launcher => cpu_spread::move_off_current_cpu(),
        _ => None,
    };
    let bridged = match (net_source, bridge_reservation) {
        (NamespaceSource::Launcher, _) => network::create_for_container().map(|()| None),
        (NamespaceSource::CloneThenBridge, Some(reserved)) => {
            network::bridge::attach(reserved, child, &spec.network.ports).map(Some)
        }
        _ => Ok(None),
    };
    // Held until the container ends: its drop takes the container off the bridge.
    let _bridge_attachment = match bridged {
        Ok(attachment) => attachment,
        Err(e) => {
            kill_and_reap(child);
            return Err(e);
        }
    };
    if net_source.launcher_prepares() {
        init::let_container_go_on(&go_write);
    }
    drop(go_write);
    drop(elsewhere);

    let code = match pty_channel {
        Some((launcher_end, container_end)) => {
            drop(container_end);
            match pty::receive_fd(&launcher_end)? {
                Some(master) => pty::relay(master, child, &status_read)?,
                // The container failed before making its pty; it said why.
                None => wait_for_exit_status(child, &status_read, &command_mask),
            }
        }
        None => wait_for_exit_status(child, &status_read, &command_mask),
    };
    init::set_mask(&command_mask);
    Ok(match cgroup {
        Some(cgroup) if cgroup.oom_kills() > 0 => {
            let limit = spec.limits.memory_bytes.unwrap_or(0) >> 20;
            eprintln!(
                "launch: the container went over its memory limit (--memory {limit}M) and the kernel's OOM killer ended it"
            );
            process::EXIT_OOM_KILLED
        }
        _ => code,
    })
}

/// What confines the container besides its namespaces, decided by the launcher.
struct Confinement {
    /// The launcher moves it into its cgroups before the go-ahead; it makes its cgroup
    /// namespace itself after.
    own_cgroup_namespace: bool,
    /// The filter init installs once the setup is done, before the command exists.
    seccomp: Option<SeccompProfile>,
}

/// The launcher, as the container's setup knows it: its PID (whose network namespace
/// it may join) and the pipe its go-aheads come through.
struct Launcher {
    pid: libc::pid_t,
    go: OwnedFd,
}

/// The container's ends of the pipes to the launcher.
struct Channels {
    /// The launcher's go-aheads.
    go: OwnedFd,
    /// Where init reports the command's exit status.
    status: OwnedFd,
    /// Where the pty's master end goes, for an interactive container.
    pty: Option<OwnedFd>,
}

/// The container's first process (PID 1 inside): sets the container up, then becomes
/// its init. A setup failure is reported in one line and ends the launch with 125.
fn container_main(
    spec: &ContainerSpec,
    launcher: libc::pid_t,
    channels: Channels,
    idmapped_image: Option<OwnedFd>,
    name_files: &NameFiles,
    command_mask: &libc::sigset_t,
    confinement: Confinement,
) -> ! {
    let Channels { go, status, pty } = channels;
    security::hide_host_command_line_and_environment(b"launch-init");
    let ready = set_up(
        spec,
        Launcher { pid: launcher, go },
        status.as_raw_fd(),
        pty,
        idmapped_image,
        name_files,
        confinement.own_cgroup_namespace,
    )
    // In the new root now: the command may execute files beneath it and nothing else.
    .and_then(|terminal| Ok((terminal, landlock::ExecInsideRoot::new()?)));
    match ready {
        Ok((terminal, exec_inside_root)) => init::run(
            &spec.command,
            terminal,
            status,
            command_mask,
            BeforeExec {
                exec_inside_root,
                seccomp: confinement.seccomp,
            },
        ),
        Err(e) => {
            eprintln!("launch: {e}");
            // SAFETY: leaving the forked child without running the parent's cleanup.
            unsafe { libc::_exit(EXIT_LAUNCH_FAILED) }
        }
    }
}

/// Everything between the clone and the command, in kernel order. Returns the pty's
/// slave end for an interactive container. The seccomp filter comes later still, in
/// init itself once the setup is done, and the command's process inherits it (see
/// [`crate::init`]).
fn set_up(
    spec: &ContainerSpec,
    launcher: Launcher,
    status: RawFd,
    pty_channel: Option<OwnedFd>,
    idmapped_image: Option<OwnedFd>,
    name_files: &NameFiles,
    own_cgroup_namespace: bool,
) -> Result<Option<OwnedFd>, LaunchError> {
    let Launcher { pid: launcher, go } = launcher;
    let in_userns = spec.id_mapping.is_some();
    let net_source = spec.network.source(in_userns);
    // 1. Die with the launcher; wait until it has written our uid/gid maps. A session
    // of our own: signals from the user's terminal go to the launcher alone, which
    // passes them on once.
    // SAFETY: setsid cannot fail here (the clone is no group leader).
    unsafe { libc::setsid() };
    init::tie_to_launcher(&go)?;
    // In its cgroup now: a cgroup namespace rooted there hides the host's tree.
    if own_cgroup_namespace {
        cgroup::enter_own_namespace()?;
    }
    if in_userns {
        userns::become_root_inside()?;
    }
    // Modes below are given exactly (device nodes 0666, /tmp 1777).
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0) };

    // 2. Mounts, all in our own mount namespace, none propagating to the host.
    rootfs::make_mounts_private()?;
    let layer = WritableLayer::mount(
        in_userns,
        spec.storage.writable_layer,
        &mount_points(spec),
        idmapped_image,
    )?;
    let root = &layer.root;
    let hidden = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // proc and sysfs are mounted before pivot_root, while the host's are still visible:
    // in a user namespace the kernel only allows them when a full instance is.
    rootfs::mount_fresh(root, "/proc", c"proc", hidden, None)?;
    devices::populate(root, in_userns, spec.storage.shm)?;
    etc_files::install(&layer.scratch, root, &spec.hostname, name_files)?;
    for volume in &spec.volumes {
        rootfs::bind(
            root,
            &volume.host,
            &volume.container,
            volume.mount_point,
            volume.read_only,
        )?;
    }
    for mount in &spec.tmpfs {
        let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
        if mount.read_only {
            flags |= libc::MS_RDONLY;
        }
        if !mount.exec {
            flags |= libc::MS_NOEXEC;
        }
        // Sized in the spec: the writable layer's bound unless the flag said.
        let size = mount.size.unwrap_or(spec.storage.writable_layer);
        let data = storage::tmpfs_data(size, mount.mode);
        rootfs::mount_fresh(root, &mount.path, c"tmpfs", flags, Some(&data))?;
    }

    // 3. The network namespace: joined now if the launcher made it; a bridged one is
    // ready once the launcher says so. sysfs comes after, as it shows the network
    // devices of the namespace that mounts it.
    if net_source.launcher_prepares() {
        init::wait_for_launcher(&go);
    }
    if net_source == NamespaceSource::Launcher {
        network::join_launchers(launcher)?;
    }
    drop(go);
    mount_sysfs(root, in_userns)?;

    // 4. Into the new root; the host's tree is detached and out of reach.
    rootfs::pivot_into(root)?;
    drop(layer);
    // No descriptor on a host path may outlive this point: the image tree (our fd
    // for it, and the launcher's), the cache's lock, the read-only mount of the
    // launcher's binary. Only the pipes back to the launcher stay.
    let channels: Vec<RawFd> = [Some(status), pty_channel.as_ref().map(AsRawFd::as_raw_fd)]
        .into_iter()
        .flatten()
        .collect();
    security::close_fds_except(&channels);
    // The kernel's memory, keys, timers and settings out of sight and out of reach.
    masked_paths::close_off()?;
    // Only nodes bound from the host can be other than the ones made here.
    if in_userns {
        devices::verify()?;
    }
    // A working directory the image lacks is made, as docker and runc do: root's, 0755,
    // in the writable layer (so before the root may turn read-only). The path is the
    // image's or the user's: it is resolved inside the new root, never through a
    // symlink, `..` or /proc magic link that leads out. A failure is left to the
    // command's chdir, which reports it.
    if spec.command.workdir != "/" {
        let _ = rootfs::make_dir_in_root(&spec.command.workdir);
    }
    if spec.read_only {
        rootfs::keep_writable()?;
        rootfs::make_root_read_only()?;
    }

    // 5. UTS (our own name); in a user namespace, the network's loopback comes up here.
    nix::unistd::sethostname(&spec.hostname)
        .map_err(|e| LaunchError::setup("sethostname", e.into()))?;
    if net_source == NamespaceSource::Clone {
        network::bring_up_loopback()?;
    }

    // 6. The pty, from the container's own devpts; its master end goes to the launcher.
    let terminal = match pty_channel {
        Some(channel) => {
            let (master, slave) = pty::open_pair()?;
            pty::send_fd(&channel, &master)?;
            Some(slave)
        }
        None => None,
    };

    // 7. Privileges, last: no exec may gain any, and root keeps a small set.
    spec.security.restrict()?;
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0o022) };
    Ok(terminal)
}

/// Every path the setup mounts on, in the container.
fn mount_points(spec: &ContainerSpec) -> Vec<(&str, MountPoint)> {
    let fixed = ["/proc", "/sys", "/dev"].map(|p| (p, MountPoint::Dir));
    // /tmp is made when the image lacks it; with --read-only all the scratch
    // directories are, to stay writable.
    let scratch = match spec.read_only {
        true => &rootfs::SCRATCH_DIRS[..],
        false => &rootfs::SCRATCH_DIRS[..1],
    };
    let volumes = spec
        .volumes
        .iter()
        .map(|v| (v.container.as_str(), v.mount_point));
    let tmpfs = spec
        .tmpfs
        .iter()
        .map(|m| (m.path.as_str(), MountPoint::Dir));
    fixed
        .into_iter()
        .chain(scratch.iter().copied())
        .chain(etc_files::MOUNT_POINTS)
        .chain(volumes)
        .chain(tmpfs)
        .collect()
}

/// `/sys`, read-only. A fresh sysfs shows only the container's network devices. In a
/// user namespace that does not own the network namespace (rootless `--net host`) the
/// kernel refuses one with EPERM, and only then is the host's bound read-only: any other
/// failure is an error, not a reason to show the host's devices.
fn mount_sysfs(root: &OwnedFd, in_user_namespace: bool) -> Result<(), LaunchError> {
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    match rootfs::mount_fresh(root, "/sys", c"sysfs", flags, None) {
        Err(LaunchError::Setup { source, .. })
            if in_user_namespace && source.raw_os_error() == Some(libc::EPERM) =>
        {
            rootfs::bind(
                root,
                std::path::Path::new("/sys"),
                "/sys",
                MountPoint::Dir,
                true,
            )
        }
        other => other,
    }
}

/// Waits for the command's exit status from the container's init, forwarding the
/// launcher's signals to it meanwhile. If init dies without a word (killed, or setup
/// failed and said why), its own exit status is the answer.
fn wait_for_exit_status(child: libc::pid_t, status: &OwnedFd, mask: &libc::sigset_t) -> i32 {
    init::forward_signals_to(child);
    init::set_mask(mask);
    match init::read_exit_status(status) {
        Some(code) => code,
        None => {
            let mut wait_status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(child, &mut wait_status, 0) };
            process::exit_code(wait_status)
        }
    }
}

fn kill_and_reap(child: libc::pid_t) {
    // SAFETY: our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
}

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), LaunchError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| LaunchError::setup("pipe2", e.into()))
}

fn socket_pair() -> Result<(OwnedFd, OwnedFd), LaunchError> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| LaunchError::setup("socketpair", e.into()))
}
