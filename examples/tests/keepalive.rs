//! Runs the `keepalive` example: the client's keepalive time is raised to
//! the 10 s floor, and connections closed for their age are replaced
//! without a failed call.

#[path = "support/run.rs"]
mod run;

#[test]
fn keepalive_example_applies_the_settings() {
    let out = run::run(env!("CARGO_BIN_EXE_keepalive"));
    for line in [
        "server: clients may ping every 10s (also without calls: true)",
        "client: asked to ping after 5s of quiet, the channel uses 10s; ping timeout 2s",
        " calls succeeded, 0 failed in 1 s",
        "server: the calls came over several connections",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}
