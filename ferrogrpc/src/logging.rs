//! Logging, as gRPC-Go's `grpclog`: ferrogrpc logs through `tracing`, and is
//! silent unless asked.
//!
//! - If your program installs a `tracing` subscriber, ferrogrpc's events go
//!   to it like any other crate's (target `ferrogrpc`, and `h2` for HTTP/2
//!   frame-level detail), filtered by it; the variables below do not apply.
//! - Otherwise, set environment variables and ferrogrpc prints its events to
//!   stderr itself (cargo feature `env-logging`, on by default). They are
//!   read once, when the first server or channel is built:
//!
//! | variable | values | effect |
//! |---|---|---|
//! | `FERROGRPC_LOG` | `error`, `warning` (or `warn`), `info`; unset or `off`: nothing | the least severe level shown (like `GRPC_GO_LOG_SEVERITY_LEVEL`) |
//! | `FERROGRPC_LOG_VERBOSITY` | `0` (default), `1`, `2` (a larger number counts as `2`) | more detail (like `GRPC_GO_LOG_VERBOSITY_LEVEL`): `1` adds ferrogrpc's debug events — every connection, its end and reason, GOAWAY, stream resets, TLS handshake failures; `2` adds trace events and the h2 crate's own debug output |
//!
//! For example `FERROGRPC_LOG=info FERROGRPC_LOG_VERBOSITY=1 ./server`.
//!
//! # How the two variables combine
//!
//! `FERROGRPC_LOG` sets the least severe level shown, whatever the
//! verbosity. The detail verbosity adds is below `info`, so, as in gRPC-Go
//! (where verbose logs are info logs), it shows only with
//! `FERROGRPC_LOG=info`: `FERROGRPC_LOG=error FERROGRPC_LOG_VERBOSITY=2`
//! shows errors and nothing else. `FERROGRPC_LOG=debug` and `trace` are
//! accepted too, as `info` with verbosity `1` and `2`.
//!
//! A value not in the table is not ignored silently: ferrogrpc prints a
//! warning on stderr naming the variable, the value and the values accepted,
//! and uses the default (logging off for `FERROGRPC_LOG`, `0` for the
//! verbosity).
//!
//! # Your subscriber and `FERROGRPC_LOG`: the order does not matter
//!
//! ferrogrpc never installs a global subscriber, so it cannot get in the way
//! of yours: `tracing::subscriber::set_global_default` (or
//! `tracing_subscriber::fmt().init()`) succeeds whether it runs before or
//! after the first server or channel is built. The stderr logger is a
//! fallback, used for an event only while your program has no subscriber in
//! place (neither a global one nor a scoped one on that thread):
//!
//! 1. subscriber installed first, then servers and channels built:
//!    ferrogrpc's events all go to your subscriber;
//! 2. servers or channels built first with `FERROGRPC_LOG` set: their events
//!    go to stderr until you install your subscriber, and to it from then on.

use std::future::Future;

/// The stderr logger the environment asked for, once read.
#[cfg(feature = "env-logging")]
static LOGGER: std::sync::OnceLock<Option<tracing::Dispatch>> = std::sync::OnceLock::new();

/// The filter the environment asks for, if logging is switched on, as
/// `tracing_subscriber::EnvFilter` directives. Prints a warning on stderr for
/// each variable with a value it does not accept.
pub fn env_filter_directives() -> Option<String> {
    let severity = std::env::var("FERROGRPC_LOG").ok();
    let verbosity = std::env::var("FERROGRPC_LOG_VERBOSITY").ok();
    let (directives, warnings) = parse(severity.as_deref(), verbosity.as_deref());
    for warning in warnings {
        eprintln!("ferrogrpc: {warning}");
    }
    directives
}

/// What `FERROGRPC_LOG` and `FERROGRPC_LOG_VERBOSITY` ask for: the filter
/// directives (`None`: logging off) and a warning for each bad value.
fn parse(severity: Option<&str>, verbosity: Option<&str>) -> (Option<String>, Vec<String>) {
    let mut warnings = Vec::new();
    let verbosity = match verbosity.map(str::trim) {
        None | Some("") => 0,
        Some(v) => match v.parse::<u32>() {
            Ok(n) => n.min(2),
            Err(_) => {
                warnings.push(format!(
                    "ignoring FERROGRPC_LOG_VERBOSITY={v:?}: the accepted values are 0, 1 and 2 \
                     (a larger number counts as 2); using 0"
                ));
                0
            }
        },
    };
    // The least severe level shown, and the verbosity a severity implies.
    let (level, at_least) = match severity.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "off" | "none") => return (None, warnings),
        Some("error") => ("error", 0),
        Some("warning" | "warn") => ("warn", 0),
        Some("info") => ("info", 0),
        Some("debug") => ("info", 1),
        Some("trace") => ("info", 2),
        Some(_) => {
            let bad = severity.unwrap_or_default();
            warnings.push(format!(
                "ignoring FERROGRPC_LOG={bad:?}: the accepted values are error, warning \
                 (or warn), info, debug, trace and off; logging stays off"
            ));
            return (None, warnings);
        }
    };
    let directives = match (level, verbosity.max(at_least)) {
        ("info", 1) => "ferrogrpc=debug".to_string(),
        ("info", 2) => "ferrogrpc=trace,h2=debug".to_string(),
        // Verbosity adds detail below info, which error and warn leave out.
        (level, _) => format!("ferrogrpc={level}"),
    };
    (Some(directives), warnings)
}

/// Reads the environment, once per process, and readies the stderr logger
/// it asks for. Called when a server or channel is built; harmless to call
/// again. Installs no global subscriber (see the module docs).
pub fn init_from_env() {
    #[cfg(feature = "env-logging")]
    LOGGER.get_or_init(|| {
        let directives = env_filter_directives()?;
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(directives))
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .finish();
        Some(tracing::Dispatch::new(subscriber))
    });
}

/// The stderr logger, if the environment asked for one.
#[cfg(feature = "env-logging")]
fn logger() -> Option<&'static tracing::Dispatch> {
    LOGGER.get().and_then(Option::as_ref)
}

#[cfg(not(feature = "env-logging"))]
fn logger() -> Option<&'static tracing::Dispatch> {
    None
}

/// Whether the program has a subscriber of its own for this thread.
fn program_has_subscriber() -> bool {
    !tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>())
}

/// Runs `f` with the stderr logger as this thread's subscriber if there is a
/// logger and the program has no subscriber of its own; otherwise just runs
/// `f`. For events ferrogrpc emits from a caller's task or thread.
pub(crate) fn in_scope<R>(f: impl FnOnce() -> R) -> R {
    match logger() {
        Some(logger) if !program_has_subscriber() => tracing::dispatcher::with_default(logger, f),
        _ => f(),
    }
}

/// `fut`, with each poll run [`in_scope`], so the events it emits reach the
/// stderr logger while the program has no subscriber. Costs nothing when
/// logging is off.
pub(crate) async fn fallback<F: Future>(fut: F) -> F::Output {
    if logger().is_none() {
        return fut.await;
    }
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| in_scope(|| fut.as_mut().poll(cx))).await
}

/// `tokio::spawn`, with the task's events reaching the stderr logger (see
/// [`fallback`]). Every task ferrogrpc spawns should use this: a spawned
/// task does not inherit its spawner's subscriber.
pub(crate) fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fallback(fut))
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn directives(severity: &str, verbosity: &str) -> Option<String> {
        let (directives, warnings) = parse(Some(severity), Some(verbosity));
        assert!(warnings.is_empty(), "{warnings:?}");
        directives
    }

    #[test]
    fn severity_sets_the_floor_and_verbosity_adds_detail_below_info() {
        assert_eq!(parse(None, None), (None, vec![]));
        assert_eq!(parse(None, Some("2")), (None, vec![]));
        assert_eq!(directives("off", "1"), None);
        assert_eq!(directives("info", ""), Some("ferrogrpc=info".into()));
        assert_eq!(directives(" INFO ", "0"), Some("ferrogrpc=info".into()));
        assert_eq!(directives("info", "1"), Some("ferrogrpc=debug".into()));
        assert_eq!(
            directives("info", "2"),
            Some("ferrogrpc=trace,h2=debug".into())
        );
        assert_eq!(
            directives("info", "99"),
            Some("ferrogrpc=trace,h2=debug".into())
        );
        assert_eq!(directives("warning", "0"), Some("ferrogrpc=warn".into()));
        assert_eq!(directives("warn", "2"), Some("ferrogrpc=warn".into()));
        assert_eq!(directives("error", "2"), Some("ferrogrpc=error".into()));
        assert_eq!(directives("debug", "0"), Some("ferrogrpc=debug".into()));
        assert_eq!(
            directives("debug", "2"),
            Some("ferrogrpc=trace,h2=debug".into())
        );
        assert_eq!(
            directives("trace", "0"),
            Some("ferrogrpc=trace,h2=debug".into())
        );
    }

    #[test]
    fn a_bad_value_warns_and_the_default_applies() {
        let (directives, warnings) = parse(Some("loud"), None);
        assert_eq!(directives, None);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("FERROGRPC_LOG=\"loud\""),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("error, warning"), "{warnings:?}");

        let (directives, warnings) = parse(Some("info"), Some("-1"));
        assert_eq!(directives, Some("ferrogrpc=info".into()));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("FERROGRPC_LOG_VERBOSITY=\"-1\""),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("0, 1 and 2"), "{warnings:?}");

        // A bad verbosity is reported even while logging is off.
        let (_, warnings) = parse(None, Some("high"));
        assert_eq!(warnings.len(), 1);
    }
}
