//! The content-addressed image cache: each image is unpacked once per digest, installed
//! atomically, then used read-only by every launch of it.
//!
//! # Layout
//!
//! ```text
//! DIR/                                   0700: untrusted image trees live below
//!   images/<sha256>/root/                the unpacked tree (the overlay's lower layer)
//!   images/<sha256>/info.json            size and entry count, for `launch cache ls`
//!   images/<sha256>/config.json          an OCI image's config (its entrypoint, env, ...)
//!   images/<sha256>/used                 mtime = last use; running launches hold a
//!                                        shared flock on it, prune an exclusive one
//!   index/<dev>-<ino>-<size>-<mtime>-<ctime>  symlink -> <sha256>: the stat index
//!   locks/<same key>                     flock'd while that image file is being unpacked
//!   tmp/unpack-*/                        unpacks in progress (flock'd while alive)
//!   oci-layers/<diff_id>/root/           one layer of OCI images, unpacked alone
//!   oci-layers/<diff_id>/used            flock'd (shared) while an image is stacked on it
//! ```
//!
//! # OCI images
//!
//! An OCI layout, oci-archive or docker-archive (told by content, see
//! [`mkroot_common::oci::read`]) is cached under its manifest digest (a docker-archive:
//! its config digest) in `images/`, like a rootfs image. Its tree is stacked from its
//! layers (see [`crate::layer_stack`]), each unpacked once into `oci-layers/` by diff_id
//! and checked there (blob digest and size, diff_id) before it is installed: images that
//! share layers share those trees, and the data of their files. An archive file is found
//! again through the stat index like any image file; a layout directory costs reading
//! and hashing its index, manifest and config (a few KiB), never its layers.
//!
//! # How a launch uses it
//!
//! ```no_run
//! # use mkroot_launcher::cache::ImageCache;
//! # fn run() -> Result<(), mkroot_launcher::cache::CacheError> {
//! let cache = ImageCache::open(&ImageCache::default_dir())?;
//! let image = cache.get_or_unpack(std::path::Path::new("img.tgz"))?;
//! // mount an overlay with lowerdir=image.root (the writable layer is a tmpfs of the
//! // container's own, see `rootfs`). Keep `cache` alive until the container has exited:
//! // it holds the image's in-use lock.
//! # Ok(()) }
//! ```
//!
//! # Why it is safe
//!
//! - **First launch:** the image file is hashed *while* it is unpacked (one pass over it),
//!   into `tmp/unpack-*`, then installed with one `rename` to `images/<sha256>`. A reader
//!   sees either no entry or a complete one; a crash leaves only a `tmp/` dir, swept later.
//! - **Concurrent first launches** of one file wait on its `locks/` file, and find the entry
//!   installed when they get the lock. Two different files with the same content may unpack
//!   at once; the second `rename` fails on the non-empty target and that copy is discarded.
//! - **Cached launch:** `fstat` of the image, `readlink` of its index entry, a shared lock
//!   on `used`: no hashing. The index key holds the file's inode and change time (which no
//!   one can set), so an edited or replaced file misses and is hashed again.
//! - **In use:** a launch holds a shared `flock` on `images/<sha256>/used` for as long as its
//!   [`ImageCache`] lives; prune and remove take an exclusive one without waiting and skip
//!   (or refuse) entries they cannot lock. Locks die with their process, even on SIGKILL.
//! - **Stale work:** `tmp/` dirs carry an exclusive `flock` while their owner lives;
//!   [`ImageCache::sweep_stale`] removes the unlocked ones.
//!
//! # Parts
//!
//! [`ImageCache`] is the face; below it, each part uses only those listed after it.
//! `maintenance` (prune, remove) and `listing` (`cache ls`, its table); `tarball` (a
//! rootfs image file, hashed while unpacked, with its `progress` line) and `oci_layers`
//! (an OCI image stacked from its layers); `stat_index`; `install`, the one way an
//! image or a layer enters the cache (lock, temp dir, fill, rename, a lost race
//! discarded); `store` (the directory, its entries and this process's leases); `error`
//! and `age`.

mod age;
mod error;
mod install;
mod listing;
mod maintenance;
mod oci_layers;
mod progress;
mod stat_index;
mod store;
mod tarball;

pub use age::parse_age;
pub use error::CacheError;
pub use listing::{CacheEntry, CacheTable};
pub use maintenance::{PruneFilter, PruneReport};
pub use store::CachedImage;

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mkroot_common::oci::read::{self as oci, ImageFormat};
use mkroot_common::unpack::UnpackOptions;

use error::{io_error, unusable};
use stat_index::{index_if_unchanged, index_key, lookup};
use store::Store;

pub struct ImageCache {
    store: Store,
    options: UnpackOptions,
}

impl ImageCache {
    /// Opens (creating if needed) the cache rooted at `dir`. The directory is made 0700 and
    /// must belong to the caller: it will hold trees from untrusted images.
    pub fn open(dir: &Path) -> Result<ImageCache, CacheError> {
        // One stat when the cache exists (every launch but the first).
        let meta = match fs::metadata(dir) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .and_then(|()| fs::metadata(dir)),
            found => found,
        }
        .map_err(unusable(dir))?;
        if !meta.is_dir() {
            return Err(unusable(dir)(io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        let uid = effective_uid();
        if meta.uid() != uid {
            return Err(CacheError::NotOwned {
                path: dir.to_path_buf(),
                owner: meta.uid(),
                uid,
            });
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;
        }
        // The subdirectories are made by what writes into them (`Store::subdir`), on a
        // miss: a cached launch only reads, and a missing one reads as empty.
        Ok(ImageCache {
            store: Store::new(dir),
            options: UnpackOptions::default(),
        })
    }

    /// Where the cache lives by default: `/var/cache/mkroot-launch` for root, else
    /// `$XDG_CACHE_HOME/mkroot-launch` or `~/.cache/mkroot-launch`.
    pub fn default_dir() -> PathBuf {
        if effective_uid() == 0 {
            return PathBuf::from("/var/cache/mkroot-launch");
        }
        let absolute = |var: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        if let Some(cache) = absolute("XDG_CACHE_HOME") {
            return cache.join("mkroot-launch");
        }
        if let Some(home) = absolute("HOME") {
            return home.join(".cache/mkroot-launch");
        }
        PathBuf::from(format!("/tmp/mkroot-launch-{}", effective_uid()))
    }

    /// Where an ordinary user's cache goes when the default one cannot be made (a
    /// service account without a home directory): `$XDG_RUNTIME_DIR/mkroot-launch`,
    /// then `/tmp/mkroot-launch-UID`. Each must be the user's own (see [`Self::open`]),
    /// so another user cannot plant one.
    pub fn fallback_dirs() -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && p.is_dir())
        {
            dirs.push(run.join("mkroot-launch"));
        }
        dirs.push(PathBuf::from(format!(
            "/tmp/mkroot-launch-{}",
            effective_uid()
        )));
        dirs
    }

    pub fn dir(&self) -> &Path {
        &self.store.dir
    }

    /// Limits and policy for unpacking new images (`--max-image-size` sets `max_bytes`).
    pub fn set_unpack_options(&mut self, options: UnpackOptions) {
        self.options = options;
    }

    /// The cached tree of `image`, unpacking it first if this digest is not cached yet. A
    /// directory image is used in place. The image stays marked in use (safe from prune)
    /// while this `ImageCache` lives.
    pub fn get_or_unpack(&self, image: &Path) -> Result<CachedImage, CacheError> {
        let image_error = |source| CacheError::Image {
            path: image.to_path_buf(),
            source,
        };
        let file = File::open(image).map_err(image_error)?;
        let meta = file.metadata().map_err(image_error)?;
        if meta.is_dir() {
            if oci::detect(image)? == ImageFormat::OciLayout {
                return oci_layers::get_or_stack(
                    &self.store,
                    &self.options,
                    image,
                    ImageFormat::OciLayout,
                );
            }
            let root = fs::canonicalize(image).map_err(image_error)?;
            return Ok(CachedImage {
                digest: None,
                root,
                run_defaults: None,
            });
        }
        let key = meta.is_file().then(|| index_key(&meta));
        if let Some(found) = key.as_deref().and_then(|key| lookup(&self.store, key)) {
            return Ok(found);
        }
        // Not seen before (or changed): an OCI archive is stacked from its layers.
        let format = oci::detect(image)?;
        if format != ImageFormat::Rootfs {
            let found = oci_layers::get_or_stack(&self.store, &self.options, image, format)?;
            if let (Some(key), Some(digest)) = (&key, &found.digest) {
                index_if_unchanged(&self.store, image, key, digest)?;
            }
            return Ok(found);
        }
        tarball::get_or_unpack(&self.store, &self.options, image, file, key.as_deref())
    }

    /// The cached images, most recently used first.
    pub fn list(&self) -> Result<Vec<CacheEntry>, CacheError> {
        listing::list(&self.store)
    }

    /// Removes every cached image no running launch uses, index entries pointing nowhere,
    /// idle lock files and the leftovers of crashed runs.
    pub fn prune(&self) -> Result<PruneReport, CacheError> {
        self.prune_with(PruneFilter::default())
    }

    /// [`Self::prune`], of the entries `filter` picks (oldest use first).
    pub fn prune_with(&self, filter: PruneFilter) -> Result<PruneReport, CacheError> {
        maintenance::prune(&self.store, filter)
    }

    /// Removes the cached image whose digest is `digest` or starts with it (a unique
    /// prefix); refuses if a running launch uses it. Returns the full digest.
    pub fn remove(&self, digest: &str) -> Result<String, CacheError> {
        maintenance::remove(&self.store, digest)
    }

    /// Removes what crashed runs left: unpacks and installs that never finished. Cheap
    /// (one small directory listing); returns the count.
    pub fn sweep_stale(&self) -> Result<usize, CacheError> {
        install::sweep_stale(&self.store)
    }
}

fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_dir_depends_on_who_runs() {
        let dir = ImageCache::default_dir();
        if effective_uid() == 0 {
            assert_eq!(dir, Path::new("/var/cache/mkroot-launch"));
        } else {
            assert!(dir.ends_with("mkroot-launch") || dir.starts_with("/tmp"));
        }
    }
}
