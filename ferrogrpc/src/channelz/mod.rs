//! Channelz (gRFC A14), as gRPC-Go's `channelz` package: what each channel,
//! subchannel, server and socket of this process is doing now, served by
//! the `grpc.channelz.v1.Channelz` service ([`service`]).
//!
//! ```no_run
//! use ferrogrpc::server::Server;
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = Server::builder().add_service(ferrogrpc::channelz::service()).build();
//! # server.serve("127.0.0.1:50051").await }
//! ```
//!
//! Every entity is registered when it is created and removed when it is
//! closed; its id is positive and unique in the process (one sequence for
//! all kinds, as gRPC-Go). Counters are atomics updated where the event
//! happens; the registry's lock is taken only when an entity comes or goes
//! and when the service reads it.
//!
//! This is the `channelz` feature (on by default).

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::{
        atomic::{AtomicI64, AtomicU8, Ordering},
        Arc, Mutex, MutexGuard, OnceLock,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{connectivity::State, peer::Addr};

mod service;

pub use service::{service, Service};

/// The code generated from `grpc/channelz/v1/channelz.proto`: the messages,
/// the service trait and its server, and a client.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!("../generated/grpc.channelz.v1.rs");
}

/// How many trace events a channel, subchannel or server keeps (the oldest
/// go first; `num_events_logged` still counts them).
pub const TRACE_EVENTS: usize = 64;

static NEXT_ID: AtomicI64 = AtomicI64::new(1);

/// Now, as nanoseconds since the Unix epoch (0, "never", before it).
fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Calls started, succeeded and failed, and when the last one started.
#[derive(Debug, Default)]
pub(crate) struct CallCounts {
    started: AtomicI64,
    succeeded: AtomicI64,
    failed: AtomicI64,
    last_started: AtomicI64,
}

impl CallCounts {
    /// A call started.
    pub(crate) fn started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.last_started.store(now_nanos(), Ordering::Relaxed);
    }

    /// A call ended, with OK or not.
    pub(crate) fn ended(&self, ok: bool) {
        let counter = if ok { &self.succeeded } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One call counted on a channel: started when made, succeeded or failed
/// once, failed if dropped before it was told (as gRPC-Go counts a call
/// its caller abandons). `C` is a reference for a call that lives in one
/// function (unary), an `Arc` for a stream that outlives it.
#[derive(Debug)]
pub(crate) struct CallGuard<C: std::ops::Deref<Target = ChannelEntry>> {
    entry: Option<C>,
}

impl<C: std::ops::Deref<Target = ChannelEntry>> CallGuard<C> {
    /// A call on `entry` starts.
    pub(crate) fn start(entry: C) -> CallGuard<C> {
        entry.calls.started();
        CallGuard { entry: Some(entry) }
    }

    /// The call ended, with OK or not; later ends are ignored.
    pub(crate) fn end(&mut self, ok: bool) {
        if let Some(entry) = self.entry.take() {
            entry.calls.ended(ok);
        }
    }
}

impl<C: std::ops::Deref<Target = ChannelEntry>> Drop for CallGuard<C> {
    fn drop(&mut self) {
        self.end(false);
    }
}

/// How bad a trace event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Severity {
    Info,
    Warning,
    // No event of ours is an error yet.
    #[allow(dead_code)]
    Error,
}

/// The child a trace event is about (a subchannel created, say).
// No channel has child channels yet (A14's nested channels).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildRef {
    Channel(i64),
    Subchannel(i64),
}

#[derive(Clone, Debug)]
struct Event {
    description: String,
    severity: Severity,
    at: i64,
    child: Option<ChildRef>,
}

/// A bounded ring of recent events.
#[derive(Debug)]
pub(crate) struct Trace {
    created: i64,
    logged: AtomicI64,
    events: Mutex<VecDeque<Event>>,
}

impl Trace {
    fn new() -> Trace {
        Trace {
            created: now_nanos(),
            logged: AtomicI64::new(0),
            events: Mutex::new(VecDeque::new()),
        }
    }

    /// Records an event.
    pub(crate) fn add(&self, severity: Severity, description: impl Into<String>) {
        self.push(severity, description.into(), None);
    }

    /// Records an event about a child.
    pub(crate) fn add_about(&self, severity: Severity, description: String, child: ChildRef) {
        self.push(severity, description, Some(child));
    }

    fn push(&self, severity: Severity, description: String, child: Option<ChildRef>) {
        self.logged.fetch_add(1, Ordering::Relaxed);
        let mut events = lock(&self.events);
        if events.len() == TRACE_EVENTS {
            events.pop_front();
        }
        events.push_back(Event {
            description,
            severity,
            at: now_nanos(),
            child,
        });
    }
}

/// A channel or a subchannel.
#[derive(Debug)]
pub(crate) struct ChannelEntry {
    id: i64,
    target: String,
    state: AtomicU8,
    pub(crate) calls: CallCounts,
    pub(crate) trace: Trace,
    /// The subchannels of a channel.
    subchannels: Mutex<BTreeSet<i64>>,
    /// The sockets of a subchannel (its current connection).
    sockets: Mutex<BTreeSet<i64>>,
}

impl ChannelEntry {
    /// The entity's id.
    #[allow(dead_code)]
    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    /// Counts a call from its start: started now, and, unless told how it
    /// ended first, failed when the guard is dropped (a call given up).
    pub(crate) fn count_call(&self) -> CallGuard<&ChannelEntry> {
        CallGuard::start(self)
    }

    /// The connectivity state changed.
    pub(crate) fn set_state(&self, state: State) {
        let code = state_code(state);
        if self.state.swap(code, Ordering::Relaxed) != code {
            self.trace.add(
                Severity::Info,
                format!("connectivity state changed to {state:?}"),
            );
        }
    }
}

fn state_code(state: State) -> u8 {
    match state {
        State::Idle => 1,
        State::Connecting => 2,
        State::Ready => 3,
        State::TransientFailure => 4,
        State::Shutdown => 5,
    }
}

/// A server.
#[derive(Debug)]
pub(crate) struct ServerEntry {
    id: i64,
    pub(crate) calls: CallCounts,
    pub(crate) trace: Trace,
    listen_sockets: Mutex<BTreeSet<i64>>,
    sockets: Mutex<BTreeSet<i64>>,
}

impl ServerEntry {
    /// The entity's id.
    #[allow(dead_code)]
    pub(crate) fn id(&self) -> i64 {
        self.id
    }
}

/// What a socket counts (A14's SocketData).
#[derive(Debug, Default)]
pub(crate) struct SocketCounts {
    pub(crate) streams_started: AtomicI64,
    pub(crate) streams_succeeded: AtomicI64,
    pub(crate) streams_failed: AtomicI64,
    pub(crate) messages_sent: AtomicI64,
    pub(crate) messages_received: AtomicI64,
    pub(crate) keepalives_sent: AtomicI64,
    pub(crate) last_local_stream: AtomicI64,
    pub(crate) last_remote_stream: AtomicI64,
    pub(crate) last_message_sent: AtomicI64,
    pub(crate) last_message_received: AtomicI64,
}

/// The TLS of a socket, when it has it.
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsData {
    /// The cipher suite's standard (RFC) name.
    pub(crate) cipher_suite: String,
    /// This side's certificate (DER), if it sent one.
    pub(crate) local_certificate: Vec<u8>,
    /// The peer's certificate (DER), if it sent one.
    pub(crate) remote_certificate: Vec<u8>,
}

/// Where a connection's flow-control windows are read from, when channelz
/// asks (the transport's `ConnSignals`).
pub(crate) trait FlowWindows: Send + Sync {
    /// `(local, remote)`: how much more the peer may send, and this side.
    fn flow_windows(&self) -> Option<(i64, i64)>;
}

/// A connection, or a listening socket.
#[derive(Debug)]
pub(crate) struct SocketEntry {
    id: i64,
    name: String,
    local: Addr,
    remote: Option<Addr>,
    tls: Option<TlsData>,
    pub(crate) counts: SocketCounts,
    /// The connection's windows, while it lives (weak: the connection
    /// holds its socket, not the other way round).
    windows: OnceLock<std::sync::Weak<dyn FlowWindows>>,
}

impl SocketEntry {
    /// The entity's id.
    #[allow(dead_code)]
    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    /// Where this connection's flow-control windows are read (once).
    pub(crate) fn set_flow_windows(&self, source: std::sync::Weak<dyn FlowWindows>) {
        let _ = self.windows.set(source);
    }

    /// The connection's flow-control windows, if it has them.
    pub(crate) fn flow_windows(&self) -> Option<(i64, i64)> {
        self.windows.get()?.upgrade()?.flow_windows()
    }
}

#[derive(Debug, Default)]
struct Registry {
    top_channels: BTreeMap<i64, Arc<ChannelEntry>>,
    subchannels: BTreeMap<i64, Arc<ChannelEntry>>,
    servers: BTreeMap<i64, Arc<ServerEntry>>,
    sockets: BTreeMap<i64, Arc<SocketEntry>>,
}

fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    lock(REGISTRY.get_or_init(Mutex::default))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where an entity sits, so dropping its handle takes it out of the
/// registry and off its parent's list.
#[derive(Clone, Copy, Debug)]
enum Place {
    TopChannel,
    Subchannel { channel: i64 },
    Server,
    ListenSocket { server: i64 },
    ServerSocket { server: i64 },
    ClientSocket { subchannel: i64 },
}

/// An entity's registration: derefs to its entry; dropping it removes the
/// entity (it is closed).
#[derive(Debug)]
pub(crate) struct Handle<T> {
    entry: Arc<T>,
    id: i64,
    place: Place,
}

impl<T> Handle<T> {
    /// The entry, shared.
    pub(crate) fn share(&self) -> Arc<T> {
        Arc::clone(&self.entry)
    }
}

impl<T> std::ops::Deref for Handle<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.entry
    }
}

impl<T> Drop for Handle<T> {
    fn drop(&mut self) {
        let mut r = registry();
        let id = self.id;
        match self.place {
            Place::TopChannel => {
                r.top_channels.remove(&id);
            }
            Place::Subchannel { channel } => {
                r.subchannels.remove(&id);
                if let Some(parent) = r.top_channels.get(&channel) {
                    lock(&parent.subchannels).remove(&id);
                    parent.trace.add_about(
                        Severity::Info,
                        format!("subchannel {id} deleted"),
                        ChildRef::Subchannel(id),
                    );
                }
            }
            Place::Server => {
                r.servers.remove(&id);
            }
            Place::ListenSocket { server } => {
                r.sockets.remove(&id);
                if let Some(parent) = r.servers.get(&server) {
                    lock(&parent.listen_sockets).remove(&id);
                }
            }
            Place::ServerSocket { server } => {
                r.sockets.remove(&id);
                if let Some(parent) = r.servers.get(&server) {
                    lock(&parent.sockets).remove(&id);
                }
            }
            Place::ClientSocket { subchannel } => {
                r.sockets.remove(&id);
                if let Some(parent) = r.subchannels.get(&subchannel) {
                    lock(&parent.sockets).remove(&id);
                }
            }
        }
    }
}

fn new_channel(target: &str) -> ChannelEntry {
    ChannelEntry {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        target: target.to_string(),
        state: AtomicU8::new(state_code(State::Idle)),
        calls: CallCounts::default(),
        trace: Trace::new(),
        subchannels: Mutex::default(),
        sockets: Mutex::default(),
    }
}

/// Registers a channel the application made.
pub(crate) fn register_channel(target: &str) -> Handle<ChannelEntry> {
    let entry = Arc::new(new_channel(target));
    entry.trace.add(Severity::Info, "channel created");
    let id = entry.id;
    registry().top_channels.insert(id, Arc::clone(&entry));
    Handle {
        entry,
        id,
        place: Place::TopChannel,
    }
}

/// Registers a subchannel of `channel`, for `address`.
pub(crate) fn register_subchannel(channel: &ChannelEntry, address: &str) -> Handle<ChannelEntry> {
    let entry = Arc::new(new_channel(address));
    entry.trace.add(Severity::Info, "subchannel created");
    let id = entry.id;
    let mut r = registry();
    r.subchannels.insert(id, Arc::clone(&entry));
    lock(&channel.subchannels).insert(id);
    drop(r);
    channel.trace.add_about(
        Severity::Info,
        format!("subchannel {id} created for {address}"),
        ChildRef::Subchannel(id),
    );
    Handle {
        entry,
        id,
        place: Place::Subchannel {
            channel: channel.id,
        },
    }
}

/// Registers a server.
pub(crate) fn register_server() -> Handle<ServerEntry> {
    let entry = Arc::new(ServerEntry {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        calls: CallCounts::default(),
        trace: Trace::new(),
        listen_sockets: Mutex::default(),
        sockets: Mutex::default(),
    });
    entry.trace.add(Severity::Info, "server created");
    let id = entry.id;
    registry().servers.insert(id, Arc::clone(&entry));
    Handle {
        entry,
        id,
        place: Place::Server,
    }
}

fn new_socket(
    name: String,
    local: Addr,
    remote: Option<Addr>,
    tls: Option<TlsData>,
) -> SocketEntry {
    SocketEntry {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        name,
        local,
        remote,
        tls,
        counts: SocketCounts::default(),
        windows: OnceLock::new(),
    }
}

/// Registers a socket `server` listens on.
pub(crate) fn register_listen_socket(server: &ServerEntry, local: Addr) -> Handle<SocketEntry> {
    let entry = Arc::new(new_socket(String::new(), local, None, None));
    let id = entry.id;
    let mut r = registry();
    r.sockets.insert(id, Arc::clone(&entry));
    lock(&server.listen_sockets).insert(id);
    drop(r);
    Handle {
        entry,
        id,
        place: Place::ListenSocket { server: server.id },
    }
}

/// Registers a connection `server` accepted.
pub(crate) fn register_server_socket(
    server: &ServerEntry,
    local: Addr,
    remote: Addr,
    tls: Option<TlsData>,
) -> Handle<SocketEntry> {
    let entry = Arc::new(new_socket(String::new(), local, Some(remote), tls));
    let id = entry.id;
    let mut r = registry();
    r.sockets.insert(id, Arc::clone(&entry));
    lock(&server.sockets).insert(id);
    drop(r);
    Handle {
        entry,
        id,
        place: Place::ServerSocket { server: server.id },
    }
}

/// A server connection's channelz: its socket, and the server whose calls
/// it counts. Each stream counts on both.
#[derive(Debug)]
pub(crate) struct ServerConn {
    socket: Handle<SocketEntry>,
    server: Arc<ServerEntry>,
}

impl ServerConn {
    /// Registers a connection `server` accepted.
    pub(crate) fn new(
        server: &Arc<ServerEntry>,
        local: Addr,
        remote: Addr,
        tls: Option<TlsData>,
    ) -> ServerConn {
        ServerConn {
            socket: register_server_socket(server, local, remote, tls),
            server: Arc::clone(server),
        }
    }

    /// The connection's socket.
    pub(crate) fn socket(&self) -> &SocketEntry {
        &self.socket
    }

    /// The client started a stream (a call).
    pub(crate) fn stream_started(&self) {
        let now = now_nanos();
        let c = &self.socket.counts;
        c.streams_started.fetch_add(1, Ordering::Relaxed);
        c.last_remote_stream.store(now, Ordering::Relaxed);
        let calls = &self.server.calls;
        calls.started.fetch_add(1, Ordering::Relaxed);
        calls.last_started.store(now, Ordering::Relaxed);
    }

    /// A stream ended: `status_sent` when the server sent its status (end
    /// of stream), `ok` when that status was OK.
    pub(crate) fn stream_ended(&self, status_sent: bool, ok: bool) {
        self.socket.counts.stream_ended(status_sent);
        self.server.calls.ended(ok);
    }

    /// A message went out.
    pub(crate) fn message_sent(&self) {
        self.socket.counts.message_sent();
    }

    /// A message came in (the handler gets it next).
    pub(crate) fn message_received(&self) {
        self.socket.counts.message_received();
    }

    /// A keepalive ping went out.
    pub(crate) fn keepalive_sent(&self) {
        self.socket.counts.keepalive_sent();
    }
}

impl SocketCounts {
    /// A stream ended: succeeded when its peer or this side ended it with
    /// a status (`ended`), failed when it was reset or its connection went.
    fn stream_ended(&self, ended: bool) {
        let stream = if ended {
            &self.streams_succeeded
        } else {
            &self.streams_failed
        };
        stream.fetch_add(1, Ordering::Relaxed);
    }

    fn keepalive_sent(&self) {
        self.keepalives_sent.fetch_add(1, Ordering::Relaxed);
    }

    fn message_sent(&self) {
        self.messages_sent.fetch_add(1, Ordering::Relaxed);
        self.last_message_sent.store(now_nanos(), Ordering::Relaxed);
    }

    fn message_received(&self) {
        self.messages_received.fetch_add(1, Ordering::Relaxed);
        self.last_message_received
            .store(now_nanos(), Ordering::Relaxed);
    }
}

/// A client connection's channelz: its socket, and the subchannel it
/// belongs to, which counts each attempt (stream) made on it as a call, as
/// gRPC-Go's subchannels count the attempts picked for them. The driver
/// task holds the socket's [`Handle`] and drops it when the connection
/// ends; this only counts, so a stream that outlives its connection counts
/// on an entry no one lists.
#[derive(Debug)]
pub(crate) struct ClientConn {
    socket: Arc<SocketEntry>,
    subchannel: Arc<ChannelEntry>,
}

impl ClientConn {
    /// The counters of `socket`, a connection of `subchannel`.
    pub(crate) fn new(socket: Arc<SocketEntry>, subchannel: Arc<ChannelEntry>) -> ClientConn {
        ClientConn { socket, subchannel }
    }

    /// An attempt picked this connection: a call of its subchannel.
    pub(crate) fn attempt_started(&self) {
        self.subchannel.calls.started();
    }

    /// The attempt's stream is open (its request headers went out).
    pub(crate) fn stream_started(&self) {
        let c = &self.socket.counts;
        c.streams_started.fetch_add(1, Ordering::Relaxed);
        c.last_local_stream.store(now_nanos(), Ordering::Relaxed);
    }

    /// The attempt ended before it had a stream.
    pub(crate) fn attempt_failed(&self) {
        self.subchannel.calls.ended(false);
    }

    /// The attempt's stream ended: `end_stream` when the server ended it
    /// (END_STREAM, whatever the status; gRPC-Go's `eosReceived`), not when
    /// it was reset or its connection went; `ok` when its status was OK.
    pub(crate) fn stream_ended(&self, end_stream: bool, ok: bool) {
        self.socket.counts.stream_ended(end_stream);
        self.subchannel.calls.ended(ok);
    }

    /// A message went out.
    pub(crate) fn message_sent(&self) {
        self.socket.counts.message_sent();
    }

    /// A message came in.
    pub(crate) fn message_received(&self) {
        self.socket.counts.message_received();
    }

    /// A keepalive ping went out.
    pub(crate) fn keepalive_sent(&self) {
        self.socket.counts.keepalive_sent();
    }
}

/// The TLS data channelz shows for a connection: the cipher suite under its
/// standard name, and the certificates.
pub(crate) fn tls_data(info: &crate::credentials::tls::TlsInfo) -> TlsData {
    // rustls names TLS 1.3 suites `TLS13_…`; the RFC names are `TLS_…`.
    let name = match info.cipher_suite.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => info.cipher_suite.clone(),
    };
    TlsData {
        cipher_suite: name,
        local_certificate: info
            .local_certificate
            .as_ref()
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default(),
        remote_certificate: info
            .peer_certificates
            .first()
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default(),
    }
}

/// Registers a connection a subchannel made.
pub(crate) fn register_client_socket(
    subchannel: &ChannelEntry,
    name: String,
    local: Addr,
    remote: Addr,
    tls: Option<TlsData>,
) -> Handle<SocketEntry> {
    let entry = Arc::new(new_socket(name, local, Some(remote), tls));
    let id = entry.id;
    let mut r = registry();
    r.sockets.insert(id, Arc::clone(&entry));
    lock(&subchannel.sockets).insert(id);
    drop(r);
    Handle {
        entry,
        id,
        place: Place::ClientSocket {
            subchannel: subchannel.id,
        },
    }
}
