//! A window on the HTTP/2 frames crossing a connection. h2 answers PINGs by
//! itself and keeps received RST_STREAMs and GOAWAY debug data to itself;
//! gRPC needs them (ping enforcement, rapid-reset limits, `too_many_pings`).
//! [`Inspect`] sits between the socket (or TLS) and h2 and notes frame
//! headers as the bytes pass, without changing a byte.

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
    task::{ready, Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::keepalive::{EnforcementPolicy, IDLE_PING_INTERVAL, MAX_PING_STRIKES};

const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_GOAWAY: u8 = 0x7;
const FRAME_WINDOW_UPDATE: u8 = 0x8;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_ACK: u8 = 0x1;
/// The client connection preface.
const PREFACE_LEN: usize = 24;
/// Every connection's flow-control window before any WINDOW_UPDATE (RFC
/// 9113 §6.9.2: SETTINGS change only the streams' windows).
#[cfg_attr(not(feature = "channelz"), allow(dead_code))]
const INITIAL_CONNECTION_WINDOW: i64 = 65_535;
/// How much data must arrive before a BDP sample starts.
const BDP_MIN_BYTES: u64 = 16 << 10;
/// The payload of the PING h2 sends after a graceful GOAWAY(max id); its
/// acknowledgement tells that the client has seen the GOAWAY, and h2 then
/// sends the final GOAWAY with the last stream it will process.
const DRAIN_PING_PAYLOAD: [u8; 8] = [0x0b, 0x7b, 0xa2, 0xf0, 0x8b, 0x9b, 0xfe, 0x54];
/// How much GOAWAY debug data is kept.
const MAX_DEBUG_DATA: usize = 256;

/// Incremental parser of frame headers in a byte stream.
#[derive(Default)]
struct Scanner {
    preface_left: usize,
    head: [u8; 9],
    head_len: usize,
    payload_left: usize,
    kind: u8,
    flags: u8,
    capture: Vec<u8>,
    capture_left: usize,
    frame_len: usize,
}

impl Scanner {
    fn new(preface: bool) -> Scanner {
        Scanner {
            preface_left: if preface { PREFACE_LEN } else { 0 },
            ..Scanner::default()
        }
    }

    fn stream_id(&self) -> u32 {
        u32::from_be_bytes([self.head[5], self.head[6], self.head[7], self.head[8]]) & 0x7fff_ffff
    }

    fn feed(&mut self, mut buf: &[u8], mut on_frame: impl FnMut(u8, u8, u32, usize, &[u8])) {
        while !buf.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(buf.len());
                self.preface_left -= n;
                buf = &buf[n..];
                continue;
            }
            if self.head_len < 9 {
                let n = (9 - self.head_len).min(buf.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&buf[..n]);
                self.head_len += n;
                buf = &buf[n..];
                if self.head_len < 9 {
                    return;
                }
                let len =
                    u32::from_be_bytes([0, self.head[0], self.head[1], self.head[2]]) as usize;
                self.kind = self.head[3];
                self.flags = self.head[4];
                self.payload_left = len;
                self.capture.clear();
                self.capture_left = match self.kind {
                    FRAME_GOAWAY => len.min(8 + MAX_DEBUG_DATA),
                    FRAME_RST_STREAM => len.min(4),
                    FRAME_PING => len.min(8),
                    FRAME_WINDOW_UPDATE => len.min(4),
                    _ => 0,
                };
                self.frame_len = len;
                if len == 0 {
                    on_frame(self.kind, self.flags, self.stream_id(), 0, &[]);
                    self.head_len = 0;
                }
                continue;
            }
            let n = self.payload_left.min(buf.len());
            let keep = self.capture_left.min(n);
            if keep > 0 {
                self.capture.extend_from_slice(&buf[..keep]);
                self.capture_left -= keep;
            }
            self.payload_left -= n;
            buf = &buf[n..];
            if self.payload_left == 0 {
                on_frame(
                    self.kind,
                    self.flags,
                    self.stream_id(),
                    self.frame_len,
                    &self.capture,
                );
                self.head_len = 0;
            }
        }
    }
}

/// A GOAWAY received from the peer.
#[derive(Clone, Debug)]
pub(crate) struct GoAway {
    pub(crate) last_stream_id: u32,
    pub(crate) code: u32,
    pub(crate) debug_data: Bytes,
}

impl GoAway {
    /// Words for error messages.
    pub(crate) fn describe(&self) -> String {
        let reason = format!("{:?}", h2::Reason::from(self.code));
        let last = self.last_stream_id;
        if self.debug_data.is_empty() {
            format!("GOAWAY {reason} (last stream {last})")
        } else {
            format!(
                "GOAWAY {reason} (last stream {last}, debug data {:?})",
                String::from_utf8_lossy(&self.debug_data)
            )
        }
    }

    pub(crate) fn too_many_pings(&self) -> bool {
        self.code == u32::from(h2::Reason::ENHANCE_YOUR_CALM)
            && &self.debug_data[..] == b"too_many_pings"
    }
}

/// Why the server wants a connection gone.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Violation {
    pub(crate) what: &'static str,
}

struct PingState {
    last_ping: Option<Instant>,
    strikes: u32,
}

struct ResetWindow {
    start: Instant,
    count: u32,
}

/// What the connection's tasks and its inspector share.
pub(crate) struct ConnSignals {
    /// Frames received; a change means the peer is alive.
    pub(crate) inbound_frames: AtomicU64,
    /// When bytes last arrived, as nanos since `read_epoch`: keepalive
    /// counts its quiet time from here (on tokio's clock, as its timers do).
    last_read: AtomicU64,
    read_epoch: tokio::time::Instant,
    /// A server connection's channelz, set after its handshake.
    #[cfg(feature = "channelz")]
    channelz: OnceLock<Arc<crate::channelz::ServerConn>>,
    /// A client connection's channelz, set once it is connected.
    #[cfg(feature = "channelz")]
    client_channelz: OnceLock<crate::channelz::ClientConn>,
    /// Calls under way on this connection.
    pub(crate) active_streams: AtomicUsize,
    /// Whether any call was ever started on this connection.
    pub(crate) used: AtomicBool,
    /// Server: when the last call ended (for max idle), as nanos since `epoch`.
    pub(crate) idle_since: AtomicU64,
    epoch: Instant,
    enforcement: Option<EnforcementPolicy>,
    ping: Mutex<PingState>,
    reset_strikes: AtomicBool,
    reset_limit: Option<(u32, Duration)>,
    resets: Mutex<ResetWindow>,
    violation: OnceLock<Violation>,
    goaway: OnceLock<GoAway>,
    /// The lowest last stream id of the GOAWAYs received (`u32::MAX`
    /// before any): streams above it were never processed.
    goaway_last_stream: AtomicU32,
    /// Why the connection ended, when this side decided it.
    pub(crate) close_reason: OnceLock<String>,
    /// Whether the peer's first SETTINGS frame arrived.
    pub(crate) settings_received: AtomicBool,
    /// The peer acknowledged the PING that follows a graceful GOAWAY.
    pub(crate) drain_ping_acked: AtomicBool,
    /// The peer started a header block it has not finished yet.
    pub(crate) header_block_open: AtomicBool,
    /// Header blocks the peer split over several frames, so far.
    pub(crate) header_blocks_split: AtomicU64,
    /// Client: why the connection ended, set by its driver when it does.
    pub(crate) ended: OnceLock<String>,
    /// Client: wakes the connect that waits for the server's first
    /// SETTINGS (or for the connection to end first).
    pub(crate) handshake: tokio::sync::Notify,
    /// The peer's first frame was not SETTINGS: it does not speak HTTP/2
    /// (often TLS on one side only, or HTTP/1); nothing after is trusted.
    pub(crate) not_http2: AtomicBool,
    /// DATA payload bytes received (for BDP samples, and the local
    /// flow-control window).
    pub(crate) data_bytes: AtomicU64,
    /// DATA payload bytes sent (padding included, as flow control counts).
    data_bytes_sent: AtomicU64,
    /// What the WINDOW_UPDATEs on stream 0 added: sent by this side (the
    /// peer may send more), and received (this side may send more).
    window_updates_sent: AtomicU64,
    window_updates_received: AtomicU64,
    /// Whether BDP estimation is on, and data arrived since the last BDP ping.
    bdp_enabled: AtomicBool,
    bdp_wanted: AtomicBool,
    /// DATA bytes since the last BDP ping was asked for.
    bdp_accum: AtomicU64,
    /// The highest stream id the peer opened (server side).
    max_peer_stream: AtomicU32,
    /// Server: the highest stream id handed to a handler. The server takes
    /// streams in id order, so a reset of a stream at or below it cancels
    /// a call under way; one above it was reset before any work began.
    accepted_up_to: AtomicU32,
    /// A frame to write before h2's next frame (a GOAWAY with debug data,
    /// which h2 cannot send itself).
    inject: Mutex<Option<Bytes>>,
    /// Wakes the connection's task: a violation or a GOAWAY.
    pub(crate) notify: tokio::sync::Notify,
}

impl ConnSignals {
    pub(crate) fn server(
        enforcement: EnforcementPolicy,
        reset_limit: Option<(u32, Duration)>,
    ) -> Arc<ConnSignals> {
        Arc::new(ConnSignals::new(Some(enforcement), reset_limit))
    }

    pub(crate) fn client() -> Arc<ConnSignals> {
        Arc::new(ConnSignals::new(None, None))
    }

    fn new(
        enforcement: Option<EnforcementPolicy>,
        reset_limit: Option<(u32, Duration)>,
    ) -> ConnSignals {
        let now = Instant::now();
        ConnSignals {
            inbound_frames: AtomicU64::new(0),
            last_read: AtomicU64::new(0),
            read_epoch: tokio::time::Instant::now(),
            #[cfg(feature = "channelz")]
            channelz: OnceLock::new(),
            #[cfg(feature = "channelz")]
            client_channelz: OnceLock::new(),
            active_streams: AtomicUsize::new(0),
            used: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            epoch: now,
            enforcement,
            ping: Mutex::new(PingState {
                last_ping: None,
                strikes: 0,
            }),
            reset_strikes: AtomicBool::new(false),
            reset_limit,
            resets: Mutex::new(ResetWindow {
                start: now,
                count: 0,
            }),
            violation: OnceLock::new(),
            goaway: OnceLock::new(),
            goaway_last_stream: AtomicU32::new(u32::MAX),
            close_reason: OnceLock::new(),
            settings_received: AtomicBool::new(false),
            drain_ping_acked: AtomicBool::new(false),
            header_block_open: AtomicBool::new(false),
            header_blocks_split: AtomicU64::new(0),
            ended: OnceLock::new(),
            handshake: tokio::sync::Notify::new(),
            not_http2: AtomicBool::new(false),
            data_bytes: AtomicU64::new(0),
            data_bytes_sent: AtomicU64::new(0),
            window_updates_sent: AtomicU64::new(0),
            window_updates_received: AtomicU64::new(0),
            bdp_enabled: AtomicBool::new(false),
            bdp_wanted: AtomicBool::new(false),
            bdp_accum: AtomicU64::new(0),
            max_peer_stream: AtomicU32::new(0),
            accepted_up_to: AtomicU32::new(0),
            inject: Mutex::new(None),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// The violation that should end the connection, if any.
    pub(crate) fn violation(&self) -> Option<Violation> {
        self.violation.get().copied()
    }

    /// The GOAWAY the peer sent, if any.
    pub(crate) fn goaway(&self) -> Option<&GoAway> {
        self.goaway.get()
    }

    /// Whether a GOAWAY received says the server never processed
    /// `stream_id` (it is above the GOAWAY's last stream id).
    pub(crate) fn goaway_unprocessed(&self, stream_id: u32) -> bool {
        stream_id > self.goaway_last_stream.load(Ordering::Acquire)
    }

    fn violate(&self, what: &'static str) {
        if self.violation.set(Violation { what }).is_ok() {
            self.notify.notify_one();
        }
    }

    /// Bytes arrived now.
    fn note_read(&self) {
        let nanos = self.read_epoch.elapsed().as_nanos() as u64;
        self.last_read.store(nanos, Ordering::Relaxed);
    }

    /// When bytes last arrived (the connection's start before any did).
    pub(crate) fn last_read(&self) -> tokio::time::Instant {
        self.read_epoch + Duration::from_nanos(self.last_read.load(Ordering::Relaxed))
    }

    /// Sets the connection's channelz (server).
    #[cfg(feature = "channelz")]
    pub(crate) fn set_channelz(&self, conn: crate::channelz::ServerConn) {
        let _ = self.channelz.set(Arc::new(conn));
    }

    /// The connection's channelz, if it has one.
    #[cfg(feature = "channelz")]
    pub(crate) fn channelz(&self) -> Option<Arc<crate::channelz::ServerConn>> {
        self.channelz.get().cloned()
    }

    /// Sets the connection's channelz (client).
    #[cfg(feature = "channelz")]
    pub(crate) fn set_client_channelz(&self, conn: crate::channelz::ClientConn) {
        let _ = self.client_channelz.set(conn);
    }

    /// The client connection's channelz, if it has one.
    #[cfg(feature = "channelz")]
    #[inline]
    pub(crate) fn client_channelz(&self) -> Option<&crate::channelz::ClientConn> {
        self.client_channelz.get()
    }

    /// A keepalive ping went out.
    pub(crate) fn keepalive_sent(&self) {
        #[cfg(feature = "channelz")]
        if let Some(z) = self.channelz.get() {
            z.keepalive_sent();
        } else if let Some(z) = self.client_channelz.get() {
            z.keepalive_sent();
        }
    }

    /// A call started.
    pub(crate) fn stream_started(&self) {
        self.active_streams.fetch_add(1, Ordering::AcqRel);
        // Written once, so busy connections do not keep writing the line.
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
    }

    /// A call ended.
    pub(crate) fn stream_ended(&self) {
        if self.active_streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            let nanos = self.epoch.elapsed().as_nanos() as u64;
            self.idle_since.store(nanos, Ordering::Release);
        }
    }

    /// When the connection last became idle, if it is idle now.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        if self.active_streams.load(Ordering::Acquire) != 0 {
            return None;
        }
        let nanos = self.idle_since.load(Ordering::Acquire);
        Some(self.epoch + Duration::from_nanos(nanos))
    }

    /// Queues a GOAWAY with `debug_data`, written just before h2's next
    /// frame (call h2's own shutdown right after, which writes one too: the
    /// peer keeps the first reason and the lower last stream id).
    pub(crate) fn inject_goaway(&self, reason: h2::Reason, debug_data: &[u8]) {
        let len = 8 + debug_data.len();
        let mut frame = Vec::with_capacity(9 + len);
        frame.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(&[FRAME_GOAWAY, 0, 0, 0, 0, 0]);
        // The last stream the peer opened: it may have been processed.
        let last = self.max_peer_stream.load(Ordering::Acquire);
        frame.extend_from_slice(&last.to_be_bytes());
        frame.extend_from_slice(&u32::from(reason).to_be_bytes());
        frame.extend_from_slice(debug_data);
        *self.inject.lock().unwrap_or_else(|e| e.into_inner()) = Some(Bytes::from(frame));
    }

    /// Turns on BDP sampling: DATA frames then ask for a BDP ping.
    pub(crate) fn enable_bdp(&self) {
        self.bdp_enabled.store(true, Ordering::Release);
    }

    /// Whether data arrived since the last BDP ping (and clears it).
    pub(crate) fn take_bdp_wanted(&self) -> bool {
        self.bdp_wanted.swap(false, Ordering::AcqRel)
    }

    fn take_inject(&self) -> Option<Bytes> {
        self.inject.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn on_inbound(&self, kind: u8, flags: u8, stream_id: u32, len: usize, payload: &[u8]) {
        self.inbound_frames.fetch_add(1, Ordering::Relaxed);
        if !self.settings_received.load(Ordering::Acquire) && kind != FRAME_SETTINGS {
            // RFC 9113: the first frame must be SETTINGS. Anything else is
            // not HTTP/2; do not read meaning into its bytes.
            self.not_http2.store(true, Ordering::Release);
            self.handshake.notify_waiters();
        }
        if self.not_http2.load(Ordering::Acquire) {
            return;
        }
        match kind {
            FRAME_DATA if len > 0 => {
                self.data_bytes.fetch_add(len as u64, Ordering::Relaxed);
                // Sample only when data really flows: a trickle of small
                // messages (ping-pong, small unary calls) has no window to
                // size, and a ping per round trip would cost more than the
                // messages themselves.
                if self.bdp_enabled.load(Ordering::Relaxed) {
                    let accum =
                        self.bdp_accum.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
                    if accum >= BDP_MIN_BYTES && !self.bdp_wanted.swap(true, Ordering::AcqRel) {
                        self.bdp_accum.store(0, Ordering::Relaxed);
                        self.notify.notify_one();
                    }
                }
            }
            FRAME_SETTINGS if !self.settings_received.swap(true, Ordering::AcqRel) => {
                self.handshake.notify_waiters();
            }
            FRAME_HEADERS => {
                self.max_peer_stream.fetch_max(stream_id, Ordering::AcqRel);
                if flags & FLAG_END_HEADERS == 0 {
                    // A header block in several frames: the connection task
                    // gives it a deadline.
                    self.header_blocks_split.fetch_add(1, Ordering::AcqRel);
                    self.header_block_open.store(true, Ordering::Release);
                    self.notify.notify_one();
                }
            }
            FRAME_CONTINUATION if flags & FLAG_END_HEADERS != 0 => {
                self.header_block_open.store(false, Ordering::Release);
            }
            FRAME_PING if flags & FLAG_ACK == 0 => self.on_ping(),
            FRAME_PING if payload == DRAIN_PING_PAYLOAD => {
                self.drain_ping_acked.store(true, Ordering::Release);
            }
            FRAME_RST_STREAM => self.on_reset(stream_id),
            FRAME_WINDOW_UPDATE if stream_id == 0 && payload.len() == 4 => {
                let added = window_increment(payload);
                self.window_updates_received
                    .fetch_add(added, Ordering::Relaxed);
            }
            FRAME_GOAWAY if payload.len() >= 8 => {
                let last_stream_id =
                    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        & 0x7fff_ffff;
                let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                let goaway = GoAway {
                    last_stream_id,
                    code,
                    debug_data: Bytes::copy_from_slice(&payload[8..]),
                };
                tracing::debug!("received {}", goaway.describe());
                self.goaway_last_stream
                    .fetch_min(last_stream_id, Ordering::AcqRel);
                // Only the first GOAWAY's reason is kept; a later one only
                // lowers the last stream id, which h2 handles.
                if self.goaway.set(goaway).is_ok() {
                    self.notify.notify_one();
                }
            }
            _ => {}
        }
    }

    fn on_outbound(&self, kind: u8, stream_id: u32, len: usize, payload: &[u8]) {
        if matches!(kind, FRAME_HEADERS | FRAME_DATA) && self.enforcement.is_some() {
            self.reset_strikes.store(true, Ordering::Release);
        }
        match kind {
            FRAME_DATA => {
                self.data_bytes_sent
                    .fetch_add(len as u64, Ordering::Relaxed);
            }
            FRAME_WINDOW_UPDATE if stream_id == 0 && payload.len() == 4 => {
                let added = window_increment(payload);
                self.window_updates_sent.fetch_add(added, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// The connection's flow-control windows, as gRPC-Go's channelz shows
    /// them: `(local, remote)`, where local is how many more DATA bytes the
    /// peer may send this side before it needs a WINDOW_UPDATE, and remote
    /// how many more this side may send the peer. Computed from the frames
    /// that crossed the socket (65,535 plus the WINDOW_UPDATEs on stream 0,
    /// less the DATA payloads), so exact for what is on the wire; a frame
    /// still in flight is counted by the side that sent it first. Only the
    /// connection's window: a stream's own window may be smaller. `None`
    /// when the peer does not speak HTTP/2.
    ///
    /// Costs four atomic loads, nothing per frame beyond a counter add;
    /// channelz calls it for client and server sockets alike.
    #[cfg_attr(not(feature = "channelz"), allow(dead_code))]
    pub(crate) fn flow_windows(&self) -> Option<(i64, i64)> {
        if self.not_http2.load(Ordering::Acquire) {
            return None;
        }
        let load = |a: &AtomicU64| i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        let local =
            INITIAL_CONNECTION_WINDOW + load(&self.window_updates_sent) - load(&self.data_bytes);
        let remote = INITIAL_CONNECTION_WINDOW + load(&self.window_updates_received)
            - load(&self.data_bytes_sent);
        Some((local, remote))
    }

    /// A client's PING (gRFC A8, as gRPC-Go counts strikes).
    fn on_ping(&self) {
        let Some(policy) = self.enforcement else {
            return;
        };
        let now = Instant::now();
        let mut state = self.ping.lock().unwrap_or_else(|e| e.into_inner());
        if self.reset_strikes.swap(false, Ordering::AcqRel) {
            state.strikes = 0;
            state.last_ping = Some(now);
            return;
        }
        let idle = self.active_streams.load(Ordering::Acquire) == 0;
        let allowed = if idle && !policy.permit_without_stream {
            IDLE_PING_INTERVAL
        } else {
            policy.min_time
        };
        if state
            .last_ping
            .is_some_and(|last| now.duration_since(last) < allowed)
        {
            state.strikes += 1;
            if state.strikes > MAX_PING_STRIKES {
                drop(state);
                tracing::debug!("client pings too often; closing with GOAWAY ENHANCE_YOUR_CALM");
                self.violate("too_many_pings");
                return;
            }
        }
        state.last_ping = Some(now);
    }

    /// Server: the stream `id` was taken from h2 and given to a handler.
    pub(crate) fn stream_accepted(&self, id: u32) {
        self.accepted_up_to.fetch_max(id, Ordering::AcqRel);
    }

    /// A client's RST_STREAM. Resets of streams the server had not yet
    /// taken (the rapid-reset pattern, CVE-2023-44487: the peer makes the
    /// server parse and queue a request, then cancels it for free) are
    /// bounded per time window. A reset of a call whose handler already runs
    /// is an ordinary cancellation: it costs the client a whole call, and
    /// the handler is dropped at once, so it is not counted however many
    /// there are.
    fn on_reset(&self, stream_id: u32) {
        let Some((limit, per)) = self.reset_limit else {
            return;
        };
        if stream_id <= self.accepted_up_to.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let mut window = self.resets.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(window.start) > per {
            window.start = now;
            window.count = 0;
        }
        window.count += 1;
        if window.count > limit {
            drop(window);
            tracing::debug!(
                "client resets streams too fast; closing with GOAWAY ENHANCE_YOUR_CALM"
            );
            self.violate("too_many_resets");
        }
    }
}

/// A WINDOW_UPDATE's increment (its reserved bit ignored).
fn window_increment(payload: &[u8]) -> u64 {
    u64::from(u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff)
}

#[cfg(feature = "channelz")]
impl crate::channelz::FlowWindows for ConnSignals {
    fn flow_windows(&self) -> Option<(i64, i64)> {
        ConnSignals::flow_windows(self)
    }
}

/// Counts a call as active on its connection while it lives.
pub(crate) struct StreamGuard(pub(crate) Arc<ConnSignals>);

impl StreamGuard {
    pub(crate) fn new(signals: &Arc<ConnSignals>) -> StreamGuard {
        signals.stream_started();
        StreamGuard(Arc::clone(signals))
    }

    pub(crate) fn signals(&self) -> &ConnSignals {
        &self.0
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.stream_ended();
    }
}

impl ConnSignals {
    /// The status when the peer's first frame was not SETTINGS.
    pub(crate) fn not_http2_status(&self, side: &str) -> crate::status::Status {
        crate::status::Status::unavailable(format!(
            "the {side} did not answer with HTTP/2 (is it serving TLS while this side \
             uses plaintext, or HTTP/1?)"
        ))
    }

    /// Whether new calls should go elsewhere: the peer sent GOAWAY or this
    /// side closed the connection.
    pub(crate) fn is_draining(&self) -> bool {
        self.goaway.get().is_some() || self.close_reason.get().is_some()
    }

    /// The status for an h2 error on a stream of this connection: names the
    /// connection's end when it is why the stream failed, and marks streams
    /// the peer never processed as safe to retry.
    pub(crate) fn stream_error(&self, err: &h2::Error, side: &str) -> crate::status::Status {
        use crate::status::Status;
        let unprocessed = err.is_go_away() || err.reason() == Some(h2::Reason::REFUSED_STREAM);
        let connection_gone = err.is_go_away() || err.is_io() || err.reason().is_none();
        let status = if self.not_http2.load(Ordering::Acquire) && connection_gone {
            self.not_http2_status(side)
        } else if let Some(reason) = self.close_reason.get().filter(|_| connection_gone) {
            Status::unavailable(format!("connection to {side} closed: {reason}"))
        } else if let Some(goaway) = self.goaway.get().filter(|_| connection_gone) {
            Status::unavailable(format!(
                "connection closed by {side} with {}",
                goaway.describe()
            ))
        } else {
            super::http_util::status_from_h2(err, side)
        };
        if unprocessed {
            status.with_transparent_retry()
        } else {
            status
        }
    }
}

/// An I/O stream whose HTTP/2 frames are noted in [`ConnSignals`].
pub(crate) struct Inspect<IO> {
    io: IO,
    inbound: Scanner,
    outbound: Scanner,
    signals: Arc<ConnSignals>,
    /// An injected frame being written, and how much of it is out.
    injecting: Option<(Bytes, usize)>,
}

impl<IO> Inspect<IO> {
    /// `server`: this side accepts the connection (the client sends the
    /// preface).
    pub(crate) fn new(io: IO, server: bool, signals: Arc<ConnSignals>) -> Inspect<IO> {
        Inspect {
            io,
            inbound: Scanner::new(server),
            outbound: Scanner::new(!server),
            signals,
            injecting: None,
        }
    }
}

impl Scanner {
    /// Whether the bytes so far end exactly at a frame boundary.
    fn at_boundary(&self) -> bool {
        self.preface_left == 0 && self.head_len == 0 && self.payload_left == 0
    }
}

impl<IO: AsyncWrite + Unpin> Inspect<IO> {
    /// Writes any injected frame first, at a frame boundary of h2's output.
    fn poll_inject(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.injecting.is_none() && self.outbound.at_boundary() {
            self.injecting = self.signals.take_inject().map(|b| (b, 0));
        }
        while let Some((frame, written)) = &mut self.injecting {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &frame[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            if *written == frame.len() {
                self.injecting = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Inspect<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let signals = &this.signals;
        // Once per read, not per frame: a busy connection reads many
        // frames at a time.
        if buf.filled().len() > before {
            signals.note_read();
        }
        this.inbound
            .feed(&buf.filled()[before..], |k, f, id, len, p| {
                signals.on_inbound(k, f, id, len, p)
            });
        // The first frame's type is known from its fourth byte: a peer that
        // does not start with SETTINGS is not speaking HTTP/2 (h2 fails on
        // the length alone, before a whole header has arrived).
        let first = &this.inbound;
        if first.preface_left == 0
            && first.head_len >= 4
            && first.head[3] != FRAME_SETTINGS
            && !signals.settings_received.load(Ordering::Acquire)
        {
            signals.not_http2.store(true, Ordering::Release);
            signals.handshake.notify_waiters();
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Inspect<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
        let signals = &this.signals;
        this.outbound.feed(&buf[..n], |k, _, id, len, p| {
            signals.on_outbound(k, id, len, p)
        });
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_inject(cx))?;
        let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
        let signals = &this.signals;
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(b.len());
            this.outbound.feed(&b[..take], |k, _, id, len, p| {
                signals.on_outbound(k, id, len, p)
            });
            left -= take;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_inject(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut v = len.to_be_bytes()[1..].to_vec();
        v.extend_from_slice(&[kind, flags, 0, 0, 0, 1]);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn scanner_finds_frames_across_any_split() {
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        wire.extend(frame(0x4, 0, &[0; 6]));
        wire.extend(frame(FRAME_PING, 0, &[1; 8]));
        let mut goaway = 5u32.to_be_bytes().to_vec();
        goaway.extend(11u32.to_be_bytes());
        goaway.extend(b"too_many_pings");
        wire.extend(frame(FRAME_GOAWAY, 0, &goaway));
        wire.extend(frame(FRAME_DATA, 0, &[9; 100]));
        for chunk in [1, 2, 3, 7, 9, 10, 64, wire.len()] {
            let mut s = Scanner::new(true);
            let mut seen = Vec::new();
            for piece in wire.chunks(chunk) {
                s.feed(piece, |k, _, _, _, p| seen.push((k, p.to_vec())));
            }
            assert_eq!(seen.len(), 4, "chunk {chunk}");
            assert_eq!(seen[1].0, FRAME_PING);
            assert_eq!(seen[2], (FRAME_GOAWAY, goaway.clone()));
            assert_eq!(seen[3].0, FRAME_DATA);
        }
    }

    #[test]
    fn goaway_is_recorded_with_debug_data() {
        let s = ConnSignals::client();
        s.on_inbound(FRAME_SETTINGS, 0, 0, 0, &[]);
        let mut payload = 3u32.to_be_bytes().to_vec();
        payload.extend(11u32.to_be_bytes());
        payload.extend(b"too_many_pings");
        s.on_inbound(FRAME_GOAWAY, 0, 0, payload.len(), &payload);
        let g = s.goaway().unwrap();
        assert_eq!(g.last_stream_id, 3);
        assert!(g.too_many_pings());
        assert!(
            g.describe().contains("ENHANCE_YOUR_CALM"),
            "{}",
            g.describe()
        );
    }

    #[test]
    fn ping_strikes_follow_the_policy() {
        let policy = EnforcementPolicy::default().with_min_time(Duration::from_secs(60));
        let s = ConnSignals::server(policy, None);
        s.on_inbound(FRAME_SETTINGS, 0, 0, 0, &[]);
        s.stream_started();
        // Three quick pings are two strikes: allowed; the fourth is one too many.
        for _ in 0..3 {
            s.on_inbound(FRAME_PING, 0, 0, 8, &[]);
        }
        assert!(s.violation().is_none());
        s.on_inbound(FRAME_PING, 0, 0, 8, &[]);
        assert_eq!(s.violation().map(|v| v.what), Some("too_many_pings"));
        // ACKs never count.
        let s = ConnSignals::server(policy, None);
        s.on_inbound(FRAME_SETTINGS, 0, 0, 0, &[]);
        for _ in 0..10 {
            s.on_inbound(FRAME_PING, FLAG_ACK, 0, 8, &[]);
        }
        assert!(s.violation().is_none());
    }

    #[test]
    fn sending_data_resets_strikes() {
        let policy = EnforcementPolicy::default().with_min_time(Duration::from_secs(60));
        let s = ConnSignals::server(policy, None);
        s.on_inbound(FRAME_SETTINGS, 0, 0, 0, &[]);
        s.stream_started();
        for _ in 0..20 {
            s.on_inbound(FRAME_PING, 0, 0, 8, &[]);
            s.on_outbound(FRAME_DATA, 1, 10, &[]);
        }
        assert!(s.violation().is_none());
    }

    #[test]
    fn flow_windows_count_data_and_connection_window_updates() {
        let s = ConnSignals::server(EnforcementPolicy::default(), None);
        s.on_inbound(FRAME_SETTINGS, 0, 0, 0, &[]);
        assert_eq!(s.flow_windows(), Some((65_535, 65_535)));
        // This side grants 1000 more on the connection, 7 on a stream.
        s.on_outbound(FRAME_WINDOW_UPDATE, 0, 4, &1000u32.to_be_bytes());
        s.on_outbound(FRAME_WINDOW_UPDATE, 1, 4, &7u32.to_be_bytes());
        // The peer sends 300 bytes and grants 50 (reserved bit set).
        s.on_inbound(FRAME_DATA, 0, 1, 300, &[]);
        s.on_inbound(
            FRAME_WINDOW_UPDATE,
            0,
            0,
            4,
            &(50u32 | 1 << 31).to_be_bytes(),
        );
        // This side sends 20 bytes, and an empty DATA frame.
        s.on_outbound(FRAME_DATA, 1, 20, &[]);
        s.on_outbound(FRAME_DATA, 1, 0, &[]);
        assert_eq!(
            s.flow_windows(),
            Some((65_535 + 1000 - 300, 65_535 + 50 - 20))
        );
        // A peer that is not HTTP/2 has no windows.
        let s = ConnSignals::client();
        s.on_inbound(FRAME_GOAWAY, 0, 0, 0, &[]);
        assert_eq!(s.flow_windows(), None);
    }

    #[test]
    fn a_peer_that_does_not_start_with_settings_is_not_read() {
        let s = ConnSignals::client();
        // A TLS alert record, read as a frame header, is "something else".
        let mut goaway = 0u32.to_be_bytes().to_vec();
        goaway.extend(11u32.to_be_bytes());
        s.on_inbound(FRAME_GOAWAY, 0, 0, 8, &goaway);
        assert!(s.goaway().is_none());
        assert!(s.not_http2.load(Ordering::Acquire));
    }

    #[test]
    fn resets_of_accepted_streams_are_not_counted() {
        let s = ConnSignals::server(
            EnforcementPolicy::default(),
            Some((5, Duration::from_secs(60))),
        );
        s.on_inbound(FRAME_SETTINGS, 0, 0, 0, &[]);
        for n in 0..100u32 {
            let id = 2 * n + 1;
            s.on_inbound(FRAME_HEADERS, FLAG_END_HEADERS, id, 0, &[]);
            s.stream_accepted(id);
            s.on_inbound(FRAME_RST_STREAM, 0, id, 4, &[0, 0, 0, 8]);
        }
        assert!(s.violation().is_none());
        // Streams not yet taken still count.
        for n in 100..106u32 {
            s.on_inbound(FRAME_RST_STREAM, 0, 2 * n + 1, 4, &[0, 0, 0, 8]);
        }
        assert_eq!(s.violation().map(|v| v.what), Some("too_many_resets"));
    }

    #[test]
    fn resets_over_the_limit_are_a_violation() {
        let s = ConnSignals::server(
            EnforcementPolicy::default(),
            Some((5, Duration::from_secs(60))),
        );
        s.on_inbound(FRAME_SETTINGS, 0, 0, 0, &[]);
        for _ in 0..5 {
            s.on_inbound(FRAME_RST_STREAM, 0, 1, 4, &[0, 0, 0, 8]);
        }
        assert!(s.violation().is_none());
        s.on_inbound(FRAME_RST_STREAM, 0, 1, 4, &[0, 0, 0, 8]);
        assert_eq!(s.violation().map(|v| v.what), Some("too_many_resets"));
    }
}
