//! Logging, as gRPC-Go's `grpclog`: ferrogrpc logs through `tracing`, and is
//! silent unless asked.
//!
//! - If your program installs a `tracing` subscriber, ferrogrpc's events go
//!   to it like any other crate's (target `ferrogrpc`, and `h2` for HTTP/2
//!   frame-level detail).
//! - Otherwise, set environment variables and ferrogrpc installs a plain
//!   stderr logger the first time a server or channel is built (cargo
//!   feature `env-logging`, on by default):
//!
//! | variable | values | effect |
//! |---|---|---|
//! | `FERROGRPC_LOG` | `error`, `warning` (or `warn`), `info` | the least severe level shown (like `GRPC_GO_LOG_SEVERITY_LEVEL`) |
//! | `FERROGRPC_LOG_VERBOSITY` | `0` (default), `1`, `2` | more detail (like `GRPC_GO_LOG_VERBOSITY_LEVEL`): `1` adds ferrogrpc's debug events — every connection, its end and reason, GOAWAY, stream resets, TLS handshake failures; `2` adds trace events and the h2 crate's own debug output |
//!
//! For example `FERROGRPC_LOG=info FERROGRPC_LOG_VERBOSITY=1 ./server`.

/// The filter the environment asks for, if logging is switched on.
pub fn env_filter_directives() -> Option<String> {
    let severity = std::env::var("FERROGRPC_LOG").ok()?;
    let level = match severity.trim().to_ascii_lowercase().as_str() {
        "error" => "error",
        "warning" | "warn" => "warn",
        "info" => "info",
        "debug" => "debug",
        "trace" => "trace",
        "" | "off" | "none" => return None,
        other => {
            eprintln!(
                "ferrogrpc: FERROGRPC_LOG={other:?} is not error, warning or info; using info"
            );
            "info"
        }
    };
    let verbosity: u32 = std::env::var("FERROGRPC_LOG_VERBOSITY")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some(match verbosity {
        0 => format!("ferrogrpc={level}"),
        1 => "ferrogrpc=debug".to_string(),
        _ => "ferrogrpc=trace,h2=debug".to_string(),
    })
}

/// Installs the stderr logger the environment asks for, once per process,
/// unless the program already has a global `tracing` subscriber. Called when
/// a server or channel is built; harmless to call again.
pub fn init_from_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(feature = "env-logging")]
        if let Some(directives) = env_filter_directives() {
            if tracing::dispatcher::has_been_set() {
                return;
            }
            let filter = tracing_subscriber::EnvFilter::new(directives);
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .try_init();
        }
    });
}
