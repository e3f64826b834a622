//! Control groups. Now: the container gets its own cgroup namespace (a flag of the clone,
//! see [`crate::namespaces::CONTAINER_NAMESPACES`]), so it sees its cgroup as `/`.
//!
//! Resource limits (issue 4) fit in at the launcher's go-ahead (see
//! [`crate::init::tie_to_launcher`]): the child waits there before its first mount,
//! so the launcher can create the container's cgroup (per [`CgroupLayout`]: one
//! hierarchy on v2, each controller's on v1, both on hybrid), write the child's PID
//! into it and only then let it go on. The child would then unshare its cgroup
//! namespace itself, so that the namespace is rooted at the new cgroup rather than at
//! the launcher's (the clone's would be).

use std::path::Path;

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// One unified hierarchy at /sys/fs/cgroup.
    V2,
    /// Controllers in v1 hierarchies under `/sys/fs/cgroup/<controller>`, and the v2
    /// hierarchy (holding no controllers) at /sys/fs/cgroup/unified.
    Hybrid,
    /// v1 hierarchies only.
    V1,
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

impl CgroupLayout {
    pub fn detect() -> Option<CgroupLayout> {
        if is_cgroup2(Path::new("/sys/fs/cgroup")) {
            Some(CgroupLayout::V2)
        } else if is_cgroup2(Path::new("/sys/fs/cgroup/unified")) {
            Some(CgroupLayout::Hybrid)
        } else if Path::new("/sys/fs/cgroup/memory").is_dir() {
            Some(CgroupLayout::V1)
        } else {
            None
        }
    }
}

fn is_cgroup2(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain data; valid C string.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe {
        libc::statfs(path.as_ptr(), &mut stat) == 0 && stat.f_type as i64 == CGROUP2_SUPER_MAGIC
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_has_a_cgroup_layout() {
        // Every host this runs on mounts cgroups in one of the three ways.
        assert!(CgroupLayout::detect().is_some());
    }
}
