//! The client side of the fault-injection scenarios: calls
//! `faults.Greeter/SayHello` on one channel, from `--concurrency` workers,
//! until `--calls` calls were made or `--duration-ms` is over, and reports
//! every call and every change of the channel's connectivity state on
//! stdout in the format of `faults::report`, ending with a summary (calls
//! ok, failed per status code, the failures' messages).
//!
//! ```text
//! faults_client --target 127.0.0.1:50051 --calls 500 --concurrency 4 \
//!     --deadline-ms 5000 --retry-max-attempts 5
//! ```
//!
//! The client does not wait for calls still under way when the duration is
//! over (beyond `--drain-ms`): it lists them as `PENDING` and exits. Exit
//! status 0 whatever the calls did, 1 if the client could not run, 2 on bad
//! flags. Run with `--help` for the flags.

use std::{
    collections::BTreeMap,
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use faults::{
    flags::{self, Flag},
    now_ms,
    pb::{greeter_client::GreeterClient, HelloRequest},
    report::{self, Call, Pending, Report, StateChange},
};
use ferrogrpc::{backoff, client::Channel, keepalive::ClientParameters, Request};

const FLAGS: &[Flag] = &[
    Flag {
        name: "target",
        switch: false,
        default: "127.0.0.1:50051",
        help: "the server's address",
    },
    Flag {
        name: "calls",
        switch: false,
        default: "0",
        help: "stop after this many calls (0: no limit; then --duration-ms)",
    },
    Flag {
        name: "duration-ms",
        switch: false,
        default: "0",
        help: "start no call after this long (0: no limit; then --calls)",
    },
    Flag {
        name: "drain-ms",
        switch: false,
        default: "1000",
        help: "after --duration-ms, wait this long for calls under way before listing them as PENDING",
    },
    Flag {
        name: "concurrency",
        switch: false,
        default: "1",
        help: "workers calling at the same time, each one call after the other",
    },
    Flag {
        name: "interval-ms",
        switch: false,
        default: "0",
        help: "a worker's pause between two calls",
    },
    Flag {
        name: "deadline-ms",
        switch: false,
        default: "5000",
        help: "each call's deadline (0: none)",
    },
    Flag {
        name: "wait-for-ready",
        switch: false,
        default: "never",
        help: "which calls are wait-for-ready: never, always, or half (those of the odd-numbered workers)",
    },
    Flag {
        name: "sleep-ms",
        switch: false,
        default: "0",
        help: "how long the server sleeps before answering each call",
    },
    Flag {
        name: "retry-max-attempts",
        switch: false,
        default: "0",
        help: "a retryPolicy with this maxAttempts, UNAVAILABLE retryable (0: no policy)",
    },
    Flag {
        name: "retry-initial-backoff-ms",
        switch: false,
        default: "20",
        help: "the retryPolicy's initialBackoff",
    },
    Flag {
        name: "retry-max-backoff-ms",
        switch: false,
        default: "200",
        help: "the retryPolicy's maxBackoff",
    },
    Flag {
        name: "keepalive-time-ms",
        switch: false,
        default: "0",
        help: "client keepalive: ping after this long without activity (0: off; the library raises values under 10 s to 10 s)",
    },
    Flag {
        name: "keepalive-timeout-ms",
        switch: false,
        default: "20000",
        help: "client keepalive: the connection is dead when a ping is not answered within this",
    },
    Flag {
        name: "keepalive-permit-without-calls",
        switch: true,
        default: "",
        help: "client keepalive: ping also with no call under way",
    },
    Flag {
        name: "backoff-base-ms",
        switch: false,
        default: "0",
        help: "reconnection backoff: the first delay (0: the library default, 1 s)",
    },
    Flag {
        name: "backoff-max-ms",
        switch: false,
        default: "0",
        help: "reconnection backoff: the largest delay (0: the library default, 120 s)",
    },
    Flag {
        name: "connect-timeout-ms",
        switch: false,
        default: "0",
        help: "the least time a connection attempt may take (0: the library default, 20 s)",
    },
    Flag {
        name: "await-ready-ms",
        switch: false,
        default: "0",
        help: "before the first call, wait up to this long for the channel to be READY",
    },
];

/// Which calls are wait-for-ready.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WaitForReady {
    Never,
    Always,
    /// The calls of odd-numbered workers.
    Half,
}

impl WaitForReady {
    fn of(self, worker: u64) -> bool {
        match self {
            WaitForReady::Never => false,
            WaitForReady::Always => true,
            WaitForReady::Half => worker % 2 == 1,
        }
    }
}

/// What the workers share.
struct Run {
    client: GreeterClient,
    next_seq: AtomicU64,
    calls_limit: u64,
    /// When workers start no more calls (set just before the first call).
    stop_at: OnceLock<Instant>,
    interval: Duration,
    deadline: Option<Duration>,
    wfr: WaitForReady,
    sleep_ms: u32,
    /// Calls under way: seq -> (start_ms, wfr).
    under_way: Mutex<BTreeMap<u64, (u64, bool)>>,
    report: Mutex<Report>,
}

fn print(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

impl Run {
    /// The next call's number, or `None` when the worker should stop.
    fn next(&self) -> Option<u64> {
        if self.stop_at.get().is_some_and(|&at| Instant::now() >= at) {
            return None;
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        (self.calls_limit == 0 || seq < self.calls_limit).then_some(seq)
    }

    async fn worker(self: Arc<Run>, worker: u64) {
        let wfr = self.wfr.of(worker);
        while let Some(seq) = self.next() {
            let mut request = Request::new(HelloRequest {
                name: seq.to_string(),
                sleep_ms: self.sleep_ms,
            })
            .with_wait_for_ready(wfr);
            if let Some(deadline) = self.deadline {
                request = request.with_timeout(deadline);
            }
            let start_ms = now_ms();
            let started = Instant::now();
            lock(&self.under_way).insert(seq, (start_ms, wfr));
            let result = self.client.say_hello(request).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            lock(&self.under_way).remove(&seq);
            let call = match result {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    Call {
                        seq,
                        worker,
                        start_ms,
                        elapsed_ms,
                        wfr,
                        code: "OK".into(),
                        server_pid: Some(reply.server_pid),
                        msg: reply.message,
                    }
                }
                Err(status) => Call {
                    seq,
                    worker,
                    start_ms,
                    elapsed_ms,
                    wfr,
                    code: status.code().name().into(),
                    server_pid: None,
                    msg: status.message().into(),
                },
            };
            print(&report::call_line(&call));
            lock(&self.report).calls.push(call);
            if !self.interval.is_zero() {
                tokio::time::sleep(self.interval).await;
            }
        }
    }
}

/// Locks a mutex, also one a panicking worker poisoned.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn millis(flags: &flags::Parsed, name: &str) -> Result<Option<Duration>, String> {
    let ms: u64 = flags.get(name)?;
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
}

/// `0.020s`: a duration in the service config's form.
fn seconds(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

fn channel(flags: &flags::Parsed) -> Result<(Channel, String), String> {
    let target = flags.text("target");
    let mut builder = Channel::builder(target);
    let attempts: u32 = flags.get("retry-max-attempts")?;
    let retry = if attempts > 0 {
        let initial = millis(flags, "retry-initial-backoff-ms")?.unwrap_or_default();
        let max = millis(flags, "retry-max-backoff-ms")?.unwrap_or_default();
        builder = builder.default_service_config(&format!(
            r#"{{"methodConfig": [{{
                "name": [{{"service": "faults.Greeter"}}],
                "retryPolicy": {{
                    "maxAttempts": {attempts},
                    "initialBackoff": "{}",
                    "maxBackoff": "{}",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"]
                }}
            }}]}}"#,
            seconds(initial),
            seconds(max)
        ));
        format!("max_attempts:{attempts}")
    } else {
        "off".to_string()
    };
    if let Some(time) = millis(flags, "keepalive-time-ms")? {
        let timeout = millis(flags, "keepalive-timeout-ms")?
            .ok_or("--keepalive-timeout-ms must not be 0 with keepalive on")?;
        builder = builder.keepalive_params(
            ClientParameters::default()
                .with_time(time)
                .with_timeout(timeout)
                .with_permit_without_calls(flags.on("keepalive-permit-without-calls")),
        );
    }
    let mut backoff = backoff::Config::default();
    if let Some(base) = millis(flags, "backoff-base-ms")? {
        backoff = backoff.with_base_delay(base);
    }
    if let Some(max) = millis(flags, "backoff-max-ms")? {
        backoff = backoff.with_max_delay(max);
    }
    if let Some(timeout) = millis(flags, "connect-timeout-ms")? {
        backoff = backoff.with_min_connect_timeout(timeout);
    }
    builder = builder.connect_backoff(backoff);
    let channel = builder.build().map_err(|e| e.to_string())?;
    Ok((channel, retry))
}

async fn run(flags: flags::Parsed) -> Result<(), String> {
    let calls_limit: u64 = flags.get("calls")?;
    let duration = millis(&flags, "duration-ms")?;
    if calls_limit == 0 && duration.is_none() {
        return Err("give --calls or --duration-ms (or both)".into());
    }
    let wfr = match flags.text("wait-for-ready") {
        "never" => WaitForReady::Never,
        "always" => WaitForReady::Always,
        "half" => WaitForReady::Half,
        other => return Err(format!("--wait-for-ready: cannot use {other:?}")),
    };
    let concurrency: u64 = flags.get("concurrency")?;
    let (channel, retry) = channel(&flags)?;
    let keepalive = channel
        .keepalive_time()
        .map_or_else(|| "off".to_string(), |t| t.as_millis().to_string());
    print(&format!(
        "CONFIG target={} pid={} retry={retry} keepalive_time_ms={keepalive} deadline_ms={} wait_for_ready={}",
        channel.target(),
        std::process::id(),
        flags.text("deadline-ms"),
        flags.text("wait-for-ready"),
    ));

    let run = Arc::new(Run {
        client: GreeterClient::new(channel.clone()),
        next_seq: AtomicU64::new(0),
        calls_limit,
        stop_at: OnceLock::new(),
        interval: millis(&flags, "interval-ms")?.unwrap_or_default(),
        deadline: millis(&flags, "deadline-ms")?,
        wfr,
        sleep_ms: flags.get("sleep-ms")?,
        under_way: Mutex::new(BTreeMap::new()),
        report: Mutex::new(Report::default()),
    });

    // Every connectivity state change, as it happens.
    let watched = channel.clone();
    let states = Arc::clone(&run);
    tokio::spawn(async move {
        let mut state = watched.state();
        loop {
            let change = StateChange {
                at_ms: now_ms(),
                state: state.to_string(),
            };
            print(&report::state_line(&change));
            lock(&states.report).states.push(change);
            state = watched.wait_for_state_change(state).await;
        }
    });

    if let Some(wait) = millis(&flags, "await-ready-ms")? {
        let until = Instant::now() + wait;
        while channel.connect().await.is_err() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The duration counts from the first call.
    if let Some(d) = duration {
        let _ = run.stop_at.set(Instant::now() + d);
    }
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|worker| tokio::spawn(Arc::clone(&run).worker(worker)))
        .collect();
    let all_done = async {
        for worker in workers {
            let _ = worker.await;
        }
    };
    match run.stop_at.get().copied() {
        Some(at) => {
            let drain = millis(&flags, "drain-ms")?.unwrap_or_default();
            let _ = tokio::time::timeout_at((at + drain).into(), all_done).await;
        }
        None => all_done.await,
    }

    let mut report = lock(&run.report).clone();
    for (&seq, &(start_ms, wfr)) in lock(&run.under_way).iter() {
        let pending = Pending { seq, start_ms, wfr };
        print(&report::pending_line(&pending));
        report.pending.push(pending);
    }
    for line in report.summary_lines() {
        print(&line);
    }
    Ok(())
}

fn main() -> ExitCode {
    let flags = match flags::parse(std::env::args().skip(1), FLAGS) {
        Ok(flags) => flags,
        Err(e) if e == "help" => {
            print!("{}", flags::usage("faults_client", FLAGS));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!(
                "faults_client: {e}\n{}",
                flags::usage("faults_client", FLAGS)
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("faults_client: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(flags));
    // Calls still under way are not waited for.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faults_client: {e}");
            ExitCode::FAILURE
        }
    }
}
