//! Request and response payloads.
//!
//! Payloads are built once and shared (`Bytes` slices), so the per-call cost
//! measured is the gRPC stack's, not the benchmark's.

use bytes::Bytes;

/// What payload bytes look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadKind {
    /// Text-like: words from a small vocabulary with numbers, which gzip
    /// shrinks to about a third (like logs or JSON).
    Compressible,
    /// Pseudo-random bytes, which no compressor shrinks.
    Incompressible,
}

impl PayloadKind {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            PayloadKind::Compressible => "compressible",
            PayloadKind::Incompressible => "incompressible",
        }
    }
}

/// A xorshift64* generator: deterministic, so every run sends the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

const WORDS: &[&str] = &[
    "request",
    "response",
    "stream",
    "status",
    "deadline",
    "metadata",
    "server",
    "client",
    "message",
    "channel",
    "payload",
    "latency",
    "window",
    "frame",
    "header",
    "trailer",
    "\"id\":",
    "\"name\":",
    "{",
    "}",
    "ok",
    "error",
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
];

/// `len` bytes of payload of `kind`.
pub fn generate(kind: PayloadKind, len: usize) -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(len + 32);
    match kind {
        PayloadKind::Incompressible => {
            while out.len() < len {
                out.extend_from_slice(&rng.next().to_le_bytes());
            }
        }
        PayloadKind::Compressible => {
            while out.len() < len {
                let r = rng.next();
                out.extend_from_slice(WORDS[(r % WORDS.len() as u64) as usize].as_bytes());
                if r >> 60 == 0 {
                    // Now and then a number, so the text is not too regular.
                    out.extend_from_slice(format!(" {}", (r >> 20) % 100_000).as_bytes());
                }
                out.push(if r >> 58 & 7 == 0 { b'\n' } else { b' ' });
            }
        }
    }
    out.truncate(len);
    out
}

/// Pre-built payloads of both kinds, sliced for each message without
/// copying. Sizes above [`Payloads::PREBUILT`] are generated per message.
#[derive(Clone, Debug)]
pub struct Payloads {
    compressible: Bytes,
    incompressible: Bytes,
}

impl Payloads {
    /// Bytes pre-built per kind.
    pub const PREBUILT: usize = 4 << 20;

    /// Builds the payloads.
    pub fn new() -> Payloads {
        Payloads {
            compressible: generate(PayloadKind::Compressible, Self::PREBUILT).into(),
            incompressible: generate(PayloadKind::Incompressible, Self::PREBUILT).into(),
        }
    }

    /// `len` bytes of `kind`.
    pub fn get(&self, kind: PayloadKind, len: usize) -> Bytes {
        let all = match kind {
            PayloadKind::Compressible => &self.compressible,
            PayloadKind::Incompressible => &self.incompressible,
        };
        if len <= all.len() {
            all.slice(..len)
        } else {
            generate(kind, len).into()
        }
    }
}

impl Default for Payloads {
    fn default() -> Self {
        Payloads::new()
    }
}

/// The ratio uncompressed/compressed of `len` bytes of `kind` under the
/// registered compressor `name`, or `None` when it is not registered.
pub fn compression_ratio(name: &str, kind: PayloadKind, len: usize) -> Option<f64> {
    let compressor = ferrogrpc::encoding::get_compressor(name)?;
    let input = generate(kind, len.max(1));
    let mut out = bytes::BytesMut::new();
    compressor.compress(&input, &mut out).ok()?;
    Some(input.len() as f64 / out.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact() {
        for kind in [PayloadKind::Compressible, PayloadKind::Incompressible] {
            for len in [0, 1, 7, 100, 65536] {
                assert_eq!(generate(kind, len).len(), len);
            }
        }
        let p = Payloads::new();
        assert_eq!(p.get(PayloadKind::Compressible, 10).len(), 10);
        assert_eq!(
            p.get(PayloadKind::Incompressible, Payloads::PREBUILT + 1)
                .len(),
            Payloads::PREBUILT + 1
        );
    }

    #[test]
    fn compressible_compresses_and_random_does_not() {
        let text = compression_ratio("gzip", PayloadKind::Compressible, 65536).unwrap();
        let random = compression_ratio("gzip", PayloadKind::Incompressible, 65536).unwrap();
        assert!(text > 2.0, "text ratio {text}");
        assert!(random < 1.01, "random ratio {random}");
    }
}
