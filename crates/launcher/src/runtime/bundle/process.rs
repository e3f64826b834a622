//! `process` of config.json (or the `--process` file of `exec`), checked: the program,
//! its user, capabilities and rlimits.
use std::path::Path;

use super::spec_name;
use crate::capabilities::{self, Capability};
use crate::error::LaunchError;
use crate::limits::Ulimit;

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
