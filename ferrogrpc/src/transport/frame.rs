//! gRPC message framing: each message is a 1-byte compressed flag, a 4-byte
//! big-endian length and the message bytes. Messages may split across DATA
//! frames at any byte and several may share one frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use std::sync::Arc;

use crate::{codec::Codec, encoding::Compressor, status::Status};

/// Length of the prefix before each message.
pub(crate) const HEADER_LEN: usize = 5;

/// One received message, still encoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RawMessage {
    /// Whether the compressed flag was set.
    pub(crate) compressed: bool,
    /// The message bytes, without the prefix.
    pub(crate) data: Bytes,
}

/// Reassembles messages from DATA frame chunks.
///
/// A message that lies whole inside one chunk is sliced out of it without a
/// copy; only a message that spans chunks is copied into `partial`.
pub(crate) struct Deframer {
    /// The unconsumed rest of the last chunk.
    pending: Bytes,
    /// A message (prefix included) that spans chunks, as far as received.
    partial: BytesMut,
    /// Length of the message in `partial`, once its prefix is complete.
    partial_len: Option<usize>,
    max_len: usize,
}

fn parse_header(header: &[u8], max_len: usize) -> Result<(bool, usize), Status> {
    let compressed = match header[0] {
        0 => false,
        1 => true,
        flag => {
            return Err(Status::internal(format!(
                "malformed message prefix: compressed flag is {flag}, not 0 or 1"
            )))
        }
    };
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > max_len {
        return Err(Status::resource_exhausted(format!(
            "received message larger than max ({len} vs. {max_len} bytes)"
        )));
    }
    Ok((compressed, len))
}

impl Deframer {
    pub(crate) fn new(max_len: usize) -> Deframer {
        Deframer {
            pending: Bytes::new(),
            partial: BytesMut::new(),
            partial_len: None,
            max_len,
        }
    }

    /// Adds a received chunk. Call only after [`next`](Self::next) returned
    /// `Ok(None)`, i.e. when everything before was consumed.
    pub(crate) fn push(&mut self, chunk: Bytes) {
        debug_assert!(self.pending.is_empty());
        self.pending = chunk;
    }

    /// The next whole message, or `None` when more data is needed.
    pub(crate) fn next(&mut self) -> Result<Option<RawMessage>, Status> {
        if self.partial.is_empty() {
            if self.pending.len() >= HEADER_LEN {
                let (compressed, len) = parse_header(&self.pending[..HEADER_LEN], self.max_len)?;
                if self.pending.len() >= HEADER_LEN + len {
                    let mut data = self.pending.split_to(HEADER_LEN + len);
                    data.advance(HEADER_LEN);
                    return Ok(Some(RawMessage { compressed, data }));
                }
                self.partial_len = Some(len);
                // Grow towards the full message, but not all at once for a
                // peer that announces a large message and sends little.
                self.partial.reserve((HEADER_LEN + len).min(1 << 20));
            }
            if self.pending.is_empty() {
                return Ok(None);
            }
            self.partial.extend_from_slice(&self.pending);
            self.pending.clear();
            return Ok(None);
        }
        if self.partial_len.is_none() {
            let want = HEADER_LEN - self.partial.len();
            let take = want.min(self.pending.len());
            self.partial.put_slice(&self.pending[..take]);
            self.pending.advance(take);
            if self.partial.len() < HEADER_LEN {
                return Ok(None);
            }
            let (_, len) = parse_header(&self.partial[..HEADER_LEN], self.max_len)?;
            self.partial_len = Some(len);
            self.partial.reserve(len.min(1 << 20));
        }
        let total = HEADER_LEN + self.partial_len.unwrap_or(0);
        let take = (total - self.partial.len()).min(self.pending.len());
        self.partial.put_slice(&self.pending[..take]);
        self.pending.advance(take);
        if self.partial.len() < total {
            return Ok(None);
        }
        self.partial_len = None;
        let mut data = self.partial.split().freeze();
        let compressed = data[0] == 1;
        data.advance(HEADER_LEN);
        Ok(Some(RawMessage { compressed, data }))
    }

    /// Checks, at the end of the stream, that no message was cut off.
    pub(crate) fn finish(&self) -> Result<(), Status> {
        let left = self.partial.len() + self.pending.len();
        if left == 0 {
            return Ok(());
        }
        Err(match self.partial_len {
            Some(len) => Status::internal(format!(
                "stream ended inside a message: got {} of {len} bytes",
                left - HEADER_LEN
            )),
            None => Status::internal(format!(
                "stream ended inside a message prefix: got {left} of {HEADER_LEN} bytes"
            )),
        })
    }
}

/// How messages of one call are compressed when sent.
#[derive(Clone)]
pub(crate) struct SendCompression {
    pub(crate) compressor: Arc<dyn Compressor>,
    /// Messages shorter than this go uncompressed.
    pub(crate) min_size: usize,
}

/// Encodes one message with its prefix, refusing messages over `max_len`
/// (the uncompressed size). With `compression`, the message is compressed
/// when it is at least `min_size` bytes and compressing makes it smaller;
/// otherwise it goes with flag 0.
pub(crate) fn encode<C, E, D>(
    codec: &mut C,
    item: &E,
    max_len: usize,
    compression: Option<&SendCompression>,
) -> Result<Encoded, Status>
where
    C: Codec<E, D>,
{
    let mut buf = BytesMut::new();
    encode_into(codec, item, max_len, compression, &mut buf)
}

/// As [`encode`], writing into `buf`, whose spare capacity is reused from
/// call to call (a stream's messages then cost no allocation once the
/// earlier frames have been sent and dropped).
pub(crate) fn encode_into<C, E, D>(
    codec: &mut C,
    item: &E,
    max_len: usize,
    compression: Option<&SendCompression>,
    buf: &mut BytesMut,
) -> Result<Encoded, Status>
where
    C: Codec<E, D>,
{
    let hint = codec.encoded_len(item);
    buf.clear();
    buf.reserve(HEADER_LEN + hint.unwrap_or(64));
    buf.put_bytes(0, HEADER_LEN);
    codec.encode(item, buf)?;
    let len = buf.len() - HEADER_LEN;
    if len > max_len {
        return Err(Status::resource_exhausted(format!(
            "trying to send message larger than max ({len} vs. {max_len} bytes)"
        )));
    }
    if let Some(c) = compression.filter(|c| len >= c.min_size.max(1)) {
        let mut out = BytesMut::with_capacity(HEADER_LEN + len / 2);
        out.put_bytes(0, HEADER_LEN);
        c.compressor
            .compress(&buf[HEADER_LEN..], &mut out)
            .map_err(|e| {
                Status::internal(format!(
                    "failed to compress message with {}: {e}",
                    c.compressor.name()
                ))
            })?;
        if out.len() < buf.len() {
            out[0] = 1;
            buf.clear();
            return finish_prefix(out, len);
        }
    }
    finish_prefix(buf.split(), len)
}

/// An encoded message, ready for the wire.
#[derive(Debug)]
pub(crate) struct Encoded {
    /// Prefix and (possibly compressed) message.
    pub(crate) frame: Bytes,
    /// The message's length before compression.
    pub(crate) plain_len: usize,
}

fn finish_prefix(mut buf: BytesMut, plain_len: usize) -> Result<Encoded, Status> {
    let len = buf.len() - HEADER_LEN;
    let len32 = u32::try_from(len).map_err(|_| {
        Status::resource_exhausted(format!(
            "message of {len} bytes exceeds the 4 GiB frame limit"
        ))
    })?;
    buf[1..HEADER_LEN].copy_from_slice(&len32.to_be_bytes());
    Ok(Encoded {
        frame: buf.freeze(),
        plain_len,
    })
}

/// Decompresses a received message, failing with `RESOURCE_EXHAUSTED` as
/// soon as it inflates past `max_len`.
pub(crate) fn decompress(
    compressor: &dyn Compressor,
    data: &[u8],
    max_len: usize,
) -> Result<Bytes, Status> {
    let mut out =
        BytesMut::with_capacity((data.len() * 4).min(max_len.saturating_add(1)).min(1 << 20));
    compressor
        .decompress(data, &mut out, max_len)
        .map_err(|e| {
            Status::internal(format!(
                "failed to decompress message with {}: {e}",
                compressor.name()
            ))
        })?;
    if out.len() > max_len {
        return Err(Status::resource_exhausted(format!(
            "received message after decompression larger than max ({} vs. {max_len} bytes)",
            if out.len() == max_len + 1 {
                format!("more than {max_len}")
            } else {
                out.len().to_string()
            }
        )));
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::Code;
    use proptest::prelude::*;

    fn frame(flag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![flag];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// Feeds `wire` in chunks of the given sizes; returns the messages.
    fn deframe(wire: &[u8], cuts: &[usize], max: usize) -> Result<Vec<Vec<u8>>, Status> {
        let mut d = Deframer::new(max);
        let mut out = Vec::new();
        let mut rest = wire;
        let mut cuts = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cuts.next().unwrap()).clamp(1, rest.len());
            d.push(Bytes::copy_from_slice(&rest[..n]));
            rest = &rest[n..];
            while let Some(m) = d.next()? {
                out.push(m.data.to_vec());
            }
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn several_messages_in_one_chunk() {
        let mut wire = frame(0, b"abc");
        wire.extend(frame(0, b""));
        wire.extend(frame(0, b"de"));
        let got = deframe(&wire, &[wire.len()], 100).unwrap();
        assert_eq!(got, vec![b"abc".to_vec(), vec![], b"de".to_vec()]);
    }

    #[test]
    fn cut_off_message_is_internal() {
        let wire = frame(0, b"abcdef");
        let err = deframe(&wire[..8], &[3], 100).unwrap_err();
        assert_eq!(err.code(), Code::Internal);
        assert!(err.message().contains("got 3 of 6"), "{}", err.message());
        let err = deframe(&wire[..2], &[1], 100).unwrap_err();
        assert!(err.message().contains("prefix"), "{}", err.message());
    }

    #[test]
    fn oversize_is_resource_exhausted_before_buffering() {
        let mut d = Deframer::new(10);
        d.push(Bytes::from_static(&[0, 0, 0, 0, 11]));
        let err = d.next().unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        // Even a 4 GiB announcement buffers nothing.
        let mut d = Deframer::new(4 << 20);
        d.push(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff]));
        assert_eq!(d.next().unwrap_err().code(), Code::ResourceExhausted);
    }

    #[test]
    fn bad_flag_is_internal() {
        let err = deframe(&frame(2, b"x"), &[1], 100).unwrap_err();
        assert_eq!(err.code(), Code::Internal);
        assert!(err.message().contains("flag is 2"));
    }

    #[test]
    fn encode_prefixes_and_limits() {
        let mut codec = crate::codec::BytesCodec;
        let b = encode(&mut codec, &Bytes::from_static(b"hey"), 3, None)
            .unwrap()
            .frame;
        assert_eq!(&b[..], &frame(0, b"hey")[..]);
        let err = encode(&mut codec, &Bytes::from_static(b"hey!"), 3, None).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
    }

    #[cfg(feature = "gzip")]
    #[test]
    fn compression_only_when_it_pays() {
        let mut codec = crate::codec::BytesCodec;
        let gzip = SendCompression {
            compressor: Arc::new(crate::encoding::Gzip),
            min_size: 16,
        };
        // Compressible and large enough: flag 1, smaller.
        let zeros = Bytes::from(vec![0u8; 1000]);
        let b = encode(&mut codec, &zeros, usize::MAX, Some(&gzip))
            .unwrap()
            .frame;
        assert_eq!(b[0], 1);
        assert!(b.len() < 100);
        let back = decompress(&crate::encoding::Gzip, &b[HEADER_LEN..], 1000).unwrap();
        assert_eq!(back, zeros);
        // Under the threshold: flag 0.
        let b = encode(
            &mut codec,
            &Bytes::from_static(b"tiny"),
            usize::MAX,
            Some(&gzip),
        )
        .unwrap()
        .frame;
        assert_eq!(&b[..], &frame(0, b"tiny")[..]);
        // Incompressible: flag 0, sent as is.
        let noise: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        let b = encode(
            &mut codec,
            &Bytes::from(noise.clone()),
            usize::MAX,
            Some(&gzip),
        )
        .unwrap()
        .frame;
        assert_eq!(&b[..], &frame(0, &noise)[..]);
        // Inflating past the limit fails.
        let big = encode(&mut codec, &zeros, usize::MAX, Some(&gzip))
            .unwrap()
            .frame;
        let err = decompress(&crate::encoding::Gzip, &big[HEADER_LEN..], 999).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
    }

    proptest! {
        #[test]
        fn any_chunking_yields_the_same_messages(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            cuts in proptest::collection::vec(1usize..400, 1..10),
        ) {
            let mut wire = Vec::new();
            for m in &msgs {
                wire.extend(frame(0, m));
            }
            let got = deframe(&wire, &cuts, 1000).unwrap();
            prop_assert_eq!(got, msgs);
        }

        #[test]
        fn garbage_never_panics(
            wire in proptest::collection::vec(any::<u8>(), 0..200),
            cuts in proptest::collection::vec(1usize..50, 1..5),
        ) {
            let _ = deframe(&wire, &cuts, 64);
        }
    }
}
