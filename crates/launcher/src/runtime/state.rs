//! What the runtime keeps of a container between its verbs: one directory per container
//! under `--root`, holding `state.json` and, until `start`, the exec fifo the
//! container's process is blocked on. The status is never stored: it is read from the
//! kernel each time (is the process alive, the same one, frozen, still at the fifo).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::LaunchError;
use crate::runtime::cgroups::RuntimeCgroup;

/// The runtime spec version the state and features speak.
pub const OCI_VERSION: &str = "1.2.0";
const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

/// The default `--root`: root's under /run, an ordinary user's under $XDG_RUNTIME_DIR.
pub fn default_root() -> PathBuf {
    if nix::unistd::getuid().is_root() {
        return PathBuf::from("/run/mkroot-launch/runtime");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("mkroot-launch/runtime"),
        _ => PathBuf::from(format!(
            "/tmp/mkroot-launch-{}/runtime",
            nix::unistd::getuid().as_raw()
        )),
    }
}

/// A container's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    /// The container's process, as the host sees it.
    pub pid: libc::pid_t,
    /// Its start time (/proc/PID/stat field 22): a PID reused by another process after
    /// the container's ended is told apart.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339, UTC.
    pub created: String,
    pub owner: u32,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub cgroup: Option<RuntimeCgroup>,
    /// Run by `start` (poststart) and `delete` (poststop).
    #[serde(default)]
    pub poststart: Vec<crate::runtime::bundle::Hook>,
    #[serde(default)]
    pub poststop: Vec<crate::runtime::bundle::Hook>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// The state directory of every container: `--root`.
pub struct StateRoot {
    pub dir: PathBuf,
}

/// A container's state directory.
pub struct ContainerDir {
    pub id: String,
    pub dir: PathBuf,
}

impl StateRoot {
    pub fn new(dir: PathBuf) -> StateRoot {
        StateRoot { dir }
    }

    /// Claims the directory of a new container `id`; runc's wording when it exists.
    pub fn claim(&self, id: &str) -> Result<ContainerDir, LaunchError> {
        check_id(id)?;
        fs::create_dir_all(&self.dir).map_err(|e| {
            LaunchError::setup(
                format!("creating the state directory {}", self.dir.display()),
                e,
            )
        })?;
        let dir = self.dir.join(id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(LaunchError::Invalid(format!(
                    "container with id exists: {id}"
                )))
            }
            Err(e) => return Err(LaunchError::setup(format!("creating {}", dir.display()), e)),
        }
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o711));
        Ok(ContainerDir {
            id: id.to_string(),
            dir,
        })
    }

    /// An existing container's directory; runc's wording when there is none.
    pub fn open(&self, id: &str) -> Result<ContainerDir, LaunchError> {
        check_id(id)?;
        let dir = self.dir.join(id);
        if !dir.join(STATE_FILE).is_file() {
            return Err(LaunchError::Invalid(format!(
                "container does not exist: {id}"
            )));
        }
        Ok(ContainerDir {
            id: id.to_string(),
            dir,
        })
    }

    /// The IDs of every container, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(STATE_FILE).is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }
}

/// An ID names a directory: no `/`, not `.` or `..`, not empty, printable.
fn check_id(id: &str) -> Result<(), LaunchError> {
    let valid = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(LaunchError::Invalid(format!(
            "container id {id:?}: give letters, digits, `.`, `_`, `-` or `+`"
        )))
    }
}

impl ContainerDir {
    pub fn fifo(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    pub fn save(&self, saved: &Saved) -> Result<(), LaunchError> {
        let text = serde_json::to_vec_pretty(saved).expect("plain data");
        let tmp = self.dir.join(".state.json.tmp");
        fs::write(&tmp, text)
            .and_then(|()| fs::rename(&tmp, self.dir.join(STATE_FILE)))
            .map_err(|e| LaunchError::setup(format!("writing {}", self.dir.display()), e))
    }

    pub fn load(&self) -> Result<Saved, LaunchError> {
        let file = self.dir.join(STATE_FILE);
        let text = fs::read(&file)
            .map_err(|e| LaunchError::setup(format!("reading {}", file.display()), e))?;
        serde_json::from_slice(&text).map_err(|e| {
            LaunchError::Invalid(format!(
                "{}: not a state file of launch: {e}",
                file.display()
            ))
        })
    }

    /// The container's status, from the kernel.
    pub fn status(&self, saved: &Saved) -> Status {
        if !is_alive(saved.pid, saved.start_time) {
            return Status::Stopped;
        }
        if self.fifo().exists() {
            return Status::Created;
        }
        if saved.cgroup.as_ref().is_some_and(RuntimeCgroup::is_frozen) {
            return Status::Paused;
        }
        Status::Running
    }

    pub fn remove(self) -> Result<(), LaunchError> {
        fs::remove_dir_all(&self.dir)
            .map_err(|e| LaunchError::setup(format!("removing {}", self.dir.display()), e))
    }
}

/// The runtime spec's state: what `state` prints and hooks read on stdin.
pub fn spec_state(saved: &Saved, status: Status) -> serde_json::Value {
    let mut state = serde_json::json!({
        "ociVersion": OCI_VERSION,
        "id": saved.id,
        "status": status.as_str(),
        "bundle": saved.bundle,
        "rootfs": saved.rootfs,
        "created": saved.created,
        "owner": "",
    });
    if status != Status::Stopped {
        state["pid"] = serde_json::json!(saved.pid);
    } else {
        state["pid"] = serde_json::json!(0);
    }
    if !saved.annotations.is_empty() {
        state["annotations"] = serde_json::json!(saved.annotations);
    }
    state
}

/// Whether `pid` is alive (not a zombie) and the process that started at `start_time`.
pub fn is_alive(pid: libc::pid_t, start_time: u64) -> bool {
    match process_stat(pid) {
        Some((state, started)) => !matches!(state, 'Z' | 'X') && started == start_time,
        None => false,
    }
}

/// (state letter, start time) of /proc/PID/stat.
pub fn process_stat(pid: libc::pid_t) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from the last `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some((state, start_time))
}

/// Now, as RFC 3339 in UTC with nanoseconds (the form runc writes).
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Runs `hooks` in order with the state on stdin; the first failure is the error.
pub fn run_hooks(
    kind: &str,
    hooks: &[crate::runtime::bundle::Hook],
    state: &serde_json::Value,
) -> Result<(), LaunchError> {
    use std::io::Write;
    for hook in hooks {
        let mut command = std::process::Command::new(&hook.path);
        if let Some((first, rest)) = hook.args.split_first() {
            use std::os::unix::process::CommandExt;
            command.arg0(first).args(rest);
        }
        command
            .env_clear()
            .envs(hook.env.iter().filter_map(|e| e.split_once('=')));
        command.stdin(std::process::Stdio::piped());
        let failed = |e: io::Error| {
            LaunchError::setup(
                format!("running the {kind} hook {}", hook.path.display()),
                e,
            )
        };
        let mut child = command.spawn().map_err(failed)?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(state.to_string().as_bytes());
        }
        let deadline = hook
            .timeout
            .filter(|&t| t > 0)
            .map(|t| std::time::Instant::now() + std::time::Duration::from_secs(t as u64));
        let status = loop {
            if let Some(status) = child.try_wait().map_err(failed)? {
                break status;
            }
            if deadline.is_some_and(|d| std::time::Instant::now() > d) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LaunchError::Invalid(format!(
                    "the {kind} hook {} timed out",
                    hook.path.display()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        if !status.success() {
            return Err(LaunchError::Invalid(format!(
                "the {kind} hook {} failed: {status}",
                hook.path.display()
            )));
        }
    }
    Ok(())
}

/// Writes `pid` to `file` (`--pid-file`) atomically: the engine may be watching for it.
pub fn write_pid_file(file: &Path, pid: libc::pid_t) -> Result<(), LaunchError> {
    let tmp = file.with_file_name(format!(
        ".{}.tmp",
        file.file_name().and_then(|n| n.to_str()).unwrap_or("pid")
    ));
    fs::write(&tmp, pid.to_string())
        .and_then(|()| fs::rename(&tmp, file))
        .map_err(|e| LaunchError::setup(format!("writing --pid-file {}", file.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_are_not_one_directory_name_are_refused() {
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_id("c1-abc_1.2+x").is_ok());
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_424), (2025, 12, 2));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn our_own_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = nix::unistd::getpid().as_raw();
        let (_, started) = process_stat(pid).unwrap();
        assert!(is_alive(pid, started));
        assert!(!is_alive(pid, started + 1));
    }
}
