//! The client side of the gRFC A6 retry checks on ferrogrpc
//! (`interop/run-retry.sh`): calls a `grpc.testing.TestService` that fails
//! the first `x-retry-fail` attempts of each call (`retry_server`, or the
//! grpcio `interop/retry/flaky_server.py`) over a channel whose default
//! service config has a `retryPolicy`.
//!
//! ```text
//! retry_client --server_host 127.0.0.1 --server_port 50051 [--pushback_checks true]
//! ```
//!
//! The retry policy (unless `--service_config_json` replaces it): every
//! `grpc.testing.TestService` method, `maxAttempts` 4, backoff 0.05 s
//! growing ×2 up to 0.2 s, `UNAVAILABLE` retryable.
//!
//! Checks, one stdout line each, `PASS name` or `FAIL name: why`:
//!
//! - `no_retry_needed`: `x-retry-fail: 0` succeeds at once
//!   (`x-attempts-seen: 0`); holds with or without retry support.
//! - `unary_retry_succeeds`: `x-retry-fail: 2` succeeds on the third attempt
//!   (`x-attempts-seen: 2`).
//! - `server_streaming_retry_succeeds`, `client_streaming_retry_succeeds`:
//!   the same for `StreamingOutputCall` and `StreamingInputCall`.
//! - `retry_gives_up_at_max_attempts`: `x-retry-fail: 5` fails with
//!   `UNAVAILABLE`, the server's message naming attempt 4 (`maxAttempts`).
//! - with `--pushback_checks true` (the server must honour
//!   `x-retry-pushback-ms`):
//!   - `pushback_stops_retries`: `x-retry-fail: 2` with pushback -1 fails
//!     with `UNAVAILABLE` after attempt 1 (and, as a control, the same call
//!     with `x-retry-fail: 1` and no pushback is retried and succeeds);
//!   - `pushback_delays_retry`: `x-retry-fail: 1` with pushback 300 ms
//!     succeeds on attempt 2, no sooner than 0.3 s after the call began.
//!
//! Exit status: 0 if every check passed, 1 if one failed, 2 on bad flags.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use ferrogrpc::{
    client::Channel, metadata::MetadataMap, serviceconfig::ServiceConfig, Code, Request, Status,
};
use interop::{
    check_payload,
    flags::{self, Kind, Spec},
    pb::{
        test_service_client::TestServiceClient, PayloadType, ResponseParameters, SimpleRequest,
        StreamingInputCallRequest, StreamingOutputCallRequest,
    },
    zero_payload,
};

/// The default service config: the retry policy of the checks.
const SERVICE_CONFIG: &str = r#"{
  "methodConfig": [{
    "name": [{"service": "grpc.testing.TestService"}],
    "retryPolicy": {
      "maxAttempts": 4,
      "initialBackoff": "0.05s",
      "maxBackoff": "0.2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}"#;

/// `maxAttempts` of [`SERVICE_CONFIG`].
const MAX_ATTEMPTS: u64 = 4;

const FAIL_KEY: &str = "x-retry-fail";
const PUSHBACK_KEY: &str = "x-retry-pushback-ms";
const ATTEMPTS_SEEN_KEY: &str = "x-attempts-seen";

/// The pushback delay `pushback_delays_retry` asks for.
const PUSHBACK_DELAY: Duration = Duration::from_millis(300);
/// Slack for timer granularity when checking that delay.
const TIMER_SLACK: Duration = Duration::from_millis(10);

const RESPONSE_SIZE: i32 = 64;

const FLAGS: &[Spec] = &[
    Spec {
        name: "server_host",
        kind: Kind::Value,
        default: "127.0.0.1",
        help: "server host name or address",
    },
    Spec {
        name: "server_port",
        kind: Kind::Value,
        default: "",
        help: "server port (required)",
    },
    Spec {
        name: "pushback_checks",
        kind: Kind::Bool,
        default: "false",
        help: "also run the checks that need the server to honour x-retry-pushback-ms",
    },
    Spec {
        name: "service_config_json",
        kind: Kind::Value,
        default: "the retry policy above",
        help: "the channel's default service config, as JSON",
    },
    Spec {
        name: "rpc_timeout_seconds",
        kind: Kind::Value,
        default: "10",
        help: "deadline of every RPC",
    },
];

/// What the checks share.
struct Checks {
    stub: TestServiceClient,
    rpc_timeout: Duration,
}

type CheckResult = Result<(), String>;

fn describe(status: &Status) -> String {
    format!("{} {:?}", status.code().name(), status.message())
}

/// The attempt number in a failure message of the servers
/// (`attempt K failed on purpose ...`).
fn failed_attempt(status: &Status) -> Option<u64> {
    status
        .message()
        .strip_prefix("attempt ")?
        .split_once(' ')?
        .0
        .parse()
        .ok()
}

/// Checks the `x-attempts-seen` response header.
fn check_attempts_seen(headers: &MetadataMap, want: u64) -> CheckResult {
    match headers.get(ATTEMPTS_SEEN_KEY) {
        Some(seen) if seen == want.to_string() => Ok(()),
        Some(seen) => Err(format!(
            "{ATTEMPTS_SEEN_KEY} is {seen:?}, want \"{want}\" (the attempt that succeeded had \
             grpc-previous-rpc-attempts {seen})"
        )),
        None => Err(format!("no {ATTEMPTS_SEEN_KEY} in the response headers")),
    }
}

/// The call must have failed with `UNAVAILABLE`, on attempt `want_attempt`.
fn check_unavailable_at<T>(result: Result<T, Status>, want_attempt: u64) -> CheckResult {
    let status = match result {
        Ok(_) => return Err("succeeded, want UNAVAILABLE".into()),
        Err(status) => status,
    };
    if status.code() != Code::Unavailable {
        return Err(format!("got {}, want UNAVAILABLE", describe(&status)));
    }
    match failed_attempt(&status) {
        Some(n) if n == want_attempt => Ok(()),
        Some(n) => Err(format!(
            "the last attempt was attempt {n}, want {want_attempt} ({})",
            describe(&status)
        )),
        None => Err(format!(
            "UNAVAILABLE, but not from the server's failing attempts: {}",
            describe(&status)
        )),
    }
}

impl Checks {
    /// A request with the deadline and the retry-control metadata.
    fn request<T>(&self, message: T, fail: u64, pushback_ms: Option<i64>) -> Request<T> {
        let mut request = Request::new(message).with_timeout(self.rpc_timeout);
        let md = request.metadata_mut();
        md.insert(FAIL_KEY, &fail.to_string())
            .expect("a valid metadata key");
        if let Some(ms) = pushback_ms {
            md.insert(PUSHBACK_KEY, &ms.to_string())
                .expect("a valid metadata key");
        }
        request
    }

    fn simple_request() -> SimpleRequest {
        SimpleRequest {
            response_type: PayloadType::Compressable as i32,
            response_size: RESPONSE_SIZE,
            ..SimpleRequest::default()
        }
    }

    /// A `UnaryCall` that must succeed on attempt `fail + 1`.
    async fn unary_succeeds(&self, fail: u64, pushback_ms: Option<i64>) -> CheckResult {
        let response = self
            .stub
            .unary_call(self.request(Self::simple_request(), fail, pushback_ms))
            .await
            .map_err(|s| format!("UnaryCall: {}", describe(&s)))?;
        check_attempts_seen(response.metadata(), fail)?;
        let size = usize::try_from(RESPONSE_SIZE).unwrap_or_default();
        check_payload(response.get_ref().payload.as_ref(), size, "response")
    }

    async fn no_retry_needed(&self) -> CheckResult {
        self.unary_succeeds(0, None).await
    }

    async fn unary_retry_succeeds(&self) -> CheckResult {
        self.unary_succeeds(2, None).await
    }

    async fn server_streaming_retry_succeeds(&self) -> CheckResult {
        let request = StreamingOutputCallRequest {
            response_type: PayloadType::Compressable as i32,
            response_parameters: vec![
                ResponseParameters {
                    size: 8,
                    ..ResponseParameters::default()
                },
                ResponseParameters {
                    size: 16,
                    ..ResponseParameters::default()
                },
            ],
            ..StreamingOutputCallRequest::default()
        };
        let response = self
            .stub
            .streaming_output_call(self.request(request, 2, None))
            .await
            .map_err(|s| format!("StreamingOutputCall: {}", describe(&s)))?;
        check_attempts_seen(response.metadata(), 2)?;
        let mut stream = response.into_inner();
        let mut sizes = Vec::new();
        while let Some(message) = stream.message().await.map_err(|s| {
            format!(
                "StreamingOutputCall response {}: {}",
                sizes.len(),
                describe(&s)
            )
        })? {
            sizes.push(message.payload.map_or(0, |p| p.body.len()));
        }
        if sizes != [8, 16] {
            return Err(format!("response payload sizes {sizes:?}, want [8, 16]"));
        }
        Ok(())
    }

    async fn client_streaming_retry_succeeds(&self) -> CheckResult {
        let mut call = self
            .stub
            .streaming_input_call(self.request((), 2, None))
            .await
            .map_err(|s| format!("starting StreamingInputCall: {}", describe(&s)))?;
        // A failed attempt may end the stream under a send; the status and
        // the aggregated size below tell whether the messages got through.
        let mut send_errors = Vec::new();
        for size in [8, 16] {
            if let Err(status) = call.send(input_request(size)).await {
                send_errors.push(format!("sending {size} bytes: {}", describe(&status)));
            }
        }
        let response = call.close_and_recv().await.map_err(|s| {
            format!(
                "StreamingInputCall: {} (send errors: {send_errors:?})",
                describe(&s)
            )
        })?;
        check_attempts_seen(response.metadata(), 2)?;
        let got = response.get_ref().aggregated_payload_size;
        if got != 24 {
            return Err(format!(
                "aggregated_payload_size {got}, want 24 (send errors: {send_errors:?})"
            ));
        }
        Ok(())
    }

    async fn retry_gives_up_at_max_attempts(&self) -> CheckResult {
        let result = self
            .stub
            .unary_call(self.request(Self::simple_request(), MAX_ATTEMPTS + 1, None))
            .await;
        check_unavailable_at(result, MAX_ATTEMPTS)
    }

    async fn pushback_stops_retries(&self) -> CheckResult {
        // Without this control, a client that never retries would pass.
        self.unary_succeeds(1, None)
            .await
            .map_err(|e| format!("control call without pushback (x-retry-fail 1): {e}"))?;
        let result = self
            .stub
            .unary_call(self.request(Self::simple_request(), 2, Some(-1)))
            .await;
        check_unavailable_at(result, 1)
    }

    async fn pushback_delays_retry(&self) -> CheckResult {
        let ms = i64::try_from(PUSHBACK_DELAY.as_millis()).unwrap_or(i64::MAX);
        let start = Instant::now();
        self.unary_succeeds(1, Some(ms)).await?;
        let took = start.elapsed();
        if took + TIMER_SLACK < PUSHBACK_DELAY {
            return Err(format!(
                "succeeded after {:.3} s, before the {:.3} s pushback",
                took.as_secs_f64(),
                PUSHBACK_DELAY.as_secs_f64()
            ));
        }
        Ok(())
    }

    async fn run(&self, name: &str) -> CheckResult {
        match name {
            "no_retry_needed" => self.no_retry_needed().await,
            "unary_retry_succeeds" => self.unary_retry_succeeds().await,
            "server_streaming_retry_succeeds" => self.server_streaming_retry_succeeds().await,
            "client_streaming_retry_succeeds" => self.client_streaming_retry_succeeds().await,
            "retry_gives_up_at_max_attempts" => self.retry_gives_up_at_max_attempts().await,
            "pushback_stops_retries" => self.pushback_stops_retries().await,
            "pushback_delays_retry" => self.pushback_delays_retry().await,
            other => Err(format!("unknown check {other:?}")),
        }
    }
}

fn input_request(size: usize) -> StreamingInputCallRequest {
    StreamingInputCallRequest {
        payload: Some(zero_payload(size)),
        ..StreamingInputCallRequest::default()
    }
}

/// Collapses whitespace so a reason fits on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn main() -> ExitCode {
    let summary = "gRFC A6 retry checks on ferrogrpc against a server that fails the first \
                   x-retry-fail attempts";
    let bad = |msg: String| {
        eprintln!("retry_client: {msg}");
        eprintln!("retry_client: see --help");
        ExitCode::from(2)
    };
    let flags = match flags::parse(std::env::args().skip(1), FLAGS) {
        Ok(f) => f,
        Err(flags::Error::Help) => {
            print!("{}", flags::usage("retry_client", summary, FLAGS));
            return ExitCode::SUCCESS;
        }
        Err(flags::Error::Bad(msg)) => return bad(msg),
    };
    let host = flags.string("server_host", "127.0.0.1");
    let port: u16 = match (flags.get("server_port"), flags.parse("server_port", 0u16)) {
        (Some(_), Ok(port)) => port,
        (None, _) => return bad("--server_port is required".into()),
        (_, Err(err)) => return bad(err.to_string()),
    };
    let rpc_timeout = match flags
        .parse("rpc_timeout_seconds", 10.0f64)
        .map(Duration::try_from_secs_f64)
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return bad(format!("--rpc_timeout_seconds: {e}")),
        Err(e) => return bad(e.to_string()),
    };
    let service_config = flags.string("service_config_json", SERVICE_CONFIG);
    if let Err(e) = ServiceConfig::parse(&service_config) {
        return bad(format!(
            "--service_config_json: invalid service config: {e}"
        ));
    }
    let target = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let channel = match Channel::builder(target)
        .default_service_config(&service_config)
        .build()
    {
        Ok(c) => c,
        Err(e) => return bad(e.to_string()),
    };
    let mut names = vec![
        "no_retry_needed",
        "unary_retry_succeeds",
        "server_streaming_retry_succeeds",
        "client_streaming_retry_succeeds",
        "retry_gives_up_at_max_attempts",
    ];
    if flags.bool("pushback_checks") {
        names.extend(["pushback_stops_retries", "pushback_delays_retry"]);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("retry_client: cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let checks = Checks {
        stub: TestServiceClient::new(channel),
        rpc_timeout,
    };
    let failed = runtime.block_on(async {
        let mut failed = 0;
        for name in names {
            // The RPC deadline bounds every call; this bounds the check.
            let limit = rpc_timeout * 2 + Duration::from_secs(5);
            let result = match tokio::time::timeout(limit, checks.run(name)).await {
                Ok(result) => result,
                Err(_) => Err(format!("did not finish within {limit:?}")),
            };
            match result {
                Ok(()) => println!("PASS {name}"),
                Err(why) => {
                    failed += 1;
                    println!("FAIL {name}: {}", one_line(&why));
                }
            }
        }
        failed
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
