//! The code generated for the standard services' protos (`proto/`) is
//! checked in under `src/generated/`, so that users of the library need no
//! code generation at build time. This test generates it again with
//! `ferrogrpc-build` and fails when it differs; run it with
//! `FERROGRPC_REGENERATE=1` to write the new code instead.

use std::path::{Path, PathBuf};

/// Each checked-in file, by proto package, and the protos it comes from.
const GENERATED: &[(&str, &[&str])] = &[
    ("grpc.health.v1", &["grpc/health/v1/health.proto"]),
    ("grpc.channelz.v1", &["grpc/channelz/v1/channelz.proto"]),
    ("grpc.binarylog.v1", &["grpc/binlog/v1/binarylog.proto"]),
    (
        "grpc.reflection.v1",
        &["grpc/reflection/v1/reflection.proto"],
    ),
    (
        "grpc.reflection.v1alpha",
        &["grpc/reflection/v1alpha/reflection.proto"],
    ),
    (
        "google.rpc",
        &["google/rpc/status.proto", "google/rpc/error_details.proto"],
    ),
];

/// The settings of a package's generation beyond the defaults.
fn configure(package: &str) -> ferrogrpc_build::Builder {
    let builder = ferrogrpc_build::configure();
    match package {
        // The error details travel packed in `google.protobuf.Any`: their
        // messages implement `prost::Name`, with the type URL prefix every
        // gRPC implementation packs them with (`errdetails` module).
        "google.rpc" => builder.prost_config(|config| {
            config
                .enable_type_names()
                .type_name_domain(["."], "type.googleapis.com");
        }),
        _ => builder,
    }
}

#[test]
fn checked_in_generated_code_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let regenerate = std::env::var_os("FERROGRPC_REGENERATE").is_some();
    let mut stale = Vec::new();
    for (package, protos) in GENERATED {
        let out = std::env::temp_dir().join(format!(
            "ferrogrpc-generated-{}-{package}",
            std::process::id()
        ));
        std::fs::create_dir_all(&out).unwrap();
        configure(package)
            .out_dir(&out)
            .emit_rerun_if_changed(false)
            .compile(protos, &[root.join("proto")])
            .unwrap();
        let fresh = std::fs::read_to_string(out.join(format!("{package}.rs"))).unwrap();
        let _ = std::fs::remove_dir_all(&out);
        let checked_in: PathBuf = root.join("src/generated").join(format!("{package}.rs"));
        if std::fs::read_to_string(&checked_in).ok().as_deref() != Some(fresh.as_str()) {
            if regenerate {
                std::fs::write(&checked_in, fresh).unwrap();
            } else {
                stale.push(checked_in.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated code is stale: {stale:?}; run `FERROGRPC_REGENERATE=1 cargo test -p ferrogrpc --test generated_code`"
    );
}
