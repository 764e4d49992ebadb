//! A server and a channel joined by `bufconn` (the in-memory transport) and
//! custom dialers: every call kind over the full HTTP/2 path, TLS over a
//! dialled stream, and how dial failures and hangs reach the caller.

use std::{
    io,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use ferrogrpc::{
    backoff, bufconn,
    client::{Channel, ChannelBuilder, Dialer},
    codec::BytesCodec,
    credentials::{
        tls::{ClientTlsConfig, ServerTlsConfig},
        AuthInfo, ChannelCredentials, ServerCredentials,
    },
    resolver::Address,
    server::{self, BoxFuture, ResponseSink, Server, ServerCall, Service},
    Code, Request, Response, Status, Streaming,
};
use http::uri::PathAndQuery;

/// Echo in all four shapes.
struct Echo;

impl Service for Echo {
    fn name(&self) -> &'static str {
        "mem.Echo"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        match method {
            // Echoes the message and `x-*` metadata; says whether it saw TLS.
            "Unary" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let tls = req
                        .peer()
                        .and_then(|p| p.auth_info.as_ref())
                        .and_then(AuthInfo::tls)
                        .is_some();
                    let mut resp = Response::new(req.get_ref().clone());
                    for (key, value) in req.metadata().iter() {
                        if let (true, ferrogrpc::metadata::MetadataValue::Ascii(v)) =
                            (key.starts_with("x-"), value)
                        {
                            resp.metadata_mut().insert(key, v).unwrap();
                        }
                    }
                    resp.metadata_mut()
                        .insert("x-tls", if tls { "yes" } else { "no" })
                        .unwrap();
                    Ok(resp)
                },
            )),
            // Fails with the code in the first byte.
            "Fail" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    Err::<Response<Bytes>, _>(Status::new(
                        Code::from_i32(i32::from(req.get_ref()[0])),
                        "as asked",
                    ))
                },
            )),
            // Sleeps for the milliseconds in the message (a u32).
            "Sleep" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let ms = u32::from_be_bytes(req.get_ref()[..4].try_into().unwrap());
                    tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
                    Ok(Response::new(Bytes::new()))
                },
            )),
            // Message: count, size (u32 each): sends `count` messages of `size`.
            "ServerStream" => Box::pin(server::server_streaming(
                call,
                BytesCodec,
                |req: Request<Bytes>, mut sink: ResponseSink<Bytes>| async move {
                    let b = req.get_ref();
                    let count = u32::from_be_bytes(b[..4].try_into().unwrap());
                    let size = u32::from_be_bytes(b[4..8].try_into().unwrap());
                    for i in 0..count {
                        sink.send(Bytes::from(vec![i as u8; size as usize])).await?;
                    }
                    Ok(())
                },
            )),
            // Answers the total size of what it received.
            "ClientStream" => Box::pin(server::client_streaming(
                call,
                BytesCodec,
                |req: Request<Streaming<Bytes>>| async move {
                    let mut stream = req.into_inner();
                    let mut total = 0u64;
                    while let Some(m) = stream.message().await? {
                        total += m.len() as u64;
                    }
                    Ok(Response::new(Bytes::from(total.to_be_bytes().to_vec())))
                },
            )),
            "Bidi" => Box::pin(server::streaming(
                call,
                BytesCodec,
                |req: Request<Streaming<Bytes>>, mut sink: ResponseSink<Bytes>| async move {
                    let mut stream = req.into_inner();
                    while let Some(m) = stream.message().await? {
                        sink.send(m).await?;
                    }
                    Ok(())
                },
            )),
            _ => Box::pin(call.unimplemented()),
        }
    }
}

fn path(p: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(p)
}

/// Serves `Echo` on a new in-memory listener with `buffer` bytes per
/// direction; returns its dialer and the server.
fn serve(buffer: usize, builder: server::ServerBuilder) -> (bufconn::Dialer, Server) {
    let listener = bufconn::listen(buffer);
    let dialer = listener.dialer();
    let server = builder.add_service(Echo).build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    (dialer, server)
}

fn memory_channel(dialer: bufconn::Dialer) -> ChannelBuilder {
    Channel::builder("passthrough:///bufnet")
        .dialer(dialer)
        .max_decoding_message_size(8 << 20)
}

/// Quick reconnection, so tests of failed attempts do not wait out the
/// default 1 s backoff.
fn fast_backoff(connect_timeout: Duration) -> backoff::Config {
    backoff::Config::default()
        .with_base_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_millis(50))
        .with_min_connect_timeout(connect_timeout)
}

/// Every call kind, messages far larger than the pipe's 4 KiB buffer,
/// metadata, status codes and deadlines, over one in-memory connection.
#[tokio::test]
async fn every_call_kind_runs_over_memory() {
    let (dialer, server) = serve(4 << 10, Server::builder());
    let ch = memory_channel(dialer).build().unwrap();

    // Unary, with metadata both ways.
    let mut req = Request::new(Bytes::from_static(b"hello"));
    req.metadata_mut().insert("x-echo", "me").unwrap();
    let resp = ch
        .unary(path("/mem.Echo/Unary"), req, BytesCodec)
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-echo"), Some("me"));
    assert_eq!(resp.metadata().get("x-tls"), Some("no"));
    assert_eq!(resp.into_inner(), "hello");

    // Large unary: 2 MiB each way through a 4 KiB pipe.
    let big = Bytes::from(vec![0xa5; 2 << 20]);
    let resp = ch
        .unary(
            path("/mem.Echo/Unary"),
            Request::new(big.clone()),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(resp.into_inner(), big);

    // Server streaming.
    let mut stream = ch
        .server_streaming(
            path("/mem.Echo/ServerStream"),
            Request::new(Bytes::from(
                [&50u32.to_be_bytes()[..], &(32u32 << 10).to_be_bytes()].concat(),
            )),
            BytesCodec,
        )
        .await
        .unwrap()
        .into_inner();
    let mut n = 0u32;
    while let Some(m) = stream.message().await.unwrap() {
        assert_eq!(m.len(), 32 << 10);
        assert_eq!(m[0], n as u8);
        n += 1;
    }
    assert_eq!(n, 50);

    // Client streaming.
    let mut call = ch
        .client_streaming::<Bytes, Bytes, _>(
            path("/mem.Echo/ClientStream"),
            Request::new(()),
            BytesCodec,
        )
        .await
        .unwrap();
    for i in 0..40usize {
        call.send(Bytes::from(vec![1; i * 1000])).await.unwrap();
    }
    let total = call.close_and_recv().await.unwrap().into_inner();
    assert_eq!(
        u64::from_be_bytes(total[..8].try_into().unwrap()),
        (0..40u64).map(|i| i * 1000).sum::<u64>()
    );

    // Bidi ping-pong.
    let (mut tx, mut rx) = ch
        .streaming::<Bytes, Bytes, _>(path("/mem.Echo/Bidi"), Request::new(()), BytesCodec)
        .await
        .unwrap();
    for i in 0..20u8 {
        tx.send(Bytes::from(vec![i; 10_000])).await.unwrap();
        assert_eq!(rx.message().await.unwrap().unwrap(), vec![i; 10_000]);
    }
    tx.close().unwrap();
    assert!(rx.message().await.unwrap().is_none());

    // Status codes, unimplemented methods, deadlines.
    let err = ch
        .unary(
            path("/mem.Echo/Fail"),
            Request::new(Bytes::from_static(&[7])),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::PermissionDenied, "as asked")
    );
    let err = ch
        .unary(
            path("/mem.Echo/Nope"),
            Request::new(Bytes::new()),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    let req = Request::new(Bytes::from(10_000u32.to_be_bytes().to_vec()))
        .with_timeout(Duration::from_millis(100));
    let err = ch
        .unary(path("/mem.Echo/Sleep"), req, BytesCodec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");

    // One connection carried it all.
    assert_eq!(server.connection_count(), 1);
}

/// The dialer is handed the `passthrough` endpoint as written, once per
/// connection attempt, and not called per call.
#[tokio::test]
async fn the_dialer_gets_the_passthrough_endpoint_once_per_connection() {
    let (bufconn, _server) = serve(64 << 10, Server::builder());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let ch = Channel::builder("passthrough:///some-name-dns-never-heard-of")
        .dialer(move |address: Address| {
            log.lock().unwrap().push(address);
            let bufconn = bufconn.clone();
            async move { bufconn.connect().await }
        })
        .build()
        .unwrap();
    for _ in 0..5 {
        ch.unary(
            path("/mem.Echo/Unary"),
            Request::new(Bytes::new()),
            BytesCodec,
        )
        .await
        .unwrap();
    }
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Address::HostPort("some-name-dns-never-heard-of".into())]
    );
}

/// What a dialer returns as an error is in the failed call's UNAVAILABLE
/// status, with the address.
#[tokio::test]
async fn a_dialer_error_is_in_the_unavailable_status() {
    let ch = Channel::builder("passthrough:///bufnet")
        .dialer(|_: Address| async {
            Err::<tokio::io::DuplexStream, _>(io::Error::other("the pipe factory is on strike"))
        })
        .build()
        .unwrap();
    let err = ch
        .unary(
            path("/mem.Echo/Unary"),
            Request::new(Bytes::new()),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(
        err.message().contains("the pipe factory is on strike"),
        "{err}"
    );
    assert!(err.message().contains("bufnet"), "{err}");
}

/// A dialer that never finishes is given up on at the connect timeout, and
/// its future is dropped (cancelled).
#[tokio::test]
async fn the_connect_timeout_applies_to_the_dialer() {
    struct Hang(Arc<Mutex<u32>>);
    struct Dropped(Arc<Mutex<u32>>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            *self.0.lock().unwrap() += 1;
        }
    }
    impl Dialer for Hang {
        type Io = tokio::io::DuplexStream;
        async fn dial(&self, _address: &Address) -> io::Result<Self::Io> {
            let _guard = Dropped(Arc::clone(&self.0));
            std::future::pending().await
        }
    }
    let dropped = Arc::new(Mutex::new(0));
    let ch = Channel::builder("passthrough:///bufnet")
        .dialer(Hang(Arc::clone(&dropped)))
        .connect_backoff(fast_backoff(Duration::from_millis(300)))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), ch.connect())
        .await
        .expect("the connect timeout did not end the dial")
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("timed out"), "{err}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "gave up after {took:?}"
    );
    assert!(
        *dropped.lock().unwrap() >= 1,
        "the dial future was not dropped"
    );
}

/// TLS runs over what the dialer returns, checked against the target's
/// name; the server sees a TLS peer.
#[tokio::test]
async fn tls_runs_over_the_dialled_stream() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["bufnet".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let (dialer, _server) = serve(
        16 << 10,
        Server::builder().credentials(ServerCredentials::tls(ServerTlsConfig::from_pem(
            cert.pem(),
            key.serialize_pem(),
        ))),
    );
    let tls = ClientTlsConfig::new().ca_certificate_pem(ca.pem());
    let ch = memory_channel(dialer.clone())
        .credentials(ChannelCredentials::tls(tls.clone()))
        .build()
        .unwrap();
    let resp = ch
        .unary(
            path("/mem.Echo/Unary"),
            Request::new(Bytes::from_static(b"x")),
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-tls"), Some("yes"));
    assert!(resp.peer().and_then(|p| p.auth_info.as_ref()).is_some());

    // The name checked is the target's: another name fails the handshake.
    let ch = Channel::builder("passthrough:///elsewhere")
        .dialer(dialer)
        .credentials(ChannelCredentials::tls(tls))
        .build()
        .unwrap();
    let err = ch
        .unary(
            path("/mem.Echo/Unary"),
            Request::new(Bytes::new()),
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("TLS handshake"), "{err}");
}

/// A stopped server drops its listener; dialling it is refused, and calls
/// say so.
#[tokio::test]
async fn a_stopped_server_refuses_dials() {
    let (dialer, server) = serve(4096, Server::builder());
    let ch = memory_channel(dialer.clone())
        .connect_backoff(fast_backoff(Duration::from_secs(5)))
        .build()
        .unwrap();
    ch.unary(
        path("/mem.Echo/Unary"),
        Request::new(Bytes::new()),
        BytesCodec,
    )
    .await
    .unwrap();
    server.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ch
            .unary(
                path("/mem.Echo/Unary"),
                Request::new(Bytes::new()),
                BytesCodec,
            )
            .await
        {
            Err(e) if e.message().contains("listener is closed") => break,
            other if Instant::now() > deadline => panic!("still {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let err = dialer.connect().await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}
