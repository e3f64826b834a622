//! Facts the loader reads from an ELF file: class, machine, type, PT_INTERP and the
//! dynamic section (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH, DT_FLAGS_1).
//!
//! Only the ELF header, the program headers, the dynamic segment and the strings it names
//! are read: the file is memory-mapped, so a 100 MB library costs a few pages, not 100 MB.
//! Every offset and count comes from the file and is checked against its length before
//! use: truncated or hostile input gives an [`ElfError`], never a panic or a huge allocation.

use std::path::Path;

use goblin::container::Ctx;
use goblin::elf::dynamic::{
    Dynamic, DF_1_NODEFLIB, DF_1_PIE, DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME,
};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{ProgramHeader, PT_DYNAMIC, PT_INTERP};

/// Whether a file starts with the ELF magic (a symlink is followed).
pub fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// ELF class: the width of the object's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElfClass {
    Elf32,
    Elf64,
}

/// What the loader needs to know about one ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfFacts {
    pub class: ElfClass,
    /// `EI_DATA`: true for little-endian.
    pub little_endian: bool,
    /// `e_machine` (`EM_X86_64` = 62, ...).
    pub machine: u16,
    /// `e_type` (`ET_EXEC` = 2, `ET_DYN` = 3, ...).
    pub elf_type: u16,
    /// `EI_OSABI`.
    pub osabi: u8,
    /// PT_INTERP, as written (without its terminating NUL).
    pub interpreter: Option<String>,
    /// Whether the file has a PT_DYNAMIC segment.
    pub has_dynamic: bool,
    /// DT_NEEDED, DT_FILTER and DT_AUXILIARY entries, in the order of the dynamic section
    /// (the order the loader walks them in).
    pub dependencies: Vec<Dependency>,
    pub soname: Option<String>,
    /// DT_RPATH as written (colon-separated, tokens unexpanded).
    pub rpath: Option<String>,
    /// DT_RUNPATH as written.
    pub runpath: Option<String>,
    /// DT_FLAGS_1 (0 when absent).
    pub flags_1: u64,
}

/// Filter tags (from the GNU/Sun ELF extensions; goblin does not name them).
const DT_AUXILIARY: u64 = 0x7fff_fffd;
const DT_FILTER: u64 = 0x7fff_ffff;

/// How an object names another it needs loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyKind {
    /// DT_NEEDED: must be found.
    Needed,
    /// DT_FILTER: a filtee, loaded before the filter; must be found.
    Filter,
    /// DT_AUXILIARY: a filtee the loader loads if it finds it, and otherwise goes on.
    Auxiliary,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub kind: DependencyKind,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not an ELF file")]
    NotElf,
    /// A GNU ld linker script (e.g. `/usr/lib/x86_64-linux-gnu/libc.so`): text for the
    /// link editor, not a library the loader can map.
    #[error("a linker script, not a library")]
    LinkerScript,
    #[error("malformed ELF: {0}")]
    Malformed(String),
}

impl ElfFacts {
    /// The DT_NEEDED names, in file order.
    pub fn needed(&self) -> impl Iterator<Item = &str> {
        self.dependencies
            .iter()
            .filter(|d| d.kind == DependencyKind::Needed)
            .map(|d| d.name.as_str())
    }

    /// Reads the facts of the file at `path` (a host path).
    pub fn read(path: &Path) -> Result<ElfFacts, ElfError> {
        // Never a fifo or a device: mapping or reading one would block or not end.
        let (file, len) = mkroot_common::host_file::open_regular(path)?;
        if len < 4 {
            return Err(ElfError::NotElf);
        }
        // SAFETY: the map is read-only and dropped before this function returns. A file
        // truncated by someone else while we read it could raise SIGBUS; the builder reads
        // system files nobody rewrites during a build, which is the same bet ld.so makes.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        ElfFacts::parse(&map)
    }

    /// Reads the facts from the bytes of a whole file.
    pub fn parse(bytes: &[u8]) -> Result<ElfFacts, ElfError> {
        if bytes.len() < 4 || &bytes[..4] != header::ELFMAG {
            return Err(if is_linker_script(bytes) {
                ElfError::LinkerScript
            } else {
                ElfError::NotElf
            });
        }
        let header = parse_header(bytes)?;
        let ctx = context(&header)?;
        let phdrs = program_headers(bytes, &header, ctx)?;

        let mut facts = ElfFacts {
            class: if ctx.container.is_big() {
                ElfClass::Elf64
            } else {
                ElfClass::Elf32
            },
            little_endian: ctx.le.is_little(),
            machine: header.e_machine,
            elf_type: header.e_type,
            osabi: header.e_ident[header::EI_OSABI],
            interpreter: interpreter(bytes, &phdrs)?,
            has_dynamic: phdrs.iter().any(|p| p.p_type == PT_DYNAMIC),
            dependencies: Vec::new(),
            soname: None,
            rpath: None,
            runpath: None,
            flags_1: 0,
        };
        if facts.has_dynamic {
            read_dynamic(bytes, &phdrs, ctx, &mut facts)?;
        }
        Ok(facts)
    }

    /// DF_1_NODEFLIB: the loader skips the default directories (and cache entries in them)
    /// for this object's needs.
    pub fn nodeflib(&self) -> bool {
        self.flags_1 & DF_1_NODEFLIB != 0
    }

    /// A program the kernel starts without a loader: no PT_INTERP, and either no dynamic
    /// section, a plain executable, or a static PIE (DF_1_PIE). A shared library without
    /// PT_INTERP is not static: the loader loads its needs when it is loaded.
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none()
            && (!self.has_dynamic
                || self.elf_type == header::ET_EXEC
                || self.flags_1 & DF_1_PIE != 0)
    }

    /// The object's RPATH as the loader uses it: glibc ignores DT_RPATH in an object that
    /// also has DT_RUNPATH.
    pub fn effective_rpath(&self) -> Option<&str> {
        if self.runpath.is_some() {
            None
        } else {
            self.rpath.as_deref()
        }
    }
}

/// A GNU ld script is text: its usual openings are a comment or one of the commands
/// distributions put in `lib*.so` files.
fn is_linker_script(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(512)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // A multi-byte character cut at 512 bytes is still text.
        Err(e) if e.valid_up_to() + 4 > head.len() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or("")
        }
        Err(_) => return false,
    };
    let text = text.trim_start();
    [
        "/*",
        "GROUP",
        "INPUT",
        "OUTPUT_FORMAT",
        "SEARCH_DIR",
        "AS_NEEDED",
    ]
    .iter()
    .any(|opening| text.starts_with(opening))
}

fn malformed(what: impl std::fmt::Display) -> ElfError {
    ElfError::Malformed(what.to_string())
}

fn parse_header(bytes: &[u8]) -> Result<Header, ElfError> {
    if bytes.len() < header::SIZEOF_IDENT {
        return Err(malformed("file too short for the ELF identification"));
    }
    goblin::elf::Elf::parse_header(bytes).map_err(|e| malformed(format!("ELF header: {e}")))
}

fn context(header: &Header) -> Result<Ctx, ElfError> {
    let container = header
        .container()
        .map_err(|_| malformed("unknown ELF class"))?;
    let le = header
        .endianness()
        .map_err(|_| malformed("unknown ELF data encoding"))?;
    Ok(Ctx::new(container, le))
}

fn program_headers(
    bytes: &[u8],
    header: &Header,
    ctx: Ctx,
) -> Result<Vec<ProgramHeader>, ElfError> {
    if header.e_phnum == 0 {
        return Ok(Vec::new());
    }
    if usize::from(header.e_phentsize) != ProgramHeader::size(ctx) {
        return Err(malformed(format!(
            "program header entry size {} (expected {})",
            header.e_phentsize,
            ProgramHeader::size(ctx)
        )));
    }
    let offset = usize::try_from(header.e_phoff).map_err(|_| malformed("e_phoff too large"))?;
    let table_len = usize::from(header.e_phnum) * ProgramHeader::size(ctx);
    if offset
        .checked_add(table_len)
        .is_none_or(|end| end > bytes.len())
    {
        return Err(malformed(format!(
            "{} program headers at offset {:#x} run past the end of the file",
            header.e_phnum, header.e_phoff
        )));
    }
    ProgramHeader::parse(bytes, offset, usize::from(header.e_phnum), ctx)
        .map_err(|e| malformed(format!("program headers: {e}")))
}

/// The bytes `[offset, offset + len)` of the file, or an error naming `what`.
fn file_range<'a>(
    bytes: &'a [u8],
    offset: u64,
    len: u64,
    what: &str,
) -> Result<&'a [u8], ElfError> {
    let start = usize::try_from(offset).ok();
    let end = start.and_then(|s| usize::try_from(len).ok().and_then(|l| s.checked_add(l)));
    match (start, end) {
        (Some(start), Some(end)) if end <= bytes.len() => Ok(&bytes[start..end]),
        _ => Err(malformed(format!(
            "{what} at offset {offset:#x} (size {len:#x}) runs past the end of the file"
        ))),
    }
}

fn interpreter(bytes: &[u8], phdrs: &[ProgramHeader]) -> Result<Option<String>, ElfError> {
    let Some(interp) = phdrs.iter().find(|p| p.p_type == PT_INTERP) else {
        return Ok(None);
    };
    let raw = file_range(bytes, interp.p_offset, interp.p_filesz, "PT_INTERP")?;
    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
    if raw.is_empty() {
        return Err(malformed("empty PT_INTERP"));
    }
    Ok(Some(String::from_utf8_lossy(raw).into_owned()))
}

fn read_dynamic(
    bytes: &[u8],
    phdrs: &[ProgramHeader],
    ctx: Ctx,
    facts: &mut ElfFacts,
) -> Result<(), ElfError> {
    // goblin reads the entries of PT_DYNAMIC (bounded by the segment's size, itself checked
    // against the file) and maps DT_STRTAB's address to a file offset through PT_LOAD.
    let dynamic = Dynamic::parse(bytes, phdrs, ctx)
        .map_err(|e| malformed(format!("dynamic section: {e}")))?;
    let Some(dynamic) = dynamic else {
        return Ok(());
    };
    let info = &dynamic.info;
    facts.flags_1 = info.flags_1;
    let names_string = dynamic.dyns.iter().any(|d| {
        matches!(
            d.d_tag,
            DT_NEEDED | DT_RPATH | DT_RUNPATH | DT_SONAME | DT_FILTER | DT_AUXILIARY
        )
    });
    if !names_string {
        return Ok(());
    }
    if info.strtab == 0 {
        return Err(malformed(
            "dynamic section names strings but DT_STRTAB is not in a PT_LOAD segment",
        ));
    }
    // The string table may be cut short by the end of the file: strings are read up to
    // whichever comes first.
    let start = info.strtab.min(bytes.len());
    let end = start.saturating_add(info.strsz).min(bytes.len());
    let strtab = &bytes[start..end];
    let string_at = |offset: u64| -> Result<String, ElfError> {
        let tail = usize::try_from(offset)
            .ok()
            .and_then(|o| strtab.get(o..))
            .ok_or_else(|| {
                malformed(format!(
                    "string offset {offset:#x} outside the string table"
                ))
            })?;
        let raw = tail.split(|&b| b == 0).next().unwrap_or_default();
        if raw.len() == tail.len() {
            return Err(malformed(format!(
                "string at {offset:#x} is not terminated"
            )));
        }
        Ok(String::from_utf8_lossy(raw).into_owned())
    };
    for entry in &dynamic.dyns {
        match entry.d_tag {
            DT_NEEDED => {
                facts.dependencies.push(Dependency {
                    kind: DependencyKind::Needed,
                    name: string_at(entry.d_val)?,
                });
            }
            DT_FILTER | DT_AUXILIARY => facts.dependencies.push(Dependency {
                kind: if entry.d_tag == DT_FILTER {
                    DependencyKind::Filter
                } else {
                    DependencyKind::Auxiliary
                },
                name: string_at(entry.d_val)?,
            }),
            DT_SONAME => facts.soname = Some(string_at(entry.d_val)?),
            DT_RPATH => facts.rpath = Some(string_at(entry.d_val)?),
            DT_RUNPATH => facts.runpath = Some(string_at(entry.d_val)?),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal 64-bit little-endian ET_DYN with one PT_LOAD, one PT_DYNAMIC and a
    /// string table: DT_NEEDED "libc.so.6", DT_SONAME "libx.so.1", DT_RUNPATH "$ORIGIN".
    fn tiny_library() -> Vec<u8> {
        let mut b = vec![0u8; 0x200];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // ELFCLASS64
        b[5] = 1; // little-endian
        b[6] = 1; // EV_CURRENT
        put16(&mut b, 16, 3); // ET_DYN
        put16(&mut b, 18, 62); // EM_X86_64
        put32(&mut b, 20, 1);
        put64(&mut b, 32, 64); // e_phoff
        put16(&mut b, 52, 64); // e_ehsize
        put16(&mut b, 54, 56); // e_phentsize
        put16(&mut b, 56, 2); // e_phnum
                              // PT_LOAD covering the whole file at vaddr 0.
        let ph = 64;
        put32(&mut b, ph, 1);
        put64(&mut b, ph + 8, 0);
        put64(&mut b, ph + 16, 0);
        put64(&mut b, ph + 32, 0x200);
        put64(&mut b, ph + 40, 0x200);
        // PT_DYNAMIC at 0x100, 5 entries.
        let ph = 64 + 56;
        put32(&mut b, ph, 2);
        put64(&mut b, ph + 8, 0x100);
        put64(&mut b, ph + 16, 0x100);
        put64(&mut b, ph + 32, 5 * 16);
        put64(&mut b, ph + 40, 5 * 16);
        // String table at 0x180.
        let strings = b"\0libc.so.6\0libx.so.1\0$ORIGIN\0";
        b[0x180..0x180 + strings.len()].copy_from_slice(strings);
        let dyns: [(u64, u64); 5] = [
            (1, 1),
            (14, 11),
            (29, 21),
            (5, 0x180),
            (10, strings.len() as u64),
        ];
        for (i, (tag, val)) in dyns.iter().enumerate() {
            put64(&mut b, 0x100 + i * 16, *tag);
            put64(&mut b, 0x100 + i * 16 + 8, *val);
        }
        b
    }

    fn put16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn reads_the_dynamic_facts_of_a_crafted_library() {
        let facts = ElfFacts::parse(&tiny_library()).unwrap();
        assert_eq!(facts.class, ElfClass::Elf64);
        assert_eq!(facts.machine, 62);
        assert_eq!(facts.elf_type, header::ET_DYN);
        assert_eq!(facts.needed().collect::<Vec<_>>(), ["libc.so.6"]);
        assert_eq!(facts.soname.as_deref(), Some("libx.so.1"));
        assert_eq!(facts.runpath.as_deref(), Some("$ORIGIN"));
        assert_eq!(facts.rpath, None);
        assert!(!facts.is_static());
        assert!(facts.interpreter.is_none());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let whole = tiny_library();
        for len in 0..whole.len() {
            // Cutting inside the string table may still parse (the strings before the cut
            // are complete); anything else must be a typed error.
            let _ = ElfFacts::parse(&whole[..len]);
        }
        assert!(matches!(
            ElfFacts::parse(&whole[..3]),
            Err(ElfError::NotElf)
        ));
        assert!(matches!(
            ElfFacts::parse(&whole[..40]),
            Err(ElfError::Malformed(_))
        ));
        assert!(matches!(
            ElfFacts::parse(&whole[..100]),
            Err(ElfError::Malformed(_))
        ));
        assert!(matches!(
            ElfFacts::parse(&whole[..0x120]),
            Err(ElfError::Malformed(_))
        ));
    }

    #[test]
    fn huge_program_header_count_is_an_error() {
        let mut b = tiny_library();
        put16(&mut b, 56, u16::MAX);
        assert!(matches!(ElfFacts::parse(&b), Err(ElfError::Malformed(_))));
    }

    #[test]
    fn program_headers_past_the_end_are_an_error() {
        let mut b = tiny_library();
        put64(&mut b, 32, u64::MAX - 8);
        assert!(matches!(ElfFacts::parse(&b), Err(ElfError::Malformed(_))));
    }

    #[test]
    fn huge_dynamic_segment_is_an_error() {
        let mut b = tiny_library();
        put64(&mut b, 64 + 56 + 32, u64::MAX / 2);
        assert!(matches!(ElfFacts::parse(&b), Err(ElfError::Malformed(_))));
    }

    #[test]
    fn dynamic_offset_past_the_end_is_an_error() {
        let mut b = tiny_library();
        put64(&mut b, 64 + 56 + 8, 0xffff_ffff_0000);
        assert!(matches!(ElfFacts::parse(&b), Err(ElfError::Malformed(_))));
    }

    #[test]
    fn string_offset_outside_the_table_is_an_error() {
        let mut b = tiny_library();
        put64(&mut b, 0x100 + 8, 0xffff_ffff_ffff);
        assert!(matches!(ElfFacts::parse(&b), Err(ElfError::Malformed(_))));
    }

    #[test]
    fn huge_string_table_size_is_clamped_to_the_file() {
        let mut b = tiny_library();
        put64(&mut b, 0x100 + 4 * 16 + 8, u64::MAX);
        let facts = ElfFacts::parse(&b).unwrap();
        assert_eq!(facts.needed().collect::<Vec<_>>(), ["libc.so.6"]);
    }

    #[test]
    fn wrong_program_header_entry_size_is_an_error() {
        let mut b = tiny_library();
        put16(&mut b, 54, 12);
        assert!(matches!(ElfFacts::parse(&b), Err(ElfError::Malformed(_))));
    }

    #[test]
    fn unknown_class_is_an_error() {
        let mut b = tiny_library();
        b[4] = 7;
        assert!(matches!(ElfFacts::parse(&b), Err(ElfError::Malformed(_))));
    }

    #[test]
    fn rpath_is_ignored_when_runpath_is_present() {
        let mut facts = ElfFacts::parse(&tiny_library()).unwrap();
        facts.rpath = Some("/r".into());
        assert_eq!(facts.effective_rpath(), None);
        facts.runpath = None;
        assert_eq!(facts.effective_rpath(), Some("/r"));
    }

    #[test]
    fn text_files_are_told_apart_from_linker_scripts() {
        let script = b"/* GNU ld script\n   Use the shared library.  */\nOUTPUT_FORMAT(elf64-x86-64)\nGROUP ( /lib/x86_64-linux-gnu/libc.so.6 )\n";
        assert!(matches!(
            ElfFacts::parse(script),
            Err(ElfError::LinkerScript)
        ));
        assert!(matches!(
            ElfFacts::parse(b"INPUT(-lfoo)\n"),
            Err(ElfError::LinkerScript)
        ));
        assert!(matches!(
            ElfFacts::parse(b"#!/bin/sh\necho hi\n"),
            Err(ElfError::NotElf)
        ));
        assert!(matches!(ElfFacts::parse(b""), Err(ElfError::NotElf)));
    }

    #[test]
    fn reads_the_system_libc_and_linker_script() {
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        if !libc.exists() {
            return;
        }
        let facts = ElfFacts::read(libc).unwrap();
        assert_eq!(facts.soname.as_deref(), Some("libc.so.6"));
        assert!(facts.needed().any(|n| n.starts_with("ld-linux")));
        let script = Path::new("/usr/lib/x86_64-linux-gnu/libc.so");
        if script.exists() {
            assert!(matches!(
                ElfFacts::read(script),
                Err(ElfError::LinkerScript)
            ));
        }
    }
}
