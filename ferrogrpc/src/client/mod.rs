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
//! the same connections. Inside, as in gRPC-Go's `ClientConn`:
//!
//! ```text
//!  target ─▶ resolver ─addresses─▶ balancer ─▶ subchannels (one connection each)
//!                                     │
//!                                     └─picker─▶ each call picks a subchannel
//! ```
//!
//! - The [`resolver`] for the target's scheme (`dns` by
//!   default) finds the addresses and, optionally, a service config.
//! - The [`balancer`](crate::balancer) named by the service config
//!   (`pick_first` by default, or `round_robin`) connects subchannels and
//!   publishes a picker.
//! - Each call asks the current picker for a subchannel: one atomic load and
//!   the picker's own work, no lock and no queue, while the channel is READY.
//!   Calls wait for a picker while the channel connects, and fail fast with
//!   `UNAVAILABLE` in TRANSIENT_FAILURE unless they are wait-for-ready
//!   ([`Request::with_wait_for_ready`](crate::Request::with_wait_for_ready)).
//! - A channel starts IDLE and goes back to IDLE after
//!   [`idle_timeout`](ChannelBuilder::idle_timeout) without calls (30 min by
//!   default): resolver and connections are closed, and the next call brings
//!   them back.
//! - Dropping the last clone closes the channel.

mod attempts;
mod call;
mod control;
pub mod dialer;
#[cfg(feature = "health")]
mod health_check;
mod hedge;
mod hedge_stream;
pub mod proxy;
pub(crate) mod retry;
pub(crate) mod subchannel;

use std::{
    fmt,
    str::FromStr,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use http::uri::{Authority, Scheme};

pub use call::{ClientStreamingCall, RequestSink};
pub use dialer::{BoxedIo, DialedIo, Dialer};
pub use proxy::Proxy;

pub(crate) use control::Shared;

use crate::{
    backoff,
    balancer::{DoneCallback, PickInfo, PickResult},
    connectivity::State,
    credentials::{ChannelCredentials, PerRpcCredentials},
    interceptor::{ClientChain, StreamClientInterceptor, UnaryClientInterceptor},
    resolver::{self, target},
    serviceconfig::ServiceConfig,
    stats,
    status::Status,
    transport::client::{ClientConfig, Http2Client, TransportSecurity},
};

/// The status of a call made with `Request::with_parent` whose parent
/// call is over.
pub(crate) fn parent_over() -> Status {
    Status::cancelled("the server call this call was made for is over")
}

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
    shared: Arc<Shared>,
    scheme: Scheme,
    authority: Authority,
    max_recv: usize,
    max_send: usize,
    default_timeout: Option<Duration>,
    compression: Option<&'static str>,
    min_compress_size: usize,
    per_rpc: Option<Arc<dyn PerRpcCredentials>>,
    allow_insecure_per_rpc: bool,
    chain: Option<Arc<ClientChain>>,
    stats: Option<stats::Handlers>,
    #[cfg(feature = "binarylog")]
    binlog: Option<crate::binarylog::BinaryLog>,
    retry: RetrySettings,
    /// Request bytes kept for retries by all calls.
    retry_buffer: Arc<attempts::RetryBuffer>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("target", &self.inner.shared.target)
            .field("state", &self.state())
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
    #[cfg(feature = "binarylog")]
    binlog: Option<crate::binarylog::BinaryLog>,
    dynamic_window: Option<bool>,
    windows_set: bool,
    config: ClientConfig,
    resolvers: Vec<Arc<dyn resolver::Builder>>,
    backoff: backoff::Config,
    idle_timeout: Option<Duration>,
    default_service_config: Option<Result<ServiceConfig, String>>,
    disable_service_config: bool,
    retry: RetrySettings,
    proxy: proxy::Setting,
    local_dns_resolution: bool,
    user_agent: Option<String>,
}

/// A channel's limits on retries (gRFC A6), fixed when it is built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetrySettings {
    /// Retry policies are ignored (transparent retry still happens).
    pub(crate) disabled: bool,
    /// The cap on `maxAttempts`.
    pub(crate) max_attempts: u32,
    /// The most request bytes one call keeps for retries.
    pub(crate) per_rpc_buffer: usize,
    /// The most request bytes all calls keep for retries together.
    pub(crate) channel_buffer: usize,
}

/// The default of [`ChannelBuilder::retry_buffer_size`] (gRPC-Go's).
pub const DEFAULT_RETRY_BUFFER_SIZE: usize = 16 << 20;
/// The default of [`ChannelBuilder::per_rpc_retry_buffer_size`] (gRPC-Go's).
pub const DEFAULT_PER_RPC_RETRY_BUFFER_SIZE: usize = 256 << 10;

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

    /// Adds a closure over each call's request metadata as an interceptor
    /// for unary and streaming calls alike (see
    /// [`FnInterceptor`](crate::interceptor::FnInterceptor)), e.g. to add a
    /// token: an error stops the call before anything is sent.
    pub fn interceptor_fn<F>(mut self, f: F) -> ChannelBuilder
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

    /// Adds a stream interceptor, run in the order added before each
    /// streaming call starts.
    pub fn stream_interceptor(
        mut self,
        interceptor: impl StreamClientInterceptor,
    ) -> ChannelBuilder {
        self.chain.stream.push(Arc::new(interceptor));
        self
    }

    /// Logs the calls `log`'s filter chooses (gRFC A16; see
    /// [`binarylog`](crate::binarylog)). Without it, the channel uses the
    /// log `GRPC_BINARY_LOG_FILTER` asks for, if any
    /// ([`binarylog::from_env`](crate::binarylog::from_env)).
    #[cfg(feature = "binarylog")]
    pub fn binary_log(mut self, log: crate::binarylog::BinaryLog) -> ChannelBuilder {
        self.binlog = Some(log);
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

    /// The least time one connection attempt may take (gRPC-Go's
    /// `MinConnectTimeout`); an attempt gets longer when the backoff gap is
    /// longer. Default 20 s. Same as setting
    /// [`backoff::Config::min_connect_timeout`] in
    /// [`connect_backoff`](Self::connect_backoff).
    pub fn connect_timeout(mut self, timeout: Duration) -> ChannelBuilder {
        self.backoff.min_connect_timeout = timeout;
        self
    }

    /// How reconnection attempts back off (gRPC-Go's `ConnectParams`).
    /// Default: [`backoff::Config::default`], the parameters of
    /// connection-backoff.md (1 s, ×1.6, jitter 0.2, 120 s max, 20 s minimum
    /// connect timeout).
    pub fn connect_backoff(mut self, config: backoff::Config) -> ChannelBuilder {
        self.backoff = config;
        self
    }

    /// How long a channel without calls stays connected before it goes IDLE,
    /// closing its resolver and connections (gRPC-Go's `WithIdleTimeout`).
    /// The next call wakes it. Default 30 minutes; `Duration::ZERO` turns
    /// idleness off. The channel goes idle within a quarter of this after the
    /// timeout, and never while a call or stream is open.
    pub fn idle_timeout(mut self, timeout: Duration) -> ChannelBuilder {
        self.idle_timeout = (!timeout.is_zero()).then_some(timeout);
        self
    }

    /// A resolver for this channel only, used for targets of its scheme in
    /// preference to the process-wide registry (gRPC-Go's `WithResolvers`).
    pub fn resolver(mut self, builder: impl resolver::Builder) -> ChannelBuilder {
        self.resolvers.push(Arc::new(builder));
        self
    }

    /// The service config used when the resolver provides none (or when
    /// lookups are disabled), as JSON (gRPC-Go's
    /// `WithDefaultServiceConfig`). It chooses the load-balancing policy:
    /// `{"loadBalancingConfig": [{"round_robin": {}}]}`.
    pub fn default_service_config(mut self, json: &str) -> ChannelBuilder {
        self.default_service_config = Some(ServiceConfig::parse(json).map_err(|e| e.to_string()));
        self
    }

    /// Turns off retries and hedging by service-config policies (gRPC-Go's
    /// `WithDisableRetry`): `retryPolicy` and `hedgingPolicy` are then
    /// ignored on every call. A
    /// call that never reached the server's application is still retried
    /// once, transparently (gRFC A6). A single call can opt out instead with
    /// [`Request::with_retry`](crate::Request::with_retry).
    pub fn disable_retry(mut self) -> ChannelBuilder {
        self.retry.disabled = true;
        self
    }

    /// The most attempts a retry policy may make, whatever its
    /// `maxAttempts` says. Default 5, as in gRPC-Go; at least 1 (1 turns
    /// retries off).
    pub fn max_retry_attempts(mut self, attempts: u32) -> ChannelBuilder {
        self.retry.max_attempts = attempts.max(1);
        self
    }

    /// The most request bytes all calls of the channel keep together so
    /// that they can be retried (gRFC A6 `retry_buffer_size_in_bytes`).
    /// A call that finds the buffer full is not retried. Default 16 MiB.
    pub fn retry_buffer_size(mut self, bytes: usize) -> ChannelBuilder {
        self.retry.channel_buffer = bytes;
        self
    }

    /// The most request bytes one call keeps so that it can be retried
    /// (gRFC A6 `per_rpc_buffer_limit_in_bytes`); a streaming call that
    /// sends more commits and is not retried after that. Also bounds what a
    /// transparent retry replays. Default 256 KiB.
    pub fn per_rpc_retry_buffer_size(mut self, bytes: usize) -> ChannelBuilder {
        self.retry.per_rpc_buffer = bytes;
        self
    }

    /// Ignores service configs from the resolver; only the
    /// [default](Self::default_service_config) applies (gRPC-Go's
    /// `WithDisableServiceConfig`). The `dns` resolver then skips its TXT
    /// lookup.
    pub fn disable_service_config(mut self) -> ChannelBuilder {
        self.disable_service_config = true;
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

    /// Opens each connection's byte stream with `dialer` instead of a TCP
    /// or Unix socket (gRPC-Go's `WithContextDialer`; see [`dialer`]): an
    /// in-memory pipe ([`bufconn`](crate::bufconn)), a socket with options
    /// of your own, a tunnel. TLS (if the channel has TLS credentials) and
    /// HTTP/2 run over the stream it returns, within the connect timeout.
    ///
    /// The dialer gets the addresses the target resolves to; write the
    /// target `passthrough:///name` to hand it `name` unresolved. A channel
    /// with a dialer ignores proxies in the environment (as gRPC-Go); a
    /// proxy set with [`proxy`](Self::proxy) is dialled with it.
    ///
    /// # Errors
    ///
    /// What the dialer returns fails that connection attempt; calls that
    /// fail for it get `UNAVAILABLE` with the address and the error's text.
    pub fn dialer(mut self, dialer: impl Dialer) -> ChannelBuilder {
        self.config.dialer = Some(dialer::DialerHandle::new(dialer));
        self
    }

    /// Reaches the servers through this HTTP CONNECT proxy (gRFC A1), rather
    /// than the one the environment names, if any (see [`proxy`] for what
    /// changes: in short, a `dns` target is resolved by the proxy, not the
    /// client). Targets the proxy's [bypass list](Proxy::bypass) matches,
    /// and Unix socket targets, connect directly.
    pub fn proxy(mut self, proxy: Proxy) -> ChannelBuilder {
        self.proxy = proxy::Setting::Given(proxy);
        self
    }

    /// Uses no proxy, whatever the environment says (gRPC-Go's
    /// `WithNoProxy`). By default a channel uses the proxy named by
    /// `grpc_proxy` / `HTTPS_PROXY` / `https_proxy` unless `NO_PROXY` (or
    /// `no_grpc_proxy`, `no_proxy`) exempts its target ([`Proxy::from_env`]),
    /// or it has a custom [`dialer`](Self::dialer).
    pub fn no_proxy(mut self) -> ChannelBuilder {
        self.proxy = proxy::Setting::Disabled;
        self
    }

    /// With a proxy, resolves a `dns` target on the client anyway and sends
    /// `CONNECT ip:port` for each address (gRPC-Go's
    /// `WithLocalDNSResolution`; gRFC A1 case 2), so that the addresses can
    /// be balanced over and DNS service configs apply. Without a proxy it
    /// changes nothing.
    pub fn local_dns_resolution(mut self) -> ChannelBuilder {
        self.local_dns_resolution = true;
        self
    }

    /// Puts `prefix` before ferrogrpc's own name in the `user-agent` header
    /// of every call (gRPC-Go's `WithUserAgent`): calls send
    /// `"<prefix> ferrogrpc/<version>"` instead of `"ferrogrpc/<version>"`.
    /// Setting it again replaces the prefix; an empty prefix means none.
    ///
    /// A call whose own metadata has a `user-agent` sends that value first,
    /// then this one (`"<call's> <prefix> ferrogrpc/<version>"`). The
    /// `User-Agent` of the `CONNECT` request to an HTTP proxy is
    /// `"<prefix> ferrogrpc/<version>"` too, as gRPC-Go sends it.
    ///
    /// # Errors
    /// [`build`](Self::build) fails when the prefix is not a valid header
    /// value (control characters such as a line break).
    pub fn user_agent(mut self, prefix: impl Into<String>) -> ChannelBuilder {
        self.user_agent = Some(prefix.into()).filter(|p| !p.is_empty());
        self
    }

    /// Builds the channel. It does not connect until the first call (or
    /// [`Channel::connect`]).
    ///
    /// # Errors
    /// When the target cannot be parsed, TLS settings cannot be loaded,
    /// per-RPC credentials that require security are set on an insecure
    /// channel without [`allow_insecure_per_rpc_credentials`](Self::allow_insecure_per_rpc_credentials),
    /// or the [`user_agent`](Self::user_agent) prefix is not a valid header value.
    pub fn build(mut self) -> Result<Channel, BuildError> {
        let invalid = |reason: &str| BuildError {
            target: self.target.clone(),
            reason: reason.to_string(),
        };
        if let Some(prefix) = &self.user_agent {
            // Composed once here, so calls only clone it (gRPC-Go puts
            // the prefix first, then a space, then its own name).
            let text = format!("{prefix} {}", crate::transport::client::USER_AGENT);
            self.config.user_agent = http::HeaderValue::try_from(text).map_err(|_| {
                invalid(&format!(
                    "user agent prefix {prefix:?} is not a valid header value"
                ))
            })?;
        }
        let (target, mut resolver, https, default_authority) =
            parse_target(&self.target, &self.resolvers).map_err(|r| invalid(&r))?;
        // Connections only: nothing of this is looked at per call.
        let proxy = self.proxy.choose(&target, self.config.dialer.is_some());
        if let Some(proxy) = &proxy {
            tracing::debug!(target = %self.target, proxy = %proxy.address(), "using an HTTP CONNECT proxy");
            if target.scheme() == "dns" && !self.local_dns_resolution {
                // The proxy resolves the name (gRFC A1), not the client.
                resolver = Arc::new(proxy::Unresolved);
            }
        }
        self.config.proxy = proxy.map(|p| Arc::new(p.dial()));
        let default_service_config = match self.default_service_config.take() {
            Some(Ok(config)) => Some(config),
            Some(Err(e)) => return Err(invalid(&format!("default service config: {e}"))),
            None => None,
        };
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
        let call_target = (scheme.clone(), authority.clone());
        let shared = Shared::new(
            self.target,
            control::Settings {
                target,
                resolver,
                config: self.config,
                backoff: self.backoff,
                idle_timeout: self.idle_timeout,
                default_service_config,
                disable_service_config: self.disable_service_config,
            },
        );
        let _ = shared.call_target.set(call_target);
        Ok(Channel {
            inner: Arc::new(Inner {
                shared,
                scheme,
                authority,
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
                #[cfg(feature = "binarylog")]
                binlog: self.binlog.or_else(crate::binarylog::from_env),
                retry: self.retry,
                retry_buffer: attempts::RetryBuffer::new(self.retry.channel_buffer),
            }),
        })
    }
}

/// Parses a target per naming.md (see [`crate::resolver::target`]) with the
/// channel's own resolvers and the registered ones: `dns` (the default, so
/// `host:port` works), `unix`, `unix-abstract`, `ipv4`, `ipv6`,
/// `passthrough`, legacy `http(s)://host:port`, an absolute socket path, or
/// any registered scheme. Returns the target, its resolver, whether TLS was
/// asked for, and the default authority.
#[allow(clippy::type_complexity)]
fn parse_target(
    text: &str,
    local: &[Arc<dyn resolver::Builder>],
) -> Result<(target::Target, Arc<dyn resolver::Builder>, bool, String), String> {
    let find = |scheme: &str| {
        local
            .iter()
            .rev()
            .find(|b| b.scheme().eq_ignore_ascii_case(scheme))
            .cloned()
            .or_else(|| resolver::get(scheme))
    };
    let parsed = if text.starts_with('/') {
        target::parse(&format!("unix://{text}"), |s| s == "unix")
    } else {
        target::parse(text, |s| find(s).is_some())
    }
    .map_err(|e| match unregistered_scheme(text) {
        // `example:///name` with no `example` resolver fell back to dns and
        // failed there: say what was probably meant.
        Some(scheme) => format!(
            "{e} (read as a dns name because no resolver is registered for \
             scheme {scheme:?}; register one with resolver::register or \
             ChannelBuilder::resolver)"
        ),
        None => e.to_string(),
    })?;
    let builder = find(parsed.scheme())
        .ok_or_else(|| format!("no resolver is registered for scheme {:?}", parsed.scheme()))?;
    builder.check_target(&parsed)?;
    let endpoint = parsed.endpoint();
    let authority = match parsed.scheme() {
        "unix" | "unix-abstract" => "localhost".to_string(),
        scheme @ ("ipv4" | "ipv6") => {
            let addrs = target::parse_ip_list(scheme, endpoint, target::DEFAULT_PORT)
                .map_err(|e| e.to_string())?;
            addrs.first().map(ToString::to_string).unwrap_or_default()
        }
        "dns" | "passthrough" => {
            let (host, port) = target::split_host_port(endpoint, target::DEFAULT_PORT)
                .map_err(|e| e.to_string())?;
            let hostport = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            Authority::from_str(&hostport)
                .map_err(|e| format!("bad host:port {hostport:?}: {e}"))?;
            hostport
        }
        // Another scheme: the endpoint, if it can be an authority.
        _ => match Authority::from_str(endpoint) {
            Ok(_) if !endpoint.is_empty() => endpoint.to_string(),
            _ => "localhost".to_string(),
        },
    };
    let https = parsed.wants_tls();
    Ok((parsed, builder, https, authority))
}

/// The scheme of a target written `scheme://…` whose scheme has no
/// resolver (so it was read as a dns name).
fn unregistered_scheme(text: &str) -> Option<&str> {
    let (scheme, rest) = text.split_once(':')?;
    let valid = scheme.chars().next()?.is_ascii_alphabetic()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (valid && rest.starts_with("//") && resolver::get(scheme).is_none()).then_some(scheme)
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
            #[cfg(feature = "binarylog")]
            binlog: None,
            dynamic_window: None,
            windows_set: false,
            config: ClientConfig::default(),
            resolvers: Vec::new(),
            backoff: backoff::Config::default(),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            default_service_config: None,
            disable_service_config: false,
            retry: RetrySettings {
                disabled: false,
                max_attempts: crate::serviceconfig::MAX_ATTEMPTS_LIMIT,
                per_rpc_buffer: DEFAULT_PER_RPC_RETRY_BUFFER_SIZE,
                channel_buffer: DEFAULT_RETRY_BUFFER_SIZE,
            },
            proxy: proxy::Setting::default(),
            local_dns_resolution: false,
            user_agent: None,
        }
    }

    /// The target this channel was built for.
    pub fn target(&self) -> &str {
        &self.inner.shared.target
    }

    /// The channel's connectivity state (gRPC-Go's `GetState`). A new channel
    /// is IDLE until its first call or [`connect`](Self::connect).
    pub fn state(&self) -> State {
        self.inner.shared.state.state()
    }

    /// Waits until the state is no longer `from`, and returns the new state
    /// (gRPC-Go's `WaitForStateChange`; bound it with a timeout). Returns at
    /// once if the state already differs.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn wait_for_state_change(&self, from: State) -> State {
        self.inner.shared.state.wait_for_state_change(from).await
    }

    /// Leaves IDLE and waits until the channel is READY.
    ///
    /// # Errors
    /// `UNAVAILABLE` with the connection or resolver error when the channel
    /// reaches TRANSIENT_FAILURE instead (it keeps trying in the background),
    /// or `CANCELLED` if it is closed.
    pub async fn connect(&self) -> Result<(), Status> {
        let shared = &self.inner.shared;
        shared.exit_idle();
        let mut state = shared.state.state();
        let mut waited = false;
        loop {
            match state {
                State::Ready => return Ok(()),
                State::TransientFailure | State::Shutdown => {
                    return Err(shared
                        .current_error()
                        .unwrap_or_else(|| Status::unavailable("the channel failed to connect")))
                }
                State::Idle if waited => shared.exit_idle(),
                _ => {}
            }
            state = shared.state.wait_for_state_change(state).await;
            waited = true;
        }
    }

    /// Closes the channel for every clone (gRPC-Go's `ClientConn.Close`):
    /// the resolver, balancer and connections shut down, calls already under
    /// way finish on their connections, and new calls fail with `CANCELLED`.
    /// The state becomes SHUTDOWN for good. Dropping the last clone does the
    /// same. Idempotent.
    pub fn close(&self) {
        self.inner.shared.shutdown();
    }

    /// Makes every subchannel waiting out a reconnection backoff try again
    /// now (gRPC-Go's `ResetConnectBackoff`).
    pub fn reset_connect_backoff(&self) {
        self.inner.shared.reset_backoff();
    }

    /// The client keepalive time in use, if keepalive is on. It starts at the
    /// configured time and doubles each time a server answers with GOAWAY
    /// `too_many_pings` (gRFC A8).
    pub fn keepalive_time(&self) -> Option<Duration> {
        self.inner.shared.keepalive_time()
    }

    /// Whether the channel is READY (has a connection that takes calls).
    pub fn is_connected(&self) -> bool {
        self.state() == State::Ready
    }

    /// Chooses the connection for a call: asks the current picker, and
    /// waits for the next picker when told to queue (or when failing fast
    /// does not apply because the call is wait-for-ready).
    /// Waits (at most `timeout`) until the resolver has reported once, so
    /// that the first calls of a channel read the service config it
    /// brings. One atomic load once it has.
    pub(super) async fn resolved(&self, timeout: Option<Duration>) {
        let shared = &self.inner.shared;
        if shared.resolved.load(Ordering::Acquire) {
            return;
        }
        let mut versions = shared.version.subscribe();
        let wait = async {
            while !shared.resolved.load(Ordering::Acquire) {
                if shared.picker.load().idle {
                    shared.exit_idle();
                }
                if versions.changed().await.is_err() {
                    return;
                }
            }
        };
        match timeout {
            Some(t) => {
                let _ = tokio::time::timeout(t, wait).await;
            }
            None => wait.await,
        }
    }

    /// Picks the connection for one call attempt, asking the picker with
    /// the call's method and metadata (borrowed, not copied). Returns the
    /// connection and the pick's done callback, if the picker set one.
    async fn pick(
        &self,
        method: &str,
        metadata: &crate::metadata::MetadataMap,
        wait_for_ready: bool,
    ) -> Result<(Http2Client, Option<DoneCallback>), Status> {
        let shared = &self.inner.shared;
        shared.note_activity();
        let info = PickInfo::new(method, metadata);
        // The fast path: one atomic load, no subscription.
        if let Some(result) = Self::try_pick(shared, &info, wait_for_ready) {
            return result;
        }
        let _waiting = shared.waiting_call();
        let mut versions = shared.version.subscribe();
        loop {
            versions.borrow_and_update();
            if shared.picker.load().idle {
                shared.exit_idle();
            }
            if let Some(result) = Self::try_pick(shared, &info, wait_for_ready) {
                return result;
            }
            if versions.changed().await.is_err() {
                return Err(Status::cancelled("the channel is closed"));
            }
        }
    }

    /// One pick: `Some` when the call can go (or must fail) now, `None` when
    /// it waits for the next picker.
    fn try_pick(
        shared: &Shared,
        info: &PickInfo<'_>,
        wait_for_ready: bool,
    ) -> Option<Result<(Http2Client, Option<DoneCallback>), Status>> {
        match shared.picker.load().picker.pick(info) {
            PickResult::Complete(pick) => match pick.subconn.inner.ready_transport() {
                Some(transport) => Some(Ok((transport, pick.done))),
                None => {
                    if let Some(done) = pick.done {
                        let status = Status::unavailable("the picked subchannel is not READY");
                        crate::balancer::DoneGuard::new(done, None).finish(Some(&status), None);
                    }
                    None
                }
            },
            PickResult::Fail(status) if !wait_for_ready => {
                shared.pick_failed(&status);
                Some(Err(status))
            }
            PickResult::Drop(status) => {
                shared.pick_failed(&status);
                Some(Err(status))
            }
            PickResult::Fail(_) | PickResult::Queue => None,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

/// How long a channel without calls stays connected by default: 30 minutes,
/// as gRPC-Go.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
