//! An OCI bundle's `config.json`, read with the `oci-spec` crate and checked once into
//! [`BundleConfig`]: what the runtime's setup uses, in the launcher's own terms
//! (capabilities, rlimits, mount flags). Whatever the setup cannot honour is refused here,
//! in one line that names the field, before anything is created.

mod process;
mod resources;

pub use process::{CapabilitySets, ProcessConfig};
pub use resources::{DeviceRule, Resources};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxSeccomp, Spec};

use crate::error::LaunchError;
use crate::runtime::mounts::MountSpec;
use crate::userns::IdRange;
use resources::resources;

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

/// A serde-named enum value of oci-spec as the spec spells it (`"CAP_KILL"`, `"pid"`).
fn spec_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
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
