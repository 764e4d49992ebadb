//! Runs the `debugging` example: it switches ferrogrpc's logging on for
//! itself (stderr gets the connection's debug events), and its stats
//! handlers print every event of the call on both sides.

#[path = "support/run.rs"]
mod run;

#[test]
fn debugging_example_logs_and_prints_call_events() {
    let (out, err) = run::run_with_stderr(env!("CARGO_BIN_EXE_debugging"));
    assert!(out.contains("logging: FERROGRPC_LOG=info"), "{out}");
    assert!(
        err.contains("DEBUG") && err.contains("accepted connection"),
        "{err}"
    );
    let events = [
        ("client", "begin /helloworld.Greeter/SayHello"),
        ("client", "sent a message of 11 bytes"),
        ("client", "got trailers"),
        ("client", "end: OK"),
        ("server", "begin /helloworld.Greeter/SayHello"),
        ("server", "got a message of 11 bytes"),
        ("server", "sent trailers"),
        ("server", "end: OK"),
    ];
    for (side, event) in events {
        let prefix = format!("{side} stats: call ");
        assert!(
            out.lines()
                .any(|l| l.starts_with(&prefix) && l.ends_with(event)),
            "no {side} {event:?} in:\n{out}"
        );
    }
    assert!(out.contains("client: channel state IDLE"), "{out}");
    assert!(out.contains("client: Hello debugging"), "{out}");
    assert!(out.contains("client: channel state READY"), "{out}");
}
