//! Metadata: the key/value pairs sent with a call (headers) and with its
//! status (trailers), as in gRPC-Go's `metadata` package.
//!
//! Keys are case-insensitive and stored lower-case; they may use `0-9 a-z _ . -`.
//! A key ending in `-bin` holds binary values, base64-encoded on the wire
//! (sent unpadded, accepted padded or not); other keys hold printable ASCII
//! (0x20..=0x7E). A key may have several values, kept in order.
//!
//! Keys starting with `grpc-`, pseudo-headers and the protocol's own headers
//! (`te`, `content-type`) are reserved: they cannot be set here, and they are
//! not shown as metadata when received.

use std::fmt;

use base64::Engine as _;
use http::{header::HeaderName, HeaderMap, HeaderValue};

use crate::{codes::Code, status::Status};

/// Headers the protocol owns; never presented to or taken from the user.
const RESERVED_RECEIVED: &[&str] = &[
    "te",
    "content-type",
    "grpc-encoding",
    "grpc-accept-encoding",
    "grpc-message",
    "grpc-status",
    "grpc-status-details-bin",
    "grpc-timeout",
    "grpc-message-type",
];

/// `RESERVED_RECEIVED` as header names, for removal without parsing.
static RESERVED_NAMES: [HeaderName; 9] = [
    HeaderName::from_static("te"),
    HeaderName::from_static("content-type"),
    HeaderName::from_static("grpc-encoding"),
    HeaderName::from_static("grpc-accept-encoding"),
    HeaderName::from_static("grpc-message"),
    HeaderName::from_static("grpc-status"),
    HeaderName::from_static("grpc-status-details-bin"),
    HeaderName::from_static("grpc-timeout"),
    HeaderName::from_static("grpc-message-type"),
];

/// A multimap of gRPC metadata.
#[derive(Clone, Default, PartialEq)]
pub struct MetadataMap {
    headers: HeaderMap,
}

/// The error for a key or value that gRPC metadata cannot carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidMetadata {
    reason: String,
}

impl InvalidMetadata {
    fn new(reason: String) -> InvalidMetadata {
        InvalidMetadata { reason }
    }
}

impl fmt::Display for InvalidMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for InvalidMetadata {}

impl From<InvalidMetadata> for Status {
    fn from(err: InvalidMetadata) -> Status {
        Status::new(Code::Internal, err.reason)
    }
}

/// One metadata value, as yielded by [`MetadataMap::iter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataValue<'a> {
    /// The value of an ASCII key.
    Ascii(&'a str),
    /// The decoded value of a `-bin` key.
    Binary(Vec<u8>),
}

fn is_binary_key(key: &str) -> bool {
    key.ends_with("-bin")
}

fn engine() -> &'static base64::engine::GeneralPurpose {
    // Sends without padding; accepts either.
    const ENGINE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    &ENGINE
}

fn is_ascii_value(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| (0x20..=0x7e).contains(b))
}

/// Validates a key given by the user and returns its header name.
fn user_key(key: &str, binary: bool) -> Result<HeaderName, InvalidMetadata> {
    if key.is_empty() {
        return Err(InvalidMetadata::new("metadata key is empty".into()));
    }
    let valid = key
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'.' | b'-'));
    if !valid {
        return Err(InvalidMetadata::new(format!(
            "metadata key {key:?} has characters outside 0-9 a-z _ . -"
        )));
    }
    let name = HeaderName::from_bytes(key.as_bytes())
        .map_err(|_| InvalidMetadata::new(format!("metadata key {key:?} is not a header name")))?;
    let lower = name.as_str();
    if is_reserved(lower) {
        return Err(InvalidMetadata::new(format!(
            "metadata key {key:?} is reserved for the gRPC protocol"
        )));
    }
    match (binary, is_binary_key(lower)) {
        (false, true) => Err(InvalidMetadata::new(format!(
            "metadata key {key:?} ends in -bin: set binary values with insert_bin/append_bin"
        ))),
        (true, false) => Err(InvalidMetadata::new(format!(
            "binary metadata key {key:?} must end in -bin"
        ))),
        _ => Ok(name),
    }
}

fn ascii_value(key: &str, value: &str) -> Result<HeaderValue, InvalidMetadata> {
    if !is_ascii_value(value.as_bytes()) {
        return Err(InvalidMetadata::new(format!(
            "value of metadata key {key:?} must be printable ASCII (use a -bin key for other bytes)"
        )));
    }
    HeaderValue::from_str(value)
        .map_err(|_| InvalidMetadata::new(format!("invalid value for metadata key {key:?}")))
}

/// Decodes base64 with or without padding, as binary metadata is received.
pub(crate) fn decode_base64(text: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    engine().decode(text)
}

/// Encodes bytes as unpadded base64, as binary metadata is sent.
pub(crate) fn encode_base64(value: &[u8]) -> HeaderValue {
    binary_value(value)
}

fn binary_value(value: &[u8]) -> HeaderValue {
    let text = engine().encode(value);
    // Base64 text is always a valid header value.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Turns a full header map into the error users see.
fn try_add(added: Result<(), http::header::MaxSizeReached>) -> Result<(), InvalidMetadata> {
    added.map_err(|_| {
        InvalidMetadata::new(format!(
            "metadata can hold at most {} distinct keys",
            MetadataMap::MAX_KEYS
        ))
    })
}

impl MetadataMap {
    /// The most distinct keys a map holds (the limit of `http::HeaderMap`);
    /// adding one more is an error, never a panic. A key may have any number
    /// of values.
    pub const MAX_KEYS: usize = 24_576;

    /// An empty map.
    pub fn new() -> MetadataMap {
        MetadataMap::default()
    }

    /// The number of values (a key with two values counts twice).
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    /// Whether the map has no values.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// Sets an ASCII value, replacing any values the key had.
    ///
    /// # Errors
    /// When the key is invalid, reserved or ends in `-bin`, the value is not
    /// printable ASCII, or the map already holds
    /// [`MAX_KEYS`](MetadataMap::MAX_KEYS) other keys.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), InvalidMetadata> {
        let name = user_key(key, false)?;
        try_add(
            self.headers
                .try_insert(name, ascii_value(key, value)?)
                .map(drop),
        )?;
        Ok(())
    }

    /// Adds an ASCII value after any values the key already has.
    ///
    /// # Errors
    /// As for [`insert`](Self::insert).
    pub fn append(&mut self, key: &str, value: &str) -> Result<(), InvalidMetadata> {
        let name = user_key(key, false)?;
        try_add(
            self.headers
                .try_append(name, ascii_value(key, value)?)
                .map(drop),
        )?;
        Ok(())
    }

    /// Sets a binary value for a `-bin` key, replacing any values it had.
    ///
    /// # Errors
    /// When the key is invalid, reserved or does not end in `-bin`.
    pub fn insert_bin(
        &mut self,
        key: &str,
        value: impl AsRef<[u8]>,
    ) -> Result<(), InvalidMetadata> {
        let name = user_key(key, true)?;
        try_add(
            self.headers
                .try_insert(name, binary_value(value.as_ref()))
                .map(drop),
        )?;
        Ok(())
    }

    /// Adds a binary value for a `-bin` key after any values it already has.
    ///
    /// # Errors
    /// As for [`insert_bin`](Self::insert_bin).
    pub fn append_bin(
        &mut self,
        key: &str,
        value: impl AsRef<[u8]>,
    ) -> Result<(), InvalidMetadata> {
        let name = user_key(key, true)?;
        try_add(
            self.headers
                .try_append(name, binary_value(value.as_ref()))
                .map(drop),
        )?;
        Ok(())
    }

    /// The first value of an ASCII key. `None` for `-bin` keys: use
    /// [`get_bin`](Self::get_bin).
    pub fn get(&self, key: &str) -> Option<&str> {
        if is_binary_key(key) {
            return None;
        }
        self.headers.get(key).and_then(|v| v.to_str().ok())
    }

    /// Every value of an ASCII key, in order.
    pub fn get_all<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a str> + 'a {
        let values = if is_binary_key(key) {
            None
        } else {
            Some(self.headers.get_all(key).iter())
        };
        values.into_iter().flatten().filter_map(|v| v.to_str().ok())
    }

    /// The first value of a `-bin` key, decoded.
    pub fn get_bin(&self, key: &str) -> Option<Vec<u8>> {
        self.get_all_bin(key).next()
    }

    /// Every value of a `-bin` key, decoded, in order.
    pub fn get_all_bin<'a>(&'a self, key: &str) -> impl Iterator<Item = Vec<u8>> + 'a {
        let values = if is_binary_key(key) {
            Some(self.headers.get_all(key).iter())
        } else {
            None
        };
        values
            .into_iter()
            .flatten()
            .filter_map(|v| engine().decode(v.as_bytes()).ok())
    }

    /// Whether the key has at least one value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.headers.contains_key(key)
    }

    /// Removes every value of a key; returns whether it had any.
    pub fn remove(&mut self, key: &str) -> bool {
        let had = self.headers.contains_key(key);
        if had {
            while self.headers.remove(key).is_some() {}
        }
        had
    }

    /// The distinct keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.headers.keys().map(HeaderName::as_str)
    }

    /// Every key and value, binary values decoded.
    pub fn iter(&self) -> impl Iterator<Item = (&str, MetadataValue<'_>)> {
        self.headers.iter().filter_map(|(name, value)| {
            let key = name.as_str();
            if is_binary_key(key) {
                engine()
                    .decode(value.as_bytes())
                    .ok()
                    .map(|v| (key, MetadataValue::Binary(v)))
            } else {
                value.to_str().ok().map(|v| (key, MetadataValue::Ascii(v)))
            }
        })
    }

    /// Adds every value of `other` after the values already here.
    ///
    /// # Errors
    /// When the map would hold more distinct keys than it can
    /// ([`MAX_KEYS`](MetadataMap::MAX_KEYS)); the values up to that point are
    /// added.
    pub fn extend(&mut self, other: MetadataMap) -> Result<(), InvalidMetadata> {
        let mut last: Option<HeaderName> = None;
        for (name, value) in other.headers {
            if let Some(name) = name {
                last = Some(name);
            }
            if let Some(name) = &last {
                try_add(self.headers.try_append(name.clone(), value).map(drop))?;
            }
        }
        Ok(())
    }

    /// Takes received headers as metadata: removes the protocol's reserved
    /// headers and checks that values are well-formed.
    pub(crate) fn from_received(mut headers: HeaderMap) -> Result<MetadataMap, Status> {
        // One pass: note which reserved headers are present and check the
        // rest; then remove only those present.
        let mut present = 0u16;
        for (name, value) in &headers {
            let key = name.as_str();
            if let Some(i) = RESERVED_RECEIVED.iter().position(|r| *r == key) {
                present |= 1 << i;
                continue;
            }
            let ok = if is_binary_key(key) {
                engine().decode(value.as_bytes()).is_ok()
            } else {
                is_ascii_value(value.as_bytes())
            };
            if !ok {
                let what = if is_binary_key(key) {
                    "is not valid base64"
                } else {
                    "has bytes outside printable ASCII"
                };
                return Err(Status::internal(format!(
                    "received invalid metadata: value of {key:?} {what}"
                )));
            }
        }
        for (i, name) in RESERVED_NAMES.iter().enumerate() {
            if present & (1 << i) != 0 {
                headers.remove(name);
            }
        }
        Ok(MetadataMap { headers })
    }

    /// Appends the metadata to outgoing headers, skipping anything reserved.
    ///
    /// Fails with INTERNAL when `out` cannot hold another distinct name (an
    /// `http::HeaderMap` holds at most 24,576): metadata echoed from a peer
    /// must not be able to panic the task that sends it.
    pub(crate) fn write_to(&self, out: &mut HeaderMap) -> Result<(), Status> {
        for (name, value) in &self.headers {
            if is_reserved(name.as_str()) {
                continue;
            }
            if out.try_append(name.clone(), value.clone()).is_err() {
                return Err(Status::internal(format!(
                    "metadata with {} distinct keys ({} entries) does not fit in one HTTP/2 header block",
                    self.headers.keys_len(),
                    self.headers.len()
                )));
            }
        }
        Ok(())
    }
}

fn is_reserved(key: &str) -> bool {
    key.starts_with("grpc-") || RESERVED_RECEIVED.contains(&key)
}

impl fmt::Debug for MetadataMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.headers.iter().map(|(k, v)| (k.as_str(), v)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_and_binary_round_trip() {
        let mut md = MetadataMap::new();
        md.insert("Key-One", "value 1").unwrap();
        md.append("key-one", "value 2").unwrap();
        md.insert_bin("blob-bin", [0u8, 1, 2, 255]).unwrap();
        md.append_bin("blob-bin", b"").unwrap();
        assert_eq!(md.get("key-one"), Some("value 1"));
        assert_eq!(
            md.get_all("key-one").collect::<Vec<_>>(),
            ["value 1", "value 2"]
        );
        assert_eq!(
            md.get_all_bin("blob-bin").collect::<Vec<_>>(),
            vec![vec![0u8, 1, 2, 255], vec![]]
        );
        // The wire form is unpadded base64.
        assert_eq!(md.headers.get("blob-bin").unwrap(), "AAEC/w");
        assert_eq!(md.get("blob-bin"), None);
        assert_eq!(md.len(), 4);
        assert!(md.remove("key-one"));
        assert_eq!(md.len(), 2);
    }

    #[test]
    fn reserved_tables_agree() {
        let names: Vec<&str> = RESERVED_NAMES.iter().map(HeaderName::as_str).collect();
        assert_eq!(names, RESERVED_RECEIVED);
    }

    #[test]
    fn padded_base64_is_accepted() {
        let mut h = HeaderMap::new();
        h.insert("x-bin", HeaderValue::from_static("AAEC/w=="));
        let md = MetadataMap::from_received(h).unwrap();
        assert_eq!(md.get_bin("x-bin"), Some(vec![0, 1, 2, 255]));
    }

    #[test]
    fn invalid_keys_and_values_are_refused() {
        let mut md = MetadataMap::new();
        assert!(md.insert("", "v").is_err());
        assert!(md.insert("grpc-status", "0").is_err());
        assert!(md.insert("te", "trailers").is_err());
        assert!(md.insert("content-type", "x").is_err());
        assert!(md.insert("has space", "v").is_err());
        assert!(md.insert("k", "caf\u{e9}").is_err());
        assert!(md.insert("k", "line\nbreak").is_err());
        assert!(md.insert("k-bin", "v").is_err());
        assert!(md.insert_bin("k", b"v").is_err());
        assert!(md.is_empty());
    }

    #[test]
    fn received_reserved_headers_are_not_metadata() {
        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        h.insert("grpc-timeout", HeaderValue::from_static("1S"));
        h.insert("user-agent", HeaderValue::from_static("x"));
        h.insert("custom", HeaderValue::from_static("y"));
        let md = MetadataMap::from_received(h).unwrap();
        let mut keys = md.keys().collect::<Vec<_>>();
        keys.sort_unstable();
        assert_eq!(keys, ["custom", "user-agent"]);
    }

    #[test]
    fn received_bad_values_are_internal() {
        let mut h = HeaderMap::new();
        h.insert("k", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let err = MetadataMap::from_received(h).unwrap_err();
        assert_eq!(err.code(), Code::Internal);
        assert!(err.message().contains("\"k\""), "{}", err.message());
        let mut h = HeaderMap::new();
        h.insert("k-bin", HeaderValue::from_static("!!!"));
        assert_eq!(
            MetadataMap::from_received(h).unwrap_err().code(),
            Code::Internal
        );
    }

    #[test]
    fn write_skips_reserved() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("0"));
        h.insert("a", HeaderValue::from_static("1"));
        let md = MetadataMap { headers: h };
        let mut out = HeaderMap::new();
        md.write_to(&mut out).unwrap();
        assert_eq!(out.len(), 1);
    }
}
