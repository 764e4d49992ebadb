//! The builder's settings, checked on the files it writes.

use std::{
    fs,
    path::{Path, PathBuf},
};

use prost::Message;

const SERVICE_PROTO: &str = r#"
syntax = "proto3";
package demo.v1;
import "google/protobuf/empty.proto";

// Says hello.
//
//     assert!(false); // would be a failing doctest
service Greeter {
  // Greets [someone].
  rpc SayHello(HelloRequest) returns (HelloReply);
  rpc Watch(google.protobuf.Empty) returns (stream HelloReply);
}

message HelloRequest { string name = 1; }
message HelloReply { string message = 1; }
"#;

/// A fresh directory with `demo.proto` in `in/` and an empty `out/`.
fn setup(name: &str) -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = fs::remove_dir_all(&root);
    let (input, out) = (root.join("in"), root.join("out"));
    fs::create_dir_all(&input).unwrap();
    fs::create_dir_all(&out).unwrap();
    fs::write(input.join("demo.proto"), SERVICE_PROTO).unwrap();
    (input, out)
}

fn generated(out: &Path) -> String {
    fs::read_to_string(out.join("demo.v1.rs")).unwrap()
}

#[test]
fn default_builds_client_and_server() {
    let (input, out) = setup("default");
    ferrogrpc_build::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[input.join("demo.proto")], &[&input])
        .unwrap();
    let code = generated(&out);
    assert!(code.contains("pub mod greeter_client {"), "{code}");
    assert!(code.contains("pub struct GreeterClient {"), "{code}");
    assert!(code.contains("pub mod greeter_server {"), "{code}");
    assert!(code.contains("pub trait Greeter:"), "{code}");
    assert!(code.contains("\"/demo.v1.Greeter/SayHello\""), "{code}");
    assert!(
        code.contains("pub const SERVICE_NAME: &str = \"demo.v1.Greeter\";"),
        "{code}"
    );
    // Empty maps to `()`, and the streaming response is a `Streaming`.
    assert!(code.contains("IntoRequest<()>"), "{code}");
    assert!(
        code.contains("::ferrogrpc::Streaming<super::HelloReply>"),
        "{code}"
    );
    // The comment's code line is a text block, its link escaped.
    assert!(code.contains("/// ```text\n"), "{code}");
    assert!(code.contains(r"Greets \[someone\]."), "{code}");
    assert!(
        code.contains("`rpc SayHello(HelloRequest) returns (HelloReply)`"),
        "{code}"
    );
    assert!(
        code.contains("`rpc Watch(google.protobuf.Empty) returns (stream HelloReply)`"),
        "{code}"
    );
    // Only the package with code gets a file: none for google.protobuf.
    let mut files: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["demo.v1.rs"]);
}

#[test]
fn client_or_server_alone() {
    let (input, out) = setup("client-only");
    ferrogrpc_build::configure()
        .build_server(false)
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[input.join("demo.proto")], &[&input])
        .unwrap();
    let code = generated(&out);
    assert!(code.contains("pub mod greeter_client {"));
    assert!(!code.contains("greeter_server"));
    // The descriptors are for servers.
    assert!(!code.contains("FILE_DESCRIPTORS"));

    let (input, out) = setup("server-only");
    ferrogrpc_build::configure()
        .build_client(false)
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[input.join("demo.proto")], &[&input])
        .unwrap();
    let code = generated(&out);
    assert!(!code.contains("greeter_client"));
    assert!(code.contains("pub mod greeter_server {"));

    let (input, out) = setup("messages-only");
    ferrogrpc_build::configure()
        .build_client(false)
        .build_server(false)
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[input.join("demo.proto")], &[&input])
        .unwrap();
    let code = generated(&out);
    assert!(code.contains("pub struct HelloRequest"));
    assert!(!code.contains("greeter"));
}

#[test]
fn prost_settings_apply() {
    let (input, out) = setup("prost-config");
    ferrogrpc_build::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .type_attribute(".demo.v1.HelloRequest", "#[derive(PartialOrd)]")
        .field_attribute(".demo.v1.HelloReply.message", "#[allow(unused)]")
        .prost_config(|config| {
            config.enable_type_names();
        })
        .compile(&[input.join("demo.proto")], &[&input])
        .unwrap();
    let code = generated(&out);
    assert!(code.contains("#[derive(PartialOrd)]"), "{code}");
    assert!(code.contains("#[allow(unused)]"), "{code}");
    assert!(
        code.contains("impl ::prost::Name for HelloRequest"),
        "{code}"
    );
}

#[test]
fn extern_path_types_are_used_as_given() {
    let (input, out) = setup("extern-path");
    ferrogrpc_build::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .extern_path(".demo.v1.HelloRequest", "::other_crate::HelloRequest")
        .compile(&[input.join("demo.proto")], &[&input])
        .unwrap();
    let code = generated(&out);
    assert!(
        code.contains("IntoRequest<::other_crate::HelloRequest>"),
        "{code}"
    );
    assert!(!code.contains("super::HelloRequest"), "{code}");
}

#[test]
fn writes_the_file_descriptor_set() {
    let (input, out) = setup("fds");
    let fds_path = out.join("descriptor.bin");
    ferrogrpc_build::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .file_descriptor_set_path(&fds_path)
        .compile(&[input.join("demo.proto")], &[&input])
        .unwrap();
    let fds = prost_types::FileDescriptorSet::decode(&*fs::read(&fds_path).unwrap()).unwrap();
    let names: Vec<_> = fds.file.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["google/protobuf/empty.proto", "demo.proto"]);
    assert_eq!(fds.file[1].service[0].name(), "Greeter");
}

/// The byte strings of the generated `FILE_DESCRIPTORS`, unescaped.
fn embedded_descriptors(code: &str) -> Vec<Vec<u8>> {
    let start = code
        .find("pub const FILE_DESCRIPTORS: &[&[u8]] = &[")
        .unwrap_or_else(|| panic!("no FILE_DESCRIPTORS in {code}"));
    let body = &code[start..];
    let body = &body[..body.find("];").unwrap()];
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("b\"") {
        let mut bytes = Vec::new();
        let mut chars = rest[i + 2..].char_indices();
        loop {
            let (at, c) = chars.next().unwrap();
            match c {
                '"' => {
                    rest = &rest[i + 2 + at + 1..];
                    break;
                }
                '\\' => match chars.next().unwrap().1 {
                    'x' => {
                        let hex: String = [chars.next().unwrap().1, chars.next().unwrap().1]
                            .iter()
                            .collect();
                        bytes.push(u8::from_str_radix(&hex, 16).unwrap());
                    }
                    other => bytes.push(other as u8),
                },
                c => bytes.push(c as u8),
            }
        }
        out.push(bytes);
    }
    out
}

#[test]
fn servers_embed_the_descriptors_of_their_protos_and_imports() {
    let (input, out) = setup("descriptors");
    ferrogrpc_build::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[input.join("demo.proto")], &[&input])
        .unwrap();
    let code = generated(&out);
    assert!(
        code.contains("fn file_descriptors(&self) -> &'static [&'static [u8]] {"),
        "{code}"
    );
    assert!(code.contains("super::FILE_DESCRIPTORS"), "{code}");
    let files: Vec<_> = embedded_descriptors(&code)
        .iter()
        .map(|b| prost_types::FileDescriptorProto::decode(b.as_slice()).unwrap())
        .collect();
    let names: Vec<_> = files.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["google/protobuf/empty.proto", "demo.proto"]);
    assert_eq!(files[1].service[0].name(), "Greeter");
    assert_eq!(files[1].message_type[0].name(), "HelloRequest");
    // No comments: they are most of a descriptor's size.
    assert!(files.iter().all(|f| f.source_code_info.is_none()));

    // From a FileDescriptorSet given as is, the same.
    let (_, out2) = setup("descriptors-fds");
    let mut compiler = protox::Compiler::new([&input]).unwrap();
    compiler.include_imports(true).include_source_info(true);
    compiler.open_file("demo.proto").unwrap();
    ferrogrpc_build::configure()
        .out_dir(&out2)
        .compile_fds(compiler.file_descriptor_set())
        .unwrap();
    let again: Vec<_> = embedded_descriptors(&generated(&out2))
        .iter()
        .map(|b| prost_types::FileDescriptorProto::decode(b.as_slice()).unwrap())
        .collect();
    assert_eq!(again, files);
}

#[test]
fn out_dir_is_required_outside_build_scripts() {
    if std::env::var_os("OUT_DIR").is_some() {
        return;
    }
    let (input, _out) = setup("no-out-dir");
    let err = ferrogrpc_build::configure()
        .emit_rerun_if_changed(false)
        .compile(&[input.join("demo.proto")], &[&input])
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("OUT_DIR"), "{err}");
}

#[test]
fn protos_are_found_relative_to_includes() {
    let (input, out) = setup("relative");
    // Named relative to the include directory, as in an import.
    ferrogrpc_build::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&["demo.proto"], &[&input])
        .unwrap();
    assert!(generated(&out).contains("pub mod greeter_client {"));
}

#[test]
fn crlf_and_bare_cr_in_comments() {
    let (input, out) = setup("crlf");
    let proto = "syntax = \"proto3\";\r\npackage demo.v1;\r\n// Line one.\r\n// Bare\rCR.\r\nservice Greeter {\r\n  // Hi.\r\n  rpc SayHello(HelloRequest) returns (HelloReply);\r\n}\r\nmessage HelloRequest {}\r\nmessage HelloReply {}\r\n";
    fs::write(input.join("demo.proto"), proto).unwrap();
    ferrogrpc_build::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .build_server(false)
        .compile(&[input.join("demo.proto")], &[&input])
        .unwrap();
    let code = generated(&out);
    assert!(!code.contains('\r'), "{code:?}");
    assert!(code.contains("/// Line one.\n    /// Bare CR.\n"), "{code}");
}

#[test]
fn unformatted_output_is_readable() {
    let (input, out) = setup("unformatted");
    ferrogrpc_build::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .prost_config(|config| {
            config.format(false);
        })
        .compile(&[input.join("demo.proto")], &[&input])
        .unwrap();
    let code = generated(&out);
    assert!(
        code.contains("\npub mod greeter_client {\n    #[doc = \" Says hello.\"]\n"),
        "{code}"
    );
    assert!(code.contains("\n        pub fn new(channel: ::ferrogrpc::client::Channel) -> Self {\n            Self { channel, content_subtype: ::core::option::Option::None }\n        }\n"), "{code}");
}

#[test]
fn json_generates_codecs_by_subtype() {
    // Default: protobuf, or a registered codec, chosen per call.
    let (input, out) = setup("json-off");
    ferrogrpc_build::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[input.join("demo.proto")], &[&input])
        .unwrap();
    let code = generated(&out);
    assert!(code.contains(">::server(call.content_subtype())"), "{code}");
    assert!(code.contains(">::client(request.content_subtype().or(self.content_subtype))"));
    assert!(code.contains("pub fn with_content_subtype(mut self, subtype: &'static str)"));
    assert!(!code.contains("_with_json"));
    assert!(!code.contains("JSON_DESCRIPTORS"));

    // JSON, on a client alone: the descriptors come along for its codec.
    let (input, out) = setup("json-client");
    ferrogrpc_build::configure()
        .json(true)
        .build_server(false)
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[input.join("demo.proto")], &[&input])
        .unwrap();
    let code = generated(&out);
    assert!(code.contains("pub const FILE_DESCRIPTORS"), "{code}");
    assert!(
        code.contains("pub static JSON_DESCRIPTORS: ::ferrogrpc::codec::json::Descriptors"),
        "{code}"
    );
    assert!(
        code.contains(
            "client_with_json(\n                request.content_subtype().or(self.content_subtype),\n                &super::JSON_DESCRIPTORS,\n                \"demo.v1.HelloRequest\",\n                \"demo.v1.HelloReply\",\n            )"
        ),
        "{code}"
    );
    // `google.protobuf.Empty` is `()` in Rust, its own name in JSON.
    assert!(code.contains("\"google.protobuf.Empty\""), "{code}");

    // JSON on a server: the response is encoded, the request decoded.
    let (input, out) = setup("json-server");
    ferrogrpc_build::configure()
        .json(true)
        .build_client(false)
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[input.join("demo.proto")], &[&input])
        .unwrap();
    let code = generated(&out);
    assert!(
        code.contains("server_with_json(\n                        call.content_subtype(),\n                        &super::JSON_DESCRIPTORS,\n                        \"demo.v1.HelloReply\",\n                        \"demo.v1.HelloRequest\",\n                    )"),
        "{code}"
    );
}
