//! The client transport, whole: one connection (handshake, driver task
//! with keepalive and BDP pings, GOAWAY handling) over an in-memory duplex
//! whose server end is driven by the input, with one to four calls on it.
//! Reaches h2's client side, the frame inspector, the wait for the
//! server's SETTINGS, response-head checks (HTTP status, content type,
//! Trailers-Only, `grpc-encoding`), response metadata, the deframer and
//! decompression, and status parsing from trailers (`grpc-status`,
//! `grpc-message`, `grpc-status-details-bin`, pushback).
//!
//! Checks: no panic; once the server's end is closed (EOF flag) every call
//! ends within a bounded (virtual) time.
//!
//! Byte 1 (config): bits 0-1 calls - 1; bit 2 keepalive (10 s, 1 s, also
//! without calls); bit 3 no BDP; bit 4 max receive 64 bytes (else 4 MiB);
//! bit 5 the smallest windows. Then one byte per call: bits 0-1 request
//! messages, bit 2 half-close, bit 3 gzip requests, bit 4 cancel after one
//! response message, bit 5 a timeout, bits 6-7 the method.
#![no_main]

use std::time::Duration;

use ferrogrpc::__fuzz::{client_connect, CallSpec, ClientOptions};
use ferrogrpc_fuzz::{run_paused, script, Cursor};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long calls may last once the server's end is closed.
const AFTER_EOF: Duration = Duration::from_secs(60);

const METHODS: [&str; 4] = [
    "/test.Echo/Unary",
    "/test.Echo/ServerStream",
    "/test.Echo/Bidi",
    "/grpc.health.v1.Health/Check",
];

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let (flags, config) = script::header(&mut c);
    let mut options = ClientOptions::default();
    if config & 0x04 != 0 {
        options.keepalive = Some((Duration::from_secs(10), Duration::from_secs(1)));
        options.permit_without_calls = true;
    }
    options.bdp = config & 0x08 == 0;
    if config & 0x20 != 0 {
        options.initial_stream_window_size = 65_535;
        options.initial_connection_window_size = 65_535;
    }
    let max_recv = if config & 0x10 != 0 { 64 } else { 4 << 20 };
    let calls: Vec<CallSpec> = (0..=(config & 3))
        .map(|i| {
            let k = c.u8();
            CallSpec {
                path: METHODS[usize::from(k >> 6)].to_string(),
                timeout: (k & 0x20 != 0).then_some(Duration::from_millis(1500)),
                messages: (0..(k & 3)).map(|j| vec![i, j, 0x0a, 0x01, 0x41]).collect(),
                compression: (k & 0x08 != 0).then_some("gzip"),
                half_close: k & 0x04 != 0,
                cancel_after: (k & 0x10 != 0).then_some(1),
                max_recv,
                max_messages: 16,
            }
        })
        .collect();
    let script = script::decode(flags, config, script::Side::Server, &mut c);
    run_paused(async move {
        let (client_io, server) = tokio::io::duplex(64 << 10);
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
        let client = tokio::spawn(async move {
            let conn = match client_connect(client_io, &options).await {
                Ok(conn) => std::sync::Arc::new(conn),
                Err(_) => return,
            };
            let mut tasks = Vec::new();
            for spec in calls {
                let conn = std::sync::Arc::clone(&conn);
                tasks.push(tokio::spawn(async move { conn.call(spec).await }));
            }
            for task in tasks {
                let outcome = task.await.expect("a call task panicked");
                // A call that ended OK read all its messages.
                if let Ok(Some(_)) = outcome.result {
                    assert!(outcome.messages.len() <= 16);
                }
            }
            let _ = conn.events();
        });
        script::run(&script, &mut tx).await;
        if script.has(script::EOF) {
            // The other half lives on in the reader: shut down explicitly.
            let _ = tx.shutdown().await;
            drop(tx);
            match tokio::time::timeout(AFTER_EOF, client).await {
                Ok(joined) => joined.expect("the client task panicked"),
                Err(_) => panic!("calls still running {AFTER_EOF:?} after the server's EOF"),
            }
        } else {
            // Time runs on (keepalive, connect timeout), then the client
            // is dropped with the runtime.
            match tokio::time::timeout(Duration::from_secs(60), client).await {
                Ok(joined) => joined.expect("the client task panicked"),
                Err(_) => {}
            }
            drop(tx);
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    });
});
