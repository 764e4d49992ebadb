//! The interop test cases (grpc/grpc `doc/interop-test-descriptions.md`)
//! over an in-memory connection (`ferrogrpc::bufconn`) instead of TCP: the
//! `interop_server`'s service ([`interop::server::InteropService`]) on a
//! bufconn listener, and every case of the `interop_client`
//! ([`interop::client::ALL_CASES`]; none needs external setup) run through
//! channels dialled over it, with the same code as the binaries.

use std::time::Duration;

use ferrogrpc::{bufconn, client::Channel, server::Server};
use interop::{
    client::{CaseError, Config, Interop, ALL_CASES},
    pb::test_service_server::TestServiceServer,
    server::InteropService,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_interop_case_passes_over_an_in_memory_connection() {
    // 1 MiB per direction, as gRPC-Go's tests size bufconn. Not much
    // smaller: with 16 KiB, concurrent_large_unary stalls from about 32
    // calls on, because h2 stops reading a connection while its own writes
    // wait for room (`Connection::poll2` waits on `poll_ready` before it
    // reads), so two ends whose writes have filled the pipe both wait for
    // ever.
    let listener = bufconn::listen(1 << 20);
    let dialer = listener.dialer();
    let server = Server::builder()
        .add_service(TestServiceServer::new(InteropService))
        .build();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve_listener(listener).await });

    let mut config = Config::new("passthrough:///bufnet");
    // Smaller than the binary's defaults, so the test stays quick.
    config.concurrent_calls = 100;
    config.soak.iterations = 5;
    config.case_timeout = Duration::from_secs(30);
    let interop = Interop::with_channels(config, move || {
        Channel::builder("passthrough:///bufnet")
            .dialer(dialer.clone())
            .max_decoding_message_size(16 << 20)
            .build()
            .map_err(|e| e.to_string())
    })
    .unwrap();

    let mut failed = Vec::new();
    for name in ALL_CASES {
        if let Err(CaseError(reason)) = interop.run(name).await {
            failed.push(format!("{name}: {reason}"));
        }
    }
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
    // channel_soak dialled a connection per RPC.
    assert!(server.connection_count() >= 1);
    server.stop();
}
