//! Metadata, in one process: the key/value pairs that travel with a call
//! beside its messages.
//!
//! - The client sends request metadata: an ASCII value, a key with two
//!   values, and a binary value (keys ending in `-bin` carry bytes; they
//!   are base64 on the wire, and decoded again for you).
//! - The handler reads them from the request, and answers with header
//!   metadata (sent before the response message) and trailer metadata (sent
//!   with the status, after it), for example a value it only knows at the
//!   end.
//! - The client reads both from the response.
//!
//! Streaming calls work the same way: `ResponseSink::send_header` and
//! `set_trailer` on the server, `Streaming::headers` and `trailers` on the
//! client.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin metadata`

use ferrogrpc::{
    client::Channel,
    metadata::{MetadataMap, MetadataValue},
    server::Server,
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
        let md = request.metadata();
        let request_id = md.get("x-request-id").unwrap_or("none").to_string();
        println!("server: x-request-id = {request_id}");
        println!(
            "server: x-tag = {:?}",
            md.get_all("x-tag").collect::<Vec<_>>()
        );
        println!("server: x-trace-bin = {:?}", md.get_bin("x-trace-bin"));

        let name = request.into_inner().name;
        let message = format!("Hello {name}");
        let mut headers = MetadataMap::new();
        headers.insert("x-request-id", &request_id)?;
        headers.insert("x-server", "metadata-example")?;
        let mut trailers = MetadataMap::new();
        trailers.insert("x-greeting-length", &message.len().to_string())?;
        trailers.insert_bin("x-checksum-bin", [0xca, 0xfe])?;
        Ok(Response::from_parts(
            headers,
            HelloReply { message },
            trailers,
        ))
    }
}

fn print(side: &str, md: &MetadataMap) {
    for (key, value) in md.iter() {
        match value {
            MetadataValue::Ascii(text) => println!("client: {side} {key} = {text}"),
            MetadataValue::Binary(bytes) => println!("client: {side} {key} = {bytes:?}"),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (server, addr) =
        local::start(Server::builder().add_service(GreeterServer::new(MyGreeter))).await?;
    let client = GreeterClient::new(Channel::from_target(&addr.to_string())?);

    let mut request = Request::new(HelloRequest {
        name: "metadata".into(),
    });
    let md = request.metadata_mut();
    md.insert("x-request-id", "42")?;
    md.append("x-tag", "first")?;
    md.append("x-tag", "second")?;
    md.insert_bin("x-trace-bin", [0x00, 0x01, 0xff])?;

    let response = client.say_hello(request).await?;
    let (headers, reply, trailers) = response.into_parts();
    print("header", &headers);
    println!("client: message = {}", reply.message);
    print("trailer", &trailers);

    server.graceful_stop().await;
    Ok(())
}
