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
    /// At most this many client resets per period (rapid reset).
    pub(crate) reset_limit: Option<(u32, Duration)>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_concurrent_streams: None,
            initial_stream_window_size: 1 << 20,
            initial_connection_window_size: 2 << 20,
            max_frame_size: 16 << 10,
            max_header_list_size: 16 << 20,
            handshake_timeout: Duration::from_secs(20),
            keepalive: ServerParameters::default(),
            enforcement: EnforcementPolicy::default(),
            reset_limit: Some((400, Duration::from_secs(1))),
        }
    }
}

/// What stage of shutdown the server is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shutdown {
    Running,
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

/// Keepalive pinging state of one connection (used by both sides).
pub(crate) struct Keepalive {
    time: Duration,
    timeout: Duration,
    ping_pong: Option<h2::PingPong>,
    /// The ping in flight, with the ping-pong handle it borrowed.
    in_flight: Option<std::pin::Pin<Box<dyn std::future::Future<Output = h2::PingPong> + Send>>>,
    deadline: tokio::time::Instant,
    seen_frames: u64,
}

/// What the keepalive timer decided.
pub(crate) enum KeepaliveEvent {
    /// Nothing to do yet.
    Wait,
    /// No acknowledgement in time: the connection is dead.
    Dead,
}

impl Keepalive {
    pub(crate) fn new(
        time: Duration,
        timeout: Duration,
        ping_pong: Option<h2::PingPong>,
    ) -> Keepalive {
        Keepalive {
            time,
            timeout,
            ping_pong,
            in_flight: None,
            deadline: tokio::time::Instant::now() + time,
            seen_frames: 0,
        }
    }

    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        self.deadline
    }

    /// Called at the deadline (or when the ping completes): pings if the
    /// peer was quiet for `time`, declares it dead if a ping went
    /// unanswered for `timeout`. `may_ping` is false when pinging is not
    /// allowed now (a client with no calls).
    pub(crate) fn on_deadline(&mut self, signals: &ConnSignals, may_ping: bool) -> KeepaliveEvent {
        let frames = signals
            .inbound_frames
            .load(std::sync::atomic::Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        if self.in_flight.is_some() {
            if frames != self.seen_frames {
                // The peer answered (the ACK or anything else counts).
                self.in_flight = None;
                self.seen_frames = frames;
                self.deadline = now + self.time;
                return KeepaliveEvent::Wait;
            }
            return KeepaliveEvent::Dead;
        }
        if frames != self.seen_frames || !may_ping {
            self.seen_frames = frames;
            self.deadline = now + self.time;
            return KeepaliveEvent::Wait;
        }
        if let Some(mut pp) = self.ping_pong.take() {
            self.in_flight = Some(Box::pin(async move {
                let _ = pp.ping(h2::Ping::opaque()).await;
                pp
            }));
        }
        self.deadline = now + self.timeout;
        KeepaliveEvent::Wait
    }

    /// Drives the ping in flight. When its acknowledgement arrives the peer
    /// is alive: the next ping waits a full `time`.
    pub(crate) fn poll_ping(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let Some(fut) = self.in_flight.as_mut() else {
            return std::task::Poll::Pending;
        };
        let pp = std::task::ready!(fut.as_mut().poll(cx));
        self.in_flight = None;
        self.ping_pong = Some(pp);
        self.deadline = tokio::time::Instant::now() + self.time;
        std::task::Poll::Ready(())
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
        .max_header_list_size(config.max_header_list_size);
    if let Some(n) = config.max_concurrent_streams {
        builder.max_concurrent_streams(n);
    }
    let mut conn = match tokio::time::timeout(config.handshake_timeout, builder.handshake(io)).await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => {
            tracing::debug!(peer = %peer.remote_addr, "HTTP/2 handshake failed: {err}");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %peer.remote_addr, "HTTP/2 handshake timed out");
            return;
        }
    };
    let params = config.keepalive;
    let mut keepalive = Keepalive::new(params.time, params.timeout, conn.ping_pong());
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
    const DRAIN: Duration = Duration::from_secs(5);
    loop {
        if changed {
            let state = *shutdown.borrow_and_update();
            match state {
                Shutdown::Running => {}
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
        let keepalive_deadline = keepalive.deadline();
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
            () = sleep_until(drain_deadline) => {
                // h2 sends its final GOAWAY only after the client acknowledges
                // a PING; a client that never does must not keep the
                // connection forever (gRPC-Go waits 5 s too).
                drain_deadline = far;
                conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                continue;
            }
            () = poll_fn(|cx| keepalive.poll_ping(cx)) => continue,
            () = sleep_until(keepalive_deadline) => {
                if let KeepaliveEvent::Dead = keepalive.on_deadline(&signals, true) {
                    tracing::debug!(peer = %peer.remote_addr, "keepalive ping not acknowledged within {:?}; closing", params.timeout);
                    return;
                }
                continue;
            }
            () = sleep_until(idle_check) => {
                let idle = params.max_connection_idle.unwrap_or_default();
                idle_check = match signals.idle_since() {
                    Some(since) if Instant::from_std(since) + idle <= Instant::now() && !graceful => {
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
    if !content_type.is_some_and(|v| http_util::is_grpc_content_type(v.as_bytes())) {
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
    }
    let Some(path) = parts.uri.path_and_query().cloned() else {
        reject(&mut respond, StatusCode::NOT_FOUND, "request has no :path");
        return None;
    };
    let mut send = ServerSend::new(respond);
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
    http_util::write_status(Status::internal(message), &mut headers);
    let mut resp = http::Response::new(());
    *resp.status_mut() = status;
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(http::header::ALLOW, HeaderValue::from_static("POST"));
    }
    *resp.headers_mut() = headers;
    let _ = respond.send_response(resp, true);
}
