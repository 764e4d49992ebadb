//! A subchannel: one logical connection to one address, connected on demand
//! and reconnected after it dies (gRPC-Go's `addrConn`).
//!
//! The call path reads the current transport with one atomic load; only a
//! call that finds no transport takes the connect lock. A failed connect
//! attempt is shared by every call that waited for it, so a dead address is
//! dialled once per attempt, not once per queued call.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Weak,
};

use arc_swap::ArcSwapOption;

use crate::{
    status::Status,
    transport::client::{ClientConfig, ConnEvent, Endpoint, Http2Client},
};

struct Current {
    id: u64,
    client: Http2Client,
}

pub(crate) struct Subchannel {
    endpoint: Endpoint,
    config: ClientConfig,
    current: ArcSwapOption<Current>,
    /// Count of finished connect attempts; lets waiters see a fresh result.
    attempts: AtomicU64,
    connect: tokio::sync::Mutex<Option<Status>>,
    /// The keepalive time in use, in nanoseconds (0: off); doubled when a
    /// server says `too_many_pings`.
    keepalive_nanos: AtomicU64,
}

impl Subchannel {
    pub(crate) fn new(endpoint: Endpoint, config: ClientConfig) -> Arc<Subchannel> {
        let keepalive_nanos = config.keepalive.time.map_or(0, |t| t.as_nanos() as u64);
        Arc::new(Subchannel {
            endpoint,
            config,
            current: ArcSwapOption::empty(),
            attempts: AtomicU64::new(0),
            connect: tokio::sync::Mutex::new(None),
            keepalive_nanos: AtomicU64::new(keepalive_nanos),
        })
    }

    /// The connected transport, connecting first if there is none (or the
    /// current one is draining after a GOAWAY).
    pub(crate) async fn transport(self: &Arc<Self>) -> Result<Http2Client, Status> {
        if let Some(current) = &*self.current.load() {
            if !current.client.is_draining() {
                return Ok(current.client.clone());
            }
            self.forget(current.id, "draining");
        }
        self.connect().await
    }

    /// The keepalive time currently in use (after any doubling).
    pub(crate) fn keepalive_time(&self) -> Option<std::time::Duration> {
        match self.keepalive_nanos.load(Ordering::Relaxed) {
            0 => None,
            n => Some(std::time::Duration::from_nanos(n)),
        }
    }

    /// Whether a connection is up.
    pub(crate) fn is_connected(&self) -> bool {
        self.current.load().is_some()
    }

    async fn connect(self: &Arc<Self>) -> Result<Http2Client, Status> {
        let seen = self.attempts.load(Ordering::Acquire);
        let mut last_error = self.connect.lock().await;
        if let Some(current) = &*self.current.load() {
            return Ok(current.client.clone());
        }
        if self.attempts.load(Ordering::Acquire) != seen {
            if let Some(err) = &*last_error {
                // An attempt finished while this call waited: share its result.
                return Err(err.clone());
            }
        }
        let id = self.attempts.load(Ordering::Relaxed) + 1;
        let weak: Weak<Subchannel> = Arc::downgrade(self);
        let mut config = self.config.clone();
        config.keepalive.time = self.keepalive_time();
        let result = Http2Client::connect(&self.endpoint, &config, move |event| {
            if let Some(sub) = weak.upgrade() {
                sub.on_event(id, event);
            }
        })
        .await;
        let result = match result {
            Ok(client) => {
                self.current.store(Some(Arc::new(Current {
                    id,
                    client: client.clone(),
                })));
                *last_error = None;
                Ok(client)
            }
            Err(err) => {
                *last_error = Some(err.clone());
                Err(err)
            }
        };
        self.attempts.store(id, Ordering::Release);
        result
    }

    fn on_event(&self, id: u64, event: ConnEvent) {
        match event {
            ConnEvent::GoAway(goaway) => {
                if goaway.too_many_pings() {
                    // gRFC A8: the server thinks we ping too often.
                    let now = self.keepalive_nanos.load(Ordering::Relaxed);
                    let doubled = now.saturating_mul(2).min(i64::MAX as u64);
                    if now != 0 {
                        self.keepalive_nanos.store(doubled, Ordering::Relaxed);
                        tracing::warn!(
                            endpoint = ?self.endpoint,
                            "server sent GOAWAY too_many_pings; keepalive time doubled to {:?}",
                            std::time::Duration::from_nanos(doubled)
                        );
                    }
                }
                // Calls under way finish on the old connection; new calls
                // go to a new one.
                self.forget(id, &goaway.describe());
            }
            ConnEvent::Closed(reason) => self.forget(id, &reason),
        }
    }

    /// Forgets connection `id`, so the next call makes a new one.
    fn forget(&self, id: u64, reason: &str) {
        let current = self.current.load();
        if current.as_ref().is_some_and(|c| c.id == id) {
            tracing::debug!(endpoint = ?self.endpoint, %reason, "transport no longer used");
            self.current
                .compare_and_swap(&*current, None::<Arc<Current>>);
        }
    }
}
