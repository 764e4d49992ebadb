//! Client-side health checking (gRFC A17) on loopback: a round_robin
//! channel with `healthCheckConfig` stops sending calls to a backend that
//! turns NOT_SERVING (without failing a call) and sends to it again once it
//! is SERVING; a backend without the health service keeps its calls;
//! pick_first does not check; health streams do not keep a channel awake.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    connectivity::State,
    health::{self, ServingStatus},
    server::{self, BoxFuture, Server, ServerCall, Service},
    Request, Response,
};
use http::uri::PathAndQuery;

const SERVICE: &str = "h.Who";

/// Answers with its server's number.
struct Who(u8);

impl Service for Who {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn call(&self, _method: &str, call: ServerCall) -> BoxFuture {
        let id = Bytes::from(vec![self.0]);
        Box::pin(server::unary(
            call,
            BytesCodec,
            move |_req: Request<Bytes>| async move { Ok(Response::new(id)) },
        ))
    }
}

/// Starts server `id`, with the health service unless `with_health` is
/// false; returns its address and health state.
async fn backend(id: u8, with_health: bool) -> (String, health::Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let health = health::Server::new();
    health.set_serving_status(SERVICE, ServingStatus::Serving);
    let mut builder = Server::builder().add_service(Who(id));
    if with_health {
        builder = builder.add_health(&health);
    }
    let server = builder.build();
    tokio::spawn(async move { server.serve_listener(listener).await });
    (addr, health)
}

fn channel(addrs: &[&str], policy: &str) -> Channel {
    let config = format!(
        r#"{{"loadBalancingConfig": [{{"{policy}": {{}}}}],
            "healthCheckConfig": {{"serviceName": "{SERVICE}"}}}}"#
    );
    Channel::builder(format!("ipv4:{}", addrs.join(",")))
        .default_service_config(&config)
        .build()
        .unwrap()
}

async fn who(ch: &Channel) -> u8 {
    let req = Request::new(Bytes::new()).with_timeout(Duration::from_secs(5));
    let resp = ch
        .unary(PathAndQuery::from_static("/h.Who/Who"), req, BytesCodec)
        .await
        .expect("no call fails");
    resp.get_ref()[0]
}

/// Makes calls for `period` (at least `min` of them) and counts who
/// answered.
async fn spread(ch: &Channel, period: Duration, min: usize) -> BTreeMap<u8, usize> {
    let mut counts = BTreeMap::new();
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < period || n < min {
        *counts.entry(who(ch).await).or_default() += 1;
        n += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    counts
}

#[tokio::test]
async fn round_robin_routes_around_a_backend_that_is_not_serving() {
    let (a1, _h1) = backend(1, true).await;
    let (a2, h2) = backend(2, true).await;
    let (a3, _h3) = backend(3, true).await;
    let ch = channel(&[&a1, &a2, &a3], "round_robin");
    // All three healthy: all three answer.
    let counts = spread(&ch, Duration::from_millis(300), 30).await;
    assert_eq!(counts.len(), 3, "{counts:?}");

    // Backend 2 turns NOT_SERVING: within a second it gets no new calls,
    // and no call fails meanwhile (`who` panics on a failure).
    h2.set_serving_status(SERVICE, ServingStatus::NotServing);
    spread(&ch, Duration::from_secs(1), 10).await;
    let counts = spread(&ch, Duration::from_millis(500), 30).await;
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        [1, 3],
        "{counts:?}"
    );

    // SERVING again: it gets calls again.
    h2.set_serving_status(SERVICE, ServingStatus::Serving);
    spread(&ch, Duration::from_secs(1), 10).await;
    let counts = spread(&ch, Duration::from_millis(500), 30).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
}

#[tokio::test]
async fn a_backend_without_the_health_service_keeps_its_calls() {
    let (a1, _h1) = backend(1, true).await;
    let (a2, _h2) = backend(2, false).await;
    let ch = channel(&[&a1, &a2], "round_robin");
    let counts = spread(&ch, Duration::from_millis(500), 40).await;
    assert_eq!(counts.len(), 2, "{counts:?}");
}

#[tokio::test]
async fn all_backends_not_serving_fails_calls_fast_with_the_reason() {
    let (a1, h1) = backend(1, true).await;
    h1.set_serving_status(SERVICE, ServingStatus::NotServing);
    let ch = channel(&[&a1], "round_robin");
    let _ = ch.connect().await;
    let mut state = ch.state();
    let deadline = Instant::now() + Duration::from_secs(5);
    while state != State::TransientFailure && Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_secs(1), ch.wait_for_state_change(state)).await;
        state = ch.state();
    }
    assert_eq!(state, State::TransientFailure);
    let req = Request::new(Bytes::new()).with_timeout(Duration::from_secs(5));
    let err = ch
        .unary::<Bytes, Bytes, _>(PathAndQuery::from_static("/h.Who/Who"), req, BytesCodec)
        .await
        .unwrap_err();
    assert!(err.message().contains("NOT_SERVING"), "{err}");
}

#[tokio::test]
async fn pick_first_does_not_check_health() {
    let (a1, h1) = backend(1, true).await;
    h1.set_serving_status(SERVICE, ServingStatus::NotServing);
    let ch = channel(&[&a1], "pick_first");
    assert_eq!(who(&ch).await, 1);
}

#[tokio::test]
async fn health_streams_do_not_keep_the_channel_awake() {
    let (a1, _h1) = backend(1, true).await;
    let config = format!(
        r#"{{"loadBalancingConfig": [{{"round_robin": {{}}}}],
            "healthCheckConfig": {{"serviceName": "{SERVICE}"}}}}"#
    );
    let ch = Channel::builder(format!("ipv4:{a1}"))
        .default_service_config(&config)
        .idle_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert_eq!(who(&ch).await, 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while ch.state() != State::Idle && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ch.state(), State::Idle);
}

/// A health service whose first Watch fails (UNAVAILABLE), and later ones
/// answer SERVING.
struct FlakyHealth(std::sync::atomic::AtomicUsize);

impl health::pb::health_server::Health for FlakyHealth {
    async fn check(
        &self,
        _request: Request<health::pb::HealthCheckRequest>,
    ) -> Result<Response<health::pb::HealthCheckResponse>, ferrogrpc::Status> {
        Err(ferrogrpc::Status::unimplemented("not here"))
    }

    async fn list(
        &self,
        _request: Request<health::pb::HealthListRequest>,
    ) -> Result<Response<health::pb::HealthListResponse>, ferrogrpc::Status> {
        Err(ferrogrpc::Status::unimplemented("not here"))
    }

    async fn watch(
        &self,
        _request: Request<health::pb::HealthCheckRequest>,
        mut responses: ferrogrpc::server::ResponseSink<health::pb::HealthCheckResponse>,
    ) -> Result<(), ferrogrpc::Status> {
        if self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            return Err(ferrogrpc::Status::unavailable("health store not ready"));
        }
        responses
            .send(health::pb::HealthCheckResponse {
                status: ServingStatus::Serving as i32,
            })
            .await?;
        std::future::pending().await
    }
}

/// A health stream that fails is opened again (after the backoff), and the
/// backend becomes usable once it answers SERVING.
#[tokio::test]
async fn a_failed_health_stream_is_opened_again() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let watches = std::sync::Arc::new(FlakyHealth(Default::default()));
    let server = Server::builder()
        .add_service(Who(1))
        .add_service(health::pb::health_server::HealthServer::from_arc(
            std::sync::Arc::clone(&watches),
        ))
        .build();
    tokio::spawn(async move { server.serve_listener(listener).await });
    let ch = channel(&[&addr], "round_robin");
    let req = Request::new(Bytes::new())
        .with_timeout(Duration::from_secs(10))
        .with_wait_for_ready(true);
    let resp = ch
        .unary(PathAndQuery::from_static("/h.Who/Who"), req, BytesCodec)
        .await
        .expect("served once the health check answers");
    assert_eq!(resp.get_ref()[0], 1);
    assert_eq!(
        watches.0.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the stream was opened twice"
    );
}
