//! The user namespace: who root inside the container is outside it.
//!
//! Rootless, the caller's own uid and gid become root inside (the only mapping an
//! unprivileged process may write). As root with `--userns`, root inside becomes an
//! unprivileged range outside, so a process escaping the container owns nothing.
//!
//! That range is launch's own, recorded in /etc/subuid and /etc/subgid under
//! [`RANGE_OWNER`] as docker records `dockremap`'s: a range `useradd` hands out is some
//! user's, and a container mapped onto it would make that user the owner of the
//! container's files. On first use launch picks the lowest 65536 ids from 100000 that no
//! entry holds and appends its line; a recorded range that overlaps another entry is
//! refused.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::LaunchError;
use crate::file_lock;

/// One contiguous mapping of ids: `inside..inside+count` is `outside..outside+count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The uid and gid maps written for a container's user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapping {
    pub uids: IdRange,
    pub gids: IdRange,
}

/// The name launch's range is recorded under in /etc/subuid and /etc/subgid.
pub const RANGE_OWNER: &str = "mkroot-launch";
/// The ids root inside gets: a whole 16-bit id space, as images expect (`nobody` is 65534).
const RANGE_SIZE: u64 = 65_536;
/// Where a new range may start: below are the system's and the first users' own ids.
const FIRST_ID: u64 = 100_000;

impl IdMapping {
    /// The caller mapped to root: the one mapping an unprivileged process may write.
    pub fn caller_as_root() -> IdMapping {
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        IdMapping {
            uids: IdRange {
                inside: 0,
                outside: uid,
                count: 1,
            },
            gids: IdRange {
                inside: 0,
                outside: gid,
                count: 1,
            },
        }
    }

    /// Root inside mapped to launch's own subordinate range (see the module), recorded
    /// first if /etc/subuid or /etc/subgid lacks it.
    pub fn subordinate_range() -> Result<IdMapping, LaunchError> {
        IdMapping::subordinate_range_in(Path::new("/etc/subuid"), Path::new("/etc/subgid"))
    }

    /// [`IdMapping::subordinate_range`] with the two files named.
    pub fn subordinate_range_in(subuid: &Path, subgid: &Path) -> Result<IdMapping, LaunchError> {
        let uids = own_range(subuid, None)?;
        let gids = own_range(subgid, Some(uids.outside as u64))?;
        Ok(IdMapping { uids, gids })
    }

    /// Writes the maps of the child `pid`. `setgroups` is denied first: an unprivileged
    /// caller must do so to write a gid map, and it stops a process inside from dropping
    /// a group that denies it access to a file.
    pub fn write_for(&self, pid: libc::pid_t) -> Result<(), LaunchError> {
        let write = |file: &str, content: String| {
            let path = format!("/proc/{pid}/{file}");
            fs::write(&path, content).map_err(|e| LaunchError::setup(format!("writing {path}"), e))
        };
        write("setgroups", "deny".to_string())?;
        write("uid_map", map_line(self.uids))?;
        write("gid_map", map_line(self.gids))
    }
}

/// In the container, once the maps are written: takes uid and gid 0 of the new
/// namespace. Rootless the caller is that already; as root with `--userns` the process
/// is still the host's root (unmapped inside) until it does this.
pub fn become_root_inside() -> Result<(), LaunchError> {
    // SAFETY: plain syscalls.
    unsafe {
        if libc::setresgid(0, 0, 0) < 0 || libc::setresuid(0, 0, 0) < 0 {
            return Err(LaunchError::setup(
                "becoming root in the user namespace",
                io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

fn map_line(range: IdRange) -> String {
    format!("{} {} {}\n", range.inside, range.outside, range.count)
}

/// One line of /etc/subuid or /etc/subgid: `owner:start:count`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SubordinateEntry {
    owner: String,
    start: u64,
    count: u64,
}

impl SubordinateEntry {
    fn end(&self) -> u64 {
        self.start + self.count
    }

    fn overlaps(&self, start: u64, count: u64) -> bool {
        self.start < start + count && start < self.end()
    }

    /// `100000-165535`.
    fn span(&self) -> String {
        format!("{}-{}", self.start, self.end().saturating_sub(1))
    }
}

/// The entries of a subordinate id file; lines that are not `name:start:count` (blank
/// lines, comments) hold no range.
fn parse_entries(text: &str) -> Vec<SubordinateEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let owner = fields.next()?.to_string();
            let start = fields.next()?.parse().ok()?;
            let count = fields.next()?.parse().ok()?;
            Some(SubordinateEntry {
                owner,
                start,
                count,
            })
        })
        .collect()
}

/// The lowest start from [`FIRST_ID`] of [`RANGE_SIZE`] ids no entry holds, `preferred`
/// first when it is free (the same ids for users and groups, as useradd gives).
fn free_start(entries: &[SubordinateEntry], preferred: Option<u64>) -> Option<u64> {
    let free = |start: u64| {
        start >= FIRST_ID
            && start + RANGE_SIZE <= u64::from(u32::MAX)
            && !entries.iter().any(|e| e.overlaps(start, RANGE_SIZE))
    };
    let after_each = entries.iter().map(SubordinateEntry::end);
    let mut candidates: Vec<u64> = std::iter::once(FIRST_ID).chain(after_each).collect();
    candidates.sort_unstable();
    preferred
        .into_iter()
        .chain(candidates)
        .find(|&start| free(start))
}

/// Launch's range in the subordinate id file `path`: its recorded entry, or a free range
/// appended under [`RANGE_OWNER`]. Runs under the file's exclusive flock, so two first
/// launches record one range.
fn own_range(path: &Path, preferred: Option<u64>) -> Result<IdRange, LaunchError> {
    let failed = |what: &str, e: io::Error| {
        LaunchError::setup(format!("--userns: {what} {}", path.display()), e)
    };
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| failed("opening", e))?;
    file_lock::lock(&file, libc::LOCK_EX).map_err(|e| failed("locking", e))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| failed("reading", e))?;
    let entries = parse_entries(&text);
    let (own, others): (Vec<_>, Vec<_>) = entries
        .iter()
        .cloned()
        .partition(|e| e.owner == RANGE_OWNER);
    let range = match own.first() {
        Some(own) => {
            check_own_entry(path, own, &others)?;
            own.clone()
        }
        None => record_new_range(&mut file, path, &text, &entries, preferred)?,
    };
    Ok(IdRange {
        inside: 0,
        outside: range.start as u32,
        count: range.count as u32,
    })
}

/// A recorded range must map nobody's ids but launch's, and never root.
fn check_own_entry(
    path: &Path,
    own: &SubordinateEntry,
    others: &[SubordinateEntry],
) -> Result<(), LaunchError> {
    let fix = format!("give {RANGE_OWNER} a range of its own there, or remove its line and launch picks a free one");
    if own.start == 0 || own.count == 0 || own.end() > u64::from(u32::MAX) {
        return Err(LaunchError::Invalid(format!(
            "--userns: {RANGE_OWNER}'s range {} in {} is not an unprivileged range; {fix}",
            own.span(),
            path.display()
        )));
    }
    match others.iter().find(|e| e.overlaps(own.start, own.count)) {
        Some(other) => Err(LaunchError::Invalid(format!(
            "--userns: {RANGE_OWNER}'s range {} in {} overlaps {}'s ({}); {fix}",
            own.span(),
            path.display(),
            other.owner,
            other.span()
        ))),
        None => Ok(()),
    }
}

/// Appends launch's line for a free range to `file` (whose content is `text`).
fn record_new_range(
    file: &mut File,
    path: &Path,
    text: &str,
    entries: &[SubordinateEntry],
    preferred: Option<u64>,
) -> Result<SubordinateEntry, LaunchError> {
    let start = free_start(entries, preferred).ok_or_else(|| {
        LaunchError::Invalid(format!(
            "--userns: {} has no {RANGE_SIZE} free ids above {FIRST_ID} for {RANGE_OWNER}; add a line {RANGE_OWNER}:START:{RANGE_SIZE} yourself",
            path.display()
        ))
    })?;
    // A file whose last line lacks its newline would join it to ours.
    let gap = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let line = format!("{gap}{RANGE_OWNER}:{start}:{RANGE_SIZE}\n");
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            LaunchError::setup(
                format!("--userns: recording launch's range in {}", path.display()),
                e,
            )
        })?;
    eprintln!(
        "launch: --userns: recorded launch's own id range in {}: {RANGE_OWNER}:{start}:{RANGE_SIZE}",
        path.display()
    );
    Ok(SubordinateEntry {
        owner: RANGE_OWNER.to_string(),
        start,
        count: RANGE_SIZE,
    })
}

/// Explains a failed clone with CLONE_NEWUSER: when the kernel refused and its
/// settings forbid unprivileged user namespaces, says which one; otherwise passes the
/// error on.
pub fn explain_clone_failure(error: LaunchError) -> LaunchError {
    let refused = matches!(&error, LaunchError::Setup { source, .. }
        if matches!(source.raw_os_error(), Some(libc::EPERM | libc::ENOSPC | libc::EUSERS)));
    let forbids = |path: &str, forbidden: &str| {
        fs::read_to_string(path)
            .map(|v| v.trim() == forbidden)
            .unwrap_or(false)
    };
    let setting = if !refused {
        return error;
    } else if forbids("/proc/sys/kernel/unprivileged_userns_clone", "0") {
        "kernel.unprivileged_userns_clone = 0"
    } else if forbids("/proc/sys/user/max_user_namespaces", "0") {
        "user.max_user_namespaces = 0"
    } else if forbids(
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1",
    ) {
        "kernel.apparmor_restrict_unprivileged_userns = 1"
    } else {
        return error;
    };
    LaunchError::UserNamespacesForbidden {
        setting: setting.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_lines_are_inside_outside_count() {
        let range = IdRange {
            inside: 0,
            outside: 1000,
            count: 1,
        };
        assert_eq!(map_line(range), "0 1000 1\n");
    }

    fn files(
        subuid: &str,
        subgid: &str,
    ) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (uid, gid) = (dir.path().join("subuid"), dir.path().join("subgid"));
        fs::write(&uid, subuid).unwrap();
        fs::write(&gid, subgid).unwrap();
        (dir, uid, gid)
    }

    #[test]
    fn a_new_range_avoids_every_entry_and_is_recorded_once() {
        // alice has what useradd gives first; bob's line lacks its newline.
        let (_dir, uid, gid) = files(
            "alice:100000:65536\nbob:165536:65536",
            "alice:100000:65536\n",
        );
        let first = IdMapping::subordinate_range_in(&uid, &gid).unwrap();
        assert_eq!(first.uids.outside, 231_072);
        assert_eq!(
            first.gids.outside, 231_072,
            "the same ids for groups, free there too"
        );
        assert_eq!(first.uids.count, 65_536);
        assert_eq!(
            fs::read_to_string(&uid).unwrap(),
            "alice:100000:65536\nbob:165536:65536\nmkroot-launch:231072:65536\n"
        );
        let again = IdMapping::subordinate_range_in(&uid, &gid).unwrap();
        assert_eq!(again, first);
        assert_eq!(
            fs::read_to_string(&gid)
                .unwrap()
                .matches(RANGE_OWNER)
                .count(),
            1
        );
    }

    #[test]
    fn an_empty_or_missing_file_gives_the_first_range() {
        let (dir, uid, _gid) = files("", "");
        let gid = dir.path().join("missing");
        let mapping = IdMapping::subordinate_range_in(&uid, &gid).unwrap();
        assert_eq!(
            (mapping.uids.outside, mapping.gids.outside),
            (100_000, 100_000)
        );
        assert!(gid.exists());
    }

    #[test]
    fn a_recorded_range_overlapping_another_entry_is_refused() {
        let (_dir, uid, gid) = files(
            "alice:100000:65536\nmkroot-launch:150000:65536\n",
            "mkroot-launch:300000:65536\n",
        );
        let err = IdMapping::subordinate_range_in(&uid, &gid)
            .unwrap_err()
            .to_string();
        assert!(err.contains("overlaps alice's (100000-165535)"), "{err}");
        let (_dir, uid, gid) = files("mkroot-launch:0:65536\n", "");
        let err = IdMapping::subordinate_range_in(&uid, &gid)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an unprivileged range"), "{err}");
    }

    #[test]
    fn a_gap_between_entries_is_used_when_it_is_large_enough() {
        let entries = parse_entries("a:100000:10\nb:300000:65536\n# comment\n");
        assert_eq!(free_start(&entries, None), Some(100_010));
        assert_eq!(free_start(&entries, Some(300_000)), Some(100_010));
        assert_eq!(free_start(&entries, Some(500_000)), Some(500_000));
    }
}
