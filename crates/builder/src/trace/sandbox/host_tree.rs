//! Step 3 of the probe's sandbox: the host's whole tree, made writable for the probe
//! by overlays whose upper layers are thrown away with it.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use mkroot_common::mount_api::{attach, new_mount, FsValue, MountAttrFlags};

use super::{
    bind_read_only, einval, einval_step, fail, fd_path, mkdir_at, open_path, step, StepError,
};

/// A host mount that gets its own overlay (or read-only bind) in the new root.
struct HostMount {
    /// Where it is mounted, relative to `/` ("" for the root itself).
    path: CString,
    /// An O_PATH fd of it, opened in our namespace (overlayfs refuses layers from
    /// another mount namespace).
    fd: OwnedFd,
}

/// Step 3: an overlay of the host's `/`, its upper layer and work directory on a new
/// tmpfs, attached over `/tmp` of the old root (any directory would do: the old root
/// goes away at pivot_root; /tmp is one every system has), then an overlay of every
/// other mount of the host on its place, parents first. A mount overlayfs refuses
/// (a file bind-mounted, a filesystem it cannot stack on) is bound read-only instead.
pub(super) fn writable_host_tree(user_namespace: bool) -> Result<OwnedFd, StepError> {
    let mounts = host_mounts()?;
    // Opened before the writable layer covers /tmp, for the ordinary user's root below.
    let top_level = match user_namespace {
        true => top_level_entries()?,
        false => Vec::new(),
    };
    let scratch = new_mount(
        c"tmpfs",
        &[(c"mode", FsValue::Str(c"0755"))],
        MountAttrFlags::empty(),
    )
    .map_err(|e| step("creating the writable layer's tmpfs", e))?;
    let attach_at = open_path(libc::AT_FDCWD, c"/tmp", libc::O_DIRECTORY)
        .map_err(|e| step("opening /tmp, where the writable layer is attached", e))?;
    // Attached rather than left detached: pivot_root needs the new root in the tree.
    attach(&scratch, &attach_at).map_err(|e| step("attaching the writable layer", e))?;
    let mut root: Option<OwnedFd> = None;
    // With a root of per-directory overlays, the top-level mounts are among them.
    let mut top_level_done = false;
    for (i, mount) in mounts.iter().enumerate() {
        let layer = layer_dir(&scratch, &format!("{i}"))?;
        let Some(root) = &root else {
            let made = match overlay_on(&mount.fd, &layer, user_namespace) {
                Ok(overlay) => {
                    attach(&overlay, &attach_at)
                        .map_err(|e| step("attaching the overlay root", e))?;
                    overlay
                }
                // Seen on Linux 6.18: from a user namespace overlayfs cannot take a
                // lower layer with locked mounts beneath it ("failed to clone
                // lowerpath"), and the host's `/` always has /proc, /sys, /dev.
                Err(e) if user_namespace && e.raw_os_error() == Some(libc::EINVAL) => {
                    top_level_done = true;
                    root_of_overlays(&top_level, &scratch, &attach_at)?
                }
                Err(e) => {
                    let why = match user_namespace {
                        true => " (as an ordinary user this needs Linux 5.11 or later)",
                        false => "",
                    };
                    return Err(step(
                        &format!("mounting the overlay of the host's /{why}"),
                        e,
                    ));
                }
            };
            let _ = root.insert(made);
            continue;
        };
        if top_level_done && !mount.path.as_bytes().contains(&b'/') {
            continue;
        }
        // A mount point the probe's tree does not have (under a read-only bind, or
        // hidden by another mount) is left as the tree shows it.
        let Ok(target) = open_path(root.as_raw_fd(), &mount.path, 0) else {
            continue;
        };
        // Failing both, it is left as the lower tree has it: read-only, as the host's.
        let _ = overlay_or_read_only_bind(&mount.fd, &layer, &target, user_namespace);
    }
    root.ok_or_else(|| step("finding the host's / in /proc/self/mountinfo", einval()))
}

/// A directory of the writable layer for one overlay.
fn layer_dir(scratch: &OwnedFd, name: &str) -> Result<OwnedFd, StepError> {
    let name = CString::new(name).map_err(|_| einval_step())?;
    mkdir_at(scratch.as_raw_fd(), &name, 0o755)
        .map_err(|e| step("creating the writable layer's dirs", e))?;
    open_path(scratch.as_raw_fd(), &name, libc::O_DIRECTORY)
        .map_err(|e| step("opening the writable layer", e))
}

/// An overlay of `lower` onto `target`; where overlayfs refuses it (a file bind-mounted,
/// a filesystem it cannot stack on, locked mounts beneath), a read-only bind.
fn overlay_or_read_only_bind(
    lower: &OwnedFd,
    layer: &OwnedFd,
    target: &OwnedFd,
    user_namespace: bool,
) -> io::Result<()> {
    overlay_on(lower, layer, user_namespace)
        .and_then(|overlay| attach(&overlay, target))
        .or_else(|_| bind_read_only(lower, target))
}

/// One entry of the host's `/`, as the ordinary user's root rebuilds it.
enum TopLevel {
    /// A directory: its name, mode and an O_PATH fd of it.
    Dir(CString, libc::mode_t, OwnedFd),
    /// A symlink (`/bin -> usr/bin`): its name and target.
    Link(CString, CString),
}

/// The directories and symlinks of the host's `/` (its files are not kept: a root
/// holds none that a program needs).
fn top_level_entries() -> Result<Vec<TopLevel>, StepError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let entries = std::fs::read_dir("/").map_err(|e| step("listing the host's /", e))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = CString::new(entry.file_name().as_bytes()) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if let Ok(target) = CString::new(target.as_os_str().as_bytes()) {
                found.push(TopLevel::Link(name, target));
            }
        } else if meta.is_dir() {
            if let Ok(fd) = open_path(libc::AT_FDCWD, &c_root_path(&name)?, libc::O_DIRECTORY) {
                found.push(TopLevel::Dir(name, meta.permissions().mode() & 0o7777, fd));
            }
        }
    }
    Ok(found)
}

fn c_root_path(name: &CStr) -> Result<CString, StepError> {
    CString::new([b"/", name.to_bytes()].concat()).map_err(|_| einval_step())
}

/// The ordinary user's root: a tmpfs with the host's top-level symlinks, and each
/// top-level directory an overlay of its own (a lower layer with no mounts beneath it,
/// which overlayfs takes from a user namespace), or, where mounts lie beneath it too, a
/// read-only bind. /proc, /sys and /dev stay empty for the sandbox's own.
fn root_of_overlays(
    top_level: &[TopLevel],
    scratch: &OwnedFd,
    attach_at: &OwnedFd,
) -> Result<OwnedFd, StepError> {
    let root = new_mount(
        c"tmpfs",
        &[(c"mode", FsValue::Str(c"0755"))],
        MountAttrFlags::empty(),
    )
    .map_err(|e| step("creating the root's tmpfs", e))?;
    attach(&root, attach_at).map_err(|e| step("attaching the root's tmpfs", e))?;
    for (i, entry) in top_level.iter().enumerate() {
        match entry {
            TopLevel::Link(name, target) => {
                // SAFETY: valid C strings and fd.
                if unsafe { libc::symlinkat(target.as_ptr(), root.as_raw_fd(), name.as_ptr()) } < 0
                {
                    return Err(fail("making the root's symlinks"));
                }
            }
            TopLevel::Dir(name, mode, lower) => {
                mkdir_at(root.as_raw_fd(), name, *mode)
                    .map_err(|e| step("making the root's directories", e))?;
                if [&b"proc"[..], b"sys", b"dev"].contains(&name.to_bytes()) {
                    continue;
                }
                let target = open_path(root.as_raw_fd(), name, libc::O_DIRECTORY)
                    .map_err(|e| step("opening the root's directories", e))?;
                let layer = layer_dir(scratch, &format!("top{i}"))?;
                // Failing both, it stays an empty directory.
                let _ = overlay_or_read_only_bind(lower, &layer, &target, true);
            }
        }
    }
    Ok(root)
}

/// The host's mounts, `/` first, then the others parents first, without the kernel's
/// trees the sandbox makes anew (/proc, /sys, /dev) and their submounts.
fn host_mounts() -> Result<Vec<HostMount>, StepError> {
    let info = std::fs::read("/proc/self/mountinfo")
        .map_err(|e| step("reading /proc/self/mountinfo", e))?;
    let mut points = mount_points(&info);
    points.retain(|p| {
        !["proc", "sys", "dev"]
            .iter()
            .any(|t| p == t.as_bytes() || p.starts_with(format!("{t}/").as_bytes()))
    });
    points.sort_by_key(|p| {
        (
            p.iter().filter(|b| **b == b'/').count() + usize::from(!p.is_empty()),
            p.clone(),
        )
    });
    points.dedup();
    let mut mounts = Vec::new();
    for point in points {
        let path = CString::new(point).map_err(|_| einval_step())?;
        let absolute = CString::new([b"/", path.as_bytes()].concat()).map_err(|_| einval_step())?;
        match open_path(libc::AT_FDCWD, &absolute, 0) {
            Ok(fd) => mounts.push(HostMount { path, fd }),
            // The host's `/` must be there; another mount may be unreachable to us.
            Err(e) if mounts.is_empty() => return Err(step("opening the host's /", e)),
            Err(_) => {}
        }
    }
    Ok(mounts)
}

/// The mount points in mountinfo text, relative to `/` ("" for `/`), unescaped.
fn mount_points(info: &[u8]) -> Vec<Vec<u8>> {
    info.split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b' ').nth(4))
        .map(|point| {
            let point = unescape(point);
            point.strip_prefix(b"/").unwrap_or(&point).to_vec()
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// An overlay with `lower` (a host mount) below and `layer/upper` above; detached.
fn overlay_on(lower: &OwnedFd, layer: &OwnedFd, user_namespace: bool) -> io::Result<OwnedFd> {
    for dir in [c"upper", c"work"] {
        match mkdir_at(layer.as_raw_fd(), dir, 0o755) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
            _ => {}
        }
    }
    let upper = open_path(layer.as_raw_fd(), c"upper", libc::O_DIRECTORY)?;
    let work = open_path(layer.as_raw_fd(), c"work", libc::O_DIRECTORY)?;
    // In a user namespace overlayfs keeps its metadata in user.* xattrs, the only ones
    // an unprivileged mounter may write.
    let mut by_fd = vec![
        (c"lowerdir+", FsValue::Fd(lower.as_fd())),
        (c"upperdir", FsValue::Fd(upper.as_fd())),
        (c"workdir", FsValue::Fd(work.as_fd())),
    ];
    if user_namespace {
        by_fd.push((c"userxattr", FsValue::Flag));
    }
    match new_mount(c"overlay", &by_fd, MountAttrFlags::empty()) {
        // Kernels before 6.13 take the layers only as paths: through /proc/self/fd.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let [lower, upper, work] = [lower, &upper, &work].map(|fd| fd_path(fd.as_raw_fd()));
            let mut by_path = vec![
                (c"lowerdir", FsValue::Str(&lower)),
                (c"upperdir", FsValue::Str(&upper)),
                (c"workdir", FsValue::Str(&work)),
            ];
            if user_namespace {
                by_path.push((c"userxattr", FsValue::Flag));
            }
            new_mount(c"overlay", &by_path, MountAttrFlags::empty())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_come_relative_and_unescaped() {
        let info = b"27 1 254:0 / / rw - ext4 /dev/vda rw\n\
                     28 27 0:25 / /mnt/with\\040space ro - tmpfs x ro\n\
                     22 27 0:21 / /proc rw - proc proc rw\n";
        assert_eq!(
            mount_points(info),
            [b"".to_vec(), b"mnt/with space".to_vec(), b"proc".to_vec()]
        );
    }
}
