//! `bench.BenchService` on ferrogrpc: the server and the client workers.

use std::{future::Future, io};

use ferrogrpc::{
    client::{Channel, RequestSink},
    server::{ResponseSink, Server},
    Request, Response, Status, Streaming,
};
use tokio::net::TcpListener;

use crate::{
    app::System,
    driver::{self, Measurement, Worker},
    flags::{Compression, RunConfig, Workload},
    payload::{PayloadKind, Payloads},
    pb::{
        bench_service_client::BenchServiceClient,
        bench_service_server::{BenchService, BenchServiceServer},
        ServerStats, SimpleRequest, SimpleResponse, StatsRequest,
    },
    resources::Resources,
};

/// Max message size both sides accept: large enough for any payload the
/// flags can ask for.
pub const MAX_MESSAGE_SIZE: usize = 1 << 30;

/// The request every operation of a run sends (its payload is shared, so
/// cloning it does not copy or allocate).
pub fn request(config: &RunConfig, payloads: &Payloads) -> SimpleRequest {
    SimpleRequest {
        payload: payloads.get(config.payload, config.req_size),
        response_size: u32::try_from(config.resp_size).unwrap_or(u32::MAX),
        response_compression: config.compression.to_pb() as i32,
        incompressible_response: config.payload == PayloadKind::Incompressible,
    }
}

/// The benchmark service: answers each request with a payload of the
/// requested size and compression.
#[derive(Debug, Default)]
pub struct BenchServer {
    payloads: Payloads,
}

impl BenchServer {
    /// The response to `request`, and the compression to send it with.
    pub fn respond(&self, request: &SimpleRequest) -> (SimpleResponse, Option<&'static str>) {
        let kind = if request.incompressible_response {
            PayloadKind::Incompressible
        } else {
            PayloadKind::Compressible
        };
        let response = SimpleResponse {
            payload: self.payloads.get(kind, request.response_size as usize),
        };
        let compression = Compression::from_pb(request.response_compression).encoding();
        (response, compression)
    }
}

impl BenchService for BenchServer {
    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let (message, compression) = self.respond(request.get_ref());
        let mut response = Response::new(message);
        if let Some(name) = compression {
            response.set_compression(name);
        }
        Ok(response)
    }

    async fn streaming_call(
        &self,
        request: Request<Streaming<SimpleRequest>>,
        mut responses: ResponseSink<SimpleResponse>,
    ) -> Result<(), Status> {
        let mut requests = request.into_inner();
        let mut first = true;
        while let Some(request) = requests.message().await? {
            let (message, compression) = self.respond(&request);
            if std::mem::take(&mut first) {
                if let Some(name) = compression {
                    responses.set_compression(name)?;
                }
            }
            responses.send(message).await?;
        }
        Ok(())
    }

    async fn unconstrained_streaming_call(
        &self,
        request: Request<Streaming<SimpleRequest>>,
        mut responses: ResponseSink<SimpleResponse>,
    ) -> Result<(), Status> {
        let mut requests = request.into_inner();
        let Some(first) = requests.message().await? else {
            return Ok(());
        };
        let (message, compression) = self.respond(&first);
        if let Some(name) = compression {
            responses.set_compression(name)?;
        }
        // Send without waiting for requests, and read requests without
        // waiting for sends; the call ends when the client half-closes or
        // goes away. `send` returns at once while the flow-control window
        // has room, so the loop gives way to the receiving half (and the
        // rest of the runtime) through tokio's cooperative budget; without
        // it the requests pile up unread in h2, whose budget for buffered
        // small DATA frames then closes the connection (ENHANCE_YOUR_CALM).
        let send = async {
            loop {
                responses.send_ref(&message).await?;
                tokio::task::consume_budget().await;
            }
        };
        let receive = async {
            while requests.message().await?.is_some() {}
            Ok::<(), Status>(())
        };
        tokio::select! {
            sent = send => sent,
            received = receive => received,
        }
    }

    async fn get_server_stats(
        &self,
        _request: Request<StatsRequest>,
    ) -> Result<Response<ServerStats>, Status> {
        Ok(Response::new(Resources::now().into()))
    }
}

static SERVICE_CONFIG: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Sets the default service config of the channels [`channel`] builds
/// (`--service-config`).
pub fn set_service_config(json: Option<String>) {
    let _ = SERVICE_CONFIG.set(json);
}

/// The channel for one benchmark connection: compression of requests on
/// (with no minimum size) when the run asks for it.
///
/// # Errors
/// When the target is invalid.
pub fn channel(addr: &str, compression: Compression) -> Result<Channel, String> {
    let mut builder = Channel::builder(addr)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .min_compress_size(0);
    if let Some(json) = SERVICE_CONFIG.get().and_then(Option::as_deref) {
        builder = builder.default_service_config(json);
    }
    if let Some(credentials) = crate::tls::channel_credentials()? {
        builder = builder.credentials(credentials);
    }
    if let Some(name) = compression.encoding() {
        builder = builder.send_compressed(name);
    }
    builder.build().map_err(|e| e.to_string())
}

/// A load generator on ferrogrpc.
// One per connection or stream, made once and kept for the run: the size
// of the largest variant costs nothing per operation, while boxing it
// would add an indirection to every one.
#[allow(clippy::large_enum_variant)]
pub enum OurWorker {
    /// Unary calls.
    Unary {
        /// The stub.
        client: BenchServiceClient,
        /// What it sends.
        request: SimpleRequest,
    },
    /// Ping-pong on one bidi stream.
    PingPong {
        /// Request side.
        sink: RequestSink<SimpleRequest>,
        /// Response side.
        responses: Streaming<SimpleResponse>,
        /// What it sends.
        request: SimpleRequest,
    },
    /// The sending half of an unconstrained stream.
    Send {
        /// Request side.
        sink: RequestSink<SimpleRequest>,
        /// What it sends.
        request: SimpleRequest,
    },
    /// The receiving half of an unconstrained stream.
    Receive {
        /// Response side.
        responses: Streaming<SimpleResponse>,
    },
}

async fn receive_one(responses: &mut Streaming<SimpleResponse>) -> Result<(), String> {
    match responses.message().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("the server ended the stream".into()),
        Err(status) => Err(status.to_string()),
    }
}

impl Worker for OurWorker {
    async fn op(&mut self) -> Result<(), String> {
        match self {
            OurWorker::Unary { client, request } => client
                .unary_call(request.clone())
                .await
                .map(drop)
                .map_err(|s| s.to_string()),
            OurWorker::PingPong {
                sink,
                responses,
                request,
            } => {
                sink.send(request.clone())
                    .await
                    .map_err(|s| s.to_string())?;
                receive_one(responses).await
            }
            OurWorker::Send { sink, request } => {
                sink.send(request.clone()).await.map_err(|s| s.to_string())
            }
            OurWorker::Receive { responses } => receive_one(responses).await,
        }
    }
}

/// ferrogrpc, as [`System`].
#[derive(Debug)]
pub struct Ferrogrpc;

impl System for Ferrogrpc {
    const NAME: &'static str = "ferrogrpc";

    fn supports(_workload: Workload, _compression: Compression) -> Result<(), String> {
        Ok(())
    }

    async fn serve(
        listener: TcpListener,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let mut builder = Server::builder()
            .add_service(BenchServiceServer::new(BenchServer::default()))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .min_compress_size(0);
        if let Some(credentials) = crate::tls::server_credentials().map_err(io::Error::other)? {
            builder = builder.credentials(credentials);
        }
        let server = builder.build();
        tokio::select! {
            served = server.serve_listener(listener) => served,
            () = stop => {
                server.stop();
                Ok(())
            }
        }
    }

    async fn run_client(
        config: RunConfig,
        addr: String,
        ask_server: bool,
    ) -> Result<(Measurement, Vec<bool>), String> {
        let payloads = Payloads::new();
        let request = request(&config, &payloads);
        let mut workers = Vec::new();
        let mut senders = Vec::new();
        let mut first_client = None;
        for _ in 0..config.connections {
            let channel = channel(&addr, config.compression)?;
            channel
                .connect()
                .await
                .map_err(|s| format!("cannot connect to {addr}: {s}"))?;
            let client = BenchServiceClient::new(channel);
            first_client.get_or_insert_with(|| client.clone());
            for _ in 0..config.concurrency {
                let request = request.clone();
                match config.workload {
                    Workload::Unary => {
                        workers.push(OurWorker::Unary {
                            client: client.clone(),
                            request,
                        });
                        senders.push(false);
                    }
                    Workload::Streaming => {
                        let (sink, responses) = client
                            .streaming_call(Request::new(()))
                            .await
                            .map_err(|s| s.to_string())?;
                        workers.push(OurWorker::PingPong {
                            sink,
                            responses,
                            request,
                        });
                        senders.push(false);
                    }
                    Workload::Unconstrained => {
                        let (sink, responses) = client
                            .unconstrained_streaming_call(Request::new(()))
                            .await
                            .map_err(|s| s.to_string())?;
                        workers.push(OurWorker::Receive { responses });
                        workers.push(OurWorker::Send { sink, request });
                        senders.extend([false, true]);
                    }
                }
            }
        }
        let stats_client = first_client.filter(|_| ask_server);
        let measurement = driver::closed_loop(workers, config.warmup, config.duration, || {
            let client = stats_client.clone();
            async move {
                let reply = client?.get_server_stats(StatsRequest {}).await.ok()?;
                Some(reply.into_inner().into())
            }
        })
        .await;
        Ok((measurement, senders))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::app::run_inproc;

    fn config(workload: Workload, size: usize, compression: Compression) -> RunConfig {
        RunConfig {
            workload,
            req_size: size,
            resp_size: size,
            concurrency: 2,
            connections: 2,
            compression,
            payload: PayloadKind::Compressible,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(200),
        }
    }

    async fn check(config: RunConfig) {
        let (m, senders) = run_inproc::<Ferrogrpc>(config).await.unwrap().unwrap();
        assert_eq!(m.errors, 0, "{:?}", m.first_error);
        assert!(m.ops_per_worker.iter().all(|&n| n > 0), "{m:?}");
        assert_eq!(senders.len(), m.ops_per_worker.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_workload_runs() {
        check(config(Workload::Unary, 10, Compression::None)).await;
        check(config(Workload::Streaming, 10, Compression::Gzip)).await;
        // 1 KiB: h2's budget for buffered small DATA frames is not in play
        // (see docs/benchmarks.md).
        check(config(Workload::Unconstrained, 1024, Compression::None)).await;
    }

    #[test]
    fn responses_follow_the_request() {
        let server = BenchServer::default();
        let (resp, compression) = server.respond(&SimpleRequest {
            payload: bytes::Bytes::new(),
            response_size: 100,
            response_compression: Compression::Zstd.to_pb() as i32,
            incompressible_response: true,
        });
        assert_eq!(resp.payload.len(), 100);
        assert_eq!(compression, Some("zstd"));
    }
}
