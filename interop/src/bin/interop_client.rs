//! The gRPC interop test client on ferrogrpc: runs the test cases of
//! grpc/grpc's `doc/interop-test-descriptions.md` against a server of
//! `grpc.testing.TestService`.
//!
//! ```text
//! interop_client --server_host 127.0.0.1 --server_port 50051 --test_case all
//! ```
//!
//! `--test_case` takes one case, a comma-separated list, or `all`.
//!
//! Output contract (stdout; diagnostics go to stderr): exactly one line per
//! case, in the order run —
//!
//! ```text
//! CASE PASS
//! CASE PASS <note>
//! CASE FAIL <reason on one line>
//! CASE SKIP <reason>      (part of the contract; no case skips today)
//! ```
//!
//! Exit status: 1 if any case failed, 2 on bad flags, 0 otherwise. Every
//! RPC has a deadline and every case a time limit, so a case never hangs.
//!
//! TLS: `--use_tls true` verifies the server against the platform roots, or
//! against `--ca_file` (which `--use_test_ca true` requires: the test CA is
//! not built in); `--server_host_override` is then also the name checked in
//! the server's certificate.
//!
//! `--service_config_json` is the channel's default service config
//! ([`ChannelBuilder::default_service_config`](ferrogrpc::client::ChannelBuilder::default_service_config)),
//! e.g. a `retryPolicy` for `grpc.testing.TestService`; JSON that is not a
//! valid service config is a bad flag (exit status 2).

use std::{
    fmt,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use ferrogrpc::{
    client::{Channel, RequestSink},
    credentials::{tls::ClientTlsConfig, ChannelCredentials},
    metadata::MetadataMap,
    serviceconfig::ServiceConfig,
    Code, Request, Status, Streaming,
};
use interop::{
    check_payload,
    flags::{self, Kind, Spec},
    pb::{
        test_service_client::TestServiceClient,
        unimplemented_service_client::UnimplementedServiceClient, BoolValue, EchoStatus, Empty,
        PayloadType, ResponseParameters, SimpleRequest, StreamingInputCallRequest,
        StreamingOutputCallRequest, StreamingOutputCallResponse,
    },
    zero_payload, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY,
};

/// Every case, in the order `--test_case all` runs them.
const ALL_CASES: &[&str] = &[
    "empty_unary",
    "large_unary",
    "client_compressed_unary",
    "server_compressed_unary",
    "client_streaming",
    "client_compressed_streaming",
    "server_streaming",
    "server_compressed_streaming",
    "ping_pong",
    "empty_stream",
    "cancel_after_begin",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
    "custom_metadata",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
    "rpc_soak",
    "channel_soak",
    "concurrent_large_unary",
];

const FLAGS: &[Spec] = &[
    Spec {
        name: "server_host",
        kind: Kind::Value,
        default: "localhost",
        help: "server host name or address",
    },
    Spec {
        name: "server_port",
        kind: Kind::Value,
        default: "",
        help: "server port (required)",
    },
    Spec {
        name: "server_host_override",
        kind: Kind::Value,
        default: "",
        help: "host claimed in :authority (and, with TLS, checked in the certificate)",
    },
    Spec {
        name: "test_case",
        kind: Kind::Value,
        default: "all",
        help: "a case name, a comma-separated list, or all",
    },
    Spec {
        name: "use_tls",
        kind: Kind::Bool,
        default: "false",
        help: "connect with TLS",
    },
    Spec {
        name: "use_test_ca",
        kind: Kind::Bool,
        default: "false",
        help: "trust the test CA (given by --ca_file) instead of the system roots",
    },
    Spec {
        name: "ca_file",
        kind: Kind::Value,
        default: "",
        help: "PEM file of the CA to trust (TLS only)",
    },
    Spec {
        name: "service_config_json",
        kind: Kind::Value,
        default: "",
        help: "the channel's default service config, as JSON (e.g. a retryPolicy)",
    },
    Spec {
        name: "additional_metadata",
        kind: Kind::Value,
        default: "",
        help: "metadata for every RPC: key:value;key2:value2 (-bin values sent as their bytes)",
    },
    Spec {
        name: "soak_iterations",
        kind: Kind::Value,
        default: "10",
        help: "RPCs in rpc_soak and channel_soak",
    },
    Spec {
        name: "soak_max_failures",
        kind: Kind::Value,
        default: "0",
        help: "failed soak iterations tolerated",
    },
    Spec {
        name: "soak_per_iteration_max_acceptable_latency_ms",
        kind: Kind::Value,
        default: "1000",
        help: "a slower soak iteration counts as failed",
    },
    Spec {
        name: "soak_overall_timeout_seconds",
        kind: Kind::Value,
        default: "10",
        help: "a soak test stops and fails when its iterations take longer",
    },
    Spec {
        name: "soak_min_time_ms_between_rpcs",
        kind: Kind::Value,
        default: "0",
        help: "minimum time between the starts of two soak RPCs",
    },
    Spec {
        name: "soak_request_size",
        kind: Kind::Value,
        default: "271828",
        help: "request payload size of a soak RPC",
    },
    Spec {
        name: "soak_response_size",
        kind: Kind::Value,
        default: "314159",
        help: "response payload size of a soak RPC",
    },
    Spec {
        name: "rpc_timeout_seconds",
        kind: Kind::Value,
        default: "10",
        help: "deadline of each RPC (this client's knob)",
    },
    Spec {
        name: "case_timeout_seconds",
        kind: Kind::Value,
        default: "60",
        help: "time limit of one case, soak and concurrent cases get more (this client's knob)",
    },
    Spec {
        name: "concurrent_calls",
        kind: Kind::Value,
        default: "1000",
        help: "calls in concurrent_large_unary (this client's knob)",
    },
    Spec {
        name: "concurrent_timeout_seconds",
        kind: Kind::Value,
        default: "60",
        help: "deadline of each concurrent_large_unary call (this client's knob)",
    },
    Spec {
        name: "default_service_account",
        kind: Kind::Value,
        default: "",
        help: "accepted for compatibility; no auth case is implemented",
    },
    Spec {
        name: "oauth_scope",
        kind: Kind::Value,
        default: "",
        help: "accepted for compatibility; no auth case is implemented",
    },
    Spec {
        name: "service_account_key_file",
        kind: Kind::Value,
        default: "",
        help: "accepted for compatibility; no auth case is implemented",
    },
];

const LARGE_REQUEST: usize = 271_828;
const LARGE_RESPONSE: usize = 314_159;
const ECHO_INITIAL_VALUE: &str = "test_initial_metadata_value";
const ECHO_TRAILING_VALUE: &[u8] = &[0xab, 0xab, 0xab];
const SPECIAL_MESSAGE: &str =
    "\t\ntest with whitespace\r\nand Unicode BMP \u{263a} and non-BMP \u{1f608}\t\n";

// ----- configuration ---------------------------------------------------------

/// Settings of the soak cases.
#[derive(Debug, Clone)]
struct SoakConfig {
    iterations: u32,
    max_failures: u32,
    max_latency: Duration,
    overall_timeout: Duration,
    min_time_between: Duration,
    request_size: usize,
    response_size: usize,
}

/// Everything the flags decide.
#[derive(Debug)]
struct Config {
    target: String,
    authority: Option<String>,
    /// `Some` with `--use_tls true`.
    tls: Option<ClientTlsConfig>,
    cases: Vec<&'static str>,
    metadata: MetadataMap,
    /// `--service_config_json`, already checked to parse.
    service_config: Option<String>,
    rpc_timeout: Duration,
    case_timeout: Duration,
    concurrent_calls: usize,
    concurrent_timeout: Duration,
    soak: SoakConfig,
}

/// Parses `k1:v1;k2:v2`. Keys are lowercased; a `-bin` key's value is sent as
/// the bytes of its text.
fn parse_additional_metadata(text: &str) -> Result<MetadataMap, String> {
    let mut map = MetadataMap::new();
    for item in text.split(';').filter(|s| !s.is_empty()) {
        let (key, value) = item
            .split_once(':')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| format!("--additional_metadata: bad entry {item:?} (want key:value)"))?;
        let key = key.trim().to_ascii_lowercase();
        let added = if key.ends_with("-bin") {
            map.append_bin(&key, value.as_bytes())
        } else {
            map.append(&key, value)
        };
        added.map_err(|e| format!("--additional_metadata: {item:?}: {e}"))?;
    }
    Ok(map)
}

fn parse_cases(text: &str) -> Result<Vec<&'static str>, String> {
    if text.trim() == "all" {
        return Ok(ALL_CASES.to_vec());
    }
    let mut cases = Vec::new();
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match ALL_CASES.iter().find(|c| **c == name) {
            Some(case) => cases.push(*case),
            None => {
                return Err(format!(
                    "--test_case: unknown case {name:?} (known: all, {})",
                    ALL_CASES.join(", ")
                ))
            }
        }
    }
    if cases.is_empty() {
        return Err("--test_case: no case given".into());
    }
    Ok(cases)
}

fn seconds(flags: &flags::Flags, name: &str, default: f64) -> Result<Duration, flags::Error> {
    let s: f64 = flags.parse(name, default)?;
    Duration::try_from_secs_f64(s)
        .map_err(|_| flags::Error::Bad(format!("--{name}: not a duration in seconds: {s}")))
}

fn config(flags: &flags::Flags) -> Result<Config, flags::Error> {
    let bad = flags::Error::Bad;
    let host = flags.string("server_host", "localhost");
    let port: u16 = match flags.get("server_port") {
        Some(_) => flags.parse("server_port", 0)?,
        None => return Err(bad("--server_port is required".into())),
    };
    let target = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let authority = flags
        .get("server_host_override")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let tls = if flags.bool("use_tls") {
        let mut tls = ClientTlsConfig::new();
        match flags.get("ca_file").filter(|s| !s.is_empty()) {
            Some(file) => tls = tls.ca_certificate_file(file),
            None if flags.bool("use_test_ca") => {
                return Err(bad(
                    "--use_test_ca true needs --ca_file PATH (the test CA is not built in)".into(),
                ))
            }
            None => {}
        }
        if let Some(name) = &authority {
            tls = tls.server_name(name.clone());
        }
        Some(tls)
    } else {
        None
    };
    let cases = parse_cases(&flags.string("test_case", "all")).map_err(bad)?;
    let metadata =
        parse_additional_metadata(&flags.string("additional_metadata", "")).map_err(bad)?;
    // Checked here so that a bad config is reported as such, not as a
    // channel that cannot be built.
    let service_config = flags
        .get("service_config_json")
        .filter(|s| !s.trim().is_empty())
        .map(|json| {
            ServiceConfig::parse(json)
                .map(|_| json.to_string())
                .map_err(|e| {
                    bad(format!(
                        "--service_config_json: invalid service config: {e}"
                    ))
                })
        })
        .transpose()?;
    let size = |name: &str, default: usize| -> Result<usize, flags::Error> {
        let n: usize = flags.parse(name, default)?;
        if i32::try_from(n).is_err() {
            return Err(flags::Error::Bad(format!("--{name}: {n} is too large")));
        }
        Ok(n)
    };
    let soak = SoakConfig {
        iterations: flags.parse("soak_iterations", 10)?,
        max_failures: flags.parse("soak_max_failures", 0)?,
        max_latency: Duration::from_millis(
            flags.parse("soak_per_iteration_max_acceptable_latency_ms", 1000)?,
        ),
        overall_timeout: Duration::from_secs(flags.parse("soak_overall_timeout_seconds", 10)?),
        min_time_between: Duration::from_millis(flags.parse("soak_min_time_ms_between_rpcs", 0)?),
        request_size: size("soak_request_size", LARGE_REQUEST)?,
        response_size: size("soak_response_size", LARGE_RESPONSE)?,
    };
    let config = Config {
        target,
        authority,
        tls,
        cases,
        metadata,
        service_config,
        rpc_timeout: seconds(flags, "rpc_timeout_seconds", 10.0)?,
        case_timeout: seconds(flags, "case_timeout_seconds", 60.0)?,
        concurrent_calls: flags.parse("concurrent_calls", 1000)?,
        concurrent_timeout: seconds(flags, "concurrent_timeout_seconds", 60.0)?,
        soak,
    };
    // Catch a bad host or override now rather than in every case.
    new_channel(&config).map_err(bad)?;
    Ok(config)
}

/// A new channel (and, at its first call, a new connection) to the server.
fn new_channel(config: &Config) -> Result<Channel, String> {
    let mut builder = Channel::builder(config.target.clone()).max_decoding_message_size(16 << 20);
    if let Some(authority) = &config.authority {
        builder = builder.authority(authority.clone());
    }
    if let Some(tls) = &config.tls {
        builder = builder.credentials(ChannelCredentials::tls(tls.clone()));
    }
    if let Some(json) = &config.service_config {
        builder = builder.default_service_config(json);
    }
    builder.build().map_err(|e| e.to_string())
}

// ----- case results ------------------------------------------------------------

/// Why a case failed (one line of text once whitespace is collapsed).
#[derive(Debug)]
struct CaseError(String);

/// `Ok(note)` is a pass, with an optional note.
type CaseResult = Result<Option<String>, CaseError>;

fn fail<T>(reason: impl Into<String>) -> Result<T, CaseError> {
    Err(CaseError(reason.into()))
}

/// A status as `CODE "message"`.
fn describe(status: &Status) -> String {
    format!("{} {:?}", status.code().name(), status.message())
}

/// Adds what was being done to an error.
trait Context<T> {
    fn what(self, what: impl fmt::Display) -> Result<T, CaseError>;
}

impl<T> Context<T> for Result<T, Status> {
    fn what(self, what: impl fmt::Display) -> Result<T, CaseError> {
        self.map_err(|s| CaseError(format!("{what}: {}", describe(&s))))
    }
}

impl<T> Context<T> for Result<T, String> {
    fn what(self, what: impl fmt::Display) -> Result<T, CaseError> {
        self.map_err(|s| CaseError(format!("{what}: {s}")))
    }
}

/// The call must have failed with `code`; returns its status.
fn expect_code<T>(result: Result<T, Status>, code: Code, what: &str) -> Result<Status, CaseError> {
    match result {
        Ok(_) => fail(format!("{what}: succeeded, want {}", code.name())),
        Err(status) if status.code() == code => Ok(status),
        Err(status) => fail(format!(
            "{what}: got {}, want {}",
            describe(&status),
            code.name()
        )),
    }
}

// ----- compression ---------------------------------------------------------------

/// The algorithm the compression cases compress requests with.
const REQUEST_COMPRESSION: &str = "gzip";

/// `request` with its messages compressed (`gzip` true) or explicitly not
/// (`"identity"`, whatever the channel's default).
fn with_request_compression<T>(request: Request<T>, gzip: bool) -> Request<T> {
    request.with_compression(if gzip {
        REQUEST_COMPRESSION
    } else {
        "identity"
    })
}

/// Checks a received message's compressed flag.
fn check_compressed_flag(got: bool, want: bool, what: &str) -> Result<(), CaseError> {
    if got != want {
        return fail(format!(
            "{what}: compressed flag is {}, want {}",
            u8::from(got),
            u8::from(want)
        ));
    }
    Ok(())
}

/// Interprets the result of a client_compressed_* feature probe: `true` when
/// the server rejected it with `INVALID_ARGUMENT` (it checks request
/// compression), `false` when it accepted it; any other error fails.
fn probe_rejected<T>(result: Result<T, Status>, what: &str) -> Result<bool, CaseError> {
    match result {
        Ok(_) => Ok(false),
        Err(status) if status.code() == Code::InvalidArgument => Ok(true),
        Err(status) => fail(format!(
            "{what}: got {}, want INVALID_ARGUMENT",
            describe(&status)
        )),
    }
}

/// The failure for a server that accepted the feature probe.
fn probe_accepted(what: &str) -> Result<Option<String>, CaseError> {
    fail(format!(
        "{what}: succeeded, want INVALID_ARGUMENT (the server does not check request \
         compression); the calls that followed the probe passed"
    ))
}

// ----- the cases -----------------------------------------------------------------

/// Runs cases against one server.
#[derive(Clone)]
struct Interop {
    config: Arc<Config>,
    stub: TestServiceClient,
}

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
        payload: (request_size > 0).then(|| zero_payload(request_size)),
        ..StreamingOutputCallRequest::default()
    }
}

fn simple_request(request_size: usize, response_size: usize) -> SimpleRequest {
    SimpleRequest {
        response_type: PayloadType::Compressable as i32,
        response_size: response_size as i32,
        payload: Some(zero_payload(request_size)),
        ..SimpleRequest::default()
    }
}

fn large_request() -> SimpleRequest {
    simple_request(LARGE_REQUEST, LARGE_RESPONSE)
}

fn input_request(size: usize, expect_compressed: Option<bool>) -> StreamingInputCallRequest {
    StreamingInputCallRequest {
        payload: Some(zero_payload(size)),
        expect_compressed: expect_compressed.map(|value| BoolValue { value }),
    }
}

/// Checks that `responses` are exactly one per size, with those payloads.
fn check_stream(
    responses: &[StreamingOutputCallResponse],
    sizes: &[usize],
) -> Result<(), CaseError> {
    if responses.len() != sizes.len() {
        return fail(format!(
            "got {} responses, want {}",
            responses.len(),
            sizes.len()
        ));
    }
    for (i, (response, &size)) in responses.iter().zip(sizes).enumerate() {
        check_payload(response.payload.as_ref(), size, &format!("response {i}"))
            .map_err(CaseError)?;
    }
    Ok(())
}

/// Reads a stream to its end: the messages, and the call's status (`Ok` for
/// `OK`).
async fn drain<T>(stream: &mut Streaming<T>) -> (Vec<T>, Result<(), Status>) {
    let mut messages = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => return (messages, Ok(())),
            Err(status) => return (messages, Err(status)),
        }
    }
}

/// Reads a stream to its end, which must be `OK`.
async fn read_all<T>(stream: &mut Streaming<T>, what: &str) -> Result<Vec<T>, CaseError> {
    let (messages, status) = drain(stream).await;
    status.what(format!("{what} (after {} responses)", messages.len()))?;
    Ok(messages)
}

/// Sends on a bidi call; when the send fails because the call ended, the
/// failure names the call's status.
async fn send_bidi<Req: 'static, Resp>(
    sink: &mut RequestSink<Req>,
    stream: &mut Streaming<Resp>,
    message: Req,
    what: &str,
) -> Result<(), CaseError> {
    if let Err(err) = sink.send(message).await {
        let status = match stream.message().await {
            Err(status) => status,
            Ok(_) => err,
        };
        return fail(format!("{what}: {}", describe(&status)));
    }
    Ok(())
}

/// The values the echo keys have in `metadata`.
fn echoed(metadata: &MetadataMap) -> (Vec<String>, Vec<Vec<u8>>) {
    (
        metadata
            .get_all(ECHO_INITIAL_KEY)
            .map(str::to_string)
            .collect(),
        metadata.get_all_bin(ECHO_TRAILING_KEY).collect(),
    )
}

fn check_echoed(initial: &[String], trailing: &[Vec<u8>], what: &str) -> Result<(), CaseError> {
    if initial != [ECHO_INITIAL_VALUE] {
        return fail(format!(
            "{what}: initial metadata {ECHO_INITIAL_KEY} = {initial:?}, want [{ECHO_INITIAL_VALUE:?}]"
        ));
    }
    if trailing != [ECHO_TRAILING_VALUE] {
        return fail(format!(
            "{what}: trailing metadata {ECHO_TRAILING_KEY} = {trailing:x?}, want [{ECHO_TRAILING_VALUE:x?}]"
        ));
    }
    Ok(())
}

impl Interop {
    fn new(config: Config) -> Result<Interop, String> {
        let channel = new_channel(&config)?;
        Ok(Interop {
            config: Arc::new(config),
            stub: TestServiceClient::new(channel),
        })
    }

    /// A request with the RPC deadline and `--additional_metadata`.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message).with_timeout(self.config.rpc_timeout);
        *request.metadata_mut() = self.config.metadata.clone();
        request
    }

    /// A request that also carries the two Echo Metadata keys.
    fn echo_request<T>(&self, message: T) -> Result<Request<T>, CaseError> {
        let mut request = self.request(message);
        let md = request.metadata_mut();
        md.insert(ECHO_INITIAL_KEY, ECHO_INITIAL_VALUE)
            .map_err(|e| CaseError(e.to_string()))?;
        md.insert_bin(ECHO_TRAILING_KEY, ECHO_TRAILING_VALUE)
            .map_err(|e| CaseError(e.to_string()))?;
        Ok(request)
    }

    /// Runs one case under its time limit.
    async fn run(&self, name: &str) -> CaseResult {
        let limit = match name {
            "rpc_soak" | "channel_soak" => self
                .config
                .case_timeout
                .max(self.config.soak.overall_timeout + Duration::from_secs(30)),
            "concurrent_large_unary" => self
                .config
                .case_timeout
                .max(self.config.concurrent_timeout + Duration::from_secs(30)),
            _ => self.config.case_timeout,
        };
        match tokio::time::timeout(limit, self.dispatch(name)).await {
            Ok(result) => result,
            Err(_) => fail(format!("case did not finish within {limit:?}")),
        }
    }

    async fn dispatch(&self, name: &str) -> CaseResult {
        match name {
            "empty_unary" => self.empty_unary().await,
            "large_unary" => self.large_unary().await,
            "client_compressed_unary" => self.client_compressed_unary().await,
            "server_compressed_unary" => self.server_compressed_unary().await,
            "client_streaming" => self.client_streaming().await,
            "client_compressed_streaming" => self.client_compressed_streaming().await,
            "server_streaming" => self.server_streaming().await,
            "server_compressed_streaming" => self.server_compressed_streaming().await,
            "ping_pong" => self.ping_pong().await,
            "empty_stream" => self.empty_stream().await,
            "cancel_after_begin" => self.cancel_after_begin().await,
            "cancel_after_first_response" => self.cancel_after_first_response().await,
            "timeout_on_sleeping_server" => self.timeout_on_sleeping_server().await,
            "custom_metadata" => self.custom_metadata().await,
            "status_code_and_message" => self.status_code_and_message().await,
            "special_status_message" => self.special_status_message().await,
            "unimplemented_method" => self.unimplemented_method().await,
            "unimplemented_service" => self.unimplemented_service().await,
            "rpc_soak" => self.soak(false).await,
            "channel_soak" => self.soak(true).await,
            "concurrent_large_unary" => self.concurrent_large_unary().await,
            other => fail(format!("unknown test case {other:?}")),
        }
    }

    async fn empty_unary(&self) -> CaseResult {
        let response = self
            .stub
            .empty_call(self.request(Empty {}))
            .await
            .what("EmptyCall")?;
        // The response type is grpc.testing.Empty by construction; that it
        // decoded at all means the server sent a well-formed (empty) message.
        let Empty {} = response.into_inner();
        Ok(None)
    }

    async fn large_unary(&self) -> CaseResult {
        let response = self
            .stub
            .unary_call(self.request(large_request()))
            .await
            .what("UnaryCall")?;
        check_payload(
            response.get_ref().payload.as_ref(),
            LARGE_RESPONSE,
            "response",
        )
        .map_err(CaseError)?;
        Ok(None)
    }

    async fn client_compressed_unary(&self) -> CaseResult {
        let with_expect = |expect: bool| SimpleRequest {
            expect_compressed: Some(BoolValue { value: expect }),
            ..large_request()
        };
        // 1. Feature probe: an uncompressed request that says it is
        //    compressed must be rejected with INVALID_ARGUMENT.
        let what_probe = "probe (uncompressed, expect_compressed=true)";
        let probe = with_request_compression(self.request(with_expect(true)), false);
        let rejected = probe_rejected(self.stub.unary_call(probe).await, what_probe)?;
        // 2. Compressed, 3. uncompressed; the server checks the first one
        //    arrived compressed.
        for (gzip, expect) in [(true, true), (false, false)] {
            let what = format!(
                "UnaryCall ({}, expect_compressed={expect})",
                if gzip { "compressed" } else { "uncompressed" }
            );
            let request = with_request_compression(self.request(with_expect(expect)), gzip);
            let response = self.stub.unary_call(request).await.what(&what)?;
            check_payload(response.get_ref().payload.as_ref(), LARGE_RESPONSE, &what)
                .map_err(CaseError)?;
        }
        if !rejected {
            return probe_accepted(what_probe);
        }
        Ok(None)
    }

    async fn server_compressed_unary(&self) -> CaseResult {
        for want in [true, false] {
            let what = format!("UnaryCall (response_compressed={want})");
            let request = SimpleRequest {
                response_compressed: Some(BoolValue { value: want }),
                ..large_request()
            };
            let response = self
                .stub
                .unary_call(self.request(request))
                .await
                .what(&what)?;
            check_compressed_flag(response.message_compressed(), want, &what)?;
            check_payload(response.get_ref().payload.as_ref(), LARGE_RESPONSE, &what)
                .map_err(CaseError)?;
        }
        Ok(None)
    }

    async fn client_streaming(&self) -> CaseResult {
        let mut call = self
            .stub
            .streaming_input_call(self.request(()))
            .await
            .what("starting StreamingInputCall")?;
        for size in [27_182, 8, 1_828, 45_904] {
            call.send(input_request(size, None))
                .await
                .what(format!("sending the {size}-byte request"))?;
        }
        let response = call.close_and_recv().await.what("StreamingInputCall")?;
        let got = response.get_ref().aggregated_payload_size;
        if got != 74_922 {
            return fail(format!("aggregated_payload_size {got}, want 74922"));
        }
        Ok(None)
    }

    async fn client_compressed_streaming(&self) -> CaseResult {
        // 1. Feature probe: one uncompressed message that says it is
        //    compressed must make the call fail with INVALID_ARGUMENT.
        let what_probe = "probe (uncompressed message, expect_compressed=true)";
        let mut call = self
            .stub
            .streaming_input_call(with_request_compression(self.request(()), false))
            .await
            .what("starting the probe call")?;
        // The server may end the call as soon as it sees the message, so a
        // failed send is not an error here: the status below decides.
        let _ = call.send(input_request(27_182, Some(true))).await;
        let rejected = probe_rejected(call.close_and_recv().await, what_probe)?;
        // 2. On a compressed call, a compressed message, then one sent
        //    uncompressed (per-message control); the server checks the
        //    first one arrived compressed.
        let mut call = self
            .stub
            .streaming_input_call(with_request_compression(self.request(()), true))
            .await
            .what("starting StreamingInputCall")?;
        for (gzip, size) in [(true, 27_182), (false, 45_904)] {
            call.set_message_compression(gzip);
            call.send(input_request(size, Some(gzip)))
                .await
                .what(format!("sending the {size}-byte message"))?;
        }
        let response = call.close_and_recv().await.what("StreamingInputCall")?;
        let got = response.get_ref().aggregated_payload_size;
        if got != 73_086 {
            return fail(format!("aggregated_payload_size {got}, want 73086"));
        }
        if !rejected {
            return probe_accepted(what_probe);
        }
        Ok(None)
    }

    async fn server_streaming(&self) -> CaseResult {
        let sizes = [31_415, 9, 2_653, 58_979];
        let response = self
            .stub
            .streaming_output_call(self.request(output_request(&sizes, 0)))
            .await
            .what("StreamingOutputCall")?;
        let mut stream = response.into_inner();
        let responses = read_all(&mut stream, "StreamingOutputCall").await?;
        check_stream(&responses, &sizes)?;
        Ok(None)
    }

    async fn server_compressed_streaming(&self) -> CaseResult {
        let params = [(true, 31_415), (false, 92_653)];
        let request = StreamingOutputCallRequest {
            response_type: PayloadType::Compressable as i32,
            response_parameters: params
                .iter()
                .map(|&(compressed, size)| ResponseParameters {
                    size,
                    compressed: Some(BoolValue { value: compressed }),
                    ..ResponseParameters::default()
                })
                .collect(),
            ..StreamingOutputCallRequest::default()
        };
        let response = self
            .stub
            .streaming_output_call(self.request(request))
            .await
            .what("StreamingOutputCall")?;
        let mut stream = response.into_inner();
        let mut responses = Vec::new();
        while let Some(message) = stream.message().await.what("StreamingOutputCall")? {
            if let Some(&(want, _)) = params.get(responses.len()) {
                let what = format!("response {}", responses.len());
                check_compressed_flag(stream.last_message_compressed(), want, &what)?;
            }
            responses.push(message);
        }
        let sizes: Vec<usize> = params.iter().map(|&(_, size)| size as usize).collect();
        check_stream(&responses, &sizes)?;
        Ok(None)
    }

    async fn ping_pong(&self) -> CaseResult {
        let steps = [(31_415, 27_182), (9, 8), (2_653, 1_828), (58_979, 45_904)];
        let (mut sink, mut stream) = self
            .stub
            .full_duplex_call(self.request(()))
            .await
            .what("starting FullDuplexCall")?;
        for (i, &(response_size, request_size)) in steps.iter().enumerate() {
            let what = format!("request {i}");
            send_bidi(
                &mut sink,
                &mut stream,
                output_request(&[response_size], request_size),
                &what,
            )
            .await?;
            let what = format!("response {i}");
            let Some(response) = stream.message().await.what(&what)? else {
                return fail(format!("stream ended after {i} responses, want 4"));
            };
            check_payload(response.payload.as_ref(), response_size, &what).map_err(CaseError)?;
        }
        sink.close().what("half-close")?;
        let extra = read_all(&mut stream, "after half-close").await?;
        if !extra.is_empty() {
            return fail(format!(
                "{} unexpected responses after the 4th",
                extra.len()
            ));
        }
        Ok(None)
    }

    async fn empty_stream(&self) -> CaseResult {
        let (mut sink, mut stream) = self
            .stub
            .full_duplex_call(self.request(()))
            .await
            .what("starting FullDuplexCall")?;
        sink.close().what("half-close")?;
        let responses = read_all(&mut stream, "FullDuplexCall").await?;
        if !responses.is_empty() {
            return fail(format!("got {} responses, want 0", responses.len()));
        }
        Ok(None)
    }

    async fn cancel_after_begin(&self) -> CaseResult {
        let mut call = self
            .stub
            .streaming_input_call(self.request(()))
            .await
            .what("starting StreamingInputCall")?;
        call.cancel();
        expect_code(
            call.close_and_recv().await,
            Code::Cancelled,
            "StreamingInputCall after cancel",
        )?;
        Ok(None)
    }

    async fn cancel_after_first_response(&self) -> CaseResult {
        let (mut sink, mut stream) = self
            .stub
            .full_duplex_call(self.request(()))
            .await
            .what("starting FullDuplexCall")?;
        send_bidi(
            &mut sink,
            &mut stream,
            output_request(&[31_415], 27_182),
            "request",
        )
        .await?;
        let Some(response) = stream.message().await.what("first response")? else {
            return fail("stream ended before the first response");
        };
        check_payload(response.payload.as_ref(), 31_415, "first response").map_err(CaseError)?;
        sink.cancel();
        expect_code(
            stream.message().await,
            Code::Cancelled,
            "FullDuplexCall after cancel",
        )?;
        Ok(None)
    }

    async fn timeout_on_sleeping_server(&self) -> CaseResult {
        let mut request = self.request(());
        request.set_timeout(Duration::from_millis(1));
        let what = "FullDuplexCall with a 1 ms deadline";
        let (mut sink, mut stream) = match self.stub.full_duplex_call(request).await {
            Ok(call) => call,
            // The deadline may pass before the call is even under way.
            Err(status) => {
                expect_code::<()>(Err(status), Code::DeadlineExceeded, what)?;
                return Ok(None);
            }
        };
        // The send may already fail on the deadline; the call's status,
        // read below, is what the case checks.
        let _ = sink.send(output_request(&[], 27_182)).await;
        let (_, status) = drain(&mut stream).await;
        expect_code(status, Code::DeadlineExceeded, what)?;
        Ok(None)
    }

    async fn custom_metadata(&self) -> CaseResult {
        // 1. UnaryCall.
        let response = self
            .stub
            .unary_call(self.echo_request(large_request())?)
            .await
            .what("UnaryCall")?;
        check_payload(
            response.get_ref().payload.as_ref(),
            LARGE_RESPONSE,
            "UnaryCall",
        )
        .map_err(CaseError)?;
        let (initial, _) = echoed(response.metadata());
        let (_, trailing) = echoed(response.trailers());
        check_echoed(&initial, &trailing, "UnaryCall")?;

        // 2. FullDuplexCall.
        let what = "FullDuplexCall";
        let (mut sink, mut stream) = self
            .stub
            .full_duplex_call(self.echo_request(())?)
            .await
            .what("starting FullDuplexCall")?;
        send_bidi(
            &mut sink,
            &mut stream,
            output_request(&[LARGE_RESPONSE], LARGE_REQUEST),
            what,
        )
        .await?;
        sink.close().what("half-close")?;
        let (initial, _) = echoed(stream.headers().await.what("FullDuplexCall headers")?);
        let responses = read_all(&mut stream, what).await?;
        check_stream(&responses, &[LARGE_RESPONSE])?;
        let Some(trailers) = stream.trailers() else {
            return fail("FullDuplexCall: no trailers after the end of the stream");
        };
        let (_, trailing) = echoed(trailers);
        check_echoed(&initial, &trailing, what)?;
        Ok(None)
    }

    /// Echo Status on UnaryCall and, when `full_duplex`, on FullDuplexCall.
    async fn echo_status(&self, message: &str, full_duplex: bool) -> CaseResult {
        let code = Code::Unknown; // numeric 2, as the spec asks
        let response_status = Some(EchoStatus {
            code: code.as_i32(),
            message: message.to_string(),
        });
        let check = |status: Status, what: &str| -> Result<(), CaseError> {
            if status.message() != message {
                return fail(format!(
                    "{what}: status message {:?}, want {message:?}",
                    status.message()
                ));
            }
            Ok(())
        };

        let request = SimpleRequest {
            response_status: response_status.clone(),
            ..SimpleRequest::default()
        };
        let status = expect_code(
            self.stub.unary_call(self.request(request)).await,
            code,
            "UnaryCall",
        )?;
        check(status, "UnaryCall")?;
        if !full_duplex {
            return Ok(None);
        }

        let what = "FullDuplexCall";
        let (mut sink, mut stream) = self
            .stub
            .full_duplex_call(self.request(()))
            .await
            .what("starting FullDuplexCall")?;
        let request = StreamingOutputCallRequest {
            response_status,
            ..StreamingOutputCallRequest::default()
        };
        // The server ends the call on this message; a send racing with that
        // end is fine, the status decides.
        let _ = sink.send(request).await;
        let _ = sink.close();
        let (responses, status) = drain(&mut stream).await;
        if !responses.is_empty() {
            return fail(format!("{what}: got {} responses, want 0", responses.len()));
        }
        let status = expect_code(status, code, what)?;
        check(status, what)?;
        Ok(None)
    }

    async fn status_code_and_message(&self) -> CaseResult {
        self.echo_status("test status message", true).await
    }

    async fn special_status_message(&self) -> CaseResult {
        self.echo_status(SPECIAL_MESSAGE, false).await
    }

    async fn unimplemented_method(&self) -> CaseResult {
        expect_code(
            self.stub.unimplemented_call(self.request(Empty {})).await,
            Code::Unimplemented,
            "TestService/UnimplementedCall",
        )?;
        Ok(None)
    }

    async fn unimplemented_service(&self) -> CaseResult {
        let stub = UnimplementedServiceClient::new(self.stub.channel().clone());
        expect_code(
            stub.unimplemented_call(self.request(Empty {})).await,
            Code::Unimplemented,
            "UnimplementedService/UnimplementedCall",
        )?;
        Ok(None)
    }

    /// rpc_soak (`fresh_channel` false: every RPC on the shared channel) and
    /// channel_soak (a new channel, hence a new connection, per RPC).
    async fn soak(&self, fresh_channel: bool) -> CaseResult {
        let soak = &self.config.soak;
        let template = simple_request(soak.request_size, soak.response_size);
        let start = Instant::now();
        let mut done = 0u32;
        let mut failures = 0u32;
        let mut first_failure = None;
        let mut worst = Duration::ZERO;
        for i in 0..soak.iterations {
            let Some(left) = soak.overall_timeout.checked_sub(start.elapsed()) else {
                break;
            };
            if left.is_zero() {
                break;
            }
            let t0 = Instant::now();
            let result: Result<(), String> = async {
                let stub = if fresh_channel {
                    TestServiceClient::new(new_channel(&self.config)?)
                } else {
                    self.stub.clone()
                };
                let mut request = self.request(template.clone());
                request.set_timeout(left.min(self.config.rpc_timeout));
                let response = stub.unary_call(request).await.map_err(|s| describe(&s))?;
                check_payload(
                    response.get_ref().payload.as_ref(),
                    soak.response_size,
                    "response",
                )
            }
            .await;
            let latency = t0.elapsed();
            worst = worst.max(latency);
            done += 1;
            let error = match result {
                Err(err) => Some(err),
                Ok(()) if latency > soak.max_latency => Some(format!(
                    "latency {} ms > {} ms",
                    latency.as_millis(),
                    soak.max_latency.as_millis()
                )),
                Ok(()) => None,
            };
            if let Some(error) = error {
                failures += 1;
                eprintln!("soak iteration {i} failed: {error}");
                first_failure.get_or_insert(format!("iteration {i}: {error}"));
            }
            if let Some(rest) = soak.min_time_between.checked_sub(t0.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
        eprintln!(
            "soak: {done}/{} iterations, {failures} failed, worst latency {:.1} ms, {:.2} s total",
            soak.iterations,
            worst.as_secs_f64() * 1000.0,
            start.elapsed().as_secs_f64()
        );
        if done < soak.iterations {
            return fail(format!(
                "only {done} of {} iterations ran within the {} s overall timeout",
                soak.iterations,
                soak.overall_timeout.as_secs()
            ));
        }
        if failures > soak.max_failures {
            return fail(format!(
                "{failures} failed iterations (max {}); first: {}",
                soak.max_failures,
                first_failure.unwrap_or_default()
            ));
        }
        Ok((failures > 0).then(|| format!("{failures} tolerated failures")))
    }

    async fn concurrent_large_unary(&self) -> CaseResult {
        let count = self.config.concurrent_calls;
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..count {
            let stub = self.stub.clone();
            let mut request = self.request(large_request());
            request.set_timeout(self.config.concurrent_timeout);
            tasks.spawn(async move {
                let outcome = match stub.unary_call(request).await {
                    Ok(response) => check_payload(
                        response.get_ref().payload.as_ref(),
                        LARGE_RESPONSE,
                        "response",
                    ),
                    Err(status) => Err(describe(&status)),
                };
                (i, outcome)
            });
        }
        let mut failures = 0usize;
        let mut first_failure: Option<(usize, String)> = None;
        while let Some(joined) = tasks.join_next().await {
            let (i, outcome) = match joined {
                Ok(r) => r,
                Err(err) => (usize::MAX, Err(format!("task failed: {err}"))),
            };
            if let Err(err) = outcome {
                failures += 1;
                if first_failure.as_ref().is_none_or(|(j, _)| i < *j) {
                    first_failure = Some((i, err));
                }
            }
        }
        eprintln!(
            "concurrent_large_unary: {count} calls in {:.2} s, {failures} failed",
            start.elapsed().as_secs_f64()
        );
        if let Some((i, err)) = first_failure {
            return fail(format!(
                "{failures} of {count} calls failed; call {i}: {err}"
            ));
        }
        Ok(None)
    }
}

// ----- main ----------------------------------------------------------------------

/// Collapses whitespace (including newlines) so a reason fits on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn run(interop: Interop) -> u8 {
    let started = Instant::now();
    let mut any_failed = false;
    let cases = interop.config.cases.clone();
    for name in &cases {
        let t0 = Instant::now();
        let line = match interop.run(name).await {
            Ok(None) => format!("{name} PASS"),
            Ok(Some(note)) => format!("{name} PASS {}", one_line(&note)),
            Err(CaseError(reason)) => {
                any_failed = true;
                format!("{name} FAIL {}", one_line(&reason))
            }
        };
        eprintln!("[{name} {:.2}s]", t0.elapsed().as_secs_f64());
        println!("{line}");
    }
    eprintln!(
        "interop_client: {} case(s) in {:.1} s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    u8::from(any_failed)
}

fn main() -> ExitCode {
    let summary =
        "gRPC interop test client on ferrogrpc (grpc/grpc doc/interop-test-descriptions.md)";
    let parsed = flags::parse(std::env::args().skip(1), FLAGS).and_then(|f| config(&f));
    let config = match parsed {
        Ok(config) => config,
        Err(flags::Error::Help) => {
            print!("{}", flags::usage("interop_client", summary, FLAGS));
            return ExitCode::SUCCESS;
        }
        Err(flags::Error::Bad(msg)) => {
            eprintln!("interop_client: {msg}");
            eprintln!("interop_client: see --help");
            return ExitCode::from(2);
        }
    };
    let interop = match Interop::new(config) {
        Ok(i) => i,
        Err(err) => {
            eprintln!("interop_client: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("interop_client: cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(run(interop));
    // Calls a timed-out case left behind must not delay the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}
