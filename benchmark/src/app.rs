//! The main loop both tools share: parse flags, build the runtime, then
//! serve (server mode), or run every configuration against a server of this
//! process (inproc) or on `--addr` (client mode) and print the results.
//!
//! The implementation under test is a [`System`]: ferrogrpc in `bench`,
//! tonic in `tonic_bench`.

use std::{future::Future, io, process::ExitCode, time::Duration};

use tokio::{net::TcpListener, sync::oneshot};

use crate::{
    driver::Measurement,
    flags::{self, Compression, Flags, Mode, RunConfig, Workload},
    payload,
    report::{self, Report},
};

/// An implementation of `bench.BenchService` to measure.
pub trait System {
    /// Its name in reports.
    const NAME: &'static str;

    /// Whether it can run `workload` with `compression`.
    ///
    /// # Errors
    /// Why not.
    fn supports(workload: Workload, compression: Compression) -> Result<(), String>;

    /// Serves `listener` until `stop` completes.
    fn serve(
        listener: TcpListener,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = io::Result<()>> + Send + 'static;

    /// Runs one configuration against the server at `addr`; asks the server
    /// for its counters at the window's edges when `ask_server` (client
    /// mode). Returns the measurement and, per worker, whether it was a
    /// sender (unconstrained streaming).
    fn run_client(
        config: RunConfig,
        addr: String,
        ask_server: bool,
    ) -> impl Future<Output = Result<(Measurement, Vec<bool>), String>> + Send + 'static;
}

/// How long an in-process server may take to stop after a run.
const SERVER_STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs the tool `tool` for `S` with the process's command line.
pub fn main<S: System>(tool: &str) -> ExitCode {
    let flags = flags::from_env(tool);
    if let Err(reason) = flags.security.check(tool) {
        eprintln!("{tool}: {reason}");
        return ExitCode::from(2);
    }
    crate::tls::set_security(flags.security);
    if flags.service_config.is_some() && tool == "tonic_bench" {
        eprintln!("{tool}: --service-config: tonic has no service config");
        return ExitCode::from(2);
    }
    crate::ours::set_service_config(flags.service_config.clone());
    if flags.mode != Mode::Server {
        for run in flags.runs() {
            if let Err(reason) = S::supports(run.workload, run.compression) {
                eprintln!("{tool}: {reason}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match crate::runtime_with_threads(flags.runtime_threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{tool}: cannot build the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match flags.mode {
            Mode::Server => serve::<S>(tool, &flags).await,
            Mode::Inproc | Mode::Client => measure::<S>(tool, &flags).await,
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{tool}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve<S: System>(tool: &str, flags: &Flags) -> io::Result<bool> {
    let listener = TcpListener::bind(&flags.addr).await?;
    let serve_for = flags.serve_for;
    eprintln!(
        "{tool}: {} server listening on {} (stops after {} or on Ctrl-C)",
        S::NAME,
        listener.local_addr()?,
        report::fmt_secs(serve_for)
    );
    S::serve(listener, async move {
        tokio::select! {
            () = tokio::time::sleep(serve_for) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    })
    .await?;
    Ok(true)
}

/// Runs every configuration; `Ok(false)` when any had errors.
async fn measure<S: System>(tool: &str, flags: &Flags) -> io::Result<bool> {
    let threads = flags.runtime_threads.unwrap_or_else(crate::available_cpus);
    let runs = flags.runs();
    eprintln!(
        "{tool}: {} {}, {}, {} runtime thread(s), {} CPU(s) available, warm-up {} + {} per configuration, {} payload, {} configuration(s)",
        S::NAME,
        flags.mode.name(),
        if flags.security == crate::flags::Security::Tls { "TLS" } else { "plaintext" },
        threads,
        crate::available_cpus(),
        report::fmt_secs(flags.warmup),
        report::fmt_secs(flags.duration),
        flags.payload.name(),
        runs.len(),
    );
    println!("{}", report::TABLE_HEADER);
    let mut clean = true;
    for config in runs {
        let result = match flags.mode {
            Mode::Client => S::run_client(config, flags.addr.clone(), true).await,
            _ => run_inproc::<S>(config).await?,
        };
        let (measurement, senders) = match result {
            Ok(r) => r,
            Err(e) => {
                eprintln!(
                    "{tool}: {} {} failed: {e}",
                    config.workload.name(),
                    config.compression.label()
                );
                clean = false;
                continue;
            }
        };
        clean &= measurement.errors == 0;
        let compression_ratio = config.compression.encoding().and_then(|name| {
            payload::compression_ratio(name, config.payload, config.req_size.max(config.resp_size))
        });
        let report = Report {
            system: S::NAME,
            mode: flags.mode,
            runtime_threads: threads,
            config,
            measurement,
            senders,
            compression_ratio,
        };
        report::print(&report, flags.json);
    }
    println!("{}", report::TABLE_LEGEND);
    Ok(clean)
}

/// Starts a server on a fresh loopback port, runs the client against it,
/// stops the server.
///
/// # Errors
/// The outer error when no port can be bound; the inner one when the run
/// failed.
pub async fn run_inproc<S: System>(
    config: RunConfig,
) -> io::Result<Result<(Measurement, Vec<bool>), String>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(S::serve(listener, async move {
        let _ = stop_rx.await;
    }));
    let result = S::run_client(config, addr, false).await;
    let _ = stop_tx.send(());
    let abort = server.abort_handle();
    match tokio::time::timeout(SERVER_STOP_GRACE, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Ok(Err(format!("server failed: {e}"))),
        Ok(Err(e)) => return Ok(Err(format!("server task failed: {e}"))),
        Err(_) => abort.abort(),
    }
    Ok(result)
}
