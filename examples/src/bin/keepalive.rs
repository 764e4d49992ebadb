//! Keepalive and connection lifetimes, in one process.
//!
//! - Client (`keepalive::ClientParameters`): ping the server after `time`
//!   without activity and give up on the connection when no answer comes
//!   within `timeout`; a client may not ask for less than 10 s.
//! - Server enforcement (`keepalive::EnforcementPolicy`): how often a client
//!   may ping; a client that pings more often is sent away with GOAWAY
//!   `too_many_pings`. The client's `time` must not be shorter than the
//!   policy's `min_time`.
//! - Server parameters (`keepalive::ServerParameters`): the server's own
//!   pings, and limits on a connection's idle time and age. A short
//!   `max_connection_age` here makes the server close each connection
//!   gracefully after about 300 ms: the client reconnects and its calls go
//!   on without a failure (this is how long-lived clients get spread over
//!   new servers).
//!
//! Keepalive pings themselves take tens of seconds to matter, so this example
//! shows the settings and the connection age, not a dead connection.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin keepalive`

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use ferrogrpc::{
    client::Channel,
    keepalive::{ClientParameters, EnforcementPolicy, ServerParameters},
    server::Server,
    stats::{self, ConnEvent, RpcEvent},
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

/// Counts the connections a server accepts.
#[derive(Clone, Default)]
struct Connections(Arc<AtomicUsize>);

impl stats::Handler for Connections {
    fn handle_rpc(&self, _event: &RpcEvent<'_>) {}

    fn handle_conn(&self, event: &ConnEvent<'_>) {
        if let ConnEvent::Begin { .. } = event {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy = EnforcementPolicy::default()
        .with_min_time(Duration::from_secs(10))
        .with_permit_without_stream(true);
    let params = ServerParameters::default()
        .with_time(Duration::from_secs(60))
        .with_timeout(Duration::from_secs(5))
        .with_max_connection_age(Duration::from_millis(300))
        .with_max_connection_age_grace(Duration::from_secs(1));
    println!(
        "server: clients may ping every {:?} (also without calls: {})",
        policy.min_time, policy.permit_without_stream
    );
    println!(
        "server: pings quiet clients after {:?}, closes connections after about {:?}",
        params.time,
        params.max_connection_age.unwrap_or_default()
    );
    let connections = Connections::default();
    let (server, addr) = local::start(
        Server::builder()
            .keepalive_enforcement_policy(policy)
            .keepalive_params(params)
            .stats_handler(connections.clone())
            .add_service(GreeterServer::new(MyGreeter)),
    )
    .await?;

    // 5 s is below the 10 s floor: the channel uses 10 s.
    let asked = ClientParameters::default()
        .with_time(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(2))
        .with_permit_without_calls(true);
    let channel = Channel::builder(addr.to_string())
        .keepalive_params(asked)
        .build()?;
    println!(
        "client: asked to ping after {:?} of quiet, the channel uses {:?}; ping timeout {:?}",
        asked.time.unwrap_or_default(),
        channel.keepalive_time().unwrap_or_default(),
        asked.timeout
    );

    let client = GreeterClient::new(channel);
    let (mut ok, mut failed) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        let request = Request::new(HelloRequest {
            name: "keepalive".into(),
        })
        .with_timeout(Duration::from_secs(5));
        match client.say_hello(request).await {
            Ok(_) => ok += 1,
            Err(status) => {
                failed += 1;
                println!("client: call failed: {status}");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("client: {ok} calls succeeded, {failed} failed in 1 s");
    let over = match connections.0.load(Ordering::Relaxed) {
        1 => "one connection",
        _ => "several connections",
    };
    println!("server: the calls came over {over}");
    server.graceful_stop().await;
    Ok(())
}
