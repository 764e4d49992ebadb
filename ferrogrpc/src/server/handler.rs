//! Drivers for the four kinds of handlers, used by generated service code.
//!
//! Each driver receives the request, runs the interceptors and the handler
//! under the call's deadline, cancels them when the client resets the
//! stream, turns a panic into `UNKNOWN`, and sends the response and status.
//! With no interceptor or stats handler registered, none of that machinery
//! is touched.

use std::{
    any::Any,
    future::{poll_fn, Future},
    panic::AssertUnwindSafe,
    pin::{pin, Pin},
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http::HeaderValue;

use super::{
    context::{CallShared, SinkState},
    CallSettings, ServerCall,
};
use crate::{
    call_context::CallContext,
    codec::Codec,
    encoding,
    interceptor::{
        downcast, AnyMessage, CallInfo, ServerStreamCall, StreamServerInterceptor,
        StreamServerNext, UnaryServerInterceptor, UnaryServerNext,
    },
    metadata::MetadataMap,
    observe::{as_any, payload_of, Observed, Observer},
    peer::Peer,
    prepared::PreparedMsg,
    request::Request,
    response::Response,
    status::Status,
    streaming::{DecodeWith, Streaming},
    transport::{
        frame::{self, SendCompression},
        inspect::StreamGuard,
        RecvMessages, Role, ServerSend,
    },
};

/// How the handler part of a call ended.
enum Outcome<T> {
    Done(T),
    Panicked(String),
    DeadlineExceeded,
    /// The client reset the stream or the connection went, with the status
    /// that describes it.
    Reset(Status),
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
        if let Poll::Ready(status) = poll_reset(cx) {
            return Poll::Ready(Outcome::Reset(status));
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

/// The status a call ends with when the handler did not finish by itself;
/// `None` for a client reset (nothing can be sent). Also tells the call's
/// context how it ended, once the caller is done with it.
fn outcome_status<T>(outcome: Outcome<T>, method: &str) -> (Result<T, Option<Status>>, Ending) {
    match outcome {
        Outcome::Done(v) => (Ok(v), Ending(None)),
        Outcome::Panicked(msg) => (Err(Some(panicked(&msg, method))), Ending(None)),
        Outcome::DeadlineExceeded => {
            let status = Status::deadline_exceeded("deadline exceeded");
            (Err(Some(status.clone())), Ending(Some(status)))
        }
        Outcome::Reset(status) => (Err(None), Ending(Some(status))),
    }
}

/// How a call ended, for its [`CallContext`]: `None` when it finished,
/// else why it was cancelled.
struct Ending(Option<Status>);

impl Ending {
    fn tell(self, shared: &CallShared) {
        shared.end(self.0);
    }
}

/// The status of a call whose handler panicked, logged.
fn panicked(msg: &str, method: &str) -> Status {
    tracing::error!(%method, "handler panicked: {msg}");
    Status::unknown(format!("handler panicked: {msg}"))
}

/// Per-call state shared by the drivers.
struct Prepared {
    deadline: Option<Instant>,
    observer: Option<Arc<Observer>>,
    unary_chain: Vec<Arc<dyn UnaryServerInterceptor>>,
    stream_chain: Vec<Arc<dyn StreamServerInterceptor>>,
}

fn prepare(call: &mut ServerCall, client_stream: bool, server_stream: bool) -> Prepared {
    let deadline = call.stream.timeout.map(|t| Instant::now() + t);
    let mut unary_chain = Vec::new();
    let mut stream_chain = Vec::new();
    for chain in [call.server_chain.take(), call.service_chain.take()]
        .into_iter()
        .flatten()
    {
        unary_chain.extend(chain.unary.iter().cloned());
        stream_chain.extend(chain.stream.iter().cloned());
    }
    let streaming = client_stream || server_stream;
    #[cfg(feature = "binarylog")]
    let log = call
        .binlog
        .as_ref()
        .and_then(|b| b.start(call.stream.path.path(), false));
    #[cfg(not(feature = "binarylog"))]
    let log = None;
    let observer = Observer::new(
        false,
        &call.stream.path,
        call.stats.as_ref(),
        streaming && !stream_chain.is_empty(),
        log,
    );
    if let Some(obs) = &observer {
        obs.begin(client_stream, server_stream);
        obs.in_header(&call.stream.metadata);
        let stream = &call.stream;
        obs.log_client_header(
            &stream.metadata,
            stream.authority.as_ref().map(|a| a.as_str()),
            stream.timeout,
            Some(&stream.peer.remote_addr),
        );
    }
    Prepared {
        deadline,
        observer,
        unary_chain,
        stream_chain,
    }
}

/// What every driver takes from its call: the request's parts, the
/// receiving half, and the per-call state shared by the driver, the
/// [`ResponseSink`] and the handler's [`CallContext`].
struct Started {
    recv: RecvMessages,
    shared: Arc<CallShared>,
    context: CallContext,
    metadata: MetadataMap,
    peer: Arc<Peer>,
    path: http::uri::PathAndQuery,
    settings: CallSettings,
    /// Counts the call as active on its connection; the driver keeps it
    /// until the call is over.
    _active: StreamGuard,
}

/// Splits `call` into what a driver needs and sets up its shared state.
/// It moves the same fields the drivers moved themselves and allocates only
/// the `CallShared` they all allocate.
#[inline]
fn start(call: ServerCall, p: &Prepared) -> Started {
    let ServerCall {
        stream, settings, ..
    } = call;
    let recv = RecvMessages::new(
        stream.body,
        settings.max_recv,
        Role::Server,
        stream.decompressor,
    );
    #[cfg(feature = "channelz")]
    let recv = recv.with_server_channelz(stream._active.signals().channelz());
    let shared = CallShared::new(
        stream.send,
        settings,
        stream.accept_encoding,
        p.observer.clone(),
        stream.path.clone(),
        stream.content_subtype,
        p.deadline,
    );
    let context = CallContext::new(Arc::clone(&shared) as _);
    Started {
        recv,
        shared,
        context,
        metadata: stream.metadata,
        peer: stream.peer,
        path: stream.path,
        settings,
        _active: stream._active,
    }
}

fn info(path: &http::uri::PathAndQuery, client_stream: bool, server_stream: bool) -> CallInfo<'_> {
    CallInfo {
        method: path.path(),
        client_stream,
        server_stream,
    }
}

/// Reads the single request message of a unary or server-streaming call;
/// also says whether it arrived compressed.
async fn read_one<C, Resp, Req: 'static>(
    recv: &mut RecvMessages,
    codec: &mut C,
    observer: Option<&Observer>,
) -> Result<(Req, bool), Status>
where
    C: Codec<Resp, Req>,
{
    let msg = recv.message().await?.ok_or_else(|| {
        Status::internal("cardinality violation: the client sent no request message")
    })?;
    let len = msg.len();
    if let Some(obs) = observer {
        obs.log_in_message(&msg);
    }
    let message = codec.decode(msg)?;
    if let Some(obs) = observer {
        let payload = crate::stats::Payload {
            length: len,
            wire_length: recv.last_wire_len(),
            compressed: recv.last_compressed(),
        };
        obs.in_payload(&message, payload)?;
    }
    Ok((message, recv.last_compressed()))
}

/// Chooses how responses are compressed: the handler's choice, else the
/// server's default; only with an algorithm the client listed in
/// `grpc-accept-encoding` (otherwise uncompressed, as compression.md says).
pub(super) fn response_compression(
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

/// Ends the call with `status`, telling the observer.
fn send_status(send: &mut ServerSend, status: Status, observer: Option<&Observer>) {
    if let Some(obs) = observer {
        obs.out_trailer(status.metadata());
        obs.log_trailer(&status, None);
        if status.code() == crate::Code::Ok {
            obs.end(Ok(()));
        } else {
            obs.end(Err(&status));
        }
    }
    send.send_status(status, None);
}

/// Ends a call with `status`: the headers the handler set go first, in
/// their own frame (as gRPC-Go sends them), then the status with the
/// handler's trailers and the status's own metadata.
fn end_call(state: &mut SinkState, status: Status, observer: Option<&Observer>) {
    if !state.send.headers_sent() && state.has_headers() {
        // Headers that cannot be built leave the status to go alone.
        let _ = state.send_headers(MetadataMap::new());
    }
    let status = state.with_trailers(status);
    send_status(&mut state.send, status, observer);
}

/// Sends a unary-shaped result: headers, the message, trailers; or the error.
/// A panic on the way (in the codec or a stats handler) ends the call with
/// UNKNOWN, as a panic in the handler does.
fn finish_unary<C, Resp: 'static, Req>(
    state: &mut SinkState,
    codec: &mut C,
    result: Result<Response<Resp>, Status>,
    observer: Option<&Observer>,
    method: &str,
) where
    C: Codec<Resp, Req>,
{
    let finished = std::panic::catch_unwind(AssertUnwindSafe(|| {
        send_unary_result(state, codec, result, observer)
    }));
    if let Err(panic) = finished {
        state
            .send
            .send_status(panicked(&panic_message(&*panic), method), None);
    }
}

fn send_unary_result<C, Resp: 'static, Req>(
    state: &mut SinkState,
    codec: &mut C,
    result: Result<Response<Resp>, Status>,
    observer: Option<&Observer>,
) where
    C: Codec<Resp, Req>,
{
    let response = match result {
        Ok(r) => r,
        Err(status) => return end_call(state, status.into_error(), observer),
    };
    if let Some(name) = response.compression() {
        state.requested = Some(name);
    }
    state.decide_compression();
    let (metadata, message, trailers) = response.into_parts();
    if let Some(Err(status)) = observer.map(|o| o.before_send(&message)) {
        return end_call(state, status, observer);
    }
    let encoded = match frame::encode(
        codec,
        &message,
        state.settings.max_send,
        state.compression.as_ref(),
    ) {
        Ok(e) => e,
        Err(status) => {
            if !state.send.headers_sent() {
                if let Err(err) = state.headers_mut().extend(metadata) {
                    return end_call(state, err.into(), observer);
                }
            }
            return end_call(state, status, observer);
        }
    };
    let payload = payload_of(&encoded.frame, encoded.plain_len);
    let logged = observer.map(|_| encoded.frame.clone());
    if let Err(status) = state.send_headers(metadata) {
        // Headers that could not be built leave room for the status; a
        // client that went away gets nothing (`send_status` sends nothing).
        return send_status(&mut state.send, status, observer);
    }
    if state.send.send_message_now(encoded.frame).is_err() {
        if let Some(obs) = observer {
            obs.end(Err(&Status::cancelled("the client went away")));
        }
        return;
    }
    if let (Some(obs), Some(frame)) = (observer, logged) {
        obs.out_payload(payload);
        let compressor = state.compression.as_ref().map(|c| &*c.compressor);
        obs.log_out_message(&frame, compressor);
    }
    let all = if state.has_trailers() {
        super::context::merged(state.take_trailers(), trailers)
    } else {
        Ok(trailers)
    };
    let status = match all {
        Ok(all) => Status::new(crate::Code::Ok, "").with_metadata(all),
        Err(err) => Status::internal(format!("the call's trailers: {err}")),
    };
    send_status(&mut state.send, status, observer);
}

/// Runs a unary handler behind the unary interceptors.
async fn intercepted_unary<Req, Resp, F, Fut>(
    chain: &[Arc<dyn UnaryServerInterceptor>],
    info: CallInfo<'_>,
    request: Request<Req>,
    handler: F,
) -> Result<Response<Resp>, Status>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: FnOnce(Request<Req>) -> Fut + Send,
    Fut: Future<Output = Result<Response<Resp>, Status>> + Send,
{
    let next = UnaryServerNext::new(
        chain,
        info,
        Box::new(move |request: Request<AnyMessage>| {
            Box::pin(async move {
                let request = request.try_map(|m| downcast::<Req>(m, "request"))?;
                let response = handler(request).await?;
                Ok(response.map(|m| Box::new(m) as AnyMessage))
            })
        }),
    );
    let response = next.run(request.map(|m| Box::new(m) as AnyMessage)).await?;
    response.try_map(|m| downcast::<Resp>(m, "response"))
}

/// Runs a unary handler.
pub async fn unary<C, Req, Resp, F, Fut>(mut call: ServerCall, mut codec: C, handler: F)
where
    C: Codec<Resp, Req>,
    Req: Send + 'static,
    Resp: Send + 'static,
    F: FnOnce(Request<Req>) -> Fut + Send,
    Fut: Future<Output = Result<Response<Resp>, Status>> + Send,
{
    let p = prepare(&mut call, false, false);
    let Started {
        mut recv,
        shared,
        context,
        metadata,
        peer,
        path,
        _active,
        ..
    } = start(call, &p);
    let path = &path;
    let (observer, chain, deadline) = (p.observer.as_deref(), &p.unary_chain, p.deadline);
    let codec_ref = &mut codec;
    let work = async move {
        let (message, compressed) = read_one(&mut recv, codec_ref, observer).await?;
        let request = Request::from_server(metadata, message, peer, compressed, context);
        if chain.is_empty() {
            handler(request).await
        } else {
            intercepted_unary(chain, info(path, false, false), request, handler).await
        }
    };
    let outcome = supervise(work, deadline, |cx| shared.lock().send.poll_reset(cx)).await;
    let (result, ending) = outcome_status(outcome, path.path());
    match result {
        Ok(result) => finish_unary(
            &mut shared.lock(),
            &mut codec,
            result,
            observer,
            path.path(),
        ),
        Err(Some(status)) => end_call(&mut shared.lock(), status, observer),
        Err(None) => {
            if let Some(obs) = observer {
                obs.end(Err(&Status::cancelled("call cancelled by the client")));
            }
        }
    }
    ending.tell(&shared);
}

/// Builds the handler's request from the (possibly changed) metadata and
/// extensions, and runs the handler.
type RunHandler<'a> = Box<
    dyn FnOnce(
            MetadataMap,
            http::Extensions,
        ) -> crate::interceptor::BoxFuture<'a, Result<(), Status>>
        + Send
        + 'a,
>;

/// Runs a streaming handler, behind the stream interceptors if there are any.
async fn run_stream<'a>(
    chain: &'a [Arc<dyn StreamServerInterceptor>],
    info: CallInfo<'a>,
    metadata: MetadataMap,
    observer: Option<&'a Arc<Observer>>,
    run: RunHandler<'a>,
) -> Result<(), Status> {
    if chain.is_empty() {
        run(metadata, http::Extensions::new()).await
    } else {
        intercepted_stream(chain, info, ServerStreamCall::new(metadata), observer, run).await
    }
}

/// Runs a streaming handler behind the stream interceptors: `run` builds the
/// handler's request from the (possibly changed) call and runs it.
async fn intercepted_stream<'a>(
    chain: &'a [Arc<dyn StreamServerInterceptor>],
    info: CallInfo<'a>,
    call: ServerStreamCall,
    observer: Option<&'a Arc<Observer>>,
    run: RunHandler<'a>,
) -> Result<(), Status> {
    let next = StreamServerNext::new(
        chain,
        info,
        Box::new(move |call: ServerStreamCall| {
            let (metadata, hooks, extensions) = call.into_parts();
            if let Some(obs) = observer {
                obs.set_hooks(hooks);
            }
            run(metadata, extensions)
        }),
    );
    next.run(call).await
}

/// Runs a client-streaming handler.
pub async fn client_streaming<C, Req, Resp, F, Fut>(mut call: ServerCall, mut codec: C, handler: F)
where
    C: Codec<Resp, Req> + Clone,
    Req: Send + 'static,
    Resp: Send + 'static,
    F: FnOnce(Request<Streaming<Req>>) -> Fut + Send,
    Fut: Future<Output = Result<Response<Resp>, Status>> + Send,
{
    let p = prepare(&mut call, true, false);
    let Started {
        recv,
        shared,
        context,
        metadata,
        peer,
        path,
        _active,
        ..
    } = start(call, &p);
    let (deadline, path) = (p.deadline, &path);
    let observed: Observed<Req> = p
        .observer
        .clone()
        .map(|o| (o, as_any::<Req> as fn(&Req) -> &dyn Any));
    let requests = Streaming::server(recv, DecodeWith::<C, Resp>::boxed(codec.clone()), observed);
    let mut slot: Option<Response<Resp>> = None;
    let slot_ref = &mut slot;
    let chain = &p.stream_chain;
    let observer = p.observer.as_ref();
    let work = async move {
        let run = move |metadata: MetadataMap,
                        extensions: http::Extensions|
              -> crate::interceptor::BoxFuture<'_, Result<(), Status>> {
            Box::pin(async move {
                let mut request = Request::from_server(metadata, requests, peer, false, context);
                *request.extensions_mut() = extensions;
                *slot_ref = Some(handler(request).await?);
                Ok(())
            })
        };
        run_stream(
            chain,
            info(path, true, false),
            metadata,
            observer,
            Box::new(run),
        )
        .await
    };
    let outcome = supervise(work, deadline, |cx| shared.lock().send.poll_reset(cx)).await;
    let observer = p.observer.as_deref();
    let (result, ending) = outcome_status(outcome, path.path());
    match result {
        Ok(Ok(())) => {
            let result = slot.ok_or_else(|| Status::internal("handler returned no response"));
            finish_unary(
                &mut shared.lock(),
                &mut codec,
                result,
                observer,
                path.path(),
            );
        }
        Ok(Err(status)) => end_call(&mut shared.lock(), status.into_error(), observer),
        Err(Some(status)) => end_call(&mut shared.lock(), status, observer),
        Err(None) => {
            if let Some(obs) = observer {
                obs.end(Err(&Status::cancelled("call cancelled by the client")));
            }
        }
    }
    ending.tell(&shared);
}

/// Runs a server-streaming handler.
pub async fn server_streaming<C, Req, Resp, F, Fut>(mut call: ServerCall, mut codec: C, handler: F)
where
    C: Codec<Resp, Req> + Clone,
    Req: Send + 'static,
    Resp: Send + 'static,
    F: FnOnce(Request<Req>, ResponseSink<Resp>) -> Fut + Send,
    Fut: Future<Output = Result<(), Status>> + Send,
{
    let p = prepare(&mut call, false, true);
    let Started {
        mut recv,
        shared,
        context,
        metadata,
        peer,
        path,
        settings,
        _active,
    } = start(call, &p);
    let (deadline, path) = (p.deadline, &path);
    let sink = ResponseSink::new(Arc::clone(&shared), codec.clone(), settings.max_send);
    let chain = &p.stream_chain;
    let observer = p.observer.as_ref();
    let codec_ref = &mut codec;
    let work = async move {
        let run = move |metadata: MetadataMap,
                        extensions: http::Extensions|
              -> crate::interceptor::BoxFuture<'_, Result<(), Status>> {
            Box::pin(async move {
                let (message, compressed) =
                    read_one(&mut recv, codec_ref, observer.map(|o| &**o)).await?;
                let mut request =
                    Request::from_server(metadata, message, peer, compressed, context);
                *request.extensions_mut() = extensions;
                handler(request, sink).await
            })
        };
        run_stream(
            chain,
            info(path, false, true),
            metadata,
            observer,
            Box::new(run),
        )
        .await
    };
    let outcome = supervise(work, deadline, |cx| shared.lock().send.poll_reset(cx)).await;
    let (result, ending) = outcome_status(outcome, path.path());
    finish_stream(&shared, result);
    ending.tell(&shared);
}

/// Runs a bidirectional-streaming handler.
pub async fn streaming<C, Req, Resp, F, Fut>(mut call: ServerCall, codec: C, handler: F)
where
    C: Codec<Resp, Req> + Clone,
    Req: Send + 'static,
    Resp: Send + 'static,
    F: FnOnce(Request<Streaming<Req>>, ResponseSink<Resp>) -> Fut + Send,
    Fut: Future<Output = Result<(), Status>> + Send,
{
    let p = prepare(&mut call, true, true);
    let Started {
        recv,
        shared,
        context,
        metadata,
        peer,
        path,
        settings,
        _active,
    } = start(call, &p);
    let (deadline, path) = (p.deadline, &path);
    let observed: Observed<Req> = p
        .observer
        .clone()
        .map(|o| (o, as_any::<Req> as fn(&Req) -> &dyn Any));
    let requests = Streaming::server(recv, DecodeWith::<C, Resp>::boxed(codec.clone()), observed);
    let sink = ResponseSink::new(Arc::clone(&shared), codec, settings.max_send);
    let chain = &p.stream_chain;
    let observer = p.observer.as_ref();
    let work = async move {
        let run = move |metadata: MetadataMap,
                        extensions: http::Extensions|
              -> crate::interceptor::BoxFuture<'_, Result<(), Status>> {
            Box::pin(async move {
                let mut request = Request::from_server(metadata, requests, peer, false, context);
                *request.extensions_mut() = extensions;
                handler(request, sink).await
            })
        };
        run_stream(
            chain,
            info(path, true, true),
            metadata,
            observer,
            Box::new(run),
        )
        .await
    };
    let outcome = supervise(work, deadline, |cx| shared.lock().send.poll_reset(cx)).await;
    let (result, ending) = outcome_status(outcome, path.path());
    finish_stream(&shared, result);
    ending.tell(&shared);
}

fn finish_stream(shared: &CallShared, result: Result<Result<(), Status>, Option<Status>>) {
    let mut state = shared.lock();
    let observer = state.observer.clone();
    let status = match result {
        Ok(Ok(())) => Status::new(crate::Code::Ok, ""),
        Ok(Err(status)) => status.into_error(),
        Err(Some(status)) => status,
        Err(None) => {
            if let Some(obs) = &observer {
                obs.end(Err(&Status::cancelled("call cancelled by the client")));
            }
            return;
        }
    };
    end_call(&mut state, status, observer.as_deref());
}

/// Sends the responses of a server-streaming or bidi call (gRPC-Go's
/// `ServerStream.SendMsg`, `SendHeader`, `SetTrailer`, `SetSendCompressor`).
pub struct ResponseSink<T> {
    shared: Arc<CallShared>,
    encode: crate::codec::EncodeFn<T>,
    /// The codec's content-subtype, which prepared messages must match.
    codec: &'static str,
    max_send: usize,
    as_any: fn(&T) -> &dyn Any,
}

impl<T> std::fmt::Debug for ResponseSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseSink").finish_non_exhaustive()
    }
}

impl<T: 'static> ResponseSink<T> {
    fn new<C, D>(shared: Arc<CallShared>, mut codec: C, max_send: usize) -> ResponseSink<T>
    where
        C: Codec<T, D>,
    {
        let mut scratch = bytes::BytesMut::new();
        ResponseSink {
            shared,
            codec: codec.name(),
            max_send,
            encode: Box::new(move |item, compression| {
                frame::encode_into(&mut codec, item, max_send, compression, &mut scratch)
            }),
            as_any: as_any::<T>,
        }
    }

    /// Sends the response headers with `metadata` now. Optional: the first
    /// message sends headers (empty) if this was not called.
    ///
    /// # Errors
    /// When headers were already sent or the call has ended.
    pub fn send_header(&mut self, metadata: MetadataMap) -> Result<(), Status> {
        let mut state = self.shared.lock();
        if state.send.headers_sent() {
            return Err(Status::internal("response headers were already sent"));
        }
        state.send_headers(metadata)
    }

    /// Sets metadata to send in the trailers when the call ends. Adds to what
    /// was set before.
    ///
    /// # Errors
    /// When the trailers would hold more than
    /// [`MetadataMap::MAX_KEYS`] distinct keys.
    pub fn set_trailer(&mut self, metadata: MetadataMap) -> Result<(), Status> {
        Ok(self.shared.lock().trailers_mut().extend(metadata)?)
    }

    /// Compresses the responses with `name` (or `"identity"` for none)
    /// instead of the server's default, if the client accepts it; otherwise
    /// they go uncompressed. Must come before the headers are sent.
    ///
    /// # Errors
    /// When the headers were already sent.
    pub fn set_compression(&mut self, name: &'static str) -> Result<(), Status> {
        let mut state = self.shared.lock();
        if state.send.headers_sent() {
            return Err(Status::internal(
                "set_compression after the response headers were sent",
            ));
        }
        state.requested = Some(name);
        // A `prepare` may have decided with the earlier choice.
        state.compression_decided = false;
        Ok(())
    }

    /// Turns compression of the following messages off (`false`) or back on
    /// (`true`, the default) — the per-message control of compression.md.
    pub fn set_message_compression(&mut self, enabled: bool) {
        self.shared.lock().compress_messages = enabled;
    }

    /// Sends one message, waiting while the client's flow-control window is
    /// full.
    ///
    /// # Errors
    /// When the message cannot be encoded or is over the max send size
    /// (`RESOURCE_EXHAUSTED`), an interceptor's hook refuses it, or the call
    /// has ended (e.g. `CANCELLED`).
    pub async fn send(&mut self, message: T) -> Result<(), Status> {
        self.send_ref(&message).await
    }

    /// Sends one message by reference.
    ///
    /// # Errors
    /// As for [`send`](Self::send).
    pub async fn send_ref(&mut self, message: &T) -> Result<(), Status> {
        let (encoded, observer) = {
            let mut state = self.shared.lock();
            if let Some(obs) = &state.observer {
                obs.before_send((self.as_any)(message))?;
            }
            state.send_headers(MetadataMap::new())?;
            let compression = state
                .compression
                .as_ref()
                .filter(|_| state.compress_messages);
            let encoded = (self.encode)(message, compression)?;
            if let Some(obs) = &state.observer {
                obs.log_out_message(&encoded.frame, compression.map(|c| &*c.compressor));
            }
            (encoded, state.observer.clone())
        };
        self.send_frame(encoded.frame, encoded.plain_len, observer)
            .await
    }

    /// Sends one framed message of `plain_len` bytes before compression,
    /// once the headers are out.
    async fn send_frame(
        &mut self,
        frame: bytes::Bytes,
        plain_len: usize,
        observer: Option<Arc<Observer>>,
    ) -> Result<(), Status> {
        let len = frame.len();
        let payload = payload_of(&frame, plain_len);
        // The lock is taken per poll, never held across an await.
        poll_fn(|cx| self.shared.lock().send.poll_capacity(cx, len)).await?;
        self.shared.lock().send.send_message_now(frame)?;
        if let Some(obs) = observer {
            obs.out_payload(payload);
        }
        // A loop of sends with window to spare never waits: give the rest of
        // the task (and the runtime) a turn now and then.
        tokio::task::consume_budget().await;
        Ok(())
    }

    /// Encodes and compresses `message` as [`send`](Self::send) would send it
    /// now, without sending it: the result can be sent with
    /// [`send_prepared`](Self::send_prepared) on this call and on every other
    /// call with the same codec and compression, e.g. to every subscriber of
    /// a feed (gRPC-Go's `PreparedMsg.Encode`).
    ///
    /// The compression is this call's (see [`PreparedMsg`]); if the headers
    /// are not sent yet, it is decided now, from
    /// [`set_compression`](Self::set_compression) or the server's default
    /// and what the client accepts, as the headers would decide it. Nothing
    /// is sent.
    ///
    /// # Errors
    /// When the message cannot be encoded or is over the max send size
    /// (`RESOURCE_EXHAUSTED`).
    pub fn prepare(&mut self, message: &T) -> Result<PreparedMsg<T>, Status> {
        let mut state = self.shared.lock();
        if !state.compression_decided {
            state.decide_compression();
        }
        let compression = state
            .compression
            .as_ref()
            .filter(|_| state.compress_messages);
        let name = compression.map(|c| c.compressor.name());
        let encoded = (self.encode)(message, compression)?;
        Ok(PreparedMsg::from_encoded(encoded, self.codec, name))
    }

    /// Sends a message prepared earlier, without encoding it again (gRPC-Go's
    /// `SendMsg` of a `PreparedMsg`), waiting while the client's
    /// flow-control window is full. Sends the headers first if they were
    /// not sent. Interceptor hooks and stats handlers see the
    /// [`PreparedMsg`] rather than a `T`.
    ///
    /// # Errors
    /// `INTERNAL` when the message was prepared with another codec or
    /// compression than this call sends the message with (see
    /// [`PreparedMsg`]: a call's compression depends on what its client
    /// accepts); `RESOURCE_EXHAUSTED` when it is over the max send size;
    /// otherwise as for [`send`](Self::send). Nothing is sent (headers
    /// included) when it fails for a mismatch or its size.
    pub async fn send_prepared(&mut self, message: &PreparedMsg<T>) -> Result<(), Status> {
        let (frame, observer) = {
            let mut state = self.shared.lock();
            if let Some(obs) = &state.observer {
                obs.before_send(message)?;
            }
            if !state.compression_decided {
                state.decide_compression();
            }
            let name = state
                .compression
                .as_ref()
                .filter(|_| state.compress_messages)
                .map(|c| c.compressor.name());
            let frame = message.frame_for(self.codec, name, self.max_send)?;
            state.send_headers(MetadataMap::new())?;
            if let Some(obs) = &state.observer {
                let compressor = state
                    .compression
                    .as_ref()
                    .filter(|_| state.compress_messages)
                    .map(|c| &*c.compressor);
                obs.log_out_message(&frame, compressor);
            }
            (frame, state.observer.clone())
        };
        self.send_frame(frame, message.parts().0, observer).await
    }
}

/// A boxed future, as returned by [`Service::call`](super::Service::call).
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
