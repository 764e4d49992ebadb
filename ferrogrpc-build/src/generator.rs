//! The `prost_build::ServiceGenerator` that writes ferrogrpc client stubs
//! and server traits.
//!
//! For each service it appends two modules to the package's file: a
//! `<service>_client` module with a stub struct, and a `<service>_server`
//! module with the trait to implement and the adapter that serves it. A
//! package with servers also gets a `FILE_DESCRIPTORS` constant, which the
//! adapters hand to server reflection (see `descriptors`). Every
//! path in the generated code is absolute (`::ferrogrpc::...`, `::core::...`)
//! so that nothing the user defines can shadow it, and message types are
//! reached through `super::`, from where prost-build put them.

use std::fmt::Write as _;

use heck::{ToSnakeCase, ToUpperCamelCase};
use prost_build::{Method, Service, ServiceGenerator};

use crate::{descriptors, docs};

/// Names of the client stub's own methods; an RPC whose Rust name is one of
/// them gets a trailing underscore.
const CLIENT_RESERVED: &[&str] = &["new", "channel", "with_content_subtype"];

/// Generates ferrogrpc service code for prost-build.
#[derive(Debug, Clone)]
pub(crate) struct FerroServiceGenerator {
    pub(crate) client: bool,
    pub(crate) server: bool,
    /// Whether the services speak JSON too (`Builder::json`).
    pub(crate) json: bool,
    /// Every file compiled and imported, encoded for reflection.
    pub(crate) files: Vec<descriptors::EncodedFile>,
}

impl ServiceGenerator for FerroServiceGenerator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        let info = ServiceInfo::new(&service);
        let mut out = Out::default();
        if self.client {
            client(&mut out, &service, &info, self.json);
        }
        if self.server {
            server(&mut out, &service, &info, self.json);
        }
        buf.push_str(&out.text);
    }

    /// After the last service of a package: the descriptors its servers
    /// hand to reflection, and that its JSON codecs read.
    fn finalize_package(&mut self, package: &str, buf: &mut String) {
        if self.server || self.json {
            let files = descriptors::package_closure(&self.files, package);
            buf.push_str(&descriptors::constant(&files));
        }
        if self.json {
            buf.push_str(JSON_DESCRIPTORS);
        }
    }
}

/// The package's descriptors decoded once for its JSON codecs
/// (`Builder::json`).
const JSON_DESCRIPTORS: &str = "
/// [`FILE_DESCRIPTORS`], decoded on first use, for the JSON codec of this
/// package's services (`application/grpc+json`).
pub static JSON_DESCRIPTORS: ::ferrogrpc::codec::json::Descriptors =
    ::ferrogrpc::codec::json::Descriptors::new(FILE_DESCRIPTORS);
";

/// The codec of a call: `CallCodec::<encoded, decoded>::<side>(subtype)`,
/// or with JSON the `_with_json` form naming the two messages' proto types.
fn codec_expr(
    side: &str,
    subtype: &str,
    (encoded, encoded_proto): (&str, &str),
    (decoded, decoded_proto): (&str, &str),
    json: bool,
) -> String {
    let base = format!("::ferrogrpc::codec::CallCodec::<{encoded}, {decoded}>::{side}");
    if json {
        format!(
            "{base}_with_json({subtype}, &super::JSON_DESCRIPTORS, {:?}, {:?})",
            encoded_proto.trim_start_matches('.'),
            decoded_proto.trim_start_matches('.'),
        )
    } else {
        format!("{base}({subtype})")
    }
}

/// Names derived from a service, shared by both sides.
struct ServiceInfo {
    /// `package.Service`, or `Service` without a package.
    full_name: String,
    /// The service name as a Rust type name (`RouteGuide`).
    type_name: String,
    /// The service name in snake case (`route_guide`).
    snake: String,
}

impl ServiceInfo {
    fn new(service: &Service) -> ServiceInfo {
        let full_name = if service.package.is_empty() {
            service.proto_name.clone()
        } else {
            format!("{}.{}", service.package, service.proto_name)
        };
        let mut type_name = service.proto_name.to_upper_camel_case();
        if type_name.starts_with(|c: char| c.is_ascii_digit()) {
            type_name.insert(0, '_');
        }
        if type_name == "Self" {
            type_name.push('_');
        }
        let mut snake = service.proto_name.to_snake_case();
        if snake.starts_with(|c: char| c.is_ascii_digit()) {
            snake.insert(0, '_');
        }
        ServiceInfo {
            full_name,
            type_name,
            snake,
        }
    }
}

/// The four kinds of RPC.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unary,
    ServerStreaming,
    ClientStreaming,
    Bidi,
}

impl Kind {
    fn of(method: &Method) -> Kind {
        match (method.client_streaming, method.server_streaming) {
            (false, false) => Kind::Unary,
            (false, true) => Kind::ServerStreaming,
            (true, false) => Kind::ClientStreaming,
            (true, true) => Kind::Bidi,
        }
    }
}

/// Generated text with indentation.
#[derive(Default)]
struct Out {
    text: String,
    depth: usize,
}

impl Out {
    fn line(&mut self, line: &str) {
        if !line.is_empty() {
            for _ in 0..self.depth {
                self.text.push_str("    ");
            }
            self.text.push_str(line);
        }
        self.text.push('\n');
    }

    fn open(&mut self, line: &str) {
        self.line(line);
        self.depth += 1;
    }

    fn close(&mut self, line: &str) {
        self.depth -= 1;
        self.line(line);
    }

    /// Writes doc lines as `#[doc = "..."]` attributes, which nothing in the
    /// text can break out of.
    fn doc(&mut self, lines: &[String]) {
        for line in lines {
            if line.is_empty() {
                self.line("#[doc = \"\"]");
            } else {
                let mut attr = String::from("#[doc = ");
                let _ = write!(attr, "{:?}", format!(" {line}"));
                attr.push(']');
                self.line(&attr);
            }
        }
    }
}

/// The safe rustdoc lines of a proto item's leading and trailing comments.
fn comment_lines(comments: &prost_build::Comments) -> Vec<String> {
    let mut raw = comments.leading.clone();
    if !raw.is_empty() && !comments.trailing.is_empty() {
        raw.push(String::new());
    }
    raw.extend(comments.trailing.iter().cloned());
    docs::sanitize(&raw)
}

/// `lines`, then a blank line and `extra` (or `extra` alone).
fn with_paragraph(mut lines: Vec<String>, extra: impl IntoIterator<Item = String>) -> Vec<String> {
    if !lines.is_empty() {
        lines.push(String::new());
    }
    lines.extend(extra);
    lines
}

/// A message type as seen from inside the generated modules, which sit one
/// level below the package module prost-build resolved the path from.
fn message_type(rust_type: &str) -> String {
    let t = rust_type.trim();
    if t == "()" || t.starts_with("::") || t.starts_with("crate::") {
        t.to_string()
    } else {
        format!("super::{t}")
    }
}

/// A proto type name for the docs: without the leading dot and without the
/// service's own package.
fn proto_type_name(proto_type: &str, package: &str) -> String {
    let t = proto_type.trim_start_matches('.');
    if package.is_empty() {
        return t.to_string();
    }
    t.strip_prefix(package)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(t)
        .to_string()
}

/// The proto signature of a method, e.g. `rpc ListFeatures(Rectangle)
/// returns (stream Feature)`, as an inline code span.
fn signature(method: &Method, package: &str) -> String {
    let stream = |yes: bool| if yes { "stream " } else { "" };
    format!(
        "`rpc {}({}{}) returns ({}{})`",
        method.proto_name,
        stream(method.client_streaming),
        proto_type_name(&method.input_proto_type, package),
        stream(method.server_streaming),
        proto_type_name(&method.output_proto_type, package),
    )
}

/// Clippy's `wrong_self_convention` expects `new`, `from_*`, `into_*` and
/// `*_mut` methods to take no `self`, `self` or `&mut self`; an RPC named so
/// still takes `&self`. The lint is allowed on exactly those methods.
fn self_convention_allow(out: &mut Out, name: &str) {
    let name = name.trim_start_matches("r#");
    if name == "new"
        || name.starts_with("from_")
        || name.starts_with("into_")
        || name.ends_with("_mut")
    {
        out.line("#[allow(clippy::wrong_self_convention)]");
    }
}

fn is_deprecated(method: &Method) -> bool {
    method.options.deprecated == Some(true)
}

fn client(out: &mut Out, service: &Service, info: &ServiceInfo, json: bool) {
    let full = &info.full_name;
    let client = format!("{}Client", info.type_name);
    out.doc(&[format!("Client stub for `{full}`.")]);
    out.line("#[allow(dead_code)]");
    out.open(&format!("pub mod {}_client {{", info.snake));

    let mut struct_doc = comment_lines(&service.comments);
    if struct_doc.is_empty() {
        struct_doc.push(format!("A client for `{full}`."));
    }
    let struct_doc = with_paragraph(
        struct_doc,
        [format!(
            "Build it on a `ferrogrpc::client::Channel` with [`{client}::new`]; \
             it is cheap to clone, and clones share the channel."
        )],
    );
    out.doc(&struct_doc);
    out.line("#[derive(Debug, Clone)]");
    out.open(&format!("pub struct {client} {{"));
    out.line("channel: ::ferrogrpc::client::Channel,");
    out.line("content_subtype: ::core::option::Option<&'static str>,");
    out.close("}");
    out.line("");

    out.open(&format!("impl {client} {{"));
    out.doc(&["A client that makes its calls on `channel`.".to_string()]);
    out.open("pub fn new(channel: ::ferrogrpc::client::Channel) -> Self {");
    out.line("Self { channel, content_subtype: ::core::option::Option::None }");
    out.close("}");
    out.line("");
    out.doc(&["The channel the calls go on.".to_string()]);
    out.open("pub fn channel(&self) -> &::ferrogrpc::client::Channel {");
    out.line("&self.channel");
    out.close("}");
    out.line("");
    let formats = if json {
        "`\"json\"` (JSON) or one registered with `ferrogrpc::codec::register_codec`"
    } else {
        "one registered with `ferrogrpc::codec::register_codec`"
    };
    out.doc(&[
        "Makes the calls in the content-subtype `subtype` instead of protobuf:".to_string(),
        format!("{formats}. A request's own `with_content_subtype` wins."),
    ]);
    out.open("pub fn with_content_subtype(mut self, subtype: &'static str) -> Self {");
    out.line("self.content_subtype = ::core::option::Option::Some(subtype);");
    out.line("self");
    out.close("}");

    for method in &service.methods {
        out.line("");
        client_method(out, service, method, full, json);
    }
    out.close("}");
    out.close("}");
}

fn client_method(out: &mut Out, service: &Service, method: &Method, full: &str, json: bool) {
    let kind = Kind::of(method);
    let input = message_type(&method.input_type);
    let output = message_type(&method.output_type);
    let mut name = method.name.clone();
    if CLIENT_RESERVED.contains(&name.as_str()) {
        name.push('_');
    }
    let usage = match kind {
        Kind::Unary => "Sends the request and waits for the response.",
        Kind::ServerStreaming => {
            "Sends the request; read the responses from the returned stream, \
             whose end is the end of the call."
        }
        Kind::ClientStreaming => {
            "Starts the call (`request` carries only metadata and options): send the \
             requests on the returned call, then `close_and_recv` for the response."
        }
        Kind::Bidi => {
            "Starts the call (`request` carries only metadata and options): send on the \
             returned sink and read from the returned stream, independently."
        }
    };
    let doc = with_paragraph(
        comment_lines(&method.comments),
        [
            signature(method, &service.package),
            String::new(),
            usage.to_string(),
        ],
    );
    out.doc(&doc);
    if is_deprecated(method) {
        out.line("#[deprecated]");
    }
    self_convention_allow(out, &name);
    let (request_type, result, call) = match kind {
        Kind::Unary => (
            input.as_str(),
            format!("::ferrogrpc::Response<{output}>"),
            "unary",
        ),
        Kind::ServerStreaming => (
            input.as_str(),
            format!("::ferrogrpc::Response<::ferrogrpc::Streaming<{output}>>"),
            "server_streaming",
        ),
        Kind::ClientStreaming => (
            "()",
            format!("::ferrogrpc::client::ClientStreamingCall<{input}, {output}>"),
            "client_streaming",
        ),
        Kind::Bidi => (
            "()",
            format!(
                "(::ferrogrpc::client::RequestSink<{input}>, ::ferrogrpc::Streaming<{output}>)"
            ),
            "streaming",
        ),
    };
    out.open(&format!("pub async fn {name}("));
    out.line("&self,");
    out.line(&format!(
        "request: impl ::ferrogrpc::IntoRequest<{request_type}>,"
    ));
    out.close(&format!(
        ") -> ::core::result::Result<{result}, ::ferrogrpc::Status> {{"
    ));
    out.depth += 1;
    out.line("let request = ::ferrogrpc::IntoRequest::into_request(request);");
    let codec = codec_expr(
        "client",
        "request.content_subtype().or(self.content_subtype)",
        (&input, &method.input_proto_type),
        (&output, &method.output_proto_type),
        json,
    );
    out.line(&format!("let codec = {codec}?;"));
    out.line(&format!("self.channel.{call}("));
    out.depth += 1;
    out.line(&format!(
        "::ferrogrpc::__codegen::PathAndQuery::from_static({:?}),",
        format!("/{full}/{}", method.proto_name)
    ));
    out.line("request,");
    out.line("codec,");
    out.close(")");
    out.line(".await");
    out.close("}");
}

fn server(out: &mut Out, service: &Service, info: &ServiceInfo, json: bool) {
    let full = &info.full_name;
    let trait_name = &info.type_name;
    let server = format!("{}Server", info.type_name);
    out.doc(&[format!("Server side of `{full}`.")]);
    out.line("#[allow(dead_code)]");
    out.open(&format!("pub mod {}_server {{", info.snake));

    let mut trait_doc = comment_lines(&service.comments);
    if trait_doc.is_empty() {
        trait_doc.push(format!("The handlers of `{full}`."));
    }
    let trait_doc = with_paragraph(
        trait_doc,
        [format!(
            "Implement it (`async fn` works for each method) and serve it with \
             [`{server}::new`]."
        )],
    );
    out.doc(&trait_doc);
    out.open(&format!(
        "pub trait {trait_name}: ::core::marker::Send + ::core::marker::Sync + 'static {{"
    ));
    for (i, method) in service.methods.iter().enumerate() {
        if i > 0 {
            out.line("");
        }
        trait_method(out, service, method);
    }
    out.close("}");
    out.line("");

    out.doc(&["The full name of the service.".to_string()]);
    out.line(&format!("pub const SERVICE_NAME: &str = {full:?};"));
    out.line("");

    out.doc(&[format!(
        "Serves a [`{trait_name}`] implementation; add it with `ServerBuilder::add_service`."
    )]);
    out.line("#[derive(Debug)]");
    out.open(&format!("pub struct {server}<T> {{"));
    out.line("inner: ::std::sync::Arc<T>,");
    out.close("}");
    out.line("");

    out.open(&format!("impl<T: {trait_name}> {server}<T> {{"));
    out.doc(&["Serves `inner`.".to_string()]);
    out.open("pub fn new(inner: T) -> Self {");
    out.line("Self::from_arc(::std::sync::Arc::new(inner))");
    out.close("}");
    out.line("");
    out.doc(&["Serves `inner`, shared with the caller.".to_string()]);
    out.open("pub fn from_arc(inner: ::std::sync::Arc<T>) -> Self {");
    out.line("Self { inner }");
    out.close("}");
    out.close("}");
    out.line("");

    out.open(&format!("impl<T> ::core::clone::Clone for {server}<T> {{"));
    out.open("fn clone(&self) -> Self {");
    out.line("Self { inner: ::std::sync::Arc::clone(&self.inner) }");
    out.close("}");
    out.close("}");
    out.line("");

    out.open(&format!(
        "impl<T: {trait_name}> ::ferrogrpc::server::Service for {server}<T> {{"
    ));
    out.open("fn name(&self) -> &'static str {");
    out.line("SERVICE_NAME");
    out.close("}");
    out.line("");
    out.open("fn file_descriptors(&self) -> &'static [&'static [u8]] {");
    out.line("super::FILE_DESCRIPTORS");
    out.close("}");
    out.line("");
    out.open("fn methods(&self) -> &'static [::ferrogrpc::server::MethodInfo] {");
    out.open("const METHODS: &[::ferrogrpc::server::MethodInfo] = &[");
    for method in &service.methods {
        out.line(&format!(
            "::ferrogrpc::server::MethodInfo::new({:?}, {}, {}),",
            method.proto_name, method.client_streaming, method.server_streaming
        ));
    }
    out.close("];");
    out.line("METHODS");
    out.close("}");
    out.line("");
    if service.methods.iter().any(is_deprecated) {
        out.line("#[allow(deprecated)]");
    }
    if service.methods.is_empty() {
        out.open(concat!(
            "fn call(&self, _method: &str, call: ::ferrogrpc::server::ServerCall)",
            " -> ::ferrogrpc::server::BoxFuture {"
        ));
        out.line("::std::boxed::Box::pin(call.unimplemented())");
        out.close("}");
    } else {
        out.open(concat!(
            "fn call(&self, method: &str, call: ::ferrogrpc::server::ServerCall)",
            " -> ::ferrogrpc::server::BoxFuture {"
        ));
        out.line("let inner = ::std::sync::Arc::clone(&self.inner);");
        out.open("match method {");
        for method in &service.methods {
            dispatch_arm(out, method, trait_name, json);
        }
        out.line("_ => ::std::boxed::Box::pin(call.unimplemented()),");
        out.close("}");
        out.close("}");
    }
    out.close("}");
    out.close("}");
}

fn trait_method(out: &mut Out, service: &Service, method: &Method) {
    let kind = Kind::of(method);
    let input = message_type(&method.input_type);
    let output = message_type(&method.output_type);
    let usage = match kind {
        Kind::Unary => "Answers one request with one response.",
        Kind::ServerStreaming => {
            "Answers one request with a stream of responses, sent on `responses`; \
             returning ends the call."
        }
        Kind::ClientStreaming => "Reads the stream of requests and answers with one response.",
        Kind::Bidi => {
            "Reads the stream of requests and sends responses on `responses`; \
             returning ends the call."
        }
    };
    let doc = with_paragraph(
        comment_lines(&method.comments),
        [
            signature(method, &service.package),
            String::new(),
            usage.to_string(),
        ],
    );
    out.doc(&doc);
    if is_deprecated(method) {
        out.line("#[deprecated]");
    }
    self_convention_allow(out, &method.name);
    let (request, sink, result) = match kind {
        Kind::Unary => (input, None, format!("::ferrogrpc::Response<{output}>")),
        Kind::ServerStreaming => (input, Some(output), "()".to_string()),
        Kind::ClientStreaming => (
            format!("::ferrogrpc::Streaming<{input}>"),
            None,
            format!("::ferrogrpc::Response<{output}>"),
        ),
        Kind::Bidi => (
            format!("::ferrogrpc::Streaming<{input}>"),
            Some(output),
            "()".to_string(),
        ),
    };
    out.open(&format!("fn {}(", method.name));
    out.line("&self,");
    out.line(&format!("request: ::ferrogrpc::Request<{request}>,"));
    if let Some(sink) = sink {
        out.line(&format!(
            "responses: ::ferrogrpc::server::ResponseSink<{sink}>,"
        ));
    }
    out.close(") -> impl ::core::future::Future<");
    out.depth += 1;
    out.line(&format!(
        "Output = ::core::result::Result<{result}, ::ferrogrpc::Status>,"
    ));
    out.close("> + ::core::marker::Send;");
}

fn dispatch_arm(out: &mut Out, method: &Method, trait_name: &str, json: bool) {
    let kind = Kind::of(method);
    let input = message_type(&method.input_type);
    let output = message_type(&method.output_type);
    // Answered in the request's content-subtype: the codec encodes the
    // response and decodes the request.
    let codec = codec_expr(
        "server",
        "call.content_subtype()",
        (&output, &method.output_proto_type),
        (&input, &method.input_proto_type),
        json,
    );
    let (driver, request, sink) = match kind {
        Kind::Unary => ("unary", input, false),
        Kind::ServerStreaming => ("server_streaming", input, true),
        Kind::ClientStreaming => (
            "client_streaming",
            format!("::ferrogrpc::Streaming<{input}>"),
            false,
        ),
        Kind::Bidi => (
            "streaming",
            format!("::ferrogrpc::Streaming<{input}>"),
            true,
        ),
    };
    let name = &method.name;
    out.open(&format!("{:?} => match {codec} {{", method.proto_name));
    out.open(&format!(
        "::core::result::Result::Ok(codec) => ::std::boxed::Box::pin(::ferrogrpc::server::{driver}("
    ));
    out.line("call,");
    out.line("codec,");
    if sink {
        out.open(&format!(
            "move |request: ::ferrogrpc::Request<{request}>, \
             responses: ::ferrogrpc::server::ResponseSink<{output}>| async move {{"
        ));
        out.line(&format!(
            "<T as {trait_name}>::{name}(&inner, request, responses).await"
        ));
    } else {
        out.open(&format!(
            "move |request: ::ferrogrpc::Request<{request}>| async move {{"
        ));
        out.line(&format!(
            "<T as {trait_name}>::{name}(&inner, request).await"
        ));
    }
    out.close("},");
    out.close(")),");
    out.line(
        "::core::result::Result::Err(status) => ::std::boxed::Box::pin(async move { call.fail(status) }),",
    );
    out.close("},");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_types_are_reached_from_the_nested_module() {
        assert_eq!(message_type("Point"), "super::Point");
        assert_eq!(
            message_type("super::other::Msg"),
            "super::super::other::Msg"
        );
        assert_eq!(
            message_type("::prost_types::Timestamp"),
            "::prost_types::Timestamp"
        );
        assert_eq!(message_type("()"), "()");
        assert_eq!(message_type("crate::ext::Msg"), "crate::ext::Msg");
    }

    #[test]
    fn proto_type_names_drop_own_package() {
        assert_eq!(proto_type_name(".a.b.Msg", "a.b"), "Msg");
        assert_eq!(proto_type_name(".a.bc.Msg", "a.b"), "a.bc.Msg");
        assert_eq!(proto_type_name(".Msg", ""), "Msg");
        assert_eq!(
            proto_type_name(".google.protobuf.Empty", "a"),
            "google.protobuf.Empty"
        );
    }
}
