//! Capabilities: which of root's privileges the container keeps. All five sets
//! (bounding, permitted, effective, inheritable, ambient) are cut to one small list;
//! `--cap-add` and `--cap-drop` change the list by name.

use crate::error::LaunchError;

/// One capability, by its number in linux/capability.h.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Capability(pub u32);

/// The names, indexed by number (without the `CAP_` prefix).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

impl Capability {
    pub const CHOWN: Capability = Capability(0);
    pub const DAC_OVERRIDE: Capability = Capability(1);
    pub const DAC_READ_SEARCH: Capability = Capability(2);
    pub const FOWNER: Capability = Capability(3);
    pub const FSETID: Capability = Capability(4);
    pub const KILL: Capability = Capability(5);
    pub const SETGID: Capability = Capability(6);
    pub const SETUID: Capability = Capability(7);
    pub const SETPCAP: Capability = Capability(8);
    pub const NET_BIND_SERVICE: Capability = Capability(10);
    pub const SYS_MODULE: Capability = Capability(16);
    pub const SYS_CHROOT: Capability = Capability(18);
    pub const SYS_PTRACE: Capability = Capability(19);
    pub const SYS_ADMIN: Capability = Capability(21);
    pub const SYS_BOOT: Capability = Capability(22);
    pub const SYS_TIME: Capability = Capability(25);
    pub const SETFCAP: Capability = Capability(31);

    /// Every capability any kernel knows of today (up to CHECKPOINT_RESTORE).
    pub const ALL: [Capability; 41] = {
        let mut all = [Capability(0); 41];
        let mut i = 0;
        while i < 41 {
            all[i] = Capability(i as u32);
            i += 1;
        }
        all
    };

    pub fn name(self) -> &'static str {
        NAMES.get(self.0 as usize).copied().unwrap_or("UNKNOWN")
    }
}

/// What root inside keeps by default: docker's default set without NET_RAW (raw sockets
/// are useless with loopback only), MKNOD (no device node can be used on the container's
/// mounts) and AUDIT_WRITE. Enough for package managers, chown, su and binding low ports.
pub const DEFAULT_CAPABILITIES: [Capability; 11] = [
    Capability::CHOWN,
    Capability::DAC_OVERRIDE,
    Capability::FOWNER,
    Capability::FSETID,
    Capability::KILL,
    Capability::SETGID,
    Capability::SETUID,
    Capability::SETPCAP,
    Capability::NET_BIND_SERVICE,
    Capability::SYS_CHROOT,
    Capability::SETFCAP,
];

/// Parses `--cap-add`/`--cap-drop` names: `SYS_ADMIN`, `cap_sys_admin`, or `ALL`.
pub fn parse_names(option: &str, names: &[String]) -> Result<Vec<Capability>, LaunchError> {
    let mut caps = Vec::new();
    for given in names {
        let upper = given.to_ascii_uppercase();
        let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
        if name == "ALL" {
            caps.extend(Capability::ALL);
            continue;
        }
        match NAMES.iter().position(|n| *n == name) {
            Some(number) => caps.push(Capability(number as u32)),
            None => {
                return Err(LaunchError::Invalid(format!(
                    "{option} {given}: unknown capability; give a name such as NET_RAW or SYS_PTRACE, or ALL"
                )))
            }
        }
    }
    Ok(caps)
}

/// The container's set: the default, plus `add`, minus `drop` (drop wins, as in docker).
pub fn container_set(add: &[Capability], drop: &[Capability]) -> Vec<Capability> {
    let mut set: Vec<Capability> = DEFAULT_CAPABILITIES
        .iter()
        .chain(add)
        .filter(|cap| !drop.contains(cap))
        .copied()
        .collect();
    set.sort();
    set.dedup();
    set
}

/// Cuts the bounding, permitted, effective, inheritable and ambient sets to `keep`.
/// The bounding set is what matters across exec: root's capabilities after exec are the
/// bounding set; inheritable and ambient empty mean no program gains any by its file
/// capabilities or by being run as non-root.
pub fn limit_to(keep: &[Capability]) -> Result<(), LaunchError> {
    let fail = |what: &str| LaunchError::setup(what.to_string(), std::io::Error::last_os_error());
    for cap in Capability::ALL {
        if keep.contains(&cap) {
            continue;
        }
        // SAFETY: plain prctl. A number the running kernel does not know fails with
        // EINVAL, harmlessly.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap.0 as libc::c_ulong, 0, 0, 0) } < 0
            && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
        {
            return Err(fail("dropping capabilities from the bounding set"));
        }
    }
    // SAFETY: plain prctl.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    } < 0
    {
        return Err(fail("clearing the ambient capabilities"));
    }
    keep_only(keep)
}

/// Cuts the permitted and effective sets to `keep` (inheritable to none), leaving the
/// bounding set as it is: for the container's init once the command runs, which keeps
/// only what reaping and signalling the container's processes takes, so tracing init
/// gains nothing the container's own processes lack.
pub fn keep_only(keep: &[Capability]) -> Result<(), LaunchError> {
    let fail = |what: &str| LaunchError::setup(what.to_string(), std::io::Error::last_os_error());
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // Only what this process holds can be kept: root without, say, CAP_SYS_RESOURCE
    // (as in many CI containers) cannot hand it on, whatever --cap-add says.
    let mut held = [CapData::default(), CapData::default()];
    // SAFETY: header and two data words, as capget(2) version 3 fills.
    if unsafe {
        libc::syscall(
            libc::SYS_capget,
            &header as *const CapHeader,
            held.as_mut_ptr(),
        )
    } < 0
    {
        return Err(fail("reading the capability sets"));
    }
    let held = u64::from(held[0].permitted) | u64::from(held[1].permitted) << 32;
    let mask = keep.iter().fold(0u64, |m, cap| m | 1 << cap.0) & held;
    let low = CapData {
        effective: mask as u32,
        permitted: mask as u32,
        inheritable: 0,
    };
    let high = CapData {
        effective: (mask >> 32) as u32,
        permitted: (mask >> 32) as u32,
        inheritable: 0,
    };
    let data = [low, high];
    // SAFETY: header and two data words, as capset(2) version 3 expects.
    if unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) } < 0 {
        return Err(fail("setting the capability sets"));
    }
    Ok(())
}

/// The runtime spec's effective, permitted and inheritable sets, exactly, then each
/// ambient one raised; the bounding set is cut before, with [`drop_bounding_except`],
/// while the process still holds CAP_SETPCAP (before it changes user). Unlike
/// [`limit_to`] a set may hold what this process lacks: the kernel refuses that, and so
/// does this.
pub fn set_exactly(
    effective: &[Capability],
    permitted: &[Capability],
    inheritable: &[Capability],
    ambient: &[Capability],
) -> Result<(), LaunchError> {
    let fail = |what: &str| LaunchError::setup(what.to_string(), std::io::Error::last_os_error());
    let mask = |set: &[Capability]| set.iter().fold(0u64, |m, cap| m | 1 << cap.0);
    let (e, p, i) = (
        mask(effective),
        mask(permitted) | mask(effective),
        mask(inheritable) | mask(ambient),
    );
    let data = [
        CapData {
            effective: e as u32,
            permitted: p as u32,
            inheritable: i as u32,
        },
        CapData {
            effective: (e >> 32) as u32,
            permitted: (p >> 32) as u32,
            inheritable: (i >> 32) as u32,
        },
    ];
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: header and two data words, as capset(2) version 3 expects.
    if unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) } < 0 {
        return Err(fail("setting the capability sets (process.capabilities)"));
    }
    for cap in ambient {
        // SAFETY: plain prctl.
        if unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE,
                cap.0 as libc::c_ulong,
                0,
                0,
            )
        } < 0
        {
            return Err(fail("raising an ambient capability"));
        }
    }
    Ok(())
}

/// Drops every capability but `keep` from the bounding set.
pub fn drop_bounding_except(keep: &[Capability]) -> Result<(), LaunchError> {
    for cap in Capability::ALL {
        if keep.contains(&cap) {
            continue;
        }
        // SAFETY: plain prctl. A number the running kernel does not know fails with
        // EINVAL, harmlessly.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap.0 as libc::c_ulong, 0, 0, 0) } < 0
            && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
        {
            return Err(LaunchError::setup(
                "dropping capabilities from the bounding set",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_or_without_prefix() {
        let caps = parse_names("--cap-add", &["cap_sys_admin".into(), "NET_RAW".into()]).unwrap();
        assert_eq!(caps, [Capability::SYS_ADMIN, Capability(13)]);
        assert_eq!(
            parse_names("--cap-drop", &["all".into()]).unwrap().len(),
            41
        );
        assert!(parse_names("--cap-add", &["FLY".into()]).is_err());
    }

    #[test]
    fn drop_wins_over_add() {
        let set = container_set(
            &[Capability::SYS_ADMIN],
            &[Capability::SYS_ADMIN, Capability::KILL],
        );
        assert!(!set.contains(&Capability::SYS_ADMIN));
        assert!(!set.contains(&Capability::KILL));
        assert!(set.contains(&Capability::CHOWN));
        assert!(container_set(&[], &Capability::ALL).is_empty());
    }
}
