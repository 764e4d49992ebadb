//! [`CallContext`]: what a handler (and anything it spawns) can do with its
//! call besides returning a result — send headers early, add trailers, learn
//! the method, and wait for the call to be cancelled. gRPC-Go keeps these in
//! the handler's `context.Context` (`grpc.SetHeader`, `grpc.SendHeader`,
//! `grpc.SetTrailer`, `grpc.Method`, `ctx.Done()`).
//!
//! A leaf module: [`Request`](crate::Request) holds a context without
//! knowing the server; the server's per-call state implements [`CallSide`].

use std::{
    borrow::Cow,
    sync::{
        atomic::{AtomicBool, AtomicU8, Ordering},
        Arc, OnceLock,
    },
    time::Instant,
};

use http::uri::PathAndQuery;

use crate::{metadata::MetadataMap, status::Status};

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const CANCELLED: u8 = 2;

/// What every call's context holds, whatever serves it.
pub(crate) struct ContextCore {
    path: PathAndQuery,
    /// The request's content-subtype, lower-cased (`""` for none).
    content_subtype: Cow<'static, str>,
    deadline: Option<Instant>,
    /// `RUNNING` until the call is over, then how it ended.
    over: AtomicU8,
    /// The status a cancelled call ended with, set before `over`.
    reason: OnceLock<Status>,
    done: tokio::sync::Notify,
    /// Whether anything ever waited for the end (so `end` can skip the
    /// notification on the common path).
    watched: AtomicBool,
}

impl ContextCore {
    pub(crate) fn new(
        path: PathAndQuery,
        content_subtype: Cow<'static, str>,
        deadline: Option<Instant>,
    ) -> ContextCore {
        ContextCore {
            path,
            content_subtype,
            deadline,
            over: AtomicU8::new(RUNNING),
            reason: OnceLock::new(),
            done: tokio::sync::Notify::new(),
            watched: AtomicBool::new(false),
        }
    }

    /// The call is over: finished (`None`) or cancelled with `reason`.
    /// Wakes everything waiting in [`CallContext::cancelled`].
    pub(crate) fn end(&self, reason: Option<Status>) {
        let over = match reason {
            Some(status) => {
                let _ = self.reason.set(status);
                CANCELLED
            }
            None => FINISHED,
        };
        let _ = self
            .over
            .compare_exchange(RUNNING, over, Ordering::SeqCst, Ordering::SeqCst);
        // A waiter sets `watched` before it checks `over` (both SeqCst), so
        // either it sees the end or the end sees it.
        if self.watched.load(Ordering::SeqCst) {
            self.done.notify_waiters();
        }
    }
}

/// The side of a call that sends its headers and trailers.
pub(crate) trait CallSide: Send + Sync + 'static {
    fn core(&self) -> &ContextCore;
    fn set_header(&self, metadata: MetadataMap) -> Result<(), Status>;
    fn send_header(&self, metadata: MetadataMap) -> Result<(), Status>;
    fn set_trailer(&self, metadata: MetadataMap) -> Result<(), Status>;
}

/// A handle on the call a handler serves: clone it freely and move it into
/// tasks the handler spawns. Get it from
/// [`Request::context`](crate::Request::context) (server requests always
/// have one).
///
/// ```
/// # use ferrogrpc::{metadata::MetadataMap, Request, Response, Status};
/// async fn say_hello(request: Request<String>) -> Result<Response<String>, Status> {
///     let ctx = request.context().expect("a server request").clone();
///     let mut headers = MetadataMap::new();
///     headers.insert("x-served-by", "replica-3")?;
///     // Sent now, even if the call then fails.
///     ctx.send_header(headers)?;
///     let mut trailers = MetadataMap::new();
///     trailers.insert("x-cost", "12")?;
///     ctx.set_trailer(trailers)?;
///     if request.get_ref().is_empty() {
///         return Err(Status::invalid_argument("no name")); // trailers still go
///     }
///     Ok(Response::new(format!("hello {}", request.get_ref())))
/// }
/// ```
#[derive(Clone)]
pub struct CallContext {
    side: Arc<dyn CallSide>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("method", &self.method())
            .field("deadline", &self.deadline())
            .finish_non_exhaustive()
    }
}

impl CallContext {
    pub(crate) fn new(side: Arc<dyn CallSide>) -> CallContext {
        CallContext { side }
    }

    /// The full method name, `/package.Service/Method` (gRPC-Go's
    /// `grpc.Method`).
    pub fn method(&self) -> &str {
        self.side.core().path.path()
    }

    /// The content-subtype the call's messages are in, lower-cased: `""`
    /// for plain `application/grpc`, `"proto"`, `"json"`, or a subtype
    /// registered with [`register_codec`](crate::codec::register_codec)
    /// (gRPC-Go's handlers read it from the `content-type` in the incoming
    /// metadata, which ferrogrpc keeps out of the metadata).
    pub fn content_subtype(&self) -> &str {
        &self.side.core().content_subtype
    }

    /// When the call's deadline passes, if the client set one. The call is
    /// cancelled at that moment. Pass it on to the calls the handler makes
    /// with [`Request::with_parent`](crate::Request::with_parent).
    pub fn deadline(&self) -> Option<Instant> {
        self.side.core().deadline
    }

    /// Adds `metadata` to the response headers, to go out with the first
    /// message, the response, an error status, or
    /// [`send_header`](Self::send_header), whichever comes first (gRPC-Go's
    /// `grpc.SetHeader`). Headers set here come before those of the
    /// [`Response`](crate::Response).
    ///
    /// # Errors
    /// `INTERNAL` when the headers were already sent, and when the headers
    /// would hold more than [`MetadataMap::MAX_KEYS`] keys.
    pub fn set_header(&self, metadata: MetadataMap) -> Result<(), Status> {
        self.side.set_header(metadata)
    }

    /// Sends the response headers now: those set with
    /// [`set_header`](Self::set_header), then `metadata` (gRPC-Go's
    /// `grpc.SendHeader`). The client sees them even if the call then fails.
    /// The response compression is decided here: the server's default (see
    /// [`ServerBuilder::send_compressed`](crate::server::ServerBuilder::send_compressed));
    /// a [`Response::set_compression`](crate::Response::set_compression) made
    /// later has no effect.
    ///
    /// # Errors
    /// `INTERNAL` when the headers were already sent; `CANCELLED` when the
    /// call has ended; the status of headers that could not be built.
    pub fn send_header(&self, metadata: MetadataMap) -> Result<(), Status> {
        self.side.send_header(metadata)
    }

    /// Adds `metadata` to the trailers sent when the call ends, with a
    /// response or with an error (gRPC-Go's `grpc.SetTrailer`). They come
    /// before the trailers of the [`Response`](crate::Response) or the
    /// error [`Status`].
    ///
    /// # Errors
    /// `INTERNAL` when the trailers would hold more than
    /// [`MetadataMap::MAX_KEYS`] keys.
    pub fn set_trailer(&self, metadata: MetadataMap) -> Result<(), Status> {
        self.side.set_trailer(metadata)
    }

    /// Completes once the call is over: cancelled by the client (a reset or
    /// its own deadline), its deadline passed, its connection closed (a
    /// server stop, a lost client), or the handler finished and the status
    /// was sent — as gRPC-Go's `ctx.Done()`. Work spawned for the call can
    /// `select!` on it to stop when nobody will read its result.
    ///
    /// When the call is cancelled the handler's own future is dropped at
    /// that moment, so this is mostly for spawned work.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future loses nothing; a new one completes
    /// at once if the call is already over.
    pub async fn cancelled(&self) {
        let core = self.side.core();
        loop {
            let notified = core.done.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            core.watched.store(true, Ordering::SeqCst);
            if core.over.load(Ordering::SeqCst) != RUNNING {
                return;
            }
            notified.await;
        }
    }

    /// Whether the call is over (see [`cancelled`](Self::cancelled)).
    pub fn is_over(&self) -> bool {
        self.side.core().over.load(Ordering::Acquire) != RUNNING
    }

    /// Why the call was cancelled: `CANCELLED` (the client reset it),
    /// `DEADLINE_EXCEEDED`, or the status of a lost connection; `None`
    /// while it runs and when it finished normally (gRPC-Go's `ctx.Err()`).
    pub fn cancellation(&self) -> Option<&Status> {
        let core = self.side.core();
        if core.over.load(Ordering::Acquire) == CANCELLED {
            core.reason.get()
        } else {
            None
        }
    }
}
