//! Following the probe's processes with ptrace, stopping only at file and exec calls.
//!
//! A seccomp filter, installed by the probe's first process before it executes the
//! shell ([`super::file_calls`]), answers SECCOMP_RET_TRACE for the calls
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

use super::file_calls::{is_exec, LastLink, FILE_CALLS, NATIVE_ARCH, O_NOFOLLOW};
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

    #[test]
    fn exit_statuses_read_as_a_shell_reports_them() {
        assert_eq!(exit_status(3 << 8), 3);
        assert_eq!(exit_status(libc::SIGKILL), 128 + 9);
    }
}
