//! The gRPC interop test server on ferrogrpc: `grpc.testing.TestService`
//! with the server features of grpc/grpc's `doc/interop-test-descriptions.md`.
//!
//! ```text
//! interop_server --port 50051 [--use_tls true --tls_cert_file F --tls_key_file F]
//! ```
//!
//! The service is [`interop::server::InteropService`] (its features are
//! listed there). `grpc.testing.UnimplementedService` is not served, so
//! calls to it get `UNIMPLEMENTED` from the server itself.
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
    time::Duration,
};

use ferrogrpc::{
    credentials::{tls::ServerTlsConfig, ServerCredentials},
    health::{self, ServingStatus},
    server::{Server, ServerBuilder, Service},
};
use interop::{
    flags::{self, Kind, Spec},
    pb::test_service_server::TestServiceServer,
    server::InteropService,
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
    // With the admin services (channelz), so tools can look inside it.
    let builder = ferrogrpc::admin::register(Server::builder())
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
