//! The HTTP/2 transport: the only module that knows HTTP/2 (it drives the h2
//! crate). Everything above it sees gRPC streams: metadata in, messages in
//! and out, a status at the end.
//!
//! - [`frame`]: the 5-byte message prefix and the deframer.
//! - [`http_util`]: `grpc-timeout`, content types, and the table from
//!   HTTP/2 and HTTP errors to gRPC codes.
//! - [`server`]: accepting connections and streams.
//! - [`client`]: connecting and opening streams.

pub(crate) mod client;
pub(crate) mod frame;
pub(crate) mod http_util;
pub(crate) mod inspect;
pub(crate) mod server;

use std::{
    future::poll_fn,
    sync::Arc,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use crate::{codes::Code, encoding::Compressor, metadata::MetadataMap, status::Status};
use frame::Deframer;

/// Which end of the call this stream is, for error messages and trailers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Server,
}

impl Role {
    fn peer(self) -> &'static str {
        match self {
            Role::Client => "server",
            Role::Server => "client",
        }
    }
}

/// The receiving half of a gRPC stream: yields whole encoded messages, and on
/// the client, the final status from the trailers.
pub(crate) struct RecvMessages {
    body: h2::RecvStream,
    deframer: Deframer,
    role: Role,
    state: RecvState,
    /// The algorithm named by the peer's `grpc-encoding`, if any.
    decompressor: Option<Arc<dyn Compressor>>,
    max_len: usize,
    /// Whether the last message returned had the compressed flag.
    last_compressed: bool,
    /// Wire size (prefix included) of the last message returned.
    last_wire_len: usize,
    /// The connection's signals (client side), to name why it failed.
    conn: Option<Arc<inspect::ConnSignals>>,
    /// The server connection's channelz, which counts messages received.
    #[cfg(feature = "channelz")]
    server_channelz: Option<Arc<crate::channelz::ServerConn>>,
    /// The peer ended the stream (END_STREAM, client side: with trailers or
    /// without), whatever the status.
    end_stream: bool,
}

enum RecvState {
    /// Reading DATA frames.
    Body,
    /// The body ended (client side): reading trailers.
    Trailers,
    /// Finished; the client keeps the trailers it received.
    Done(MetadataMap),
    /// Failed; the same error is returned again.
    Failed(Status),
}

impl RecvMessages {
    pub(crate) fn new(
        body: h2::RecvStream,
        max_len: usize,
        role: Role,
        decompressor: Option<Arc<dyn Compressor>>,
    ) -> RecvMessages {
        RecvMessages {
            body,
            deframer: Deframer::new(max_len),
            role,
            state: RecvState::Body,
            decompressor,
            max_len,
            last_compressed: false,
            last_wire_len: 0,
            conn: None,
            #[cfg(feature = "channelz")]
            server_channelz: None,
            end_stream: false,
        }
    }

    /// A stream that already ended with an OK status (Trailers-Only).
    pub(crate) fn finished(body: h2::RecvStream, trailers: MetadataMap) -> RecvMessages {
        RecvMessages {
            body,
            deframer: Deframer::new(0),
            role: Role::Client,
            state: RecvState::Done(trailers),
            decompressor: None,
            max_len: 0,
            last_compressed: false,
            last_wire_len: 0,
            conn: None,
            #[cfg(feature = "channelz")]
            server_channelz: None,
            end_stream: true,
        }
    }

    /// Counts the messages received on the server connection's channelz.
    #[cfg(feature = "channelz")]
    pub(crate) fn with_server_channelz(
        mut self,
        conn: Option<Arc<crate::channelz::ServerConn>>,
    ) -> RecvMessages {
        self.server_channelz = conn;
        self
    }

    /// Whether the peer ended the stream (client side: the server sent
    /// END_STREAM), as opposed to a reset or a failure found here.
    #[cfg_attr(not(feature = "channelz"), allow(dead_code))]
    pub(crate) fn end_stream_received(&self) -> bool {
        self.end_stream
    }

    /// A whole message arrived: channelz counts it.
    #[inline]
    fn count_received(&self) {
        #[cfg(feature = "channelz")]
        if let Some(z) = &self.server_channelz {
            z.message_received();
        } else if let Some(z) = self.conn.as_deref().and_then(|c| c.client_channelz()) {
            z.message_received();
        }
    }

    fn fail(&mut self, status: Status) -> Poll<Result<Option<Bytes>, Status>> {
        self.state = RecvState::Failed(status.clone());
        Poll::Ready(Err(status))
    }

    /// Polls for the next message. `Ok(None)` is the end of the stream; on
    /// the client that means the call ended with `OK`.
    pub(crate) fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, Status>> {
        loop {
            match &self.state {
                RecvState::Body => {}
                RecvState::Trailers => return self.poll_trailers(cx),
                RecvState::Done(_) => return Poll::Ready(Ok(None)),
                RecvState::Failed(status) => return Poll::Ready(Err(status.clone())),
            }
            match self.deframer.next() {
                Ok(Some(msg)) => {
                    self.count_received();
                    self.last_compressed = msg.compressed;
                    self.last_wire_len = frame::HEADER_LEN + msg.data.len();
                    if !msg.compressed {
                        return Poll::Ready(Ok(Some(msg.data)));
                    }
                    let result = match &self.decompressor {
                        Some(c) => frame::decompress(&**c, &msg.data, self.max_len),
                        None => Err(Status::internal(
                            "received a compressed message but no grpc-encoding was negotiated",
                        )),
                    };
                    return match result {
                        Ok(data) => Poll::Ready(Ok(Some(data))),
                        Err(status) => self.fail(status),
                    };
                }
                Ok(None) => {}
                Err(status) => return self.fail(status),
            }
            match ready!(self.body.poll_data(cx)) {
                Some(Ok(chunk)) => {
                    let _ = self.body.flow_control().release_capacity(chunk.len());
                    self.deframer.push(chunk);
                }
                Some(Err(err)) => {
                    let status = self.stream_error(&err);
                    return self.fail(status);
                }
                None => {
                    // END_STREAM: on the last DATA frame, or the trailers.
                    self.end_stream = true;
                    if let Err(status) = self.deframer.finish() {
                        return self.fail(status);
                    }
                    match self.role {
                        Role::Server => {
                            self.state = RecvState::Done(MetadataMap::new());
                            return Poll::Ready(Ok(None));
                        }
                        Role::Client => self.state = RecvState::Trailers,
                    }
                }
            }
        }
    }

    fn poll_trailers(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Status>> {
        match ready!(self.body.poll_trailers(cx)) {
            Ok(Some(trailers)) => {
                let status = http_util::status_from_trailers(trailers);
                if status.code() == Code::Ok {
                    let (_, _, _, metadata) = status.into_parts();
                    self.state = RecvState::Done(metadata);
                    Poll::Ready(Ok(None))
                } else {
                    self.fail(status)
                }
            }
            Ok(None) => self.fail(Status::internal(
                "server closed the stream without sending trailers",
            )),
            Err(err) => {
                let status = self.stream_error(&err);
                self.fail(status)
            }
        }
    }

    /// Lets errors name the connection's end (client side).
    pub(crate) fn with_conn(mut self, conn: Arc<inspect::ConnSignals>) -> RecvMessages {
        self.conn = Some(conn);
        self
    }

    fn stream_error(&self, err: &h2::Error) -> Status {
        tracing::debug!(peer = self.role.peer(), "stream error: {err}");
        if let Some(conn) = &self.conn {
            return conn.stream_error(err, self.role.peer());
        }
        if self.role == Role::Server && err.reason() == Some(h2::Reason::CANCEL) {
            return Status::cancelled("call cancelled by the client");
        }
        http_util::status_from_h2(err, self.role.peer())
    }

    /// The next message.
    pub(crate) async fn message(&mut self) -> Result<Option<Bytes>, Status> {
        poll_fn(|cx| self.poll_message(cx)).await
    }

    /// The trailers, once the stream ended with `OK` (client side).
    pub(crate) fn trailers(&self) -> Option<&MetadataMap> {
        match &self.state {
            RecvState::Done(md) => Some(md),
            _ => None,
        }
    }

    /// Takes the trailers, once the stream ended with `OK`.
    pub(crate) fn take_trailers(&mut self) -> MetadataMap {
        match &mut self.state {
            RecvState::Done(md) => std::mem::take(md),
            _ => MetadataMap::new(),
        }
    }

    /// Whether the last message returned arrived compressed.
    pub(crate) fn last_compressed(&self) -> bool {
        self.last_compressed
    }

    /// The wire size (prefix included) of the last message returned.
    pub(crate) fn last_wire_len(&self) -> usize {
        self.last_wire_len
    }

    /// Whether the stream has ended, successfully or not.
    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.state, RecvState::Done(_) | RecvState::Failed(_))
    }
}

/// h2's budget for DATA frames received but not read yet: each small frame
/// costs h2 about 256 bytes of bookkeeping whatever its payload, so
/// flow control alone lets a peer that sends one-byte frames make us hold
/// some 250 times its window (measured: 270 MB for 1 MiB of one-byte frames).
/// Past the budget h2 ends the connection with GOAWAY ENHANCE_YOUR_CALM
/// `too_many_data_frames`. h2's own default, half the connection window
/// (1 MiB here), cut off an honest client after about 4,000 small messages
/// a busy handler had not read yet; two windows allow some 16,000 (none of
/// the messages of 256 bytes or more count) while a hostile peer can make a
/// connection hold about 12 MB at most (`tests/hardening_memory.rs`). A
/// larger configured window raises it up to 16 MiB (about 50 MB, scaled
/// from that measurement).
pub(crate) fn data_frame_budget(connection_window: u32) -> usize {
    (connection_window as usize)
        .saturating_mul(2)
        .clamp(1 << 20, 16 << 20)
}

/// Waits until the peer's flow-control window (and h2's send buffer limit)
/// has room for at least part of a `len`-byte message, so a fast sender cannot
/// buffer without bound: at most one message is buffered beyond the window.
pub(crate) fn poll_send_capacity(
    stream: &mut h2::SendStream<Bytes>,
    cx: &mut Context<'_>,
    len: usize,
) -> Poll<Result<(), h2::Error>> {
    if stream.capacity() > 0 {
        return Poll::Ready(Ok(()));
    }
    stream.reserve_capacity(len.max(1));
    loop {
        if stream.capacity() > 0 {
            return Poll::Ready(Ok(()));
        }
        match ready!(stream.poll_capacity(cx)) {
            Some(Ok(_)) => {}
            Some(Err(err)) => return Poll::Ready(Err(err)),
            // The stream can no longer send; `send_data` reports why.
            None => return Poll::Ready(Ok(())),
        }
    }
}

/// The sending half of a server stream: response headers, messages, and the
/// status in trailers (or Trailers-Only when nothing was sent before).
pub(crate) struct ServerSend {
    state: ServerSendState,
    /// The request's content-subtype, which the response's content type
    /// repeats.
    subtype: http_util::ContentSubtype,
    /// The connection's channelz, which counts the stream's end and
    /// messages.
    #[cfg(feature = "channelz")]
    channelz: Option<Arc<crate::channelz::ServerConn>>,
}

enum ServerSendState {
    Start(h2::server::SendResponse<Bytes>),
    Body(h2::SendStream<Bytes>),
    Done,
}

/// Response headers every gRPC response starts with: the content type
/// (naming the request's content-subtype) and the encodings this side can
/// decode.
fn grpc_response_headers(capacity: usize, subtype: &http_util::ContentSubtype) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(capacity.min(http_util::MAX_HEADER_HINT) + 3);
    headers.insert(http::header::CONTENT_TYPE, subtype.content_type());
    let registry = crate::encoding::registry();
    let accept = registry.accept_encoding();
    if !accept.is_empty() {
        headers.insert(http_util::GRPC_ACCEPT_ENCODING, accept.clone());
    }
    headers
}

fn response(headers: HeaderMap) -> http::Response<()> {
    let mut resp = http::Response::new(());
    *resp.headers_mut() = headers;
    resp
}

impl ServerSend {
    /// The response to a request in the content-subtype `subtype`.
    pub(crate) fn new(
        respond: h2::server::SendResponse<Bytes>,
        subtype: http_util::ContentSubtype,
    ) -> ServerSend {
        ServerSend {
            state: ServerSendState::Start(respond),
            subtype,
            #[cfg(feature = "channelz")]
            channelz: None,
        }
    }

    /// Counts this stream on the connection's channelz: started now, ended
    /// when its status goes out (or it is dropped without one).
    #[cfg(feature = "channelz")]
    pub(crate) fn set_channelz(&mut self, conn: Option<Arc<crate::channelz::ServerConn>>) {
        if let Some(z) = &conn {
            z.stream_started();
        }
        self.channelz = conn;
    }

    fn closed() -> Status {
        Status::cancelled("the call has already ended")
    }

    /// Whether response headers went out already.
    pub(crate) fn headers_sent(&self) -> bool {
        !matches!(self.state, ServerSendState::Start(_))
    }

    /// Sends the response headers with `metadata` and, when messages will be
    /// compressed, `grpc-encoding`. Does nothing if they were sent already.
    pub(crate) fn send_headers(
        &mut self,
        metadata: MetadataMap,
        encoding: Option<&'static str>,
    ) -> Result<(), Status> {
        let respond = match &mut self.state {
            ServerSendState::Start(respond) => respond,
            ServerSendState::Body(_) => return Ok(()),
            ServerSendState::Done => return Err(ServerSend::closed()),
        };
        let mut headers = grpc_response_headers(metadata.len(), &self.subtype);
        if let Some(name) = encoding {
            headers.insert(http_util::GRPC_ENCODING, HeaderValue::from_static(name));
        }
        // Headers that cannot be built leave the call able to send a status.
        metadata.write_to(&mut headers)?;
        match respond.send_response(response(headers), false) {
            Ok(stream) => {
                self.state = ServerSendState::Body(stream);
                Ok(())
            }
            Err(err) => {
                self.state = ServerSendState::Done;
                Err(http_util::status_from_h2(&err, "client"))
            }
        }
    }

    fn body(&mut self) -> Result<&mut h2::SendStream<Bytes>, Status> {
        if let ServerSendState::Start(_) = self.state {
            self.send_headers(MetadataMap::new(), None)?;
        }
        match &mut self.state {
            ServerSendState::Body(stream) => Ok(stream),
            _ => Err(ServerSend::closed()),
        }
    }

    /// Queues an encoded message without waiting for flow control (one
    /// message, such as a unary response).
    pub(crate) fn send_message_now(&mut self, frame: Bytes) -> Result<(), Status> {
        self.body()?
            .send_data(frame, false)
            .map_err(|err| http_util::status_from_h2(&err, "client"))?;
        #[cfg(feature = "channelz")]
        if let Some(z) = &self.channelz {
            z.message_sent();
        }
        Ok(())
    }

    /// Waits for flow-control room to send a `len`-byte message.
    pub(crate) fn poll_capacity(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
    ) -> Poll<Result<(), Status>> {
        let stream = self.body()?;
        poll_send_capacity(stream, cx, len).map_err(|err| {
            if err.reason() == Some(h2::Reason::CANCEL) {
                Status::cancelled("call cancelled by the client")
            } else {
                http_util::status_from_h2(&err, "client")
            }
        })
    }

    /// Ends the call with `status` and trailing metadata. Sends Trailers-Only
    /// when no headers went out yet. Further sends fail.
    pub(crate) fn send_status(&mut self, status: Status, header_metadata: Option<MetadataMap>) {
        #[cfg(feature = "channelz")]
        let (channelz, ok) = (self.channelz.take(), status.code() == crate::Code::Ok);
        // Whether the status went out (END_STREAM): not on a stream the
        // client reset first, which channelz counts as failed (gRPC-Go's
        // `eosReceived` false).
        let sent = match std::mem::replace(&mut self.state, ServerSendState::Done) {
            ServerSendState::Start(mut respond) => {
                let capacity = status.metadata().len() + 2;
                let mut base = grpc_response_headers(capacity, &self.subtype);
                // Header metadata that does not fit is dropped; the status
                // then says why instead.
                let written = header_metadata.map_or(Ok(()), |md| md.write_to(&mut base));
                let status = match written {
                    Ok(()) => status,
                    Err(err) => {
                        tracing::warn!("response headers not sent: {}", err.message());
                        base = grpc_response_headers(0, &self.subtype);
                        Status::internal(format!(
                            "the call's response headers could not be sent: {}",
                            err.message()
                        ))
                    }
                };
                let headers = http_util::write_status_or_internal(status, || base.clone());
                respond.send_response(response(headers), true).is_ok()
            }
            ServerSendState::Body(mut stream) => {
                let hint = status.metadata().len().min(http_util::MAX_HEADER_HINT) + 2;
                let trailers =
                    http_util::write_status_or_internal(status, || HeaderMap::with_capacity(hint));
                stream.send_trailers(trailers).is_ok()
            }
            ServerSendState::Done => false,
        };
        #[cfg(feature = "channelz")]
        if let Some(z) = channelz {
            z.stream_ended(sent, ok && sent);
        }
        #[cfg(not(feature = "channelz"))]
        let _ = sent;
    }

    /// Resolves when the client resets the stream (or the connection goes),
    /// with the status the handler's call ends with.
    pub(crate) fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<Status> {
        let res = match &mut self.state {
            ServerSendState::Start(respond) => respond.poll_reset(cx),
            ServerSendState::Body(stream) => stream.poll_reset(cx),
            ServerSendState::Done => return Poll::Pending,
        };
        Poll::Ready(match ready!(res) {
            Ok(h2::Reason::CANCEL) | Ok(h2::Reason::NO_ERROR) => {
                Status::cancelled("call cancelled by the client")
            }
            Ok(reason) => Status::new(
                http_util::code_for_reason(reason),
                format!("stream reset by the client with {reason:?}"),
            ),
            Err(err) => http_util::status_from_h2(&err, "client"),
        })
    }
}

#[cfg(feature = "channelz")]
impl Drop for ServerSend {
    fn drop(&mut self) {
        // Ended without a status: reset, or its connection went.
        if let Some(z) = self.channelz.take() {
            z.stream_ended(false, false);
        }
    }
}

/// The sending half of a client stream.
/// The largest payload h2 takes in one `send_data` (its max window size).
const MAX_DATA_FRAME: usize = (1 << 31) - 1;

/// Whether a `send_data` error means the stream was already closed: h2's
/// user errors carry no reason and are not I/O, GOAWAY, reset or library
/// errors; with the size checked first, the only one left is "inactive
/// stream".
fn is_closed_stream(err: &h2::Error) -> bool {
    err.reason().is_none()
        && !err.is_io()
        && !err.is_go_away()
        && !err.is_reset()
        && !err.is_remote()
        && !err.is_library()
}

pub(crate) struct ClientSend {
    stream: h2::SendStream<Bytes>,
    closed: bool,
    conn: Arc<inspect::ConnSignals>,
}

impl ClientSend {
    pub(crate) fn new(
        stream: h2::SendStream<Bytes>,
        conn: Arc<inspect::ConnSignals>,
    ) -> ClientSend {
        ClientSend {
            stream,
            closed: false,
            conn,
        }
    }

    fn error(&mut self, err: &h2::Error) -> Status {
        if is_closed_stream(err) {
            return self.closed_status();
        }
        self.conn.stream_error(err, "server")
    }

    /// Why a stream that takes no more messages ended, as far as this side
    /// can tell: the server's reset or GOAWAY, or else its answer.
    fn closed_status(&mut self) -> Status {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.stream.poll_reset(&mut cx) {
            Poll::Ready(Ok(reason)) if reason != h2::Reason::NO_ERROR => {
                match self.conn.goaway().filter(|g| g.code == u32::from(reason)) {
                    Some(goaway) => Status::unavailable(format!(
                        "connection closed by server with {}",
                        goaway.describe()
                    )),
                    None => self.conn.stream_error(&h2::Error::from(reason), "server"),
                }
            }
            Poll::Ready(Err(err)) => self.conn.stream_error(&err, "server"),
            _ => Status::internal(
                "the call has already ended (the server answered it); its status comes \
                 from the response",
            ),
        }
    }

    /// Sends one message and, with `end`, half-closes, without waiting for
    /// flow control (a unary or server-streaming request).
    ///
    /// A stream the server already closed (it answered, e.g. Trailers-Only
    /// UNIMPLEMENTED, or reset it, before the message went out; on a
    /// multi-thread runtime the connection task can see that between the
    /// headers and this call) is not an error here: the response, read
    /// next, carries the call's status, as in gRPC-Go.
    pub(crate) fn send_now(&mut self, frame: Bytes, end: bool) -> Result<(), Status> {
        self.closed |= end;
        // h2 refuses larger frames with a user error of its own, which must
        // not be taken for a closed stream.
        if frame.len() > MAX_DATA_FRAME {
            return Err(Status::resource_exhausted(format!(
                "message of {} bytes is larger than HTTP/2 allows in one send",
                frame.len()
            )));
        }
        match self.stream.send_data(frame, end) {
            Ok(()) => {
                self.count_sent();
                Ok(())
            }
            Err(e) if is_closed_stream(&e) => Ok(()),
            Err(e) => Err(self.error(&e)),
        }
    }

    /// Sends one message, waiting for flow-control room first.
    pub(crate) async fn send(&mut self, frame: Bytes) -> Result<(), Status> {
        let len = frame.len();
        poll_fn(|cx| self.poll_capacity(cx, len)).await?;
        self.send_ready(frame)
    }

    /// Waits until there is flow-control room for (part of) a `len`-byte
    /// message.
    pub(crate) fn poll_capacity(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
    ) -> Poll<Result<(), Status>> {
        if self.closed {
            return Poll::Ready(Err(Status::internal(
                "send after the request stream was closed",
            )));
        }
        poll_send_capacity(&mut self.stream, cx, len).map_err(|e| self.error(&e))
    }

    /// Sends one message after [`poll_capacity`](Self::poll_capacity) said
    /// there is room.
    pub(crate) fn send_ready(&mut self, frame: Bytes) -> Result<(), Status> {
        if frame.len() > MAX_DATA_FRAME {
            return Err(Status::resource_exhausted(format!(
                "message of {} bytes is larger than HTTP/2 allows in one send",
                frame.len()
            )));
        }
        let result = self.stream.send_data(frame, false);
        result.map_err(|e| self.error(&e))?;
        self.count_sent();
        Ok(())
    }

    /// A message went out: channelz counts it.
    #[inline]
    fn count_sent(&self) {
        #[cfg(feature = "channelz")]
        if let Some(z) = self.conn.client_channelz() {
            z.message_sent();
        }
    }

    /// Whether the server never processed this stream, so the call may be
    /// replayed on another: it refused it (REFUSED_STREAM), or a GOAWAY's
    /// last stream id is below it.
    pub(crate) fn unprocessed(&mut self) -> bool {
        let id = u32::from(self.stream.stream_id());
        if self.conn.goaway_unprocessed(id) {
            return true;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        matches!(
            self.stream.poll_reset(&mut cx),
            Poll::Ready(Ok(h2::Reason::REFUSED_STREAM))
        )
    }

    /// Half-closes the request stream. Idempotent.
    pub(crate) fn close(&mut self) -> Result<(), Status> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let result = self.stream.send_data(Bytes::new(), true);
        result.map_err(|e| self.error(&e))
    }

    /// Cancels the call: RST_STREAM(CANCEL).
    pub(crate) fn cancel(&mut self) {
        self.closed = true;
        self.stream.send_reset(h2::Reason::CANCEL);
    }
}
