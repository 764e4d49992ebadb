//! Name resolution with resolvers the application provides, in one process.
//!
//! 1. A resolver for a made-up scheme, `example`: it knows the name
//!    `lb.example.grpc.io` and answers with the addresses of two in-process
//!    greeter servers. It implements `ferrogrpc::resolver::Builder` (checks
//!    targets, builds a resolver for each channel that uses it) and
//!    `Resolver` (the running resolver), and hands the addresses to the
//!    channel through the `Controller` it is given. The channel uses it
//!    because it is passed to `ChannelBuilder::resolver`; calls with a
//!    `round_robin` config then go to both servers.
//! 2. `ManualResolver` (`ferrogrpc::resolver::manual`): the program pushes
//!    addresses itself. A caller keeps making calls while the resolver moves
//!    the channel from server 1 to server 2, and then server 1 stops: no
//!    call fails.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin custom_resolver`

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use ferrogrpc::{
    client::Channel,
    resolver::{self, manual::ManualResolver, BuildOptions, Controller, Target},
    server::Server,
    Status,
};
use ferrogrpc_examples::{
    helloworld::greeter_client::GreeterClient,
    numbered::{greet, start_server},
};

/// The scheme of the made-up resolver, and the name it knows.
const SCHEME: &str = "example";
const SERVICE_NAME: &str = "lb.example.grpc.io";

/// Builds resolvers for `example:///<name>` targets from a fixed table of
/// names and addresses (a real one might ask a service registry).
struct ExampleResolverBuilder {
    names: HashMap<String, Vec<SocketAddr>>,
}

impl resolver::Builder for ExampleResolverBuilder {
    fn scheme(&self) -> &str {
        SCHEME
    }

    /// Runs when a channel is built: an unknown name fails at once instead
    /// of on the first call.
    fn check_target(&self, target: &Target) -> Result<(), String> {
        if self.names.contains_key(target.endpoint()) {
            Ok(())
        } else {
            Err(format!(
                "the example resolver does not know {:?}",
                target.endpoint()
            ))
        }
    }

    /// Runs when the channel leaves IDLE. It must not block: this one has
    /// its answer at hand, so it reports it right away. A resolver that has
    /// to wait for its answer would spawn a task that keeps a clone of the
    /// controller and reports when it knows.
    fn build(
        &self,
        target: &Target,
        controller: Controller,
        _options: BuildOptions,
    ) -> Result<Box<dyn resolver::Resolver>, String> {
        let addresses = self
            .names
            .get(target.endpoint())
            .cloned()
            .ok_or_else(|| format!("the example resolver does not know {target}"))?;
        let resolver = ExampleResolver {
            controller,
            addresses,
        };
        resolver.report();
        Ok(Box::new(resolver))
    }
}

/// A running `example` resolver, one per channel. The channel drops it when
/// it goes idle or closes.
struct ExampleResolver {
    controller: Controller,
    addresses: Vec<SocketAddr>,
}

impl ExampleResolver {
    fn report(&self) {
        self.controller
            .update_state(resolver::State::new(self.addresses.iter().copied()));
    }
}

impl resolver::Resolver for ExampleResolver {
    /// The channel lost a connection and asks whether the addresses
    /// changed. The table is fixed, so report the same addresses again.
    fn resolve_now(&mut self) {
        self.report();
    }
}

/// Part 1: the `example` scheme.
async fn custom_scheme(backends: &[SocketAddr]) -> Result<(), Box<dyn std::error::Error>> {
    println!("== example resolver ==");
    let builder = || ExampleResolverBuilder {
        names: HashMap::from([(SERVICE_NAME.to_string(), backends.to_vec())]),
    };
    // `resolver(..)` makes the scheme known to this channel only. To make it
    // known to every channel the process builds, register it once at
    // start-up instead: `ferrogrpc::resolver::register(builder())`.
    let target = format!("{SCHEME}:///{SERVICE_NAME}");
    let client = GreeterClient::new(
        Channel::builder(target.as_str())
            .resolver(builder())
            .default_service_config(r#"{"loadBalancingConfig": [{"round_robin": {}}]}"#)
            .build()?,
    );
    // round_robin takes calls once the first address connects; call until
    // both addresses the resolver gave have answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answered = BTreeSet::new();
    let mut calls = 0;
    while answered.len() < backends.len() || calls < 4 {
        if Instant::now() > deadline {
            return Err(format!("only servers {answered:?} answered within 10 s").into());
        }
        let (message, server) = greet(&client, "resolver").await?;
        calls += 1;
        println!("example call {calls}: {message}");
        answered.insert(server);
    }
    println!("example: {target} was answered by servers {answered:?}");

    // The builder checks names when a channel is built...
    let unknown = format!("{SCHEME}:///unknown.example.grpc.io");
    match Channel::builder(unknown.as_str())
        .resolver(builder())
        .build()
    {
        Ok(_) => return Err("an unknown name was accepted".into()),
        Err(e) => println!("example: unknown name refused: {e}"),
    }
    // ...and without it (and without `register`) the scheme is unknown: the
    // target is then read as a `dns` name (naming.md's rule for unknown
    // schemes), which this text is not.
    match Channel::from_target(&target) {
        Ok(_) => return Err("the example scheme is known without its resolver".into()),
        Err(e) => println!("example: without its resolver: {e}"),
    }
    Ok(())
}

/// Part 2: `ManualResolver` moves a busy channel from one server to
/// another.
async fn manual(
    server1: (&Server, SocketAddr),
    server2: SocketAddr,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("== manual resolver ==");
    // Clones share their state: one goes into the channel, this one is kept
    // to push updates.
    let backends = ManualResolver::new("backends");
    backends.update_state(resolver::State::new([server1.1]));
    let client = GreeterClient::new(
        Channel::builder("backends:///greeter")
            .resolver(backends.clone())
            .build()?,
    );

    // A caller that keeps the channel busy, logging which server answered
    // each call (or why the call failed).
    let log: Arc<Mutex<Vec<Result<usize, Status>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let caller = {
        let (client, log, stop) = (client.clone(), Arc::clone(&log), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let result = greet(&client, "manual").await.map(|(_, server)| server);
                log.lock().unwrap().push(result);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Waits until server `n` has answered `count` calls.
    let answers_from = |n: usize, count: usize| {
        let log = Arc::clone(&log);
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let answered = log
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|r| matches!(r, Ok(s) if *s == n))
                    .count();
                if answered >= count {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(format!("server {n} answered only {answered} calls in 10 s"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };

    answers_from(1, 5).await?;
    println!("manual: moving the channel to server 2 ({server2})");
    backends.update_state(resolver::State::new([server2]));
    answers_from(2, 5).await?;
    println!("manual: stopping server 1, which no call uses now");
    server1
        .0
        .graceful_stop_timeout(Duration::from_secs(5))
        .await;
    answers_from(2, 10).await?;
    stop.store(true, Ordering::Relaxed);
    caller.await?;

    // Print the log as runs of calls answered by the same server.
    let log = std::mem::take(&mut *log.lock().unwrap());
    let mut runs: Vec<(Result<usize, String>, usize, usize)> = Vec::new();
    for (i, result) in log.iter().enumerate() {
        let result = result.clone().map_err(|s| s.to_string());
        match runs.last_mut() {
            Some((last, _, end)) if *last == result => *end = i + 1,
            _ => runs.push((result, i + 1, i + 1)),
        }
    }
    for (result, first, last) in &runs {
        match result {
            Ok(server) => println!("manual: calls {first}..={last} answered by server {server}"),
            Err(status) => println!("manual: calls {first}..={last} failed: {status}"),
        }
    }
    let failed = log.iter().filter(|r| r.is_err()).count();
    println!("manual: {} calls, {failed} failed", log.len());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut servers = Vec::new();
    for n in 1..=2 {
        let (server, addr) = start_server(n).await?;
        println!("server {n} listening on {addr}");
        servers.push((server, addr));
    }
    let addresses: Vec<SocketAddr> = servers.iter().map(|(_, a)| *a).collect();

    custom_scheme(&addresses).await?;
    manual((&servers[0].0, addresses[0]), addresses[1]).await?;

    for (server, _) in &servers {
        server.graceful_stop_timeout(Duration::from_secs(5)).await;
    }
    Ok(())
}
