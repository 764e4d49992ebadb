//! A subchannel: one logical connection to one address, connected when its
//! balancer asks and reconnected with backoff (gRPC-Go's `addrConn`).
//!
//! States follow `connectivity-semantics-and-api.md` and gRFC A62:
//!
//! ```text
//! IDLE ─connect()─▶ CONNECTING ─ok─▶ READY ─connection lost / GOAWAY─▶ IDLE
//!                       │
//!                       └─failed─▶ TRANSIENT_FAILURE ─backoff over─▶ IDLE
//! ```
//!
//! The call path reads the READY transport with one atomic load. State
//! changes happen under a small lock (never taken by calls) and are sent to
//! the channel's control task in the order they happen.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex, MutexGuard,
};

use arc_swap::ArcSwapOption;
use tokio::{sync::Notify, time::Instant};

use super::control::Shared;
use crate::{
    attributes::Attributes,
    backoff::Backoff,
    balancer::{SubConn, SubConnState},
    connectivity::{State, StateTracker},
    resolver::Address,
    status::Status,
    transport::client::{ConnEvent, Endpoint, Http2Client},
};

struct Current {
    id: u64,
    client: Http2Client,
    ready_at: Instant,
}

struct Ctl {
    /// The connection's state.
    state: StateTracker,
    /// The state the balancer was last told: the connection's, except that
    /// with health checking a READY connection is reported as its health
    /// says (gRFC A17).
    reported: State,
    backoff: Backoff,
    task: Option<tokio::task::AbortHandle>,
    /// The health check of the current connection, while it runs.
    health_task: Option<tokio::task::AbortHandle>,
}

pub(crate) struct Subchannel {
    id: u64,
    owner: u64,
    address: Address,
    /// The resolver's attributes for the address, for the balancer.
    attributes: Attributes,
    endpoint: Endpoint,
    shared: Arc<Shared>,
    current: ArcSwapOption<Current>,
    next_conn: AtomicU64,
    ctl: Mutex<Ctl>,
    reset: Notify,
    /// The balancer asked for health checking (gRFC A17).
    health_checked: std::sync::atomic::AtomicBool,
    /// Health-check streams open: not calls, so they do not keep the
    /// channel out of idle.
    pub(crate) health_streams: AtomicU64,
    /// The subchannel's channelz entity.
    #[cfg(feature = "channelz")]
    channelz: crate::channelz::Handle<crate::channelz::ChannelEntry>,
}

impl Subchannel {
    pub(crate) fn new(
        owner: u64,
        address: Address,
        attributes: Attributes,
        shared: Arc<Shared>,
    ) -> Arc<Subchannel> {
        // A socket, the channel's dialer, or its proxy: decided once here.
        let endpoint = Endpoint::new(&address, &shared.config);
        #[cfg(feature = "channelz")]
        let address_text = address.to_string();
        let sub = Arc::new(Subchannel {
            id: shared.next_id(),
            owner,
            address,
            attributes,
            endpoint,
            current: ArcSwapOption::empty(),
            next_conn: AtomicU64::new(0),
            ctl: Mutex::new(Ctl {
                state: StateTracker::new(State::Idle),
                reported: State::Idle,
                backoff: Backoff::new(shared.backoff),
                task: None,
                health_task: None,
            }),
            reset: Notify::new(),
            health_checked: std::sync::atomic::AtomicBool::new(false),
            health_streams: AtomicU64::new(0),
            #[cfg(feature = "channelz")]
            channelz: crate::channelz::register_subchannel(&shared.channelz, &address_text),
            shared,
        });
        sub.shared.add_subchannel(&sub);
        sub
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn owner(&self) -> u64 {
        self.owner
    }

    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    pub(crate) fn attributes(&self) -> &Attributes {
        &self.attributes
    }

    /// The state its balancer sees (health included, see [`Ctl::reported`]).
    pub(crate) fn state(&self) -> State {
        self.lock().reported
    }

    fn lock(&self) -> MutexGuard<'_, Ctl> {
        self.ctl.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The READY connection, if there is one that takes new calls. A
    /// connection found draining (GOAWAY) is let go (see `forget`), and the
    /// call waits for the balancer's next picker.
    pub(crate) fn ready_transport(self: &Arc<Self>) -> Option<Http2Client> {
        let current = self.current.load();
        let current = current.as_ref()?;
        if current.client.is_draining() {
            let reason = current.client.unusable_reason();
            self.forget(current.id, reason.as_deref().unwrap_or("closing"));
            return None;
        }
        Some(current.client.clone())
    }

    /// Calls open on the current connection (0 when there is none); a
    /// health-check stream is not one.
    pub(crate) fn active_streams(&self) -> usize {
        let streams = self
            .current
            .load()
            .as_ref()
            .map_or(0, |c| c.client.active_streams());
        let health = self.health_streams.load(Ordering::Acquire) as usize;
        streams.saturating_sub(health)
    }

    /// Moves the connection to `to` and tells the balancer, under the lock
    /// so reports keep their order. With health checking, a READY
    /// connection is reported CONNECTING until its health check answers.
    fn set(self: &Arc<Self>, ctl: &mut Ctl, to: State, error: Option<Status>) {
        if ctl.state.state() == State::Shutdown || !ctl.state.set(to) {
            return;
        }
        #[cfg(feature = "channelz")]
        self.channelz.set_state(to);
        if let Some(task) = ctl.health_task.take() {
            task.abort();
        }
        let reported = match to {
            State::Ready if self.start_health_check(ctl) => State::Connecting,
            other => other,
        };
        self.report(ctl, reported, error);
    }

    /// Tells the balancer `state`, unless it was the last thing it was told
    /// (a new TRANSIENT_FAILURE error is always told).
    fn report(self: &Arc<Self>, ctl: &mut Ctl, state: State, error: Option<Status>) {
        if ctl.reported == state && state != State::TransientFailure {
            return;
        }
        ctl.reported = state;
        self.shared.subchannel_state(
            SubConn {
                inner: Arc::clone(self),
            },
            SubConnState { state, error },
        );
    }

    /// Asks for health checking of this subchannel's connections.
    pub(crate) fn enable_health_check(&self) {
        self.health_checked
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Starts the health check of the current connection when the balancer
    /// asked for it and the service config names a service; returns whether
    /// it did.
    #[cfg(feature = "health")]
    fn start_health_check(self: &Arc<Self>, ctl: &mut Ctl) -> bool {
        if !self
            .health_checked
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return false;
        }
        let config = self.shared.service_config.load();
        let Some(service) = config.as_ref().and_then(|c| c.health_check_service_name()) else {
            return false;
        };
        let current = self.current.load();
        let Some(current) = current.as_ref() else {
            return false;
        };
        let task = crate::logging::spawn(super::health_check::watch(
            Arc::downgrade(self),
            current.id,
            current.client.clone(),
            service.to_string(),
        ));
        ctl.health_task = Some(task.abort_handle());
        true
    }

    #[cfg(not(feature = "health"))]
    fn start_health_check(self: &Arc<Self>, _ctl: &mut Ctl) -> bool {
        false
    }

    /// The health check of connection `conn` says `state`.
    #[cfg(feature = "health")]
    pub(crate) fn health_update(self: &Arc<Self>, conn: u64, state: State, error: Option<Status>) {
        let mut ctl = self.lock();
        let current = self.current.load();
        if ctl.state.state() != State::Ready || current.as_ref().is_none_or(|c| c.id != conn) {
            return;
        }
        self.report(&mut ctl, state, error);
    }

    /// The backoff of health-check streams: the channel's connect backoff.
    #[cfg(feature = "health")]
    pub(crate) fn backoff_config(&self) -> crate::backoff::Config {
        self.shared.backoff
    }

    /// The scheme and authority the channel's calls carry.
    #[cfg(feature = "health")]
    pub(crate) fn call_target(&self) -> (http::uri::Scheme, http::uri::Authority) {
        self.shared.call_target()
    }

    pub(crate) fn connect(self: &Arc<Self>) {
        let mut ctl = self.lock();
        if ctl.state.state() != State::Idle {
            return;
        }
        self.set(&mut ctl, State::Connecting, None);
        let attempt = ctl.backoff.start(Instant::now());
        let this = Arc::clone(self);
        let task =
            crate::logging::spawn(async move { this.attempt(attempt.connect_deadline).await });
        ctl.task = Some(task.abort_handle());
    }

    async fn attempt(self: Arc<Self>, deadline: Instant) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
        let mut config = self.shared.config.clone();
        config.keepalive.time = self.shared.keepalive_time();
        #[cfg(feature = "channelz")]
        {
            config.channelz = Some(self.channelz.share());
        }
        config.connect_timeout = deadline.saturating_duration_since(Instant::now());
        let weak = Arc::downgrade(&self);
        let result = Http2Client::connect(&self.endpoint, &config, move |event| {
            if let Some(sub) = weak.upgrade() {
                sub.on_event(id, event);
            }
        })
        .await;
        let mut ctl = self.lock();
        ctl.task = None;
        if ctl.state.state() == State::Shutdown {
            return;
        }
        match result {
            Ok(client) => {
                // The backoff starts over when this connection ends, unless
                // it ends unused at once (see `forget`).
                self.current.store(Some(Arc::new(Current {
                    id,
                    client,
                    ready_at: Instant::now(),
                })));
                self.set(&mut ctl, State::Ready, None);
                drop(ctl);
                // The connection may have ended (or been sent GOAWAY) before
                // it was stored, when its events found nothing to forget.
                let current = self.current.load();
                if let Some(reason) = current.as_ref().and_then(|c| c.client.unusable_reason()) {
                    self.forget(id, &reason);
                }
            }
            Err(status) => {
                tracing::debug!(address = %self.address, "connect failed: {}", status.message());
                #[cfg(feature = "channelz")]
                self.channelz.trace.add(
                    crate::channelz::Severity::Warning,
                    format!(
                        "failed to connect to {}: {}",
                        self.address,
                        status.message()
                    ),
                );
                self.fail(&mut ctl, status);
            }
        }
    }

    /// A failed attempt: TRANSIENT_FAILURE, then IDLE once the backoff is
    /// over (or reset).
    fn fail(self: &Arc<Self>, ctl: &mut Ctl, status: Status) {
        self.set(ctl, State::TransientFailure, Some(status));
        let backoff_over = ctl.backoff.sleep_until_next();
        let this = Arc::clone(self);
        let task = crate::logging::spawn(async move {
            tokio::select! {
                _ = backoff_over => {}
                () = this.reset.notified() => {}
            }
            let mut ctl = this.lock();
            ctl.task = None;
            this.set(&mut ctl, State::Idle, None);
        });
        ctl.task = Some(task.abort_handle());
    }

    fn on_event(self: &Arc<Self>, id: u64, event: ConnEvent) {
        match event {
            ConnEvent::GoAway(goaway) => {
                if goaway.too_many_pings() {
                    self.shared.double_keepalive_time();
                }
                // Calls under way finish on the old connection; new calls
                // go to a new one.
                self.forget(id, &goaway.describe());
            }
            ConnEvent::Closed(reason) => self.forget(id, &reason),
        }
    }

    /// Lets go of connection `id` if it is the current one: the subchannel
    /// goes IDLE and its balancer decides whether to reconnect, and the
    /// backoff starts over. A connection that ends before carrying any call,
    /// within the backoff's base delay of becoming READY (a server that
    /// sends GOAWAY to every new connection, or accepts and closes), counts
    /// as a failed attempt instead: TRANSIENT_FAILURE and the backoff, so
    /// such a server is not redialled in a loop.
    fn forget(self: &Arc<Self>, id: u64, reason: &str) {
        let current = self.current.load();
        if current.as_ref().is_none_or(|c| c.id != id) {
            return;
        }
        let mut ctl = self.lock();
        let previous = self
            .current
            .compare_and_swap(&*current, None::<Arc<Current>>);
        let Some(previous) = previous.as_ref().filter(|c| c.id == id) else {
            return;
        };
        if ctl.state.state() != State::Ready {
            return;
        }
        tracing::debug!(address = %self.address, %reason, "connection no longer used");
        #[cfg(feature = "channelz")]
        self.channelz.trace.add(
            crate::channelz::Severity::Info,
            format!("connection no longer used: {reason}"),
        );
        let short_lived = previous.ready_at.elapsed() < self.shared.backoff.base_delay;
        if short_lived && !previous.client.was_used() {
            let status = Status::unavailable(format!(
                "connection to {} ended before carrying any call: {reason}",
                self.address
            ));
            self.fail(&mut ctl, status);
        } else {
            ctl.backoff.reset();
            self.set(&mut ctl, State::Idle, None);
        }
    }

    /// Ends the subchannel; calls under way on its connection finish. Its
    /// balancer hears SHUTDOWN, last, as gRPC-Go's state listener does, so
    /// a parent policy can forget which child owned it.
    pub(crate) fn shutdown(self: &Arc<Self>) {
        let mut ctl = self.lock();
        if !ctl.state.set(State::Shutdown) {
            return;
        }
        if let Some(task) = ctl.task.take() {
            task.abort();
        }
        if let Some(task) = ctl.health_task.take() {
            task.abort();
        }
        self.current.store(None);
        ctl.reported = State::Shutdown;
        drop(ctl);
        self.shared.remove_subchannel(self.id);
        self.shared.subchannel_state(
            SubConn {
                inner: Arc::clone(self),
            },
            SubConnState {
                state: State::Shutdown,
                error: None,
            },
        );
    }

    pub(crate) fn reset_backoff(&self) {
        self.lock().backoff.reset();
        self.reset.notify_waiters();
    }
}
