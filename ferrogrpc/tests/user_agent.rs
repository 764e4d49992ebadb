//! `ChannelBuilder::user_agent` (gRPC-Go's `WithUserAgent`): what a
//! handler sees in the `user-agent` metadata of calls over loopback TCP.

use std::time::Duration;

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    server::{self, BoxFuture, Server, ServerCall, Service},
    Request, Response,
};
use http::uri::PathAndQuery;

const OURS: &str = concat!("ferrogrpc/", env!("CARGO_PKG_VERSION"));

/// Answers with the `user-agent` the call arrived with.
struct Agent;

impl Service for Agent {
    fn name(&self) -> &'static str {
        "ua.Agent"
    }

    fn call(&self, _method: &str, call: ServerCall) -> BoxFuture {
        Box::pin(server::unary(
            call,
            BytesCodec,
            |req: Request<Bytes>| async move {
                let ua = req.metadata().get("user-agent").unwrap_or("").to_string();
                Ok(Response::new(Bytes::from(ua)))
            },
        ))
    }
}

async fn serve() -> (Server, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder().add_service(Agent).build();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve_listener(listener).await });
    (server, addr.to_string())
}

/// The `user-agent` the server saw for one call with `request`.
async fn seen(channel: &Channel, request: Request<Bytes>) -> String {
    let resp = channel
        .unary(
            PathAndQuery::from_static("/ua.Agent/Get"),
            request.with_timeout(Duration::from_secs(5)),
            BytesCodec,
        )
        .await
        .unwrap();
    String::from_utf8(resp.into_inner().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prefix_comes_before_ferrogrpcs_name() {
    let (server, addr) = serve().await;

    let plain = Channel::builder(addr.clone()).build().unwrap();
    assert_eq!(seen(&plain, Request::new(Bytes::new())).await, OURS);

    let prefixed = Channel::builder(addr)
        .user_agent("my-app/1.2")
        .build()
        .unwrap();
    assert_eq!(
        seen(&prefixed, Request::new(Bytes::new())).await,
        format!("my-app/1.2 {OURS}")
    );

    // A call's own user-agent goes first.
    let mut request = Request::new(Bytes::new());
    request
        .metadata_mut()
        .insert("user-agent", "per-call")
        .unwrap();
    assert_eq!(
        seen(&prefixed, request).await,
        format!("per-call my-app/1.2 {OURS}")
    );
    server.stop();
}

#[test]
fn a_prefix_that_is_not_a_header_value_fails_the_build() {
    let err = Channel::builder("127.0.0.1:1")
        .user_agent("line\nbreak")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("user agent"), "{err}");
}
