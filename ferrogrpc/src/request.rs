//! [`Request`]: a message (or stream) with its metadata and per-call options.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{call_context::CallContext, metadata::MetadataMap, peer::Peer};

/// A request: the message, the metadata sent with it and, on the client, the
/// options of this call; on the server, what the call arrived with (deadline,
/// peer).
#[derive(Debug)]
pub struct Request<T> {
    metadata: MetadataMap,
    message: T,
    extensions: http::Extensions,
    pub(crate) options: CallOptions,
    pub(crate) deadline: Option<Instant>,
    pub(crate) peer: Option<Arc<Peer>>,
    pub(crate) compressed: bool,
    /// On the server: the call the request arrived on.
    context: Option<CallContext>,
}

/// Per-call options of a client call.
#[derive(Clone)]
#[non_exhaustive]
pub struct CallOptions {
    /// How long the call may take; sent as `grpc-timeout` and enforced locally.
    pub timeout: Option<Duration>,
    /// Overrides the channel's max size of a received message.
    pub max_decoding_message_size: Option<usize>,
    /// Overrides the channel's max size of a sent message.
    pub max_encoding_message_size: Option<usize>,
    /// Overrides the channel's compression of request messages: a registered
    /// name such as `"gzip"`, or `"identity"` for none. See
    /// [`encoding`](crate::encoding).
    pub compression: Option<&'static str>,
    /// Whether the call waits for the channel to be READY instead of failing
    /// at once with `UNAVAILABLE` while it is in TRANSIENT_FAILURE (gRPC's
    /// wait-for-ready). `None` takes the service config's `waitForReady` for
    /// the method, else `false` (fail fast).
    pub wait_for_ready: Option<bool>,
    /// `false` turns off retries and hedging by the service config's
    /// policies for this call (a transparent retry of a call the server never processed
    /// still happens). Default `true`.
    pub retry: bool,
    /// The options few calls set, boxed so that every request (server
    /// requests too) stays small.
    more: Option<Box<MoreOptions>>,
}

impl std::fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallOptions")
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline())
            .field("parent", &self.parent())
            .field("credentials", &self.credentials().map(|_| ".."))
            .field("max_decoding_message_size", &self.max_decoding_message_size)
            .field("max_encoding_message_size", &self.max_encoding_message_size)
            .field("compression", &self.compression)
            .field("wait_for_ready", &self.wait_for_ready)
            .field("retry", &self.retry)
            .field("content_subtype", &self.content_subtype())
            .finish()
    }
}

/// Client call options that few calls set.
#[derive(Clone, Default)]
pub(crate) struct MoreOptions {
    pub(crate) deadline: Option<Instant>,
    pub(crate) parent: Option<CallContext>,
    pub(crate) credentials: Option<Arc<dyn crate::credentials::PerRpcCredentials>>,
    pub(crate) content_subtype: Option<&'static str>,
}

impl CallOptions {
    /// When the call must be over (see [`Request::with_deadline`]). With a
    /// [`timeout`](Self::timeout) (or a service config or channel default)
    /// too, the earliest wins.
    pub fn deadline(&self) -> Option<Instant> {
        self.more.as_ref().and_then(|m| m.deadline)
    }

    /// The server call this call is made for (see [`Request::with_parent`]):
    /// its end cancels this call.
    pub fn parent(&self) -> Option<&CallContext> {
        self.more.as_ref().and_then(|m| m.parent.as_ref())
    }

    /// Per-RPC credentials of this call, added to the channel's own (see
    /// [`Request::with_credentials`]).
    pub fn credentials(&self) -> Option<&Arc<dyn crate::credentials::PerRpcCredentials>> {
        self.more.as_ref().and_then(|m| m.credentials.as_ref())
    }

    /// The content-subtype to make the call in, e.g. `"json"` for
    /// `application/grpc+json` (see [`Request::with_content_subtype`]).
    pub fn content_subtype(&self) -> Option<&'static str> {
        self.more.as_ref().and_then(|m| m.content_subtype)
    }

    fn more_mut(&mut self) -> &mut MoreOptions {
        self.more.get_or_insert_with(Default::default)
    }

    /// Takes the rarely set options (the call's setup reads them once).
    pub(crate) fn take_more(&mut self) -> MoreOptions {
        self.more.take().map(|m| *m).unwrap_or_default()
    }
}

impl Default for CallOptions {
    fn default() -> CallOptions {
        CallOptions {
            timeout: None,
            more: None,
            max_decoding_message_size: None,
            max_encoding_message_size: None,
            compression: None,
            wait_for_ready: None,
            retry: true,
        }
    }
}

impl<T> Request<T> {
    /// A request with no metadata and default options.
    pub fn new(message: T) -> Request<T> {
        Request {
            metadata: MetadataMap::new(),
            message,
            extensions: http::Extensions::new(),
            options: CallOptions::default(),
            deadline: None,
            peer: None,
            compressed: false,
            context: None,
        }
    }

    /// The metadata sent (client) or received (server) with the call.
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }

    /// Mutable metadata, to add headers before sending.
    pub fn metadata_mut(&mut self) -> &mut MetadataMap {
        &mut self.metadata
    }

    /// The message.
    pub fn get_ref(&self) -> &T {
        &self.message
    }

    /// The message, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.message
    }

    /// Takes the message.
    pub fn into_inner(self) -> T {
        self.message
    }

    /// Splits into metadata and message.
    pub fn into_parts(self) -> (MetadataMap, T) {
        (self.metadata, self.message)
    }

    /// Replaces the message, keeping metadata, options and call information.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Request<U> {
        Request {
            metadata: self.metadata,
            message: f(self.message),
            extensions: self.extensions,
            options: self.options,
            deadline: self.deadline,
            peer: self.peer,
            compressed: self.compressed,
            context: self.context,
        }
    }

    /// Replaces the message with a fallible conversion.
    pub(crate) fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Request<U>, E> {
        Ok(Request {
            metadata: self.metadata,
            message: f(self.message)?,
            extensions: self.extensions,
            options: self.options,
            deadline: self.deadline,
            peer: self.peer,
            compressed: self.compressed,
            context: self.context,
        })
    }

    /// Extensions: typed values that interceptors and handlers pass along.
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }

    /// Mutable extensions.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }

    /// Sets the timeout of this call (client).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.options.timeout = Some(timeout);
    }

    /// Returns the request with a timeout (client).
    pub fn with_timeout(mut self, timeout: Duration) -> Request<T> {
        self.set_timeout(timeout);
        self
    }

    /// Returns the request marked wait-for-ready (client): it waits for a
    /// connection (bounded by its deadline) instead of failing fast while the
    /// channel is in TRANSIENT_FAILURE. See [`CallOptions::wait_for_ready`].
    pub fn with_wait_for_ready(mut self, wait: bool) -> Request<T> {
        self.options.wait_for_ready = Some(wait);
        self
    }

    /// Returns the request with retries by the service config's retry
    /// policy allowed (`true`, the default) or not (client). See
    /// [`CallOptions::retry`].
    pub fn with_retry(mut self, retry: bool) -> Request<T> {
        self.options.retry = retry;
        self
    }

    /// Returns the request with its messages compressed by `name` (client);
    /// `"identity"` turns compression off for this call.
    pub fn with_compression(mut self, name: &'static str) -> Request<T> {
        self.options.compression = Some(name);
        self
    }

    /// Returns the request to be sent in the content-subtype `subtype`
    /// (client; gRPC-Go's `grpc.CallContentSubtype`): `"json"` sends
    /// `application/grpc+json` and its messages in JSON, `"proto"` protobuf
    /// (the default). Generated clients pick the codec by it: protobuf,
    /// JSON when they were generated with JSON, else one registered with
    /// [`codec::register_codec`](crate::codec::register_codec); a subtype
    /// with no codec fails the call with `INTERNAL`. The call APIs of
    /// [`Channel`](crate::client::Channel) use the codec they are given
    /// instead, whose [`name`](crate::codec::Codec::name) is the subtype
    /// sent (gRPC-Go's `grpc.ForceCodec`). See [`codec`](crate::codec).
    pub fn with_content_subtype(mut self, subtype: &'static str) -> Request<T> {
        self.options.more_mut().content_subtype = Some(subtype);
        self
    }

    /// The content-subtype the call is to be made in, if the request names
    /// one (client; see [`with_content_subtype`](Self::with_content_subtype)).
    /// On the server, see
    /// [`CallContext::content_subtype`](crate::server::CallContext::content_subtype).
    pub fn content_subtype(&self) -> Option<&'static str> {
        self.options.content_subtype()
    }

    /// On the server: whether the request message arrived compressed (for a
    /// stream, see [`Streaming::last_message_compressed`](crate::Streaming::last_message_compressed)).
    pub fn message_compressed(&self) -> bool {
        self.compressed
    }

    /// The options of this call (client).
    pub fn options(&self) -> &CallOptions {
        &self.options
    }

    /// Mutable options of this call (client).
    pub fn options_mut(&mut self) -> &mut CallOptions {
        &mut self.options
    }

    /// On the server: when the call's deadline passes (from `grpc-timeout`),
    /// if the client set one. The call is cancelled at that moment.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// On the server: the call this request arrived on — send headers
    /// early, set trailers, learn the method, wait for cancellation. Always
    /// there on requests a handler receives; `None` on requests a client
    /// builds.
    pub fn context(&self) -> Option<&CallContext> {
        self.context.as_ref()
    }

    /// Client: the call must end by `deadline` (sent as `grpc-timeout`, the
    /// time left when the request goes out). With a timeout too, the
    /// earliest wins.
    pub fn with_deadline(mut self, deadline: Instant) -> Request<T> {
        self.set_deadline(deadline);
        self
    }

    /// Client: sets an absolute deadline; see [`with_deadline`](Self::with_deadline).
    pub fn set_deadline(&mut self, deadline: Instant) {
        let more = self.options.more_mut();
        more.deadline = Some(match more.deadline {
            Some(d) => d.min(deadline),
            None => deadline,
        });
    }

    /// Client: makes this call on behalf of the server call `parent`, as a
    /// gRPC-Go handler passes its `ctx` on: the call gets the parent's
    /// deadline (when it has one, and it is earlier than this call's own),
    /// and is cancelled (`CANCELLED`) when the parent call is cancelled or
    /// ends.
    ///
    /// ```
    /// # use ferrogrpc::{client::Channel, codec::BytesCodec, Request, Response, Status};
    /// # use bytes::Bytes;
    /// async fn handler(req: Request<Bytes>, backend: Channel) -> Result<Response<Bytes>, Status> {
    ///     let ctx = req.context().expect("a server request");
    ///     let downstream = Request::new(req.get_ref().clone()).with_parent(ctx);
    ///     backend
    ///         .unary(http::uri::PathAndQuery::from_static("/pkg.Backend/Get"), downstream, BytesCodec)
    ///         .await
    /// }
    /// ```
    pub fn with_parent(mut self, parent: &CallContext) -> Request<T> {
        if let Some(deadline) = parent.deadline() {
            self.set_deadline(deadline);
        }
        self.options.more_mut().parent = Some(parent.clone());
        self
    }

    /// Client: per-RPC credentials for this call, added to the channel's
    /// (gRPC-Go's `grpc.PerRPCCredentials` call option). Their
    /// [`require_transport_security`](crate::credentials::PerRpcCredentials::require_transport_security)
    /// is honoured as for the channel's.
    pub fn with_credentials(
        mut self,
        credentials: impl crate::credentials::PerRpcCredentials,
    ) -> Request<T> {
        self.options.more_mut().credentials = Some(Arc::new(credentials));
        self
    }

    /// On the server: the time left before the deadline, if there is one.
    pub fn time_remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// On the server: the two ends of the connection the call came on.
    pub fn peer(&self) -> Option<&Peer> {
        self.peer.as_deref()
    }

    pub(crate) fn into_client_parts(self) -> (MetadataMap, T, CallOptions) {
        (self.metadata, self.message, self.options)
    }

    pub(crate) fn from_server(
        metadata: MetadataMap,
        message: T,
        peer: Arc<Peer>,
        compressed: bool,
        context: CallContext,
    ) -> Request<T> {
        Request {
            metadata,
            message,
            extensions: http::Extensions::new(),
            options: CallOptions::default(),
            deadline: context.deadline(),
            peer: Some(peer),
            compressed,
            context: Some(context),
        }
    }
}

/// Conversion into a [`Request`], so stubs accept a bare message too.
pub trait IntoRequest<T> {
    /// Wraps `self` in a request, or returns it if it is one.
    fn into_request(self) -> Request<T>;
}

impl<T> IntoRequest<T> for T {
    fn into_request(self) -> Request<T> {
        Request::new(self)
    }
}

impl<T> IntoRequest<T> for Request<T> {
    fn into_request(self) -> Request<T> {
        self
    }
}
