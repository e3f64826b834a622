//! Stacking an OCI image's layers into the one tree a container's overlay sits on.
//!
//! Each layer is unpacked once, on its own, into the cache (by diff_id, so images that
//! share a layer share that tree); its whiteouts stay in it as the plain empty files the
//! tar carried. An image's tree is then built by applying its layers bottom to top, as
//! the OCI image spec describes a changeset:
//!
//! - `.wh.NAME` removes NAME (with its whole tree) from the layers below;
//! - `.wh..wh..opq` in a directory hides everything the layers below put in it;
//! - a directory over a directory merges (the upper one's mode, owner and mtime win);
//!   anything else replaces what was there (a directory over a symlink replaces the
//!   symlink: nothing is ever written through a link);
//! - whiteout files never appear in the result.
//!
//! This is what a multi-lower overlay of the layer trees would show. Files are *hard
//! links* to the layer trees' files, so an image's tree costs directory entries, not
//! data: the bytes of a shared layer are on disk once. Hard links are safe here because
//! every cached tree is read-only (each launch writes to its own overlay upper layer).
//!
//! Why one tree per image rather than stacking the layer trees as overlay lowers at each
//! launch: the container setup keeps its single lower (moved into the new mount namespace
//! as the cwd, idmapped as one mount for `--userns`), and the cache needs no overlay-only
//! whiteout encoding (0/0 device nodes, `trusted.`/`user.overlay.opaque` xattrs, which
//! differ between root and rootless mounts). The price, building the tree of links, is
//! paid once per image digest, never on a cached launch.
//!
//! Both trees live in the launcher's private 0700 cache: no one else changes them while
//! this runs, and every step checks with `lstat` that a directory is a real one before
//! going into it, so a symlink from a lower layer is never followed.

use mkroot_common::oci::{whiteout, Whiteout};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The image tree being built, and the directory metadata to apply once it is complete
/// (applied last, deepest first, so a read-only directory does not stop its own filling).
pub struct LayerStack {
    root: PathBuf,
    dirs: HashMap<PathBuf, fs::Metadata>,
    /// Entries linked or made, and bytes of file data linked, for the cache's info.
    pub entries: u64,
    pub bytes: u64,
    preserve_owner: bool,
}

impl LayerStack {
    /// Starts a stack on the empty directory `root`.
    pub fn new(root: &Path) -> LayerStack {
        LayerStack {
            root: root.to_path_buf(),
            dirs: HashMap::new(),
            entries: 0,
            bytes: 0,
            preserve_owner: nix::unistd::geteuid().is_root(),
        }
    }

    /// Applies the unpacked layer tree `layer` on top of what is stacked so far.
    pub fn apply(&mut self, layer: &Path) -> io::Result<()> {
        let meta = fs::symlink_metadata(layer)?;
        self.dirs.insert(PathBuf::new(), meta);
        self.apply_dir(layer, Path::new(""))
    }

    /// Applies the layer's directory `layer_dir` onto `relative` in the stack (a real
    /// directory there already).
    fn apply_dir(&mut self, layer_dir: &Path, relative: &Path) -> io::Result<()> {
        let target = self.root.join(relative);
        let mut names = Vec::new();
        for entry in fs::read_dir(layer_dir)? {
            names.push(entry?.file_name());
        }
        names.sort();
        // Whiteouts first: they speak of the layers below, and an entry of this layer
        // with the same name (not allowed by the spec) then still wins.
        if names
            .iter()
            .any(|n| whiteout(n.as_bytes()) == Some(Whiteout::Opaque))
        {
            for entry in fs::read_dir(&target)? {
                remove_any(&entry?.path())?;
            }
        }
        for name in &names {
            if let Some(Whiteout::Removes(hidden)) = whiteout(name.as_bytes()) {
                remove_any(&target.join(OsStr::from_bytes(hidden)))?;
            }
        }
        for name in names {
            if whiteout(name.as_bytes()).is_some() {
                continue;
            }
            let from = layer_dir.join(&name);
            let to = target.join(&name);
            let meta = fs::symlink_metadata(&from)?;
            if meta.is_dir() {
                let existing = fs::symlink_metadata(&to);
                if !existing.as_ref().is_ok_and(|m| m.is_dir()) {
                    if existing.is_ok() {
                        remove_any(&to)?;
                    }
                    fs::create_dir(&to)?;
                    // Writable by us while it is filled; its own mode comes at the end.
                    fs::set_permissions(&to, fs::Permissions::from_mode(0o700))?;
                    self.entries += 1;
                }
                let child = relative.join(&name);
                self.dirs.insert(child.clone(), meta);
                self.apply_dir(&from, &child)?;
            } else {
                match fs::symlink_metadata(&to) {
                    Ok(_) => remove_any(&to)?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                // linkat without AT_SYMLINK_FOLLOW: a symlink is linked, not followed.
                fs::hard_link(&from, &to)?;
                self.entries += 1;
                if meta.is_file() {
                    self.bytes += meta.len();
                }
            }
        }
        Ok(())
    }

    /// Gives every directory the mode, owner and mtime of the topmost layer that has it.
    pub fn finish(self) -> io::Result<()> {
        let mut dirs: Vec<(PathBuf, fs::Metadata)> = self.dirs.into_iter().collect();
        dirs.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (relative, meta) in dirs {
            let path = self.root.join(&relative);
            // Removed by a later layer's whiteout, or replaced by a non-directory.
            match fs::symlink_metadata(&path) {
                Ok(now) if now.is_dir() => {}
                _ => continue,
            }
            if self.preserve_owner {
                std::os::unix::fs::lchown(&path, Some(meta.uid()), Some(meta.gid()))?;
            }
            fs::set_permissions(&path, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            mkroot_common::archive::set_times(&path, meta.mtime(), meta.mtime_nsec())?;
        }
        Ok(())
    }
}

/// Removes whatever is at `path` (a whole tree for a directory); nothing there is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => mkroot_common::unpack::remove_tree(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(root: &Path) -> Vec<String> {
        let mut found: Vec<String> = walk(root, root);
        found.sort();
        found
    }

    fn walk(root: &Path, dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                out.extend(walk(root, &path));
            }
        }
        out
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_the_layers_below() {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, upper, out) = (
            tmp.path().join("lower"),
            tmp.path().join("upper"),
            tmp.path().join("out"),
        );
        for dir in ["etc", "opaque/sub", "gone"] {
            fs::create_dir_all(lower.join(dir)).unwrap();
        }
        fs::write(lower.join("etc/keep"), "k").unwrap();
        fs::write(lower.join("etc/drop"), "d").unwrap();
        fs::write(lower.join("opaque/old"), "o").unwrap();
        std::os::unix::fs::symlink("/etc", lower.join("link")).unwrap();
        for dir in ["etc", "opaque", "link"] {
            fs::create_dir_all(upper.join(dir)).unwrap();
        }
        fs::write(upper.join("etc/.wh.drop"), "").unwrap();
        fs::write(upper.join(".wh.gone"), "").unwrap();
        fs::write(upper.join("opaque/.wh..wh..opq"), "").unwrap();
        fs::write(upper.join("opaque/new"), "n").unwrap();
        fs::write(upper.join("link/inside"), "i").unwrap();
        // Whiteouts naming this directory or its parent remove nothing.
        fs::write(upper.join("etc/.wh.."), "").unwrap();
        fs::write(upper.join("etc/.wh..."), "").unwrap();
        fs::create_dir(&out).unwrap();
        let mut stack = LayerStack::new(&out);
        stack.apply(&lower).unwrap();
        stack.apply(&upper).unwrap();
        stack.finish().unwrap();
        assert_eq!(
            names(&out),
            [
                "etc",
                "etc/keep",
                "link",
                "link/inside",
                "opaque",
                "opaque/new"
            ]
        );
        // The file is the layer's own inode: no data copied.
        assert_eq!(
            fs::metadata(out.join("etc/keep")).unwrap().ino(),
            fs::metadata(lower.join("etc/keep")).unwrap().ino()
        );
    }
}
