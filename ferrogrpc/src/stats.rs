//! Stats handlers, as gRPC-Go's `stats` package: observers that see every
//! event of every call and connection — for metrics, tracing and logging.
//!
//! Register handlers with [`ServerBuilder::stats_handler`](crate::server::ServerBuilder::stats_handler)
//! and [`ChannelBuilder::stats_handler`](crate::client::ChannelBuilder::stats_handler).
//! Several may be registered; each sees every event, in registration order.
//! With none registered, calls do no stats work at all.
//!
//! Events of one call, in order:
//! - [`RpcEventKind::Begin`]
//! - client: `OutHeader`, then `OutPayload` per request message; server:
//!   `InHeader`, then `InPayload` per request message
//! - the response side: `OutHeader`/`InHeader` (when headers are sent), then
//!   `OutPayload`/`InPayload` per response message, then `OutTrailer`/`InTrailer`
//! - [`RpcEventKind::End`], exactly once, with the call's outcome.
//!
//! A client call that is retried or hedged (gRFC A6) reports a `Begin` and
//! an `End` per attempt, each `Begin` saying which [`Attempt`] it is; the
//! last `End` is the call's outcome. Interceptors see the call once.
//!
//! (Request and response events interleave on streams.) Handlers run on the
//! call's task and must be quick and must not block.

use std::time::Instant;

use crate::{metadata::MetadataMap, peer::Addr, status::Status};

/// Observes calls and connections.
pub trait Handler: Send + Sync + 'static {
    /// Called for each event of each call.
    fn handle_rpc(&self, event: &RpcEvent<'_>);

    /// Called when a connection begins and ends. Default: nothing.
    fn handle_conn(&self, event: &ConnEvent<'_>) {
        let _ = event;
    }
}

/// One event of one call.
#[derive(Debug)]
#[non_exhaustive]
pub struct RpcEvent<'a> {
    /// Identifies the call among all calls of this process; the same for all
    /// of its events.
    pub call_id: u64,
    /// Whether this side is the client.
    pub client: bool,
    /// The full method, `/package.Service/Method`.
    pub method: &'a str,
    /// When the event happened.
    pub time: Instant,
    /// What happened.
    pub kind: RpcEventKind<'a>,
}

/// What happened in a call.
#[derive(Debug)]
#[non_exhaustive]
pub enum RpcEventKind<'a> {
    /// The call began, or (on a client) another attempt of it: a call
    /// that is retried or hedged (gRFC A6) reports a `Begin`/`End` pair per
    /// attempt, all with the call's id; the last `End` is the call's
    /// outcome. Interceptors see the call once.
    #[non_exhaustive]
    Begin {
        /// Whether the client sends a stream of messages.
        client_stream: bool,
        /// Whether the server sends a stream of messages.
        server_stream: bool,
        /// Which kind of attempt this is.
        attempt: Attempt,
        /// The attempts of the call made before this one (as sent in
        /// `grpc-previous-rpc-attempts`; transparent retries are not
        /// counted).
        previous_attempts: u32,
    },
    /// Headers were received (request headers on a server, response headers
    /// on a client).
    InHeader {
        /// The metadata in them.
        metadata: &'a MetadataMap,
    },
    /// Headers were sent.
    OutHeader {
        /// The metadata in them.
        metadata: &'a MetadataMap,
    },
    /// A message was received.
    InPayload(Payload),
    /// A message was sent.
    OutPayload(Payload),
    /// Trailers were received (client).
    InTrailer {
        /// The trailing metadata.
        metadata: &'a MetadataMap,
    },
    /// Trailers were sent (server).
    OutTrailer {
        /// The trailing metadata.
        metadata: &'a MetadataMap,
    },
    /// The call ended: `Ok` with status OK, or the error status.
    End {
        /// The outcome.
        result: Result<(), &'a Status>,
        /// When the call began.
        begin: Instant,
    },
}

/// The kind of a call attempt, as [`RpcEventKind::Begin`] reports it
/// (gRPC-Go's `Begin.IsTransparentRetryAttempt`, with retries and hedges
/// told apart too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attempt {
    /// The call's first attempt (and every server-side call).
    Original,
    /// A retry under the service config's retry policy.
    Retry,
    /// A hedge under the service config's hedging policy.
    Hedge,
    /// A transparent retry of an attempt the server never processed.
    TransparentRetry,
}

/// Sizes of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Payload {
    /// The encoded message, uncompressed.
    pub length: usize,
    /// What went over the wire: the 5-byte prefix plus the (possibly
    /// compressed) message.
    pub wire_length: usize,
    /// Whether the message was compressed on the wire.
    pub compressed: bool,
}

/// A connection event.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnEvent<'a> {
    /// A connection was established (after the TLS handshake, if any).
    Begin {
        /// Whether this side is the client.
        client: bool,
        /// The remote address.
        remote_addr: &'a Addr,
    },
    /// A connection ended.
    End {
        /// Whether this side is the client.
        client: bool,
        /// The remote address.
        remote_addr: &'a Addr,
    },
}

/// The registered handlers of a server or channel.
pub(crate) type Handlers = std::sync::Arc<[std::sync::Arc<dyn Handler>]>;

/// A new call id, unique within the process.
pub(crate) fn next_call_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Emits a connection event to every handler.
pub(crate) fn conn_event(handlers: &Option<Handlers>, event: &ConnEvent<'_>) {
    if let Some(handlers) = handlers {
        for h in handlers.iter() {
            h.handle_conn(event);
        }
    }
}
