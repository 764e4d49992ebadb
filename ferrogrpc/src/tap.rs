//! Tap, as gRPC-Go's `tap` package: a server hook that runs for each new
//! stream before any work is done for it — before the handler's task exists —
//! so it can refuse calls cheaply, e.g. for rate limiting.

use crate::{metadata::MetadataMap, peer::Peer, status::Status};

/// What a tap sees of a new call.
#[derive(Debug)]
#[non_exhaustive]
pub struct TapInfo<'a> {
    /// The full method, `/package.Service/Method`.
    pub method: &'a str,
    /// The request metadata.
    pub metadata: &'a MetadataMap,
    /// The connection's two ends.
    pub peer: &'a Peer,
}

/// Decides, before a call starts, whether it may run. Runs on the
/// connection's task: it must be quick and must not block.
pub trait ServerInHandle: Send + Sync + 'static {
    /// `Ok` lets the call run; an error ends it at once with that status.
    fn handle(&self, info: &TapInfo<'_>) -> Result<(), Status>;
}

impl<F> ServerInHandle for F
where
    F: Fn(&TapInfo<'_>) -> Result<(), Status> + Send + Sync + 'static,
{
    fn handle(&self, info: &TapInfo<'_>) -> Result<(), Status> {
        self(info)
    }
}
