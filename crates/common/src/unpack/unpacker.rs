//! The unpack loop: each entry of the stream, checked and created inside the root, with
//! the open parent directories kept, regular files handed to the writer threads, and
//! directories' modes and mtimes applied last.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use tar::EntryType;

use super::*;

/// An open directory entries are created in, and its identity (device, inode).
#[derive(Clone)]
pub(super) struct ParentDir {
    pub(super) fd: Arc<OwnedFd>,
    pub(super) id: (u64, u64),
}

/// A directory whose mode and mtime are applied once everything is unpacked.
pub(super) struct DeferredDir {
    pub(super) path: Vec<u8>,
    pub(super) mode: u32,
    pub(super) mtime: (i64, u32),
}

pub(super) struct Unpacker<'o> {
    pub(super) root: root_dir::RootDir,
    pub(super) options: &'o UnpackOptions,
    pub(super) report: UnpackReport,
    /// Open parent directories by cleaned path; cleared whenever an entry replaces another,
    /// since a removed directory's fd would point at a deleted tree.
    pub(super) parents: HashMap<Vec<u8>, ParentDir>,
    pub(super) dirs: Vec<DeferredDir>,
    pub(super) writers: WriterPool,
    /// Entries seen so far: the archive order of queued files.
    pub(super) seq: u64,
    pub(super) buf: Vec<u8>,
    pub(super) euid: u32,
    pub(super) egid: u32,
    /// An entry for [`MANIFEST_PATH`] was unpacked.
    pub(super) seen_manifest: bool,
}

pub(super) const MAX_CACHED_PARENTS: usize = 256;

impl<'o> Unpacker<'o> {
    pub(super) fn new(
        root: root_dir::RootDir,
        options: &'o UnpackOptions,
        writers: WriterPool,
    ) -> Self {
        Unpacker {
            root,
            options,
            report: UnpackReport::default(),
            parents: HashMap::new(),
            dirs: Vec::new(),
            writers,
            seq: 0,
            buf: vec![0; COPY_BUFFER],
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            seen_manifest: false,
        }
    }

    pub(super) fn run(&mut self, reader: PipedReader) -> Result<(), UnpackError> {
        let source_failed = reader.source_failed.clone();
        let mut archive = tar::Archive::new(reader);
        let mut headers: u64 = 0;
        let mut last: Option<EntryName> = None;
        {
            let entries = archive.entries().map_err(|e| corrupt(None, e))?;
            // Raw mode: extension headers come to us, so their size can be capped here
            // (the tar crate would read a GNU long name of any size into memory).
            let mut entries = entries.raw(true);
            let mut ext = Extensions::default();
            loop {
                let mut entry = match entries.next() {
                    None => break,
                    Some(Ok(entry)) => entry,
                    // A bad first header means this is no tarball; a failing gzip stream
                    // means a broken one.
                    Some(Err(_)) if headers == 0 && !source_failed.get() => {
                        return Err(UnpackError::NotTar)
                    }
                    Some(Err(err)) => return Err(corrupt(last, err)),
                };
                headers += 1;
                if headers > self.options.max_entries {
                    return Err(UnpackError::TooManyEntries {
                        limit: self.options.max_entries,
                    });
                }
                if ext.take(&mut entry)? {
                    continue;
                }
                let meta =
                    EntryMeta::read(&entry, std::mem::take(&mut ext)).map_err(|problem| {
                        UnpackError::BadEntry {
                            entry: EntryName(entry.header().path_bytes().into_owned()),
                            problem,
                        }
                    })?;
                last = Some(EntryName(meta.path.clone()));
                self.unpack_entry(&mut entry, &meta, &last)?;
            }
            if !ext.is_empty() {
                return Err(corrupt_msg(last, "extension header with no entry after it"));
            }
        }
        check_stream_end(archive.into_inner(), headers, last)?;
        self.settle_writers()?;
        self.apply_dir_metadata();
        Ok(())
    }

    pub(super) fn charge(&mut self, size: u64) -> Result<(), UnpackError> {
        let total = self.report.bytes.saturating_add(size);
        if total > self.options.max_bytes {
            return Err(UnpackError::TooLarge {
                limit: self.options.max_bytes,
            });
        }
        self.report.bytes = total;
        Ok(())
    }

    pub(super) fn unpack_entry(
        &mut self,
        entry: &mut tar::Entry<'_, PipedReader>,
        meta: &EntryMeta,
        name: &Option<EntryName>,
    ) -> Result<(), UnpackError> {
        self.report.entries += 1;
        self.seq += 1;
        // Data counts against the limit whether it is written or skipped: it is
        // decompressed either way.
        self.charge(meta.size)?;
        let bad = |problem: &str| UnpackError::BadEntry {
            entry: EntryName(meta.path.clone()),
            problem: problem.to_string(),
        };
        let parts = clean_components(&meta.path);
        self.check_manifest_entry(meta, &parts)?;
        // Before POSIX, a directory was a regular entry whose name ends in '/'.
        let is_old_style_dir = meta.kind == EntryType::Regular && meta.path.ends_with(b"/");
        match meta.kind {
            EntryType::Directory => self.make_directory(meta, &parts),
            _ if is_old_style_dir => self.make_directory(meta, &parts),
            EntryType::Char | EntryType::Block => {
                self.report.skipped_devices += 1;
                Ok(())
            }
            EntryType::Fifo => {
                self.report.skipped_fifos += 1;
                Ok(())
            }
            EntryType::GNUSparse => Err(bad(
                "GNU sparse file: not supported (re-create the archive without --sparse)",
            )),
            EntryType::Regular | EntryType::Continuous | EntryType::Symlink | EntryType::Link
                if parts.is_empty() =>
            {
                Err(bad("a file entry names the image root itself"))
            }
            EntryType::Regular | EntryType::Continuous => {
                self.write_file(entry, meta, &parts, name)
            }
            EntryType::Symlink => self.make_symlink(meta, &parts),
            EntryType::Link => self.make_hardlink(meta, &parts),
            _ => {
                self.report.skipped_other += 1;
                Ok(())
            }
        }
    }

    /// mkroot's manifest must be one entry, in a `.mkroot` that is a directory.
    pub(super) fn check_manifest_entry(
        &mut self,
        meta: &EntryMeta,
        parts: &[&[u8]],
    ) -> Result<(), UnpackError> {
        let manifest: Vec<&[u8]> = MANIFEST_PATH.split('/').map(str::as_bytes).collect();
        if parts.first() != Some(&manifest[0]) {
            return Ok(());
        }
        let bad = |problem: String| UnpackError::BadEntry {
            entry: EntryName(meta.path.clone()),
            problem,
        };
        if parts.len() == 1 && meta.kind != EntryType::Directory && !meta.path.ends_with(b"/") {
            return Err(bad(format!(
                "{} is where mkroot keeps the image's manifest, and here it is not a directory; the image was tampered with",
                manifest[0].escape_ascii()
            )));
        }
        if parts == manifest.as_slice() {
            if self.seen_manifest {
                return Err(bad(format!(
                    "a second entry for {MANIFEST_PATH}: one of them shadows the other; the image was tampered with"
                )));
            }
            self.seen_manifest = true;
        }
        Ok(())
    }

    /// The open parent directory of `parts`' last component, creating missing ones.
    pub(super) fn parent_dir(
        &mut self,
        meta: &EntryMeta,
        parts: &[&[u8]],
    ) -> Result<ParentDir, UnpackError> {
        let parent = &parts[..parts.len() - 1];
        self.wait_for_files_above(parent)?;
        let key = parent.join(&b'/');
        if let Some(dir) = self.parents.get(&key) {
            return Ok(dir.clone());
        }
        let fd = self
            .root
            .open_dir(parent, true)
            .map_err(|source| write_error(meta, source))?;
        let st = root_dir::fstat(&fd).map_err(|source| write_error(meta, source))?;
        let dir = ParentDir {
            fd: Arc::new(fd),
            id: (st.st_dev, st.st_ino),
        };
        if self.parents.len() >= MAX_CACHED_PARENTS {
            self.parents.clear();
        }
        self.parents.insert(key, dir.clone());
        Ok(dir)
    }

    /// Waits for the writer threads if a file they hold stands at the directory `dir` or
    /// above it: that file may yet replace a directory this entry would otherwise be
    /// written into (and lost with it), or looked up in.
    pub(super) fn wait_for_files_above(&mut self, dir: &[&[u8]]) -> Result<(), UnpackError> {
        if self.writers.holds_file_at_or_above(dir) {
            self.settle_writers()?;
        }
        Ok(())
    }

    /// Waits for the writer threads if `name` in `dir` is still being written, so this
    /// entry acts on it after the earlier one.
    pub(super) fn wait_for_name(
        &mut self,
        dir: &ParentDir,
        name: &CStr,
    ) -> Result<(), UnpackError> {
        if self
            .writers
            .is_in_flight(&(dir.id.0, dir.id.1, name.to_bytes().to_vec()))
        {
            self.settle_writers()?;
        }
        Ok(())
    }

    /// Waits until the writer threads are idle, then redoes the files they handed back
    /// (a directory was in the way) and reports the first file they failed on.
    pub(super) fn settle_writers(&mut self) -> Result<(), UnpackError> {
        let settled = self.writers.settle();
        if let Some((entry, source)) = settled.failure {
            return Err(UnpackError::Write {
                entry: EntryName(entry),
                source,
            });
        }
        for job in settled.bounced {
            let dir = job.dir.as_fd();
            let fail = |source| UnpackError::Write {
                entry: EntryName(job.entry.clone()),
                source,
            };
            self.replace(dir, &job.name, &job.entry)?;
            let mut file = root_dir::create_file(dir, &job.name).map_err(fail)?;
            file.write_all(&job.data).map_err(fail)?;
            writers::finish_file(&file, job.owner, job.mode, job.mtime).map_err(fail)?;
        }
        Ok(())
    }

    /// Removes what stands at `name` so the entry `entry` can take its place.
    pub(super) fn replace(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        entry: &[u8],
    ) -> Result<(), UnpackError> {
        // A tree being removed must not be written into meanwhile.
        self.settle_writers()?;
        let was_dir = root_dir::stat_at(dir, name)
            .map(|st| root_dir::is_dir(&st))
            .unwrap_or(false);
        root_dir::remove_at(dir, name).map_err(|source| UnpackError::Write {
            entry: EntryName(entry.to_vec()),
            source,
        })?;
        self.parents.clear();
        if was_dir {
            // Directories under the removed tree are gone: forget their deferred metadata.
            let mut prefix = clean_components(entry).join(&b'/');
            prefix.push(b'/');
            self.dirs
                .retain(|d| !d.path.starts_with(&prefix) && d.path != prefix[..prefix.len() - 1]);
        }
        Ok(())
    }

    /// Directory modes and mtimes, deepest first, once nothing more is written into them.
    /// The last entry for a directory wins; one that was replaced meanwhile is skipped.
    pub(super) fn apply_dir_metadata(&mut self) {
        let mut seen = HashSet::new();
        let mut dirs: Vec<DeferredDir> = Vec::new();
        for dir in std::mem::take(&mut self.dirs).into_iter().rev() {
            if seen.insert(dir.path.clone()) {
                dirs.push(dir);
            }
        }
        dirs.sort_by_key(|d| {
            std::cmp::Reverse(
                d.path.iter().filter(|&&b| b == b'/').count() + usize::from(!d.path.is_empty()),
            )
        });
        for dir in dirs {
            let parts = clean_components(&dir.path);
            let fd = if parts.is_empty() {
                root_dir::open_dir_fd(self.root.fd(), c".")
            } else {
                let Ok(parent) = self.root.open_dir(&parts[..parts.len() - 1], false) else {
                    continue;
                };
                let Ok(name) = root_dir::c_name(parts[parts.len() - 1]) else {
                    continue;
                };
                root_dir::open_dir_fd(parent.as_fd(), &name)
            };
            let Ok(fd) = fd else { continue };
            // Best effort: a directory the archive also made unwritable is still complete.
            let _ = rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(dir.mode));
            let _ = root_dir::set_mtime_fd(fd.as_fd(), dir.mtime.0, dir.mtime.1);
        }
    }
}

/// After the last entry: the archive must have ended with its end-of-archive marker, and
/// what follows it is read to the end (bounded), because a gzip stream's CRC and length are
/// only checked at its trailer, and a caller hashing the source needs every byte read.
pub(super) fn check_stream_end(
    mut reader: PipedReader,
    headers: u64,
    last: Option<EntryName>,
) -> Result<(), UnpackError> {
    if headers == 0 && reader.consumed == 0 {
        return Err(UnpackError::Empty);
    }
    if reader.hit_end {
        return Err(corrupt_msg(
            last,
            "the archive ends without its end-of-archive marker",
        ));
    }
    let trailing = io::copy(&mut (&mut reader).take(MAX_TRAILING + 1), &mut io::sink())
        .map_err(|e| corrupt(last.clone(), e))?;
    if trailing > MAX_TRAILING {
        return Err(corrupt_msg(
            last,
            "more than 16 MiB of data after the end-of-archive marker",
        ));
    }
    Ok(())
}
