//! Keepalive, as gRPC-Go's `keepalive` package, gRFC A8 (client keepalive
//! and server enforcement) and A9 (connection idleness and age), and
//! `doc/keepalive.md`.
//!
//! - [`ClientParameters`]: the client pings a connection that has been quiet
//!   for `time`; no acknowledgement within `timeout` means the connection is
//!   dead: its calls fail with `UNAVAILABLE` naming the keepalive timeout, and
//!   the channel reconnects. A server that answers with GOAWAY
//!   `ENHANCE_YOUR_CALM` / `too_many_pings` makes the client double `time`.
//! - [`ServerParameters`]: the server pings quiet clients the same way, and
//!   bounds how long a connection may stay idle or live at all.
//! - [`EnforcementPolicy`]: how often clients may ping the server before it
//!   sends GOAWAY `ENHANCE_YOUR_CALM` and closes the connection.

use std::time::Duration;

/// The least keepalive time a client may use; smaller values are raised to
/// it with a warning (gRFC A8).
pub const MIN_CLIENT_TIME: Duration = Duration::from_secs(10);

/// A channel's keepalive settings (gRPC-Go's `keepalive.ClientParameters`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientParameters {
    /// Ping after this long without activity. `None` (the default) turns
    /// client keepalive off. Values under [`MIN_CLIENT_TIME`] are raised to it.
    pub time: Option<Duration>,
    /// How long to wait for the ping's acknowledgement. Default 20 s.
    pub timeout: Duration,
    /// Whether to ping when no call is active. Default `false`.
    pub permit_without_calls: bool,
}

impl Default for ClientParameters {
    fn default() -> ClientParameters {
        ClientParameters {
            time: None,
            timeout: Duration::from_secs(20),
            permit_without_calls: false,
        }
    }
}

impl ClientParameters {
    /// Keepalive on, pinging after `time` of quiet.
    pub fn with_time(mut self, time: Duration) -> ClientParameters {
        self.time = Some(time);
        self
    }

    /// The acknowledgement timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> ClientParameters {
        self.timeout = timeout;
        self
    }

    /// Whether to ping with no call active.
    pub fn with_permit_without_calls(mut self, permit: bool) -> ClientParameters {
        self.permit_without_calls = permit;
        self
    }

    /// The parameters with `time` raised to the minimum.
    pub(crate) fn clamped(mut self) -> ClientParameters {
        if let Some(t) = self.time {
            if t < MIN_CLIENT_TIME {
                crate::logging::in_scope(|| {
                    tracing::warn!(
                        "keepalive time {t:?} is below the minimum {MIN_CLIENT_TIME:?}; using the minimum"
                    )
                });
                self.time = Some(MIN_CLIENT_TIME);
            }
        }
        self
    }
}

/// A server's keepalive and connection-lifetime settings (gRPC-Go's
/// `keepalive.ServerParameters`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerParameters {
    /// Ping a client after this long without activity. Default 2 h.
    pub time: Duration,
    /// How long to wait for the ping's acknowledgement before closing the
    /// connection. Default 20 s.
    pub timeout: Duration,
    /// Send GOAWAY after this long with no active call. Default: never.
    pub max_connection_idle: Option<Duration>,
    /// Send GOAWAY after the connection has lived this long (±10% jitter so
    /// that connections made together do not all go at once). Default:
    /// never.
    pub max_connection_age: Option<Duration>,
    /// After the age GOAWAY, how long calls may still finish before the
    /// connection is closed. Default: no limit.
    pub max_connection_age_grace: Option<Duration>,
}

impl Default for ServerParameters {
    fn default() -> ServerParameters {
        ServerParameters {
            time: Duration::from_secs(2 * 3600),
            timeout: Duration::from_secs(20),
            max_connection_idle: None,
            max_connection_age: None,
            max_connection_age_grace: None,
        }
    }
}

impl ServerParameters {
    /// Ping after `time` of quiet.
    pub fn with_time(mut self, time: Duration) -> ServerParameters {
        self.time = time;
        self
    }

    /// The acknowledgement timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> ServerParameters {
        self.timeout = timeout;
        self
    }

    /// GOAWAY after this long without calls.
    pub fn with_max_connection_idle(mut self, idle: Duration) -> ServerParameters {
        self.max_connection_idle = Some(idle);
        self
    }

    /// GOAWAY after this age (±10%).
    pub fn with_max_connection_age(mut self, age: Duration) -> ServerParameters {
        self.max_connection_age = Some(age);
        self
    }

    /// Close this long after the age GOAWAY.
    pub fn with_max_connection_age_grace(mut self, grace: Duration) -> ServerParameters {
        self.max_connection_age_grace = Some(grace);
        self
    }
}

/// How often clients may ping (gRPC-Go's `keepalive.EnforcementPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnforcementPolicy {
    /// The least time between a client's pings. Default 5 min.
    pub min_time: Duration,
    /// Whether pings are allowed with no active call. Default `false`: then
    /// a client may ping at most once every 2 hours while idle.
    pub permit_without_stream: bool,
}

impl Default for EnforcementPolicy {
    fn default() -> EnforcementPolicy {
        EnforcementPolicy {
            min_time: Duration::from_secs(300),
            permit_without_stream: false,
        }
    }
}

impl EnforcementPolicy {
    /// The least time between pings.
    pub fn with_min_time(mut self, min_time: Duration) -> EnforcementPolicy {
        self.min_time = min_time;
        self
    }

    /// Whether pings are allowed with no active call.
    pub fn with_permit_without_stream(mut self, permit: bool) -> EnforcementPolicy {
        self.permit_without_stream = permit;
        self
    }
}

/// How many strikes (too-early pings) a client gets before GOAWAY (as gRPC-Go).
pub(crate) const MAX_PING_STRIKES: u32 = 2;

/// How often an idle client may ping when pings without streams are not
/// permitted.
pub(crate) const IDLE_PING_INTERVAL: Duration = Duration::from_secs(2 * 3600);

/// `duration` ±10%, from a cheap per-call pseudo-random source.
pub(crate) fn jitter(duration: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(duration.as_nanos() as u64);
    let r = (h.finish() % 2001) as f64 / 1000.0 - 1.0; // [-1, 1]
    duration.mul_f64(1.0 + 0.1 * r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_time_is_clamped() {
        let p = ClientParameters::default()
            .with_time(Duration::from_secs(1))
            .clamped();
        assert_eq!(p.time, Some(MIN_CLIENT_TIME));
        let p = ClientParameters::default()
            .with_time(Duration::from_secs(30))
            .clamped();
        assert_eq!(p.time, Some(Duration::from_secs(30)));
        assert_eq!(ClientParameters::default().clamped().time, None);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let d = Duration::from_secs(100);
        for _ in 0..1000 {
            let j = jitter(d);
            assert!(
                j >= Duration::from_secs(90) && j <= Duration::from_secs(110),
                "{j:?}"
            );
        }
    }

    #[test]
    fn defaults_match_grpc_go() {
        let s = ServerParameters::default();
        assert_eq!(s.time, Duration::from_secs(7200));
        assert_eq!(s.timeout, Duration::from_secs(20));
        let e = EnforcementPolicy::default();
        assert_eq!(e.min_time, Duration::from_secs(300));
        assert!(!e.permit_without_stream);
        assert_eq!(ClientParameters::default().timeout, Duration::from_secs(20));
    }
}
