//! Soak test: a ferrogrpc server under a mixed client load for a given time,
//! watched for growth of its memory, file descriptors, threads and tasks.
//!
//! ```text
//! soak [--duration 90s] [--interval SECS] [--workers 8] [--channels 4]
//!      [--csv PATH] [--markdown PATH] [--seed N] [--max-unexpected 0]
//! ```
//!
//! The server runs in a child process (this binary re-executed with
//! `--serve`), so that its RSS, fds and threads, read from `/proc/<pid>`, are
//! its own: in one process the client's heap, its sockets (the other end of
//! every connection) and its runtime's threads would be counted too. Its
//! live tokio tasks (`RuntimeMetrics::num_alive_tasks`), connection count and
//! live heap come from a `Stats` RPC on a channel of their own.
//!
//! The load: `--workers` closed-loop tasks on `--channels` long-lived
//! channels, each picking a scenario at random (weights in [`MIX`]): all four
//! RPC kinds ending with OK, with handler errors (and a handler panic),
//! with deadlines that expire in the handler, cancelled mid-way by the client
//! dropping the call (or calling `cancel()`), and with messages over the size
//! limits (requests over the server's receive limit, replies over the
//! server's send limit and over the client's receive limit), which must end
//! with RESOURCE_EXHAUSTED. One more task creates a new channel every
//! 20-80 ms, makes a few calls on it and drops it, closes it first, or
//! drops it with a stream open. The server closes every connection after
//! 20 s (`max_connection_age`), so long-lived channels reconnect too.
//!
//! Every `--interval` the load pauses: new calls wait, calls under way
//! finish (every call has a deadline), the long-lived channels are
//! connected, and the sampler waits until the server settles (no soak handler
//! alive, only the long-lived connections left, two identical readings
//! 100 ms apart) before it records a sample. So tasks, fds and connections
//! are counted at comparable quiet points, not in the middle of calls.
//!
//! The verdict compares the samples after a warm-up (the first 20% of the
//! run): the median of the plateau window (20-40% of the run) against the
//! median of the end window (the last 20%). It fails (exit code 1) when the
//! server's RSS grows by more than both 8 MiB and 20% (allocator noise stays
//! well below; any steady leak passes both over a run), the live heap (server
//! or client) by more than both 2 MiB and 20%, fds, threads or tasks (server
//! or client) by more than a small slack, when handlers or connections are still
//! alive once the load has stopped, when a call ends other than its scenario
//! expects, or when the load stalls (no call completes between two samples,
//! or a pause cannot be had within 15 s).
//!
//! `--debug-leak KIND[:EVERY]` (hidden; for checking the checker) makes the
//! server leak on every EVERY-th handler (default 100): `task` spawns a task
//! that never ends, `mem` keeps 64 KiB, `fd` opens /dev/null and forgets it.
//! A soak with it must fail.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    fmt::Write as _,
    io::{BufRead, BufReader, Write as _},
    process::{Child, ChildStdout, Command, ExitCode, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    keepalive::ServerParameters,
    server::{ResponseSink, Server},
    Code, Request, Response, Status, Streaming,
};
use tokio::{net::TcpListener, sync::RwLock};

mod pb {
    ferrogrpc::include_proto!("soak");
}

use pb::{
    soak_client::SoakClient,
    soak_server::{Soak, SoakServer},
    Reply, ServerStats, StatsRequest, Work,
};

// ---------------------------------------------------------------------------
// Live heap: the allocator counts the bytes in use, a far steadier signal
// than RSS (which also moves with the allocator's caching and fragmentation).

static HEAP: AtomicI64 = AtomicI64::new(0);

struct LiveHeap;

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are ours; the counting touches only an
// atomic and never allocates.
unsafe impl GlobalAlloc for LiveHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            HEAP.fetch_add(layout.size() as i64, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc_zeroed`'s contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            HEAP.fetch_add(layout.size() as i64, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.fetch_sub(layout.size() as i64, Relaxed);
        // SAFETY: `ptr` came from `System` with this layout, as the caller
        // guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP.fetch_add(new_size as i64 - layout.size() as i64, Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: LiveHeap = LiveHeap;

fn heap_bytes() -> u64 {
    HEAP.load(Relaxed).max(0) as u64
}

// ---------------------------------------------------------------------------
// Limits shared by both sides.

/// The server's receive limit: larger requests fail with RESOURCE_EXHAUSTED.
const SERVER_MAX_RECV: usize = 64 << 10;
/// The server's send limit: larger replies fail with RESOURCE_EXHAUSTED.
const SERVER_MAX_SEND: usize = 128 << 10;
/// The client's receive limit (below the server's send limit, so a reply in
/// between is sent and then refused by the client).
const CLIENT_MAX_RECV: usize = 64 << 10;
/// A request over the server's receive limit.
const BIG_REQUEST: usize = 80 << 10;
/// A reply the server sends but the client refuses.
const BIG_FOR_CLIENT: u32 = 80 << 10;
/// A reply over the server's send limit.
const BIG_FOR_SERVER: u32 = 160 << 10;
/// The deadline of calls expected to finish: a hang shows up as an
/// unexpected DEADLINE_EXCEEDED rather than a stuck worker.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// `fail_code` that makes a handler panic.
const PANIC_CODE: u32 = 1000;
/// The server closes connections this old (±10%), after a grace period.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(20);
const MAX_CONNECTION_AGE_GRACE: Duration = Duration::from_secs(5);
/// Worker threads of each side's runtime.
const RUNTIME_THREADS: usize = 2;

static ZEROS: [u8; 256 << 10] = [0; 256 << 10];

fn payload(len: usize) -> Bytes {
    Bytes::from_static(&ZEROS[..len.min(ZEROS.len())])
}

// ---------------------------------------------------------------------------
// The server (child process).

/// What `--debug-leak` leaks.
#[derive(Clone, Copy, Debug)]
enum LeakKind {
    Task,
    Mem,
    Fd,
}

#[derive(Clone, Copy, Debug)]
struct Leak {
    kind: LeakKind,
    every: u64,
}

fn parse_leak(text: &str) -> Result<Leak, String> {
    let (kind, every) = text.split_once(':').unwrap_or((text, "100"));
    let kind = match kind {
        "task" => LeakKind::Task,
        "mem" => LeakKind::Mem,
        "fd" => LeakKind::Fd,
        other => {
            return Err(format!(
                "--debug-leak: unknown kind {other:?} (task|mem|fd)"
            ))
        }
    };
    let every = every
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("--debug-leak: bad count {every:?}"))?;
    Ok(Leak { kind, every })
}

static LEAKED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

impl Leak {
    fn leak(self) {
        match self.kind {
            LeakKind::Task => {
                tokio::spawn(std::future::pending::<()>());
            }
            LeakKind::Mem => LEAKED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(vec![1; 64 << 10]),
            LeakKind::Fd => {
                if let Ok(file) = std::fs::File::open("/dev/null") {
                    std::mem::forget(file);
                }
            }
        }
    }
}

struct SoakService {
    server: Arc<OnceLock<Server>>,
    live: AtomicU64,
    started: AtomicU64,
    leak: Option<Leak>,
}

/// Counts a handler as alive until it is dropped (it ends, or the call is
/// cancelled and its future dropped).
struct Live<'a>(&'a AtomicU64);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl SoakService {
    fn enter(&self) -> Live<'_> {
        self.live.fetch_add(1, Relaxed);
        let n = self.started.fetch_add(1, Relaxed) + 1;
        if let Some(leak) = self.leak {
            if n.is_multiple_of(leak.every) {
                leak.leak();
            }
        }
        Live(&self.live)
    }
}

fn requested(code: u32) -> Status {
    if code == PANIC_CODE {
        panic!("soak: requested panic");
    }
    Status::new(Code::from_i32(code as i32), "soak: requested failure")
}

async fn nap(ms: u32) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
    }
}

fn reply(size: u32, seq: u64) -> Reply {
    Reply {
        payload: payload(size as usize),
        seq,
    }
}

impl Soak for SoakService {
    async fn unary(&self, request: Request<Work>) -> Result<Response<Reply>, Status> {
        let _live = self.enter();
        let work = request.into_inner();
        nap(work.sleep_ms).await;
        if work.fail_code != 0 {
            return Err(requested(work.fail_code));
        }
        Ok(Response::new(reply(work.reply_size, 0)))
    }

    async fn server_stream(
        &self,
        request: Request<Work>,
        mut replies: ResponseSink<Reply>,
    ) -> Result<(), Status> {
        let _live = self.enter();
        let work = request.into_inner();
        let mut sent = 0u32;
        while work.endless || sent < work.replies {
            if work.fail_code != 0 && sent == work.fail_after {
                return Err(requested(work.fail_code));
            }
            nap(work.sleep_ms).await;
            sent += 1;
            let size = if sent == work.big_at {
                work.big_size
            } else {
                work.reply_size
            };
            replies.send(reply(size, u64::from(sent))).await?;
        }
        Ok(())
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<Work>>,
    ) -> Result<Response<Reply>, Status> {
        let _live = self.enter();
        let mut requests = request.into_inner();
        let mut count = 0u64;
        let mut reply_size = 0;
        while let Some(work) = requests.message().await? {
            count += 1;
            reply_size = work.reply_size;
            nap(work.sleep_ms).await;
            if work.fail_code != 0 {
                return Err(requested(work.fail_code));
            }
        }
        Ok(Response::new(reply(reply_size, count)))
    }

    async fn bidi(
        &self,
        request: Request<Streaming<Work>>,
        mut replies: ResponseSink<Reply>,
    ) -> Result<(), Status> {
        let _live = self.enter();
        let mut requests = request.into_inner();
        let mut count = 0u64;
        while let Some(work) = requests.message().await? {
            count += 1;
            nap(work.sleep_ms).await;
            if work.fail_code != 0 {
                return Err(requested(work.fail_code));
            }
            replies.send(reply(work.reply_size, count)).await?;
        }
        Ok(())
    }

    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<ServerStats>, Status> {
        let metrics = tokio::runtime::Handle::current().metrics();
        Ok(Response::new(ServerStats {
            alive_tasks: metrics.num_alive_tasks() as u64,
            connections: self.server.get().map_or(0, |s| s.connection_count() as u64),
            live_handlers: self.live.load(Relaxed),
            handlers_started: self.started.load(Relaxed),
            heap_bytes: heap_bytes(),
        }))
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .enable_all()
        .build()
}

/// The child: serves on a free loopback port, prints it, and exits when its
/// stdin closes (the parent ended, however it ended).
fn serve(leak: Option<Leak>) -> ExitCode {
    // Requested panics are part of the load; any other is printed.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"soak: requested panic") {
            default_hook(info);
        }
    }));
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("soak server: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let slot = Arc::new(OnceLock::new());
        let service = SoakService {
            server: Arc::clone(&slot),
            live: AtomicU64::new(0),
            started: AtomicU64::new(0),
            leak,
        };
        let server = Server::builder()
            .max_decoding_message_size(SERVER_MAX_RECV)
            .max_encoding_message_size(SERVER_MAX_SEND)
            .keepalive_params(
                ServerParameters::default()
                    .with_max_connection_age(MAX_CONNECTION_AGE)
                    .with_max_connection_age_grace(MAX_CONNECTION_AGE_GRACE),
            )
            .add_service(SoakServer::new(service))
            .build();
        let _ = slot.set(server.clone());
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
        let mut out = std::io::stdout();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
        server.serve_listener(listener).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("soak server: {err}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// The load.

/// A small xorshift64* generator: each worker has its own, seeded.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n.max(1))) as u32
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }

    fn ms(&mut self, from: u32, span: u32) -> Duration {
        Duration::from_millis(u64::from(from + self.below(span)))
    }

    /// A small size, now and then a larger one (still under every limit).
    fn size(&mut self) -> u32 {
        if self.below(16) == 0 {
            32 << 10
        } else {
            self.below(2048)
        }
    }

    fn error_code(&mut self) -> u32 {
        const CODES: [Code; 8] = [
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::FailedPrecondition,
            Code::OutOfRange,
            Code::Internal,
            Code::DataLoss,
        ];
        CODES[self.below(CODES.len() as u32) as usize].as_i32() as u32
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Unary,
    ServerStream,
    ClientStream,
    Bidi,
}

const KINDS: [(Kind, &str); 4] = [
    (Kind::Unary, "unary"),
    (Kind::ServerStream, "server-stream"),
    (Kind::ClientStream, "client-stream"),
    (Kind::Bidi, "bidi"),
];

/// How a call ended, as its scenario expects (or not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Ok,
    /// A status the handler returned (or UNKNOWN for its panic).
    Error,
    Deadline,
    Exhausted,
    /// The client dropped or cancelled the call mid-way.
    Cancelled,
    Unexpected,
}

const CLASSES: [&str; 6] = [
    "ok",
    "error",
    "deadline",
    "exhausted",
    "cancelled",
    "unexpected",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    UnaryOk,
    UnaryError,
    UnaryPanic,
    UnaryDeadline,
    UnaryCancel,
    UnaryBigRequest,
    UnaryBigForClient,
    UnaryBigForServer,
    ServerOk,
    ServerCancel,
    ServerError,
    ServerDeadline,
    ServerBigMidStream,
    ClientOk,
    ClientCancel,
    ClientError,
    ClientDeadline,
    ClientBigMidStream,
    BidiOk,
    BidiCancel,
    BidiError,
    BidiDeadline,
    BidiBig,
    // Run by the channel churner only.
    ChurnDropChannelMidBidi,
    ChurnCloseChannelMidStream,
}

/// The scenarios the workers pick from, with their weights.
const MIX: [(Scenario, u32); 23] = [
    (Scenario::UnaryOk, 20),
    (Scenario::UnaryError, 4),
    (Scenario::UnaryPanic, 1),
    (Scenario::UnaryDeadline, 3),
    (Scenario::UnaryCancel, 3),
    (Scenario::UnaryBigRequest, 2),
    (Scenario::UnaryBigForClient, 2),
    (Scenario::UnaryBigForServer, 1),
    (Scenario::ServerOk, 12),
    (Scenario::ServerCancel, 4),
    (Scenario::ServerError, 3),
    (Scenario::ServerDeadline, 3),
    (Scenario::ServerBigMidStream, 2),
    (Scenario::ClientOk, 10),
    (Scenario::ClientCancel, 4),
    (Scenario::ClientError, 2),
    (Scenario::ClientDeadline, 2),
    (Scenario::ClientBigMidStream, 2),
    (Scenario::BidiOk, 10),
    (Scenario::BidiCancel, 4),
    (Scenario::BidiError, 2),
    (Scenario::BidiDeadline, 2),
    (Scenario::BidiBig, 2),
];

const SCENARIO_COUNT: usize = MIX.len() + 2;

impl Scenario {
    fn pick(rng: &mut Rng) -> Scenario {
        let total: u32 = MIX.iter().map(|(_, w)| w).sum();
        let mut r = rng.below(total);
        for (scenario, weight) in MIX {
            if r < weight {
                return scenario;
            }
            r -= weight;
        }
        Scenario::UnaryOk
    }

    fn index(self) -> usize {
        self as usize
    }

    fn kind(self) -> Kind {
        use Scenario::*;
        match self {
            UnaryOk | UnaryError | UnaryPanic | UnaryDeadline | UnaryCancel | UnaryBigRequest
            | UnaryBigForClient | UnaryBigForServer => Kind::Unary,
            ServerOk
            | ServerCancel
            | ServerError
            | ServerDeadline
            | ServerBigMidStream
            | ChurnCloseChannelMidStream => Kind::ServerStream,
            ClientOk | ClientCancel | ClientError | ClientDeadline | ClientBigMidStream => {
                Kind::ClientStream
            }
            BidiOk | BidiCancel | BidiError | BidiDeadline | BidiBig | ChurnDropChannelMidBidi => {
                Kind::Bidi
            }
        }
    }

    fn all() -> [Scenario; SCENARIO_COUNT] {
        let mut all = [Scenario::UnaryOk; SCENARIO_COUNT];
        for (slot, (scenario, _)) in all.iter_mut().zip(MIX) {
            *slot = scenario;
        }
        all[MIX.len()] = Scenario::ChurnDropChannelMidBidi;
        all[MIX.len() + 1] = Scenario::ChurnCloseChannelMidStream;
        all
    }
}

type Outcome = Result<Class, String>;

fn timed<T>(message: T, timeout: Duration) -> Request<T> {
    Request::new(message).with_timeout(timeout)
}

fn unexpected(status: Status) -> String {
    format!("{}: {}", status.code(), status.message())
}

/// The call's status must be `want`; it then counts as `class`.
fn must_be(status: Status, want: Code, class: Class) -> Outcome {
    if status.code() == want {
        Ok(class)
    } else {
        Err(format!("expected {want}, got {}", unexpected(status)))
    }
}

fn must_fail<T>(result: Result<T, Status>, want: Code, class: Class) -> Outcome {
    match result {
        Ok(_) => Err(format!("expected {want}, got OK")),
        Err(status) => must_be(status, want, class),
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

fn work(reply_size: u32) -> Work {
    Work {
        reply_size,
        ..Work::default()
    }
}

/// Reads a response stream to its end: the replies, then the status.
async fn drain(stream: &mut Streaming<Reply>) -> (u64, Result<(), Status>) {
    let mut got = 0;
    loop {
        match stream.message().await {
            Ok(Some(_)) => got += 1,
            Ok(None) => return (got, Ok(())),
            Err(status) => return (got, Err(status)),
        }
    }
}

/// The status of a call whose send failed: the response side has it.
async fn status_after(stream: &mut Streaming<Reply>, sent: Status) -> Status {
    match drain(stream).await {
        (_, Err(status)) => status,
        (_, Ok(())) => sent,
    }
}

/// Runs one call of `scenario`: how it ended, if as expected, or what went
/// wrong.
async fn run(scenario: Scenario, client: &SoakClient, rng: &mut Rng) -> Outcome {
    match scenario.kind() {
        Kind::Unary => unary(scenario, client, rng).await,
        Kind::ServerStream => server_stream(scenario, client, rng).await,
        Kind::ClientStream => client_stream(scenario, client, rng).await,
        Kind::Bidi => bidi(scenario, client, rng).await,
    }
}

/// The unary scenarios.
async fn unary(scenario: Scenario, client: &SoakClient, rng: &mut Rng) -> Outcome {
    use Scenario::*;
    match scenario {
        UnaryOk => {
            let size = rng.size();
            let request = Work {
                payload: payload(rng.size() as usize),
                ..work(size)
            };
            let reply = client
                .unary(timed(request, CALL_TIMEOUT))
                .await
                .map_err(unexpected)?;
            let got = reply.into_inner().payload.len();
            check(got == size as usize, || {
                format!("reply of {got} bytes, not {size}")
            })?;
            Ok(Class::Ok)
        }
        UnaryError | UnaryPanic => {
            let (code, want) = match scenario {
                UnaryPanic => (PANIC_CODE, Code::Unknown),
                _ => {
                    let code = rng.error_code();
                    (code, Code::from_i32(code as i32))
                }
            };
            let request = Work {
                fail_code: code,
                ..work(16)
            };
            let result = client.unary(timed(request, CALL_TIMEOUT)).await;
            must_fail(result, want, Class::Error)
        }
        UnaryDeadline => {
            let request = Work {
                sleep_ms: 200,
                ..work(16)
            };
            let result = client.unary(timed(request, rng.ms(20, 30))).await;
            must_fail(result, Code::DeadlineExceeded, Class::Deadline)
        }
        UnaryCancel => {
            let request = Work {
                sleep_ms: 500,
                ..work(16)
            };
            let call = client.unary(timed(request, CALL_TIMEOUT));
            match tokio::time::timeout(rng.ms(5, 30), call).await {
                Err(_) => Ok(Class::Cancelled),
                Ok(result) => Err(format!(
                    "ended before it was dropped: {:?}",
                    result.map(|_| ()).map_err(unexpected)
                )),
            }
        }
        UnaryBigRequest => {
            let request = Work {
                payload: payload(BIG_REQUEST),
                ..work(16)
            };
            let result = client.unary(timed(request, CALL_TIMEOUT)).await;
            must_fail(result, Code::ResourceExhausted, Class::Exhausted)
        }
        UnaryBigForClient | UnaryBigForServer => {
            let size = match scenario {
                UnaryBigForClient => BIG_FOR_CLIENT,
                _ => BIG_FOR_SERVER,
            };
            let result = client.unary(timed(work(size), CALL_TIMEOUT)).await;
            must_fail(result, Code::ResourceExhausted, Class::Exhausted)
        }
        _ => unreachable!("not a unary scenario: {scenario:?}"),
    }
}

/// The server-streaming scenarios.
async fn server_stream(scenario: Scenario, client: &SoakClient, rng: &mut Rng) -> Outcome {
    use Scenario::*;
    match scenario {
        ServerOk => {
            let (n, size) = (1 + rng.below(16), rng.below(4096));
            let request = Work {
                replies: n,
                ..work(size)
            };
            let mut stream = client
                .server_stream(timed(request, CALL_TIMEOUT))
                .await
                .map_err(unexpected)?
                .into_inner();
            let mut got = 0u64;
            while let Some(reply) = stream.message().await.map_err(unexpected)? {
                got += 1;
                check(
                    reply.seq == got && reply.payload.len() == size as usize,
                    || {
                        format!(
                            "reply {got}: seq {}, {} bytes",
                            reply.seq,
                            reply.payload.len()
                        )
                    },
                )?;
            }
            check(got == u64::from(n), || format!("{got} replies, not {n}"))?;
            Ok(Class::Ok)
        }
        ServerCancel => {
            let request = Work {
                endless: true,
                sleep_ms: 1,
                ..work(rng.below(1024))
            };
            let mut stream = client
                .server_stream(timed(request, CALL_TIMEOUT))
                .await
                .map_err(unexpected)?
                .into_inner();
            for _ in 0..1 + rng.below(5) {
                stream
                    .message()
                    .await
                    .map_err(unexpected)?
                    .ok_or("the endless stream ended")?;
            }
            drop(stream);
            Ok(Class::Cancelled)
        }
        ServerError => {
            let (after, code) = (rng.below(6), rng.error_code());
            let request = Work {
                replies: 10,
                fail_after: after,
                fail_code: code,
                ..work(64)
            };
            let want = Code::from_i32(code as i32);
            let mut stream = match client.server_stream(timed(request, CALL_TIMEOUT)).await {
                Ok(response) => response.into_inner(),
                // Failing before any reply is a trailers-only response: the
                // call fails at once.
                Err(status) if after == 0 => return must_be(status, want, Class::Error),
                Err(status) => return Err(unexpected(status)),
            };
            let (got, end) = drain(&mut stream).await;
            check(got == u64::from(after), || {
                format!("{got} replies before the error, not {after}")
            })?;
            must_fail(end, want, Class::Error)
        }
        ServerDeadline => {
            let request = Work {
                endless: true,
                sleep_ms: 5,
                ..work(64)
            };
            match client.server_stream(timed(request, rng.ms(30, 30))).await {
                // The deadline may pass before the headers arrive.
                Err(status) => must_be(status, Code::DeadlineExceeded, Class::Deadline),
                Ok(response) => {
                    let (_, end) = drain(&mut response.into_inner()).await;
                    must_fail(end, Code::DeadlineExceeded, Class::Deadline)
                }
            }
        }
        ServerBigMidStream => {
            let big = if rng.coin() {
                BIG_FOR_CLIENT
            } else {
                BIG_FOR_SERVER
            };
            let request = Work {
                replies: 5,
                big_at: 3,
                big_size: big,
                ..work(64)
            };
            let mut stream = client
                .server_stream(timed(request, CALL_TIMEOUT))
                .await
                .map_err(unexpected)?
                .into_inner();
            let (got, end) = drain(&mut stream).await;
            check(got == 2, || {
                format!("{got} replies before the big one, not 2")
            })?;
            must_fail(end, Code::ResourceExhausted, Class::Exhausted)
        }
        _ => unreachable!("not a server_stream scenario: {scenario:?}"),
    }
}

/// The client-streaming scenarios.
async fn client_stream(scenario: Scenario, client: &SoakClient, rng: &mut Rng) -> Outcome {
    use Scenario::*;
    match scenario {
        ClientOk => {
            let (n, size) = (1 + rng.below(16), rng.below(4096));
            let mut call = client
                .client_stream(timed((), CALL_TIMEOUT))
                .await
                .map_err(unexpected)?;
            for _ in 0..n {
                let request = Work {
                    payload: payload(rng.below(4096) as usize),
                    ..work(size)
                };
                call.send(request).await.map_err(unexpected)?;
            }
            let reply = call
                .close_and_recv()
                .await
                .map_err(unexpected)?
                .into_inner();
            check(
                reply.seq == u64::from(n) && reply.payload.len() == size as usize,
                || {
                    format!(
                        "reply: seq {} (sent {n}), {} bytes",
                        reply.seq,
                        reply.payload.len()
                    )
                },
            )?;
            Ok(Class::Ok)
        }
        ClientCancel => {
            let mut call = client
                .client_stream(timed((), CALL_TIMEOUT))
                .await
                .map_err(unexpected)?;
            for _ in 0..1 + rng.below(4) {
                call.send(work(16)).await.map_err(unexpected)?;
            }
            if rng.coin() {
                call.cancel();
            }
            drop(call);
            Ok(Class::Cancelled)
        }
        ClientError | ClientDeadline | ClientBigMidStream => {
            let (timeout, want, class) = match scenario {
                ClientError => (CALL_TIMEOUT, rng.error_code(), Class::Error),
                ClientDeadline => (rng.ms(20, 30), 0, Class::Deadline),
                _ => (CALL_TIMEOUT, 0, Class::Exhausted),
            };
            let mut call = match client.client_stream(timed((), timeout)).await {
                Ok(call) => call,
                // The deadline may pass before the call is under way.
                Err(status) if scenario == ClientDeadline => {
                    return must_be(status, Code::DeadlineExceeded, class)
                }
                Err(status) => return Err(unexpected(status)),
            };
            let before = rng.below(4);
            let odd_one = match scenario {
                ClientError => Work {
                    fail_code: want,
                    ..work(16)
                },
                ClientDeadline => Work {
                    sleep_ms: 200,
                    ..work(16)
                },
                _ => Work {
                    payload: payload(BIG_REQUEST),
                    ..work(16)
                },
            };
            let messages = (0..before)
                .map(|_| work(16))
                .chain([odd_one])
                .chain((0..rng.below(4)).map(|_| work(16)));
            // After the call ends on the server, a send fails; the status
            // comes from `close_and_recv`.
            for message in messages {
                if call.send(message).await.is_err() {
                    break;
                }
            }
            let want = match scenario {
                ClientError => Code::from_i32(want as i32),
                ClientDeadline => Code::DeadlineExceeded,
                _ => Code::ResourceExhausted,
            };
            must_fail(call.close_and_recv().await, want, class)
        }
        _ => unreachable!("not a client_stream scenario: {scenario:?}"),
    }
}

/// The bidi-streaming scenarios.
async fn bidi(scenario: Scenario, client: &SoakClient, rng: &mut Rng) -> Outcome {
    use Scenario::*;
    match scenario {
        BidiOk => {
            let n = 1 + rng.below(16);
            let (mut sink, mut stream) = client
                .bidi(timed((), CALL_TIMEOUT))
                .await
                .map_err(unexpected)?;
            for i in 1..=u64::from(n) {
                let size = rng.size();
                let request = Work {
                    payload: payload(rng.below(2048) as usize),
                    ..work(size)
                };
                sink.send(request).await.map_err(unexpected)?;
                let reply = stream
                    .message()
                    .await
                    .map_err(unexpected)?
                    .ok_or_else(|| format!("the stream ended after {} replies", i - 1))?;
                check(
                    reply.seq == i && reply.payload.len() == size as usize,
                    || {
                        format!(
                            "reply {i}: seq {}, {} bytes",
                            reply.seq,
                            reply.payload.len()
                        )
                    },
                )?;
            }
            sink.close().map_err(unexpected)?;
            let (more, end) = drain(&mut stream).await;
            check(more == 0, || {
                format!("{more} replies after the last request")
            })?;
            end.map_err(unexpected)?;
            Ok(Class::Ok)
        }
        BidiCancel => {
            let (mut sink, mut stream) = client
                .bidi(timed((), CALL_TIMEOUT))
                .await
                .map_err(unexpected)?;
            for _ in 0..1 + rng.below(4) {
                sink.send(work(64)).await.map_err(unexpected)?;
                stream
                    .message()
                    .await
                    .map_err(unexpected)?
                    .ok_or("the stream ended early")?;
            }
            if rng.coin() {
                // Cancelled: the response stream must end with CANCELLED.
                sink.cancel();
                let (_, end) = drain(&mut stream).await;
                must_fail(end, Code::Cancelled, Class::Cancelled)
            } else {
                drop((sink, stream));
                Ok(Class::Cancelled)
            }
        }
        BidiError | BidiDeadline | BidiBig => {
            let (timeout, code, class) = match scenario {
                BidiError => (CALL_TIMEOUT, rng.error_code(), Class::Error),
                BidiDeadline => (rng.ms(40, 30), 0, Class::Deadline),
                _ => (CALL_TIMEOUT, 0, Class::Exhausted),
            };
            let want = match scenario {
                BidiError => Code::from_i32(code as i32),
                BidiDeadline => Code::DeadlineExceeded,
                _ => Code::ResourceExhausted,
            };
            let (mut sink, mut stream) = match client.bidi(timed((), timeout)).await {
                Ok(call) => call,
                // The deadline may pass before the call is under way.
                Err(status) if scenario == BidiDeadline => return must_be(status, want, class),
                Err(status) => return Err(unexpected(status)),
            };
            let before = match scenario {
                BidiDeadline => 20,
                _ => rng.below(4),
            };
            for i in 0..before {
                let request = Work {
                    sleep_ms: if scenario == BidiDeadline { 15 } else { 0 },
                    ..work(64)
                };
                if let Err(sent) = sink.send(request).await {
                    return must_be(status_after(&mut stream, sent).await, want, class);
                }
                match stream.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(format!("the stream ended after {i} replies")),
                    Err(status) => return must_be(status, want, class),
                }
            }
            if scenario == BidiDeadline {
                return Err(format!("{before} ping-pongs of 15 ms within {timeout:?}"));
            }
            let odd_one = match scenario {
                BidiError => Work {
                    fail_code: code,
                    ..work(16)
                },
                _ if rng.coin() => Work {
                    payload: payload(BIG_REQUEST),
                    ..work(16)
                },
                _ => work(BIG_FOR_CLIENT),
            };
            let status = match sink.send(odd_one).await {
                Err(sent) => status_after(&mut stream, sent).await,
                Ok(()) => match drain(&mut stream).await {
                    (_, Err(status)) => status,
                    (more, Ok(())) => return Err(format!("OK after {more} more replies")),
                },
            };
            must_be(status, want, class)
        }
        _ => unreachable!("not a bidi scenario: {scenario:?}"),
    }
}

/// Calls done, by kind and class, and by scenario.
struct Tally {
    by_kind: [[AtomicU64; 6]; 4],
    by_scenario: [(AtomicU64, AtomicU64); SCENARIO_COUNT],
    examples: Mutex<Vec<String>>,
    channels: AtomicU64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            by_kind: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            by_scenario: std::array::from_fn(|_| (AtomicU64::new(0), AtomicU64::new(0))),
            examples: Mutex::new(Vec::new()),
            channels: AtomicU64::new(0),
        }
    }

    fn record(&self, scenario: Scenario, outcome: Outcome) {
        let kind = scenario.kind() as usize;
        let (runs, bad) = &self.by_scenario[scenario.index()];
        runs.fetch_add(1, Relaxed);
        match outcome {
            Ok(class) => {
                self.by_kind[kind][class as usize].fetch_add(1, Relaxed);
            }
            Err(what) => {
                self.by_kind[kind][Class::Unexpected as usize].fetch_add(1, Relaxed);
                bad.fetch_add(1, Relaxed);
                let mut examples = self.examples.lock().unwrap_or_else(|e| e.into_inner());
                if examples.len() < 20 {
                    examples.push(format!("{scenario:?}: {what}"));
                }
            }
        }
    }

    fn snapshot(&self) -> [[u64; 6]; 4] {
        std::array::from_fn(|k| std::array::from_fn(|c| self.by_kind[k][c].load(Relaxed)))
    }
}

fn total(counts: &[[u64; 6]; 4]) -> u64 {
    counts.iter().flatten().sum()
}

fn unexpected_total(counts: &[[u64; 6]; 4]) -> u64 {
    counts.iter().map(|k| k[Class::Unexpected as usize]).sum()
}

fn channel(addr: &str) -> Result<Channel, String> {
    Channel::builder(addr)
        .max_decoding_message_size(CLIENT_MAX_RECV)
        .build()
        .map_err(|e| e.to_string())
}

struct Load {
    gate: RwLock<()>,
    stop: AtomicBool,
    tally: Tally,
}

async fn worker(load: Arc<Load>, client: SoakClient, mut rng: Rng) {
    loop {
        let _running = load.gate.read().await;
        if load.stop.load(Relaxed) {
            return;
        }
        let scenario = Scenario::pick(&mut rng);
        let outcome = run(scenario, &client, &mut rng).await;
        load.tally.record(scenario, outcome);
    }
}

/// New channels all the time: a few calls on each, then it is dropped,
/// closed first, or dropped with a call open.
async fn churner(load: Arc<Load>, addr: String, mut rng: Rng) {
    loop {
        tokio::time::sleep(rng.ms(20, 60)).await;
        let _running = load.gate.read().await;
        if load.stop.load(Relaxed) {
            return;
        }
        let channel = match channel(&addr) {
            Ok(channel) => channel,
            Err(err) => {
                load.tally.record(
                    Scenario::UnaryOk,
                    Err(format!("cannot build a channel: {err}")),
                );
                continue;
            }
        };
        load.tally.channels.fetch_add(1, Relaxed);
        let client = SoakClient::new(channel.clone());
        for _ in 0..1 + rng.below(3) {
            let scenario = Scenario::pick(&mut rng);
            let outcome = run(scenario, &client, &mut rng).await;
            load.tally.record(scenario, outcome);
        }
        let ending = match rng.below(4) {
            0 => {
                drop((client, channel));
                None
            }
            1 => {
                channel.close();
                None
            }
            2 => Some((
                Scenario::ChurnDropChannelMidBidi,
                drop_channel_mid_bidi(channel, client).await,
            )),
            _ => Some((
                Scenario::ChurnCloseChannelMidStream,
                close_channel_mid_stream(&channel, &client).await,
            )),
        };
        if let Some((scenario, outcome)) = ending {
            load.tally.record(scenario, outcome);
        }
    }
}

/// Opens a bidi call, drops every clone of the channel with the call open,
/// then drops the call.
async fn drop_channel_mid_bidi(channel: Channel, client: SoakClient) -> Outcome {
    let (mut sink, mut stream) = client
        .bidi(timed((), CALL_TIMEOUT))
        .await
        .map_err(unexpected)?;
    sink.send(work(64)).await.map_err(unexpected)?;
    stream
        .message()
        .await
        .map_err(unexpected)?
        .ok_or("the stream ended early")?;
    drop((channel, client));
    tokio::time::sleep(Duration::from_millis(2)).await;
    drop((sink, stream));
    Ok(Class::Cancelled)
}

/// Closes the channel with a server stream open: the call goes on to its
/// end on its connection (as `Channel::close` says); new calls fail with
/// CANCELLED.
async fn close_channel_mid_stream(channel: &Channel, client: &SoakClient) -> Outcome {
    let request = Work {
        replies: 4,
        sleep_ms: 2,
        ..work(64)
    };
    let mut stream = client
        .server_stream(timed(request, CALL_TIMEOUT))
        .await
        .map_err(unexpected)?
        .into_inner();
    stream
        .message()
        .await
        .map_err(unexpected)?
        .ok_or("the stream ended early")?;
    channel.close();
    let (more, end) = drain(&mut stream).await;
    end.map_err(|s| format!("after close: {}", unexpected(s)))?;
    check(more == 3, || format!("{more} replies after close, not 3"))?;
    let after = client.unary(timed(work(1), CALL_TIMEOUT)).await;
    must_fail(after, Code::Cancelled, Class::Cancelled)
}

// ---------------------------------------------------------------------------
// Sampling.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Proc {
    rss_kb: u64,
    threads: u64,
    fds: u64,
}

fn read_proc(pid: u32) -> std::io::Result<Proc> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    Ok(Proc {
        rss_kb: field("VmRSS:"),
        threads: field("Threads:"),
        fds,
    })
}

#[derive(Clone, Debug)]
struct Sample {
    t: f64,
    server: Proc,
    stats: ServerStats,
    client: Proc,
    client_tasks: u64,
    client_heap: u64,
    settle_ms: u64,
    settled: bool,
    /// The pause could not be had: calls were still running.
    stuck: bool,
    calls: [[u64; 6]; 4],
    channels: u64,
}

impl Sample {
    /// What must stay the same between two readings for the server to
    /// count as settled.
    fn key(&self) -> [u64; 7] {
        [
            self.server.fds,
            self.server.threads,
            self.stats.alive_tasks,
            self.stats.connections,
            self.stats.live_handlers,
            self.client.fds,
            self.client_tasks,
        ]
    }
}

struct Sampler {
    load: Arc<Load>,
    channels: Vec<Channel>,
    stats: SoakClient,
    pid: u32,
    start: Instant,
}

impl Sampler {
    async fn read(&self) -> Result<Sample, String> {
        let stats = self
            .stats
            .stats(timed(StatsRequest {}, Duration::from_secs(5)))
            .await
            .map_err(|s| format!("the Stats call failed: {}", unexpected(s)))?
            .into_inner();
        let server =
            read_proc(self.pid).map_err(|e| format!("cannot read /proc/{}: {e}", self.pid))?;
        let client =
            read_proc(std::process::id()).map_err(|e| format!("cannot read /proc/self: {e}"))?;
        Ok(Sample {
            t: self.start.elapsed().as_secs_f64(),
            server,
            stats,
            client,
            client_tasks: tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks() as u64,
            client_heap: heap_bytes(),
            settle_ms: 0,
            settled: false,
            stuck: false,
            calls: self.load.tally.snapshot(),
            channels: self.load.tally.channels.load(Relaxed),
        })
    }

    /// Pauses the load, waits for the server to settle, samples.
    async fn quiet_sample(&self, settle_limit: Duration) -> Result<Sample, String> {
        let paused = tokio::time::timeout(Duration::from_secs(15), self.load.gate.write()).await;
        let stuck = paused.is_err();
        let since = Instant::now();
        let expected = self.channels.len() as u64;
        let mut last: Option<Sample> = None;
        loop {
            // Every long-lived channel connected: one the server's
            // max_connection_age closed goes IDLE until asked again.
            for channel in &self.channels {
                let _ = tokio::time::timeout(Duration::from_secs(2), channel.connect()).await;
            }
            let mut sample = self.read().await?;
            let stable = last.as_ref().is_some_and(|l| l.key() == sample.key());
            sample.settled =
                stable && sample.stats.live_handlers == 0 && sample.stats.connections == expected;
            sample.settle_ms = since.elapsed().as_millis() as u64;
            sample.stuck = stuck;
            if sample.settled || since.elapsed() >= settle_limit {
                drop(paused);
                return Ok(sample);
            }
            last = Some(sample);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// Output.

const MIB: f64 = 1024.0 * 1024.0;

fn print_header() {
    println!(
        "{:>6} {:>8} {:>8} {:>5} {:>4} {:>6} {:>5} {:>5} {:>7} {:>8} {:>9} {:>6} | {:>6} {:>6} {:>6}",
        "t(s)",
        "rss(MB)",
        "heap(MB)",
        "fds",
        "thr",
        "tasks",
        "conns",
        "live",
        "settle",
        "calls/s",
        "calls",
        "unexp",
        "c.fds",
        "c.task",
        "chans",
    );
}

fn print_row(sample: &Sample, previous: Option<&Sample>) {
    let calls = total(&sample.calls);
    let rate = previous.map_or(0.0, |p| {
        (calls - total(&p.calls)) as f64 / (sample.t - p.t).max(1e-3)
    });
    let flag = match (sample.settled, sample.stuck) {
        (_, true) => " STUCK",
        (false, _) => " unsettled",
        _ => "",
    };
    println!(
        "{:>6.1} {:>8.1} {:>8.2} {:>5} {:>4} {:>6} {:>5} {:>5} {:>5}ms {:>8.0} {:>9} {:>6} | {:>6} {:>6} {:>6}{flag}",
        sample.t,
        sample.server.rss_kb as f64 / 1024.0,
        sample.stats.heap_bytes as f64 / MIB,
        sample.server.fds,
        sample.server.threads,
        sample.stats.alive_tasks,
        sample.stats.connections,
        sample.stats.live_handlers,
        sample.settle_ms,
        rate,
        calls,
        unexpected_total(&sample.calls),
        sample.client.fds,
        sample.client_tasks,
        sample.channels,
    );
}

fn csv(samples: &[Sample]) -> String {
    let mut out = String::from(
        "t_s,server_rss_kb,server_heap_bytes,server_fds,server_threads,server_tasks,\
         server_connections,live_handlers,handlers_started,settle_ms,settled,stuck,\
         client_rss_kb,client_heap_bytes,client_fds,client_threads,client_tasks,channels_created",
    );
    for (_, kind) in KINDS {
        for class in CLASSES {
            let _ = write!(out, ",{kind}_{class}");
        }
    }
    out.push('\n');
    for s in samples {
        let _ = write!(
            out,
            "{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            s.t,
            s.server.rss_kb,
            s.stats.heap_bytes,
            s.server.fds,
            s.server.threads,
            s.stats.alive_tasks,
            s.stats.connections,
            s.stats.live_handlers,
            s.stats.handlers_started,
            s.settle_ms,
            u8::from(s.settled),
            u8::from(s.stuck),
            s.client.rss_kb,
            s.client_heap,
            s.client.fds,
            s.client.threads,
            s.client_tasks,
            s.channels,
        );
        for count in s.calls.iter().flatten() {
            let _ = write!(out, ",{count}");
        }
        out.push('\n');
    }
    out
}

fn print_summary(tally: &Tally, last: &[[u64; 6]; 4]) {
    println!();
    print!("{:<14}", "calls");
    for class in CLASSES {
        print!(" {class:>10}");
    }
    println!(" {:>10}", "total");
    for (k, (_, name)) in KINDS.iter().enumerate() {
        print!("{name:<14}");
        for count in last[k] {
            print!(" {count:>10}");
        }
        println!(" {:>10}", last[k].iter().sum::<u64>());
    }
    println!();
    println!("by scenario (runs / unexpected):");
    for scenario in Scenario::all() {
        let (runs, bad) = &tally.by_scenario[scenario.index()];
        println!(
            "  {:<28} {:>9} {:>6}",
            format!("{scenario:?}"),
            runs.load(Relaxed),
            bad.load(Relaxed)
        );
    }
    println!(
        "channels created and dropped: {}",
        tally.channels.load(Relaxed)
    );
}

/// The samples (at most about 20 rows, the last included) and the calls by
/// kind and outcome, as Markdown tables for docs/benchmarks.md.
fn markdown(samples: &[Sample]) -> String {
    let mut out = String::from(
        "| t (s) | RSS (MB) | heap (MB) | fds | threads | tasks | unary | server-stream \
         | client-stream | bidi | ok | error | deadline | exhausted | cancelled | unexpected |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let step = samples.len().div_ceil(20).max(1);
    let last = samples.len().saturating_sub(1);
    for (i, s) in samples.iter().enumerate() {
        if i % step != 0 && i != last {
            continue;
        }
        let _ = write!(
            out,
            "| {:.0} | {:.1} | {:.2} | {} | {} | {} |",
            s.t,
            s.server.rss_kb as f64 / 1024.0,
            s.stats.heap_bytes as f64 / MIB,
            s.server.fds,
            s.server.threads,
            s.stats.alive_tasks
        );
        for kind in &s.calls {
            let _ = write!(out, " {} |", kind.iter().sum::<u64>());
        }
        for class in 0..CLASSES.len() {
            let _ = write!(out, " {} |", s.calls.iter().map(|k| k[class]).sum::<u64>());
        }
        out.push('\n');
    }
    out.push_str("\n| calls |");
    for class in CLASSES {
        let _ = write!(out, " {class} |");
    }
    out.push_str(" total |\n|---|");
    out.push_str(&"---:|".repeat(CLASSES.len() + 1));
    out.push('\n');
    let calls = samples.last().map(|s| s.calls).unwrap_or_default();
    for (k, (_, name)) in KINDS.iter().enumerate() {
        let _ = write!(out, "| {name} |");
        for count in calls[k] {
            let _ = write!(out, " {count} |");
        }
        let _ = writeln!(out, " {} |", calls[k].iter().sum::<u64>());
    }
    out
}

// ---------------------------------------------------------------------------
// The verdict.

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

struct Limits {
    fd_slack: f64,
    task_slack: f64,
    thread_slack: f64,
    max_unexpected: u64,
}

/// A window's median of one measure.
fn window(samples: &[&Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    median(samples.iter().map(|s| f(s)).collect())
}

fn verdict(samples: &[Sample], tally: &Tally, limits: &Limits, notes: &mut Vec<String>) -> bool {
    let mut ok = true;
    let mut fail = |line: String, notes: &mut Vec<String>| {
        ok = false;
        notes.push(format!("FAIL {line}"));
    };
    let Some(last) = samples.last() else {
        fail("no samples".into(), notes);
        return false;
    };
    let end_t = last.t;
    let plateau: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t >= 0.2 * end_t && s.t < 0.4 * end_t)
        .collect();
    let end: Vec<&Sample> = samples.iter().filter(|s| s.t >= 0.8 * end_t).collect();
    if plateau.len() < 2 || end.len() < 2 {
        fail(
            format!(
                "too few samples to compare ({} in the plateau window, {} at the end): \
                 run longer or sample more often",
                plateau.len(),
                end.len()
            ),
            notes,
        );
        return false;
    }
    notes.push(format!(
        "windows: plateau {:.0}-{:.0} s ({} samples), end {:.0}-{:.0} s ({} samples)",
        plateau[0].t,
        plateau[plateau.len() - 1].t,
        plateau.len(),
        end[0].t,
        end_t,
        end.len()
    ));

    // Memory: both an absolute and a relative margin, since allocator noise
    // is a few MiB whatever the size, and a bigger process moves more.
    let mut memory = |name: &str, f: &dyn Fn(&Sample) -> f64, abs_mib: f64, pct: f64| {
        let (p, e) = (window(&plateau, f), window(&end, f));
        let limit = (abs_mib * MIB).max(p * pct / 100.0);
        let line = format!(
            "{name}: plateau {:.1} MiB -> end {:.1} MiB ({:+.2} MiB; fails above +{:.1} MiB = max({abs_mib} MiB, {pct}%))",
            p / MIB,
            e / MIB,
            (e - p) / MIB,
            limit / MIB
        );
        if e - p > limit {
            fail(line, notes);
        } else {
            notes.push(format!("ok   {line}"));
        }
    };
    memory(
        "server RSS",
        &|s| s.server.rss_kb as f64 * 1024.0,
        8.0,
        20.0,
    );
    memory(
        "server live heap",
        &|s| s.stats.heap_bytes as f64,
        2.0,
        20.0,
    );
    memory("client live heap", &|s| s.client_heap as f64, 2.0, 20.0);

    let mut count = |name: &str, f: &dyn Fn(&Sample) -> f64, slack: f64| {
        let (p, e) = (window(&plateau, f), window(&end, f));
        let line = format!("{name}: plateau {p} -> end {e} (fails above +{slack})");
        if e - p > slack {
            fail(line, notes);
        } else {
            notes.push(format!("ok   {line}"));
        }
    };
    count("server fds", &|s| s.server.fds as f64, limits.fd_slack);
    count(
        "server threads",
        &|s| s.server.threads as f64,
        limits.thread_slack,
    );
    count(
        "server tasks",
        &|s| s.stats.alive_tasks as f64,
        limits.task_slack,
    );
    count("client fds", &|s| s.client.fds as f64, limits.fd_slack);
    count(
        "client tasks",
        &|s| s.client_tasks as f64,
        limits.task_slack,
    );

    // Once the load has stopped, nothing of it may be left on the server.
    if last.stats.live_handlers != 0 || !last.settled {
        fail(
            format!(
                "after the load stopped: {} handlers still alive, {} connections \
                 (expected 0 and the long-lived ones), settled: {}",
                last.stats.live_handlers, last.stats.connections, last.settled
            ),
            notes,
        );
    } else {
        notes.push(format!(
            "ok   after the load stopped: 0 handlers alive, {} connections, settled in {} ms",
            last.stats.connections, last.settle_ms
        ));
    }

    // The load itself.
    let unexpected = unexpected_total(&last.calls);
    if unexpected > limits.max_unexpected {
        fail(
            format!(
                "{unexpected} calls ended other than expected (allowed {})",
                limits.max_unexpected
            ),
            notes,
        );
        let examples = tally.examples.lock().unwrap_or_else(|e| e.into_inner());
        for example in examples.iter() {
            notes.push(format!("       {example}"));
        }
    } else {
        notes.push(format!(
            "ok   calls: {} done, {unexpected} unexpected",
            total(&last.calls)
        ));
    }
    let stuck = samples.iter().filter(|s| s.stuck).count();
    if stuck > 0 {
        fail(
            format!("{stuck} pauses waited 15 s for calls to finish (a call hung)"),
            notes,
        );
    }
    // Between periodic samples (the last one comes after the load stopped).
    let stalls = samples[..samples.len() - 1]
        .windows(2)
        .filter(|w| total(&w[1].calls) == total(&w[0].calls))
        .count();
    if stalls > 0 {
        fail(
            format!("the load stalled: no call completed in {stalls} sample intervals"),
            notes,
        );
    }
    let never: Vec<String> = Scenario::all()
        .iter()
        .filter(|s| tally.by_scenario[s.index()].0.load(Relaxed) == 0)
        .map(|s| format!("{s:?}"))
        .collect();
    if !never.is_empty() {
        fail(
            format!("scenarios that never ran: {}", never.join(", ")),
            notes,
        );
    }
    let unsettled = samples.iter().filter(|s| !s.settled).count();
    if unsettled > 0 {
        notes.push(format!(
            "note {unsettled} samples did not settle within the limit (counted anyway)"
        ));
    }
    ok
}

// ---------------------------------------------------------------------------
// Command line and main.

struct Args {
    duration: Duration,
    interval: Option<Duration>,
    workers: usize,
    channels: usize,
    csv: Option<String>,
    markdown: Option<String>,
    seed: u64,
    max_unexpected: u64,
    leak: Option<Leak>,
    serve: bool,
}

const USAGE: &str = "usage: soak [--duration 90s] [--interval SECS] [--workers 8] [--channels 4] \
                     [--csv PATH] [--markdown PATH] [--seed N] [--max-unexpected 0]";

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}"))?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("bad duration unit in {text:?} (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(value * scale))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs(90),
        interval: None,
        workers: 8,
        channels: 4,
        csv: None,
        markdown: None,
        seed: 0x50a4,
        max_unexpected: 0,
        leak: None,
        serve: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--serve" {
            args.serve = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value:?}"))
        };
        match flag.as_str() {
            "--duration" => args.duration = parse_duration(&value)?,
            "--interval" => args.interval = Some(parse_duration(&value)?),
            "--workers" => args.workers = number()?.max(1) as usize,
            "--channels" => args.channels = number()?.max(1) as usize,
            "--csv" => args.csv = Some(value),
            "--markdown" => args.markdown = Some(value),
            "--seed" => args.seed = number()?,
            "--max-unexpected" => args.max_unexpected = number()?,
            "--debug-leak" => args.leak = Some(parse_leak(&value)?),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// The server process; killed (after its stdin closes) when dropped.
struct ServerProcess {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    addr: String,
}

impl ServerProcess {
    fn start(leak: Option<Leak>) -> Result<ServerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
        let mut command = Command::new(exe);
        command.arg("--serve");
        if let Some(leak) = leak {
            let kind = match leak.kind {
                LeakKind::Task => "task",
                LeakKind::Mem => "mem",
                LeakKind::Fd => "fd",
            };
            command
                .arg("--debug-leak")
                .arg(format!("{kind}:{}", leak.every));
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the server did not start (said {line:?})"));
        };
        let addr = addr.to_string();
        Ok(ServerProcess {
            child,
            _stdout: stdout,
            addr,
        })
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("soak: {message}");
            return ExitCode::from(2);
        }
    };
    if args.serve {
        return serve(args.leak);
    }
    let mut server = match ServerProcess::start(args.leak) {
        Ok(server) => server,
        Err(message) => {
            eprintln!("soak: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("soak: cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(soak(&args, &mut server));
    drop(server);
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("soak: FAIL {message}");
            ExitCode::FAILURE
        }
    }
}

async fn soak(args: &Args, server: &mut ServerProcess) -> Result<bool, String> {
    let interval = args.interval.unwrap_or_else(|| {
        Duration::from_secs_f64((args.duration.as_secs_f64() / 40.0).clamp(2.0, 10.0))
    });
    let addr = server.addr.clone();
    println!(
        "soak: server pid {} on {addr}; {} s of load, {} workers on {} channels, a sample every {:.1} s{}",
        server.child.id(),
        args.duration.as_secs(),
        args.workers,
        args.channels,
        interval.as_secs_f64(),
        match args.leak {
            Some(leak) => format!(" (DEBUG: server leaks {:?} every {} handlers)", leak.kind, leak.every),
            None => String::new(),
        }
    );
    let load = Arc::new(Load {
        gate: RwLock::new(()),
        stop: AtomicBool::new(false),
        tally: Tally::new(),
    });
    let channels = (0..args.channels)
        .map(|_| channel(&addr))
        .collect::<Result<Vec<_>, _>>()?;
    let stats_channel = channel(&addr)?;
    let sampler = Sampler {
        load: Arc::clone(&load),
        channels: channels
            .iter()
            .cloned()
            .chain([stats_channel.clone()])
            .collect(),
        stats: SoakClient::new(stats_channel),
        pid: server.child.id(),
        start: Instant::now(),
    };
    let mut samples = Vec::new();
    print_header();
    let first = sampler.quiet_sample(Duration::from_secs(5)).await?;
    print_row(&first, None);
    samples.push(first);

    let mut tasks = Vec::new();
    for i in 0..args.workers {
        let client = SoakClient::new(channels[i % channels.len()].clone());
        let rng = Rng::new(args.seed.wrapping_add(i as u64 + 1));
        tasks.push(tokio::spawn(worker(Arc::clone(&load), client, rng)));
    }
    tasks.push(tokio::spawn(churner(
        Arc::clone(&load),
        addr.clone(),
        Rng::new(args.seed.wrapping_add(1000)),
    )));

    let mut next = sampler.start + interval;
    let end = sampler.start + args.duration;
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        if !server.alive() {
            return Err("the server process died".into());
        }
        let sample = sampler.quiet_sample(Duration::from_secs(5)).await?;
        print_row(&sample, samples.last());
        samples.push(sample);
        next += interval;
    }
    tokio::time::sleep_until(end.into()).await;
    // Stop the load, let every worker finish, then the last sample.
    load.stop.store(true, Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    }
    let last = sampler.quiet_sample(Duration::from_secs(10)).await?;
    print_row(&last, samples.last());
    samples.push(last);

    if let Some(path) = &args.csv {
        std::fs::write(path, csv(&samples)).map_err(|e| format!("cannot write {path}: {e}"))?;
        println!("samples written to {path}");
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, markdown(&samples))
            .map_err(|e| format!("cannot write {path}: {e}"))?;
        println!("tables written to {path}");
    }
    let last_calls = samples.last().map(|s| s.calls).unwrap_or_default();
    print_summary(&load.tally, &last_calls);
    let limits = Limits {
        fd_slack: 4.0,
        task_slack: 2.0,
        thread_slack: 2.0,
        max_unexpected: args.max_unexpected,
    };
    let mut notes = Vec::new();
    let passed = verdict(&samples, &load.tally, &limits, &mut notes);
    println!();
    for note in &notes {
        println!("{note}");
    }
    println!(
        "\nsoak: {}",
        if passed {
            "PASS: no growth, the load behaved"
        } else {
            "FAIL (see above)"
        }
    );
    Ok(passed)
}
