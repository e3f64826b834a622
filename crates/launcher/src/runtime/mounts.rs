//! `mounts` of config.json: each entry's options turned into mount flags once, when the
//! config is read, and mounted in order inside the container's root through the same
//! resolve-in-root primitives `launch IMAGE` uses (see [`crate::rootfs`]): a symlink in
//! the bundle's rootfs cannot steer a mount out of it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use mkroot_common::mount_api::Reach;

use crate::error::LaunchError;
use crate::rootfs::{self, BindOptions, MountPoint};
use crate::runtime::cgroups::RuntimeCgroup;

/// One entry of `mounts`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub destination: String,
    pub kind: MountKind,
    /// MS_* flags (MS_RDONLY, MS_NOSUID, ...), without the bind and propagation ones.
    pub flags: libc::c_ulong,
    /// MS_SHARED, MS_SLAVE, MS_PRIVATE or MS_UNBINDABLE, with MS_REC for the `r` forms.
    pub propagation: Option<libc::c_ulong>,
    /// The filesystem's own options (`mode=755,size=65536k`).
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// `bind` / `rbind` (or type "bind"): a host path.
    Bind { source: PathBuf, recursive: bool },
    /// A fresh filesystem (`proc`, `tmpfs`, `devpts`, `cgroup`, ...).
    Fresh { fstype: String, source: String },
}

impl MountSpec {
    pub fn from_spec(mount: &oci_spec::runtime::Mount) -> Result<MountSpec, String> {
        let destination = mount.destination().to_string_lossy().into_owned();
        if !destination.starts_with('/') {
            return Err(format!(
                "mounts {destination}: give an absolute destination"
            ));
        }
        let options = mount.options().clone().unwrap_or_default();
        let parsed = parse_options(&options)
            .map_err(|option| format!("mounts {destination}: option {option} is not supported"))?;
        let fstype = mount.typ().clone().unwrap_or_default();
        let source = mount
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = if parsed.bind.is_some() || fstype == "bind" {
            if source.is_empty() {
                return Err(format!("mounts {destination}: a bind mount needs a source"));
            }
            MountKind::Bind {
                source: PathBuf::from(source),
                recursive: parsed.bind.unwrap_or(false),
            }
        } else if fstype.is_empty() {
            return Err(format!(
                "mounts {destination}: give a type (or a bind option)"
            ));
        } else {
            MountKind::Fresh { fstype, source }
        };
        Ok(MountSpec {
            destination,
            kind,
            flags: parsed.flags,
            propagation: parsed.propagation,
            data: parsed.data.join(","),
        })
    }

    /// Mounts it inside `root` (the container's future `/`, in our own mount namespace).
    /// `bundle` is where a relative bind source is found.
    ///
    /// `cgroup` is the container's own, shown at a cgroup mount when the container has no
    /// cgroup namespace (which would otherwise show the host's whole tree).
    pub fn mount_in(
        &self,
        root: &OwnedFd,
        bundle: &Path,
        cgroup: Option<&RuntimeCgroup>,
    ) -> Result<(), LaunchError> {
        match &self.kind {
            MountKind::Bind { source, recursive } => {
                let source = bundle.join(source);
                let kind = if source.is_dir() {
                    MountPoint::Dir
                } else {
                    MountPoint::File
                };
                rootfs::bind_with(
                    root,
                    &source,
                    &self.destination,
                    kind,
                    rootfs::BindOptions {
                        recursive: *recursive,
                        attributes: self.flags,
                        propagation: self.propagation,
                    },
                )
            }
            MountKind::Fresh { fstype, .. } if fstype == "cgroup" || fstype == "cgroup2" => {
                cgroup_mounts(root, &self.destination, self.flags, cgroup)
            }
            MountKind::Fresh { fstype, source } => self.mount_fresh(root, fstype, source),
        }
    }

    fn mount_fresh(&self, root: &OwnedFd, fstype: &str, source: &str) -> Result<(), LaunchError> {
        let fstype_c = c_string(fstype)?;
        let data = (!self.data.is_empty())
            .then(|| c_string(&self.data))
            .transpose()?;
        let source = if source.is_empty() { fstype } else { source };
        let target = rootfs::mount_point(root, &self.destination, MountPoint::Dir)?;
        let step = || format!("mounting {fstype} on {}", self.destination);
        rootfs::mount(
            Some(&c_string(source)?),
            &rootfs::fd_path_c(target.as_raw_fd()),
            Some(&fstype_c),
            self.flags,
            data.as_deref(),
        )
        .map_err(|e| LaunchError::setup(step(), e))?;
        if let Some(propagation) = self.propagation {
            let target = rootfs::mount_point(root, &self.destination, MountPoint::Dir)?;
            rootfs::mount(
                None,
                &rootfs::fd_path_c(target.as_raw_fd()),
                None,
                propagation,
                None,
            )
            .map_err(|e| LaunchError::setup(step(), e))?;
        }
        Ok(())
    }
}

/// `/sys/fs/cgroup` in the container, as runc lays it out. cgroup v2: the unified
/// hierarchy. v1 or hybrid: a tmpfs holding one mount per v1 hierarchy the host has,
/// plus `unified` where it has one. In a cgroup namespace each is a fresh mount, rooted
/// at the container's cgroup by the namespace; without one (podman's default on v1),
/// the container's own cgroup directories are bound there instead.
fn cgroup_mounts(
    root: &OwnedFd,
    destination: &str,
    flags: libc::c_ulong,
    cgroup: Option<&RuntimeCgroup>,
) -> Result<(), LaunchError> {
    use crate::cgroup::CgroupLayout;
    let flags = flags | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let fresh = |path: &str, fstype: &std::ffi::CStr, flags, data: Option<&std::ffi::CStr>| {
        rootfs::mount_fresh(root, path, fstype, flags, data)
    };
    let bind = |path: &str, dir: &Path| {
        let options = BindOptions {
            recursive: false,
            attributes: flags,
            propagation: None,
        };
        rootfs::bind_with(root, dir, path, MountPoint::Dir, options)
    };
    let own = cgroup.filter(|_| !in_cgroup_namespace());
    let own_v1 = |options: &str| {
        own.and_then(|c| {
            c.v1.iter()
                .find(|(o, _)| o == options)
                .map(|(_, d)| d.clone())
        })
    };
    let own_v2 = own.and_then(|c| c.v2.clone());
    match CgroupLayout::detect() {
        Some(CgroupLayout::V2) | None => match own_v2 {
            Some(dir) => bind(destination, &dir),
            None => fresh(destination, c"cgroup2", flags, None),
        },
        Some(layout) => {
            // The tmpfs is written before it turns read-only, so it starts writable.
            fresh(
                destination,
                c"tmpfs",
                flags & !libc::MS_RDONLY,
                Some(c"mode=755"),
            )?;
            for hierarchy in crate::runtime::cgroups::v1_hierarchies() {
                let path = format!("{destination}/{}", hierarchy.name);
                match own_v1(&hierarchy.options) {
                    Some(dir) => bind(&path, &dir)?,
                    None => {
                        let options = c_string(&hierarchy.options)?;
                        fresh(&path, c"cgroup", flags, Some(&options))?;
                    }
                }
            }
            if layout == CgroupLayout::Hybrid {
                let path = format!("{destination}/unified");
                match &own_v2 {
                    Some(dir) => bind(&path, dir)?,
                    None => fresh(&path, c"cgroup2", flags, None)?,
                }
            }
            if flags & libc::MS_RDONLY != 0 {
                let target = rootfs::mount_point(root, destination, MountPoint::Dir)?;
                rootfs::set_read_only(target.as_raw_fd(), c"", Reach::Mount).map_err(|e| {
                    LaunchError::setup(format!("making {destination} read-only"), e)
                })?;
            }
            Ok(())
        }
    }
}

/// Whether this process has a cgroup namespace of its own (not the host's).
fn in_cgroup_namespace() -> bool {
    // /proc is still the host's here (before pivot_root): PID 1 is the host's init.
    match (
        std::fs::read_link("/proc/self/ns/cgroup"),
        std::fs::read_link("/proc/1/ns/cgroup"),
    ) {
        (Ok(ours), Ok(host)) => ours != host,
        _ => false,
    }
}

fn c_string(s: &str) -> Result<CString, LaunchError> {
    CString::new(s).map_err(|_| LaunchError::Invalid(format!("{s:?}: contains a NUL byte")))
}

/// A mount's options, sorted into kernel flags and the filesystem's own data.
#[derive(Debug, Default)]
struct ParsedOptions {
    flags: libc::c_ulong,
    propagation: Option<libc::c_ulong>,
    /// `Some(recursive)` for bind / rbind.
    bind: Option<bool>,
    data: Vec<String>,
}

/// The options of mount(8) and the runtime spec; an unknown `key=value` or word goes to
/// the filesystem as data (it refuses what it does not know). Err: the option.
fn parse_options(options: &[String]) -> Result<ParsedOptions, String> {
    let mut parsed = ParsedOptions::default();
    for option in options {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match option.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "noatime" => (libc::MS_NOATIME, 0),
            "atime" => (0, libc::MS_NOATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "defaults" => (0, 0),
            "bind" => {
                parsed.bind = Some(false);
                (0, 0)
            }
            "rbind" => {
                parsed.bind = Some(true);
                (0, 0)
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let recursive = option.starts_with('r') && option != "rw";
                let kind = match option.trim_start_matches('r') {
                    "private" => libc::MS_PRIVATE,
                    "shared" => libc::MS_SHARED,
                    "slave" => libc::MS_SLAVE,
                    _ => libc::MS_UNBINDABLE,
                };
                parsed.propagation = Some(kind | if recursive { libc::MS_REC } else { 0 });
                (0, 0)
            }
            // Engines' own hints, meaningless to the kernel.
            "tmpcopyup" | "notmpcopyup" | "copy-symlink" | "z" | "Z" | "U" => (0, 0),
            "idmap" | "ridmap" | "remount" | "recursive" => return Err(option.clone()),
            data => {
                parsed.data.push(data.to_string());
                (0, 0)
            }
        };
        parsed.flags = (parsed.flags | set) & !clear;
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(list: &[&str]) -> ParsedOptions {
        parse_options(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_and_data_are_told_apart() {
        let p = options(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(p.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(p.data, ["mode=755", "size=65536k"]);
        assert_eq!(p.bind, None);
        let p = options(&["rbind", "ro", "rprivate"]);
        assert_eq!(p.bind, Some(true));
        assert_eq!(p.flags, libc::MS_RDONLY);
        assert_eq!(p.propagation, Some(libc::MS_PRIVATE | libc::MS_REC));
        let p = options(&["ro", "rw"]);
        assert_eq!(p.flags, 0);
        assert!(parse_options(&["idmap".to_string()]).is_err());
    }
}
