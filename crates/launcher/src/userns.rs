//! The user namespace: who root inside the container is outside it.
//!
//! Rootless, the caller's own uid and gid become root inside (the only mapping an
//! unprivileged process may write). As root with `--userns`, root inside becomes an
//! unprivileged range outside, so a process escaping the container owns nothing.

use std::fs;
use std::io;

use crate::error::LaunchError;

/// One contiguous mapping of ids: `inside..inside+count` is `outside..outside+count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The uid and gid maps written for a container's user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapping {
    pub uids: IdRange,
    pub gids: IdRange,
}

/// The range used for root's `--userns` when /etc/subuid has no entry for root.
const DEFAULT_SUBORDINATE_RANGE: IdRange = IdRange {
    inside: 0,
    outside: 100_000,
    count: 65_536,
};

impl IdMapping {
    /// The caller mapped to root: the one mapping an unprivileged process may write.
    pub fn caller_as_root() -> IdMapping {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        IdMapping {
            uids: IdRange {
                inside: 0,
                outside: uid,
                count: 1,
            },
            gids: IdRange {
                inside: 0,
                outside: gid,
                count: 1,
            },
        }
    }

    /// Root inside mapped to root's subordinate range (/etc/subuid, /etc/subgid), or to
    /// 100000-165535 when none is listed.
    pub fn subordinate_range() -> IdMapping {
        IdMapping {
            uids: subordinate_range_of_root("/etc/subuid").unwrap_or(DEFAULT_SUBORDINATE_RANGE),
            gids: subordinate_range_of_root("/etc/subgid").unwrap_or(DEFAULT_SUBORDINATE_RANGE),
        }
    }

    /// Writes the maps of the child `pid`. `setgroups` is denied first: an unprivileged
    /// caller must do so to write a gid map, and it stops a process inside from dropping
    /// a group that denies it access to a file.
    pub fn write_for(&self, pid: libc::pid_t) -> Result<(), LaunchError> {
        let write = |file: &str, content: String| {
            let path = format!("/proc/{pid}/{file}");
            fs::write(&path, content).map_err(|e| LaunchError::setup(format!("writing {path}"), e))
        };
        write("setgroups", "deny".to_string())?;
        write("uid_map", map_line(self.uids))?;
        write("gid_map", map_line(self.gids))
    }
}

/// In the container, once the maps are written: takes uid and gid 0 of the new
/// namespace. Rootless the caller is that already; as root with `--userns` the process
/// is still the host's root (unmapped inside) until it does this.
pub fn become_root_inside() -> Result<(), LaunchError> {
    // SAFETY: plain syscalls.
    unsafe {
        if libc::setresgid(0, 0, 0) < 0 || libc::setresuid(0, 0, 0) < 0 {
            return Err(LaunchError::setup(
                "becoming root in the user namespace",
                io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

fn map_line(range: IdRange) -> String {
    format!("{} {} {}\n", range.inside, range.outside, range.count)
}

fn subordinate_range_of_root(file: &str) -> Option<IdRange> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        if name != "root" && name != "0" {
            return None;
        }
        Some(IdRange {
            inside: 0,
            outside: fields.next()?.trim().parse().ok()?,
            count: fields.next()?.trim().parse().ok()?,
        })
    })
}

/// Explains a failed clone with CLONE_NEWUSER: when the kernel refused and its
/// settings forbid unprivileged user namespaces, says which one; otherwise passes the
/// error on.
pub fn explain_clone_failure(error: LaunchError) -> LaunchError {
    let refused = matches!(&error, LaunchError::Setup { source, .. }
        if matches!(source.raw_os_error(), Some(libc::EPERM | libc::ENOSPC | libc::EUSERS)));
    let forbids = |path: &str, forbidden: &str| {
        fs::read_to_string(path)
            .map(|v| v.trim() == forbidden)
            .unwrap_or(false)
    };
    let setting = if !refused {
        return error;
    } else if forbids("/proc/sys/kernel/unprivileged_userns_clone", "0") {
        "kernel.unprivileged_userns_clone = 0"
    } else if forbids("/proc/sys/user/max_user_namespaces", "0") {
        "user.max_user_namespaces = 0"
    } else if forbids(
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1",
    ) {
        "kernel.apparmor_restrict_unprivileged_userns = 1"
    } else {
        return error;
    };
    LaunchError::UserNamespacesForbidden {
        setting: setting.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_lines_are_inside_outside_count() {
        let range = IdRange {
            inside: 0,
            outside: 1000,
            count: 1,
        };
        assert_eq!(map_line(range), "0 1000 1\n");
    }
}
