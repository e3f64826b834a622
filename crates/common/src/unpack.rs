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
//!
//! The parts: [`unpacker`] is the loop over entries, [`make_entries`] creates each kind
//! of entry, [`entry_meta`] says what one entry's headers say, [`root_dir`] holds the
//! operations confined to the root, [`stream`] and [`writers`] the two kinds of threads.

mod entry_meta;
mod make_entries;
mod root_dir;
mod stream;
mod unpacker;
mod writers;

pub use root_dir::remove_tree;
pub use stream::{sniff as sniff_compression, Compression};

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::manifest::MANIFEST_PATH;
use crate::size::human_bytes;
use entry_meta::{EntryMeta, Extensions};
use stream::PipedReader;
use unpacker::Unpacker;
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
            preserve_owner: rustix::process::geteuid().is_root(),
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
    fn entry_names_print_on_one_line() {
        let shown = EntryName(b"evil\nname\xff".to_vec()).to_string();
        assert_eq!(shown, "\"evil\\nname\\xff\"");
        let long = EntryName(vec![b'a'; 5000]).to_string();
        assert!(long.len() < 250 && long.contains("5000 bytes"));
    }
}
