//! Runs the `wait_for_ready` example: while the server is down a fail-fast
//! call fails with UNAVAILABLE, and a wait-for-ready call waits for it to
//! start.

#[path = "support/run.rs"]
mod run;

#[test]
fn wait_for_ready_example_waits_for_the_server() {
    let out = run::run(env!("CARGO_BIN_EXE_wait_for_ready"));
    for line in [
        "client: fail-fast call: UNAVAILABLE",
        "server: listening on",
        "client: wait-for-ready call: Hello wait-for-ready",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}
