//! Runs the `multiplex` example: two services on one server, called over
//! one channel and one connection.

#[path = "support/run.rs"]
mod run;

#[test]
fn multiplex_example_serves_two_services_on_one_connection() {
    let out = run::run(env!("CARGO_BIN_EXE_multiplex"));
    for line in [
        "server: call to /helloworld.Greeter/SayHello",
        "server: call to /routeguide.RouteGuide/GetFeature",
        "client: Greeter says \"Hello multiplex\"",
        "client: RouteGuide found \"the feature at 1,2\"",
        "server: connections used: 1",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}
