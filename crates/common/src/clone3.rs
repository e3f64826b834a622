//! clone3(2) used as fork(2) into new namespaces: the launcher's container and the
//! builder's trace sandbox both start their first process this way, with every
//! namespace flag in one call so the kernel builds them in a single step.
//!
//! A fork copies only the calling thread. A lock (the allocator's, stdio's) held by
//! another thread at that instant stays locked forever in the child, and the child
//! allocates before it execs. So the fork is refused while the process has more than
//! one thread, instead of leaving a child that may hang on its first allocation.

use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// What to clone into.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForkOptions {
    /// CLONE_NEW* flags (and any other clone flag that makes sense without CLONE_VM).
    pub flags: u64,
    /// A cgroup v2 directory's fd: the child starts in it (CLONE_INTO_CGROUP), with no
    /// migration afterwards, which would cost a global RCU grace period.
    pub cgroup: Option<RawFd>,
    /// Return a pidfd of the child (CLONE_PIDFD), which no PID reuse can make name
    /// another process.
    pub pidfd: bool,
}

/// Where the calling process is after [`fork_into_namespaces`].
#[derive(Debug)]
pub enum Forked {
    /// In the parent; the child's PID as the parent's PID namespace sees it.
    Parent {
        pid: libc::pid_t,
        pidfd: Option<OwnedFd>,
    },
    /// In the child.
    Child,
}

/// Why there is no child.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    /// The process runs other threads, whose held locks the child would inherit.
    #[error(
        "{threads} threads are running, and a fork copies only one of them (the \
         others' locks would stay held in the child): an internal error, please report it"
    )]
    Threaded { threads: usize },
    /// Counting the threads failed.
    #[error("counting this process's threads (/proc/self/stat): {0}")]
    ThreadCount(io::Error),
    /// The kernel refused the clone.
    #[error(transparent)]
    Clone(io::Error),
}

/// Forks into new namespaces. Like fork(2): no new stack, the child gets a copy of the
/// address space and returns here as [`Forked::Child`].
pub fn fork_into_namespaces(options: ForkOptions) -> Result<Forked, ForkError> {
    wait_until_single_threaded()?;
    let mut pidfd: RawFd = -1;
    let mut flags = options.flags;
    if options.cgroup.is_some() {
        flags |= CLONE_INTO_CGROUP;
    }
    if options.pidfd {
        flags |= libc::CLONE_PIDFD as u64;
    }
    let args = CloneArgs {
        flags,
        pidfd: if options.pidfd {
            &mut pidfd as *mut RawFd as u64
        } else {
            0
        },
        exit_signal: libc::SIGCHLD as u64,
        cgroup: options.cgroup.map_or(0, |fd| fd as u64),
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM and with a null stack behaves like fork(2), and
    // the process is single-threaded (checked above); `args` lives across the call and
    // `pidfd` is written by the kernel before it returns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        return Err(ForkError::Clone(io::Error::last_os_error()));
    }
    if ret == 0 {
        return Ok(Forked::Child);
    }
    // SAFETY: with CLONE_PIDFD the kernel made this fd for us; nothing else owns it.
    let pidfd = options
        .pidfd
        .then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    Ok(Forked::Parent {
        pid: ret as libc::pid_t,
        pidfd,
    })
}

/// Returns once this process runs one thread. A thread that was just joined has left
/// all user code, but the kernel counts it until its exit completes, a few microseconds
/// later: that is waited for. A thread still running after [`LINGER`] is an error.
fn wait_until_single_threaded() -> Result<(), ForkError> {
    let deadline = std::time::Instant::now() + LINGER;
    loop {
        let threads = thread_count().map_err(ForkError::ThreadCount)?;
        if threads <= 1 {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(ForkError::Threaded { threads });
        }
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

/// How long a joined thread may stay counted by the kernel.
const LINGER: std::time::Duration = std::time::Duration::from_millis(50);

/// How many threads this process runs: field 20 of /proc/self/stat, counted after the
/// command name's closing parenthesis (the name itself may hold spaces and parentheses).
pub fn thread_count() -> io::Result<usize> {
    // One open and one read into a stack buffer: this runs on every launch.
    let mut stat = [0u8; 1024];
    let mut file = std::fs::File::open("/proc/self/stat")?;
    let len = file.read(&mut stat)?;
    threads_in_stat(&stat[..len])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no thread count in it"))
}

fn threads_in_stat(stat: &[u8]) -> Option<usize> {
    let after_name = stat.iter().rposition(|&b| b == b')')? + 1;
    let fields = std::str::from_utf8(&stat[after_name..]).ok()?;
    // After the name: state (field 3), ..., num_threads (field 20).
    fields.split_ascii_whitespace().nth(20 - 3)?.parse().ok()
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of clone3(2), version 2 (up to `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_count_is_read_past_a_name_with_parentheses() {
        let stat = b"4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 3 0 99";
        assert_eq!(threads_in_stat(stat), Some(3));
        assert_eq!(threads_in_stat(b"4242 (truncated"), None);
    }

    #[test]
    fn another_thread_running_refuses_the_fork() {
        let before = thread_count().unwrap();
        let (stop, wait) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || wait.recv());
        assert_eq!(thread_count().unwrap(), before + 1);
        let started = std::time::Instant::now();
        // Without the check this would fork: the child leaves at once, so a failing
        // test does not run twice.
        let result = fork_into_namespaces(ForkOptions::default());
        if let Ok(Forked::Child) = result {
            // SAFETY: leaving the forked child without running anything of the parent's.
            unsafe { libc::_exit(0) };
        }
        assert!(
            matches!(result, Err(ForkError::Threaded { threads }) if threads >= 2),
            "{result:?}"
        );
        assert!(started.elapsed() >= LINGER);
        drop(stop);
        let _ = thread.join();
    }
}
