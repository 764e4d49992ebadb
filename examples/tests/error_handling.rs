//! Runs the `error_handling` example: the client gets the code, message,
//! trailing metadata and binary details a handler put in its status.

#[path = "support/run.rs"]
mod run;

#[test]
fn error_handling_example_shows_status_contents() {
    let out = run::run(env!("CARGO_BIN_EXE_error_handling"));
    for line in [
        "client: Hello Ada",
        "client: code INVALID_ARGUMENT, message \"name must not be empty\"",
        "client: trailer x-field: name",
        "client: trailer x-limits-bin: bytes [1, 64]",
        "client: code INVALID_ARGUMENT, message \"name is 19 bytes long, the limit is 10\"",
        "bytes of details: ",
        "client: error info: reason NAME_TOO_LONG, domain greeter.example.com",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}
