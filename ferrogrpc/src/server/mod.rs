//! The gRPC server: register services, serve connections, stop gracefully.
//!
//! ```no_run
//! # async fn run(svc: impl ferrogrpc::server::Service) -> std::io::Result<()> {
//! use ferrogrpc::server::Server;
//! let server = Server::builder().add_service(svc).build();
//! server.serve("127.0.0.1:50051").await
//! # }
//! ```
//!
//! Each call runs in its own task. A handler sees its request (message or
//! stream), metadata, deadline and peer; it is cancelled (dropped) when the
//! deadline passes or the client resets the stream, and a panic fails only
//! its call, with `UNKNOWN`.

mod context;
mod handler;

use std::{collections::HashMap, future::Future, io, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, ToSocketAddrs},
    sync::watch,
};

pub use crate::call_context::CallContext;
pub use handler::{client_streaming, server_streaming, streaming, unary, BoxFuture, ResponseSink};

use crate::{
    credentials::{self, tls::ServerTls, AuthInfo, ServerCredentials},
    interceptor::{ServerChain, StreamServerInterceptor, UnaryServerInterceptor},
    peer::{Addr, Peer},
    stats,
    status::Status,
    tap::{ServerInHandle, TapInfo},
    transport::server::{serve_connection, IncomingStream, ServerConfig, Shutdown, StreamHandler},
};

/// Default max size of a received message: 4 MiB, as in gRPC-Go.
pub const DEFAULT_MAX_RECV_MESSAGE_SIZE: usize = 4 << 20;

/// A gRPC service: routes the calls of one service (e.g.
/// `helloworld.Greeter`) to its handlers. Generated code implements it.
pub trait Service: Send + Sync + 'static {
    /// The full service name, `package.Service`.
    fn name(&self) -> &'static str;

    /// Starts one call to `method` (the part of the path after the service
    /// name). Unknown methods answer with [`ServerCall::unimplemented`].
    fn call(&self, method: &str, call: ServerCall) -> BoxFuture;

    /// The encoded `google.protobuf.FileDescriptorProto`s of the proto file
    /// that defines the service and of every file it imports, which server
    /// reflection serves (`ServerBuilder::add_reflection`). Generated code
    /// returns its package's `FILE_DESCRIPTORS`. The default is none:
    /// reflection then lists the service but cannot describe it.
    fn file_descriptors(&self) -> &'static [&'static [u8]] {
        &[]
    }

    /// The service's methods (names and streaming kinds), for
    /// [`Server::service_info`] and for sending calls to methods the service
    /// does not have to the
    /// [unknown-service handler](ServerBuilder::unknown_service_handler).
    /// Generated code lists them; the default is an empty list, read as
    /// "not known".
    fn methods(&self) -> &'static [MethodInfo] {
        &[]
    }
}

/// One method of a service: its name and whether each side streams
/// (gRPC-Go's `grpc.MethodInfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MethodInfo {
    /// The method's name, e.g. `SayHello`.
    pub name: &'static str,
    /// Whether the client sends a stream of messages.
    pub client_streaming: bool,
    /// Whether the server sends a stream of messages.
    pub server_streaming: bool,
}

impl MethodInfo {
    /// Describes a method.
    pub const fn new(name: &'static str, client_streaming: bool, server_streaming: bool) -> Self {
        MethodInfo {
            name,
            client_streaming,
            server_streaming,
        }
    }
}

/// A service registered on a server and its methods (gRPC-Go's
/// `grpc.ServiceInfo`), from [`Server::service_info`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceInfo {
    /// The full service name, `package.Service`.
    pub name: &'static str,
    /// Its methods, as [`Service::methods`] lists them (empty when the
    /// service does not say).
    pub methods: &'static [MethodInfo],
}

/// Handles calls to services (or methods) the server does not have, as
/// set with [`ServerBuilder::unknown_service_handler`].
type UnknownHandler = Arc<dyn Fn(ServerCall) -> BoxFuture + Send + Sync>;

/// Server-wide settings applied to each call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallSettings {
    pub(crate) max_recv: usize,
    pub(crate) max_send: usize,
    /// Default response compression (used when the client accepts it).
    pub(crate) compression: Option<&'static str>,
    pub(crate) min_compress_size: usize,
}

/// An incoming call, handed to a [`Service`] and then to one of the handler
/// drivers ([`unary`], [`server_streaming`], [`client_streaming`],
/// [`streaming`]).
pub struct ServerCall {
    pub(crate) stream: IncomingStream,
    pub(crate) settings: CallSettings,
    pub(crate) server_chain: Option<Arc<ServerChain>>,
    pub(crate) service_chain: Option<Arc<ServerChain>>,
    pub(crate) stats: Option<stats::Handlers>,
    #[cfg(feature = "binarylog")]
    pub(crate) binlog: Option<crate::binarylog::BinaryLog>,
}

impl std::fmt::Debug for ServerCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCall")
            .field("path", &self.stream.path)
            .finish_non_exhaustive()
    }
}

impl ServerCall {
    /// The full method path, `/package.Service/Method`.
    pub fn path(&self) -> &str {
        self.stream.path.path()
    }

    /// The request's content-subtype, lower-cased: `""` for plain
    /// `application/grpc`, `"proto"` for `application/grpc+proto`, `"json"`
    /// for `application/grpc+json` (gRPC-Go's `ServerStream.ContentSubtype`).
    /// Generated services pick their codec by it (see
    /// [`CallCodec::server`](crate::codec::CallCodec::server)); the
    /// response's content type repeats it.
    pub fn content_subtype(&self) -> &str {
        self.stream.content_subtype.as_str()
    }

    /// Answers the call with `UNIMPLEMENTED` (an unknown method).
    pub async fn unimplemented(self) {
        let path = self.stream.path.path().to_string();
        self.fail(Status::unimplemented(format!("unknown method {path}")));
    }

    /// Ends the call at once with `status`.
    pub fn fail(mut self, status: Status) {
        self.stream.send.send_status(status, None);
    }
}

/// Builds a [`Server`].
#[derive(Default)]
pub struct ServerBuilder {
    services: HashMap<&'static str, Arc<dyn Service>>,
    max_recv: Option<usize>,
    max_send: Option<usize>,
    compression: Option<&'static str>,
    min_compress_size: Option<usize>,
    credentials: ServerCredentials,
    chain: ServerChain,
    stats: Vec<Arc<dyn stats::Handler>>,
    /// `None`: the environment's (`binarylog::from_env`).
    #[cfg(feature = "binarylog")]
    binlog: Option<crate::binarylog::BinaryLog>,
    tap: Option<Arc<dyn ServerInHandle>>,
    /// Dynamic windows: explicitly on/off, or decided by whether window
    /// sizes were set.
    dynamic_window: Option<bool>,
    windows_set: bool,
    config: ServerConfig,
    max_connections: Option<usize>,
    unknown: Option<UnknownHandler>,
    /// Told first when the server stops gracefully.
    #[cfg(feature = "health")]
    health: Vec<crate::health::Server>,
    /// Reflection to add when the server is built, with what was
    /// registered by hand.
    #[cfg(feature = "reflection")]
    reflection: Option<crate::reflection::Builder>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// Sends every call to a service — or a method of a service — that is
    /// not registered to `handler` instead of answering `UNIMPLEMENTED`
    /// (gRPC-Go's `UnknownServiceHandler`): the building block of a proxy.
    /// [`ServerCall::path`] gives the method; serve it as a bidi stream of
    /// raw messages with [`streaming`] and
    /// [`BytesCodec`](crate::codec::BytesCodec). A method of a registered
    /// service is "not registered" when the service lists its methods
    /// ([`Service::methods`], as generated code does) and the method is
    /// not among them. Interceptors, stats and limits apply as to any call.
    pub fn unknown_service_handler<F>(mut self, handler: F) -> ServerBuilder
    where
        F: Fn(ServerCall) -> BoxFuture + Send + Sync + 'static,
    {
        self.unknown = Some(Arc::new(handler));
        self
    }

    /// Registers a service. A later service of the same name replaces it.
    pub fn add_service(mut self, service: impl Service) -> ServerBuilder {
        self.services.insert(service.name(), Arc::new(service));
        self
    }

    /// Max size of a received message; larger ones fail the call with
    /// `RESOURCE_EXHAUSTED`. Default 4 MiB.
    pub fn max_decoding_message_size(mut self, limit: usize) -> ServerBuilder {
        self.max_recv = Some(limit);
        self
    }

    /// Max size of a sent message; larger ones fail the call with
    /// `RESOURCE_EXHAUSTED`. Default: no limit (`usize::MAX`).
    pub fn max_encoding_message_size(mut self, limit: usize) -> ServerBuilder {
        self.max_send = Some(limit);
        self
    }

    /// How connections are secured: [`ServerCredentials::insecure`] (the
    /// default), [`local`](ServerCredentials::local) or
    /// [`tls`](ServerCredentials::tls). A TLS configuration that cannot be
    /// loaded makes the `serve` methods fail with `InvalidInput`.
    pub fn credentials(mut self, credentials: ServerCredentials) -> ServerBuilder {
        self.credentials = credentials;
        self
    }

    /// Adds a server-wide unary interceptor; interceptors run in the order
    /// added, the first outermost (see [`interceptor`](crate::interceptor)).
    pub fn unary_interceptor(mut self, interceptor: impl UnaryServerInterceptor) -> ServerBuilder {
        self.chain.unary.push(Arc::new(interceptor));
        self
    }

    /// Adds a closure over each call's request metadata as a server-wide
    /// interceptor for unary and streaming calls alike (see
    /// [`FnInterceptor`](crate::interceptor::FnInterceptor)): an error
    /// refuses the call before its handler runs.
    pub fn interceptor_fn<F>(mut self, f: F) -> ServerBuilder
    where
        F: Fn(
                &mut crate::metadata::MetadataMap,
                crate::interceptor::CallInfo<'_>,
            ) -> Result<(), Status>
            + Send
            + Sync
            + 'static,
    {
        let interceptor = Arc::new(crate::interceptor::FnInterceptor(f));
        self.chain.unary.push(Arc::clone(&interceptor) as _);
        self.chain.stream.push(interceptor);
        self
    }

    /// Adds a server-wide stream interceptor (client-, server- and
    /// bidi-streaming calls), after those already added.
    pub fn stream_interceptor(
        mut self,
        interceptor: impl StreamServerInterceptor,
    ) -> ServerBuilder {
        self.chain.stream.push(Arc::new(interceptor));
        self
    }

    /// Adds the health service of `health` (`grpc.health.v1.Health`), and
    /// has a graceful stop call [`health::Server::shutdown`](crate::health::Server::shutdown)
    /// first, so that health-checking clients and load balancers move away
    /// while the calls under way finish; open `Watch` streams then end
    /// after sending NOT_SERVING, so they do not hold the stop up.
    #[cfg(feature = "health")]
    pub fn add_health(mut self, health: &crate::health::Server) -> ServerBuilder {
        self.health.push(health.clone());
        self.add_service(health.service())
    }

    /// Serves server reflection (`grpc.reflection.v1` and `v1alpha`; see
    /// [`reflection`](crate::reflection)) for every service of the server,
    /// those added before this call and those added after: when the server
    /// is built, the reflection service gathers their descriptors, which
    /// generated code provides, and lists their names.
    #[cfg(feature = "reflection")]
    pub fn add_reflection(self) -> ServerBuilder {
        self.add_reflection_with(crate::reflection::Builder::new())
    }

    /// As [`add_reflection`](Self::add_reflection), also serving the
    /// descriptors registered in `registered`, e.g. those of services
    /// written by hand. Replaces an earlier `add_reflection*`.
    #[cfg(feature = "reflection")]
    pub fn add_reflection_with(mut self, registered: crate::reflection::Builder) -> ServerBuilder {
        self.reflection = Some(registered);
        self
    }

    /// Adds a stats handler; each sees every call and connection event.
    pub fn stats_handler(mut self, handler: impl stats::Handler) -> ServerBuilder {
        self.stats.push(Arc::new(handler));
        self
    }

    /// Logs the calls `log`'s filter chooses (gRFC A16; see
    /// [`binarylog`](crate::binarylog)). Without it, the server uses the
    /// log `GRPC_BINARY_LOG_FILTER` asks for, if any
    /// ([`binarylog::from_env`](crate::binarylog::from_env)).
    #[cfg(feature = "binarylog")]
    pub fn binary_log(mut self, log: crate::binarylog::BinaryLog) -> ServerBuilder {
        self.binlog = Some(log);
        self
    }

    /// Sets the tap: a check run for each new call before its task is
    /// created, which can refuse it with a status (see [`tap`](crate::tap)).
    pub fn tap(mut self, handle: impl ServerInHandle) -> ServerBuilder {
        self.tap = Some(Arc::new(handle));
        self
    }

    /// Compresses responses with `name` (e.g. `"gzip"`) by default, for
    /// clients that accept it; handlers may choose otherwise per call. Default:
    /// no compression. Requests are decompressed with any registered
    /// algorithm whatever this says.
    pub fn send_compressed(mut self, name: &'static str) -> ServerBuilder {
        self.compression = Some(name);
        self
    }

    /// Messages shorter than this are sent uncompressed even when compression
    /// is on. Default [`DEFAULT_MIN_COMPRESS_SIZE`](crate::encoding::DEFAULT_MIN_COMPRESS_SIZE).
    pub fn min_compress_size(mut self, size: usize) -> ServerBuilder {
        self.min_compress_size = Some(size);
        self
    }

    /// The most connections served at once; while that many are open, the
    /// server accepts no more (they wait in the listener's backlog, and
    /// clients time out there rather than being served slowly). Default: no
    /// limit. It counts the connections of every listener, and those given
    /// to [`Server::serve_connection`] (which is not held back).
    pub fn max_connections(mut self, limit: usize) -> ServerBuilder {
        self.max_connections = Some(limit.max(1));
        self
    }

    /// Max concurrent streams per connection, advertised in SETTINGS; excess
    /// streams are refused (REFUSED_STREAM), and clients queue calls above
    /// it. Default 1000, the top of what gRPC-Go servers commonly set: no
    /// honest client waits for it, and one connection cannot hold tens of
    /// thousands of idle streams. `u32::MAX` for no limit.
    pub fn max_concurrent_streams(mut self, limit: u32) -> ServerBuilder {
        self.config.max_concurrent_streams = Some(limit);
        self
    }

    /// Initial HTTP/2 flow-control window of each stream. Default 1 MiB.
    /// Setting a window size turns dynamic windows off unless
    /// [`dynamic_window`](Self::dynamic_window) says otherwise (as gRPC-Go).
    pub fn initial_stream_window_size(mut self, size: u32) -> ServerBuilder {
        self.config.initial_stream_window_size = size;
        self.windows_set = true;
        self
    }

    /// Initial HTTP/2 flow-control window of each connection. Default 2 MiB.
    /// Setting it turns dynamic windows off unless
    /// [`dynamic_window`](Self::dynamic_window) says otherwise.
    pub fn initial_connection_window_size(mut self, size: u32) -> ServerBuilder {
        self.config.initial_connection_window_size = size;
        self.windows_set = true;
        self
    }

    /// Whether flow-control windows grow with the bandwidth-delay product
    /// measured by pings (gRPC-Go's BDP estimator), up to 16 MiB, so one
    /// stream can fill a long, fat link. Default: on, unless window sizes
    /// were set explicitly.
    pub fn dynamic_window(mut self, on: bool) -> ServerBuilder {
        self.dynamic_window = Some(on);
        self
    }

    /// Max size of a received header list (headers or trailers). Default 16 MiB.
    pub fn max_header_list_size(mut self, size: u32) -> ServerBuilder {
        self.config.max_header_list_size = size;
        self
    }

    /// Keepalive pings to clients and connection lifetime limits (gRPC-Go's
    /// `keepalive.ServerParameters`; see [`keepalive`](crate::keepalive)).
    pub fn keepalive_params(mut self, params: crate::keepalive::ServerParameters) -> ServerBuilder {
        self.config.keepalive = params;
        self
    }

    /// How often clients may ping before they get GOAWAY `ENHANCE_YOUR_CALM`
    /// (gRPC-Go's `keepalive.EnforcementPolicy`). Default: at most every 5
    /// minutes, and not at all without active calls.
    pub fn keepalive_enforcement_policy(
        mut self,
        policy: crate::keepalive::EnforcementPolicy,
    ) -> ServerBuilder {
        self.config.enforcement = policy;
        self
    }

    /// A client that resets more than `count` streams within `per` before
    /// the server took them up gets GOAWAY `ENHANCE_YOUR_CALM`
    /// (`too_many_resets`) and its connection is closed (HTTP/2 rapid reset,
    /// CVE-2023-44487: requests that cost the server work and the client
    /// nothing). Default 400 per second.
    ///
    /// Only those resets count. Cancelling a call whose handler already
    /// runs — a dropped call, an expired client deadline — is never counted,
    /// however often it happens: each one cost the client a whole call, the
    /// handler is dropped at once, and the streams in flight stay bounded by
    /// [`max_concurrent_streams`](Self::max_concurrent_streams). Resets the
    /// server sends itself (its deadline, a refused stream) are not counted
    /// either; h2 bounds those separately.
    pub fn max_client_resets(mut self, count: u32, per: Duration) -> ServerBuilder {
        self.config.reset_limit = Some((count, per));
        self
    }

    /// How long a new connection may take to complete the HTTP/2 handshake
    /// before it is dropped; also how long a client may take to finish a
    /// header block it split over several frames (h2 would wait for the
    /// rest for ever). Default 20 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Builds the server; serve it with [`Server::serve`] and friends.
    pub fn build(mut self) -> Server {
        #[cfg(feature = "reflection")]
        if let Some(registered) = self.reflection.take() {
            let reflection = registered.build_for_server(
                self.services
                    .values()
                    .map(|s| &**s)
                    .filter(|s| !crate::reflection::is_reflection(s.name())),
            );
            self = self
                .add_service(reflection.v1())
                .add_service(reflection.v1alpha());
        }
        self.config.bdp = self.dynamic_window.unwrap_or(!self.windows_set);
        #[cfg(feature = "channelz")]
        let channelz = crate::channelz::register_server();
        #[cfg(feature = "channelz")]
        {
            self.config.channelz = Some(channelz.share());
        }
        let (shutdown, _) = watch::channel(Shutdown::Running);
        let (connections, _) = watch::channel(0usize);
        let (listeners, _) = watch::channel(0usize);
        let security = match self.credentials {
            ServerCredentials::Insecure => Security::Insecure,
            ServerCredentials::Local => Security::Local,
            ServerCredentials::Tls(config) => match ServerTls::new(config) {
                Ok(tls) => Security::Tls(Arc::new(tls)),
                Err(e) => Security::Invalid(format!("TLS configuration: {e}")),
            },
        };
        Server {
            inner: Arc::new(Inner {
                router: Router {
                    chain: (!self.chain.is_empty()).then(|| Arc::new(self.chain)),
                    stats: (!self.stats.is_empty()).then(|| self.stats.into()),
                    #[cfg(feature = "binarylog")]
                    binlog: self.binlog.or_else(crate::binarylog::from_env),
                    tap: self.tap,
                    unknown: self.unknown,
                    services: self.services,
                    settings: CallSettings {
                        max_recv: self.max_recv.unwrap_or(DEFAULT_MAX_RECV_MESSAGE_SIZE),
                        max_send: self.max_send.unwrap_or(usize::MAX),
                        compression: self.compression,
                        min_compress_size: self
                            .min_compress_size
                            .unwrap_or(crate::encoding::DEFAULT_MIN_COMPRESS_SIZE),
                    },
                },
                config: self.config,
                shutdown,
                connections,
                listeners,
                security,
                reloader_started: std::sync::atomic::AtomicBool::new(false),
                max_connections: self.max_connections,
                #[cfg(feature = "health")]
                health: self.health,
                #[cfg(feature = "channelz")]
                channelz,
            }),
        }
    }

    /// Builds the server and serves on `addr` until it fails.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn serve(self, addr: impl ToSocketAddrs) -> io::Result<()> {
        self.build().serve(addr).await
    }

    /// Builds the server and serves on `addr` until `signal` completes, then
    /// stops gracefully.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn serve_with_shutdown(
        self,
        addr: impl ToSocketAddrs,
        signal: impl Future<Output = ()>,
    ) -> io::Result<()> {
        self.build().serve_with_shutdown(addr, signal).await
    }
}

struct Router {
    services: HashMap<&'static str, Arc<dyn Service>>,
    settings: CallSettings,
    chain: Option<Arc<ServerChain>>,
    stats: Option<stats::Handlers>,
    #[cfg(feature = "binarylog")]
    binlog: Option<crate::binarylog::BinaryLog>,
    tap: Option<Arc<dyn ServerInHandle>>,
    unknown: Option<UnknownHandler>,
}

impl StreamHandler for Router {
    fn handle(&self, stream: IncomingStream) {
        let path = stream.path.clone();
        let full = path.path();
        let parsed = full
            .strip_prefix('/')
            .and_then(|rest| rest.rsplit_once('/'))
            .filter(|(svc, method)| !svc.is_empty() && !method.is_empty());
        if let Some(tap) = &self.tap {
            let info = TapInfo {
                method: full,
                metadata: &stream.metadata,
                peer: &stream.peer,
            };
            if let Err(status) = tap.handle(&info) {
                let mut send = stream.send;
                send.send_status(status, None);
                return;
            }
        }
        let call = ServerCall {
            stream,
            settings: self.settings,
            server_chain: self.chain.clone(),
            service_chain: None,
            stats: self.stats.clone(),
            #[cfg(feature = "binarylog")]
            binlog: self.binlog.clone(),
        };
        let Some((service, method)) = parsed else {
            call.fail(Status::unimplemented(format!(
                "malformed method name {full:?}"
            )));
            return;
        };
        match (self.services.get(service), &self.unknown) {
            (Some(svc), Some(unknown)) => {
                let methods = svc.methods();
                if methods.is_empty() || methods.iter().any(|m| m.name == method) {
                    crate::logging::spawn(svc.call(method, call));
                } else {
                    crate::logging::spawn(unknown(call));
                }
            }
            (Some(svc), None) => {
                crate::logging::spawn(svc.call(method, call));
            }
            (None, Some(unknown)) => {
                crate::logging::spawn(unknown(call));
            }
            (None, None) => call.fail(Status::unimplemented(format!("unknown service {service}"))),
        }
    }
}

struct Inner {
    router: Router,
    config: ServerConfig,
    shutdown: watch::Sender<Shutdown>,
    connections: watch::Sender<usize>,
    /// `serve_listener` loops running (each owns an open listener).
    listeners: watch::Sender<usize>,
    security: Security,
    reloader_started: std::sync::atomic::AtomicBool,
    /// Accept no more connections while this many are open.
    max_connections: Option<usize>,
    /// Shut down first on a graceful stop.
    #[cfg(feature = "health")]
    health: Vec<crate::health::Server>,
    /// The server's channelz entity.
    #[cfg(feature = "channelz")]
    channelz: crate::channelz::Handle<crate::channelz::ServerEntry>,
}

/// The server's transport security, resolved at build time.
enum Security {
    Insecure,
    Local,
    Tls(Arc<ServerTls>),
    /// The TLS configuration could not be loaded; serving fails with this.
    Invalid(String),
}

/// A source of connections to serve: a TCP or Unix listener, or your own.
pub trait Listener: Send + 'static {
    /// The connection type.
    type Io: AsyncRead + AsyncWrite + Send + Unpin + 'static;

    /// Accepts the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, Peer)>> + Send;

    /// The address it listens on, if it has one (channelz shows it).
    fn local_addr(&self) -> Option<Addr> {
        None
    }
}

impl Listener for TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Io, Peer)> {
        let (tcp, remote) = TcpListener::accept(self).await?;
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().map_or(Addr::Unknown, Addr::Tcp);
        Ok((tcp, Peer::new(Addr::Tcp(remote), local)))
    }

    fn local_addr(&self) -> Option<Addr> {
        TcpListener::local_addr(self).ok().map(Addr::Tcp)
    }
}

#[cfg(unix)]
impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept(&mut self) -> io::Result<(Self::Io, Peer)> {
        let (sock, remote) = tokio::net::UnixListener::accept(self).await?;
        let local = self
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.to_path_buf()));
        let remote = remote.as_pathname().map(|p| p.to_path_buf());
        Ok((sock, Peer::new(Addr::Unix(remote), Addr::Unix(local))))
    }

    fn local_addr(&self) -> Option<Addr> {
        let local = tokio::net::UnixListener::local_addr(self).ok()?;
        Some(Addr::Unix(local.as_pathname().map(|p| p.to_path_buf())))
    }
}

/// A gRPC server. Cheap to clone; every clone controls the same server.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field(
                "services",
                &self.inner.router.services.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A served connection's end: reports it to the stats handlers and takes it
/// off the count a stop waits on, when dropped.
struct ConnectionEnd {
    inner: Arc<Inner>,
    remote: Addr,
}

impl Drop for ConnectionEnd {
    fn drop(&mut self) {
        stats::conn_event(
            &self.inner.router.stats,
            &stats::ConnEvent::End {
                client: false,
                remote_addr: &self.remote,
            },
        );
        self.inner.connections.send_modify(|n| *n -= 1);
    }
}

impl Server {
    /// A builder.
    pub fn builder() -> ServerBuilder {
        crate::logging::init_from_env();
        ServerBuilder::default()
    }

    /// Binds `addr` and serves until the server is stopped.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn serve(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let listener = TcpListener::bind(addr).await?;
        self.serve_listener(listener).await
    }

    /// Serves on `addr` until `signal` completes, then stops gracefully:
    /// no new calls, calls under way finish, then connections close.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn serve_with_shutdown(
        &self,
        addr: impl ToSocketAddrs,
        signal: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let listener = TcpListener::bind(addr).await?;
        tokio::select! {
            res = self.serve_listener(listener) => res,
            () = signal => {
                self.graceful_stop().await;
                Ok(())
            }
        }
    }

    /// Serves connections from `listener` until the server is stopped. Returns
    /// as soon as a stop begins (connections may still be finishing).
    ///
    /// # Errors
    /// Never for the listeners built in; a custom listener's accept errors are
    /// logged and retried after a short pause.
    pub async fn serve_listener<L: Listener>(&self, mut listener: L) -> io::Result<()> {
        if let Security::Invalid(e) = &self.inner.security {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, e.clone()));
        }
        self.start_reloader();
        let mut shutdown = self.inner.shutdown.subscribe();
        // Counted while the listener is open, so a graceful stop can wait
        // for it to close.
        self.inner.listeners.send_modify(|n| *n += 1);
        struct Open<'a>(&'a watch::Sender<usize>);
        impl Drop for Open<'_> {
            fn drop(&mut self) {
                self.0.send_modify(|n| *n -= 1);
            }
        }
        let open = Open(&self.inner.listeners);
        // Shown by channelz while the listener is open.
        #[cfg(feature = "channelz")]
        let _listen_socket = crate::channelz::register_listen_socket(
            &self.inner.channelz,
            listener.local_addr().unwrap_or(Addr::Unknown),
        );
        let mut connections = self.inner.connections.subscribe();
        loop {
            if *shutdown.borrow_and_update() != Shutdown::Running {
                break;
            }
            if let Some(limit) = self.inner.max_connections {
                // At the limit: leave new connections in the backlog.
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => continue,
                    room = connections.wait_for(|n| *n < limit) => {
                        if room.is_err() {
                            break;
                        }
                    }
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => continue,
                accepted = listener.accept() => match accepted {
                    // A stop began while this connection was accepted: close
                    // it unserved (the client tries elsewhere) rather than
                    // hand it a connection that is about to go away.
                    Ok(_) if *shutdown.borrow() != Shutdown::Running => break,
                    Ok((io, peer)) => self.spawn_connection(io, peer),
                    Err(err) => {
                        // Such as EMFILE: pause rather than spin.
                        crate::logging::in_scope(|| tracing::warn!("accept failed: {err}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        // The listener closes before the count says so.
        drop(listener);
        drop(open);
        Ok(())
    }

    /// Serves one already-accepted connection in a new task.
    pub fn serve_connection<IO>(&self, io: IO, peer: Peer)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        self.spawn_connection(io, peer);
    }

    fn spawn_connection<IO>(&self, io: IO, peer: Peer)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let shutdown = inner.shutdown.subscribe();
        inner.connections.send_modify(|n| *n += 1);
        crate::logging::spawn(async move {
            let remote = peer.remote_addr.clone();
            tracing::debug!(peer = %remote, "accepted connection");
            stats::conn_event(
                &inner.router.stats,
                &stats::ConnEvent::Begin {
                    client: false,
                    remote_addr: &remote,
                },
            );
            // Ends the connection's accounting however the task ends, a
            // panic included: a stop waits for the count to reach zero.
            let _ended = ConnectionEnd {
                inner: Arc::clone(&inner),
                remote,
            };
            // The TLS handshake runs here, in the connection's own task, so a
            // slow or silent client never holds up the accept loop.
            match &inner.security {
                Security::Insecure => {
                    serve_connection(io, Arc::new(peer), &inner.config, &inner.router, shutdown)
                        .await;
                }
                Security::Local => match credentials::is_loopback(&peer.remote_addr) {
                    Some(security_level) => {
                        let peer = peer.with_auth_info(AuthInfo::Local { security_level });
                        serve_connection(
                            io,
                            Arc::new(peer),
                            &inner.config,
                            &inner.router,
                            shutdown,
                        )
                        .await;
                    }
                    None => tracing::warn!(
                        peer = %peer.remote_addr,
                        "local credentials: refused a connection from a non-local address"
                    ),
                },
                Security::Tls(tls) => {
                    let mut shutdown = shutdown;
                    let loaded = tls.current();
                    let handshake = tokio::time::timeout(
                        inner.config.handshake_timeout,
                        loaded.acceptor().accept(io),
                    );
                    let handshake =
                        crate::transport::server::unless_stopping(&mut shutdown, handshake).await;
                    let stopping = || io::Error::other("the server is stopping");
                    match handshake.unwrap_or_else(|| Ok(Err(stopping()))) {
                        Ok(Ok(stream)) => {
                            let conn = stream.get_ref().1;
                            if conn.alpn_protocol() != Some(credentials::tls::ALPN_H2) {
                                tracing::debug!(
                                    peer = %peer.remote_addr,
                                    "TLS client did not negotiate ALPN h2; closing"
                                );
                            } else {
                                let info = loaded.info(conn);
                                let peer = peer.with_auth_info(AuthInfo::Tls(info));
                                serve_connection(
                                    stream,
                                    Arc::new(peer),
                                    &inner.config,
                                    &inner.router,
                                    shutdown,
                                )
                                .await;
                            }
                        }
                        Ok(Err(e)) => tracing::debug!(
                            peer = %peer.remote_addr,
                            "TLS handshake failed: {}",
                            credentials::tls::describe_handshake_error(&e)
                        ),
                        Err(_) => {
                            tracing::debug!(peer = %peer.remote_addr, "TLS handshake timed out")
                        }
                    }
                }
                Security::Invalid(_) => {}
            }
        });
    }

    /// Starts the task that reloads certificate files when they change.
    fn start_reloader(&self) {
        let Security::Tls(tls) = &self.inner.security else {
            return;
        };
        if !tls.has_files()
            || self
                .inner
                .reloader_started
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let tls = Arc::clone(tls);
        let weak = Arc::downgrade(&self.inner);
        crate::logging::spawn(async move {
            let mut tick = tokio::time::interval(tls.reload_interval());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(inner)
                        if matches!(
                            *inner.shutdown.borrow(),
                            Shutdown::Running | Shutdown::Closing
                        ) => {}
                    _ => return,
                }
                tls.reload_if_changed();
            }
        });
    }

    /// Reloads the TLS certificate, key and client CA from their files now.
    /// New connections use them; live connections go on with the old ones.
    ///
    /// # Errors
    /// When the server has no TLS, or the files cannot be loaded (the old
    /// certificates then stay in use).
    pub fn reload_credentials(&self) -> io::Result<()> {
        match &self.inner.security {
            Security::Tls(tls) => tls
                .reload()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the server has no TLS credentials to reload",
            )),
        }
    }

    /// Stops gracefully, as gRPC-Go's `GracefulStop`: stops accepting
    /// connections, sends GOAWAY so clients open no new streams, lets the
    /// calls under way finish, and returns once every connection has closed.
    ///
    /// # Cancel safety
    /// Dropping the future does not undo the stop.
    pub async fn graceful_stop(&self) {
        crate::logging::in_scope(|| {
            tracing::info!("graceful stop: GOAWAY to every connection, waiting for calls to finish")
        });
        #[cfg(feature = "health")]
        for health in &self.inner.health {
            health.end_watches();
        }
        // Listeners close first, as in gRPC-Go, so a client that reconnects
        // on the GOAWAY cannot reach this server again. (A loop that does
        // not get to run within a second is not waited for further.)
        self.inner.shutdown.send_if_modified(|s| {
            let running = *s == Shutdown::Running;
            if running {
                *s = Shutdown::Closing;
            }
            running
        });
        let mut listeners = self.inner.listeners.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(1), listeners.wait_for(|n| *n == 0)).await;
        self.inner.shutdown.send_if_modified(|s| {
            let closing = *s == Shutdown::Closing;
            if closing {
                *s = Shutdown::Graceful;
            }
            closing
        });
        let mut connections = self.inner.connections.subscribe();
        let _ = connections.wait_for(|n| *n == 0).await;
    }

    /// Stops gracefully, but for at most `grace`: calls still running then
    /// are cut off by a hard stop. Returns once every connection has closed.
    pub async fn graceful_stop_timeout(&self, grace: Duration) {
        if tokio::time::timeout(grace, self.graceful_stop())
            .await
            .is_err()
        {
            crate::logging::in_scope(|| {
                tracing::info!("graceful stop did not finish within {grace:?}; stopping hard")
            });
            self.stop();
            let mut connections = self.inner.connections.subscribe();
            let _ = connections.wait_for(|n| *n == 0).await;
        }
    }

    /// Stops now, as gRPC-Go's `Stop`: closes every connection; calls under
    /// way fail on the client and their handlers are cancelled.
    pub fn stop(&self) {
        crate::logging::in_scope(|| tracing::info!("stop: closing every connection"));
        self.inner.shutdown.send_replace(Shutdown::Hard);
    }

    /// The services registered, sorted by name, with their methods
    /// (gRPC-Go's `GetServiceInfo`).
    pub fn service_info(&self) -> Vec<ServiceInfo> {
        let mut all: Vec<ServiceInfo> = self
            .inner
            .router
            .services
            .values()
            .map(|svc| ServiceInfo {
                name: svc.name(),
                methods: svc.methods(),
            })
            .collect();
        all.sort_by_key(|info| info.name);
        all
    }

    /// The number of connections being served.
    pub fn connection_count(&self) -> usize {
        *self.inner.connections.borrow()
    }
}
