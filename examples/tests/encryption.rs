//! Runs the `encryption` example: a client trusting the CA talks TLS to
//! the server and sees what was negotiated; one trusting another CA cannot
//! connect.

#[path = "support/run.rs"]
mod run;

#[test]
fn encryption_example_connects_over_tls() {
    let out = run::run(env!("CARGO_BIN_EXE_encryption"));
    for line in [
        "server: call over TLSv1.",
        "for server name \"localhost\"",
        "client: connected with TLSv1.",
        "client: server certificate names: [Dns(\"localhost\")]",
        "client: Hello TLS",
        "client trusting another CA: UNAVAILABLE",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}
