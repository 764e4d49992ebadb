//! Connectivity states of channels and subchannels (gRPC-Go's
//! `connectivity` package; the semantics are those of grpc/grpc's
//! `doc/connectivity-semantics-and-api.md`).
//!
//! A channel hides name resolution, dialling, handshakes, reconnection and
//! backoff behind five [`State`]s. They move only along these edges (`·` is
//! a change the state machine refuses):
//!
//! ```text
//!  from \ to          IDLE  CONNECTING  READY  TRANSIENT_FAILURE  SHUTDOWN
//!  IDLE                ─        yes       ·           ·              yes
//!  CONNECTING         yes       ─ *      yes         yes             yes
//!  READY              yes       ·        ─ *         yes             yes
//!  TRANSIENT_FAILURE  yes †    yes        ·           ─              yes
//!  SHUTDOWN            ·        ·         ·           ·               ─
//! ```
//!
//! `*` the doc also lists progress *within* CONNECTING or READY; that is not
//! a change of state and wakes no one. `†` not in the doc's table: gRFC A62
//! has a subchannel whose backoff is over go to IDLE (its balancer then asks
//! it to connect), and gRPC-Go does the same.
//!
//! Every failed connection attempt passes through TRANSIENT_FAILURE, however
//! short the backoff, so a watcher may be woken by a change and then find the
//! state it started from (CONNECTING → TRANSIENT_FAILURE → CONNECTING).
//!
//! A channel's own state is what its balancer makes of its subchannels'
//! states, so it can move in ways one connection cannot (with sticky
//! TRANSIENT_FAILURE, straight from TRANSIENT_FAILURE to READY); only
//! SHUTDOWN stays final there.

use std::fmt;

use tokio::sync::watch;

/// The connectivity state of a channel or subchannel.
///
/// Not `#[non_exhaustive]`: the set of states is fixed by the gRPC spec and
/// is the same in every implementation, so exhaustive matches are safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not connected, and not trying to be, because there was no call to
    /// make. A new call (or an explicit request to connect) moves it to
    /// CONNECTING; calls made meanwhile wait for that. A channel becomes
    /// idle after a period without calls (5 minutes in the doc), or when a
    /// server sends GOAWAY while no call is active; a subchannel after its
    /// connection ends or its backoff is over. Channels start here.
    Idle,
    /// Working towards a connection: resolving the name, opening the socket,
    /// running the TLS and HTTP/2 handshakes. Calls wait for the outcome.
    Connecting,
    /// Connected through every handshake, and nothing has failed since.
    /// Calls are sent at once.
    Ready,
    /// The last attempt failed (a refused or timed-out dial, a socket or
    /// handshake error) or a live connection broke. The channel waits out
    /// its backoff and then tries again, so the longer the failures last,
    /// the longer it stays here. Calls fail at once with `UNAVAILABLE`,
    /// except wait-for-ready calls, which keep waiting.
    TransientFailure,
    /// Closed by the application. New calls fail at once; calls already
    /// under way may finish. Final: nothing leaves this state.
    Shutdown,
}

impl State {
    /// The spec's name of the state: `IDLE`, `CONNECTING`, `READY`,
    /// `TRANSIENT_FAILURE` or `SHUTDOWN` (also what `Display` writes).
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Idle => "IDLE",
            State::Connecting => "CONNECTING",
            State::Ready => "READY",
            State::TransientFailure => "TRANSIENT_FAILURE",
            State::Shutdown => "SHUTDOWN",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether one connection (a subchannel) may go from `from` to `to`: the
/// table of `connectivity-semantics-and-api.md`, including its
/// CONNECTING → CONNECTING and READY → READY progress, plus
/// TRANSIENT_FAILURE → IDLE (gRFC A62). See the module docs.
pub(crate) fn is_valid_transition(from: State, to: State) -> bool {
    use State::*;
    match (from, to) {
        (Shutdown, _) => false,
        (_, Shutdown) => true,
        (Idle, Connecting) => true,
        (Connecting, Connecting | Ready | TransientFailure | Idle) => true,
        (Ready, Ready | TransientFailure | Idle) => true,
        (TransientFailure, Connecting | Idle) => true,
        _ => false,
    }
}

/// Which changes a [`StateTracker`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rules {
    /// [`is_valid_transition`]: one connection's life.
    Connection,
    /// Anything but leaving SHUTDOWN: a state derived from others.
    Aggregate,
}

/// The current state of a channel or subchannel, which tasks can read and
/// wait on. Setting the state it already has does nothing (and wakes no
/// one); each real change wakes every waiter.
///
/// A change the rules refuse is a bug in ferrogrpc: it panics in debug
/// builds, and in release builds is logged and ignored.
#[derive(Debug)]
pub(crate) struct StateTracker {
    tx: watch::Sender<State>,
    rules: Rules,
}

impl StateTracker {
    /// A tracker for one connection's life (a subchannel's), starting at
    /// `initial`, that accepts only the changes of
    /// [`is_valid_transition`].
    pub(crate) fn new(initial: State) -> StateTracker {
        StateTracker::with_rules(initial, Rules::Connection)
    }

    /// A tracker for a state derived from other states (a channel's, as its
    /// balancer reports it), starting at `initial`: it accepts any change
    /// except one out of SHUTDOWN.
    pub(crate) fn aggregate(initial: State) -> StateTracker {
        StateTracker::with_rules(initial, Rules::Aggregate)
    }

    fn with_rules(initial: State, rules: Rules) -> StateTracker {
        StateTracker {
            tx: watch::Sender::new(initial),
            rules,
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> State {
        *self.tx.borrow()
    }

    /// Moves to `to`. Returns whether the state changed: `false` when it
    /// already was `to`, or when the change is refused.
    pub(crate) fn set(&self, to: State) -> bool {
        let rules = self.rules;
        let mut refused = None;
        // The check and the change happen under the watch's lock, so
        // concurrent setters are checked against each other's results.
        let changed = self.tx.send_if_modified(|current| {
            let from = *current;
            if from == to {
                return false;
            }
            let allowed = match rules {
                Rules::Connection => is_valid_transition(from, to),
                Rules::Aggregate => from != State::Shutdown,
            };
            if allowed {
                *current = to;
            } else {
                refused = Some(from);
            }
            allowed
        });
        if let Some(from) = refused {
            // Outside the lock, so a debug panic leaves the tracker usable.
            crate::logging::in_scope(|| {
                tracing::error!("refused connectivity state change {from} -> {to}")
            });
            debug_assert!(false, "invalid connectivity state change {from} -> {to}");
        }
        changed
    }

    /// A receiver that sees each new state (only the latest one if several
    /// changes happen between looks).
    #[cfg(test)]
    pub(crate) fn subscribe(&self) -> watch::Receiver<State> {
        self.tx.subscribe()
    }

    /// Waits until the state is no longer `from` and returns the state then
    /// (gRPC-Go's `WaitForStateChange`, which callers bound with a timeout).
    /// Returns at once if the state already differs. Otherwise it returns
    /// at the first change; if the state has come back to `from` before the
    /// waiter runs (say CONNECTING → TRANSIENT_FAILURE → CONNECTING), it
    /// returns `from` rather than miss the change, as the spec describes.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future loses nothing; the state is kept
    /// here, and calling again sees it.
    pub(crate) async fn wait_for_state_change(&self, from: State) -> State {
        // Subscribing marks the current state as seen, so `changed` waits
        // for a change made after this point.
        let mut rx = self.tx.subscribe();
        let now = *rx.borrow_and_update();
        if now != from {
            return now;
        }
        // An error would mean the sender is gone, but `self` owns it.
        let _ = rx.changed().await;
        let now = *rx.borrow_and_update();
        now
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::State::*;
    use super::*;

    const ALL: [State; 5] = [Idle, Connecting, Ready, TransientFailure, Shutdown];

    #[test]
    fn display_uses_the_spec_names() {
        let names: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            names,
            [
                "IDLE",
                "CONNECTING",
                "READY",
                "TRANSIENT_FAILURE",
                "SHUTDOWN"
            ]
        );
        assert_eq!(format!("{:>8}", Ready), "READY", "padding is not applied");
    }

    #[test]
    fn transition_table() {
        // Rows: from; columns: to, in the order of ALL.
        let table = [
            [false, true, false, false, true],   // IDLE
            [true, true, true, true, true],      // CONNECTING
            [true, false, true, true, true],     // READY
            [true, true, false, false, true],    // TRANSIENT_FAILURE
            [false, false, false, false, false], // SHUTDOWN
        ];
        for (from, row) in ALL.iter().zip(table) {
            for (to, want) in ALL.iter().zip(row) {
                assert_eq!(is_valid_transition(*from, *to), want, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn a_connection_lifecycle_is_accepted() {
        let t = StateTracker::new(Idle);
        for to in [
            Connecting,
            TransientFailure,
            Idle,
            Connecting,
            TransientFailure,
            Connecting,
            Ready,
            Idle,
            Connecting,
            Ready,
            TransientFailure,
            Connecting,
            Shutdown,
        ] {
            assert!(t.set(to), "-> {to}");
            assert_eq!(t.state(), to);
        }
    }

    #[test]
    fn setting_the_same_state_notifies_no_one() {
        let t = StateTracker::new(Idle);
        let mut rx = t.subscribe();
        assert!(!t.set(Idle));
        assert!(!rx.has_changed().unwrap());
        assert!(t.set(Connecting));
        assert!(!t.set(Connecting));
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), Connecting);
        assert!(t.set(Shutdown));
        assert!(!t.set(Shutdown), "shutting down twice is harmless");
        assert_eq!(*rx.borrow_and_update(), Shutdown);
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "IDLE -> READY"))]
    fn an_invalid_change_is_refused() {
        let t = StateTracker::new(Idle);
        assert!(!t.set(Ready));
        assert_eq!(t.state(), Idle);
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "SHUTDOWN -> CONNECTING"))]
    fn shutdown_is_final_even_for_an_aggregate() {
        let t = StateTracker::aggregate(Shutdown);
        assert!(!t.set(Connecting));
        assert_eq!(t.state(), Shutdown);
    }

    #[test]
    fn an_aggregate_moves_freely_until_shutdown() {
        let t = StateTracker::aggregate(Idle);
        // Sticky TRANSIENT_FAILURE then a subchannel connects; round robin
        // with its only READY subchannel gone.
        for to in [TransientFailure, Ready, Connecting, Idle, Ready, Shutdown] {
            assert!(t.set(to), "-> {to}");
        }
    }

    #[tokio::test]
    async fn wait_returns_at_once_when_the_state_differs() {
        let t = StateTracker::new(Connecting);
        assert_eq!(t.wait_for_state_change(Idle).await, Connecting);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_returns_at_the_change() {
        let t = Arc::new(StateTracker::new(Idle));
        let setter = {
            let t = t.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                t.set(Connecting);
                tokio::time::sleep(Duration::from_secs(3)).await;
                t.set(Ready);
            })
        };
        let t0 = tokio::time::Instant::now();
        assert_eq!(t.wait_for_state_change(Idle).await, Connecting);
        assert_eq!(t0.elapsed().as_secs(), 3);
        assert_eq!(t.wait_for_state_change(Connecting).await, Ready);
        assert_eq!(t0.elapsed().as_secs(), 6);
        setter.await.unwrap();
    }

    #[tokio::test]
    async fn a_round_trip_still_wakes_the_waiter() {
        let t = StateTracker::new(Connecting);
        let wait = t.wait_for_state_change(Connecting);
        tokio::pin!(wait);
        // Poll once so the waiter is registered at CONNECTING.
        assert!(futures_poll_once(wait.as_mut()).await.is_none());
        t.set(TransientFailure);
        t.set(Connecting);
        assert_eq!(wait.await, Connecting);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_is_cancel_safe() {
        let t = StateTracker::new(Idle);
        let timed_out =
            tokio::time::timeout(Duration::from_secs(1), t.wait_for_state_change(Idle)).await;
        assert!(timed_out.is_err());
        t.set(Connecting);
        // A change made while no one waited is seen by the next wait.
        assert_eq!(t.wait_for_state_change(Idle).await, Connecting);
    }

    #[tokio::test]
    async fn waiters_are_send_and_all_woken() {
        let t = Arc::new(StateTracker::new(Ready));
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                tokio::spawn(async move { t.wait_for_state_change(Ready).await })
            })
            .collect();
        tokio::task::yield_now().await;
        t.set(TransientFailure);
        for w in waiters {
            assert_eq!(w.await.unwrap(), TransientFailure);
        }
    }

    /// Polls `fut` once: `Some` with its output if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(fut: F) -> Option<F::Output> {
        let mut fut = fut;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut fut).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
