//! Deadlines, in one process.
//!
//! 1. A call with a timeout longer than the handler needs succeeds; one
//!    with a shorter timeout ends with DEADLINE_EXCEEDED (and the server
//!    drops the handler at the same moment).
//! 2. Propagation: a front server that calls a back server for each request
//!    gives that downstream call the time left of its own deadline
//!    (`Request::time_remaining`), less a margin for its own work. When the
//!    back server is too slow, the downstream call runs out of time first,
//!    and the whole chain gives up together instead of working on for a
//!    client that has stopped waiting.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin deadline`

use std::time::Duration;

use ferrogrpc::{client::Channel, server::Server, Request, Response, Status};
use ferrogrpc_examples::{
    helloworld::{
        greeter_client::GreeterClient,
        greeter_server::{Greeter, GreeterServer},
        HelloReply, HelloRequest,
    },
    local,
};

/// Answers after 500 ms.
struct SlowGreeter;

impl Greeter for SlowGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        if let Some(left) = request.time_remaining() {
            println!("back: request with {} ms left", rounded_ms(left));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let name = request.into_inner().name;
        Ok(Response::new(HelloReply {
            message: format!("Hello {name}"),
        }))
    }
}

/// Passes each request on to the back server within its own deadline.
struct FrontGreeter {
    back: GreeterClient,
}

impl Greeter for FrontGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let left = request
            .time_remaining()
            .ok_or_else(|| Status::invalid_argument("calls here need a deadline"))?;
        // Keep 50 ms to answer with, whatever the back server does.
        let budget = left.saturating_sub(Duration::from_millis(50));
        println!(
            "front: {} ms left, giving the back server {} ms",
            rounded_ms(left),
            rounded_ms(budget)
        );
        let downstream = Request::new(request.into_inner()).with_timeout(budget);
        match self.back.say_hello(downstream).await {
            Ok(reply) => Ok(reply),
            Err(status) => {
                println!("front: back server call ended with {}", status.code());
                Err(status)
            }
        }
    }
}

/// A duration in whole milliseconds, rounded to tens so that the output
/// does not change from run to run.
fn rounded_ms(d: Duration) -> u128 {
    (d.as_millis() + 5) / 10 * 10
}

async fn call(client: &GreeterClient, name: &str, timeout: Duration) {
    let request = Request::new(HelloRequest { name: name.into() }).with_timeout(timeout);
    match client.say_hello(request).await {
        Ok(reply) => println!("client: {}", reply.into_inner().message),
        Err(status) => println!("client: {}", status.code()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (back_server, back_addr) =
        local::start(Server::builder().add_service(GreeterServer::new(SlowGreeter))).await?;
    let back = GreeterClient::new(Channel::from_target(&back_addr.to_string())?);
    let (front_server, front_addr) = local::start(
        Server::builder().add_service(GreeterServer::new(FrontGreeter { back: back.clone() })),
    )
    .await?;
    let front = GreeterClient::new(Channel::from_target(&front_addr.to_string())?);

    println!("== one server ==");
    println!("client: calling with a 1 s timeout");
    call(&back, "patient", Duration::from_secs(1)).await;
    println!("client: calling with a 100 ms timeout");
    call(&back, "hasty", Duration::from_millis(100)).await;

    println!("== deadline passed on ==");
    println!("client: calling the front server with a 1 s timeout");
    call(&front, "patient", Duration::from_secs(1)).await;
    println!("client: calling the front server with a 250 ms timeout");
    call(&front, "hasty", Duration::from_millis(250)).await;

    front_server.graceful_stop().await;
    back_server.graceful_stop().await;
    Ok(())
}
