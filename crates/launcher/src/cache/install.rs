//! Installing a new cache entry (an image or a layer): filled in a locked temp dir, then
//! renamed into place in one step, so that a reader sees no entry or a whole one and a
//! crash leaves only a temp dir, swept later.

use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mkroot_common::unpack;

use super::error::{io_error, CacheError};
use super::store::{read_names, try_flock, unique_suffix, Store};
use crate::file_lock;

/// What filled a new cache entry's temp dir: the entry's name (a digest or a diff_id) and
/// what its `info.json` says (sizes, counts).
pub(super) struct FilledEntry {
    pub name: String,
    pub info: serde_json::Value,
}

/// The cache entry `find` finds (leased), installed first if it is missing. The
/// install runs under the lock `locks/<lock_key>` (none without a key), so that
/// concurrent launches of one image make one entry: the others wait for the lock, then
/// find it. `install` installs the entry and finds it; it runs again should a prune
/// remove the new entry before it is leased, and `None` says that happened every time.
pub(super) fn get_or_install<T>(
    store: &Store,
    lock_key: Option<&str>,
    find: impl Fn() -> Result<Option<T>, CacheError>,
    mut install: impl FnMut() -> Result<Option<T>, CacheError>,
) -> Result<Option<T>, CacheError> {
    let _installing = lock_key.map(|key| store.lock(key)).transpose()?;
    if let Some(found) = find()? {
        return Ok(Some(found));
    }
    let _ = sweep_stale(store);
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
pub(super) fn install_entry(
    store: &Store,
    dir: &str,
    temp_prefix: &str,
    fill: impl FnOnce(&Path) -> Result<FilledEntry, CacheError>,
) -> Result<String, CacheError> {
    let work = LockedDir::create(&store.subdir("tmp")?, temp_prefix)?;
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
    let installed = store.subdir(dir)?.join(&name);
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

/// Removes what crashed runs left in `tmp/`: unpacks and installs that never finished,
/// removals cut short. Cheap (one small directory listing); returns the count.
pub(super) fn sweep_stale(store: &Store) -> Result<usize, CacheError> {
    let mut removed = 0;
    let dir = store.dir.join("tmp");
    for name in read_names(&dir)? {
        let path = dir.join(&name);
        if LockedDir::is_abandoned(&path) && unpack::remove_tree(&path).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// A temp or layer dir younger than this is never swept: its owner may be between
/// `mkdir` and taking the lock.
const SWEEP_GRACE: Duration = Duration::from_secs(10);

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
