//! Memory under attack: the server's heap is measured (a counting global
//! allocator) while a raw HTTP/2 client floods it. Each attack must leave
//! the peak heap growth bounded, whatever the attacker sends.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    server::{self, Server, ServerCall, Service},
    Request, Response, Status,
};
use http::uri::PathAndQuery;

#[path = "support/raw_h2.rs"]
mod raw_h2;

use raw_h2::Conn;

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

/// How many `Hold` handlers started: the proof an attack reached them.
static HOLDS: AtomicUsize = AtomicUsize::new(0);

/// `Hold` never answers; `Stall` never reads; `Echo` echoes.
struct Svc;

impl Service for Svc {
    fn name(&self) -> &'static str {
        "m.Svc"
    }

    fn call(&self, method: &str, call: ServerCall) -> server::BoxFuture {
        match method {
            "Stall" => Box::pin(server::client_streaming(
                call,
                BytesCodec,
                |req: Request<ferrogrpc::Streaming<Bytes>>| async move {
                    // Holds the requests unread.
                    let _requests = req;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok::<_, Status>(Response::new(Bytes::new()))
                },
            )),
            "Hold" => Box::pin(server::unary(
                call,
                BytesCodec,
                |_req: Request<Bytes>| async move {
                    HOLDS.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok::<_, Status>(Response::new(Bytes::new()))
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

fn headers(path: &str) -> [(&str, &str); 6] {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "memory.test"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
}

/// The most the heap may grow during an attack. Each attack would need far
/// more if the server buffered what it is sent: 32 MiB of unread stream
/// data, 64 MiB past the window, 20,000 open streams. (Measured on Linux:
/// about 3 MB, 1.2 MB and 0.1 MB.)
const BOUND: usize = 16 << 20;

/// Runs `attack` against a fresh server and returns the peak heap growth.
/// The attack checks the server's answer itself: an attack that never
/// reached the server would leave memory bounded too.
async fn peak_growth<F, Fut>(attack: F) -> usize
where
    F: FnOnce(std::net::SocketAddr, Server) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(Svc)
        .max_concurrent_streams(100)
        .build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    // Warm up: one normal call.
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    ch.unary(
        PathAndQuery::from_static("/m.Svc/Echo"),
        Request::new(Bytes::new()),
        BytesCodec,
    )
    .await
    .unwrap();
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    HOLDS.store(0, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(30), attack(addr, server.clone()))
        .await
        .expect("the attack finished in time");
    // The server still answers normal clients.
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    ch.unary(
        PathAndQuery::from_static("/m.Svc/Echo"),
        Request::new(Bytes::from_static(b"ok")),
        BytesCodec,
    )
    .await
    .unwrap();
    server.stop();
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

#[tokio::test(flavor = "current_thread")]
async fn floods_leave_memory_bounded() {
    // Streams past the limit, each with 16 KiB of data nobody reads.
    let grown = peak_growth(|addr, _server| async move {
        let mut conn = Conn::handshake(addr).await;
        let chunk = vec![0u8; 16 << 10];
        for i in 0..2000u32 {
            let id = 2 * i + 1;
            if conn
                .send_headers(id, &headers("/m.Svc/Hold"), false)
                .await
                .is_err()
                || conn.send_data(id, &chunk, false).await.is_err()
            {
                break;
            }
        }
        let drained = conn.drain(Duration::from_millis(500)).await;
        // At most 100 streams run (how many depends on how far the server
        // got before the refusals ended the connection); the rest are
        // refused, and past h2's count of refusals the connection is cut off.
        let holds = HOLDS.load(Ordering::SeqCst);
        assert!((1..=100).contains(&holds), "{holds} handlers ran");
        let refused = drained
            .frames
            .iter()
            .filter(|f| {
                matches!(f, raw_h2::Frame::RstStream { error_code, .. }
                    if *error_code == raw_h2::code::REFUSED_STREAM)
            })
            .count();
        assert!(
            refused > 0 || drained.goaway().is_some(),
            "{:?}",
            drained.end
        );
    })
    .await;
    assert!(grown < BOUND, "stream flood: heap grew {grown} bytes");

    // Rapid reset: open and reset streams as fast as possible.
    let grown = peak_growth(|addr, _server| async move {
        let mut conn = Conn::handshake(addr).await;
        for i in 0..20_000u32 {
            let id = 2 * i + 1;
            if conn
                .send_headers(id, &headers("/m.Svc/Hold"), true)
                .await
                .is_err()
                || conn.send_rst(id, 0x8).await.is_err()
            {
                break;
            }
        }
        let drained = conn.drain(Duration::from_millis(500)).await;
        let (_, code, _) = drained.goaway().expect("GOAWAY");
        assert_eq!(code, raw_h2::code::ENHANCE_YOUR_CALM);
    })
    .await;
    assert!(grown < BOUND, "rapid reset: heap grew {grown} bytes");

    // Ping flood.
    let grown = peak_growth(|addr, _server| async move {
        let mut conn = Conn::handshake(addr).await;
        for i in 0..50_000u64 {
            if conn.send_ping(i.to_be_bytes()).await.is_err() {
                break;
            }
        }
        let drained = conn.drain(Duration::from_millis(500)).await;
        let (_, code, debug) = drained.goaway().expect("GOAWAY");
        assert_eq!(code, raw_h2::code::ENHANCE_YOUR_CALM);
        assert_eq!(debug, b"too_many_pings");
    })
    .await;
    assert!(grown < BOUND, "ping flood: heap grew {grown} bytes");

    // Data far beyond the flow-control window on one stream.
    let grown = peak_growth(|addr, _server| async move {
        let mut conn = Conn::handshake(addr).await;
        let _ = conn.send_headers(1, &headers("/m.Svc/Hold"), false).await;
        let chunk = vec![0u8; 16 << 10];
        for _ in 0..4096 {
            if conn.send_data(1, &chunk, false).await.is_err() {
                break;
            }
        }
        let drained = conn.drain(Duration::from_millis(500)).await;
        assert_eq!(
            HOLDS.load(Ordering::SeqCst),
            1,
            "the call reached its handler"
        );
        let flow_control_error = drained.frames.iter().any(|f| {
            matches!(f, raw_h2::Frame::RstStream { stream_id: 1, error_code }
                if *error_code == raw_h2::code::FLOW_CONTROL_ERROR)
        }) || drained
            .goaway()
            .is_some_and(|(_, code, _)| code == raw_h2::code::FLOW_CONTROL_ERROR);
        assert!(flow_control_error, "{:?} {:?}", drained.frames, drained.end);
    })
    .await;
    assert!(grown < BOUND, "window overrun: heap grew {grown} bytes");

    // One-byte DATA frames nobody reads, up to the stream's window: h2
    // holds about 256 bytes for each, so 1 MiB of them would take some
    // 270 MB; the frame budget ends the connection first.
    let grown = peak_growth(|addr, _server| async move {
        let mut conn = Conn::handshake(addr).await;
        let _ = conn.send_headers(1, &headers("/m.Svc/Stall"), false).await;
        let frame = raw_h2::data_frame(1, &[0], false);
        let batch: Vec<u8> = frame
            .iter()
            .copied()
            .cycle()
            .take(frame.len() * 1000)
            .collect();
        for _ in 0..1040 {
            if conn.write_raw(&batch).await.is_err() {
                break;
            }
        }
        let drained = conn.drain(Duration::from_secs(2)).await;
        let (_, code, debug) = drained.goaway().expect("GOAWAY");
        assert_eq!(code, raw_h2::code::ENHANCE_YOUR_CALM);
        assert_eq!(debug, b"too_many_data_frames");
    })
    .await;
    assert!(grown < BOUND, "tiny DATA frames: heap grew {grown} bytes");

    // Many connections that never finish the handshake.
    let grown = peak_growth(|addr, server| async move {
        let mut held = Vec::new();
        for _ in 0..300 {
            if let Ok(tcp) = tokio::net::TcpStream::connect(addr).await {
                held.push(tcp);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Every one was taken up by the server (the warm-up channel's too).
        assert!(
            server.connection_count() > 300,
            "{} connections",
            server.connection_count()
        );
    })
    .await;
    // A connection that never handshakes costs a fixed amount until the
    // handshake timeout drops it (measured: about 40 KB each).
    assert!(
        grown < 300 * (64 << 10),
        "idle connections: heap grew {grown} bytes"
    );
}
