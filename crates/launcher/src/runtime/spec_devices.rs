//! The container's device nodes: runc's default set and linux.devices, each made (or,
//! inside a user namespace, bound from the host) in the container's /dev.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::error::LaunchError;
use crate::rootfs::{self, MountPoint};
use crate::runtime::bundle::DeviceNode;

/// `/dev` as runc makes it on a tmpfs: the harmless character devices (the host's,
/// bound in, inside a user namespace), and the links into /proc/self/fd.
pub(super) fn default_devices(root: &OwnedFd, in_userns: bool) -> Result<(), LaunchError> {
    for (name, major, minor) in crate::devices::DEVICES {
        let node = DeviceNode {
            path: format!("/dev/{name}"),
            kind: libc::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        };
        make_device(root, &node, in_userns)?;
    }
    let dev = rootfs::mount_point(root, "/dev", MountPoint::Dir)?;
    for (name, target) in crate::devices::LINKS {
        let name_c = CString::new(name).expect("no NUL");
        let target_c = CString::new(target).expect("no NUL");
        // SAFETY: valid fd and C strings. An existing entry (a /dev/pts mount's ptmx
        // link made by the image) is left as it is.
        if unsafe { libc::symlinkat(target_c.as_ptr(), dev.as_raw_fd(), name_c.as_ptr()) } < 0
            && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
        {
            return Err(LaunchError::setup(
                format!("linking /dev/{name}"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// A device node of linux.devices (or a default one). In a user namespace nodes cannot
/// be made: the host's own node is bound in, as runc does rootless.
pub(super) fn make_device(
    root: &OwnedFd,
    device: &DeviceNode,
    in_userns: bool,
) -> Result<(), LaunchError> {
    let (parent_path, name) = device.path.rsplit_once('/').expect("checked: under /dev");
    if in_userns {
        return rootfs::bind(
            root,
            Path::new(&device.path),
            &device.path,
            MountPoint::File,
            false,
        );
    }
    let parent = rootfs::mount_point(root, parent_path, MountPoint::Dir)?;
    let name_c = CString::new(name)
        .map_err(|_| LaunchError::Invalid(format!("{}: contains a NUL byte", device.path)))?;
    let step = || format!("creating the device {}", device.path);
    // SAFETY: valid fd and C string. An existing node is replaced.
    unsafe {
        libc::unlinkat(parent.as_raw_fd(), name_c.as_ptr(), 0);
        if libc::mknodat(
            parent.as_raw_fd(),
            name_c.as_ptr(),
            device.kind | (device.mode & 0o7777),
            libc::makedev(device.major, device.minor),
        ) < 0
        {
            return Err(LaunchError::setup(step(), std::io::Error::last_os_error()));
        }
        if libc::fchownat(
            parent.as_raw_fd(),
            name_c.as_ptr(),
            device.uid,
            device.gid,
            libc::AT_SYMLINK_NOFOLLOW,
        ) < 0
        {
            return Err(LaunchError::setup(step(), std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
