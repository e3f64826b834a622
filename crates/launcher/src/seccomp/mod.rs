//! The seccomp filter: the system calls a container has no business making, refused
//! with EPERM (docker's default profile, turned around: everything is allowed except
//! the listed calls). Compiled here in Rust, no libseccomp.
//!
//! One filter: a process of another architecture (i386 through int 0x80) is killed,
//! every x32 system call is answered ENOSYS (the x32 ABI reaches the same kernel code
//! through other numbers, and has had its own bugs), and the listed calls are found by
//! a binary search over their numbers ([`compile`]). The kernel runs the filter once
//! per call number to fill its per-call cache of "always allowed", and loading a filter
//! costs in proportion to its length times the number of calls: a search of a few
//! comparisons per call, rather than seccompiler's chain of one test per listed call,
//! is what keeps the load short. The tests check that it decides every call number of
//! both ABIs, with the arguments the rules look at, exactly as seccompiler's
//! compilation of the same lists does.
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

pub mod bpf;

use std::collections::BTreeMap;

use crate::capabilities::Capability;
use crate::error::LaunchError;
use bpf::{Assembler, Target};

/// A compiled filter, ready for [`SeccompProfile::install`].
pub struct SeccompProfile {
    program: Vec<libc::sock_filter>,
}

/// What the filter answers one call number, where it does not simply allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// EPERM, whatever the arguments.
    Refuse,
    /// EPERM when the first argument's low word has any of these bits.
    RefuseIfFirstHasAny(u32),
    /// EPERM when the first argument's low word is this value.
    RefuseIfFirstIs(u32),
    /// ENOSYS: the C libraries then fall back to an older call.
    Unimplemented,
}

/// Calls refused to everyone, whatever the capabilities.
const ALWAYS_REFUSED: &[libc::c_long] = &[
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
const SYS_OPEN_TREE_ATTR: libc::c_long = 467;

/// The newest system call this profile was reviewed against: file_setattr (Linux
/// 6.17), numbered in the table every architecture shares from 424 on. Anything above
/// is answered ENOSYS.
const NEWEST_REVIEWED_CALL: u32 = 469;

/// Calls refused unless the container holds the capability that governs them.
const REFUSED_WITHOUT: &[(Capability, &[libc::c_long])] = &[
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
        let program =
            compile(&answers(capabilities), NEWEST_REVIEWED_CALL).map_err(compile_error)?;
        Ok(SeccompProfile { program })
    }

    /// Installs the filter on the calling thread. Needs no_new_privs (set earlier).
    /// Allocation-free.
    pub fn install(&self) -> Result<(), libc::c_int> {
        bpf::install(&self.program, 0).map_err(|e| e.raw_os_error().unwrap_or(libc::EINVAL))
    }
}

/// Every call number the filter does not simply allow, for a container holding
/// `capabilities`.
fn answers(capabilities: &[Capability]) -> BTreeMap<u32, Answer> {
    let has = |cap: Capability| capabilities.contains(&cap);
    let number = |nr: &libc::c_long| *nr as u32;
    let mut answers: BTreeMap<u32, Answer> = ALWAYS_REFUSED
        .iter()
        .map(|nr| (number(nr), Answer::Refuse))
        .collect();
    for (cap, calls) in REFUSED_WITHOUT {
        if !has(*cap) {
            answers.extend(calls.iter().map(|nr| (number(nr), Answer::Refuse)));
        }
    }
    // ptrace stays open: it could escape seccomp only before Linux 4.8, and the
    // launcher needs 5.12 (mount_setattr makes /proc/sys and the rest read-only).
    if !has(Capability::SYS_ADMIN) {
        // clone with a namespace flag; clone3 passes its flags in memory a filter
        // cannot read, so it is answered ENOSYS and the C libraries fall back to clone.
        let flags = CLONE_NAMESPACE_FLAGS
            .iter()
            .fold(0, |all, &f| all | f as u32);
        answers.insert(number(&libc::SYS_clone), Answer::RefuseIfFirstHasAny(flags));
        answers.insert(number(&libc::SYS_clone3), Answer::Unimplemented);
    }
    // AF_VSOCK talks to the hypervisor and to other VMs past any network namespace,
    // and its port space is shared by every container of the host (docker refuses
    // the family too).
    answers.insert(
        number(&libc::SYS_socket),
        Answer::RefuseIfFirstIs(libc::AF_VSOCK as u32),
    );
    answers
}

/// The filter: the architecture checked, every number above `newest` (x32's among
/// them) answered ENOSYS, then a binary search over the numbers of `answers`; a
/// number not among them is allowed.
fn compile(answers: &BTreeMap<u32, Answer>, newest: u32) -> Result<Vec<libc::sock_filter>, String> {
    if !cfg!(target_arch = "x86_64") {
        return Err("the filter is written for x86_64 only".into());
    }
    let mut asm = Assembler::default();
    let [allow, refuse, unimplemented, kill] = [(); 4].map(|()| asm.label());
    asm.load(bpf::OFFSET_ARCH);
    asm.jump(
        bpf::BPF_JEQ_K,
        bpf::AUDIT_ARCH_X86_64,
        Target::Next,
        Target::To(kill),
    );
    asm.load(bpf::OFFSET_NR);
    asm.jump(
        bpf::BPF_JGT_K,
        newest,
        Target::To(unimplemented),
        Target::Next,
    );
    // The calls whose answer depends on an argument each get a block after the search.
    let mut blocks = Vec::new();
    let targets: Vec<(u32, bpf::Label)> = answers
        .iter()
        .map(|(&nr, &answer)| {
            let target = match answer {
                Answer::Refuse => refuse,
                Answer::Unimplemented => unimplemented,
                Answer::RefuseIfFirstHasAny(_) | Answer::RefuseIfFirstIs(_) => {
                    let block = asm.label();
                    blocks.push((block, answer));
                    block
                }
            };
            (nr, target)
        })
        .collect();
    search(&mut asm, &targets, allow);
    for (block, answer) in blocks {
        asm.place(block);
        asm.load(bpf::OFFSET_ARGS);
        let (code, k) = match answer {
            Answer::RefuseIfFirstHasAny(bits) => (bpf::BPF_JSET_K, bits),
            Answer::RefuseIfFirstIs(value) => (bpf::BPF_JEQ_K, value),
            Answer::Refuse | Answer::Unimplemented => unreachable!("no block"),
        };
        asm.jump(code, k, Target::To(refuse), Target::To(allow));
    }
    asm.place(allow);
    asm.ret(bpf::RET_ALLOW);
    asm.place(refuse);
    asm.ret(bpf::RET_ERRNO | libc::EPERM as u32);
    asm.place(unimplemented);
    asm.ret(bpf::RET_ERRNO | libc::ENOSYS as u32);
    asm.place(kill);
    asm.ret(bpf::RET_KILL_PROCESS);
    asm.finish()
}

/// Jumps to the target of the call number in the accumulator, found among `targets`
/// (sorted by number) by halving, or to `otherwise` when it is not among them. A few
/// numbers are compared one by one: below four, halving saves no comparison.
fn search(asm: &mut Assembler, targets: &[(u32, bpf::Label)], otherwise: bpf::Label) {
    if targets.len() <= 3 {
        for (i, &(nr, target)) in targets.iter().enumerate() {
            let miss = if i + 1 == targets.len() {
                Target::To(otherwise)
            } else {
                Target::Next
            };
            asm.jump(bpf::BPF_JEQ_K, nr, Target::To(target), miss);
        }
        if targets.is_empty() {
            asm.always(otherwise);
        }
        return;
    }
    let (lower, upper) = targets.split_at(targets.len() / 2);
    let upper_half = asm.label();
    asm.jump(
        bpf::BPF_JGE_K,
        upper[0].0,
        Target::To(upper_half),
        Target::Next,
    );
    search(asm, lower, otherwise);
    asm.place(upper_half);
    search(asm, upper, otherwise);
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
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    };

    /// The same lists compiled as the launcher did before the binary search: by
    /// seccompiler (a chain of one test per listed call, the architecture checked
    /// first), plus a filter answering ENOSYS above `newest` and for clone3, installed
    /// after it.
    fn seccompiler_filters(
        capabilities: &[Capability],
        newest: u32,
    ) -> Vec<Vec<libc::sock_filter>> {
        let has = |cap: Capability| capabilities.contains(&cap);
        let condition = |len, op, value| SeccompCondition::new(0, len, op, value).unwrap();
        let mut refused: BTreeMap<i64, Vec<SeccompRule>> =
            ALWAYS_REFUSED.iter().map(|&nr| (nr, Vec::new())).collect();
        for (cap, calls) in REFUSED_WITHOUT {
            if !has(*cap) {
                refused.extend(calls.iter().map(|&nr| (nr, Vec::new())));
            }
        }
        if !has(Capability::SYS_ADMIN) {
            let rules = CLONE_NAMESPACE_FLAGS
                .iter()
                .map(|&flag| {
                    let flag = flag as u64;
                    let masked =
                        condition(SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag);
                    SeccompRule::new(vec![masked]).unwrap()
                })
                .collect();
            refused.insert(libc::SYS_clone, rules);
        }
        let vsock = condition(
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            libc::AF_VSOCK as u64,
        );
        refused.insert(
            libc::SYS_socket,
            vec![SeccompRule::new(vec![vsock]).unwrap()],
        );
        let chain: seccompiler::BpfProgram = SeccompFilter::new(
            refused,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            std::env::consts::ARCH.try_into().unwrap(),
        )
        .unwrap()
        .try_into()
        .unwrap();
        let chain = chain
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let enosys = bpf::RET_ERRNO | libc::ENOSYS as u32;
        let mut tail = Assembler::default();
        let unimplemented = tail.label();
        tail.load(bpf::OFFSET_NR);
        tail.jump(
            bpf::BPF_JGT_K,
            newest,
            Target::To(unimplemented),
            Target::Next,
        );
        if !has(Capability::SYS_ADMIN) {
            tail.jump(
                bpf::BPF_JEQ_K,
                libc::SYS_clone3 as u32,
                Target::To(unimplemented),
                Target::Next,
            );
        }
        tail.ret(bpf::RET_ALLOW);
        tail.place(unimplemented);
        tail.ret(enosys);
        vec![chain, tail.finish().unwrap()]
    }

    /// The first arguments the rules look at: nothing, each namespace flag alone and
    /// with other bits, bits only in the high word, every bit, and socket families.
    fn first_arguments() -> Vec<u64> {
        let mut values = vec![0, 1, u64::MAX, 0xffff_ffff, 0xffff_ffff_0000_0000];
        for &flag in &CLONE_NAMESPACE_FLAGS {
            let flag = flag as u64;
            values.extend([flag, flag | libc::SIGCHLD as u64, flag << 32, !flag]);
        }
        let vsock = libc::AF_VSOCK as u64;
        values.extend([vsock, vsock | 1 << 32, vsock + 1, libc::AF_INET as u64]);
        values.extend([(libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64]);
        values
    }

    /// Every capability set that changes the profile: none, each governing one alone,
    /// and all.
    fn capability_sets() -> Vec<Vec<Capability>> {
        let mut sets = vec![Vec::new(), Capability::ALL.to_vec()];
        sets.extend(REFUSED_WITHOUT.iter().map(|(cap, _)| vec![*cap]));
        sets
    }

    #[test]
    fn the_search_decides_every_call_of_both_abis_as_seccompilers_chain_does() {
        let calls = (0..1024u32)
            .chain((0..1024).map(|nr| nr | bpf::X32_SYSCALL_BIT))
            .chain([0x7fff_ffff, 0x8000_0000, u32::MAX]);
        let calls: Vec<u32> = calls.collect();
        let arguments = first_arguments();
        for capabilities in capability_sets() {
            let ours = compile(&answers(&capabilities), NEWEST_REVIEWED_CALL).unwrap();
            let theirs = seccompiler_filters(&capabilities, NEWEST_REVIEWED_CALL);
            for arch in [bpf::AUDIT_ARCH_X86_64, bpf::AUDIT_ARCH_I386] {
                for &nr in &calls {
                    for &first in &arguments {
                        let args = [first, 1, 2, 3, 4, 5];
                        let expected = bpf::combined(
                            &theirs
                                .iter()
                                .map(|f| bpf::run(f, arch, nr, args))
                                .collect::<Vec<_>>(),
                        );
                        let got = bpf::run(&ours, arch, nr, args);
                        assert_eq!(
                            got, expected,
                            "arch {arch:#x} call {nr:#x} first argument {first:#x} with {capabilities:?}"
                        );
                    }
                }
            }
            // The search is what makes it short: under half seccompiler's length.
            let chain: usize = theirs.iter().map(Vec::len).sum();
            assert!(ours.len() * 2 < chain, "{} against {chain}", ours.len());
        }
    }

    #[test]
    fn the_comparison_would_see_a_difference() {
        // A control for the test above: a profile that forgets one call differs.
        let mut fewer = answers(&[]);
        fewer.remove(&(libc::SYS_bpf as u32));
        let ours = compile(&fewer, NEWEST_REVIEWED_CALL).unwrap();
        let theirs = seccompiler_filters(&[], NEWEST_REVIEWED_CALL);
        let nr = libc::SYS_bpf as u32;
        let arch = bpf::AUDIT_ARCH_X86_64;
        let expected = bpf::combined(
            &theirs
                .iter()
                .map(|f| bpf::run(f, arch, nr, [0; 6]))
                .collect::<Vec<_>>(),
        );
        assert_ne!(bpf::run(&ours, arch, nr, [0; 6]), expected);
    }

    #[test]
    fn the_default_profile_compiles_for_every_capability_set() {
        for capabilities in capability_sets() {
            assert!(SeccompProfile::default_for(&capabilities).is_ok());
        }
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
                program: compile(&answers(&Capability::ALL), 450).unwrap(),
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
