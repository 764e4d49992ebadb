//! Message decompression with the max receive size as the limit: gzip,
//! deflate (zlib) and zstd, on arbitrary bytes (flag 1 with garbage) and on
//! real compressed data, including decompression bombs.
//!
//! Checks: no panic; a result is never larger than the limit (a bomb fails
//! with RESOURCE_EXHAUSTED and memory stays bounded: run with
//! `-rss_limit_mb`/`-malloc_limit_mb`); compressed data of a message within
//! the limit comes back intact, one over it is RESOURCE_EXHAUSTED; framing
//! with compression then deframing and decompressing gives the message back.
//!
//! Input: byte 0 bits 0-1 the algorithm, bit 2 mode (0: the rest is
//! compressed data; 1: the rest describes a plaintext: `rep:u8` then
//! bytes, repeated `rep³ + 1` times, capped at 2 MiB); byte 1 picks the
//! limit.
#![no_main]

use ferrogrpc::{__fuzz, Code};
use ferrogrpc_fuzz::{wire, Cursor};
use libfuzzer_sys::fuzz_target;

const ALGORITHMS: [&str; 4] = ["gzip", "deflate", "zstd", "gzip"];
const LIMITS: [usize; 8] = [0, 1, 100, 4096, 65_536, 1 << 20, 100, 4096];

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let mode = c.u8();
    let name = ALGORITHMS[usize::from(mode & 3)];
    let limit = LIMITS[usize::from(c.u8() % 8)];
    let compressor = ferrogrpc::encoding::get_compressor(name).expect("built in");
    if mode & 4 == 0 {
        let input = c.rest();
        match __fuzz::decompress(&*compressor, input, limit) {
            Ok(out) => assert!(out.len() <= limit, "{name}: {} > {limit}", out.len()),
            Err(status) => assert!(
                matches!(status.code(), Code::Internal | Code::ResourceExhausted),
                "{status:?}"
            ),
        }
        return;
    }
    let rep = usize::from(c.u8());
    let unit = c.rest();
    let mut plain = Vec::new();
    for _ in 0..=(rep * rep * rep) {
        if unit.is_empty() || plain.len() + unit.len() > 2 << 20 {
            break;
        }
        plain.extend_from_slice(unit);
    }
    let compressed = wire::compress(name, &plain);
    match __fuzz::decompress(&*compressor, &compressed, limit) {
        Ok(out) => {
            assert!(
                plain.len() <= limit,
                "{name}: {} bytes accepted over {limit}",
                plain.len()
            );
            assert_eq!(&out[..], &plain[..], "{name}");
        }
        Err(status) => {
            assert!(
                plain.len() > limit,
                "{name}: {status:?} for {} bytes",
                plain.len()
            );
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        }
    }
    // The sender's framing, then the receiver's deframing and inflation.
    if plain.len() <= 1 << 20 {
        let framed = __fuzz::encode_message(&plain, usize::MAX, Some((name, 0))).unwrap();
        let mut d = __fuzz::Deframer::new(usize::MAX);
        d.push(framed);
        let (flag, body) = d.next().unwrap().expect("one whole message");
        d.finish().unwrap();
        let back = if flag {
            __fuzz::decompress(&*compressor, &body, plain.len()).unwrap()
        } else {
            body
        };
        assert_eq!(&back[..], &plain[..]);
    }
});
