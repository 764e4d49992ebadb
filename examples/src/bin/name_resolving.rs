//! Name resolving, in one process: three ways for a channel to turn its
//! target into the address of one greeter server.
//!
//! - `example:///greeter`: a scheme of our own. A resolver builder
//!   registered for it at start-up (`resolver::register`) maps the name
//!   `greeter` to the server's address. (For one channel only, pass the
//!   builder to `ChannelBuilder::resolver` instead; `custom_resolver` shows
//!   more, such as changing the addresses while the channel is in use.)
//! - `passthrough:///localhost:PORT`: gRPC does not resolve the name; the
//!   operating system does, each time the channel connects.
//! - `dns:///localhost:PORT`: gRPC's DNS resolver looks the name up (and
//!   looks again when a connection is lost). A target without a scheme,
//!   such as `localhost:PORT`, means the same.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin name_resolving`

use std::{net::SocketAddr, time::Duration};

use ferrogrpc::{
    client::Channel,
    resolver::{self, BuildOptions, Controller, Target},
    Request,
};
use ferrogrpc_examples::{
    helloworld::{greeter_client::GreeterClient, HelloRequest},
    numbered::start_server,
};

/// Resolves `example:///greeter` to one fixed address.
struct ExampleResolverBuilder {
    greeter: SocketAddr,
}

/// The running resolver. It has nothing to watch, so it does nothing.
struct ExampleResolver;

impl resolver::Resolver for ExampleResolver {}

impl resolver::Builder for ExampleResolverBuilder {
    fn scheme(&self) -> &str {
        "example"
    }

    fn build(
        &self,
        target: &Target,
        controller: Controller,
        _options: BuildOptions,
    ) -> Result<Box<dyn resolver::Resolver>, String> {
        // Report an unknown name through the controller: the channel's
        // calls then fail with UNAVAILABLE and this message.
        if target.endpoint() == "greeter" {
            println!("resolver: example:///greeter is {}", self.greeter);
            controller.update_state(resolver::State::new([self.greeter]));
        } else {
            controller.report_error(format!("no such service: {:?}", target.endpoint()));
        }
        Ok(Box::new(ExampleResolver))
    }
}

async fn call(target: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = GreeterClient::new(Channel::from_target(target)?);
    let request = Request::new(HelloRequest {
        name: "resolver".into(),
    })
    .with_timeout(Duration::from_secs(5));
    let response = client.say_hello(request).await?;
    let connected = response
        .peer()
        .map_or_else(|| "?".to_string(), |peer| peer.remote_addr.to_string());
    println!(
        "{target}: {} (connected to {connected})",
        response.into_inner().message
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (server, addr) = start_server(1).await?;
    // Register before building the channels that use the scheme.
    resolver::register(ExampleResolverBuilder { greeter: addr });

    let port = addr.port();
    call("example:///greeter").await?;
    call(&format!("passthrough:///localhost:{port}")).await?;
    call(&format!("dns:///localhost:{port}")).await?;

    match call("example:///printer").await {
        Ok(()) => println!("example:///printer: answered (unexpected)"),
        Err(e) => println!("example:///printer: {e}"),
    }
    server.graceful_stop().await;
    Ok(())
}
