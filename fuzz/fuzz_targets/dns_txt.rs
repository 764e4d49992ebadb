//! The DNS resolver's service config from TXT records (gRFC A2): the
//! `grpc_config=` prefix, several records, the JSON array of choices
//! (`clientLanguage`, `percentage`, `clientHostname`, `serviceConfig`),
//! then the chosen config's own parsing.
//!
//! Checks: no panic; a chosen config's JSON parses as a service config on
//! its own.
//!
//! Input: byte 0: bit 7 prefixes the first record with `grpc_config=`,
//! the rest (modulo 100) is the client's percentage draw; then the records,
//! separated by NUL bytes.
#![no_main]

use ferrogrpc::{__fuzz, serviceconfig::ServiceConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut records: Vec<String> = text.split('\0').map(str::to_string).collect();
    if first & 0x80 != 0 {
        records[0].insert_str(0, "grpc_config=");
    }
    let draw = u32::from(first & 0x7f) % 100;
    for hostname in [Some("fuzz-host"), None] {
        if let Some(Ok(config)) = __fuzz::dns_txt_service_config(&records, "rust", hostname, draw) {
            ServiceConfig::parse(config.json()).expect("the chosen config parses on its own");
        }
    }
});
