//! Compressing: chunks on worker threads, members written in order.

use std::io::{self, Write};

use super::pool::{self, InOrder};
use super::{member_header, CHUNK_SIZE, LEVEL, SIZED_HEADER_LEN, TRAILER_LEN};

/// A finished member, and the input buffer handed back for the next chunk.
struct Member {
    bytes: Result<Vec<u8>, String>,
    input: Vec<u8>,
}

/// A worker's compressor, and its output buffer, kept between chunks so that it is not
/// zeroed and faulted in anew.
struct Compressing {
    compressor: libdeflater::Compressor,
    scratch: Vec<u8>,
}

fn new_compressor() -> Compressing {
    let level = libdeflater::CompressionLvl::new(LEVEL).unwrap_or_default();
    Compressing {
        compressor: libdeflater::Compressor::new(level),
        scratch: Vec::new(),
    }
}

fn compress_chunk(state: &mut Compressing, data: Vec<u8>) -> Member {
    Member {
        bytes: compress_member(&mut state.compressor, &mut state.scratch, &data),
        input: data,
    }
}

/// Compresses one chunk into one complete gzip member.
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
    let member_len = SIZED_HEADER_LEN + written + TRAILER_LEN;
    let mut member = Vec::with_capacity(member_len);
    // A member is at most a chunk's compress bound plus a few bytes: far below 4 GiB.
    member.extend_from_slice(&member_header(member_len as u32));
    member.extend_from_slice(&scratch[..written]);
    let mut crc = libdeflater::Crc::new();
    crc.update(data);
    member.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the input length modulo 2^32 (RFC 1952); a chunk is far below that.
    member.extend_from_slice(&(data.len() as u32).to_le_bytes());
    Ok(member)
}

/// A `Write` that gzip-compresses on worker threads and writes members in order to `out`.
/// Call [`ParallelGzip::finish`] to write the last member; dropping it loses the tail.
pub struct ParallelGzip<W: Write> {
    out: W,
    buffer: Vec<u8>,
    compressing: InOrder<Vec<u8>, Member>,
    /// Input buffers back from the workers, reused for the next chunks.
    spare: Vec<Vec<u8>>,
    members: u64,
}

impl<W: Write> ParallelGzip<W> {
    /// One worker per available core (at most 8); the output does not depend on it.
    pub fn new(out: W) -> ParallelGzip<W> {
        ParallelGzip::with_threads(out, pool::thread_count(8))
    }

    pub fn with_threads(out: W, threads: usize) -> ParallelGzip<W> {
        ParallelGzip {
            out,
            buffer: Vec::with_capacity(CHUNK_SIZE),
            compressing: InOrder::new(threads, new_compressor, compress_chunk),
            spare: Vec::new(),
            members: 0,
        }
    }

    fn write_oldest_member(&mut self) -> io::Result<()> {
        let Some(member) = self.compressing.take_oldest() else {
            return Ok(());
        };
        let member = member?;
        let mut input = member.input;
        input.clear();
        self.spare.push(input);
        let bytes = member.bytes.map_err(io::Error::other)?;
        self.out.write_all(&bytes)
    }

    fn dispatch(&mut self, data: Vec<u8>) -> io::Result<()> {
        while self.compressing.is_full() {
            self.write_oldest_member()?;
        }
        self.compressing.submit(data)?;
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
        while !self.compressing.is_empty() {
            self.write_oldest_member()?;
        }
        self.compressing.stop();
        self.out.flush()?;
        Ok(self.out)
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
        self.out.flush()
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
        let first_len = u32::from_le_bytes(one[16..20].try_into().unwrap());
        assert_eq!(&one[..SIZED_HEADER_LEN], &member_header(first_len));
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
