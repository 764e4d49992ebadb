//! Drivers for the four kinds of handlers, used by generated service code.
//!
//! Each driver receives the request, runs the handler under the call's
//! deadline, cancels it when the client resets the stream, turns a panic
//! into `UNKNOWN`, and sends the response and status.

use std::{
    any::Any,
    future::{poll_fn, Future},
    panic::AssertUnwindSafe,
    pin::{pin, Pin},
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Instant,
};

use http::HeaderValue;

use super::{CallSettings, ServerCall};
use crate::{
    codec::Codec,
    encoding,
    metadata::MetadataMap,
    request::Request,
    response::Response,
    status::Status,
    streaming::{DecodeWith, Streaming},
    transport::{
        frame::{self, SendCompression},
        RecvMessages, Role, ServerSend,
    },
};

/// How the handler part of a call ended.
enum Outcome<T> {
    Done(T),
    Panicked(String),
    DeadlineExceeded,
    Reset,
}

/// Polls `fut` (catching panics) against the deadline and a client reset.
async fn supervise<T>(
    fut: impl Future<Output = T>,
    deadline: Option<Instant>,
    mut poll_reset: impl FnMut(&mut Context<'_>) -> Poll<Status>,
) -> Outcome<T> {
    let mut fut = pin!(fut);
    let mut sleep = pin!(deadline.map(|d| tokio::time::sleep_until(d.into())));
    poll_fn(|cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => return Poll::Ready(Outcome::Done(v)),
            Ok(Poll::Pending) => {}
            Err(panic) => return Poll::Ready(Outcome::Panicked(panic_message(&*panic))),
        }
        if let Some(sleep) = sleep.as_mut().as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                return Poll::Ready(Outcome::DeadlineExceeded);
            }
        }
        if poll_reset(cx).is_ready() {
            return Poll::Ready(Outcome::Reset);
        }
        Poll::Pending
    })
    .await
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

fn outcome_status<T>(outcome: Outcome<T>, method: &str) -> Result<T, Option<Status>> {
    match outcome {
        Outcome::Done(v) => Ok(v),
        Outcome::Panicked(msg) => {
            tracing::error!(%method, "handler panicked: {msg}");
            Err(Some(Status::unknown(format!("handler panicked: {msg}"))))
        }
        Outcome::DeadlineExceeded => Err(Some(Status::deadline_exceeded("deadline exceeded"))),
        Outcome::Reset => Err(None),
    }
}

fn deadline_of(call: &ServerCall) -> Option<Instant> {
    call.stream.timeout.map(|t| Instant::now() + t)
}

/// Reads the single request message of a unary or server-streaming call;
/// also says whether it arrived compressed.
async fn read_one<C, Resp, Req>(
    recv: &mut RecvMessages,
    codec: &mut C,
) -> Result<(Req, bool), Status>
where
    C: Codec<Resp, Req>,
{
    let msg = recv.message().await?.ok_or_else(|| {
        Status::internal("cardinality violation: the client sent no request message")
    })?;
    Ok((codec.decode(msg)?, recv.last_compressed()))
}

/// Chooses how responses are compressed: the handler's choice, else the
/// server's default; only with an algorithm the client listed in
/// `grpc-accept-encoding` (otherwise uncompressed, as compression.md says).
fn response_compression(
    requested: Option<&'static str>,
    settings: &CallSettings,
    accept: Option<&HeaderValue>,
) -> Option<SendCompression> {
    let name = requested.or(settings.compression)?;
    if name == "identity" || !encoding::accepts(accept, name) {
        return None;
    }
    encoding::send_compression(name, settings.min_compress_size).unwrap_or_else(|name| {
        tracing::warn!("response compression {name:?} is not registered; sending uncompressed");
        None
    })
}

/// Sends a unary-shaped result: headers, the message, trailers; or the error.
fn finish_unary<C, Resp, Req>(
    send: &mut ServerSend,
    codec: &mut C,
    result: Result<Response<Resp>, Status>,
    settings: &CallSettings,
    accept: Option<&HeaderValue>,
) where
    C: Codec<Resp, Req>,
{
    let response = match result {
        Ok(r) => r,
        Err(status) => return send.send_status(status.into_error(), None),
    };
    let compression = response_compression(response.compression(), settings, accept);
    let (metadata, message, trailers) = response.into_parts();
    let frame = match frame::encode(codec, &message, settings.max_send, compression.as_ref()) {
        Ok(f) => f,
        Err(status) => return send.send_status(status, Some(metadata)),
    };
    let encoding = compression.as_ref().map(|c| c.compressor.name());
    if send.send_headers(metadata, encoding).is_err() || send.send_message_now(frame).is_err() {
        return;
    }
    send.send_status(
        Status::new(crate::Code::Ok, "").with_metadata(trailers),
        None,
    );
}

/// Runs a unary handler.
pub async fn unary<C, Req, Resp, F, Fut>(call: ServerCall, mut codec: C, handler: F)
where
    C: Codec<Resp, Req>,
    F: FnOnce(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    let deadline = deadline_of(&call);
    let ServerCall { stream, settings } = call;
    let mut recv = RecvMessages::new(
        stream.body,
        settings.max_recv,
        Role::Server,
        stream.decompressor,
    );
    let mut send = stream.send;
    let (metadata, peer) = (stream.metadata, stream.peer);
    let codec_ref = &mut codec;
    let work = async move {
        let (message, compressed) = read_one(&mut recv, codec_ref).await?;
        handler(Request::from_server(
            metadata, message, deadline, peer, compressed,
        ))
        .await
    };
    let outcome = supervise(work, deadline, |cx| send.poll_reset(cx)).await;
    let accept = stream.accept_encoding.as_ref();
    match outcome_status(outcome, stream.path.path()) {
        Ok(result) => finish_unary(&mut send, &mut codec, result, &settings, accept),
        Err(Some(status)) => send.send_status(status, None),
        Err(None) => {}
    }
}

/// Runs a client-streaming handler.
pub async fn client_streaming<C, Req, Resp, F, Fut>(call: ServerCall, mut codec: C, handler: F)
where
    C: Codec<Resp, Req> + Clone,
    Req: 'static,
    Resp: 'static,
    F: FnOnce(Request<Streaming<Req>>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    let deadline = deadline_of(&call);
    let ServerCall { stream, settings } = call;
    let recv = RecvMessages::new(
        stream.body,
        settings.max_recv,
        Role::Server,
        stream.decompressor,
    );
    let mut send = stream.send;
    let requests = Streaming::server(recv, DecodeWith::<C, Resp>::boxed(codec.clone()));
    let request = Request::from_server(stream.metadata, requests, deadline, stream.peer, false);
    let outcome = supervise(handler(request), deadline, |cx| send.poll_reset(cx)).await;
    let accept = stream.accept_encoding.as_ref();
    match outcome_status(outcome, stream.path.path()) {
        Ok(result) => finish_unary(&mut send, &mut codec, result, &settings, accept),
        Err(Some(status)) => send.send_status(status, None),
        Err(None) => {}
    }
}

/// Runs a server-streaming handler.
pub async fn server_streaming<C, Req, Resp, F, Fut>(call: ServerCall, mut codec: C, handler: F)
where
    C: Codec<Resp, Req> + Clone,
    Resp: 'static,
    F: FnOnce(Request<Req>, ResponseSink<Resp>) -> Fut,
    Fut: Future<Output = Result<(), Status>>,
{
    let deadline = deadline_of(&call);
    let ServerCall { stream, settings } = call;
    let mut recv = RecvMessages::new(
        stream.body,
        settings.max_recv,
        Role::Server,
        stream.decompressor,
    );
    let shared = SinkState::shared(stream.send, settings, stream.accept_encoding);
    let sink = ResponseSink::new(Arc::clone(&shared), codec.clone(), settings.max_send);
    let (metadata, peer) = (stream.metadata, stream.peer);
    let codec_ref = &mut codec;
    let work = async move {
        let (message, compressed) = read_one(&mut recv, codec_ref).await?;
        handler(
            Request::from_server(metadata, message, deadline, peer, compressed),
            sink,
        )
        .await
    };
    let outcome = supervise(work, deadline, |cx| lock(&shared).send.poll_reset(cx)).await;
    finish_stream(&shared, outcome_status(outcome, stream.path.path()));
}

/// Runs a bidirectional-streaming handler.
pub async fn streaming<C, Req, Resp, F, Fut>(call: ServerCall, codec: C, handler: F)
where
    C: Codec<Resp, Req> + Clone,
    Req: 'static,
    Resp: 'static,
    F: FnOnce(Request<Streaming<Req>>, ResponseSink<Resp>) -> Fut,
    Fut: Future<Output = Result<(), Status>>,
{
    let deadline = deadline_of(&call);
    let ServerCall { stream, settings } = call;
    let recv = RecvMessages::new(
        stream.body,
        settings.max_recv,
        Role::Server,
        stream.decompressor,
    );
    let requests = Streaming::server(recv, DecodeWith::<C, Resp>::boxed(codec.clone()));
    let shared = SinkState::shared(stream.send, settings, stream.accept_encoding);
    let sink = ResponseSink::new(Arc::clone(&shared), codec, settings.max_send);
    let request = Request::from_server(stream.metadata, requests, deadline, stream.peer, false);
    let outcome = supervise(handler(request, sink), deadline, |cx| {
        lock(&shared).send.poll_reset(cx)
    })
    .await;
    finish_stream(&shared, outcome_status(outcome, stream.path.path()));
}

fn finish_stream(shared: &Mutex<SinkState>, result: Result<Result<(), Status>, Option<Status>>) {
    let mut state = lock(shared);
    let status = match result {
        Ok(Ok(())) => {
            let trailers = std::mem::take(&mut state.trailers);
            Status::new(crate::Code::Ok, "").with_metadata(trailers)
        }
        Ok(Err(status)) => {
            let mut status = status.into_error();
            let trailers = std::mem::take(&mut state.trailers);
            if !trailers.is_empty() {
                let mut md = trailers;
                md.extend(std::mem::take(status.metadata_mut()));
                status = status.with_metadata(md);
            }
            status
        }
        Err(Some(status)) => status,
        Err(None) => return,
    };
    state.send.send_status(status, None);
}

/// What a [`ResponseSink`] shares with the driver that supervises it. The
/// lock is per call and taken by one task only, so it is never contended.
struct SinkState {
    send: ServerSend,
    trailers: MetadataMap,
    settings: CallSettings,
    accept: Option<HeaderValue>,
    /// The handler's choice of algorithm, until headers go out.
    requested: Option<&'static str>,
    /// The algorithm in use, decided when headers go out.
    compression: Option<SendCompression>,
    /// Per-message switch: whether the next messages may be compressed.
    compress_messages: bool,
}

impl SinkState {
    fn shared(
        send: ServerSend,
        settings: CallSettings,
        accept: Option<HeaderValue>,
    ) -> Arc<Mutex<SinkState>> {
        Arc::new(Mutex::new(SinkState {
            send,
            trailers: MetadataMap::new(),
            settings,
            accept,
            requested: None,
            compression: None,
            compress_messages: true,
        }))
    }

    /// Sends the headers (deciding the compression) if not yet sent.
    fn send_headers(&mut self, metadata: MetadataMap) -> Result<(), Status> {
        if self.send.headers_sent() {
            return Ok(());
        }
        self.compression =
            response_compression(self.requested, &self.settings, self.accept.as_ref());
        let encoding = self.compression.as_ref().map(|c| c.compressor.name());
        self.send.send_headers(metadata, encoding)
    }
}

fn lock(m: &Mutex<SinkState>) -> std::sync::MutexGuard<'_, SinkState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends the responses of a server-streaming or bidi call (gRPC-Go's
/// `ServerStream.SendMsg`, `SendHeader`, `SetTrailer`, `SetSendCompressor`).
pub struct ResponseSink<T> {
    shared: Arc<Mutex<SinkState>>,
    encode: crate::codec::EncodeFn<T>,
}

impl<T> std::fmt::Debug for ResponseSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseSink").finish_non_exhaustive()
    }
}

impl<T: 'static> ResponseSink<T> {
    fn new<C, D>(shared: Arc<Mutex<SinkState>>, mut codec: C, max_send: usize) -> ResponseSink<T>
    where
        C: Codec<T, D>,
    {
        ResponseSink {
            shared,
            encode: Box::new(move |item, compression| {
                frame::encode(&mut codec, item, max_send, compression)
            }),
        }
    }

    /// Sends the response headers with `metadata` now. Optional: the first
    /// message sends headers (empty) if this was not called.
    ///
    /// # Errors
    /// When headers were already sent or the call has ended.
    pub fn send_header(&mut self, metadata: MetadataMap) -> Result<(), Status> {
        let mut state = lock(&self.shared);
        if state.send.headers_sent() {
            return Err(Status::internal("response headers were already sent"));
        }
        state.send_headers(metadata)
    }

    /// Sets metadata to send in the trailers when the call ends. Adds to what
    /// was set before.
    pub fn set_trailer(&mut self, metadata: MetadataMap) {
        lock(&self.shared).trailers.extend(metadata);
    }

    /// Compresses the responses with `name` (or `"identity"` for none)
    /// instead of the server's default, if the client accepts it; otherwise
    /// they go uncompressed. Must come before the headers are sent.
    ///
    /// # Errors
    /// When the headers were already sent.
    pub fn set_compression(&mut self, name: &'static str) -> Result<(), Status> {
        let mut state = lock(&self.shared);
        if state.send.headers_sent() {
            return Err(Status::internal(
                "set_compression after the response headers were sent",
            ));
        }
        state.requested = Some(name);
        Ok(())
    }

    /// Turns compression of the following messages off (`false`) or back on
    /// (`true`, the default) — the per-message control of compression.md.
    pub fn set_message_compression(&mut self, enabled: bool) {
        lock(&self.shared).compress_messages = enabled;
    }

    /// Sends one message, waiting while the client's flow-control window is
    /// full.
    ///
    /// # Errors
    /// When the message cannot be encoded or is over the max send size
    /// (`RESOURCE_EXHAUSTED`), or the call has ended (e.g. `CANCELLED`).
    pub async fn send(&mut self, message: T) -> Result<(), Status> {
        self.send_ref(&message).await
    }

    /// Sends one message by reference.
    ///
    /// # Errors
    /// As for [`send`](Self::send).
    pub async fn send_ref(&mut self, message: &T) -> Result<(), Status> {
        let frame = {
            let mut state = lock(&self.shared);
            state.send_headers(MetadataMap::new())?;
            let compression = state
                .compression
                .as_ref()
                .filter(|_| state.compress_messages);
            (self.encode)(message, compression)?
        };
        let len = frame.len();
        // The lock is taken per poll, never held across an await.
        poll_fn(|cx| lock(&self.shared).send.poll_capacity(cx, len)).await?;
        lock(&self.shared).send.send_message_now(frame)
    }
}

/// A boxed future, as returned by [`Service::call`](super::Service::call).
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
