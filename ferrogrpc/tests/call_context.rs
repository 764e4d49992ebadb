//! The call API around a handler and a call, as gRPC-Go users know it:
//! headers sent before an error, trailers set apart from the result, the
//! method name, cancellation seen by spawned work, absolute deadlines and
//! their propagation across hops (`with_parent`), the response headers,
//! trailers and peer of a failed call, and per-call credentials. Real
//! servers and channels on loopback.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    credentials::{MetadataFuture, PerRpcCredentials, RequestInfo},
    metadata::MetadataMap,
    server::{self, BoxFuture, ResponseSink, Server, ServerCall, Service},
    Code, Request, Response, Status, Streaming,
};
use http::uri::PathAndQuery;
use tokio::sync::mpsc;

fn md(pairs: &[(&str, &str)]) -> MetadataMap {
    let mut m = MetadataMap::new();
    for (k, v) in pairs {
        m.append(k, v).unwrap();
    }
    m
}

fn path(p: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(p)
}

/// What spawned work saw: how the call it watched ended.
type Seen = mpsc::UnboundedSender<String>;

#[derive(Clone)]
struct Svc {
    seen: Seen,
    /// Where `Relay` forwards (a second server), if anywhere.
    backend: Option<Channel>,
}

impl Service for Svc {
    fn name(&self) -> &'static str {
        "ctx.Svc"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        let this = self.clone();
        match method {
            // Sends headers, sets a trailer, then fails.
            "HeadersThenFail" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let ctx = req.context().unwrap();
                    ctx.send_header(md(&[("x-early", "1")]))?;
                    ctx.set_trailer(md(&[("x-cost", "7")]))?;
                    Err::<Response<Bytes>, _>(
                        Status::failed_precondition("no").with_metadata(md(&[("x-why", "test")])),
                    )
                },
            )),
            // Sets headers without sending them, then fails: they still go.
            "SetHeaderThenFail" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    req.context().unwrap().set_header(md(&[("x-set", "a")]))?;
                    Err::<Response<Bytes>, _>(Status::aborted("later"))
                },
            )),
            // Sets headers and trailers on the context and on the response;
            // answers with the method name the context gives.
            "Merge" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let ctx = req.context().unwrap();
                    ctx.set_header(md(&[("x-order", "context")]))?;
                    ctx.set_trailer(md(&[("x-trailer", "context")]))?;
                    let mut resp = Response::new(Bytes::from(ctx.method().to_string()));
                    resp.metadata_mut().append("x-order", "response")?;
                    resp.trailers_mut().append("x-trailer", "response")?;
                    // Too late: sending after set_header is fine once;
                    // a second send fails.
                    Ok(resp)
                },
            )),
            "SendTwice" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let ctx = req.context().unwrap();
                    ctx.send_header(MetadataMap::new())?;
                    let again = ctx.send_header(MetadataMap::new()).unwrap_err();
                    let set_late = ctx.set_header(MetadataMap::new()).unwrap_err();
                    Ok(Response::new(Bytes::from(format!(
                        "{:?}/{:?}",
                        again.code(),
                        set_late.code()
                    ))))
                },
            )),
            // Spawns a task that waits for the call to be over and reports
            // why; the handler itself never answers.
            "Watched" => Box::pin(server::unary(
                call,
                BytesCodec,
                move |req: Request<Bytes>| async move {
                    let ctx = req.context().unwrap().clone();
                    let seen = this.seen.clone();
                    tokio::spawn(async move {
                        ctx.cancelled().await;
                        let why = ctx
                            .cancellation()
                            .map_or("finished".to_string(), |s| format!("{:?}", s.code()));
                        let _ = seen.send(why);
                    });
                    let _ = this.seen.send("started".to_string());
                    std::future::pending::<()>().await;
                    Ok::<_, Status>(Response::new(Bytes::new()))
                },
            )),
            // Reports its deadline (ms left, rounded) and the client's
            // `authorization` metadata.
            "Deadline" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let left = req
                        .context()
                        .unwrap()
                        .deadline()
                        .map(|d| d.saturating_duration_since(std::time::Instant::now()));
                    let auth = req
                        .metadata()
                        .get_all("authorization")
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                        .join(",");
                    Ok(Response::new(Bytes::from(format!(
                        "{}|{auth}",
                        left.map_or(-1, |d| d.as_millis() as i64)
                    ))))
                },
            )),
            // Calls the backend's `Deadline` with this call as parent.
            "Relay" => Box::pin(server::unary(
                call,
                BytesCodec,
                move |req: Request<Bytes>| async move {
                    let ctx = req.context().unwrap();
                    let backend = this.backend.clone().unwrap();
                    let target = match &req.get_ref()[..] {
                        b"watched" => "/ctx.Svc/Watched",
                        _ => "/ctx.Svc/Deadline",
                    };
                    let downstream = Request::new(Bytes::new()).with_parent(ctx);
                    backend
                        .unary(PathAndQuery::from_static(target), downstream, BytesCodec)
                        .await
                },
            )),
            // Calls the backend's `Watched` from a spawned task, with this
            // call as parent, and never answers.
            "SpawnRelay" => Box::pin(server::unary(
                call,
                BytesCodec,
                move |req: Request<Bytes>| async move {
                    let downstream = Request::new(Bytes::new()).with_parent(req.context().unwrap());
                    let backend = this.backend.clone().unwrap();
                    tokio::spawn(async move {
                        let _ = backend
                            .unary(path("/ctx.Svc/Watched"), downstream, BytesCodec)
                            .await;
                    });
                    std::future::pending::<()>().await;
                    Ok::<_, Status>(Response::new(Bytes::new()))
                },
            )),
            // Streams: the context's headers merge with the sink's.
            "StreamMerge" => Box::pin(server::server_streaming(
                call,
                BytesCodec,
                |req: Request<Bytes>, mut sink: ResponseSink<Bytes>| async move {
                    let ctx = req.context().unwrap().clone();
                    ctx.set_header(md(&[("x-from", "context")]))?;
                    sink.send_header(md(&[("x-from", "sink")]))?;
                    ctx.set_trailer(md(&[("x-end", "context")]))?;
                    sink.send(Bytes::from_static(b"one")).await?;
                    Ok(())
                },
            )),
            _ => Box::pin(call.unimplemented()),
        }
    }
}

async fn serve(svc: Svc) -> (SocketAddr, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder().add_service(svc).build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    (addr, server)
}

struct Fixture {
    channel: Channel,
    seen: mpsc::UnboundedReceiver<String>,
    _server: Server,
}

async fn start() -> Fixture {
    let (tx, seen) = mpsc::unbounded_channel();
    let (addr, server) = serve(Svc {
        seen: tx,
        backend: None,
    })
    .await;
    Fixture {
        channel: Channel::from_target(&addr.to_string()).unwrap(),
        seen,
        _server: server,
    }
}

impl Fixture {
    async fn unary(&self, p: &'static str, req: Request<Bytes>) -> Result<Response<Bytes>, Status> {
        self.channel.unary(path(p), req, BytesCodec).await
    }

    async fn next_seen(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(5), self.seen.recv())
            .await
            .expect("an event in time")
            .unwrap()
    }
}

fn values(m: &MetadataMap, key: &str) -> Vec<String> {
    m.get_all(key).map(str::to_string).collect()
}

#[tokio::test]
async fn headers_sent_before_an_error_reach_the_client_with_trailers_and_peer() {
    let fx = start().await;
    let err = fx
        .unary("/ctx.Svc/HeadersThenFail", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let headers = err.response_headers().expect("the headers sent");
    assert_eq!(values(headers, "x-early"), ["1"]);
    // The context's trailers, then the status's own.
    assert_eq!(values(err.metadata(), "x-cost"), ["7"]);
    assert_eq!(values(err.metadata(), "x-why"), ["test"]);
    let peer = err.peer().expect("the peer of the failed call");
    assert_eq!(
        peer.remote_addr.to_string(),
        fx.channel.target().trim_start_matches("dns:///")
    );
}

#[tokio::test]
async fn headers_set_but_not_sent_still_go_out_before_an_error() {
    let fx = start().await;
    let err = fx
        .unary("/ctx.Svc/SetHeaderThenFail", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(values(err.response_headers().unwrap(), "x-set"), ["a"]);
}

#[tokio::test]
async fn a_trailers_only_failure_has_no_response_headers() {
    let fx = start().await;
    let err = fx
        .unary("/ctx.Svc/Nope", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(err.response_headers().is_none());
    assert!(err.peer().is_some());
}

#[tokio::test]
async fn context_and_response_metadata_merge_in_order() {
    let fx = start().await;
    let resp = fx
        .unary("/ctx.Svc/Merge", Request::new(Bytes::new()))
        .await
        .unwrap();
    assert_eq!(resp.get_ref(), &Bytes::from_static(b"/ctx.Svc/Merge"));
    assert_eq!(values(resp.metadata(), "x-order"), ["context", "response"]);
    assert_eq!(
        values(resp.trailers(), "x-trailer"),
        ["context", "response"]
    );
}

#[tokio::test]
async fn headers_go_out_once() {
    let fx = start().await;
    let resp = fx
        .unary("/ctx.Svc/SendTwice", Request::new(Bytes::new()))
        .await
        .unwrap();
    assert_eq!(resp.get_ref(), &Bytes::from_static(b"Internal/Internal"));
}

#[tokio::test]
async fn stream_headers_merge_with_the_context() {
    let fx = start().await;
    let resp = fx
        .channel
        .server_streaming(
            path("/ctx.Svc/StreamMerge"),
            Request::new(Bytes::new()),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(values(resp.metadata(), "x-from"), ["context", "sink"]);
    let mut stream: Streaming<Bytes> = resp.into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap(), "one");
    assert!(stream.message().await.unwrap().is_none());
    assert_eq!(values(stream.trailers().unwrap(), "x-end"), ["context"]);
}

#[tokio::test]
async fn spawned_work_sees_a_client_reset() {
    let mut fx = start().await;
    let call = tokio::spawn({
        let ch = fx.channel.clone();
        async move {
            ch.unary(
                path("/ctx.Svc/Watched"),
                Request::new(Bytes::new()),
                BytesCodec,
            )
            .await
        }
    });
    assert_eq!(fx.next_seen().await, "started");
    call.abort();
    assert_eq!(fx.next_seen().await, "Cancelled");
}

#[tokio::test]
async fn spawned_work_sees_the_deadline() {
    let mut fx = start().await;
    let err = fx
        .unary(
            "/ctx.Svc/Watched",
            Request::new(Bytes::new()).with_timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert_eq!(fx.next_seen().await, "started");
    assert_eq!(fx.next_seen().await, "DeadlineExceeded");
}

#[tokio::test]
async fn an_absolute_deadline_is_sent_and_the_earliest_wins() {
    let fx = start().await;
    let at = std::time::Instant::now() + Duration::from_millis(800);
    let resp = fx
        .unary(
            "/ctx.Svc/Deadline",
            Request::new(Bytes::new())
                .with_timeout(Duration::from_secs(60))
                .with_deadline(at),
        )
        .await
        .unwrap();
    let body = String::from_utf8(resp.into_inner().to_vec()).unwrap();
    let left: i64 = body.split('|').next().unwrap().parse().unwrap();
    assert!((1..=800).contains(&left), "server saw {left} ms left");

    // The timeout is earlier this time.
    let resp = fx
        .unary(
            "/ctx.Svc/Deadline",
            Request::new(Bytes::new())
                .with_timeout(Duration::from_millis(500))
                .with_deadline(std::time::Instant::now() + Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let body = String::from_utf8(resp.into_inner().to_vec()).unwrap();
    let left: i64 = body.split('|').next().unwrap().parse().unwrap();
    assert!((1..=500).contains(&left), "server saw {left} ms left");

    // A deadline already past fails at once.
    let err = fx
        .unary(
            "/ctx.Svc/Deadline",
            Request::new(Bytes::new()).with_deadline(std::time::Instant::now()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
}

/// A client, server A whose `Relay` calls server B, and what B's spawned
/// work sees.
struct TwoHops {
    client: Channel,
    seen_b: mpsc::UnboundedReceiver<String>,
    _servers: [Server; 2],
}

async fn two_hops() -> TwoHops {
    let (tx, seen_b) = mpsc::unbounded_channel();
    let (b_addr, b) = serve(Svc {
        seen: tx,
        backend: None,
    })
    .await;
    let (tx, _) = mpsc::unbounded_channel();
    let (a_addr, a) = serve(Svc {
        seen: tx,
        backend: Some(Channel::from_target(&b_addr.to_string()).unwrap()),
    })
    .await;
    TwoHops {
        client: Channel::from_target(&a_addr.to_string()).unwrap(),
        seen_b,
        _servers: [a, b],
    }
}

/// Two hops: the client calls A with a deadline; A's handler calls B with
/// `with_parent`; B sees (about) the client's deadline.
#[tokio::test]
async fn the_deadline_flows_across_two_hops() {
    let TwoHops {
        client,
        mut seen_b,
        _servers,
    } = two_hops().await;
    let resp = client
        .unary(
            path("/ctx.Svc/Relay"),
            Request::new(Bytes::new()).with_timeout(Duration::from_millis(700)),
            BytesCodec,
        )
        .await
        .unwrap();
    let body = String::from_utf8(resp.into_inner().to_vec()).unwrap();
    let left: i64 = body.split('|').next().unwrap().parse().unwrap();
    assert!((1..=700).contains(&left), "B saw {left} ms left");

    // The client's call to A expires: A's call to B (Watched never
    // answers) is cancelled with it, and B's spawned work sees it.
    let err = client
        .unary(
            path("/ctx.Svc/Relay"),
            Request::new(Bytes::from_static(b"watched")).with_timeout(Duration::from_millis(300)),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert_eq!(next(&mut seen_b).await, "started");
    // B's own deadline (propagated) or A's cancellation, whichever B
    // notices first: both end B's call.
    let why = next(&mut seen_b).await;
    assert!(
        why == "DeadlineExceeded" || why == "Cancelled",
        "B's call ended with {why}"
    );
}

/// A call made from a spawned task with `with_parent` is cancelled when the
/// parent call is over, even with no deadline anywhere (a call made in the
/// handler's own future is cancelled anyway: the future is dropped).
#[tokio::test]
async fn a_child_call_is_cancelled_with_its_parent() {
    let TwoHops {
        client,
        mut seen_b,
        _servers,
    } = two_hops().await;
    let call = tokio::spawn(async move {
        client
            .unary(
                path("/ctx.Svc/SpawnRelay"),
                Request::new(Bytes::new()),
                BytesCodec,
            )
            .await
    });
    assert_eq!(next(&mut seen_b).await, "started");
    call.abort();
    assert_eq!(next(&mut seen_b).await, "Cancelled");
}

async fn next(seen: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("an event in time")
        .unwrap()
}

struct Token(&'static str);

impl PerRpcCredentials for Token {
    fn request_metadata<'a>(&'a self, _info: RequestInfo<'a>) -> MetadataFuture<'a> {
        Box::pin(async move {
            let mut m = MetadataMap::new();
            m.insert("authorization", self.0)?;
            Ok(m)
        })
    }

    fn require_transport_security(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn per_call_credentials_add_to_the_channels() {
    let (tx, _seen) = mpsc::unbounded_channel();
    let (addr, _server) = serve(Svc {
        seen: tx,
        backend: None,
    })
    .await;
    let channel = Channel::builder(addr.to_string())
        .per_rpc_credentials(Token("Bearer channel"))
        .allow_insecure_per_rpc_credentials(true)
        .build()
        .unwrap();
    let resp = channel
        .unary(
            path("/ctx.Svc/Deadline"),
            Request::new(Bytes::new()).with_credentials(Token("Bearer call")),
            BytesCodec,
        )
        .await
        .unwrap();
    let body = String::from_utf8(resp.into_inner().to_vec()).unwrap();
    assert_eq!(body, "-1|Bearer channel,Bearer call");
}

/// Credentials that require transport security are not sent on plaintext,
/// whether the channel's or the call's.
#[tokio::test]
async fn per_call_credentials_need_a_secure_connection_by_default() {
    struct Strict;
    impl PerRpcCredentials for Strict {
        fn request_metadata<'a>(&'a self, _info: RequestInfo<'a>) -> MetadataFuture<'a> {
            Box::pin(async { Ok(MetadataMap::new()) })
        }
    }
    let fx = start().await;
    let err = fx
        .unary(
            "/ctx.Svc/Deadline",
            Request::new(Bytes::new()).with_credentials(Strict),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
}
