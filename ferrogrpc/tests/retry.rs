//! Retries by the service config's retry policy (gRFC A6), end to end on
//! loopback: every RPC kind retried after UNAVAILABLE with the same
//! requests, `grpc-previous-rpc-attempts`, non-retryable codes, maxAttempts
//! and the channel's cap, commit on response headers and on the buffer
//! limits, server pushback, throttling, the deadline, and opting out.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use ferrogrpc::{
    client::{Channel, ChannelBuilder, ClientStreamingCall},
    codec::BytesCodec,
    metadata::MetadataMap,
    server::{self, BoxFuture, ResponseSink, Server, ServerCall, Service},
    Code, Request, Response, Status, Streaming,
};
use http::uri::PathAndQuery;

/// One attempt as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    previous: Option<String>,
    messages: Vec<Bytes>,
}

/// Fails the first `x-fail` attempts of each call (by
/// `grpc-previous-rpc-attempts`) with `x-code` (default UNAVAILABLE) and
/// `x-pushback-ms`; with `x-headers-first`, sends response headers before
/// failing. Otherwise answers with the number of attempts before this one.
#[derive(Clone, Default)]
struct Flaky {
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn num(md: &MetadataMap, key: &str) -> Option<i64> {
    md.get(key).map(|v| v.parse().unwrap())
}

impl Flaky {
    fn record(
        &self,
        method: &str,
        md: &MetadataMap,
        messages: Vec<Bytes>,
    ) -> Result<Bytes, Status> {
        let previous = md.get("grpc-previous-rpc-attempts").map(str::to_string);
        self.seen.lock().unwrap().push(Seen {
            method: method.to_string(),
            previous: previous.clone(),
            messages,
        });
        let attempt = previous.map_or(0, |p| p.parse::<i64>().unwrap());
        if attempt < num(md, "x-fail").unwrap_or(0) {
            let code = num(md, "x-code").map_or(Code::Unavailable, |c| Code::from(c as i32));
            let mut status = Status::new(code, format!("attempt {attempt} fails"));
            match num(md, "x-pushback-ms") {
                Some(ms) if ms < 0 => status = status.without_retry(),
                Some(ms) => status = status.with_retry_pushback(Duration::from_millis(ms as u64)),
                None => {}
            }
            return Err(status);
        }
        Ok(Bytes::from(attempt.to_string()))
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn read_all(stream: &mut Streaming<Bytes>) -> Result<Vec<Bytes>, Status> {
    let mut all = Vec::new();
    while let Some(msg) = stream.message().await? {
        all.push(msg);
    }
    Ok(all)
}

impl Service for Flaky {
    fn name(&self) -> &'static str {
        "r.Flaky"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        let this = self.clone();
        match method {
            "Unary" => Box::pin(server::unary(
                call,
                BytesCodec,
                move |req: Request<Bytes>| async move {
                    let (md, msg) = req.into_parts();
                    Ok(Response::new(this.record("Unary", &md, vec![msg])?))
                },
            )),
            "ServerStream" => Box::pin(server::server_streaming(
                call,
                BytesCodec,
                move |req: Request<Bytes>, mut sink: ResponseSink<Bytes>| async move {
                    let (md, msg) = req.into_parts();
                    if md.contains_key("x-headers-first") {
                        sink.send_header(MetadataMap::new())?;
                    }
                    let reply = this.record("ServerStream", &md, vec![msg])?;
                    sink.send(reply.clone()).await?;
                    sink.send(reply).await
                },
            )),
            "ClientStream" => Box::pin(server::client_streaming(
                call,
                BytesCodec,
                move |req: Request<Streaming<Bytes>>| async move {
                    let md = req.metadata().clone();
                    let messages = read_all(&mut req.into_inner()).await?;
                    Ok(Response::new(this.record("ClientStream", &md, messages)?))
                },
            )),
            "Bidi" => Box::pin(server::streaming(
                call,
                BytesCodec,
                move |req: Request<Streaming<Bytes>>, mut sink: ResponseSink<Bytes>| async move {
                    let md = req.metadata().clone();
                    let messages = read_all(&mut req.into_inner()).await?;
                    let reply = this.record("Bidi", &md, messages.clone())?;
                    sink.send(reply).await?;
                    for m in messages {
                        sink.send(m).await?;
                    }
                    Ok(())
                },
            )),
            _ => Box::pin(call.unimplemented()),
        }
    }
}

const POLICY: &str = r#"{"methodConfig": [{"name": [{"service": "r.Flaky"}],
    "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.01s", "maxBackoff": "0.05s",
    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]}}]}"#;

async fn serve() -> (Flaky, std::net::SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let flaky = Flaky::default();
    let server = Server::builder().add_service(flaky.clone()).build();
    tokio::spawn(async move { server.serve_listener(listener).await });
    (flaky, addr)
}

async fn setup_with(
    config: &str,
    tweak: impl FnOnce(ChannelBuilder) -> ChannelBuilder,
) -> (Flaky, Channel) {
    let (flaky, addr) = serve().await;
    let ch = tweak(Channel::builder(addr.to_string()).default_service_config(config))
        .build()
        .unwrap();
    (flaky, ch)
}

async fn setup() -> (Flaky, Channel) {
    setup_with(POLICY, |b| b).await
}

fn path(method: &str) -> PathAndQuery {
    PathAndQuery::try_from(format!("/r.Flaky/{method}")).unwrap()
}

fn req<T>(msg: T, md: &[(&str, &str)]) -> Request<T> {
    let mut r = Request::new(msg).with_timeout(Duration::from_secs(20));
    for (k, v) in md {
        r.metadata_mut().insert(k, v).unwrap();
    }
    r
}

async fn client_stream(ch: &Channel, md: &[(&str, &str)]) -> ClientStreamingCall<Bytes, Bytes> {
    ch.client_streaming(path("ClientStream"), req((), md), BytesCodec)
        .await
        .unwrap()
}

async fn unary(ch: &Channel, md: &[(&str, &str)]) -> Result<Bytes, Status> {
    ch.unary(path("Unary"), req(Bytes::from_static(b"u"), md), BytesCodec)
        .await
        .map(Response::into_inner)
}

fn previous(seen: &[Seen]) -> Vec<Option<&str>> {
    seen.iter().map(|s| s.previous.as_deref()).collect()
}

const TWO_ATTEMPTS: [Option<&str>; 3] = [None, Some("1"), Some("2")];

#[tokio::test]
async fn unary_succeeds_after_two_failures() {
    let (flaky, ch) = setup().await;
    assert_eq!(unary(&ch, &[("x-fail", "2")]).await.unwrap(), "2");
    assert_eq!(previous(&flaky.seen()), TWO_ATTEMPTS);
}

#[tokio::test]
async fn server_streaming_succeeds_after_two_failures() {
    let (flaky, ch) = setup().await;
    let mut stream = ch
        .server_streaming(
            path("ServerStream"),
            req(Bytes::from_static(b"s"), &[("x-fail", "2")]),
            BytesCodec,
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read_all(&mut stream).await.unwrap(), ["2", "2"]);
    assert_eq!(previous(&flaky.seen()), TWO_ATTEMPTS);
}

#[tokio::test]
async fn client_streaming_replays_the_same_messages_on_each_attempt() {
    let (flaky, ch) = setup().await;
    let mut call = client_stream(&ch, &[("x-fail", "2")]).await;
    for m in ["a", "b", "c"] {
        call.send(Bytes::from(m)).await.unwrap();
    }
    assert_eq!(call.close_and_recv().await.unwrap().into_inner(), "2");
    let seen = flaky.seen();
    assert_eq!(previous(&seen), TWO_ATTEMPTS);
    for s in &seen {
        assert_eq!(s.messages, ["a", "b", "c"], "{s:?}");
    }
}

#[tokio::test]
async fn bidi_replays_the_same_messages_on_each_attempt() {
    let (flaky, ch) = setup().await;
    let (mut sink, mut stream) = ch
        .streaming::<Bytes, Bytes, _>(path("Bidi"), req((), &[("x-fail", "2")]), BytesCodec)
        .await
        .unwrap();
    for m in ["x", "y"] {
        sink.send(Bytes::from(m)).await.unwrap();
    }
    sink.close().unwrap();
    assert_eq!(read_all(&mut stream).await.unwrap(), ["2", "x", "y"]);
    let seen = flaky.seen();
    assert_eq!(previous(&seen), TWO_ATTEMPTS);
    for s in &seen {
        assert_eq!(s.messages, ["x", "y"], "{s:?}");
    }
}

#[tokio::test]
async fn non_retryable_codes_are_not_retried() {
    let (flaky, ch) = setup().await;
    let err = unary(&ch, &[("x-fail", "1"), ("x-code", "9")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(flaky.seen().len(), 1);
}

#[tokio::test]
async fn max_attempts_and_the_channel_cap_are_respected() {
    let (flaky, ch) = setup().await;
    let err = unary(&ch, &[("x-fail", "10")]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(err.message(), "attempt 3 fails");
    assert_eq!(flaky.seen().len(), 4, "maxAttempts 4");

    let (flaky, ch) = setup_with(POLICY, |b| b.max_retry_attempts(2)).await;
    unary(&ch, &[("x-fail", "10")]).await.unwrap_err();
    assert_eq!(flaky.seen().len(), 2, "the channel's cap of 2");
}

#[tokio::test]
async fn a_failure_after_response_headers_is_not_retried() {
    let (flaky, ch) = setup().await;
    let result = ch
        .server_streaming::<Bytes, Bytes, _>(
            path("ServerStream"),
            req(
                Bytes::from_static(b"s"),
                &[("x-fail", "2"), ("x-headers-first", "1")],
            ),
            BytesCodec,
        )
        .await;
    let err = match result {
        Ok(resp) => read_all(&mut resp.into_inner()).await.unwrap_err(),
        Err(err) => err,
    };
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(flaky.seen().len(), 1);
}

#[tokio::test]
async fn a_stream_past_its_buffer_limit_commits() {
    let (flaky, ch) = setup_with(POLICY, |b| b.per_rpc_retry_buffer_size(1000)).await;
    let mut call = client_stream(&ch, &[("x-fail", "1")]).await;
    for _ in 0..3 {
        call.send(Bytes::from(vec![7; 400])).await.unwrap();
    }
    let err = call.close_and_recv().await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(flaky.seen().len(), 1, "1,200 bytes kept: not retried");
    // Under the limit it is retried.
    let mut call = client_stream(&ch, &[("x-fail", "1")]).await;
    call.send(Bytes::from(vec![7; 400])).await.unwrap();
    assert_eq!(call.close_and_recv().await.unwrap().into_inner(), "1");
}

#[tokio::test]
async fn the_channel_wide_buffer_is_shared_by_calls() {
    // One 600-byte stream holds the 1,000-byte channel buffer; a second
    // call's 600 bytes do not fit, so it is not retried.
    let (flaky, ch) = setup_with(POLICY, |b| b.retry_buffer_size(1000)).await;
    let mut holder = ch
        .client_streaming::<Bytes, Bytes, _>(path("ClientStream"), req((), &[]), BytesCodec)
        .await
        .unwrap();
    holder.send(Bytes::from(vec![1; 600])).await.unwrap();
    let err = ch
        .unary(
            path("Unary"),
            req(Bytes::from(vec![2; 600]), &[("x-fail", "1")]),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        flaky.seen().iter().filter(|s| s.method == "Unary").count(),
        1
    );
    // Once the holder commits, its bytes are released.
    holder.close_and_recv().await.unwrap();
    ch.unary(
        path("Unary"),
        req(Bytes::from(vec![2; 600]), &[("x-fail", "1")]),
        BytesCodec,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn pushback_zero_and_positive_retry_negative_stops() {
    let (flaky, ch) = setup().await;
    let err = unary(&ch, &[("x-fail", "2"), ("x-pushback-ms", "-1")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(flaky.seen().len(), 1, "-1: no retry");

    assert_eq!(
        unary(&ch, &[("x-fail", "2"), ("x-pushback-ms", "0")])
            .await
            .unwrap(),
        "2"
    );

    let start = Instant::now();
    assert_eq!(
        unary(&ch, &[("x-fail", "1"), ("x-pushback-ms", "300")])
            .await
            .unwrap(),
        "1"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn throttling_stops_retries_and_successes_bring_them_back() {
    let config = POLICY.replacen(
        "{\"methodConfig\"",
        "{\"retryThrottling\": {\"maxTokens\": 4, \"tokenRatio\": 1}, \"methodConfig\"",
        1,
    );
    let (flaky, ch) = setup_with(&config, |b| b).await;
    // 4 tokens: the first failure leaves 3 (retried), the second 2 (= half:
    // throttled, not retried).
    unary(&ch, &[("x-fail", "10"), ("x-code", "8")])
        .await
        .unwrap_err();
    let attempts = flaky.seen().len();
    assert_eq!(attempts, 2, "one retry before the throttle closes");
    unary(&ch, &[("x-fail", "1")]).await.unwrap_err();
    assert_eq!(flaky.seen().len(), attempts + 1, "throttled: no retry");
    // 1 token left; three successes give back three: the next failure
    // leaves 3, above half, and is retried.
    for _ in 0..3 {
        unary(&ch, &[]).await.unwrap();
    }
    let before = flaky.seen().len();
    assert_eq!(unary(&ch, &[("x-fail", "1")]).await.unwrap(), "1");
    assert_eq!(flaky.seen().len(), before + 2);
}

#[tokio::test]
async fn a_deadline_shorter_than_the_backoff_ends_with_deadline_exceeded() {
    let (flaky, ch) = setup().await;
    // The server asks for a 10 s delay; the call has 300 ms.
    let start = Instant::now();
    let mut r = Request::new(Bytes::new()).with_timeout(Duration::from_millis(300));
    r.metadata_mut().insert("x-fail", "1").unwrap();
    r.metadata_mut().insert("x-pushback-ms", "10000").unwrap();
    let err = ch.unary(path("Unary"), r, BytesCodec).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(flaky.seen().len(), 1, "no attempt after the deadline");
}

#[tokio::test]
async fn retries_can_be_turned_off_per_channel_and_per_call() {
    let (flaky, ch) = setup_with(POLICY, ChannelBuilder::disable_retry).await;
    unary(&ch, &[("x-fail", "1")]).await.unwrap_err();
    assert_eq!(flaky.seen().len(), 1);

    let (flaky, ch) = setup().await;
    let r = req(Bytes::new(), &[("x-fail", "1")]).with_retry(false);
    ch.unary(path("Unary"), r, BytesCodec).await.unwrap_err();
    assert_eq!(flaky.seen().len(), 1);
}

/// Records the Begin and End events a stats handler sees.
#[derive(Clone, Default)]
struct Attempts(Arc<Mutex<Vec<String>>>);

impl ferrogrpc::stats::Handler for Attempts {
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

/// Counts the calls a unary interceptor sees.
#[derive(Clone, Default)]
struct Calls(Arc<std::sync::atomic::AtomicUsize>);

impl ferrogrpc::interceptor::UnaryClientInterceptor for Calls {
    fn intercept<'a>(
        &'a self,
        request: Request<ferrogrpc::interceptor::AnyMessage>,
        _info: ferrogrpc::interceptor::CallInfo<'a>,
        next: ferrogrpc::interceptor::UnaryClientNext<'a>,
    ) -> ferrogrpc::interceptor::BoxFuture<
        'a,
        Result<Response<ferrogrpc::interceptor::AnyMessage>, Status>,
    > {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(next.run(request))
    }
}

#[tokio::test]
async fn stats_see_each_attempt_and_interceptors_one_call() {
    let events = Attempts::default();
    let calls = Calls::default();
    let (_flaky, ch) = setup_with(POLICY, |b| {
        b.stats_handler(events.clone())
            .unary_interceptor(calls.clone())
    })
    .await;
    assert_eq!(unary(&ch, &[("x-fail", "2")]).await.unwrap(), "2");
    assert_eq!(
        *events.0.lock().unwrap(),
        [
            "Begin Original 0",
            "End Err(Unavailable)",
            "Begin Retry 1",
            "End Err(Unavailable)",
            "Begin Retry 2",
            "End Ok(())",
        ]
    );
    assert_eq!(calls.0.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A bidi call replayed under the policy reports its attempts too.
    events.0.lock().unwrap().clear();
    let (mut sink, mut stream) = ch
        .streaming::<Bytes, Bytes, _>(path("Bidi"), req((), &[("x-fail", "1")]), BytesCodec)
        .await
        .unwrap();
    sink.send(Bytes::from_static(b"m")).await.unwrap();
    sink.close().unwrap();
    assert_eq!(read_all(&mut stream).await.unwrap(), ["1", "m"]);
    assert_eq!(
        *events.0.lock().unwrap(),
        [
            "Begin Original 0",
            "End Err(Unavailable)",
            "Begin Retry 1",
            "End Ok(())",
        ]
    );
}

/// The very first call of a channel uses the retry policy its resolver
/// reports, even when the report comes after the call started.
#[tokio::test]
async fn the_first_call_uses_the_policy_the_resolver_brings() {
    use ferrogrpc::{
        resolver::{manual::ManualResolver, Address, Builder, State},
        serviceconfig::ServiceConfig,
    };
    let (flaky, addr) = serve().await;
    let resolver = ManualResolver::new("retryfirst");
    let ch = Channel::builder(format!("{}:///flaky", resolver.scheme()))
        .resolver(resolver.clone())
        .build()
        .unwrap();
    let call = tokio::spawn({
        let ch = ch.clone();
        async move { unary(&ch, &[("x-fail", "2")]).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = State::new([Address::from(addr)])
        .with_service_config(Ok(ServiceConfig::parse(POLICY).unwrap()));
    resolver.update_state(state);
    assert_eq!(call.await.unwrap().unwrap(), "2");
    assert_eq!(previous(&flaky.seen()), TWO_ATTEMPTS);
}
