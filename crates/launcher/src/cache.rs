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

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, SystemTime};

use crate::file_lock;
use mkroot_common::digest::is_sha256_hex;
use mkroot_common::oci::read::{self as oci, ImageFormat, Layer, OciError, OciImage};
use mkroot_common::run_defaults::RunDefaults;
use mkroot_common::unpack::{self, UnpackError, UnpackOptions};

use crate::layer_stack::LayerStack;
use sha2::{Digest, Sha256};

/// An image ready to be used as the lower layer of a container's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedImage {
    /// sha256 of the image file (for a directory image: `None`, used in place).
    pub digest: Option<String>,
    /// The unpacked root filesystem tree; never written to.
    pub root: PathBuf,
    /// What an OCI image's config says to run (`None` for a rootfs image).
    pub run_defaults: Option<RunDefaults>,
}

/// One cached image, as `launch cache ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub digest: String,
    /// Bytes of file data in the unpacked tree.
    pub size: u64,
    /// Number of entries (files, dirs, links) in the tree.
    pub entries: u64,
    /// When a launch last used it.
    pub last_used: SystemTime,
    /// Whether a running launch holds it now.
    pub in_use: bool,
    /// The image file it was unpacked from, as first launched (absolute); `None` for
    /// entries older than the record.
    pub source: Option<String>,
}

/// Which entries `launch cache prune` removes: all unused ones, or only those older than
/// `older_than`, and then the least recently used until the cache holds `max_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneFilter {
    pub older_than: Option<std::time::Duration>,
    pub max_bytes: Option<u64>,
}

impl PruneFilter {
    fn is_everything(&self) -> bool {
        self.older_than.is_none() && self.max_bytes.is_none()
    }
}

/// What [`ImageCache::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Digests of the entries removed.
    pub removed: Vec<String>,
    /// Bytes of file data they held.
    pub freed: u64,
    /// Entries kept because a running launch uses them.
    pub in_use: usize,
    /// Leftovers of crashed runs removed (unfinished unpacks and installs).
    pub stale: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot read the image: {source}", path.display())]
    Image {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", image.display())]
    Unpack {
        image: PathBuf,
        #[source]
        source: UnpackError,
    },
    #[error("cache directory {}: {source}; give --cache-dir a directory you can write (or set XDG_CACHE_HOME)", path.display())]
    Unusable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache directory {}: owned by uid {owner}, not by you (uid {uid}); remove it or pick another cache directory", path.display())]
    NotOwned { path: PathBuf, owner: u32, uid: u32 },
    #[error("no cached image has a digest starting with {0:?} (see `launch cache ls`)")]
    NotCached(String),
    #[error("{0:?} matches several cached images; give more digits")]
    Ambiguous(String),
    #[error("cached image {0} is in use by a running launch")]
    InUse(String),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error("{}: layer {diff_id}: {source}", image.display())]
    Layer {
        image: PathBuf,
        diff_id: String,
        #[source]
        source: io::Error,
    },
}

/// Takes a shared lock on the `used` file of the installed cache entry `entry` (an
/// image or a layer), which keeps prune from removing it; `None` if it is not installed.
/// Prune renames an entry away while holding its lock, so the file locked is checked to
/// still be the installed one.
fn lock_installed_entry(entry: &Path) -> Result<Option<File>, CacheError> {
    let used_path = entry.join("used");
    let used = match File::open(&used_path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_error(&used_path)(err)),
    };
    file_lock::lock(&used, libc::LOCK_SH).map_err(io_error(&used_path))?;
    let locked = used.metadata().map_err(io_error(&used_path))?;
    match fs::metadata(&used_path) {
        Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => Ok(Some(used)),
        _ => Ok(None),
    }
}

/// The cache directory (or one of its own subdirectories) cannot be made or used.
fn unusable(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Unusable {
        path: path.to_path_buf(),
        source,
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A temp or layer dir younger than this is never swept: its owner may be between
/// `mkdir` and taking the lock.
const SWEEP_GRACE: Duration = Duration::from_secs(10);

pub struct ImageCache {
    dir: PathBuf,
    options: UnpackOptions,
    /// Shared locks on the `used` files of images this process handed out: they mark the
    /// images in use until the cache is dropped (or the process dies).
    leases: Mutex<Vec<File>>,
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
        let uid = unsafe { libc::geteuid() };
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
        // The subdirectories are made by what writes into them (`subdir`), on a miss: a
        // cached launch only reads, and a missing one reads as empty.
        Ok(ImageCache {
            dir: dir.to_path_buf(),
            options: UnpackOptions::default(),
            leases: Mutex::new(Vec::new()),
        })
    }

    /// Where the cache lives by default: `/var/cache/mkroot-launch` for root, else
    /// `$XDG_CACHE_HOME/mkroot-launch` or `~/.cache/mkroot-launch`.
    pub fn default_dir() -> PathBuf {
        if unsafe { libc::geteuid() } == 0 {
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
        PathBuf::from(format!("/tmp/mkroot-launch-{}", unsafe { libc::geteuid() }))
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
        // SAFETY: geteuid cannot fail.
        dirs.push(PathBuf::from(format!("/tmp/mkroot-launch-{}", unsafe {
            libc::geteuid()
        })));
        dirs
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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
                return self.get_or_stack(image, ImageFormat::OciLayout);
            }
            let root = fs::canonicalize(image).map_err(image_error)?;
            return Ok(CachedImage {
                digest: None,
                root,
                run_defaults: None,
            });
        }
        let key = meta.is_file().then(|| index_key(&meta));
        if let Some(found) = key.as_deref().and_then(|key| self.lookup(key)) {
            return Ok(found);
        }
        // Not seen before (or changed): an OCI archive is stacked from its layers.
        let format = oci::detect(image)?;
        if format != ImageFormat::Rootfs {
            let found = self.get_or_stack(image, format)?;
            if let (Some(key), Some(digest)) = (&key, &found.digest) {
                self.index_if_unchanged(image, key, digest)?;
            }
            return Ok(found);
        }
        // Miss: one process per image file unpacks; the others wait, then find it.
        let mut file = Some(file);
        let mut digest = String::new();
        let found = self.get_or_install(
            key.as_deref(),
            || Ok(key.as_deref().and_then(|key| self.lookup(key))),
            || {
                // Unpacking again (a prune took the first install): read the file again.
                let file = match file.take() {
                    Some(file) => file,
                    None => File::open(image).map_err(image_error)?,
                };
                digest = self.install_entry("images", "unpack", |work| {
                    self.unpack_image(image, file, work)
                })?;
                if let Some(key) = &key {
                    self.index_if_unchanged(image, key, &digest)?;
                }
                self.lease(&digest)
            },
        )?;
        found.ok_or(CacheError::NotCached(digest))
    }

    /// Unpacks the image file `image` (open as `file`) into `work`'s root while hashing
    /// it; the entry is named by the digest.
    fn unpack_image(
        &self,
        image: &Path,
        file: File,
        work: &Path,
    ) -> Result<FilledEntry, CacheError> {
        let progress = Progress::for_image(image, &file);
        let mut source = HashingReader::new(file, progress);
        let report =
            unpack::unpack(&mut source, &work.join("root"), &self.options).map_err(|source| {
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

    /// The cached image the stat index names for `key`, leased; `None` on a miss.
    fn lookup(&self, key: &str) -> Option<CachedImage> {
        let target = fs::read_link(self.dir.join("index").join(key)).ok()?;
        let digest = target.to_str().filter(|d| is_sha256_hex(d))?.to_string();
        self.lease(&digest).ok().flatten()
    }

    /// Marks `digest` in use (shared lock on its `used` file) and returns it, or `None` if
    /// it is not installed (never was, or was just pruned).
    fn lease(&self, digest: &str) -> Result<Option<CachedImage>, CacheError> {
        let entry = self.dir.join("images").join(digest);
        let Some(used) = lock_installed_entry(&entry)? else {
            return Ok(None);
        };
        // Best effort: the last-use time only orders `cache ls`.
        let _ = used.set_modified(SystemTime::now());
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(used);
        let config_path = entry.join("config.json");
        let run_defaults =
            match fs::read(&config_path) {
                Ok(bytes) => Some(RunDefaults::from_config_json(&bytes).map_err(|detail| {
                    OciError::Invalid {
                        path: config_path.clone(),
                        what: "the cached config".to_string(),
                        detail,
                    }
                })?),
                Err(err) if err.kind() == io::ErrorKind::NotFound => None,
                Err(err) => return Err(io_error(&config_path)(err)),
            };
        Ok(Some(CachedImage {
            digest: Some(digest.to_string()),
            root: entry.join("root"),
            run_defaults,
        }))
    }

    /// The cached tree of the OCI image at `image`, stacked from its layers first if its
    /// digest is not cached yet (each layer unpacked and checked unless cached too).
    fn get_or_stack(&self, image: &Path, format: ImageFormat) -> Result<CachedImage, CacheError> {
        let oci = OciImage::open(image, format)?;
        let find = || self.lease(&oci.id);
        if let Some(found) = find()? {
            return Ok(found);
        }
        let found = self.get_or_install(Some(&format!("image-{}", oci.id)), find, || {
            self.stack_and_install(image, &oci)?;
            find()
        })?;
        found.ok_or(CacheError::NotCached(oci.id))
    }

    /// Builds the image's tree from its layer trees in a temp dir, then renames it into
    /// place as `images/<id>`, with the config beside it.
    fn stack_and_install(&self, image: &Path, oci: &OciImage) -> Result<(), CacheError> {
        // Shared locks on the layers' `used` files keep a prune off them while they are
        // linked from.
        let mut layer_roots = Vec::new();
        let mut _layer_leases = Vec::new();
        // --max-image-size bounds the image, all its layers together.
        let limit = self.options.max_bytes;
        let mut total: u64 = 0;
        for layer in &oci.layers {
            let room = limit.saturating_sub(total);
            let (root, lease, bytes) = self.get_or_unpack_layer(image, oci, layer, room)?;
            total = total.saturating_add(bytes);
            if total > limit {
                return Err(CacheError::Unpack {
                    image: image.to_path_buf(),
                    source: UnpackError::TooLarge { limit },
                });
            }
            layer_roots.push((root, &layer.diff_id));
            _layer_leases.push(lease);
        }
        self.install_entry("images", "stack", |work| {
            let root = work.join("root");
            let mut stack = LayerStack::new(&root);
            for (layer_root, diff_id) in layer_roots {
                stack
                    .apply(&layer_root)
                    .map_err(|source| CacheError::Layer {
                        image: image.to_path_buf(),
                        diff_id: diff_id.clone(),
                        source,
                    })?;
            }
            let info = serde_json::json!({
                "digest": oci.id,
                "source": source_name(image),
                "bytes": stack.bytes,
                "entries": stack.entries,
                "layers": oci.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>(),
            });
            stack.finish().map_err(io_error(&root))?;
            let config_path = work.join("config.json");
            fs::write(&config_path, &oci.config_json).map_err(io_error(&config_path))?;
            Ok(FilledEntry {
                name: oci.id.clone(),
                info,
            })
        })?;
        Ok(())
    }

    /// The unpacked tree of one layer, unpacking (and checking) it first if needed, with
    /// a shared lock on its `used` file and its bytes of file data. An unpack stops past
    /// `max_bytes`.
    fn get_or_unpack_layer(
        &self,
        image: &Path,
        oci: &OciImage,
        layer: &Layer,
        max_bytes: u64,
    ) -> Result<(PathBuf, File, u64), CacheError> {
        let layers = self.dir.join("oci-layers");
        let entry = layers.join(&layer.diff_id);
        let find = || {
            let Some(used) = lock_installed_entry(&entry)? else {
                return Ok(None);
            };
            let info: serde_json::Value = fs::read(entry.join("info.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or_default();
            let bytes = info["bytes"].as_u64().unwrap_or(0);
            Ok(Some((entry.join("root"), used, bytes)))
        };
        if let Some(found) = find()? {
            return Ok(found);
        }
        let options = UnpackOptions {
            max_bytes,
            ..self.options.clone()
        };
        let lock_key = format!("layer-{}", layer.diff_id);
        let found = self.get_or_install(Some(&lock_key), find, || {
            self.install_entry("oci-layers", "layer", |work| {
                self.unpack_layer(image, oci, layer, &options, work)
            })?;
            find()
        })?;
        found.ok_or_else(|| CacheError::NotCached(layer.diff_id.clone()))
    }

    /// Unpacks one layer into `work`'s root, then checks it: its blob's digest and size,
    /// and its diff_id. The entry is named by the diff_id.
    fn unpack_layer(
        &self,
        image: &Path,
        oci: &OciImage,
        layer: &Layer,
        options: &UnpackOptions,
        work: &Path,
    ) -> Result<FilledEntry, CacheError> {
        let mut stream = oci.open_layer(layer)?;
        let report = match unpack::unpack(stream.take_reader(), &work.join("root"), options) {
            Ok(report) => {
                stream.verify()?;
                report
            }
            Err(source) => {
                // A digest mismatch says more than whatever the unpacker made of bad
                // bytes: read the layer through once more, to its end, to tell.
                let mut again = oci.open_layer(layer)?;
                let _ = io::copy(&mut again.take_reader(), &mut io::sink());
                again.verify()?;
                // The limit is the image's, whatever room this layer had left.
                let source = match source {
                    UnpackError::TooLarge { .. } => UnpackError::TooLarge {
                        limit: self.options.max_bytes,
                    },
                    other => other,
                };
                return Err(CacheError::Unpack {
                    image: image.to_path_buf(),
                    source,
                });
            }
        };
        Ok(FilledEntry {
            name: layer.diff_id.clone(),
            info: serde_json::json!({ "bytes": report.bytes, "entries": report.entries }),
        })
    }

    /// The cache entry `find` finds (leased), installed first if it is missing. The
    /// install runs under the lock `locks/<lock_key>` (none without a key), so that
    /// concurrent launches of one image make one entry: the others wait for the lock, then
    /// find it. `install` installs the entry and finds it; it runs again should a prune
    /// remove the new entry before it is leased, and `None` says that happened every time.
    fn get_or_install<T>(
        &self,
        lock_key: Option<&str>,
        find: impl Fn() -> Result<Option<T>, CacheError>,
        mut install: impl FnMut() -> Result<Option<T>, CacheError>,
    ) -> Result<Option<T>, CacheError> {
        let _installing = lock_key.map(|key| self.lock_key(key)).transpose()?;
        if let Some(found) = find()? {
            return Ok(Some(found));
        }
        let _ = self.sweep_stale();
        for _ in 0..3 {
            if let Some(found) = install()? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Installs one entry in the subdirectory `dir` (`images` or `oci-layers`): `fill` fills a fresh
    /// temp dir (`tmp/<temp_prefix>-*`, its empty `root/` made) and names the entry; with
    /// its `info.json` and a `used` file added, the dir is renamed into place as
    /// `<dir>/<name>` in one step. A reader sees no entry or a whole one; a crash or an
    /// error leaves only the temp dir, locked while its owner lives and swept after.
    /// Returns the name; the entry is installed (by us, or by a concurrent install).
    fn install_entry(
        &self,
        dir: &str,
        temp_prefix: &str,
        fill: impl FnOnce(&Path) -> Result<FilledEntry, CacheError>,
    ) -> Result<String, CacheError> {
        let work = LockedDir::create(&self.subdir("tmp")?, temp_prefix)?;
        let root = work.path.join("root");
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&root)
            .map_err(io_error(&root))?;
        let FilledEntry { name, info } = fill(&work.path)?;
        let info_path = work.path.join("info.json");
        fs::write(&info_path, info.to_string()).map_err(io_error(&info_path))?;
        let used_path = work.path.join("used");
        File::create(&used_path).map_err(io_error(&used_path))?;
        let installed = self.subdir(dir)?.join(&name);
        match fs::rename(&work.path, &installed) {
            Ok(()) => work.forget(),
            // The same entry was installed meanwhile (by an unpack of another image file
            // with these bytes, or one a prune of idle lock files let run unserialised):
            // keep that one, drop ours.
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::ENOTEMPTY) | Some(libc::EEXIST)
                ) =>
            {
                drop(work)
            }
            Err(err) => return Err(io_error(&installed)(err)),
        }
        Ok(name)
    }

    /// The subdirectory `name` (`images`, `index`, `locks`, `tmp`, `oci-layers`), made
    /// if missing: for what is about to write into it.
    fn subdir(&self, name: &str) -> Result<PathBuf, CacheError> {
        let path = self.dir.join(name);
        match fs::create_dir(&path) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => Err(unusable(&path)(err)),
            _ => Ok(path),
        }
    }

    fn lock_key(&self, key: &str) -> Result<File, CacheError> {
        let path = self.subdir("locks")?.join(key);
        file_lock::lock_file(&path).map_err(io_error(&path))
    }

    /// Indexes `image` (read with stat index key `key`) as `digest`, unless the file
    /// changed while it was read: its key then names other bytes.
    fn index_if_unchanged(&self, image: &Path, key: &str, digest: &str) -> Result<(), CacheError> {
        let unchanged = fs::metadata(image).is_ok_and(|now| index_key(&now) == key);
        if unchanged {
            self.write_index(key, digest)?;
        }
        Ok(())
    }

    /// Points the stat index entry `key` at `digest` (atomically replacing an old one).
    fn write_index(&self, key: &str, digest: &str) -> Result<(), CacheError> {
        let index = self.subdir("index")?;
        let temp = index.join(format!(".{key}.{}", unique_suffix()));
        std::os::unix::fs::symlink(digest, &temp).map_err(io_error(&temp))?;
        let path = index.join(key);
        fs::rename(&temp, &path).map_err(|err| {
            let _ = fs::remove_file(&temp);
            io_error(&path)(err)
        })
    }

    /// The cached images, most recently used first.
    pub fn list(&self) -> Result<Vec<CacheEntry>, CacheError> {
        let images = self.dir.join("images");
        let mut entries = Vec::new();
        for digest in read_names(&images)? {
            let Some(digest) = digest.to_str().filter(|d| is_sha256_hex(d)) else {
                continue;
            };
            let entry = images.join(digest);
            let info: serde_json::Value = fs::read(entry.join("info.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or_default();
            let Ok(used) = File::open(entry.join("used")) else {
                continue; // being removed
            };
            let last_used = used
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let in_use = !try_flock(&used, libc::LOCK_EX);
            entries.push(CacheEntry {
                digest: digest.to_string(),
                size: info["bytes"].as_u64().unwrap_or(0),
                entries: info["entries"].as_u64().unwrap_or(0),
                last_used,
                in_use,
                source: info["source"].as_str().map(str::to_string),
            });
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        Ok(entries)
    }

    /// Removes every cached image no running launch uses, index entries pointing nowhere,
    /// idle lock files and the leftovers of crashed runs.
    pub fn prune(&self) -> Result<PruneReport, CacheError> {
        self.prune_with(PruneFilter::default())
    }

    /// [`Self::prune`], of the entries `filter` picks (oldest use first).
    pub fn prune_with(&self, filter: PruneFilter) -> Result<PruneReport, CacheError> {
        let mut report = PruneReport {
            stale: self.sweep_stale()?,
            ..PruneReport::default()
        };
        let mut entries = self.list()?;
        entries.reverse();
        let mut held: u64 = entries.iter().map(|e| e.size).sum();
        let now = SystemTime::now();
        for entry in entries {
            let old = filter
                .older_than
                .is_some_and(|age| now.duration_since(entry.last_used).unwrap_or_default() > age);
            let over = filter.max_bytes.is_some_and(|max| held > max);
            if !(filter.is_everything() || old || over) {
                continue;
            }
            match self.remove_entry(&entry.digest) {
                Ok(()) => {
                    report.freed += entry.size;
                    held = held.saturating_sub(entry.size);
                    report.removed.push(entry.digest);
                }
                Err(CacheError::InUse(_)) => report.in_use += 1,
                Err(CacheError::NotCached(_)) => {}
                Err(err) => return Err(err),
            }
        }
        // Layer trees are only read while an image is stacked on them (its files are
        // links, so removing a layer leaves the images stacked on it whole). With a
        // filter, only layers unused for as long go (they speed up the next image that
        // shares them).
        let layers = self.dir.join("oci-layers");
        for name in read_names(&layers)? {
            let entry = layers.join(&name);
            let Ok(used) = File::open(entry.join("used")) else {
                continue;
            };
            let idle = used
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default())
                .unwrap_or_default();
            let wanted = filter.is_everything() || filter.older_than.is_some_and(|age| idle > age);
            if wanted && try_flock(&used, libc::LOCK_EX) {
                self.remove_locked_entry(&entry, used)?;
            }
        }
        let index = self.dir.join("index");
        for name in read_names(&index)? {
            let path = index.join(&name);
            let dangling = match fs::read_link(&path) {
                Ok(target) => !self.dir.join("images").join(target).exists(),
                Err(_) => true,
            };
            if dangling {
                let _ = fs::remove_file(&path);
            }
        }
        let locks = self.dir.join("locks");
        for name in read_names(&locks)? {
            let path = locks.join(&name);
            // A lock file nobody holds is idle; should an unpack grab it just before the
            // unlink, it unpacks unserialised and the install rename sorts it out.
            if let Ok(file) = File::open(&path) {
                if try_flock(&file, libc::LOCK_EX) {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok(report)
    }

    /// Removes the cached image whose digest is `digest` or starts with it (a unique
    /// prefix); refuses if a running launch uses it. Returns the full digest.
    pub fn remove(&self, digest: &str) -> Result<String, CacheError> {
        let matches: Vec<String> = read_names(&self.dir.join("images"))?
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .filter(|n| is_sha256_hex(n) && !digest.is_empty() && n.starts_with(digest))
            .collect();
        match matches.as_slice() {
            [] => Err(CacheError::NotCached(digest.to_string())),
            [full] => self.remove_entry(full).map(|()| full.clone()),
            _ => Err(CacheError::Ambiguous(digest.to_string())),
        }
    }

    fn remove_entry(&self, digest: &str) -> Result<(), CacheError> {
        let entry = self.dir.join("images").join(digest);
        let used_path = entry.join("used");
        let used = match File::open(&used_path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(CacheError::NotCached(digest.to_string()))
            }
            Err(err) => return Err(io_error(&used_path)(err)),
        };
        if !try_flock(&used, libc::LOCK_EX) {
            return Err(CacheError::InUse(digest.to_string()));
        }
        self.remove_locked_entry(&entry, used)
    }

    /// Removes the entry `entry` (an image or a layer) whose `used` file the caller holds
    /// an exclusive lock on. Out of sight first (one rename, under the lock, so a lease
    /// taken meanwhile sees its entry gone), then deleted at leisure; a crash in between
    /// leaves an unlocked dir in tmp/ for the next sweep.
    fn remove_locked_entry(&self, entry: &Path, used: File) -> Result<(), CacheError> {
        let trash = self
            .dir
            .join("tmp")
            .join(format!("removed-{}", unique_suffix()));
        fs::rename(entry, &trash).map_err(io_error(entry))?;
        drop(used);
        unpack::remove_tree(&trash).map_err(io_error(&trash))
    }

    /// Removes what crashed runs left: unpacks and installs that never finished. Cheap
    /// (one small directory listing); returns the count.
    pub fn sweep_stale(&self) -> Result<usize, CacheError> {
        let mut removed = 0;
        let dir = self.dir.join("tmp");
        for name in read_names(&dir)? {
            let path = dir.join(&name);
            if LockedDir::is_abandoned(&path) && unpack::remove_tree(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// What filled a new cache entry's temp dir: the entry's name (a digest or a diff_id) and
/// what its `info.json` says (sizes, counts).
struct FilledEntry {
    name: String,
    info: serde_json::Value,
}

/// A directory with an exclusive flock held on it while its owner works in it; removed on
/// drop unless [`LockedDir::forget`] is called.
struct LockedDir {
    path: PathBuf,
    lock: Option<File>,
    owner: u32,
}

impl LockedDir {
    fn create(parent: &Path, prefix: &str) -> Result<LockedDir, CacheError> {
        let path = parent.join(format!("{prefix}-{}", unique_suffix()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io_error(&path))?;
        let lock = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io_error(&path))?;
        file_lock::lock(&lock, libc::LOCK_EX).map_err(io_error(&path))?;
        Ok(LockedDir {
            path,
            lock: Some(lock),
            owner: std::process::id(),
        })
    }

    /// Keeps the directory (it was renamed into place) and releases the lock.
    fn forget(mut self) {
        self.lock = None;
        self.owner = 0;
    }

    /// Whether `path` is a directory nobody holds a lock on, old enough that its owner is
    /// not just about to take one.
    fn is_abandoned(path: &Path) -> bool {
        let Ok(dir) = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
        else {
            return false;
        };
        let old = dir
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= SWEEP_GRACE);
        old && try_flock(&dir, libc::LOCK_EX)
    }
}

impl Drop for LockedDir {
    fn drop(&mut self) {
        if self.owner == std::process::id() {
            let _ = unpack::remove_tree(&self.path);
        }
    }
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

/// A line on the user's terminal while a large image unpacks (a first launch of a
/// 200 MB image takes about a second): how much of the file is read, redrawn at most
/// ten times a second, and what it came to at the end. Only on a terminal, and only for
/// images of [`Progress::MIN_BYTES`] or more. Written by hand rather than with
/// indicatif: `launch` is a static PIE whose every start relocates all its tables, and
/// a cached launch must not pay for a progress bar it never draws.
struct Progress {
    name: String,
    total: u64,
    done: u64,
    started: std::time::Instant,
    drawn: Option<std::time::Instant>,
}

impl Progress {
    const MIN_BYTES: u64 = 8 << 20;

    /// `None` unless stderr is a terminal and the image is large.
    fn for_image(image: &Path, file: &File) -> Option<Progress> {
        // SAFETY: isatty cannot fail.
        let terminal = unsafe { libc::isatty(libc::STDERR_FILENO) } == 1;
        let total = file.metadata().map(|m| m.len()).unwrap_or(0);
        (terminal && total >= Self::MIN_BYTES).then(|| Progress {
            name: image.file_name().map_or_else(
                || image.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            total,
            done: 0,
            started: std::time::Instant::now(),
            drawn: None,
        })
    }

    fn advance(&mut self, n: usize) {
        self.done += n as u64;
        let due = self
            .drawn
            .is_none_or(|at| at.elapsed() >= std::time::Duration::from_millis(100));
        if due {
            self.drawn = Some(std::time::Instant::now());
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            eprint!(
                "\rlaunch: unpacking {}: {:.0} of {:.0} MiB ({}%)\x1b[K",
                self.name,
                mib(self.done),
                mib(self.total),
                self.done * 100 / self.total.max(1)
            );
        }
    }

    fn finish(&self) {
        eprintln!(
            "\rlaunch: unpacked {}: {:.0} MiB in {:.1} s\x1b[K",
            self.name,
            self.total as f64 / (1 << 20) as f64,
            self.started.elapsed().as_secs_f64()
        );
    }
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

/// The stat index key of an image file: what identifies its content without reading it.
fn index_key(meta: &fs::Metadata) -> String {
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

/// A name unique across processes and calls: pid, time and a counter.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{:08x}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The names in `dir` (hidden temp names included); none if it is not made yet.
fn read_names(dir: &Path) -> Result<Vec<OsString>, CacheError> {
    let mut names = Vec::new();
    let entries = match fs::read_dir(dir) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(names),
        other => other.map_err(io_error(dir))?,
    };
    for entry in entries {
        names.push(entry.map_err(io_error(dir))?.file_name());
    }
    Ok(names)
}

/// Takes the lock if nobody holds a conflicting one; never waits.
fn try_flock(file: &File, operation: libc::c_int) -> bool {
    file_lock::try_lock(file, operation).unwrap_or(false)
}

impl CacheEntry {
    /// The header of the table that [`CacheEntry`]'s rows make (`launch cache ls`).
    pub const TABLE_HEADER: &'static str =
        "DIGEST                  BYTES  ENTRIES  IN USE   LAST USED  SOURCE";
}

/// One row of `launch cache ls`, under [`CacheEntry::TABLE_HEADER`].
impl std::fmt::Display for CacheEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let age = self.last_used.elapsed().unwrap_or_default().as_secs();
        write!(
            f,
            "{:<16} {:>12} {:>8}  {:<8} {:<10} {}",
            &self.digest[..16.min(self.digest.len())],
            self.size,
            self.entries,
            if self.in_use { "yes" } else { "no" },
            format!("{} ago", human_age(age)),
            self.source.as_deref().unwrap_or("-")
        )
    }
}

/// The image as `cache ls` shows where an entry came from: its absolute path.
fn source_name(image: &Path) -> String {
    std::path::absolute(image)
        .unwrap_or_else(|_| image.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

/// `--older-than`: a number with s, m, h or d (`7d`, `12h`).
pub fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let invalid =
        || format!("--older-than {text}: give a number with s, m, h or d, such as 12h or 7d");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| invalid())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(invalid()),
    };
    Ok(std::time::Duration::from_secs(secs))
}

fn human_age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_ls_rows_line_up_under_the_header() {
        let entry = CacheEntry {
            digest: "ab".repeat(32),
            size: 7_718_326,
            entries: 67,
            last_used: SystemTime::now(),
            in_use: true,
            source: Some("/srv/images/shell.tgz".to_string()),
        };
        let row = entry.to_string();
        assert!(row.starts_with(&"ab".repeat(8)), "{row}");
        let last_used = CacheEntry::TABLE_HEADER.find("LAST USED").unwrap();
        assert!(row[last_used..].starts_with("0s ago "), "{row}");
        let in_use = CacheEntry::TABLE_HEADER.find("IN USE").unwrap();
        assert_eq!(&row[in_use..in_use + 3], "yes", "{row}");
        let source = CacheEntry::TABLE_HEADER.find("SOURCE").unwrap();
        assert_eq!(&row[source..], "/srv/images/shell.tgz", "{row}");
    }

    #[test]
    fn ages_parse_with_their_unit() {
        assert_eq!(parse_age("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_age("12h").unwrap().as_secs(), 12 * 3600);
        assert_eq!(parse_age("7d").unwrap().as_secs(), 7 * 86_400);
        assert!(parse_age("7").is_err());
        assert!(parse_age("d").is_err());
        assert!(parse_age("1w").is_err());
    }

    #[test]
    fn the_default_dir_depends_on_who_runs() {
        let dir = ImageCache::default_dir();
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(dir, Path::new("/var/cache/mkroot-launch"));
        } else {
            assert!(dir.ends_with("mkroot-launch") || dir.starts_with("/tmp"));
        }
    }

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
