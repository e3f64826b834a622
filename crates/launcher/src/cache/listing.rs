//! What `launch cache ls` shows: one [`CacheEntry`] per cached image, each a row of a
//! table under [`CacheEntry::TABLE_HEADER`], and the total ([`CacheTable`]).

use std::fmt;
use std::fs::File;
use std::path::Path;
use std::time::SystemTime;

use mkroot_common::digest::is_sha256_hex;

use super::age::human_age;
use super::error::CacheError;
use super::store::{read_info, read_names, try_flock, Store};

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

/// The cached images, most recently used first.
pub(super) fn list(store: &Store) -> Result<Vec<CacheEntry>, CacheError> {
    let images = store.dir.join("images");
    let mut entries = Vec::new();
    for digest in read_names(&images)? {
        let Some(digest) = digest.to_str().filter(|d| is_sha256_hex(d)) else {
            continue;
        };
        let entry = images.join(digest);
        let info = read_info(&entry);
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

impl CacheEntry {
    /// The header of the table that [`CacheEntry`]'s rows make (`launch cache ls`).
    pub const TABLE_HEADER: &'static str =
        "DIGEST                  BYTES  ENTRIES  IN USE   LAST USED  SOURCE";
}

/// One row of `launch cache ls`, under [`CacheEntry::TABLE_HEADER`].
impl fmt::Display for CacheEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// All that `launch cache ls` prints: the header, a row per entry and the total, of the
/// cache at `dir`.
pub struct CacheTable<'a> {
    pub entries: &'a [CacheEntry],
    pub dir: &'a Path,
}

impl fmt::Display for CacheTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", CacheEntry::TABLE_HEADER)?;
        for entry in self.entries {
            writeln!(f, "{entry}")?;
        }
        let total: u64 = self.entries.iter().map(|e| e.size).sum();
        writeln!(
            f,
            "total: {} image(s), {total} bytes in {}",
            self.entries.len(),
            self.dir.display()
        )
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
    fn cache_ls_is_the_header_the_rows_and_the_total() {
        let entry = |size| CacheEntry {
            digest: "cd".repeat(32),
            size,
            entries: 1,
            last_used: SystemTime::now(),
            in_use: false,
            source: None,
        };
        let entries = [entry(1000), entry(234)];
        let table = CacheTable {
            entries: &entries,
            dir: Path::new("/var/cache/mkroot-launch"),
        }
        .to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], CacheEntry::TABLE_HEADER);
        assert_eq!(lines[1], entries[0].to_string());
        assert_eq!(
            lines[3],
            "total: 2 image(s), 1234 bytes in /var/cache/mkroot-launch"
        );
        assert_eq!(lines.len(), 4);
    }
}
