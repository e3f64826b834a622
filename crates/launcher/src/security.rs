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

/// What init applies last, before it starts the command: the Landlock rule
/// (execute only inside the root) and the seccomp filter. Built before the clone, while
/// the launcher still sees the kernel's answers to its probes.
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

/// Closes every fd above stderr but `keep`: in the container's init once it is in the
/// new root, so that no descriptor the launcher had open (the image tree, the cache's
/// lock, the read-only mount of its binary) survives into the container, where a
/// process allowed to trace init could reach the host's tree through /proc/1/fd.
pub fn close_fds_except(keep: &[std::os::fd::RawFd]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .collect();
    keep.sort_unstable();
    let mut first = 3u32;
    for fd in keep.into_iter().filter(|&fd| fd >= 3) {
        if fd > first {
            // SAFETY: plain syscall; the range holds no fd this process still uses.
            unsafe { libc::syscall(libc::SYS_close_range, first, fd - 1, 0u32) };
        }
        first = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
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

/// Replaces this process's command line, as `/proc/<pid>/cmdline` shows it, with `name`,
/// and blanks its environment, as `/proc/<pid>/environ` shows it: the container's init is
/// the launcher, whose arguments name host paths (the binary, the image, the cache) and
/// whose environment is the host user's (tokens included), none of which the container
/// has any business seeing, even with CAP_SYS_PTRACE. The kernel reads both from the
/// process's own memory: the argument strings it copied one after another at exec
/// (arg_start..arg_end), the environment strings right after them (env_start..env_end).
/// The arguments start at `argv[0]`, which glibc keeps in `program_invocation_name`; both
/// areas are overwritten in place. (Reading the bounds from /proc/self/stat instead
/// costs a file read on the container's critical path.) Nothing of the launcher reads
/// its environment after the clone: the command's was merged before.
pub fn hide_host_command_line_and_environment(name: &[u8]) {
    // The same name in /proc/PID/comm (top, pgrep) as in the command line (ps).
    if let Ok(comm) = std::ffi::CString::new(name) {
        // SAFETY: a NUL-terminated name; the kernel copies at most 15 bytes of it.
        unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr(), 0, 0, 0) };
    }
    extern "C" {
        /// argv[0] as the kernel passed it (glibc and musl set it at startup).
        static program_invocation_name: *mut libc::c_char;
        static environ: *const *const libc::c_char;
    }
    // SAFETY: set once by libc before main, never written since.
    let start = unsafe { program_invocation_name }.cast::<u8>();
    if start.is_null() {
        return;
    }
    // SAFETY: `start` is argv[0] in the kernel's area of NUL-terminated strings.
    let Some(len) = (unsafe { argument_area_len(start, std::env::args_os()) }) else {
        return;
    };
    if name.len() >= len {
        return;
    }
    // SAFETY: the environment area starts right after the arguments' (the kernel lays
    // them out so); `environ` is libc's NULL-terminated array of environment strings.
    let env_len = unsafe { environment_area_len(start.add(len), environ) };
    // SAFETY: start..start+len is this process's own argument area (on its stack),
    // checked to hold exactly its arguments, which nothing reads any more: they were
    // parsed long ago; the environment area after it holds only the strings `environ`
    // points at.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start, len + env_len);
        area.fill(0);
        area[..name.len()].copy_from_slice(name);
    }
}

/// How far the environment strings that the kernel laid out from `env_start` reach:
/// the end of the furthest of `environ`'s strings within the largest area exec takes.
/// Strings a program set later live on the heap, far from it, and are not counted.
///
/// # Safety
/// `environ` must be NULL or a NULL-terminated array of NUL-terminated strings.
unsafe fn environment_area_len(env_start: *const u8, environ: *const *const libc::c_char) -> usize {
    // exec refuses arguments and environment together larger than this (ARG_MAX's
    // ceiling: a quarter of the 8 MiB default stack limit, at most 6 MiB with a larger
    // one): nothing beyond it was laid out by the kernel.
    const MOST_EXEC_TAKES: usize = 6 << 20;
    if environ.is_null() {
        return 0;
    }
    let start = env_start as usize;
    let mut end = start;
    let mut entry = environ;
    // SAFETY: walking a NULL-terminated array of C strings (the caller's promise).
    unsafe {
        while !(*entry).is_null() {
            let at = *entry as usize;
            if at >= start && at < start + MOST_EXEC_TAKES {
                end = end.max(at + std::ffi::CStr::from_ptr(*entry).to_bytes().len() + 1);
            }
            entry = entry.add(1);
        }
    }
    end - start
}

/// The length of the argument area starting at `start`: `args`, each with its NUL, one
/// after another. `None` unless the memory there holds exactly those strings, so that
/// nothing but the arguments is ever overwritten.
///
/// # Safety
/// `start` must point at a NUL-terminated string followed, while they match `args`,
/// by further NUL-terminated strings (as the kernel lays out argv and envp).
unsafe fn argument_area_len(
    start: *const u8,
    args: impl Iterator<Item = std::ffi::OsString>,
) -> Option<usize> {
    use std::os::unix::ffi::OsStrExt;
    let mut len = 0;
    for arg in args {
        // SAFETY: a string boundary: `start` itself, or just past a matched string's NUL.
        let here = unsafe { std::ffi::CStr::from_ptr(start.add(len).cast()) };
        if here.to_bytes() != arg.as_bytes() {
            return None;
        }
        len += arg.len() + 1;
    }
    (len > 0).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argument_area_ends_after_the_last_argument() {
        let memory = b"/usr/bin/launch\0img.tgz\0--\0/bin/true\0HOME=/root\0";
        let args = ["/usr/bin/launch", "img.tgz", "--", "/bin/true"].map(Into::into);
        // SAFETY: NUL-terminated strings, as the kernel lays them out.
        let len = unsafe { argument_area_len(memory.as_ptr(), args.into_iter()) };
        assert_eq!(len, Some(37));
        assert_eq!(&memory[36..38], b"\0H");
    }

    #[test]
    fn the_environment_area_ends_after_its_furthest_string() {
        // The kernel's strings at the start; one set later, past the area exec takes.
        let mut memory = vec![0u8; 8 << 20];
        memory[..16].copy_from_slice(b"A=1\0LONG=22\0B=3\0");
        memory[16..21].copy_from_slice(b"after");
        let later = 7 << 20;
        memory[later..later + 4].copy_from_slice(b"X=y\0");
        let base = memory.as_ptr();
        // SAFETY: pointers to NUL-terminated strings inside `memory`.
        let environ: [*const libc::c_char; 5] = unsafe {
            [
                base.add(12).cast(),
                base.cast(),
                base.add(later).cast(),
                base.add(4).cast(),
                std::ptr::null(),
            ]
        };
        // SAFETY: a NULL-terminated array of C strings.
        let len = unsafe { environment_area_len(base, environ.as_ptr()) };
        assert_eq!(len, 16);
        // SAFETY: no environment at all.
        assert_eq!(unsafe { environment_area_len(base, std::ptr::null()) }, 0);
    }

    #[test]
    fn memory_that_does_not_hold_the_arguments_is_left_alone() {
        let memory = b"/usr/bin/launch\0other\0HOME=/root\0";
        let args = ["/usr/bin/launch", "img.tgz"].map(Into::into);
        // SAFETY: NUL-terminated strings.
        let len = unsafe { argument_area_len(memory.as_ptr(), args.into_iter()) };
        assert_eq!(len, None);
        // SAFETY: NUL-terminated strings.
        assert_eq!(
            unsafe { argument_area_len(memory.as_ptr(), std::iter::empty()) },
            None
        );
    }
}
