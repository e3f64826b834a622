//! The calls the probe stops at: a table of the calls that name a path (which argument
//! holds the directory fd and the path, and whether a symlink as the last component is
//! followed), and the seccomp program, installed by the probe's first process, that
//! answers SECCOMP_RET_TRACE for them and lets every other call run untouched.

use std::io;

/// How a call treats a symlink as its last component.
#[derive(Debug, Clone, Copy)]
pub(super) enum LastLink {
    Followed,
    NotFollowed,
    /// Not followed when argument `.0` carries flag `.1`.
    UnlessFlag(usize, u64),
    /// openat2: flags are the first field of the `struct open_how` at argument `.0`.
    UnlessOpenHowNoFollow(usize),
}

/// A call the filter stops: which arguments hold the dirfd and the path.
#[derive(Debug, Clone, Copy)]
pub(super) struct FileCall {
    pub(super) nr: libc::c_long,
    pub(super) dirfd: Option<usize>,
    pub(super) path: usize,
    pub(super) last_link: LastLink,
    /// Calls the filter lets through when argument `.0` carries AT_EMPTY_PATH: glibc's
    /// fstat is `fstatat(fd, "", AT_EMPTY_PATH)`, a call on an fd already seen opened,
    /// and far too frequent to stop for.
    pub(super) empty_path_flags: Option<usize>,
}

const AT_SYMLINK_NOFOLLOW: u64 = libc::AT_SYMLINK_NOFOLLOW as u64;
const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;
pub(super) const O_NOFOLLOW: u64 = libc::O_NOFOLLOW as u64;

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
pub(super) const FILE_CALLS: &[FileCall] = &[
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

pub(super) fn is_exec(nr: libc::c_long) -> bool {
    nr == libc::SYS_execve || nr == libc::SYS_execveat
}

/// The AUDIT_ARCH_* of this build's calls: calls of another ABI (32-bit x86 on x86_64)
/// have other numbers, and the filter lets them run unseen.
#[cfg(target_arch = "x86_64")]
pub(super) const NATIVE_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
pub(super) const NATIVE_ARCH: u32 = 0xC000_00B7;

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
}
