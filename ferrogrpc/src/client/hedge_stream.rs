//! Hedging (gRFC A6 `hedgingPolicy`) of client-streaming and bidi calls.
//!
//! Until the call commits, every request message is kept and sent to every
//! live attempt; a hedge started later (by a spawned task, every
//! `hedgingDelay`, as [`Plan`] says) first replays the kept messages. The
//! uncommitted attempts are written without waiting for flow control (h2
//! queues what a slow attempt cannot take yet), which the per-call retry
//! buffer bounds: past it the call commits to its oldest live attempt, as
//! A6 asks (all live attempts have had every message).
//!
//! The receiving half watches every live attempt for its response headers:
//! the first to get them wins, and the others are dropped (RST_STREAM
//! CANCEL). Failures before the headers are judged by [`Plan::failed`]: a
//! non-fatal one brings the next hedge forward, a fatal one ends the call.
//! After the commit each half owns the winner's stream, as in `retry.rs`.

use std::{
    sync::{Arc, Mutex, MutexGuard, Weak},
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use tokio::time::Instant;

use super::{
    call::Kept,
    hedge::{AfterFailure, Plan, Reports},
    retry::Reopen,
};
use crate::{
    serviceconfig::HedgingPolicy,
    stats::Attempt,
    status::Status,
    transport::{client::ClientRecv, ClientSend},
};

/// The shared state of a hedged streaming call.
pub(crate) struct HedgedStream {
    /// How to open a hedge: the first attempt's settings and credentials.
    reopen: Reopen,
    state: Mutex<State>,
    /// Wakes the task that starts hedges (held apart so that the task can
    /// wait on it without keeping the call alive).
    hedger: Arc<tokio::sync::Notify>,
}

impl Drop for HedgedStream {
    fn drop(&mut self) {
        // Both halves are gone: the task that starts hedges stops.
        self.hedger.notify_one();
    }
}

struct State {
    plan: Plan,
    /// The sending halves of the live attempts, oldest first.
    sends: Vec<(u32, ClientSend)>,
    /// The receiving halves of live attempts the receiving half does not
    /// hold itself.
    recvs: Vec<(u32, ClientRecv)>,
    /// The attempt whose receiving half the receiving half holds, while it
    /// is live.
    held: Option<u32>,
    /// Attempts to start again at once (transparent retry).
    restarts: Vec<u32>,
    kept: Vec<Bytes>,
    kept_bytes: usize,
    per_rpc_limit: usize,
    reserved: Option<Kept>,
    closed: bool,
    /// Set when the call commits: the winner's number, or the failure.
    outcome: Option<Result<u32, Status>>,
    /// The winner's sending half, for the sending half to take.
    winner_send: Option<ClientSend>,
    /// The winner's receiving half, when it is not the one held.
    winner_recv: Option<ClientRecv>,
    reports: Reports,
    recv_waker: Option<Waker>,
}

impl State {
    fn running(&self) -> usize {
        self.sends.len()
    }

    /// Commits to attempt `n`: the others are dropped (cancelled) and
    /// nothing is kept any more.
    fn commit_to(&mut self, n: u32, reopen: &Reopen) {
        let obs = reopen.observer.as_deref();
        let others = self.sends.iter().filter(|(m, _)| *m != n).count();
        self.reports
            .cancelled(obs, others, "another hedge of the call won");
        self.winner_send = self.sends.drain(..).find(|(m, _)| *m == n).map(|(_, s)| s);
        if self.held != Some(n) {
            self.winner_recv = self.recvs.drain(..).find(|(m, _)| *m == n).map(|(_, r)| r);
        }
        self.recvs.clear();
        self.outcome = Some(Ok(n));
        self.release();
    }

    /// Ends the call with `status`: every attempt is dropped (cancelled).
    fn fail(&mut self, status: Status, reopen: &Reopen) {
        let obs = reopen.observer.as_deref();
        self.reports.forget();
        let others = self.sends.len();
        self.reports
            .cancelled(obs, others, "another hedge of the call failed");
        self.sends.clear();
        self.recvs.clear();
        self.held = None;
        self.outcome = Some(Err(status));
        self.release();
    }

    fn release(&mut self) {
        self.kept = Vec::new();
        self.kept_bytes = 0;
        self.reserved = None;
        self.restarts.clear();
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
    }

    /// Attempt `n` failed before it committed.
    fn attempt_failed(&mut self, n: u32, status: Status, reopen: &Reopen) -> Option<Status> {
        self.sends.retain(|(m, _)| *m != n);
        self.recvs.retain(|(m, _)| *m != n);
        if self.held == Some(n) {
            self.held = None;
        }
        self.reports.failed(reopen.observer.as_deref(), &status);
        match self.plan.failed(status, self.running()) {
            AfterFailure::Restart => self.restarts.push(n),
            AfterFailure::Wait => {}
            AfterFailure::End(status) => {
                self.fail(status.clone(), reopen);
                return Some(status);
            }
        }
        if let Some(status) = self.plan.exhausted(self.running() + self.restarts.len()) {
            // The last failure is the call's outcome, reported by the call.
            self.reports.forget();
            self.fail(status.clone(), reopen);
            return Some(status);
        }
        None
    }

    fn keep_room(&mut self, len: usize) -> bool {
        match &mut self.reserved {
            Some(reserved) => reserved.add(len, self.per_rpc_limit),
            None => self.kept_bytes + len <= self.per_rpc_limit,
        }
    }
}

impl HedgedStream {
    /// The two halves of a hedged call whose first attempt was opened on
    /// `recv`/`send`; starts the task that sends the hedges.
    pub(super) fn split(
        recv: ClientRecv,
        send: ClientSend,
        reopen: Reopen,
        reserved: Option<Kept>,
        policy: &HedgingPolicy,
    ) -> (Arc<HedgedStream>, ClientRecv) {
        let plan = Plan::new(&reopen.channel, policy);
        let per_rpc_limit = reopen.channel.inner.retry.per_rpc_buffer;
        let call = Arc::new(HedgedStream {
            reopen,
            state: Mutex::new(State {
                plan,
                sends: vec![(0, send)],
                recvs: Vec::new(),
                held: Some(0),
                restarts: Vec::new(),
                kept: Vec::new(),
                kept_bytes: 0,
                per_rpc_limit,
                reserved,
                closed: false,
                outcome: None,
                winner_send: None,
                winner_recv: None,
                reports: Reports::default(),
                recv_waker: None,
            }),
            hedger: Arc::new(tokio::sync::Notify::new()),
        });
        crate::logging::spawn(send_hedges(Arc::downgrade(&call), Arc::clone(&call.hedger)));
        (call, recv)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `frame` on every live attempt, keeping it for later hedges.
    /// `Ok(None)` when it was sent that way; `Ok(Some(send))` when the call
    /// has committed and the caller now owns the winner's sending half (the
    /// frame is then the caller's to send).
    pub(crate) fn send(&self, frame: &Bytes) -> Result<Option<ClientSend>, Status> {
        let mut state = self.lock();
        if state.outcome.is_none() && !state.keep_room(frame.len()) {
            // Past the buffer: commit to the oldest live attempt, which has
            // had every message.
            match state.sends.first().map(|(n, _)| *n) {
                Some(n) => state.commit_to(n, &self.reopen),
                None => {
                    // No attempt is live (between hedges): nothing can carry
                    // the stream on.
                    let status = Status::unavailable("hedged call: no live attempt to commit to");
                    state.fail(status.clone(), &self.reopen);
                }
            }
        }
        match &state.outcome {
            Some(Ok(_)) => {
                return state
                    .winner_send
                    .take()
                    .map(Some)
                    .ok_or_else(|| Status::internal("the call's stream is gone"))
            }
            Some(Err(status)) => return Err(status.clone()),
            None => {}
        }
        if state.closed {
            return Err(Status::internal("send after the request stream was closed"));
        }
        state.kept_bytes += frame.len();
        state.kept.push(frame.clone());
        for (_, send) in &mut state.sends {
            // A failed attempt shows on the receiving side.
            let _ = send.send_now(frame.clone(), false);
        }
        Ok(None)
    }

    /// Half-closes the requests of every live attempt (and of hedges to
    /// come); after the commit, hands over the winner's sending half.
    pub(crate) fn close(&self) -> Result<Option<ClientSend>, Status> {
        let mut state = self.lock();
        match &state.outcome {
            Some(Ok(_)) => return Ok(state.winner_send.take()),
            Some(Err(_)) => return Ok(None),
            None => {}
        }
        state.closed = true;
        for (_, send) in &mut state.sends {
            let _ = send.close();
        }
        Ok(None)
    }

    /// Cancels every attempt.
    pub(crate) fn cancel(&self) {
        let mut state = self.lock();
        if let Some(send) = state.winner_send.as_mut() {
            send.cancel();
        }
        if state.outcome.is_none() {
            for (_, send) in &mut state.sends {
                send.cancel();
            }
            state.fail(
                Status::cancelled("call cancelled by the client"),
                &self.reopen,
            );
        }
    }

    /// Waits for the first attempt to get its response headers. `held` is
    /// the receiving half the caller holds (replaced by the winner's when
    /// another attempt wins). `Ok(true)`: the call committed and `held` is
    /// the winner's.
    pub(crate) fn poll_headers(
        &self,
        cx: &mut Context<'_>,
        held: &mut ClientRecv,
    ) -> Poll<Result<(), Status>> {
        let mut state = self.lock();
        loop {
            match &state.outcome {
                Some(Ok(n)) => {
                    if state.held != Some(*n) {
                        if let Some(recv) = state.winner_recv.take() {
                            *held = recv;
                        }
                    }
                    // The winner's headers are in (or it committed on the
                    // buffer limit and its headers are still to come).
                    return Poll::Ready(Ok(()));
                }
                Some(Err(status)) => return Poll::Ready(Err(status.clone())),
                None => {}
            }
            // Which attempt finished first, if any.
            let mut event = None;
            if let Some(n) = state.held {
                if let Poll::Ready(result) = held.poll_headers(cx) {
                    event = Some((n, result));
                }
            }
            if event.is_none() {
                for (n, recv) in &mut state.recvs {
                    if let Poll::Ready(result) = recv.poll_headers(cx) {
                        event = Some((*n, result));
                        break;
                    }
                }
            }
            match event {
                Some((n, Ok(()))) => state.commit_to(n, &self.reopen),
                Some((n, Err(status))) => {
                    let ended = state.attempt_failed(n, status, &self.reopen);
                    self.hedger.notify_one();
                    if let Some(status) = ended {
                        return Poll::Ready(Err(status));
                    }
                }
                None => {
                    match &mut state.recv_waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        slot => *slot = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Starts the hedges of a call as its plan says, until it commits or both
/// of its halves are gone.
async fn send_hedges(call: Weak<HedgedStream>, wake: Arc<tokio::sync::Notify>) {
    loop {
        let Some(strong) = call.upgrade() else {
            return;
        };
        let next = {
            let mut state = strong.lock();
            if state.outcome.is_some() {
                return;
            }
            match state.restarts.pop() {
                Some(n) => Some((n, Attempt::TransparentRetry)),
                None => state
                    .plan
                    .take_due(Instant::now())
                    .map(|n| (n, Attempt::Hedge)),
            }
        };
        let Some((n, kind)) = next else {
            let due = strong.lock().plan.next_due();
            drop(strong);
            let notified = wake.notified();
            match due {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = notified => {}
                    }
                }
                None => notified.await,
            }
            continue;
        };
        let reopen = &strong.reopen;
        let obs = reopen.observer.as_deref();
        strong.lock().reports.begin(obs, kind, n);
        let setup = &reopen.setup;
        let opened = super::call::until(
            setup.deadline,
            setup.timeout,
            reopen.channel.open_hedge(
                reopen.path.clone(),
                setup,
                reopen.content_subtype,
                reopen.observer.as_deref(),
                n,
            ),
        )
        .await;
        let mut state = strong.lock();
        if state.outcome.is_some() {
            // Committed meanwhile: a new stream is dropped (cancelled).
            return;
        }
        match opened {
            Ok((recv, mut send)) => {
                for frame in &state.kept {
                    if send.send_now(frame.clone(), false).is_err() {
                        break;
                    }
                }
                if state.closed {
                    let _ = send.close();
                }
                state.sends.push((n, send));
                state.recvs.push((n, recv));
                if let Some(w) = state.recv_waker.take() {
                    w.wake();
                }
            }
            Err(status) => {
                let _ = state.attempt_failed(n, status, reopen);
            }
        }
    }
}
