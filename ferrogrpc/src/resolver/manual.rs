//! A resolver whose addresses the application pushes itself (gRPC-Go's
//! `resolver/manual`): for tests, and for programs that learn their
//! backends from somewhere a resolver cannot reach by itself.
//!
//! ```no_run
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use ferrogrpc::client::Channel;
//! use ferrogrpc::resolver::{manual::ManualResolver, State};
//!
//! let backends = ManualResolver::new("backends");
//! backends.update_state(State::new(["127.0.0.1:50051".parse::<std::net::SocketAddr>()?]));
//! let channel = Channel::builder("backends:///greeter")
//!     .resolver(backends.clone())
//!     .build()?;
//! // Later: move the channel to other servers without dropping a call.
//! backends.update_state(State::new(["127.0.0.1:50052".parse::<std::net::SocketAddr>()?]));
//! # Ok(()) }
//! ```

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

use super::{BuildOptions, Builder, Controller, Resolver, State, Target};

/// A resolver [`Builder`] driven by the application. Clones share the same
/// state: build the channel with one clone, push updates through another.
///
/// The latest state (or error) pushed is what every channel built with it
/// sees, at once if it is resolving, or when it next leaves IDLE.
#[derive(Clone, Debug)]
pub struct ManualResolver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    scheme: String,
    latest: Mutex<Latest>,
    resolve_now: AtomicU64,
}

#[derive(Debug, Default)]
struct Latest {
    report: Option<Result<State, String>>,
    /// The controllers of the resolvers built and not yet closed.
    controllers: Vec<Controller>,
}

impl ManualResolver {
    /// A manual resolver for targets of `scheme` (`scheme:///anything`).
    pub fn new(scheme: impl Into<String>) -> ManualResolver {
        ManualResolver {
            inner: Arc::new(Inner {
                scheme: scheme.into().to_ascii_lowercase(),
                latest: Mutex::new(Latest::default()),
                resolve_now: AtomicU64::new(0),
            }),
        }
    }

    /// Pushes a new state to every channel using this resolver, and keeps it
    /// for channels that start resolving later.
    pub fn update_state(&self, state: State) {
        self.report(Ok(state));
    }

    /// Pushes a resolution error (calls that find no address fail with
    /// `UNAVAILABLE` and this message), and keeps it for later channels.
    pub fn report_error(&self, message: impl Into<String>) {
        self.report(Err(message.into()));
    }

    /// How many times channels asked to resolve again
    /// ([`Resolver::resolve_now`]).
    pub fn resolve_now_count(&self) -> u64 {
        self.inner.resolve_now.load(Ordering::Relaxed)
    }

    fn report(&self, report: Result<State, String>) {
        let mut latest = self.inner.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.controllers.retain(|c| !c.is_closed());
        for controller in &latest.controllers {
            send(controller, &report);
        }
        latest.report = Some(report);
    }
}

fn send(controller: &Controller, report: &Result<State, String>) {
    match report {
        Ok(state) => controller.update_state(state.clone()),
        Err(message) => controller.report_error(message.clone()),
    }
}

struct Running {
    inner: Arc<Inner>,
}

impl Resolver for Running {
    fn resolve_now(&mut self) {
        self.inner.resolve_now.fetch_add(1, Ordering::Relaxed);
    }
}

impl Builder for ManualResolver {
    fn scheme(&self) -> &str {
        &self.inner.scheme
    }

    fn build(
        &self,
        _target: &Target,
        controller: Controller,
        _options: BuildOptions,
    ) -> Result<Box<dyn Resolver>, String> {
        let mut latest = self.inner.latest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(report) = &latest.report {
            send(&controller, report);
        }
        latest.controllers.retain(|c| !c.is_closed());
        latest.controllers.push(controller);
        Ok(Box::new(Running {
            inner: Arc::clone(&self.inner),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::{
        target,
        testing::{recorder, Report},
        Address,
    };

    #[test]
    fn pushes_latest_state_to_new_and_running_resolvers() {
        let manual = ManualResolver::new("Test");
        assert_eq!(manual.scheme(), "test");
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        manual.update_state(State::new([addr]));
        let target = target::parse("test:///x", |s| s == "test").unwrap();
        let (controller, mut rx) = recorder();
        let mut resolver = manual
            .build(&target, controller, BuildOptions::default())
            .unwrap();
        match rx.try_recv().unwrap() {
            Report::Update(state) => assert_eq!(state.addresses, vec![Address::Tcp(addr)]),
            other => panic!("{other:?}"),
        }
        manual.report_error("gone");
        match rx.try_recv().unwrap() {
            Report::Error(message) => assert_eq!(message, "gone"),
            other => panic!("{other:?}"),
        }
        resolver.resolve_now();
        assert_eq!(manual.resolve_now_count(), 1);
        drop(rx);
        // A closed controller is forgotten on the next push.
        manual.update_state(State::default());
        assert!(manual.inner.latest.lock().unwrap().controllers.is_empty());
    }
}
