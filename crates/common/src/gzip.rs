//! A deterministic gzip stream compressed on every core.
//!
//! Compression is most of the time an image build takes, so the stream is cut into
//! fixed-size chunks ([`CHUNK_SIZE`]) and each chunk is compressed on its own worker
//! thread into one gzip member; the members are written in order. A file of several
//! gzip members is one valid gzip file (RFC 1952 §2.2): `gzip -d`, `tar -xz` and
//! `flate2::read::MultiGzDecoder` read it whole. (A reader that stops after the first
//! member, like `flate2::read::GzDecoder`, would see only the first chunk.)
//!
//! The bytes depend only on the input: chunk boundaries are fixed, the compressor
//! (libdeflate, through the `libdeflater` crate pinned by Cargo.lock) and its level are
//! fixed, every header carries mtime 0, no name, XFL 0 and OS 3 (Unix), and the number
//! of threads changes only how fast members are made, never what they hold.
//!
//! Why libdeflate: on the images mkroot makes it compresses both faster and smaller
//! than zlib (and zlib-rs) at the same level; level 6 beats `gzip -6` on size.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The libdeflate compression level, pinned so equal inputs give equal bytes.
pub const LEVEL: i32 = 6;

/// Bytes of input per gzip member. Large enough that restarting the dictionary at each
/// boundary costs well under 0.1 % of size, small enough to keep two cores busy on a
/// few-megabyte image.
pub const CHUNK_SIZE: usize = 2 << 20;

/// gzip member header: magic, CM=deflate, no flags, mtime 0, XFL 0, OS 3 (Unix).
const MEMBER_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];

/// A finished member, and the input buffer handed back for the next chunk.
struct Member {
    bytes: Result<Vec<u8>, String>,
    input: Vec<u8>,
}

struct Job {
    data: Vec<u8>,
    reply: mpsc::Sender<Member>,
}

/// Compresses one chunk into one complete gzip member. `scratch` is the worker's own
/// output buffer, kept between chunks so that it is not zeroed and faulted in anew.
fn compress_member(
    compressor: &mut libdeflater::Compressor,
    scratch: &mut Vec<u8>,
    data: &[u8],
) -> Result<Vec<u8>, String> {
    let bound = compressor.deflate_compress_bound(data.len());
    if scratch.len() < bound {
        scratch.resize(bound, 0);
    }
    let written = compressor
        .deflate_compress(data, scratch)
        .map_err(|e| format!("compression failed: {e:?}"))?;
    let mut member = Vec::with_capacity(MEMBER_HEADER.len() + written + 8);
    member.extend_from_slice(&MEMBER_HEADER);
    member.extend_from_slice(&scratch[..written]);
    let mut crc = libdeflater::Crc::new();
    crc.update(data);
    member.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the input length modulo 2^32 (RFC 1952); a chunk is far below that.
    member.extend_from_slice(&(data.len() as u32).to_le_bytes());
    Ok(member)
}

fn worker(jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let level = libdeflater::CompressionLvl::new(LEVEL).unwrap_or_default();
    let mut compressor = libdeflater::Compressor::new(level);
    let mut scratch = Vec::new();
    loop {
        let job = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let bytes = compress_member(&mut compressor, &mut scratch, &job.data);
        // The writer may have given up (an error on its side); nothing to do then.
        let _ = job.reply.send(Member {
            bytes,
            input: job.data,
        });
    }
}

/// A `Write` that gzip-compresses on worker threads and writes members in order to `out`.
/// Call [`ParallelGzip::finish`] to write the last member; dropping it loses the tail.
pub struct ParallelGzip<W: Write> {
    /// `None` only after `finish` moved it out.
    out: Option<W>,
    buffer: Vec<u8>,
    jobs: Option<mpsc::Sender<Job>>,
    pending: VecDeque<mpsc::Receiver<Member>>,
    /// Input buffers back from the workers, reused for the next chunks.
    spare: Vec<Vec<u8>>,
    workers: Vec<JoinHandle<()>>,
    max_pending: usize,
    members: u64,
}

impl<W: Write> ParallelGzip<W> {
    /// One worker per available core (at most 8); the output does not depend on it.
    pub fn new(out: W) -> ParallelGzip<W> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8);
        ParallelGzip::with_threads(out, threads)
    }

    pub fn with_threads(out: W, threads: usize) -> ParallelGzip<W> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = (0..threads.max(1))
            .map(|_| {
                let receiver = Arc::clone(&receiver);
                std::thread::spawn(move || worker(receiver))
            })
            .collect();
        ParallelGzip {
            out: Some(out),
            buffer: Vec::with_capacity(CHUNK_SIZE),
            jobs: Some(sender),
            pending: VecDeque::new(),
            spare: Vec::new(),
            workers,
            // Two chunks per worker in flight: workers never wait for the writer, and
            // memory stays bounded (the image is never held whole).
            max_pending: 2 * threads.max(1),
            members: 0,
        }
    }

    fn output(&mut self) -> io::Result<&mut W> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))
    }

    fn write_oldest_member(&mut self) -> io::Result<()> {
        let Some(receiver) = self.pending.pop_front() else {
            return Ok(());
        };
        let member = receiver
            .recv()
            .map_err(|_| io::Error::other("gzip worker stopped"))?;
        let mut input = member.input;
        input.clear();
        self.spare.push(input);
        let bytes = member.bytes.map_err(io::Error::other)?;
        self.output()?.write_all(&bytes)
    }

    fn dispatch(&mut self, data: Vec<u8>) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_oldest_member()?;
        }
        let (reply, receiver) = mpsc::channel();
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))?;
        jobs.send(Job { data, reply })
            .map_err(|_| io::Error::other("gzip workers stopped"))?;
        self.pending.push_back(receiver);
        self.members += 1;
        Ok(())
    }

    /// Compresses what is left, writes every member in order and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        // An empty input still gives one (empty) member: a valid gzip file.
        if !self.buffer.is_empty() || self.members == 0 {
            let last = std::mem::take(&mut self.buffer);
            self.dispatch(last)?;
        }
        while !self.pending.is_empty() {
            self.write_oldest_member()?;
        }
        self.stop_workers();
        self.output()?.flush()?;
        self.out
            .take()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))
    }

    fn stop_workers(&mut self) {
        self.jobs = None;
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let total = data.len();
        while !data.is_empty() {
            let room = CHUNK_SIZE - self.buffer.len();
            let take = room.min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == CHUNK_SIZE {
                let next = self
                    .spare
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(CHUNK_SIZE));
                let full = std::mem::replace(&mut self.buffer, next);
                self.dispatch(full)?;
            }
        }
        Ok(total)
    }

    /// Members are only complete at chunk boundaries; flushing writes what is done.
    fn flush(&mut self) -> io::Result<()> {
        self.output()?.flush()
    }
}

impl<W: Write> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: a counter mixed into text.
        (0..len)
            .map(|i| b"mkroot image bytes "[i % 19] ^ ((i / 4096) as u8 & 3))
            .collect()
    }

    fn gzip(data: &[u8], threads: usize) -> Vec<u8> {
        let mut gz = ParallelGzip::with_threads(Vec::new(), threads);
        // Uneven writes: chunking must not depend on how the caller slices its data.
        for piece in data.chunks(70_001) {
            gz.write_all(piece).unwrap();
        }
        gz.finish().unwrap()
    }

    #[test]
    fn output_round_trips_through_a_multi_member_reader() {
        let data = sample(3 * CHUNK_SIZE + 12_345);
        let compressed = gzip(&data, 2);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&compressed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert!(compressed.len() < data.len() / 4);
    }

    #[test]
    fn bytes_do_not_depend_on_thread_count() {
        let data = sample(2 * CHUNK_SIZE + 7);
        let one = gzip(&data, 1);
        assert_eq!(one, gzip(&data, 2));
        assert_eq!(one, gzip(&data, 5));
        assert_eq!(&one[..10], &MEMBER_HEADER);
    }

    #[test]
    fn empty_input_is_one_valid_member() {
        let compressed = gzip(&[], 2);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&compressed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }
}
