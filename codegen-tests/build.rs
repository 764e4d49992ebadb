fn main() -> std::io::Result<()> {
    ferrogrpc_build::compile_protos(
        &[
            "proto/routeguide.proto",
            "proto/edge.proto",
            "proto/wkt.proto",
            "proto/nopackage.proto",
            "proto/a/b/c/nested.proto",
            "proto/options.proto",
        ],
        &["proto"],
    )?;
    // Servers and clients that speak JSON too (`application/grpc+json`).
    ferrogrpc_build::configure()
        .json(true)
        .compile(&["proto/jsonmap.proto"], &["proto"])
}
