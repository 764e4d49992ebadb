//! Interceptors: async code that runs around calls, on the server and on the
//! client, for unary and streaming calls — auth, logging, metrics, tracing.
//! The counterparts of gRPC-Go's `UnaryServerInterceptor`,
//! `StreamServerInterceptor`, `UnaryClientInterceptor` and
//! `StreamClientInterceptor`.
//!
//! Messages reach interceptors type-erased as [`AnyMessage`] (gRPC-Go's
//! `any`); downcast them to the method's message type to look inside.
//!
//! **Order.** Interceptors run in the order they were added: the first added
//! is the outermost. On a server, server-wide interceptors run before
//! per-service ones ([`InterceptedService`]). [`StreamHook`]s are called in
//! the order they were added.
//!
//! **What they can do.**
//! - Unary (both sides): read and change the request (metadata, message, and
//!   on the client the call options such as the timeout), short-circuit by
//!   returning a `Status` without calling `next`, change or replace the
//!   response, and observe the final status — all in one `async` body around
//!   `next.run(request)`.
//! - Server streams: read and change the request metadata, short-circuit,
//!   observe or veto each message in and out with a [`StreamHook`], and see
//!   and change the final status returned by `next.run(call)`.
//! - Client streams: read and change metadata and options before the call
//!   starts, short-circuit, and with a [`StreamHook`] observe each message and
//!   the final status ([`StreamHook::on_finish`]).
//!
//! With no interceptors registered, calls take a path with no interceptor
//! code at all: no boxing, no allocation.

use std::{any::Any, fmt, future::Future, pin::Pin, sync::Arc};

use crate::{metadata::MetadataMap, request::Request, response::Response, status::Status};

/// A message of the method's own type, type-erased.
pub type AnyMessage = Box<dyn Any + Send>;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an interceptor is told about the call.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct CallInfo<'a> {
    /// The full method, `/package.Service/Method`.
    pub method: &'a str,
    /// Whether the client sends a stream of messages.
    pub client_stream: bool,
    /// Whether the server sends a stream of messages.
    pub server_stream: bool,
}

/// Observes (and may veto) the messages of a streaming call.
pub trait StreamHook: Send + Sync + 'static {
    /// A message was received. An error fails the call with that status.
    fn on_recv(&self, message: &dyn Any) -> Result<(), Status> {
        let _ = message;
        Ok(())
    }

    /// A message is about to be sent. An error stops it: the send returns
    /// that status.
    fn on_send(&self, message: &dyn Any) -> Result<(), Status> {
        let _ = message;
        Ok(())
    }

    /// The call ended (client streams): `Ok` for status OK.
    fn on_finish(&self, result: Result<(), &Status>) {
        let _ = result;
    }
}

/// Intercepts unary calls on a server.
pub trait UnaryServerInterceptor: Send + Sync + 'static {
    /// Handles `request`, usually by calling `next.run(request)`.
    fn intercept<'a>(
        &'a self,
        request: Request<AnyMessage>,
        info: CallInfo<'a>,
        next: UnaryServerNext<'a>,
    ) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>>;
}

type UnaryHandlerFn<'a> = Box<
    dyn FnOnce(Request<AnyMessage>) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>>
        + Send
        + 'a,
>;

/// The rest of a server's unary chain, ending at the handler.
pub type UnaryServerNext<'a> = UnaryNext<'a, dyn UnaryServerInterceptor>;

/// The rest of a unary chain (server or client): the interceptors still to
/// run, then the handler (server) or the network call (client).
pub struct UnaryNext<'a, I: ?Sized> {
    chain: &'a [Arc<I>],
    info: CallInfo<'a>,
    last: UnaryHandlerFn<'a>,
}

impl<I: ?Sized> fmt::Debug for UnaryNext<'_, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnaryNext")
            .field("remaining", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// A link of a unary chain: the server and client interceptor traits.
/// Sealed: implemented only for those two trait objects.
pub trait UnaryLink: sealed::Sealed + Send + Sync {
    #[doc(hidden)]
    fn call<'a>(
        &'a self,
        request: Request<AnyMessage>,
        info: CallInfo<'a>,
        next: UnaryNext<'a, Self>,
    ) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for dyn super::UnaryServerInterceptor {}
    impl Sealed for dyn super::UnaryClientInterceptor {}
}

impl UnaryLink for dyn UnaryServerInterceptor {
    fn call<'a>(
        &'a self,
        request: Request<AnyMessage>,
        info: CallInfo<'a>,
        next: UnaryNext<'a, Self>,
    ) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>> {
        self.intercept(request, info, next)
    }
}

impl UnaryLink for dyn UnaryClientInterceptor {
    fn call<'a>(
        &'a self,
        request: Request<AnyMessage>,
        info: CallInfo<'a>,
        next: UnaryNext<'a, Self>,
    ) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>> {
        self.intercept(request, info, next)
    }
}

impl<'a, I: UnaryLink + ?Sized> UnaryNext<'a, I> {
    pub(crate) fn new(chain: &'a [Arc<I>], info: CallInfo<'a>, last: UnaryHandlerFn<'a>) -> Self {
        UnaryNext { chain, info, last }
    }

    /// Runs the next interceptor, or, after the last one, the handler
    /// (server) or the call itself (client).
    pub fn run(
        self,
        request: Request<AnyMessage>,
    ) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>> {
        match self.chain.split_first() {
            Some((first, rest)) => first.call(
                request,
                self.info,
                UnaryNext {
                    chain: rest,
                    info: self.info,
                    last: self.last,
                },
            ),
            None => (self.last)(request),
        }
    }
}

/// The start of a streaming call on a server, as interceptors see it.
#[derive(Debug, Default)]
pub struct ServerStreamCall {
    metadata: MetadataMap,
    pub(crate) hooks: Vec<Arc<dyn StreamHook>>,
    extensions: http::Extensions,
}

impl fmt::Debug for dyn StreamHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamHook")
    }
}

impl ServerStreamCall {
    pub(crate) fn new(metadata: MetadataMap) -> ServerStreamCall {
        ServerStreamCall {
            metadata,
            hooks: Vec::new(),
            extensions: http::Extensions::new(),
        }
    }

    /// The request metadata.
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }

    /// The request metadata, to change before the handler sees it.
    pub fn metadata_mut(&mut self) -> &mut MetadataMap {
        &mut self.metadata
    }

    /// Extensions handed to the handler's `Request`.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }

    /// Observes the call's messages.
    pub fn add_hook(&mut self, hook: impl StreamHook) {
        self.hooks.push(Arc::new(hook));
    }

    pub(crate) fn into_parts(self) -> (MetadataMap, Vec<Arc<dyn StreamHook>>, http::Extensions) {
        (self.metadata, self.hooks, self.extensions)
    }
}

/// Intercepts streaming calls (client-, server- and bidi-streaming) on a
/// server.
pub trait StreamServerInterceptor: Send + Sync + 'static {
    /// Handles the call, usually by calling `next.run(call)`.
    fn intercept<'a>(
        &'a self,
        call: ServerStreamCall,
        info: CallInfo<'a>,
        next: StreamServerNext<'a>,
    ) -> BoxFuture<'a, Result<(), Status>>;
}

type StreamHandlerFn<'a> =
    Box<dyn FnOnce(ServerStreamCall) -> BoxFuture<'a, Result<(), Status>> + Send + 'a>;

/// The rest of a server's stream chain, ending at the handler.
pub struct StreamServerNext<'a> {
    chain: &'a [Arc<dyn StreamServerInterceptor>],
    info: CallInfo<'a>,
    handler: StreamHandlerFn<'a>,
}

impl fmt::Debug for StreamServerNext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamServerNext")
            .field("remaining", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl<'a> StreamServerNext<'a> {
    pub(crate) fn new(
        chain: &'a [Arc<dyn StreamServerInterceptor>],
        info: CallInfo<'a>,
        handler: StreamHandlerFn<'a>,
    ) -> StreamServerNext<'a> {
        StreamServerNext {
            chain,
            info,
            handler,
        }
    }

    /// Runs the next interceptor, or the handler after the last one.
    pub fn run(self, call: ServerStreamCall) -> BoxFuture<'a, Result<(), Status>> {
        match self.chain.split_first() {
            Some((first, rest)) => first.intercept(
                call,
                self.info,
                StreamServerNext {
                    chain: rest,
                    info: self.info,
                    handler: self.handler,
                },
            ),
            None => (self.handler)(call),
        }
    }
}

/// Intercepts unary calls on a client.
pub trait UnaryClientInterceptor: Send + Sync + 'static {
    /// Makes the call, usually by calling `next.run(request)`.
    fn intercept<'a>(
        &'a self,
        request: Request<AnyMessage>,
        info: CallInfo<'a>,
        next: UnaryClientNext<'a>,
    ) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>>;
}

/// The rest of a client's unary chain, ending at the network call.
pub type UnaryClientNext<'a> = UnaryNext<'a, dyn UnaryClientInterceptor>;

/// The start of a streaming call on a client, as interceptors see it.
#[derive(Debug)]
pub struct ClientStreamCall {
    pub(crate) request: Request<()>,
    pub(crate) hooks: Vec<Arc<dyn StreamHook>>,
}

impl ClientStreamCall {
    /// The metadata to send.
    pub fn metadata(&self) -> &MetadataMap {
        self.request.metadata()
    }

    /// The metadata to send, to change.
    pub fn metadata_mut(&mut self) -> &mut MetadataMap {
        self.request.metadata_mut()
    }

    /// The call's options (timeout, limits, compression), to change.
    pub fn options_mut(&mut self) -> &mut crate::request::CallOptions {
        self.request.options_mut()
    }

    /// Observes the call's messages and its final status.
    pub fn add_hook(&mut self, hook: impl StreamHook) {
        self.hooks.push(Arc::new(hook));
    }
}

/// Intercepts streaming calls on a client, before they start.
pub trait StreamClientInterceptor: Send + Sync + 'static {
    /// Prepares the call; an error stops it before anything is sent.
    fn intercept<'a>(
        &'a self,
        call: &'a mut ClientStreamCall,
        info: CallInfo<'a>,
    ) -> BoxFuture<'a, Result<(), Status>>;
}

/// An interceptor made from a closure over each call's request metadata,
/// for unary and streaming calls alike: the usual auth check on a server
/// (read a token, refuse the call), or adding a token on a client. It runs
/// before the handler (or before the call is sent); an error refuses the
/// call with that status.
///
/// Register it for every kind of call in one step with
/// [`ServerBuilder::interceptor_fn`](crate::server::ServerBuilder::interceptor_fn)
/// or [`ChannelBuilder::interceptor_fn`](crate::client::ChannelBuilder::interceptor_fn).
///
/// ```
/// use ferrogrpc::{server::Server, Status};
///
/// let server = Server::builder().interceptor_fn(|metadata, _info| {
///     match metadata.get("authorization") {
///         Some("Bearer let-me-in") => Ok(()),
///         _ => Err(Status::unauthenticated("a valid token is needed")),
///     }
/// });
/// ```
pub struct FnInterceptor<F>(pub F);

impl<F> fmt::Debug for FnInterceptor<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnInterceptor")
    }
}

impl<F> FnInterceptor<F>
where
    F: Fn(&mut MetadataMap, CallInfo<'_>) -> Result<(), Status> + Send + Sync + 'static,
{
    fn check(&self, metadata: &mut MetadataMap, info: CallInfo<'_>) -> Result<(), Status> {
        (self.0)(metadata, info)
    }
}

impl<F> UnaryServerInterceptor for FnInterceptor<F>
where
    F: Fn(&mut MetadataMap, CallInfo<'_>) -> Result<(), Status> + Send + Sync + 'static,
{
    fn intercept<'a>(
        &'a self,
        mut request: Request<AnyMessage>,
        info: CallInfo<'a>,
        next: UnaryServerNext<'a>,
    ) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>> {
        match self.check(request.metadata_mut(), info) {
            Ok(()) => Box::pin(next.run(request)),
            Err(status) => Box::pin(async move { Err(status) }),
        }
    }
}

impl<F> StreamServerInterceptor for FnInterceptor<F>
where
    F: Fn(&mut MetadataMap, CallInfo<'_>) -> Result<(), Status> + Send + Sync + 'static,
{
    fn intercept<'a>(
        &'a self,
        mut call: ServerStreamCall,
        info: CallInfo<'a>,
        next: StreamServerNext<'a>,
    ) -> BoxFuture<'a, Result<(), Status>> {
        match self.check(call.metadata_mut(), info) {
            Ok(()) => Box::pin(next.run(call)),
            Err(status) => Box::pin(async move { Err(status) }),
        }
    }
}

impl<F> UnaryClientInterceptor for FnInterceptor<F>
where
    F: Fn(&mut MetadataMap, CallInfo<'_>) -> Result<(), Status> + Send + Sync + 'static,
{
    fn intercept<'a>(
        &'a self,
        mut request: Request<AnyMessage>,
        info: CallInfo<'a>,
        next: UnaryClientNext<'a>,
    ) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>> {
        match self.check(request.metadata_mut(), info) {
            Ok(()) => Box::pin(next.run(request)),
            Err(status) => Box::pin(async move { Err(status) }),
        }
    }
}

impl<F> StreamClientInterceptor for FnInterceptor<F>
where
    F: Fn(&mut MetadataMap, CallInfo<'_>) -> Result<(), Status> + Send + Sync + 'static,
{
    fn intercept<'a>(
        &'a self,
        call: &'a mut ClientStreamCall,
        info: CallInfo<'a>,
    ) -> BoxFuture<'a, Result<(), Status>> {
        let checked = self.check(call.metadata_mut(), info);
        Box::pin(async move { checked })
    }
}

/// The interceptors of a server or a service.
#[derive(Clone, Default)]
pub(crate) struct ServerChain {
    pub(crate) unary: Vec<Arc<dyn UnaryServerInterceptor>>,
    pub(crate) stream: Vec<Arc<dyn StreamServerInterceptor>>,
}

impl ServerChain {
    pub(crate) fn is_empty(&self) -> bool {
        self.unary.is_empty() && self.stream.is_empty()
    }
}

/// The interceptors of a channel.
#[derive(Clone, Default)]
pub(crate) struct ClientChain {
    pub(crate) unary: Vec<Arc<dyn UnaryClientInterceptor>>,
    pub(crate) stream: Vec<Arc<dyn StreamClientInterceptor>>,
}

/// Wraps a service with interceptors that apply to its calls only, after the
/// server-wide ones.
pub struct InterceptedService<S> {
    service: S,
    chain: Arc<ServerChain>,
}

impl<S> fmt::Debug for InterceptedService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterceptedService").finish_non_exhaustive()
    }
}

impl<S: crate::server::Service> InterceptedService<S> {
    /// Wraps `service` with no interceptors yet.
    pub fn new(service: S) -> InterceptedService<S> {
        InterceptedService {
            service,
            chain: Arc::default(),
        }
    }

    /// Adds a unary interceptor (after those already added).
    pub fn unary(mut self, interceptor: impl UnaryServerInterceptor) -> InterceptedService<S> {
        Arc::make_mut(&mut self.chain)
            .unary
            .push(Arc::new(interceptor));
        self
    }

    /// Adds a stream interceptor (after those already added).
    pub fn stream(mut self, interceptor: impl StreamServerInterceptor) -> InterceptedService<S> {
        Arc::make_mut(&mut self.chain)
            .stream
            .push(Arc::new(interceptor));
        self
    }
}

impl<S: crate::server::Service> crate::server::Service for InterceptedService<S> {
    fn name(&self) -> &'static str {
        self.service.name()
    }

    fn call(&self, method: &str, mut call: crate::server::ServerCall) -> crate::server::BoxFuture {
        if !self.chain.is_empty() {
            call.service_chain = Some(Arc::clone(&self.chain));
        }
        self.service.call(method, call)
    }
}

/// Downcasts an interceptor's message back to the method's type.
pub(crate) fn downcast<T: 'static>(message: AnyMessage, what: &str) -> Result<T, Status> {
    message.downcast::<T>().map(|b| *b).map_err(|_| {
        Status::internal(format!(
            "an interceptor replaced the {what} message with one of another type"
        ))
    })
}
