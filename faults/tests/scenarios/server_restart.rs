//! Scenario 1: the server is killed (SIGKILL) while a client calls it
//! without pause from four workers, two of them making wait-for-ready calls,
//! and is restarted on the same port a second later.
//!
//! - Wait-for-ready calls wait out the outage and complete OK.
//! - The other calls fail fast during the outage, with UNAVAILABLE and a
//!   message naming the cause (connection refused, and the address).
//! - Once the server is back, every call succeeds again, answered by the
//!   new server process.
//!
//! `FAULTS_SABOTAGE=no_wait_for_ready` makes every call fail-fast: the test
//! must then fail.

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use faults::{
    harness::{sabotaged, serial, ClientProcess, ServerProcess},
    now_ms,
    report::{describe_calls, Call},
};

use crate::{CLIENT, SERVER};

/// Each call's deadline: far longer than the outage, so a wait-for-ready
/// call can wait it out.
const DEADLINE_MS: u64 = 15_000;
/// How long after the kill a call may still have gone out on the dead
/// connection before the client noticed that it was closed.
const KILL_RACE_MS: u64 = 100;
/// How long after the restart the client may take to reconnect (its
/// reconnection backoff is at most 300 ms).
const RECONNECT_MS: u64 = 2_000;

fn server(addr: &str) -> ServerProcess {
    let mut command = Command::new(SERVER);
    command.args(["--addr", addr]);
    ServerProcess::start(command)
}

#[test]
fn killed_server_restarted_on_the_same_port() {
    let _one_at_a_time = serial();
    let mut first = server("127.0.0.1:0");
    let addr = first.addr.clone();
    let wait_for_ready = if sabotaged("no_wait_for_ready") {
        "never"
    } else {
        // Workers 1 and 3 make wait-for-ready calls, 0 and 2 do not.
        "half"
    };
    let mut command = Command::new(CLIENT);
    command.args([
        "--target",
        &addr,
        "--duration-ms",
        "7000",
        "--concurrency",
        "4",
        "--interval-ms",
        "20",
        "--deadline-ms",
        &DEADLINE_MS.to_string(),
        "--wait-for-ready",
        wait_for_ready,
        "--backoff-base-ms",
        "100",
        "--backoff-max-ms",
        "300",
        "--await-ready-ms",
        "5000",
    ]);
    let mut client = ClientProcess::start(command);
    client
        .wait_for_line(Duration::from_secs(10), |l| {
            l.starts_with("CALL ") && l.contains("code=OK")
        })
        .expect("the client's calls get through before the kill");
    thread::sleep(Duration::from_millis(1500));

    let killed_ms = now_ms();
    first.kill9();
    let outage = Instant::now();
    thread::sleep(Duration::from_millis(1000));
    let second = server(&addr);
    let restarted_ms = now_ms();
    let outage = outage.elapsed();
    assert_eq!(second.addr, addr, "the new server listens on the same port");

    let run = client.finish(Duration::from_secs(40));
    let report = &run.report;
    let account = format!(
        "server killed at 0 ms, back at {:+} ms\n{}",
        restarted_ms - killed_ms,
        report.describe(killed_ms)
    );
    println!("{account}");
    assert!(report.pending.is_empty(), "calls never ended:\n{account}");

    // Wait-for-ready workers: every call completes OK, except one per
    // worker that was on the wire when the server died (see KILL_RACE_MS):
    // wait-for-ready decides how a call waits for a connection, not what
    // happens to one already sent on a connection that then breaks (as in
    // gRPC-Go).
    let wfr_calls: Vec<&Call> = report.calls.iter().filter(|c| c.worker % 2 == 1).collect();
    let (in_flight, later): (Vec<&Call>, Vec<&Call>) = wfr_calls
        .iter()
        .filter(|c| !c.ok())
        .partition(|c| c.start_ms <= killed_ms + KILL_RACE_MS);
    println!(
        "wait-for-ready calls: {} ok, {} failed on the wire at the kill\n{}",
        wfr_calls.iter().filter(|c| c.ok()).count(),
        in_flight.len(),
        describe_calls(&in_flight, killed_ms)
    );
    assert!(
        later.is_empty(),
        "wait-for-ready calls made after the kill failed:\n{}\n{account}",
        describe_calls(&later, killed_ms)
    );
    assert!(
        in_flight.len() <= 2 && in_flight.iter().all(|c| c.code == "UNAVAILABLE"),
        "more than one call per wait-for-ready worker failed at the kill, or not with UNAVAILABLE:\n{}\n{account}",
        describe_calls(&in_flight, killed_ms)
    );
    // ... and they did wait: each such worker had a call that started
    // during the outage and succeeded after the restart.
    for worker in [1, 3] {
        let waited = wfr_calls.iter().any(|c| {
            c.worker == worker
                && c.wfr
                && c.ok()
                && c.start_ms >= killed_ms
                && c.start_ms < restarted_ms
                && c.end_ms() >= restarted_ms
        });
        assert!(
            waited,
            "no wait-for-ready call of worker {worker} waited out the outage ({outage:?}):\n{account}"
        );
    }

    // Fail-fast workers: failures only during the outage, all UNAVAILABLE,
    // naming the cause.
    let failed: Vec<&Call> = report
        .calls
        .iter()
        .filter(|c| c.worker % 2 == 0 && !c.ok())
        .collect();
    assert!(
        !failed.is_empty(),
        "no fail-fast call failed during a {outage:?} outage:\n{account}"
    );
    for call in &failed {
        assert_eq!(
            call.code,
            "UNAVAILABLE",
            "{}\n{account}",
            call.describe(killed_ms)
        );
        assert!(
            call.start_ms + KILL_RACE_MS >= killed_ms
                && call.start_ms <= restarted_ms + RECONNECT_MS,
            "a call failed outside the outage: {}\n{account}",
            call.describe(killed_ms)
        );
        let names_cause = ["refused", "connection", "broken pipe", "reset", &addr]
            .iter()
            .any(|cause| call.msg.contains(cause));
        assert!(
            names_cause,
            "the failure does not say what went wrong: {}\n{account}",
            call.describe(killed_ms)
        );
    }
    assert!(
        failed
            .iter()
            .any(|c| c.msg.contains("refused") && c.msg.contains(&addr)),
        "no failure names the refused connection to {addr}:\n{account}"
    );

    // After the restart: everything succeeds, on the new server.
    let settled: Vec<&Call> = report
        .calls
        .iter()
        .filter(|c| c.start_ms >= restarted_ms + RECONNECT_MS)
        .collect();
    assert!(
        settled.len() >= 20,
        "too few calls after the restart:\n{account}"
    );
    for call in &settled {
        assert!(
            call.ok() && call.server_pid == Some(second.pid),
            "a call after the restart did not succeed on the new server (pid {}): {}\n{account}",
            second.pid,
            call.describe(killed_ms)
        );
    }
}
