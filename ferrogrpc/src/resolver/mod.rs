//! Name resolution: turning a channel's target into the addresses (and,
//! optionally, the service config) its load balancer works with (gRPC-Go's
//! `resolver` package; the rules are grpc/grpc's `doc/naming.md`).
//!
//! A channel parses its target ([`target`]), finds the [`Builder`]
//! registered for the target's scheme, and builds a [`Resolver`] when it
//! leaves IDLE. The resolver pushes what it learns through the
//! [`Controller`] it was given: a new [`State`] (endpoints or addresses,
//! attributes for the balancer, a service config) or an error. When the
//! channel goes idle or is dropped it drops the resolver, which must then
//! stop its work.
//!
//! Built-in schemes (see [`target`] for the syntax):
//!
//! | scheme | resolver |
//! |---|---|
//! | `dns` (the default) | [`dns`]: A/AAAA records and the `_grpc_config` TXT record (gRFC A2), re-resolved on demand at most every 30 s |
//! | `ipv4`, `ipv6` | the literal address list |
//! | `unix`, `unix-abstract` | the socket path or abstract name |
//! | `passthrough` | the endpoint as one address, resolved by the OS when dialled |
//!
//! Applications add schemes with [`register`] (process-wide) or
//! `ChannelBuilder::resolver` (one channel); [`manual::ManualResolver`]
//! lets a program or a test push addresses itself.
//!
//! # Contract for resolver authors
//!
//! - [`Builder::build`] is called from the channel's control task; it must
//!   not block. Work that waits (DNS queries, watching a registry) runs on
//!   tasks the resolver spawns.
//! - The resolver reports through its [`Controller`], from any thread, at
//!   any time, as often as it likes; the latest [`State`] wins. Errors are
//!   reported with [`Controller::report_error`]: calls that would otherwise
//!   wait for addresses then fail with `UNAVAILABLE` carrying the message.
//! - [`Resolver::resolve_now`] is a hint that the channel lost a connection
//!   and the addresses may be stale; it is called from the control task, must
//!   not block, and may be ignored or rate-limited.
//! - Dropping the resolver closes it: it must stop its tasks and stop
//!   reporting. Reports that still arrive are ignored.

pub mod dns;
pub mod manual;
pub mod target;

mod builtin;

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, OnceLock, RwLock},
};

use crate::{attributes::Attributes, serviceconfig::ServiceConfig};
pub use target::Target;

/// An address a subchannel connects to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A TCP socket address.
    Tcp(SocketAddr),
    /// A `host:port` the operating system resolves each time it is dialled
    /// (what the `passthrough` resolver produces); the addresses it resolves
    /// to are tried in order.
    HostPort(String),
    /// A Unix domain socket path. A path starting with a NUL byte names a
    /// socket in Linux's abstract namespace.
    Unix(PathBuf),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "{addr}"),
            Address::HostPort(hostport) => f.write_str(hostport),
            Address::Unix(path) => match path.to_str() {
                Some(p) if p.starts_with('\0') => write!(f, "unix-abstract:{}", &p[1..]),
                _ => write!(f, "unix:{}", path.display()),
            },
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Tcp(addr)
    }
}

/// A backend: one server reachable at one or more addresses (for example
/// an IPv4 and an IPv6 address of the same host), with attributes for the
/// balancer (gRPC-Go's `resolver.Endpoint`, gRFC A61).
///
/// Balancers treat an endpoint as one unit: `round_robin` gives each
/// endpoint one turn whatever its number of addresses and uses the first of
/// its addresses that connects; `pick_first` tries every endpoint's
/// addresses in turn.
///
/// # Attributes
///
/// Two levels, both for the balancer, and neither part of an address's
/// identity (which subchannel it gets, what a dialer is given):
/// - [`attributes`](Self::attributes), about the backend as a whole (a
///   weight, a locality);
/// - per-address attributes, set with
///   [`with_address_attributes`](Self::with_address_attributes) and read
///   with [`address_attributes`](Self::address_attributes) or, on the
///   subchannel made for the address, [`SubConn::attributes`](crate::balancer::SubConn::attributes).
///
/// Per-address attributes are gRPC-Go's `Address.BalancerAttributes`:
/// `Address.Equal` ignores those, and so does [`Address`]'s equality here
/// (an [`Address`] does not hold them at all), so a resolver that changes
/// them keeps the address's subchannel and connection. gRPC-Go's other
/// per-address map, `Address.Attributes`, which `Equal` compares and which
/// reaches the connection's handshake, has no counterpart yet.
/// Endpoints compare all their attributes, so a balancer can tell that
/// they changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Endpoint {
    /// The addresses, in the resolver's order of preference.
    pub addresses: Vec<Address>,
    /// What the resolver says about this backend, for the balancer: a
    /// weight, a locality… Attributes never change which subchannel an
    /// address gets (that is the address alone), so they play the part
    /// of gRPC-Go's `BalancerAttributes`.
    pub attributes: Attributes,
    /// Non-empty attributes of individual addresses, in the order they
    /// were set; see the type's docs.
    address_attributes: Vec<(Address, Attributes)>,
}

impl Endpoint {
    /// An endpoint at these addresses, without attributes.
    pub fn new(addresses: impl IntoIterator<Item = impl Into<Address>>) -> Endpoint {
        Endpoint {
            addresses: addresses.into_iter().map(Into::into).collect(),
            ..Endpoint::default()
        }
    }

    /// The same endpoint with these attributes.
    #[must_use]
    pub fn with_attributes(mut self, attributes: Attributes) -> Endpoint {
        self.attributes = attributes;
        self
    }

    /// The same endpoint with `attributes` on its address `address`
    /// (gRPC-Go's `Address.BalancerAttributes`), replacing any it had. An
    /// address the endpoint does not list yet is appended to
    /// [`addresses`](Self::addresses), so an endpoint can be built address
    /// by address: `Endpoint::default().with_address_attributes(a, x)`.
    #[must_use]
    pub fn with_address_attributes(
        mut self,
        address: impl Into<Address>,
        attributes: Attributes,
    ) -> Endpoint {
        let address = address.into();
        if !self.addresses.contains(&address) {
            self.addresses.push(address.clone());
        }
        self.address_attributes.retain(|(a, _)| *a != address);
        if !attributes.is_empty() {
            self.address_attributes.push((address, attributes));
        }
        self
    }

    /// The attributes of the address `address` (empty when it has none, or
    /// is not one of this endpoint's).
    pub fn address_attributes(&self, address: &Address) -> &Attributes {
        static EMPTY: Attributes = Attributes::new();
        self.address_attributes
            .iter()
            .find(|(a, _)| a == address)
            .map_or(&EMPTY, |(_, attributes)| attributes)
    }
}

impl From<Address> for Endpoint {
    fn from(address: Address) -> Endpoint {
        Endpoint::new([address])
    }
}

/// What a resolver knows about its target: the backends to balance over
/// and, optionally, a service config.
///
/// A resolver sets [`endpoints`](Self::endpoints) (each with its addresses
/// and attributes) or, if it knows only a flat list, [`addresses`](Self::addresses).
/// The channel fills in the other before a balancer sees the state, as
/// gRPC-Go does: endpoints without addresses become one endpoint per
/// address, and addresses without endpoints become all the endpoints'
/// addresses in order. When a resolver sets both, both are passed as they
/// are.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct State {
    /// The addresses, in the resolver's order of preference.
    pub addresses: Vec<Address>,
    /// The backends, in the resolver's order of preference (gRFC A61).
    pub endpoints: Vec<Endpoint>,
    /// Attributes of the whole state, for the balancer (gRPC-Go's
    /// `State.Attributes`).
    pub attributes: Attributes,
    /// The service config the resolver found: `None` when it has none (the
    /// channel then uses its default config), `Some(Err(reason))` when it
    /// found one that is invalid (the channel keeps the config it had, or
    /// uses its default config if it had none).
    pub service_config: Option<Result<ServiceConfig, String>>,
}

impl State {
    /// A state with these addresses and no service config.
    pub fn new(addresses: impl IntoIterator<Item = impl Into<Address>>) -> State {
        State {
            addresses: addresses.into_iter().map(Into::into).collect(),
            ..State::default()
        }
    }

    /// A state with these endpoints and no service config.
    pub fn from_endpoints(endpoints: impl IntoIterator<Item = Endpoint>) -> State {
        State {
            endpoints: endpoints.into_iter().collect(),
            ..State::default()
        }
    }

    /// The same state, carrying a service config (or the reason the one found
    /// is invalid).
    pub fn with_service_config(mut self, config: Result<ServiceConfig, String>) -> State {
        self.service_config = Some(config);
        self
    }

    /// The same state with these attributes.
    #[must_use]
    pub fn with_attributes(mut self, attributes: Attributes) -> State {
        self.attributes = attributes;
        self
    }

    /// Fills in whichever of `addresses` and `endpoints` the resolver left
    /// empty from the other (see the type's docs).
    pub(crate) fn normalize(&mut self) {
        if self.endpoints.is_empty() {
            self.endpoints = self.addresses.iter().cloned().map(Endpoint::from).collect();
        } else if self.addresses.is_empty() {
            self.addresses = self
                .endpoints
                .iter()
                .flat_map(|e| e.addresses.iter().cloned())
                .collect();
        }
    }
}

/// Options a [`Builder`] gets with each resolver it builds.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct BuildOptions {
    /// The channel ignores service configs from the resolver, so the
    /// resolver need not look them up (`ChannelBuilder::disable_service_config`).
    pub disable_service_config: bool,
}

/// Makes resolvers for one target scheme (gRPC-Go's `resolver.Builder`).
pub trait Builder: Send + Sync + 'static {
    /// The scheme this builder resolves, in lower case (`"dns"`).
    fn scheme(&self) -> &str;

    /// Checks a target of this scheme when a channel is created, so a target
    /// that can never resolve fails at once. The default accepts all.
    ///
    /// # Errors
    /// The reason the target is unusable.
    fn check_target(&self, target: &Target) -> Result<(), String> {
        let _ = target;
        Ok(())
    }

    /// Starts resolving `target`, reporting to `controller`. Called from the
    /// channel's control task when the channel leaves IDLE; must not block.
    ///
    /// # Errors
    /// The reason the resolver cannot start; the channel then fails calls
    /// with `UNAVAILABLE` and this message.
    fn build(
        &self,
        target: &Target,
        controller: Controller,
        options: BuildOptions,
    ) -> Result<Box<dyn Resolver>, String>;
}

/// A running resolver (gRPC-Go's `resolver.Resolver`). Dropping it closes it.
pub trait Resolver: Send + 'static {
    /// A hint to resolve again soon: a connection was lost, so the addresses
    /// may have changed. Must not block; may be ignored or rate-limited.
    fn resolve_now(&mut self) {}
}

/// Where a resolver reports (gRPC-Go's `resolver.ClientConn`). Cheap to
/// clone; usable from any thread.
#[derive(Clone)]
pub struct Controller {
    sink: Arc<dyn Sink>,
}

impl fmt::Debug for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller").finish_non_exhaustive()
    }
}

/// The receiving end of a [`Controller`]: the channel, or a test's recorder.
pub(crate) trait Sink: Send + Sync + 'static {
    fn update(&self, state: State);
    fn error(&self, message: String);
    fn is_closed(&self) -> bool;
}

impl Controller {
    pub(crate) fn new(sink: Arc<dyn Sink>) -> Controller {
        Controller { sink }
    }

    /// Reports a new state; it replaces any earlier one.
    pub fn update_state(&self, state: State) {
        self.sink.update(state);
    }

    /// Reports that resolution failed. Until the next [`update_state`](Self::update_state),
    /// calls that find no usable address fail with `UNAVAILABLE` and this
    /// message. The resolver should try again later by itself (with backoff),
    /// as well as on [`Resolver::resolve_now`].
    pub fn report_error(&self, message: impl Into<String>) {
        self.sink.error(message.into());
    }

    /// Whether the resolver this controller belongs to has been closed, so
    /// its reports go nowhere: a resolver task can stop when it sees this.
    pub fn is_closed(&self) -> bool {
        self.sink.is_closed()
    }
}

type Registry = RwLock<HashMap<String, Arc<dyn Builder>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut map: HashMap<String, Arc<dyn Builder>> = HashMap::new();
        for builder in builtin::builders() {
            map.insert(builder.scheme().to_ascii_lowercase(), builder);
        }
        RwLock::new(map)
    })
}

/// Registers a resolver builder for its scheme, process-wide, replacing any
/// builder registered for it before (built-in ones included). Channels
/// created afterwards use it. Call it at start-up, before creating channels.
pub fn register(builder: impl Builder) {
    let scheme = builder.scheme().to_ascii_lowercase();
    registry()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(scheme, Arc::new(builder));
}

/// The builder registered for `scheme` (case-insensitive), if any.
pub fn get(scheme: &str) -> Option<Arc<dyn Builder>> {
    registry()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&scheme.to_ascii_lowercase())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Zone(&'static str);

    fn tcp(s: &str) -> Address {
        Address::Tcp(s.parse().unwrap())
    }

    #[test]
    fn address_attributes_are_kept_per_address_and_compared_with_the_endpoint() {
        let (a, b) = (tcp("10.0.0.1:1"), tcp("10.0.0.2:1"));
        let eu = Attributes::new().with_value(Zone("eu"));
        let endpoint = Endpoint::new([a.clone()]).with_address_attributes(b.clone(), eu.clone());
        assert_eq!(endpoint.addresses, [a.clone(), b.clone()], "b appended");
        assert_eq!(endpoint.address_attributes(&b), &eu);
        assert!(endpoint.address_attributes(&a).is_empty());
        assert!(endpoint.address_attributes(&tcp("10.0.0.3:1")).is_empty());

        let us = Attributes::new().with_value(Zone("us"));
        let moved = endpoint
            .clone()
            .with_address_attributes(b.clone(), us.clone());
        assert_eq!(moved.addresses, endpoint.addresses, "not appended twice");
        assert_eq!(moved.address_attributes(&b), &us, "replaced");
        assert_ne!(moved, endpoint, "a balancer sees the change");
        let cleared = moved.with_address_attributes(b.clone(), Attributes::new());
        assert_eq!(cleared, Endpoint::new([a, b]), "empty is the same as none");
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A controller that records what a resolver reports, for unit tests.
    use super::*;
    use tokio::sync::mpsc;

    /// One report.
    #[derive(Debug)]
    pub(crate) enum Report {
        Update(State),
        Error(String),
    }

    struct Recorder(mpsc::UnboundedSender<Report>);

    impl Sink for Recorder {
        fn update(&self, state: State) {
            let _ = self.0.send(Report::Update(state));
        }
        fn error(&self, message: String) {
            let _ = self.0.send(Report::Error(message));
        }
        fn is_closed(&self) -> bool {
            self.0.is_closed()
        }
    }

    /// A controller and the receiver of its reports.
    pub(crate) fn recorder() -> (Controller, mpsc::UnboundedReceiver<Report>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Controller::new(Arc::new(Recorder(tx))), rx)
    }
}
