//! Logging through tracing: human-readable by default, JSON lines on request. The level comes
//! from `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

pub fn init(format: LogFormat) {
    let (filter, unread) = filter_from(std::env::var(EnvFilter::DEFAULT_ENV));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests that start several servers) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Some((directives, e)) = unread {
        tracing::warn!(RUST_LOG = directives, "RUST_LOG cannot be read ({e}): logging at info");
    }
}

/// Panics logged through tracing as errors, in the log's own format (JSON lines too), with
/// the thread, the place and, when `RUST_LIB_BACKTRACE` or `RUST_BACKTRACE` asks for one, the
/// backtrace; not printed beside the log by Rust's default hook, where a log collector reading
/// JSON lines would drop them. Under a `RUST_LOG` that turns this module's errors off they are
/// printed to stderr as that hook prints them, rather than lost. For the process's command
/// line only (`main`): a test's failed assertion is a panic that its harness must show as
/// usual. A panic the service catches (a command's plan, a call's
/// handler) is logged here where it happened, then where it was caught, with what the caller
/// was answered.
pub fn log_panics() {
    std::panic::set_hook(Box::new(log_panic));
}

fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("unnamed");
    let location = info.location().map(ToString::to_string).unwrap_or_default();
    let message = info.payload_as_str().unwrap_or("(a panic without a message)");
    let backtrace = std::backtrace::Backtrace::capture();
    let backtrace = (backtrace.status() == std::backtrace::BacktraceStatus::Captured)
        .then(|| backtrace.to_string());
    if tracing::enabled!(tracing::Level::ERROR) {
        // (An absent field is left out of the line.)
        tracing::error!(thread, location, backtrace, "panicked: {message}");
    } else {
        // A `RUST_LOG` that leaves this module's errors out (`off`, or `sqlx=debug` alone)
        // would leave the panic without a trace: written as the default hook writes it.
        let backtrace = backtrace.map(|b| format!("\n{b}")).unwrap_or_default();
        eprintln!("thread '{thread}' panicked at {location}:\n{message}{backtrace}");
    }
}

/// The filter `RUST_LOG` (as read from the environment) asks for, and the value with the reason
/// when it cannot be read. A `RUST_LOG` that cannot be read is said so (at `info`, which then
/// applies), not ignored: an operator who set it would otherwise look for logs that never come.
/// One without a directive (empty, blanks, commas) is taken as unset: as an empty filter it
/// would turn every log off, warnings too. Blank pieces between commas are left out.
fn filter_from(var: Result<String, std::env::VarError>) -> (EnvFilter, Option<(String, String)>) {
    match var {
        Ok(directives) if directives.split(',').all(|d| d.trim().is_empty()) => {
            (EnvFilter::new("info"), None)
        }
        // Blank pieces ("debug, " or "a=info,,b=debug") are left out: the filter refuses them.
        Ok(directives) => match EnvFilter::try_new(
            directives.split(',').filter(|d| !d.trim().is_empty()).collect::<Vec<_>>().join(","),
        ) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new("info"), Some((directives, e.to_string()))),
        },
        Err(std::env::VarError::NotPresent) => (EnvFilter::new("info"), None),
        Err(e @ std::env::VarError::NotUnicode(_)) => {
            (EnvFilter::new("info"), Some(("(not Unicode)".to_string(), e.to_string())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{filter_from, log_panic};
    use std::sync::{Arc, Mutex};

    /// What a subscriber wrote, kept for the test.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Written {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A panic is an error in the log (JSON here) with its message, thread and place.
    #[test]
    fn a_panic_is_logged_as_an_error() {
        let written = Written::default();
        let into = written.clone();
        let subscriber =
            tracing_subscriber::fmt().json().with_writer(move || into.clone()).finish();
        let panicked = std::thread::Builder::new()
            .name("planner".into())
            .spawn(move || {
                tracing::subscriber::with_default(subscriber, || {
                    // The hook as `log_panics` installs it, called as the runtime calls it.
                    // It is the process's for this panic's moment: another test's panic then
                    // would be logged (to no subscriber) rather than printed.
                    let previous = std::panic::take_hook();
                    std::panic::set_hook(Box::new(log_panic));
                    let caught = std::panic::catch_unwind(|| panic!("a fen lost: {}", 1));
                    std::panic::set_hook(previous);
                    caught.is_err()
                })
            })
            .expect("a thread")
            .join()
            .expect("the panic was caught");
        assert!(panicked);
        let log = String::from_utf8(written.0.lock().expect("not poisoned").clone()).expect("text");
        let line: serde_json::Value =
            serde_json::from_str(log.lines().next().expect("a line")).expect("a JSON line");
        assert_eq!(line["level"], "ERROR", "{log}");
        assert_eq!(line["fields"]["message"], "panicked: a fen lost: 1", "{log}");
        assert_eq!(line["fields"]["thread"], "planner", "{log}");
        let location = line["fields"]["location"].as_str().expect("a location");
        assert!(location.starts_with("src/telemetry.rs:"), "{location}");
    }
    use std::env::VarError;
    use std::ffi::OsString;

    fn read(var: Result<&str, VarError>) -> (String, bool) {
        let (filter, unread) = filter_from(var.map(String::from));
        (filter.to_string(), unread.is_some())
    }

    #[test]
    fn a_rust_log_without_directives_is_unset() {
        for blank in ["", "  ", ",", " , ,"] {
            assert_eq!(read(Ok(blank)), ("info".to_string(), false), "{blank:?}");
        }
        assert_eq!(read(Err(VarError::NotPresent)), ("info".to_string(), false));
    }

    #[test]
    fn a_rust_log_is_applied_or_said_unreadable() {
        assert_eq!(read(Ok("debug")), ("debug".to_string(), false));
        assert_eq!(read(Ok("loanledger=debug,")), ("loanledger=debug".to_string(), false));
        assert_eq!(read(Ok("debug, ")), ("debug".to_string(), false));
        let two = read(Ok("loanledger=debug, ,sqlx=warn"));
        assert!(!two.1 && two.0.contains("loanledger=debug") && two.0.contains("sqlx=warn"));
        assert_eq!(read(Ok("loanledger=[")), ("info".to_string(), true));
        let not_unicode = VarError::NotUnicode(OsString::from("x"));
        assert_eq!(read(Err(not_unicode)), ("info".to_string(), true));
    }
}
