//! The filter language of `GRPC_BINARY_LOG_FILTER` (gRFC A16), parsed into
//! a [`Filter`] once; a call asks it for its method's [`MethodConfig`].

use std::{
    collections::{HashMap, HashSet},
    fmt,
    str::FromStr,
};

/// How much of a logged call's headers and messages go into its entries
/// (A16's `{h:N;m:M}`). `u64::MAX` means everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MethodConfig {
    /// The most bytes of metadata (keys plus values) logged per header or
    /// trailer entry; entries past the limit are left out and the entry is
    /// marked truncated.
    pub header: u64,
    /// The most bytes of each message logged; longer messages are cut and
    /// marked truncated.
    pub message: u64,
}

impl MethodConfig {
    /// Everything: a term with no `{…}` suffix.
    pub const FULL: MethodConfig = MethodConfig {
        header: u64::MAX,
        message: u64::MAX,
    };

    /// Logs at most `header` bytes of metadata and `message` bytes of each
    /// message.
    pub fn new(header: u64, message: u64) -> MethodConfig {
        MethodConfig { header, message }
    }
}

/// A parsed `GRPC_BINARY_LOG_FILTER`: which methods are logged, and how much
/// of each.
///
/// The syntax (gRFC A16) is a comma-separated list of terms, each one of:
///
/// | term | meaning |
/// |---|---|
/// | `*` | every method |
/// | `Service/*` | every method of `Service` (the full name, `pkg.Service`) |
/// | `Service/Method` | that method |
/// | `-Service/Method` | never that method, whatever the other terms say |
///
/// `*`, `Service/*` and `Service/Method` may be followed by a limit:
/// `{h}` (headers only, all of them), `{h:N}` (headers, at most N bytes),
/// `{m}` / `{m:M}` (messages only, whole or their first M bytes), or
/// `{h:N;m:M}` (both, each number optional). With no limit, everything is
/// logged. The most specific term wins: an exclusion, then the method's own
/// term, then its service's, then `*`.
///
/// A config is refused as a whole (and nothing is logged) when a term is
/// malformed, an exclusion has a `*` or a limit, or two terms are about the
/// same thing (`*` twice, one service twice, one method twice, or a method
/// both included and excluded), as gRPC-Go refuses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    all: Option<MethodConfig>,
    services: HashMap<String, MethodConfig>,
    methods: HashMap<String, MethodConfig>,
    excluded: HashSet<String>,
}

/// Why a filter was refused: the term and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    term: String,
    reason: String,
}

impl FilterError {
    fn new(term: &str, reason: impl Into<String>) -> FilterError {
        FilterError {
            term: term.to_string(),
            reason: reason.into(),
        }
    }

    /// The term that was refused.
    pub fn term(&self) -> &str {
        &self.term
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid binary log filter term {:?}: {}",
            self.term, self.reason
        )
    }
}

impl std::error::Error for FilterError {}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Filter, FilterError> {
        Filter::parse(s)
    }
}

impl Filter {
    /// Parses a filter. An empty string is an empty filter (nothing logged).
    ///
    /// # Errors
    /// The first term that is malformed or conflicts with an earlier one.
    pub fn parse(s: &str) -> Result<Filter, FilterError> {
        let mut filter = Filter::default();
        if s.is_empty() {
            return Ok(filter);
        }
        for term in s.split(',') {
            filter.add(term)?;
        }
        Ok(filter)
    }

    /// Whether the filter logs no method at all.
    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.services.is_empty() && self.methods.is_empty()
    }

    /// The config for a method, `None` when it is not logged. `method` is
    /// the full path, `/pkg.Service/Method` (the leading `/` may be left
    /// out).
    pub fn config_for(&self, method: &str) -> Option<MethodConfig> {
        let name = method.strip_prefix('/').unwrap_or(method);
        let slash = name.rfind('/')?;
        if self.excluded.contains(name) {
            return None;
        }
        if let Some(c) = self.methods.get(name) {
            return Some(*c);
        }
        if let Some(c) = self.services.get(&name[..slash]) {
            return Some(*c);
        }
        self.all
    }

    fn add(&mut self, term: &str) -> Result<(), FilterError> {
        if term.is_empty() {
            return Err(FilterError::new(term, "empty term"));
        }
        if let Some(rest) = term.strip_prefix('-') {
            let (service, method, suffix) = split_method(rest)
                .ok_or_else(|| FilterError::new(term, "expected -Service/Method"))?;
            if method == "*" {
                return Err(FilterError::new(term, "* is not allowed in an exclusion"));
            }
            if !suffix.is_empty() {
                return Err(FilterError::new(
                    term,
                    "a header/message limit is not allowed in an exclusion",
                ));
            }
            let name = format!("{service}/{method}");
            if self.methods.contains_key(&name) || self.excluded.contains(&name) {
                return Err(FilterError::new(
                    term,
                    format!("conflicting rules for method {name}"),
                ));
            }
            self.excluded.insert(name);
            return Ok(());
        }
        if let Some(rest) = term.strip_prefix('*') {
            let config = parse_limits(rest).map_err(|r| FilterError::new(term, r))?;
            if self.all.is_some() {
                return Err(FilterError::new(term, "conflicting rules for *"));
            }
            self.all = Some(config);
            return Ok(());
        }
        let (service, method, suffix) = split_method(term)
            .ok_or_else(|| FilterError::new(term, "expected *, Service/* or Service/Method"))?;
        let config = parse_limits(suffix).map_err(|r| FilterError::new(term, r))?;
        if method == "*" {
            if self.services.contains_key(service) {
                return Err(FilterError::new(
                    term,
                    format!("conflicting rules for service {service}"),
                ));
            }
            self.services.insert(service.to_string(), config);
        } else {
            let name = format!("{service}/{method}");
            if self.methods.contains_key(&name) || self.excluded.contains(&name) {
                return Err(FilterError::new(
                    term,
                    format!("conflicting rules for method {name}"),
                ));
            }
            self.methods.insert(name, config);
        }
        Ok(())
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Splits `Service/Method{suffix}` as gRPC-Go's pattern
/// `^([\w./]+)/((?:\w+)|[*])(.+)?$` does: the service may contain dots and
/// slashes, the method is a word or `*`, the rest is the suffix.
fn split_method(term: &str) -> Option<(&str, &str, &str)> {
    let bytes = term.as_bytes();
    let run = bytes
        .iter()
        .position(|&b| !(is_word(b) || b == b'.' || b == b'/'))
        .unwrap_or(bytes.len());
    // The longest service that leaves a valid method, as the regex's
    // backtracking would find.
    let mut k = run;
    while let Some(slash) = term[..k].rfind('/') {
        k = slash;
        if slash == 0 {
            return None;
        }
        let after = &bytes[slash + 1..];
        if after.first() == Some(&b'*') {
            return Some((&term[..slash], "*", &term[slash + 2..]));
        }
        let len = after.iter().take_while(|&&b| is_word(b)).count();
        if len > 0 {
            let end = slash + 1 + len;
            return Some((&term[..slash], &term[slash + 1..end], &term[end..]));
        }
    }
    None
}

/// Parses a limit suffix: `""`, `{h}`, `{h:N}`, `{m}`, `{m:M}`, `{h;m}`
/// with optional numbers.
fn parse_limits(suffix: &str) -> Result<MethodConfig, String> {
    if suffix.is_empty() {
        return Ok(MethodConfig::FULL);
    }
    let bad =
        || format!("{suffix:?} is not a limit ({{h}}, {{h:N}}, {{m}}, {{m:M}} or {{h:N;m:M}})");
    let inner = suffix
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(bad)?;
    let one = |part: &str, letter: char| -> Result<Option<u64>, String> {
        let rest = part.strip_prefix(letter).ok_or_else(bad)?;
        if rest.is_empty() {
            return Ok(Some(u64::MAX));
        }
        let digits = rest.strip_prefix(':').ok_or_else(bad)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        digits
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{digits} is too large for a limit"))
    };
    match inner.split_once(';') {
        Some((h, m)) => Ok(MethodConfig::new(
            one(h, 'h')?.unwrap_or(0),
            one(m, 'm')?.unwrap_or(0),
        )),
        None if inner.starts_with('h') => Ok(MethodConfig::new(one(inner, 'h')?.unwrap_or(0), 0)),
        None => Ok(MethodConfig::new(0, one(inner, 'm')?.unwrap_or(0))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = u64::MAX;

    /// A filter, a method, and the (header, message) limits it gets.
    type Case = (&'static str, &'static str, Option<(u64, u64)>);

    /// (filter, method, expected config) for filters that parse.
    #[test]
    fn accepted_filters_choose_as_a16_says() {
        let cases: &[Case] = &[
            ("", "/a.S/M", None),
            ("*", "/a.S/M", Some((MAX, MAX))),
            ("*{h}", "/a.S/M", Some((MAX, 0))),
            ("*{h:256}", "/a.S/M", Some((256, 0))),
            ("*{m}", "/a.S/M", Some((0, MAX))),
            ("*{m:10}", "/a.S/M", Some((0, 10))),
            ("*{h;m}", "/a.S/M", Some((MAX, MAX))),
            ("*{h:1;m:2}", "/a.S/M", Some((1, 2))),
            ("*{h:0;m:0}", "/a.S/M", Some((0, 0))),
            ("*{h;m:7}", "/a.S/M", Some((MAX, 7))),
            ("a.S/*", "/a.S/M", Some((MAX, MAX))),
            ("a.S/*", "/a.T/M", None),
            ("a.S/*{h:5}", "/a.S/M", Some((5, 0))),
            ("a.S/M", "/a.S/M", Some((MAX, MAX))),
            ("a.S/M", "/a.S/N", None),
            ("a.S/M", "a.S/M", Some((MAX, MAX))),
            ("a.S/M{m:3}", "/a.S/M", Some((0, 3))),
            ("a.S/M{h:4;m:3}", "/a.S/M", Some((4, 3))),
            ("a/b.S/M", "/a/b.S/M", Some((MAX, MAX))),
            // The most specific term wins, whatever the order.
            ("*{h:1},a.S/*{h:2},a.S/M{h:3}", "/a.S/M", Some((3, 0))),
            ("a.S/M{h:3},a.S/*{h:2},*{h:1}", "/a.S/N", Some((2, 0))),
            ("*{h:1},a.S/*{h:2}", "/b.S/M", Some((1, 0))),
            // Exclusions beat everything.
            ("*,-a.S/M", "/a.S/M", None),
            ("-a.S/M,*", "/a.S/M", None),
            ("a.S/*,-a.S/M", "/a.S/M", None),
            ("a.S/*,-a.S/M", "/a.S/N", Some((MAX, MAX))),
            ("-a.S/M", "/a.S/M", None),
            ("-a.S/M", "/a.S/N", None),
            // Unlike gRPC-Go's method pattern, a name with no slash is never
            // a method.
            ("*", "nothing", None),
        ];
        for (filter, method, want) in cases {
            let parsed = Filter::parse(filter).unwrap_or_else(|e| panic!("{filter:?}: {e}"));
            let got = parsed.config_for(method).map(|c| (c.header, c.message));
            assert_eq!(got, *want, "filter {filter:?}, method {method:?}");
        }
    }

    #[test]
    fn bad_filters_are_refused() {
        let cases: &[(&str, &str)] = &[
            (",", "empty term"),
            ("*,", "empty term"),
            ("a.S/M,,b.S/M", "empty term"),
            ("-*", "expected -Service/Method"),
            ("-a.S/*", "* is not allowed"),
            ("-a.S/M{h}", "not allowed in an exclusion"),
            ("*,*", "conflicting rules for *"),
            ("*{h},*{m}", "conflicting rules for *"),
            ("a.S/*,a.S/*{h}", "conflicting rules for service a.S"),
            ("a.S/M,a.S/M{m}", "conflicting rules for method a.S/M"),
            ("a.S/M,-a.S/M", "conflicting rules for method a.S/M"),
            ("-a.S/M,a.S/M", "conflicting rules for method a.S/M"),
            ("-a.S/M,-a.S/M", "conflicting rules for method a.S/M"),
            ("a.S", "expected *"),
            ("a.S/", "expected *"),
            ("/M", "expected *"),
            ("a S/M", "expected *"),
            ("a.S/M ", "is not a limit"),
            ("a.S/M.x", "is not a limit"),
            ("*{}", "is not a limit"),
            ("*{h:}", "is not a limit"),
            ("*{h:-1}", "is not a limit"),
            ("*{h:1x}", "is not a limit"),
            ("*{x}", "is not a limit"),
            ("*{m;h}", "is not a limit"),
            ("*{h:1;m:2;x}", "is not a limit"),
            ("*{h:1", "is not a limit"),
            ("*h:1}", "is not a limit"),
            ("**", "is not a limit"),
            ("*{h:99999999999999999999}", "too large"),
        ];
        for (filter, reason) in cases {
            match Filter::parse(filter) {
                Ok(f) => panic!("{filter:?} was accepted: {f:?}"),
                Err(e) => assert!(
                    e.to_string().contains(reason),
                    "{filter:?}: {e} does not say {reason:?}"
                ),
            }
        }
    }

    #[test]
    fn the_error_names_the_term() {
        let err = Filter::parse("*,a.S/M{h:x}").unwrap_err();
        assert_eq!(err.term(), "a.S/M{h:x}");
    }
}
