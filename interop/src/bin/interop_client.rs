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
//! The cases themselves are in the `interop` library ([`interop::client`]).
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
    process::ExitCode,
    time::{Duration, Instant},
};

use ferrogrpc::{
    credentials::tls::ClientTlsConfig, metadata::MetadataMap, serviceconfig::ServiceConfig,
};
use interop::{
    client::{CaseError, Config, Interop, SoakConfig, ALL_CASES, LARGE_REQUEST, LARGE_RESPONSE},
    flags::{self, Kind, Spec},
};

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
    config.channel().map_err(bad)?;
    Ok(config)
}

// ----- main ----------------------------------------------------------------------

/// Collapses whitespace (including newlines) so a reason fits on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn run(interop: Interop) -> u8 {
    let started = Instant::now();
    let mut any_failed = false;
    let cases = interop.config().cases.clone();
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
    // A binary log from GRPC_BINARY_LOG_FILTER keeps its last second of
    // entries in memory until flushed.
    ferrogrpc::binarylog::flush();
    ExitCode::from(code)
}
