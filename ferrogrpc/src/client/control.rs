//! The channel's control plane: one task per channel that owns the resolver
//! and the balancer and applies, in order, everything they and the
//! subchannels report (gRPC-Go's `ccResolverWrapper`, `ccBalancerWrapper`,
//! graceful switch and idleness manager, serialised on one task).
//!
//! Calls never wait on this task when the channel is READY: they read the
//! published picker with one atomic load ([`Shared::picker`]) and only
//! subscribe to picker updates when they must queue.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{mpsc, watch};

use super::subchannel::Subchannel;
use crate::{
    backoff,
    balancer::{
        self, Balancer, ClientConnState, ErrorPicker, Helper, PickInfo, PickResult, Picker,
        QueuePicker, SubConn, SubConnState,
    },
    connectivity::{State, StateTracker},
    resolver::{self, BuildOptions, Controller, Target},
    serviceconfig::ServiceConfig,
    status::Status,
    transport::client::ClientConfig,
};

/// What the control task is told.
pub(crate) enum Event {
    Resolver {
        generation: u64,
        report: Result<resolver::State, String>,
    },
    SubConnState {
        subconn: SubConn,
        state: SubConnState,
    },
    BalancerState {
        owner: u64,
        state: State,
        picker: Arc<dyn Picker>,
    },
    ResolveNow,
    ExitIdle,
    ResetBackoff,
    Shutdown,
}

/// The picker calls use, and whether the channel is idle (a call then wakes
/// it).
pub(crate) struct Published {
    pub(crate) picker: Arc<dyn Picker>,
    pub(crate) idle: bool,
}

/// How the channel was configured to resolve and balance.
pub(crate) struct Settings {
    pub(crate) target: Target,
    pub(crate) resolver: Arc<dyn resolver::Builder>,
    pub(crate) config: ClientConfig,
    pub(crate) backoff: backoff::Config,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) default_service_config: Option<ServiceConfig>,
    pub(crate) disable_service_config: bool,
}

/// State shared by the channel's handles, its control task and its
/// subchannels.
pub(crate) struct Shared {
    pub(crate) target: String,
    parsed_target: Target,
    resolver_builder: Arc<dyn resolver::Builder>,
    pub(crate) config: ClientConfig,
    pub(crate) backoff: backoff::Config,
    idle_timeout: Option<Duration>,
    default_service_config: Option<ServiceConfig>,
    disable_service_config: bool,
    /// The keepalive time in use, in nanoseconds (0: off); doubled when a
    /// server says `too_many_pings` (gRFC A8).
    keepalive_nanos: AtomicU64,
    events: mpsc::UnboundedSender<Event>,
    /// The control task's receiver, until the task is started (lazily, so a
    /// channel can be built outside a runtime).
    unstarted: Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
    started: AtomicBool,
    pub(crate) picker: ArcSwap<Published>,
    /// Bumped on every publish; queued calls wait on it.
    pub(crate) version: watch::Sender<u64>,
    pub(crate) state: StateTracker,
    /// The channel's channelz entity.
    #[cfg(feature = "channelz")]
    pub(crate) channelz: crate::channelz::Handle<crate::channelz::ChannelEntry>,
    /// Set by each call; cleared by the idle check.
    active: AtomicBool,
    /// Calls waiting for a picker (they keep the channel from going idle).
    waiting: AtomicUsize,
    next_id: AtomicU64,
    subchannels: Mutex<HashMap<u64, Arc<Subchannel>>>,
    /// The service config in use, for per-method settings.
    pub(crate) service_config: ArcSwapOption<ServiceConfig>,
    /// The retry throttle of the service config in use (gRFC A6), kept
    /// across updates that do not change it.
    pub(crate) throttle: ArcSwapOption<super::attempts::Throttle>,
    /// The resolver reported (addresses and service config, or an error)
    /// at least once; calls wait for that before reading their method's
    /// settings, as gRPC-Go's do.
    pub(crate) resolved: AtomicBool,
    /// The scheme and authority of the channel's calls, for the calls the
    /// channel makes itself (health checks); set once at build.
    pub(crate) call_target: std::sync::OnceLock<(http::uri::Scheme, http::uri::Authority)>,
}

impl Shared {
    pub(crate) fn new(target: String, settings: Settings) -> Arc<Shared> {
        let (events, rx) = mpsc::unbounded_channel();
        let keepalive_nanos = settings
            .config
            .keepalive
            .time
            .map_or(0, |t| t.as_nanos().min(u64::MAX as u128) as u64);
        // Until the resolver reports, calls use the default config (gRPC-Go
        // makes the first calls wait for the resolver instead).
        let initial_config = settings.default_service_config.clone().map(Arc::new);
        let initial_throttle = initial_config
            .as_ref()
            .and_then(|c| c.retry_throttling())
            .map(|t| Arc::new(super::attempts::Throttle::new(t)));
        Arc::new(Shared {
            #[cfg(feature = "channelz")]
            channelz: crate::channelz::register_channel(&target),
            target,
            parsed_target: settings.target,
            resolver_builder: settings.resolver,
            config: settings.config,
            backoff: settings.backoff.validated(),
            idle_timeout: settings.idle_timeout,
            default_service_config: settings.default_service_config,
            disable_service_config: settings.disable_service_config,
            keepalive_nanos: AtomicU64::new(keepalive_nanos),
            events,
            unstarted: Mutex::new(Some(rx)),
            started: AtomicBool::new(false),
            picker: ArcSwap::from_pointee(Published {
                picker: Arc::new(QueuePicker),
                idle: true,
            }),
            version: watch::Sender::new(0),
            state: StateTracker::aggregate(State::Idle),
            active: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            subchannels: Mutex::new(HashMap::new()),
            service_config: ArcSwapOption::new(initial_config),
            throttle: ArcSwapOption::new(initial_throttle),
            resolved: AtomicBool::new(false),
            call_target: std::sync::OnceLock::new(),
        })
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn send(&self, event: Event) {
        // Fails only once the control task has ended (channel shut down).
        let _ = self.events.send(event);
    }

    /// Notes that a call started, for the idle timer. Writes only when the
    /// flag is clear, so busy channels do not bounce the cache line.
    pub(crate) fn note_activity(&self) {
        if !self.active.load(Ordering::Relaxed) {
            self.active.store(true, Ordering::Relaxed);
        }
    }

    /// Counts a call as waiting for a picker until the guard is dropped.
    pub(crate) fn waiting_call(&self) -> WaitingCall<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        WaitingCall(self)
    }

    /// Starts the control task if it is not running yet.
    pub(crate) fn ensure_started(self: &Arc<Self>) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let rx = self
            .unstarted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rx) = rx {
            self.started.store(true, Ordering::Release);
            let control = Control {
                shared: Arc::clone(self),
                rx,
                idle: true,
                resolver: None,
                generation: 0,
                current: None,
                pending: None,
            };
            crate::logging::spawn(control.run());
        }
    }

    /// Wakes the channel from IDLE (or asks its balancer to connect).
    pub(crate) fn exit_idle(self: &Arc<Self>) {
        self.ensure_started();
        self.send(Event::ExitIdle);
    }

    pub(crate) fn reset_backoff(self: &Arc<Self>) {
        self.send(Event::ResetBackoff);
    }

    /// Closes the channel: the control task (if it ever started) shuts
    /// everything down; calls from now on fail with `CANCELLED`.
    pub(crate) fn shutdown(&self) {
        let unstarted = self
            .unstarted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if unstarted.is_some() {
            // Never used: nothing runs, so close here; the task never starts.
            self.started.store(true, Ordering::Release);
            self.publish(
                State::Shutdown,
                Arc::new(DropPicker(Status::cancelled("the channel is closed"))),
                false,
            );
        } else {
            self.send(Event::Shutdown);
        }
    }

    /// The scheme and authority of the channel's calls.
    #[cfg(feature = "health")]
    pub(crate) fn call_target(&self) -> (http::uri::Scheme, http::uri::Authority) {
        self.call_target.get().cloned().unwrap_or_else(|| {
            (
                http::uri::Scheme::HTTP,
                http::uri::Authority::from_static("localhost"),
            )
        })
    }

    pub(crate) fn subchannel_state(&self, subconn: SubConn, state: SubConnState) {
        self.send(Event::SubConnState { subconn, state });
    }

    pub(crate) fn balancer_state(&self, owner: u64, state: State, picker: Arc<dyn Picker>) {
        self.send(Event::BalancerState {
            owner,
            state,
            picker,
        });
    }

    pub(crate) fn resolve_now(&self) {
        self.send(Event::ResolveNow);
    }

    pub(crate) fn add_subchannel(&self, sub: &Arc<Subchannel>) {
        self.subchannels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sub.id(), Arc::clone(sub));
    }

    pub(crate) fn remove_subchannel(&self, id: u64) {
        self.subchannels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    fn subchannels(&self) -> Vec<Arc<Subchannel>> {
        self.subchannels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The keepalive time currently in use (after any doubling).
    pub(crate) fn keepalive_time(&self) -> Option<Duration> {
        match self.keepalive_nanos.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// gRFC A8: the server thinks we ping too often.
    pub(crate) fn double_keepalive_time(&self) {
        let now = self.keepalive_nanos.load(Ordering::Relaxed);
        if now == 0 {
            return;
        }
        let doubled = now.saturating_mul(2).min(i64::MAX as u64);
        self.keepalive_nanos.store(doubled, Ordering::Relaxed);
        tracing::warn!(
            target = %self.target,
            "server sent GOAWAY too_many_pings; keepalive time doubled to {:?}",
            Duration::from_nanos(doubled)
        );
    }

    /// A call failed its pick: channelz's trace says why (bounded: the
    /// ring keeps the latest).
    pub(crate) fn pick_failed(&self, status: &Status) {
        #[cfg(feature = "channelz")]
        self.channelz.trace.add(
            crate::channelz::Severity::Warning,
            format!("pick failed: {}: {}", status.code(), status.message()),
        );
        #[cfg(not(feature = "channelz"))]
        let _ = status;
    }

    fn publish(&self, state: State, picker: Arc<dyn Picker>, idle: bool) {
        self.picker.store(Arc::new(Published { picker, idle }));
        self.state.set(state);
        #[cfg(feature = "channelz")]
        self.channelz.set_state(state);
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The status a call would fail with now, for `Channel::connect`.
    pub(crate) fn current_error(&self) -> Option<Status> {
        let published = self.picker.load();
        let metadata = crate::metadata::MetadataMap::new();
        match published.picker.pick(&PickInfo::new("", &metadata)) {
            PickResult::Fail(status) | PickResult::Drop(status) => Some(status),
            PickResult::Complete(pick) => {
                // Not used for a call: its callback hears CANCELLED.
                drop(
                    pick.done
                        .map(|done| crate::balancer::DoneGuard::new(done, None)),
                );
                None
            }
            _ => None,
        }
    }
}

/// A call waiting for a picker; see [`Shared::waiting_call`].
pub(crate) struct WaitingCall<'a>(&'a Shared);

impl Drop for WaitingCall<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Fails every call, wait-for-ready or not: the channel is closed.
struct DropPicker(Status);

impl Picker for DropPicker {
    fn pick(&self, _info: &PickInfo<'_>) -> PickResult {
        PickResult::Drop(self.0.clone())
    }
}

/// Where a resolver's controller sends: tagged with the resolver's
/// generation, so reports of a closed resolver are dropped.
struct ResolverSink {
    generation: u64,
    events: mpsc::UnboundedSender<Event>,
    closed: Arc<AtomicBool>,
}

impl resolver::Sink for ResolverSink {
    fn update(&self, state: resolver::State) {
        let _ = self.events.send(Event::Resolver {
            generation: self.generation,
            report: Ok(state),
        });
    }

    fn error(&self, message: String) {
        let _ = self.events.send(Event::Resolver {
            generation: self.generation,
            report: Err(message),
        });
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.events.is_closed()
    }
}

/// A running resolver; dropping it closes it and marks its controller
/// closed.
struct ActiveResolver {
    resolver: Box<dyn resolver::Resolver>,
    closed: Arc<AtomicBool>,
}

impl Drop for ActiveResolver {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// A balancer instance and the last state it published.
struct Child {
    owner: u64,
    name: String,
    balancer: Box<dyn Balancer>,
    last: Option<(State, Arc<dyn Picker>)>,
}

struct Control {
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Event>,
    idle: bool,
    resolver: Option<ActiveResolver>,
    generation: u64,
    /// The balancer whose pickers calls use.
    current: Option<Child>,
    /// A balancer of a new policy, taking over once it is ready (graceful
    /// switch).
    pending: Option<Child>,
}

/// How many quiet idle checks in a row make a channel idle: the check runs
/// every `idle_timeout / IDLE_CHECKS`, so a channel goes idle between
/// `idle_timeout` and `idle_timeout * (1 + 1/IDLE_CHECKS)` after its last
/// call ended.
const IDLE_CHECKS: u32 = 4;

impl Control {
    async fn run(mut self) {
        let mut quiet = 0;
        let period = self
            .shared
            .idle_timeout
            .map(|t| (t / IDLE_CHECKS).max(Duration::from_millis(1)));
        let mut ticks = period.map(|p| {
            let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        loop {
            let tick = async {
                match ticks.as_mut() {
                    Some(ticks) => {
                        ticks.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = self.rx.recv() => match event {
                    None | Some(Event::Shutdown) => break,
                    Some(event) => self.handle(event),
                },
                () = tick => {
                    let busy = self.shared.active.swap(false, Ordering::Relaxed)
                        || self.shared.waiting.load(Ordering::Relaxed) > 0
                        || self.shared.subchannels().iter().any(|s| s.active_streams() > 0);
                    if self.idle || busy {
                        quiet = 0;
                    } else {
                        quiet += 1;
                        if quiet >= IDLE_CHECKS {
                            quiet = 0;
                            tracing::debug!(target = %self.shared.target, "channel idle");
                            self.enter_idle();
                        }
                    }
                }
            }
        }
        self.close_all();
        self.shared.publish(
            State::Shutdown,
            Arc::new(DropPicker(Status::cancelled("the channel is closed"))),
            false,
        );
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Resolver { generation, report } => {
                if generation != self.generation || self.resolver.is_none() {
                    return;
                }
                match report {
                    Ok(state) => self.on_resolver_state(state),
                    Err(message) => self.on_resolver_error(message),
                }
            }
            Event::SubConnState { subconn, state } => {
                let owner = subconn.inner.owner();
                if let Some(child) = self.child_mut(owner) {
                    child.balancer.subchannel_state(&subconn, state);
                }
            }
            Event::BalancerState {
                owner,
                state,
                picker,
            } => self.on_balancer_state(owner, state, picker),
            Event::ResolveNow => {
                if let Some(active) = &mut self.resolver {
                    active.resolver.resolve_now();
                }
            }
            Event::ExitIdle => {
                if self.idle {
                    self.exit_idle();
                } else if let Some(child) = self.latest_mut() {
                    child.balancer.exit_idle();
                }
            }
            Event::ResetBackoff => {
                for sub in self.shared.subchannels() {
                    sub.reset_backoff();
                }
            }
            Event::Shutdown => {}
        }
    }

    fn child_mut(&mut self, owner: u64) -> Option<&mut Child> {
        [self.current.as_mut(), self.pending.as_mut()]
            .into_iter()
            .flatten()
            .find(|c| c.owner == owner)
    }

    fn latest_mut(&mut self) -> Option<&mut Child> {
        match self.pending {
            Some(ref mut pending) => Some(pending),
            None => self.current.as_mut(),
        }
    }

    fn exit_idle(&mut self) {
        self.idle = false;
        self.generation += 1;
        self.shared
            .publish(State::Connecting, Arc::new(QueuePicker), false);
        let closed = Arc::new(AtomicBool::new(false));
        let controller = Controller::new(Arc::new(ResolverSink {
            generation: self.generation,
            events: self.shared.events.clone(),
            closed: Arc::clone(&closed),
        }));
        let options = BuildOptions {
            disable_service_config: self.shared.disable_service_config,
        };
        match self
            .shared
            .resolver_builder
            .build(&self.shared.parsed_target, controller, options)
        {
            Ok(resolver) => self.resolver = Some(ActiveResolver { resolver, closed }),
            Err(message) => {
                let status = Status::unavailable(format!(
                    "cannot resolve {}: {message}",
                    self.shared.target
                ));
                // A report too: calls waiting for the first one go on (and
                // fail fast with this error).
                self.shared.resolved.store(true, Ordering::Release);
                self.shared.publish(
                    State::TransientFailure,
                    Arc::new(ErrorPicker(status)),
                    false,
                );
            }
        }
    }

    fn enter_idle(&mut self) {
        self.close_all();
        self.idle = true;
        self.shared
            .publish(State::Idle, Arc::new(QueuePicker), true);
    }

    fn close_all(&mut self) {
        self.resolver = None;
        if let Some(child) = self.pending.take() {
            self.close(child);
        }
        if let Some(child) = self.current.take() {
            self.close(child);
        }
        // The service config in use stays: calls after an idle period use
        // it until the resolver reports again.
    }

    /// Drops a balancer and shuts down every subchannel it made.
    fn close(&self, child: Child) {
        drop(child.balancer);
        for sub in self.shared.subchannels() {
            if sub.owner() == child.owner {
                sub.shutdown();
            }
        }
    }

    /// The service config in use.
    fn in_use(&self) -> Option<ServiceConfig> {
        self.shared.service_config.load_full().map(|c| (*c).clone())
    }

    /// The service config to use with a resolver's report.
    fn choose_service_config(
        &self,
        reported: &Option<Result<ServiceConfig, String>>,
    ) -> Option<ServiceConfig> {
        if self.shared.disable_service_config {
            return self.shared.default_service_config.clone();
        }
        match reported {
            None => self.shared.default_service_config.clone(),
            Some(Ok(config)) => Some(config.clone()),
            Some(Err(reason)) => {
                tracing::warn!(
                    target = %self.shared.target,
                    "resolver returned an invalid service config ({reason}); keeping the previous one"
                );
                self.in_use()
                    .or_else(|| self.shared.default_service_config.clone())
            }
        }
    }

    /// The load-balancing policy and its config a service config asks for:
    /// the first registered entry of `loadBalancingConfig`, else pick_first.
    fn choose_policy(
        &self,
        config: Option<&ServiceConfig>,
    ) -> (Arc<dyn balancer::Builder>, Option<balancer::Config>) {
        let fallback = || {
            let builder = balancer::get("pick_first")
                .unwrap_or_else(|| Arc::new(balancer::pick_first::PickFirstBuilder));
            (builder, None)
        };
        let Some(config) = config else {
            return fallback();
        };
        for (name, json) in config.load_balancing_config() {
            if let Some(builder) = balancer::get(name) {
                match builder.parse_config(json) {
                    Ok(parsed) => return (builder, parsed),
                    Err(reason) => {
                        tracing::warn!(
                            target = %self.shared.target,
                            "invalid {name} config ({reason}); using pick_first"
                        );
                        return fallback();
                    }
                }
            }
        }
        if !config.load_balancing_config().is_empty() {
            tracing::warn!(
                target = %self.shared.target,
                "no registered policy in loadBalancingConfig; using pick_first"
            );
        }
        fallback()
    }

    fn build_child(&self, builder: &dyn balancer::Builder) -> Child {
        let owner = self.shared.next_id();
        Child {
            owner,
            name: builder.name().to_string(),
            balancer: builder.build(Helper::new(owner, Arc::clone(&self.shared))),
            last: None,
        }
    }

    /// Makes the latest balancer one of `builder`'s policy: the first one
    /// becomes current at once; a change of policy builds a pending one.
    fn ensure_policy(&mut self, builder: &dyn balancer::Builder) {
        let name = builder.name();
        let current_matches = self.current.as_ref().map(|c| c.name == name);
        let pending_matches = self.pending.as_ref().map(|p| p.name == name);
        match (current_matches, pending_matches) {
            (None, _) => {
                self.trace(format!("channel uses the load-balancing policy {name:?}"));
                self.current = Some(self.build_child(builder));
            }
            (Some(true), None) | (Some(_), Some(true)) => {}
            (Some(true), Some(false)) => {
                if let Some(pending) = self.pending.take() {
                    self.close(pending);
                }
            }
            (Some(false), _) => {
                if let Some(pending) = self.pending.take() {
                    self.close(pending);
                }
                tracing::debug!(target = %self.shared.target, policy = name, "switching load-balancing policy");
                self.trace(format!(
                    "channel switches to the load-balancing policy {name:?}"
                ));
                self.pending = Some(self.build_child(builder));
            }
        }
    }

    /// Records an event in the channel's channelz trace.
    fn trace(&self, description: String) {
        #[cfg(feature = "channelz")]
        self.shared
            .channelz
            .trace
            .add(crate::channelz::Severity::Info, description);
        #[cfg(not(feature = "channelz"))]
        let _ = description;
    }

    fn on_resolver_state(&mut self, mut state: resolver::State) {
        state.normalize();
        self.trace(format!(
            "resolver returned {} addresses in {} endpoints{}",
            state.addresses.len(),
            state.endpoints.len(),
            match &state.service_config {
                None => "",
                Some(Ok(_)) => ", and a service config",
                Some(Err(_)) => ", and a service config that does not parse",
            }
        ));
        let config = self.choose_service_config(&state.service_config);
        self.shared
            .service_config
            .store(config.clone().map(Arc::new));
        self.shared.resolved.store(true, Ordering::Release);
        let throttling = config.as_ref().and_then(ServiceConfig::retry_throttling);
        let unchanged = match (self.shared.throttle.load().as_deref(), throttling) {
            (Some(throttle), Some(config)) => throttle.is_for(config),
            (None, None) => true,
            _ => false,
        };
        if !unchanged {
            let throttle = throttling.map(|c| Arc::new(super::attempts::Throttle::new(c)));
            self.shared.throttle.store(throttle);
        }
        let (builder, lb_config) = self.choose_policy(config.as_ref());
        self.ensure_policy(&*builder);
        let Some(child) = self.latest_mut() else {
            return;
        };
        let result = child.balancer.update_client_conn_state(ClientConnState {
            resolver_state: state,
            config: lb_config,
        });
        if let Err(reason) = result {
            tracing::debug!(target = %self.shared.target, "balancer rejected the resolver state: {reason}");
            #[cfg(feature = "channelz")]
            self.shared.channelz.trace.add(
                crate::channelz::Severity::Warning,
                format!("balancer rejected the resolver state: {reason}"),
            );
            if let Some(active) = &mut self.resolver {
                active.resolver.resolve_now();
            }
        }
    }

    fn on_resolver_error(&mut self, message: String) {
        tracing::debug!(target = %self.shared.target, "resolver error: {message}");
        #[cfg(feature = "channelz")]
        self.shared.channelz.trace.add(
            crate::channelz::Severity::Warning,
            format!("resolver error: {message}"),
        );
        self.shared.resolved.store(true, Ordering::Release);
        if self.current.is_none() {
            let (builder, _) = self.choose_policy(self.in_use().as_ref());
            self.ensure_policy(&*builder);
        }
        let status = Status::unavailable(format!("name resolver error: {message}"));
        if let Some(child) = self.latest_mut() {
            child.balancer.resolver_error(status);
        }
    }

    fn on_balancer_state(&mut self, owner: u64, state: State, picker: Arc<dyn Picker>) {
        if self.idle {
            return;
        }
        if let Some(current) = self.current.as_mut().filter(|c| c.owner == owner) {
            current.last = Some((state, Arc::clone(&picker)));
            let pending_ready = self.pending.as_ref().is_some_and(|p| p.last.is_some());
            if pending_ready && state != State::Ready {
                self.swap();
            } else {
                self.shared.publish(state, picker, false);
            }
        } else if let Some(pending) = self.pending.as_mut().filter(|p| p.owner == owner) {
            pending.last = Some((state, picker));
            let current_ready = self
                .current
                .as_ref()
                .and_then(|c| c.last.as_ref())
                .is_some_and(|(s, _)| *s == State::Ready);
            if state != State::Connecting || !current_ready {
                self.swap();
            }
        }
    }

    /// The pending balancer replaces the current one.
    fn swap(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        if let Some(old) = self.current.replace(pending) {
            self.close(old);
        }
        if let Some((state, picker)) = self.current.as_ref().and_then(|c| c.last.clone()) {
            self.shared.publish(state, picker, false);
        }
    }
}
