//! The server side of the fault-injection scenarios: a `faults.Greeter`
//! that answers `Hello NAME` with its own pid, after `sleep_ms` if the
//! request asks for it.
//!
//! ```text
//! faults_server --addr 127.0.0.1:0
//! ```
//!
//! Once bound it prints `listening on HOST:PORT pid=PID` on stdout (so port
//! 0 works). It stops gracefully on SIGINT / SIGTERM. Keepalive and
//! connection-age settings are flags; run with `--help` for the list.

use std::{process::ExitCode, time::Duration};

use faults::{
    flags::{self, Flag},
    pb::{
        greeter_server::{Greeter, GreeterServer},
        HelloReply, HelloRequest,
    },
};
use ferrogrpc::{
    keepalive::{EnforcementPolicy, ServerParameters},
    server::Server,
    Request, Response, Status,
};

const FLAGS: &[Flag] = &[
    Flag {
        name: "addr",
        switch: false,
        default: "127.0.0.1:0",
        help: "address to listen on (port 0 picks a free one)",
    },
    Flag {
        name: "keepalive-time-ms",
        switch: false,
        default: "0",
        help: "ping a quiet client after this long (0: the library default, 2 h)",
    },
    Flag {
        name: "keepalive-timeout-ms",
        switch: false,
        default: "0",
        help: "close a connection whose ping is not answered within this (0: default, 20 s)",
    },
    Flag {
        name: "keepalive-min-time-ms",
        switch: false,
        default: "1000",
        help: "the least time between a client's pings before GOAWAY too_many_pings",
    },
    Flag {
        name: "permit-without-stream",
        switch: true,
        default: "",
        help: "let clients ping with no call active",
    },
    Flag {
        name: "max-connection-age-ms",
        switch: false,
        default: "0",
        help: "GOAWAY a connection after this age, +-10% (0: never)",
    },
    Flag {
        name: "max-connection-age-grace-ms",
        switch: false,
        default: "0",
        help: "after the age GOAWAY, how long calls may still run (0: no limit)",
    },
];

struct FaultsGreeter {
    pid: u32,
}

impl Greeter for FaultsGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let request = request.into_inner();
        if request.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(request.sleep_ms.into())).await;
        }
        Ok(Response::new(HelloReply {
            message: format!("Hello {}", request.name),
            server_pid: self.pid,
        }))
    }
}

fn millis(flags: &flags::Parsed, name: &str) -> Result<Option<Duration>, String> {
    let ms: u64 = flags.get(name)?;
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
}

async fn run(flags: flags::Parsed) -> Result<(), String> {
    let mut params = ServerParameters::default();
    if let Some(time) = millis(&flags, "keepalive-time-ms")? {
        params = params.with_time(time);
    }
    if let Some(timeout) = millis(&flags, "keepalive-timeout-ms")? {
        params = params.with_timeout(timeout);
    }
    if let Some(age) = millis(&flags, "max-connection-age-ms")? {
        params = params.with_max_connection_age(age);
    }
    if let Some(grace) = millis(&flags, "max-connection-age-grace-ms")? {
        params = params.with_max_connection_age_grace(grace);
    }
    let policy = EnforcementPolicy::default()
        .with_min_time(millis(&flags, "keepalive-min-time-ms")?.unwrap_or_default())
        .with_permit_without_stream(flags.on("permit-without-stream"));

    let addr = flags.text("addr");
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let pid = std::process::id();
    let server = Server::builder()
        .keepalive_params(params)
        .keepalive_enforcement_policy(policy)
        .add_service(GreeterServer::new(FaultsGreeter { pid }))
        .build();
    println!("listening on {local} pid={pid}");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let serving = server.clone();
    tokio::select! {
        res = serving.serve_listener(listener) => {
            res.map_err(|e| format!("serving failed: {e}"))?;
        }
        _ = tokio::signal::ctrl_c() => server.graceful_stop_timeout(Duration::from_secs(2)).await,
        _ = term.recv() => server.graceful_stop_timeout(Duration::from_secs(2)).await,
    }
    Ok(())
}

fn main() -> ExitCode {
    let flags = match flags::parse(std::env::args().skip(1), FLAGS) {
        Ok(flags) => flags,
        Err(e) if e == "help" => {
            print!("{}", flags::usage("faults_server", FLAGS));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!(
                "faults_server: {e}\n{}",
                flags::usage("faults_server", FLAGS)
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("faults_server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faults_server: {e}");
            ExitCode::FAILURE
        }
    }
}
