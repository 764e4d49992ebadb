//! A graceful GOAWAY never cuts a call the user did not ask to cut: a
//! 10-second server stream outlives a graceful stop, a connection reaching
//! its max age without a grace, and max idle (which does not count a
//! connection with a stream open as idle). Each path waits well past the 5 s
//! the server gives a client to acknowledge the drain PING. (A call that
//! starts during an idle drain is in `hardening.rs`, where a raw client can
//! time its request between the GOAWAY and its answer to the PING.)

use std::time::Duration;

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    keepalive::ServerParameters,
    server::{self, BoxFuture, ResponseSink, Server, ServerBuilder, ServerCall, Service},
    Request, Status,
};
use http::uri::PathAndQuery;

const TICKS: u32 = 10;
const TICK: Duration = Duration::from_secs(1);

/// `Ticks` streams one message a second for ten seconds.
struct Ticker;

impl Service for Ticker {
    fn name(&self) -> &'static str {
        "d.Ticker"
    }

    fn call(&self, _method: &str, call: ServerCall) -> BoxFuture {
        Box::pin(server::server_streaming(
            call,
            BytesCodec,
            |_req: Request<Bytes>, mut sink: ResponseSink<Bytes>| async move {
                for i in 0..TICKS {
                    sink.send(Bytes::from(i.to_string())).await?;
                    tokio::time::sleep(TICK).await;
                }
                Ok::<_, Status>(())
            },
        ))
    }
}

async fn serve(builder: ServerBuilder) -> (std::net::SocketAddr, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = builder.add_service(Ticker).build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    (addr, server)
}

/// Starts the ten-second stream, runs `during` once its first message is
/// in, and checks that every message and an OK status arrive.
async fn ten_second_stream_completes(addr: std::net::SocketAddr, during: impl std::future::Future) {
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let mut stream = ch
        .server_streaming::<Bytes, Bytes, _>(
            PathAndQuery::from_static("/d.Ticker/Ticks"),
            Request::new(Bytes::new()).with_timeout(Duration::from_secs(60)),
            BytesCodec,
        )
        .await
        .expect("stream started")
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap(), "0");
    during.await;
    for i in 1..TICKS {
        match stream.message().await {
            Ok(Some(msg)) => assert_eq!(msg, i.to_string()),
            other => panic!("message {i} of {TICKS}: {other:?}"),
        }
    }
    assert!(
        matches!(stream.message().await, Ok(None)),
        "the stream ends with OK"
    );
}

#[tokio::test]
async fn graceful_stop_lets_a_ten_second_stream_finish() {
    let (addr, server) = serve(Server::builder()).await;
    let stop = {
        let server = server.clone();
        async move {
            tokio::spawn(async move { server.graceful_stop().await });
        }
    };
    ten_second_stream_completes(addr, stop).await;
}

#[tokio::test]
async fn max_connection_age_without_grace_lets_a_ten_second_stream_finish() {
    let (addr, _server) = serve(Server::builder().keepalive_params(
        ServerParameters::default().with_max_connection_age(Duration::from_millis(300)),
    ))
    .await;
    ten_second_stream_completes(addr, async {}).await;
}

#[tokio::test]
async fn max_connection_idle_leaves_a_ten_second_stream_alone() {
    let (addr, _server) = serve(Server::builder().keepalive_params(
        ServerParameters::default().with_max_connection_idle(Duration::from_millis(300)),
    ))
    .await;
    ten_second_stream_completes(addr, async {}).await;
}

/// A client that connected and said nothing has no call to finish: a
/// graceful stop closes its connection, still in the HTTP/2 handshake, at
/// once instead of waiting out the handshake timeout (an hour here).
#[tokio::test]
async fn graceful_stop_does_not_wait_for_a_connection_in_its_handshake() {
    let (addr, server) =
        serve(Server::builder().handshake_timeout(Duration::from_secs(3600))).await;
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Connections are accepted in order: once this channel is ready, the
    // silent one was taken up before it.
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    ch.connect().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), server.graceful_stop())
        .await
        .expect("the stop waited for a connection that had no call");
    assert_closed(silent).await;
}

/// Reads what the server wrote (its SETTINGS, at most) until it closes.
async fn assert_closed(mut socket: tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), socket.read_to_end(&mut seen)).await;
    assert!(read.is_ok(), "the connection was left open");
}
