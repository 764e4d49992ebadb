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

use super::ServerCall;
use crate::{
    codec::Codec,
    metadata::MetadataMap,
    request::Request,
    response::Response,
    status::Status,
    streaming::{DecodeWith, Streaming},
    transport::{frame, RecvMessages, Role, ServerSend},
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

/// Reads the single request message of a unary or server-streaming call.
async fn read_one<C, Resp, Req>(recv: &mut RecvMessages, codec: &mut C) -> Result<Req, Status>
where
    C: Codec<Resp, Req>,
{
    let msg = recv.message().await?.ok_or_else(|| {
        Status::internal("cardinality violation: the client sent no request message")
    })?;
    codec.decode(msg)
}

/// Sends a unary-shaped result: headers, the message, trailers; or the error.
fn finish_unary<C, Resp, Req>(
    send: &mut ServerSend,
    codec: &mut C,
    result: Result<Response<Resp>, Status>,
    max_send: usize,
) where
    C: Codec<Resp, Req>,
{
    let response = match result {
        Ok(r) => r,
        Err(status) => return send.send_status(status.into_error(), None),
    };
    let (metadata, message, trailers) = response.into_parts();
    let frame = match frame::encode(codec, &message, max_send) {
        Ok(f) => f,
        Err(status) => return send.send_status(status, Some(metadata)),
    };
    if send.send_headers(metadata).is_err() || send.send_message_now(frame).is_err() {
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
    let ServerCall { stream, limits } = call;
    let mut recv = RecvMessages::new(stream.body, limits.max_recv, Role::Server);
    let mut send = stream.send;
    let (metadata, peer) = (stream.metadata, stream.peer);
    let codec_ref = &mut codec;
    let work = async move {
        let message = read_one(&mut recv, codec_ref).await?;
        handler(Request::from_server(metadata, message, deadline, peer)).await
    };
    let outcome = supervise(work, deadline, |cx| send.poll_reset(cx)).await;
    match outcome_status(outcome, stream.path.path()) {
        Ok(result) => finish_unary(&mut send, &mut codec, result, limits.max_send),
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
    let ServerCall { stream, limits } = call;
    let recv = RecvMessages::new(stream.body, limits.max_recv, Role::Server);
    let mut send = stream.send;
    let requests = Streaming::server(recv, DecodeWith::<C, Resp>::boxed(codec.clone()));
    let request = Request::from_server(stream.metadata, requests, deadline, stream.peer);
    let outcome = supervise(handler(request), deadline, |cx| send.poll_reset(cx)).await;
    match outcome_status(outcome, stream.path.path()) {
        Ok(result) => finish_unary(&mut send, &mut codec, result, limits.max_send),
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
    let ServerCall { stream, limits } = call;
    let mut recv = RecvMessages::new(stream.body, limits.max_recv, Role::Server);
    let shared = Arc::new(Mutex::new(SinkState {
        send: stream.send,
        trailers: MetadataMap::new(),
    }));
    let sink = ResponseSink::new(Arc::clone(&shared), codec.clone(), limits.max_send);
    let (metadata, peer) = (stream.metadata, stream.peer);
    let codec_ref = &mut codec;
    let work = async move {
        let message = read_one(&mut recv, codec_ref).await?;
        handler(
            Request::from_server(metadata, message, deadline, peer),
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
    let ServerCall { stream, limits } = call;
    let recv = RecvMessages::new(stream.body, limits.max_recv, Role::Server);
    let requests = Streaming::server(recv, DecodeWith::<C, Resp>::boxed(codec.clone()));
    let shared = Arc::new(Mutex::new(SinkState {
        send: stream.send,
        trailers: MetadataMap::new(),
    }));
    let sink = ResponseSink::new(Arc::clone(&shared), codec, limits.max_send);
    let request = Request::from_server(stream.metadata, requests, deadline, stream.peer);
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
}

fn lock(m: &Mutex<SinkState>) -> std::sync::MutexGuard<'_, SinkState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends the responses of a server-streaming or bidi call (gRPC-Go's
/// `ServerStream.SendMsg`, `SendHeader`, `SetTrailer`).
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
            encode: Box::new(move |item| frame::encode(&mut codec, item, max_send)),
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
        state.send.send_headers(metadata)
    }

    /// Sets metadata to send in the trailers when the call ends. Adds to what
    /// was set before.
    pub fn set_trailer(&mut self, metadata: MetadataMap) {
        lock(&self.shared).trailers.extend(metadata);
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
        let frame = (self.encode)(message)?;
        let len = frame.len();
        // The lock is taken per poll, never held across an await.
        poll_fn(|cx| lock(&self.shared).send.poll_capacity(cx, len)).await?;
        lock(&self.shared).send.send_message_now(frame)
    }
}

/// A boxed future, as returned by [`Service::call`](super::Service::call).
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
