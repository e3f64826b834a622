//! Landlock: the container's processes may execute only files inside the container's
//! root. This closes the CVE-2019-5736 path for good where the kernel has Landlock
//! (5.13 and later, when enabled): the host's `launch` binary, reachable as
//! /proc/self/exe while the command is being exec'd (directly, or as a script's
//! `#!/proc/self/exe`, or as an ELF interpreter), lies outside the root and cannot be
//! run, so no code of the image ever runs in a process whose /proc/self/exe is that
//! binary. It also keeps a leaked host fd from being executed. Nothing else is
//! restricted: only the execute right is handled, and the right to move and link files
//! between directories (REFER) is granted everywhere beneath the root.
//!
//! REFER is why Landlock ABI 2 (Linux 5.19) is needed: it is the one right every ruleset
//! denies by default, handled or not, and a ruleset that does not grant it turns every
//! rename or link into another directory into EXDEV (`apt-get update`, dpkg, pip and git
//! all stage files in one directory and move them into another). ABI 1 cannot grant
//! it, so there Landlock is not used at all.
//!
//! Where Landlock is missing (or only ABI 1) the launcher falls back on running from a
//! read-only mount of its binary (see [`crate::read_only_exe`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{check, LaunchError};

const LANDLOCK_ACCESS_FS_EXECUTE: u64 = 1 << 0;
const LANDLOCK_ACCESS_FS_REFER: u64 = 1 << 13;
/// What the ruleset handles and what it grants beneath the root.
const HANDLED_AND_GRANTED: u64 = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_REFER;
/// The first ABI that can grant REFER.
const MIN_ABI: libc::c_long = 2;
const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1 << 0;
const LANDLOCK_RULE_PATH_BENEATH: u32 = 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// Whether the running kernel has a Landlock that can confine execution without
/// breaking renames (ABI 2 or later, see the module doc).
pub fn available() -> bool {
    // SAFETY: the version query takes no attribute.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    abi >= MIN_ABI
}

/// A ruleset allowing execution beneath the current root only, ready to be enforced
/// by the container's init before it starts the command, which inherits it
/// ([`ExecInsideRoot::enforce`]). Built
/// after pivot_root.
pub struct ExecInsideRoot {
    ruleset: OwnedFd,
}

impl ExecInsideRoot {
    /// `None` where the kernel has no Landlock (not built in: ENOSYS; not enabled at
    /// boot: EOPNOTSUPP) or only ABI 1, which does not know REFER (EINVAL). The
    /// ruleset's creation answers that, so the kernel is not asked twice on the
    /// container's way to exec.
    pub fn new() -> Result<Option<ExecInsideRoot>, LaunchError> {
        let attr = RulesetAttr {
            handled_access_fs: HANDLED_AND_GRANTED,
        };
        // SAFETY: a valid attribute and its size.
        let ruleset = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            )
        };
        if ruleset < 0
            && matches!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)
            )
        {
            return Ok(None);
        }
        let ruleset = check(ruleset, || "creating the Landlock ruleset".into())?;
        // SAFETY: a new fd that we own.
        let ruleset = unsafe { OwnedFd::from_raw_fd(ruleset as RawFd) };
        // SAFETY: valid C string.
        let root = unsafe { libc::open(c"/".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        let root = check(root.into(), || "opening the container's root".into())?;
        // SAFETY: a new fd that we own.
        let root = unsafe { OwnedFd::from_raw_fd(root as RawFd) };
        let rule = PathBeneathAttr {
            allowed_access: HANDLED_AND_GRANTED,
            parent_fd: root.as_raw_fd(),
        };
        // SAFETY: valid fds and rule.
        let added = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset.as_raw_fd(),
                LANDLOCK_RULE_PATH_BENEATH,
                &rule as *const PathBeneathAttr,
                0u32,
            )
        };
        check(added, || "adding the Landlock rule".into())?;
        Ok(Some(ExecInsideRoot { ruleset }))
    }

    /// Enforces the ruleset on the calling thread (needs no_new_privs); the errno on
    /// failure.
    pub fn enforce(&self) -> Result<(), libc::c_int> {
        // SAFETY: a valid ruleset fd.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_landlock_restrict_self,
                self.ruleset.as_raw_fd(),
                0u32,
            )
        };
        if ret < 0 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL));
        }
        Ok(())
    }
}
