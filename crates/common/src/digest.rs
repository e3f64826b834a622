//! sha256 digests of files and byte streams, as lowercase hex, and the adapters that
//! hash a stream while it passes through (a layer read or written once, hashed on the way):
//! [`HashingReader`] and [`HashingWriter`] hash on the thread that reads or writes,
//! [`ThreadedHashingReader`] on a thread of its own.

use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;

/// The sha256 of everything `reader` yields, as 64 lowercase hex digits.
pub fn sha256_reader(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut reader, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// The sha256 of a file's contents.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    sha256_reader(std::fs::File::open(path)?)
}

/// Whether `text` is a sha256 as this crate writes them: 64 lowercase hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The sha256 of a byte slice.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hashes what passes through, on the reading thread; at the end of the stream the
/// digest (hex) and byte count land in the shared slot.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    done: Arc<OnceLock<(String, u64)>>,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R, done: Arc<OnceLock<(String, u64)>>) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            done,
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let digest = hex::encode(self.hasher.clone().finalize());
            let _ = self.done.set((digest, self.count));
        }
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Passes bytes through, hashing and counting them.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The inner writer, the hex sha256 and the byte count of what went through.
    pub fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            hex::encode(self.hasher.finalize()),
            self.written,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Passes reads through while a thread of its own runs the bytes through sha256, for a
/// reader whose own thread is the critical path (an unpack inflates on it): hashing there
/// would slow the whole unpack. The hasher gets a copy of exactly the bytes read, so the
/// digest names what the reader saw even if the source changes meanwhile. `on_read` hears
/// the size of every read (for a progress line).
pub struct ThreadedHashingReader<R, F> {
    inner: R,
    on_read: F,
    to_hasher: Option<mpsc::SyncSender<Vec<u8>>>,
    hasher: Option<JoinHandle<String>>,
}

/// Reads in flight to the hasher: bounds the copies waiting for it.
const READS_IN_FLIGHT: usize = 16;

impl<R: Read, F: FnMut(usize)> ThreadedHashingReader<R, F> {
    pub fn new(inner: R, on_read: F) -> Self {
        let (to_hasher, reads) = mpsc::sync_channel::<Vec<u8>>(READS_IN_FLIGHT);
        let hasher = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            for data in reads {
                hasher.update(&data);
            }
            hex::encode(hasher.finalize())
        });
        ThreadedHashingReader {
            inner,
            on_read,
            to_hasher: Some(to_hasher),
            hasher: Some(hasher),
        }
    }

    /// Reads (and hashes) whatever was not read yet and returns the digest of the whole
    /// stream.
    pub fn finish(mut self) -> io::Result<String> {
        io::copy(&mut self, &mut io::sink())?;
        self.to_hasher = None;
        self.hasher
            .take()
            .and_then(|hasher| hasher.join().ok())
            .ok_or_else(hasher_died)
    }
}

impl<R: Read, F: FnMut(usize)> Read for ThreadedHashingReader<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.on_read)(n);
        if n > 0 {
            let sent = self
                .to_hasher
                .as_ref()
                .map(|to_hasher| to_hasher.send(buf[..n].to_vec()));
            if !matches!(sent, Some(Ok(()))) {
                return Err(hasher_died());
            }
        }
        Ok(n)
    }
}

fn hasher_died() -> io::Error {
    io::Error::other("the sha256 thread died")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_adapters_hash_and_count_exactly_what_passes() {
        let data = b"some layer bytes".repeat(1000);
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(&data).unwrap();
        let (inner, hex, count) = writer.finish();
        assert_eq!(
            (inner, hex.clone(), count),
            (data.clone(), sha256_bytes(&data), data.len() as u64)
        );
        let slot = Arc::new(OnceLock::new());
        let mut reader = HashingReader::new(&data[..], slot.clone());
        let mut half = vec![0; data.len() / 2];
        reader.read_exact(&mut half).unwrap();
        assert!(
            slot.get().is_none(),
            "the digest lands only at the end of the stream"
        );
        io::copy(&mut reader, &mut io::sink()).unwrap();
        assert_eq!(slot.get(), Some(&(hex, data.len() as u64)));
    }

    #[test]
    fn the_threaded_reader_hashes_what_was_read_and_what_was_left() {
        let data = b"some image bytes".repeat(10_000);
        let mut heard = 0;
        let mut reader = ThreadedHashingReader::new(&data[..], |n| heard += n);
        let mut first = vec![0; 1000];
        reader.read_exact(&mut first).unwrap();
        assert_eq!(first, data[..1000]);
        assert_eq!(reader.finish().unwrap(), sha256_bytes(&data));
        assert_eq!(heard, data.len(), "every read is reported, the rest too");
    }

    #[test]
    fn digests_are_64_lowercase_hex() {
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex("../etc"));
    }

    #[test]
    fn empty_input_has_the_well_known_digest() {
        assert_eq!(
            sha256_bytes(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sha256_reader(&b""[..]).unwrap(), sha256_bytes(b""));
    }
}
