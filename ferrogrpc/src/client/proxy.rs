//! HTTP CONNECT proxies (gRFC A1), as gRPC-Go and gRPC C-core use them.
//!
//! A channel reaches its servers through a proxy when one is configured,
//! either in code ([`ChannelBuilder::proxy`](super::ChannelBuilder::proxy))
//! or, by default, in the environment ([`Proxy::from_env`]):
//!
//! | variable (first set wins) | meaning |
//! |---|---|
//! | `grpc_proxy`, `HTTPS_PROXY`, `https_proxy` | the proxy: `[http://][user:password@]host[:port]` |
//! | `no_grpc_proxy`, `NO_PROXY`, `no_proxy` | targets that bypass it (see [`Proxy::bypass`]) |
//!
//! For a channel that uses a proxy:
//!
//! - A `dns` target (the default scheme) is **not resolved** by the client:
//!   the channel has one address, the target's `host:port` as written, and
//!   the proxy resolves the name (gRFC A1 case 1; gRPC-Go's delegating
//!   resolver). There is no service config from DNS then. With
//!   [`ChannelBuilder::local_dns_resolution`](super::ChannelBuilder::local_dns_resolution)
//!   the client resolves it and sends each address through the proxy.
//! - Other schemes (`passthrough`, `ipv4`, `ipv6`, your own) resolve as
//!   usual, and each TCP address is reached through the proxy; Unix socket
//!   addresses never are.
//! - Each connection dials the proxy (its name resolved by the system
//!   resolver at each dial), sends `CONNECT host:port HTTP/1.1` with `Host`
//!   and, when the proxy URL has a user, `Proxy-Authorization: Basic`, and
//!   waits for a `2xx` answer. TLS, when configured, then runs inside the
//!   tunnel, to the target's name, and HTTP/2 over that.
//! - A proxy that refuses (any other status), closes, or does not answer
//!   within the connect timeout fails the attempt: calls get `UNAVAILABLE`
//!   with a message naming the proxy and, if it answered, its status line.
//!
//! A channel with a custom [dialer](super::Dialer) ignores the environment,
//! as in gRPC-Go; a proxy set in code is then dialled with that dialer.

use std::{
    fmt, io,
    net::IpAddr,
    pin::Pin,
    task::{Context, Poll},
};

use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::dialer::{BoxedIo, DialedIo};
use crate::resolver::{self, target, Address, BuildOptions, Controller, Resolver, State, Target};

/// The variables naming the proxy, in the order they are read.
pub const PROXY_VARIABLES: [&str; 3] = ["grpc_proxy", "HTTPS_PROXY", "https_proxy"];

/// The variables listing targets that bypass the proxy, in the order read.
pub const NO_PROXY_VARIABLES: [&str; 3] = ["no_grpc_proxy", "NO_PROXY", "no_proxy"];

/// The port of a proxy URL that names none: 443, as gRPC-Go and C-core
/// resolve the proxy's name with the `dns` default port.
pub const DEFAULT_PROXY_PORT: u16 = 443;

/// The most bytes of the proxy's answer read before the end of its headers.
const MAX_RESPONSE_HEAD: usize = 16 << 10;

/// An HTTP CONNECT proxy and the targets that bypass it.
///
/// Made from a URL ([`Proxy::new`]) or from the environment
/// ([`Proxy::from_env`]); given to a channel with
/// [`ChannelBuilder::proxy`](super::ChannelBuilder::proxy). See the
/// [module docs](self) for what a channel does with it.
#[derive(Clone)]
pub struct Proxy {
    /// `host:port` of the proxy.
    address: String,
    /// The user of the URL's userinfo, for `Debug` (the password never shows).
    user: Option<String>,
    /// `Basic <base64(user:password)>`.
    authorization: Option<String>,
    no_proxy: NoProxy,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("address", &self.address)
            .field("user", &self.user)
            .field("no_proxy", &self.no_proxy.text)
            .finish()
    }
}

/// A proxy URL that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyError {
    input: String,
    reason: String,
}

impl ProxyError {
    fn new(input: &str, reason: impl Into<String>) -> ProxyError {
        ProxyError {
            // The password is not repeated in messages.
            input: redact(input),
            reason: reason.into(),
        }
    }

    /// The rejected URL, with any password replaced by `***`.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid proxy {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for ProxyError {}

/// `url` with the password of its userinfo replaced by `***`.
fn redact(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let password = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}{user}{password}{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

impl Proxy {
    /// A proxy from its URL: `http://host:port`, `host:port`, or with
    /// credentials `http://user:password@host:port` (percent-encoded where
    /// they hold `:`, `@` or `/`), sent as `Proxy-Authorization: Basic`.
    /// Without a port, port 443 is used (as gRPC-Go and C-core do, not 80).
    /// A path after the authority is ignored. No target bypasses the proxy
    /// until [`bypass`](Self::bypass) says so (except `localhost` and
    /// loopback addresses, which never go through a proxy).
    ///
    /// # Errors
    ///
    /// When the scheme is not `http` (a TLS connection to the proxy, or a
    /// SOCKS proxy, is not supported), the host is empty or not a valid
    /// host name or address, the port is not a number from 1 to 65535, or
    /// the userinfo is badly percent-encoded.
    pub fn new(url: &str) -> Result<Proxy, ProxyError> {
        let fail = |reason: &str| ProxyError::new(url, reason);
        let trimmed = url.trim();
        let rest = match trimmed.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(fail(&format!(
                    "scheme {scheme:?} is not supported: only http:// proxies (HTTP CONNECT over plain TCP)"
                )))
            }
            None => trimmed,
        };
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        if hostport.is_empty() {
            return Err(fail("no host is given"));
        }
        let (host, port) =
            target::split_host_port(hostport, DEFAULT_PROXY_PORT).map_err(|e| fail(e.reason()))?;
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let (user, authorization) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let user =
                    percent_decode(user).ok_or_else(|| fail("bad percent-encoding in the user"))?;
                let password = percent_decode(password)
                    .ok_or_else(|| fail("bad percent-encoding in the password"))?;
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                (Some(user), Some(format!("Basic {token}")))
            }
        };
        Ok(Proxy {
            address,
            user,
            authorization,
            no_proxy: NoProxy::default(),
        })
    }

    /// The proxy the environment names (see the [module docs](self)), with
    /// the environment's bypass list; `None` when no variable names one, or
    /// when the one named is unusable (logged as a warning).
    pub fn from_env() -> Option<Proxy> {
        Proxy::from_env_with(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading each variable through
    /// `lookup` (which returns `None` for a variable that is not set): for
    /// settings kept elsewhere than in the process environment, and for
    /// tests. Empty values count as not set.
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Option<Proxy> {
        let first = |names: &[&'static str]| -> Option<(&'static str, String)> {
            names.iter().find_map(|&name| {
                lookup(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (name, v))
            })
        };
        let (name, url) = first(&PROXY_VARIABLES)?;
        let proxy = match Proxy::new(&url) {
            Ok(proxy) => proxy,
            Err(e) => {
                crate::logging::in_scope(|| {
                    tracing::warn!("ignoring the proxy in ${name}: {e}");
                });
                return None;
            }
        };
        Some(match first(&NO_PROXY_VARIABLES) {
            Some((_, list)) => proxy.bypass(&list),
            None => proxy,
        })
    }

    /// Targets that do not go through the proxy, in `NO_PROXY` syntax (the
    /// rules of Go's `net/http`, which gRPC-Go uses): a comma-separated
    /// list of
    ///
    /// - `*`: every target;
    /// - an IP address (`10.1.2.3`, `::1`, `[::1]`), matching that address;
    /// - a CIDR block (`10.0.0.0/8`, `fd00::/8`), matching addresses in it;
    /// - a domain name (`example.com`), matching it and its subdomains
    ///   (`a.example.com`); with a leading `.` or `*.` (`.example.com`),
    ///   matching subdomains only;
    /// - any of those but a CIDR block with `:port`, matching that port only.
    ///
    /// Entries are case-insensitive and trimmed; malformed ones are skipped.
    /// Names are compared as written in the target, before any resolution.
    /// `localhost` and loopback addresses always bypass the proxy. Replaces
    /// any list given before.
    pub fn bypass(mut self, list: &str) -> Proxy {
        self.no_proxy = NoProxy::parse(list);
        self
    }

    /// The proxy's `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether a target (`host`, `host:port`, `[v6]:port`; port 443 when
    /// none is given) bypasses this proxy: it is `localhost` or a loopback
    /// address, or it matches the [`bypass`](Self::bypass) list.
    pub fn bypasses(&self, target: &str) -> bool {
        let Ok((host, port)) = target::split_host_port(target, target::DEFAULT_PORT) else {
            // Not a host name (a custom scheme's endpoint, an address list):
            // only `*` matches it, as in Go.
            return self.no_proxy.all;
        };
        let host = host.to_ascii_lowercase();
        let ip = host
            .split('%')
            .next()
            .and_then(|h| h.parse::<IpAddr>().ok());
        if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
            return true;
        }
        self.no_proxy.matches(&host, port, ip)
    }

    /// The connection settings of this proxy.
    pub(crate) fn dial(&self) -> ProxyDial {
        ProxyDial {
            address: self.address.clone(),
            authorization: self.authorization.clone(),
        }
    }
}

/// A parsed bypass list.
#[derive(Clone, Default)]
struct NoProxy {
    text: String,
    all: bool,
    entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
enum Entry {
    Cidr {
        net: IpAddr,
        prefix: u8,
    },
    Ip {
        ip: IpAddr,
        port: Option<u16>,
    },
    /// `suffix` starts with '.'; `exact` also matches the name without it.
    Domain {
        suffix: String,
        exact: bool,
        port: Option<u16>,
    },
}

impl NoProxy {
    fn parse(list: &str) -> NoProxy {
        let mut parsed = NoProxy {
            text: list.to_string(),
            ..NoProxy::default()
        };
        for item in list.split(',') {
            let item = item.trim().to_ascii_lowercase();
            if item.is_empty() {
                continue;
            }
            if item == "*" {
                parsed.all = true;
                continue;
            }
            if let Some(cidr) = parse_cidr(&item) {
                parsed.entries.push(cidr);
                continue;
            }
            let (host, port) = match split_entry_port(&item) {
                Some((host, port)) => (host, Some(port)),
                None => (item.as_str(), None),
            };
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            if host.is_empty() {
                continue;
            }
            if let Ok(ip) = host.parse::<IpAddr>() {
                parsed.entries.push(Entry::Ip { ip, port });
                continue;
            }
            let host = host
                .strip_prefix('*')
                .filter(|h| h.starts_with('.'))
                .unwrap_or(host);
            let (suffix, exact) = match host.strip_prefix('.') {
                Some(_) => (host.to_string(), false),
                None => (format!(".{host}"), true),
            };
            if suffix.len() > 1 {
                parsed.entries.push(Entry::Domain {
                    suffix,
                    exact,
                    port,
                });
            }
        }
        parsed
    }

    fn matches(&self, host: &str, port: u16, ip: Option<IpAddr>) -> bool {
        if self.all {
            return true;
        }
        let port_ok = |want: &Option<u16>| want.is_none_or(|p| p == port);
        self.entries.iter().any(|entry| match entry {
            Entry::Cidr { net, prefix } => ip.is_some_and(|ip| in_cidr(ip, *net, *prefix)),
            Entry::Ip { ip: want, port: p } => ip == Some(*want) && port_ok(p),
            Entry::Domain {
                suffix,
                exact,
                port: p,
            } => {
                (host.ends_with(suffix.as_str()) || (*exact && host == &suffix[1..])) && port_ok(p)
            }
        })
    }
}

/// `addr/prefix`, when `text` is a CIDR block.
fn parse_cidr(text: &str) -> Option<Entry> {
    let (addr, prefix) = text.split_once('/')?;
    let net: IpAddr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(Entry::Cidr { net, prefix })
}

fn in_cidr(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// `host` and port of an entry written `host:port` or `[v6]:port`; `None`
/// when it has no port (a bare IPv6 address has several colons).
fn split_entry_port(item: &str) -> Option<(&str, u16)> {
    let (host, port) = if item.starts_with('[') {
        let close = item.find(']')?;
        let port = item[close + 1..].strip_prefix(':')?;
        (&item[..=close], port)
    } else {
        let (host, port) = item.split_once(':')?;
        if port.contains(':') {
            return None;
        }
        (host, port)
    };
    Some((host, port.parse().ok()?))
}

/// Decodes `%XX` escapes; `None` when malformed or not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------
// The channel's choice.

/// Where a channel's proxy comes from.
#[derive(Clone, Debug, Default)]
pub(crate) enum Setting {
    /// The environment ([`Proxy::from_env`]), unless a custom dialer is set.
    #[default]
    FromEnv,
    /// No proxy (gRPC-Go's `WithNoProxy`).
    Disabled,
    /// This one.
    Given(Proxy),
}

impl Setting {
    /// The proxy a channel to `target` uses, if any. `has_dialer`: the
    /// channel has a custom dialer, which turns the environment off.
    pub(crate) fn choose(&self, target: &Target, has_dialer: bool) -> Option<Proxy> {
        let proxy = match self {
            Setting::Disabled => return None,
            Setting::FromEnv if has_dialer => return None,
            Setting::FromEnv => Proxy::from_env()?,
            Setting::Given(proxy) => proxy.clone(),
        };
        // As gRPC-Go: the bypass list is checked against the target's
        // endpoint, whatever its scheme; Unix addresses are never proxied.
        if matches!(target.scheme(), "unix" | "unix-abstract") || proxy.bypasses(target.endpoint())
        {
            return None;
        }
        Some(proxy)
    }
}

/// How a connection reaches its proxy: what the transport needs.
#[derive(Clone)]
pub(crate) struct ProxyDial {
    /// `host:port` of the proxy, resolved at each dial.
    pub(crate) address: String,
    /// The `Proxy-Authorization` value.
    pub(crate) authorization: Option<String>,
}

impl fmt::Debug for ProxyDial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyDial")
            .field("address", &self.address)
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .finish()
    }
}

// ---------------------------------------------------------------------------
// The target, unresolved.

/// The resolver of a `dns` target reached through a proxy: it reports the
/// target's `host:port` as written, for the proxy to resolve (gRFC A1 case
/// 1; gRPC-Go's delegating resolver does the same).
pub(crate) struct Unresolved;

struct Done;

impl Resolver for Done {}

impl Unresolved {
    /// The endpoint with the default port when it names none.
    fn host_port(target: &Target) -> Result<String, String> {
        let (host, port) = target::split_host_port(target.endpoint(), target::DEFAULT_PORT)
            .map_err(|e| e.to_string())?;
        Ok(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    }
}

impl resolver::Builder for Unresolved {
    fn scheme(&self) -> &str {
        "dns"
    }

    fn check_target(&self, target: &Target) -> Result<(), String> {
        Unresolved::host_port(target).map(drop)
    }

    fn build(
        &self,
        target: &Target,
        controller: Controller,
        _options: BuildOptions,
    ) -> Result<Box<dyn Resolver>, String> {
        controller.update_state(State::new([Address::HostPort(Unresolved::host_port(
            target,
        )?)]));
        Ok(Box::new(Done))
    }
}

// ---------------------------------------------------------------------------
// The handshake.

/// What the CONNECT request names for `address`: `host:port`, with port 443
/// when the address has none.
pub(crate) fn connect_authority(address: &Address) -> Option<String> {
    match address {
        Address::Tcp(addr) => Some(addr.to_string()),
        Address::HostPort(hostport) => Some(
            match target::split_host_port(hostport, target::DEFAULT_PORT) {
                Ok((host, port)) if host.contains(':') => format!("[{host}]:{port}"),
                Ok((host, port)) => format!("{host}:{port}"),
                Err(_) => hostport.clone(),
            },
        ),
        _ => None,
    }
}

/// Runs the HTTP CONNECT handshake for `target` (`host:port`) over `io`, a
/// stream to the proxy, and returns the tunnel. The request's `User-Agent`
/// is the channel's (`user_agent`, a valid header value), as gRPC-Go sends
/// its dial option's. Bytes the proxy sent after
/// its answer's headers (the start of the server's stream) are read first
/// from the tunnel.
///
/// # Errors
///
/// The reason, naming nothing (the caller names the proxy): a write or read
/// failure, a close before the answer ended, an answer that is not HTTP/1.x,
/// too long, or not `2xx` (the status line is quoted).
pub(crate) async fn handshake<IO: DialedIo>(
    mut io: IO,
    target: &str,
    authorization: Option<&str>,
    user_agent: &[u8],
) -> Result<BoxedIo, String> {
    let mut request =
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: ").into_bytes();
    request.extend_from_slice(user_agent);
    request.extend_from_slice(b"\r\n");
    if let Some(auth) = authorization {
        request.extend_from_slice(b"Proxy-Authorization: ");
        request.extend_from_slice(auth.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    io.write_all(&request)
        .await
        .map_err(|e| format!("sending CONNECT failed: {e}"))?;
    io.flush()
        .await
        .map_err(|e| format!("sending CONNECT failed: {e}"))?;

    let mut buf = BytesMut::with_capacity(1024);
    let head_end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() >= MAX_RESPONSE_HEAD {
            return Err(format!(
                "its answer to CONNECT has no end of headers within {MAX_RESPONSE_HEAD} bytes"
            ));
        }
        let n = io
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("reading the answer to CONNECT failed: {e}"))?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "it closed the connection without answering CONNECT".to_string()
            } else {
                format!(
                    "it closed the connection in the middle of its answer to CONNECT: {:?}",
                    String::from_utf8_lossy(first_line(&buf))
                )
            });
        }
    };
    let status_line = String::from_utf8_lossy(first_line(&buf[..head_end])).into_owned();
    let status = parse_status_line(&status_line)
        .ok_or_else(|| format!("its answer to CONNECT is not HTTP/1.x: {status_line:?}"))?;
    if !(200..300).contains(&status) {
        return Err(format!("it refused CONNECT {target}: {status_line:?}"));
    }
    buf.advance(head_end);
    Ok(if buf.is_empty() {
        Box::new(io)
    } else {
        Box::new(Prefixed {
            prefix: buf.freeze(),
            io,
        })
    })
}

/// Where the header block ends (after its blank line), if it does within
/// `buf`. Lines end with CRLF or, leniently, LF.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        let line = &buf[line_start..i];
        if line.is_empty() || line == b"\r" {
            // A blank line before any status line is not the end.
            if line_start > 0 {
                return Some(i + 1);
            }
        }
        line_start = i + 1;
    }
    None
}

fn first_line(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = &buf[..end];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The status code of `HTTP/1.x NNN reason`.
fn parse_status_line(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("HTTP/1.")?;
    let mut parts = rest.splitn(3, ' ');
    let _minor = parts
        .next()
        .filter(|v| v.len() == 1 && v.as_bytes()[0].is_ascii_digit())?;
    let code = parts
        .next()
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))?;
    code.parse().ok()
}

/// A tunnel whose first bytes were already read from the proxy's socket.
struct Prefixed<IO> {
    prefix: Bytes,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn urls_parse_with_defaults_and_credentials() {
        let p = Proxy::new("http://proxy.corp:3128").unwrap();
        assert_eq!(p.address(), "proxy.corp:3128");
        assert!(p.authorization.is_none());
        let p = Proxy::new("proxy.corp").unwrap();
        assert_eq!(p.address(), "proxy.corp:443");
        let p = Proxy::new("http://[::1]:8080/").unwrap();
        assert_eq!(p.address(), "[::1]:8080");
        let p = Proxy::new("http://al%40ice:p%3Ass@10.0.0.1:3128").unwrap();
        // base64("al@ice:p:ss")
        assert_eq!(p.authorization.as_deref(), Some("Basic YWxAaWNlOnA6c3M="));
        let p = Proxy::new("http://user@h:1").unwrap();
        assert_eq!(p.authorization.as_deref(), Some("Basic dXNlcjo="));
        let debug = format!("{:?}", Proxy::new("http://u:secret@h:1").unwrap());
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_the_password() {
        for bad in [
            "https://h:1",
            "socks5://h:1",
            "http://",
            "http://h:0",
            "http://h:x",
            "http://u:%zz@h:1",
        ] {
            assert!(Proxy::new(bad).is_err(), "{bad}");
        }
        let e = Proxy::new("https://u:hunter2@h:1").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("u:***@h:1"), "{e}");
    }

    #[test]
    fn environment_order_and_empty_values() {
        let p = Proxy::from_env_with(env(&[
            ("grpc_proxy", "g:1"),
            ("HTTPS_PROXY", "upper:1"),
            ("https_proxy", "lower:1"),
        ]))
        .unwrap();
        assert_eq!(p.address(), "g:1");
        let p = Proxy::from_env_with(env(&[
            ("HTTPS_PROXY", "upper:1"),
            ("https_proxy", "lower:1"),
        ]))
        .unwrap();
        assert_eq!(p.address(), "upper:1");
        let p =
            Proxy::from_env_with(env(&[("grpc_proxy", ""), ("https_proxy", "lower:1")])).unwrap();
        assert_eq!(p.address(), "lower:1");
        // http_proxy is for http:// URLs: gRPC-Go does not read it.
        assert!(
            Proxy::from_env_with(env(&[("http_proxy", "h:1"), ("HTTP_PROXY", "h:1")])).is_none()
        );
        assert!(Proxy::from_env_with(env(&[("https_proxy", "socks5://h:1")])).is_none());
        let p = Proxy::from_env_with(env(&[
            ("https_proxy", "p:1"),
            ("NO_PROXY", "a.com"),
            ("no_proxy", "b.com"),
        ]))
        .unwrap();
        assert!(p.bypasses("x.a.com:443") && !p.bypasses("x.b.com:443"));
        let p = Proxy::from_env_with(env(&[
            ("https_proxy", "p:1"),
            ("no_grpc_proxy", "c.com"),
            ("NO_PROXY", "a.com"),
        ]))
        .unwrap();
        assert!(p.bypasses("c.com") && !p.bypasses("a.com"));
    }

    #[test]
    fn no_proxy_matching() {
        let p = Proxy::new("p:1").unwrap().bypass(
            " Example.COM, .sub.org, *.star.net, 10.0.0.0/8, 192.168.1.1, fd00::/8, [2001:db8::1]:80, ports.io:8080, ::2 ,,bad:port",
        );
        // Domains: the name and its subdomains; leading '.' or '*.': subdomains only.
        assert!(p.bypasses("example.com:443"));
        assert!(p.bypasses("a.b.example.com"));
        assert!(!p.bypasses("notexample.com:443"));
        assert!(p.bypasses("x.sub.org:1") && !p.bypasses("sub.org:1"));
        assert!(p.bypasses("x.star.net:1") && !p.bypasses("star.net:1"));
        // IPs and CIDR blocks.
        assert!(p.bypasses("10.200.3.4:50051") && !p.bypasses("11.0.0.1:50051"));
        assert!(p.bypasses("192.168.1.1:9") && !p.bypasses("192.168.1.2:9"));
        assert!(p.bypasses("[fd12::1]:443") && !p.bypasses("[fe80::1]:443"));
        assert!(p.bypasses("::2"));
        // Ports.
        assert!(p.bypasses("[2001:db8::1]:80") && !p.bypasses("[2001:db8::1]:81"));
        assert!(
            p.bypasses("ports.io:8080") && !p.bypasses("ports.io:443") && !p.bypasses("ports.io")
        );
        // Always: localhost and loopback.
        let none = Proxy::new("p:1").unwrap();
        assert!(
            none.bypasses("localhost:50051")
                && none.bypasses("127.0.0.1:1")
                && none.bypasses("[::1]:1")
        );
        assert!(!none.bypasses("example.com:443"));
        let all = Proxy::new("p:1").unwrap().bypass("foo, *");
        assert!(all.bypasses("anything.example:1"));
    }

    #[test]
    fn head_parsing() {
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nrest"), Some(19));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n"), Some(25));
        assert_eq!(head_end(b"HTTP/1.0 200 OK\n\n"), Some(17));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        assert_eq!(
            parse_status_line("HTTP/1.1 200 Connection established"),
            Some(200)
        );
        assert_eq!(parse_status_line("HTTP/1.0 407"), Some(407));
        assert_eq!(parse_status_line("HTTP/2 200"), None);
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
    }

    #[tokio::test]
    async fn leftover_bytes_reach_the_reader() {
        let (client, mut proxy) = tokio::io::duplex(1024);
        let task = tokio::spawn(async move {
            let mut req = vec![0; 1024];
            let n = proxy.read(&mut req).await.unwrap();
            let req = String::from_utf8_lossy(&req[..n]).into_owned();
            proxy
                .write_all(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nSERVER-BYTES")
                .await
                .unwrap();
            req
        });
        let mut tunnel = handshake(client, "t.example:443", Some("Basic abc"), b"app/1 x/2")
            .await
            .unwrap();
        let req = task.await.unwrap();
        assert!(
            req.starts_with("CONNECT t.example:443 HTTP/1.1\r\nHost: t.example:443\r\n"),
            "{req}"
        );
        assert!(
            req.contains("\r\nProxy-Authorization: Basic abc\r\n"),
            "{req}"
        );
        assert!(req.contains("\r\nUser-Agent: app/1 x/2\r\n"), "{req}");
        let mut got = [0; 12];
        tunnel.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"SERVER-BYTES");
    }
}
