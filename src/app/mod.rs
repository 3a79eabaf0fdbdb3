//! Commands and queries: the writer that commits, and the read side.

pub mod auth;
pub mod backup;
pub mod balances;
pub mod checkpoints;
pub mod command;
pub mod error;
pub mod households;
pub mod listing;
pub mod servicing;
pub mod signed_marks;
pub mod signing_key;
pub mod subsidy;
pub mod verify;
pub mod writer;

/// Sets the flag when dropped: a scan on a thread of its own stops when the call that waits for
/// it goes away (verify's stages, `GetBalances`' sum).
pub(crate) struct StopOnDrop(pub(crate) std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The permission bits of `path` when others than its owner may use it (any of `0o077` set:
/// the signing key, the SQLite database, the backup directory, which are warned about then);
/// `None` when they may not, the file cannot be read, or the system has no such bits.
pub fn open_to_others(path: &std::path::Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}
