//! SQLite reads through rusqlite over connections kept open, on the calling task's thread: for
//! the hot read of a loan's history (`GetLoanHistory`), which must stay quick while the writer
//! is busy.
//!
//! Through sqlx's driver a read is a hand-off to the connection's own thread, every value copied
//! there and every row handed back through a channel, each hand-off waiting for a thread to be
//! scheduled on two busy cores. Here the statement is prepared once per connection, and the
//! read runs where it is asked for, blocking its runtime worker for the query: a loan's entries
//! by one index, a fraction of a millisecond for the bench's loans, longer for a loan with
//! hundreds of entries (a loan gathers a few entries a month over a term of a few years), which
//! is what the writer's commit costs a worker too. A panic in the read is caught and returned as
//! [`StoreError::Panicked`], as the blocking pool did, so that it cannot take down the caller (the
//! writer itself reads through here for retried requests). Measured under the bench's write load: one trip
//! to a blocking thread and back instead of sqlx's driver, a fifth more reads per second and
//! the median a fifth lower (BENCHMARKS-HISTORY.md, change 23); no trip at all, since the writer's
//! commit too runs on a worker (change 44), the p99 7–15% lower (change 47).
//!
//! Only for a database file: an in-memory database exists once per connection, so its reads
//! stay on sqlx's pool (`None` from [`SqliteReaders::new`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::StoreError;
use super::scan::{database_file, open_read_only};

/// Read connections kept open, each with its statement cache and page cache.
pub struct SqliteReaders {
    path: PathBuf,
    /// Pragmas of each new connection (busy timeout, page cache).
    setup: String,
    /// As many as reads ran at once: a history read runs on its caller's thread from start to
    /// end (one per runtime worker at most); the settlement run's pages of ids and the loans
    /// the writer reads while a group commits run on blocking threads (`read::read_blocking`).
    idle: Mutex<Vec<Connection>>,
    /// [`SqliteReaders::close`] was called: reads are refused.
    closed: AtomicBool,
}

impl SqliteReaders {
    /// Readers of the database file `path`; `None` for an in-memory database.
    pub fn new(path: &Path, setup: String) -> Option<Arc<Self>> {
        let path = database_file(path)?;
        Some(Arc::new(SqliteReaders {
            path,
            setup,
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }))
    }

    /// Runs `read` on a kept connection (opened if none is idle), on this thread (module
    /// docs). A connection whose read failed is closed rather than kept: it may be broken.
    pub fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError>,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(sqlx::Error::PoolClosed));
        }
        let kept = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match kept {
            Some(c) => c,
            None => open_read_only(&self.path, &self.setup)?,
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&conn)))
            .unwrap_or_else(|payload| {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(StoreError::Panicked(format!("a read: {what}")))
            });
        if result.is_ok() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        }
        result
    }

    /// Closes the idle connections and refuses further reads.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl std::fmt::Debug for SqliteReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReaders").field("path", &self.path).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Db, fresh_sqlite};
    use super::*;

    /// A read that panics is an error for its caller, not a panic (reads run on the caller's
    /// thread, the writer's among them), and the readers go on serving.
    #[tokio::test]
    async fn a_panicking_read_is_an_error_and_the_readers_go_on() {
        let (_dir, db) = fresh_sqlite().await;
        db.migrate().await.unwrap();
        let Db::Sqlite(.., Some(readers)) = &db else { panic!("a database file has readers") };
        let failed = readers.read(|_| -> Result<(), StoreError> { panic!("on purpose") });
        assert!(
            matches!(&failed, Err(StoreError::Panicked(m)) if m.contains("on purpose")),
            "{failed:?}"
        );
        let one: i64 = readers.read(|c| Ok(c.query_row("select 1", [], |r| r.get(0))?)).unwrap();
        assert_eq!(one, 1);
        db.close().await;
    }
}
