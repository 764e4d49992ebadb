//! FERROGRPC_LOG and FERROGRPC_LOG_VERBOSITY, and a program's own `tracing`
//! subscriber. The logger is read once per process and a global subscriber
//! can be set once, so each scenario runs in a process of its own: the tests
//! run this binary again (`current_exe`), with `SCENARIO` naming what the
//! child's `scenario` test does and the variables set for it.

use std::{
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use ferrogrpc::{client::Channel, server::Server};
use tokio::io::AsyncReadExt;
use tracing::{field::Field, span, Event, Metadata, Subscriber};

/// Runs `scenario` in a child process under `env` and returns its stderr.
fn run(scenario: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["scenario", "--exact", "--nocapture", "--test-threads=1"])
        .env_remove("FERROGRPC_LOG")
        .env_remove("FERROGRPC_LOG_VERBOSITY")
        .env("SCENARIO", scenario)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "scenario {scenario} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stderr
}

/// The child's side: does what `SCENARIO` says (nothing without it).
#[test]
fn scenario() {
    let Ok(scenario) = std::env::var("SCENARIO") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match scenario.as_str() {
            "server_events" => server_events().await,
            "app_subscriber_after_channel" => app_subscriber_after_channel().await,
            other => panic!("unknown scenario {other}"),
        }
    });
}

/// Emits a debug event in a task of ferrogrpc's ("accepted connection")
/// and an info event from the caller's ("stop: closing every connection").
async fn server_events() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder().build();
    let serving = server.clone();
    let task = tokio::spawn(async move { serving.serve_listener(listener).await });
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server's SETTINGS: its connection task is running.
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("the server sent nothing")
        .unwrap();
    assert!(n > 0);
    server.stop();
    task.await.unwrap().unwrap();
}

/// The program builds a channel (and a server), then installs its own
/// global subscriber, as `tracing`'s docs show.
async fn app_subscriber_after_channel() {
    let _channel = Channel::builder("127.0.0.1:1").build().unwrap();
    // Before the program has a subscriber: to ferrogrpc's stderr logger.
    Server::builder().build().stop();
    let events = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::set_global_default(Recorder(Arc::clone(&events)))
        .expect("set_global_default after building a channel");
    tracing::info!(target: "app", "app event");
    // From now on, ferrogrpc's events go to the program's subscriber, from
    // the caller's task and from ferrogrpc's own tasks alike.
    server_events().await;
    let events = events.lock().unwrap();
    for want in [
        "app: app event",
        "ferrogrpc::server: stop: closing every connection",
        "ferrogrpc::server: accepted connection",
    ] {
        assert!(
            events.iter().any(|e| e == want),
            "no {want:?} in {events:#?}"
        );
    }
}

/// A program's subscriber: records each event as "target: message".
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let line = format!("{}: {}", event.metadata().target(), message.0);
        self.0.lock().unwrap().push(line);
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

const INFO_EVENT: &str = "stop: closing every connection";
const DEBUG_EVENT: &str = "accepted connection";

#[test]
fn a_subscriber_installed_after_building_a_channel_gets_the_events() {
    let stderr = run("app_subscriber_after_channel", &[("FERROGRPC_LOG", "info")]);
    // Printed once: by the stderr logger, before the program had a
    // subscriber; the second stop went to the program's subscriber.
    assert_eq!(stderr.matches(INFO_EVENT).count(), 1, "{stderr}");
    assert!(!stderr.contains(DEBUG_EVENT), "{stderr}");
}

#[test]
fn verbosity_adds_detail_only_below_an_info_severity() {
    let shown = |log: &str, verbosity: &str| {
        let stderr = run(
            "server_events",
            &[
                ("FERROGRPC_LOG", log),
                ("FERROGRPC_LOG_VERBOSITY", verbosity),
            ],
        );
        (
            stderr.contains(INFO_EVENT),
            stderr.contains(DEBUG_EVENT),
            stderr,
        )
    };
    let (info, debug, stderr) = shown("info", "1");
    assert!(info && debug, "{stderr}");
    let (info, debug, stderr) = shown("info", "0");
    assert!(info && !debug, "{stderr}");
    let (info, debug, stderr) = shown("warning", "1");
    assert!(!info && !debug, "{stderr}");
    let (_, _, stderr) = shown("error", "2");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_bad_value_is_named_in_a_warning_and_the_default_applies() {
    let stderr = run("server_events", &[("FERROGRPC_LOG", "loud")]);
    assert!(stderr.contains("FERROGRPC_LOG=\"loud\""), "{stderr}");
    assert!(stderr.contains("error, warning"), "{stderr}");
    // The default: logging off.
    assert!(!stderr.contains(INFO_EVENT), "{stderr}");

    let stderr = run(
        "server_events",
        &[
            ("FERROGRPC_LOG", "info"),
            ("FERROGRPC_LOG_VERBOSITY", "lots"),
        ],
    );
    assert!(
        stderr.contains("FERROGRPC_LOG_VERBOSITY=\"lots\""),
        "{stderr}"
    );
    assert!(stderr.contains("0, 1 and 2"), "{stderr}");
    // The default verbosity, 0: info, but no debug.
    assert!(stderr.contains(INFO_EVENT), "{stderr}");
    assert!(!stderr.contains(DEBUG_EVENT), "{stderr}");
}
