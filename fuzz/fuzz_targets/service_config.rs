//! Service config JSON (`ServiceConfig::parse`: load balancing, method
//! configs with names, timeouts, sizes, retry and hedging policies, retry
//! throttling, health checking) and protobuf JSON durations.
//!
//! Checks: no panic; an accepted config's JSON parses again to a config
//! that answers the same; a parsed duration printed in canonical form
//! parses back to the same value.
#![no_main]

use ferrogrpc::serviceconfig::{parse_duration, ServiceConfig};
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 6] = [
    "/test.Echo/Unary",
    "test.Echo/Unary",
    "/test.Echo/Other",
    "/other.Service/M",
    "",
    "/",
];

fn summary(config: &ServiceConfig) -> String {
    let methods: Vec<String> = PATHS
        .iter()
        .map(|p| format!("{:?}", config.method_config(p)))
        .collect();
    format!(
        "{:?} {:?} {:?} {methods:?}",
        config.load_balancing_config(),
        config.retry_throttling(),
        config.health_check_service_name()
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = ServiceConfig::parse(text) {
        let again = ServiceConfig::parse(config.json()).expect("parses again");
        assert_eq!(summary(&config), summary(&again));
        if let Some(m) = config.method_config("/test.Echo/Unary") {
            if let Some(retry) = &m.retry_policy {
                assert!(
                    retry.max_attempts >= 2 && retry.max_attempts <= 5,
                    "{retry:?}"
                );
                assert!(retry.backoff_multiplier > 0.0, "{retry:?}");
                for code in [ferrogrpc::Code::Unavailable, ferrogrpc::Code::Internal] {
                    let _ = retry.is_retryable(code);
                }
            }
            if let Some(hedging) = &m.hedging_policy {
                assert!(
                    hedging.max_attempts >= 2 && hedging.max_attempts <= 5,
                    "{hedging:?}"
                );
            }
        }
    }
    if let Some(d) = parse_duration(text) {
        let canonical = format!("{}.{:09}s", d.as_secs(), d.subsec_nanos());
        assert_eq!(parse_duration(&canonical), Some(d), "{canonical}");
    }
});
