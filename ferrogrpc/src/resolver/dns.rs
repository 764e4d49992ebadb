//! The `dns` resolver, the default one: a target's host name becomes the
//! IPv4 and IPv6 addresses DNS gives for it, and the service config its
//! `_grpc_config` TXT record holds (gRPC-Go's `dns` resolver; the rules are
//! grpc/grpc's `doc/naming.md` and gRFC A2).
//!
//! Targets: `dns:[//dns-server/]host[:port]`, and every target without a
//! registered scheme (`localhost:50051`, `example.com`). The port defaults
//! to 443. The optional authority names the DNS server to ask, as an IP
//! address with an optional port (default 53): `dns://8.8.8.8/example.com`,
//! `dns://[2001:4860:4860::8888]:53/example.com`. Without one, the system's
//! configuration is used (`/etc/resolv.conf`, or `127.0.0.1` and `::1` port
//! 53 if that file cannot be read, as the C library does), with the hosts
//! file consulted first; `localhost` and names under it are never sent to a
//! DNS server (RFC 6761): they resolve as the hosts file lists them, as the
//! system's resolver does, else to `127.0.0.1` and `::1`
//! ([`DnsBuilder::with_hosts_file`]); names under `.invalid` fail at once.
//!
//! What it does:
//!
//! - **IP literals** (`1.2.3.4:80`, `[::1]:50051`, `fe80::1%eth0`) are
//!   reported once, at once, with no query and no task.
//! - **Host names** are looked up (A and AAAA together) on a task the
//!   resolver owns; the addresses are reported IPv4 first, then IPv6, each
//!   family in the order DNS gave, duplicates dropped. Unless the channel
//!   disables service configs, the TXT records of `_grpc_config.<host>` are
//!   looked up at the same time (see [Service config](#service-config)).
//! - **Failures** (no such host, no addresses, a timeout, 30 s at most for
//!   one resolution as gRPC-Go's `ResolvingTimeout`) are reported with
//!   [`Controller::report_error`] and retried with exponential backoff
//!   (1 s, growing 1.6 times, ±20 % jitter, at most 120 s: the
//!   [`backoff`] defaults).
//! - **Re-resolution**: after a success the resolver resolves again only
//!   when asked ([`Resolver::resolve_now`], which the channel calls when a
//!   connection is lost), and at most once per
//!   [minimum resolution interval](DnsBuilder::with_min_resolution_interval)
//!   (30 s, gRPC-Go's `MinResolutionInterval`), counted from the end of the
//!   previous resolution: a request within the interval is carried out at
//!   its end, and several such requests make one resolution. After a
//!   failure, a request brings the next attempt forward to the end of the
//!   interval if the backoff would wait longer.
//! - It keeps no cache: each resolution asks the DNS server (which may
//!   cache, as usual). Dropping the resolver stops its task.
//!
//! What it does not do: SRV records and grpclb balancer addresses (gRFC A5,
//! deprecated in gRPC-Go), periodic re-resolution when nothing asks for it,
//! sorting addresses by RFC 6724 preference, DNS over TLS or HTTPS.
//!
//! # Service config
//!
//! Following gRFC A2, the text of each TXT record of `_grpc_config.<host>`
//! is the concatenation of its character-strings; the record that starts
//! with `grpc_config=` holds, after that prefix, a JSON array of *choices*:
//!
//! ```json
//! [{"clientLanguage": ["rust"], "percentage": 25, "clientHostname": ["a1"],
//!   "serviceConfig": {"loadBalancingPolicy": "round_robin"}}]
//! ```
//!
//! The first choice whose criteria all match is used: `clientLanguage`
//! absent, empty or naming `rust` (in any case); `percentage` absent or
//! above a number drawn at random from 0 to 99 at each resolution (so 0
//! never matches and 100 always does); `clientHostname` absent, empty or
//! naming this machine's host name exactly (`/proc/sys/kernel/hostname`, or
//! the `HOSTNAME` environment variable). Its `serviceConfig` object is then
//! parsed by [`ServiceConfig::parse`].
//!
//! The state reported carries:
//!
//! - no service config (`None`) when service configs are disabled, when
//!   there is no `grpc_config=` record or the TXT lookup fails in any way
//!   (a TXT failure never fails the resolution, as in gRPC-Go), or when no
//!   choice matches;
//! - `Some(Err(reason))` when the record is not a JSON array, when several
//!   different `grpc_config=` records exist (DNS does not order records, so
//!   which one to use would be a matter of chance), when the chosen config
//!   does not parse, or when no valid choice matches but some choice was
//!   invalid: one that is not an object, has a field not listed above, a
//!   field of the wrong type, a percentage that is not an integer from 0 to
//!   100, or no `serviceConfig` object. Such a choice is skipped, as gRFC A2
//!   says, and a later one can still be chosen; it is only reported when
//!   nothing is.

use std::{
    collections::hash_map::RandomState,
    future::Future,
    hash::{BuildHasher, Hasher},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6},
    pin::Pin,
    sync::OnceLock,
    time::Duration,
};

use hickory_resolver::{
    config::{LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts},
    name_server::TokioConnectionProvider,
    ResolveError, TokioResolver,
};
use serde_json::Value;
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};

use super::{target, Address, BuildOptions, Builder, Controller, Resolver, State, Target};
use crate::{
    backoff::{self, Backoff},
    serviceconfig::ServiceConfig,
};

/// How long after a resolution ends the next one requested with
/// [`Resolver::resolve_now`] may start, by default (gRPC-Go's
/// `MinResolutionInterval`).
pub const DEFAULT_MIN_RESOLUTION_INTERVAL: Duration = Duration::from_secs(30);

/// The longest one resolution may take before it counts as failed
/// (gRPC-Go's `ResolvingTimeout`).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(30);

/// The port of a DNS server named without one in a target's authority.
const DNS_PORT: u16 = 53;

/// The language name matched against a choice's `clientLanguage`.
const LANGUAGE: &str = "rust";

/// The prefix of the TXT record holding the service config (gRFC A2).
const TXT_PREFIX: &str = "grpc_config=";

/// The name prefix of the TXT record holding the service config (gRFC A2).
const TXT_NAME_PREFIX: &str = "_grpc_config.";

/// Builds `dns` resolvers (see the [module docs](self)).
///
/// Registered by default; register one with another minimum resolution
/// interval to change it for the channels created afterwards:
///
/// ```
/// use std::time::Duration;
/// use ferrogrpc::resolver::{self, dns::DnsBuilder};
///
/// resolver::register(DnsBuilder::new().with_min_resolution_interval(Duration::from_secs(5)));
/// ```
#[derive(Clone, Debug)]
pub struct DnsBuilder {
    min_resolution_interval: Duration,
    hosts_file: std::path::PathBuf,
}

impl Default for DnsBuilder {
    fn default() -> DnsBuilder {
        DnsBuilder {
            min_resolution_interval: DEFAULT_MIN_RESOLUTION_INTERVAL,
            hosts_file: std::path::PathBuf::from("/etc/hosts"),
        }
    }
}

impl DnsBuilder {
    /// A builder with the defaults: re-resolution at most every 30 s.
    pub fn new() -> DnsBuilder {
        DnsBuilder::default()
    }

    /// Sets how long after a resolution ends the next one asked for with
    /// [`Resolver::resolve_now`] may start ([`DEFAULT_MIN_RESOLUTION_INTERVAL`]
    /// unless set). Requests that come sooner are carried out together when
    /// the interval is over. Zero lets every request resolve at once.
    pub fn with_min_resolution_interval(mut self, interval: Duration) -> DnsBuilder {
        self.min_resolution_interval = interval;
        self
    }

    /// The hosts file consulted for `localhost` names (default
    /// `/etc/hosts`): the addresses it gives such a name are used, as the
    /// system's resolver does; a name it does not list is `127.0.0.1` and
    /// `::1` (RFC 6761).
    pub fn with_hosts_file(mut self, path: impl Into<std::path::PathBuf>) -> DnsBuilder {
        self.hosts_file = path.into();
        self
    }

    /// The minimum interval between resolutions asked for with
    /// [`Resolver::resolve_now`].
    pub fn min_resolution_interval(&self) -> Duration {
        self.min_resolution_interval
    }
}

impl Builder for DnsBuilder {
    fn scheme(&self) -> &str {
        "dns"
    }

    /// Accepts `host`, `host:port`, an IP address with an optional port, and
    /// an authority that is empty or an IP address with an optional port.
    fn check_target(&self, target: &Target) -> Result<(), String> {
        let parsed = ParsedTarget::new(target)?;
        if let Some(Err(reason)) = ip_literal(&parsed.host, parsed.port) {
            return Err(reason);
        }
        Ok(())
    }

    fn build(
        &self,
        target: &Target,
        controller: Controller,
        options: BuildOptions,
    ) -> Result<Box<dyn Resolver>, String> {
        let parsed = ParsedTarget::new(target)?;
        if let Some(literal) = ip_literal(&parsed.host, parsed.port) {
            let addr = literal?;
            controller.update_state(State::new([addr]));
            return Ok(Box::new(LiteralResolver));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the dns resolver needs a tokio runtime".to_string())?;
        let lookup = HickoryLookup::new(parsed.server);
        // RFC 6761: `localhost` names are never sent to DNS servers, so
        // there is no TXT record to ask for (and no reason to wait on a
        // server that may be unreachable).
        let host = parsed.host.trim_end_matches('.').to_ascii_lowercase();
        let local = host == "localhost" || host.ends_with(".localhost");
        let settings = Settings {
            host: parsed.host,
            port: parsed.port,
            service_config: !options.disable_service_config && !local,
            min_interval: self.min_resolution_interval,
            client_hostname: None,
        };
        let backoff = Backoff::new(backoff::Config::default());
        if local {
            let lookup = LocalLookup {
                hosts_file: self.hosts_file.clone(),
            };
            return Ok(Box::new(start(
                &runtime, lookup, settings, backoff, controller,
            )));
        }
        Ok(Box::new(start(
            &runtime, lookup, settings, backoff, controller,
        )))
    }
}

/// What a `dns` target names.
#[derive(Debug)]
struct ParsedTarget {
    /// Without brackets; an IPv6 zone is kept.
    host: String,
    port: u16,
    /// The DNS server of the authority, if any.
    server: Option<SocketAddr>,
}

impl ParsedTarget {
    fn new(target: &Target) -> Result<ParsedTarget, String> {
        let (host, port) = target::split_host_port(target.endpoint(), target::DEFAULT_PORT)
            .map_err(|e| e.to_string())?;
        let server = dns_server(target.authority())?;
        Ok(ParsedTarget { host, port, server })
    }
}

/// The DNS server a target's authority names: none for an empty authority,
/// else `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port`.
fn dns_server(authority: &str) -> Result<Option<SocketAddr>, String> {
    if authority.is_empty() {
        return Ok(None);
    }
    let fail = |why: &str| {
        format!(
            "the authority of a dns target names the DNS server to use, as an IP address \
             with an optional port (dns://8.8.8.8:53/example.com); {authority:?} {why}"
        )
    };
    if authority.contains('@') {
        return Err(fail("has user info"));
    }
    let (host, port) = target::split_host_port(authority, DNS_PORT)
        .map_err(|e| fail(&format!("is malformed: {}", e.reason())))?;
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(Some(SocketAddr::new(ip, port))),
        Err(_) => Err(fail(
            "is not an IP address (host names are not supported there)",
        )),
    }
}

/// The socket address of a host that is an IP address: `None` for a host
/// name, an error for an IPv6 address with a zone that names no interface.
fn ip_literal(host: &str, port: u16) -> Option<Result<Address, String>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(Ok(Address::Tcp(SocketAddr::new(ip, port))));
    }
    let (addr, zone) = host.split_once('%')?;
    let ip = addr.parse::<Ipv6Addr>().ok()?;
    Some(scope_id(zone).map(|scope| Address::Tcp(SocketAddrV6::new(ip, port, 0, scope).into())))
}

/// The interface index an IPv6 zone names: a number, or (on Linux) the
/// name of a network interface.
fn scope_id(zone: &str) -> Result<u32, String> {
    if let Ok(index) = zone.parse::<u32>() {
        return Ok(index);
    }
    let unknown = || format!("the IPv6 zone {zone:?} names no network interface");
    let plain = !zone.is_empty()
        && zone != "."
        && zone != ".."
        && zone
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !plain {
        return Err(unknown());
    }
    std::fs::read_to_string(format!("/sys/class/net/{zone}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .ok_or_else(unknown)
}

/// The resolver of an IP literal: it reported its one address when built.
struct LiteralResolver;

impl Resolver for LiteralResolver {}

/// The resolver of a host name: a task that resolves, and a way to poke it.
struct DnsResolver {
    /// Holds at most one pending request, so requests coalesce.
    resolve_now: mpsc::Sender<()>,
    task: JoinHandle<()>,
}

impl Resolver for DnsResolver {
    fn resolve_now(&mut self) {
        // A full channel already holds a request; a closed one, a task that
        // has stopped. Either way there is nothing to add.
        let _ = self.resolve_now.try_send(());
    }
}

impl Drop for DnsResolver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The future of a lookup.
type LookupFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// The DNS queries the resolver makes; tests put a fake in.
trait Lookup: Send + Sync + 'static {
    /// The IPv4 and IPv6 addresses of `host`, or why there are none.
    fn ips<'a>(&'a self, host: &'a str) -> LookupFuture<'a, Vec<IpAddr>>;
    /// The TXT records of `name`, each record's strings concatenated.
    fn txt<'a>(&'a self, name: &'a str) -> LookupFuture<'a, Vec<String>>;
}

/// Lookups of `localhost` names: the hosts file's addresses for the name,
/// as the system's resolver gives them (a host that maps `localhost` to
/// `127.0.0.1` alone does not get `::1` tried first), else `127.0.0.1` and
/// `::1` (RFC 6761). Nothing is sent to a DNS server.
struct LocalLookup {
    hosts_file: std::path::PathBuf,
}

impl Lookup for LocalLookup {
    fn ips<'a>(&'a self, host: &'a str) -> LookupFuture<'a, Vec<IpAddr>> {
        Box::pin(async move {
            // A small local file, as the C library reads it on each lookup.
            let listed = std::fs::read_to_string(&self.hosts_file)
                .map(|text| hosts_file_addresses(&text, host))
                .unwrap_or_default();
            if listed.is_empty() {
                Ok(vec![
                    IpAddr::from([127, 0, 0, 1]),
                    IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                ])
            } else {
                Ok(listed)
            }
        })
    }

    fn txt<'a>(&'a self, _name: &'a str) -> LookupFuture<'a, Vec<String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// The addresses a hosts file (`IP name [alias…]` lines, `#` comments)
/// gives `host`, in file order.
fn hosts_file_addresses(text: &str, host: &str) -> Vec<IpAddr> {
    let host = host.trim_end_matches('.');
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if fields.any(|name| name.trim_end_matches('.').eq_ignore_ascii_case(host))
            && !found.contains(&ip)
        {
            found.push(ip);
        }
    }
    found
}

/// Lookups through hickory-resolver.
struct HickoryLookup {
    server: Option<SocketAddr>,
    /// Made on first use, on the resolver's task: making it reads the
    /// system configuration and the hosts file.
    resolver: OnceLock<TokioResolver>,
}

impl HickoryLookup {
    fn new(server: Option<SocketAddr>) -> HickoryLookup {
        HickoryLookup {
            server,
            resolver: OnceLock::new(),
        }
    }

    fn resolver(&self) -> &TokioResolver {
        self.resolver.get_or_init(|| make_resolver(self.server))
    }
}

/// A hickory resolver for the system configuration, or for `server` (with
/// the system's search domains and options).
fn make_resolver(server: Option<SocketAddr>) -> TokioResolver {
    let (config, mut options) = match hickory_resolver::system_conf::read_system_conf() {
        Ok(system) => system,
        Err(e) => {
            tracing::debug!(
                "dns resolver: cannot read the system DNS configuration ({e}); \
                 asking 127.0.0.1 and ::1 port 53"
            );
            let local = [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ];
            let servers = NameServerConfigGroup::from_ips_clear(&local, DNS_PORT, false);
            (
                ResolverConfig::from_parts(None, vec![], servers),
                ResolverOpts::default(),
            )
        }
    };
    let config = match server {
        None => config,
        Some(server) => ResolverConfig::from_parts(
            config.domain().cloned(),
            config.search().to_vec(),
            NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true),
        ),
    };
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.use_hosts_file = ResolveHosts::Always;
    // No cache: each resolution asks again, as gRPC-Go's resolver does.
    options.positive_max_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(Duration::ZERO);
    TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(options)
        .build()
}

/// Why a lookup failed, in a few words.
fn describe(error: &ResolveError) -> String {
    if error.is_nx_domain() {
        "no such host".to_string()
    } else if error.is_no_records_found() {
        "no records found".to_string()
    } else {
        error.to_string()
    }
}

impl Lookup for HickoryLookup {
    fn ips<'a>(&'a self, host: &'a str) -> LookupFuture<'a, Vec<IpAddr>> {
        Box::pin(async move {
            match self.resolver().lookup_ip(host).await {
                Ok(found) => Ok(found.iter().collect()),
                Err(e) => Err(describe(&e)),
            }
        })
    }

    fn txt<'a>(&'a self, name: &'a str) -> LookupFuture<'a, Vec<String>> {
        Box::pin(async move {
            match self.resolver().txt_lookup(name).await {
                Ok(found) => Ok(found
                    .iter()
                    .map(|txt| {
                        let bytes: Vec<u8> = txt.iter().flat_map(|s| s.iter().copied()).collect();
                        String::from_utf8_lossy(&bytes).into_owned()
                    })
                    .collect()),
                Err(e) => Err(describe(&e)),
            }
        })
    }
}

/// What the resolver task resolves and how.
struct Settings {
    host: String,
    port: u16,
    /// Whether to look up the `_grpc_config` TXT record.
    service_config: bool,
    min_interval: Duration,
    /// This machine's name for `clientHostname`; read from the system when
    /// `None`.
    client_hostname: Option<String>,
}

/// Starts the resolver task on `runtime`.
fn start(
    runtime: &tokio::runtime::Handle,
    lookup: impl Lookup,
    settings: Settings,
    backoff: Backoff,
    controller: Controller,
) -> DnsResolver {
    let (tx, rx) = mpsc::channel(1);
    let task = runtime.spawn(crate::logging::fallback(run(
        lookup, settings, backoff, controller, rx,
    )));
    DnsResolver {
        resolve_now: tx,
        task,
    }
}

/// `at + d`, or `at` if that overflows (only for absurd intervals).
fn after(at: Instant, d: Duration) -> Instant {
    at.checked_add(d).unwrap_or(at)
}

/// The resolver task: resolve, report, wait (see the module docs), again.
async fn run(
    lookup: impl Lookup,
    mut settings: Settings,
    mut backoff: Backoff,
    controller: Controller,
    mut requests: mpsc::Receiver<()>,
) {
    if settings.service_config && settings.client_hostname.is_none() {
        settings.client_hostname = system_hostname();
    }
    loop {
        if controller.is_closed() {
            return;
        }
        backoff.start(Instant::now());
        let result = resolve_once(&lookup, &settings).await;
        if controller.is_closed() {
            return;
        }
        let finished = Instant::now();
        let next_allowed = after(finished, settings.min_interval);
        match result {
            Ok(state) => {
                backoff.reset();
                controller.update_state(state);
                if requests.recv().await.is_none() {
                    return;
                }
                tokio::time::sleep_until(next_allowed).await;
            }
            Err(message) => {
                tracing::debug!("{message}");
                controller.report_error(message);
                let retry_at = backoff.retry_at(finished);
                tokio::select! {
                    () = tokio::time::sleep_until(retry_at) => {}
                    request = requests.recv() => {
                        if request.is_none() {
                            return;
                        }
                        tokio::time::sleep_until(retry_at.min(next_allowed)).await;
                    }
                }
            }
        }
        // Requests that came while waiting are served by this resolution.
        while requests.try_recv().is_ok() {}
    }
}

/// One resolution: the addresses (or why there are none) and, if wanted,
/// the service config.
async fn resolve_once(lookup: &impl Lookup, settings: &Settings) -> Result<State, String> {
    let host = settings.host.as_str();
    let txt_name = format!("{TXT_NAME_PREFIX}{host}");
    let ips = tokio::time::timeout(RESOLVE_TIMEOUT, lookup.ips(host));
    let txt = async {
        if !settings.service_config {
            return None;
        }
        match tokio::time::timeout(RESOLVE_TIMEOUT, lookup.txt(&txt_name)).await {
            Ok(Ok(records)) => Some(records),
            Ok(Err(e)) => {
                tracing::debug!(
                    "dns resolver: no service config for {host:?}: TXT lookup of {txt_name:?}: {e}"
                );
                None
            }
            Err(_) => {
                tracing::debug!("dns resolver: no service config for {host:?}: TXT lookup of {txt_name:?} timed out");
                None
            }
        }
    };
    let (ips, txt) = tokio::join!(ips, txt);
    let ips = match ips {
        Ok(Ok(ips)) => ips,
        Ok(Err(cause)) => return Err(format!("dns: cannot resolve {host:?}: {cause}")),
        Err(_) => {
            return Err(format!(
                "dns: cannot resolve {host:?}: no answer within {RESOLVE_TIMEOUT:?}"
            ))
        }
    };
    let addresses = order_addresses(ips, settings.port);
    if addresses.is_empty() {
        return Err(format!("dns: cannot resolve {host:?}: no addresses found"));
    }
    let mut state = State::new(addresses);
    if let Some(records) = txt {
        state.service_config = service_config(
            &records,
            LANGUAGE,
            settings.client_hostname.as_deref(),
            random_percent(),
        );
        if let Some(Err(reason)) = &state.service_config {
            tracing::warn!("dns resolver: invalid service config for {host:?}: {reason}");
        }
    }
    Ok(state)
}

/// IPv4 addresses first, then IPv6, each in the given order, without
/// duplicates, with `port`.
fn order_addresses(ips: Vec<IpAddr>, port: u16) -> Vec<SocketAddr> {
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = ips.into_iter().partition(IpAddr::is_ipv4);
    let mut addresses: Vec<SocketAddr> = Vec::with_capacity(v4.len() + v6.len());
    for ip in v4.into_iter().chain(v6) {
        let addr = SocketAddr::new(ip, port);
        if !addresses.contains(&addr) {
            addresses.push(addr);
        }
    }
    addresses
}

/// This machine's host name, if the system says.
fn system_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// A number from 0 to 99, at random (not for cryptography): std's
/// per-call random hash keys over the clock.
fn random_percent() -> u32 {
    let mut hasher = RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    // The remainder is below 100, so it fits.
    (hasher.finish() % 100) as u32
}

/// The service config the TXT records give this client (see the
/// [module docs](self#service-config)): [`select_choice`], then parsed.
pub(crate) fn service_config(
    records: &[String],
    language: &str,
    hostname: Option<&str>,
    draw: u32,
) -> Option<Result<ServiceConfig, String>> {
    match select_choice(records, language, hostname, draw) {
        Ok(None) => None,
        Err(reason) => Some(Err(reason)),
        Ok(Some(config)) => {
            Some(ServiceConfig::parse(&config.to_string()).map_err(|e| {
                format!("the service config chosen from the TXT record is invalid: {e}")
            }))
        }
    }
}

/// The `serviceConfig` object of the first choice, in the `grpc_config=`
/// TXT record among `records`, that matches a client in `language` on
/// machine `hostname` that drew `draw` (0 to 99) for the percentage.
///
/// `Ok(None)` when there is no such record or no choice matches; an error
/// when the record is unusable, or when nothing matches and some choice
/// was invalid.
fn select_choice(
    records: &[String],
    language: &str,
    hostname: Option<&str>,
    draw: u32,
) -> Result<Option<Value>, String> {
    let mut configs = records.iter().filter_map(|r| r.strip_prefix(TXT_PREFIX));
    let Some(json) = configs.next() else {
        return Ok(None);
    };
    if configs.any(|other| other != json) {
        return Err(format!(
            "several different {TXT_PREFIX} TXT records exist; there must be one"
        ));
    }
    let parsed: Value = serde_json::from_str(json)
        .map_err(|e| format!("the {TXT_PREFIX} TXT record is not valid JSON: {e}"))?;
    let Value::Array(choices) = parsed else {
        return Err(format!(
            "the {TXT_PREFIX} TXT record is not a JSON array of choices"
        ));
    };
    let mut first_invalid = None;
    for (index, choice) in choices.into_iter().enumerate() {
        match check_choice(choice) {
            Ok(choice) => {
                if choice.matches(language, hostname, draw) {
                    return Ok(Some(choice.config));
                }
            }
            Err(reason) => {
                tracing::debug!("dns resolver: service config choice {index} is invalid: {reason}");
                first_invalid.get_or_insert(format!(
                    "service config choice {index} in the {TXT_PREFIX} TXT record is invalid: {reason}"
                ));
            }
        }
    }
    match first_invalid {
        Some(reason) => Err(reason),
        None => Ok(None),
    }
}

/// A valid service config choice.
struct Choice {
    /// Empty when absent.
    languages: Vec<String>,
    percentage: Option<u32>,
    /// Empty when absent.
    hostnames: Vec<String>,
    /// An object.
    config: Value,
}

impl Choice {
    fn matches(&self, language: &str, hostname: Option<&str>, draw: u32) -> bool {
        let language_ok = self.languages.is_empty()
            || self
                .languages
                .iter()
                .any(|l| l.eq_ignore_ascii_case(language));
        let percentage_ok = self.percentage.is_none_or(|p| draw < p);
        let hostname_ok = self.hostnames.is_empty()
            || hostname.is_some_and(|h| self.hostnames.iter().any(|n| n == h));
        language_ok && percentage_ok && hostname_ok
    }
}

/// A choice, checked as gRFC A2 says: an object with only the known
/// fields, each of its type, and a `serviceConfig` object. A `null` field
/// counts as absent.
fn check_choice(choice: Value) -> Result<Choice, String> {
    let Value::Object(fields) = choice else {
        return Err("it is not a JSON object".to_string());
    };
    let mut checked = Choice {
        languages: Vec::new(),
        percentage: None,
        hostnames: Vec::new(),
        config: Value::Null,
    };
    for (name, value) in fields {
        if value.is_null() {
            continue;
        }
        match name.as_str() {
            "clientLanguage" => checked.languages = strings(&name, value)?,
            "clientHostname" => checked.hostnames = strings(&name, value)?,
            "percentage" => {
                let p = value
                    .as_u64()
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| format!("percentage {value} is not an integer from 0 to 100"))?;
                // At most 100, so it fits.
                checked.percentage = Some(p as u32);
            }
            "serviceConfig" => {
                if !value.is_object() {
                    return Err("serviceConfig is not a JSON object".to_string());
                }
                checked.config = value;
            }
            _ => return Err(format!("it has the unknown field {name:?}")),
        }
    }
    if checked.config.is_null() {
        return Err("it has no serviceConfig".to_string());
    }
    Ok(checked)
}

/// A field that must be a list of strings.
fn strings(name: &str, value: Value) -> Result<Vec<String>, String> {
    let not_strings = || format!("{name} is not a list of strings");
    let Value::Array(items) = value else {
        return Err(not_strings());
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(s) => Ok(s),
            _ => Err(not_strings()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::testing::{recorder, Report};
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    };

    fn parse_target(s: &str) -> Target {
        target::parse(s, |scheme| scheme == "dns").unwrap()
    }

    fn addrs(state: &State) -> Vec<String> {
        state.addresses.iter().map(|a| a.to_string()).collect()
    }

    /// The next report, within 5 s (of the real clock, or of a paused one:
    /// long enough for the tests that use the real resolver).
    async fn next_report(rx: &mut mpsc::UnboundedReceiver<Report>) -> Report {
        report_within(rx, Duration::from_secs(5)).await
    }

    async fn report_within(rx: &mut mpsc::UnboundedReceiver<Report>, limit: Duration) -> Report {
        tokio::time::timeout(limit, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no report within {limit:?}"))
            .expect("the resolver stopped")
    }

    // ---- targets and literals ----

    #[test]
    fn check_target_accepts_hosts_and_ip_authorities() {
        let b = DnsBuilder::default();
        for ok in [
            "localhost:50051",
            "dns:///example.com",
            "dns:example.com:80",
            "dns://8.8.8.8/example.com",
            "dns://8.8.8.8:5353/example.com",
            "dns://[2001:4860:4860::8888]/example.com",
            "dns://[::1]:53/example.com:8080",
            "dns:///[::1]:50051",
            "dns:///1.2.3.4",
        ] {
            assert_eq!(b.check_target(&parse_target(ok)), Ok(()), "{ok}");
        }
    }

    #[test]
    fn check_target_rejects_host_name_authorities() {
        let b = DnsBuilder::default();
        let err = b
            .check_target(&parse_target("dns://dns.google/example.com"))
            .unwrap_err();
        assert!(
            err.contains("\"dns.google\"") && err.contains("not an IP address"),
            "{err}"
        );
        let err = b
            .check_target(&parse_target("dns://dns.google:53/example.com"))
            .unwrap_err();
        assert!(err.contains("not an IP address"), "{err}");
        let err = b
            .check_target(&parse_target("dns://user@8.8.8.8/example.com"))
            .unwrap_err();
        assert!(err.contains("user info"), "{err}");
        // The builder refuses it too.
        let (controller, _rx) = recorder();
        assert!(b
            .build(
                &parse_target("dns://dns.google/x"),
                controller,
                BuildOptions::default()
            )
            .is_err());
    }

    #[test]
    fn dns_server_parsing() {
        assert_eq!(dns_server(""), Ok(None));
        assert_eq!(
            dns_server("8.8.8.8"),
            Ok(Some("8.8.8.8:53".parse().unwrap()))
        );
        assert_eq!(
            dns_server("[::1]:5353"),
            Ok(Some("[::1]:5353".parse().unwrap()))
        );
        assert!(dns_server("8.8.8.8:0").is_err());
        assert!(dns_server("8.8.8.8:").is_err());
    }

    #[test]
    fn ip_literals_report_at_once() {
        for (target, want) in [
            ("dns:///1.2.3.4:80", "1.2.3.4:80"),
            ("1.2.3.4", "1.2.3.4:443"),
            ("dns:///[::1]:50051", "[::1]:50051"),
            ("dns:///::1", "[::1]:443"),
            ("dns:///[2001:db8::5]", "[2001:db8::5]:443"),
            ("dns://8.8.8.8/10.0.0.1:9", "10.0.0.1:9"),
        ] {
            let (controller, mut rx) = recorder();
            // No runtime: nothing is spawned for a literal.
            let mut resolver = DnsBuilder::default()
                .build(&parse_target(target), controller, BuildOptions::default())
                .unwrap();
            match rx.try_recv() {
                Ok(Report::Update(state)) => {
                    assert_eq!(addrs(&state), [want], "{target}");
                    assert!(state.service_config.is_none());
                }
                other => panic!("{target}: {other:?}"),
            }
            resolver.resolve_now();
            assert!(rx.try_recv().is_err(), "{target}: resolve_now is a no-op");
        }
    }

    #[test]
    fn ipv6_zones() {
        let Some(Ok(Address::Tcp(SocketAddr::V6(a)))) = ip_literal("fe80::1%3", 80) else {
            panic!("numeric zone");
        };
        assert_eq!((a.scope_id(), a.port()), (3, 80));
        if let Ok(index) = std::fs::read_to_string("/sys/class/net/lo/ifindex") {
            let Some(Ok(Address::Tcp(SocketAddr::V6(a)))) = ip_literal("fe80::1%lo", 80) else {
                panic!("named zone");
            };
            assert_eq!(a.scope_id(), index.trim().parse::<u32>().unwrap());
        }
        for bad in ["fe80::1%no-such-if0", "fe80::1%..", "fe80::1%a/b"] {
            assert!(matches!(ip_literal(bad, 80), Some(Err(_))), "{bad}");
        }
        assert!(ip_literal("example.com", 80).is_none());
        let err = DnsBuilder::default()
            .check_target(&parse_target("dns:///[fe80::1%25no-such-if0]:80"))
            .unwrap_err();
        assert!(err.contains("no-such-if0"), "{err}");
    }

    #[test]
    fn addresses_are_ordered_v4_first_without_duplicates() {
        let ips: Vec<IpAddr> = ["::1", "10.0.0.2", "::2", "10.0.0.1", "10.0.0.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let got: Vec<String> = order_addresses(ips, 7)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(got, ["10.0.0.2:7", "10.0.0.1:7", "[::1]:7", "[::2]:7"]);
    }

    // ---- TXT choice selection ----

    fn select(
        records: &[&str],
        hostname: Option<&str>,
        draw: u32,
    ) -> Result<Option<Value>, String> {
        let records: Vec<String> = records.iter().map(|s| s.to_string()).collect();
        select_choice(&records, "rust", hostname, draw)
    }

    fn lb(config: Option<Value>) -> Option<String> {
        config.map(|c| c["loadBalancingPolicy"].as_str().unwrap().to_string())
    }

    #[test]
    fn txt_without_grpc_config_gives_nothing() {
        assert_eq!(select(&[], None, 0), Ok(None));
        assert_eq!(select(&["v=spf1 -all", "grpc_config"], None, 0), Ok(None));
        assert_eq!(select(&["grpc_config=[]"], None, 0), Ok(None));
    }

    #[test]
    fn first_matching_choice_wins() {
        let record = r#"grpc_config=[
            {"clientLanguage": ["go", "java"], "serviceConfig": {"loadBalancingPolicy": "a"}},
            {"clientLanguage": ["C++", "RUST"], "serviceConfig": {"loadBalancingPolicy": "b"}},
            {"serviceConfig": {"loadBalancingPolicy": "c"}}
        ]"#;
        assert_eq!(lb(select(&[record], None, 0).unwrap()), Some("b".into()));
        // Other records around it are ignored.
        assert_eq!(
            lb(select(&["v=spf1 -all", record, "hello"], None, 0).unwrap()),
            Some("b".into())
        );
        // An empty language list matches everyone.
        let record = r#"grpc_config=[{"clientLanguage": [], "serviceConfig": {"loadBalancingPolicy": "x"}}]"#;
        assert_eq!(lb(select(&[record], None, 0).unwrap()), Some("x".into()));
    }

    #[test]
    fn language_mismatch_gives_nothing() {
        let record = r#"grpc_config=[{"clientLanguage": ["go"], "serviceConfig": {}}]"#;
        assert_eq!(select(&[record], None, 0), Ok(None));
    }

    #[test]
    fn percentage() {
        let record = |p: u32| {
            format!(
                r#"grpc_config=[{{"percentage": {p}, "serviceConfig": {{"loadBalancingPolicy": "p"}}}}, {{"serviceConfig": {{"loadBalancingPolicy": "rest"}}}}]"#
            )
        };
        for draw in [0, 50, 99] {
            assert_eq!(
                lb(select(&[&record(0)], None, draw).unwrap()),
                Some("rest".into())
            );
            assert_eq!(
                lb(select(&[&record(100)], None, draw).unwrap()),
                Some("p".into())
            );
        }
        assert_eq!(
            lb(select(&[&record(30)], None, 29).unwrap()),
            Some("p".into())
        );
        assert_eq!(
            lb(select(&[&record(30)], None, 30).unwrap()),
            Some("rest".into())
        );
        // Out of range or not an integer: the choice is invalid and skipped.
        for bad in ["101", "-1", "50.5", "\"50\""] {
            let r = format!(
                r#"grpc_config=[{{"percentage": {bad}, "serviceConfig": {{"loadBalancingPolicy": "p"}}}}, {{"serviceConfig": {{"loadBalancingPolicy": "rest"}}}}]"#
            );
            assert_eq!(
                lb(select(&[&r], None, 0).unwrap()),
                Some("rest".into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn hostname() {
        let record = r#"grpc_config=[{"clientHostname": ["db1", "Web7"], "serviceConfig": {"loadBalancingPolicy": "h"}}]"#;
        assert_eq!(
            lb(select(&[record], Some("web7"), 0).unwrap()),
            None,
            "case sensitive"
        );
        assert_eq!(
            lb(select(&[record], Some("Web7"), 0).unwrap()),
            Some("h".into())
        );
        assert_eq!(lb(select(&[record], None, 0).unwrap()), None);
        let record = r#"grpc_config=[{"clientHostname": [], "serviceConfig": {"loadBalancingPolicy": "h"}}]"#;
        assert_eq!(lb(select(&[record], None, 0).unwrap()), Some("h".into()));
    }

    #[test]
    fn all_criteria_must_match() {
        let record = r#"grpc_config=[{"clientLanguage": ["rust"], "percentage": 50, "clientHostname": ["me"], "serviceConfig": {"loadBalancingPolicy": "all"}}]"#;
        assert_eq!(
            lb(select(&[record], Some("me"), 10).unwrap()),
            Some("all".into())
        );
        assert_eq!(select(&[record], Some("me"), 60), Ok(None));
        assert_eq!(select(&[record], Some("you"), 10), Ok(None));
    }

    #[test]
    fn malformed_json_is_an_error() {
        for bad in [
            "grpc_config=",
            "grpc_config=[{",
            "grpc_config={\"serviceConfig\": {}}",
            "grpc_config=\"x\"",
        ] {
            assert!(select(&[bad], None, 0).is_err(), "{bad}");
        }
        let err = select(&["grpc_config=[{"], None, 0).unwrap_err();
        assert!(err.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn invalid_choices_are_skipped_and_reported_when_nothing_matches() {
        for (choice, why) in [
            (r#"{"serviceConfig": {}, "colour": "red"}"#, "unknown field"),
            (
                r#"{"clientLanguage": "rust", "serviceConfig": {}}"#,
                "clientLanguage is not a list",
            ),
            (
                r#"{"clientLanguage": [1], "serviceConfig": {}}"#,
                "clientLanguage is not a list",
            ),
            (
                r#"{"clientHostname": [true], "serviceConfig": {}}"#,
                "clientHostname is not a list",
            ),
            (
                r#"{"serviceConfig": []}"#,
                "serviceConfig is not a JSON object",
            ),
            (r#"{"percentage": 10}"#, "no serviceConfig"),
            (r#"[]"#, "not a JSON object"),
        ] {
            let alone = format!("grpc_config=[{choice}]");
            let err = select(&[&alone], None, 0).unwrap_err();
            assert!(
                err.contains(why) && err.contains("choice 0"),
                "{choice}: {err}"
            );
            // A later valid choice is still chosen...
            let then_valid = format!(
                r#"grpc_config=[{choice}, {{"serviceConfig": {{"loadBalancingPolicy": "ok"}}}}]"#
            );
            assert_eq!(
                lb(select(&[&then_valid], None, 0).unwrap()),
                Some("ok".into()),
                "{choice}"
            );
            // ...but an earlier valid one that does not match hides nothing.
            let none_match = format!(
                r#"grpc_config=[{{"clientLanguage": ["go"], "serviceConfig": {{}}}}, {choice}]"#
            );
            assert!(select(&[&none_match], None, 0)
                .unwrap_err()
                .contains("choice 1"));
        }
        // null counts as absent.
        let record = r#"grpc_config=[{"clientLanguage": null, "percentage": null, "serviceConfig": {"loadBalancingPolicy": "n"}}]"#;
        assert_eq!(lb(select(&[record], None, 0).unwrap()), Some("n".into()));
    }

    #[test]
    fn several_grpc_config_records() {
        let a = r#"grpc_config=[{"serviceConfig": {"loadBalancingPolicy": "a"}}]"#;
        let b = r#"grpc_config=[{"serviceConfig": {"loadBalancingPolicy": "b"}}]"#;
        // The same record twice is one record.
        assert_eq!(
            lb(select(&[a, "other", a], None, 0).unwrap()),
            Some("a".into())
        );
        let err = select(&[a, b], None, 0).unwrap_err();
        assert!(err.contains("several"), "{err}");
    }

    #[test]
    fn service_config_is_parsed() {
        let records = vec![
            r#"grpc_config=[{"serviceConfig": {"loadBalancingConfig": [{"round_robin": {}}]}}]"#
                .to_string(),
        ];
        let config = service_config(&records, "rust", None, 0).unwrap().unwrap();
        assert_eq!(config.load_balancing_config()[0].0, "round_robin");
        assert!(service_config(&["x".to_string()], "rust", None, 0).is_none());
        assert!(matches!(
            service_config(&["grpc_config=1".to_string()], "rust", None, 0),
            Some(Err(_))
        ));
    }

    #[test]
    fn random_percent_is_in_range_and_varies() {
        let draws: Vec<u32> = (0..200).map(|_| random_percent()).collect();
        assert!(draws.iter().all(|d| *d < 100));
        let mut distinct = draws.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 20, "{distinct:?}");
    }

    // ---- scheduling, with a fake lookup ----

    /// A lookup that counts its calls, fails its first `failures` calls,
    /// and then answers 10.0.0.1 (and the TXT records given).
    #[derive(Clone)]
    struct Fake {
        calls: Arc<Mutex<Vec<Instant>>>,
        failures: Arc<AtomicUsize>,
        txt: Vec<String>,
        txt_calls: Arc<AtomicUsize>,
        /// Alive as long as the task holds the lookup.
        alive: Arc<()>,
    }

    impl Fake {
        fn new(failures: usize) -> Fake {
            Fake {
                calls: Arc::default(),
                failures: Arc::new(AtomicUsize::new(failures)),
                txt: Vec::new(),
                txt_calls: Arc::default(),
                alive: Arc::new(()),
            }
        }

        fn calls(&self) -> Vec<Instant> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Lookup for Fake {
        fn ips<'a>(&'a self, host: &'a str) -> LookupFuture<'a, Vec<IpAddr>> {
            self.calls.lock().unwrap().push(Instant::now());
            let fail = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            Box::pin(async move {
                if fail {
                    Err(format!("no such host {host}"))
                } else {
                    Ok(vec!["10.0.0.1".parse().unwrap()])
                }
            })
        }

        fn txt<'a>(&'a self, _name: &'a str) -> LookupFuture<'a, Vec<String>> {
            self.txt_calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Ok(self.txt.clone()) })
        }
    }

    /// The next report, the clock being paused: it may be minutes away.
    async fn paused_report(rx: &mut mpsc::UnboundedReceiver<Report>) -> Report {
        report_within(rx, Duration::from_secs(1000)).await
    }

    fn settings(min_interval: Duration) -> Settings {
        Settings {
            host: "svc.example".into(),
            port: 8080,
            service_config: true,
            min_interval,
            client_hostname: Some("me".into()),
        }
    }

    fn no_jitter() -> Backoff {
        Backoff::with_rng(backoff::Config::default(), || 0.5)
    }

    fn spawn_fake(
        fake: &Fake,
        settings: Settings,
        backoff: Backoff,
    ) -> (DnsResolver, mpsc::UnboundedReceiver<Report>) {
        let (controller, rx) = recorder();
        let resolver = start(
            &tokio::runtime::Handle::current(),
            fake.clone(),
            settings,
            backoff,
            controller,
        );
        (resolver, rx)
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// `at` is `want` after `t0`, give or take a timer tick.
    fn at(t0: Instant, at: Instant, want: f64) -> bool {
        (at - t0).abs_diff(secs(want)) <= Duration::from_millis(2)
    }

    async fn expect_update(rx: &mut mpsc::UnboundedReceiver<Report>) -> State {
        match paused_report(rx).await {
            Report::Update(state) => state,
            other => panic!("expected an update, got {other:?}"),
        }
    }

    async fn quiet_for(rx: &mut mpsc::UnboundedReceiver<Report>, d: Duration) {
        if let Ok(report) = tokio::time::timeout(d, rx.recv()).await {
            panic!("unexpected report {report:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn resolves_once_then_only_when_asked() {
        let mut fake = Fake::new(0);
        fake.txt = vec![r#"grpc_config=[{"clientHostname": ["me"], "serviceConfig": {"loadBalancingPolicy": "round_robin"}}]"#.into()];
        let (_resolver, mut rx) = spawn_fake(&fake, settings(secs(30.0)), no_jitter());
        let state = expect_update(&mut rx).await;
        assert_eq!(addrs(&state), ["10.0.0.1:8080"]);
        assert!(matches!(state.service_config, Some(Ok(_))));
        quiet_for(&mut rx, secs(600.0)).await;
        assert_eq!(fake.calls().len(), 1);
        assert_eq!(fake.txt_calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn resolve_now_is_rate_limited_and_coalesced() {
        let fake = Fake::new(0);
        let t0 = Instant::now();
        let (mut resolver, mut rx) = spawn_fake(&fake, settings(secs(30.0)), no_jitter());
        expect_update(&mut rx).await;
        tokio::time::sleep(secs(5.0)).await;
        resolver.resolve_now();
        tokio::time::sleep(secs(5.0)).await;
        resolver.resolve_now();
        resolver.resolve_now();
        expect_update(&mut rx).await;
        let calls = fake.calls();
        assert_eq!(calls.len(), 2);
        assert!(at(t0, calls[1], 30.0), "{:?}", calls[1] - t0);
        quiet_for(&mut rx, secs(300.0)).await;
        assert_eq!(fake.calls().len(), 2, "the requests were served together");
        // Long after the last resolution, a request is served at once.
        let asked = Instant::now();
        resolver.resolve_now();
        expect_update(&mut rx).await;
        let calls = fake.calls();
        assert_eq!(calls.len(), 3);
        assert!(at(asked, calls[2], 0.0), "{:?}", calls[2] - asked);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_with_growing_delays() {
        let fake = Fake::new(5);
        let t0 = Instant::now();
        let (_resolver, mut rx) = spawn_fake(&fake, settings(secs(30.0)), no_jitter());
        for _ in 0..5 {
            match paused_report(&mut rx).await {
                Report::Error(message) => {
                    assert!(message.contains("\"svc.example\""), "{message}");
                    assert!(message.contains("no such host"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        let state = expect_update(&mut rx).await;
        assert_eq!(addrs(&state), ["10.0.0.1:8080"]);
        let calls = fake.calls();
        // 1 s, then 1.6 times longer each time (no jitter here).
        let want = [0.0, 1.0, 2.6, 5.16, 9.256, 15.8096];
        assert_eq!(calls.len(), want.len());
        for (call, want) in calls.iter().zip(want) {
            assert!(at(t0, *call, want), "{:?} vs {want}", *call - t0);
        }
        // After the success, no more resolutions unless asked.
        quiet_for(&mut rx, secs(600.0)).await;
        assert_eq!(fake.calls().len(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_starts_over_after_a_success() {
        let fake = Fake::new(2);
        let (mut resolver, mut rx) = spawn_fake(&fake, settings(secs(30.0)), no_jitter());
        for _ in 0..2 {
            assert!(matches!(paused_report(&mut rx).await, Report::Error(_)));
        }
        expect_update(&mut rx).await;
        fake.failures.store(2, Ordering::SeqCst);
        tokio::time::sleep(secs(60.0)).await;
        let t0 = Instant::now();
        resolver.resolve_now();
        for _ in 0..2 {
            assert!(matches!(paused_report(&mut rx).await, Report::Error(_)));
        }
        expect_update(&mut rx).await;
        let calls = fake.calls();
        assert_eq!(calls.len(), 6);
        for (call, want) in calls[3..].iter().zip([0.0, 1.0, 2.6]) {
            assert!(at(t0, *call, want), "{:?} vs {want}", *call - t0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn resolve_now_shortens_a_long_backoff() {
        let fake = Fake::new(1);
        let t0 = Instant::now();
        let backoff = Backoff::with_rng(
            backoff::Config::default().with_base_delay(secs(10.0)),
            || 0.5,
        );
        let (mut resolver, mut rx) = spawn_fake(&fake, settings(secs(2.0)), backoff);
        assert!(matches!(paused_report(&mut rx).await, Report::Error(_)));
        tokio::time::sleep(secs(0.5)).await;
        resolver.resolve_now();
        expect_update(&mut rx).await;
        let calls = fake.calls();
        assert_eq!(calls.len(), 2);
        // Not at 10 s (the backoff), but at the end of the 2 s interval.
        assert!(at(t0, calls[1], 2.0), "{:?}", calls[1] - t0);
    }

    #[tokio::test(start_paused = true)]
    async fn txt_is_skipped_when_service_configs_are_disabled() {
        let mut fake = Fake::new(0);
        fake.txt = vec![r#"grpc_config=[{"serviceConfig": {}}]"#.into()];
        let mut s = settings(secs(30.0));
        s.service_config = false;
        let (_resolver, mut rx) = spawn_fake(&fake, s, no_jitter());
        let state = expect_update(&mut rx).await;
        assert!(state.service_config.is_none());
        assert_eq!(fake.txt_calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_resolver_stops_the_task() {
        let fake = Fake::new(1_000_000);
        let (resolver, mut rx) = spawn_fake(&fake, settings(secs(30.0)), no_jitter());
        assert!(matches!(paused_report(&mut rx).await, Report::Error(_)));
        drop(resolver);
        // The task, its lookup and its controller are gone.
        assert!(tokio::time::timeout(secs(1.0), rx.recv())
            .await
            .unwrap()
            .is_none());
        assert_eq!(Arc::strong_count(&fake.alive), 1);
        let calls = fake.calls().len();
        tokio::time::sleep(secs(600.0)).await;
        assert_eq!(fake.calls().len(), calls);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_controller_stops_the_task() {
        let fake = Fake::new(0);
        let (mut resolver, mut rx) = spawn_fake(&fake, settings(secs(30.0)), no_jitter());
        expect_update(&mut rx).await;
        drop(rx);
        resolver.resolve_now();
        tokio::time::sleep(secs(60.0)).await;
        assert_eq!(fake.calls().len(), 1);
        assert_eq!(Arc::strong_count(&fake.alive), 1, "the task has ended");
    }

    // ---- the real resolver ----

    #[test]
    fn hosts_file_lines_are_read_as_the_c_library_reads_them() {
        let text = "# comment\n127.0.0.1\tlocalhost loopback # trailing\n\
                    ::1 ip6-localhost ip6-loopback\nbogus localhost\n\
                    10.0.0.1 other LOCALHOST.\n";
        assert_eq!(
            hosts_file_addresses(text, "localhost"),
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "10.0.0.1".parse().unwrap()
            ]
        );
        assert!(hosts_file_addresses(text, "nothere").is_empty());
    }

    /// A hosts file that maps localhost to 127.0.0.1 alone: `[::1]` is not
    /// tried (it would hide a real error behind "connection refused").
    #[tokio::test]
    async fn localhost_follows_the_hosts_file() {
        let dir = std::env::temp_dir().join(format!("ferrogrpc-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n::1 ip6-localhost\n").unwrap();
        let (controller, mut rx) = recorder();
        let _resolver = DnsBuilder::default()
            .with_hosts_file(&hosts)
            .build(
                &parse_target("localhost:50051"),
                controller,
                BuildOptions::default(),
            )
            .unwrap();
        match next_report(&mut rx).await {
            Report::Update(state) => assert_eq!(addrs(&state), ["127.0.0.1:50051"]),
            Report::Error(e) => panic!("{e}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn localhost_resolves_to_both_families() {
        let (controller, mut rx) = recorder();
        // A hosts file that does not list localhost: RFC 6761's two.
        let _resolver = DnsBuilder::default()
            .with_hosts_file("/nonexistent/hosts")
            .build(
                &parse_target("localhost:50051"),
                controller,
                BuildOptions::default(),
            )
            .unwrap();
        match next_report(&mut rx).await {
            Report::Update(state) => {
                assert_eq!(addrs(&state), ["127.0.0.1:50051", "[::1]:50051"]);
                assert!(state.service_config.is_none());
            }
            Report::Error(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn an_unresolvable_name_reports_an_error() {
        for target in ["dns:///nonexistent.invalid.:80", "nonexistent.invalid"] {
            let (controller, mut rx) = recorder();
            let _resolver = DnsBuilder::default()
                .build(&parse_target(target), controller, BuildOptions::default())
                .unwrap();
            match next_report(&mut rx).await {
                Report::Error(e) => {
                    assert!(e.contains("nonexistent.invalid"), "{e}");
                    assert!(e.contains("no such host"), "{e}");
                }
                Report::Update(state) => panic!("{target}: {state:?}"),
            }
        }
    }

    /// A DNS server on 127.0.0.1 (UDP) that knows `svc.test` (two A, one
    /// AAAA record) and the TXT records of `_grpc_config.svc.test` given,
    /// and answers NXDOMAIN for every other name. It counts TXT queries.
    async fn fake_dns_server(txt: Vec<Vec<&'static str>>) -> (SocketAddr, Arc<AtomicUsize>) {
        use hickory_resolver::proto::{
            op::{Message, MessageType, OpCode, ResponseCode},
            rr::{
                rdata::{A, AAAA, TXT},
                RData, Record, RecordType,
            },
        };
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let txt_queries = Arc::new(AtomicUsize::new(0));
        let counter = txt_queries.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut reply = Message::new();
                reply
                    .set_id(query.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(OpCode::Query)
                    .set_authoritative(true)
                    .set_recursion_desired(query.recursion_desired())
                    .set_recursion_available(true);
                for q in query.queries() {
                    reply.add_query(q.clone());
                    let name = q.name().clone();
                    let record = |data: RData| Record::from_rdata(name.clone(), 60, data);
                    match (
                        name.to_ascii().to_ascii_lowercase().as_str(),
                        q.query_type(),
                    ) {
                        ("svc.test.", RecordType::A) => {
                            reply.add_answer(record(RData::A(A::new(10, 1, 2, 3))));
                            reply.add_answer(record(RData::A(A::new(10, 1, 2, 4))));
                        }
                        ("svc.test.", RecordType::AAAA) => {
                            let ip: Ipv6Addr = "2001:db8::7".parse().unwrap();
                            reply.add_answer(record(RData::AAAA(AAAA::from(ip))));
                        }
                        ("_grpc_config.svc.test.", RecordType::TXT) => {
                            counter.fetch_add(1, Ordering::SeqCst);
                            for strings in &txt {
                                let strings = strings.iter().map(|s| s.to_string()).collect();
                                reply.add_answer(record(RData::TXT(TXT::new(strings))));
                            }
                        }
                        ("svc.test.", _) | ("_grpc_config.svc.test.", _) => {}
                        _ => {
                            reply.set_response_code(ResponseCode::NXDomain);
                        }
                    }
                }
                let _ = socket.send_to(&reply.to_vec().unwrap(), peer).await;
            }
        });
        (addr, txt_queries)
    }

    #[tokio::test]
    async fn a_dns_server_in_the_authority_is_asked() {
        let (server, txt_queries) = fake_dns_server(vec![
            vec!["v=spf1 -all"],
            // One record split over several strings.
            vec![
                r#"grpc_config=[{"clientLanguage": ["go"], "serviceConfig": {}},"#,
                r#" {"serviceConfig": {"loadBalancingConfig":"#,
                r#" [{"round_robin": {}}]}}]"#,
            ],
        ])
        .await;
        let (controller, mut rx) = recorder();
        let target = parse_target(&format!("dns://{server}/svc.test:9000"));
        DnsBuilder::default().check_target(&target).unwrap();
        let _resolver = DnsBuilder::default()
            .build(&target, controller, BuildOptions::default())
            .unwrap();
        match next_report(&mut rx).await {
            Report::Update(state) => {
                assert_eq!(
                    addrs(&state),
                    ["10.1.2.3:9000", "10.1.2.4:9000", "[2001:db8::7]:9000"]
                );
                let config = state.service_config.unwrap().unwrap();
                assert_eq!(config.load_balancing_config()[0].0, "round_robin");
            }
            Report::Error(e) => panic!("{e}"),
        }
        assert_eq!(txt_queries.load(Ordering::SeqCst), 1);

        // Nothing is cached: asking again (with no minimum interval) queries
        // the server again.
        let (controller, mut rx) = recorder();
        let mut resolver = DnsBuilder::new()
            .with_min_resolution_interval(Duration::ZERO)
            .build(&target, controller, BuildOptions::default())
            .unwrap();
        assert!(matches!(next_report(&mut rx).await, Report::Update(_)));
        resolver.resolve_now();
        assert!(matches!(next_report(&mut rx).await, Report::Update(_)));
        drop(resolver);
        assert_eq!(txt_queries.load(Ordering::SeqCst), 3);

        // Without service configs, no TXT query is made.
        let (controller, mut rx) = recorder();
        let options = BuildOptions {
            disable_service_config: true,
        };
        let _resolver = DnsBuilder::default()
            .build(&target, controller, options)
            .unwrap();
        match next_report(&mut rx).await {
            Report::Update(state) => {
                assert_eq!(state.addresses.len(), 3);
                assert!(state.service_config.is_none());
            }
            Report::Error(e) => panic!("{e}"),
        }
        assert_eq!(txt_queries.load(Ordering::SeqCst), 3);

        // An unknown name is an error naming it.
        let (controller, mut rx) = recorder();
        let target = parse_target(&format!("dns://{server}/missing.test."));
        let _resolver = DnsBuilder::default()
            .build(&target, controller, BuildOptions::default())
            .unwrap();
        match next_report(&mut rx).await {
            Report::Error(e) => assert!(
                e.contains("\"missing.test.\"") && e.contains("no such host"),
                "{e}"
            ),
            Report::Update(state) => panic!("{state:?}"),
        }
    }

    #[tokio::test]
    async fn a_bad_or_missing_txt_record_does_not_fail_resolution() {
        for (txt, want_err) in [
            (vec![], false),
            (vec![vec!["grpc_config=[{"]], true),
            (
                vec![vec![
                    r#"grpc_config=[{"clientHostname": ["nobody-here-0"], "serviceConfig": {}}]"#,
                ]],
                false,
            ),
        ] {
            let (server, _) = fake_dns_server(txt).await;
            let (controller, mut rx) = recorder();
            let target = parse_target(&format!("dns://{server}/svc.test"));
            let _resolver = DnsBuilder::default()
                .build(&target, controller, BuildOptions::default())
                .unwrap();
            match next_report(&mut rx).await {
                Report::Update(state) => {
                    assert_eq!(addrs(&state)[0], "10.1.2.3:443");
                    match state.service_config {
                        None => assert!(!want_err),
                        Some(Err(e)) => assert!(want_err && e.contains("not valid JSON"), "{e}"),
                        Some(Ok(c)) => panic!("{c:?}"),
                    }
                }
                Report::Error(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn build_outside_a_runtime_is_an_error_not_a_panic() {
        let (controller, _rx) = recorder();
        let result = DnsBuilder::default().build(
            &parse_target("example.com"),
            controller,
            BuildOptions::default(),
        );
        assert!(result.is_err());
    }
}
