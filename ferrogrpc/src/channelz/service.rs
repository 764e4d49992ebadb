//! The `grpc.channelz.v1.Channelz` service: reads the registry and answers
//! in A14's messages.

use std::{collections::BTreeMap, sync::atomic::Ordering, sync::Arc};

use super::{
    lock, pb, registry, state_code, CallCounts, ChannelEntry, ChildRef, Event, ServerEntry,
    Severity, SocketEntry, Trace,
};
use crate::{peer::Addr, Request, Response, Status};

/// The most entries one page of a listing holds; also the page size when
/// the request leaves it to the server (`max_results` 0).
pub const MAX_PAGE: usize = 100;

/// The `grpc.channelz.v1.Channelz` service over this process's registry
/// (gRPC-Go's `channelz/service`). Add it with
/// `ServerBuilder::add_service(channelz::service())`, or with
/// the admin services.
#[derive(Clone, Copy, Debug, Default)]
pub struct Service;

/// The channelz service, ready for
/// [`ServerBuilder::add_service`](crate::server::ServerBuilder::add_service).
pub fn service() -> pb::channelz_server::ChannelzServer<Service> {
    pb::channelz_server::ChannelzServer::new(Service)
}

fn timestamp(nanos: i64) -> Option<prost_types::Timestamp> {
    (nanos > 0).then(|| prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    })
}

fn trace(t: &Trace) -> pb::ChannelTrace {
    let events: Vec<Event> = lock(&t.events).iter().cloned().collect();
    pb::ChannelTrace {
        num_events_logged: t.logged.load(Ordering::Relaxed),
        creation_timestamp: timestamp(t.created),
        events: events
            .into_iter()
            .map(|e| pb::ChannelTraceEvent {
                description: e.description,
                severity: match e.severity {
                    Severity::Info => pb::channel_trace_event::Severity::CtInfo,
                    Severity::Warning => pb::channel_trace_event::Severity::CtWarning,
                    Severity::Error => pb::channel_trace_event::Severity::CtError,
                } as i32,
                timestamp: timestamp(e.at),
                child_ref: e.child.map(|c| match c {
                    ChildRef::Channel(id) => {
                        pb::channel_trace_event::ChildRef::ChannelRef(pb::ChannelRef {
                            channel_id: id,
                            name: String::new(),
                        })
                    }
                    ChildRef::Subchannel(id) => {
                        pb::channel_trace_event::ChildRef::SubchannelRef(pb::SubchannelRef {
                            subchannel_id: id,
                            name: String::new(),
                        })
                    }
                }),
            })
            .collect(),
    }
}

fn channel_data(c: &ChannelEntry, calls: &CallCounts) -> pb::ChannelData {
    let state = c.state.load(Ordering::Relaxed);
    debug_assert!(state >= state_code(crate::connectivity::State::Idle));
    pb::ChannelData {
        state: Some(pb::ChannelConnectivityState {
            state: i32::from(state),
        }),
        target: c.target.clone(),
        trace: Some(trace(&c.trace)),
        calls_started: calls.started.load(Ordering::Relaxed),
        calls_succeeded: calls.succeeded.load(Ordering::Relaxed),
        calls_failed: calls.failed.load(Ordering::Relaxed),
        last_call_started_timestamp: timestamp(calls.last_started.load(Ordering::Relaxed)),
        ..pb::ChannelData::default()
    }
}

fn subchannel_refs(c: &ChannelEntry) -> Vec<pb::SubchannelRef> {
    lock(&c.subchannels)
        .iter()
        .map(|&id| pb::SubchannelRef {
            subchannel_id: id,
            name: String::new(),
        })
        .collect()
}

fn socket_refs(ids: &std::collections::BTreeSet<i64>, r: &super::Registry) -> Vec<pb::SocketRef> {
    ids.iter()
        .map(|&id| pb::SocketRef {
            socket_id: id,
            name: r
                .sockets
                .get(&id)
                .map(|s| socket_name(s))
                .unwrap_or_default(),
        })
        .collect()
}

fn socket_name(s: &SocketEntry) -> String {
    match &s.remote {
        Some(remote) => format!("{} -> {remote}", s.local),
        None => s.local.to_string(),
    }
}

fn channel(c: &ChannelEntry) -> pb::Channel {
    pb::Channel {
        r#ref: Some(pb::ChannelRef {
            channel_id: c.id,
            name: c.target.clone(),
        }),
        data: Some(channel_data(c, &c.calls)),
        channel_ref: Vec::new(),
        subchannel_ref: subchannel_refs(c),
        socket_ref: Vec::new(),
    }
}

fn subchannel(c: &ChannelEntry) -> pb::Subchannel {
    let sockets = lock(&c.sockets).clone();
    pb::Subchannel {
        r#ref: Some(pb::SubchannelRef {
            subchannel_id: c.id,
            name: c.target.clone(),
        }),
        data: Some(channel_data(c, &c.calls)),
        channel_ref: Vec::new(),
        subchannel_ref: Vec::new(),
        socket_ref: socket_refs(&sockets, &registry()),
    }
}

fn server(s: &ServerEntry) -> pb::Server {
    let listen = lock(&s.listen_sockets).clone();
    pb::Server {
        r#ref: Some(pb::ServerRef {
            server_id: s.id,
            name: String::new(),
        }),
        data: Some(pb::ServerData {
            trace: Some(trace(&s.trace)),
            calls_started: s.calls.started.load(Ordering::Relaxed),
            calls_succeeded: s.calls.succeeded.load(Ordering::Relaxed),
            calls_failed: s.calls.failed.load(Ordering::Relaxed),
            last_call_started_timestamp: timestamp(s.calls.last_started.load(Ordering::Relaxed)),
        }),
        listen_socket: socket_refs(&listen, &registry()),
    }
}

fn address(a: &Addr) -> pb::Address {
    use pb::address::{Address as A, OtherAddress, TcpIpAddress, UdsAddress};
    let address = match a {
        Addr::Tcp(sa) => A::TcpipAddress(TcpIpAddress {
            ip_address: match sa.ip() {
                std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
                std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
            },
            port: i32::from(sa.port()),
        }),
        Addr::Unix(path) => A::UdsAddress(UdsAddress {
            filename: path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        }),
        Addr::Unknown => A::OtherAddress(OtherAddress {
            name: a.to_string(),
            value: None,
        }),
    };
    pb::Address {
        address: Some(address),
    }
}

fn socket(s: &SocketEntry, summary: bool) -> pb::Socket {
    let c = &s.counts;
    let load = |a: &std::sync::atomic::AtomicI64| a.load(Ordering::Relaxed);
    let windows = s.flow_windows();
    pb::Socket {
        r#ref: Some(pb::SocketRef {
            socket_id: s.id,
            name: socket_name(s),
        }),
        data: Some(pb::SocketData {
            streams_started: load(&c.streams_started),
            streams_succeeded: load(&c.streams_succeeded),
            streams_failed: load(&c.streams_failed),
            messages_sent: load(&c.messages_sent),
            messages_received: load(&c.messages_received),
            keep_alives_sent: load(&c.keepalives_sent),
            last_local_stream_created_timestamp: timestamp(load(&c.last_local_stream)),
            last_remote_stream_created_timestamp: timestamp(load(&c.last_remote_stream)),
            last_message_sent_timestamp: timestamp(load(&c.last_message_sent)),
            last_message_received_timestamp: timestamp(load(&c.last_message_received)),
            local_flow_control_window: windows.map(|(local, _)| local),
            remote_flow_control_window: windows.map(|(_, remote)| remote),
            option: Vec::new(),
            ..pb::SocketData::default()
        }),
        local: Some(address(&s.local)),
        remote: s.remote.as_ref().map(address),
        security: if summary {
            None
        } else {
            s.tls.as_ref().map(|t| pb::Security {
                model: Some(pb::security::Model::Tls(pb::security::Tls {
                    cipher_suite: Some(pb::security::tls::CipherSuite::StandardName(
                        t.cipher_suite.clone(),
                    )),
                    local_certificate: t.local_certificate.clone(),
                    remote_certificate: t.remote_certificate.clone(),
                })),
            })
        },
        remote_name: s.name.clone(),
    }
}

/// One page of `map`, from `start` on: at most `max` entries (A14: 0 lets
/// the server choose; negative is refused), and whether it is the last.
fn page<T: Clone>(map: &BTreeMap<i64, T>, start: i64, max: i64) -> Result<(Vec<T>, bool), Status> {
    if max < 0 {
        return Err(Status::invalid_argument(format!(
            "max_results must not be negative, got {max}"
        )));
    }
    let size = match usize::try_from(max) {
        Ok(0) => MAX_PAGE,
        Ok(n) => n.min(MAX_PAGE),
        Err(_) => MAX_PAGE,
    };
    let mut items = map.range(start.max(0)..).map(|(_, v)| v.clone());
    let page: Vec<T> = items.by_ref().take(size).collect();
    let end = items.next().is_none();
    Ok((page, end))
}

fn not_found(what: &str, id: i64) -> Status {
    Status::not_found(format!("no {what} with id {id}"))
}

impl pb::channelz_server::Channelz for Service {
    async fn get_top_channels(
        &self,
        request: Request<pb::GetTopChannelsRequest>,
    ) -> Result<Response<pb::GetTopChannelsResponse>, Status> {
        let req = request.into_inner();
        let (entries, end) = page(
            &registry().top_channels,
            req.start_channel_id,
            req.max_results,
        )?;
        Ok(Response::new(pb::GetTopChannelsResponse {
            channel: entries.iter().map(|c| channel(c)).collect(),
            end,
        }))
    }

    async fn get_servers(
        &self,
        request: Request<pb::GetServersRequest>,
    ) -> Result<Response<pb::GetServersResponse>, Status> {
        let req = request.into_inner();
        let (entries, end) = page(&registry().servers, req.start_server_id, req.max_results)?;
        Ok(Response::new(pb::GetServersResponse {
            server: entries.iter().map(|s| server(s)).collect(),
            end,
        }))
    }

    async fn get_server(
        &self,
        request: Request<pb::GetServerRequest>,
    ) -> Result<Response<pb::GetServerResponse>, Status> {
        let id = request.get_ref().server_id;
        let found = registry().servers.get(&id).cloned();
        let s = found.ok_or_else(|| not_found("server", id))?;
        Ok(Response::new(pb::GetServerResponse {
            server: Some(server(&s)),
        }))
    }

    async fn get_server_sockets(
        &self,
        request: Request<pb::GetServerSocketsRequest>,
    ) -> Result<Response<pb::GetServerSocketsResponse>, Status> {
        let req = request.into_inner();
        let r = registry();
        let s = r
            .servers
            .get(&req.server_id)
            .ok_or_else(|| not_found("server", req.server_id))?;
        let ids: BTreeMap<i64, i64> = lock(&s.sockets).iter().map(|&id| (id, id)).collect();
        let (ids, end) = page(&ids, req.start_socket_id, req.max_results)?;
        let refs = ids
            .iter()
            .map(|id| pb::SocketRef {
                socket_id: *id,
                name: r
                    .sockets
                    .get(id)
                    .map(|s| socket_name(s))
                    .unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::GetServerSocketsResponse {
            socket_ref: refs,
            end,
        }))
    }

    async fn get_channel(
        &self,
        request: Request<pb::GetChannelRequest>,
    ) -> Result<Response<pb::GetChannelResponse>, Status> {
        let id = request.get_ref().channel_id;
        let found = registry().top_channels.get(&id).cloned();
        let c = found.ok_or_else(|| not_found("channel", id))?;
        Ok(Response::new(pb::GetChannelResponse {
            channel: Some(channel(&c)),
        }))
    }

    async fn get_subchannel(
        &self,
        request: Request<pb::GetSubchannelRequest>,
    ) -> Result<Response<pb::GetSubchannelResponse>, Status> {
        let id = request.get_ref().subchannel_id;
        let found: Option<Arc<ChannelEntry>> = registry().subchannels.get(&id).cloned();
        let c = found.ok_or_else(|| not_found("subchannel", id))?;
        Ok(Response::new(pb::GetSubchannelResponse {
            subchannel: Some(subchannel(&c)),
        }))
    }

    async fn get_socket(
        &self,
        request: Request<pb::GetSocketRequest>,
    ) -> Result<Response<pb::GetSocketResponse>, Status> {
        let req = request.get_ref();
        let found = registry().sockets.get(&req.socket_id).cloned();
        let s = found.ok_or_else(|| not_found("socket", req.socket_id))?;
        Ok(Response::new(pb::GetSocketResponse {
            socket: Some(socket(&s, req.summary)),
        }))
    }
}
