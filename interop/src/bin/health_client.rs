//! The client side of the gRFC A17 client-side health checking checks on
//! ferrogrpc (`interop/run-health.sh`): one channel over several backends
//! (grpcio's `interop/health/health_server.py`), balanced by `round_robin`
//! with a `healthCheckConfig` for `grpc.testing.TestService`, must send its
//! calls only to the backends whose health service says SERVING.
//!
//! ```text
//! health_client --server_addresses 127.0.0.1:P1,127.0.0.1:P2 --not_serving_servers b
//! ```
//!
//! The channel's target is `ipv4:P1,P2,...` and its default service config
//! (unless `--service_config_json` replaces it):
//!
//! ```json
//! {"loadBalancingConfig": [{"round_robin": {}}],
//!  "healthCheckConfig": {"serviceName": "grpc.testing.TestService"}}
//! ```
//!
//! Each backend names itself in the response header `x-server` of
//! `UnaryCall`; `--not_serving_servers` lists the names started NOT_SERVING.
//! Before the checks the client asks every backend directly (its own
//! channel) for its name and its health, so that a badly started backend is
//! told apart from a client that balances wrongly.
//!
//! Checks, one stdout line each, `PASS name` or `FAIL name: why`, with
//! `INFO ...` lines saying how many calls each backend answered:
//!
//! - `backends_as_expected`: each backend answers directly, with a distinct
//!   `x-server`, and its `Health/Check` of `grpc.testing.TestService` says
//!   NOT_SERVING for the names in `--not_serving_servers` and SERVING for the
//!   others. If this fails nothing else runs.
//! - `not_serving_gets_no_calls`: from the channel's first call on (a warm-up
//!   until every SERVING backend has answered once, then `--num_calls`
//!   calls), no NOT_SERVING backend answers any call.
//! - `serving_backends_answer`: every SERVING backend answers some of the
//!   `--num_calls` calls, and together they answer all of them.
//! - with `--toggle_checks` (default true; the backends must serve
//!   `grpc.testing.XdsUpdateHealthService`, whose `SetServing` /
//!   `SetNotServing` switch their health), and two backends or more:
//!   - `follows_status_change`: the backends started NOT_SERVING are made
//!     SERVING, then the first SERVING one NOT_SERVING; within
//!     `--settle_timeout_seconds` calls move over, and of the next
//!     `--num_calls` calls it answers none and each other backend some.
//!   - `all_not_serving_fails_calls`: every backend NOT_SERVING: within
//!     `--settle_timeout_seconds` calls start failing, with UNAVAILABLE
//!     (no backend is healthy; the calls are not wait-for-ready), and the
//!     next few fail the same way.
//!   - `recovers_when_serving`: the starting statuses back: within
//!     `--settle_timeout_seconds` calls succeed again, and the next
//!     `--num_calls` go as in the first two checks. (This also leaves the
//!     backends as they started.)
//! - `no_failed_calls`: no call failed, except those of
//!   `all_not_serving_fails_calls` and the ones made while the channel
//!   recovered from it.
//!
//! Exit status: 0 if every check passed, 1 if one failed, 2 on bad flags.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddrV4,
    process::ExitCode,
    time::{Duration, Instant},
};

use ferrogrpc::{
    client::Channel,
    health::{
        pb::{health_client::HealthClient, HealthCheckRequest},
        ServingStatus,
    },
    serviceconfig::ServiceConfig,
    Code, Request, Status,
};
use interop::{
    flags::{self, Kind, Spec},
    pb::{
        test_service_client::TestServiceClient,
        xds_update_health_service_client::XdsUpdateHealthServiceClient, Empty, PayloadType,
        SimpleRequest,
    },
};

/// The service whose health the channel watches.
const SERVICE: &str = "grpc.testing.TestService";

/// The default service config: round_robin, watching [`SERVICE`].
const SERVICE_CONFIG: &str = r#"{
  "loadBalancingConfig": [{"round_robin": {}}],
  "healthCheckConfig": {"serviceName": "grpc.testing.TestService"}
}"#;

/// The response header in which a backend names itself.
const SERVER_KEY: &str = "x-server";

/// The name counted for a response without [`SERVER_KEY`].
const NO_NAME: &str = "(no x-server)";

const RESPONSE_SIZE: i32 = 16;

/// The pause between calls while waiting for the channel to settle.
const SETTLE_PAUSE: Duration = Duration::from_millis(5);

/// Calls that must all fail once `all_not_serving_fails_calls` saw the
/// first failure.
const FAILING_CALLS: usize = 3;

const FLAGS: &[Spec] = &[
    Spec {
        name: "server_addresses",
        kind: Kind::Value,
        default: "",
        help: "the backends, IPv4 HOST:PORT,HOST:PORT,... (required)",
    },
    Spec {
        name: "not_serving_servers",
        kind: Kind::Value,
        default: "",
        help: "x-server names of the backends started NOT_SERVING, comma separated",
    },
    Spec {
        name: "num_calls",
        kind: Kind::Value,
        default: "30",
        help: "calls counted in each phase",
    },
    Spec {
        name: "toggle_checks",
        kind: Kind::Bool,
        default: "true",
        help: "also switch the backends' health (grpc.testing.XdsUpdateHealthService)",
    },
    Spec {
        name: "service_config_json",
        kind: Kind::Value,
        default: "round_robin + healthCheckConfig above",
        help: "the channel's default service config, as JSON",
    },
    Spec {
        name: "rpc_timeout_seconds",
        kind: Kind::Value,
        default: "5",
        help: "deadline of every RPC",
    },
    Spec {
        name: "settle_timeout_seconds",
        kind: Kind::Value,
        default: "10",
        help: "how long the channel may take to follow a health change",
    },
];

type CheckResult = Result<(), String>;

fn describe(status: &Status) -> String {
    format!("{} {:?}", status.code().name(), status.message())
}

/// Collapses whitespace so a reason fits on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The name of a health status number.
fn status_name(status: i32) -> String {
    ServingStatus::try_from(status)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| format!("status {status}"))
}

/// One backend, reached on a channel of its own.
struct Backend {
    address: String,
    name: String,
    control: XdsUpdateHealthServiceClient,
}

/// Who answered a series of calls through the balanced channel.
#[derive(Default)]
struct Tally {
    answered: BTreeMap<String, usize>,
    failed: usize,
    first_failure: Option<Status>,
}

impl Tally {
    fn calls(&self) -> usize {
        self.answered.values().sum::<usize>() + self.failed
    }

    fn of(&self, name: &str) -> usize {
        self.answered.get(name).copied().unwrap_or(0)
    }

    fn add(&mut self, outcome: &Result<String, Status>) {
        match outcome {
            Ok(name) => *self.answered.entry(name.clone()).or_default() += 1,
            Err(status) => {
                self.failed += 1;
                self.first_failure.get_or_insert_with(|| status.clone());
            }
        }
    }

    /// The calls answered by names that are not backends.
    fn strangers(&self, backends: &[Backend]) -> Vec<(&str, usize)> {
        self.answered
            .iter()
            .filter(|(name, _)| !backends.iter().any(|b| &b.name == *name))
            .map(|(name, n)| (name.as_str(), *n))
            .collect()
    }
}

/// `N calls: a 15, b 15, c 0; failed 0`, backends in their order.
struct Shown<'a>(&'a Tally, &'a [Backend]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Shown(tally, backends) = self;
        write!(f, "{} calls:", tally.calls())?;
        for (i, b) in backends.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{} {}", b.name, tally.of(&b.name))?;
        }
        for (name, n) in tally.strangers(backends) {
            write!(f, ", {name} {n}")?;
        }
        write!(f, "; failed {}", tally.failed)?;
        if let Some(status) = &tally.first_failure {
            write!(f, " (first: {})", describe(status))?;
        }
        Ok(())
    }
}

/// The outcome of waiting for the channel to follow a health change.
struct Settled {
    tally: Tally,
    /// Whether it got there within the settle timeout.
    done: bool,
}

struct Checks {
    balanced: TestServiceClient,
    backends: Vec<Backend>,
    num_calls: usize,
    rpc_timeout: Duration,
    settle_timeout: Duration,
    /// Failed calls where none should fail, for `no_failed_calls`.
    unexpected_failures: Vec<String>,
}

impl Checks {
    fn simple_request(&self) -> Request<SimpleRequest> {
        Request::new(SimpleRequest {
            response_type: PayloadType::Compressable as i32,
            response_size: RESPONSE_SIZE,
            ..SimpleRequest::default()
        })
        .with_timeout(self.rpc_timeout)
    }

    /// One `UnaryCall` on `stub`: the `x-server` that answered it.
    async fn call_on(&self, stub: &TestServiceClient) -> Result<String, Status> {
        let response = stub.unary_call(self.simple_request()).await?;
        let size = response
            .get_ref()
            .payload
            .as_ref()
            .map_or(0, |p| p.body.len());
        if usize::try_from(RESPONSE_SIZE) != Ok(size) {
            return Err(Status::internal(format!(
                "(client check) response payload is {size} bytes, want {RESPONSE_SIZE}"
            )));
        }
        Ok(response
            .metadata()
            .get(SERVER_KEY)
            .unwrap_or(NO_NAME)
            .to_string())
    }

    /// A call through the balanced channel, counted in `tally`; a failure
    /// is noted for `no_failed_calls` unless `may_fail`.
    async fn call(&mut self, tally: &mut Tally, phase: &str, may_fail: bool) {
        let outcome = self.call_on(&self.balanced).await;
        if let (Err(status), false) = (&outcome, may_fail) {
            self.unexpected_failures
                .push(format!("{phase}: {}", describe(status)));
        }
        tally.add(&outcome);
    }

    /// `--num_calls` calls through the balanced channel.
    async fn count(&mut self, phase: &str) -> Tally {
        let mut tally = Tally::default();
        for _ in 0..self.num_calls {
            self.call(&mut tally, phase, false).await;
        }
        println!("INFO {phase}: {}", Shown(&tally, &self.backends));
        tally
    }

    /// Calls until every backend in `serving` has answered one, and (when
    /// `avoided` is not empty) the last calls, two per backend, went to
    /// none of `avoided`; at most the settle timeout.
    async fn settle(
        &mut self,
        phase: &str,
        serving: &[String],
        avoided: &[String],
        may_fail: bool,
    ) -> Settled {
        let quiet_needed = if avoided.is_empty() {
            0
        } else {
            2 * self.backends.len()
        };
        let deadline = Instant::now() + self.settle_timeout;
        let mut tally = Tally::default();
        let mut quiet = 0;
        let mut done = false;
        while Instant::now() < deadline {
            let before: usize = avoided.iter().map(|n| tally.of(n)).sum();
            self.call(&mut tally, phase, may_fail).await;
            let after: usize = avoided.iter().map(|n| tally.of(n)).sum();
            quiet = if after == before { quiet + 1 } else { 0 };
            if quiet >= quiet_needed && serving.iter().all(|n| tally.of(n) > 0) {
                done = true;
                break;
            }
            tokio::time::sleep(SETTLE_PAUSE).await;
        }
        println!(
            "INFO {phase}: {} {}",
            if done {
                "settled after"
            } else {
                "did not settle in"
            },
            Shown(&tally, &self.backends)
        );
        Settled { tally, done }
    }

    /// Sets the health of the named backends' `grpc.testing.TestService`.
    async fn set_serving(&self, names: &[String], serving: bool) -> CheckResult {
        for b in self.backends.iter().filter(|b| names.contains(&b.name)) {
            let request = Request::new(Empty {}).with_timeout(self.rpc_timeout);
            let (result, what) = if serving {
                (b.control.set_serving(request).await, "SetServing")
            } else {
                (b.control.set_not_serving(request).await, "SetNotServing")
            };
            result.map_err(|s| {
                format!(
                    "XdsUpdateHealthService/{what} on {} ({}): {}",
                    b.name,
                    b.address,
                    describe(&s)
                )
            })?;
        }
        Ok(())
    }

    /// The names of every backend not in `names`.
    fn others(&self, names: &[String]) -> Vec<String> {
        self.backends
            .iter()
            .map(|b| b.name.clone())
            .filter(|n| !names.contains(n))
            .collect()
    }

    /// Every backend in `serving` answered some of `tally`, and together
    /// all of it; none of `avoided` answered.
    fn shared_among(&self, tally: &Tally, serving: &[String], avoided: &[String]) -> CheckResult {
        let shown = Shown(tally, &self.backends);
        let hit: Vec<&String> = avoided.iter().filter(|n| tally.of(n) > 0).collect();
        if !hit.is_empty() {
            return Err(format!("NOT_SERVING {hit:?} answered calls; {shown}"));
        }
        let idle: Vec<&String> = serving.iter().filter(|n| tally.of(n) == 0).collect();
        if !idle.is_empty() {
            return Err(format!("SERVING {idle:?} answered no call; {shown}"));
        }
        let by_serving: usize = serving.iter().map(|n| tally.of(n)).sum();
        if by_serving != tally.calls() {
            return Err(format!(
                "the SERVING backends answered {by_serving} of {} calls; {shown}",
                tally.calls()
            ));
        }
        Ok(())
    }

    fn report(&self, name: &str, result: CheckResult) -> bool {
        match result {
            Ok(()) => {
                println!("PASS {name}");
                true
            }
            Err(why) => {
                println!("FAIL {name}: {}", one_line(&why));
                false
            }
        }
    }

    /// Runs every check after `backends_as_expected`; the number failed.
    async fn run(&mut self, not_serving: &[String], toggle: bool) -> usize {
        let mut failed = 0;
        let serving = self.others(not_serving);

        // From the first call: warm up, then count.
        let warm = self.settle("start", &serving, &[], false).await;
        let counted = self.count("start").await;
        let hit: usize = not_serving
            .iter()
            .map(|n| warm.tally.of(n) + counted.of(n))
            .sum();
        let result = if hit == 0 {
            Ok(())
        } else {
            Err(format!(
                "NOT_SERVING {not_serving:?} answered {hit} calls; warm-up {}; then {}",
                Shown(&warm.tally, &self.backends),
                Shown(&counted, &self.backends)
            ))
        };
        failed += usize::from(!self.report("not_serving_gets_no_calls", result));
        let result = if warm.done {
            self.shared_among(&counted, &serving, &[])
        } else {
            Err(format!(
                "not every SERVING backend answered within {:?}: {}",
                self.settle_timeout,
                Shown(&warm.tally, &self.backends)
            ))
        };
        failed += usize::from(!self.report("serving_backends_answer", result));

        if toggle && self.backends.len() >= 2 {
            let result = self.follows_status_change(&serving, not_serving).await;
            failed += usize::from(!self.report("follows_status_change", result));
            let result = self.all_not_serving_fails_calls().await;
            failed += usize::from(!self.report("all_not_serving_fails_calls", result));
            let result = self.recovers_when_serving(&serving, not_serving).await;
            failed += usize::from(!self.report("recovers_when_serving", result));
        } else if toggle {
            println!("INFO the toggle checks need two backends or more; not run");
        }

        let result = if self.unexpected_failures.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} calls failed; first: {}",
                self.unexpected_failures.len(),
                self.unexpected_failures[0]
            ))
        };
        failed += usize::from(!self.report("no_failed_calls", result));
        failed
    }

    async fn follows_status_change(
        &mut self,
        serving: &[String],
        not_serving: &[String],
    ) -> CheckResult {
        // Bring the others up before taking one down, so that some backend
        // is SERVING all along and no call need fail.
        let down = vec![serving[0].clone()];
        let up = self.others(&down);
        self.set_serving(not_serving, true).await?;
        self.set_serving(&down, false).await?;
        let settled = self.settle("switched", &up, &down, false).await;
        if !settled.done {
            return Err(format!(
                "after {down:?} went NOT_SERVING and {not_serving:?} SERVING, calls did not \
                 move within {:?}: {}",
                self.settle_timeout,
                Shown(&settled.tally, &self.backends)
            ));
        }
        let counted = self.count("switched").await;
        self.shared_among(&counted, &up, &down)
    }

    async fn all_not_serving_fails_calls(&mut self) -> CheckResult {
        let all = self.others(&[]);
        self.set_serving(&all, false).await?;
        let deadline = Instant::now() + self.settle_timeout;
        let mut before = Tally::default();
        let mut first = None;
        while Instant::now() < deadline {
            match self.call_on(&self.balanced).await {
                Ok(name) => before.add(&Ok(name)),
                Err(status) => {
                    first = Some(status);
                    break;
                }
            }
            tokio::time::sleep(SETTLE_PAUSE).await;
        }
        println!(
            "INFO all NOT_SERVING: answered before the first failure: {}",
            Shown(&before, &self.backends)
        );
        let Some(first) = first else {
            return Err(format!(
                "calls still succeeded {:?} after every backend went NOT_SERVING: {}",
                self.settle_timeout,
                Shown(&before, &self.backends)
            ));
        };
        let mut after = Tally::default();
        after.add(&Err(first));
        for _ in 0..FAILING_CALLS {
            let outcome = self.call_on(&self.balanced).await;
            after.add(&outcome);
        }
        println!("INFO all NOT_SERVING: {}", Shown(&after, &self.backends));
        if after.failed != after.calls() {
            return Err(format!(
                "with every backend NOT_SERVING, calls were still answered: {}",
                Shown(&after, &self.backends)
            ));
        }
        match &after.first_failure {
            Some(status) if status.code() == Code::Unavailable => Ok(()),
            Some(status) => Err(format!(
                "calls failed with {}, want UNAVAILABLE",
                describe(status)
            )),
            None => Err("no failure recorded".into()),
        }
    }

    async fn recovers_when_serving(
        &mut self,
        serving: &[String],
        not_serving: &[String],
    ) -> CheckResult {
        self.set_serving(serving, true).await?;
        let settled = self.settle("recovered", serving, not_serving, true).await;
        if !settled.done {
            return Err(format!(
                "after {serving:?} went SERVING again, calls did not reach every one of them \
                 (and only them) within {:?}: {}",
                self.settle_timeout,
                Shown(&settled.tally, &self.backends)
            ));
        }
        let counted = self.count("recovered").await;
        self.shared_among(&counted, serving, not_serving)
    }
}

/// Reaches every backend on a channel of its own: its name, and whether its
/// health is as expected (`backends_as_expected`).
async fn discover(
    addresses: &[SocketAddrV4],
    not_serving: &[String],
    rpc_timeout: Duration,
) -> Result<Vec<Backend>, String> {
    let mut backends: Vec<Backend> = Vec::new();
    let mut problems = Vec::new();
    for address in addresses {
        let channel = Channel::builder(address.to_string())
            .build()
            .map_err(|e| format!("channel to {address}: {e}"))?;
        let stub = TestServiceClient::new(channel.clone());
        let request = Request::new(SimpleRequest {
            response_type: PayloadType::Compressable as i32,
            response_size: RESPONSE_SIZE,
            ..SimpleRequest::default()
        })
        .with_timeout(rpc_timeout)
        .with_wait_for_ready(true);
        let name = match stub.unary_call(request).await {
            Ok(response) => match response.metadata().get(SERVER_KEY) {
                Some(name) => name.to_string(),
                None => {
                    return Err(format!(
                        "{address}: UnaryCall answered without {SERVER_KEY}"
                    ))
                }
            },
            Err(s) => return Err(format!("{address}: UnaryCall: {}", describe(&s))),
        };
        if let Some(other) = backends.iter().find(|b| b.name == name) {
            return Err(format!(
                "{address} and {} both call themselves {name:?}",
                other.address
            ));
        }
        let health = HealthClient::new(channel.clone());
        let request = Request::new(HealthCheckRequest {
            service: SERVICE.to_string(),
        })
        .with_timeout(rpc_timeout);
        let want = if not_serving.contains(&name) {
            ServingStatus::NotServing
        } else {
            ServingStatus::Serving
        };
        match health.check(request).await {
            Ok(response) => {
                let got = response.into_inner().status;
                println!(
                    "INFO backend {name} at {address}: {SERVICE} is {}",
                    status_name(got)
                );
                if got != want as i32 {
                    problems.push(format!(
                        "{name} ({address}) says {SERVICE} is {}, want {}",
                        status_name(got),
                        want.as_str_name()
                    ));
                }
            }
            Err(s) => problems.push(format!(
                "{name} ({address}): Health/Check({SERVICE}): {}",
                describe(&s)
            )),
        }
        backends.push(Backend {
            address: address.to_string(),
            name,
            control: XdsUpdateHealthServiceClient::new(channel),
        });
    }
    for name in not_serving {
        if !backends.iter().any(|b| &b.name == name) {
            problems.push(format!(
                "--not_serving_servers names {name:?}, which is no backend"
            ));
        }
    }
    if backends.len() == not_serving.len() {
        problems
            .push("every backend is meant to be NOT_SERVING; the checks need one SERVING".into());
    }
    if problems.is_empty() {
        Ok(backends)
    } else {
        Err(problems.join("; "))
    }
}

fn main() -> ExitCode {
    let summary = "gRFC A17 client-side health checking on ferrogrpc: calls reach only the \
                   SERVING backends of a round_robin channel";
    let bad = |msg: String| {
        eprintln!("health_client: {msg}");
        eprintln!("health_client: see --help");
        ExitCode::from(2)
    };
    let flags = match flags::parse(std::env::args().skip(1), FLAGS) {
        Ok(f) => f,
        Err(flags::Error::Help) => {
            print!("{}", flags::usage("health_client", summary, FLAGS));
            return ExitCode::SUCCESS;
        }
        Err(flags::Error::Bad(msg)) => return bad(msg),
    };
    let Some(list) = flags.get("server_addresses") else {
        return bad("--server_addresses is required".into());
    };
    let mut addresses = Vec::new();
    for item in list.split(',').map(str::trim) {
        match item.parse::<SocketAddrV4>() {
            Ok(addr) => addresses.push(addr),
            Err(_) => {
                return bad(format!(
                    "--server_addresses: {item:?} is not an IPv4 HOST:PORT"
                ))
            }
        }
    }
    let not_serving: Vec<String> = flags
        .string("not_serving_servers", "")
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    let num_calls = match flags.parse("num_calls", 30usize) {
        Ok(0) => return bad("--num_calls must be at least 1".into()),
        Ok(n) => n,
        Err(e) => return bad(e.to_string()),
    };
    let toggle = flags
        .get("toggle_checks")
        .and_then(flags::parse_bool)
        .unwrap_or(true);
    let seconds = |name: &str, default: f64| -> Result<Duration, String> {
        match flags.parse(name, default).map(Duration::try_from_secs_f64) {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(format!("--{name}: {e}")),
            Err(e) => Err(e.to_string()),
        }
    };
    let rpc_timeout = match seconds("rpc_timeout_seconds", 5.0) {
        Ok(t) => t,
        Err(e) => return bad(e),
    };
    let settle_timeout = match seconds("settle_timeout_seconds", 10.0) {
        Ok(t) => t,
        Err(e) => return bad(e),
    };
    let service_config = flags.string("service_config_json", SERVICE_CONFIG);
    if let Err(e) = ServiceConfig::parse(&service_config) {
        return bad(format!(
            "--service_config_json: invalid service config: {e}"
        ));
    }
    let target = format!(
        "ipv4:{}",
        addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("health_client: cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let failed = runtime.block_on(async {
        let backends = match discover(&addresses, &not_serving, rpc_timeout).await {
            Ok(b) => {
                println!("PASS backends_as_expected");
                b
            }
            Err(why) => {
                println!("FAIL backends_as_expected: {}", one_line(&why));
                return 1;
            }
        };
        // Built only now, so that its first call is the first the backends
        // see from it.
        let balanced = match Channel::builder(target.as_str())
            .default_service_config(&service_config)
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                println!("FAIL not_serving_gets_no_calls: channel to {target}: {e}");
                return 1;
            }
        };
        eprintln!(
            "health_client: channel to {target}, service config {}",
            one_line(&service_config)
        );
        let mut checks = Checks {
            balanced: TestServiceClient::new(balanced),
            backends,
            num_calls,
            rpc_timeout,
            settle_timeout,
            unexpected_failures: Vec::new(),
        };
        checks.run(&not_serving, toggle).await
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
