//! Health checking, in one process, like gRPC-Go's `examples/features/health`:
//! two greeter servers with the health service, and a channel over both
//! whose service config turns on client-side health checking
//! (`healthCheckConfig`) with `round_robin`.
//!
//! - Both servers SERVING: calls alternate between them.
//! - Server 2 turns NOT_SERVING (as a server does before maintenance): the
//!   channel's health check sees it and its calls go to server 1 only, with
//!   no call failing.
//! - Server 2 is SERVING again: calls alternate again.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin health`

use std::time::Duration;

use ferrogrpc::{
    client::Channel,
    health::{self, ServingStatus},
    server::Server,
    Request, Response, Status,
};
use ferrogrpc_examples::helloworld::{
    greeter_client::GreeterClient,
    greeter_server::{Greeter, GreeterServer, SERVICE_NAME},
    HelloReply, HelloRequest,
};

/// A greeter that says which server it is.
struct NumberedGreeter(usize);

impl Greeter for NumberedGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let message = format!("Hello {} from server {}", request.get_ref().name, self.0);
        Ok(Response::new(HelloReply { message }))
    }
}

/// Starts server `n` with the health service; returns its address and the
/// handle that sets its health.
async fn start_server(n: usize) -> std::io::Result<(String, health::Server)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let health = health::Server::new();
    health.set_serving_status(SERVICE_NAME, ServingStatus::Serving);
    let server = Server::builder()
        .add_service(GreeterServer::new(NumberedGreeter(n)))
        .add_health(&health)
        .build();
    tokio::spawn(async move { server.serve_listener(listener).await });
    Ok((addr, health))
}

async fn calls(client: &GreeterClient, label: &str) -> Result<(), Status> {
    for i in 1..=4 {
        let request = Request::new(HelloRequest {
            name: format!("{label} {i}"),
        })
        .with_timeout(Duration::from_secs(5));
        let reply = client.say_hello(request).await?.into_inner().message;
        println!("{reply}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (addr1, _health1) = start_server(1).await?;
    let (addr2, health2) = start_server(2).await?;
    let config = format!(
        r#"{{"loadBalancingConfig": [{{"round_robin": {{}}}}],
            "healthCheckConfig": {{"serviceName": "{SERVICE_NAME}"}}}}"#
    );
    let channel = Channel::builder(format!("ipv4:{addr1},{addr2}"))
        .default_service_config(&config)
        .build()?;
    channel.connect().await?;
    let client = GreeterClient::new(channel);
    // Both health checks answer SERVING first.
    tokio::time::sleep(Duration::from_millis(300)).await;

    println!("-- both servers SERVING");
    calls(&client, "both").await?;

    println!("-- server 2 NOT_SERVING");
    health2.set_serving_status(SERVICE_NAME, ServingStatus::NotServing);
    tokio::time::sleep(Duration::from_millis(300)).await;
    calls(&client, "one").await?;

    println!("-- server 2 SERVING again");
    health2.set_serving_status(SERVICE_NAME, ServingStatus::Serving);
    tokio::time::sleep(Duration::from_millis(300)).await;
    calls(&client, "again").await?;
    Ok(())
}
