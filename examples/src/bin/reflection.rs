//! Server reflection, in one process, like gRPC-Go's
//! `examples/features/reflection`: a greeter server with reflection turned
//! on in one line (`add_reflection`), asked by a reflection client what it
//! serves and where `helloworld.Greeter` is defined, as grpcurl, Postman or
//! grpcui would ask it.
//!
//! Against a running `helloworld_server` started with reflection, grpcurl
//! shows the same: `grpcurl -plaintext 127.0.0.1:50051 list`.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin reflection`

use std::time::Duration;

use ferrogrpc::{
    client::Channel,
    reflection::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    },
    server::Server,
    Request, Response, Status,
};
use ferrogrpc_examples::helloworld::{
    greeter_server::{Greeter, GreeterServer},
    HelloReply, HelloRequest,
};
use prost::Message;

struct MyGreeter;

impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let message = format!("Hello {}", request.get_ref().name);
        Ok(Response::new(HelloReply { message }))
    }
}

/// Asks one question on the reflection stream.
async fn ask(
    client: &ServerReflectionClient,
    question: MessageRequest,
) -> Result<MessageResponse, Box<dyn std::error::Error>> {
    let (mut requests, mut responses) = client
        .server_reflection_info(Request::new(()).with_timeout(Duration::from_secs(5)))
        .await?;
    requests
        .send(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(question),
        })
        .await?;
    requests.close()?;
    let answer = responses.message().await?.ok_or("no answer")?;
    Ok(answer.message_response.ok_or("an empty answer")?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = Server::builder()
        .add_service(GreeterServer::new(MyGreeter))
        .add_reflection()
        .build();
    tokio::spawn(async move { server.serve_listener(listener).await });

    let client = ServerReflectionClient::new(Channel::from_target(&addr.to_string())?);

    if let MessageResponse::ListServicesResponse(list) =
        ask(&client, MessageRequest::ListServices(String::new())).await?
    {
        for service in list.service {
            println!("service: {}", service.name);
        }
    }

    let question = MessageRequest::FileContainingSymbol("helloworld.Greeter".into());
    if let MessageResponse::FileDescriptorResponse(files) = ask(&client, question).await? {
        for bytes in files.file_descriptor_proto {
            let file = prost_types::FileDescriptorProto::decode(bytes.as_slice())?;
            for service in &file.service {
                for method in &service.method {
                    println!(
                        "{} defines {}.{}({}) returns ({})",
                        file.name(),
                        service.name(),
                        method.name(),
                        method.input_type(),
                        method.output_type()
                    );
                }
            }
        }
    }
    Ok(())
}
