//! The loader's library search, as glibc 2.36's `_dl_map_object` does it for one DT_NEEDED
//! name, against a root directory (`/` or a sysroot):
//!
//! 1. a name with a `/` is a path, opened as is (after `$ORIGIN`/`$LIB`/`$PLATFORM`);
//! 2. unless the requesting object has DT_RUNPATH: the DT_RPATH of the requester, then of
//!    the object that loaded it, and so on up to the program, then the program's own;
//! 3. (LD_LIBRARY_PATH: never; an image must not depend on the builder's environment;)
//! 4. the requester's DT_RUNPATH (for its own needs only);
//! 5. `/etc/ld.so.cache` (with DF_1_NODEFLIB on the requester, entries under the default
//!    directories are not used);
//! 6. the default directories, unless the requester has DF_1_NODEFLIB.
//!
//! Every search directory is tried with the hwcaps subdirectories first ([`HwCaps`]).
//! A candidate of another ELF class or machine is passed over and the search goes on, as
//! the loader does; a candidate that is not a loadable ELF object at all (a linker script,
//! an empty file) stops the loader with an error, and stops this search the same way.
//!
//! Not modelled, on purpose: LD_LIBRARY_PATH, LD_PRELOAD and `/etc/ld.so.preload` (the
//! builder's environment and host configuration, which an image does not carry), and
//! secure-mode (setuid) restrictions on `$ORIGIN`.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use goblin::elf::header::{EM_386, EM_AARCH64, EM_ARM, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64};
use goblin::elf::header::{ET_DYN, ET_EXEC};

use crate::elf::{ElfClass, ElfError, ElfFacts};
use crate::hwcaps::HwCaps;
use crate::ldcache::{self, LdCache};
use crate::root_walk::{real_path_in_root, resolve_in_root, symlink_loop};

/// The ABI of a process: the class, byte order and machine of its program. The loader
/// passes over libraries of another class or machine, and refuses another byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Abi {
    pub class: ElfClass,
    pub little_endian: bool,
    pub machine: u16,
}

impl Abi {
    pub fn of(facts: &ElfFacts) -> Abi {
        Abi {
            class: facts.class,
            little_endian: facts.little_endian,
            machine: facts.machine,
        }
    }

    /// The Debian multiarch triple of this ABI (`x86_64-linux-gnu`).
    fn multiarch(&self) -> Option<&'static str> {
        Some(match (self.class, self.machine) {
            (ElfClass::Elf64, EM_X86_64) => "x86_64-linux-gnu",
            (ElfClass::Elf32, EM_X86_64) => "x86_64-linux-gnux32",
            (ElfClass::Elf32, EM_386) => "i386-linux-gnu",
            (ElfClass::Elf64, EM_AARCH64) => "aarch64-linux-gnu",
            (ElfClass::Elf32, EM_ARM) => "arm-linux-gnueabihf",
            (ElfClass::Elf64, EM_PPC64) => "powerpc64le-linux-gnu",
            (ElfClass::Elf64, EM_S390) => "s390x-linux-gnu",
            (ElfClass::Elf64, EM_RISCV) => "riscv64-linux-gnu",
            _ => return None,
        })
    }
}

/// One file the search found: its ELF facts and its identity (the loader loads one file
/// once, whatever name it was found by).
#[derive(Debug)]
pub struct Candidate {
    pub facts: Arc<ElfFacts>,
    /// (st_dev, st_ino)
    pub file_id: (u64, u64),
}

/// The outcome of looking at one path.
#[derive(Debug, Clone)]
enum Probe {
    Absent,
    Library(Arc<Candidate>),
    /// Exists but the loader would refuse it with an error.
    Unloadable(String),
}

/// Where a search ended.
#[derive(Debug, Clone)]
pub enum Found {
    /// The path the loader opens (inside the root, as the loader spells it) and the file.
    Library {
        path: String,
        candidate: Arc<Candidate>,
    },
    NotFound,
    /// The loader would stop at `path`: it is not a library it can load.
    Unloadable {
        path: String,
        reason: String,
    },
}

/// An object whose search paths take part in a lookup: its DT_RPATH or DT_RUNPATH and the
/// `$ORIGIN` to expand in it.
#[derive(Debug, Clone, Copy)]
pub struct PathSource<'a> {
    pub paths: &'a str,
    pub origin: Option<&'a str>,
}

/// What a lookup of one DT_NEEDED name depends on besides the name.
#[derive(Debug, Clone, Default)]
pub struct Requester<'a> {
    /// RPATHs in the order the loader tries them (requester, its loaders, the program);
    /// empty when the requester has DT_RUNPATH.
    pub rpaths: Vec<PathSource<'a>>,
    /// The requester's own DT_RUNPATH.
    pub runpath: Option<PathSource<'a>>,
    /// DF_1_NODEFLIB on the requester.
    pub nodeflib: bool,
}

/// The library search rules of one root, with what it has looked at remembered so many
/// programs share the work.
pub struct LibrarySearch {
    root: PathBuf,
    cache: Option<LdCache>,
    hwcaps: Mutex<HashMap<Abi, Arc<HwCaps>>>,
    probes: Mutex<HashMap<String, Probe>>,
    dirs: Mutex<HashMap<String, bool>>,
}

impl LibrarySearch {
    /// Reads the root's `/etc/ld.so.cache` (a missing cache is no cache, as for the loader).
    pub fn new(root: &Path) -> Result<LibrarySearch, ldcache::LdCacheError> {
        let cache_path = resolve_in_root(root, Path::new("/etc/ld.so.cache"));
        let cache = match cache_path
            .map_err(ldcache::LdCacheError::Io)
            .and_then(|p| LdCache::load(&p))
        {
            Ok(cache) => Some(cache),
            Err(ldcache::LdCacheError::Io(e)) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(LibrarySearch {
            root: root.to_path_buf(),
            cache,
            hwcaps: Mutex::default(),
            probes: Mutex::default(),
            dirs: Mutex::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The hwcaps subdirectories for a process of this ABI: this CPU's when the ABI runs on
    /// it, none otherwise (a sysroot for another architecture).
    pub fn hwcaps(&self, abi: Abi) -> Arc<HwCaps> {
        let mut known = self.hwcaps.lock().expect("hwcaps lock");
        known
            .entry(abi)
            .or_insert_with(|| {
                let runs_here = cfg!(target_arch = "x86_64")
                    && matches!(
                        (abi.class, abi.machine),
                        (ElfClass::Elf64, EM_X86_64) | (ElfClass::Elf32, EM_386)
                    );
                Arc::new(if runs_here {
                    HwCaps::for_process(abi.class, abi.machine)
                } else {
                    HwCaps::baseline()
                })
            })
            .clone()
    }

    /// Whether the root uses Debian's multiarch layout for this ABI.
    fn multiarch(&self, abi: Abi) -> Option<&'static str> {
        abi.multiarch().filter(|triple| {
            self.dir_exists(&format!("/usr/lib/{triple}"))
                || self.dir_exists(&format!("/lib/{triple}"))
        })
    }

    /// The loader's built-in directories: Debian's (`/lib/<triple>`, `/usr/lib/<triple>`,
    /// `/lib`, `/usr/lib`) on a multiarch root, else `/lib64`, `/usr/lib64` for 64-bit
    /// ABIs that use them, else `/lib`, `/usr/lib`.
    pub fn default_dirs(&self, abi: Abi) -> Vec<String> {
        if let Some(triple) = self.multiarch(abi) {
            return vec![
                format!("/lib/{triple}"),
                format!("/usr/lib/{triple}"),
                "/lib".into(),
                "/usr/lib".into(),
            ];
        }
        if uses_lib64(abi) {
            vec!["/lib64".into(), "/usr/lib64".into()]
        } else {
            vec!["/lib".into(), "/usr/lib".into()]
        }
    }

    /// `$LIB`: Debian's loader says `lib/<triple>`.
    fn lib_token(&self, abi: Abi) -> String {
        match self.multiarch(abi) {
            Some(triple) => format!("lib/{triple}"),
            None if uses_lib64(abi) => "lib64".into(),
            None => "lib".into(),
        }
    }

    /// Expands `$ORIGIN`, `$LIB` and `$PLATFORM` (also in `${...}` form) as the loader's
    /// `_dl_dst_substitute` does; `None` when a token has no value (the loader then drops
    /// the path element).
    pub fn expand_tokens(&self, input: &str, origin: Option<&str>, abi: Abi) -> Option<String> {
        if !input.contains('$') {
            return Some(input.to_string());
        }
        let hwcaps = self.hwcaps(abi);
        let mut out = String::with_capacity(input.len() + 32);
        let mut rest = input;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            let token = ["ORIGIN", "PLATFORM", "LIB"]
                .into_iter()
                .find_map(|name| token_len(rest, name).map(|len| (name, len)));
            match token {
                Some((name, len)) => {
                    let value = match name {
                        "ORIGIN" => origin.map(str::to_string),
                        "PLATFORM" => hwcaps.platform.clone(),
                        _ => Some(self.lib_token(abi)),
                    };
                    out.push_str(&value?);
                    rest = &rest[len..];
                }
                None => out.push('$'),
            }
        }
        out.push_str(rest);
        Some(out)
    }

    /// Splits a DT_RPATH/DT_RUNPATH into directories as the loader's `fillin_rpath` does:
    /// tokens expanded, elements that cannot be expanded or are empty dropped, trailing
    /// slashes removed.
    pub fn search_dirs(&self, source: PathSource, abi: Abi) -> Vec<String> {
        source
            .paths
            .split(':')
            .filter(|element| !element.is_empty())
            .filter_map(|element| self.expand_tokens(element, source.origin, abi))
            .filter(|dir| !dir.is_empty())
            .map(|dir| {
                let trimmed = dir.trim_end_matches('/');
                if trimmed.is_empty() {
                    "/".to_string()
                } else {
                    trimmed.to_string()
                }
            })
            .collect()
    }

    /// Finds the file the loader opens for DT_NEEDED `name` (already token-expanded).
    pub fn find(&self, name: &str, requester: &Requester, abi: Abi) -> Found {
        if name.contains('/') {
            return match self.probe(name, abi) {
                Probe::Library(candidate) => Found::Library {
                    path: name.to_string(),
                    candidate,
                },
                Probe::Absent => Found::NotFound,
                Probe::Unloadable(reason) => Found::Unloadable {
                    path: name.to_string(),
                    reason,
                },
            };
        }
        for source in &requester.rpaths {
            let found = self.find_in(name, &self.search_dirs(*source, abi), abi);
            if !matches!(found, Found::NotFound) {
                return found;
            }
        }
        if let Some(runpath) = requester.runpath {
            let found = self.find_in(name, &self.search_dirs(runpath, abi), abi);
            if !matches!(found, Found::NotFound) {
                return found;
            }
        }
        let default_dirs = self.default_dirs(abi);
        if let Some(path) = self.cache_lookup(name, abi) {
            let in_default_dir = || {
                default_dirs
                    .iter()
                    .any(|dir| path.starts_with(&format!("{}/", dir.trim_end_matches('/'))))
            };
            // NODEFLIB refuses a cache entry by the loader's prefix test on its path.
            if !(requester.nodeflib && in_default_dir()) {
                match self.probe(&path, abi) {
                    Probe::Library(candidate) => return Found::Library { path, candidate },
                    Probe::Unloadable(reason) => return Found::Unloadable { path, reason },
                    Probe::Absent => {}
                }
            }
        }
        if requester.nodeflib {
            return Found::NotFound;
        }
        self.find_in(name, &default_dirs, abi)
    }

    fn cache_lookup(&self, name: &str, abi: Abi) -> Option<String> {
        let cache = self.cache.as_ref()?;
        let flags = ldcache::flags_for(abi.class, abi.machine);
        cache
            .lookup(name, flags, &self.hwcaps(abi))
            .map(str::to_string)
    }

    /// Tries `name` in each directory, each with its hwcaps subdirectories first.
    fn find_in(&self, name: &str, dirs: &[String], abi: Abi) -> Found {
        let hwcaps = self.hwcaps(abi);
        for dir in dirs {
            if !self.dir_exists(dir) {
                continue;
            }
            let base = if dir.ends_with('/') {
                dir.clone()
            } else {
                format!("{dir}/")
            };
            for sub in hwcaps.subdirectories() {
                let subdir = if sub.is_empty() {
                    base.clone()
                } else {
                    format!("{base}{sub}/")
                };
                if !sub.is_empty() && !self.dir_exists(&subdir) {
                    continue;
                }
                let path = format!("{subdir}{name}");
                match self.probe(&path, abi) {
                    Probe::Absent => {}
                    Probe::Library(candidate) => return Found::Library { path, candidate },
                    Probe::Unloadable(reason) => return Found::Unloadable { path, reason },
                }
            }
        }
        Found::NotFound
    }

    fn dir_exists(&self, dir: &str) -> bool {
        if let Some(&known) = self.dirs.lock().expect("dirs lock").get(dir) {
            return known;
        }
        let exists = self.host(dir).is_ok_and(|p| p.is_dir());
        self.dirs
            .lock()
            .expect("dirs lock")
            .insert(dir.to_string(), exists);
        exists
    }

    /// The ELF facts of the file at `path` inside the root (a program or a library), read
    /// once per path for the whole build: the loader-cache step and the extras ask again
    /// for files the resolution has read. `None` when it is not an ELF file the loader
    /// could load.
    pub fn elf_facts(&self, path: &str) -> Option<Arc<Candidate>> {
        match self.looked_at(path) {
            Probe::Library(candidate) => Some(candidate),
            Probe::Absent | Probe::Unloadable(_) => None,
        }
    }

    /// What reading `path` gave, read the first time it is asked for.
    fn looked_at(&self, path: &str) -> Probe {
        let known = self.probes.lock().expect("probes lock").get(path).cloned();
        match known {
            Some(probe) => probe,
            None => {
                let probe = self.read_candidate(path);
                self.probes
                    .lock()
                    .expect("probes lock")
                    .insert(path.to_string(), probe.clone());
                probe
            }
        }
    }

    /// Looks at `path` (inside the root) as the loader's `open_verify` would for this ABI.
    fn probe(&self, path: &str, abi: Abi) -> Probe {
        let probe = self.looked_at(path);
        // The checks of the loader's `open_verify`, in its order.
        match probe {
            // Another class or machine: passed over, the search goes on.
            Probe::Library(c) if c.facts.class != abi.class => Probe::Absent,
            Probe::Library(c) if c.facts.little_endian != abi.little_endian => {
                Probe::Unloadable("ELF file data encoding does not match the program's".into())
            }
            Probe::Library(c) if c.facts.machine != abi.machine => Probe::Absent,
            Probe::Library(c) if !matches!(c.facts.elf_type, ET_DYN | ET_EXEC) => {
                Probe::Unloadable("only ET_DYN and ET_EXEC can be loaded".into())
            }
            other => other,
        }
    }

    fn read_candidate(&self, path: &str) -> Probe {
        // A loop stops the loader's search there (its open fails with ELOOP, not ENOENT).
        let meta = self
            .host(path)
            .and_then(|host| std::fs::metadata(&host).map(|meta| (host, meta)));
        let (host, meta) = match meta {
            Ok(found) => found,
            Err(e) if symlink_loop(&e) => return Probe::Unloadable(loop_reason(&e)),
            Err(_) => return Probe::Absent,
        };
        if meta.is_dir() {
            return Probe::Unloadable("cannot read file data: Is a directory".into());
        }
        match ElfFacts::read(&host) {
            Ok(facts) if !matches!(facts.osabi, 0 | 3) => {
                Probe::Unloadable(format!("ELF file OS ABI {} invalid", facts.osabi))
            }
            Ok(facts) => Probe::Library(Arc::new(Candidate {
                facts: Arc::new(facts),
                file_id: (meta.dev(), meta.ino()),
            })),
            Err(ElfError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Probe::Absent,
            Err(ElfError::Io(e)) => Probe::Unloadable(e.to_string()),
            Err(ElfError::NotElf | ElfError::LinkerScript) if meta.len() < 64 => {
                Probe::Unloadable("file too short".into())
            }
            Err(ElfError::LinkerScript) => {
                Probe::Unloadable("invalid ELF header (a linker script, not a library)".into())
            }
            Err(ElfError::NotElf) => Probe::Unloadable("invalid ELF header".into()),
            Err(ElfError::Malformed(reason)) => Probe::Unloadable(reason),
        }
    }

    /// The host path of `path` inside the root, symlinks resolved inside the root.
    pub fn host(&self, path: &str) -> io::Result<PathBuf> {
        resolve_in_root(&self.root, Path::new(path))
    }

    /// The real path of `path` inside the root (symlinks resolved, `..` taken physically).
    pub fn real_path(&self, path: &str) -> io::Result<PathBuf> {
        if self.root == Path::new("/") {
            return std::fs::canonicalize(Path::new("/").join(path));
        }
        real_path_in_root(&self.root, Path::new(path))
    }
}

/// What a probe says of a symlink loop.
fn loop_reason(error: &io::Error) -> String {
    match error.get_ref() {
        Some(inner) => inner.to_string(),
        None => "a symlink loop (too many levels of symbolic links)".to_string(),
    }
}

/// 64-bit ABIs whose non-Debian loaders use `/lib64`.
fn uses_lib64(abi: Abi) -> bool {
    abi.class == ElfClass::Elf64
        && matches!(
            abi.machine,
            EM_X86_64 | EM_AARCH64 | EM_PPC64 | EM_S390 | EM_RISCV
        )
}

/// The length of `$NAME` / `${NAME}` at the start of `rest` (after the `$`), if it is one:
/// unbraced, the name must not run on into more identifier characters.
fn token_len(rest: &str, name: &str) -> Option<usize> {
    if let Some(braced) = rest.strip_prefix('{') {
        return braced
            .strip_prefix(name)
            .filter(|after| after.starts_with('}'))
            .map(|_| name.len() + 2);
    }
    let after = rest.strip_prefix(name)?;
    match after.chars().next() {
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => None,
        _ => Some(name.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86_64: Abi = Abi {
        class: ElfClass::Elf64,
        little_endian: true,
        machine: EM_X86_64,
    };

    #[test]
    fn tokens_expand_as_the_loader_expands_them() {
        let search = LibrarySearch::new(Path::new("/")).unwrap();
        let platform = search.hwcaps(X86_64).platform.clone().unwrap();
        let lib = search.lib_token(X86_64);
        assert_eq!(
            search
                .expand_tokens("$ORIGIN/../lib", Some("/opt/x/bin"), X86_64)
                .as_deref(),
            Some("/opt/x/bin/../lib")
        );
        assert_eq!(
            search
                .expand_tokens("/a/${ORIGIN}/b", Some("/o"), X86_64)
                .as_deref(),
            Some("/a//o/b")
        );
        assert_eq!(
            search.expand_tokens("/p/$PLATFORM/$LIB", None, X86_64),
            Some(format!("/p/{platform}/{lib}"))
        );
        assert_eq!(search.expand_tokens("$ORIGIN", None, X86_64), None);
        assert_eq!(
            search
                .expand_tokens("/a/$ORIGINAL", None, X86_64)
                .as_deref(),
            Some("/a/$ORIGINAL")
        );
        assert_eq!(
            search.expand_tokens("/a/$", None, X86_64).as_deref(),
            Some("/a/$")
        );
    }

    #[test]
    fn rpath_elements_are_split_and_trimmed() {
        let search = LibrarySearch::new(Path::new("/")).unwrap();
        let dirs = search.search_dirs(
            PathSource {
                paths: "/a/::$ORIGIN/b//:/:$ORIGIN",
                origin: Some("/o"),
            },
            X86_64,
        );
        assert_eq!(dirs, ["/a", "/o/b", "/", "/o"]);
        let dirs = search.search_dirs(
            PathSource {
                paths: "$ORIGIN:/x",
                origin: None,
            },
            X86_64,
        );
        assert_eq!(dirs, ["/x"]);
    }

    #[test]
    fn debian_default_dirs_on_this_host() {
        let search = LibrarySearch::new(Path::new("/")).unwrap();
        if Path::new("/usr/lib/x86_64-linux-gnu").is_dir() {
            assert_eq!(
                search.default_dirs(X86_64),
                [
                    "/lib/x86_64-linux-gnu",
                    "/usr/lib/x86_64-linux-gnu",
                    "/lib",
                    "/usr/lib"
                ]
            );
            assert_eq!(search.lib_token(X86_64), "lib/x86_64-linux-gnu");
        }
    }
}
