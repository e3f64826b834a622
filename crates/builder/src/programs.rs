//! Finding the programs named on the command line, as a shell would, and following
//! scripts to their interpreters.
//!
//! Paths here are paths inside the root (`/` or `--sysroot`); [`RootPath`] turns them
//! into host paths.

use crate::root_walk::{symlink_loop, LinksDoNotEnd};
use mkroot_common::fill::read_up_to;
use mkroot_common::host_file::{kind_name, open_regular};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

pub use mkroot_common::manifest::DEFAULT_PATH;

/// Scripts may name a script as interpreter (Linux follows a few levels); so do we.
pub const MAX_INTERPRETER_DEPTH: usize = 4;

/// A root directory and the mapping of paths inside it to host paths.
#[derive(Debug, Clone)]
pub struct RootPath {
    root: PathBuf,
}

impl RootPath {
    pub fn new(root: &Path) -> RootPath {
        RootPath {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host path of `inside` (an absolute path inside the root), joined as it is:
    /// a symlink on the way would be followed on the host, so this is for paths already
    /// resolved component by component (see [`RootPath::resolve`] for the rest).
    pub fn joined(&self, inside: &Path) -> PathBuf {
        let relative = inside.strip_prefix("/").unwrap_or(inside);
        if relative.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(relative)
        }
    }

    /// The host path of the file `inside` names, its symlinks followed inside the root.
    pub fn resolve(&self, inside: &Path) -> std::io::Result<PathBuf> {
        crate::root_walk::resolve_in_root(&self.root, inside)
    }

    /// The path inside the root of a host path under it (for `--sysroot`); `None` when
    /// the host path lies outside the root.
    pub fn inside(&self, host: &Path) -> Option<PathBuf> {
        let relative = host.strip_prefix(&self.root).ok()?;
        Some(Path::new("/").join(relative))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("{name}: program not found in PATH; give its path or install it")]
    NotFound { name: String },
    #[error("{path}: no such file; check the path")]
    NoSuchFile { path: PathBuf },
    #[error("{path}: is a directory, not a program; name a file")]
    IsDirectory { path: PathBuf },
    #[error("{path}: {what}, not a program; name a regular file")]
    NotRegular { path: PathBuf, what: &'static str },
    #[error(transparent)]
    SymlinkLoop(#[from] LinksDoNotEnd),
    #[error("{path}: cannot read: {source}; check its permissions")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: script names no interpreter after `#!`; fix its first line")]
    EmptyShebang { path: PathBuf },
    #[error("{path}: `#!/usr/bin/env` with no program name; fix its first line")]
    EnvWithoutProgram { path: PathBuf },
    #[error("{script}: interpreters nest more than {MAX_INTERPRETER_DEPTH} deep; simplify the script's #! line")]
    InterpreterDepth { script: PathBuf },
    #[error(
        "{script}: its interpreter {interpreter} does not exist; install it or fix the #! line"
    )]
    MissingInterpreter {
        script: PathBuf,
        interpreter: PathBuf,
    },
}

/// Finds `name` the way a shell does: a name with a `/` is a path (relative ones are
/// taken from the current directory); otherwise the first executable regular file
/// called `name` in the directories of `search_path`, inside the root.
///
/// Returns the path inside the root.
pub fn find_program(
    name: &str,
    root: &RootPath,
    search_path: &str,
) -> Result<PathBuf, ProgramError> {
    if name.contains('/') {
        return program_path(name, root);
    }
    for dir in search_path.split(':') {
        // An empty PATH entry means the current directory, as in a shell; only for `/`.
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = if dir.starts_with('/') {
            Path::new(dir).join(name)
        } else if root.root() == Path::new("/") {
            match std::env::current_dir() {
                Ok(cwd) => cwd.join(dir).join(name),
                Err(_) => continue,
            }
        } else {
            continue;
        };
        match root.resolve(&candidate) {
            Ok(host) if is_executable_file(&host) => return Ok(normalize(&candidate)),
            // A shell stops here too: exec fails with ELOOP, not "not found".
            Err(source) if symlink_loop(&source) => {
                return Err(LinksDoNotEnd {
                    path: root.joined(&candidate),
                    source,
                }
                .into())
            }
            _ => {}
        }
    }
    Err(ProgramError::NotFound {
        name: name.to_string(),
    })
}

/// A name with a `/`: absolute paths are inside the root; relative paths are from the
/// current directory and must then lie inside the root.
fn program_path(name: &str, root: &RootPath) -> Result<PathBuf, ProgramError> {
    let given = Path::new(name);
    let inside = if given.is_absolute() {
        normalize(given)
    } else {
        let cwd = std::env::current_dir().map_err(|source| ProgramError::Unreadable {
            path: given.to_path_buf(),
            source,
        })?;
        let host = normalize(&cwd.join(given));
        root.inside(&host).ok_or_else(|| ProgramError::NoSuchFile {
            path: given.to_path_buf(),
        })?
    };
    match root.resolve(&inside).and_then(std::fs::metadata) {
        Ok(meta) if meta.is_dir() => Err(ProgramError::IsDirectory {
            path: given.to_path_buf(),
        }),
        Ok(meta) if !meta.is_file() => Err(ProgramError::NotRegular {
            path: given.to_path_buf(),
            what: kind_name(&meta.file_type()),
        }),
        Ok(_) => Ok(inside),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ProgramError::NoSuchFile {
            path: given.to_path_buf(),
        }),
        Err(source) if symlink_loop(&source) => Err(LinksDoNotEnd {
            path: given.to_path_buf(),
            source,
        }
        .into()),
        Err(source) => Err(ProgramError::Unreadable {
            path: given.to_path_buf(),
            source,
        }),
    }
}

fn is_executable_file(host: &Path) -> bool {
    std::fs::metadata(host)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Removes `.` and `..` lexically (as the kernel would after following no symlinks;
/// good enough for naming programs, whose symlinks are kept as they are).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The interpreter line of a script: `#!/bin/sh -e` -> `/bin/sh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shebang {
    /// `#!/path/to/interpreter [arg]`
    Interpreter(PathBuf),
    /// `#!/usr/bin/env [-S] NAME ...`: `env` itself, and NAME looked up in PATH.
    Env { env: PathBuf, program: String },
}

/// Reads the first line of the file `inside` names in `root` and returns its shebang, or
/// `None` when the file does not start with `#!` (an ELF file, or data).
pub fn read_shebang(root: &RootPath, inside: &Path) -> Result<Option<Shebang>, ProgramError> {
    let unreadable = |source| ProgramError::Unreadable {
        path: inside.to_path_buf(),
        source,
    };
    let mut head = [0u8; 256];
    let (mut file, _) = root
        .resolve(inside)
        .and_then(|host| open_regular(&host))
        .map_err(unreadable)?;
    let filled = read_up_to(&mut file, &mut head).map_err(unreadable)?;
    let head = &head[..filled];
    if !head.starts_with(b"#!") {
        return Ok(None);
    }
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[2..line_end]);
    let mut words = line.split_whitespace();
    let Some(interpreter) = words.next() else {
        return Err(ProgramError::EmptyShebang {
            path: inside.to_path_buf(),
        });
    };
    let interpreter = PathBuf::from(interpreter);
    if interpreter.file_name().is_some_and(|n| n == "env") {
        // `env -S prog args` and `env prog`: the first word not an option is the program.
        let program = words.find(|w| !w.starts_with('-')).map(str::to_string);
        return match program {
            Some(program) => Ok(Some(Shebang::Env {
                env: interpreter,
                program,
            })),
            None => Err(ProgramError::EnvWithoutProgram {
                path: inside.to_path_buf(),
            }),
        };
    }
    Ok(Some(Shebang::Interpreter(interpreter)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn shebangs_are_read_as_the_kernel_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "a", "#!/bin/sh -e\necho\n");
        script(dir.path(), "b", "#! /usr/bin/env -S python3 -u\n");
        script(dir.path(), "c", "\x7fELF....");
        script(dir.path(), "d", "#!\n");
        let root = RootPath::new(dir.path());
        let shebang = |name: &str| read_shebang(&root, Path::new(name));
        assert_eq!(
            shebang("/a").unwrap(),
            Some(Shebang::Interpreter("/bin/sh".into()))
        );
        assert_eq!(
            shebang("/b").unwrap(),
            Some(Shebang::Env {
                env: "/usr/bin/env".into(),
                program: "python3".into()
            })
        );
        assert_eq!(shebang("/c").unwrap(), None);
        assert!(shebang("/d").is_err());
    }

    #[test]
    fn programs_are_found_in_path_order_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        for dir in ["usr/bin", "bin"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let tool = script(root.path(), "bin/tool", "#!/bin/sh\n");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        script(root.path(), "usr/bin/tool", "not executable");
        let root = RootPath::new(root.path());
        assert_eq!(
            find_program("tool", &root, "/usr/bin:/bin").unwrap(),
            Path::new("/bin/tool")
        );
        assert!(matches!(
            find_program("nothere", &root, "/usr/bin:/bin"),
            Err(ProgramError::NotFound { .. })
        ));
        assert_eq!(
            find_program("/usr/../bin/tool", &root, "").unwrap(),
            Path::new("/bin/tool")
        );
    }
}
