//! The gRPC interop test server on ferrogrpc: `grpc.testing.TestService`
//! with the server features of grpc/grpc's `doc/interop-test-descriptions.md`.
//!
//! ```text
//! interop_server --port 50051 [--use_tls true --tls_cert_file F --tls_key_file F]
//! ```
//!
//! Features: EmptyCall, UnaryCall, CacheableUnaryCall, StreamingInputCall,
//! StreamingOutputCall, FullDuplexCall, HalfDuplexCall, CompressedResponse,
//! CompressedRequest, Echo Status, Echo Metadata (also on errors and on
//! streaming calls), and `ResponseParameters.interval_us`.
//! `UnimplementedCall` answers `UNIMPLEMENTED`, and
//! `grpc.testing.UnimplementedService` is not served, so calls to it get
//! `UNIMPLEMENTED` from the server itself.
//!
//! With `--use_tls true` it serves TLS (ALPN `h2`) with the given
//! certificate chain and key, both PEM files.
//!
//! It also serves `grpc.health.v1.Health` (Check, Watch, List), reporting
//! the server as a whole (`""`) and every service it serves SERVING, until a
//! stop turns them NOT_SERVING, and server reflection (`grpc.reflection.v1`
//! and `v1alpha`), which `run-reflection.sh` checks with grpcio's client.
//!
//! It listens on `[::]` and `0.0.0.0` (whichever the system allows, both if
//! the IPv6 socket is IPv6-only) and stops on SIGINT / SIGTERM.
//!
//! `GRPC_BINARY_LOG_FILTER` turns on binary logging (gRFC A16; the file is
//! `FERROGRPC_BINARY_LOG_FILE` or a new one in the temporary directory,
//! printed on stderr); the log is flushed when the server stops.

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ferrogrpc::{
    credentials::{tls::ServerTlsConfig, ServerCredentials},
    health::{self, ServingStatus},
    metadata::MetadataMap,
    server::{ResponseSink, Server, ServerBuilder, Service},
    Code, Request, Response, Status, Streaming,
};
use interop::{
    flags::{self, Kind, Spec},
    pb::{
        test_service_server::{TestService, TestServiceServer},
        BoolValue, EchoStatus, Empty, Payload, PayloadType, SimpleRequest, SimpleResponse,
        StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest,
        StreamingOutputCallResponse,
    },
    zero_payload, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY,
};
use tokio::net::TcpListener;

const FLAGS: &[Spec] = &[
    Spec {
        name: "port",
        kind: Kind::Value,
        default: "",
        help: "port to listen on (required; 0 picks a free one)",
    },
    Spec {
        name: "use_tls",
        kind: Kind::Bool,
        default: "false",
        help: "serve TLS (needs --tls_cert_file and --tls_key_file)",
    },
    Spec {
        name: "tls_cert_file",
        kind: Kind::Value,
        default: "",
        help: "PEM certificate chain for TLS",
    },
    Spec {
        name: "tls_key_file",
        kind: Kind::Value,
        default: "",
        help: "PEM private key for TLS",
    },
];

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

/// `grpc.testing.TestService` as the interop description specifies it.
struct InteropService;

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

// ----- main ------------------------------------------------------------------

/// Binds `[::]:port` and `0.0.0.0:port`. One of them may fail (no IPv6, or a
/// dual-stack IPv6 socket already covering IPv4); both failing is an error,
/// which names the address (`cannot listen on [::]:50051: address already in
/// use`). With port 0 the second socket uses the port the first one got.
async fn bind(port: u16) -> io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    let mut port = port;
    let mut first_error = None;
    for host in [Ipv6Addr::UNSPECIFIED.into(), Ipv4Addr::UNSPECIFIED.into()] {
        let addr = SocketAddr::new(host, port);
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                port = listener.local_addr()?.port();
                listeners.push(listener);
            }
            Err(err) => {
                let why = match err.kind() {
                    io::ErrorKind::AddrInUse => "address already in use".to_string(),
                    _ => err.to_string(),
                };
                first_error.get_or_insert(io::Error::new(
                    err.kind(),
                    format!("cannot listen on {addr}: {why}"),
                ));
            }
        }
    }
    match (listeners.is_empty(), first_error) {
        (true, Some(err)) => Err(err),
        _ => Ok(listeners),
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// while the server is still binding is not lost.
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

/// Adds `service` to `builder` and reports it SERVING in `health`, so that
/// every service served has a health status (the health service itself
/// excepted, as in gRPC-Go).
fn add_serving(
    builder: ServerBuilder,
    health: &health::Server,
    service: impl Service,
) -> ServerBuilder {
    health.set_serving_status(service.name(), ServingStatus::Serving);
    builder.add_service(service)
}

/// How connections are secured, from the TLS flags.
struct Security {
    credentials: ServerCredentials,
    what: &'static str,
}

async fn serve(port: u16, security: Security) -> io::Result<()> {
    let stop = stop_signal()?;
    let listeners = bind(port).await?;
    // "" (the server as a whole) starts SERVING; a graceful stop turns
    // every status NOT_SERVING.
    let health = health::Server::new();
    let builder = Server::builder()
        .credentials(security.credentials)
        .add_health(&health)
        .add_reflection();
    let builder = add_serving(builder, &health, TestServiceServer::new(InteropService));
    let server = builder.build();
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let addr = listener.local_addr()?;
        eprintln!("interop_server: listening on {addr} ({})", security.what);
        let server = server.clone();
        tasks.spawn(async move { server.serve_listener(listener).await });
    }
    tokio::select! {
        () = stop => {
            eprintln!("interop_server: stopping");
            // Calls under way get a moment to finish, then everything closes.
            let _ = tokio::time::timeout(Duration::from_secs(2), server.graceful_stop()).await;
            server.stop();
            // The binary log (GRPC_BINARY_LOG_FILTER) keeps nothing back.
            let _ = tokio::task::spawn_blocking(ferrogrpc::binarylog::flush).await;
            Ok(())
        }
        Some(result) = tasks.join_next() => match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err),
            Err(err) => Err(io::Error::other(err)),
        },
    }
}

fn main() -> ExitCode {
    let summary = "gRPC interop test server (grpc.testing.TestService) on ferrogrpc";
    let flags = match flags::parse(std::env::args().skip(1), FLAGS) {
        Ok(f) => f,
        Err(flags::Error::Help) => {
            print!("{}", flags::usage("interop_server", summary, FLAGS));
            return ExitCode::SUCCESS;
        }
        Err(flags::Error::Bad(msg)) => {
            eprintln!("interop_server: {msg}");
            eprint!("{}", flags::usage("interop_server", summary, FLAGS));
            return ExitCode::from(2);
        }
    };
    let port: u16 = match (flags.get("port"), flags.parse("port", 0u16)) {
        (Some(_), Ok(port)) => port,
        (None, _) => {
            eprintln!("interop_server: --port is required");
            return ExitCode::from(2);
        }
        (_, Err(err)) => {
            eprintln!("interop_server: {err}");
            return ExitCode::from(2);
        }
    };
    let security = if flags.bool("use_tls") {
        let cert = flags.string("tls_cert_file", "");
        let key = flags.string("tls_key_file", "");
        if cert.is_empty() || key.is_empty() {
            eprintln!("interop_server: --use_tls true needs --tls_cert_file and --tls_key_file");
            return ExitCode::from(2);
        }
        // The files are read (and checked) when serving starts; a bad file
        // ends the server with an error saying which.
        Security {
            credentials: ServerCredentials::tls(ServerTlsConfig::from_pem_files(cert, key)),
            what: "tls",
        }
    } else {
        Security {
            credentials: ServerCredentials::insecure(),
            what: "plaintext",
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("interop_server: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(port, security)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("interop_server: {err}");
            ExitCode::FAILURE
        }
    }
}
