//! Metadata sized by a peer never panics: a handler that echoes 25,000 or
//! 100,000 request entries into its response headers, its trailers or an
//! error's Trailers-Only answer sends them; metadata that cannot fit in one
//! header block (more distinct keys than `http::HeaderMap` holds) ends the
//! call with INTERNAL naming the cause, on the server and on the client, and
//! the calling task and the connection survive.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferrogrpc::{
    client::Channel,
    codec::{BytesCodec, Codec},
    metadata::MetadataMap,
    server::{self, BoxFuture, Server, ServerCall, Service},
    Code, Request, Response, Status,
};
use http::uri::PathAndQuery;

/// Encodes by panicking: a panic after the handler returned.
struct PanickyCodec;

impl Codec<Bytes, Bytes> for PanickyCodec {
    fn encode(&mut self, _item: &Bytes, _dst: &mut BytesMut) -> Result<(), Status> {
        panic!("codec exploded")
    }

    fn decode(&mut self, src: Bytes) -> Result<Bytes, Status> {
        Ok(src)
    }
}

/// Echoes the request's metadata: `Headers` in the response headers,
/// `Trailers` in the trailers, `Error` on an error status (Trailers-Only).
/// With `x-fill` set, the echo is padded with distinct keys up to
/// `MetadataMap::MAX_KEYS`, so it cannot fit beside the protocol's headers.
struct Echo;

fn echoed(request: &Request<Bytes>) -> MetadataMap {
    let mut md = request.metadata().clone();
    if md.contains_key("x-fill") {
        let keys = md.keys().count();
        for i in keys..MetadataMap::MAX_KEYS {
            md.insert(&format!("f{i}"), "v").unwrap();
        }
        assert!(md.insert("one-too-many", "v").is_err());
    }
    md
}

impl Service for Echo {
    fn name(&self) -> &'static str {
        "m.Echo"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        if method == "Panic" {
            return Box::pin(server::unary(
                call,
                PanickyCodec,
                |req: Request<Bytes>| async move { Ok(Response::new(req.into_inner())) },
            ));
        }
        let method = method.to_string();
        Box::pin(server::unary(
            call,
            BytesCodec,
            move |req: Request<Bytes>| async move {
                let md = echoed(&req);
                match method.as_str() {
                    "Headers" => Ok(Response::from_parts(md, Bytes::new(), MetadataMap::new())),
                    "Trailers" => Ok(Response::from_parts(MetadataMap::new(), Bytes::new(), md)),
                    _ => Err(Status::permission_denied("echoed").with_metadata(md)),
                }
            },
        ))
    }
}

async fn channel() -> Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder().add_service(Echo).build();
    tokio::spawn(async move { server.serve_listener(listener).await });
    Channel::from_target(&addr.to_string()).unwrap()
}

fn request(md: MetadataMap) -> Request<Bytes> {
    let mut req = Request::new(Bytes::new()).with_timeout(Duration::from_secs(30));
    *req.metadata_mut() = md;
    req
}

/// `n` values of one key: a few bytes each on the wire once HPACK indexes it.
fn repeated(n: usize) -> MetadataMap {
    let mut md = MetadataMap::new();
    for _ in 0..n {
        md.append("x-k", "v").unwrap();
    }
    md
}

async fn call(ch: &Channel, method: &str, md: MetadataMap) -> Result<Response<Bytes>, Status> {
    let path = PathAndQuery::try_from(format!("/m.Echo/{method}")).unwrap();
    ch.unary(path, request(md), BytesCodec).await
}

#[tokio::test]
async fn many_entries_are_echoed_in_headers_trailers_and_trailers_only() {
    let ch = channel().await;
    for n in [25_000, 100_000] {
        let resp = call(&ch, "Headers", repeated(n)).await.expect("headers");
        assert_eq!(resp.metadata().get_all("x-k").count(), n);
        let resp = call(&ch, "Trailers", repeated(n)).await.expect("trailers");
        assert_eq!(resp.trailers().get_all("x-k").count(), n);
        let err = call(&ch, "Error", repeated(n)).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        assert_eq!(err.metadata().get_all("x-k").count(), n);
    }
}

#[tokio::test]
async fn server_metadata_that_cannot_fit_ends_the_call_with_internal() {
    let ch = channel().await;
    for method in ["Headers", "Trailers", "Error"] {
        let mut md = repeated(10);
        md.insert("x-fill", "1").unwrap();
        let err = call(&ch, method, md).await.unwrap_err();
        assert_eq!(err.code(), Code::Internal, "{method}: {err}");
        assert!(
            err.message()
                .contains("does not fit in one HTTP/2 header block"),
            "{method}: {err}"
        );
    }
    // The connection still serves.
    let resp = call(&ch, "Headers", repeated(3)).await.unwrap();
    assert_eq!(resp.metadata().get_all("x-k").count(), 3);
}

#[tokio::test]
async fn client_metadata_that_cannot_fit_fails_the_call_not_the_task() {
    let ch = channel().await;
    let mut md = MetadataMap::new();
    for i in 0..MetadataMap::MAX_KEYS {
        md.insert(&format!("k{i}"), "v").unwrap();
    }
    let err = md.insert("one-more", "v").unwrap_err();
    assert!(
        err.to_string().contains("at most 24576 distinct keys"),
        "{err}"
    );
    let err = call(&ch, "Headers", md).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert!(
        err.message()
            .contains("does not fit in one HTTP/2 header block"),
        "{err}"
    );
    // Same task, same channel: the next call works.
    call(&ch, "Headers", repeated(1)).await.unwrap();
}

/// A unary call whose response panics on the way out (in the codec, after
/// the handler returned) ends with UNKNOWN naming the panic, as a panic in
/// the handler itself does; the client does not see a bare CANCELLED.
#[tokio::test]
async fn a_panic_while_sending_a_unary_response_is_unknown() {
    let ch = channel().await;
    let err = call(&ch, "Panic", MetadataMap::new()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unknown, "{err}");
    assert!(
        err.message().contains("handler panicked: codec exploded"),
        "{err}"
    );
    call(&ch, "Headers", repeated(1)).await.unwrap();
}
