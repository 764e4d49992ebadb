//! Interceptors and stats, end to end in one process: a server with a token
//! check (auth interceptor), a logging interceptor and a metrics stats
//! handler; a client whose interceptor attaches the token.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin interceptors`

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use ferrogrpc::{
    client::Channel,
    interceptor::{
        AnyMessage, BoxFuture, CallInfo, UnaryClientInterceptor, UnaryClientNext,
        UnaryServerInterceptor, UnaryServerNext,
    },
    server::Server,
    stats::{self, RpcEvent, RpcEventKind},
    Request, Response, Status,
};
use ferrogrpc_examples::helloworld::{
    greeter_client::GreeterClient,
    greeter_server::{Greeter, GreeterServer},
    HelloReply, HelloRequest,
};

struct MyGreeter;

impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(HelloReply {
            message: format!("Hello {name}"),
        }))
    }
}

/// Rejects calls without the right bearer token.
struct CheckToken(&'static str);

impl UnaryServerInterceptor for CheckToken {
    fn intercept<'a>(
        &'a self,
        request: Request<AnyMessage>,
        _info: CallInfo<'a>,
        next: UnaryServerNext<'a>,
    ) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>> {
        Box::pin(async move {
            let expected = format!("Bearer {}", self.0);
            match request.metadata().get("authorization") {
                Some(token) if token == expected => next.run(request).await,
                Some(_) => Err(Status::unauthenticated("invalid token")),
                None => Err(Status::unauthenticated("missing token")),
            }
        })
    }
}

/// Logs each call with its duration and outcome.
struct LogCalls;

impl UnaryServerInterceptor for LogCalls {
    fn intercept<'a>(
        &'a self,
        request: Request<AnyMessage>,
        info: CallInfo<'a>,
        next: UnaryServerNext<'a>,
    ) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = next.run(request).await;
            let outcome = match &result {
                Ok(_) => "OK".to_string(),
                Err(status) => status.code().to_string(),
            };
            println!(
                "server: {} -> {outcome} in {:?}",
                info.method,
                started.elapsed()
            );
            result
        })
    }
}

/// Counts calls per method and outcome, and bytes in and out. Clones share
/// the counters.
#[derive(Clone, Default)]
struct Metrics {
    calls: Arc<Mutex<BTreeMap<(String, String), u64>>>,
    bytes: Arc<Mutex<(usize, usize)>>,
}

impl stats::Handler for Metrics {
    fn handle_rpc(&self, event: &RpcEvent<'_>) {
        match &event.kind {
            RpcEventKind::InPayload(p) => self.bytes.lock().unwrap().0 += p.wire_length,
            RpcEventKind::OutPayload(p) => self.bytes.lock().unwrap().1 += p.wire_length,
            RpcEventKind::End { result, .. } => {
                let code = match result {
                    Ok(()) => "OK".to_string(),
                    Err(status) => status.code().to_string(),
                };
                *self
                    .calls
                    .lock()
                    .unwrap()
                    .entry((event.method.to_string(), code))
                    .or_default() += 1;
            }
            _ => {}
        }
    }
}

/// Attaches the token to every call (for a real token over TLS, prefer
/// `ferrogrpc::credentials::BearerToken`).
struct AttachToken(&'static str);

impl UnaryClientInterceptor for AttachToken {
    fn intercept<'a>(
        &'a self,
        mut request: Request<AnyMessage>,
        _info: CallInfo<'a>,
        next: UnaryClientNext<'a>,
    ) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>> {
        Box::pin(async move {
            let value = format!("Bearer {}", self.0);
            request.metadata_mut().insert("authorization", &value)?;
            next.run(request).await
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = Metrics::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = Server::builder()
        .add_service(GreeterServer::new(MyGreeter))
        .unary_interceptor(LogCalls) // outermost: sees rejected calls too
        .unary_interceptor(CheckToken("let-me-in"))
        .stats_handler(metrics.clone())
        .build();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve_listener(listener).await });

    let with_token = GreeterClient::new(
        Channel::builder(addr.to_string())
            .unary_interceptor(AttachToken("let-me-in"))
            .build()?,
    );
    let without_token = GreeterClient::new(Channel::from_target(&addr.to_string())?);

    let reply = with_token
        .say_hello(HelloRequest {
            name: "interceptors".into(),
        })
        .await?;
    println!("client: {}", reply.into_inner().message);
    let err = without_token
        .say_hello(HelloRequest {
            name: "stranger".into(),
        })
        .await
        .expect_err("no token, no greeting");
    println!("client: refused: {err}");

    server.graceful_stop().await;
    println!("metrics:");
    for ((method, code), n) in metrics.calls.lock().unwrap().iter() {
        println!("  {method} {code}: {n}");
    }
    let (bytes_in, bytes_out) = *metrics.bytes.lock().unwrap();
    println!("  bytes in {bytes_in}, out {bytes_out}");
    Ok(())
}
