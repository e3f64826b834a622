//! Interpreters whose standard library is not in the image. The loader runs python3 or
//! perl without it, and they die at start ("init_fs_encoding", "Can't locate
//! strict.pm"); the build warns instead, and says how to add it.

use crate::copy::ImageTree;
use crate::programs::RootPath;
use crate::resolve::Resolution;
use std::path::{Path, PathBuf};

/// An interpreter of the plan without its standard library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingStdlib {
    /// The interpreter, inside the root.
    pub program: PathBuf,
    /// The root's tree that holds the library, to suggest to `--add`; `None` when the
    /// root has none either.
    pub tree: Option<PathBuf>,
}

/// The interpreters among `programs` whose standard library `tree` lacks.
pub fn missing(programs: &[Resolution], tree: &ImageTree, root: &RootPath) -> Vec<MissingStdlib> {
    programs
        .iter()
        .filter_map(|program| {
            let real = real_path(root, &program.program);
            let name = real.file_name()?.to_str()?;
            let libraries: Vec<&str> = program.libraries.iter().map(|l| l.name.as_str()).collect();
            let (marker, tree_dir) = if let Some(version) = python_version(name, &libraries) {
                let dir = PathBuf::from(format!("/usr/lib/python{version}"));
                (dir.join("os.py"), Some(dir))
            } else if is_perl(name) {
                (PathBuf::from("strict.pm"), perl_tree(root))
            } else {
                return None;
            };
            let present = match marker.is_absolute() {
                true => tree.contains(&marker),
                false => (tree.entries().keys()).any(|path| Path::new(path).ends_with(&marker)),
            };
            (!present).then(|| MissingStdlib {
                program: program.program.clone(),
                tree: tree_dir.filter(|dir| root.resolve(dir).is_ok_and(|host| host.is_dir())),
            })
        })
        .collect()
}

/// The path `inside` ends at once its symlinks are followed inside the root
/// (`python3 -> python3.11`); the name of the real file tells the version.
fn real_path(root: &RootPath, inside: &Path) -> PathBuf {
    let mut path = inside.to_path_buf();
    for _ in 0..crate::root_walk::MAX_SYMLINKS {
        let Ok(target) = std::fs::read_link(root.joined(&path)) else {
            break;
        };
        let parent = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        path = crate::programs::normalize(&parent.join(target));
    }
    path
}

/// `3.11` for `python3.11`, or a program that links `libpython3.11.so.1.0`.
fn python_version(name: &str, libraries: &[&str]) -> Option<String> {
    let from_library = libraries.iter().find_map(|library| {
        let rest = library.strip_prefix("libpython")?;
        Some(
            rest.split(".so")
                .next()?
                .trim_end_matches(['d', 'm'])
                .to_string(),
        )
    });
    let from_name = name
        .strip_prefix("python")
        .filter(|v| v.starts_with('3') && v.contains('.'))
        .map(str::to_string);
    from_library.or(from_name).filter(|v| v.starts_with("3."))
}

fn is_perl(name: &str) -> bool {
    name == "perl"
        || name
            .strip_prefix("perl5")
            .is_some_and(|v| v.starts_with('.'))
}

/// Debian's Perl core library, `/usr/share/perl/5.X`, where the root has one.
fn perl_tree(root: &RootPath) -> Option<PathBuf> {
    let dir = root.resolve(Path::new("/usr/share/perl")).ok()?;
    let mut versions: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| Path::new("/usr/share/perl").join(e.file_name()))
        .collect();
    versions.sort();
    versions.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_versions_come_from_the_name_or_libpython() {
        assert_eq!(python_version("python3.11", &[]), Some("3.11".into()));
        assert_eq!(
            python_version("python3", &["libpython3.12.so.1.0"]),
            Some("3.12".into())
        );
        assert_eq!(python_version("python3", &["libc.so.6"]), None);
        assert_eq!(python_version("python2.7", &[]), None);
        assert!(is_perl("perl") && is_perl("perl5.36.0") && !is_perl("perldoc"));
    }
}

#[cfg(test)]
mod host_tests {
    use crate::plan::Plan;
    use crate::request::ImageFlags;

    #[test]
    fn debian_python_without_its_library_is_found() {
        if !std::path::Path::new("/usr/lib/python3.11/os.py").exists() {
            return;
        }
        let request = ImageFlags {
            bins: vec!["/usr/bin/python3".into()],
            ..ImageFlags::default()
        }
        .to_request()
        .unwrap();
        let plan = Plan::build(&request).unwrap();
        let missing = &plan.stdlib_missing;
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert_eq!(
            missing[0].tree.as_deref(),
            Some(std::path::Path::new("/usr/lib/python3.11"))
        );
    }
}
