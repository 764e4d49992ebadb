//! Integration tests of the client channel's resolver → balancer →
//! subchannel stack, against real servers on loopback TCP ports and Unix
//! sockets: pick_first and round_robin, manual and built-in resolvers,
//! wait-for-ready, idleness, the connectivity API and bad targets.
//!
//! Every server runs `IdService`, whose `Who` method answers with the
//! server's own id, so each call shows which server it reached. Waits are
//! polls bounded by a timeout; the few fixed sleeps only let something
//! happen (or show that nothing happens), they never measure speed.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use ferrogrpc::{
    backoff,
    client::Channel,
    codec::BytesCodec,
    connectivity::State as Conn,
    peer::Peer,
    resolver::{manual::ManualResolver, Address, State as Resolved},
    server::{self, BoxFuture, Listener, ResponseSink, Server, ServerCall, Service},
    serviceconfig::ServiceConfig,
    Code, Request, Response, Status, Streaming,
};
use http::uri::PathAndQuery;
use tokio::task::JoinHandle;

const ROUND_ROBIN: &str = r#"{"loadBalancingConfig": [{"round_robin": {}}]}"#;
const PICK_FIRST: &str = r#"{"loadBalancingConfig": [{"pick_first": {}}]}"#;

/// The longest any single call in these tests may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// The service.

/// Answers `Who` with its id; `Hold` sends the id then keeps the stream
/// open; `Echo` echoes each message of a bidi stream.
#[derive(Clone)]
struct IdService {
    id: Arc<str>,
    calls: Arc<AtomicUsize>,
}

impl Service for IdService {
    fn name(&self) -> &'static str {
        "test.Ids"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        let id = Bytes::from(self.id.to_string());
        match method {
            "Who" => {
                self.calls.fetch_add(1, Ordering::Relaxed);
                Box::pin(server::unary(
                    call,
                    BytesCodec,
                    move |_req: Request<Bytes>| async move { Ok(Response::new(id)) },
                ))
            }
            "Hold" => Box::pin(server::server_streaming(
                call,
                BytesCodec,
                move |_req: Request<Bytes>, mut sink: ResponseSink<Bytes>| async move {
                    sink.send(id).await?;
                    // Cancelled when the client goes away.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(())
                },
            )),
            "Echo" => Box::pin(server::streaming(
                call,
                BytesCodec,
                |req: Request<Streaming<Bytes>>, mut sink: ResponseSink<Bytes>| async move {
                    let mut stream = req.into_inner();
                    while let Some(msg) = stream.message().await? {
                        sink.send(msg).await?;
                    }
                    Ok(())
                },
            )),
            _ => Box::pin(call.unimplemented()),
        }
    }
}

/// Counts the connections a listener accepts.
struct Counting<L> {
    inner: L,
    accepts: Arc<AtomicUsize>,
}

impl<L: Listener> Listener for Counting<L> {
    type Io = L::Io;

    async fn accept(&mut self) -> io::Result<(Self::Io, Peer)> {
        let accepted = self.inner.accept().await;
        if accepted.is_ok() {
            self.accepts.fetch_add(1, Ordering::Relaxed);
        }
        accepted
    }
}

/// A server on one address.
struct Backend {
    id: String,
    address: Address,
    server: Server,
    calls: Arc<AtomicUsize>,
    accepts: Arc<AtomicUsize>,
}

impl Backend {
    fn serve<L: Listener>(id: &str, address: Address, listener: L) -> Backend {
        let calls = Arc::new(AtomicUsize::new(0));
        let accepts = Arc::new(AtomicUsize::new(0));
        let server = Server::builder()
            .add_service(IdService {
                id: id.into(),
                calls: Arc::clone(&calls),
            })
            .build();
        let listener = Counting {
            inner: listener,
            accepts: Arc::clone(&accepts),
        };
        let s = server.clone();
        // Returns (dropping the listener, so the port refuses) once the
        // server is stopped.
        tokio::spawn(async move { s.serve_listener(listener).await });
        Backend {
            id: id.to_string(),
            address,
            server,
            calls,
            accepts,
        }
    }

    /// A server on a fresh loopback port.
    async fn tcp(id: &str) -> Backend {
        Backend::tcp_on(id, "127.0.0.1:0".parse().unwrap()).await
    }

    /// A server on `addr` (a fixed port is retried briefly, in case the
    /// previous server's socket is still being released).
    async fn tcp_on(id: &str, addr: SocketAddr) -> Backend {
        let started = Instant::now();
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(_) if started.elapsed() < Duration::from_secs(2) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("cannot bind {addr}: {e}"),
            }
        };
        let local = listener.local_addr().unwrap();
        Backend::serve(id, Address::Tcp(local), listener)
    }

    /// A server on a Unix socket at `path`.
    fn unix(id: &str, path: &Path) -> Backend {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        Backend::serve(id, Address::Unix(path.to_path_buf()), listener)
    }

    fn socket_addr(&self) -> SocketAddr {
        match &self.address {
            Address::Tcp(addr) => *addr,
            other => panic!("{other} is not a TCP address"),
        }
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::Relaxed)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

/// A loopback address where nothing listens.
fn closed_port() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    addr
}

/// A fresh directory for this test's sockets.
fn socket_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrogrpc-ch-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------
// Calls and waiting.

fn who_path() -> PathAndQuery {
    PathAndQuery::from_static("/test.Ids/Who")
}

/// One `Who` call: the id of the server that answered.
async fn who_with(ch: &Channel, wait_for_ready: bool) -> Result<String, Status> {
    let req = Request::new(Bytes::new())
        .with_timeout(CALL_TIMEOUT)
        .with_wait_for_ready(wait_for_ready);
    let resp = ch.unary(who_path(), req, BytesCodec).await?;
    Ok(String::from_utf8(resp.into_inner().to_vec()).unwrap())
}

/// A fail-fast `Who` call.
async fn who(ch: &Channel) -> Result<String, Status> {
    who_with(ch, false).await
}

/// A wait-for-ready `Who` call.
async fn who_wfr(ch: &Channel) -> Result<String, Status> {
    who_with(ch, true).await
}

/// `n` calls, each of which must succeed; how many reached each server.
async fn spread(ch: &Channel, n: usize, wait_for_ready: bool) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let id = who_with(ch, wait_for_ready)
            .await
            .unwrap_or_else(|e| panic!("call {i} of {n} failed: {e:?}"));
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// Makes calls (each must succeed) until one reaches `id`, for at most
/// `limit`.
async fn call_until_reaching(ch: &Channel, id: &str, limit: Duration, wait_for_ready: bool) {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let got = who_with(ch, wait_for_ready)
            .await
            .unwrap_or_else(|e| panic!("a call failed while waiting for {id}: {e:?}"));
        let done = got == id;
        seen.push(got);
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no call reached {id} within {limit:?}; calls reached {:?}",
            summary(&seen)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn summary(ids: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts.entry(id.as_str()).or_insert(0) += 1;
    }
    counts
}

/// Polls `check` every few milliseconds until it holds; panics after
/// `limit`.
async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `fut`, which must finish within `limit`.
async fn within<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

/// Waits until the channel's state is `want`, for at most `limit`.
async fn wait_for_state(ch: &Channel, want: Conn, limit: Duration) {
    let mut seen = vec![ch.state()];
    let result = tokio::time::timeout(limit, async {
        let mut state = ch.state();
        while state != want {
            state = ch.wait_for_state_change(state).await;
            seen.push(state);
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "the channel did not reach {want} within {limit:?}; states seen: {seen:?}"
    );
}

/// A channel to `scheme:///backends` resolved by `resolver`.
fn manual_channel(
    resolver: &ManualResolver,
    service_config: Option<&str>,
    backoff: Option<backoff::Config>,
) -> Channel {
    let mut builder = Channel::builder(format!("{}:///backends", resolver_scheme(resolver)))
        .resolver(resolver.clone());
    if let Some(json) = service_config {
        builder = builder.default_service_config(json);
    }
    if let Some(config) = backoff {
        builder = builder.connect_backoff(config);
    }
    builder.build().unwrap()
}

fn resolver_scheme(resolver: &ManualResolver) -> String {
    use ferrogrpc::resolver::Builder;
    resolver.scheme().to_string()
}

fn addresses(backends: &[&Backend]) -> Resolved {
    Resolved::new(backends.iter().map(|b| b.address.clone()))
}

/// Tasks calling `Who` in a loop on one channel, logging every result, until
/// stopped.
struct Callers {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Result<String, String>>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Callers {
    fn start(ch: &Channel, tasks: usize, wait_for_ready: bool) -> Callers {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..tasks)
            .map(|_| {
                let (ch, stop, log) = (ch.clone(), Arc::clone(&stop), Arc::clone(&log));
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let result = who_with(&ch, wait_for_ready)
                            .await
                            .map_err(|e| format!("{:?}: {}", e.code(), e.message()));
                        log.lock().unwrap().push(result);
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        Callers { stop, log, tasks }
    }

    fn len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// The servers reached by the calls logged from the `from`-th on.
    fn reached_since(&self, from: usize) -> BTreeSet<String> {
        self.log.lock().unwrap()[from..]
            .iter()
            .filter_map(|r| r.clone().ok())
            .collect()
    }

    /// Waits until a call logged from the `from`-th on reached `id`, and at
    /// least `more` further calls were logged after that one.
    async fn wait_for(&self, from: usize, id: &str, more: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            {
                let log = self.log.lock().unwrap();
                let hit = log[from..]
                    .iter()
                    .position(|r| r.as_deref() == Ok(id))
                    .map(|i| from + i);
                if let Some(i) = hit {
                    if log.len() >= i + 1 + more {
                        return;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "the callers reached no {id} (or too few calls followed) within 5 s; \
                     since call {from}: {:?}",
                    &log[from..]
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until, from the `from`-th call on, `n` calls in a row reached
    /// servers in `ids`; returns where that run starts.
    async fn wait_for_streak(&self, from: usize, ids: &[&str], n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            {
                let log = self.log.lock().unwrap();
                let mut start = from;
                for (i, r) in log.iter().enumerate().skip(from) {
                    if !r.as_deref().is_ok_and(|id| ids.contains(&id)) {
                        start = i + 1;
                    } else if i + 1 - start >= n {
                        return start;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "no run of {n} calls reaching only {ids:?} within 5 s; since call {from}: {:?}",
                    &log[from..]
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the tasks; fails the test if any call failed.
    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            within("a caller task", Duration::from_secs(10), task)
                .await
                .unwrap();
        }
        let log = std::mem::take(&mut *self.log.lock().unwrap());
        let failures: Vec<&String> = log.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(
            failures.is_empty(),
            "{} of {} calls failed: {failures:?}",
            failures.len(),
            log.len()
        );
        log.into_iter().map(Result::unwrap).collect()
    }
}

// ---------------------------------------------------------------------------
// 1. pick_first fails over to the next address.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pick_first_skips_a_refused_address() {
    let live = Backend::tcp("live").await;
    let dead = closed_port();
    let ch = Channel::from_target(&format!("ipv4:{dead},{}", live.socket_addr())).unwrap();
    assert_eq!(
        spread(&ch, 10, false).await,
        BTreeMap::from([("live".into(), 10)])
    );
    assert_eq!(ch.state(), Conn::Ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pick_first_tries_the_next_address_beside_a_stalled_one() {
    // A listener nobody accepts on: the kernel completes the TCP handshake,
    // but no HTTP/2 SETTINGS ever come, so an attempt there would run for
    // the whole 20 s connect timeout. Happy Eyeballs starts the next
    // address 250 ms in, and the call goes there.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live = Backend::tcp("live").await;
    let ch = Channel::from_target(&format!(
        "ipv4:{},{}",
        stalled.local_addr().unwrap(),
        live.socket_addr()
    ))
    .unwrap();
    let started = std::time::Instant::now();
    let reply = within(
        "a call past the stalled address",
        Duration::from_secs(5),
        who(&ch),
    )
    .await
    .unwrap();
    assert_eq!(reply, "live");
    assert!(
        started.elapsed() >= ferrogrpc::balancer::pick_first::CONNECTION_ATTEMPT_DELAY,
        "the live address was tried before the first attempt had its delay"
    );
    assert_eq!(
        spread(&ch, 10, false).await,
        BTreeMap::from([("live".into(), 10)])
    );
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pick_first_fails_over_between_unix_and_tcp_addresses() {
    let dir = socket_dir("pf-unix");
    let tcp = Backend::tcp("tcp").await;
    let unix = Backend::unix("unix", &dir.join("live.sock"));
    let dead_unix = Address::Unix(dir.join("nobody-listens.sock"));
    let dead_tcp = Address::Tcp(closed_port());

    // A dead Unix socket first, then a live TCP server.
    let resolver = ManualResolver::new("pfunix");
    resolver.update_state(Resolved::new([dead_unix.clone(), tcp.address.clone()]));
    let ch = manual_channel(&resolver, None, None);
    assert_eq!(
        spread(&ch, 10, false).await,
        BTreeMap::from([("tcp".into(), 10)])
    );

    // The reverse: a dead TCP port first, then a live Unix socket.
    let resolver = ManualResolver::new("pfunix");
    resolver.update_state(Resolved::new([dead_tcp, unix.address.clone()]));
    let ch = manual_channel(&resolver, None, None);
    assert_eq!(
        spread(&ch, 10, false).await,
        BTreeMap::from([("unix".into(), 10)])
    );
    assert_eq!(unix.accepts(), 1, "one connection carries every call");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// 2. pick_first sticks to the first server, and moves on when it stops.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pick_first_sticks_to_one_server_then_moves_on_when_it_stops() {
    let a = Backend::tcp("a").await;
    let b = Backend::tcp("b").await;
    let c = Backend::tcp("c").await;
    let ch = Channel::from_target(&format!(
        "ipv4:{},{},{}",
        a.socket_addr(),
        b.socket_addr(),
        c.socket_addr()
    ))
    .unwrap();
    assert_eq!(
        spread(&ch, 50, false).await,
        BTreeMap::from([("a".into(), 50)])
    );
    assert_eq!(
        (a.accepts(), b.accepts(), c.accepts()),
        (1, 0, 0),
        "pick_first connects to the first address only"
    );

    // A hard stop while no call is under way: once the channel has seen the
    // connection close, every wait-for-ready call succeeds, on b.
    a.server.stop();
    wait_for_state(&ch, Conn::Idle, Duration::from_secs(5)).await;
    assert_eq!(
        spread(&ch, 50, true).await,
        BTreeMap::from([("b".into(), 50)])
    );
    assert_eq!(ch.state(), Conn::Ready);

    // A graceful stop of b while calls run without a pause: not one is lost.
    let callers = Callers::start(&ch, 2, true);
    eventually("calls before the stop", Duration::from_secs(5), || {
        callers.len() >= 20
    })
    .await;
    within(
        "graceful stop of b",
        Duration::from_secs(5),
        b.server.graceful_stop(),
    )
    .await;
    // Every connection to b is closed now: b handles no more calls, and
    // the calls go on, on c (a call on b may still be being logged).
    let b_calls = b.calls();
    let from = callers.len();
    callers.wait_for(from, "c", 50).await;
    callers.finish().await;
    assert_eq!(
        b.calls(),
        b_calls,
        "b handled calls after its graceful stop"
    );
    assert_eq!(b.accepts(), 1, "one connection to b");
    assert_eq!(
        spread(&ch, 20, true).await,
        BTreeMap::from([("c".into(), 20)])
    );
}

// ---------------------------------------------------------------------------
// 3. round_robin spreads calls evenly.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_calls_evenly() {
    let backends = [
        Backend::tcp("a").await,
        Backend::tcp("b").await,
        Backend::tcp("c").await,
    ];
    let target = format!(
        "ipv4:{},{},{}",
        backends[0].socket_addr(),
        backends[1].socket_addr(),
        backends[2].socket_addr()
    );
    let ch = Channel::builder(target)
        .default_service_config(ROUND_ROBIN)
        .build()
        .unwrap();
    // Until every subchannel is READY the rotation covers fewer servers.
    for b in &backends {
        call_until_reaching(&ch, &b.id, Duration::from_secs(5), false).await;
    }
    let counts = spread(&ch, 300, false).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (id, n) in &counts {
        assert!((90..=110).contains(n), "{id} got {n} of 300: {counts:?}");
    }
    for b in &backends {
        assert_eq!(b.accepts(), 1, "{}: one connection per server", b.id);
    }
}

// ---------------------------------------------------------------------------
// 4. round_robin routes around a stopped server and comes back to it.

/// Three servers behind round_robin; b stops, calls go to a and c; b
/// restarts on its port and, after `bring_back`, calls reach it again
/// within `limit`.
async fn round_robin_recovers(
    scheme: &str,
    backoff: backoff::Config,
    bring_back: impl FnOnce(&Channel),
    limit: Duration,
) {
    let a = Backend::tcp("a").await;
    let b = Backend::tcp("b").await;
    let c = Backend::tcp("c").await;
    let resolver = ManualResolver::new(scheme);
    resolver.update_state(addresses(&[&a, &b, &c]));
    let ch = manual_channel(&resolver, Some(ROUND_ROBIN), Some(backoff));
    for id in ["a", "b", "c"] {
        call_until_reaching(&ch, id, Duration::from_secs(5), false).await;
    }

    // b stops. round_robin asks the resolver to resolve again when it sees
    // a connection lost: that is when the channel has noticed.
    let asked = resolver.resolve_now_count();
    let b_addr = b.socket_addr();
    b.server.stop();
    eventually(
        "the channel to notice that b stopped",
        Duration::from_secs(5),
        || resolver.resolve_now_count() > asked,
    )
    .await;
    assert_eq!(ch.state(), Conn::Ready, "a and c are still up");
    let counts = spread(&ch, 60, false).await;
    assert_eq!(
        counts.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "c"],
        "{counts:?}"
    );

    // Let b's subchannel fail a reconnection attempt and enter its backoff,
    // then restart b on the same port.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = Backend::tcp_on("b", b_addr).await;
    let restarted = Instant::now();
    bring_back(&ch);
    call_until_reaching(&ch, "b", limit, false).await;
    assert!(b.calls() >= 1);
    // All three are in the rotation again.
    let counts = spread(&ch, 30, false).await;
    assert_eq!(
        counts.len(),
        3,
        "{counts:?} ({:?} after restart)",
        restarted.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_uses_a_restarted_server_after_reset_connect_backoff() {
    // A 10 s backoff: only reset_connect_backoff brings b back in time.
    round_robin_recovers(
        "rrreset",
        backoff::Config::default().with_base_delay(Duration::from_secs(10)),
        Channel::reset_connect_backoff,
        Duration::from_secs(2),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_uses_a_restarted_server_after_a_short_backoff() {
    // Reconnection attempts at most 100 ms apart: b is back well before the
    // first retry the default backoff would make (1 s).
    round_robin_recovers(
        "rrshort",
        backoff::Config::default()
            .with_base_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_millis(100)),
        |_| {},
        Duration::from_millis(800),
    )
    .await;
}

// ---------------------------------------------------------------------------
// 5. Resolver updates take effect without failing calls.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_follows_resolver_updates_without_failing_calls() {
    let a = Backend::tcp("a").await;
    let b = Backend::tcp("b").await;
    let c = Backend::tcp("c").await;
    let resolver = ManualResolver::new("rrupdates");
    resolver.update_state(addresses(&[&a]));
    let ch = manual_channel(&resolver, Some(ROUND_ROBIN), None);
    // Fail-fast calls: the channel never has cause to fail one.
    let callers = Callers::start(&ch, 2, false);
    callers.wait_for(0, "a", 20).await;

    resolver.update_state(addresses(&[&a, &b]));
    let from = callers.len();
    callers.wait_for(from, "b", 20).await;

    // [b]: once the update is applied, a run of calls all on b (which two
    // callers on an a-b rotation cannot produce), and never a again.
    resolver.update_state(addresses(&[&b]));
    let from = callers.len();
    let streak = callers.wait_for_streak(from, &["b"], 40).await;
    eventually("calls after [b]", Duration::from_secs(5), || {
        callers.len() >= streak + 100
    })
    .await;
    let since = callers.reached_since(streak);
    assert_eq!(since, BTreeSet::from(["b".to_string()]), "after [b]");

    // [b, c]: a is long gone; c joins.
    resolver.update_state(addresses(&[&b, &c]));
    let from = callers.len();
    callers.wait_for(from, "c", 20).await;
    let log = callers.finish().await;
    let after = summary(&log[from..]);
    assert_eq!(
        after.keys().copied().collect::<Vec<_>>(),
        ["b", "c"],
        "after [b, c]"
    );
    assert_eq!(ch.state(), Conn::Ready);
    // Afterwards, calls reach the new set only, both of it.
    let counts = spread(&ch, 30, false).await;
    assert_eq!(
        counts.keys().map(String::as_str).collect::<Vec<_>>(),
        ["b", "c"],
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pick_first_follows_resolver_updates_without_failing_calls() {
    let a = Backend::tcp("a").await;
    let b = Backend::tcp("b").await;
    let c = Backend::tcp("c").await;
    let resolver = ManualResolver::new("pfupdates");
    resolver.update_state(addresses(&[&a]));
    let ch = manual_channel(&resolver, None, None);
    let callers = Callers::start(&ch, 2, false);
    callers.wait_for(0, "a", 20).await;

    // [a, b]: the connection in use stays in use.
    resolver.update_state(addresses(&[&a, &b]));
    let from = callers.len();
    eventually("calls after [a, b]", Duration::from_secs(5), || {
        callers.len() >= from + 100
    })
    .await;
    assert_eq!(
        callers.reached_since(from),
        BTreeSet::from(["a".to_string()]),
        "pick_first keeps the address in use"
    );
    assert_eq!(b.accepts(), 0, "b is not even connected to");

    // [b]: a is gone, so b.
    resolver.update_state(addresses(&[&b]));
    let from = callers.len();
    callers.wait_for(from, "b", 40).await;

    // [b, c]: b stays.
    resolver.update_state(addresses(&[&b, &c]));
    let from = callers.len();
    eventually("calls after [b, c]", Duration::from_secs(5), || {
        callers.len() >= from + 100
    })
    .await;
    let log = callers.finish().await;
    assert_eq!(
        summary(&log[from..]).keys().copied().collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(c.accepts(), 0, "c is not connected to");
    assert_eq!(
        spread(&ch, 20, false).await,
        BTreeMap::from([("b".into(), 20)])
    );
}

// ---------------------------------------------------------------------------
// 6. DNS names.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_reaches_a_server_on_either_loopback_family() {
    // On 127.0.0.1 only.
    let v4 = Backend::tcp("v4").await;
    let port = v4.socket_addr().port();
    for target in [
        format!("localhost:{port}"),
        format!("dns:///localhost:{port}"),
    ] {
        let ch = Channel::from_target(&target).unwrap();
        assert_eq!(
            spread(&ch, 5, false).await,
            BTreeMap::from([("v4".into(), 5)]),
            "{target}"
        );
    }

    // On ::1 only. localhost resolves as the hosts file says (both families
    // when it does not list localhost): where ::1 is among them the refused
    // 127.0.0.1 is skipped, by pick_first and by round_robin; where the
    // hosts file maps localhost to 127.0.0.1 alone, as the system's
    // resolver does, ::1 is not tried at all.
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let listed: Vec<&str> = hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter(|l| l.split_whitespace().skip(1).any(|n| n == "localhost"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let v6_reachable = listed.is_empty() || listed.contains(&"::1");
    let v6 = Backend::tcp_on("v6", "[::1]:0".parse().unwrap()).await;
    let port = v6.socket_addr().port();
    for target in [
        format!("localhost:{port}"),
        format!("dns:///localhost:{port}"),
    ] {
        let ch = Channel::from_target(&target).unwrap();
        if !v6_reachable {
            let req = Request::new(Bytes::new()).with_timeout(Duration::from_secs(5));
            let err = ch
                .unary::<Bytes, Bytes, _>(
                    PathAndQuery::from_static("/test.Ids/Who"),
                    req,
                    BytesCodec,
                )
                .await
                .unwrap_err();
            assert!(err.message().contains("127.0.0.1"), "{target}: {err}");
            continue;
        }
        assert_eq!(
            spread(&ch, 5, false).await,
            BTreeMap::from([("v6".into(), 5)]),
            "{target}"
        );
        let ch = Channel::builder(&target)
            .default_service_config(ROUND_ROBIN)
            .build()
            .unwrap();
        assert_eq!(
            spread(&ch, 5, true).await,
            BTreeMap::from([("v6".into(), 5)]),
            "{target} with round_robin"
        );
    }
}

// ---------------------------------------------------------------------------
// 7. Wait-for-ready.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_ready_call_waits_for_a_server_that_starts_later() {
    let addr = closed_port();
    let ch = Channel::builder(addr.to_string())
        .connect_backoff(
            backoff::Config::default()
                .with_base_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_millis(100)),
        )
        .build()
        .unwrap();
    let begun = Instant::now();
    let waiting = tokio::spawn({
        let ch = ch.clone();
        async move { who_wfr(&ch).await }
    });
    // A fail-fast call at the same time fails once the first attempt has.
    let err = who(&ch).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains(&addr.to_string()), "{err:?}");
    assert_eq!(ch.state(), Conn::TransientFailure);

    // The server starts 300 ms after the calls.
    tokio::time::sleep(Duration::from_millis(300).saturating_sub(begun.elapsed())).await;
    assert!(
        !waiting.is_finished(),
        "the wait-for-ready call is still waiting"
    );
    let backend = Backend::tcp_on("late", addr).await;
    let started = Instant::now();
    let id = within("the wait-for-ready call", Duration::from_secs(3), waiting)
        .await
        .unwrap()
        .expect("the wait-for-ready call succeeds once the server is up");
    assert_eq!(id, "late");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?} after the server started",
        started.elapsed()
    );
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_ready_call_without_a_server_ends_at_its_deadline() {
    let ch = Channel::builder(closed_port().to_string())
        .connect_backoff(backoff::Config::default().with_base_delay(Duration::from_millis(50)))
        .build()
        .unwrap();
    let begun = Instant::now();
    let req = Request::new(Bytes::new())
        .with_wait_for_ready(true)
        .with_timeout(Duration::from_millis(200));
    let err = within(
        "a wait-for-ready call with a 200 ms timeout",
        Duration::from_secs(3),
        ch.unary::<Bytes, Bytes, _>(who_path(), req, BytesCodec),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        begun.elapsed() >= Duration::from_millis(190),
        "ended after {:?}",
        begun.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 8. Idleness.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_goes_idle_without_calls_and_wakes_for_the_next() {
    let backend = Backend::tcp("s").await;
    let ch = Channel::builder(backend.socket_addr().to_string())
        .idle_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert_eq!(ch.state(), Conn::Idle);
    assert_eq!(who(&ch).await.unwrap(), "s");
    let last_call = Instant::now();
    assert_eq!(ch.state(), Conn::Ready);
    assert_eq!(backend.server.connection_count(), 1);

    let next = within(
        "the channel to leave READY",
        Duration::from_secs(2),
        ch.wait_for_state_change(Conn::Ready),
    )
    .await;
    assert_eq!(next, Conn::Idle);
    assert!(
        last_call.elapsed() >= Duration::from_millis(150),
        "idle after only {:?}",
        last_call.elapsed()
    );
    // The connection is closed: the server sees it go.
    eventually(
        "the server to see the idle channel's connection close",
        Duration::from_secs(2),
        || backend.server.connection_count() == 0,
    )
    .await;

    // The next call wakes the channel, on a new connection.
    assert_eq!(who(&ch).await.unwrap(), "s");
    assert_eq!(ch.state(), Conn::Ready);
    assert_eq!(backend.accepts(), 2);
    wait_for_state(&ch, Conn::Idle, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_keep_the_channel_from_going_idle() {
    let backend = Backend::tcp("s").await;
    let timeout = Duration::from_millis(200);
    let ch = Channel::builder(backend.socket_addr().to_string())
        .idle_timeout(timeout)
        .build()
        .unwrap();

    // A server stream open for more than three idle timeouts.
    let mut held = ch
        .server_streaming::<Bytes, Bytes, _>(
            PathAndQuery::from_static("/test.Ids/Hold"),
            Request::new(Bytes::new()),
            BytesCodec,
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.message().await.unwrap().unwrap(), "s");
    assert_eq!(ch.state(), Conn::Ready);
    let changed = tokio::time::timeout(4 * timeout, ch.wait_for_state_change(Conn::Ready)).await;
    assert!(
        changed.is_err(),
        "the state changed to {changed:?} with a stream open"
    );
    assert_eq!(backend.server.connection_count(), 1);

    // A bidi stream likewise (opened before the server stream ends).
    let (mut sink, mut echoes) = ch
        .streaming::<Bytes, Bytes, _>(
            PathAndQuery::from_static("/test.Ids/Echo"),
            Request::new(()),
            BytesCodec,
        )
        .await
        .unwrap();
    drop(held);
    sink.send(Bytes::from_static(b"ping")).await.unwrap();
    assert_eq!(echoes.message().await.unwrap().unwrap(), "ping");
    let changed = tokio::time::timeout(4 * timeout, ch.wait_for_state_change(Conn::Ready)).await;
    assert!(
        changed.is_err(),
        "the state changed to {changed:?} with a bidi stream open"
    );
    sink.send(Bytes::from_static(b"still")).await.unwrap();
    assert_eq!(echoes.message().await.unwrap().unwrap(), "still");
    assert_eq!(backend.accepts(), 1, "one connection all along");

    // Once the stream ends the channel goes idle.
    sink.close().unwrap();
    assert!(echoes.message().await.unwrap().is_none());
    drop((sink, echoes));
    wait_for_state(&ch, Conn::Idle, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_channel_goes_idle_and_wakes_too() {
    let a = Backend::tcp("a").await;
    let b = Backend::tcp("b").await;
    let ch = Channel::builder(format!("ipv4:{},{}", a.socket_addr(), b.socket_addr()))
        .default_service_config(ROUND_ROBIN)
        .idle_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    call_until_reaching(&ch, "a", Duration::from_secs(5), false).await;
    call_until_reaching(&ch, "b", Duration::from_secs(5), false).await;
    wait_for_state(&ch, Conn::Idle, Duration::from_secs(2)).await;
    eventually(
        "both servers to see their connection close",
        Duration::from_secs(2),
        || a.server.connection_count() == 0 && b.server.connection_count() == 0,
    )
    .await;
    call_until_reaching(&ch, "a", Duration::from_secs(5), false).await;
    call_until_reaching(&ch, "b", Duration::from_secs(5), false).await;
    assert_eq!(ch.state(), Conn::Ready);
    assert_eq!((a.accepts(), b.accepts()), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_for_a_connection_keeps_the_channel_from_going_idle() {
    // As gRPC-Go, which counts a call as active from its start, not only
    // once it has a stream: a wait-for-ready call queued in
    // TRANSIENT_FAILURE is activity. With a 10 s backoff nothing should
    // then happen while the call waits: one pass over the address, one
    // failure, one request to re-resolve. Each trip through IDLE would
    // start a new pass with a fresh backoff (and ask to re-resolve again).
    let resolver = ManualResolver::new("idlewait");
    resolver.update_state(Resolved::new([closed_port()]));
    let timeout = Duration::from_millis(200);
    let ch = Channel::builder("idlewait:///backends")
        .resolver(resolver.clone())
        .idle_timeout(timeout)
        .connect_backoff(backoff::Config::default().with_base_delay(Duration::from_secs(10)))
        .build()
        .unwrap();
    let states = Arc::new(Mutex::new(vec![ch.state()]));
    let watcher = tokio::spawn({
        let (ch, states) = (ch.clone(), Arc::clone(&states));
        async move {
            let mut state = ch.state();
            loop {
                state = ch.wait_for_state_change(state).await;
                states.lock().unwrap().push(state);
            }
        }
    });
    let req = Request::new(Bytes::new())
        .with_wait_for_ready(true)
        .with_timeout(5 * timeout);
    let err = ch
        .unary::<Bytes, Bytes, _>(who_path(), req, BytesCodec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    watcher.abort();
    let states = states.lock().unwrap().clone();
    let passes = resolver.resolve_now_count();
    assert!(
        passes == 1 && !states[1..].contains(&Conn::Idle),
        "while one call waited for {:?}, the channel failed {passes} passes over its \
         address and went through these states: {states:?}",
        5 * timeout
    );
}

// ---------------------------------------------------------------------------
// 9. The connectivity API.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_moves_a_new_channel_from_idle_to_ready() {
    let backend = Backend::tcp("s").await;
    let ch = Channel::from_target(&backend.socket_addr().to_string()).unwrap();
    assert_eq!(ch.state(), Conn::Idle);
    assert!(!ch.is_connected());
    assert_eq!(backend.accepts(), 0, "a new channel does not connect");
    within("connect", Duration::from_secs(5), ch.connect())
        .await
        .unwrap();
    assert_eq!(ch.state(), Conn::Ready);
    assert!(ch.is_connected());
    eventually("the server to accept", Duration::from_secs(2), || {
        backend.accepts() == 1
    })
    .await;
    // Connecting again is a no-op.
    ch.connect().await.unwrap();
    assert_eq!(who(&ch).await.unwrap(), "s");
    assert_eq!(backend.accepts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_shuts_the_channel_for_every_clone_and_lets_calls_finish() {
    let backend = Backend::tcp("s").await;
    let ch = Channel::from_target(&backend.socket_addr().to_string()).unwrap();
    let clone = ch.clone();
    assert_eq!(who(&ch).await.unwrap(), "s");
    // A stream open when the channel closes finishes on its connection.
    let (mut sink, mut responses) = ch
        .streaming::<Bytes, Bytes, _>(
            PathAndQuery::from_static("/test.Ids/Echo"),
            Request::new(()),
            BytesCodec,
        )
        .await
        .unwrap();
    ch.close();
    wait_for_state(&clone, Conn::Shutdown, Duration::from_secs(5)).await;
    let err = who(&clone).await.unwrap_err();
    assert_eq!(err.code(), Code::Cancelled, "{err}");
    let err = who_wfr(&clone).await.unwrap_err();
    assert_eq!(err.code(), Code::Cancelled, "wait-for-ready too: {err}");
    sink.send(Bytes::from_static(b"after close")).await.unwrap();
    sink.close().unwrap();
    let echoed = within("the echo", Duration::from_secs(5), responses.message())
        .await
        .unwrap();
    assert_eq!(echoed.as_deref(), Some(&b"after close"[..]));
    // Closing again, or a channel never used, is fine.
    ch.close();
    let unused = Channel::from_target(&backend.socket_addr().to_string()).unwrap();
    unused.close();
    assert_eq!(unused.state(), Conn::Shutdown);
    assert_eq!(who(&unused).await.unwrap_err().code(), Code::Cancelled);
    assert_eq!(backend.accepts(), 1, "the unused channel never connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_dead_address_fails_with_the_connection_error() {
    let addr = closed_port();
    let ch = Channel::from_target(&addr.to_string()).unwrap();
    let err = within("connect", Duration::from_secs(5), ch.connect())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains(&addr.to_string()), "{err:?}");
    assert!(
        err.message().to_ascii_lowercase().contains("refused"),
        "the connection error is in the message: {err:?}"
    );
    assert_eq!(ch.state(), Conn::TransientFailure);
}

/// A listener on a fresh port that accepts connections, counts them and
/// closes them at once, without a word of HTTP/2.
async fn rude_listener() -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepts);
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            drop(sock);
        }
    });
    (addr, accepts, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_channel_stops_reconnecting() {
    let (addr, accepts, task) = rude_listener().await;
    let ch = Channel::builder(addr.to_string())
        .default_service_config(ROUND_ROBIN)
        .connect_backoff(
            backoff::Config::default()
                .with_base_delay(Duration::from_millis(20))
                .with_max_delay(Duration::from_millis(20)),
        )
        .build()
        .unwrap();
    // Start connecting; how the first attempt ends does not matter here.
    let _ = tokio::time::timeout(Duration::from_millis(500), ch.connect()).await;
    eventually(
        "reconnection attempts in the background",
        Duration::from_secs(3),
        || accepts.load(Ordering::Relaxed) >= 3,
    )
    .await;
    drop(ch);
    // Let an attempt under way finish, then watch for more.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = accepts.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = accepts.load(Ordering::Relaxed);
    assert_eq!(
        before,
        after,
        "the dropped channel still connects ({} more attempts in 300 ms)",
        after - before
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_before_its_settings_is_a_failed_attempt() {
    // gRPC-Go counts a connection as made only once the server's SETTINGS
    // arrive: a server that accepts and closes at once fails the attempt,
    // and the next attempt waits out the backoff.
    let (addr, accepts, task) = rude_listener().await;
    let ch = Channel::builder(addr.to_string())
        .default_service_config(ROUND_ROBIN)
        .connect_backoff(
            backoff::Config::default()
                .with_base_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_millis(200))
                .with_jitter(0.0),
        )
        .build()
        .unwrap();
    let begun = Instant::now();
    let result = within("connect", Duration::from_secs(5), ch.connect()).await;
    // Attempts start at most every 200 ms: 3 in 500 ms, and a little slack.
    tokio::time::sleep(Duration::from_millis(500).saturating_sub(begun.elapsed())).await;
    let attempts = accepts.load(Ordering::Relaxed);
    assert!(
        result.is_err() && attempts <= 5,
        "connect returned {result:?} (the state is now {}); {attempts} connection attempts \
         in {:?} with a 200 ms backoff",
        ch.state(),
        begun.elapsed()
    );
    let err = result.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    task.abort();
}

// ---------------------------------------------------------------------------
// 10. Resolver errors.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_wait_while_the_resolver_has_said_nothing() {
    // Before the resolver's first report the channel is CONNECTING: even a
    // fail-fast call waits, until its deadline.
    let resolver = ManualResolver::new("silent");
    let ch = manual_channel(&resolver, None, None);
    let req = Request::new(Bytes::new()).with_timeout(Duration::from_millis(200));
    let err = within(
        "a call with a 200 ms timeout",
        Duration::from_secs(3),
        ch.unary::<Bytes, Bytes, _>(who_path(), req, BytesCodec),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert_eq!(ch.state(), Conn::Connecting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_error_fails_calls_until_an_address_arrives() {
    let backend = Backend::tcp("s").await;
    let resolver = ManualResolver::new("resolvererr");
    resolver.report_error("boom");
    let ch = manual_channel(&resolver, None, None);
    let err = within("a fail-fast call", Duration::from_secs(5), who(&ch))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("boom"), "{err:?}");
    assert_eq!(ch.state(), Conn::TransientFailure);
    let err = within("connect", Duration::from_secs(5), ch.connect())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("boom"), "{err:?}");

    // A wait-for-ready call waits for the resolver to recover.
    let waiting = tokio::spawn({
        let ch = ch.clone();
        async move { who_wfr(&ch).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "the wait-for-ready call waits");
    resolver.update_state(addresses(&[&backend]));
    let id = within("the wait-for-ready call", Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, "s");
    assert_eq!(ch.state(), Conn::Ready);
    assert_eq!(who(&ch).await.unwrap(), "s");
}

// ---------------------------------------------------------------------------
// 11. Switching the load-balancing policy.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_switch_from_pick_first_to_round_robin_loses_no_call() {
    let a = Backend::tcp("a").await;
    let b = Backend::tcp("b").await;
    let c = Backend::tcp("c").await;
    let resolver = ManualResolver::new("lbswitch");
    let config = |json: &str| ServiceConfig::parse(json).map_err(|e| e.to_string());
    resolver.update_state(addresses(&[&a, &b, &c]).with_service_config(config(PICK_FIRST)));
    let ch = manual_channel(&resolver, None, None);
    let callers = Callers::start(&ch, 2, false);
    callers.wait_for(0, "a", 20).await;
    assert_eq!(callers.reached_since(0), BTreeSet::from(["a".to_string()]));

    resolver.update_state(addresses(&[&a, &b, &c]).with_service_config(config(ROUND_ROBIN)));
    let from = callers.len();
    callers.wait_for(from, "b", 0).await;
    callers.wait_for(from, "c", 0).await;
    let switched = callers.len();
    eventually("calls after the switch", Duration::from_secs(5), || {
        callers.len() >= switched + 60
    })
    .await;
    let log = callers.finish().await;
    let after = summary(&log[switched..]);
    assert_eq!(after.len(), 3, "spread after the switch: {after:?}");
    let counts = spread(&ch, 30, false).await;
    assert_eq!(
        counts,
        BTreeMap::from([("a".into(), 10), ("b".into(), 10), ("c".into(), 10)])
    );

    // And back to pick_first: everything on one server again.
    let callers = Callers::start(&ch, 2, false);
    eventually(
        "calls before the switch back",
        Duration::from_secs(5),
        || callers.len() >= 20,
    )
    .await;
    resolver.update_state(addresses(&[&a, &b, &c]).with_service_config(config(PICK_FIRST)));
    let from = callers.len();
    // pick_first takes the first address: once it has taken over, a run of
    // calls all on a, and nothing else after.
    let streak = callers.wait_for_streak(from, &["a"], 60).await;
    let log = callers.finish().await;
    assert_eq!(
        summary(&log[streak..]).keys().copied().collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(
        spread(&ch, 30, false).await,
        BTreeMap::from([("a".into(), 30)])
    );
}

// ---------------------------------------------------------------------------
// 12. Bad targets.

#[test]
fn bad_targets_fail_at_channel_creation() {
    for (target, expect) in [
        ("ipv4:300.0.0.1", "300.0.0.1"),
        ("ipv4:127.0.0.1:0", "port"),
        ("unix://host/path", "authority"),
        // No registered scheme `foo`: the whole string is a DNS name, whose
        // port `bar` is not a number.
        ("foo:bar", "bar"),
    ] {
        let err = Channel::from_target(target).map(|_| ()).expect_err(target);
        let text = err.to_string();
        assert!(text.contains(target), "{target:?}: {text}");
        assert!(text.contains(expect), "{target:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_scheme_falls_back_to_dns() {
    // `nosuchscheme.invalid` would be a scheme if one were registered; as
    // none is, the target is the DNS name `nosuchscheme.invalid` port 1234,
    // which the resolver refuses without a query.
    let target = "nosuchscheme.invalid:1234";
    let ch = Channel::from_target(target).expect("an unknown scheme is a DNS name");
    assert_eq!(ch.target(), target);
    let err = within("a call", Duration::from_secs(5), who(&ch))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("nosuchscheme.invalid"), "{err:?}");
}

// ---------------------------------------------------------------------------
// The dns resolver's service config (TXT, gRFC A2) picks the policy.

/// A UDP DNS server on 127.0.0.1 that answers `lb.test` with the A records
/// given and `_grpc_config.lb.test` with the TXT record given (if any); all
/// else is NXDOMAIN.
async fn dns_server(a: Vec<std::net::Ipv4Addr>, txt: Option<&'static str>) -> SocketAddr {
    use hickory_resolver::proto::{
        op::{Message, MessageType, OpCode, ResponseCode},
        rr::{
            rdata::{A, TXT},
            RData, Record, RecordType,
        },
    };
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::new();
            reply
                .set_id(query.id())
                .set_message_type(MessageType::Response)
                .set_op_code(OpCode::Query)
                .set_recursion_available(true);
            for q in query.queries() {
                reply.add_query(q.clone());
                let name = q.name().to_ascii().to_ascii_lowercase();
                let record = |data| Record::from_rdata(q.name().clone(), 1, data);
                match (name.as_str(), q.query_type(), txt) {
                    ("lb.test.", RecordType::A, _) => {
                        for ip in &a {
                            reply.add_answer(record(RData::A(A::from(*ip))));
                        }
                    }
                    ("_grpc_config.lb.test.", RecordType::TXT, Some(text)) => {
                        reply.add_answer(record(RData::TXT(TXT::new(vec![text.into()]))));
                    }
                    ("lb.test.", _, _) => {}
                    _ => {
                        reply.set_response_code(ResponseCode::NXDomain);
                    }
                }
            }
            let _ = socket.send_to(&reply.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_config_in_dns_txt_chooses_round_robin() {
    // Two servers on the same port of two loopback addresses, as one name
    // with two A records resolves.
    let first = Backend::tcp_on("one", "127.0.0.1:0".parse().unwrap()).await;
    let port = first.socket_addr().port();
    let second = Backend::tcp_on("two", SocketAddr::from(([127, 0, 0, 2], port))).await;
    let ips = vec![[127, 0, 0, 1].into(), [127, 0, 0, 2].into()];

    let txt = r#"grpc_config=[{"clientLanguage": ["go"], "serviceConfig": {"loadBalancingPolicy": "pick_first"}}, {"clientLanguage": ["rust"], "serviceConfig": {"loadBalancingConfig": [{"round_robin": {}}]}}]"#;
    let dns = dns_server(ips.clone(), Some(txt)).await;
    let ch = Channel::from_target(&format!("dns://{dns}/lb.test:{port}")).unwrap();
    call_until_reaching(&ch, "two", Duration::from_secs(5), true).await;
    call_until_reaching(&ch, "one", Duration::from_secs(5), true).await;
    let spread = spread(&ch, 40, false).await;
    assert_eq!(
        spread,
        BTreeMap::from([("one".into(), 20), ("two".into(), 20)]),
        "round_robin from the TXT record"
    );

    // Without the TXT record: pick_first, every call on one server.
    let dns = dns_server(ips.clone(), None).await;
    let ch = Channel::from_target(&format!("dns://{dns}/lb.test:{port}")).unwrap();
    assert_eq!(
        spread_one(&ch).await,
        1,
        "pick_first without a service config"
    );

    // With lookups disabled, the TXT record is not used either.
    let dns = dns_server(ips, Some(txt)).await;
    let ch = Channel::builder(format!("dns://{dns}/lb.test:{port}"))
        .disable_service_config()
        .build()
        .unwrap();
    assert_eq!(spread_one(&ch).await, 1, "the TXT record is ignored");
    drop((first, second));
}

/// How many servers 20 calls reached.
async fn spread_one(ch: &Channel) -> usize {
    spread(ch, 20, true).await.len()
}

/// A resolver that cannot be built.
#[derive(Debug)]
struct Unbuildable;

impl ferrogrpc::resolver::Builder for Unbuildable {
    fn scheme(&self) -> &str {
        "unbuildable"
    }

    fn build(
        &self,
        _target: &ferrogrpc::resolver::target::Target,
        _controller: ferrogrpc::resolver::Controller,
        _options: ferrogrpc::resolver::BuildOptions,
    ) -> Result<Box<dyn ferrogrpc::resolver::Resolver>, String> {
        Err("no such zone".into())
    }
}

/// A resolver that fails to build fails calls at once, even calls with
/// no deadline: they do not wait for a first report that never comes.
#[tokio::test]
async fn a_resolver_that_cannot_be_built_fails_calls_at_once() {
    let ch = Channel::builder("unbuildable:///x")
        .resolver(Unbuildable)
        .build()
        .unwrap();
    let call = ch.unary::<Bytes, Bytes, _>(
        PathAndQuery::from_static("/test.Ids/Who"),
        Request::new(Bytes::new()),
        BytesCodec,
    );
    let err = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("failed at once")
        .unwrap_err();
    assert_eq!(err.code(), ferrogrpc::Code::Unavailable);
    assert!(err.message().contains("no such zone"), "{err}");
}
