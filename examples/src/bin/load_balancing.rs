//! Load balancing, in one process: three greeter servers on ephemeral
//! loopback ports, and two channels to all three of them through an `ipv4:`
//! target that lists every address.
//!
//! - The first channel picks the `round_robin` policy with a default service
//!   config, `{"loadBalancingConfig": [{"round_robin": {}}]}`: it connects to
//!   every address and its calls take turns, so nine calls are answered by
//!   all three servers, three each.
//! - The second channel has no service config, so it uses the default
//!   policy, `pick_first`: it connects to the first address that works and
//!   sends every call there, so all nine calls are answered by one server.
//!
//! A resolver could deliver the same service config with the addresses
//! (the `dns` resolver reads it from a TXT record); the channel's default
//! config is what applies when it does not.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin load_balancing`

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use ferrogrpc::{client::Channel, Status};
use ferrogrpc_examples::{
    helloworld::greeter_client::GreeterClient,
    numbered::{greet, start_server},
};

/// How many calls each channel makes.
const CALLS: usize = 9;

/// Makes [`CALLS`] calls, prints who answered each, and returns the set of
/// servers that answered.
async fn make_calls(client: &GreeterClient, policy: &str) -> Result<BTreeSet<usize>, Status> {
    let mut servers = BTreeSet::new();
    for i in 1..=CALLS {
        let (message, server) = greet(client, policy).await?;
        println!("{policy} call {i}: {message}");
        servers.insert(server);
    }
    Ok(servers)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut servers = Vec::new();
    for n in 1..=3 {
        let (server, addr) = start_server(n).await?;
        println!("server {n} listening on {addr}");
        servers.push((server, addr));
    }
    // One target naming all three backends: `ipv4:addr1,addr2,addr3`.
    let addresses: Vec<String> = servers.iter().map(|(_, a)| a.to_string()).collect();
    let target = format!("ipv4:{}", addresses.join(","));
    println!("target {target}");

    // round_robin, chosen by the channel's default service config.
    println!("== round_robin ==");
    let round_robin = GreeterClient::new(
        Channel::builder(target.as_str())
            .default_service_config(r#"{"loadBalancingConfig": [{"round_robin": {}}]}"#)
            .build()?,
    );
    // round_robin reports READY as soon as the first backend connects, and
    // the others join the rotation when their own connections are up. Warm
    // up until every backend has answered, so the nine calls below show the
    // steady state rather than the start-up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = BTreeSet::new();
    while seen.len() < servers.len() {
        if Instant::now() > deadline {
            return Err(format!("only servers {seen:?} answered within 10 s").into());
        }
        seen.insert(greet(&round_robin, "warm-up").await?.1);
    }
    let answered = make_calls(&round_robin, "round_robin").await?;
    println!("round_robin: {CALLS} calls answered by servers {answered:?}");

    // pick_first, the default when no config names a policy.
    println!("== pick_first ==");
    let pick_first = GreeterClient::new(Channel::from_target(&target)?);
    let answered = make_calls(&pick_first, "pick_first").await?;
    println!("pick_first: {CALLS} calls answered by servers {answered:?}");

    // Close the channels (dropping the last clone closes a channel's
    // connections), then stop the servers.
    drop(round_robin);
    drop(pick_first);
    for (server, _) in &servers {
        server.graceful_stop_timeout(Duration::from_secs(5)).await;
    }
    Ok(())
}
