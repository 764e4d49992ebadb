//! The built `ferrogrpc` command against real servers on loopback: the
//! interop test service with reflection and health, over plaintext and TLS,
//! and servers that lack reflection or health.

use std::{
    io::{BufRead as _, Write as _},
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::mpsc,
};

use ferrogrpc::{
    credentials::{tls::ServerTlsConfig, ServerCredentials},
    errdetails::BadRequest,
    health::{self, ServingStatus},
    server::{Server, ServerBuilder},
    Status,
};
use interop::{pb::test_service_server::TestServiceServer, server::InteropService};

const TEST_SERVICE: &str = "grpc.testing.TestService";

/// What a test server offers besides the test service.
#[derive(Clone, Copy)]
struct Offers {
    reflection: bool,
    health: bool,
    tls: bool,
}

const ALL: Offers = Offers {
    reflection: true,
    health: true,
    tls: false,
};

/// A server on a loopback port, served from its own thread for the rest of
/// the test process. Calls with `x-fail-with-details` metadata are refused
/// with INVALID_ARGUMENT and a `google.rpc.BadRequest` detail.
fn serve(offers: Offers) -> (SocketAddr, health::Server) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let health = health::Server::new();
            health.set_serving_status(TEST_SERVICE, ServingStatus::Serving);
            let mut builder: ServerBuilder = ferrogrpc::admin::register(Server::builder())
                .interceptor_fn(|metadata, info| match metadata.get("x-fail-with-details") {
                    Some(_) if info.method.contains("TestService") => Err(
                        Status::invalid_argument("name is too short").with_error_details([
                            BadRequest {
                                field_violations: vec![
                                    ferrogrpc::errdetails::bad_request::FieldViolation {
                                        field: "name".into(),
                                        description: "at least 3 letters".into(),
                                        ..Default::default()
                                    },
                                ],
                            }
                            .into(),
                        ]),
                    ),
                    _ => Ok(()),
                });
            if offers.tls {
                builder = builder.credentials(ServerCredentials::tls(ServerTlsConfig::from_pem(
                    std::fs::read(certs().join("server1.pem")).unwrap(),
                    std::fs::read(certs().join("server1.key")).unwrap(),
                )));
            }
            if offers.health {
                builder = builder.add_health(&health);
            }
            if offers.reflection {
                builder = builder.add_reflection();
            }
            let server = builder
                .add_service(TestServiceServer::new(InteropService))
                .build();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send((listener.local_addr().unwrap(), health.clone()))
                .unwrap();
            let _ = server.serve_listener(listener).await;
        });
    });
    rx.recv().unwrap()
}

/// A directory with a test CA (`ca.pem`) and a server certificate for
/// `foo.test.google.fr` and `localhost` (`server1.pem`, `server1.key`) it
/// signed, made once per test process with rcgen (nothing to generate
/// before `cargo test` on a fresh checkout).
fn certs() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("ferrogrpc-cli-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "cli test root");
        let ca = params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let names = vec!["foo.test.google.fr".to_string(), "localhost".to_string()];
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "foo.test.google.fr");
        let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server1.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("server1.key"), key.serialize_pem()).unwrap();
        dir
    })
    .clone()
}

/// Runs the command with `args` (and `stdin`), returning its output.
fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrogrpc"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs and expects exit code 0, returning stdout.
fn ok(args: &[&str], stdin: Option<&str>) -> String {
    let output = run(args, stdin);
    assert!(
        output.status.success(),
        "ferrogrpc {args:?} failed ({:?}): {}",
        output.status,
        stderr(&output)
    );
    stdout(&output)
}

/// Runs and expects exit code `code`, returning stderr.
fn fails(args: &[&str], code: i32) -> String {
    let output = run(args, None);
    assert_eq!(
        output.status.code(),
        Some(code),
        "ferrogrpc {args:?}: stdout {} stderr {}",
        stdout(&output),
        stderr(&output)
    );
    stderr(&output)
}

#[test]
fn list_shows_services_and_methods() {
    let (addr, _) = serve(ALL);
    let addr = addr.to_string();
    let services = ok(&["list", &addr, "--plaintext"], None);
    assert_eq!(
        services.lines().collect::<Vec<_>>(),
        [
            "grpc.channelz.v1.Channelz",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            TEST_SERVICE,
        ]
    );
    let methods = ok(&["list", &addr, "--plaintext", TEST_SERVICE], None);
    let expected: Vec<String> = [
        "EmptyCall",
        "UnaryCall",
        "CacheableUnaryCall",
        "StreamingOutputCall",
        "StreamingInputCall",
        "FullDuplexCall",
        "HalfDuplexCall",
        "UnimplementedCall",
    ]
    .iter()
    .map(|m| format!("{TEST_SERVICE}.{m}"))
    .collect();
    assert_eq!(methods.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn list_falls_back_to_reflection_v1alpha() {
    // A server with only the older reflection service.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let reflection = ferrogrpc::reflection::Builder::new()
                .register_file_descriptors(interop::pb::FILE_DESCRIPTORS)
                .unwrap()
                .build();
            let server = Server::builder()
                .add_service(reflection.v1alpha())
                .add_service(TestServiceServer::new(InteropService))
                .build();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let _ = server.serve_listener(listener).await;
        });
    });
    let addr = rx.recv().unwrap().to_string();
    let methods = ok(&["list", &addr, "--plaintext", TEST_SERVICE], None);
    assert!(
        methods.contains("grpc.testing.TestService.UnaryCall"),
        "{methods}"
    );
}

#[test]
fn describe_prints_proto_source() {
    let (addr, _) = serve(ALL);
    let addr = addr.to_string();
    let message = ok(
        &[
            "describe",
            &addr,
            "--plaintext",
            "grpc.testing.SimpleRequest",
        ],
        None,
    );
    assert!(
        message.starts_with("grpc.testing.SimpleRequest is a message:\nmessage SimpleRequest {\n"),
        "{message}"
    );
    assert!(
        message.contains("  .grpc.testing.Payload payload = 3;\n"),
        "{message}"
    );
    let service = ok(&["describe", &addr, "--plaintext", TEST_SERVICE], None);
    assert!(
        service.contains(
            "  rpc StreamingOutputCall ( .grpc.testing.StreamingOutputCallRequest ) returns ( stream .grpc.testing.StreamingOutputCallResponse );\n"
        ),
        "{service}"
    );
    let method = ok(
        &[
            "describe",
            &addr,
            "--plaintext",
            "grpc.testing.TestService.FullDuplexCall",
        ],
        None,
    );
    assert!(method.contains("rpc FullDuplexCall ( stream .grpc.testing.StreamingOutputCallRequest ) returns ( stream .grpc.testing.StreamingOutputCallResponse );"), "{method}");
    let enumeration = ok(
        &["describe", &addr, "--plaintext", "grpc.testing.PayloadType"],
        None,
    );
    assert!(
        enumeration.contains("enum PayloadType {\n  COMPRESSABLE = 0;\n}"),
        "{enumeration}"
    );
}

#[test]
fn call_unary_with_metadata_and_verbose_output() {
    let (addr, _) = serve(ALL);
    let addr = addr.to_string();
    let output = run(
        &[
            "call",
            &addr,
            "--plaintext",
            "grpc.testing.TestService/UnaryCall",
            "-d",
            r#"{"responseSize": 3, "fillServerId": false}"#,
            "-H",
            "x-grpc-test-echo-initial: hello",
            "-v",
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "{\"payload\":{\"body\":\"AAAA\"}}\n");
    let err = stderr(&output);
    assert!(
        err.contains("Response headers:\n  x-grpc-test-echo-initial: hello\n"),
        "{err}"
    );
    assert!(err.contains("Response trailers:"), "{err}");
}

#[test]
fn call_streams_in_each_direction() {
    let (addr, _) = serve(ALL);
    let addr = addr.to_string();
    // Server streaming: one line per message.
    let out = ok(
        &[
            "call",
            &addr,
            "--plaintext",
            "grpc.testing.TestService/StreamingOutputCall",
            "-d",
            r#"{"responseParameters": [{"size": 2}, {"size": 1}, {"size": 0}]}"#,
        ],
        None,
    );
    assert_eq!(
        out,
        "{\"payload\":{\"body\":\"AAA=\"}}\n{\"payload\":{\"body\":\"AA==\"}}\n{\"payload\":{}}\n"
    );
    // Client streaming from stdin: several JSON values.
    let out = ok(
        &[
            "call",
            &addr,
            "--plaintext",
            "grpc.testing.TestService.StreamingInputCall",
            "-d",
            "@",
        ],
        Some("{\"payload\": {\"body\": \"AAEC\"}}\n{\"payload\": {\"body\": \"AA==\"}}\n"),
    );
    assert_eq!(out, "{\"aggregatedPayloadSize\":4}\n");
    // Bidi: an answer per request.
    let out = ok(
        &[
            "call",
            &addr,
            "--plaintext",
            "grpc.testing.TestService/FullDuplexCall",
            "-d",
            r#"{"responseParameters": [{"size": 1}]} {"responseParameters": [{"size": 2}]}"#,
        ],
        None,
    );
    assert_eq!(
        out,
        "{\"payload\":{\"body\":\"AA==\"}}\n{\"payload\":{\"body\":\"AAA=\"}}\n"
    );
}

#[test]
fn call_reports_a_status_with_its_details_and_exit_code() {
    let (addr, _) = serve(ALL);
    let addr = addr.to_string();
    let output = run(
        &[
            "call",
            &addr,
            "--plaintext",
            "grpc.testing.TestService/EmptyCall",
            "-H",
            "x-fail-with-details: yes",
        ],
        None,
    );
    // 64 + INVALID_ARGUMENT (3), as grpcurl.
    assert_eq!(output.status.code(), Some(67), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("Code: INVALID_ARGUMENT\n"), "{err}");
    assert!(err.contains("Message: name is too short\n"), "{err}");
    assert!(
        err.contains(r#""@type":"type.googleapis.com/google.rpc.BadRequest""#)
            && err.contains(r#""field":"name""#)
            && err.contains(r#""description":"at least 3 letters""#),
        "{err}"
    );
    // A status the server's handler chose.
    let err = fails(
        &[
            "call",
            &addr,
            "--plaintext",
            "grpc.testing.TestService/UnaryCall",
            "-d",
            r#"{"responseStatus": {"code": 5, "message": "no such thing"}}"#,
        ],
        64 + 5,
    );
    assert!(
        err.contains("Code: NOT_FOUND\n  Message: no such thing\n"),
        "{err}"
    );
}

#[test]
fn call_input_errors_are_named() {
    let (addr, _) = serve(ALL);
    let addr = addr.to_string();
    let err = fails(
        &[
            "call",
            &addr,
            "--plaintext",
            "grpc.testing.TestService/NoSuchCall",
        ],
        1,
    );
    assert!(
        err.contains("service grpc.testing.TestService has no method \"NoSuchCall\" (it has: EmptyCall, UnaryCall"),
        "{err}"
    );
    let err = fails(&["call", &addr, "--plaintext", "no.Such/Call"], 1);
    assert!(
        err.contains("the server does not know symbol \"no.Such/Call\""),
        "{err}"
    );
    let err = fails(
        &[
            "call",
            &addr,
            "--plaintext",
            "grpc.testing.TestService/UnaryCall",
            "-d",
            r#"{"payload": {"bodyy": "AA=="}}"#,
        ],
        1,
    );
    assert!(
        err.contains("does not fit grpc.testing.SimpleRequest at field payload")
            && err.contains("bodyy"),
        "{err}"
    );
    let err = fails(
        &[
            "call",
            &addr,
            "--plaintext",
            "grpc.testing.TestService/UnaryCall",
            "-d",
            "{} {}",
        ],
        1,
    );
    assert!(
        err.contains("takes exactly one request message; got 2"),
        "{err}"
    );
}

#[test]
fn files_replace_reflection() {
    let (addr, _) = serve(Offers {
        reflection: false,
        ..ALL
    });
    let addr = addr.to_string();
    let err = fails(&["list", &addr, "--plaintext"], 64 + 12);
    assert!(err.contains("does not offer server reflection"), "{err}");
    let proto = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop/proto");
    let test_proto = proto.join("grpc/testing/test.proto");
    let (import, file) = (proto.to_str().unwrap(), test_proto.to_str().unwrap());
    let services = ok(
        &[
            "list",
            &addr,
            "--plaintext",
            "--proto",
            file,
            "--import-path",
            import,
        ],
        None,
    );
    assert!(
        services.lines().any(|l| l == TEST_SERVICE)
            && services
                .lines()
                .any(|l| l == "grpc.testing.UnimplementedService"),
        "{services}"
    );
    let out = ok(
        &[
            "call",
            &addr,
            "--plaintext",
            "--proto",
            file,
            "--import-path",
            import,
            "grpc.testing.TestService/UnaryCall",
            "-d",
            r#"{"responseSize": 1}"#,
        ],
        None,
    );
    assert_eq!(out, "{\"payload\":{\"body\":\"AA==\"}}\n");
}

#[test]
fn transport_mismatches_and_unreachable_servers_are_named() {
    let (tls_addr, _) = serve(Offers { tls: true, ..ALL });
    let (plain_addr, _) = serve(ALL);
    let (tls_addr, plain_addr) = (tls_addr.to_string(), plain_addr.to_string());
    let ca = certs().join("ca.pem");
    let ca = ca.to_str().unwrap();
    // TLS works with the right CA and name.
    let out = ok(
        &[
            "list",
            &tls_addr,
            "--cacert",
            ca,
            "--servername",
            "foo.test.google.fr",
        ],
        None,
    );
    assert!(out.contains(TEST_SERVICE), "{out}");
    // TLS to a plaintext server.
    let err = fails(
        &[
            "list",
            &plain_addr,
            "--cacert",
            ca,
            "--servername",
            "foo.test.google.fr",
        ],
        64 + 14,
    );
    assert!(
        err.contains("did not answer with TLS") && err.contains("--plaintext"),
        "{err}"
    );
    // Plaintext to a TLS server.
    let err = fails(&["list", &tls_addr, "--plaintext"], 64 + 14);
    assert!(
        err.contains("is it a TLS server? (drop --plaintext)"),
        "{err}"
    );
    // --insecure skips verification, with a warning.
    let output = run(&["list", &tls_addr, "--insecure"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains(TEST_SERVICE));
    assert!(
        stderr(&output).contains("warning: --insecure"),
        "{}",
        stderr(&output)
    );
    // An untrusted certificate.
    let err = fails(
        &["list", &tls_addr, "--servername", "foo.test.google.fr"],
        64 + 14,
    );
    assert!(err.contains("--cacert"), "{err}");
    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = fails(&["list", &port.to_string(), "--plaintext"], 64 + 14);
    assert!(err.contains("nothing listens at that address"), "{err}");
}

#[test]
fn health_checks_as_grpc_health_probe() {
    let (addr, health) = serve(ALL);
    let addr = addr.to_string();
    assert_eq!(
        ok(&["health", &addr, "--plaintext"], None),
        "status: SERVING\n"
    );
    assert_eq!(
        ok(&["health", &addr, "--plaintext", TEST_SERVICE], None),
        "status: SERVING\n"
    );
    health.set_serving_status(TEST_SERVICE, ServingStatus::NotServing);
    let output = run(&["health", &addr, "--plaintext", TEST_SERVICE], None);
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(stdout(&output), "status: NOT_SERVING\n");
    let err = fails(&["health", &addr, "--plaintext", "no.Such"], 3);
    assert!(err.contains("does not know service \"no.Such\""), "{err}");
    // --watch prints each change, until its deadline ends it: the exit
    // code is the last status's.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrogrpc"))
        .args([
            "health",
            &addr,
            "--plaintext",
            TEST_SERVICE,
            "--watch",
            "--timeout",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "status: NOT_SERVING");
    health.set_serving_status(TEST_SERVICE, ServingStatus::Serving);
    assert_eq!(lines.next().unwrap().unwrap(), "status: SERVING");
    health.shutdown();
    assert_eq!(lines.next().unwrap().unwrap(), "status: NOT_SERVING");
    assert!(lines.next().is_none());
    assert_eq!(child.wait().unwrap().code(), Some(4));
    let (bare, _) = serve(Offers {
        health: false,
        ..ALL
    });
    let err = fails(&["health", &bare.to_string(), "--plaintext"], 3);
    assert!(err.contains("does not offer the health service"), "{err}");
}

#[test]
fn channelz_shows_the_servers_counts_and_connections() {
    let (addr, _) = serve(ALL);
    let addr = addr.to_string();
    // Calls from .proto files, so that no reflection call is counted.
    let proto = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop/proto");
    let test_proto = proto.join("grpc/testing/test.proto");
    let files = [
        "--proto",
        test_proto.to_str().unwrap(),
        "--import-path",
        proto.to_str().unwrap(),
    ];
    let call = |method: &str, data: &str| {
        let mut args = vec!["call", &addr, "--plaintext"];
        args.extend(files);
        args.extend([method, "-d", data]);
        run(&args, None)
    };
    assert!(call("grpc.testing.TestService/EmptyCall", "{}")
        .status
        .success());
    assert!(call("grpc.testing.TestService/UnaryCall", "{}")
        .status
        .success());
    assert!(!call(
        "grpc.testing.TestService/UnaryCall",
        r#"{"responseStatus": {"code": 2}}"#
    )
    .status
    .success());
    let out = ok(&["channelz", &addr, "--plaintext"], None);
    // Channelz is per process, and this test process runs many servers:
    // find this one by its listen socket.
    let all: Vec<&str> = out.lines().collect();
    let at = all
        .iter()
        .position(|l| l.starts_with("  listen socket ") && l.ends_with(&format!(": {addr}")))
        .unwrap_or_else(|| panic!("{out}"));
    let end = all[at..]
        .iter()
        .position(|l| !l.starts_with(' '))
        .map_or(all.len(), |n| at + n);
    let lines = &all[at - 1..end];
    // The first GetServers call is under way as it answers.
    assert!(
        lines[0].starts_with("server ")
            && lines[0].ends_with(": calls started 4 succeeded 2 failed 1"),
        "{out}"
    );
    // Only the channelz command's own connection is still open.
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("  socket ")).count(),
        1,
        "{out}"
    );
    let socket = lines
        .iter()
        .position(|l| l.starts_with("  socket "))
        .unwrap();
    assert!(
        lines[socket].contains(&format!("{addr} <-> 127.0.0.1:")),
        "{out}"
    );
    assert!(
        lines[socket + 1].starts_with("    streams started "),
        "{out}"
    );
    // A server without channelz says so.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let server = Server::builder()
                .add_service(TestServiceServer::new(InteropService))
                .build();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let _ = server.serve_listener(listener).await;
        });
    });
    let bare = rx.recv().unwrap().to_string();
    let err = fails(&["channelz", &bare, "--plaintext"], 64 + 12);
    assert!(err.contains("does not offer channelz"), "{err}");
}

/// A server that counts the test service's calls it saw end.
fn counting_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::{atomic::AtomicUsize, Arc};
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let server = Server::builder()
                .interceptor_fn(move |_, info| {
                    if info.method.contains("TestService") {
                        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(())
                })
                .add_reflection()
                .add_service(TestServiceServer::new(InteropService))
                .build();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let _ = server.serve_listener(listener).await;
        });
    });
    (rx.recv().unwrap().to_string(), calls)
}

#[test]
fn bench_counts_match_the_servers() {
    use std::sync::atomic::Ordering;
    let (addr, calls) = counting_server();
    let json = ok(
        &[
            "bench",
            &addr,
            "--plaintext",
            "grpc.testing.TestService/UnaryCall",
            "-d",
            r#"{"responseSize": 4}"#,
            "-n",
            "40",
            "-c",
            "4",
            "--connections",
            "2",
            "--format",
            "json",
        ],
        None,
    );
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["count"], 40, "{json}");
    assert_eq!(report["status"]["OK"], 40, "{json}");
    assert_eq!(calls.load(Ordering::SeqCst), 40);
    let latency = &report["latency_us"];
    assert!(latency["min"].as_u64() <= latency["p50"].as_u64(), "{json}");
    assert!(latency["p50"].as_u64() <= latency["p99"].as_u64(), "{json}");
    assert!(latency["p99"].as_u64() <= latency["max"].as_u64(), "{json}");
    let counted: u64 = report["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 40, "{json}");

    // Failing calls are counted by their status.
    let json = ok(
        &[
            "bench",
            &addr,
            "--plaintext",
            "grpc.testing.TestService/UnaryCall",
            "-d",
            r#"{"responseStatus": {"code": 2, "message": "no"}}"#,
            "-n",
            "10",
            "--format",
            "json",
        ],
        None,
    );
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["status"]["UNKNOWN"], 10, "{json}");
    assert_eq!(calls.load(Ordering::SeqCst), 50);

    // Server streaming, for a duration at a limited rate: every call ends
    // OK and the rate caps the count (20/s for 300 ms: at most 7).
    let json = ok(
        &[
            "bench",
            &addr,
            "--plaintext",
            "grpc.testing.TestService/StreamingOutputCall",
            "-d",
            r#"{"responseParameters": [{"size": 1}, {"size": 2}]}"#,
            "-z",
            "300ms",
            "--rps",
            "20",
            "--format",
            "json",
        ],
        None,
    );
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let count = report["count"].as_u64().unwrap();
    assert!((1..=7).contains(&count), "{json}");
    assert_eq!(report["status"]["OK"].as_u64(), Some(count), "{json}");

    // CSV: a header and a row per call.
    let csv = ok(
        &[
            "bench",
            &addr,
            "--plaintext",
            "grpc.testing.TestService/EmptyCall",
            "-n",
            "5",
            "--format",
            "csv",
        ],
        None,
    );
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "start_us,latency_us,status");
    assert_eq!(rows.len(), 6, "{csv}");
    assert!(rows[1..].iter().all(|r| r.ends_with(",OK")), "{csv}");
}

#[test]
fn completions_cover_every_subcommand() {
    let script = ok(&["completions", "bash"], None);
    for sub in ["list", "describe", "call", "health", "channelz", "bench"] {
        assert!(script.contains(sub), "{sub} missing");
    }
    assert!(script.contains("--plaintext"));
}

#[test]
fn bench_plots_a_png_or_says_which_font_it_needs() {
    let (addr, _) = counting_server();
    let dir = std::env::temp_dir().join(format!("ferrogrpc-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("bench.png");
    let args = [
        "bench",
        &addr,
        "--plaintext",
        "grpc.testing.TestService/EmptyCall",
        "-n",
        "30",
        "--format",
        "json",
        "--plot",
        png.to_str().unwrap(),
    ];
    // Where the command looks for a font for the labels, when
    // FERROGRPC_PLOT_FONT is not set.
    let font = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
        "/usr/share/fonts/noto/NotoSans-Regular.ttf",
        "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    ]
    .iter()
    .any(|f| std::path::Path::new(f).exists())
        || std::env::var_os("FERROGRPC_PLOT_FONT").is_some();
    let output = run(&args, None);
    if font {
        assert!(output.status.success(), "{}", stderr(&output));
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        // 1200 x 900, from the IHDR chunk.
        assert_eq!(&bytes[16..24], &[0, 0, 4, 176, 0, 0, 3, 132]);
    } else {
        assert_eq!(output.status.code(), Some(1));
        assert!(
            stderr(&output).contains("set FERROGRPC_PLOT_FONT"),
            "{}",
            stderr(&output)
        );
    }
    // A font file that is not a font is refused by name.
    let bad = dir.join("not-a-font.ttf");
    std::fs::write(&bad, b"hello").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ferrogrpc"))
        .args(args)
        .env("FERROGRPC_PLOT_FONT", &bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("is not a TrueType or OpenType font"),
        "{}",
        stderr(&output)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Serves the test service (with reflection) on `listener`, built by
/// `builder`, from a thread of its own.
fn serve_on<L>(
    builder: impl FnOnce() -> ServerBuilder + Send + 'static,
    bind: impl FnOnce() -> L + Send + 'static,
) where
    L: ferrogrpc::server::Listener + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let server = builder()
                .add_reflection()
                .add_service(TestServiceServer::new(InteropService))
                .build();
            let listener = bind();
            tx.send(()).unwrap();
            let _ = server.serve_listener(listener).await;
        });
    });
    rx.recv().unwrap();
}

#[test]
fn mutual_tls_and_unix_sockets() {
    // A CA, a server certificate and a client certificate, made here.
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(format!("ferrogrpc-cli-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "test root");
    let ca_cert = params.self_signed(&ca_key).unwrap();
    let write_leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    };
    let (server_cert, server_key) = write_leaf("localhost");
    let (cert, key) = write_leaf("client");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    // A server that requires a client certificate from that CA.
    let (tx, rx) = mpsc::channel();
    let server_files = (server_cert, server_key, ca.clone());
    serve_on(
        move || {
            let read = |p: &PathBuf| std::fs::read(p).unwrap();
            Server::builder().credentials(ServerCredentials::tls(
                ServerTlsConfig::from_pem(read(&server_files.0), read(&server_files.1))
                    .client_ca_pem(read(&server_files.2))
                    .client_auth(ferrogrpc::credentials::tls::ClientAuth::Required),
            ))
        },
        move || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            tokio::net::TcpListener::from_std(listener).unwrap()
        },
    );
    let addr = rx.recv().unwrap().to_string();
    let tls = [
        "--cacert",
        ca.to_str().unwrap(),
        "--servername",
        "localhost",
    ];
    let mut with_cert = vec!["list", &addr];
    with_cert.extend(tls);
    with_cert.extend([
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert!(ok(&with_cert, None).contains(TEST_SERVICE));
    let mut without = vec!["list", &addr];
    without.extend(tls);
    let output = run(&without, None);
    assert!(
        !output.status.success(),
        "a server requiring a client certificate let us in"
    );

    // A Unix socket target.
    let path = dir.join("s.sock");
    let bind_path = path.clone();
    serve_on(Server::builder, move || {
        tokio::net::UnixListener::bind(&bind_path).unwrap()
    });
    let target = format!("unix:{}", path.display());
    assert!(ok(&["list", &target, "--plaintext"], None).contains(TEST_SERVICE));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn protosets_and_deadlines() {
    let (addr, _) = serve(Offers {
        reflection: false,
        ..ALL
    });
    let addr = addr.to_string();
    let proto = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop/proto");
    let set = protox::compile(["grpc/testing/test.proto"], [&proto]).unwrap();
    let dir = std::env::temp_dir().join(format!("ferrogrpc-cli-protoset-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let protoset = dir.join("test.protoset");
    std::fs::write(&protoset, prost::Message::encode_to_vec(&set)).unwrap();
    let protoset = protoset.to_str().unwrap();
    let out = ok(
        &[
            "describe",
            &addr,
            "--plaintext",
            "--protoset",
            protoset,
            "grpc.testing.EchoStatus",
        ],
        None,
    );
    assert!(
        out.contains("message EchoStatus {\n  int32 code = 1;\n  string message = 2;\n}"),
        "{out}"
    );
    // --timeout: a response due in 5 s misses a 0.3 s deadline.
    let err = fails(
        &[
            "call",
            &addr,
            "--plaintext",
            "--protoset",
            protoset,
            "grpc.testing.TestService/StreamingOutputCall",
            "-d",
            r#"{"responseParameters": [{"size": 1, "intervalUs": 5000000}]}"#,
            "--timeout",
            "0.3",
        ],
        64 + 4,
    );
    assert!(err.contains("Code: DEADLINE_EXCEEDED"), "{err}");
    // Not a descriptor set.
    std::fs::write(dir.join("bad.protoset"), b"\xff\xff").unwrap();
    let err = fails(
        &[
            "list",
            &addr,
            "--plaintext",
            "--protoset",
            dir.join("bad.protoset").to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("is not a FileDescriptorSet"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
