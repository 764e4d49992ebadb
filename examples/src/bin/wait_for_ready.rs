//! Wait-for-ready, in one process.
//!
//! By default a call fails fast: when the channel cannot connect (it is in
//! TRANSIENT_FAILURE), the call ends at once with UNAVAILABLE. A call made
//! with `Request::with_wait_for_ready(true)` waits instead, up to its
//! deadline, for the channel to connect, and then goes ahead.
//!
//! Here the client calls while the server is not up yet; the server starts
//! half a second later on the same address. The fail-fast call fails, the
//! wait-for-ready call succeeds once the channel reconnects.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin wait_for_ready`

use std::time::{Duration, Instant};

use ferrogrpc::{backoff, client::Channel, server::Server, Request, Response, Status};
use ferrogrpc_examples::helloworld::{
    greeter_client::GreeterClient,
    greeter_server::{Greeter, GreeterServer},
    HelloReply, HelloRequest,
};

struct MyGreeter;

impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(HelloReply {
            message: format!("Hello {name}"),
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Find a free port and leave it free for the server to take later.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    println!("server: not started yet");

    // Reconnect soon after a failure (the default waits 1 s, growing).
    let mut retry_quickly = backoff::Config::default();
    retry_quickly.base_delay = Duration::from_millis(100);
    retry_quickly.max_delay = Duration::from_millis(200);
    let channel = Channel::builder(addr.to_string())
        .connect_backoff(retry_quickly)
        .build()?;
    let client = GreeterClient::new(channel);
    let request = |name: &str| {
        Request::new(HelloRequest { name: name.into() }).with_timeout(Duration::from_secs(5))
    };

    match client.say_hello(request("fail-fast")).await {
        Ok(_) => println!("client: fail-fast call succeeded (unexpected)"),
        Err(status) => println!("client: fail-fast call: {}", status.code()),
    }

    // Start the server in half a second.
    let starting = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let server = Server::builder()
            .add_service(GreeterServer::new(MyGreeter))
            .build();
        println!("server: listening on {addr}");
        let serving = server.clone();
        tokio::spawn(async move { serving.serve_listener(listener).await });
        Ok::<_, std::io::Error>(server)
    });

    let started = Instant::now();
    println!("client: wait-for-ready call, waiting up to 5 s");
    let reply = client
        .say_hello(request("wait-for-ready").with_wait_for_ready(true))
        .await?;
    println!(
        "client: wait-for-ready call: {} (after {} ms)",
        reply.into_inner().message,
        started.elapsed().as_millis() / 100 * 100
    );

    let server = starting.await??;
    server.graceful_stop().await;
    Ok(())
}
