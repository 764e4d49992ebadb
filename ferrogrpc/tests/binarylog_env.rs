//! `GRPC_BINARY_LOG_FILTER` and `FERROGRPC_BINARY_LOG_FILE`: the
//! environment is read once per process, so each case runs this test
//! binary again as a child with its own environment.

#![cfg(feature = "binarylog")]

use std::{path::Path, process::Command};

use bytes::Bytes;
use ferrogrpc::{
    binarylog::{
        self,
        pb::{grpc_log_entry::EventType, GrpcLogEntry},
    },
    client::Channel,
    codec::BytesCodec,
    server::{self, Server, ServerCall, Service},
    Request, Response,
};
use http::uri::PathAndQuery;
use prost::Message;

/// Which child case to run, set only in children.
const CHILD: &str = "FERROGRPC_BINARYLOG_ENV_CHILD";

/// Runs `case` in a child process with `env`; returns its stderr.
fn run_child(case: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, case)
        .env_remove(binarylog::FILTER_ENV)
        .env_remove(binarylog::FILE_ENV);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "child {case} failed: {}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

fn read_log(path: &Path) -> Vec<GrpcLogEntry> {
    let bytes = std::fs::read(path).unwrap();
    let mut rest = &bytes[..];
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        entries.push(GrpcLogEntry::decode(&rest[4..4 + len]).unwrap());
        rest = &rest[4 + len..];
    }
    entries
}

#[test]
fn a_filter_from_the_environment_logs_both_sides_to_the_named_file() {
    let path = std::env::temp_dir().join(format!("binarylog-env-{}.bin", std::process::id()));
    let stderr = run_child(
        "log",
        &[
            (binarylog::FILTER_ENV, "e.Echo/*"),
            (binarylog::FILE_ENV, path.to_str().unwrap()),
        ],
    );
    assert!(
        stderr.contains(&format!("written to {}", path.display())),
        "{stderr}"
    );
    let entries = read_log(&path);
    let _ = std::fs::remove_file(&path);
    // The server and the channel share the environment's log.
    let kinds: Vec<(i32, EventType)> = entries.iter().map(|e| (e.logger, e.r#type())).collect();
    assert_eq!(kinds.len(), 10, "{kinds:?}");
    for kind in [
        EventType::ClientHeader,
        EventType::ClientMessage,
        EventType::ServerHeader,
        EventType::ServerMessage,
        EventType::ServerTrailer,
    ] {
        assert_eq!(
            kinds.iter().filter(|(_, k)| *k == kind).count(),
            2,
            "{kinds:?}"
        );
    }
}

#[test]
fn without_a_file_the_log_goes_to_a_new_temporary_file_named_on_stderr() {
    let stderr = run_child("log", &[(binarylog::FILTER_ENV, "*")]);
    let line = stderr
        .lines()
        .find(|l| l.contains("written to"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let path = Path::new(line.rsplit("written to ").next().unwrap().trim());
    assert!(path.starts_with(std::env::temp_dir()), "{line}");
    assert_eq!(read_log(path).len(), 10);
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_bad_filter_is_reported_and_nothing_is_logged() {
    for bad in ["*,*", "-e.Echo/*", "e.Echo/M{h:x}", "e.Echo"] {
        let stderr = run_child("off", &[(binarylog::FILTER_ENV, bad)]);
        assert!(
            stderr.contains("refused, binary logging is off"),
            "{bad}: {stderr}"
        );
        assert!(!stderr.contains("written to"), "{bad}: {stderr}");
    }
}

#[test]
fn no_filter_means_no_log() {
    let stderr = run_child("off", &[]);
    assert!(!stderr.contains("binary log"), "{stderr}");
    let stderr = run_child("off", &[(binarylog::FILTER_ENV, "")]);
    assert!(!stderr.contains("binary log"), "{stderr}");
}

#[derive(Clone)]
struct Echo;

impl Service for Echo {
    fn name(&self) -> &'static str {
        "e.Echo"
    }

    fn call(&self, _method: &str, call: ServerCall) -> server::BoxFuture {
        Box::pin(server::unary(
            call,
            BytesCodec,
            |req: Request<Bytes>| async move { Ok(Response::new(req.into_inner())) },
        ))
    }
}

/// The child: `log` makes one logged call and flushes; `off` checks that
/// the environment gives no log.
#[test]
fn child() {
    let Ok(case) = std::env::var(CHILD) else {
        return;
    };
    match case.as_str() {
        "off" => assert!(binarylog::from_env().is_none()),
        "log" => {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let server = Server::builder().add_service(Echo).build();
                let serving = server.clone();
                tokio::spawn(async move { serving.serve_listener(listener).await });
                let channel = Channel::builder(addr.to_string()).build().unwrap();
                channel
                    .unary(
                        PathAndQuery::from_static("/e.Echo/Unary"),
                        Request::new(Bytes::from_static(b"hi")),
                        BytesCodec,
                    )
                    .await
                    .unwrap();
                // The server's trailer is written on its task after the
                // client has its answer; a graceful stop waits for it.
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(5), server.graceful_stop())
                        .await;
            });
            binarylog::flush();
        }
        other => panic!("unknown child case {other}"),
    }
}
