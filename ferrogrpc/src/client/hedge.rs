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
//! Client-streaming and bidi calls are not hedged: their requests would
//! have to be fanned out to every attempt as they are sent.

use std::{
    future::{poll_fn, Future},
    pin::{pin, Pin},
    task::Poll,
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
    method: &str,
    policy: &HedgingPolicy,
    observer: Option<&Observer>,
    mut attempt: impl FnMut(u32) -> Fut,
) -> Result<T, Status>
where
    Fut: Future<Output = Result<T, Status>>,
{
    let max_attempts = policy
        .configured_max_attempts
        .min(channel.inner.retry.max_attempts)
        .max(1);
    let throttle = channel.inner.shared.throttle.load_full();
    let throttled = || throttle.as_deref().is_some_and(Throttle::is_throttled);
    // Boxed: only hedged calls pay for it, and attempts come and go.
    let mut running: Vec<(u32, Pin<Box<Fut>>)> = Vec::with_capacity(max_attempts as usize);
    running.push((0, Box::pin(attempt(0))));
    let mut sent = 1;
    let mut transparent_used = false;
    let mut timer = pin!(tokio::time::sleep(policy.hedging_delay));
    let mut timer_armed = sent < max_attempts;
    let mut last_failure = None;
    let mut reports = Reports {
        observer,
        pending: None,
    };
    loop {
        let event = poll_fn(|cx| {
            for (i, (_, fut)) in running.iter_mut().enumerate() {
                if let Poll::Ready(result) = fut.as_mut().poll(cx) {
                    return Poll::Ready(Event::Done(i, result));
                }
            }
            if timer_armed && timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Timer);
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Done(i, Ok(value)) => {
                // Dropping the others cancels them.
                reports.cancelled(running.len() - 1, "another hedge of the call won");
                drop(running.swap_remove(i));
                return Ok(value);
            }
            Event::Done(i, Err(status)) => {
                let (n, _) = running.swap_remove(i);
                if status.is_transparent_retry() && !transparent_used {
                    // Never reached the server's application: once, at once,
                    // not counted as a hedge.
                    transparent_used = true;
                    reports.failed(&status);
                    reports.begin(Attempt::TransparentRetry, n);
                    running.push((n, Box::pin(attempt(n))));
                    continue;
                }
                let non_fatal = policy.is_non_fatal(status.code());
                let pushback = status.retry_pushback();
                if non_fatal || pushback == Some(RetryPushback::Never) {
                    if let Some(t) = &throttle {
                        t.record_failure();
                    }
                }
                if !non_fatal {
                    tracing::debug!(method, attempt = n, "hedged call ends: {}", status.code());
                    reports.cancelled(running.len(), "another hedge of the call failed");
                    return Err(status);
                }
                let now = Instant::now();
                match pushback {
                    Some(RetryPushback::Never) => timer_armed = false,
                    Some(RetryPushback::After(delay)) => {
                        timer.as_mut().reset(now + delay);
                    }
                    // A non-fatal failure sends the next hedge at once.
                    None => timer.as_mut().reset(now),
                }
                if running.is_empty() && !timer_armed {
                    reports.flush();
                    return Err(status);
                }
                reports.failed(&status);
                last_failure = Some(status);
            }
            Event::Timer => {
                if throttled() {
                    tracing::debug!(method, "hedging throttled");
                    timer_armed = false;
                } else {
                    tracing::debug!(method, attempt = sent, "sending a hedge");
                    reports.begin(Attempt::Hedge, sent);
                    running.push((sent, Box::pin(attempt(sent))));
                    sent += 1;
                    timer_armed = sent < max_attempts;
                    timer.as_mut().reset(Instant::now() + policy.hedging_delay);
                }
                if running.is_empty() && !timer_armed {
                    // The last failure is the call's outcome, which the
                    // caller reports: its `End` stays pending.
                    return Err(last_failure.unwrap_or_else(|| {
                        Status::unavailable("hedged call: no attempt left to wait for")
                    }));
                }
            }
        }
    }
}

/// Tells the observer about the attempts of a hedged call, one `Begin` and
/// one `End` each. A failed attempt's `End` waits until it is known not to
/// be the call's outcome, which the caller reports.
struct Reports<'a> {
    observer: Option<&'a Observer>,
    pending: Option<Status>,
}

impl Reports<'_> {
    fn flush(&mut self) {
        if let (Some(obs), Some(status)) = (self.observer, self.pending.take()) {
            obs.end_attempt(Err(&status));
        }
    }

    fn failed(&mut self, status: &Status) {
        self.flush();
        if self.observer.is_some() {
            self.pending = Some(status.clone());
        }
    }

    fn begin(&mut self, attempt: Attempt, previous_attempts: u32) {
        self.flush();
        if let Some(obs) = self.observer {
            obs.begin_attempt(attempt, previous_attempts);
        }
    }

    fn cancelled(&mut self, attempts: usize, why: &str) {
        self.flush();
        if let Some(obs) = self.observer {
            let status = Status::cancelled(why);
            for _ in 0..attempts {
                obs.end_attempt(Err(&status));
            }
        }
    }
}
