//! The stat index: `index/<dev>-<ino>-<size>-<mtime>-<ctime>`, a symlink to the digest
//! of the image file with that identity, so a cached launch costs an `fstat` and a
//! `readlink` instead of hashing the file. The key holds the file's inode and change time
//! (which no one can set), so an edited or replaced file misses and is hashed again.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use mkroot_common::digest::is_sha256_hex;

use super::error::{io_error, CacheError};
use super::store::{unique_suffix, CachedImage, Store};

/// The stat index key of an image file: what identifies its content without reading it.
pub(super) fn index_key(meta: &fs::Metadata) -> String {
    let ns = |secs: i64, nanos: i64| secs as i128 * 1_000_000_000 + nanos as i128;
    format!(
        "{}-{}-{}-{}-{}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        ns(meta.mtime(), meta.mtime_nsec()),
        ns(meta.ctime(), meta.ctime_nsec())
    )
}

/// The cached image the stat index names for `key`, leased; `None` on a miss.
pub(super) fn lookup(store: &Store, key: &str) -> Option<CachedImage> {
    let target = fs::read_link(store.dir.join("index").join(key)).ok()?;
    let digest = target.to_str().filter(|d| is_sha256_hex(d))?.to_string();
    store.lease(&digest).ok().flatten()
}

/// Indexes `image` (read with stat index key `key`) as `digest`, unless the file
/// changed while it was read: its key then names other bytes.
pub(super) fn index_if_unchanged(
    store: &Store,
    image: &Path,
    key: &str,
    digest: &str,
) -> Result<(), CacheError> {
    let unchanged = fs::metadata(image).is_ok_and(|now| index_key(&now) == key);
    if unchanged {
        write_index(store, key, digest)?;
    }
    Ok(())
}

/// Points the stat index entry `key` at `digest` (atomically replacing an old one).
fn write_index(store: &Store, key: &str, digest: &str) -> Result<(), CacheError> {
    let index = store.subdir("index")?;
    let temp = index.join(format!(".{key}.{}", unique_suffix()));
    std::os::unix::fs::symlink(digest, &temp).map_err(io_error(&temp))?;
    let path = index.join(key);
    fs::rename(&temp, &path).map_err(|err| {
        let _ = fs::remove_file(&temp);
        io_error(&path)(err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_change_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        fs::write(&path, b"one").unwrap();
        let before = index_key(&fs::metadata(&path).unwrap());
        assert_eq!(before, index_key(&fs::metadata(&path).unwrap()));
        fs::write(&path, b"two").unwrap();
        assert_ne!(before, index_key(&fs::metadata(&path).unwrap()));
    }
}
