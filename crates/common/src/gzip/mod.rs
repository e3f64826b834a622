//! Deterministic gzip streams, compressed and inflated on every core.
//!
//! Compression is most of the time an image build takes, so the stream is cut into
//! fixed-size chunks ([`CHUNK_SIZE`]) and each chunk is compressed on its own worker
//! thread into one gzip member; the members are written in order. A file of several
//! gzip members is one valid gzip file (RFC 1952 §2.2): `gzip -d`, `tar -xz` and
//! `flate2::read::MultiGzDecoder` read it whole. (A reader that stops after the first
//! member, like `flate2::read::GzDecoder`, would see only the first chunk.)
//!
//! Each member's header carries its own length in an extra field (RFC 1952 §2.3.1.1,
//! subfield `MK`, 4 bytes little-endian: the whole member, header and trailer included),
//! the way samtools' BGZF does with its `BC` subfield. Every gzip reader skips extra
//! fields; [`ParallelGunzip`] uses it to find the next member without inflating this one,
//! so a first launch inflates several members at once.
//!
//! The bytes depend only on the input: chunk boundaries are fixed, the compressor
//! (libdeflate, through the `libdeflater` crate pinned by Cargo.lock) and its level are
//! fixed, every header carries mtime 0, no name, XFL 0 and OS 3 (Unix), and the number
//! of threads changes only how fast members are made, never what they hold.
//!
//! Why libdeflate: on the images mkroot makes it compresses both faster and smaller
//! than zlib (and zlib-rs) at the same level; level 6 beats `gzip -6` on size.

mod pool;
mod read;
mod write;

pub use read::ParallelGunzip;
pub use write::ParallelGzip;

/// The libdeflate compression level, pinned so equal inputs give equal bytes.
pub const LEVEL: i32 = 6;

/// Bytes of input per gzip member. Large enough that restarting the dictionary at each
/// boundary costs well under 0.1 % of size, small enough to keep two cores busy on a
/// few-megabyte image.
pub const CHUNK_SIZE: usize = 2 << 20;

/// The fixed part of every gzip member header (RFC 1952 §2.3): magic, CM = deflate.
const MAGIC: [u8; 3] = [0x1f, 0x8b, 8];
/// FLG bit: an extra field follows the fixed header.
const FEXTRA: u8 = 0x04;
/// Length of the fixed header: magic, CM, FLG, MTIME, XFL, OS.
const FIXED_HEADER_LEN: usize = 10;
/// The extra subfield that holds a member's length.
const SIZE_SUBFIELD: [u8; 2] = *b"MK";
/// Bytes of the extra field mkroot writes: one subfield, ID + LEN + a u32.
const SIZE_EXTRA_LEN: usize = 2 + 2 + 4;
/// A member header as mkroot writes it: fixed part, XLEN, the size subfield.
pub(crate) const SIZED_HEADER_LEN: usize = FIXED_HEADER_LEN + 2 + SIZE_EXTRA_LEN;
/// CRC32 and ISIZE after the deflate data.
pub(crate) const TRAILER_LEN: usize = 8;

/// The header of a member `member_len` bytes long: magic, CM = deflate, FLG = FEXTRA,
/// mtime 0, XFL 0, OS 3 (Unix), then XLEN and the `MK` subfield holding `member_len`.
pub(crate) fn member_header(member_len: u32) -> [u8; SIZED_HEADER_LEN] {
    let mut header = [0u8; SIZED_HEADER_LEN];
    header[..3].copy_from_slice(&MAGIC);
    header[3] = FEXTRA;
    header[9] = 3;
    header[10..12].copy_from_slice(&(SIZE_EXTRA_LEN as u16).to_le_bytes());
    header[12..14].copy_from_slice(&SIZE_SUBFIELD);
    header[14..16].copy_from_slice(&4u16.to_le_bytes());
    header[16..20].copy_from_slice(&member_len.to_le_bytes());
    header
}

/// The member length announced in an extra field (`XLEN` bytes after the fixed header),
/// if it holds an `MK` subfield of the right size.
fn announced_member_len(extra: &[u8]) -> Option<u32> {
    let mut rest = extra;
    while rest.len() >= 4 {
        let id = [rest[0], rest[1]];
        let len = u16::from_le_bytes([rest[2], rest[3]]) as usize;
        let data = rest.get(4..4 + len)?;
        if id == SIZE_SUBFIELD && len == 4 {
            return Some(u32::from_le_bytes(data.try_into().ok()?));
        }
        rest = &rest[4 + len..];
    }
    None
}
