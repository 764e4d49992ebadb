//! Results: the derived per-operation figures, the human-readable table and
//! the JSON line.
//!
//! An operation is a unary RPC, a ping-pong round trip (one request and one
//! response message), or, for unconstrained streaming, one message sent or
//! received by the client.

use std::{fmt::Write as _, time::Duration};

use crate::{
    driver::Measurement,
    flags::{Mode, RunConfig, Workload},
    resources::Resources,
};

/// One configuration's results.
#[derive(Debug)]
pub struct Report {
    /// The implementation measured: `"ferrogrpc"` or `"tonic"`.
    pub system: &'static str,
    /// Where the client and server ran.
    pub mode: Mode,
    /// Tokio worker threads of this process.
    pub runtime_threads: usize,
    /// The configuration.
    pub config: RunConfig,
    /// The measurement.
    pub measurement: Measurement,
    /// For unconstrained streaming: which workers were senders (the others
    /// received).
    pub senders: Vec<bool>,
    /// Uncompressed/compressed size of the payload under the configured
    /// compressor.
    pub compression_ratio: Option<f64>,
}

/// Per-operation figures of a [`Report`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Derived {
    /// Operations in the window.
    pub ops: u64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Messages sent by the client per second (unconstrained only).
    pub sent_per_sec: Option<f64>,
    /// Messages received by the client per second (unconstrained only).
    pub recv_per_sec: Option<f64>,
    /// Latency percentiles p50, p90, p99, p99.9, max, mean in microseconds
    /// (not for unconstrained streaming).
    pub latency_us: Option<[f64; 6]>,
    /// Allocations per op, client and server together (when both counted).
    pub allocs_per_op: Option<f64>,
    /// Bytes allocated per op, client and server together.
    pub alloc_bytes_per_op: Option<f64>,
    /// CPU microseconds per op, client and server together (inproc: the one
    /// process; client mode: only when the server reported its counters).
    pub cpu_us_per_op: Option<f64>,
    /// Client side alone, in client mode: (allocs/op, CPU us/op).
    pub client: Option<(Option<f64>, f64)>,
    /// Server side alone, in client mode: (allocs/op, CPU us/op).
    pub server: Option<(Option<f64>, f64)>,
    /// Payload megabytes (10^6) per second through the stack, both
    /// directions: with compression on, what went through the compressor.
    pub payload_mb_per_sec: f64,
}

fn per_op(side: &Resources, ops: f64) -> (Option<f64>, f64) {
    let allocs = side
        .counts_allocations
        .then(|| side.allocations as f64 / ops);
    (allocs, side.cpu().as_secs_f64() * 1e6 / ops)
}

impl Report {
    /// Computes the per-operation figures.
    pub fn derive(&self) -> Derived {
        let m = &self.measurement;
        let ops = m.ops();
        let secs = m.elapsed.as_secs_f64().max(1e-9);
        let opsf = (ops as f64).max(1.0);
        let (sent, recv) = if self.config.workload == Workload::Unconstrained {
            let sent: u64 = m
                .ops_per_worker
                .iter()
                .zip(&self.senders)
                .filter(|(_, s)| **s)
                .map(|(n, _)| n)
                .sum();
            (Some(sent), Some(ops - sent))
        } else {
            (None, None)
        };
        let latency_us = (self.config.workload != Workload::Unconstrained && ops > 0).then(|| {
            let q = |p: f64| m.latency.value_at_quantile(p) as f64 / 1e3;
            [
                q(0.5),
                q(0.9),
                q(0.99),
                q(0.999),
                m.latency.max() as f64 / 1e3,
                m.latency.mean() / 1e3,
            ]
        });
        let total = match (self.mode, &m.remote) {
            (Mode::Client, Some(remote)) => Some(m.local.plus(remote)),
            (Mode::Client, None) => None,
            _ => Some(m.local),
        };
        let payload_bytes = match (sent, recv) {
            (Some(s), Some(r)) => {
                s * self.config.req_size as u64 + r * self.config.resp_size as u64
            }
            _ => ops * (self.config.req_size + self.config.resp_size) as u64,
        };
        let split = self.mode == Mode::Client;
        Derived {
            ops,
            ops_per_sec: ops as f64 / secs,
            sent_per_sec: sent.map(|s| s as f64 / secs),
            recv_per_sec: recv.map(|r| r as f64 / secs),
            latency_us,
            allocs_per_op: total
                .filter(|t| t.counts_allocations)
                .map(|t| t.allocations as f64 / opsf),
            alloc_bytes_per_op: total
                .filter(|t| t.counts_allocations)
                .map(|t| t.allocated_bytes as f64 / opsf),
            cpu_us_per_op: total.map(|t| t.cpu().as_secs_f64() * 1e6 / opsf),
            client: split.then(|| per_op(&m.local, opsf)),
            server: if split {
                m.remote.as_ref().map(|r| per_op(r, opsf))
            } else {
                None
            },
            payload_mb_per_sec: payload_bytes as f64 / secs / 1e6,
        }
    }

    /// The table row (see [`TABLE_HEADER`]) and any detail lines under it.
    pub fn table_row(&self) -> String {
        let d = self.derive();
        let c = &self.config;
        let lat = |i: usize| d.latency_us.map_or("-".to_string(), |l| fmt_us(l[i]));
        let opt =
            |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |v| format!("{v:.prec$}"));
        let mut out = format!(
            "{:<9} {:<13} {:>7} {:>7} {:>9} {:<7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>9} {:>5}",
            self.system,
            c.workload.name(),
            fmt_size(c.req_size),
            fmt_size(c.resp_size),
            format!("{}x{}", c.concurrency, c.connections),
            c.compression.label(),
            format!("{:.0}", d.ops_per_sec),
            lat(0),
            lat(1),
            lat(2),
            lat(3),
            opt(d.allocs_per_op, 1),
            opt(d.alloc_bytes_per_op, 0),
            d.cpu_us_per_op.map_or("-".into(), fmt_us),
            format!("{:.1}", d.payload_mb_per_sec),
            opt(self.compression_ratio, 1),
        );
        if let (Some(client), server) = (d.client, d.server) {
            let side = |(allocs, cpu): (Option<f64>, f64)| {
                format!(
                    "{} allocs/op, {} cpu/op",
                    allocs.map_or("uncounted".into(), |a| format!("{a:.1}")),
                    fmt_us(cpu)
                )
            };
            let _ = write!(
                out,
                "\n    client: {} | server: {}",
                side(client),
                server.map_or("did not report".into(), side)
            );
        }
        if let (Some(s), Some(r)) = (d.sent_per_sec, d.recv_per_sec) {
            let _ = write!(out, "\n    sent {s:.0} msgs/s, received {r:.0} msgs/s");
        }
        if self.measurement.errors > 0 {
            let _ = write!(
                out,
                "\n    {} errors; first: {}",
                self.measurement.errors,
                self.measurement.first_error.as_deref().unwrap_or("?")
            );
        }
        out
    }

    /// The configuration and results as one JSON object on one line.
    pub fn json(&self) -> String {
        let d = self.derive();
        let c = &self.config;
        let mut j = JsonObject::default();
        j.str("system", self.system);
        j.str("mode", self.mode.name());
        j.str("workload", c.workload.name());
        j.num("req_size", c.req_size as f64);
        j.num("resp_size", c.resp_size as f64);
        j.num("concurrency", c.concurrency as f64);
        j.num("connections", c.connections as f64);
        j.str("compression", c.compression.label());
        j.str("payload", c.payload.name());
        j.num("runtime_threads", self.runtime_threads as f64);
        j.num("warmup_s", c.warmup.as_secs_f64());
        j.num("elapsed_s", self.measurement.elapsed.as_secs_f64());
        j.num("ops", d.ops as f64);
        j.num("ops_per_sec", d.ops_per_sec);
        j.opt("sent_per_sec", d.sent_per_sec);
        j.opt("recv_per_sec", d.recv_per_sec);
        for (i, name) in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"]
            .iter()
            .enumerate()
        {
            j.opt(name, d.latency_us.map(|l| l[i]));
        }
        j.opt("allocs_per_op", d.allocs_per_op);
        j.opt("alloc_bytes_per_op", d.alloc_bytes_per_op);
        j.opt("cpu_us_per_op", d.cpu_us_per_op);
        j.opt("client_allocs_per_op", d.client.and_then(|c| c.0));
        j.opt("client_cpu_us_per_op", d.client.map(|c| c.1));
        j.opt("server_allocs_per_op", d.server.and_then(|s| s.0));
        j.opt("server_cpu_us_per_op", d.server.map(|s| s.1));
        j.num("payload_mb_per_sec", d.payload_mb_per_sec);
        j.opt("compression_ratio", self.compression_ratio);
        j.num("errors", self.measurement.errors as f64);
        match &self.measurement.first_error {
            Some(e) => j.str("first_error", e),
            None => j.raw("first_error", "null"),
        }
        j.finish()
    }
}

/// The header of the table [`Report::table_row`] prints.
pub const TABLE_HEADER: &str = "system    workload          req    resp conc×conn comp         ops/s      p50      p90      p99    p99.9 allocs/op      B/op   cpu/op  MB/s pl ratio";

/// What the columns mean, printed under the table.
pub const TABLE_LEGEND: &str = "\
ops/s: unary RPCs, ping-pong round trips (1 request + 1 response message), or messages
  sent + received by the client (unconstrained). Latency: per op, closed loop.
allocs/op, B/op: heap allocations and bytes per op, client and server together; counted
  by the counting global allocator (inproc: both in this process; client mode: this
  process plus the server's GetServerStats counters; '-' when a side does not count).
cpu/op: user + system CPU time per op of the client and server processes (getrusage).
MB/s pl: payload megabytes per second, both directions (what went through the
  compressor when compression is on). ratio: payload size / compressed size.";

/// `1`, `1K`, `64K`, `1M`: the sizes as the flags take them.
pub fn fmt_size(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes & ((1 << 20) - 1) == 0 {
        format!("{}M", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes & ((1 << 10) - 1) == 0 {
        format!("{}K", bytes >> 10)
    } else {
        bytes.to_string()
    }
}

/// Microseconds, scaled for reading: `37.1us`, `1.25ms`, `2.10s`.
pub fn fmt_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{us:.1}us")
    }
}

/// A one-line JSON object writer (the report has only strings, numbers and
/// nulls).
#[derive(Default)]
struct JsonObject {
    out: String,
}

impl JsonObject {
    fn key(&mut self, key: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        push_json_string(&mut self.out, key);
        self.out.push(':');
    }

    fn raw(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.push_str(value);
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        push_json_string(&mut self.out, value);
    }

    fn num(&mut self, key: &str, value: f64) {
        self.key(key);
        if !value.is_finite() {
            self.out.push_str("null");
        } else if value.fract() == 0.0 && value.abs() < 1e15 {
            let _ = write!(self.out, "{}", value as i64);
        } else {
            let _ = write!(self.out, "{value:.3}");
        }
    }

    fn opt(&mut self, key: &str, value: Option<f64>) {
        match value {
            Some(v) => self.num(key, v),
            None => self.raw(key, "null"),
        }
    }

    fn finish(mut self) -> String {
        if self.out.is_empty() {
            self.out.push('{');
        }
        self.out.push('}');
        self.out
    }
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Prints a report's row, and its JSON line when asked.
pub fn print(report: &Report, json: bool) {
    println!("{}", report.table_row());
    if json {
        println!("{}", report.json());
    }
}

/// Rounds a duration for messages: `2.5s`.
pub fn fmt_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        driver::new_histogram,
        flags::{Compression, RunConfig},
        payload::PayloadKind,
    };

    fn report(workload: Workload, mode: Mode) -> Report {
        let mut latency = new_histogram();
        for us in 1..=100u64 {
            latency.record(us * 1000).unwrap();
        }
        Report {
            system: "ferrogrpc",
            mode,
            runtime_threads: 1,
            config: RunConfig {
                workload,
                req_size: 10,
                resp_size: 20,
                concurrency: 1,
                connections: 1,
                compression: Compression::None,
                payload: PayloadKind::Compressible,
                warmup: Duration::from_secs(1),
                duration: Duration::from_secs(2),
            },
            measurement: Measurement {
                ops_per_worker: vec![60, 40],
                latency,
                elapsed: Duration::from_secs(2),
                local: Resources {
                    user: Duration::from_millis(3),
                    system: Duration::from_millis(1),
                    allocations: 2000,
                    allocated_bytes: 100_000,
                    counts_allocations: true,
                },
                remote: None,
                errors: 1,
                first_error: Some("bad \"thing\"\n".into()),
            },
            senders: vec![true, false],
            compression_ratio: None,
        }
    }

    #[test]
    fn per_op_figures() {
        let d = report(Workload::Unary, Mode::Inproc).derive();
        assert_eq!(d.ops, 100);
        assert_eq!(d.ops_per_sec, 50.0);
        assert_eq!(d.allocs_per_op, Some(20.0));
        assert_eq!(d.alloc_bytes_per_op, Some(1000.0));
        assert!((d.cpu_us_per_op.unwrap() - 40.0).abs() < 1e-9);
        assert!((d.payload_mb_per_sec - 100.0 * 30.0 / 2.0 / 1e6).abs() < 1e-12);
        let lat = d.latency_us.unwrap();
        assert!((lat[0] - 50.0).abs() < 1.0, "{lat:?}");

        let u = report(Workload::Unconstrained, Mode::Inproc).derive();
        assert_eq!(u.sent_per_sec, Some(30.0));
        assert_eq!(u.recv_per_sec, Some(20.0));
        assert!(u.latency_us.is_none());

        let c = report(Workload::Unary, Mode::Client).derive();
        assert!(c.cpu_us_per_op.is_none(), "no server counters: no total");
        assert!(c.server.is_none());
        assert_eq!(c.client.unwrap().0, Some(20.0));
    }

    #[test]
    fn json_line_is_one_escaped_line() {
        let j = report(Workload::Unary, Mode::Inproc).json();
        assert!(!j.contains('\n'));
        assert!(j.starts_with("{\"system\":\"ferrogrpc\""));
        assert!(j.contains("\"first_error\":\"bad \\\"thing\\\"\\n\""));
        assert!(j.contains("\"ops\":100,"));
        assert!(j.ends_with('}'));
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_size(65536), "64K");
        assert_eq!(fmt_size(1 << 20), "1M");
        assert_eq!(fmt_size(1000), "1000");
        assert_eq!(fmt_us(37.14), "37.1us");
        assert_eq!(fmt_us(1250.0), "1.25ms");
    }
}
