//! The helloworld greeter server. Usage: `helloworld_server [ADDR]`
//! (default 127.0.0.1:50051). Stops gracefully on Ctrl-C.

use ferrogrpc::{server::Server, Request, Response, Status};
use ferrogrpc_examples::helloworld::{
    greeter_server::{Greeter, GreeterServer},
    HelloReply, HelloRequest,
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
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".into());
    println!("greeter server listening on {addr}");
    Server::builder()
        .add_service(GreeterServer::new(MyGreeter))
        .serve_with_shutdown(addr, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
