//! HTTP/2 frames, HPACK header blocks (literal representations only, no
//! Huffman) and gRPC message prefixes, built byte by byte.

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

/// One frame: 9-byte header and payload (its length is taken modulo 2^24).
pub fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    let len = (payload.len() as u32).to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(params.len() * 6);
    for (id, value) in params {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &payload)
}

pub fn settings_ack() -> Vec<u8> {
    frame(SETTINGS, ACK, 0, &[])
}

pub fn ping(ack: bool, data: [u8; 8]) -> Vec<u8> {
    frame(PING, if ack { ACK } else { 0 }, 0, &data)
}

pub fn rst_stream(stream_id: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream_id, &code.to_be_bytes())
}

pub fn window_update(stream_id: u32, increment: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream_id, &increment.to_be_bytes())
}

pub fn goaway(last_stream_id: u32, code: u32, debug: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8 + debug.len());
    payload.extend_from_slice(&last_stream_id.to_be_bytes());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(debug);
    frame(GOAWAY, 0, 0, &payload)
}

/// HPACK integer with an `n`-bit prefix; `first` holds the bits above it.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// How a header field is represented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repr {
    /// Literal without indexing, new name.
    Plain,
    /// Literal with incremental indexing (enters the dynamic table).
    Indexed,
    /// Literal never indexed.
    Never,
}

/// One header field in HPACK.
pub fn hpack_field(out: &mut Vec<u8>, name: &[u8], value: &[u8], repr: Repr) {
    match repr {
        Repr::Plain => out.push(0x00),
        Repr::Indexed => out.push(0x40),
        Repr::Never => out.push(0x10),
    }
    hpack_string(out, name);
    hpack_string(out, value);
}

/// A header block of literal fields.
pub fn header_block(fields: &[(Vec<u8>, Vec<u8>)], repr: Repr) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        hpack_field(&mut out, name, value, repr);
    }
    out
}

/// A HEADERS frame with `block`, split at `split` (when inside it) into a
/// HEADERS and a CONTINUATION frame.
pub fn headers(stream_id: u32, block: &[u8], end_stream: bool, split: Option<usize>) -> Vec<u8> {
    let es = if end_stream { END_STREAM } else { 0 };
    match split.filter(|&at| at < block.len()) {
        Some(at) => {
            let mut out = frame(HEADERS, es, stream_id, &block[..at]);
            out.extend(frame(CONTINUATION, END_HEADERS, stream_id, &block[at..]));
            out
        }
        None => frame(HEADERS, es | END_HEADERS, stream_id, block),
    }
}

/// A gRPC length-prefixed message.
pub fn grpc_message(compressed_flag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(compressed_flag);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// DATA frames carrying `payload`, at most `chunk` bytes each (0: one frame).
pub fn data_frames(stream_id: u32, payload: &[u8], chunk: usize, end_stream: bool) -> Vec<u8> {
    let chunk = if chunk == 0 {
        payload.len().max(1)
    } else {
        chunk
    };
    let mut out = Vec::new();
    let mut pieces = payload.chunks(chunk).peekable();
    if pieces.peek().is_none() {
        return frame(
            DATA,
            if end_stream { END_STREAM } else { 0 },
            stream_id,
            &[],
        );
    }
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        let flags = if last && end_stream { END_STREAM } else { 0 };
        out.extend(frame(DATA, flags, stream_id, piece));
    }
    out
}

/// gzip, zlib ("deflate") or zstd compression of `data`, for messages sent
/// with the compressed flag (done with flate2 and ferrogrpc's own zstd
/// compressor, not the code under test's decompressors).
pub fn compress(algorithm: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match algorithm {
        "gzip" => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(data).expect("in memory");
            enc.finish().expect("in memory")
        }
        "deflate" => {
            let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(data).expect("in memory");
            enc.finish().expect("in memory")
        }
        other => {
            let compressor = ferrogrpc::encoding::get_compressor(other).expect("registered");
            let mut out = bytes::BytesMut::new();
            compressor.compress(data, &mut out).expect("in memory");
            out.to_vec()
        }
    }
}
