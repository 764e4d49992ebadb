//! Errors, in one process: what a handler can put in a failed call's status,
//! and what the client gets back.
//!
//! - A code and a message, plus trailing metadata (`Status::with_metadata`)
//!   for whatever else the client should know.
//! - Binary details (`Status::with_details`): by convention an encoded
//!   `google.rpc.Status` whose `details` hold typed messages, here a
//!   `google.rpc.ErrorInfo`. ferrogrpc carries the bytes as they are; the two
//!   messages are declared below with prost, as your own protos would be.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin error_handling`

use ferrogrpc::{
    client::Channel,
    metadata::{MetadataMap, MetadataValue},
    server::Server,
    Code, Request, Response, Status,
};
use ferrogrpc_examples::{
    helloworld::{
        greeter_client::GreeterClient,
        greeter_server::{Greeter, GreeterServer},
        HelloReply, HelloRequest,
    },
    local,
};
use prost::Message;

/// `google.rpc.Status`, the usual content of the binary details.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// `google.rpc.ErrorInfo`: why, in a form a program can act on.
#[derive(Clone, PartialEq, prost::Message)]
struct ErrorInfo {
    #[prost(string, tag = "1")]
    reason: String,
    #[prost(string, tag = "2")]
    domain: String,
}

const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";

struct MyGreeter;

impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let name = request.into_inner().name;
        if name.is_empty() {
            let mut trailers = MetadataMap::new();
            trailers.insert("x-field", "name")?;
            trailers.insert_bin("x-limits-bin", [1, 64])?;
            return Err(Status::invalid_argument("name must not be empty").with_metadata(trailers));
        }
        if name.len() > 10 {
            let message = format!("name is {} bytes long, the limit is 10", name.len());
            let info = ErrorInfo {
                reason: "NAME_TOO_LONG".into(),
                domain: "greeter.example.com".into(),
            };
            let details = RpcStatus {
                code: Code::InvalidArgument as i32,
                message: message.clone(),
                details: vec![prost_types::Any {
                    type_url: ERROR_INFO_TYPE.into(),
                    value: info.encode_to_vec(),
                }],
            };
            let bytes = details.encode_to_vec().into();
            return Err(Status::with_details(Code::InvalidArgument, message, bytes));
        }
        Ok(Response::new(HelloReply {
            message: format!("Hello {name}"),
        }))
    }
}

/// Prints what a client can learn from a failed call.
fn show(status: &Status) {
    println!(
        "client: code {}, message {:?}",
        status.code(),
        status.message()
    );
    for (key, value) in status.metadata().iter() {
        match value {
            MetadataValue::Ascii(text) => println!("client: trailer {key}: {text}"),
            MetadataValue::Binary(bytes) => println!("client: trailer {key}: bytes {bytes:?}"),
        }
    }
    let details = status.details();
    if details.is_empty() {
        return;
    }
    let hex: String = details.iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "client: {} bytes of details: {}...",
        details.len(),
        &hex[..16.min(hex.len())]
    );
    match RpcStatus::decode(details.as_ref()) {
        Ok(rpc) => {
            for any in rpc
                .details
                .iter()
                .filter(|any| any.type_url == ERROR_INFO_TYPE)
            {
                if let Ok(info) = ErrorInfo::decode(any.value.as_slice()) {
                    println!(
                        "client: error info: reason {}, domain {}",
                        info.reason, info.domain
                    );
                }
            }
        }
        Err(e) => println!("client: details are not a google.rpc.Status: {e}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (server, addr) =
        local::start(Server::builder().add_service(GreeterServer::new(MyGreeter))).await?;
    let client = GreeterClient::new(Channel::from_target(&addr.to_string())?);
    for name in ["Ada", "", "Bartholomew Roberts"] {
        println!("== name {name:?} ==");
        match client.say_hello(HelloRequest { name: name.into() }).await {
            Ok(reply) => println!("client: {}", reply.into_inner().message),
            Err(status) => show(&status),
        }
    }
    server.graceful_stop().await;
    Ok(())
}
