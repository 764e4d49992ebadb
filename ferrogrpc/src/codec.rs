//! Codecs turn messages into bytes and back, as gRPC-Go's `encoding.Codec`.
//!
//! The protobuf codec ([`ProstCodec`], on by the default `prost` feature) is
//! what generated code uses. Any type implementing [`Codec`] can be used with
//! the call APIs of [`Channel`](crate::client::Channel) and the handler
//! helpers of [`server`](crate::server), e.g. for JSON or raw bytes.

use bytes::{Bytes, BytesMut};

use crate::status::Status;

/// Encodes messages of type `E` and decodes messages of type `D`.
///
/// A codec is created once per call (it is usually a zero-sized type), so it
/// may keep per-call state.
pub trait Codec<E, D>: Send + 'static {
    /// The content-subtype this codec speaks, sent as
    /// `application/grpc+<name>`; `"proto"` is sent as plain `application/grpc`.
    fn name(&self) -> &'static str {
        "proto"
    }

    /// The exact encoded length of `item`, if cheap to know; lets the
    /// library size buffers exactly. Default: unknown.
    fn encoded_len(&mut self, item: &E) -> Option<usize> {
        let _ = item;
        None
    }

    /// Appends the encoding of `item` to `dst`.
    ///
    /// # Errors
    /// A status (usually `INTERNAL`) when the message cannot be encoded.
    fn encode(&mut self, item: &E, dst: &mut BytesMut) -> Result<(), Status>;

    /// Decodes one whole message.
    ///
    /// # Errors
    /// A status (usually `INTERNAL`) when the bytes are not a valid message.
    fn decode(&mut self, src: Bytes) -> Result<D, Status>;
}

/// A boxed encoder of one message into its framed bytes (compressed when
/// given a compression), as held by the sinks of streaming calls.
pub(crate) type EncodeFn<T> = Box<
    dyn FnMut(
            &T,
            Option<&crate::transport::frame::SendCompression>,
        ) -> Result<crate::transport::frame::Encoded, Status>
        + Send,
>;

/// The protobuf codec, backed by prost.
#[cfg(feature = "prost")]
#[derive(Debug, Clone, Copy, Default)]
pub struct ProstCodec;

#[cfg(feature = "prost")]
impl<E, D> Codec<E, D> for ProstCodec
where
    E: prost::Message,
    D: prost::Message + Default,
{
    fn encoded_len(&mut self, item: &E) -> Option<usize> {
        Some(item.encoded_len())
    }

    fn encode(&mut self, item: &E, dst: &mut BytesMut) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("failed to encode message: {e}")))
    }

    fn decode(&mut self, src: Bytes) -> Result<D, Status> {
        D::decode(src).map_err(|e| Status::internal(format!("failed to decode message: {e}")))
    }
}

/// A codec that passes message bytes through unchanged, for proxies and
/// tests that handle encoded messages themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

impl Codec<Bytes, Bytes> for BytesCodec {
    fn encoded_len(&mut self, item: &Bytes) -> Option<usize> {
        Some(item.len())
    }

    fn encode(&mut self, item: &Bytes, dst: &mut BytesMut) -> Result<(), Status> {
        dst.extend_from_slice(item);
        Ok(())
    }

    fn decode(&mut self, src: Bytes) -> Result<Bytes, Status> {
        Ok(src)
    }
}
