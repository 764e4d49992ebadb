//! The command line of `bench` and `tonic_bench`.
//!
//! As in gRPC-Go's benchmain, the load-shape flags take comma-separated
//! lists, and every combination is run in turn (`--compression
//! none,gzip,zstd --req-size 64K` runs three configurations and prints them
//! as one table).

use std::{fmt, time::Duration};

use crate::{payload::PayloadKind, pb};

/// What the client does on each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Closed-loop unary calls.
    Unary,
    /// Ping-pong on bidi streams: send one request, wait for its response.
    Streaming,
    /// Bidi streams on which both sides send as fast as flow control allows.
    Unconstrained,
}

impl Workload {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Unary => "unary",
            Workload::Streaming => "streaming",
            Workload::Unconstrained => "unconstrained",
        }
    }
}

/// Which parts run in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Client and server in one process, over loopback TCP.
    Inproc,
    /// Only the server, on `--addr`.
    Server,
    /// Only the client, driving a server on `--addr`.
    Client,
}

impl Mode {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Inproc => "inproc",
            Mode::Server => "server",
            Mode::Client => "client",
        }
    }
}

/// Message compression, in both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// None.
    None,
    /// gzip.
    Gzip,
    /// deflate (zlib).
    Deflate,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The flag value.
    pub fn label(self) -> &'static str {
        self.encoding().unwrap_or("none")
    }

    /// The `grpc-encoding` name, `None` for no compression.
    pub fn encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Deflate => Some("deflate"),
            Compression::Zstd => Some("zstd"),
        }
    }

    /// As carried in `SimpleRequest.response_compression`.
    pub fn to_pb(self) -> pb::Compression {
        match self {
            Compression::None => pb::Compression::None,
            Compression::Gzip => pb::Compression::Gzip,
            Compression::Deflate => pb::Compression::Deflate,
            Compression::Zstd => pb::Compression::Zstd,
        }
    }

    /// From `SimpleRequest.response_compression` (unknown values: none).
    pub fn from_pb(value: i32) -> Compression {
        match pb::Compression::try_from(value) {
            Ok(pb::Compression::Gzip) => Compression::Gzip,
            Ok(pb::Compression::Deflate) => Compression::Deflate,
            Ok(pb::Compression::Zstd) => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// Transport security of the benchmark connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Plaintext HTTP/2 (h2c).
    Insecure,
    /// TLS; see [`Security::check`].
    Tls,
}

impl Security {
    /// Fails for a security mode a tool cannot run: `tonic_bench` is the
    /// plaintext baseline only (its `tls` feature is not built).
    ///
    /// # Errors
    /// For [`Security::Tls`] in `tonic_bench`, with a message saying why.
    pub fn check(self, tool: &str) -> Result<(), String> {
        match self {
            Security::Tls if tool == "tonic_bench" => Err(
                "--tls: the tonic baseline is built without TLS; compare TLS runs of \
                 `bench` against its own plaintext runs"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

/// The parsed command line.
#[derive(Clone, Debug)]
pub struct Flags {
    /// `--workload` values.
    pub workloads: Vec<Workload>,
    /// `--req-size` values, bytes of request payload.
    pub req_sizes: Vec<usize>,
    /// `--resp-size` values, bytes of response payload.
    pub resp_sizes: Vec<usize>,
    /// `--concurrency` values: concurrent calls (or streams) per connection.
    pub concurrency: Vec<usize>,
    /// `--connections` values.
    pub connections: Vec<usize>,
    /// `--compression` values.
    pub compression: Vec<Compression>,
    /// `--payload`: what the payload bytes look like.
    pub payload: PayloadKind,
    /// `--warmup`: load before the measurement starts.
    pub warmup: Duration,
    /// `--duration`: the measurement window.
    pub duration: Duration,
    /// `--mode`.
    pub mode: Mode,
    /// `--addr`: where the server listens (server, client modes).
    pub addr: String,
    /// `--runtime-threads`: tokio worker threads (`None`: one per CPU the
    /// process may use).
    pub runtime_threads: Option<usize>,
    /// `--tls`.
    pub security: Security,
    /// `--json`: also print one JSON line per configuration.
    pub json: bool,
    /// `--serve-for`: how long server mode serves before it stops by itself.
    pub serve_for: Duration,
    /// `--service-config`: the default service config of the client's
    /// channels (`bench` only), e.g. a retry policy that is never needed.
    pub service_config: Option<String>,
}

/// One configuration to measure: one element of the flags' product.
#[derive(Clone, Copy, Debug)]
pub struct RunConfig {
    /// The workload.
    pub workload: Workload,
    /// Request payload bytes.
    pub req_size: usize,
    /// Response payload bytes.
    pub resp_size: usize,
    /// Concurrent calls or streams per connection.
    pub concurrency: usize,
    /// Connections.
    pub connections: usize,
    /// Compression.
    pub compression: Compression,
    /// Payload kind.
    pub payload: PayloadKind,
    /// Warm-up time.
    pub warmup: Duration,
    /// Measurement time.
    pub duration: Duration,
}

/// Why parsing stopped.
#[derive(Debug)]
pub enum FlagsError {
    /// `--help` was given: print the usage and exit successfully.
    Help,
    /// A bad command line, with the reason.
    Invalid(String),
}

impl fmt::Display for FlagsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagsError::Help => f.write_str("help requested"),
            FlagsError::Invalid(reason) => f.write_str(reason),
        }
    }
}

/// The default `--addr` of server and client modes.
pub const DEFAULT_ADDR: &str = "127.0.0.1:50055";

/// The usage text of `tool`.
pub fn usage(tool: &str) -> String {
    format!(
        "usage: {tool} [flags]

Load shape (comma-separated lists run every combination):
  --workload W         unary | streaming (ping-pong on a bidi stream) |
                       unconstrained (both sides send as fast as flow control
                       allows)                                 [unary]
  --req-size N         request payload bytes; suffixes K, M (1024-based)  [1]
  --resp-size N        response payload bytes                  [1]
  --concurrency N      concurrent calls or streams per connection  [1]
  --connections N      connections                             [1]
  --compression C      none | gzip | deflate | zstd, both directions, every
                       message (no minimum size)               [none]
Other:
  --payload P          compressible (text-like) | incompressible (random)
                                                               [compressible]
  --warmup SECS        load before measuring                   [2]
  --duration SECS      measurement window                      [10]
  --mode M             inproc (client and server in this process, loopback
                       TCP) | server (serve on --addr) | client (drive a
                       server on --addr)                       [inproc]
  --addr HOST:PORT     loopback address for server/client modes  [{DEFAULT_ADDR}]
  --serve-for SECS     server mode stops by itself after this  [600]
  --service-config J   the client channels' default service config (bench only)
  --runtime-threads N  tokio worker threads; 1 = current-thread runtime
                                                  [CPUs this process may use]
  --tls                TLS 1.3 with a test certificate made at start-up (in
                       server/client modes shared through $TMPDIR/ferrogrpc-bench-tls)
  --json               also print one JSON line per configuration
  --help               this text
"
    )
}

fn invalid(msg: impl Into<String>) -> FlagsError {
    FlagsError::Invalid(msg.into())
}

/// Parses a byte size: `1024`, `64K`, `64KiB`, `1M`.
///
/// # Errors
/// When it is not a size.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1, 1024, 64K, 1M)"))?;
    let unit = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(format!("{text:?}: unknown size suffix {suffix:?}")),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses seconds: `10`, `2.5`, `10s`, `500ms`.
///
/// # Errors
/// When it is not a duration.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(ms) = t.strip_suffix("ms") {
        (ms, 1e-3)
    } else {
        (t.strip_suffix('s').unwrap_or(t), 1.0)
    };
    let secs: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 10, 2.5, 500ms)"))?;
    Duration::try_from_secs_f64(secs * scale)
        .map_err(|_| format!("{text:?} is not a valid duration"))
}

fn list<T>(value: &str, one: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, FlagsError> {
    let items: Vec<T> = value
        .split(',')
        .map(|v| one(v.trim()))
        .collect::<Result<_, _>>()
        .map_err(FlagsError::Invalid)?;
    if items.is_empty() {
        return Err(invalid(format!("empty list {value:?}")));
    }
    Ok(items)
}

fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{text:?} is not a positive integer")),
    }
}

/// Whether `addr` is a loopback `host:port`. The tools only ever drive
/// servers on this machine.
fn is_loopback(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    match addr.to_socket_addrs() {
        Ok(mut addrs) => addrs.all(|a| a.ip().is_loopback()),
        Err(_) => false,
    }
}

impl Flags {
    /// Parses the arguments after the program name.
    ///
    /// # Errors
    /// [`FlagsError::Help`] for `--help`, [`FlagsError::Invalid`] with the
    /// reason for a bad command line.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Flags, FlagsError> {
        let mut flags = Flags {
            workloads: vec![Workload::Unary],
            req_sizes: vec![1],
            resp_sizes: vec![1],
            concurrency: vec![1],
            connections: vec![1],
            compression: vec![Compression::None],
            payload: PayloadKind::Compressible,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            mode: Mode::Inproc,
            addr: DEFAULT_ADDR.to_string(),
            runtime_threads: None,
            security: Security::Insecure,
            json: false,
            serve_for: Duration::from_secs(600),
            service_config: None,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            match name.as_str() {
                "--help" | "-h" => return Err(FlagsError::Help),
                "--json" => flags.json = true,
                "--tls" => flags.security = Security::Tls,
                _ => {}
            }
            if matches!(name.as_str(), "--help" | "-h" | "--json" | "--tls") {
                if inline.is_some() {
                    return Err(invalid(format!("{name} takes no value")));
                }
                continue;
            }
            if !name.starts_with("--") {
                return Err(invalid(format!("unexpected argument {arg:?}")));
            }
            let value = match inline {
                Some(v) => v,
                None => args
                    .next()
                    .ok_or_else(|| invalid(format!("{name} needs a value")))?,
            };
            let v = value.as_str();
            match name.as_str() {
                "--workload" | "--workloads" => {
                    flags.workloads = list(v, |w| match w {
                        "unary" => Ok(Workload::Unary),
                        "streaming" => Ok(Workload::Streaming),
                        "unconstrained" => Ok(Workload::Unconstrained),
                        _ => Err(format!(
                            "unknown workload {w:?} (unary, streaming, unconstrained)"
                        )),
                    })?
                }
                "--req-size" => flags.req_sizes = list(v, parse_size)?,
                "--resp-size" => flags.resp_sizes = list(v, parse_size)?,
                "--concurrency" => flags.concurrency = list(v, positive)?,
                "--connections" => flags.connections = list(v, positive)?,
                "--compression" => {
                    flags.compression = list(v, |c| match c {
                        "none" | "identity" => Ok(Compression::None),
                        "gzip" => Ok(Compression::Gzip),
                        "deflate" => Ok(Compression::Deflate),
                        "zstd" => Ok(Compression::Zstd),
                        _ => Err(format!(
                            "unknown compression {c:?} (none, gzip, deflate, zstd)"
                        )),
                    })?
                }
                "--payload" => {
                    flags.payload = match v {
                        "compressible" => PayloadKind::Compressible,
                        "incompressible" => PayloadKind::Incompressible,
                        _ => {
                            return Err(invalid(format!(
                                "unknown payload {v:?} (compressible, incompressible)"
                            )))
                        }
                    }
                }
                "--warmup" => flags.warmup = parse_seconds(v).map_err(FlagsError::Invalid)?,
                "--duration" => {
                    flags.duration = parse_seconds(v).map_err(FlagsError::Invalid)?;
                    if flags.duration.is_zero() {
                        return Err(invalid("--duration must be more than 0"));
                    }
                }
                "--serve-for" => flags.serve_for = parse_seconds(v).map_err(FlagsError::Invalid)?,
                "--service-config" => flags.service_config = Some(v.to_string()),
                "--mode" => {
                    flags.mode = match v {
                        "inproc" => Mode::Inproc,
                        "server" => Mode::Server,
                        "client" => Mode::Client,
                        _ => {
                            return Err(invalid(format!(
                                "unknown mode {v:?} (inproc, server, client)"
                            )))
                        }
                    }
                }
                "--addr" => flags.addr = v.to_string(),
                "--runtime-threads" => {
                    flags.runtime_threads = Some(positive(v).map_err(FlagsError::Invalid)?)
                }
                _ => return Err(invalid(format!("unknown flag {name}"))),
            }
        }
        if flags.mode != Mode::Inproc && !is_loopback(&flags.addr) {
            return Err(invalid(format!(
                "--addr {}: expected a loopback host:port (e.g. 127.0.0.1:50055); the \
                 benchmark only runs against this machine",
                flags.addr
            )));
        }
        Ok(flags)
    }

    /// Every configuration the lists describe, in a stable order.
    pub fn runs(&self) -> Vec<RunConfig> {
        let mut runs = Vec::new();
        for &workload in &self.workloads {
            for &connections in &self.connections {
                for &concurrency in &self.concurrency {
                    for &req_size in &self.req_sizes {
                        for &resp_size in &self.resp_sizes {
                            for &compression in &self.compression {
                                runs.push(RunConfig {
                                    workload,
                                    req_size,
                                    resp_size,
                                    concurrency,
                                    connections,
                                    compression,
                                    payload: self.payload,
                                    warmup: self.warmup,
                                    duration: self.duration,
                                });
                            }
                        }
                    }
                }
            }
        }
        runs
    }
}

/// Parses the process's command line for `tool`; prints the usage and exits
/// for `--help`, prints the error and exits with status 2 when it is bad.
pub fn from_env(tool: &str) -> Flags {
    match Flags::parse(std::env::args().skip(1)) {
        Ok(flags) => flags,
        Err(FlagsError::Help) => {
            print!("{}", usage(tool));
            std::process::exit(0)
        }
        Err(FlagsError::Invalid(reason)) => {
            eprintln!("{tool}: {reason}\n\n{}", usage(tool));
            std::process::exit(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Flags, FlagsError> {
        Flags::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults() {
        let f = parse(&[]).unwrap();
        assert_eq!(f.workloads, vec![Workload::Unary]);
        assert_eq!(f.mode, Mode::Inproc);
        assert_eq!(f.runs().len(), 1);
    }

    #[test]
    fn lists_multiply() {
        let f = parse(&[
            "--workload=unary,streaming",
            "--compression",
            "none,gzip,zstd",
            "--req-size",
            "64K",
        ])
        .unwrap();
        let runs = f.runs();
        assert_eq!(runs.len(), 6);
        assert!(runs.iter().all(|r| r.req_size == 65536));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1").unwrap(), 1);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        assert!(parse_size("x").is_err());
        assert!(parse_size("3Q").is_err());
        assert_eq!(parse_seconds("2.5").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_seconds("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_seconds("3s").unwrap(), Duration::from_secs(3));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            parse(&["--bogus", "1"]),
            Err(FlagsError::Invalid(_))
        ));
        assert!(matches!(
            parse(&["--concurrency", "0"]),
            Err(FlagsError::Invalid(_))
        ));
        assert!(matches!(
            parse(&["--workload"]),
            Err(FlagsError::Invalid(_))
        ));
        assert!(matches!(parse(&["--help"]), Err(FlagsError::Help)));
        assert!(matches!(
            parse(&["--mode", "client", "--addr", "10.1.2.3:80"]),
            Err(FlagsError::Invalid(_))
        ));
        assert!(parse(&["--mode", "client", "--addr", "127.0.0.1:1234"]).is_ok());
    }

    #[test]
    fn tls_is_ours_only() {
        let f = parse(&["--tls"]).unwrap();
        assert!(f.security.check("bench").is_ok());
        let err = f.security.check("tonic_bench").unwrap_err();
        assert!(err.contains("TLS"), "{err}");
    }
}
