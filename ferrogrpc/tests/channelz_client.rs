//! Channelz (gRFC A14) on the client, read through the channelz service on
//! loopback: a channel's, its subchannel's and its socket's counts after a
//! known sequence of calls match exactly; a reconnect makes a new socket;
//! TLS shows on the socket; resolver, balancer and pick events reach the
//! trace; everything goes when the channel does.

#![cfg(feature = "channelz")]

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use ferrogrpc::{
    channelz::pb::{self, channelz_client::ChannelzClient},
    client::Channel,
    codec::BytesCodec,
    server::{self, BoxFuture, Server, ServerCall, Service},
    Code, Request, Response, Status,
};
use http::uri::PathAndQuery;

/// The channelz service on a server of its own; its client's channel is
/// not one the tests look at.
async fn admin() -> ChannelzClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = ferrogrpc::admin::register(Server::builder()).build();
    tokio::spawn(async move { server.serve_listener(listener).await });
    ChannelzClient::new(Channel::from_target(&addr.to_string()).unwrap())
}

/// `Ok` echoes; `Fail` fails with NOT_FOUND; `Stream` answers with as
/// many messages as the request's first byte says; `Collect` answers a
/// client stream with the number of its messages; `Hang` sends one
/// message and then nothing until cancelled.
struct Answer;

impl Service for Answer {
    fn name(&self) -> &'static str {
        "z.Answer"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        match method {
            "Stream" | "Hang" => {
                let hang = method == "Hang";
                Box::pin(server::server_streaming(
                    call,
                    BytesCodec,
                    move |req: Request<Bytes>, mut sink: server::ResponseSink<Bytes>| async move {
                        let n = if hang { 1 } else { req.get_ref()[0] };
                        for i in 0..n {
                            sink.send(Bytes::from(vec![i])).await?;
                        }
                        if hang {
                            std::future::pending::<()>().await;
                        }
                        Ok(())
                    },
                ))
            }
            "Collect" => Box::pin(server::client_streaming(
                call,
                BytesCodec,
                |req: Request<ferrogrpc::Streaming<Bytes>>| async move {
                    let mut stream = req.into_inner();
                    let mut n = 0u8;
                    while stream.message().await?.is_some() {
                        n += 1;
                    }
                    Ok(Response::new(Bytes::from(vec![n])))
                },
            )),
            _ => {
                let fail = method == "Fail";
                Box::pin(server::unary(
                    call,
                    BytesCodec,
                    move |req: Request<Bytes>| async move {
                        if fail {
                            Err(Status::not_found("no"))
                        } else {
                            Ok(Response::new(req.into_inner()))
                        }
                    },
                ))
            }
        }
    }
}

fn serve_on(listener: tokio::net::TcpListener, builder: server::ServerBuilder) -> Server {
    let server = builder.add_service(Answer).build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    server
}

async fn serve() -> (SocketAddr, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve_on(listener, Server::builder()))
}

async fn unary(ch: &Channel, method: &'static str) -> Result<Bytes, Status> {
    let req = Request::new(Bytes::from_static(b"x")).with_timeout(Duration::from_secs(10));
    ch.unary(PathAndQuery::from_static(method), req, BytesCodec)
        .await
        .map(Response::into_inner)
}

/// Polls `f` until it returns `Some`, for at most 30 s.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    for _ in 0..300 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not seen within 30 s");
}

/// The top channel whose target is `target`, if listed.
async fn find_channel(cz: &ChannelzClient, target: &str) -> Option<pb::Channel> {
    let mut start = 0;
    loop {
        let page = cz
            .get_top_channels(Request::new(pb::GetTopChannelsRequest {
                start_channel_id: start,
                max_results: 0,
            }))
            .await
            .unwrap()
            .into_inner();
        for c in &page.channel {
            if c.data.as_ref().unwrap().target == target {
                return Some(c.clone());
            }
        }
        match page.channel.last() {
            Some(last) if !page.end => start = last.r#ref.as_ref().unwrap().channel_id + 1,
            _ => return None,
        }
    }
}

async fn channel(cz: &ChannelzClient, target: &str) -> pb::Channel {
    find_channel(cz, target)
        .await
        .unwrap_or_else(|| panic!("no channel for {target}"))
}

async fn subchannel(cz: &ChannelzClient, id: i64) -> Result<pb::Subchannel, Status> {
    let r = cz
        .get_subchannel(Request::new(pb::GetSubchannelRequest { subchannel_id: id }))
        .await?;
    Ok(r.into_inner().subchannel.unwrap())
}

async fn socket(cz: &ChannelzClient, id: i64) -> Result<pb::Socket, Status> {
    let r = cz
        .get_socket(Request::new(pb::GetSocketRequest {
            socket_id: id,
            summary: false,
        }))
        .await?;
    Ok(r.into_inner().socket.unwrap())
}

/// The channel's only subchannel.
async fn only_subchannel(cz: &ChannelzClient, c: &pb::Channel) -> pb::Subchannel {
    assert_eq!(c.subchannel_ref.len(), 1, "{:?}", c.subchannel_ref);
    subchannel(cz, c.subchannel_ref[0].subchannel_id)
        .await
        .unwrap()
}

/// The subchannel's only socket.
async fn only_socket(cz: &ChannelzClient, s: &pb::Subchannel) -> pb::Socket {
    assert_eq!(s.socket_ref.len(), 1, "{:?}", s.socket_ref);
    socket(cz, s.socket_ref[0].socket_id).await.unwrap()
}

/// (started, succeeded, failed)
fn calls(d: &pb::ChannelData) -> (i64, i64, i64) {
    (d.calls_started, d.calls_succeeded, d.calls_failed)
}

/// (streams started, succeeded, failed, messages sent, received)
fn streams(d: &pb::SocketData) -> (i64, i64, i64, i64, i64) {
    (
        d.streams_started,
        d.streams_succeeded,
        d.streams_failed,
        d.messages_sent,
        d.messages_received,
    )
}

fn nanos(t: Option<&prost_types::Timestamp>) -> i128 {
    let t = t.expect("a timestamp");
    i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
}

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

fn port_of(a: Option<&pb::Address>) -> Option<u16> {
    match a?.address.as_ref()? {
        pb::address::Address::TcpipAddress(t) => u16::try_from(t.port).ok(),
        _ => None,
    }
}

fn trace_has(d: &pb::ChannelData, needle: &str) -> bool {
    d.trace
        .as_ref()
        .unwrap()
        .events
        .iter()
        .any(|e| e.description.contains(needle))
}

fn descriptions(d: &pb::ChannelData) -> Vec<String> {
    let events = &d.trace.as_ref().unwrap().events;
    events.iter().map(|e| e.description.clone()).collect()
}

/// The one connection `server` (found by its listen port) has.
async fn server_socket(cz: &ChannelzClient, port: u16) -> pb::Socket {
    let servers = cz
        .get_servers(Request::new(pb::GetServersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .server;
    for s in servers {
        for l in &s.listen_socket {
            let listen = socket(cz, l.socket_id).await.unwrap();
            if port_of(listen.local.as_ref()) != Some(port) {
                continue;
            }
            let refs = cz
                .get_server_sockets(Request::new(pb::GetServerSocketsRequest {
                    server_id: s.r#ref.as_ref().unwrap().server_id,
                    start_socket_id: 0,
                    max_results: 0,
                }))
                .await
                .unwrap()
                .into_inner()
                .socket_ref;
            assert_eq!(refs.len(), 1, "{refs:?}");
            return socket(cz, refs[0].socket_id).await.unwrap();
        }
    }
    panic!("no server listens on {port}");
}

#[tokio::test]
async fn calls_streams_and_messages_count_exactly() {
    let cz = admin().await;
    let (addr, _server) = serve().await;
    let target = addr.to_string();
    let ch = Channel::from_target(&target).unwrap();

    for _ in 0..3 {
        unary(&ch, "/z.Answer/Ok").await.unwrap();
    }
    for _ in 0..2 {
        let err = unary(&ch, "/z.Answer/Fail").await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
    // Server streaming: one request, four answers read to the end.
    let mut stream = ch
        .server_streaming(
            PathAndQuery::from_static("/z.Answer/Stream"),
            Request::new(Bytes::from_static(&[4])),
            BytesCodec,
        )
        .await
        .unwrap()
        .into_inner();
    let mut answers = 0;
    while stream.message().await.unwrap().is_some() {
        answers += 1;
    }
    assert_eq!(answers, 4);
    drop(stream);
    // Client streaming: three requests, one answer; the last call.
    let before_last = now_nanos();
    let mut call = ch
        .client_streaming::<Bytes, Bytes, _>(
            PathAndQuery::from_static("/z.Answer/Collect"),
            Request::new(()),
            BytesCodec,
        )
        .await
        .unwrap();
    for _ in 0..3 {
        call.send(Bytes::from_static(b"m")).await.unwrap();
    }
    let answer = call.close_and_recv().await.unwrap().into_inner();
    assert_eq!(&answer[..], &[3]);
    let after_last = now_nanos();

    // The channel: 7 calls, 2 of them failed; the last started when the
    // client-streaming call did.
    let c = channel(&cz, &target).await;
    let data = c.data.as_ref().unwrap();
    assert_eq!(calls(data), (7, 5, 2));
    let last = nanos(data.last_call_started_timestamp.as_ref());
    assert!((before_last..=after_last).contains(&last), "{last}");
    assert_eq!(
        data.state.as_ref().unwrap().state,
        pb::channel_connectivity_state::State::Ready as i32
    );

    // Its subchannel: every attempt went to it.
    let sub = only_subchannel(&cz, &c).await;
    let sub_data = sub.data.as_ref().unwrap();
    assert_eq!(sub_data.target, target);
    assert_eq!(calls(sub_data), (7, 5, 2));
    assert!(
        (before_last..=after_last).contains(&nanos(sub_data.last_call_started_timestamp.as_ref()))
    );

    // Its socket: 7 streams, each ended by the server (a failed call's
    // too); 3 + 2 + 1 + 3 messages out, 3 + 4 + 1 in.
    let sock = only_socket(&cz, &sub).await;
    let d = sock.data.as_ref().unwrap();
    assert_eq!(streams(d), (7, 7, 0, 9, 8));
    // Its connection's flow-control windows, read off the wire.
    for window in [d.local_flow_control_window, d.remote_flow_control_window] {
        let window = window.expect("a client socket reports its windows");
        assert!(window > 0 && window < 1 << 31, "{window}");
    }
    assert_eq!(d.keep_alives_sent, 0);
    for t in [
        &d.last_local_stream_created_timestamp,
        &d.last_message_sent_timestamp,
        &d.last_message_received_timestamp,
    ] {
        assert!((before_last..=after_last).contains(&nanos(t.as_ref())));
    }
    assert!(d.last_remote_stream_created_timestamp.is_none(), "client");
    assert_eq!(port_of(sock.remote.as_ref()), Some(addr.port()));
    assert!(sock.security.is_none(), "plaintext");

    // The server's side of the same connection: what the client sent, it
    // received, and the other way round.
    let server_sock = server_socket(&cz, addr.port()).await;
    assert_eq!(
        port_of(server_sock.remote.as_ref()),
        port_of(sock.local.as_ref())
    );
    let sd = server_sock.data.as_ref().unwrap();
    assert_eq!(streams(sd), (7, 7, 0, 8, 9));
    assert!(
        (before_last..=after_last).contains(&nanos(sd.last_message_received_timestamp.as_ref()))
    );

    // The trace: created, the resolver's answer, the policy, READY.
    for event in [
        "channel created",
        "resolver returned 1 addresses",
        "load-balancing policy \"pick_first\"",
        "connectivity state changed to Ready",
    ] {
        assert!(
            trace_has(data, event),
            "{event:?} in {:?}",
            descriptions(data)
        );
    }
    for event in ["subchannel created", "connectivity state changed to Ready"] {
        assert!(
            trace_has(sub_data, event),
            "{event:?} in {:?}",
            descriptions(sub_data)
        );
    }

    // Closed: the channel, its subchannel and its socket go.
    let (sub_id, sock_id) = (
        sub.r#ref.as_ref().unwrap().subchannel_id,
        sock.r#ref.as_ref().unwrap().socket_id,
    );
    drop(ch);
    eventually("the channel, subchannel and socket removed", || {
        let cz = cz.clone();
        let target = target.clone();
        async move {
            let gone = find_channel(&cz, &target).await.is_none()
                && subchannel(&cz, sub_id).await.err()?.code() == Code::NotFound
                && socket(&cz, sock_id).await.err()?.code() == Code::NotFound;
            gone.then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_stream_given_up_fails_on_the_channel_subchannel_and_socket() {
    let cz = admin().await;
    let (addr, _server) = serve().await;
    let target = addr.to_string();
    let ch = Channel::from_target(&target).unwrap();
    let mut stream = ch
        .server_streaming(
            PathAndQuery::from_static("/z.Answer/Hang"),
            Request::new(Bytes::from_static(b"x")),
            BytesCodec,
        )
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    // Under way: started, not ended.
    let c = channel(&cz, &target).await;
    assert_eq!(calls(c.data.as_ref().unwrap()), (1, 0, 0));
    let sub = only_subchannel(&cz, &c).await;
    assert_eq!(calls(sub.data.as_ref().unwrap()), (1, 0, 0));
    let sock = only_socket(&cz, &sub).await;
    assert_eq!(streams(sock.data.as_ref().unwrap()), (1, 0, 0, 1, 1));

    // Dropped: this side resets the stream.
    drop(stream);
    let c = channel(&cz, &target).await;
    assert_eq!(calls(c.data.as_ref().unwrap()), (1, 0, 1));
    let sub = only_subchannel(&cz, &c).await;
    assert_eq!(calls(sub.data.as_ref().unwrap()), (1, 0, 1));
    let sock = only_socket(&cz, &sub).await;
    assert_eq!(streams(sock.data.as_ref().unwrap()), (1, 0, 1, 1, 1));
}

#[tokio::test]
async fn a_reconnect_gets_a_new_socket_and_a_failed_pick_is_traced() {
    let cz = admin().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first = serve_on(listener, Server::builder());
    let target = addr.to_string();
    let ch = Channel::from_target(&target).unwrap();
    for _ in 0..2 {
        unary(&ch, "/z.Answer/Ok").await.unwrap();
    }
    let c = channel(&cz, &target).await;
    let sub = only_subchannel(&cz, &c).await;
    let sub_id = sub.r#ref.as_ref().unwrap().subchannel_id;
    let old = only_socket(&cz, &sub).await;
    let old_id = old.r#ref.as_ref().unwrap().socket_id;
    assert_eq!(streams(old.data.as_ref().unwrap()), (2, 2, 0, 2, 2));

    // The server goes: the connection ends and its socket with it.
    first.graceful_stop().await;
    drop(first);
    eventually("the old socket removed", || {
        let cz = cz.clone();
        async move {
            let gone = socket(&cz, old_id).await.err()?.code() == Code::NotFound;
            let sub = subchannel(&cz, sub_id).await.ok()?;
            (gone && sub.socket_ref.is_empty()).then_some(())
        }
    })
    .await;

    // A fail-fast call while nothing listens: the pick fails, on the
    // channel only (no attempt reached the subchannel).
    let err = unary(&ch, "/z.Answer/Ok").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let c = channel(&cz, &target).await;
    let data = c.data.as_ref().unwrap();
    assert_eq!(calls(data), (3, 2, 1));
    assert!(
        trace_has(data, "pick failed: UNAVAILABLE"),
        "{:?}",
        descriptions(data)
    );
    assert!(trace_has(
        data,
        "connectivity state changed to TransientFailure"
    ));
    let sub = subchannel(&cz, sub_id).await.unwrap();
    let sub_data = sub.data.as_ref().unwrap();
    assert_eq!(calls(sub_data), (2, 2, 0));
    for event in ["connection no longer used", "failed to connect to"] {
        assert!(
            trace_has(sub_data, event),
            "{event:?} in {:?}",
            descriptions(sub_data)
        );
    }

    // Back on the same port: the next call makes a new connection.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let _second = serve_on(listener, Server::builder());
    let req = Request::new(Bytes::from_static(b"x"))
        .with_timeout(Duration::from_secs(20))
        .with_wait_for_ready(true);
    ch.unary(PathAndQuery::from_static("/z.Answer/Ok"), req, BytesCodec)
        .await
        .unwrap();
    let c = channel(&cz, &target).await;
    assert_eq!(calls(c.data.as_ref().unwrap()), (4, 3, 1));
    let sub = only_subchannel(&cz, &c).await;
    assert_eq!(sub.r#ref.as_ref().unwrap().subchannel_id, sub_id);
    assert_eq!(calls(sub.data.as_ref().unwrap()), (3, 3, 0));
    let new = only_socket(&cz, &sub).await;
    assert_ne!(new.r#ref.as_ref().unwrap().socket_id, old_id);
    assert_eq!(streams(new.data.as_ref().unwrap()), (1, 1, 0, 1, 1));
}

#[tokio::test]
async fn resolver_updates_and_errors_are_traced() {
    use ferrogrpc::resolver::{manual::ManualResolver, State as Resolved};
    let cz = admin().await;
    let (a, _sa) = serve().await;
    let (b, _sb) = serve().await;
    let resolver = ManualResolver::new("czclient");
    resolver.update_state(Resolved::new([a, b]));
    let ch = Channel::builder("czclient:///backends")
        .resolver(resolver.clone())
        .default_service_config(r#"{"loadBalancingConfig": [{"round_robin": {}}]}"#)
        .build()
        .unwrap();
    for _ in 0..4 {
        unary(&ch, "/z.Answer/Ok").await.unwrap();
    }
    resolver.report_error("no such name");
    let target = "czclient:///backends";
    let data = eventually("the resolver error traced", || {
        let cz = cz.clone();
        async move {
            let c = channel(&cz, target).await;
            let data = c.data.unwrap();
            trace_has(&data, "resolver error: no such name").then_some(data)
        }
    })
    .await;
    for event in [
        "resolver returned 2 addresses in 2 endpoints",
        "load-balancing policy \"round_robin\"",
    ] {
        assert!(
            trace_has(&data, event),
            "{event:?} in {:?}",
            descriptions(&data)
        );
    }
    // Round robin spread the calls: two on each subchannel.
    assert_eq!(calls(&data), (4, 4, 0));
    let c = channel(&cz, target).await;
    assert_eq!(c.subchannel_ref.len(), 2);
    for r in &c.subchannel_ref {
        let sub = subchannel(&cz, r.subchannel_id).await.unwrap();
        assert_eq!(calls(sub.data.as_ref().unwrap()), (2, 2, 0));
    }
}

#[tokio::test]
async fn a_tls_socket_shows_its_cipher_and_the_server_certificate() {
    use ferrogrpc::credentials::{
        tls::{ClientTlsConfig, ServerTlsConfig},
        ChannelCredentials, ServerCredentials,
    };
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "root");
    let ca = params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();

    let cz = admin().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let builder = Server::builder().credentials(ServerCredentials::tls(ServerTlsConfig::from_pem(
        leaf.pem(),
        key.serialize_pem(),
    )));
    let _server = serve_on(listener, builder);
    let target = addr.to_string();
    let ch = Channel::builder(target.clone())
        .credentials(ChannelCredentials::tls(
            ClientTlsConfig::new()
                .ca_certificate_pem(ca.pem())
                .server_name("localhost"),
        ))
        .build()
        .unwrap();
    unary(&ch, "/z.Answer/Ok").await.unwrap();

    let c = channel(&cz, &target).await;
    let sub = only_subchannel(&cz, &c).await;
    let sock = only_socket(&cz, &sub).await;
    assert_eq!(streams(sock.data.as_ref().unwrap()), (1, 1, 0, 1, 1));
    let Some(pb::security::Model::Tls(tls)) = sock.security.and_then(|s| s.model) else {
        panic!("a TLS socket");
    };
    let Some(pb::security::tls::CipherSuite::StandardName(cipher)) = tls.cipher_suite else {
        panic!("a standard cipher name");
    };
    assert!(cipher.starts_with("TLS_"), "{cipher}");
    assert_eq!(tls.remote_certificate, leaf.der().to_vec());
    assert!(tls.local_certificate.is_empty(), "no client certificate");
}

#[tokio::test]
async fn keepalive_pings_are_counted_on_the_socket() {
    use ferrogrpc::keepalive::{ClientParameters, EnforcementPolicy};
    let cz = admin().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The server lets the client ping as often as it likes.
    let builder = Server::builder().keepalive_enforcement_policy(
        EnforcementPolicy::default()
            .with_min_time(Duration::from_millis(1))
            .with_permit_without_stream(true),
    );
    let _server = serve_on(listener, builder);
    let target = addr.to_string();
    let ch = Channel::builder(target.clone())
        .keepalive_params_unclamped_for_tests(
            ClientParameters::default()
                .with_time(Duration::from_millis(100))
                .with_timeout(Duration::from_secs(5))
                .with_permit_without_calls(true),
        )
        .build()
        .unwrap();
    unary(&ch, "/z.Answer/Ok").await.unwrap();
    let c = channel(&cz, &target).await;
    let sub_id = c.subchannel_ref[0].subchannel_id;
    // A quiet connection is pinged every 100 ms.
    let pings = eventually("keepalive pings counted", || {
        let cz = cz.clone();
        async move {
            let sub = subchannel(&cz, sub_id).await.ok()?;
            let sock = socket(&cz, sub.socket_ref.first()?.socket_id).await.ok()?;
            let pings = sock.data?.keep_alives_sent;
            (pings >= 3).then_some(pings)
        }
    })
    .await;
    assert!(pings >= 3);
    // Still the same connection: the pings were welcome.
    let sub = subchannel(&cz, sub_id).await.unwrap();
    assert_eq!(sub.socket_ref.len(), 1);
    assert_eq!(calls(sub.data.as_ref().unwrap()), (1, 1, 0));
}
