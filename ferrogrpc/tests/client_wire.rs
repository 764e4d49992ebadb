//! The client against a raw HTTP/2 server (the h2 crate) that answers with
//! exact, often broken, responses: checks the status the client reports.

use std::time::Duration;

use bytes::Bytes;
use ferrogrpc::{client::Channel, codec::BytesCodec, Code, Request, Status};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

/// How the raw server answers every request.
#[derive(Clone)]
enum Answer {
    /// HTTP status and headers, body, optional trailers.
    Full {
        status: u16,
        headers: Vec<(&'static str, &'static [u8])>,
        body: Vec<u8>,
        trailers: Option<Vec<(&'static str, &'static [u8])>>,
    },
    /// RST_STREAM with this code, after reading the request.
    Reset(h2::Reason),
    /// GOAWAY for the whole connection.
    GoAway(h2::Reason),
}

fn header_map(pairs: &[(&'static str, &'static [u8])]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(*k, HeaderValue::from_bytes(v).unwrap());
    }
    map
}

async fn raw_server(answer: Answer) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(tcp).await.unwrap();
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let mut body = req.into_body();
                    while let Some(Ok(c)) = body.data().await {
                        let _ = body.flow_control().release_capacity(c.len());
                    }
                    match &answer {
                        Answer::Full {
                            status,
                            headers,
                            body,
                            trailers,
                        } => {
                            let mut resp = Response::new(());
                            *resp.status_mut() = StatusCode::from_u16(*status).unwrap();
                            *resp.headers_mut() = header_map(headers);
                            let eos = body.is_empty() && trailers.is_none();
                            let mut send = respond.send_response(resp, eos).unwrap();
                            if !body.is_empty() {
                                send.send_data(Bytes::from(body.clone()), trailers.is_none())
                                    .unwrap();
                            }
                            if let Some(t) = trailers {
                                send.send_trailers(header_map(t)).unwrap();
                            }
                        }
                        Answer::Reset(reason) => respond.send_reset(*reason),
                        Answer::GoAway(reason) => {
                            conn.abrupt_shutdown(*reason);
                            let _ = std::future::poll_fn(|cx| conn.poll_closed(cx)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn call(addr: std::net::SocketAddr) -> Result<Bytes, Status> {
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let req = Request::new(Bytes::from_static(b"ping")).with_timeout(Duration::from_secs(10));
    ch.unary(
        http::uri::PathAndQuery::from_static("/t.S/M"),
        req,
        BytesCodec,
    )
    .await
    .map(|r| r.into_inner())
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

const GRPC: (&str, &[u8]) = ("content-type", b"application/grpc");

fn full(
    status: u16,
    headers: Vec<(&'static str, &'static [u8])>,
    body: Vec<u8>,
    trailers: Option<Vec<(&'static str, &'static [u8])>>,
) -> Answer {
    Answer::Full {
        status,
        headers,
        body,
        trailers,
    }
}

#[tokio::test]
async fn well_formed_reply() {
    let addr = raw_server(full(
        200,
        vec![GRPC],
        frame(b"pong"),
        Some(vec![("grpc-status", b"0")]),
    ))
    .await;
    assert_eq!(call(addr).await.unwrap(), "pong");
}

#[tokio::test]
async fn http_statuses_without_grpc_status() {
    for (http, code) in [
        (400, Code::Internal),
        (401, Code::Unauthenticated),
        (403, Code::PermissionDenied),
        (404, Code::Unimplemented),
        (429, Code::Unavailable),
        (502, Code::Unavailable),
        (503, Code::Unavailable),
        (504, Code::Unavailable),
        (500, Code::Unknown),
    ] {
        let addr = raw_server(full(
            http,
            vec![("content-type", b"text/html")],
            b"<html>".to_vec(),
            None,
        ))
        .await;
        let err = call(addr).await.unwrap_err();
        assert_eq!(err.code(), code, "HTTP {http}: {err}");
        assert!(err.message().contains(&http.to_string()), "{err}");
    }
}

#[tokio::test]
async fn grpc_status_wins_over_http_status() {
    let addr = raw_server(full(
        503,
        vec![
            GRPC,
            ("grpc-status", b"5"),
            ("grpc-message", b"gone%20away"),
        ],
        vec![],
        None,
    ))
    .await;
    let err = call(addr).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "gone away");
}

#[tokio::test]
async fn trailers_only_error_with_lenient_message() {
    let addr = raw_server(full(
        200,
        vec![GRPC, ("grpc-status", b"3"), ("grpc-message", b"bad%zz%41%")],
        vec![],
        None,
    ))
    .await;
    let err = call(addr).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "bad%zzA%");
}

#[tokio::test]
async fn rst_stream_codes() {
    for (reason, code) in [
        (h2::Reason::REFUSED_STREAM, Code::Unavailable),
        (h2::Reason::CANCEL, Code::Cancelled),
        (h2::Reason::ENHANCE_YOUR_CALM, Code::ResourceExhausted),
        (h2::Reason::INADEQUATE_SECURITY, Code::PermissionDenied),
        (h2::Reason::INTERNAL_ERROR, Code::Internal),
        (h2::Reason::PROTOCOL_ERROR, Code::Internal),
    ] {
        let addr = raw_server(Answer::Reset(reason)).await;
        let err = call(addr).await.unwrap_err();
        assert_eq!(err.code(), code, "{reason:?}: {err}");
        assert!(err.message().contains("reset"), "{err}");
    }
}

#[tokio::test]
async fn goaway_is_unavailable_with_its_code() {
    let addr = raw_server(Answer::GoAway(h2::Reason::INTERNAL_ERROR)).await;
    let err = call(addr).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    // The message names the GOAWAY and its code, not just a closed socket.
    assert!(err.message().contains("GOAWAY INTERNAL_ERROR"), "{err}");
}

#[tokio::test]
async fn missing_trailers_is_internal() {
    let addr = raw_server(full(200, vec![GRPC], frame(b"pong"), None)).await;
    let err = call(addr).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().contains("trailers"), "{err}");
}

#[tokio::test]
async fn malformed_grpc_status_is_internal() {
    let addr = raw_server(full(
        200,
        vec![GRPC],
        frame(b"pong"),
        Some(vec![("grpc-status", b"zero")]),
    ))
    .await;
    let err = call(addr).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().contains("grpc-status"), "{err}");
}

#[tokio::test]
async fn message_cut_off_is_internal() {
    let mut body = frame(b"pong pong");
    body.truncate(7);
    let addr = raw_server(full(
        200,
        vec![GRPC],
        body,
        Some(vec![("grpc-status", b"0")]),
    ))
    .await;
    let err = call(addr).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().contains("got 2 of 9"), "{err}");
}

#[tokio::test]
async fn zero_or_two_messages_for_unary_is_internal() {
    let addr = raw_server(full(
        200,
        vec![GRPC],
        vec![],
        Some(vec![("grpc-status", b"0")]),
    ))
    .await;
    assert_eq!(call(addr).await.unwrap_err().code(), Code::Internal);
    let mut two = frame(b"a");
    two.extend(frame(b"b"));
    let addr = raw_server(full(
        200,
        vec![GRPC],
        two,
        Some(vec![("grpc-status", b"0")]),
    ))
    .await;
    let err = call(addr).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().contains("more than one"), "{err}");
}

#[tokio::test]
async fn non_grpc_content_type_with_200_is_internal() {
    let addr = raw_server(full(
        200,
        vec![("content-type", b"text/plain")],
        b"hello".to_vec(),
        None,
    ))
    .await;
    let err = call(addr).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().contains("text/plain"), "{err}");
}

#[tokio::test]
async fn non_ascii_response_metadata_is_internal() {
    let addr = raw_server(full(
        200,
        vec![GRPC, ("x-bad", b"\xff\xfe")],
        frame(b"pong"),
        Some(vec![("grpc-status", b"0")]),
    ))
    .await;
    let err = call(addr).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().contains("x-bad"), "{err}");
}

#[tokio::test]
async fn status_details_are_decoded_padded_or_not() {
    for details in [&b"CAUSAXg"[..], b"CAUSAXg="] {
        let trailers: Vec<(&'static str, &'static [u8])> = vec![
            ("grpc-status", b"5"),
            (
                "grpc-status-details-bin",
                Box::leak(details.to_vec().into_boxed_slice()),
            ),
        ];
        let addr = raw_server(full(200, vec![GRPC], vec![], Some(trailers))).await;
        let err = call(addr).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(&err.details()[..], b"\x08\x05\x12\x01x");
    }
}

#[tokio::test]
async fn server_that_never_answers_hits_the_deadline() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::handshake(tcp).await.unwrap();
        let mut held = Vec::new();
        while let Some(Ok(stream)) = conn.accept().await {
            held.push(stream);
        }
    });
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let req = Request::new(Bytes::from_static(b"x")).with_timeout(Duration::from_millis(100));
    let err = ch
        .unary(
            http::uri::PathAndQuery::from_static("/t.S/M"),
            req,
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
}

#[tokio::test]
async fn a_tls_only_server_is_named_as_not_speaking_http2() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Answers whatever comes with a TLS alert record, as a TLS server does
    // to a plaintext HTTP/2 client, then closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp
                    .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32])
                    .await;
            });
        }
    });
    let err = call(addr).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(
        err.message().contains("did not answer with HTTP/2"),
        "{err}"
    );
}
