//! `ferrogrpc channelz`: a server's channelz (gRFC A14) as a tree.

use std::{fmt::Write as _, process::ExitCode};

use clap::Args;
use ferrogrpc::{
    channelz::pb::{
        address, channelz_client::ChannelzClient, security, Address, ChannelData, ChannelTrace,
        GetChannelRequest, GetServerSocketsRequest, GetServersRequest, GetSocketRequest,
        GetSubchannelRequest, GetTopChannelsRequest, Security, SocketRef,
    },
    Code, Status,
};

use crate::{connect::ConnectArgs, error::Error};

/// The flags of `channelz`.
#[derive(Args, Debug)]
pub struct ChannelzArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Also print each channel's and subchannel's trace events.
    #[arg(long)]
    trace: bool,
}

/// How many entities a page asks for.
const PAGE: i64 = 100;

/// Runs `channelz`: servers with their listen sockets and connections, then
/// top channels with their subchannels and sockets.
pub async fn run(args: ChannelzArgs) -> Result<ExitCode, Error> {
    let client = ChannelzClient::new(args.connect.channel()?);
    let view = View {
        client,
        args: &args,
        out: String::new(),
    };
    let text = view.render().await.map_err(|status| {
        if status.code() == Code::Unimplemented {
            Error::new(format!(
                "the server at {} does not offer channelz (grpc.channelz.v1.Channelz)",
                args.connect.target
            ))
            .with_exit(crate::error::status_exit(Code::Unimplemented))
        } else {
            Error::rpc(&args.connect.target, "channelz", &status)
        }
    })?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

struct View<'a> {
    client: ChannelzClient,
    args: &'a ChannelzArgs,
    out: String,
}

impl View<'_> {
    async fn render(mut self) -> Result<String, Status> {
        self.servers().await?;
        self.channels().await?;
        Ok(self.out)
    }

    fn line(&mut self, depth: usize, text: impl AsRef<str>) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
        self.out.push_str(text.as_ref());
        self.out.push('\n');
    }

    async fn servers(&mut self) -> Result<(), Status> {
        let mut start = 0;
        loop {
            let page = self
                .client
                .get_servers(
                    self.args
                        .connect
                        .request(GetServersRequest {
                            start_server_id: start,
                            max_results: PAGE,
                        })
                        .map_err(local)?,
                )
                .await?
                .into_inner();
            for server in &page.server {
                let id = server.r#ref.as_ref().map_or(0, |r| r.server_id);
                start = start.max(id + 1);
                let data = server.data.clone().unwrap_or_default();
                self.line(
                    0,
                    format!(
                        "server {id}: calls started {} succeeded {} failed {}",
                        data.calls_started, data.calls_succeeded, data.calls_failed
                    ),
                );
                for listen in &server.listen_socket {
                    self.socket(1, "listen socket", listen).await?;
                }
                self.server_sockets(id).await?;
            }
            if page.end || page.server.is_empty() {
                return Ok(());
            }
        }
    }

    async fn server_sockets(&mut self, server_id: i64) -> Result<(), Status> {
        let mut start = 0;
        loop {
            let page = self
                .client
                .get_server_sockets(
                    self.args
                        .connect
                        .request(GetServerSocketsRequest {
                            server_id,
                            start_socket_id: start,
                            max_results: PAGE,
                        })
                        .map_err(local)?,
                )
                .await?
                .into_inner();
            for socket in &page.socket_ref {
                start = start.max(socket.socket_id + 1);
                self.socket(1, "socket", socket).await?;
            }
            if page.end || page.socket_ref.is_empty() {
                return Ok(());
            }
        }
    }

    async fn socket(&mut self, depth: usize, what: &str, socket: &SocketRef) -> Result<(), Status> {
        let request = GetSocketRequest {
            socket_id: socket.socket_id,
            summary: false,
        };
        let found = self
            .client
            .get_socket(self.args.connect.request(request).map_err(local)?)
            .await;
        let socket = match found {
            Ok(found) => found.into_inner().socket.unwrap_or_default(),
            // Closed since it was listed.
            Err(status) if status.code() == Code::NotFound => return Ok(()),
            Err(status) => return Err(status),
        };
        let id = socket.r#ref.as_ref().map_or(0, |r| r.socket_id);
        let mut text = format!("{what} {id}: {}", address(socket.local.as_ref()));
        if socket.remote.is_some() {
            let _ = write!(text, " <-> {}", address(socket.remote.as_ref()));
        }
        if let Some(security) = describe_security(socket.security.as_ref()) {
            let _ = write!(text, " ({security})");
        }
        self.line(depth, text);
        if what == "listen socket" {
            return Ok(());
        }
        let d = socket.data.unwrap_or_default();
        let mut counts = format!(
            "streams started {} succeeded {} failed {}, messages sent {} received {}, keepalives sent {}",
            d.streams_started,
            d.streams_succeeded,
            d.streams_failed,
            d.messages_sent,
            d.messages_received,
            d.keep_alives_sent
        );
        if let (Some(local), Some(remote)) =
            (d.local_flow_control_window, d.remote_flow_control_window)
        {
            let _ = write!(counts, ", windows local {local} remote {remote}");
        }
        self.line(depth + 1, counts);
        Ok(())
    }

    async fn channels(&mut self) -> Result<(), Status> {
        let mut start = 0;
        loop {
            let page = self
                .client
                .get_top_channels(
                    self.args
                        .connect
                        .request(GetTopChannelsRequest {
                            start_channel_id: start,
                            max_results: PAGE,
                        })
                        .map_err(local)?,
                )
                .await?
                .into_inner();
            for channel in &page.channel {
                let id = channel.r#ref.as_ref().map_or(0, |r| r.channel_id);
                start = start.max(id + 1);
                self.channel_data(0, &format!("channel {id}"), channel.data.as_ref());
                for sub in &channel.channel_ref {
                    self.nested_channel(1, sub.channel_id).await?;
                }
                for sub in &channel.subchannel_ref {
                    self.subchannel(1, sub.subchannel_id).await?;
                }
                for socket in &channel.socket_ref {
                    self.socket(1, "socket", socket).await?;
                }
            }
            if page.end || page.channel.is_empty() {
                return Ok(());
            }
        }
    }

    async fn nested_channel(&mut self, depth: usize, id: i64) -> Result<(), Status> {
        let request = GetChannelRequest { channel_id: id };
        let found = self
            .client
            .get_channel(self.args.connect.request(request).map_err(local)?)
            .await;
        match found {
            Ok(found) => {
                let channel = found.into_inner().channel.unwrap_or_default();
                self.channel_data(depth, &format!("channel {id}"), channel.data.as_ref());
                Ok(())
            }
            Err(status) if status.code() == Code::NotFound => Ok(()),
            Err(status) => Err(status),
        }
    }

    async fn subchannel(&mut self, depth: usize, id: i64) -> Result<(), Status> {
        let request = GetSubchannelRequest { subchannel_id: id };
        let found = self
            .client
            .get_subchannel(self.args.connect.request(request).map_err(local)?)
            .await;
        let subchannel = match found {
            Ok(found) => found.into_inner().subchannel.unwrap_or_default(),
            Err(status) if status.code() == Code::NotFound => return Ok(()),
            Err(status) => return Err(status),
        };
        self.channel_data(depth, &format!("subchannel {id}"), subchannel.data.as_ref());
        for socket in &subchannel.socket_ref {
            self.socket(depth + 1, "socket", socket).await?;
        }
        Ok(())
    }

    fn channel_data(&mut self, depth: usize, what: &str, data: Option<&ChannelData>) {
        let data = data.cloned().unwrap_or_default();
        let state = data
            .state
            .and_then(|s| {
                ferrogrpc::channelz::pb::channel_connectivity_state::State::try_from(s.state).ok()
            })
            .map_or("UNKNOWN", |s| s.as_str_name());
        self.line(
            depth,
            format!(
                "{what}: {} {state}: calls started {} succeeded {} failed {}",
                data.target, data.calls_started, data.calls_succeeded, data.calls_failed
            ),
        );
        if self.args.trace {
            self.trace(depth + 1, data.trace.as_ref());
        }
    }

    fn trace(&mut self, depth: usize, trace: Option<&ChannelTrace>) {
        let Some(trace) = trace else {
            return;
        };
        for event in &trace.events {
            let when = event
                .timestamp
                .as_ref()
                .map(|t| format!("{}.{:09}", t.seconds, t.nanos))
                .unwrap_or_default();
            self.line(depth, format!("[{when}] {}", event.description));
        }
    }
}

/// A local error (bad -H metadata) as a status, to travel the same way.
fn local(err: Error) -> Status {
    Status::invalid_argument(err.to_string())
}

fn address(address: Option<&Address>) -> String {
    match address.and_then(|a| a.address.as_ref()) {
        Some(address::Address::TcpipAddress(tcp)) => {
            let ip = match tcp.ip_address.len() {
                4 => <[u8; 4]>::try_from(tcp.ip_address.as_slice())
                    .map(|b| std::net::IpAddr::from(b).to_string())
                    .unwrap_or_default(),
                16 => <[u8; 16]>::try_from(tcp.ip_address.as_slice())
                    .map(|b| format!("[{}]", std::net::IpAddr::from(b)))
                    .unwrap_or_default(),
                _ => "?".to_string(),
            };
            format!("{ip}:{}", tcp.port)
        }
        Some(address::Address::UdsAddress(uds)) => format!("unix:{}", uds.filename),
        Some(address::Address::OtherAddress(other)) => other.name.clone(),
        None => "?".to_string(),
    }
}

fn describe_security(security: Option<&Security>) -> Option<String> {
    match security?.model.as_ref()? {
        security::Model::Tls(tls) => {
            let cipher = match &tls.cipher_suite {
                Some(security::tls::CipherSuite::StandardName(name)) => name.clone(),
                Some(security::tls::CipherSuite::OtherName(name)) => name.clone(),
                None => "TLS".to_string(),
            };
            Some(cipher)
        }
        security::Model::Other(other) => Some(other.name.clone()),
    }
}
