//! Paths as the program named them, then as the host's tree resolves them.
//!
//! Two steps, at two times. While the probe runs, the tracer makes each path absolute
//! the way the kernel will read it: a relative path joins the calling process's working
//! directory, or the directory its dirfd names ([`absolute`], with [`base_dir`]). Only
//! `.` and empty components are dropped; `..` stays, because after a symlink it means
//! the link target's parent, which only the tree can say.
//!
//! After the probe, [`walk`] resolves each path against the host's tree one component
//! at a time, as the kernel's path walk does, and keeps every symlink it passes through
//! (link -> target as written), so chains such as `/usr/bin/awk -> /etc/alternatives/awk
//! -> /usr/bin/mawk` are kept whole, and the real file or directory at the end.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The kernel gives up after this many symlinks in one lookup (ELOOP).
const MAX_SYMLINKS: usize = 40;

/// The directory a relative path of process `pid` is taken from: its working directory
/// (`dirfd` is AT_FDCWD) or the directory open as `dirfd`. None when that is not a
/// directory of the tree (a socket, a deleted directory) or the process is gone.
pub fn base_dir(pid: libc::pid_t, dirfd: i32) -> Option<Vec<u8>> {
    let link = if dirfd == libc::AT_FDCWD {
        format!("/proc/{pid}/cwd")
    } else {
        format!("/proc/{pid}/fd/{dirfd}")
    };
    let target = fs::read_link(link).ok()?.into_os_string().into_vec();
    (target.first() == Some(&b'/') && !target.ends_with(b" (deleted)")).then_some(target)
}

/// `path` made absolute against `base` (needed only for a relative path), with `.` and
/// empty components dropped and `..` kept. None for an empty path (a call on the dirfd
/// itself) or a relative path without a base.
pub fn absolute(base: Option<&[u8]>, path: &[u8]) -> Option<Vec<u8>> {
    if path.is_empty() {
        return None;
    }
    let base = match path[0] {
        b'/' => &[][..],
        _ => base?,
    };
    let mut cleaned = Vec::with_capacity(base.len() + path.len() + 1);
    for component in base.split(|b| *b == b'/').chain(path.split(|b| *b == b'/')) {
        if component.is_empty() || component == b"." {
            continue;
        }
        cleaned.push(b'/');
        cleaned.extend_from_slice(component);
    }
    if cleaned.is_empty() {
        cleaned.push(b'/');
    }
    Some(cleaned)
}

/// What one path is on the host: the symlinks passed through on the way, in order, and
/// where the walk ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Walk {
    /// (link, target as written in the link).
    pub links: Vec<(PathBuf, PathBuf)>,
    pub end: Option<WalkEnd>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum WalkEnd {
    /// A real file (anything but a directory or a symlink).
    File(PathBuf),
    Dir(PathBuf),
}

/// Resolves the absolute `path` against the host's tree, recording each symlink it
/// passes. The last component is followed when it is a symlink only if `follow_last`
/// (an lstat or readlink stops at the link). The walk ends early, with no end, where a
/// component does not exist on the host (the probe made it, or it is gone), where a
/// non-directory has components after it, after too many links, or on entering a path
/// for which `stop` is true (/proc and the like).
pub fn walk(path: &Path, follow_last: bool, stop: &dyn Fn(&Path) -> bool) -> Walk {
    let mut walk = Walk::default();
    let mut resolved = PathBuf::from("/");
    // Components still to walk, the next one last.
    let mut todo: Vec<OsString> = components_reversed(path);
    let mut links_followed = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&name);
        if stop(&candidate) {
            return walk;
        }
        let Ok(meta) = fs::symlink_metadata(&candidate) else {
            return walk;
        };
        let last = todo.is_empty();
        if meta.file_type().is_symlink() && (follow_last || !last) {
            let Ok(target) = fs::read_link(&candidate) else {
                return walk;
            };
            links_followed += 1;
            if links_followed > MAX_SYMLINKS {
                return walk;
            }
            walk.links.push((candidate, target.clone()));
            if target.is_absolute() {
                resolved = PathBuf::from("/");
            }
            todo.extend(components_reversed(&target));
            continue;
        }
        if meta.file_type().is_symlink() {
            // The link itself was the object of the call.
            let target = fs::read_link(&candidate).unwrap_or_default();
            walk.links.push((candidate, target));
            return walk;
        }
        if !meta.is_dir() && !last {
            return walk;
        }
        resolved = candidate;
        if last {
            walk.end = Some(match meta.is_dir() {
                true => WalkEnd::Dir(resolved),
                false => WalkEnd::File(resolved),
            });
            return walk;
        }
    }
    // Only `/` (or `..` back to it) was named.
    walk.end = Some(WalkEnd::Dir(resolved));
    walk
}

/// The normal components of `path` (`.` and empty ones dropped, `..` kept), last first.
fn components_reversed(path: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = path
        .as_os_str()
        .as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
        .collect();
    names.reverse();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn never(_: &Path) -> bool {
        false
    }

    #[test]
    fn relative_paths_join_their_base_and_dot_goes_but_dotdot_stays() {
        assert_eq!(
            absolute(Some(b"/home/u"), b"./a//b/../c").unwrap(),
            b"/home/u/a/b/../c"
        );
        assert_eq!(
            absolute(None, b"/etc//./hostname").unwrap(),
            b"/etc/hostname"
        );
        assert_eq!(absolute(Some(b"/"), b".").unwrap(), b"/");
        assert_eq!(absolute(None, b"rel"), None);
        assert_eq!(absolute(Some(b"/x"), b""), None);
    }

    #[test]
    fn a_chain_of_links_is_kept_whole_with_the_real_file_at_its_end() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        fs::create_dir(root.join("real")).unwrap();
        fs::write(root.join("real/c"), "c").unwrap();
        symlink(root.join("real/c"), root.join("b")).unwrap();
        symlink("b", root.join("a")).unwrap();
        // A directory link with a relative target, then `..` after it.
        symlink("real", root.join("dirlink")).unwrap();
        let w = walk(&root.join("a"), true, &never);
        assert_eq!(
            w.links,
            [
                (root.join("a"), PathBuf::from("b")),
                (root.join("b"), root.join("real/c"))
            ]
        );
        assert_eq!(w.end, Some(WalkEnd::File(root.join("real/c"))));
        let w = walk(&root.join("dirlink/../real/./c"), true, &never);
        assert_eq!(w.links, [(root.join("dirlink"), PathBuf::from("real"))]);
        assert_eq!(w.end, Some(WalkEnd::File(root.join("real/c"))));
    }

    #[test]
    fn an_unfollowed_last_link_is_kept_without_its_target() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        fs::write(root.join("c"), "c").unwrap();
        symlink("c", root.join("a")).unwrap();
        let w = walk(&root.join("a"), false, &never);
        assert_eq!(w.links, [(root.join("a"), PathBuf::from("c"))]);
        assert_eq!(w.end, None);
    }

    #[test]
    fn missing_paths_loops_and_stops_end_the_walk_without_an_end() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        assert_eq!(walk(&root.join("nothing/here"), true, &never).end, None);
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert_eq!(walk(&root.join("loop1"), true, &never).end, None);
        fs::write(root.join("file"), "").unwrap();
        assert_eq!(walk(&root.join("file/x"), true, &never).end, None);
        let inside = root.join("file");
        let stop = |p: &Path| p == inside;
        assert_eq!(walk(&root.join("file"), true, &stop), Walk::default());
        assert_eq!(
            walk(&root, true, &never).end,
            Some(WalkEnd::Dir(root.clone()))
        );
    }
}
