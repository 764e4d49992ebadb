//! The client's output: one line per event, a word saying what it is, then
//! `key=value` fields (values without spaces), and for lines with text a
//! last field `msg=` that runs to the end of the line. Times are
//! milliseconds since the Unix epoch ([`crate::now_ms`]), so they compare
//! with the times at which a test injected its faults.
//!
//! ```text
//! CONFIG target=10.77.0.1:50051 keepalive_time_ms=10000 retry=off
//! STATE at_ms=1717000000000 state=READY
//! CALL seq=7 worker=0 start_ms=1717000000100 elapsed_ms=3 wfr=1 code=OK server_pid=4242 msg=Hello 7
//! CALL seq=8 worker=1 start_ms=1717000000120 elapsed_ms=0 wfr=0 code=UNAVAILABLE msg=connecting to ... refused
//! PENDING seq=9 start_ms=1717000000140 wfr=0
//! SUMMARY calls=9 ok=7 failed=1 pending=1
//! FAILED code=UNAVAILABLE count=1
//! MESSAGE code=UNAVAILABLE count=1 msg=connecting to ... refused
//! ```
//!
//! `CALL` lines come in the order calls end. `PENDING` lists the calls still
//! under way when the client stopped (it does not wait for them), `SUMMARY`,
//! `FAILED` (per status code) and `MESSAGE` (per distinct message) sum the
//! rest up.

use std::{collections::BTreeMap, fmt::Write as _};

/// One finished call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The call's number, from 0 in the order calls were started.
    pub seq: u64,
    /// The worker that made it, from 0.
    pub worker: u64,
    /// When it started.
    pub start_ms: u64,
    /// How long it took.
    pub elapsed_ms: u64,
    /// Whether it was a wait-for-ready call.
    pub wfr: bool,
    /// `OK` or the status code's name, e.g. `UNAVAILABLE`.
    pub code: String,
    /// The pid of the server that answered (successful calls only).
    pub server_pid: Option<u32>,
    /// The reply, or the status message.
    pub msg: String,
}

impl Call {
    /// When it ended.
    pub fn end_ms(&self) -> u64 {
        self.start_ms + self.elapsed_ms
    }

    /// Whether it succeeded.
    pub fn ok(&self) -> bool {
        self.code == "OK"
    }

    /// One line for assertion messages, with times relative to `origin_ms`.
    pub fn describe(&self, origin_ms: u64) -> String {
        format!(
            "seq {} (worker {}{}) {:+} ms .. {:+} ms ({} ms): {} {}",
            self.seq,
            self.worker,
            if self.wfr { ", wait-for-ready" } else { "" },
            self.start_ms as i64 - origin_ms as i64,
            self.end_ms() as i64 - origin_ms as i64,
            self.elapsed_ms,
            self.code,
            self.msg
        )
    }
}

/// The first ten of `calls` described, one per line, and how many more.
pub fn describe_calls(calls: &[&Call], origin_ms: u64) -> String {
    let mut lines: Vec<String> = calls
        .iter()
        .take(10)
        .map(|c| c.describe(origin_ms))
        .collect();
    if calls.len() > 10 {
        lines.push(format!("... and {} more", calls.len() - 10));
    }
    lines.join("\n")
}

/// A call that had not ended when the client stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The call's number.
    pub seq: u64,
    /// When it started.
    pub start_ms: u64,
    /// Whether it was a wait-for-ready call.
    pub wfr: bool,
}

/// A change of the channel's connectivity state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// When the client saw it.
    pub at_ms: u64,
    /// The new state, e.g. `TRANSIENT_FAILURE`.
    pub state: String,
}

/// Everything a client run printed.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The `CONFIG` fields.
    pub config: BTreeMap<String, String>,
    /// Finished calls, in the order they ended.
    pub calls: Vec<Call>,
    /// Calls under way when the client stopped.
    pub pending: Vec<Pending>,
    /// Connectivity state changes.
    pub states: Vec<StateChange>,
}

/// Text fit for the one-line `msg=` field.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// The `CALL` line of `call`.
pub fn call_line(call: &Call) -> String {
    let mut line = format!(
        "CALL seq={} worker={} start_ms={} elapsed_ms={} wfr={} code={}",
        call.seq,
        call.worker,
        call.start_ms,
        call.elapsed_ms,
        u8::from(call.wfr),
        call.code
    );
    if let Some(pid) = call.server_pid {
        let _ = write!(line, " server_pid={pid}");
    }
    let _ = write!(line, " msg={}", one_line(&call.msg));
    line
}

/// The `PENDING` line of `pending`.
pub fn pending_line(pending: &Pending) -> String {
    format!(
        "PENDING seq={} start_ms={} wfr={}",
        pending.seq,
        pending.start_ms,
        u8::from(pending.wfr)
    )
}

/// The `STATE` line of `change`.
pub fn state_line(change: &StateChange) -> String {
    format!("STATE at_ms={} state={}", change.at_ms, change.state)
}

/// Splits a line into its word and fields.
fn fields(line: &str) -> Option<(&str, BTreeMap<&str, &str>)> {
    let (kind, mut rest) = line.split_once(' ').unwrap_or((line, ""));
    let mut map = BTreeMap::new();
    while !rest.is_empty() {
        if let Some(msg) = rest.strip_prefix("msg=") {
            map.insert("msg", msg);
            break;
        }
        let (field, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        let (key, value) = field.split_once('=')?;
        map.insert(key, value);
        rest = tail;
    }
    Some((kind, map))
}

fn number(map: &BTreeMap<&str, &str>, key: &str, line: &str) -> Result<u64, String> {
    map.get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no number {key}= in {line:?}"))
}

fn text(map: &BTreeMap<&str, &str>, key: &str, line: &str) -> Result<String, String> {
    map.get(key)
        .map(|v| v.to_string())
        .ok_or_else(|| format!("no {key}= in {line:?}"))
}

impl Report {
    /// Parses a client's stdout. Lines of other kinds are skipped.
    ///
    /// # Errors
    /// A line of a known kind whose fields do not parse.
    pub fn parse(output: &str) -> Result<Report, String> {
        let mut report = Report::default();
        for line in output.lines() {
            let Some((kind, map)) = fields(line) else {
                continue;
            };
            match kind {
                "CONFIG" => report
                    .config
                    .extend(map.iter().map(|(k, v)| (k.to_string(), v.to_string()))),
                "STATE" => report.states.push(StateChange {
                    at_ms: number(&map, "at_ms", line)?,
                    state: text(&map, "state", line)?,
                }),
                "CALL" => report.calls.push(Call {
                    seq: number(&map, "seq", line)?,
                    worker: number(&map, "worker", line)?,
                    start_ms: number(&map, "start_ms", line)?,
                    elapsed_ms: number(&map, "elapsed_ms", line)?,
                    wfr: number(&map, "wfr", line)? == 1,
                    code: text(&map, "code", line)?,
                    server_pid: map.get("server_pid").and_then(|v| v.parse().ok()),
                    msg: map.get("msg").map_or_else(String::new, |m| m.to_string()),
                }),
                "PENDING" => report.pending.push(Pending {
                    seq: number(&map, "seq", line)?,
                    start_ms: number(&map, "start_ms", line)?,
                    wfr: number(&map, "wfr", line)? == 1,
                }),
                _ => {}
            }
        }
        Ok(report)
    }

    /// How many calls succeeded.
    pub fn ok_count(&self) -> usize {
        self.calls.iter().filter(|c| c.ok()).count()
    }

    /// Failed calls per status code.
    pub fn failures_by_code(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for call in self.calls.iter().filter(|c| !c.ok()) {
            *counts.entry(call.code.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Failed calls per (code, message).
    pub fn failure_messages(&self) -> BTreeMap<(String, String), usize> {
        let mut counts = BTreeMap::new();
        for call in self.calls.iter().filter(|c| !c.ok()) {
            *counts
                .entry((call.code.clone(), call.msg.clone()))
                .or_insert(0) += 1;
        }
        counts
    }

    /// The `SUMMARY`, `FAILED` and `MESSAGE` lines.
    pub fn summary_lines(&self) -> Vec<String> {
        let failed = self.calls.len() - self.ok_count();
        let mut lines = vec![format!(
            "SUMMARY calls={} ok={} failed={failed} pending={}",
            self.calls.len() + self.pending.len(),
            self.ok_count(),
            self.pending.len()
        )];
        for (code, count) in self.failures_by_code() {
            lines.push(format!("FAILED code={code} count={count}"));
        }
        for ((code, msg), count) in self.failure_messages() {
            lines.push(format!(
                "MESSAGE code={code} count={count} msg={}",
                one_line(&msg)
            ));
        }
        lines
    }

    /// A short human-readable account, for assertion messages: the summary,
    /// and the state changes relative to `origin_ms`.
    pub fn describe(&self, origin_ms: u64) -> String {
        let mut text = self.summary_lines().join("\n");
        let states: Vec<String> = self
            .states
            .iter()
            .map(|s| format!("{}@{:+}ms", s.state, s.at_ms as i64 - origin_ms as i64))
            .collect();
        let _ = write!(text, "\nstates: {}", states.join(" "));
        text
    }
}
