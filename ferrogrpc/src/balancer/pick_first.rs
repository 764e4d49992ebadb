//! `pick_first`: every call goes to one connection, the first address that
//! connects (gRFC A62; the default policy).
//!
//! - The addresses of all the resolver's endpoints are tried in the
//!   resolver's order (the endpoints shuffled first if the config says
//!   `"shuffleAddressList": true`, gRFC A61): an address that fails passes
//!   the turn to the next at once, and one that has neither connected nor
//!   failed after [`CONNECTION_ATTEMPT_DELAY`] gets the next address tried
//!   beside it (Happy Eyeballs, gRFC A61), so an address that swallows
//!   packets costs 250 ms rather than the whole connect timeout.
//! - The first address that connects is used for every call; the others are
//!   shut down.
//! - When every address has failed once, the channel is TRANSIENT_FAILURE
//!   and stays so ("sticky") until an address connects: each address is
//!   retried as soon as its own backoff is over, and re-resolution is
//!   requested. Calls that are not wait-for-ready fail at once with the last
//!   connection error.
//! - When the connection in use is lost, the policy goes IDLE and asks for
//!   re-resolution; the next call starts over from the first address.
//! - Address families take turns in the list (IPv4, IPv6, other), starting
//!   with the family of the first address (gRFC A61).
//! - A resolver update that still contains the address in use keeps it.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use super::{
    Balancer, Builder, ClientConnState, Config, ErrorPicker, Helper, PickInfo, PickResult, Picker,
    QueuePicker, SubConn, SubConnState,
};
use crate::{
    attributes::Attributes, connectivity::State, resolver::Address, status::Status,
    transport::client::reached_server,
};

/// The name of the policy in service configs.
pub const NAME: &str = "pick_first";

/// How long a connection attempt runs alone before the next address is
/// tried beside it (gRFC A61's Happy Eyeballs delay, as in gRPC-Go).
pub const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Builds [`pick_first`](self) balancers.
#[derive(Clone, Copy, Debug, Default)]
pub struct PickFirstBuilder;

/// The configuration of `pick_first`:
/// `{"pick_first": {"shuffleAddressList": true}}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PickFirstConfig {
    /// Shuffle the addresses before trying them, so clients of the same
    /// resolver spread over the servers. Default false.
    pub shuffle_address_list: bool,
    /// Ask for health checking of the subchannels (gRFC A61: set by a
    /// parent such as `round_robin` for its per-endpoint children; a
    /// top-level pick_first does not health-check, as in gRPC).
    pub(crate) health_check: bool,
}

impl Builder for PickFirstBuilder {
    fn name(&self) -> &str {
        NAME
    }

    fn build(&self, helper: Helper) -> Box<dyn Balancer> {
        Box::new(PickFirst {
            helper,
            addresses: Vec::new(),
            attributes: HashMap::new(),
            subconns: Vec::new(),
            next: 0,
            first_pass: false,
            selected: None,
            state: State::Idle,
            last_error: None,
            failures: HashMap::new(),
            stagger: None,
            health_check: false,
        })
    }

    fn parse_config(&self, config: &serde_json::Value) -> Result<Option<Config>, String> {
        let shuffle = match config.get("shuffleAddressList") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(other) => return Err(format!("shuffleAddressList: {other} is not a boolean")),
        };
        if !config.is_object() && !config.is_null() {
            return Err(format!("{config} is not an object"));
        }
        Ok(Some(Arc::new(PickFirstConfig {
            shuffle_address_list: shuffle,
            health_check: false,
        })))
    }
}

struct PickFirst {
    helper: Helper,
    addresses: Vec<Address>,
    /// The resolver's attributes of the addresses that have some, given to
    /// their subchannels.
    attributes: HashMap<Address, Attributes>,
    /// One per address, in the order tried.
    subconns: Vec<SubConn>,
    /// In the first pass, the index of the subchannel being tried.
    next: usize,
    first_pass: bool,
    selected: Option<SubConn>,
    state: State,
    last_error: Option<Status>,
    /// Each subchannel's latest connection failure, to report the most
    /// informative one when every address fails.
    failures: HashMap<SubConn, Status>,
    /// The timer that starts the next addresses' attempts beside a slow one.
    stagger: Option<tokio::task::AbortHandle>,
    /// New subchannels are health-checked (see [`PickFirstConfig`]).
    health_check: bool,
}

impl Drop for PickFirst {
    fn drop(&mut self) {
        self.stop_stagger();
    }
}

/// Sends every call to one subchannel.
struct Pinned(SubConn);

impl Picker for Pinned {
    fn pick(&self, _info: &PickInfo<'_>) -> PickResult {
        PickResult::complete(self.0.clone())
    }
}

/// The first call wakes the balancer up; calls wait meanwhile.
struct IdlePicker {
    helper: Helper,
    woken: AtomicBool,
}

impl Picker for IdlePicker {
    fn pick(&self, _info: &PickInfo<'_>) -> PickResult {
        if !self.woken.swap(true, Ordering::Relaxed) {
            self.helper.exit_idle();
        }
        PickResult::Queue
    }
}

/// The addresses without repeats, in order.
fn dedup(addresses: Vec<Address>) -> Vec<Address> {
    let mut seen = HashSet::new();
    addresses
        .into_iter()
        .filter(|a| seen.insert(a.clone()))
        .collect()
}

/// The addresses with their families taking turns, starting with the
/// family of the first (gRFC A61): `v4a, v4b, v6a, v6b` becomes
/// `v4a, v6a, v4b, v6b`, so a family that does not work on this host costs
/// one attempt delay at a time, not a whole run of them.
fn interleave_families(addresses: Vec<Address>) -> Vec<Address> {
    fn family(address: &Address) -> u8 {
        match address {
            Address::Tcp(std::net::SocketAddr::V4(_)) => 0,
            Address::Tcp(std::net::SocketAddr::V6(_)) => 1,
            _ => 2,
        }
    }
    let mut queues: Vec<(u8, std::collections::VecDeque<Address>)> = Vec::new();
    for address in addresses {
        let f = family(&address);
        match queues.iter_mut().find(|(g, _)| *g == f) {
            Some((_, queue)) => queue.push_back(address),
            None => queues.push((f, std::collections::VecDeque::from([address]))),
        }
    }
    let mut out = Vec::new();
    while queues.iter().any(|(_, q)| !q.is_empty()) {
        for (_, queue) in &mut queues {
            out.extend(queue.pop_front());
        }
    }
    out
}

fn shuffle<T>(items: &mut [T]) {
    let mut rng = crate::backoff::seeded_rng();
    for i in (1..items.len()).rev() {
        let j = ((rng() * (i + 1) as f64) as usize).min(i);
        items.swap(i, j);
    }
}

impl PickFirst {
    fn publish(&mut self, state: State, picker: Arc<dyn Picker>) {
        self.state = state;
        self.helper.update_state(state, picker);
    }

    /// Notes why `subconn` failed to connect.
    fn note_failure(&mut self, subconn: &SubConn, error: Status) {
        self.failures.insert(subconn.clone(), error.clone());
        self.last_error = Some(error);
    }

    /// The error calls fail with when no address works: a failure that got
    /// as far as a server (a TLS or HTTP/2 failure) says more than a
    /// refused connection to another address, so it is preferred; else the
    /// latest.
    fn best_error(&self) -> Option<Status> {
        self.subconns
            .iter()
            .filter_map(|s| self.failures.get(s))
            .find(|e| reached_server(e))
            .or(self.last_error.as_ref())
            .cloned()
    }

    fn fail(&mut self) {
        let status = self
            .best_error()
            .unwrap_or_else(|| Status::unavailable("no address could be connected to"));
        self.publish(State::TransientFailure, Arc::new(ErrorPicker(status)));
    }

    /// Makes the subchannel list match the addresses, reusing subchannels
    /// of addresses that stay and shutting down the others.
    fn sync_subconns(&mut self) {
        let mut old: Vec<SubConn> = std::mem::take(&mut self.subconns);
        for address in &self.addresses {
            let subconn = match old.iter().position(|s| s.address() == address) {
                Some(i) => old.swap_remove(i),
                None => {
                    let attributes = self.attributes.get(address).cloned().unwrap_or_default();
                    let subconn = self
                        .helper
                        .new_subconn_with_attributes(address.clone(), attributes);
                    if self.health_check {
                        subconn.enable_health_check();
                    }
                    subconn
                }
            };
            self.subconns.push(subconn);
        }
        for subconn in old {
            self.failures.remove(&subconn);
            if self.selected.as_ref() != Some(&subconn) {
                subconn.shutdown();
            }
        }
    }

    /// Starts trying the addresses in order.
    fn start_first_pass(&mut self) {
        self.sync_subconns();
        self.first_pass = true;
        self.next = 0;
        if self.state != State::TransientFailure {
            self.publish(State::Connecting, Arc::new(QueuePicker));
        }
        self.try_next();
    }

    /// In the first pass: connects the current address, or moves past those
    /// already failing; after the last, goes TRANSIENT_FAILURE.
    fn try_next(&mut self) {
        while let Some(subconn) = self.subconns.get(self.next).cloned() {
            match subconn.state() {
                State::Idle => {
                    subconn.connect();
                    self.start_stagger();
                    return;
                }
                State::Connecting => {
                    self.start_stagger();
                    return;
                }
                State::Ready => {
                    self.select(subconn);
                    return;
                }
                State::TransientFailure | State::Shutdown => self.next += 1,
            }
        }
        // Every address failed: sticky TRANSIENT_FAILURE; each subchannel
        // is reconnected when its backoff is over.
        self.stop_stagger();
        self.first_pass = false;
        self.fail();
        self.helper.resolve_now();
        for subconn in &self.subconns {
            subconn.connect();
        }
    }

    /// From the address being tried on, starts each next address's attempt
    /// after [`CONNECTION_ATTEMPT_DELAY`] while no earlier one has finished
    /// (a failure moves the pass on and restarts this timer).
    fn start_stagger(&mut self) {
        self.stop_stagger();
        let rest: Vec<SubConn> = self.subconns.iter().skip(self.next + 1).cloned().collect();
        if rest.is_empty() {
            return;
        }
        let task = crate::logging::spawn(async move {
            for subconn in rest {
                tokio::time::sleep(CONNECTION_ATTEMPT_DELAY).await;
                subconn.connect();
            }
        });
        self.stagger = Some(task.abort_handle());
    }

    fn stop_stagger(&mut self) {
        if let Some(task) = self.stagger.take() {
            task.abort();
        }
    }

    fn select(&mut self, subconn: SubConn) {
        self.stop_stagger();
        for other in &self.subconns {
            if *other != subconn {
                other.shutdown();
            }
        }
        self.subconns = vec![subconn.clone()];
        self.first_pass = false;
        self.selected = Some(subconn.clone());
        self.publish(State::Ready, Arc::new(Pinned(subconn)));
    }

    fn go_idle(&mut self) {
        self.stop_stagger();
        self.selected = None;
        self.first_pass = false;
        let picker = IdlePicker {
            helper: self.helper.clone(),
            woken: AtomicBool::new(false),
        };
        self.publish(State::Idle, Arc::new(picker));
    }
}

impl Balancer for PickFirst {
    fn update_client_conn_state(&mut self, state: ClientConnState) -> Result<(), String> {
        let config = state
            .config
            .as_ref()
            .and_then(|c| c.downcast_ref::<PickFirstConfig>())
            .copied()
            .unwrap_or_default();
        let shuffle_list = config.shuffle_address_list;
        self.health_check = config.health_check;
        // gRFC A61: the endpoints are shuffled (not their addresses), then
        // flattened, then the address families interleaved.
        let mut endpoints = state.resolver_state.endpoints;
        if shuffle_list {
            shuffle(&mut endpoints);
        }
        self.attributes = endpoints
            .iter()
            .flat_map(|e| {
                let attributes = |a: &Address| (a.clone(), e.address_attributes(a).clone());
                e.addresses.iter().map(attributes)
            })
            .filter(|(_, attributes)| !attributes.is_empty())
            .collect();
        let flat = endpoints.into_iter().flat_map(|e| e.addresses).collect();
        let addresses = interleave_families(dedup(flat));
        if addresses.is_empty() {
            for subconn in self.subconns.drain(..) {
                subconn.shutdown();
            }
            if let Some(selected) = self.selected.take() {
                selected.shutdown();
            }
            self.first_pass = false;
            self.last_error = Some(Status::unavailable(
                "the name resolver returned no addresses",
            ));
            self.fail();
            return Err("the name resolver returned no addresses".into());
        }
        self.addresses = addresses;
        if let Some(selected) = self.selected.clone() {
            if self.addresses.contains(selected.address()) {
                // Keep the connection in use; forget the others.
                self.subconns.retain(|s| *s == selected);
                return Ok(());
            }
            self.selected = None;
            selected.shutdown();
        }
        if self.state == State::Idle && !self.subconns.is_empty() {
            // Idle after a lost connection: the next call starts over.
            self.sync_subconns();
            return Ok(());
        }
        self.start_first_pass();
        Ok(())
    }

    fn resolver_error(&mut self, error: Status) {
        if self.subconns.is_empty() || self.state == State::TransientFailure {
            self.last_error = Some(error);
            self.fail();
        }
    }

    fn subchannel_state(&mut self, subconn: &SubConn, update: SubConnState) {
        if !self.subconns.contains(subconn) {
            return;
        }
        if self.selected.as_ref() == Some(subconn) {
            match update.state {
                State::Ready => {}
                State::TransientFailure => {
                    // Lost at once, before carrying a call: a failed
                    // attempt. Sticky TRANSIENT_FAILURE, and every address
                    // is tried again as its backoff ends.
                    self.selected = None;
                    self.first_pass = false;
                    if let Some(error) = update.error {
                        self.note_failure(subconn, error);
                    }
                    self.sync_subconns();
                    self.fail();
                    self.helper.resolve_now();
                    for subconn in &self.subconns {
                        subconn.connect();
                    }
                }
                _ => {
                    // The connection in use was lost.
                    self.helper.resolve_now();
                    self.go_idle();
                }
            }
            return;
        }
        match update.state {
            State::Ready => {
                self.failures.remove(subconn);
                self.select(subconn.clone());
            }
            State::TransientFailure => {
                if let Some(error) = update.error {
                    self.note_failure(subconn, error);
                }
                if self.first_pass {
                    if self.subconns.get(self.next) == Some(subconn) {
                        self.next += 1;
                        self.try_next();
                    }
                } else if self.state == State::TransientFailure {
                    // Sticky: stay in TRANSIENT_FAILURE with the newest error.
                    self.fail();
                }
            }
            State::Idle => {
                if !self.first_pass && self.state == State::TransientFailure {
                    // Backoff over: try this address again.
                    subconn.connect();
                }
            }
            State::Connecting | State::Shutdown => {}
        }
    }

    fn exit_idle(&mut self) {
        if self.state == State::Idle && !self.addresses.is_empty() {
            self.start_first_pass();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> Address {
        Address::Tcp(s.parse().unwrap())
    }

    #[test]
    fn families_take_turns_starting_with_the_first() {
        let list = vec![
            tcp("10.0.0.1:1"),
            tcp("10.0.0.2:1"),
            tcp("10.0.0.3:1"),
            tcp("[::1]:1"),
            Address::Unix("/s".into()),
            tcp("[::2]:1"),
        ];
        assert_eq!(
            interleave_families(list),
            vec![
                tcp("10.0.0.1:1"),
                tcp("[::1]:1"),
                Address::Unix("/s".into()),
                tcp("10.0.0.2:1"),
                tcp("[::2]:1"),
                tcp("10.0.0.3:1"),
            ]
        );
        let v6_first = vec![tcp("[::1]:1"), tcp("10.0.0.1:1"), tcp("[::2]:1")];
        assert_eq!(
            interleave_families(v6_first),
            vec![tcp("[::1]:1"), tcp("10.0.0.1:1"), tcp("[::2]:1")]
        );
    }

    #[test]
    fn shuffle_keeps_every_item() {
        let mut items: Vec<u32> = (0..50).collect();
        shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn config_parsing() {
        let b = PickFirstBuilder;
        let parsed = b
            .parse_config(&serde_json::json!({"shuffleAddressList": true}))
            .unwrap()
            .unwrap();
        assert_eq!(
            parsed.downcast_ref::<PickFirstConfig>(),
            Some(&PickFirstConfig {
                shuffle_address_list: true,
                health_check: false,
            })
        );
        assert!(b
            .parse_config(&serde_json::json!({"shuffleAddressList": "yes"}))
            .is_err());
        assert!(b.parse_config(&serde_json::json!([1])).is_err());
        assert!(b.parse_config(&serde_json::json!({})).is_ok());
    }
}
