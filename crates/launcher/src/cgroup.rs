//! Control groups: one per container, holding `--memory`, `--pids-limit` and `--cpus`,
//! and, where the host has the controller, accounting the container's memory even
//! without `--memory` (its tmpfs writes are charged to it, not to the launcher).
//!
//! The launcher creates the container's cgroup (below its own, in every hierarchy the
//! limits need: the one unified hierarchy on v2, each controller's on v1, and on hybrid
//! hosts both: the v1 controllers plus the v2 tree for membership). The child is born in
//! the v2 cgroup (clone3 with CLONE_INTO_CGROUP, whose cgroup namespace is then rooted
//! there); moving a process between cgroups waits for an RCU grace period. Only v1
//! controllers need a move: the launcher writes the child's PID into them while the
//! child waits for its go-ahead, and the child unshares its cgroup namespace itself once
//! there, so the namespace is rooted at the container's cgroups in every hierarchy.
//!
//! Removed when the launch ends; a launch killed with SIGKILL leaves its cgroup behind
//! (empty: the container died with it), swept by the next launch.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::error::LaunchError;

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// One unified hierarchy at /sys/fs/cgroup.
    V2,
    /// Controllers in v1 hierarchies under `/sys/fs/cgroup/<controller>`, and the v2
    /// hierarchy (holding no controllers) at /sys/fs/cgroup/unified.
    Hybrid,
    /// v1 hierarchies only.
    V1,
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// The prefix of every container cgroup's name; the launcher's PID follows.
const NAME_PREFIX: &str = "mkroot-launch-";
/// The CFS period `--cpus` is expressed in (the kernel's default), in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

impl CgroupLayout {
    pub fn detect() -> Option<CgroupLayout> {
        if is_cgroup2(Path::new("/sys/fs/cgroup")) {
            Some(CgroupLayout::V2)
        } else if is_cgroup2(Path::new("/sys/fs/cgroup/unified")) {
            Some(CgroupLayout::Hybrid)
        } else if Path::new("/sys/fs/cgroup/memory").is_dir() {
            Some(CgroupLayout::V1)
        } else {
            None
        }
    }
}

/// `--memory`, `--pids-limit`, `--cpus`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResourceLimits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
}

impl ResourceLimits {
    /// Checks the command line's values.
    pub fn new(
        memory: Option<&str>,
        pids: Option<u64>,
        cpus: Option<f64>,
    ) -> Result<ResourceLimits, LaunchError> {
        let memory_bytes = memory
            .map(|m| {
                mkroot_common::size::parse_size(m)
                    .ok()
                    .filter(|&b| b >= 1 << 20)
                    .ok_or_else(|| {
                        LaunchError::Invalid(format!(
                            "--memory {m}: give a size of at least 1M, e.g. 512M or 2G"
                        ))
                    })
            })
            .transpose()?;
        if pids == Some(0) {
            return Err(LaunchError::Invalid(
                "--pids-limit 0: give at least 1".to_string(),
            ));
        }
        if let Some(c) = cpus {
            if !(0.01..=4096.0).contains(&c) {
                return Err(LaunchError::Invalid(format!(
                    "--cpus {c}: give a number of CPUs such as 0.5 or 2"
                )));
            }
        }
        Ok(ResourceLimits {
            memory_bytes,
            pids,
            cpus,
        })
    }

    pub fn any(&self) -> bool {
        self.memory_bytes.is_some() || self.pids.is_some() || self.cpus.is_some()
    }
}

/// The container's cgroup: one directory per hierarchy it lives in.
#[derive(Debug)]
pub struct ContainerCgroup {
    dirs: Vec<PathBuf>,
    /// The v2 directory, opened for clone3's CLONE_INTO_CGROUP.
    v2: Option<OwnedFd>,
    /// The v1 directories, which the child must be moved into.
    v1: Vec<PathBuf>,
    /// Where the kernel counts OOM kills (v2 memory.events, v1 memory.oom_control).
    oom_counter: Option<PathBuf>,
}

impl ContainerCgroup {
    /// Creates the cgroup with `limits` written; `None` when no limit is asked for. A
    /// container without limits stays in the launcher's cgroup (which holds nothing but
    /// that one launch): a cgroup of its own would cost a launch about a millisecond,
    /// mostly in removing it, which must wait until the container's last process has
    /// left, namespaces torn down.
    pub fn create(limits: &ResourceLimits) -> Result<Option<ContainerCgroup>, LaunchError> {
        if !limits.any() {
            return Ok(None);
        }
        let Some(layout) = CgroupLayout::detect() else {
            return Err(LaunchError::Invalid(
                "--memory/--pids-limit/--cpus: this host has no cgroup filesystem mounted under /sys/fs/cgroup".into(),
            ));
        };
        let own = own_cgroups();
        let name = format!("{NAME_PREFIX}{}", std::process::id());
        let mut cgroup = ContainerCgroup {
            dirs: Vec::new(),
            v2: None,
            v1: Vec::new(),
            oom_counter: None,
        };
        let limits_failed = |what: &str, e: io::Error| {
            LaunchError::setup(
                format!("{what} (run launch as root, or in a cgroup delegated to you)"),
                e,
            )
        };
        let created = |e| limits_failed("creating the container's cgroup", e);
        let limited = |e| limits_failed("writing cgroup limits", e);
        if layout != CgroupLayout::V1 {
            let (mount, v2_limits) = match layout {
                CgroupLayout::V2 => ("/sys/fs/cgroup", Some(limits)),
                _ => ("/sys/fs/cgroup/unified", None),
            };
            let mut parent = v2_parent(Path::new(mount), &own);
            if let Some(limits) = v2_limits {
                // A controller the cgroup is not offered makes the kernel refuse to
                // enable it; only then is cgroup.controllers read, to say which.
                parent =
                    controlled_parent(Path::new(mount), parent.clone(), limits).map_err(|e| {
                        unavailable_controllers(&parent, limits)
                            .unwrap_or_else(|| limits_failed("enabling cgroup controllers", e))
                    })?;
            }
            let dir = cgroup.make(&parent, &name).map_err(created)?;
            if let Some(limits) = v2_limits {
                write_v2_limits(&dir, limits).map_err(limited)?;
                if limits.memory_bytes.is_some() {
                    cgroup.oom_counter = Some(dir.join("memory.events"));
                }
            }
            cgroup.v2 = Some(open_dir(&dir).map_err(created)?);
        }
        if layout != CgroupLayout::V2 {
            for (controller, _) in needed_controllers(limits) {
                let parent = v1_parent(controller, &own);
                let dir = cgroup.make(&parent, &name).map_err(created)?;
                write_v1_limits(controller, &dir, limits).map_err(limited)?;
                if controller == "memory" {
                    cgroup.oom_counter = Some(dir.join("memory.oom_control"));
                }
                cgroup.v1.push(dir);
            }
            if accounts_memory_only(limits) {
                // Accounting only: a host without a memory hierarchy still launches.
                let parent = v1_parent("memory", &own);
                if parent.is_dir() {
                    if let Ok(dir) = cgroup.make(&parent, &name) {
                        cgroup.v1.push(dir);
                    }
                }
            }
        }
        // A limit was asked for, so a v2 directory or a v1 controller's was made.
        Ok(Some(cgroup))
    }

    /// Makes `parent/name`, first sweeping cgroups left by launches that were killed.
    fn make(&mut self, parent: &Path, name: &str) -> io::Result<PathBuf> {
        sweep(parent);
        let dir = parent.join(name);
        match fs::create_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// The v2 cgroup's directory fd, for clone3 to start the child in.
    pub fn clone_target(&self) -> Option<RawFd> {
        self.v2.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Whether the child must be moved in after the clone (v1 controllers), and then
    /// make its cgroup namespace itself.
    pub fn needs_move(&self) -> bool {
        !self.v1.is_empty()
    }

    /// Moves process `pid` (the container's first process, still waiting) into the v1
    /// cgroups.
    pub fn add(&self, pid: libc::pid_t) -> Result<(), LaunchError> {
        for dir in &self.v1 {
            let procs = dir.join("cgroup.procs");
            fs::write(&procs, pid.to_string())
                .map_err(|e| LaunchError::setup(format!("writing {}", procs.display()), e))?;
        }
        Ok(())
    }

    /// How many processes the OOM killer has killed in the container.
    pub fn oom_kills(&self) -> u64 {
        let Some(counter) = &self.oom_counter else {
            return 0;
        };
        fs::read_to_string(counter)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for ContainerCgroup {
    /// Removes the cgroup. Its last process (the container's init) may still be on its
    /// way out when the launcher is told the exit status: retry for a while.
    fn drop(&mut self) {
        for dir in &self.dirs {
            for attempt in 0..2000 {
                match fs::remove_dir(dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 1999 => {
                        std::thread::sleep(std::time::Duration::from_micros(500));
                    }
                    _ => break,
                }
            }
        }
    }
}

fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    Ok(OwnedFd::from(file))
}

/// This process's cgroup path in each hierarchy: (controllers, path) from
/// /proc/self/cgroup; the v2 entry has no controllers.
pub(crate) fn own_cgroups() -> Vec<(String, String)> {
    fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let _id = fields.next()?;
            Some((fields.next()?.to_string(), fields.next()?.to_string()))
        })
        .collect()
}

fn v2_parent(mount: &Path, own: &[(String, String)]) -> PathBuf {
    let path = own
        .iter()
        .find(|(controllers, _)| controllers.is_empty())
        .map_or("/", |(_, p)| p.as_str());
    mount.join(path.trim_start_matches('/'))
}

fn v1_parent(controller: &str, own: &[(String, String)]) -> PathBuf {
    let path = own
        .iter()
        .find(|(controllers, _)| controllers.split(',').any(|c| c == controller))
        .map_or("/", |(_, p)| p.as_str());
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(path.trim_start_matches('/'))
}

/// v2: the nearest cgroup from `own` up to the hierarchy's root in whose subtree the
/// controllers can be enabled. v2 enables controllers only for the children of a cgroup
/// that holds no process itself, so when the launcher's own cgroup holds processes (a
/// service's, a CI job's) the container's cgroup becomes its sibling instead.
fn controlled_parent(mount: &Path, own: PathBuf, limits: &ResourceLimits) -> io::Result<PathBuf> {
    let mut candidate = own;
    loop {
        match enable_controllers(&candidate, limits) {
            Ok(()) => return Ok(candidate),
            Err(e) if candidate != mount && e.raw_os_error() == Some(libc::EBUSY) => {
                match candidate.parent() {
                    Some(up) if up.starts_with(mount) => candidate = up.to_path_buf(),
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The v2 controller each limit needs, with its flag.
fn needed_controllers(limits: &ResourceLimits) -> Vec<(&'static str, &'static str)> {
    [
        ("memory", "--memory", limits.memory_bytes.is_some()),
        ("pids", "--pids-limit", limits.pids.is_some()),
        ("cpu", "--cpus", limits.cpus.is_some()),
    ]
    .into_iter()
    .filter(|(_, _, wanted)| *wanted)
    .map(|(controller, flag, _)| (controller, flag))
    .collect()
}

/// v2: the error for limits whose controller the launcher's cgroup is not offered (its
/// `cgroup.controllers` lacks it: the host binds it to a v1 hierarchy, or the cgroup
/// tree was delegated without it), or `None` when all are there (or it cannot tell).
fn unavailable_controllers(parent: &Path, limits: &ResourceLimits) -> Option<LaunchError> {
    let offered = fs::read_to_string(parent.join("cgroup.controllers")).ok()?;
    let offered: Vec<&str> = offered.split_whitespace().collect();
    let missing: Vec<(&str, &str)> = needed_controllers(limits)
        .into_iter()
        .filter(|(controller, _)| !offered.contains(controller))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let flags: Vec<&str> = missing.iter().map(|(_, flag)| *flag).collect();
    let names: Vec<&str> = missing.iter().map(|(controller, _)| *controller).collect();
    let (noun, verb) = if names.len() == 1 {
        ("controller", "is")
    } else {
        ("controllers", "are")
    };
    Some(LaunchError::Invalid(format!(
        "{}: the cgroup v2 {noun} {} {verb} not available in {} (it offers: {}); delegate {} to launch's cgroup (systemd: Delegate=yes) or leave the limit out",
        flags.join(", "),
        names.join(", "),
        parent.display(),
        if offered.is_empty() { "none".to_string() } else { offered.join(" ") },
        if names.len() == 1 { "it" } else { "them" },
    )))
}

/// Whether a cgroup made for other limits also gets the memory controller, with no
/// limit: what the container writes to its tmpfs mounts is then charged to it (shown in
/// its memory.current, bounded by any limit above it) rather than to the launcher's
/// cgroup. Only where the controller is there to be had; no limit needs it.
fn accounts_memory_only(limits: &ResourceLimits) -> bool {
    limits.memory_bytes.is_none()
}

/// v2: the controllers the limits need must be enabled in the parent's subtree (and
/// memory, for accounting, where the parent is offered it).
fn enable_controllers(parent: &Path, limits: &ResourceLimits) -> io::Result<()> {
    // Never empty: a cgroup is made only when a limit is asked for.
    let mut wanted: Vec<String> = needed_controllers(limits)
        .into_iter()
        .map(|(controller, _)| format!("+{controller}"))
        .collect();
    if accounts_memory_only(limits) && offers(parent, "memory") {
        wanted.push("+memory".to_string());
    }
    fs::write(parent.join("cgroup.subtree_control"), wanted.join(" "))
}

/// v2: whether `cgroup.controllers` of `dir` lists `controller`.
fn offers(dir: &Path, controller: &str) -> bool {
    fs::read_to_string(dir.join("cgroup.controllers"))
        .is_ok_and(|offered| offered.split_whitespace().any(|c| c == controller))
}

fn write_v2_limits(dir: &Path, limits: &ResourceLimits) -> io::Result<()> {
    if let Some(bytes) = limits.memory_bytes {
        fs::write(dir.join("memory.max"), bytes.to_string())?;
        // No swap: the limit is the memory the container gets.
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            fs::write(swap, "0")?;
        }
    }
    if let Some(pids) = limits.pids {
        fs::write(dir.join("pids.max"), pids.to_string())?;
    }
    if let Some(cpus) = limits.cpus {
        let quota = (cpus * CPU_PERIOD_US as f64) as u64;
        fs::write(dir.join("cpu.max"), format!("{quota} {CPU_PERIOD_US}"))?;
    }
    Ok(())
}

fn write_v1_limits(controller: &str, dir: &Path, limits: &ResourceLimits) -> io::Result<()> {
    match (controller, limits) {
        (
            "memory",
            ResourceLimits {
                memory_bytes: Some(bytes),
                ..
            },
        ) => {
            fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string())?;
            // memory+swap at the same value: no swap (only where swap accounting is on).
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                fs::write(memsw, bytes.to_string())?;
            }
        }
        (
            "pids",
            ResourceLimits {
                pids: Some(pids), ..
            },
        ) => fs::write(dir.join("pids.max"), pids.to_string())?,
        (
            "cpu",
            ResourceLimits {
                cpus: Some(cpus), ..
            },
        ) => {
            let quota = (cpus * CPU_PERIOD_US as f64) as u64;
            fs::write(dir.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
            fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
        }
        _ => {}
    }
    Ok(())
}

/// Removes the cgroups under `parent` of launches no longer running (killed with
/// SIGKILL before they could). A cgroup still holding processes is left alone (rmdir
/// refuses it).
fn sweep(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(NAME_PREFIX))
            .and_then(|p| p.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

/// In the container, once the launcher has moved it into its cgroup: a cgroup
/// namespace rooted there, so the container sees its own cgroup as `/`.
pub fn enter_own_namespace() -> Result<(), LaunchError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| LaunchError::setup("unsharing the cgroup namespace", e.into()))
}

fn is_cgroup2(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|stat| stat.f_type == CGROUP2_SUPER_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_has_a_cgroup_layout() {
        // Every host this runs on mounts cgroups in one of the three ways.
        assert!(CgroupLayout::detect().is_some());
    }

    #[test]
    fn limits_are_checked() {
        let l = ResourceLimits::new(Some("64M"), Some(10), Some(0.5)).unwrap();
        assert_eq!(l.memory_bytes, Some(64 << 20));
        assert!(l.any());
        assert!(ResourceLimits::new(Some("12"), None, None).is_err());
        assert!(ResourceLimits::new(None, Some(0), None).is_err());
        assert!(ResourceLimits::new(None, None, Some(-1.0)).is_err());
        assert!(!ResourceLimits::default().any());
    }
}
