//! The process config.json describes, from `start` (or `exec`) to its exec: working
//! directory, limits, user, capability sets, confinement, the program found in the
//! container, and its terminal. Shared by `create` ([`super::container`]) and `exec`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::FileType;
use rustix::termios::Winsize;

use crate::error::LaunchError;
use crate::landlock::ExecInsideRoot;
use crate::process::{self, DEFAULT_PATH};
use crate::rootfs::path_c;
use crate::rootfs::{self, MountPoint};
use crate::runtime::bundle::ProcessConfig;
use crate::runtime::seccomp::SpecFilter;
use crate::{capabilities, pty, security};

use super::container::open_dir;

/// The process's own steps, after `start`: working directory, limits, user, the
/// capability sets, then the confinement (Landlock, seccomp) and exec.
/// Returns only on failure, with what failed.
pub(crate) fn exec_process(
    process: &ProcessConfig,
    program: &CString,
    exec_inside_root: Option<ExecInsideRoot>,
    seccomp: Option<&SpecFilter>,
) -> LaunchError {
    match prepare_and_exec(process, program, exec_inside_root, seccomp) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

pub(super) fn prepare_and_exec(
    process: &ProcessConfig,
    program: &CString,
    exec_inside_root: Option<ExecInsideRoot>,
    seccomp: Option<&SpecFilter>,
) -> Result<std::convert::Infallible, LaunchError> {
    let cwd = path_c(Path::new(&process.cwd))?;
    // SAFETY: valid C string.
    if unsafe { libc::chdir(cwd.as_ptr()) } < 0 {
        return Err(LaunchError::setup(
            format!("process.cwd {}", process.cwd),
            std::io::Error::last_os_error(),
        ));
    }
    // A working directory outside the root (through a leaked fd) would hand the
    // process the host's tree (CVE-2024-21626).
    if !security::cwd_is_inside_root() {
        return Err(LaunchError::Invalid(format!(
            "process.cwd {}: outside the container's root",
            process.cwd
        )));
    }
    for limit in &process.rlimits {
        limit.apply().map_err(|_| {
            LaunchError::setup(
                "error setting rlimit (process.rlimits)",
                std::io::Error::last_os_error(),
            )
        })?;
    }
    if process.no_new_privileges {
        security::set_no_new_privs()?;
    }
    // Confined before the user changes, while the process still has the privilege
    // Landlock and seccomp need without no_new_privs; the calls left (setgroups,
    // setresuid, capset, execve) are ones every profile allows.
    if let Some(rule) = &exec_inside_root {
        rule.enforce().map_err(|e| {
            LaunchError::setup(
                "enforcing the Landlock rule",
                std::io::Error::from_raw_os_error(e),
            )
        })?;
    }
    let caps = &process.capabilities;
    // Without no_new_privs a filter needs CAP_SYS_ADMIN to be installed: then it goes
    // on while the process is still root (and the calls after it, setresuid, capset
    // and execve, are ones every profile allows); with no_new_privs, last.
    if let Some(filter) = seccomp.filter(|_| !process.no_new_privileges) {
        filter.install()?;
    }
    capabilities::drop_bounding_except(&caps.bounding)?;
    switch_user(process)?;
    capabilities::set_exactly(
        &caps.effective,
        &caps.permitted,
        &caps.inheritable,
        &caps.ambient,
    )?;
    if let Some(filter) = seccomp.filter(|_| process.no_new_privileges) {
        filter.install()?;
    }
    if let Some(mask) = process.umask {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask) };
    } else {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(0o022) };
    }
    let argv: Vec<CString> = process
        .args
        .iter()
        .map(|a| CString::new(a.as_str()).unwrap_or_default())
        .collect();
    let env: Vec<CString> = process
        .env
        .iter()
        .map(|e| CString::new(e.as_str()).unwrap_or_default())
        .collect();
    let (argv_ptrs, env_ptrs) = (process::pointer_array(&argv), process::pointer_array(&env));
    // Signals back to their defaults for the process (the runtime ignores SIGPIPE).
    // SAFETY: plain signal disposition change.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // SAFETY: valid, NULL-terminated arrays of C strings.
    unsafe { libc::execve(program.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr()) };
    Err(LaunchError::setup(
        format!("exec {}", program.to_string_lossy()),
        std::io::Error::last_os_error(),
    ))
}

/// process.user: groups, gid, then uid, keeping the capabilities across the change so
/// [`capabilities::set_exactly`] can set them as the spec says.
pub(super) fn switch_user(process: &ProcessConfig) -> Result<(), LaunchError> {
    let fail = |what: &str| LaunchError::setup(what.to_string(), std::io::Error::last_os_error());
    // SAFETY: plain syscalls on valid data.
    unsafe {
        let groups = &process.additional_gids;
        // Denied in a user namespace whose setgroups is "deny": the groups stay.
        if libc::setgroups(groups.len(), groups.as_ptr()) < 0
            && std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM)
        {
            return Err(fail("setgroups (process.user.additionalGids)"));
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
        if libc::setresgid(process.gid, process.gid, process.gid) < 0 {
            return Err(fail("setresgid (process.user.gid)"));
        }
        if libc::setresuid(process.uid, process.uid, process.uid) < 0 {
            return Err(fail("setresuid (process.user.uid)"));
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    Ok(())
}

/// The program, found in the container before `create` returns (as runc does): a
/// missing one fails `create` in one line instead of the container at `start`.
pub(crate) fn find_program(process: &ProcessConfig) -> Result<CString, LaunchError> {
    let program = &process.args[0];
    let path_var = process
        .env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for candidate in process::candidates(program, path_var) {
        let is_program = rustix::fs::stat(&*candidate).is_ok_and(|st| {
            FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_mode & 0o111 != 0
        });
        if is_program {
            return Ok(candidate);
        }
    }
    Err(LaunchError::Invalid(format!(
        "exec: {program:?}: executable file not found in $PATH"
    )))
}

/// A pty from the container's devpts: the master end goes over `socket` (runc's
/// console-socket protocol: one message carrying the fd by SCM_RIGHTS), the slave
/// end becomes stdio and the controlling terminal (and, for the container's own
/// process, /dev/console).
pub(crate) fn attach_terminal(
    socket: &OwnedFd,
    size: Option<(u16, u16)>,
    bind_console: bool,
) -> Result<(), LaunchError> {
    let (master, slave) = pty::open_pair()?;
    if let Some((rows, cols)) = size {
        let winsize = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let _ = rustix::termios::tcsetwinsize(&master, winsize);
    }
    pty::send_fd(socket, &master)?;
    drop(master);
    // SAFETY: plain syscalls on our own fds.
    unsafe {
        if libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) < 0 {
            return Err(LaunchError::setup(
                "making the pty the controlling terminal",
                std::io::Error::last_os_error(),
            ));
        }
        for target in 0..=2 {
            libc::dup2(slave.as_raw_fd(), target);
        }
    }
    if bind_console {
        // The container's /dev/console is its terminal, as runc makes it.
        let root = open_dir(Path::new("/"))?;
        let console = rootfs::mount_point(&root, "/dev/console", MountPoint::File)?;
        rootfs::mount(
            Some(&rootfs::fd_path_c(slave.as_raw_fd())),
            &rootfs::fd_path_c(console.as_raw_fd()),
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(|e| LaunchError::setup("binding the pty on /dev/console", e))?;
    }
    Ok(())
}
