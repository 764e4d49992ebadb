//! Retries of client-streaming and bidi calls (gRFC A6).
//!
//! A server that refuses a stream (RST_STREAM REFUSED_STREAM, or a GOAWAY
//! whose last stream id is below it) never processed it, so the call may be
//! replayed on another stream, once, even after request messages went out
//! (transparent retry). A call whose method has a retry policy is also
//! replayed, after the policy's backoff, when it fails with a retryable
//! status before any response headers arrived. Until the call commits, the
//! request messages sent so far are kept; a replay opens a new stream and
//! sends them again.
//!
//! Only the receiving half sees the status an attempt failed with. When the
//! sending half finds its stream gone on a call with a retry policy, it keeps
//! the messages it is given and leaves the decision to the receiving half.
//!
//! The two halves of a call, [`CallSend`] and [`CallRecv`], may be used from
//! different tasks, so until the call commits they share a [`Replay`] behind
//! a mutex (held for a poll, never across one). A call commits when:
//! - the response headers (or a Trailers-Only status) arrive: the server is
//!   processing it;
//! - the kept messages would pass the channel's per-call retry buffer
//!   (256 KiB by default) or, with a retry policy, its channel-wide one;
//! - the call failed for good, or was cancelled.
//!
//! From then on each half drives its own stream without the lock, and
//! nothing is kept.
//!
//! The replacement stream is opened by a spawned task, so it neither depends
//! on which half the caller keeps polling nor is lost when a caller drops a
//! future; it stops when both halves are gone.

use std::{
    future::poll_fn,
    sync::{Arc, Mutex, MutexGuard, Weak},
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http::uri::PathAndQuery;

use super::{
    attempts::{Next, Throttle},
    call::{CallSetup, Kept},
    hedge_stream::HedgedStream,
    Channel,
};
use crate::{
    metadata::MetadataMap,
    peer::Peer,
    stats::Attempt,
    status::Status,
    transport::{client::ClientRecv, ClientSend},
};

/// What opening a replacement stream needs.
pub(super) struct Reopen {
    /// A clone: like the call's open stream, an uncommitted call keeps
    /// working when the caller drops the channel (`Channel::close` still
    /// ends it).
    pub(super) channel: Channel,
    pub(super) path: PathAndQuery,
    pub(super) setup: CallSetup,
    pub(super) content_subtype: &'static str,
    /// Told of each new attempt.
    pub(super) observer: Option<Arc<crate::observe::Observer>>,
}

/// State shared by the two halves of a call that is not committed yet.
pub(crate) struct Replay {
    state: Mutex<State>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Request messages are kept for a replay.
    Buffering,
    /// A replacement stream is being opened.
    Reopening,
    /// No replay any more.
    Committed,
}

struct State {
    phase: Phase,
    /// Counts streams opened for the call; each half notes the one it uses.
    attempt: u32,
    /// The sending half of the current stream; `None` while reopening.
    send: Option<ClientSend>,
    /// The receiving half of a replacement stream, for `CallRecv` to take.
    replacement: Option<ClientRecv>,
    /// The request messages sent so far, framed.
    kept: Vec<Bytes>,
    kept_bytes: usize,
    /// The request stream was half-closed.
    closed: bool,
    cancelled: bool,
    /// Present until the call commits (taken while a replay runs).
    reopen: Option<Reopen>,
    /// The per-call limit of kept bytes.
    per_rpc_limit: usize,
    /// The kept bytes in the channel's retry buffer, with a retry policy.
    reserved: Option<Kept>,
    /// The sending half found the current stream gone and left the decision
    /// to the receiving half (with a retry policy); why, for after a commit.
    send_failed: Option<Status>,
    /// Why a replay failed: both halves end with it.
    failed: Option<Status>,
    send_waker: Option<Waker>,
    recv_waker: Option<Waker>,
    /// Dropped with the state, which tells a reopening task that nobody
    /// waits for its stream.
    _alive: Option<tokio::sync::oneshot::Sender<()>>,
}

impl State {
    /// Stops keeping messages: no replay from here on.
    fn commit(&mut self) {
        self.phase = Phase::Committed;
        self.reopen = None;
        self.kept = Vec::new();
        self.kept_bytes = 0;
        self.reserved = None;
    }

    /// Whether `len` more bytes may be kept; with a retry policy they are
    /// reserved in the channel's buffer.
    fn keep_room(&mut self, len: usize) -> bool {
        match &mut self.reserved {
            Some(reserved) => reserved.add(len, self.per_rpc_limit),
            None => self.kept_bytes + len <= self.per_rpc_limit,
        }
    }

    fn wake_both(&mut self) {
        if let Some(w) = self.send_waker.take() {
            w.wake();
        }
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
    }
}

fn store_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl Replay {
    /// The two halves of a call just opened on `recv`/`send`, sharing what
    /// a replay needs.
    pub(super) fn split(
        recv: ClientRecv,
        send: ClientSend,
        reopen: Reopen,
        reserved: Option<Kept>,
    ) -> (CallRecv, CallSend) {
        let per_rpc_limit = reopen.channel.inner.retry.per_rpc_buffer;
        let replay = Arc::new(Replay {
            state: Mutex::new(State {
                phase: Phase::Buffering,
                attempt: 0,
                send: Some(send),
                replacement: None,
                kept: Vec::new(),
                kept_bytes: 0,
                closed: false,
                cancelled: false,
                reopen: Some(reopen),
                per_rpc_limit,
                reserved,
                send_failed: None,
                failed: None,
                send_waker: None,
                recv_waker: None,
                _alive: None,
            }),
        });
        (
            CallRecv {
                recv,
                replay: Some((Arc::clone(&replay), 0)),
                hedged: None,
                throttle: None,
                #[cfg(feature = "channelz")]
                counted: None,
            },
            CallSend::Shared(replay),
        )
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-done that
        // matters more than going on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a replay if the attempt that failed with `status` may be
    /// retried (transparently, or under the retry policy after its
    /// backoff). Returns whether a replay is under way (the caller then
    /// waits for it).
    fn try_replay(self: &Arc<Self>, state: &mut State, status: &Status) -> bool {
        match state.phase {
            Phase::Reopening => return true,
            Phase::Committed => return false,
            Phase::Buffering => {}
        }
        let Some(mut reopen) = state.reopen.take().filter(|_| !state.cancelled) else {
            state.commit();
            return false;
        };
        let (delay, attempt) = match reopen.channel.after_failure(
            reopen.path.path(),
            &mut reopen.setup.attempts,
            status,
        ) {
            Next::Transparent => (std::time::Duration::ZERO, Attempt::TransparentRetry),
            Next::After(delay) => (delay, Attempt::Retry),
            Next::Stop => {
                state.commit();
                return false;
            }
        };
        if let Some(obs) = &reopen.observer {
            obs.next_attempt(status, attempt, reopen.setup.attempts.previous());
        }
        state.phase = Phase::Reopening;
        state.send = None;
        state.send_failed = None;
        let (alive, abandoned) = tokio::sync::oneshot::channel();
        state._alive = Some(alive);
        tracing::debug!(
            method = reopen.path.path(),
            "replaying {} request messages after {delay:?}: {}",
            state.kept.len(),
            status.message()
        );
        crate::logging::spawn(reopen_stream(
            Arc::downgrade(self),
            reopen,
            delay,
            abandoned,
        ));
        state.wake_both();
        true
    }

    /// The sending half found its stream gone with `status`. A stream the
    /// server never processed is replayed at once; with a retry policy the
    /// receiving half decides once the attempt's status arrives, and this
    /// half keeps what it is given meanwhile. Returns whether sending may
    /// go on as if the message went out.
    fn on_send_failure(
        self: &Arc<Self>,
        state: &mut State,
        status: Status,
        unprocessed: bool,
    ) -> Result<(), Status> {
        if unprocessed {
            let status = status.with_transparent_retry();
            return if self.try_replay(state, &status) {
                Ok(())
            } else {
                Err(status)
            };
        }
        let deferred = state.phase == Phase::Buffering
            && state
                .reopen
                .as_ref()
                .is_some_and(|r| r.setup.attempts.has_policy());
        if deferred {
            state.send = None;
            state.send_failed = Some(status);
            return Ok(());
        }
        if state.phase == Phase::Buffering {
            state.commit();
        }
        Err(status)
    }
}

/// Opens the replacement stream, replays the kept messages on it, and hands
/// it to the two halves.
async fn reopen_stream(
    replay: Weak<Replay>,
    mut reopen: Reopen,
    delay: std::time::Duration,
    abandoned: tokio::sync::oneshot::Receiver<()>,
) {
    let setup = &mut reopen.setup;
    let (deadline, timeout) = (setup.deadline, setup.timeout);
    let open = super::call::until(deadline, timeout, async {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        reopen
            .channel
            .open(reopen.path.clone(), setup, reopen.content_subtype, None)
            .await
    });
    let opened = tokio::select! {
        opened = open => opened,
        // Both halves were dropped: nobody waits for the stream.
        _ = abandoned => return,
    };
    let Some(replay) = replay.upgrade() else {
        return;
    };
    let mut state = replay.lock();
    match opened {
        Ok((recv, mut send)) => {
            if state.cancelled {
                send.cancel();
            } else {
                // At most the buffer limit plus one message: sent without
                // waiting for flow control, as h2 queues it. An error here
                // shows on the response side.
                for frame in &state.kept {
                    if send.send_now(frame.clone(), false).is_err() {
                        break;
                    }
                }
                if state.closed {
                    let _ = send.close();
                }
            }
            state.attempt += 1;
            state.send = Some(send);
            state.replacement = Some(recv);
            // Further attempts may follow, until the call commits.
            if state.phase == Phase::Reopening {
                state.phase = Phase::Buffering;
                state.reopen = Some(reopen);
            }
        }
        Err(status) => {
            state.failed = Some(status);
            state.commit();
        }
    }
    state._alive = None;
    state.wake_both();
}

/// The sending half of a client-streaming or bidi call.
pub(crate) enum CallSend {
    /// Committed: the stream is this half's alone.
    Own(ClientSend),
    /// Not committed: shared with the receiving half for a replay.
    Shared(Arc<Replay>),
    /// Hedged and not committed: sent to every live attempt.
    Hedged(Arc<HedgedStream>),
    /// The call failed; sending is over.
    Done(Status),
}

impl CallSend {
    /// Sends one framed message, waiting for flow-control room.
    pub(crate) async fn send(&mut self, frame: Bytes) -> Result<(), Status> {
        if let CallSend::Hedged(call) = self {
            match call.send(&frame)? {
                None => return Ok(()),
                // Committed: the winner's stream is this half's now.
                Some(send) => *self = CallSend::Own(send),
            }
        }
        match self.keep(&frame)? {
            Some(attempt) => {
                let mut frame = Some(frame);
                poll_fn(|cx| self.poll_send(cx, attempt, &mut frame)).await
            }
            None => match self {
                CallSend::Own(send) => send.send(frame).await,
                CallSend::Shared(_) | CallSend::Hedged(_) | CallSend::Done(_) => {
                    Err(Status::internal("the call's stream is gone"))
                }
            },
        }
    }

    /// Ends sending with `status` (a replay failed), which it returns.
    fn end(&mut self, status: Status) -> Status {
        *self = CallSend::Done(status.clone());
        status
    }

    /// Keeps a copy of `frame` for a replay, returning the attempt it was
    /// kept in; `None` when the call has committed and this half now owns
    /// its stream.
    fn keep(&mut self, frame: &Bytes) -> Result<Option<u32>, Status> {
        let replay = match self {
            CallSend::Own(_) | CallSend::Hedged(_) => return Ok(None),
            CallSend::Done(status) => return Err(status.clone()),
            CallSend::Shared(replay) => Arc::clone(replay),
        };
        let mut state = replay.lock();
        if let Some(status) = state.failed.clone() {
            drop(state);
            return Err(self.end(status));
        }
        if state.closed {
            return Err(Status::internal("send after the request stream was closed"));
        }
        if state.phase == Phase::Buffering && !state.keep_room(frame.len()) {
            state.commit();
        }
        if state.phase == Phase::Committed {
            if let Some(send) = state.send.take() {
                drop(state);
                *self = CallSend::Own(send);
                return Ok(None);
            }
            // The stream went while the decision was left to the receiving
            // half, which then committed: its status is the call's.
            if let Some(status) = state.send_failed.clone() {
                return Err(status);
            }
        }
        // Kept while reopening too: the replay sends it.
        state.kept_bytes += frame.len();
        state.kept.push(frame.clone());
        Ok(Some(state.attempt))
    }

    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        attempt: u32,
        frame: &mut Option<Bytes>,
    ) -> Poll<Result<(), Status>> {
        let replay = match self {
            CallSend::Shared(replay) => Arc::clone(replay),
            // Only a kept frame waits here, and this half stays shared
            // until it is sent.
            CallSend::Own(_) | CallSend::Hedged(_) | CallSend::Done(_) => {
                return Poll::Ready(Err(Status::internal("the call's stream is gone")))
            }
        };
        let mut state = replay.lock();
        if let Some(status) = state.failed.clone() {
            drop(state);
            return Poll::Ready(Err(self.end(status)));
        }
        if state.attempt != attempt {
            // The replacement stream sent the kept copy.
            return Poll::Ready(Ok(()));
        }
        if state.phase == Phase::Reopening {
            store_waker(&mut state.send_waker, cx);
            return Poll::Pending;
        }
        let Some(send) = state.send.as_mut() else {
            if state.send_failed.is_some() {
                // Kept for a retry the receiving half may decide on.
                return Poll::Ready(Ok(()));
            }
            return Poll::Ready(Err(Status::internal("the call's stream is gone")));
        };
        let len = frame.as_ref().map_or(0, Bytes::len);
        let result = match send.poll_capacity(cx, len) {
            Poll::Pending => {
                store_waker(&mut state.send_waker, cx);
                return Poll::Pending;
            }
            Poll::Ready(Ok(())) => match frame.take() {
                Some(f) => send.send_ready(f),
                None => Ok(()),
            },
            Poll::Ready(Err(status)) => Err(status),
        };
        match result {
            Ok(()) => Poll::Ready(Ok(())),
            Err(status) => {
                let unprocessed = send.unprocessed();
                match replay.on_send_failure(&mut state, status, unprocessed) {
                    Ok(()) if state.phase == Phase::Reopening => {
                        store_waker(&mut state.send_waker, cx);
                        Poll::Pending
                    }
                    // Kept; the receiving half decides.
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(status) => Poll::Ready(Err(status)),
                }
            }
        }
    }

    /// Half-closes the request stream. Idempotent.
    pub(crate) fn close(&mut self) -> Result<(), Status> {
        let replay = match self {
            CallSend::Own(send) => return send.close(),
            CallSend::Done(_) => return Ok(()),
            CallSend::Hedged(call) => {
                return match call.close()? {
                    Some(mut send) => {
                        let closed = send.close();
                        *self = CallSend::Own(send);
                        closed
                    }
                    None => Ok(()),
                }
            }
            CallSend::Shared(replay) => Arc::clone(replay),
        };
        let mut state = replay.lock();
        if state.closed {
            return Ok(());
        }
        state.closed = true;
        let Some(send) = state.send.as_mut() else {
            // Reopening (or waiting for the receiving half to decide): a
            // replay half-closes the new stream.
            return Ok(());
        };
        match send.close() {
            Ok(()) => Ok(()),
            Err(status) => {
                let unprocessed = send.unprocessed();
                replay.on_send_failure(&mut state, status, unprocessed)
            }
        }
    }

    /// Cancels the call (RST_STREAM CANCEL).
    pub(crate) fn cancel(&mut self) {
        match self {
            CallSend::Own(send) => send.cancel(),
            CallSend::Hedged(call) => call.cancel(),
            CallSend::Done(_) => {}
            CallSend::Shared(replay) => {
                let mut state = replay.lock();
                state.cancelled = true;
                if let Some(send) = state.send.as_mut() {
                    send.cancel();
                }
                if state.phase == Phase::Buffering {
                    state.commit();
                }
            }
        }
    }
}

/// The receiving half of a call: the response headers, messages and status,
/// following a replay to the replacement stream before the call commits.
pub(crate) struct CallRecv {
    recv: ClientRecv,
    /// Until the call commits: the shared state, and the attempt `recv`
    /// belongs to.
    replay: Option<(Arc<Replay>, u32)>,
    /// Until a hedged call commits: its shared state.
    hedged: Option<Arc<HedgedStream>>,
    /// The channel's retry throttle, given a success when the call ends
    /// with OK (gRFC A6).
    throttle: Option<Arc<Throttle>>,
    /// The call on the channel's channelz, ended with the call's status
    /// (failed if the call is dropped before).
    #[cfg(feature = "channelz")]
    counted: Option<crate::channelz::CallGuard<Arc<crate::channelz::ChannelEntry>>>,
}

impl CallRecv {
    /// A receiving half that is never replayed.
    pub(crate) fn direct(recv: ClientRecv) -> CallRecv {
        CallRecv {
            recv,
            replay: None,
            hedged: None,
            throttle: None,
            #[cfg(feature = "channelz")]
            counted: None,
        }
    }

    /// The receiving half of a hedged call, holding its first attempt's.
    pub(super) fn hedged(recv: ClientRecv, call: Arc<HedgedStream>) -> CallRecv {
        CallRecv {
            recv,
            replay: None,
            hedged: Some(call),
            throttle: None,
            #[cfg(feature = "channelz")]
            counted: None,
        }
    }

    /// Counts the call on the channel's channelz: it ends with the status
    /// read here.
    #[cfg(feature = "channelz")]
    pub(crate) fn counting_call(
        mut self,
        counted: crate::channelz::CallGuard<Arc<crate::channelz::ChannelEntry>>,
    ) -> CallRecv {
        self.counted = Some(counted);
        self
    }

    /// The call ended (`ok`: with OK): channelz counts it, once.
    #[inline]
    fn count_end(&mut self, ok: bool) {
        #[cfg(feature = "channelz")]
        if let Some(mut counted) = self.counted.take() {
            counted.end(ok);
        }
        #[cfg(not(feature = "channelz"))]
        let _ = ok;
    }

    /// Counts the call's success in the channel's retry throttle.
    pub(crate) fn counting_success(mut self, throttle: Option<Arc<Throttle>>) -> CallRecv {
        self.throttle = throttle;
        self
    }

    /// Waits for the response headers; a stream the server never processed
    /// is replaced by a replay first.
    pub(crate) fn poll_headers(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        if let Some(call) = &self.hedged {
            let committed = std::task::ready!(call.poll_headers(cx, &mut self.recv));
            self.hedged = None;
            if let Err(status) = committed {
                self.count_end(false);
                self.recv.fail(status.clone());
                return Poll::Ready(Err(status));
            }
        }
        let Some((replay, attempt)) = &mut self.replay else {
            let polled = self.recv.poll_headers(cx);
            if let Poll::Ready(Err(_)) = polled {
                self.count_end(false);
            }
            return polled;
        };
        let replay = Arc::clone(replay);
        let mut state = replay.lock();
        if *attempt != state.attempt {
            if let Some(recv) = state.replacement.take() {
                self.recv = recv;
            }
            *attempt = state.attempt;
        }
        if let Some(status) = state.failed.clone() {
            drop(state);
            self.count_end(false);
            self.recv.fail(status.clone());
            self.replay = None;
            return Poll::Ready(Err(status));
        }
        let result = match self.recv.poll_headers(cx) {
            Poll::Pending => {
                store_waker(&mut state.recv_waker, cx);
                return Poll::Pending;
            }
            Poll::Ready(result) => result,
        };
        if let Err(status) = &result {
            if replay.try_replay(&mut state, status) {
                // The replacement comes with the state's next attempt.
                store_waker(&mut state.recv_waker, cx);
                return Poll::Pending;
            }
        }
        // Headers, or a final error: the call has committed.
        if state.phase == Phase::Buffering {
            state.commit();
        }
        drop(state);
        self.replay = None;
        if result.is_err() {
            self.count_end(false);
        }
        Poll::Ready(result)
    }

    /// Polls for the next message (after the headers).
    pub(crate) fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, Status>> {
        if self.replay.is_some() || self.hedged.is_some() {
            std::task::ready!(self.poll_headers(cx))?;
        }
        let polled = self.recv.poll_message(cx);
        match &polled {
            Poll::Ready(Ok(None)) => {
                if let Some(throttle) = self.throttle.take() {
                    throttle.record_success();
                }
                self.count_end(true);
            }
            Poll::Ready(Err(_)) => self.count_end(false),
            _ => {}
        }
        polled
    }

    /// The next message.
    pub(crate) async fn message(&mut self) -> Result<Option<Bytes>, Status> {
        poll_fn(|cx| self.poll_message(cx)).await
    }

    /// Tells the current attempt's done callback, if it has not heard
    /// yet, that the call failed with `status` on this side.
    pub(crate) fn end_attempt(&mut self, status: &Status) {
        self.recv.end_attempt_with(status);
    }

    /// Cancels the call when this half holds the sender (server streaming).
    pub(crate) fn cancel(&mut self) {
        self.recv.cancel();
    }

    /// The connection's two ends.
    pub(crate) fn peer(&self) -> &Arc<Peer> {
        self.recv.peer()
    }

    /// Whether the response headers (or a Trailers-Only response) arrived.
    pub(crate) fn headers_received(&self) -> bool {
        self.replay.is_none() && self.hedged.is_none() && self.recv.headers_received()
    }

    /// The response header metadata (empty before the headers arrive).
    pub(crate) fn headers(&self) -> &MetadataMap {
        self.recv.headers()
    }

    /// Takes the response header metadata.
    pub(crate) fn take_headers(&mut self) -> MetadataMap {
        self.recv.take_headers()
    }

    /// The trailers, once the call ended with `OK`.
    pub(crate) fn trailers(&self) -> Option<&MetadataMap> {
        self.recv.trailers()
    }

    /// Takes the trailers, once the call ended with `OK`.
    pub(crate) fn take_trailers(&mut self) -> MetadataMap {
        self.recv.take_trailers()
    }

    /// Whether the last message returned arrived compressed.
    pub(crate) fn last_compressed(&self) -> bool {
        self.recv.last_compressed()
    }

    /// The wire size of the last message returned.
    pub(crate) fn last_wire_len(&self) -> usize {
        self.recv.last_wire_len()
    }

    /// Whether the call has ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.replay.is_none() && self.hedged.is_none() && self.recv.is_finished()
    }
}
