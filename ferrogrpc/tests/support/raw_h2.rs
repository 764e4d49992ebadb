//! A raw HTTP/2 client for tests: frames (RFC 9113) written and parsed by
//! hand over a `TcpStream`, with just enough HPACK (RFC 7541) to send header
//! blocks (literals, never Huffman) and to read the server's (static and
//! dynamic table, Huffman strings). Tests script the exact frame sequence;
//! nothing is answered behind their back unless they ask (`auto_ack_pings`).
//! Every read and every write has a timeout, so a test never hangs.

#![allow(dead_code)]

use std::{collections::VecDeque, fmt, io, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a single write may take before it fails with `TimedOut`.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest frame payload we accept from the server (we never raise
/// SETTINGS_MAX_FRAME_SIZE above its 16 KiB default).
const MAX_PAYLOAD: usize = 1 << 14;

/// Frame types (RFC 9113 §6).
pub mod kind {
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
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Error codes (RFC 9113 §7).
pub mod code {
    pub const NO_ERROR: u32 = 0x0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const INTERNAL_ERROR: u32 = 0x2;
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    pub const STREAM_CLOSED: u32 = 0x5;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const CANCEL: u32 = 0x8;
    pub const COMPRESSION_ERROR: u32 = 0x9;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
}

/// SETTINGS identifiers.
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// A frame from the server, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        end_stream: bool,
        data: Vec<u8>,
    },
    /// A whole header block: HEADERS plus its CONTINUATION frames, decoded.
    /// Values are shown lossily as UTF-8.
    Headers {
        stream_id: u32,
        end_stream: bool,
        fields: Vec<(String, String)>,
    },
    RstStream {
        stream_id: u32,
        error_code: u32,
    },
    Settings {
        ack: bool,
        params: Vec<(u16, u32)>,
    },
    Ping {
        ack: bool,
        payload: [u8; 8],
    },
    GoAway {
        last_stream_id: u32,
        error_code: u32,
        debug_data: Vec<u8>,
    },
    WindowUpdate {
        stream_id: u32,
        increment: u32,
    },
    /// PRIORITY, PUSH_PROMISE, unknown types: left unparsed.
    Other {
        kind: u8,
        flags: u8,
        stream_id: u32,
        payload: Vec<u8>,
    },
}

impl Frame {
    /// The value of header `name` in a `Headers` frame.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            Frame::Headers { fields, .. } => fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }

    /// The stream the frame belongs to (0 for connection frames).
    pub fn stream_id(&self) -> u32 {
        match *self {
            Frame::Data { stream_id, .. }
            | Frame::Headers { stream_id, .. }
            | Frame::RstStream { stream_id, .. }
            | Frame::WindowUpdate { stream_id, .. }
            | Frame::Other { stream_id, .. } => stream_id,
            Frame::Settings { .. } | Frame::Ping { .. } | Frame::GoAway { .. } => 0,
        }
    }

    pub fn is_goaway(&self) -> bool {
        matches!(self, Frame::GoAway { .. })
    }
}

/// Why a read returned no frame.
#[derive(Debug)]
pub enum ReadError {
    /// Nothing (complete) arrived in time.
    Timeout,
    /// The server closed the connection cleanly.
    Eof,
    /// A socket error (a reset connection shows up here).
    Io(io::Error),
    /// The server sent something that is not valid HTTP/2 or HPACK.
    Protocol(String),
}

impl ReadError {
    /// Whether the connection is gone: EOF, or reset/aborted by the peer.
    pub fn is_closed(&self) -> bool {
        match self {
            ReadError::Eof => true,
            ReadError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            ),
            _ => false,
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Timeout => f.write_str("timed out"),
            ReadError::Eof => f.write_str("connection closed (EOF)"),
            ReadError::Io(e) => write!(f, "I/O error: {e}"),
            ReadError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

/// The frames read until the connection ended (or the time ran out).
#[derive(Debug)]
pub struct Drained {
    pub frames: Vec<Frame>,
    /// How reading stopped.
    pub end: ReadError,
    /// When reading stopped.
    pub at: Instant,
}

impl Drained {
    pub fn closed(&self) -> bool {
        self.end.is_closed()
    }

    /// The first GOAWAY: (last_stream_id, error_code, debug_data).
    pub fn goaway(&self) -> Option<(u32, u32, &[u8])> {
        self.goaways().next()
    }

    pub fn goaways(&self) -> impl Iterator<Item = (u32, u32, &[u8])> {
        self.frames.iter().filter_map(|f| match f {
            Frame::GoAway {
                last_stream_id,
                error_code,
                debug_data,
            } => Some((*last_stream_id, *error_code, debug_data.as_slice())),
            _ => None,
        })
    }
}

// ===== encoding frames =====

/// One frame: the 9-byte header and the payload.
pub fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 1 << 24, "frame payload too long");
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn settings_frame(params: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(params.len() * 6);
    for (id, value) in params {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(kind::SETTINGS, 0, 0, &payload)
}

/// HEADERS carrying a whole header block (END_HEADERS set).
pub fn headers_frame(stream_id: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
    let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
    frame(
        kind::HEADERS,
        flags,
        stream_id,
        &encode_header_block(fields),
    )
}

pub fn data_frame(stream_id: u32, data: &[u8], end_stream: bool) -> Vec<u8> {
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    frame(kind::DATA, flags, stream_id, data)
}

pub fn rst_frame(stream_id: u32, error_code: u32) -> Vec<u8> {
    frame(kind::RST_STREAM, 0, stream_id, &error_code.to_be_bytes())
}

pub fn ping_frame(ack: bool, payload: [u8; 8]) -> Vec<u8> {
    frame(kind::PING, if ack { flag::ACK } else { 0 }, 0, &payload)
}

pub fn window_update_frame(stream_id: u32, increment: u32) -> Vec<u8> {
    frame(kind::WINDOW_UPDATE, 0, stream_id, &increment.to_be_bytes())
}

pub fn goaway_frame(last_stream_id: u32, error_code: u32, debug_data: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8 + debug_data.len());
    payload.extend_from_slice(&(last_stream_id & 0x7fff_ffff).to_be_bytes());
    payload.extend_from_slice(&error_code.to_be_bytes());
    payload.extend_from_slice(debug_data);
    frame(kind::GOAWAY, 0, 0, &payload)
}

/// An HPACK header block of "literal header field without indexing — new
/// name" representations, no Huffman: stateless, so any block can be sent
/// any number of times, on any stream, in any order.
pub fn encode_header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack::encode_string(name.as_bytes(), &mut out);
        hpack::encode_string(value.as_bytes(), &mut out);
    }
    out
}

// ===== the connection =====

/// A raw HTTP/2 client connection.
pub struct Conn {
    tcp: TcpStream,
    rbuf: Vec<u8>,
    /// Frames read but not yet handed out (seen during `handshake`).
    pending: VecDeque<Frame>,
    hpack: hpack::Decoder,
    /// When set, each non-ACK PING read is answered with an ACK at once
    /// (the frame is still returned).
    pub auto_ack_pings: bool,
    /// The server's SETTINGS, once read.
    pub server_settings: Vec<(u16, u32)>,
}

impl Conn {
    /// Opens the TCP connection; sends nothing.
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        Conn::over(tcp)
    }

    fn over(tcp: TcpStream) -> io::Result<Conn> {
        tcp.set_nodelay(true)?;
        Ok(Conn {
            tcp,
            rbuf: Vec::with_capacity(32 << 10),
            pending: VecDeque::new(),
            hpack: hpack::Decoder::new(4096),
            auto_ack_pings: false,
            server_settings: Vec::new(),
        })
    }

    /// The server end of a connection a test accepted: reads the client's
    /// preface and sends an empty SETTINGS. The client's SETTINGS are read
    /// like any other frame.
    pub async fn accept(tcp: TcpStream) -> io::Result<Conn> {
        let mut conn = Conn::over(tcp)?;
        let mut preface = [0u8; PREFACE.len()];
        match tokio::time::timeout(Duration::from_secs(5), conn.tcp.read_exact(&mut preface)).await
        {
            Ok(Ok(_)) if preface == PREFACE => {}
            Ok(Ok(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not the HTTP/2 preface",
                ))
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no preface")),
        }
        conn.send_settings(&[]).await?;
        Ok(conn)
    }

    /// Connects and completes the HTTP/2 handshake: preface and an empty
    /// SETTINGS; reads the server's SETTINGS (and ACKs them) and the ACK of
    /// ours. Other frames seen meanwhile are kept for later reads.
    ///
    /// # Panics
    /// When any of it fails or takes more than 5 s.
    pub async fn handshake(addr: SocketAddr) -> Conn {
        let mut conn = Conn::connect(addr).await.expect("connect");
        conn.write_raw(PREFACE).await.expect("send preface");
        conn.send_settings(&[]).await.expect("send SETTINGS");
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut got_settings, mut got_ack) = (false, false);
        let mut held = VecDeque::new();
        while !(got_settings && got_ack) {
            let left = deadline.saturating_duration_since(Instant::now());
            match conn.read_frame(left).await {
                Ok(Frame::Settings { ack: false, params }) => {
                    conn.server_settings = params;
                    conn.send_settings_ack().await.expect("send SETTINGS ACK");
                    got_settings = true;
                }
                Ok(Frame::Settings { ack: true, .. }) => got_ack = true,
                Ok(other) => held.push_back(other),
                Err(e) => panic!("handshake: {e}"),
            }
        }
        conn.pending = held;
        conn
    }

    /// A setting the server sent, if it sent it.
    pub fn server_setting(&self, id: u16) -> Option<u32> {
        self.server_settings
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| *v)
    }

    // ----- writing -----

    /// Writes bytes as they are (partial prefaces, pre-built batches).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.tcp.write_all(bytes)).await {
            Ok(res) => res,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
    }

    pub async fn send_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        self.write_raw(&frame(kind, flags, stream_id, payload))
            .await
    }

    pub async fn send_settings(&mut self, params: &[(u16, u32)]) -> io::Result<()> {
        self.write_raw(&settings_frame(params)).await
    }

    pub async fn send_settings_ack(&mut self) -> io::Result<()> {
        self.send_frame(kind::SETTINGS, flag::ACK, 0, &[]).await
    }

    /// HEADERS with the whole block (END_HEADERS).
    pub async fn send_headers(
        &mut self,
        stream_id: u32,
        fields: &[(&str, &str)],
        end_stream: bool,
    ) -> io::Result<()> {
        self.write_raw(&headers_frame(stream_id, fields, end_stream))
            .await
    }

    /// The header block split into HEADERS + CONTINUATION frames of at most
    /// `chunk` bytes each; END_HEADERS on the last.
    pub async fn send_headers_split(
        &mut self,
        stream_id: u32,
        fields: &[(&str, &str)],
        end_stream: bool,
        chunk: usize,
    ) -> io::Result<()> {
        let block = encode_header_block(fields);
        let mut parts: Vec<&[u8]> = block.chunks(chunk.max(1)).collect();
        if parts.is_empty() {
            parts.push(&[]);
        }
        let last = parts.len() - 1;
        let mut out = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let end_headers = if i == last { flag::END_HEADERS } else { 0 };
            if i == 0 {
                let es = if end_stream { flag::END_STREAM } else { 0 };
                out.extend(frame(kind::HEADERS, es | end_headers, stream_id, part));
            } else {
                out.extend(frame(kind::CONTINUATION, end_headers, stream_id, part));
            }
        }
        self.write_raw(&out).await
    }

    pub async fn send_data(
        &mut self,
        stream_id: u32,
        data: &[u8],
        end_stream: bool,
    ) -> io::Result<()> {
        self.write_raw(&data_frame(stream_id, data, end_stream))
            .await
    }

    pub async fn send_ping(&mut self, payload: [u8; 8]) -> io::Result<()> {
        self.write_raw(&ping_frame(false, payload)).await
    }

    pub async fn send_ping_ack(&mut self, payload: [u8; 8]) -> io::Result<()> {
        self.write_raw(&ping_frame(true, payload)).await
    }

    pub async fn send_rst(&mut self, stream_id: u32, error_code: u32) -> io::Result<()> {
        self.write_raw(&rst_frame(stream_id, error_code)).await
    }

    pub async fn send_window_update(&mut self, stream_id: u32, increment: u32) -> io::Result<()> {
        self.write_raw(&window_update_frame(stream_id, increment))
            .await
    }

    pub async fn send_goaway(
        &mut self,
        last_stream_id: u32,
        error_code: u32,
        debug_data: &[u8],
    ) -> io::Result<()> {
        self.write_raw(&goaway_frame(last_stream_id, error_code, debug_data))
            .await
    }

    // ----- reading -----

    /// The next frame, waiting at most `timeout`. A HEADERS frame without
    /// END_HEADERS is returned once its CONTINUATION frames have arrived
    /// (within the same timeout).
    pub async fn read_frame(&mut self, timeout: Duration) -> Result<Frame, ReadError> {
        let frame = match self.pending.pop_front() {
            Some(f) => f,
            None => self.read_wire_frame(Instant::now() + timeout).await?,
        };
        if let Frame::Ping {
            ack: false,
            payload,
        } = frame
        {
            if self.auto_ack_pings {
                // The server may be closing; a failed ACK shows up on the next read.
                let _ = self.send_ping_ack(payload).await;
            }
        }
        Ok(frame)
    }

    /// One frame from the socket; HEADERS with their CONTINUATIONs, decoded.
    async fn read_wire_frame(&mut self, deadline: Instant) -> Result<Frame, ReadError> {
        let (kind, flags, stream_id, payload) = self.read_raw(deadline).await?;
        let frame = match kind {
            kind::HEADERS => {
                let mut block = strip_headers_payload(flags, payload)?;
                let mut end_headers = flags & flag::END_HEADERS != 0;
                while !end_headers {
                    let (k, f, id, more) = self.read_raw(deadline).await?;
                    if k != kind::CONTINUATION || id != stream_id {
                        return Err(ReadError::Protocol(format!(
                            "expected CONTINUATION on stream {stream_id}, got type {k} on stream {id}"
                        )));
                    }
                    block.extend_from_slice(&more);
                    end_headers = f & flag::END_HEADERS != 0;
                }
                let fields = self.hpack.decode(&block).map_err(ReadError::Protocol)?;
                Frame::Headers {
                    stream_id,
                    end_stream: flags & flag::END_STREAM != 0,
                    fields: fields
                        .into_iter()
                        .map(|(n, v)| {
                            (
                                String::from_utf8_lossy(&n).into_owned(),
                                String::from_utf8_lossy(&v).into_owned(),
                            )
                        })
                        .collect(),
                }
            }
            kind::CONTINUATION => {
                return Err(ReadError::Protocol(format!(
                    "CONTINUATION on stream {stream_id} without HEADERS"
                )))
            }
            _ => parse_frame(kind, flags, stream_id, payload)?,
        };
        Ok(frame)
    }

    /// Reads frames, dropping those `want` rejects, until one it accepts;
    /// `within` bounds the whole wait.
    pub async fn read_until(
        &mut self,
        within: Duration,
        mut want: impl FnMut(&Frame) -> bool,
    ) -> Result<Frame, ReadError> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let f = self.read_frame(left).await?;
            if want(&f) {
                return Ok(f);
            }
        }
    }

    /// Reads every frame until the connection ends, an error, or `within`
    /// has passed (then `end` is `Timeout`).
    pub async fn drain(&mut self, within: Duration) -> Drained {
        let deadline = Instant::now() + within;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left).await {
                Ok(f) => frames.push(f),
                Err(end) => {
                    return Drained {
                        frames,
                        end,
                        at: Instant::now(),
                    }
                }
            }
        }
    }

    /// Reads one whole frame (header + payload) before `deadline`.
    async fn read_raw(&mut self, deadline: Instant) -> Result<(u8, u8, u32, Vec<u8>), ReadError> {
        loop {
            if self.rbuf.len() >= 9 {
                let len =
                    u32::from_be_bytes([0, self.rbuf[0], self.rbuf[1], self.rbuf[2]]) as usize;
                if len > MAX_PAYLOAD {
                    return Err(ReadError::Protocol(format!(
                        "frame of {len} bytes is over SETTINGS_MAX_FRAME_SIZE"
                    )));
                }
                if self.rbuf.len() >= 9 + len {
                    let kind = self.rbuf[3];
                    let flags = self.rbuf[4];
                    let stream_id = u32::from_be_bytes([
                        self.rbuf[5],
                        self.rbuf[6],
                        self.rbuf[7],
                        self.rbuf[8],
                    ]) & 0x7fff_ffff;
                    let payload = self.rbuf[9..9 + len].to_vec();
                    self.rbuf.drain(..9 + len);
                    return Ok((kind, flags, stream_id, payload));
                }
            }
            // `read_buf` on a TcpStream is cancel-safe: a timeout loses nothing.
            match tokio::time::timeout_at(deadline, self.tcp.read_buf(&mut self.rbuf)).await {
                Err(_) => return Err(ReadError::Timeout),
                Ok(Ok(0)) => return Err(ReadError::Eof),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(ReadError::Io(e)),
            }
        }
    }
}

/// Removes padding and priority fields from a HEADERS payload.
fn strip_headers_payload(flags: u8, payload: Vec<u8>) -> Result<Vec<u8>, ReadError> {
    let mut body = unpad(flags, payload)?;
    if flags & flag::PRIORITY != 0 {
        if body.len() < 5 {
            return Err(ReadError::Protocol("HEADERS too short for priority".into()));
        }
        body.drain(..5);
    }
    Ok(body)
}

fn unpad(flags: u8, mut payload: Vec<u8>) -> Result<Vec<u8>, ReadError> {
    if flags & flag::PADDED == 0 {
        return Ok(payload);
    }
    let Some(&pad) = payload.first() else {
        return Err(ReadError::Protocol(
            "padded frame without pad length".into(),
        ));
    };
    let pad = usize::from(pad);
    if pad + 1 > payload.len() {
        return Err(ReadError::Protocol("padding longer than the frame".into()));
    }
    payload.truncate(payload.len() - pad);
    payload.remove(0);
    Ok(payload)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn parse_frame(kind: u8, flags: u8, stream_id: u32, payload: Vec<u8>) -> Result<Frame, ReadError> {
    let bad = |what: &str| ReadError::Protocol(format!("{what}: {} bytes", payload.len()));
    Ok(match kind {
        kind::DATA => Frame::Data {
            stream_id,
            end_stream: flags & flag::END_STREAM != 0,
            data: unpad(flags, payload)?,
        },
        kind::RST_STREAM => {
            if payload.len() != 4 {
                return Err(bad("RST_STREAM"));
            }
            Frame::RstStream {
                stream_id,
                error_code: be32(&payload),
            }
        }
        kind::SETTINGS => {
            if payload.len() % 6 != 0 {
                return Err(bad("SETTINGS"));
            }
            Frame::Settings {
                ack: flags & flag::ACK != 0,
                params: payload
                    .chunks(6)
                    .map(|c| (u16::from_be_bytes([c[0], c[1]]), be32(&c[2..])))
                    .collect(),
            }
        }
        kind::PING => {
            let payload: [u8; 8] = payload.as_slice().try_into().map_err(|_| bad("PING"))?;
            Frame::Ping {
                ack: flags & flag::ACK != 0,
                payload,
            }
        }
        kind::GOAWAY => {
            if payload.len() < 8 {
                return Err(bad("GOAWAY"));
            }
            Frame::GoAway {
                last_stream_id: be32(&payload) & 0x7fff_ffff,
                error_code: be32(&payload[4..]),
                debug_data: payload[8..].to_vec(),
            }
        }
        kind::WINDOW_UPDATE => {
            if payload.len() != 4 {
                return Err(bad("WINDOW_UPDATE"));
            }
            Frame::WindowUpdate {
                stream_id,
                increment: be32(&payload) & 0x7fff_ffff,
            }
        }
        _ => Frame::Other {
            kind,
            flags,
            stream_id,
            payload,
        },
    })
}

// ===== HPACK =====

/// Just enough HPACK (RFC 7541) for a test client.
pub mod hpack {
    use std::collections::VecDeque;

    /// The static table (Appendix A); index 1 is `STATIC[0]`.
    const STATIC: [(&str, &str); 61] = [
        (":authority", ""),
        (":method", "GET"),
        (":method", "POST"),
        (":path", "/"),
        (":path", "/index.html"),
        (":scheme", "http"),
        (":scheme", "https"),
        (":status", "200"),
        (":status", "204"),
        (":status", "206"),
        (":status", "304"),
        (":status", "400"),
        (":status", "404"),
        (":status", "500"),
        ("accept-charset", ""),
        ("accept-encoding", "gzip, deflate"),
        ("accept-language", ""),
        ("accept-ranges", ""),
        ("accept", ""),
        ("access-control-allow-origin", ""),
        ("age", ""),
        ("allow", ""),
        ("authorization", ""),
        ("cache-control", ""),
        ("content-disposition", ""),
        ("content-encoding", ""),
        ("content-language", ""),
        ("content-length", ""),
        ("content-location", ""),
        ("content-range", ""),
        ("content-type", ""),
        ("cookie", ""),
        ("date", ""),
        ("etag", ""),
        ("expect", ""),
        ("expires", ""),
        ("from", ""),
        ("host", ""),
        ("if-match", ""),
        ("if-modified-since", ""),
        ("if-none-match", ""),
        ("if-range", ""),
        ("if-unmodified-since", ""),
        ("last-modified", ""),
        ("link", ""),
        ("location", ""),
        ("max-forwards", ""),
        ("proxy-authenticate", ""),
        ("proxy-authorization", ""),
        ("range", ""),
        ("referer", ""),
        ("refresh", ""),
        ("retry-after", ""),
        ("server", ""),
        ("set-cookie", ""),
        ("strict-transport-security", ""),
        ("transfer-encoding", ""),
        ("user-agent", ""),
        ("vary", ""),
        ("via", ""),
        ("www-authenticate", ""),
    ];

    pub type Field = (Vec<u8>, Vec<u8>);

    /// An HPACK decoder with its dynamic table.
    pub struct Decoder {
        table: VecDeque<Field>,
        size: usize,
        /// The current maximum size (changed by size updates).
        max_size: usize,
        /// The limit we advertised (SETTINGS_HEADER_TABLE_SIZE).
        limit: usize,
    }

    impl Decoder {
        pub fn new(limit: usize) -> Decoder {
            Decoder {
                table: VecDeque::new(),
                size: 0,
                max_size: limit,
                limit,
            }
        }

        /// Decodes one whole header block.
        pub fn decode(&mut self, block: &[u8]) -> Result<Vec<Field>, String> {
            let mut fields = Vec::new();
            let mut pos = 0;
            while pos < block.len() {
                let b = block[pos];
                if b & 0x80 != 0 {
                    // Indexed header field.
                    let index = decode_int(block, &mut pos, 7)?;
                    fields.push(self.get(index)?);
                } else if b & 0xc0 == 0x40 {
                    // Literal with incremental indexing.
                    let field = self.literal(block, &mut pos, 6)?;
                    self.insert(field.clone());
                    fields.push(field);
                } else if b & 0xe0 == 0x20 {
                    // Dynamic table size update.
                    let size = decode_int(block, &mut pos, 5)?;
                    if size > self.limit {
                        return Err(format!("table size update {size} over {}", self.limit));
                    }
                    self.max_size = size;
                    self.evict();
                } else {
                    // Literal without indexing (0000) or never indexed (0001).
                    fields.push(self.literal(block, &mut pos, 4)?);
                }
            }
            Ok(fields)
        }

        fn literal(&self, block: &[u8], pos: &mut usize, prefix: u8) -> Result<Field, String> {
            let index = decode_int(block, pos, prefix)?;
            let name = if index == 0 {
                decode_string(block, pos)?
            } else {
                self.get(index)?.0
            };
            let value = decode_string(block, pos)?;
            Ok((name, value))
        }

        fn get(&self, index: usize) -> Result<Field, String> {
            match index {
                0 => Err("index 0".into()),
                1..=61 => {
                    let (n, v) = STATIC[index - 1];
                    Ok((n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                }
                _ => self
                    .table
                    .get(index - 62)
                    .cloned()
                    .ok_or_else(|| format!("index {index} is past the dynamic table")),
            }
        }

        fn insert(&mut self, field: Field) {
            let size = field.0.len() + field.1.len() + 32;
            self.table.push_front(field);
            self.size += size;
            self.evict();
        }

        fn evict(&mut self) {
            while self.size > self.max_size {
                let (n, v) = self.table.pop_back().expect("size accounts for entries");
                self.size -= n.len() + v.len() + 32;
            }
        }

        /// Entries in the dynamic table (for tests of the decoder).
        pub fn table_len(&self) -> usize {
            self.table.len()
        }
    }

    /// An integer with an `prefix`-bit prefix (§5.1), starting at `*pos`.
    pub fn decode_int(buf: &[u8], pos: &mut usize, prefix: u8) -> Result<usize, String> {
        let mask = (1usize << prefix) - 1;
        let first = *buf.get(*pos).ok_or("integer past the end")?;
        *pos += 1;
        let mut value = usize::from(first) & mask;
        if value < mask {
            return Ok(value);
        }
        let mut shift = 0;
        loop {
            let b = *buf.get(*pos).ok_or("integer past the end")?;
            *pos += 1;
            if shift > 28 {
                return Err("integer too large".into());
            }
            value += usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
    }

    /// Appends an integer with an `prefix`-bit prefix; `first` holds the
    /// bits above the prefix.
    pub fn encode_int(mut value: usize, prefix: u8, first: u8, out: &mut Vec<u8>) {
        let mask = (1usize << prefix) - 1;
        if value < mask {
            out.push(first | value as u8);
            return;
        }
        out.push(first | mask as u8);
        value -= mask;
        while value >= 0x80 {
            out.push((value & 0x7f) as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// A string literal without Huffman coding.
    pub fn encode_string(s: &[u8], out: &mut Vec<u8>) {
        encode_int(s.len(), 7, 0x00, out);
        out.extend_from_slice(s);
    }

    fn decode_string(buf: &[u8], pos: &mut usize) -> Result<Vec<u8>, String> {
        let huffman = buf.get(*pos).ok_or("string past the end")? & 0x80 != 0;
        let len = decode_int(buf, pos, 7)?;
        let end = pos
            .checked_add(len)
            .filter(|e| *e <= buf.len())
            .ok_or("string past the end")?;
        let raw = &buf[*pos..end];
        *pos = end;
        if huffman {
            huffman_decode(raw)
        } else {
            Ok(raw.to_vec())
        }
    }

    /// Code lengths of the HPACK Huffman code (Appendix B), symbols 0..=256
    /// (256 is EOS). The code is canonical: codes of one length are
    /// consecutive in symbol order, and shorter codes come first, so the
    /// lengths determine every code.
    const CODE_LENGTHS: [u8; 257] = [
        // 0..=31: control characters
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
        28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
        // ' ' ! " # $ % & ' ( ) * + , - . /
        6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
        // 0-9 : ; < = > ?
        5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
        // @ A-O
        13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
        // P-Z [ \ ] ^ _
        7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
        // ` a-o
        15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
        // p-z { | } ~ DEL
        6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
        // 128..=255
        20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
        24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
        22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
        21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
        26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
        19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
        20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
        26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
        // EOS
        30,
    ];

    const MAX_LEN: usize = 30;
    const EOS: u16 = 256;

    /// The canonical code, by length: the first code of each length, how
    /// many codes have it, and the symbols sorted by (length, symbol).
    pub struct Canonical {
        pub first: [u32; MAX_LEN + 1],
        pub count: [u32; MAX_LEN + 1],
        /// Index into `symbols` of the first symbol of each length.
        pub offset: [usize; MAX_LEN + 1],
        pub symbols: Vec<u16>,
    }

    pub fn canonical() -> Canonical {
        let mut count = [0u32; MAX_LEN + 1];
        for &len in &CODE_LENGTHS {
            count[usize::from(len)] += 1;
        }
        let mut first = [0u32; MAX_LEN + 1];
        let mut offset = [0usize; MAX_LEN + 1];
        let mut code = 0u32;
        let mut index = 0usize;
        for len in 1..=MAX_LEN {
            first[len] = code;
            offset[len] = index;
            code = (code + count[len]) << 1;
            index += count[len] as usize;
        }
        let mut symbols: Vec<u16> = (0..=EOS).collect();
        symbols.sort_by_key(|&s| (CODE_LENGTHS[usize::from(s)], s));
        Canonical {
            first,
            count,
            offset,
            symbols,
        }
    }

    /// The code and length of `symbol`.
    pub fn code_of(c: &Canonical, symbol: u16) -> (u32, u8) {
        let len = CODE_LENGTHS[usize::from(symbol)];
        let l = usize::from(len);
        let rank = c.symbols[c.offset[l]..c.offset[l] + c.count[l] as usize]
            .iter()
            .position(|&s| s == symbol)
            .expect("every symbol has a code");
        (c.first[l] + rank as u32, len)
    }

    /// Decodes a Huffman-coded string (§5.2): canonical decoding bit by
    /// bit; the padding must be under 8 bits of 1s, and EOS is an error.
    pub fn huffman_decode(input: &[u8]) -> Result<Vec<u8>, String> {
        thread_local! {
            static CODE: Canonical = canonical();
        }
        CODE.with(|c| {
            let mut out = Vec::with_capacity(input.len() * 8 / 5);
            let (mut code, mut len, mut all_ones) = (0u32, 0usize, true);
            for byte in input {
                for bit in (0..8).rev() {
                    let b = u32::from((byte >> bit) & 1);
                    code = (code << 1) | b;
                    all_ones &= b == 1;
                    len += 1;
                    if len > MAX_LEN {
                        return Err("Huffman code longer than 30 bits".into());
                    }
                    if c.count[len] > 0
                        && code >= c.first[len]
                        && code - c.first[len] < c.count[len]
                    {
                        let sym = c.symbols[c.offset[len] + (code - c.first[len]) as usize];
                        if sym == EOS {
                            return Err("EOS in a Huffman string".into());
                        }
                        out.push(sym as u8);
                        (code, len, all_ones) = (0, 0, true);
                    }
                }
            }
            if len >= 8 || !all_ones {
                return Err("bad Huffman padding".into());
            }
            Ok(out)
        })
    }

    /// Huffman-encodes `input` (tests of the decoder only; we send plain literals).
    pub fn huffman_encode(input: &[u8]) -> Vec<u8> {
        let c = canonical();
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u64, 0u32);
        for &byte in input {
            let (code, len) = code_of(&c, u16::from(byte));
            acc = (acc << len) | u64::from(code);
            bits += u32::from(len);
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            let pad = 8 - bits;
            out.push(((acc << pad) | ((1 << pad) - 1)) as u8);
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn hex(s: &str) -> Vec<u8> {
            let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        }

        fn strs(fields: &[Field]) -> Vec<(String, String)> {
            fields
                .iter()
                .map(|(n, v)| {
                    (
                        String::from_utf8(n.clone()).unwrap(),
                        String::from_utf8(v.clone()).unwrap(),
                    )
                })
                .collect()
        }

        #[test]
        fn huffman_code_is_complete_and_matches_known_codes() {
            // Kraft: a complete prefix code fills the code space exactly.
            let total: u64 = CODE_LENGTHS.iter().map(|&l| 1u64 << (30 - l)).sum();
            assert_eq!(total, 1 << 30);
            let c = canonical();
            // Codes from Appendix B, spread over the lengths.
            for (sym, code, len) in [
                (b'0' as u16, 0x0, 5),
                (b't' as u16, 0x9, 5),
                (b' ' as u16, 0x14, 6),
                (b'u' as u16, 0x2d, 6),
                (b':' as u16, 0x5c, 7),
                (b'z' as u16, 0x7b, 7),
                (b'&' as u16, 0xf8, 8),
                (b'!' as u16, 0x3f8, 10),
                (b'~' as u16, 0x1ffd, 13),
                (b'\\' as u16, 0x7fff0, 19),
                (0, 0x1ff8, 13),
                (1, 0x7f_ffd8, 23),
                (9, 0xff_ffea, 24),
                (10, 0x3fff_fffc, 30),
                (127, 0xfff_fffc, 28),
                (128, 0xf_ffe6, 20),
                (153, 0x1f_ffdc, 21),
                (199, 0x1ff_ffec, 25),
                (203, 0x7ff_ffde, 27),
                (255, 0x3ff_ffee, 26),
                (256, 0x3fff_ffff, 30),
            ] {
                assert_eq!(code_of(&c, sym), (code, len), "symbol {sym}");
            }
        }

        #[test]
        fn huffman_rfc_examples() {
            // RFC 7541 C.4.1-C.4.3.
            assert_eq!(
                huffman_decode(&hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff")).unwrap(),
                b"www.example.com"
            );
            assert_eq!(huffman_decode(&hex("a8eb 1064 9cbf")).unwrap(), b"no-cache");
            assert_eq!(
                huffman_decode(&hex("25a8 49e9 5ba9 7d7f")).unwrap(),
                b"custom-key"
            );
            assert_eq!(
                huffman_decode(&hex("25a8 49e9 5bb8 e8b4 bf")).unwrap(),
                b"custom-value"
            );
            assert_eq!(
                huffman_encode(b"www.example.com"),
                hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff")
            );
        }

        #[test]
        fn huffman_round_trips_every_byte_and_rejects_bad_padding() {
            let all: Vec<u8> = (0..=255).collect();
            assert_eq!(huffman_decode(&huffman_encode(&all)).unwrap(), all);
            for n in 0..40 {
                let s: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
                assert_eq!(huffman_decode(&huffman_encode(&s)).unwrap(), s);
            }
            // '0' is 00000: 3 padding bits must be 1s.
            assert!(huffman_decode(&[0b0000_0000]).is_err());
            assert_eq!(huffman_decode(&[0b0000_0111]).unwrap(), b"0");
            // A whole byte of padding is too much.
            assert!(huffman_decode(&[0xff]).is_err());
            // EOS itself.
            assert!(huffman_decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
        }

        #[test]
        fn decodes_rfc_request_examples_with_dynamic_table() {
            let mut d = Decoder::new(4096);
            // C.4.1
            let f = d
                .decode(&hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"))
                .unwrap();
            assert_eq!(
                strs(&f),
                [
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":authority", "www.example.com")
                ]
                .map(|(a, b)| (a.to_string(), b.to_string()))
            );
            // C.4.2: index 62 is the entry added above.
            let f = d.decode(&hex("8286 84be 5886 a8eb 1064 9cbf")).unwrap();
            assert_eq!(strs(&f)[3], (":authority".into(), "www.example.com".into()));
            assert_eq!(strs(&f)[4], ("cache-control".into(), "no-cache".into()));
            // C.4.3
            let f = d
                .decode(&hex(
                    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
                ))
                .unwrap();
            assert_eq!(strs(&f)[1], (":scheme".into(), "https".into()));
            assert_eq!(strs(&f)[2], (":path".into(), "/index.html".into()));
            assert_eq!(strs(&f)[3], (":authority".into(), "www.example.com".into()));
            assert_eq!(strs(&f)[4], ("custom-key".into(), "custom-value".into()));
            assert_eq!(d.table_len(), 3);
        }

        #[test]
        fn eviction_size_update_and_our_literals() {
            // Table of 64 bytes: one 34-byte entry fits, a second evicts it.
            let mut d = Decoder::new(4096);
            let mut block = vec![0x3f, 0x21]; // size update to 64 (5-bit prefix: 31 + 33)
            block.extend([0x40, 0x01, b'a', 0x01, b'b']); // a: b, 34 bytes
            block.extend([0x40, 0x01, b'c', 0x01, b'd']); // c: d, evicts a: b
            block.push(0xbe); // index 62 = c: d
            let f = d.decode(&block).unwrap();
            assert_eq!(f[2], (b"c".to_vec(), b"d".to_vec()));
            assert_eq!(d.table_len(), 1);
            assert!(d.decode(&[0xbf]).is_err(), "index 63 is gone");
            assert!(
                d.decode(&[0x3f, 0xe2, 0x1f]).is_err(),
                "size update over the limit"
            );

            let block =
                super::super::encode_header_block(&[("x-long", &"v".repeat(300)), ("k", "")]);
            let f = Decoder::new(4096).decode(&block).unwrap();
            assert_eq!(f[0].1.len(), 300);
            assert_eq!(f[1], (b"k".to_vec(), Vec::new()));
        }
    }
}
