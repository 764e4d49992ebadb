//! Runs the `name_resolving` example: a registered resolver for a scheme
//! of its own, `passthrough` and `dns` all reach the server; a name the
//! resolver does not know fails.

#[path = "support/run.rs"]
mod run;

#[test]
fn name_resolving_example_resolves_every_scheme() {
    let out = run::run(env!("CARGO_BIN_EXE_name_resolving"));
    for target in [
        "example:///greeter: ",
        "passthrough:///localhost:",
        "dns:///localhost:",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(target))
            .unwrap_or_else(|| panic!("no line for {target} in:\n{out}"));
        assert!(line.contains("Hello resolver from server 1"), "{out}");
    }
    assert!(
        out.contains("example:///printer: UNAVAILABLE") && out.contains("no such service"),
        "{out}"
    );
}
