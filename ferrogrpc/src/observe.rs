//! The per-call observer: feeds stats handlers, interceptors' stream hooks
//! and the binary log from one place. A call has one only when a stats
//! handler or a stream interceptor is registered, or the binary log's
//! filter chose the call; otherwise none of this code runs.

use std::{
    any::Any,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
    time::Instant,
};

use bytes::Bytes;
use http::uri::PathAndQuery;

use crate::{
    encoding::Compressor,
    interceptor::StreamHook,
    metadata::MetadataMap,
    peer::Addr,
    stats::{Attempt, Handlers, Payload, RpcEvent, RpcEventKind},
    status::Status,
};

pub(crate) struct Observer {
    call_id: u64,
    client: bool,
    method: PathAndQuery,
    begin: Instant,
    stats: Option<Handlers>,
    hooks: OnceLock<Vec<Arc<dyn StreamHook>>>,
    ended: AtomicBool,
    /// (client stream, server stream), for the `Begin` of later attempts.
    kind: OnceLock<(bool, bool)>,
    log: Option<CallLog>,
}

/// The binary log of a call (`binarylog` feature); without the feature, a
/// type with no values, so `Option<CallLog>` is always `None` and the
/// logging calls below compile to nothing.
#[cfg(feature = "binarylog")]
pub(crate) use crate::binarylog::CallLog;

/// Stands for the binary log of a call when the feature is off.
#[cfg(not(feature = "binarylog"))]
pub(crate) enum CallLog {}

#[cfg(not(feature = "binarylog"))]
#[allow(clippy::unused_self)]
impl CallLog {
    fn client_header(
        &self,
        _: &MetadataMap,
        _: &str,
        _: Option<&str>,
        _: Option<std::time::Duration>,
        _: Option<&Addr>,
    ) {
        match *self {}
    }
    fn server_header(&self, _: &MetadataMap, _: Option<&Addr>) {
        match *self {}
    }
    fn message(&self, _: bool, _: &[u8]) {
        match *self {}
    }
    fn half_close(&self) {
        match *self {}
    }
    fn trailer(&self, _: &Status, _: Option<&Addr>) {
        match *self {}
    }
    fn cancel(&self) {
        match *self {}
    }
    fn cancelled_unless_trailer(&self) {
        match *self {}
    }
    fn local_status(&self, _: &Status) {
        match *self {}
    }
}

/// Lets typed code hand its messages to the observer as `&dyn Any`.
pub(crate) fn as_any<T: 'static>(message: &T) -> &dyn Any {
    message
}

/// An observer with the function that erases the message type.
pub(crate) type Observed<T> = Option<(Arc<Observer>, fn(&T) -> &dyn Any)>;

impl Observer {
    /// An observer, or `None` when there is nothing to observe for.
    pub(crate) fn new(
        client: bool,
        method: &PathAndQuery,
        stats: Option<&Handlers>,
        hooks_possible: bool,
        log: Option<CallLog>,
    ) -> Option<Arc<Observer>> {
        if stats.is_none() && !hooks_possible && log.is_none() {
            return None;
        }
        Some(Arc::new(Observer {
            call_id: crate::stats::next_call_id(),
            client,
            method: method.clone(),
            begin: Instant::now(),
            stats: stats.cloned(),
            hooks: OnceLock::new(),
            ended: AtomicBool::new(false),
            kind: OnceLock::new(),
            log,
        }))
    }

    /// Binary log: the request headers (sent by a client, received by a
    /// server from `peer`).
    pub(crate) fn log_client_header(
        &self,
        metadata: &MetadataMap,
        authority: Option<&str>,
        timeout: Option<std::time::Duration>,
        peer: Option<&Addr>,
    ) {
        if let Some(log) = &self.log {
            log.client_header(metadata, self.method.path(), authority, timeout, peer);
        }
    }

    /// Binary log: the response headers (`peer`: the server, on a client).
    pub(crate) fn log_server_header(&self, metadata: &MetadataMap, peer: Option<&Addr>) {
        if let Some(log) = &self.log {
            log.server_header(metadata, peer);
        }
    }

    /// Binary log: a message received, serialized and uncompressed.
    pub(crate) fn log_in_message(&self, data: &[u8]) {
        if let Some(log) = &self.log {
            log.message(!self.client, data);
        }
    }

    /// Binary log: a message sent, as its frame; a compressed frame is
    /// decompressed with `compressor` to log the message itself.
    pub(crate) fn log_out_message(&self, frame: &Bytes, compressor: Option<&dyn Compressor>) {
        let Some(log) = &self.log else { return };
        if frame.len() < crate::transport::frame::HEADER_LEN {
            return;
        }
        let body = &frame[crate::transport::frame::HEADER_LEN..];
        match (frame[0], compressor) {
            (1, Some(c)) => match crate::transport::frame::decompress(c, body, usize::MAX) {
                Ok(plain) => log.message(self.client, &plain),
                Err(_) => log.message(self.client, body),
            },
            _ => log.message(self.client, body),
        }
    }

    /// Binary log: the client will send no more.
    pub(crate) fn log_half_close(&self) {
        if let Some(log) = &self.log {
            log.half_close();
        }
    }

    /// Binary log: the call's status (`peer`: the server, on a client).
    pub(crate) fn log_trailer(&self, status: &Status, peer: Option<&Addr>) {
        if let Some(log) = &self.log {
            log.trailer(status, peer);
        }
    }

    /// Binary log: a call ended with OK and these trailers (client).
    pub(crate) fn log_ok_trailer(&self, trailers: &MetadataMap, peer: Option<&Addr>) {
        if let Some(log) = &self.log {
            let status = Status::new(crate::Code::Ok, "").with_metadata(trailers.clone());
            log.trailer(&status, peer);
        }
    }

    /// Binary log: the client cancelled the call.
    pub(crate) fn log_cancel(&self) {
        if let Some(log) = &self.log {
            log.cancel();
        }
    }

    /// Binary log: the client gave up a call that had not ended.
    pub(crate) fn log_cancel_unless_ended(&self) {
        if !self.ended.load(Ordering::Acquire) {
            self.log_cancel();
        }
    }

    fn emit(&self, kind: RpcEventKind<'_>) {
        if let Some(handlers) = &self.stats {
            let event = RpcEvent {
                call_id: self.call_id,
                client: self.client,
                method: self.method.path(),
                time: Instant::now(),
                kind,
            };
            for h in handlers.iter() {
                h.handle_rpc(&event);
            }
        }
    }

    fn hooks(&self) -> &[Arc<dyn StreamHook>] {
        self.hooks.get().map_or(&[], Vec::as_slice)
    }

    pub(crate) fn set_hooks(&self, hooks: Vec<Arc<dyn StreamHook>>) {
        let _ = self.hooks.set(hooks);
    }

    pub(crate) fn begin(&self, client_stream: bool, server_stream: bool) {
        let _ = self.kind.set((client_stream, server_stream));
        self.emit(RpcEventKind::Begin {
            client_stream,
            server_stream,
            attempt: Attempt::Original,
            previous_attempts: 0,
        });
    }

    /// Another attempt of the call begins (client, gRFC A6).
    pub(crate) fn begin_attempt(&self, attempt: Attempt, previous_attempts: u32) {
        let (client_stream, server_stream) = self.kind.get().copied().unwrap_or_default();
        self.emit(RpcEventKind::Begin {
            client_stream,
            server_stream,
            attempt,
            previous_attempts,
        });
    }

    /// An attempt that is not the call's last ended (for stats handlers
    /// only; stream hooks see the call end once).
    pub(crate) fn end_attempt(&self, result: Result<(), &Status>) {
        self.emit(RpcEventKind::End {
            result,
            begin: self.begin,
        });
    }

    /// The attempt that failed with `failed` is followed by another.
    pub(crate) fn next_attempt(&self, failed: &Status, attempt: Attempt, previous_attempts: u32) {
        self.end_attempt(Err(failed));
        self.begin_attempt(attempt, previous_attempts);
    }

    pub(crate) fn in_header(&self, metadata: &MetadataMap) {
        self.emit(RpcEventKind::InHeader { metadata });
    }

    pub(crate) fn out_header(&self, metadata: &MetadataMap) {
        self.emit(RpcEventKind::OutHeader { metadata });
    }

    pub(crate) fn in_trailer(&self, metadata: &MetadataMap) {
        self.emit(RpcEventKind::InTrailer { metadata });
    }

    pub(crate) fn out_trailer(&self, metadata: &MetadataMap) {
        self.emit(RpcEventKind::OutTrailer { metadata });
    }

    /// A message arrived; hooks may refuse it.
    pub(crate) fn in_payload(&self, message: &dyn Any, payload: Payload) -> Result<(), Status> {
        self.emit(RpcEventKind::InPayload(payload));
        for hook in self.hooks() {
            hook.on_recv(message)?;
        }
        Ok(())
    }

    /// A message is about to go out; hooks may refuse it.
    pub(crate) fn before_send(&self, message: &dyn Any) -> Result<(), Status> {
        for hook in self.hooks() {
            hook.on_send(message)?;
        }
        Ok(())
    }

    /// A message went out.
    pub(crate) fn out_payload(&self, payload: Payload) {
        self.emit(RpcEventKind::OutPayload(payload));
    }

    /// The call ended. Only the first report counts.
    pub(crate) fn end(&self, result: Result<(), &Status>) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        for hook in self.hooks() {
            hook.on_finish(result);
        }
        // A server call that ends cancelled without sending its status was
        // cancelled by the client (A16's CANCEL, "detected" on the server).
        // A client call that failed with no trailer logged: the status was
        // made here (A16 still logs it as the trailer).
        match (&self.log, self.client, result) {
            (Some(log), false, Err(status)) if status.code() == crate::Code::Cancelled => {
                log.cancelled_unless_trailer();
            }
            (Some(log), true, Err(status)) => log.local_status(status),
            _ => {}
        }
        self.emit(RpcEventKind::End {
            result,
            begin: self.begin,
        });
    }
}

/// The sizes of an encoded frame.
pub(crate) fn payload_of(frame: &[u8], plain_len: usize) -> Payload {
    Payload {
        length: plain_len,
        wire_length: frame.len(),
        compressed: frame.first() == Some(&1),
    }
}
