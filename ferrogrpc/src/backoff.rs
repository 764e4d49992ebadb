//! Connection backoff: how long a channel waits before trying again to
//! connect to an address that keeps failing (gRPC-Go's `backoff` package and
//! the `MinConnectTimeout` of its `ConnectParams`; the algorithm is the one
//! of grpc/grpc's `doc/connection-backoff.md`).
//!
//! The *start times* of connection attempts back off exponentially, with
//! jitter, up to a cap:
//!
//! - the first attempt starts at once; the next may start
//!   [`base_delay`](Config::base_delay) after the first one *started*;
//! - each later attempt widens that gap by [`multiplier`](Config::multiplier),
//!   up to [`max_delay`](Config::max_delay), and moves it by a uniformly
//!   random ±[`jitter`](Config::jitter) of itself, so that clients which lost
//!   their server together do not all come back together;
//! - an attempt that fails before its gap is over waits for the rest of it;
//!   one that fails later is followed by the next attempt at once;
//! - every attempt may take at least
//!   [`min_connect_timeout`](Config::min_connect_timeout), and longer when the
//!   gap has grown beyond that.
//!
//! With the defaults and no jitter, attempts to an address that refuses at
//! once start at 0 s, 1 s, 2.6 s, 5.16 s, 9.26 s, 15.81 s, … with gaps of
//! 1, 1.6, 2.56, 4.1, 6.55, 10.5, 16.8, 26.8, 42.9, 68.7, 110 s, then 120 s
//! for ever. The backoff starts over once a connection becomes READY.

use std::{
    fmt,
    future::Future,
    hash::{BuildHasher, Hasher},
    time::Duration,
};

use tokio::time::Instant;

/// The least [`base_delay`](Config::base_delay) and
/// [`max_delay`](Config::max_delay): a zero delay would make a channel dial
/// an address that refuses at once in a busy loop.
const MIN_DELAY: Duration = Duration::from_millis(1);

/// Reconnection backoff settings (gRPC-Go's `backoff.Config` together with
/// `ConnectParams.MinConnectTimeout`).
///
/// The defaults are the parameters of `doc/connection-backoff.md`, which are
/// also gRPC-Go's `backoff.DefaultConfig` and its default minimum connect
/// timeout. Values that make no sense (a multiplier below 1, a jitter outside
/// `[0, 1]`, a base delay above the maximum, a zero delay) are corrected,
/// with a warning, when a channel starts using the configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// How long after the start of the first failed attempt the next may
    /// start (the doc's `INITIAL_BACKOFF`). Default 1 s. At least 1 ms and
    /// at most [`max_delay`](Config::max_delay).
    pub base_delay: Duration,
    /// How much each gap between attempts grows over the previous one (the
    /// doc's `MULTIPLIER`). Default 1.6. At least 1 (1 keeps the gap at
    /// `base_delay`).
    pub multiplier: f64,
    /// How far each gap (but the first) is moved at random, as a fraction of
    /// it: a gap `g` becomes uniformly random between `g·(1-jitter)` and
    /// `g·(1+jitter)` (the doc's `JITTER`). Default 0.2. Between 0 and 1.
    pub jitter: f64,
    /// The largest gap before jitter (the doc's `MAX_BACKOFF`), so an actual
    /// wait can reach `max_delay · (1 + jitter)`. Default 120 s. At least
    /// 1 ms.
    pub max_delay: Duration,
    /// The least time a connection attempt is given to complete (the doc's
    /// `MIN_CONNECT_TIMEOUT`); an attempt gets more when the current gap is
    /// longer. Default 20 s.
    pub min_connect_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            base_delay: Duration::from_secs(1),
            multiplier: 1.6,
            jitter: 0.2,
            max_delay: Duration::from_secs(120),
            min_connect_timeout: Duration::from_secs(20),
        }
    }
}

impl Config {
    /// The gap after the first attempt.
    pub fn with_base_delay(mut self, base_delay: Duration) -> Config {
        self.base_delay = base_delay;
        self
    }

    /// The growth factor of the gap between attempts.
    pub fn with_multiplier(mut self, multiplier: f64) -> Config {
        self.multiplier = multiplier;
        self
    }

    /// The random spread of each gap, as a fraction of it.
    pub fn with_jitter(mut self, jitter: f64) -> Config {
        self.jitter = jitter;
        self
    }

    /// The largest gap between attempts, before jitter.
    pub fn with_max_delay(mut self, max_delay: Duration) -> Config {
        self.max_delay = max_delay;
        self
    }

    /// The least time given to one connection attempt.
    pub fn with_min_connect_timeout(mut self, min_connect_timeout: Duration) -> Config {
        self.min_connect_timeout = min_connect_timeout;
        self
    }

    /// The configuration with nonsense corrected, each correction logged as
    /// a warning. A valid configuration comes back unchanged (and silently),
    /// so calling this again is harmless.
    pub(crate) fn validated(mut self) -> Config {
        let default = Config::default();
        if self.multiplier.is_nan() {
            tracing::warn!(
                "backoff multiplier is NaN; using the default {}",
                default.multiplier
            );
            self.multiplier = default.multiplier;
        } else if self.multiplier < 1.0 {
            tracing::warn!(
                "backoff multiplier {} is below 1; using 1 (a constant delay)",
                self.multiplier
            );
            self.multiplier = 1.0;
        }
        if self.jitter.is_nan() {
            tracing::warn!(
                "backoff jitter is NaN; using the default {}",
                default.jitter
            );
            self.jitter = default.jitter;
        } else if !(0.0..=1.0).contains(&self.jitter) {
            let clamped = self.jitter.clamp(0.0, 1.0);
            tracing::warn!(
                "backoff jitter {} is outside [0, 1]; using {clamped}",
                self.jitter
            );
            self.jitter = clamped;
        }
        if self.max_delay < MIN_DELAY {
            tracing::warn!(
                "backoff max delay {:?} is below {MIN_DELAY:?}; using {MIN_DELAY:?}",
                self.max_delay
            );
            self.max_delay = MIN_DELAY;
        }
        if self.base_delay < MIN_DELAY {
            tracing::warn!(
                "backoff base delay {:?} is below {MIN_DELAY:?}; using {MIN_DELAY:?}",
                self.base_delay
            );
            self.base_delay = MIN_DELAY;
        }
        if self.base_delay > self.max_delay {
            tracing::warn!(
                "backoff base delay {:?} is above the max delay {:?}; using the max delay",
                self.base_delay,
                self.max_delay
            );
            self.base_delay = self.max_delay;
        }
        self
    }
}

/// One connection attempt, as planned by [`Backoff::start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// 1 for the first attempt after [`Backoff::new`] or [`Backoff::reset`].
    pub(crate) number: u32,
    /// Give up on this attempt at this time (the doc's
    /// `Max(current_deadline, now() + MIN_CONNECT_TIMEOUT)`).
    pub(crate) connect_deadline: Instant,
    /// If this attempt fails, the next one starts no earlier than this (the
    /// doc's `current_deadline`).
    pub(crate) retry_at: Instant,
    /// The gap before jitter (the doc's `current_backoff`).
    pub(crate) backoff: Duration,
}

/// The backoff of one address (gRPC-Go keeps one per `addrConn`): a
/// deterministic core that is told the time and never sleeps, so tests drive
/// it with chosen instants.
///
/// Use: [`start`](Backoff::start) each attempt; bound it by the attempt's
/// `connect_deadline`; on failure wait for [`retry_at`](Backoff::retry_at)
/// (or [`sleep_until_next`](Backoff::sleep_until_next)) and start again; on
/// success [`reset`](Backoff::reset) once the connection is READY (the
/// server's SETTINGS arrived). `reset` is also gRPC-Go's
/// `ResetConnectBackoff`: the next attempt may start at once.
pub(crate) struct Backoff {
    config: Config,
    /// Uniform in `[0, 1)`.
    rng: Box<dyn FnMut() -> f64 + Send>,
    /// The latest attempt since creation or reset.
    current: Option<Attempt>,
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("config", &self.config)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl Backoff {
    /// A backoff with `config` (validated) and a randomly seeded jitter
    /// source, so backoffs created together still disperse.
    pub(crate) fn new(config: Config) -> Backoff {
        Backoff::with_rng(config, seeded_rng())
    }

    /// A backoff whose jitter comes from `rng`, which should return values
    /// uniform in `[0, 1)` (others are clamped into that range). Tests pass
    /// a fixed sequence; `|| 0.5` means no jitter.
    pub(crate) fn with_rng(config: Config, rng: impl FnMut() -> f64 + Send + 'static) -> Backoff {
        Backoff {
            config: crate::logging::in_scope(|| config.validated()),
            rng: Box::new(rng),
            current: None,
        }
    }

    /// The configuration in use (after validation).
    #[cfg(test)]
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Plans an attempt that starts `now`: the first after creation or reset
    /// gets `base_delay` before the next may start (no jitter, as the doc);
    /// each later one gets the previous gap before jitter times
    /// `multiplier`, capped at `max_delay`, then jittered.
    pub(crate) fn start(&mut self, now: Instant) -> Attempt {
        let (number, backoff, gap) = match self.current {
            None => (1, self.config.base_delay, self.config.base_delay),
            Some(previous) => {
                let backoff = self.grow(previous.backoff);
                (
                    previous.number.saturating_add(1),
                    backoff,
                    self.jittered(backoff),
                )
            }
        };
        let retry_at = later(now, gap);
        let attempt = Attempt {
            number,
            connect_deadline: retry_at.max(later(now, self.config.min_connect_timeout)),
            retry_at,
            backoff,
        };
        self.current = Some(attempt);
        attempt
    }

    /// When the next attempt should start if the current one failed at
    /// `now`: its `retry_at`, or `now` if that has passed (or no attempt was
    /// started since the last reset).
    pub(crate) fn retry_at(&self, now: Instant) -> Instant {
        self.current.map_or(now, |a| a.retry_at.max(now))
    }

    /// Sleeps (on tokio's clock) until the next attempt should start, the
    /// current one having failed, and returns the time then. The wake-up
    /// time is fixed when this is called; the future does not borrow the
    /// backoff, so it can race a reset in a `select!`.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it changes nothing.
    pub(crate) fn sleep_until_next(&self) -> impl Future<Output = Instant> + Send + 'static {
        let at = self.retry_at(Instant::now());
        async move {
            tokio::time::sleep_until(at).await;
            Instant::now()
        }
    }

    /// Starts over: the next attempt is planned as the first one. Call this
    /// when a connection becomes READY, or when the application asks to
    /// reconnect without waiting.
    pub(crate) fn reset(&mut self) {
        self.current = None;
    }

    /// `Min(backoff * MULTIPLIER, MAX_BACKOFF)`, without overflow.
    fn grow(&self, backoff: Duration) -> Duration {
        let max = self.config.max_delay;
        let grown = backoff.as_secs_f64() * self.config.multiplier;
        if grown >= max.as_secs_f64() {
            return max;
        }
        Duration::try_from_secs_f64(grown).map_or(max, |d| d.min(max))
    }

    /// `backoff + UniformRandom(-JITTER * backoff, JITTER * backoff)`.
    fn jittered(&mut self, backoff: Duration) -> Duration {
        let jitter = self.config.jitter;
        if jitter == 0.0 {
            return backoff;
        }
        let r = (self.rng)();
        // Keep a misbehaving source inside [0, 1); NaN counts as the middle.
        let r = if r.is_nan() {
            0.5
        } else {
            r.clamp(0.0, 1.0 - f64::EPSILON)
        };
        let factor = 1.0 + jitter * (2.0 * r - 1.0);
        Duration::try_from_secs_f64(backoff.as_secs_f64() * factor).unwrap_or(Duration::MAX)
    }
}

/// `now + d`, saturating at a far future instead of overflowing.
fn later(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// A xorshift64* generator mapped to `[0, 1)`, seeded from std's per-process
/// random hash keys (which also differ per call) and the wall clock. Not for
/// cryptography; only to spread reconnection times.
pub(crate) fn seeded_rng() -> impl FnMut() -> f64 + Send + Sync {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(since_epoch);
    // xorshift never leaves (or reaches) the all-zero state.
    let mut state = hasher.finish() | 1;
    move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let x = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        // The top 53 bits, as a fraction: exactly representable, below 1.
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// `a` and `b` differ by at most `tolerance`.
    fn close(a: Duration, b: Duration, tolerance: Duration) -> bool {
        a.abs_diff(b) <= tolerance
    }

    fn no_jitter() -> Backoff {
        Backoff::with_rng(Config::default(), || 0.5)
    }

    /// The nominal gaps of the defaults: 1 s × 1.6ⁿ, capped at 120 s.
    const NOMINAL: [f64; 13] = [
        1.0,
        1.6,
        2.56,
        4.096,
        6.5536,
        10.48576,
        16.777216,
        26.8435456,
        42.94967296,
        68.719476736,
        109.9511627776,
        120.0,
        120.0,
    ];

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.base_delay, Duration::from_secs(1));
        assert_eq!(c.multiplier, 1.6);
        assert_eq!(c.jitter, 0.2);
        assert_eq!(c.max_delay, Duration::from_secs(120));
        assert_eq!(c.min_connect_timeout, Duration::from_secs(20));
        assert_eq!(c.validated(), c);
    }

    #[test]
    fn setters_set() {
        let c = Config::default()
            .with_base_delay(secs(0.5))
            .with_multiplier(2.0)
            .with_jitter(0.1)
            .with_max_delay(secs(30.0))
            .with_min_connect_timeout(secs(5.0));
        assert_eq!(c.base_delay, secs(0.5));
        assert_eq!(c.multiplier, 2.0);
        assert_eq!(c.jitter, 0.1);
        assert_eq!(c.max_delay, secs(30.0));
        assert_eq!(c.min_connect_timeout, secs(5.0));
        assert_eq!(c.validated(), c);
    }

    #[test]
    fn delays_without_jitter_follow_the_spec() {
        let mut b = Backoff::with_rng(Config::default().with_jitter(0.0), || unreachable!());
        let mut now = Instant::now();
        for (i, nominal) in NOMINAL.iter().enumerate() {
            let attempt = b.start(now);
            assert_eq!(attempt.number, i as u32 + 1);
            let tolerance = Duration::from_micros(1);
            assert!(
                close(attempt.backoff, secs(*nominal), tolerance),
                "attempt {}: backoff {:?}, want {nominal} s",
                attempt.number,
                attempt.backoff
            );
            assert_eq!(attempt.retry_at - now, attempt.backoff);
            // The attempt is refused at once: the next starts at retry_at.
            now = b.retry_at(now);
            assert_eq!(now, attempt.retry_at);
        }
    }

    #[test]
    fn first_gap_has_no_jitter() {
        // The smallest random value gives the largest negative jitter.
        let mut b = Backoff::with_rng(Config::default(), || 0.0);
        let now = Instant::now();
        assert_eq!(b.start(now).retry_at, now + secs(1.0));
        let second = b.start(now);
        assert_eq!(second.backoff, secs(1.6));
        assert!(close(
            second.retry_at - now,
            secs(1.28),
            Duration::from_nanos(10)
        ));
    }

    #[test]
    fn jitter_stays_within_bounds_and_spreads() {
        let mut b = Backoff::new(Config::default());
        let now = Instant::now();
        b.start(now);
        let (mut lowest, mut highest, mut sum) = (f64::MAX, f64::MIN, 0.0);
        const N: usize = 10_000;
        for _ in 0..N {
            let attempt = b.start(now);
            let ratio = (attempt.retry_at - now).as_secs_f64() / attempt.backoff.as_secs_f64();
            assert!(
                (0.8 - 1e-9..1.2 + 1e-9).contains(&ratio),
                "gap {:?} is not within ±20% of {:?}",
                attempt.retry_at - now,
                attempt.backoff
            );
            lowest = lowest.min(ratio);
            highest = highest.max(ratio);
            sum += ratio;
        }
        // Uniform over the whole range: the extremes are reached, the mean
        // is the nominal value (σ of the mean ≈ 0.0012).
        assert!(lowest < 0.81 && highest > 1.19, "{lowest}..{highest}");
        assert!((sum / N as f64 - 1.0).abs() < 0.01);
    }

    #[test]
    fn jitter_extremes() {
        let now = Instant::now();
        for (r, want) in [(0.0, 0.8), (0.5, 1.0), (1.0 - 1e-12, 1.2)] {
            let mut b = Backoff::with_rng(Config::default().with_base_delay(secs(10.0)), move || r);
            b.start(now);
            let attempt = b.start(now);
            assert!(
                close(
                    attempt.retry_at - now,
                    secs(16.0 * want),
                    Duration::from_micros(1)
                ),
                "r = {r}: {:?}",
                attempt.retry_at - now
            );
        }
    }

    #[test]
    fn bad_random_values_are_clamped() {
        let now = Instant::now();
        for r in [-3.0, 7.0, f64::NAN, f64::INFINITY] {
            let mut b = Backoff::with_rng(Config::default(), move || r);
            b.start(now);
            let gap = (b.start(now).retry_at - now).as_secs_f64();
            assert!(
                (1.6 * 0.8 - 1e-9..=1.6 * 1.2 + 1e-9).contains(&gap),
                "r = {r}: {gap}"
            );
        }
    }

    #[test]
    fn backoffs_created_together_disperse() {
        let now = Instant::now();
        let gaps: Vec<Instant> = (0..8)
            .map(|_| {
                let mut b = Backoff::new(Config::default());
                b.start(now);
                b.start(now).retry_at
            })
            .collect();
        let mut distinct = gaps.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 1, "{gaps:?}");
    }

    #[test]
    fn min_connect_timeout_applies() {
        let mut b = no_jitter();
        let mut now = Instant::now();
        for nominal in NOMINAL {
            let attempt = b.start(now);
            let timeout = attempt.connect_deadline - now;
            if nominal < 20.0 {
                assert_eq!(timeout, secs(20.0), "backoff {nominal}");
            } else {
                // Longer gaps give the attempt longer.
                assert_eq!(attempt.connect_deadline, attempt.retry_at);
                assert!(close(timeout, secs(nominal), Duration::from_micros(1)));
            }
            now = attempt.retry_at;
        }
    }

    #[test]
    fn a_slow_failure_is_retried_at_once() {
        let mut b = no_jitter();
        let t0 = Instant::now();
        let first = b.start(t0);
        assert_eq!(first.retry_at, t0 + secs(1.0));
        // Failing within the gap waits for the rest of it...
        assert_eq!(b.retry_at(t0 + secs(0.25)), t0 + secs(1.0));
        // ...failing after it does not wait at all.
        let failed = t0 + secs(5.0);
        assert_eq!(b.retry_at(failed), failed);
        // The next gap counts from the start of the next attempt.
        let second = b.start(failed);
        assert_eq!(second.retry_at, failed + secs(1.6));
    }

    #[test]
    fn reset_starts_over() {
        let mut b = no_jitter();
        let now = Instant::now();
        assert_eq!(
            b.retry_at(now),
            now,
            "nothing to wait for before an attempt"
        );
        for _ in 0..5 {
            b.start(now);
        }
        assert!(b.start(now).backoff > secs(10.0));
        b.reset();
        assert_eq!(b.retry_at(now), now);
        let attempt = b.start(now);
        assert_eq!(attempt.number, 1);
        assert_eq!(attempt.backoff, secs(1.0));
        assert_eq!(attempt.retry_at, now + secs(1.0));
        assert_eq!(b.start(now).backoff, secs(1.6));
    }

    #[test]
    fn nonsense_is_corrected() {
        let d = Config::default();
        assert_eq!(d.with_multiplier(0.5).validated().multiplier, 1.0);
        assert_eq!(d.with_multiplier(f64::NAN).validated().multiplier, 1.6);
        assert_eq!(d.with_jitter(-0.1).validated().jitter, 0.0);
        assert_eq!(d.with_jitter(1.5).validated().jitter, 1.0);
        assert_eq!(d.with_jitter(f64::NAN).validated().jitter, 0.2);
        let c = d.with_base_delay(secs(200.0)).validated();
        assert_eq!((c.base_delay, c.max_delay), (secs(120.0), secs(120.0)));
        assert_eq!(
            d.with_base_delay(Duration::ZERO).validated().base_delay,
            MIN_DELAY
        );
        let c = d.with_max_delay(Duration::ZERO).validated();
        assert_eq!((c.base_delay, c.max_delay), (MIN_DELAY, MIN_DELAY));
        // The backoff validates what it is given.
        let b = Backoff::new(d.with_multiplier(0.0));
        assert_eq!(b.config().multiplier, 1.0);
    }

    #[test]
    fn multiplier_one_keeps_the_gap() {
        let mut b = Backoff::with_rng(Config::default().with_multiplier(1.0), || 0.5);
        let now = Instant::now();
        for _ in 0..20 {
            assert_eq!(b.start(now).backoff, secs(1.0));
        }
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let config = Config::default()
            .with_multiplier(1e300)
            .with_jitter(1.0)
            .with_max_delay(Duration::MAX)
            .with_min_connect_timeout(Duration::MAX);
        let mut b = Backoff::with_rng(config, || 0.999);
        let now = Instant::now();
        for _ in 0..10 {
            let attempt = b.start(now);
            assert!(attempt.retry_at >= now && attempt.connect_deadline >= attempt.retry_at);
        }
        assert_eq!(b.start(now).backoff, Duration::MAX);
    }

    /// How an attempt ends in the clock-driven tests.
    #[derive(Clone, Copy)]
    enum Dial {
        /// Refused at once.
        Refused,
        /// Never answers: only the connect deadline ends it.
        Hangs,
    }

    /// Drives `attempts` failing attempts the way a subchannel will, on
    /// tokio's (paused) clock, and returns when each started, from the
    /// first, with the attempts themselves.
    async fn run(mut b: Backoff, dial: Dial, attempts: usize) -> Vec<(Duration, Attempt)> {
        let t0 = Instant::now();
        let mut log = Vec::new();
        for _ in 0..attempts {
            let attempt = b.start(Instant::now());
            log.push((Instant::now() - t0, attempt));
            let connect = async {
                match dial {
                    Dial::Refused => Err("connection refused"),
                    Dial::Hangs => std::future::pending::<Result<(), &str>>().await,
                }
            };
            let result = tokio::time::timeout_at(attempt.connect_deadline, connect).await;
            assert!(!matches!(result, Ok(Ok(()))));
            b.sleep_until_next().await;
        }
        log
    }

    /// tokio's timer rounds wake-ups up to the next millisecond.
    const TICK: Duration = Duration::from_millis(1);

    /// `actual` is `want` or up to a timer tick later.
    fn on_time(actual: Duration, want: Duration) -> bool {
        actual + Duration::from_micros(1) >= want && actual <= want + TICK
    }

    #[tokio::test(start_paused = true)]
    async fn refused_attempts_start_on_the_spec_schedule() {
        let log = run(no_jitter(), Dial::Refused, NOMINAL.len()).await;
        // Start times: the running sums of the gaps.
        let starts = [0.0, 1.0, 2.6, 5.16, 9.256, 15.8096, 26.29536];
        for (want, (at, _)) in starts.iter().zip(&log) {
            let tolerance = TICK * log.len() as u32;
            assert!(close(*at, secs(*want), tolerance), "{at:?} vs {want} s");
        }
        // Each gap, from one start to the next, is the nominal backoff.
        for (pair, nominal) in log.windows(2).zip(NOMINAL) {
            let gap = pair[1].0 - pair[0].0;
            assert!(on_time(gap, secs(nominal)), "{gap:?} vs {nominal} s");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hanging_attempts_get_the_min_connect_timeout() {
        let log = run(no_jitter(), Dial::Hangs, NOMINAL.len()).await;
        // Seven attempts time out after 20 s each; then the gap (26.84 s,
        // 42.95 s, …) exceeds the minimum and sets the pace.
        for (i, (at, _)) in log.iter().take(8).enumerate() {
            let want = secs(20.0 * i as f64);
            assert!(close(*at, want, TICK * 8), "attempt {}: {at:?}", i + 1);
        }
        for (pair, nominal) in log.windows(2).zip(NOMINAL) {
            let gap = pair[1].0 - pair[0].0;
            assert!(
                on_time(gap, secs(nominal.max(20.0))),
                "{gap:?} vs {nominal} s"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn jittered_attempts_stay_within_bounds() {
        let log = run(Backoff::new(Config::default()), Dial::Refused, 40).await;
        for (pair, i) in log.windows(2).zip(0..) {
            let gap = (pair[1].0 - pair[0].0).as_secs_f64();
            let nominal = pair[0].1.backoff.as_secs_f64();
            assert!((nominal - NOMINAL[i.min(NOMINAL.len() - 1)]).abs() < 1e-6);
            let (low, high) = if i == 0 {
                (nominal, nominal)
            } else {
                (nominal * 0.8, nominal * 1.2)
            };
            assert!(
                gap >= low - 1e-6 && gap <= high + TICK.as_secs_f64(),
                "gap {gap} s for backoff {nominal} s"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reset_during_the_wait_retries_at_once() {
        let mut b = no_jitter();
        let t0 = Instant::now();
        for _ in 0..6 {
            b.start(Instant::now());
        }
        let sleep = b.sleep_until_next();
        let reset = async {
            tokio::time::sleep(secs(2.0)).await;
        };
        tokio::select! {
            _ = sleep => panic!("the 10 s wait should have been cut short"),
            _ = reset => b.reset(),
        }
        let attempt = b.start(Instant::now());
        assert_eq!(attempt.number, 1);
        assert!(on_time(Instant::now() - t0, secs(2.0)));
        assert!(on_time(b.sleep_until_next().await - t0, secs(3.0)));
    }
}
