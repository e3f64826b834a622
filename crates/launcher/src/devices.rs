//! `/dev` inside the container: a small tmpfs holding only the harmless character
//! devices, a devpts instance of its own (so the container's terminals are not the
//! host's), `/dev/shm`, and the usual links into /proc/self/fd.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FileType, Mode};

use crate::error::LaunchError;
use crate::rootfs::{self, MountPoint};
use crate::storage;

/// The devices a container gets: (name, major, minor).
pub(crate) const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

pub(crate) const LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// Builds `/dev` in the new root. In a user namespace device nodes cannot be created, so
/// the host's nodes are bind-mounted instead (as bubblewrap does).
/// `/dev/shm` holds at most `shm_size` bytes (see [`crate::storage`]).
pub fn populate(root: &OwnedFd, in_user_namespace: bool, shm_size: u64) -> Result<(), LaunchError> {
    rootfs::mount_fresh(
        root,
        "/dev",
        c"tmpfs",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some(c"mode=0755,size=64k"),
    )?;
    let dev = rootfs::mount_point(root, "/dev", MountPoint::Dir)?;
    for (name, major, minor) in DEVICES {
        if in_user_namespace {
            rootfs::bind(
                root,
                Path::new(&format!("/dev/{name}")),
                &format!("/dev/{name}"),
                MountPoint::File,
                false,
            )?;
        } else {
            make_node(&dev, name, major, minor)?;
        }
    }
    for (name, target) in LINKS {
        symlink(&dev, name, target)?;
    }
    // A new devpts instance: the container sees only its own ptys, and `ptmx` is
    // usable by everyone inside. gid 5 (tty) only where it is mapped.
    let devpts_options = if in_user_namespace {
        c"newinstance,ptmxmode=0666,mode=0620"
    } else {
        c"newinstance,ptmxmode=0666,mode=0620,gid=5"
    };
    rootfs::mount_fresh(
        root,
        "/dev/pts",
        c"devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some(devpts_options),
    )?;
    rootfs::mount_fresh(
        root,
        "/dev/shm",
        c"tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(&storage::tmpfs_data(shm_size, 0o1777)),
    )
}

fn make_node(dev: &OwnedFd, name: &str, major: u32, minor: u32) -> Result<(), LaunchError> {
    // The process umask is 0 during setup: the node gets 0666 as it is.
    rustix::fs::mknodat(
        dev,
        name,
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(major, minor),
    )
    .map_err(|e| LaunchError::setup(format!("creating /dev/{name}"), e.into()))
}

fn symlink(dev: &OwnedFd, name: &str, target: &str) -> Result<(), LaunchError> {
    rustix::fs::symlinkat(target, dev, name)
        .map_err(|e| LaunchError::setup(format!("linking /dev/{name}"), e.into()))
}

/// After pivot_root, in a user namespace: checks that each of [`DEVICES`] in /dev is the
/// character device it should be (there they are the host's nodes, bound in: a host
/// whose /dev/null were a regular file would otherwise hand the container a host file).
/// Outside one, the nodes were made by [`populate`] in a fresh tmpfs.
pub fn verify() -> Result<(), LaunchError> {
    for (name, major, minor) in DEVICES {
        let is_the_device = rustix::fs::lstat(format!("/dev/{name}").as_str()).is_ok_and(|st| {
            FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice
                && st.st_rdev == rustix::fs::makedev(major, minor)
        });
        if !is_the_device {
            return Err(LaunchError::Invalid(format!(
                "/dev/{name} in the container is not the character device {major},{minor}; check the host's /dev/{name}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs [`verify`] in a forked child with a mount namespace of its own, where a
    /// regular file is bound over /dev/null when `plant_a_file` is set; the child's exit
    /// status says whether the check passed (0) or refused (1).
    fn verify_in_child(plant_a_file: bool) -> i32 {
        let planted = tempfile::NamedTempFile::new().unwrap();
        let planted_c =
            std::ffi::CString::new(planted.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: the child makes syscalls and calls verify (glibc's malloc is safe
        // after fork), then leaves with _exit; the parent only waits for it.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
            if pid == 0 {
                let private = libc::MS_REC | libc::MS_PRIVATE;
                let ready = libc::unshare(libc::CLONE_NEWNS) == 0
                    && libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        private,
                        std::ptr::null(),
                    ) == 0
                    && (!plant_a_file
                        || libc::mount(
                            planted_c.as_ptr(),
                            c"/dev/null".as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND,
                            std::ptr::null(),
                        ) == 0);
                let code = match (ready, verify()) {
                    (false, _) => 2,
                    (true, Ok(())) => 0,
                    (true, Err(_)) => 1,
                };
                libc::_exit(code);
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            libc::WEXITSTATUS(status)
        }
    }

    #[test]
    fn a_host_node_that_is_a_file_is_refused_and_the_real_ones_pass() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        // Control: the host's own nodes are the devices they should be.
        assert_eq!(verify_in_child(false), 0);
        // A regular file where /dev/null should be would hand the container a host file.
        assert_eq!(verify_in_child(true), 1);
    }
}
