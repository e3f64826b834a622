//! `linux.resources` of config.json, checked into what the cgroups here enforce, the
//! devices cgroup's rules included.
use std::collections::BTreeMap;

use super::spec_name;

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

pub(super) fn resources(linux: &oci_spec::runtime::Linux) -> Result<Resources, String> {
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
