//! `PreparedMsg` (gRPC-Go's `grpc.PreparedMsg`): a message encoded and
//! compressed once, then sent on many streams of a loopback server, with a
//! codec that counts its encodes; and the sends it refuses.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use ferrogrpc::{
    client::{Channel, ClientStreamingCall},
    codec::{BytesCodec, Codec},
    metadata::MetadataMap,
    server::{self, BoxFuture, ResponseSink, Server, ServerCall, Service},
    Code, PreparedMsg, Request, Response, Status, Streaming,
};
use http::uri::PathAndQuery;
use tokio::sync::{mpsc, oneshot};

const STREAMS: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Passes bytes through, counting how many messages it encoded.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicUsize>);

impl Counting {
    fn encodes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Codec<Bytes, Bytes> for Counting {
    fn encode(&mut self, item: &Bytes, dst: &mut BytesMut) -> Result<(), Status> {
        self.0.fetch_add(1, Ordering::SeqCst);
        dst.extend_from_slice(item);
        Ok(())
    }

    fn decode(&mut self, src: Bytes) -> Result<Bytes, Status> {
        Ok(src)
    }
}

/// A subscriber's response stream, handed to the test, and how the test
/// lets its handler end.
type Subscriber = (ResponseSink<Bytes>, oneshot::Sender<()>);

/// `Collect` answers with the concatenation of the requests it got;
/// `Subscribe` hands its response sink to the test (compressing with the
/// algorithm named in the request) and ends when the test says so.
struct Feed {
    codec: Counting,
    subscribers: mpsc::UnboundedSender<Subscriber>,
}

impl Service for Feed {
    fn name(&self) -> &'static str {
        "prep.Feed"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        match method {
            "Collect" => Box::pin(server::client_streaming(
                call,
                BytesCodec,
                |req: Request<Streaming<Bytes>>| async move {
                    let mut stream = req.into_inner();
                    let mut all = BytesMut::new();
                    while let Some(msg) = stream.message().await? {
                        all.extend_from_slice(&msg);
                    }
                    Ok(Response::new(all.freeze()))
                },
            )),
            _ => {
                let subscribers = self.subscribers.clone();
                Box::pin(server::server_streaming(
                    call,
                    self.codec.clone(),
                    move |req: Request<Bytes>, mut sink: ResponseSink<Bytes>| async move {
                        let name = std::str::from_utf8(req.get_ref()).unwrap();
                        sink.set_compression(if name == "gzip" { "gzip" } else { "identity" })?;
                        sink.send_header(MetadataMap::new())?;
                        let (done, wait) = oneshot::channel();
                        let _ = subscribers.send((sink, done));
                        let _ = wait.await;
                        Ok(())
                    },
                ))
            }
        }
    }
}

struct Fixture {
    server: Server,
    addr: String,
    server_codec: Counting,
    subscribers: mpsc::UnboundedReceiver<Subscriber>,
}

async fn start() -> Fixture {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server_codec = Counting::default();
    let (tx, subscribers) = mpsc::unbounded_channel();
    let server = Server::builder()
        .add_service(Feed {
            codec: server_codec.clone(),
            subscribers: tx,
        })
        .build();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve_listener(listener).await });
    Fixture {
        server,
        addr,
        server_codec,
        subscribers,
    }
}

/// A message that compresses well.
fn message(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| b"prepared "[i % 9]).collect::<Vec<u8>>())
}

async fn collect(channel: &Channel, codec: &Counting) -> ClientStreamingCall<Bytes, Bytes> {
    channel
        .client_streaming(
            PathAndQuery::from_static("/prep.Feed/Collect"),
            Request::new(()).with_timeout(TIMEOUT),
            codec.clone(),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_prepares_once_and_sends_to_a_hundred_streams() {
    let fx = start().await;
    let channel = Channel::builder(fx.addr.clone())
        .send_compressed("gzip")
        .build()
        .unwrap();
    let codec = Counting::default();
    let mut calls = Vec::new();
    for _ in 0..STREAMS {
        calls.push(collect(&channel, &codec).await);
    }
    let msg = message(4000);
    let prepared = calls[0].prepare(&msg).unwrap();
    assert_eq!(prepared.compression(), Some("gzip"));
    assert!(prepared.is_compressed());
    for call in &mut calls {
        call.send_prepared(&prepared).await.unwrap();
    }
    for call in calls {
        let got = call.close_and_recv().await.unwrap().into_inner();
        assert_eq!(got, msg);
    }
    assert_eq!(codec.encodes(), 1, "the message was encoded again");
    fx.server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_prepares_once_and_sends_to_a_hundred_subscribers() {
    let mut fx = start().await;
    let channel = Channel::builder(fx.addr.clone()).build().unwrap();
    let subscribe = |compression: &'static str| {
        let channel = channel.clone();
        tokio::spawn(async move {
            let mut stream = channel
                .server_streaming(
                    PathAndQuery::from_static("/prep.Feed/Subscribe"),
                    Request::new(Bytes::from_static(compression.as_bytes())).with_timeout(TIMEOUT),
                    BytesCodec,
                )
                .await?
                .into_inner();
            let mut got = Vec::new();
            while let Some(msg) = stream.message().await? {
                got.push(msg);
            }
            Ok::<_, Status>(got)
        })
    };
    let clients: Vec<_> = (0..STREAMS).map(|_| subscribe("identity")).collect();
    let mut sinks = Vec::new();
    for _ in 0..STREAMS {
        sinks.push(fx.subscribers.recv().await.unwrap());
    }
    let msg = message(4000);
    let prepared = sinks[0].0.prepare(&msg).unwrap();
    assert_eq!(prepared.compression(), None);
    for (sink, _) in &mut sinks {
        sink.send_prepared(&prepared).await.unwrap();
    }

    // A subscriber whose stream is compressed cannot take it.
    let gzip_client = subscribe("gzip");
    let (mut gzip_sink, gzip_done) = fx.subscribers.recv().await.unwrap();
    let err = gzip_sink.send_prepared(&prepared).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().contains("compression"), "{}", err.message());
    drop(gzip_sink);
    let _ = gzip_done.send(());
    assert_eq!(gzip_client.await.unwrap().unwrap(), Vec::<Bytes>::new());

    for (sink, done) in sinks {
        drop(sink);
        let _ = done.send(());
    }
    for client in clients {
        assert_eq!(client.await.unwrap().unwrap(), vec![msg.clone()]);
    }
    assert_eq!(
        fx.server_codec.encodes(),
        1,
        "the message was encoded again"
    );
    fx.server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_other_settings_or_a_lower_size_limit_is_refused() {
    let fx = start().await;
    let codec = Counting::default();
    let gzip = Channel::builder(fx.addr.clone())
        .send_compressed("gzip")
        .build()
        .unwrap();
    let plain = Channel::builder(fx.addr.clone()).build().unwrap();
    let msg = message(4000);

    let mut compressed = collect(&gzip, &codec).await;
    let prepared = compressed.prepare(&msg).unwrap();
    assert!(prepared.is_compressed());

    // Sending it would give the server gzip bytes with no grpc-encoding.
    let mut call = collect(&plain, &codec).await;
    let err = call.send_prepared(&prepared).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().contains("\"gzip\""), "{}", err.message());
    // Nothing went out: the call goes on with what it sends next.
    call.send(Bytes::from_static(b"next")).await.unwrap();
    assert_eq!(call.close_and_recv().await.unwrap().into_inner(), "next");

    // Compression turned off for the next messages is a mismatch too.
    compressed.set_message_compression(false);
    let err = compressed.send_prepared(&prepared).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    compressed.set_message_compression(true);
    compressed.send_prepared(&prepared).await.unwrap();
    assert_eq!(compressed.close_and_recv().await.unwrap().into_inner(), msg);

    // A message prepared apart from any stream, over a stream's limit.
    let standalone = PreparedMsg::encode(&mut codec.clone(), &msg, None).unwrap();
    let small = Channel::builder(fx.addr.clone())
        .max_encoding_message_size(1000)
        .build()
        .unwrap();
    let mut call = collect(&small, &codec).await;
    let err = call.send_prepared(&standalone).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    // It fits a stream without the limit.
    let mut call = collect(&plain, &codec).await;
    call.send_prepared(&standalone).await.unwrap();
    assert_eq!(call.close_and_recv().await.unwrap().into_inner(), msg);
    fx.server.stop();
}
