//! Codecs by content-subtype, over real sockets: a raw HTTP/2 client
//! (`support/raw_h2.rs`) sends `application/grpc+<subtype>` requests and
//! reads the exact answer — its `content-type`, its message bytes, its
//! status. The server answers in the request's subtype (JSON, protobuf, a
//! registered codec) and refuses a subtype it has no codec for with
//! UNIMPLEMENTED; a client asked for a subtype with no codec fails before
//! sending anything.
//!
//! The messages are the health service's (`grpc.health.v1`), whose
//! generated code is built without JSON: `test.Json` below is served the
//! way code generated with `json(true)` serves a method, and the generated
//! `grpc.health.v1.Health` itself speaks only protobuf and what is
//! registered. codegen-tests has the generated JSON client and server.

#[path = "support/raw_h2.rs"]
mod raw_h2;

use std::{net::SocketAddr, time::Duration};

use bytes::{Bytes, BytesMut};
use ferrogrpc::{
    client::Channel,
    codec::{self, json::Descriptors, CallCodec, Codec},
    health::{
        pb::{health_client::HealthClient, HealthCheckRequest, HealthCheckResponse},
        ServingStatus,
    },
    server::{self, BoxFuture, Server, ServerCall, Service},
    Code, Request, Response, Status,
};
use http::uri::PathAndQuery;
use raw_h2::{Conn, Frame};

/// The health protos' descriptors, for the JSON codec of `test.Json`.
static HEALTH: Descriptors = Descriptors::new(ferrogrpc::health::pb::FILE_DESCRIPTORS);

const REQUEST: &str = "grpc.health.v1.HealthCheckRequest";
const RESPONSE: &str = "grpc.health.v1.HealthCheckResponse";

/// `test.Json/Check`, dispatched as code generated with JSON dispatches:
/// SERVING for the service `"up"`, NOT_SERVING otherwise; the response
/// header `x-subtype` says the subtype the handler saw (in brackets).
struct JsonService;

impl Service for JsonService {
    fn name(&self) -> &'static str {
        "test.Json"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        match method {
            "Check" => {
                let codec = CallCodec::<HealthCheckResponse, HealthCheckRequest>::server_with_json(
                    call.content_subtype(),
                    &HEALTH,
                    RESPONSE,
                    REQUEST,
                );
                match codec {
                    Ok(codec) => Box::pin(server::unary(call, codec, check)),
                    Err(status) => Box::pin(async move { call.fail(status) }),
                }
            }
            _ => Box::pin(call.unimplemented()),
        }
    }
}

async fn check(
    request: Request<HealthCheckRequest>,
) -> Result<Response<HealthCheckResponse>, Status> {
    let seen = format!("[{}]", request.context().unwrap().content_subtype());
    let status = match request.get_ref().service.as_str() {
        "up" => ServingStatus::Serving,
        _ => ServingStatus::NotServing,
    };
    let mut response = Response::new(HealthCheckResponse {
        status: status as i32,
    });
    response.metadata_mut().insert("x-subtype", &seen)?;
    Ok(response)
}

/// The health service as plain text, `application/grpc+text`: a request is
/// the service's name, a response its status's name. Registered for both
/// sides of `Check`.
#[derive(Clone, Debug)]
struct Text;

fn text(src: &Bytes) -> Result<&str, Status> {
    std::str::from_utf8(src).map_err(|e| Status::internal(e.to_string()))
}

impl Codec<HealthCheckResponse, HealthCheckRequest> for Text {
    fn name(&self) -> &'static str {
        "text"
    }

    fn encode(&mut self, item: &HealthCheckResponse, dst: &mut BytesMut) -> Result<(), Status> {
        dst.extend_from_slice(item.status().as_str_name().as_bytes());
        Ok(())
    }

    fn decode(&mut self, src: Bytes) -> Result<HealthCheckRequest, Status> {
        Ok(HealthCheckRequest {
            service: text(&src)?.to_string(),
        })
    }
}

impl Codec<HealthCheckRequest, HealthCheckResponse> for Text {
    fn name(&self) -> &'static str {
        "text"
    }

    fn encode(&mut self, item: &HealthCheckRequest, dst: &mut BytesMut) -> Result<(), Status> {
        dst.extend_from_slice(item.service.as_bytes());
        Ok(())
    }

    fn decode(&mut self, src: Bytes) -> Result<HealthCheckResponse, Status> {
        let status = ServingStatus::from_str_name(text(&src)?)
            .ok_or_else(|| Status::internal("not a serving status"))?;
        Ok(HealthCheckResponse {
            status: status as i32,
        })
    }
}

fn register_text() {
    codec::register_codec::<HealthCheckResponse, HealthCheckRequest, _>(Text);
    codec::register_codec::<HealthCheckRequest, HealthCheckResponse, _>(Text);
}

async fn start_server() -> (SocketAddr, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(JsonService)
        .add_health(&ferrogrpc::health::Server::new())
        .build();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve_listener(listener).await });
    (addr, server)
}

/// What the server answered one call with.
#[derive(Debug)]
struct Answer {
    headers: Vec<(String, String)>,
    /// The messages, their 5-byte prefixes taken off.
    messages: Vec<Vec<u8>>,
    /// `None` for a Trailers-Only answer (the status is in `headers`).
    trailers: Option<Vec<(String, String)>>,
}

fn find<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("(none)")
    }

    fn status_field(&self, name: &str) -> Option<&str> {
        match &self.trailers {
            Some(trailers) => find(trailers, name),
            None => self.header(name),
        }
    }

    fn code(&self) -> &str {
        self.status_field("grpc-status").unwrap_or("(none)")
    }

    fn message_text(&self) -> String {
        assert_eq!(self.messages.len(), 1, "{self:?}");
        String::from_utf8(self.messages[0].clone()).unwrap()
    }
}

fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

/// One unary call with `content_type` and the one request `message`, by
/// hand.
async fn raw_call(addr: SocketAddr, path: &str, content_type: &str, message: &[u8]) -> Answer {
    let mut conn = Conn::handshake(addr).await;
    conn.auto_ack_pings = true;
    let fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "codecs.test"),
        ("content-type", content_type),
        ("te", "trailers"),
    ];
    conn.send_headers(1, &fields, false).await.unwrap();
    conn.send_data(1, &grpc_frame(message), true).await.unwrap();
    let mut headers = None;
    let mut body = Vec::new();
    loop {
        let frame = conn
            .read_until(Duration::from_secs(10), |f| f.stream_id() == 1)
            .await
            .expect("an answer on stream 1");
        match frame {
            Frame::Headers {
                fields, end_stream, ..
            } => match headers {
                None if end_stream => {
                    return Answer {
                        headers: fields,
                        messages: Vec::new(),
                        trailers: None,
                    }
                }
                None => headers = Some(fields),
                Some(headers) => {
                    assert!(end_stream, "trailers end the stream");
                    return Answer {
                        headers,
                        messages: split_messages(&body),
                        trailers: Some(fields),
                    };
                }
            },
            Frame::Data { data, .. } => body.extend_from_slice(&data),
            Frame::RstStream { error_code, .. } => panic!("stream reset with {error_code}"),
            _ => {}
        }
    }
}

fn split_messages(mut body: &[u8]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    while !body.is_empty() {
        assert_eq!(body[0], 0, "uncompressed");
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        messages.push(body[5..5 + len].to_vec());
        body = &body[5 + len..];
    }
    messages
}

#[tokio::test]
async fn json_request_is_answered_in_json() {
    let (addr, _server) = start_server().await;
    let answer = raw_call(
        addr,
        "/test.Json/Check",
        "application/grpc+json",
        br#"{"service": "up"}"#,
    )
    .await;
    assert_eq!(answer.code(), "0", "{answer:?}");
    assert_eq!(answer.content_type(), "application/grpc+json");
    assert_eq!(answer.header("x-subtype"), Some("[json]"));
    // The enum by its name, as protobuf's JSON mapping writes it.
    assert_eq!(answer.message_text(), r#"{"status":"SERVING"}"#);
}

#[tokio::test]
async fn json_subtype_is_case_insensitive() {
    let (addr, _server) = start_server().await;
    let answer = raw_call(
        addr,
        "/test.Json/Check",
        "application/grpc+JSON",
        br#"{"service":"down"}"#,
    )
    .await;
    assert_eq!(answer.code(), "0", "{answer:?}");
    assert_eq!(answer.content_type(), "application/grpc+json");
    assert_eq!(answer.message_text(), r#"{"status":"NOT_SERVING"}"#);
}

#[tokio::test]
async fn bad_json_is_internal() {
    let (addr, _server) = start_server().await;
    for body in [&br#"{"service": 1"#[..], br#"{"nope": "x"}"#, b"\x0a\x02up"] {
        let answer = raw_call(addr, "/test.Json/Check", "application/grpc+json", body).await;
        assert_eq!(answer.code(), "13", "{answer:?}");
        let message = answer.status_field("grpc-message").unwrap_or_default();
        assert!(message.contains("from JSON"), "{message}");
    }
}

#[tokio::test]
async fn proto_requests_are_answered_in_proto() {
    let (addr, _server) = start_server().await;
    let up = prost::Message::encode_to_vec(&HealthCheckRequest {
        service: "up".into(),
    });
    let serving = prost::Message::encode_to_vec(&HealthCheckResponse {
        status: ServingStatus::Serving as i32,
    });
    for (content_type, answered, seen) in [
        ("application/grpc", "application/grpc", "[]"),
        (
            "application/grpc+proto",
            "application/grpc+proto",
            "[proto]",
        ),
    ] {
        let answer = raw_call(addr, "/test.Json/Check", content_type, &up).await;
        assert_eq!(answer.code(), "0", "{answer:?}");
        assert_eq!(answer.content_type(), answered);
        assert_eq!(answer.header("x-subtype"), Some(seen));
        assert_eq!(answer.messages, vec![serving.clone()]);
    }
}

#[tokio::test]
async fn unknown_subtype_is_unimplemented() {
    let (addr, _server) = start_server().await;
    for (path, content_type, subtype) in [
        // A subtype nobody registered.
        ("/test.Json/Check", "application/grpc+msgpack", "msgpack"),
        (
            "/grpc.health.v1.Health/Check",
            "application/grpc+msgpack",
            "msgpack",
        ),
        // gRPC-Go reads what follows `;` as the subtype too.
        (
            "/test.Json/Check",
            "application/grpc;charset=utf-8",
            "charset=utf-8",
        ),
        // JSON, to code generated without it.
        (
            "/grpc.health.v1.Health/List",
            "application/grpc+json",
            "json",
        ),
    ] {
        let answer = raw_call(addr, path, content_type, b"{}").await;
        assert_eq!(answer.code(), "12", "{path} {content_type}: {answer:?}");
        let message = answer.status_field("grpc-message").unwrap_or_default();
        assert!(
            message.contains("no codec registered for content-subtype")
                && message.contains(subtype),
            "{message}"
        );
        assert!(answer.messages.is_empty());
        assert_eq!(
            answer.content_type(),
            format!("application/grpc+{subtype}"),
            "the answer repeats the request's subtype"
        );
    }
}

#[tokio::test]
async fn registered_codec_serves_generated_code() {
    register_text();
    let (addr, _server) = start_server().await;
    // By hand: the bytes on the wire are the codec's.
    let answer = raw_call(
        addr,
        "/grpc.health.v1.Health/Check",
        "application/grpc+text",
        b"",
    )
    .await;
    assert_eq!(answer.code(), "0", "{answer:?}");
    assert_eq!(answer.content_type(), "application/grpc+text");
    assert_eq!(answer.message_text(), "SERVING");

    // The generated client, told the subtype per client and per request.
    let channel = Channel::from_target(&addr.to_string()).unwrap();
    let client = HealthClient::new(channel.clone()).with_content_subtype("text");
    let response = client.check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(response.get_ref().status(), ServingStatus::Serving);
    let client = HealthClient::new(channel);
    let request = Request::new(HealthCheckRequest::default()).with_content_subtype("TEXT");
    let response = client.check(request).await.unwrap();
    assert_eq!(response.get_ref().status(), ServingStatus::Serving);
}

#[tokio::test]
async fn client_with_unregistered_subtype_fails_before_sending() {
    // Nothing listens there: a call that went out would be UNAVAILABLE.
    let channel = Channel::from_target("127.0.0.1:1").unwrap();
    let client = HealthClient::new(channel).with_content_subtype("msgpack");
    let err = client
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(
        err.message()
            .contains(r#"no codec registered for content-subtype "msgpack""#),
        "{err:?}"
    );
    // JSON too, with code generated without it.
    let err = HealthClient::new(Channel::from_target("127.0.0.1:1").unwrap())
        .check(Request::new(HealthCheckRequest::default()).with_content_subtype("json"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
}

#[tokio::test]
async fn forced_codec_on_the_channel() {
    // gRPC-Go's ForceCodec: the call API takes the codec, whose name is
    // the subtype sent.
    let (addr, _server) = start_server().await;
    let channel = Channel::from_target(&addr.to_string()).unwrap();
    let codec = HEALTH
        .codec::<HealthCheckRequest, HealthCheckResponse>(REQUEST, RESPONSE)
        .unwrap();
    let response = channel
        .unary(
            PathAndQuery::from_static("/test.Json/Check"),
            Request::new(HealthCheckRequest {
                service: "up".into(),
            }),
            codec,
        )
        .await
        .unwrap();
    assert_eq!(response.get_ref().status(), ServingStatus::Serving);
    assert_eq!(response.metadata().get("x-subtype"), Some("[json]"));
}
