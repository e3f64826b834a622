//! What the loader does not name but programs load at run time, or read, to work.
//!
//! Each extra is on by default and can be turned off: NSS modules and their
//! configuration ([`nss`]), minimal users and groups ([`users`]), `libgcc_s.so.1` for
//! threads ([`libgcc`]), terminfo entries ([`terminfo`]), gconv modules ([`gconv`]).

pub mod gconv;
pub mod libgcc;
pub mod nss;
pub mod terminfo;
pub mod users;

use crate::plan::{PlanError, Planner};
use crate::symbols::SymbolCache;
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
            users: Vec::new(),
        }
    }
}

/// Adds every extra that is on, in a fixed order.
pub fn add_all(planner: &mut Planner, extras: &Extras) -> Result<(), PlanError> {
    let mut symbols = SymbolCache::default();
    if extras.libgcc {
        libgcc::add(planner, &mut symbols)?;
    }
    if extras.gconv != GconvChoice::Off {
        gconv::add(planner, &mut symbols, extras.gconv)?;
    }
    if extras.terminfo {
        terminfo::add(planner)?;
    }
    if extras.nss {
        nss::add(planner, &mut symbols)?;
        users::add(planner, &extras.users)?;
    }
    Ok(())
}

/// The libc every resolved program loads, as a path inside the root (the first found).
pub(crate) fn libc_path(planner: &Planner) -> Option<PathBuf> {
    planner
        .objects
        .iter()
        .flat_map(|r| r.libraries.iter())
        .find(|l| l.name == "libc.so.6" || l.name.starts_with("libc.so."))
        .map(|l| l.path.clone())
}

/// Where libc's dlopen would find `name` (see [`Planner::find_library`]).
pub(crate) fn find_beside_libc(planner: &Planner, name: &str) -> Option<PathBuf> {
    planner.find_library(name, &libc_path(planner)?)
}

/// Every object loaded for any resolved program (the programs themselves included), as
/// host paths, in a fixed order.
pub(crate) fn loaded_objects(planner: &Planner) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for resolution in &planner.objects {
        let paths = std::iter::once(&resolution.program)
            .chain(resolution.libraries.iter().map(|l| &l.path));
        for path in paths {
            if seen.insert(path.clone()) {
                out.extend(planner.root().resolve(path).ok());
            }
        }
    }
    out
}

/// The path inside the root of a host path from [`loaded_objects`], for reasons.
pub(crate) fn shown(planner: &Planner, host: &Path) -> String {
    planner
        .root()
        .inside(host)
        .unwrap_or_else(|| host.to_path_buf())
        .display()
        .to_string()
}
