//! The per-launch `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`: written outside
//! the image (in the launch's scratch tmpfs) and bind-mounted over the image's own
//! copies, which stay untouched.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::LaunchError;
use crate::network::NameFiles;
use crate::rootfs::{self, MountPoint};

/// The three files, as (name, content).
pub fn contents(hostname: &str, network: &NameFiles) -> [(&'static str, String); 3] {
    let address = network
        .address
        .map_or_else(|| "127.0.1.1".to_string(), |a| a.to_string());
    [
        ("hostname", format!("{hostname}\n")),
        (
            "hosts",
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{address}\t{hostname}\n"
            ),
        ),
        ("resolv.conf", network.resolv_conf.clone()),
    ]
}

/// Where the files go in the container: mount points for [`install`].
pub const MOUNT_POINTS: [(&str, MountPoint); 3] = [
    ("/etc/hostname", MountPoint::File),
    ("/etc/hosts", MountPoint::File),
    ("/etc/resolv.conf", MountPoint::File),
];

/// Writes the files into `scratch/etc` and bind-mounts each on `/etc/<name>`. They stay
/// writable, as docker's are (a program may add a host or a name server): writes land
/// in the scratch copy, never in the image.
pub fn install(
    scratch: &OwnedFd,
    root: &OwnedFd,
    hostname: &str,
    network: &NameFiles,
) -> Result<(), LaunchError> {
    let etc = rootfs::fd_path(scratch.as_raw_fd()) + "/etc";
    for (name, content) in contents(hostname, network) {
        let path = format!("{etc}/{name}");
        write_new(&path, content.as_bytes())
            .map_err(|e| LaunchError::setup(format!("writing /etc/{name}"), e))?;
        let target = rootfs::mount_point(root, &format!("/etc/{name}"), MountPoint::File)?;
        rootfs::mount(
            Some(&CString::new(path).expect("no NUL")),
            &rootfs::fd_path_c(target.as_raw_fd()),
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(|e| LaunchError::setup(format!("bind-mounting /etc/{name}"), e))?;
    }
    Ok(())
}

fn write_new(path: &str, content: &[u8]) -> std::io::Result<()> {
    let path_c = CString::new(path).expect("no NUL");
    // SAFETY: valid C string.
    let fd = unsafe {
        libc::open(
            path_c.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd that we own.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_names_the_container() {
        let none = NameFiles {
            address: None,
            resolv_conf: String::new(),
        };
        let [(_, hostname), (_, hosts), _] = contents("box1", &none);
        assert_eq!(hostname, "box1\n");
        assert!(hosts.contains("127.0.1.1\tbox1\n"));
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"));
    }
}
