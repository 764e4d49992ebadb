//! What the fault-injection tests share: starting the server and client
//! binaries, a pair of network namespaces joined by a veth pair (removed
//! again when dropped), and the policy for tests that need root.
//!
//! Tests that need root and `ip netns` call [`NetPair::create_or_skip`]: when
//! it cannot be had, the test is skipped with `skipped: needs root: ...` on
//! stdout, unless the environment variable `CI` is set, in which case the
//! test fails, so that CI never skips one silently.
//!
//! `FAULTS_SABOTAGE` (a comma-separated list, see [`sabotaged`]) turns off
//! the behaviour a test covers, to check that the test then fails.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use crate::report::Report;

/// Whether the sabotage `name` is asked for in `FAULTS_SABOTAGE`, e.g.
/// `FAULTS_SABOTAGE=no_retry`. The tests know `no_wait_for_ready`,
/// `no_deadline`, `no_retry` and `no_keepalive`.
pub fn sabotaged(name: &str) -> bool {
    let on = std::env::var("FAULTS_SABOTAGE")
        .unwrap_or_default()
        .split(',')
        .any(|s| s.trim() == name);
    if on {
        println!("SABOTAGE {name}: the behaviour under test is turned off; this test should fail");
    }
    on
}

/// Holds the other scenarios off while one runs: they share two cores with
/// timing bounds, and the test harness runs tests in parallel unless told
/// `--test-threads=1`.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A scenario that panicked poisons it; the next one still runs.
    ONE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether this run is in CI (`CI` set and not empty, nor `false`/`0`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Skips the test (returns `None`) with `skipped: needs root: REASON`, or
/// panics with the reason in CI.
pub fn skip_or_fail<T>(reason: &str) -> Option<T> {
    if in_ci() {
        panic!("{reason}; CI is set, so this test may not be skipped (run faults/run.sh as root)");
    }
    println!("skipped: needs root: {reason}");
    None
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs a command to its end; an error names it, with its stderr.
///
/// # Errors
/// When it cannot be started or exits unsuccessfully.
pub fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Sends `signal` (e.g. `STOP`, `CONT`, `KILL`) to `pid` with `kill`.
///
/// # Panics
/// When `kill` fails.
pub fn signal(pid: u32, signal: &str) {
    sh("kill", &[&format!("-{signal}"), &pid.to_string()])
        .unwrap_or_else(|e| panic!("cannot send SIG{signal} to {pid}: {e}"));
}

/// Collects a pipe's text in a thread, so the child never blocks on a full
/// pipe.
fn collect(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// A running `faults_server`; killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// The address it listens on, `HOST:PORT`.
    pub addr: String,
    /// Its pid (the server's own: `ip netns exec` execs it).
    pub pid: u32,
    stderr: Option<thread::JoinHandle<String>>,
}

impl ServerProcess {
    /// Starts `command` (a `faults_server`, perhaps under `ip netns exec`)
    /// and waits up to 20 s for its `listening on HOST:PORT pid=PID` line.
    ///
    /// # Panics
    /// When it does not say it listens in time.
    pub fn start(mut command: Command) -> ServerProcess {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the server {command:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = collect(child.stderr.take().expect("stderr is piped"));
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep reading so the server never blocks on stdout.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let err = stderr.join().unwrap_or_default();
                panic!("the server {command:?} did not say it listens within 20 s; stderr:\n{err}");
            }
        };
        let parsed = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_once(" pid="))
            .and_then(|(addr, pid)| Some((addr.to_string(), pid.parse().ok()?)));
        let Some((addr, pid)) = parsed else {
            let _ = child.kill();
            panic!("unexpected first line from the server: {line:?}");
        };
        ServerProcess {
            child,
            addr,
            pid,
            stderr: Some(stderr),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .expect("the address has a port")
    }

    /// `kill -9`, and waits for it to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its stderr so far, once it has exited (empty while it runs).
    pub fn stderr(&mut self) -> String {
        if self.running() {
            return String::new();
        }
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A stopped process dies of SIGKILL too, but CONT first is harmless.
        let _ = Command::new("kill")
            .args(["-CONT", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `faults_client`; killed when dropped.
pub struct ClientProcess {
    child: Child,
    started: Instant,
    /// Its stdout, line by line, as it prints them.
    lines: mpsc::Receiver<String>,
    /// The lines read so far.
    seen: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

/// What a client run left.
pub struct ClientRun {
    /// Its parsed output.
    pub report: Report,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl ClientProcess {
    /// Starts `command` (a `faults_client`).
    ///
    /// # Panics
    /// When it cannot be started.
    pub fn start(mut command: Command) -> ClientProcess {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the client {command:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ClientProcess {
            stderr: Some(collect(child.stderr.take().expect("stderr is piped"))),
            child,
            started: Instant::now(),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `timeout` for a line of stdout that `wanted` accepts,
    /// and returns it (`None` on timeout or when the client exits first).
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = wanted(&line);
                    self.seen.push(line.clone());
                    if hit {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Kills the client now and returns what it printed so far.
    pub fn kill(mut self) -> ClientRun {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.gather()
    }

    /// Waits for the client to exit, at most `limit` from its start (then it
    /// is killed and the test fails), and parses its output.
    ///
    /// # Panics
    /// When it runs past `limit`, exits unsuccessfully, or prints what does
    /// not parse.
    pub fn finish(mut self, limit: Duration) -> ClientRun {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("the client can be waited for") {
                break Some(status);
            }
            if self.started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(50));
        };
        let run = self.gather();
        match status {
            None => panic!(
                "the client ran longer than {limit:?} and was killed; stdout:\n{}\nstderr:\n{}",
                run.stdout, run.stderr
            ),
            Some(s) if !s.success() => panic!(
                "the client failed ({s}); stdout:\n{}\nstderr:\n{}",
                run.stdout, run.stderr
            ),
            Some(_) => run,
        }
    }

    /// Reads the rest of the output of the exited client.
    fn gather(&mut self) -> ClientRun {
        while let Ok(line) = self.lines.recv() {
            self.seen.push(line);
        }
        let mut stdout = self.seen.join("\n");
        stdout.push('\n');
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let report = Report::parse(&stdout)
            .unwrap_or_else(|e| panic!("cannot parse the client's output: {e}\n{stdout}"));
        ClientRun {
            report,
            stdout,
            stderr,
        }
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Names unique to this process and call, so tests running at the same
/// time (in this process or another) do not collide.
fn unique_tag() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // pid up to 7 digits + counter: interface names stay under 16 bytes.
    format!(
        "{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Two network namespaces, one for the server and one for the client,
/// joined by a veth pair: the server's end is [`NetPair::SERVER_IP`], the
/// client's [`NetPair::CLIENT_IP`] (each namespace has its own routes, so
/// every pair can use the same addresses). Dropping it deletes both
/// namespaces, which removes the veth pair, the qdiscs and the firewall
/// rules with them.
pub struct NetPair {
    /// The server's namespace.
    pub server_ns: String,
    /// The client's namespace.
    pub client_ns: String,
    /// The veth end in the server's namespace.
    pub server_if: String,
    /// The veth end in the client's namespace.
    pub client_if: String,
    created: Vec<String>,
}

impl NetPair {
    /// The server's address on the veth pair.
    pub const SERVER_IP: &'static str = "10.211.0.1";
    /// The client's address on the veth pair.
    pub const CLIENT_IP: &'static str = "10.211.0.2";

    /// Creates the namespaces and the veth pair.
    ///
    /// # Errors
    /// The failing command's error; whatever was made is removed again.
    pub fn create() -> Result<NetPair, String> {
        let tag = unique_tag();
        let mut pair = NetPair {
            server_ns: format!("faults-{tag}-srv"),
            client_ns: format!("faults-{tag}-cli"),
            server_if: format!("fs{tag}"),
            client_if: format!("fc{tag}"),
            created: Vec::new(),
        };
        for ns in [pair.server_ns.clone(), pair.client_ns.clone()] {
            sh("ip", &["netns", "add", &ns])?;
            pair.created.push(ns);
        }
        sh(
            "ip",
            &[
                "link",
                "add",
                &pair.server_if,
                "netns",
                &pair.server_ns,
                "type",
                "veth",
                "peer",
                "name",
                &pair.client_if,
                "netns",
                &pair.client_ns,
            ],
        )?;
        for (ns, dev, ip) in [
            (&pair.server_ns, &pair.server_if, Self::SERVER_IP),
            (&pair.client_ns, &pair.client_if, Self::CLIENT_IP),
        ] {
            sh(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev],
            )?;
            sh("ip", &["-n", ns, "link", "set", dev, "up"])?;
            sh("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }

    /// [`create`](Self::create), or the skip policy of this module when not
    /// root or when `ip netns` does not work.
    pub fn create_or_skip() -> Option<NetPair> {
        if !is_root() {
            return skip_or_fail("not running as root (network namespaces need it)");
        }
        match NetPair::create() {
            Ok(pair) => Some(pair),
            Err(e) => skip_or_fail(&format!("`ip netns` is not usable here: {e}")),
        }
    }

    /// A command running `program` in namespace `ns`.
    pub fn command_in(ns: &str, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns, program]);
        command
    }

    /// A command running `program` in the server's namespace.
    pub fn server_command(&self, program: &str) -> Command {
        NetPair::command_in(&self.server_ns, program)
    }

    /// A command running `program` in the client's namespace.
    pub fn client_command(&self, program: &str) -> Command {
        NetPair::command_in(&self.client_ns, program)
    }

    /// Adds a root `netem` qdisc (e.g. `loss 5% delay 10ms`) to both veth
    /// ends, so that both directions suffer it.
    ///
    /// # Errors
    /// When `tc` fails, e.g. on a kernel built without `sch_netem`.
    pub fn netem(&self, spec: &str) -> Result<(), String> {
        for (ns, dev) in [
            (&self.server_ns, &self.server_if),
            (&self.client_ns, &self.client_if),
        ] {
            let mut args = vec!["-n", ns, "qdisc", "add", "dev", dev, "root", "netem"];
            args.extend(spec.split_whitespace());
            sh("tc", &args)?;
        }
        Ok(())
    }

    /// Drops each packet in and out of the server's namespace with
    /// probability `percent`% (`iptables -m statistic --mode random`).
    ///
    /// # Errors
    /// When `iptables` fails.
    pub fn random_loss(&self, percent: u32) -> Result<(), String> {
        let probability = format!("{:.4}", f64::from(percent) / 100.0);
        for chain in ["INPUT", "OUTPUT"] {
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.server_ns,
                    "iptables",
                    "-A",
                    chain,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &probability,
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// Makes the link lose `loss_percent`% of the packets each way and
    /// delay them by `delay_ms`, with `tc netem`. A kernel without
    /// `sch_netem` (some VM kernels have no netem and no modules) gets the
    /// loss from `iptables` instead, without the delay. Returns what was
    /// done, to print, and the delay actually added each way.
    ///
    /// # Errors
    /// When neither works.
    pub fn impair(&self, loss_percent: u32, delay_ms: u32) -> Result<(String, u32), String> {
        let spec = format!("loss {loss_percent}% delay {delay_ms}ms");
        match self.netem(&spec) {
            Ok(()) => Ok((format!("tc netem {spec} on both veth ends"), delay_ms)),
            Err(netem) => {
                // A qdisc added on one end before the failure stays; take it off.
                for (ns, dev) in [
                    (&self.server_ns, &self.server_if),
                    (&self.client_ns, &self.client_if),
                ] {
                    let _ = sh("tc", &["-n", ns, "qdisc", "del", "dev", dev, "root"]);
                }
                self.random_loss(loss_percent)
                    .map_err(|e| format!("tc netem failed ({netem}), and so did iptables: {e}"))?;
                Ok((
                    format!(
                        "NO NETEM HERE ({netem}): iptables -m statistic drops {loss_percent}% of the packets each way, without the {delay_ms} ms delay"
                    ),
                    0,
                ))
            }
        }
    }

    /// The TCP segments retransmitted in namespace `ns` so far
    /// (`RetransSegs` of `/proc/net/snmp`).
    ///
    /// # Errors
    /// When it cannot be read.
    pub fn tcp_retransmits(ns: &str) -> Result<u64, String> {
        let snmp = sh("ip", &["netns", "exec", ns, "cat", "/proc/net/snmp"])?;
        let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
        let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
            return Err(format!("no Tcp lines in /proc/net/snmp of {ns}"));
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == "RetransSegs")
            .and_then(|(_, value)| value.parse().ok())
            .ok_or_else(|| format!("no RetransSegs in /proc/net/snmp of {ns}"))
    }

    /// Drops every packet in and out of the server's namespace
    /// (`iptables -A INPUT -j DROP`, and OUTPUT).
    ///
    /// # Errors
    /// When `iptables` fails.
    pub fn black_hole_server(&self) -> Result<(), String> {
        for chain in ["INPUT", "OUTPUT"] {
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.server_ns,
                    "iptables",
                    "-A",
                    chain,
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in &self.created {
            if let Err(e) = sh("ip", &["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Whether `program` can be run (is on `PATH`).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
