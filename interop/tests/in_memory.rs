//! The interop test cases (grpc/grpc `doc/interop-test-descriptions.md`)
//! over an in-memory connection (`ferrogrpc::bufconn`) instead of TCP.
//!
//! The `interop_client` and `interop_server` binaries keep their cases and
//! service private, so this file has its own `grpc.testing.TestService`
//! (the features the cases below need) and runs a representative set of the
//! client cases with the same inputs and checks: empty and large unary, the
//! three streaming kinds, empty stream, both cancellations, a deadline,
//! metadata and status echo, special status message, unimplemented method
//! and service.

use std::time::Duration;

use ferrogrpc::{
    bufconn,
    client::Channel,
    metadata::MetadataMap,
    server::{ResponseSink, Server},
    Code, Request, Response, Status, Streaming,
};
use interop::{
    check_payload,
    pb::{
        test_service_client::TestServiceClient,
        test_service_server::{TestService, TestServiceServer},
        unimplemented_service_client::UnimplementedServiceClient,
        EchoStatus, Empty, PayloadType, ResponseParameters, SimpleRequest, SimpleResponse,
        StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest,
        StreamingOutputCallResponse,
    },
    zero_payload, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY,
};

const ECHO_INITIAL_VALUE: &str = "test_initial_metadata_value";
const ECHO_TRAILING_VALUE: &[u8] = &[0xab, 0xab, 0xab];
const SPECIAL_MESSAGE: &str =
    "\t\ntest with whitespace\r\nand Unicode BMP \u{263a} and non-BMP \u{1f608}\t\n";

// ----- the service -------------------------------------------------------------

struct Service;

/// The Echo Metadata feature: the initial key to headers, the trailing one
/// to trailers.
fn echo(md: &MetadataMap) -> (MetadataMap, MetadataMap) {
    let mut initial = MetadataMap::new();
    for v in md.get_all(ECHO_INITIAL_KEY) {
        initial.append(ECHO_INITIAL_KEY, v).unwrap();
    }
    let mut trailing = MetadataMap::new();
    for v in md.get_all_bin(ECHO_TRAILING_KEY) {
        trailing.append_bin(ECHO_TRAILING_KEY, v).unwrap();
    }
    (initial, trailing)
}

fn echo_status(status: Option<&EchoStatus>) -> Result<(), Status> {
    match status {
        Some(s) if s.code != 0 => Err(Status::new(Code::from_i32(s.code), s.message.clone())),
        _ => Ok(()),
    }
}

async fn respond(
    sink: &mut ResponseSink<StreamingOutputCallResponse>,
    req: &StreamingOutputCallRequest,
) -> Result<(), Status> {
    echo_status(req.response_status.as_ref())?;
    for p in &req.response_parameters {
        if p.interval_us > 0 {
            tokio::time::sleep(Duration::from_micros(p.interval_us as u64)).await;
        }
        sink.send(StreamingOutputCallResponse {
            payload: Some(zero_payload(p.size as usize)),
        })
        .await?;
    }
    Ok(())
}

impl TestService for Service {
    async fn empty_call(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let (initial, trailing) = echo(request.metadata());
        let req = request.into_inner();
        echo_status(req.response_status.as_ref())?;
        check_payload(
            req.payload.as_ref(),
            req.payload.as_ref().map_or(0, |p| p.body.len()),
            "request",
        )
        .map_err(Status::invalid_argument)?;
        Ok(Response::from_parts(
            initial,
            SimpleResponse {
                payload: Some(zero_payload(req.response_size as usize)),
                ..SimpleResponse::default()
            },
            trailing,
        ))
    }

    async fn cacheable_unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        self.unary_call(request).await
    }

    async fn streaming_output_call(
        &self,
        request: Request<StreamingOutputCallRequest>,
        mut responses: ResponseSink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        respond(&mut responses, request.get_ref()).await
    }

    async fn streaming_input_call(
        &self,
        request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let mut requests = request.into_inner();
        let mut total = 0;
        while let Some(req) = requests.message().await? {
            total += req.payload.map_or(0, |p| p.body.len()) as i32;
        }
        Ok(Response::new(StreamingInputCallResponse {
            aggregated_payload_size: total,
        }))
    }

    async fn full_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
        mut responses: ResponseSink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        let (initial, trailing) = echo(request.metadata());
        if !trailing.is_empty() {
            responses.set_trailer(trailing)?;
        }
        if !initial.is_empty() {
            responses.send_header(initial)?;
        }
        let mut requests = request.into_inner();
        while let Some(req) = requests.message().await? {
            respond(&mut responses, &req).await?;
        }
        Ok(())
    }

    async fn half_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
        mut responses: ResponseSink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        let mut requests = request.into_inner();
        let mut all = Vec::new();
        while let Some(req) = requests.message().await? {
            all.push(req);
        }
        for req in &all {
            respond(&mut responses, req).await?;
        }
        Ok(())
    }

    async fn unimplemented_call(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented(
            "not implemented, as the interop spec asks",
        ))
    }
}

// ----- the cases ---------------------------------------------------------------

fn output_request(response_sizes: &[usize], request_size: usize) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_type: PayloadType::Compressable as i32,
        response_parameters: response_sizes
            .iter()
            .map(|&size| ResponseParameters {
                size: size as i32,
                ..ResponseParameters::default()
            })
            .collect(),
        payload: Some(zero_payload(request_size)),
        ..StreamingOutputCallRequest::default()
    }
}

fn large_request() -> SimpleRequest {
    SimpleRequest {
        response_type: PayloadType::Compressable as i32,
        response_size: 314_159,
        payload: Some(zero_payload(271_828)),
        ..SimpleRequest::default()
    }
}

fn request<T>(message: T) -> Request<T> {
    Request::new(message).with_timeout(Duration::from_secs(20))
}

fn echo_request<T>(message: T) -> Request<T> {
    let mut req = request(message);
    req.metadata_mut()
        .insert(ECHO_INITIAL_KEY, ECHO_INITIAL_VALUE)
        .unwrap();
    req.metadata_mut()
        .insert_bin(ECHO_TRAILING_KEY, ECHO_TRAILING_VALUE)
        .unwrap();
    req
}

type Stub = TestServiceClient;

async fn empty_unary(stub: &Stub) {
    let Empty {} = stub
        .empty_call(request(Empty {}))
        .await
        .unwrap()
        .into_inner();
}

async fn large_unary(stub: &Stub) {
    let resp = stub.unary_call(request(large_request())).await.unwrap();
    check_payload(resp.get_ref().payload.as_ref(), 314_159, "response").unwrap();
}

async fn client_streaming(stub: &Stub) {
    let mut call = stub.streaming_input_call(request(())).await.unwrap();
    for size in [27_182, 8, 1_828, 45_904] {
        call.send(StreamingInputCallRequest {
            payload: Some(zero_payload(size)),
            ..StreamingInputCallRequest::default()
        })
        .await
        .unwrap();
    }
    let resp = call.close_and_recv().await.unwrap();
    assert_eq!(resp.get_ref().aggregated_payload_size, 74_922);
}

async fn server_streaming(stub: &Stub) {
    let sizes = [31_415, 9, 2_653, 58_979];
    let mut stream = stub
        .streaming_output_call(request(output_request(&sizes, 0)))
        .await
        .unwrap()
        .into_inner();
    for (i, &size) in sizes.iter().enumerate() {
        let msg = stream.message().await.unwrap().expect("a response");
        check_payload(msg.payload.as_ref(), size, &format!("response {i}")).unwrap();
    }
    assert!(stream.message().await.unwrap().is_none());
}

async fn ping_pong(stub: &Stub) {
    let steps = [(31_415, 27_182), (9, 8), (2_653, 1_828), (58_979, 45_904)];
    let (mut sink, mut stream) = stub.full_duplex_call(request(())).await.unwrap();
    for (response_size, request_size) in steps {
        sink.send(output_request(&[response_size], request_size))
            .await
            .unwrap();
        let msg = stream.message().await.unwrap().expect("a response");
        check_payload(msg.payload.as_ref(), response_size, "response").unwrap();
    }
    sink.close().unwrap();
    assert!(stream.message().await.unwrap().is_none());
}

async fn empty_stream(stub: &Stub) {
    let (mut sink, mut stream) = stub.full_duplex_call(request(())).await.unwrap();
    sink.close().unwrap();
    assert!(stream.message().await.unwrap().is_none());
}

async fn cancel_after_begin(stub: &Stub) {
    let mut call = stub.streaming_input_call(request(())).await.unwrap();
    call.cancel();
    assert_eq!(
        call.close_and_recv().await.unwrap_err().code(),
        Code::Cancelled
    );
}

async fn cancel_after_first_response(stub: &Stub) {
    let (mut sink, mut stream) = stub.full_duplex_call(request(())).await.unwrap();
    sink.send(output_request(&[31_415], 27_182)).await.unwrap();
    let msg = stream.message().await.unwrap().expect("a response");
    check_payload(msg.payload.as_ref(), 31_415, "first response").unwrap();
    sink.cancel();
    assert_eq!(stream.message().await.unwrap_err().code(), Code::Cancelled);
}

async fn timeout_on_sleeping_server(stub: &Stub) {
    let mut req = request(());
    req.set_timeout(Duration::from_millis(1));
    let status = match stub.full_duplex_call(req).await {
        Err(status) => status,
        Ok((mut sink, mut stream)) => {
            let _ = sink.send(output_request(&[], 27_182)).await;
            loop {
                match stream.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("the call ended OK past its deadline"),
                    Err(status) => break status,
                }
            }
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status}");
}

async fn custom_metadata(stub: &Stub) {
    let resp = stub
        .unary_call(echo_request(large_request()))
        .await
        .unwrap();
    assert_eq!(
        resp.metadata().get(ECHO_INITIAL_KEY),
        Some(ECHO_INITIAL_VALUE)
    );
    assert_eq!(
        resp.trailers().get_bin(ECHO_TRAILING_KEY).as_deref(),
        Some(ECHO_TRAILING_VALUE)
    );

    let (mut sink, mut stream) = stub.full_duplex_call(echo_request(())).await.unwrap();
    sink.send(output_request(&[314_159], 271_828))
        .await
        .unwrap();
    sink.close().unwrap();
    let headers = stream.headers().await.unwrap();
    assert_eq!(headers.get(ECHO_INITIAL_KEY), Some(ECHO_INITIAL_VALUE));
    let msg = stream.message().await.unwrap().expect("a response");
    check_payload(msg.payload.as_ref(), 314_159, "response").unwrap();
    assert!(stream.message().await.unwrap().is_none());
    let trailers = stream.trailers().expect("trailers");
    assert_eq!(
        trailers.get_bin(ECHO_TRAILING_KEY).as_deref(),
        Some(ECHO_TRAILING_VALUE)
    );
}

async fn echoed_status(stub: &Stub, message: &str) {
    let response_status = Some(EchoStatus {
        code: 2,
        message: message.to_string(),
    });
    let err = stub
        .unary_call(request(SimpleRequest {
            response_status: response_status.clone(),
            ..SimpleRequest::default()
        }))
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Unknown, message));

    let (mut sink, mut stream) = stub.full_duplex_call(request(())).await.unwrap();
    let _ = sink
        .send(StreamingOutputCallRequest {
            response_status,
            ..StreamingOutputCallRequest::default()
        })
        .await;
    let _ = sink.close();
    let err = stream.message().await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Unknown, message));
}

async fn unimplemented(stub: &Stub, channel: &Channel) {
    let err = stub
        .unimplemented_call(request(Empty {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    let other = UnimplementedServiceClient::new(channel.clone());
    let err = other
        .unimplemented_call(request(Empty {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_cases_over_an_in_memory_connection() {
    // A buffer smaller than most messages: writers wait on readers.
    let listener = bufconn::listen(16 << 10);
    let dialer = listener.dialer();
    let server = Server::builder()
        .add_service(TestServiceServer::new(Service))
        .build();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve_listener(listener).await });

    let channel = Channel::builder("passthrough:///bufnet")
        .dialer(dialer)
        .build()
        .unwrap();
    let stub = TestServiceClient::new(channel.clone());

    empty_unary(&stub).await;
    large_unary(&stub).await;
    client_streaming(&stub).await;
    server_streaming(&stub).await;
    ping_pong(&stub).await;
    empty_stream(&stub).await;
    cancel_after_begin(&stub).await;
    cancel_after_first_response(&stub).await;
    timeout_on_sleeping_server(&stub).await;
    custom_metadata(&stub).await;
    echoed_status(&stub, "test status message").await;
    echoed_status(&stub, SPECIAL_MESSAGE).await;
    unimplemented(&stub, &channel).await;

    // All of it on one in-memory connection.
    assert_eq!(server.connection_count(), 1);
    server.stop();
}
