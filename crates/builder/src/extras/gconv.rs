//! gconv modules for programs that use iconv.
//!
//! glibc converts UTF-8, ASCII, ISO-8859-1 and UCS-2/4 itself; any other charset
//! makes `iconv_open` load a module from `LIBDIR/gconv`, found through
//! `gconv-modules.cache`. A program that imports `iconv_open` gets the cache and the
//! Unicode modules (UTF-16, UTF-32, UTF-7, UNICODE), a few tens of kilobytes;
//! `--gconv` copies every module (about 8 MB), each with its own libraries.

use super::{libc_path, loaded_objects, shown, GconvChoice};
use crate::plan::{PlanError, Planner};
use crate::symbols::SymbolCache;
use std::path::{Path, PathBuf};

const UNICODE_MODULES: &[&str] = &["UTF-16.so", "UTF-32.so", "UTF-7.so", "UNICODE.so"];

/// What iconv reads to find modules: the cache if there is one, else the text
/// configuration.
const CONFIGURATION: &[&str] = &["gconv-modules.cache", "gconv-modules"];

pub fn add(
    planner: &mut Planner,
    symbols: &mut SymbolCache,
    choice: GconvChoice,
) -> Result<(), PlanError> {
    let Some(dir) = libc_path(planner).and_then(|libc| libc.parent().map(|d| d.join("gconv")))
    else {
        return Ok(());
    };
    let Ok(host_dir) = planner.root().resolve(&dir) else {
        return Ok(());
    };
    if !host_dir.is_dir() {
        return Ok(());
    }
    let reason = match choice {
        GconvChoice::Off => return Ok(()),
        GconvChoice::All => "gconv module (--gconv)".to_string(),
        GconvChoice::Detect => {
            let objects = loaded_objects(planner);
            let Some((importer, _)) = symbols.first_importer(&objects, &["iconv_open"]) else {
                return Ok(());
            };
            format!(
                "gconv module for iconv_open in {}",
                shown(planner, &importer)
            )
        }
    };
    let mut files: Vec<PathBuf> = Vec::new();
    if choice == GconvChoice::All {
        for item in walkdir::WalkDir::new(&host_dir).sort_by_file_name() {
            let Ok(item) = item else { continue };
            if let Some(inside) = planner.root().inside(item.path()) {
                if !item.file_type().is_dir() {
                    files.push(inside);
                }
            }
        }
    } else {
        if let Some(config) = CONFIGURATION
            .iter()
            .map(|name| dir.join(name))
            .find(|path| {
                planner
                    .root()
                    .resolve(path)
                    .is_ok_and(|host| host.is_file())
            })
        {
            files.push(config);
        }
        files.extend(UNICODE_MODULES.iter().map(|name| dir.join(name)));
    }
    for file in files {
        let Ok(host) = planner.root().resolve(&file) else {
            continue;
        };
        if !host.exists() {
            continue;
        }
        if file.extension().is_some_and(|e| e == "so") && crate::plan::is_elf(&host) {
            planner.resolve_and_copy(Path::new(&file), &reason)?;
        } else {
            planner.tree.copy_path(&file, &reason)?;
        }
    }
    Ok(())
}
