//! The call API of a [`Channel`]: one method per RPC kind, used by generated
//! stubs and usable directly with any [`Codec`].
//!
//! With no interceptors and no stats handlers on the channel, a call runs the
//! plain path below: no boxing, no observer.

use std::{
    any::Any,
    future::{poll_fn, Future},
    sync::Arc,
    task::Poll,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::uri::PathAndQuery;

use super::Channel;
use crate::{
    balancer::DoneGuard,
    call_context::CallContext,
    codec::Codec,
    interceptor::{downcast, AnyMessage, CallInfo, ClientStreamCall, UnaryClientNext},
    metadata::MetadataMap,
    observe::{as_any, payload_of, Observed, Observer},
    prepared::PreparedMsg,
    request::Request,
    response::Response,
    serviceconfig::ServiceConfig,
    stats::Attempt,
    stats::Payload,
    status::Status,
    streaming::{DecodeWith, Streaming},
    transport::{
        client::{CallHead, ClientRecv},
        frame::{self, SendCompression},
    },
};

use super::{
    attempts::{Attempts, Next, RetryBuffer},
    hedge,
    hedge_stream::HedgedStream,
    retry::{CallRecv, CallSend, Reopen, Replay},
};

/// Settings resolved for one call.
pub(super) struct CallSetup {
    metadata: MetadataMap,
    pub(super) timeout: Option<Duration>,
    pub(super) deadline: Option<Instant>,
    max_recv: usize,
    max_send: usize,
    compression: Option<SendCompression>,
    /// Whether per-RPC credentials' metadata was added already (a
    /// transparent retry must not add it twice).
    credentials_added: bool,
    /// Wait for a connection instead of failing fast in TRANSIENT_FAILURE.
    wait_for_ready: bool,
    /// The call's retry state (gRFC A6).
    pub(super) attempts: Attempts,
    /// The service config whose hedging policy applies to the call, if any
    /// (unary and server-streaming calls only).
    hedging: Option<ServiceConfig>,
    /// The server call this call was made for: its end cancels this one.
    pub(super) parent: Option<CallContext>,
    /// Per-RPC credentials of this call, besides the channel's.
    call_credentials: Option<Arc<dyn crate::credentials::PerRpcCredentials>>,
}

fn deadline_exceeded(timeout: Option<Duration>) -> Status {
    match timeout {
        Some(t) => Status::deadline_exceeded(format!("deadline exceeded after {t:?}")),
        None => Status::deadline_exceeded("deadline exceeded"),
    }
}

/// Runs `fut` until `deadline`; on expiry it is dropped, which resets the
/// stream (RST_STREAM CANCEL) so the server stops too.
pub(super) async fn until<T>(
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    fut: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d.into(), fut)
            .await
            .unwrap_or_else(|_| Err(deadline_exceeded(timeout))),
        None => fut.await,
    }
}

/// Runs `fut` until the server call `parent` (if any) is over; then it is
/// dropped, which resets the stream, and the call fails `CANCELLED`.
pub(super) async fn unless_parent_over<T>(
    parent: Option<&CallContext>,
    fut: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let Some(parent) = parent else {
        return fut.await;
    };
    let mut fut = std::pin::pin!(fut);
    let mut over = std::pin::pin!(parent.cancelled());
    poll_fn(|cx| {
        if let Poll::Ready(result) = fut.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        if over.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(super::parent_over()));
        }
        Poll::Pending
    })
    .await
}

/// Evaluates the `attempt` expression (an `.await`ed call attempt that
/// ends when the call commits, giving `Result<T, Status>`) until it
/// succeeds or [`Channel::after_failure`] says not to try again: gRFC A6's
/// transparent retry and the service config's retry policy. Waits out the
/// backoff in between and tells the observer of each new attempt; the
/// caller's deadline bounds the whole. A macro rather than a function over
/// an async closure, so the calls' futures stay `Send`.
macro_rules! with_retries {
    ($channel:expr, $method:expr, $setup:expr, $obs:expr, $attempt:expr) => {{
        loop {
            let status = match $attempt {
                Ok(value) => break Ok(value),
                Err(status) => status,
            };
            let attempt = match $channel.after_failure($method, &mut $setup.attempts, &status) {
                Next::Transparent => Attempt::TransparentRetry,
                Next::After(delay) => {
                    tokio::time::sleep(delay).await;
                    Attempt::Retry
                }
                Next::Stop => break Err(status),
            };
            if let Some(obs) = $obs {
                obs.next_attempt(&status, attempt, $setup.attempts.previous());
            }
        }
    }};
}

/// Request bytes a call keeps in the channel's retry buffer; given back
/// when dropped.
pub(super) struct Kept {
    buffer: Arc<RetryBuffer>,
    bytes: usize,
}

impl Kept {
    /// Keeps `bytes` more for the call, within its own limit and the
    /// channel's; false when they do not fit (the call then commits).
    pub(super) fn add(&mut self, bytes: usize, per_rpc_limit: usize) -> bool {
        let total = self.bytes.saturating_add(bytes);
        if total > per_rpc_limit || !self.buffer.reserve(bytes) {
            return false;
        }
        self.bytes = total;
        true
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.buffer.release(self.bytes);
    }
}

/// Hands a pick's done callback to the attempt it was picked for, or runs
/// it with the error if the attempt could not start.
fn with_done(
    opened: Result<(ClientRecv, crate::transport::ClientSend), Status>,
    done: Option<DoneGuard>,
) -> Result<(ClientRecv, crate::transport::ClientSend), Status> {
    let Some(done) = done else {
        return opened;
    };
    match opened {
        Ok((recv, send)) => Ok((recv.with_done(done), send)),
        Err(status) => {
            done.finish(Some(&status), None);
            Err(status)
        }
    }
}

/// Tells the observer how a call ended.
fn report_end<T>(observer: Option<&Observer>, result: &Result<T, Status>) {
    if let Some(obs) = observer {
        match result {
            Ok(_) => obs.end(Ok(())),
            Err(status) => obs.end(Err(status)),
        }
    }
}

/// Reads the single response message of a unary or client-streaming call,
/// then the final status. A failed call's status carries the response
/// headers (if any came) and the peer.
async fn read_unary<T: 'static>(
    recv: &mut CallRecv,
    decode: impl FnMut(Bytes) -> Result<T, Status>,
    observer: Option<&Observer>,
) -> Result<Response<T>, Status> {
    let result = read_unary_message(recv, decode, observer).await;
    result.map_err(|status| {
        // A failure found here (a message that does not decode, one too
        // many) ends the attempt for the balancer too.
        recv.end_attempt(&status);
        status
            .with_response_headers(recv.take_headers())
            .with_peer(recv.peer())
    })
}

async fn read_unary_message<T: 'static>(
    recv: &mut CallRecv,
    mut decode: impl FnMut(Bytes) -> Result<T, Status>,
    observer: Option<&Observer>,
) -> Result<Response<T>, Status> {
    let first = recv.message().await;
    if let Some(obs) = observer {
        if recv.headers_received() {
            obs.in_header(recv.headers());
            obs.log_server_header(recv.headers(), Some(&recv.peer().remote_addr));
        }
    }
    let first = first?.ok_or_else(|| {
        Status::internal("server ended the call with OK but sent no response message")
    })?;
    let compressed = recv.last_compressed();
    let length = first.len();
    if let Some(obs) = observer {
        obs.log_in_message(&first);
    }
    let reply = decode(first)?;
    if let Some(obs) = observer {
        let payload = Payload {
            length,
            wire_length: recv.last_wire_len(),
            compressed,
        };
        obs.in_payload(&reply, payload)?;
    }
    let next = recv.message().await;
    if let (Some(obs), Err(status)) = (observer, &next) {
        obs.in_trailer(status.metadata());
        obs.log_trailer(status, Some(&recv.peer().remote_addr));
    }
    if next?.is_some() {
        return Err(Status::internal(
            "cardinality violation: server sent more than one response message",
        ));
    }
    if let (Some(obs), Some(trailers)) = (observer, recv.trailers()) {
        obs.in_trailer(trailers);
        obs.log_ok_trailer(trailers, Some(&recv.peer().remote_addr));
    }
    let mut response = Response::from_parts(recv.take_headers(), reply, recv.take_trailers());
    response.set_compressed(compressed);
    response.set_peer(std::sync::Arc::clone(recv.peer()));
    Ok(response)
}

impl Channel {
    /// The settings of a call: its own options, the channel's, and the
    /// service config's for its method (read once the resolver has
    /// reported, so that a new channel's first calls get them too).
    async fn setup<T>(
        &self,
        path: &PathAndQuery,
        request: Request<T>,
    ) -> Result<(CallSetup, T), Status> {
        let options = request.options();
        let mut bound = options.timeout.or(self.inner.default_timeout);
        if let Some(deadline) = options.deadline() {
            let left = deadline.saturating_duration_since(Instant::now());
            bound = Some(bound.map_or(left, |b| b.min(left)));
        }
        self.resolved(bound).await;
        self.settings(path, request)
    }

    fn settings<T>(
        &self,
        path: &PathAndQuery,
        request: Request<T>,
    ) -> Result<(CallSetup, T), Status> {
        let (metadata, message, mut options) = request.into_client_parts();
        let more = options.take_more();
        let mut timeout = options.timeout.or(self.inner.default_timeout);
        let mut wait_for_ready = options.wait_for_ready;
        let (mut max_recv, mut max_send) = (self.inner.max_recv, self.inner.max_send);
        let (mut retry_config, mut hedging) = (None, None);
        // The service config's settings for this method, if it has any: the
        // smaller timeout and size limits win; the call's own
        // wait-for-ready wins.
        if let Some(config) = &*self.inner.shared.service_config.load() {
            if let Some(method) = config.method_config(path.path()) {
                let enabled = options.retry && !self.inner.retry.disabled;
                if method.retry_policy.is_some() && enabled {
                    retry_config = Some(ServiceConfig::clone(config));
                }
                if method.hedging_policy.is_some() && enabled {
                    hedging = Some(ServiceConfig::clone(config));
                }
                timeout = match (timeout, method.timeout) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                wait_for_ready = wait_for_ready.or(method.wait_for_ready);
                if let Some(limit) = method.max_response_message_bytes {
                    max_recv = max_recv.min(limit);
                }
                if let Some(limit) = method.max_request_message_bytes {
                    max_send = max_send.min(limit);
                }
            }
        }
        let compression = match options.compression.or(self.inner.compression) {
            None => None,
            Some(name) => crate::encoding::send_compression(name, self.inner.min_compress_size)
                .map_err(|name| {
                    Status::internal(format!(
                        "compressor {name:?} is not registered (see ferrogrpc::encoding)"
                    ))
                })?,
        };
        let now = Instant::now();
        // A timeout too large to represent means no deadline.
        let mut deadline = timeout.and_then(|t| now.checked_add(t));
        if let Some(at) = more.deadline {
            if deadline.is_none_or(|d| at < d) {
                deadline = Some(at);
                timeout = Some(at.saturating_duration_since(now));
            }
        }
        if deadline.is_some_and(|d| d <= now) {
            // Already over: nothing is sent (gRPC-Go fails such a call the
            // same way).
            return Err(deadline_exceeded(timeout));
        }
        let setup = CallSetup {
            metadata,
            timeout,
            deadline,
            max_recv: options.max_decoding_message_size.unwrap_or(max_recv),
            max_send: options.max_encoding_message_size.unwrap_or(max_send),
            compression,
            credentials_added: false,
            wait_for_ready: wait_for_ready.unwrap_or(false),
            attempts: Attempts::new(retry_config, self.inner.retry.max_attempts),
            hedging,
            parent: more.parent,
            call_credentials: more.credentials,
        };
        Ok((setup, message))
    }

    pub(super) async fn open(
        &self,
        path: PathAndQuery,
        setup: &mut CallSetup,
        content_subtype: &'static str,
        observer: Option<&Observer>,
    ) -> Result<
        (
            crate::transport::client::ClientRecv,
            crate::transport::ClientSend,
        ),
        Status,
    > {
        let (transport, done) = self
            .pick(path.path(), &setup.metadata, setup.wait_for_ready)
            .await?;
        let done = done.map(|d| DoneGuard::new(d, setup.deadline));
        let opened = async {
            if !setup.credentials_added {
                if let Some(obs) = observer {
                    // Before the credentials' metadata, which A16 does not
                    // log (later attempts log no header again).
                    let timeout =
                        (setup.deadline).map(|d| d.saturating_duration_since(Instant::now()));
                    let authority = Some(self.inner.authority.as_str());
                    obs.log_client_header(&setup.metadata, authority, timeout, None);
                }
                // The channel's, then the call's own (gRPC-Go's order).
                if let Some(per_rpc) = self.inner.per_rpc.as_ref() {
                    self.add_credentials(&**per_rpc, &path, &transport, &mut setup.metadata)
                        .await?;
                }
                if let Some(per_rpc) = setup.call_credentials.clone() {
                    self.add_credentials(&*per_rpc, &path, &transport, &mut setup.metadata)
                        .await?;
                }
                setup.credentials_added = true;
            }
            let previous = setup.attempts.previous();
            self.open_on(&transport, path, setup, content_subtype, observer, previous)
                .await
        }
        .await;
        with_done(opened, done)
    }

    /// Opens a hedge of a call whose first attempt was opened (so its
    /// per-RPC credentials are in `setup`'s metadata).
    pub(super) async fn open_hedge(
        &self,
        path: PathAndQuery,
        setup: &CallSetup,
        content_subtype: &'static str,
        observer: Option<&Observer>,
        previous: u32,
    ) -> Result<
        (
            crate::transport::client::ClientRecv,
            crate::transport::ClientSend,
        ),
        Status,
    > {
        let (transport, done) = self
            .pick(path.path(), &setup.metadata, setup.wait_for_ready)
            .await?;
        let done = done.map(|d| DoneGuard::new(d, setup.deadline));
        let opened = async {
            if let Some(per_rpc) = &self.inner.per_rpc {
                self.credentials_allowed(&**per_rpc, &transport)?;
            }
            if let Some(per_rpc) = &setup.call_credentials {
                self.credentials_allowed(&**per_rpc, &transport)?;
            }
            self.open_on(&transport, path, setup, content_subtype, observer, previous)
                .await
        }
        .await;
        with_done(opened, done)
    }

    /// Sends the request headers of an attempt on `transport`.
    async fn open_on(
        &self,
        transport: &crate::transport::client::Http2Client,
        path: PathAndQuery,
        setup: &CallSetup,
        content_subtype: &'static str,
        observer: Option<&Observer>,
        previous_attempts: u32,
    ) -> Result<
        (
            crate::transport::client::ClientRecv,
            crate::transport::ClientSend,
        ),
        Status,
    > {
        if let Some(obs) = observer {
            obs.out_header(&setup.metadata);
            let timeout = setup
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            obs.log_client_header(
                &setup.metadata,
                Some(self.inner.authority.as_str()),
                timeout,
                None,
            );
        }
        let head = CallHead {
            scheme: &self.inner.scheme,
            authority: &self.inner.authority,
            path,
            // The time left now, so connection set-up time counts.
            timeout: setup
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now())),
            metadata: &setup.metadata,
            content_subtype,
            encoding: setup.compression.as_ref().map(|c| c.compressor.name()),
            previous_attempts,
        };
        transport.open_stream(head, setup.max_recv).await
    }

    /// What follows a failed attempt of a call that had not committed.
    pub(super) fn after_failure(
        &self,
        method: &str,
        attempts: &mut Attempts,
        status: &Status,
    ) -> Next {
        let throttle = self.inner.shared.throttle.load();
        attempts.after_failure(method, status, throttle.as_deref())
    }

    /// The channel's retry throttle, when the service config has one: every
    /// call that ends with OK gives tokens back.
    pub(super) fn throttle(&self) -> Option<Arc<super::attempts::Throttle>> {
        self.inner.shared.throttle.load_full()
    }

    /// Keeps `bytes` of a call's requests for its retries; a call whose
    /// requests do not fit gives up its retry policy (it commits at once).
    pub(super) fn keep_for_retry(&self, attempts: &mut Attempts, bytes: usize) -> Option<Kept> {
        if !attempts.has_policy() {
            return None;
        }
        let kept = self.reserve_for_retry(bytes);
        if kept.is_none() {
            attempts.drop_policy();
        }
        kept
    }

    /// Reserves `bytes` of the call's requests in the retry buffers; `None`
    /// when they do not fit (the call is then sent once).
    fn reserve_for_retry(&self, bytes: usize) -> Option<Kept> {
        let mut kept = Kept {
            buffer: Arc::clone(&self.inner.retry_buffer),
            bytes: 0,
        };
        if kept.add(bytes, self.inner.retry.per_rpc_buffer) {
            Some(kept)
        } else {
            tracing::debug!("request too large to keep for retries; the call is sent once");
            None
        }
    }

    /// Whether `transport` may carry per-RPC credentials' metadata.
    fn credentials_allowed(
        &self,
        per_rpc: &dyn crate::credentials::PerRpcCredentials,
        transport: &crate::transport::client::Http2Client,
    ) -> Result<(), Status> {
        use crate::credentials::SecurityLevel;
        if per_rpc.require_transport_security()
            && transport.security_level() < SecurityLevel::PrivacyAndIntegrity
            && !self.inner.allow_insecure_per_rpc
        {
            return Err(Status::unauthenticated(
                "per-RPC credentials require transport security, but this connection \
                 is not protected; the credentials were not sent",
            ));
        }
        Ok(())
    }

    /// Adds per-RPC credentials' metadata, if the connection may carry it.
    async fn add_credentials(
        &self,
        per_rpc: &dyn crate::credentials::PerRpcCredentials,
        path: &PathAndQuery,
        transport: &crate::transport::client::Http2Client,
        metadata: &mut MetadataMap,
    ) -> Result<(), Status> {
        self.credentials_allowed(per_rpc, transport)?;
        let info = crate::credentials::RequestInfo {
            method: path.path(),
            authority: self.inner.authority.as_str(),
            security_level: transport.security_level(),
        };
        let extra = per_rpc.request_metadata(info).await?;
        metadata.extend(extra)?;
        Ok(())
    }

    /// An observer for a call, when stats handlers or hooks need one.
    fn observer(
        &self,
        path: &PathAndQuery,
        hooks: Vec<Arc<dyn crate::interceptor::StreamHook>>,
        cs: bool,
        ss: bool,
    ) -> Option<Arc<Observer>> {
        #[cfg(feature = "binarylog")]
        let log = (self.inner.binlog.as_ref()).and_then(|b| b.start(path.path(), true));
        #[cfg(not(feature = "binarylog"))]
        let log = None;
        let observer = Observer::new(
            true,
            path,
            self.inner.stats.as_ref(),
            !hooks.is_empty(),
            log,
        )?;
        observer.set_hooks(hooks);
        observer.begin(cs, ss);
        Some(observer)
    }

    /// Runs the channel's stream interceptors; returns the (possibly
    /// changed) request and the hooks they added.
    async fn start_stream(
        &self,
        path: &PathAndQuery,
        request: Request<()>,
        client_stream: bool,
        server_stream: bool,
    ) -> Result<(Request<()>, Vec<Arc<dyn crate::interceptor::StreamHook>>), Status> {
        let Some(chain) = self.inner.chain.as_ref().filter(|c| !c.stream.is_empty()) else {
            return Ok((request, Vec::new()));
        };
        let mut call = ClientStreamCall {
            request,
            hooks: Vec::new(),
        };
        let info = CallInfo {
            method: path.path(),
            client_stream,
            server_stream,
        };
        for interceptor in &chain.stream {
            interceptor.intercept(&mut call, info).await?;
        }
        Ok((call.request, call.hooks))
    }

    /// Starts a client- or bidi-streaming call: interceptors, settings,
    /// observer, and the stream opened.
    async fn start_streaming_call(
        &self,
        path: PathAndQuery,
        request: Request<()>,
        client_stream: bool,
        server_stream: bool,
        subtype: &'static str,
    ) -> Result<StreamStart, Status> {
        let (request, hooks) = self
            .start_stream(&path, request, client_stream, server_stream)
            .await?;
        #[cfg(feature = "channelz")]
        let counted = self.count_stream();
        let (mut setup, ()) = self.setup(&path, request).await?;
        let (deadline, timeout) = (setup.deadline, setup.timeout);
        let parent = setup.parent.clone();
        let observer = self.observer(&path, hooks, client_stream, server_stream);
        let opened = unless_parent_over(
            parent.as_ref(),
            until(deadline, timeout, async {
                with_retries!(
                    self,
                    path.path(),
                    setup,
                    observer.as_deref(),
                    self.open(path.clone(), &mut setup, subtype, observer.as_deref())
                        .await
                )
            }),
        )
        .await;
        match opened {
            Ok((recv, send)) => {
                let (max_send, compression) = (setup.max_send, setup.compression.clone());
                // Kept so that the stream can be replayed: transparently
                // when the server refuses it, and under the retry policy.
                let hedging = setup.hedging.take();
                let hedging = hedging
                    .as_ref()
                    .and_then(|c| hedge::policy(c, path.path()))
                    .and_then(|policy| Some((policy, self.reserve_for_retry(0)?)));
                let kept = match hedging {
                    Some(_) => None,
                    None => self.keep_for_retry(&mut setup.attempts, 0),
                };
                let reopen = Reopen {
                    channel: self.clone(),
                    path,
                    setup,
                    content_subtype: subtype,
                    observer: observer.clone(),
                };
                let (recv, send) = match hedging {
                    Some((policy, reserved)) => {
                        let (call, recv) =
                            HedgedStream::split(recv, send, reopen, Some(reserved), policy);
                        (
                            CallRecv::hedged(recv, Arc::clone(&call)),
                            CallSend::Hedged(call),
                        )
                    }
                    None => Replay::split(recv, send, reopen, kept),
                };
                let recv = recv.counting_success(self.throttle());
                #[cfg(feature = "channelz")]
                let recv = recv.counting_call(counted);
                Ok(StreamStart {
                    max_send,
                    compression,
                    bounds: Bounds {
                        deadline,
                        timeout,
                        parent,
                    },
                    observer,
                    recv,
                    send,
                })
            }
            Err(status) => {
                report_end(observer.as_deref(), &Err::<(), _>(status.clone()));
                Err(status)
            }
        }
    }

    /// Makes a unary call.
    ///
    /// # Errors
    /// The call's status when it did not end with `OK`, or the local error
    /// (`DEADLINE_EXCEEDED`, `UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `INTERNAL`),
    /// or the status an interceptor returned.
    pub async fn unary<Req, Resp, C>(
        &self,
        path: PathAndQuery,
        request: Request<Req>,
        codec: C,
    ) -> Result<Response<Resp>, Status>
    where
        C: Codec<Req, Resp>,
        Req: Send + 'static,
        Resp: Send + 'static,
    {
        let Some(chain) = self.inner.chain.as_ref().filter(|c| !c.unary.is_empty()) else {
            return self.unary_call(path, request, codec).await;
        };
        let info = CallInfo {
            method: path.path(),
            client_stream: false,
            server_stream: false,
        };
        let invoke_path = path.clone();
        let next = UnaryClientNext::new(
            &chain.unary,
            info,
            Box::new(move |request: Request<AnyMessage>| {
                Box::pin(async move {
                    let request = request.try_map(|m| downcast::<Req>(m, "request"))?;
                    let response = self.unary_call(invoke_path, request, codec).await?;
                    Ok(response.map(|m| Box::new(m) as AnyMessage))
                })
            }),
        );
        let response = next.run(request.map(|m| Box::new(m) as AnyMessage)).await?;
        response.try_map(|m| downcast::<Resp>(m, "response"))
    }

    async fn unary_call<Req, Resp, C>(
        &self,
        path: PathAndQuery,
        request: Request<Req>,
        mut codec: C,
    ) -> Result<Response<Resp>, Status>
    where
        C: Codec<Req, Resp>,
        Resp: 'static,
    {
        // Counted from here, as gRPC-Go counts from `newClientStream`;
        // failed if given up (this future dropped).
        #[cfg(feature = "channelz")]
        let mut counted = self.inner.shared.channelz.count_call();
        let (mut setup, message) = self.setup(&path, request).await?;
        let (deadline, timeout) = (setup.deadline, setup.timeout);
        let observer = self.observer(&path, Vec::new(), false, false);
        let obs = observer.as_deref();
        let encoded = frame::encode(
            &mut codec,
            &message,
            setup.max_send,
            setup.compression.as_ref(),
        );
        drop(message);
        let parent = setup.parent.clone();
        let call = until(deadline, timeout, async {
            let encoded = encoded?;
            let subtype = codec.name();
            let (recv, send) = self
                .until_headers(&path, &mut setup, &encoded, subtype, obs)
                .await?;
            let mut recv = CallRecv::direct(recv.with_send(send)).counting_success(self.throttle());
            read_unary(&mut recv, |b| codec.decode(b), obs).await
        });
        let result = unless_parent_over(parent.as_ref(), call).await;
        report_end(obs, &result);
        #[cfg(feature = "channelz")]
        counted.end(result.is_ok());
        result
    }

    /// Counts a streaming call on the channel's channelz from now on; the
    /// guard goes into its [`CallRecv`], which ends it.
    #[cfg(feature = "channelz")]
    fn count_stream(&self) -> crate::channelz::CallGuard<Arc<crate::channelz::ChannelEntry>> {
        crate::channelz::CallGuard::start(self.inner.shared.channelz.share())
    }

    /// Sends a single-request call (unary or server-streaming) until an
    /// attempt gets its response headers, which commit the call: retried
    /// under its retry policy, or hedged under its hedging policy (gRFC
    /// A6), as long as its request fits in the retry buffers; always
    /// retried transparently once when the server never processed it.
    async fn until_headers(
        &self,
        path: &PathAndQuery,
        setup: &mut CallSetup,
        encoded: &frame::Encoded,
        subtype: &'static str,
        obs: Option<&Observer>,
    ) -> Result<
        (
            crate::transport::client::ClientRecv,
            crate::transport::ClientSend,
        ),
        Status,
    > {
        let len = encoded.frame.len();
        let payload = payload_of(&encoded.frame, encoded.plain_len);
        // Only a logged call looks at the compressor again.
        let compressor = obs
            .and(setup.compression.as_ref())
            .map(|c| Arc::clone(&c.compressor));
        let compressor = compressor.as_deref();
        let attempt = |opened: Result<
            (
                crate::transport::client::ClientRecv,
                crate::transport::ClientSend,
            ),
            Status,
        >| async move {
            let (mut recv, mut send) = opened?;
            send.send_now(encoded.frame.clone(), true)
                .map_err(|status| status.with_peer(recv.peer()))?;
            if let Some(o) = obs {
                o.out_payload(payload);
                o.log_out_message(&encoded.frame, compressor);
            }
            poll_fn(|cx| recv.poll_headers(cx))
                .await
                .map_err(|status| status.with_peer(recv.peer()))?;
            Ok((recv, send))
        };
        if let Some(config) = setup.hedging.take() {
            if let (Some(policy), Some(_kept)) = (
                hedge::policy(&config, path.path()),
                self.reserve_for_retry(len),
            ) {
                let mut first = Some(self.open(path.clone(), setup, subtype, obs).await);
                let setup = &*setup;
                return hedge::run(self, policy, obs, |n| {
                    let first = if n == 0 { first.take() } else { None };
                    async move {
                        let opened = match first {
                            Some(opened) => opened,
                            None => self.open_hedge(path.clone(), setup, subtype, obs, n).await,
                        };
                        attempt(opened).await
                    }
                })
                .await;
            }
        }
        let _kept = self.keep_for_retry(&mut setup.attempts, len);
        with_retries!(
            self,
            path.path(),
            setup,
            obs,
            attempt(self.open(path.clone(), setup, subtype, obs).await).await
        )
    }

    /// Makes a server-streaming call; returns once the response headers
    /// arrived. Dropping the stream before its end cancels the call.
    ///
    /// # Errors
    /// As for [`unary`](Self::unary); errors after the headers come from the
    /// stream.
    pub async fn server_streaming<Req, Resp, C>(
        &self,
        path: PathAndQuery,
        request: Request<Req>,
        mut codec: C,
    ) -> Result<Response<Streaming<Resp>>, Status>
    where
        C: Codec<Req, Resp>,
        Req: Send + 'static,
        Resp: Send + 'static,
    {
        let mut message = None;
        let request = request.map(|m| message = Some(m));
        let (request, hooks) = self.start_stream(&path, request, false, true).await?;
        #[cfg(feature = "channelz")]
        let counted = self.count_stream();
        let (mut setup, ()) = self.setup(&path, request).await?;
        let message = message.ok_or_else(|| Status::internal("request message missing"))?;
        let (deadline, timeout) = (setup.deadline, setup.timeout);
        let observer = self.observer(&path, hooks, false, true);
        let obs = observer.as_deref();
        let encoded = match obs.map(|o| o.before_send(&message)) {
            Some(Err(status)) => Err(status),
            _ => frame::encode(
                &mut codec,
                &message,
                setup.max_send,
                setup.compression.as_ref(),
            ),
        };
        drop(message);
        let parent = setup.parent.clone();
        let opened = until(deadline, timeout, async {
            let encoded = encoded?;
            let (mut recv, send) = self
                .until_headers(&path, &mut setup, &encoded, codec.name(), obs)
                .await?;
            if let Some(o) = obs {
                o.in_header(recv.headers());
                o.log_server_header(recv.headers(), Some(&recv.peer().remote_addr));
            }
            let headers = recv.take_headers();
            Ok((recv, send, headers))
        });
        let result = unless_parent_over(parent.as_ref(), opened).await;
        let (recv, send, headers) = match result {
            Ok(parts) => parts,
            Err(status) => {
                report_end(obs, &Err::<(), _>(status.clone()));
                return Err(status);
            }
        };
        let observed: Observed<Resp> =
            observer.map(|o| (o, as_any::<Resp> as fn(&Resp) -> &dyn Any));
        let recv = CallRecv::direct(recv.with_send(send)).counting_success(self.throttle());
        #[cfg(feature = "channelz")]
        let recv = recv.counting_call(counted);
        let stream = Streaming::client(
            recv,
            DecodeWith::<C, Req>::boxed(codec),
            deadline,
            parent,
            observed,
        );
        Ok(Response::from_parts(headers, stream, MetadataMap::new()))
    }

    /// Starts a client-streaming call: send requests with
    /// [`ClientStreamingCall::send`], then get the response with
    /// [`ClientStreamingCall::close_and_recv`].
    ///
    /// # Errors
    /// When the call cannot be started (e.g. `UNAVAILABLE`), or an
    /// interceptor refused it.
    pub async fn client_streaming<Req, Resp, C>(
        &self,
        path: PathAndQuery,
        request: Request<()>,
        codec: C,
    ) -> Result<ClientStreamingCall<Req, Resp>, Status>
    where
        C: Codec<Req, Resp> + Clone,
        Req: Send + 'static,
        Resp: Send + 'static,
    {
        let (sink, recv, observer) = self
            .start_streaming_call(path, request, true, false, codec.name())
            .await?
            .split(codec.clone());
        Ok(ClientStreamingCall {
            sink,
            recv,
            decode: Box::new(move |bytes| {
                let mut codec = codec.clone();
                codec.decode(bytes)
            }),
            observer,
        })
    }

    /// Starts a bidirectional-streaming call: returns the request sink and
    /// the response stream, which work independently. The response headers
    /// are awaited lazily ([`Streaming::headers`]).
    ///
    /// # Errors
    /// When the call cannot be started (e.g. `UNAVAILABLE`), or an
    /// interceptor refused it.
    pub async fn streaming<Req, Resp, C>(
        &self,
        path: PathAndQuery,
        request: Request<()>,
        codec: C,
    ) -> Result<(RequestSink<Req>, Streaming<Resp>), Status>
    where
        C: Codec<Req, Resp> + Clone,
        Req: Send + 'static,
        Resp: Send + 'static,
    {
        let (sink, recv, observer) = self
            .start_streaming_call(path, request, true, true, codec.name())
            .await?
            .split(codec.clone());
        let observed: Observed<Resp> =
            observer.map(|o| (o, as_any::<Resp> as fn(&Resp) -> &dyn Any));
        let stream = Streaming::client(
            recv,
            DecodeWith::<C, Req>::boxed(codec),
            sink.bounds.deadline,
            sink.bounds.parent.clone(),
            observed,
        );
        Ok((sink, stream))
    }
}

/// What ends a streaming call besides its own end: its deadline (and the
/// timeout it came from, for the message) and its parent server call.
struct Bounds {
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    parent: Option<CallContext>,
}

/// A streaming call, opened.
struct StreamStart {
    max_send: usize,
    compression: Option<SendCompression>,
    bounds: Bounds,
    observer: Option<Arc<Observer>>,
    recv: CallRecv,
    send: CallSend,
}

impl StreamStart {
    /// The request sink, the response side and the observer of the call.
    fn split<T: 'static, C, D>(self, codec: C) -> (RequestSink<T>, CallRecv, Option<Arc<Observer>>)
    where
        C: Codec<T, D>,
    {
        let sink = RequestSink::new(
            self.send,
            codec,
            self.max_send,
            self.compression,
            self.bounds,
            self.observer.clone(),
        );
        (sink, self.recv, self.observer)
    }
}

/// Sends the requests of a client-streaming or bidi call (gRPC-Go's
/// `ClientStream.SendMsg` and `CloseSend`).
pub struct RequestSink<T> {
    send: CallSend,
    encode: crate::codec::EncodeFn<T>,
    /// The codec's content-subtype, which prepared messages must match.
    codec: &'static str,
    max_send: usize,
    compression: Option<SendCompression>,
    compress_messages: bool,
    bounds: Bounds,
    observed: Observed<T>,
}

impl<T> std::fmt::Debug for RequestSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSink").finish_non_exhaustive()
    }
}

impl<T: 'static> RequestSink<T> {
    fn new<C, D>(
        send: CallSend,
        mut codec: C,
        max_send: usize,
        compression: Option<SendCompression>,
        bounds: Bounds,
        observer: Option<Arc<Observer>>,
    ) -> RequestSink<T>
    where
        C: Codec<T, D>,
    {
        let mut scratch = bytes::BytesMut::new();
        RequestSink {
            send,
            codec: codec.name(),
            max_send,
            encode: Box::new(move |item, compression| {
                frame::encode_into(&mut codec, item, max_send, compression, &mut scratch)
            }),
            compression,
            compress_messages: true,
            bounds,
            observed: observer.map(|o| (o, as_any::<T> as fn(&T) -> &dyn Any)),
        }
    }

    /// Turns compression of the following messages off (`false`) or back on
    /// (`true`, the default), when the call compresses at all.
    pub fn set_message_compression(&mut self, enabled: bool) {
        self.compress_messages = enabled;
    }

    /// Sends one message, waiting while the server's flow-control window is
    /// full.
    ///
    /// # Errors
    /// When the message cannot be encoded or is too large, an interceptor's
    /// hook refuses it, the deadline passed, or the call has ended; the
    /// call's own status then comes from the response side.
    ///
    /// # Cancel safety
    /// Not cancel-safe: when the future is dropped before it completes, the
    /// message may or may not reach the server (a transparent retry may
    /// still send it).
    pub async fn send(&mut self, message: T) -> Result<(), Status> {
        if let Some((obs, as_any)) = &self.observed {
            obs.before_send(as_any(&message))?;
        }
        let compression = self.compression.as_ref().filter(|_| self.compress_messages);
        let encoded = (self.encode)(&message, compression)?;
        if let Some((obs, _)) = &self.observed {
            obs.log_out_message(&encoded.frame, compression.map(|c| &*c.compressor));
        }
        self.send_frame(encoded.frame, encoded.plain_len).await
    }

    /// Sends one framed message of `plain_len` bytes before compression.
    async fn send_frame(&mut self, frame: Bytes, plain_len: usize) -> Result<(), Status> {
        let payload = payload_of(&frame, plain_len);
        let Bounds {
            deadline,
            timeout,
            parent,
        } = &self.bounds;
        let sent = until(*deadline, *timeout, self.send.send(frame));
        unless_parent_over(parent.as_ref(), sent).await?;
        if let Some((obs, _)) = &self.observed {
            obs.out_payload(payload);
        }
        // A loop of sends with window to spare never waits: give the rest of
        // the task (and the runtime) a turn now and then.
        tokio::task::consume_budget().await;
        Ok(())
    }

    /// Encodes and compresses `message` as [`send`](Self::send) would send it
    /// now (this call's codec, compression and per-message compression
    /// switch), without sending it: the result can be sent with
    /// [`send_prepared`](Self::send_prepared) on this call and on every other
    /// call with the same codec and compression (gRPC-Go's
    /// `PreparedMsg.Encode`).
    ///
    /// # Errors
    /// When the message cannot be encoded or is over this call's max send
    /// size (`RESOURCE_EXHAUSTED`).
    pub fn prepare(&mut self, message: &T) -> Result<PreparedMsg<T>, Status> {
        let compression = self.compression.as_ref().filter(|_| self.compress_messages);
        let name = compression.map(|c| c.compressor.name());
        let encoded = (self.encode)(message, compression)?;
        Ok(PreparedMsg::from_encoded(encoded, self.codec, name))
    }

    /// Sends a message prepared earlier, without encoding it again (gRPC-Go's
    /// `SendMsg` of a `PreparedMsg`). Interceptor hooks and stats handlers
    /// see the [`PreparedMsg`] rather than a `T`.
    ///
    /// # Errors
    /// `INTERNAL` when the message was prepared with another codec or
    /// compression than this call sends the message with (see
    /// [`PreparedMsg`]); `RESOURCE_EXHAUSTED` when it is over this call's max
    /// send size; otherwise as for [`send`](Self::send). Nothing is sent
    /// when it fails for a mismatch or its size.
    ///
    /// # Cancel safety
    /// As for [`send`](Self::send).
    pub async fn send_prepared(&mut self, message: &PreparedMsg<T>) -> Result<(), Status> {
        if let Some((obs, _)) = &self.observed {
            obs.before_send(message)?;
        }
        let compression = self.compression.as_ref().filter(|_| self.compress_messages);
        let frame = message.frame_for(
            self.codec,
            compression.map(|c| c.compressor.name()),
            self.max_send,
        )?;
        if let Some((obs, _)) = &self.observed {
            obs.log_out_message(&frame, compression.map(|c| &*c.compressor));
        }
        self.send_frame(frame, message.parts().0).await
    }

    /// Half-closes the request stream: the server sees the end of requests.
    ///
    /// # Errors
    /// When the call has already ended.
    pub fn close(&mut self) -> Result<(), Status> {
        self.send.close()?;
        if let Some((obs, _)) = &self.observed {
            obs.log_half_close();
        }
        Ok(())
    }

    /// Cancels the call (RST_STREAM CANCEL); the server sees `CANCELLED`.
    pub fn cancel(&mut self) {
        self.send.cancel();
        if let Some((obs, _)) = &self.observed {
            obs.log_cancel_unless_ended();
        }
    }
}

type DecodeFn<T> = Box<dyn FnMut(Bytes) -> Result<T, Status> + Send>;

/// A client-streaming call under way.
pub struct ClientStreamingCall<Req, Resp> {
    sink: RequestSink<Req>,
    recv: CallRecv,
    decode: DecodeFn<Resp>,
    observer: Option<Arc<Observer>>,
}

impl<Req, Resp> std::fmt::Debug for ClientStreamingCall<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStreamingCall")
            .finish_non_exhaustive()
    }
}

impl<Req: 'static, Resp: 'static> ClientStreamingCall<Req, Resp> {
    /// Turns compression of the following messages off or back on; see
    /// [`RequestSink::set_message_compression`].
    pub fn set_message_compression(&mut self, enabled: bool) {
        self.sink.set_message_compression(enabled);
    }

    /// Sends one request message.
    ///
    /// # Errors
    /// As for [`RequestSink::send`].
    pub async fn send(&mut self, message: Req) -> Result<(), Status> {
        self.sink.send(message).await
    }

    /// Prepares a message for this call and others like it; see
    /// [`RequestSink::prepare`].
    ///
    /// # Errors
    /// As for [`RequestSink::prepare`].
    pub fn prepare(&mut self, message: &Req) -> Result<PreparedMsg<Req>, Status> {
        self.sink.prepare(message)
    }

    /// Sends a prepared request message; see [`RequestSink::send_prepared`].
    ///
    /// # Errors
    /// As for [`RequestSink::send_prepared`].
    pub async fn send_prepared(&mut self, message: &PreparedMsg<Req>) -> Result<(), Status> {
        self.sink.send_prepared(message).await
    }

    /// Half-closes the requests and waits for the response and status.
    ///
    /// # Errors
    /// The call's status when it did not end with `OK`.
    pub async fn close_and_recv(mut self) -> Result<Response<Resp>, Status> {
        // A failed close means the call already ended; its status follows.
        let _ = self.sink.close();
        let (deadline, timeout) = (self.sink.bounds.deadline, self.sink.bounds.timeout);
        let observer = self.observer.take();
        let read = until(
            deadline,
            timeout,
            read_unary(&mut self.recv, &mut self.decode, observer.as_deref()),
        );
        let result = unless_parent_over(self.sink.bounds.parent.as_ref(), read).await;
        report_end(observer.as_deref(), &result);
        result
    }

    /// Cancels the call (RST_STREAM CANCEL).
    pub fn cancel(&mut self) {
        self.sink.cancel();
    }
}

impl<Req, Resp> Drop for ClientStreamingCall<Req, Resp> {
    fn drop(&mut self) {
        if let Some(obs) = &self.observer {
            obs.end(Err(&Status::cancelled(
                "the call was dropped before its end",
            )));
        }
    }
}
