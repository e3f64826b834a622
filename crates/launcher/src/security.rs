//! Baseline restrictions applied before the command runs: no_new_privs, a small
//! capability set (see [`crate::capabilities`]), the seccomp filter (see
//! [`crate::seccomp`]), lowered rlimits (see [`crate::limits`]), and no inherited file
//! descriptors.

use crate::capabilities::{self, Capability};
use crate::error::LaunchError;
use crate::landlock::ExecInsideRoot;
use crate::limits::Ulimit;
use crate::seccomp::SeccompProfile;

/// The security options of a launch (`--cap-add`, `--cap-drop`, `--security-opt`,
/// `--ulimit`), as parsed from the command line.
#[derive(Debug, Clone, Default)]
pub struct SecurityOptions {
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--security-opt`: `seccomp=unconfined` turns the filter off.
    pub security_opt: Vec<String>,
    pub ulimits: Vec<String>,
}

/// What the container gets: checked and resolved from [`SecurityOptions`].
#[derive(Debug, Clone)]
pub struct SecurityPolicy {
    pub capabilities: Vec<Capability>,
    /// `false` with `--security-opt seccomp=unconfined`.
    pub seccomp: bool,
    pub ulimits: Vec<Ulimit>,
}

impl SecurityOptions {
    pub fn policy(&self) -> Result<SecurityPolicy, LaunchError> {
        let add = capabilities::parse_names("--cap-add", &self.cap_add)?;
        let drop = capabilities::parse_names("--cap-drop", &self.cap_drop)?;
        let mut seccomp = true;
        for opt in &self.security_opt {
            match opt.as_str() {
                "seccomp=unconfined" => seccomp = false,
                "seccomp=default" | "no-new-privileges" | "no-new-privileges=true" => {}
                other => {
                    return Err(LaunchError::Invalid(format!(
                    "--security-opt {other}: unknown; give seccomp=unconfined or seccomp=default"
                )))
                }
            }
        }
        let ulimits = self
            .ulimits
            .iter()
            .map(|u| u.parse::<Ulimit>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SecurityPolicy {
            capabilities: capabilities::container_set(&add, &drop),
            seccomp,
            ulimits,
        })
    }
}

impl SecurityPolicy {
    /// The seccomp filter to install before exec, compiled now (before the command's
    /// process exists); `None` when unconfined.
    pub fn seccomp_profile(&self) -> Result<Option<SeccompProfile>, LaunchError> {
        self.seccomp
            .then(|| SeccompProfile::default_for(&self.capabilities))
            .transpose()
    }

    /// In the container, last step of the setup: rlimits, no_new_privs, capabilities.
    pub fn restrict(&self) -> Result<(), LaunchError> {
        for ulimit in &self.ulimits {
            ulimit.apply()?;
        }
        set_no_new_privs()?;
        capabilities::limit_to(&self.capabilities)
    }
}

/// What the command's process applies last, right before exec: the Landlock rule
/// (execute only inside the root) and the seccomp filter. Built beforehand: that
/// process may not allocate.
#[derive(Default)]
pub struct BeforeExec {
    pub exec_inside_root: Option<ExecInsideRoot>,
    pub seccomp: Option<SeccompProfile>,
}

/// No exec can gain privileges any more (setuid bits and file capabilities ignored).
/// Also what lets an unprivileged process install a seccomp filter.
pub fn set_no_new_privs() -> Result<(), LaunchError> {
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return Err(LaunchError::setup(
            "setting no_new_privs",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Closes every fd above stderr, so no host file (or the launcher's own pipes) reaches
/// the command. Called right before exec.
pub fn close_inherited_fds() {
    // SAFETY: plain syscall; nothing else uses those fds after this point.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
}

/// Whether the working directory is inside the process's root. A directory outside it
/// (a leaked host fd's, CVE-2024-21626) shows in getcwd as "(unreachable)/...", not
/// starting with `/`. Allocation-free, for the command's process before exec.
pub fn cwd_is_inside_root() -> bool {
    let mut buf = [0u8; libc::PATH_MAX as usize];
    // SAFETY: valid buffer and length.
    let ret = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    ret > 0 && buf[0] == b'/'
}
