//! End-to-end tests of the channel and server over real loopback sockets,
//! through the library's call API with the bytes codec (generated-code tests
//! live in codegen-tests/).

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
    metadata::MetadataMap,
    server::{self, BoxFuture, ResponseSink, Server, ServerCall, Service},
    Code, Request, Response, Status, Streaming,
};
use http::uri::PathAndQuery;
use tokio::sync::mpsc;

type Events = mpsc::UnboundedSender<&'static str>;

/// Sends an event when dropped before `disarm`: shows a handler was cancelled.
struct CancelGuard(Option<(Events, &'static str)>);

impl CancelGuard {
    fn new(events: &Events, what: &'static str) -> CancelGuard {
        CancelGuard(Some((events.clone(), what)))
    }

    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some((tx, what)) = self.0.take() {
            let _ = tx.send(what);
        }
    }
}

#[derive(Clone)]
struct TestService {
    events: Events,
    calls: Arc<AtomicUsize>,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[i..i + 4].try_into().unwrap())
}

impl Service for TestService {
    fn name(&self) -> &'static str {
        "test.Svc"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        let this = self.clone();
        this.calls.fetch_add(1, Ordering::Relaxed);
        match method {
            // Echoes the message; copies x-* metadata to headers and
            // x-trailer-* to trailers.
            "Unary" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let mut resp = Response::new(req.get_ref().clone());
                    let peer = req.peer().expect("server requests carry the peer");
                    let peer = format!("{}", peer.remote_addr);
                    resp.metadata_mut().insert("peer", &peer).unwrap();
                    let deadline = if req.deadline().is_some() {
                        "set"
                    } else {
                        "none"
                    };
                    resp.metadata_mut().insert("deadline", deadline).unwrap();
                    for (key, value) in req.metadata().iter() {
                        let target = if key.starts_with("x-trailer") {
                            resp.trailers_mut()
                        } else if key.starts_with("x-") {
                            resp.metadata_mut()
                        } else {
                            continue;
                        };
                        match value {
                            ferrogrpc::metadata::MetadataValue::Ascii(v) => {
                                target.append(key, v).unwrap()
                            }
                            ferrogrpc::metadata::MetadataValue::Binary(v) => {
                                target.append_bin(key, v).unwrap()
                            }
                        }
                    }
                    Ok(resp)
                },
            )),
            // Fails with the code in the first byte, a message, details and
            // a trailer.
            "Fail" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let code = Code::from_i32(i32::from(req.get_ref()[0]));
                    let mut md = MetadataMap::new();
                    md.insert("x-why", "because").unwrap();
                    Err::<Response<Bytes>, _>(
                        Status::with_details(
                            code,
                            "tabs\tand ünïcödé 100%\r\n",
                            Bytes::from_static(b"\x08\x05\x12\x01x"),
                        )
                        .with_metadata(md),
                    )
                },
            )),
            // Sleeps the number of milliseconds in the message.
            "Sleep" => Box::pin(server::unary(
                call,
                BytesCodec,
                move |req: Request<Bytes>| async move {
                    let guard = CancelGuard::new(&this.events, "sleep cancelled");
                    let ms = u32_at(req.get_ref(), 0);
                    tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
                    guard.disarm();
                    let _ = this.events.send("sleep done");
                    Ok(Response::new(Bytes::from_static(b"slept")))
                },
            )),
            "Panic" => Box::pin(server::unary(
                call,
                BytesCodec,
                |_req: Request<Bytes>| async move {
                    if true {
                        panic!("boom in handler");
                    }
                    Ok::<_, Status>(Response::new(Bytes::new()))
                },
            )),
            // Message: count (u32), size (u32): sends `count` messages of `size`.
            "ServerStream" => Box::pin(server::server_streaming(
                call,
                BytesCodec,
                move |req: Request<Bytes>, mut sink: ResponseSink<Bytes>| async move {
                    let guard = CancelGuard::new(&this.events, "server stream cancelled");
                    let (count, size) = (u32_at(req.get_ref(), 0), u32_at(req.get_ref(), 4));
                    let mut md = MetadataMap::new();
                    md.insert("x-stream", "yes").unwrap();
                    sink.send_header(md)?;
                    for i in 0..count {
                        let mut msg = vec![(i % 251) as u8; size as usize];
                        if !msg.is_empty() {
                            msg[0] = (i % 256) as u8;
                        }
                        sink.send(Bytes::from(msg)).await?;
                    }
                    let mut tr = MetadataMap::new();
                    tr.insert("x-sent", &count.to_string()).unwrap();
                    sink.set_trailer(tr)?;
                    guard.disarm();
                    Ok(())
                },
            )),
            // Returns the total bytes and count of messages received.
            "ClientStream" => Box::pin(server::client_streaming(
                call,
                BytesCodec,
                |req: Request<Streaming<Bytes>>| async move {
                    let mut stream = req.into_inner();
                    let (mut total, mut count) = (0u64, 0u32);
                    while let Some(msg) = stream.message().await? {
                        total += msg.len() as u64;
                        count += 1;
                    }
                    let mut out = total.to_be_bytes().to_vec();
                    out.extend_from_slice(&count.to_be_bytes());
                    Ok(Response::new(Bytes::from(out)))
                },
            )),
            // Reads one message, then gives up on the call while the client
            // is still sending: the server cancelling a call.
            "GiveUp" => Box::pin(server::client_streaming(
                call,
                BytesCodec,
                move |req: Request<Streaming<Bytes>>| async move {
                    let mut stream = req.into_inner();
                    stream.message().await?;
                    let _ = this.events.send("gave up");
                    Err::<Response<Bytes>, _>(Status::cancelled("the handler gave up"))
                },
            )),
            // Echoes each message; an empty message ends with an error.
            "Bidi" => Box::pin(server::streaming(
                call,
                BytesCodec,
                move |req: Request<Streaming<Bytes>>, mut sink: ResponseSink<Bytes>| async move {
                    let guard = CancelGuard::new(&this.events, "bidi cancelled");
                    let mut stream = req.into_inner();
                    while let Some(msg) = stream.message().await? {
                        if msg.is_empty() {
                            guard.disarm();
                            return Err(Status::aborted("empty message"));
                        }
                        sink.send(msg).await?;
                    }
                    guard.disarm();
                    Ok(())
                },
            )),
            _ => Box::pin(call.unimplemented()),
        }
    }
}

struct Fixture {
    addr: std::net::SocketAddr,
    server: Server,
    events: mpsc::UnboundedReceiver<&'static str>,
    calls: Arc<AtomicUsize>,
}

async fn start() -> Fixture {
    start_with(|b| b).await
}

async fn start_with(f: impl FnOnce(server::ServerBuilder) -> server::ServerBuilder) -> Fixture {
    let (tx, events) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = TestService {
        events: tx,
        calls: Arc::clone(&calls),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = f(Server::builder().add_service(svc)).build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    Fixture {
        addr,
        server,
        events,
        calls,
    }
}

impl Fixture {
    fn channel(&self) -> Channel {
        Channel::from_target(&self.addr.to_string()).unwrap()
    }

    async fn next_event(&mut self) -> &'static str {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("event in time")
            .expect("event")
    }
}

fn path(p: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(p)
}

fn be(parts: &[u32]) -> Bytes {
    Bytes::from(
        parts
            .iter()
            .flat_map(|p| p.to_be_bytes())
            .collect::<Vec<_>>(),
    )
}

#[tokio::test]
async fn unary_round_trip_and_http_target_form() {
    let fx = start().await;
    for target in [fx.addr.to_string(), format!("http://{}", fx.addr)] {
        let ch = Channel::from_target(&target).unwrap();
        let resp = ch
            .unary(
                path("/test.Svc/Unary"),
                Request::new(Bytes::from_static(b"hi")),
                BytesCodec,
            )
            .await
            .unwrap();
        assert_eq!(resp.into_inner(), "hi");
    }
}

#[tokio::test]
async fn handler_sees_peer_and_deadline() {
    let fx = start().await;
    let ch = fx.channel();
    let resp = ch
        .unary(
            path("/test.Svc/Unary"),
            Request::new(Bytes::new()),
            BytesCodec,
        )
        .await
        .unwrap();
    assert!(resp
        .metadata()
        .get("peer")
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(resp.metadata().get("deadline"), Some("none"));
    let req = Request::new(Bytes::new()).with_timeout(Duration::from_secs(30));
    let resp = ch
        .unary(path("/test.Svc/Unary"), req, BytesCodec)
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("deadline"), Some("set"));
}

#[tokio::test]
async fn server_send_limit_and_per_call_limits() {
    let fx = start_with(|b| b.max_encoding_message_size(100)).await;
    let ch = fx.channel();
    let err = ch
        .unary(
            path("/test.Svc/Unary"),
            Request::new(Bytes::from(vec![0u8; 101])),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("101 vs. 100"), "{err}");
    // Per-call overrides of the channel's limits.
    let mut req = Request::new(Bytes::from(vec![0u8; 50]));
    req.options_mut().max_decoding_message_size = Some(10);
    let err = ch
        .unary(path("/test.Svc/Unary"), req, BytesCodec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    let mut req = Request::new(Bytes::from(vec![0u8; 50]));
    req.options_mut().max_encoding_message_size = Some(10);
    let err = ch
        .unary(path("/test.Svc/Unary"), req, BytesCodec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn max_concurrent_streams_queues_the_excess() {
    // One stream at a time: the second call waits for the first, then runs.
    let mut fx = start_with(|b| b.max_concurrent_streams(1)).await;
    let ch = fx.channel();
    ch.connect().await.unwrap();
    let slow = tokio::spawn({
        let ch = ch.clone();
        async move {
            ch.unary(
                path("/test.Svc/Sleep"),
                Request::new(be(&[200])),
                BytesCodec,
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fast = ch
        .unary(
            path("/test.Svc/Unary"),
            Request::new(Bytes::from_static(b"f")),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(fast.into_inner(), "f");
    // The fast call could only start once the slow one had finished, so its
    // event is already there (without the limit it would not be yet).
    assert_eq!(fx.events.try_recv(), Ok("sleep done"));
    slow.await.unwrap().unwrap();
}

#[tokio::test]
async fn metadata_round_trip_ascii_binary_repeated() {
    let fx = start().await;
    let ch = fx.channel();
    let mut req = Request::new(Bytes::from_static(b"m"));
    let md = req.metadata_mut();
    md.append("x-multi", "one").unwrap();
    md.append("x-multi", "two").unwrap();
    md.insert_bin("x-blob-bin", [0u8, 0xff, 0x10, 0x80])
        .unwrap();
    md.insert("x-trailer-note", "in trailers").unwrap();
    md.insert_bin("x-trailer-raw-bin", b"\x00\x01").unwrap();
    let resp = ch
        .unary(path("/test.Svc/Unary"), req, BytesCodec)
        .await
        .unwrap();
    assert_eq!(
        resp.metadata().get_all("x-multi").collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert_eq!(
        resp.metadata().get_bin("x-blob-bin"),
        Some(vec![0, 0xff, 0x10, 0x80])
    );
    assert_eq!(resp.trailers().get("x-trailer-note"), Some("in trailers"));
    assert_eq!(
        resp.trailers().get_bin("x-trailer-raw-bin"),
        Some(vec![0, 1])
    );
    assert!(
        resp.metadata().get("content-type").is_none(),
        "reserved headers are not metadata"
    );
}

#[tokio::test]
async fn status_with_details_and_non_ascii_message() {
    let fx = start().await;
    let ch = fx.channel();
    for code in [Code::NotFound, Code::InvalidArgument, Code::Unauthenticated] {
        let req = Request::new(Bytes::from(vec![code.as_i32() as u8]));
        let err = ch
            .unary(path("/test.Svc/Fail"), req, BytesCodec)
            .await
            .unwrap_err();
        assert_eq!(err.code(), code);
        assert_eq!(err.message(), "tabs\tand ünïcödé 100%\r\n");
        assert_eq!(&err.details()[..], b"\x08\x05\x12\x01x");
        assert_eq!(err.metadata().get("x-why"), Some("because"));
    }
    // A handler returning OK as an error is reported as UNKNOWN.
    let err = ch
        .unary(
            path("/test.Svc/Fail"),
            Request::new(Bytes::from_static(&[0])),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
}

#[tokio::test]
async fn unimplemented_method_and_service() {
    let fx = start().await;
    let ch = fx.channel();
    for p in ["/test.Svc/Nope", "/test.Other/Unary"] {
        let err = ch
            .unary(
                PathAndQuery::from_static(p),
                Request::new(Bytes::new()),
                BytesCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{p}");
    }
}

#[tokio::test]
async fn large_messages_both_ways() {
    let fx = start_with(|b| b.max_decoding_message_size(8 << 20)).await;
    let ch = Channel::builder(fx.addr.to_string())
        .max_decoding_message_size(8 << 20)
        .build()
        .unwrap();
    let big: Vec<u8> = (0..(3 << 20) + 12345).map(|i| (i % 253) as u8).collect();
    let resp = ch
        .unary(
            path("/test.Svc/Unary"),
            Request::new(Bytes::from(big.clone())),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(resp.into_inner(), big);
    // A stream of large messages too.
    let req = Request::new(be(&[3, 3 << 20]));
    let mut stream = ch
        .server_streaming(path("/test.Svc/ServerStream"), req, BytesCodec)
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(m) = stream.message().await.unwrap() {
        assert_eq!(m.len(), 3 << 20);
        n += 1;
    }
    assert_eq!(n, 3);
}

#[tokio::test]
async fn oversize_messages_are_resource_exhausted() {
    let fx = start_with(|b| b.max_decoding_message_size(1000)).await;
    // Request over the server's limit.
    let ch = fx.channel();
    let err = ch
        .unary(
            path("/test.Svc/Unary"),
            Request::new(Bytes::from(vec![1u8; 1001])),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    // Response over the client's limit.
    let ch = Channel::builder(fx.addr.to_string())
        .max_decoding_message_size(100)
        .build()
        .unwrap();
    let err = ch
        .unary(
            path("/test.Svc/Unary"),
            Request::new(Bytes::from(vec![1u8; 500])),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    // Over the client's send limit: refused before sending.
    let ch = Channel::builder(fx.addr.to_string())
        .max_encoding_message_size(10)
        .build()
        .unwrap();
    let err = ch
        .unary(
            path("/test.Svc/Unary"),
            Request::new(Bytes::from(vec![1u8; 11])),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn server_streaming_with_headers_and_trailers() {
    let fx = start().await;
    let ch = fx.channel();
    let resp = ch
        .server_streaming(
            path("/test.Svc/ServerStream"),
            Request::new(be(&[100, 10])),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-stream"), Some("yes"));
    let mut stream = resp.into_inner();
    let mut i = 0u32;
    while let Some(m) = stream.message().await.unwrap() {
        assert_eq!(m[0], (i % 256) as u8);
        i += 1;
    }
    assert_eq!(i, 100);
    assert_eq!(stream.trailers().unwrap().get("x-sent"), Some("100"));
    // And the Stream impl ends after the end.
    use std::future::poll_fn;
    let next =
        poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut stream), cx)).await;
    assert!(next.is_none());
}

#[tokio::test]
async fn client_streaming_sums() {
    let fx = start().await;
    let ch = fx.channel();
    let mut call = ch
        .client_streaming::<Bytes, Bytes, _>(
            path("/test.Svc/ClientStream"),
            Request::new(()),
            BytesCodec,
        )
        .await
        .unwrap();
    for i in 0..50u32 {
        call.send(Bytes::from(vec![0u8; i as usize])).await.unwrap();
    }
    let resp = call.close_and_recv().await.unwrap().into_inner();
    assert_eq!(
        u64::from_be_bytes(resp[..8].try_into().unwrap()),
        (0..50).sum::<u64>()
    );
    assert_eq!(u32_at(&resp, 8), 50);
}

#[tokio::test]
async fn bidi_ping_pong_and_error_status() {
    let fx = start().await;
    let ch = fx.channel();
    let (mut tx, mut rx) = ch
        .streaming::<Bytes, Bytes, _>(path("/test.Svc/Bidi"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    for i in 0..20u8 {
        tx.send(Bytes::from(vec![i; 3])).await.unwrap();
        let got = rx.message().await.unwrap().unwrap();
        assert_eq!(&got[..], &[i; 3]);
    }
    tx.close().unwrap();
    assert!(rx.message().await.unwrap().is_none());
    // An error status ends the stream with that status.
    let (mut tx, mut rx) = ch
        .streaming::<Bytes, Bytes, _>(path("/test.Svc/Bidi"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    tx.send(Bytes::new()).await.unwrap();
    let err = rx.message().await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(err.message(), "empty message");
}

#[tokio::test]
async fn deadline_is_seen_by_both_sides() {
    let mut fx = start().await;
    let ch = fx.channel();
    let req = Request::new(be(&[10_000])).with_timeout(Duration::from_millis(100));
    let started = std::time::Instant::now();
    let err = ch
        .unary(path("/test.Svc/Sleep"), req, BytesCodec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The server cancelled the handler (its own timer, or the client's reset).
    assert_eq!(fx.next_event().await, "sleep cancelled");
}

#[tokio::test]
async fn deadline_on_streams() {
    let mut fx = start().await;
    let ch = fx.channel();
    let req = Request::new(()).with_timeout(Duration::from_millis(100));
    let (_tx, mut rx) = ch
        .streaming::<Bytes, Bytes, _>(path("/test.Svc/Bidi"), req, BytesCodec)
        .await
        .unwrap();
    let err = rx.message().await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert_eq!(fx.next_event().await, "bidi cancelled");
}

#[tokio::test]
async fn client_cancellation_reaches_the_handler() {
    let mut fx = start().await;
    let ch = fx.channel();
    // Drop a unary call in flight.
    let call = ch.unary(
        path("/test.Svc/Sleep"),
        Request::new(be(&[10_000])),
        BytesCodec,
    );
    let _ = tokio::time::timeout(Duration::from_millis(100), call).await;
    assert_eq!(fx.next_event().await, "sleep cancelled");
    // Drop a response stream in the middle.
    let resp = ch
        .server_streaming(
            path("/test.Svc/ServerStream"),
            Request::new(be(&[1_000_000, 1000])),
            BytesCodec,
        )
        .await
        .unwrap();
    let mut stream = resp.into_inner();
    stream.message().await.unwrap().unwrap();
    drop(stream);
    assert_eq!(fx.next_event().await, "server stream cancelled");
    // Cancel a bidi call explicitly.
    let (mut tx, mut rx) = ch
        .streaming::<Bytes, Bytes, _>(path("/test.Svc/Bidi"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    tx.send(Bytes::from_static(b"x")).await.unwrap();
    rx.message().await.unwrap().unwrap();
    tx.cancel();
    assert_eq!(fx.next_event().await, "bidi cancelled");
    assert!(rx.message().await.is_err());
}

/// The handler cancels the call while the client still streams 64 KiB
/// messages (more than the flow-control window holds): the client's sends
/// stop failing promptly instead of waiting for window, and the call ends
/// with the handler's CANCELLED status and message.
#[tokio::test]
async fn handler_cancelling_a_call_ends_the_client_stream() {
    let mut fx = start().await;
    let ch = fx.channel();
    let mut call = ch
        .client_streaming::<Bytes, Bytes, _>(path("/test.Svc/GiveUp"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    call.send(Bytes::from_static(b"first")).await.unwrap();
    assert_eq!(fx.next_event().await, "gave up");
    let chunk = Bytes::from(vec![7u8; 64 << 10]);
    let mut sent = 0;
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if call.send(chunk.clone()).await.is_err() {
                return;
            }
            sent += 1;
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "sends went on after the handler gave up ({sent} sent)"
    );
    let err = call.close_and_recv().await.unwrap_err();
    assert_eq!(err.code(), Code::Cancelled, "{err}");
    assert_eq!(err.message(), "the handler gave up");
}

#[tokio::test]
async fn server_stop_fails_calls_in_flight_with_unavailable() {
    // A hard stop cancels in-flight calls; the client gets UNAVAILABLE with
    // the reason, and the handler is dropped.
    let mut fx = start().await;
    let ch = fx.channel();
    let call = tokio::spawn({
        let ch = ch.clone();
        async move {
            ch.unary(
                path("/test.Svc/Sleep"),
                Request::new(be(&[10_000])),
                BytesCodec,
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    fx.server.stop();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("server stopped"), "{err}");
    assert_eq!(fx.next_event().await, "sleep cancelled");
}

#[tokio::test]
async fn handler_panic_fails_only_that_call() {
    let fx = start().await;
    let ch = fx.channel();
    let err = ch
        .unary(
            path("/test.Svc/Panic"),
            Request::new(Bytes::new()),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert!(err.message().contains("boom in handler"), "{err}");
    let ok = ch
        .unary(
            path("/test.Svc/Unary"),
            Request::new(Bytes::from_static(b"still up")),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(ok.into_inner(), "still up");
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_calls_finish() {
    let mut fx = start().await;
    let ch = fx.channel();
    let call = tokio::spawn({
        let ch = ch.clone();
        async move {
            ch.unary(
                path("/test.Svc/Sleep"),
                Request::new(be(&[300])),
                BytesCodec,
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let server = fx.server.clone();
    let stop = tokio::spawn(async move { server.graceful_stop().await });
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.into_inner(), "slept");
    assert_eq!(fx.next_event().await, "sleep done");
    tokio::time::timeout(Duration::from_secs(5), stop)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fx.server.connection_count(), 0);
    // New calls fail: nothing is listening any more.
    let err = Channel::from_target(&fx.addr.to_string())
        .unwrap()
        .unary(
            path("/test.Svc/Unary"),
            Request::new(Bytes::new()),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_calls_on_one_channel() {
    let fx = start().await;
    let ch = fx.channel();
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        let ch = ch.clone();
        tasks.push(tokio::spawn(async move {
            let msg = Bytes::from(i.to_be_bytes().to_vec());
            let resp = ch
                .unary(
                    path("/test.Svc/Unary"),
                    Request::new(msg.clone()),
                    BytesCodec,
                )
                .await?;
            assert_eq!(resp.into_inner(), msg);
            Ok::<_, Status>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(fx.calls.load(Ordering::Relaxed), 1000);
}

#[tokio::test]
async fn connection_failure_is_unavailable_and_channel_reconnects() {
    // Nothing listens yet.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let err = ch
        .unary(
            path("/test.Svc/Unary"),
            Request::new(Bytes::new()),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains(&addr.to_string()), "{err}");
    // A server comes up on that port; the same channel connects.
    let (tx, _rx) = mpsc::unbounded_channel();
    let svc = TestService {
        events: tx,
        calls: Arc::default(),
    };
    let server = Server::builder().add_service(svc.clone()).build();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    // The channel is in TRANSIENT_FAILURE, backing off: a fail-fast call
    // fails at once, a wait-for-ready call waits for the next attempt.
    assert_eq!(ch.state(), ferrogrpc::connectivity::State::TransientFailure);
    ch.unary(
        path("/test.Svc/Unary"),
        Request::new(Bytes::new())
            .with_wait_for_ready(true)
            .with_timeout(Duration::from_secs(10)),
        BytesCodec,
    )
    .await
    .unwrap();
    // The server goes away: the channel notices and reconnects to a new one.
    server.stop();
    tokio::time::timeout(Duration::from_secs(5), async {
        while ch.is_connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("channel saw the connection close");
    let server = Server::builder().add_service(svc).build();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    ch.unary(
        path("/test.Svc/Unary"),
        Request::new(Bytes::new()),
        BytesCodec,
    )
    .await
    .unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn unix_socket_server_and_channel() {
    let dir = std::env::temp_dir().join(format!("ferrogrpc-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("e2e.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let server = Server::builder()
        .add_service(TestService {
            events: tx,
            calls: Arc::default(),
        })
        .build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    for target in [
        format!("unix:{}", sock.display()),
        sock.display().to_string(),
    ] {
        let ch = Channel::from_target(&target).unwrap();
        let resp = ch
            .unary(
                path("/test.Svc/Unary"),
                Request::new(Bytes::from_static(b"unix")),
                BytesCodec,
            )
            .await
            .unwrap();
        assert_eq!(resp.into_inner(), "unix");
    }
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_targets_fail_at_creation() {
    for t in [
        "",
        "unix:",
        "http://",
        "a/b:1",
        "host:port:x/y",
        "localhost:notaport",
        "localhost:70000",
        "ipv4:1.2.3.4:80,::1",
        "ipv6:1.2.3.4",
        "dns:///",
    ] {
        let err = Channel::from_target(t).unwrap_err();
        assert!(err.to_string().contains("target"), "{t:?}: {err}");
    }
    for t in [
        "localhost",
        "[::1]:50051",
        "dns:///localhost:50051",
        "dns://8.8.8.8/example.com:443",
        "ipv4:127.0.0.1:1,127.0.0.2:2",
        "ipv6:[::1]:50051",
        "passthrough:///localhost:50051",
        "unix:relative.sock",
        "unix-abstract:name",
    ] {
        assert!(Channel::from_target(t).is_ok(), "{t:?}");
    }
}

#[tokio::test]
async fn naming_schemes_reach_the_server() {
    let fx = start().await;
    let port = fx.addr.port();
    // The first ipv4 address is refused; the channel tries the next.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    for target in [
        format!("dns:///127.0.0.1:{port}"),
        format!("ipv4:127.0.0.1:{dead_port},127.0.0.1:{port}"),
        format!("passthrough:///127.0.0.1:{port}"),
        format!("localhost:{port}"),
    ] {
        let ch = Channel::from_target(&target).unwrap();
        let resp = ch
            .unary(
                path("/test.Svc/Unary"),
                Request::new(Bytes::from_static(b"n")),
                BytesCodec,
            )
            .await;
        assert_eq!(
            resp.map(Response::into_inner).ok(),
            Some(Bytes::from_static(b"n")),
            "{target}"
        );
    }
}
