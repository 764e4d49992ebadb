//! Rich error details on loopback: a ferrogrpc server fails calls with
//! `Status::with_error_details`, and a ferrogrpc client reads them back with
//! `Status::error_details` / `Status::error_detail`, through the real
//! transport (`grpc-status-details-bin`, base64 in a trailer), in a
//! Trailers-Only response and in trailers after messages.

use std::time::Duration as StdDuration;

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    errdetails::{
        bad_request::FieldViolation, Any, BadRequest, Detail, DetailsError, Duration, ErrorInfo,
        LocalizedMessage, RetryInfo,
    },
    server::{self, BoxFuture, ResponseSink, Server, ServerCall, Service},
    Code, Request, Status,
};
use http::uri::PathAndQuery;

/// Not ASCII, and with a `%`: `grpc-message` is percent-encoded on the wire
/// while the message inside the details is not, and the two must agree.
const MESSAGE: &str = "name zu kurz: 100% ungültig";

fn details() -> Vec<Detail> {
    vec![
        ErrorInfo {
            reason: "NAME_TOO_SHORT".into(),
            domain: "test.ferrogrpc".into(),
            metadata: [("minLength".to_string(), "3".to_string())].into(),
        }
        .into(),
        BadRequest {
            field_violations: vec![FieldViolation {
                field: "name".into(),
                description: "shorter than 3 characters".into(),
                reason: "TOO_SHORT".into(),
                localized_message: Some(LocalizedMessage {
                    locale: "de-DE".into(),
                    message: "zu kurz".into(),
                }),
            }],
        }
        .into(),
        RetryInfo {
            retry_delay: Some(Duration {
                seconds: 1,
                nanos: 500_000_000,
            }),
        }
        .into(),
        // A type the client does not know: passed through packed.
        Detail::Other(Any {
            type_url: "type.googleapis.com/test.Opaque".into(),
            value: b"\x0a\x06opaque".to_vec(),
        }),
    ]
}

fn rich_error() -> Status {
    Status::invalid_argument(MESSAGE).with_error_details(details())
}

struct Failing;

impl Service for Failing {
    fn name(&self) -> &'static str {
        "test.Failing"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        match method {
            // Fails at once: a Trailers-Only response.
            "Unary" => Box::pin(server::unary(
                call,
                BytesCodec,
                |_req: Request<Bytes>| async move { Err::<ferrogrpc::Response<Bytes>, _>(rich_error()) },
            )),
            // Sends one message, then fails: the details in trailers.
            "Stream" => Box::pin(server::server_streaming(
                call,
                BytesCodec,
                |_req: Request<Bytes>, mut sink: ResponseSink<Bytes>| async move {
                    sink.send(Bytes::from_static(b"first")).await?;
                    Err(rich_error())
                },
            )),
            // Details whose code (NOT_FOUND) is not the status's (ABORTED).
            "Mismatch" => Box::pin(server::unary(
                call,
                BytesCodec,
                |_req: Request<Bytes>| async move {
                    let blob = Status::not_found(MESSAGE)
                        .with_error_details(details())
                        .details()
                        .clone();
                    Err::<ferrogrpc::Response<Bytes>, _>(Status::with_details(
                        Code::Aborted,
                        MESSAGE,
                        blob,
                    ))
                },
            )),
            // A plain error: no details.
            "Plain" => Box::pin(server::unary(
                call,
                BytesCodec,
                |_req: Request<Bytes>| async move {
                    Err::<ferrogrpc::Response<Bytes>, _>(Status::internal("plain"))
                },
            )),
            _ => {
                let status = Status::unimplemented(method.to_string());
                Box::pin(async move { call.fail(status) })
            }
        }
    }
}

async fn start() -> (Server, Channel) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder().add_service(Failing).build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    (server, Channel::from_target(&addr.to_string()).unwrap())
}

fn req() -> Request<Bytes> {
    Request::new(Bytes::new()).with_timeout(StdDuration::from_secs(10))
}

async fn unary(channel: &Channel, method: &'static str) -> Status {
    channel
        .unary(PathAndQuery::from_static(method), req(), BytesCodec)
        .await
        .expect_err("the call fails")
}

/// What the client must read from [`rich_error`].
fn assert_rich(status: &Status) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), MESSAGE);
    assert!(
        !status.details().is_empty(),
        "no grpc-status-details-bin received"
    );
    assert_eq!(status.error_details(), Ok(details()));
    assert_eq!(
        status.error_detail::<ErrorInfo>().unwrap().reason,
        "NAME_TOO_SHORT"
    );
    assert_eq!(
        status
            .error_detail::<BadRequest>()
            .unwrap()
            .field_violations[0]
            .field,
        "name"
    );
    assert_eq!(
        status.error_detail::<RetryInfo>().unwrap().retry_delay,
        Some(Duration {
            seconds: 1,
            nanos: 500_000_000
        })
    );
}

#[tokio::test]
async fn unary_error_carries_the_details_trailers_only() {
    let (_server, channel) = start().await;
    let status = unary(&channel, "/test.Failing/Unary").await;
    assert_rich(&status);
    // grpc-status-details-bin is the status's, not metadata.
    assert!(status
        .metadata()
        .get_bin("grpc-status-details-bin")
        .is_none());
}

#[tokio::test]
async fn stream_error_after_a_message_carries_the_details() {
    let (_server, channel) = start().await;
    let mut stream = channel
        .server_streaming(
            PathAndQuery::from_static("/test.Failing/Stream"),
            req(),
            BytesCodec,
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stream.message().await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    let status = stream.message().await.expect_err("the stream fails");
    assert_rich(&status);
}

#[tokio::test]
async fn details_with_another_code_are_refused() {
    let (_server, channel) = start().await;
    let status = unary(&channel, "/test.Failing/Mismatch").await;
    // The status is grpc-status's; the details are there but not trusted.
    assert_eq!(status.code(), Code::Aborted);
    assert!(!status.details().is_empty());
    assert_eq!(
        status.error_details(),
        Err(DetailsError::CodeMismatch {
            status: Code::Aborted,
            details: Code::NotFound.as_i32(),
        })
    );
    assert_eq!(status.error_detail::<ErrorInfo>(), None);
}

#[tokio::test]
async fn an_error_without_details_reads_as_none() {
    let (_server, channel) = start().await;
    let status = unary(&channel, "/test.Failing/Plain").await;
    assert_eq!(status.code(), Code::Internal);
    assert!(status.details().is_empty());
    assert_eq!(status.error_details(), Ok(vec![]));
    assert_eq!(status.error_detail::<RetryInfo>(), None);
}
