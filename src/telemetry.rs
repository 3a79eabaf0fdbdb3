//! Logging through tracing: human-readable by default, JSON lines on request. The level comes
//! from `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

pub fn init(format: LogFormat) {
    // A `RUST_LOG` that cannot be read is said so (at `info`, which then applies), not ignored:
    // an operator who set it would otherwise look for logs that never come. An empty one is
    // taken as unset (as an empty filter it would turn every log off, warnings too).
    let (filter, unread) = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if directives.trim().is_empty() => (EnvFilter::new("info"), None),
        Ok(directives) => match EnvFilter::try_new(&directives) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new("info"), Some((directives, e.to_string()))),
        },
        Err(std::env::VarError::NotPresent) => (EnvFilter::new("info"), None),
        Err(e @ std::env::VarError::NotUnicode(_)) => {
            (EnvFilter::new("info"), Some(("(not Unicode)".to_string(), e.to_string())))
        }
    };
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
