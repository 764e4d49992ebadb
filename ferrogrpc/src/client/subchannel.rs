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
    transport::client::{ClientConfig, Endpoint, Http2Client},
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
}

impl Subchannel {
    pub(crate) fn new(endpoint: Endpoint, config: ClientConfig) -> Arc<Subchannel> {
        Arc::new(Subchannel {
            endpoint,
            config,
            current: ArcSwapOption::empty(),
            attempts: AtomicU64::new(0),
            connect: tokio::sync::Mutex::new(None),
        })
    }

    /// The connected transport, connecting first if there is none.
    pub(crate) async fn transport(self: &Arc<Self>) -> Result<Http2Client, Status> {
        if let Some(current) = &*self.current.load() {
            return Ok(current.client.clone());
        }
        self.connect().await
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
        let result = Http2Client::connect(&self.endpoint, &self.config, move |reason| {
            if let Some(sub) = weak.upgrade() {
                sub.closed(id, &reason);
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

    /// The connection `id` ended: forget it, so the next call reconnects.
    fn closed(&self, id: u64, reason: &str) {
        let current = self.current.load();
        if current.as_ref().is_some_and(|c| c.id == id) {
            tracing::debug!(endpoint = ?self.endpoint, %reason, "transport closed");
            self.current
                .compare_and_swap(&*current, None::<Arc<Current>>);
        }
    }
}
