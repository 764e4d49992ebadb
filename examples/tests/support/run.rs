//! Runs an example binary, for the examples' tests.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Runs an example binary to completion (failing the test if it takes more
/// than a minute or exits unsuccessfully) and returns its stdout.
#[allow(dead_code)] // not every test uses both functions
pub fn run(binary: &str) -> String {
    run_with_stderr(binary).0
}

/// As [`run`], returning stdout and stderr.
#[allow(dead_code)]
pub fn run_with_stderr(binary: &str) -> (String, String) {
    let mut child = Command::new(binary)
        .env_remove("FERROGRPC_LOG")
        .env_remove("FERROGRPC_LOG_VERBOSITY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{binary} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "{binary} failed: {status}\n{out}\n{err}");
    (out, err)
}
