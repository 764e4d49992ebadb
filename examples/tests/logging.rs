//! FERROGRPC_LOG switches on ferrogrpc's stderr logging; without it the
//! library prints nothing.

use std::{
    io::Read,
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the helloworld server under `env`, calls it once, stops it, and
/// returns what it wrote to stderr.
fn server_stderr(env: &[(&str, &str)]) -> String {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = Command::new(env!("CARGO_BIN_EXE_helloworld_server"))
        .arg(&addr)
        .env_remove("FERROGRPC_LOG")
        .env_remove("FERROGRPC_LOG_VERBOSITY")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new(env!("CARGO_BIN_EXE_helloworld_client"))
        .args([&addr, "logging-test"])
        .env_remove("FERROGRPC_LOG")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // Give the server a moment to log the connection's end, then stop it.
    std::thread::sleep(Duration::from_millis(200));
    server.kill().unwrap();
    server.wait().unwrap();
    let mut stderr = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

#[test]
fn silent_by_default_and_verbose_on_request() {
    let quiet = server_stderr(&[]);
    assert!(quiet.is_empty(), "no logs without FERROGRPC_LOG: {quiet}");
    let info_only = server_stderr(&[("FERROGRPC_LOG", "info")]);
    assert!(!info_only.contains("accepted connection"), "{info_only}");
    let verbose = server_stderr(&[("FERROGRPC_LOG", "info"), ("FERROGRPC_LOG_VERBOSITY", "1")]);
    assert!(verbose.contains("accepted connection"), "{verbose}");
    assert!(verbose.contains("DEBUG"), "{verbose}");
}
