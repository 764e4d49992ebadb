//! Credentials, as gRPC-Go's `credentials` package: what secures a
//! connection (transport credentials) and what authenticates each call
//! (per-RPC credentials).
//!
//! Transport credentials are named for what they are:
//! - [`ChannelCredentials::insecure`] / [`ServerCredentials::insecure`]:
//!   plaintext HTTP/2 (h2c). Nothing is protected.
//! - [`ChannelCredentials::local`] / [`ServerCredentials::local`]: plaintext,
//!   but only over Unix sockets and loopback TCP; anything else is refused.
//!   A Unix socket counts as private and integrity-protected (its peer is on
//!   this machine and the kernel carries the bytes); loopback TCP does not.
//! - [`ChannelCredentials::tls`] / [`ServerCredentials::tls`]: TLS 1.2/1.3
//!   with rustls, ALPN `h2` offered and required ([`tls`]).
//!
//! Per-RPC credentials ([`PerRpcCredentials`]) add metadata to each call,
//! e.g. a bearer token. By default they require a transport that protects
//! them ([`SecurityLevel::PrivacyAndIntegrity`]); a call that would send them
//! over plaintext fails with `UNAUTHENTICATED` unless the channel explicitly
//! allows it ([`ChannelBuilder::allow_insecure_per_rpc_credentials`](crate::client::ChannelBuilder::allow_insecure_per_rpc_credentials)).

pub mod tls;

use std::{fmt, future::Future, pin::Pin, sync::Arc};

use crate::{metadata::MetadataMap, status::Status};

/// How well a connection protects what it carries (gRPC-Go's
/// `credentials.SecurityLevel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SecurityLevel {
    /// Plaintext on a network path.
    NoSecurity,
    /// Integrity only (unused by the built-in credentials).
    IntegrityOnly,
    /// Confidentiality and integrity: TLS, or a Unix socket.
    PrivacyAndIntegrity,
}

/// What a server or client knows about how its peer authenticated.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AuthInfo {
    /// The connection is TLS.
    Tls(tls::TlsInfo),
    /// Local credentials: a Unix socket or loopback TCP.
    Local {
        /// The security level of the local connection.
        security_level: SecurityLevel,
    },
}

impl AuthInfo {
    /// The security level this connection gives.
    pub fn security_level(&self) -> SecurityLevel {
        match self {
            AuthInfo::Tls(_) => SecurityLevel::PrivacyAndIntegrity,
            AuthInfo::Local { security_level } => *security_level,
        }
    }

    /// The TLS details, when the connection is TLS.
    pub fn tls(&self) -> Option<&tls::TlsInfo> {
        match self {
            AuthInfo::Tls(info) => Some(info),
            AuthInfo::Local { .. } => None,
        }
    }
}

/// How a channel secures its connections.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum ChannelCredentials {
    /// Plaintext HTTP/2.
    #[default]
    Insecure,
    /// Plaintext, to Unix sockets and loopback addresses only.
    Local,
    /// TLS.
    Tls(tls::ClientTlsConfig),
}

impl ChannelCredentials {
    /// Plaintext HTTP/2: nothing is protected.
    pub fn insecure() -> ChannelCredentials {
        ChannelCredentials::Insecure
    }

    /// Plaintext to Unix sockets and loopback addresses only; connecting
    /// anywhere else fails with `UNAVAILABLE`.
    pub fn local() -> ChannelCredentials {
        ChannelCredentials::Local
    }

    /// TLS with `config`.
    pub fn tls(config: tls::ClientTlsConfig) -> ChannelCredentials {
        ChannelCredentials::Tls(config)
    }
}

impl fmt::Debug for ChannelCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelCredentials::Insecure => f.write_str("Insecure"),
            ChannelCredentials::Local => f.write_str("Local"),
            ChannelCredentials::Tls(c) => f.debug_tuple("Tls").field(c).finish(),
        }
    }
}

/// How a server secures the connections it accepts.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum ServerCredentials {
    /// Plaintext HTTP/2.
    #[default]
    Insecure,
    /// Plaintext, from Unix sockets and loopback addresses only; other
    /// connections are closed at once.
    Local,
    /// TLS.
    Tls(tls::ServerTlsConfig),
}

impl ServerCredentials {
    /// Plaintext HTTP/2: nothing is protected.
    pub fn insecure() -> ServerCredentials {
        ServerCredentials::Insecure
    }

    /// Plaintext from Unix sockets and loopback addresses only.
    pub fn local() -> ServerCredentials {
        ServerCredentials::Local
    }

    /// TLS with `config`.
    pub fn tls(config: tls::ServerTlsConfig) -> ServerCredentials {
        ServerCredentials::Tls(config)
    }
}

impl fmt::Debug for ServerCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerCredentials::Insecure => f.write_str("Insecure"),
            ServerCredentials::Local => f.write_str("Local"),
            ServerCredentials::Tls(c) => f.debug_tuple("Tls").field(c).finish(),
        }
    }
}

/// What per-RPC credentials are told about the call they authenticate.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct RequestInfo<'a> {
    /// The full method, `/package.Service/Method`.
    pub method: &'a str,
    /// The `:authority` of the call.
    pub authority: &'a str,
    /// The security level of the connection the call goes on.
    pub security_level: SecurityLevel,
}

/// The future returned by [`PerRpcCredentials::request_metadata`].
pub type MetadataFuture<'a> =
    Pin<Box<dyn Future<Output = Result<MetadataMap, Status>> + Send + 'a>>;

/// Credentials that add metadata to each call, such as an OAuth token
/// (gRPC-Go's `credentials.PerRPCCredentials`).
///
/// `request_metadata` runs for every call before it is sent, so it may fetch
/// or refresh a token; it should cache what it can. An error fails the call
/// with the returned status.
pub trait PerRpcCredentials: Send + Sync + 'static {
    /// The metadata to add to the call described by `info`.
    fn request_metadata<'a>(&'a self, info: RequestInfo<'a>) -> MetadataFuture<'a>;

    /// Whether the metadata may only travel over a connection with
    /// [`SecurityLevel::PrivacyAndIntegrity`]. Default `true`.
    fn require_transport_security(&self) -> bool {
        true
    }
}

/// A bearer token sent as `authorization: Bearer <token>` on every call.
#[derive(Clone)]
pub struct BearerToken {
    header: Arc<str>,
}

impl BearerToken {
    /// A token (without the `Bearer ` prefix).
    pub fn new(token: impl AsRef<str>) -> BearerToken {
        BearerToken {
            header: format!("Bearer {}", token.as_ref()).into(),
        }
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl PerRpcCredentials for BearerToken {
    fn request_metadata<'a>(&'a self, _info: RequestInfo<'a>) -> MetadataFuture<'a> {
        Box::pin(async move {
            let mut md = MetadataMap::new();
            md.insert("authorization", &self.header)?;
            Ok(md)
        })
    }
}

/// The same metadata on every call.
#[derive(Clone, Debug)]
pub struct StaticMetadata {
    metadata: MetadataMap,
    require_security: bool,
}

impl StaticMetadata {
    /// Sends `metadata` with every call; requires transport security.
    pub fn new(metadata: MetadataMap) -> StaticMetadata {
        StaticMetadata {
            metadata,
            require_security: true,
        }
    }

    /// Whether the metadata needs a protected transport (default `true`).
    pub fn require_transport_security(mut self, require: bool) -> StaticMetadata {
        self.require_security = require;
        self
    }
}

impl PerRpcCredentials for StaticMetadata {
    fn request_metadata<'a>(&'a self, _info: RequestInfo<'a>) -> MetadataFuture<'a> {
        Box::pin(async move { Ok(self.metadata.clone()) })
    }

    fn require_transport_security(&self) -> bool {
        self.require_security
    }
}

/// Whether an address is on this machine (loopback).
pub(crate) fn is_loopback(addr: &crate::peer::Addr) -> Option<SecurityLevel> {
    match addr {
        crate::peer::Addr::Unix(_) => Some(SecurityLevel::PrivacyAndIntegrity),
        crate::peer::Addr::Tcp(a) if a.ip().is_loopback() => Some(SecurityLevel::NoSecurity),
        crate::peer::Addr::Tcp(a) => match a.ip() {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .filter(|v4| v4.is_loopback())
                .map(|_| SecurityLevel::NoSecurity),
            std::net::IpAddr::V4(_) => None,
        },
        _ => None,
    }
}
