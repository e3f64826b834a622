//! The binary loader cache `/etc/ld.so.cache`, read as glibc's loader reads it, and written
//! the way `ldconfig` writes it so an image can carry its own.
//!
//! Layout (glibc 2.32+, "new" format; an "old" `ld.so-1.7.0` table may come first):
//! a 48-byte header (`glibc-ld.so.cache1.1`, entry count, string table size, endianness
//! flag, extension offset), then 24-byte entries (flags, name offset, path offset, unused
//! OS version, hwcap), strings, and an extension directory. The glibc-hwcaps extension
//! lists subdirectory names (`x86-64-v3`); an entry whose hwcap has bit 62 set (and no
//! other bit in its high half) lives in the subdirectory whose index is its low 32 bits.
//! String offsets are relative to the start of the new-format header.
//! Entries are sorted by [`libcmp`] in descending order, so lookup is a binary search.

use std::cmp::Ordering;
use std::path::Path;

use crate::hwcaps::HwCaps;

const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const NEW_HEADER_LEN: usize = 48;
const NEW_ENTRY_LEN: usize = 24;
const OLD_HEADER_LEN: usize = 16;
const OLD_ENTRY_LEN: usize = 12;
const EXTENSION_MAGIC: u32 = 0xEAA4_2174;
const EXTENSION_TAG_GENERATOR: u32 = 0;
const EXTENSION_TAG_GLIBC_HWCAPS: u32 = 1;
/// Marks an entry as living in a glibc-hwcaps subdirectory.
const HWCAP_EXTENSION: u64 = 1 << 62;
/// x86 ISA level bits in the high half of an extension entry's hwcap, ignored when telling
/// extension entries apart.
const HWCAP_ISA_LEVEL_MASK: u64 = (1 << 10) - 1;
const ISA_LEVEL_BITS: u64 = HWCAP_ISA_LEVEL_MASK << 32;
/// The endianness flag ldconfig writes for little-endian caches.
const FLAGS_LITTLE_ENDIAN: u8 = 2;

/// `FLAG_ELF_LIBC6`: an ELF library linked against glibc.
pub const FLAG_ELF_LIBC6: i32 = 0x0003;
pub const FLAG_X8664_LIB64: i32 = 0x0300;
pub const FLAG_S390_LIB64: i32 = 0x0400;
pub const FLAG_POWERPC_LIB64: i32 = 0x0500;
pub const FLAG_X8664_LIBX32: i32 = 0x0800;
pub const FLAG_AARCH64_LIB64: i32 = 0x0a00;

/// One cache entry: a library name and the path the loader opens for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The name looked up (usually a SONAME: `libc.so.6`).
    pub name: String,
    /// The path the loader opens (`/lib/x86_64-linux-gnu/libc.so.6`).
    pub path: String,
    /// Library kind and ABI (`FLAG_ELF_LIBC6 | FLAG_X8664_LIB64` for x86-64).
    pub flags: i32,
    /// Legacy hwcap bits (0 for an ordinary entry); for a glibc-hwcaps entry, only the x86
    /// ISA level bits (32..42) ldconfig may set.
    pub hwcap: u64,
    /// The glibc-hwcaps subdirectory (`x86-64-v3`) the library sits in, if any.
    pub hwcaps_subdir: Option<String>,
}

impl CacheEntry {
    /// An ordinary entry for a library of the given ELF class and machine.
    pub fn new(name: &str, path: &str, flags: i32) -> CacheEntry {
        CacheEntry {
            name: name.to_string(),
            path: path.to_string(),
            flags,
            hwcap: 0,
            hwcaps_subdir: None,
        }
    }
}

/// The cache flags ldconfig gives a glibc library of this class and machine, which are also
/// the flags that machine's loader requires (`_dl_cache_check_flags`).
pub fn flags_for(class: crate::elf::ElfClass, machine: u16) -> i32 {
    use crate::elf::ElfClass::*;
    use goblin::elf::header::{EM_AARCH64, EM_PPC64, EM_S390, EM_X86_64};
    match (class, machine) {
        (Elf64, EM_X86_64) => FLAG_ELF_LIBC6 | FLAG_X8664_LIB64,
        (Elf32, EM_X86_64) => FLAG_ELF_LIBC6 | FLAG_X8664_LIBX32,
        (Elf64, EM_AARCH64) => FLAG_ELF_LIBC6 | FLAG_AARCH64_LIB64,
        (Elf64, EM_PPC64) => FLAG_ELF_LIBC6 | FLAG_POWERPC_LIB64,
        (Elf64, EM_S390) => FLAG_ELF_LIBC6 | FLAG_S390_LIB64,
        _ => FLAG_ELF_LIBC6,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LdCacheError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a loader cache (no glibc-ld.so.cache1.1 or ld.so-1.7.0 header)")]
    BadMagic,
    #[error("malformed loader cache: {0}")]
    Malformed(String),
}

/// A parsed loader cache: entries in file order (descending [`libcmp`] order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LdCache {
    pub entries: Vec<CacheEntry>,
    /// The generator string ldconfig records (`ldconfig (Debian GLIBC 2.36-9) 2.36`).
    pub generator: Option<String>,
}

fn malformed(what: impl std::fmt::Display) -> LdCacheError {
    LdCacheError::Malformed(what.to_string())
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, LdCacheError> {
    at.checked_add(4)
        .and_then(|end| bytes.get(at..end))
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or_else(|| malformed(format!("offset {at:#x} past the end")))
}

fn u64_at(bytes: &[u8], at: usize) -> Result<u64, LdCacheError> {
    at.checked_add(8)
        .and_then(|end| bytes.get(at..end))
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| malformed(format!("offset {at:#x} past the end")))
}

fn string_at(bytes: &[u8], at: usize) -> Result<String, LdCacheError> {
    let tail = bytes
        .get(at..)
        .ok_or_else(|| malformed(format!("string offset {at:#x} past the end")))?;
    let len = tail
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| malformed(format!("string at {at:#x} is not terminated")))?;
    Ok(String::from_utf8_lossy(&tail[..len]).into_owned())
}

impl LdCache {
    /// Reads the cache file at `path` (a host path).
    pub fn load(path: &Path) -> Result<LdCache, LdCacheError> {
        LdCache::parse(&mkroot_common::host_file::read_regular(path)?)
    }

    pub fn parse(bytes: &[u8]) -> Result<LdCache, LdCacheError> {
        if bytes.starts_with(NEW_MAGIC) {
            return parse_new(bytes);
        }
        if !bytes.starts_with(OLD_MAGIC) {
            return Err(LdCacheError::BadMagic);
        }
        // Old table first; the new format, if present, follows it 8-byte aligned (glibc
        // reads only the new part when it is there).
        let count = u32_at(bytes, 12)? as usize;
        let old_end = count
            .checked_mul(OLD_ENTRY_LEN)
            .and_then(|n| n.checked_add(OLD_HEADER_LEN))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| malformed(format!("{count} old-format entries run past the end")))?;
        let new_start = old_end.next_multiple_of(8);
        if let Some(new) = bytes.get(new_start..).filter(|b| b.starts_with(NEW_MAGIC)) {
            return parse_new(new);
        }
        // Old format only: string offsets are relative to the end of the entry table.
        let strings = &bytes[old_end..];
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let at = OLD_HEADER_LEN + i * OLD_ENTRY_LEN;
            let flags = u32_at(bytes, at)? as i32;
            let key = u32_at(bytes, at + 4)? as usize;
            let value = u32_at(bytes, at + 8)? as usize;
            entries.push(CacheEntry {
                name: string_at(strings, key)?,
                path: string_at(strings, value)?,
                flags,
                hwcap: 0,
                hwcaps_subdir: None,
            });
        }
        Ok(LdCache {
            entries,
            generator: None,
        })
    }

    /// The path the loader takes from the cache for `name`, as glibc 2.36's
    /// `_dl_load_cache_lookup` picks it: among entries whose name compares equal and whose
    /// flags are `required_flags`, glibc-hwcaps entries (listed first) win by subdirectory
    /// priority for this CPU; otherwise the first legacy entry whose hwcap bits this CPU has.
    pub fn lookup(&self, name: &str, required_flags: i32, hwcaps: &HwCaps) -> Option<&str> {
        let first = self.first_index_of(name)?;
        let mut best: Option<(&str, usize)> = None;
        for entry in self.entries[first..]
            .iter()
            .take_while(|e| libcmp(name.as_bytes(), e.name.as_bytes()) == Ordering::Equal)
        {
            if entry.flags != required_flags {
                continue;
            }
            if let Some(subdir) = &entry.hwcaps_subdir {
                let isa_level = ((entry.hwcap >> 32) & HWCAP_ISA_LEVEL_MASK) as u32;
                if !hwcaps.supports_isa_level(isa_level) {
                    continue;
                }
                // Priority 0 is best; subdirectories this CPU cannot use are skipped.
                if let Some(priority) = hwcaps.glibc_hwcaps.iter().position(|s| s == subdir) {
                    if best.is_none_or(|(_, p)| priority < p) {
                        best = Some((&entry.path, priority));
                    }
                }
                continue;
            }
            // Extension entries come first: the first ordinary entry ends the search if an
            // extension entry already matched.
            if best.is_some() {
                break;
            }
            if !hwcaps.accepts_legacy_cache_hwcap(entry.hwcap) {
                continue;
            }
            return Some(&entry.path);
        }
        best.map(|(path, _)| path)
    }

    /// Binary search in descending [`libcmp`] order, then back to the first equal entry.
    fn first_index_of(&self, name: &str) -> Option<usize> {
        let found = self
            .entries
            .binary_search_by(|e| libcmp(name.as_bytes(), e.name.as_bytes()))
            .ok()?;
        let mut first = found;
        while first > 0
            && libcmp(name.as_bytes(), self.entries[first - 1].name.as_bytes()) == Ordering::Equal
        {
            first -= 1;
        }
        Some(first)
    }
}

fn parse_new(bytes: &[u8]) -> Result<LdCache, LdCacheError> {
    if bytes.len() < NEW_HEADER_LEN {
        return Err(malformed("header cut short"));
    }
    let count = u32_at(bytes, 20)? as usize;
    let flags = bytes[28];
    if flags != 0 && flags != FLAGS_LITTLE_ENDIAN {
        return Err(malformed(format!(
            "endianness flag {flags}: only little-endian caches are read"
        )));
    }
    let extension_offset = u32_at(bytes, 32)? as usize;
    count
        .checked_mul(NEW_ENTRY_LEN)
        .and_then(|n| n.checked_add(NEW_HEADER_LEN))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| malformed(format!("{count} entries run past the end")))?;

    let (hwcaps_names, generator) = if extension_offset != 0 {
        parse_extensions(bytes, extension_offset)?
    } else {
        (Vec::new(), None)
    };

    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let at = NEW_HEADER_LEN + i * NEW_ENTRY_LEN;
        let flags = u32_at(bytes, at)? as i32;
        let name = string_at(bytes, u32_at(bytes, at + 4)? as usize)?;
        let path = string_at(bytes, u32_at(bytes, at + 8)? as usize)?;
        let hwcap = u64_at(bytes, at + 16)?;
        let hwcaps_subdir = if (hwcap >> 32) & !HWCAP_ISA_LEVEL_MASK == HWCAP_EXTENSION >> 32 {
            let index = (hwcap & 0xffff_ffff) as usize;
            Some(hwcaps_names.get(index).cloned().ok_or_else(|| {
                malformed(format!(
                    "entry {name} names glibc-hwcaps index {index}, which is not listed"
                ))
            })?)
        } else {
            None
        };
        entries.push(CacheEntry {
            name,
            path,
            flags,
            // For a glibc-hwcaps entry only the ISA level bits are kept (the rest is the
            // extension marker and index, which the subdirectory name replaces).
            hwcap: if hwcaps_subdir.is_some() {
                hwcap & ISA_LEVEL_BITS
            } else {
                hwcap
            },
            hwcaps_subdir,
        });
    }
    Ok(LdCache { entries, generator })
}

type Extensions = (Vec<String>, Option<String>);

fn parse_extensions(bytes: &[u8], offset: usize) -> Result<Extensions, LdCacheError> {
    if u32_at(bytes, offset)? != EXTENSION_MAGIC {
        // glibc ignores an extension directory without its magic.
        return Ok((Vec::new(), None));
    }
    let count = u32_at(bytes, offset + 4)? as usize;
    let mut hwcaps = Vec::new();
    let mut generator = None;
    for i in 0..count {
        let at = i
            .checked_mul(16)
            .and_then(|n| n.checked_add(offset + 8))
            .filter(|at| at + 16 <= bytes.len())
            .ok_or_else(|| malformed(format!("{count} extension sections run past the end")))?;
        let tag = u32_at(bytes, at)?;
        let section = u32_at(bytes, at + 8)? as usize;
        let size = u32_at(bytes, at + 12)? as usize;
        let data = section
            .checked_add(size)
            .and_then(|end| bytes.get(section..end))
            .ok_or_else(|| malformed("extension section past the end"))?;
        match tag {
            EXTENSION_TAG_GENERATOR => {
                generator = Some(
                    String::from_utf8_lossy(data)
                        .trim_end_matches('\0')
                        .to_string(),
                )
            }
            EXTENSION_TAG_GLIBC_HWCAPS => {
                for chunk in data.chunks_exact(4) {
                    let string = u32::from_le_bytes(chunk.try_into().expect("4 bytes")) as usize;
                    hwcaps.push(string_at(bytes, string)?);
                }
            }
            _ => {}
        }
    }
    Ok((hwcaps, generator))
}

/// glibc's `_dl_cache_libcmp`: byte order, except that runs of digits compare as numbers
/// and a digit sorts after any non-digit.
pub fn libcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    loop {
        let (ca, cb) = (
            a.get(i).copied().unwrap_or(0),
            b.get(j).copied().unwrap_or(0),
        );
        if ca == 0 {
            return 0u8.cmp(&cb);
        }
        match (ca.is_ascii_digit(), cb.is_ascii_digit()) {
            (true, true) => {
                let (va, ni) = number_at(a, i);
                let (vb, nj) = number_at(b, j);
                if va != vb {
                    return va.cmp(&vb);
                }
                (i, j) = (ni, nj);
            }
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) => {
                if ca != cb {
                    return (ca as i8).cmp(&(cb as i8));
                }
                i += 1;
                j += 1;
            }
        }
    }
}

/// The number starting at `at` and the index after it (saturating instead of overflowing).
fn number_at(s: &[u8], mut at: usize) -> (u64, usize) {
    let mut value: u64 = 0;
    while let Some(d) = s.get(at).filter(|c| c.is_ascii_digit()) {
        value = value.saturating_mul(10).saturating_add(u64::from(d - b'0'));
        at += 1;
    }
    (value, at)
}

/// ldconfig's order: names descending by [`libcmp`]; for one name, higher flags first,
/// glibc-hwcaps entries before the others (by subdirectory name), then higher hwcap first.
fn ldconfig_order(a: &CacheEntry, b: &CacheEntry) -> Ordering {
    libcmp(b.name.as_bytes(), a.name.as_bytes())
        .then_with(|| b.flags.cmp(&a.flags))
        .then_with(|| match (&a.hwcaps_subdir, &b.hwcaps_subdir) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| b.hwcap.cmp(&a.hwcap))
        // Not in ldconfig (it never has two entries this alike): makes the output depend
        // only on the set of entries, not on the order they were given in.
        .then_with(|| a.name.cmp(&b.name))
        .then_with(|| a.path.cmp(&b.path))
}

type ExactKey<'a> = (&'a str, &'a str, i32, u64, Option<&'a str>);

fn exact_key(e: &CacheEntry) -> ExactKey<'_> {
    (
        &e.name,
        &e.path,
        e.flags,
        e.hwcap,
        e.hwcaps_subdir.as_deref(),
    )
}

/// Writes a new-format cache holding `entries`, byte for byte the same for the same set of
/// entries: sorted as ldconfig sorts, strings laid out in that order without duplicates,
/// a generator extension naming mkroot and, when any entry needs it, the glibc-hwcaps one.
pub fn write_cache(entries: &[CacheEntry]) -> Vec<u8> {
    // Duplicates out first, in a plain total order: ldconfig's order rests on `libcmp`,
    // which hostile names can make inconsistent, so it alone could leave twins apart.
    // Sorting that canonical sequence keeps the output a function of the set.
    let mut sorted: Vec<&CacheEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| exact_key(a).cmp(&exact_key(b)));
    sorted.dedup();
    sorted.sort_by(|a, b| ldconfig_order(a, b));

    let mut subdirs: Vec<&str> = sorted
        .iter()
        .filter_map(|e| e.hwcaps_subdir.as_deref())
        .collect();
    subdirs.sort_unstable();
    subdirs.dedup();

    // Strings live after the entries; offsets are relative to the start of the file.
    let strings_start = NEW_HEADER_LEN + sorted.len() * NEW_ENTRY_LEN;
    let mut strings = StringTable::new(strings_start);
    let offsets: Vec<(u32, u32)> = sorted
        .iter()
        .map(|e| (strings.add(&e.name), strings.add(&e.path)))
        .collect();
    let subdir_offsets: Vec<u32> = subdirs.iter().map(|s| strings.add(s)).collect();
    let generator = b"mkroot";

    let extension_offset = (strings_start + strings.bytes.len()).next_multiple_of(4);
    let sections = if subdirs.is_empty() { 1 } else { 2 };
    // The hwcaps array holds u32s: glibc only reads it 4-byte aligned, so it goes first.
    let hwcaps_offset = extension_offset + 8 + 16 * sections;
    let generator_offset = hwcaps_offset + 4 * subdirs.len();

    let mut out = Vec::with_capacity(hwcaps_offset + 4 * subdirs.len());
    out.extend_from_slice(NEW_MAGIC);
    out.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
    out.extend_from_slice(&(strings.bytes.len() as u32).to_le_bytes());
    out.push(FLAGS_LITTLE_ENDIAN);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&(extension_offset as u32).to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    for (entry, (name, path)) in sorted.iter().zip(&offsets) {
        let hwcap = match &entry.hwcaps_subdir {
            Some(subdir) => {
                let index = subdirs
                    .iter()
                    .position(|s| s == subdir)
                    .expect("collected above");
                HWCAP_EXTENSION | (entry.hwcap & ISA_LEVEL_BITS) | index as u64
            }
            None => entry.hwcap,
        };
        out.extend_from_slice(&entry.flags.to_le_bytes());
        out.extend_from_slice(&name.to_le_bytes());
        out.extend_from_slice(&path.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&hwcap.to_le_bytes());
    }
    out.extend_from_slice(&strings.bytes);
    out.resize(extension_offset, 0);
    out.extend_from_slice(&EXTENSION_MAGIC.to_le_bytes());
    out.extend_from_slice(&(sections as u32).to_le_bytes());
    let mut section = |tag: u32, offset: usize, size: usize| {
        for v in [tag, 0, offset as u32, size as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    };
    section(EXTENSION_TAG_GENERATOR, generator_offset, generator.len());
    if !subdirs.is_empty() {
        section(EXTENSION_TAG_GLIBC_HWCAPS, hwcaps_offset, 4 * subdirs.len());
    }
    for offset in subdir_offsets {
        out.extend_from_slice(&offset.to_le_bytes());
    }
    out.extend_from_slice(generator);
    out
}

/// NUL-terminated strings, each stored once, offsets counted from `base`.
struct StringTable {
    base: usize,
    bytes: Vec<u8>,
    seen: std::collections::HashMap<String, u32>,
}

impl StringTable {
    fn new(base: usize) -> StringTable {
        StringTable {
            base,
            bytes: Vec::new(),
            seen: std::collections::HashMap::new(),
        }
    }

    fn add(&mut self, s: &str) -> u32 {
        if let Some(&offset) = self.seen.get(s) {
            return offset;
        }
        let offset = (self.base + self.bytes.len()) as u32;
        self.bytes.extend_from_slice(s.as_bytes());
        self.bytes.push(0);
        self.seen.insert(s.to_string(), offset);
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86_64: i32 = FLAG_ELF_LIBC6 | FLAG_X8664_LIB64;

    #[test]
    fn libcmp_compares_digit_runs_as_numbers() {
        assert_eq!(libcmp(b"libfoo.so.10", b"libfoo.so.9"), Ordering::Greater);
        assert_eq!(libcmp(b"libfoo.so.9", b"libfoo.so.10"), Ordering::Less);
        assert_eq!(libcmp(b"libfoo.so.01", b"libfoo.so.1"), Ordering::Equal);
        assert_eq!(libcmp(b"libfoo.so", b"libfoo.so.1"), Ordering::Less);
        assert_eq!(libcmp(b"lib2", b"libx"), Ordering::Greater);
        assert_eq!(libcmp(b"a", b"a"), Ordering::Equal);
        assert_eq!(libcmp(b"99999999999999999999999", b"1"), Ordering::Greater);
    }

    #[test]
    fn written_cache_reads_back_sorted_and_finds_each_entry() {
        let hwcaps = HwCaps::baseline();
        let entries = vec![
            CacheEntry::new("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6", X86_64),
            CacheEntry::new("libz.so.1", "/opt/lib/libz.so.1", X86_64),
            CacheEntry::new("libfoo.so.10", "/opt/lib/libfoo.so.10", X86_64),
            CacheEntry::new("libfoo.so.9", "/opt/lib/libfoo.so.9", X86_64),
            CacheEntry::new("libc.so.6", "/lib/i386-linux-gnu/libc.so.6", FLAG_ELF_LIBC6),
        ];
        let bytes = write_cache(&entries);
        let cache = LdCache::parse(&bytes).unwrap();
        assert_eq!(cache.entries.len(), 5);
        assert_eq!(cache.generator.as_deref(), Some("mkroot"));
        for pair in cache.entries.windows(2) {
            assert_ne!(
                libcmp(pair[0].name.as_bytes(), pair[1].name.as_bytes()),
                Ordering::Less
            );
        }
        assert_eq!(
            cache.lookup("libc.so.6", X86_64, &hwcaps),
            Some("/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert_eq!(
            cache.lookup("libc.so.6", FLAG_ELF_LIBC6, &hwcaps),
            Some("/lib/i386-linux-gnu/libc.so.6")
        );
        assert_eq!(
            cache.lookup("libfoo.so.9", X86_64, &hwcaps),
            Some("/opt/lib/libfoo.so.9")
        );
        assert_eq!(
            cache.lookup("libz.so.1", X86_64, &hwcaps),
            Some("/opt/lib/libz.so.1")
        );
        assert_eq!(cache.lookup("libnone.so", X86_64, &hwcaps), None);
        // Same set in another order: same bytes.
        let mut reversed = entries.clone();
        reversed.reverse();
        assert_eq!(write_cache(&reversed), bytes);
    }

    #[test]
    fn glibc_hwcaps_entries_win_by_priority() {
        let entries = vec![
            CacheEntry::new("libm.so.6", "/lib/libm.so.6", X86_64),
            CacheEntry {
                hwcaps_subdir: Some("x86-64-v2".into()),
                ..CacheEntry::new("libm.so.6", "/lib/glibc-hwcaps/x86-64-v2/libm.so.6", X86_64)
            },
            CacheEntry {
                hwcaps_subdir: Some("x86-64-v3".into()),
                ..CacheEntry::new("libm.so.6", "/lib/glibc-hwcaps/x86-64-v3/libm.so.6", X86_64)
            },
        ];
        let cache = LdCache::parse(&write_cache(&entries)).unwrap();
        let mut cpu = HwCaps::baseline();
        assert_eq!(
            cache.lookup("libm.so.6", X86_64, &cpu),
            Some("/lib/libm.so.6")
        );
        cpu.glibc_hwcaps = vec!["x86-64-v2".into()];
        assert_eq!(
            cache.lookup("libm.so.6", X86_64, &cpu),
            Some("/lib/glibc-hwcaps/x86-64-v2/libm.so.6")
        );
        cpu.glibc_hwcaps = vec!["x86-64-v4".into(), "x86-64-v3".into(), "x86-64-v2".into()];
        assert_eq!(
            cache.lookup("libm.so.6", X86_64, &cpu),
            Some("/lib/glibc-hwcaps/x86-64-v3/libm.so.6")
        );
    }

    #[test]
    fn glibc_hwcaps_entries_above_the_cpu_isa_level_are_skipped() {
        let v4_marked = CacheEntry {
            hwcaps_subdir: Some("x86-64-v2".into()),
            // ISA level 3 (x86-64-v4) in bits 32..42, as ldconfig records a marked library.
            hwcap: 3 << 32,
            ..CacheEntry::new("libm.so.6", "/lib/glibc-hwcaps/x86-64-v2/libm.so.6", X86_64)
        };
        let plain = CacheEntry::new("libm.so.6", "/lib/libm.so.6", X86_64);
        let cache = LdCache::parse(&write_cache(&[v4_marked.clone(), plain])).unwrap();
        assert_eq!(cache.entries[0], v4_marked);
        let mut cpu = HwCaps::baseline();
        cpu.glibc_hwcaps = vec!["x86-64-v3".into(), "x86-64-v2".into()];
        assert_eq!(
            cache.lookup("libm.so.6", X86_64, &cpu),
            Some("/lib/libm.so.6")
        );
        cpu.glibc_hwcaps.insert(0, "x86-64-v4".into());
        assert_eq!(
            cache.lookup("libm.so.6", X86_64, &cpu),
            Some("/lib/glibc-hwcaps/x86-64-v2/libm.so.6")
        );
    }

    #[test]
    fn hostile_caches_are_errors_not_panics() {
        let good = write_cache(&[CacheEntry::new("libc.so.6", "/lib/libc.so.6", X86_64)]);
        for len in 0..good.len() {
            let _ = LdCache::parse(&good[..len]);
        }
        let mut huge = good.clone();
        huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            LdCache::parse(&huge),
            Err(LdCacheError::Malformed(_))
        ));
        let mut bad_string = good.clone();
        bad_string[NEW_HEADER_LEN + 4..NEW_HEADER_LEN + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            LdCache::parse(&bad_string),
            Err(LdCacheError::Malformed(_))
        ));
        let mut bad_extension = good.clone();
        bad_extension[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        let ext = u32::from_le_bytes(good[32..36].try_into().unwrap()) as usize;
        bad_extension[ext + 4..ext + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            LdCache::parse(&bad_extension),
            Err(LdCacheError::Malformed(_))
        ));
        assert!(matches!(
            LdCache::parse(b"hello"),
            Err(LdCacheError::BadMagic)
        ));
    }

    #[test]
    fn old_format_prefix_is_skipped() {
        let new = write_cache(&[CacheEntry::new("libc.so.6", "/lib/libc.so.6", X86_64)]);
        let mut both = Vec::new();
        both.extend_from_slice(b"ld.so-1.7.0\0");
        both.extend_from_slice(&1u32.to_le_bytes());
        both.extend_from_slice(&[0; OLD_ENTRY_LEN]);
        both.resize(both.len().next_multiple_of(8), 0);
        // Offsets in the new part are relative to its own start.
        both.extend_from_slice(&new);
        let cache = LdCache::parse(&both).unwrap();
        assert_eq!(cache.entries[0].path, "/lib/libc.so.6");
    }

    #[test]
    fn reads_the_system_cache() {
        let path = Path::new("/etc/ld.so.cache");
        if !path.exists() {
            return;
        }
        let cache = LdCache::load(path).unwrap();
        assert!(cache
            .lookup("libc.so.6", X86_64, &HwCaps::baseline())
            .is_some_and(|p| p.ends_with("/libc.so.6")));
    }
}
