//! Load balancing: which connection each call goes to (gRPC-Go's `balancer`
//! package; the model is grpc/grpc's `doc/load-balancing.md`).
//!
//! A channel's resolver produces addresses; the channel hands them to a
//! [`Balancer`], chosen by the service config's `loadBalancingConfig`
//! (default [`pick_first`]). The balancer creates a [`SubConn`] per address
//! it wants to use, asks them to connect, hears their connectivity changes,
//! and publishes a [`Picker`] together with the channel's connectivity
//! state. Each call asks the current picker for a subchannel.
//!
//! ```text
//!  resolver ──State──▶ balancer ──new_subconn/connect──▶ SubConns
//!                        ▲   │                              │
//!                        │   └──update_state(picker)──▶ channel ◀── calls pick
//!                        └───────── subchannel state ───────┘
//! ```
//!
//! Built in: [`pick_first`] (gRFC A62) and [`round_robin`] (a parent of
//! one pick_first child per endpoint, gRFC A61). Policies that
//! hold other policies (priority, weighted targets) build their children
//! with [`Helper::with_hooks`], or let [`child::ChildGroup`] keep them.
//! Applications
//! add policies with [`register`] and choose them by name in the service
//! config: `{"loadBalancingConfig": [{"my_policy": {...}}]}`.
//!
//! # Contract for balancer authors
//!
//! - **Serialised.** All [`Balancer`] methods are called from the channel's
//!   control task, one at a time, never concurrently, so a balancer needs no
//!   locks for its own state. They must not block.
//! - **Helper from anywhere.** [`Helper`] and [`SubConn`] methods may be
//!   called from any thread, including from inside [`Balancer`] methods and
//!   from pickers; their effects (a published picker, a state change) are
//!   applied in order by the control task.
//! - **Pickers do not block.** [`Picker::pick`] runs on the call path, on
//!   many tasks at once; it must return quickly and never wait. A picker is
//!   immutable: to change what calls see, publish a new one.
//! - **Subchannel lifecycle.** A new subchannel is IDLE and connects only
//!   when [`SubConn::connect`] is called. After a failed attempt it reports
//!   TRANSIENT_FAILURE, waits out its backoff, then reports IDLE; after a
//!   connection it had is lost, it reports IDLE. A balancer that wants it
//!   connected calls `connect` again. [`SubConn::shutdown`] ends it; when the
//!   channel closes a balancer (policy change, idle, drop), every subchannel
//!   the balancer created is shut down.
//! - **What picks mean.** [`PickResult::Complete`] sends the call on the
//!   subchannel (if that subchannel is no longer READY, the call waits for
//!   the next picker); its [`Pick::with_done`] callback hears how the
//!   attempt ended; [`PickResult::Queue`] waits for the next picker;
//!   [`PickResult::Fail`] fails the call with its status unless the call is
//!   wait-for-ready, in which case it waits for the next picker;
//!   [`PickResult::Drop`] fails the call even if it is wait-for-ready.

pub mod child;
pub mod pick_first;
pub mod round_robin;

use std::{
    any::Any,
    collections::HashMap,
    fmt,
    hash::{Hash, Hasher},
    sync::{Arc, OnceLock, RwLock},
};

use crate::{
    attributes::Attributes, client::subchannel::Subchannel, client::Shared, connectivity,
    metadata::MetadataMap, resolver, status::Status,
};

/// A policy's parsed configuration, made by [`Builder::parse_config`] from
/// the service config and handed back in [`ClientConnState::config`]. The
/// policy downcasts it to its own type.
pub type Config = Arc<dyn Any + Send + Sync>;

/// Makes balancers of one policy (gRPC-Go's `balancer.Builder` and
/// `ConfigParser`).
pub trait Builder: Send + Sync + 'static {
    /// The policy's name in service configs (`"round_robin"`).
    fn name(&self) -> &str;

    /// A new balancer that works through `helper`.
    fn build(&self, helper: Helper) -> Box<dyn Balancer>;

    /// Parses the policy's JSON configuration from a service config's
    /// `loadBalancingConfig` entry. The default accepts anything and gives
    /// no configuration.
    ///
    /// # Errors
    /// Why the configuration is invalid; the service config carrying it is
    /// then rejected.
    fn parse_config(&self, config: &serde_json::Value) -> Result<Option<Config>, String> {
        let _ = config;
        Ok(None)
    }
}

/// What a balancer is told when its resolver reports.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConnState {
    /// The resolver's latest state.
    pub resolver_state: resolver::State,
    /// The policy's configuration from the service config, if any.
    pub config: Option<Config>,
}

impl ClientConnState {
    /// A state to hand a balancer, without policy configuration: for a
    /// parent policy updating its children.
    pub fn new(resolver_state: resolver::State) -> ClientConnState {
        ClientConnState {
            resolver_state,
            config: None,
        }
    }

    /// The same state, with the policy configuration `config`.
    #[must_use]
    pub fn with_config(mut self, config: Option<Config>) -> ClientConnState {
        self.config = config;
        self
    }
}

/// A subchannel's new connectivity state.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SubConnState {
    /// The state.
    pub state: connectivity::State,
    /// For TRANSIENT_FAILURE, why the connection attempt failed.
    pub error: Option<Status>,
}

/// A load-balancing policy instance (gRPC-Go's `balancer.Balancer`). Dropping
/// it closes it; see the [module docs](self) for the threading contract.
pub trait Balancer: Send + 'static {
    /// The resolver reported new addresses or config.
    ///
    /// # Errors
    /// The state is unusable (for example no addresses); the channel asks the
    /// resolver to resolve again.
    fn update_client_conn_state(&mut self, state: ClientConnState) -> Result<(), String>;

    /// The resolver failed. A balancer with working subchannels may keep
    /// using them; one without should publish a picker that fails calls with
    /// `error` (which is `UNAVAILABLE`).
    fn resolver_error(&mut self, error: Status);

    /// A subchannel this balancer created changed state.
    fn subchannel_state(&mut self, subconn: &SubConn, state: SubConnState);

    /// The channel wants to leave IDLE (a call arrived, or `connect` was
    /// called): connect if idle.
    fn exit_idle(&mut self);
}

/// What a call tells the picker (gRPC-Go's `balancer.PickInfo`). Borrowed
/// from the call: building it costs nothing.
#[derive(Debug)]
#[non_exhaustive]
pub struct PickInfo<'a> {
    /// The full method path, `/package.Service/Method`.
    pub method: &'a str,
    /// The request metadata the call sends: what the application set, after
    /// the channel's interceptors ran. Per-RPC credentials are added after
    /// the pick (they may depend on the connection), so a first attempt's
    /// pick does not see them, as in gRPC-Go.
    pub metadata: &'a MetadataMap,
}

impl<'a> PickInfo<'a> {
    /// The pick info of a call to `method` with `metadata`: for a parent
    /// policy that asks a child's picker on its own terms, and for tests of
    /// pickers.
    pub fn new(method: &'a str, metadata: &'a MetadataMap) -> PickInfo<'a> {
        PickInfo { method, metadata }
    }
}

/// A picker's answer for one call; see the [module docs](self) for what
/// each means.
#[derive(Debug)]
#[non_exhaustive]
pub enum PickResult {
    /// Send the call on this subchannel (and tell the callback, if any, how
    /// the attempt ended).
    Complete(Pick),
    /// Wait for the next picker.
    Queue,
    /// Fail the call with this status, unless it is wait-for-ready.
    Fail(Status),
    /// Fail the call with this status, even if it is wait-for-ready.
    Drop(Status),
}

impl PickResult {
    /// [`Complete`](PickResult::Complete) on `subconn`, without a done
    /// callback.
    pub fn complete(subconn: SubConn) -> PickResult {
        PickResult::Complete(Pick::new(subconn))
    }
}

/// A subchannel chosen for a call, with an optional callback that learns
/// how the call attempt ended (gRPC-Go's `balancer.PickResult`).
#[non_exhaustive]
pub struct Pick {
    /// Where the call goes.
    pub subconn: SubConn,
    /// Run once when the attempt ends; see [`with_done`](Pick::with_done).
    pub done: Option<DoneCallback>,
}

impl Pick {
    /// `subconn`, without a done callback.
    pub fn new(subconn: SubConn) -> Pick {
        Pick {
            subconn,
            done: None,
        }
    }

    /// The same pick, with `done` run once when the attempt ends (gRPC-Go's
    /// `PickResult.Done`): for policies that count calls in flight
    /// (least_request) or read load reports from trailers (ORCA).
    ///
    /// What "ends" means, exactly once per pick that returned a callback:
    /// - the call's status arrived: OK with the trailers, or the error,
    ///   whose metadata holds the trailers;
    /// - the call was cancelled or dropped before its status arrived (the
    ///   caller dropped it, the parent call ended, a hedge lost): `CANCELLED`;
    ///   past the call's deadline: `DEADLINE_EXCEEDED`;
    /// - the call failed on the client's side (a response that did not
    ///   decode, a second answer to a unary call, an interceptor refusing a
    ///   streamed response): that error, the one the caller sees;
    /// - the attempt could not start (the subchannel was no longer READY,
    ///   per-RPC credentials failed, the stream could not be opened): that
    ///   error; the call itself may then pick again, and a new pick has its
    ///   own callback;
    /// - each attempt of a retried, transparently retried or hedged call is
    ///   a pick of its own, and ends on its own.
    ///
    /// The callback runs on the task that drives the call (or drops it), so
    /// it must be quick and must not block. Without a callback the call
    /// path pays one `Option` check.
    #[must_use]
    pub fn with_done(mut self, done: impl FnOnce(&DoneInfo<'_>) + Send + 'static) -> Pick {
        self.done = Some(Box::new(done));
        self
    }
}

impl fmt::Debug for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pick")
            .field("subconn", &self.subconn)
            .field("done", &self.done.is_some())
            .finish()
    }
}

impl From<SubConn> for Pick {
    fn from(subconn: SubConn) -> Pick {
        Pick::new(subconn)
    }
}

/// A pick's done callback on its way through a call attempt: run by
/// [`finish`](DoneGuard::finish) with the attempt's outcome, or, if the
/// attempt is dropped first, with `CANCELLED` (`DEADLINE_EXCEEDED` past the
/// call's deadline). So it runs exactly once whatever happens.
pub(crate) struct DoneGuard {
    callback: Option<DoneCallback>,
    deadline: Option<std::time::Instant>,
    /// The request headers went out.
    pub(crate) sent: bool,
    /// Something came back from the server.
    pub(crate) received: bool,
}

impl DoneGuard {
    pub(crate) fn new(callback: DoneCallback, deadline: Option<std::time::Instant>) -> DoneGuard {
        DoneGuard {
            callback: Some(callback),
            deadline,
            sent: false,
            received: false,
        }
    }

    /// Runs the callback: `error` is `None` for OK, with `trailers`; an
    /// error's trailers are its metadata.
    pub(crate) fn finish(mut self, error: Option<&Status>, trailers: Option<&MetadataMap>) {
        self.run(error, trailers);
    }

    fn run(&mut self, error: Option<&Status>, trailers: Option<&MetadataMap>) {
        let Some(callback) = self.callback.take() else {
            return;
        };
        let empty;
        let trailers = match (error, trailers) {
            (Some(status), _) => status.metadata(),
            (None, Some(trailers)) => trailers,
            (None, None) => {
                empty = MetadataMap::new();
                &empty
            }
        };
        callback(&DoneInfo {
            error,
            trailers,
            bytes_sent: self.sent,
            bytes_received: self.received,
        });
    }
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        if self.callback.is_some() {
            let status = match self.deadline {
                Some(d) if std::time::Instant::now() >= d => {
                    Status::deadline_exceeded("deadline exceeded")
                }
                _ => Status::cancelled("the call attempt was cancelled before it ended"),
            };
            self.run(Some(&status), None);
        }
    }
}

/// The callback of a [`Pick`].
pub type DoneCallback = Box<dyn FnOnce(&DoneInfo<'_>) + Send + 'static>;

/// How a picked call attempt ended (gRPC-Go's `balancer.DoneInfo`); see
/// [`Pick::with_done`].
#[derive(Debug)]
#[non_exhaustive]
pub struct DoneInfo<'a> {
    /// `None` when the attempt ended with OK; otherwise its status.
    pub error: Option<&'a Status>,
    /// The trailers the server sent: with OK, the trailer metadata; with an
    /// error, the error's metadata (empty when the error was local).
    pub trailers: &'a MetadataMap,
    /// Whether the request headers went out to the server.
    pub bytes_sent: bool,
    /// Whether anything came back from the server (response headers, or a
    /// status in a Trailers-Only response).
    pub bytes_received: bool,
}

impl DoneInfo<'_> {
    /// The attempt's status code (`OK` when there was no error).
    pub fn code(&self) -> crate::Code {
        self.error.map_or(crate::Code::Ok, Status::code)
    }
}

/// Chooses a subchannel for each call (gRPC-Go's `balancer.Picker`). Called
/// concurrently on the call path: must not block.
pub trait Picker: Send + Sync + 'static {
    /// The subchannel (or decision) for one call.
    fn pick(&self, info: &PickInfo<'_>) -> PickResult;
}

/// A picker that queues every call: for a balancer that is still
/// connecting.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueuePicker;

impl Picker for QueuePicker {
    fn pick(&self, _info: &PickInfo<'_>) -> PickResult {
        PickResult::Queue
    }
}

/// A picker that fails every call (but wait-for-ready ones) with one status:
/// for TRANSIENT_FAILURE.
#[derive(Clone, Debug)]
pub struct ErrorPicker(pub Status);

impl Picker for ErrorPicker {
    fn pick(&self, _info: &PickInfo<'_>) -> PickResult {
        PickResult::Fail(self.0.clone())
    }
}

/// The channel, as a balancer sees it (gRPC-Go's `balancer.ClientConn`).
/// Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct Helper {
    owner: u64,
    shared: Arc<Shared>,
    /// Set on a child policy's helper: where its state updates go.
    hooks: Option<Arc<dyn HelperHooks>>,
}

/// What a parent policy hears from a child policy it built with
/// [`Helper::with_hooks`]: the child's published state and picker (instead
/// of the channel), and each subchannel the child creates. Called from
/// wherever the child calls its [`Helper`]: must not block.
pub trait HelperHooks: Send + Sync + 'static {
    /// The child published `state` and `picker`.
    fn update_state(&self, state: connectivity::State, picker: Arc<dyn Picker>);

    /// The child created `subconn`. Its state changes reach the parent's
    /// [`Balancer::subchannel_state`], which should pass them to the child.
    fn new_subconn(&self, subconn: &SubConn) {
        let _ = subconn;
    }
}

impl fmt::Debug for Helper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Helper")
            .field("target", &self.shared.target)
            .finish_non_exhaustive()
    }
}

impl Helper {
    pub(crate) fn new(owner: u64, shared: Arc<Shared>) -> Helper {
        Helper {
            owner,
            shared,
            hooks: None,
        }
    }

    /// A helper for a child policy of the balancer that owns this helper
    /// (gRPC-Go's wrapped `ClientConn` of `balancergroup` and
    /// `gracefulswitch`): the child's [`update_state`](Self::update_state)
    /// calls go to `hooks` instead of the channel, and `hooks` hears of
    /// each subchannel it creates. Subchannels stay the parent's: their
    /// state changes reach the parent's balancer, and they are shut down
    /// when it closes. Everything else (`resolve_now`, `exit_idle`) goes to
    /// the channel. [`child::ChildGroup`] does the bookkeeping for a parent
    /// with several children.
    pub fn with_hooks(&self, hooks: Arc<dyn HelperHooks>) -> Helper {
        Helper {
            owner: self.owner,
            shared: Arc::clone(&self.shared),
            hooks: Some(hooks),
        }
    }

    /// A new subchannel to `address`, IDLE until [`SubConn::connect`].
    /// Its state changes reach this balancer's
    /// [`Balancer::subchannel_state`].
    pub fn new_subconn(&self, address: resolver::Address) -> SubConn {
        self.new_subconn_with_attributes(address, Attributes::new())
    }

    /// Like [`new_subconn`](Self::new_subconn), for an address the
    /// resolver gave `attributes` ([`resolver::Endpoint::address_attributes`]);
    /// the subchannel keeps them for the policy to read with
    /// [`SubConn::attributes`]. They do not change the connection.
    pub fn new_subconn_with_attributes(
        &self,
        address: resolver::Address,
        attributes: Attributes,
    ) -> SubConn {
        let subconn = SubConn {
            inner: Subchannel::new(self.owner, address, attributes, Arc::clone(&self.shared)),
        };
        if let Some(hooks) = &self.hooks {
            hooks.new_subconn(&subconn);
        }
        subconn
    }

    /// Publishes the channel's state and the picker calls use from now on
    /// (for a child policy's helper, tells its parent instead).
    pub fn update_state(&self, state: connectivity::State, picker: Arc<dyn Picker>) {
        match &self.hooks {
            Some(hooks) => hooks.update_state(state, picker),
            None => self.shared.balancer_state(self.owner, state, picker),
        }
    }

    /// Asks the resolver to resolve again (a connection was lost).
    pub fn resolve_now(&self) {
        self.shared.resolve_now();
    }

    /// Asks the channel to call this balancer's [`Balancer::exit_idle`] soon:
    /// for the picker of an idle balancer, which must not do the work itself.
    pub fn exit_idle(&self) {
        self.shared.exit_idle();
    }

    /// The channel's target.
    pub fn target(&self) -> &str {
        &self.shared.target
    }
}

/// A handle to a subchannel: a connection, kept up on demand, to one address
/// (gRPC-Go's `balancer.SubConn`). Cheap to clone; clones are equal.
#[derive(Clone)]
pub struct SubConn {
    pub(crate) inner: Arc<Subchannel>,
}

impl SubConn {
    /// Starts connecting if IDLE; otherwise does nothing.
    pub fn connect(&self) {
        self.inner.connect();
    }

    /// Closes the subchannel: calls under way on its connection finish,
    /// new picks of it wait for the next picker. Idempotent.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Makes the next connection attempt start at once (gRPC-Go's
    /// `ResetConnectBackoff`), cutting short a backoff under way.
    pub fn reset_backoff(&self) {
        self.inner.reset_backoff();
    }

    /// The address it connects to.
    pub fn address(&self) -> &resolver::Address {
        self.inner.address()
    }

    /// The attributes its address had when it was created (see
    /// [`Helper::new_subconn_with_attributes`]); empty for a subchannel made
    /// with [`Helper::new_subconn`]. A policy that keeps the subchannel
    /// across resolver updates reads newer ones from the update's
    /// [`resolver::Endpoint::address_attributes`].
    pub fn attributes(&self) -> &Attributes {
        self.inner.attributes()
    }

    /// Its current connectivity state, as this balancer was told it.
    pub fn state(&self) -> connectivity::State {
        self.inner.state()
    }

    /// Asks for client-side health checking (gRFC A17) of this subchannel,
    /// gRPC-Go's health listener: when the service config has
    /// `healthCheckConfig.serviceName`, each connection watches that
    /// service's health, and [`Balancer::subchannel_state`] reports READY
    /// only while the server says SERVING (TRANSIENT_FAILURE otherwise,
    /// CONNECTING while the check starts). A server without the health
    /// service counts as healthy. Without a `healthCheckConfig` (or the
    /// `health` feature) it changes nothing. `round_robin`'s pick_first
    /// children ask for it (gRFC A61); a top-level `pick_first` does not,
    /// as in gRPC. Call it before [`connect`](Self::connect).
    pub fn enable_health_check(&self) {
        self.inner.enable_health_check();
    }
}

impl fmt::Debug for SubConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubConn({}, {})", self.inner.id(), self.inner.address())
    }
}

impl PartialEq for SubConn {
    fn eq(&self, other: &SubConn) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for SubConn {}

impl Hash for SubConn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.id().hash(state);
    }
}

type Registry = RwLock<HashMap<String, Arc<dyn Builder>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let builtins: [Arc<dyn Builder>; 2] = [
            Arc::new(pick_first::PickFirstBuilder),
            Arc::new(round_robin::RoundRobinBuilder),
        ];
        RwLock::new(
            builtins
                .into_iter()
                .map(|b| (b.name().to_string(), b))
                .collect(),
        )
    })
}

/// Registers a policy under its name, process-wide, replacing any policy of
/// that name (built-in ones included). Call it at start-up.
pub fn register(builder: impl Builder) {
    registry()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(builder.name().to_string(), Arc::new(builder));
}

/// The policy registered as `name`, if any.
pub fn get(name: &str) -> Option<Arc<dyn Builder>> {
    registry()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .cloned()
}
