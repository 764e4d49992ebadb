//! A closure interceptor (`interceptor_fn`) covers unary and streaming
//! calls with one registration: the server refuses calls without the token
//! (before the handler runs), and a client closure adds it to every call.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    server::{self, BoxFuture, ResponseSink, Server, ServerCall, Service},
    Code, Request, Response, Status, Streaming,
};
use http::uri::PathAndQuery;

/// `Unary` echoes; `Bidi` echoes each message. Counts the calls routed to it.
#[derive(Clone, Default)]
struct Echo(Arc<AtomicUsize>);

impl Service for Echo {
    fn name(&self) -> &'static str {
        "f.Echo"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        self.0.fetch_add(1, Ordering::SeqCst);
        match method {
            "Unary" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move { Ok(Response::new(req.into_inner())) },
            )),
            _ => Box::pin(server::streaming(
                call,
                BytesCodec,
                |req: Request<Streaming<Bytes>>, mut sink: ResponseSink<Bytes>| async move {
                    let mut stream = req.into_inner();
                    while let Some(m) = stream.message().await? {
                        sink.send(m).await?;
                    }
                    Ok(())
                },
            )),
        }
    }
}

async fn start() -> (Echo, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let echo = Echo::default();
    let server = Server::builder()
        .add_service(echo.clone())
        .interceptor_fn(|metadata, _info| match metadata.get("authorization") {
            Some("Bearer sesame") => Ok(()),
            _ => Err(Status::unauthenticated("a valid token is needed")),
        })
        .build();
    tokio::spawn(async move { server.serve_listener(listener).await });
    (echo, addr)
}

async fn unary(ch: &Channel) -> Result<Bytes, Status> {
    let req = Request::new(Bytes::from_static(b"u")).with_timeout(Duration::from_secs(5));
    ch.unary(PathAndQuery::from_static("/f.Echo/Unary"), req, BytesCodec)
        .await
        .map(Response::into_inner)
}

async fn bidi(ch: &Channel) -> Result<Vec<Bytes>, Status> {
    let req = Request::new(()).with_timeout(Duration::from_secs(5));
    let (mut sink, mut stream) = ch
        .streaming::<Bytes, Bytes, _>(PathAndQuery::from_static("/f.Echo/Bidi"), req, BytesCodec)
        .await?;
    sink.send(Bytes::from_static(b"b")).await?;
    sink.close()?;
    let mut got = Vec::new();
    while let Some(m) = stream.message().await? {
        got.push(m);
    }
    Ok(got)
}

#[tokio::test]
async fn one_closure_guards_unary_and_streaming_calls() {
    let (echo, addr) = start().await;
    let without = Channel::from_target(&addr).unwrap();
    assert_eq!(
        unary(&without).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        bidi(&without).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let handled = echo.0.load(Ordering::SeqCst);

    let with = Channel::builder(&addr)
        .interceptor_fn(|metadata, _info| {
            metadata.insert("authorization", "Bearer sesame")?;
            Ok(())
        })
        .build()
        .unwrap();
    assert_eq!(unary(&with).await.unwrap(), "u");
    assert_eq!(bidi(&with).await.unwrap(), ["b"]);
    assert_eq!(echo.0.load(Ordering::SeqCst), handled + 2);
}
