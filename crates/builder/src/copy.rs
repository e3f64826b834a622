//! The image tree being planned, and how host paths are copied into it.
//!
//! A path is copied the way the kernel walks it: component by component, inside the
//! root. Every symlink met on the way (the merged-/usr links `/lib -> usr/lib`, library
//! chains `libfoo.so.6 -> libfoo.so.6.0.1`) becomes a symlink in the image, with an
//! absolute target rewritten relative to the link, and the walk goes on at its target.
//! So the image holds the very paths the loader opens, and each resolves there as on
//! the host. Directories keep their host modes; files keep their modes and, when the
//! host file has several names, the identity that lets the writer keep hard links.

use crate::programs::{normalize, RootPath};
use crate::root_walk::MAX_SYMLINKS;
use mkroot_common::archive::hardlink_identity;
use mkroot_common::host_file::{is_content, kind_name};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// What an image path will be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedKind {
    Dir,
    /// A host file, copied. `identity` is `(dev, inode)` when the host file has more
    /// than one name, so that names of the same file become hard links in the image.
    /// `size` is its size when planned: it is hashed and written at that size.
    File {
        source: PathBuf,
        identity: Option<(u64, u64)>,
        size: u64,
    },
    /// Contents made by mkroot (`/etc/passwd`, the loader cache).
    Generated(Vec<u8>),
    Symlink {
        target: String,
    },
}

/// One image path: what it is, its mode, and why it is in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEntry {
    pub kind: PlannedKind,
    pub mode: u32,
    /// Host path it comes from, when it comes from the host.
    pub source: Option<PathBuf>,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{path}: no such file on the host; check the path")]
    Missing { path: PathBuf },
    #[error("{path}: cannot read: {source}; check its permissions")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: a symlink loop (more than {MAX_SYMLINKS} links followed); fix the links")]
    SymlinkLoop { path: PathBuf },
    #[error("{path}: {what} is not UTF-8, which image paths must be; rename it or leave it out")]
    NotUtf8 { path: PathBuf, what: &'static str },
    #[error("{path}: a part of the path is not a directory; check the path")]
    NotADirectory { path: PathBuf },
    #[error("{path}: the image already has {existing} there; add it at another image path")]
    Clash { path: PathBuf, existing: String },
    #[error(
        "{path}: {what}; an image holds only regular files, directories and symlinks: leave it out"
    )]
    NotContent { path: PathBuf, what: &'static str },
    #[error(
        "{path}: /{RESERVED} is mkroot's own (the image's manifest); add it at another image path"
    )]
    Reserved { path: PathBuf },
}

/// The image directory that holds mkroot's manifest: no file of the user's goes there,
/// or one could stand in for the manifest.
const RESERVED: &str = ".mkroot";

/// Whether `inside` (an image path) is mkroot's own: `/.mkroot` or under it.
pub fn is_reserved(inside: &Path) -> bool {
    key(inside).split('/').next() == Some(RESERVED)
}

/// A host file that is none of what an image holds (a fifo, a device node, a socket).
fn check_content(host: &Path, meta: &std::fs::Metadata) -> Result<(), CopyError> {
    if is_content(&meta.file_type()) {
        return Ok(());
    }
    Err(CopyError::NotContent {
        path: host.to_path_buf(),
        what: kind_name(&meta.file_type()),
    })
}

/// Every path of the image, keyed by its path inside the image without the leading `/`.
#[derive(Debug, Clone)]
pub struct ImageTree {
    root: RootPath,
    entries: BTreeMap<String, PlannedEntry>,
    /// Every host path [`ImageTree::copy_path`] has looked at: each library's path is
    /// walked again for every program that loads it, and its directories for every
    /// file in them; the host tree does not change during a build.
    looked_at: HashMap<PathBuf, HostEntry>,
}

/// What lstat (and readlink, for a symlink) said of one host path.
#[derive(Debug, Clone)]
struct HostEntry {
    meta: std::fs::Metadata,
    link_target: Option<PathBuf>,
}

fn key(inside: &Path) -> String {
    inside
        .strip_prefix("/")
        .unwrap_or(inside)
        .to_string_lossy()
        .into_owned()
}

impl ImageTree {
    pub fn new(root: RootPath) -> ImageTree {
        ImageTree {
            root,
            entries: BTreeMap::new(),
            looked_at: HashMap::new(),
        }
    }

    pub fn root(&self) -> &RootPath {
        &self.root
    }

    pub fn entries(&self) -> &BTreeMap<String, PlannedEntry> {
        &self.entries
    }

    pub fn contains(&self, inside: &Path) -> bool {
        self.entries.contains_key(&key(inside))
    }

    /// Takes `inside` out of the plan (an entry another addition takes over).
    pub fn remove(&mut self, inside: &Path) -> Option<PlannedEntry> {
        self.entries.remove(&key(inside))
    }

    /// Whether `inside` is planned as a directory.
    pub fn is_dir(&self, inside: &Path) -> bool {
        matches!(
            self.entries.get(&key(inside)),
            Some(PlannedEntry {
                kind: PlannedKind::Dir,
                ..
            })
        )
    }

    /// Records an entry unless the path is already planned; the first reason stays.
    /// mkroot's own directory is refused.
    fn record(&mut self, inside: &Path, entry: PlannedEntry) -> Result<(), CopyError> {
        if is_reserved(inside) {
            return Err(CopyError::Reserved {
                path: inside.to_path_buf(),
            });
        }
        self.entries.entry(key(inside)).or_insert(entry);
        Ok(())
    }

    /// Copies the path `inside` (a path inside the root) with every symlink and
    /// directory on the way; returns the real path it ends at, inside the root.
    pub fn copy_path(&mut self, inside: &Path, reason: &str) -> Result<PathBuf, CopyError> {
        let mut pending: VecDeque<OsString> = components(&normalize(inside));
        let mut current = PathBuf::from("/");
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            if name == ".." {
                current.pop();
                continue;
            }
            let next = current.join(&name);
            let host = self.root.joined(&next);
            let HostEntry { meta, link_target } = self.look_at(&host)?;
            let mode = meta.permissions().mode() & 0o7777;
            if let Some(target) = link_target {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(CopyError::SymlinkLoop { path: host });
                }
                let stored = relative_target(&next, &target);
                self.record(
                    &next,
                    PlannedEntry {
                        kind: PlannedKind::Symlink {
                            target: stored.clone(),
                        },
                        mode: 0o777,
                        source: Some(host.clone()),
                        // The link asked for keeps the caller's reason; links met
                        // on the way say where they lead.
                        reason: if next == normalize(inside) {
                            reason.to_string()
                        } else {
                            format!("symlink on the way to {}", inside.display())
                        },
                    },
                )?;
                if target.is_absolute() {
                    current = PathBuf::from("/");
                }
                let mut rest = components(Path::new(&stored));
                rest.extend(pending);
                pending = rest;
            } else if meta.is_dir() {
                self.record(
                    &next,
                    PlannedEntry {
                        kind: PlannedKind::Dir,
                        mode,
                        source: Some(host),
                        reason: "directory".to_string(),
                    },
                )?;
                current = next;
            } else {
                if !pending.is_empty() {
                    return Err(CopyError::NotADirectory { path: host });
                }
                check_content(&host, &meta)?;
                self.record(
                    &next,
                    PlannedEntry {
                        kind: PlannedKind::File {
                            source: host.clone(),
                            identity: hardlink_identity(&meta),
                            size: meta.len(),
                        },
                        mode,
                        source: Some(host),
                        reason: reason.to_string(),
                    },
                )?;
                return Ok(next);
            }
        }
        Ok(current)
    }

    /// lstat and readlink of `host`, each made once per build.
    fn look_at(&mut self, host: &Path) -> Result<HostEntry, CopyError> {
        if let Some(known) = self.looked_at.get(host) {
            return Ok(known.clone());
        }
        let meta = lstat(host)?;
        let link_target = match meta.file_type().is_symlink() {
            true => Some(read_link(host)?),
            false => None,
        };
        let entry = HostEntry { meta, link_target };
        self.looked_at.insert(host.to_path_buf(), entry.clone());
        Ok(entry)
    }

    /// Makes sure the directory `inside` exists in the image: copied from the root when
    /// the root has it (symlinks on the way included), made with `mode` otherwise.
    /// Returns the real directory path inside the image.
    pub fn ensure_dir(
        &mut self,
        inside: &Path,
        mode: u32,
        reason: &str,
    ) -> Result<PathBuf, CopyError> {
        let inside = normalize(inside);
        if inside == Path::new("/") {
            return Ok(inside);
        }
        if self.root.resolve(&inside).is_ok_and(|host| host.is_dir()) {
            return self.copy_path(&inside, reason);
        }
        let parent = inside.parent().unwrap_or(Path::new("/"));
        let parent = self.ensure_dir(parent, 0o755, "directory")?;
        let made = parent.join(inside.file_name().unwrap_or_default());
        self.add_dir(&made, mode, reason)?;
        Ok(made)
    }

    /// Adds a directory made by mkroot (a mount point, `/root`).
    pub fn add_dir(&mut self, inside: &Path, mode: u32, reason: &str) -> Result<(), CopyError> {
        match self.entries.get(&key(inside)) {
            Some(PlannedEntry {
                kind: PlannedKind::Dir,
                ..
            }) => Ok(()),
            Some(other) => Err(clash(inside, other)),
            None => self.record(
                inside,
                PlannedEntry {
                    kind: PlannedKind::Dir,
                    mode,
                    source: None,
                    reason: reason.to_string(),
                },
            ),
        }
    }

    /// Adds a file made by mkroot at `inside` (its parent directories included).
    pub fn add_generated(
        &mut self,
        inside: &Path,
        bytes: Vec<u8>,
        mode: u32,
        reason: &str,
    ) -> Result<PathBuf, CopyError> {
        let parent = self.ensure_dir(
            inside.parent().unwrap_or(Path::new("/")),
            0o755,
            "directory",
        )?;
        let at = parent.join(inside.file_name().unwrap_or_default());
        if let Some(existing) = self.entries.get(&key(&at)) {
            return Err(clash(&at, existing));
        }
        self.record(
            &at,
            PlannedEntry {
                kind: PlannedKind::Generated(bytes),
                mode,
                source: None,
                reason: reason.to_string(),
            },
        )?;
        Ok(at)
    }

    /// Adds a host file, directory or symlink (from anywhere on the host, not only
    /// the root) at the image path `at`, for `--add`. Directories are not entered here.
    pub fn add_host_entry(
        &mut self,
        host: &Path,
        at: &Path,
        reason: &str,
    ) -> Result<(), CopyError> {
        let meta = lstat(host)?;
        if at.to_str().is_none() {
            return Err(CopyError::NotUtf8 {
                path: host.to_path_buf(),
                what: "the name",
            });
        }
        check_content(host, &meta)?;
        let mode = meta.permissions().mode() & 0o7777;
        let kind = if meta.file_type().is_symlink() {
            let target = read_link(host)?;
            PlannedKind::Symlink {
                target: relative_target(at, &target),
            }
        } else if meta.is_dir() {
            PlannedKind::Dir
        } else {
            PlannedKind::File {
                source: host.to_path_buf(),
                identity: hardlink_identity(&meta),
                size: meta.len(),
            }
        };
        if let Some(existing) = self.entries.get(&key(at)) {
            if existing.kind == kind
                || (kind == PlannedKind::Dir && existing.kind == PlannedKind::Dir)
            {
                return Ok(());
            }
            return Err(clash(at, existing));
        }
        let mode = if matches!(kind, PlannedKind::Symlink { .. }) {
            0o777
        } else {
            mode
        };
        self.record(
            at,
            PlannedEntry {
                kind,
                mode,
                source: Some(host.to_path_buf()),
                reason: reason.to_string(),
            },
        )
    }
}

fn clash(at: &Path, existing: &PlannedEntry) -> CopyError {
    let what = match existing.kind {
        PlannedKind::Dir => "a directory",
        PlannedKind::File { .. } => "a file",
        PlannedKind::Generated(_) => "a generated file",
        PlannedKind::Symlink { .. } => "a symlink",
    };
    CopyError::Clash {
        path: at.to_path_buf(),
        existing: what.to_string(),
    }
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// lstat of a host path, its failure named for the user.
fn lstat(host: &Path) -> Result<std::fs::Metadata, CopyError> {
    std::fs::symlink_metadata(host).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CopyError::Missing {
            path: host.to_path_buf(),
        },
        std::io::ErrorKind::NotADirectory => CopyError::NotADirectory {
            path: host.to_path_buf(),
        },
        _ => CopyError::Unreadable {
            path: host.to_path_buf(),
            source: e,
        },
    })
}

/// A host symlink's target. Image paths are UTF-8 (the manifest is JSON); a target that
/// is not would be changed on the way in, so it is refused rather than silently altered.
fn read_link(host: &Path) -> Result<PathBuf, CopyError> {
    let target = std::fs::read_link(host).map_err(|source| CopyError::Unreadable {
        path: host.to_path_buf(),
        source,
    })?;
    if target.to_str().is_none() {
        return Err(CopyError::NotUtf8 {
            path: host.to_path_buf(),
            what: "the symlink's target",
        });
    }
    Ok(target)
}

/// The target a symlink at `link` gets in the image: relative targets as they are;
/// absolute ones rewritten relative to the link's directory, so the image resolves
/// them the same way wherever it is unpacked.
pub fn relative_target(link: &Path, target: &Path) -> String {
    if !target.is_absolute() {
        return target.to_string_lossy().into_owned();
    }
    let from: Vec<_> = components(link.parent().unwrap_or(Path::new("/"))).into();
    let to: Vec<_> = components(&normalize(target)).into();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|p| p.to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_targets_become_relative() {
        assert_eq!(
            relative_target(
                Path::new("/usr/lib64/ld-linux-x86-64.so.2"),
                Path::new("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
            ),
            "../../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        );
        assert_eq!(
            relative_target(Path::new("/bin"), Path::new("/usr/bin")),
            "usr/bin"
        );
        assert_eq!(
            relative_target(Path::new("/a/b"), Path::new("libb.so.1")),
            "libb.so.1"
        );
    }

    #[test]
    fn symlink_chains_and_merged_usr_links_are_kept() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        std::fs::write(r.join("usr/lib/libfoo.so.6.0.1"), b"x").unwrap();
        symlink("libfoo.so.6.0.1", r.join("usr/lib/libfoo.so.6")).unwrap();
        symlink("/lib/libfoo.so.6", r.join("usr/lib/libfoo.so")).unwrap();
        let mut tree = ImageTree::new(RootPath::new(r));
        let real = tree.copy_path(Path::new("/lib/libfoo.so"), "test").unwrap();
        assert_eq!(real, Path::new("/usr/lib/libfoo.so.6.0.1"));
        let kinds: Vec<(&str, &PlannedKind)> = tree
            .entries()
            .iter()
            .map(|(k, v)| (k.as_str(), &v.kind))
            .collect();
        let link = |t: &str| PlannedKind::Symlink {
            target: t.to_string(),
        };
        assert_eq!(kinds[0], ("lib", &link("usr/lib")));
        assert_eq!(kinds[1], ("usr", &PlannedKind::Dir));
        assert_eq!(kinds[2], ("usr/lib", &PlannedKind::Dir));
        assert_eq!(
            kinds[3],
            ("usr/lib/libfoo.so", &link("../../lib/libfoo.so.6"))
        );
        assert_eq!(kinds[4], ("usr/lib/libfoo.so.6", &link("libfoo.so.6.0.1")));
        assert!(matches!(
            kinds[5],
            ("usr/lib/libfoo.so.6.0.1", PlannedKind::File { .. })
        ));
    }

    #[test]
    fn symlink_loops_are_an_error() {
        let root = tempfile::tempdir().unwrap();
        symlink("b", root.path().join("a")).unwrap();
        symlink("a", root.path().join("b")).unwrap();
        let mut tree = ImageTree::new(RootPath::new(root.path()));
        assert!(matches!(
            tree.copy_path(Path::new("/a"), "test"),
            Err(CopyError::SymlinkLoop { .. })
        ));
    }
}
