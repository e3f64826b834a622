//! The command: who it runs as, where, with what environment, and how its end becomes
//! the launcher's exit status (docker's conventions).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use crate::error::LaunchError;
use crate::security;

/// The launcher itself failed (bad option, broken image, a setup step).
pub const EXIT_LAUNCH_FAILED: i32 = 125;
/// The command exists but cannot be run (not executable, bad format).
pub const EXIT_CANNOT_RUN: i32 = 126;
/// The command does not exist.
pub const EXIT_NOT_FOUND: i32 = 127;

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

/// Runs in the command's own process: switches user and directory, closes inherited
/// fds and execs. Never returns; when exec fails the process exits 126 or 127.
pub fn exec(command: &Command) -> ! {
    let fail = |code: i32, message: String| -> ! {
        eprintln!("launch: {message}");
        // SAFETY: _exit in a forked child, skipping the parent's atexit state.
        unsafe { libc::_exit(code) }
    };
    let Some(program) = command.argv.first() else {
        fail(EXIT_LAUNCH_FAILED, "no command to run".to_string())
    };
    if let Some(user) = command.user {
        if let Err(e) = switch_user(user) {
            fail(EXIT_LAUNCH_FAILED, e.to_string());
        }
    }
    let workdir = CString::new(command.workdir.as_str()).unwrap_or_default();
    // SAFETY: valid C string. The path is resolved after pivot_root, inside the container.
    if unsafe { libc::chdir(workdir.as_ptr()) } < 0 {
        let e = std::io::Error::last_os_error();
        fail(
            EXIT_LAUNCH_FAILED,
            format!("--workdir {}: {e}", command.workdir),
        );
    }
    let path_var = command
        .env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let Some(resolved) = find_program(program, path_var) else {
        fail(EXIT_NOT_FOUND, format!("{program}: command not found"))
    };
    let to_c = |items: &[String]| -> Vec<CString> {
        items
            .iter()
            .map(|s| CString::new(s.as_str()).unwrap_or_default())
            .collect()
    };
    let argv = to_c(&command.argv);
    let env = to_c(&command.env);
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|s| s.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    security::close_inherited_fds();
    // SAFETY: null-terminated arrays of valid C strings, alive across the call.
    unsafe { libc::execve(resolved.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr()) };
    let e = std::io::Error::last_os_error();
    let code = match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => EXIT_NOT_FOUND,
        _ => EXIT_CANNOT_RUN,
    };
    fail(code, format!("{program}: {e}"))
}

/// The PATH used when neither the image nor the user sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Finds `program` like execvp: a name with a `/` is used as is, otherwise the first
/// executable regular file of that name in `path_var`.
fn find_program(program: &str, path_var: &str) -> Option<CString> {
    if program.contains('/') {
        return CString::new(program).ok();
    }
    path_var
        .split(':')
        .filter(|dir| !dir.is_empty())
        .find_map(|dir| {
            let candidate = std::path::Path::new(dir).join(program);
            let c = CString::new(candidate.as_os_str().as_bytes()).ok()?;
            // SAFETY: valid C string.
            let executable = unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0;
            (executable && candidate.is_file()).then_some(c)
        })
}

fn switch_user(user: User) -> Result<(), LaunchError> {
    let fail = |what: String| LaunchError::setup(what, std::io::Error::last_os_error());
    // SAFETY: plain syscalls. setgroups is denied in a user namespace (by design); the
    // supplementary groups then stay what the namespace gave (none mapped).
    unsafe {
        if libc::setgroups(1, &user.gid) < 0
            && std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM)
        {
            return Err(fail(format!("--user: setting groups to {}", user.gid)));
        }
        if libc::setgid(user.gid) < 0 {
            return Err(fail(format!("--user: switching to gid {}", user.gid)));
        }
        if libc::setuid(user.uid) < 0 {
            return Err(fail(format!("--user: switching to uid {}", user.uid)));
        }
    }
    Ok(())
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
    fn exit_codes_follow_docker() {
        // A wait status for exit(42) is 42 << 8; for death by signal 9 it is 9.
        assert_eq!(exit_code(42 << 8), 42);
        assert_eq!(exit_code(9), 137);
    }

    #[test]
    fn programs_are_found_on_path() {
        assert_eq!(
            find_program("/x/y", "/bin").unwrap().to_str().unwrap(),
            "/x/y"
        );
        assert!(find_program("sh", "/nonexistent:/bin").is_some());
        assert!(find_program("no-such-program-here", "/bin").is_none());
    }
}
