//! The seccomp filter: the system calls a container has no business making, refused
//! with EPERM (docker's default profile, turned around: everything is allowed except
//! the listed calls). Compiled here in Rust with seccompiler, no libseccomp.
//!
//! Two filters are installed, the kernel applying the stricter answer of both:
//! a four-instruction one of our own that refuses every x32 system call (the x32 ABI
//! reaches the same kernel code through other numbers, and has had its own bugs), and
//! seccompiler's, which kills a process of any other architecture (i386 through int
//! 0x80) and refuses the listed calls.
//!
//! A group of calls that one capability would allow is kept open when that capability
//! is added (`--cap-add SYS_ADMIN` opens mount and the namespace calls), as docker does.
//!
//! The filter is built before the clone and installed by the container's init once the
//! setup is done, before it starts the command, which inherits it (see [`crate::init`]):
//! init is confined as the command is, and the setup before needs mount, pivot_root
//! and unshare.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use crate::capabilities::Capability;
use crate::error::LaunchError;

/// A compiled filter set, ready for [`install`].
pub struct SeccompProfile {
    filters: Vec<BpfProgram>,
}

/// Calls refused to everyone, whatever the capabilities.
const ALWAYS_REFUSED: &[i64] = &[
    // Kernel keyrings are not namespaced: a container could read or fill the host's.
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    // eBPF programs run in the kernel; unprivileged bpf has been a steady source of
    // escapes. perf reveals kernel addresses and other processes' activity.
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    // userfaultfd stalls the kernel on a page fault at a moment of the caller's choice,
    // the classic way to win kernel races.
    libc::SYS_userfaultfd,
    // Not namespaced, or long obsolete.
    libc::SYS_lookup_dcookie,
    libc::SYS_uselib,
    libc::SYS_ustat,
    libc::SYS_sysfs,
    libc::SYS__sysctl,
    libc::SYS_nfsservctl,
    // NUMA policy calls can degrade the host's memory placement.
    libc::SYS_mbind,
    libc::SYS_set_mempolicy,
    libc::SYS_move_pages,
    // io_uring runs work on kernel threads outside this filter's reach.
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

/// Calls refused unless the container holds the capability that governs them.
const REFUSED_WITHOUT: &[(Capability, &[i64])] = &[
    (
        Capability::SYS_ADMIN,
        &[
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_fsopen,
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fspick,
            libc::SYS_open_tree,
            libc::SYS_move_mount,
            libc::SYS_mount_setattr,
            libc::SYS_quotactl,
            libc::SYS_swapon,
            libc::SYS_swapoff,
            libc::SYS_acct,
            libc::SYS_iopl,
            libc::SYS_ioperm,
        ],
    ),
    (
        Capability::SYS_MODULE,
        &[
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
        ],
    ),
    (
        Capability::SYS_BOOT,
        &[
            libc::SYS_reboot,
            libc::SYS_kexec_load,
            libc::SYS_kexec_file_load,
        ],
    ),
    (
        Capability::SYS_TIME,
        &[
            libc::SYS_settimeofday,
            libc::SYS_clock_settime,
            libc::SYS_clock_adjtime,
            libc::SYS_adjtimex,
        ],
    ),
    (
        Capability::SYS_PTRACE,
        // process_vm_readv/writev stay open as ptrace does (docker allows both on
        // kernels >= 4.8: profilers such as py-spy read their children's memory).
        &[libc::SYS_kcmp],
    ),
    (
        Capability::DAC_READ_SEARCH,
        &[libc::SYS_open_by_handle_at, libc::SYS_name_to_handle_at],
    ),
];

/// The namespace flags of clone(2): a new namespace needs SYS_ADMIN.
const CLONE_NAMESPACE_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];

/// The bit every x32 system call number carries.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

impl SeccompProfile {
    /// The default profile for a container holding `capabilities`.
    pub fn default_for(capabilities: &[Capability]) -> Result<SeccompProfile, LaunchError> {
        let has = |cap: Capability| capabilities.contains(&cap);
        let mut refused: BTreeMap<i64, Vec<SeccompRule>> =
            ALWAYS_REFUSED.iter().map(|&nr| (nr, Vec::new())).collect();
        for (cap, calls) in REFUSED_WITHOUT {
            if !has(*cap) {
                refused.extend(calls.iter().map(|&nr| (nr, Vec::new())));
            }
        }
        // ptrace stays open: it could escape seccomp only before Linux 4.8, and the
        // launcher needs 5.12 (mount_setattr makes /proc/sys and the rest read-only).
        if !has(Capability::SYS_ADMIN) {
            // clone with a namespace flag (any one of the rules matches); clone3 passes
            // its flags in memory a filter cannot read, so it is answered ENOSYS and the
            // C libraries fall back to clone.
            let rules = CLONE_NAMESPACE_FLAGS
                .iter()
                .map(|&flag| clone_flag_rule(flag as u64))
                .collect::<Result<Vec<_>, _>>()?;
            refused.insert(libc::SYS_clone, rules);
        }
        // AF_VSOCK talks to the hypervisor and to other VMs past any network namespace,
        // and its port space is shared by every container of the host (docker refuses
        // the family too).
        refused.insert(
            libc::SYS_socket,
            vec![arg_equals_rule(0, libc::AF_VSOCK as u64)?],
        );
        let arch = std::env::consts::ARCH
            .try_into()
            .map_err(|e| compile_error(format!("{e}")))?;
        let refuse = SeccompFilter::new(
            refused,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )
        .and_then(BpfProgram::try_from)
        .map_err(|e| compile_error(e.to_string()))?;
        let mut filters = vec![refuse];
        filters.extend(unimplemented_calls(
            !has(Capability::SYS_ADMIN),
            cfg!(target_arch = "x86_64"),
        ));
        Ok(SeccompProfile { filters })
    }

    /// Installs the filters on the calling thread. Needs no_new_privs (set earlier).
    /// Allocation-free.
    pub fn install(&self) -> Result<(), libc::c_int> {
        for filter in &self.filters {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            // SAFETY: a valid program that outlives the call.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0,
                    &program as *const libc::sock_fprog,
                )
            };
            if ret < 0 {
                return Err(std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EINVAL));
            }
        }
        Ok(())
    }
}

/// A rule matching when argument `index` is `value`.
fn arg_equals_rule(index: u8, value: u64) -> Result<SeccompRule, LaunchError> {
    let condition = SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
        .map_err(|e| compile_error(e.to_string()))?;
    SeccompRule::new(vec![condition]).map_err(|e| compile_error(e.to_string()))
}

/// A rule matching when `flag` is set in clone's first argument.
fn clone_flag_rule(flag: u64) -> Result<SeccompRule, LaunchError> {
    let condition = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(flag),
        flag,
    )
    .map_err(|e| compile_error(e.to_string()))?;
    SeccompRule::new(vec![condition]).map_err(|e| compile_error(e.to_string()))
}

/// A small filter of our own answering ENOSYS ("no such call": C libraries then fall
/// back to older calls) for clone3 (`clone3`) and for every system call whose number
/// has the x32 bit (`x32`). The architecture check is seccompiler's filter's job: it
/// kills a process of another architecture whatever this one says.
fn unimplemented_calls(clone3: bool, x32: bool) -> Option<BpfProgram> {
    use seccompiler::sock_filter;
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JEQ_K: u16 = 0x15;
    const BPF_JGE_K: u16 = 0x35;
    const BPF_RET_K: u16 = 0x06;
    let jump = |code, k, jt| sock_filter { code, jt, jf: 0, k };
    let ret = |k| sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k,
    };
    let mut tests = Vec::new();
    if x32 {
        tests.push((BPF_JGE_K, X32_SYSCALL_BIT));
    }
    if clone3 {
        tests.push((BPF_JEQ_K, libc::SYS_clone3 as u32));
    }
    if tests.is_empty() {
        return None;
    }
    // seccomp_data.nr is at offset 0. Each test jumps, when true, over the tests after
    // it and the ALLOW to the final ENOSYS.
    let mut program = vec![sock_filter {
        code: BPF_LD_W_ABS,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let count = tests.len();
    for (i, (code, k)) in tests.into_iter().enumerate() {
        program.push(jump(code, k, (count - i) as u8));
    }
    program.push(ret(libc::SECCOMP_RET_ALLOW));
    program.push(ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    Some(program)
}

fn compile_error(why: String) -> LaunchError {
    LaunchError::setup(
        format!("compiling the seccomp filter: {why}"),
        std::io::Error::from_raw_os_error(libc::EINVAL),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_compiles_for_every_capability_set() {
        assert!(SeccompProfile::default_for(&[]).is_ok());
        assert!(SeccompProfile::default_for(&Capability::ALL).is_ok());
    }
}
