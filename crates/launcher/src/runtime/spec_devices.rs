//! The container's device nodes: runc's default set and linux.devices, each made (or,
//! inside a user namespace, bound from the host) in the container's /dev.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Gid, Mode, Uid};
use rustix::io::Errno;

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
        // An existing entry (a /dev/pts mount's ptmx link made by the image) is left as
        // it is.
        match rustix::fs::symlinkat(target, &dev, name) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(LaunchError::setup(format!("linking /dev/{name}"), e.into())),
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
    // An existing node is replaced.
    let _ = rustix::fs::unlinkat(&parent, &*name_c, AtFlags::empty());
    rustix::fs::mknodat(
        &parent,
        &*name_c,
        FileType::from_raw_mode(device.kind),
        Mode::from_raw_mode(device.mode & 0o7777),
        rustix::fs::makedev(device.major, device.minor),
    )
    .map_err(|e| LaunchError::setup(step(), e.into()))?;
    let (uid, gid) = (Uid::from_raw(device.uid), Gid::from_raw(device.gid));
    rustix::fs::chownat(
        &parent,
        &*name_c,
        Some(uid),
        Some(gid),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| LaunchError::setup(step(), e.into()))
}
