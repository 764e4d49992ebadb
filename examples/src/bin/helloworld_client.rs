//! The helloworld greeter client. Usage: `helloworld_client [TARGET] [NAME]`
//! (default 127.0.0.1:50051, "world").

use std::time::Duration;

use ferrogrpc::{client::Channel, Request};
use ferrogrpc_examples::helloworld::{greeter_client::GreeterClient, HelloRequest};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_else(|| "127.0.0.1:50051".into());
    let name = args.next().unwrap_or_else(|| "world".into());
    let client = GreeterClient::new(Channel::from_target(&target)?);
    let request = Request::new(HelloRequest { name }).with_timeout(Duration::from_secs(5));
    let reply = client.say_hello(request).await?;
    println!("Greeting: {}", reply.into_inner().message);
    Ok(())
}
