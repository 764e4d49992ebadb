//! An in-memory transport, as gRPC-Go's `test/bufconn`: a [`Listener`] a
//! [`Server`](crate::server::Server) serves on and a [`Dialer`] a
//! [`Channel`](crate::client::Channel) connects with, joined by in-memory
//! pipes of a bounded size. No socket, no port, nothing another process can
//! reach; everything above the byte stream is the real thing (HTTP/2, flow
//! control, TLS if configured, deadlines, cancellation).
//!
//! For tests above all, and for a server and client in one process.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ferrogrpc::{bufconn, client::Channel, server::Server};
//!
//! let listener = bufconn::listen(1 << 20);
//! let dialer = listener.dialer();
//! let server = Server::builder().build(); // .add_service(...)
//! let serving = server.clone();
//! tokio::spawn(async move { serving.serve_listener(listener).await });
//!
//! // `passthrough` hands the name to the dialer unresolved; any name does.
//! let channel = Channel::builder("passthrough:///bufnet")
//!     .dialer(dialer)
//!     .build()?;
//! channel.connect().await?;
//! server.stop();
//! # Ok(()) }
//! ```
//!
//! Each connection is a [`tokio::io::duplex`] pair: each direction buffers
//! at most the size given to [`listen`], and a writer that finds the buffer
//! full waits for the reader (HTTP/2 flow control works on top as over TCP).
//! The server sees the peer address as [`Addr::Unknown`].

use std::{future::Future, io};

use tokio::{io::DuplexStream, sync::mpsc};

use crate::{
    peer::{Addr, Peer},
    resolver::Address,
};

/// How many dialled connections wait for the server to accept them before
/// [`Dialer::connect`] waits too (the listen backlog).
pub const BACKLOG: usize = 128;

/// A listener of in-memory connections with `buffer_size` bytes of buffer
/// in each direction (gRPC-Go's `bufconn.Listen`).
///
/// # Panics
///
/// When `buffer_size` is 0.
pub fn listen(buffer_size: usize) -> Listener {
    assert!(
        buffer_size > 0,
        "bufconn::listen: the buffer size must not be 0"
    );
    let (tx, rx) = mpsc::channel(BACKLOG);
    Listener {
        rx,
        dialer: Dialer { tx, buffer_size },
    }
}

/// The server's end: pass it to
/// [`Server::serve_listener`](crate::server::Server::serve_listener). Dropping
/// it (as a server does when it stops) closes it: dials fail from then on.
#[derive(Debug)]
pub struct Listener {
    rx: mpsc::Receiver<DuplexStream>,
    dialer: Dialer,
}

impl Listener {
    /// A dialer of this listener, for a channel
    /// ([`ChannelBuilder::dialer`](crate::client::ChannelBuilder::dialer)) or
    /// for [`Dialer::connect`]. Take it before the listener is moved into
    /// the server; it can be cloned.
    pub fn dialer(&self) -> Dialer {
        self.dialer.clone()
    }

    /// The size of each direction's buffer.
    pub fn buffer_size(&self) -> usize {
        self.dialer.buffer_size
    }
}

impl crate::server::Listener for Listener {
    type Io = DuplexStream;

    /// Waits for the next dialled connection. Never fails: with no dialer
    /// left it waits until the server stops.
    async fn accept(&mut self) -> io::Result<(DuplexStream, Peer)> {
        // The listener keeps a sender itself, so `recv` never returns
        // `None`.
        match self.rx.recv().await {
            Some(io) => Ok((io, Peer::new(Addr::Unknown, Addr::Unknown))),
            None => std::future::pending().await,
        }
    }
}

/// The client's end of a [`Listener`]: opens connections to it (gRPC-Go's
/// `Listener.DialContext`). Cheap to clone. As a
/// [`client::Dialer`](crate::client::Dialer) it connects to its listener
/// whatever the address.
#[derive(Clone, Debug)]
pub struct Dialer {
    tx: mpsc::Sender<DuplexStream>,
    buffer_size: usize,
}

impl Dialer {
    /// Opens a connection to the listener: the client's end of a new pipe,
    /// whose other end the listener's next `accept` returns.
    ///
    /// # Errors
    ///
    /// `ConnectionRefused` when the listener is closed (dropped).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropped while waiting for room in the backlog, nothing
    /// is queued.
    pub async fn connect(&self) -> io::Result<DuplexStream> {
        let (client, server) = tokio::io::duplex(self.buffer_size);
        self.tx.send(server).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "bufconn: the listener is closed",
            )
        })?;
        Ok(client)
    }
}

impl crate::client::Dialer for Dialer {
    type Io = DuplexStream;

    fn dial(&self, _address: &Address) -> impl Future<Output = io::Result<DuplexStream>> + Send {
        self.connect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Listener as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_dial_reaches_the_listener_and_a_closed_one_refuses() {
        let mut listener = listen(8);
        let dialer = listener.dialer();
        let mut client = dialer.connect().await.unwrap();
        let (mut server, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.remote_addr, Addr::Unknown);
        client.write_all(b"hi").await.unwrap();
        let mut got = [0; 2];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hi");
        drop(listener);
        let err = dialer.connect().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test]
    async fn the_buffer_is_bounded() {
        let mut listener = listen(4);
        let mut client = listener.dialer().connect().await.unwrap();
        let (_server, _) = listener.accept().await.unwrap();
        // Four bytes fit; the fifth waits for a reader that never comes.
        client.write_all(b"1234").await.unwrap();
        let more =
            tokio::time::timeout(std::time::Duration::from_millis(50), client.write_all(b"5"))
                .await;
        assert!(more.is_err(), "a write past the buffer size must wait");
    }
}
