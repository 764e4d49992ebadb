//! Generates the `grpc.testing` messages, client stubs and server traits from
//! `proto/grpc/testing/test.proto` (and the files it imports). No protoc needed.

fn main() -> std::io::Result<()> {
    ferrogrpc_build::compile_protos(&["proto/grpc/testing/test.proto"], &["proto"])
}
