//! SQLite reads through rusqlite over connections kept open, on the calling task's thread: for
//! the hot read of a loan's history (`GetLoanHistory`), which must stay quick while the writer
//! is busy.
//!
//! Through sqlx's driver a read is a hand-off to the connection's own thread, every value copied
//! there and every row handed back through a channel, each hand-off waiting for a thread to be
//! scheduled on two busy cores. Here the statement is prepared once per connection, and the
//! read runs where it is asked for, blocking its runtime worker for the query (a loan's entries
//! by one index, a fraction of a millisecond). Measured under the bench's write load: one trip
//! to a blocking thread and back instead of sqlx's driver, a fifth more reads per second and
//! the median a fifth lower (BENCHMARKS.md, change 23); no trip at all, since the writer's
//! commit too runs on a worker (change 44), the p99 7–15% lower (change 47).
//!
//! Only for a database file: an in-memory database exists once per connection, so its reads
//! stay on sqlx's pool (`None` from [`SqliteReaders::new`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::StoreError;
use super::scan::{database_file, open_read_only};

/// Read connections kept open, each with its statement cache and page cache.
pub struct SqliteReaders {
    path: PathBuf,
    /// Pragmas of each new connection (busy timeout, page cache).
    setup: String,
    idle: Mutex<Vec<Connection>>,
    /// Reads at once, at most: as many as the connections of sqlx's read pool.
    turns: Semaphore,
}

impl SqliteReaders {
    /// Readers of the database file `path`; `None` for an in-memory database.
    pub fn new(path: &Path, setup: String, max: usize) -> Option<Arc<Self>> {
        let path = database_file(path)?;
        Some(Arc::new(SqliteReaders {
            path,
            setup,
            idle: Mutex::new(Vec::with_capacity(max)),
            turns: Semaphore::new(max),
        }))
    }

    /// Runs `read` on a kept connection (opened if none is idle), on this thread (module
    /// docs). A connection whose read failed is closed rather than kept: it may be broken.
    pub async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError>,
    {
        let _turn = self
            .turns
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))?;
        let kept = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match kept {
            Some(c) => c,
            None => open_read_only(&self.path, &self.setup)?,
        };
        let result = read(&conn);
        if result.is_ok() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        }
        result
    }

    /// Closes the idle connections and refuses further reads.
    pub fn close(&self) {
        self.turns.close();
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl std::fmt::Debug for SqliteReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReaders").field("path", &self.path).finish_non_exhaustive()
    }
}
