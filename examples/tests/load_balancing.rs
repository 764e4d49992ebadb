//! Runs the `load_balancing` and `custom_resolver` examples and checks what
//! they print: which servers answered the calls.

#[path = "support/run.rs"]
mod run;

use std::collections::BTreeSet;

use run::run;

/// The server numbers in the replies printed on lines starting with
/// `prefix` ("... from server N").
fn answers(output: &str, prefix: &str) -> Vec<usize> {
    output
        .lines()
        .filter(|line| line.starts_with(prefix))
        .map(|line| {
            let (_, n) = line.rsplit_once("from server ").expect(line);
            n.parse().expect(line)
        })
        .collect()
}

#[test]
fn load_balancing_round_robin_spreads_and_pick_first_sticks() {
    let output = run(env!("CARGO_BIN_EXE_load_balancing"));

    let round_robin = answers(&output, "round_robin call ");
    assert_eq!(round_robin.len(), 9, "{output}");
    let distinct: BTreeSet<_> = round_robin.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "round_robin uses every server:\n{output}"
    );

    let pick_first = answers(&output, "pick_first call ");
    assert_eq!(pick_first.len(), 9, "{output}");
    let distinct: BTreeSet<_> = pick_first.iter().collect();
    assert_eq!(distinct.len(), 1, "pick_first uses one server:\n{output}");
}

#[test]
fn custom_resolver_and_manual_resolver() {
    let output = run(env!("CARGO_BIN_EXE_custom_resolver"));

    // The `example` scheme resolved to both servers.
    let example: BTreeSet<_> = answers(&output, "example call ").into_iter().collect();
    assert_eq!(example, BTreeSet::from([1, 2]), "{output}");
    assert!(output.contains("unknown name refused"), "{output}");

    // The manual resolver moved the calls from server 1 to server 2, and
    // none failed on the way.
    let runs: Vec<&str> = output
        .lines()
        .filter(|line| line.starts_with("manual: calls "))
        .collect();
    assert_eq!(runs.len(), 2, "{output}");
    assert!(runs[0].ends_with("answered by server 1"), "{output}");
    assert!(runs[1].ends_with("answered by server 2"), "{output}");
    assert!(output.contains(" calls, 0 failed"), "{output}");
}
