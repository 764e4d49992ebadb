//! Serving one HTTP/2 connection: the handshake, accepting streams, checking
//! that each is a gRPC request, and graceful or hard shutdown.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::watch,
};

use super::{
    http_util,
    inspect::{ConnSignals, Inspect, StreamGuard},
    ServerSend,
};
use crate::{
    keepalive::{self, EnforcementPolicy, ServerParameters},
    metadata::MetadataMap,
    peer::Peer,
    status::Status,
};

/// Streams one connection may have open at once unless the server says
/// otherwise: the top of what gRPC-Go servers commonly set (100–1000).
/// Clients queue calls above it (it is advertised in SETTINGS), so an
/// honest client loses nothing, while one connection cannot hold tens of
/// thousands of idle streams (and their handler tasks).
pub(crate) const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1000;

/// HTTP/2 settings and limits of a server's connections.
#[derive(Clone, Debug)]
pub(crate) struct ServerConfig {
    pub(crate) max_concurrent_streams: Option<u32>,
    pub(crate) initial_stream_window_size: u32,
    pub(crate) initial_connection_window_size: u32,
    pub(crate) max_frame_size: u32,
    pub(crate) max_header_list_size: u32,
    pub(crate) handshake_timeout: Duration,
    pub(crate) keepalive: ServerParameters,
    pub(crate) enforcement: EnforcementPolicy,
    /// At most this many resets, per period, of streams the server had not
    /// yet taken (rapid reset).
    pub(crate) reset_limit: Option<(u32, Duration)>,
    /// Whether flow-control windows grow with the measured BDP.
    pub(crate) bdp: bool,
    /// The server's channelz entity, which registers each connection.
    #[cfg(feature = "channelz")]
    pub(crate) channelz: Option<Arc<crate::channelz::ServerEntry>>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_concurrent_streams: Some(DEFAULT_MAX_CONCURRENT_STREAMS),
            initial_stream_window_size: 1 << 20,
            initial_connection_window_size: 2 << 20,
            max_frame_size: 16 << 10,
            max_header_list_size: 16 << 20,
            handshake_timeout: Duration::from_secs(20),
            keepalive: ServerParameters::default(),
            enforcement: EnforcementPolicy::default(),
            reset_limit: Some((400, Duration::from_secs(1))),
            bdp: true,
            #[cfg(feature = "channelz")]
            channelz: None,
        }
    }
}

/// What stage of shutdown the server is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shutdown {
    Running,
    /// Stop accepting connections; serve the open ones as before (the first
    /// step of a graceful stop).
    Closing,
    /// Stop taking new streams, finish the ones under way.
    Graceful,
    /// Close every connection now.
    Hard,
}

/// A gRPC request, checked and parsed, ready for routing.
pub(crate) struct IncomingStream {
    /// The algorithm of the request's `grpc-encoding`, if any.
    pub(crate) decompressor: Option<std::sync::Arc<dyn crate::encoding::Compressor>>,
    /// The client's `grpc-accept-encoding`.
    pub(crate) accept_encoding: Option<HeaderValue>,
    /// The `:path`, e.g. `/pkg.Service/Method`.
    pub(crate) path: http::uri::PathAndQuery,
    /// The `:authority`, if the client sent one.
    pub(crate) authority: Option<http::uri::Authority>,
    /// The request's content-subtype, lower-cased (`""` for plain
    /// `application/grpc`); the response's content type repeats it.
    pub(crate) content_subtype: http_util::ContentSubtype,
    pub(crate) metadata: MetadataMap,
    pub(crate) timeout: Option<Duration>,
    pub(crate) body: h2::RecvStream,
    pub(crate) send: ServerSend,
    pub(crate) peer: Arc<Peer>,
    /// Counts the call as active on its connection until dropped.
    pub(crate) _active: StreamGuard,
}

/// Receives each accepted stream; it must not block (spawn the work).
pub(crate) trait StreamHandler: Send + Sync + 'static {
    fn handle(&self, stream: IncomingStream);
}

/// What a connection's pings are for.
enum PingKind {
    /// Is the peer still there?
    Keepalive,
    /// How much data arrives per round trip? (`bytes`: data received when
    /// the ping was sent.)
    Bdp {
        sent: std::time::Instant,
        bytes: u64,
    },
}

type PingFuture = std::pin::Pin<Box<dyn std::future::Future<Output = h2::PingPong> + Send>>;

/// The pings of one connection (both sides): keepalive, which detects a dead
/// peer, and BDP, which measures the bandwidth-delay product to size the
/// flow-control windows (gRPC-Go's bdpEstimator). h2 allows one user ping at
/// a time, so they share it.
pub(crate) struct Pinger {
    keepalive: Option<(Duration, Duration)>,
    ping_pong: Option<h2::PingPong>,
    in_flight: Option<(PingKind, PingFuture)>,
    deadline: tokio::time::Instant,
    seen_frames: u64,
    bdp: Option<Bdp>,
}

/// What the pinger decided.
pub(crate) enum PingEvent {
    /// Nothing to do.
    Wait,
    /// A keepalive ping went unanswered: the connection is dead.
    Dead,
    /// The flow-control windows should grow to this size.
    Window(u32),
}

/// gRPC-Go's BDP estimator: grows the window to twice a round trip's worth
/// of data when a sample reaches 2/3 of the current estimate at the highest
/// bandwidth seen so far; never shrinks; at most 16 MiB.
pub(crate) struct Bdp {
    estimate: u32,
    rtt: f64,
    samples: u32,
    bw_max: f64,
}

impl Bdp {
    const LIMIT: u32 = 16 << 20;
    const ALPHA: f64 = 0.9;
    const BETA: f64 = 0.66;
    const GAMMA: f64 = 2.0;

    pub(crate) fn new(initial_window: u32) -> Bdp {
        Bdp {
            estimate: initial_window,
            rtt: 0.0,
            samples: 0,
            bw_max: 0.0,
        }
    }

    /// Takes a sample: `bytes` received within one `rtt` (seconds).
    pub(crate) fn sample(&mut self, bytes: u64, rtt: f64) -> Option<u32> {
        self.samples += 1;
        if self.samples < 10 {
            self.rtt += (rtt - self.rtt) / f64::from(self.samples);
        } else {
            self.rtt += (rtt - self.rtt) * Self::ALPHA;
        }
        if self.rtt <= 0.0 {
            return None;
        }
        let bw = bytes as f64 / (self.rtt * 1.5);
        if bw > self.bw_max {
            self.bw_max = bw;
        }
        if bytes as f64 >= Self::BETA * f64::from(self.estimate)
            && bw >= self.bw_max
            && self.estimate < Self::LIMIT
        {
            let grown = (Self::GAMMA * bytes as f64).min(f64::from(Self::LIMIT)) as u32;
            if grown > self.estimate {
                self.estimate = grown;
                return Some(grown);
            }
        }
        None
    }
}

impl Pinger {
    /// `keepalive`: (time, timeout), or `None` for no keepalive pings;
    /// `bdp_initial`: the initial stream window, or `None` for fixed windows.
    pub(crate) fn new(
        keepalive: Option<(Duration, Duration)>,
        bdp_initial: Option<u32>,
        ping_pong: Option<h2::PingPong>,
    ) -> Pinger {
        let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86400);
        Pinger {
            deadline: keepalive.map_or(far, |(time, _)| tokio::time::Instant::now() + time),
            keepalive,
            ping_pong,
            in_flight: None,
            seen_frames: 0,
            bdp: bdp_initial.map(Bdp::new),
        }
    }

    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        self.deadline
    }

    fn send(&mut self, kind: PingKind) -> bool {
        let Some(mut pp) = self.ping_pong.take() else {
            return false;
        };
        self.in_flight = Some((
            kind,
            Box::pin(async move {
                let _ = pp.ping(h2::Ping::opaque()).await;
                pp
            }),
        ));
        true
    }

    /// The keepalive timer: pings if the peer was quiet for `time`, and
    /// declares it dead if a ping went unanswered (and nothing else came)
    /// for `timeout`. `may_ping` is false when pinging is not allowed now (a
    /// client with no calls).
    pub(crate) fn on_deadline(&mut self, signals: &ConnSignals, may_ping: bool) -> PingEvent {
        let Some((time, timeout)) = self.keepalive else {
            self.deadline = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86400);
            return PingEvent::Wait;
        };
        let frames = signals
            .inbound_frames
            .load(std::sync::atomic::Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        if self.in_flight.is_some() {
            if frames != self.seen_frames {
                // The peer is alive; keep waiting for the acknowledgement
                // (the ping future owns h2's only ping handle).
                self.seen_frames = frames;
                self.deadline = now + timeout;
                return PingEvent::Wait;
            }
            return PingEvent::Dead;
        }
        if frames != self.seen_frames {
            // The peer spoke since the last check: the next one is `time`
            // after it last did (as gRPC-Go), not after this check, so a
            // peer that goes quiet is pinged after `time`, not up to twice
            // that. (Should the timer have run late, this is in the past
            // and the next check follows at once.)
            self.seen_frames = frames;
            self.deadline = signals.last_read() + time;
            return PingEvent::Wait;
        }
        if !may_ping {
            self.deadline = now + time;
            return PingEvent::Wait;
        }
        if self.send(PingKind::Keepalive) {
            signals.keepalive_sent();
        }
        self.deadline = now + timeout;
        PingEvent::Wait
    }

    /// Data arrived: start a BDP ping if none is in flight.
    pub(crate) fn on_data(&mut self, signals: &ConnSignals) {
        if self.bdp.is_none() || self.in_flight.is_some() || !signals.take_bdp_wanted() {
            return;
        }
        let bytes = signals
            .data_bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        self.send(PingKind::Bdp {
            sent: std::time::Instant::now(),
            bytes,
        });
    }

    /// Drives the ping in flight; reports a window to grow to when a BDP
    /// sample says so. Any acknowledgement shows the peer is alive.
    pub(crate) fn poll_ping(
        &mut self,
        cx: &mut std::task::Context<'_>,
        signals: &ConnSignals,
    ) -> std::task::Poll<PingEvent> {
        let Some((_, fut)) = self.in_flight.as_mut() else {
            return std::task::Poll::Pending;
        };
        let pp = std::task::ready!(fut.as_mut().poll(cx));
        let (kind, _) = self.in_flight.take().expect("checked above");
        self.ping_pong = Some(pp);
        if let Some((time, _)) = self.keepalive {
            self.deadline = tokio::time::Instant::now() + time;
        }
        let mut event = PingEvent::Wait;
        if let (PingKind::Bdp { sent, bytes }, Some(bdp)) = (kind, self.bdp.as_mut()) {
            let now_bytes = signals
                .data_bytes
                .load(std::sync::atomic::Ordering::Relaxed);
            if let Some(window) = bdp.sample(
                now_bytes.saturating_sub(bytes),
                sent.elapsed().as_secs_f64(),
            ) {
                event = PingEvent::Window(window);
            }
        }
        std::task::Poll::Ready(event)
    }
}

/// The windows for a BDP estimate: (connection, streams' initial). The
/// connection's never drops below its configured size.
pub(crate) fn grown_windows(window: u32, connection_window: u32) -> (u32, u32) {
    tracing::debug!("BDP estimate: flow-control windows grow to {window} bytes");
    (window.max(connection_window), window)
}

/// Runs `fut` (a connection's handshake) unless the server stops first,
/// gracefully or not: a connection with no call yet has nothing to finish,
/// so a stop must not wait out its handshake timeout. `None` when stopped.
pub(crate) async fn unless_stopping<T>(
    shutdown: &mut watch::Receiver<Shutdown>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    fn stopping(state: &Shutdown) -> bool {
        matches!(state, Shutdown::Graceful | Shutdown::Hard)
    }
    if stopping(&shutdown.borrow()) {
        return None;
    }
    tokio::select! {
        biased;
        out = fut => Some(out),
        // A dropped sender (the server is gone) stops it too.
        _ = shutdown.wait_for(stopping) => None,
    }
}

/// Serves one connection until the peer closes it, an error ends it, the
/// server shuts down, or its keepalive and lifetime settings end it.
pub(crate) async fn serve_connection<IO, H>(
    io: IO,
    peer: Arc<Peer>,
    config: &ServerConfig,
    handler: &H,
    mut shutdown: watch::Receiver<Shutdown>,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: StreamHandler + ?Sized,
{
    use std::future::poll_fn;
    use tokio::time::{sleep_until, Instant};

    let signals = ConnSignals::server(config.enforcement, config.reset_limit);
    let io = Inspect::new(io, true, Arc::clone(&signals));
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(config.initial_stream_window_size)
        .initial_connection_window_size(config.initial_connection_window_size)
        .max_frame_size(config.max_frame_size)
        .max_header_list_size(config.max_header_list_size)
        .data_frame_budget(super::data_frame_budget(
            config.initial_connection_window_size,
        ));
    if let Some(n) = config.max_concurrent_streams {
        builder.max_concurrent_streams(n);
    }
    let handshake = tokio::time::timeout(config.handshake_timeout, builder.handshake(io));
    let mut conn = match unless_stopping(&mut shutdown, handshake).await {
        Some(Ok(Ok(conn))) => conn,
        Some(Ok(Err(err))) => {
            tracing::debug!(peer = %peer.remote_addr, "HTTP/2 handshake failed: {err}");
            return;
        }
        Some(Err(_)) => {
            tracing::debug!(peer = %peer.remote_addr, "HTTP/2 handshake timed out");
            return;
        }
        None => {
            tracing::debug!(
                peer = %peer.remote_addr,
                "the server is stopping: closed a connection still in its HTTP/2 handshake"
            );
            return;
        }
    };
    #[cfg(feature = "channelz")]
    if let Some(server) = &config.channelz {
        let tls = match &peer.auth_info {
            Some(crate::credentials::AuthInfo::Tls(info)) => Some(crate::channelz::tls_data(info)),
            _ => None,
        };
        let conn = crate::channelz::ServerConn::new(
            server,
            peer.local_addr.clone(),
            peer.remote_addr.clone(),
            tls,
        );
        conn.socket()
            .set_flow_windows(Arc::downgrade(&signals) as std::sync::Weak<_>);
        signals.set_channelz(conn);
    }
    let params = config.keepalive;
    if config.bdp {
        signals.enable_bdp();
    }
    let mut pinger = Pinger::new(
        Some((params.time, params.timeout)),
        config.bdp.then_some(config.initial_stream_window_size),
        conn.ping_pong(),
    );
    let far = Instant::now() + Duration::from_secs(100 * 365 * 86400);
    let born = Instant::now();
    let mut age_deadline = params
        .max_connection_age
        .map_or(far, |age| born + keepalive::jitter(age));
    let mut grace_deadline = far;
    let mut idle_check = params.max_connection_idle.map_or(far, |idle| born + idle);
    let mut graceful = false;
    let mut changed = true;
    // The client's SETTINGS must follow the preface within the handshake
    // timeout (h2's handshake completes on the preface alone).
    let mut settings_deadline = born + config.handshake_timeout;
    let mut drain_deadline = far;
    // A header block the client started must end within the handshake
    // timeout: h2 would wait for its CONTINUATION frames for ever.
    let mut header_deadline = far;
    // Which split header block that deadline is for.
    let mut header_block = 0;
    const DRAIN: Duration = Duration::from_secs(5);
    loop {
        if changed {
            let state = *shutdown.borrow_and_update();
            match state {
                Shutdown::Running | Shutdown::Closing => {}
                Shutdown::Graceful if !graceful => {
                    // GOAWAY(max id) + PING, then the final GOAWAY; h2 ends
                    // `accept` once the streams under way have finished.
                    conn.graceful_shutdown();
                    graceful = true;
                    drain_deadline = Instant::now() + DRAIN;
                }
                Shutdown::Graceful => {}
                Shutdown::Hard => {
                    // Say why before closing: clients' calls then fail with
                    // "server stopped", not a bare broken pipe.
                    signals.inject_goaway(h2::Reason::NO_ERROR, b"server stopped");
                    conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                    let flush = async { while conn.accept().await.is_some() {} };
                    let _ = tokio::time::timeout(Duration::from_millis(100), flush).await;
                    return;
                }
            }
        }
        changed = false;
        let keepalive_deadline = pinger.deadline();
        let accepted = tokio::select! {
            biased;
            res = shutdown.changed() => {
                // A dropped sender means the server is gone: stop hard.
                if res.is_err() {
                    return;
                }
                changed = true;
                continue;
            }
            () = signals.notify.notified() => {
                if header_deadline == far
                    && signals.header_block_open.load(std::sync::atomic::Ordering::Acquire)
                {
                    header_deadline = Instant::now() + config.handshake_timeout;
                    header_block = signals.header_blocks_split.load(std::sync::atomic::Ordering::Acquire);
                }
                pinger.on_data(&signals);
                if let Some(v) = signals.violation() {
                    tracing::debug!(peer = %peer.remote_addr, "closing connection: {}", v.what);
                    // Our GOAWAY carries the reason as debug data (gRPC
                    // clients look for "too_many_pings"); h2's follows it.
                    signals.inject_goaway(h2::Reason::ENHANCE_YOUR_CALM, v.what.as_bytes());
                    conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                    graceful = true;
                    grace_deadline = grace_deadline.min(Instant::now() + Duration::from_secs(1));
                }
                continue;
            }
            () = sleep_until(settings_deadline) => {
                settings_deadline = far;
                if !signals.settings_received.load(std::sync::atomic::Ordering::Acquire) {
                    tracing::debug!(peer = %peer.remote_addr, "no SETTINGS from the client in time; closing");
                    return;
                }
                continue;
            }
            () = sleep_until(header_deadline) => {
                header_deadline = far;
                let open = signals.header_block_open.load(std::sync::atomic::Ordering::Acquire);
                let current = signals.header_blocks_split.load(std::sync::atomic::Ordering::Acquire);
                if open && current != header_block {
                    // A later block: it gets its own full time.
                    header_deadline = Instant::now() + config.handshake_timeout;
                    header_block = current;
                } else if open {
                    tracing::debug!(
                        peer = %peer.remote_addr,
                        "header block not finished within {:?}; closing",
                        config.handshake_timeout
                    );
                    signals.inject_goaway(h2::Reason::ENHANCE_YOUR_CALM, b"header block not finished in time");
                    conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                    grace_deadline = grace_deadline.min(Instant::now() + Duration::from_secs(1));
                }
                continue;
            }
            () = sleep_until(drain_deadline) => {
                // h2 sends its final GOAWAY only after the client acknowledges
                // the PING that follows the first; until then it must accept
                // new streams. A client that acknowledged it has its calls
                // run to their end (or to the grace the user set). One that
                // never answers must not keep the connection forever.
                drain_deadline = far;
                if !signals.drain_ping_acked.load(std::sync::atomic::Ordering::Acquire) {
                    tracing::info!(
                        peer = %peer.remote_addr,
                        "client did not acknowledge the drain PING within {DRAIN:?}; closing the connection"
                    );
                    conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                }
                continue;
            }
            event = poll_fn(|cx| pinger.poll_ping(cx, &signals)) => {
                if let PingEvent::Window(window) = event {
                    let (conn_window, stream_window) =
                        grown_windows(window, config.initial_connection_window_size);
                    conn.set_target_window_size(conn_window);
                    let _ = conn.set_initial_window_size(stream_window);
                }
                pinger.on_data(&signals);
                continue;
            }
            () = sleep_until(keepalive_deadline) => {
                if let PingEvent::Dead = pinger.on_deadline(&signals, true) {
                    tracing::debug!(peer = %peer.remote_addr, "keepalive ping not acknowledged within {:?}; closing", params.timeout);
                    return;
                }
                continue;
            }
            () = sleep_until(idle_check) => {
                let idle = params.max_connection_idle.unwrap_or_default();
                idle_check = match signals.idle_since() {
                    // Already going away: the idle limit has nothing left to
                    // do. (Left in the past, the deadline would fire again at
                    // once, for ever: a busy loop that, `biased`, starves
                    // the branches below it, `accept` included.)
                    _ if graceful => far,
                    Some(since) if Instant::from_std(since) + idle <= Instant::now() => {
                        tracing::debug!(peer = %peer.remote_addr, "connection idle for {idle:?}; GOAWAY");
                        conn.graceful_shutdown();
                        graceful = true;
                        drain_deadline = Instant::now() + DRAIN;
                        far
                    }
                    Some(since) => Instant::from_std(since) + idle,
                    None => Instant::now() + idle,
                };
                continue;
            }
            () = sleep_until(age_deadline) => {
                age_deadline = far;
                if !graceful {
                    tracing::debug!(peer = %peer.remote_addr, "connection reached max age; GOAWAY");
                    conn.graceful_shutdown();
                    graceful = true;
                    drain_deadline = Instant::now() + DRAIN;
                }
                if let Some(grace) = params.max_connection_age_grace {
                    grace_deadline = Instant::now() + grace;
                }
                continue;
            }
            () = sleep_until(grace_deadline) => {
                tracing::debug!(peer = %peer.remote_addr, "grace period over; closing");
                return;
            }
            accepted = conn.accept() => accepted,
        };
        match accepted {
            Some(Ok((request, respond))) => {
                if let Some(stream) = check_request(request, respond, &peer, &signals) {
                    handler.handle(stream);
                }
            }
            Some(Err(err)) => {
                tracing::debug!(peer = %peer.remote_addr, "connection error: {err}");
                return;
            }
            None => return,
        }
    }
}

/// Checks that a request is a gRPC call; answers it directly when not.
fn check_request(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    peer: &Arc<Peer>,
    signals: &Arc<ConnSignals>,
) -> Option<IncomingStream> {
    signals.stream_accepted(u32::from(respond.stream_id()));
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        reject(
            &mut respond,
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("gRPC requires POST, got {}", parts.method),
        );
        return None;
    }
    let content_type = parts.headers.get(http::header::CONTENT_TYPE);
    let Some(content_subtype) =
        content_type.and_then(|v| http_util::ContentSubtype::parse(v.as_bytes()))
    else {
        let got = content_type.map_or_else(
            || "none".to_string(),
            |v| String::from_utf8_lossy(v.as_bytes()).into_owned(),
        );
        reject(
            &mut respond,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("invalid gRPC request content-type {got:?}"),
        );
        return None;
    };
    // Moved out of the URI, not copied.
    let uri = parts.uri.into_parts();
    let authority = uri.authority;
    let Some(path) = uri.path_and_query else {
        reject(&mut respond, StatusCode::NOT_FOUND, "request has no :path");
        return None;
    };
    // The answer is in the request's subtype, as gRPC-Go's: whether the
    // server speaks it is decided by the service that takes the call.
    #[allow(unused_mut)]
    let mut send = ServerSend::new(respond, content_subtype.clone());
    #[cfg(feature = "channelz")]
    send.set_channelz(signals.channelz());
    let mut headers = parts.headers;
    let timeout = match headers.remove(http_util::GRPC_TIMEOUT) {
        Some(raw) => match http_util::parse_timeout(raw.as_bytes()) {
            Ok(t) => Some(t),
            Err(msg) => {
                send.send_status(Status::internal(msg), None);
                return None;
            }
        },
        None => None,
    };
    let decompressor =
        match crate::encoding::decompressor_for(headers.get(http_util::GRPC_ENCODING)) {
            Ok(d) => d,
            Err(name) => {
                // The response headers list what the server accepts.
                send.send_status(
                    Status::unimplemented(format!(
                        "grpc-encoding {name:?} is not supported by this server"
                    )),
                    None,
                );
                return None;
            }
        };
    let accept_encoding = headers.get(http_util::GRPC_ACCEPT_ENCODING).cloned();
    let metadata = match MetadataMap::from_received(headers) {
        Ok(md) => md,
        Err(status) => {
            send.send_status(status, None);
            return None;
        }
    };
    Some(IncomingStream {
        decompressor,
        accept_encoding,
        path,
        authority,
        content_subtype,
        metadata,
        timeout,
        body,
        send,
        peer: Arc::clone(peer),
        _active: StreamGuard::new(signals),
    })
}

/// Answers a request that is not gRPC with an HTTP error; `grpc-status` is
/// added so a gRPC client still gets a useful status.
fn reject(respond: &mut h2::server::SendResponse<Bytes>, status: StatusCode, message: &str) {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    // Our own short status always fits.
    let _ = http_util::write_status(Status::internal(message), &mut headers);
    let mut resp = http::Response::new(());
    *resp.status_mut() = status;
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(http::header::ALLOW, HeaderValue::from_static("POST"));
    }
    *resp.headers_mut() = headers;
    let _ = respond.send_response(resp, true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Addr;
    use tokio::io::AsyncWriteExt;

    struct NoCalls;

    impl StreamHandler for NoCalls {
        fn handle(&self, _stream: IncomingStream) {}
    }

    /// Found by fuzzing (fuzz/regressions/server_conn-idle-spin): a
    /// connection that was draining (graceful stop, max age or a violation)
    /// when its max-idle check came due set that check to the same, past,
    /// deadline again and spun: the paused clock below could then never
    /// advance, and on a real one the task used a whole core until the
    /// keepalive gave up on the peer.
    #[test]
    fn idle_check_while_draining_does_not_spin() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async {
                let mut config = ServerConfig::default();
                config.keepalive.max_connection_idle = Some(Duration::from_secs(10));
                let (shutdown_tx, shutdown_rx) = watch::channel(Shutdown::Running);
                let (mut client, server) = tokio::io::duplex(1 << 16);
                let peer = Arc::new(Peer::new(Addr::Unknown, Addr::Unknown));
                let conn = tokio::spawn(async move {
                    serve_connection(server, peer, &config, &NoCalls, shutdown_rx).await;
                });
                // The preface and an empty SETTINGS; then the client goes
                // quiet: it never acknowledges the drain PING.
                let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
                hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
                client.write_all(&hello).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5500)).await;
                shutdown_tx.send_replace(Shutdown::Graceful);
                // The idle check comes due at 10 s, while draining (the
                // drain PING's timeout ends the connection at 10.5 s).
                tokio::time::timeout(Duration::from_secs(60), conn)
                    .await
                    .expect("the connection ends after the drain timeout")
                    .unwrap();
                drop(client);
            });
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the connection's task spins (the paused clock cannot advance)");
    }

    #[test]
    fn bdp_grows_to_twice_a_full_sample() {
        let mut bdp = Bdp::new(65_535);
        // A round trip's worth of data close to the window: grow to 2x.
        assert_eq!(bdp.sample(60_000, 0.1), Some(120_000));
        // Then keep doubling while samples fill the window.
        assert_eq!(bdp.sample(110_000, 0.1), Some(220_000));
    }

    #[test]
    fn bdp_ignores_small_samples_and_never_shrinks() {
        let mut bdp = Bdp::new(1 << 20);
        assert_eq!(bdp.sample(10_000, 0.05), None);
        assert_eq!(bdp.sample(100, 0.05), None);
        assert_eq!(bdp.estimate, 1 << 20);
    }

    #[test]
    fn bdp_is_capped_at_16_mib() {
        let mut bdp = Bdp::new(12 << 20);
        assert_eq!(bdp.sample(20 << 20, 0.2), Some(16 << 20));
        assert_eq!(bdp.sample(30 << 20, 0.2), None, "at the cap");
    }

    #[test]
    fn bdp_needs_the_best_bandwidth_seen() {
        let mut bdp = Bdp::new(65_535);
        assert_eq!(bdp.sample(60_000, 0.01), Some(120_000));
        // Same bytes over a much longer round trip: lower bandwidth, no growth.
        for _ in 0..9 {
            let _ = bdp.sample(1_000, 0.01);
        }
        assert_eq!(bdp.sample(100_000, 1.0), None);
    }
}
