//! The cache directory as every part of the cache uses it: its subdirectories, made by
//! what writes into them; the installed entries and their `used` files; and the leases a
//! process holds on the images it handed out.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use mkroot_common::oci::read::OciError;
use mkroot_common::run_defaults::RunDefaults;

use super::error::{io_error, unusable, CacheError};
use crate::file_lock;

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

/// The cache directory, and the images this process leased from it.
pub(super) struct Store {
    pub dir: PathBuf,
    /// Shared locks on the `used` files of images this process handed out: they mark the
    /// images in use until the cache is dropped (or the process dies).
    leases: Mutex<Vec<File>>,
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
            leases: Mutex::new(Vec::new()),
        }
    }

    /// The subdirectory `name` (`images`, `index`, `locks`, `tmp`, `oci-layers`), made
    /// if missing: for what is about to write into it.
    pub fn subdir(&self, name: &str) -> Result<PathBuf, CacheError> {
        let path = self.dir.join(name);
        match fs::create_dir(&path) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => Err(unusable(&path)(err)),
            _ => Ok(path),
        }
    }

    /// Waits for the exclusive lock `locks/<key>`, which serialises the installs of one
    /// entry.
    pub fn lock(&self, key: &str) -> Result<File, CacheError> {
        let path = self.subdir("locks")?.join(key);
        file_lock::lock_file(&path).map_err(io_error(&path))
    }

    /// Marks the image `digest` in use (shared lock on its `used` file) and returns it, or
    /// `None` if it is not installed (never was, or was just pruned).
    pub fn lease(&self, digest: &str) -> Result<Option<CachedImage>, CacheError> {
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
        Ok(Some(CachedImage {
            digest: Some(digest.to_string()),
            root: entry.join("root"),
            run_defaults: read_run_defaults(&entry.join("config.json"))?,
        }))
    }
}

/// What the config an OCI image's entry keeps beside its tree says to run; `None` for a
/// rootfs image, which has none.
fn read_run_defaults(config_path: &Path) -> Result<Option<RunDefaults>, CacheError> {
    let bytes = match fs::read(config_path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_error(config_path)(err)),
    };
    let defaults = RunDefaults::from_config_json(&bytes).map_err(|detail| OciError::Invalid {
        path: config_path.to_path_buf(),
        what: "the cached config".to_string(),
        detail,
    })?;
    Ok(Some(defaults))
}

/// Takes a shared lock on the `used` file of the installed cache entry `entry` (an
/// image or a layer), which keeps prune from removing it; `None` if it is not installed.
/// Prune renames an entry away while holding its lock, so the file locked is checked to
/// still be the installed one.
pub(super) fn lock_installed_entry(entry: &Path) -> Result<Option<File>, CacheError> {
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

/// An entry's `info.json` (sizes, counts, where it came from); empty if unreadable.
pub(super) fn read_info(entry: &Path) -> serde_json::Value {
    fs::read(entry.join("info.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The image as `cache ls` shows where an entry came from: its absolute path.
pub(super) fn source_name(image: &Path) -> String {
    std::path::absolute(image)
        .unwrap_or_else(|_| image.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

/// A name unique across processes and calls: pid, time and a counter.
pub(super) fn unique_suffix() -> String {
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
pub(super) fn read_names(dir: &Path) -> Result<Vec<OsString>, CacheError> {
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
pub(super) fn try_flock(file: &File, operation: libc::c_int) -> bool {
    file_lock::try_lock(file, operation).unwrap_or(false)
}
