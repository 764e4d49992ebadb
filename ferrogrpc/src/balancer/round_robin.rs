//! `round_robin`: calls rotate over every READY endpoint (gRPC-Go's
//! `balancer/roundrobin`, with gRFC A61's endpoints).
//!
//! - Each endpoint of the resolver's state gets one turn, however many
//!   addresses it has. Within an endpoint the addresses are tried in order,
//!   one at a time: the endpoint connects to its current address, and a
//!   failed attempt moves it to the next (wrapping around), so an endpoint
//!   with a dead IPv6 address and a live IPv4 one ends up on the live one.
//!   A subchannel is created per address (kept with its own backoff while
//!   the address is listed) but only the endpoint's current one is asked to
//!   connect. This is what A61 asks of round_robin in effect (a pick_first
//!   per endpoint) without Happy Eyeballs inside an endpoint: the next
//!   address is tried after a failure, not after 250 ms.
//! - The channel is READY while any endpoint is; calls rotate over the
//!   READY ones, starting at a random one, and skip the others.
//! - With no READY endpoint it is CONNECTING while any is connecting, and
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
            endpoints: Vec::new(),
            state: State::Connecting,
            last_error: None,
        })
    }
}

struct RoundRobin {
    helper: Helper,
    /// One per endpoint, in the resolver's order.
    endpoints: Vec<EndpointConns>,
    state: State,
    last_error: Option<Status>,
}

/// An endpoint's subchannels, one per address, with their latest states.
struct EndpointConns {
    subconns: Vec<(SubConn, State)>,
    /// The address being used or tried.
    current: usize,
}

impl EndpointConns {
    /// The subchannel calls use, if the endpoint is READY.
    fn ready(&self) -> Option<&SubConn> {
        self.subconns
            .get(self.current)
            .filter(|(_, s)| *s == State::Ready)
            .map(|(sc, _)| sc)
    }

    fn connecting(&self) -> bool {
        self.subconns
            .get(self.current)
            .is_some_and(|(_, s)| matches!(s, State::Connecting | State::Idle))
    }

    fn connect_current(&self) {
        if let Some((subconn, _)) = self.subconns.get(self.current) {
            subconn.connect();
        }
    }
}

/// Rotates over a fixed list of READY subchannels, one per endpoint.
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
    /// Publishes the state and picker that the endpoints' states make.
    fn regenerate(&mut self) {
        let ready: Vec<SubConn> = self
            .endpoints
            .iter()
            .filter_map(|e| e.ready().cloned())
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
            && self.endpoints.iter().any(EndpointConns::connecting)
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
        // Subchannels of addresses that stay are kept, whichever endpoint
        // they move to; an address listed twice is used once.
        let mut old: Vec<(SubConn, State)> = std::mem::take(&mut self.endpoints)
            .into_iter()
            .flat_map(|e| e.subconns)
            .collect();
        let mut seen = std::collections::HashSet::new();
        for endpoint in state.resolver_state.endpoints {
            let addresses = dedup(endpoint.addresses.clone());
            let mut subconns = Vec::new();
            for address in addresses {
                if !seen.insert(address.clone()) {
                    continue;
                }
                match old.iter().position(|(s, _)| *s.address() == address) {
                    Some(i) => subconns.push(old.swap_remove(i)),
                    None => {
                        let attributes = endpoint.address_attributes(&address).clone();
                        let subconn = self.helper.new_subconn_with_attributes(address, attributes);
                        subconn.enable_health_check();
                        subconns.push((subconn, State::Idle));
                    }
                }
            }
            if subconns.is_empty() {
                continue;
            }
            let current = subconns
                .iter()
                .position(|(_, s)| *s == State::Ready)
                .unwrap_or(0);
            let conns = EndpointConns { subconns, current };
            conns.connect_current();
            self.endpoints.push(conns);
        }
        for (subconn, _) in old {
            subconn.shutdown();
        }
        if self.endpoints.is_empty() {
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
        if self.endpoints.is_empty() || self.state == State::TransientFailure {
            self.last_error = Some(error);
            self.state = State::TransientFailure;
            self.regenerate();
        }
    }

    fn subchannel_state(&mut self, subconn: &SubConn, update: SubConnState) {
        let found = self.endpoints.iter_mut().find_map(|e| {
            let i = e.subconns.iter().position(|(s, _)| s == subconn)?;
            Some((e, i))
        });
        let Some((endpoint, i)) = found else {
            return;
        };
        let was_ready = endpoint.ready().is_some();
        let was = std::mem::replace(&mut endpoint.subconns[i].1, update.state);
        let is_current = i == endpoint.current;
        match update.state {
            State::Ready if !is_current && !was_ready => {
                // An earlier address of the endpoint connected after all.
                endpoint.current = i;
            }
            State::Idle if is_current => {
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
                if is_current {
                    // Try the endpoint's next address.
                    endpoint.current = (i + 1) % endpoint.subconns.len();
                    endpoint.connect_current();
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
        for endpoint in &self.endpoints {
            endpoint.connect_current();
        }
    }
}
