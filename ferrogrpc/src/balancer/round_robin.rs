//! `round_robin`: calls rotate over every READY endpoint (gRPC-Go's
//! `balancer/roundrobin` over `balancer/endpointsharding`, gRFC A61).
//!
//! - Each endpoint of the resolver's state gets a [`pick_first`](super::pick_first)
//!   child of its own (kept in a [`ChildGroup`]), so an endpoint gets one
//!   turn however many addresses it has, and its addresses are tried as
//!   pick_first tries them: in order, the next one beside a slow attempt
//!   after 250 ms (Happy Eyeballs) or at once after a failure. An endpoint
//!   with a dead IPv6 address and a live IPv4 one ends up on the live one.
//!   The children's subchannels are health-checked when the service config
//!   asks for it (gRFC A17; A61 moves the check into pick_first).
//! - Endpoints are matched across resolver updates by their set of
//!   addresses: an endpoint that stays keeps its child and connection; one
//!   that goes is removed with its child and subchannels; endpoints listed
//!   twice, or without addresses, are used once or not at all.
//! - The channel is READY while any child is; calls rotate over the READY
//!   children, starting at a random one, each child's picker choosing its
//!   connection. Otherwise CONNECTING while any child is, else IDLE while
//!   any is, else TRANSIENT_FAILURE, where calls that are not
//!   wait-for-ready fail with the children's errors in turn. Stickiness in
//!   TRANSIENT_FAILURE and re-resolution on failures are the children's
//!   (pick_first's).
//! - A child that goes IDLE (its connection was lost) is asked to connect
//!   again at once, as A61 asks.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use super::{
    child::{ChildGroup, ChildState},
    pick_first::{PickFirstBuilder, PickFirstConfig},
    Balancer, Builder, ClientConnState, ErrorPicker, Helper, PickInfo, PickResult, Picker,
    QueuePicker, SubConn, SubConnState,
};
use crate::{
    connectivity::State,
    resolver::{self, Address, Endpoint},
    status::Status,
};

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
        let wake = helper.clone();
        let group = ChildGroup::new(helper.clone(), move |children: &[ChildState<Key>]| {
            aggregate(children, &wake)
        });
        Box::new(RoundRobin { helper, group })
    }
}

/// An endpoint's identity across updates: its addresses as a set (gRPC-Go's
/// `EndpointMap`), so a new order of the same addresses is the same endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key(Vec<Address>);

impl Key {
    fn of(endpoint: &Endpoint) -> Key {
        let mut addresses = endpoint.addresses.clone();
        addresses.sort_by_cached_key(ToString::to_string);
        addresses.dedup();
        Key(addresses)
    }
}

struct RoundRobin {
    helper: Helper,
    group: ChildGroup<Key>,
}

/// Rotates over a fixed list of pickers: the READY children's, or in
/// TRANSIENT_FAILURE all the children's (so each one's error is seen).
struct Rotate {
    pickers: Vec<Arc<dyn Picker>>,
    next: AtomicUsize,
}

impl Rotate {
    fn new(pickers: Vec<Arc<dyn Picker>>) -> Rotate {
        let start = (crate::backoff::seeded_rng()() * pickers.len() as f64) as usize;
        Rotate {
            pickers,
            next: AtomicUsize::new(start),
        }
    }
}

impl Picker for Rotate {
    fn pick(&self, info: &PickInfo<'_>) -> PickResult {
        // Never empty: made only from a non-empty list.
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pickers.len();
        self.pickers[i].pick(info)
    }
}

/// The channel's state and picker from the children's (gRFC A61).
fn aggregate(children: &[ChildState<Key>], helper: &Helper) -> (State, Arc<dyn Picker>) {
    let with = |state| children.iter().filter(move |c| c.state == state);
    let ready: Vec<Arc<dyn Picker>> = with(State::Ready).map(|c| c.picker.clone()).collect();
    if with(State::Idle).next().is_some() {
        // A child that lost its connection connects again at once; the
        // channel calls `exit_idle`, which reaches the idle children.
        helper.exit_idle();
    }
    if !ready.is_empty() {
        (State::Ready, Arc::new(Rotate::new(ready)))
    } else if with(State::Connecting).next().is_some() {
        (State::Connecting, Arc::new(QueuePicker))
    } else if with(State::Idle).next().is_some() {
        (State::Idle, Arc::new(QueuePicker))
    } else if children.is_empty() {
        let status = Status::unavailable("the name resolver returned no addresses");
        (State::TransientFailure, Arc::new(ErrorPicker(status)))
    } else {
        let all = children.iter().map(|c| c.picker.clone()).collect();
        (State::TransientFailure, Arc::new(Rotate::new(all)))
    }
}

impl Balancer for RoundRobin {
    fn update_client_conn_state(&mut self, state: ClientConnState) -> Result<(), String> {
        let resolved = state.resolver_state;
        let mut endpoints: Vec<(Key, Endpoint)> = Vec::new();
        let mut seen = HashSet::new();
        for endpoint in resolved.endpoints {
            let key = Key::of(&endpoint);
            if !key.0.is_empty() && seen.insert(key.clone()) {
                endpoints.push((key, endpoint));
            }
        }
        let child_config = Arc::new(PickFirstConfig {
            health_check: true,
            ..PickFirstConfig::default()
        });
        let attributes = resolved.attributes;
        self.group.batch(|group| {
            for key in group.keys() {
                if !seen.contains(&key) {
                    group.remove(&key);
                }
            }
            for (key, endpoint) in endpoints {
                if !group.contains(&key) {
                    group.add(key.clone(), &PickFirstBuilder);
                }
                let child =
                    resolver::State::from_endpoints([endpoint]).with_attributes(attributes.clone());
                let child = ClientConnState::new(child).with_config(Some(child_config.clone()));
                // A child with addresses does not refuse an update.
                let _ = group.update_client_conn_state(&key, child);
            }
        });
        if self.group.is_empty() {
            return Err("the name resolver returned no addresses".into());
        }
        Ok(())
    }

    fn resolver_error(&mut self, error: Status) {
        if self.group.is_empty() {
            let picker = Arc::new(ErrorPicker(error));
            self.helper.update_state(State::TransientFailure, picker);
        } else {
            // Children with working connections keep them.
            self.group.resolver_error(&error);
        }
    }

    fn subchannel_state(&mut self, subconn: &SubConn, update: SubConnState) {
        self.group.subchannel_state(subconn, update);
    }

    fn exit_idle(&mut self) {
        self.group.exit_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_the_set_of_its_addresses() {
        let a: Address = "10.0.0.1:1".parse::<std::net::SocketAddr>().unwrap().into();
        let b: Address = "[::1]:1".parse::<std::net::SocketAddr>().unwrap().into();
        let ab = Key::of(&Endpoint::new([a.clone(), b.clone()]));
        assert_eq!(ab, Key::of(&Endpoint::new([b.clone(), a.clone()])));
        assert_eq!(ab, Key::of(&Endpoint::new([a.clone(), b, a.clone()])));
        assert_ne!(ab, Key::of(&Endpoint::new([a])));
        assert!(Key::of(&Endpoint::default()).0.is_empty());
    }
}
