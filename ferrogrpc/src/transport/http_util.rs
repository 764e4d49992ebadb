//! Conversions between HTTP/2 and gRPC: `grpc-timeout`, content types, and
//! the one table from RST_STREAM codes and HTTP statuses to gRPC codes
//! (doc/statuscodes.md and doc/http-grpc-status-mapping.md).

use std::{borrow::Cow, time::Duration};

use http::{header::HeaderName, HeaderMap, HeaderValue, StatusCode};

use crate::{codes::Code, metadata::MetadataMap, status::Status};

/// Header names, built at compile time so lookups skip parsing.
pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub(crate) const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
pub(crate) const GRPC_STATUS_DETAILS: HeaderName =
    HeaderName::from_static("grpc-status-details-bin");
/// A server's word on retrying a failed call (gRFC A6).
pub(crate) const GRPC_RETRY_PUSHBACK: HeaderName =
    HeaderName::from_static("grpc-retry-pushback-ms");
/// The attempts made before this one, on retries and hedges (gRFC A6).
pub(crate) const GRPC_PREVIOUS_RPC_ATTEMPTS: HeaderName =
    HeaderName::from_static("grpc-previous-rpc-attempts");
pub(crate) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
pub(crate) const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
pub(crate) const GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");

/// The longest `grpc-timeout` value: at most 8 digits.
const MAX_TIMEOUT_VALUE: u64 = 99_999_999;

/// Parses a `grpc-timeout` header: 1 to 8 ASCII digits and a unit
/// (`H` hours, `M` minutes, `S` seconds, `m` millis, `u` micros, `n` nanos).
pub(crate) fn parse_timeout(raw: &[u8]) -> Result<Duration, String> {
    let bad = || format!("malformed grpc-timeout {:?}", String::from_utf8_lossy(raw));
    let (&unit, digits) = raw.split_last().ok_or_else(bad)?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let value = digits
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(value * 3600),
        b'M' => Duration::from_secs(value * 60),
        b'S' => Duration::from_secs(value),
        b'm' => Duration::from_millis(value),
        b'u' => Duration::from_micros(value),
        b'n' => Duration::from_nanos(value),
        _ => return Err(bad()),
    })
}

/// Encodes a timeout in the finest unit that fits in 8 digits, rounding up
/// so the server never sees a shorter deadline than the client's.
pub(crate) fn encode_timeout(timeout: Duration) -> HeaderValue {
    let nanos = timeout.as_nanos();
    let units: [(u128, u8); 6] = [
        (1, b'n'),
        (1_000, b'u'),
        (1_000_000, b'm'),
        (1_000_000_000, b'S'),
        (60_000_000_000, b'M'),
        (3_600_000_000_000, b'H'),
    ];
    for (per, unit) in units {
        let value = nanos.div_ceil(per);
        if value <= u128::from(MAX_TIMEOUT_VALUE) {
            return timeout_value(value as u64, unit);
        }
    }
    timeout_value(MAX_TIMEOUT_VALUE, b'H')
}

fn timeout_value(value: u64, unit: u8) -> HeaderValue {
    let mut buf = itoa_buf(value);
    buf.push(unit);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(buf))
        .unwrap_or_else(|_| HeaderValue::from_static("99999999H"))
}

fn itoa_buf(mut value: u64) -> Vec<u8> {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    let mut out = Vec::with_capacity(digits.len() - i + 1);
    out.extend_from_slice(&digits[i..]);
    out
}

/// Whether a content type is gRPC's: `application/grpc`, optionally followed
/// by `+subtype` or `;parameters`.
pub(crate) fn is_grpc_content_type(value: &[u8]) -> bool {
    value.len() >= GRPC_BASE.len()
        && value[..GRPC_BASE.len()].eq_ignore_ascii_case(GRPC_BASE)
        && matches!(value.get(GRPC_BASE.len()), None | Some(b'+') | Some(b';'))
}

/// Every gRPC content type starts with this.
const GRPC_BASE: &[u8] = b"application/grpc";

/// The content-subtype of a request (gRPC-Go's `grpcutil.ContentSubtype`):
/// what follows `application/grpc` after a `+` or a `;`, lower-cased, so
/// `proto` for `application/grpc+proto` and `json` for
/// `application/grpc+JSON`; empty for plain `application/grpc` (and for a
/// bare `+` or `;`). Every call carries one, so it is kept in 16 bytes and
/// only an unusual subtype allocates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ContentSubtype {
    /// Plain `application/grpc`.
    None,
    Proto,
    Json,
    Other(Box<OtherSubtype>),
}

/// A subtype the library has no name for, with the content type that
/// names it in responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OtherSubtype {
    name: String,
    content_type: HeaderValue,
}

impl ContentSubtype {
    /// The subtype of a `content-type` value; `None` when it is not a gRPC
    /// content type.
    pub(crate) fn parse(value: &[u8]) -> Option<ContentSubtype> {
        if !is_grpc_content_type(value) {
            return None;
        }
        let rest = value.get(GRPC_BASE.len() + 1..).unwrap_or_default();
        Some(if rest.is_empty() {
            ContentSubtype::None
        } else if rest.eq_ignore_ascii_case(b"proto") {
            ContentSubtype::Proto
        } else if rest.eq_ignore_ascii_case(b"json") {
            ContentSubtype::Json
        } else {
            let name = String::from_utf8_lossy(rest).to_ascii_lowercase();
            let content_type = content_type(&name);
            ContentSubtype::Other(Box::new(OtherSubtype { name, content_type }))
        })
    }

    /// The subtype, lower-cased; `""` for none.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            ContentSubtype::None => "",
            ContentSubtype::Proto => "proto",
            ContentSubtype::Json => "json",
            ContentSubtype::Other(other) => &other.name,
        }
    }

    /// The content type that names this subtype, for responses.
    pub(crate) fn content_type(&self) -> HeaderValue {
        match self {
            ContentSubtype::Other(other) => other.content_type.clone(),
            known => content_type(known.as_str()),
        }
    }

    /// The subtype as a string, borrowed but for an unusual one.
    pub(crate) fn into_cow(self) -> Cow<'static, str> {
        match self {
            ContentSubtype::None => Cow::Borrowed(""),
            ContentSubtype::Proto => Cow::Borrowed("proto"),
            ContentSubtype::Json => Cow::Borrowed("json"),
            ContentSubtype::Other(other) => Cow::Owned(other.name),
        }
    }
}

/// The content type naming `subtype` (gRPC-Go's `grpcutil.ContentType`):
/// `application/grpc` for the empty subtype, else `application/grpc+<subtype>`
/// lower-cased. Only an unusual subtype allocates.
pub(crate) fn content_type(subtype: &str) -> HeaderValue {
    match subtype {
        "" => HeaderValue::from_static("application/grpc"),
        "proto" => HeaderValue::from_static("application/grpc+proto"),
        "json" => HeaderValue::from_static("application/grpc+json"),
        other => HeaderValue::from_str(&format!("application/grpc+{}", other.to_ascii_lowercase()))
            .unwrap_or_else(|_| HeaderValue::from_static("application/grpc")),
    }
}

/// The gRPC code for an RST_STREAM or GOAWAY error code (statuscodes.md).
pub(crate) fn code_for_reason(reason: h2::Reason) -> Code {
    match reason {
        h2::Reason::REFUSED_STREAM => Code::Unavailable,
        h2::Reason::CANCEL => Code::Cancelled,
        h2::Reason::ENHANCE_YOUR_CALM => Code::ResourceExhausted,
        h2::Reason::INADEQUATE_SECURITY => Code::PermissionDenied,
        _ => Code::Internal,
    }
}

/// The gRPC code for an HTTP status received without `grpc-status`
/// (http-grpc-status-mapping.md).
pub(crate) fn code_for_http_status(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// A status for an error reported by h2 on a stream or its connection.
/// `side` names the peer ("server" or "client") for the message.
pub(crate) fn status_from_h2(err: &h2::Error, side: &str) -> Status {
    if let Some(io) = err.get_io() {
        return Status::unavailable(format!("connection to {side} lost: {io}"));
    }
    if let Some(reason) = err.reason() {
        if err.is_go_away() {
            let code = if reason == h2::Reason::NO_ERROR {
                Code::Unavailable
            } else {
                code_for_reason(reason).max_unavailable()
            };
            let text = if err.is_remote() {
                format!(
                    "connection closed by {side} with GOAWAY {}",
                    describe_reason(reason)
                )
            } else {
                format!(
                    "connection closed after a protocol error in what the {side} sent ({})",
                    describe_reason(reason)
                )
            };
            return Status::new(code, text);
        }
        if err.is_reset() {
            let who = if err.is_remote() { side } else { "this side" };
            return Status::new(
                code_for_reason(reason),
                format!("stream reset by {who} with {}", describe_reason(reason)),
            );
        }
        return Status::new(
            code_for_reason(reason),
            format!("HTTP/2 error: {}", describe_reason(reason)),
        );
    }
    Status::internal(format!("HTTP/2 error: {err}"))
}

fn describe_reason(reason: h2::Reason) -> String {
    format!("{reason:?}")
        .replace("Reason(", "")
        .replace(')', "")
}

trait MaxUnavailable {
    fn max_unavailable(self) -> Code;
}

impl MaxUnavailable for Code {
    /// GOAWAY with an error code ends a whole connection: report the calls it
    /// took down as unavailable unless the code says more.
    fn max_unavailable(self) -> Code {
        if self == Code::Internal {
            Code::Unavailable
        } else {
            self
        }
    }
}

/// Reads a status from headers or trailers that carry `grpc-status`.
/// The rest of the map becomes the status's trailing metadata.
pub(crate) fn status_from_trailers(mut map: HeaderMap) -> Status {
    let Some(raw_code) = map.remove(GRPC_STATUS) else {
        return Status::internal("server closed the stream without a grpc-status");
    };
    let Some(code) = Code::from_ascii(raw_code.as_bytes()) else {
        return Status::internal(format!(
            "malformed grpc-status {:?}",
            String::from_utf8_lossy(raw_code.as_bytes())
        ));
    };
    let message = map
        .remove(GRPC_MESSAGE)
        .map(|v| crate::status::percent_decode(v.as_bytes()))
        .unwrap_or_default();
    let details = match map.remove(GRPC_STATUS_DETAILS) {
        Some(v) => match crate::metadata::decode_base64(v.as_bytes()) {
            Ok(d) => bytes::Bytes::from(d),
            Err(_) => return Status::internal("malformed grpc-status-details-bin (not base64)"),
        },
        None => bytes::Bytes::new(),
    };
    // Left in the metadata too, where gRPC-Go's users find it.
    let pushback = map
        .get(GRPC_RETRY_PUSHBACK)
        .map(|v| crate::status::RetryPushback::parse(v.as_bytes()));
    let metadata = match MetadataMap::from_received(map) {
        Ok(md) => md,
        Err(status) => return status,
    };
    let mut status = Status::from_parts(code, message, details, metadata);
    status.set_retry_pushback(pushback);
    status
}

/// Writes a status into trailers (or Trailers-Only headers).
///
/// Fails when the status's metadata does not fit (see
/// [`MetadataMap::write_to`](crate::metadata::MetadataMap)); `out` must then
/// be built again, with [`write_status_or_internal`] for example.
pub(crate) fn write_status(status: Status, out: &mut HeaderMap) -> Result<(), Status> {
    let pushback = status.retry_pushback();
    let (code, message, details, metadata) = status.into_parts();
    let full = |_| Status::internal("too many headers for one HTTP/2 header block");
    if let Some(pushback) = pushback {
        out.try_insert(GRPC_RETRY_PUSHBACK, pushback.to_header())
            .map_err(full)?;
    }
    out.try_insert(GRPC_STATUS, HeaderValue::from_static(code.as_ascii()))
        .map_err(full)?;
    if !message.is_empty() {
        let encoded = crate::status::percent_encode(&message);
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            out.try_insert(GRPC_MESSAGE, v).map_err(full)?;
        }
    }
    if !details.is_empty() {
        out.try_insert(
            GRPC_STATUS_DETAILS,
            crate::metadata::encode_base64(&details),
        )
        .map_err(full)?;
    }
    metadata.write_to(out)
}

/// Writes `status` into the header map `base()` builds; when the status's
/// metadata does not fit, writes an INTERNAL status naming why instead, so
/// the peer always gets a status.
pub(crate) fn write_status_or_internal(
    status: Status,
    mut base: impl FnMut() -> HeaderMap,
) -> HeaderMap {
    let mut out = base();
    let Err(err) = write_status(status, &mut out) else {
        return out;
    };
    tracing::warn!("status not sent as it was: {}", err.message());
    let mut out = base();
    let _ = write_status(
        Status::internal(format!(
            "the call's status could not be sent: {}",
            err.message()
        )),
        &mut out,
    );
    out
}

/// The most entries a header map is sized for up front; more grow it as
/// they are added (a peer's entry count must not size an allocation).
pub(crate) const MAX_HEADER_HINT: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timeout_units() {
        assert_eq!(parse_timeout(b"1H"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"2M"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout(b"3S"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_timeout(b"4m"), Ok(Duration::from_millis(4)));
        assert_eq!(parse_timeout(b"5u"), Ok(Duration::from_micros(5)));
        assert_eq!(
            parse_timeout(b"99999999n"),
            Ok(Duration::from_nanos(99_999_999))
        );
    }

    #[test]
    fn bad_timeouts() {
        for raw in [
            &b""[..],
            b"S",
            b"1",
            b"123456789S",
            b"1s",
            b"-1S",
            b"1.5S",
            b" 1S",
            b"1SS",
        ] {
            assert!(parse_timeout(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn encode_picks_a_fitting_unit() {
        assert_eq!(encode_timeout(Duration::from_nanos(5)), "5n");
        assert_eq!(encode_timeout(Duration::from_millis(1500)), "1500000u");
        assert_eq!(encode_timeout(Duration::from_secs(100_000)), "100000S");
        assert_eq!(encode_timeout(Duration::from_secs(u64::MAX)), "99999999H");
        assert_eq!(encode_timeout(Duration::ZERO), "0n");
    }

    #[test]
    fn content_types() {
        assert!(is_grpc_content_type(b"application/grpc"));
        assert!(is_grpc_content_type(b"application/grpc+proto"));
        assert!(is_grpc_content_type(b"application/grpc;charset=utf-8"));
        assert!(is_grpc_content_type(b"Application/GRPC+json"));
        assert!(!is_grpc_content_type(b"application/grpc-web"));
        assert!(!is_grpc_content_type(b"application/json"));
        assert!(!is_grpc_content_type(b""));
    }

    #[test]
    fn content_subtypes() {
        for (value, subtype) in [
            (&b"application/grpc"[..], Some("")),
            (b"application/grpc+", Some("")),
            (b"application/grpc;", Some("")),
            (b"application/grpc+proto", Some("proto")),
            (b"APPLICATION/GRPC+Proto", Some("proto")),
            (b"application/grpc+JSON", Some("json")),
            (b"application/grpc+MsgPack", Some("msgpack")),
            // gRPC-Go takes what follows `;` as the subtype too.
            (b"application/grpc;charset=utf-8", Some("charset=utf-8")),
            (b"application/grpc-web", None),
            (b"application/json", None),
            (b"", None),
        ] {
            let parsed = ContentSubtype::parse(value);
            assert_eq!(parsed.as_ref().map(|s| s.as_str()), subtype, "{value:?}");
        }
        assert_eq!(
            ContentSubtype::parse(b"application/grpc+json"),
            Some(ContentSubtype::Json)
        );
        assert_eq!(std::mem::size_of::<ContentSubtype>(), 16);
    }

    #[test]
    fn content_types_name_the_subtype() {
        assert_eq!(content_type(""), "application/grpc");
        assert_eq!(content_type("proto"), "application/grpc+proto");
        assert_eq!(content_type("json"), "application/grpc+json");
        assert_eq!(content_type("MsgPack"), "application/grpc+msgpack");
        for subtype in ["", "proto", "json", "msgpack", "charset=utf-8"] {
            let value = content_type(subtype);
            let parsed = ContentSubtype::parse(value.as_bytes()).unwrap();
            assert_eq!(parsed.as_str(), subtype);
            assert_eq!(parsed.content_type(), value, "{subtype}");
            assert_eq!(parsed.clone().into_cow(), subtype);
        }
    }

    #[test]
    fn status_round_trip_through_trailers() {
        let mut md = MetadataMap::new();
        md.insert("k", "v").unwrap();
        let status = Status::with_details(
            Code::NotFound,
            "not here: \t ü 100%",
            bytes::Bytes::from_static(b"\x08\x05"),
        )
        .with_metadata(md);
        let mut map = HeaderMap::new();
        write_status(status, &mut map).unwrap();
        assert_eq!(map["grpc-status"], "5");
        let back = status_from_trailers(map);
        assert_eq!(back.code(), Code::NotFound);
        assert_eq!(back.message(), "not here: \t ü 100%");
        assert_eq!(&back.details()[..], b"\x08\x05");
        assert_eq!(back.metadata().get("k"), Some("v"));
    }

    #[test]
    fn trailers_without_or_with_bad_status() {
        assert_eq!(
            status_from_trailers(HeaderMap::new()).code(),
            Code::Internal
        );
        let mut map = HeaderMap::new();
        map.insert("grpc-status", HeaderValue::from_static("abc"));
        assert_eq!(status_from_trailers(map).code(), Code::Internal);
        let mut map = HeaderMap::new();
        map.insert("grpc-status", HeaderValue::from_static("42"));
        assert_eq!(status_from_trailers(map).code(), Code::Unknown);
    }

    #[test]
    fn reason_and_http_tables() {
        assert_eq!(code_for_reason(h2::Reason::CANCEL), Code::Cancelled);
        assert_eq!(
            code_for_reason(h2::Reason::REFUSED_STREAM),
            Code::Unavailable
        );
        assert_eq!(
            code_for_reason(h2::Reason::ENHANCE_YOUR_CALM),
            Code::ResourceExhausted
        );
        assert_eq!(
            code_for_reason(h2::Reason::INADEQUATE_SECURITY),
            Code::PermissionDenied
        );
        assert_eq!(code_for_reason(h2::Reason::NO_ERROR), Code::Internal);
        assert_eq!(code_for_reason(h2::Reason::PROTOCOL_ERROR), Code::Internal);
        for (http, code) in [
            (400, Code::Internal),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::Unimplemented),
            (429, Code::Unavailable),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::Unavailable),
            (500, Code::Unknown),
            (418, Code::Unknown),
        ] {
            assert_eq!(
                code_for_http_status(StatusCode::from_u16(http).unwrap()),
                code
            );
        }
    }

    proptest! {
        #[test]
        fn timeout_encode_parse_never_shortens(nanos in any::<u64>()) {
            let d = Duration::from_nanos(nanos);
            let v = encode_timeout(d);
            prop_assert!(v.len() <= 9);
            let back = parse_timeout(v.as_bytes()).unwrap();
            prop_assert!(back >= d);
        }

        #[test]
        fn timeout_parse_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..12)) {
            let _ = parse_timeout(&raw);
        }
    }
}
