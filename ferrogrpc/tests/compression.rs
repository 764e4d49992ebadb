//! Compression end to end over loopback: each algorithm in both directions,
//! negotiation, per-message control, and decompression bombs with memory
//! measured by a counting allocator.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    server::{self, BoxFuture, ResponseSink, Server, ServerCall, Service},
    Code, Request, Response, Streaming,
};
use http::uri::PathAndQuery;

/// Counts live heap bytes and their peak, to show that a bomb does not
/// inflate past the limit.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the same layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn algorithm(name: &str) -> &'static str {
    match name {
        "gzip" => "gzip",
        "deflate" => "deflate",
        "zstd" => "zstd",
        "identity" => "identity",
        other => panic!("unknown algorithm {other}"),
    }
}

struct Svc;

impl Service for Svc {
    fn name(&self) -> &'static str {
        "c.Svc"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        match method {
            // Echoes; says whether the request came compressed; compresses
            // the response with the algorithm named in x-respond-with.
            "Echo" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let mut resp = Response::new(req.get_ref().clone());
                    let flag = if req.message_compressed() {
                        "yes"
                    } else {
                        "no"
                    };
                    resp.metadata_mut()
                        .insert("x-req-compressed", flag)
                        .unwrap();
                    if let Some(name) = req.metadata().get("x-respond-with") {
                        resp.set_compression(algorithm(name));
                    }
                    Ok(resp)
                },
            )),
            // One 2000-byte message per request byte; a 0 byte sends that
            // message with compression off.
            "Stream" => Box::pin(server::server_streaming(
                call,
                BytesCodec,
                |req: Request<Bytes>, mut sink: ResponseSink<Bytes>| async move {
                    if let Some(name) = req.metadata().get("x-respond-with") {
                        sink.set_compression(algorithm(name))?;
                    }
                    for &on in req.get_ref().iter() {
                        sink.set_message_compression(on != 0);
                        sink.send(Bytes::from(vec![7u8; 2000])).await?;
                    }
                    Ok(())
                },
            )),
            // Answers with one byte per request message: 1 if it came compressed.
            "Collect" => Box::pin(server::client_streaming(
                call,
                BytesCodec,
                |req: Request<Streaming<Bytes>>| async move {
                    let mut stream = req.into_inner();
                    let mut flags = Vec::new();
                    while let Some(m) = stream.message().await? {
                        assert!(m.iter().all(|b| *b == 3));
                        flags.push(u8::from(stream.last_message_compressed()));
                    }
                    Ok(Response::new(Bytes::from(flags)))
                },
            )),
            _ => Box::pin(call.unimplemented()),
        }
    }
}

async fn serve(
    f: impl FnOnce(server::ServerBuilder) -> server::ServerBuilder,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = f(Server::builder().add_service(Svc)).build();
    tokio::spawn(async move { server.serve_listener(listener).await });
    addr
}

fn path(p: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(p)
}

const ALGORITHMS: [&str; 3] = ["gzip", "deflate", "zstd"];

#[tokio::test]
async fn each_algorithm_both_directions() {
    let addr = serve(|b| b).await;
    for name in ALGORITHMS {
        let ch = Channel::builder(addr.to_string())
            .send_compressed(name)
            .build()
            .unwrap();
        let payload = Bytes::from(vec![42u8; 100_000]);
        let mut req = Request::new(payload.clone());
        req.metadata_mut().insert("x-respond-with", name).unwrap();
        let resp = ch
            .unary(path("/c.Svc/Echo"), req, BytesCodec)
            .await
            .unwrap();
        assert_eq!(
            resp.metadata().get("x-req-compressed"),
            Some("yes"),
            "{name}"
        );
        assert!(resp.message_compressed(), "{name}: response compressed");
        assert_eq!(resp.into_inner(), payload);
    }
}

#[tokio::test]
async fn server_default_compression_and_per_call_override() {
    let addr = serve(|b| b.send_compressed("zstd")).await;
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let payload = Bytes::from(vec![1u8; 10_000]);
    let resp = ch
        .unary(
            path("/c.Svc/Echo"),
            Request::new(payload.clone()),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-req-compressed"), Some("no"));
    assert!(resp.message_compressed(), "server default applies");
    // The handler turns it off for one call.
    let mut req = Request::new(payload.clone());
    req.metadata_mut()
        .insert("x-respond-with", "identity")
        .unwrap();
    let resp = ch
        .unary(path("/c.Svc/Echo"), req, BytesCodec)
        .await
        .unwrap();
    assert!(!resp.message_compressed());
    // A per-call choice on the client overrides the channel's.
    let ch = Channel::builder(addr.to_string())
        .send_compressed("gzip")
        .build()
        .unwrap();
    let req = Request::new(payload.clone()).with_compression("identity");
    let resp = ch
        .unary(path("/c.Svc/Echo"), req, BytesCodec)
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-req-compressed"), Some("no"));
    let req = Request::new(payload).with_compression("deflate");
    let resp = ch
        .unary(path("/c.Svc/Echo"), req, BytesCodec)
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-req-compressed"), Some("yes"));
}

#[tokio::test]
async fn small_messages_go_uncompressed() {
    let addr = serve(|b| b.send_compressed("gzip")).await;
    let ch = Channel::builder(addr.to_string())
        .send_compressed("gzip")
        .build()
        .unwrap();
    let resp = ch
        .unary(
            path("/c.Svc/Echo"),
            Request::new(Bytes::from_static(b"tiny")),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-req-compressed"), Some("no"));
    assert!(!resp.message_compressed());
    // With the threshold at 0 even tiny, compressible messages are compressed.
    let ch = Channel::builder(addr.to_string())
        .send_compressed("gzip")
        .min_compress_size(0)
        .build()
        .unwrap();
    let resp = ch
        .unary(
            path("/c.Svc/Echo"),
            Request::new(Bytes::from(vec![0u8; 64])),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-req-compressed"), Some("yes"));
}

#[tokio::test]
async fn per_message_control_on_both_sides() {
    let addr = serve(|b| b).await;
    let ch = Channel::builder(addr.to_string())
        .send_compressed("gzip")
        .build()
        .unwrap();
    // Server side: compressed, not, compressed.
    let mut req = Request::new(Bytes::from_static(&[1, 0, 1]));
    req.metadata_mut().insert("x-respond-with", "gzip").unwrap();
    let mut stream = ch
        .server_streaming(path("/c.Svc/Stream"), req, BytesCodec)
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        assert_eq!(m.len(), 2000);
        seen.push(stream.last_message_compressed());
    }
    assert_eq!(seen, [true, false, true]);
    // Client side.
    let mut call = ch
        .client_streaming::<Bytes, Bytes, _>(path("/c.Svc/Collect"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    for on in [false, true, true, false] {
        call.set_message_compression(on);
        call.send(Bytes::from(vec![3u8; 5000])).await.unwrap();
    }
    let flags = call.close_and_recv().await.unwrap().into_inner();
    assert_eq!(&flags[..], &[0, 1, 1, 0]);
}

#[tokio::test]
async fn unregistered_compressor_fails_the_call() {
    let addr = serve(|b| b).await;
    let ch = Channel::builder(addr.to_string())
        .send_compressed("snappy")
        .build()
        .unwrap();
    let err = ch
        .unary(path("/c.Svc/Echo"), Request::new(Bytes::new()), BytesCodec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().contains("snappy"), "{err}");
}

/// A compressed frame of `n` zero bytes.
fn bomb(algorithm: &dyn ferrogrpc::encoding::Compressor, n: usize) -> Bytes {
    let mut out = bytes::BytesMut::new();
    algorithm.compress(&vec![0u8; n], &mut out).unwrap();
    Bytes::from(out)
}

#[tokio::test(flavor = "current_thread")]
async fn decompression_bomb_is_refused_with_bounded_memory() {
    const LIMIT: usize = 1 << 20;
    // Respond to anything: the server must refuse before the handler runs.
    let addr = serve(|b| b.max_decoding_message_size(LIMIT)).await;
    for name in ALGORITHMS {
        let compressor = ferrogrpc::encoding::get_compressor(name).unwrap();
        // 64 MiB of zeros: compressed, well under the limit.
        let payload = bomb(&*compressor, 64 << 20);
        assert!(
            payload.len() < LIMIT,
            "{name}: the compressed bomb itself is under the limit"
        );
        // Measure from here: the bomb's plain form is gone.
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/c.Svc/Echo"))
            .header("content-type", "application/grpc")
            .header("grpc-encoding", name)
            .body(())
            .unwrap();
        let mut client = client.ready().await.unwrap();
        let (resp, mut send) = client.send_request(req, false).unwrap();
        let mut frame = vec![1u8];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        send.send_data(Bytes::from(frame), true).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(30), resp)
            .await
            .unwrap()
            .unwrap();
        let status = resp
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_string());
        let status = match status {
            Some(s) => s,
            None => {
                let mut body = resp.into_body();
                while body.data().await.is_some() {}
                body.trailers().await.unwrap().unwrap()["grpc-status"]
                    .to_str()
                    .unwrap()
                    .to_string()
            }
        };
        assert_eq!(status, "8", "{name}: RESOURCE_EXHAUSTED");
        let grown = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        assert!(
            grown < 8 * LIMIT,
            "{name}: peak heap grew by {grown} bytes for a 64 MiB bomb with a {LIMIT}-byte limit"
        );
    }
}

#[tokio::test]
async fn unknown_request_encoding_is_unimplemented_with_accept_encoding() {
    let addr = serve(|b| b).await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/c.Svc/Echo"))
        .header("content-type", "application/grpc")
        .header("grpc-encoding", "snappy")
        .body(())
        .unwrap();
    let mut client = client.ready().await.unwrap();
    let (resp, mut send) = client.send_request(req, false).unwrap();
    send.send_data(Bytes::from_static(&[1, 0, 0, 0, 1, 0]), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.headers()["grpc-status"], "12");
    let accept = resp.headers()["grpc-accept-encoding"].to_str().unwrap();
    for name in ALGORITHMS {
        assert!(accept.split(',').any(|a| a == name), "{accept}");
    }
}

#[tokio::test]
async fn server_never_compresses_for_a_client_that_does_not_accept() {
    let addr = serve(|b| b.send_compressed("gzip")).await;
    for accept in [None, Some("identity"), Some("deflate")] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/c.Svc/Echo"))
            .header("content-type", "application/grpc");
        if let Some(a) = accept {
            req = req.header("grpc-accept-encoding", a);
        }
        let mut client = client.ready().await.unwrap();
        let (resp, mut send) = client.send_request(req.body(()).unwrap(), false).unwrap();
        let mut frame = vec![0u8, 0, 0, 0x27, 0x10];
        frame.extend(vec![0u8; 10_000]);
        send.send_data(Bytes::from(frame), true).unwrap();
        let resp = resp.await.unwrap();
        assert!(resp.headers().get("grpc-encoding").is_none(), "{accept:?}");
        let mut body = resp.into_body();
        let first = body.data().await.unwrap().unwrap();
        assert_eq!(first[0], 0, "{accept:?}: flag 0");
    }
}
