//! Client-side health checking (gRFC A17): while a subchannel's connection
//! is up, a `grpc.health.v1.Health/Watch` stream on that very connection
//! tells whether its server is SERVING the service named by the service
//! config's `healthCheckConfig.serviceName`.
//!
//! The subchannel then reports READY to its balancer only while the answer
//! is SERVING; any other answer is TRANSIENT_FAILURE (the connection stays
//! up). A server without the health service (UNIMPLEMENTED) is taken as
//! healthy, with a log line, as A17 says. A stream that fails otherwise is
//! opened again with backoff (no backoff after a stream that delivered a
//! status), and the subchannel reports CONNECTING while it is.

use std::{
    future::poll_fn,
    sync::{atomic::Ordering, Weak},
};

use http::uri::PathAndQuery;
use prost::Message;

use super::subchannel::Subchannel;
use crate::{
    backoff::Backoff,
    codec::ProstCodec,
    codes::Code,
    connectivity::State,
    health::{pb, ServingStatus},
    metadata::MetadataMap,
    status::Status,
    transport::{
        client::{CallHead, Http2Client},
        frame,
    },
};

const WATCH: &str = "/grpc.health.v1.Health/Watch";

/// A health answer is small; a larger one is refused.
const MAX_RESPONSE: usize = 64 << 10;

/// Watches the health of `service` on connection `conn` of `sub` until the
/// subchannel drops it (the task is aborted) or the server says the service
/// is not implemented.
pub(super) async fn watch(sub: Weak<Subchannel>, conn: u64, client: Http2Client, service: String) {
    let Some(config) = sub.upgrade().map(|s| s.backoff_config()) else {
        return;
    };
    let mut backoff = Backoff::new(config);
    let mut failed_before = false;
    loop {
        if failed_before {
            backoff.sleep_until_next().await;
        }
        let Some(s) = sub.upgrade() else {
            return;
        };
        s.health_update(conn, State::Connecting, None);
        drop(s);
        failed_before = true;
        let mut recv = match open(&sub, &client, &service).await {
            Ok(recv) => (recv, OpenStream::new(&sub)),
            Err(status) => {
                tracing::debug!(%service, "health check stream not opened: {}", status.message());
                continue;
            }
        };
        loop {
            let answer = poll_fn(|cx| recv.0.poll_message(cx)).await;
            let Some(s) = sub.upgrade() else {
                return;
            };
            match answer {
                Ok(Some(bytes)) => {
                    // A status arrived: the next failure retries at once.
                    failed_before = false;
                    backoff.reset();
                    let status = pb::HealthCheckResponse::decode(bytes)
                        .map(|r| r.status())
                        .unwrap_or(ServingStatus::Unknown);
                    if status == ServingStatus::Serving {
                        s.health_update(conn, State::Ready, None);
                    } else {
                        let why = format!(
                            "connection up but the server reports {service:?} {}",
                            status.as_str_name()
                        );
                        s.health_update(
                            conn,
                            State::TransientFailure,
                            Some(Status::unavailable(why)),
                        );
                    }
                }
                Err(status) if status.code() == Code::Unimplemented => {
                    tracing::warn!(
                        address = %s.address(),
                        "the server has no health service (UNIMPLEMENTED); health checking is off for this connection"
                    );
                    s.health_update(conn, State::Ready, None);
                    return;
                }
                other => {
                    let why = match other {
                        Err(status) => format!("health check failed: {status}"),
                        _ => "health check stream ended".to_string(),
                    };
                    s.health_update(
                        conn,
                        State::TransientFailure,
                        Some(Status::unavailable(why)),
                    );
                    break;
                }
            }
        }
    }
}

/// Counts an open health-check stream in its subchannel while it lives.
struct OpenStream(Weak<Subchannel>);

impl OpenStream {
    fn new(sub: &Weak<Subchannel>) -> OpenStream {
        if let Some(s) = sub.upgrade() {
            s.health_streams.fetch_add(1, Ordering::AcqRel);
        }
        OpenStream(sub.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if let Some(s) = self.0.upgrade() {
            s.health_streams.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Opens the Watch stream and sends its request.
async fn open(
    sub: &Weak<Subchannel>,
    client: &Http2Client,
    service: &str,
) -> Result<crate::transport::client::ClientRecv, Status> {
    let (scheme, authority) = match sub.upgrade() {
        Some(s) => s.call_target(),
        None => return Err(Status::cancelled("subchannel gone")),
    };
    let metadata = MetadataMap::new();
    let head = CallHead {
        scheme: &scheme,
        authority: &authority,
        path: PathAndQuery::from_static(WATCH),
        timeout: None,
        metadata: &metadata,
        content_subtype: "proto",
        encoding: None,
        previous_attempts: 0,
    };
    let request = pb::HealthCheckRequest {
        service: service.to_string(),
    };
    let encoded = frame::encode::<_, _, pb::HealthCheckResponse>(
        &mut ProstCodec,
        &request,
        usize::MAX,
        None,
    )?;
    let (recv, mut send) = client.open_stream(head, MAX_RESPONSE).await?;
    send.send_now(encoded.frame, true)?;
    Ok(recv.with_send(send))
}
