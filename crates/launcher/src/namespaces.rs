//! Creating the container's process: one clone3 call with the namespace flags at once,
//! so the kernel builds them in a single step (no unshare-then-fork chain). Only the
//! network namespace may come separately, made by the launcher in parallel (see
//! [`crate::network`]).

use std::os::fd::RawFd;

use crate::error::{check, LaunchError};

/// The namespaces every container gets: mount, PID, UTS (hostname), IPC, network and
/// cgroup. The user namespace is added only when one is wanted (see [`crate::userns`]).
pub const CONTAINER_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// Where the calling process is after [`clone_into_namespaces`].
pub enum CloneResult {
    /// In the parent, on the host; the child's PID as the host sees it.
    Parent(libc::pid_t),
    /// In the child: PID 1 of the new PID namespace.
    Child,
}

/// Forks into new namespaces. Like fork(2) (no new stack: the child gets a copy of the
/// address space), so it must be called while the launcher is single-threaded.
/// `cgroup`, a cgroup v2 directory's fd, is where the child starts (CLONE_INTO_CGROUP:
/// no migration afterwards, which costs a global RCU grace period).
pub fn clone_into_namespaces(
    flags: u64,
    cgroup: Option<RawFd>,
) -> Result<CloneResult, LaunchError> {
    let args = CloneArgs {
        flags: flags | cgroup.map_or(0, |_| CLONE_INTO_CGROUP),
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.map_or(0, |fd| fd as u64),
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM and with a null stack behaves like fork(2); the
    // launcher has a single thread at this point.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let pid = check(ret, || "clone3 into new namespaces".to_string())?;
    Ok(if pid == 0 {
        CloneResult::Child
    } else {
        CloneResult::Parent(pid as libc::pid_t)
    })
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of clone3(2), version 2 (up to `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}
