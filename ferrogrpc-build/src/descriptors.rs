//! The encoded file descriptors embedded in generated code for server
//! reflection.
//!
//! Each package with a service gets a `FILE_DESCRIPTORS` constant: the
//! encoded `FileDescriptorProto` of each of its proto files and of every
//! file they import, directly or not (well-known types included), so that a
//! server can describe the service without any file at run time. Source
//! info (comments and locations) is left out, as gRPC-Go's generated code
//! does: it is most of a descriptor's size and reflection clients do not
//! need it.
//!
//! When the protos were compiled here, the bytes are protox's own encoding,
//! kept as they are apart from the source info, so that options prost-types
//! has no field for (custom options, extensions) survive.

use std::{collections::BTreeSet, fmt::Write as _, io};

use prost::Message as _;
use prost_types::{FileDescriptorProto, FileDescriptorSet};

/// `FileDescriptorProto.source_code_info`.
const SOURCE_CODE_INFO: u64 = 9;
/// `FileDescriptorSet.file`.
const SET_FILE: u64 = 1;

/// One proto file, encoded.
#[derive(Debug, Clone)]
pub(crate) struct EncodedFile {
    name: String,
    package: String,
    dependencies: Vec<String>,
    bytes: Vec<u8>,
}

/// The files of a decoded set, each encoded without its source info.
pub(crate) fn from_set(fds: &FileDescriptorSet) -> Vec<EncodedFile> {
    fds.file
        .iter()
        .map(|file| {
            let mut file = file.clone();
            file.source_code_info = None;
            let bytes = file.encode_to_vec();
            EncodedFile::new(file, bytes)
        })
        .collect()
}

/// The files of an encoded `FileDescriptorSet`, each kept as encoded but
/// for its source info.
pub(crate) fn from_encoded_set(set: &[u8]) -> io::Result<Vec<EncodedFile>> {
    let mut files = Vec::new();
    for field in fields(set)? {
        if field.number != SET_FILE {
            continue;
        }
        let Some(payload) = field.payload else {
            return Err(invalid("a FileDescriptorSet's file is not a message"));
        };
        let raw = &set[payload.0..payload.1];
        let mut bytes = Vec::with_capacity(raw.len());
        for f in fields(raw)? {
            if f.number != SOURCE_CODE_INFO {
                bytes.extend_from_slice(&raw[f.start..f.end]);
            }
        }
        let file = FileDescriptorProto::decode(bytes.as_slice())
            .map_err(|e| invalid(&format!("undecodable FileDescriptorProto: {e}")))?;
        files.push(EncodedFile::new(file, bytes));
    }
    Ok(files)
}

impl EncodedFile {
    fn new(file: FileDescriptorProto, bytes: Vec<u8>) -> EncodedFile {
        EncodedFile {
            name: file.name.unwrap_or_default(),
            package: file.package.unwrap_or_default(),
            dependencies: file.dependency,
            bytes,
        }
    }
}

/// The files of `package` and every file they import, directly or not, in
/// the order of `files` (which protox and protoc give with each file after
/// its imports).
pub(crate) fn package_closure<'a>(files: &'a [EncodedFile], package: &str) -> Vec<&'a EncodedFile> {
    let mut wanted: BTreeSet<&str> = BTreeSet::new();
    let mut queue: Vec<&str> = files
        .iter()
        .filter(|f| f.package == package)
        .map(|f| f.name.as_str())
        .collect();
    while let Some(name) = queue.pop() {
        if !wanted.insert(name) {
            continue;
        }
        if let Some(file) = files.iter().find(|f| f.name == name) {
            queue.extend(file.dependencies.iter().map(String::as_str));
        }
    }
    files
        .iter()
        .filter(|f| wanted.contains(f.name.as_str()))
        .collect()
}

/// The `FILE_DESCRIPTORS` constant of a package's generated file.
pub(crate) fn constant(files: &[&EncodedFile]) -> String {
    let mut out = String::new();
    out.push_str(concat!(
        "/// The encoded `google.protobuf.FileDescriptorProto` of each proto file of this\n",
        "/// package and of every file they import, which server reflection serves\n",
        "/// (`ServerBuilder::add_reflection`). Comments are left out.\n",
        "pub const FILE_DESCRIPTORS: &[&[u8]] = &[\n",
    ));
    for file in files {
        let _ = writeln!(out, "    {},", byte_string(&file.bytes));
    }
    out.push_str("];\n");
    out
}

/// `bytes` as a Rust byte string literal: printable ASCII as itself, the
/// rest escaped.
fn byte_string(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2 + 3);
    s.push_str("b\"");
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s.push('"');
    s
}

/// One field of an encoded message: where it is, tag included, and for a
/// length-delimited field where its payload is.
struct Field {
    number: u64,
    start: usize,
    end: usize,
    payload: Option<(usize, usize)>,
}

/// The top-level fields of an encoded message, in order.
fn fields(buf: &[u8]) -> io::Result<Vec<Field>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let key = varint(buf, &mut pos)?;
        let number = key >> 3;
        let mut payload = None;
        match key & 7 {
            0 => {
                varint(buf, &mut pos)?;
            }
            1 => pos += 8,
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?)
                    .map_err(|_| invalid("length out of range"))?;
                let from = pos;
                pos = pos
                    .checked_add(len)
                    .ok_or_else(|| invalid("length out of range"))?;
                payload = Some((from, pos));
            }
            5 => pos += 4,
            // Groups do not occur at the top level of descriptor messages.
            _ => return Err(invalid("unexpected wire type in a descriptor")),
        }
        if pos > buf.len() {
            return Err(invalid("truncated descriptor"));
        }
        out.push(Field {
            number,
            start,
            end: pos,
            payload,
        });
    }
    Ok(out)
}

fn varint(buf: &[u8], pos: &mut usize) -> io::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = buf.get(*pos) else {
            return Err(invalid("truncated varint"));
        };
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(invalid("varint too long"))
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

#[cfg(test)]
mod tests {
    use prost_types::SourceCodeInfo;

    use super::*;

    fn file(name: &str, package: &str, deps: &[&str]) -> FileDescriptorProto {
        FileDescriptorProto {
            name: Some(name.into()),
            package: Some(package.into()),
            dependency: deps.iter().map(|d| d.to_string()).collect(),
            source_code_info: Some(SourceCodeInfo::default()),
            ..Default::default()
        }
    }

    fn set() -> FileDescriptorSet {
        FileDescriptorSet {
            file: vec![
                file("google/protobuf/empty.proto", "google.protobuf", &[]),
                file("b.proto", "b", &["google/protobuf/empty.proto"]),
                file("unrelated.proto", "u", &[]),
                file("a1.proto", "a", &["b.proto"]),
                file("a2.proto", "a", &[]),
            ],
        }
    }

    #[test]
    fn a_package_takes_its_files_and_their_imports_in_set_order() {
        let files = from_set(&set());
        let names: Vec<_> = package_closure(&files, "a")
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "google/protobuf/empty.proto",
                "b.proto",
                "a1.proto",
                "a2.proto"
            ]
        );
    }

    #[test]
    fn source_info_is_left_out_and_the_rest_kept() {
        let mut with_unknown = file("x.proto", "x", &["y.proto"]).encode_to_vec();
        // An unknown field (number 999, varint 7) must survive.
        with_unknown.extend_from_slice(&[0xb8, 0x3e, 0x07]);
        let mut set = Vec::new();
        prost::encoding::bytes::encode(1, &with_unknown, &mut set);
        let files = from_encoded_set(&set).unwrap();
        assert_eq!(files.len(), 1);
        let decoded = FileDescriptorProto::decode(files[0].bytes.as_slice()).unwrap();
        assert_eq!(decoded.source_code_info, None);
        assert_eq!(decoded.dependency, ["y.proto"]);
        assert!(files[0].bytes.ends_with(&[0xb8, 0x3e, 0x07]));
        let from_decoded = from_set(&FileDescriptorSet {
            file: vec![file("x.proto", "x", &[])],
        });
        let decoded = FileDescriptorProto::decode(from_decoded[0].bytes.as_slice()).unwrap();
        assert_eq!(decoded.source_code_info, None);
    }

    #[test]
    fn truncated_sets_are_errors() {
        let mut set = Vec::new();
        prost::encoding::bytes::encode(1, &file("x.proto", "x", &[]).encode_to_vec(), &mut set);
        set.pop();
        assert!(from_encoded_set(&set).is_err());
        assert!(from_encoded_set(&[0x0a, 0xff]).is_err());
    }

    #[test]
    fn byte_strings_escape_what_is_not_printable() {
        assert_eq!(
            byte_string(b"a\"\\\n\x00\xff~ "),
            r#"b"a\"\\\x0a\x00\xff~ ""#
        );
    }
}
