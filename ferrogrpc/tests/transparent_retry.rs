//! Transparent retry of client-streaming and bidi calls (gRFC A6): a stream
//! the server never processed (REFUSED_STREAM, or above a GOAWAY's last
//! stream id) is replayed on a new stream, request messages included, until
//! the call commits (response headers, or more than the replay buffer holds).
//!
//! The servers are real: the h2 crate's server driven stream by stream, a
//! hand-written HTTP/2 server for an exact GOAWAY, and ferrogrpc's own.

#[path = "support/raw_h2.rs"]
mod raw_h2;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use ferrogrpc::{
    client::{Channel, RequestSink},
    codec::BytesCodec,
    server::{self, Server, ServerCall, Service},
    Code, Request, Response, Status, Streaming,
};
use http::uri::PathAndQuery;

fn path(p: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(p)
}

fn grpc_frame(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    out.extend_from_slice(message);
    Bytes::from(out)
}

/// Splits whole gRPC messages off the front of `buf`.
fn take_messages(buf: &mut BytesMut) -> Vec<Bytes> {
    let mut out = Vec::new();
    while buf.len() >= 5 {
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if buf.len() < 5 + len {
            break;
        }
        buf.advance(5);
        out.push(buf.split_to(len).freeze());
    }
    out
}

/// How the test's h2 server treats one stream.
#[derive(Clone, Copy, Debug)]
enum Policy {
    /// Reads this many request messages, then RST_STREAM(REFUSED_STREAM).
    RefuseAfter(usize),
    /// Sends response headers, reads this many messages, then refuses.
    HeadersThenRefuseAfter(usize),
    /// Echoes each request message; OK at the end of the requests.
    Echo,
    /// At the end of the requests, one message `<count>/<total bytes>`.
    Summary,
}

/// The request messages each stream carried, in the order streams arrived.
type Seen = Arc<Mutex<Vec<Vec<Bytes>>>>;

/// An h2 server: stream `i` (counted over all connections) follows
/// `policies[i]`, later ones `fallback`.
async fn h2_server(policies: Vec<Policy>, fallback: Policy) -> (std::net::SocketAddr, Seen) {
    h2_server_with(move |index, _| policies.get(index).copied().unwrap_or(fallback)).await
}

/// An h2 server whose `decide` picks each stream's policy from its index
/// (counted over all connections) and request headers.
async fn h2_server_with(
    decide: impl Fn(usize, &http::HeaderMap) -> Policy + Send + Sync + 'static,
) -> (std::net::SocketAddr, Seen) {
    let decide = Arc::new(decide);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (seen, decide) = (Arc::clone(&s), Arc::clone(&decide));
            tokio::spawn(async move {
                // h2 sends GOAWAY when too many small DATA frames wait
                // unread; 40 busy bidi calls must not look like that.
                let handshake = h2::server::Builder::new()
                    .data_frame_budget(usize::MAX)
                    .handshake(tcp);
                let Ok(mut conn) = handshake.await else {
                    return;
                };
                while let Some(Ok((req, respond))) = conn.accept().await {
                    let index = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(Vec::new());
                        seen.len() - 1
                    };
                    let policy = decide(index, req.headers());
                    let seen = Arc::clone(&seen);
                    tokio::spawn(serve_stream(req, respond, policy, seen, index));
                }
            });
        }
    });
    (addr, seen)
}

async fn serve_stream(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    policy: Policy,
    seen: Seen,
    index: usize,
) {
    let mut body = req.into_body();
    let mut buf = BytesMut::new();
    let mut response = None;
    if matches!(policy, Policy::HeadersThenRefuseAfter(_) | Policy::Echo) {
        response = Some(respond.send_response(grpc_headers(), false).unwrap());
    }
    let (mut count, mut total) = (0usize, 0usize);
    loop {
        if let Policy::RefuseAfter(n) | Policy::HeadersThenRefuseAfter(n) = policy {
            if count >= n {
                match &mut response {
                    Some(send) => send.send_reset(h2::Reason::REFUSED_STREAM),
                    None => respond.send_reset(h2::Reason::REFUSED_STREAM),
                }
                return;
            }
        }
        let Some(Ok(chunk)) = body.data().await else {
            break;
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
        for message in take_messages(&mut buf) {
            count += 1;
            total += message.len();
            if let (Policy::Echo, Some(send)) = (policy, &mut response) {
                let _ = send.send_data(grpc_frame(&message), false);
            }
            seen.lock().unwrap()[index].push(message);
        }
    }
    let mut send = match response {
        Some(send) => send,
        None => respond.send_response(grpc_headers(), false).unwrap(),
    };
    if let Policy::Summary = policy {
        let _ = send.send_data(grpc_frame(format!("{count}/{total}").as_bytes()), false);
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let _ = send.send_trailers(trailers);
}

fn grpc_headers() -> http::Response<()> {
    let mut resp = http::Response::new(());
    resp.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc"),
    );
    resp
}

fn seen_streams(seen: &Seen) -> Vec<Vec<Bytes>> {
    seen.lock().unwrap().clone()
}

fn bytes(items: &[&'static str]) -> Vec<Bytes> {
    items
        .iter()
        .map(|s| Bytes::from_static(s.as_bytes()))
        .collect()
}

/// A bidi call to an h2 server whose first stream follows `first`; later
/// streams echo.
async fn bidi_call(first: Policy) -> (Seen, RequestSink<Bytes>, Streaming<Bytes>) {
    let (addr, seen) = h2_server(vec![first], Policy::Echo).await;
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let (sink, stream) = ch
        .streaming(path("/t.Svc/Echo"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    (seen, sink, stream)
}

async fn next(stream: &mut Streaming<Bytes>) -> Result<Option<Bytes>, Status> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a response within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_stream_refused_after_requests_is_replayed_when_reading() {
    let (seen, mut sink, mut stream) = bidi_call(Policy::RefuseAfter(2)).await;
    sink.send(Bytes::from_static(b"a")).await.unwrap();
    sink.send(Bytes::from_static(b"b")).await.unwrap();
    // The first stream is refused once both arrived; reading notices, and
    // the replay brings the echoes from the second stream.
    assert_eq!(next(&mut stream).await.unwrap().unwrap(), "a");
    assert_eq!(next(&mut stream).await.unwrap().unwrap(), "b");
    sink.send(Bytes::from_static(b"c")).await.unwrap();
    assert_eq!(next(&mut stream).await.unwrap().unwrap(), "c");
    sink.close().unwrap();
    assert_eq!(next(&mut stream).await.unwrap(), None);
    assert_eq!(
        seen_streams(&seen),
        vec![bytes(&["a", "b"]), bytes(&["a", "b", "c"])],
        "refused with two messages, then replayed in order"
    );
}

#[tokio::test]
async fn bidi_stream_refused_after_requests_is_replayed_when_sending() {
    let (seen, mut sink, mut stream) = bidi_call(Policy::RefuseAfter(2)).await;
    sink.send(Bytes::from_static(b"a")).await.unwrap();
    sink.send(Bytes::from_static(b"b")).await.unwrap();
    // Let the refusal arrive before anything reads the responses: the next
    // send is the first to meet the closed stream.
    for _ in 0..500 {
        if seen_streams(&seen).first().is_some_and(|s| s.len() == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    sink.send(Bytes::from_static(b"c")).await.unwrap();
    sink.close().unwrap();
    let mut echoed = Vec::new();
    while let Some(m) = next(&mut stream).await.unwrap() {
        echoed.push(m);
    }
    assert_eq!(echoed, bytes(&["a", "b", "c"]));
    assert_eq!(
        seen_streams(&seen),
        vec![bytes(&["a", "b"]), bytes(&["a", "b", "c"])]
    );
}

#[tokio::test]
async fn refusal_after_response_headers_is_not_replayed() {
    let (seen, mut sink, mut stream) = bidi_call(Policy::HeadersThenRefuseAfter(1)).await;
    sink.send(Bytes::from_static(b"a")).await.unwrap();
    // The headers committed the call: the server is processing it.
    let err = next(&mut stream).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("REFUSED_STREAM"), "{err}");
    // A later send names why the stream is gone.
    let send_err = sink.send(Bytes::from_static(b"b")).await.unwrap_err();
    assert!(send_err.message().contains("REFUSED_STREAM"), "{send_err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen_streams(&seen), vec![bytes(&["a"])], "no second stream");
}

#[tokio::test]
async fn client_stream_is_replayed_below_the_buffer_limit_only() {
    const MESSAGE: usize = 64 << 10;
    let payload = Bytes::from(vec![7u8; MESSAGE]);
    // Three messages (192 KiB) fit the 256 KiB replay buffer: replayed.
    let (addr, seen) = h2_server(vec![Policy::RefuseAfter(3)], Policy::Summary).await;
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let mut call = ch
        .client_streaming::<Bytes, Bytes, _>(path("/t.Svc/Sum"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    for _ in 0..3 {
        call.send(payload.clone()).await.unwrap();
    }
    let reply = call.close_and_recv().await.unwrap().into_inner();
    assert_eq!(reply, format!("3/{}", 3 * MESSAGE));
    assert_eq!(seen_streams(&seen).len(), 2);

    // Five (320 KiB) do not: the call committed, the refusal is its end.
    let (addr, seen) = h2_server(vec![Policy::RefuseAfter(5)], Policy::Summary).await;
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let mut call = ch
        .client_streaming::<Bytes, Bytes, _>(path("/t.Svc/Sum"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    for _ in 0..5 {
        call.send(payload.clone()).await.unwrap();
    }
    let err = call.close_and_recv().await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen_streams(&seen).len(), 1, "not replayed");
}

/// Joins the request messages of a client-streaming call.
struct Join;

impl Service for Join {
    fn name(&self) -> &'static str {
        "t.Svc"
    }

    fn call(&self, _method: &str, call: ServerCall) -> server::BoxFuture {
        Box::pin(server::client_streaming(
            call,
            BytesCodec,
            |req: Request<Streaming<Bytes>>| async move {
                let mut stream = req.into_inner();
                let mut joined = Vec::new();
                while let Some(m) = stream.message().await? {
                    joined.extend_from_slice(&m);
                }
                Ok::<_, Status>(Response::new(Bytes::from(joined)))
            },
        ))
    }
}

#[tokio::test]
async fn client_stream_above_goaway_last_stream_is_replayed_on_a_new_connection() {
    use raw_h2::{Conn, Frame};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (goaway_sent, goaway_seen) = tokio::sync::oneshot::channel();
    let first = tokio::spawn(async move {
        // The first connection: a hand-written server that reads the call's
        // headers and two messages, then says with GOAWAY (last stream 0)
        // that it processed none of it.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut conn = Conn::accept(tcp).await.unwrap();
        let mut data = BytesMut::new();
        let mut messages = Vec::new();
        while messages.len() < 2 {
            match conn.read_frame(Duration::from_secs(5)).await.unwrap() {
                Frame::Settings { ack: false, .. } => conn.send_settings_ack().await.unwrap(),
                Frame::Data { data: d, .. } => {
                    data.extend_from_slice(&d);
                    messages.extend(take_messages(&mut data));
                }
                _ => {}
            }
        }
        conn.send_goaway(0, 0, b"not processed").await.unwrap();
        let _ = goaway_sent.send(());
        // Then ferrogrpc serves the listener (the replay's new connection).
        let server = Server::builder().add_service(Join).build();
        let s = server.clone();
        tokio::spawn(async move { s.serve_listener(listener).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(conn);
        (messages, server)
    });
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let mut call = ch
        .client_streaming::<Bytes, Bytes, _>(path("/t.Svc/Join"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    call.send(Bytes::from_static(b"ab")).await.unwrap();
    call.send(Bytes::from_static(b"cd")).await.unwrap();
    goaway_seen.await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // This send meets the stream the GOAWAY closed, and waits for the replay.
    call.send(Bytes::from_static(b"ef")).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), call.close_and_recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.into_inner(), "abcdef");
    let (messages, server) = first.await.unwrap();
    assert_eq!(messages, bytes(&["ab", "cd"]));
    server.stop();
}

#[tokio::test]
async fn replay_that_cannot_reach_a_server_ends_both_halves_with_the_reason() {
    use raw_h2::{Conn, Frame};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first = tokio::spawn(async move {
        // One connection: GOAWAY (last stream 0) after the first message,
        // and nobody listens any more.
        let (tcp, _) = listener.accept().await.unwrap();
        drop(listener);
        let mut conn = Conn::accept(tcp).await.unwrap();
        loop {
            match conn.read_frame(Duration::from_secs(5)).await.unwrap() {
                Frame::Settings { ack: false, .. } => conn.send_settings_ack().await.unwrap(),
                Frame::Data { .. } => break,
                _ => {}
            }
        }
        conn.send_goaway(0, 0, b"").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let (mut sink, mut stream) = ch
        .streaming(path("/t.Svc/Echo"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    sink.send(Bytes::from_static(b"a")).await.unwrap();
    let err = next(&mut stream).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(
        err.message().contains("connect"),
        "names the failed connect: {err}"
    );
    let send_err = sink.send(Bytes::from_static(b"b")).await.unwrap_err();
    assert_eq!(send_err.code(), Code::Unavailable, "{send_err}");
    first.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_bidi_calls_with_refusals_all_complete_in_order() {
    // The first stream of every even-numbered call is refused after its
    // first message; everything else is echoed.
    let refused = Mutex::new(std::collections::HashSet::new());
    let (addr, seen) = h2_server_with(move |_, headers| {
        let call: u32 = headers["x-call"].to_str().unwrap().parse().unwrap();
        if call % 2 == 0 && refused.lock().unwrap().insert(call) {
            Policy::RefuseAfter(1)
        } else {
            Policy::Echo
        }
    })
    .await;
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let calls: Vec<_> = (0..40u32)
        .map(|call| {
            let ch = ch.clone();
            tokio::spawn(async move {
                let mut request = Request::new(());
                request
                    .metadata_mut()
                    .insert("x-call", &call.to_string())
                    .unwrap();
                let (mut sink, mut stream) = ch
                    .streaming(path("/t.Svc/Echo"), request, BytesCodec)
                    .await
                    .unwrap();
                let sender = tokio::spawn(async move {
                    for i in 0..5u32 {
                        sink.send(Bytes::from(format!("{call}.{i}"))).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                    sink.close().unwrap();
                });
                let mut echoed = Vec::new();
                while let Some(m) = next(&mut stream).await.unwrap() {
                    echoed.push(m);
                }
                sender.await.unwrap();
                let want: Vec<Bytes> = (0..5).map(|i| Bytes::from(format!("{call}.{i}"))).collect();
                assert_eq!(echoed, want, "call {call}");
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    // 40 calls, and one extra stream for each of the 20 refused.
    assert_eq!(seen_streams(&seen).len(), 60);
}
