//! `tonic_bench`: the `bench` tool's unary and ping-pong streaming workloads
//! on tonic 0.14, the baseline for comparisons measured in one run (see
//! `benchmark/pingpong-vs-tonic.sh`). Same flags, same proto, same
//! measurement and report code as `bench`; only the gRPC stack differs.
//!
//! The tonic code is generated without protoc: build.rs parses the proto
//! with protox and hands the descriptors to tonic-prost-build's
//! `compile_fds`.
//!
//! Each side is written the way a tonic user would: the server answers a
//! ping-pong stream with a stream adapter over the request stream (no task
//! or channel per call), and the client feeds its request stream from a
//! tokio channel.

use std::{
    future::Future,
    io,
    pin::Pin,
    process::ExitCode,
    sync::Arc,
    task::{ready, Context, Poll},
};

use benchmark::{
    app::System,
    driver::{self, Measurement, Worker},
    flags::{Compression, RunConfig, Workload},
    ours::MAX_MESSAGE_SIZE,
    payload::{PayloadKind, Payloads},
    resources::{CountingAllocator, Resources},
};
use futures_core::Stream;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    transport::{server::TcpIncoming, Channel, Endpoint},
    Request, Response, Status,
};

/// Counts allocations, as in `bench`, so allocs/op compare.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// `bench.BenchService` as tonic-prost-build generated it.
mod pb {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/tonic/bench.rs"));
}

use pb::{
    bench_service_client::BenchServiceClient,
    bench_service_server::{BenchService, BenchServiceServer},
    ServerStats, SimpleRequest, SimpleResponse, StatsRequest,
};

/// The benchmark service on tonic.
struct TonicBenchServer {
    payloads: Arc<Payloads>,
}

fn respond(payloads: &Payloads, request: &SimpleRequest) -> SimpleResponse {
    let kind = if request.incompressible_response {
        PayloadKind::Incompressible
    } else {
        PayloadKind::Compressible
    };
    SimpleResponse {
        payload: payloads.get(kind, request.response_size as usize),
    }
}

/// The response stream of a ping-pong call: one response per request, made
/// when the request is read.
struct Echo {
    requests: tonic::Streaming<SimpleRequest>,
    payloads: Arc<Payloads>,
}

impl Stream for Echo {
    type Item = Result<SimpleResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let next = ready!(Pin::new(&mut this.requests).poll_next(cx));
        Poll::Ready(next.map(|r| r.map(|request| respond(&this.payloads, &request))))
    }
}

type Unsupported = Pin<Box<dyn Stream<Item = Result<SimpleResponse, Status>> + Send>>;

#[tonic::async_trait]
impl BenchService for TonicBenchServer {
    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        Ok(Response::new(respond(&self.payloads, request.get_ref())))
    }

    type StreamingCallStream = Echo;

    async fn streaming_call(
        &self,
        request: Request<tonic::Streaming<SimpleRequest>>,
    ) -> Result<Response<Echo>, Status> {
        Ok(Response::new(Echo {
            requests: request.into_inner(),
            payloads: Arc::clone(&self.payloads),
        }))
    }

    type UnconstrainedStreamingCallStream = Unsupported;

    async fn unconstrained_streaming_call(
        &self,
        _request: Request<tonic::Streaming<SimpleRequest>>,
    ) -> Result<Response<Unsupported>, Status> {
        Err(Status::unimplemented(
            "tonic_bench runs the unary and streaming workloads only",
        ))
    }

    async fn get_server_stats(
        &self,
        _request: Request<StatsRequest>,
    ) -> Result<Response<ServerStats>, Status> {
        let r = Resources::now();
        Ok(Response::new(ServerStats {
            cpu_user_micros: r.user.as_micros() as u64,
            cpu_system_micros: r.system.as_micros() as u64,
            allocations: r.allocations,
            allocated_bytes: r.allocated_bytes,
            counts_allocations: r.counts_allocations,
        }))
    }
}

/// A load generator on tonic.
enum TonicWorker {
    Unary {
        client: BenchServiceClient<Channel>,
        request: SimpleRequest,
    },
    PingPong {
        requests: mpsc::Sender<SimpleRequest>,
        responses: tonic::Streaming<SimpleResponse>,
        request: SimpleRequest,
    },
}

impl Worker for TonicWorker {
    async fn op(&mut self) -> Result<(), String> {
        match self {
            TonicWorker::Unary { client, request } => client
                .unary_call(request.clone())
                .await
                .map(drop)
                .map_err(|s| s.to_string()),
            TonicWorker::PingPong {
                requests,
                responses,
                request,
            } => {
                requests
                    .send(request.clone())
                    .await
                    .map_err(|_| "the request stream closed".to_string())?;
                match responses.message().await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("the server ended the stream".into()),
                    Err(status) => Err(status.to_string()),
                }
            }
        }
    }
}

/// tonic, as [`System`].
struct Tonic;

impl System for Tonic {
    const NAME: &'static str = "tonic";

    fn supports(workload: Workload, compression: Compression) -> Result<(), String> {
        if workload == Workload::Unconstrained {
            return Err("tonic_bench runs the unary and streaming workloads only".into());
        }
        if compression != Compression::None {
            return Err("tonic_bench runs without compression only".into());
        }
        Ok(())
    }

    fn serve(
        listener: TcpListener,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = io::Result<()>> + Send + 'static {
        let service = BenchServiceServer::new(TonicBenchServer {
            payloads: Arc::new(Payloads::new()),
        })
        .max_decoding_message_size(MAX_MESSAGE_SIZE);
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stop)
                .await
                .map_err(io::Error::other)
        }
    }

    async fn run_client(
        config: RunConfig,
        addr: String,
        ask_server: bool,
    ) -> Result<(Measurement, Vec<bool>), String> {
        let payloads = Payloads::new();
        let request = SimpleRequest {
            payload: payloads.get(config.payload, config.req_size),
            response_size: u32::try_from(config.resp_size).unwrap_or(u32::MAX),
            response_compression: 0,
            incompressible_response: config.payload == PayloadKind::Incompressible,
        };
        let mut workers = Vec::new();
        let mut first_client = None;
        for _ in 0..config.connections {
            let channel = Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| e.to_string())?
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            let client =
                BenchServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE);
            first_client.get_or_insert_with(|| client.clone());
            for _ in 0..config.concurrency {
                let request = request.clone();
                let worker = match config.workload {
                    Workload::Streaming => {
                        let (tx, rx) = mpsc::channel(1);
                        let responses = client
                            .clone()
                            .streaming_call(ReceiverStream::new(rx))
                            .await
                            .map_err(|s| s.to_string())?
                            .into_inner();
                        TonicWorker::PingPong {
                            requests: tx,
                            responses,
                            request,
                        }
                    }
                    _ => TonicWorker::Unary {
                        client: client.clone(),
                        request,
                    },
                };
                workers.push(worker);
            }
        }
        let senders = vec![false; workers.len()];
        let stats_client = first_client.filter(|_| ask_server);
        let measurement = driver::closed_loop(workers, config.warmup, config.duration, || {
            let client = stats_client.clone();
            async move {
                let reply = client?.get_server_stats(StatsRequest {}).await.ok()?;
                let s = reply.into_inner();
                Some(Resources {
                    user: std::time::Duration::from_micros(s.cpu_user_micros),
                    system: std::time::Duration::from_micros(s.cpu_system_micros),
                    allocations: s.allocations,
                    allocated_bytes: s.allocated_bytes,
                    counts_allocations: s.counts_allocations,
                })
            }
        })
        .await;
        Ok((measurement, senders))
    }
}

fn main() -> ExitCode {
    benchmark::app::main::<Tonic>("tonic_bench")
}
