//! A helloworld.Greeter/SayHello server that echoes the name back, as the
//! grpc_bench suite does. Usage: `greeter_server ADDR` (`THREADS=N` sets the
//! worker count; default: the CPUs this process may use).

use benchmark::helloworld::{
    greeter_server::{Greeter, GreeterServer},
    HelloReply, HelloRequest,
};
use ferrogrpc::{server::Server, Request, Response, Status};

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

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".into());
    benchmark::runtime()?.block_on(
        Server::builder()
            .add_service(GreeterServer::new(Echo))
            .serve(addr),
    )
}
