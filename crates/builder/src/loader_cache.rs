//! The image's own `/etc/ld.so.cache`, when the image needs one.
//!
//! The loader finds a library without a cache when it sits in one of the default
//! directories, or where the RPATH/RUNPATH of its requester points. Libraries the
//! host's loader found only through its cache (directories from ld.so.conf, like
//! `/usr/local/lib` or `/usr/lib/x86_64-linux-gnu/libfakeroot`) need a cache in the
//! image too. That cache lists every library of the image, as ldconfig run inside the
//! image would, written deterministically by [`crate::ldcache::write_cache`].

use crate::elf::ElfFacts;
use crate::ldcache::{flags_for, write_cache, CacheEntry};
use crate::resolve::{Resolution, Resolver};
use crate::search::Abi;
use std::collections::BTreeMap;
use std::path::Path;

pub const CACHE_PATH: &str = "/etc/ld.so.cache";

/// The glibc-hwcaps subdirectory a library path lies in (`x86-64-v3`), if any.
fn hwcaps_subdir(path: &str) -> Option<String> {
    let (_, rest) = path.split_once("/glibc-hwcaps/")?;
    let (subdir, _) = rest.split_once('/')?;
    Some(subdir.to_string())
}

/// The cache for `objects`, or `None` when every library lies in a default directory
/// or where its requester's RPATH/RUNPATH leads (no cache needed then).
pub fn image_cache(resolver: &Resolver, objects: &[Resolution]) -> Option<Vec<u8>> {
    let mut entries: BTreeMap<(String, String), CacheEntry> = BTreeMap::new();
    let mut needed = false;
    for resolution in objects {
        for library in &resolution.libraries {
            let path = library.path.to_string_lossy().into_owned();
            // Read once by the resolution already (every library in it is loadable).
            let Some(candidate) = resolver.search().elf_facts(&path) else {
                continue;
            };
            let facts = &candidate.facts;
            let abi = Abi::of(facts);
            let dir = library
                .path
                .parent()
                .unwrap_or(Path::new("/"))
                .to_string_lossy()
                .into_owned();
            let in_default = resolver.search().default_dirs(abi).iter().any(|d| {
                d.trim_end_matches('/') == dir
                    || hwcaps_subdir(&path).is_some() && dir.starts_with(d.as_str())
            });
            // A name with a `/` is opened by path; a library next to an RPATH/RUNPATH
            // requester (typically `$ORIGIN`) is found the same way in the image.
            let by_path = library.name.contains('/') || library.path.is_relative();
            if !in_default && !by_path && !found_by_search_path(resolver, resolution, &dir) {
                needed = true;
            }
            let name = facts.soname.clone().unwrap_or_else(|| library.name.clone());
            let mut entry = CacheEntry::new(&name, &path, flags_for(facts.class, facts.machine));
            entry.hwcaps_subdir = hwcaps_subdir(&path);
            entries.entry((name, path)).or_insert(entry);
        }
    }
    if !needed {
        return None;
    }
    let list: Vec<CacheEntry> = entries.into_values().collect();
    Some(write_cache(&list))
}

/// Whether `dir` is one of the RPATH/RUNPATH directories of the program or of a
/// library it loads (after `$ORIGIN` and friends are expanded).
fn found_by_search_path(resolver: &Resolver, resolution: &Resolution, dir: &str) -> bool {
    let program = crate::root_walk::resolve_in_root(resolver.root(), &resolution.program)
        .ok()
        .and_then(|host| ElfFacts::read(&host).ok());
    if program.is_some_and(|facts| search_path_names(resolver, &resolution.program, &facts, dir)) {
        return true;
    }
    resolution.libraries.iter().any(|library| {
        let path = library.path.to_string_lossy();
        resolver.search().elf_facts(&path).is_some_and(|candidate| {
            search_path_names(resolver, &library.path, &candidate.facts, dir)
        })
    })
}

/// Whether the RPATH or RUNPATH of `object` (with `facts`) names `dir`.
fn search_path_names(resolver: &Resolver, object: &Path, facts: &ElfFacts, dir: &str) -> bool {
    let origin = object.parent().map(|p| p.to_string_lossy().into_owned());
    let lists = [facts.rpath.as_deref(), facts.runpath.as_deref()];
    lists.into_iter().flatten().any(|list| {
        list.split(':').any(|element| {
            let expanded =
                resolver
                    .search()
                    .expand_tokens(element, origin.as_deref(), Abi::of(facts));
            expanded.is_some_and(|e| crate::programs::normalize(Path::new(&e)) == Path::new(dir))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwcaps_subdirectories_are_recognised() {
        assert_eq!(
            hwcaps_subdir("/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libz.so.1"),
            Some("x86-64-v3".to_string())
        );
        assert_eq!(hwcaps_subdir("/usr/lib/x86_64-linux-gnu/libz.so.1"), None);
    }
}
