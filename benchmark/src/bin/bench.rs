//! `bench`: the ferrogrpc load tool, in the spirit of gRPC-Go's
//! benchmark/benchmain. See `bench --help` and docs/benchmarks.md.
//!
//! ```sh
//! target/release/bench --workload unary --mode inproc --concurrency 1
//! target/release/bench --workload unary --req-size 64K --resp-size 64K --compression none,gzip,zstd
//! ```

use std::process::ExitCode;

use benchmark::{ours::Ferrogrpc, resources::CountingAllocator};

/// Counts allocations for the allocs/op column.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() -> ExitCode {
    benchmark::app::main::<Ferrogrpc>("bench")
}
