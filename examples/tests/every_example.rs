//! Every example binary is run by a test: the ones no other test runs are
//! run here (the interceptors demo, the route guide client against its
//! server), and a check that each `[[bin]]` of this package is named by
//! some test keeps new examples from going untested.

#[path = "support/run.rs"]
mod run;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

#[test]
fn interceptors_example_refuses_without_the_token_and_counts() {
    let out = run::run(env!("CARGO_BIN_EXE_interceptors"));
    assert!(
        out.contains("refused: UNAUTHENTICATED: missing token"),
        "{out}"
    );
    assert!(out.contains("/helloworld.Greeter/SayHello OK: 1"), "{out}");
}

#[test]
fn route_guide_client_calls_every_method_of_its_server() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut server = Command::new(env!("CARGO_BIN_EXE_route_guide_server"))
        .arg(&addr)
        .env_remove("FERROGRPC_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It says it listens once it does.
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "{line}");
    let out = Command::new(env!("CARGO_BIN_EXE_route_guide_client"))
        .arg(&addr)
        .env_remove("FERROGRPC_LOG")
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("GetFeature:"), "{stdout}");
}

/// Each `[[bin]]` in `Cargo.toml` is run by a test (or by `helloworld.sh`).
#[test]
fn every_example_binary_is_run_by_a_test() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut tests = std::fs::read_to_string(root.join("helloworld.sh")).unwrap();
    for entry in std::fs::read_dir(root.join("tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            tests.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    let untested: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|name| *name != "ferrogrpc-examples")
        .filter(|name| !tests.contains(&format!("CARGO_BIN_EXE_{name}")))
        .collect();
    assert!(untested.is_empty(), "examples no test runs: {untested:?}");
}
