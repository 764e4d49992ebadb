//! Hedging (gRFC A6 `hedgingPolicy`) of unary and server-streaming calls:
//! the call is sent again every `hedgingDelay` until one attempt gets its
//! response headers (or a final status), at most `maxAttempts` attempts in
//! all, each picked on its own (under round_robin they reach different
//! backends). The first attempt to commit wins and the others are dropped,
//! which resets their streams (RST_STREAM CANCEL, seen by their servers).
//!
//! An attempt that fails with one of `nonFatalStatusCodes` lets the others
//! carry on and brings the next hedge forward to now; any other status ends
//! the call at once. Server pushback delays the next hedge (or stops them),
//! and the channel's retry throttle holds hedges back as it holds retries.
//!
//! Client-streaming and bidi calls share [`Plan`] but fan their requests
//! out to every live attempt (`hedge_stream.rs`).

use std::{
    future::{poll_fn, Future},
    pin::{pin, Pin},
    sync::Arc,
    task::Poll,
    time::Duration,
};

use tokio::time::Instant;

use super::{attempts::Throttle, Channel};
use crate::{
    observe::Observer,
    serviceconfig::{HedgingPolicy, ServiceConfig},
    stats::Attempt,
    status::{RetryPushback, Status},
};

/// The hedging policy of `method` in `config`, if it has one.
pub(super) fn policy<'a>(config: &'a ServiceConfig, method: &str) -> Option<&'a HedgingPolicy> {
    config.method_config(method)?.hedging_policy.as_ref()
}

/// The hedging state of one call apart from its attempts: how many were
/// sent, when the next one is due, and what a failure means. Shared by the
/// single-request calls ([`run`]) and the streaming ones
/// (`hedge_stream.rs`).
pub(super) struct Plan {
    policy: HedgingPolicy,
    max_attempts: u32,
    /// Attempts started (not counting transparent restarts).
    sent: u32,
    transparent_used: bool,
    /// When the next hedge is due; `None`: no more hedges.
    next: Option<Instant>,
    throttle: Option<Arc<Throttle>>,
    last_failure: Option<Status>,
}

/// What follows a failed attempt of a hedged call.
pub(super) enum AfterFailure {
    /// Start the same attempt again at once (transparent retry).
    Restart,
    /// Wait for the other attempts, or the next hedge.
    Wait,
    /// The call fails with this status; cancel the other attempts.
    End(Status),
}

impl Plan {
    /// The plan of a call whose first attempt starts now.
    pub(super) fn new(channel: &Channel, policy: &HedgingPolicy) -> Plan {
        let max_attempts = policy
            .configured_max_attempts
            .min(channel.inner.retry.max_attempts)
            .max(1);
        Plan {
            policy: policy.clone(),
            max_attempts,
            sent: 1,
            transparent_used: false,
            next: (max_attempts > 1).then(|| Instant::now() + policy.hedging_delay),
            throttle: channel.inner.shared.throttle.load_full(),
            last_failure: None,
        }
    }

    /// When the next hedge is due, if one will be sent.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.next
    }

    /// The number of the hedge to start now, if one is due and the throttle
    /// allows it (a throttled hedge is not sent, nor any after it).
    pub(super) fn take_due(&mut self, now: Instant) -> Option<u32> {
        if self.next? > now {
            return None;
        }
        if self.throttle.as_deref().is_some_and(Throttle::is_throttled) {
            tracing::debug!("hedging throttled");
            self.next = None;
            return None;
        }
        let n = self.sent;
        self.sent += 1;
        self.next = (self.sent < self.max_attempts).then(|| now + self.policy.hedging_delay);
        Some(n)
    }

    /// An attempt failed before it committed; `running` attempts are still
    /// under way.
    pub(super) fn failed(&mut self, status: Status, running: usize) -> AfterFailure {
        if status.is_transparent_retry() && !self.transparent_used {
            // Never reached the server's application: once, at once, not
            // counted as a hedge.
            self.transparent_used = true;
            return AfterFailure::Restart;
        }
        let non_fatal = self.policy.is_non_fatal(status.code());
        let pushback = status.retry_pushback();
        if non_fatal || pushback == Some(RetryPushback::Never) {
            if let Some(t) = &self.throttle {
                t.record_failure();
            }
        }
        if !non_fatal {
            tracing::debug!("hedged call ends: {}", status.code());
            return AfterFailure::End(status);
        }
        let now = Instant::now();
        if self.next.is_some() {
            self.next = match pushback {
                Some(RetryPushback::Never) => None,
                Some(RetryPushback::After(delay)) => Some(now + delay),
                // A non-fatal failure brings the next hedge forward.
                None => Some(now),
            };
        }
        if running == 0 && self.next.is_none() {
            return AfterFailure::End(status);
        }
        self.last_failure = Some(status);
        AfterFailure::Wait
    }

    /// With `running` attempts under way: the call's failure when none is
    /// and none will start.
    pub(super) fn exhausted(&mut self, running: usize) -> Option<Status> {
        (running == 0 && self.next.is_none()).then(|| {
            self.last_failure
                .take()
                .unwrap_or_else(|| Status::unavailable("hedged call: no attempt left to wait for"))
        })
    }
}

/// What woke the hedging loop.
enum Event<T> {
    /// The attempt at this index in the running list finished.
    Done(usize, Result<T, Status>),
    /// Time for the next hedge.
    Timer,
}

/// Runs the attempts of a hedged call: `attempt(n)` starts attempt `n`
/// (0 first; `n` is its `grpc-previous-rpc-attempts`) and resolves once it
/// commits (`Ok`) or fails before committing (`Err`). Returns the first
/// attempt that commits, or the failure that ends the call. The caller's
/// deadline bounds the whole.
pub(super) async fn run<T, Fut>(
    channel: &Channel,
    policy: &HedgingPolicy,
    observer: Option<&Observer>,
    mut attempt: impl FnMut(u32) -> Fut,
) -> Result<T, Status>
where
    Fut: Future<Output = Result<T, Status>>,
{
    let mut plan = Plan::new(channel, policy);
    // Boxed: only hedged calls pay for it, and attempts come and go.
    let mut running: Vec<(u32, Pin<Box<Fut>>)> = vec![(0, Box::pin(attempt(0)))];
    let far = Instant::now() + Duration::from_secs(86400 * 365);
    let mut timer = pin!(tokio::time::sleep_until(plan.next_due().unwrap_or(far)));
    let mut reports = Reports::default();
    loop {
        let due = plan.next_due();
        if let Some(at) = due.filter(|at| *at != timer.deadline()) {
            timer.as_mut().reset(at);
        }
        let event = poll_fn(|cx| {
            for (i, (_, fut)) in running.iter_mut().enumerate() {
                if let Poll::Ready(result) = fut.as_mut().poll(cx) {
                    return Poll::Ready(Event::Done(i, result));
                }
            }
            if due.is_some() && timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Timer);
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Done(i, Ok(value)) => {
                // Dropping the others cancels them.
                reports.cancelled(observer, running.len() - 1, "another hedge of the call won");
                drop(running.swap_remove(i));
                return Ok(value);
            }
            Event::Done(i, Err(status)) => {
                let (n, _) = running.swap_remove(i);
                reports.failed(observer, &status);
                match plan.failed(status, running.len()) {
                    AfterFailure::Restart => {
                        reports.begin(observer, Attempt::TransparentRetry, n);
                        running.push((n, Box::pin(attempt(n))));
                    }
                    AfterFailure::Wait => {}
                    AfterFailure::End(status) => {
                        reports.forget();
                        reports.cancelled(
                            observer,
                            running.len(),
                            "another hedge of the call failed",
                        );
                        return Err(status);
                    }
                }
            }
            Event::Timer => {
                if let Some(n) = plan.take_due(Instant::now()) {
                    reports.begin(observer, Attempt::Hedge, n);
                    running.push((n, Box::pin(attempt(n))));
                }
            }
        }
        if let Some(status) = plan.exhausted(running.len()) {
            // The last failure is the call's outcome, which the caller
            // reports: its `End` stays pending.
            return Err(status);
        }
    }
}

/// Tells the observer about the attempts of a hedged call, one `Begin` and
/// one `End` each. A failed attempt's `End` waits until it is known not to
/// be the call's outcome, which the caller reports.
#[derive(Default)]
pub(super) struct Reports {
    pending: Option<Status>,
}

impl Reports {
    fn flush(&mut self, obs: Option<&Observer>) {
        if let (Some(obs), Some(status)) = (obs, self.pending.take()) {
            obs.end_attempt(Err(&status));
        }
    }

    /// The pending failure is the call's outcome after all.
    pub(super) fn forget(&mut self) {
        self.pending = None;
    }

    pub(super) fn failed(&mut self, obs: Option<&Observer>, status: &Status) {
        self.flush(obs);
        if obs.is_some() {
            self.pending = Some(status.clone());
        }
    }

    pub(super) fn begin(&mut self, obs: Option<&Observer>, attempt: Attempt, previous: u32) {
        self.flush(obs);
        if let Some(obs) = obs {
            obs.begin_attempt(attempt, previous);
        }
    }

    pub(super) fn cancelled(&mut self, obs: Option<&Observer>, attempts: usize, why: &str) {
        self.flush(obs);
        if let Some(obs) = obs {
            let status = Status::cancelled(why);
            for _ in 0..attempts {
                obs.end_attempt(Err(&status));
            }
        }
    }
}
