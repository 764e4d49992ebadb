//! Runs the `deadline` example: a timeout shorter than the handler needs
//! ends the call with DEADLINE_EXCEEDED, and a server passes its deadline on
//! to the call it makes downstream.

#[path = "support/run.rs"]
mod run;

#[test]
fn deadline_example_times_out_and_propagates() {
    let out = run::run(env!("CARGO_BIN_EXE_deadline"));
    let (one, chained) = out
        .split_once("== deadline passed on ==")
        .expect("two sections");
    assert!(one.contains("client: Hello patient"), "{out}");
    assert!(one.contains("client: DEADLINE_EXCEEDED"), "{out}");
    assert!(chained.contains("client: Hello patient"), "{out}");
    assert!(chained.contains("giving the back server"), "{out}");
    // The back server saw a deadline on the downstream calls.
    assert_eq!(chained.matches("back: request with").count(), 2, "{out}");
    assert!(
        chained.contains("front: back server call ended with DEADLINE_EXCEEDED"),
        "{out}"
    );
    assert!(
        chained.trim_end().ends_with("client: DEADLINE_EXCEEDED"),
        "{out}"
    );
}
