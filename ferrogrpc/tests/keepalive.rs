//! Connection management end to end: keepalive, connection age and idle
//! GOAWAYs, reconnection after GOAWAY, transparent retry, and graceful stop
//! with a grace period. Timings are shortened.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    keepalive::{ClientParameters, EnforcementPolicy, ServerParameters},
    server::{self, Server, ServerCall, Service},
    stats, Code, Request, Response, Status,
};
use http::uri::PathAndQuery;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `Sleep` sleeps for the milliseconds in its message; `Echo` echoes.
struct Svc;

impl Service for Svc {
    fn name(&self) -> &'static str {
        "k.Svc"
    }

    fn call(&self, method: &str, call: ServerCall) -> server::BoxFuture {
        match method {
            "Sleep" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let ms = u32::from_be_bytes(req.get_ref()[..4].try_into().unwrap());
                    tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
                    Ok::<_, Status>(Response::new(Bytes::from_static(b"slept")))
                },
            )),
            _ => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move { Ok::<_, Status>(Response::new(req.into_inner())) },
            )),
        }
    }
}

/// Counts connections the server accepted.
#[derive(Clone, Default)]
struct ConnCounter(Arc<AtomicUsize>);

impl stats::Handler for ConnCounter {
    fn handle_rpc(&self, _event: &stats::RpcEvent<'_>) {}

    fn handle_conn(&self, event: &stats::ConnEvent<'_>) {
        if let stats::ConnEvent::Begin { .. } = event {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn serve(builder: server::ServerBuilder) -> (std::net::SocketAddr, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = builder.build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    (addr, server)
}

fn sleep_req(ms: u32) -> Request<Bytes> {
    Request::new(Bytes::from(ms.to_be_bytes().to_vec())).with_timeout(Duration::from_secs(20))
}

fn path(p: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(p)
}

/// Counts the PING frames (not acknowledgements) in one direction of an
/// HTTP/2 byte stream. The server's side starts with a frame; the client's
/// with the 24-byte preface, which `skip` covers.
struct PingTally {
    header: Vec<u8>,
    skip: usize,
    pings: Arc<AtomicUsize>,
}

impl PingTally {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == 9 {
                let h = &self.header;
                let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                const PING: u8 = 6;
                const ACK: u8 = 1;
                if h[3] == PING && h[4] & ACK == 0 {
                    self.pings.fetch_add(1, Ordering::SeqCst);
                }
                self.skip = len;
                self.header.clear();
            }
        }
    }
}

/// A TCP proxy that can be frozen: it stops moving bytes but keeps both
/// sockets open, like a dead NAT mapping. Also counts the PINGs the server
/// sends.
async fn freezable_proxy(
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let frozen = Arc::new(AtomicBool::new(false));
    let server_pings = Arc::new(AtomicUsize::new(0));
    let f = Arc::clone(&frozen);
    let counted = Arc::clone(&server_pings);
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(target).await.unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            for (mut from, mut to, frozen, mut tally) in [
                (
                    Box::new(cr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    Arc::clone(&f),
                    None,
                ),
                (
                    Box::new(sr),
                    Box::new(cw),
                    Arc::clone(&f),
                    Some(PingTally {
                        header: Vec::new(),
                        skip: 0,
                        pings: Arc::clone(&counted),
                    }),
                ),
            ] {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    loop {
                        let n = match from.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        while frozen.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        if let Some(tally) = &mut tally {
                            tally.feed(&buf[..n]);
                        }
                        if to.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    (addr, frozen, server_pings)
}

#[tokio::test]
async fn client_keepalive_detects_a_dead_connection_and_reconnects() {
    let (server_addr, _server) = serve(
        Server::builder()
            .add_service(Svc)
            .keepalive_enforcement_policy(
                EnforcementPolicy::default()
                    .with_min_time(Duration::from_millis(10))
                    .with_permit_without_stream(true),
            ),
    )
    .await;
    let (proxy, frozen, _) = freezable_proxy(server_addr).await;
    let ch = Channel::builder(proxy.to_string())
        .keepalive_params_unclamped_for_tests(
            ClientParameters::default()
                .with_time(Duration::from_millis(100))
                .with_timeout(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    ch.unary(
        path("/k.Svc/Echo"),
        Request::new(Bytes::from_static(b"up")),
        BytesCodec,
    )
    .await
    .unwrap();
    let call = tokio::spawn({
        let ch = ch.clone();
        async move {
            ch.unary(path("/k.Svc/Sleep"), sleep_req(5000), BytesCodec)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    frozen.store(true, Ordering::SeqCst);
    let err = tokio::time::timeout(Duration::from_secs(4), call)
        .await
        .expect("keepalive ended the call well before its own 5 s")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("keepalive"), "{err}");
    // The path comes back: the channel makes a new connection.
    frozen.store(false, Ordering::SeqCst);
    let resp = ch
        .unary(
            path("/k.Svc/Echo"),
            Request::new(Bytes::from_static(b"again")),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(resp.into_inner(), "again");
}

#[tokio::test]
async fn server_keepalive_pings_do_not_disturb_a_live_client() {
    let (addr, _server) = serve(
        Server::builder().add_service(Svc).keepalive_params(
            ServerParameters::default()
                .with_time(Duration::from_millis(30))
                .with_timeout(Duration::from_millis(200)),
        ),
    )
    .await;
    let (proxy, _, server_pings) = freezable_proxy(addr).await;
    let ch = Channel::from_target(&proxy.to_string()).unwrap();
    // Quiet for many keepalive periods: the client's h2 answers the pings.
    let resp = ch
        .unary(path("/k.Svc/Sleep"), sleep_req(600), BytesCodec)
        .await
        .unwrap();
    assert_eq!(resp.into_inner(), "slept");
    // The pings were really sent (one per 30 ms quiet period at most).
    let pings = server_pings.load(Ordering::SeqCst);
    assert!(pings >= 3, "the server sent only {pings} keepalive pings");
}

#[tokio::test]
async fn max_connection_age_moves_new_calls_to_a_new_connection() {
    let conns = ConnCounter::default();
    let (addr, _server) = serve(
        Server::builder()
            .add_service(Svc)
            .stats_handler(conns.clone())
            .keepalive_params(
                ServerParameters::default()
                    .with_max_connection_age(Duration::from_millis(200))
                    .with_max_connection_age_grace(Duration::from_secs(10)),
            ),
    )
    .await;
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let long = tokio::spawn({
        let ch = ch.clone();
        async move {
            ch.unary(path("/k.Svc/Sleep"), sleep_req(700), BytesCodec)
                .await
        }
    });
    // After the age GOAWAY (~200 ms), new calls still work, on a new connection.
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..3 {
        ch.unary(
            path("/k.Svc/Echo"),
            Request::new(Bytes::from_static(b"x")),
            BytesCodec,
        )
        .await
        .unwrap();
    }
    assert!(
        conns.0.load(Ordering::SeqCst) >= 2,
        "a second connection was made"
    );
    // The call under way on the old connection finished normally.
    assert_eq!(long.await.unwrap().unwrap().into_inner(), "slept");
}

#[tokio::test]
async fn max_connection_age_grace_cuts_off_long_calls() {
    let (addr, _server) = serve(
        Server::builder().add_service(Svc).keepalive_params(
            ServerParameters::default()
                .with_max_connection_age(Duration::from_millis(100))
                .with_max_connection_age_grace(Duration::from_millis(200)),
        ),
    )
    .await;
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let err = ch
        .unary(path("/k.Svc/Sleep"), sleep_req(5000), BytesCodec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
}

#[tokio::test]
async fn max_connection_idle_sends_goaway_and_the_channel_reconnects() {
    let conns = ConnCounter::default();
    let (addr, _server) = serve(
        Server::builder()
            .add_service(Svc)
            .stats_handler(conns.clone())
            .keepalive_params(
                ServerParameters::default().with_max_connection_idle(Duration::from_millis(100)),
            ),
    )
    .await;
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    ch.unary(path("/k.Svc/Echo"), Request::new(Bytes::new()), BytesCodec)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while ch.is_connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the idle connection was closed");
    ch.unary(path("/k.Svc/Echo"), Request::new(Bytes::new()), BytesCodec)
        .await
        .unwrap();
    assert_eq!(conns.0.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn refused_stream_is_retried_transparently() {
    // A raw h2 server that refuses every other stream (the 1st, 3rd, ...)
    // and answers the rest.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&refused);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let r = Arc::clone(&r);
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(tcp).await.unwrap();
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    if r.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    let mut body = req.into_body();
                    while let Some(Ok(c)) = body.data().await {
                        let _ = body.flow_control().release_capacity(c.len());
                    }
                    let mut resp = http::Response::new(());
                    resp.headers_mut().insert(
                        "content-type",
                        http::HeaderValue::from_static("application/grpc"),
                    );
                    let mut send = respond.send_response(resp, false).unwrap();
                    send.send_data(Bytes::from_static(&[0, 0, 0, 0, 2, b'o', b'k']), false)
                        .unwrap();
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    send.send_trailers(trailers).unwrap();
                }
            });
        }
    });
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let resp = ch
        .unary(
            path("/k.Svc/Echo"),
            Request::new(Bytes::from_static(b"x")),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(resp.into_inner(), "ok");
    assert_eq!(
        refused.load(Ordering::SeqCst),
        2,
        "refused once, then served"
    );
}

#[tokio::test]
async fn too_many_pings_doubles_the_client_keepalive_time() {
    // A hand-written HTTP/2 server: SETTINGS, then GOAWAY ENHANCE_YOUR_CALM
    // "too_many_pings", then close.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                if tcp.read_exact(&mut preface).await.is_err() {
                    return;
                }
                // SETTINGS (empty), SETTINGS ACK.
                let mut out = vec![0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
                let debug = b"too_many_pings";
                let len = 8 + debug.len() as u32;
                out.extend_from_slice(&len.to_be_bytes()[1..]);
                out.extend_from_slice(&[7, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&0u32.to_be_bytes());
                out.extend_from_slice(&11u32.to_be_bytes());
                out.extend_from_slice(debug);
                let _ = tcp.write_all(&out).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
    });
    let ch = Channel::builder(addr.to_string())
        .keepalive_params(ClientParameters::default().with_time(Duration::from_secs(30)))
        .build()
        .unwrap();
    assert_eq!(ch.keepalive_time(), Some(Duration::from_secs(30)));
    let err = ch
        .unary(path("/k.Svc/Echo"), Request::new(Bytes::new()), BytesCodec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("too_many_pings"), "{err}");
    // The stream was above the GOAWAY's last stream id, so the call was
    // retried transparently on a second connection, which got the same
    // GOAWAY: two too_many_pings, two doublings. The connections' tasks tell
    // the channel; give them a moment.
    for _ in 0..200 {
        if ch.keepalive_time() == Some(Duration::from_secs(120)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ch.keepalive_time(), Some(Duration::from_secs(120)));
}

#[tokio::test]
async fn graceful_stop_timeout_cuts_off_calls_after_the_grace() {
    let (addr, server) = serve(Server::builder().add_service(Svc)).await;
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let short = tokio::spawn({
        let ch = ch.clone();
        async move {
            ch.unary(path("/k.Svc/Sleep"), sleep_req(100), BytesCodec)
                .await
        }
    });
    let long = tokio::spawn({
        let ch = ch.clone();
        async move {
            ch.unary(path("/k.Svc/Sleep"), sleep_req(10_000), BytesCodec)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::time::timeout(
        Duration::from_secs(5),
        server.graceful_stop_timeout(Duration::from_millis(300)),
    )
    .await
    .expect("stopped within the grace period plus a margin");
    assert_eq!(short.await.unwrap().unwrap().into_inner(), "slept");
    assert_eq!(long.await.unwrap().unwrap_err().code(), Code::Unavailable);
}
