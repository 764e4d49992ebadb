//! Dial targets: the strings a channel is built for, parsed as gRPC's
//! `doc/naming.md` and gRPC-Go define them.
//!
//! A target is a URI, `scheme:[//authority]/endpoint` or `scheme:opaque`.
//! The scheme picks the resolver; the endpoint is what that resolver
//! resolves. The forms the built-in resolvers take:
//!
//! | target | scheme | authority | endpoint |
//! |---|---|---|---|
//! | `dns:///example.com:443` | `dns` | | `example.com:443` |
//! | `dns://8.8.8.8/example.com` | `dns` | `8.8.8.8` | `example.com` |
//! | `dns:example.com` | `dns` | | `example.com` |
//! | `unix:relative/path` | `unix` | | `relative/path` |
//! | `unix:///abs/path`, `unix:/abs/path` | `unix` | | `/abs/path` |
//! | `unix-abstract:name` | `unix-abstract` | | `name` |
//! | `ipv4:1.2.3.4:80,5.6.7.8` | `ipv4` | | `1.2.3.4:80,5.6.7.8` |
//! | `ipv6:[::1]:80,[::2]` | `ipv6` | | `[::1]:80,[::2]` |
//!
//! **The default scheme.** As in gRPC-Go, a string that does not start with
//! a *registered* scheme is not an error: `dns:///` is put in front of the
//! whole string and that is parsed instead. So `localhost:50051` (whose
//! "scheme" would be `localhost`), `127.0.0.1:80`, `[::1]:50051` and
//! `foo.bar` all become `dns` targets whose endpoint is the string itself
//! (percent-decoded, without a `?query` or `#fragment`).
//! Which schemes are registered is the caller's answer (`is_registered` in
//! [`parse`]); the default scheme is always `dns` ([`DEFAULT_SCHEME`]).
//!
//! **Legacy `http://` and `https://`.** Earlier ferrogrpc took
//! `http://host:port` and `https://host:port`; gRPC-Go would send them to
//! DNS as the name `http://host:port`, which fails. Unless `http` / `https`
//! is a registered scheme, [`parse`] maps them to `dns` with the host and
//! port as the endpoint (port 80 or 443 if none is given), and
//! [`Target::wants_tls`] says whether `https` was written, so a channel
//! without explicit credentials can use TLS.
//!
//! The address-list helpers [`split_host_port`], [`parse_ip_list`] and
//! [`unix_path`] read the endpoints of the built-in schemes; [`parse`] runs
//! them on targets of those schemes so a malformed one fails at once rather
//! than at the first resolution.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;

/// The scheme a target without a registered scheme gets, as in gRPC-Go.
pub const DEFAULT_SCHEME: &str = "dns";

/// The port of a `dns`, `ipv4` or `ipv6` address that names none
/// (naming.md).
pub const DEFAULT_PORT: u16 = 443;

/// A parsed dial target: `scheme://authority/endpoint`.
///
/// Made by [`parse`]. Two spellings of the same target parse to equal
/// values (`dns:foo` and `dns:///foo`; `unix:/a` and `unix:///a`), and
/// [`Display`](fmt::Display) writes the canonical one, which parses back to
/// an equal `Target`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Target {
    scheme: String,
    authority: String,
    endpoint: String,
    query: Option<String>,
    legacy: Option<Legacy>,
}

/// Which legacy form a target was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Legacy {
    Http,
    Https,
}

impl Target {
    /// The scheme, in lower case: which resolver handles the target
    /// (`dns`, `unix`, `unix-abstract`, `ipv4`, `ipv6`, or one registered
    /// by the application).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The authority, as written (not percent-decoded); empty when the
    /// target has none. For `dns` it names the DNS server to ask
    /// (`dns://8.8.8.8:53/example.com`).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// What the resolver resolves, percent-decoded: the URI path without
    /// its leading `/` (`example.com:443` for `dns:///example.com:443`), or
    /// the opaque part (`relative/path` for `unix:relative/path`).
    ///
    /// For `unix` and `unix-abstract` the leading `/` is kept, because it
    /// is part of the socket path: `unix:///abs/path` has endpoint
    /// `/abs/path` (gRPC-Go's unix resolver reads the URL path for the same
    /// reason).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The query (the text after `?`), as written; `None` when the target
    /// has no `?`. The built-in resolvers ignore it; it is kept for
    /// resolvers that take parameters.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// Whether the target was written `https://host[:port]`, asking for
    /// TLS: a channel given no credentials should then use TLS (explicit
    /// credentials win). False for every other form, `http://` included,
    /// which asks for plaintext, the default anyway. Such targets display
    /// in their legacy form, with the port: `https://host:443`.
    pub fn wants_tls(&self) -> bool {
        self.legacy == Some(Legacy::Https)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.legacy {
            // The endpoint is the authority as written: host and port.
            Some(Legacy::Http) => return write!(f, "http://{}", self.endpoint),
            Some(Legacy::Https) => return write!(f, "https://{}", self.endpoint),
            None => {}
        }
        write!(f, "{}:", self.scheme)?;
        if keeps_leading_slash(&self.scheme) {
            if self.endpoint.starts_with('/') {
                write!(f, "//{}", self.authority)?;
            }
            // A relative path is only ever the opaque form, with no authority.
            write_escaped(f, &self.endpoint)?;
        } else {
            write!(f, "//{}/", self.authority)?;
            write_escaped(f, &self.endpoint)?;
        }
        if let Some(query) = &self.query {
            write!(f, "?{query}")?;
        }
        Ok(())
    }
}

/// A target, or an address in one, that cannot be used.
///
/// The message names the input and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetError {
    input: String,
    reason: String,
}

impl TargetError {
    fn new(input: &str, reason: impl Into<String>) -> TargetError {
        TargetError {
            input: input.to_string(),
            reason: reason.into(),
        }
    }

    /// The text that was rejected: the target given to [`parse`] or
    /// [`unix_path`], the endpoint given to [`split_host_port`], or
    /// `scheme:endpoint` for [`parse_ip_list`].
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid target {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for TargetError {}

/// Parses a dial target.
///
/// `is_registered` says whether a resolver exists for a scheme (it is
/// asked with the scheme in lower case). A target whose scheme is
/// registered is parsed as `scheme:[//authority]/endpoint` or
/// `scheme:opaque`; anything else falls back to `dns:///<target>`, as
/// gRPC-Go does (see the [module docs](self)). Targets of the built-in
/// schemes (`dns`, `unix`, `unix-abstract`, `ipv4`, `ipv6`) are checked
/// with [`split_host_port`], [`unix_path`] and [`parse_ip_list`].
///
/// The endpoint is percent-decoded, in the opaque form too (`unix:my%20sock`
/// names `my sock`), as RFC 3986 and gRPC C-core do; gRPC-Go leaves an
/// opaque part encoded. A fragment (`#…`) is checked and dropped.
///
/// # Errors
///
/// When the target is empty or holds a control character; when its
/// percent-encoding is malformed or decodes to something that is not UTF-8;
/// when a registered scheme is followed by a malformed authority (gRPC-Go
/// would fall back to DNS with the whole string as the name, which cannot
/// resolve); when an `http://` / `https://` target is more than a host and
/// port; and when the endpoint of a built-in scheme is unusable (no host,
/// no socket path, a bad port or address, an authority on `unix`).
pub fn parse(target: &str, is_registered: impl Fn(&str) -> bool) -> Result<Target, TargetError> {
    let fail = |reason: String| TargetError::new(target, reason);
    if target.is_empty() {
        return Err(fail("the target is empty".into()));
    }
    if let Some(c) = target.chars().find(char::is_ascii_control) {
        return Err(fail(format!("it contains the control character {c:?}")));
    }
    let parsed = match split_scheme(target) {
        Some((scheme, rest)) if is_registered(&scheme) => {
            let parts = parse_rest(rest).map_err(fail)?;
            Target::from_parts(scheme, parts)
        }
        Some((scheme, rest))
            if (scheme == "http" || scheme == "https") && rest.starts_with("//") =>
        {
            let https = scheme == "https";
            let parts = parse_rest(rest).map_err(fail)?;
            legacy(parts, https).map_err(fail)?
        }
        // No scheme, or one nobody registered: the whole string is a DNS name.
        _ => {
            let parts = parse_rest(&format!("///{target}")).map_err(fail)?;
            Target::from_parts(DEFAULT_SCHEME.to_string(), parts)
        }
    };
    check_builtin(&parsed).map_err(fail)?;
    Ok(parsed)
}

/// Splits a `dns` endpoint into host and port: `host`, `host:port`,
/// `1.2.3.4:80`, `[::1]:80`, `[::1]`, or a bare IPv6 address `::1`.
///
/// The host comes back without brackets (`::1` for `[::1]:80`); put them
/// back when joining host and port (or use [`SocketAddr`]). An IPv6 zone
/// (`[fe80::1%eth0]:80`) is kept in the host. `default_port` is used when
/// none is written; naming.md's default is [`DEFAULT_PORT`] (443).
///
/// # Errors
///
/// When the host is empty (`:80`; gRPC-Go would dial localhost), holds a
/// character a host name cannot have, or has unbalanced brackets; when a
/// bracketed host is not an IPv6 address; when the string ends with `:` or
/// the port is not a number from 1 to 65535; when an unbracketed IPv6
/// address is followed by a port.
pub fn split_host_port(endpoint: &str, default_port: u16) -> Result<(String, u16), TargetError> {
    split_host_port_inner(endpoint, default_port).map_err(|r| TargetError::new(endpoint, r))
}

/// Parses the endpoint of an `ipv4` or `ipv6` target: a comma-separated
/// list of addresses, each with an optional port.
///
/// - `ipv4`: `a.b.c.d` or `a.b.c.d:port`.
/// - `ipv6`: `addr` (no port) or `[addr]:port` / `[addr]`. A zone is a
///   numeric interface index: `[fe80::1%252]:80` in a target (`%25` is the
///   URI encoding of `%`, decoded by [`parse`]), `[fe80::1%2]:80` here.
///
/// `default_port` is used for addresses without one; naming.md's default
/// is [`DEFAULT_PORT`] (443).
///
/// # Errors
///
/// When `scheme` is neither `ipv4` nor `ipv6`; when the list or an item in
/// it is empty; when an address is not of the scheme's family (`ipv4` with
/// an IPv6 address or the reverse); when a port is not a number from 1 to
/// 65535; when a zone is not a number.
pub fn parse_ip_list(
    scheme: &str,
    endpoint: &str,
    default_port: u16,
) -> Result<Vec<SocketAddr>, TargetError> {
    let fail = |r: String| TargetError::new(&format!("{scheme}:{endpoint}"), r);
    let v6 = match scheme {
        "ipv4" => false,
        "ipv6" => true,
        _ => return Err(fail(format!("scheme {scheme:?} is not ipv4 or ipv6"))),
    };
    if endpoint.is_empty() {
        return Err(fail("no addresses are given".into()));
    }
    endpoint
        .split(',')
        .map(|item| {
            if item.is_empty() {
                return Err("the address list has an empty item".to_string());
            }
            if v6 {
                parse_ipv6_item(item, default_port)
            } else {
                parse_ipv4_item(item, default_port)
            }
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(fail)
}

/// The socket a `unix` or `unix-abstract` target names.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnixTarget {
    /// A filesystem path: relative to the working directory
    /// (`unix:relative/path`) or absolute (`unix:///abs/path`,
    /// `unix:/abs/path`).
    Path(PathBuf),
    /// A name in Linux's abstract socket namespace (`unix-abstract:name`),
    /// without the leading NUL byte the kernel's address starts with. It
    /// has nothing to do with the filesystem, and no permissions apply:
    /// any process can connect.
    Abstract(String),
}

impl UnixTarget {
    /// The path to connect to. For an abstract name it is the name after a
    /// NUL byte, which tokio's `UnixStream::connect` (through mio) takes as
    /// an address in the abstract namespace on Linux and Android.
    pub fn socket_path(&self) -> PathBuf {
        match self {
            UnixTarget::Path(path) => path.clone(),
            UnixTarget::Abstract(name) => PathBuf::from(format!("\0{name}")),
        }
    }
}

/// The socket of a `unix` or `unix-abstract` target.
///
/// # Errors
///
/// When the target is of another scheme, has an authority
/// (`unix://host/path`; write `unix:///abs/path` or `unix:relative/path`),
/// or names an empty path or a path containing a NUL byte (which a target
/// can only hold percent-encoded, `%00`). naming.md forbids NUL in abstract
/// names, and the kernel in paths.
pub fn unix_path(target: &Target) -> Result<UnixTarget, TargetError> {
    let fail = |r: &str| TargetError::new(&target.to_string(), r);
    let abstract_ns = match target.scheme() {
        "unix" => false,
        "unix-abstract" => true,
        other => {
            return Err(fail(&format!(
                "scheme {other:?} is not unix or unix-abstract"
            )))
        }
    };
    if !target.authority().is_empty() {
        return Err(fail(
            "a unix target takes no authority (write unix:///absolute/path or unix:relative/path)",
        ));
    }
    let endpoint = target.endpoint();
    if endpoint.is_empty() {
        return Err(fail(if abstract_ns {
            "no abstract socket name is given"
        } else {
            "no socket path is given"
        }));
    }
    if endpoint.contains('\0') {
        return Err(fail(if abstract_ns {
            "the abstract socket name contains a NUL byte"
        } else {
            "the socket path contains a NUL byte"
        }));
    }
    Ok(if abstract_ns {
        UnixTarget::Abstract(endpoint.to_string())
    } else {
        UnixTarget::Path(PathBuf::from(endpoint))
    })
}

// ---------------------------------------------------------------------------
// URI parsing (the subset of RFC 3986 that gRPC targets use, with the
// leniencies of Go's net/url, which gRPC-Go parses targets with).

/// A target after its scheme: authority (empty if none), percent-decoded
/// path or opaque part, raw query.
struct Parts {
    authority: String,
    path: String,
    opaque: bool,
    query: Option<String>,
}

impl Target {
    fn from_parts(scheme: String, parts: Parts) -> Target {
        // The path of `scheme://authority/endpoint` starts with the '/' that
        // ends the authority; it is not part of the endpoint, except for the
        // unix schemes, where it is the root of an absolute path.
        let endpoint = if parts.opaque || keeps_leading_slash(&scheme) {
            parts.path
        } else {
            match parts.path.strip_prefix('/') {
                Some(rest) => rest.to_string(),
                None => parts.path,
            }
        };
        Target {
            scheme,
            authority: parts.authority,
            endpoint,
            query: parts.query,
            legacy: None,
        }
    }
}

fn keeps_leading_slash(scheme: &str) -> bool {
    scheme == "unix" || scheme == "unix-abstract"
}

/// `scheme` and the rest if `s` starts with `scheme:` (a letter, then
/// letters, digits, `+`, `-`, `.`); the scheme comes back in lower case.
fn split_scheme(s: &str) -> Option<(String, &str)> {
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i > 0 => return Some((s[..i].to_ascii_lowercase(), &s[i + 1..])),
            _ => return None,
        }
    }
    None
}

/// Parses what follows `scheme:`.
fn parse_rest(rest: &str) -> Result<Parts, String> {
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    if let Some(fragment) = fragment {
        check_escapes(fragment, "fragment")?;
    }
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q.to_string())),
        None => (rest, None),
    };
    let (authority, path, opaque) = if let Some(after) = rest.strip_prefix("//") {
        let end = after.find('/').unwrap_or(after.len());
        let authority = &after[..end];
        check_authority(authority)?;
        (authority, &after[end..], false)
    } else {
        ("", rest, !rest.starts_with('/'))
    };
    Ok(Parts {
        authority: authority.to_string(),
        path: percent_decode(path)?,
        opaque,
        query,
    })
}

/// The legacy `http://host[:port][/]` and `https://…` forms.
fn legacy(parts: Parts, https: bool) -> Result<Target, String> {
    let scheme = if https { "https" } else { "http" };
    if parts.authority.is_empty() {
        return Err(format!("an {scheme}:// target needs a host"));
    }
    if parts.authority.contains('@') {
        return Err(format!("an {scheme}:// target takes no user info"));
    }
    if !(parts.path.is_empty() || parts.path == "/") || parts.query.is_some() {
        return Err(format!(
            "an {scheme}:// target is a host and port, with no path or query \
             (for other names use dns:///host:port)"
        ));
    }
    let auth = parts.authority;
    let has_port = if auth.starts_with('[') {
        !auth.ends_with(']')
    } else {
        auth.contains(':')
    };
    let endpoint = if has_port {
        auth
    } else {
        format!("{auth}:{}", if https { 443 } else { 80 })
    };
    Ok(Target {
        scheme: DEFAULT_SCHEME.to_string(),
        authority: String::new(),
        endpoint,
        query: None,
        legacy: Some(if https { Legacy::Https } else { Legacy::Http }),
    })
}

/// Checks the endpoint of a built-in scheme.
fn check_builtin(target: &Target) -> Result<(), String> {
    let endpoint = target.endpoint();
    match target.scheme() {
        "dns" => {
            if endpoint.is_empty() {
                return Err(
                    "it names no host (expected dns:[//dns-server/]host[:port])".to_string()
                );
            }
            split_host_port_inner(endpoint, DEFAULT_PORT).map(drop)
        }
        "ipv4" | "ipv6" => parse_ip_list(target.scheme(), endpoint, DEFAULT_PORT)
            .map(drop)
            .map_err(|e| e.reason),
        "unix" | "unix-abstract" => unix_path(target).map(drop).map_err(|e| e.reason),
        _ => Ok(()),
    }
}

/// Checks an authority as Go's net/url does: `[userinfo@]host[:port]`, the
/// port digits only, the host of allowed characters or an IP literal in
/// brackets.
fn check_authority(authority: &str) -> Result<(), String> {
    let host = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            if let Some(c) = userinfo.chars().find(|&c| !is_userinfo_char(c)) {
                return Err(format!(
                    "the user info in authority {authority:?} has the character {c:?}"
                ));
            }
            check_escapes(userinfo, "authority")?;
            &authority[at + 1..]
        }
        None => authority,
    };
    let (name, port) = if host.starts_with('[') {
        let Some(close) = host.rfind(']') else {
            return Err(format!("authority {authority:?} is missing ']'"));
        };
        (&host[..=close], &host[close + 1..])
    } else {
        match host.rfind(':') {
            Some(colon) => (&host[..colon], &host[colon..]),
            None => (host, ""),
        }
    };
    if !(port.is_empty() || port.starts_with(':') && port[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "authority {authority:?} has an invalid port {:?}",
            port.strip_prefix(':').unwrap_or(port)
        ));
    }
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3);
            let value = hex.and_then(|h| Some((hex_value(h[0])? << 4) | hex_value(h[1])?));
            // Only non-ASCII bytes may be encoded in a host name; an IPv6
            // zone (`[fe80::1%25eth0]`) may encode anything.
            match value {
                Some(v) if v >= 0x80 || name.starts_with('[') || v == b'%' => i += 3,
                _ => {
                    return Err(format!(
                        "authority {authority:?} has an invalid escape {:?}",
                        name[i..].chars().take(3).collect::<String>()
                    ))
                }
            }
            continue;
        }
        if b < 0x80 && !is_host_byte(b) {
            return Err(format!(
                "authority {authority:?} has the character {:?}",
                char::from(b)
            ));
        }
        i += 1;
    }
    Ok(())
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]<>\"".contains(&b)
}

fn is_userinfo_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The first malformed `%` escape in `s`, if any, as an error.
fn check_escapes(s: &str, what: &str) -> Result<(), String> {
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let ok = bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| hex_value(h[0]).is_some() && hex_value(h[1]).is_some());
            if !ok {
                let bad = s[i..].chars().take(3).collect::<String>();
                return Err(format!(
                    "the {what} has a malformed escape {bad:?} (write a literal '%' as %25)"
                ));
            }
        }
    }
    Ok(())
}

fn percent_decode(s: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    check_escapes(s, "path")?;
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(h)) => {
                // check_escapes has seen two hex digits after every '%'.
                let hi = hex_value(h[0]).unwrap_or(0);
                let lo = hex_value(h[1]).unwrap_or(0);
                out.push((hi << 4) | lo);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| format!("the path {s:?} percent-decodes to bytes that are not UTF-8"))
}

/// Writes an endpoint so that parsing gives it back: `%`, `?`, `#`, space
/// and control characters are percent-encoded; the rest (non-ASCII too) is
/// written as it is.
fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        if matches!(c, '%' | '?' | '#' | ' ') || c.is_ascii_control() {
            write!(f, "%{:02X}", u32::from(c))?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Address helpers.

fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err("the port is empty".into());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {port:?} is not a number"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 cannot be dialled".into()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("port {port} is out of range (1 to 65535)")),
    }
}

fn split_host_port_inner(endpoint: &str, default_port: u16) -> Result<(String, u16), String> {
    if endpoint.is_empty() {
        return Err("no host is given".into());
    }
    // A bare IPv6 address: "::1", "fe80::1%eth0".
    if let Some(addr) = strip_zone(endpoint) {
        if addr.parse::<Ipv6Addr>().is_ok() {
            return Ok((endpoint.to_string(), default_port));
        }
    }
    if let Some(inner) = endpoint.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return Err("missing ']' after the IPv6 address".into());
        };
        let port = match after {
            "" => default_port,
            _ => match after.strip_prefix(':') {
                Some("") => return Err("it ends with ':' but names no port".into()),
                Some(port) => parse_port(port)?,
                None => return Err(format!("unexpected {after:?} after ']'")),
            },
        };
        let addr = strip_zone(host).unwrap_or(host);
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{host:?} in brackets is not an IPv6 address"));
        }
        return Ok((host.to_string(), port));
    }
    let (host, port) = match endpoint.split_once(':') {
        None => (endpoint, default_port),
        Some((_, port)) if port.contains(':') => {
            return Err("too many colons (write an IPv6 address with a port as [addr]:port)".into())
        }
        Some((_, "")) => return Err("it ends with ':' but names no port".into()),
        Some((host, port)) => (host, parse_port(port)?),
    };
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if let Some(c) = host
        .chars()
        .find(|&c| c.is_ascii() && !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        return Err(format!("host {host:?} has the character {c:?}"));
    }
    Ok((host.to_string(), port))
}

/// The address part of `addr%zone`, or the whole string when there is no
/// zone; `None` for an empty zone.
fn strip_zone(s: &str) -> Option<&str> {
    match s.split_once('%') {
        Some((_, "")) => None,
        Some((addr, _)) => Some(addr),
        None => Some(s),
    }
}

fn parse_ipv4_item(item: &str, default_port: u16) -> Result<SocketAddr, String> {
    if item.starts_with('[') || item.parse::<Ipv6Addr>().is_ok() {
        return Err(format!("{item:?} is an IPv6 address; use the ipv6: scheme"));
    }
    let (host, port) = match item.split_once(':') {
        Some((host, port)) => (host, parse_port(port)?),
        None => (item, default_port),
    };
    let addr = host
        .parse::<Ipv4Addr>()
        .map_err(|_| format!("{host:?} is not an IPv4 address"))?;
    Ok(SocketAddr::V4(SocketAddrV4::new(addr, port)))
}

fn parse_ipv6_item(item: &str, default_port: u16) -> Result<SocketAddr, String> {
    let (host, port) = match item.strip_prefix('[') {
        Some(inner) => {
            let Some((host, after)) = inner.split_once(']') else {
                return Err(format!("{item:?} is missing ']'"));
            };
            let port = match after {
                "" => default_port,
                _ => match after.strip_prefix(':') {
                    Some(port) => parse_port(port)?,
                    None => return Err(format!("unexpected {after:?} after ']' in {item:?}")),
                },
            };
            (host, port)
        }
        None => {
            if item.parse::<Ipv4Addr>().is_ok() || item.parse::<SocketAddrV4>().is_ok() {
                return Err(format!("{item:?} is an IPv4 address; use the ipv4: scheme"));
            }
            (item, default_port)
        }
    };
    let (addr, scope) = match host.split_once('%') {
        Some((addr, zone)) => {
            let scope = zone.parse::<u32>().map_err(|_| {
                format!("zone {zone:?} of {item:?} is not a numeric interface index")
            })?;
            (addr, scope)
        }
        None => (host, 0),
    };
    let addr = addr.parse::<Ipv6Addr>().map_err(|_| {
        if host == item && item.contains(':') {
            format!("{item:?} is not an IPv6 address (with a port, write [address]:port)")
        } else {
            format!("{addr:?} is not an IPv6 address")
        }
    })?;
    Ok(SocketAddr::V6(SocketAddrV6::new(addr, port, 0, scope)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn builtin(scheme: &str) -> bool {
        matches!(
            scheme,
            "dns" | "unix" | "unix-abstract" | "ipv4" | "ipv6" | "passthrough" | "xds"
        )
    }

    fn ok(target: &str) -> Target {
        match parse(target, builtin) {
            Ok(t) => t,
            Err(e) => panic!("{target:?}: {e}"),
        }
    }

    fn err(target: &str) -> String {
        match parse(target, builtin) {
            Ok(t) => panic!("{target:?} parsed as {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// (scheme, authority, endpoint) of a target.
    fn parts(target: &str) -> (String, String, String) {
        let t = ok(target);
        (
            t.scheme().to_string(),
            t.authority().to_string(),
            t.endpoint().to_string(),
        )
    }

    fn p(s: &str, a: &str, e: &str) -> (String, String, String) {
        (s.to_string(), a.to_string(), e.to_string())
    }

    #[test]
    fn naming_md_dns_forms() {
        assert_eq!(
            parts("dns:///example.com:443"),
            p("dns", "", "example.com:443")
        );
        assert_eq!(parts("dns:///example.com"), p("dns", "", "example.com"));
        assert_eq!(
            parts("dns:example.com:50051"),
            p("dns", "", "example.com:50051")
        );
        assert_eq!(parts("dns:foo"), p("dns", "", "foo"));
        assert_eq!(
            parts("dns://8.8.8.8/example.com"),
            p("dns", "8.8.8.8", "example.com")
        );
        assert_eq!(
            parts("dns://8.8.8.8:53/example.com:50051"),
            p("dns", "8.8.8.8:53", "example.com:50051")
        );
        assert_eq!(
            parts("dns://[2001:4860:4860::8888]:53/foo.bar:1"),
            p("dns", "[2001:4860:4860::8888]:53", "foo.bar:1")
        );
        assert_eq!(parts("dns:///[::1]:50051"), p("dns", "", "[::1]:50051"));
        // The scheme is case-insensitive; the rest is kept as written.
        assert_eq!(parts("DNS:///Example.COM"), p("dns", "", "Example.COM"));
        // Two spellings, one target.
        assert_eq!(ok("dns:foo"), ok("dns:///foo"));
    }

    #[test]
    fn naming_md_unix_forms() {
        assert_eq!(parts("unix:relative/path"), p("unix", "", "relative/path"));
        assert_eq!(parts("unix:sock"), p("unix", "", "sock"));
        assert_eq!(parts("unix:/abs/path"), p("unix", "", "/abs/path"));
        assert_eq!(parts("unix:///abs/path"), p("unix", "", "/abs/path"));
        assert_eq!(ok("unix:/abs/path"), ok("unix:///abs/path"));
        assert_eq!(
            parts("unix-abstract:my-name"),
            p("unix-abstract", "", "my-name")
        );
        assert_eq!(
            unix_path(&ok("unix:relative/path")),
            Ok(UnixTarget::Path("relative/path".into()))
        );
        assert_eq!(
            unix_path(&ok("unix:///abs/path")),
            Ok(UnixTarget::Path("/abs/path".into()))
        );
        let abs = unix_path(&ok("unix-abstract:grpc.sock")).unwrap();
        assert_eq!(abs, UnixTarget::Abstract("grpc.sock".into()));
        assert_eq!(abs.socket_path(), PathBuf::from("\0grpc.sock"));
        assert_eq!(
            UnixTarget::Path("/a".into()).socket_path(),
            PathBuf::from("/a")
        );
    }

    #[test]
    fn naming_md_ip_forms() {
        assert_eq!(
            parts("ipv4:1.2.3.4:80,5.6.7.8"),
            p("ipv4", "", "1.2.3.4:80,5.6.7.8")
        );
        assert_eq!(
            parse_ip_list("ipv4", "1.2.3.4:80,5.6.7.8", DEFAULT_PORT).unwrap(),
            vec![
                "1.2.3.4:80".parse::<SocketAddr>().unwrap(),
                "5.6.7.8:443".parse().unwrap()
            ]
        );
        assert_eq!(
            parts("ipv6:[::1]:80,[::2]"),
            p("ipv6", "", "[::1]:80,[::2]")
        );
        assert_eq!(
            parse_ip_list("ipv6", "[::1]:80,[::2]", DEFAULT_PORT).unwrap(),
            vec![
                "[::1]:80".parse::<SocketAddr>().unwrap(),
                "[::2]:443".parse().unwrap()
            ]
        );
        assert_eq!(parts("ipv6:::1"), p("ipv6", "", "::1"));
        assert_eq!(
            parse_ip_list("ipv6", "::1,2001:db8::5", 50051).unwrap(),
            vec![
                "[::1]:50051".parse::<SocketAddr>().unwrap(),
                "[2001:db8::5]:50051".parse().unwrap()
            ]
        );
        // The examples of naming.md.
        for (target, addr) in [
            (
                "ipv6:[2607:f8b0:400e:c00::ef]:443",
                "[2607:f8b0:400e:c00::ef]:443",
            ),
            ("ipv6:[::]:1234", "[::]:1234"),
        ] {
            let t = ok(target);
            assert_eq!(
                parse_ip_list(t.scheme(), t.endpoint(), DEFAULT_PORT).unwrap(),
                vec![addr.parse::<SocketAddr>().unwrap()]
            );
        }
        // The hierarchical form works too.
        assert_eq!(parts("ipv4:///10.0.0.1:9"), p("ipv4", "", "10.0.0.1:9"));
    }

    #[test]
    fn ipv6_zones() {
        // In a target the zone's '%' is written %25, and parse decodes it.
        let t = ok("ipv6:[fe80::1%252]:80");
        assert_eq!(t.endpoint(), "[fe80::1%2]:80");
        let addrs = parse_ip_list("ipv6", t.endpoint(), DEFAULT_PORT).unwrap();
        assert_eq!(addrs, vec!["[fe80::1%2]:80".parse::<SocketAddr>().unwrap()]);
        let e = parse_ip_list("ipv6", "[fe80::1%eth0]:80", 1).unwrap_err();
        assert!(e.reason().contains("numeric interface index"), "{e}");
        // An unencoded '%' is a malformed escape, and the message says how
        // to write it.
        let e = err("ipv6:[fe80::1%2]:80");
        assert!(e.contains("malformed escape \"%2]\""), "{e}");
        assert!(e.contains("%25"), "{e}");
    }

    #[test]
    fn default_scheme_fallback() {
        for target in [
            "localhost:50051",
            "127.0.0.1:80",
            "[::1]:50051",
            "foo.bar",
            "foo.bar:1234",
            "example.com:443",
            "localhost",
            "::1",
            "1.2.3.4",
            "my_host-1.example:8080",
        ] {
            assert_eq!(parts(target), p("dns", "", target), "{target}");
            assert!(!ok(target).wants_tls());
        }
        // A scheme nobody registered is part of the name.
        // (Here a host "foo" with a port "bar", which is not a number.)
        let e = err("foo:bar");
        assert!(e.contains("port \"bar\" is not a number"), "{e}");
        assert_eq!(parts("foo:1"), p("dns", "", "foo:1"));
        // Unless the caller registered it.
        let t = parse("foo:bar", |s| s == "foo").unwrap();
        assert_eq!((t.scheme(), t.endpoint()), ("foo", "bar"));
        // Registered schemes other than the built-ins are parsed generally.
        assert_eq!(parts("xds:///service"), p("xds", "", "service"));
        assert_eq!(parts("passthrough:///h:1"), p("passthrough", "", "h:1"));
        assert_eq!(
            parts("xds://trafficdirector.googleapis.com/svc"),
            p("xds", "trafficdirector.googleapis.com", "svc")
        );
        // With no schemes registered, even dns: is a name (as in gRPC-Go);
        // it then fails as a host name.
        let e = parse("dns:///foo", |_| false).unwrap_err();
        assert!(
            e.reason().contains("port \"///foo\" is not a number"),
            "{e}"
        );
        // Query and fragment leave the endpoint, in the fallback too.
        let t = ok("localhost:50051?lb=rr#frag");
        assert_eq!(t.endpoint(), "localhost:50051");
        assert_eq!(t.query(), Some("lb=rr"));
        assert_eq!(ok("dns:///foo").query(), None);
        assert_eq!(ok("dns:///foo?").query(), Some(""));
    }

    #[test]
    fn legacy_http_forms() {
        let t = ok("https://example.com:8443");
        assert_eq!((t.scheme(), t.endpoint()), ("dns", "example.com:8443"));
        assert!(t.wants_tls());
        let t = ok("http://localhost:50051");
        assert_eq!((t.scheme(), t.endpoint()), ("dns", "localhost:50051"));
        assert!(!t.wants_tls());
        assert_eq!(ok("https://example.com").endpoint(), "example.com:443");
        assert_eq!(ok("http://example.com/").endpoint(), "example.com:80");
        assert_eq!(ok("HTTPS://[::1]:50051").endpoint(), "[::1]:50051");
        assert_eq!(ok("https://[::1]").endpoint(), "[::1]:443");
        assert_ne!(ok("https://h:1"), ok("dns:///h:1"));
        // Only the `//` form is legacy: "http:80" is host "http", port 80,
        // as in gRPC-Go.
        assert_eq!(parts("http:80"), p("dns", "", "http:80"));
        // A registered http scheme is just a scheme.
        let t = parse("http://a/b", |s| s == "http").unwrap();
        assert_eq!(
            (t.scheme(), t.authority(), t.endpoint()),
            ("http", "a", "b")
        );
        assert!(!t.wants_tls());

        let e = err("http://host:80/path");
        assert!(e.contains("no path or query"), "{e}");
        let e = err("https://host:80?x=1");
        assert!(e.contains("no path or query"), "{e}");
        let e = err("https://");
        assert!(e.contains("needs a host"), "{e}");
        let e = err("https://user@host");
        assert!(e.contains("user info"), "{e}");
        let e = err("http://host:");
        assert!(e.contains("ends with ':'"), "{e}");
        let e = err("http://host:99999");
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(ok("unix:///tmp/my%20sock").endpoint(), "/tmp/my sock");
        assert_eq!(ok("unix:my%20sock").endpoint(), "my sock");
        assert_eq!(ok("dns:///foo%2Ebar:1").endpoint(), "foo.bar:1");
        assert_eq!(ok("%6Cocalhost:50051").endpoint(), "localhost:50051");
        assert_eq!(ok("unix:///caf%C3%A9").endpoint(), "/café");
        assert_eq!(ok("unix:///café").endpoint(), "/café");
        // '+' is not a space in a path.
        assert_eq!(ok("unix:a+b").endpoint(), "a+b");
        // An encoded '/' at the start of an opaque part is part of it.
        assert_eq!(ok("unix:%2Fabs").endpoint(), "/abs");
        assert_eq!(ok("unix:%2Fabs"), ok("unix:///abs"));

        let e = err("dns:///foo%zz");
        assert!(e.contains("malformed escape \"%zz\""), "{e}");
        let e = err("foo%4");
        assert!(e.contains("malformed escape \"%4\""), "{e}");
        let e = err("unix:///%FF");
        assert!(e.contains("not UTF-8"), "{e}");
        let e = err("localhost:1#%");
        assert!(e.contains("fragment"), "{e}");
        // A NUL can only arrive encoded; no socket path may hold one.
        let e = err("unix:///a%00b");
        assert!(e.contains("NUL"), "{e}");
        let e = err("unix-abstract:a%00b");
        assert!(e.contains("abstract socket name contains a NUL"), "{e}");
    }

    #[test]
    fn display_is_canonical_and_parses_back() {
        for (target, canonical) in [
            ("dns:///example.com:443", "dns:///example.com:443"),
            ("dns:foo", "dns:///foo"),
            ("DNS://8.8.8.8/x.y", "dns://8.8.8.8/x.y"),
            ("localhost:50051", "dns:///localhost:50051"),
            ("[::1]:1", "dns:///[::1]:1"),
            ("unix:rel/path", "unix:rel/path"),
            ("unix:/abs", "unix:///abs"),
            ("unix:///abs", "unix:///abs"),
            ("unix:%2Fabs", "unix:///abs"),
            ("unix:///my%20sock", "unix:///my%20sock"),
            ("unix:a%3Fb", "unix:a%3Fb"),
            ("unix:50%25", "unix:50%25"),
            ("unix-abstract:name", "unix-abstract:name"),
            ("ipv4:1.2.3.4:80,5.6.7.8", "ipv4:///1.2.3.4:80,5.6.7.8"),
            ("ipv6:[fe80::1%251]", "ipv6:///[fe80::1%251]"),
            ("xds:///svc?a=b", "xds:///svc?a=b"),
            ("xds://auth", "xds://auth/"),
            ("xds:", "xds:///"),
            ("xds:////x", "xds:////x"),
            ("https://example.com", "https://example.com:443"),
            ("http://h:1/", "http://h:1"),
        ] {
            let t = ok(target);
            assert_eq!(t.to_string(), canonical, "{target}");
            assert_eq!(ok(canonical), t, "{target}");
        }
    }

    #[test]
    fn parse_errors_name_the_target_and_the_fault() {
        let cases = [
            ("", "the target is empty"),
            ("unix:", "no socket path is given"),
            ("unix://", "no socket path is given"),
            ("unix-abstract:", "no abstract socket name is given"),
            ("unix://host/path", "takes no authority"),
            ("dns:", "names no host"),
            ("dns:///", "names no host"),
            ("dns://8.8.8.8", "names no host"),
            ("?x", "names no host"),
            ("dns://[::1/foo", "is missing ']'"),
            ("dns://host:port/foo", "invalid port \"port\""),
            ("dns://[::1]x/foo", "invalid port \"x\""),
            ("dns://bad host/foo", "has the character ' '"),
            ("dns://a%41/foo", "invalid escape \"%41\""),
            ("dns://us{er@h/foo", "user info"),
            ("dns:///:50051", "the host is empty"),
            ("dns:///host:", "ends with ':'"),
            ("dns:///host:0", "port 0 cannot be dialled"),
            ("dns:///host:http", "not a number"),
            ("a:b:c", "too many colons"),
            ("/tmp/sock", "has the character '/'"),
            ("dns:///[foo]:1", "not an IPv6 address"),
            ("local\nhost", "control character '\\n'"),
            ("ipv4:", "no addresses"),
            ("ipv4:1.2.3.4,", "empty item"),
            ("ipv4:1.2.3:80", "\"1.2.3\" is not an IPv4 address"),
            ("ipv4:[::1]:80", "use the ipv6: scheme"),
            ("ipv4:1.2.3.4:70000", "out of range"),
            ("ipv6:1.2.3.4", "use the ipv4: scheme"),
            ("ipv6:1.2.3.4:80", "use the ipv4: scheme"),
            ("ipv6:::1:80x", "with a port, write [address]:port"),
            ("ipv6:[::1", "missing ']'"),
        ];
        for (target, fault) in cases {
            let e = parse(target, builtin).unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("invalid target {target:?}: ")),
                "{target:?}: {text}"
            );
            assert!(text.contains(fault), "{target:?}: {text}");
            assert_eq!(e.input(), target);
        }
        // A fuller message, for the record.
        assert_eq!(
            err("unix://host/path"),
            "invalid target \"unix://host/path\": a unix target takes no authority \
             (write unix:///absolute/path or unix:relative/path)"
        );
    }

    #[test]
    fn split_host_port_forms() {
        let s = |e: &str| split_host_port(e, DEFAULT_PORT);
        assert_eq!(s("example.com"), Ok(("example.com".into(), 443)));
        assert_eq!(s("example.com:50051"), Ok(("example.com".into(), 50051)));
        assert_eq!(s("example.com."), Ok(("example.com.".into(), 443)));
        assert_eq!(s("1.2.3.4:80"), Ok(("1.2.3.4".into(), 80)));
        assert_eq!(s("[::1]:80"), Ok(("::1".into(), 80)));
        assert_eq!(s("[::1]"), Ok(("::1".into(), 443)));
        assert_eq!(s("::1"), Ok(("::1".into(), 443)));
        assert_eq!(s("[fe80::1%eth0]:9"), Ok(("fe80::1%eth0".into(), 9)));
        assert_eq!(s("fe80::1%eth0"), Ok(("fe80::1%eth0".into(), 443)));
        assert_eq!(s("bücher.example"), Ok(("bücher.example".into(), 443)));
        assert_eq!(split_host_port("h", 80), Ok(("h".into(), 80)));
        assert_eq!(s("h:65535"), Ok(("h".into(), 65535)));

        for (endpoint, fault) in [
            ("", "no host"),
            (":80", "host is empty"),
            ("h:", "ends with ':'"),
            ("[::1]:", "ends with ':'"),
            ("h:65536", "out of range"),
            ("h:-1", "not a number"),
            ("h:+1", "not a number"),
            ("h:0", "port 0"),
            ("[::1", "missing ']'"),
            ("[::1]80", "after ']'"),
            ("[1.2.3.4]:80", "not an IPv6 address"),
            ("::1:80x", "too many colons"),
            ("a]:1", "the character ']'"),
            ("a b", "the character ' '"),
            ("h/x", "the character '/'"),
            ("[fe80::1%]:1", "not an IPv6 address"),
        ] {
            let e = split_host_port(endpoint, DEFAULT_PORT).unwrap_err();
            assert!(e.reason().contains(fault), "{endpoint:?}: {e}");
            assert_eq!(e.input(), endpoint);
        }
    }

    #[test]
    fn ip_list_errors() {
        let e = parse_ip_list("ipv5", "1.2.3.4", 1).unwrap_err();
        assert!(e.reason().contains("not ipv4 or ipv6"), "{e}");
        let e = parse_ip_list("ipv4", "1.2.3.4,,5.6.7.8", 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid target \"ipv4:1.2.3.4,,5.6.7.8\": the address list has an empty item"
        );
        let e = parse_ip_list("ipv4", " 1.2.3.4", 1).unwrap_err();
        assert!(e.reason().contains("not an IPv4 address"), "{e}");
        let e = parse_ip_list("ipv4", "01.2.3.4", 1).unwrap_err();
        assert!(e.reason().contains("not an IPv4 address"), "{e}");
        let e = parse_ip_list("ipv6", "[::1]:", 1).unwrap_err();
        assert!(e.reason().contains("port is empty"), "{e}");
        let e = parse_ip_list("ipv6", "[::1]x", 1).unwrap_err();
        assert!(e.reason().contains("after ']'"), "{e}");
        let e = parse_ip_list("ipv6", "[foo]:1", 1).unwrap_err();
        assert!(e.reason().contains("\"foo\" is not an IPv6 address"), "{e}");
        // IPv4-mapped IPv6 addresses are IPv6 addresses.
        assert_eq!(
            parse_ip_list("ipv6", "[::ffff:1.2.3.4]:5", 1).unwrap(),
            vec!["[::ffff:1.2.3.4]:5".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn unix_path_errors() {
        let e = unix_path(&ok("dns:///x")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid target \"dns:///x\": scheme \"dns\" is not unix or unix-abstract"
        );
        // Schemes whose targets parse generally (the caller's own "unix"
        // would be checked the same way).
        let t = parse("unix://h/p", |_| true).unwrap_err();
        assert!(t.reason().contains("no authority"), "{t}");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = parse(&s, builtin);
            let _ = parse(&s, |_| true);
            let _ = split_host_port(&s, DEFAULT_PORT);
            let _ = parse_ip_list("ipv4", &s, DEFAULT_PORT);
            let _ = parse_ip_list("ipv6", &s, DEFAULT_PORT);
        }

        #[test]
        fn uri_like_strings_parse_back_from_display(
            s in "[a-zA-Z0-9:/\\[\\]%.@?#,_ +-]{0,24}",
            prefix in prop::sample::select(vec![
                "", "dns:", "dns:///", "dns://", "unix:", "unix:///", "unix-abstract:",
                "ipv4:", "ipv6:", "xds:", "xds://", "http://", "https://", "foo:",
            ]),
        ) {
            let target = format!("{prefix}{s}");
            if let Ok(t) = parse(&target, builtin) {
                let shown = t.to_string();
                prop_assert_eq!(parse(&shown, builtin), Ok(t), "{} shown as {}", target, shown);
            }
            if let Ok(t) = parse(&target, |_| true) {
                let shown = t.to_string();
                prop_assert_eq!(parse(&shown, |_| true), Ok(t), "{} shown as {}", target, shown);
            }
        }
    }
}
