//! The launcher's half of the setup on another CPU than the container's half.
//!
//! After the clone, the launcher makes the container's network namespace (about half a
//! millisecond of kernel work) while the container mounts its root. The two only overlap
//! if they run on different CPUs, and the kernel mostly places a new child on its
//! parent's CPU (9 launches in 10 on a 2-CPU machine, by `sched:sched_wakeup_new`), so
//! the child waited for the launcher to finish. The launcher therefore moves itself to
//! another CPU it may use for that work and goes back to its whole set afterwards. The
//! container is not touched: it keeps the CPU set it was born with.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The launcher's own CPU set, put back when dropped.
pub struct MovedAway {
    allowed: CpuSet,
}

/// Moves the calling thread to an allowed CPU other than the one it runs on; `None`
/// where there is no other (one CPU, or a cpuset of one) or the kernel says no.
pub fn move_off_current_cpu() -> Option<MovedAway> {
    let allowed = sched_getaffinity(Pid::from_raw(0)).ok()?;
    // SAFETY: sched_getcpu has no preconditions.
    let current = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
    let other =
        (0..CpuSet::count()).find(|&cpu| cpu != current && allowed.is_set(cpu).unwrap_or(false))?;
    let mut only_other = CpuSet::new();
    only_other.set(other).ok()?;
    sched_setaffinity(Pid::from_raw(0), &only_other).ok()?;
    Some(MovedAway { allowed })
}

impl Drop for MovedAway {
    fn drop(&mut self) {
        let _ = sched_setaffinity(Pid::from_raw(0), &self.allowed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed_cpus() -> Vec<usize> {
        let set = sched_getaffinity(Pid::from_raw(0)).unwrap();
        (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap())
            .collect()
    }

    #[test]
    fn moves_to_one_other_allowed_cpu_and_back() {
        let before = allowed_cpus();
        let moved = move_off_current_cpu();
        if before.len() < 2 {
            assert!(moved.is_none(), "nowhere else to go on {before:?}");
            return;
        }
        let moved = moved.expect("another allowed CPU");
        let now = allowed_cpus();
        assert_eq!(now.len(), 1);
        assert!(before.contains(&now[0]));
        // SAFETY: no preconditions.
        assert_eq!(unsafe { libc::sched_getcpu() } as usize, now[0]);
        drop(moved);
        assert_eq!(allowed_cpus(), before);
    }
}
