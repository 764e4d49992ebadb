//! `ferrogrpc call`: JSON in, a call of any kind, JSON out.

use std::{io::Read as _, process::ExitCode};

use bytes::{Bytes, BytesMut};
use clap::Args;
use ferrogrpc::{codec::Codec, metadata::MetadataMap, Status};
use http::uri::PathAndQuery;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor, SerializeOptions,
};

use crate::{
    connect::{seconds, ConnectArgs},
    descriptors::{self, SourceArgs},
    error::{hint, status_exit, Error},
};

/// The flags of `call`.
#[derive(Args, Debug)]
pub struct CallArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The method: `pkg.Service/Method` (or `pkg.Service.Method`).
    #[arg(value_name = "SERVICE/METHOD")]
    method: String,
    #[command(flatten)]
    source: SourceArgs,
    /// The request as JSON (protobuf's JSON mapping); several JSON values
    /// one after another for client streaming; `@` reads them from stdin.
    /// Default: one empty message (none for client streaming).
    #[arg(short = 'd', long = "data", value_name = "JSON")]
    data: Option<String>,
    /// The call's deadline, in seconds from now.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Also print the response headers and trailers (on stderr).
    #[arg(short = 'v', long)]
    verbose: bool,
}

/// Runs `call`.
pub async fn run(args: CallArgs) -> Result<ExitCode, Error> {
    let mut source = args.source.open(&args.connect).await?;
    let name = args.method.trim_start_matches('/');
    let pool = source
        .pool_for(name)
        .await
        .map_err(|err| Error::new(format!("cannot find method {name:?}: {err}")))?;
    let method = find_method(&pool, name)?;
    let requests = requests(&method, args.data.as_deref())?;
    let mut request = args.connect.request(())?;
    if let Some(timeout) = args.timeout {
        request.set_timeout(seconds(timeout, "--timeout")?);
    }
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let path = PathAndQuery::try_from(path.as_str())
        .map_err(|err| Error::new(format!("{path:?} is not a valid method path: {err}")))?;
    let channel = args.connect.channel()?;
    let codec = DynamicCodec {
        output: method.output(),
    };
    let (mut sink, mut responses) = match channel.streaming(path, request, codec).await {
        Ok(call) => call,
        Err(status) => return Ok(print_status(&status, &pool, &args.connect.target)),
    };
    // Send while reading, so that a bidi call's answers flow while the
    // requests go out. A send that fails locally cancels the call.
    let send = async {
        for message in requests {
            if let Err(status) = sink.send(message).await {
                sink.cancel();
                return Err(status);
            }
        }
        sink.close()
    };
    let verbose = args.verbose;
    let receive = async {
        if verbose {
            if let Ok(headers) = responses.headers().await {
                print_metadata("Response headers", headers);
            }
        }
        let options = SerializeOptions::new();
        while let Some(message) = responses.message().await? {
            let mut out = serde_json::Serializer::new(Vec::new());
            message
                .serialize_with_options(&mut out, &options)
                .map_err(|err| Status::internal(format!("cannot print the response: {err}")))?;
            println!("{}", String::from_utf8_lossy(&out.into_inner()));
        }
        Ok::<(), Status>(())
    };
    let (sent, received) = tokio::join!(send, receive);
    if verbose {
        if let Some(trailers) = responses.trailers() {
            print_metadata("Response trailers", trailers);
        }
    }
    // The call's own status wins over a failed send, which mostly says
    // only that the server ended the call early; a send that failed here
    // (and cancelled the call) says why.
    let status = match (received, sent) {
        (Ok(()), _) => return Ok(ExitCode::SUCCESS),
        (Err(received), Err(sent)) if received.code() == ferrogrpc::Code::Cancelled => sent,
        (Err(received), _) => received,
    };
    Ok(print_status(&status, &pool, &args.connect.target))
}

/// The method `name` names, or an error that says what is there instead.
fn find_method(pool: &DescriptorPool, name: &str) -> Result<MethodDescriptor, Error> {
    if let Some(method) = descriptors::method(pool, name) {
        return Ok(method);
    }
    let (service, method) = name
        .rsplit_once('/')
        .or_else(|| name.rsplit_once('.'))
        .ok_or_else(|| {
            Error::new(format!(
                "{name:?} is not a method name: write it as pkg.Service/Method"
            ))
        })?;
    match pool.get_service_by_name(service) {
        Some(found) => {
            let known: Vec<String> = found.methods().map(|m| m.name().to_string()).collect();
            Err(Error::new(format!(
                "service {service} has no method {method:?} (it has: {})",
                known.join(", ")
            )))
        }
        None => Err(Error::new(format!("unknown service {service:?}"))),
    }
}

/// The request messages from `--data`, checked against the method's kind.
fn requests(method: &MethodDescriptor, data: Option<&str>) -> Result<Vec<DynamicMessage>, Error> {
    let input = method.input();
    let messages = match data {
        None if method.is_client_streaming() => Vec::new(),
        None => vec![DynamicMessage::new(input.clone())],
        Some(data) => {
            let text = if data == "@" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|err| Error::new(format!("cannot read stdin: {err}")))?;
                text
            } else {
                data.to_string()
            };
            parse_messages(&input, &text)?
        }
    };
    if !method.is_client_streaming() && messages.len() != 1 {
        return Err(Error::new(format!(
            "{} takes exactly one request message; got {}",
            method.full_name(),
            messages.len()
        )));
    }
    Ok(messages)
}

/// Every JSON value in `text`, each as a message of type `input`. An
/// error names the message's index and the path of the field at fault.
pub fn parse_messages(input: &MessageDescriptor, text: &str) -> Result<Vec<DynamicMessage>, Error> {
    let mut messages = Vec::new();
    for (i, value) in serde_json::Deserializer::from_str(text)
        .into_iter::<serde_json::Value>()
        .enumerate()
    {
        let value =
            value.map_err(|err| Error::new(format!("request {}: not valid JSON: {err}", i + 1)))?;
        let mut track = serde_path_to_error::Track::new();
        let parsed = DynamicMessage::deserialize(
            input.clone(),
            serde_path_to_error::Deserializer::new(value, &mut track),
        );
        match parsed {
            Ok(message) => messages.push(message),
            Err(err) => {
                let path = track.path().to_string();
                let at = if path == "." || path.is_empty() {
                    String::new()
                } else {
                    format!(" at field {path}")
                };
                return Err(Error::new(format!(
                    "request {}: does not fit {}{at}: {err}",
                    i + 1,
                    input.full_name()
                )));
            }
        }
    }
    Ok(messages)
}

fn print_metadata(title: &str, metadata: &MetadataMap) {
    eprintln!("{title}:");
    for (key, value) in metadata.iter() {
        match value {
            ferrogrpc::metadata::MetadataValue::Ascii(text) => eprintln!("  {key}: {text}"),
            ferrogrpc::metadata::MetadataValue::Binary(bytes) => {
                use base64::Engine as _;
                let text = base64::engine::general_purpose::STANDARD.encode(bytes);
                eprintln!("  {key}: {text}");
            }
        }
    }
}

/// Prints a call's non-OK status on stderr, with its rich error details
/// decoded, and gives the exit code for it.
fn print_status(status: &Status, pool: &DescriptorPool, target: &str) -> ExitCode {
    eprintln!("ERROR:");
    eprintln!("  Code: {}", status.code());
    eprintln!("  Message: {}", status.message());
    if let Some(hint) = hint(status) {
        eprintln!("  Hint ({target}): {hint}");
    }
    if !status.details().is_empty() {
        eprintln!("  Details:");
        match details_json(status.details(), pool) {
            Ok(details) => {
                for (i, detail) in details.iter().enumerate() {
                    eprintln!("  {}) {detail}", i + 1);
                }
            }
            Err(why) => eprintln!("  (cannot decode grpc-status-details-bin: {why})"),
        }
    }
    ExitCode::from(status_exit(status.code()))
}

/// Each detail of a `google.rpc.Status` as JSON, with its `@type`; types
/// neither the server's schema nor `google.rpc`'s standard details know
/// are shown by type and size.
fn details_json(details: &Bytes, pool: &DescriptorPool) -> Result<Vec<String>, String> {
    let mut pool = pool.clone();
    for file in standard_details().files() {
        if pool.get_file_by_name(file.name()).is_none() {
            pool.add_file_descriptor_proto(file.file_descriptor_proto().clone())
                .map_err(|err| err.to_string())?;
        }
    }
    let status_type = pool
        .get_message_by_name("google.rpc.Status")
        .ok_or("google.rpc.Status is not known")?;
    let status = DynamicMessage::decode(status_type, details.clone())
        .map_err(|err| format!("not a google.rpc.Status: {err}"))?;
    let Some(list) = status.get_field_by_name("details") else {
        return Ok(Vec::new());
    };
    let Some(items) = list.as_list() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in items {
        let Some(any) = item.as_message() else {
            continue;
        };
        let any = any
            .transcode_to::<prost_types::Any>()
            .map_err(|err| err.to_string())?;
        let name = any.type_url.rsplit('/').next().unwrap_or_default();
        let text = match pool.get_message_by_name(name) {
            Some(descriptor) => match DynamicMessage::decode(descriptor, any.value.as_slice()) {
                Ok(message) => {
                    // As protobuf's JSON of an Any: "@type" first, then the
                    // fields in their declared order (a serde_json::Value
                    // would sort them), or, for a well-known type with a
                    // JSON form of its own, that form as "value".
                    let json = serde_json::to_string(&message).map_err(|e| e.to_string())?;
                    let type_url = serde_json::Value::from(any.type_url.clone());
                    let own_form =
                        name.starts_with("google.protobuf.") && name != "google.protobuf.Empty";
                    match json.strip_prefix('{').and_then(|j| j.strip_suffix('}')) {
                        _ if own_form => format!("{{\"@type\":{type_url},\"value\":{json}}}"),
                        Some("") => format!("{{\"@type\":{type_url}}}"),
                        Some(fields) => format!("{{\"@type\":{type_url},{fields}}}"),
                        None => format!("{{\"@type\":{type_url},\"value\":{json}}}"),
                    }
                }
                Err(err) => format!("{} (does not decode: {err})", any.type_url),
            },
            None => format!("{} ({} bytes, type unknown)", any.type_url, any.value.len()),
        };
        out.push(text);
    }
    Ok(out)
}

/// `google.rpc.Status` and the standard error details, compiled once from
/// the protos ferrogrpc ships.
fn standard_details() -> &'static DescriptorPool {
    static POOL: std::sync::OnceLock<DescriptorPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        struct Embedded;
        impl protox::file::FileResolver for Embedded {
            fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
                let source = match name {
                    "google/rpc/status.proto" => {
                        include_str!("../../ferrogrpc/proto/google/rpc/status.proto")
                    }
                    "google/rpc/error_details.proto" => {
                        include_str!("../../ferrogrpc/proto/google/rpc/error_details.proto")
                    }
                    _ => return Err(protox::Error::file_not_found(name)),
                };
                protox::file::File::from_source(name, source)
            }
        }
        let mut resolver = protox::file::ChainFileResolver::new();
        resolver.add(Embedded);
        resolver.add(protox::file::GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        // The sources are ferrogrpc's own, checked by its build: they compile.
        match compiler.open_files(["google/rpc/status.proto", "google/rpc/error_details.proto"]) {
            Ok(_) => compiler.descriptor_pool(),
            Err(_) => DescriptorPool::new(),
        }
    })
}

/// Encodes and decodes dynamic messages; the request's type travels with
/// each message, the response's is the codec's.
#[derive(Clone)]
struct DynamicCodec {
    output: MessageDescriptor,
}

impl Codec<DynamicMessage, DynamicMessage> for DynamicCodec {
    fn encoded_len(&mut self, item: &DynamicMessage) -> Option<usize> {
        Some(item.encoded_len())
    }

    fn encode(&mut self, item: &DynamicMessage, dst: &mut BytesMut) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|err| Status::internal(format!("cannot encode the request: {err}")))
    }

    fn decode(&mut self, src: Bytes) -> Result<DynamicMessage, Status> {
        DynamicMessage::decode(self.output.clone(), src).map_err(|err| {
            Status::internal(format!(
                "the response does not decode as {}: {err}",
                self.output.full_name()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A google.rpc.Status of `json`, encoded as in grpc-status-details-bin.
    fn status_bytes(json: &str) -> Bytes {
        let status = standard_details()
            .get_message_by_name("google.rpc.Status")
            .expect("google.rpc.Status");
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let message = DynamicMessage::deserialize(status, &mut deserializer).expect("a Status");
        Bytes::from(message.encode_to_vec())
    }

    #[test]
    fn details_print_type_first_then_fields_in_declared_order() {
        let details = status_bytes(
            r#"{"code": 3, "details": [
                {"@type": "type.googleapis.com/google.rpc.BadRequest",
                 "fieldViolations": [{"field": "name", "description": "too short"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                 "retryDelay": "1.500s"},
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure"}
            ]}"#,
        );
        let printed = details_json(&details, &DescriptorPool::new()).expect("details");
        assert_eq!(
            printed,
            [
                r#"{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"name","description":"too short"}]}"#,
                r#"{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.500s"}"#,
                r#"{"@type":"type.googleapis.com/google.rpc.QuotaFailure"}"#,
            ]
        );
    }
}
