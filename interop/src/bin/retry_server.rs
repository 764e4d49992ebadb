//! A `grpc.testing.TestService` whose calls fail until they have been retried
//! enough: the server side of the gRFC A6 retry checks (`interop/run-retry.sh`).
//!
//! ```text
//! retry_server --port 0
//! ```
//!
//! It listens on `127.0.0.1` only. After binding it prints
//! `listening on 127.0.0.1:PORT` on stdout (so `--port 0` works), and it
//! stops gracefully on SIGINT / SIGTERM.
//!
//! Every method reads two request metadata keys:
//!
//! - `x-retry-fail: N` (default 0): the call fails with `UNAVAILABLE` while
//!   `grpc-previous-rpc-attempts` (sent by a retrying client; default 0) is
//!   below `N`. So a call with `x-retry-fail: 2` succeeds on its third
//!   attempt.
//! - `x-retry-pushback-ms: MS`: those failures carry server pushback
//!   (`grpc-retry-pushback-ms`): retry after `MS` milliseconds, or, when `MS`
//!   is negative, do not retry at all.
//!
//! A failure's message is `attempt K failed on purpose (x-retry-fail N)`,
//! `K` counting from 1, so a client can tell which attempt it got last.
//!
//! A call that gets through answers as the interop server would (a
//! `SimpleResponse` with a `response_size` payload of zeros, one streamed
//! response per `ResponseParameters`, the aggregated size of a client
//! stream) and carries response header metadata
//! `x-attempts-seen: <grpc-previous-rpc-attempts>`, so the client can check
//! how many attempts it made. Failures are sent before any response header,
//! so a client sees them as Trailers-Only and may retry even a streaming call.
//!
//! One line per attempt goes to stderr. `HalfDuplexCall` and
//! `UnimplementedCall` answer `UNIMPLEMENTED`.

use std::{io, io::Write as _, process::ExitCode, time::Duration};

use ferrogrpc::{
    metadata::MetadataMap,
    server::{ResponseSink, Server},
    Request, Response, Status, Streaming,
};
use interop::{
    flags::{self, Kind, Spec},
    pb::{
        test_service_server::{TestService, TestServiceServer},
        Empty, Payload, PayloadType, SimpleRequest, SimpleResponse, StreamingInputCallRequest,
        StreamingInputCallResponse, StreamingOutputCallRequest, StreamingOutputCallResponse,
    },
    zero_payload,
};
use tokio::net::TcpListener;

/// How many attempts of a call must fail.
const FAIL_KEY: &str = "x-retry-fail";
/// The pushback those failures carry, in milliseconds; negative: no retry.
const PUSHBACK_KEY: &str = "x-retry-pushback-ms";
/// Set by a retrying client on every attempt after the first.
const PREVIOUS_ATTEMPTS_KEY: &str = "grpc-previous-rpc-attempts";
/// Response header metadata: the `grpc-previous-rpc-attempts` the successful
/// attempt carried.
const ATTEMPTS_SEEN_KEY: &str = "x-attempts-seen";

const FLAGS: &[Spec] = &[Spec {
    name: "port",
    kind: Kind::Value,
    default: "0",
    help: "port to listen on at 127.0.0.1 (0 picks a free one)",
}];

/// A non-negative integer from request metadata, `0` when absent.
fn metadata_count(metadata: &MetadataMap, key: &str) -> Result<u64, Status> {
    match metadata.get(key) {
        None => Ok(0),
        Some(text) => text.trim().parse().map_err(|_| {
            Status::invalid_argument(format!("{key}: {text:?} is not a non-negative integer"))
        }),
    }
}

/// Decides an attempt: `Ok(previous attempts)` to answer it, or the
/// `UNAVAILABLE` (or `INVALID_ARGUMENT`, for bad metadata) it fails with.
fn gate(method: &str, metadata: &MetadataMap) -> Result<u64, Status> {
    let result = gate_inner(metadata);
    let previous = metadata.get(PREVIOUS_ATTEMPTS_KEY).unwrap_or("-");
    let fail = metadata.get(FAIL_KEY).unwrap_or("-");
    let pushback = metadata.get(PUSHBACK_KEY).unwrap_or("-");
    let outcome = match &result {
        Ok(_) => "answered".to_string(),
        Err(status) => format!(
            "{} (pushback {:?})",
            status.code().name(),
            status.retry_pushback()
        ),
    };
    eprintln!(
        "retry_server: {method}: previous attempts {previous}, {FAIL_KEY} {fail}, \
         {PUSHBACK_KEY} {pushback}: {outcome}"
    );
    result
}

fn gate_inner(metadata: &MetadataMap) -> Result<u64, Status> {
    let previous = metadata_count(metadata, PREVIOUS_ATTEMPTS_KEY)?;
    let fail = metadata_count(metadata, FAIL_KEY)?;
    if previous >= fail {
        return Ok(previous);
    }
    // Clients read the attempt number back from this text.
    let mut status = Status::unavailable(format!(
        "attempt {} failed on purpose ({FAIL_KEY} {fail})",
        previous + 1
    ));
    if let Some(text) = metadata.get(PUSHBACK_KEY) {
        let ms: i64 = text.trim().parse().map_err(|_| {
            Status::invalid_argument(format!("{PUSHBACK_KEY}: {text:?} is not an integer"))
        })?;
        status = match u64::try_from(ms) {
            Ok(ms) => status.with_retry_pushback(Duration::from_millis(ms)),
            Err(_) => status.without_retry(),
        };
    }
    Err(status)
}

/// The response header metadata of an answered attempt.
fn attempts_seen(previous: u64) -> Result<MetadataMap, Status> {
    let mut metadata = MetadataMap::new();
    metadata.insert(ATTEMPTS_SEEN_KEY, &previous.to_string())?;
    Ok(metadata)
}

/// A `COMPRESSABLE` payload of `size` zeros; `INVALID_ARGUMENT` otherwise.
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

/// A unary-shaped answer with the `x-attempts-seen` header.
fn answer<T>(previous: u64, message: T) -> Result<Response<T>, Status> {
    Ok(Response::from_parts(
        attempts_seen(previous)?,
        message,
        MetadataMap::new(),
    ))
}

/// Sends one response per `ResponseParameters` of `request`.
async fn send_responses(
    sink: &mut ResponseSink<StreamingOutputCallResponse>,
    request: &StreamingOutputCallRequest,
) -> Result<(), Status> {
    for params in &request.response_parameters {
        if params.interval_us > 0 {
            let micros = u64::try_from(params.interval_us).unwrap_or(0);
            tokio::time::sleep(Duration::from_micros(micros)).await;
        }
        sink.send(StreamingOutputCallResponse {
            payload: Some(payload(request.response_type, params.size)?),
        })
        .await?;
    }
    Ok(())
}

/// `grpc.testing.TestService`, failing the first `x-retry-fail` attempts.
struct RetryService;

/// The answer to UnaryCall and CacheableUnaryCall.
fn simple_response(previous: u64, req: &SimpleRequest) -> Result<Response<SimpleResponse>, Status> {
    answer(
        previous,
        SimpleResponse {
            payload: Some(payload(req.response_type, req.response_size)?),
            ..SimpleResponse::default()
        },
    )
}

impl TestService for RetryService {
    async fn empty_call(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        let previous = gate("EmptyCall", request.metadata())?;
        answer(previous, Empty {})
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let previous = gate("UnaryCall", request.metadata())?;
        simple_response(previous, request.get_ref())
    }

    async fn cacheable_unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let previous = gate("CacheableUnaryCall", request.metadata())?;
        simple_response(previous, request.get_ref())
    }

    async fn streaming_output_call(
        &self,
        request: Request<StreamingOutputCallRequest>,
        mut responses: ResponseSink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        let previous = gate("StreamingOutputCall", request.metadata())?;
        responses.send_header(attempts_seen(previous)?)?;
        send_responses(&mut responses, request.get_ref()).await
    }

    async fn streaming_input_call(
        &self,
        request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        // Decided before reading: a failed attempt leaves its requests unread.
        let previous = gate("StreamingInputCall", request.metadata())?;
        let mut requests = request.into_inner();
        let mut total: usize = 0;
        while let Some(req) = requests.message().await? {
            total += req.payload.map_or(0, |p| p.body.len());
        }
        let aggregated_payload_size = i32::try_from(total).map_err(|_| {
            Status::out_of_range(format!("aggregated size {total} overflows int32"))
        })?;
        answer(
            previous,
            StreamingInputCallResponse {
                aggregated_payload_size,
            },
        )
    }

    async fn full_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
        mut responses: ResponseSink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        let previous = gate("FullDuplexCall", request.metadata())?;
        responses.send_header(attempts_seen(previous)?)?;
        let mut requests = request.into_inner();
        while let Some(req) = requests.message().await? {
            send_responses(&mut responses, &req).await?;
        }
        Ok(())
    }

    async fn half_duplex_call(
        &self,
        _request: Request<Streaming<StreamingOutputCallRequest>>,
        _responses: ResponseSink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        Err(Status::unimplemented(
            "retry_server does not serve HalfDuplexCall",
        ))
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

/// Resolves on SIGINT or SIGTERM. The handlers are installed at once, so a
/// signal that arrives while binding is not lost.
fn stop_signal() -> io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

async fn serve(port: u16) -> io::Result<()> {
    let stop = stop_signal()?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let addr = listener.local_addr()?;
    let server = Server::builder()
        .add_service(TestServiceServer::new(RetryService))
        .build();
    let serving = {
        let server = server.clone();
        tokio::spawn(async move { server.serve_listener(listener).await })
    };
    // The socket is bound (and listening) already: a client may connect as
    // soon as it reads this line.
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()?;
    drop(stdout);
    tokio::select! {
        () = stop => {
            eprintln!("retry_server: stopping");
            server.graceful_stop_timeout(Duration::from_secs(2)).await;
            Ok(())
        }
        result = serving => match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err),
            Err(err) => Err(io::Error::other(err)),
        },
    }
}

fn main() -> ExitCode {
    let summary = "grpc.testing.TestService that fails the first x-retry-fail attempts of \
                   each call (gRFC A6 retry checks)";
    let flags = match flags::parse(std::env::args().skip(1), FLAGS) {
        Ok(f) => f,
        Err(flags::Error::Help) => {
            print!("{}", flags::usage("retry_server", summary, FLAGS));
            return ExitCode::SUCCESS;
        }
        Err(flags::Error::Bad(msg)) => {
            eprintln!("retry_server: {msg}");
            eprint!("{}", flags::usage("retry_server", summary, FLAGS));
            return ExitCode::from(2);
        }
    };
    let port: u16 = match flags.parse("port", 0u16) {
        Ok(port) => port,
        Err(err) => {
            eprintln!("retry_server: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("retry_server: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(port)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("retry_server: {err}");
            ExitCode::FAILURE
        }
    }
}
