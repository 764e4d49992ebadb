//! Runs the `reflection` example and checks what it prints: the services
//! the server lists, and the file that defines helloworld.Greeter.

#[path = "support/run.rs"]
mod run;

#[test]
fn reflection_example_lists_and_describes() {
    let out = run::run(env!("CARGO_BIN_EXE_reflection"));
    for service in [
        "helloworld.Greeter",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(out.contains(&format!("service: {service}\n")), "{out}");
    }
    assert!(
        out.contains(
            "helloworld.proto defines Greeter.SayHello(.helloworld.HelloRequest) returns (.helloworld.HelloReply)"
        ),
        "{out}"
    );
}
