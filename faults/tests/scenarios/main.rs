//! The fault-injection scenarios, one module each, in a single test binary:
//! one link step fewer per scenario in the release build, and one lock
//! (`faults::harness::serial`) that runs them one at a time even when the
//! test harness runs tests in parallel.
//!
//! One scenario: `cargo test --release -p faults --test scenarios server_stall`.

mod format;
mod keepalive_black_hole;
mod lossy_link;
mod server_restart;
mod server_stall;

/// The binaries under test, built by cargo for this test.
const SERVER: &str = env!("CARGO_BIN_EXE_faults_server");
const CLIENT: &str = env!("CARGO_BIN_EXE_faults_client");
