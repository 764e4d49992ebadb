//! The helloworld greeter server. Usage: `helloworld_server [ADDR]`
//! (default 127.0.0.1:50051). Stops gracefully on Ctrl-C or SIGTERM.

use std::{process::ExitCode, time::Duration};

use ferrogrpc::{server::Server, Request, Response, Status};
use ferrogrpc_examples::{
    helloworld::{
        greeter_server::{Greeter, GreeterServer},
        HelloReply, HelloRequest,
    },
    serving::{bind, stop_signal},
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

#[tokio::main]
async fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".into());
    let stop = match stop_signal() {
        Ok(stop) => stop,
        Err(err) => {
            eprintln!("helloworld_server: cannot handle signals: {err}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match bind(&addr).await {
        Ok(listener) => listener,
        Err(message) => {
            eprintln!("helloworld_server: {message}");
            return ExitCode::FAILURE;
        }
    };
    // The admin services (channelz) let tools see its connections and calls.
    let server = ferrogrpc::admin::register(Server::builder())
        .add_service(GreeterServer::new(MyGreeter))
        .build();
    println!("greeter server listening on {addr}");
    tokio::select! {
        result = server.serve_listener(listener) => {
            if let Err(err) = result {
                eprintln!("helloworld_server: {err}");
                return ExitCode::FAILURE;
            }
        }
        () = stop => {
            // No new calls; those under way get a few seconds to finish.
            println!("greeter server stopping");
            server.graceful_stop_timeout(Duration::from_secs(5)).await;
        }
    }
    // Entries of a binary log (GRPC_BINARY_LOG_FILTER) reach the file.
    let _ = tokio::task::spawn_blocking(ferrogrpc::binarylog::flush).await;
    ExitCode::SUCCESS
}
