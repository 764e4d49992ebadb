//! The generated `routeguide.RouteGuide` client and server, talking over
//! loopback: every kind of RPC, metadata, errors and unknown methods.

mod common;

use std::time::Duration;

use codegen_tests::routeguide::{
    route_guide_client::RouteGuideClient,
    route_guide_server::{self, RouteGuide, RouteGuideServer},
    Feature, Point, Rectangle, RouteNote, RouteSummary,
};
use ferrogrpc::{
    codec::BytesCodec, server::ResponseSink, server::Server, Code, Request, Response, Status,
    Streaming,
};

/// Handlers written as `async fn`, as users write them.
#[derive(Debug, Default)]
struct Guide;

fn feature_at(p: &Point) -> Feature {
    Feature {
        name: format!("feature at {},{}", p.latitude, p.longitude),
        location: Some(*p),
    }
}

impl RouteGuide for Guide {
    async fn get_feature(&self, request: Request<Point>) -> Result<Response<Feature>, Status> {
        let echo = request.metadata().get("x-echo").map(str::to_string);
        let point = request.into_inner();
        if point.latitude < 0 {
            return Err(Status::invalid_argument("latitude must not be negative"));
        }
        let mut response = Response::new(feature_at(&point));
        if let Some(echo) = echo {
            response.metadata_mut().insert("x-echo", &echo).unwrap();
        }
        Ok(response)
    }

    async fn list_features(
        &self,
        request: Request<Rectangle>,
        mut responses: ResponseSink<Feature>,
    ) -> Result<(), Status> {
        let rect = request.into_inner();
        let (lo, hi) = (rect.lo.unwrap_or_default(), rect.hi.unwrap_or_default());
        for lat in lo.latitude..=hi.latitude {
            responses
                .send(feature_at(&Point {
                    latitude: lat,
                    longitude: lo.longitude,
                }))
                .await?;
        }
        Ok(())
    }

    async fn record_route(
        &self,
        request: Request<Streaming<Point>>,
    ) -> Result<Response<RouteSummary>, Status> {
        let mut points = request.into_inner();
        let mut summary = RouteSummary::default();
        let mut last: Option<Point> = None;
        while let Some(point) = points.message().await? {
            summary.point_count += 1;
            if point.latitude % 2 == 0 {
                summary.feature_count += 1;
            }
            if let Some(prev) = last {
                summary.distance += (point.latitude - prev.latitude).abs()
                    + (point.longitude - prev.longitude).abs();
            }
            last = Some(point);
        }
        Ok(Response::new(summary))
    }

    async fn route_chat(
        &self,
        request: Request<Streaming<RouteNote>>,
        mut responses: ResponseSink<RouteNote>,
    ) -> Result<(), Status> {
        let mut notes = request.into_inner();
        while let Some(note) = notes.message().await? {
            responses
                .send(RouteNote {
                    location: note.location,
                    message: format!("echo: {}", note.message),
                })
                .await?;
        }
        Ok(())
    }

    async fn uncommented(&self, request: Request<Point>) -> Result<Response<Point>, Status> {
        Ok(Response::new(request.into_inner()))
    }

    async fn old_get_feature(&self, request: Request<Point>) -> Result<Response<Feature>, Status> {
        self.get_feature(request).await
    }
}

async fn start() -> (common::Running, RouteGuideClient) {
    let running = common::serve(Server::builder().add_service(RouteGuideServer::new(Guide))).await;
    let client = RouteGuideClient::new(running.channel.clone());
    (running, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_call() {
    let (_server, client) = start().await;
    let point = Point {
        latitude: 409_146_138,
        longitude: -746_188_906,
    };

    // A bare message.
    let feature = client.get_feature(point).await.unwrap().into_inner();
    assert_eq!(feature, feature_at(&point));

    // A request with metadata and a timeout.
    let mut request = Request::new(point).with_timeout(Duration::from_secs(5));
    request.metadata_mut().insert("x-echo", "hello").unwrap();
    let response = client.get_feature(request).await.unwrap();
    assert_eq!(response.metadata().get("x-echo"), Some("hello"));

    // The handler's error comes back as the call's status.
    let err = client
        .get_feature(Point {
            latitude: -1,
            longitude: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "latitude must not be negative");

    assert_eq!(client.uncommented(point).await.unwrap().into_inner(), point);
    #[allow(deprecated)]
    let old = client.old_get_feature(point).await.unwrap().into_inner();
    assert_eq!(old, feature_at(&point));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_call() {
    let (_server, client) = start().await;
    let rect = Rectangle {
        lo: Some(Point {
            latitude: 10,
            longitude: 7,
        }),
        hi: Some(Point {
            latitude: 14,
            longitude: 9,
        }),
    };
    let mut stream = client.list_features(rect).await.unwrap().into_inner();
    let mut names = Vec::new();
    while let Some(feature) = stream.message().await.unwrap() {
        names.push(feature.name);
    }
    assert_eq!(
        names,
        (10..=14)
            .map(|lat| format!("feature at {lat},7"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming_call() {
    let (_server, client) = start().await;
    let mut call = client.record_route(()).await.unwrap();
    for lat in 0..5 {
        call.send(Point {
            latitude: lat,
            longitude: lat * 2,
        })
        .await
        .unwrap();
    }
    let summary = call.close_and_recv().await.unwrap().into_inner();
    assert_eq!(
        summary,
        RouteSummary {
            point_count: 5,
            feature_count: 3,
            distance: 12,
            elapsed_time: 0
        }
    );

    // No requests at all is a valid call too.
    let call = client.record_route(Request::new(())).await.unwrap();
    assert_eq!(
        call.close_and_recv()
            .await
            .unwrap()
            .into_inner()
            .point_count,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_streaming_call() {
    let (_server, client) = start().await;
    let (mut sink, mut responses) = client.route_chat(()).await.unwrap();
    for i in 0..3 {
        let location = Some(Point {
            latitude: i,
            longitude: -i,
        });
        sink.send(RouteNote {
            location,
            message: format!("note {i}"),
        })
        .await
        .unwrap();
        // Ping-pong: each reply arrives before the next request is sent.
        let reply = responses.message().await.unwrap().expect("a reply");
        assert_eq!(reply.message, format!("echo: note {i}"));
        assert_eq!(reply.location, location);
    }
    sink.close().unwrap();
    assert_eq!(responses.message().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_method_is_unimplemented() {
    let (server, _client) = start().await;
    let path = format!("/{}/NoSuchMethod", route_guide_server::SERVICE_NAME);
    let err = server
        .channel
        .unary(
            ferrogrpc::__codegen::PathAndQuery::from_maybe_shared(path).unwrap(),
            Request::new(prost::bytes::Bytes::new()),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");

    // The service name the server routes on is the proto's full name.
    assert_eq!(route_guide_server::SERVICE_NAME, "routeguide.RouteGuide");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shares_an_arc_and_clones() {
    let shared = std::sync::Arc::new(Guide);
    let server = RouteGuideServer::from_arc(shared.clone());
    let clone = server.clone();
    assert_eq!(
        ferrogrpc::server::Service::name(&clone),
        "routeguide.RouteGuide"
    );
    let running = common::serve(Server::builder().add_service(server)).await;
    let client = RouteGuideClient::new(running.channel.clone());
    assert_eq!(client.channel().target(), running.channel.target());
    let point = Point {
        latitude: 1,
        longitude: 2,
    };
    assert_eq!(
        client
            .clone()
            .get_feature(point)
            .await
            .unwrap()
            .into_inner(),
        feature_at(&point)
    );
}
