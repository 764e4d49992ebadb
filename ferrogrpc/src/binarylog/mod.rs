//! Binary logging (gRFC A16), as gRPC-Go's `binarylog` package: every
//! header, message and trailer of chosen methods, on the client and the
//! server, as `grpc.binarylog.v1.GrpcLogEntry` records.
//!
//! # Switching it on
//!
//! Set `GRPC_BINARY_LOG_FILTER` (syntax in [`Filter`]) before the first
//! server or channel is built:
//!
//! ```text
//! GRPC_BINARY_LOG_FILTER='*' ./server                              # everything
//! GRPC_BINARY_LOG_FILTER='helloworld.Greeter/*{h:256;m:64}' ./server
//! FERROGRPC_BINARY_LOG_FILE=/tmp/calls.binlog GRPC_BINARY_LOG_FILTER='*' ./server
//! ```
//!
//! The entries go to the file named by `FERROGRPC_BINARY_LOG_FILE`, else to
//! a new file in the temporary directory. Either way the path is printed
//! once on stderr (and logged at `info`) when the file is created. A filter
//! that does not parse is printed and logged as an error, and nothing is
//! logged, as in gRPC-Go. The environment is read once per
//! process; every server and channel built without
//! [`ServerBuilder::binary_log`](crate::server::ServerBuilder::binary_log) /
//! [`ChannelBuilder::binary_log`](crate::client::ChannelBuilder::binary_log)
//! shares that log.
//!
//! In code, build a [`BinaryLog`] from a [`Filter`] and a [`Sink`] and hand
//! it to the builders: per server and per channel rather than gRPC-Go's
//! process-wide `SetLogger`, so two servers in one process (or a test) can
//! log differently, and nothing global changes under a running server.
//!
//! # The file
//!
//! [`FileSink`] writes what gRPC-Go's file sink writes: each entry as a
//! 4-byte big-endian length, then the serialized `GrpcLogEntry`. Decode it
//! with any protobuf library and `proto/grpc/binlog/v1/binarylog.proto`
//! (the README shows a Python script).
//!
//! # Cost
//!
//! Logging never blocks or fails a call. Entries go through a bounded queue
//! ([`QUEUE_LEN`] entries) to a writer thread that owns the sink; when the
//! queue is full or the sink fails, the entry is dropped and counted
//! ([`BinaryLog::dropped`]). The writer flushes the sink at least once a
//! second; [`BinaryLog::flush`] (or [`flush`] for the environment's log)
//! waits for everything queued so far to be written and flushed: call it
//! before the process exits.
//!
//! With no filter, a call pays one branch on an `Option` held by its server
//! or channel. With a filter, a call of a method it does not log pays a hash
//! lookup; a logged call allocates its entries.
//!
//! The cargo feature `binarylog` (on by default) builds this module.

mod call;
mod filter;
mod sink;

pub(crate) use call::CallLog;
pub use filter::{Filter, FilterError, MethodConfig};
pub use sink::{FileSink, Sink};

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, OnceLock,
    },
    time::Duration,
};

/// The code generated from `grpc/binlog/v1/binarylog.proto`: the entry and
/// its parts.
// The proto's comments are not rustdoc (`<service>`, `<host>`).
#[allow(missing_docs, clippy::all, rustdoc::invalid_html_tags)]
pub mod pb {
    include!("../generated/grpc.binarylog.v1.rs");
}

/// The filter variable (gRFC A16).
pub const FILTER_ENV: &str = "GRPC_BINARY_LOG_FILTER";
/// The file the environment's log writes to.
pub const FILE_ENV: &str = "FERROGRPC_BINARY_LOG_FILE";
/// How many entries may wait for the writer before more are dropped.
pub const QUEUE_LEN: usize = 8192;
/// The longest an entry waits in the writer before the sink is flushed.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// What travels to the writer thread.
enum Job {
    Entry(Box<pb::GrpcLogEntry>),
    /// Flush, then say so.
    Flush(mpsc::SyncSender<()>),
}

/// A binary log: a filter and the writer of its sink. Cheap to clone; the
/// clones share the writer. The writer thread ends when the last clone is
/// dropped, after writing and flushing what was queued.
#[derive(Clone)]
pub struct BinaryLog {
    shared: Arc<Shared>,
}

struct Shared {
    filter: Filter,
    /// Dropping it (with the last clone) ends the writer once it has
    /// drained the queue.
    sender: mpsc::SyncSender<Job>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for BinaryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinaryLog")
            .field("filter", &self.shared.filter)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl BinaryLog {
    /// A log of the calls `filter` chooses, written to `sink` by a thread of
    /// its own.
    ///
    /// # Panics
    /// When the operating system cannot start a thread.
    pub fn new(filter: Filter, sink: impl Sink) -> BinaryLog {
        let (sender, receiver) = mpsc::sync_channel(QUEUE_LEN);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&dropped);
        #[allow(clippy::expect_used)] // as std::thread::spawn itself
        std::thread::Builder::new()
            .name("ferrogrpc-binarylog".into())
            .spawn(move || sink::write_loop(sink, receiver, &counter))
            .expect("failed to start the binary log writer thread");
        BinaryLog {
            shared: Arc::new(Shared {
                filter,
                sender,
                dropped,
            }),
        }
    }

    /// The filter.
    pub fn filter(&self) -> &Filter {
        &self.shared.filter
    }

    /// Entries dropped so far: the queue was full, or the sink failed.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every entry queued before the call is written and the
    /// sink flushed (or the writer has gone). Blocks the thread: from async
    /// code, call it in `spawn_blocking` or at shutdown.
    pub fn flush(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        // Waits for room: a flush must not be dropped like an entry.
        if self.shared.sender.send(Job::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// The per-call logger of a call of `method`, when the filter logs it.
    pub(crate) fn start(&self, method: &str, client: bool) -> Option<CallLog> {
        let config = self.shared.filter.config_for(method)?;
        Some(CallLog::new(self.clone(), config, client))
    }

    /// Queues an entry; never waits.
    pub(crate) fn write(&self, entry: pb::GrpcLogEntry) {
        if self
            .shared
            .sender
            .try_send(Job::Entry(Box::new(entry)))
            .is_err()
        {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The log `GRPC_BINARY_LOG_FILTER` asks for, read once per process:
/// `None` when the variable is unset or empty, or does not parse (then an
/// error is logged).
pub fn from_env() -> Option<BinaryLog> {
    static LOG: OnceLock<Option<BinaryLog>> = OnceLock::new();
    LOG.get_or_init(|| {
        let value = std::env::var(FILTER_ENV).ok()?;
        let filter = match Filter::parse(&value) {
            Ok(f) if f.is_empty() => return None,
            Ok(f) => f,
            Err(err) => {
                // On stderr too, as a bad FERROGRPC_LOG is: whoever set the
                // variable wants to know it did nothing.
                let msg = format!("{FILTER_ENV}={value:?} refused, binary logging is off: {err}");
                eprintln!("ferrogrpc: {msg}");
                crate::logging::in_scope(|| tracing::error!("{msg}"));
                return None;
            }
        };
        let sink = match std::env::var_os(FILE_ENV) {
            Some(path) => FileSink::create(path),
            None => FileSink::create_temp(),
        };
        match sink {
            Ok(sink) => {
                // Once per process, on stderr: a file of our choosing is of
                // no use unless its path is seen.
                let msg = format!(
                    "binary log ({FILTER_ENV}={value}) written to {}",
                    sink.path().display()
                );
                eprintln!("ferrogrpc: {msg}");
                crate::logging::in_scope(|| tracing::info!("{msg}"));
                Some(BinaryLog::new(filter, sink))
            }
            Err(err) => {
                let msg = format!("binary logging is off: cannot create its file: {err}");
                eprintln!("ferrogrpc: {msg}");
                crate::logging::in_scope(|| tracing::error!("{msg}"));
                None
            }
        }
    })
    .clone()
}

/// Flushes the environment's log ([`from_env`]), if there is one: waits
/// until every entry queued so far is in the file. Call it when the process
/// shuts down.
pub fn flush() {
    if let Some(log) = from_env() {
        log.flush();
    }
}
