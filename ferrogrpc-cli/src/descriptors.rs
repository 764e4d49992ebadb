//! Where the command learns the server's schema: server reflection (v1,
//! falling back to v1alpha), `.proto` files compiled in-process by protox,
//! or protoset files (serialized `FileDescriptorSet`s).

use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
};

use bytes::Bytes;
use clap::Args;
use ferrogrpc::{
    client::{Channel, RequestSink},
    codec::ProstCodec,
    reflection::v1::{
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest, ServerReflectionResponse,
    },
    Code, Status, Streaming,
};
use http::uri::PathAndQuery;
use prost::Message as _;
use prost_reflect::DescriptorPool;
use prost_types::{FileDescriptorProto, FileDescriptorSet};

use crate::{connect::ConnectArgs, error::Error};

/// Flags that name schema files instead of asking the server.
#[derive(Args, Debug, Clone, Default)]
pub struct SourceArgs {
    /// A `.proto` file describing the server's services, instead of server
    /// reflection (repeatable). Compiled in-process: no protoc needed.
    #[arg(long = "proto", value_name = "FILE")]
    pub protos: Vec<PathBuf>,
    /// A directory `--proto` files and their imports are found in
    /// (repeatable; default: the directory of each `--proto` file).
    #[arg(long = "import-path", value_name = "DIR", requires = "protos")]
    pub import_paths: Vec<PathBuf>,
    /// A file holding a serialized `google.protobuf.FileDescriptorSet` (as
    /// `protoc --descriptor_set_out --include_imports` writes), instead of
    /// server reflection (repeatable).
    #[arg(long = "protoset", value_name = "FILE", conflicts_with = "protos")]
    pub protosets: Vec<PathBuf>,
}

impl SourceArgs {
    /// The schema source these flags choose: files when given, else the
    /// server's reflection service.
    pub async fn open(&self, connect: &ConnectArgs) -> Result<Source, Error> {
        if !self.protos.is_empty() {
            return Ok(Source::Files(self.compile()?));
        }
        if !self.protosets.is_empty() {
            let mut pool = DescriptorPool::new();
            for path in &self.protosets {
                let bytes = std::fs::read(path).map_err(|err| {
                    Error::new(format!("--protoset: cannot read {}: {err}", path.display()))
                })?;
                let set = FileDescriptorSet::decode(bytes.as_slice()).map_err(|err| {
                    Error::new(format!(
                        "--protoset: {} is not a FileDescriptorSet: {err}",
                        path.display()
                    ))
                })?;
                pool.add_file_descriptor_set(set)
                    .map_err(|err| Error::new(format!("--protoset: {}: {err}", path.display())))?;
            }
            return Ok(Source::Files(pool));
        }
        Ok(Source::Reflection(Box::new(Reflection::new(connect)?)))
    }

    fn compile(&self) -> Result<DescriptorPool, Error> {
        let includes: Vec<PathBuf> = if self.import_paths.is_empty() {
            let mut dirs: Vec<PathBuf> = self
                .protos
                .iter()
                .map(|p| match p.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                    _ => PathBuf::from("."),
                })
                .collect();
            dirs.dedup();
            dirs
        } else {
            self.import_paths.clone()
        };
        let mut compiler = protox::Compiler::new(&includes)
            .map_err(|err| Error::new(format!("--import-path: {err}")))?;
        compiler.include_imports(true);
        compiler
            .open_files(&self.protos)
            .map_err(|err| Error::new(format!("--proto: {err}")))?;
        Ok(compiler.descriptor_pool())
    }
}

/// A schema source.
pub enum Source {
    /// Descriptors from files, all known up front.
    Files(DescriptorPool),
    /// The server's reflection service, asked as needed.
    Reflection(Box<Reflection>),
}

impl Source {
    /// The services' full names, sorted.
    pub async fn list_services(&mut self) -> Result<Vec<String>, Error> {
        match self {
            Source::Files(pool) => {
                let names: BTreeSet<String> =
                    pool.services().map(|s| s.full_name().to_string()).collect();
                Ok(names.into_iter().collect())
            }
            Source::Reflection(reflection) => reflection.list_services().await,
        }
    }

    /// The full names (`pkg.Service.Method`) of one service's methods, in
    /// their declared order.
    pub async fn list_methods(&mut self, service: &str) -> Result<Vec<String>, Error> {
        let pool = self.pool_for(service).await?;
        let descriptor = pool.get_service_by_name(service).ok_or_else(|| {
            Error::new(format!(
                "{service:?} is not a service (it is a {})",
                what_is(&pool, service)
            ))
        })?;
        Ok(descriptor
            .methods()
            .map(|m| m.full_name().to_string())
            .collect())
    }

    /// A pool holding `symbol` (a service, method, message, enum or
    /// field's full name) and everything it refers to.
    pub async fn pool_for(&mut self, symbol: &str) -> Result<DescriptorPool, Error> {
        match self {
            Source::Files(pool) => {
                if what_is(pool, symbol) == "unknown symbol" {
                    return Err(Error::new(format!(
                        "symbol {symbol:?} is not in the given files"
                    )));
                }
                Ok(pool.clone())
            }
            Source::Reflection(reflection) => reflection.pool_for(symbol).await,
        }
    }
}

/// What kind of thing `symbol` names in `pool`.
pub fn what_is(pool: &DescriptorPool, symbol: &str) -> &'static str {
    if pool.get_service_by_name(symbol).is_some() {
        "service"
    } else if pool.get_message_by_name(symbol).is_some() {
        "message"
    } else if pool.get_enum_by_name(symbol).is_some() {
        "enum"
    } else if method(pool, symbol).is_some() {
        "method"
    } else if pool.get_extension_by_name(symbol).is_some() {
        "extension"
    } else {
        "unknown symbol"
    }
}

/// The method `pkg.Service.Method` or `pkg.Service/Method`.
pub fn method(pool: &DescriptorPool, name: &str) -> Option<prost_reflect::MethodDescriptor> {
    let name = name.trim_start_matches('/');
    let (service, method) = name.rsplit_once('/').or_else(|| name.rsplit_once('.'))?;
    pool.get_service_by_name(service)?
        .methods()
        .find(|m| m.name() == method)
}

/// The path of reflection's one method, by version.
const V1: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const V1ALPHA: &str = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

/// A conversation with a server's reflection service. v1 and v1alpha carry
/// the same messages (only the package differs), so one set of message
/// types serves both.
pub struct Reflection {
    channel: Channel,
    connect: ConnectArgs,
    /// Whether the server answered v1 with UNIMPLEMENTED.
    alpha: bool,
    stream: Option<(
        RequestSink<ServerReflectionRequest>,
        Streaming<ServerReflectionResponse>,
    )>,
    /// Files received so far, by name.
    files: HashMap<String, FileDescriptorProto>,
}

impl Reflection {
    fn new(connect: &ConnectArgs) -> Result<Reflection, Error> {
        Ok(Reflection {
            channel: connect.channel()?,
            connect: connect.clone(),
            alpha: false,
            stream: None,
            files: HashMap::new(),
        })
    }

    async fn list_services(&mut self) -> Result<Vec<String>, Error> {
        let answer = self
            .ask(MessageRequest::ListServices(String::new()))
            .await?
            .map_err(|why| Error::new(format!("reflection: {why}")))?;
        let MessageResponse::ListServicesResponse(list) = answer else {
            return Err(Error::new(
                "the server answered list_services with something else",
            ));
        };
        let names: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
        Ok(names.into_iter().collect())
    }

    async fn pool_for(&mut self, symbol: &str) -> Result<DescriptorPool, Error> {
        // A method's file is its service's: ask for the service.
        let asked = match symbol.trim_start_matches('/').rsplit_once('/') {
            Some((service, _)) => service.to_string(),
            None => symbol.to_string(),
        };
        let mut answer = self
            .ask(MessageRequest::FileContainingSymbol(asked.clone()))
            .await?;
        if answer.is_err() {
            // Maybe `pkg.Service.Method`: ask for the service.
            if let Some((parent, _)) = asked.rsplit_once('.') {
                answer = self
                    .ask(MessageRequest::FileContainingSymbol(parent.to_string()))
                    .await?;
            }
        }
        let answer = answer
            .map_err(|_| Error::new(format!("the server does not know symbol {symbol:?}")))?;
        self.add_files(answer).await?;
        let mut pool = DescriptorPool::new();
        pool.add_file_descriptor_protos(self.files.values().cloned())
            .map_err(|err| {
                Error::new(format!(
                    "the server's descriptors for {symbol:?} do not make a valid schema: {err}"
                ))
            })?;
        Ok(pool)
    }

    /// Adds the files of a file-descriptor answer and, asking for each,
    /// every file they import.
    async fn add_files(&mut self, answer: MessageResponse) -> Result<(), Error> {
        let mut queue = decode_files(answer)?;
        while let Some(file) = queue.pop() {
            let name = file.name().to_string();
            if self.files.contains_key(&name) {
                continue;
            }
            for dep in &file.dependency {
                if self.files.contains_key(dep) || queue.iter().any(|f| f.name() == dep) {
                    continue;
                }
                match self.ask(MessageRequest::FileByFilename(dep.clone())).await {
                    Ok(Ok(answer)) => queue.extend(decode_files(answer)?),
                    // Some servers leave out the well-known types; protobuf's
                    // own copies are the same.
                    Ok(Err(_)) if dep.starts_with("google/protobuf/") => {
                        match DescriptorPool::global().get_file_by_name(dep) {
                            Some(f) => queue.push(f.file_descriptor_proto().clone()),
                            None => {
                                return Err(Error::new(format!(
                                    "the server does not serve {dep:?}, which {name:?} imports"
                                )))
                            }
                        }
                    }
                    Ok(Err(why)) => {
                        return Err(Error::new(format!(
                            "cannot get {dep:?}, which {name:?} imports: {why}"
                        )))
                    }
                    Err(err) => return Err(err),
                }
            }
            self.files.insert(name, file);
        }
        Ok(())
    }

    /// Sends one request and reads its answer: `Ok(Err(message))` when the
    /// server answered NOT_FOUND, so that callers can try another name.
    async fn ask(
        &mut self,
        request: MessageRequest,
    ) -> Result<Result<MessageResponse, String>, Error> {
        loop {
            let (sink, responses) = match &mut self.stream {
                Some(stream) => stream,
                None => {
                    let path = if self.alpha { V1ALPHA } else { V1 };
                    let opened = self
                        .channel
                        .streaming(
                            PathAndQuery::from_static(path),
                            self.connect.request(())?,
                            ProstCodec,
                        )
                        .await;
                    match opened {
                        Ok(stream) => self.stream.insert(stream),
                        Err(status) => {
                            self.try_v1alpha(&status)?;
                            continue;
                        }
                    }
                }
            };
            let message = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(request.clone()),
            };
            let answer = match sink.send(message).await {
                Ok(()) => responses.message().await,
                // The call ended: its status is on the response side.
                Err(status) => match responses.message().await {
                    Err(ended) => Err(ended),
                    Ok(_) => Err(status),
                },
            };
            let answer = match answer {
                Ok(Some(answer)) => answer.message_response,
                Ok(None) => {
                    self.stream = None;
                    return Err(Error::new(
                        "reflection: the server ended the stream without an answer",
                    ));
                }
                Err(status) => {
                    self.stream = None;
                    self.try_v1alpha(&status)?;
                    continue;
                }
            };
            return match answer {
                Some(MessageResponse::ErrorResponse(err)) => {
                    let code = Code::from_i32(err.error_code);
                    let message = format!("{code}: {}", err.error_message);
                    if code == Code::NotFound {
                        Ok(Err(message))
                    } else {
                        Err(Error::new(format!("reflection: {message}")))
                    }
                }
                Some(answer) => Ok(Ok(answer)),
                None => Err(Error::new("reflection: the server sent an empty answer")),
            };
        }
    }

    /// What a failed reflection call means: v1 UNIMPLEMENTED moves to
    /// v1alpha (`Ok`: try again); anything else is the error.
    fn try_v1alpha(&mut self, status: &Status) -> Result<(), Error> {
        if status.code() == Code::Unimplemented {
            if !self.alpha {
                self.alpha = true;
                return Ok(());
            }
            return Err(Error::new(format!(
                "the server at {} does not offer server reflection (neither \
                 grpc.reflection.v1 nor v1alpha): name its schema with --proto or --protoset",
                self.connect.target
            ))
            .with_exit(crate::error::status_exit(Code::Unimplemented)));
        }
        Err(Error::rpc(
            &self.connect.target,
            "server reflection",
            status,
        ))
    }
}

fn decode_files(answer: MessageResponse) -> Result<Vec<FileDescriptorProto>, Error> {
    let MessageResponse::FileDescriptorResponse(files) = answer else {
        return Err(Error::new(
            "reflection: the server answered a file request with something else",
        ));
    };
    files
        .file_descriptor_proto
        .into_iter()
        .map(|bytes| {
            FileDescriptorProto::decode(Bytes::from(bytes)).map_err(|err| {
                Error::new(format!(
                    "reflection: the server sent a file descriptor that does not decode: {err}"
                ))
            })
        })
        .collect()
}
