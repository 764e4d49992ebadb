//! [`Streaming`]: a stream of received messages, on either side of a call.

use std::{
    fmt,
    future::poll_fn,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use tokio::time::Sleep;

use crate::{
    client::retry::CallRecv, codec::Codec, metadata::MetadataMap, observe::Observed,
    stats::Payload, status::Status, transport::RecvMessages,
};

/// Decodes received messages; boxed so `Streaming<T>` does not name the codec.
/// A zero-sized codec (like the protobuf one) costs no allocation.
pub(crate) trait Decode<T>: Send {
    fn decode(&mut self, bytes: Bytes) -> Result<T, Status>;
}

/// Adapts a [`Codec`] to [`Decode`] for its decoded type.
pub(crate) struct DecodeWith<C, E>(pub(crate) C, PhantomData<fn(E)>);

impl<C, E> DecodeWith<C, E> {
    pub(crate) fn boxed<D>(codec: C) -> Box<dyn Decode<D>>
    where
        C: Codec<E, D>,
        E: 'static,
        D: 'static,
    {
        Box::new(DecodeWith(codec, PhantomData))
    }
}

impl<C: Codec<E, D>, E, D> Decode<D> for DecodeWith<C, E> {
    fn decode(&mut self, bytes: Bytes) -> Result<D, Status> {
        self.0.decode(bytes)
    }
}

// One per stream, and most streams are one kind or the other: boxing the
// client's (larger) receiver would cost every client stream an allocation
// to save server streams some bytes.
#[allow(clippy::large_enum_variant)]
enum Source {
    Client(CallRecv),
    Server(RecvMessages),
}

/// A stream of messages received in a call: the requests of a
/// client-streaming or bidi call on the server, the responses of a
/// server-streaming or bidi call on the client.
///
/// On the client, the end of the stream is the end of the call: `Ok(None)`
/// when it ended with `OK`, an error with the call's status otherwise.
/// Dropping a client's `Streaming` before the end cancels the call.
pub struct Streaming<T> {
    source: Source,
    decoder: Box<dyn Decode<T>>,
    deadline: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
    /// Client: completes when the server call this call was made for
    /// (`Request::with_parent`) is over.
    parent: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
    /// Set once `poll_next` has yielded the end or an error.
    ended: bool,
    /// Stats and interceptor hooks, when any are registered.
    observed: Observed<T>,
    /// Whether the observer heard about the response headers (client).
    headers_reported: bool,
}

impl<T> fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streaming").finish_non_exhaustive()
    }
}

impl<T> Streaming<T> {
    pub(crate) fn server(
        recv: RecvMessages,
        decoder: Box<dyn Decode<T>>,
        observed: Observed<T>,
    ) -> Streaming<T> {
        Streaming {
            source: Source::Server(recv),
            decoder,
            deadline: None,
            timed_out: false,
            parent: None,
            ended: false,
            observed,
            headers_reported: true,
        }
    }

    pub(crate) fn client(
        recv: CallRecv,
        decoder: Box<dyn Decode<T>>,
        deadline: Option<Instant>,
        parent: Option<crate::call_context::CallContext>,
        observed: Observed<T>,
    ) -> Streaming<T> {
        let headers_reported = recv.headers_received();
        Streaming {
            source: Source::Client(recv),
            decoder,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d.into()))),
            timed_out: false,
            parent: parent.map(|ctx| {
                Box::pin(async move { ctx.cancelled().await })
                    as Pin<Box<dyn Future<Output = ()> + Send + Sync>>
            }),
            ended: false,
            observed,
            headers_reported,
        }
    }

    /// Tells the observer about the response headers, once.
    fn report_headers(&mut self) {
        let (Some((obs, _)), Source::Client(recv)) = (&self.observed, &self.source) else {
            return;
        };
        if !self.headers_reported && recv.headers_received() {
            self.headers_reported = true;
            obs.in_header(recv.headers());
            obs.log_server_header(recv.headers(), Some(&recv.peer().remote_addr));
        }
    }

    /// Tells the observer how a client stream ended.
    fn report_end(&mut self, result: &Result<Option<T>, Status>) {
        let (Some((obs, _)), Source::Client(recv)) = (&self.observed, &self.source) else {
            return;
        };
        match result {
            Ok(Some(_)) => {}
            Ok(None) => {
                if let Some(trailers) = recv.trailers() {
                    obs.in_trailer(trailers);
                    obs.log_ok_trailer(trailers, Some(&recv.peer().remote_addr));
                }
                obs.end(Ok(()));
            }
            Err(status) => {
                obs.in_trailer(status.metadata());
                obs.log_trailer(status, Some(&recv.peer().remote_addr));
                obs.end(Err(status));
            }
        }
    }

    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Result<(), Status> {
        if let Some(sleep) = &mut self.deadline {
            if self.timed_out || sleep.as_mut().poll(cx).is_ready() {
                self.timed_out = true;
                if let Source::Client(recv) = &mut self.source {
                    recv.cancel();
                }
                return Err(Status::deadline_exceeded("deadline exceeded"));
            }
        }
        if let Some(parent) = &mut self.parent {
            if parent.as_mut().poll(cx).is_ready() {
                if let Source::Client(recv) = &mut self.source {
                    recv.cancel();
                }
                return Err(crate::client::parent_over());
            }
        }
        Ok(())
    }

    /// Polls for the next message.
    pub fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<T>, Status>> {
        let raw = match &mut self.source {
            Source::Server(recv) => recv.poll_message(cx),
            Source::Client(recv) => {
                if recv.is_finished() {
                    recv.poll_message(cx)
                } else {
                    self.poll_deadline(cx)?;
                    match &mut self.source {
                        Source::Client(recv) => recv.poll_message(cx),
                        Source::Server(_) => unreachable!("source does not change"),
                    }
                }
            }
        };
        let raw = ready!(raw);
        let client_observed = matches!(self.source, Source::Client(_)) && self.observed.is_some();
        if client_observed {
            self.report_headers();
        }
        let result = match raw {
            Ok(Some(bytes)) => self.decode_observed(bytes),
            Ok(None) => {
                if let (Some((obs, _)), Source::Server(_)) = (&self.observed, &self.source) {
                    obs.log_half_close();
                }
                Ok(None)
            }
            Err(status) => Err(status),
        };
        if let (Err(status), Source::Client(recv)) = (&result, &mut self.source) {
            // A failure found here (a message that does not decode, an
            // interceptor's refusal) ends the attempt for the balancer with
            // the status the caller sees, not the CANCELLED of a drop. A
            // no-op when the status came from the attempt itself.
            recv.end_attempt(status);
        }
        if client_observed {
            self.report_end(&result);
        }
        Poll::Ready(result)
    }

    fn decode_observed(&mut self, bytes: Bytes) -> Result<Option<T>, Status> {
        let length = bytes.len();
        if let Some((obs, _)) = &self.observed {
            obs.log_in_message(&bytes);
        }
        let message = self.decoder.decode(bytes)?;
        if let Some((obs, as_any)) = &self.observed {
            let (wire_length, compressed) = match &self.source {
                Source::Client(recv) => (recv.last_wire_len(), recv.last_compressed()),
                Source::Server(recv) => (recv.last_wire_len(), recv.last_compressed()),
            };
            let payload = Payload {
                length,
                wire_length,
                compressed,
            };
            obs.in_payload(as_any(&message), payload)?;
        }
        Ok(Some(message))
    }

    /// The next message; `Ok(None)` at the end of the stream.
    ///
    /// # Cancel safety
    /// Cancel-safe: a message is never lost if this future is dropped.
    pub async fn message(&mut self) -> Result<Option<T>, Status> {
        poll_fn(|cx| self.poll_message(cx)).await
    }

    /// On the client: the response header metadata, waiting for it if needed.
    /// On the server: an empty map (request metadata is on the `Request`).
    ///
    /// # Errors
    /// The call's status when it failed before sending headers.
    pub async fn headers(&mut self) -> Result<&MetadataMap, Status> {
        if let Source::Client(recv) = &mut self.source {
            poll_fn(|cx| recv.poll_headers(cx)).await?;
            return Ok(recv.headers());
        }
        static EMPTY: std::sync::OnceLock<MetadataMap> = std::sync::OnceLock::new();
        Ok(EMPTY.get_or_init(MetadataMap::new))
    }

    /// On the client: the two ends of the connection the call runs on, and
    /// what TLS established.
    pub fn peer(&self) -> Option<&crate::peer::Peer> {
        match &self.source {
            Source::Client(recv) => Some(recv.peer()),
            Source::Server(_) => None,
        }
    }

    /// Whether the last message returned arrived compressed.
    pub fn last_message_compressed(&self) -> bool {
        match &self.source {
            Source::Client(recv) => recv.last_compressed(),
            Source::Server(recv) => recv.last_compressed(),
        }
    }

    /// On the client: the trailer metadata, once the stream has ended with
    /// `OK` (when it ended with an error, the trailers are on the status).
    pub fn trailers(&self) -> Option<&MetadataMap> {
        match &self.source {
            Source::Client(recv) => recv.trailers(),
            Source::Server(_) => None,
        }
    }
}

impl<T> futures_core::Stream for Streaming<T> {
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let item = ready!(this.poll_message(cx)).transpose();
        // An error ends the stream: it is yielded once, then `None`.
        this.ended = !matches!(item, Some(Ok(_)));
        Poll::Ready(item)
    }
}

impl<T> Unpin for Streaming<T> {}

impl<T> Drop for Streaming<T> {
    fn drop(&mut self) {
        // A client stream dropped before its end cancels the call.
        if let (Some((obs, _)), Source::Client(_)) = (&self.observed, &self.source) {
            obs.log_cancel_unless_ended();
            obs.end(Err(&Status::cancelled(
                "the response stream was dropped before its end",
            )));
        }
    }
}
