//! Keeping the cache small: `launch cache prune` and `launch cache rm`, which remove only
//! what no running launch uses, and the sweep of what crashed runs left behind.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use mkroot_common::digest::is_sha256_hex;
use mkroot_common::unpack;

use super::error::{io_error, CacheError};
use super::install::sweep_stale;
use super::listing::list;
use super::store::{read_names, try_flock, unique_suffix, Store};

/// Which entries `launch cache prune` removes: all unused ones, or only those older than
/// `older_than`, and then the least recently used until the cache holds `max_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneFilter {
    pub older_than: Option<Duration>,
    pub max_bytes: Option<u64>,
}

impl PruneFilter {
    fn is_everything(&self) -> bool {
        self.older_than.is_none() && self.max_bytes.is_none()
    }
}

/// What [`super::ImageCache::prune`] removed.
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

/// The line `launch cache prune` prints.
impl std::fmt::Display for PruneReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "removed {} image(s), {} bytes; {} in use kept; {} stale leftover(s) removed",
            self.removed.len(),
            self.freed,
            self.in_use,
            self.stale
        )
    }
}

/// Removes the cached images `filter` picks (oldest use first) that no running launch
/// uses, then the layers, index entries and lock files nothing needs any more.
pub(super) fn prune(store: &Store, filter: PruneFilter) -> Result<PruneReport, CacheError> {
    let mut report = PruneReport {
        stale: sweep_stale(store)?,
        ..PruneReport::default()
    };
    let now = SystemTime::now();
    prune_images(store, filter, now, &mut report)?;
    prune_layers(store, filter, now)?;
    prune_index(store)?;
    prune_locks(store)?;
    Ok(report)
}

fn prune_images(
    store: &Store,
    filter: PruneFilter,
    now: SystemTime,
    report: &mut PruneReport,
) -> Result<(), CacheError> {
    let mut entries = list(store)?;
    entries.reverse();
    let mut held: u64 = entries.iter().map(|e| e.size).sum();
    for entry in entries {
        let old = filter
            .older_than
            .is_some_and(|age| now.duration_since(entry.last_used).unwrap_or_default() > age);
        let over = filter.max_bytes.is_some_and(|max| held > max);
        if !(filter.is_everything() || old || over) {
            continue;
        }
        match remove_image(store, &entry.digest) {
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
    Ok(())
}

/// Layer trees are only read while an image is stacked on them (its files are links, so
/// removing a layer leaves the images stacked on it whole). With a filter, only layers
/// unused for as long go (they speed up the next image that shares them).
fn prune_layers(store: &Store, filter: PruneFilter, now: SystemTime) -> Result<(), CacheError> {
    let layers = store.dir.join("oci-layers");
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
            remove_locked_entry(store, &entry, used)?;
        }
    }
    Ok(())
}

/// Removes the stat index entries that point at no installed image.
fn prune_index(store: &Store) -> Result<(), CacheError> {
    let index = store.dir.join("index");
    for name in read_names(&index)? {
        let path = index.join(&name);
        let dangling = match fs::read_link(&path) {
            Ok(target) => !store.dir.join("images").join(target).exists(),
            Err(_) => true,
        };
        if dangling {
            let _ = fs::remove_file(&path);
        }
    }
    Ok(())
}

/// Removes the lock files nobody holds. Should an unpack grab one just before the
/// unlink, it unpacks unserialised and the install rename sorts it out.
fn prune_locks(store: &Store) -> Result<(), CacheError> {
    let locks = store.dir.join("locks");
    for name in read_names(&locks)? {
        let path = locks.join(&name);
        if let Ok(file) = File::open(&path) {
            if try_flock(&file, libc::LOCK_EX) {
                let _ = fs::remove_file(&path);
            }
        }
    }
    Ok(())
}

/// Removes the cached image whose digest is `digest` or starts with it (a unique
/// prefix); refuses if a running launch uses it. Returns the full digest.
pub(super) fn remove(store: &Store, digest: &str) -> Result<String, CacheError> {
    let matches: Vec<String> = read_names(&store.dir.join("images"))?
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| is_sha256_hex(n) && !digest.is_empty() && n.starts_with(digest))
        .collect();
    match matches.as_slice() {
        [] => Err(CacheError::NotCached(digest.to_string())),
        [full] => remove_image(store, full).map(|()| full.clone()),
        _ => Err(CacheError::Ambiguous(digest.to_string())),
    }
}

/// Removes the image `digest` unless a running launch uses it.
fn remove_image(store: &Store, digest: &str) -> Result<(), CacheError> {
    let entry = store.dir.join("images").join(digest);
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
    remove_locked_entry(store, &entry, used)
}

/// Removes the entry `entry` (an image or a layer) whose `used` file the caller holds
/// an exclusive lock on. Out of sight first (one rename, under the lock, so a lease
/// taken meanwhile sees its entry gone), then deleted at leisure; a crash in between
/// leaves an unlocked dir in tmp/ for the next sweep.
fn remove_locked_entry(store: &Store, entry: &Path, used: File) -> Result<(), CacheError> {
    let trash = store
        .dir
        .join("tmp")
        .join(format!("removed-{}", unique_suffix()));
    fs::rename(entry, &trash).map_err(io_error(entry))?;
    drop(used);
    unpack::remove_tree(&trash).map_err(io_error(&trash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prune_report_is_one_line() {
        let report = PruneReport {
            removed: vec!["a".into(), "b".into()],
            freed: 4096,
            in_use: 1,
            stale: 0,
        };
        assert_eq!(
            report.to_string(),
            "removed 2 image(s), 4096 bytes; 1 in use kept; 0 stale leftover(s) removed"
        );
    }
}
