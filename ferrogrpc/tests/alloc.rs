//! Allocations per unary RPC (client and server together, one process),
//! counted by a global allocator: an empty interceptor chain and no stats
//! handler must add none.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    interceptor::{
        AnyMessage, BoxFuture, CallInfo, InterceptedService, UnaryServerInterceptor,
        UnaryServerNext,
    },
    server::{self, Server, ServerCall, Service},
    stats, Request, Response, Status,
};
use http::uri::PathAndQuery;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded to the system allocator with the same layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`; `ptr` came from this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

struct Echo;

impl Service for Echo {
    fn name(&self) -> &'static str {
        "a.Echo"
    }

    fn call(&self, _method: &str, call: ServerCall) -> server::BoxFuture {
        Box::pin(server::unary(
            call,
            BytesCodec,
            |req: Request<Bytes>| async move { Ok::<_, Status>(Response::new(req.into_inner())) },
        ))
    }
}

struct Noop;

impl UnaryServerInterceptor for Noop {
    fn intercept<'a>(
        &'a self,
        request: Request<AnyMessage>,
        _info: CallInfo<'a>,
        next: UnaryServerNext<'a>,
    ) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>> {
        next.run(request)
    }
}

struct NoopStats;

impl stats::Handler for NoopStats {
    fn handle_rpc(&self, _event: &stats::RpcEvent<'_>) {}
}

/// Average allocations per unary call against a server built by `build`.
async fn allocs_per_call(builder: server::ServerBuilder) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = builder.build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let call = || async {
        ch.unary(
            PathAndQuery::from_static("/a.Echo/Call"),
            Request::new(Bytes::from_static(b"0123456789")),
            BytesCodec,
        )
        .await
        .unwrap();
    };
    for _ in 0..200 {
        call().await;
    }
    const N: u64 = 1000;
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..N {
        call().await;
    }
    let per_call = (ALLOCS.load(Ordering::Relaxed) - before) as f64 / N as f64;
    server.stop();
    per_call
}

#[tokio::test(flavor = "current_thread")]
async fn empty_chain_and_no_stats_add_no_allocations() {
    let plain = allocs_per_call(Server::builder().add_service(Echo)).await;
    let empty_chain =
        allocs_per_call(Server::builder().add_service(InterceptedService::new(Echo))).await;
    let one_interceptor =
        allocs_per_call(Server::builder().add_service(Echo).unary_interceptor(Noop)).await;
    let one_stats =
        allocs_per_call(Server::builder().add_service(Echo).stats_handler(NoopStats)).await;
    println!(
        "allocations per unary RPC (client + server): plain {plain:.2}, empty chain {empty_chain:.2}, \
         one no-op interceptor {one_interceptor:.2}, one no-op stats handler {one_stats:.2}"
    );
    assert!(
        empty_chain <= plain + 0.05,
        "an empty chain added allocations: {empty_chain:.2} vs {plain:.2}"
    );
    // The measurement can see what registering something costs.
    assert!(
        one_interceptor > plain + 0.5,
        "{one_interceptor:.2} vs {plain:.2}"
    );
    assert!(one_stats > plain + 0.5, "{one_stats:.2} vs {plain:.2}");
}
