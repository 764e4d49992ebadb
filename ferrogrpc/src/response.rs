//! [`Response`]: a message (or stream) with header and trailer metadata.

use crate::metadata::MetadataMap;

/// A response: the message, the header metadata and the trailer metadata.
///
/// A handler sets both maps to send them; a client reads them from here
/// (for a response stream, trailers come from
/// [`Streaming::trailers`](crate::Streaming::trailers) once it ends).
#[derive(Debug, Default)]
pub struct Response<T> {
    metadata: MetadataMap,
    message: T,
    trailers: MetadataMap,
    compression: Option<&'static str>,
    compressed: bool,
    peer: Option<std::sync::Arc<crate::peer::Peer>>,
}

impl<T> Response<T> {
    /// A response with no metadata.
    pub fn new(message: T) -> Response<T> {
        Response {
            metadata: MetadataMap::new(),
            message,
            trailers: MetadataMap::new(),
            compression: None,
            compressed: false,
            peer: None,
        }
    }

    /// Header metadata.
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }

    /// Mutable header metadata.
    pub fn metadata_mut(&mut self) -> &mut MetadataMap {
        &mut self.metadata
    }

    /// Trailer metadata.
    pub fn trailers(&self) -> &MetadataMap {
        &self.trailers
    }

    /// Mutable trailer metadata.
    pub fn trailers_mut(&mut self) -> &mut MetadataMap {
        &mut self.trailers
    }

    /// The message.
    pub fn get_ref(&self) -> &T {
        &self.message
    }

    /// The message, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.message
    }

    /// Takes the message.
    pub fn into_inner(self) -> T {
        self.message
    }

    /// Splits into header metadata, message and trailer metadata.
    pub fn into_parts(self) -> (MetadataMap, T, MetadataMap) {
        (self.metadata, self.message, self.trailers)
    }

    /// Builds a response from its parts.
    pub fn from_parts(metadata: MetadataMap, message: T, trailers: MetadataMap) -> Response<T> {
        Response {
            metadata,
            message,
            trailers,
            compression: None,
            compressed: false,
            peer: None,
        }
    }

    /// Replaces the message, keeping the metadata.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Response<U> {
        Response {
            metadata: self.metadata,
            message: f(self.message),
            trailers: self.trailers,
            compression: self.compression,
            compressed: self.compressed,
            peer: self.peer,
        }
    }

    /// Replaces the message with a fallible conversion.
    pub(crate) fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Response<U>, E> {
        Ok(Response {
            metadata: self.metadata,
            message: f(self.message)?,
            trailers: self.trailers,
            compression: self.compression,
            compressed: self.compressed,
            peer: self.peer,
        })
    }

    /// On the server: compresses the response with `name` (e.g. `"gzip"`,
    /// or `"identity"` for none) instead of the server's default, if the
    /// client accepts it; otherwise the response goes uncompressed. As
    /// gRPC-Go's `SetSendCompressor`.
    pub fn set_compression(&mut self, name: &'static str) {
        self.compression = Some(name);
    }

    /// The compression the handler asked for.
    pub(crate) fn compression(&self) -> Option<&'static str> {
        self.compression
    }

    /// On the client: whether the response message arrived compressed.
    pub fn message_compressed(&self) -> bool {
        self.compressed
    }

    /// On the client: the two ends of the connection the call ran on, and
    /// what TLS established (the server's certificates).
    pub fn peer(&self) -> Option<&crate::peer::Peer> {
        self.peer.as_deref()
    }

    pub(crate) fn set_peer(&mut self, peer: std::sync::Arc<crate::peer::Peer>) {
        self.peer = Some(peer);
    }

    pub(crate) fn set_compressed(&mut self, compressed: bool) {
        self.compressed = compressed;
    }
}
