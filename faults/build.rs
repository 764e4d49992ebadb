//! Generates the `faults` messages, client stub and server trait from
//! `proto/faults.proto`. No protoc needed.

fn main() -> std::io::Result<()> {
    ferrogrpc_build::compile_protos(&["proto/faults.proto"], &["proto"])
}
