//! Dial target parsing (`resolver::target`): schemes, authority, opaque
//! and path forms, percent-decoding, legacy `http(s)://`, and the checks
//! of the built-in schemes: `dns` host and port, `ipv4`/`ipv6` address
//! lists with ports and zones, `unix` and `unix-abstract` paths.
//!
//! Checks: no panic; a parsed target's canonical form (`Display`) parses
//! back to an equal target; the helpers accept what `parse` accepted.
#![no_main]

use ferrogrpc::resolver::target::{self, DEFAULT_PORT};
use libfuzzer_sys::fuzz_target;

fn registered(scheme: &str) -> bool {
    matches!(
        scheme,
        "dns" | "unix" | "unix-abstract" | "ipv4" | "ipv6" | "passthrough" | "custom"
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = target::split_host_port(text, DEFAULT_PORT);
    let _ = target::parse_ip_list("ipv4", text, DEFAULT_PORT);
    let _ = target::parse_ip_list("ipv6", text, DEFAULT_PORT);
    let Ok(parsed) = target::parse(text, registered) else {
        return;
    };
    let canonical = parsed.to_string();
    let again = target::parse(&canonical, registered)
        .unwrap_or_else(|e| panic!("{text:?} -> {canonical:?} does not parse: {e}"));
    assert_eq!(again, parsed, "{text:?} -> {canonical:?}");
    match parsed.scheme() {
        "dns" => {
            target::split_host_port(parsed.endpoint(), DEFAULT_PORT)
                .expect("parse checked the dns endpoint");
        }
        "ipv4" | "ipv6" => {
            target::parse_ip_list(parsed.scheme(), parsed.endpoint(), DEFAULT_PORT)
                .expect("parse checked the address list");
        }
        "unix" | "unix-abstract" => {
            target::unix_path(&parsed).expect("parse checked the path");
        }
        _ => {}
    }
    let _ = parsed.wants_tls();
});
