//! The client, whole: a `Channel` whose dialer hands it one end of an
//! in-memory duplex (the public `ChannelBuilder::dialer`), the other end
//! driven by the input as the server's bytes, with one to four calls on
//! it. Reaches the connect path (the wait for the server's SETTINGS), the
//! connection's driver task (keepalive and BDP pings, GOAWAY), h2's client
//! side, the frame inspector, the call layer (deadlines, cancellation,
//! transparent retry, compression), response-head checks (HTTP status,
//! content type, Trailers-Only, `grpc-encoding`), response metadata, the
//! deframer and decompression, and status parsing from trailers
//! (`grpc-status`, `grpc-message`, `grpc-status-details-bin`, pushback).
//!
//! Checks: no panic; once the server's end is closed (EOF flag) every call
//! ends within a bounded (virtual) time; a message received never exceeds
//! the max receive size.
//!
//! Byte 1 (config): bits 0-1 calls - 1; bit 2 keepalive (10 s, 1 s, also
//! without calls); bit 3 no BDP; bit 4 max receive 64 bytes (else 4 MiB);
//! bit 5 the smallest windows. Then one byte per call: bits 0-1 request
//! messages (a unary call sends one whatever they say), bit 2 half-close,
//! bit 3 gzip requests, bit 4 cancel after one response message, bit 5 a
//! 1.5 s timeout, bits 6-7 the method (Unary, ServerStream, Bidi, health
//! Check).
#![no_main]

use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel, codec::BytesCodec, keepalive::ClientParameters, resolver::Address, Request,
};
use ferrogrpc_fuzz::{run_paused, script, Cursor};
use http::uri::PathAndQuery;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// How long calls may last once the server's end is closed.
const AFTER_EOF: Duration = Duration::from_secs(60);
/// Responses read per call at most.
const MAX_MESSAGES: usize = 16;

const METHODS: [&str; 4] = [
    "/test.Echo/Unary",
    "/test.Echo/ServerStream",
    "/test.Echo/Bidi",
    "/grpc.health.v1.Health/Check",
];

fn request<T>(message: T, k: u8) -> Request<T> {
    let mut req = Request::new(message);
    if k & 0x20 != 0 {
        req = req.with_timeout(Duration::from_millis(1500));
    }
    if k & 0x08 != 0 {
        req = req.with_compression("gzip");
    }
    req
}

/// One call as its byte says; returns the messages it read.
async fn call(channel: Channel, i: u8, k: u8, max_recv: usize) -> usize {
    let path = PathAndQuery::from_static(METHODS[usize::from(k >> 6)]);
    let messages: Vec<Bytes> = (0..(k & 3))
        .map(|j| Bytes::from(vec![i, j, 0x0a, 0x01, 0x41]))
        .collect();
    let first = messages.first().cloned().unwrap_or_default();
    let check = |m: &Bytes| assert!(m.len() <= max_recv, "{} > {max_recv}", m.len());
    match k >> 6 {
        0 | 3 => {
            if let Ok(resp) = channel
                .unary::<Bytes, Bytes, _>(path, request(first, k), BytesCodec)
                .await
            {
                check(resp.get_ref());
                return 1;
            }
            0
        }
        1 => {
            let Ok(resp) = channel
                .server_streaming::<Bytes, Bytes, _>(path, request(first, k), BytesCodec)
                .await
            else {
                return 0;
            };
            let mut stream = resp.into_inner();
            let mut n = 0;
            while n < MAX_MESSAGES {
                if k & 0x10 != 0 && n == 1 {
                    // Cancelled: the stream is dropped.
                    break;
                }
                match stream.message().await {
                    Ok(Some(m)) => {
                        check(&m);
                        n += 1;
                    }
                    _ => break,
                }
            }
            let _ = stream.trailers();
            n
        }
        _ => {
            let Ok((mut sink, mut stream)) = channel
                .streaming::<Bytes, Bytes, _>(path, request((), k), BytesCodec)
                .await
            else {
                return 0;
            };
            for m in messages {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            if k & 0x04 != 0 {
                let _ = sink.close();
            }
            let mut n = 0;
            while n < MAX_MESSAGES {
                if k & 0x10 != 0 && n == 1 {
                    sink.cancel();
                }
                match stream.message().await {
                    Ok(Some(m)) => {
                        check(&m);
                        n += 1;
                    }
                    _ => break,
                }
            }
            n
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let (flags, config) = script::header(&mut c);
    let calls: Vec<u8> = (0..=(config & 3)).map(|_| c.u8()).collect();
    let max_recv = if config & 0x10 != 0 { 64 } else { 4 << 20 };
    let script = script::decode(flags, config, script::Side::Server, &mut c);
    run_paused(async move {
        let (client_io, server) = tokio::io::duplex(64 << 10);
        // One connection: later dials are refused (the calls then fail).
        let slot: Arc<Mutex<Option<DuplexStream>>> = Arc::new(Mutex::new(Some(client_io)));
        let dialer = move |_: Address| {
            let io = slot.lock().unwrap().take();
            async move {
                io.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::ConnectionRefused, "one connection only")
                })
            }
        };
        let mut builder = Channel::builder("passthrough:///fuzz.test")
            .dialer(dialer)
            .max_decoding_message_size(max_recv)
            .dynamic_window(config & 0x08 == 0);
        if config & 0x04 != 0 {
            let mut params = ClientParameters::default();
            params.time = Some(Duration::from_secs(10));
            params.timeout = Duration::from_secs(1);
            params.permit_without_calls = true;
            builder = builder.keepalive_params(params);
        }
        if config & 0x20 != 0 {
            builder = builder
                .initial_stream_window_size(65_535)
                .initial_connection_window_size(65_535);
        }
        let channel = builder.build().expect("a valid channel");
        let (mut rx, mut tx) = tokio::io::split(server);
        // The client's output: read and dropped.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 << 10];
            while let Ok(n) = rx.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
        let tasks: Vec<_> = calls
            .iter()
            .enumerate()
            .map(|(i, &k)| tokio::spawn(call(channel.clone(), i as u8, k, max_recv)))
            .collect();
        let all = async move {
            for task in tasks {
                task.await.expect("a call task panicked");
            }
        };
        tokio::pin!(all);
        script::run(&script, &mut tx).await;
        if script.has(script::EOF) {
            // The other half lives on in the reader: shut down explicitly.
            let _ = tx.shutdown().await;
            if tokio::time::timeout(AFTER_EOF, &mut all).await.is_err() {
                panic!("calls still running {AFTER_EOF:?} after the server's EOF");
            }
        } else {
            // Time runs on (keepalive, deadlines, the connect timeout).
            let _ = tokio::time::timeout(Duration::from_secs(60), &mut all).await;
        }
        channel.close();
        // Let the channel's tasks wind down (a connection attempt still
        // waiting for SETTINGS, say) before the runtime is dropped: dropped
        // with them pending, some 15 KB per run stay allocated, which ends
        // long runs in an out-of-memory report.
        tokio::time::sleep(Duration::from_secs(120)).await;
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    });
});
