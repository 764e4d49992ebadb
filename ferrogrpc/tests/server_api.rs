//! Server API pieces gRPC-Go users reach for: an unknown-service handler
//! that proxies calls it has no service for (and methods a service does not
//! have), and the registered services' info. Real servers on loopback.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    server::{
        self, BoxFuture, MethodInfo, ResponseSink, Server, ServerBuilder, ServerCall, Service,
    },
    Code, Request, Response, Status, Streaming,
};
use http::uri::PathAndQuery;

/// The backend: `Echo` echoes, `Fail` fails with the message as text,
/// `Count` streams back as many messages as the first byte says.
struct Backend;

impl Service for Backend {
    fn name(&self) -> &'static str {
        "test.Backend"
    }

    fn methods(&self) -> &'static [MethodInfo] {
        const METHODS: &[MethodInfo] = &[
            MethodInfo::new("Echo", false, false),
            MethodInfo::new("Fail", false, false),
            MethodInfo::new("Count", false, true),
        ];
        METHODS
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        match method {
            "Echo" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let method = req.context().unwrap().method().to_string();
                    let mut resp = Response::new(req.into_inner());
                    resp.metadata_mut().insert("x-method", &method)?;
                    Ok(resp)
                },
            )),
            "Fail" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let text = String::from_utf8_lossy(req.get_ref()).into_owned();
                    Err::<Response<Bytes>, _>(Status::not_found(text))
                },
            )),
            "Count" => Box::pin(server::server_streaming(
                call,
                BytesCodec,
                |req: Request<Bytes>, mut sink: ResponseSink<Bytes>| async move {
                    for i in 0..req.get_ref()[0] {
                        sink.send(Bytes::from(vec![i])).await?;
                    }
                    Ok(())
                },
            )),
            _ => Box::pin(call.unimplemented()),
        }
    }
}

/// A service on the proxy that has one method of its own: `Local`. The
/// backend's `Echo` on this same service name goes through the proxy.
struct Partial;

impl Service for Partial {
    fn name(&self) -> &'static str {
        "test.Backend"
    }

    fn methods(&self) -> &'static [MethodInfo] {
        const METHODS: &[MethodInfo] = &[MethodInfo::new("Local", false, false)];
        METHODS
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        match method {
            "Local" => Box::pin(server::unary(
                call,
                BytesCodec,
                |_req: Request<Bytes>| async move { Ok(Response::new(Bytes::from_static(b"local"))) },
            )),
            _ => Box::pin(call.unimplemented()),
        }
    }
}

async fn serve(builder: ServerBuilder) -> (SocketAddr, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = builder.build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    (addr, server)
}

/// A transparent proxy: every call it has no service for goes to
/// `backend` as a stream of raw messages, both ways, with its status.
fn proxy_to(backend: Channel) -> impl Fn(ServerCall) -> BoxFuture + Send + Sync + 'static {
    move |call: ServerCall| {
        let backend = backend.clone();
        let path = PathAndQuery::try_from(call.path()).unwrap();
        Box::pin(server::streaming(
            call,
            BytesCodec,
            move |req: Request<Streaming<Bytes>>, mut sink: ResponseSink<Bytes>| async move {
                let ctx = req.context().unwrap().clone();
                let mut outbound = Request::new(());
                *outbound.metadata_mut() = req.metadata().clone();
                let (mut tx, mut rx) = backend
                    .streaming::<Bytes, Bytes, _>(path, outbound.with_parent(&ctx), BytesCodec)
                    .await?;
                let mut inbound = req.into_inner();
                let up = async {
                    while let Some(m) = inbound.message().await? {
                        tx.send(m).await?;
                    }
                    tx.close()
                };
                let down = async {
                    let mut first = true;
                    while let Some(m) = rx.message().await? {
                        if first {
                            first = false;
                            ctx.set_header(rx.headers().await?.clone())?;
                        }
                        sink.send(m).await?;
                    }
                    Ok::<_, Status>(())
                };
                let (up, down) = tokio::join!(up, down);
                down?;
                // The backend ended the call first: what was left unsent
                // does not matter.
                let _ = up;
                Ok(())
            },
        ))
    }
}

#[tokio::test]
async fn unknown_service_handler_proxies_calls() {
    let (backend_addr, _backend) = serve(Server::builder().add_service(Backend)).await;
    let backend = Channel::from_target(&backend_addr.to_string()).unwrap();
    let (proxy_addr, _proxy) =
        serve(Server::builder().unknown_service_handler(proxy_to(backend))).await;
    let client = Channel::from_target(&proxy_addr.to_string()).unwrap();

    let resp = client
        .unary(
            PathAndQuery::from_static("/test.Backend/Echo"),
            Request::new(Bytes::from_static(b"through")),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(resp.get_ref(), &Bytes::from_static(b"through"));
    assert_eq!(resp.metadata().get("x-method"), Some("/test.Backend/Echo"));

    let err = client
        .unary(
            PathAndQuery::from_static("/test.Backend/Fail"),
            Request::new(Bytes::from_static(b"no such thing")),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "no such thing");

    let resp = client
        .server_streaming(
            PathAndQuery::from_static("/test.Backend/Count"),
            Request::new(Bytes::from_static(&[3])),
            BytesCodec,
        )
        .await
        .unwrap();
    let mut stream = resp.into_inner();
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        got.push(m[0]);
    }
    assert_eq!(got, [0, 1, 2]);

    // What the backend does not know either is its UNIMPLEMENTED.
    let err = client
        .unary(
            PathAndQuery::from_static("/other.Service/Method"),
            Request::new(Bytes::new()).with_timeout(Duration::from_secs(5)),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err}");
}

/// A registered service that lists its methods: a method it does not have
/// goes to the unknown-service handler too; its own are served locally.
#[tokio::test]
async fn unknown_methods_of_a_known_service_go_to_the_handler() {
    let (backend_addr, _backend) = serve(Server::builder().add_service(Backend)).await;
    let backend = Channel::from_target(&backend_addr.to_string()).unwrap();
    let (proxy_addr, _proxy) = serve(
        Server::builder()
            .add_service(Partial)
            .unknown_service_handler(proxy_to(backend)),
    )
    .await;
    let client = Channel::from_target(&proxy_addr.to_string()).unwrap();
    let local = client
        .unary(
            PathAndQuery::from_static("/test.Backend/Local"),
            Request::new(Bytes::new()),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(local.get_ref(), &Bytes::from_static(b"local"));
    let proxied = client
        .unary(
            PathAndQuery::from_static("/test.Backend/Echo"),
            Request::new(Bytes::from_static(b"far")),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(proxied.get_ref(), &Bytes::from_static(b"far"));
}

/// Without the handler, unknown services and methods are UNIMPLEMENTED.
#[tokio::test]
async fn without_the_handler_unknown_calls_are_unimplemented() {
    let (addr, _server) = serve(Server::builder().add_service(Partial)).await;
    let client = Channel::from_target(&addr.to_string()).unwrap();
    for p in ["/test.Backend/Echo", "/nope.Svc/X"] {
        let err = client
            .unary(
                PathAndQuery::try_from(p).unwrap(),
                Request::new(Bytes::new()),
                BytesCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{p}: {err}");
    }
}

#[tokio::test]
async fn service_info_lists_services_and_methods() {
    let health = ferrogrpc::health::Server::new();
    let server = Server::builder()
        .add_service(Backend)
        .add_health(&health)
        .build();
    let info = server.service_info();
    let names: Vec<_> = info.iter().map(|s| s.name).collect();
    assert_eq!(names, ["grpc.health.v1.Health", "test.Backend"]);
    let watch = info[0]
        .methods
        .iter()
        .find(|m| m.name == "Watch")
        .expect("generated code lists its methods");
    assert!(!watch.client_streaming && watch.server_streaming);
    assert_eq!(info[1].methods.len(), 3);
}
