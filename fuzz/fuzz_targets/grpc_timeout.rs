//! `grpc-timeout` parsing (1-8 digits and a unit) and encoding.
//!
//! Checks: no panic; a parsed value encodes (in at most 9 bytes) to text
//! that parses back to exactly that value; any duration encodes to one that
//! is not shorter and longer by less than one unit of the encoding.
#![no_main]

use std::time::Duration;

use ferrogrpc::__fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = __fuzz::parse_timeout(data) {
        let text = __fuzz::encode_timeout(d);
        assert!(text.len() <= 9, "{text:?}");
        assert_eq!(__fuzz::parse_timeout(text.as_bytes()), Ok(d), "{text:?}");
        // The accepted text is 1-8 digits and a unit.
        assert!((2..=9).contains(&data.len()));
    }
    if data.len() >= 12 {
        let secs = u64::from_le_bytes(data[..8].try_into().unwrap());
        let nanos = u32::from_le_bytes(data[8..12].try_into().unwrap()) % 1_000_000_000;
        let d = Duration::new(secs, nanos);
        let text = __fuzz::encode_timeout(d);
        let back = __fuzz::parse_timeout(text.as_bytes()).expect("encoded text parses");
        let unit = match text.as_bytes()[text.len() - 1] {
            b'n' => Duration::from_nanos(1),
            b'u' => Duration::from_micros(1),
            b'm' => Duration::from_millis(1),
            b'S' => Duration::from_secs(1),
            b'M' => Duration::from_secs(60),
            _ => Duration::from_secs(3600),
        };
        let max = Duration::from_secs(99_999_999 * 3600);
        if d <= max {
            assert!(
                back >= d && back - d < unit,
                "{d:?} -> {text:?} -> {back:?}"
            );
        } else {
            assert_eq!(back, max);
        }
    }
});
