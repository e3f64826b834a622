//! Inflating: members that announce their length (see the module docs) are read whole,
//! inflated on worker threads and handed out in order. From the first member that does
//! not, the rest of the stream is inflated as one, exactly as `gzip -d` would: any gzip
//! file reads the same, only mkroot's read faster.

use std::io::{self, BufRead, BufReader, Cursor, Read};

use flate2::read::MultiGzDecoder;
use flate2::{Decompress, FlushDecompress, Status};

use super::pool::{self, InOrder};
use super::{announced_member_len, CHUNK_SIZE, FEXTRA, FIXED_HEADER_LEN, MAGIC, TRAILER_LEN};
use crate::fill::{fill, read_up_to};

/// The longest member read whole, and the most it may inflate to. mkroot's members hold
/// one chunk each; these leave room for incompressible data and refuse a member that
/// would make the reader hold more than a few chunks' worth of memory.
const MAX_MEMBER_LEN: usize = 4 * CHUNK_SIZE;
const MAX_INFLATED_LEN: usize = 4 * CHUNK_SIZE;
/// How much of a stream without lengths [`ParallelGunzip::next_block`] hands out at once.
const STREAM_BLOCK: usize = 1 << 20;
/// Output buffers kept for reuse; more than the members in flight is never needed.
const MAX_SPARE_OUTPUTS: usize = 8;

/// A `Read` of the inflated content of a gzip stream of one or more members.
pub struct ParallelGunzip<R: Read> {
    inner: Inner<R>,
}

enum Inner<R: Read> {
    Members(Members<R>),
    /// The rest of the stream, after a member that does not announce its length; the
    /// bytes of its header already read go first.
    Stream(Box<MultiGzDecoder<io::Chain<Cursor<Vec<u8>>, R>>>),
    /// Only while switching from the one to the other.
    Switching,
}

/// Members read whole and inflated in parallel.
struct Members<R> {
    source: R,
    /// Started at the first member with a length: a plain gzip file starts no thread.
    inflating: Option<InOrder<SizedMember, Inflated>>,
    /// The member being read through `Read`, and how far.
    current: Vec<u8>,
    pos: usize,
    /// Buffers back from the workers and from the consumer, used again for the next
    /// members: allocating megabytes anew for each would fault every page in again.
    spare_members: Vec<Vec<u8>>,
    spare_outputs: Vec<Vec<u8>>,
    /// What comes after the members handed to the workers.
    after: After,
    /// Where the next member starts in the stream, for error messages.
    offset: u64,
}

enum After {
    /// More members, not read yet.
    More,
    /// The end of the stream.
    End,
    /// A member without a length; these are the bytes of it read so far.
    Unsized(Vec<u8>),
}

/// One whole member: header, deflate data, trailer; and a buffer to inflate it into.
struct SizedMember {
    bytes: Vec<u8>,
    header_len: usize,
    offset: u64,
    output: Vec<u8>,
}

/// What a worker hands back: the inflated bytes, and the member's buffer for reuse.
struct Inflated {
    data: io::Result<Vec<u8>>,
    member: Vec<u8>,
}

/// What the next member in the source turned out to be.
enum NextMember {
    Sized(SizedMember),
    Unsized(Vec<u8>),
    End,
}

/// How much compressed input is read at once by [`ParallelGunzip::buffered`].
const INPUT_BUFFER: usize = 256 * 1024;

impl<R: Read> ParallelGunzip<BufReader<R>> {
    /// Over an unbuffered source (a file, a pipe): through a 256 KiB buffer.
    pub fn buffered(source: R) -> Self {
        ParallelGunzip::new(BufReader::with_capacity(INPUT_BUFFER, source))
    }
}

impl<R: Read> ParallelGunzip<R> {
    /// Over a buffered source: member headers are read a few bytes at a time.
    pub fn new(source: R) -> ParallelGunzip<R>
    where
        R: BufRead,
    {
        ParallelGunzip {
            inner: Inner::Members(Members {
                source,
                inflating: None,
                current: Vec::new(),
                pos: 0,
                spare_members: Vec::new(),
                spare_outputs: Vec::new(),
                after: After::More,
                offset: 0,
            }),
        }
    }
}

impl<R: Read> ParallelGunzip<R> {
    /// The next piece of the inflated stream, handed over without a copy: a whole member
    /// where members say their length, else as much as `spare` holds. An empty piece is
    /// the end. `spare` is a piece given out earlier and done with, used again. (Use
    /// this or `Read`, not both.)
    pub fn next_block(&mut self, spare: Vec<u8>) -> (Vec<u8>, Option<io::Error>) {
        let mut spare = Some(spare);
        loop {
            match &mut self.inner {
                Inner::Stream(decoder) => {
                    let mut block = spare.take().unwrap_or_default();
                    block.resize(STREAM_BLOCK, 0);
                    let (filled, failure) = fill(decoder, &mut block);
                    block.truncate(filled);
                    return (block, failure);
                }
                Inner::Switching => return (Vec::new(), Some(failed_earlier())),
                Inner::Members(members) => {
                    if let Some(used) = spare.take() {
                        members.give_back(used);
                    }
                    match members.next_output() {
                        Ok(Output::Block(block)) => return (block, None),
                        Ok(Output::End) => return (Vec::new(), None),
                        Ok(Output::Unsized) => self.switch_to_stream(),
                        Err(err) => return (Vec::new(), Some(err)),
                    }
                }
            }
        }
    }

    /// Every member with a length has been read; the rest is one plain stream.
    fn switch_to_stream(&mut self) {
        let Inner::Members(members) = std::mem::replace(&mut self.inner, Inner::Switching) else {
            return;
        };
        if let After::Unsized(head) = members.after {
            let rest = Cursor::new(head).chain(members.source);
            self.inner = Inner::Stream(Box::new(MultiGzDecoder::new(rest)));
        }
    }
}

impl<R: Read> Read for ParallelGunzip<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let members = match &mut self.inner {
                Inner::Stream(decoder) => return decoder.read(out),
                Inner::Switching => return Err(failed_earlier()),
                Inner::Members(members) => members,
            };
            if let Some(n) = members.read_inflated(out)? {
                return Ok(n);
            }
            self.switch_to_stream();
        }
    }
}

fn failed_earlier() -> io::Error {
    io::Error::other("the gzip reader failed earlier")
}

/// What comes next out of the members with a length.
enum Output {
    Block(Vec<u8>),
    End,
    /// A member without a length follows: the rest is read as one stream.
    Unsized,
}

impl<R: Read> Members<R> {
    /// Copies inflated bytes to `out`: `Some(0)` at the end of the stream, `None` when
    /// the members with a length are done and an unsized one follows.
    fn read_inflated(&mut self, out: &mut [u8]) -> io::Result<Option<usize>> {
        if self.pos == self.current.len() {
            match self.next_output()? {
                Output::Block(block) => {
                    let consumed = std::mem::replace(&mut self.current, block);
                    self.give_back(consumed);
                    self.pos = 0;
                }
                Output::End => return Ok(Some(0)),
                Output::Unsized => return Ok(None),
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(Some(n))
    }

    /// The next member's inflated bytes (empty members skipped), in order.
    fn next_output(&mut self) -> io::Result<Output> {
        loop {
            self.read_ahead()?;
            let Some(inflated) = self.inflating.as_mut().and_then(InOrder::take_oldest) else {
                return Ok(match self.after {
                    After::Unsized(_) => Output::Unsized,
                    After::End | After::More => Output::End,
                });
            };
            let Inflated { data, member } = inflated?;
            self.spare_members.push(member);
            let data = data?;
            if !data.is_empty() {
                return Ok(Output::Block(data));
            }
        }
    }

    /// Keeps an output buffer that was handed out and is done with, for a next member.
    fn give_back(&mut self, used: Vec<u8>) {
        if used.capacity() > 0 && self.spare_outputs.len() < MAX_SPARE_OUTPUTS {
            self.spare_outputs.push(used);
        }
    }

    /// Reads members and gives them to the workers until as many are in flight as
    /// allowed or no sized member follows.
    fn read_ahead(&mut self) -> io::Result<()> {
        while matches!(self.after, After::More)
            && !self.inflating.as_ref().is_some_and(InOrder::is_full)
        {
            let buffer = self.spare_members.pop().unwrap_or_default();
            match next_member(&mut self.source, self.offset, buffer)? {
                NextMember::Sized(mut member) => {
                    member.output = self.spare_outputs.pop().unwrap_or_default();
                    self.offset += member.bytes.len() as u64;
                    let inflating = self.inflating.get_or_insert_with(|| {
                        InOrder::new(pool::thread_count(4), new_inflater, inflate_member)
                    });
                    inflating.submit(member)?;
                }
                NextMember::Unsized(head) => self.after = After::Unsized(head),
                NextMember::End => self.after = After::End,
            }
        }
        Ok(())
    }
}

/// Reads the next member whole if its header announces its length; otherwise returns
/// the bytes read, which go back in front of the stream.
fn next_member(source: &mut impl Read, offset: u64, buffer: Vec<u8>) -> io::Result<NextMember> {
    let mut head = buffer;
    head.clear();
    head.resize(FIXED_HEADER_LEN, 0);
    let got = read_up_to(source, &mut head)?;
    head.truncate(got);
    // The end of the stream, after a member; an empty stream is left to the plain
    // reader, which refuses it as gzip -d does.
    if got == 0 && offset > 0 {
        return Ok(NextMember::End);
    }
    // Only a header with nothing but an extra field (no name, comment or header CRC):
    // the deflate data then starts right after it.
    if got < FIXED_HEADER_LEN || head[..3] != MAGIC || head[3] != FEXTRA {
        return Ok(NextMember::Unsized(head));
    }
    let Some(xlen_at) = read_more(source, &mut head, 2)? else {
        return Ok(NextMember::Unsized(head));
    };
    let xlen = u16::from_le_bytes([head[xlen_at], head[xlen_at + 1]]) as usize;
    let Some(extra) = read_more(source, &mut head, xlen)? else {
        return Ok(NextMember::Unsized(head));
    };
    let Some(member_len) = announced_member_len(&head[extra..]) else {
        return Ok(NextMember::Unsized(head));
    };
    let member_len = member_len as usize;
    let header_len = head.len();
    if member_len < header_len + TRAILER_LEN || member_len > MAX_MEMBER_LEN {
        return Err(corrupt(
            offset,
            &format!("announces a length of {member_len} bytes"),
        ));
    }
    head.resize(member_len, 0);
    source
        .read_exact(&mut head[header_len..])
        .map_err(|err| match err.kind() {
            io::ErrorKind::UnexpectedEof => corrupt(offset, "is cut short"),
            _ => err,
        })?;
    Ok(NextMember::Sized(SizedMember {
        bytes: head,
        header_len,
        offset,
        output: Vec::new(),
    }))
}

/// Appends up to `len` bytes from `source` to `buf`; returns where they start, or
/// `None` if the stream ended first (what was read is kept in `buf`).
fn read_more(source: &mut impl Read, buf: &mut Vec<u8>, len: usize) -> io::Result<Option<usize>> {
    let start = buf.len();
    buf.resize(start + len, 0);
    let got = read_up_to(source, &mut buf[start..])?;
    buf.truncate(start + got);
    Ok((got == len).then_some(start))
}

fn new_inflater() -> Decompress {
    // Raw deflate: the header was parsed here and the trailer is checked here.
    Decompress::new(false)
}

/// Inflates one member on a worker; the member's buffer goes back for reuse.
fn inflate_member(inflater: &mut Decompress, member: SizedMember) -> Inflated {
    let SizedMember {
        bytes,
        header_len,
        offset,
        output,
    } = member;
    let data = inflate_into(inflater, &bytes[header_len..], offset, output);
    Inflated {
        data,
        member: bytes,
    }
}

/// Inflates a member's deflate data and trailer (`body`) into `out`, checking that the
/// deflate data ends exactly at the trailer and that the trailer's length and CRC match
/// what came out, as `gzip -d` does.
fn inflate_into(
    inflater: &mut Decompress,
    body: &[u8],
    offset: u64,
    mut out: Vec<u8>,
) -> io::Result<Vec<u8>> {
    let (deflate, trailer) = body.split_at(body.len() - TRAILER_LEN);
    let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let inflated_len =
        u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]) as usize;
    if inflated_len > MAX_INFLATED_LEN {
        return Err(corrupt(
            offset,
            &format!("says it inflates to {inflated_len} bytes"),
        ));
    }
    // At least one byte of room more than announced, so that a member inflating to more
    // is caught as such rather than as a full buffer. Inflated into the spare capacity:
    // nothing is zeroed first.
    out.clear();
    out.reserve(inflated_len + 1);
    inflater.reset(false);
    let status = inflater
        .decompress_vec(deflate, &mut out, FlushDecompress::Finish)
        .map_err(|err| corrupt(offset, &format!("has bad deflate data ({err})")))?;
    let whole = status == Status::StreamEnd && inflater.total_in() == deflate.len() as u64;
    if !whole || out.len() != inflated_len {
        return Err(corrupt(offset, "does not match its length or trailer"));
    }
    if libdeflater::crc32(&out) != crc {
        return Err(corrupt(offset, "fails its CRC check"));
    }
    Ok(out)
}

fn corrupt(offset: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt gzip data: the member at byte {offset} {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::super::ParallelGzip;
    use super::*;
    use std::io::Write;

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"a gzip member of an image "[i % 26] ^ ((i / 5000) as u8 & 7))
            .collect()
    }

    fn mkroot_gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = ParallelGzip::with_threads(Vec::new(), 2);
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    fn plain_gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    fn gunzip(compressed: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        // Small reads, so that members are handed out across many calls.
        let mut reader = ParallelGunzip::new(compressed);
        let mut buf = [0u8; 70_001];
        loop {
            match reader.read(&mut buf)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// The stream read with `next_block`, the buffers given back as a consumer would.
    fn gunzip_in_blocks(compressed: &[u8]) -> io::Result<Vec<u8>> {
        let mut reader = ParallelGunzip::new(compressed);
        let mut out = Vec::new();
        let mut spare = Vec::new();
        loop {
            let (block, failure) = reader.next_block(spare);
            out.extend_from_slice(&block);
            if let Some(err) = failure {
                return Err(err);
            }
            if block.is_empty() {
                return Ok(out);
            }
            spare = block;
        }
    }

    #[test]
    fn blocks_and_reads_give_the_same_bytes() {
        let (first, second) = (sample(3 * CHUNK_SIZE + 9), sample(100_000));
        let mut both = mkroot_gzip(&first);
        both.extend(mkroot_gzip(&[]));
        both.extend(plain_gzip(&second));
        let expected = [first, second].concat();
        assert!(gunzip_in_blocks(&both).unwrap() == expected);
        assert!(gunzip(&both).unwrap() == expected);
        let cut = &both[..both.len() / 3];
        assert!(gunzip_in_blocks(cut).is_err());
    }

    #[test]
    fn mkroot_members_inflate_to_the_input() {
        for len in [0, 1, CHUNK_SIZE, 5 * CHUNK_SIZE + 777] {
            let data = sample(len);
            assert_eq!(gunzip(&mkroot_gzip(&data)).unwrap(), data, "length {len}");
        }
    }

    #[test]
    fn a_plain_gzip_file_reads_as_one_stream() {
        let data = sample(3 * CHUNK_SIZE);
        assert_eq!(gunzip(&plain_gzip(&data)).unwrap(), data);
    }

    #[test]
    fn sized_then_plain_members_read_in_order() {
        let (first, second) = (sample(2 * CHUNK_SIZE + 5), sample(70_000));
        let mut both = mkroot_gzip(&first);
        both.extend(plain_gzip(&second));
        assert_eq!(gunzip(&both).unwrap(), [first, second].concat());
    }

    #[test]
    fn a_cut_member_is_an_error() {
        let compressed = mkroot_gzip(&sample(3 * CHUNK_SIZE));
        let err = gunzip(&compressed[..compressed.len() - 100]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("cut short"), "{err}");
    }

    #[test]
    fn a_flipped_byte_in_the_data_is_an_error() {
        let mut compressed = mkroot_gzip(&sample(2 * CHUNK_SIZE));
        let middle = compressed.len() / 4;
        compressed[middle] ^= 0x55;
        assert!(gunzip(&compressed).is_err());
    }

    #[test]
    fn a_wrong_announced_length_is_an_error_not_a_skip() {
        let data = sample(3 * CHUNK_SIZE);
        let compressed = mkroot_gzip(&data);
        let first_len = u32::from_le_bytes(compressed[16..20].try_into().unwrap());
        for wrong in [first_len - 1, first_len + 1, first_len + 20, u32::MAX] {
            let mut bad = compressed.clone();
            bad[16..20].copy_from_slice(&wrong.to_le_bytes());
            let err = gunzip(&bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{wrong}: {err}");
        }
    }

    #[test]
    fn a_trailer_announcing_a_huge_length_is_refused_before_allocating() {
        let mut compressed = mkroot_gzip(&sample(1000));
        let end = compressed.len();
        compressed[end - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = gunzip(&compressed).unwrap_err();
        assert!(err.to_string().contains("inflates to"), "{err}");
    }

    #[test]
    fn an_empty_stream_fails_as_a_plain_reader_would() {
        let err = gunzip(&[]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }

    #[test]
    fn garbage_after_the_members_fails_as_a_plain_reader_would() {
        let data = sample(1000);
        let mut compressed = mkroot_gzip(&data);
        compressed.extend_from_slice(b"not gzip");
        let ours = gunzip(&compressed);
        let mut theirs = Vec::new();
        let plain = MultiGzDecoder::new(&compressed[..]).read_to_end(&mut theirs);
        assert_eq!(ours.is_ok(), plain.is_ok(), "{ours:?} vs {plain:?}");
    }
}
