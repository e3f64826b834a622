//! Baseline restrictions applied before the command runs: no_new_privs, a small
//! capability set, and no inherited file descriptors. Rlimits are inherited untouched:
//! the launcher never raises one.

use crate::error::LaunchError;

// Capability numbers from linux/capability.h.
const CAP_CHOWN: u32 = 0;
const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_FOWNER: u32 = 3;
const CAP_FSETID: u32 = 4;
const CAP_KILL: u32 = 5;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SETPCAP: u32 = 8;
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_SYS_CHROOT: u32 = 18;
const CAP_SETFCAP: u32 = 31;
/// The highest capability number any kernel knows of today (CAP_CHECKPOINT_RESTORE);
/// dropping a number the running kernel does not know fails harmlessly with EINVAL.
const CAP_LAST_KNOWN: u32 = 40;

/// What root inside keeps: docker's default set without NET_RAW (raw sockets are useless
/// with loopback only), MKNOD (no device node can be used on the container's mounts) and
/// AUDIT_WRITE. Enough for package managers, chown, su and binding low ports.
pub const DEFAULT_CAPABILITIES: [u32; 11] = [
    CAP_CHOWN,
    CAP_DAC_OVERRIDE,
    CAP_FOWNER,
    CAP_FSETID,
    CAP_KILL,
    CAP_SETGID,
    CAP_SETUID,
    CAP_SETPCAP,
    CAP_NET_BIND_SERVICE,
    CAP_SYS_CHROOT,
    CAP_SETFCAP,
];

/// Cuts the bounding, permitted, effective, inheritable and ambient sets to `keep`.
/// The bounding set is what matters across exec: root's capabilities after exec are the
/// bounding set.
pub fn limit_capabilities(keep: &[u32]) -> Result<(), LaunchError> {
    let fail = |what: &str| LaunchError::setup(what.to_string(), std::io::Error::last_os_error());
    for cap in 0..=CAP_LAST_KNOWN {
        if keep.contains(&cap) {
            continue;
        }
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0
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
    let mask = keep.iter().fold(0u64, |m, &cap| m | 1 << cap);
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
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

/// No exec can gain privileges any more (setuid bits and file capabilities ignored).
pub fn set_no_new_privs() -> Result<(), LaunchError> {
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return Err(LaunchError::setup(
            "setting no_new_privs",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Closes every fd above stderr, so no host file (or the launcher's own pipes) reaches
/// the command. Called right before exec.
pub fn close_inherited_fds() {
    // SAFETY: plain syscall; nothing else uses those fds after this point.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
