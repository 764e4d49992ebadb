//! Shared code of the benchmark tools.

/// The `helloworld` package.
pub mod helloworld {
    ferrogrpc::include_proto!("helloworld");
}

/// Builds the runtime for a benchmark process: `THREADS` workers (default:
/// the CPUs this process may run on). One thread uses the current-thread
/// scheduler, which avoids cross-thread wake-ups.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let threads = std::env::var("THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}
