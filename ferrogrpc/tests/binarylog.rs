//! Binary logging (gRFC A16) over loopback: the entries both sides write
//! for a unary, a server-streaming and a bidi call, and a cancelled call;
//! and what the filter leaves out.

#![cfg(feature = "binarylog")]

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use ferrogrpc::{
    binarylog::{
        pb::{
            address, grpc_log_entry::EventType, grpc_log_entry::Logger, grpc_log_entry::Payload,
            GrpcLogEntry,
        },
        BinaryLog, Filter, Sink,
    },
    client::Channel,
    codec::BytesCodec,
    server::{self, ResponseSink, Server, ServerCall, Service},
    Request, Response, Streaming,
};
use http::uri::PathAndQuery;

/// Keeps entries in memory.
#[derive(Clone, Default)]
struct Memory(Arc<Mutex<Vec<GrpcLogEntry>>>);

impl Sink for Memory {
    fn write(&mut self, entry: &GrpcLogEntry) -> io::Result<()> {
        self.0.lock().unwrap().push(entry.clone());
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Memory {
    fn take(&self) -> Vec<GrpcLogEntry> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[derive(Clone)]
struct Echo;

impl Service for Echo {
    fn name(&self) -> &'static str {
        "b.Echo"
    }

    fn call(&self, method: &str, call: ServerCall) -> server::BoxFuture {
        match method {
            "Unary" | "Other" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let mut resp = Response::new(req.get_ref().clone());
                    resp.metadata_mut().insert("x-reply", "yes").unwrap();
                    Ok(resp)
                },
            )),
            "Slow" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(Response::new(req.into_inner()))
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

struct Fixture {
    addr: SocketAddr,
    channel: Channel,
    server_log: BinaryLog,
    client_log: BinaryLog,
    server: Memory,
    client: Memory,
}

/// A server logging with `server_filter`, a channel logging everything.
async fn fixture(server_filter: &str) -> Fixture {
    let server = Memory::default();
    let client = Memory::default();
    let server_log = BinaryLog::new(Filter::parse(server_filter).unwrap(), server.clone());
    let client_log = BinaryLog::new(Filter::parse("*").unwrap(), client.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let built = Server::builder()
        .add_service(Echo)
        .binary_log(server_log.clone())
        .build();
    tokio::spawn(async move { built.serve_listener(listener).await });
    let channel = Channel::builder(addr.to_string())
        .binary_log(client_log.clone())
        .build()
        .unwrap();
    Fixture {
        addr,
        channel,
        server_log,
        client_log,
        server,
        client,
    }
}

impl Fixture {
    /// Both sides' entries once the server wrote `server_entries` (its
    /// last entries are written on its own task, after the client is done).
    async fn entries(&self, server_entries: usize) -> (Vec<GrpcLogEntry>, Vec<GrpcLogEntry>) {
        for _ in 0..200 {
            self.server_log.flush();
            if self.server.0.lock().unwrap().len() >= server_entries {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.client_log.flush();
        (self.client.take(), self.server.take())
    }
}

fn kinds(entries: &[GrpcLogEntry]) -> Vec<EventType> {
    entries.iter().map(|e| e.r#type()).collect()
}

/// Checks what every entry of one call on one side shares.
fn check_call(entries: &[GrpcLogEntry], logger: Logger) {
    let call_id = entries[0].call_id;
    assert_ne!(call_id, 0);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.call_id, call_id);
        assert_eq!(e.sequence_id_within_call, i as u64 + 1, "{e:?}");
        assert_eq!(e.logger(), logger);
        assert!(e.timestamp.is_some());
    }
}

fn metadata_keys(entry: &GrpcLogEntry) -> Vec<String> {
    let md = match &entry.payload {
        Some(Payload::ClientHeader(h)) => h.metadata.as_ref(),
        Some(Payload::ServerHeader(h)) => h.metadata.as_ref(),
        Some(Payload::Trailer(t)) => t.metadata.as_ref(),
        _ => None,
    };
    md.map(|m| m.entry.iter().map(|e| e.key.clone()).collect())
        .unwrap_or_default()
}

fn message(entry: &GrpcLogEntry) -> (u32, Vec<u8>, bool) {
    match &entry.payload {
        Some(Payload::Message(m)) => (m.length, m.data.clone(), entry.payload_truncated),
        other => panic!("not a message: {other:?}"),
    }
}

fn check_peer(entry: &GrpcLogEntry, port: Option<u16>) {
    let peer = entry.peer.as_ref().expect("peer");
    assert_eq!(peer.r#type(), address::Type::Ipv4);
    assert_eq!(peer.address, "127.0.0.1");
    match port {
        Some(p) => assert_eq!(peer.ip_port, u32::from(p)),
        None => assert_ne!(peer.ip_port, 0),
    }
}

use EventType::{
    Cancel, ClientHalfClose as HalfClose, ClientHeader as CH, ClientMessage as CM,
    ServerHeader as SH, ServerMessage as SM, ServerTrailer as ST,
};

#[tokio::test]
async fn unary_on_both_sides_with_truncation() {
    let f = fixture("b.Echo/Unary{h:12;m:4},b.Echo/*").await;
    let mut request = Request::new(Bytes::from_static(b"0123456789"));
    request.metadata_mut().insert("x-a", "1234").unwrap(); // 7 bytes
    request.metadata_mut().insert("x-bbbb", "12345").unwrap(); // 11 bytes
    request.set_timeout(Duration::from_secs(10));
    let response = f
        .channel
        .unary(
            PathAndQuery::from_static("/b.Echo/Unary"),
            request,
            BytesCodec,
        )
        .await
        .unwrap();
    assert_eq!(&response.get_ref()[..], b"0123456789");
    let (client, server) = f.entries(5).await;

    assert_eq!(kinds(&client), [CH, CM, SH, SM, ST]);
    check_call(&client, Logger::Client);
    let Some(Payload::ClientHeader(h)) = &client[0].payload else {
        panic!("{:?}", client[0])
    };
    assert_eq!(h.method_name, "/b.Echo/Unary");
    assert_eq!(h.authority, f.addr.to_string());
    let timeout = h.timeout.unwrap();
    assert!(timeout.seconds == 9 || (timeout.seconds == 10 && timeout.nanos == 0));
    assert!(
        client[0].peer.is_none(),
        "a client logs no peer on what it sends"
    );
    assert_eq!(metadata_keys(&client[0]), ["x-a", "x-bbbb"]);
    assert!(!client[0].payload_truncated);
    assert_eq!(message(&client[1]), (10, b"0123456789".to_vec(), false));
    // The server's address, on the first entry the client received.
    check_peer(&client[2], Some(f.addr.port()));
    assert_eq!(metadata_keys(&client[2]), ["x-reply"]);
    assert!(client[3..].iter().all(|e| e.peer.is_none()));
    assert_eq!(message(&client[3]), (10, b"0123456789".to_vec(), false));
    let Some(Payload::Trailer(t)) = &client[4].payload else {
        panic!("{:?}", client[4])
    };
    assert_eq!(t.status_code, 0);

    assert_eq!(kinds(&server), [CH, CM, SH, SM, ST]);
    check_call(&server, Logger::Server);
    let Some(Payload::ClientHeader(h)) = &server[0].payload else {
        panic!("{:?}", server[0])
    };
    assert_eq!(h.method_name, "/b.Echo/Unary");
    assert_eq!(h.authority, f.addr.to_string());
    assert!(h.timeout.unwrap().seconds >= 9);
    // The client's address, on the client header.
    check_peer(&server[0], None);
    assert!(server[1..].iter().all(|e| e.peer.is_none()));
    // {h:12}: x-a (7 bytes) or x-bbbb (11) fits, not both (the order is
    // the header map's); gRPC's own headers (user-agent, te, grpc-*) are
    // left out and do not count.
    let kept = metadata_keys(&server[0]);
    assert!(kept == ["x-a"] || kept == ["x-bbbb"], "{kept:?}");
    assert!(server[0].payload_truncated);
    // {m:4}: the first 4 bytes, the whole length.
    assert_eq!(message(&server[1]), (10, b"0123".to_vec(), true));
    assert_eq!(message(&server[3]), (10, b"0123".to_vec(), true));
    assert_eq!(metadata_keys(&server[2]), ["x-reply"]);
    for e in client.iter().chain(&server) {
        for key in metadata_keys(e) {
            assert!(!key.starts_with("grpc-") && key != "user-agent" && key != "te");
        }
    }
}

#[tokio::test]
async fn server_streaming_on_both_sides() {
    let f = fixture("b.Echo/*{h;m:1}").await;
    let response = f
        .channel
        .server_streaming(
            PathAndQuery::from_static("/b.Echo/Split"),
            Request::new(Bytes::from_static(b"abc")),
            BytesCodec,
        )
        .await
        .unwrap();
    let mut stream = response.into_inner();
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        got.push(m);
    }
    assert_eq!(got.len(), 3);
    let (client, server) = f.entries(7).await;
    for (side, entries, logger) in [
        ("client", &client, Logger::Client),
        ("server", &server, Logger::Server),
    ] {
        assert_eq!(kinds(entries), [CH, CM, SH, SM, SM, SM, ST], "{side}");
        check_call(entries, logger);
    }
    assert_eq!(message(&client[1]), (3, b"abc".to_vec(), false));
    assert_eq!(message(&server[1]), (3, b"a".to_vec(), true));
    assert_eq!(message(&server[5]), (1, b"c".to_vec(), false));
    check_peer(&client[2], Some(f.addr.port()));
    check_peer(&server[0], None);
}

#[tokio::test]
async fn bidi_on_both_sides_with_half_close() {
    let f = fixture("*").await;
    let (mut sink, mut stream) = f
        .channel
        .streaming::<Bytes, Bytes, _>(
            PathAndQuery::from_static("/b.Echo/Bidi"),
            Request::new(()),
            BytesCodec,
        )
        .await
        .unwrap();
    sink.send(Bytes::from_static(b"one")).await.unwrap();
    assert_eq!(&stream.message().await.unwrap().unwrap()[..], b"one");
    sink.send(Bytes::from_static(b"two")).await.unwrap();
    assert_eq!(&stream.message().await.unwrap().unwrap()[..], b"two");
    sink.close().unwrap();
    assert!(stream.message().await.unwrap().is_none());
    let (client, server) = f.entries(8).await;
    for (side, entries, logger) in [
        ("client", &client, Logger::Client),
        ("server", &server, Logger::Server),
    ] {
        assert_eq!(
            kinds(entries),
            [CH, CM, SH, SM, CM, SM, HalfClose, ST],
            "{side}"
        );
        check_call(entries, logger);
        assert_eq!(message(&entries[4]), (3, b"two".to_vec(), false));
    }
    check_peer(&client[2], Some(f.addr.port()));
    check_peer(&server[0], None);
}

#[tokio::test]
async fn a_dropped_bidi_call_is_logged_as_cancelled_by_the_client() {
    let f = fixture("*").await;
    let (mut sink, mut stream) = f
        .channel
        .streaming::<Bytes, Bytes, _>(
            PathAndQuery::from_static("/b.Echo/Bidi"),
            Request::new(()),
            BytesCodec,
        )
        .await
        .unwrap();
    sink.send(Bytes::from_static(b"one")).await.unwrap();
    assert!(stream.message().await.unwrap().is_some());
    drop(stream);
    drop(sink);
    let (client, server) = f.entries(5).await;
    assert_eq!(kinds(&client), [CH, CM, SH, SM, Cancel]);
    check_call(&client, Logger::Client);
    // The server sees the reset either in the driver (CANCEL) or first
    // through the handler's receive, whose CANCELLED status it then tries
    // to send (a trailer; A16 allows both).
    assert_eq!(kinds(&server)[..4], [CH, CM, SH, SM]);
    check_call(&server, Logger::Server);
    match (&server[4].payload, server[4].r#type()) {
        (None, Cancel) => {}
        (Some(Payload::Trailer(t)), ST) => assert_eq!(t.status_code, 1, "{t:?}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn methods_the_filter_leaves_out_are_not_logged() {
    let f = fixture("b.Echo/*,-b.Echo/Other").await;
    for method in ["/b.Echo/Other", "/b.Echo/Unary"] {
        f.channel
            .unary(
                PathAndQuery::from_static(method),
                Request::new(Bytes::from_static(b"x")),
                BytesCodec,
            )
            .await
            .unwrap();
    }
    let (client, server) = f.entries(5).await;
    assert_eq!(client.len(), 10, "the client logs both");
    assert_eq!(kinds(&server), [CH, CM, SH, SM, ST]);
    let Some(Payload::ClientHeader(h)) = &server[0].payload else {
        panic!()
    };
    assert_eq!(h.method_name, "/b.Echo/Unary");
}

#[tokio::test]
async fn a_status_the_client_made_up_is_logged_as_its_trailer() {
    let f = fixture("*").await;
    let mut request = Request::new(Bytes::from_static(b"x"));
    request.set_timeout(Duration::from_millis(50));
    let err = f
        .channel
        .unary(
            PathAndQuery::from_static("/b.Echo/Slow"),
            request,
            BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ferrogrpc::Code::DeadlineExceeded);
    let (client, _) = f.entries(0).await;
    assert_eq!(kinds(&client), [CH, CM, ST]);
    check_call(&client, Logger::Client);
    let Some(Payload::Trailer(t)) = &client[2].payload else {
        panic!("{:?}", client[2])
    };
    assert_eq!(t.status_code, ferrogrpc::Code::DeadlineExceeded as u32);
}

/// A16 leaves out "entries added for call credentials": neither the
/// channel's per-RPC credentials nor the call's own are in the client's
/// log, though they do travel (the server, which cannot tell them from the
/// application's metadata, logs what it received, as gRPC-Go's does).
#[tokio::test]
async fn call_credentials_are_not_in_the_clients_log() {
    let f = fixture("*").await;
    let channel = Channel::builder(f.addr.to_string())
        .binary_log(f.client_log.clone())
        .per_rpc_credentials(ferrogrpc::credentials::BearerToken::new("channel-s3cret"))
        .allow_insecure_per_rpc_credentials(true)
        .build()
        .unwrap();
    let mut call_md = ferrogrpc::metadata::MetadataMap::new();
    call_md.insert("x-call-token", "call-s3cret").unwrap();
    let call_credentials =
        ferrogrpc::credentials::StaticMetadata::new(call_md).require_transport_security(false);
    let mut request = Request::new(Bytes::from_static(b"x")).with_credentials(call_credentials);
    request.metadata_mut().insert("x-app", "visible").unwrap();
    channel
        .unary(
            PathAndQuery::from_static("/b.Echo/Unary"),
            request,
            BytesCodec,
        )
        .await
        .unwrap();
    let (client, server) = f.entries(5).await;
    assert_eq!(kinds(&client), [CH, CM, SH, SM, ST]);
    assert_eq!(metadata_keys(&client[0]), ["x-app"]);
    for e in &client {
        let bytes = prost::Message::encode_to_vec(e);
        assert!(
            !bytes.windows(6).any(|w| w == b"s3cret"),
            "a credential in the client's log: {e:?}"
        );
    }
    // They were sent: the server got (and logged) both.
    let mut got = metadata_keys(&server[0]);
    got.sort();
    assert_eq!(got, ["authorization", "x-app", "x-call-token"]);
}
