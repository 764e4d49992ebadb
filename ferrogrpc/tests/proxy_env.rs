//! A proxy named in the environment, end to end. One test in a binary of
//! its own: it sets process-wide variables, which no other test may see.
//! (The variables' parsing and order are unit-tested through
//! `Proxy::from_env_with`, without touching the environment.)

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    resolver::Address,
    server::{self, BoxFuture, Server, ServerCall, Service},
    Request, Response, Status,
};
use http::uri::PathAndQuery;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

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

async fn call(ch: &Channel) -> Result<Response<Bytes>, Status> {
    let req = Request::new(Bytes::from_static(b"x")).with_timeout(Duration::from_secs(5));
    ch.unary(PathAndQuery::from_static("/px.Echo/Call"), req, BytesCodec)
        .await
}

/// A CONNECT proxy that maps `HIDDEN` to 127.0.0.1 and counts connections.
async fn start_proxy() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0];
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head
                    .split(' ')
                    .nth(1)
                    .unwrap_or_default()
                    .replace(HIDDEN, "127.0.0.1");
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = client.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn the_environment_proxy_is_used_unless_bypassed_or_disabled() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Server::builder().add_service(Echo).build();
    tokio::spawn(async move { server.serve_listener(listener).await });
    let (proxy, accepted) = start_proxy().await;
    let accepted = || accepted.load(Ordering::SeqCst);

    for name in [
        "grpc_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "no_grpc_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        std::env::remove_var(name);
    }
    // The uppercase variable is read before the lowercase one.
    std::env::set_var("HTTPS_PROXY", format!("http://{proxy}"));
    std::env::set_var("https_proxy", "http://127.0.0.1:1");
    std::env::set_var("NO_PROXY", "skipped.invalid, 10.0.0.0/8");

    // Through the proxy: only it can resolve the name.
    let target = format!("{HIDDEN}:{port}");
    call(&Channel::from_target(&target).unwrap()).await.unwrap();
    assert_eq!(accepted(), 1);

    // Disabled in code: the client resolves the name itself, and fails.
    let err = call(&Channel::builder(&target).no_proxy().build().unwrap())
        .await
        .unwrap_err();
    assert_eq!(accepted(), 1, "no_proxy() used the proxy: {err}");

    // A target NO_PROXY names goes direct (and cannot resolve either).
    let err = call(&Channel::from_target(&format!("a.skipped.invalid:{port}")).unwrap())
        .await
        .unwrap_err();
    assert_eq!(accepted(), 1, "NO_PROXY was ignored: {err}");

    // Loopback targets never use a proxy.
    call(&Channel::from_target(&format!("127.0.0.1:{port}")).unwrap())
        .await
        .unwrap();
    assert_eq!(accepted(), 1);

    // A channel with its own dialer ignores the environment (gRPC-Go).
    let ch = Channel::builder(format!("passthrough:///{target}"))
        .dialer(move |_: Address| async move { TcpStream::connect(("127.0.0.1", port)).await })
        .build()
        .unwrap();
    call(&ch).await.unwrap();
    assert_eq!(accepted(), 1);

    // grpc_proxy comes first of all.
    std::env::set_var("grpc_proxy", proxy.to_string());
    std::env::set_var("HTTPS_PROXY", "http://127.0.0.1:1");
    call(&Channel::from_target(&target).unwrap()).await.unwrap();
    assert_eq!(accepted(), 2);
}
