//! Channelz (gRFC A14) read through its own service on loopback: channels,
//! subchannels, servers and their sockets are listed while they exist and
//! gone once closed; listings page by id.

#![cfg(feature = "channelz")]

use std::time::Duration;

use ferrogrpc::{
    channelz::pb::{self, channelz_client::ChannelzClient},
    client::Channel,
    connectivity::State,
    server::Server,
    Code, Request,
};

async fn serve() -> (std::net::SocketAddr, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = ferrogrpc::admin::register(Server::builder()).build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    (addr, server)
}

async fn client(addr: std::net::SocketAddr) -> ChannelzClient {
    ChannelzClient::new(Channel::from_target(&addr.to_string()).unwrap())
}

/// Every top channel, page by page (`max` per page).
async fn all_top_channels(cz: &ChannelzClient, max: i64) -> (Vec<pb::Channel>, usize) {
    let mut start = 0;
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let page = cz
            .get_top_channels(Request::new(pb::GetTopChannelsRequest {
                start_channel_id: start,
                max_results: max,
            }))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        let ids: Vec<i64> = page.channel.iter().map(id_of).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ascending ids: {ids:?}"
        );
        if max > 0 {
            assert!(page.channel.len() <= max as usize);
        }
        if let Some(last) = ids.last() {
            start = last + 1;
        }
        all.extend(page.channel);
        if page.end {
            return (all, pages);
        }
        assert!(pages < 1000, "paging never ended");
    }
}

fn id_of(c: &pb::Channel) -> i64 {
    c.r#ref.as_ref().unwrap().channel_id
}

fn target_of(c: &pb::Channel) -> &str {
    &c.data.as_ref().unwrap().target
}

#[tokio::test]
async fn top_channels_page_and_disappear_when_closed() {
    let (addr, _server) = serve().await;
    let cz = client(addr).await;
    // Channels to a port nobody listens on: they stay IDLE (no call is
    // made), and their target names them as this test's.
    let channels: Vec<Channel> = (0..250)
        .map(|i| Channel::from_target(&format!("127.0.0.1:{}", 1000 + i)).unwrap())
        .collect();
    let ours = |all: &[pb::Channel]| -> Vec<String> {
        let mut t: Vec<String> = all
            .iter()
            .map(|c| target_of(c).to_string())
            .filter(|t| {
                t.strip_prefix("127.0.0.1:")
                    .and_then(|p| p.parse::<u16>().ok())
                    .is_some_and(|p| (1000..1250).contains(&p))
            })
            .collect();
        t.sort();
        t
    };
    let mut expected: Vec<String> = (0..250)
        .map(|i| format!("127.0.0.1:{}", 1000 + i))
        .collect();
    expected.sort();

    // The server's page size (max_results 0): three pages at least.
    let (all, pages) = all_top_channels(&cz, 0).await;
    assert_eq!(ours(&all), expected);
    assert!(pages >= 3, "250 channels in {pages} pages of at most 100");
    // A small page size.
    let (all, pages) = all_top_channels(&cz, 7).await;
    assert_eq!(ours(&all), expected);
    assert!(pages >= 36);
    // Each is IDLE, and can be read alone.
    let one = all
        .iter()
        .find(|c| target_of(c) == "127.0.0.1:1000")
        .unwrap();
    let state = one.data.as_ref().unwrap().state.as_ref().unwrap().state;
    assert_eq!(state, pb::channel_connectivity_state::State::Idle as i32);
    let id = id_of(one);
    let got = cz
        .get_channel(Request::new(pb::GetChannelRequest { channel_id: id }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(target_of(got.channel.as_ref().unwrap()), "127.0.0.1:1000");

    // A negative page size is refused.
    let err = cz
        .get_top_channels(Request::new(pb::GetTopChannelsRequest {
            start_channel_id: 0,
            max_results: -1,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    drop(channels);
    let (all, _) = all_top_channels(&cz, 0).await;
    assert_eq!(ours(&all), Vec::<String>::new(), "closed channels are gone");
    let err = cz
        .get_channel(Request::new(pb::GetChannelRequest { channel_id: id }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
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

#[tokio::test]
async fn server_listen_socket_connections_and_a_ready_channel() {
    let (addr, server) = serve().await;
    let cz = client(addr).await;

    // A second server, watched through the first one's channelz.
    let (watched_addr, watched) = serve().await;
    let ch = Channel::from_target(&watched_addr.to_string()).unwrap();
    ch.connect().await.unwrap();
    assert_eq!(ch.state(), State::Ready);

    // The watched server: found by its listen socket's port.
    let servers = cz
        .get_servers(Request::new(pb::GetServersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .server;
    let mut found = None;
    for s in &servers {
        for l in &s.listen_socket {
            let sock = cz
                .get_socket(Request::new(pb::GetSocketRequest {
                    socket_id: l.socket_id,
                    summary: false,
                }))
                .await
                .unwrap()
                .into_inner()
                .socket
                .unwrap();
            if port_of(sock.local.as_ref()) == Some(watched_addr.port()) {
                found = Some(s.r#ref.as_ref().unwrap().server_id);
            }
        }
    }
    let server_id = found.expect("the watched server lists its listen socket");

    // Its one connection, from the channel above.
    let sockets = cz
        .get_server_sockets(Request::new(pb::GetServerSocketsRequest {
            server_id,
            start_socket_id: 0,
            max_results: 0,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(sockets.end);
    assert_eq!(sockets.socket_ref.len(), 1, "{sockets:?}");
    let sock = cz
        .get_socket(Request::new(pb::GetSocketRequest {
            socket_id: sockets.socket_ref[0].socket_id,
            summary: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .socket
        .unwrap();
    assert_eq!(port_of(sock.local.as_ref()), Some(watched_addr.port()));
    assert!(port_of(sock.remote.as_ref()).is_some());

    // The channel: READY, with one READY subchannel for the address.
    let target = watched_addr.to_string();
    let (all, _) = all_top_channels(&cz, 0).await;
    let c = all
        .iter()
        .find(|c| target_of(c) == target)
        .expect("the channel is listed");
    let ready = pb::channel_connectivity_state::State::Ready as i32;
    assert_eq!(
        c.data.as_ref().unwrap().state.as_ref().unwrap().state,
        ready
    );
    assert_eq!(c.subchannel_ref.len(), 1);
    let sub = cz
        .get_subchannel(Request::new(pb::GetSubchannelRequest {
            subchannel_id: c.subchannel_ref[0].subchannel_id,
        }))
        .await
        .unwrap()
        .into_inner()
        .subchannel
        .unwrap();
    let data = sub.data.unwrap();
    assert_eq!(data.target, target);
    assert_eq!(data.state.unwrap().state, ready);

    // Closed: the connection goes, then the server and its listen socket.
    drop(ch);
    let socket_id = sockets.socket_ref[0].socket_id;
    eventually("the closed connection's socket removed", || {
        let cz = cz.clone();
        async move {
            let r = cz
                .get_socket(Request::new(pb::GetSocketRequest {
                    socket_id,
                    summary: true,
                }))
                .await;
            matches!(r, Err(s) if s.code() == Code::NotFound).then_some(())
        }
    })
    .await;
    watched.graceful_stop().await;
    drop(watched);
    eventually("the stopped server removed", || {
        let cz = cz.clone();
        async move {
            let r = cz
                .get_server(Request::new(pb::GetServerRequest { server_id }))
                .await;
            matches!(r, Err(s) if s.code() == Code::NotFound).then_some(())
        }
    })
    .await;
    drop(server);
}

fn port_of(a: Option<&pb::Address>) -> Option<u16> {
    match a?.address.as_ref()? {
        pb::address::Address::TcpipAddress(t) => u16::try_from(t.port).ok(),
        _ => None,
    }
}

/// `Ok` answers with the request; `Fail` fails with NOT_FOUND.
struct Answer;

impl ferrogrpc::server::Service for Answer {
    fn name(&self) -> &'static str {
        "z.Answer"
    }

    fn call(
        &self,
        method: &str,
        call: ferrogrpc::server::ServerCall,
    ) -> ferrogrpc::server::BoxFuture {
        let fail = method == "Fail";
        Box::pin(ferrogrpc::server::unary(
            call,
            ferrogrpc::codec::BytesCodec,
            move |req: Request<bytes::Bytes>| async move {
                if fail {
                    Err(ferrogrpc::Status::not_found("no"))
                } else {
                    Ok(ferrogrpc::Response::new(req.into_inner()))
                }
            },
        ))
    }
}

/// The server with `Answer`, and the id channelz gave it (found through
/// its listen socket's port).
async fn serve_answer(
    cz: &ChannelzClient,
    builder: ferrogrpc::server::ServerBuilder,
) -> (std::net::SocketAddr, Server, i64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = builder.add_service(Answer).build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    let id = eventually("the server's listen socket", || {
        let cz = cz.clone();
        async move {
            let servers = cz
                .get_servers(Request::new(pb::GetServersRequest::default()))
                .await
                .unwrap()
                .into_inner()
                .server;
            for s in servers {
                for l in &s.listen_socket {
                    let sock = get_socket(&cz, l.socket_id).await?;
                    if port_of(sock.local.as_ref()) == Some(addr.port()) {
                        return Some(s.r#ref.as_ref().unwrap().server_id);
                    }
                }
            }
            None
        }
    })
    .await;
    (addr, server, id)
}

async fn get_socket(cz: &ChannelzClient, socket_id: i64) -> Option<pb::Socket> {
    cz.get_socket(Request::new(pb::GetSocketRequest {
        socket_id,
        summary: false,
    }))
    .await
    .ok()?
    .into_inner()
    .socket
}

async fn only_socket(cz: &ChannelzClient, server_id: i64) -> pb::Socket {
    let refs = cz
        .get_server_sockets(Request::new(pb::GetServerSocketsRequest {
            server_id,
            start_socket_id: 0,
            max_results: 0,
        }))
        .await
        .unwrap()
        .into_inner()
        .socket_ref;
    assert_eq!(refs.len(), 1, "{refs:?}");
    get_socket(cz, refs[0].socket_id).await.unwrap()
}

async fn answer(ch: &Channel, method: &'static str) -> Result<(), ferrogrpc::Status> {
    ch.unary(
        http::uri::PathAndQuery::from_static(method),
        Request::new(bytes::Bytes::from_static(b"x")),
        ferrogrpc::codec::BytesCodec,
    )
    .await
    .map(drop)
}

#[tokio::test]
async fn server_counts_calls_streams_and_messages() {
    let (addr, _admin) = serve().await;
    let cz = client(addr).await;
    let (watched_addr, _watched, server_id) = serve_answer(&cz, Server::builder()).await;
    let ch = Channel::from_target(&watched_addr.to_string()).unwrap();
    for _ in 0..3 {
        answer(&ch, "/z.Answer/Ok").await.unwrap();
    }
    for _ in 0..2 {
        answer(&ch, "/z.Answer/Fail").await.unwrap_err();
    }
    let server = cz
        .get_server(Request::new(pb::GetServerRequest { server_id }))
        .await
        .unwrap()
        .into_inner()
        .server
        .unwrap();
    let data = server.data.unwrap();
    assert_eq!(
        (data.calls_started, data.calls_succeeded, data.calls_failed),
        (5, 3, 2)
    );
    assert!(data.last_call_started_timestamp.is_some());
    let sock = only_socket(&cz, server_id).await;
    let d = sock.data.unwrap();
    // Every stream ended with its status sent (a failed call too).
    assert_eq!(
        (d.streams_started, d.streams_succeeded, d.streams_failed),
        (5, 5, 0)
    );
    assert_eq!(d.messages_sent, 3, "a response message per OK call");
    assert!(d.last_remote_stream_created_timestamp.is_some());
    assert!(d.last_message_sent_timestamp.is_some());
    assert!(sock.security.is_none(), "plaintext");
}
