//! The state of one call shared by its driver, its
//! [`ResponseSink`](super::ResponseSink) and its
//! [`CallContext`](crate::call_context::CallContext).

use std::{
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
    transport::{frame::SendCompression, http_util::ContentSubtype, ServerSend},
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
    /// Header metadata set by the handler and not sent yet; boxed and only
    /// when set, so a call that sets none pays nothing for it.
    headers: Option<Box<MetadataMap>>,
    /// Trailer metadata set apart from the result, likewise.
    trailers: Option<Box<MetadataMap>>,
    pub(super) settings: CallSettings,
    pub(super) accept: Option<HeaderValue>,
    /// The handler's choice of algorithm, until headers go out.
    pub(super) requested: Option<&'static str>,
    /// The algorithm in use, decided when headers go out.
    pub(super) compression: Option<SendCompression>,
    /// Per-message switch: whether the next messages may be compressed.
    pub(super) compress_messages: bool,
    /// Whether `compression` was decided (it is, once, before headers go).
    pub(super) compression_decided: bool,
    pub(super) observer: Option<Arc<Observer>>,
}

impl SinkState {
    /// Sends the headers — what the handler set, then `metadata` — deciding
    /// the compression, if they were not sent yet.
    pub(super) fn send_headers(&mut self, metadata: MetadataMap) -> Result<(), Status> {
        if self.send.headers_sent() {
            return Ok(());
        }
        let all = match self.headers.take() {
            None => metadata,
            Some(set) => merged(*set, metadata)?,
        };
        if !self.compression_decided {
            self.decide_compression();
        }
        let encoding = self.compression.as_ref().map(|c| c.compressor.name());
        if let Some(obs) = &self.observer {
            obs.out_header(&all);
            obs.log_server_header(&all, None);
        }
        self.send.send_headers(all, encoding)
    }

    /// Whether the handler set header metadata not sent yet.
    pub(super) fn has_headers(&self) -> bool {
        self.headers.as_ref().is_some_and(|h| !h.is_empty())
    }

    /// Whether the handler set trailer metadata apart from its result.
    pub(super) fn has_trailers(&self) -> bool {
        self.trailers.is_some()
    }

    pub(super) fn headers_mut(&mut self) -> &mut MetadataMap {
        self.headers.get_or_insert_with(Box::default)
    }

    pub(super) fn trailers_mut(&mut self) -> &mut MetadataMap {
        self.trailers.get_or_insert_with(Box::default)
    }

    pub(super) fn take_trailers(&mut self) -> MetadataMap {
        self.trailers.take().map(|t| *t).unwrap_or_default()
    }

    /// Decides how responses are compressed, until the headers go out.
    pub(super) fn decide_compression(&mut self) {
        if !self.send.headers_sent() {
            self.compression = super::handler::response_compression(
                self.requested,
                &self.settings,
                self.accept.as_ref(),
            );
            self.compression_decided = true;
        }
    }

    /// The status to end a call with: the handler's trailers
    /// first, then the status's own metadata.
    pub(super) fn with_trailers(&mut self, status: Status) -> Status {
        let trailers = self.take_trailers();
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

/// `first` then `then`, without touching either when the other is empty
/// (the common case: nothing set apart from the result).
pub(super) fn merged(
    first: MetadataMap,
    then: MetadataMap,
) -> Result<MetadataMap, crate::metadata::InvalidMetadata> {
    if first.is_empty() {
        return Ok(then);
    }
    let mut all = first;
    if !then.is_empty() {
        all.extend(then)?;
    }
    Ok(all)
}

impl CallShared {
    pub(super) fn new(
        send: ServerSend,
        settings: CallSettings,
        accept: Option<HeaderValue>,
        observer: Option<Arc<Observer>>,
        path: PathAndQuery,
        content_subtype: ContentSubtype,
        deadline: Option<Instant>,
    ) -> Arc<CallShared> {
        Arc::new(CallShared {
            state: Mutex::new(SinkState {
                send,
                headers: None,
                trailers: None,
                settings,
                accept,
                requested: None,
                compression: None,
                compress_messages: true,
                compression_decided: false,
                observer,
            }),
            core: ContextCore::new(path, content_subtype.into_cow(), deadline),
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
        Ok(state.headers_mut().extend(metadata)?)
    }

    fn send_header(&self, metadata: MetadataMap) -> Result<(), Status> {
        let mut state = self.lock();
        if state.send.headers_sent() {
            return Err(Status::internal("response headers were already sent"));
        }
        state.send_headers(metadata)
    }

    fn set_trailer(&self, metadata: MetadataMap) -> Result<(), Status> {
        Ok(self.lock().trailers_mut().extend(metadata)?)
    }
}
