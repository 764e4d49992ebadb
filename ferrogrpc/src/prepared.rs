//! [`PreparedMsg`]: a message encoded and compressed once, to be sent on
//! many streams (gRPC-Go's `grpc.PreparedMsg`, `preloader.go`).

use std::{fmt, marker::PhantomData};

use bytes::{Bytes, BytesMut};

use crate::{
    codec::Codec,
    encoding,
    status::Status,
    transport::frame::{self, Encoded},
};

/// A message of type `T` already encoded by a codec and, if asked,
/// compressed, with its gRPC message prefix: ready to be sent as it is on
/// any number of streams, without encoding it again. Cloning it is cheap
/// (the bytes are shared).
///
/// Typical use is a fan-out: a server holding many
/// [`ResponseSink`](crate::server::ResponseSink)s (subscribers to a feed)
/// prepares each update once with [`ResponseSink::prepare`](crate::server::ResponseSink::prepare)
/// and sends it to every subscriber with
/// [`send_prepared`](crate::server::ResponseSink::send_prepared); a client
/// does the same with
/// [`RequestSink::prepare`](crate::client::RequestSink::prepare) and
/// [`send_prepared`](crate::client::RequestSink::send_prepared).
///
/// # Which streams it fits
///
/// A prepared message is tied to what it was prepared with: the codec's
/// content-subtype ([`codec`](Self::codec)) and the compression algorithm
/// ([`compression`](Self::compression), `None` for none). As in gRPC-Go,
/// the message is meant for streams with the settings of the stream (or the
/// arguments) it was prepared with. Sending it on a stream whose codec or
/// compression for that message differs fails the send with `INTERNAL`
/// instead of sending bytes the peer would misread; prepare one message per
/// kind of stream. A stream's compression for a message is its call's
/// algorithm, or none once `set_message_compression(false)` turned
/// compression off. On the server, the algorithm of a call is decided
/// from the handler's choice and what the client accepts, so two
/// subscribers may need different prepared messages.
///
/// The max send message size of each stream still applies, to the
/// message's length before compression: a larger prepared message fails
/// the send with `RESOURCE_EXHAUSTED`.
///
/// Interceptor hooks and stats handlers see a sent prepared message as a
/// [`PreparedMsg<T>`], not as a `T` (gRPC-Go hands them the `PreparedMsg`
/// too).
pub struct PreparedMsg<T> {
    /// Prefix and (possibly compressed) message.
    frame: Bytes,
    /// The message's length before compression.
    plain_len: usize,
    codec: &'static str,
    compression: Option<&'static str>,
    _message: PhantomData<fn(&T)>,
}

impl<T> Clone for PreparedMsg<T> {
    fn clone(&self) -> Self {
        PreparedMsg {
            frame: self.frame.clone(),
            plain_len: self.plain_len,
            codec: self.codec,
            compression: self.compression,
            _message: PhantomData,
        }
    }
}

impl<T> fmt::Debug for PreparedMsg<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedMsg")
            .field("codec", &self.codec)
            .field("compression", &self.compression)
            .field("len", &self.plain_len)
            .field("wire_len", &self.frame.len())
            .finish()
    }
}

impl<T> PreparedMsg<T> {
    /// Encodes `message` with `codec` and compresses it with the registered
    /// algorithm `compression` (`None` or `"identity"` for none), apart from
    /// any stream. The message is compressed when it is at least
    /// [`DEFAULT_MIN_COMPRESS_SIZE`](encoding::DEFAULT_MIN_COMPRESS_SIZE)
    /// bytes long and compressing makes it smaller, as on a stream with
    /// default settings. It fits the streams using a codec of the same
    /// [`name`](Codec::name) and the same compression.
    ///
    /// `D` is the codec's other type (what it decodes), which plays no part
    /// here; with a codec implemented for many pairs of types, such as
    /// [`ProstCodec`](crate::codec::ProstCodec), name one:
    ///
    /// ```
    /// # #[cfg(feature = "gzip")] {
    /// use ferrogrpc::{codec::ProstCodec, PreparedMsg};
    ///
    /// let note = "hello ".repeat(100);
    /// let prepared =
    ///     PreparedMsg::encode::<_, ()>(&mut ProstCodec, &note, Some("gzip")).unwrap();
    /// assert_eq!(prepared.compression(), Some("gzip"));
    /// assert!(prepared.is_compressed());
    /// # }
    /// ```
    ///
    /// To prepare a message for the settings of a given stream, use the
    /// sink's `prepare` instead.
    ///
    /// # Errors
    /// `INTERNAL` when `compression` is not a registered algorithm, or the
    /// codec or compressor fails; `RESOURCE_EXHAUSTED` for a message over
    /// the 4 GiB frame limit.
    pub fn encode<C, D>(
        codec: &mut C,
        message: &T,
        compression: Option<&str>,
    ) -> Result<PreparedMsg<T>, Status>
    where
        C: Codec<T, D>,
    {
        let compression = match compression {
            None => None,
            Some(name) => encoding::send_compression(name, encoding::DEFAULT_MIN_COMPRESS_SIZE)
                .map_err(|name| {
                    Status::internal(format!(
                        "cannot prepare a message compressed with {name:?}: \
                             no such compressor is registered"
                    ))
                })?,
        };
        let mut buf = BytesMut::new();
        let encoded =
            frame::encode_into(codec, message, usize::MAX, compression.as_ref(), &mut buf)?;
        let compression = compression.map(|c| c.compressor.name());
        Ok(PreparedMsg::from_encoded(
            encoded,
            codec.name(),
            compression,
        ))
    }

    /// A message a sink encoded, for a stream of `codec` compressing with
    /// `compression`.
    pub(crate) fn from_encoded(
        encoded: Encoded,
        codec: &'static str,
        compression: Option<&'static str>,
    ) -> PreparedMsg<T> {
        PreparedMsg {
            frame: encoded.frame,
            plain_len: encoded.plain_len,
            codec,
            compression,
            _message: PhantomData,
        }
    }

    /// The content-subtype of the codec that encoded it (`"proto"` for
    /// protobuf).
    pub fn codec(&self) -> &'static str {
        self.codec
    }

    /// The compression algorithm it was prepared for, `None` for none. The
    /// message itself may still be uncompressed (too short, or compressing
    /// did not make it smaller), which gRPC allows on a compressed stream.
    pub fn compression(&self) -> Option<&'static str> {
        self.compression
    }

    /// The encoded message's length before compression.
    pub fn len(&self) -> usize {
        self.plain_len
    }

    /// Whether the encoded message is empty (as an all-default protobuf
    /// message is).
    pub fn is_empty(&self) -> bool {
        self.plain_len == 0
    }

    /// Whether the bytes that go out are compressed.
    pub fn is_compressed(&self) -> bool {
        self.frame.first() == Some(&1)
    }

    /// The length before compression, and the framed bytes.
    pub(crate) fn parts(&self) -> (usize, &Bytes) {
        (self.plain_len, &self.frame)
    }

    /// The bytes to send on a stream of `codec`, compressing this message
    /// with `compression`, that sends messages of at most `max_send` bytes.
    ///
    /// # Errors
    /// `INTERNAL` naming both sides when codec or compression differ;
    /// `RESOURCE_EXHAUSTED` when the message is over `max_send`.
    pub(crate) fn frame_for(
        &self,
        codec: &str,
        compression: Option<&str>,
        max_send: usize,
    ) -> Result<Bytes, Status> {
        if self.codec != codec || self.compression != compression {
            return Err(Status::internal(format!(
                "prepared message does not fit this stream: it was encoded with \
                 codec {:?} and compression {:?}, the stream sends with codec {codec:?} \
                 and compression {:?}",
                self.codec,
                self.compression.unwrap_or("identity"),
                compression.unwrap_or("identity"),
            )));
        }
        if self.plain_len > max_send {
            return Err(Status::resource_exhausted(format!(
                "trying to send message larger than max ({} vs. {max_send} bytes)",
                self.plain_len
            )));
        }
        Ok(self.frame.clone())
    }
}

#[cfg(all(test, feature = "prost", feature = "gzip"))]
mod tests {
    use super::*;
    use crate::codec::ProstCodec;

    fn text(len: usize) -> String {
        "a".repeat(len)
    }

    #[test]
    fn encodes_and_compresses_once() {
        let msg = text(1000);
        let plain = PreparedMsg::<String>::encode::<_, String>(&mut ProstCodec, &msg, None)
            .expect("plain message");
        assert_eq!((plain.codec(), plain.compression()), ("proto", None));
        assert!(!plain.is_compressed());
        assert_eq!(plain.len(), 1003); // tag, two-byte length, text

        let gzip = PreparedMsg::<String>::encode::<_, String>(&mut ProstCodec, &msg, Some("gzip"))
            .unwrap();
        assert_eq!(gzip.compression(), Some("gzip"));
        assert!(gzip.is_compressed());
        assert!(gzip.parts().1.len() < plain.parts().1.len());

        // "identity" is no compression.
        let identity =
            PreparedMsg::<String>::encode::<_, String>(&mut ProstCodec, &msg, Some("identity"))
                .unwrap();
        assert_eq!(identity.compression(), None);
    }

    #[test]
    fn a_stream_of_other_settings_or_a_lower_limit_is_refused() {
        let msg =
            PreparedMsg::<String>::encode::<_, String>(&mut ProstCodec, &text(1000), Some("gzip"))
                .unwrap();
        assert!(msg.frame_for("proto", Some("gzip"), usize::MAX).is_ok());
        let err = msg.frame_for("proto", None, usize::MAX).unwrap_err();
        assert_eq!(err.code(), crate::Code::Internal);
        assert!(err.message().contains("\"gzip\""), "{}", err.message());
        let err = msg.frame_for("json", Some("gzip"), usize::MAX).unwrap_err();
        assert_eq!(err.code(), crate::Code::Internal);
        let err = msg.frame_for("proto", Some("gzip"), 1002).unwrap_err();
        assert_eq!(err.code(), crate::Code::ResourceExhausted);
    }

    #[test]
    fn an_unknown_compressor_is_an_error() {
        let err =
            PreparedMsg::<String>::encode::<_, String>(&mut ProstCodec, &text(1), Some("nope"))
                .unwrap_err();
        assert_eq!(err.code(), crate::Code::Internal);
    }
}
