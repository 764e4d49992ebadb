//! Information about the other end of a call, as gRPC-Go's `peer` package.

use std::{fmt, net::SocketAddr, path::PathBuf};

use crate::credentials::AuthInfo;

/// An address of one end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Addr {
    /// A TCP socket address.
    Tcp(SocketAddr),
    /// A Unix domain socket, with its path when it has one.
    Unix(Option<PathBuf>),
    /// A connection served from a caller-provided stream with no known address.
    Unknown,
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(addr) => write!(f, "{addr}"),
            Addr::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            Addr::Unix(None) => f.write_str("unix:(unnamed)"),
            Addr::Unknown => f.write_str("(unknown)"),
        }
    }
}

/// The two ends of the connection a call runs on, and how the peer
/// authenticated.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Peer {
    /// The remote end.
    pub remote_addr: Addr,
    /// The local end.
    pub local_addr: Addr,
    /// What the transport credentials established (TLS details, peer
    /// certificates); `None` on insecure connections.
    pub auth_info: Option<AuthInfo>,
}

impl Peer {
    /// A peer description from its two addresses.
    pub fn new(remote_addr: Addr, local_addr: Addr) -> Peer {
        Peer {
            remote_addr,
            local_addr,
            auth_info: None,
        }
    }

    /// The same peer with `auth_info`.
    pub fn with_auth_info(mut self, auth_info: AuthInfo) -> Peer {
        self.auth_info = Some(auth_info);
        self
    }
}
