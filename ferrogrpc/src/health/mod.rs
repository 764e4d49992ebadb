//! Health checking, as gRPC-Go's `health` package: the
//! `grpc.health.v1.Health` service (`Check`, `Watch`, and `List` from gRFC
//! A90) for Kubernetes probes, load balancers and gRPC clients, and the
//! client side of it (gRFC A17): a channel whose service config has
//! `healthCheckConfig` watches each backend's health, and `round_robin`
//! sends calls only to those SERVING (see
//! [`SubConn::enable_health_check`](crate::balancer::SubConn::enable_health_check)).
//!
//! ```no_run
//! use ferrogrpc::{health, server::Server};
//!
//! # async fn run() -> std::io::Result<()> {
//! let health = health::Server::new();
//! let server = Server::builder().add_health(&health).build();
//! // Later, as the application's state changes:
//! health.set_serving_status("my.package.MyService", health::ServingStatus::NotServing);
//! # server.serve("127.0.0.1:50051").await }
//! ```
//!
//! The server as a whole (`""`) starts SERVING; other services are unknown
//! until their status is set. [`Server::shutdown`] turns every service
//! NOT_SERVING and ignores updates until [`Server::resume`], for a graceful
//! stop: add it with
//! [`ServerBuilder::add_health`](crate::server::ServerBuilder::add_health)
//! and the server's graceful stop calls it first.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::watch;

use crate::{server::ResponseSink, Request, Response, Status};

/// The code generated from `grpc/health/v1/health.proto`: the messages, the
/// service trait and its server, and a client.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!("../generated/grpc.health.v1.rs");
}

pub use pb::health_check_response::ServingStatus;

/// The most services [`List`](pb::health_server::Health::list) answers
/// about; with more it fails with RESOURCE_EXHAUSTED (as gRPC-Go).
pub const MAX_LISTED_SERVICES: usize = 100;

/// The health of a server's services, and the `grpc.health.v1.Health`
/// service that reports it (gRPC-Go's `health.Server`). Cheap to clone;
/// clones share the statuses.
#[derive(Clone, Debug, Default)]
pub struct Server {
    inner: Arc<Mutex<Statuses>>,
    /// Set when the server the service runs in stops gracefully: watches
    /// end (after their last status), so they do not hold the stop up.
    ending: Arc<watch::Sender<bool>>,
}

#[derive(Debug, Default)]
struct Statuses {
    /// Each known service's status, with the channel that tells watchers.
    services: BTreeMap<String, watch::Sender<ServingStatus>>,
    /// Shut down: every service NOT_SERVING, updates ignored.
    shut_down: bool,
}

impl Statuses {
    /// The watch of `service`, made (as SERVICE_UNKNOWN) if it is new.
    fn watch(&mut self, service: &str) -> watch::Receiver<ServingStatus> {
        self.services
            .entry(service.to_string())
            .or_insert_with(|| watch::Sender::new(ServingStatus::ServiceUnknown))
            .subscribe()
    }

    /// Drops an unknown service nobody watches any more, so that watches of
    /// made-up names do not pile up.
    fn forget_if_unwatched(&mut self, service: &str) {
        let unused = self.services.get(service).is_some_and(|s| {
            s.receiver_count() == 0 && *s.borrow() == ServingStatus::ServiceUnknown
        });
        if unused {
            self.services.remove(service);
        }
    }

    fn set(&mut self, service: &str, status: ServingStatus) {
        match self.services.get(service) {
            Some(sender) => {
                sender.send_if_modified(|current| {
                    let changed = *current != status;
                    *current = status;
                    changed
                });
            }
            None => {
                self.services
                    .insert(service.to_string(), watch::Sender::new(status));
            }
        }
    }
}

impl Server {
    /// A health server where the server as a whole (`""`) is SERVING.
    pub fn new() -> Server {
        let server = Server::default();
        server.set_serving_status("", ServingStatus::Serving);
        server
    }

    fn lock(&self) -> MutexGuard<'_, Statuses> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the status of `service` (`""` for the server as a whole) and
    /// tells its watchers. Ignored after [`shutdown`](Self::shutdown) until
    /// [`resume`](Self::resume). SERVICE_UNKNOWN is only for answers: setting
    /// it is ignored (with a warning); use
    /// [`clear_serving_status`](Self::clear_serving_status).
    pub fn set_serving_status(&self, service: &str, status: ServingStatus) {
        if status == ServingStatus::ServiceUnknown {
            tracing::warn!(
                service,
                "health: SERVICE_UNKNOWN is not a status to set; ignored"
            );
            return;
        }
        let mut statuses = self.lock();
        if statuses.shut_down {
            tracing::info!(service, ?status, "health: shut down; status update ignored");
            return;
        }
        statuses.set(service, status);
    }

    /// Forgets `service`: `Check` answers NOT_FOUND and watchers see
    /// SERVICE_UNKNOWN.
    pub fn clear_serving_status(&self, service: &str) {
        let mut statuses = self.lock();
        if let Some(sender) = statuses.services.get(service) {
            sender.send_replace(ServingStatus::ServiceUnknown);
            statuses.forget_if_unwatched(service);
        }
    }

    /// The status of `service`, if it is known.
    pub fn serving_status(&self, service: &str) -> Option<ServingStatus> {
        let statuses = self.lock();
        statuses
            .services
            .get(service)
            .map(|s| *s.borrow())
            .filter(|s| *s != ServingStatus::ServiceUnknown)
    }

    /// Sets every known service NOT_SERVING and ignores later updates until
    /// [`resume`](Self::resume) (gRPC-Go's `Shutdown`): load balancers and
    /// health-checking clients move away before the server stops.
    pub fn shutdown(&self) {
        let mut statuses = self.lock();
        statuses.shut_down = true;
        let names: Vec<String> = statuses.services.keys().cloned().collect();
        for name in names {
            if statuses.services[&name]
                .borrow()
                .eq(&ServingStatus::ServiceUnknown)
            {
                continue;
            }
            statuses.set(&name, ServingStatus::NotServing);
        }
    }

    /// Sets every known service SERVING and accepts updates again
    /// (gRPC-Go's `Resume`).
    pub fn resume(&self) {
        let mut statuses = self.lock();
        statuses.shut_down = false;
        let names: Vec<String> = statuses.services.keys().cloned().collect();
        for name in names {
            if statuses.services[&name]
                .borrow()
                .eq(&ServingStatus::ServiceUnknown)
            {
                continue;
            }
            statuses.set(&name, ServingStatus::Serving);
        }
    }

    /// Shuts down and ends the watches under way, for a server's graceful
    /// stop (which waits for every call, a watch included).
    pub(crate) fn end_watches(&self) {
        self.shutdown();
        self.ending.send_replace(true);
    }

    /// The `grpc.health.v1.Health` service reporting these statuses, to add
    /// to a server with `ServerBuilder::add_service`.
    pub fn service(&self) -> pb::health_server::HealthServer<Server> {
        pb::health_server::HealthServer::new(self.clone())
    }
}

fn response(status: ServingStatus) -> pb::HealthCheckResponse {
    pb::HealthCheckResponse {
        status: status as i32,
    }
}

impl pb::health_server::Health for Server {
    async fn check(
        &self,
        request: Request<pb::HealthCheckRequest>,
    ) -> Result<Response<pb::HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        match self.serving_status(service) {
            Some(status) => Ok(Response::new(response(status))),
            None => Err(Status::not_found(format!("unknown service {service:?}"))),
        }
    }

    async fn list(
        &self,
        _request: Request<pb::HealthListRequest>,
    ) -> Result<Response<pb::HealthListResponse>, Status> {
        let statuses = self.lock();
        let known = statuses
            .services
            .iter()
            .map(|(name, s)| (name, *s.borrow()))
            .filter(|(_, s)| *s != ServingStatus::ServiceUnknown);
        let mut listed = std::collections::HashMap::new();
        for (name, status) in known {
            if listed.len() == MAX_LISTED_SERVICES {
                return Err(Status::resource_exhausted(format!(
                    "more than {MAX_LISTED_SERVICES} services to list"
                )));
            }
            listed.insert(name.clone(), response(status));
        }
        Ok(Response::new(pb::HealthListResponse { statuses: listed }))
    }

    async fn watch(
        &self,
        request: Request<pb::HealthCheckRequest>,
        mut responses: ResponseSink<pb::HealthCheckResponse>,
    ) -> Result<(), Status> {
        let service = request.into_inner().service;
        let mut watching = Watching {
            receiver: Some(self.lock().watch(&service)),
            service,
            server: self,
        };
        let watch = watching.receiver.as_mut().expect("set above");
        let mut ending = self.ending.subscribe();
        loop {
            let status = *watch.borrow_and_update();
            responses.send(response(status)).await?;
            if *ending.borrow_and_update() {
                return Ok(());
            }
            // An unknown service keeps its channel while it is watched, so a
            // status set later reaches this watcher.
            tokio::select! {
                changed = watch.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                _ = ending.changed() => {}
            }
        }
    }
}

/// A watch under way; when it ends (or the client cancels it), an unknown
/// service nobody else watches is forgotten.
struct Watching<'a> {
    receiver: Option<watch::Receiver<ServingStatus>>,
    service: String,
    server: &'a Server,
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        drop(self.receiver.take());
        self.server.lock().forget_if_unwatched(&self.service);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{client::Channel, server};

    /// Watches of made-up names, on a real server, leave nothing behind.
    #[tokio::test]
    async fn watches_of_made_up_names_are_forgotten_when_they_end() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let health = Server::new();
        let srv = server::Server::builder().add_health(&health).build();
        tokio::spawn(async move { srv.serve_listener(listener).await });
        let client =
            pb::health_client::HealthClient::new(Channel::from_target(&addr.to_string()).unwrap());
        for i in 0..50 {
            let request = Request::new(pb::HealthCheckRequest {
                service: format!("nope{i}"),
            });
            let mut watch = client.watch(request).await.unwrap().into_inner();
            let first = watch.message().await.unwrap().unwrap();
            assert_eq!(first.status(), ServingStatus::ServiceUnknown);
        }
        // Dropping a watch cancels it; its handler then forgets the name.
        let mut left = usize::MAX;
        for _ in 0..200 {
            left = health.lock().services.len();
            if left == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(left, 1, "only \"\" is left");
    }
}
