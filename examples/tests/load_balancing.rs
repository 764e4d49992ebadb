//! Runs the `load_balancing` and `custom_resolver` examples and checks what
//! they print: which servers answered the calls.

use std::{
    collections::BTreeSet,
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Runs an example binary to completion (failing the test if it takes more
/// than a minute or exits unsuccessfully) and returns its stdout.
fn run(binary: &str) -> String {
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
    out
}

/// The server numbers in the replies printed on lines starting with
/// `prefix` ("... from server N").
fn answers(output: &str, prefix: &str) -> Vec<usize> {
    output
        .lines()
        .filter(|line| line.starts_with(prefix))
        .map(|line| {
            let (_, n) = line.rsplit_once("from server ").expect(line);
            n.parse().expect(line)
        })
        .collect()
}

#[test]
fn load_balancing_round_robin_spreads_and_pick_first_sticks() {
    let output = run(env!("CARGO_BIN_EXE_load_balancing"));

    let round_robin = answers(&output, "round_robin call ");
    assert_eq!(round_robin.len(), 9, "{output}");
    let distinct: BTreeSet<_> = round_robin.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "round_robin uses every server:\n{output}"
    );

    let pick_first = answers(&output, "pick_first call ");
    assert_eq!(pick_first.len(), 9, "{output}");
    let distinct: BTreeSet<_> = pick_first.iter().collect();
    assert_eq!(distinct.len(), 1, "pick_first uses one server:\n{output}");
}

#[test]
fn custom_resolver_and_manual_resolver() {
    let output = run(env!("CARGO_BIN_EXE_custom_resolver"));

    // The `example` scheme resolved to both servers.
    let example: BTreeSet<_> = answers(&output, "example call ").into_iter().collect();
    assert_eq!(example, BTreeSet::from([1, 2]), "{output}");
    assert!(output.contains("unknown name refused"), "{output}");

    // The manual resolver moved the calls from server 1 to server 2, and
    // none failed on the way.
    let runs: Vec<&str> = output
        .lines()
        .filter(|line| line.starts_with("manual: calls "))
        .collect();
    assert_eq!(runs.len(), 2, "{output}");
    assert!(runs[0].ends_with("answered by server 1"), "{output}");
    assert!(runs[1].ends_with("answered by server 2"), "{output}");
    assert!(output.contains(" calls, 0 failed"), "{output}");
}
