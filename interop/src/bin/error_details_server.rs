//! The ferrogrpc server of the rich error details checks
//! (`interop/run-error-details.sh`): `grpc.testing.TestService` whose calls
//! fail with details attached by `Status::with_error_details`, for grpcio's
//! `grpc_status.rpc_status` (`interop/peers/error_details_client.py`) to
//! read.
//!
//! ```text
//! error_details_server --port 0 [--send_details false]
//! ```
//!
//! - `UnaryCall` fails at once (a Trailers-Only response) with
//!   INVALID_ARGUMENT, a message that is not ASCII, and the details
//!   ErrorInfo, BadRequest, RetryInfo and a `google.protobuf.StringValue`.
//! - `StreamingOutputCall` sends one response, then fails the same way (the
//!   details in trailers after a message).
//! - `EmptyCall` fails with ABORTED and details whose `google.rpc.Status`
//!   says NOT_FOUND: a client must not trust them.
//! - The other methods answer UNIMPLEMENTED.
//!
//! `--send_details false` sends the same codes and messages without any
//! details: the control run, against which the client's detail checks must
//! fail.
//!
//! It listens on 127.0.0.1 and logs `error_details_server: listening on
//! 127.0.0.1:PORT` on stderr; it stops on SIGINT or SIGTERM.

use std::{net::Ipv4Addr, process::ExitCode};

use ferrogrpc::{
    server::{ResponseSink, Server},
    Request, Response, Status, Streaming,
};
use interop::{
    flags::{self, Kind, Spec},
    pb::{
        test_service_server::{TestService, TestServiceServer},
        Empty, SimpleRequest, SimpleResponse, StreamingInputCallRequest,
        StreamingInputCallResponse, StreamingOutputCallRequest, StreamingOutputCallResponse,
    },
    zero_payload,
};

#[allow(dead_code)]
#[path = "error_details_shared/mod.rs"]
mod shared;

const FLAGS: &[Spec] = &[
    Spec {
        name: "port",
        kind: Kind::Value,
        default: "0",
        help: "port to listen on, on 127.0.0.1 (0 picks a free one)",
    },
    Spec {
        name: "send_details",
        kind: Kind::Bool,
        default: "true",
        help: "attach the details (false: the same errors without them, a control)",
    },
];

struct ErrorDetailsService {
    send_details: bool,
}

impl ErrorDetailsService {
    /// The rich error of `UnaryCall` and `StreamingOutputCall`.
    fn rich_error(&self) -> Status {
        let status = Status::new(shared::CODE, shared::MESSAGE);
        if self.send_details {
            status.with_error_details(shared::details())
        } else {
            status
        }
    }

    /// `EmptyCall`'s error: details whose code is not the status's.
    fn mismatched_error(&self) -> Status {
        if !self.send_details {
            return Status::new(shared::MISMATCH_CODE, shared::MESSAGE);
        }
        let other = Status::new(shared::MISMATCH_DETAILS_CODE, shared::MESSAGE)
            .with_error_details(shared::details());
        Status::with_details(
            shared::MISMATCH_CODE,
            shared::MESSAGE,
            other.details().clone(),
        )
    }
}

fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!(
        "grpc.testing.TestService/{method} is not part of the error details checks"
    ))
}

impl TestService for ErrorDetailsService {
    async fn empty_call(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        Err(self.mismatched_error())
    }

    async fn unary_call(
        &self,
        _request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        Err(self.rich_error())
    }

    async fn cacheable_unary_call(
        &self,
        _request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        Err(unimplemented("CacheableUnaryCall"))
    }

    async fn streaming_output_call(
        &self,
        _request: Request<StreamingOutputCallRequest>,
        mut responses: ResponseSink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        responses
            .send(StreamingOutputCallResponse {
                payload: Some(zero_payload(1)),
            })
            .await?;
        Err(self.rich_error())
    }

    async fn streaming_input_call(
        &self,
        _request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        Err(unimplemented("StreamingInputCall"))
    }

    async fn full_duplex_call(
        &self,
        _request: Request<Streaming<StreamingOutputCallRequest>>,
        _responses: ResponseSink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        Err(unimplemented("FullDuplexCall"))
    }

    async fn half_duplex_call(
        &self,
        _request: Request<Streaming<StreamingOutputCallRequest>>,
        _responses: ResponseSink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        Err(unimplemented("HalfDuplexCall"))
    }

    async fn unimplemented_call(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        Err(unimplemented("UnimplementedCall"))
    }
}

/// Resolves on SIGINT or SIGTERM (handlers installed at once).
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
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

async fn serve(port: u16, send_details: bool) -> std::io::Result<()> {
    let stop = stop_signal()?;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
    let server = Server::builder()
        .add_service(TestServiceServer::new(ErrorDetailsService { send_details }))
        .build();
    eprintln!(
        "error_details_server: listening on {} ({})",
        listener.local_addr()?,
        if send_details {
            "with details"
        } else {
            "control: no details"
        }
    );
    let s = server.clone();
    let serving = tokio::spawn(async move { s.serve_listener(listener).await });
    stop.await;
    eprintln!("error_details_server: stopping");
    server.stop();
    let _ = serving.await;
    Ok(())
}

fn main() -> ExitCode {
    let summary = "grpc.testing.TestService failing with rich error details \
                   (google.rpc.Status in grpc-status-details-bin)";
    let flags = match flags::parse(std::env::args().skip(1), FLAGS) {
        Ok(f) => f,
        Err(flags::Error::Help) => {
            print!("{}", flags::usage("error_details_server", summary, FLAGS));
            return ExitCode::SUCCESS;
        }
        Err(flags::Error::Bad(msg)) => {
            eprintln!("error_details_server: {msg} (see --help)");
            return ExitCode::from(2);
        }
    };
    let port = match flags.parse("port", 0u16) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error_details_server: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    let send_details = flags
        .get("send_details")
        .and_then(flags::parse_bool)
        .unwrap_or(true);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error_details_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(port, send_details)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error_details_server: {e}");
            ExitCode::FAILURE
        }
    }
}
