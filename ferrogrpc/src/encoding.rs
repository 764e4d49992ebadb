//! Message compression, as gRPC-Go's `encoding` package: a [`Compressor`]
//! trait, a process-wide registry ([`register_compressor`],
//! [`get_compressor`]) and the built-in algorithms, each behind a cargo
//! feature: `gzip` (on by default), `deflate` and `zstd`.
//!
//! Negotiation follows `doc/compression.md`:
//! - a sender names its algorithm in `grpc-encoding` and sets the compressed
//!   flag on each message it compressed; every message may still be sent
//!   uncompressed (flag 0);
//! - each side lists what it can decode in `grpc-accept-encoding`;
//! - a server never compresses a response with an algorithm the client did not
//!   list; it sends those messages uncompressed;
//! - a request in an encoding the server does not know fails with
//!   `UNIMPLEMENTED`, and the response lists the server's encodings.
//!
//! **Small messages.** A message shorter than [`DEFAULT_MIN_COMPRESS_SIZE`]
//! bytes (configurable per channel and server), or one whose compressed form
//! is not smaller than the original, is sent uncompressed. Below about a
//! hundred bytes gzip's 18-byte frame alone outweighs any saving, and sending
//! a larger "compressed" message helps nobody; the protocol allows flag 0 on
//! any message, so peers need no special handling.
//!
//! **Decompression bombs.** The max receive message size applies to the
//! decompressed size: inflation stops after `limit + 1` bytes and the call
//! fails with `RESOURCE_EXHAUSTED`, so memory stays bounded by the limit.

#[cfg(any(feature = "gzip", feature = "deflate", feature = "zstd"))]
use std::io::Write;
use std::{
    collections::HashMap,
    io::{self, Read},
    sync::{Arc, OnceLock},
};

use arc_swap::ArcSwap;
use bytes::{BufMut, BytesMut};
use http::HeaderValue;

/// Messages shorter than this are sent uncompressed by default.
pub const DEFAULT_MIN_COMPRESS_SIZE: usize = 128;

/// A compression algorithm for messages.
///
/// Implementations must be thread-safe; one instance serves every call.
pub trait Compressor: Send + Sync + 'static {
    /// The name used in `grpc-encoding`, e.g. `"gzip"`. Lower-case ASCII.
    fn name(&self) -> &'static str;

    /// Appends the compressed form of `input` to `output`.
    ///
    /// # Errors
    /// When compression fails.
    fn compress(&self, input: &[u8], output: &mut BytesMut) -> io::Result<()>;

    /// Appends the decompressed form of `input` to `output`, writing at most
    /// `limit + 1` bytes: the caller treats more than `limit` as too large,
    /// so an implementation must stop inflating there.
    ///
    /// # Errors
    /// When `input` is not valid compressed data.
    fn decompress(&self, input: &[u8], output: &mut BytesMut, limit: usize) -> io::Result<()>;
}

/// Reads at most `limit + 1` bytes from a decoder into `output`.
pub fn read_bounded(reader: impl Read, output: &mut BytesMut, limit: usize) -> io::Result<()> {
    let cap = (limit as u64).saturating_add(1);
    let mut writer = output.writer();
    io::copy(&mut reader.take(cap), &mut writer)?;
    Ok(())
}

/// gzip (RFC 1952).
#[cfg(feature = "gzip")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Gzip;

#[cfg(feature = "gzip")]
impl Compressor for Gzip {
    fn name(&self) -> &'static str {
        "gzip"
    }

    fn compress(&self, input: &[u8], output: &mut BytesMut) -> io::Result<()> {
        let mut enc = flate2::write::GzEncoder::new(output.writer(), flate2::Compression::fast());
        enc.write_all(input)?;
        enc.finish().map(drop)
    }

    fn decompress(&self, input: &[u8], output: &mut BytesMut, limit: usize) -> io::Result<()> {
        read_bounded(flate2::read::GzDecoder::new(input), output, limit)
    }
}

/// deflate: the zlib format (RFC 1950), as gRPC's "deflate" means.
#[cfg(feature = "deflate")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Deflate;

#[cfg(feature = "deflate")]
impl Compressor for Deflate {
    fn name(&self) -> &'static str {
        "deflate"
    }

    fn compress(&self, input: &[u8], output: &mut BytesMut) -> io::Result<()> {
        let mut enc = flate2::write::ZlibEncoder::new(output.writer(), flate2::Compression::fast());
        enc.write_all(input)?;
        enc.finish().map(drop)
    }

    fn decompress(&self, input: &[u8], output: &mut BytesMut, limit: usize) -> io::Result<()> {
        read_bounded(flate2::read::ZlibDecoder::new(input), output, limit)
    }
}

/// zstd (RFC 8878).
#[cfg(feature = "zstd")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Zstd;

#[cfg(feature = "zstd")]
impl Compressor for Zstd {
    fn name(&self) -> &'static str {
        "zstd"
    }

    fn compress(&self, input: &[u8], output: &mut BytesMut) -> io::Result<()> {
        let mut enc = zstd::stream::write::Encoder::new(output.writer(), 1)?;
        enc.write_all(input)?;
        enc.finish().map(drop)
    }

    fn decompress(&self, input: &[u8], output: &mut BytesMut, limit: usize) -> io::Result<()> {
        read_bounded(zstd::stream::read::Decoder::new(input)?, output, limit)
    }
}

/// A snapshot of the registry: the compressors and the header listing them.
pub(crate) struct Registry {
    by_name: HashMap<&'static str, Arc<dyn Compressor>>,
    /// `grpc-accept-encoding`: every registered name, comma-separated.
    accept: HeaderValue,
}

impl Registry {
    fn build(by_name: HashMap<&'static str, Arc<dyn Compressor>>) -> Registry {
        let mut names: Vec<&str> = by_name.keys().copied().collect();
        names.sort_unstable();
        let accept = HeaderValue::from_str(&names.join(","))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        Registry { by_name, accept }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<dyn Compressor>> {
        self.by_name.get(name)
    }

    /// The value for `grpc-accept-encoding` (empty when nothing is registered).
    pub(crate) fn accept_encoding(&self) -> &HeaderValue {
        &self.accept
    }
}

fn registry_cell() -> &'static ArcSwap<Registry> {
    static REGISTRY: OnceLock<ArcSwap<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        #[allow(unused_mut)]
        let mut by_name: HashMap<&'static str, Arc<dyn Compressor>> = HashMap::new();
        #[cfg(feature = "gzip")]
        by_name.insert("gzip", Arc::new(Gzip));
        #[cfg(feature = "deflate")]
        by_name.insert("deflate", Arc::new(Deflate));
        #[cfg(feature = "zstd")]
        by_name.insert("zstd", Arc::new(Zstd));
        ArcSwap::from_pointee(Registry::build(by_name))
    })
}

/// The current registry; a lock-free read.
pub(crate) fn registry() -> arc_swap::Guard<Arc<Registry>> {
    registry_cell().load()
}

/// Registers a compressor under its name, replacing one of the same name.
/// Call it at start-up, before channels and servers are built: they pick up
/// the registry on each call, so later changes apply to later calls only.
pub fn register_compressor(compressor: impl Compressor) {
    let compressor: Arc<dyn Compressor> = Arc::new(compressor);
    registry_cell().rcu(|current| {
        let mut by_name = current.by_name.clone();
        by_name.insert(compressor.name(), Arc::clone(&compressor));
        Registry::build(by_name)
    });
}

/// The registered compressor called `name`, if any.
pub fn get_compressor(name: &str) -> Option<Arc<dyn Compressor>> {
    registry().get(name).cloned()
}

/// The names of every registered compressor, sorted.
pub fn registered_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = registry().by_name.keys().copied().collect();
    names.sort_unstable();
    names
}

/// The decompressor for a received `grpc-encoding` header: `Ok(None)` when
/// absent or `identity`, `Err` with the unknown name otherwise.
pub(crate) fn decompressor_for(
    header: Option<&HeaderValue>,
) -> Result<Option<Arc<dyn Compressor>>, String> {
    match header {
        None => Ok(None),
        Some(v) if v.as_bytes() == b"identity" => Ok(None),
        Some(v) => registry()
            .get(v.to_str().unwrap_or(""))
            .map(|c| Some(Arc::clone(c)))
            .ok_or_else(|| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    }
}

/// Resolves the compression to send with: `None` for `identity`.
pub(crate) fn send_compression(
    name: &str,
    min_size: usize,
) -> Result<Option<crate::transport::frame::SendCompression>, String> {
    if name == "identity" {
        return Ok(None);
    }
    registry()
        .get(name)
        .map(|c| {
            Some(crate::transport::frame::SendCompression {
                compressor: Arc::clone(c),
                min_size,
            })
        })
        .ok_or_else(|| name.to_string())
}

/// Whether `name` appears in a `grpc-accept-encoding` value.
pub(crate) fn accepts(accept_encoding: Option<&HeaderValue>, name: &str) -> bool {
    accept_encoding.is_some_and(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Arc<dyn Compressor>> {
        registered_names()
            .into_iter()
            .filter_map(get_compressor)
            .collect()
    }

    #[test]
    fn round_trip_each_algorithm() {
        let input: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        for c in all() {
            let mut compressed = BytesMut::new();
            c.compress(&input, &mut compressed).unwrap();
            assert!(compressed.len() < input.len() / 10, "{}", c.name());
            let mut out = BytesMut::new();
            c.decompress(&compressed, &mut out, input.len()).unwrap();
            assert_eq!(&out[..], &input[..], "{}", c.name());
        }
    }

    #[test]
    fn decompression_stops_after_the_limit() {
        // A bomb: 64 MiB of zeros compresses to a few KiB.
        let input = vec![0u8; 64 << 20];
        for c in all() {
            let mut compressed = BytesMut::new();
            c.compress(&input, &mut compressed).unwrap();
            assert!(compressed.len() < 1 << 20, "{}", c.name());
            let mut out = BytesMut::new();
            c.decompress(&compressed, &mut out, 1000).unwrap();
            assert_eq!(out.len(), 1001, "{} inflates at most limit + 1", c.name());
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for c in all() {
            let mut out = BytesMut::new();
            assert!(
                c.decompress(b"not compressed at all", &mut out, 1000)
                    .is_err(),
                "{}",
                c.name()
            );
        }
    }

    #[test]
    fn accept_encoding_matching() {
        let v = HeaderValue::from_static("identity, GZIP ,zstd");
        assert!(accepts(Some(&v), "gzip"));
        assert!(accepts(Some(&v), "zstd"));
        assert!(!accepts(Some(&v), "deflate"));
        assert!(!accepts(None, "gzip"));
    }

    #[test]
    fn registry_lists_the_built_ins() {
        let names = registered_names();
        #[cfg(feature = "gzip")]
        assert!(names.contains(&"gzip"));
        assert_eq!(
            registry().accept_encoding().to_str().unwrap(),
            names.join(",")
        );
    }
}
