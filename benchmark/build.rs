fn main() -> std::io::Result<()> {
    ferrogrpc_build::configure()
        .build_client(true)
        .build_server(true)
        .compile(
            &["../examples/proto/helloworld.proto"],
            &["../examples/proto"],
        )
}
