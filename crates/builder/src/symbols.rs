//! The dynamic symbols an ELF object imports and exports.
//!
//! The extras use them to see what the loader cannot: a program that calls
//! `pthread_exit` will make libc dlopen `libgcc_s.so.1`; one that calls `iconv_open`
//! may load gconv modules; a libc that exports `_nss_files_getpwnam_r` has the `files`
//! NSS service built in.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The dynamic symbol names of one object.
#[derive(Debug, Clone, Default)]
pub struct DynamicSymbols {
    /// Undefined symbols: what the object needs from others.
    pub imports: HashSet<String>,
    /// Defined symbols: what it offers.
    pub exports: HashSet<String>,
}

impl DynamicSymbols {
    /// Reads the dynamic symbol table of `host`. An unreadable or malformed file has no
    /// symbols: the resolver has already accepted every object asked about here, and
    /// an extra is a best effort on top of what the loader needs.
    pub fn read(host: &Path) -> DynamicSymbols {
        let Ok(bytes) = mkroot_common::host_file::read_regular(host) else {
            return DynamicSymbols::default();
        };
        // goblin parses the whole file, more than the resolver looked at; a file it
        // chokes on (even by panicking) just has no symbols for the extras.
        std::panic::catch_unwind(|| DynamicSymbols::parse(&bytes)).unwrap_or_default()
    }

    fn parse(bytes: &[u8]) -> DynamicSymbols {
        let Ok(elf) = goblin::elf::Elf::parse(bytes) else {
            return DynamicSymbols::default();
        };
        let mut symbols = DynamicSymbols::default();
        for sym in elf.dynsyms.iter() {
            let Some(name) = elf.dynstrtab.get_at(sym.st_name) else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            if sym.st_shndx == goblin::elf::section_header::SHN_UNDEF as usize {
                symbols.imports.insert(name.to_string());
            } else {
                symbols.exports.insert(name.to_string());
            }
        }
        symbols
    }
}

/// Symbols read once per host path.
#[derive(Debug, Default)]
pub struct SymbolCache {
    read: HashMap<PathBuf, DynamicSymbols>,
}

impl SymbolCache {
    pub fn get(&mut self, host: &Path) -> &DynamicSymbols {
        self.read
            .entry(host.to_path_buf())
            .or_insert_with(|| DynamicSymbols::read(host))
    }

    /// The first of `objects` that imports any of `names`, with the name it imports.
    pub fn first_importer<'a>(
        &mut self,
        objects: impl IntoIterator<Item = &'a PathBuf>,
        names: &[&str],
    ) -> Option<(PathBuf, String)> {
        for object in objects {
            let symbols = self.get(object);
            if let Some(name) = names.iter().find(|n| symbols.imports.contains(**n)) {
                return Some((object.clone(), name.to_string()));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libc_exports_and_the_shell_imports() {
        // This test's own executable is an ELF linked against libc.
        let me = std::env::current_exe().unwrap();
        let symbols = DynamicSymbols::read(&me);
        assert!(symbols
            .imports
            .iter()
            .any(|s| s == "malloc" || s == "write"));
        let not_elf = DynamicSymbols::read(Path::new("/etc/hostname"));
        assert!(not_elf.imports.is_empty() && not_elf.exports.is_empty());
    }
}
