//! `grpc-message` percent-decoding (lenient) and percent-encoding.
//!
//! Checks: no panic; encoding gives printable ASCII that is a valid header
//! value and decodes back to the same text; decoding is the identity on
//! printable ASCII without `%`; encode(decode(x)) is stable.
#![no_main]

use ferrogrpc::__fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = __fuzz::percent_decode(data);
    let encoded = __fuzz::percent_encode(&decoded);
    assert!(
        encoded.bytes().all(|b| (0x20..=0x7e).contains(&b)),
        "{encoded:?}"
    );
    assert!(http::HeaderValue::from_str(&encoded).is_ok());
    assert_eq!(__fuzz::percent_decode(encoded.as_bytes()), decoded);
    assert_eq!(
        __fuzz::percent_encode(&__fuzz::percent_decode(encoded.as_bytes())),
        encoded
    );
    if data.iter().all(|b| (0x20..=0x7e).contains(b) && *b != b'%') {
        assert_eq!(decoded.as_bytes(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let enc = __fuzz::percent_encode(text);
        assert_eq!(__fuzz::percent_decode(enc.as_bytes()), text);
    }
});
