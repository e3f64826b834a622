//! Following the probe's processes with ptrace, stopping only at file and exec calls.
//!
//! A seccomp filter, installed by the probe's first process before it executes the
//! shell ([`file_call_filter`], [`install`]), answers SECCOMP_RET_TRACE for the calls
//! that name a path to open, execute, stat, check or read as a link, and lets every
//! other call run untouched: the probe stops only where there is something to learn
//! (the idea of `strace --seccomp-bpf`). At each such stop [`follow`] reads the path
//! from the process's memory, makes it absolute as the program named it, lets the call
//! run to its exit and keeps the path only if the call succeeded: the ENOENT probes
//! along a search path are not files to copy.
//!
//! Every process the probe starts is followed (PTRACE_O_TRACEFORK, VFORK, CLONE) and
//! dies if the tracer does (PTRACE_O_EXITKILL).

use std::collections::{HashMap, HashSet};
use std::io;

use super::paths;
use super::StepError;

/// One path a successful call named: absolute, as the program named it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub path: Vec<u8>,
    /// Whether a symlink as the last component was followed (not for lstat, readlink,
    /// O_NOFOLLOW).
    pub follow_last: bool,
    /// An execve or execveat: the path was run as a program.
    pub executed: bool,
}

/// How a call treats a symlink as its last component.
#[derive(Debug, Clone, Copy)]
enum LastLink {
    Followed,
    NotFollowed,
    /// Not followed when argument `.0` carries flag `.1`.
    UnlessFlag(usize, u64),
    /// openat2: flags are the first field of the `struct open_how` at argument `.0`.
    UnlessOpenHowNoFollow(usize),
}

/// A call the filter stops: which arguments hold the dirfd and the path.
#[derive(Debug, Clone, Copy)]
struct FileCall {
    nr: libc::c_long,
    dirfd: Option<usize>,
    path: usize,
    last_link: LastLink,
    /// Calls the filter lets through when argument `.0` carries AT_EMPTY_PATH: glibc's
    /// fstat is `fstatat(fd, "", AT_EMPTY_PATH)`, a call on an fd already seen opened,
    /// and far too frequent to stop for.
    empty_path_flags: Option<usize>,
}

const AT_SYMLINK_NOFOLLOW: u64 = libc::AT_SYMLINK_NOFOLLOW as u64;
const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;
const O_NOFOLLOW: u64 = libc::O_NOFOLLOW as u64;

const fn call(
    nr: libc::c_long,
    dirfd: Option<usize>,
    path: usize,
    last_link: LastLink,
) -> FileCall {
    FileCall {
        nr,
        dirfd,
        path,
        last_link,
        empty_path_flags: None,
    }
}

/// The calls that stop, in the order the filter tests them (the frequent ones first).
const FILE_CALLS: &[FileCall] = &[
    call(
        libc::SYS_openat,
        Some(0),
        1,
        LastLink::UnlessFlag(2, O_NOFOLLOW),
    ),
    FileCall {
        empty_path_flags: Some(3),
        ..call(
            libc::SYS_newfstatat,
            Some(0),
            1,
            LastLink::UnlessFlag(3, AT_SYMLINK_NOFOLLOW),
        )
    },
    FileCall {
        empty_path_flags: Some(2),
        ..call(
            libc::SYS_statx,
            Some(0),
            1,
            LastLink::UnlessFlag(2, AT_SYMLINK_NOFOLLOW),
        )
    },
    call(libc::SYS_readlinkat, Some(0), 1, LastLink::NotFollowed),
    call(libc::SYS_faccessat, Some(0), 1, LastLink::Followed),
    call(
        libc::SYS_faccessat2,
        Some(0),
        1,
        LastLink::UnlessFlag(3, AT_SYMLINK_NOFOLLOW),
    ),
    call(libc::SYS_execve, None, 0, LastLink::Followed),
    call(
        libc::SYS_execveat,
        Some(0),
        1,
        LastLink::UnlessFlag(4, AT_SYMLINK_NOFOLLOW),
    ),
    call(
        libc::SYS_openat2,
        Some(0),
        1,
        LastLink::UnlessOpenHowNoFollow(2),
    ),
    call(libc::SYS_chdir, None, 0, LastLink::Followed),
    call(libc::SYS_statfs, None, 0, LastLink::Followed),
    // The calls x86_64 keeps from before the *at family.
    #[cfg(target_arch = "x86_64")]
    call(libc::SYS_open, None, 0, LastLink::UnlessFlag(1, O_NOFOLLOW)),
    #[cfg(target_arch = "x86_64")]
    call(libc::SYS_stat, None, 0, LastLink::Followed),
    #[cfg(target_arch = "x86_64")]
    call(libc::SYS_lstat, None, 0, LastLink::NotFollowed),
    #[cfg(target_arch = "x86_64")]
    call(libc::SYS_access, None, 0, LastLink::Followed),
    #[cfg(target_arch = "x86_64")]
    call(libc::SYS_readlink, None, 0, LastLink::NotFollowed),
    #[cfg(target_arch = "x86_64")]
    call(libc::SYS_creat, None, 0, LastLink::Followed),
    #[cfg(target_arch = "x86_64")]
    call(libc::SYS_uselib, None, 0, LastLink::Followed),
];

fn is_exec(nr: libc::c_long) -> bool {
    nr == libc::SYS_execve || nr == libc::SYS_execveat
}

/// The AUDIT_ARCH_* of this build's calls: calls of another ABI (32-bit x86 on x86_64)
/// have other numbers, and the filter lets them run unseen.
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xC000_00B7;

/// The seccomp program: TRACE for [`FILE_CALLS`] of the native ABI (bar those on an
/// empty path with AT_EMPTY_PATH), ALLOW for everything else.
pub fn file_call_filter() -> Vec<libc::sock_filter> {
    // Offsets in `struct seccomp_data`: nr, arch, then the arguments (64 bits each; the
    // flags tested are in the low word, first on a little-endian machine).
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let arg_low = |i: usize| 16 + 8 * i as u32;
    let load = |offset: u32| bpf(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset, 0, 0);
    let plain: Vec<&FileCall> = FILE_CALLS
        .iter()
        .filter(|c| c.empty_path_flags.is_none())
        .collect();
    let with_empty: Vec<&FileCall> = FILE_CALLS
        .iter()
        .filter(|c| c.empty_path_flags.is_some())
        .collect();
    // Layout: arch test, nr load, one JEQ per plain call, three instructions per call
    // with an empty-path test, then RET ALLOW and RET TRACE.
    let allow = 3 + plain.len() + 3 * with_empty.len();
    let trace = allow + 1;
    let jump = |from: usize, to: usize| (to - from - 1) as u8;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let mut program = vec![
        load(ARCH),
        bpf(jeq, NATIVE_ARCH, 0, jump(1, allow)),
        load(NR),
    ];
    for c in plain {
        let at = program.len();
        program.push(bpf(jeq, c.nr as u32, jump(at, trace), 0));
    }
    for c in with_empty {
        let at = program.len();
        let flags = c.empty_path_flags.unwrap_or(0);
        program.push(bpf(jeq, c.nr as u32, 0, 2));
        program.push(load(arg_low(flags)));
        program.push(bpf(
            libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
            AT_EMPTY_PATH as u32,
            jump(at + 2, allow),
            jump(at + 2, trace),
        ));
    }
    let ret = libc::BPF_RET | libc::BPF_K;
    program.push(bpf(ret, libc::SECCOMP_RET_ALLOW, 0, 0));
    program.push(bpf(ret, libc::SECCOMP_RET_TRACE, 0, 0));
    program
}

fn bpf(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Installs `filter` on the calling process (the probe's first process, before exec).
/// Root in its namespace needs no no_new_privs; without the privilege the kernel asks
/// for it, and it is set then.
pub fn install(filter: &[libc::sock_filter]) -> io::Result<()> {
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    let set = || {
        // SAFETY: a valid program that outlives the call (the kernel copies it).
        unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &program as *const libc::sock_fprog,
            )
        }
    };
    if set() == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EACCES) {
        return Err(e);
    }
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 || set() != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The options the tracer sets on the probe's first process; its descendants inherit
/// them.
const OPTIONS: libc::c_int = libc::PTRACE_O_TRACESECCOMP
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_TRACESYSGOOD
    | libc::PTRACE_O_EXITKILL;

/// What following the probe gave: the paths of its successful calls, and its exit
/// status (128 + signal for a signal).
pub struct Followed {
    pub accesses: HashSet<Access>,
    pub exit_status: i32,
}

/// A call that stopped at its entry and whose outcome is awaited.
struct Pending {
    access: Access,
}

/// Follows `init` (stopped by its own SIGSTOP, traced since PTRACE_TRACEME) and every
/// process it starts, until `init` has ended; the kernel ends its PID namespace's other
/// processes first, so nothing of the probe is left then.
pub fn follow(init: libc::pid_t) -> Result<Followed, StepError> {
    let mut status = 0;
    let first = wait(init, &mut status).map_err(|e| step("waiting for the probe's start", e))?;
    let mut followed = Followed {
        accesses: HashSet::new(),
        exit_status: 0,
    };
    if first != init || !libc::WIFSTOPPED(status) {
        // It ended before it could be traced: its setup failed, and said why.
        followed.exit_status = exit_status(status);
        return Ok(followed);
    }
    // SAFETY: our stopped tracee.
    if unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, init, 0, OPTIONS) } < 0 {
        let e = io::Error::last_os_error();
        kill(init);
        return Err(step("setting the tracing options", e));
    }
    resume(libc::PTRACE_CONT, init, 0);
    let mut started: HashSet<libc::pid_t> = [init].into();
    let mut pending: HashMap<libc::pid_t, Pending> = HashMap::new();
    // The probe's own `/bin/sh` is the sandbox's, not the probe's: its exec is not kept.
    let mut wrapper_exec = true;
    loop {
        let pid = match wait(-1, &mut status) {
            Ok(pid) => pid,
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                return Err(step("waiting for the probe", e));
            }
            Err(e) => return Err(step("waiting for the probe", e)),
        };
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            pending.remove(&pid);
            started.remove(&pid);
            if pid == init {
                followed.exit_status = exit_status(status);
                return Ok(followed);
            }
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let signal = libc::WSTOPSIG(status);
        let event = status >> 16;
        match (signal, event) {
            (libc::SIGTRAP, libc::PTRACE_EVENT_SECCOMP) => match entry(pid) {
                Some(p) if p.access.executed && wrapper_exec && pid == init => {
                    wrapper_exec = false;
                    resume(libc::PTRACE_CONT, pid, 0);
                }
                Some(p) => {
                    pending.insert(pid, p);
                    resume(libc::PTRACE_SYSCALL, pid, 0);
                }
                None => resume(libc::PTRACE_CONT, pid, 0),
            },
            (s, _) if s == libc::SIGTRAP | 0x80 => match syscall_info(pid) {
                Some(info) if info.op == libc::PTRACE_SYSCALL_INFO_EXIT => {
                    let rval = info.data[0] as i64;
                    if let Some(p) = pending.remove(&pid) {
                        if rval >= 0 {
                            followed.accesses.insert(p.access);
                        }
                    }
                    resume(libc::PTRACE_CONT, pid, 0);
                }
                // A syscall-entry stop: the exit is still to come.
                Some(_) if pending.contains_key(&pid) => resume(libc::PTRACE_SYSCALL, pid, 0),
                _ => resume(libc::PTRACE_CONT, pid, 0),
            },
            (libc::SIGTRAP, libc::PTRACE_EVENT_EXEC) => {
                // A thread other than the leader may have executed: it now has the
                // leader's PID, and its pending call is under its former one.
                let former = event_message(pid).unwrap_or(pid as u64) as libc::pid_t;
                let done = pending.remove(&former);
                pending.remove(&pid);
                if let Some(p) = done.filter(|p| p.access.executed) {
                    followed.accesses.insert(p.access);
                }
                resume(libc::PTRACE_CONT, pid, 0);
            }
            (libc::SIGTRAP, _) if event != 0 => {
                // Fork, vfork and clone events: the new process stops on its own.
                resume(libc::PTRACE_CONT, pid, 0);
            }
            (libc::SIGSTOP, _) if !started.contains(&pid) => {
                // A new process's first stop, attached by the kernel.
                started.insert(pid);
                resume(libc::PTRACE_CONT, pid, 0);
            }
            (signal, _) => {
                // A signal for the probe: delivered. A group-stop (no siginfo) is let go
                // on, as tracers that do not seize do.
                let deliver = if has_siginfo(pid) { signal } else { 0 };
                resume(libc::PTRACE_CONT, pid, deliver);
            }
        }
    }
}

fn step(what: &str, source: io::Error) -> StepError {
    StepError {
        step: format!("ptrace: {what}"),
        source,
    }
}

/// The access a call stopped at its entry names, if it names a path.
fn entry(pid: libc::pid_t) -> Option<Pending> {
    let info = syscall_info(pid)?;
    if info.op != libc::PTRACE_SYSCALL_INFO_SECCOMP || info.arch != NATIVE_ARCH {
        return None;
    }
    let nr = info.data[0] as libc::c_long;
    let args = &info.data[1..7];
    let call = FILE_CALLS.iter().find(|c| c.nr == nr)?;
    let named = read_c_string(pid, args[call.path])?;
    let base = match (named.first(), call.dirfd) {
        (Some(b'/'), _) | (None, _) => None,
        (Some(_), None) => paths::base_dir(pid, libc::AT_FDCWD),
        (Some(_), Some(i)) => paths::base_dir(pid, args[i] as i32),
    };
    let path = paths::absolute(base.as_deref(), &named)?;
    let follow_last = match call.last_link {
        LastLink::Followed => true,
        LastLink::NotFollowed => false,
        LastLink::UnlessFlag(i, flag) => args[i] & flag == 0,
        LastLink::UnlessOpenHowNoFollow(i) => {
            let mut flags = [0u8; 8];
            read_memory(pid, args[i], &mut flags) != 8
                || u64::from_ne_bytes(flags) & O_NOFOLLOW == 0
        }
    };
    Some(Pending {
        access: Access {
            path,
            follow_last,
            executed: is_exec(nr),
        },
    })
}

/// `struct ptrace_syscall_info`, its union as plain words: for a seccomp stop, `nr` then
/// six arguments; for an exit stop, the return value then `is_error`.
#[repr(C)]
struct SyscallInfo {
    op: u8,
    _reserved: u8,
    _flags: u16,
    arch: u32,
    _instruction_pointer: u64,
    _stack_pointer: u64,
    data: [u64; 8],
}

fn syscall_info(pid: libc::pid_t) -> Option<SyscallInfo> {
    let mut info = SyscallInfo {
        op: 0,
        _reserved: 0,
        _flags: 0,
        arch: 0,
        _instruction_pointer: 0,
        _stack_pointer: 0,
        data: [0; 8],
    };
    // SAFETY: the kernel writes at most `size` bytes into `info`.
    let n = unsafe {
        libc::ptrace(
            libc::PTRACE_GET_SYSCALL_INFO,
            pid,
            std::mem::size_of::<SyscallInfo>(),
            &mut info as *mut SyscallInfo,
        )
    };
    (n > 0).then_some(info)
}

/// Reads the NUL-terminated string at `addr` in `pid` (at most PATH_MAX bytes), a page
/// at a time so that a string ending just before an unmapped page is still read.
fn read_c_string(pid: libc::pid_t, addr: u64) -> Option<Vec<u8>> {
    const PAGE: u64 = 4096;
    const MAX: usize = libc::PATH_MAX as usize;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < MAX {
        let chunk = ((PAGE - at % PAGE) as usize).min(MAX - out.len());
        let mut buf = vec![0u8; chunk];
        let n = read_memory(pid, at, &mut buf);
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Some(out);
        }
        out.extend_from_slice(&buf[..n]);
        at += n as u64;
    }
    None
}

/// process_vm_readv of `buf.len()` bytes at `addr`; the count read (0 on failure).
fn read_memory(pid: libc::pid_t, addr: u64, buf: &mut [u8]) -> usize {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the local iovec covers `buf`; the remote one is only read by the kernel.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    n.max(0) as usize
}

fn wait(pid: libc::pid_t, status: &mut libc::c_int) -> io::Result<libc::pid_t> {
    loop {
        // SAFETY: a valid status pointer.
        let got = unsafe { libc::waitpid(pid, status, libc::__WALL) };
        if got >= 0 {
            return Ok(got);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Restarts a stopped tracee. It may be gone already (killed with its namespace), which
/// the next wait reports.
fn resume(request: libc::c_uint, pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: plain ptrace request on our tracee.
    unsafe { libc::ptrace(request, pid, 0, signal) };
}

fn event_message(pid: libc::pid_t) -> Option<u64> {
    let mut message: libc::c_ulong = 0;
    // SAFETY: the kernel writes one unsigned long.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            pid,
            0,
            &mut message as *mut libc::c_ulong,
        )
    };
    (ret == 0).then_some(message as u64)
}

fn has_siginfo(pid: libc::pid_t) -> bool {
    // SAFETY: siginfo_t is plain data; the kernel fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a siginfo_t.
    unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGINFO,
            pid,
            0,
            &mut info as *mut libc::siginfo_t,
        ) == 0
    }
}

fn kill(pid: libc::pid_t) {
    // SAFETY: our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// A wait status as a shell reports it: the exit code, or 128 + the signal's number.
pub fn exit_status(status: libc::c_int) -> i32 {
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the filter program on one call, as the kernel would.
    fn run(program: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = program[pc];
            let code = ins.code as u32;
            match code & 0x07 {
                c if c == libc::BPF_LD => {
                    let k = ins.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                    pc += 1;
                }
                c if c == libc::BPF_JMP => {
                    let taken = match code & 0xf0 {
                        op if op == libc::BPF_JEQ => acc == ins.k,
                        op if op == libc::BPF_JSET => acc & ins.k != 0,
                        _ => panic!("unexpected jump"),
                    };
                    pc += 1 + if taken { ins.jt } else { ins.jf } as usize;
                }
                c if c == libc::BPF_RET => return ins.k,
                _ => panic!("unexpected instruction"),
            }
        }
    }

    #[test]
    fn the_filter_stops_file_calls_only() {
        let program = file_call_filter();
        let trace = libc::SECCOMP_RET_TRACE;
        let allow = libc::SECCOMP_RET_ALLOW;
        let nr = |n: libc::c_long| n as u32;
        assert_eq!(
            run(&program, NATIVE_ARCH, nr(libc::SYS_openat), [0; 6]),
            trace
        );
        assert_eq!(
            run(&program, NATIVE_ARCH, nr(libc::SYS_execve), [0; 6]),
            trace
        );
        assert_eq!(
            run(&program, NATIVE_ARCH, nr(libc::SYS_read), [0; 6]),
            allow
        );
        assert_eq!(
            run(&program, NATIVE_ARCH, nr(libc::SYS_write), [0; 6]),
            allow
        );
        // fstat as glibc makes it: fstatat(fd, "", AT_EMPTY_PATH).
        let empty = [3, 0, 0, AT_EMPTY_PATH, 0, 0];
        assert_eq!(
            run(&program, NATIVE_ARCH, nr(libc::SYS_newfstatat), empty),
            allow
        );
        let lstat = [0, 0, 0, AT_SYMLINK_NOFOLLOW, 0, 0];
        assert_eq!(
            run(&program, NATIVE_ARCH, nr(libc::SYS_newfstatat), lstat),
            trace
        );
        let statx_empty = [3, 0, AT_EMPTY_PATH, 0, 0, 0];
        assert_eq!(
            run(&program, NATIVE_ARCH, nr(libc::SYS_statx), statx_empty),
            allow
        );
        assert_eq!(
            run(&program, NATIVE_ARCH, nr(libc::SYS_statx), [0; 6]),
            trace
        );
        // Another ABI's numbers mean other calls: not stopped.
        assert_eq!(
            run(&program, 0x4000_0003, nr(libc::SYS_openat), [0; 6]),
            allow
        );
    }

    #[test]
    fn exit_statuses_read_as_a_shell_reports_them() {
        assert_eq!(exit_status(3 << 8), 3);
        assert_eq!(exit_status(libc::SIGKILL), 128 + 9);
    }
}
