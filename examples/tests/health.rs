//! Runs the `health` example and checks what it prints: calls alternate
//! over both servers, go to server 1 only while server 2 is NOT_SERVING,
//! and alternate again once it is SERVING.

#[path = "support/run.rs"]
mod run;

/// The servers that answered the calls labelled `label`.
fn servers(out: &str, label: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with(&format!("Hello {label} ")))
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect()
}

#[test]
fn health_example_moves_calls_off_the_server_that_is_not_serving() {
    let out = run::run(env!("CARGO_BIN_EXE_health"));
    let mut both = servers(&out, "both");
    both.sort();
    assert_eq!(both, ["1", "1", "2", "2"], "{out}");
    assert_eq!(servers(&out, "one"), ["1", "1", "1", "1"], "{out}");
    let mut again = servers(&out, "again");
    again.sort();
    assert_eq!(again, ["1", "1", "2", "2"], "{out}");
}
