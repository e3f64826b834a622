//! Creating the container's process: one clone3 call with the namespace flags at once,
//! so the kernel builds them in a single step (no unshare-then-fork chain). Only the
//! network namespace may come separately, made by the launcher in parallel (see
//! [`crate::network`]).

use std::os::fd::RawFd;

use mkroot_common::clone3::{fork_into_namespaces, ForkError, ForkOptions, Forked};

use crate::error::LaunchError;

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

/// Forks into new namespaces (see [`mkroot_common::clone3`]: refused while the launcher
/// runs another thread). `cgroup`, a cgroup v2 directory's fd, is where the child
/// starts.
pub fn clone_into_namespaces(
    flags: u64,
    cgroup: Option<RawFd>,
) -> Result<CloneResult, LaunchError> {
    let options = ForkOptions {
        flags,
        cgroup,
        pidfd: false,
    };
    match fork_into_namespaces(options) {
        Ok(Forked::Child) => Ok(CloneResult::Child),
        Ok(Forked::Parent { pid, .. }) => Ok(CloneResult::Parent(pid)),
        Err(ForkError::Clone(e)) => Err(LaunchError::setup("clone3 into new namespaces", e)),
        Err(e) => Err(LaunchError::Fork(e)),
    }
}
