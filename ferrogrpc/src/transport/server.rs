//! Serving one HTTP/2 connection: the handshake, accepting streams, checking
//! that each is a gRPC request, and graceful or hard shutdown.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::watch,
};

use super::{http_util, ServerSend};
use crate::{metadata::MetadataMap, peer::Peer, status::Status};

/// HTTP/2 settings and limits of a server's connections.
#[derive(Clone, Debug)]
pub(crate) struct ServerConfig {
    pub(crate) max_concurrent_streams: Option<u32>,
    pub(crate) initial_stream_window_size: u32,
    pub(crate) initial_connection_window_size: u32,
    pub(crate) max_frame_size: u32,
    pub(crate) max_header_list_size: u32,
    pub(crate) handshake_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_concurrent_streams: None,
            initial_stream_window_size: 1 << 20,
            initial_connection_window_size: 2 << 20,
            max_frame_size: 16 << 10,
            max_header_list_size: 16 << 20,
            handshake_timeout: Duration::from_secs(20),
        }
    }
}

/// What stage of shutdown the server is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shutdown {
    Running,
    /// Stop taking new streams, finish the ones under way.
    Graceful,
    /// Close every connection now.
    Hard,
}

/// A gRPC request, checked and parsed, ready for routing.
pub(crate) struct IncomingStream {
    /// The algorithm of the request's `grpc-encoding`, if any.
    pub(crate) decompressor: Option<std::sync::Arc<dyn crate::encoding::Compressor>>,
    /// The client's `grpc-accept-encoding`.
    pub(crate) accept_encoding: Option<HeaderValue>,
    /// The `:path`, e.g. `/pkg.Service/Method`.
    pub(crate) path: http::uri::PathAndQuery,
    pub(crate) metadata: MetadataMap,
    pub(crate) timeout: Option<Duration>,
    pub(crate) body: h2::RecvStream,
    pub(crate) send: ServerSend,
    pub(crate) peer: Arc<Peer>,
}

/// Receives each accepted stream; it must not block (spawn the work).
pub(crate) trait StreamHandler: Send + Sync + 'static {
    fn handle(&self, stream: IncomingStream);
}

/// Serves one connection until the peer closes it, an error ends it, or the
/// server shuts down.
pub(crate) async fn serve_connection<IO, H>(
    io: IO,
    peer: Arc<Peer>,
    config: &ServerConfig,
    handler: &H,
    mut shutdown: watch::Receiver<Shutdown>,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: StreamHandler + ?Sized,
{
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(config.initial_stream_window_size)
        .initial_connection_window_size(config.initial_connection_window_size)
        .max_frame_size(config.max_frame_size)
        .max_header_list_size(config.max_header_list_size);
    if let Some(n) = config.max_concurrent_streams {
        builder.max_concurrent_streams(n);
    }
    let mut conn = match tokio::time::timeout(config.handshake_timeout, builder.handshake(io)).await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => {
            tracing::debug!(peer = %peer.remote_addr, "HTTP/2 handshake failed: {err}");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %peer.remote_addr, "HTTP/2 handshake timed out");
            return;
        }
    };
    let mut graceful = false;
    let mut changed = true;
    loop {
        if changed {
            match *shutdown.borrow_and_update() {
                Shutdown::Running => {}
                Shutdown::Graceful if !graceful => {
                    // GOAWAY(max id) + PING, then the final GOAWAY; h2 ends
                    // `accept` once the streams under way have finished.
                    conn.graceful_shutdown();
                    graceful = true;
                }
                Shutdown::Graceful => {}
                Shutdown::Hard => return,
            }
        }
        let accepted = tokio::select! {
            biased;
            res = shutdown.changed() => {
                // A dropped sender means the server is gone: stop hard.
                if res.is_err() {
                    return;
                }
                changed = true;
                continue;
            }
            accepted = conn.accept() => accepted,
        };
        changed = false;
        match accepted {
            Some(Ok((request, respond))) => {
                if let Some(stream) = check_request(request, respond, &peer) {
                    handler.handle(stream);
                }
            }
            Some(Err(err)) => {
                tracing::debug!(peer = %peer.remote_addr, "connection error: {err}");
                return;
            }
            None => return,
        }
    }
}

/// Checks that a request is a gRPC call; answers it directly when not.
fn check_request(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    peer: &Arc<Peer>,
) -> Option<IncomingStream> {
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        reject(
            &mut respond,
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("gRPC requires POST, got {}", parts.method),
        );
        return None;
    }
    let content_type = parts.headers.get(http::header::CONTENT_TYPE);
    if !content_type.is_some_and(|v| http_util::is_grpc_content_type(v.as_bytes())) {
        let got = content_type.map_or_else(
            || "none".to_string(),
            |v| String::from_utf8_lossy(v.as_bytes()).into_owned(),
        );
        reject(
            &mut respond,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("invalid gRPC request content-type {got:?}"),
        );
        return None;
    }
    let Some(path) = parts.uri.path_and_query().cloned() else {
        reject(&mut respond, StatusCode::NOT_FOUND, "request has no :path");
        return None;
    };
    let mut send = ServerSend::new(respond);
    let mut headers = parts.headers;
    let timeout = match headers.remove("grpc-timeout") {
        Some(raw) => match http_util::parse_timeout(raw.as_bytes()) {
            Ok(t) => Some(t),
            Err(msg) => {
                send.send_status(Status::internal(msg), None);
                return None;
            }
        },
        None => None,
    };
    let decompressor = match crate::encoding::decompressor_for(headers.get("grpc-encoding")) {
        Ok(d) => d,
        Err(name) => {
            // The response headers list what the server accepts.
            send.send_status(
                Status::unimplemented(format!(
                    "grpc-encoding {name:?} is not supported by this server"
                )),
                None,
            );
            return None;
        }
    };
    let accept_encoding = headers.get("grpc-accept-encoding").cloned();
    let metadata = match MetadataMap::from_received(headers) {
        Ok(md) => md,
        Err(status) => {
            send.send_status(status, None);
            return None;
        }
    };
    Some(IncomingStream {
        decompressor,
        accept_encoding,
        path,
        metadata,
        timeout,
        body,
        send,
        peer: Arc::clone(peer),
    })
}

/// Answers a request that is not gRPC with an HTTP error; `grpc-status` is
/// added so a gRPC client still gets a useful status.
fn reject(respond: &mut h2::server::SendResponse<Bytes>, status: StatusCode, message: &str) {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    http_util::write_status(Status::internal(message), &mut headers);
    let mut resp = http::Response::new(());
    *resp.status_mut() = status;
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(http::header::ALLOW, HeaderValue::from_static("POST"));
    }
    *resp.headers_mut() = headers;
    let _ = respond.send_response(resp, true);
}
