//! Reconnection backoff of a real subchannel, on a paused clock: the times
//! at which connection attempts start follow connection-backoff.md exactly
//! (jitter off), and `reset_connect_backoff` cuts a wait short.
//!
//! The address is a Unix socket path that does not exist, so each attempt
//! fails at once without waiting on the network, and the paused clock only
//! moves when every task waits for a timer. A balancer written against the
//! public `balancer` API records when its subchannel starts connecting.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ferrogrpc::{
    backoff,
    balancer::{self, Balancer, ClientConnState, Helper, SubConn, SubConnState},
    client::Channel,
    connectivity::State,
    Status,
};
use tokio::time::Instant;

type Log = Arc<Mutex<Vec<(State, Instant)>>>;

/// Connects its one subchannel whenever it is IDLE and logs its states.
struct Recorder {
    log: Log,
}

struct RecorderBalancer {
    helper: Helper,
    log: Log,
    subconn: Option<SubConn>,
}

impl balancer::Builder for Recorder {
    fn name(&self) -> &str {
        "test_backoff_recorder"
    }

    fn build(&self, helper: Helper) -> Box<dyn Balancer> {
        Box::new(RecorderBalancer {
            helper,
            log: Arc::clone(&self.log),
            subconn: None,
        })
    }
}

impl Balancer for RecorderBalancer {
    fn update_client_conn_state(&mut self, state: ClientConnState) -> Result<(), String> {
        if self.subconn.is_none() {
            let address = state.resolver_state.addresses[0].clone();
            let subconn = self.helper.new_subconn(address);
            subconn.connect();
            self.subconn = Some(subconn);
        }
        Ok(())
    }

    fn resolver_error(&mut self, _error: Status) {}

    fn subchannel_state(&mut self, subconn: &SubConn, state: SubConnState) {
        self.log.lock().unwrap().push((state.state, Instant::now()));
        if state.state == State::Idle {
            subconn.connect();
        }
    }

    fn exit_idle(&mut self) {}
}

fn log() -> Log {
    let log: Log = Arc::default();
    balancer::register(Recorder {
        log: Arc::clone(&log),
    });
    log
}

fn channel(dir: &std::path::Path) -> Channel {
    let path = dir.join("nobody-listens.sock");
    Channel::builder(format!("unix://{}", path.display()))
        .default_service_config(r#"{"loadBalancingConfig": [{"test_backoff_recorder": {}}]}"#)
        .connect_backoff(backoff::Config::default().with_jitter(0.0))
        .build()
        .unwrap()
}

/// The start times of connection attempts, relative to the first.
fn attempt_starts(log: &Log) -> Vec<f64> {
    let log = log.lock().unwrap();
    let starts: Vec<Instant> = log
        .iter()
        .filter(|(s, _)| *s == State::Connecting)
        .map(|(_, t)| *t)
        .collect();
    starts
        .iter()
        .map(|t| (*t - starts[0]).as_secs_f64())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn attempts_follow_the_spec_schedule_and_reset_cuts_the_wait() {
    let log = log();
    let dir = std::env::temp_dir().join(format!("ferrogrpc-backoff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ch = channel(&dir);
    // Leaving IDLE starts the resolver, the balancer and the first attempt.
    // (This balancer never publishes a state, so `connect` would wait for
    // ever; its first poll is what wakes the channel.)
    let _ = tokio::time::timeout(Duration::from_millis(1), ch.connect()).await;
    tokio::time::sleep(Duration::from_secs(40) - Duration::from_millis(1)).await;
    let starts = attempt_starts(&log);
    // connection-backoff.md without jitter: 0, 1, 2.6, 5.16, 9.256, 15.8096,
    // 26.29536, (next at 43.07) ...
    let expected = [0.0, 1.0, 2.6, 5.16, 9.256, 15.8096, 26.29536];
    assert_eq!(starts.len(), expected.len(), "attempts at {starts:?}");
    for (got, want) in starts.iter().zip(expected) {
        assert!(
            (got - want).abs() < 0.002,
            "attempts at {starts:?}, want {expected:?}"
        );
    }
    // Each failed attempt went through TRANSIENT_FAILURE, then IDLE.
    {
        let log = log.lock().unwrap();
        let states: Vec<State> = log.iter().map(|(s, _)| *s).take(4).collect();
        assert_eq!(
            states,
            [
                State::Connecting,
                State::TransientFailure,
                State::Idle,
                State::Connecting
            ]
        );
    }
    // Now in a 26.8 s wait (until ~53.1 s); a reset starts the next attempt
    // at once, and the schedule starts over.
    let before = starts.len();
    ch.reset_connect_backoff();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let starts = attempt_starts(&log);
    assert_eq!(
        starts.len(),
        before + 1,
        "reset started an attempt: {starts:?}"
    );
    assert!((starts[before] - 40.0).abs() < 0.05, "{starts:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let starts = attempt_starts(&log);
    // After the reset: 40, 41, 42.6.
    assert_eq!(starts.len(), before + 3, "{starts:?}");
    assert!((starts[before + 1] - 41.0).abs() < 0.05, "{starts:?}");
    assert!((starts[before + 2] - 42.6).abs() < 0.05, "{starts:?}");
    drop(ch);
    let _ = std::fs::remove_dir_all(&dir);
}
