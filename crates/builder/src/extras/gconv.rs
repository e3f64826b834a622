//! gconv modules for programs that use iconv.
//!
//! glibc converts UTF-8, ASCII, ISO-8859-1 and UCS-2/4 itself; any other charset
//! makes `iconv_open` load a module from `LIBDIR/gconv`, found through
//! `gconv-modules.cache`. A program that imports `iconv_open` gets the cache and the
//! Unicode modules (UTF-16, UTF-32, UTF-7, UNICODE), a few tens of kilobytes;
//! `--gconv` copies every module (about 8 MB), each with its own libraries.

use super::{GconvChoice, PlanView};
use crate::addition::Addition;
use crate::elf::is_elf;
use crate::symbols::SymbolCache;
use std::path::PathBuf;

const UNICODE_MODULES: &[&str] = &["UTF-16.so", "UTF-32.so", "UTF-7.so", "UNICODE.so"];

/// What iconv reads to find modules: the cache if there is one, else the text
/// configuration.
const CONFIGURATION: &[&str] = &["gconv-modules.cache", "gconv-modules"];

/// The gconv modules `choice` asks for, beside libc: the `.so` files as ELF objects
/// (some load libraries of their own), the configuration as it is.
pub fn additions(view: &PlanView, symbols: &mut SymbolCache, choice: GconvChoice) -> Vec<Addition> {
    let Some(dir) = view
        .libc_path()
        .and_then(|libc| libc.parent().map(|d| d.join("gconv")))
    else {
        return Vec::new();
    };
    let Ok(host_dir) = view.root.resolve(&dir) else {
        return Vec::new();
    };
    if !host_dir.is_dir() {
        return Vec::new();
    }
    let reason = match choice {
        GconvChoice::Off => return Vec::new(),
        GconvChoice::All => "gconv module (--gconv)".to_string(),
        GconvChoice::Detect => {
            let objects = view.loaded_objects();
            let Some((importer, _)) = symbols.first_importer(&objects, &["iconv_open"]) else {
                return Vec::new();
            };
            format!("gconv module for iconv_open in {}", view.shown(&importer))
        }
    };
    let mut files: Vec<PathBuf> = Vec::new();
    if choice == GconvChoice::All {
        for item in walkdir::WalkDir::new(&host_dir).sort_by_file_name() {
            let Ok(item) = item else { continue };
            if let Some(inside) = view.root.inside(item.path()) {
                if !item.file_type().is_dir() {
                    files.push(inside);
                }
            }
        }
    } else {
        if let Some(config) = CONFIGURATION
            .iter()
            .map(|name| dir.join(name))
            .find(|path| view.root.resolve(path).is_ok_and(|host| host.is_file()))
        {
            files.push(config);
        }
        files.extend(UNICODE_MODULES.iter().map(|name| dir.join(name)));
    }
    files
        .into_iter()
        .filter_map(|file| {
            let host = view.root.resolve(&file).ok().filter(|host| host.exists())?;
            Some(
                if file.extension().is_some_and(|e| e == "so") && is_elf(&host) {
                    Addition::elf(file, reason.clone())
                } else {
                    Addition::root_file(file, reason.clone())
                },
            )
        })
        .collect()
}
