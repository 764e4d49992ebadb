//! Fault-injection checks for ferrogrpc: a small server and client
//! (`faults_server`, `faults_client`) run as real processes over real
//! sockets, and the tests in `tests/` break what is between them: the server
//! is killed and restarted, stopped with SIGSTOP, put behind a lossy link
//! (`tc netem` on a veth pair between two network namespaces), or
//! black-holed (`iptables -j DROP`).
//!
//! - [`pb`]: the generated `faults.Greeter` service.
//! - [`flags`]: the binaries' command-line flags.
//! - [`report`]: the client's machine-readable output, written by the client
//!   and parsed by the tests.
//! - [`harness`]: what the tests share: starting the binaries, network
//!   namespaces that clean up after themselves, the root check.
//!
//! The scenarios are modules of `tests/scenarios`: `server_restart` (kill
//! -9 and restart), `server_stall` (SIGSTOP), `lossy_link` (5% loss, retry
//! policy) and `keepalive_black_hole` (iptables DROP, client keepalive).
//! Run them all with `faults/run.sh` (as root: it installs `iptables` and
//! `iproute2` if missing, builds in release and runs the tests one at a
//! time). Those that need root skip when not root, unless `CI` is set; see
//! [`harness`]. `FAULTS_SABOTAGE=no_wait_for_ready,no_deadline,no_retry,no_keepalive`
//! turns off what each scenario checks, to see it fail.

pub mod flags;
pub mod harness;
pub mod report;

/// The `faults` proto package.
pub mod pb {
    ferrogrpc::include_proto!("faults");
}

/// Milliseconds since the Unix epoch: the clock that client output and the
/// tests' own records of when they injected a fault share.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
