//! Load order: which libraries the loader would load for a program, found breadth-first
//! as ld.so does, first loaded wins by name/SONAME.

use std::path::{Path, PathBuf};

/// One library in load order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedLibrary {
    /// The name as written in DT_NEEDED (`libc.so.6`).
    pub name: String,
    /// The path the loader would open it through, inside the (sys)root (`/lib/x86_64-linux-gnu/libc.so.6`).
    pub path: PathBuf,
}

/// A DT_NEEDED entry that no search rule found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingLibrary {
    pub name: String,
    /// The object (path inside the root) whose DT_NEEDED named it.
    pub needed_by: PathBuf,
}

/// What the loader would load for one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The program as found (path inside the root).
    pub program: PathBuf,
    /// PT_INTERP, at its exact path; `None` for static programs and plain libraries.
    pub interpreter: Option<PathBuf>,
    /// Libraries in load order, the program itself and its interpreter not included.
    pub libraries: Vec<LoadedLibrary>,
    pub missing: Vec<MissingLibrary>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an ELF file")]
    NotElf { path: PathBuf },
    #[error("{path}: malformed ELF: {reason}")]
    Malformed { path: PathBuf, reason: String },
}

/// Resolves programs against a root (`/`, or a `--sysroot`), reading that root's loader
/// cache and default directories once.
pub struct Resolver {
    root: PathBuf,
}

impl Resolver {
    pub fn new(root: &Path) -> Result<Resolver, ResolveError> {
        Ok(Resolver {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the loader would load for `program` (a path inside the root).
    pub fn resolve(&self, program: &Path) -> Result<Resolution, ResolveError> {
        let _ = program;
        todo!("issue 2: resolution")
    }
}
