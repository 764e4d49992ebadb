//! The connection targets' input format: a header, then operations that
//! each write one or a few HTTP/2 frames (or raw bytes, or let virtual time
//! pass). Short, mutation-friendly encodings: one opcode byte, small
//! integers in single bytes, header names and values usually picked from
//! a vocabulary by index. Past the end of the input every read yields
//! zero, so any byte string is a valid script.
//!
//! ```text
//! byte 0   flags: PREFACE SETTINGS EOF RAW NO_SETTLE STOP (bits 0..5)
//! byte 1   target configuration (see each target)
//! ...      target-specific bytes (the client target's calls), then ops
//! ```
//!
//! With RAW the rest of the input is written as it is. Otherwise each op
//! is an opcode byte (taken modulo 16, see [`Op`]) and its fields.

use std::time::Duration;

use crate::{wire, Cursor};

/// Flags of byte 0.
pub const PREFACE: u8 = 1 << 0;
pub const SETTINGS: u8 = 1 << 1;
pub const EOF: u8 = 1 << 2;
pub const RAW: u8 = 1 << 3;
pub const NO_SETTLE: u8 = 1 << 4;
pub const STOP: u8 = 1 << 5;

/// Which end the script's bytes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The script is a client talking to the server under test.
    Client,
    /// The script is a server answering the client under test.
    Server,
}

/// Opcodes (the opcode byte modulo 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// `len:u8 bytes` written as they are.
    Raw = 0,
    /// `type:u8 flags:u8 stream len:u8 payload`: any frame.
    Frame = 1,
    /// `stream flags:u8 fields split:u8`: HEADERS from vocabulary fields;
    /// flags bit0 END_STREAM, bit1 split into CONTINUATION at `split`,
    /// bit2 incremental indexing, bit3 never-indexed.
    Headers = 2,
    /// `stream kind:u8 fields`: a well-formed gRPC request (client side) or
    /// response head (server side), plus extra fields; see [`head`].
    Head = 3,
    /// `stream flags:u8 len:u8 bytes`: one DATA frame (bit0 END_STREAM).
    Data = 4,
    /// `stream flags:u8 rep:u8 len:u8 body chunk:u8`: one gRPC message
    /// (the body repeated `rep²` times, capped at 1 MiB) in DATA frames of
    /// `chunk` bytes. flags bit0 END_STREAM, bits 1..4 the mode: 0 plain,
    /// 1 gzip, 2 deflate, 3 zstd (flag 1, really compressed), 4 flag 1 on
    /// plain bytes, 5 flag 2, 6 prefix announcing more than sent, 7 the
    /// prefix alone.
    Message = 5,
    /// `stream code:u8 fields`: trailers (`grpc-status` and more) ending
    /// the stream.
    Trailers = 6,
    /// `n:u8 (id:u8 value:u32)*`: SETTINGS (n modulo 8).
    Settings = 7,
    SettingsAck = 8,
    /// `flags:u8 data:[u8;8]`: PING (bit0 ACK).
    Ping = 9,
    /// `stream code:u8`.
    RstStream = 10,
    /// `stream increment:u32`.
    WindowUpdate = 11,
    /// `last:stream code:u8 len:u8 debug`.
    GoAway = 12,
    /// `v:u8`: let v² × 4 ms of virtual time pass.
    Sleep = 13,
    /// Let the other side run until it waits (again).
    Settle = 14,
    /// `stream flags:u8 fields`: a CONTINUATION frame (bit2 END_HEADERS).
    Continuation = 15,
}

impl Op {
    pub fn from_byte(b: u8) -> Op {
        match b % 16 {
            0 => Op::Raw,
            1 => Op::Frame,
            2 => Op::Headers,
            3 => Op::Head,
            4 => Op::Data,
            5 => Op::Message,
            6 => Op::Trailers,
            7 => Op::Settings,
            8 => Op::SettingsAck,
            9 => Op::Ping,
            10 => Op::RstStream,
            11 => Op::WindowUpdate,
            12 => Op::GoAway,
            13 => Op::Sleep,
            14 => Op::Settle,
            _ => Op::Continuation,
        }
    }
}

/// Header names the fields of a script pick from (index byte modulo the
/// length; 0xFF means a literal name follows: `len:u8 bytes`).
pub const NAMES: &[&str] = &[
    ":method",
    ":scheme",
    ":path",
    ":authority",
    ":status",
    "content-type",
    "te",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
    "grpc-message",
    "grpc-status",
    "grpc-status-details-bin",
    "grpc-retry-pushback-ms",
    "grpc-previous-rpc-attempts",
    "user-agent",
    "x-custom",
    "x-custom-bin",
    "grpc-message-type",
    "content-length",
    "connection",
    "host",
    ":protocol",
    "x-trace-bin",
];

/// Values the fields pick from (same rule as [`NAMES`]).
pub const VALUES: &[&str] = &[
    "POST",
    "GET",
    "http",
    "https",
    "/test.Echo/Unary",
    "/test.Echo/ServerStream",
    "/test.Echo/ClientStream",
    "/test.Echo/Bidi",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "application/grpc",
    "application/grpc+proto",
    "application/json",
    "trailers",
    "1S",
    "100m",
    "99999999H",
    "1n",
    "gzip",
    "deflate",
    "zstd",
    "identity",
    "gzip, deflate",
    "snappy",
    "200",
    "404",
    "0",
    "1",
    "13",
    "16",
    "100%25%zz%",
    "AAEC/w",
    "AAEC/w==",
    "!!",
    "",
    "fuzz.test",
    "-1",
    "100",
    "/test.Echo/Fail",
    "/test.Echo/Sleep",
];

/// The methods a request head picks from (kind bits 0..3).
pub const PATHS: &[&str] = &[
    "/test.Echo/Unary",
    "/test.Echo/ServerStream",
    "/test.Echo/ClientStream",
    "/test.Echo/Bidi",
    "/test.Echo/Fail",
    "/test.Echo/Sleep",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/test.Echo/Nope",
    "/no.Such/Service",
    "/",
    "/test.Echo/",
    "//Unary",
    "/test.Echo/Unary?q=1",
];

/// Something the runner does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Write(Vec<u8>),
    Sleep(Duration),
    Settle,
}

/// A decoded script.
#[derive(Clone, Debug, Default)]
pub struct Script {
    pub flags: u8,
    pub config: u8,
    pub actions: Vec<Action>,
}

impl Script {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Reads the two header bytes.
pub fn header(c: &mut Cursor<'_>) -> (u8, u8) {
    (c.u8(), c.u8())
}

/// Reads the ops (after the header and any target-specific bytes).
pub fn decode(flags: u8, config: u8, side: Side, c: &mut Cursor<'_>) -> Script {
    let mut actions = Vec::new();
    if flags & PREFACE != 0 && side == Side::Client {
        actions.push(Action::Write(wire::PREFACE.to_vec()));
    }
    if flags & SETTINGS != 0 {
        actions.push(Action::Write(wire::settings(&[])));
    }
    if flags & RAW != 0 {
        actions.push(Action::Write(c.rest().to_vec()));
        return Script {
            flags,
            config,
            actions,
        };
    }
    // Bounds the work one input can ask for.
    let mut budget = 256usize;
    while !c.is_empty() && budget > 0 {
        budget -= 1;
        actions.push(op(c, side));
    }
    Script {
        flags,
        config,
        actions,
    }
}

fn stream(c: &mut Cursor<'_>) -> u32 {
    match c.u8() {
        0xff => c.u32(),
        s => u32::from(s),
    }
}

fn pick(c: &mut Cursor<'_>, list: &[&str]) -> Vec<u8> {
    match c.u8() {
        0xff => c.short_bytes().to_vec(),
        i => list[usize::from(i) % list.len()].as_bytes().to_vec(),
    }
}

/// `n:u8` (modulo 16) fields, each a name and a value.
fn fields(c: &mut Cursor<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let n = c.u8() % 16;
    (0..n).map(|_| (pick(c, NAMES), pick(c, VALUES))).collect()
}

fn field(name: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
    (name.as_bytes().to_vec(), value.as_bytes().to_vec())
}

/// A request head (client side), kind bits: 0..3 path, 4 END_STREAM,
/// 5 no `te`, 6 no content-type, 7 GET. A response head (server side):
/// 0..1 status (200, 200, 404, 503), 2 no content-type, 3 Trailers-Only
/// (END_STREAM, `grpc-status` from bits 4..7), 4 `grpc-encoding: gzip`,
/// 5 `grpc-encoding: zstd`, 6 `grpc-encoding: deflate`.
pub fn head(kind: u8, side: Side) -> (Vec<(Vec<u8>, Vec<u8>)>, bool) {
    match side {
        Side::Client => {
            let path = PATHS[usize::from(kind & 0xf)];
            let mut f = vec![
                field(":method", if kind & 0x80 != 0 { "GET" } else { "POST" }),
                field(":scheme", "http"),
                field(":path", path),
                field(":authority", "fuzz.test"),
            ];
            if kind & 0x40 == 0 {
                f.push(field("content-type", "application/grpc"));
            }
            if kind & 0x20 == 0 {
                f.push(field("te", "trailers"));
            }
            (f, kind & 0x10 != 0)
        }
        Side::Server => {
            let status = ["200", "200", "404", "503"][usize::from(kind & 3)];
            let mut f = vec![field(":status", status)];
            if kind & 0x04 == 0 {
                f.push(field("content-type", "application/grpc"));
            }
            let trailers_only = kind & 0x08 != 0;
            if trailers_only {
                f.push(field("grpc-status", &(kind >> 4).to_string()));
            } else if kind & 0x10 != 0 {
                f.push(field("grpc-encoding", "gzip"));
            } else if kind & 0x20 != 0 {
                f.push(field("grpc-encoding", "zstd"));
            } else if kind & 0x40 != 0 {
                f.push(field("grpc-encoding", "deflate"));
            }
            (f, trailers_only)
        }
    }
}

fn op(c: &mut Cursor<'_>, side: Side) -> Action {
    let write = Action::Write;
    match Op::from_byte(c.u8()) {
        Op::Raw => write(c.short_bytes().to_vec()),
        Op::Frame => {
            let (kind, flags, sid) = (c.u8(), c.u8(), stream(c));
            write(wire::frame(kind, flags, sid, c.short_bytes()))
        }
        Op::Headers => {
            let sid = stream(c);
            let flags = c.u8();
            let f = fields(c);
            let split = c.u8();
            let repr = if flags & 4 != 0 {
                wire::Repr::Indexed
            } else if flags & 8 != 0 {
                wire::Repr::Never
            } else {
                wire::Repr::Plain
            };
            let block = wire::header_block(&f, repr);
            let split = (flags & 2 != 0).then_some(usize::from(split));
            write(wire::headers(sid, &block, flags & 1 != 0, split))
        }
        Op::Head => {
            let sid = stream(c);
            let (mut f, end) = head(c.u8(), side);
            f.extend(fields(c));
            write(wire::headers(
                sid,
                &wire::header_block(&f, wire::Repr::Plain),
                end,
                None,
            ))
        }
        Op::Data => {
            let sid = stream(c);
            let flags = c.u8();
            write(wire::frame(wire::DATA, flags & 0x9, sid, c.short_bytes()))
        }
        Op::Message => {
            let sid = stream(c);
            let flags = c.u8();
            let rep = usize::from(c.u8());
            let body = c.short_bytes();
            let chunk = usize::from(c.u8());
            let mut plain = Vec::new();
            for _ in 0..(rep * rep).max(1) {
                if plain.len() + body.len() > 1 << 20 {
                    break;
                }
                plain.extend_from_slice(body);
            }
            let msg = match (flags >> 1) & 7 {
                0 => wire::grpc_message(0, &plain),
                1 => wire::grpc_message(1, &wire::compress("gzip", &plain)),
                2 => wire::grpc_message(1, &wire::compress("deflate", &plain)),
                3 => wire::grpc_message(1, &wire::compress("zstd", &plain)),
                4 => wire::grpc_message(1, &plain),
                5 => wire::grpc_message(2, &plain),
                6 => {
                    let mut m = wire::grpc_message(0, &plain);
                    let more = plain.len() as u32 + 1 + u32::from(flags >> 4);
                    m[1..5].copy_from_slice(&more.to_be_bytes());
                    m
                }
                _ => wire::grpc_message(0, &plain)[..5].to_vec(),
            };
            write(wire::data_frames(sid, &msg, chunk, flags & 1 != 0))
        }
        Op::Trailers => {
            let sid = stream(c);
            let code = c.u8();
            let mut f = vec![field("grpc-status", &(code % 20).to_string())];
            f.extend(fields(c));
            write(wire::headers(
                sid,
                &wire::header_block(&f, wire::Repr::Plain),
                true,
                None,
            ))
        }
        Op::Settings => {
            let n = c.u8() % 8;
            let params: Vec<(u16, u32)> = (0..n).map(|_| (u16::from(c.u8()), c.u32())).collect();
            write(wire::settings(&params))
        }
        Op::SettingsAck => write(wire::settings_ack()),
        Op::Ping => {
            let ack = c.bool();
            let mut data = [0u8; 8];
            data.copy_from_slice(&{
                let mut d = c.bytes(8).to_vec();
                d.resize(8, 0);
                d
            });
            write(wire::ping(ack, data))
        }
        Op::RstStream => {
            let sid = stream(c);
            write(wire::rst_stream(sid, u32::from(c.u8())))
        }
        Op::WindowUpdate => {
            let sid = stream(c);
            write(wire::window_update(sid, c.u32()))
        }
        Op::GoAway => {
            let last = stream(c);
            let code = u32::from(c.u8());
            write(wire::goaway(last, code, c.short_bytes()))
        }
        Op::Sleep => {
            let v = u64::from(c.u8());
            Action::Sleep(Duration::from_millis(v * v * 4))
        }
        Op::Settle => Action::Settle,
        Op::Continuation => {
            let sid = stream(c);
            let flags = c.u8();
            let f = fields(c);
            write(wire::frame(
                wire::CONTINUATION,
                flags & wire::END_HEADERS,
                sid,
                &wire::header_block(&f, wire::Repr::Plain),
            ))
        }
    }
}

/// Runs the actions: writes go to `io`; between actions (unless
/// NO_SETTLE) the other side runs until it waits. Returns when done or
/// when the other side stopped reading.
pub async fn run<W: tokio::io::AsyncWrite + Unpin>(script: &Script, io: &mut W) {
    use tokio::io::AsyncWriteExt;
    let settle = !script.has(NO_SETTLE);
    for action in &script.actions {
        match action {
            Action::Write(bytes) => {
                if io.write_all(bytes).await.is_err() {
                    return;
                }
            }
            Action::Sleep(d) => tokio::time::sleep(*d).await,
            Action::Settle => settle_down().await,
        }
        if settle {
            settle_down().await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    let _ = io.flush().await;
}

/// Waits until every other task waits too: with the paused clock, a 1 µs
/// sleep ends only once the runtime has nothing else to run.
pub async fn settle_down() {
    tokio::time::sleep(Duration::from_micros(1)).await;
}

/// Builds scripts for the seed corpora (the inverse of [`decode`]).
#[derive(Clone, Debug, Default)]
pub struct Builder {
    pub bytes: Vec<u8>,
}

impl Builder {
    pub fn new(flags: u8, config: u8) -> Builder {
        Builder {
            bytes: vec![flags, config],
        }
    }

    pub fn byte(mut self, b: u8) -> Builder {
        self.bytes.push(b);
        self
    }

    pub fn raw(mut self, data: &[u8]) -> Builder {
        self.bytes.extend_from_slice(data);
        self
    }

    fn op(mut self, op: Op) -> Builder {
        self.bytes.push(op as u8);
        self
    }

    fn short(mut self, data: &[u8]) -> Builder {
        assert!(data.len() < 256);
        self.bytes.push(data.len() as u8);
        self.bytes.extend_from_slice(data);
        self
    }

    fn fields(mut self, fields: &[(&str, &str)]) -> Builder {
        self.bytes.push(fields.len() as u8);
        for (name, value) in fields {
            for (s, list) in [(name, NAMES), (value, VALUES)] {
                match list.iter().position(|x| x == s) {
                    Some(i) => self.bytes.push(i as u8),
                    None => {
                        self.bytes.push(0xff);
                        self = self.short(s.as_bytes());
                    }
                }
            }
        }
        self
    }

    pub fn head(self, sid: u8, kind: u8, extra: &[(&str, &str)]) -> Builder {
        self.op(Op::Head).byte(sid).byte(kind).fields(extra)
    }

    pub fn headers(self, sid: u8, flags: u8, fields: &[(&str, &str)], split: u8) -> Builder {
        self.op(Op::Headers)
            .byte(sid)
            .byte(flags)
            .fields(fields)
            .byte(split)
    }

    pub fn message(self, sid: u8, flags: u8, rep: u8, body: &[u8], chunk: u8) -> Builder {
        self.op(Op::Message)
            .byte(sid)
            .byte(flags)
            .byte(rep)
            .short(body)
            .byte(chunk)
    }

    pub fn data(self, sid: u8, flags: u8, data: &[u8]) -> Builder {
        self.op(Op::Data).byte(sid).byte(flags).short(data)
    }

    pub fn trailers(self, sid: u8, code: u8, extra: &[(&str, &str)]) -> Builder {
        self.op(Op::Trailers).byte(sid).byte(code).fields(extra)
    }

    pub fn settings(mut self, params: &[(u8, u32)]) -> Builder {
        self = self.op(Op::Settings).byte(params.len() as u8);
        for (id, v) in params {
            self = self.byte(*id).raw(&v.to_be_bytes());
        }
        self
    }

    pub fn settings_ack(self) -> Builder {
        self.op(Op::SettingsAck)
    }

    pub fn ping(self, ack: bool, data: [u8; 8]) -> Builder {
        self.op(Op::Ping).byte(u8::from(ack)).raw(&data)
    }

    pub fn rst(self, sid: u8, code: u8) -> Builder {
        self.op(Op::RstStream).byte(sid).byte(code)
    }

    pub fn window_update(self, sid: u8, increment: u32) -> Builder {
        self.op(Op::WindowUpdate)
            .byte(sid)
            .raw(&increment.to_be_bytes())
    }

    pub fn goaway(self, last: u8, code: u8, debug: &[u8]) -> Builder {
        self.op(Op::GoAway).byte(last).byte(code).short(debug)
    }

    pub fn sleep(self, v: u8) -> Builder {
        self.op(Op::Sleep).byte(v)
    }

    pub fn settle(self) -> Builder {
        self.op(Op::Settle)
    }

    pub fn frame(self, kind: u8, flags: u8, sid: u8, payload: &[u8]) -> Builder {
        self.op(Op::Frame)
            .byte(kind)
            .byte(flags)
            .byte(sid)
            .short(payload)
    }

    pub fn continuation(self, sid: u8, flags: u8, fields: &[(&str, &str)]) -> Builder {
        self.op(Op::Continuation)
            .byte(sid)
            .byte(flags)
            .fields(fields)
    }

    pub fn raw_op(self, data: &[u8]) -> Builder {
        self.op(Op::Raw).short(data)
    }

    pub fn build(self) -> Vec<u8> {
        self.bytes
    }
}
