//! The client: a [`Channel`] to a target, and the call API that generated
//! stubs use.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use ferrogrpc::client::Channel;
//! let channel = Channel::from_target("127.0.0.1:50051")?; // connects lazily
//! # Ok(()) }
//! ```
//!
//! A channel is cheap to clone and to share between tasks: every clone uses
//! the same connection. It connects on the first call and reconnects on the
//! next call after the connection dies.
//!
//! The call path reads the channel's connection state without locks or
//! queues. Today a channel has one subchannel (one address); the resolver and
//! load-balancing layers slot in where the channel picks its connection
//! (a private `Channel::pick`).

mod call;
mod subchannel;

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use http::uri::{Authority, Scheme};

pub use call::{ClientStreamingCall, RequestSink};

use crate::{
    credentials::{ChannelCredentials, PerRpcCredentials},
    interceptor::{ClientChain, StreamClientInterceptor, UnaryClientInterceptor},
    stats,
    status::Status,
    transport::client::{ClientConfig, Endpoint, Http2Client, TransportSecurity},
};
use subchannel::Subchannel;

/// Default max size of a received message: 4 MiB, as in gRPC-Go.
pub const DEFAULT_MAX_RECV_MESSAGE_SIZE: usize = 4 << 20;

/// The error for a channel that cannot be built: a bad target, TLS settings
/// that cannot be loaded, or credentials that do not fit together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError {
    target: String,
    reason: String,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot build a channel to {:?}: {}",
            self.target, self.reason
        )
    }
}

impl std::error::Error for BuildError {}

/// A virtual connection to a target, on which calls are made.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<Inner>,
}

struct Inner {
    target: String,
    scheme: Scheme,
    authority: Authority,
    subchannel: Arc<Subchannel>,
    max_recv: usize,
    max_send: usize,
    default_timeout: Option<Duration>,
    compression: Option<&'static str>,
    min_compress_size: usize,
    per_rpc: Option<Arc<dyn PerRpcCredentials>>,
    allow_insecure_per_rpc: bool,
    chain: Option<Arc<ClientChain>>,
    stats: Option<stats::Handlers>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Channel`].
#[derive(Clone)]
pub struct ChannelBuilder {
    target: String,
    authority: Option<String>,
    max_recv: usize,
    max_send: usize,
    default_timeout: Option<Duration>,
    compression: Option<&'static str>,
    min_compress_size: usize,
    credentials: Option<ChannelCredentials>,
    per_rpc: Option<Arc<dyn PerRpcCredentials>>,
    allow_insecure_per_rpc: bool,
    chain: ClientChain,
    stats: Vec<Arc<dyn stats::Handler>>,
    dynamic_window: Option<bool>,
    windows_set: bool,
    config: ClientConfig,
}

impl fmt::Debug for ChannelBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelBuilder")
            .field("target", &self.target)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl ChannelBuilder {
    /// How connections are secured: [`ChannelCredentials::insecure`],
    /// [`local`](ChannelCredentials::local) or [`tls`](ChannelCredentials::tls).
    /// Default: TLS with the platform's roots for `https://` targets,
    /// insecure otherwise.
    pub fn credentials(mut self, credentials: ChannelCredentials) -> ChannelBuilder {
        self.credentials = Some(credentials);
        self
    }

    /// Adds a unary interceptor; interceptors run in the order added, the
    /// first outermost (see [`interceptor`](crate::interceptor)).
    pub fn unary_interceptor(mut self, interceptor: impl UnaryClientInterceptor) -> ChannelBuilder {
        self.chain.unary.push(Arc::new(interceptor));
        self
    }

    /// Adds a stream interceptor, run in the order added before each
    /// streaming call starts.
    pub fn stream_interceptor(
        mut self,
        interceptor: impl StreamClientInterceptor,
    ) -> ChannelBuilder {
        self.chain.stream.push(Arc::new(interceptor));
        self
    }

    /// Adds a stats handler; each sees every call event.
    pub fn stats_handler(mut self, handler: impl stats::Handler) -> ChannelBuilder {
        self.stats.push(Arc::new(handler));
        self
    }

    /// Credentials that add metadata (e.g. a token) to every call.
    pub fn per_rpc_credentials(mut self, credentials: impl PerRpcCredentials) -> ChannelBuilder {
        self.per_rpc = Some(Arc::new(credentials));
        self
    }

    /// Lets per-RPC credentials that require transport security travel over
    /// connections that do not give it (plaintext). Off by default: such
    /// calls fail with `UNAUTHENTICATED`. For tests and trusted networks only.
    pub fn allow_insecure_per_rpc_credentials(mut self, allow: bool) -> ChannelBuilder {
        self.allow_insecure_per_rpc = allow;
        self
    }
    /// Overrides the `:authority` sent with calls (default: the target's
    /// `host:port`, or `localhost` for a Unix socket).
    pub fn authority(mut self, authority: impl Into<String>) -> ChannelBuilder {
        self.authority = Some(authority.into());
        self
    }

    /// Max size of a received message; larger ones fail the call with
    /// `RESOURCE_EXHAUSTED`. Default 4 MiB.
    pub fn max_decoding_message_size(mut self, limit: usize) -> ChannelBuilder {
        self.max_recv = limit;
        self
    }

    /// Max size of a sent message; larger ones fail the call with
    /// `RESOURCE_EXHAUSTED` before anything is sent. Default: no limit.
    pub fn max_encoding_message_size(mut self, limit: usize) -> ChannelBuilder {
        self.max_send = limit;
        self
    }

    /// Compresses request messages with `name` (e.g. `"gzip"`) by default;
    /// calls may choose otherwise ([`Request::with_compression`](crate::Request::with_compression)).
    /// An unregistered name fails each call with `INTERNAL`. Responses are
    /// decompressed with any registered algorithm whatever this says.
    pub fn send_compressed(mut self, name: &'static str) -> ChannelBuilder {
        self.compression = Some(name);
        self
    }

    /// Messages shorter than this are sent uncompressed even when compression
    /// is on. Default [`DEFAULT_MIN_COMPRESS_SIZE`](crate::encoding::DEFAULT_MIN_COMPRESS_SIZE).
    pub fn min_compress_size(mut self, size: usize) -> ChannelBuilder {
        self.min_compress_size = size;
        self
    }

    /// A timeout for calls that set none themselves. Default: none.
    pub fn timeout(mut self, timeout: Duration) -> ChannelBuilder {
        self.default_timeout = Some(timeout);
        self
    }

    /// Client keepalive (gRPC-Go's `keepalive.ClientParameters`; see
    /// [`keepalive`](crate::keepalive)). Default: off. A time under 10 s is
    /// raised to 10 s.
    pub fn keepalive_params(
        mut self,
        params: crate::keepalive::ClientParameters,
    ) -> ChannelBuilder {
        self.config.keepalive = params.clamped();
        self
    }

    #[doc(hidden)]
    /// Keepalive without the 10 s floor, for tests with short timings.
    pub fn keepalive_params_unclamped_for_tests(
        mut self,
        params: crate::keepalive::ClientParameters,
    ) -> ChannelBuilder {
        self.config.keepalive = params;
        self
    }

    /// How long one connection attempt may take. Default 20 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> ChannelBuilder {
        self.config.connect_timeout = timeout;
        self
    }

    /// Initial HTTP/2 flow-control window of each stream. Default 1 MiB.
    /// Setting a window size turns dynamic windows off unless
    /// [`dynamic_window`](Self::dynamic_window) says otherwise (as gRPC-Go).
    pub fn initial_stream_window_size(mut self, size: u32) -> ChannelBuilder {
        self.config.initial_stream_window_size = size;
        self.windows_set = true;
        self
    }

    /// Initial HTTP/2 flow-control window of the connection. Default 2 MiB.
    /// Setting it turns dynamic windows off unless
    /// [`dynamic_window`](Self::dynamic_window) says otherwise.
    pub fn initial_connection_window_size(mut self, size: u32) -> ChannelBuilder {
        self.config.initial_connection_window_size = size;
        self.windows_set = true;
        self
    }

    /// Whether flow-control windows grow with the bandwidth-delay product
    /// measured by pings (gRPC-Go's BDP estimator), up to 16 MiB. Default:
    /// on, unless window sizes were set explicitly.
    pub fn dynamic_window(mut self, on: bool) -> ChannelBuilder {
        self.dynamic_window = Some(on);
        self
    }

    /// Builds the channel. It does not connect until the first call (or
    /// [`Channel::connect`]).
    ///
    /// # Errors
    /// When the target cannot be parsed, TLS settings cannot be loaded, or
    /// per-RPC credentials that require security are set on an insecure
    /// channel without [`allow_insecure_per_rpc_credentials`](Self::allow_insecure_per_rpc_credentials).
    pub fn build(mut self) -> Result<Channel, BuildError> {
        let invalid = |reason: &str| BuildError {
            target: self.target.clone(),
            reason: reason.to_string(),
        };
        let (endpoint, https, default_authority) =
            parse_target(&self.target).map_err(|r| invalid(&r))?;
        let authority_text = self.authority.clone().unwrap_or(default_authority);
        let authority = Authority::from_str(&authority_text)
            .map_err(|e| invalid(&format!("bad authority {authority_text:?}: {e}")))?;
        let credentials = match self.credentials.take() {
            Some(c) => c,
            None if https => {
                ChannelCredentials::tls(crate::credentials::tls::ClientTlsConfig::new())
            }
            None => ChannelCredentials::Insecure,
        };
        let (security, scheme) = match &credentials {
            ChannelCredentials::Insecure => (TransportSecurity::Insecure, Scheme::HTTP),
            ChannelCredentials::Local => (TransportSecurity::Local, Scheme::HTTP),
            ChannelCredentials::Tls(tls) => {
                let config = tls.load().map_err(|e| invalid(&format!("TLS: {e}")))?;
                let name = tls
                    .server_name_override()
                    .map(str::to_string)
                    .unwrap_or_else(|| authority.host().trim_matches(['[', ']']).to_string());
                let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| invalid(&format!("TLS server name {name:?}: {e}")))?;
                (
                    TransportSecurity::Tls {
                        config,
                        server_name,
                    },
                    Scheme::HTTPS,
                )
            }
        };
        if let Some(per_rpc) = &self.per_rpc {
            if per_rpc.require_transport_security()
                && matches!(credentials, ChannelCredentials::Insecure)
                && !self.allow_insecure_per_rpc
            {
                return Err(invalid(
                    "per-RPC credentials require transport security, but the channel is \
                     insecure (use TLS or local credentials, or allow_insecure_per_rpc_credentials)",
                ));
            }
        }
        self.config.security = security;
        self.config.bdp = self.dynamic_window.unwrap_or(!self.windows_set);
        Ok(Channel {
            inner: Arc::new(Inner {
                target: self.target,
                scheme,
                authority,
                subchannel: Subchannel::new(endpoint, self.config),
                max_recv: self.max_recv,
                max_send: self.max_send,
                default_timeout: self.default_timeout,
                compression: self.compression,
                min_compress_size: self.min_compress_size,
                per_rpc: self.per_rpc,
                allow_insecure_per_rpc: self.allow_insecure_per_rpc,
                chain: (!self.chain.unary.is_empty() || !self.chain.stream.is_empty())
                    .then(|| Arc::new(self.chain)),
                stats: (!self.stats.is_empty()).then(|| self.stats.into()),
            }),
        })
    }
}

/// The schemes this build resolves by itself (naming.md).
const SCHEMES: [&str; 6] = [
    "dns",
    "unix",
    "unix-abstract",
    "ipv4",
    "ipv6",
    "passthrough",
];

/// Parses a target per naming.md (see [`crate::resolver::target`]): `dns`
/// (the default, so `host:port` works), `unix`, `unix-abstract`, `ipv4`,
/// `ipv6`, `passthrough`, legacy `http(s)://host:port`, and, as before, an
/// absolute socket path. Returns the endpoint, whether TLS was asked for, and
/// the default authority.
fn parse_target(target: &str) -> Result<(Endpoint, bool, String), String> {
    use crate::resolver::target;
    if target.starts_with('/') {
        return Ok((Endpoint::Unix(target.into()), false, "localhost".into()));
    }
    let parsed = target::parse(target, |s| SCHEMES.contains(&s)).map_err(|e| e.to_string())?;
    let endpoint = parsed.endpoint();
    match parsed.scheme() {
        "unix" | "unix-abstract" => {
            let unix = target::unix_path(&parsed).map_err(|e| e.to_string())?;
            Ok((
                Endpoint::Unix(unix.socket_path()),
                false,
                "localhost".into(),
            ))
        }
        scheme @ ("ipv4" | "ipv6") => {
            let addrs = target::parse_ip_list(scheme, endpoint, target::DEFAULT_PORT)
                .map_err(|e| e.to_string())?;
            let authority = addrs.first().map(ToString::to_string).unwrap_or_default();
            Ok((Endpoint::Addrs(addrs), false, authority))
        }
        _ => {
            // dns and passthrough: resolved when connecting, addresses tried
            // in order. (A dns authority, the name server, is not used yet.)
            let (host, port) = target::split_host_port(endpoint, target::DEFAULT_PORT)
                .map_err(|e| e.to_string())?;
            let hostport = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            Authority::from_str(&hostport)
                .map_err(|e| format!("bad host:port {hostport:?}: {e}"))?;
            Ok((
                Endpoint::Tcp(hostport.clone()),
                parsed.wants_tls(),
                hostport,
            ))
        }
    }
}

impl Channel {
    /// A channel to `target` with default settings; see
    /// [`ChannelBuilder::build`] for the target forms.
    ///
    /// # Errors
    /// When the target cannot be parsed.
    pub fn from_target(target: &str) -> Result<Channel, BuildError> {
        Channel::builder(target).build()
    }

    /// A builder for a channel to `target`.
    pub fn builder(target: impl Into<String>) -> ChannelBuilder {
        crate::logging::init_from_env();
        ChannelBuilder {
            target: target.into(),
            authority: None,
            max_recv: DEFAULT_MAX_RECV_MESSAGE_SIZE,
            max_send: usize::MAX,
            default_timeout: None,
            compression: None,
            min_compress_size: crate::encoding::DEFAULT_MIN_COMPRESS_SIZE,
            credentials: None,
            per_rpc: None,
            allow_insecure_per_rpc: false,
            chain: ClientChain::default(),
            stats: Vec::new(),
            dynamic_window: None,
            windows_set: false,
            config: ClientConfig::default(),
        }
    }

    /// The target this channel was built for.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// Connects now rather than on the first call.
    ///
    /// # Errors
    /// `UNAVAILABLE` when the connection cannot be made.
    pub async fn connect(&self) -> Result<(), Status> {
        self.pick().await.map(drop)
    }

    /// The client keepalive time in use, if keepalive is on. It starts at the
    /// configured time and doubles each time a server answers with GOAWAY
    /// `too_many_pings` (gRFC A8).
    pub fn keepalive_time(&self) -> Option<Duration> {
        self.inner.subchannel.keepalive_time()
    }

    /// Whether a connection is currently up.
    pub fn is_connected(&self) -> bool {
        self.inner.subchannel.is_connected()
    }

    /// Chooses the transport for a call. This is where the balancer's picker
    /// will sit; today it is the one subchannel's connection.
    async fn pick(&self) -> Result<Http2Client, Status> {
        self.inner.subchannel.transport().await
    }
}
