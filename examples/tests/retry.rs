//! Runs the `retry` example and checks what it prints: retried calls all
//! get through on their third attempt, calls without the policy see the
//! failures, and a hedge answers for a slow first attempt.

#[path = "support/run.rs"]
mod run;

#[test]
fn retry_example_retries_and_hedges() {
    let out = run::run(env!("CARGO_BIN_EXE_retry"));
    for i in 1..=3 {
        assert!(
            out.contains(&format!("retry call {i}: Hello retry {i} (on attempt 3)")),
            "{out}"
        );
    }
    assert!(out.contains("plain calls failed: 2"), "{out}");
    assert!(
        out.contains("hedged call: Hello hedge (from attempt 2)"),
        "{out}"
    );
}
