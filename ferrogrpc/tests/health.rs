//! The health service (`grpc.health.v1.Health`) on loopback: Check, Watch
//! and List against the statuses a `health::Server` is given, shutdown and
//! resume, and a graceful stop that turns the server NOT_SERVING and ends
//! the watches.

use std::time::Duration;

use ferrogrpc::{
    client::Channel,
    health::{
        self,
        pb::{health_client::HealthClient, HealthCheckRequest, HealthListRequest},
        ServingStatus,
    },
    server::Server,
    Code, Request, Streaming,
};

async fn start() -> (health::Server, Server, HealthClient) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = health::Server::new();
    let server = Server::builder().add_health(&health).build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    let client = HealthClient::new(Channel::from_target(&addr.to_string()).unwrap());
    (health, server, client)
}

fn req(service: &str) -> Request<HealthCheckRequest> {
    Request::new(HealthCheckRequest {
        service: service.into(),
    })
    .with_timeout(Duration::from_secs(10))
}

async fn check(client: &HealthClient, service: &str) -> Result<ServingStatus, Code> {
    match client.check(req(service)).await {
        Ok(resp) => Ok(resp.into_inner().status()),
        Err(status) => Err(status.code()),
    }
}

async fn next(watch: &mut Streaming<health::pb::HealthCheckResponse>) -> Option<ServingStatus> {
    tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("a status within 5 s")
        .unwrap()
        .map(|r| r.status())
}

#[tokio::test]
async fn check_answers_known_services_and_not_found_for_others() {
    let (health, _server, client) = start().await;
    assert_eq!(check(&client, "").await, Ok(ServingStatus::Serving));
    assert_eq!(check(&client, "a.A").await, Err(Code::NotFound));
    health.set_serving_status("a.A", ServingStatus::NotServing);
    assert_eq!(check(&client, "a.A").await, Ok(ServingStatus::NotServing));
    health.set_serving_status("a.A", ServingStatus::Serving);
    assert_eq!(check(&client, "a.A").await, Ok(ServingStatus::Serving));
    health.clear_serving_status("a.A");
    assert_eq!(check(&client, "a.A").await, Err(Code::NotFound));
}

#[tokio::test]
async fn watch_starts_with_the_current_status_and_sends_every_change() {
    let (health, _server, client) = start().await;
    let mut a = client.watch(req("a.A")).await.unwrap().into_inner();
    let mut b = client.watch(req("b.B")).await.unwrap().into_inner();
    assert_eq!(next(&mut a).await, Some(ServingStatus::ServiceUnknown));
    assert_eq!(next(&mut b).await, Some(ServingStatus::ServiceUnknown));
    health.set_serving_status("a.A", ServingStatus::NotServing);
    assert_eq!(next(&mut a).await, Some(ServingStatus::NotServing));
    health.set_serving_status("a.A", ServingStatus::Serving);
    assert_eq!(next(&mut a).await, Some(ServingStatus::Serving));
    // b.B's watch saw nothing of a.A.
    health.set_serving_status("b.B", ServingStatus::Serving);
    assert_eq!(next(&mut b).await, Some(ServingStatus::Serving));
    // Setting the same status again sends nothing; a change does.
    health.set_serving_status("a.A", ServingStatus::Serving);
    health.set_serving_status("a.A", ServingStatus::NotServing);
    assert_eq!(next(&mut a).await, Some(ServingStatus::NotServing));
    health.clear_serving_status("a.A");
    assert_eq!(next(&mut a).await, Some(ServingStatus::ServiceUnknown));
}

#[tokio::test]
async fn list_answers_every_known_service_up_to_its_limit() {
    let (health, _server, client) = start().await;
    health.set_serving_status("a.A", ServingStatus::NotServing);
    let listed = client
        .list(Request::new(HealthListRequest {}))
        .await
        .unwrap()
        .into_inner()
        .statuses;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[""].status(), ServingStatus::Serving);
    assert_eq!(listed["a.A"].status(), ServingStatus::NotServing);
    for i in 0..health::MAX_LISTED_SERVICES {
        health.set_serving_status(&format!("s{i}"), ServingStatus::Serving);
    }
    let err = client
        .list(Request::new(HealthListRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
}

#[tokio::test]
async fn shutdown_serves_nothing_and_ignores_updates_until_resume() {
    let (health, _server, client) = start().await;
    health.set_serving_status("a.A", ServingStatus::Serving);
    let mut watch = client.watch(req("a.A")).await.unwrap().into_inner();
    assert_eq!(next(&mut watch).await, Some(ServingStatus::Serving));
    health.shutdown();
    assert_eq!(next(&mut watch).await, Some(ServingStatus::NotServing));
    assert_eq!(check(&client, "").await, Ok(ServingStatus::NotServing));
    health.set_serving_status("a.A", ServingStatus::Serving);
    assert_eq!(check(&client, "a.A").await, Ok(ServingStatus::NotServing));
    health.resume();
    assert_eq!(next(&mut watch).await, Some(ServingStatus::Serving));
    assert_eq!(check(&client, "").await, Ok(ServingStatus::Serving));
}

#[tokio::test]
async fn graceful_stop_turns_not_serving_and_ends_the_watches() {
    let (health, server, client) = start().await;
    let mut watch = client.watch(req("")).await.unwrap().into_inner();
    assert_eq!(next(&mut watch).await, Some(ServingStatus::Serving));
    let stop = tokio::spawn(async move { server.graceful_stop().await });
    assert_eq!(next(&mut watch).await, Some(ServingStatus::NotServing));
    assert_eq!(next(&mut watch).await, None, "the watch ends with OK");
    tokio::time::timeout(Duration::from_secs(5), stop)
        .await
        .expect("the open watch did not hold the stop up")
        .unwrap();
    assert_eq!(health.serving_status(""), Some(ServingStatus::NotServing));
}
