//! The resolver and balancer API a new policy builds on, over real loopback
//! servers: attributes from a resolver reaching a balancer, endpoints with
//! several addresses (gRFC A61), pickers that read the call's metadata,
//! done callbacks, and a parent policy holding child policies.
//!
//! Custom policies are registered process-wide, so each test registers its
//! own name.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use ferrogrpc::{
    attributes::Attributes,
    balancer::{self, Balancer, ClientConnState, Helper, SubConn, SubConnState},
    client::Channel,
    codec::BytesCodec,
    resolver::{manual::ManualResolver, Endpoint, State as Resolved},
    server::{self, BoxFuture, Server, ServerCall, Service},
    Request, Response, Status,
};
use http::uri::PathAndQuery;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// The service and its servers.

/// `Who` answers with the server's id.
#[derive(Clone)]
struct IdService {
    id: Arc<str>,
}

impl Service for IdService {
    fn name(&self) -> &'static str {
        "test.Ids"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        let id = Bytes::from(self.id.to_string());
        match method {
            "Who" => Box::pin(server::unary(
                call,
                BytesCodec,
                move |_req: Request<Bytes>| async move { Ok(Response::new(id)) },
            )),
            _ => Box::pin(call.unimplemented()),
        }
    }
}

/// A server on a fresh loopback port; stopped when dropped.
struct Backend {
    addr: SocketAddr,
    server: Server,
}

impl Backend {
    async fn start(id: &str) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::builder()
            .add_service(IdService { id: id.into() })
            .build();
        let s = server.clone();
        tokio::spawn(async move { s.serve_listener(listener).await });
        Backend { addr, server }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.server.stop();
    }
}

/// A loopback address where nothing listens.
fn closed_port() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

fn who_path() -> PathAndQuery {
    PathAndQuery::from_static("/test.Ids/Who")
}

async fn who(ch: &Channel, request: Request<Bytes>) -> Result<String, Status> {
    let call = ch.unary(who_path(), request.with_timeout(CALL_TIMEOUT), BytesCodec);
    let resp: Response<Bytes> = call.await?;
    Ok(String::from_utf8(resp.into_inner().to_vec()).unwrap())
}

fn channel_with(resolver: &ManualResolver, policy: &str) -> Channel {
    let config = format!(r#"{{"loadBalancingConfig": [{{"{policy}": {{}}}}]}}"#);
    Channel::builder(format!("{}:///backends", resolver_scheme(resolver)))
        .resolver(resolver.clone())
        .default_service_config(&config)
        .build()
        .unwrap()
}

fn resolver_scheme(resolver: &ManualResolver) -> String {
    use ferrogrpc::resolver::Builder as _;
    resolver.scheme().to_string()
}

// ---------------------------------------------------------------------------
// Attributes.

#[derive(Debug, PartialEq)]
struct Weight(u32);

#[derive(Debug, PartialEq)]
struct Region(&'static str);

/// The endpoints' attributes and the state's, per update.
type Seen = Arc<Mutex<Vec<(Vec<Attributes>, Attributes)>>>;

/// pick_first that records the endpoint and state attributes it is given.
struct AttrRecorder {
    seen: Seen,
}

impl balancer::Builder for AttrRecorder {
    fn name(&self) -> &str {
        "test_attr_recorder"
    }

    fn build(&self, helper: Helper) -> Box<dyn Balancer> {
        Box::new(Recording {
            seen: Arc::clone(&self.seen),
            inner: balancer::get("pick_first").unwrap().build(helper),
        })
    }
}

struct Recording {
    seen: Seen,
    inner: Box<dyn Balancer>,
}

impl Balancer for Recording {
    fn update_client_conn_state(&mut self, state: ClientConnState) -> Result<(), String> {
        let endpoints = state.resolver_state.endpoints.iter();
        let attrs = endpoints.map(|e| e.attributes.clone()).collect();
        let whole = state.resolver_state.attributes.clone();
        self.seen.lock().unwrap().push((attrs, whole));
        self.inner.update_client_conn_state(state)
    }
    fn resolver_error(&mut self, error: Status) {
        self.inner.resolver_error(error)
    }
    fn subchannel_state(&mut self, subconn: &SubConn, state: SubConnState) {
        self.inner.subchannel_state(subconn, state)
    }
    fn exit_idle(&mut self) {
        self.inner.exit_idle()
    }
}

#[tokio::test]
async fn attributes_reach_the_balancer_and_changes_show() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    balancer::register(AttrRecorder {
        seen: Arc::clone(&seen),
    });
    let backend = Backend::start("a").await;
    let resolver = ManualResolver::new("attrs");
    let first = Attributes::new().with_value(Weight(3));
    let region = Attributes::new().with_value(Region("eu"));
    resolver.update_state(
        Resolved::from_endpoints([Endpoint::new([backend.addr]).with_attributes(first.clone())])
            .with_attributes(region.clone()),
    );
    let channel = channel_with(&resolver, "test_attr_recorder");
    assert_eq!(
        who(&channel, Request::new(Bytes::new())).await.unwrap(),
        "a"
    );

    let second = first.with_value(Weight(7));
    resolver.update_state(
        Resolved::from_endpoints([Endpoint::new([backend.addr]).with_attributes(second.clone())])
            .with_attributes(region.clone()),
    );
    tokio::time::timeout(CALL_TIMEOUT, async {
        while seen.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the second state reached the balancer");
    let seen = seen.lock().unwrap();
    let (endpoints, whole) = &seen[0];
    assert_eq!(endpoints, &vec![first.clone()]);
    assert_eq!(endpoints[0].value::<Weight>(), Some(&Weight(3)));
    assert_eq!(whole.value::<Region>(), Some(&Region("eu")));
    let (endpoints, _) = &seen[1];
    assert_eq!(endpoints[0].value::<Weight>(), Some(&Weight(7)));
    assert_ne!(
        seen[0].0, seen[1].0,
        "a balancer can tell the attributes changed"
    );
}

#[tokio::test]
async fn addresses_alone_become_one_endpoint_each() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    struct Endpoints(Arc<Mutex<Vec<(usize, usize)>>>);
    impl balancer::Builder for Endpoints {
        fn name(&self) -> &str {
            "test_endpoint_counter"
        }
        fn build(&self, helper: Helper) -> Box<dyn Balancer> {
            struct B(Arc<Mutex<Vec<(usize, usize)>>>, Box<dyn Balancer>);
            impl Balancer for B {
                fn update_client_conn_state(&mut self, s: ClientConnState) -> Result<(), String> {
                    let rs = &s.resolver_state;
                    self.0
                        .lock()
                        .unwrap()
                        .push((rs.addresses.len(), rs.endpoints.len()));
                    self.1.update_client_conn_state(s)
                }
                fn resolver_error(&mut self, e: Status) {
                    self.1.resolver_error(e)
                }
                fn subchannel_state(&mut self, sc: &SubConn, s: SubConnState) {
                    self.1.subchannel_state(sc, s)
                }
                fn exit_idle(&mut self) {
                    self.1.exit_idle()
                }
            }
            Box::new(B(
                Arc::clone(&self.0),
                balancer::get("pick_first").unwrap().build(helper),
            ))
        }
    }
    balancer::register(Endpoints(Arc::clone(&seen)));
    let backend = Backend::start("a").await;
    let resolver = ManualResolver::new("flat");
    resolver.update_state(Resolved::new([backend.addr, closed_port()]));
    let channel = channel_with(&resolver, "test_endpoint_counter");
    assert_eq!(
        who(&channel, Request::new(Bytes::new())).await.unwrap(),
        "a"
    );
    resolver.update_state(Resolved::from_endpoints([Endpoint::new([
        closed_port(),
        backend.addr,
    ])]));
    tokio::time::timeout(CALL_TIMEOUT, async {
        while seen.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![(2, 2), (2, 1)]);
}
