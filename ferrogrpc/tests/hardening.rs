//! Hardening tests: a raw HTTP/2 client (`support/raw_h2.rs`, frames written
//! by hand) misbehaves against a real ferrogrpc server — ping floods, rapid
//! reset, stream floods, oversize and endless header blocks, silent and
//! half-open clients — and each test checks the server's answer on the wire,
//! that the server keeps serving fresh connections, and that the work it
//! does is bounded (handlers cancelled, connections closed). Also the
//! server's own keepalive: pings, ping timeout, max idle, max age.
//!
//! Timings are shortened; every read and write has a timeout and every loop
//! a bound, so a regression fails instead of hanging.

#[path = "support/raw_h2.rs"]
mod raw_h2;

use std::{
    net::SocketAddr,
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
    keepalive::{EnforcementPolicy, ServerParameters},
    server::{self, BoxFuture, Server, ServerBuilder, ServerCall, Service},
    Request, Response, Status,
};
use http::uri::PathAndQuery;
use raw_h2::{code, setting, Conn, Frame, ReadError};
use tokio::time::Instant;

const SECOND: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ===== the server under test =====

/// How many `Sleep` handlers have started, and how many are running now.
#[derive(Clone, Default)]
struct Counters {
    started: Arc<AtomicUsize>,
    sleeping: Arc<AtomicUsize>,
}

/// Decrements the running count when the handler is dropped (cancelled).
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `Unary` echoes; `Sleep` never answers (until it is cancelled).
struct Echo(Counters);

impl Service for Echo {
    fn name(&self) -> &'static str {
        "test.Echo"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        match method {
            "Unary" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move { Ok(Response::new(req.into_inner())) },
            )),
            "Sleep" => {
                let counters = self.0.clone();
                Box::pin(server::unary(
                    call,
                    BytesCodec,
                    move |_req: Request<Bytes>| async move {
                        counters.sleeping.fetch_add(1, Ordering::SeqCst);
                        let _running = Running(Arc::clone(&counters.sleeping));
                        counters.started.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok::<_, Status>(Response::new(Bytes::new()))
                    },
                ))
            }
            _ => Box::pin(call.unimplemented()),
        }
    }
}

struct Fixture {
    addr: SocketAddr,
    server: Server,
    counters: Counters,
}

async fn start(configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Fixture {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Counters::default();
    let server = configure(Server::builder().add_service(Echo(counters.clone()))).build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    Fixture {
        addr,
        server,
        counters,
    }
}

impl Fixture {
    /// A normal call on a fresh connection succeeds.
    async fn assert_still_serving(&self) {
        let ch = Channel::from_target(&self.addr.to_string()).unwrap();
        let resp = ch
            .unary(
                PathAndQuery::from_static("/test.Echo/Unary"),
                Request::new(Bytes::from_static(b"still serving")).with_timeout(5 * SECOND),
                BytesCodec,
            )
            .await
            .expect("a fresh connection is served");
        assert_eq!(resp.get_ref(), &Bytes::from_static(b"still serving"));
    }

    fn sleeping(&self) -> usize {
        self.counters.sleeping.load(Ordering::SeqCst)
    }

    fn started(&self) -> usize {
        self.counters.started.load(Ordering::SeqCst)
    }

    /// Every `Sleep` handler is cancelled and every connection closed.
    async fn assert_work_released(&self, within: Duration) {
        let sleeping = wait_for(within, || self.sleeping() == 0).await;
        assert!(sleeping, "{} Sleep handlers still running", self.sleeping());
        let closed = wait_for(within, || self.server.connection_count() == 0).await;
        assert!(
            closed,
            "{} connections still open",
            self.server.connection_count()
        );
    }
}

/// Polls `cond` every 5 ms until it holds or `within` passes.
async fn wait_for(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(ms(5)).await;
    }
}

// ===== gRPC over the raw client =====

fn request_headers(path: &str) -> [(&str, &str); 6] {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "hardening.test"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
}

/// A gRPC length-prefixed message.
fn grpc_message(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// HEADERS of a call to `/test.Echo/{method}`.
async fn start_call(conn: &mut Conn, stream_id: u32, method: &str) {
    let path = format!("/test.Echo/{method}");
    conn.send_headers(stream_id, &request_headers(&path), false)
        .await
        .expect("send HEADERS");
}

/// The request message, ending the request stream.
async fn send_message(conn: &mut Conn, stream_id: u32, payload: &[u8]) {
    conn.send_data(stream_id, &grpc_message(payload), true)
        .await
        .expect("send DATA");
}

/// The bytes of a whole unary request (HEADERS + DATA with END_STREAM).
fn call_bytes(stream_id: u32, method: &str, payload: &[u8]) -> Vec<u8> {
    let path = format!("/test.Echo/{method}");
    let mut out = raw_h2::headers_frame(stream_id, &request_headers(&path), false);
    out.extend(raw_h2::data_frame(stream_id, &grpc_message(payload), true));
    out
}

/// How a stream ended, as seen by the raw client.
#[derive(Debug, Default)]
struct Outcome {
    http_status: Option<String>,
    grpc_status: Option<String>,
    body: Vec<u8>,
    reset: Option<u32>,
}

/// Reads until `stream_id` ends (END_STREAM or RST_STREAM); frames of other
/// streams and connection frames are skipped.
async fn read_outcome(conn: &mut Conn, stream_id: u32) -> Outcome {
    let deadline = Instant::now() + 5 * SECOND;
    let mut out = Outcome::default();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = match conn.read_frame(left).await {
            Ok(f) => f,
            Err(e) => panic!("stream {stream_id} did not end: {e}; so far {out:?}"),
        };
        if frame.stream_id() != stream_id {
            continue;
        }
        match frame {
            Frame::Headers { end_stream, .. } => {
                if let Some(s) = frame.header(":status") {
                    out.http_status = Some(s.to_string());
                }
                if let Some(s) = frame.header("grpc-status") {
                    out.grpc_status = Some(s.to_string());
                }
                if end_stream {
                    return out;
                }
            }
            Frame::Data {
                end_stream, data, ..
            } => {
                out.body.extend_from_slice(&data);
                if end_stream {
                    return out;
                }
            }
            Frame::RstStream { error_code, .. } => {
                out.reset = Some(error_code);
                return out;
            }
            _ => {}
        }
    }
}

/// A whole unary echo call on the raw connection succeeds.
async fn assert_raw_echo(conn: &mut Conn, stream_id: u32) {
    start_call(conn, stream_id, "Unary").await;
    send_message(conn, stream_id, b"raw echo").await;
    let out = read_outcome(conn, stream_id).await;
    assert_eq!(out.http_status.as_deref(), Some("200"), "{out:?}");
    assert_eq!(out.grpc_status.as_deref(), Some("0"), "{out:?}");
    assert_eq!(out.body, grpc_message(b"raw echo"));
}

fn is_ping_ack(f: &Frame, payload: [u8; 8]) -> bool {
    matches!(f, Frame::Ping { ack: true, payload: p } if *p == payload)
}

/// Sends PING `n` and waits for its ACK or a GOAWAY; returns the GOAWAY.
/// After the ACK, waits a further `linger` for a GOAWAY the ping caused.
async fn ping(conn: &mut Conn, n: u8, linger: Duration) -> Option<Frame> {
    let payload = [n; 8];
    if let Err(e) = conn.send_ping(payload).await {
        panic!("PING {n} could not be sent: {e}");
    }
    let f = conn
        .read_until(2 * SECOND, |f| f.is_goaway() || is_ping_ack(f, payload))
        .await
        .unwrap_or_else(|e| panic!("no ACK or GOAWAY after PING {n}: {e}"));
    if f.is_goaway() {
        return Some(f);
    }
    match conn.read_until(linger, Frame::is_goaway).await {
        Ok(f) => Some(f),
        Err(ReadError::Timeout) => None,
        Err(e) => panic!("after PING {n}: {e}"),
    }
}

fn assert_calm_goaway(f: &Frame) {
    match f {
        Frame::GoAway {
            error_code,
            debug_data,
            ..
        } => assert_eq!(
            *error_code,
            code::ENHANCE_YOUR_CALM,
            "GOAWAY code (debug {:?})",
            String::from_utf8_lossy(debug_data)
        ),
        other => panic!("expected GOAWAY, got {other:?}"),
    }
}

/// Reads until the connection closes; returns what was read.
async fn expect_closed(conn: &mut Conn, within: Duration) -> raw_h2::Drained {
    let drained = conn.drain(within).await;
    assert!(
        drained.closed(),
        "connection not closed within {within:?}: {}; frames {:?}",
        drained.end,
        drained.frames
    );
    drained
}

// ===== keepalive enforcement (ping strikes) =====

#[tokio::test]
async fn ping_flood_without_streams_gets_goaway_enhance_your_calm() {
    // Default policy: min_time 5 min, no pings without streams.
    let fx = start(|b| b).await;
    let mut conn = Conn::handshake(fx.addr).await;
    let mut goaway = None;
    for n in 1..=6u8 {
        if let Some(f) = ping(&mut conn, n, ms(20)).await {
            assert!(
                n >= 3,
                "GOAWAY after only {n} pings (at most 2 strikes so far)"
            );
            goaway = Some(f);
            break;
        }
    }
    let goaway = goaway.expect("GOAWAY after a flood of 6 pings");
    assert_calm_goaway(&goaway);
    assert!(
        matches!(
            goaway,
            Frame::GoAway {
                last_stream_id: 0,
                ..
            }
        ),
        "{goaway:?}"
    );
    expect_closed(&mut conn, 2 * SECOND).await;
    fx.assert_work_released(2 * SECOND).await;
    fx.assert_still_serving().await;
}

/// Clients back off (double their keepalive time) only when the GOAWAY's
/// debug data is `too_many_pings`: gRPC-Go's client checks exactly that
/// string, and so does ferrogrpc's (see the `keepalive` module docs).
#[tokio::test]
async fn ping_flood_goaway_says_too_many_pings() {
    let fx = start(|b| b).await;
    let mut conn = Conn::handshake(fx.addr).await;
    let mut goaway = None;
    for n in 1..=6u8 {
        goaway = ping(&mut conn, n, ms(20)).await;
        if goaway.is_some() {
            break;
        }
    }
    match goaway.expect("GOAWAY after a flood of 6 pings") {
        Frame::GoAway {
            error_code,
            debug_data,
            ..
        } => {
            assert_eq!(error_code, code::ENHANCE_YOUR_CALM);
            assert_eq!(
                String::from_utf8_lossy(&debug_data),
                "too_many_pings",
                "GOAWAY debug data"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn ping_flood_with_an_open_stream_gets_goaway_and_cancels_the_call() {
    let fx = start(|b| {
        let mut policy = EnforcementPolicy::default();
        policy.min_time = SECOND;
        b.keepalive_enforcement_policy(policy)
    })
    .await;
    let mut conn = Conn::handshake(fx.addr).await;
    conn.write_raw(&call_bytes(1, "Sleep", b"zz"))
        .await
        .unwrap();
    assert!(wait_for(2 * SECOND, || fx.started() == 1).await);
    let mut goaway = None;
    for n in 1..=6u8 {
        if let Some(f) = ping(&mut conn, n, ms(20)).await {
            assert!(n >= 3, "GOAWAY after only {n} pings");
            goaway = Some(f);
            break;
        }
    }
    let goaway = goaway.expect("GOAWAY after 6 pings under min_time");
    assert_calm_goaway(&goaway);
    expect_closed(&mut conn, 2 * SECOND).await;
    // Closing the connection cancels the call under way.
    fx.assert_work_released(2 * SECOND).await;
    fx.assert_still_serving().await;
}

#[tokio::test]
async fn pings_spaced_by_min_time_are_fine() {
    let fx = start(|b| {
        let mut policy = EnforcementPolicy::default();
        policy.min_time = ms(50);
        policy.permit_without_stream = true;
        b.keepalive_enforcement_policy(policy)
    })
    .await;
    let mut conn = Conn::handshake(fx.addr).await;
    for n in 1..=5u8 {
        if n > 1 {
            tokio::time::sleep(ms(80)).await;
        }
        let goaway = ping(&mut conn, n, Duration::ZERO).await;
        assert!(goaway.is_none(), "GOAWAY after PING {n}: {goaway:?}");
    }
    let rest = conn.drain(ms(200)).await;
    assert!(matches!(rest.end, ReadError::Timeout), "{}", rest.end);
    assert!(
        !rest.frames.iter().any(Frame::is_goaway),
        "{:?}",
        rest.frames
    );
    assert_raw_echo(&mut conn, 1).await;
}

#[tokio::test]
async fn server_headers_and_data_reset_ping_strikes() {
    let fx = start(|b| {
        let mut policy = EnforcementPolicy::default();
        policy.min_time = Duration::from_secs(3600);
        b.keepalive_enforcement_policy(policy)
    })
    .await;
    let mut conn = Conn::handshake(fx.addr).await;
    // Two quick pings: one or two strikes, depending on whether the first
    // ping of a connection counts.
    for n in 1..=2u8 {
        assert_eq!(ping(&mut conn, n, ms(20)).await, None, "PING {n}");
    }
    // The server sends HEADERS and DATA: strikes start over.
    assert_raw_echo(&mut conn, 1).await;
    // Without the reset these two would make 3 or 4 strikes.
    for n in 3..=4u8 {
        assert_eq!(
            ping(&mut conn, n, ms(20)).await,
            None,
            "PING {n}: strikes were not reset by the response"
        );
    }
    // Enforcement goes on: more quick pings do get the GOAWAY.
    let mut goaway = None;
    for n in 5..=8u8 {
        if let Some(f) = ping(&mut conn, n, ms(20)).await {
            goaway = Some(f);
            break;
        }
    }
    assert_calm_goaway(&goaway.expect("GOAWAY by PING 8"));
    expect_closed(&mut conn, 2 * SECOND).await;
    fx.assert_still_serving().await;
}

// ===== stream limits =====

#[tokio::test]
async fn streams_past_max_concurrent_streams_are_refused_while_earlier_ones_complete() {
    let fx = start(|b| b.max_concurrent_streams(2)).await;
    let mut conn = Conn::handshake(fx.addr).await;
    assert_eq!(
        conn.server_setting(setting::MAX_CONCURRENT_STREAMS),
        Some(2)
    );
    // Two calls under way (request not finished yet)...
    start_call(&mut conn, 1, "Unary").await;
    start_call(&mut conn, 3, "Unary").await;
    // ...so a third is refused.
    start_call(&mut conn, 5, "Unary").await;
    let out = read_outcome(&mut conn, 5).await;
    assert_eq!(out.reset, Some(code::REFUSED_STREAM), "{out:?}");
    // The first two finish normally.
    for (id, msg) in [(1, &b"one"[..]), (3, b"three")] {
        send_message(&mut conn, id, msg).await;
        let out = read_outcome(&mut conn, id).await;
        assert_eq!(
            out.grpc_status.as_deref(),
            Some("0"),
            "stream {id}: {out:?}"
        );
        assert_eq!(out.body, grpc_message(msg));
    }
    // With room again, a new stream is served on the same connection.
    assert_raw_echo(&mut conn, 7).await;
    fx.assert_still_serving().await;
}

/// A header block started and never finished (HEADERS without
/// END_HEADERS, then silence) ends the connection after the handshake
/// timeout, instead of holding it until keepalive notices (2 h).
#[tokio::test]
async fn an_unfinished_header_block_ends_the_connection() {
    let fx = start(|b| b.handshake_timeout(ms(300))).await;
    let mut conn = Conn::handshake(fx.addr).await;
    conn.auto_ack_pings = true;
    let block = raw_h2::encode_header_block(&request_headers("/test.Echo/Unary"));
    let half = &block[..block.len() / 2];
    conn.write_raw(&raw_h2::frame(raw_h2::kind::HEADERS, 0, 1, half))
        .await
        .unwrap();
    let drained = expect_closed(&mut conn, 3 * SECOND).await;
    let (_, error_code, debug) = drained.goaway().expect("GOAWAY");
    assert_eq!(error_code, code::ENHANCE_YOUR_CALM);
    assert_eq!(debug, b"header block not finished in time");
    fx.assert_still_serving().await;
}

/// With `max_connections(2)`, a third connection is not served (no
/// SETTINGS) while two are open, and is served once one of them closes.
#[tokio::test]
async fn max_connections_holds_back_the_next_connection_until_one_closes() {
    let fx = start(|b| b.max_connections(2)).await;
    let first = Conn::handshake(fx.addr).await;
    let _second = Conn::handshake(fx.addr).await;
    let mut third = Conn::connect(fx.addr).await.unwrap();
    third.write_raw(raw_h2::PREFACE).await.unwrap();
    third.send_settings(&[]).await.unwrap();
    let held = third.read_frame(ms(500)).await;
    assert!(matches!(held, Err(ReadError::Timeout)), "{held:?}");
    drop(first);
    let served = third.read_frame(3 * SECOND).await;
    assert!(
        matches!(served, Ok(Frame::Settings { ack: false, .. })),
        "{served:?}"
    );
}

/// With no limit set, a server advertises 1000 concurrent streams and
/// refuses the 1001st, so a client cannot pile up idle streams (and their
/// handler tasks) on one connection.
#[tokio::test]
async fn the_default_limit_refuses_the_1001st_concurrent_stream() {
    let fx = start(|b| b).await;
    let mut conn = Conn::handshake(fx.addr).await;
    assert_eq!(
        conn.server_setting(setting::MAX_CONCURRENT_STREAMS),
        Some(1000)
    );
    let mut calls = Vec::new();
    for i in 0..1001u32 {
        calls.extend(call_bytes(2 * i + 1, "Sleep", b"zz"));
    }
    conn.write_raw(&calls).await.unwrap();
    let refused = conn
        .read_until(5 * SECOND, |f| matches!(f, Frame::RstStream { .. }))
        .await
        .expect("a refusal");
    assert_eq!(
        refused,
        Frame::RstStream {
            stream_id: 2001,
            error_code: code::REFUSED_STREAM
        }
    );
    assert!(
        wait_for(5 * SECOND, || fx.started() == 1000).await,
        "{}",
        fx.started()
    );
    drop(conn);
    fx.assert_work_released(5 * SECOND).await;
}

/// Found here: h2 counts the streams it resets itself (refusals included)
/// per connection, without ever forgetting them; past 1024
/// (`max_local_error_reset_streams`) it ends the connection with GOAWAY
/// ENHANCE_YOUR_CALM "too_many_internal_resets".
#[tokio::test]
async fn stream_flood_past_max_concurrent_streams_is_refused_then_cut_off() {
    let fx = start(|b| b.max_concurrent_streams(1)).await;
    let mut conn = Conn::handshake(fx.addr).await;
    conn.write_raw(&call_bytes(1, "Sleep", b"zz"))
        .await
        .unwrap();
    assert!(wait_for(2 * SECOND, || fx.started() == 1).await);
    let block = raw_h2::encode_header_block(&request_headers("/test.Echo/Unary"));
    let mut flood = Vec::new();
    for i in 1..=1500u32 {
        flood.extend(raw_h2::frame(
            raw_h2::kind::HEADERS,
            raw_h2::flag::END_HEADERS | raw_h2::flag::END_STREAM,
            2 * i + 1,
            &block,
        ));
    }
    let _ = conn.write_raw(&flood).await;
    let drained = expect_closed(&mut conn, 5 * SECOND).await;
    let refused = drained
        .frames
        .iter()
        .filter(|f| {
            matches!(f, Frame::RstStream { error_code, .. } if *error_code == code::REFUSED_STREAM)
        })
        .count();
    assert!(refused >= 1000, "only {refused} streams refused");
    let (_, error_code, debug) = drained.goaway().expect("GOAWAY");
    assert_eq!(
        error_code,
        code::ENHANCE_YOUR_CALM,
        "{:?}",
        String::from_utf8_lossy(debug)
    );
    fx.assert_work_released(2 * SECOND).await;
    fx.assert_still_serving().await;
}

// ===== rapid reset (CVE-2023-44487) =====

/// Opens a `Sleep` call and resets it at once, thousands of times, in large
/// batches (the attack as published). Found here: in batches, h2's own guard
/// answers first — more than 20 streams reset before the server accepted
/// them (`max_pending_accept_reset_streams`) is GOAWAY ENHANCE_YOUR_CALM
/// "too_many_resets", within the first batch of 100.
#[tokio::test]
async fn rapid_reset_flood_gets_goaway_enhance_your_calm() {
    let fx = start(|b| b).await;
    let mut conn = Conn::handshake(fx.addr).await;
    let started = Instant::now();
    let mut goaway = None;
    let mut sent = 0u32;
    'flood: for batch in 0..50u32 {
        let mut bytes = Vec::new();
        for i in 0..100 {
            let id = 2 * (batch * 100 + i) + 1;
            bytes.extend(call_bytes(id, "Sleep", b"zz"));
            bytes.extend(raw_h2::rst_frame(id, code::CANCEL));
        }
        if conn.write_raw(&bytes).await.is_err() {
            break;
        }
        sent += 100;
        // Whatever has arrived, without waiting.
        loop {
            match conn.read_frame(ms(1)).await {
                Ok(f) if f.is_goaway() => {
                    goaway = Some(f);
                    break 'flood;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    let drained = expect_closed(&mut conn, 5 * SECOND).await;
    let goaway = goaway
        .or_else(|| drained.frames.iter().find(|f| f.is_goaway()).cloned())
        .unwrap_or_else(|| panic!("no GOAWAY after {sent} open+reset streams"));
    assert_calm_goaway(&goaway);
    eprintln!(
        "rapid reset: GOAWAY {goaway:?} after {sent} streams sent, {:?}",
        started.elapsed()
    );
    fx.assert_work_released(3 * SECOND).await;
    fx.assert_still_serving().await;
}

/// Opens call `n` (stream 2n-1) to `Sleep`, waits until its handler runs,
/// and resets it.
async fn open_and_reset(fx: &Fixture, conn: &mut Conn, n: u32) {
    let id = 2 * n - 1;
    conn.write_raw(&call_bytes(id, "Sleep", b"zz"))
        .await
        .unwrap();
    assert!(
        wait_for(2 * SECOND, || fx.started() == n as usize).await,
        "call {n} did not start"
    );
    conn.send_rst(id, code::CANCEL).await.unwrap();
}

/// Opens a `Sleep` call on `id` and resets it in the same write — before
/// the server can take it up — then waits for a PING round trip, so that
/// each reset is counted alone (h2's guard, 20 resets of streams waiting
/// to be accepted at once, is never what answers). Returns the GOAWAY if
/// the server sent one.
async fn reset_before_start(conn: &mut Conn, id: u32) -> Option<Frame> {
    let mut bytes = call_bytes(id, "Sleep", b"zz");
    bytes.extend(raw_h2::rst_frame(id, code::CANCEL));
    let payload = u64::from(id).to_be_bytes();
    bytes.extend(raw_h2::ping_frame(false, payload));
    conn.write_raw(&bytes).await.ok()?;
    match conn
        .read_until(2 * SECOND, |f| f.is_goaway() || is_ping_ack(f, payload))
        .await
    {
        Ok(f) if f.is_goaway() => Some(f),
        Ok(_) => None,
        Err(e) if e.is_closed() => None,
        Err(e) => panic!("stream {id}: {e}"),
    }
}

/// Pings as often as the tests pace their resets.
fn free_pings(b: ServerBuilder) -> ServerBuilder {
    let mut policy = EnforcementPolicy::default();
    policy.min_time = Duration::ZERO;
    policy.permit_without_stream = true;
    b.keepalive_enforcement_policy(policy)
}

fn assert_too_many_resets(f: &Frame) {
    assert_calm_goaway(f);
    let Frame::GoAway { debug_data, .. } = f else {
        unreachable!()
    };
    assert_eq!(&debug_data[..], b"too_many_resets", "{f:?}");
}

/// `max_client_resets` counts resets of streams the server had not taken
/// up yet: ten are allowed, the eleventh ends the connection.
#[tokio::test]
async fn max_client_resets_counts_resets_before_the_handler_starts() {
    let fx = start(|b| free_pings(b).max_client_resets(10, Duration::from_secs(60))).await;
    let mut conn = Conn::handshake(fx.addr).await;
    for n in 1..=10u32 {
        if let Some(goaway) = reset_before_start(&mut conn, 2 * n - 1).await {
            panic!("GOAWAY after only {n} resets: {goaway:?}");
        }
    }
    let goaway = match reset_before_start(&mut conn, 21).await {
        Some(goaway) => goaway,
        None => expect_closed(&mut conn, 2 * SECOND)
            .await
            .frames
            .into_iter()
            .find(Frame::is_goaway)
            .expect("GOAWAY after the eleventh reset"),
    };
    assert_too_many_resets(&goaway);
    fx.assert_work_released(2 * SECOND).await;
    fx.assert_still_serving().await;
}

/// Cancelling calls whose handlers run is what clients do (dropped calls,
/// expired deadlines): with a limit of 10 resets a minute, 50 such
/// cancellations leave the connection serving.
#[tokio::test]
async fn resets_of_running_calls_are_not_counted() {
    let fx = start(|b| b.max_client_resets(10, Duration::from_secs(60))).await;
    let mut conn = Conn::handshake(fx.addr).await;
    for n in 1..=50 {
        open_and_reset(&fx, &mut conn, n).await;
    }
    let quiet = conn.drain(ms(200)).await;
    assert!(
        matches!(quiet.end, ReadError::Timeout),
        "after 50 cancellations: {}",
        quiet.end
    );
    assert!(
        !quiet.frames.iter().any(Frame::is_goaway),
        "{:?}",
        quiet.frames
    );
    assert_raw_echo(&mut conn, 101).await;
    assert!(wait_for(2 * SECOND, || fx.sleeping() == 0).await);
}

/// An honest client under load: batches of 100 calls, each batch cancelled
/// in one write once all its handlers run, up to 10,000 cancellations, far
/// over the default 400 resets a second. The connection is never cut off.
#[tokio::test]
async fn thousands_of_cancellations_a_second_keep_the_connection() {
    let fx = start(|b| b).await;
    let mut conn = Conn::handshake(fx.addr).await;
    let started = Instant::now();
    let mut cancelled = 0u32;
    let mut next_id = 1u32;
    while cancelled < 10_000 && started.elapsed() < 10 * SECOND {
        let first = next_id;
        let mut open = Vec::new();
        for _ in 0..100 {
            open.extend(call_bytes(next_id, "Sleep", b"zz"));
            next_id += 2;
        }
        conn.write_raw(&open).await.unwrap();
        let want = cancelled as usize + 100;
        assert!(
            wait_for(5 * SECOND, || fx.started() == want).await,
            "batch from stream {first}: {} of {want} handlers started",
            fx.started()
        );
        let mut resets = Vec::new();
        for id in (first..next_id).step_by(2) {
            resets.extend(raw_h2::rst_frame(id, code::CANCEL));
        }
        conn.write_raw(&resets).await.unwrap();
        cancelled += 100;
        // Only what has arrived; a GOAWAY fails the test.
        while let Ok(f) = conn.read_frame(ms(1)).await {
            assert!(!f.is_goaway(), "after {cancelled} cancellations: {f:?}");
        }
    }
    let elapsed = started.elapsed();
    let rate = f64::from(cancelled) / elapsed.as_secs_f64();
    eprintln!("{cancelled} cancellations in {elapsed:?} ({rate:.0}/s)");
    // Twice the default limit on average, or the test proves nothing.
    assert!(rate > 800.0, "only {rate:.0} cancellations a second");
    let quiet = conn.drain(ms(300)).await;
    assert!(
        !quiet.frames.iter().any(Frame::is_goaway),
        "{:?}",
        quiet.frames
    );
    assert!(matches!(quiet.end, ReadError::Timeout), "{}", quiet.end);
    assert_raw_echo(&mut conn, next_id).await;
    assert!(wait_for(5 * SECOND, || fx.sleeping() == 0).await);
    fx.assert_still_serving().await;
}

#[tokio::test]
async fn resets_spread_over_more_than_the_window_are_allowed() {
    let fx = start(|b| free_pings(b).max_client_resets(5, ms(200))).await;
    let mut conn = Conn::handshake(fx.addr).await;
    for n in 1..=12u32 {
        if let Some(goaway) = reset_before_start(&mut conn, 2 * n - 1).await {
            panic!("GOAWAY after reset {n}: {goaway:?}");
        }
        // About two resets per window of 200 ms.
        let quiet = conn.drain(ms(100)).await;
        assert!(
            matches!(quiet.end, ReadError::Timeout),
            "after reset {n}: {}",
            quiet.end
        );
        assert!(
            !quiet.frames.iter().any(Frame::is_goaway),
            "{:?}",
            quiet.frames
        );
    }
    assert_raw_echo(&mut conn, 25).await;
    assert!(wait_for(2 * SECOND, || fx.sleeping() == 0).await);
}

/// The default limit (400 resets per second), with the attack paced in
/// batches of 5 — each batch followed by a PING round trip — so that h2's
/// own guard against resets of not-yet-accepted streams (20 at a time)
/// cannot be what stops it. Pings are allowed freely here, or the pacing
/// pings themselves would be struck out first.
#[tokio::test]
async fn paced_rapid_reset_hits_the_default_limit() {
    let fx = start(free_pings).await;
    let mut conn = Conn::handshake(fx.addr).await;
    let started = Instant::now();
    let mut sent = 0u32;
    let mut goaway = None;
    'attack: for batch in 0..600u32 {
        if started.elapsed() > 10 * SECOND {
            break;
        }
        let mut bytes = Vec::new();
        for i in 0..5 {
            let id = 2 * (batch * 5 + i) + 1;
            bytes.extend(call_bytes(id, "Sleep", b"zz"));
            bytes.extend(raw_h2::rst_frame(id, code::CANCEL));
        }
        let payload = (batch as u64).to_be_bytes();
        bytes.extend(raw_h2::ping_frame(false, payload));
        if conn.write_raw(&bytes).await.is_err() {
            break;
        }
        sent += 5;
        match conn
            .read_until(2 * SECOND, |f| f.is_goaway() || is_ping_ack(f, payload))
            .await
        {
            Ok(f) if f.is_goaway() => {
                goaway = Some(f);
                break 'attack;
            }
            Ok(_) => {}
            Err(e) if e.is_closed() => break,
            Err(e) => panic!("after {sent} resets: {e}"),
        }
    }
    let elapsed = started.elapsed();
    let drained = expect_closed(&mut conn, 5 * SECOND).await;
    let goaway = goaway
        .or_else(|| drained.frames.iter().find(|f| f.is_goaway()).cloned())
        .unwrap_or_else(|| panic!("no GOAWAY after {sent} paced resets in {elapsed:?}"));
    assert_too_many_resets(&goaway);
    assert!(sent > 400, "GOAWAY after only {sent} resets: {goaway:?}");
    eprintln!("paced rapid reset: GOAWAY after {sent} resets in {elapsed:?}");
    fx.assert_work_released(3 * SECOND).await;
    fx.assert_still_serving().await;
}

// ===== header blocks =====

/// h2, with a header list over `max_header_list_size` (but under 4× it),
/// fails only that stream — a stream error, not a connection error: it
/// answers `:status 431` (no content-type, no grpc-status: ferrogrpc never
/// sees the request) with END_STREAM, and, when the request side is still
/// open, RST_STREAM(PROTOCOL_ERROR) after it. The HPACK state survives, so
/// the connection and its other streams go on.
#[tokio::test]
async fn oversize_header_block_fails_only_its_stream() {
    let fx = start(|b| b.max_header_list_size(1024)).await;
    let mut conn = Conn::handshake(fx.addr).await;
    assert_eq!(
        conn.server_setting(setting::MAX_HEADER_LIST_SIZE),
        Some(1024)
    );
    start_call(&mut conn, 1, "Unary").await;

    let big = "a".repeat(1500);
    let mut fields = request_headers("/test.Echo/Unary").to_vec();
    fields.push(("x-big", &big));
    // In one HEADERS frame; split over HEADERS + CONTINUATION; and with
    // END_STREAM (nothing left to reset then).
    for id in [3, 5, 7] {
        match id {
            3 => conn.send_headers(3, &fields, false).await.unwrap(),
            5 => conn
                .send_headers_split(5, &fields, false, 600)
                .await
                .unwrap(),
            _ => conn.send_headers(7, &fields, true).await.unwrap(),
        }
        let answer = conn
            .read_until(5 * SECOND, |f| f.stream_id() == id)
            .await
            .unwrap_or_else(|e| panic!("stream {id}: {e}"));
        match &answer {
            Frame::Headers {
                end_stream: true,
                fields,
                ..
            } => assert_eq!(fields, &[(":status".to_string(), "431".to_string())]),
            other => panic!("stream {id}: expected 431, got {other:?}"),
        }
        if id != 7 {
            let reset = conn
                .read_until(5 * SECOND, |f| f.stream_id() == id)
                .await
                .unwrap_or_else(|e| panic!("stream {id}: {e}"));
            assert_eq!(
                reset,
                Frame::RstStream {
                    stream_id: id,
                    error_code: code::PROTOCOL_ERROR
                }
            );
        }
    }

    // The well-behaved stream opened before still completes...
    send_message(&mut conn, 1, b"fine").await;
    let out = read_outcome(&mut conn, 1).await;
    assert_eq!(out.grpc_status.as_deref(), Some("0"), "{out:?}");
    // ...and new ones work (the HPACK state survived).
    assert_raw_echo(&mut conn, 9).await;
    let quiet = conn.drain(ms(100)).await;
    assert!(
        !quiet.frames.iter().any(|f| f.stream_id() == 7),
        "{:?}",
        quiet.frames
    );
    fx.assert_still_serving().await;
}

/// Over 4× `max_header_list_size`, h2 gives up on the connection: GOAWAY
/// ENHANCE_YOUR_CALM ("header_list_way_too_large").
#[tokio::test]
async fn header_block_far_over_the_limit_closes_the_connection() {
    let fx = start(|b| b.max_header_list_size(1024)).await;
    let mut conn = Conn::handshake(fx.addr).await;
    let big = "a".repeat(5000);
    let mut fields = request_headers("/test.Echo/Unary").to_vec();
    fields.push(("x-big", &big));
    conn.send_headers(1, &fields, false).await.unwrap();
    let drained = expect_closed(&mut conn, 2 * SECOND).await;
    let (_, error_code, debug) = drained.goaway().expect("GOAWAY");
    assert_eq!(
        error_code,
        code::ENHANCE_YOUR_CALM,
        "{:?}",
        String::from_utf8_lossy(debug)
    );
    fx.assert_work_released(2 * SECOND).await;
    fx.assert_still_serving().await;
}

#[tokio::test]
async fn header_block_in_continuation_frames_is_fine() {
    let fx = start(|b| b).await;
    let mut conn = Conn::handshake(fx.addr).await;
    let fields = request_headers("/test.Echo/Unary");
    conn.send_headers_split(1, &fields, false, 20)
        .await
        .unwrap();
    send_message(&mut conn, 1, b"in pieces").await;
    let out = read_outcome(&mut conn, 1).await;
    assert_eq!(out.grpc_status.as_deref(), Some("0"), "{out:?}");
    assert_eq!(out.body, grpc_message(b"in pieces"));
}

/// CONTINUATION flood: thousands of 1-byte CONTINUATION frames. h2 allows
/// about max_header_list_size / max_frame_size × 1.25 of them (1280 with the
/// 16 MiB default), then GOAWAY ENHANCE_YOUR_CALM ("too_many_continuations").
#[tokio::test]
async fn continuation_flood_closes_the_connection() {
    let fx = start(|b| b).await;
    let mut conn = Conn::handshake(fx.addr).await;
    let long = "b".repeat(3000);
    let mut fields = request_headers("/test.Echo/Unary").to_vec();
    fields.push(("x-long", &long));
    let _ = conn.send_headers_split(1, &fields, false, 1).await;
    let drained = expect_closed(&mut conn, 3 * SECOND).await;
    let (_, error_code, debug) = drained.goaway().expect("GOAWAY");
    assert_eq!(
        error_code,
        code::ENHANCE_YOUR_CALM,
        "{:?}",
        String::from_utf8_lossy(debug)
    );
    fx.assert_work_released(2 * SECOND).await;
    fx.assert_still_serving().await;
}

// ===== flow control and GOAWAY from the client =====

/// A WINDOW_UPDATE that overflows the connection window is a connection
/// error (FLOW_CONTROL_ERROR). A zero increment on a stream is one too with
/// h2 (PROTOCOL_ERROR), stricter than RFC 9113 §6.9, which makes it a
/// stream error. Either way only that connection goes.
#[tokio::test]
async fn flow_control_violations_close_only_their_connection() {
    let fx = start(|b| b).await;
    let mut conn = Conn::handshake(fx.addr).await;
    conn.send_window_update(0, 0x7fff_ffff).await.unwrap();
    let drained = expect_closed(&mut conn, 2 * SECOND).await;
    let (_, error_code, _) = drained.goaway().expect("GOAWAY");
    assert_eq!(error_code, code::FLOW_CONTROL_ERROR);

    let mut conn = Conn::handshake(fx.addr).await;
    start_call(&mut conn, 1, "Unary").await;
    conn.send_window_update(1, 0).await.unwrap();
    let drained = expect_closed(&mut conn, 2 * SECOND).await;
    let (_, error_code, _) = drained.goaway().expect("GOAWAY");
    assert_eq!(error_code, code::PROTOCOL_ERROR);

    fx.assert_work_released(SECOND).await;
    fx.assert_still_serving().await;
}

/// A client's GOAWAY only limits streams the server would open; the call
/// under way is answered, then the server closes the connection.
#[tokio::test]
async fn client_goaway_lets_the_call_under_way_finish() {
    let fx = start(|b| b).await;
    let mut conn = Conn::handshake(fx.addr).await;
    start_call(&mut conn, 1, "Unary").await;
    conn.send_goaway(0, code::NO_ERROR, b"client leaving")
        .await
        .unwrap();
    send_message(&mut conn, 1, b"last words").await;
    let out = read_outcome(&mut conn, 1).await;
    assert_eq!(out.grpc_status.as_deref(), Some("0"), "{out:?}");
    assert_eq!(out.body, grpc_message(b"last words"));
    expect_closed(&mut conn, 2 * SECOND).await;
    fx.assert_work_released(SECOND).await;
}

// ===== handshake =====

#[tokio::test]
async fn silent_client_is_dropped_after_handshake_timeout() {
    let fx = start(|b| b.handshake_timeout(ms(300))).await;
    let t0 = Instant::now();
    let mut conn = Conn::connect(fx.addr).await.unwrap();
    let drained = expect_closed(&mut conn, 3 * SECOND).await;
    let after = drained.at - t0;
    assert!(after >= ms(250), "dropped after only {after:?}");
    assert!(after < 2 * SECOND, "dropped after {after:?}");
    fx.assert_work_released(SECOND).await;
    fx.assert_still_serving().await;
}

#[tokio::test]
async fn partial_preface_is_dropped_after_handshake_timeout() {
    let fx = start(|b| b.handshake_timeout(ms(300))).await;
    let t0 = Instant::now();
    let mut conn = Conn::connect(fx.addr).await.unwrap();
    conn.write_raw(&raw_h2::PREFACE[..10]).await.unwrap();
    let drained = expect_closed(&mut conn, 3 * SECOND).await;
    let after = drained.at - t0;
    assert!(after >= ms(250), "dropped after only {after:?}");
    assert!(after < 2 * SECOND, "dropped after {after:?}");
    fx.assert_work_released(SECOND).await;
    fx.assert_still_serving().await;
}

/// The timeout bounds the whole handshake: a preface trickled one byte
/// every 50 ms (1.2 s in all) is cut off.
#[tokio::test]
async fn trickled_preface_is_dropped_after_handshake_timeout() {
    let fx = start(|b| b.handshake_timeout(ms(300))).await;
    let t0 = Instant::now();
    let mut conn = Conn::connect(fx.addr).await.unwrap();
    let mut closed_at = None;
    for byte in raw_h2::PREFACE {
        if conn.write_raw(&[*byte]).await.is_err() {
            closed_at = Some(Instant::now());
            break;
        }
        match conn.read_frame(ms(50)).await {
            Ok(_) | Err(ReadError::Timeout) => {}
            Err(e) if e.is_closed() => {
                closed_at = Some(Instant::now());
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let after = closed_at.expect("dropped before the preface was complete") - t0;
    assert!(after >= ms(250), "dropped after only {after:?}");
    assert!(after < SECOND, "dropped after {after:?}");
    fx.assert_work_released(SECOND).await;
    fx.assert_still_serving().await;
}

/// h2's handshake ends with the preface; the client's SETTINGS frame (which
/// must come next) is not waited for. gRPC-Go reads that SETTINGS frame
/// within its connection timeout, so a client that sends the 24-byte
/// preface and then nothing is dropped there too.
#[tokio::test]
async fn preface_without_settings_is_dropped_after_handshake_timeout() {
    let fx = start(|b| b.handshake_timeout(ms(300))).await;
    let t0 = Instant::now();
    let mut conn = Conn::connect(fx.addr).await.unwrap();
    conn.write_raw(raw_h2::PREFACE).await.unwrap();
    let drained = expect_closed(&mut conn, 3 * SECOND).await;
    let after = drained.at - t0;
    assert!(after >= ms(250), "dropped after only {after:?}");
    assert!(after < 2 * SECOND, "dropped after {after:?}");
    fx.assert_work_released(SECOND).await;
    fx.assert_still_serving().await;
}

#[tokio::test]
async fn http1_request_instead_of_preface_is_dropped_at_once() {
    let fx = start(|b| b).await;
    let t0 = Instant::now();
    let mut conn = Conn::connect(fx.addr).await.unwrap();
    conn.write_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let drained = expect_closed(&mut conn, 3 * SECOND).await;
    assert!(drained.at - t0 < SECOND, "{:?}", drained.at - t0);
    fx.assert_work_released(SECOND).await;
    fx.assert_still_serving().await;
}

// ===== server keepalive and connection management =====

fn keepalive(configure: impl FnOnce(&mut ServerParameters)) -> ServerParameters {
    let mut params = ServerParameters::default();
    configure(&mut params);
    params
}

#[tokio::test]
async fn unanswered_keepalive_ping_closes_the_connection() {
    let fx = start(|b| {
        b.keepalive_params(keepalive(|p| {
            p.time = ms(100);
            p.timeout = ms(200);
        }))
    })
    .await;
    let t0 = Instant::now();
    let mut conn = Conn::handshake(fx.addr).await;
    let ping = conn
        .read_until(2 * SECOND, |f| matches!(f, Frame::Ping { ack: false, .. }))
        .await
        .expect("a keepalive PING from the server");
    let pinged_at = Instant::now();
    assert!(
        pinged_at - t0 >= ms(80),
        "PING after only {:?}",
        pinged_at - t0
    );
    eprintln!("keepalive PING {ping:?} after {:?}", pinged_at - t0);
    // No ACK: the server gives up after `timeout`.
    let drained = expect_closed(&mut conn, 3 * SECOND).await;
    let after = drained.at - pinged_at;
    assert!(after >= ms(150), "closed {after:?} after the PING");
    assert!(after < 2 * SECOND, "closed {after:?} after the PING");
    eprintln!(
        "closed {after:?} after the PING; frames {:?}",
        drained.frames
    );
    fx.assert_work_released(SECOND).await;
    fx.assert_still_serving().await;
}

#[tokio::test]
async fn answered_keepalive_pings_keep_the_connection() {
    let fx = start(|b| {
        b.keepalive_params(keepalive(|p| {
            p.time = ms(100);
            p.timeout = ms(200);
        }))
    })
    .await;
    let mut conn = Conn::handshake(fx.addr).await;
    conn.auto_ack_pings = true;
    let drained = conn.drain(SECOND).await;
    assert!(matches!(drained.end, ReadError::Timeout), "{}", drained.end);
    let pings = drained
        .frames
        .iter()
        .filter(|f| matches!(f, Frame::Ping { ack: false, .. }))
        .count();
    assert!(
        pings >= 2,
        "{pings} keepalive pings in 1 s: {:?}",
        drained.frames
    );
    assert!(
        !drained.frames.iter().any(Frame::is_goaway),
        "{:?}",
        drained.frames
    );
    assert_raw_echo(&mut conn, 1).await;
}

#[tokio::test]
async fn max_connection_idle_sends_goaway() {
    let fx =
        start(|b| b.keepalive_params(keepalive(|p| p.max_connection_idle = Some(ms(200))))).await;
    let t0 = Instant::now();
    let mut conn = Conn::handshake(fx.addr).await;
    conn.auto_ack_pings = true;
    let goaway = conn
        .read_until(3 * SECOND, Frame::is_goaway)
        .await
        .expect("GOAWAY on an idle connection");
    let after = t0.elapsed();
    assert!(after >= ms(150), "GOAWAY after only {after:?}");
    assert!(
        matches!(
            goaway,
            Frame::GoAway {
                error_code: code::NO_ERROR,
                ..
            }
        ),
        "{goaway:?}"
    );
    // Graceful, with no streams: the connection then closes.
    expect_closed(&mut conn, 3 * SECOND).await;
    fx.assert_work_released(SECOND).await;
    fx.assert_still_serving().await;
}

/// The idle GOAWAY is graceful: GOAWAY(2^31-1) and a PING, then the final
/// GOAWAY once the PING is answered. A client that never answers must not
/// keep the connection for ever: gRPC-Go sends the final GOAWAY 5 s after
/// the first without the ACK, and then closes the idle connection.
#[tokio::test]
async fn max_connection_idle_closes_even_if_the_goaway_ping_is_ignored() {
    let fx =
        start(|b| b.keepalive_params(keepalive(|p| p.max_connection_idle = Some(ms(200))))).await;
    let mut conn = Conn::handshake(fx.addr).await;
    conn.read_until(3 * SECOND, Frame::is_goaway)
        .await
        .expect("GOAWAY on an idle connection");
    let drained = expect_closed(&mut conn, 8 * SECOND).await;
    eprintln!("frames after the idle GOAWAY: {:?}", drained.frames);
    fx.assert_work_released(SECOND).await;
}

/// A call that reaches the server between the idle GOAWAY(2^31-1) and the
/// client's answer to its PING is accepted, and once the PING is answered it
/// runs to its end: nothing cuts it 5 s after the GOAWAY.
#[tokio::test]
async fn a_call_started_during_the_idle_drain_is_not_cut() {
    let fx =
        start(|b| b.keepalive_params(keepalive(|p| p.max_connection_idle = Some(ms(200))))).await;
    let mut conn = Conn::handshake(fx.addr).await;
    let goaway = conn
        .read_until(3 * SECOND, Frame::is_goaway)
        .await
        .expect("GOAWAY on an idle connection");
    assert!(
        matches!(
            goaway,
            Frame::GoAway {
                last_stream_id: 0x7fff_ffff,
                ..
            }
        ),
        "{goaway:?}"
    );
    conn.write_raw(&call_bytes(1, "Sleep", b"zz"))
        .await
        .unwrap();
    assert!(
        wait_for(SECOND, || fx.started() == 1).await,
        "the call sent during the drain was accepted"
    );
    let ping = conn
        .read_until(SECOND, |f| matches!(f, Frame::Ping { ack: false, .. }))
        .await
        .expect("the drain PING");
    let Frame::Ping { payload, .. } = ping else {
        unreachable!()
    };
    conn.send_ping_ack(payload).await.unwrap();
    conn.auto_ack_pings = true;
    // Well past the 5 s a client has to answer the PING.
    let drained = conn.drain(7 * SECOND).await;
    assert!(
        matches!(drained.end, ReadError::Timeout),
        "the connection ended: {}; frames {:?}",
        drained.end,
        drained.frames
    );
    assert_eq!(
        drained.goaways().map(|(last, ..)| last).collect::<Vec<_>>(),
        [1],
        "the final GOAWAY names the call's stream"
    );
    assert_eq!(fx.sleeping(), 1, "the call is still running");
    conn.send_rst(1, code::CANCEL).await.unwrap();
    fx.assert_work_released(SECOND).await;
}

#[tokio::test]
async fn max_connection_idle_waits_for_calls_to_end() {
    let fx =
        start(|b| b.keepalive_params(keepalive(|p| p.max_connection_idle = Some(ms(200))))).await;
    let mut conn = Conn::handshake(fx.addr).await;
    conn.auto_ack_pings = true;
    conn.write_raw(&call_bytes(1, "Sleep", b"zz"))
        .await
        .unwrap();
    // Busy for 4× max_connection_idle: no GOAWAY.
    let busy = conn.drain(ms(800)).await;
    assert!(matches!(busy.end, ReadError::Timeout), "{}", busy.end);
    assert!(
        !busy.frames.iter().any(Frame::is_goaway),
        "{:?}",
        busy.frames
    );
    // Once the call ends, the connection is idle.
    conn.send_rst(1, code::CANCEL).await.unwrap();
    let ended = Instant::now();
    let goaway = conn
        .read_until(3 * SECOND, Frame::is_goaway)
        .await
        .expect("GOAWAY once idle");
    assert!(
        ended.elapsed() >= ms(150),
        "GOAWAY after only {:?}",
        ended.elapsed()
    );
    assert!(
        matches!(
            goaway,
            Frame::GoAway {
                error_code: code::NO_ERROR,
                ..
            }
        ),
        "{goaway:?}"
    );
    expect_closed(&mut conn, 3 * SECOND).await;
    fx.assert_work_released(SECOND).await;
}

#[tokio::test]
async fn max_connection_age_sends_goaway_then_closes_after_grace() {
    let fx = start(|b| {
        b.keepalive_params(keepalive(|p| {
            p.max_connection_age = Some(ms(200));
            p.max_connection_age_grace = Some(ms(300));
        }))
    })
    .await;
    let t0 = Instant::now();
    let mut conn = Conn::handshake(fx.addr).await;
    conn.auto_ack_pings = true;
    conn.write_raw(&call_bytes(1, "Sleep", b"zz"))
        .await
        .unwrap();
    assert!(wait_for(SECOND, || fx.started() == 1).await);
    let goaway = conn
        .read_until(3 * SECOND, Frame::is_goaway)
        .await
        .expect("GOAWAY at max_connection_age");
    let goaway_at = Instant::now();
    // 200 ms ± 10% jitter, with slack for a busy machine.
    assert!(
        goaway_at - t0 >= ms(150),
        "GOAWAY after only {:?}",
        goaway_at - t0
    );
    assert!(
        goaway_at - t0 < ms(1500),
        "GOAWAY after {:?}",
        goaway_at - t0
    );
    assert!(
        matches!(
            goaway,
            Frame::GoAway {
                error_code: code::NO_ERROR,
                ..
            }
        ),
        "{goaway:?}"
    );
    // The call never ends; after the grace period the connection is closed.
    let drained = expect_closed(&mut conn, 4 * SECOND).await;
    let after = drained.at - goaway_at;
    assert!(after >= ms(200), "closed only {after:?} after GOAWAY");
    assert!(after < 3 * SECOND, "closed {after:?} after GOAWAY");
    for (last_stream_id, _, _) in drained.goaways() {
        assert!(
            last_stream_id >= 1,
            "stream 1 was under way: {:?}",
            drained.frames
        );
    }
    assert!(
        !drained
            .frames
            .iter()
            .any(|f| f.stream_id() == 1 && f.header("grpc-status") == Some("0")),
        "{:?}",
        drained.frames
    );
    fx.assert_work_released(2 * SECOND).await;
    fx.assert_still_serving().await;
}

#[tokio::test]
async fn max_connection_age_lets_calls_under_way_finish_within_grace() {
    let fx = start(|b| {
        b.keepalive_params(keepalive(|p| {
            p.max_connection_age = Some(ms(200));
            p.max_connection_age_grace = Some(Duration::from_secs(10));
        }))
    })
    .await;
    let mut conn = Conn::handshake(fx.addr).await;
    conn.auto_ack_pings = true;
    start_call(&mut conn, 1, "Unary").await;
    conn.read_until(3 * SECOND, Frame::is_goaway)
        .await
        .expect("GOAWAY at max_connection_age");
    // The call started before the GOAWAY still completes.
    send_message(&mut conn, 1, b"late").await;
    let out = read_outcome(&mut conn, 1).await;
    assert_eq!(out.grpc_status.as_deref(), Some("0"), "{out:?}");
    assert_eq!(out.body, grpc_message(b"late"));
    // Then, nothing left: closed long before the grace period.
    expect_closed(&mut conn, 3 * SECOND).await;
    fx.assert_still_serving().await;
}

/// What h2 does with a malformed request header. RFC 9113 §8.2.1 makes
/// it a stream error, but h2 ends the whole connection: GOAWAY
/// PROTOCOL_ERROR naming the last stream it processed, then it closes
/// (calls under way on that connection fail with it). ferrogrpc never sees
/// the request; other connections are not affected. Written down in
/// docs/security.md as a limitation of h2; this test notices if h2 changes.
#[tokio::test]
async fn malformed_header_ends_its_connection() {
    let fx = start(|b| b).await;
    for (name, value) in [("X-Upper", "v"), ("x-nul", "a\0b"), ("x-nl", "a\nb")] {
        let mut conn = Conn::handshake(fx.addr).await;
        start_call(&mut conn, 1, "Unary").await;
        let mut fields = request_headers("/test.Echo/Unary").to_vec();
        fields.push((name, value));
        conn.send_headers(3, &fields, false).await.unwrap();
        let drained = expect_closed(&mut conn, 5 * SECOND).await;
        let (last, error_code, _) = drained
            .goaway()
            .unwrap_or_else(|| panic!("{name:?}: {:?}", drained.frames));
        assert_eq!(
            (last, error_code),
            (1, code::PROTOCOL_ERROR),
            "header {name:?}: {value:?}"
        );
    }
    assert_eq!(fx.started(), 0);
    fx.assert_still_serving().await;
}
