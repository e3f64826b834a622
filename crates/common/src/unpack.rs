//! Unpacking an image tarball into an empty directory, safely, whoever made the tarball.
//!
//! The launcher runs images the user did not build, so an archive is treated as hostile:
//!
//! - **Nothing lands outside the root.** Names are cleaned lexically (a leading `/` dropped,
//!   `..` stopping at the root, as containerd does), then every parent directory is opened
//!   *inside* the root (`openat2(RESOLVE_IN_ROOT)`, or an `openat(O_NOFOLLOW)` walk that
//!   resolves symlinks itself, see [`root_dir`]), and the last component is created relative to
//!   that directory fd with `O_EXCL`/`O_NOFOLLOW`. A symlink planted by an earlier entry (to
//!   `/`, to `../..`) is followed only within the root, never out of it.
//! - **No host file is read in.** A hard link may only name an entry already unpacked; its
//!   target is resolved inside the root like any other path.
//! - **No device nodes, no fifos.** Character and block devices are skipped (the container's
//!   `/dev` is built by the launcher); fifos are skipped too: they carry no data, and one
//!   shared through the read-only cache could link two containers. Both are counted in the
//!   [`UnpackReport`].
//! - **setuid/setgid bits are stripped** from regular files unless
//!   [`UnpackOptions::keep_setid`] is set. Containers run with `no_new_privs`, where the bits
//!   do nothing; on the host, a setuid-root file from an untrusted image sitting in a cache
//!   directory is only a risk. File capabilities and other xattrs are not restored either.
//! - **Bounded work.** [`UnpackOptions::max_bytes`] caps the data of all entries (checked
//!   against each header before any of it is decompressed, so a gzip bomb stops at once),
//!   [`UnpackOptions::max_entries`] the number of headers, and extension headers (GNU long
//!   names, PAX records) are capped at 64 KiB and 1 MiB.
//! - **Duplicates: the last entry wins.** What stands at its name is removed first (a
//!   directory with its whole tree), never written through. Except mkroot's manifest
//!   ([`MANIFEST_PATH`]): an image with two entries for it, or with a `.mkroot` that is
//!   not a directory, is refused, since readers that take the first and readers that take
//!   the last would see two different images (a user's file shadowing the real one).
//! - **Truncation and corruption are refused**: a gzip stream must end with its trailer
//!   (CRC checked), a tar with its end-of-archive marker.
//!
//! Directory modes and mtimes are applied after all entries, so a read-only directory in the
//! archive does not stop its own contents from being written. Nothing is fsynced: the cache
//! installs the tree by an atomic rename, and a tree from a crashed run is swept, not reused.
//!
//! Speed: decompression runs on its own thread ([`stream`]), small files are created and
//! written by a few writer threads in parallel ([`writers`]: creating inodes is where the
//! time goes), data moves in 256 KiB-1 MiB blocks, and parent directory fds are reused
//! across entries.

mod root_dir;
mod stream;
mod writers;

pub use root_dir::remove_tree;
pub use stream::{sniff as sniff_compression, Compression};

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::manifest::MANIFEST_PATH;
use crate::size::human_bytes;
use stream::PipedReader;
use tar::EntryType;
use writers::{FileJob, WriterPool};

/// The default cap on the data an image may unpack to.
pub const DEFAULT_MAX_BYTES: u64 = 8 << 30;
/// The default cap on the number of tar headers in an image.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;

/// A GNU long name or link name longer than this is refused (PATH_MAX is 4096).
const MAX_LONG_NAME: u64 = 64 * 1024;
/// A PAX extended header larger than this is refused.
const MAX_PAX_HEADER: u64 = 1024 * 1024;
/// Data after the end-of-archive marker beyond this is refused (tar pads to 10 KiB records;
/// a few MiB of zeros is the most any writer adds).
const MAX_TRAILING: u64 = 16 * 1024 * 1024;
const COPY_BUFFER: usize = 256 * 1024;
/// Files up to this size are read into memory and written by the writer threads; larger
/// ones are streamed to disk by the reading thread.
const MAX_QUEUED_FILE: u64 = 1024 * 1024;
/// Writer threads: enough to overlap inode creation on a few cores.
const WRITERS: usize = 3;

/// Limits and policy for one unpack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Cap on the total data of all entries, in bytes (`--max-image-size`).
    pub max_bytes: u64,
    /// Cap on the number of tar headers (entries and extension headers).
    pub max_entries: u64,
    /// Keep setuid/setgid bits on regular files (stripped by default, see the module doc).
    pub keep_setid: bool,
    /// Give entries the archive's uid/gid. Only root can; the default is "when root".
    /// Otherwise every entry belongs to the caller (who is root inside a rootless container).
    pub preserve_owner: bool,
    /// Resolve paths with openat2(RESOLVE_IN_ROOT) where the kernel has it (the default);
    /// `false` always takes the `openat(O_NOFOLLOW)` walk, as on kernels before 5.6.
    pub use_openat2: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            max_bytes: DEFAULT_MAX_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            keep_setid: false,
            preserve_owner: unsafe { libc::geteuid() } == 0,
            use_openat2: true,
        }
    }
}

/// What an unpack did, for messages and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Entries unpacked or skipped (extension headers not counted).
    pub entries: u64,
    /// Bytes of file data written.
    pub bytes: u64,
    pub skipped_devices: u64,
    pub skipped_fifos: u64,
    /// Entries of types an image has no use for (volume labels, unknown types).
    pub skipped_other: u64,
    /// Regular files whose setuid/setgid bits were stripped.
    pub stripped_setid: u64,
}

/// An entry name as shown in a message: printable ASCII only (a hostile name cannot break
/// the one-line error or the terminal), and shortened when it is huge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryName(pub Vec<u8>);

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.0;
        if name.len() <= 200 {
            write!(f, "\"{}\"", name.escape_ascii())
        } else {
            write!(
                f,
                "\"{}...{}\" ({} bytes)",
                name[..100].escape_ascii(),
                name[name.len() - 60..].escape_ascii(),
                name.len()
            )
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{}: cannot unpack into it: {source}", path.display())]
    Target {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: cannot unpack into it: the directory is not empty", path.display())]
    TargetNotEmpty { path: PathBuf },
    #[error("the image is empty; an image is a tar archive, plain or gzip-compressed")]
    Empty,
    #[error("the image is compressed with {0}, which is not supported: use a plain or gzip-compressed tar")]
    UnsupportedCompression(&'static str),
    /// Says nothing of what the file holds: a text file would be quoted otherwise.
    #[error(
        "the image is not a tar archive (its first 512 bytes are no tar header); an image is a tar archive, plain or gzip-compressed"
    )]
    NotTar,
    #[error("the image is truncated or corrupt{}: {detail}", after.as_ref().map(|name| format!(" (after entry {name})")).unwrap_or_default())]
    Corrupt {
        after: Option<EntryName>,
        detail: String,
    },
    #[error("the image unpacks to more than {} (the limit; --max-image-size raises it)", human_bytes(*limit))]
    TooLarge { limit: u64 },
    #[error("the image has more than {limit} entries (the limit)")]
    TooManyEntries { limit: u64 },
    #[error("entry {entry}: {problem}")]
    BadEntry { entry: EntryName, problem: String },
    #[error("entry {entry}: cannot unpack it: {source}")]
    Write {
        entry: EntryName,
        #[source]
        source: io::Error,
    },
}

/// Unpacks the tar archive read from `source` (plain or gzip, told apart by magic number)
/// into `target`, which must be an existing, empty directory.
///
/// `source` is read to its end on success (so a caller hashing it sees every byte). On error
/// `target` holds a partial tree, still confined to `target`: remove it with
/// [`remove_tree`].
pub fn unpack<R: Read + Send>(
    source: R,
    target: &Path,
    options: &UnpackOptions,
) -> Result<UnpackReport, UnpackError> {
    let root = open_empty_target(target, options.use_openat2)?;
    let (compression, decoded) = stream::open(source).map_err(|err| UnpackError::Corrupt {
        after: None,
        detail: err.to_string(),
    })?;
    if let Compression::Unsupported(name) = compression {
        return Err(UnpackError::UnsupportedCompression(name));
    }
    std::thread::scope(|scope| {
        let reader = stream::spawn_reader(scope, decoded);
        let mut unpacker = Unpacker::new(root, options, WriterPool::start(scope, WRITERS));
        unpacker.run(reader)?;
        Ok(unpacker.report)
    })
}

/// Unpacks the image file at `image` into `target` (see [`unpack`]).
pub fn unpack_file(
    image: &Path,
    target: &Path,
    options: &UnpackOptions,
) -> Result<UnpackReport, UnpackError> {
    let (file, _) =
        crate::host_file::open_regular(image).map_err(|source| UnpackError::Target {
            path: image.to_path_buf(),
            source,
        })?;
    unpack(file, target, options)
}

fn open_empty_target(target: &Path, use_openat2: bool) -> Result<root_dir::RootDir, UnpackError> {
    let target_error = |source| UnpackError::Target {
        path: target.to_path_buf(),
        source,
    };
    let mut listing = std::fs::read_dir(target).map_err(target_error)?;
    if listing.next().is_some() {
        return Err(UnpackError::TargetNotEmpty {
            path: target.to_path_buf(),
        });
    }
    root_dir::RootDir::open(target, use_openat2).map_err(target_error)
}

/// A name split into its components with `.`, empty parts and a leading `/` gone, and `..`
/// applied lexically, never above the root (`../../etc/x` is `etc/x`).
pub fn clean_components(path: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts
}

/// Extension headers seen so far, describing the next real entry.
#[derive(Default)]
struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Extensions {
    /// Keeps `entry`'s data if it is an extension header (and says so), capped in size.
    fn take(&mut self, entry: &mut tar::Entry<'_, PipedReader>) -> Result<bool, UnpackError> {
        // GNU names end in NULs (trimmed); PAX records are kept as they are.
        let (slot, cap, what, is_name) = match entry.header().entry_type() {
            EntryType::GNULongName => (
                Some(&mut self.long_name),
                MAX_LONG_NAME,
                "GNU long name",
                true,
            ),
            EntryType::GNULongLink => (
                Some(&mut self.long_link),
                MAX_LONG_NAME,
                "GNU long link name",
                true,
            ),
            EntryType::XHeader => (
                Some(&mut self.pax),
                MAX_PAX_HEADER,
                "PAX extended header",
                false,
            ),
            // Global PAX records (comments, a default mtime) change nothing we keep.
            EntryType::XGlobalHeader => (None, MAX_PAX_HEADER, "PAX global header", false),
            _ => return Ok(false),
        };
        let data = read_extension(entry, cap, what).map_err(|problem| UnpackError::BadEntry {
            entry: EntryName(entry.header().path_bytes().into_owned()),
            problem,
        })?;
        if let Some(slot) = slot {
            *slot = Some(if is_name { trim_nuls(data) } else { data });
        }
        Ok(true)
    }

    fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

/// One real entry, its extension headers folded in.
struct EntryMeta {
    path: Vec<u8>,
    link: Option<Vec<u8>>,
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: (i64, u32),
    size: u64,
}

impl EntryMeta {
    fn read(entry: &tar::Entry<'_, PipedReader>, ext: Extensions) -> Result<EntryMeta, String> {
        let header = entry.header();
        let field = |name: &str, err: io::Error| format!("bad {name} field in the header: {err}");
        // Some writers leave numeric fields blank (all NULs or spaces); tar reads those as 0.
        let old = header.as_old();
        let number = |value: io::Result<u64>, raw: &[u8], name: &str| match value {
            Ok(n) => Ok(n),
            Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
            Err(err) => Err(field(name, err)),
        };
        let mut meta = EntryMeta {
            path: ext
                .long_name
                .unwrap_or_else(|| header.path_bytes().into_owned()),
            link: ext
                .long_link
                .or_else(|| header.link_name_bytes().map(|l| l.into_owned())),
            kind: header.entry_type(),
            mode: number(header.mode().map(u64::from), &old.mode, "mode")? as u32,
            uid: number(header.uid(), &old.uid, "uid")?,
            gid: number(header.gid(), &old.gid, "gid")?,
            mtime: (number(header.mtime(), &old.mtime, "mtime")? as i64, 0),
            size: entry.size(),
        };
        if let Some(pax) = &ext.pax {
            meta.apply_pax(pax)?;
        }
        Ok(meta)
    }

    /// PAX records override the header; the tar crate in raw mode leaves them to us.
    fn apply_pax(&mut self, pax: &[u8]) -> Result<(), String> {
        for record in tar::PaxExtensions::new(pax) {
            let record = record.map_err(|_| "malformed PAX extended header".to_string())?;
            let key = record.key_bytes();
            let value = record.value_bytes();
            let number = || -> Result<u64, String> {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("bad PAX {} value", key.escape_ascii()))
            };
            match key {
                b"path" => self.path = value.to_vec(),
                b"linkpath" => self.link = Some(value.to_vec()),
                b"uid" => self.uid = number()?,
                b"gid" => self.gid = number()?,
                b"mtime" => self.mtime = parse_pax_time(value)?,
                // A size that disagrees with the header would make this reader and others
                // see different archives; files over 8 GiB (the only honest use) are refused.
                b"size" if number()? != self.size => {
                    return Err("PAX size differs from the header's size (not supported)".into())
                }
                key if key.starts_with(b"GNU.sparse.") => {
                    return Err(
                        "PAX sparse file: not supported (re-create the archive without --sparse)"
                            .into(),
                    )
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A PAX time, `1700000000` or `1700000000.123456789` (possibly negative).
fn parse_pax_time(value: &[u8]) -> Result<(i64, u32), String> {
    let bad = || format!("bad PAX mtime {}", value.escape_ascii());
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: u32 = digits.parse().map_err(|_| bad())?;
    Ok((secs, nanos))
}

/// An open directory entries are created in, and its identity (device, inode).
#[derive(Clone)]
struct ParentDir {
    fd: Arc<OwnedFd>,
    id: (u64, u64),
}

/// A directory whose mode and mtime are applied once everything is unpacked.
struct DeferredDir {
    path: Vec<u8>,
    mode: u32,
    mtime: (i64, u32),
}

struct Unpacker<'o> {
    root: root_dir::RootDir,
    options: &'o UnpackOptions,
    report: UnpackReport,
    /// Open parent directories by cleaned path; cleared whenever an entry replaces another,
    /// since a removed directory's fd would point at a deleted tree.
    parents: HashMap<Vec<u8>, ParentDir>,
    dirs: Vec<DeferredDir>,
    writers: WriterPool,
    /// Entries seen so far: the archive order of queued files.
    seq: u64,
    buf: Vec<u8>,
    euid: u32,
    egid: u32,
    /// An entry for [`MANIFEST_PATH`] was unpacked.
    seen_manifest: bool,
}

const MAX_CACHED_PARENTS: usize = 256;

impl<'o> Unpacker<'o> {
    fn new(root: root_dir::RootDir, options: &'o UnpackOptions, writers: WriterPool) -> Self {
        Unpacker {
            root,
            options,
            report: UnpackReport::default(),
            parents: HashMap::new(),
            dirs: Vec::new(),
            writers,
            seq: 0,
            buf: vec![0; COPY_BUFFER],
            euid: unsafe { libc::geteuid() },
            egid: unsafe { libc::getegid() },
            seen_manifest: false,
        }
    }

    fn run(&mut self, reader: PipedReader) -> Result<(), UnpackError> {
        let source_failed = reader.source_failed.clone();
        let mut archive = tar::Archive::new(reader);
        let mut headers: u64 = 0;
        let mut last: Option<EntryName> = None;
        {
            let entries = archive.entries().map_err(|e| corrupt(None, e))?;
            // Raw mode: extension headers come to us, so their size can be capped here
            // (the tar crate would read a GNU long name of any size into memory).
            let mut entries = entries.raw(true);
            let mut ext = Extensions::default();
            loop {
                let mut entry = match entries.next() {
                    None => break,
                    Some(Ok(entry)) => entry,
                    // A bad first header means this is no tarball; a failing gzip stream
                    // means a broken one.
                    Some(Err(_)) if headers == 0 && !source_failed.get() => {
                        return Err(UnpackError::NotTar)
                    }
                    Some(Err(err)) => return Err(corrupt(last, err)),
                };
                headers += 1;
                if headers > self.options.max_entries {
                    return Err(UnpackError::TooManyEntries {
                        limit: self.options.max_entries,
                    });
                }
                if ext.take(&mut entry)? {
                    continue;
                }
                let meta =
                    EntryMeta::read(&entry, std::mem::take(&mut ext)).map_err(|problem| {
                        UnpackError::BadEntry {
                            entry: EntryName(entry.header().path_bytes().into_owned()),
                            problem,
                        }
                    })?;
                last = Some(EntryName(meta.path.clone()));
                self.unpack_entry(&mut entry, &meta, &last)?;
            }
            if !ext.is_empty() {
                return Err(corrupt_msg(last, "extension header with no entry after it"));
            }
        }
        check_stream_end(archive.into_inner(), headers, last)?;
        self.settle_writers()?;
        self.apply_dir_metadata();
        Ok(())
    }

    fn charge(&mut self, size: u64) -> Result<(), UnpackError> {
        let total = self.report.bytes.saturating_add(size);
        if total > self.options.max_bytes {
            return Err(UnpackError::TooLarge {
                limit: self.options.max_bytes,
            });
        }
        self.report.bytes = total;
        Ok(())
    }

    fn unpack_entry(
        &mut self,
        entry: &mut tar::Entry<'_, PipedReader>,
        meta: &EntryMeta,
        name: &Option<EntryName>,
    ) -> Result<(), UnpackError> {
        self.report.entries += 1;
        self.seq += 1;
        // Data counts against the limit whether it is written or skipped: it is
        // decompressed either way.
        self.charge(meta.size)?;
        let bad = |problem: &str| UnpackError::BadEntry {
            entry: EntryName(meta.path.clone()),
            problem: problem.to_string(),
        };
        let parts = clean_components(&meta.path);
        self.check_manifest_entry(meta, &parts)?;
        // Before POSIX, a directory was a regular entry whose name ends in '/'.
        let is_old_style_dir = meta.kind == EntryType::Regular && meta.path.ends_with(b"/");
        match meta.kind {
            EntryType::Directory => self.make_directory(meta, &parts),
            _ if is_old_style_dir => self.make_directory(meta, &parts),
            EntryType::Char | EntryType::Block => {
                self.report.skipped_devices += 1;
                Ok(())
            }
            EntryType::Fifo => {
                self.report.skipped_fifos += 1;
                Ok(())
            }
            EntryType::GNUSparse => Err(bad(
                "GNU sparse file: not supported (re-create the archive without --sparse)",
            )),
            EntryType::Regular | EntryType::Continuous | EntryType::Symlink | EntryType::Link
                if parts.is_empty() =>
            {
                Err(bad("a file entry names the image root itself"))
            }
            EntryType::Regular | EntryType::Continuous => {
                self.write_file(entry, meta, &parts, name)
            }
            EntryType::Symlink => self.make_symlink(meta, &parts),
            EntryType::Link => self.make_hardlink(meta, &parts),
            _ => {
                self.report.skipped_other += 1;
                Ok(())
            }
        }
    }

    /// mkroot's manifest must be one entry, in a `.mkroot` that is a directory.
    fn check_manifest_entry(
        &mut self,
        meta: &EntryMeta,
        parts: &[&[u8]],
    ) -> Result<(), UnpackError> {
        let manifest: Vec<&[u8]> = MANIFEST_PATH.split('/').map(str::as_bytes).collect();
        if parts.first() != Some(&manifest[0]) {
            return Ok(());
        }
        let bad = |problem: String| UnpackError::BadEntry {
            entry: EntryName(meta.path.clone()),
            problem,
        };
        if parts.len() == 1 && meta.kind != EntryType::Directory && !meta.path.ends_with(b"/") {
            return Err(bad(format!(
                "{} is where mkroot keeps the image's manifest, and here it is not a directory; the image was tampered with",
                manifest[0].escape_ascii()
            )));
        }
        if parts == manifest.as_slice() {
            if self.seen_manifest {
                return Err(bad(format!(
                    "a second entry for {MANIFEST_PATH}: one of them shadows the other; the image was tampered with"
                )));
            }
            self.seen_manifest = true;
        }
        Ok(())
    }

    /// The open parent directory of `parts`' last component, creating missing ones.
    fn parent_dir(&mut self, meta: &EntryMeta, parts: &[&[u8]]) -> Result<ParentDir, UnpackError> {
        let parent = &parts[..parts.len() - 1];
        self.wait_for_files_above(parent)?;
        let key = parent.join(&b'/');
        if let Some(dir) = self.parents.get(&key) {
            return Ok(dir.clone());
        }
        let fd = self
            .root
            .open_dir(parent, true)
            .map_err(|source| write_error(meta, source))?;
        let st = root_dir::fstat(&fd).map_err(|source| write_error(meta, source))?;
        let dir = ParentDir {
            fd: Arc::new(fd),
            id: (st.st_dev, st.st_ino),
        };
        if self.parents.len() >= MAX_CACHED_PARENTS {
            self.parents.clear();
        }
        self.parents.insert(key, dir.clone());
        Ok(dir)
    }

    /// Waits for the writer threads if a file they hold stands at the directory `dir` or
    /// above it: that file may yet replace a directory this entry would otherwise be
    /// written into (and lost with it), or looked up in.
    fn wait_for_files_above(&mut self, dir: &[&[u8]]) -> Result<(), UnpackError> {
        if self.writers.holds_file_at_or_above(dir) {
            self.settle_writers()?;
        }
        Ok(())
    }

    /// Waits for the writer threads if `name` in `dir` is still being written, so this
    /// entry acts on it after the earlier one.
    fn wait_for_name(&mut self, dir: &ParentDir, name: &CStr) -> Result<(), UnpackError> {
        if self
            .writers
            .is_in_flight(&(dir.id.0, dir.id.1, name.to_bytes().to_vec()))
        {
            self.settle_writers()?;
        }
        Ok(())
    }

    /// Waits until the writer threads are idle, then redoes the files they handed back
    /// (a directory was in the way) and reports the first file they failed on.
    fn settle_writers(&mut self) -> Result<(), UnpackError> {
        let settled = self.writers.settle();
        if let Some((entry, source)) = settled.failure {
            return Err(UnpackError::Write {
                entry: EntryName(entry),
                source,
            });
        }
        for job in settled.bounced {
            let dir = job.dir.as_raw_fd();
            let fail = |source| UnpackError::Write {
                entry: EntryName(job.entry.clone()),
                source,
            };
            self.replace(dir, &job.name, &job.entry)?;
            let mut file = root_dir::create_file(dir, &job.name).map_err(fail)?;
            file.write_all(&job.data).map_err(fail)?;
            writers::finish_file(&file, job.owner, job.mode, job.mtime).map_err(fail)?;
        }
        Ok(())
    }

    /// Removes what stands at `name` so the entry `entry` can take its place.
    fn replace(&mut self, dir: RawFd, name: &CStr, entry: &[u8]) -> Result<(), UnpackError> {
        // A tree being removed must not be written into meanwhile.
        self.settle_writers()?;
        let was_dir = root_dir::stat_at(dir, name)
            .map(|st| root_dir::is_dir(&st))
            .unwrap_or(false);
        root_dir::remove_at(dir, name).map_err(|source| UnpackError::Write {
            entry: EntryName(entry.to_vec()),
            source,
        })?;
        self.parents.clear();
        if was_dir {
            // Directories under the removed tree are gone: forget their deferred metadata.
            let mut prefix = clean_components(entry).join(&b'/');
            prefix.push(b'/');
            self.dirs
                .retain(|d| !d.path.starts_with(&prefix) && d.path != prefix[..prefix.len() - 1]);
        }
        Ok(())
    }

    /// The file's final mode: the archive's, setuid/setgid stripped unless kept.
    fn file_mode(&mut self, meta: &EntryMeta) -> u32 {
        let mut mode = meta.mode & 0o7777;
        if !self.options.keep_setid && mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
            mode &= !(libc::S_ISUID | libc::S_ISGID);
            self.report.stripped_setid += 1;
        }
        mode
    }

    fn write_file(
        &mut self,
        entry: &mut tar::Entry<'_, PipedReader>,
        meta: &EntryMeta,
        parts: &[&[u8]],
        name: &Option<EntryName>,
    ) -> Result<(), UnpackError> {
        let dir = self.parent_dir(meta, parts)?;
        let cname = leaf_name(meta, parts)?;
        let mode = self.file_mode(meta);
        let owner = self.owner(meta)?;
        if meta.size <= MAX_QUEUED_FILE {
            let mut data = Vec::with_capacity(meta.size as usize);
            entry
                .read_to_end(&mut data)
                .map_err(|e| corrupt(name.clone(), e))?;
            if data.len() as u64 != meta.size {
                return Err(corrupt_msg(
                    name.clone(),
                    "the archive ends inside this entry's data",
                ));
            }
            self.writers.dispatch(
                FileJob {
                    seq: self.seq,
                    dir: dir.fd.clone(),
                    dir_id: dir.id,
                    name: cname,
                    data,
                    mode,
                    owner,
                    mtime: meta.mtime,
                    entry: meta.path.clone(),
                },
                parts.join(&b'/'),
            );
            return Ok(());
        }
        self.wait_for_name(&dir, &cname)?;
        let fd = dir.fd.as_raw_fd();
        let mut file = match root_dir::create_file(fd, &cname) {
            Ok(file) => file,
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                self.replace(fd, &cname, &meta.path)?;
                root_dir::create_file(fd, &cname).map_err(|e| write_error(meta, e))?
            }
            Err(err) => return Err(write_error(meta, err)),
        };
        let mut written: u64 = 0;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(corrupt(name.clone(), err)),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| write_error(meta, e))?;
            written += n as u64;
        }
        if written != meta.size {
            return Err(corrupt_msg(
                name.clone(),
                "the archive ends inside this entry's data",
            ));
        }
        writers::finish_file(&file, owner, mode, meta.mtime).map_err(|e| write_error(meta, e))
    }

    fn make_directory(&mut self, meta: &EntryMeta, parts: &[&[u8]]) -> Result<(), UnpackError> {
        if !parts.is_empty() {
            let dir = self.parent_dir(meta, parts)?;
            let cname = leaf_name(meta, parts)?;
            self.wait_for_name(&dir, &cname)?;
            let fd = dir.fd.as_raw_fd();
            match root_dir::make_dir(fd, &cname) {
                Ok(()) => {}
                Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                    let existing =
                        root_dir::stat_at(fd, &cname).map_err(|e| write_error(meta, e))?;
                    if !root_dir::is_dir(&existing) {
                        self.replace(fd, &cname, &meta.path)?;
                        root_dir::make_dir(fd, &cname).map_err(|e| write_error(meta, e))?;
                    }
                }
                Err(err) => return Err(write_error(meta, err)),
            }
            self.chown_at(meta, fd, &cname)?;
        }
        self.dirs.push(DeferredDir {
            path: parts.join(&b'/'),
            mode: meta.mode & 0o7777,
            mtime: meta.mtime,
        });
        Ok(())
    }

    fn make_symlink(&mut self, meta: &EntryMeta, parts: &[&[u8]]) -> Result<(), UnpackError> {
        let target = match &meta.link {
            Some(target) if !target.is_empty() => {
                root_dir::c_name(target).map_err(|e| write_error(meta, e))?
            }
            _ => return Err(bad_entry(meta, "symlink without a target")),
        };
        let dir = self.parent_dir(meta, parts)?;
        let cname = leaf_name(meta, parts)?;
        self.wait_for_name(&dir, &cname)?;
        let fd = dir.fd.as_raw_fd();
        match root_dir::make_symlink(fd, &cname, &target) {
            Ok(()) => {}
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                self.replace(fd, &cname, &meta.path)?;
                root_dir::make_symlink(fd, &cname, &target).map_err(|e| write_error(meta, e))?;
            }
            Err(err) => return Err(write_error(meta, err)),
        }
        self.chown_at(meta, fd, &cname)?;
        root_dir::set_mtime_at(fd, &cname, meta.mtime.0, meta.mtime.1)
            .map_err(|e| write_error(meta, e))
    }

    fn make_hardlink(&mut self, meta: &EntryMeta, parts: &[&[u8]]) -> Result<(), UnpackError> {
        let link = meta.link.clone().unwrap_or_default();
        let target_parts = clean_components(&link);
        if target_parts.is_empty() {
            return Err(bad_entry(meta, "hard link without a target"));
        }
        if target_parts == parts {
            return Ok(());
        }
        let not_in_image = || {
            bad_entry(
                meta,
                &format!(
                    "hard link to {}, which is not an earlier entry of the image",
                    EntryName(link.clone())
                ),
            )
        };
        // The target is looked up inside the root like any other name: a link can only
        // share an inode with something this unpack wrote, never with a host file. A
        // file still with the writers above it may yet replace a directory on the way.
        self.wait_for_files_above(&target_parts[..target_parts.len() - 1])?;
        let target_dir = match self
            .root
            .open_dir(&target_parts[..target_parts.len() - 1], false)
        {
            Ok(fd) => fd,
            Err(err) if matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                return Err(not_in_image())
            }
            Err(err) => return Err(write_error(meta, err)),
        };
        let target_name = root_dir::c_name(target_parts[target_parts.len() - 1])
            .map_err(|e| write_error(meta, e))?;
        let target_st = root_dir::fstat(&target_dir).map_err(|e| write_error(meta, e))?;
        let target_parent = ParentDir {
            fd: Arc::new(target_dir),
            id: (target_st.st_dev, target_st.st_ino),
        };
        // The target may still be with the writer threads.
        self.wait_for_name(&target_parent, &target_name)?;
        let dir = self.parent_dir(meta, parts)?;
        let cname = leaf_name(meta, parts)?;
        self.wait_for_name(&dir, &cname)?;
        let (target_fd, fd) = (target_parent.fd.as_raw_fd(), dir.fd.as_raw_fd());
        let link_now = || root_dir::make_hardlink(target_fd, &target_name, fd, &cname);
        match link_now() {
            Ok(()) => Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Err(not_in_image()),
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                let existing = root_dir::stat_at(fd, &cname);
                let source = root_dir::stat_at(target_fd, &target_name);
                if let (Ok(a), Ok(b)) = (existing, source) {
                    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
                        return Ok(());
                    }
                }
                self.replace(fd, &cname, &meta.path)?;
                link_now().map_err(|e| write_error(meta, e))
            }
            Err(err) => Err(write_error(meta, err)),
        }
    }

    /// The owner to give an entry: the archive's when that is the policy and it differs
    /// from ours, else `None` (no chown).
    fn owner(&self, meta: &EntryMeta) -> Result<Option<(u32, u32)>, UnpackError> {
        if !self.options.preserve_owner {
            return Ok(None);
        }
        let (Ok(uid), Ok(gid)) = (u32::try_from(meta.uid), u32::try_from(meta.gid)) else {
            return Err(bad_entry(meta, "owner uid/gid out of range"));
        };
        Ok(((uid, gid) != (self.euid, self.egid)).then_some((uid, gid)))
    }

    /// Gives `name` in `dir` (not followed if a symlink) the entry's owner.
    fn chown_at(&self, meta: &EntryMeta, dir: RawFd, name: &CStr) -> Result<(), UnpackError> {
        if let Some((uid, gid)) = self.owner(meta)? {
            let flags = libc::AT_SYMLINK_NOFOLLOW;
            if unsafe { libc::fchownat(dir, name.as_ptr(), uid, gid, flags) } < 0 {
                return Err(write_error(meta, io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    /// Directory modes and mtimes, deepest first, once nothing more is written into them.
    /// The last entry for a directory wins; one that was replaced meanwhile is skipped.
    fn apply_dir_metadata(&mut self) {
        let mut seen = HashSet::new();
        let mut dirs: Vec<DeferredDir> = Vec::new();
        for dir in std::mem::take(&mut self.dirs).into_iter().rev() {
            if seen.insert(dir.path.clone()) {
                dirs.push(dir);
            }
        }
        dirs.sort_by_key(|d| {
            std::cmp::Reverse(
                d.path.iter().filter(|&&b| b == b'/').count() + usize::from(!d.path.is_empty()),
            )
        });
        for dir in dirs {
            let parts = clean_components(&dir.path);
            let fd = if parts.is_empty() {
                root_dir::open_dir_fd(self.root.fd(), c".")
            } else {
                let Ok(parent) = self.root.open_dir(&parts[..parts.len() - 1], false) else {
                    continue;
                };
                let Ok(name) = root_dir::c_name(parts[parts.len() - 1]) else {
                    continue;
                };
                root_dir::open_dir_fd(parent.as_raw_fd(), &name)
            };
            let Ok(fd) = fd else { continue };
            // Best effort: a directory the archive also made unwritable is still complete.
            unsafe { libc::fchmod(fd.as_raw_fd(), dir.mode) };
            let _ = root_dir::set_mtime_fd(fd.as_raw_fd(), dir.mtime.0, dir.mtime.1);
        }
    }
}

/// After the last entry: the archive must have ended with its end-of-archive marker, and
/// what follows it is read to the end (bounded), because a gzip stream's CRC and length are
/// only checked at its trailer, and a caller hashing the source needs every byte read.
fn check_stream_end(
    mut reader: PipedReader,
    headers: u64,
    last: Option<EntryName>,
) -> Result<(), UnpackError> {
    if headers == 0 && reader.consumed == 0 {
        return Err(UnpackError::Empty);
    }
    if reader.hit_end {
        return Err(corrupt_msg(
            last,
            "the archive ends without its end-of-archive marker",
        ));
    }
    let trailing = io::copy(&mut (&mut reader).take(MAX_TRAILING + 1), &mut io::sink())
        .map_err(|e| corrupt(last.clone(), e))?;
    if trailing > MAX_TRAILING {
        return Err(corrupt_msg(
            last,
            "more than 16 MiB of data after the end-of-archive marker",
        ));
    }
    Ok(())
}

/// Reads an extension header's data, refusing more than `cap` bytes.
fn read_extension(
    entry: &mut tar::Entry<'_, PipedReader>,
    cap: u64,
    what: &str,
) -> Result<Vec<u8>, String> {
    if entry.size() > cap {
        return Err(format!(
            "{what} of {} bytes (more than {} allowed)",
            entry.size(),
            cap
        ));
    }
    let mut data = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut data)
        .map_err(|e| format!("{what} is truncated: {e}"))?;
    if data.len() as u64 != entry.size() {
        return Err(format!("{what} is truncated"));
    }
    Ok(data)
}

fn trim_nuls(mut name: Vec<u8>) -> Vec<u8> {
    while name.last() == Some(&0) {
        name.pop();
    }
    name
}

fn leaf_name(meta: &EntryMeta, parts: &[&[u8]]) -> Result<std::ffi::CString, UnpackError> {
    root_dir::c_name(parts[parts.len() - 1]).map_err(|e| write_error(meta, e))
}

fn bad_entry(meta: &EntryMeta, problem: &str) -> UnpackError {
    UnpackError::BadEntry {
        entry: EntryName(meta.path.clone()),
        problem: problem.to_string(),
    }
}

fn write_error(meta: &EntryMeta, source: io::Error) -> UnpackError {
    UnpackError::Write {
        entry: EntryName(meta.path.clone()),
        source,
    }
}

fn corrupt(after: Option<EntryName>, err: io::Error) -> UnpackError {
    UnpackError::Corrupt {
        after,
        detail: err.to_string(),
    }
}

fn corrupt_msg(after: Option<EntryName>, detail: &str) -> UnpackError {
    UnpackError::Corrupt {
        after,
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_into_the_root() {
        let joined = |p: &[u8]| clean_components(p).join(&b'/');
        assert_eq!(joined(b"/etc/passwd"), b"etc/passwd");
        assert_eq!(joined(b"../../etc/x"), b"etc/x");
        assert_eq!(joined(b"a/./b//c/../d"), b"a/b/d");
        assert_eq!(joined(b"./"), b"");
        assert_eq!(joined(b"\xff/\xfe"), b"\xff/\xfe");
    }

    #[test]
    fn pax_times_keep_nanoseconds() {
        assert_eq!(
            parse_pax_time(b"1700000000.5").unwrap(),
            (1700000000, 500_000_000)
        );
        assert_eq!(parse_pax_time(b"12").unwrap(), (12, 0));
        assert!(parse_pax_time(b"12.x").is_err());
    }

    #[test]
    fn entry_names_print_on_one_line() {
        let shown = EntryName(b"evil\nname\xff".to_vec()).to_string();
        assert_eq!(shown, "\"evil\\nname\\xff\"");
        let long = EntryName(vec![b'a'; 5000]).to_string();
        assert!(long.len() < 250 && long.contains("5000 bytes"));
    }
}
