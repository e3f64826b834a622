//! The loader cache reader on arbitrary bytes, then lookups and a rewrite of what it read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkroot_builder::hwcaps::HwCaps;
use mkroot_builder::ldcache::{write_cache, LdCache};

fuzz_target!(|data: &[u8]| {
    if let Ok(cache) = LdCache::parse(data) {
        let caps = HwCaps::baseline();
        for entry in cache.entries.iter().take(16) {
            let _ = cache.lookup(&entry.name, entry.flags, &caps);
        }
        // What the writer writes, the reader reads back the same.
        let again = LdCache::parse(&write_cache(&cache.entries)).expect("own output parses");
        assert_eq!(again.entries.len(), {
            let mut n = cache.entries.clone();
            n.sort_by(|a, b| {
                (&a.name, &a.path, a.flags, a.hwcap, &a.hwcaps_subdir).cmp(&(
                    &b.name,
                    &b.path,
                    b.flags,
                    b.hwcap,
                    &b.hwcaps_subdir,
                ))
            });
            n.dedup();
            n.len()
        });
    }
});
