//! What the runtime says of itself: the `features` document and the `spec` verb's
//! default config.json.

use std::path::{Path, PathBuf};

use crate::error::LaunchError;

use super::state;

/// `features`: what this runtime supports, as the runtime spec's features document.
pub fn features() -> serde_json::Value {
    let mount_options = [
        "ro",
        "rw",
        "nosuid",
        "suid",
        "nodev",
        "dev",
        "noexec",
        "exec",
        "sync",
        "async",
        "dirsync",
        "mand",
        "nomand",
        "noatime",
        "atime",
        "nodiratime",
        "diratime",
        "relatime",
        "norelatime",
        "strictatime",
        "nostrictatime",
        "defaults",
        "bind",
        "rbind",
        "private",
        "rprivate",
        "shared",
        "rshared",
        "slave",
        "rslave",
        "unbindable",
        "runbindable",
        "tmpcopyup",
    ];
    let capabilities: Vec<String> = crate::capabilities::Capability::ALL
        .iter()
        .map(|c| format!("CAP_{}", c.name()))
        .collect();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options.to_vec(),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": capabilities,
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "seccomp": {
                "enabled": cfg!(target_arch = "x86_64"),
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                              "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } }
        },
        "annotations": {
            "org.opencontainers.runtime-spec.features.runtime": "mkroot launch",
            "io.github.mkroot.launch.version": env!("CARGO_PKG_VERSION")
        }
    })
}

/// `spec`: a default config.json in `dir`, for a rootfs at `dir/rootfs`; `rootless` maps
/// the caller to root in a user namespace.
pub fn write_default_spec(dir: &Path, rootless: bool) -> Result<PathBuf, LaunchError> {
    let file = dir.join("config.json");
    if file.exists() {
        return Err(LaunchError::Invalid(format!(
            "{}: already exists; remove it first",
            file.display()
        )));
    }
    let mut spec = default_spec();
    if rootless {
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        spec["linux"]["namespaces"]
            .as_array_mut()
            .expect("an array")
            .push(serde_json::json!({"type": "user"}));
        spec["linux"]["uidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        spec["linux"]["gidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        // Without a network namespace of its own: a rootless container's sysfs would
        // need one it owns. /sys is bound from the host instead, as runc's rootless spec does.
        let mounts = spec["mounts"].as_array_mut().expect("an array");
        mounts.retain(|m| m["type"] != "cgroup" && m["destination"] != "/sys");
        mounts.push(
            serde_json::json!({"destination": "/sys", "type": "none", "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}),
        );
        for m in mounts.iter_mut() {
            if m["type"] == "devpts" {
                m["options"] = serde_json::json!([
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620"
                ]);
            }
        }
    }
    let text = serde_json::to_string_pretty(&spec).expect("plain data");
    std::fs::write(&file, text + "\n")
        .map_err(|e| LaunchError::setup(format!("writing {}", file.display()), e))?;
    Ok(file)
}

fn default_spec() -> serde_json::Value {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    serde_json::json!({
        "ociVersion": state::OCI_VERSION,
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [format!("PATH={}", crate::process::DEFAULT_PATH), "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "launch",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                           {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"]
        }
    })
}
