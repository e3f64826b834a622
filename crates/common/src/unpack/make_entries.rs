//! Creating each kind of entry inside the root: regular files (inline or handed to the
//! writer threads), directories, symlinks and hard links, with the entry's owner, and
//! never through something an earlier entry left at the name.

use std::ffi::CStr;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use super::unpacker::{DeferredDir, ParentDir, Unpacker};
use super::*;

impl Unpacker<'_> {
    /// The file's final mode: the archive's, setuid/setgid stripped unless kept.
    pub(super) fn file_mode(&mut self, meta: &EntryMeta) -> u32 {
        let mut mode = meta.mode & 0o7777;
        if !self.options.keep_setid && mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
            mode &= !(libc::S_ISUID | libc::S_ISGID);
            self.report.stripped_setid += 1;
        }
        mode
    }

    pub(super) fn write_file(
        &mut self,
        entry: &mut tar::Entry<'_, PipedReader>,
        meta: &EntryMeta,
        parts: &[&[u8]],
        name: &Option<EntryName>,
    ) -> Result<(), UnpackError> {
        let dir = self.parent_dir(meta, parts)?;
        let cname = leaf_name(meta, parts)?;
        let mode = self.file_mode(meta);
        let owner = self.owner(meta)?;
        if meta.size <= MAX_QUEUED_FILE {
            let mut data = Vec::with_capacity(meta.size as usize);
            entry
                .read_to_end(&mut data)
                .map_err(|e| corrupt(name.clone(), e))?;
            if data.len() as u64 != meta.size {
                return Err(corrupt_msg(
                    name.clone(),
                    "the archive ends inside this entry's data",
                ));
            }
            self.writers.dispatch(
                FileJob {
                    seq: self.seq,
                    dir: dir.fd.clone(),
                    dir_id: dir.id,
                    name: cname,
                    data,
                    mode,
                    owner,
                    mtime: meta.mtime,
                    entry: meta.path.clone(),
                },
                parts.join(&b'/'),
            );
            return Ok(());
        }
        self.wait_for_name(&dir, &cname)?;
        let fd = dir.fd.as_fd();
        let mut file = match root_dir::create_file(fd, &cname) {
            Ok(file) => file,
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                self.replace(fd, &cname, &meta.path)?;
                root_dir::create_file(fd, &cname).map_err(|e| write_error(meta, e))?
            }
            Err(err) => return Err(write_error(meta, err)),
        };
        let mut written: u64 = 0;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(corrupt(name.clone(), err)),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| write_error(meta, e))?;
            written += n as u64;
        }
        if written != meta.size {
            return Err(corrupt_msg(
                name.clone(),
                "the archive ends inside this entry's data",
            ));
        }
        writers::finish_file(&file, owner, mode, meta.mtime).map_err(|e| write_error(meta, e))
    }

    pub(super) fn make_directory(
        &mut self,
        meta: &EntryMeta,
        parts: &[&[u8]],
    ) -> Result<(), UnpackError> {
        if !parts.is_empty() {
            let dir = self.parent_dir(meta, parts)?;
            let cname = leaf_name(meta, parts)?;
            self.wait_for_name(&dir, &cname)?;
            let fd = dir.fd.as_fd();
            match root_dir::make_dir(fd, &cname) {
                Ok(()) => {}
                Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                    let existing =
                        root_dir::stat_at(fd, &cname).map_err(|e| write_error(meta, e))?;
                    if !root_dir::is_dir(&existing) {
                        self.replace(fd, &cname, &meta.path)?;
                        root_dir::make_dir(fd, &cname).map_err(|e| write_error(meta, e))?;
                    }
                }
                Err(err) => return Err(write_error(meta, err)),
            }
            self.chown_at(meta, fd, &cname)?;
        }
        self.dirs.push(DeferredDir {
            path: parts.join(&b'/'),
            mode: meta.mode & 0o7777,
            mtime: meta.mtime,
        });
        Ok(())
    }

    pub(super) fn make_symlink(
        &mut self,
        meta: &EntryMeta,
        parts: &[&[u8]],
    ) -> Result<(), UnpackError> {
        let target = match &meta.link {
            Some(target) if !target.is_empty() => {
                root_dir::c_name(target).map_err(|e| write_error(meta, e))?
            }
            _ => return Err(bad_entry(meta, "symlink without a target")),
        };
        let dir = self.parent_dir(meta, parts)?;
        let cname = leaf_name(meta, parts)?;
        self.wait_for_name(&dir, &cname)?;
        let fd = dir.fd.as_fd();
        match root_dir::make_symlink(fd, &cname, &target) {
            Ok(()) => {}
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                self.replace(fd, &cname, &meta.path)?;
                root_dir::make_symlink(fd, &cname, &target).map_err(|e| write_error(meta, e))?;
            }
            Err(err) => return Err(write_error(meta, err)),
        }
        self.chown_at(meta, fd, &cname)?;
        root_dir::set_mtime_at(fd, &cname, meta.mtime.0, meta.mtime.1)
            .map_err(|e| write_error(meta, e))
    }

    pub(super) fn make_hardlink(
        &mut self,
        meta: &EntryMeta,
        parts: &[&[u8]],
    ) -> Result<(), UnpackError> {
        let link = meta.link.clone().unwrap_or_default();
        let target_parts = clean_components(&link);
        if target_parts.is_empty() {
            return Err(bad_entry(meta, "hard link without a target"));
        }
        if target_parts == parts {
            return Ok(());
        }
        let not_in_image = || {
            bad_entry(
                meta,
                &format!(
                    "hard link to {}, which is not an earlier entry of the image",
                    EntryName(link.clone())
                ),
            )
        };
        // The target is looked up inside the root like any other name: a link can only
        // share an inode with something this unpack wrote, never with a host file. A
        // file still with the writers above it may yet replace a directory on the way.
        self.wait_for_files_above(&target_parts[..target_parts.len() - 1])?;
        let target_dir = match self
            .root
            .open_dir(&target_parts[..target_parts.len() - 1], false)
        {
            Ok(fd) => fd,
            Err(err) if matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                return Err(not_in_image())
            }
            Err(err) => return Err(write_error(meta, err)),
        };
        let target_name = root_dir::c_name(target_parts[target_parts.len() - 1])
            .map_err(|e| write_error(meta, e))?;
        let target_st = root_dir::fstat(&target_dir).map_err(|e| write_error(meta, e))?;
        let target_parent = ParentDir {
            fd: Arc::new(target_dir),
            id: (target_st.st_dev, target_st.st_ino),
        };
        // The target may still be with the writer threads.
        self.wait_for_name(&target_parent, &target_name)?;
        let dir = self.parent_dir(meta, parts)?;
        let cname = leaf_name(meta, parts)?;
        self.wait_for_name(&dir, &cname)?;
        let (target_fd, fd) = (target_parent.fd.as_fd(), dir.fd.as_fd());
        let link_now = || root_dir::make_hardlink(target_fd, &target_name, fd, &cname);
        match link_now() {
            Ok(()) => Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Err(not_in_image()),
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                let existing = root_dir::stat_at(fd, &cname);
                let source = root_dir::stat_at(target_fd, &target_name);
                if let (Ok(a), Ok(b)) = (existing, source) {
                    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
                        return Ok(());
                    }
                }
                self.replace(fd, &cname, &meta.path)?;
                link_now().map_err(|e| write_error(meta, e))
            }
            Err(err) => Err(write_error(meta, err)),
        }
    }

    /// The owner to give an entry: the archive's when that is the policy and it differs
    /// from ours, else `None` (no chown).
    pub(super) fn owner(&self, meta: &EntryMeta) -> Result<Option<(u32, u32)>, UnpackError> {
        if !self.options.preserve_owner {
            return Ok(None);
        }
        let (Ok(uid), Ok(gid)) = (u32::try_from(meta.uid), u32::try_from(meta.gid)) else {
            return Err(bad_entry(meta, "owner uid/gid out of range"));
        };
        Ok(((uid, gid) != (self.euid, self.egid)).then_some((uid, gid)))
    }

    /// Gives `name` in `dir` (not followed if a symlink) the entry's owner.
    pub(super) fn chown_at(
        &self,
        meta: &EntryMeta,
        dir: BorrowedFd<'_>,
        name: &CStr,
    ) -> Result<(), UnpackError> {
        if let Some((uid, gid)) = self.owner(meta)? {
            let (uid, gid) = (
                rustix::fs::Uid::from_raw(uid),
                rustix::fs::Gid::from_raw(gid),
            );
            let flags = rustix::fs::AtFlags::SYMLINK_NOFOLLOW;
            rustix::fs::chownat(dir, name, Some(uid), Some(gid), flags)
                .map_err(|e| write_error(meta, e.into()))?;
        }
        Ok(())
    }
}
