//! Paths inside the root (`/` or a sysroot) resolved as a chroot to it would resolve
//! them: absolute symlinks lead back into the root, `..` never climbs above it, and a
//! chain of links ends within the kernel's limit. The library search, the programs'
//! lookup and the copy all walk paths through here.
use std::io;
use std::path::{Component, Path, PathBuf};

/// The host path of the file `path` names inside `root`, its symlinks followed inside
/// the root (see [`real_path_in_root`]): in a sysroot, `/usr/bin/awk ->
/// /etc/alternatives/awk` leads to the sysroot's alternative, never the host's. On `/`
/// the kernel's own resolution is the same, so the path is used as it is.
pub fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    if root == Path::new("/") {
        return Ok(Path::new("/").join(path));
    }
    let real = real_path_in_root(root, path)?;
    Ok(root.join(real.strip_prefix("/").unwrap_or(&real)))
}

/// Resolves `path` inside `root` as the kernel would inside a chroot to `root`: symlinks
/// (absolute ones relative to the root), `..` taken after the directory is resolved and
/// never above the root. Returns the real path, starting with `/`.
pub fn real_path_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut real: Vec<std::ffi::OsString> = Vec::new();
    let mut pending: Vec<std::ffi::OsString> = components_reversed(path);
    let mut links = 0;
    while let Some(component) = pending.pop() {
        if component == ".." {
            real.pop();
            continue;
        }
        let mut here = root.to_path_buf();
        here.extend(&real);
        here.push(&component);
        let meta = std::fs::symlink_metadata(&here)?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io::Error::other(SymlinkLoop {
                    path: path.to_path_buf(),
                    last: here,
                }));
            }
            let target = std::fs::read_link(&here)?;
            if target.is_absolute() {
                real.clear();
            }
            pending.extend(components_reversed(&target));
        } else {
            if !pending.is_empty() && !meta.is_dir() {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            real.push(component);
        }
    }
    let mut out = PathBuf::from("/");
    out.extend(&real);
    Ok(out)
}

/// The kernel's limit on symlinks followed in one path walk (`MAXSYMLINKS`).
pub const MAX_SYMLINKS: usize = 40;

/// A path whose symlinks do not end within [`MAX_SYMLINKS`]: a loop, or a chain too long
/// for the kernel. Carried in an [`io::Error`]; see [`symlink_loop`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a symlink loop (or a chain of more than {MAX_SYMLINKS} links) from {}, given up at {}", path.display(), last.display())]
pub struct SymlinkLoop {
    /// The path asked for, inside the root.
    pub path: PathBuf,
    /// The host path of the link the walk gave up at.
    pub last: PathBuf,
}

/// A path of the root whose symlinks do not end, as the programs' lookup and the extras
/// report it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}; fix the links in the root")]
pub struct LinksDoNotEnd {
    /// The host path asked for.
    pub path: PathBuf,
    /// The loop, as [`symlink_loop`] recognises it.
    #[source]
    pub source: io::Error,
}

/// Whether `error` says a path's symlinks did not end: ours ([`SymlinkLoop`]) or the
/// kernel's (`ELOOP`, on `/`).
pub fn symlink_loop(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::ELOOP)
        || error
            .get_ref()
            .is_some_and(|inner| inner.is::<SymlinkLoop>())
}

/// Normal and `..` components of `path`, last first (a stack to pop from).
fn components_reversed(path: &Path) -> Vec<std::ffi::OsString> {
    let mut parts: Vec<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    parts.reverse();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root_and_never_escape() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::write(r.join("usr/lib/libx.so.1.0"), b"x").unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("/usr/lib/libx.so.1.0", r.join("usr/lib/libx.so.1")).unwrap();
        symlink("../../../../../etc", r.join("usr/lib/up")).unwrap();
        assert_eq!(
            real_path_in_root(r, Path::new("/lib/libx.so.1")).unwrap(),
            Path::new("/usr/lib/libx.so.1.0")
        );
        // "../../.." from /usr/lib stops at the root: /etc inside it, absent here.
        assert!(real_path_in_root(r, Path::new("/lib/up/passwd")).is_err());
        assert_eq!(
            real_path_in_root(r, Path::new("/lib/../lib/libx.so.1.0")).unwrap(),
            Path::new("/usr/lib/libx.so.1.0")
        );
        symlink("loop", r.join("loop")).unwrap();
        assert!(real_path_in_root(r, Path::new("/loop")).is_err());
    }
}
