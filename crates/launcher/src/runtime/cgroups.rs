//! The container's cgroup at `linux.cgroupsPath`, in every hierarchy the host has: the
//! unified one on v2; each v1 hierarchy (and the v2 tree beside them) on v1 and hybrid
//! hosts. Engines read a container's statistics straight from that path (podman stats,
//! containerd's metrics), so the container's processes must all be there. Unlike
//! `launch IMAGE`'s cgroup ([`crate::cgroup`]) it outlives the runtime's process: made
//! by `create`, frozen by `pause`, listed by `ps`, removed by `delete`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::cgroup::CgroupLayout;
use crate::error::LaunchError;
use crate::runtime::bundle::Resources;

/// A v1 hierarchy the host mounts: its directory name under /sys/fs/cgroup and the
/// mount options that name it (`cpu,cpuacct`, `name=systemd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub name: String,
    pub mount: PathBuf,
    pub options: String,
}

/// The v1 hierarchies mounted under /sys/fs/cgroup, from /proc/self/mountinfo.
pub fn v1_hierarchies() -> Vec<Hierarchy> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mount = before.split(' ').nth(4)?;
            let mut fields = after.split(' ');
            if fields.next()? != "cgroup" {
                return None;
            }
            let name = mount.strip_prefix("/sys/fs/cgroup/")?;
            let options: Vec<&str> = fields
                .nth(1)?
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro" | "xattr" | "clone_children"))
                .collect();
            Some(Hierarchy {
                name: name.to_string(),
                mount: PathBuf::from(mount),
                options: options.join(","),
            })
        })
        .collect()
}

/// The container's cgroup directories, one per hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuntimeCgroup {
    /// The v2 directory (on hybrid hosts, the one under /sys/fs/cgroup/unified).
    pub v2: Option<PathBuf>,
    /// (options naming the hierarchy, directory) for each v1 hierarchy.
    pub v1: Vec<(String, PathBuf)>,
}

impl RuntimeCgroup {
    /// Makes the cgroup at `path` (absolute: from each hierarchy's root; relative: below
    /// the runtime's own cgroup) and writes `resources`.
    pub fn create(path: &str, resources: &Resources) -> Result<RuntimeCgroup, LaunchError> {
        if path.contains(':') {
            return Err(LaunchError::Invalid(format!(
                "linux.cgroupsPath {path}: a systemd slice:prefix:name path; launch manages cgroups itself (cgroupfs): give a path such as /machine/ID"
            )));
        }
        if path.split('/').any(|part| part == "..") {
            return Err(LaunchError::Invalid(format!(
                "linux.cgroupsPath {path}: give a path without `..`"
            )));
        }
        let layout = CgroupLayout::detect().ok_or_else(|| {
            LaunchError::Invalid(
                "linux.cgroupsPath: this host has no cgroup filesystem mounted under /sys/fs/cgroup".into(),
            )
        })?;
        let own = crate::cgroup::own_cgroups();
        let failed = |dir: &Path, e: io::Error| {
            LaunchError::setup(format!("creating the cgroup {}", dir.display()), e)
        };
        let mut cgroup = RuntimeCgroup::default();
        let v2_mount = match layout {
            CgroupLayout::V2 => Some(Path::new("/sys/fs/cgroup")),
            CgroupLayout::Hybrid => Some(Path::new("/sys/fs/cgroup/unified")),
            CgroupLayout::V1 => None,
        };
        if let Some(mount) = v2_mount {
            let dir = place(mount, path, own_path(&own, ""));
            enable_controllers(mount, &dir);
            fs::create_dir_all(&dir).map_err(|e| failed(&dir, e))?;
            write_v2(&dir, resources, layout == CgroupLayout::Hybrid)?;
            cgroup.v2 = Some(dir);
        }
        if layout != CgroupLayout::V2 {
            for hierarchy in v1_hierarchies() {
                let first = hierarchy.options.split(',').next().unwrap_or_default();
                let dir = place(&hierarchy.mount, path, own_path(&own, first));
                if cgroup.v1.iter().any(|(_, d)| *d == dir) {
                    continue;
                }
                fs::create_dir_all(&dir).map_err(|e| failed(&dir, e))?;
                if hierarchy.options.split(',').any(|c| c == "cpuset") {
                    inherit_cpuset(&dir);
                }
                write_v1(&hierarchy.options, &dir, resources)?;
                cgroup.v1.push((hierarchy.options, dir));
            }
        }
        Ok(cgroup)
    }

    /// Every directory, v2 first.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.v2
            .iter()
            .map(PathBuf::as_path)
            .chain(self.v1.iter().map(|(_, d)| d.as_path()))
    }

    /// Moves `pid` into every directory.
    pub fn add(&self, pid: libc::pid_t) -> Result<(), LaunchError> {
        for dir in self.dirs() {
            let procs = dir.join("cgroup.procs");
            fs::write(&procs, pid.to_string())
                .map_err(|e| LaunchError::setup(format!("writing {}", procs.display()), e))?;
        }
        Ok(())
    }

    /// The PIDs of the container's processes.
    pub fn pids(&self) -> Vec<libc::pid_t> {
        let dir = self
            .v1
            .iter()
            .find(|(options, _)| options.split(',').any(|c| c == "pids" || c == "freezer"))
            .map(|(_, d)| d.as_path())
            .or(self.v2.as_deref());
        let Some(dir) = dir else {
            return Vec::new();
        };
        fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// The v1 freezer's directory, or the v2 one where the host has cgroup.freeze.
    fn freezer(&self) -> Option<Freezer> {
        if let Some((_, dir)) = self
            .v1
            .iter()
            .find(|(options, _)| options.split(',').any(|c| c == "freezer"))
        {
            return Some(Freezer::V1(dir.clone()));
        }
        self.v2
            .as_ref()
            .filter(|d| d.join("cgroup.freeze").exists())
            .map(|d| Freezer::V2(d.clone()))
    }

    /// Freezes (`pause`) or thaws (`resume`) every process, waiting until the kernel
    /// says it is done.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), LaunchError> {
        let freezer = self.freezer().ok_or_else(|| {
            LaunchError::Invalid(
                "pause/resume: the container's cgroup has no freezer on this host".into(),
            )
        })?;
        let (file, value) = match (&freezer, frozen) {
            (Freezer::V1(d), true) => (d.join("freezer.state"), "FROZEN"),
            (Freezer::V1(d), false) => (d.join("freezer.state"), "THAWED"),
            (Freezer::V2(d), true) => (d.join("cgroup.freeze"), "1"),
            (Freezer::V2(d), false) => (d.join("cgroup.freeze"), "0"),
        };
        fs::write(&file, value)
            .map_err(|e| LaunchError::setup(format!("writing {}", file.display()), e))?;
        for _ in 0..1000 {
            if self.is_frozen() == frozen {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(LaunchError::Invalid(format!(
            "{}: the kernel did not finish {} the container",
            file.display(),
            if frozen { "freezing" } else { "thawing" }
        )))
    }

    pub fn is_frozen(&self) -> bool {
        match self.freezer() {
            Some(Freezer::V1(d)) => {
                fs::read_to_string(d.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
            }
            Some(Freezer::V2(d)) => fs::read_to_string(d.join("cgroup.events"))
                .is_ok_and(|s| s.lines().any(|l| l == "frozen 1")),
            None => false,
        }
    }

    /// Kills what is left in it and removes every directory. The container's last
    /// processes may still be on their way out: rmdir is retried for a while.
    pub fn remove(&self) -> Result<(), LaunchError> {
        if self.is_frozen() {
            let _ = self.set_frozen(false);
        }
        for pid in self.pids() {
            // SAFETY: plain kill of a process in the container's cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for dir in self.dirs() {
            let mut attempt = 0;
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 2000 => {
                        attempt += 1;
                        std::thread::sleep(std::time::Duration::from_micros(500));
                    }
                    Err(e) => {
                        return Err(LaunchError::setup(
                            format!("removing the cgroup {}", dir.display()),
                            e,
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

enum Freezer {
    V1(PathBuf),
    V2(PathBuf),
}

/// `path` placed in the hierarchy mounted at `mount`: from its root when absolute,
/// below `own` (the runtime's cgroup there) when relative.
fn place(mount: &Path, path: &str, own: &str) -> PathBuf {
    match path.strip_prefix('/') {
        Some(absolute) => mount.join(absolute),
        None => mount.join(own.trim_start_matches('/')).join(path),
    }
}

/// The runtime's own path in the hierarchy holding `controller` ("" for v2).
fn own_path<'a>(own: &'a [(String, String)], controller: &str) -> &'a str {
    own.iter()
        .find(|(controllers, _)| match controller {
            "" => controllers.is_empty(),
            c => controllers.split(',').any(|x| x == c),
        })
        .map_or("/", |(_, p)| p.as_str())
}

/// v2: the controllers the limits use, enabled in every ancestor of `dir` (each one
/// alone: a controller the host does not offer is left out, not an error here; its
/// limit's write fails and says so).
fn enable_controllers(mount: &Path, dir: &Path) {
    let Ok(relative) = dir.strip_prefix(mount) else {
        return;
    };
    let mut ancestor = mount.to_path_buf();
    for part in relative.parent().into_iter().flat_map(Path::components) {
        for controller in V2_CONTROLLERS {
            let _ = fs::write(ancestor.join("cgroup.subtree_control"), controller);
        }
        ancestor.push(part);
        let _ = fs::create_dir(&ancestor);
    }
    for controller in V2_CONTROLLERS {
        let _ = fs::write(ancestor.join("cgroup.subtree_control"), controller);
    }
}

const V2_CONTROLLERS: [&str; 6] = ["+cpu", "+cpuset", "+memory", "+pids", "+io", "+hugetlb"];

/// v1 cpuset: a new cgroup starts with no CPUs and no memory nodes, and takes no
/// process until it has them: copy its parent's (made by create_dir_all, each level
/// empty in turn).
fn inherit_cpuset(dir: &Path) {
    let mut chain: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| d.join("cpuset.cpus").exists())
        .collect();
    chain.reverse();
    for pair in chain.windows(2) {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let current = fs::read_to_string(pair[1].join(file)).unwrap_or_default();
            if current.trim().is_empty() {
                if let Ok(parent) = fs::read_to_string(pair[0].join(file)) {
                    let _ = fs::write(pair[1].join(file), parent.trim());
                }
            }
        }
    }
}

fn write(dir: &Path, file: &str, value: String) -> Result<(), LaunchError> {
    let path = dir.join(file);
    fs::write(&path, &value)
        .map_err(|e| LaunchError::setup(format!("writing {value} to {}", path.display()), e))
}

/// What a limit's file is called in v2, and its value: the writes for `r`.
fn v2_writes(r: &Resources) -> Vec<(String, String)> {
    let mut writes: Vec<(String, String)> = Vec::new();
    let mut add = |file: &str, value: String| writes.push((file.to_string(), value));
    if let Some(cpus) = &r.cpus {
        add("cpuset.cpus", cpus.clone());
    }
    if let Some(mems) = &r.mems {
        add("cpuset.mems", mems.clone());
    }
    if let Some(bytes) = r.memory_bytes {
        add("memory.max", bytes.to_string());
        if let Some(total) = r.memory_swap_bytes {
            add("memory.swap.max", total.saturating_sub(bytes).to_string());
        }
    }
    if let Some(bytes) = r.memory_reservation {
        add("memory.low", bytes.to_string());
    }
    if let Some(pids) = r.pids {
        add("pids.max", pids.to_string());
    }
    if r.cpu_quota_us.is_some() || r.cpu_period_us.is_some() {
        let quota = r.cpu_quota_us.map_or("max".to_string(), |q| q.to_string());
        let period = r.cpu_period_us.unwrap_or(100_000);
        add("cpu.max", format!("{quota} {period}"));
    }
    if let Some(shares) = r.cpu_shares {
        // The kernel's own conversion of v1 shares (2..262144) to v2 weights (1..10000).
        let weight = 1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142;
        add("cpu.weight", weight.to_string());
    }
    if let Some(weight) = r.blkio_weight {
        // v1's 10..1000 onto v2's 1..10000.
        let weight = 1 + (u64::from(weight).clamp(10, 1000) - 10) * 9999 / 990;
        add("io.weight", weight.to_string());
    }
    for (_, key, major, minor, rate) in &r.blkio_throttles {
        add("io.max", format!("{major}:{minor} {key}={rate}"));
    }
    for (size, limit) in &r.hugepage_limits {
        add(&format!("hugetlb.{size}.max"), limit.to_string());
    }
    for (file, value) in &r.unified {
        add(file, value.clone());
    }
    writes
}

/// v2 limits. On a hybrid host only the controllers the v2 tree holds (their files
/// exist) are v2's; the rest are v1's (see [`write_v1`]).
fn write_v2(dir: &Path, r: &Resources, hybrid: bool) -> Result<(), LaunchError> {
    for (file, value) in v2_writes(r) {
        if hybrid && !dir.join(&file).exists() {
            continue;
        }
        if file.contains('/') || file.starts_with('.') {
            return Err(LaunchError::Invalid(format!(
                "linux.resources.unified {file}: give a file name of the cgroup"
            )));
        }
        write(dir, &file, value)?;
    }
    Ok(())
}

/// v1 limits, each in its controller's hierarchy (`options` names the controllers).
fn write_v1(options: &str, dir: &Path, r: &Resources) -> Result<(), LaunchError> {
    let present = |file: &str| dir.join(file).exists();
    for controller in options.split(',') {
        match controller {
            "cpuset" => {
                if let Some(cpus) = &r.cpus {
                    write(dir, "cpuset.cpus", cpus.clone())?;
                }
                if let Some(mems) = &r.mems {
                    write(dir, "cpuset.mems", mems.clone())?;
                }
            }
            "memory" => {
                if let Some(bytes) = r.memory_bytes {
                    write(dir, "memory.limit_in_bytes", bytes.to_string())?;
                    if let Some(total) = r.memory_swap_bytes {
                        if present("memory.memsw.limit_in_bytes") {
                            write(dir, "memory.memsw.limit_in_bytes", total.to_string())?;
                        }
                    }
                }
                if let Some(bytes) = r.memory_reservation {
                    write(dir, "memory.soft_limit_in_bytes", bytes.to_string())?;
                }
                if let Some(swappiness) = r.swappiness {
                    write(dir, "memory.swappiness", swappiness.to_string())?;
                }
                if r.disable_oom_killer {
                    write(dir, "memory.oom_control", "1".to_string())?;
                }
                if let Some(bytes) = r.kernel_memory {
                    // Kernels since 5.16 take no kernel memory limit any more (the
                    // write fails with ENOTSUPP); there is nothing to set, as runc says.
                    match fs::write(dir.join("memory.kmem.limit_in_bytes"), bytes.to_string()) {
                        Err(e)
                            if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(524)) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        other => other.map_err(|e| {
                            LaunchError::setup(
                                format!(
                                    "writing {}",
                                    dir.join("memory.kmem.limit_in_bytes").display()
                                ),
                                e,
                            )
                        })?,
                    }
                }
                if let Some(bytes) = r.kernel_tcp_memory {
                    write(dir, "memory.kmem.tcp.limit_in_bytes", bytes.to_string())?;
                }
            }
            "pids" => {
                if let Some(pids) = r.pids {
                    write(dir, "pids.max", pids.to_string())?;
                }
            }
            "cpu" => {
                if let Some(period) = r.cpu_period_us {
                    write(dir, "cpu.cfs_period_us", period.to_string())?;
                }
                if let Some(quota) = r.cpu_quota_us {
                    write(dir, "cpu.cfs_quota_us", quota.to_string())?;
                }
                if let Some(shares) = r.cpu_shares {
                    write(dir, "cpu.shares", shares.to_string())?;
                }
                // The period first: the kernel checks the runtime against it.
                if let Some(period) = r.cpu_realtime_period_us {
                    write(dir, "cpu.rt_period_us", period.to_string())?;
                }
                if let Some(runtime) = r.cpu_realtime_runtime_us {
                    write(dir, "cpu.rt_runtime_us", runtime.to_string())?;
                }
            }
            "blkio" => {
                // CFQ's and BFQ's names for the same weights.
                let weight_file = |name: &str| {
                    [format!("blkio.{name}"), format!("blkio.bfq.{name}")]
                        .into_iter()
                        .find(|f| present(f))
                };
                if let Some(weight) = r.blkio_weight {
                    let file = weight_file("weight").ok_or_else(|| unavailable("blkio weight"))?;
                    write(dir, &file, weight.to_string())?;
                }
                if let Some(weight) = r.blkio_leaf_weight {
                    let file = weight_file("leaf_weight")
                        .ok_or_else(|| unavailable("blkio leafWeight"))?;
                    write(dir, &file, weight.to_string())?;
                }
                for (major, minor, weight, leaf) in &r.blkio_weight_devices {
                    if let Some(weight) = weight {
                        let file = weight_file("weight_device")
                            .ok_or_else(|| unavailable("blkio weightDevice"))?;
                        write(dir, &file, format!("{major}:{minor} {weight}"))?;
                    }
                    if let Some(leaf) = leaf {
                        let file = weight_file("leaf_weight_device")
                            .ok_or_else(|| unavailable("blkio leafWeightDevice"))?;
                        write(dir, &file, format!("{major}:{minor} {leaf}"))?;
                    }
                }
                for (file, _, major, minor, rate) in &r.blkio_throttles {
                    write(dir, file, format!("{major}:{minor} {rate}"))?;
                }
            }
            "hugetlb" => {
                for (size, limit) in &r.hugepage_limits {
                    write(
                        dir,
                        &format!("hugetlb.{size}.limit_in_bytes"),
                        limit.to_string(),
                    )?;
                }
            }
            "devices" => {
                for rule in &r.devices {
                    let file = if rule.allow {
                        "devices.allow"
                    } else {
                        "devices.deny"
                    };
                    write(dir, file, rule.line())?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn unavailable(what: &str) -> LaunchError {
    LaunchError::Invalid(format!(
        "linux.resources: {what} is not available on this host (its I/O scheduler has no weights); leave it out"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_placed_from_the_root_or_below_our_own() {
        let mount = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(place(mount, "/default/c1", "/x"), mount.join("default/c1"));
        assert_eq!(place(mount, "c1", "/x/y"), mount.join("x/y/c1"));
    }

    #[test]
    fn systemd_paths_and_dot_dot_are_refused() {
        let r = Resources::default();
        assert!(RuntimeCgroup::create("system.slice:libpod:abc", &r).is_err());
        assert!(RuntimeCgroup::create("/a/../../etc", &r).is_err());
    }
}
