//! Interceptors, stats handlers and the tap, over loopback.

use std::{
    any::Any,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    interceptor::{
        AnyMessage, BoxFuture, CallInfo, ClientStreamCall, InterceptedService, ServerStreamCall,
        StreamClientInterceptor, StreamHook, StreamServerInterceptor, StreamServerNext,
        UnaryClientInterceptor, UnaryClientNext, UnaryServerInterceptor, UnaryServerNext,
    },
    server::{self, ResponseSink, Server, ServerCall, Service},
    stats::{self, RpcEvent, RpcEventKind},
    tap::TapInfo,
    Code, Request, Response, Status, Streaming,
};
use http::uri::PathAndQuery;

type Log = Arc<Mutex<Vec<String>>>;

fn log(l: &Log, s: impl Into<String>) {
    l.lock().unwrap().push(s.into());
}

fn take(l: &Log) -> Vec<String> {
    std::mem::take(&mut *l.lock().unwrap())
}

/// Unary: echoes (logging "handler"). Bidi: echoes each message.
#[derive(Clone)]
struct Echo(Log);

impl Service for Echo {
    fn name(&self) -> &'static str {
        "i.Echo"
    }

    fn call(&self, method: &str, call: ServerCall) -> server::BoxFuture {
        let l = self.0.clone();
        match method {
            "Unary" => Box::pin(server::unary(
                call,
                BytesCodec,
                move |req: Request<Bytes>| async move {
                    log(&l, "handler");
                    let mut resp = Response::new(req.get_ref().clone());
                    if let Some(v) = req.metadata().get("x-added") {
                        resp.metadata_mut().insert("x-seen", v).unwrap();
                    }
                    Ok(resp)
                },
            )),
            "Bidi" => Box::pin(server::streaming(
                call,
                BytesCodec,
                move |req: Request<Streaming<Bytes>>, mut sink: ResponseSink<Bytes>| async move {
                    log(&l, "handler");
                    if let Some(v) = req.metadata().get("x-added") {
                        let mut md = ferrogrpc::metadata::MetadataMap::new();
                        md.insert("x-seen", v).unwrap();
                        sink.send_header(md)?;
                    }
                    let mut stream = req.into_inner();
                    while let Some(m) = stream.message().await? {
                        sink.send(m).await?;
                    }
                    Ok(())
                },
            )),
            // Sends back each byte of the request as its own message.
            "Split" => Box::pin(server::server_streaming(
                call,
                BytesCodec,
                |req: Request<Bytes>, mut sink: ResponseSink<Bytes>| async move {
                    for b in req.get_ref().iter() {
                        sink.send(Bytes::from(vec![*b])).await?;
                    }
                    Ok(())
                },
            )),
            // Concatenates the request messages.
            "Join" => Box::pin(server::client_streaming(
                call,
                BytesCodec,
                |req: Request<Streaming<Bytes>>| async move {
                    let mut stream = req.into_inner();
                    let mut all = Vec::new();
                    while let Some(m) = stream.message().await? {
                        all.extend_from_slice(&m);
                    }
                    Ok(Response::new(Bytes::from(all)))
                },
            )),
            _ => Box::pin(call.unimplemented()),
        }
    }
}

/// Logs around the call; rejects calls whose metadata says so.
struct Named(&'static str, Log);

impl UnaryServerInterceptor for Named {
    fn intercept<'a>(
        &'a self,
        request: Request<AnyMessage>,
        _info: CallInfo<'a>,
        next: UnaryServerNext<'a>,
    ) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>> {
        Box::pin(async move {
            log(&self.1, format!("{} before", self.0));
            if request.metadata().get("x-reject") == Some(self.0) {
                log(&self.1, format!("{} rejects", self.0));
                return Err(Status::permission_denied(format!("rejected by {}", self.0)));
            }
            let result = next.run(request).await;
            log(
                &self.1,
                format!(
                    "{} after {:?}",
                    self.0,
                    result.as_ref().map(|_| ()).map_err(|s| s.code())
                ),
            );
            result
        })
    }
}

impl UnaryClientInterceptor for Named {
    fn intercept<'a>(
        &'a self,
        mut request: Request<AnyMessage>,
        _info: CallInfo<'a>,
        next: UnaryClientNext<'a>,
    ) -> BoxFuture<'a, Result<Response<AnyMessage>, Status>> {
        Box::pin(async move {
            log(&self.1, format!("client {} before", self.0));
            request.metadata_mut().append("x-added", self.0).unwrap();
            let mut response = next.run(request).await?;
            // Replace the response message: proves the interceptor sees it typed.
            let body = response.get_ref().downcast_ref::<Bytes>().unwrap().clone();
            let mut changed = body.to_vec();
            changed.extend_from_slice(self.0.as_bytes());
            *response.get_mut() = Box::new(Bytes::from(changed));
            log(&self.1, format!("client {} after", self.0));
            Ok(response)
        })
    }
}

async fn serve(builder: server::ServerBuilder) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = builder.build();
    tokio::spawn(async move { server.serve_listener(listener).await });
    addr
}

fn path(p: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(p)
}

#[tokio::test]
async fn server_unary_chain_runs_in_order_with_per_service_last() {
    let l: Log = Log::default();
    let svc = InterceptedService::new(Echo(l.clone())).unary(Named("svc", l.clone()));
    let addr = serve(
        Server::builder()
            .add_service(svc)
            .unary_interceptor(Named("first", l.clone()))
            .unary_interceptor(Named("second", l.clone())),
    )
    .await;
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let resp = ch
        .unary(
            path("/i.Echo/Unary"),
            Request::new(Bytes::from_static(b"x")),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(resp.into_inner(), "x");
    assert_eq!(
        take(&l),
        [
            "first before",
            "second before",
            "svc before",
            "handler",
            "svc after Ok(())",
            "second after Ok(())",
            "first after Ok(())",
        ]
    );
}

#[tokio::test]
async fn server_interceptor_rejects_before_the_handler() {
    let l: Log = Log::default();
    let addr = serve(
        Server::builder()
            .add_service(Echo(l.clone()))
            .unary_interceptor(Named("first", l.clone()))
            .unary_interceptor(Named("second", l.clone())),
    )
    .await;
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let mut req = Request::new(Bytes::from_static(b"x"));
    req.metadata_mut().insert("x-reject", "second").unwrap();
    let err = ch
        .unary(path("/i.Echo/Unary"), req, BytesCodec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "rejected by second");
    assert_eq!(
        take(&l),
        [
            "first before",
            "second before",
            "second rejects",
            "first after Err(PermissionDenied)"
        ]
    );
}

#[tokio::test]
async fn client_unary_chain_changes_metadata_and_response_in_order() {
    let l: Log = Log::default();
    let addr = serve(Server::builder().add_service(Echo(l.clone()))).await;
    let ch = Channel::builder(addr.to_string())
        .unary_interceptor(Named("a", l.clone()))
        .unary_interceptor(Named("b", l.clone()))
        .build()
        .unwrap();
    let resp = ch
        .unary(
            path("/i.Echo/Unary"),
            Request::new(Bytes::from_static(b"x")),
            BytesCodec,
        )
        .await
        .unwrap();
    // Both interceptors added metadata (in order); the server saw the first value.
    assert_eq!(resp.metadata().get("x-seen"), Some("a"));
    // Responses unwind inner first: b appends, then a.
    assert_eq!(resp.into_inner(), "xba");
    assert_eq!(
        take(&l),
        [
            "client a before",
            "client b before",
            "handler",
            "client b after",
            "client a after"
        ]
    );
}

/// Counts messages each way and records the final status.
#[derive(Clone, Default)]
struct Counter {
    recv: Arc<Mutex<usize>>,
    sent: Arc<Mutex<usize>>,
    finished: Arc<Mutex<Option<Result<(), Code>>>>,
    limit: Option<usize>,
}

impl StreamHook for Counter {
    fn on_recv(&self, message: &dyn Any) -> Result<(), Status> {
        assert!(message.downcast_ref::<Bytes>().is_some());
        *self.recv.lock().unwrap() += 1;
        Ok(())
    }

    fn on_send(&self, _message: &dyn Any) -> Result<(), Status> {
        let mut sent = self.sent.lock().unwrap();
        if self.limit.is_some_and(|l| *sent >= l) {
            return Err(Status::resource_exhausted("too many messages"));
        }
        *sent += 1;
        Ok(())
    }

    fn on_finish(&self, result: Result<(), &Status>) {
        *self.finished.lock().unwrap() = Some(result.map_err(|s| s.code()));
    }
}

struct CountingStream(Counter, Log);

impl StreamServerInterceptor for CountingStream {
    fn intercept<'a>(
        &'a self,
        mut call: ServerStreamCall,
        info: CallInfo<'a>,
        next: StreamServerNext<'a>,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            assert!(info.client_stream && info.server_stream);
            call.metadata_mut()
                .insert("x-added", "by-stream-interceptor")
                .unwrap();
            call.add_hook(self.0.clone());
            let result = next.run(call).await;
            log(
                &self.1,
                format!("stream ended {:?}", result.as_ref().map_err(|s| s.code())),
            );
            result
        })
    }
}

#[tokio::test]
async fn server_stream_interceptor_counts_messages_and_sees_the_status() {
    let l: Log = Log::default();
    let counter = Counter::default();
    let addr = serve(
        Server::builder()
            .add_service(Echo(l.clone()))
            .stream_interceptor(CountingStream(counter.clone(), l.clone())),
    )
    .await;
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let (mut tx, mut rx) = ch
        .streaming::<Bytes, Bytes, _>(path("/i.Echo/Bidi"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    for i in 0..7u8 {
        tx.send(Bytes::from(vec![i])).await.unwrap();
        rx.message().await.unwrap().unwrap();
    }
    assert_eq!(
        rx.headers().await.unwrap().get("x-seen"),
        Some("by-stream-interceptor")
    );
    tx.close().unwrap();
    assert!(rx.message().await.unwrap().is_none());
    assert_eq!(*counter.recv.lock().unwrap(), 7);
    assert_eq!(*counter.sent.lock().unwrap(), 7);
    assert_eq!(take(&l), ["handler", "stream ended Ok(())"]);
}

#[tokio::test]
async fn server_stream_hook_can_stop_messages() {
    let l: Log = Log::default();
    let counter = Counter {
        limit: Some(2),
        ..Counter::default()
    };
    let addr = serve(
        Server::builder()
            .add_service(Echo(l.clone()))
            .stream_interceptor(CountingStream(counter.clone(), l.clone())),
    )
    .await;
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let (mut tx, mut rx) = ch
        .streaming::<Bytes, Bytes, _>(path("/i.Echo/Bidi"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    for _ in 0..3 {
        let _ = tx.send(Bytes::from_static(b"m")).await;
    }
    let mut got = 0;
    let err = loop {
        match rx.message().await {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("expected the hook to fail the call"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, 2);
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(take(&l), ["handler", "stream ended Err(ResourceExhausted)"]);
}

struct ClientStreamTagger(Counter);

impl StreamClientInterceptor for ClientStreamTagger {
    fn intercept<'a>(
        &'a self,
        call: &'a mut ClientStreamCall,
        _info: CallInfo<'a>,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            if call.metadata().get("x-block").is_some() {
                return Err(Status::cancelled("blocked by the client interceptor"));
            }
            call.metadata_mut()
                .insert("x-added", "client-stream")
                .unwrap();
            call.add_hook(self.0.clone());
            Ok(())
        })
    }
}

#[tokio::test]
async fn client_stream_interceptor_adds_metadata_counts_and_sees_the_end() {
    let l: Log = Log::default();
    let addr = serve(Server::builder().add_service(Echo(l.clone()))).await;
    let counter = Counter::default();
    let ch = Channel::builder(addr.to_string())
        .stream_interceptor(ClientStreamTagger(counter.clone()))
        .build()
        .unwrap();
    let (mut tx, mut rx) = ch
        .streaming::<Bytes, Bytes, _>(path("/i.Echo/Bidi"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    for _ in 0..4 {
        tx.send(Bytes::from_static(b"m")).await.unwrap();
        rx.message().await.unwrap().unwrap();
    }
    assert_eq!(
        rx.headers().await.unwrap().get("x-seen"),
        Some("client-stream")
    );
    tx.close().unwrap();
    assert!(rx.message().await.unwrap().is_none());
    assert_eq!(
        (*counter.sent.lock().unwrap(), *counter.recv.lock().unwrap()),
        (4, 4)
    );
    assert_eq!(*counter.finished.lock().unwrap(), Some(Ok(())));
    // Short-circuit before anything is sent.
    let mut req = Request::new(());
    req.metadata_mut().insert("x-block", "1").unwrap();
    let err = ch
        .streaming::<Bytes, Bytes, _>(path("/i.Echo/Bidi"), req, BytesCodec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Cancelled);
}

/// Records every event as a compact string.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl stats::Handler for Recorder {
    fn handle_rpc(&self, e: &RpcEvent<'_>) {
        let side = if e.client { "C" } else { "S" };
        let what = match &e.kind {
            RpcEventKind::Begin {
                client_stream,
                server_stream,
                ..
            } => format!("Begin({client_stream},{server_stream})"),
            RpcEventKind::InHeader { .. } => "InHeader".into(),
            RpcEventKind::OutHeader { .. } => "OutHeader".into(),
            RpcEventKind::InPayload(p) => format!("InPayload({},{})", p.length, p.wire_length),
            RpcEventKind::OutPayload(p) => format!("OutPayload({},{})", p.length, p.wire_length),
            RpcEventKind::InTrailer { .. } => "InTrailer".into(),
            RpcEventKind::OutTrailer { .. } => "OutTrailer".into(),
            RpcEventKind::End { result, .. } => format!("End({:?})", result.map_err(|s| s.code())),
            _ => "other".into(),
        };
        self.0.lock().unwrap().push(format!("{side} {what}"));
    }
}

impl Recorder {
    fn side(&self, side: &str) -> Vec<String> {
        let all = std::mem::take(&mut *self.0.lock().unwrap());
        all.into_iter()
            .filter(|e| e.starts_with(side))
            .map(|e| e[2..].to_string())
            .collect()
    }
}

#[tokio::test]
async fn stats_events_in_order_with_sizes_for_unary_and_bidi() {
    let l: Log = Log::default();
    let server_rec = Recorder::default();
    let client_rec = Recorder::default();
    let addr = serve(
        Server::builder()
            .add_service(Echo(l.clone()))
            .stats_handler(server_rec.clone()),
    )
    .await;
    let ch = Channel::builder(addr.to_string())
        .stats_handler(client_rec.clone())
        .build()
        .unwrap();
    ch.unary(
        path("/i.Echo/Unary"),
        Request::new(Bytes::from(vec![1u8; 10])),
        BytesCodec,
    )
    .await
    .unwrap();
    assert_eq!(
        client_rec.side("C"),
        [
            "Begin(false,false)",
            "OutHeader",
            "OutPayload(10,15)",
            "InHeader",
            "InPayload(10,15)",
            "InTrailer",
            "End(Ok(()))"
        ]
    );
    // The server's events are emitted on its own task; wait for the last.
    for _ in 0..100 {
        if server_rec
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("End"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        server_rec.side("S"),
        [
            "Begin(false,false)",
            "InHeader",
            "InPayload(10,15)",
            "OutHeader",
            "OutPayload(10,15)",
            "OutTrailer",
            "End(Ok(()))"
        ]
    );

    let (mut tx, mut rx) = ch
        .streaming::<Bytes, Bytes, _>(path("/i.Echo/Bidi"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    tx.send(Bytes::from(vec![2u8; 3])).await.unwrap();
    rx.message().await.unwrap().unwrap();
    tx.close().unwrap();
    assert!(rx.message().await.unwrap().is_none());
    assert_eq!(
        client_rec.side("C"),
        [
            "Begin(true,true)",
            "OutHeader",
            "OutPayload(3,8)",
            "InHeader",
            "InPayload(3,8)",
            "InTrailer",
            "End(Ok(()))"
        ]
    );
    for _ in 0..100 {
        if server_rec
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("End"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        server_rec.side("S"),
        [
            "Begin(true,true)",
            "InHeader",
            "InPayload(3,8)",
            "OutHeader",
            "OutPayload(3,8)",
            "OutTrailer",
            "End(Ok(()))"
        ]
    );

    // Server streaming: one request, three responses.
    let mut stream = ch
        .server_streaming(
            path("/i.Echo/Split"),
            Request::new(Bytes::from_static(b"abc")),
            BytesCodec,
        )
        .await
        .unwrap()
        .into_inner();
    while stream.message().await.unwrap().is_some() {}
    assert_eq!(
        client_rec.side("C"),
        [
            "Begin(false,true)",
            "OutHeader",
            "OutPayload(3,8)",
            "InHeader",
            "InPayload(1,6)",
            "InPayload(1,6)",
            "InPayload(1,6)",
            "InTrailer",
            "End(Ok(()))"
        ]
    );
    for _ in 0..100 {
        if server_rec
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("End"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        server_rec.side("S"),
        [
            "Begin(false,true)",
            "InHeader",
            "InPayload(3,8)",
            "OutHeader",
            "OutPayload(1,6)",
            "OutPayload(1,6)",
            "OutPayload(1,6)",
            "OutTrailer",
            "End(Ok(()))"
        ]
    );

    // Client streaming: two requests, one response.
    let mut call = ch
        .client_streaming::<Bytes, Bytes, _>(path("/i.Echo/Join"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    call.send(Bytes::from_static(b"ab")).await.unwrap();
    call.send(Bytes::from_static(b"cde")).await.unwrap();
    assert_eq!(call.close_and_recv().await.unwrap().into_inner(), "abcde");
    assert_eq!(
        client_rec.side("C"),
        [
            "Begin(true,false)",
            "OutHeader",
            "OutPayload(2,7)",
            "OutPayload(3,8)",
            "InHeader",
            "InPayload(5,10)",
            "InTrailer",
            "End(Ok(()))"
        ]
    );
    for _ in 0..100 {
        if server_rec
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("End"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        server_rec.side("S"),
        [
            "Begin(true,false)",
            "InHeader",
            "InPayload(2,7)",
            "InPayload(3,8)",
            "OutHeader",
            "OutPayload(5,10)",
            "OutTrailer",
            "End(Ok(()))"
        ]
    );

    // A failed call ends with its status on both sides.
    let err = ch
        .unary(path("/i.Echo/Nope"), Request::new(Bytes::new()), BytesCodec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    let events = client_rec.side("C");
    assert_eq!(
        events.last().map(String::as_str),
        Some("End(Err(Unimplemented))"),
        "{events:?}"
    );
}

#[tokio::test]
async fn tap_refuses_calls_before_they_start() {
    let l: Log = Log::default();
    let addr = serve(
        Server::builder()
            .add_service(Echo(l.clone()))
            .tap(|info: &TapInfo<'_>| {
                if info.metadata.get("x-tenant") == Some("noisy") {
                    Err(Status::resource_exhausted("rate limit for tenant noisy"))
                } else {
                    Ok(())
                }
            }),
    )
    .await;
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let mut req = Request::new(Bytes::from_static(b"x"));
    req.metadata_mut().insert("x-tenant", "noisy").unwrap();
    let err = ch
        .unary(path("/i.Echo/Unary"), req, BytesCodec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.message(), "rate limit for tenant noisy");
    assert!(take(&l).is_empty(), "the handler never ran");
    let mut req = Request::new(Bytes::from_static(b"x"));
    req.metadata_mut().insert("x-tenant", "quiet").unwrap();
    ch.unary(path("/i.Echo/Unary"), req, BytesCodec)
        .await
        .unwrap();
    assert_eq!(take(&l), ["handler"]);
}
