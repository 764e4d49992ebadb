//! Generates the benchmark's code, with no protoc:
//! - `helloworld` for `greeter_server` and `bench` with ferrogrpc-build;
//! - `bench` (benchmark/proto/bench.proto) with ferrogrpc-build, into
//!   `$OUT_DIR/bench.rs`;
//! - the same proto for tonic, into `$OUT_DIR/tonic/bench.rs`: protox parses
//!   it into a `FileDescriptorSet`, which tonic-prost-build's `compile_fds`
//!   turns into code (tonic's own `compile_protos` would need protoc);
//! - `soak` (benchmark/proto/soak.proto) with ferrogrpc-build, into
//!   `$OUT_DIR/soak.rs`, for the `soak` binary.
//!
//! Both generators map `bytes` fields to `bytes::Bytes`, so payloads are
//! shared rather than copied on either side.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    ferrogrpc_build::configure()
        .build_client(true)
        .build_server(true)
        .compile(
            &["../examples/proto/helloworld.proto"],
            &["../examples/proto"],
        )?;

    ferrogrpc_build::configure()
        .prost_config(|config| {
            config.bytes(["."]);
        })
        .compile(&["proto/bench.proto"], &["proto"])?;

    ferrogrpc_build::configure()
        .prost_config(|config| {
            config.bytes(["."]);
        })
        .compile(&["proto/soak.proto"], &["proto"])?;

    let fds = protox::compile(["bench.proto"], ["proto"])
        .map_err(|e| std::io::Error::other(format!("proto/bench.proto: {e}")))?;
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "OUT_DIR is not set")
        })?)
        .join("tonic");
    std::fs::create_dir_all(&out)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".")
        .out_dir(&out)
        .compile_fds(fds)
}
