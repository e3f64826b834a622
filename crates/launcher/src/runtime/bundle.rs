//! An OCI bundle's `config.json`, read with the `oci-spec` crate and checked once into
//! [`BundleConfig`]: what the runtime's setup uses, in the launcher's own terms
//! (capabilities, rlimits, mount flags). Whatever the setup cannot honour is refused here,
//! in one line that names the field, before anything is created.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxSeccomp, Spec};

use crate::capabilities::{self, Capability};
use crate::error::LaunchError;
use crate::limits::Ulimit;
use crate::runtime::mounts::MountSpec;
use crate::userns::IdRange;

/// A bundle's configuration, checked.
#[derive(Debug, Clone)]
pub struct BundleConfig {
    /// The bundle directory, absolute.
    pub bundle: PathBuf,
    /// The root filesystem, absolute (`root.path` relative to the bundle).
    pub rootfs: PathBuf,
    pub root_read_only: bool,
    pub process: ProcessConfig,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub mounts: Vec<MountSpec>,
    pub namespaces: Namespaces,
    pub uid_mappings: Vec<IdRange>,
    pub gid_mappings: Vec<IdRange>,
    pub devices: Vec<DeviceNode>,
    pub cgroups_path: Option<String>,
    pub resources: Resources,
    pub sysctl: BTreeMap<String, String>,
    pub seccomp: Option<LinuxSeccomp>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// MS_SHARED, MS_SLAVE or MS_PRIVATE (with MS_REC) for the container's `/`.
    pub rootfs_propagation: libc::c_ulong,
    pub hooks: Hooks,
    pub annotations: BTreeMap<String, String>,
}

/// The process to run: `process` of config.json, or the `--process` file of `exec`.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub terminal: bool,
    /// (rows, columns).
    pub console_size: Option<(u16, u16)>,
    pub capabilities: CapabilitySets,
    pub rlimits: Vec<Ulimit>,
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
}

/// The five capability sets of `process.capabilities`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilitySets {
    pub bounding: Vec<Capability>,
    pub effective: Vec<Capability>,
    pub permitted: Vec<Capability>,
    pub inheritable: Vec<Capability>,
    pub ambient: Vec<Capability>,
}

/// `linux.namespaces`: the CLONE_NEW* flags to create, and the ones to join by path.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    pub create: u64,
    /// (CLONE_NEW* flag, path), joined by the runtime before the clone.
    pub join: Vec<(libc::c_int, PathBuf)>,
}

impl Namespaces {
    pub fn has(&self, flag: libc::c_int) -> bool {
        self.create & flag as u64 != 0 || self.join.iter().any(|(f, _)| *f == flag)
    }
}

/// A device node of `linux.devices`.
#[derive(Debug, Clone)]
pub struct DeviceNode {
    pub path: String,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    pub kind: libc::mode_t,
    pub major: u32,
    pub minor: u32,
    pub mode: libc::mode_t,
    pub uid: u32,
    pub gid: u32,
}

/// `linux.resources`, as far as the cgroups here enforce them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub memory_bytes: Option<u64>,
    /// memory+swap; -1 in the spec is "unlimited" (None here).
    pub memory_swap_bytes: Option<u64>,
    /// The soft limit (v1 memory.soft_limit_in_bytes, v2 memory.low).
    pub memory_reservation: Option<u64>,
    pub swappiness: Option<u64>,
    pub disable_oom_killer: bool,
    /// v1 only (memory.kmem.*): kernel memory, and TCP buffers.
    pub kernel_memory: Option<u64>,
    pub kernel_tcp_memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub cpu_realtime_runtime_us: Option<i64>,
    pub cpu_realtime_period_us: Option<u64>,
    pub cpus: Option<String>,
    pub mems: Option<String>,
    pub blkio_weight: Option<u16>,
    pub blkio_leaf_weight: Option<u16>,
    /// (major, minor, weight, leaf weight).
    pub blkio_weight_devices: Vec<(i64, i64, Option<u16>, Option<u16>)>,
    /// (v1 file, v2 io.max key, major, minor, rate).
    pub blkio_throttles: Vec<(&'static str, &'static str, i64, i64, u64)>,
    /// (page size as the kernel names it: 2MB, 1GB; limit in bytes).
    pub hugepage_limits: Vec<(String, u64)>,
    /// The devices cgroup's rules, in order (v1).
    pub devices: Vec<DeviceRule>,
    /// `unified`: cgroup v2 files written as given.
    pub unified: BTreeMap<String, String>,
}

/// One `linux.resources.devices` rule, as v1's devices.allow / devices.deny take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    /// `a`, `c` or `b`.
    pub kind: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

impl DeviceRule {
    /// `c 1:3 rwm`, `a *:* rwm`.
    pub fn line(&self) -> String {
        let number = |n: Option<i64>| {
            n.filter(|&n| n >= 0)
                .map_or("*".to_string(), |n| n.to_string())
        };
        format!(
            "{} {}:{} {}",
            self.kind,
            number(self.major),
            number(self.minor),
            self.access
        )
    }
}

/// `hooks`: commands the runtime runs on the host with the container's state on stdin.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub create_runtime: Vec<Hook>,
    pub prestart: Vec<Hook>,
    /// Run in the container's namespaces, before pivot_root.
    pub create_container: Vec<Hook>,
    /// Run in the container, after start, before the program.
    pub start_container: Vec<Hook>,
    pub poststart: Vec<Hook>,
    pub poststop: Vec<Hook>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Hook {
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Option<i64>,
}

impl BundleConfig {
    /// Reads `bundle/config.json`.
    pub fn load(bundle: &Path) -> Result<BundleConfig, LaunchError> {
        let bundle = std::path::absolute(bundle)
            .map_err(|e| LaunchError::Invalid(format!("--bundle {}: {e}", bundle.display())))?;
        let file = bundle.join("config.json");
        let text = std::fs::read_to_string(&file).map_err(|e| {
            LaunchError::Invalid(format!(
                "{}: {e}; give the bundle directory that holds config.json (--bundle, default: the current directory)",
                file.display()
            ))
        })?;
        let spec: Spec = serde_json::from_str(&text).map_err(|e| {
            LaunchError::Invalid(format!("{}: not a valid runtime spec: {e}", file.display()))
        })?;
        BundleConfig::from_spec(&bundle, &spec)
            .map_err(|e| LaunchError::Invalid(format!("{}: {e}", file.display())))
    }

    fn from_spec(bundle: &Path, spec: &Spec) -> Result<BundleConfig, String> {
        let root = spec.root().as_ref().ok_or("root: missing")?;
        let rootfs = bundle.join(root.path());
        if !rootfs.is_dir() {
            return Err(format!(
                "root.path {}: not a directory",
                root.path().display()
            ));
        }
        let process = spec
            .process()
            .as_ref()
            .ok_or("process: missing (create needs a process to run)")?;
        let linux = spec.linux().clone().unwrap_or_default();
        let mounts = spec
            .mounts()
            .iter()
            .flatten()
            .map(MountSpec::from_spec)
            .collect::<Result<Vec<_>, _>>()?;
        let namespaces = namespaces(&linux)?;
        let map = |mappings: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
            mappings
                .iter()
                .flatten()
                .map(|m| IdRange {
                    inside: m.container_id(),
                    outside: m.host_id(),
                    count: m.size(),
                })
                .collect::<Vec<_>>()
        };
        let uid_mappings = map(linux.uid_mappings());
        let gid_mappings = map(linux.gid_mappings());
        if namespaces.create & libc::CLONE_NEWUSER as u64 != 0 && uid_mappings.is_empty() {
            return Err("linux.uidMappings: a new user namespace needs mappings".into());
        }
        if let Some(label) = linux.mount_label().as_ref().filter(|l| !l.is_empty()) {
            return Err(format!(
                "linux.mountLabel {label}: SELinux labels are not supported by launch"
            ));
        }
        let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
            None | Some("") | Some("rprivate") | Some("private") => libc::MS_PRIVATE,
            Some("rslave") | Some("slave") => libc::MS_SLAVE,
            Some("rshared") | Some("shared") => libc::MS_SHARED,
            Some("unbindable") | Some("runbindable") => libc::MS_UNBINDABLE,
            Some(other) => return Err(format!("linux.rootfsPropagation {other}: unknown")),
        } | libc::MS_REC;
        Ok(BundleConfig {
            bundle: bundle.to_path_buf(),
            rootfs,
            root_read_only: root.readonly().unwrap_or(false),
            process: ProcessConfig::from_spec(process)?,
            hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
            domainname: spec.domainname().clone().filter(|h| !h.is_empty()),
            mounts,
            namespaces,
            uid_mappings,
            gid_mappings,
            devices: linux
                .devices()
                .iter()
                .flatten()
                .map(device_node)
                .collect::<Result<_, _>>()?,
            cgroups_path: linux
                .cgroups_path()
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            resources: resources(&linux)?,
            sysctl: linux
                .sysctl()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            seccomp: linux.seccomp().clone(),
            masked_paths: linux.masked_paths().clone().unwrap_or_default(),
            readonly_paths: linux.readonly_paths().clone().unwrap_or_default(),
            rootfs_propagation,
            hooks: hooks(spec),
            annotations: spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
    }
}

impl ProcessConfig {
    /// Reads a `--process` file (the `process` object of config.json).
    pub fn load(file: &Path) -> Result<ProcessConfig, LaunchError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| LaunchError::Invalid(format!("--process {}: {e}", file.display())))?;
        let process: oci_spec::runtime::Process = serde_json::from_str(&text).map_err(|e| {
            LaunchError::Invalid(format!(
                "--process {}: not a runtime spec process: {e}",
                file.display()
            ))
        })?;
        ProcessConfig::from_spec(&process)
            .map_err(|e| LaunchError::Invalid(format!("--process {}: {e}", file.display())))
    }

    pub fn from_spec(process: &oci_spec::runtime::Process) -> Result<ProcessConfig, String> {
        let args = process.args().clone().unwrap_or_default();
        if args.is_empty() {
            return Err("process.args: empty; give the program to run".into());
        }
        if let Some(profile) = process
            .apparmor_profile()
            .as_ref()
            .filter(|p| !p.is_empty())
        {
            return Err(format!(
                "process.apparmorProfile {profile}: AppArmor is not supported by launch (it confines with Landlock and seccomp); leave it out"
            ));
        }
        if let Some(label) = process.selinux_label().as_ref().filter(|l| !l.is_empty()) {
            return Err(format!(
                "process.selinuxLabel {label}: SELinux labels are not supported by launch; leave it out"
            ));
        }
        let cwd = process.cwd().to_string_lossy().into_owned();
        if !cwd.starts_with('/') {
            return Err(format!("process.cwd {cwd}: give an absolute path"));
        }
        let user = process.user();
        Ok(ProcessConfig {
            args,
            env: process.env().clone().unwrap_or_default(),
            cwd,
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask(),
            terminal: process.terminal().unwrap_or(false),
            console_size: process
                .console_size()
                .map(|b| (b.height() as u16, b.width() as u16)),
            capabilities: capability_sets(process)?,
            rlimits: process
                .rlimits()
                .iter()
                .flatten()
                .map(rlimit)
                .collect::<Result<_, _>>()?,
            no_new_privileges: process.no_new_privileges().unwrap_or(false),
            oom_score_adj: process.oom_score_adj(),
        })
    }
}

/// A serde-named enum value of oci-spec as the spec spells it (`"CAP_KILL"`, `"pid"`).
fn spec_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn capability_sets(process: &oci_spec::runtime::Process) -> Result<CapabilitySets, String> {
    let Some(caps) = process.capabilities() else {
        return Ok(CapabilitySets::default());
    };
    let set =
        |field: &str, names: &Option<std::collections::HashSet<oci_spec::runtime::Capability>>| {
            let names: Vec<String> = names.iter().flatten().map(spec_name).collect();
            let mut parsed =
                capabilities::parse_names(&format!("process.capabilities.{field}"), &names)
                    .map_err(|e| e.to_string())?;
            parsed.sort_by_key(|c| c.0);
            Ok::<_, String>(parsed)
        };
    Ok(CapabilitySets {
        bounding: set("bounding", caps.bounding())?,
        effective: set("effective", caps.effective())?,
        permitted: set("permitted", caps.permitted())?,
        inheritable: set("inheritable", caps.inheritable())?,
        ambient: set("ambient", caps.ambient())?,
    })
}

fn rlimit(limit: &oci_spec::runtime::PosixRlimit) -> Result<Ulimit, String> {
    let name = spec_name(&limit.typ());
    let resource = match name.as_str() {
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        other => return Err(format!("process.rlimits: unknown type {other}")),
    };
    if limit.soft() > limit.hard() {
        return Err(format!(
            "process.rlimits {name}: soft {} is above hard {}",
            limit.soft(),
            limit.hard()
        ));
    }
    Ok(Ulimit {
        resource,
        soft: limit.soft(),
        hard: limit.hard(),
    })
}

fn namespaces(linux: &oci_spec::runtime::Linux) -> Result<Namespaces, String> {
    let mut out = Namespaces::default();
    for ns in linux.namespaces().iter().flatten() {
        let name = spec_name(&ns.typ());
        let flag = match name.as_str() {
            "pid" => libc::CLONE_NEWPID,
            "network" => libc::CLONE_NEWNET,
            "mount" => libc::CLONE_NEWNS,
            "ipc" => libc::CLONE_NEWIPC,
            "uts" => libc::CLONE_NEWUTS,
            "user" => libc::CLONE_NEWUSER,
            "cgroup" => libc::CLONE_NEWCGROUP,
            "time" => libc::CLONE_NEWTIME,
            other => return Err(format!("linux.namespaces: unknown type {other}")),
        };
        if out.has(flag) {
            return Err(format!("linux.namespaces: {name} is listed twice"));
        }
        match ns.path() {
            Some(path) if !path.as_os_str().is_empty() => {
                if flag == libc::CLONE_NEWNS || flag == libc::CLONE_NEWUSER {
                    return Err(format!(
                        "linux.namespaces: joining a {name} namespace by path is not supported by launch; let it make a new one"
                    ));
                }
                out.join.push((flag, path.clone()));
            }
            _ => out.create |= flag as u64,
        }
    }
    if !out.has(libc::CLONE_NEWNS) {
        return Err(
            "linux.namespaces: launch always gives a container its own mount namespace; add {\"type\": \"mount\"}".into(),
        );
    }
    Ok(out)
}

fn device_node(device: &oci_spec::runtime::LinuxDevice) -> Result<DeviceNode, String> {
    let path = device.path().to_string_lossy().into_owned();
    let kind = match spec_name(&device.typ()).as_str() {
        "c" | "u" => libc::S_IFCHR,
        "b" => libc::S_IFBLK,
        "p" => libc::S_IFIFO,
        other => return Err(format!("linux.devices {path}: unknown type {other}")),
    };
    if !path.starts_with("/dev/") {
        return Err(format!("linux.devices {path}: give a path under /dev"));
    }
    Ok(DeviceNode {
        path,
        kind,
        major: device.major() as u32,
        minor: device.minor() as u32,
        mode: device.file_mode().unwrap_or(0o666),
        uid: device.uid().unwrap_or(0),
        gid: device.gid().unwrap_or(0),
    })
}

fn resources(linux: &oci_spec::runtime::Linux) -> Result<Resources, String> {
    let Some(r) = linux.resources() else {
        return Ok(Resources::default());
    };
    let positive = |v: Option<i64>| v.filter(|&v| v > 0).map(|v| v as u64);
    let memory = r.memory().as_ref();
    let cpu = r.cpu().as_ref();
    let blkio = r.block_io().as_ref();
    let mut throttles = Vec::new();
    if let Some(io) = blkio {
        for (list, v1, v2) in [
            (
                io.throttle_read_bps_device(),
                "blkio.throttle.read_bps_device",
                "rbps",
            ),
            (
                io.throttle_write_bps_device(),
                "blkio.throttle.write_bps_device",
                "wbps",
            ),
            (
                io.throttle_read_iops_device(),
                "blkio.throttle.read_iops_device",
                "riops",
            ),
            (
                io.throttle_write_iops_device(),
                "blkio.throttle.write_iops_device",
                "wiops",
            ),
        ] {
            for d in list.iter().flatten() {
                throttles.push((v1, v2, d.major(), d.minor(), d.rate()));
            }
        }
    }
    let devices = r
        .devices()
        .iter()
        .flatten()
        .map(|d| {
            let kind = match d.typ().map(|t| spec_name(&t)).as_deref() {
                None | Some("a") => 'a',
                Some("c") | Some("u") => 'c',
                Some("b") => 'b',
                Some(other) => {
                    return Err(format!("linux.resources.devices: unknown type {other}"))
                }
            };
            let access = d.access().clone().unwrap_or_else(|| "rwm".to_string());
            if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
                return Err(format!(
                    "linux.resources.devices: access {access:?}: give r, w and m"
                ));
            }
            Ok(DeviceRule {
                allow: d.allow(),
                kind,
                major: d.major(),
                minor: d.minor(),
                access,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let devices = with_default_devices_allowed(devices, linux);
    let hugepage_limits = r
        .hugepage_limits()
        .iter()
        .flatten()
        .map(|h| (h.page_size().clone(), h.limit().max(0) as u64))
        .collect();
    Ok(Resources {
        memory_bytes: positive(memory.and_then(|m| m.limit())),
        memory_swap_bytes: positive(memory.and_then(|m| m.swap())),
        memory_reservation: positive(memory.and_then(|m| m.reservation())),
        swappiness: memory.and_then(|m| m.swappiness()).filter(|&s| s <= 100),
        disable_oom_killer: memory.and_then(|m| m.disable_oom_killer()).unwrap_or(false),
        kernel_memory: positive(memory.and_then(|m| m.kernel())),
        kernel_tcp_memory: positive(memory.and_then(|m| m.kernel_tcp())),
        pids: r
            .pids()
            .as_ref()
            .map(|p| p.limit())
            .filter(|&l| l > 0)
            .map(|l| l as u64),
        cpu_quota_us: positive(cpu.and_then(|c| c.quota())),
        cpu_period_us: cpu.and_then(|c| c.period()).filter(|&p| p > 0),
        cpu_shares: cpu.and_then(|c| c.shares()).filter(|&s| s > 0),
        cpu_realtime_runtime_us: cpu.and_then(|c| c.realtime_runtime()),
        cpu_realtime_period_us: cpu.and_then(|c| c.realtime_period()).filter(|&p| p > 0),
        cpus: cpu.and_then(|c| c.cpus().clone()).filter(|c| !c.is_empty()),
        mems: cpu.and_then(|c| c.mems().clone()).filter(|m| !m.is_empty()),
        blkio_weight: blkio.and_then(|b| b.weight()),
        blkio_leaf_weight: blkio.and_then(|b| b.leaf_weight()),
        blkio_weight_devices: blkio
            .and_then(|b| b.weight_device().clone())
            .unwrap_or_default()
            .iter()
            .map(|d| (d.major(), d.minor(), d.weight(), d.leaf_weight()))
            .collect(),
        blkio_throttles: throttles,
        hugepage_limits,
        devices,
        unified: r
            .unified()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    })
}

/// The rules, then allow rules for the devices every container gets (null, zero, full,
/// random, urandom, tty, the ptys and ptmx) and for those of `linux.devices`, as runc
/// appends them: a config that denies all (as podman's and runtime-tools' do) still
/// leaves the container its /dev/null.
fn with_default_devices_allowed(
    mut rules: Vec<DeviceRule>,
    linux: &oci_spec::runtime::Linux,
) -> Vec<DeviceRule> {
    if rules.is_empty() {
        return rules;
    }
    let allow = |kind: char, major: i64, minor: Option<i64>| DeviceRule {
        allow: true,
        kind,
        major: Some(major),
        minor,
        access: "rwm".to_string(),
    };
    for (_, major, minor) in crate::devices::DEVICES {
        rules.push(allow('c', major.into(), Some(minor.into())));
    }
    rules.push(allow('c', 5, Some(2)));
    rules.push(allow('c', 136, None));
    for device in linux.devices().iter().flatten() {
        let kind = if spec_name(&device.typ()) == "b" {
            'b'
        } else {
            'c'
        };
        rules.push(allow(kind, device.major(), Some(device.minor())));
    }
    rules
}

fn hooks(spec: &Spec) -> Hooks {
    let Some(hooks) = spec.hooks() else {
        return Hooks::default();
    };
    let list = |hooks: &Option<Vec<oci_spec::runtime::Hook>>| {
        hooks
            .iter()
            .flatten()
            .map(|h| Hook {
                path: h.path().clone(),
                args: h.args().clone().unwrap_or_default(),
                env: h.env().clone().unwrap_or_default(),
                timeout: h.timeout(),
            })
            .collect()
    };
    #[allow(deprecated)]
    let prestart = list(hooks.prestart());
    Hooks {
        create_runtime: list(hooks.create_runtime()),
        prestart,
        create_container: list(hooks.create_container()),
        start_container: list(hooks.start_container()),
        poststart: list(hooks.poststart()),
        poststop: list(hooks.poststop()),
    }
}
