//! Compression, in one process: the same greeting sent plain, gzip-compressed
//! for one call, and on a channel that compresses every call.
//!
//! - A client compresses one call with `Request::with_compression("gzip")`,
//!   or all calls of a channel with `ChannelBuilder::send_compressed("gzip")`.
//! - The handler sees whether the request arrived compressed
//!   (`Request::message_compressed`) and answers in kind with
//!   `Response::set_compression` (a server can also compress every response
//!   by default: `ServerBuilder::send_compressed`).
//! - Messages under 128 bytes (`min_compress_size`) go uncompressed even
//!   then: compressing them would not save anything.
//!
//! A stats handler on the client shows each request's size before and after
//! compression.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin compression`

use ferrogrpc::{
    client::Channel,
    server::Server,
    stats::{self, RpcEvent, RpcEventKind},
    Request, Response, Status,
};
use ferrogrpc_examples::{
    helloworld::{
        greeter_client::GreeterClient,
        greeter_server::{Greeter, GreeterServer},
        HelloReply, HelloRequest,
    },
    local,
};

struct MyGreeter;

impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let compressed = request.message_compressed();
        println!("server: request compressed: {compressed}");
        let name = request.into_inner().name;
        let mut response = Response::new(HelloReply {
            message: format!("Hello {name}"),
        });
        if compressed {
            response.set_compression("gzip");
        }
        Ok(response)
    }
}

/// Prints the size of each request message, plain and on the wire.
struct RequestSizes;

impl stats::Handler for RequestSizes {
    fn handle_rpc(&self, event: &RpcEvent<'_>) {
        if let RpcEventKind::OutPayload(payload) = &event.kind {
            println!(
                "client: request of {} bytes sent as {} bytes (compressed: {})",
                payload.length, payload.wire_length, payload.compressed
            );
        }
    }
}

async fn call(client: &GreeterClient, request: Request<HelloRequest>) -> Result<(), Status> {
    let response = client.say_hello(request).await?;
    println!(
        "client: response compressed: {}, {} bytes of greeting",
        response.message_compressed(),
        response.get_ref().message.len()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (server, addr) =
        local::start(Server::builder().add_service(GreeterServer::new(MyGreeter))).await?;
    let target = addr.to_string();
    let client = GreeterClient::new(
        Channel::builder(target.as_str())
            .stats_handler(RequestSizes)
            .build()?,
    );
    // Repetitive text, which compresses well.
    let long_name = "compression ".repeat(40);
    let long = || HelloRequest {
        name: long_name.clone(),
    };

    println!("== plain ==");
    call(&client, Request::new(long())).await?;

    println!("== gzip for one call ==");
    call(&client, Request::new(long()).with_compression("gzip")).await?;

    println!("== gzip for every call of a channel ==");
    let gzip_client = GreeterClient::new(
        Channel::builder(target.as_str())
            .send_compressed("gzip")
            .stats_handler(RequestSizes)
            .build()?,
    );
    call(&gzip_client, Request::new(long())).await?;
    println!("(a short message stays uncompressed)");
    call(
        &gzip_client,
        Request::new(HelloRequest {
            name: "short".into(),
        }),
    )
    .await?;

    server.graceful_stop().await;
    Ok(())
}
