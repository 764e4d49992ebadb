//! Runs the `compression` example: gzip asked for per call or per channel
//! compresses the request and the response; plain calls and short messages
//! stay uncompressed.

#[path = "support/run.rs"]
mod run;

#[test]
fn compression_example_compresses_both_ways() {
    let out = run::run(env!("CARGO_BIN_EXE_compression"));
    let sections: Vec<&str> = out.split("== ").collect();
    let [_, plain, per_call, per_channel] = sections[..] else {
        panic!("expected three sections in:\n{out}");
    };
    assert!(plain.contains("server: request compressed: false"), "{out}");
    assert!(
        plain.contains("client: response compressed: false"),
        "{out}"
    );
    assert!(
        per_call.contains("server: request compressed: true"),
        "{out}"
    );
    assert!(
        per_call.contains("client: response compressed: true"),
        "{out}"
    );
    assert!(per_call.contains("(compressed: true)"), "{out}");
    let (long, short) = per_channel
        .split_once("(a short message stays uncompressed)")
        .expect("a short message");
    assert!(long.contains("server: request compressed: true"), "{out}");
    assert!(long.contains("client: response compressed: true"), "{out}");
    assert!(short.contains("server: request compressed: false"), "{out}");
}
