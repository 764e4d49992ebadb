//! Runs the `cancellation` example: the client stops a server-streaming
//! and a bidi call half-way, and both handlers stop with them.

#[path = "support/run.rs"]
mod run;

#[test]
fn cancellation_example_stops_the_server_handlers() {
    let out = run::run(env!("CARGO_BIN_EXE_cancellation"));
    for line in [
        "client: got feature 3",
        "server: ListFeatures stopped after",
        "client: echoed \"two\"",
        "client: the stream ended with CANCELLED",
        "server: RouteChat stopped after 2 messages",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    assert!(!out.contains("no handler stopped"), "{out}");
}
