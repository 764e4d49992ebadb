//! The log of one call: numbers its entries and builds them as A16 says
//! (what metadata is left out, how payloads and metadata are truncated,
//! where the peer goes).

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, SystemTime},
};

use super::{
    pb::{
        self, address, grpc_log_entry::EventType, grpc_log_entry::Logger, grpc_log_entry::Payload,
        GrpcLogEntry,
    },
    BinaryLog, MethodConfig,
};
use crate::{
    metadata::{MetadataMap, MetadataValue},
    peer::Addr,
    status::Status,
};

/// One logged call, on one side.
pub(crate) struct CallLog {
    log: BinaryLog,
    config: MethodConfig,
    call_id: u64,
    client: bool,
    sequence: AtomicU64,
    /// Client: whether the server's address went into an entry yet.
    peer_logged: AtomicBool,
    half_closed: AtomicBool,
    /// Whether a trailer or a cancel was logged (the call's end).
    finished: AtomicBool,
}

/// Headers gRPC itself manages, never logged (A16; not a truncation).
fn omitted(key: &str) -> bool {
    match key {
        "grpc-trace-bin" => false,
        "lb-token" | ":path" | ":authority" | "content-encoding" | "content-type"
        | "user-agent" | "te" => true,
        _ => key.starts_with("grpc-"),
    }
}

/// The metadata entries that fit in `limit` bytes (key plus value each),
/// in order, stopping at the first that does not; and whether some were
/// left out.
fn metadata(md: &MetadataMap, limit: u64) -> (pb::Metadata, bool) {
    let mut entries = Vec::new();
    let mut left = limit;
    let mut truncated = false;
    for (key, value) in md.iter() {
        if omitted(key) {
            continue;
        }
        let value = match value {
            MetadataValue::Ascii(v) => v.as_bytes().to_vec(),
            MetadataValue::Binary(v) => v,
        };
        let len = (key.len() + value.len()) as u64;
        if truncated || len > left {
            truncated = true;
            continue;
        }
        left -= len;
        entries.push(pb::MetadataEntry {
            key: key.to_string(),
            value,
        });
    }
    (pb::Metadata { entry: entries }, truncated)
}

/// An address as the log records it.
pub(crate) fn address(addr: &Addr) -> pb::Address {
    match addr {
        Addr::Tcp(sock) => pb::Address {
            r#type: if sock.is_ipv4() {
                address::Type::Ipv4
            } else {
                address::Type::Ipv6
            } as i32,
            address: sock.ip().to_string(),
            ip_port: u32::from(sock.port()),
        },
        Addr::Unix(path) => pb::Address {
            r#type: address::Type::Unix as i32,
            address: path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            ip_port: 0,
        },
        Addr::Unknown => pb::Address::default(),
    }
}

impl CallLog {
    pub(super) fn new(log: BinaryLog, config: MethodConfig, client: bool) -> CallLog {
        CallLog {
            log,
            config,
            call_id: crate::stats::next_call_id(),
            client,
            sequence: AtomicU64::new(0),
            peer_logged: AtomicBool::new(false),
            half_closed: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        }
    }

    fn write(
        &self,
        kind: EventType,
        payload: Option<Payload>,
        truncated: bool,
        peer: Option<&Addr>,
    ) {
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.log.write(GrpcLogEntry {
            timestamp: Some(prost_types::Timestamp {
                seconds: timestamp.as_secs() as i64,
                nanos: timestamp.subsec_nanos() as i32,
            }),
            call_id: self.call_id,
            sequence_id_within_call: self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            r#type: kind as i32,
            logger: if self.client {
                Logger::Client
            } else {
                Logger::Server
            } as i32,
            payload,
            payload_truncated: truncated,
            peer: peer.map(address),
        });
    }

    /// The server's address, for the first entry the client receives.
    fn first_received<'a>(&self, peer: Option<&'a Addr>) -> Option<&'a Addr> {
        if self.client && !self.peer_logged.swap(true, Ordering::Relaxed) {
            peer
        } else {
            None
        }
    }

    /// The request headers: sent (client, no peer) or received (server,
    /// with the client's address).
    pub(crate) fn client_header(
        &self,
        md: &MetadataMap,
        method: &str,
        authority: Option<&str>,
        timeout: Option<Duration>,
        peer: Option<&Addr>,
    ) {
        // A retried call sends its headers again; they are logged once.
        if self.client && self.sequence.load(Ordering::Relaxed) > 0 {
            return;
        }
        let (metadata, truncated) = metadata(md, self.config.header);
        let header = pb::ClientHeader {
            metadata: Some(metadata),
            method_name: method.to_string(),
            authority: authority.unwrap_or_default().to_string(),
            timeout: timeout.map(|t| prost_types::Duration {
                seconds: t.as_secs() as i64,
                nanos: t.subsec_nanos() as i32,
            }),
        };
        let peer = if self.client { None } else { peer };
        self.write(
            EventType::ClientHeader,
            Some(Payload::ClientHeader(header)),
            truncated,
            peer,
        );
    }

    /// The response headers; `peer` is the server (logged by a client on
    /// the first entry it receives).
    pub(crate) fn server_header(&self, md: &MetadataMap, peer: Option<&Addr>) {
        let (metadata, truncated) = metadata(md, self.config.header);
        let peer = self.first_received(peer);
        self.write(
            EventType::ServerHeader,
            Some(Payload::ServerHeader(pb::ServerHeader {
                metadata: Some(metadata),
            })),
            truncated,
            peer,
        );
    }

    /// A message, serialized and uncompressed; from the client when
    /// `from_client`.
    pub(crate) fn message(&self, from_client: bool, data: &[u8]) {
        let limit = usize::try_from(self.config.message).unwrap_or(usize::MAX);
        let truncated = data.len() > limit;
        let kept = &data[..data.len().min(limit)];
        self.write(
            if from_client {
                EventType::ClientMessage
            } else {
                EventType::ServerMessage
            },
            Some(Payload::Message(pb::Message {
                length: u32::try_from(data.len()).unwrap_or(u32::MAX),
                data: kept.to_vec(),
            })),
            truncated,
            None,
        );
    }

    /// The client said it sends no more (logged once).
    pub(crate) fn half_close(&self) {
        if self.half_closed.swap(true, Ordering::Relaxed) {
            return;
        }
        self.write(EventType::ClientHalfClose, None, false, None);
    }

    /// The call's status: sent (server) or received or made up (client).
    pub(crate) fn trailer(&self, status: &Status, peer: Option<&Addr>) {
        self.finished.store(true, Ordering::Relaxed);
        let (metadata, truncated) = metadata(status.metadata(), self.config.header);
        let peer = self.first_received(peer);
        self.write(
            EventType::ServerTrailer,
            Some(Payload::Trailer(pb::Trailer {
                metadata: Some(metadata),
                status_code: status.code() as u32,
                status_message: status.message().to_string(),
                status_details: status.details().to_vec(),
            })),
            truncated,
            peer,
        );
    }

    /// The server found the call cancelled (reset by the client, or its
    /// connection gone) before it sent a status.
    pub(crate) fn cancelled_unless_trailer(&self) {
        if !self.finished.load(Ordering::Relaxed) {
            self.cancel();
        }
    }

    /// A client call failed with a status no trailer carried (made up by
    /// the library: a deadline, a lost connection, refused credentials);
    /// A16 logs it as the trailer.
    pub(crate) fn local_status(&self, status: &Status) {
        if !self.finished.load(Ordering::Relaxed) {
            self.trailer(status, None);
        }
    }

    /// The client cancelled the call.
    pub(crate) fn cancel(&self) {
        self.finished.store(true, Ordering::Relaxed);
        self.write(EventType::Cancel, None, false, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_headers_are_left_out_and_the_rest_cut_at_the_limit() {
        let mut md = MetadataMap::new();
        md.insert("a", "1234").unwrap(); // 5 bytes
        md.insert("bb", "123").unwrap(); // 5 bytes
        md.insert("c", "1").unwrap(); // 2 bytes
        let all: Vec<String> = metadata(&md, u64::MAX)
            .0
            .entry
            .iter()
            .map(|e| e.key.clone())
            .collect();
        assert!(all.contains(&"a".to_string()) && all.contains(&"c".to_string()));
        let (cut, truncated) = metadata(&md, 5);
        assert!(truncated);
        assert_eq!(cut.entry.len(), 1);
        assert_eq!(metadata(&md, 0).0.entry.len(), 0);
        for key in [
            "grpc-status",
            "user-agent",
            "te",
            "content-type",
            "lb-token",
        ] {
            assert!(omitted(key), "{key}");
        }
        assert!(!omitted("grpc-trace-bin"));
        assert!(!omitted("x-grpc"));
    }
}
