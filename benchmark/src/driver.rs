//! Closed-loop load: workers repeat one operation (a unary call, a
//! streaming round trip, or one send or receive) for a warm-up and then a
//! measurement window.
//!
//! ```text
//!  start ── warmup ──┬──────── duration ────────┬── workers finish their op, stop
//!                    │ snapshot resources,      │ snapshot resources
//!                    │ count ops and latencies  │
//! ```
//!
//! An operation counts when it completes inside the window; CPU time and
//! allocations are snapshotted at the window's edges, so per-operation
//! figures divide like by like.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use crate::resources::Resources;

/// One load generator: a unary caller, a stream doing ping-pong, or one half
/// of an unconstrained stream.
pub trait Worker: Send + 'static {
    /// Performs one operation.
    ///
    /// # Errors
    /// A description of what failed; the worker then stops.
    fn op(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// What a [`closed_loop`] run measured.
#[derive(Debug)]
pub struct Measurement {
    /// Operations completed in the window, per worker (in the order the
    /// workers were given).
    pub ops_per_worker: Vec<u64>,
    /// Latency of those operations, nanoseconds.
    pub latency: Histogram<u64>,
    /// The window's actual length.
    pub elapsed: Duration,
    /// What this process spent in the window.
    pub local: Resources,
    /// What the server process spent in the window, when it was asked
    /// (client mode).
    pub remote: Option<Resources>,
    /// Failed operations.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

impl Measurement {
    /// All operations in the window.
    pub fn ops(&self) -> u64 {
        self.ops_per_worker.iter().sum()
    }
}

/// A latency histogram in nanoseconds, from 1 ns to 60 s with two
/// significant digits (under 1% error), small enough for one per worker.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy the crate's rules (low >= 1,
    // high >= 2 * low, 0..=5 significant digits), so this cannot fail.
    Histogram::new_with_bounds(1, 60_000_000_000, 2).expect("constant, valid bounds")
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const DONE: u8 = 2;

/// How long workers may take to finish their last operation after the
/// window before they are aborted.
const STRAGGLER_GRACE: Duration = Duration::from_secs(10);

struct WorkerResult {
    latency: Histogram<u64>,
    ops: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn run_worker<W: Worker>(mut worker: W, phase: Arc<AtomicU8>) -> WorkerResult {
    let mut result = WorkerResult {
        latency: new_histogram(),
        ops: 0,
        errors: 0,
        first_error: None,
    };
    loop {
        let started = Instant::now();
        let outcome = worker.op().await;
        // An op may complete without ever waiting (a send with room in the
        // flow-control window); this yields once the task's budget is spent,
        // so such a worker does not starve the others.
        tokio::task::consume_budget().await;
        let now = phase.load(Ordering::Relaxed);
        if now == DONE {
            break;
        }
        match outcome {
            Ok(()) if now == MEASURE => {
                result.ops += 1;
                result
                    .latency
                    .saturating_record(started.elapsed().as_nanos() as u64);
            }
            Ok(()) => {}
            Err(e) => {
                result.errors += 1;
                result.first_error.get_or_insert(e);
                break;
            }
        }
    }
    result
}

/// Runs `workers` for `warmup`, then measures for `duration`. `remote` is
/// asked for the server's counters at both edges of the window (return
/// `None` when there is no separate server process).
pub async fn closed_loop<W, R, F>(
    workers: Vec<W>,
    warmup: Duration,
    duration: Duration,
    mut remote: R,
) -> Measurement
where
    W: Worker,
    R: FnMut() -> F,
    F: Future<Output = Option<Resources>>,
{
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|w| tokio::spawn(run_worker(w, Arc::clone(&phase))))
        .collect();

    tokio::time::sleep(warmup).await;
    let remote_start = remote().await;
    let local_start = Resources::now();
    phase.store(MEASURE, Ordering::Relaxed);
    let window_start = Instant::now();

    tokio::time::sleep(duration).await;
    phase.store(DONE, Ordering::Relaxed);
    let elapsed = window_start.elapsed();
    let local = Resources::now().since(&local_start);
    let remote_end = remote().await;

    let mut measurement = Measurement {
        ops_per_worker: Vec::with_capacity(tasks.len()),
        latency: new_histogram(),
        elapsed,
        local,
        remote: match (remote_start, remote_end) {
            (Some(a), Some(b)) => Some(b.since(&a)),
            _ => None,
        },
        errors: 0,
        first_error: None,
    };
    let deadline = tokio::time::Instant::now() + STRAGGLER_GRACE;
    for mut task in tasks {
        let joined = tokio::time::timeout_at(deadline, &mut task).await;
        let result = match joined {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => {
                measurement.errors += 1;
                measurement
                    .first_error
                    .get_or_insert_with(|| format!("worker failed: {join_error}"));
                measurement.ops_per_worker.push(0);
                continue;
            }
            Err(_) => {
                // Its window's operations are lost with it; say so.
                task.abort();
                measurement.errors += 1;
                measurement.first_error.get_or_insert_with(|| {
                    "a worker did not finish its last operation in time".into()
                });
                measurement.ops_per_worker.push(0);
                continue;
            }
        };
        measurement.ops_per_worker.push(result.ops);
        // Same bounds everywhere, so adding cannot fail.
        let _ = measurement.latency.add(&result.latency);
        measurement.errors += result.errors;
        if measurement.first_error.is_none() {
            measurement.first_error = result.first_error;
        }
    }
    measurement
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleeper {
        fail_after: Option<u32>,
        done: u32,
    }

    impl Worker for Sleeper {
        async fn op(&mut self) -> Result<(), String> {
            // A failing op fails at once, without waiting on a timer, so
            // the failure lands in the warm-up however slow the machine.
            if matches!(self.fail_after, Some(n) if self.done >= n) {
                return Err("boom".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.done += 1;
            Ok(())
        }
    }

    #[tokio::test]
    async fn counts_ops_in_the_window() {
        let workers = vec![
            Sleeper {
                fail_after: None,
                done: 0,
            },
            // Fails on its first op, before the warm-up can end.
            Sleeper {
                fail_after: Some(0),
                done: 0,
            },
        ];
        let m = closed_loop(
            workers,
            Duration::from_millis(20),
            Duration::from_millis(100),
            || async { None },
        )
        .await;
        assert!(m.ops_per_worker[0] > 10, "{:?}", m.ops_per_worker);
        assert_eq!(m.ops_per_worker[1], 0, "failed during warm-up");
        assert_eq!(m.errors, 1);
        assert_eq!(m.first_error.as_deref(), Some("boom"));
        assert_eq!(m.latency.len(), m.ops());
        assert!(m.latency.value_at_quantile(0.5) >= 1_000_000);
        assert!(m.elapsed >= Duration::from_millis(100));
    }
}
