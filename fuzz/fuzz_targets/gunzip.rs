//! The parallel gzip reader against flate2's plain multi-member reader: whatever the
//! parallel reader accepts, the plain one must read to the same bytes (no stream means one
//! thing to `launch` and another to `gzip -d`), reading it `Read`'s way and block by block
//! must agree, and nothing may panic.
#![no_main]

use std::io::{Read, Write};

use libfuzzer_sys::fuzz_target;
use mkroot_common::gzip::{ParallelGunzip, ParallelGzip};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let stream = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        damaged_members(rest)
    };
    let mut ours = Vec::new();
    let read = ParallelGunzip::new(&stream[..]).read_to_end(&mut ours);
    // Block by block (as the unpacker reads it) is the same stream, or the same failure.
    assert_eq!(in_blocks(&stream).ok(), read.as_ref().ok().map(|_| ours.clone()));
    if read.is_err() {
        return;
    }
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(&stream[..])
        .read_to_end(&mut plain)
        .expect("the plain reader reads what the parallel one accepted");
    assert_eq!(ours, plain);
});

fn in_blocks(stream: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut reader = ParallelGunzip::new(stream);
    let (mut out, mut spare) = (Vec::new(), Vec::new());
    loop {
        let (block, failure) = reader.next_block(spare);
        out.extend_from_slice(&block);
        match failure {
            Some(err) => return Err(err),
            None if block.is_empty() => return Ok(out),
            None => spare = block,
        }
    }
}

/// Most random bytes are no gzip at all: this makes real members with a length in their
/// header (two, so that the reader hands out more than one) and then overwrites a few of
/// their bytes where the input says, so the fuzzer works on the headers and trailers.
fn damaged_members(rest: &[u8]) -> Vec<u8> {
    let edits = rest.len().min(12) / 3;
    let (edit_bytes, payload) = rest.split_at(edits * 3);
    let half = payload.len() / 2;
    let mut stream = Vec::new();
    for part in [&payload[..half], &payload[half..]] {
        let mut gz = ParallelGzip::with_threads(Vec::new(), 1);
        gz.write_all(part).expect("writing to memory");
        stream.extend(gz.finish().expect("writing to memory"));
    }
    for edit in edit_bytes.chunks(3) {
        let at = u16::from_le_bytes([edit[0], edit[1]]) as usize % stream.len();
        stream[at] = edit[2];
    }
    stream
}
