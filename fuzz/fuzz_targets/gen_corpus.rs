//! Writes the seed corpora under `fuzz/corpus/`: valid examples of each
//! format, scripts for the connection targets, and real exchanges recorded
//! between a ferrogrpc client and server over loopback TCP (through a
//! recording proxy), each direction kept as a raw seed.
//!
//! Not a fuzz target, though built as one so that it shares the targets'
//! build (and can use ferrogrpc's hidden `__fuzz` module): it writes the
//! files when it starts and exits. From `fuzz/`:
//! `cargo fuzz run --sanitizer none gen_corpus`. Rerunning replaces the
//! files (the recorded exchanges differ in PING payloads and such).
#![no_main]

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel, codec::BytesCodec, metadata::MetadataMap, server::Server, Request,
};
use ferrogrpc_fuzz::{
    echo::Echo,
    script::{self, Builder},
    wire,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

fn dir(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn put(target: &str, name: &str, data: &[u8]) {
    std::fs::write(dir(target).join(name), data).unwrap();
}

const PREFACE_SETTINGS_EOF: u8 = script::PREFACE | script::SETTINGS | script::EOF;

/// A protobuf string field (for health and reflection requests).
fn pb_string(field: u8, s: &str) -> Vec<u8> {
    let mut v = vec![(field << 3) | 2, s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

fn server_scripts() {
    let t = "server_conn";
    // Path indexes in script::PATHS.
    let (unary, sstream, cstream, bidi, fail, sleep, hcheck, hwatch, refl, refl_alpha) =
        (0, 1, 2, 3, 4, 5, 6, 7, 8, 9);
    let end = 1; // END_STREAM in a message's flags
    let b = |config| Builder::new(PREFACE_SETTINGS_EOF, config);
    put(
        t,
        "unary",
        &b(0)
            .settings_ack()
            .head(1, unary, &[])
            .message(1, end, 0, b"hello", 0)
            .build(),
    );
    put(
        t,
        "unary-metadata-timeout",
        &b(0)
            .settings_ack()
            .head(
                1,
                unary,
                &[
                    ("grpc-timeout", "1S"),
                    ("x-custom", "v"),
                    ("x-custom-bin", "AAEC/w"),
                    ("grpc-accept-encoding", "gzip, deflate"),
                    ("user-agent", "fuzz"),
                ],
            )
            .message(1, end, 0, b"with metadata", 3)
            .build(),
    );
    put(
        t,
        "unary-gzip",
        &b(0x10)
            .settings_ack()
            .head(
                1,
                unary,
                &[("grpc-encoding", "gzip"), ("grpc-accept-encoding", "gzip")],
            )
            .message(1, end | (1 << 1), 20, b"compress me ", 0)
            .build(),
    );
    put(
        t,
        "unary-zstd-bomb",
        &b(1)
            .settings_ack()
            .head(1, unary, &[("grpc-encoding", "zstd")])
            .message(1, end | (3 << 1), 255, b"\0\0\0\0\0\0\0\0", 0)
            .build(),
    );
    put(
        t,
        "unary-deflate-chunked",
        &b(0)
            .settings_ack()
            .head(1, unary, &[("grpc-encoding", "deflate")])
            .message(1, end | (2 << 1), 4, b"deflated", 1)
            .build(),
    );
    put(
        t,
        "server-stream",
        &b(0)
            .settings_ack()
            .head(1, sstream, &[])
            .message(1, end, 0, b"\x03abc", 0)
            .window_update(0, 1 << 20)
            .build(),
    );
    put(
        t,
        "client-stream",
        &b(0)
            .settings_ack()
            .head(1, cstream, &[])
            .message(1, 0, 0, b"one", 0)
            .message(1, 0, 0, b"two", 2)
            .message(1, end, 0, b"three", 0)
            .build(),
    );
    put(
        t,
        "bidi-two-streams",
        &b(0)
            .settings_ack()
            .head(1, bidi, &[])
            .head(3, bidi, &[])
            .message(1, 0, 0, b"a", 0)
            .message(3, 0, 0, b"b", 0)
            .data(1, 1, b"")
            .rst(3, 8)
            .build(),
    );
    put(
        t,
        "fail",
        &b(0)
            .settings_ack()
            .head(1, fail, &[])
            .message(1, end, 0, b"\x05not found: \xc3\xbc 100%", 0)
            .build(),
    );
    put(
        t,
        "sleep-deadline",
        &b(0)
            .settings_ack()
            .head(1, sleep, &[("grpc-timeout", "100m")])
            .message(1, end, 0, b"zz", 0)
            .sleep(20)
            .build(),
    );
    put(
        t,
        "sleep-cancel",
        &b(0)
            .settings_ack()
            .head(1, sleep, &[])
            .message(1, end, 0, b"zz", 0)
            .sleep(5)
            .rst(1, 8)
            .build(),
    );
    put(
        t,
        "health-check",
        &b(0)
            .settings_ack()
            .head(1, hcheck, &[])
            .message(1, end, 0, &pb_string(1, ""), 0)
            .build(),
    );
    put(
        t,
        "health-watch",
        &b(0)
            .settings_ack()
            .head(1, hwatch, &[])
            .message(1, end, 0, &pb_string(1, "test.Echo"), 0)
            .sleep(10)
            .build(),
    );
    put(
        t,
        "reflection-list",
        &b(0)
            .settings_ack()
            .head(1, refl, &[])
            .message(1, 0, 0, &pb_string(7, ""), 0)
            .message(1, end, 0, &pb_string(4, "test.Echo"), 0)
            .build(),
    );
    put(
        t,
        "reflection-alpha-file",
        &b(0)
            .settings_ack()
            .head(1, refl_alpha, &[])
            .message(1, 0, 0, &pb_string(3, "grpc/health/v1/health.proto"), 0)
            .message(1, end, 0, &pb_string(4, "grpc.health.v1.Health"), 0)
            .build(),
    );
    put(
        t,
        "unknown-method",
        &b(0)
            .settings_ack()
            .head(1, 10, &[])
            .message(1, end, 0, b"", 0)
            .build(),
    );
    put(
        t,
        "get-no-te-no-ct",
        &b(0)
            .settings_ack()
            .head(1, 0x80 | 0x40 | 0x20 | unary, &[])
            .build(),
    );
    put(
        t,
        "bad-timeout-encoding",
        &b(0)
            .settings_ack()
            .head(
                1,
                unary,
                &[("grpc-timeout", "123456789S"), ("grpc-encoding", "snappy")],
            )
            .message(1, end, 0, b"x", 0)
            .build(),
    );
    put(
        t,
        "headers-continuation",
        &b(0)
            .settings_ack()
            .headers(
                1,
                2,
                &[
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/test.Echo/Unary"),
                    (":authority", "fuzz.test"),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                ],
                20,
            )
            .message(1, end, 0, b"split head", 0)
            .build(),
    );
    put(
        t,
        "open-header-block",
        &Builder::new(script::PREFACE | script::SETTINGS, 0x80)
            .headers(
                1,
                2 | 4,
                &[(":method", "POST"), (":path", "/test.Echo/Unary")],
                5,
            )
            .frame(wire::CONTINUATION, 0, 1, &[])
            .sleep(40)
            .build(),
    );
    put(
        t,
        "too-large",
        &b(1)
            .settings_ack()
            .head(1, unary, &[])
            .message(1, end, 10, b"0123456789abcdef", 0)
            .build(),
    );
    put(
        t,
        "bad-flag",
        &b(0)
            .settings_ack()
            .head(1, unary, &[])
            .message(1, end | (5 << 1), 0, b"x", 0)
            .build(),
    );
    put(
        t,
        "truncated",
        &b(0)
            .settings_ack()
            .head(1, unary, &[])
            .message(1, end | (6 << 1), 0, b"x", 0)
            .build(),
    );
    put(
        t,
        "pings-and-settings",
        &b(0x08)
            .settings(&[(1, 4096), (3, 100), (4, 65535), (5, 16384), (6, 8192)])
            .settings_ack()
            .ping(false, *b"12345678")
            .ping(false, *b"12345678")
            .ping(true, *b"00000000")
            .window_update(0, 1000)
            .build(),
    );
    put(t, "rapid-reset", &{
        let mut bld = b(0x04).settings_ack();
        for sid in (1..60u8).step_by(2) {
            bld = bld.head(sid, sstream, &[]).rst(sid, 8);
        }
        bld.build()
    });
    put(
        t,
        "goaway-then-more",
        &b(0)
            .settings_ack()
            .head(1, unary, &[])
            .goaway(0, 0, b"bye")
            .message(1, end, 0, b"late", 0)
            .build(),
    );
    put(
        t,
        "graceful-stop",
        &Builder::new(script::PREFACE | script::SETTINGS | script::STOP, 0x20)
            .settings_ack()
            .head(1, sleep, &[])
            .message(1, end, 0, b"", 0)
            .sleep(30)
            .build(),
    );
    put(
        t,
        "idle-age",
        &Builder::new(script::PREFACE | script::SETTINGS, 0x20)
            .settings_ack()
            .sleep(200)
            .build(),
    );
    put(
        t,
        "no-preface",
        &Builder::new(script::RAW | script::EOF, 0)
            .raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .build(),
    );
    put(
        t,
        "tls-hello",
        &Builder::new(script::RAW | script::EOF, 0)
            .raw(&[0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0])
            .build(),
    );
    put(
        t,
        "preface-only-stop",
        &[script::PREFACE | script::RAW | script::STOP, 0],
    );
}

fn client_scripts() {
    let t = "client_conn";
    // Call bytes: bits 0-1 messages, bit 2 half-close, bit 3 gzip, bit 4
    // cancel after one, bit 5 timeout, bits 6-7 method.
    let unary_call = 0x05; // one message, half-close, Unary
    let stream_call = 0x45; // ServerStream
    let end = 1;
    let one = |config| Builder::new(script::SETTINGS | script::EOF, config);
    put(
        t,
        "unary-ok",
        &one(0)
            .byte(unary_call)
            .settings_ack()
            .settle()
            .head(1, 0, &[("x-custom", "v")])
            .message(1, 0, 0, b"reply", 0)
            .trailers(1, 0, &[("x-custom-bin", "AAEC/w")])
            .build(),
    );
    put(
        t,
        "unary-error-details",
        &one(0)
            .byte(unary_call)
            .settle()
            .head(1, 0, &[])
            .trailers(
                1,
                5,
                &[
                    ("grpc-message", "100%25%zz%"),
                    ("grpc-status-details-bin", "AAEC/w=="),
                    ("grpc-retry-pushback-ms", "100"),
                ],
            )
            .build(),
    );
    put(
        t,
        "trailers-only",
        &one(0)
            .byte(unary_call)
            .settle()
            .head(1, 0x08 | (14 << 4), &[("grpc-message", "down")])
            .build(),
    );
    put(
        t,
        "http-404",
        &one(0)
            .byte(unary_call)
            .settle()
            .head(1, 2 | 0x04 | 0x08, &[])
            .build(),
    );
    put(
        t,
        "gzip-response",
        &one(0)
            .byte(unary_call | 0x08)
            .settle()
            .head(1, 0x10, &[])
            .message(1, 1 << 1, 10, b"zipped ", 0)
            .trailers(1, 0, &[])
            .build(),
    );
    put(
        t,
        "zstd-bomb",
        &one(0x10)
            .byte(unary_call)
            .settle()
            .head(1, 0x20, &[])
            .message(1, 3 << 1, 200, b"\0\0\0\0\0\0\0\0", 0)
            .trailers(1, 0, &[])
            .build(),
    );
    put(
        t,
        "stream-chunked",
        &one(0)
            .byte(stream_call)
            .settle()
            .head(1, 0, &[])
            .message(1, 0, 0, b"first", 1)
            .message(1, 0, 0, b"second", 3)
            .message(1, 0, 0, b"third", 0)
            .trailers(1, 0, &[])
            .build(),
    );
    put(
        t,
        "three-calls-goaway",
        &one(2)
            .byte(unary_call)
            .byte(stream_call)
            .byte(0x25)
            .settle()
            .head(1, 0, &[])
            .goaway(1, 0, b"draining")
            .message(1, 0, 0, b"ok", 0)
            .trailers(1, 0, &[])
            .build(),
    );
    put(
        t,
        "rst-refused",
        &one(1)
            .byte(unary_call)
            .byte(unary_call)
            .settle()
            .rst(1, 7)
            .head(3, 0, &[])
            .rst(3, 2)
            .build(),
    );
    put(
        t,
        "keepalive-silent",
        &Builder::new(script::SETTINGS, 0x04)
            .byte(unary_call | 0x20)
            .settle()
            .sleep(100)
            .build(),
    );
    put(
        t,
        "truncated-message",
        &one(0)
            .byte(unary_call)
            .settle()
            .head(1, 0, &[])
            .message(1, end | (6 << 1), 0, b"x", 0)
            .build(),
    );
    put(
        t,
        "compressed-without-encoding",
        &one(0)
            .byte(unary_call)
            .settle()
            .head(1, 0, &[])
            .message(1, 4 << 1, 0, b"x", 0)
            .trailers(1, 0, &[])
            .build(),
    );
    put(
        t,
        "settings-ping-window",
        &one(0x20)
            .byte(0x06)
            .settings(&[(1, 0), (3, 1), (4, 1), (5, 16384)])
            .ping(false, *b"pingpong")
            .settle()
            .window_update(1, 65535)
            .window_update(0, 65535)
            .head(1, 0, &[])
            .trailers(1, 0, &[])
            .build(),
    );
    put(
        t,
        "http1-server",
        &Builder::new(script::RAW | script::EOF, 0)
            .byte(unary_call)
            .raw(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .build(),
    );
}

fn small_targets() {
    // deframer: max index, cut count, cuts, then the wire.
    let mut wire = wire::grpc_message(0, b"abc");
    wire.extend(wire::grpc_message(1, b""));
    wire.extend(wire::grpc_message(0, &[7u8; 300]));
    put(
        "deframer",
        "three",
        &[&[4u8, 3, 0, 6, 99][..], &wire].concat(),
    );
    put(
        "deframer",
        "one-byte-cuts",
        &[&[5u8, 1, 0][..], &wire].concat(),
    );
    put(
        "deframer",
        "too-large",
        &[
            &[2u8, 1, 3][..],
            &wire::grpc_message(0, b"0123456789abcdef"),
        ]
        .concat(),
    );
    put(
        "deframer",
        "bad-flag",
        &[&[6u8, 1, 1][..], &wire::grpc_message(2, b"x")].concat(),
    );
    put(
        "deframer",
        "cut-off",
        &[&[6u8, 1, 2][..], &wire::grpc_message(0, b"abcdef")[..8]].concat(),
    );
    put(
        "deframer",
        "huge-announced",
        &[6u8, 1, 2, 0, 0xff, 0xff, 0xff, 0xff, 1, 2],
    );

    // decompress: mode (algorithm, bit 2 plaintext mode), limit, data.
    for (i, name) in ["gzip", "deflate", "zstd"].iter().enumerate() {
        let data = wire::compress(name, b"hello hello hello hello");
        put(
            "decompress",
            &format!("{name}-data"),
            &[&[i as u8, 3][..], &data].concat(),
        );
        put(
            "decompress",
            &format!("{name}-bomb"),
            &[i as u8 | 4, 2, 100, 0, 0, 0, 0],
        );
        put(
            "decompress",
            &format!("{name}-fits"),
            &[i as u8 | 4, 4, 3, b'a', b'b'],
        );
        let mut bad = data.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        put(
            "decompress",
            &format!("{name}-corrupt"),
            &[&[i as u8, 6][..], &bad].concat(),
        );
    }
    put("decompress", "garbage", &[0, 3, b'n', b'o', b'p', b'e']);

    for (name, v) in [
        ("seconds", "1S"),
        ("millis", "100m"),
        ("max-hours", "99999999H"),
        ("nanos", "1n"),
        ("micros", "250u"),
        ("minutes", "5M"),
        ("too-long", "123456789S"),
        ("bad-unit", "1s"),
    ] {
        put("grpc_timeout", name, v.as_bytes());
    }
    put(
        "grpc_timeout",
        "duration",
        &[0x40, 0x42, 0x0f, 0, 0, 0, 0, 0, 0x15, 0xcd, 0x5b, 0x07],
    );

    for (name, v) in [
        ("plain", &b"not found"[..]),
        ("percent", b"100%25 done"),
        ("utf8", b"caf%C3%A9 %E2%82%AC"),
        ("lenient", b"%zz%4%"),
        ("invalid-utf8", b"%FF%FE"),
        ("raw-utf8", "\u{e9}t\u{e9}".as_bytes()),
    ] {
        put("grpc_message", name, v);
    }

    let field = |name: &str, value: &[u8]| -> Vec<u8> {
        [
            &[name.len() as u8][..],
            name.as_bytes(),
            &[value.len() as u8],
            value,
        ]
        .concat()
    };
    put(
        "metadata",
        "trailers",
        &[
            &[1u8][..],
            &field("grpc-status", b"5"),
            &field("grpc-message", b"not%20here"),
            &field("grpc-status-details-bin", b"CAUSBm5vIGRpY2U"),
            &field("grpc-retry-pushback-ms", b"250"),
            &field("x-custom", b"v"),
            &field("x-custom-bin", b"AAEC/w=="),
            &field("x-custom-bin", b"AAEC/w"),
        ]
        .concat(),
    );
    put(
        "metadata",
        "request",
        &[
            &[0u8][..],
            &field("content-type", b"application/grpc+proto"),
            &field("te", b"trailers"),
            &field("grpc-encoding", b"gzip"),
            &field("grpc-accept-encoding", b"identity, GZIP ,zstd"),
            &field("grpc-timeout", b"1S"),
            &field("user-agent", b"grpc-go/1.60"),
            &field("Key-One", b"value 1"),
        ]
        .concat(),
    );
    put(
        "metadata",
        "bad-base64",
        &[&[0u8][..], &field("k-bin", b"!!!"), &field("k", b"caf\xe9")].concat(),
    );

    let configs = [
        ("empty", "{}"),
        (
            "service-config-md",
            r#"{"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": [{"name": [{"service": "test.Echo", "method": "Unary"}, {"service": "test.Echo"}], "waitForReady": true, "timeout": "1.000000001s", "maxRequestMessageBytes": 1024, "maxResponseMessageBytes": "2048"}], "healthCheckConfig": {"serviceName": "test.Echo"}}"#,
        ),
        (
            "retry",
            r#"{"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 4, "initialBackoff": ".1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", 13]}}], "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}}"#,
        ),
        (
            "hedging",
            r#"{"methodConfig": [{"name": [{"service": "test.Echo", "method": "Unary"}], "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.5s", "nonFatalStatusCodes": ["UNAVAILABLE"]}}]}"#,
        ),
        ("legacy-policy", r#"{"loadBalancingPolicy": "ROUND_ROBIN"}"#),
        ("duration", "315576000000.999999999s"),
    ];
    for (name, json) in configs {
        put("service_config", name, json.as_bytes());
    }

    let txt = |flag: u8, records: &[&str]| -> Vec<u8> {
        [&[flag][..], records.join("\0").as_bytes()].concat()
    };
    put(
        "dns_txt",
        "choices",
        &txt(
            30,
            &[
                r#"grpc_config=[{"clientLanguage": ["go"], "serviceConfig": {"loadBalancingPolicy": "go"}}, {"clientLanguage": ["rust"], "percentage": 50, "clientHostname": ["fuzz-host"], "serviceConfig": {"loadBalancingConfig": [{"round_robin": {}}]}}, {"serviceConfig": {}}]"#,
            ],
        ),
    );
    put(
        "dns_txt",
        "prefixed",
        &txt(
            0x80,
            &[r#"[{"serviceConfig": {"methodConfig": [{"name": [{}], "timeout": "1s"}]}}]"#],
        ),
    );
    put(
        "dns_txt",
        "several-records",
        &txt(
            0,
            &[
                "v=spf1 -all",
                r#"grpc_config=[{"serviceConfig": {}}]"#,
                r#"grpc_config=[{"serviceConfig": {}}]"#,
            ],
        ),
    );
    put(
        "dns_txt",
        "bad-choice",
        &txt(
            0,
            &[r#"grpc_config=[{"percentage": 101, "serviceConfig": {}}, {"unknown": 1}]"#],
        ),
    );

    for (name, target) in [
        ("host-port", "example.com:50051"),
        ("dns-authority", "dns://8.8.8.8:53/example.com:443"),
        ("dns-opaque", "dns:example.com"),
        ("ipv4-list", "ipv4:10.0.0.1:80,10.0.0.2"),
        ("ipv6-list", "ipv6:[::1]:443,[fe80::1%252]:80,::2"),
        ("unix-abs", "unix:///tmp/sock"),
        ("unix-rel", "unix:rel/sock%20name"),
        ("unix-abstract", "unix-abstract:name"),
        ("https", "https://example.com"),
        ("http-port", "http://[::1]:8080"),
        ("query-fragment", "custom://auth/path?x=1#frag"),
        ("bare-ipv6", "::1"),
        ("unregistered", "foo:bar"),
    ] {
        put("target", name, target.as_bytes());
    }
}

/// Copies bytes one way, keeping a copy.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    log: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                log.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// Runs `exchange` on a channel through a recording proxy; returns the
/// bytes the client sent and those the server sent.
async fn record<F, Fut>(server: std::net::SocketAddr, exchange: F) -> (Vec<u8>, Vec<u8>)
where
    F: FnOnce(Channel) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let up = Arc::new(Mutex::new(Vec::new()));
    let down = Arc::new(Mutex::new(Vec::new()));
    let (u, d) = (Arc::clone(&up), Arc::clone(&down));
    let task = tokio::spawn(async move {
        let (client, _) = proxy.accept().await.unwrap();
        let backend = TcpStream::connect(server).await.unwrap();
        let (cr, cw) = client.into_split();
        let (br, bw) = backend.into_split();
        tokio::join!(pump(cr, bw, u), pump(br, cw, d));
    });
    let channel = Channel::builder(format!("http://{proxy_addr}"))
        .dynamic_window(false)
        .build()
        .unwrap();
    exchange(channel.clone()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    channel.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    let up = up.lock().unwrap().clone();
    let down = down.lock().unwrap().clone();
    (up, down)
}

fn path(p: &'static str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_static(p)
}

async fn recordings() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = ferrogrpc::health::Server::new();
    let server = Server::builder()
        .add_service(Echo)
        .add_health(&health)
        .dynamic_window(false)
        .build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });

    let mut seeds: Vec<(&str, u8, (Vec<u8>, Vec<u8>))> = Vec::new();
    seeds.push((
        "rec-unary",
        0x05,
        record(addr, |ch| async move {
            let _ = ch
                .unary::<Bytes, Bytes, _>(
                    path("/test.Echo/Unary"),
                    Request::new(Bytes::from_static(b"hello")),
                    BytesCodec,
                )
                .await;
        })
        .await,
    ));
    seeds.push((
        "rec-unary-gzip-metadata",
        0x0d | 0x20,
        record(addr, |ch| async move {
            let mut md = MetadataMap::new();
            md.insert("x-custom", "value").unwrap();
            md.insert_bin("x-custom-bin", [0u8, 1, 2, 255]).unwrap();
            let mut req = Request::new(Bytes::from(vec![b'z'; 500]))
                .with_timeout(Duration::from_secs(5))
                .with_compression("gzip");
            *req.metadata_mut() = md;
            let _ = ch
                .unary::<Bytes, Bytes, _>(path("/test.Echo/Unary"), req, BytesCodec)
                .await;
        })
        .await,
    ));
    seeds.push((
        "rec-server-stream",
        0x45,
        record(addr, |ch| async move {
            if let Ok(resp) = ch
                .server_streaming::<Bytes, Bytes, _>(
                    path("/test.Echo/ServerStream"),
                    Request::new(Bytes::from_static(b"\x03abc")),
                    BytesCodec,
                )
                .await
            {
                let mut s = resp.into_inner();
                while let Ok(Some(_)) = s.message().await {}
            }
        })
        .await,
    ));
    seeds.push((
        "rec-bidi",
        0x86,
        record(addr, |ch| async move {
            if let Ok((mut sink, mut stream)) = ch
                .streaming::<Bytes, Bytes, _>(path("/test.Echo/Bidi"), Request::new(()), BytesCodec)
                .await
            {
                for m in [&b"one"[..], b"two"] {
                    let _ = sink.send(Bytes::from_static(m)).await;
                    let _ = stream.message().await;
                }
                let _ = sink.close();
                while let Ok(Some(_)) = stream.message().await {}
            }
        })
        .await,
    ));
    seeds.push((
        "rec-client-stream",
        0x06,
        record(addr, |ch| async move {
            if let Ok(mut call) = ch
                .client_streaming::<Bytes, Bytes, _>(
                    path("/test.Echo/ClientStream"),
                    Request::new(()),
                    BytesCodec,
                )
                .await
            {
                for m in [&b"a"[..], b"bb", b"ccc"] {
                    let _ = call.send(Bytes::from_static(m)).await;
                }
                let _ = call.close_and_recv().await;
            }
        })
        .await,
    ));
    seeds.push((
        "rec-fail",
        0x05,
        record(addr, |ch| async move {
            let _ = ch
                .unary::<Bytes, Bytes, _>(
                    path("/test.Echo/Fail"),
                    Request::new(Bytes::from_static(b"\x07denied: \xe2\x82\xac")),
                    BytesCodec,
                )
                .await;
        })
        .await,
    ));
    seeds.push((
        "rec-health",
        0xc5,
        record(addr, |ch| async move {
            let _ = ch
                .unary::<Bytes, Bytes, _>(
                    path("/grpc.health.v1.Health/Check"),
                    Request::new(Bytes::new()),
                    BytesCodec,
                )
                .await;
        })
        .await,
    ));
    seeds.push((
        "rec-unimplemented",
        0x05,
        record(addr, |ch| async move {
            let _ = ch
                .unary::<Bytes, Bytes, _>(
                    path("/test.Echo/Nope"),
                    Request::new(Bytes::new()),
                    BytesCodec,
                )
                .await;
        })
        .await,
    ));
    for (name, call_byte, (up, down)) in seeds {
        // The client's bytes, as they are (preface and SETTINGS included).
        put(
            "server_conn",
            name,
            &[&[script::RAW | script::EOF, 0][..], &up].concat(),
        );
        // The server's bytes, answering the same call (its stream id 1).
        put(
            "client_conn",
            name,
            &[&[script::RAW | script::EOF, 0, call_byte][..], &down].concat(),
        );
    }
    server.stop();
}

fn generate() {
    server_scripts();
    client_scripts();
    small_targets();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(recordings());
    println!(
        "corpora written under {}",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .display()
    );
}

libfuzzer_sys::fuzz_target!(
    init: {
        generate();
        // Nothing to fuzz; the input loop is never wanted.
        if std::env::var_os("GEN_CORPUS_THEN_FUZZ").is_none() {
            std::process::exit(0);
        }
    },
    |_data: &[u8]| {}
);
