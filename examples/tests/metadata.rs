//! Runs the `metadata` example: request metadata reaches the handler, and
//! the handler's headers and trailers reach the client, ASCII and binary.

#[path = "support/run.rs"]
mod run;

#[test]
fn metadata_example_carries_metadata_both_ways() {
    let out = run::run(env!("CARGO_BIN_EXE_metadata"));
    for line in [
        "server: x-request-id = 42",
        "server: x-tag = [\"first\", \"second\"]",
        "server: x-trace-bin = Some([0, 1, 255])",
        "client: header x-request-id = 42",
        "client: header x-server = metadata-example",
        "client: message = Hello metadata",
        "client: trailer x-greeting-length = 14",
        "client: trailer x-checksum-bin = [202, 254]",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}
