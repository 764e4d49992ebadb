//! Shared pieces of the ferrogrpc fuzz targets: HTTP/2 frame and HPACK
//! builders, the "script" format the connection targets read (a compact
//! list of HTTP/2 operations, so that the fuzzer gets past the preface and
//! HPACK at once), and a paused-clock runtime.
//!
//! Everything here is test scaffolding written for these targets; the code
//! under test is ferrogrpc's (through its hidden `__fuzz` module).

pub mod echo;
pub mod script;
pub mod wire;

use std::future::Future;

/// Runs `fut` on a fresh current-thread runtime whose clock starts paused:
/// whenever every task waits, time jumps to the next timer, so timeouts and
/// sleeps cost no real time and runs are repeatable.
pub fn run_paused<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime")
        .block_on(fut)
}

/// A byte reader that never fails: past the end it yields zeros, so every
/// input decodes to something.
pub struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Cursor<'a> {
        Cursor { data, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.data[self.pos.min(self.data.len())..];
        self.pos = self.data.len();
        rest
    }

    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos = self.pos.saturating_add(n);
        &self.data[start..end]
    }

    /// A length byte, then that many bytes.
    pub fn short_bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.bytes(n)
    }
}
