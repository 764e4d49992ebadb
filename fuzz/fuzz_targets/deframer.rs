//! The message deframer: 5-byte prefixes (compressed flag, big-endian
//! length), messages split across DATA chunks at arbitrary boundaries and
//! several in one chunk, the max receive size, and the check at the end of
//! the stream.
//!
//! Checks: no panic (debug assertions on); the messages and errors are
//! exactly those of a simple whole-buffer reference parser, however the
//! input is cut.
//!
//! Input: byte 0 picks the max size, the next byte the number of cut sizes
//! (modulo 8, at least one), then the cut sizes (1-256 bytes each, used in
//! turn); the rest is the wire.
#![no_main]

use bytes::Bytes;
use ferrogrpc::{__fuzz::Deframer, Code};
use ferrogrpc_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;

const MAX: [usize; 8] = [0, 1, 4, 16, 100, 1024, 4 << 20, usize::MAX];

/// What the deframer yields, in order: messages, then at most one error.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Message(bool, Vec<u8>),
    Error(Code),
}

/// The reference: the whole wire at once, by the protocol's rules.
fn reference(wire: &[u8], max: usize) -> Vec<Item> {
    let mut out = Vec::new();
    let mut rest = wire;
    loop {
        if rest.is_empty() {
            return out;
        }
        if rest.len() < 5 {
            out.push(Item::Error(Code::Internal));
            return out;
        }
        let compressed = match rest[0] {
            0 => false,
            1 => true,
            _ => {
                out.push(Item::Error(Code::Internal));
                return out;
            }
        };
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if len > max {
            out.push(Item::Error(Code::ResourceExhausted));
            return out;
        }
        if rest.len() < 5 + len {
            // Cut off inside the message.
            out.push(Item::Error(Code::Internal));
            return out;
        }
        out.push(Item::Message(compressed, rest[5..5 + len].to_vec()));
        rest = &rest[5 + len..];
    }
}

fn chunked(wire: &[u8], cuts: &[usize], max: usize) -> Vec<Item> {
    let mut d = Deframer::new(max);
    let mut out = Vec::new();
    let mut rest = wire;
    let mut cuts = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = (*cuts.next().unwrap()).clamp(1, rest.len());
        d.push(Bytes::copy_from_slice(&rest[..n]));
        rest = &rest[n..];
        loop {
            match d.next() {
                Ok(Some((compressed, data))) => {
                    assert!(data.len() <= max);
                    out.push(Item::Message(compressed, data.to_vec()));
                }
                Ok(None) => break,
                Err(status) => {
                    out.push(Item::Error(status.code()));
                    return out;
                }
            }
        }
    }
    if let Err(status) = d.finish() {
        out.push(Item::Error(status.code()));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let max = MAX[usize::from(c.u8() % 8)];
    let n = usize::from(c.u8() % 8).max(1);
    let cuts: Vec<usize> = (0..n).map(|_| usize::from(c.u8()) + 1).collect();
    let wire = c.rest();
    let expected = reference(wire, max);
    let got = chunked(wire, &cuts, max);
    assert_eq!(got, expected, "max {max}, cuts {cuts:?}");
    // One byte at a time, the hardest cut.
    assert_eq!(chunked(wire, &[1], max), expected);
});
