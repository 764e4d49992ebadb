//! Server reflection over loopback: the descriptors `ferrogrpc-build`
//! embeds, gathered by `ServerBuilder::add_reflection`, asked for with the
//! `grpc.reflection.v1` and `v1alpha` clients, every request kind on both.

mod common;

use std::collections::BTreeSet;

use codegen_tests::{
    a::b::{
        c::{
            lookup_server::{Lookup, LookupServer},
            Local,
        },
        Parent,
    },
    edge::empty_server::{self, EmptyServer},
    nopackage::{
        pinger_server::{Pinger, PingerServer},
        PingReply, PingRequest,
    },
    opts::tagged_server::{Tagged, TaggedServer},
    other::pkg::Thing,
    routeguide,
    wkt::{
        clock_server::{Clock, ClockServer},
        AddRequest, Count,
    },
};
use ferrogrpc::{
    client::{Channel, RequestSink},
    reflection::{
        self,
        v1::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ExtensionRequest, ServerReflectionRequest, ServerReflectionResponse,
        },
        v1alpha,
    },
    server::{BoxFuture, ResponseSink, Server, ServerBuilder, ServerCall, Service},
    Code, Request, Response, Status, Streaming,
};
use prost::Message;
use prost_types::{Any, FileDescriptorProto, Timestamp};

// ----- services ---------------------------------------------------------------

fn unimplemented<T>() -> Result<T, Status> {
    Err(Status::unimplemented("only described here"))
}

struct LookupImpl;

impl Lookup for LookupImpl {
    async fn get(&self, _: Request<Thing>) -> Result<Response<Local>, Status> {
        unimplemented()
    }
    async fn put(&self, _: Request<Local>) -> Result<Response<Thing>, Status> {
        unimplemented()
    }
    async fn parents(
        &self,
        _: Request<Streaming<Parent>>,
        _: ResponseSink<Parent>,
    ) -> Result<(), Status> {
        unimplemented()
    }
}

struct ClockImpl;

impl Clock for ClockImpl {
    async fn now(&self, _: Request<()>) -> Result<Response<Timestamp>, Status> {
        unimplemented()
    }
    async fn add(&self, _: Request<AddRequest>) -> Result<Response<Timestamp>, Status> {
        unimplemented()
    }
    async fn inspect(&self, _: Request<Any>) -> Result<Response<()>, Status> {
        unimplemented()
    }
    async fn echo(
        &self,
        _: Request<Streaming<Timestamp>>,
        _: ResponseSink<Timestamp>,
    ) -> Result<(), Status> {
        unimplemented()
    }
    async fn count_empties(&self, _: Request<Streaming<()>>) -> Result<Response<Count>, Status> {
        unimplemented()
    }
    async fn empties(&self, _: Request<Count>, _: ResponseSink<()>) -> Result<(), Status> {
        unimplemented()
    }
}

struct PingerImpl;

impl Pinger for PingerImpl {
    async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        unimplemented()
    }
}

struct TaggedImpl;

impl Tagged for TaggedImpl {
    async fn r#do(&self, _: Request<()>) -> Result<Response<()>, Status> {
        unimplemented()
    }
}

struct Nothing;

impl empty_server::Empty for Nothing {}

/// A service written by hand, which gives no descriptors.
struct HandWritten(&'static str);

impl Service for HandWritten {
    fn name(&self) -> &'static str {
        self.0
    }

    fn call(&self, _method: &str, call: ServerCall) -> BoxFuture {
        Box::pin(call.unimplemented())
    }
}

/// Services of every shape, some added after `add_reflection`.
fn server() -> ServerBuilder {
    Server::builder()
        .add_service(LookupServer::new(LookupImpl))
        .add_service(PingerServer::new(PingerImpl))
        .add_service(EmptyServer::new(Nothing))
        .add_reflection()
        .add_service(ClockServer::new(ClockImpl))
        .add_service(TaggedServer::new(TaggedImpl))
        .add_service(HandWritten("hand.Undescribed"))
}

// ----- the client side --------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Version {
    V1,
    V1Alpha,
}

const VERSIONS: [Version; 2] = [Version::V1, Version::V1Alpha];

/// The same message in another package: the two versions' messages are
/// the same on the wire.
fn transcode<A: Message, B: Message + Default>(message: &A) -> B {
    B::decode(message.encode_to_vec().as_slice()).unwrap()
}

/// One `ServerReflectionInfo` stream; requests and responses are handled
/// as v1 messages whichever version the stream is.
enum Reflector {
    V1(
        RequestSink<ServerReflectionRequest>,
        Streaming<ServerReflectionResponse>,
    ),
    V1Alpha(
        RequestSink<v1alpha::ServerReflectionRequest>,
        Streaming<v1alpha::ServerReflectionResponse>,
    ),
}

impl Reflector {
    async fn open(channel: &Channel, version: Version) -> Reflector {
        match version {
            Version::V1 => {
                let (sink, stream) = ServerReflectionClient::new(channel.clone())
                    .server_reflection_info(())
                    .await
                    .unwrap();
                Reflector::V1(sink, stream)
            }
            Version::V1Alpha => {
                let (sink, stream) =
                    v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone())
                        .server_reflection_info(())
                        .await
                        .unwrap();
                Reflector::V1Alpha(sink, stream)
            }
        }
    }

    async fn send(&mut self, request: &ServerReflectionRequest) {
        match self {
            Reflector::V1(sink, _) => sink.send(request.clone()).await.unwrap(),
            Reflector::V1Alpha(sink, _) => sink.send(transcode(request)).await.unwrap(),
        }
    }

    async fn receive(&mut self) -> Option<ServerReflectionResponse> {
        match self {
            Reflector::V1(_, stream) => stream.message().await.unwrap(),
            Reflector::V1Alpha(_, stream) => stream
                .message()
                .await
                .unwrap()
                .map(|response| transcode(&response)),
        }
    }

    fn close(&mut self) {
        match self {
            Reflector::V1(sink, _) => sink.close().unwrap(),
            Reflector::V1Alpha(sink, _) => sink.close().unwrap(),
        }
    }

    /// Asks one question; checks the echo of the request and host.
    async fn ask(&mut self, request: MessageRequest) -> MessageResponse {
        let request = ServerReflectionRequest {
            host: "localhost".into(),
            message_request: Some(request),
        };
        self.send(&request).await;
        let response = self.receive().await.expect("a response");
        assert_eq!(response.valid_host, "localhost");
        assert_eq!(response.original_request.as_ref(), Some(&request));
        response.message_response.expect("an answer")
    }

    async fn files(&mut self, request: MessageRequest) -> Vec<FileDescriptorProto> {
        let what = format!("{request:?}");
        match self.ask(request).await {
            MessageResponse::FileDescriptorResponse(files) => files
                .file_descriptor_proto
                .iter()
                .map(|b| FileDescriptorProto::decode(b.as_slice()).unwrap())
                .collect(),
            other => panic!("{what}: not files: {other:?}"),
        }
    }

    async fn file_names(&mut self, request: MessageRequest) -> Vec<String> {
        names(&self.files(request).await)
    }

    async fn error_code(&mut self, request: MessageRequest) -> i32 {
        let what = format!("{request:?}");
        match self.ask(request).await {
            MessageResponse::ErrorResponse(e) => {
                assert!(!e.error_message.is_empty());
                e.error_code
            }
            other => panic!("{what}: not an error: {other:?}"),
        }
    }

    async fn services(&mut self) -> Vec<String> {
        match self.ask(MessageRequest::ListServices(String::new())).await {
            MessageResponse::ListServicesResponse(list) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("not services: {other:?}"),
        }
    }
}

fn names(files: &[FileDescriptorProto]) -> Vec<String> {
    files.iter().map(|f| f.name().to_string()).collect()
}

fn symbol(name: &str) -> MessageRequest {
    MessageRequest::FileContainingSymbol(name.into())
}

fn file(name: &str) -> MessageRequest {
    MessageRequest::FileByFilename(name.into())
}

// ----- tests ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_every_service_of_the_server() {
    let running = common::serve(server()).await;
    for version in VERSIONS {
        let mut reflector = Reflector::open(&running.channel, version).await;
        assert_eq!(
            reflector.services().await,
            [
                "Pinger",
                "a.b.c.Lookup",
                "edge.Empty",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
                "hand.Undescribed",
                "opts.Tagged",
                "wkt.Clock",
            ],
            "{version:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbols_of_nested_packages_come_with_their_imports() {
    let running = common::serve(server()).await;
    for version in VERSIONS {
        let mut reflector = Reflector::open(&running.channel, version).await;
        // The service's file first, then what it imports; each file once.
        let files = reflector.files(symbol("a.b.c.Lookup")).await;
        assert_eq!(
            names(&files),
            [
                "a/b/c/nested.proto",
                "a/b/parent.proto",
                "other/thing.proto"
            ],
            "{version:?}"
        );
        assert_eq!(files[0].package(), "a.b.c");
        assert_eq!(files[0].service[0].method.len(), 3);
        assert_eq!(files[1].message_type[0].name(), "Parent");
        // No comments.
        assert!(files.iter().all(|f| f.source_code_info.is_none()));

        // Every kind of symbol, each on a new stream so that imports come
        // again.
        for (name, first) in [
            ("a.b.c.Lookup.Parents", "a/b/c/nested.proto"),
            ("a.b.c.Local", "a/b/c/nested.proto"),
            ("a.b.c.Local.thing", "a/b/c/nested.proto"),
            ("a.b.Parent", "a/b/parent.proto"),
            ("a.b.Parent.name", "a/b/parent.proto"),
            ("other.pkg.Thing", "other/thing.proto"),
            ("Pinger", "nopackage.proto"),
            ("Pinger.Ping", "nopackage.proto"),
            ("PingReply", "nopackage.proto"),
            ("edge.Empty", "edge.proto"),
            ("opts.Tagged.Do", "options.proto"),
            ("opts.doc_url", "options.proto"),
        ] {
            let mut fresh = Reflector::open(&running.channel, version).await;
            let files = fresh.file_names(symbol(name)).await;
            assert_eq!(files[0], first, "{name} ({version:?})");
        }
        let files = reflector.file_names(file("a/b/parent.proto")).await;
        assert_eq!(files, ["a/b/parent.proto"], "{version:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_known_types_are_served_with_the_files_that_use_them() {
    let running = common::serve(server()).await;
    for version in VERSIONS {
        let mut reflector = Reflector::open(&running.channel, version).await;
        let files = reflector.file_names(symbol("wkt.Clock")).await;
        assert_eq!(files[0], "wkt.proto", "{version:?}");
        let imports: BTreeSet<_> = files[1..].iter().map(String::as_str).collect();
        assert_eq!(
            imports,
            BTreeSet::from([
                "google/protobuf/any.proto",
                "google/protobuf/duration.proto",
                "google/protobuf/empty.proto",
                "google/protobuf/timestamp.proto",
            ]),
            "{version:?}"
        );

        let mut fresh = Reflector::open(&running.channel, version).await;
        let timestamp = fresh.files(symbol("google.protobuf.Timestamp")).await;
        assert_eq!(names(&timestamp), ["google/protobuf/timestamp.proto"]);
        let fields: Vec<_> = timestamp[0].message_type[0]
            .field
            .iter()
            .map(|f| f.name())
            .collect();
        assert_eq!(fields, ["seconds", "nanos"]);
        let empty = fresh.file_names(file("google/protobuf/empty.proto")).await;
        assert_eq!(empty, ["google/protobuf/empty.proto"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_already_sent_on_the_stream_are_not_sent_again() {
    let running = common::serve(server()).await;
    for version in VERSIONS {
        let mut reflector = Reflector::open(&running.channel, version).await;
        let first = reflector.file_names(file("a/b/c/nested.proto")).await;
        assert_eq!(first.len(), 3, "{version:?}");
        // Asked for again: the file itself, but not its imports.
        let again = reflector.file_names(symbol("a.b.c.Local")).await;
        assert_eq!(again, ["a/b/c/nested.proto"], "{version:?}");
        let import = reflector.file_names(symbol("other.pkg.Thing")).await;
        assert_eq!(import, ["other/thing.proto"], "{version:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_and_custom_options() {
    let running = common::serve(server()).await;
    for version in VERSIONS {
        let mut reflector = Reflector::open(&running.channel, version).await;
        let request = MessageRequest::FileContainingExtension(ExtensionRequest {
            containing_type: "google.protobuf.MethodOptions".into(),
            extension_number: 50001,
        });
        let files = reflector.file_names(request).await;
        assert_eq!(files[0], "options.proto", "{version:?}");
        assert!(files.contains(&"google/protobuf/descriptor.proto".to_string()));

        match reflector
            .ask(MessageRequest::AllExtensionNumbersOfType(
                "google.protobuf.MethodOptions".into(),
            ))
            .await
        {
            MessageResponse::AllExtensionNumbersResponse(numbers) => {
                assert_eq!(numbers.base_type_name, "google.protobuf.MethodOptions");
                assert_eq!(numbers.extension_number, [50001]);
            }
            other => panic!("{other:?}"),
        }
        // A message nothing extends has no extension numbers.
        match reflector
            .ask(MessageRequest::AllExtensionNumbersOfType(
                "a.b.Parent".into(),
            ))
            .await
        {
            MessageResponse::AllExtensionNumbersResponse(numbers) => {
                assert!(numbers.extension_number.is_empty())
            }
            other => panic!("{other:?}"),
        }
    }
    // The custom option's value, which prost-types cannot hold, is in the
    // file as served.
    let mut reflector = Reflector::open(&running.channel, Version::V1).await;
    match reflector.ask(file("options.proto")).await {
        MessageResponse::FileDescriptorResponse(files) => {
            let options = &files.file_descriptor_proto[0];
            let url = b"https://docs.invalid/opts/Do";
            assert!(options.windows(url.len()).any(|w| w == url));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_are_not_found_and_the_stream_goes_on() {
    let running = common::serve(server()).await;
    let not_found = Code::NotFound as i32;
    for version in VERSIONS {
        let mut reflector = Reflector::open(&running.channel, version).await;
        for request in [
            symbol("a.b.c.Nope"),
            symbol(".a.b.c.Lookup"),
            symbol("a.b.c"),
            // Listed, but written by hand without descriptors.
            symbol("hand.Undescribed"),
            file("nope.proto"),
            MessageRequest::FileContainingExtension(ExtensionRequest {
                containing_type: "google.protobuf.MethodOptions".into(),
                extension_number: 50002,
            }),
            MessageRequest::AllExtensionNumbersOfType("a.b.Nope".into()),
        ] {
            let what = format!("{request:?} ({version:?})");
            assert_eq!(reflector.error_code(request).await, not_found, "{what}");
        }
        // A request with nothing set is invalid, and the stream still works.
        let empty = ServerReflectionRequest::default();
        reflector.send(&empty).await;
        match reflector.receive().await.unwrap().message_response {
            Some(MessageResponse::ErrorResponse(e)) => {
                assert_eq!(e.error_code, Code::InvalidArgument as i32)
            }
            other => panic!("{other:?}"),
        }
        let files = reflector.file_names(symbol("Pinger")).await;
        assert_eq!(files, ["nopackage.proto"], "{version:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_in_order_until_the_client_closes() {
    let running = common::serve(server()).await;
    for version in VERSIONS {
        let mut reflector = Reflector::open(&running.channel, version).await;
        let requests = [
            symbol("wkt.Clock"),
            MessageRequest::ListServices(String::new()),
            file("nope.proto"),
            symbol("a.b.Parent"),
        ];
        for request in &requests {
            reflector
                .send(&ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(request.clone()),
                })
                .await;
        }
        reflector.close();
        for request in &requests {
            let response = reflector.receive().await.expect("an answer");
            assert_eq!(
                response.original_request.unwrap().message_request.as_ref(),
                Some(request),
                "{version:?}"
            );
        }
        assert!(reflector.receive().await.is_none(), "{version:?}");
    }
}

/// What grpcurl does to call a method: every method's input and output
/// types are defined in the files served for its service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_of_every_described_service_resolves() {
    let running = common::serve(server()).await;
    for version in VERSIONS {
        let mut reflector = Reflector::open(&running.channel, version).await;
        let mut methods = 0;
        for service in reflector.services().await {
            if service == "hand.Undescribed" {
                continue;
            }
            let mut fresh = Reflector::open(&running.channel, version).await;
            let files = fresh.files(symbol(&service)).await;
            let mut types = BTreeSet::new();
            for f in &files {
                let package = f.package();
                for m in &f.message_type {
                    let name = if package.is_empty() {
                        format!(".{}", m.name())
                    } else {
                        format!(".{package}.{}", m.name())
                    };
                    types.insert(name);
                }
            }
            let (package, short) = service.rsplit_once('.').unwrap_or(("", &service));
            let definition = files[0]
                .service
                .iter()
                .find(|s| s.name() == short && files[0].package() == package)
                .unwrap_or_else(|| panic!("{service} is not in {}", files[0].name()));
            for method in &definition.method {
                for t in [method.input_type(), method.output_type()] {
                    assert!(types.contains(t), "{service}: {t} ({version:?})");
                }
                methods += 1;
            }
        }
        // Lookup 3, Pinger 1, Clock 6, Tagged 1, and 1 each for reflection.
        assert_eq!(methods, 13, "{version:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_registered_by_hand() {
    // A service written by hand, described by a generated FILE_DESCRIPTORS.
    let registered = reflection::Builder::new()
        .register_file_descriptors(routeguide::FILE_DESCRIPTORS)
        .unwrap();
    let running = common::serve(
        Server::builder()
            .add_service(HandWritten("routeguide.RouteGuide"))
            .add_reflection_with(registered),
    )
    .await;
    let mut reflector = Reflector::open(&running.channel, Version::V1).await;
    assert_eq!(
        reflector.services().await,
        [
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "routeguide.RouteGuide"
        ]
    );
    let files = reflector
        .file_names(symbol("routeguide.RouteGuide.RouteChat"))
        .await;
    assert_eq!(files, ["routeguide.proto"]);

    // A reflection service built on its own from an encoded
    // FileDescriptorSet, as ferrogrpc-build writes it; it lists the services
    // of its files.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("reflection-fds");
    std::fs::create_dir_all(&dir).unwrap();
    let set_path = dir.join("set.bin");
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    ferrogrpc_build::configure()
        .out_dir(&dir)
        .emit_rerun_if_changed(false)
        .file_descriptor_set_path(&set_path)
        .compile(&["a/b/c/nested.proto"], &[&proto_dir])
        .unwrap();
    let service = reflection::Builder::new()
        .register_file_descriptor_set(std::fs::read(&set_path).unwrap())
        .unwrap()
        .build();
    let running = common::serve(
        Server::builder()
            .add_service(service.v1())
            .add_service(service.v1alpha()),
    )
    .await;
    for version in VERSIONS {
        let mut reflector = Reflector::open(&running.channel, version).await;
        assert_eq!(
            reflector.services().await,
            [
                "a.b.c.Lookup",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ]
        );
        let files = reflector.files(symbol("a.b.c.Lookup.Get")).await;
        assert_eq!(names(&files)[0], "a/b/c/nested.proto");
        // The set kept its comments, and so does the file served from it.
        assert!(files[0].source_code_info.is_some());
    }

    // Bytes that are no descriptor set are refused.
    let err = reflection::Builder::new()
        .register_file_descriptor_set(&b"\x0a\xff"[..])
        .unwrap_err();
    assert!(err.to_string().contains("FileDescriptorSet"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_describes_itself() {
    let running = common::serve(Server::builder().add_reflection()).await;
    for version in VERSIONS {
        let mut reflector = Reflector::open(&running.channel, version).await;
        for (service, file) in [
            (
                "grpc.reflection.v1.ServerReflection",
                "grpc/reflection/v1/reflection.proto",
            ),
            (
                "grpc.reflection.v1alpha.ServerReflection",
                "grpc/reflection/v1alpha/reflection.proto",
            ),
        ] {
            let files = reflector.files(symbol(service)).await;
            assert_eq!(names(&files), [file], "{version:?}");
            let messages: Vec<_> = files[0].message_type.iter().map(|m| m.name()).collect();
            assert!(messages.contains(&"ServerReflectionRequest"));
        }
    }
}
