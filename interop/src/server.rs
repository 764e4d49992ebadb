//! The server side of the interop tests: `grpc.testing.TestService` with
//! the server features of grpc/grpc's `doc/interop-test-descriptions.md`,
//! served by the `interop_server` binary and by tests over an in-memory
//! connection.
//!
//! Features: EmptyCall, UnaryCall, CacheableUnaryCall, StreamingInputCall,
//! StreamingOutputCall, FullDuplexCall, HalfDuplexCall, CompressedResponse,
//! CompressedRequest, Echo Status, Echo Metadata (also on errors and on
//! streaming calls), and `ResponseParameters.interval_us`.
//! `UnimplementedCall` answers `UNIMPLEMENTED`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrogrpc::{
    metadata::MetadataMap, server::ResponseSink, Code, Request, Response, Status, Streaming,
};

use crate::{
    pb::{
        test_service_server::TestService, BoolValue, EchoStatus, Empty, Payload, PayloadType,
        SimpleRequest, SimpleResponse, StreamingInputCallRequest, StreamingInputCallResponse,
        StreamingOutputCallRequest, StreamingOutputCallResponse,
    },
    zero_payload, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY,
};

// ----- compression ----------------------------------------------------------

/// The algorithm this server compresses responses with when a request asks
/// for compressed responses. ferrogrpc only uses it when the client listed
/// it in `grpc-accept-encoding`; otherwise responses go uncompressed, as
/// `doc/compression.md` requires.
const RESPONSE_COMPRESSION: &str = "gzip";

/// The CompressedRequest feature: when the client sets `expect_compressed`,
/// a request message that did not arrive compressed fails the call with
/// `INVALID_ARGUMENT`. `compressed` is the message's compressed flag as
/// ferrogrpc received it ([`Request::message_compressed`],
/// [`Streaming::last_message_compressed`]).
fn check_expect_compressed(expect: Option<&BoolValue>, compressed: bool) -> Result<(), Status> {
    if is_true(expect) && !compressed {
        return Err(Status::invalid_argument(
            "expect_compressed is true but the request message arrived uncompressed",
        ));
    }
    Ok(())
}

/// Whether a `BoolValue` wrapper is set and true.
fn is_true(value: Option<&BoolValue>) -> bool {
    value.is_some_and(|b| b.value)
}

// ----- shared parts of the handlers ----------------------------------------

/// The Echo Metadata feature: what the request asked to be echoed.
struct Echo {
    /// Values of `x-grpc-test-echo-initial`, for the response headers.
    initial: MetadataMap,
    /// Values of `x-grpc-test-echo-trailing-bin`, for the trailers.
    trailing: MetadataMap,
}

impl Echo {
    fn from_request(metadata: &MetadataMap) -> Result<Echo, Status> {
        let mut initial = MetadataMap::new();
        for value in metadata.get_all(ECHO_INITIAL_KEY) {
            initial.append(ECHO_INITIAL_KEY, value)?;
        }
        let mut trailing = MetadataMap::new();
        for value in metadata.get_all_bin(ECHO_TRAILING_KEY) {
            trailing.append_bin(ECHO_TRAILING_KEY, value)?;
        }
        Ok(Echo { initial, trailing })
    }

    /// A successful unary-shaped response carrying the echoed metadata.
    fn response<T>(self, message: T) -> Response<T> {
        Response::from_parts(self.initial, message, self.trailing)
    }

    /// A unary-shaped failure carrying the echoed metadata.
    ///
    /// ferrogrpc answers a failed unary or client-streaming handler with
    /// Trailers-Only (one HEADERS frame holding the status) and has no way
    /// to send response headers first, so both echoed keys travel in that
    /// frame. A client sees them as trailing metadata there; that is the
    /// closest this library allows (gRPC-Go would send a separate headers
    /// frame when header metadata was set).
    fn error(self, status: Status) -> Status {
        let mut metadata = self.initial;
        let merged = metadata
            .extend(self.trailing)
            .and_then(|()| metadata.extend(status.metadata().clone()));
        match merged {
            Ok(()) => status.with_metadata(metadata),
            Err(err) => Status::internal(format!("echoed metadata: {err}")),
        }
    }

    /// Starts a streaming response: sends the echoed headers now (if any
    /// were asked for) and registers the echoed trailers, which ferrogrpc
    /// sends with whatever status the call ends with.
    ///
    /// The call's response encoding is set to [`RESPONSE_COMPRESSION`] up
    /// front, because it travels in the headers, which may have to go out
    /// before the first request of a bidi call is read. Messages are then
    /// compressed one by one, only when their `ResponseParameters` ask
    /// (flag 0 is allowed on any message of a compressed call).
    fn start_stream<T: 'static>(self, sink: &mut ResponseSink<T>) -> Result<(), Status> {
        sink.set_compression(RESPONSE_COMPRESSION)?;
        sink.set_message_compression(false);
        if !self.trailing.is_empty() {
            sink.set_trailer(self.trailing)?;
        }
        if !self.initial.is_empty() {
            sink.send_header(self.initial)?;
        }
        Ok(())
    }
}

/// Runs the unary-shaped body `f`, attaching the echoed metadata to its
/// response or its error.
fn with_echo<T>(
    metadata: &MetadataMap,
    f: impl FnOnce() -> Result<Response<T>, Status>,
) -> Result<Response<T>, Status> {
    let echo = Echo::from_request(metadata)?;
    match f() {
        Ok(mut response) => {
            response.metadata_mut().extend(echo.initial)?;
            response.trailers_mut().extend(echo.trailing)?;
            Ok(response)
        }
        Err(status) => Err(echo.error(status)),
    }
}

/// The Echo Status feature: a non-OK `response_status` ends the call with
/// that code and message.
fn echo_status(status: Option<&EchoStatus>) -> Result<(), Status> {
    match status {
        Some(s) if s.code != 0 => Err(Status::new(Code::from_i32(s.code), s.message.clone())),
        _ => Ok(()),
    }
}

/// A payload of `size` zeros for `response_type`; `INVALID_ARGUMENT` for a
/// type this server does not know or a negative size.
fn payload(response_type: i32, size: i32) -> Result<Payload, Status> {
    if PayloadType::try_from(response_type) != Ok(PayloadType::Compressable) {
        return Err(Status::invalid_argument(format!(
            "unsupported response_type {response_type}"
        )));
    }
    let size = usize::try_from(size)
        .map_err(|_| Status::invalid_argument(format!("negative response size {size}")))?;
    Ok(zero_payload(size))
}

/// Sends one response per `ResponseParameters` of `request`, in order,
/// sleeping `interval_us` before each one.
async fn send_responses(
    sink: &mut ResponseSink<StreamingOutputCallResponse>,
    request: &StreamingOutputCallRequest,
) -> Result<(), Status> {
    for params in &request.response_parameters {
        if params.interval_us > 0 {
            let micros = u64::try_from(params.interval_us).unwrap_or(0);
            tokio::time::sleep(Duration::from_micros(micros)).await;
        }
        let payload = payload(request.response_type, params.size)?;
        // CompressedResponse, per message: the call may compress (see
        // start_stream); each message is compressed only when asked.
        sink.set_message_compression(is_true(params.compressed.as_ref()));
        sink.send(StreamingOutputCallResponse {
            payload: Some(payload),
        })
        .await?;
    }
    Ok(())
}

// ----- the service -----------------------------------------------------------

/// `grpc.testing.TestService` as the interop description specifies it;
/// serve it with `TestServiceServer::new(InteropService)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct InteropService;

impl TestService for InteropService {
    async fn empty_call(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        with_echo(request.metadata(), || Ok(Response::new(Empty {})))
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        with_echo(request.metadata(), || {
            let req = request.get_ref();
            check_expect_compressed(req.expect_compressed.as_ref(), request.message_compressed())?;
            echo_status(req.response_status.as_ref())?;
            let mut response = Response::new(SimpleResponse {
                payload: Some(payload(req.response_type, req.response_size)?),
                ..SimpleResponse::default()
            });
            // CompressedResponse: "identity" overrides any server default.
            if is_true(req.response_compressed.as_ref()) {
                response.set_compression(RESPONSE_COMPRESSION);
            } else {
                response.set_compression("identity");
            }
            Ok(response)
        })
    }

    async fn cacheable_unary_call(
        &self,
        _request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        // The request is ignored; the payload is the time in nanoseconds, so
        // that only a cache can answer twice with the same body.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mut response = Response::new(SimpleResponse {
            payload: Some(Payload {
                r#type: PayloadType::Compressable as i32,
                body: nanos.to_string().into_bytes(),
            }),
            ..SimpleResponse::default()
        });
        response
            .metadata_mut()
            .insert("cache-control", "max-age=60, public")?;
        Ok(response)
    }

    async fn streaming_output_call(
        &self,
        request: Request<StreamingOutputCallRequest>,
        mut responses: ResponseSink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        Echo::from_request(request.metadata())?.start_stream(&mut responses)?;
        let req = request.into_inner();
        echo_status(req.response_status.as_ref())?;
        send_responses(&mut responses, &req).await
    }

    async fn streaming_input_call(
        &self,
        request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let echo = Echo::from_request(request.metadata())?;
        let mut requests = request.into_inner();
        let mut total: usize = 0;
        let result = async {
            while let Some(req) = requests.message().await? {
                let compressed = requests.last_message_compressed();
                check_expect_compressed(req.expect_compressed.as_ref(), compressed)?;
                total += req.payload.map_or(0, |p| p.body.len());
            }
            i32::try_from(total).map_err(|_| {
                Status::out_of_range(format!("aggregated size {total} overflows int32"))
            })
        }
        .await;
        match result {
            Ok(aggregated_payload_size) => Ok(echo.response(StreamingInputCallResponse {
                aggregated_payload_size,
            })),
            Err(status) => Err(echo.error(status)),
        }
    }

    async fn full_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
        mut responses: ResponseSink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        // Headers go out at once (a client may wait for them before
        // sending); see start_stream for how compression fits that.
        Echo::from_request(request.metadata())?.start_stream(&mut responses)?;
        let mut requests = request.into_inner();
        while let Some(req) = requests.message().await? {
            echo_status(req.response_status.as_ref())?;
            send_responses(&mut responses, &req).await?;
        }
        Ok(())
    }

    async fn half_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
        mut responses: ResponseSink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        Echo::from_request(request.metadata())?.start_stream(&mut responses)?;
        let mut requests = request.into_inner();
        let mut buffered = Vec::new();
        while let Some(req) = requests.message().await? {
            buffered.push(req);
        }
        for req in &buffered {
            echo_status(req.response_status.as_ref())?;
            send_responses(&mut responses, req).await?;
        }
        Ok(())
    }

    async fn unimplemented_call(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented(
            "grpc.testing.TestService/UnimplementedCall is deliberately not implemented",
        ))
    }
}
