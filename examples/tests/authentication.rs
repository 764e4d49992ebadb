//! Runs the `authentication` example: only the right bearer token gets
//! through, and with mutual TLS the server names the client from its
//! certificate while a client without one is refused.

#[path = "support/run.rs"]
mod run;

#[test]
fn authentication_example_checks_tokens_and_client_certificates() {
    let out = run::run(env!("CARGO_BIN_EXE_authentication"));
    for line in [
        "client with good token: Hello token",
        "client with bad token: UNAUTHENTICATED: invalid token",
        "client with no token: UNAUTHENTICATED: missing token",
        "server: call from certificate for billing.example.com",
        "client with a certificate: Hello mtls (certificate for billing.example.com)",
        "client with no certificate: UNAVAILABLE",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    // The refused calls never reached the handler.
    assert_eq!(out.matches("server: call from").count(), 2, "{out}");
}
