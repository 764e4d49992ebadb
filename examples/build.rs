fn main() -> std::io::Result<()> {
    ferrogrpc_build::compile_protos(
        &["proto/helloworld.proto", "proto/route_guide.proto"],
        &["proto"],
    )
}
