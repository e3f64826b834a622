//! Why planning stopped, as one error type with a message that names the file.
use crate::copy::CopyError;
use crate::extras::ExtraError;
use crate::programs::ProgramError;
use crate::resolve::ResolveError;
use crate::trace::TraceError;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error("{path}: cannot read: {source}; check that it exists and is readable")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an ELF file or a script; name a program or a shared library")]
    NotElf { path: PathBuf },
    #[error("{path}: malformed ELF ({reason}); the file is truncated or damaged")]
    Malformed { path: PathBuf, reason: String },
    #[error("{program}: needs {library} (named by {needed_by}), which is not found; install it, or pass --allow-missing")]
    MissingLibrary {
        program: PathBuf,
        library: String,
        needed_by: PathBuf,
    },
    #[error("{program}: {missing}; fix or remove that file, or pass --allow-missing")]
    UnloadableLibrary { program: PathBuf, missing: String },
    #[error("{root}: cannot use as root: {reason}; give an existing directory to --sysroot")]
    Root { root: PathBuf, reason: String },
    #[error("{path}: cannot read the root's loader cache: {reason}; rebuild it (ldconfig -r ROOT) or remove it")]
    LoaderCache { path: PathBuf, reason: String },
    #[error(transparent)]
    Extra(#[from] ExtraError),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("--bins: no programs given; name at least one, like --bins bash")]
    NoPrograms,
    #[error("{host}: a file cannot be the image root `/`; add it at a path under it, like {}:/NAME", host.display())]
    FileAtRoot { host: PathBuf },
}

pub(super) fn resolve_error(error: ResolveError, shown: &Path) -> PlanError {
    match error {
        ResolveError::LinkerScript { .. } => PlanError::Malformed {
            path: shown.to_path_buf(),
            reason: "a linker script, not a program".to_string(),
        },
        ResolveError::LdCache { path, reason } => PlanError::LoaderCache {
            path,
            reason: format!("malformed: {reason}"),
        },
        ResolveError::NotElf { .. } => PlanError::NotElf {
            path: shown.to_path_buf(),
        },
        ResolveError::Malformed { reason, .. } => PlanError::Malformed {
            path: shown.to_path_buf(),
            reason,
        },
        ResolveError::Io { path, source } => PlanError::Unreadable { path, source },
    }
}
