//! Wire-level tests: a raw HTTP/2 client (the h2 crate, no gRPC library)
//! sends well-formed and malformed requests to a ferrogrpc server over
//! loopback and checks the exact HTTP/2 answers.

use std::time::Duration;

use bytes::Bytes;
use ferrogrpc::{
    codec::BytesCodec,
    server::{self, BoxFuture, Server, ServerCall, Service},
    Request, Response, Status,
};
use http::{HeaderMap, Method};

/// Echoes a unary request; `Sleep` never answers (until cancelled).
struct Echo;

impl Service for Echo {
    fn name(&self) -> &'static str {
        "test.Echo"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        match method {
            "Unary" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let mut resp = Response::new(req.get_ref().clone());
                    if let Some(v) = req.metadata().get("x-echo") {
                        resp.metadata_mut().insert("x-echo", v).unwrap();
                    }
                    Ok(resp)
                },
            )),
            "Sleep" => Box::pin(server::unary(
                call,
                BytesCodec,
                |_req: Request<Bytes>| async move {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok::<_, Status>(Response::new(Bytes::new()))
                },
            )),
            _ => Box::pin(call.unimplemented()),
        }
    }
}

async fn start_server() -> (std::net::SocketAddr, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(Echo)
        .max_decoding_message_size(1024)
        .build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    (addr, server)
}

struct RawResponse {
    http_status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
}

impl RawResponse {
    /// grpc-status from trailers, or from headers for Trailers-Only.
    fn grpc_status(&self) -> Option<&str> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.headers.get("grpc-status"))
            .map(|v| v.to_str().unwrap())
    }

    fn grpc_message(&self) -> String {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-message"))
            .or_else(|| self.headers.get("grpc-message"))
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

fn frame(flag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![flag];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Sends one request with `headers`, the body in `chunks` (one DATA frame
/// each), and reads the whole response.
async fn raw_call(
    addr: std::net::SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &[u8])],
    chunks: Vec<Vec<u8>>,
) -> RawResponse {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, http::HeaderValue::from_bytes(v).unwrap());
    }
    let mut client = client.ready().await.unwrap();
    let (resp, mut send) = client
        .send_request(req.body(()).unwrap(), chunks.is_empty())
        .unwrap();
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        send.send_data(Bytes::from(chunk), i + 1 == n).unwrap();
    }
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .expect("server answered in time")
        .unwrap();
    let (parts, mut body) = resp.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap();
    RawResponse {
        http_status: parts.status.as_u16(),
        headers: parts.headers,
        body: data,
        trailers,
    }
}

const GRPC: &[(&str, &[u8])] = &[("content-type", b"application/grpc"), ("te", b"trailers")];

#[tokio::test]
async fn echo_with_message_split_into_one_byte_frames() {
    let (addr, _server) = start_server().await;
    let wire = frame(0, b"hello, split world");
    let chunks = wire.iter().map(|b| vec![*b]).collect();
    let resp = raw_call(addr, Method::POST, "/test.Echo/Unary", GRPC, chunks).await;
    assert_eq!(resp.http_status, 200);
    assert_eq!(resp.headers["content-type"], "application/grpc");
    assert_eq!(resp.grpc_status(), Some("0"));
    assert_eq!(resp.body, frame(0, b"hello, split world"));
}

/// The answer's content type repeats the request's subtype, as gRPC-Go's
/// does; a handler given its codec directly (here the pass-through
/// `BytesCodec`, as a proxy's) serves any subtype.
#[tokio::test]
async fn content_subtype_is_accepted() {
    let (addr, _server) = start_server().await;
    for (sent, answered) in [
        (&b"application/grpc+proto"[..], "application/grpc+proto"),
        (b"application/grpc+json", "application/grpc+json"),
        (b"Application/gRPC+Json", "application/grpc+json"),
        (b"application/grpc", "application/grpc"),
        (b"application/grpc+", "application/grpc"),
    ] {
        let headers: &[(&str, &[u8])] = &[("content-type", sent)];
        let resp = raw_call(
            addr,
            Method::POST,
            "/test.Echo/Unary",
            headers,
            vec![frame(0, b"x")],
        )
        .await;
        assert_eq!(resp.grpc_status(), Some("0"));
        assert_eq!(
            resp.headers["content-type"],
            answered,
            "{}",
            String::from_utf8_lossy(sent)
        );
        assert_eq!(resp.body, frame(0, b"x"));
    }
}

#[tokio::test]
async fn malformed_prefix_is_internal() {
    let (addr, _server) = start_server().await;
    let resp = raw_call(
        addr,
        Method::POST,
        "/test.Echo/Unary",
        GRPC,
        vec![frame(7, b"abc")],
    )
    .await;
    assert_eq!(resp.grpc_status(), Some("13"));
    assert!(
        resp.grpc_message().contains("flag"),
        "{}",
        resp.grpc_message()
    );
}

#[tokio::test]
async fn compressed_flag_without_encoding_is_internal() {
    let (addr, _server) = start_server().await;
    let resp = raw_call(
        addr,
        Method::POST,
        "/test.Echo/Unary",
        GRPC,
        vec![frame(1, b"abc")],
    )
    .await;
    assert_eq!(resp.grpc_status(), Some("13"));
    assert!(
        resp.grpc_message().contains("grpc-encoding"),
        "{}",
        resp.grpc_message()
    );
}

#[tokio::test]
async fn length_over_limit_is_resource_exhausted() {
    let (addr, _server) = start_server().await;
    // Announces 2000 bytes (limit 1024) and sends only the prefix.
    let prefix = vec![0, 0, 0, 0x07, 0xd0];
    let resp = raw_call(addr, Method::POST, "/test.Echo/Unary", GRPC, vec![prefix]).await;
    assert_eq!(resp.grpc_status(), Some("8"));
    assert!(
        resp.grpc_message().contains("2000 vs. 1024"),
        "{}",
        resp.grpc_message()
    );
}

#[tokio::test]
async fn message_cut_off_at_end_of_stream_is_internal() {
    let (addr, _server) = start_server().await;
    let mut wire = frame(0, b"0123456789");
    wire.truncate(9);
    let resp = raw_call(addr, Method::POST, "/test.Echo/Unary", GRPC, vec![wire]).await;
    assert_eq!(resp.grpc_status(), Some("13"));
    assert!(
        resp.grpc_message().contains("got 4 of 10"),
        "{}",
        resp.grpc_message()
    );
}

#[tokio::test]
async fn no_request_message_is_internal() {
    let (addr, _server) = start_server().await;
    let resp = raw_call(addr, Method::POST, "/test.Echo/Unary", GRPC, vec![]).await;
    assert_eq!(resp.grpc_status(), Some("13"));
}

#[tokio::test]
async fn invalid_grpc_timeout_is_internal() {
    let (addr, _server) = start_server().await;
    for bad in [&b"1x"[..], b"123456789S", b"S", b""] {
        let mut headers = GRPC.to_vec();
        headers.push(("grpc-timeout", bad));
        let resp = raw_call(
            addr,
            Method::POST,
            "/test.Echo/Unary",
            &headers,
            vec![frame(0, b"x")],
        )
        .await;
        assert_eq!(resp.grpc_status(), Some("13"), "timeout {bad:?}");
        assert!(resp.grpc_message().contains("grpc-timeout"));
    }
}

#[tokio::test]
async fn grpc_timeout_expiry_is_deadline_exceeded() {
    let (addr, _server) = start_server().await;
    let mut headers = GRPC.to_vec();
    headers.push(("grpc-timeout", b"50m"));
    let resp = raw_call(
        addr,
        Method::POST,
        "/test.Echo/Sleep",
        &headers,
        vec![frame(0, b"x")],
    )
    .await;
    assert_eq!(resp.grpc_status(), Some("4"));
}

#[tokio::test]
async fn non_ascii_metadata_is_internal() {
    let (addr, _server) = start_server().await;
    let mut headers = GRPC.to_vec();
    headers.push(("x-bad", b"caf\xc3\xa9"));
    let resp = raw_call(
        addr,
        Method::POST,
        "/test.Echo/Unary",
        &headers,
        vec![frame(0, b"x")],
    )
    .await;
    assert_eq!(resp.grpc_status(), Some("13"));
    assert!(
        resp.grpc_message().contains("x-bad"),
        "{}",
        resp.grpc_message()
    );
}

#[tokio::test]
async fn metadata_is_echoed_in_headers() {
    let (addr, _server) = start_server().await;
    let mut headers = GRPC.to_vec();
    headers.push(("x-echo", b"round trip"));
    let resp = raw_call(
        addr,
        Method::POST,
        "/test.Echo/Unary",
        &headers,
        vec![frame(0, b"x")],
    )
    .await;
    assert_eq!(resp.headers["x-echo"], "round trip");
}

#[tokio::test]
async fn non_post_is_405() {
    let (addr, _server) = start_server().await;
    let resp = raw_call(addr, Method::GET, "/test.Echo/Unary", GRPC, vec![]).await;
    assert_eq!(resp.http_status, 405);
    assert_eq!(resp.grpc_status(), Some("13"));
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let (addr, _server) = start_server().await;
    let headers: &[(&str, &[u8])] = &[("content-type", b"application/json")];
    let resp = raw_call(
        addr,
        Method::POST,
        "/test.Echo/Unary",
        headers,
        vec![b"{}".to_vec()],
    )
    .await;
    assert_eq!(resp.http_status, 415);
    let resp = raw_call(
        addr,
        Method::POST,
        "/test.Echo/Unary",
        &[],
        vec![b"{}".to_vec()],
    )
    .await;
    assert_eq!(resp.http_status, 415);
}

#[tokio::test]
async fn unknown_service_and_method_are_unimplemented() {
    let (addr, _server) = start_server().await;
    for path in ["/test.Nope/Unary", "/test.Echo/Nope", "/nonsense"] {
        let resp = raw_call(addr, Method::POST, path, GRPC, vec![frame(0, b"x")]).await;
        assert_eq!(resp.http_status, 200, "{path}");
        // Trailers-Only: the status is in the headers, no body.
        assert!(resp.trailers.is_none(), "{path}");
        assert_eq!(resp.headers["grpc-status"], "12", "{path}");
        assert!(resp.body.is_empty());
    }
}
