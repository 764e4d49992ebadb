//! Entry points for the fuzz targets in `fuzz/` at the repository root.
//!
//! Compiled only with `--cfg fuzzing` (which `cargo fuzz` sets) and hidden
//! from the docs: this is not API. Each item is a thin wrapper over an
//! internal parser of peer input, so the targets exercise the library's own
//! code rather than a copy of it. (Whole connections need nothing here: the
//! targets use `Server::serve_connection` and `ChannelBuilder::dialer`.)

#![allow(missing_docs, clippy::missing_errors_doc)]

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use crate::{
    codec::BytesCodec,
    encoding::Compressor,
    metadata::MetadataMap,
    serviceconfig::ServiceConfig,
    status::{RetryPushback, Status},
    transport::{frame, http_util},
};

/// Length of the gRPC message prefix (flag and 4-byte length).
pub const MESSAGE_PREFIX_LEN: usize = frame::HEADER_LEN;

/// The receiver's message deframer (`transport::frame::Deframer`).
pub struct Deframer(frame::Deframer);

impl Deframer {
    pub fn new(max_len: usize) -> Deframer {
        Deframer(frame::Deframer::new(max_len))
    }

    /// Adds a chunk; call only after `next` returned `Ok(None)`.
    pub fn push(&mut self, chunk: Bytes) {
        self.0.push(chunk);
    }

    /// The next message as (compressed flag, bytes), or `None` for more data.
    pub fn next(&mut self) -> Result<Option<(bool, Bytes)>, Status> {
        Ok(self.0.next()?.map(|m| (m.compressed, m.data)))
    }

    pub fn finish(&self) -> Result<(), Status> {
        self.0.finish()
    }
}

/// Decompresses one received message as the receiver does, bounded by
/// `max_len` (`transport::frame::decompress`).
pub fn decompress(
    compressor: &dyn Compressor,
    data: &[u8],
    max_len: usize,
) -> Result<Bytes, Status> {
    frame::decompress(compressor, data, max_len)
}

/// Frames (and, with a registered compressor name, maybe compresses) one
/// message as the sender does (`transport::frame::encode`).
pub fn encode_message(
    message: &[u8],
    max_len: usize,
    compression: Option<(&str, usize)>,
) -> Result<Bytes, Status> {
    let compression = match compression {
        Some((name, min_size)) => crate::encoding::send_compression(name, min_size)
            .map_err(|name| Status::unimplemented(format!("no compressor {name}")))?,
        None => None,
    };
    frame::encode(
        &mut BytesCodec,
        &Bytes::copy_from_slice(message),
        max_len,
        compression.as_ref(),
    )
    .map(|e| e.frame)
}

pub fn parse_timeout(raw: &[u8]) -> Result<Duration, String> {
    http_util::parse_timeout(raw)
}

pub fn encode_timeout(timeout: Duration) -> HeaderValue {
    http_util::encode_timeout(timeout)
}

pub fn is_grpc_content_type(value: &[u8]) -> bool {
    http_util::is_grpc_content_type(value)
}

pub fn percent_encode(message: &str) -> String {
    crate::status::percent_encode(message).into_owned()
}

pub fn percent_decode(raw: &[u8]) -> String {
    crate::status::percent_decode(raw)
}

pub fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    crate::metadata::decode_base64(text).ok()
}

pub fn encode_base64(value: &[u8]) -> HeaderValue {
    crate::metadata::encode_base64(value)
}

/// Received headers taken as metadata (`MetadataMap::from_received`).
pub fn metadata_from_received(headers: HeaderMap) -> Result<MetadataMap, Status> {
    MetadataMap::from_received(headers)
}

/// Metadata written out as headers are sent (`MetadataMap::write_to`).
pub fn metadata_write_to(metadata: &MetadataMap, out: &mut HeaderMap) -> Result<(), Status> {
    metadata.write_to(out)
}

/// A status read from received trailers (`grpc-status`, `grpc-message`,
/// `grpc-status-details-bin`, `grpc-retry-pushback-ms`, the rest as metadata).
pub fn status_from_trailers(trailers: HeaderMap) -> Status {
    http_util::status_from_trailers(trailers)
}

/// A status written into trailers as a sender does.
pub fn write_status(status: Status, out: &mut HeaderMap) -> Result<(), Status> {
    http_util::write_status(status, out)
}

pub fn parse_retry_pushback(raw: &[u8]) -> RetryPushback {
    RetryPushback::parse(raw)
}

/// The compressor named by a received `grpc-encoding`.
pub fn decompressor_for(
    header: Option<&HeaderValue>,
) -> Result<Option<Arc<dyn Compressor>>, String> {
    crate::encoding::decompressor_for(header)
}

/// Whether `name` is listed in a received `grpc-accept-encoding`.
pub fn accepts_encoding(accept_encoding: Option<&HeaderValue>, name: &str) -> bool {
    crate::encoding::accepts(accept_encoding, name)
}

/// The service config a client in `language` on `hostname`, having drawn
/// `draw` (0..100), takes from the TXT records of `_grpc_config.<host>`.
pub fn dns_txt_service_config(
    records: &[String],
    language: &str,
    hostname: Option<&str>,
    draw: u32,
) -> Option<Result<ServiceConfig, String>> {
    crate::resolver::dns::service_config(records, language, hostname, draw)
}
