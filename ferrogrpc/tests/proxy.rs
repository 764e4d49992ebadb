//! HTTP CONNECT proxies (gRFC A1) over real loopback sockets, with a small
//! CONNECT proxy written here. The target is a name DNS cannot resolve
//! (`.invalid`), which the test proxy maps to 127.0.0.1: a call succeeds
//! only if the client left resolution to the proxy. Proxies set in the
//! environment are tested in `proxy_env.rs`, a binary of its own.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use ferrogrpc::{
    backoff,
    client::{Channel, Proxy},
    codec::BytesCodec,
    credentials::{
        tls::{ClientTlsConfig, ServerTlsConfig},
        ChannelCredentials, ServerCredentials,
    },
    resolver::{manual::ManualResolver, Address, State},
    server::{self, BoxFuture, Server, ServerCall, Service},
    Code, Request, Response, Status,
};
use http::uri::PathAndQuery;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The name only the test proxy knows.
const HIDDEN: &str = "grpc-proxy-test.invalid";

struct Echo;

impl Service for Echo {
    fn name(&self) -> &'static str {
        "px.Echo"
    }

    fn call(&self, _method: &str, call: ServerCall) -> BoxFuture {
        Box::pin(server::unary(
            call,
            BytesCodec,
            |req: Request<Bytes>| async move { Ok::<_, Status>(Response::new(req.into_inner())) },
        ))
    }
}

async fn serve(creds: ServerCredentials) -> (u16, Server) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Server::builder()
        .add_service(Echo)
        .credentials(creds)
        .build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    (port, server)
}

async fn call(ch: &Channel) -> Result<Response<Bytes>, Status> {
    let req = Request::new(Bytes::from_static(b"through")).with_timeout(Duration::from_secs(10));
    ch.unary(PathAndQuery::from_static("/px.Echo/Call"), req, BytesCodec)
        .await
}

/// How the test proxy answers CONNECT.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `200`, then relays bytes.
    Tunnel,
    /// Waits for the server's first bytes and sends the first few of them
    /// in the same write as its `200` answer (so they arrive in the
    /// client's first read), the rest a moment later: a client that loses
    /// the bytes after the answer sees HTTP/2 frames cut in the middle.
    Coalesce,
    /// Answers with this status line and closes.
    Refuse(&'static str),
    /// Accepts the TCP connection and never answers.
    Silent,
}

struct TestProxy {
    addr: SocketAddr,
    /// The request head of each CONNECT received.
    requests: Arc<Mutex<Vec<String>>>,
    /// TCP connections accepted.
    accepted: Arc<AtomicUsize>,
}

impl TestProxy {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Starts a CONNECT proxy; `auth` is the `Proxy-Authorization` value it
/// requires, if any.
async fn start_proxy(mode: Mode, auth: Option<&'static str>) -> TestProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (log, count) = (Arc::clone(&requests), Arc::clone(&accepted));
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let _ = relay(client, mode, auth, log).await;
            });
        }
    });
    TestProxy {
        addr,
        requests,
        accepted,
    }
}

async fn relay(
    mut client: TcpStream,
    mode: Mode,
    auth: Option<&str>,
    log: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        if client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    log.lock().unwrap().push(head.clone());
    let refuse = |line: &str| format!("HTTP/1.1 {line}\r\nContent-Length: 0\r\n\r\n");
    match mode {
        Mode::Silent => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return Ok(());
        }
        Mode::Refuse(line) => return client.write_all(refuse(line).as_bytes()).await,
        Mode::Tunnel | Mode::Coalesce => {}
    }
    if let Some(want) = auth {
        if !head.contains(&format!("\r\nProxy-Authorization: {want}\r\n")) {
            let answer = "HTTP/1.1 407 Proxy Authentication Required\r\n\
                          Proxy-Authenticate: Basic realm=\"test\"\r\n\r\n";
            return client.write_all(answer.as_bytes()).await;
        }
    }
    let target = head
        .strip_prefix("CONNECT ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default()
        .replace(HIDDEN, "127.0.0.1");
    let mut upstream = match TcpStream::connect(&target).await {
        Ok(upstream) => upstream,
        Err(_) => return client.write_all(refuse("502 Bad Gateway").as_bytes()).await,
    };
    let mut answer = b"HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\n".to_vec();
    if let Mode::Coalesce = mode {
        let mut first = vec![0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), upstream.read(&mut first))
            .await
            .map_err(|_| std::io::Error::other("the server sent nothing"))??;
        let split = n.min(5);
        answer.extend_from_slice(&first[..split]);
        client.write_all(&answer).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.write_all(&first[split..n]).await?;
    } else {
        client.write_all(&answer).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

fn channel_to(target: &str, proxy: Proxy) -> Channel {
    Channel::builder(target).proxy(proxy).build().unwrap()
}

fn fast_backoff(connect_timeout: Duration) -> backoff::Config {
    backoff::Config::default()
        .with_base_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_millis(50))
        .with_min_connect_timeout(connect_timeout)
}

/// The client sends the target's name, unresolved, in CONNECT; the proxy
/// resolves it; the call arrives. The peer of the connection is the proxy.
#[tokio::test]
async fn a_name_only_the_proxy_can_resolve_is_reached_through_it() {
    let (port, _server) = serve(ServerCredentials::insecure()).await;
    let proxy = start_proxy(Mode::Tunnel, None).await;
    let target = format!("{HIDDEN}:{port}");
    let ch = channel_to(&target, Proxy::new(&proxy.url()).unwrap());
    let resp = call(&ch).await.unwrap();
    assert_eq!(
        resp.peer().map(|p| p.remote_addr.clone()),
        Some(ferrogrpc::peer::Addr::Tcp(proxy.addr))
    );
    assert_eq!(resp.into_inner(), "through");
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0].starts_with(&format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n")),
        "{requests:?}"
    );
    assert!(!requests[0].contains("Proxy-Authorization"), "{requests:?}");
    // The `dns:///` spelling of the target is the same target.
    let ch = channel_to(
        &format!("dns:///{target}"),
        Proxy::new(&proxy.url()).unwrap(),
    );
    call(&ch).await.unwrap();
}

/// The proxy sees the channel's user agent, prefix included (gRPC-Go's
/// `WithUserAgent` reaches its CONNECT request too).
#[tokio::test]
async fn the_connect_request_carries_the_user_agent() {
    let (port, _server) = serve(ServerCredentials::insecure()).await;
    let proxy = start_proxy(Mode::Tunnel, None).await;
    let ch = Channel::builder(format!("{HIDDEN}:{port}"))
        .proxy(Proxy::new(&proxy.url()).unwrap())
        .user_agent("my-app/1.2")
        .build()
        .unwrap();
    call(&ch).await.unwrap();
    let requests = proxy.requests();
    let want = concat!(
        "\r\nUser-Agent: my-app/1.2 ferrogrpc/",
        env!("CARGO_PKG_VERSION"),
        "\r\n"
    );
    assert!(requests[0].contains(want), "{requests:?}");
}

/// Server bytes that arrive with the proxy's answer (the server's HTTP/2
/// SETTINGS here) are not lost: HTTP/2 starts from them.
#[tokio::test]
async fn bytes_after_the_proxy_answer_reach_http2() {
    let (port, _server) = serve(ServerCredentials::insecure()).await;
    let proxy = start_proxy(Mode::Coalesce, None).await;
    let ch = channel_to(
        &format!("{HIDDEN}:{port}"),
        Proxy::new(&proxy.url()).unwrap(),
    );
    ch.connect().await.unwrap();
    assert_eq!(call(&ch).await.unwrap().into_inner(), "through");
}

/// Credentials in the proxy URL are sent as `Proxy-Authorization: Basic`;
/// a proxy that rejects them fails the call with its address and `407`.
#[tokio::test]
async fn basic_auth_from_the_proxy_url() {
    let (port, _server) = serve(ServerCredentials::insecure()).await;
    // base64("alice:s3cr@t")
    let proxy = start_proxy(Mode::Tunnel, Some("Basic YWxpY2U6czNjckB0")).await;
    let target = format!("{HIDDEN}:{port}");
    let good = format!("http://alice:s3cr%40t@{}", proxy.addr);
    call(&channel_to(&target, Proxy::new(&good).unwrap()))
        .await
        .unwrap();

    for url in [format!("http://alice:wrong@{}", proxy.addr), proxy.url()] {
        let err = call(&channel_to(&target, Proxy::new(&url).unwrap()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert!(err.message().contains(&proxy.addr.to_string()), "{err}");
        assert!(
            err.message().contains("407 Proxy Authentication Required"),
            "{err}"
        );
        assert!(
            !err.message().contains("wrong"),
            "the password leaked: {err}"
        );
    }
}

/// A target the bypass list matches connects directly: the proxy sees
/// nothing. Without the list, the same target goes through the proxy (the
/// control that shows the first half can fail).
#[tokio::test]
async fn the_bypass_list_skips_the_proxy() {
    let (port, _server) = serve(ServerCredentials::insecure()).await;
    let server_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let proxy = start_proxy(Mode::Tunnel, None).await;
    // A resolver that knows `backend.internal` is the server.
    let channel = |proxy_setting: Proxy| {
        let backends = ManualResolver::new("svc");
        backends.update_state(State::new([server_addr]));
        Channel::builder(format!("svc:///backend.internal:{port}"))
            .resolver(backends)
            .proxy(proxy_setting)
            .build()
            .unwrap()
    };

    for list in ["internal", "*.internal", "backend.internal", "localhost,*"] {
        let ch = channel(Proxy::new(&proxy.url()).unwrap().bypass(list));
        call(&ch).await.unwrap();
        assert_eq!(proxy.accepted.load(Ordering::SeqCst), 0, "bypass {list:?}");
    }

    let ch = channel(
        Proxy::new(&proxy.url())
            .unwrap()
            .bypass("other.internal,10.0.0.0/8"),
    );
    call(&ch).await.unwrap();
    assert_eq!(proxy.accepted.load(Ordering::SeqCst), 1);
    // The resolver resolved the name: the proxy is asked for the address.
    assert!(
        proxy.requests()[0].starts_with(&format!("CONNECT {server_addr} HTTP/1.1\r\n")),
        "{:?}",
        proxy.requests()
    );
}

/// A proxy that refuses CONNECT fails the call with its address and its
/// status line.
#[tokio::test]
async fn a_refusing_proxy_is_named_with_its_status_line() {
    let (port, _server) = serve(ServerCredentials::insecure()).await;
    let proxy = start_proxy(Mode::Refuse("403 Forbidden"), None).await;
    let err = call(&channel_to(
        &format!("{HIDDEN}:{port}"),
        Proxy::new(&proxy.url()).unwrap(),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains(&proxy.addr.to_string()), "{err}");
    assert!(err.message().contains("HTTP/1.1 403 Forbidden"), "{err}");
    assert!(
        err.message().contains(&format!("CONNECT {HIDDEN}:{port}")),
        "{err}"
    );
}

/// A proxy that accepts the connection and never answers fails the attempt
/// at the connect timeout, with a message naming it.
#[tokio::test]
async fn a_silent_proxy_fails_within_the_connect_timeout() {
    let proxy = start_proxy(Mode::Silent, None).await;
    let ch = Channel::builder(format!("{HIDDEN}:1"))
        .proxy(Proxy::new(&proxy.url()).unwrap())
        .connect_backoff(fast_backoff(Duration::from_millis(400)))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), ch.connect())
        .await
        .expect("the connect timeout did not end the handshake")
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains(&proxy.addr.to_string()), "{err}");
    assert!(err.message().contains("did not answer"), "{err}");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(5),
        "failed after {took:?}"
    );
    assert_eq!(proxy.requests().len(), 1);
}

/// A proxy nobody listens on: the message says it is the proxy that could
/// not be reached.
#[tokio::test]
async fn an_unreachable_proxy_is_named() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let err = call(&channel_to(
        &format!("{HIDDEN}:1"),
        Proxy::new(&format!("http://{addr}")).unwrap(),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains(&addr.to_string()), "{err}");
    assert!(err.message().contains("HTTP CONNECT proxy"), "{err}");
}

/// TLS runs inside the tunnel, to the target's name: the server's
/// certificate for `grpc-proxy-test.invalid` is accepted.
#[tokio::test]
async fn tls_inside_the_tunnel_checks_the_target_name() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![HIDDEN.to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let (port, _server) = serve(ServerCredentials::tls(ServerTlsConfig::from_pem(
        cert.pem(),
        key.serialize_pem(),
    )))
    .await;
    let proxy = start_proxy(Mode::Tunnel, None).await;
    let ch = Channel::builder(format!("{HIDDEN}:{port}"))
        .proxy(Proxy::new(&proxy.url()).unwrap())
        .credentials(ChannelCredentials::tls(
            ClientTlsConfig::new().ca_certificate_pem(ca.pem()),
        ))
        .build()
        .unwrap();
    let resp = call(&ch).await.unwrap();
    assert!(resp.peer().and_then(|p| p.auth_info.as_ref()).is_some());
    assert_eq!(proxy.requests().len(), 1);
}

/// With a custom dialer, a proxy set in code is dialled with it: the dialer
/// gets the proxy's address.
#[tokio::test]
async fn a_custom_dialer_dials_the_proxy() {
    let (port, _server) = serve(ServerCredentials::insecure()).await;
    let proxy = start_proxy(Mode::Tunnel, None).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let ch = Channel::builder(format!("{HIDDEN}:{port}"))
        .proxy(Proxy::new(&proxy.url()).unwrap())
        .dialer(move |address: Address| {
            log.lock().unwrap().push(address.clone());
            async move { TcpStream::connect(address.to_string()).await }
        })
        .build()
        .unwrap();
    call(&ch).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Address::HostPort(proxy.addr.to_string())]
    );
    assert_eq!(proxy.requests().len(), 1);
}
