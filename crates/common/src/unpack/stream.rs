//! The byte stream of a tar archive: compression detected by magic number (never by file
//! name), decompressed on a thread of its own so inflating and writing files overlap.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, SyncSender};

use crate::fill::{fill, read_up_to};
use crate::gzip::ParallelGunzip;

/// How much decompressed data travels to the writing side at once.
const CHUNK: usize = 1024 * 1024;
/// Chunks in flight between the two threads; bounds the memory a gzip bomb can claim.
const CHUNKS_IN_FLIGHT: usize = 4;

/// What the first bytes of an image say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    /// A compression we recognise but do not read: named in the error.
    Unsupported(&'static str),
}

/// Recognises the compression from the magic number at the start of the stream.
pub fn detect(head: &[u8]) -> Compression {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"BZh", "bzip2"),
        (b"\x04\x22\x4d\x18", "lz4"),
        (b"\x5d\x00\x00", "lzma"),
    ];
    if head.starts_with(b"\x1f\x8b") {
        return Compression::Gzip;
    }
    for (magic, name) in MAGICS {
        if head.starts_with(magic) {
            return Compression::Unsupported(name);
        }
    }
    Compression::None
}

/// The archive stream as the decompression thread reads it.
pub enum Decoded<'a> {
    /// Read as it comes, in chunks.
    Plain(Box<dyn Read + Send + 'a>),
    /// Inflated by [`ParallelGunzip`], whose whole members travel on without a copy.
    Gzip(Box<ParallelGunzip<io::BufReader<Box<dyn Read + Send + 'a>>>>),
}

/// A source read whole again after [`sniff`] peeked at its first bytes.
pub type Sniffed<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// The compression the first bytes of `source` show, and `source` whole again: the
/// bytes peeked at are put back in front of the rest.
pub fn sniff<R: Read>(mut source: R) -> io::Result<(Compression, Sniffed<R>)> {
    let mut head = [0u8; 6];
    let peeked = read_up_to(&mut source, &mut head)?;
    let compression = detect(&head[..peeked]);
    Ok((
        compression,
        io::Cursor::new(head[..peeked].to_vec()).chain(source),
    ))
}

/// The decompressed archive stream, and the compression its first bytes showed.
pub fn open<'a, R: Read + Send + 'a>(source: R) -> io::Result<(Compression, Decoded<'a>)> {
    let (compression, raw) = sniff(source)?;
    let decoded = match compression {
        // Several gzip members one after the other are one stream (pigz, concatenation);
        // mkroot's members say how long they are, so several are inflated at once.
        Compression::Gzip => {
            let raw: Box<dyn Read + Send + 'a> = Box::new(raw);
            Decoded::Gzip(Box::new(ParallelGunzip::buffered(raw)))
        }
        _ => Decoded::Plain(Box::new(raw)),
    };
    Ok((compression, decoded))
}

impl Decoded<'_> {
    /// The next chunk of the stream (empty at its end), in `spare` where it is copied;
    /// the data read before a failure, and the failure.
    fn next_chunk(&mut self, spare: Vec<u8>) -> (Vec<u8>, Option<io::Error>) {
        match self {
            Decoded::Plain(source) => {
                let mut chunk = spare;
                chunk.resize(CHUNK, 0);
                let (filled, failure) = fill(source, &mut chunk);
                chunk.truncate(filled);
                (chunk, failure)
            }
            Decoded::Gzip(gunzip) => gunzip.next_block(spare),
        }
    }
}

/// The reading end of the decompression thread: a `Read` over the chunks it sends.
pub struct PipedReader {
    chunks: Receiver<io::Result<Vec<u8>>>,
    spare: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    /// Set once the producer reported the end of its input.
    at_end: bool,
    /// Set when a read returned 0 bytes (end of input) to the consumer.
    pub hit_end: bool,
    /// Set when reading or decompressing the source failed (as opposed to the tar format).
    /// Shared, so it can be read while the tar reader holds this reader.
    pub source_failed: Rc<Cell<bool>>,
    /// Bytes handed to the consumer so far.
    pub consumed: u64,
}

/// Starts a thread in `scope` that reads `source` to its end in chunks, and returns the
/// reader of those chunks. Dropping the reader stops the thread at its next chunk.
pub fn spawn_reader<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    mut source: Decoded<'env>,
) -> PipedReader {
    let (chunk_tx, chunk_rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(CHUNKS_IN_FLIGHT);
    let (spare_tx, spare_rx) = mpsc::sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT + 2);
    scope.spawn(move || loop {
        let spare = spare_rx.try_recv().unwrap_or_default();
        let (chunk, failure) = source.next_chunk(spare);
        let filled = chunk.len();
        // Data read before a failure goes first, so the error surfaces at the entry where
        // the stream broke.
        if filled > 0 && chunk_tx.send(Ok(chunk)).is_err() {
            return;
        }
        let last = match failure {
            Some(err) => Err(err),
            None if filled == 0 => Ok(Vec::new()),
            None => continue,
        };
        let _ = chunk_tx.send(last);
        return;
    });
    PipedReader {
        chunks: chunk_rx,
        spare: spare_tx,
        current: Vec::new(),
        pos: 0,
        at_end: false,
        hit_end: false,
        source_failed: Rc::new(Cell::new(false)),
        consumed: 0,
    }
}

impl Read for PipedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.at_end {
                self.hit_end = true;
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    let _ = self.spare.try_send(used);
                    self.pos = 0;
                    self.at_end = self.current.is_empty();
                }
                Ok(Err(err)) => {
                    self.source_failed.set(true);
                    return Err(err);
                }
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "decompression thread stopped",
                    ))
                }
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        self.consumed += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_told_by_magic_not_name() {
        assert_eq!(detect(b"\x1f\x8b\x08\x00"), Compression::Gzip);
        assert_eq!(detect(b"usr/bin/\0\0\0"), Compression::None);
        assert_eq!(
            detect(b"\x28\xb5\x2f\xfd\x00"),
            Compression::Unsupported("zstd")
        );
        assert_eq!(detect(b""), Compression::None);
    }

    #[test]
    fn piped_reader_yields_the_whole_stream() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let copy = std::thread::scope(|scope| {
            let source = Decoded::Plain(Box::new(io::Cursor::new(data.clone())));
            let mut reader = spawn_reader(scope, source);
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            assert!(reader.hit_end);
            out
        });
        assert_eq!(copy, data);
    }

    #[test]
    fn piped_reader_yields_a_gzip_stream_inflated() {
        let data: Vec<u8> = (0..5 * CHUNK + 17).map(|i| (i / 7 % 251) as u8).collect();
        let mut gz = crate::gzip::ParallelGzip::with_threads(Vec::new(), 2);
        io::Write::write_all(&mut gz, &data).unwrap();
        let compressed = gz.finish().unwrap();
        let copy = std::thread::scope(|scope| {
            let (compression, decoded) = open(&compressed[..]).unwrap();
            assert_eq!(compression, Compression::Gzip);
            let mut reader = spawn_reader(scope, decoded);
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            out
        });
        assert!(copy == data);
    }
}
