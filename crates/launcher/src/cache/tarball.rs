//! A rootfs image file (a tarball, compressed or not), unpacked into `images/<sha256>`
//! while it is hashed: one pass over the file names and unpacks it.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc;

use mkroot_common::unpack::{self, UnpackOptions};
use sha2::{Digest, Sha256};

use super::error::CacheError;
use super::install::{get_or_install, install_entry, FilledEntry};
use super::progress::Progress;
use super::stat_index::{index_if_unchanged, lookup};
use super::store::{source_name, CachedImage, Store};

/// The cached tree of the image file `image` (open as `file`; `key` is its stat index
/// key when it is a regular file), unpacked first if its digest is not cached yet. One
/// process per image file unpacks; the others wait, then find it.
pub(super) fn get_or_unpack(
    store: &Store,
    options: &UnpackOptions,
    image: &Path,
    file: File,
    key: Option<&str>,
) -> Result<CachedImage, CacheError> {
    let mut file = Some(file);
    let mut digest = String::new();
    let found = get_or_install(
        store,
        key,
        || Ok(key.and_then(|key| lookup(store, key))),
        || {
            // Unpacking again (a prune took the first install): read the file again.
            let file = match file.take() {
                Some(file) => file,
                None => File::open(image).map_err(|source| CacheError::Image {
                    path: image.to_path_buf(),
                    source,
                })?,
            };
            digest = install_entry(store, "images", "unpack", |work| {
                unpack_image(options, image, file, work)
            })?;
            if let Some(key) = key {
                index_if_unchanged(store, image, key, &digest)?;
            }
            store.lease(&digest)
        },
    )?;
    found.ok_or(CacheError::NotCached(digest))
}

/// Unpacks the image file `image` (open as `file`) into `work`'s root while hashing
/// it; the entry is named by the digest.
fn unpack_image(
    options: &UnpackOptions,
    image: &Path,
    file: File,
    work: &Path,
) -> Result<FilledEntry, CacheError> {
    let progress = Progress::for_image(image, &file);
    let mut source = HashingReader::new(file, progress);
    let report = unpack::unpack(&mut source, &work.join("root"), options).map_err(|source| {
        CacheError::Unpack {
            image: image.to_path_buf(),
            source,
        }
    })?;
    let digest = source.finish().map_err(|source| CacheError::Image {
        path: image.to_path_buf(),
        source,
    })?;
    let info = serde_json::json!({
        "digest": digest,
        "source": source_name(image),
        "bytes": report.bytes,
        "entries": report.entries,
        "skipped_devices": report.skipped_devices,
        "skipped_fifos": report.skipped_fifos,
        "skipped_other": report.skipped_other,
        "stripped_setid": report.stripped_setid,
    });
    Ok(FilledEntry { name: digest, info })
}

/// Reads a file while a thread of its own runs the bytes read through sha256: hashing
/// on the reading thread, which also inflates (the critical path of an unpack), made a
/// sixth of its work. The hasher gets a copy of exactly the bytes the unpack read, so the
/// digest names the content that was unpacked even if the file changes meanwhile.
struct HashingReader {
    file: File,
    to_hasher: Option<mpsc::SyncSender<Vec<u8>>>,
    hasher: Option<std::thread::JoinHandle<String>>,
    progress: Option<Progress>,
}

/// Reads in flight to the hasher: bounds the copies waiting for it.
const READS_IN_FLIGHT: usize = 16;

impl HashingReader {
    fn new(file: File, progress: Option<Progress>) -> Self {
        let (to_hasher, reads) = mpsc::sync_channel::<Vec<u8>>(READS_IN_FLIGHT);
        let hasher = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            for data in reads {
                hasher.update(&data);
            }
            hex::encode(hasher.finalize())
        });
        HashingReader {
            file,
            to_hasher: Some(to_hasher),
            hasher: Some(hasher),
            progress,
        }
    }

    /// Hashes whatever was not read yet and returns the digest of the whole file.
    fn finish(mut self) -> io::Result<String> {
        io::copy(&mut self, &mut io::sink())?;
        if let Some(progress) = &self.progress {
            progress.finish();
        }
        self.to_hasher = None;
        self.hasher
            .take()
            .and_then(|hasher| hasher.join().ok())
            .ok_or_else(|| io::Error::other("the sha256 thread died"))
    }
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if let Some(progress) = &mut self.progress {
            progress.advance(n);
        }
        if n > 0 {
            let sent = self
                .to_hasher
                .as_ref()
                .map(|to_hasher| to_hasher.send(buf[..n].to_vec()));
            if !matches!(sent, Some(Ok(()))) {
                return Err(io::Error::other("the sha256 thread died"));
            }
        }
        Ok(n)
    }
}
