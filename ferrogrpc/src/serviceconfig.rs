//! Service config: per-target settings published by the service owner.
//!
//! A service config is a JSON document (schema: `grpc/service_config/
//! service_config.proto`, described in gRPC's `doc/service_config.md`) that
//! tells every client of a service how to call it: which load-balancing
//! policy to use, default deadlines, wait-for-ready and message size limits
//! per method, retry or hedging policies (gRFC A6), retry throttling, and the
//! service name for client-side health checking.
//!
//! A channel gets its service config from one of two places:
//!
//! - the name resolver, which may find one alongside the addresses (for DNS,
//!   in a TXT record) and reports it with
//!   [`State::with_service_config`](crate::resolver::State::with_service_config);
//! - the application, through `ChannelBuilder::default_service_config`, used
//!   when the resolver supplies none (or when resolver configs are disabled).
//!
//! [`ServiceConfig::parse`] checks the whole document the way gRPC-Go does
//! and rejects it with an [`Error`] naming the offending field (for example
//! `methodConfig[1].timeout: "abc" is not a duration`). Unknown fields are
//! ignored so that configs written for newer gRPC versions still load, and a
//! JSON `null` counts as an absent field, as in protobuf's JSON mapping.
//!
//! What a channel takes from the config: the load-balancing list
//! ([`ServiceConfig::load_balancing_config`]) to choose its policy, and for
//! each call the [`MethodConfig`] found by [`ServiceConfig::method_config`]
//! for its default wait-for-ready, timeout and message size limits.
//! Retry policies ([`RetryPolicy`]), hedging policies ([`HedgingPolicy`])
//! and [`RetryThrottling`] are acted on by the channel for all four kinds of
//! calls (gRFC A6).
//!
//! A parsed config is immutable and shared: cloning it is a reference-count
//! increment, and looking up a method's config does not allocate.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::codes::Code;

/// The default client-side cap on `maxAttempts` of retry and hedging
/// policies (gRFC A6): a larger configured value is treated as this one.
pub const MAX_ATTEMPTS_LIMIT: u32 = 5;

/// The largest number of seconds a protobuf `Duration` may hold (10,000
/// years).
const MAX_DURATION_SECS: u64 = 315_576_000_000;

/// A parsed, validated service config.
///
/// Cheap to clone: clones share one immutable copy.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    json: String,
    load_balancing_config: Vec<(String, Value)>,
    method_configs: Vec<MethodConfig>,
    services: HashMap<Box<str>, ServiceEntry>,
    default_method: Option<usize>,
    retry_throttling: Option<RetryThrottling>,
    health_check_service_name: Option<String>,
}

/// The method configs naming one service, as indices into
/// `Inner::method_configs`.
#[derive(Debug, Default)]
struct ServiceEntry {
    all_methods: Option<usize>,
    methods: HashMap<Box<str>, usize>,
}

/// The settings a service config gives one method (a `methodConfig` entry).
///
/// Every field is optional; `None` means the config does not set it and the
/// channel's or call's own setting applies.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct MethodConfig {
    /// `waitForReady`: whether calls wait for a ready connection instead of
    /// failing at once on a transient failure. A value set on the call
    /// itself takes precedence.
    pub wait_for_ready: Option<bool>,
    /// `timeout`: the default deadline of a call, measured from its start.
    /// When the call also has a deadline, the earlier of the two applies.
    pub timeout: Option<Duration>,
    /// `maxRequestMessageBytes`: the largest message the client may send.
    /// When the channel or call also sets a limit, the smaller one applies.
    /// Values beyond `usize::MAX` are read as `usize::MAX`.
    pub max_request_message_bytes: Option<usize>,
    /// `maxResponseMessageBytes`: the largest message the client accepts.
    /// When the channel or call also sets a limit, the smaller one applies.
    /// Values beyond `usize::MAX` are read as `usize::MAX`.
    pub max_response_message_bytes: Option<usize>,
    /// `retryPolicy`: how failed calls are retried. Never set together with
    /// [`hedging_policy`](Self::hedging_policy).
    pub retry_policy: Option<RetryPolicy>,
    /// `hedgingPolicy`: how calls are hedged. Never set together with
    /// [`retry_policy`](Self::retry_policy).
    pub hedging_policy: Option<HedgingPolicy>,
}

/// A method's retry policy (`retryPolicy`, gRFC A6).
///
/// The attempt after the `n`-th failure is made after a random delay in
/// `[0, min(initial_backoff * backoff_multiplier^(n-1), max_backoff))`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The most attempts a call makes, the original one included: the
    /// configured value capped at [`MAX_ATTEMPTS_LIMIT`]. Always at least 2.
    pub max_attempts: u32,
    /// `maxAttempts` as configured, before the cap (values beyond `u32::MAX`
    /// read as `u32::MAX`), for a channel that uses a cap of its own.
    pub configured_max_attempts: u32,
    /// `initialBackoff`: the bound of the first retry's random delay.
    /// Greater than zero.
    pub initial_backoff: Duration,
    /// `maxBackoff`: the largest bound of a retry's random delay. Greater
    /// than zero.
    pub max_backoff: Duration,
    /// `backoffMultiplier`: how the delay bound grows after each attempt.
    /// Finite and greater than zero.
    pub backoff_multiplier: f64,
    /// `retryableStatusCodes`: the statuses that may be retried; never
    /// empty, sorted, without repeats.
    pub retryable_status_codes: Vec<Code>,
}

impl RetryPolicy {
    /// Whether a call that failed with `code` may be retried.
    pub fn is_retryable(&self, code: Code) -> bool {
        self.retryable_status_codes.contains(&code)
    }
}

/// A method's hedging policy (`hedgingPolicy`, gRFC A6): the call is sent
/// again every `hedging_delay` until one attempt succeeds or
/// `max_attempts` are under way.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HedgingPolicy {
    /// The most attempts a call makes, the original one included: the
    /// configured value capped at [`MAX_ATTEMPTS_LIMIT`]. Always at least 2.
    pub max_attempts: u32,
    /// `maxAttempts` as configured, before the cap (values beyond `u32::MAX`
    /// read as `u32::MAX`), for a channel that uses a cap of its own.
    pub configured_max_attempts: u32,
    /// `hedgingDelay`: the time between attempts; zero (the default when
    /// absent) sends all attempts at once.
    pub hedging_delay: Duration,
    /// `nonFatalStatusCodes`: the statuses after which the other attempts
    /// carry on (any other status ends the call); sorted, without repeats,
    /// possibly empty.
    pub non_fatal_status_codes: Vec<Code>,
}

impl HedgingPolicy {
    /// Whether an attempt that failed with `code` lets the others carry on.
    pub fn is_non_fatal(&self, code: Code) -> bool {
        self.non_fatal_status_codes.contains(&code)
    }
}

/// Retry throttling for a whole target (`retryThrottling`, gRFC A6).
///
/// The channel keeps a token count starting at `max_tokens`: each failed
/// call takes one token, each successful call adds `token_ratio`, and
/// retries and hedged attempts are not made while the count is at or below
/// `max_tokens / 2`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetryThrottling {
    /// `maxTokens`: the size of the token bucket, in `1..=1000`.
    pub max_tokens: u32,
    /// `tokenRatio`: the tokens a successful call adds, rounded to three
    /// decimal places; greater than zero.
    pub token_ratio: f64,
}

/// Why a service config was rejected.
///
/// The message names the field at fault by its path in the document, such
/// as `methodConfig[1].timeout: "abc" is not a duration`.
#[derive(Clone, Debug)]
pub struct Error {
    message: String,
}

impl Error {
    fn new(message: String) -> Error {
        Error { message }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl ServiceConfig {
    /// Parses and validates a service config in its JSON form.
    ///
    /// # Errors
    /// When the text is not a JSON object, or a known field has the wrong
    /// type or an invalid value; the error names the field.
    pub fn parse(json: &str) -> Result<ServiceConfig, Error> {
        if json.trim().is_empty() {
            return Err(Error::new("service config is empty".to_owned()));
        }
        let value: Value = serde_json::from_str(json)
            .map_err(|e| Error::new(format!("service config is not valid JSON: {e}")))?;
        let Some(root) = value.as_object() else {
            return Err(Error::new(format!(
                "service config must be a JSON object, found {}",
                show(&value)
            )));
        };

        let load_balancing_config = parse_load_balancing(root)?;

        let mut method_configs = Vec::new();
        let mut services: HashMap<Box<str>, ServiceEntry> = HashMap::new();
        let mut default_method = None;
        if let Some(list) = get(root, "methodConfig") {
            let at = At::top("methodConfig");
            for (i, item) in as_array(list, at)?.iter().enumerate() {
                let at = at.index(i);
                let (config, names) = parse_method_config(item, at)?;
                let index = method_configs.len();
                for (j, key, name) in &names {
                    let duplicate = match *key {
                        NameKey::Default => default_method.replace(index).is_some(),
                        NameKey::Service(service) => services
                            .entry(service.into())
                            .or_default()
                            .all_methods
                            .replace(index)
                            .is_some(),
                        NameKey::Method(service, method) => services
                            .entry(service.into())
                            .or_default()
                            .methods
                            .insert(method.into(), index)
                            .is_some(),
                    };
                    if duplicate {
                        return Err(err(
                            at.field("name").index(*j),
                            format_args!("{} is a duplicate of an earlier name", show(name)),
                        ));
                    }
                }
                // A method config without names applies to no method.
                if !names.is_empty() {
                    method_configs.push(config);
                }
            }
        }

        let retry_throttling = match get(root, "retryThrottling") {
            Some(v) => Some(parse_retry_throttling(v, At::top("retryThrottling"))?),
            None => None,
        };

        let health_check_service_name = match get(root, "healthCheckConfig") {
            Some(v) => {
                let at = At::top("healthCheckConfig");
                let obj = as_object(v, at)?;
                Some(match get(obj, "serviceName") {
                    Some(name) => as_str(name, at.field("serviceName"))?.to_owned(),
                    None => String::new(),
                })
            }
            None => None,
        };

        Ok(ServiceConfig {
            inner: Arc::new(Inner {
                json: json.to_owned(),
                load_balancing_config,
                method_configs,
                services,
                default_method,
                retry_throttling,
                health_check_service_name,
            }),
        })
    }

    /// The JSON text this config was parsed from, unchanged.
    pub fn json(&self) -> &str {
        &self.inner.json
    }

    /// The load-balancing policies to choose from, in the config's order of
    /// preference, each as its name and its (unvalidated) JSON config. The
    /// channel uses the first policy it knows, and that policy checks its
    /// config.
    ///
    /// Taken from `loadBalancingConfig` when present; otherwise from the
    /// legacy `loadBalancingPolicy`, giving one entry with the name in lower
    /// case (`"ROUND_ROBIN"` becomes `"round_robin"`) and an empty config.
    /// Empty when the config names no policy (the channel's default then
    /// applies).
    pub fn load_balancing_config(&self) -> &[(String, Value)] {
        &self.inner.load_balancing_config
    }

    /// The method config for a call to `method_path` (`"/package.Service/Method"`;
    /// the leading `/` may be left out). The most specific name wins: the
    /// exact method, then the whole service, then the config's default
    /// (a name with no service). `None` when none applies.
    pub fn method_config(&self, method_path: &str) -> Option<&MethodConfig> {
        let inner = &*self.inner;
        let path = method_path.strip_prefix('/').unwrap_or(method_path);
        let found = path.rsplit_once('/').and_then(|(service, method)| {
            let entry = inner.services.get(service)?;
            entry.methods.get(method).copied().or(entry.all_methods)
        });
        found
            .or(inner.default_method)
            .and_then(|index| inner.method_configs.get(index))
    }

    /// The retry throttling for this target (`retryThrottling`), if set.
    /// Parsed and validated, not yet acted upon by the channel.
    pub fn retry_throttling(&self) -> Option<&RetryThrottling> {
        self.inner.retry_throttling.as_ref()
    }

    /// The service name for client-side health checking
    /// (`healthCheckConfig.serviceName`). `None` when the config has no
    /// `healthCheckConfig`; `Some("")` when it has one without a service
    /// name, which asks about the server as a whole.
    pub fn health_check_service_name(&self) -> Option<&str> {
        self.inner.health_check_service_name.as_deref()
    }
}

/// Parses a protobuf JSON `Duration` (`"1s"`, `"0.5s"`, `".25s"`,
/// `"1.000000001s"`): decimal seconds with at most nine fractional digits
/// and an `s` suffix. `None` when the text is malformed, negative or beyond
/// the protobuf range of 315,576,000,000 seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    parse_duration_text(text).ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DurationError {
    Malformed,
    Negative,
    OutOfRange,
}

fn parse_duration_text(text: &str) -> Result<Duration, DurationError> {
    let body = text.strip_suffix('s').ok_or(DurationError::Malformed)?;
    let (negative, body) = match body.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) || (whole.is_empty() && frac.is_empty()) {
        return Err(DurationError::Malformed);
    }
    if frac.len() > 9 {
        return Err(DurationError::Malformed);
    }
    let secs = if whole.is_empty() {
        0
    } else {
        // Only digits, so the parse fails only on overflow.
        whole
            .parse::<u64>()
            .map_err(|_| DurationError::OutOfRange)?
    };
    if secs > MAX_DURATION_SECS {
        return Err(DurationError::OutOfRange);
    }
    let mut nanos: u32 = 0;
    for b in frac.bytes() {
        nanos = nanos * 10 + u32::from(b - b'0');
    }
    for _ in frac.len()..9 {
        nanos *= 10;
    }
    let duration = Duration::new(secs, nanos);
    if negative && !duration.is_zero() {
        return Err(DurationError::Negative);
    }
    Ok(duration)
}

/// Where a value sits in the document, printed as `a.b[2].c`; built on the
/// stack as the parser descends, formatted only for an error.
#[derive(Clone, Copy)]
struct At<'a> {
    parent: Option<&'a At<'a>>,
    seg: Seg<'a>,
}

#[derive(Clone, Copy)]
enum Seg<'a> {
    Field(&'a str),
    Index(usize),
}

impl<'a> At<'a> {
    fn top(name: &'a str) -> At<'a> {
        At {
            parent: None,
            seg: Seg::Field(name),
        }
    }

    fn field(&'a self, name: &'a str) -> At<'a> {
        At {
            parent: Some(self),
            seg: Seg::Field(name),
        }
    }

    fn index(&'a self, index: usize) -> At<'a> {
        At {
            parent: Some(self),
            seg: Seg::Index(index),
        }
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
        }
        match self.seg {
            Seg::Field(name) if self.parent.is_some() => write!(f, ".{name}"),
            Seg::Field(name) => f.write_str(name),
            Seg::Index(index) => write!(f, "[{index}]"),
        }
    }
}

fn err(at: At<'_>, problem: impl fmt::Display) -> Error {
    Error::new(format!("{at}: {problem}"))
}

fn missing(at: At<'_>) -> Error {
    err(at, "is required")
}

/// A value as compact JSON for an error message, cut short if long.
fn show(value: &Value) -> String {
    const LIMIT: usize = 64;
    let mut text = value.to_string();
    if text.len() > LIMIT {
        let mut end = LIMIT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// A field of an object; `null` counts as absent, as in protobuf JSON.
fn get<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn as_object<'v>(value: &'v Value, at: At<'_>) -> Result<&'v Map<String, Value>, Error> {
    value.as_object().ok_or_else(|| {
        err(
            at,
            format_args!("expected an object, found {}", show(value)),
        )
    })
}

fn as_array<'v>(value: &'v Value, at: At<'_>) -> Result<&'v [Value], Error> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| err(at, format_args!("expected a list, found {}", show(value))))
}

fn as_str<'v>(value: &'v Value, at: At<'_>) -> Result<&'v str, Error> {
    value
        .as_str()
        .ok_or_else(|| err(at, format_args!("expected a string, found {}", show(value))))
}

fn as_bool(value: &Value, at: At<'_>) -> Result<bool, Error> {
    value.as_bool().ok_or_else(|| {
        err(
            at,
            format_args!("expected true or false, found {}", show(value)),
        )
    })
}

/// A non-negative integer: a JSON number with no fractional part, or a
/// string of digits (protobuf JSON's form for 64-bit integers). Values
/// beyond `u64::MAX` saturate.
fn as_uint(value: &Value, at: At<'_>) -> Result<u64, Error> {
    let negative = || err(at, format_args!("{} is negative", show(value)));
    let not_integer = || err(at, format_args!("{} is not an integer", show(value)));
    match value {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                return Ok(u);
            }
            if n.as_i64().is_some() {
                return Err(negative());
            }
            match n.as_f64() {
                Some(f) if f.is_finite() && f.fract() == 0.0 => {
                    if f < 0.0 {
                        Err(negative())
                    } else {
                        // `as` saturates at u64::MAX.
                        Ok(f as u64)
                    }
                }
                _ => Err(not_integer()),
            }
        }
        Value::String(s) => {
            let (is_negative, digits) = match s.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, s.as_str()),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(not_integer());
            }
            // Only digits, so the parse fails only on overflow.
            let n = digits.parse::<u64>().unwrap_or(u64::MAX);
            if is_negative && n != 0 {
                return Err(negative());
            }
            Ok(n)
        }
        _ => Err(err(
            at,
            format_args!("expected an integer, found {}", show(value)),
        )),
    }
}

/// A finite number: a JSON number, or a string holding one (protobuf JSON
/// accepts both for floating-point fields).
fn as_number(value: &Value, at: At<'_>) -> Result<f64, Error> {
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s)
            if !s.is_empty()
                && s.bytes().all(|b| {
                    b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')
                }) =>
        {
            s.parse::<f64>().ok()
        }
        Value::String(_) => None,
        _ => {
            return Err(err(
                at,
                format_args!("expected a number, found {}", show(value)),
            ))
        }
    };
    match number {
        Some(f) if f.is_finite() => Ok(f),
        _ => Err(err(
            at,
            format_args!("{} is not a finite number", show(value)),
        )),
    }
}

fn as_duration(value: &Value, at: At<'_>) -> Result<Duration, Error> {
    let Value::String(text) = value else {
        return Err(err(
            at,
            format_args!(
                "expected a duration string such as \"1.5s\", found {}",
                show(value)
            ),
        ));
    };
    parse_duration_text(text).map_err(|e| {
        let problem = match e {
            DurationError::Malformed => "is not a duration",
            DurationError::Negative => "is negative",
            DurationError::OutOfRange => "is out of range",
        };
        err(at, format_args!("{} {problem}", show(value)))
    })
}

/// A required duration field that must be greater than zero.
fn positive_duration(obj: &Map<String, Value>, name: &str, at: At<'_>) -> Result<Duration, Error> {
    let at = at.field(name);
    let value = get(obj, name).ok_or_else(|| missing(at))?;
    let duration = as_duration(value, at)?;
    if duration.is_zero() {
        return Err(err(
            at,
            format_args!("{} must be greater than zero", show(value)),
        ));
    }
    Ok(duration)
}

/// A list of status codes, by name (`"UNAVAILABLE"`) or number (`14`);
/// returned sorted and without repeats.
fn as_codes(value: &Value, at: At<'_>) -> Result<Vec<Code>, Error> {
    let list = as_array(value, at)?;
    let mut codes = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let at = at.index(i);
        let code = match item {
            Value::String(name) => Code::ALL.iter().copied().find(|c| c.name() == name),
            Value::Number(n) => n
                .as_u64()
                .and_then(|u| usize::try_from(u).ok())
                .and_then(|u| Code::ALL.get(u).copied()),
            _ => {
                return Err(err(
                    at,
                    format_args!(
                        "expected a status code such as \"UNAVAILABLE\", found {}",
                        show(item)
                    ),
                ))
            }
        };
        let code =
            code.ok_or_else(|| err(at, format_args!("{} is not a status code", show(item))))?;
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes.sort_unstable();
    Ok(codes)
}

/// `maxAttempts` of a retry or hedging policy: the capped and the
/// configured value.
fn parse_max_attempts(obj: &Map<String, Value>, at: At<'_>) -> Result<(u32, u32), Error> {
    let at = at.field("maxAttempts");
    let value = get(obj, "maxAttempts").ok_or_else(|| missing(at))?;
    let n = as_uint(value, at)?;
    if n < 2 {
        return Err(err(at, format_args!("{} must be at least 2", show(value))));
    }
    let configured = u32::try_from(n).unwrap_or(u32::MAX);
    Ok((configured.min(MAX_ATTEMPTS_LIMIT), configured))
}

fn parse_load_balancing(root: &Map<String, Value>) -> Result<Vec<(String, Value)>, Error> {
    // The legacy field is checked even when `loadBalancingConfig` wins.
    let legacy = match get(root, "loadBalancingPolicy") {
        Some(value) => {
            let at = At::top("loadBalancingPolicy");
            let name = as_str(value, at)?;
            if name.is_empty() {
                return Err(err(at, "is empty"));
            }
            Some(name.to_ascii_lowercase())
        }
        None => None,
    };
    if let Some(value) = get(root, "loadBalancingConfig") {
        let at = At::top("loadBalancingConfig");
        let list = as_array(value, at)?;
        if list.is_empty() {
            return Err(err(at, "is empty; it must name at least one policy"));
        }
        let mut policies = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let entry = item
                .as_object()
                .filter(|obj| obj.len() == 1)
                .and_then(|obj| obj.iter().next());
            let Some((name, config)) = entry else {
                return Err(err(
                    at.index(i),
                    format_args!(
                        "{} must be an object with exactly one key, the policy name",
                        show(item)
                    ),
                ));
            };
            policies.push((name.clone(), config.clone()));
        }
        return Ok(policies);
    }
    Ok(legacy
        .map(|name| vec![(name, Value::Object(Map::new()))])
        .unwrap_or_default())
}

/// Which methods a `name` entry covers.
#[derive(Clone, Copy)]
enum NameKey<'v> {
    Default,
    Service(&'v str),
    Method(&'v str, &'v str),
}

/// A `name` entry: its index in the list, what it covers, and its JSON.
type NamedEntry<'v> = (usize, NameKey<'v>, &'v Value);

fn parse_method_config<'v>(
    value: &'v Value,
    at: At<'_>,
) -> Result<(MethodConfig, Vec<NamedEntry<'v>>), Error> {
    let obj = as_object(value, at)?;

    let mut names = Vec::new();
    if let Some(list) = get(obj, "name") {
        let list_at = at.field("name");
        for (j, item) in as_array(list, list_at)?.iter().enumerate() {
            let item_at = list_at.index(j);
            let name = as_object(item, item_at)?;
            let text = |field: &'static str| -> Result<&'v str, Error> {
                match get(name, field) {
                    Some(v) => as_str(v, item_at.field(field)),
                    None => Ok(""),
                }
            };
            let service = text("service")?;
            let method = text("method")?;
            let key = match (service.is_empty(), method.is_empty()) {
                (true, true) => NameKey::Default,
                (true, false) => {
                    return Err(err(
                        item_at,
                        format_args!("{} has a method but no service", show(item)),
                    ))
                }
                (false, true) => NameKey::Service(service),
                (false, false) => NameKey::Method(service, method),
            };
            names.push((j, key, item));
        }
    }

    let mut config = MethodConfig::default();
    if let Some(v) = get(obj, "waitForReady") {
        config.wait_for_ready = Some(as_bool(v, at.field("waitForReady"))?);
    }
    if let Some(v) = get(obj, "timeout") {
        config.timeout = Some(as_duration(v, at.field("timeout"))?);
    }
    for (field, slot) in [
        (
            "maxRequestMessageBytes",
            &mut config.max_request_message_bytes,
        ),
        (
            "maxResponseMessageBytes",
            &mut config.max_response_message_bytes,
        ),
    ] {
        if let Some(v) = get(obj, field) {
            let n = as_uint(v, at.field(field))?;
            *slot = Some(usize::try_from(n).unwrap_or(usize::MAX));
        }
    }
    let retry = get(obj, "retryPolicy");
    let hedging = get(obj, "hedgingPolicy");
    if retry.is_some() && hedging.is_some() {
        return Err(err(
            at,
            "has both retryPolicy and hedgingPolicy; at most one is allowed",
        ));
    }
    if let Some(v) = retry {
        config.retry_policy = Some(parse_retry_policy(v, at.field("retryPolicy"))?);
    }
    if let Some(v) = hedging {
        config.hedging_policy = Some(parse_hedging_policy(v, at.field("hedgingPolicy"))?);
    }
    Ok((config, names))
}

fn parse_retry_policy(value: &Value, at: At<'_>) -> Result<RetryPolicy, Error> {
    let obj = as_object(value, at)?;
    let (max_attempts, configured_max_attempts) = parse_max_attempts(obj, at)?;
    let initial_backoff = positive_duration(obj, "initialBackoff", at)?;
    let max_backoff = positive_duration(obj, "maxBackoff", at)?;

    let multiplier_at = at.field("backoffMultiplier");
    let multiplier = get(obj, "backoffMultiplier").ok_or_else(|| missing(multiplier_at))?;
    let backoff_multiplier = as_number(multiplier, multiplier_at)?;
    if backoff_multiplier <= 0.0 {
        return Err(err(
            multiplier_at,
            format_args!("{} must be greater than zero", show(multiplier)),
        ));
    }

    let codes_at = at.field("retryableStatusCodes");
    let codes = get(obj, "retryableStatusCodes").ok_or_else(|| missing(codes_at))?;
    let retryable_status_codes = as_codes(codes, codes_at)?;
    if retryable_status_codes.is_empty() {
        return Err(err(codes_at, "is empty; it must list at least one code"));
    }

    Ok(RetryPolicy {
        max_attempts,
        configured_max_attempts,
        initial_backoff,
        max_backoff,
        backoff_multiplier,
        retryable_status_codes,
    })
}

fn parse_hedging_policy(value: &Value, at: At<'_>) -> Result<HedgingPolicy, Error> {
    let obj = as_object(value, at)?;
    let (max_attempts, configured_max_attempts) = parse_max_attempts(obj, at)?;
    let hedging_delay = match get(obj, "hedgingDelay") {
        Some(v) => as_duration(v, at.field("hedgingDelay"))?,
        None => Duration::ZERO,
    };
    let non_fatal_status_codes = match get(obj, "nonFatalStatusCodes") {
        Some(v) => as_codes(v, at.field("nonFatalStatusCodes"))?,
        None => Vec::new(),
    };
    Ok(HedgingPolicy {
        max_attempts,
        configured_max_attempts,
        hedging_delay,
        non_fatal_status_codes,
    })
}

fn parse_retry_throttling(value: &Value, at: At<'_>) -> Result<RetryThrottling, Error> {
    let obj = as_object(value, at)?;

    let tokens_at = at.field("maxTokens");
    let tokens = get(obj, "maxTokens").ok_or_else(|| missing(tokens_at))?;
    let max_tokens = match as_uint(tokens, tokens_at)? {
        n @ 1..=1000 => n as u32,
        _ => {
            return Err(err(
                tokens_at,
                format_args!("{} is not between 1 and 1000", show(tokens)),
            ))
        }
    };

    let ratio_at = at.field("tokenRatio");
    let ratio = get(obj, "tokenRatio").ok_or_else(|| missing(ratio_at))?;
    let thousandths = (as_number(ratio, ratio_at)? * 1000.0).round();
    if thousandths < 1.0 {
        return Err(err(
            ratio_at,
            format_args!(
                "{} must be greater than zero at three decimal places",
                show(ratio)
            ),
        ));
    }

    Ok(RetryThrottling {
        max_tokens,
        token_ratio: thousandths / 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> ServiceConfig {
        match ServiceConfig::parse(text) {
            Ok(config) => config,
            Err(e) => panic!("{text} should parse: {e}"),
        }
    }

    fn parse_err(text: &str) -> String {
        match ServiceConfig::parse(text) {
            Ok(config) => panic!("{text} should be rejected, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// The error for a config with one method config holding `fields`.
    fn method_err(fields: &str) -> String {
        parse_err(&format!(
            r#"{{"methodConfig": [{{"name": [{{"service": "s"}}], {fields}}}]}}"#
        ))
    }

    /// The method config for `/s/m` of a config with one method config
    /// holding `fields`.
    fn method_ok(fields: &str) -> MethodConfig {
        let config = parse(&format!(
            r#"{{"methodConfig": [{{"name": [{{"service": "s"}}], {fields}}}]}}"#
        ));
        config
            .method_config("/s/m")
            .cloned()
            .expect("config applies")
    }

    fn assert_contains(haystack: &str, needle: &str) {
        assert!(
            haystack.contains(needle),
            "{haystack:?} does not contain {needle:?}"
        );
    }

    #[test]
    fn service_config_md_example() {
        let text = r#"{
            "loadBalancingPolicy": "round_robin",
            "methodConfig": [
                {
                    "name": [{"service": "MyService"}],
                    "waitForReady": true,
                    "timeout": "2.5s",
                    "maxRequestMessageBytes": 1024,
                    "maxResponseMessageBytes": 2048
                },
                {
                    "name": [{"service": "MyService", "method": "Foo"}],
                    "waitForReady": false,
                    "timeout": "0.1s"
                }
            ]
        }"#;
        let config = parse(text);
        assert_eq!(config.json(), text);
        assert_eq!(
            config.load_balancing_config(),
            &[("round_robin".to_owned(), json!({}))]
        );

        let foo = config.method_config("/MyService/Foo").expect("Foo");
        assert_eq!(foo.wait_for_ready, Some(false));
        assert_eq!(foo.timeout, Some(Duration::from_millis(100)));
        assert_eq!(foo.max_request_message_bytes, None);

        let bar = config.method_config("/MyService/Bar").expect("Bar");
        assert_eq!(bar.wait_for_ready, Some(true));
        assert_eq!(bar.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(bar.max_request_message_bytes, Some(1024));
        assert_eq!(bar.max_response_message_bytes, Some(2048));
        assert_eq!(bar.retry_policy, None);
        assert_eq!(bar.hedging_policy, None);

        assert!(config.method_config("/OtherService/Foo").is_none());
        assert!(config.retry_throttling().is_none());
        assert!(config.health_check_service_name().is_none());
    }

    #[test]
    fn a6_retry_example() {
        let config = parse(
            r#"{"methodConfig": [{
                "name": [{"service": "pkg.Svc"}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": ".1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"]
                }
            }]}"#,
        );
        let mc = config.method_config("/pkg.Svc/Get").expect("config");
        let retry = mc.retry_policy.as_ref().expect("retry policy");
        assert_eq!(retry.max_attempts, 4);
        assert_eq!(retry.configured_max_attempts, 4);
        assert_eq!(retry.initial_backoff, Duration::from_millis(100));
        assert_eq!(retry.max_backoff, Duration::from_secs(1));
        assert_eq!(retry.backoff_multiplier, 2.0);
        assert_eq!(retry.retryable_status_codes, vec![Code::Unavailable]);
        assert!(retry.is_retryable(Code::Unavailable));
        assert!(!retry.is_retryable(Code::Internal));
        assert!(mc.hedging_policy.is_none());
    }

    #[test]
    fn a6_hedging_examples() {
        let hedge = method_ok(
            r#""hedgingPolicy": {
                "maxAttempts": 4,
                "hedgingDelay": ".5s",
                "nonFatalStatusCodes": ["UNAVAILABLE", "INTERNAL", "ABORTED"]
            }"#,
        )
        .hedging_policy
        .expect("hedging policy");
        assert_eq!(hedge.max_attempts, 4);
        assert_eq!(hedge.hedging_delay, Duration::from_millis(500));
        // Sorted by code number.
        assert_eq!(
            hedge.non_fatal_status_codes,
            vec![Code::Aborted, Code::Internal, Code::Unavailable]
        );
        assert!(hedge.is_non_fatal(Code::Internal));
        assert!(!hedge.is_non_fatal(Code::NotFound));

        let hedge = method_ok(
            r#""hedgingPolicy": {
                "maxAttempts": 4,
                "hedgingDelay": "0s",
                "nonFatalStatusCodes": ["UNAVAILABLE", "INTERNAL", "ABORTED"]
            }"#,
        )
        .hedging_policy
        .expect("hedging policy");
        assert_eq!(hedge.hedging_delay, Duration::ZERO);

        // Only maxAttempts is required.
        let hedge = method_ok(r#""hedgingPolicy": {"maxAttempts": 2}"#)
            .hedging_policy
            .expect("hedging policy");
        assert_eq!(hedge.max_attempts, 2);
        assert_eq!(hedge.hedging_delay, Duration::ZERO);
        assert!(hedge.non_fatal_status_codes.is_empty());
    }

    #[test]
    fn a6_full_example() {
        let config = parse(
            r#"{
                "loadBalancingPolicy": "round_robin",
                "methodConfig": [
                    {
                        "name": [{"service": "a.A", "method": "Get"}],
                        "retryPolicy": {
                            "maxAttempts": 3,
                            "initialBackoff": "0.5s",
                            "maxBackoff": "30s",
                            "backoffMultiplier": 1.5,
                            "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]
                        },
                        "waitForReady": true,
                        "timeout": "10s",
                        "maxRequestMessageBytes": 4194304,
                        "maxResponseMessageBytes": 4194304
                    },
                    {
                        "name": [{"service": "a.A", "method": "Put"}],
                        "hedgingPolicy": {
                            "maxAttempts": 3,
                            "hedgingDelay": "0.2s",
                            "nonFatalStatusCodes": ["UNAVAILABLE"]
                        }
                    }
                ],
                "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}
            }"#,
        );
        let get = config.method_config("/a.A/Get").expect("Get");
        let retry = get.retry_policy.as_ref().expect("retry");
        assert_eq!(retry.backoff_multiplier, 1.5);
        assert_eq!(
            retry.retryable_status_codes,
            vec![Code::ResourceExhausted, Code::Unavailable]
        );
        let put = config.method_config("/a.A/Put").expect("Put");
        assert!(put.retry_policy.is_none());
        assert_eq!(
            put.hedging_policy.as_ref().map(|h| h.hedging_delay),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            config.retry_throttling(),
            Some(&RetryThrottling {
                max_tokens: 10,
                token_ratio: 0.1
            })
        );
    }

    #[test]
    fn load_balancing_config_keeps_order() {
        let config = parse(
            r#"{"loadBalancingConfig": [
                {"weighted_round_robin": {"blackoutPeriod": "1s"}},
                {"round_robin": {}},
                {"pick_first": {"shuffleAddressList": true}}
            ]}"#,
        );
        let names: Vec<&str> = config
            .load_balancing_config()
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(names, ["weighted_round_robin", "round_robin", "pick_first"]);
        assert_eq!(
            config.load_balancing_config()[2].1,
            json!({"shuffleAddressList": true})
        );
    }

    #[test]
    fn legacy_policy() {
        let config = parse(r#"{"loadBalancingPolicy": "ROUND_ROBIN"}"#);
        assert_eq!(
            config.load_balancing_config(),
            &[("round_robin".to_owned(), json!({}))]
        );
        let config = parse(r#"{"loadBalancingPolicy": "round_robin"}"#);
        assert_eq!(config.load_balancing_config()[0].0, "round_robin");

        // loadBalancingConfig wins.
        let config = parse(
            r#"{"loadBalancingPolicy": "ROUND_ROBIN",
                "loadBalancingConfig": [{"pick_first": {}}]}"#,
        );
        assert_eq!(
            config.load_balancing_config(),
            &[("pick_first".to_owned(), json!({}))]
        );

        // Neither: empty, the channel's default applies.
        assert!(parse("{}").load_balancing_config().is_empty());
        assert!(parse(r#"{"loadBalancingConfig": null}"#)
            .load_balancing_config()
            .is_empty());
    }

    #[test]
    fn load_balancing_errors() {
        let e = parse_err(r#"{"loadBalancingConfig": {"round_robin": {}}}"#);
        assert_contains(&e, "loadBalancingConfig: expected a list");
        let e = parse_err(r#"{"loadBalancingConfig": []}"#);
        assert_contains(&e, "loadBalancingConfig: is empty");
        let e = parse_err(r#"{"loadBalancingConfig": [{"round_robin": {}}, "pick_first"]}"#);
        assert_contains(
            &e,
            "loadBalancingConfig[1]: \"pick_first\" must be an object",
        );
        let e = parse_err(r#"{"loadBalancingConfig": [{"round_robin": {}, "pick_first": {}}]}"#);
        assert_contains(&e, "loadBalancingConfig[0]: ");
        assert_contains(&e, "exactly one key");
        let e = parse_err(r#"{"loadBalancingConfig": [{}]}"#);
        assert_contains(&e, "loadBalancingConfig[0]: {} must be an object");
        let e = parse_err(r#"{"loadBalancingPolicy": 1}"#);
        assert_contains(&e, "loadBalancingPolicy: expected a string, found 1");
        let e = parse_err(r#"{"loadBalancingPolicy": ""}"#);
        assert_contains(&e, "loadBalancingPolicy: is empty");
        // The legacy field is type-checked even when it loses.
        let e = parse_err(r#"{"loadBalancingPolicy": [], "loadBalancingConfig": [{"a": {}}]}"#);
        assert_contains(&e, "loadBalancingPolicy: expected a string");
    }

    #[test]
    fn name_lookup_precedence() {
        let config = parse(
            r#"{"methodConfig": [
                {"name": [{}], "timeout": "1s"},
                {"name": [{"service": "pkg.S"}], "timeout": "2s"},
                {"name": [{"service": "pkg.S", "method": "M"}, {"service": "pkg.T", "method": "N"}],
                 "timeout": "3s"}
            ]}"#,
        );
        let timeout = |path: &str| config.method_config(path).and_then(|m| m.timeout);
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(timeout("/pkg.S/M"), secs(3));
        assert_eq!(timeout("/pkg.T/N"), secs(3));
        assert_eq!(timeout("/pkg.S/Other"), secs(2));
        // pkg.T has only an exact entry: other methods fall to the default.
        assert_eq!(timeout("/pkg.T/Other"), secs(1));
        assert_eq!(timeout("/other.S/M"), secs(1));
        // The leading slash is optional; a path without a method part only
        // matches the default.
        assert_eq!(timeout("pkg.S/M"), secs(3));
        assert_eq!(timeout("pkg.S"), secs(1));
        assert_eq!(timeout(""), secs(1));
        assert_eq!(timeout("/pkg.S/"), secs(2));
        // Method names are exact (case-sensitive).
        assert_eq!(timeout("/pkg.S/m"), secs(2));

        let config =
            parse(r#"{"methodConfig": [{"name": [{"service": "pkg.S"}], "timeout": "2s"}]}"#);
        assert!(config.method_config("/other/M").is_none());
        assert!(config.method_config("/pkg.S/M").is_some());
    }

    #[test]
    fn name_forms() {
        // An empty service (or null) is the default; null method is absent.
        let config = parse(
            r#"{"methodConfig": [
                {"name": [{"service": ""}], "timeout": "1s"},
                {"name": [{"service": "s", "method": null}], "timeout": "2s"},
                {"name": [{"service": "t", "method": ""}], "timeout": "3s"}
            ]}"#,
        );
        let timeout = |path: &str| config.method_config(path).and_then(|m| m.timeout);
        assert_eq!(timeout("/x/y"), Some(Duration::from_secs(1)));
        assert_eq!(timeout("/s/y"), Some(Duration::from_secs(2)));
        assert_eq!(timeout("/t/y"), Some(Duration::from_secs(3)));

        // Without names a method config applies to nothing.
        let config =
            parse(r#"{"methodConfig": [{"timeout": "1s"}, {"name": [], "timeout": "2s"}]}"#);
        assert!(config.method_config("/s/m").is_none());
        assert!(config.inner.method_configs.is_empty());

        // Unknown name fields are ignored.
        let config = parse(
            r#"{"methodConfig": [{"name": [{"service": "s", "future": 1}], "timeout": "1s"}]}"#,
        );
        assert!(config.method_config("/s/m").is_some());
    }

    #[test]
    fn name_errors() {
        let e = parse_err(r#"{"methodConfig": [{"name": [{"method": "M"}]}]}"#);
        assert_eq!(
            e,
            r#"methodConfig[0].name[0]: {"method":"M"} has a method but no service"#
        );
        let e = parse_err(r#"{"methodConfig": [{"name": [{"service": "", "method": "M"}]}]}"#);
        assert_contains(&e, "methodConfig[0].name[0]: ");
        assert_contains(&e, "has a method but no service");
        let e = parse_err(r#"{"methodConfig": [{"name": {"service": "s"}}]}"#);
        assert_contains(&e, "methodConfig[0].name: expected a list");
        let e = parse_err(r#"{"methodConfig": [{"name": ["s"]}]}"#);
        assert_contains(&e, "methodConfig[0].name[0]: expected an object");
        let e = parse_err(r#"{"methodConfig": [{"name": [{"service": 1}]}]}"#);
        assert_contains(&e, "methodConfig[0].name[0].service: expected a string");
        let e = parse_err(r#"{"methodConfig": [{"name": [{"service": "s", "method": true}]}]}"#);
        assert_contains(&e, "methodConfig[0].name[0].method: expected a string");
    }

    #[test]
    fn duplicate_names() {
        let e = parse_err(
            r#"{"methodConfig": [
                {"name": [{"service": "s", "method": "m"}]},
                {"name": [{"service": "t"}, {"service": "s", "method": "m"}]}
            ]}"#,
        );
        assert_contains(&e, "methodConfig[1].name[1]: ");
        assert_contains(&e, "earlier name");
        // Within one method config.
        let e = parse_err(r#"{"methodConfig": [{"name": [{"service": "s"}, {"service": "s"}]}]}"#);
        assert_contains(&e, "methodConfig[0].name[1]: ");
        // `{}` and `{"service": ""}` are the same name.
        let e = parse_err(r#"{"methodConfig": [{"name": [{}]}, {"name": [{"service": ""}]}]}"#);
        assert_contains(&e, "methodConfig[1].name[0]: ");
        // `{"service": "s"}` and `{"service": "s", "method": ""}` too.
        let e = parse_err(
            r#"{"methodConfig": [{"name": [{"service": "s"}]},
                                 {"name": [{"service": "s", "method": ""}]}]}"#,
        );
        assert_contains(&e, "methodConfig[1].name[0]: ");
        // A service-wide and an exact name do not clash.
        parse(
            r#"{"methodConfig": [{"name": [{"service": "s"}]},
                                 {"name": [{"service": "s", "method": "m"}]}]}"#,
        );
    }

    #[test]
    fn duration_parsing() {
        let ok = |text: &str| parse_duration_text(text);
        assert_eq!(ok("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(ok("0s"), Ok(Duration::ZERO));
        assert_eq!(ok("-0s"), Ok(Duration::ZERO));
        assert_eq!(ok("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(ok(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(ok("1.s"), Ok(Duration::from_secs(1)));
        assert_eq!(ok("1.000000001s"), Ok(Duration::new(1, 1)));
        assert_eq!(ok("0.000000001s"), Ok(Duration::from_nanos(1)));
        assert_eq!(ok("2.010s"), Ok(Duration::from_millis(2010)));
        assert_eq!(ok("007s"), Ok(Duration::from_secs(7)));
        assert_eq!(
            ok("315576000000.999999999s"),
            Ok(Duration::new(315_576_000_000, 999_999_999))
        );

        use DurationError::*;
        assert_eq!(ok("315576000001s"), Err(OutOfRange));
        assert_eq!(ok("99999999999999999999999s"), Err(OutOfRange));
        assert_eq!(ok("-1s"), Err(Negative));
        assert_eq!(ok("-0.5s"), Err(Negative));
        for bad in [
            "",
            "s",
            ".s",
            "-s",
            "1",
            "1.5",
            "1.0000000001s",
            "1.2.3s",
            "+1s",
            " 1s",
            "1s ",
            "1 s",
            "1e3s",
            "1ms",
            "abc",
            "1S",
            "0x1s",
            "--1s",
            "١s",
        ] {
            assert_eq!(ok(bad), Err(Malformed), "{bad:?}");
        }

        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1"), None);
    }

    #[test]
    fn timeout_errors() {
        let e = parse_err(
            r#"{"methodConfig": [{"name": [{"service": "a"}], "timeout": "1s"},
                                 {"name": [{"service": "b"}], "timeout": "abc"}]}"#,
        );
        assert_eq!(e, r#"methodConfig[1].timeout: "abc" is not a duration"#);
        assert_eq!(
            method_err(r#""timeout": "-1s""#),
            r#"methodConfig[0].timeout: "-1s" is negative"#
        );
        assert_eq!(
            method_err(r#""timeout": "1000000000000s""#),
            r#"methodConfig[0].timeout: "1000000000000s" is out of range"#
        );
        assert_contains(
            &method_err(r#""timeout": 5"#),
            "methodConfig[0].timeout: expected a duration string",
        );
        assert_contains(
            &method_err(r#""timeout": {"seconds": 5}"#),
            "methodConfig[0].timeout: expected a duration string",
        );
    }

    #[test]
    fn message_sizes() {
        let mc = method_ok(r#""maxRequestMessageBytes": 0, "maxResponseMessageBytes": "4096""#);
        assert_eq!(mc.max_request_message_bytes, Some(0));
        assert_eq!(mc.max_response_message_bytes, Some(4096));
        let mc = method_ok(r#""maxRequestMessageBytes": 1e3, "maxResponseMessageBytes": 2.0"#);
        assert_eq!(mc.max_request_message_bytes, Some(1000));
        assert_eq!(mc.max_response_message_bytes, Some(2));
        let mc = method_ok(
            r#""maxRequestMessageBytes": 1e40,
               "maxResponseMessageBytes": "999999999999999999999999999""#,
        );
        assert_eq!(mc.max_request_message_bytes, Some(usize::MAX));
        assert_eq!(mc.max_response_message_bytes, Some(usize::MAX));
        let mc = method_ok(r#""maxRequestMessageBytes": null"#);
        assert_eq!(mc.max_request_message_bytes, None);

        assert_eq!(
            method_err(r#""maxRequestMessageBytes": -1"#),
            "methodConfig[0].maxRequestMessageBytes: -1 is negative"
        );
        assert_eq!(
            method_err(r#""maxResponseMessageBytes": "-5""#),
            r#"methodConfig[0].maxResponseMessageBytes: "-5" is negative"#
        );
        assert_eq!(
            method_err(r#""maxResponseMessageBytes": -1e3"#),
            "methodConfig[0].maxResponseMessageBytes: -1000.0 is negative"
        );
        assert_eq!(
            method_err(r#""maxRequestMessageBytes": 1.5"#),
            "methodConfig[0].maxRequestMessageBytes: 1.5 is not an integer"
        );
        for bad in [r#""1k""#, r#""""#, r#"" 1""#, r#""+1""#, r#""1.0""#] {
            assert_contains(
                &method_err(&format!(r#""maxRequestMessageBytes": {bad}"#)),
                "is not an integer",
            );
        }
        assert_contains(
            &method_err(r#""maxRequestMessageBytes": true"#),
            "methodConfig[0].maxRequestMessageBytes: expected an integer, found true",
        );
    }

    #[test]
    fn wait_for_ready() {
        assert_eq!(
            method_ok(r#""waitForReady": true"#).wait_for_ready,
            Some(true)
        );
        assert_eq!(method_ok(r#""waitForReady": null"#).wait_for_ready, None);
        assert_eq!(
            method_err(r#""waitForReady": "true""#),
            r#"methodConfig[0].waitForReady: expected true or false, found "true""#
        );
    }

    const RETRY: &str = r#""maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "5s",
                           "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]"#;

    /// A retry policy with `field` replacing (or, when `value` is `None`,
    /// removing) one field of [`RETRY`].
    fn retry_with(field: &str, value: Option<&str>) -> String {
        let mut fields: Vec<String> = vec![
            r#""maxAttempts": 3"#.into(),
            r#""initialBackoff": "1s""#.into(),
            r#""maxBackoff": "5s""#.into(),
            r#""backoffMultiplier": 2"#.into(),
            r#""retryableStatusCodes": ["UNAVAILABLE"]"#.into(),
        ];
        fields.retain(|f| !f.starts_with(&format!("\"{field}\"")));
        if let Some(value) = value {
            fields.push(format!(r#""{field}": {value}"#));
        }
        format!(r#""retryPolicy": {{{}}}"#, fields.join(", "))
    }

    #[test]
    fn retry_policy_values() {
        let retry = method_ok(&format!(r#""retryPolicy": {{{RETRY}}}"#))
            .retry_policy
            .expect("retry");
        assert_eq!(retry.max_attempts, 3);

        // Clamped to 5, the configured value kept.
        let retry = method_ok(&retry_with("maxAttempts", Some("10")))
            .retry_policy
            .expect("retry");
        assert_eq!(retry.max_attempts, MAX_ATTEMPTS_LIMIT);
        assert_eq!(retry.configured_max_attempts, 10);
        let retry = method_ok(&retry_with("maxAttempts", Some("\"99999999999\"")))
            .retry_policy
            .expect("retry");
        assert_eq!(retry.max_attempts, 5);
        assert_eq!(retry.configured_max_attempts, u32::MAX);

        // Codes by number, repeats dropped; multiplier as a string.
        let retry = method_ok(&retry_with(
            "retryableStatusCodes",
            Some(r#"[14, "UNAVAILABLE", 0, "DATA_LOSS"]"#),
        ))
        .retry_policy
        .expect("retry");
        assert_eq!(
            retry.retryable_status_codes,
            vec![Code::Ok, Code::Unavailable, Code::DataLoss]
        );
        let retry = method_ok(&retry_with("backoffMultiplier", Some(r#""1.5""#)))
            .retry_policy
            .expect("retry");
        assert_eq!(retry.backoff_multiplier, 1.5);

        // Unknown fields inside the policy are ignored.
        let retry = method_ok(&retry_with("perAttemptRecvTimeout", Some(r#""1s""#)));
        assert!(retry.retry_policy.is_some());
    }

    #[test]
    fn retry_policy_errors() {
        let at = "methodConfig[0].retryPolicy";
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("maxAttempts", None, "maxAttempts: is required"),
            (
                "maxAttempts",
                Some("1"),
                "maxAttempts: 1 must be at least 2",
            ),
            (
                "maxAttempts",
                Some("0"),
                "maxAttempts: 0 must be at least 2",
            ),
            ("maxAttempts", Some("-3"), "maxAttempts: -3 is negative"),
            (
                "maxAttempts",
                Some("2.5"),
                "maxAttempts: 2.5 is not an integer",
            ),
            (
                "maxAttempts",
                Some("\"x\""),
                "maxAttempts: \"x\" is not an integer",
            ),
            ("initialBackoff", None, "initialBackoff: is required"),
            (
                "initialBackoff",
                Some("\"0s\""),
                "initialBackoff: \"0s\" must be greater than zero",
            ),
            (
                "initialBackoff",
                Some("\"-1s\""),
                "initialBackoff: \"-1s\" is negative",
            ),
            (
                "initialBackoff",
                Some("1"),
                "initialBackoff: expected a duration string",
            ),
            ("maxBackoff", None, "maxBackoff: is required"),
            (
                "maxBackoff",
                Some("\"0.0s\""),
                "maxBackoff: \"0.0s\" must be greater than zero",
            ),
            (
                "maxBackoff",
                Some("\"1m\""),
                "maxBackoff: \"1m\" is not a duration",
            ),
            ("backoffMultiplier", None, "backoffMultiplier: is required"),
            (
                "backoffMultiplier",
                Some("0"),
                "backoffMultiplier: 0 must be greater than zero",
            ),
            (
                "backoffMultiplier",
                Some("-1.5"),
                "backoffMultiplier: -1.5 must be greater than zero",
            ),
            (
                "backoffMultiplier",
                Some("\"NaN\""),
                "backoffMultiplier: \"NaN\" is not a finite number",
            ),
            (
                "backoffMultiplier",
                Some("\"1e999\""),
                "backoffMultiplier: \"1e999\" is not a finite number",
            ),
            (
                "backoffMultiplier",
                Some("true"),
                "backoffMultiplier: expected a number, found true",
            ),
            (
                "retryableStatusCodes",
                None,
                "retryableStatusCodes: is required",
            ),
            (
                "retryableStatusCodes",
                Some("[]"),
                "retryableStatusCodes: is empty",
            ),
            (
                "retryableStatusCodes",
                Some("\"UNAVAILABLE\""),
                "retryableStatusCodes: expected a list",
            ),
            (
                "retryableStatusCodes",
                Some("[\"unavailable\"]"),
                "retryableStatusCodes[0]: \"unavailable\" is not a status code",
            ),
            (
                "retryableStatusCodes",
                Some("[\"UNAVAILABLE\", 17]"),
                "retryableStatusCodes[1]: 17 is not a status code",
            ),
            (
                "retryableStatusCodes",
                Some("[-1]"),
                "retryableStatusCodes[0]: -1 is not a status code",
            ),
            (
                "retryableStatusCodes",
                Some("[14.0]"),
                "retryableStatusCodes[0]: 14.0 is not a status code",
            ),
            (
                "retryableStatusCodes",
                Some("[[14]]"),
                "retryableStatusCodes[0]: expected a status code",
            ),
        ];
        for (field, value, want) in cases {
            let e = method_err(&retry_with(field, *value));
            assert_contains(&e, &format!("{at}.{want}"));
        }
        assert_contains(
            &method_err(r#""retryPolicy": [1]"#),
            "methodConfig[0].retryPolicy: expected an object",
        );
    }

    #[test]
    fn hedging_policy_errors() {
        let at = "methodConfig[0].hedgingPolicy";
        let cases = [
            (r#"{}"#, "maxAttempts: is required"),
            (r#"{"maxAttempts": 1}"#, "maxAttempts: 1 must be at least 2"),
            (
                r#"{"maxAttempts": 2, "hedgingDelay": "-1s"}"#,
                r#"hedgingDelay: "-1s" is negative"#,
            ),
            (
                r#"{"maxAttempts": 2, "hedgingDelay": "soon"}"#,
                r#"hedgingDelay: "soon" is not a duration"#,
            ),
            (
                r#"{"maxAttempts": 2, "nonFatalStatusCodes": ["NOPE"]}"#,
                r#"nonFatalStatusCodes[0]: "NOPE" is not a status code"#,
            ),
            (
                r#"{"maxAttempts": 2, "nonFatalStatusCodes": 14}"#,
                "nonFatalStatusCodes: expected a list",
            ),
        ];
        for (policy, want) in cases {
            let e = method_err(&format!(r#""hedgingPolicy": {policy}"#));
            assert_contains(&e, &format!("{at}.{want}"));
        }
        let hedge = method_ok(r#""hedgingPolicy": {"maxAttempts": 7}"#)
            .hedging_policy
            .expect("hedging");
        assert_eq!(hedge.max_attempts, 5);
        assert_eq!(hedge.configured_max_attempts, 7);
    }

    #[test]
    fn retry_and_hedging_exclusive() {
        let e = method_err(&format!(
            r#""retryPolicy": {{{RETRY}}}, "hedgingPolicy": {{"maxAttempts": 2}}"#
        ));
        assert_contains(
            &e,
            "methodConfig[0]: has both retryPolicy and hedgingPolicy",
        );
        // A null one does not count.
        let mc = method_ok(&format!(
            r#""retryPolicy": {{{RETRY}}}, "hedgingPolicy": null"#
        ));
        assert!(mc.retry_policy.is_some());
    }

    #[test]
    fn retry_throttling() {
        let throttling = |text: &str| {
            parse(&format!(r#"{{"retryThrottling": {text}}}"#))
                .retry_throttling()
                .cloned()
                .expect("throttling")
        };
        let t = throttling(r#"{"maxTokens": 1000, "tokenRatio": 0.1234}"#);
        assert_eq!(t.max_tokens, 1000);
        assert_eq!(t.token_ratio, 0.123);
        let t = throttling(r#"{"maxTokens": 1, "tokenRatio": 1.0006}"#);
        assert_eq!(t.max_tokens, 1);
        assert_eq!(t.token_ratio, 1.001);
        let t = throttling(r#"{"maxTokens": "10", "tokenRatio": 2}"#);
        assert_eq!(t.max_tokens, 10);
        assert_eq!(t.token_ratio, 2.0);
        let t = throttling(r#"{"maxTokens": 10.0, "tokenRatio": "0.5"}"#);
        assert_eq!(t.max_tokens, 10);
        assert_eq!(t.token_ratio, 0.5);

        let err = |text: &str| parse_err(&format!(r#"{{"retryThrottling": {text}}}"#));
        let cases = [
            (r#"[]"#, "retryThrottling: expected an object"),
            (
                r#"{"tokenRatio": 0.1}"#,
                "retryThrottling.maxTokens: is required",
            ),
            (
                r#"{"maxTokens": 10}"#,
                "retryThrottling.tokenRatio: is required",
            ),
            (
                r#"{"maxTokens": 0, "tokenRatio": 0.1}"#,
                "retryThrottling.maxTokens: 0 is not between 1 and 1000",
            ),
            (
                r#"{"maxTokens": 1001, "tokenRatio": 0.1}"#,
                "retryThrottling.maxTokens: 1001 is not between 1 and 1000",
            ),
            (
                r#"{"maxTokens": -1, "tokenRatio": 0.1}"#,
                "retryThrottling.maxTokens: -1 is negative",
            ),
            (
                r#"{"maxTokens": 10.5, "tokenRatio": 0.1}"#,
                "retryThrottling.maxTokens: 10.5 is not an integer",
            ),
            (
                r#"{"maxTokens": 10, "tokenRatio": 0}"#,
                "retryThrottling.tokenRatio: 0 must be greater than zero",
            ),
            (
                r#"{"maxTokens": 10, "tokenRatio": -0.5}"#,
                "retryThrottling.tokenRatio: -0.5 must be greater than zero",
            ),
            (
                r#"{"maxTokens": 10, "tokenRatio": 0.0004}"#,
                "retryThrottling.tokenRatio: 0.0004 must be greater than zero",
            ),
            (
                r#"{"maxTokens": 10, "tokenRatio": "x"}"#,
                r#"retryThrottling.tokenRatio: "x" is not a finite number"#,
            ),
        ];
        for (text, want) in cases {
            assert_contains(&err(text), want);
        }
    }

    #[test]
    fn health_check_config() {
        let config = parse(r#"{"healthCheckConfig": {"serviceName": "grpc.health.v1.Health"}}"#);
        assert_eq!(
            config.health_check_service_name(),
            Some("grpc.health.v1.Health")
        );
        let config = parse(r#"{"healthCheckConfig": {}}"#);
        assert_eq!(config.health_check_service_name(), Some(""));
        let config = parse(r#"{"healthCheckConfig": {"serviceName": null}}"#);
        assert_eq!(config.health_check_service_name(), Some(""));
        let config = parse(r#"{"healthCheckConfig": null}"#);
        assert_eq!(config.health_check_service_name(), None);

        assert_contains(
            &parse_err(r#"{"healthCheckConfig": {"serviceName": 5}}"#),
            "healthCheckConfig.serviceName: expected a string, found 5",
        );
        assert_contains(
            &parse_err(r#"{"healthCheckConfig": "svc"}"#),
            "healthCheckConfig: expected an object",
        );
    }

    #[test]
    fn unknown_fields_ignored() {
        let config = parse(
            r#"{
                "someFutureField": {"anything": [1, 2, 3]},
                "loadBalancingConfig": [{"round_robin": {}}],
                "methodConfig": [{
                    "name": [{"service": "s"}],
                    "timeout": "1s",
                    "someFutureMethodField": true
                }]
            }"#,
        );
        assert_eq!(
            config.method_config("/s/m").and_then(|m| m.timeout),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn top_level_errors() {
        assert_eq!(parse_err(""), "service config is empty");
        assert_eq!(parse_err("  \n"), "service config is empty");
        assert_contains(&parse_err("{"), "service config is not valid JSON");
        assert_contains(&parse_err("{} {}"), "service config is not valid JSON");
        assert_eq!(
            parse_err("[]"),
            "service config must be a JSON object, found []"
        );
        assert_eq!(
            parse_err("null"),
            "service config must be a JSON object, found null"
        );
        assert_contains(
            &parse_err(r#"{"methodConfig": {}}"#),
            "methodConfig: expected a list, found {}",
        );
        assert_contains(
            &parse_err(r#"{"methodConfig": [[]]}"#),
            "methodConfig[0]: expected an object, found []",
        );
        assert_contains(
            &parse_err(r#"{"retryThrottling": 1}"#),
            "retryThrottling: expected an object",
        );
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "é".repeat(200);
        let e = method_err(&format!(r#""timeout": "{long}""#));
        assert!(e.len() < 150, "{e}");
        assert_contains(&e, "…");
        assert_contains(&e, "is not a duration");
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        for text in [
            deep.as_str(),
            r#"{"methodConfig": [null]}"#,
            r#"{"methodConfig": [{"name": [null]}]}"#,
            r#"{"methodConfig": [{"name": [{"service": "s"}], "timeout": "99999999999999999999.999999999s"}]}"#,
            r#"{"methodConfig": [{"name": [{"service": "s"}], "maxRequestMessageBytes": -1e400}]}"#,
            r#"{"retryThrottling": {"maxTokens": 1e400, "tokenRatio": 1e400}}"#,
            r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 1e300}}"#,
            "\u{feff}{}",
            "{\"a\": \"\\ud800\"}",
        ] {
            let _ = ServiceConfig::parse(text);
        }
    }

    #[test]
    fn clones_share_and_types_are_as_promised() {
        let a = parse(r#"{"loadBalancingPolicy": "round_robin"}"#);
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.inner, &b.inner));

        fn error_traits<E: std::error::Error + Clone + Send + Sync + 'static>() {}
        error_traits::<Error>();
        fn config_traits<T: Clone + fmt::Debug + Send + Sync + 'static>() {}
        config_traits::<ServiceConfig>();
        config_traits::<MethodConfig>();
        let _ = MethodConfig::default();
    }
}
