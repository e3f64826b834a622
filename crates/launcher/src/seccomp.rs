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
//! is added (`--cap-add SYS_ADMIN` opens the namespace calls), as docker does. Mounting
//! is the exception: it stays closed whatever the capabilities, as docker's AppArmor
//! profile keeps it. Landlock refuses mount(2) to every confined process, but not the
//! new mount API: fsopen and fsmount make a detached mount that is used through its fd
//! without ever being attached, so with SYS_ADMIN a container could mount a cgroup v1
//! hierarchy of its own (whose release_agent the host runs as root) or a host disk.
//! Keeping both APIs closed in the filter makes the answer the same on every kernel.
//!
//! System calls newer than the newest this profile was reviewed against
//! ([`NEWEST_REVIEWED_CALL`]) are answered ENOSYS, as on an older kernel: a deny list
//! would otherwise open every call a future kernel adds until someone lists it.
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
    // Mounting, by either API (see the module doc): closed even with SYS_ADMIN.
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_open_tree,
    SYS_OPEN_TREE_ATTR,
    libc::SYS_move_mount,
    libc::SYS_mount_setattr,
];

/// open_tree_attr (Linux 6.15): open_tree with mount attributes; the same number on
/// every architecture (calls from 424 on share one table), not yet in the libc crate.
const SYS_OPEN_TREE_ATTR: i64 = 467;

/// The newest system call this profile was reviewed against: file_setattr (Linux
/// 6.17), numbered in the table every architecture shares from 424 on. Anything above
/// is answered ENOSYS.
const NEWEST_REVIEWED_CALL: u32 = 469;

/// Calls refused unless the container holds the capability that governs them.
const REFUSED_WITHOUT: &[(Capability, &[i64])] = &[
    (
        Capability::SYS_ADMIN,
        &[
            libc::SYS_unshare,
            libc::SYS_setns,
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
        filters.push(unimplemented_calls(
            !has(Capability::SYS_ADMIN),
            NEWEST_REVIEWED_CALL,
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
/// back to older calls) for every call numbered above `newest` and, with `clone3`, for
/// clone3. On x86_64 the first test also catches every x32 call: their numbers carry
/// bit 30, far above any native one. The architecture check is seccompiler's filter's
/// job: it kills a process of another architecture whatever this one says.
fn unimplemented_calls(clone3: bool, newest: u32) -> BpfProgram {
    use seccompiler::sock_filter;
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JEQ_K: u16 = 0x15;
    const BPF_JGT_K: u16 = 0x25;
    const BPF_RET_K: u16 = 0x06;
    let jump = |code, k, jt| sock_filter { code, jt, jf: 0, k };
    let ret = |k| sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k,
    };
    let mut tests = vec![(BPF_JGT_K, newest)];
    if clone3 {
        tests.push((BPF_JEQ_K, libc::SYS_clone3 as u32));
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
    program
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

    /// fchmodat2 (452) on a directory fd that is not one: EBADF from the kernel, or the
    /// filter's ENOSYS.
    fn fchmodat2_errno() -> i32 {
        // SAFETY: a plain call with a bad fd and a valid C string.
        let ret = unsafe { libc::syscall(452, -1, c"x".as_ptr(), 0o644, 0) };
        assert_eq!(ret, -1);
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }

    #[test]
    fn calls_newer_than_the_reviewed_one_are_answered_enosys() {
        // A filter that pretends to know calls up to 450 only, installed on a thread of
        // its own (no_new_privs and seccomp filters are per thread without TSYNC).
        let answers = std::thread::spawn(|| {
            let control = fchmodat2_errno();
            let profile = SeccompProfile {
                filters: vec![unimplemented_calls(false, 450)],
            };
            // SAFETY: prctl on this thread only.
            assert_eq!(
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
                0
            );
            profile.install().unwrap();
            // A call the filter knows still reaches the kernel.
            // SAFETY: getpid cannot fail.
            assert!(unsafe { libc::syscall(libc::SYS_getpid) } > 0);
            (control, fchmodat2_errno())
        })
        .join()
        .unwrap();
        assert_eq!(answers, (libc::EBADF, libc::ENOSYS));
    }
}
