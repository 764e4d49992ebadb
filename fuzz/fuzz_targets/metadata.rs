//! Received headers as gRPC sees them: metadata (ASCII values, `-bin`
//! values in padded or unpadded base64, reserved names), the status in
//! trailers (`grpc-status`, percent-encoded `grpc-message`,
//! `grpc-status-details-bin`, `grpc-retry-pushback-ms`), `grpc-encoding`
//! and `grpc-accept-encoding`, content types; and the user-facing
//! metadata setters.
//!
//! Checks: no panic; every value of accepted metadata reads back (binary
//! ones decoded; re-encoded, they decode to the same bytes); metadata
//! written as headers and received again is the same; a status read from
//! trailers, written and read again keeps its code, message, details,
//! pushback and (non-`grpc-`) metadata; a value the setters accept reads
//! back unchanged.
//!
//! Input: a list of fields, each `name:short value:short` (a length byte
//! then bytes); byte 0 bit 0 first adds a `grpc-status` field.
#![no_main]

use ferrogrpc::{__fuzz, metadata::MetadataMap, metadata::MetadataValue};
use ferrogrpc_fuzz::Cursor;
use http::{header::HeaderName, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

/// The metadata as (key, value) pairs, binary values decoded, sorted by
/// key (the values of a key in order); keys of the protocol's own
/// (`grpc-`) left out.
fn pairs(md: &MetadataMap) -> Vec<(String, Vec<u8>)> {
    let mut pairs: Vec<(String, Vec<u8>)> = md
        .iter()
        .filter(|(k, _)| !k.starts_with("grpc-"))
        .map(|(k, v)| {
            let v = match v {
                MetadataValue::Ascii(s) => s.as_bytes().to_vec(),
                MetadataValue::Binary(b) => b,
            };
            (k.to_string(), v)
        })
        .collect();
    // Stable: a key's values keep their order.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

fn check_metadata(map: &HeaderMap) {
    let Ok(md) = __fuzz::metadata_from_received(map.clone()) else {
        return;
    };
    for key in md.keys() {
        let raw: Vec<&HeaderValue> = map.get_all(key).iter().collect();
        if key.ends_with("-bin") {
            let values: Vec<Vec<u8>> = md.get_all_bin(key).collect();
            assert_eq!(values.len(), raw.len(), "{key}: a binary value was dropped");
            for (value, raw) in values.iter().zip(raw) {
                assert_eq!(__fuzz::decode_base64(raw.as_bytes()).as_ref(), Some(value));
                let again = __fuzz::encode_base64(value);
                assert_eq!(
                    __fuzz::decode_base64(again.as_bytes()).as_ref(),
                    Some(value)
                );
            }
            assert_eq!(md.get(key), None);
        } else {
            let values: Vec<&str> = md.get_all(key).collect();
            assert_eq!(values.len(), raw.len(), "{key}: a value was dropped");
            for (value, raw) in values.iter().zip(raw) {
                assert_eq!(value.as_bytes(), raw.as_bytes());
            }
        }
    }
    let mut out = HeaderMap::new();
    __fuzz::metadata_write_to(&md, &mut out).expect("fits: it came from a header map");
    let back = __fuzz::metadata_from_received(out).expect("written metadata is valid");
    assert_eq!(pairs(&back), pairs(&md));
}

fn check_status(map: &HeaderMap) {
    let status = __fuzz::status_from_trailers(map.clone());
    let pushback = status.retry_pushback();
    let (code, message, details) = (
        status.code(),
        status.message().to_string(),
        status.details().clone(),
    );
    let metadata = pairs(status.metadata());
    let mut out = HeaderMap::new();
    __fuzz::write_status(status, &mut out).expect("fits");
    let again = __fuzz::status_from_trailers(out);
    assert_eq!(again.code(), code);
    assert_eq!(again.message(), message);
    assert_eq!(again.details(), &details);
    assert_eq!(again.retry_pushback(), pushback);
    assert_eq!(pairs(again.metadata()), metadata);
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let mut map = HeaderMap::new();
    if c.u8() & 1 == 1 {
        map.insert("grpc-status", HeaderValue::from_static("0"));
    }
    let mut fields = Vec::new();
    while !c.is_empty() && fields.len() < 64 {
        let name = c.short_bytes();
        let value = c.short_bytes();
        fields.push((name, value));
        // As h2 hands them over: lower-case names and valid values only.
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        map.append(name, value);
    }
    check_metadata(&map);
    check_status(&map);
    let _ = __fuzz::decompressor_for(map.get("grpc-encoding"));
    let accept = map.get("grpc-accept-encoding");
    for name in ["gzip", "deflate", "zstd", "identity"] {
        let _ = __fuzz::accepts_encoding(accept, name);
    }
    if let Some(ct) = map.get("content-type") {
        let _ = __fuzz::is_grpc_content_type(ct.as_bytes());
    }
    if let Some(p) = map.get("grpc-retry-pushback-ms") {
        let _ = __fuzz::parse_retry_pushback(p.as_bytes());
    }
    // The setters: whatever they accept reads back unchanged.
    let mut md = MetadataMap::new();
    for (name, value) in &fields {
        let (Ok(key), Ok(text)) = (std::str::from_utf8(name), std::str::from_utf8(value)) else {
            continue;
        };
        if key.ends_with("-bin") {
            if md.append_bin(key, value).is_ok() {
                let lower = key.to_ascii_lowercase();
                assert_eq!(md.get_all_bin(&lower).last().as_deref(), Some(&value[..]));
            }
        } else if md.append(key, text).is_ok() {
            let lower = key.to_ascii_lowercase();
            assert_eq!(md.get_all(&lower).last(), Some(text));
        }
    }
    let mut out = HeaderMap::new();
    __fuzz::metadata_write_to(&md, &mut out).expect("fits");
    let back = __fuzz::metadata_from_received(out).expect("what the setters took is valid");
    assert_eq!(pairs(&back), pairs(&md));
});
