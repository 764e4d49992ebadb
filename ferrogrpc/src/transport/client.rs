//! The client side of the transport: connecting (TCP or Unix socket, a
//! custom dialer, or through an HTTP CONNECT proxy), the HTTP/2 handshake,
//! the connection's driver task, and opening streams.

use std::{
    future::poll_fn,
    future::Future,
    path::PathBuf,
    sync::Arc,
    task::{ready, Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{
    uri::{Authority, PathAndQuery, Scheme},
    HeaderMap, HeaderValue, StatusCode,
};

use super::{
    http_util,
    inspect::{ConnSignals, GoAway, Inspect, StreamGuard},
    server::{grown_windows, PingEvent, Pinger},
    ClientSend, RecvMessages, Role,
};
use crate::{
    balancer::DoneGuard,
    client::{
        dialer::{DialedIo as Io, DialerHandle},
        proxy::{self, ProxyDial},
    },
    codes::Code,
    credentials::{self, SecurityLevel},
    keepalive::ClientParameters,
    metadata::MetadataMap,
    peer::{Addr, Peer},
    resolver::Address,
    status::Status,
};

/// The `user-agent` ferrogrpc sends.
pub(crate) const USER_AGENT: &str = concat!("ferrogrpc/", env!("CARGO_PKG_VERSION"));

/// Where a connection goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `host:port`, resolved at connect time.
    Tcp(String),
    /// Addresses given literally (`ipv4:`/`ipv6:` targets), tried in order.
    Addrs(Vec<std::net::SocketAddr>),
    /// A Unix domain socket path.
    Unix(PathBuf),
    /// Opened by the channel's custom dialer.
    Dialer(Address),
    /// Through the channel's HTTP CONNECT proxy, to `host:port`.
    Proxied(String),
}

impl Endpoint {
    /// Where a connection to `address` goes with these settings: through
    /// the proxy (TCP addresses only), the custom dialer, or a socket.
    pub(crate) fn new(address: &Address, config: &ClientConfig) -> Endpoint {
        if config.proxy.is_some() {
            if let Some(target) = proxy::connect_authority(address) {
                return Endpoint::Proxied(target);
            }
        }
        if config.dialer.is_some() {
            return Endpoint::Dialer(address.clone());
        }
        match address {
            Address::Tcp(addr) => Endpoint::Addrs(vec![*addr]),
            Address::HostPort(hostport) => Endpoint::Tcp(hostport.clone()),
            Address::Unix(path) => Endpoint::Unix(path.clone()),
        }
    }
}

/// How a client secures its connections.
#[derive(Clone, Debug, Default)]
pub(crate) enum TransportSecurity {
    #[default]
    Insecure,
    /// Plaintext to local addresses only.
    Local,
    Tls {
        config: Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
    },
}

/// What a connection's driver tells its owner.
#[derive(Debug)]
pub(crate) enum ConnEvent {
    /// The server sent GOAWAY: new calls must go to another connection.
    GoAway(GoAway),
    /// The connection ended, for this reason.
    Closed(String),
}

/// HTTP/2 settings of a client's connections.
#[derive(Clone, Debug)]
pub(crate) struct ClientConfig {
    pub(crate) security: TransportSecurity,
    pub(crate) keepalive: ClientParameters,
    pub(crate) connect_timeout: Duration,
    pub(crate) initial_stream_window_size: u32,
    pub(crate) initial_connection_window_size: u32,
    pub(crate) max_frame_size: u32,
    pub(crate) max_header_list_size: u32,
    /// Whether flow-control windows grow with the measured BDP.
    pub(crate) bdp: bool,
    /// The custom dialer, if any (`ChannelBuilder::dialer`).
    pub(crate) dialer: Option<DialerHandle>,
    /// The HTTP CONNECT proxy TCP addresses are reached through, if any.
    pub(crate) proxy: Option<Arc<ProxyDial>>,
    /// The `user-agent` of every request: [`USER_AGENT`], after the
    /// channel's prefix if it has one (`ChannelBuilder::user_agent`).
    pub(crate) user_agent: HeaderValue,
    /// The subchannel whose connections these are, which channelz lists
    /// them under (none for connections no subchannel makes).
    #[cfg(feature = "channelz")]
    pub(crate) channelz: Option<Arc<crate::channelz::ChannelEntry>>,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            security: TransportSecurity::Insecure,
            keepalive: ClientParameters::default(),
            connect_timeout: Duration::from_secs(20),
            initial_stream_window_size: 1 << 20,
            initial_connection_window_size: 2 << 20,
            max_frame_size: 16 << 10,
            max_header_list_size: 16 << 20,
            bdp: true,
            dialer: None,
            proxy: None,
            user_agent: HeaderValue::from_static(USER_AGENT),
            #[cfg(feature = "channelz")]
            channelz: None,
        }
    }
}

/// How the statuses of failed dials start: nothing reached a server.
const DIAL_FAILED: &str = "failed to connect to ";
const RESOLVE_FAILED: &str = "failed to resolve ";

/// Whether a failed connection attempt got as far as a server (a TLS or
/// HTTP/2 failure, a timeout waiting for its SETTINGS) rather than failing
/// to reach one: the former says more about what is wrong.
pub(crate) fn reached_server(status: &Status) -> bool {
    let message = status.message();
    !message.starts_with(DIAL_FAILED) && !message.starts_with(RESOLVE_FAILED)
}

/// Opens the byte stream of a connection to `endpoint`.
async fn dial(
    endpoint: &Endpoint,
    config: &ClientConfig,
    deadline: tokio::time::Instant,
) -> Result<(Box<dyn Io>, Peer), Status> {
    match endpoint {
        Endpoint::Dialer(address) => {
            let dialer = config
                .dialer
                .as_ref()
                .expect("a Dialer endpoint has a dialer");
            dial_custom(dialer, address).await
        }
        Endpoint::Proxied(target) => {
            let proxy = config
                .proxy
                .as_ref()
                .expect("a Proxied endpoint has a proxy");
            dial_proxied(proxy, target, config, deadline).await
        }
        _ => dial_socket(endpoint).await,
    }
}

/// Dials `address` with the channel's custom dialer.
async fn dial_custom(
    dialer: &DialerHandle,
    address: &Address,
) -> Result<(Box<dyn Io>, Peer), Status> {
    let io =
        dialer.0.dial_boxed(address).await.map_err(|e| {
            Status::unavailable(format!("{DIAL_FAILED}{address} (custom dialer): {e}"))
        })?;
    let remote = match address {
        Address::Tcp(addr) => Addr::Tcp(*addr),
        Address::Unix(path) => Addr::Unix(Some(path.clone())),
        _ => Addr::Unknown,
    };
    Ok((io, Peer::new(remote, Addr::Unknown)))
}

/// Dials the proxy (with the custom dialer, if there is one) and asks it
/// for a tunnel to `target`. The peer is the proxy.
async fn dial_proxied(
    proxy: &ProxyDial,
    target: &str,
    config: &ClientConfig,
    deadline: tokio::time::Instant,
) -> Result<(Box<dyn Io>, Peer), Status> {
    let dialled = match &config.dialer {
        Some(dialer) => dial_custom(dialer, &Address::HostPort(proxy.address.clone())).await,
        None => dial_socket(&Endpoint::Tcp(proxy.address.clone())).await,
    };
    let (io, peer) = dialled.map_err(|status| {
        Status::unavailable(format!(
            "{} (the HTTP CONNECT proxy for {target})",
            status.message()
        ))
    })?;
    // The proxy as configured, and the address it resolved to if that says more.
    let remote = peer.remote_addr.to_string();
    let named = if remote == proxy.address || matches!(peer.remote_addr, Addr::Unknown) {
        format!("HTTP CONNECT proxy {}", proxy.address)
    } else {
        format!("HTTP CONNECT proxy {} ({remote})", proxy.address)
    };
    let handshake = proxy::handshake(
        io,
        target,
        proxy.authorization.as_deref(),
        config.user_agent.as_bytes(),
    );
    match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(tunnel)) => Ok((tunnel, peer)),
        Ok(Err(reason)) => Err(Status::unavailable(format!("{named}: {reason}"))),
        Err(_) => Err(Status::unavailable(format!(
            "{named} did not answer CONNECT {target} within the connect timeout ({:?})",
            config.connect_timeout
        ))),
    }
}

/// Dials a TCP or Unix socket.
async fn dial_socket(endpoint: &Endpoint) -> Result<(Box<dyn Io>, Peer), Status> {
    match endpoint {
        Endpoint::Tcp(_) | Endpoint::Addrs(_) => {
            let (hostport, addrs): (String, Vec<std::net::SocketAddr>) = match endpoint {
                Endpoint::Tcp(hostport) => (
                    hostport.clone(),
                    tokio::net::lookup_host(hostport.as_str())
                        .await
                        .map_err(|e| {
                            Status::unavailable(format!("{RESOLVE_FAILED}{hostport}: {e}"))
                        })?
                        .collect(),
                ),
                Endpoint::Addrs(addrs) => (
                    addrs
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    addrs.clone(),
                ),
                _ => unreachable!("matched above"),
            };
            let mut last_err = None;
            for addr in addrs {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(tcp) => {
                        let _ = tcp.set_nodelay(true);
                        let local = tcp.local_addr().map_or(Addr::Unknown, Addr::Tcp);
                        return Ok((Box::new(tcp), Peer::new(Addr::Tcp(addr), local)));
                    }
                    Err(e) => last_err = Some(e.to_string()),
                }
            }
            Err(Status::unavailable(match last_err {
                Some(e) => format!("{DIAL_FAILED}{hostport}: {e}"),
                None => format!("{RESOLVE_FAILED}{hostport}: no addresses"),
            }))
        }
        #[cfg(unix)]
        Endpoint::Unix(path) => {
            let sock = tokio::net::UnixStream::connect(path).await.map_err(|e| {
                Status::unavailable(format!("{DIAL_FAILED}unix:{}: {e}", path.display()))
            })?;
            Ok((
                Box::new(sock),
                Peer::new(Addr::Unix(Some(path.clone())), Addr::Unix(None)),
            ))
        }
        #[cfg(not(unix))]
        Endpoint::Unix(path) => Err(Status::unavailable(format!(
            "unix sockets are not supported on this platform: {}",
            path.display()
        ))),
        Endpoint::Dialer(_) | Endpoint::Proxied(_) => {
            unreachable!("dial_socket is not given a dialer or proxy endpoint")
        }
    }
}

/// Secures a dialled connection as the credentials say.
async fn secure(
    io: Box<dyn Io>,
    peer: &mut Peer,
    security: &TransportSecurity,
    what: &str,
) -> Result<(Box<dyn Io>, SecurityLevel), Status> {
    match security {
        TransportSecurity::Insecure => Ok((io, SecurityLevel::NoSecurity)),
        TransportSecurity::Local => match credentials::is_loopback(&peer.remote_addr) {
            Some(level) => {
                peer.auth_info = Some(credentials::AuthInfo::Local {
                    security_level: level,
                });
                Ok((io, level))
            }
            None => Err(Status::unavailable(format!(
                "local credentials: {} is not a local address",
                peer.remote_addr
            ))),
        },
        TransportSecurity::Tls {
            config,
            server_name,
        } => {
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(server_name.clone(), io)
                .await
                .map_err(|e| {
                    Status::unavailable(format!(
                        "TLS handshake with {what} failed: {}",
                        credentials::tls::describe_handshake_error(&e)
                    ))
                })?;
            if tls.get_ref().1.alpn_protocol() != Some(credentials::tls::ALPN_H2) {
                return Err(Status::unavailable(format!(
                    "TLS handshake with {what} succeeded, but the server did not negotiate \
                     ALPN h2: it does not speak HTTP/2 over TLS"
                )));
            }
            let info = credentials::tls::TlsInfo::from_client(tls.get_ref().1);
            peer.auth_info = Some(credentials::AuthInfo::Tls(info));
            Ok((Box::new(tls), SecurityLevel::PrivacyAndIntegrity))
        }
    }
}

/// Waits until the server's first SETTINGS frame arrived, the connection
/// ended, or `deadline` passed.
async fn wait_for_settings(
    signals: &ConnSignals,
    deadline: tokio::time::Instant,
    what: &str,
    connect_timeout: Duration,
) -> Result<(), Status> {
    let wait = async {
        loop {
            let notified = signals.handshake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if signals
                .settings_received
                .load(std::sync::atomic::Ordering::Acquire)
            {
                return Ok(());
            }
            if signals.not_http2.load(std::sync::atomic::Ordering::Acquire) {
                return Err(signals.not_http2_status(&format!("server at {what}")));
            }
            if let Some(reason) = signals.ended.get() {
                return Err(Status::unavailable(format!(
                    "connection to {what} ended before the server's HTTP/2 SETTINGS arrived: {reason}"
                )));
            }
            notified.await;
        }
    };
    tokio::time::timeout_at(deadline, wait)
        .await
        .unwrap_or_else(|_| {
            Err(Status::unavailable(format!(
                "connecting to {what} timed out after {connect_timeout:?}: no HTTP/2 SETTINGS from the server"
            )))
        })
}

/// One HTTP/2 connection to a server. Cloning shares the connection.
#[derive(Clone)]
pub(crate) struct Http2Client {
    send_request: h2::client::SendRequest<Bytes>,
    security_level: SecurityLevel,
    peer: Arc<Peer>,
    signals: Arc<ConnSignals>,
    /// The `user-agent` header of every call (`ClientConfig::user_agent`).
    user_agent: HeaderValue,
}

impl Http2Client {
    /// Connects and runs the HTTP/2 handshake. The connection is driven by a
    /// spawned task, which also sends keepalive pings; `on_event` hears when
    /// the server sends GOAWAY and when the connection ends.
    pub(crate) async fn connect(
        endpoint: &Endpoint,
        config: &ClientConfig,
        on_event: impl Fn(ConnEvent) + Send + Sync + 'static,
    ) -> Result<Http2Client, Status> {
        // The caller's task may not be one of ours: the handshake's events
        // reach the stderr logger too.
        crate::logging::fallback(Http2Client::connect_logged(endpoint, config, on_event)).await
    }

    async fn connect_logged(
        endpoint: &Endpoint,
        config: &ClientConfig,
        on_event: impl Fn(ConnEvent) + Send + Sync + 'static,
    ) -> Result<Http2Client, Status> {
        let what = match endpoint {
            Endpoint::Tcp(hostport) => hostport.clone(),
            Endpoint::Addrs(addrs) => addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            Endpoint::Unix(path) => format!("unix:{}", path.display()),
            Endpoint::Dialer(address) => address.to_string(),
            Endpoint::Proxied(target) => match &config.proxy {
                Some(proxy) => format!("{target} via HTTP CONNECT proxy {}", proxy.address),
                None => target.clone(),
            },
        };
        let signals = ConnSignals::client();
        let deadline = tokio::time::Instant::now() + config.connect_timeout;
        let connect = async {
            let (io, mut peer) = dial(endpoint, config, deadline).await?;
            let (io, security_level) = secure(io, &mut peer, &config.security, &what).await?;
            let io = Inspect::new(io, false, Arc::clone(&signals));
            let (send_request, connection) = h2::client::Builder::new()
                .initial_window_size(config.initial_stream_window_size)
                .initial_connection_window_size(config.initial_connection_window_size)
                .max_frame_size(config.max_frame_size)
                .max_header_list_size(config.max_header_list_size)
                .data_frame_budget(super::data_frame_budget(
                    config.initial_connection_window_size,
                ))
                .enable_push(false)
                .handshake::<_, Bytes>(io)
                .await
                .map_err(|e| {
                    Status::unavailable(format!("HTTP/2 handshake with {what} failed: {e}"))
                })?;
            Ok::<_, Status>((send_request, connection, security_level, peer))
        };
        let (send_request, mut connection, security_level, peer) =
            match tokio::time::timeout_at(deadline, connect).await {
                Ok(Ok(parts)) => parts,
                Ok(Err(status)) => {
                    tracing::debug!(%what, "connect failed: {}", status.message());
                    return Err(status);
                }
                Err(_) => {
                    return Err(Status::unavailable(format!(
                        "connecting to {what} timed out after {:?}",
                        config.connect_timeout
                    )))
                }
            };
        tracing::debug!(%what, "connected");
        // Listed by channelz under its subchannel until the driver below
        // ends, that is until the connection does.
        #[cfg(feature = "channelz")]
        let channelz_socket = config.channelz.as_ref().map(|subchannel| {
            let tls = match &peer.auth_info {
                Some(credentials::AuthInfo::Tls(info)) => Some(crate::channelz::tls_data(info)),
                _ => None,
            };
            let socket = crate::channelz::register_client_socket(
                subchannel,
                String::new(),
                peer.local_addr.clone(),
                peer.remote_addr.clone(),
                tls,
            );
            socket.set_flow_windows(Arc::downgrade(&signals) as std::sync::Weak<_>);
            signals.set_client_channelz(crate::channelz::ClientConn::new(
                socket.share(),
                Arc::clone(subchannel),
            ));
            socket
        });
        let params = config.keepalive;
        if config.bdp {
            signals.enable_bdp();
        }
        let mut pinger = Pinger::new(
            params.time.map(|time| (time, params.timeout)),
            config.bdp.then_some(config.initial_stream_window_size),
            connection.ping_pong(),
        );
        let connection_window = config.initial_connection_window_size;
        let driver_signals = Arc::clone(&signals);
        let driver_what = what.clone();
        crate::logging::spawn(async move {
            let what = driver_what;
            use tokio::time::sleep_until;
            let signals = driver_signals;
            let mut goaway_told = false;
            let reason = loop {
                let deadline = pinger.deadline();
                tokio::select! {
                    res = &mut connection => {
                        break match (res, signals.goaway()) {
                            (_, Some(goaway)) => format!("the server sent {}", goaway.describe()),
                            (Ok(()), None) => "connection closed".to_string(),
                            (Err(e), None) => http_util::status_from_h2(&e, "server").message().to_string(),
                        };
                    }
                    () = signals.notify.notified() => {
                        pinger.on_data(&signals);
                        if let (false, Some(goaway)) = (goaway_told, signals.goaway()) {
                            goaway_told = true;
                            on_event(ConnEvent::GoAway(goaway.clone()));
                        }
                    }
                    event = poll_fn(|cx| pinger.poll_ping(cx, &signals)) => {
                        if let PingEvent::Window(window) = event {
                            let (conn_window, stream_window) = grown_windows(window, connection_window);
                            connection.set_target_window_size(conn_window);
                            let _ = connection.set_initial_window_size(stream_window);
                        }
                        pinger.on_data(&signals);
                    }
                    () = sleep_until(deadline) => {
                        let may_ping = params.permit_without_calls
                            || signals.active_streams.load(std::sync::atomic::Ordering::Acquire) > 0;
                        if let PingEvent::Dead = pinger.on_deadline(&signals, may_ping) {
                            let reason = format!(
                                "keepalive ping to {what} not acknowledged within {:?}",
                                params.timeout
                            );
                            let _ = signals.close_reason.set(reason.clone());
                            break reason;
                        }
                    }
                }
            };
            // Dropping the connection closes it; calls on it fail with `reason`.
            drop(connection);
            #[cfg(feature = "channelz")]
            drop(channelz_socket);
            // A GOAWAY read in the same poll that ended the connection is
            // reported too (it may carry too_many_pings).
            if let (false, Some(goaway)) = (goaway_told, signals.goaway()) {
                on_event(ConnEvent::GoAway(goaway.clone()));
            }
            tracing::debug!(%what, %reason, "connection ended");
            let _ = signals.ended.set(reason.clone());
            signals.handshake.notify_waiters();
            on_event(ConnEvent::Closed(reason));
        });
        // As gRPC-Go: the connection is usable (READY) only once the
        // server's SETTINGS arrived. A peer that accepts and closes, or
        // never answers, is a failed attempt, so the backoff applies.
        wait_for_settings(&signals, deadline, &what, config.connect_timeout).await?;
        Ok(Http2Client {
            send_request,
            security_level,
            peer: Arc::new(peer),
            signals,
            user_agent: config.user_agent.clone(),
        })
    }

    /// Why this connection takes no new calls, if it does not: it ended,
    /// or the server sent GOAWAY.
    pub(crate) fn unusable_reason(&self) -> Option<String> {
        if let Some(reason) = self.signals.ended.get() {
            return Some(reason.clone());
        }
        self.signals
            .goaway()
            .map(|g| format!("the server sent {}", g.describe()))
    }

    /// Whether any call was ever started on this connection.
    pub(crate) fn was_used(&self) -> bool {
        self.signals.used.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many streams are open on this connection.
    pub(crate) fn active_streams(&self) -> usize {
        self.signals
            .active_streams
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether new calls should go to another connection (GOAWAY received,
    /// or this side is closing it).
    pub(crate) fn is_draining(&self) -> bool {
        self.signals.is_draining()
    }

    /// How well this connection protects what it carries.
    pub(crate) fn security_level(&self) -> SecurityLevel {
        self.security_level
    }

    /// Opens a stream by sending the call's request headers.
    pub(crate) async fn open_stream(
        &self,
        head: CallHead<'_>,
        max_recv: usize,
    ) -> Result<(ClientRecv, ClientSend), Status> {
        // Channelz: a call of the subchannel from here (gRPC-Go counts
        // the attempt once picked), a stream of the socket once it opened.
        #[cfg(feature = "channelz")]
        let channelz = self.signals.client_channelz();
        #[cfg(feature = "channelz")]
        if let Some(z) = channelz {
            z.attempt_started();
        }
        let opened = self.open_h2_stream(head).await;
        #[cfg(feature = "channelz")]
        if let Some(z) = channelz {
            match &opened {
                Ok(_) => z.stream_started(),
                Err(_) => z.attempt_failed(),
            }
        }
        let (response, send) = opened?;
        let guard = StreamGuard::new(&self.signals);
        Ok((
            ClientRecv::new(response, max_recv, Arc::clone(&self.peer), guard),
            ClientSend::new(send, Arc::clone(&self.signals)),
        ))
    }

    /// Sends the request headers of a new stream.
    async fn open_h2_stream(
        &self,
        head: CallHead<'_>,
    ) -> Result<(h2::client::ResponseFuture, h2::SendStream<Bytes>), Status> {
        let request = request_headers(head, &self.user_agent)?;
        // Nothing has reached the server if opening fails: safe to retry.
        let refused = |e: h2::Error| {
            self.signals
                .stream_error(&e, "server")
                .with_transparent_retry()
        };
        let mut sender = self.send_request.clone().ready().await.map_err(refused)?;
        sender.send_request(request, false).map_err(refused)
    }
}

/// What a call sends in its request headers.
pub(crate) struct CallHead<'a> {
    pub(crate) scheme: &'a Scheme,
    pub(crate) authority: &'a Authority,
    pub(crate) path: PathAndQuery,
    pub(crate) timeout: Option<Duration>,
    pub(crate) metadata: &'a MetadataMap,
    pub(crate) content_subtype: &'static str,
    /// The `grpc-encoding` of the request messages, if compressed.
    pub(crate) encoding: Option<&'static str>,
    /// The attempts of this call made before this one (gRFC A6); sent as
    /// `grpc-previous-rpc-attempts` when not zero.
    pub(crate) previous_attempts: u32,
}

/// Builds the request headers of a call (PROTOCOL-HTTP2.md "Requests"),
/// with `user_agent` as the connection's `user-agent`. Fails when the
/// call's metadata does not fit in one header block.
pub(crate) fn request_headers(
    head: CallHead<'_>,
    user_agent: &HeaderValue,
) -> Result<http::Request<()>, Status> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(head.scheme.clone());
    uri.authority = Some(head.authority.clone());
    uri.path_and_query = Some(head.path);
    let uri = http::Uri::from_parts(uri).unwrap_or_default();
    let mut headers =
        HeaderMap::with_capacity(head.metadata.len().min(http_util::MAX_HEADER_HINT) + 5);
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    // The proto codec goes as plain `application/grpc`, as gRPC-Go sends it.
    let content_type = match head.content_subtype {
        "proto" => http_util::content_type(""),
        other => http_util::content_type(other),
    };
    headers.insert(http::header::CONTENT_TYPE, content_type);
    if let Some(timeout) = head.timeout {
        headers.insert(http_util::GRPC_TIMEOUT, http_util::encode_timeout(timeout));
    }
    if let Some(name) = head.encoding {
        headers.insert(http_util::GRPC_ENCODING, HeaderValue::from_static(name));
    }
    if head.previous_attempts > 0 {
        headers.insert(
            http_util::GRPC_PREVIOUS_RPC_ATTEMPTS,
            HeaderValue::from(head.previous_attempts),
        );
    }
    let registry = crate::encoding::registry();
    let accept = registry.accept_encoding();
    if !accept.is_empty() {
        headers.insert(http_util::GRPC_ACCEPT_ENCODING, accept.clone());
    }
    // A call's own user-agent goes first; only such calls allocate.
    let user_agent = match head.metadata.get("user-agent") {
        Some(ua) => {
            let mut joined = Vec::with_capacity(ua.len() + 1 + user_agent.len());
            joined.extend_from_slice(ua.as_bytes());
            joined.push(b' ');
            joined.extend_from_slice(user_agent.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| user_agent.clone())
        }
        None => user_agent.clone(),
    };
    head.metadata.write_to(&mut headers)?;
    // Replaces the application's user-agent, which is in ours.
    headers
        .try_insert(http::header::USER_AGENT, user_agent)
        .map_err(|_| Status::internal("too many request headers for one HTTP/2 header block"))?;
    let mut request = http::Request::new(());
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// The receiving half of a client call: response headers, then messages,
/// then the status from trailers.
pub(crate) struct ClientRecv {
    state: ClientRecvState,
    headers: MetadataMap,
    send: Option<ClientSend>,
    peer: Arc<Peer>,
    /// Counts the call as active on its connection (for keepalive).
    guard: StreamGuard,
    /// The balancer's done callback for this attempt, if its pick set one
    /// (boxed: one pointer in every call's state, an allocation only in
    /// calls whose picker asked for it).
    done: Option<Box<DoneGuard>>,
    /// Whether channelz counted the stream's end yet.
    #[cfg(feature = "channelz")]
    end_counted: bool,
}

#[cfg(feature = "channelz")]
impl Drop for ClientRecv {
    fn drop(&mut self) {
        // Not ended by the server: this side reset it, or the connection
        // went. The done callback (run by its guard's drop) hears whether
        // the server had answered by then.
        let received = self.headers_received();
        if let Some(done) = self.done.as_mut() {
            done.received = received;
        }
        self.count_end(false, false);
    }
}

// The `Open` state is the common one; boxing it would cost an allocation
// per call, so the size difference is accepted.
#[allow(clippy::large_enum_variant)]
enum ClientRecvState {
    Waiting {
        response: h2::client::ResponseFuture,
        max_len: usize,
    },
    Open(RecvMessages),
    Failed(Status),
}

impl ClientRecv {
    pub(crate) fn new(
        response: h2::client::ResponseFuture,
        max_len: usize,
        peer: Arc<Peer>,
        guard: StreamGuard,
    ) -> ClientRecv {
        ClientRecv {
            state: ClientRecvState::Waiting { response, max_len },
            headers: MetadataMap::new(),
            send: None,
            peer,
            guard,
            done: None,
            #[cfg(feature = "channelz")]
            end_counted: false,
        }
    }

    /// Counts the stream's end on channelz, once: `end_stream` when the
    /// server ended it, `ok` when with OK.
    #[cfg(feature = "channelz")]
    #[inline]
    fn count_end(&mut self, end_stream: bool, ok: bool) {
        if !self.end_counted {
            self.end_counted = true;
            if let Some(z) = self.guard.signals().client_channelz() {
                z.stream_ended(end_stream, ok);
            }
        }
    }

    /// Runs `done` when this attempt ends (its status arrives, or it is
    /// dropped or failed first).
    pub(crate) fn with_done(mut self, mut done: DoneGuard) -> ClientRecv {
        done.sent = true;
        self.done = Some(Box::new(done));
        self
    }

    /// Tells the done callback, if it has not heard yet, that the attempt
    /// failed with `status` on this side (e.g. a message that would not
    /// decode).
    pub(crate) fn end_attempt_with(&mut self, status: &Status) {
        if self.done.is_some() {
            let received = self.headers_received();
            self.end_attempt(Some(status), received);
        }
    }

    /// Tells the done callback, if any, that the attempt ended with `error`
    /// (`None`: OK, with the trailers).
    fn end_attempt(&mut self, error: Option<&Status>, received: bool) {
        if let Some(mut done) = self.done.take() {
            done.received = received;
            done.finish(error, self.trailers());
        }
    }

    /// The connection's two ends.
    pub(crate) fn peer(&self) -> &Arc<Peer> {
        &self.peer
    }

    /// Keeps the sending half so the call can be cancelled from here (e.g. on
    /// a deadline) even when the request stream is already closed.
    pub(crate) fn with_send(mut self, send: ClientSend) -> ClientRecv {
        self.send = Some(send);
        self
    }

    /// Cancels the call (RST_STREAM CANCEL) if this side holds the sender.
    pub(crate) fn cancel(&mut self) {
        if let Some(send) = &mut self.send {
            send.cancel();
        }
    }

    /// Waits for the response headers.
    pub(crate) fn poll_headers(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        let (response, max_len) = match &mut self.state {
            ClientRecvState::Waiting { response, max_len } => (response, *max_len),
            ClientRecvState::Open(_) => return Poll::Ready(Ok(())),
            ClientRecvState::Failed(status) => return Poll::Ready(Err(status.clone())),
        };
        let mut answered = true;
        let mut end_stream = false;
        let result = match ready!(std::pin::Pin::new(response).poll(cx)) {
            Ok(resp) => {
                end_stream = resp.body().is_end_stream();
                read_response_head(resp, max_len, &self.guard)
            }
            Err(err) => {
                answered = false;
                Err(self.guard.signals().stream_error(&err, "server"))
            }
        };
        match result {
            Ok((headers, recv)) => {
                self.headers = headers;
                self.state = ClientRecvState::Open(recv);
                Poll::Ready(Ok(()))
            }
            Err(status) => {
                #[cfg(feature = "channelz")]
                self.count_end(end_stream, false);
                #[cfg(not(feature = "channelz"))]
                let _ = end_stream;
                self.state = ClientRecvState::Failed(status.clone());
                self.end_attempt(Some(&status), answered);
                Poll::Ready(Err(status))
            }
        }
    }

    /// Polls for the next message (after the headers).
    pub(crate) fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, Status>> {
        ready!(self.poll_headers(cx))?;
        let polled = match &mut self.state {
            ClientRecvState::Open(recv) => recv.poll_message(cx),
            ClientRecvState::Failed(status) => Poll::Ready(Err(status.clone())),
            ClientRecvState::Waiting { .. } => Poll::Pending,
        };
        #[cfg(feature = "channelz")]
        match &polled {
            Poll::Ready(Ok(None)) => self.count_end(true, true),
            Poll::Ready(Err(_)) => {
                let end_stream = match &self.state {
                    ClientRecvState::Open(recv) => recv.end_stream_received(),
                    _ => false,
                };
                self.count_end(end_stream, false);
            }
            _ => {}
        }
        if self.done.is_some() {
            match &polled {
                Poll::Ready(Ok(None)) => self.end_attempt(None, true),
                Poll::Ready(Err(status)) => self.end_attempt(Some(status), true),
                _ => {}
            }
        }
        polled
    }

    /// Whether the response headers (or a Trailers-Only response) arrived.
    pub(crate) fn headers_received(&self) -> bool {
        !matches!(self.state, ClientRecvState::Waiting { .. })
    }

    /// The response header metadata (empty before the headers arrive).
    pub(crate) fn headers(&self) -> &MetadataMap {
        &self.headers
    }

    /// Takes the response header metadata.
    pub(crate) fn take_headers(&mut self) -> MetadataMap {
        std::mem::take(&mut self.headers)
    }

    /// The trailers, once the call ended with `OK`.
    pub(crate) fn trailers(&self) -> Option<&MetadataMap> {
        match &self.state {
            ClientRecvState::Open(recv) => recv.trailers(),
            _ => None,
        }
    }

    /// Takes the trailers, once the call ended with `OK`.
    pub(crate) fn take_trailers(&mut self) -> MetadataMap {
        match &mut self.state {
            ClientRecvState::Open(recv) => recv.take_trailers(),
            _ => MetadataMap::new(),
        }
    }

    /// Whether the last message returned arrived compressed.
    pub(crate) fn last_compressed(&self) -> bool {
        match &self.state {
            ClientRecvState::Open(recv) => recv.last_compressed(),
            _ => false,
        }
    }

    /// The wire size of the last message returned.
    pub(crate) fn last_wire_len(&self) -> usize {
        match &self.state {
            ClientRecvState::Open(recv) => recv.last_wire_len(),
            _ => 0,
        }
    }

    /// Ends the call here with `status` (e.g. when a replacement stream
    /// could not be opened).
    pub(crate) fn fail(&mut self, status: Status) {
        let received = matches!(self.state, ClientRecvState::Open(_));
        self.end_attempt(Some(&status), received);
        self.state = ClientRecvState::Failed(status);
    }

    /// Whether the call has ended.
    pub(crate) fn is_finished(&self) -> bool {
        match &self.state {
            ClientRecvState::Open(recv) => recv.is_finished(),
            ClientRecvState::Failed(_) => true,
            ClientRecvState::Waiting { .. } => false,
        }
    }
}

/// Reads the response headers: HTTP status, content type, Trailers-Only.
fn read_response_head(
    resp: http::Response<h2::RecvStream>,
    max_len: usize,
    guard: &StreamGuard,
) -> Result<(MetadataMap, RecvMessages), Status> {
    let (parts, body) = resp.into_parts();
    let has_status = parts.headers.contains_key(http_util::GRPC_STATUS);
    if parts.status != StatusCode::OK && !has_status {
        let code = http_util::code_for_http_status(parts.status);
        return Err(Status::new(
            code,
            format!(
                "unexpected HTTP status from server: {} ({})",
                parts.status.as_u16(),
                parts.status.canonical_reason().unwrap_or("unknown")
            ),
        ));
    }
    if has_status {
        // Trailers-Only: the whole response is these headers.
        let status = http_util::status_from_trailers(parts.headers);
        if status.code() != Code::Ok {
            return Err(status);
        }
        let (_, _, _, trailers) = status.into_parts();
        return Ok((MetadataMap::new(), RecvMessages::finished(body, trailers)));
    }
    let content_type = parts.headers.get(http::header::CONTENT_TYPE);
    if !content_type.is_some_and(|v| http_util::is_grpc_content_type(v.as_bytes())) {
        return Err(Status::internal(format!(
            "server replied with content-type {:?}, not application/grpc",
            content_type.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        )));
    }
    let decompressor =
        crate::encoding::decompressor_for(parts.headers.get(http_util::GRPC_ENCODING)).map_err(|name| {
            Status::internal(format!(
                "server compressed the response with grpc-encoding {name:?}, which is not registered here"
            ))
        })?;
    let metadata = MetadataMap::from_received(parts.headers)?;
    let conn = Arc::clone(&guard.0);
    Ok((
        metadata,
        RecvMessages::new(body, max_len, Role::Client, decompressor).with_conn(conn),
    ))
}
