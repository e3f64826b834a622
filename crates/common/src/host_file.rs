//! Reading the host files a build takes in, as a hostile tree may hold them.
//!
//! Only regular files, directories and symlinks are image content. A fifo blocks the
//! reader that opens it, a character device (`/dev/zero`) never ends, and opening some
//! devices does something (a tape rewinds, a watchdog arms). So a path is looked at
//! before it is opened, opened without blocking, looked at again through the open file
//! (it may have been swapped in between), and read no further than the size it had when
//! it was chosen: a file that grows meanwhile cannot make a read run on.

use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// A path that is something other than a regular file where one was needed; carried in
/// an [`io::Error`] (kind `InvalidInput`), so every reader's error says what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what}, not a regular file")]
pub struct NotRegular {
    /// `a fifo`, `a character device`, ...: see [`kind_name`].
    pub what: &'static str,
}

/// What a file type is, as a message says it.
pub fn kind_name(file_type: &FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symlink"
    } else if file_type.is_fifo() {
        "a fifo"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "a file of unknown type"
    }
}

/// Whether an image can hold a file of this type: a regular file, a directory or a
/// symlink. Device nodes, fifos and sockets are not content (the container's `/dev` is
/// made by the launcher).
pub fn is_content(file_type: &FileType) -> bool {
    file_type.is_file() || file_type.is_dir() || file_type.is_symlink()
}

/// The [`NotRegular`] a failed open carries, if that is why it failed.
pub fn not_regular(error: &io::Error) -> Option<NotRegular> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<NotRegular>())
        .copied()
}

fn refuse(meta: &Metadata) -> io::Result<()> {
    if meta.is_file() {
        return Ok(());
    }
    let what = kind_name(&meta.file_type());
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        NotRegular { what },
    ))
}

/// Opens the regular file at `path` (symlinks followed) and returns it with its size.
/// Anything else is refused before it is opened, and a file swapped for one after that
/// is refused too; no open blocks.
pub fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    refuse(&std::fs::metadata(path)?)?;
    // O_NONBLOCK: if a fifo was put in its place after the look, the open returns at
    // once rather than waiting for a writer. It changes nothing for a regular file.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    refuse(&meta)?;
    Ok((file, meta.len()))
}

/// The contents of the regular file at `path`, no more than its size at the open.
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    let (file, size) = open_regular(path)?;
    let mut bytes = Vec::with_capacity(size.min(64 << 20) as usize);
    file.take(size).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`read_regular`], as UTF-8 text.
pub fn read_regular_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read_regular(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// A regular file read as exactly the `size` bytes it was planned with: a shorter file
/// is an error (`UnexpectedEof`) and a longer one is read no further.
pub fn exactly(file: File, size: u64) -> ExactRead<File> {
    ExactRead {
        inner: file.take(size),
        remaining: size,
    }
}

/// See [`exactly`].
pub struct ExactRead<R> {
    inner: io::Take<R>,
    remaining: u64,
}

impl<R: Read> Read for ExactRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while being read",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Opens the regular file at `path` that was chosen with `size` bytes: one that is no
/// longer a regular file, or has another size now, is an error (`changed` names it).
pub fn open_planned(path: &Path, size: u64) -> io::Result<ExactRead<File>> {
    let (file, now) = open_regular(path)?;
    if now != size {
        return Err(changed());
    }
    Ok(exactly(file, size))
}

/// The error for a file that changed since it was chosen; see [`is_changed`].
pub fn changed() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "changed size since it was chosen",
    )
}

/// Whether `error` says a file changed while mkroot read it.
pub fn is_changed(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::UnexpectedEof
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn fifos_and_devices_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0);
        let start = Instant::now();
        let error = read_regular(&fifo).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(not_regular(&error).unwrap().what, "a fifo");
        assert_eq!(error.to_string(), "a fifo, not a regular file");
        let error = read_regular(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(not_regular(&error).unwrap().what, "a character device");
        let error = read_regular(dir.path()).unwrap_err();
        assert_eq!(not_regular(&error).unwrap().what, "a directory");
    }

    #[test]
    fn a_planned_file_is_read_at_its_planned_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        let mut out = Vec::new();
        open_planned(&path, 5)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"hello");
        assert!(is_changed(&open_planned(&path, 4).err().unwrap()));
        let mut short = exactly(File::open(&path).unwrap(), 9);
        assert!(is_changed(&short.read_to_end(&mut out).unwrap_err()));
    }
}
