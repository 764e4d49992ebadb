//! The files a reflection service knows, indexed by name, by the symbols
//! they define and by the extensions they declare, and the answers to the
//! protocol's questions.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use bytes::Bytes;
use prost::Message as _;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
};

use super::{
    v1::{
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ErrorResponse, ExtensionNumberResponse, FileDescriptorResponse, ListServiceResponse,
        ServerReflectionRequest, ServerReflectionResponse, ServiceResponse,
    },
    DescriptorError,
};
use crate::Code;

/// One proto file: its encoding as given (served as is) and its imports.
#[derive(Debug)]
struct File {
    bytes: Bytes,
    dependencies: Vec<String>,
}

/// What a full name stands for.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    /// Index into `Index::files`.
    file: usize,
    /// A message type, which extensions can extend.
    message: bool,
}

/// Everything a reflection service can answer, built once.
#[derive(Debug, Default)]
pub(crate) struct Index {
    files: Vec<File>,
    by_name: HashMap<String, usize>,
    /// Messages (nested ones too), fields, oneofs, enums, enum values,
    /// extensions, services and methods, by full name (no leading dot).
    symbols: HashMap<String, Symbol>,
    /// Extended message type → extension number → file.
    extensions: HashMap<String, BTreeMap<i32, usize>>,
    /// What `list_services` answers, sorted.
    services: Vec<String>,
}

impl Index {
    /// Adds one encoded `FileDescriptorProto`. A file whose name is already
    /// known is skipped (the first one stays), and so is a symbol defined
    /// twice.
    pub(crate) fn add_file(&mut self, bytes: Bytes) -> Result<(), DescriptorError> {
        let proto = decode(&bytes)?;
        self.add_decoded(bytes, &proto);
        Ok(())
    }

    /// Adds a file [`decode`] accepted.
    pub(crate) fn add_decoded(&mut self, bytes: Bytes, proto: &FileDescriptorProto) {
        let name = proto.name().to_string();
        if self.by_name.contains_key(&name) {
            return;
        }
        let file = self.files.len();
        self.by_name.insert(name, file);
        self.files.push(File {
            bytes,
            dependencies: proto.dependency.clone(),
        });
        let package = proto.package();
        for message in &proto.message_type {
            self.message(file, package, message);
        }
        for e in &proto.enum_type {
            self.enumeration(file, package, e);
        }
        for extension in &proto.extension {
            self.extension(file, package, extension);
        }
        for service in &proto.service {
            let service_name = full_name(package, service.name());
            self.symbol(&service_name, file, false);
            for method in &service.method {
                self.symbol(&full_name(&service_name, method.name()), file, false);
            }
        }
    }

    /// Sets what `list_services` answers.
    pub(crate) fn set_services(&mut self, names: impl IntoIterator<Item = String>) {
        let names: BTreeSet<String> = names.into_iter().collect();
        self.services = names.into_iter().collect();
    }

    /// The services defined in the files known.
    pub(crate) fn defined_services(&self) -> Vec<String> {
        let mut names = Vec::new();
        for file in &self.files {
            // Decoded again: this runs once, when a reflection service is
            // built by hand.
            if let Ok(proto) = FileDescriptorProto::decode(file.bytes.clone()) {
                for service in &proto.service {
                    names.push(full_name(proto.package(), service.name()));
                }
            }
        }
        names
    }

    pub(crate) fn file_count(&self) -> usize {
        self.files.len()
    }

    pub(crate) fn service_count(&self) -> usize {
        self.services.len()
    }

    fn symbol(&mut self, name: &str, file: usize, message: bool) {
        self.symbols
            .entry(name.to_string())
            .or_insert(Symbol { file, message });
    }

    fn message(&mut self, file: usize, scope: &str, message: &DescriptorProto) {
        let name = full_name(scope, message.name());
        self.symbol(&name, file, true);
        for field in &message.field {
            self.symbol(&full_name(&name, field.name()), file, false);
        }
        for oneof in &message.oneof_decl {
            self.symbol(&full_name(&name, oneof.name()), file, false);
        }
        for nested in &message.nested_type {
            self.message(file, &name, nested);
        }
        for e in &message.enum_type {
            self.enumeration(file, &name, e);
        }
        for extension in &message.extension {
            self.extension(file, &name, extension);
        }
    }

    /// An enum, and its values, which protobuf scopes beside the enum (in
    /// `scope`), not inside it.
    fn enumeration(&mut self, file: usize, scope: &str, e: &EnumDescriptorProto) {
        self.symbol(&full_name(scope, e.name()), file, false);
        for value in &e.value {
            self.symbol(&full_name(scope, value.name()), file, false);
        }
    }

    fn extension(&mut self, file: usize, scope: &str, extension: &FieldDescriptorProto) {
        self.symbol(&full_name(scope, extension.name()), file, false);
        let extendee = extension.extendee().trim_start_matches('.');
        self.extensions
            .entry(extendee.to_string())
            .or_default()
            .entry(extension.number())
            .or_insert(file);
    }

    /// The answer to one request. `sent` holds the files already sent on
    /// this stream; they are not sent again as dependencies.
    pub(crate) fn answer(
        &self,
        request: &ServerReflectionRequest,
        sent: &mut HashSet<usize>,
    ) -> ServerReflectionResponse {
        let response = match &request.message_request {
            Some(MessageRequest::FileByFilename(name)) => match self.by_name.get(name) {
                Some(&file) => self.files_from(file, sent),
                None => error(Code::NotFound, format!("unknown file {name:?}")),
            },
            Some(MessageRequest::FileContainingSymbol(name)) => match self.symbols.get(name) {
                Some(symbol) => self.files_from(symbol.file, sent),
                None => error(Code::NotFound, format!("unknown symbol {name:?}")),
            },
            Some(MessageRequest::FileContainingExtension(ext)) => {
                let file = self
                    .extensions
                    .get(&ext.containing_type)
                    .and_then(|numbers| numbers.get(&ext.extension_number));
                match file {
                    Some(&file) => self.files_from(file, sent),
                    None => error(
                        Code::NotFound,
                        format!(
                            "unknown extension {} of {:?}",
                            ext.extension_number, ext.containing_type
                        ),
                    ),
                }
            }
            Some(MessageRequest::AllExtensionNumbersOfType(name)) => {
                let known = self.symbols.get(name).is_some_and(|s| s.message);
                match self.extensions.get(name) {
                    Some(numbers) => extension_numbers(name, numbers.keys().copied().collect()),
                    None if known => extension_numbers(name, Vec::new()),
                    None => error(Code::NotFound, format!("unknown message type {name:?}")),
                }
            }
            Some(MessageRequest::ListServices(_)) => {
                MessageResponse::ListServicesResponse(ListServiceResponse {
                    service: self
                        .services
                        .iter()
                        .map(|name| ServiceResponse { name: name.clone() })
                        .collect(),
                })
            }
            None => error(
                Code::InvalidArgument,
                "the request asks nothing: no message_request is set".to_string(),
            ),
        };
        ServerReflectionResponse {
            valid_host: request.host.clone(),
            original_request: Some(request.clone()),
            message_response: Some(response),
        }
    }

    /// `root`, then the files it imports, directly or not, breadth first,
    /// leaving out those already sent on the stream (and imports that are
    /// not known: the client will ask for them and be told).
    fn files_from(&self, root: usize, sent: &mut HashSet<usize>) -> MessageResponse {
        let mut out = vec![self.files[root].bytes.to_vec()];
        sent.insert(root);
        let mut seen = HashSet::from([root]);
        let mut queue = VecDeque::from([root]);
        while let Some(file) = queue.pop_front() {
            for dependency in &self.files[file].dependencies {
                let Some(&dep) = self.by_name.get(dependency) else {
                    continue;
                };
                if seen.insert(dep) {
                    queue.push_back(dep);
                    if sent.insert(dep) {
                        out.push(self.files[dep].bytes.to_vec());
                    }
                }
            }
        }
        MessageResponse::FileDescriptorResponse(FileDescriptorResponse {
            file_descriptor_proto: out,
        })
    }

    #[cfg(test)]
    fn file_name(&self, file: usize) -> &str {
        self.by_name
            .iter()
            .find(|(_, &i)| i == file)
            .map(|(name, _)| name.as_str())
            .unwrap()
    }
}

/// Decodes an encoded `FileDescriptorProto`, which must have a name.
pub(crate) fn decode(bytes: &Bytes) -> Result<FileDescriptorProto, DescriptorError> {
    let proto = FileDescriptorProto::decode(bytes.clone()).map_err(DescriptorError::decode)?;
    if proto.name().is_empty() {
        return Err(DescriptorError::unnamed());
    }
    Ok(proto)
}

fn full_name(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

fn error(code: Code, message: String) -> MessageResponse {
    MessageResponse::ErrorResponse(ErrorResponse {
        error_code: code as i32,
        error_message: message,
    })
}

fn extension_numbers(name: &str, extension_number: Vec<i32>) -> MessageResponse {
    MessageResponse::AllExtensionNumbersResponse(ExtensionNumberResponse {
        base_type_name: name.to_string(),
        extension_number,
    })
}

#[cfg(test)]
mod tests {
    use prost_types::{
        field_descriptor_proto::Label, EnumValueDescriptorProto, MethodDescriptorProto,
        OneofDescriptorProto, ServiceDescriptorProto,
    };

    use super::*;
    use crate::reflection::v1::ExtensionRequest;

    fn field(name: &str, number: i32) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            label: Some(Label::Optional as i32),
            ..Default::default()
        }
    }

    fn extension(name: &str, extendee: &str, number: i32) -> FieldDescriptorProto {
        FieldDescriptorProto {
            extendee: Some(extendee.into()),
            ..field(name, number)
        }
    }

    fn enumeration(name: &str, values: &[&str]) -> EnumDescriptorProto {
        EnumDescriptorProto {
            name: Some(name.into()),
            value: values
                .iter()
                .map(|v| EnumValueDescriptorProto {
                    name: Some(v.to_string()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// `base.proto` (package `base`): a message with a nested message, a
    /// nested enum, a oneof and an extension range; `svc.proto` (package
    /// `a.b`, importing `base.proto` and a file nobody registered): a
    /// service, a top-level enum and extensions of `base.Extendable`.
    fn index() -> Index {
        let base = FileDescriptorProto {
            name: Some("base.proto".into()),
            package: Some("base".into()),
            message_type: vec![DescriptorProto {
                name: Some("Extendable".into()),
                field: vec![field("id", 1)],
                oneof_decl: vec![OneofDescriptorProto {
                    name: Some("choice".into()),
                    ..Default::default()
                }],
                nested_type: vec![DescriptorProto {
                    name: Some("Inner".into()),
                    ..Default::default()
                }],
                enum_type: vec![enumeration("Kind", &["KIND_A"])],
                ..Default::default()
            }],
            ..Default::default()
        };
        let svc = FileDescriptorProto {
            name: Some("a/b/svc.proto".into()),
            package: Some("a.b".into()),
            dependency: vec!["base.proto".into(), "missing.proto".into()],
            enum_type: vec![enumeration("Color", &["RED", "GREEN"])],
            extension: vec![
                extension("tag", ".base.Extendable", 100),
                extension("other", ".base.Extendable", 7),
            ],
            message_type: vec![DescriptorProto {
                name: Some("Holder".into()),
                extension: vec![extension("nested_ext", ".base.Extendable", 200)],
                ..Default::default()
            }],
            service: vec![ServiceDescriptorProto {
                name: Some("Svc".into()),
                method: vec![MethodDescriptorProto {
                    name: Some("Do".into()),
                    input_type: Some(".base.Extendable".into()),
                    output_type: Some(".base.Extendable".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut index = Index::default();
        index.add_file(base.encode_to_vec().into()).unwrap();
        index.add_file(svc.encode_to_vec().into()).unwrap();
        index.set_services(["a.b.Svc".to_string(), "a.b.Alone".to_string()]);
        index
    }

    fn ask(index: &Index, request: MessageRequest) -> MessageResponse {
        index
            .answer(
                &ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(request),
                },
                &mut HashSet::new(),
            )
            .message_response
            .unwrap()
    }

    fn file_names(response: MessageResponse) -> Vec<String> {
        match response {
            MessageResponse::FileDescriptorResponse(files) => files
                .file_descriptor_proto
                .iter()
                .map(|b| {
                    FileDescriptorProto::decode(b.as_slice())
                        .unwrap()
                        .name()
                        .to_string()
                })
                .collect(),
            other => panic!("not files: {other:?}"),
        }
    }

    fn error_code(response: MessageResponse) -> i32 {
        match response {
            MessageResponse::ErrorResponse(e) => e.error_code,
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn every_kind_of_symbol_resolves_to_its_file() {
        let index = index();
        for (symbol, file) in [
            ("base.Extendable", "base.proto"),
            ("base.Extendable.id", "base.proto"),
            ("base.Extendable.choice", "base.proto"),
            ("base.Extendable.Inner", "base.proto"),
            ("base.Extendable.Kind", "base.proto"),
            // Enum values are scoped beside their enum.
            ("base.Extendable.KIND_A", "base.proto"),
            ("a.b.Color", "a/b/svc.proto"),
            ("a.b.GREEN", "a/b/svc.proto"),
            ("a.b.tag", "a/b/svc.proto"),
            ("a.b.Holder.nested_ext", "a/b/svc.proto"),
            ("a.b.Svc", "a/b/svc.proto"),
            ("a.b.Svc.Do", "a/b/svc.proto"),
        ] {
            let symbol_file = index.symbols.get(symbol).map(|s| index.file_name(s.file));
            assert_eq!(symbol_file, Some(file), "{symbol}");
        }
        for unknown in [
            "a.b.Color.GREEN",
            ".a.b.Svc",
            "a.b",
            "a.b.Svc.Nope",
            "Extendable",
            "",
        ] {
            assert!(!index.symbols.contains_key(unknown), "{unknown}");
            let code = error_code(ask(
                &index,
                MessageRequest::FileContainingSymbol(unknown.into()),
            ));
            assert_eq!(code, Code::NotFound as i32, "{unknown}");
        }
    }

    #[test]
    fn a_file_comes_with_the_imports_not_yet_sent() {
        let index = index();
        let mut sent = HashSet::new();
        let mut ask = |request| {
            let response = index.answer(
                &ServerReflectionRequest {
                    host: "h".into(),
                    message_request: Some(request),
                },
                &mut sent,
            );
            assert_eq!(response.valid_host, "h");
            file_names(response.message_response.unwrap())
        };
        // The unknown import is left out.
        assert_eq!(
            ask(MessageRequest::FileContainingSymbol("a.b.Svc.Do".into())),
            ["a/b/svc.proto", "base.proto"]
        );
        // Asked for again, a file comes, but not its imports already sent.
        assert_eq!(
            ask(MessageRequest::FileByFilename("a/b/svc.proto".into())),
            ["a/b/svc.proto"]
        );
        assert_eq!(
            ask(MessageRequest::FileByFilename("base.proto".into())),
            ["base.proto"]
        );
        // On a new stream, everything again.
        assert_eq!(
            file_names(ask_new(&index, "a/b/svc.proto")),
            ["a/b/svc.proto", "base.proto"]
        );
    }

    fn ask_new(index: &Index, file: &str) -> MessageResponse {
        ask(index, MessageRequest::FileByFilename(file.into()))
    }

    #[test]
    fn extensions_by_type_and_number() {
        let index = index();
        let by_number = |number| {
            ask(
                &index,
                MessageRequest::FileContainingExtension(ExtensionRequest {
                    containing_type: "base.Extendable".into(),
                    extension_number: number,
                }),
            )
        };
        assert_eq!(file_names(by_number(200)), ["a/b/svc.proto", "base.proto"]);
        assert_eq!(error_code(by_number(5)), Code::NotFound as i32);
        match ask(
            &index,
            MessageRequest::AllExtensionNumbersOfType("base.Extendable".into()),
        ) {
            MessageResponse::AllExtensionNumbersResponse(r) => {
                assert_eq!(r.base_type_name, "base.Extendable");
                assert_eq!(r.extension_number, [7, 100, 200]);
            }
            other => panic!("{other:?}"),
        }
        // A known message without extensions has none; an unknown one, or
        // something that is not a message, is not found.
        match ask(
            &index,
            MessageRequest::AllExtensionNumbersOfType("base.Extendable.Inner".into()),
        ) {
            MessageResponse::AllExtensionNumbersResponse(r) => {
                assert!(r.extension_number.is_empty())
            }
            other => panic!("{other:?}"),
        }
        for name in ["base.Nope", "a.b.Svc"] {
            let code = error_code(ask(
                &index,
                MessageRequest::AllExtensionNumbersOfType(name.into()),
            ));
            assert_eq!(code, Code::NotFound as i32);
        }
    }

    #[test]
    fn services_are_listed_sorted_and_empty_requests_are_invalid() {
        let index = index();
        match ask(&index, MessageRequest::ListServices("*".into())) {
            MessageResponse::ListServicesResponse(list) => {
                let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
                assert_eq!(names, ["a.b.Alone", "a.b.Svc"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(index.defined_services(), ["a.b.Svc"]);
        let response = index.answer(&ServerReflectionRequest::default(), &mut HashSet::new());
        assert_eq!(
            error_code(response.message_response.unwrap()),
            Code::InvalidArgument as i32
        );
        assert_eq!(
            error_code(ask_new(&index, "nope.proto")),
            Code::NotFound as i32
        );
    }

    #[test]
    fn bad_descriptors_are_refused_and_duplicates_skipped() {
        let mut index = index();
        assert!(index.add_file(Bytes::from_static(b"\x0a\xff")).is_err());
        let unnamed = FileDescriptorProto::default().encode_to_vec();
        assert!(index.add_file(unnamed.into()).is_err());
        // A second base.proto does not replace the first.
        let other = FileDescriptorProto {
            name: Some("base.proto".into()),
            package: Some("elsewhere".into()),
            ..Default::default()
        };
        index.add_file(other.encode_to_vec().into()).unwrap();
        assert_eq!(index.file_count(), 2);
        assert!(index.symbols.contains_key("base.Extendable"));
    }
}
