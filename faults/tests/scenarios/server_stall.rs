//! Scenario 2: the server process is stopped (SIGSTOP) for two seconds
//! while a client calls it with 500 ms deadlines. The kernel still accepts
//! the client's bytes, but nothing answers.
//!
//! - Calls made during the stall fail with DEADLINE_EXCEEDED, within their
//!   deadline (plus slack), not later.
//! - After SIGCONT the same channel's calls succeed again, on the same
//!   connection (the channel never leaves READY).
//!
//! `FAULTS_SABOTAGE=no_deadline` makes the calls without a deadline: the
//! test must then fail.

use std::{process::Command, thread, time::Duration};

use faults::{
    harness::{sabotaged, serial, signal, ClientProcess, ServerProcess},
    now_ms,
    report::{describe_calls, Call},
};

use crate::{CLIENT, SERVER};

const DEADLINE_MS: u64 = 500;
/// How late past its deadline a call may end (a loaded CI machine).
const SLACK_MS: u64 = 1_500;
const STALL_MS: u64 = 2_000;

#[test]
fn stalled_server_gives_deadline_exceeded_then_recovers() {
    let _one_at_a_time = serial();
    let mut command = Command::new(SERVER);
    command.args(["--addr", "127.0.0.1:0"]);
    let server = ServerProcess::start(command);
    let deadline = if sabotaged("no_deadline") {
        0
    } else {
        DEADLINE_MS
    };
    let mut command = Command::new(CLIENT);
    command.args([
        "--target",
        &server.addr,
        "--duration-ms",
        "6000",
        "--concurrency",
        "2",
        "--interval-ms",
        "50",
        "--deadline-ms",
        &deadline.to_string(),
        "--await-ready-ms",
        "5000",
    ]);
    let mut client = ClientProcess::start(command);
    client
        .wait_for_line(Duration::from_secs(10), |l| {
            l.starts_with("CALL ") && l.contains("code=OK")
        })
        .expect("the client's calls get through before the stall");
    thread::sleep(Duration::from_millis(1000));

    signal(server.pid, "STOP");
    // After `kill` returned: every call from now on meets a stopped server.
    let stopped_ms = now_ms();
    thread::sleep(Duration::from_millis(STALL_MS));
    let continued_ms = now_ms();
    signal(server.pid, "CONT");

    let run = client.finish(Duration::from_secs(40));
    let report = &run.report;
    let account = format!(
        "server stopped at 0 ms, continued at {:+} ms\n{}",
        continued_ms - stopped_ms,
        report.describe(stopped_ms)
    );
    println!("{account}");
    let list = |calls: &[&Call]| describe_calls(calls, stopped_ms);

    // Calls made and due while the server was stopped.
    let stalled: Vec<&Call> = report
        .calls
        .iter()
        .filter(|c| c.start_ms >= stopped_ms && c.start_ms + DEADLINE_MS + 50 <= continued_ms)
        .collect();
    assert!(
        stalled.len() >= 2,
        "too few calls during the stall:\n{account}"
    );
    let wrong: Vec<&Call> = stalled
        .iter()
        .copied()
        .filter(|c| c.code != "DEADLINE_EXCEEDED")
        .collect();
    assert!(
        wrong.is_empty(),
        "calls during the stall did not fail with DEADLINE_EXCEEDED:\n{}\n{account}",
        list(&wrong)
    );

    // Every failure is a deadline, met on time, around the stall.
    let failed: Vec<&Call> = report.calls.iter().filter(|c| !c.ok()).collect();
    let wrong: Vec<&Call> = failed
        .iter()
        .copied()
        .filter(|c| {
            c.code != "DEADLINE_EXCEEDED"
                || c.elapsed_ms > DEADLINE_MS + SLACK_MS
                || c.start_ms + DEADLINE_MS + SLACK_MS < stopped_ms
                || c.start_ms > continued_ms
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "failures other than DEADLINE_EXCEEDED within {DEADLINE_MS} ms + {SLACK_MS} ms during the stall:\n{}\n{account}",
        list(&wrong)
    );
    assert!(report.pending.is_empty(), "calls never ended:\n{account}");

    // After SIGCONT: the same channel and connection work again.
    let after: Vec<&Call> = report
        .calls
        .iter()
        .filter(|c| c.start_ms >= continued_ms + 1_000)
        .collect();
    assert!(after.len() >= 10, "too few calls after SIGCONT:\n{account}");
    assert!(
        after
            .iter()
            .all(|c| c.ok() && c.server_pid == Some(server.pid)),
        "calls after SIGCONT failed:\n{}\n{account}",
        list(&after)
    );
    let first_ready = report
        .states
        .iter()
        .position(|s| s.state == "READY")
        .expect("the channel was READY");
    assert!(
        report.states[first_ready..]
            .iter()
            .all(|s| s.state == "READY"),
        "the channel left READY during the stall (the connection was dropped):\n{account}"
    );
}
