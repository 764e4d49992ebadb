//! The client side of the interop tests: the cases of grpc/grpc's
//! `doc/interop-test-descriptions.md`, run against any server of
//! `grpc.testing.TestService` by the `interop_client` binary, and by tests
//! over an in-memory connection ([`Interop::with_channels`]).
//!
//! [`Interop::run`] runs one case by name and says whether it passed; every
//! RPC has a deadline and every case a time limit, so a case never hangs.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use ferrogrpc::{
    client::{Channel, RequestSink},
    credentials::{tls::ClientTlsConfig, ChannelCredentials},
    metadata::MetadataMap,
    Code, Request, Status, Streaming,
};

use crate::{
    check_payload,
    pb::{
        test_service_client::TestServiceClient,
        unimplemented_service_client::UnimplementedServiceClient, BoolValue, EchoStatus, Empty,
        PayloadType, ResponseParameters, SimpleRequest, StreamingInputCallRequest,
        StreamingOutputCallRequest, StreamingOutputCallResponse,
    },
    zero_payload, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY,
};

/// Every case, in the order `--test_case all` runs them. None needs setup
/// beyond a server of `grpc.testing.TestService` (no auth cases).
pub const ALL_CASES: &[&str] = &[
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

/// The request payload size of the large cases (and soak requests by default).
pub const LARGE_REQUEST: usize = 271_828;
/// The response payload size of the large cases (and soak responses by
/// default).
pub const LARGE_RESPONSE: usize = 314_159;
const ECHO_INITIAL_VALUE: &str = "test_initial_metadata_value";
const ECHO_TRAILING_VALUE: &[u8] = &[0xab, 0xab, 0xab];
const SPECIAL_MESSAGE: &str =
    "\t\ntest with whitespace\r\nand Unicode BMP \u{263a} and non-BMP \u{1f608}\t\n";

// ----- configuration ---------------------------------------------------------

/// Settings of the soak cases (`rpc_soak`, `channel_soak`).
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// RPCs to make.
    pub iterations: u32,
    /// Failed iterations tolerated.
    pub max_failures: u32,
    /// A slower iteration counts as failed.
    pub max_latency: Duration,
    /// The case stops and fails when its iterations take longer.
    pub overall_timeout: Duration,
    /// Minimum time between the starts of two RPCs.
    pub min_time_between: Duration,
    /// Request payload size.
    pub request_size: usize,
    /// Response payload size.
    pub response_size: usize,
}

impl Default for SoakConfig {
    /// The defaults of the `interop_client` flags.
    fn default() -> SoakConfig {
        SoakConfig {
            iterations: 10,
            max_failures: 0,
            max_latency: Duration::from_millis(1000),
            overall_timeout: Duration::from_secs(10),
            min_time_between: Duration::ZERO,
            request_size: LARGE_REQUEST,
            response_size: LARGE_RESPONSE,
        }
    }
}

/// Everything the `interop_client` flags decide.
#[derive(Debug)]
pub struct Config {
    /// The dial target (`host:port`).
    pub target: String,
    /// The `:authority` to claim (and, with TLS, the name to check).
    pub authority: Option<String>,
    /// `Some` to connect with TLS.
    pub tls: Option<ClientTlsConfig>,
    /// The cases to run, in order.
    pub cases: Vec<&'static str>,
    /// Metadata sent with every RPC.
    pub metadata: MetadataMap,
    /// The channel's default service config, as JSON, already checked to
    /// parse.
    pub service_config: Option<String>,
    /// The deadline of each RPC.
    pub rpc_timeout: Duration,
    /// The time limit of one case (soak and concurrent cases get more).
    pub case_timeout: Duration,
    /// Calls in `concurrent_large_unary`.
    pub concurrent_calls: usize,
    /// The deadline of each `concurrent_large_unary` call.
    pub concurrent_timeout: Duration,
    /// Settings of the soak cases.
    pub soak: SoakConfig,
}

impl Config {
    /// Every case against `target`, plaintext, with the defaults of the
    /// `interop_client` flags.
    pub fn new(target: impl Into<String>) -> Config {
        Config {
            target: target.into(),
            authority: None,
            tls: None,
            cases: ALL_CASES.to_vec(),
            metadata: MetadataMap::new(),
            service_config: None,
            rpc_timeout: Duration::from_secs(10),
            case_timeout: Duration::from_secs(60),
            concurrent_calls: 1000,
            concurrent_timeout: Duration::from_secs(60),
            soak: SoakConfig::default(),
        }
    }

    /// A new channel (and, at its first call, a new connection) to the
    /// server, as these settings say.
    ///
    /// # Errors
    /// The reason the channel cannot be built (a bad target or authority,
    /// TLS files that cannot be read).
    pub fn channel(&self) -> Result<Channel, String> {
        new_channel(self)
    }
}

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
pub struct CaseError(pub String);

/// `Ok(note)` is a pass, with an optional note.
pub type CaseResult = Result<Option<String>, CaseError>;

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

/// Makes the new channels `channel_soak` needs.
type ChannelFactory = Arc<dyn Fn() -> Result<Channel, String> + Send + Sync>;

/// Runs cases against one server.
#[derive(Clone)]
pub struct Interop {
    config: Arc<Config>,
    stub: TestServiceClient,
    channels: ChannelFactory,
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
    /// Runs cases over channels built from `config`.
    ///
    /// # Errors
    /// When the channel cannot be built (see [`Config::channel`]).
    pub fn new(config: Config) -> Result<Interop, String> {
        let config = Arc::new(config);
        let settings = Arc::clone(&config);
        Interop::with_channels(config, move || settings.channel())
    }

    /// Runs cases over channels `channels` makes: one for the cases, and a
    /// new one per RPC of `channel_soak`. `config`'s target, authority, TLS
    /// and service config are then not used. For channels over a custom
    /// dialer, such as an in-memory connection (`ferrogrpc::bufconn`).
    ///
    /// # Errors
    /// What `channels` returns for the first channel.
    pub fn with_channels(
        config: impl Into<Arc<Config>>,
        channels: impl Fn() -> Result<Channel, String> + Send + Sync + 'static,
    ) -> Result<Interop, String> {
        let channel = channels()?;
        Ok(Interop {
            config: config.into(),
            stub: TestServiceClient::new(channel),
            channels: Arc::new(channels),
        })
    }

    /// The settings the cases run with.
    pub fn config(&self) -> &Config {
        &self.config
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

    /// Runs the case `name` (one of [`ALL_CASES`]) under its time limit.
    ///
    /// # Errors
    /// Why the case failed, including an unknown name and a case that did
    /// not finish in time.
    pub async fn run(&self, name: &str) -> CaseResult {
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
                    TestServiceClient::new((self.channels)()?)
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
