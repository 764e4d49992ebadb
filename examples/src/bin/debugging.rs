//! Debugging aids, in one process: ferrogrpc's own logs, a stats handler
//! that prints every event of a call, and the channel's connectivity state.
//!
//! - Logs: ferrogrpc is silent unless asked. `FERROGRPC_LOG=info` (or
//!   `warning`, `error`) prints its events on stderr, and
//!   `FERROGRPC_LOG_VERBOSITY=1` adds the details: each connection, its end
//!   and why, GOAWAYs, resets (`2` adds HTTP/2 frame-level detail). This
//!   example sets both for itself unless you set them; a program with its
//!   own `tracing` subscriber gets the same events there instead.
//! - Stats handlers (`stats::Handler`) see each event of each call, on the
//!   client and on the server: headers, messages with their sizes, trailers,
//!   and the end with its status.
//! - `Channel::state` tells whether a channel is IDLE, CONNECTING, READY or
//!   failing (TRANSIENT_FAILURE).
//!
//! Run: `cargo run -p ferrogrpc-examples --bin debugging` (the logs are on
//! stderr; `2>/dev/null` hides them)

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
        let name = request.into_inner().name;
        Ok(Response::new(HelloReply {
            message: format!("Hello {name}"),
        }))
    }
}

/// Prints each event of each call, prefixed with the side it happened on.
struct PrintEvents(&'static str);

impl stats::Handler for PrintEvents {
    fn handle_rpc(&self, event: &RpcEvent<'_>) {
        let what = match &event.kind {
            RpcEventKind::Begin { .. } => format!("begin {}", event.method),
            RpcEventKind::OutHeader { metadata } => {
                format!("sent headers ({} keys)", metadata.len())
            }
            RpcEventKind::InHeader { metadata } => format!("got headers ({} keys)", metadata.len()),
            RpcEventKind::OutPayload(p) => format!("sent a message of {} bytes", p.length),
            RpcEventKind::InPayload(p) => format!("got a message of {} bytes", p.length),
            RpcEventKind::OutTrailer { .. } => "sent trailers".to_string(),
            RpcEventKind::InTrailer { .. } => "got trailers".to_string(),
            RpcEventKind::End { result: Ok(()), .. } => "end: OK".to_string(),
            RpcEventKind::End {
                result: Err(status),
                ..
            } => format!("end: {}", status.code()),
            _ => "another event".to_string(),
        };
        println!("{} stats: call {}: {what}", self.0, event.call_id);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The variables are read when the first server or channel is built, so
    // set them first, before any other thread runs.
    for (name, value) in [("FERROGRPC_LOG", "info"), ("FERROGRPC_LOG_VERBOSITY", "1")] {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
        println!("logging: {name}={}", std::env::var(name)?);
    }
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (server, addr) = local::start(
        Server::builder()
            .add_service(GreeterServer::new(MyGreeter))
            .stats_handler(PrintEvents("server")),
    )
    .await?;
    let channel = Channel::builder(addr.to_string())
        .stats_handler(PrintEvents("client"))
        .build()?;
    println!("client: channel state {}", channel.state());
    let client = GreeterClient::new(channel.clone());
    let reply = client
        .say_hello(HelloRequest {
            name: "debugging".into(),
        })
        .await?;
    println!("client: {}", reply.into_inner().message);
    println!("client: channel state {}", channel.state());
    server.graceful_stop().await;
    Ok(())
}
