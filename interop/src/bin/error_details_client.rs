//! The ferrogrpc client of the rich error details checks
//! (`interop/run-error-details.sh`): reads, with `Status::error_details` and
//! `Status::error_detail`, the details that grpcio's
//! `interop/peers/error_details_server.py` attaches with
//! `grpc_status.rpc_status` (or that `error_details_server` attaches).
//!
//! ```text
//! error_details_client --server_host 127.0.0.1 --server_port PORT
//! ```
//!
//! Checks, one stdout line each, `PASS name` or `FAIL name: why`:
//!
//! - `unary_status`: `UnaryCall` fails with INVALID_ARGUMENT and the
//!   expected message (which is not ASCII).
//! - `unary_all_details`: `error_details()` gives ErrorInfo, BadRequest,
//!   RetryInfo and a `google.protobuf.StringValue`, in that order, each
//!   equal to the expected one.
//! - `unary_error_info`, `unary_bad_request`, `unary_retry_info`:
//!   `error_detail::<T>()` finds each standard detail.
//! - `unary_other_detail`: the `StringValue`, a type outside `google.rpc`,
//!   is kept as `Detail::Other` with its type URL, and
//!   `error_detail::<String>()` decodes it.
//! - `stream_details`: `StreamingOutputCall` sends one message, then fails
//!   with the same status and details (in trailers after data).
//! - `mismatch_refused`: `EmptyCall` fails with ABORTED and details whose
//!   code is NOT_FOUND; `error_details()` refuses them
//!   (`DetailsError::CodeMismatch`, as a gRPC-Go client drops them).
//!
//! Exit status: 0 if every check passed, 1 if one failed, 2 on bad flags.

use std::{process::ExitCode, time::Duration};

use ferrogrpc::{
    client::Channel,
    errdetails::{BadRequest, Detail, DetailsError, ErrorInfo, RetryInfo},
    Request, Status,
};
use interop::{
    flags::{self, Kind, Spec},
    pb::{
        test_service_client::TestServiceClient, Empty, ResponseParameters, SimpleRequest,
        StreamingOutputCallRequest,
    },
};

#[allow(dead_code)]
#[path = "error_details_shared/mod.rs"]
mod shared;

const FLAGS: &[Spec] = &[
    Spec {
        name: "server_host",
        kind: Kind::Value,
        default: "127.0.0.1",
        help: "the server's host",
    },
    Spec {
        name: "server_port",
        kind: Kind::Value,
        default: "",
        help: "the server's port (required)",
    },
    Spec {
        name: "rpc_timeout_seconds",
        kind: Kind::Value,
        default: "10",
        help: "deadline of every RPC",
    },
];

type CheckResult = Result<(), String>;

fn describe(status: &Status) -> String {
    format!("{} {:?}", status.code().name(), status.message())
}

/// Collapses whitespace so a reason fits on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> CheckResult {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

/// The code and message of a rich error.
fn check_status(status: &Status) -> CheckResult {
    if status.code() != shared::CODE || status.message() != shared::MESSAGE {
        return Err(format!(
            "got {}, want {} {:?}",
            describe(status),
            shared::CODE.name(),
            shared::MESSAGE
        ));
    }
    Ok(())
}

/// Every detail of a rich error, in order.
fn check_all_details(status: &Status) -> CheckResult {
    if status.details().is_empty() {
        return Err("no grpc-status-details-bin".into());
    }
    let got = status
        .error_details()
        .map_err(|e| format!("error_details(): {e}"))?;
    expect_eq("error_details()", got, shared::details())
}

fn check_typed<T>(status: &Status, want: T) -> CheckResult
where
    T: prost::Name + Default + PartialEq + std::fmt::Debug,
{
    expect_eq(
        &format!("error_detail::<{}>()", T::NAME),
        status.error_detail::<T>(),
        Some(want),
    )
}

fn check_other(status: &Status) -> CheckResult {
    let details = status
        .error_details()
        .map_err(|e| format!("error_details(): {e}"))?;
    let other = details.iter().find_map(|d| match d {
        Detail::Other(any) => Some(any),
        _ => None,
    });
    let Some(any) = other else {
        return Err(format!("no Detail::Other among {} details", details.len()));
    };
    expect_eq("type URL", any.type_url.as_str(), shared::OPAQUE_TYPE_URL)?;
    expect_eq(
        "error_detail::<String>()",
        status.error_detail::<String>().as_deref(),
        Some(shared::OPAQUE_TEXT),
    )
}

struct Checks {
    client: TestServiceClient,
    timeout: Duration,
    passed: usize,
    failed: usize,
}

impl Checks {
    fn report(&mut self, name: &str, result: CheckResult) {
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("PASS {name}");
            }
            Err(why) => {
                self.failed += 1;
                println!("FAIL {name}: {}", one_line(&why));
            }
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        Request::new(message).with_timeout(self.timeout)
    }

    async fn unary(&mut self) {
        let status = match self
            .client
            .unary_call(self.request(SimpleRequest::default()))
            .await
        {
            Ok(_) => Err("UnaryCall succeeded; want it to fail".to_string()),
            Err(status) => Ok(status),
        };
        let status = match status {
            Ok(s) => s,
            Err(why) => {
                for name in [
                    "unary_status",
                    "unary_all_details",
                    "unary_error_info",
                    "unary_bad_request",
                    "unary_retry_info",
                    "unary_other_detail",
                ] {
                    self.report(name, Err(why.clone()));
                }
                return;
            }
        };
        self.report("unary_status", check_status(&status));
        self.report("unary_all_details", check_all_details(&status));
        self.report(
            "unary_error_info",
            check_typed::<ErrorInfo>(&status, shared::error_info()),
        );
        self.report(
            "unary_bad_request",
            check_typed::<BadRequest>(&status, shared::bad_request()),
        );
        self.report(
            "unary_retry_info",
            check_typed::<RetryInfo>(&status, shared::retry_info()),
        );
        self.report("unary_other_detail", check_other(&status));
    }

    async fn stream(&mut self) {
        let result = async {
            let request = self.request(StreamingOutputCallRequest {
                response_parameters: vec![ResponseParameters {
                    size: 1,
                    ..ResponseParameters::default()
                }],
                ..StreamingOutputCallRequest::default()
            });
            let mut stream = self
                .client
                .streaming_output_call(request)
                .await
                .map_err(|s| format!("StreamingOutputCall failed at once: {}", describe(&s)))?
                .into_inner();
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return Err("the stream ended without a message or error".into()),
                Err(s) => return Err(format!("no message before the error: {}", describe(&s))),
            }
            let status = match stream.message().await {
                Ok(Some(_)) => return Err("a second message; want the error".into()),
                Ok(None) => return Err("the stream ended with OK; want the error".into()),
                Err(status) => status,
            };
            check_status(&status)?;
            check_all_details(&status)
        }
        .await;
        self.report("stream_details", result);
    }

    async fn mismatch(&mut self) {
        let result = match self.client.empty_call(self.request(Empty {})).await {
            Ok(_) => Err("EmptyCall succeeded; want it to fail".to_string()),
            Err(status) if status.code() != shared::MISMATCH_CODE => Err(format!(
                "got {}, want {}",
                describe(&status),
                shared::MISMATCH_CODE.name()
            )),
            Err(status) if status.details().is_empty() => {
                Err("no grpc-status-details-bin received".into())
            }
            Err(status) => match status.error_details() {
                Err(DetailsError::CodeMismatch { status: s, details })
                    if s == shared::MISMATCH_CODE
                        && details == shared::MISMATCH_DETAILS_CODE.as_i32() =>
                {
                    expect_eq(
                        "error_detail::<ErrorInfo>()",
                        status.error_detail::<ErrorInfo>(),
                        None,
                    )
                }
                other => Err(format!(
                    "error_details() = {other:?}, want CodeMismatch {{ {:?}, {} }}",
                    shared::MISMATCH_CODE,
                    shared::MISMATCH_DETAILS_CODE.as_i32()
                )),
            },
        };
        self.report("mismatch_refused", result);
    }
}

async fn run(target: String, timeout: Duration) -> Result<bool, String> {
    let channel = Channel::from_target(&target).map_err(|e| format!("{target}: {e}"))?;
    let mut checks = Checks {
        client: TestServiceClient::new(channel),
        timeout,
        passed: 0,
        failed: 0,
    };
    checks.unary().await;
    checks.stream().await;
    checks.mismatch().await;
    eprintln!(
        "error_details_client: {} passed, {} failed",
        checks.passed, checks.failed
    );
    Ok(checks.failed == 0)
}

fn main() -> ExitCode {
    let summary = "reads the rich error details (google.rpc.Status in \
                   grpc-status-details-bin) of a server's failed calls";
    let bad = |msg: String| {
        eprintln!("error_details_client: {msg} (see --help)");
        ExitCode::from(2)
    };
    let flags = match flags::parse(std::env::args().skip(1), FLAGS) {
        Ok(f) => f,
        Err(flags::Error::Help) => {
            print!("{}", flags::usage("error_details_client", summary, FLAGS));
            return ExitCode::SUCCESS;
        }
        Err(flags::Error::Bad(msg)) => return bad(msg),
    };
    let port: u16 = match flags.parse("server_port", 0) {
        Ok(0) => return bad("--server_port is required".into()),
        Ok(p) => p,
        Err(e) => return bad(e.to_string()),
    };
    let host = flags.string("server_host", "127.0.0.1");
    let timeout = match flags
        .parse("rpc_timeout_seconds", 10.0)
        .map(Duration::try_from_secs_f64)
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return bad(format!("--rpc_timeout_seconds: {e}")),
        Err(e) => return bad(e.to_string()),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error_details_client: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(run(format!("{host}:{port}"), timeout)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error_details_client: {e}");
            ExitCode::from(3)
        }
    }
}
