//! The container's root filesystem, built inside the new mount namespace so that every
//! mount dies with it: nothing is ever mounted in the host's namespace.
//!
//! The cached image is the read-only lower layer of an overlay. Its writable upper layer
//! lives on a tmpfs that exists only in the container's mount namespace: the host sees
//! no per-launch directory at all, and the layer vanishes with the namespace, even
//! when `launch` is killed with SIGKILL. Nothing needs sweeping.
//!
//! Every mount point inside the new root is resolved with openat2(RESOLVE_IN_ROOT), so a
//! symlink in the image (`/etc -> /host/etc`, `/proc -> ../../..`) cannot steer a mount
//! out of the root; the mount then targets the resolved fd through /proc/self/fd.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use mkroot_common::mount_api::{
    self, attach, attributes_of, copy_tree, new_mount, set_attributes, FsValue, MountAttrFlags,
    MountAttributes, Reach,
};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid};

use crate::error::LaunchError;

mod volume;
pub use volume::Volume;

/// What a mount point must be when it has to be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountPoint {
    Dir,
    File,
    /// A directory every user may write and only its owner delete from (1777), as
    /// /tmp and /var/tmp are on every system.
    SharedDir,
}

impl MountPoint {
    /// The mode a directory made for it gets (the setup runs with umask 0).
    fn dir_mode(self) -> libc::mode_t {
        match self {
            MountPoint::SharedDir => 0o1777,
            MountPoint::Dir | MountPoint::File => 0o755,
        }
    }
}

/// Where programs expect a writable scratch directory. The image's own copy is used,
/// content and all, as docker and runc do: the writable layer already takes the writes,
/// and a tmpfs over it would hide whatever the image keeps there (a program built
/// under /tmp). Made when the image lacks it; with `--read-only` each stays writable
/// (see [`keep_writable`]).
pub const SCRATCH_DIRS: [(&str, MountPoint); 3] = [
    ("/tmp", MountPoint::SharedDir),
    ("/run", MountPoint::Dir),
    ("/var/tmp", MountPoint::SharedDir),
];

/// The per-launch writable layer and the overlay root built on it.
pub struct WritableLayer {
    /// The scratch tmpfs: holds `upper`, `work` and the per-launch /etc files. Attached
    /// under the old root only, so it is out of reach once the old root is detached.
    pub scratch: OwnedFd,
    /// The overlay's root (the future `/`).
    pub root: OwnedFd,
}

/// Makes every mount in our new namespace private, before the first mount: no mount made
/// here propagates to the host, and no host mount event reaches in.
pub fn make_mounts_private() -> Result<(), LaunchError> {
    mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(|e| LaunchError::setup("making mounts private", e))
}

impl WritableLayer {
    /// Builds the overlay: the image tree below, a fresh tmpfs above; and attaches it
    /// over the image directory, in our mount namespace only.
    ///
    /// The image tree is the working directory the launcher handed down through the
    /// clone: the kernel moves a cloned process's cwd into the new mount namespace (an
    /// fd opened before the clone would still point into the host's, which overlayfs
    /// refuses). No path is resolved here, so no directory above the image (a 0700
    /// cache) needs to be searchable from inside a user namespace.
    ///
    /// `mount_points` are the paths the setup will mount on: those the image lacks are
    /// made in the upper layer before the overlay exists (plain mkdir on the tmpfs),
    /// rather than through the overlay later, which would first copy their parent
    /// directory up.
    ///
    /// `size` bounds the writable layer, in bytes.
    ///
    /// `idmapped_image` is the image tree as a detached mount, idmapped by the launcher
    /// (root with `--userns`, see [`idmapped_copy`]); it is attached over the image
    /// directory and used in its place.
    pub fn mount(
        in_user_namespace: bool,
        size: u64,
        mount_points: &[(&str, MountPoint)],
        idmapped_image: Option<OwnedFd>,
    ) -> Result<WritableLayer, LaunchError> {
        let image = open_dir_at(rustix::fs::CWD, c".")
            .map_err(|e| LaunchError::setup("opening the image tree", e))?;
        let image = match idmapped_image {
            Some(tree) => {
                attach(&tree, &image)
                    .map_err(|e| LaunchError::setup("attaching the idmapped image", e))?;
                tree
            }
            None => image,
        };
        // Bounded: what the container writes anywhere is host memory (crate::storage).
        let size = CString::new(size.to_string()).expect("digits");
        let scratch = new_mount(
            c"tmpfs",
            &[(c"size", FsValue::Str(&size))],
            MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
        )
        .map_err(|e| LaunchError::setup("creating the writable layer's tmpfs", e))?;
        // Attached (over the image directory, in the old root's tree, our namespace only)
        // rather than left detached: a detached mount is torn down on its own when its
        // last fd closes, with a full RCU grace period; attached, it goes with the old
        // root in one batch.
        attach(&scratch, &image)
            .map_err(|e| LaunchError::setup("attaching the writable layer's tmpfs", e))?;
        for dir in [c"upper", c"work", c"etc"] {
            mkdir_at(scratch.as_fd(), dir, 0o755)
                .map_err(|e| LaunchError::setup("creating the writable layer's dirs", e))?;
        }
        let upper = open_dir_at(scratch.as_fd(), c"upper")
            .map_err(|e| LaunchError::setup("opening the writable layer", e))?;
        for (path, kind) in mount_points {
            seed_mount_point(&image, &upper, path, *kind).map_err(|e| {
                LaunchError::setup(format!("mount point {path} in the container"), e)
            })?;
        }
        let work = open_dir_at(scratch.as_fd(), c"work")
            .map_err(|e| LaunchError::setup("opening the writable layer", e))?;
        // The layers are given as fds, so no path is looked up again; kernels before 6.13
        // take only paths, given through /proc/self/fd.
        let by_fd = [
            (c"lowerdir+", FsValue::Fd(image.as_fd())),
            (c"upperdir", FsValue::Fd(upper.as_fd())),
            (c"workdir", FsValue::Fd(work.as_fd())),
        ];
        let paths = [&image, &upper, &work].map(|dir| fd_path_c(dir.as_raw_fd()));
        let by_path = [
            (c"lowerdir", FsValue::Str(&paths[0])),
            (c"upperdir", FsValue::Str(&paths[1])),
            (c"workdir", FsValue::Str(&paths[2])),
        ];
        // In a user namespace the overlay keeps its own metadata in user.* xattrs, the
        // only ones an unprivileged mounter may write.
        let userxattr = in_user_namespace.then_some((c"userxattr", FsValue::Flag));
        let overlay = |layers: [(&'static std::ffi::CStr, FsValue); 3]| {
            let options: Vec<_> = layers.into_iter().chain(userxattr).collect();
            new_mount(c"overlay", &options, MountAttrFlags::MOUNT_ATTR_NOSUID)
        };
        let root = match overlay(by_fd) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => overlay(by_path),
            other => other,
        }
        .map_err(|e| LaunchError::setup("mounting the overlay root", e))?;
        // Attached over the image directory (on top of the scratch tmpfs): pivot_root
        // needs the new root in the tree.
        attach(&root, &image).map_err(|e| LaunchError::setup("attaching the overlay root", e))?;
        Ok(WritableLayer { scratch, root })
    }
}

/// Makes `path` (relative to the root) in `upper` when the image (`lower`) lacks it,
/// with the parent directories it needs copied from the image's (mode and owner). Stops
/// quietly at a symlink in the image: such a path is resolved later, inside the root.
fn seed_mount_point(
    lower: &OwnedFd,
    upper: &OwnedFd,
    path: &str,
    kind: MountPoint,
) -> std::io::Result<()> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut prefix = String::new();
    for (i, name) in components.iter().enumerate() {
        if *name == "." || *name == ".." {
            return Ok(());
        }
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(name);
        let last = i + 1 == components.len();
        let prefix_c = CString::new(prefix.as_str()).map_err(|_| einval())?;
        let st = rustix::fs::statat(lower, &*prefix_c, AtFlags::SYMLINK_NOFOLLOW).ok();
        let is_dir =
            st.is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        match (st, last) {
            // In the image already: nothing to make (a mount on it needs no copy-up).
            (Some(_), true) => return Ok(()),
            // A symlink or file on the way: leave it to the in-root resolution.
            (Some(_), false) if !is_dir => return Ok(()),
            // A directory on the way: the upper layer needs it to hold what follows.
            (Some(st), false) => match mkdir_at(upper.as_fd(), &prefix_c, st.st_mode & 0o7777) {
                Ok(()) => {
                    // An owner the user namespace does not map stays root's.
                    let (uid, gid) = (Uid::from_raw(st.st_uid), Gid::from_raw(st.st_gid));
                    let _ = rustix::fs::chownat(
                        upper,
                        &*prefix_c,
                        Some(uid),
                        Some(gid),
                        AtFlags::empty(),
                    );
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e),
            },
            (None, _) => {
                let made = match (last, kind) {
                    (true, MountPoint::File) => create_file_at(upper.as_fd(), &prefix_c),
                    (true, kind) => mkdir_at(upper.as_fd(), &prefix_c, kind.dir_mode()),
                    (false, _) => mkdir_at(upper.as_fd(), &prefix_c, 0o755),
                };
                match made {
                    Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn einval() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::EINVAL)
}

fn open_dir_at(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> std::io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// A detached copy of the mount at `image`: the image tree's (made by the launcher,
/// before the clone, while it can still see the tree), or a scratch directory's.
pub fn detached_copy(image: &OwnedFd) -> Result<OwnedFd, LaunchError> {
    copy_tree(image, c"", false).map_err(|e| LaunchError::setup("copying a mount (open_tree)", e))
}

/// Root with `--userns`: maps the ids of `tree` (a [`detached_copy`]) through the user
/// namespace of process `pid`, so the image's files, owned by root outside, belong to
/// root inside; without it they show as nobody and no directory of the image could be
/// written (the overlay could not copy it up). Needs the host's root, which the
/// container's root is not: the launcher does it between the clone and the go-ahead.
pub fn idmapped_copy(tree: &OwnedFd, pid: libc::pid_t) -> Result<(), LaunchError> {
    let step = || "idmapping the image tree".to_string();
    let path = format!("/proc/{pid}/ns/user");
    let userns = rustix::fs::open(
        path.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LaunchError::setup(step(), e.into()))?;
    let attributes = MountAttributes {
        userns: Some(userns.as_raw_fd()),
        ..MountAttributes::set(MountAttrFlags::MOUNT_ATTR_IDMAP)
    };
    set_attributes(tree.as_fd(), c"", Reach::Mount, attributes)
        .map_err(|e| LaunchError::setup(step(), e))
}

/// Mounts a fresh filesystem (`proc`, `tmpfs`, ...) at `path` inside the new root.
pub fn mount_fresh(
    root: &OwnedFd,
    path: &str,
    fstype: &std::ffi::CStr,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
) -> Result<(), LaunchError> {
    let target = mount_point(root, path, MountPoint::Dir)?;
    mount(
        Some(fstype),
        &fd_path_c(target.as_raw_fd()),
        Some(fstype),
        flags,
        data,
    )
    .map_err(|e| {
        LaunchError::setup(
            format!("mounting {} on {path}", fstype.to_string_lossy()),
            e,
        )
    })
}

/// Bind-mounts `source` (a host path, or a /proc/self/fd path) onto `path` inside the new
/// root, recursively, read-only when asked. Uses a detached copy of the source tree
/// (open_tree), made read-only before it is attached, so it is never writable inside.
pub fn bind(
    root: &OwnedFd,
    source: &Path,
    path: &str,
    kind: MountPoint,
    read_only: bool,
) -> Result<(), LaunchError> {
    let options = BindOptions {
        recursive: true,
        attributes: if read_only { libc::MS_RDONLY } else { 0 },
        propagation: None,
    };
    bind_with(root, source, path, kind, options)
}

/// How [`bind_with`] binds: a runtime spec's bind mount.
#[derive(Debug, Clone, Copy, Default)]
pub struct BindOptions {
    /// `rbind`: the submounts come along.
    pub recursive: bool,
    /// MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC and the atime flags, set on the copy.
    pub attributes: libc::c_ulong,
    /// MS_SHARED, MS_SLAVE, MS_PRIVATE or MS_UNBINDABLE for the copy.
    pub propagation: Option<libc::c_ulong>,
}

/// [`bind`] with the spec's options: the detached copy gets its attributes before it is
/// attached, so it is never, even for an instant, writable or suid inside.
pub fn bind_with(
    root: &OwnedFd,
    source: &Path,
    path: &str,
    kind: MountPoint,
    options: BindOptions,
) -> Result<(), LaunchError> {
    let step = || format!("bind-mounting {} on {path}", source.display());
    let source_c = path_c(source)?;
    let tree = copy_tree(mount_api::CWD, &source_c, options.recursive)
        .map_err(|e| LaunchError::setup(step(), e))?;
    let attributes = attributes_of(options.attributes);
    if !attributes.set.is_empty() {
        let reach = if options.recursive {
            Reach::Recursive
        } else {
            Reach::Mount
        };
        set_attributes(tree.as_fd(), c"", reach, attributes)
            .map_err(|e| LaunchError::setup(step(), e))?;
    }
    let target = mount_point(root, path, kind)?;
    attach(&tree, &target).map_err(|e| LaunchError::setup(step(), e))?;
    // Propagation only once attached: the kernel refuses to share a detached mount.
    if let Some(propagation) = options.propagation {
        let target = mount_point(root, path, kind)?;
        mount(
            None,
            &fd_path_c(target.as_raw_fd()),
            None,
            propagation,
            None,
        )
        .map_err(|e| LaunchError::setup(step(), e))?;
    }
    Ok(())
}

/// Makes the new root the process's `/` with pivot_root, and detaches the old root so
/// no path, not even `..` from a leaked fd's mount, leads back to the host's tree.
pub fn pivot_into(root: &OwnedFd) -> Result<(), LaunchError> {
    mount_api::pivot_into(root)
        .map_err(|e| LaunchError::setup(format!("pivot_root: {}", e.step), e.source))
}

/// `--read-only`: the scratch directories stay writable. podman mounts an empty tmpfs
/// on each; here each is bound onto itself instead, a mount of its own that the
/// read-only root leaves writable, so what the image keeps in them stays visible.
/// Called in the new root, before [`make_root_read_only`].
pub fn keep_writable() -> Result<(), LaunchError> {
    let root = open_current_root()?;
    for (path, kind) in SCRATCH_DIRS {
        let target = mount_point(&root, path, kind)?;
        let tree = detached_copy(&target)?;
        attach(&tree, &target)
            .map_err(|e| LaunchError::setup(format!("keeping {path} writable"), e))?;
    }
    Ok(())
}

/// Makes the directory `path` (with its missing parents, 0755) when it does not exist,
/// resolving it inside the current root: the path comes from the image or the user, and
/// neither a symlink nor `..` nor a /proc magic link on it may lead outside.
pub fn make_dir_in_root(path: &str) -> Result<(), LaunchError> {
    let root = open_current_root()?;
    mount_point(&root, path, MountPoint::Dir).map(drop)
}

/// The current root, for resolving paths inside it after pivot_root.
fn open_current_root() -> Result<OwnedFd, LaunchError> {
    open_dir_at(rustix::fs::CWD, c"/")
        .map_err(|e| LaunchError::setup("opening the container's root", e))
}

/// `--read-only`: the root mount (only it: the scratch directories (see
/// [`keep_writable`]), volumes and --tmpfs keep their own mode).
pub fn make_root_read_only() -> Result<(), LaunchError> {
    set_read_only(libc::AT_FDCWD, c"/", Reach::Mount)
        .map_err(|e| LaunchError::setup("making the root read-only", e))
}

/// Resolves `path` inside `root` (symlinks resolved as if `root` were `/`), creating the
/// missing directories and, when `kind` is a file, the final file, in the writable layer.
/// Returns an O_PATH fd of the mount point.
pub fn mount_point(root: &OwnedFd, path: &str, kind: MountPoint) -> Result<OwnedFd, LaunchError> {
    let step = || format!("mount point {path} in the container");
    let relative = path.trim_start_matches('/');
    if relative.is_empty() {
        return open_in_root(root, c".").map_err(|e| LaunchError::setup(step(), e));
    }
    let relative_c = CString::new(relative)
        .map_err(|_| LaunchError::Invalid(format!("{path}: contains a NUL byte")))?;
    match open_in_root(root, &relative_c) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(LaunchError::setup(step(), e)),
    }
    let (parent, name) = match relative.rsplit_once('/') {
        Some((parent, name)) => (mount_point(root, parent, MountPoint::Dir)?, name),
        None => (
            open_in_root(root, c".").map_err(|e| LaunchError::setup(step(), e))?,
            relative,
        ),
    };
    let name_c = CString::new(name).expect("checked above");
    // The parent is a real directory inside the root now; the name may still be a
    // dangling symlink from the image: replace it with a real entry in the upper layer.
    let create = || match kind {
        MountPoint::Dir | MountPoint::SharedDir => {
            mkdir_at(parent.as_fd(), &name_c, kind.dir_mode())
        }
        MountPoint::File => create_file_at(parent.as_fd(), &name_c),
    };
    let created = match create() {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            let _ = rustix::fs::unlinkat(&parent, &*name_c, AtFlags::empty());
            create()
        }
        other => other,
    };
    created.map_err(|e| LaunchError::setup(step(), e))?;
    open_in_root(root, &relative_c).map_err(|e| LaunchError::setup(step(), e))
}

fn open_in_root(root: &OwnedFd, relative: &std::ffi::CStr) -> std::io::Result<OwnedFd> {
    mkroot_common::in_root::open_in_root(root.as_raw_fd(), relative, libc::O_PATH | libc::O_CLOEXEC)
}

fn mkdir_at(dir: BorrowedFd<'_>, name: &std::ffi::CStr, mode: libc::mode_t) -> std::io::Result<()> {
    Ok(rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode))?)
}

/// An empty file to mount a file on; whatever stands at `name` is neither followed nor
/// reused.
fn create_file_at(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> std::io::Result<()> {
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o644))?;
    Ok(())
}

pub(crate) fn mount(
    source: Option<&std::ffi::CStr>,
    target: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
) -> std::io::Result<()> {
    let ptr = |s: Option<&std::ffi::CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: valid C strings or nulls.
    let ret = unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn set_read_only(
    dir: RawFd,
    path: &std::ffi::CStr,
    reach: Reach,
) -> std::io::Result<()> {
    // SAFETY: the caller's fd (or AT_FDCWD), valid for this call.
    let dir = unsafe { BorrowedFd::borrow_raw(dir) };
    let read_only = MountAttributes::set(MountAttrFlags::MOUNT_ATTR_RDONLY);
    set_attributes(dir, path, reach, read_only)
}

/// The magic-link path of an fd: mounting on it mounts on what the fd resolved to.
pub(crate) fn fd_path(fd: RawFd) -> String {
    format!("/proc/self/fd/{fd}")
}

pub(crate) fn fd_path_c(fd: RawFd) -> CString {
    CString::new(fd_path(fd)).expect("no NUL")
}

pub(crate) fn path_c(path: &Path) -> Result<CString, LaunchError> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| LaunchError::Invalid(format!("{}: contains a NUL byte", path.display())))
}
