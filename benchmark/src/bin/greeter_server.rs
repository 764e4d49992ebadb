//! A helloworld.Greeter/SayHello server that echoes the name back, as the
//! grpc_bench suite does. Usage: `greeter_server ADDR` (`THREADS=N` sets the
//! worker count; default: the CPUs this process may use).

use std::{io, process::ExitCode};

use benchmark::helloworld::{
    greeter_server::{Greeter, GreeterServer},
    HelloReply, HelloRequest,
};
use ferrogrpc::{server::Server, Request, Response, Status};
use tokio::net::TcpListener;

struct Echo;

impl Greeter for Echo {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply {
            message: request.into_inner().name,
        }))
    }
}

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".into());
    let runtime = match benchmark::runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("greeter_server: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async {
        // Bound before "listening" is printed, so the line is true and a
        // port in use is reported as such.
        let listener = TcpListener::bind(&addr).await.map_err(|err| {
            let why = match err.kind() {
                io::ErrorKind::AddrInUse => "address already in use".to_string(),
                _ => err.to_string(),
            };
            format!("cannot listen on {addr}: {why}")
        })?;
        println!("greeter_server: listening on {addr}");
        Server::builder()
            .add_service(GreeterServer::new(Echo))
            .build()
            .serve_listener(listener)
            .await
            .map_err(|err| err.to_string())
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("greeter_server: {message}");
            ExitCode::FAILURE
        }
    }
}
