//! Custom dialers: how a channel opens the byte stream under a connection
//! (gRPC-Go's `WithContextDialer`).
//!
//! By default a channel dials TCP (or a Unix socket) to each address its
//! resolver reports. A [`Dialer`] set with
//! [`ChannelBuilder::dialer`](super::ChannelBuilder::dialer) replaces that
//! step only: whatever stream it returns, the channel runs the rest of the
//! connection over it as usual (TLS when the channel has TLS credentials,
//! then the HTTP/2 handshake), within the same connect timeout, with the
//! same reconnection backoff.
//!
//! ```no_run
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use ferrogrpc::{client::Channel, resolver::Address};
//!
//! // `passthrough` hands the endpoint to the dialer unresolved.
//! let channel = Channel::builder("passthrough:///my-service")
//!     .dialer(|address: Address| async move {
//!         // Route every connection to one local port, whatever the name.
//!         let _ = address;
//!         tokio::net::TcpStream::connect("127.0.0.1:50051").await
//!     })
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! The address the dialer gets is one the channel's resolver reported: a
//! resolved socket address for `dns` targets ([`Address::Tcp`]), the
//! endpoint as written for `passthrough:///name` ([`Address::HostPort`]),
//! a path for `unix` targets. Use `passthrough` when the name means nothing
//! to DNS (`passthrough:///bufnet` with [`bufconn`](crate::bufconn)).

use std::{fmt, future::Future, io, pin::Pin, sync::Arc};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::resolver::Address;

/// A byte stream a channel can run a connection over: anything tokio can
/// read and write, owned, movable between threads.
///
/// Implemented for every such type; [`BoxedIo`] is the type-erased form.
pub trait DialedIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> DialedIo for T {}

/// A boxed [`DialedIo`]: what a [`Dialer`] that returns streams of several
/// types (TCP or Unix, say) can use as its [`Dialer::Io`].
pub type BoxedIo = Box<dyn DialedIo>;

/// Opens the byte stream for a connection to an address (gRPC-Go's
/// `WithContextDialer` function).
///
/// Implemented for closures `Fn(Address) -> impl Future<Output =
/// io::Result<S>>`, so most dialers are a closure; implement it for a type
/// with `async fn dial(&self, address: &Address) -> io::Result<Self::Io>`.
///
/// # Cancel safety
///
/// The future [`dial`](Self::dial) returns is dropped, unfinished, when the
/// connection attempt's timeout passes
/// ([`ChannelBuilder::connect_timeout`](super::ChannelBuilder::connect_timeout))
/// or the channel is closed. Dropping it must release whatever it holds (a
/// socket half-open, a slot in a pool); nothing else is called to clean up.
/// A dial that keeps running elsewhere after being dropped (a task it
/// spawned) must stop by itself.
pub trait Dialer: Send + Sync + 'static {
    /// The stream type.
    type Io: AsyncRead + AsyncWrite + Send + Unpin + 'static;

    /// Opens a stream to `address`: one the channel's resolver reported, or,
    /// when the channel goes through an HTTP CONNECT proxy set with
    /// [`ChannelBuilder::proxy`](super::ChannelBuilder::proxy), the proxy's
    /// `host:port` as an [`Address::HostPort`].
    ///
    /// Called on a task of the channel, once per connection attempt.
    ///
    /// # Errors
    ///
    /// An error fails the attempt: the subchannel backs off and tries again,
    /// and calls that fail meanwhile get `UNAVAILABLE` with a message that
    /// names the address and includes the error's text.
    fn dial(&self, address: &Address) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl<F, Fut, S> Dialer for F
where
    F: Fn(Address) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<S>> + Send,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Io = S;

    fn dial(&self, address: &Address) -> impl Future<Output = io::Result<S>> + Send {
        self(address.clone())
    }
}

/// A dial in progress, type-erased.
pub(crate) type DialFuture<'a> = Pin<Box<dyn Future<Output = io::Result<BoxedIo>> + Send + 'a>>;

/// [`Dialer`] made object-safe, for the channel to keep.
pub(crate) trait ErasedDialer: Send + Sync + 'static {
    fn dial_boxed<'a>(&'a self, address: &'a Address) -> DialFuture<'a>;
}

impl<D: Dialer> ErasedDialer for D {
    fn dial_boxed<'a>(&'a self, address: &'a Address) -> DialFuture<'a> {
        Box::pin(async move {
            let io = self.dial(address).await?;
            Ok(Box::new(io) as BoxedIo)
        })
    }
}

/// The channel's dialer, as its connection settings hold it.
#[derive(Clone)]
pub(crate) struct DialerHandle(pub(crate) Arc<dyn ErasedDialer>);

impl DialerHandle {
    pub(crate) fn new(dialer: impl Dialer) -> DialerHandle {
        DialerHandle(Arc::new(dialer))
    }
}

impl fmt::Debug for DialerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DialerHandle(..)")
    }
}
