//! The outcome of an RPC: a [`Code`], a message, optional details and
//! trailing metadata.
//!
//! A `Status` returned as an error never carries [`Code::Ok`]; when a handler
//! returns one anyway, the server sends `UNKNOWN` and says so in the message.

use std::{borrow::Cow, fmt, time::Duration};

use bytes::Bytes;

use crate::{codes::Code, metadata::MetadataMap};

/// The outcome of an RPC, as sent in `grpc-status`, `grpc-message` and
/// `grpc-status-details-bin`, plus any other trailing metadata.
///
/// Boxed inside so that `Result<T, Status>` stays small.
#[derive(Clone)]
pub struct Status(Box<Inner>);

#[derive(Clone)]
struct Inner {
    code: Code,
    message: String,
    details: Bytes,
    metadata: MetadataMap,
    /// The call never reached the server's application, so the library may
    /// retry it at once on another connection (gRFC A6 transparent retry).
    transparent_retry: bool,
    /// The server's word on retrying (`grpc-retry-pushback-ms`).
    pushback: Option<RetryPushback>,
    /// Client: what is known of the failed call (boxed: most statuses,
    /// the server's OK among them, carry none).
    call: Option<Box<FailedCall>>,
}

/// Client: the response headers and the connection of a failed call.
#[derive(Clone, Default)]
struct FailedCall {
    headers: Option<MetadataMap>,
    peer: Option<std::sync::Arc<crate::peer::Peer>>,
}

/// What a server tells a client about retrying a failed call (gRFC A6
/// pushback), sent in the `grpc-retry-pushback-ms` trailer.
///
/// It applies only to calls whose service config has a retry or hedging
/// policy; it never makes a call retried that would not be otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryPushback {
    /// Retry after this delay instead of the policy's backoff (sent in whole
    /// milliseconds, at most `i32::MAX`).
    After(Duration),
    /// Do not retry this call.
    Never,
}

impl RetryPushback {
    /// Reads a `grpc-retry-pushback-ms` value: a non-negative number of
    /// milliseconds; anything else (negative, malformed) means never.
    pub(crate) fn parse(raw: &[u8]) -> RetryPushback {
        std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(|ms| u64::try_from(ms).ok())
            .map_or(RetryPushback::Never, |ms| {
                RetryPushback::After(Duration::from_millis(ms))
            })
    }

    /// The `grpc-retry-pushback-ms` value.
    pub(crate) fn to_header(self) -> http::HeaderValue {
        match self {
            RetryPushback::Never => http::HeaderValue::from_static("-1"),
            RetryPushback::After(d) => {
                let ms = d.as_millis().min(i32::MAX as u128);
                http::HeaderValue::from(ms as u32)
            }
        }
    }
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $code:ident,)*) => {
        $(
            $(#[$doc])*
            pub fn $name(message: impl Into<String>) -> Status {
                Status::new(Code::$code, message)
            }
        )*
    };
}

impl Status {
    /// A status with a code and a human-readable message.
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status(Box::new(Inner {
            code,
            message: message.into(),
            details: Bytes::new(),
            metadata: MetadataMap::new(),
            transparent_retry: false,
            pushback: None,
            call: None,
        }))
    }

    /// On the client: the response header metadata of a call that failed
    /// after the server sent headers — with the trailers in
    /// [`metadata`](Self::metadata), what gRPC-Go's `grpc.Header` and
    /// `grpc.Trailer` call options give on a failed call. `None` when the
    /// server sent none (a Trailers-Only answer, or a failure before any
    /// answer).
    pub fn response_headers(&self) -> Option<&MetadataMap> {
        self.0.call.as_ref().and_then(|c| c.headers.as_ref())
    }

    /// On the client: the two ends of the connection a failed call ran on
    /// (gRPC-Go's `grpc.Peer` call option); `None` when the call failed
    /// before it had a connection.
    pub fn peer(&self) -> Option<&crate::peer::Peer> {
        self.0.call.as_ref().and_then(|c| c.peer.as_deref())
    }

    pub(crate) fn with_response_headers(mut self, headers: MetadataMap) -> Status {
        if !headers.is_empty() {
            self.0.call.get_or_insert_with(Default::default).headers = Some(headers);
        }
        self
    }

    pub(crate) fn with_peer(mut self, peer: &std::sync::Arc<crate::peer::Peer>) -> Status {
        self.0.call.get_or_insert_with(Default::default).peer = Some(std::sync::Arc::clone(peer));
        self
    }

    /// A status with binary details: the encoded `google.rpc.Status` message
    /// sent in `grpc-status-details-bin`. Its code and message should match
    /// `code` and `message`.
    pub fn with_details(code: Code, message: impl Into<String>, details: Bytes) -> Status {
        let mut status = Status::new(code, message);
        status.0.details = details;
        status
    }

    constructors! {
        /// A `CANCELLED` status.
        cancelled => Cancelled,
        /// An `UNKNOWN` status.
        unknown => Unknown,
        /// An `INVALID_ARGUMENT` status.
        invalid_argument => InvalidArgument,
        /// A `DEADLINE_EXCEEDED` status.
        deadline_exceeded => DeadlineExceeded,
        /// A `NOT_FOUND` status.
        not_found => NotFound,
        /// An `ALREADY_EXISTS` status.
        already_exists => AlreadyExists,
        /// A `PERMISSION_DENIED` status.
        permission_denied => PermissionDenied,
        /// A `RESOURCE_EXHAUSTED` status.
        resource_exhausted => ResourceExhausted,
        /// A `FAILED_PRECONDITION` status.
        failed_precondition => FailedPrecondition,
        /// An `ABORTED` status.
        aborted => Aborted,
        /// An `OUT_OF_RANGE` status.
        out_of_range => OutOfRange,
        /// An `UNIMPLEMENTED` status.
        unimplemented => Unimplemented,
        /// An `INTERNAL` status.
        internal => Internal,
        /// An `UNAVAILABLE` status.
        unavailable => Unavailable,
        /// A `DATA_LOSS` status.
        data_loss => DataLoss,
        /// An `UNAUTHENTICATED` status.
        unauthenticated => Unauthenticated,
    }

    /// The status code.
    pub fn code(&self) -> Code {
        self.0.code
    }

    /// The message, as text for a developer (not an end user).
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The binary details (an encoded `google.rpc.Status`), empty if none.
    pub fn details(&self) -> &Bytes {
        &self.0.details
    }

    /// Trailing metadata sent or received with this status.
    pub fn metadata(&self) -> &MetadataMap {
        &self.0.metadata
    }

    /// Mutable trailing metadata, to send extra trailers with an error.
    pub fn metadata_mut(&mut self) -> &mut MetadataMap {
        &mut self.0.metadata
    }

    /// Returns this status with `metadata` as its trailing metadata.
    pub fn with_metadata(mut self, metadata: MetadataMap) -> Status {
        self.0.metadata = metadata;
        self
    }

    /// Returns this status telling a retrying client to make its next
    /// attempt after `delay` (gRFC A6 pushback; a client with no retry
    /// policy ignores it).
    pub fn with_retry_pushback(mut self, delay: Duration) -> Status {
        self.0.pushback = Some(RetryPushback::After(delay));
        self
    }

    /// Returns this status telling a retrying client not to retry the call
    /// (gRFC A6 pushback).
    pub fn without_retry(mut self) -> Status {
        self.0.pushback = Some(RetryPushback::Never);
        self
    }

    /// The server's pushback, set with [`with_retry_pushback`](Self::with_retry_pushback)
    /// or [`without_retry`](Self::without_retry), or received in the
    /// `grpc-retry-pushback-ms` trailer.
    pub fn retry_pushback(&self) -> Option<RetryPushback> {
        self.0.pushback
    }

    pub(crate) fn set_retry_pushback(&mut self, pushback: Option<RetryPushback>) {
        self.0.pushback = pushback;
    }

    /// Builds a status from the parts received on the wire.
    pub(crate) fn from_parts(
        code: Code,
        message: String,
        details: Bytes,
        metadata: MetadataMap,
    ) -> Status {
        Status(Box::new(Inner {
            code,
            message,
            details,
            metadata,
            transparent_retry: false,
            pushback: None,
            call: None,
        }))
    }

    /// Marks the call as never processed by the server (safe to retry).
    pub(crate) fn with_transparent_retry(mut self) -> Status {
        self.0.transparent_retry = true;
        self
    }

    /// Whether the call never reached the server's application.
    pub(crate) fn is_transparent_retry(&self) -> bool {
        self.0.transparent_retry
    }

    /// The status a server sends for a handler error: `OK` is not an error,
    /// so it becomes `UNKNOWN`.
    pub(crate) fn into_error(self) -> Status {
        if self.code() == Code::Ok {
            let mut s = self;
            s.0.code = Code::Unknown;
            s.0.message = format!(
                "handler returned an error with code OK (message: {:?})",
                s.0.message
            );
            s
        } else {
            self
        }
    }

    /// Splits the status into code, message, details and trailing metadata.
    pub(crate) fn into_parts(self) -> (Code, String, Bytes, MetadataMap) {
        let inner = *self.0;
        (inner.code, inner.message, inner.details, inner.metadata)
    }
}

/// Rich error details (gRPC-Go's `status.WithDetails` and `Details`); see
/// the [`errdetails`](crate::errdetails) module.
#[cfg(feature = "errdetails")]
impl Status {
    /// Returns this status with `details` attached, after any it has: the
    /// standard `google.rpc` details of [`errdetails`](crate::errdetails),
    /// each made a [`Detail`](crate::errdetails::Detail) with `into()` (so
    /// that one list holds several types), or any message packed with
    /// [`Detail::pack`](crate::errdetails::Detail::pack). gRPC-Go's
    /// `status.WithDetails`.
    ///
    /// The details are encoded as a `google.rpc.Status` with this status's
    /// code and message, the [`details`](Self::details) sent in
    /// `grpc-status-details-bin`; [`details`](Self::details) that are not
    /// one are replaced. An OK status is returned unchanged: details
    /// describe an error (gRPC-Go refuses them on OK too).
    ///
    /// ```
    /// use ferrogrpc::{errdetails::{Duration, ErrorInfo, RetryInfo}, Status};
    ///
    /// let status = Status::resource_exhausted("quota used up").with_error_details([
    ///     ErrorInfo { reason: "QUOTA".into(), ..Default::default() }.into(),
    ///     RetryInfo { retry_delay: Some(Duration { seconds: 30, nanos: 0 }) }.into(),
    /// ]);
    /// assert_eq!(status.error_details().unwrap().len(), 2);
    /// ```
    pub fn with_error_details(
        mut self,
        details: impl IntoIterator<Item = crate::errdetails::Detail>,
    ) -> Status {
        if self.code() == Code::Ok {
            return self;
        }
        self.0.details = crate::errdetails::encode_with(&self, details);
        self
    }

    /// Every detail of this status, in the order sent (gRPC-Go's
    /// `Details`): the standard types as their own
    /// [`Detail`](crate::errdetails::Detail) variant, any other kept packed
    /// as [`Detail::Other`](crate::errdetails::Detail::Other). Empty when
    /// the status has no details.
    ///
    /// # Errors
    /// [`DetailsError::Decode`](crate::errdetails::DetailsError::Decode)
    /// when [`details`](Self::details) is not an encoded `google.rpc.Status`
    /// or a standard detail in it does not decode;
    /// [`DetailsError::CodeMismatch`](crate::errdetails::DetailsError::CodeMismatch)
    /// when its code is not this status's (the details are then not
    /// trusted, as gRPC-Go does not).
    ///
    /// ```
    /// use ferrogrpc::{errdetails::{Detail, Help}, Status};
    ///
    /// let status = Status::unimplemented("not yet").with_error_details([Help::default().into()]);
    /// assert_eq!(status.error_details(), Ok(vec![Detail::Help(Help::default())]));
    /// assert_eq!(Status::internal("plain").error_details(), Ok(vec![]));
    /// ```
    pub fn error_details(
        &self,
    ) -> Result<Vec<crate::errdetails::Detail>, crate::errdetails::DetailsError> {
        let Some(proto) = crate::errdetails::decode(self)? else {
            return Ok(Vec::new());
        };
        proto
            .details
            .into_iter()
            .map(|any| crate::errdetails::Detail::from_any(any).map_err(Into::into))
            .collect()
    }

    /// The first detail of type `M`, a standard type of
    /// [`errdetails`](crate::errdetails) or any message with `prost::Name`
    /// (matched by full name); `None` when there is none or when
    /// [`error_details`](Self::error_details) would fail on the details as a
    /// whole. A detail of type `M` that does not decode is skipped.
    ///
    /// ```
    /// use ferrogrpc::{errdetails::{Duration, ErrorInfo, RetryInfo}, Status};
    ///
    /// let status = Status::unavailable("busy").with_error_details([RetryInfo {
    ///     retry_delay: Some(Duration { seconds: 1, nanos: 0 }),
    /// }
    /// .into()]);
    /// assert_eq!(status.error_detail::<RetryInfo>().unwrap().retry_delay.unwrap().seconds, 1);
    /// assert_eq!(status.error_detail::<ErrorInfo>(), None);
    /// ```
    pub fn error_detail<M: prost::Name + Default>(&self) -> Option<M> {
        crate::errdetails::find(self)
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Status");
        d.field("code", &self.0.code)
            .field("message", &self.0.message);
        if !self.0.details.is_empty() {
            d.field("details", &self.0.details);
        }
        if !self.0.metadata.is_empty() {
            d.field("metadata", &self.0.metadata);
        }
        d.finish()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.message.is_empty() {
            write!(f, "{}", self.0.code)
        } else {
            write!(f, "{}: {}", self.0.code, self.0.message)
        }
    }
}

impl std::error::Error for Status {}

impl From<std::io::Error> for Status {
    /// I/O errors become `UNAVAILABLE` (connection trouble) unless they carry a
    /// clearer meaning, such as a timeout.
    fn from(err: std::io::Error) -> Status {
        use std::io::ErrorKind;
        let code = match err.kind() {
            ErrorKind::TimedOut => Code::DeadlineExceeded,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::InvalidData | ErrorKind::InvalidInput => Code::Internal,
            _ => Code::Unavailable,
        };
        Status::new(code, err.to_string())
    }
}

/// Percent-encodes a `grpc-message` value as the protocol asks: every byte
/// outside printable ASCII (0x20..=0x7E), and `%` itself, becomes `%XX`.
pub(crate) fn percent_encode(message: &str) -> Cow<'_, str> {
    fn plain(b: u8) -> bool {
        (0x20..=0x7e).contains(&b) && b != b'%'
    }
    if message.bytes().all(plain) {
        return Cow::Borrowed(message);
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(message.len() + 16);
    for b in message.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    Cow::Owned(out)
}

/// Decodes a `grpc-message` value leniently: a `%` not followed by two hex
/// digits is kept as it is, and bytes that are not valid UTF-8 after decoding
/// are replaced, so a malformed message never fails the call.
pub(crate) fn percent_decode(raw: &[u8]) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    if !raw.contains(&b'%') {
        return String::from_utf8_lossy(raw).into_owned();
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encode_examples() {
        assert_eq!(percent_encode("plain text"), "plain text");
        assert_eq!(percent_encode("100%"), "100%25");
        assert_eq!(percent_encode("\t\ntab"), "%09%0Atab");
        assert_eq!(percent_encode("ü"), "%C3%BC");
    }

    #[test]
    fn decode_is_lenient() {
        assert_eq!(percent_decode(b"%"), "%");
        assert_eq!(percent_decode(b"%4"), "%4");
        assert_eq!(percent_decode(b"%zz"), "%zz");
        assert_eq!(percent_decode(b"a%41"), "aA");
        assert_eq!(percent_decode(b"%C3%BC"), "ü");
        // Decodes to invalid UTF-8: replaced, not failed.
        assert_eq!(percent_decode(b"%FF"), "\u{FFFD}");
    }

    #[test]
    fn ok_is_never_an_error() {
        let s = Status::new(Code::Ok, "fine").into_error();
        assert_eq!(s.code(), Code::Unknown);
        assert!(s.message().contains("fine"));
    }

    #[test]
    fn status_is_small() {
        assert_eq!(std::mem::size_of::<Status>(), std::mem::size_of::<usize>());
    }

    proptest! {
        #[test]
        fn percent_round_trip(s in any::<String>()) {
            let enc = percent_encode(&s);
            prop_assert!(enc.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(percent_decode(enc.as_bytes()), s);
        }

        #[test]
        fn decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = percent_decode(&raw);
        }
    }
}
