//! The state of one call shared by its driver, its
//! [`ResponseSink`](super::ResponseSink) and its
//! [`CallContext`](crate::call_context::CallContext).

use std::{
    borrow::Cow,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use http::{uri::PathAndQuery, HeaderValue};

use super::CallSettings;
use crate::{
    call_context::{CallSide, ContextCore},
    metadata::MetadataMap,
    observe::Observer,
    status::Status,
    transport::{frame::SendCompression, ServerSend},
};

/// The per-call state a handler's [`CallContext`], its
/// [`ResponseSink`](super::ResponseSink) and the driver that supervises the
/// call share. The lock is per call and never held across an await, so it
/// is not contended.
pub(super) struct CallShared {
    state: Mutex<SinkState>,
    core: ContextCore,
}

/// What is sent, or still to send, on the call.
pub(super) struct SinkState {
    pub(super) send: ServerSend,
    /// Header metadata set by the handler and not sent yet.
    pub(super) headers: MetadataMap,
    pub(super) trailers: MetadataMap,
    pub(super) settings: CallSettings,
    pub(super) accept: Option<HeaderValue>,
    /// The handler's choice of algorithm, until headers go out.
    pub(super) requested: Option<&'static str>,
    /// The algorithm in use, decided when headers go out.
    pub(super) compression: Option<SendCompression>,
    /// Per-message switch: whether the next messages may be compressed.
    pub(super) compress_messages: bool,
    pub(super) observer: Option<Arc<Observer>>,
}

impl SinkState {
    /// Sends the headers — what the handler set, then `metadata` — deciding
    /// the compression, if they were not sent yet.
    pub(super) fn send_headers(&mut self, metadata: MetadataMap) -> Result<(), Status> {
        if self.send.headers_sent() {
            return Ok(());
        }
        let mut all = std::mem::take(&mut self.headers);
        all.extend(metadata)?;
        self.decide_compression();
        let encoding = self.compression.as_ref().map(|c| c.compressor.name());
        if let Some(obs) = &self.observer {
            obs.out_header(&all);
        }
        self.send.send_headers(all, encoding)
    }

    /// Decides how responses are compressed, until the headers go out.
    pub(super) fn decide_compression(&mut self) {
        if !self.send.headers_sent() {
            self.compression = super::handler::response_compression(
                self.requested,
                &self.settings,
                self.accept.as_ref(),
            );
        }
    }

    /// The status to end a call with: the handler's trailers
    /// first, then the status's own metadata.
    pub(super) fn with_trailers(&mut self, status: Status) -> Status {
        let trailers = std::mem::take(&mut self.trailers);
        if trailers.is_empty() {
            return status;
        }
        let mut status = status;
        let mut md = trailers;
        match md.extend(std::mem::take(status.metadata_mut())) {
            Ok(()) => status.with_metadata(md),
            Err(err) => Status::internal(format!("the call's trailers: {err}")),
        }
    }
}

impl CallShared {
    pub(super) fn new(
        send: ServerSend,
        settings: CallSettings,
        accept: Option<HeaderValue>,
        observer: Option<Arc<Observer>>,
        path: PathAndQuery,
        content_subtype: Cow<'static, str>,
        deadline: Option<Instant>,
    ) -> Arc<CallShared> {
        Arc::new(CallShared {
            state: Mutex::new(SinkState {
                send,
                headers: MetadataMap::new(),
                trailers: MetadataMap::new(),
                settings,
                accept,
                requested: None,
                compression: None,
                compress_messages: true,
                observer,
            }),
            core: ContextCore::new(path, content_subtype, deadline),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, SinkState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The call is over: finished (`None`) or cancelled with `reason`.
    pub(super) fn end(&self, reason: Option<Status>) {
        self.core.end(reason);
    }
}

impl CallSide for CallShared {
    fn core(&self) -> &ContextCore {
        &self.core
    }

    fn set_header(&self, metadata: MetadataMap) -> Result<(), Status> {
        let mut state = self.lock();
        if state.send.headers_sent() {
            return Err(Status::internal("response headers were already sent"));
        }
        Ok(state.headers.extend(metadata)?)
    }

    fn send_header(&self, metadata: MetadataMap) -> Result<(), Status> {
        let mut state = self.lock();
        if state.send.headers_sent() {
            return Err(Status::internal("response headers were already sent"));
        }
        state.send_headers(metadata)
    }

    fn set_trailer(&self, metadata: MetadataMap) -> Result<(), Status> {
        Ok(self.lock().trailers.extend(metadata)?)
    }
}
