//! The command: who it runs as, where, with what environment, and how its end becomes
//! the launcher's exit status (docker's conventions).

use std::ffi::CString;
use std::os::fd::RawFd;

use crate::error::LaunchError;
use crate::security;

/// The launcher itself failed (bad option, broken image, a setup step).
pub const EXIT_LAUNCH_FAILED: i32 = 125;
/// The command exists but cannot be run (not executable, bad format).
pub const EXIT_CANNOT_RUN: i32 = 126;
/// The command does not exist.
pub const EXIT_NOT_FOUND: i32 = 127;
/// The kernel's OOM killer ended the container (128 + SIGKILL).
pub const EXIT_OOM_KILLED: i32 = 137;

/// `-u UID[:GID]`. The group defaults to the uid's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

impl std::str::FromStr for User {
    type Err = LaunchError;

    fn from_str(spec: &str) -> Result<User, LaunchError> {
        let invalid =
            || LaunchError::Invalid(format!("--user {spec}: give UID or UID:GID (numbers)"));
        let (uid, gid) = match spec.split_once(':') {
            Some((uid, gid)) => (uid, Some(gid)),
            None => (spec, None),
        };
        let uid: u32 = uid.parse().map_err(|_| invalid())?;
        let gid: u32 = gid.map_or(Ok(uid), str::parse).map_err(|_| invalid())?;
        Ok(User { uid, gid })
    }
}

/// Everything needed to exec the command once the container is set up.
#[derive(Debug, Clone)]
pub struct Command {
    pub argv: Vec<String>,
    /// `KEY=VALUE`, already merged (defaults, image, --env-file, -e).
    pub env: Vec<String>,
    pub workdir: String,
    pub user: Option<User>,
}

/// `items` as execve's NULL-terminated array of pointers (valid while `items` lives).
pub(crate) fn pointer_array(items: &[CString]) -> Vec<*const libc::c_char> {
    items
        .iter()
        .map(|s| s.as_ptr())
        .chain([std::ptr::null()])
        .collect()
}

/// The exit status for a child that ended with wait status `status`: its own code, or
/// 128+N when signal N killed it.
pub fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        EXIT_LAUNCH_FAILED
    }
}

/// The command made ready to exec before the process that runs it exists: that process
/// shares init's memory until it execs (as posix_spawn does: no page tables copied, no
/// copy-on-write faults), so it must not allocate. Everything it needs is here.
pub struct PreparedCommand {
    /// Own the strings the pointer arrays point into.
    _argv: Vec<CString>,
    _env: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    env_ptrs: Vec<*const libc::c_char>,
    /// The program as given (when it has a `/`), else each PATH entry joined with it.
    candidates: Vec<CString>,
    workdir: CString,
    user: Option<User>,
    terminal: Option<RawFd>,
    mask: libc::sigset_t,
    /// Messages for the failures, formatted in advance.
    not_found: Vec<u8>,
    cannot_run: Vec<u8>,
    bad_workdir: Vec<u8>,
}

impl PreparedCommand {
    /// `terminal` becomes the command's controlling terminal and stdio; `mask` its
    /// signal mask. The process that runs it inherits init's Landlock domain and
    /// seccomp filter (see [`crate::init`]).
    pub fn new(
        command: &Command,
        terminal: Option<RawFd>,
        mask: libc::sigset_t,
    ) -> PreparedCommand {
        let c = |s: &str| CString::new(s).unwrap_or_default();
        let argv: Vec<CString> = command.argv.iter().map(|a| c(a)).collect();
        let env: Vec<CString> = command.env.iter().map(|e| c(e)).collect();
        let program = command.argv.first().map(String::as_str).unwrap_or("");
        let path_var = command
            .env
            .iter()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        PreparedCommand {
            argv_ptrs: pointer_array(&argv),
            env_ptrs: pointer_array(&env),
            _argv: argv,
            _env: env,
            candidates: candidates(program, path_var),
            workdir: c(&command.workdir),
            user: command.user,
            terminal,
            mask,
            not_found: format!("launch: {program}: command not found\n").into_bytes(),
            cannot_run: format!("launch: {program}: ").into_bytes(),
            bad_workdir: format!("launch: --workdir {}: ", command.workdir).into_bytes(),
        }
    }

    /// Execs the command in this very process (for a command that is an init itself).
    /// Never returns: the command runs, or the process exits 126 or 127.
    pub fn exec_here(&self) -> ! {
        start_command(self as *const PreparedCommand as *mut libc::c_void);
        // SAFETY: start_command only returns by exec or _exit; this is unreachable.
        unsafe { libc::_exit(EXIT_LAUNCH_FAILED) }
    }

    /// Starts the command in a child that shares this process's memory until it execs
    /// (CLONE_VM | CLONE_VFORK: the caller waits meanwhile). Returns its PID.
    ///
    /// The child runs on [`ChildStack`] but shares everything else with this process,
    /// TLS and so `errno` included (no CLONE_SETTLS): it may only make syscalls on what
    /// [`PreparedCommand::new`] made, never allocate or take a lock, and whatever it
    /// writes to `errno` the caller finds there afterwards (and does not read).
    pub fn spawn(&self) -> std::io::Result<libc::pid_t> {
        let stack = ChildStack::new()?;
        // SAFETY: the stack outlives the child's use of it (CLONE_VFORK returns only once
        // the child has exec'd or exited); `start` only reads `self` and makes syscalls.
        let pid = unsafe {
            libc::clone(
                start_command,
                stack.top(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                self as *const PreparedCommand as *mut libc::c_void,
            )
        };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(pid)
    }
}

/// The stack of the command's process between clone and exec: 64 KiB (the child calls
/// a handful of libc functions, none deeply), with an inaccessible guard page below it,
/// so an overflow faults instead of silently writing over the launcher's heap. Mapped
/// anew, not zeroed by hand: the child touches only the top pages it uses.
struct ChildStack {
    base: *mut libc::c_void,
}

impl ChildStack {
    const SIZE: usize = 64 * 1024;
    const GUARD: usize = 4096;

    fn new() -> std::io::Result<ChildStack> {
        let len = Self::GUARD + Self::SIZE;
        // SAFETY: a fresh anonymous mapping, no address hint; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let stack = ChildStack { base };
        // SAFETY: the lowest page of the mapping just made (stacks grow down).
        if unsafe { libc::mprotect(base, Self::GUARD, libc::PROT_NONE) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The initial stack pointer: the mapping's end (page-aligned, so 16-byte aligned).
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, which clone's stack argument is.
        unsafe { self.base.add(Self::GUARD + Self::SIZE) }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, which nothing uses any more.
        unsafe { libc::munmap(self.base, Self::GUARD + Self::SIZE) };
    }
}

/// The command's process, from clone to exec. Only syscalls: no allocation, no locks.
extern "C" fn start_command(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the PreparedCommand that `spawn` passed, alive while we run.
    let p = unsafe { &*(arg as *const PreparedCommand) };
    // SAFETY: syscalls on data prepared for them.
    unsafe {
        libc::sigprocmask(libc::SIG_SETMASK, &p.mask, std::ptr::null_mut());
        // A session of its own: the command cannot reach the launcher's terminal (no
        // TIOCSTI into the host's shell), and with a pty it gets that pty as its own.
        libc::setsid();
        if let Some(tty) = p.terminal {
            libc::ioctl(tty, libc::TIOCSCTTY, 0);
            for target in 0..=2 {
                libc::dup2(tty, target);
            }
        }
        if let Some(user) = p.user {
            // setgroups is denied in a user namespace (by design): the groups stay as
            // the namespace has them.
            let groups_ok = libc::setgroups(1, &user.gid) == 0 || errno() == libc::EPERM;
            if !groups_ok || libc::setgid(user.gid) < 0 || libc::setuid(user.uid) < 0 {
                fail(b"launch: --user: ", errno(), EXIT_LAUNCH_FAILED);
            }
        }
        // Resolved after pivot_root: inside the container.
        if libc::chdir(p.workdir.as_ptr()) < 0 {
            fail(&p.bad_workdir, errno(), EXIT_LAUNCH_FAILED);
        }
        // A working directory outside the root (through a leaked fd) would hand the
        // command the host's tree (CVE-2024-21626).
        if !security::cwd_is_inside_root() {
            fail(&p.bad_workdir, libc::EXDEV, EXIT_LAUNCH_FAILED);
        }
        security::close_inherited_fds();
        // Like execvp: the first candidate that runs wins; a candidate that exists but
        // cannot run is remembered, the search goes on past names that do not exist.
        let mut error = libc::ENOENT;
        let mut refused = None;
        for candidate in &p.candidates {
            libc::execve(
                candidate.as_ptr(),
                p.argv_ptrs.as_ptr(),
                p.env_ptrs.as_ptr(),
            );
            match errno() {
                libc::ENOENT | libc::ENOTDIR => {}
                e => {
                    error = e;
                    refused = Some(candidate);
                }
            }
        }
        if error == libc::ENOENT {
            libc::write(2, p.not_found.as_ptr().cast(), p.not_found.len());
            libc::_exit(EXIT_NOT_FOUND);
        }
        // exec says EACCES for a directory as for a file without x: name the first.
        if error == libc::EACCES && refused.is_some_and(|path| is_directory(path)) {
            error = libc::EISDIR;
        }
        fail(&p.cannot_run, error, EXIT_CANNOT_RUN)
    }
}

/// Writes `prefix`, the error's text and a newline to stderr, and exits with `code`.
/// Allocation-free, for the command's process before exec.
fn fail(prefix: &[u8], error: libc::c_int, code: i32) -> ! {
    // SAFETY: writes from valid buffers; strerror returns a static string for errnos.
    unsafe {
        libc::write(2, prefix.as_ptr().cast(), prefix.len());
        let text = std::ffi::CStr::from_ptr(libc::strerror(error)).to_bytes();
        libc::write(2, text.as_ptr().cast(), text.len());
        libc::write(2, b"\n".as_ptr().cast(), 1);
        libc::_exit(code)
    }
}

/// Whether `path` is a directory. Allocation-free, for the command's process.
fn is_directory(path: &std::ffi::CStr) -> bool {
    // SAFETY: stat is plain data, filled by the kernel; a valid C string.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::stat(path.as_ptr(), &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR
    }
}

fn errno() -> libc::c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Programs that are an init themselves: they reap and pass signals on, so the
/// launcher's init steps aside and lets them be PID 1.
const INITS: [&str; 8] = [
    "init",
    "tini",
    "dumb-init",
    "catatonit",
    "systemd",
    "s6-svscan",
    "runit",
    "openrc-init",
];

impl Command {
    /// Whether the program is an init (by its name, as tini and docker --init decide).
    pub fn is_an_init(&self) -> bool {
        self.argv
            .first()
            .and_then(|p| p.rsplit('/').next())
            .is_some_and(|name| INITS.contains(&name))
    }
}

pub use mkroot_common::manifest::DEFAULT_PATH;

/// Where execvp would look for `program`: the name itself when it has a `/`, else each
/// PATH entry joined with it.
pub(crate) fn candidates(program: &str, path_var: &str) -> Vec<CString> {
    if program.contains('/') {
        return CString::new(program).into_iter().collect();
    }
    if program.is_empty() {
        return Vec::new();
    }
    path_var
        .split(':')
        .filter(|dir| !dir.is_empty())
        .filter_map(|dir| CString::new(format!("{}/{program}", dir.trim_end_matches('/'))).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse() {
        assert_eq!(
            "1000".parse::<User>().unwrap(),
            User {
                uid: 1000,
                gid: 1000
            }
        );
        assert_eq!("5:7".parse::<User>().unwrap(), User { uid: 5, gid: 7 });
        assert!("bob".parse::<User>().is_err());
        assert!("1:".parse::<User>().is_err());
    }

    #[test]
    fn inits_are_known_by_name() {
        let command = |argv: &[&str]| Command {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            workdir: "/".into(),
            user: None,
        };
        assert!(command(&["/sbin/init"]).is_an_init());
        assert!(command(&["tini", "--", "sh"]).is_an_init());
        assert!(!command(&["/bin/sh", "-c", "init"]).is_an_init());
        assert!(!command(&[]).is_an_init());
    }

    #[test]
    fn exit_codes_follow_docker() {
        // A wait status for exit(42) is 42 << 8; for death by signal 9 it is 9.
        assert_eq!(exit_code(42 << 8), 42);
        assert_eq!(exit_code(9), 137);
    }

    #[test]
    fn programs_are_looked_up_like_execvp() {
        let names = |list: Vec<CString>| -> Vec<String> {
            list.into_iter().map(|c| c.into_string().unwrap()).collect()
        };
        assert_eq!(names(candidates("/x/y", "/bin")), ["/x/y"]);
        assert_eq!(
            names(candidates("sh", "/usr/bin/::/bin")),
            ["/usr/bin/sh", "/bin/sh"]
        );
        assert!(candidates("", "/bin").is_empty());
    }

    /// Writes one byte at `offset` from the stack mapping's start in a forked child;
    /// returns the signal that killed it, if one did.
    fn signal_of_writing_at(stack: &ChildStack, offset: usize) -> Option<i32> {
        // SAFETY: the child only writes one byte and exits; the parent waits for it.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                std::ptr::write_volatile(stack.base.cast::<u8>().add(offset), 1);
                libc::_exit(0);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status))
        }
    }

    #[test]
    fn the_child_stack_has_a_guard_page_below_it() {
        let stack = ChildStack::new().unwrap();
        assert_eq!(signal_of_writing_at(&stack, ChildStack::GUARD), None);
        assert_eq!(
            signal_of_writing_at(&stack, ChildStack::GUARD + ChildStack::SIZE - 1),
            None
        );
        // One byte past the bottom of the stack: an overflow.
        assert_eq!(
            signal_of_writing_at(&stack, ChildStack::GUARD - 1),
            Some(libc::SIGSEGV)
        );
        assert_eq!(stack.top() as usize % 16, 0);
    }
}
