//! What a process spent: CPU time (getrusage) and heap allocations (a
//! counting wrapper around the system allocator).
//!
//! Allocations are counted only in a binary that installs
//! [`CountingAllocator`] as its global allocator:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: benchmark::resources::CountingAllocator = benchmark::resources::CountingAllocator;
//! ```
//!
//! The counters are process-wide: in `--mode inproc` they cover the client
//! and the server together; in client/server mode each process counts its
//! own side (the client reads the server's through `GetServerStats`).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use crate::pb;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting each allocation and the bytes asked for.
/// `alloc`, `alloc_zeroed` and `realloc` each count as one allocation (a
/// `realloc` counts its new size); frees are not counted.
///
/// The counters are two relaxed atomics, so counting costs a few
/// nanoseconds per allocation, more when threads contend for the line.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

fn count(bytes: usize) {
    ALLOCATIONS.fetch_add(1, Relaxed);
    ALLOCATED_BYTES.fetch_add(bytes as u64, Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are ours; counting touches only atomics
// and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded as is; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` (every allocation here does) with
        // this layout, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: forwarded as is; `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Whether this process counts allocations (its binary installed
/// [`CountingAllocator`]).
pub fn counts_allocations() -> bool {
    // Any allocation moves the counter when the allocator is installed.
    drop(std::hint::black_box(Box::new(0u64)));
    ALLOCATIONS.load(Relaxed) > 0
}

/// A snapshot of what the process has spent since it started, or (after
/// [`Resources::since`]) during an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// User CPU time.
    pub user: Duration,
    /// System CPU time.
    pub system: Duration,
    /// Allocations (0 when not counted).
    pub allocations: u64,
    /// Bytes allocated (0 when not counted).
    pub allocated_bytes: u64,
    /// Whether allocations were counted.
    pub counts_allocations: bool,
}

impl Resources {
    /// The process's counters now.
    pub fn now() -> Resources {
        let (user, system) = cpu_time();
        Resources {
            user,
            system,
            allocations: ALLOCATIONS.load(Relaxed),
            allocated_bytes: ALLOCATED_BYTES.load(Relaxed),
            counts_allocations: counts_allocations(),
        }
    }

    /// What was spent between `earlier` and `self`.
    pub fn since(&self, earlier: &Resources) -> Resources {
        Resources {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
            allocations: self.allocations.saturating_sub(earlier.allocations),
            allocated_bytes: self.allocated_bytes.saturating_sub(earlier.allocated_bytes),
            counts_allocations: self.counts_allocations && earlier.counts_allocations,
        }
    }

    /// User plus system CPU time.
    pub fn cpu(&self) -> Duration {
        self.user + self.system
    }

    /// The sum of two intervals' spending (client plus server).
    pub fn plus(&self, other: &Resources) -> Resources {
        Resources {
            user: self.user + other.user,
            system: self.system + other.system,
            allocations: self.allocations + other.allocations,
            allocated_bytes: self.allocated_bytes + other.allocated_bytes,
            counts_allocations: self.counts_allocations && other.counts_allocations,
        }
    }
}

impl From<Resources> for pb::ServerStats {
    fn from(r: Resources) -> pb::ServerStats {
        pb::ServerStats {
            cpu_user_micros: r.user.as_micros() as u64,
            cpu_system_micros: r.system.as_micros() as u64,
            allocations: r.allocations,
            allocated_bytes: r.allocated_bytes,
            counts_allocations: r.counts_allocations,
        }
    }
}

impl From<pb::ServerStats> for Resources {
    fn from(s: pb::ServerStats) -> Resources {
        Resources {
            user: Duration::from_micros(s.cpu_user_micros),
            system: Duration::from_micros(s.cpu_system_micros),
            allocations: s.allocations,
            allocated_bytes: s.allocated_bytes,
            counts_allocations: s.counts_allocations,
        }
    }
}

/// User and system CPU time of this process (all threads), from
/// `getrusage(RUSAGE_SELF)`, which has microsecond resolution.
pub fn cpu_time() -> (Duration, Duration) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` points to writable memory of the size of `rusage`,
    // which is all `getrusage` writes.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    // SAFETY: zero-initialised, and filled in by the successful call above;
    // `rusage` is plain integers, valid for any bits.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_moves_forward() {
        let before = Resources::now();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let spent = Resources::now().since(&before);
        assert!(spent.cpu() > Duration::ZERO, "{x}");
    }

    #[test]
    fn since_and_plus() {
        let a = Resources {
            user: Duration::from_millis(5),
            system: Duration::from_millis(1),
            allocations: 10,
            allocated_bytes: 100,
            counts_allocations: true,
        };
        let b = Resources {
            user: Duration::from_millis(7),
            allocations: 15,
            allocated_bytes: 160,
            ..a
        };
        let d = b.since(&a);
        assert_eq!(d.user, Duration::from_millis(2));
        assert_eq!(d.system, Duration::ZERO);
        assert_eq!((d.allocations, d.allocated_bytes), (5, 60));
        assert_eq!(d.plus(&d).allocations, 10);
        let round: Resources = pb::ServerStats::from(b).into();
        assert_eq!(round, b);
    }
}
