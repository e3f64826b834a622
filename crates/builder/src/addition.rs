//! What a source other than the programs puts in the image: the extras, `--add`, and
//! the probes of `--trace`. Each source hands a list of [`Addition`]s to the plan's one door,
//! [`Planner::add`](crate::plan::Planner::add), which applies them in order; no source
//! reaches into the plan itself.

use std::path::PathBuf;

/// One path of the image, what it is made from, and why it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addition {
    /// The path in the image.
    pub path: PathBuf,
    /// For the manifest and `--explain`.
    pub reason: String,
    pub kind: AdditionKind,
}

/// How an addition is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdditionKind {
    /// An ELF object of the root at `path` (an NSS module, `libgcc_s.so.1`): copied with
    /// every symlink on the way, then resolved like a program named to `--bins`, its
    /// interpreter and libraries copied and named for it ("libc.so.6 loaded for ...").
    Elf,
    /// The root's file at `path`, as the kernel walks to it: every symlink on the way
    /// goes in as a symlink, and so does the file it ends at.
    RootFile,
    /// The host file `source` at `path`, as it is: a regular file copied, a symlink kept
    /// as a symlink (not followed), a directory as a directory (not entered). The parent
    /// directories come from the root. A regular ELF file of the root brings what the
    /// loader loads for it, with the reason "REASON (its libraries)".
    HostFile { source: PathBuf },
    /// A file mkroot writes (`/etc/passwd`), with its mode.
    Generated { bytes: Vec<u8>, mode: u32 },
    /// A directory: the root's, if it has one there, else made with `mode`.
    Directory { mode: u32 },
    /// A host path a probe used, at the same path in the image and as it is on the host
    /// (a symlink kept, a directory not entered). It yields: a path the plan has already
    /// stays as planned, and a later addition of another kind takes the path over. A
    /// file the probe ran (`executed`) is resolved as a program named to `--bins` is
    /// (a script brings its interpreter); another ELF file brings what the loader loads
    /// for it. Either way a library the resolver does not find is left out with a
    /// warning, not an error: the program ran, or may only have been looked at.
    Traced { executed: bool },
}

impl Addition {
    pub fn elf(path: impl Into<PathBuf>, reason: impl Into<String>) -> Addition {
        Addition::new(path, reason, AdditionKind::Elf)
    }

    pub fn root_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Addition {
        Addition::new(path, reason, AdditionKind::RootFile)
    }

    /// The host path `source`, as it is, at the image path `path`.
    pub fn host_file(
        source: impl Into<PathBuf>,
        path: impl Into<PathBuf>,
        reason: impl Into<String>,
    ) -> Addition {
        let source = source.into();
        Addition::new(path, reason, AdditionKind::HostFile { source })
    }

    pub fn generated(
        path: impl Into<PathBuf>,
        bytes: Vec<u8>,
        mode: u32,
        reason: impl Into<String>,
    ) -> Addition {
        Addition::new(path, reason, AdditionKind::Generated { bytes, mode })
    }

    pub fn directory(path: impl Into<PathBuf>, mode: u32, reason: impl Into<String>) -> Addition {
        Addition::new(path, reason, AdditionKind::Directory { mode })
    }

    /// A host path a probe used (see [`AdditionKind::Traced`]).
    pub fn traced(path: impl Into<PathBuf>, executed: bool, reason: impl Into<String>) -> Addition {
        Addition::new(path, reason, AdditionKind::Traced { executed })
    }

    fn new(path: impl Into<PathBuf>, reason: impl Into<String>, kind: AdditionKind) -> Addition {
        Addition {
            path: path.into(),
            reason: reason.into(),
            kind,
        }
    }
}
