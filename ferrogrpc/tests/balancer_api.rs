//! The resolver and balancer API a new policy builds on, over real loopback
//! servers: attributes from a resolver reaching a balancer, endpoints with
//! several addresses (gRFC A61), pickers that read the call's metadata,
//! done callbacks, and a parent policy holding child policies.
//!
//! Custom policies are registered process-wide, so each test registers its
//! own name.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use ferrogrpc::{
    attributes::Attributes,
    balancer::{
        self,
        child::{ChildGroup, ChildState},
        Balancer, ClientConnState, DoneInfo, Helper, Pick, PickInfo, PickResult, Picker, SubConn,
        SubConnState,
    },
    client::Channel,
    codec::BytesCodec,
    connectivity::State as Conn,
    metadata::MetadataMap,
    resolver::{manual::ManualResolver, Endpoint, State as Resolved},
    server::{self, BoxFuture, Server, ServerCall, Service},
    Code, Request, Response, Status,
};
use http::uri::PathAndQuery;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// The service and its servers.

/// `Who` answers with the server's id; `Fail` fails with trailers; `Slow`
/// answers after 30 s; `Flaky` fails twice with UNAVAILABLE, then answers;
/// `SlowFirst` answers its first call after 30 s, later ones at once;
/// `Two` answers with two messages (too many for a unary call).
#[derive(Clone)]
struct IdService {
    id: Arc<str>,
    flaky: Arc<AtomicUsize>,
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
            "Fail" => Box::pin(server::unary(
                call,
                BytesCodec,
                |_req: Request<Bytes>| async move {
                    let mut trailers = MetadataMap::new();
                    trailers.insert("x-load", "42").unwrap();
                    Err::<Response<Bytes>, _>(
                        Status::resource_exhausted("full").with_metadata(trailers),
                    )
                },
            )),
            "Slow" => Box::pin(server::unary(
                call,
                BytesCodec,
                |_req: Request<Bytes>| async move {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(Response::new(Bytes::new()))
                },
            )),
            "SlowFirst" => {
                let calls = Arc::clone(&self.flaky);
                Box::pin(server::unary(
                    call,
                    BytesCodec,
                    move |_req: Request<Bytes>| async move {
                        if calls.fetch_add(1, Ordering::Relaxed) == 0 {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                        }
                        Ok(Response::new(Bytes::new()))
                    },
                ))
            }
            "Trickle" => Box::pin(server::server_streaming(
                call,
                BytesCodec,
                |_req: Request<Bytes>, mut sink: server::ResponseSink<Bytes>| async move {
                    sink.send(Bytes::from_static(b"1")).await?;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(())
                },
            )),
            "Two" => Box::pin(server::server_streaming(
                call,
                BytesCodec,
                |_req: Request<Bytes>, mut sink: server::ResponseSink<Bytes>| async move {
                    sink.send(Bytes::from_static(b"1")).await?;
                    sink.send(Bytes::from_static(b"2")).await?;
                    Ok(())
                },
            )),
            "Flaky" => {
                let failures = Arc::clone(&self.flaky);
                Box::pin(server::unary(
                    call,
                    BytesCodec,
                    move |_req: Request<Bytes>| async move {
                        if failures.fetch_add(1, Ordering::Relaxed) < 2 {
                            return Err(Status::unavailable("not yet"));
                        }
                        let mut response = Response::new(Bytes::new());
                        response.trailers_mut().insert("x-load", "7").unwrap();
                        Ok(response)
                    },
                ))
            }
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
            .add_service(IdService {
                id: id.into(),
                flaky: Arc::new(AtomicUsize::new(0)),
            })
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

async fn who(ch: &Channel, request: Request<Bytes>) -> Result<String, Status> {
    call(ch, "Who", request.with_timeout(CALL_TIMEOUT)).await
}

/// Calls `/test.Ids/<method>`; the answer is the server's id for `Who`.
async fn call(ch: &Channel, method: &str, request: Request<Bytes>) -> Result<String, Status> {
    let path = PathAndQuery::try_from(format!("/test.Ids/{method}")).unwrap();
    let resp: Response<Bytes> = ch.unary(path, request, BytesCodec).await?;
    Ok(String::from_utf8(resp.into_inner().to_vec()).unwrap())
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let wait = async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(CALL_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
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

/// Marks the address calls should go to; set by `TaggingResolver`.
#[derive(Debug, PartialEq)]
struct Preferred;

/// A resolver of its own (not the manual one): one endpoint with two
/// addresses, the second marked `Preferred` by a per-address attribute.
struct TaggingResolver {
    addresses: [SocketAddr; 2],
}

impl ferrogrpc::resolver::Builder for TaggingResolver {
    fn scheme(&self) -> &str {
        "test-address-attributes"
    }

    fn build(
        &self,
        _target: &ferrogrpc::resolver::Target,
        controller: ferrogrpc::resolver::Controller,
        _options: ferrogrpc::resolver::BuildOptions,
    ) -> Result<Box<dyn ferrogrpc::resolver::Resolver>, String> {
        struct Done;
        impl ferrogrpc::resolver::Resolver for Done {}
        let [plain, preferred] = self.addresses;
        let tag = Attributes::new().with_value(Preferred);
        let endpoint = Endpoint::new([plain]).with_address_attributes(preferred, tag);
        controller.update_state(Resolved::from_endpoints([endpoint]));
        Ok(Box::new(Done))
    }
}

/// What `PreferTagged` saw: per address in the state, whether its
/// attributes said `Preferred`, and the same per subchannel.
#[derive(Default)]
struct TagLog {
    in_state: Vec<(SocketAddr, bool)>,
    on_subconns: Vec<(SocketAddr, bool)>,
}

fn socket(address: &ferrogrpc::resolver::Address) -> SocketAddr {
    match address {
        ferrogrpc::resolver::Address::Tcp(addr) => *addr,
        other => panic!("not TCP: {other}"),
    }
}

/// Connects a subchannel per address and sends calls only to READY ones
/// whose address attributes say `Preferred`.
struct PreferTagged(Arc<Mutex<TagLog>>);

impl balancer::Builder for PreferTagged {
    fn name(&self) -> &str {
        "test_prefer_tagged"
    }
    fn build(&self, helper: Helper) -> Box<dyn Balancer> {
        Box::new(PreferTaggedBalancer {
            helper,
            log: Arc::clone(&self.0),
            ready: Vec::new(),
            started: false,
        })
    }
}

struct PreferTaggedBalancer {
    helper: Helper,
    log: Arc<Mutex<TagLog>>,
    ready: Vec<SubConn>,
    started: bool,
}

struct PreferTaggedPicker(Vec<SubConn>);

impl Picker for PreferTaggedPicker {
    fn pick(&self, _info: &PickInfo<'_>) -> PickResult {
        match self
            .0
            .iter()
            .find(|s| s.attributes().value::<Preferred>().is_some())
        {
            Some(subconn) => PickResult::complete(subconn.clone()),
            None => PickResult::Queue,
        }
    }
}

impl Balancer for PreferTaggedBalancer {
    fn update_client_conn_state(&mut self, state: ClientConnState) -> Result<(), String> {
        let mut log = self.log.lock().unwrap();
        for endpoint in &state.resolver_state.endpoints {
            for address in &endpoint.addresses {
                let tagged = endpoint.address_attributes(address).value::<Preferred>();
                log.in_state.push((socket(address), tagged.is_some()));
                if !self.started {
                    let attributes = endpoint.address_attributes(address).clone();
                    let subconn = self
                        .helper
                        .new_subconn_with_attributes(address.clone(), attributes);
                    subconn.connect();
                }
            }
        }
        self.started = true;
        Ok(())
    }
    fn resolver_error(&mut self, _error: Status) {}
    fn subchannel_state(&mut self, subconn: &SubConn, state: SubConnState) {
        if state.state == Conn::Ready && !self.ready.contains(subconn) {
            let tagged = subconn.attributes().value::<Preferred>().is_some();
            let entry = (socket(subconn.address()), tagged);
            self.log.lock().unwrap().on_subconns.push(entry);
            self.ready.push(subconn.clone());
            let picker = PreferTaggedPicker(self.ready.clone());
            self.helper.update_state(Conn::Ready, Arc::new(picker));
        }
    }
    fn exit_idle(&mut self) {}
}

/// Per-address attributes set by a resolver reach a balancer, in the state
/// and on the subchannel made for the address, and steer its picks.
#[tokio::test]
async fn a_balancer_reads_the_attributes_a_resolver_put_on_an_address() {
    let log = Arc::new(Mutex::new(TagLog::default()));
    balancer::register(PreferTagged(Arc::clone(&log)));
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let channel = Channel::builder("test-address-attributes:///backends")
        .resolver(TaggingResolver {
            addresses: [a.addr, b.addr],
        })
        .default_service_config(r#"{"loadBalancingConfig": [{"test_prefer_tagged": {}}]}"#)
        .build()
        .unwrap();
    for _ in 0..4 {
        let request = Request::new(Bytes::new()).with_wait_for_ready(true);
        assert_eq!(who(&channel, request).await.unwrap(), "b");
    }
    eventually("both subchannels READY", || {
        log.lock().unwrap().on_subconns.len() == 2
    })
    .await;
    let log = log.lock().unwrap();
    assert_eq!(log.in_state, [(a.addr, false), (b.addr, true)]);
    let mut on_subconns = log.on_subconns.clone();
    on_subconns.sort();
    let mut expected = vec![(a.addr, false), (b.addr, true)];
    expected.sort();
    assert_eq!(on_subconns, expected);
}

// ---------------------------------------------------------------------------
// Pick info and done callbacks.

/// What the `test_observer` picker saw and heard: per pick, the method and
/// the `x-tag` header; per done, the code, the `x-load` trailer and the
/// bytes flags.
#[derive(Default)]
struct Log {
    picks: Vec<(String, Option<String>)>,
    dones: Vec<(String, Code, Option<String>, bool, bool)>,
}

type SharedLog = Arc<Mutex<Log>>;

/// One subchannel per address, all connected; the picker uses the first
/// READY one, records what each call tells it and attaches a done
/// callback that records the outcome.
struct Observing {
    name: &'static str,
    log: SharedLog,
}

impl balancer::Builder for Observing {
    fn name(&self) -> &str {
        self.name
    }
    fn build(&self, helper: Helper) -> Box<dyn Balancer> {
        Box::new(ObservingBalancer {
            helper,
            log: Arc::clone(&self.log),
            subconns: Vec::new(),
        })
    }
}

struct ObservingBalancer {
    helper: Helper,
    log: SharedLog,
    subconns: Vec<SubConn>,
}

struct ObservingPicker {
    subconn: SubConn,
    log: SharedLog,
}

impl Picker for ObservingPicker {
    fn pick(&self, info: &PickInfo<'_>) -> PickResult {
        let tag = info.metadata.get("x-tag").map(str::to_string);
        let method = info.method.to_string();
        self.log.lock().unwrap().picks.push((method.clone(), tag));
        let log = Arc::clone(&self.log);
        let pick = Pick::new(self.subconn.clone()).with_done(move |done: &DoneInfo<'_>| {
            let load = done.trailers.get("x-load").map(str::to_string);
            let entry = (
                method,
                done.code(),
                load,
                done.bytes_sent,
                done.bytes_received,
            );
            log.lock().unwrap().dones.push(entry);
        });
        PickResult::Complete(pick)
    }
}

impl Balancer for ObservingBalancer {
    fn update_client_conn_state(&mut self, state: ClientConnState) -> Result<(), String> {
        if self.subconns.is_empty() {
            for address in state.resolver_state.addresses {
                let subconn = self.helper.new_subconn(address);
                subconn.connect();
                self.subconns.push(subconn);
            }
        }
        Ok(())
    }
    fn resolver_error(&mut self, _error: Status) {}
    fn subchannel_state(&mut self, subconn: &SubConn, state: SubConnState) {
        if state.state == Conn::Ready {
            let picker = ObservingPicker {
                subconn: subconn.clone(),
                log: Arc::clone(&self.log),
            };
            self.helper.update_state(Conn::Ready, Arc::new(picker));
        }
    }
    fn exit_idle(&mut self) {}
}

async fn observed_channel(name: &'static str, extra_config: &str) -> (Channel, SharedLog, Backend) {
    let backend = Backend::start("a").await;
    let (channel, log) = observed_channel_to(name, extra_config, backend.addr);
    (channel, log, backend)
}

/// A channel to `addr` under the `Observing` policy registered as `name`.
fn observed_channel_to(
    name: &'static str,
    extra_config: &str,
    addr: SocketAddr,
) -> (Channel, SharedLog) {
    let log = SharedLog::default();
    balancer::register(Observing {
        name,
        log: Arc::clone(&log),
    });
    let resolver = ManualResolver::new(name.replace('_', "-"));
    resolver.update_state(Resolved::new([addr]));
    let config = format!(r#"{{"loadBalancingConfig": [{{"{name}": {{}}}}]{extra_config}}}"#);
    let channel = Channel::builder(format!("{}:///backends", resolver_scheme(&resolver)))
        .resolver(resolver)
        .default_service_config(&config)
        .build()
        .unwrap();
    (channel, log)
}

#[tokio::test]
async fn a_picker_reads_the_calls_metadata() {
    let (channel, log, _backend) = observed_channel("test_metadata_reader", "").await;
    let mut request = Request::new(Bytes::new());
    request.metadata_mut().insert("x-tag", "blue").unwrap();
    assert_eq!(who(&channel, request).await.unwrap(), "a");
    who(&channel, Request::new(Bytes::new())).await.unwrap();
    let log = log.lock().unwrap();
    assert_eq!(
        log.picks,
        vec![
            ("/test.Ids/Who".to_string(), Some("blue".to_string())),
            ("/test.Ids/Who".to_string(), None),
        ]
    );
}

#[tokio::test]
async fn done_callbacks_hear_each_outcome_once() {
    let (channel, log, _backend) = observed_channel("test_done", "").await;
    let dones = || log.lock().unwrap().dones.len();

    // OK, with the trailers (none here).
    who(&channel, Request::new(Bytes::new())).await.unwrap();
    eventually("the OK done", || dones() == 1).await;

    // A failed status with trailers.
    let err = call(
        &channel,
        "Fail",
        Request::new(Bytes::new()).with_timeout(CALL_TIMEOUT),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    eventually("the failed done", || dones() == 2).await;

    // Cancelled: the caller drops the call.
    let slow = call(&channel, "Slow", Request::new(Bytes::new()));
    assert!(tokio::time::timeout(Duration::from_millis(200), slow)
        .await
        .is_err());
    eventually("the cancelled done", || dones() == 3).await;

    // The call's deadline passes.
    let slow = Request::new(Bytes::new()).with_timeout(Duration::from_millis(200));
    let err = call(&channel, "Slow", slow).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    eventually("the deadline done", || dones() == 4).await;

    // A failure found by the client: two answers to a unary call.
    let err = call(
        &channel,
        "Two",
        Request::new(Bytes::new()).with_timeout(CALL_TIMEOUT),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    eventually("the local failure's done", || dones() == 5).await;

    // Dropped after the server's headers and a message came back: cancelled,
    // with bytes received.
    let mut stream = channel
        .server_streaming(
            PathAndQuery::from_static("/test.Ids/Trickle"),
            Request::new(Bytes::new()).with_timeout(CALL_TIMEOUT),
            BytesCodec,
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap(), "1");
    drop(stream);
    eventually("the dropped stream's done", || dones() == 6).await;

    // Nothing more comes later.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = log.lock().unwrap();
    let expect = |m: &str, code, load: Option<&str>, received| {
        (
            format!("/test.Ids/{m}"),
            code,
            load.map(str::to_string),
            true,
            received,
        )
    };
    assert_eq!(
        log.dones,
        vec![
            expect("Who", Code::Ok, None, true),
            expect("Fail", Code::ResourceExhausted, Some("42"), true),
            expect("Slow", Code::Cancelled, None, false),
            expect("Slow", Code::DeadlineExceeded, None, false),
            expect("Two", Code::Internal, None, true),
            expect("Trickle", Code::Cancelled, None, true),
        ]
    );
    assert_eq!(log.picks.len(), 6, "one pick per call");
}

/// Bytes, except that the message `2` does not decode.
#[derive(Clone, Copy)]
struct NoTwos;

impl ferrogrpc::codec::Codec<Bytes, Bytes> for NoTwos {
    fn encode(&mut self, item: &Bytes, dst: &mut bytes::BytesMut) -> Result<(), Status> {
        dst.extend_from_slice(item);
        Ok(())
    }
    fn decode(&mut self, src: Bytes) -> Result<Bytes, Status> {
        match &src[..] {
            b"2" => Err(Status::internal("2 does not decode")),
            _ => Ok(src),
        }
    }
}

/// A streamed response that does not decode ends the attempt for the
/// balancer with the INTERNAL the caller sees (gRPC-Go's `DoneInfo.Err`),
/// not with the CANCELLED of the stream's drop.
#[tokio::test]
async fn a_streamed_message_that_does_not_decode_reaches_done_as_internal() {
    let (channel, log, _backend) = observed_channel("test_done_stream_decode", "").await;
    let path = PathAndQuery::from_static("/test.Ids/Two");
    let request = Request::new(Bytes::new()).with_timeout(CALL_TIMEOUT);
    let mut stream = channel
        .server_streaming::<Bytes, Bytes, _>(path, request, NoTwos)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().as_deref(), Some(&b"1"[..]));
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    drop(stream);
    eventually("the done", || !log.lock().unwrap().dones.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = log.lock().unwrap();
    let outcomes: Vec<_> = log.dones.iter().map(|d| (d.1, d.4)).collect();
    assert_eq!(outcomes, vec![(Code::Internal, true)]);
}

#[tokio::test]
async fn each_retried_attempt_has_its_own_done() {
    let retry = r#", "methodConfig": [{"name": [{"service": "test.Ids", "method": "Flaky"}],
        "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.05s",
        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]"#;
    let (channel, log, _backend) = observed_channel("test_done_retries", retry).await;
    let request = Request::new(Bytes::new()).with_timeout(CALL_TIMEOUT);
    call(&channel, "Flaky", request).await.unwrap();
    eventually("three dones", || log.lock().unwrap().dones.len() == 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = log.lock().unwrap();
    let codes: Vec<_> = log.dones.iter().map(|d| (d.1, d.2.clone())).collect();
    assert_eq!(
        codes,
        vec![
            (Code::Unavailable, None),
            (Code::Unavailable, None),
            (Code::Ok, Some("7".to_string())),
        ]
    );
    assert_eq!(log.picks.len(), 3);
}

// ---------------------------------------------------------------------------
// Endpoints with several addresses (gRFC A61).

/// Two endpoints, each with a dead address before its live one: both
/// policies reach every endpoint through its live address, and
/// round_robin gives each endpoint one turn.
#[tokio::test]
async fn an_endpoint_is_used_through_its_live_address() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    for policy in ["pick_first", "round_robin"] {
        let resolver = ManualResolver::new(format!("a61-{}", policy.replace('_', "-")));
        resolver.update_state(Resolved::from_endpoints([
            Endpoint::new([closed_port(), a.addr]),
            Endpoint::new([closed_port(), b.addr]),
        ]));
        let channel = channel_with(&resolver, policy);
        if policy == "round_robin" {
            // Until both endpoints are READY.
            let mut ids = std::collections::BTreeSet::new();
            for _ in 0..100 {
                let request = Request::new(Bytes::new()).with_wait_for_ready(true);
                ids.insert(who(&channel, request).await.unwrap());
                if ids.len() == 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let mut seen = Vec::new();
        for _ in 0..4 {
            let request = Request::new(Bytes::new()).with_wait_for_ready(true);
            seen.push(who(&channel, request).await.unwrap());
        }
        seen.sort();
        match policy {
            "pick_first" => assert_eq!(seen, ["a", "a", "a", "a"], "{policy}"),
            _ => assert_eq!(seen, ["a", "a", "b", "b"], "{policy}"),
        }
    }
}

// ---------------------------------------------------------------------------
// A parent policy with two children.

/// Which child an endpoint belongs to, set by the resolver.
#[derive(Debug, PartialEq)]
struct Route(&'static str);

/// Holds a pick_first child per route ("a", "b"), each given the
/// endpoints whose `Route` attribute names it; calls go to the child named
/// by their `x-route` header (default "a"). READY when any child is.
struct Router;

impl balancer::Builder for Router {
    fn name(&self) -> &str {
        "test_header_router"
    }
    fn build(&self, helper: Helper) -> Box<dyn Balancer> {
        let group = ChildGroup::new(helper, |children: &[ChildState<&'static str>]| {
            let state = if children.iter().any(|c| c.state == Conn::Ready) {
                Conn::Ready
            } else {
                Conn::Connecting
            };
            let routes = children
                .iter()
                .map(|c| (c.key, Arc::clone(&c.picker)))
                .collect();
            (state, Arc::new(RoutePicker { routes }) as Arc<dyn Picker>)
        });
        Box::new(RouterBalancer { group })
    }
}

struct RouterBalancer {
    group: ChildGroup<&'static str>,
}

struct RoutePicker {
    routes: Vec<(&'static str, Arc<dyn Picker>)>,
}

impl Picker for RoutePicker {
    fn pick(&self, info: &PickInfo<'_>) -> PickResult {
        let route = info.metadata.get("x-route").unwrap_or("a");
        match self.routes.iter().find(|(key, _)| *key == route) {
            Some((_, picker)) => picker.pick(info),
            None => PickResult::Drop(Status::unavailable(format!("no route {route}"))),
        }
    }
}

impl Balancer for RouterBalancer {
    fn update_client_conn_state(&mut self, state: ClientConnState) -> Result<(), String> {
        let pick_first = balancer::get("pick_first").unwrap();
        for route in ["a", "b"] {
            if !self.group.keys().contains(&route) {
                self.group.add(route, &*pick_first);
            }
            let endpoints = state.resolver_state.endpoints.iter();
            let mine: Vec<Endpoint> = endpoints
                .filter(|e| e.attributes.value::<Route>() == Some(&Route(route)))
                .cloned()
                .collect();
            let child_state = ClientConnState::new(Resolved::from_endpoints(mine));
            self.group.update_client_conn_state(&route, child_state)?;
        }
        Ok(())
    }
    fn resolver_error(&mut self, error: Status) {
        self.group.resolver_error(&error);
    }
    fn subchannel_state(&mut self, subconn: &SubConn, state: SubConnState) {
        self.group.subchannel_state(subconn, state);
    }
    fn exit_idle(&mut self) {
        self.group.exit_idle();
    }
}

#[tokio::test]
async fn a_parent_policy_routes_between_two_children_by_header() {
    balancer::register(Router);
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let resolver = ManualResolver::new("router");
    let route = |r| Attributes::new().with_value(Route(r));
    resolver.update_state(Resolved::from_endpoints([
        Endpoint::new([a.addr]).with_attributes(route("a")),
        Endpoint::new([b.addr]).with_attributes(route("b")),
    ]));
    let channel = channel_with(&resolver, "test_header_router");
    let to = |r: Option<&str>| {
        let mut request = Request::new(Bytes::new()).with_wait_for_ready(true);
        if let Some(r) = r {
            request.metadata_mut().insert("x-route", r).unwrap();
        }
        request
    };
    for _ in 0..3 {
        assert_eq!(who(&channel, to(Some("b"))).await.unwrap(), "b");
        assert_eq!(who(&channel, to(None)).await.unwrap(), "a");
        assert_eq!(who(&channel, to(Some("a"))).await.unwrap(), "a");
    }
    let err = who(&channel, to(Some("c"))).await.unwrap_err();
    assert!(err.message().contains("no route c"), "{err:?}");
}

/// Like `Router`, but an update removes the children whose route no
/// endpoint names any more, with `ChildGroup::remove`, and records what
/// the group said and which subchannels were shut down.
struct Pruning(Arc<Mutex<PruneLog>>);

#[derive(Default)]
struct PruneLog {
    /// Per `remove` call: the key and what it returned.
    removed: Vec<(&'static str, bool)>,
    /// The group's keys after each update.
    keys: Vec<Vec<&'static str>>,
}

impl balancer::Builder for Pruning {
    fn name(&self) -> &str {
        "test_pruning_router"
    }
    fn build(&self, helper: Helper) -> Box<dyn Balancer> {
        let group = ChildGroup::new(helper, |children: &[ChildState<&'static str>]| {
            let state = if children.iter().any(|c| c.state == Conn::Ready) {
                Conn::Ready
            } else {
                Conn::Connecting
            };
            let routes = children
                .iter()
                .map(|c| (c.key, Arc::clone(&c.picker)))
                .collect();
            (state, Arc::new(RoutePicker { routes }) as Arc<dyn Picker>)
        });
        Box::new(PruningBalancer {
            group,
            log: Arc::clone(&self.0),
        })
    }
}

struct PruningBalancer {
    group: ChildGroup<&'static str>,
    log: Arc<Mutex<PruneLog>>,
}

impl Balancer for PruningBalancer {
    fn update_client_conn_state(&mut self, state: ClientConnState) -> Result<(), String> {
        let pick_first = balancer::get("pick_first").unwrap();
        let endpoints = &state.resolver_state.endpoints;
        let named = |route| {
            endpoints
                .iter()
                .filter(|e| e.attributes.value::<Route>() == Some(&Route(route)))
                .cloned()
                .collect::<Vec<Endpoint>>()
        };
        for route in ["a", "b"] {
            let mine = named(route);
            if mine.is_empty() {
                if self.group.contains(&route) || route == "b" {
                    let removed = self.group.remove(&route);
                    self.log.lock().unwrap().removed.push((route, removed));
                }
                continue;
            }
            if !self.group.contains(&route) {
                self.group.add(route, &*pick_first);
            }
            let child_state = ClientConnState::new(Resolved::from_endpoints(mine));
            self.group.update_client_conn_state(&route, child_state)?;
        }
        self.log.lock().unwrap().keys.push(self.group.keys());
        Ok(())
    }
    fn resolver_error(&mut self, error: Status) {
        self.group.resolver_error(&error);
    }
    fn subchannel_state(&mut self, subconn: &SubConn, state: SubConnState) {
        self.group.subchannel_state(subconn, state);
    }
    fn exit_idle(&mut self) {
        self.group.exit_idle();
    }
}

/// `ChildGroup::remove` closes the child and shuts its subchannels down
/// (the server sees the connection close), says whether there was a child,
/// and the parent's picker stops offering it.
#[tokio::test]
async fn removing_a_child_policy_shuts_its_subchannels_down() {
    let log = Arc::new(Mutex::new(PruneLog::default()));
    balancer::register(Pruning(Arc::clone(&log)));
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let resolver = ManualResolver::new("pruning");
    let route = |r| Attributes::new().with_value(Route(r));
    let both = || {
        Resolved::from_endpoints([
            Endpoint::new([a.addr]).with_attributes(route("a")),
            Endpoint::new([b.addr]).with_attributes(route("b")),
        ])
    };
    resolver.update_state(both());
    let channel = channel_with(&resolver, "test_pruning_router");
    let to = |r: &str| {
        let mut request = Request::new(Bytes::new()).with_wait_for_ready(true);
        request.metadata_mut().insert("x-route", r).unwrap();
        request
    };
    assert_eq!(who(&channel, to("b")).await.unwrap(), "b");
    assert_eq!(who(&channel, to("a")).await.unwrap(), "a");

    resolver.update_state(Resolved::from_endpoints([
        Endpoint::new([a.addr]).with_attributes(route("a"))
    ]));
    eventually("b's connection closed", || b.server.connection_count() == 0).await;
    let err = who(&channel, to("b")).await.unwrap_err();
    assert!(err.message().contains("no route b"), "{err:?}");
    assert_eq!(who(&channel, to("a")).await.unwrap(), "a");

    // Removing it again finds nothing; adding it back works.
    resolver.update_state(Resolved::from_endpoints([
        Endpoint::new([a.addr]).with_attributes(route("a"))
    ]));
    eventually("the third update", || log.lock().unwrap().keys.len() == 3).await;
    resolver.update_state(both());
    eventually("the fourth update", || log.lock().unwrap().keys.len() == 4).await;
    assert_eq!(who(&channel, to("b")).await.unwrap(), "b");
    let log = log.lock().unwrap();
    assert_eq!(log.removed, [("b", true), ("b", false)]);
    assert_eq!(
        log.keys,
        [vec!["a", "b"], vec!["a"], vec!["a"], vec!["a", "b"]]
    );
    assert_eq!(a.server.connection_count(), 1, "a's connection stays");
}

// ---------------------------------------------------------------------------
// round_robin: a pick_first child per endpoint (gRFC A61).

/// A TCP listener that accepts connections and never says anything, so a
/// connection attempt to it neither succeeds nor fails until it times out.
async fn silent_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    (addr, task)
}

/// Calls until every id in `ids` answered at least once.
async fn until_all_answer(channel: &Channel, ids: &[&str]) {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let request = Request::new(Bytes::new()).with_wait_for_ready(true);
        seen.insert(who(channel, request).await.unwrap());
        if ids.iter().all(|id| seen.contains(*id)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("only {seen:?} answered");
}

/// `n` calls; the ids that answered, sorted.
async fn answers(channel: &Channel, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let request = Request::new(Bytes::new()).with_wait_for_ready(true);
        seen.push(who(channel, request).await.unwrap());
    }
    seen.sort();
    seen
}

/// Each endpoint's pick_first child moves past an address that does not
/// answer after 250 ms (Happy Eyeballs) rather than waiting out the
/// connect timeout; calls alternate over the endpoints; an endpoint the
/// resolver drops loses its child, and one it adds back gets a new one.
#[tokio::test]
async fn round_robin_runs_a_pick_first_child_per_endpoint() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let (silent, _silent_task) = silent_server().await;
    let resolver = ManualResolver::new("rr-children");
    resolver.update_state(Resolved::from_endpoints([
        Endpoint::new([silent, a.addr]),
        Endpoint::new([closed_port(), b.addr]),
    ]));
    let channel = Channel::builder(format!("{}:///backends", resolver_scheme(&resolver)))
        .resolver(resolver.clone())
        .default_service_config(r#"{"loadBalancingConfig": [{"round_robin": {}}]}"#)
        .connect_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    until_all_answer(&channel, &["a", "b"]).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the silent address held its endpoint back for {:?}",
        started.elapsed()
    );
    assert_eq!(answers(&channel, 6).await, ["a", "a", "a", "b", "b", "b"]);

    // The second endpoint goes; a third comes.
    resolver.update_state(Resolved::from_endpoints([
        Endpoint::new([silent, a.addr]),
        Endpoint::new([c.addr]),
    ]));
    until_all_answer(&channel, &["a", "c"]).await;
    assert_eq!(answers(&channel, 6).await, ["a", "a", "a", "c", "c", "c"]);

    // The endpoints in another order, the first with its addresses
    // swapped: the same endpoints, served on the same connections.
    resolver.update_state(Resolved::from_endpoints([
        Endpoint::new([c.addr]),
        Endpoint::new([a.addr, silent]),
    ]));
    until_all_answer(&channel, &["a", "c"]).await;
    assert_eq!(a.server.connection_count(), 1);
    assert_eq!(c.server.connection_count(), 1);
    assert_eq!(
        b.server.connection_count(),
        0,
        "the removed child's is closed"
    );
}

/// A child whose connection is lost goes IDLE and is asked to connect
/// again at once (gRFC A61), without a call having to pick it: a server
/// back on the same port gets calls again.
#[tokio::test]
async fn a_round_robin_child_that_lost_its_connection_reconnects() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let resolver = ManualResolver::new("rr-reconnect");
    resolver.update_state(Resolved::from_endpoints([
        Endpoint::new([a.addr]),
        Endpoint::new([b.addr]),
    ]));
    let channel = channel_with(&resolver, "round_robin");
    until_all_answer(&channel, &["a", "b"]).await;
    let addr = a.addr;
    drop(a);
    // Back on the same port, under a new name.
    let mut listener = None;
    for _ in 0..100 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let listener = listener.expect("the port is free again");
    let server = Server::builder()
        .add_service(IdService {
            id: "a2".into(),
            flaky: Arc::new(AtomicUsize::new(0)),
        })
        .build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    // Within a few reconnection backoffs (1 s, then 1.6 s, ±20%).
    let mut reached = false;
    for _ in 0..100 {
        let request = Request::new(Bytes::new()).with_wait_for_ready(true);
        if who(&channel, request).await.unwrap() == "a2" {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reached, "the child did not reconnect");
    server.stop();
}

/// The children's subchannels carry the resolver's per-address attributes.
#[tokio::test]
async fn round_robin_children_hand_on_address_attributes() {
    let backend = Backend::start("a").await;
    let resolver = ManualResolver::new("rr-attributes");
    let tag = Attributes::new().with_value(Preferred);
    resolver.update_state(Resolved::from_endpoints([
        Endpoint::default().with_address_attributes(backend.addr, tag)
    ]));
    let (channel, log) = {
        // round_robin under a wrapper that records the READY subchannels.
        struct Wrap(Arc<Mutex<Vec<bool>>>);
        impl balancer::Builder for Wrap {
            fn name(&self) -> &str {
                "test_rr_recorder"
            }
            fn build(&self, helper: Helper) -> Box<dyn Balancer> {
                struct B(Arc<Mutex<Vec<bool>>>, Box<dyn Balancer>);
                impl Balancer for B {
                    fn update_client_conn_state(
                        &mut self,
                        s: ClientConnState,
                    ) -> Result<(), String> {
                        self.1.update_client_conn_state(s)
                    }
                    fn resolver_error(&mut self, e: Status) {
                        self.1.resolver_error(e)
                    }
                    fn subchannel_state(&mut self, sc: &SubConn, s: SubConnState) {
                        if s.state == Conn::Ready {
                            let tagged = sc.attributes().value::<Preferred>().is_some();
                            self.0.lock().unwrap().push(tagged);
                        }
                        self.1.subchannel_state(sc, s)
                    }
                    fn exit_idle(&mut self) {
                        self.1.exit_idle()
                    }
                }
                Box::new(B(
                    Arc::clone(&self.0),
                    balancer::get("round_robin").unwrap().build(helper),
                ))
            }
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        balancer::register(Wrap(Arc::clone(&log)));
        (channel_with(&resolver, "test_rr_recorder"), log)
    };
    let request = Request::new(Bytes::new()).with_wait_for_ready(true);
    assert_eq!(who(&channel, request).await.unwrap(), "a");
    assert_eq!(*log.lock().unwrap(), [true]);
}

/// An HTTP/2 server that refuses its first stream (REFUSED_STREAM: never
/// processed, so the client retries transparently) and answers every later
/// one with an empty message and OK, whatever the request.
async fn refuse_first_stream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let streams = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let streams = Arc::clone(&streams);
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((request, mut respond))) = conn.accept().await {
                    if streams.fetch_add(1, Ordering::Relaxed) == 0 {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    tokio::spawn(async move {
                        let mut body = request.into_body();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                        }
                        let mut head = http::Response::new(());
                        let content_type = http::HeaderValue::from_static("application/grpc");
                        head.headers_mut().insert("content-type", content_type);
                        let mut send = respond.send_response(head, false).unwrap();
                        let _ = send.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false);
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        trailers.insert("x-load", http::HeaderValue::from_static("1"));
                        let _ = send.send_trailers(trailers);
                    });
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_transparently_retried_attempt_has_its_own_done() {
    for kind in ["unary", "bidi"] {
        let name = match kind {
            "unary" => "test_done_transparent_unary",
            _ => "test_done_transparent_bidi",
        };
        let (channel, log) = observed_channel_to(name, "", refuse_first_stream().await);
        let path = PathAndQuery::from_static("/test.Ids/Any");
        if kind == "unary" {
            let request = Request::new(Bytes::new()).with_timeout(CALL_TIMEOUT);
            let _: Response<Bytes> = channel.unary(path, request, BytesCodec).await.unwrap();
        } else {
            let request = Request::new(()).with_timeout(CALL_TIMEOUT);
            let (mut sink, mut stream) = channel
                .streaming::<Bytes, Bytes, _>(path, request, BytesCodec)
                .await
                .unwrap();
            sink.send(Bytes::from_static(b"x")).await.unwrap();
            sink.close().unwrap();
            while stream.message().await.unwrap().is_some() {}
        }
        eventually("two dones", || log.lock().unwrap().dones.len() == 2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let log = log.lock().unwrap();
        let outcomes: Vec<_> = log.dones.iter().map(|d| (d.1, d.2.clone(), d.4)).collect();
        assert_eq!(
            outcomes,
            vec![
                (Code::Unavailable, None, false),
                (Code::Ok, Some("1".to_string()), true),
            ],
            "{kind}"
        );
        assert_eq!(log.picks.len(), 2, "{kind}");
    }
}

#[tokio::test]
async fn a_hedge_that_loses_hears_cancelled() {
    let hedge = r#", "methodConfig": [{"name": [{"service": "test.Ids", "method": "SlowFirst"}],
        "hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "0.05s"}}]"#;
    let (channel, log, _backend) = observed_channel("test_done_hedging", hedge).await;
    let request = Request::new(Bytes::new()).with_timeout(CALL_TIMEOUT);
    call(&channel, "SlowFirst", request).await.unwrap();
    eventually("two dones", || log.lock().unwrap().dones.len() == 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = log.lock().unwrap();
    // The loser is dropped when the winner commits (its response headers),
    // usually before the winner's status arrives; the order is not the point.
    let mut codes: Vec<_> = log.dones.iter().map(|d| d.1 as i32).collect();
    codes.sort_unstable();
    assert_eq!(codes, vec![Code::Ok as i32, Code::Cancelled as i32]);
    assert_eq!(log.picks.len(), 2);
}

/// pick_first that records every subchannel state it hears, by address.
struct StateRecorder(Arc<Mutex<Vec<(String, Conn)>>>);

impl balancer::Builder for StateRecorder {
    fn name(&self) -> &str {
        "test_state_recorder"
    }
    fn build(&self, helper: Helper) -> Box<dyn Balancer> {
        struct B(Arc<Mutex<Vec<(String, Conn)>>>, Box<dyn Balancer>);
        impl Balancer for B {
            fn update_client_conn_state(&mut self, s: ClientConnState) -> Result<(), String> {
                self.1.update_client_conn_state(s)
            }
            fn resolver_error(&mut self, e: Status) {
                self.1.resolver_error(e)
            }
            fn subchannel_state(&mut self, sc: &SubConn, s: SubConnState) {
                self.0
                    .lock()
                    .unwrap()
                    .push((format!("{:?}", sc.address()), s.state));
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

/// A subchannel its policy shuts down tells the policy SHUTDOWN, last (as
/// gRPC-Go's state listener), so parents can forget it.
#[tokio::test]
async fn a_shut_down_subchannel_reports_shutdown_last() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    balancer::register(StateRecorder(Arc::clone(&seen)));
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let resolver = ManualResolver::new("shutdown-report");
    resolver.update_state(Resolved::from_endpoints([Endpoint::new([a.addr])]));
    let channel = channel_with(&resolver, "test_state_recorder");
    assert_eq!(
        who(&channel, Request::new(Bytes::new())).await.unwrap(),
        "a"
    );
    // Only b now: pick_first shuts a's subchannel down.
    resolver.update_state(Resolved::from_endpoints([Endpoint::new([b.addr])]));
    let a_name = format!("{:?}", ferrogrpc::resolver::Address::from(a.addr));
    eventually("a's subchannel reported SHUTDOWN", || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(addr, state)| *addr == a_name && *state == Conn::Shutdown)
    })
    .await;
    assert_eq!(
        who(&channel, Request::new(Bytes::new())).await.unwrap(),
        "b"
    );
    let seen = seen.lock().unwrap();
    let of_a: Vec<Conn> = seen
        .iter()
        .filter(|(addr, _)| *addr == a_name)
        .map(|(_, state)| *state)
        .collect();
    assert_eq!(of_a.last(), Some(&Conn::Shutdown), "{of_a:?}");
    assert_eq!(of_a.iter().filter(|s| **s == Conn::Shutdown).count(), 1);
}
