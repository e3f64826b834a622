//! What a trace found: the host's files, symlinks and directories a probe used, as
//! sets, so two traces of the same probe on the same host are equal whatever order
//! their events came in.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::paths::{self, WalkEnd};
use super::tracer::Access;
use super::TraceError;

/// The host paths a probe used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceRecord {
    /// Real files (not directories, not symlinks) opened, executed, stat'ed or checked.
    pub files: BTreeSet<PathBuf>,
    /// The files of `files` that were run as programs (execve).
    pub executed: BTreeSet<PathBuf>,
    /// Every symlink passed through or read, with its target as written in the link.
    pub symlinks: BTreeMap<PathBuf, PathBuf>,
    /// Directories named by a call: opened (with O_DIRECTORY, to list them), entered or
    /// stat'ed. Their place in the tree matters, not their whole content.
    pub dirs: BTreeSet<PathBuf>,
    /// The probe's exit status (128 + the signal's number when a signal ended it).
    pub exit_status: i32,
}

/// The kernel's and the system's own trees, never files of an image: a probe sees
/// fresh ones in its sandbox, and an image gets its own at run time.
pub const SYSTEM_TREES: [&str; 4] = ["/proc", "/sys", "/dev", "/run"];

/// What is left out of a record: [`SYSTEM_TREES`] and the caller's globs.
#[derive(Debug)]
pub struct Exclusions {
    globs: GlobSet,
}

impl Exclusions {
    /// `globs` match whole absolute paths; `*` stays within one component, `**` crosses.
    pub fn new(globs: &[String]) -> Result<Exclusions, TraceError> {
        let mut set = GlobSetBuilder::new();
        for glob in globs {
            let compiled = GlobBuilder::new(glob)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|source| TraceError::Exclude {
                    glob: glob.clone(),
                    source,
                })?;
            set.add(compiled);
        }
        let globs = set.build().map_err(|source| TraceError::Exclude {
            glob: globs.join(" "),
            source,
        })?;
        Ok(Exclusions { globs })
    }

    /// A path under a system tree: the walk does not go in.
    pub fn is_system(path: &Path) -> bool {
        SYSTEM_TREES.iter().any(|tree| path.starts_with(tree))
    }

    pub fn excludes(&self, path: &Path) -> bool {
        Exclusions::is_system(path) || self.globs.is_match(path)
    }
}

/// The record of the paths that successful calls named: each walked against the host's
/// tree (so what the probe made itself, absent from the host, drops out), then the
/// exclusions applied to every path kept.
pub fn build(
    accesses: &BTreeSet<Access>,
    exclusions: &Exclusions,
    exit_status: i32,
) -> TraceRecord {
    let mut record = TraceRecord {
        exit_status,
        ..TraceRecord::default()
    };
    let stop = |path: &Path| Exclusions::is_system(path);
    for access in accesses {
        let named = Path::new(OsStr::from_bytes(&access.path));
        let walk = paths::walk(named, access.follow_last, &stop);
        for (link, target) in walk.links {
            if !exclusions.excludes(&link) {
                record.symlinks.insert(link, target);
            }
        }
        match walk.end {
            Some(WalkEnd::File(file)) if !exclusions.excludes(&file) => {
                if access.executed {
                    record.executed.insert(file.clone());
                }
                record.files.insert(file);
            }
            Some(WalkEnd::Dir(dir)) if !exclusions.excludes(&dir) => {
                record.dirs.insert(dir);
            }
            _ => {}
        }
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn access(path: &Path) -> Access {
        Access {
            path: path.as_os_str().as_bytes().to_vec(),
            follow_last: true,
            executed: false,
        }
    }

    #[test]
    fn files_dirs_and_links_are_sorted_apart_and_missing_paths_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        fs::create_dir(root.join("d")).unwrap();
        fs::write(root.join("d/f"), "").unwrap();
        std::os::unix::fs::symlink("d", root.join("l")).unwrap();
        let accesses: BTreeSet<Access> = [
            access(&root.join("l/f")),
            access(&root.join("d")),
            access(&root.join("made-by-the-probe")),
            access(Path::new("/proc/self/status")),
        ]
        .into_iter()
        .collect();
        let record = build(&accesses, &Exclusions::new(&[]).unwrap(), 0);
        assert_eq!(record.files, [root.join("d/f")].into());
        assert_eq!(record.dirs, [root.join("d")].into());
        assert_eq!(
            record.symlinks,
            [(root.join("l"), PathBuf::from("d"))].into()
        );
    }

    #[test]
    fn globs_leave_out_paths_with_star_inside_one_component() {
        let exclusions = Exclusions::new(&[
            "/usr/share/locale/**".to_string(),
            "/etc/*.conf".to_string(),
        ])
        .unwrap();
        assert!(exclusions.excludes(Path::new("/usr/share/locale/de/LC_MESSAGES/x.mo")));
        assert!(exclusions.excludes(Path::new("/etc/ld.so.conf")));
        assert!(!exclusions.excludes(Path::new("/etc/ld.so.conf.d/x.conf")));
        assert!(exclusions.excludes(Path::new("/run/x")));
        assert!(!exclusions.excludes(Path::new("/running")));
        assert!(matches!(
            Exclusions::new(&["/a/[".to_string()]),
            Err(TraceError::Exclude { .. })
        ));
    }
}
