//! Errors in protos come back from the builder as readable `io::Error`s.

use std::path::{Path, PathBuf};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn syntax_error_names_file_and_line() {
    let out = scratch("bad-proto-out");
    let dir = manifest_dir().join("bad-proto");
    let err = ferrogrpc_build::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[dir.join("bad.proto")], &[&dir])
        .unwrap_err();
    let message = err.to_string();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{message}");
    // `string name = 1` lacks its `;`: protox reports where `int32` is, on
    // line 7.
    let location = format!("{}:7:", dir.join("bad.proto").display());
    assert!(message.contains(&location), "{message}");
    assert!(message.contains("expected"), "{message}");
    // Nothing was written.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

#[test]
fn missing_file_and_unresolved_import_are_errors() {
    let out = scratch("missing-out");
    let dir = manifest_dir().join("bad-proto");
    let err = ferrogrpc_build::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[dir.join("no-such.proto")], &[&dir])
        .unwrap_err();
    assert!(err.to_string().contains("no-such.proto"), "{err}");

    let protos = scratch("import-in");
    std::fs::write(
        protos.join("imports.proto"),
        "syntax = \"proto3\";\nimport \"missing/dep.proto\";\n",
    )
    .unwrap();
    let err = ferrogrpc_build::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[protos.join("imports.proto")], &[&protos])
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("imports.proto:2:"), "{message}");
    assert!(message.contains("missing/dep.proto"), "{message}");
}

#[test]
fn unknown_type_names_file_and_line() {
    let out = scratch("unknown-type-out");
    let protos = scratch("unknown-type-in");
    std::fs::write(
        protos.join("svc.proto"),
        "syntax = \"proto3\";\npackage p;\nservice S {\n  rpc M(Nope) returns (Nope);\n}\n",
    )
    .unwrap();
    let err = ferrogrpc_build::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[protos.join("svc.proto")], &[&protos])
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("svc.proto:4:"), "{message}");
    assert!(message.contains("Nope"), "{message}");
}
