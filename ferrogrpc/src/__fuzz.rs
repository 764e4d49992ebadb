//! Entry points for the fuzz targets in `fuzz/` at the repository root.
//!
//! Compiled only with `--cfg fuzzing` (which `cargo fuzz` sets) and hidden
//! from the docs: this is not API. Each item is a thin wrapper over an
//! internal parser of peer input, so the targets exercise the library's own
//! code rather than a copy of it.

#![allow(missing_docs, clippy::missing_errors_doc)]

use std::{
    future::poll_fn,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{
    uri::{Authority, PathAndQuery, Scheme},
    HeaderMap, HeaderValue,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    codec::BytesCodec,
    encoding::Compressor,
    metadata::MetadataMap,
    peer::{Addr, Peer},
    serviceconfig::ServiceConfig,
    status::{RetryPushback, Status},
    transport::{
        client::{request_headers, CallHead, ClientRecv},
        frame, http_util,
        inspect::{ConnSignals, Inspect, StreamGuard},
        server::{grown_windows, PingEvent, Pinger},
        ClientSend,
    },
};

/// Length of the gRPC message prefix (flag and 4-byte length).
pub const MESSAGE_PREFIX_LEN: usize = frame::HEADER_LEN;

/// The receiver's message deframer (`transport::frame::Deframer`).
pub struct Deframer(frame::Deframer);

impl Deframer {
    pub fn new(max_len: usize) -> Deframer {
        Deframer(frame::Deframer::new(max_len))
    }

    /// Adds a chunk; call only after `next` returned `Ok(None)`.
    pub fn push(&mut self, chunk: Bytes) {
        self.0.push(chunk);
    }

    /// The next message as (compressed flag, bytes), or `None` for more data.
    pub fn next(&mut self) -> Result<Option<(bool, Bytes)>, Status> {
        Ok(self.0.next()?.map(|m| (m.compressed, m.data)))
    }

    pub fn finish(&self) -> Result<(), Status> {
        self.0.finish()
    }
}

/// Decompresses one received message as the receiver does, bounded by
/// `max_len` (`transport::frame::decompress`).
pub fn decompress(
    compressor: &dyn Compressor,
    data: &[u8],
    max_len: usize,
) -> Result<Bytes, Status> {
    frame::decompress(compressor, data, max_len)
}

/// Frames (and, with a registered compressor name, maybe compresses) one
/// message as the sender does (`transport::frame::encode`).
pub fn encode_message(
    message: &[u8],
    max_len: usize,
    compression: Option<(&str, usize)>,
) -> Result<Bytes, Status> {
    let compression = match compression {
        Some((name, min_size)) => crate::encoding::send_compression(name, min_size)
            .map_err(|name| Status::unimplemented(format!("no compressor {name}")))?,
        None => None,
    };
    frame::encode(
        &mut BytesCodec,
        &Bytes::copy_from_slice(message),
        max_len,
        compression.as_ref(),
    )
    .map(|e| e.frame)
}

pub fn parse_timeout(raw: &[u8]) -> Result<Duration, String> {
    http_util::parse_timeout(raw)
}

pub fn encode_timeout(timeout: Duration) -> HeaderValue {
    http_util::encode_timeout(timeout)
}

pub fn is_grpc_content_type(value: &[u8]) -> bool {
    http_util::is_grpc_content_type(value)
}

pub fn percent_encode(message: &str) -> String {
    crate::status::percent_encode(message).into_owned()
}

pub fn percent_decode(raw: &[u8]) -> String {
    crate::status::percent_decode(raw)
}

pub fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    crate::metadata::decode_base64(text).ok()
}

pub fn encode_base64(value: &[u8]) -> HeaderValue {
    crate::metadata::encode_base64(value)
}

/// Received headers taken as metadata (`MetadataMap::from_received`).
pub fn metadata_from_received(headers: HeaderMap) -> Result<MetadataMap, Status> {
    MetadataMap::from_received(headers)
}

/// Metadata written out as headers are sent (`MetadataMap::write_to`).
pub fn metadata_write_to(metadata: &MetadataMap, out: &mut HeaderMap) -> Result<(), Status> {
    metadata.write_to(out)
}

/// A status read from received trailers (`grpc-status`, `grpc-message`,
/// `grpc-status-details-bin`, `grpc-retry-pushback-ms`, the rest as metadata).
pub fn status_from_trailers(trailers: HeaderMap) -> Status {
    http_util::status_from_trailers(trailers)
}

/// A status written into trailers as a sender does.
pub fn write_status(status: Status, out: &mut HeaderMap) -> Result<(), Status> {
    http_util::write_status(status, out)
}

pub fn parse_retry_pushback(raw: &[u8]) -> RetryPushback {
    RetryPushback::parse(raw)
}

/// The compressor named by a received `grpc-encoding`.
pub fn decompressor_for(
    header: Option<&HeaderValue>,
) -> Result<Option<Arc<dyn Compressor>>, String> {
    crate::encoding::decompressor_for(header)
}

/// Whether `name` is listed in a received `grpc-accept-encoding`.
pub fn accepts_encoding(accept_encoding: Option<&HeaderValue>, name: &str) -> bool {
    crate::encoding::accepts(accept_encoding, name)
}

/// The service config a client in `language` on `hostname`, having drawn
/// `draw` (0..100), takes from the TXT records of `_grpc_config.<host>`.
pub fn dns_txt_service_config(
    records: &[String],
    language: &str,
    hostname: Option<&str>,
    draw: u32,
) -> Option<Result<ServiceConfig, String>> {
    crate::resolver::dns::service_config(records, language, hostname, draw)
}

/// HTTP/2 settings and keepalive of a fuzzed client connection.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Keepalive (time, timeout); `None` for none.
    pub keepalive: Option<(Duration, Duration)>,
    /// Whether keepalive pings go out with no call under way.
    pub permit_without_calls: bool,
    pub bdp: bool,
    pub initial_stream_window_size: u32,
    pub initial_connection_window_size: u32,
    pub max_header_list_size: u32,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        let config = crate::transport::client::ClientConfig::default();
        ClientOptions {
            connect_timeout: config.connect_timeout,
            keepalive: None,
            permit_without_calls: false,
            bdp: config.bdp,
            initial_stream_window_size: config.initial_stream_window_size,
            initial_connection_window_size: config.initial_connection_window_size,
            max_header_list_size: config.max_header_list_size,
        }
    }
}

/// One client connection over a caller-given stream: the handshake, driver
/// task and stream opening of `transport::client::Http2Client`, without the
/// dialling and TLS that come before them (they need a real socket).
pub struct ClientConn {
    send_request: h2::client::SendRequest<Bytes>,
    peer: Arc<Peer>,
    signals: Arc<ConnSignals>,
    events: Arc<Mutex<Vec<String>>>,
}

/// What one fuzzed call sends.
#[derive(Clone, Debug, Default)]
pub struct CallSpec {
    pub path: String,
    pub timeout: Option<Duration>,
    /// Request messages (unframed); each is framed and maybe compressed.
    pub messages: Vec<Vec<u8>>,
    /// Compress requests with this registered compressor.
    pub compression: Option<&'static str>,
    /// Half-close after the messages.
    pub half_close: bool,
    /// Cancel (RST_STREAM) after reading this many messages.
    pub cancel_after: Option<usize>,
    /// The largest response message accepted (decompressed).
    pub max_recv: usize,
    /// Stop reading after this many messages.
    pub max_messages: usize,
}

/// What a fuzzed call got.
#[derive(Debug)]
pub struct CallOutcome {
    pub headers: MetadataMap,
    pub messages: Vec<Bytes>,
    /// `Ok(trailers)` for a call that ended `OK`.
    pub result: Result<Option<MetadataMap>, Status>,
}

/// Connects over `io` as `Http2Client::connect` does after dialling.
pub async fn client_connect<IO>(io: IO, options: &ClientOptions) -> Result<ClientConn, Status>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let what = "fuzz-server".to_string();
    let signals = ConnSignals::client();
    let deadline = tokio::time::Instant::now() + options.connect_timeout;
    let events = Arc::new(Mutex::new(Vec::new()));
    let io = Inspect::new(io, false, Arc::clone(&signals));
    let handshake = h2::client::Builder::new()
        .initial_window_size(options.initial_stream_window_size)
        .initial_connection_window_size(options.initial_connection_window_size)
        .max_frame_size(16 << 10)
        .max_header_list_size(options.max_header_list_size)
        .data_frame_budget(crate::transport::data_frame_budget(
            options.initial_connection_window_size,
        ))
        .enable_push(false)
        .handshake::<_, Bytes>(io);
    let (send_request, mut connection) = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(parts)) => parts,
        Ok(Err(e)) => {
            return Err(Status::unavailable(format!(
                "HTTP/2 handshake with {what} failed: {e}"
            )))
        }
        Err(_) => return Err(Status::unavailable("connect timed out")),
    };
    if options.bdp {
        signals.enable_bdp();
    }
    let mut pinger = Pinger::new(
        options.keepalive,
        options.bdp.then_some(options.initial_stream_window_size),
        connection.ping_pong(),
    );
    let connection_window = options.initial_connection_window_size;
    let permit_without_calls = options.permit_without_calls;
    let driver_signals = Arc::clone(&signals);
    let driver_events = Arc::clone(&events);
    let on_event = move |event: String| {
        driver_events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    };
    crate::logging::spawn(async move {
        use tokio::time::sleep_until;
        let signals = driver_signals;
        let mut goaway_told = false;
        let reason = loop {
            let deadline = pinger.deadline();
            tokio::select! {
                res = &mut connection => {
                    break match (res, signals.goaway()) {
                        (_, Some(goaway)) => format!("the server sent {}", goaway.describe()),
                        (Ok(()), None) => "connection closed".to_string(),
                        (Err(e), None) => http_util::status_from_h2(&e, "server").message().to_string(),
                    };
                }
                () = signals.notify.notified() => {
                    pinger.on_data(&signals);
                    if let (false, Some(goaway)) = (goaway_told, signals.goaway()) {
                        goaway_told = true;
                        on_event(format!("goaway: {}", goaway.describe()));
                    }
                }
                event = poll_fn(|cx| pinger.poll_ping(cx, &signals)) => {
                    if let PingEvent::Window(window) = event {
                        let (conn_window, stream_window) = grown_windows(window, connection_window);
                        connection.set_target_window_size(conn_window);
                        let _ = connection.set_initial_window_size(stream_window);
                    }
                    pinger.on_data(&signals);
                }
                () = sleep_until(deadline) => {
                    let may_ping = permit_without_calls
                        || signals.active_streams.load(std::sync::atomic::Ordering::Acquire) > 0;
                    if let PingEvent::Dead = pinger.on_deadline(&signals, may_ping) {
                        let reason = "keepalive ping not acknowledged".to_string();
                        let _ = signals.close_reason.set(reason.clone());
                        break reason;
                    }
                }
            }
        };
        drop(connection);
        if let (false, Some(goaway)) = (goaway_told, signals.goaway()) {
            on_event(format!("goaway: {}", goaway.describe()));
        }
        let _ = signals.ended.set(reason.clone());
        signals.handshake.notify_waiters();
        on_event(format!("closed: {reason}"));
    });
    wait_for_settings(&signals, deadline).await?;
    Ok(ClientConn {
        send_request,
        peer: Arc::new(Peer::new(Addr::Unknown, Addr::Unknown)),
        signals,
        events,
    })
}

/// As `transport::client::wait_for_settings`.
async fn wait_for_settings(
    signals: &ConnSignals,
    deadline: tokio::time::Instant,
) -> Result<(), Status> {
    let wait = async {
        loop {
            let notified = signals.handshake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if signals
                .settings_received
                .load(std::sync::atomic::Ordering::Acquire)
            {
                return Ok(());
            }
            if signals.not_http2.load(std::sync::atomic::Ordering::Acquire) {
                return Err(signals.not_http2_status("server"));
            }
            if let Some(reason) = signals.ended.get() {
                return Err(Status::unavailable(format!(
                    "connection ended before the server's SETTINGS arrived: {reason}"
                )));
            }
            notified.await;
        }
    };
    tokio::time::timeout_at(deadline, wait)
        .await
        .unwrap_or_else(|_| Err(Status::unavailable("no SETTINGS from the server in time")))
}

impl ClientConn {
    /// The connection's events (GOAWAY, end) so far.
    pub fn events(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the connection's driver has finished.
    pub fn ended(&self) -> bool {
        self.signals.ended.get().is_some()
    }

    /// Opens a stream as `Http2Client::open_stream` does.
    async fn open_stream(
        &self,
        path: &str,
        timeout: Option<Duration>,
        encoding: Option<&'static str>,
        max_recv: usize,
    ) -> Result<(ClientRecv, ClientSend), Status> {
        let path = PathAndQuery::try_from(path).map_err(|_| Status::internal("unusable path"))?;
        let metadata = MetadataMap::new();
        let head = CallHead {
            scheme: &Scheme::HTTP,
            authority: &Authority::from_static("fuzz.test"),
            path,
            timeout,
            metadata: &metadata,
            content_subtype: "proto",
            encoding,
            previous_attempts: 0,
        };
        let request = request_headers(head)?;
        let refused = |e: h2::Error| self.signals.stream_error(&e, "server");
        let mut sender = self.send_request.clone().ready().await.map_err(refused)?;
        let (response, send) = sender.send_request(request, false).map_err(refused)?;
        let guard = StreamGuard::new(&self.signals);
        Ok((
            ClientRecv::new(response, max_recv, Arc::clone(&self.peer), guard),
            ClientSend::new(send, Arc::clone(&self.signals)),
        ))
    }

    /// Runs one call: sends the request messages, reads the response.
    pub async fn call(&self, spec: CallSpec) -> CallOutcome {
        let mut outcome = CallOutcome {
            headers: MetadataMap::new(),
            messages: Vec::new(),
            result: Ok(None),
        };
        let (mut recv, mut send) = match self
            .open_stream(&spec.path, spec.timeout, spec.compression, spec.max_recv)
            .await
        {
            Ok(parts) => parts,
            Err(status) => {
                outcome.result = Err(status);
                return outcome;
            }
        };
        let compression = spec.compression.map(|name| (name, 0));
        for message in &spec.messages {
            let framed = match encode_message(message, usize::MAX, compression) {
                Ok(framed) => framed,
                Err(status) => {
                    outcome.result = Err(status);
                    return outcome;
                }
            };
            if let Err(status) = send.send(framed).await {
                outcome.result = Err(status);
                return outcome;
            }
        }
        if spec.half_close {
            if let Err(status) = send.close() {
                outcome.result = Err(status);
                return outcome;
            }
        }
        recv = recv.with_send(send);
        if let Err(status) = poll_fn(|cx| recv.poll_headers(cx)).await {
            outcome.result = Err(status);
            return outcome;
        }
        outcome.headers = recv.take_headers();
        loop {
            if spec.cancel_after == Some(outcome.messages.len()) {
                recv.cancel();
            }
            if outcome.messages.len() >= spec.max_messages {
                break;
            }
            match poll_fn(|cx| recv.poll_message(cx)).await {
                Ok(Some(message)) => outcome.messages.push(message),
                Ok(None) => {
                    outcome.result = Ok(Some(recv.take_trailers()));
                    break;
                }
                Err(status) => {
                    outcome.result = Err(status);
                    break;
                }
            }
        }
        outcome
    }
}
