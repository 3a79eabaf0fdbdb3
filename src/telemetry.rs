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
    use super::filter_from;
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
