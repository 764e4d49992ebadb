//! `round_robin`: calls rotate over every READY subchannel, one per address
//! (gRPC-Go's `balancer/roundrobin`).
//!
//! - A subchannel is created and connected for each address; each keeps
//!   reconnecting (with its own backoff) while its address is in the list.
//! - The channel is READY while any subchannel is; calls rotate over the
//!   READY ones, starting at a random one, and skip the others.
//! - With no READY subchannel it is CONNECTING while any is connecting, and
//!   TRANSIENT_FAILURE once all have failed; it stays in TRANSIENT_FAILURE
//!   ("sticky") until one connects, failing calls that are not
//!   wait-for-ready with the latest connection error.
//! - A lost connection or failed attempt asks the resolver to re-resolve.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use super::{
    pick_first::dedup, Balancer, Builder, ClientConnState, ErrorPicker, Helper, PickInfo,
    PickResult, Picker, QueuePicker, SubConn, SubConnState,
};
use crate::{connectivity::State, status::Status};

/// The name of the policy in service configs.
pub const NAME: &str = "round_robin";

/// Builds [`round_robin`](self) balancers.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoundRobinBuilder;

impl Builder for RoundRobinBuilder {
    fn name(&self) -> &str {
        NAME
    }

    fn build(&self, helper: Helper) -> Box<dyn Balancer> {
        Box::new(RoundRobin {
            helper,
            subconns: Vec::new(),
            state: State::Connecting,
            last_error: None,
        })
    }
}

struct RoundRobin {
    helper: Helper,
    /// One per address, with its latest state.
    subconns: Vec<(SubConn, State)>,
    state: State,
    last_error: Option<Status>,
}

/// Rotates over a fixed list of READY subchannels.
struct Rotate {
    ready: Vec<SubConn>,
    next: AtomicUsize,
}

impl Picker for Rotate {
    fn pick(&self, _info: &PickInfo<'_>) -> PickResult {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.ready.len();
        PickResult::complete(self.ready[i].clone())
    }
}

impl RoundRobin {
    /// Publishes the state and picker that the subchannels' states make.
    fn regenerate(&mut self) {
        let ready: Vec<SubConn> = self
            .subconns
            .iter()
            .filter(|(_, s)| *s == State::Ready)
            .map(|(sc, _)| sc.clone())
            .collect();
        let (state, picker): (State, Arc<dyn Picker>) = if !ready.is_empty() {
            let start = (crate::backoff::seeded_rng()() * ready.len() as f64) as usize;
            (
                State::Ready,
                Arc::new(Rotate {
                    ready,
                    next: AtomicUsize::new(start),
                }),
            )
        } else if self.state != State::TransientFailure
            && self
                .subconns
                .iter()
                .any(|(_, s)| matches!(s, State::Connecting | State::Idle))
        {
            (State::Connecting, Arc::new(QueuePicker))
        } else {
            let status = self
                .last_error
                .clone()
                .unwrap_or_else(|| Status::unavailable("no address could be connected to"));
            (State::TransientFailure, Arc::new(ErrorPicker(status)))
        };
        self.state = state;
        self.helper.update_state(state, picker);
    }
}

impl Balancer for RoundRobin {
    fn update_client_conn_state(&mut self, state: ClientConnState) -> Result<(), String> {
        let addresses = dedup(state.resolver_state.addresses);
        let mut old = std::mem::take(&mut self.subconns);
        for address in &addresses {
            match old.iter().position(|(s, _)| s.address() == address) {
                Some(i) => self.subconns.push(old.swap_remove(i)),
                None => {
                    let subconn = self.helper.new_subconn(address.clone());
                    subconn.enable_health_check();
                    subconn.connect();
                    self.subconns.push((subconn, State::Idle));
                }
            }
        }
        for (subconn, _) in old {
            subconn.shutdown();
        }
        if addresses.is_empty() {
            self.last_error = Some(Status::unavailable(
                "the name resolver returned no addresses",
            ));
            self.state = State::TransientFailure;
            self.regenerate();
            return Err("the name resolver returned no addresses".into());
        }
        self.regenerate();
        Ok(())
    }

    fn resolver_error(&mut self, error: Status) {
        if self.subconns.is_empty() || self.state == State::TransientFailure {
            self.last_error = Some(error);
            self.state = State::TransientFailure;
            self.regenerate();
        }
    }

    fn subchannel_state(&mut self, subconn: &SubConn, update: SubConnState) {
        let Some(entry) = self.subconns.iter_mut().find(|(s, _)| s == subconn) else {
            return;
        };
        let was = std::mem::replace(&mut entry.1, update.state);
        match update.state {
            State::Idle => {
                // Lost connection or backoff over: connect again.
                subconn.connect();
                if was == State::Ready {
                    self.helper.resolve_now();
                }
            }
            State::TransientFailure => {
                if let Some(error) = update.error {
                    self.last_error = Some(error);
                }
                self.helper.resolve_now();
            }
            _ => {}
        }
        if was != update.state {
            self.regenerate();
        }
    }

    fn exit_idle(&mut self) {
        for (subconn, _) in &self.subconns {
            subconn.connect();
        }
    }
}
