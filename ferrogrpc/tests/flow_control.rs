//! Dynamic flow-control windows (BDP estimation) over a link with latency:
//! the receiver's windows grow past their small initial size.

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    server::{self, ResponseSink, Server, ServerCall, Service},
    Request,
};
use http::uri::PathAndQuery;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
    time::Instant,
};

/// Streams `n` messages of 64 KiB, `n` being the request's first byte.
struct Download;

impl Service for Download {
    fn name(&self) -> &'static str {
        "f.Download"
    }

    fn call(&self, _method: &str, call: ServerCall) -> server::BoxFuture {
        Box::pin(server::server_streaming(
            call,
            BytesCodec,
            |req: Request<Bytes>, mut sink: ResponseSink<Bytes>| async move {
                let chunk = Bytes::from(vec![7u8; 64 << 10]);
                for _ in 0..req.get_ref()[0] {
                    sink.send(chunk.clone()).await?;
                }
                Ok(())
            },
        ))
    }
}

/// Copies `from` to `to`, delivering each chunk `delay` after it was read,
/// in order, without limiting bandwidth. Calls `inspect` on the bytes.
fn delayed_copy(
    mut from: impl AsyncRead + Unpin + Send + 'static,
    mut to: impl AsyncWrite + Unpin + Send + 'static,
    delay: Duration,
    mut inspect: impl FnMut(&[u8]) + Send + 'static,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    inspect(&buf[..n]);
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
}

/// Parses the client's frames and records the largest
/// SETTINGS_INITIAL_WINDOW_SIZE it announces.
struct SettingsWatch {
    buf: Vec<u8>,
    preface_left: usize,
    max_window: Arc<AtomicU32>,
}

impl SettingsWatch {
    fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.buf.len());
            self.buf.drain(..n);
            self.preface_left -= n;
        }
        while self.buf.len() >= 9 {
            let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
            if self.buf.len() < 9 + len {
                return;
            }
            let (kind, flags) = (self.buf[3], self.buf[4]);
            if kind == 0x4 && flags & 0x1 == 0 {
                for param in self.buf[9..9 + len].chunks_exact(6) {
                    if u16::from_be_bytes([param[0], param[1]]) == 0x4 {
                        let value = u32::from_be_bytes([param[2], param[3], param[4], param[5]]);
                        self.max_window.fetch_max(value, Ordering::SeqCst);
                    }
                }
            }
            self.buf.drain(..9 + len);
        }
    }
}

/// A proxy adding `delay` each way; returns its address and the largest
/// initial window the client announced.
async fn latency_proxy(
    target: std::net::SocketAddr,
    delay: Duration,
) -> (std::net::SocketAddr, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let max_window = Arc::new(AtomicU32::new(0));
    let mw = Arc::clone(&max_window);
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(target).await.unwrap();
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let mut watch = SettingsWatch {
                buf: Vec::new(),
                preface_left: 24,
                max_window: Arc::clone(&mw),
            };
            delayed_copy(cr, sw, delay, move |b| watch.feed(b));
            delayed_copy(sr, cw, delay, |_| {});
        }
    });
    (addr, max_window)
}

async fn download(dynamic: Option<bool>, messages: u8) -> u32 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = listener.local_addr().unwrap();
    let server = Server::builder().add_service(Download).build();
    tokio::spawn(async move { server.serve_listener(listener).await });
    let (proxy, max_window) = latency_proxy(server_addr, Duration::from_millis(20)).await;
    let mut builder = Channel::builder(proxy.to_string())
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535);
    if let Some(on) = dynamic {
        builder = builder.dynamic_window(on);
    }
    let ch = builder.build().unwrap();
    let req = Request::new(Bytes::from(vec![messages])).with_timeout(Duration::from_secs(60));
    let mut stream = ch
        .server_streaming(
            PathAndQuery::from_static("/f.Download/Get"),
            req,
            BytesCodec,
        )
        .await
        .unwrap()
        .into_inner();
    let mut total = 0usize;
    while let Some(m) = stream.message().await.unwrap() {
        total += m.len();
    }
    assert_eq!(total, usize::from(messages) * (64 << 10));
    max_window.load(Ordering::SeqCst)
}

#[tokio::test]
async fn bdp_grows_the_receive_window_on_a_slow_link() {
    // 8 MiB down a 40 ms round trip, starting from 64 KiB windows.
    let announced = download(Some(true), 128).await;
    assert!(
        announced > 4 * 65_535,
        "the client announced a grown window: {announced} bytes"
    );
}

#[tokio::test]
async fn explicit_windows_stay_fixed() {
    // Window sizes set without dynamic_window(true): BDP is off, as in gRPC-Go.
    let announced = download(None, 16).await;
    assert!(announced <= 65_535, "{announced}");
}

/// Many one-byte messages that wait unread: `Upload` counts its requests
/// once `go` is notified; `Download` sends `n` (the request's two bytes)
/// messages, then notifies `sent`.
#[derive(Clone, Default)]
struct Tiny {
    go: Arc<tokio::sync::Notify>,
    sent: Arc<tokio::sync::Notify>,
}

impl Service for Tiny {
    fn name(&self) -> &'static str {
        "f.Tiny"
    }

    fn call(&self, method: &str, call: ServerCall) -> server::BoxFuture {
        let this = self.clone();
        match method {
            "Upload" => Box::pin(server::client_streaming(
                call,
                BytesCodec,
                move |req: Request<ferrogrpc::Streaming<Bytes>>| async move {
                    this.go.notified().await;
                    let mut requests = req.into_inner();
                    let mut n = 0u32;
                    while requests.message().await?.is_some() {
                        n += 1;
                    }
                    Ok(ferrogrpc::Response::new(Bytes::from(
                        n.to_be_bytes().to_vec(),
                    )))
                },
            )),
            _ => Box::pin(server::server_streaming(
                call,
                BytesCodec,
                move |req: Request<Bytes>, mut sink: ResponseSink<Bytes>| async move {
                    let n = u16::from_be_bytes([req.get_ref()[0], req.get_ref()[1]]);
                    for _ in 0..n {
                        sink.send(Bytes::from_static(b"x")).await?;
                    }
                    this.sent.notify_one();
                    Ok(())
                },
            )),
        }
    }
}

#[tokio::test]
async fn many_small_messages_may_wait_unread_on_either_side() {
    // h2's default budget for unread DATA frames (half the connection
    // window) ended the connection after about 4,000 of these.
    const N: u16 = 12_000;
    let tiny = Tiny::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder().add_service(tiny.clone()).build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    let ch = Channel::from_target(&addr.to_string()).unwrap();

    // To a handler that reads only after all were sent.
    let mut call = ch
        .client_streaming::<Bytes, Bytes, _>(
            PathAndQuery::from_static("/f.Tiny/Upload"),
            Request::new(()),
            BytesCodec,
        )
        .await
        .unwrap();
    for i in 0..N {
        if let Err(e) = call.send(Bytes::from_static(b"x")).await {
            panic!("message {i}: {e}");
        }
    }
    tiny.go.notify_one();
    let count = call.close_and_recv().await.unwrap().into_inner();
    assert_eq!(count[..], u32::from(N).to_be_bytes());

    // To a client that reads only after all were sent.
    let mut stream = ch
        .server_streaming(
            PathAndQuery::from_static("/f.Tiny/Download"),
            Request::new(Bytes::from(N.to_be_bytes().to_vec())),
            BytesCodec,
        )
        .await
        .unwrap()
        .into_inner();
    tiny.sent.notified().await;
    let mut got = 0u16;
    while stream.message().await.unwrap().is_some() {
        got += 1;
    }
    assert_eq!(got, N);
    server.stop();
}
