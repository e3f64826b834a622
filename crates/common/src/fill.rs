//! Reading as much as a buffer holds. `Read::read` may return less than asked at any
//! time, and `read_exact` calls a short stream an error; the format readers want "this
//! many bytes, fewer only where the stream ends": to peek at a magic number or a header,
//! or to pass a stream on in chunks.

use std::io::{self, Read};

/// Reads until `buf` is full or the source ends; returns how much was read.
pub fn read_up_to(source: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    match fill(source, buf) {
        (filled, None) => Ok(filled),
        (_, Some(err)) => Err(err),
    }
}

/// Reads until `buf` is full, the source ends or fails; returns how much was read, and
/// the failure if there was one (the bytes read before it are valid).
pub fn fill(source: &mut (impl Read + ?Sized), buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return (filled, Some(err)),
        }
    }
    (filled, None)
}
