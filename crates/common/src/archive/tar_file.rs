//! The tar output: a stream of plain ustar headers, written to a temporary file beside
//! the target (gzip-compressed on the way when asked) and renamed into place.
use super::{
    create_new, open_source, output_error, ArchiveError, EntryKind, ImageEntry, WriteOptions,
    WriteSummary,
};
use crate::gzip::ParallelGzip;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub(super) fn temporary_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    PathBuf::from(name)
}

pub(super) fn write_tar_file(
    entries: &[&ImageEntry],
    path: &Path,
    options: &WriteOptions,
    gzip: bool,
) -> Result<WriteSummary, ArchiveError> {
    let partial = temporary_name(path);
    let file = options
        .made
        .create(&partial, create_new)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => ArchiveError::PartialExists {
                path: partial.clone(),
            },
            _ => output_error(path)(e),
        })?;
    let out = BufWriter::with_capacity(256 * 1024, file);
    let summary = if gzip {
        let mut gz = ParallelGzip::new(out);
        let summary = write_tar(entries, &mut gz, path, options)?;
        let out = gz.finish().map_err(output_error(path))?;
        finish_file(out, path)?;
        summary
    } else {
        let mut out = out;
        let summary = write_tar(entries, &mut out, path, options)?;
        finish_file(out, path)?;
        summary
    };
    options
        .made
        .complete(|| fs::rename(&partial, path))
        .map_err(output_error(path))?;
    Ok(summary)
}

/// Flushes the buffered output. No fsync: like tar and gzip, the image is left to the
/// page cache (an fsync costs seconds on a busy disk and buys nothing a rerun does not).
fn finish_file(out: BufWriter<File>, path: &Path) -> Result<(), ArchiveError> {
    out.into_inner()
        .map(drop)
        .map_err(|e| output_error(path)(e.into_error()))
}

/// A plain header: ustar, uid/gid 0, no user or group names, fixed mtime. Names too long
/// for ustar's 100+155 bytes get a GNU long-name record from the tar crate; nothing else
/// gets extension records.
fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode & 0o7777);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(size);
    header
}

/// A planned source file read as exactly its planned size, reporting progress.
struct ProgressReader<'a, R> {
    inner: R,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(progress) = self.progress {
            progress(n as u64);
        }
        Ok(n)
    }
}

pub(super) fn write_tar<W: Write>(
    entries: &[&ImageEntry],
    out: W,
    output: &Path,
    options: &WriteOptions,
) -> Result<WriteSummary, ArchiveError> {
    let mut builder = tar::Builder::new(out);
    let mut content_bytes = 0;
    for entry in entries {
        let mtime = options.mtime;
        match &entry.kind {
            EntryKind::Dir => {
                let mut h = header(tar::EntryType::Directory, entry.mode, 0, mtime);
                builder
                    .append_data(&mut h, format!("{}/", entry.path), io::empty())
                    .map_err(output_error(output))?;
            }
            EntryKind::File { source, size } => {
                let mut h = header(tar::EntryType::Regular, entry.mode, *size, mtime);
                let reader = ProgressReader {
                    inner: open_source(source, *size)?,
                    progress: options.progress,
                };
                // The tar crate pads by what it copied: a short read must be an error
                // (the exact reader makes it one), never a corrupt archive.
                builder
                    .append_data(&mut h, &entry.path, reader)
                    .map_err(|e| match e.kind() {
                        io::ErrorKind::UnexpectedEof => ArchiveError::SourceChanged {
                            path: source.clone(),
                        },
                        _ => output_error(output)(e),
                    })?;
                content_bytes += size;
            }
            EntryKind::Bytes(bytes) => {
                let size = bytes.len() as u64;
                let mut h = header(tar::EntryType::Regular, entry.mode, size, mtime);
                builder
                    .append_data(&mut h, &entry.path, &bytes[..])
                    .map_err(output_error(output))?;
                content_bytes += size;
            }
            EntryKind::Symlink { target } => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0, mtime);
                builder
                    .append_link(&mut h, &entry.path, target)
                    .map_err(output_error(output))?;
            }
            EntryKind::Hardlink { target } => {
                let mut h = header(tar::EntryType::Link, entry.mode, 0, mtime);
                builder
                    .append_link(&mut h, &entry.path, target)
                    .map_err(output_error(output))?;
            }
        }
    }
    builder.finish().map_err(output_error(output))?;
    Ok(WriteSummary {
        entries: entries.len(),
        content_bytes,
    })
}
