//! A rootfs image file (a tarball, compressed or not), unpacked into `images/<sha256>`
//! while it is hashed: one pass over the file names and unpacks it.

use std::fs::File;
use std::path::Path;

use mkroot_common::digest::ThreadedHashingReader;
use mkroot_common::unpack::{self, UnpackOptions};

use super::error::CacheError;
use super::install::{get_or_install, FilledEntry, NewEntry};
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
    let new_entry = NewEntry {
        lock_key: key,
        dir: "images",
        temp_prefix: "unpack",
    };
    let mut file = Some(file);
    get_or_install(
        store,
        &new_entry,
        || Ok(key.and_then(|key| lookup(store, key))),
        |work| {
            // Unpacking again (a prune took the first install): read the file again.
            let file = match file.take() {
                Some(file) => file,
                None => File::open(image).map_err(|source| CacheError::Image {
                    path: image.to_path_buf(),
                    source,
                })?,
            };
            unpack_image(options, image, file, work)
        },
        |digest| {
            if let Some(key) = key {
                index_if_unchanged(store, image, key, digest)?;
            }
            store.lease(digest)
        },
    )
}

/// Unpacks the image file `image` (open as `file`) into `work`'s root while hashing
/// it; the entry is named by the digest.
fn unpack_image(
    options: &UnpackOptions,
    image: &Path,
    file: File,
    work: &Path,
) -> Result<FilledEntry, CacheError> {
    let mut progress = Progress::for_image(image, &file);
    let mut source = ThreadedHashingReader::new(file, |n| {
        if let Some(progress) = &mut progress {
            progress.advance(n);
        }
    });
    let report = unpack::unpack(&mut source, &work.join("root"), options).map_err(|source| {
        CacheError::Unpack {
            image: image.to_path_buf(),
            source,
        }
    })?;
    let digest = source.finish();
    if let Some(progress) = &progress {
        progress.finish();
    }
    let digest = digest.map_err(|source| CacheError::Image {
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
