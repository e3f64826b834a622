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

/// Where a new cache entry goes, and what keeps two installs of it from running at once.
pub(super) struct NewEntry<'a> {
    /// `locks/<lock_key>` is held while the entry is looked for and installed, so that
    /// concurrent launches of one image make one entry: the others wait, then find it.
    /// `None` (an image that is no regular file, so has no stat index key): unserialised,
    /// the rename settles who installs it.
    pub lock_key: Option<&'a str>,
    /// The subdirectory the entry goes in: `images` or `oci-layers`.
    pub dir: &'static str,
    /// Its temp dir's name in `tmp/` until it is installed: `unpack`, `stack` or `layer`.
    pub temp_prefix: &'static str,
}

/// What filled a new cache entry's temp dir: the entry's name (a digest or a diff_id) and
/// what its `info.json` says (sizes, counts).
pub(super) struct FilledEntry {
    pub name: String,
    pub info: serde_json::Value,
}

/// Installs ahead of a lease that a prune may remove each new entry before: past this
/// many, the entry counts as not cached.
const INSTALL_TRIES: usize = 3;

/// The cache entry `find` finds, installed first if it is missing: the one way images
/// and layers get into the cache. Under the entry's lock (see [`NewEntry::lock_key`]),
/// `find` looks once more, then `fill` fills a fresh temp dir (`tmp/<temp_prefix>-*`,
/// its empty `root/` made) and names the entry, which is renamed into place as
/// `<dir>/<name>` (see [`install`]) and looked up by name with `find_installed`. Should a
/// prune remove the new entry before `find_installed` leases it, it is installed again.
pub(super) fn get_or_install<T>(
    store: &Store,
    entry: &NewEntry,
    find: impl Fn() -> Result<Option<T>, CacheError>,
    mut fill: impl FnMut(&Path) -> Result<FilledEntry, CacheError>,
    mut find_installed: impl FnMut(&str) -> Result<Option<T>, CacheError>,
) -> Result<T, CacheError> {
    let _installing = entry.lock_key.map(|key| store.lock(key)).transpose()?;
    if let Some(found) = find()? {
        return Ok(found);
    }
    let _ = sweep_stale(store);
    let mut name = String::new();
    for _ in 0..INSTALL_TRIES {
        name = install(store, entry, &mut fill)?;
        if let Some(found) = find_installed(&name)? {
            return Ok(found);
        }
    }
    Err(CacheError::NotCached(name))
}

/// Fills a locked temp dir with `fill`, adds the entry's `info.json` and a `used` file,
/// then renames it into place in one step. A reader sees no entry or a whole one; a crash
/// or an error leaves only the temp dir, locked while its owner lives and swept after.
/// Returns the name; the entry is installed (by us, or by a concurrent install).
fn install(
    store: &Store,
    entry: &NewEntry,
    fill: impl FnOnce(&Path) -> Result<FilledEntry, CacheError>,
) -> Result<String, CacheError> {
    let work = LockedDir::create(&store.subdir("tmp")?, entry.temp_prefix)?;
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
    rename_into_place(work, &store.subdir(entry.dir)?.join(&name))?;
    Ok(name)
}

/// Renames the filled temp dir `work` to `installed`; if the same entry was installed
/// meanwhile (by an unpack of another image file with these bytes, or one a prune of
/// idle lock files let run unserialised), keeps that one and removes ours.
fn rename_into_place(work: LockedDir, installed: &Path) -> Result<(), CacheError> {
    match fs::rename(&work.path, installed) {
        Ok(()) => work.forget(),
        Err(err)
            if matches!(
                err.raw_os_error(),
                Some(libc::ENOTEMPTY) | Some(libc::EEXIST)
            ) =>
        {
            drop(work)
        }
        Err(err) => return Err(io_error(installed)(err)),
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::store::lock_installed_entry;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;

    const ENTRY: NewEntry = NewEntry {
        lock_key: None,
        dir: "images",
        temp_prefix: "unpack",
    };

    /// A test entry's fill: one file saying which install made it.
    fn fill_as(who: &str, work: &Path) -> Result<FilledEntry, CacheError> {
        fs::write(work.join("root/who"), who).unwrap();
        Ok(FilledEntry {
            name: "entry".to_string(),
            info: serde_json::json!({ "who": who }),
        })
    }

    /// The installed entry `name` of `store`'s `images/`, if there is one whole.
    fn find_entry(store: &Store, name: &str) -> Result<Option<PathBuf>, CacheError> {
        let entry = store.dir.join("images").join(name);
        Ok(lock_installed_entry(&entry)?.map(|_| entry))
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = read_names(dir)
            .unwrap()
            .into_iter()
            .map(|n| n.into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// Runs installs "one" and "two" at once; both must find the same entry, returned.
    fn race(install: impl Fn(&str) -> Result<PathBuf, CacheError> + Sync) -> PathBuf {
        let (one, two) = std::thread::scope(|s| {
            let one = s.spawn(|| install("one"));
            let two = s.spawn(|| install("two"));
            (one.join().unwrap().unwrap(), two.join().unwrap().unwrap())
        });
        assert_eq!(one, two);
        one
    }

    #[test]
    fn two_installs_racing_for_one_name_leave_one_entry_and_no_temp_dir() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        // Unserialised (no lock key), and both fills done before either renames: one
        // rename wins, the other finds the name taken and discards its copy.
        let both_filled = Barrier::new(2);
        let install = |who: &str| {
            get_or_install(
                &store,
                &ENTRY,
                || Ok(None),
                |work| {
                    let filled = fill_as(who, work);
                    both_filled.wait();
                    filled
                },
                |name| find_entry(&store, name),
            )
        };
        let one = race(install);
        assert_eq!(names(&dir.path().join("images")), ["entry"]);
        assert_eq!(names(&one), ["info.json", "root", "used"]);
        let who = fs::read_to_string(one.join("root/who")).unwrap();
        assert!(who == "one" || who == "two", "{who}");
        assert!(names(&dir.path().join("tmp")).is_empty());
    }

    #[test]
    fn an_install_under_a_lock_is_found_by_the_next_one_instead_of_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let entry = NewEntry {
            lock_key: Some("entry"),
            ..ENTRY
        };
        let fills = AtomicUsize::new(0);
        let start = Barrier::new(2);
        let install = |who: &str| {
            start.wait();
            get_or_install(
                &store,
                &entry,
                || find_entry(&store, "entry"),
                |work| {
                    fills.fetch_add(1, Ordering::Relaxed);
                    fill_as(who, work)
                },
                |name| find_entry(&store, name),
            )
        };
        assert_eq!(race(install), dir.path().join("images/entry"));
        assert_eq!(fills.load(Ordering::Relaxed), 1);
        assert_eq!(names(&dir.path().join("images")), ["entry"]);
        assert!(names(&dir.path().join("tmp")).is_empty());
    }

    #[test]
    fn a_failed_fill_leaves_neither_an_entry_nor_a_temp_dir() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let failed = get_or_install(
            &store,
            &ENTRY,
            || Ok(None),
            |_| Err(CacheError::NotCached("broken".to_string())),
            |name| find_entry(&store, name),
        );
        assert!(matches!(failed, Err(CacheError::NotCached(name)) if name == "broken"));
        assert!(names(&dir.path().join("images")).is_empty());
        assert!(names(&dir.path().join("tmp")).is_empty());
    }
}
