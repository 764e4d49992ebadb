//! Whether, and when, a failed attempt of a call is made again (gRFC A6):
//! the transparent retry of a stream the server never processed, the
//! service config's `retryPolicy` with its jittered exponential backoff,
//! server pushback, the channel's retry throttle, and the channel-wide
//! retry buffer.
//!
//! This is bookkeeping only; the call paths in `call.rs` (unary and
//! server-streaming) and `retry.rs` (client-streaming and bidi) ask
//! [`Attempts::after_failure`] what to do when an attempt fails before the
//! call committed.

use std::{
    sync::{
        atomic::{AtomicU32, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::{
    serviceconfig::{RetryPolicy, RetryThrottling, ServiceConfig},
    status::{RetryPushback, Status},
};

/// What to do after an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Next {
    /// Retry at once: the server never processed the attempt (transparent
    /// retry; not counted against `maxAttempts`).
    Transparent,
    /// Retry after this delay, under the retry policy.
    After(Duration),
    /// Do not retry: the failure is the call's result.
    Stop,
}

/// The retry state of one call.
pub(crate) struct Attempts {
    /// The service config whose method config has this call's retry policy
    /// (a reference-counted handle; the policy is looked up only when an
    /// attempt fails).
    config: Option<ServiceConfig>,
    /// The channel's cap on `maxAttempts`.
    cap: u32,
    /// Attempts made under the policy before the current one.
    previous: u32,
    /// Retries since the last pushback: the exponent of the backoff.
    since_pushback: i32,
    transparent_used: bool,
    rng: Option<Box<dyn FnMut() -> f64 + Send + Sync>>,
}

impl Attempts {
    /// The retry state of a call under `config`, which must have a retry
    /// policy for the call's method (or `None`: transparent retry only).
    pub(crate) fn new(config: Option<ServiceConfig>, cap: u32) -> Attempts {
        Attempts {
            config,
            cap,
            previous: 0,
            since_pushback: 0,
            transparent_used: false,
            rng: None,
        }
    }

    /// Whether the call has a retry policy at all.
    pub(crate) fn has_policy(&self) -> bool {
        self.config.is_some()
    }

    /// The attempts made before the current one (`grpc-previous-rpc-attempts`).
    pub(crate) fn previous(&self) -> u32 {
        self.previous
    }

    /// Gives up the retry policy: from now on only a transparent retry is
    /// possible (the call committed by overflowing a buffer).
    pub(crate) fn drop_policy(&mut self) {
        self.config = None;
    }

    fn policy<'a>(config: &'a ServiceConfig, method: &str) -> Option<&'a RetryPolicy> {
        config.method_config(method)?.retry_policy.as_ref()
    }

    /// Decides what follows a failed attempt of the call to `method` that
    /// had not committed (no response headers arrived). A failure counts
    /// against `throttle` when its code is retryable or the server said not
    /// to retry.
    pub(crate) fn after_failure(
        &mut self,
        method: &str,
        status: &Status,
        throttle: Option<&Throttle>,
    ) -> Next {
        if status.is_transparent_retry() && !self.transparent_used {
            self.transparent_used = true;
            return Next::Transparent;
        }
        let Some(config) = &self.config else {
            return Next::Stop;
        };
        let Some(policy) = Attempts::policy(config, method) else {
            return Next::Stop;
        };
        let retryable = policy.is_retryable(status.code());
        let pushback = status.retry_pushback();
        let throttled = (retryable || pushback == Some(RetryPushback::Never))
            && throttle.is_some_and(Throttle::record_failure);
        let max_attempts = policy.configured_max_attempts.min(self.cap);
        if !retryable
            || pushback == Some(RetryPushback::Never)
            || throttled
            || self.previous + 1 >= max_attempts
        {
            tracing::debug!(
                method,
                attempts = self.previous + 1,
                retryable,
                throttled,
                ?pushback,
                "not retrying: {}",
                status.code()
            );
            return Next::Stop;
        }
        self.previous += 1;
        let delay = match pushback {
            Some(RetryPushback::After(delay)) => {
                self.since_pushback = 0;
                delay
            }
            _ => {
                let bound = backoff_bound(policy, self.since_pushback);
                self.since_pushback = self.since_pushback.saturating_add(1);
                let rng = self
                    .rng
                    .get_or_insert_with(|| Box::new(crate::backoff::seeded_rng()));
                bound.mul_f64(rng())
            }
        };
        tracing::debug!(
            method,
            attempt = self.previous + 1,
            ?delay,
            "retrying after {}",
            status.code()
        );
        Next::After(delay)
    }
}

/// The bound of the random delay before a retry, `n` retries after the
/// last pushback (or the first attempt): `min(initial · multiplier^n, max)`.
pub(crate) fn backoff_bound(policy: &RetryPolicy, n: i32) -> Duration {
    let bound = policy.initial_backoff.as_secs_f64() * policy.backoff_multiplier.powi(n);
    let max = policy.max_backoff.as_secs_f64();
    if bound.is_finite() && bound < max {
        Duration::from_secs_f64(bound)
    } else {
        policy.max_backoff
    }
}

/// The retry throttle of a channel (gRFC A6 `retryThrottling`): a token
/// count between 0 and `maxTokens`, in thousandths so that `tokenRatio`'s
/// three decimals are exact. Failures take a token, successes give back
/// `tokenRatio`; retries and hedges stop while it is at or below half.
#[derive(Debug)]
pub(crate) struct Throttle {
    config: RetryThrottling,
    max: u32,
    ratio: u32,
    tokens: AtomicU32,
}

impl Throttle {
    pub(crate) fn new(config: &RetryThrottling) -> Throttle {
        let max = config.max_tokens.saturating_mul(1000);
        Throttle {
            config: config.clone(),
            max,
            ratio: (config.token_ratio * 1000.0).round() as u32,
            tokens: AtomicU32::new(max),
        }
    }

    /// Whether this throttle was made from `config`.
    pub(crate) fn is_for(&self, config: &RetryThrottling) -> bool {
        self.config == *config
    }

    /// A failed attempt takes a token; returns whether retries are now
    /// throttled.
    pub(crate) fn record_failure(&self) -> bool {
        let before = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_sub(1000))
            })
            .unwrap_or(0);
        before.saturating_sub(1000) <= self.max / 2
    }

    /// A successful call gives back `tokenRatio` tokens.
    pub(crate) fn record_success(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t < self.max).then(|| (t + self.ratio).min(self.max))
            });
    }

    /// Whether retries and hedges are currently throttled.
    pub(crate) fn is_throttled(&self) -> bool {
        self.tokens.load(Ordering::Acquire) <= self.max / 2
    }
}

/// The bytes of requests all calls of a channel keep for retries (gRFC A6's
/// `retry_buffer_size_in_bytes`); a call that cannot reserve room commits.
#[derive(Debug)]
pub(crate) struct RetryBuffer {
    limit: usize,
    used: AtomicUsize,
}

impl RetryBuffer {
    pub(crate) fn new(limit: usize) -> Arc<RetryBuffer> {
        Arc::new(RetryBuffer {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Reserves `bytes`; false when the buffer is full.
    pub(crate) fn reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&u| u <= self.limit)
            })
            .is_ok()
    }

    /// Gives back `bytes` reserved before.
    pub(crate) fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// The bytes kept now, for tests.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    fn config(policy: &str) -> ServiceConfig {
        ServiceConfig::parse(&format!(
            r#"{{"methodConfig": [{{"name": [{{"service": "s.S"}}], "retryPolicy": {policy}}}]}}"#
        ))
        .unwrap()
    }

    const POLICY: &str = r#"{"maxAttempts": 4, "initialBackoff": "1s", "maxBackoff": "5s",
        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}"#;

    #[test]
    fn delays_stay_within_the_jitter_bounds_of_each_attempt() {
        // Bounds 1, 2, 4 s for the three retries of four attempts.
        for _ in 0..200 {
            let mut attempts = Attempts::new(Some(config(POLICY)), 5);
            for bound in [1.0, 2.0, 4.0] {
                match attempts.after_failure("/s.S/M", &Status::unavailable("x"), None) {
                    Next::After(d) => assert!(d.as_secs_f64() < bound, "{d:?} >= {bound}"),
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(
                attempts.after_failure("/s.S/M", &Status::unavailable("x"), None),
                Next::Stop,
                "maxAttempts 4"
            );
            assert_eq!(attempts.previous(), 3);
        }
    }

    #[test]
    fn delays_spread_over_the_whole_range() {
        let mut low = false;
        let mut high = false;
        for _ in 0..200 {
            let mut attempts = Attempts::new(Some(config(POLICY)), 5);
            let Next::After(d) = attempts.after_failure("/s.S/M", &Status::unavailable(""), None)
            else {
                panic!()
            };
            low |= d < Duration::from_millis(250);
            high |= d > Duration::from_millis(750);
        }
        assert!(low && high, "jitter is uniform over [0, 1 s)");
    }

    #[test]
    fn the_bound_is_capped_by_max_backoff() {
        let cfg = config(POLICY);
        let policy = Attempts::policy(&cfg, "/s.S/M").unwrap();
        assert_eq!(backoff_bound(policy, 0), Duration::from_secs(1));
        assert_eq!(backoff_bound(policy, 2), Duration::from_secs(4));
        assert_eq!(backoff_bound(policy, 3), Duration::from_secs(5));
        assert_eq!(backoff_bound(policy, i32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn only_retryable_codes_are_retried_and_the_cap_applies() {
        let mut attempts = Attempts::new(Some(config(POLICY)), 5);
        let status = Status::new(Code::InvalidArgument, "bad");
        assert_eq!(attempts.after_failure("/s.S/M", &status, None), Next::Stop);
        // A channel cap of 2 allows one retry of a 4-attempt policy.
        let mut attempts = Attempts::new(Some(config(POLICY)), 2);
        assert!(matches!(
            attempts.after_failure("/s.S/M", &Status::unavailable(""), None),
            Next::After(_)
        ));
        assert_eq!(
            attempts.after_failure("/s.S/M", &Status::unavailable(""), None),
            Next::Stop
        );
        // Another method has no policy.
        let mut attempts = Attempts::new(Some(config(POLICY)), 5);
        assert_eq!(
            attempts.after_failure("/t.T/M", &Status::unavailable(""), None),
            Next::Stop
        );
    }

    #[test]
    fn pushback_sets_the_delay_resets_the_backoff_or_stops() {
        let mut attempts = Attempts::new(Some(config(POLICY)), 5);
        let _ = attempts.after_failure("/s.S/M", &Status::unavailable(""), None);
        let pushed = Status::unavailable("").with_retry_pushback(Duration::from_millis(1500));
        assert_eq!(
            attempts.after_failure("/s.S/M", &pushed, None),
            Next::After(Duration::from_millis(1500))
        );
        // After a pushback the backoff starts again from initialBackoff.
        let Next::After(d) = attempts.after_failure("/s.S/M", &Status::unavailable(""), None)
        else {
            panic!()
        };
        assert!(d < Duration::from_secs(1), "{d:?}");
        let mut attempts = Attempts::new(Some(config(POLICY)), 5);
        let zero = Status::unavailable("").with_retry_pushback(Duration::ZERO);
        assert_eq!(
            attempts.after_failure("/s.S/M", &zero, None),
            Next::After(Duration::ZERO)
        );
        let never = Status::unavailable("").without_retry();
        assert_eq!(attempts.after_failure("/s.S/M", &never, None), Next::Stop);
    }

    #[test]
    fn transparent_retry_happens_once_and_does_not_count() {
        let mut attempts = Attempts::new(Some(config(POLICY)), 5);
        let refused = Status::unavailable("refused").with_transparent_retry();
        assert_eq!(
            attempts.after_failure("/s.S/M", &refused, None),
            Next::Transparent
        );
        assert_eq!(attempts.previous(), 0);
        assert!(matches!(
            attempts.after_failure("/s.S/M", &refused, None),
            Next::After(_)
        ));
        let mut none = Attempts::new(None, 5);
        assert_eq!(
            none.after_failure("/s.S/M", &refused, None),
            Next::Transparent
        );
        assert_eq!(none.after_failure("/s.S/M", &refused, None), Next::Stop);
    }

    #[test]
    fn the_throttle_stops_retries_and_successes_bring_them_back() {
        let throttle = Throttle::new(&RetryThrottling {
            max_tokens: 10,
            token_ratio: 0.5,
        });
        // 10 tokens; retries stop once at or below 5.
        for _ in 0..4 {
            assert!(!throttle.record_failure());
        }
        assert!(throttle.record_failure(), "5 tokens left: throttled");
        let mut attempts = Attempts::new(Some(config(POLICY)), 5);
        assert_eq!(
            attempts.after_failure("/s.S/M", &Status::unavailable(""), Some(&throttle)),
            Next::Stop
        );
        // A non-retryable failure takes no token.
        let before = throttle.tokens.load(Ordering::Acquire);
        let mut attempts = Attempts::new(Some(config(POLICY)), 5);
        let _ = attempts.after_failure("/s.S/M", &Status::internal(""), Some(&throttle));
        assert_eq!(throttle.tokens.load(Ordering::Acquire), before);
        // 4 tokens now; three successes give 5.5: retries resume.
        for _ in 0..3 {
            throttle.record_success();
        }
        assert!(!throttle.is_throttled());
        for _ in 0..100 {
            throttle.record_success();
        }
        assert_eq!(
            throttle.tokens.load(Ordering::Acquire),
            10_000,
            "capped at maxTokens"
        );
    }

    #[test]
    fn the_buffer_refuses_past_its_limit_and_takes_back_releases() {
        let buffer = RetryBuffer::new(100);
        assert!(buffer.reserve(60));
        assert!(!buffer.reserve(41));
        assert!(buffer.reserve(40));
        buffer.release(60);
        assert_eq!(buffer.used(), 40);
        assert!(buffer.reserve(60));
    }
}
