//! `ferrogrpc health`: grpc_health_probe's job, with its exit codes.

use std::process::ExitCode;

use clap::Args;
use ferrogrpc::{
    health::{
        pb::{health_client::HealthClient, HealthCheckRequest},
        ServingStatus,
    },
    Code, Status,
};

use crate::{
    connect::{seconds, ConnectArgs},
    error::Error,
};

/// grpc_health_probe's exit codes, for scripts and probes that know them.
const EXIT_CONNECTION: u8 = 2;
const EXIT_RPC: u8 = 3;
const EXIT_UNHEALTHY: u8 = 4;

/// The flags of `health`.
#[derive(Args, Debug)]
pub struct HealthArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The service to check; the server as a whole when left out.
    service: Option<String>,
    /// Keep watching (the `Watch` method), printing each status as it
    /// changes, until the server ends the stream.
    #[arg(long)]
    watch: bool,
    /// The deadline of the check, in seconds (of the whole watch with
    /// --watch, which has none by default).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
}

/// Runs `health`: exit 0 when SERVING, 4 when not, 3 when the check
/// failed, 2 when the server could not be reached.
pub async fn run(args: HealthArgs) -> Result<ExitCode, Error> {
    let client = HealthClient::new(args.connect.channel()?);
    let service = args.service.clone().unwrap_or_default();
    let mut request = args.connect.request(HealthCheckRequest { service })?;
    match (args.timeout, args.watch) {
        (Some(timeout), _) => request.set_timeout(seconds(timeout, "--timeout")?),
        (None, false) => request.set_timeout(std::time::Duration::from_secs(10)),
        (None, true) => {}
    }
    if !args.watch {
        return match client.check(request).await {
            Ok(response) => Ok(verdict(response.into_inner().status)),
            Err(status) => Err(failed(&args, &status)),
        };
    }
    let mut stream = client
        .watch(request)
        .await
        .map_err(|status| failed(&args, &status))?
        .into_inner();
    let mut last = ExitCode::from(EXIT_UNHEALTHY);
    // Printed as they come, for whoever reads the pipe.
    use std::io::Write as _;
    loop {
        match stream.message().await {
            Ok(Some(response)) => {
                last = verdict(response.status);
                let _ = std::io::stdout().flush();
            }
            Ok(None) => return Ok(last),
            // --timeout bounds the watch: its end is no failure.
            Err(status) if status.code() == Code::DeadlineExceeded && args.timeout.is_some() => {
                return Ok(last)
            }
            Err(status) => return Err(failed(&args, &status)),
        }
    }
}

/// Prints a status and gives its exit code.
fn verdict(status: i32) -> ExitCode {
    let status = ServingStatus::try_from(status).unwrap_or(ServingStatus::Unknown);
    println!("status: {}", status.as_str_name());
    if status == ServingStatus::Serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_UNHEALTHY)
    }
}

fn failed(args: &HealthArgs, status: &Status) -> Error {
    let what = match (&args.service, status.code()) {
        (Some(service), Code::NotFound) => {
            return Error::new(format!(
                "the server at {} does not know service {service:?}",
                args.connect.target
            ))
            .with_exit(EXIT_RPC);
        }
        (_, Code::Unimplemented) => {
            return Error::new(format!(
                "the server at {} does not offer the health service (grpc.health.v1.Health)",
                args.connect.target
            ))
            .with_exit(EXIT_RPC);
        }
        (_, Code::Unavailable | Code::DeadlineExceeded) => EXIT_CONNECTION,
        _ => EXIT_RPC,
    };
    Error::rpc(&args.connect.target, "the health check", status).with_exit(what)
}
