//! What the loader does not name but programs load at run time, or read, to work.
//!
//! Each extra is on by default and can be turned off: NSS modules and their
//! configuration ([`nss`]), minimal users and groups ([`users`]), `libgcc_s.so.1` for
//! threads ([`libgcc`]), terminfo entries ([`terminfo`]), gconv modules ([`gconv`]),
//! the CA certificates for programs that link a TLS library ([`ca_certs`]).
//! Each is a function from a read-only view of the plan so far ([`PlanView`]) to the
//! [`Addition`]s it wants; the plan applies them, one extra after the other.

pub mod ca_certs;
pub mod gconv;
pub mod libgcc;
pub mod nss;
pub mod terminfo;
pub mod users;

use crate::addition::Addition;
use crate::copy::ImageTree;
use crate::programs::RootPath;
use crate::resolve::Resolution;
use crate::root_walk::{symlink_loop, LinksDoNotEnd};
use crate::search::{Abi, Found, LibrarySearch, Requester};
use crate::symbols::SymbolCache;
use mkroot_common::host_file;
use std::path::{Path, PathBuf};

/// Which gconv modules go in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GconvChoice {
    /// None.
    Off,
    /// The Unicode modules, when a program imports `iconv_open`.
    Detect,
    /// Every module (`--gconv`).
    All,
}

/// The extras to add; all on by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extras {
    pub nss: bool,
    pub libgcc: bool,
    pub terminfo: bool,
    pub gconv: GconvChoice,
    /// The CA bundle (and OpenSSL's configuration) for programs that link TLS.
    pub ca_certs: bool,
    /// Users besides root and nobody (`--user NAME`).
    pub users: Vec<String>,
}

impl Default for Extras {
    fn default() -> Extras {
        Extras {
            nss: true,
            libgcc: true,
            terminfo: true,
            gconv: GconvChoice::Detect,
            ca_certs: true,
            users: Vec::new(),
        }
    }
}

/// A file of the root an extra reads that is not what it should be.
#[derive(Debug, thiserror::Error)]
pub enum ExtraError {
    #[error("{path}: {what}, not a regular file; mkroot reads only regular files there: replace or remove it")]
    NotRegular { path: PathBuf, what: &'static str },
    #[error(transparent)]
    SymlinkLoop(#[from] LinksDoNotEnd),
}

/// What an extra sees of the plan so far.
pub struct PlanView<'a> {
    pub root: &'a RootPath,
    /// Every ELF object resolved so far (programs, added ELF files, extra modules).
    pub objects: &'a [Resolution],
    pub tree: &'a ImageTree,
    /// The root's library search rules.
    pub search: &'a LibrarySearch,
}

/// One extra, with its settings.
#[derive(Debug, Clone, Copy)]
pub enum Extra<'a> {
    Libgcc,
    Gconv(GconvChoice),
    Terminfo,
    CaCerts,
    Nss,
    /// Users besides root and nobody.
    Users(&'a [String]),
}

/// The extras that are on, in the order they are added: each sees what the ones
/// before it added (gconv looks for `iconv_open` in `libgcc_s.so.1` too; the users'
/// shell is looked for among the files planned).
pub fn enabled(extras: &Extras) -> Vec<Extra<'_>> {
    let mut on = Vec::new();
    if extras.libgcc {
        on.push(Extra::Libgcc);
    }
    if extras.gconv != GconvChoice::Off {
        on.push(Extra::Gconv(extras.gconv));
    }
    if extras.terminfo {
        on.push(Extra::Terminfo);
    }
    if extras.ca_certs {
        on.push(Extra::CaCerts);
    }
    if extras.nss {
        on.push(Extra::Nss);
        on.push(Extra::Users(&extras.users));
    }
    on
}

impl Extra<'_> {
    /// What this extra adds to the plan seen in `view`; `symbols` is shared by the
    /// extras so each object's symbols are read once.
    pub fn additions(
        self,
        view: &PlanView,
        symbols: &mut SymbolCache,
    ) -> Result<Vec<Addition>, ExtraError> {
        Ok(match self {
            Extra::Libgcc => libgcc::additions(view, symbols),
            Extra::Gconv(choice) => gconv::additions(view, symbols, choice),
            Extra::Terminfo => terminfo::additions(view),
            Extra::CaCerts => ca_certs::additions(view),
            Extra::Nss => nss::additions(view, symbols)?,
            Extra::Users(users) => users::additions(view, users)?,
        })
    }
}

impl PlanView<'_> {
    /// The libc every resolved program loads, as a path inside the root (the first
    /// found).
    pub fn libc_path(&self) -> Option<PathBuf> {
        self.objects
            .iter()
            .flat_map(|r| r.libraries.iter())
            .find(|l| l.name == "libc.so.6" || l.name.starts_with("libc.so."))
            .map(|l| l.path.clone())
    }

    /// Where libc's dlopen would find `name` (a bare name like `libgcc_s.so.1`): the
    /// loader's cache and default directories, for libc's ABI. libc has no RPATH or
    /// RUNPATH, so nothing else applies to what it loads by name.
    pub fn find_beside_libc(&self, name: &str) -> Option<PathBuf> {
        let libc = self.libc_path()?;
        let libc = self.search.elf_facts(&libc.to_string_lossy())?;
        match self
            .search
            .find(name, &Requester::default(), Abi::of(&libc.facts))
        {
            Found::Library { path, .. } => Some(PathBuf::from(path)),
            _ => None,
        }
    }

    /// Every object loaded for any resolved program (the programs themselves
    /// included), as host paths, in a fixed order.
    pub fn loaded_objects(&self) -> Vec<PathBuf> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for resolution in self.objects {
            let paths = std::iter::once(&resolution.program)
                .chain(resolution.libraries.iter().map(|l| &l.path));
            for path in paths {
                if seen.insert(path.clone()) {
                    out.extend(self.root.resolve(path).ok());
                }
            }
        }
        out
    }

    /// The path inside the root of a host path from [`PlanView::loaded_objects`], for
    /// reasons.
    pub fn shown(&self, host: &Path) -> String {
        self.root
            .inside(host)
            .unwrap_or_else(|| host.to_path_buf())
            .display()
            .to_string()
    }

    /// The text of a configuration file of the root (`/etc/nsswitch.conf`), symlinks
    /// followed inside it; `None` when it is absent or unreadable as text, which the
    /// extras take for "use the defaults". A fifo, a device node or a symlink loop there
    /// is an error: the root is not what it should be.
    pub fn read_config(&self, inside: &str) -> Result<Option<String>, ExtraError> {
        let host = match self.root.resolve(Path::new(inside)) {
            Ok(host) => host,
            Err(source) if symlink_loop(&source) => {
                return Err(LinksDoNotEnd {
                    path: self.root.joined(Path::new(inside)),
                    source,
                }
                .into())
            }
            Err(_) => return Ok(None),
        };
        match host_file::read_regular_to_string(&host) {
            Ok(text) => Ok(Some(text)),
            Err(e) => match host_file::not_regular(&e) {
                // A directory there is absent to libc too.
                Some(found) if found.what != "a directory" => Err(ExtraError::NotRegular {
                    path: host,
                    what: found.what,
                }),
                _ => Ok(None),
            },
        }
    }
}
