//! `ferrogrpc bench`: a load test of one method, as ghz does.

use std::{
    collections::BTreeMap,
    io::{IsTerminal as _, Write as _},
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use ferrogrpc::{client::Channel, codec::BytesCodec, metadata::MetadataMap, Code, Request, Status};
use http::uri::PathAndQuery;
use prost::Message as _;
use tokio::time::Instant;

use crate::{
    call::parse_messages,
    connect::{seconds, ConnectArgs},
    descriptors::{self, SourceArgs},
    error::Error,
};

/// The flags of `bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The method: `pkg.Service/Method`.
    #[arg(value_name = "SERVICE/METHOD")]
    method: String,
    #[command(flatten)]
    source: SourceArgs,
    /// The request as JSON (several values for client streaming; `@` reads
    /// stdin). Every call sends the same request.
    #[arg(short = 'd', long = "data", value_name = "JSON")]
    data: Option<String>,
    /// Calls in flight at once.
    #[arg(short = 'c', long, default_value_t = 50)]
    concurrency: usize,
    /// Connections (channels) the calls are spread over.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Calls to make in all (default 200, unless --duration is given).
    #[arg(
        short = 'n',
        long = "total",
        value_name = "N",
        conflicts_with = "duration"
    )]
    total: Option<u64>,
    /// Make calls for this long instead of a count: `30s`, `500ms`, `2m`.
    #[arg(short = 'z', long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// At most this many calls per second, in all (0: no limit).
    #[arg(long, value_name = "RPS", default_value_t = 0.0)]
    rps: f64,
    /// Each call's deadline, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0)]
    timeout: f64,
    /// How to print the result: a readable summary, JSON, or CSV with one
    /// row per call.
    #[arg(long, value_enum, default_value_t = Format::Summary)]
    format: Format,
    /// Also draw the latency histogram and the latency over time to this
    /// PNG file.
    #[arg(long, value_name = "FILE.png")]
    plot: Option<std::path::PathBuf>,
}

/// Output formats of `bench`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Summary,
    Json,
    Csv,
}

/// One finished call.
#[derive(Clone, Copy)]
struct Sample {
    /// When it started, from the run's start.
    start: Duration,
    latency: Duration,
    code: Code,
}

/// What the method is and what each call sends.
#[derive(Clone)]
struct Plan {
    path: PathAndQuery,
    unary: bool,
    requests: Arc<Vec<Bytes>>,
    timeout: Duration,
    /// The `-H` metadata, parsed once.
    metadata: MetadataMap,
}

/// Hands out the calls to make: by count or until a time, paced by `rps`.
struct Tickets {
    issued: AtomicU64,
    total: Option<u64>,
    until: Option<Instant>,
    start: Instant,
    interval: Option<Duration>,
}

impl Tickets {
    /// The next call's number and when it may start; `None` when done.
    fn next(&self) -> Option<(u64, Instant)> {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        if self.total.is_some_and(|total| n >= total) {
            return None;
        }
        let at = match self.interval {
            Some(interval) => self.start + interval.mul_f64(n as f64),
            None => self.start,
        };
        if self
            .until
            .is_some_and(|until| at >= until || Instant::now() >= until)
        {
            return None;
        }
        Some((n, at))
    }
}

/// Runs `bench`.
pub async fn run(args: BenchArgs) -> Result<ExitCode, Error> {
    if args.concurrency == 0 || args.connections == 0 {
        return Err(Error::new("-c and --connections must be at least 1"));
    }
    if !(args.rps >= 0.0 && args.rps.is_finite()) {
        return Err(Error::new(
            "--rps must be a number of calls per second, 0 for no limit",
        ));
    }
    let mut source = args.source.open(&args.connect).await?;
    let name = args.method.trim_start_matches('/');
    let pool = source.pool_for(name).await?;
    let method = descriptors::method(&pool, name)
        .ok_or_else(|| Error::new(format!("{name:?} is not a method the server has")))?;
    let messages = match args.data.as_deref() {
        None if method.is_client_streaming() => Vec::new(),
        None => vec![prost_reflect::DynamicMessage::new(method.input())],
        Some("@") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|err| Error::new(format!("cannot read stdin: {err}")))?;
            parse_messages(&method.input(), &text)?
        }
        Some(text) => parse_messages(&method.input(), text)?,
    };
    if !method.is_client_streaming() && messages.len() != 1 {
        return Err(Error::new(format!(
            "{} takes exactly one request message; got {}",
            method.full_name(),
            messages.len()
        )));
    }
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let plan = Plan {
        path: PathAndQuery::try_from(path.as_str())
            .map_err(|err| Error::new(format!("{path:?} is not a valid method path: {err}")))?,
        unary: !method.is_client_streaming() && !method.is_server_streaming(),
        requests: Arc::new(
            messages
                .iter()
                .map(|m| Bytes::from(m.encode_to_vec()))
                .collect(),
        ),
        timeout: seconds(args.timeout, "--timeout")?,
        metadata: args.connect.metadata()?,
    };
    let channels = (0..args.connections)
        .map(|_| args.connect.channel())
        .collect::<Result<Vec<Channel>, Error>>()?;
    let start = Instant::now();
    let tickets = Arc::new(Tickets {
        issued: AtomicU64::new(0),
        total: match (args.total, args.duration) {
            (Some(total), _) => Some(total),
            (None, None) => Some(200),
            (None, Some(_)) => None,
        },
        until: args.duration.map(|d| start + d),
        start,
        interval: (args.rps > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rps)),
    });
    let done = Arc::new(AtomicU64::new(0));
    let progress = (std::io::stderr().is_terminal() && args.format == Format::Summary).then(|| {
        tokio::spawn(show_progress(
            Arc::clone(&done),
            tickets.total,
            args.duration,
            start,
        ))
    });
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..args.concurrency {
        let channel = channels[worker % channels.len()].clone();
        let (plan, tickets, done) = (plan.clone(), Arc::clone(&tickets), Arc::clone(&done));
        workers.spawn(async move {
            let mut samples = Vec::new();
            while let Some((_, at)) = tickets.next() {
                tokio::time::sleep_until(at).await;
                let began = Instant::now();
                let code = match one_call(&channel, &plan).await {
                    Ok(()) => Code::Ok,
                    Err(status) => status.code(),
                };
                samples.push(Sample {
                    start: began - tickets.start,
                    latency: began.elapsed(),
                    code,
                });
                done.fetch_add(1, Ordering::Relaxed);
            }
            samples
        });
    }
    let mut samples = Vec::new();
    while let Some(joined) = workers.join_next().await {
        samples.extend(joined.map_err(|err| Error::new(format!("a worker failed: {err}")))?);
    }
    let total = start.elapsed();
    if let Some(progress) = progress {
        progress.abort();
        eprint!("\r\x1b[2K");
    }
    samples.sort_by_key(|s| s.start);
    let report = Report::new(&samples, total);
    if let Some(path) = &args.plot {
        let points: Vec<crate::plot::Point> = samples
            .iter()
            .map(|s| crate::plot::Point {
                start: s.start.as_secs_f64(),
                latency_ms: s.latency.as_secs_f64() * 1000.0,
                code: s.code,
            })
            .collect();
        crate::plot::draw(path, &points, total)?;
    }
    match args.format {
        Format::Summary => print!("{}", report.summary()),
        Format::Json => println!("{}", report.json()),
        Format::Csv => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "start_us,latency_us,status");
            for s in &samples {
                let _ = writeln!(
                    out,
                    "{},{},{}",
                    s.start.as_micros(),
                    s.latency.as_micros(),
                    s.code
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One call of the plan; the responses are read and dropped.
async fn one_call(channel: &Channel, plan: &Plan) -> Result<(), Status> {
    if plan.unary {
        let mut request = Request::new(plan.requests[0].clone());
        *request.metadata_mut() = plan.metadata.clone();
        request.set_timeout(plan.timeout);
        channel
            .unary::<Bytes, Bytes, _>(plan.path.clone(), request, BytesCodec)
            .await?;
        return Ok(());
    }
    let mut request = Request::new(());
    *request.metadata_mut() = plan.metadata.clone();
    request.set_timeout(plan.timeout);
    let (mut sink, mut responses) = channel
        .streaming::<Bytes, Bytes, _>(plan.path.clone(), request, BytesCodec)
        .await?;
    let send = async {
        for message in plan.requests.iter() {
            if sink.send(message.clone()).await.is_err() {
                break;
            }
        }
        let _ = sink.close();
    };
    let receive = async {
        while responses.message().await?.is_some() {}
        Ok::<(), Status>(())
    };
    let ((), received) = tokio::join!(send, receive);
    received
}

/// A progress line on stderr, redrawn five times a second.
async fn show_progress(
    done: Arc<AtomicU64>,
    total: Option<u64>,
    duration: Option<Duration>,
    start: Instant,
) {
    const WIDTH: usize = 40;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = done.load(Ordering::Relaxed);
        let elapsed = start.elapsed();
        let fraction = match (total, duration) {
            (Some(total), _) if total > 0 => n as f64 / total as f64,
            (_, Some(d)) => elapsed.as_secs_f64() / d.as_secs_f64(),
            _ => 0.0,
        }
        .clamp(0.0, 1.0);
        let filled = (fraction * WIDTH as f64) as usize;
        let rate = n as f64 / elapsed.as_secs_f64().max(1e-9);
        eprint!(
            "\r[{}{}] {:3.0}% {n} calls, {rate:.0}/s",
            "=".repeat(filled),
            " ".repeat(WIDTH - filled),
            fraction * 100.0
        );
        let _ = std::io::stderr().flush();
    }
}

/// The numbers of a finished run.
struct Report {
    count: usize,
    total: Duration,
    /// Latencies in ascending order.
    sorted: Vec<Duration>,
    codes: BTreeMap<i32, (Code, usize)>,
}

impl Report {
    fn new(samples: &[Sample], total: Duration) -> Report {
        let mut sorted: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
        sorted.sort();
        let mut codes = BTreeMap::new();
        for s in samples {
            codes.entry(s.code as i32).or_insert((s.code, 0)).1 += 1;
        }
        Report {
            count: samples.len(),
            total,
            sorted,
            codes,
        }
    }

    fn rps(&self) -> f64 {
        self.count as f64 / self.total.as_secs_f64().max(1e-9)
    }

    fn mean(&self) -> Duration {
        match self.count {
            0 => Duration::ZERO,
            n => self.sorted.iter().sum::<Duration>() / n as u32,
        }
    }

    /// The latency at quantile `q` (nearest rank).
    fn quantile(&self, q: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * self.sorted.len() as f64).ceil() as usize).clamp(1, self.sorted.len());
        self.sorted[rank - 1]
    }

    /// Ten equal-width buckets from the fastest to the slowest call: each
    /// bucket's upper bound and count.
    fn histogram(&self) -> Vec<(Duration, usize)> {
        let (Some(&min), Some(&max)) = (self.sorted.first(), self.sorted.last()) else {
            return Vec::new();
        };
        const BUCKETS: usize = 10;
        let step = (max - min) / BUCKETS as u32;
        let mut out: Vec<(Duration, usize)> =
            (1..=BUCKETS).map(|i| (min + step * i as u32, 0)).collect();
        out[BUCKETS - 1].0 = max;
        for &latency in &self.sorted {
            let i = out
                .iter()
                .position(|(bound, _)| latency <= *bound)
                .unwrap_or(BUCKETS - 1);
            out[i].1 += 1;
        }
        out
    }

    fn summary(&self) -> String {
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line("Summary:".into());
        line(format!("  Count:        {}", self.count));
        line(format!("  Total:        {}", ms(self.total)));
        line(format!(
            "  Slowest:      {}",
            ms(self.sorted.last().copied().unwrap_or_default())
        ));
        line(format!(
            "  Fastest:      {}",
            ms(self.sorted.first().copied().unwrap_or_default())
        ));
        line(format!("  Average:      {}", ms(self.mean())));
        line(format!("  Requests/sec: {:.2}", self.rps()));
        line(String::new());
        line("Response time histogram:".into());
        let histogram = self.histogram();
        let most = histogram.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
        for (bound, n) in &histogram {
            let bar = "∎".repeat(n * 40 / most);
            line(format!("  {:>10} [{n}]\t|{bar}", ms(*bound)));
        }
        line(String::new());
        line("Latency distribution:".into());
        for (label, q) in [("50", 0.5), ("90", 0.9), ("95", 0.95), ("99", 0.99)] {
            line(format!("  {label} % in {}", ms(self.quantile(q))));
        }
        line(String::new());
        line("Status code distribution:".into());
        for (code, n) in self.codes.values() {
            line(format!("  [{code}]\t{n} responses"));
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        let us = |d: Duration| d.as_micros() as u64;
        let statuses: serde_json::Map<String, serde_json::Value> = self
            .codes
            .values()
            .map(|(code, n)| (code.to_string(), (*n).into()))
            .collect();
        serde_json::json!({
            "count": self.count,
            "total_us": us(self.total),
            "rps": self.rps(),
            "latency_us": {
                "min": us(self.sorted.first().copied().unwrap_or_default()),
                "mean": us(self.mean()),
                "p50": us(self.quantile(0.5)),
                "p90": us(self.quantile(0.9)),
                "p95": us(self.quantile(0.95)),
                "p99": us(self.quantile(0.99)),
                "max": us(self.sorted.last().copied().unwrap_or_default()),
            },
            "histogram": self.histogram().iter().map(|(bound, n)| serde_json::json!({
                "upper_us": us(*bound),
                "count": n,
            })).collect::<Vec<_>>(),
            "status": statuses,
        })
    }
}

/// `30s`, `500ms`, `2m`, `1h` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a positive duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let samples: Vec<Sample> = (1..=100)
            .map(|ms| Sample {
                start: Duration::ZERO,
                latency: Duration::from_millis(ms),
                code: Code::Ok,
            })
            .collect();
        let report = Report::new(&samples, Duration::from_secs(1));
        assert_eq!(report.quantile(0.5), Duration::from_millis(50));
        assert_eq!(report.quantile(0.99), Duration::from_millis(99));
        assert_eq!(report.quantile(1.0), Duration::from_millis(100));
        let histogram = report.histogram();
        assert_eq!(histogram.len(), 10);
        assert_eq!(histogram.iter().map(|(_, n)| n).sum::<usize>(), 100);
        assert_eq!(histogram[9].0, Duration::from_millis(100));
    }
}
