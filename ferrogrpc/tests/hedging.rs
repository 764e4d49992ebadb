//! Hedging by the service config's hedging policy (gRFC A6), end to end on
//! loopback: a hedge sent after `hedgingDelay` answers for a stalled first
//! attempt, which its server sees cancelled; hedges reach different
//! backends under round_robin; non-fatal failures bring the next hedge
//! forward, fatal ones end the call; maxAttempts, pushback and
//! `grpc-previous-rpc-attempts`.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
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

/// Counts handlers that were dropped before they finished.
struct CancelGuard(Arc<AtomicUsize>, bool);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// An attempt's number and the request messages it carried.
type AttemptMessages = (u32, Vec<Bytes>);

/// By `grpc-previous-rpc-attempts` (the attempt number): attempts listed in
/// `x-stall` never answer, those in `x-fail` fail with `x-code` (default
/// UNAVAILABLE) and `x-pushback-ms`; the others answer `<server id>:<n>`.
#[derive(Clone)]
struct Backend {
    id: &'static str,
    attempts: Arc<Mutex<Vec<u32>>>,
    cancelled: Arc<AtomicUsize>,
    /// The request messages each attempt of a streaming call carried.
    messages: Arc<Mutex<Vec<AttemptMessages>>>,
    /// The streaming attempts that started.
    started: Arc<Mutex<Vec<u32>>>,
}

fn listed(md: &MetadataMap, key: &str, n: u32) -> bool {
    md.get(key)
        .is_some_and(|v| v.split(',').any(|x| x == n.to_string()))
}

impl Backend {
    async fn read_all(
        &self,
        md: &MetadataMap,
        mut stream: Streaming<Bytes>,
    ) -> Result<Vec<Bytes>, Status> {
        let n: u32 = md
            .get("grpc-previous-rpc-attempts")
            .map_or(0, |v| v.parse().unwrap());
        self.started.lock().unwrap().push(n);
        let mut all = Vec::new();
        while let Some(m) = stream.message().await? {
            all.push(m);
        }
        self.messages.lock().unwrap().push((n, all.clone()));
        Ok(all)
    }

    async fn handle(&self, md: &MetadataMap) -> Result<Bytes, Status> {
        let n: u32 = md
            .get("grpc-previous-rpc-attempts")
            .map_or(0, |v| v.parse().unwrap());
        self.attempts.lock().unwrap().push(n);
        let mut guard = CancelGuard(Arc::clone(&self.cancelled), false);
        if listed(md, "x-stall", n) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if let Some(ms) = md.get("x-delay-ms") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        }
        guard.1 = true;
        if listed(md, "x-fail", n) {
            let code = md
                .get("x-code")
                .map_or(Code::Unavailable, |c| Code::from(c.parse::<i32>().unwrap()));
            let mut status = Status::new(code, format!("attempt {n} fails"));
            if let Some(ms) = md.get("x-pushback-ms") {
                let ms: i64 = ms.parse().unwrap();
                status = if ms < 0 {
                    status.without_retry()
                } else {
                    status.with_retry_pushback(Duration::from_millis(ms as u64))
                };
            }
            return Err(status);
        }
        Ok(Bytes::from(format!("{}:{n}", self.id)))
    }
}

impl Service for Backend {
    fn name(&self) -> &'static str {
        "h.Hedged"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        let this = self.clone();
        match method {
            "Unary" => Box::pin(server::unary(
                call,
                BytesCodec,
                move |req: Request<Bytes>| async move {
                    Ok(Response::new(this.handle(req.metadata()).await?))
                },
            )),
            "ClientStream" => Box::pin(server::client_streaming(
                call,
                BytesCodec,
                move |req: Request<Streaming<Bytes>>| async move {
                    let md = req.metadata().clone();
                    this.read_all(&md, req.into_inner()).await?;
                    Ok(Response::new(this.handle(&md).await?))
                },
            )),
            "Bidi" => Box::pin(server::streaming(
                call,
                BytesCodec,
                move |req: Request<Streaming<Bytes>>, mut sink: ResponseSink<Bytes>| async move {
                    let md = req.metadata().clone();
                    let messages = this.read_all(&md, req.into_inner()).await?;
                    sink.send(this.handle(&md).await?).await?;
                    for m in messages {
                        sink.send(m).await?;
                    }
                    Ok(())
                },
            )),
            _ => Box::pin(server::server_streaming(
                call,
                BytesCodec,
                move |req: Request<Bytes>, mut sink: ResponseSink<Bytes>| async move {
                    let reply = this.handle(req.metadata()).await?;
                    sink.send(reply.clone()).await?;
                    sink.send(reply).await
                },
            )),
        }
    }
}

async fn backend(id: &'static str) -> (Backend, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let backend = Backend {
        id,
        attempts: Arc::default(),
        cancelled: Arc::default(),
        messages: Arc::default(),
        started: Arc::default(),
    };
    let server = Server::builder().add_service(backend.clone()).build();
    tokio::spawn(async move { server.serve_listener(listener).await });
    (backend, addr)
}

fn config(delay: &str, extra: &str) -> String {
    format!(
        r#"{{{extra}"methodConfig": [{{"name": [{{"service": "h.Hedged"}}],
        "hedgingPolicy": {{"maxAttempts": 3, "hedgingDelay": "{delay}",
        "nonFatalStatusCodes": ["UNAVAILABLE"]}}}}]}}"#
    )
}

fn channel(target: &str, config: &str) -> Channel {
    Channel::builder(target)
        .default_service_config(config)
        .build()
        .unwrap()
}

async fn unary(ch: &Channel, md: &[(&str, &str)]) -> Result<Bytes, Status> {
    let mut req = Request::new(Bytes::new()).with_timeout(Duration::from_secs(20));
    for (k, v) in md {
        req.metadata_mut().insert(k, v).unwrap();
    }
    ch.unary(
        PathAndQuery::from_static("/h.Hedged/Unary"),
        req,
        BytesCodec,
    )
    .await
    .map(Response::into_inner)
}

async fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn a_hedge_answers_for_a_stalled_attempt_which_is_cancelled() {
    let (b, addr) = backend("a").await;
    let ch = channel(&addr, &config("0.2s", ""));
    let start = Instant::now();
    assert_eq!(unary(&ch, &[("x-stall", "0")]).await.unwrap(), "a:1");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(*b.attempts.lock().unwrap(), [0, 1]);
    assert!(
        wait_for(|| b.cancelled.load(Ordering::SeqCst) == 1).await,
        "the stalled attempt's handler was cancelled"
    );
}

#[tokio::test]
async fn server_streaming_is_hedged_too() {
    let (b, addr) = backend("a").await;
    let ch = channel(&addr, &config("0.1s", ""));
    let mut req = Request::new(Bytes::new()).with_timeout(Duration::from_secs(20));
    req.metadata_mut().insert("x-stall", "0").unwrap();
    let mut stream = ch
        .server_streaming::<Bytes, Bytes, _>(
            PathAndQuery::from_static("/h.Hedged/Stream"),
            req,
            BytesCodec,
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap(), "a:1");
    assert_eq!(stream.message().await.unwrap().unwrap(), "a:1");
    assert!(stream.message().await.unwrap().is_none());
    assert!(wait_for(|| b.cancelled.load(Ordering::SeqCst) == 1).await);
}

#[tokio::test]
async fn hedges_reach_different_backends_under_round_robin() {
    let (a, addr_a) = backend("a").await;
    let (b, addr_b) = backend("b").await;
    let lb = r#""loadBalancingConfig": [{"round_robin": {}}], "#;
    let ch = channel(&format!("ipv4:{addr_a},{addr_b}"), &config("0.1s", lb));
    // Both backends READY first, so the picker alternates.
    for _ in 0..4 {
        unary(&ch, &[]).await.unwrap();
    }
    let before = (
        a.attempts.lock().unwrap().len(),
        b.attempts.lock().unwrap().len(),
    );
    let reply = unary(&ch, &[("x-stall", "0")]).await.unwrap();
    assert!(reply.ends_with(b":1"), "{reply:?}");
    let new_a = a.attempts.lock().unwrap()[before.0..].to_vec();
    let new_b = b.attempts.lock().unwrap()[before.1..].to_vec();
    assert_eq!(new_a.len() + new_b.len(), 2, "{new_a:?} {new_b:?}");
    assert!(
        !new_a.is_empty() && !new_b.is_empty(),
        "one attempt each: {new_a:?} {new_b:?}"
    );
}

#[tokio::test]
async fn a_non_fatal_failure_sends_the_next_hedge_at_once() {
    let (b, addr) = backend("a").await;
    // A 10 s hedging delay: only the failure can bring attempt 1 forward.
    let ch = channel(&addr, &config("10s", ""));
    let start = Instant::now();
    assert_eq!(unary(&ch, &[("x-fail", "0")]).await.unwrap(), "a:1");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(*b.attempts.lock().unwrap(), [0, 1]);
}

#[tokio::test]
async fn a_fatal_failure_ends_the_call_and_cancels_the_other_hedges() {
    let (b, addr) = backend("a").await;
    let ch = channel(&addr, &config("0.05s", ""));
    // Attempt 0 stalls; attempt 1 fails fatally (INTERNAL) after 200 ms.
    let err = unary(
        &ch,
        &[
            ("x-stall", "0,2"),
            ("x-fail", "1"),
            ("x-code", "13"),
            ("x-delay-ms", "200"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert_eq!(err.message(), "attempt 1 fails");
    assert!(
        wait_for(|| b.cancelled.load(Ordering::SeqCst) == 2).await,
        "attempts 0 and 2 cancelled: {}",
        b.cancelled.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn max_attempts_bound_the_hedges_and_the_last_failure_is_returned() {
    let (b, addr) = backend("a").await;
    let ch = channel(&addr, &config("0.01s", ""));
    let err = unary(&ch, &[("x-fail", "0,1,2,3,4")]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let mut seen = b.attempts.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2], "maxAttempts 3");
}

#[tokio::test]
async fn pushback_never_stops_further_hedges() {
    let (b, addr) = backend("a").await;
    let ch = channel(&addr, &config("0.01s", ""));
    let err = unary(
        &ch,
        &[
            ("x-fail", "0,1,2"),
            ("x-pushback-ms", "-1"),
            ("x-delay-ms", "100"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    // Hedges 1 and 2 went out at 10 and 20 ms, before attempt 0 failed at
    // 100 ms with its pushback: all three were sent, none after.
    assert_eq!(b.attempts.lock().unwrap().len(), 3);
    let (b, addr) = backend("a").await;
    let ch = channel(&addr, &config("1s", ""));
    let err = unary(&ch, &[("x-fail", "0"), ("x-pushback-ms", "-1")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        *b.attempts.lock().unwrap(),
        [0],
        "no hedge after a 'do not retry'"
    );
}

/// Records the Begin and End events a stats handler sees.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl ferrogrpc::stats::Handler for Events {
    fn handle_rpc(&self, e: &ferrogrpc::stats::RpcEvent<'_>) {
        use ferrogrpc::stats::RpcEventKind;
        let line = match &e.kind {
            RpcEventKind::Begin {
                attempt,
                previous_attempts,
                ..
            } => format!("Begin {attempt:?} {previous_attempts}"),
            RpcEventKind::End { result, .. } => format!("End {:?}", result.map_err(|s| s.code())),
            _ => return,
        };
        self.0.lock().unwrap().push(line);
    }
}

#[tokio::test]
async fn stats_see_one_begin_and_one_end_per_hedge() {
    let (_b, addr) = backend("a").await;
    let events = Events::default();
    let ch = Channel::builder(&addr)
        .default_service_config(&config("0.1s", ""))
        .stats_handler(events.clone())
        .build()
        .unwrap();
    assert_eq!(unary(&ch, &[("x-stall", "0")]).await.unwrap(), "a:1");
    assert_eq!(
        *events.0.lock().unwrap(),
        [
            "Begin Original 0",
            "Begin Hedge 1",
            "End Err(Cancelled)",
            "End Ok(())"
        ]
    );
    // A non-fatal failure, then a success.
    events.0.lock().unwrap().clear();
    assert_eq!(unary(&ch, &[("x-fail", "0")]).await.unwrap(), "a:1");
    assert_eq!(
        *events.0.lock().unwrap(),
        [
            "Begin Original 0",
            "End Err(Unavailable)",
            "Begin Hedge 1",
            "End Ok(())"
        ]
    );
}

#[tokio::test]
async fn client_streaming_hedges_replay_the_messages_sent_so_far() {
    let (b, addr) = backend("a").await;
    let ch = channel(&addr, &config("0.2s", ""));
    let mut req = Request::new(()).with_timeout(Duration::from_secs(20));
    req.metadata_mut().insert("x-stall", "0").unwrap();
    let mut call = ch
        .client_streaming::<Bytes, Bytes, _>(
            PathAndQuery::from_static("/h.Hedged/ClientStream"),
            req,
            BytesCodec,
        )
        .await
        .unwrap();
    // Two messages before the hedge starts, one after: the hedge gets all
    // three, the first two by replay.
    call.send(Bytes::from_static(b"1")).await.unwrap();
    call.send(Bytes::from_static(b"2")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    call.send(Bytes::from_static(b"3")).await.unwrap();
    assert_eq!(call.close_and_recv().await.unwrap().into_inner(), "a:1");
    // Attempt 0 and every hedge (1 at 200 ms, 2 at 400 ms) had all three.
    let seen = b.messages.lock().unwrap().clone();
    let all: Vec<Bytes> = vec!["1".into(), "2".into(), "3".into()];
    assert!(seen.len() >= 2, "{seen:?}");
    for (n, messages) in &seen {
        assert_eq!(messages, &all, "attempt {n}");
    }
    assert!(
        wait_for(|| b.cancelled.load(Ordering::SeqCst) == 1).await,
        "attempt 0 cancelled"
    );
}

#[tokio::test]
async fn bidi_hedges_race_and_a_non_fatal_failure_brings_the_next_forward() {
    let (b, addr) = backend("a").await;
    let ch = channel(&addr, &config("10s", ""));
    let mut req = Request::new(()).with_timeout(Duration::from_secs(20));
    req.metadata_mut().insert("x-fail", "0").unwrap();
    let (mut sink, mut stream) = ch
        .streaming::<Bytes, Bytes, _>(PathAndQuery::from_static("/h.Hedged/Bidi"), req, BytesCodec)
        .await
        .unwrap();
    sink.send(Bytes::from_static(b"x")).await.unwrap();
    sink.send(Bytes::from_static(b"y")).await.unwrap();
    sink.close().unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        got.push(m);
    }
    assert_eq!(got, ["a:1", "x", "y"]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "not the 10 s hedging delay"
    );
    assert_eq!(*b.attempts.lock().unwrap(), [0, 1]);
}

#[tokio::test]
async fn a_hedged_stream_past_its_buffer_commits_to_one_attempt() {
    let (b, addr) = backend("a").await;
    let ch = Channel::builder(&addr)
        .default_service_config(&config("0.05s", ""))
        .per_rpc_retry_buffer_size(1000)
        .build()
        .unwrap();
    let req = Request::new(()).with_timeout(Duration::from_secs(20));
    let mut call = ch
        .client_streaming::<Bytes, Bytes, _>(
            PathAndQuery::from_static("/h.Hedged/ClientStream"),
            req,
            BytesCodec,
        )
        .await
        .unwrap();
    // All three attempts start (hedges at 50 and 100 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 1,200 bytes pass the 1,000-byte buffer: the call commits to attempt
    // 0, the oldest, and the hedges are cancelled.
    for _ in 0..3 {
        call.send(Bytes::from(vec![7; 400])).await.unwrap();
    }
    assert_eq!(call.close_and_recv().await.unwrap().into_inner(), "a:0");
    let mut started = b.started.lock().unwrap().clone();
    started.sort_unstable();
    assert_eq!(started, [0, 1, 2], "the hedges had started");
    let seen = b.messages.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        1,
        "only the committed attempt read all its requests: {seen:?}"
    );
    assert_eq!(seen[0].0, 0);
    assert_eq!(seen[0].1.len(), 3);
}
