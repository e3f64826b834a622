//! The directory output: the image written as a tree in place, owners, modes and
//! mtimes set as a tar would give them.
use super::{
    create_new, open_source, output_error, source_failure, ArchiveError, EntryKind, ImageEntry,
    WriteOptions, WriteSummary,
};
use crate::partial::PartialOutput;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes the image as a directory tree. Owners are set to root when running as root
/// (an unprivileged user cannot give files away); directory modes and all mtimes are
/// set last, deepest first, so that creating children neither needs write permission
/// the final mode lacks nor bumps a parent's mtime.
pub(super) fn write_directory(
    entries: &[&ImageEntry],
    root: &Path,
    options: &WriteOptions,
) -> Result<WriteSummary, ArchiveError> {
    let made = options.made;
    make_root(root, made)?;
    let as_root = rustix::process::geteuid().is_root();
    let mut content_bytes = 0;
    for entry in entries {
        let dest = root.join(&entry.path);
        let dest_err = output_error(&dest);
        match &entry.kind {
            EntryKind::Dir => made
                .create(&dest, |p| fs::create_dir(p))
                .map_err(&dest_err)?,
            EntryKind::File { source, size } => {
                let mut reader = open_source(source, *size)?;
                let mut file = made.create(&dest, create_new).map_err(&dest_err)?;
                copy_source(&mut reader, &mut file, source, &dest)?;
                content_bytes += size;
                if let Some(progress) = options.progress {
                    progress(*size);
                }
            }
            EntryKind::Bytes(bytes) => {
                let mut file = made.create(&dest, create_new).map_err(&dest_err)?;
                file.write_all(bytes).map_err(&dest_err)?;
                content_bytes += bytes.len() as u64;
            }
            EntryKind::Symlink { target } => made
                .create(&dest, |p| std::os::unix::fs::symlink(target, p))
                .map_err(&dest_err)?,
            EntryKind::Hardlink { target } => made
                .create(&dest, |p| fs::hard_link(root.join(target), p))
                .map_err(&dest_err)?,
        }
        // A hard link shares its target's inode, already owned by root; chowning it
        // again would clear the setuid bit set on that inode.
        let is_hardlink = matches!(entry.kind, EntryKind::Hardlink { .. });
        if as_root && !is_hardlink {
            std::os::unix::fs::lchown(&dest, Some(0), Some(0)).map_err(&dest_err)?;
        }
        let is_file = matches!(entry.kind, EntryKind::File { .. } | EntryKind::Bytes(_));
        if is_file {
            // After chown: changing the owner clears setuid/setgid bits.
            fs::set_permissions(&dest, fs::Permissions::from_mode(entry.mode & 0o7777))
                .map_err(&dest_err)?;
        }
    }
    for entry in entries.iter().rev() {
        let dest = root.join(&entry.path);
        if matches!(entry.kind, EntryKind::Dir) {
            fs::set_permissions(&dest, fs::Permissions::from_mode(entry.mode & 0o7777))
                .map_err(output_error(&dest))?;
        }
        set_times(&dest, options.mtime as i64, 0).map_err(output_error(&dest))?;
    }
    made.complete(|| Ok(())).map_err(output_error(root))?;
    Ok(WriteSummary {
        entries: entries.len(),
        content_bytes,
    })
}

/// Copies a source file into the directory image, telling a source that changed from
/// an output that failed.
fn copy_source(
    reader: &mut impl Read,
    out: &mut File,
    source: &Path,
    dest: &Path,
) -> Result<(), ArchiveError> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(source_failure(source, e)),
        };
        out.write_all(&buf[..n]).map_err(output_error(dest))?;
    }
}

fn is_absent(path: &Path) -> bool {
    let found = fs::symlink_metadata(path);
    matches!(found, Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// Readies the directory an image is written into: an existing one must be empty (it is
/// the user's, and stays whatever happens); a new one is made with the parents it lacks,
/// each recorded in `made`.
fn make_root(root: &Path, made: &PartialOutput) -> Result<(), ArchiveError> {
    let out_err = output_error(root);
    match fs::read_dir(root).map(|mut listing| listing.next().is_none()) {
        Ok(true) => return Ok(()),
        Ok(false) => {
            return Err(ArchiveError::DirectoryNotEmpty {
                path: root.to_path_buf(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(out_err(e)),
    }
    let mut missing = vec![root];
    let mut dir = root;
    while let Some(parent) = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && is_absent(p))
    {
        missing.push(parent);
        dir = parent;
    }
    for dir in missing.into_iter().rev() {
        match made.create(dir, |p| fs::create_dir(p)) {
            // A parent another process made meanwhile is theirs, and fine.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir != root => {}
            result => result.map_err(&out_err)?,
        }
    }
    Ok(())
}

/// Sets atime and mtime of `path` itself (a symlink is not followed) to `secs.nanos`:
/// for trees written in place (a directory image, a stacked OCI image).
pub fn set_times(path: &Path, secs: i64, nanos: i64) -> io::Result<()> {
    let time = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    };
    let times = rustix::fs::Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}
