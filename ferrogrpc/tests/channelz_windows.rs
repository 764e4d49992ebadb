//! Channelz's connection flow-control windows (gRFC A14
//! `SocketData.local_flow_control_window` / `remote_flow_control_window`, as
//! gRPC-Go reports them) against a raw HTTP/2 client (`support/raw_h2.rs`)
//! that sees every frame on the wire, so the expected windows are exact: the
//! server's local window is what the client may still send (65,535 plus the
//! server's WINDOW_UPDATEs on stream 0, less the DATA the client sent), its
//! remote window what the server may still send (65,535 plus the client's
//! WINDOW_UPDATEs on stream 0, less the DATA the server sent).
//!
//! Data the server has not read shrinks its local window by exactly its size
//! (h2 gives connection window back only as the application reads), and
//! reading it grows the window again.

#![cfg(feature = "channelz")]

#[path = "support/raw_h2.rs"]
mod raw_h2;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use ferrogrpc::{
    channelz::pb::{self, channelz_client::ChannelzClient},
    client::Channel,
    codec::BytesCodec,
    server::{self, BoxFuture, Server, ServerCall, Service},
    Request, Response, Status, Streaming,
};
use raw_h2::{Conn, Frame, ReadError};
use tokio::sync::Semaphore;

/// The watched server's windows. Set explicitly, which keeps BDP from
/// moving them.
const CONNECTION_WINDOW: u32 = 256 << 10;
const STREAM_WINDOW: u32 = 256 << 10;
/// What the client adds to its own connection window.
const CLIENT_WINDOW_UPDATE: u32 = 1 << 20;
/// DATA frames the client sends, each of the default maximum frame size.
const FRAMES: usize = 10;
const FRAME: usize = 16 << 10;
/// The response message's size.
const REPLY: usize = 1000;

/// `z.Hold/Take`: client streaming; reads nothing until the test lets it,
/// then reads every message and answers `REPLY` bytes.
struct Hold(Arc<Semaphore>);

impl Service for Hold {
    fn name(&self) -> &'static str {
        "z.Hold"
    }

    fn call(&self, _method: &str, call: ServerCall) -> BoxFuture {
        let gate = Arc::clone(&self.0);
        Box::pin(server::client_streaming(
            call,
            BytesCodec,
            move |req: Request<Streaming<Bytes>>| async move {
                let _permit = gate
                    .acquire()
                    .await
                    .map_err(|_| Status::internal("gate closed"))?;
                let mut stream = req.into_inner();
                while stream.message().await?.is_some() {}
                Ok(Response::new(Bytes::from(vec![7u8; REPLY])))
            },
        ))
    }
}

/// The windows as the raw client's frames make them.
#[derive(Debug, Default)]
struct Wire {
    updates_from_server: i64,
    data_to_server: i64,
    updates_to_server: i64,
    data_from_server: i64,
    trailers: bool,
}

impl Wire {
    /// The server's (local, remote) windows.
    fn server_windows(&self) -> (i64, i64) {
        (
            65_535 + self.updates_from_server - self.data_to_server,
            65_535 + self.updates_to_server - self.data_from_server,
        )
    }

    fn note(&mut self, f: &Frame) {
        match f {
            Frame::WindowUpdate {
                stream_id: 0,
                increment,
            } => self.updates_from_server += i64::from(*increment),
            Frame::Data { data, .. } => self.data_from_server += data.len() as i64,
            Frame::Headers {
                end_stream: true, ..
            } => self.trailers = true,
            _ => {}
        }
    }
}

/// Reads and notes every frame until none comes for `quiet`.
async fn pump(conn: &mut Conn, wire: &mut Wire, quiet: Duration) {
    loop {
        match conn.read_frame(quiet).await {
            Ok(f) => wire.note(&f),
            Err(ReadError::Timeout) => return,
            Err(e) => panic!("reading the server's frames: {e}"),
        }
    }
}

async fn socket_windows(cz: &ChannelzClient, socket_id: i64) -> (Option<i64>, Option<i64>) {
    let data = cz
        .get_socket(Request::new(pb::GetSocketRequest {
            socket_id,
            summary: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .socket
        .unwrap()
        .data
        .unwrap();
    (
        data.local_flow_control_window,
        data.remote_flow_control_window,
    )
}

/// Waits (reading the client's frames meanwhile) until channelz shows the
/// windows the wire makes, and returns them; panics after 10 s.
async fn windows_agree(
    cz: &ChannelzClient,
    socket_id: i64,
    conn: &mut Conn,
    wire: &mut Wire,
) -> (i64, i64) {
    let mut last = (None, None);
    for _ in 0..100 {
        pump(conn, wire, Duration::from_millis(50)).await;
        let (want_local, want_remote) = wire.server_windows();
        last = socket_windows(cz, socket_id).await;
        if last == (Some(want_local), Some(want_remote)) {
            return (want_local, want_remote);
        }
    }
    panic!(
        "channelz shows (local, remote) {last:?}, the wire makes {:?}",
        wire.server_windows()
    );
}

fn port_of(a: Option<&pb::Address>) -> Option<u16> {
    match a?.address.as_ref()? {
        pb::address::Address::TcpipAddress(t) => u16::try_from(t.port).ok(),
        _ => None,
    }
}

/// The id of the one connection of the server listening on `port`.
async fn server_socket_of(cz: &ChannelzClient, port: u16) -> i64 {
    for _ in 0..100 {
        let servers = cz
            .get_servers(Request::new(pb::GetServersRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .server;
        for s in servers {
            for l in &s.listen_socket {
                let sock = cz
                    .get_socket(Request::new(pb::GetSocketRequest {
                        socket_id: l.socket_id,
                        summary: true,
                    }))
                    .await
                    .unwrap()
                    .into_inner()
                    .socket
                    .unwrap();
                if port_of(sock.local.as_ref()) != Some(port) {
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
                if let [one] = refs.as_slice() {
                    return one.socket_id;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no server on port {port} with one connection");
}

#[tokio::test]
async fn server_windows_follow_the_wire() {
    // Channelz is read from a second server, over its own connection.
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let admin_server = ferrogrpc::admin::register(Server::builder()).build();
    let s = admin_server.clone();
    tokio::spawn(async move { s.serve_listener(admin).await });
    let cz = ChannelzClient::new(Channel::from_target(&admin_addr.to_string()).unwrap());

    let gate = Arc::new(Semaphore::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let watched = Server::builder()
        .initial_connection_window_size(CONNECTION_WINDOW)
        .initial_stream_window_size(STREAM_WINDOW)
        .add_service(Hold(Arc::clone(&gate)))
        .build();
    let s = watched.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });

    let mut conn = Conn::handshake(addr).await;
    conn.auto_ack_pings = true;
    let mut wire = Wire::default();
    conn.send_window_update(0, CLIENT_WINDOW_UPDATE)
        .await
        .unwrap();
    wire.updates_to_server += i64::from(CLIENT_WINDOW_UPDATE);
    let socket_id = server_socket_of(&cz, addr.port()).await;

    // At rest: the server's configured window, and the client's.
    let (local, remote) = windows_agree(&cz, socket_id, &mut conn, &mut wire).await;
    assert_eq!(local, i64::from(CONNECTION_WINDOW));
    assert_eq!(remote, 65_535 + i64::from(CLIENT_WINDOW_UPDATE));

    // A call whose DATA the handler does not read yet: one message over
    // FRAMES full frames, the stream ended.
    conn.send_headers(
        1,
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/z.Hold/Take"),
            (":authority", "windows.test"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
        false,
    )
    .await
    .unwrap();
    let sent = FRAMES * FRAME;
    let mut body = vec![0u8];
    body.extend_from_slice(&((sent - 5) as u32).to_be_bytes());
    body.resize(sent, 1);
    for (i, chunk) in body.chunks(FRAME).enumerate() {
        conn.send_data(1, chunk, i == FRAMES - 1).await.unwrap();
    }
    wire.data_to_server += sent as i64;
    let updates_before = wire.updates_from_server;
    let (unread_local, unread_remote) = windows_agree(&cz, socket_id, &mut conn, &mut wire).await;
    assert_eq!(
        wire.updates_from_server, updates_before,
        "no connection WINDOW_UPDATE for data the server has not read"
    );
    assert_eq!(
        unread_local,
        local - sent as i64,
        "unread data shrinks the local window by exactly its size"
    );
    assert_eq!(unread_remote, remote, "the server sent nothing yet");

    // The handler reads everything and answers: the server gives window
    // back (h2 sends WINDOW_UPDATE once enough was read), and its answer
    // uses the client's window.
    gate.add_permits(1);
    for _ in 0..100 {
        pump(&mut conn, &mut wire, Duration::from_millis(50)).await;
        if wire.trailers {
            break;
        }
    }
    assert!(wire.trailers, "the call ended");
    let (read_local, read_remote) = windows_agree(&cz, socket_id, &mut conn, &mut wire).await;
    assert!(
        read_local > unread_local,
        "reading grew the local window: {unread_local} -> {read_local}"
    );
    assert!(read_local <= local);
    assert_eq!(
        read_remote,
        remote - (5 + REPLY) as i64,
        "the answer (one message) took its size from the remote window"
    );
    drop(watched);
    drop(admin_server);
}
