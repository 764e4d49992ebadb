//! Retries and hedging configured in the service config (gRFC A6), in one
//! process, like gRPC-Go's `examples/features/retry`.
//!
//! - A flaky greeter fails two calls out of three with UNAVAILABLE. A
//!   channel whose default service config has a `retryPolicy` for
//!   `helloworld.Greeter` (up to 4 attempts, UNAVAILABLE retryable) gets
//!   every call through; the greeter answers each on the attempt it was
//!   given (`grpc-previous-rpc-attempts`), and the client never sees the
//!   failures. A channel without the policy sees them.
//! - A slow greeter takes two seconds to answer a first attempt and answers
//!   a retry or hedge at once. A channel with a `hedgingPolicy` (a hedge
//!   after 100 ms) gets its answer from the hedge, in about 100 ms; the slow
//!   first attempt is cancelled.
//! - The server can steer the client: `Status::with_retry_pushback(delay)`
//!   sets the delay before the next attempt, `Status::without_retry()`
//!   stops retries.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin retry`

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use ferrogrpc::{client::Channel, server::Server, Code, Request, Response, Status};
use ferrogrpc_examples::helloworld::{
    greeter_client::GreeterClient,
    greeter_server::{Greeter, GreeterServer},
    HelloReply, HelloRequest,
};

/// Fails two calls out of three (counting every attempt it receives).
#[derive(Default)]
struct FlakyGreeter {
    received: AtomicU64,
}

/// Answers a call's first attempt after two seconds, later attempts at once.
struct SlowGreeter;

/// Which attempt of its call a request is (0 for the first).
fn attempt(request: &Request<HelloRequest>) -> u32 {
    request
        .metadata()
        .get("grpc-previous-rpc-attempts")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Greeter for FlakyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        if self.received.fetch_add(1, Ordering::Relaxed) % 3 != 2 {
            return Err(Status::unavailable("flaky: try again"));
        }
        let message = format!(
            "Hello {} (on attempt {})",
            request.get_ref().name,
            attempt(&request) + 1
        );
        Ok(Response::new(HelloReply { message }))
    }
}

impl Greeter for SlowGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let n = attempt(&request);
        if n == 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let message = format!("Hello {} (from attempt {})", request.get_ref().name, n + 1);
        Ok(Response::new(HelloReply { message }))
    }
}

const RETRY_CONFIG: &str = r#"{"methodConfig": [{
    "name": [{"service": "helloworld.Greeter"}],
    "retryPolicy": {
        "maxAttempts": 4,
        "initialBackoff": "0.01s",
        "maxBackoff": "0.1s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"]
    }
}]}"#;

const HEDGING_CONFIG: &str = r#"{"methodConfig": [{
    "name": [{"service": "helloworld.Greeter"}],
    "hedgingPolicy": {
        "maxAttempts": 3,
        "hedgingDelay": "0.1s",
        "nonFatalStatusCodes": ["UNAVAILABLE"]
    }
}]}"#;

/// Serves `greeter` on an ephemeral loopback port; returns its address.
async fn serve<G: Greeter>(greeter: G) -> Result<String, std::io::Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let server = Server::builder()
        .add_service(GreeterServer::new(greeter))
        .build();
    tokio::spawn(async move { server.serve_listener(listener).await });
    Ok(addr)
}

async fn say_hello(client: &GreeterClient, name: &str) -> Result<String, Status> {
    let request =
        Request::new(HelloRequest { name: name.into() }).with_timeout(Duration::from_secs(10));
    Ok(client.say_hello(request).await?.into_inner().message)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flaky = serve(FlakyGreeter::default()).await?;

    println!("-- retryPolicy: every call gets through");
    let channel = Channel::builder(&flaky)
        .default_service_config(RETRY_CONFIG)
        .build()?;
    let client = GreeterClient::new(channel);
    for i in 1..=3 {
        let reply = say_hello(&client, &format!("retry {i}")).await?;
        println!("retry call {i}: {reply}");
    }

    println!("-- no policy: the failures reach the caller");
    let client = GreeterClient::new(Channel::from_target(&flaky)?);
    let mut failed = 0;
    for i in 1..=3 {
        match say_hello(&client, &format!("plain {i}")).await {
            Ok(reply) => println!("plain call {i}: {reply}"),
            Err(status) if status.code() == Code::Unavailable => {
                failed += 1;
                println!("plain call {i} failed: {}", status.message());
            }
            Err(status) => return Err(status.into()),
        }
    }
    println!("plain calls failed: {failed}");

    println!("-- hedgingPolicy: a hedge answers for a slow first attempt");
    let slow = serve(SlowGreeter).await?;
    let channel = Channel::builder(&slow)
        .default_service_config(HEDGING_CONFIG)
        .build()?;
    let client = GreeterClient::new(channel);
    let start = Instant::now();
    let reply = say_hello(&client, "hedge").await?;
    println!(
        "hedged call: {reply} in {} ms",
        start.elapsed().as_millis() / 10 * 10
    );
    Ok(())
}
