//! Multiplexing, in one process: one server hosts two services (Greeter and
//! RouteGuide), and one channel carries calls to both, over one connection.
//!
//! A server routes each call by the service name in its path
//! (`/helloworld.Greeter/SayHello`, `/routeguide.RouteGuide/GetFeature`), so
//! any number of services can share it. On the client, the generated
//! clients are thin wrappers around a `Channel`: give each a clone of the
//! same channel and they share its connection.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin multiplex`

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use ferrogrpc::{
    client::Channel,
    server::{ResponseSink, Server},
    stats::{self, ConnEvent, RpcEvent, RpcEventKind},
    Request, Response, Status, Streaming,
};
use ferrogrpc_examples::{
    helloworld::{
        greeter_client::GreeterClient,
        greeter_server::{Greeter, GreeterServer},
        HelloReply, HelloRequest,
    },
    local,
    routeguide::{
        route_guide_client::RouteGuideClient,
        route_guide_server::{RouteGuide, RouteGuideServer},
        Feature, Point, Rectangle, RouteNote, RouteSummary,
    },
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

/// A route guide that knows one feature; its other methods are left out.
struct Guide;

impl RouteGuide for Guide {
    async fn get_feature(&self, request: Request<Point>) -> Result<Response<Feature>, Status> {
        let point = request.into_inner();
        Ok(Response::new(Feature {
            name: format!("the feature at {},{}", point.latitude, point.longitude),
            location: Some(point),
        }))
    }

    async fn list_features(
        &self,
        _: Request<Rectangle>,
        _: ResponseSink<Feature>,
    ) -> Result<(), Status> {
        Err(Status::unimplemented("not part of this example"))
    }

    async fn record_route(
        &self,
        _: Request<Streaming<Point>>,
    ) -> Result<Response<RouteSummary>, Status> {
        Err(Status::unimplemented("not part of this example"))
    }

    async fn route_chat(
        &self,
        _: Request<Streaming<RouteNote>>,
        _: ResponseSink<RouteNote>,
    ) -> Result<(), Status> {
        Err(Status::unimplemented("not part of this example"))
    }
}

/// Prints the calls a server gets and counts its connections.
#[derive(Clone, Default)]
struct Watch {
    connections: Arc<AtomicUsize>,
}

impl stats::Handler for Watch {
    fn handle_rpc(&self, event: &RpcEvent<'_>) {
        if let RpcEventKind::Begin { .. } = event.kind {
            println!("server: call to {}", event.method);
        }
    }

    fn handle_conn(&self, event: &ConnEvent<'_>) {
        if let ConnEvent::Begin { .. } = event {
            self.connections.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let watch = Watch::default();
    let (server, addr) = local::start(
        Server::builder()
            .add_service(GreeterServer::new(MyGreeter))
            .add_service(RouteGuideServer::new(Guide))
            .stats_handler(watch.clone()),
    )
    .await?;

    let channel = Channel::from_target(&addr.to_string())?;
    let greeter = GreeterClient::new(channel.clone());
    let guide = RouteGuideClient::new(channel);

    let reply = greeter
        .say_hello(HelloRequest {
            name: "multiplex".into(),
        })
        .await?;
    println!("client: Greeter says {:?}", reply.into_inner().message);
    let feature = guide
        .get_feature(Point {
            latitude: 1,
            longitude: 2,
        })
        .await?;
    println!("client: RouteGuide found {:?}", feature.into_inner().name);

    server.graceful_stop().await;
    println!(
        "server: connections used: {}",
        watch.connections.load(Ordering::Relaxed)
    );
    Ok(())
}
