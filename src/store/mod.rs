//! Storage: both backends, one behaviour.
//!
//! SQLite is the embedded default and PostgreSQL the production backend. The SQL text is shared
//! wherever the dialects agree (sqlx accepts `$N` placeholders on SQLite too), and each function
//! runs the same statement on whichever pool it has through `on_pool!` / `on_tx!`. The schema
//! is in `migrations/<backend>/`; rates and dates are stored as canonical text on both backends
//! so that a row reads back byte for byte as it was hashed.
//!
//! Only the writer (`app::writer`) changes anything, through [`write::WriteTx`]; everything here
//! in `read` is for the read path.

pub mod backup;
pub mod bulk;
pub mod lpr_chain;
mod pgcopy;
pub mod read;
pub mod readers;
pub mod rows;
pub mod scan;
mod schema;
mod sqlite_commit;
mod wal_vfs;
pub mod write;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Executor, PgPool, SqliteConnection, SqlitePool};

/// A pool on one of the two backends for the readers, and the writer's connection of its own,
/// outside the pool ([`WriteConn`]). SQLite also has the flag by which the background checkpoint
/// task asks the writer to restart the WAL ([`Db::restart_wal_if_due`]).
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(
        SqlitePool,
        Arc<tokio::sync::Mutex<WriteConn<SqliteConnection>>>,
        Arc<AtomicBool>,
        Option<Arc<readers::SqliteReaders>>,
    ),
    Postgres(PgPool, Arc<tokio::sync::Mutex<WriteConn<PgConnection>>>),
}

/// The connection the writer (and only the writer) writes with, held for the life of the
/// process, outside the readers' pool. Not in a pool: a pool pings each connection given back
/// to it, which cost every group a round trip to the database (on SQLite a hand-off to the
/// connection's thread, half a millisecond on two busy cores, measured) that the next group
/// waited for. On SQLite also its own so that its page cache stays warm: in WAL mode a
/// connection throws its cache away whenever another connection has written.
#[derive(Debug)]
pub struct WriteConn<C: WriterSetup> {
    opts: C::Options,
    /// What the backend keeps beside the connection (SQLite: its prepared statements and the
    /// lock on its handle, [`sqlite_commit::Kept`]). Declared before `conn` so that it is
    /// dropped first, released before `conn` is handed out ([`WriteConn::get`]),
    /// and emptied whenever `conn` goes ([`WriteConn::forget`]).
    kept: C::Kept,
    /// `None` before the first group (PostgreSQL), once the database is closed, or after the
    /// connection broke (the next group opens a new one). Boxed: what `kept` borrows from it
    /// stays where it is when the connection is taken out and put back.
    conn: Option<Box<C>>,
    /// The database was closed: no new connection.
    closed: bool,
    /// A group ended without committing or rolling back: the next group first rolls back
    /// whatever may still be open.
    unsure: bool,
    /// This process holds the database's writer claim ([`WriterSetup::try_claim`]): on
    /// PostgreSQL for the session of `conn` (let go with it), on SQLite for as long as
    /// `claim_file` is held.
    claimed: bool,
    /// SQLite: the claim file, locked.
    claim_file: Option<std::fs::File>,
}

/// How long a group's attempt waits for another server's writer claim to be let go (a server
/// being replaced, still draining its last requests). The writer makes four attempts of a
/// group (its first, then the three of a group that failed for a retryable reason) before its
/// commands are answered `UNAVAILABLE`: about 8 s in all (`app::writer::GROUP_ATTEMPTS`).
pub const CLAIM_WAIT: Duration = Duration::from_secs(2);

/// How many times SQLite's migrations are run again after failing while another process
/// applied some or held the file's lock ([`Db::migrate`]), and a new file's opening after
/// finding it locked ([`Db::connect`]): more than there are migrations.
const MIGRATE_RACE_TRIES: u32 = 50;

/// How long a SQLite file found locked at its opening or migration is tried again, in all: a
/// new file's race with a second server lasts the other's migrations, well under this; a file
/// locked for longer is said so without waiting out every try (each may first wait out the
/// busy timeout).
const BUSY_RACE_WAIT: Duration = Duration::from_secs(10);

/// PostgreSQL's advisory lock key of the writer claim (the bytes of "llwriter"): advisory locks
/// are per database, so one key serves every database of a cluster.
const CLAIM_LOCK_KEY: i64 = i64::from_be_bytes(*b"llwriter");

/// What a backend's writer connection needs whenever it is opened.
pub trait WriterSetup: Connection {
    /// What the writer keeps beside the connection, valid as long as it is.
    type Kept: Default + Send + std::fmt::Debug;
    /// The writer claim goes with the connection (PostgreSQL's session lock).
    const CLAIM_PER_CONNECTION: bool;
    /// Gives back what `kept` holds of the connection, before the connection is used.
    fn release(_kept: &mut Self::Kept) {}
    fn set_up(&mut self) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;
    /// Tries once to take the database's writer claim, so that one server at a time writes
    /// (the writer keeps loans, chain heads and exposures read or written before, which
    /// another process's writes would leave stale): `false` if another process holds it.
    /// PostgreSQL: a session advisory lock ([`CLAIM_LOCK_KEY`]) on this connection. SQLite: an
    /// exclusive lock (`flock`) on the file `<database>-writer` beside the database, kept in
    /// `file` (not on the database's own file: closing another descriptor of it would let go
    /// SQLite's own locks of this process).
    fn try_claim(
        &mut self,
        opts: &Self::Options,
        file: &mut Option<std::fs::File>,
    ) -> impl std::future::Future<Output = Result<bool, StoreError>> + Send;
}

impl WriterSetup for SqliteConnection {
    type Kept = sqlite_commit::Kept;
    const CLAIM_PER_CONNECTION: bool = false;
    fn release(kept: &mut Self::Kept) {
        kept.unlock();
    }
    /// The WAL VFS's rollback hook ([`wal_vfs::watch_rollbacks`]), when the connection uses it,
    /// and the page cache for the database's size ([`size_write_cache`]).
    async fn set_up(&mut self) -> Result<(), sqlx::Error> {
        if wal_vfs::register() {
            wal_vfs::watch_rollbacks(self).await?;
        }
        size_write_cache(self).await
    }

    async fn try_claim(
        &mut self,
        opts: &SqliteConnectOptions,
        file: &mut Option<std::fs::File>,
    ) -> Result<bool, StoreError> {
        if file.is_some() {
            return Ok(true);
        }
        // An in-memory database is this process's alone.
        let Some(database) = scan::database_file(opts.get_filename()) else {
            return Ok(true);
        };
        // Beside the file itself: SQLite follows a symbolic link to put its WAL beside the
        // file it names, and two servers naming one database by two paths claim one file.
        let database = std::fs::canonicalize(&database).unwrap_or(database);
        let mut path = database.into_os_string();
        path.push("-writer");
        // The detail (the path, the system's error) to the log; the caller is told the claim
        // cannot be taken.
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            tracing::error!(path = %path.to_string_lossy(), error = %e, "the writer claim {what}");
            StoreError::Claimed(format!(
                "the database's writer claim {what}; the detail is in the server log"
            ))
        };
        let claim = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| failed("cannot be opened", &e))?;
        match claim.try_lock() {
            Ok(()) => {
                *file = Some(claim);
                Ok(true)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(failed("cannot be locked", &e)),
        }
    }
}

impl WriterSetup for PgConnection {
    type Kept = ();
    const CLAIM_PER_CONNECTION: bool = true;
    /// Refuses a standby (`pg_is_in_recovery()`): opened during a failover, before the
    /// database's name pointed at the new primary, the connection would refuse every write
    /// (25006, read-only) for as long as it lived, each group answered `UNAVAILABLE`. Refused
    /// so, it is not kept, and the next group opens another.
    async fn set_up(&mut self) -> Result<(), sqlx::Error> {
        let (standby,): (bool,) =
            sqlx::query_as("select pg_is_in_recovery()").fetch_one(&mut *self).await?;
        if standby {
            return Err(sqlx::Error::Io(std::io::Error::other(
                "the database is a standby (in recovery): it takes no writes",
            )));
        }
        Ok(())
    }

    async fn try_claim(
        &mut self,
        _opts: &PgConnectOptions,
        _file: &mut Option<std::fs::File>,
    ) -> Result<bool, StoreError> {
        let (taken,): (bool,) = sqlx::query_as("select pg_try_advisory_lock($1)")
            .bind(CLAIM_LOCK_KEY)
            .fetch_one(&mut *self)
            .await?;
        Ok(taken)
    }
}

impl<C> WriteConn<C>
where
    C: WriterSetup,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
{
    fn new(opts: C::Options, conn: Option<C>) -> Self {
        WriteConn {
            opts,
            kept: C::Kept::default(),
            conn: conn.map(Box::new),
            closed: false,
            unsure: false,
            claimed: false,
            claim_file: None,
        }
    }

    /// Lets the connection go (the next group opens a new one), what is kept beside it first.
    fn forget(&mut self) -> Option<C> {
        self.kept = C::Kept::default();
        if C::CLAIM_PER_CONNECTION {
            self.claimed = false;
        }
        self.conn.take().map(|c| *c)
    }

    /// Takes the writer claim ([`WriterSetup::try_claim`]) if this process does not hold it,
    /// trying until `wait` has passed: [`StoreError::Claimed`] then. The connection is open.
    ///
    /// Nothing the writer keeps from before needs forgetting when the claim is taken: a
    /// process that never held it has committed nothing, so it keeps nothing, and one whose
    /// connection (and with it PostgreSQL's claim) went away forgot what it kept when its
    /// group failed on that connection.
    async fn claim(&mut self, wait: Duration) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        while !self.claimed {
            let conn = self.conn.as_deref_mut().ok_or(StoreError::Detached)?;
            let tried = conn.try_claim(&self.opts, &mut self.claim_file).await;
            // PostgreSQL: the connection may be gone (a server that held no claim kept it idle
            // meanwhile): the next write opens another, rather than fail on this one for good.
            if tried.is_err() && C::CLAIM_PER_CONNECTION {
                self.forget();
            }
            if tried? {
                self.claimed = true;
            } else if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Claimed(
                    "another server is writing to this database; this one writes once it \
                     stops"
                        .into(),
                ));
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    fn get(&mut self) -> Result<&mut C, StoreError> {
        C::release(&mut self.kept);
        self.conn.as_deref_mut().ok_or(StoreError::Unavailable(sqlx::Error::PoolClosed))
    }

    /// Makes sure there is a connection, opened if there is none, with no transaction left
    /// open: one a failed group may have left is rolled back first; should that fail because
    /// the connection itself is gone (the server or the driver's thread went away), a new one
    /// is opened, and the database rolls back what the old session had not committed. Hands
    /// nothing out, so what the backend keeps of the connection (SQLite: the lock on its
    /// handle, kept from one commit to the next) stays kept unless the rollback needs it.
    ///
    /// And this process holds the writer claim, waiting up to [`CLAIM_WAIT`] for it.
    async fn ensure_open(&mut self) -> Result<(), StoreError> {
        self.open().await?;
        self.claim(CLAIM_WAIT).await
    }

    /// [`WriteConn::ensure_open`] without the claim.
    async fn open(&mut self) -> Result<(), StoreError> {
        if self.closed {
            return Err(StoreError::Unavailable(sqlx::Error::PoolClosed));
        }
        if std::mem::take(&mut self.unsure)
            && let Ok(c) = self.get()
            && let Err(e @ (sqlx::Error::WorkerCrashed | sqlx::Error::Io(_))) =
                c.execute("ROLLBACK").await
        {
            tracing::warn!(error = %e, "the writer's connection broke; opening it again");
            self.forget();
        }
        if self.conn.is_none() {
            // Bounded as the readers' pool bounds its acquire: a server that does not answer
            // (a host gone from the network) would otherwise hold the writer for the system's
            // TCP timeout, minutes, with every caller waiting behind it.
            let mut c = tokio::time::timeout(CONNECT_TIMEOUT, C::connect_with(&self.opts))
                .await
                .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolTimedOut))??;
            c.set_up().await?;
            // `kept` is empty: the connection went through `forget`, or there never was one.
            self.conn = Some(Box::new(c));
        }
        Ok(())
    }

    /// Lets the writer claim go, if this process holds it: PostgreSQL's with the session that
    /// holds it (the connection is closed; a later write opens another and claims again).
    async fn let_go(&mut self) {
        if !std::mem::take(&mut self.claimed) {
            return;
        }
        self.claim_file = None;
        if C::CLAIM_PER_CONNECTION
            && let Some(c) = self.forget()
            && let Err(e) = c.close().await
        {
            tracing::warn!(error = %e, "closing the writer's connection failed");
        }
    }

    /// Takes the writer claim if no other process holds it: `false` if another does.
    async fn claim_now(&mut self) -> Result<bool, StoreError> {
        self.open().await?;
        if !self.claimed {
            // Tried once: a claim file that cannot be opened or locked is an error, not another
            // server.
            let conn = self.conn.as_deref_mut().ok_or(StoreError::Detached)?;
            self.claimed = conn.try_claim(&self.opts, &mut self.claim_file).await?;
        }
        Ok(self.claimed)
    }

    /// Closes the connection for good, and lets the writer claim go.
    async fn close(&mut self) {
        self.closed = true;
        if let Some(c) = self.forget()
            && let Err(e) = c.close().await
        {
            tracing::warn!(error = %e, "closing the writer's connection failed");
        }
        self.claim_file = None;
    }
}

/// The server's TCP keepalives on each of the service's sessions (over TCP; a Unix socket has
/// none), and its limit on data sent and not acknowledged: a session whose client is gone (a
/// host lost, a link cut, a NAT's idle timeout) is found dead and ended within about two
/// minutes, idle or in the middle of an answer, instead of the operating system's two hours
/// (or a quarter of an hour of retransmissions). The writer's session holds the writer claim
/// (an advisory lock): left to a dead session, no server could take it and every write was
/// `UNAVAILABLE` ("another server is writing") for those hours (since 2026-12-07). A setting
/// the database URL's `options` gives stands.
pub const SESSION_KEEPALIVES: [(&str, &str); 4] = [
    ("tcp_keepalives_idle", "60"),
    ("tcp_keepalives_interval", "10"),
    ("tcp_keepalives_count", "6"),
    ("tcp_user_timeout", "120000"),
];

/// PostgreSQL planner settings for statements that name their rows by key, many at a time:
/// joins by index only. The writer's connection has them for good; reads through the readers'
/// pool take them for one transaction ([`KEYED_PLANS`], `on_pool_keyed!`).
pub const KEYED_PLAN_SETTINGS: [(&str, &str); 2] =
    [("enable_hashjoin", "off"), ("enable_mergejoin", "off")];

/// [`KEYED_PLAN_SETTINGS`] for the rest of a transaction, as one statement.
pub static KEYED_PLANS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    KEYED_PLAN_SETTINGS.map(|(name, value)| format!("set local {name} = {value}")).join("; ")
});

/// As `on_pool!`, for a read of many rows by key (the writer's reads while a group commits):
/// on PostgreSQL in a transaction of its own under [`KEYED_PLANS`], since with a thousand keys
/// the planner would rather scan the whole table (measured: 24 ms for 1,500 request ids among
/// 86,000, growing with the table, against 9 ms by the index). `$c` is bound to the executor.
#[macro_export]
macro_rules! on_pool_keyed {
    ($db:expr, $c:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite(pool, ..) => {
                let $c = pool;
                $body
            }
            $crate::store::Db::Postgres(pool, _) => {
                let mut tx = pool.begin().await?;
                sqlx::Executor::execute(&mut *tx, $crate::store::KEYED_PLANS.as_str()).await?;
                let result = {
                    let $c = &mut *tx;
                    $body
                };
                tx.commit().await?;
                result
            }
        }
    };
}

/// Runs the same code on whichever pool `$db` holds; `$p` is bound to the typed pool.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($p, ..) => $body,
            $crate::store::Db::Postgres($p, _) => $body,
        }
    };
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is away or refused the connection: retryable.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database error; the detail is for the log, not the caller.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// A stored row cannot be read back as a domain value, or the stored rows are not what the
    /// writer holds (a loan's row missing at its update): the data is corrupt.
    #[error("stored data corrupt: {0}")]
    Corrupt(String),
    /// A SQLite connection of our own failed: the journal scan ([`scan`]), the bulk reads of
    /// verify ([`bulk`]), the history readers ([`readers`]).
    #[error("database error: {0}")]
    Rusqlite(#[source] rusqlite::Error),
    /// Another process holds the database's writer claim ([`WriterSetup::try_claim`]), or the
    /// claim cannot be taken: retrying helps once the other server has stopped.
    #[error("{0}")]
    Claimed(String),
    /// A blocking thread (journal scan, rusqlite read) panicked.
    #[error("panicked: {0}")]
    Panicked(String),
    /// A statement was asked of a group planned without a connection ([`write::WriteTx::Detached`]).
    #[error("no connection: the group was planned while another committed")]
    Detached,
    /// The idempotency table already holds one of the request ids written: its primary key
    /// refused the statement, so nothing of it was written. The writer plans a group of
    /// servicing commands without looking up their request ids first, and this is how it learns
    /// that one was a retry (see `app::writer::Lookup`).
    #[error("a request id is stored already: {0}")]
    RequestSeen(#[source] RequestSeen),
    /// A backup's copy could not be written ([`backup`]): the backup's disk, or `pg_dump`.
    /// Not the database's unavailability: retrying does not help until someone looks.
    #[error("backup failed: {0}")]
    Backup(String),
}

/// The database's refusal behind [`StoreError::RequestSeen`]: PostgreSQL's through sqlx,
/// SQLite's through the writer's own statements ([`sqlite_commit`]).
#[derive(Debug, thiserror::Error)]
pub enum RequestSeen {
    #[error(transparent)]
    Sqlx(sqlx::Error),
    #[error(transparent)]
    Sqlite(rusqlite::Error),
}

/// This build's migrations, embedded ([`Db::migrator`]).
pub(crate) static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
pub(crate) static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The migrations applied to a database, by version (sqlx records a migration once it ran).
pub(crate) const APPLIED_MIGRATIONS_SQL: &str =
    "select version from _sqlx_migrations where success order by version";

/// The versions of `migrator`'s migrations, in order.
pub(crate) fn versions(migrator: &Migrator) -> Vec<i64> {
    migrator.iter().map(|m| m.version).collect()
}

/// Why a database is refused when migrations it has applied are none of this build's (a newer
/// build migrated it), if some are: `applied` and `build`, the versions, ascending.
fn unknown_migrations(applied: &[i64], build: &[i64]) -> Option<String> {
    applied.iter().any(|v| !build.contains(v)).then(|| {
        format!(
            "the database has migrations this build does not know (up to {}; this build's end \
             at {}): use the build that migrated it",
            applied.last().copied().unwrap_or_default(),
            build.last().copied().unwrap_or_default()
        )
    })
}

impl StoreError {
    /// Whether the caller may retry: the database is away or busy.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) | StoreError::Claimed(_) => true,
            StoreError::Rusqlite(e) => {
                e.sqlite_error().is_some_and(|f| sqlite_away(f.extended_code))
            }
            _ => false,
        }
    }
}

/// Whether a database error of SQLSTATE / SQLite result `code` means the database is away,
/// busy or out of room, so that the caller may retry (UNAVAILABLE), on either backend alike.
///
/// - PostgreSQL: 08xxx connection exceptions; 57P01 admin shutdown, 57P02 crash shutdown
///   (another backend crashed), 57P03 cannot connect now (starting up or recovering), 57P05
///   idle session timeout; 53xxx insufficient resources (too many connections, disk full, out
///   of memory); 40001 serialization failure and 40P01 deadlock (the writer connects
///   directly, without the pool's own retries of 57P03 and 53300); 55P03 lock not available
///   (a row held elsewhere past the `lock_timeout` an operator set, as SQLite's BUSY); 57014
///   query canceled (a statement past the `statement_timeout` an operator set, or cancelled by
///   an operator's `pg_cancel_backend`: the database too busy for it, as a lock timeout); 40003
///   statement completion unknown (CockroachDB's answer to a commit whose outcome it cannot
///   tell: retried, the command finds its stored answer if it landed); 25006 read-only SQL
///   transaction (the writer's connection landed on a standby, as after a failover: as
///   SQLite's READONLY).
/// - SQLite ([`sqlite_away`]).
fn retryable(code: &str, postgres: bool, sqlite: bool) -> bool {
    if sqlite {
        return code.parse::<i32>().is_ok_and(sqlite_away);
    }
    code.starts_with("08")
        || matches!(
            code,
            "57P01"
                | "57P02"
                | "57P03"
                | "57P05"
                | "40001"
                | "40P01"
                | "40003"
                | "55P03"
                | "57014"
                | "25006"
        )
        || (postgres && code.starts_with("53"))
}

/// SQLite's results (extended codes, read by their primary code) that mean the database is busy
/// or away: BUSY (5) and LOCKED (6), and, as PostgreSQL's disk full, out of memory and
/// connection failures are, NOMEM (7), READONLY (8: the file or its disk turned read-only),
/// IOERR (10), FULL (13), CANTOPEN (14) and PROTOCOL (15: the WAL's locks raced, retried by
/// SQLite itself before it gives up). Answered INTERNAL, a group failing so was run again one
/// command at a time, each failing the same way. (sqlx reports the extended code: SQLITE_BUSY_RECOVERY is 261,
/// SQLITE_BUSY_SNAPSHOT 517, ...)
fn sqlite_away(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14 | 15)
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Rusqlite(e)
    }
}

/// How long the writer waits for a new connection, and the readers' pool for one of its own.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLSTATE of `loanledger_require` (PostgreSQL migration 0004): a condition a statement
/// requires of itself did not hold, and the statement failed as a whole.
pub const REQUIRE_FAILED: &str = "LL001";

impl StoreError {
    /// SQLite's `SQLITE_BUSY` (the database locked by another connection).
    fn is_sqlite_busy(&self) -> bool {
        match self {
            StoreError::Unavailable(e) | StoreError::Database(e) => sqlite_busy(e),
            _ => false,
        }
    }
}

/// Whether `e` is SQLite's `SQLITE_BUSY` (code 5, with its extended codes).
fn sqlite_busy(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else { return false };
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
        && db.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| c & 0xff == 5)
}

/// Whether a migration failed on SQLite's `SQLITE_BUSY` ([`sqlite_busy`]).
fn migrate_busy(e: &sqlx::migrate::MigrateError) -> bool {
    use sqlx::migrate::MigrateError;
    match e {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => sqlite_busy(e),
        _ => false,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            sqlx::Error::Database(db) => {
                // Retryable: the database away, busy or out of room ([`retryable`]).
                let code = db.code().unwrap_or_default();
                let sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();
                let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>();
                // A FATAL (or PANIC) error ends the session: the database refused or dropped
                // the connection (one that is not accepting connections, 55000, among them).
                let session_ended = pg.is_some_and(|e| {
                    matches!(
                        e.severity(),
                        sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
                    )
                });
                if session_ended || retryable(&code, pg.is_some(), sqlite) {
                    StoreError::Unavailable(e)
                } else if (db.is_unique_violation() && db.constraint() == Some("idempotency_pkey"))
                    || (db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                        && code.parse().is_ok_and(|c| sqlite_request_seen(c, db.message())))
                {
                    // PostgreSQL names the constraint; SQLite only its columns.
                    StoreError::RequestSeen(RequestSeen::Sqlx(e))
                } else if code == REQUIRE_FAILED {
                    // A statement's own check failed (`loanledger_require`, PostgreSQL): the
                    // stored data is not what the writer holds.
                    StoreError::Corrupt(db.message().to_string())
                } else {
                    StoreError::Database(e)
                }
            }
            _ => StoreError::Database(e),
        }
    }
}

/// Whether SQLite refused a row for a request id stored already: the idempotency key's own
/// uniqueness ("UNIQUE constraint failed: idempotency.scope, idempotency.request_id", as
/// `SQLITE_CONSTRAINT_PRIMARYKEY` for a rowid table's key, `_UNIQUE` for a unique index), or
/// the append-only trigger that refuses a row under a stored key before it (migration 0006,
/// `SQLITE_CONSTRAINT_TRIGGER`), whose message names the same columns. `extended_code`: SQLite's
/// extended result code (sqlx and the writer's statements turn them on).
pub(crate) fn sqlite_request_seen(extended_code: i32, message: &str) -> bool {
    use rusqlite::ffi::{
        SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_TRIGGER, SQLITE_CONSTRAINT_UNIQUE,
    };
    matches!(
        extended_code,
        SQLITE_CONSTRAINT_PRIMARYKEY | SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_TRIGGER
    ) && message.contains(" idempotency.request_id")
}

/// Pool sizes. One connection writes (the writer task); the rest serve reads. Eight readers keep
/// two cores busy without queueing behind each other.
pub const READ_CONNECTIONS_MAX: u32 = 8;

/// PostgreSQL's readers' pool pings a connection before handing it out only if it has been idle
/// this long. sqlx's default pings every time, but it also pings every connection as it is
/// given back (and drops one that fails), so under load the ping before each read bought
/// nothing but a round trip in front of every pooled read (a `GetLoanHistory`, the request ids
/// and loans of a group planned while another commits): without it the history reads under the
/// bench's write load were 11% faster at the median (BENCHMARKS-HISTORY.md, change 39). A connection
/// that died while idle longer than this (a database restart, a firewall dropping idle
/// connections) is still found by the ping and replaced unseen; one that died within it fails
/// its next statement, which reaches the caller as UNAVAILABLE (retryable), and is replaced.
/// SQLite's pool keeps the default: its loan-history reads go through rusqlite's connections
/// (`readers`), and there was nothing to gain.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// SQLite page cache of the writer's connection (negative: KiB), by the size of the database.
///
/// When SQLite's B-tree splits a page it puts the new pages in order by renumbering them through
/// the number of the lock page (the page at 1 GiB, which never holds data), and that number
/// stays the page cache's largest key until the commit; the commit then drops the pages past
/// the end of the file by walking every page of the cache (pcache1TruncateUnsafe). So while the
/// database is smaller than 1 GiB, every commit that split a page walks the whole cache:
/// measured under single requests at 16 MiB, 7% of SQLite's thread and about half a
/// millisecond a group (BENCHMARKS-HISTORY.md, change 24). The writer keeps [`WRITE_CACHE_SMALL_KIB`]
/// below the lock page and [`WRITE_CACHE_KIB`] past it, where the walk does not happen and the
/// larger cache keeps more of the request-id, loan-link and loan B-trees (a million loans).
/// Checked when the writer connects and whenever it restarts the WAL.
const WRITE_CACHE_KIB: i64 = 16_384;
/// See [`WRITE_CACHE_KIB`]: SQLite's own default.
const WRITE_CACHE_SMALL_KIB: i64 = 2_048;
/// SQLite page cache of each reading connection (KiB).
const READ_CACHE_KIB: &str = "-16384";

/// How often the background task copies the WAL back into the database file.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// How long a SQLite statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// [`BUSY_TIMEOUT`] as a pragma, to set it back after a shorter wait.
const BUSY_TIMEOUT_PRAGMA: &str = "pragma busy_timeout = 5000";

/// WAL frames (of about 4 KiB) past which the writer restarts the WAL: 128 MiB. Every restart
/// stops the writer for 2–20 ms (the checkpoint's last copy, the database file's `fsync`,
/// readers of older snapshots) while every client waits, and under single repayments the WAL
/// grows by some 25 KB a command: at 8,192 frames a restart came every 1,200 or so commands and
/// made the singles' p99 (12.4–13.5 ms); at 32,768 it was 8.0–9.4 ms (BENCHMARKS-HISTORY.md, 48).
/// A restart does not truncate the file: it stays at its largest (128 MiB and what the writer
/// added before the restart), reused from its start; recovery after a crash reads that much.
pub const WAL_RESTART_FRAMES: i64 = 32_768;

/// SQLite's automatic checkpoint runs inside the commit that crosses 1,000 WAL pages, so every
/// few groups one commit also copied the WAL into the database file and synced it (a third of
/// a batch's commit time, measured). Instead a task on its own connection runs a PASSIVE
/// checkpoint every [`CHECKPOINT_EVERY`]: it never blocks the writer or the readers.
///
/// A PASSIVE checkpoint alone never lets the WAL start over while the writer keeps writing (the
/// writer appends while the checkpoint copies, so the log is never wholly copied when the next
/// group begins): under a steady load the WAL grew by 180 MB a second, and appending to a
/// growing file made every commit allocate and zero new blocks and sync the file's size too.
/// So once the WAL passes [`WAL_RESTART_FRAMES`] the task asks the writer to restart it
/// ([`Db::restart_wal_if_due`], between two groups). Not the task itself: a RESTART checkpoint
/// needs the write lock, and from another connection it waited out its whole busy timeout
/// behind a writer that takes the lock again as soon as it lets it go (measured: 5 s, then the
/// writer stalled behind it). The task ends when the pool is closed.
fn spawn_checkpointer(pool: SqlitePool, restart_wanted: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                break;
            }
            let passive: Result<(i64, i64, i64), _> =
                sqlx::query_as("pragma wal_checkpoint(passive)").fetch_one(&pool).await;
            match passive {
                Ok((_, frames, _)) => {
                    if frames > WAL_RESTART_FRAMES {
                        restart_wanted.store(true, Ordering::Relaxed);
                    }
                }
                Err(sqlx::Error::PoolClosed) => break,
                Err(e) => tracing::warn!(error = %e, "background WAL checkpoint failed"),
            }
        }
    });
}

/// Sets the writer's page cache by the size of the database ([`WRITE_CACHE_KIB`]).
async fn size_write_cache(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let (pages, page_size): (i64, i64) =
        sqlx::query_as("select * from pragma_page_count(), pragma_page_size()")
            .fetch_one(&mut *conn)
            .await?;
    let kib = write_cache_kib(pages, page_size);
    conn.execute(sqlx::AssertSqlSafe(format!("pragma cache_size = -{kib}"))).await?;
    Ok(())
}

/// The writer's page cache (KiB) for a database of `pages` pages of `page_size` bytes: the
/// large one once the file reaches past the lock page (the page holding byte 2^30).
fn write_cache_kib(pages: i64, page_size: i64) -> i64 {
    let lock_page = (1i64 << 30) / page_size.max(512) + 1;
    if pages > lock_page { WRITE_CACHE_KIB } else { WRITE_CACHE_SMALL_KIB }
}

/// `url` as messages show it: a password in it (`postgres://user:secret@host/db`, or a
/// `password=` parameter) is left out.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    // The user's part ends at the last `@` not followed by another before the authority's end
    // (its first `/`, `?` or `#` after that `@`): so a password holding an unescaped `@`, `/`,
    // `?` or `#` (no URL parser reads it, and the URL is shown whole in the error) is left
    // out too. A path holding an `@` after a `/` is no user's part unless a `:` comes before.
    let ends_authority = |c: char| matches!(c, '/' | '?' | '#');
    let at = rest.match_indices('@').map(|(at, _)| at).rfind(|&at| {
        let after = &rest[at + 1..];
        !after[..after.find(ends_authority).unwrap_or(after.len())].contains('@')
    });
    let (mut shown, tail) =
        match at.and_then(|at| rest[..at].split_once(':').map(|(user, _)| (user, &rest[at..]))) {
            Some((user, after)) => (format!("{scheme}://{user}:***"), after),
            None => (format!("{scheme}://"), rest),
        };
    let (base, query) = match tail.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (tail, None),
    };
    shown.push_str(base);
    if let Some(query) = query {
        // `password=`, and libpq's `sslpassword=` (the client key's).
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((key, _)) if key.ends_with("password") => format!("{key}=***"),
                _ => p.to_string(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
    }
    shown
}

/// Creates the SQLite database file `path`, if it does not exist, readable and writable by its
/// owner alone (0600): it holds every household's and borrower's name and ID number, and
/// SQLite would create it as the umask leaves it (0644 by default: readable by every user of
/// the machine); its `-wal` and `-shm` files take its mode (since 2026-12-07). An empty file
/// is an empty database to SQLite. Best effort: a file that cannot be made so is left to
/// SQLite, which reports what is wrong with the path.
fn create_private_database(path: &std::path::Path) {
    let Some(path) = scan::database_file(path) else { return };
    if path.exists() {
        return;
    }
    if let Err(e) = create_private(&path) {
        tracing::debug!(error = %e, path = %path.display(), "creating the database file");
    }
}

/// Creates the empty file `path` (which must not exist) readable and writable by its owner
/// alone (0600) from its first byte on: the SQLite database, a backup's copy.
pub fn create_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut create = std::fs::OpenOptions::new();
    create.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
    create.open(path)
}

/// The file a `sqlite:` URL names, if it names one that does not exist (none for PostgreSQL
/// and in-memory databases): [`Db::connect`] would create it.
pub fn missing_sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") || url.contains(":memory:") {
        return None;
    }
    let opts = SqliteConnectOptions::from_str(url).ok()?;
    let path = opts.get_filename();
    (!path.exists()).then(|| path.to_path_buf())
}

impl Db {
    /// Connects to `sqlite://path` (created if missing; WAL, synchronous=FULL) or
    /// `postgres://...`.
    #[tracing::instrument(skip_all, fields(backend))]
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        if url.starts_with("sqlite:") {
            tracing::Span::current().record("backend", "sqlite");
            // A new file's first connections switch it to WAL, which takes its lock: another
            // process opening or migrating the same new file meanwhile (a second server started
            // with this one) may be refused SQLITE_BUSY at once, without SQLite's busy wait.
            // Tried again (since 2026-12-07: the second server failed to start, 1 in 10).
            let (mut tries, started) = (0, std::time::Instant::now());
            loop {
                match Self::connect_sqlite(url).await {
                    Err(e)
                        if tries < MIGRATE_RACE_TRIES
                            && started.elapsed() < BUSY_RACE_WAIT
                            && e.is_sqlite_busy() =>
                    {
                        tries += 1;
                        tracing::debug!(error = %e, "opening raced another process's");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    other => return other,
                }
            }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            tracing::Span::current().record("backend", "postgres");
            // A passphrase of the client key: sqlx reads no encrypted key, and would log the
            // parameter, value and all, as one it ignores at every start (since 2026-12-07
            // refused, naming it alone).
            let query = url.split_once('?').map_or("", |(_, query)| query);
            if query.split('&').any(|pair| pair.split('=').next() == Some("sslpassword")) {
                return Err(StoreError::Database(sqlx::Error::Configuration(
                    "the database URL's sslpassword is not supported: the client key must be \
                     one without a passphrase (sslkey)"
                        .into(),
                )));
            }
            let opts = PgConnectOptions::from_str(url).map_err(StoreError::Database)?;
            // Those the URL's own `options` set stand (the last `-c` of a name wins).
            let given = opts.get_options().unwrap_or_default().to_string();
            let opts = opts
                .options(SESSION_KEEPALIVES.into_iter().filter(|(name, _)| !given.contains(name)));
            let pool = PgPoolOptions::new()
                .max_connections(READ_CONNECTIONS_MAX)
                .acquire_timeout(CONNECT_TIMEOUT)
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PING_IF_IDLE_FOR {
                            conn.ping().await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(opts.clone())
                .await?;
            // The writer's statements carry arrays of one to 2,000 rows. After five executions
            // PostgreSQL's plan cache settles on a generic plan, made for an array of unknown
            // length, and under it a group of 1,000 repayments took a third longer than with a
            // plan made for its own arrays (BENCHMARKS-HISTORY.md, change 22).
            //
            // And its planner joins by index only ([`KEYED_PLAN_SETTINGS`]): every statement of the
            // writer names its rows by key (request ids, loan ids, accounts), and past about a
            // thousand keys the planner would rather hash the whole table than probe its index.
            // At 20,000 loans that made the loan update of a group of 1,500 take 28 ms instead of
            // 12 ms, and a full scan grows with the books.
            let opts = opts
                .options([("plan_cache_mode", "force_custom_plan")])
                .options(KEYED_PLAN_SETTINGS);
            let write = WriteConn::new(opts, None);
            Ok(Db::Postgres(pool, Arc::new(tokio::sync::Mutex::new(write))))
        } else {
            // A mistyped URL, said as such (it read "stored data corrupt").
            Err(StoreError::Database(sqlx::Error::Configuration(
                format!(
                    "database URL must start with sqlite: or postgres:, got {}",
                    url.split(':').next().unwrap_or_default()
                )
                .into(),
            )))
        }
    }

    /// [`Db::connect`] to `sqlite://path`, once.
    async fn connect_sqlite(url: &str) -> Result<Db, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Database)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Checkpoints run in the background (below), not inside the writer's commits.
            .pragma("wal_autocheckpoint", "0")
            // A statement that can fail after changing rows keeps a statement journal (to
            // undo itself alone); SQLite spills it to a temporary file past 64 KiB, which
            // cost the multi-row statements of earlier versions a third of their time in
            // page-cache writes (measured). The writer's statements are single-row and
            // `OR ROLLBACK` now (`sqlite_commit`); other writes (migrations) still use it.
            .pragma("temp_store", "memory");
        create_private_database(opts.get_filename());
        let pool = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS_MAX)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(opts.clone().pragma("cache_size", READ_CACHE_KIB))
            .await?;
        // Serialized: SQLite's own mutex guards the handle, which the writer's statements
        // share with sqlx's thread ([`sqlite_commit`], "Safety").
        let mut opts =
            opts.pragma("cache_size", format!("-{WRITE_CACHE_SMALL_KIB}")).serialized(true);
        // The writer's WAL writes gathered into one call per commit (BENCHMARKS-HISTORY.md, 43).
        if wal_vfs::register() {
            opts = opts.vfs(wal_vfs::NAME);
        }
        let mut write: SqliteConnection = opts.connect().await?;
        write.set_up().await?;
        let restart_wanted = Arc::new(AtomicBool::new(false));
        spawn_checkpointer(pool.clone(), restart_wanted.clone());
        let write = WriteConn::new(opts, Some(write));
        let readers = readers::SqliteReaders::new(
            pool.connect_options().get_filename(),
            format!("{BUSY_TIMEOUT_PRAGMA}; pragma cache_size = {READ_CACHE_KIB}"),
        );
        Ok(Db::Sqlite(pool, Arc::new(tokio::sync::Mutex::new(write)), restart_wanted, readers))
    }

    /// This build's migrations of the database's backend.
    pub(crate) fn migrator(&self) -> &'static Migrator {
        match self {
            Db::Sqlite(..) => &SQLITE_MIGRATOR,
            Db::Postgres(..) => &POSTGRES_MIGRATOR,
        }
    }

    /// Applies the migrations of this backend that are not applied yet.
    #[tracing::instrument(skip_all)]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        // A database a newer build migrated: said as such (since 2026-12-07 sqlx's own words,
        // "migration N was previously applied but is missing in the resolved migrations").
        if self.table_exists("_sqlx_migrations").await? {
            let applied: Vec<i64> =
                on_pool!(self, p => sqlx::query_scalar(APPLIED_MIGRATIONS_SQL).fetch_all(p).await)?;
            if let Some(newer) = unknown_migrations(&applied, &versions(self.migrator())) {
                return Err(StoreError::Database(sqlx::Error::Configuration(newer.into())));
            }
        }
        // Before any migration is recorded: a database refused here stays as the build that
        // made it left it, and that build still serves it.
        self.check_lpr_name_free().await?;
        self.claim_to_migrate().await?;
        let result = match self {
            Db::Sqlite(p, ..) => {
                // sqlx locks nothing around SQLite's migrations (PostgreSQL's run under an
                // advisory lock): a process migrating the same new file at the same time (a
                // second server started with this one) may apply one first, which this run
                // then fails on ("table exists", or the record of a migration that changes
                // nothing). Failed while the migrations applied grew, it is run again and
                // reads them anew; failed with nothing applied meanwhile, the error is this
                // database's own, said at once (since 2026-12-07: the second server failed to
                // start).
                let applied = || async {
                    sqlx::query_scalar::<_, i64>("select count(*) from _sqlx_migrations")
                        .fetch_one(p)
                        .await
                        .unwrap_or(0)
                };
                let (mut tries, started) = (0, std::time::Instant::now());
                loop {
                    let before = applied().await;
                    match SQLITE_MIGRATOR.run(p).await {
                        Err(e)
                            if tries < MIGRATE_RACE_TRIES
                                && (applied().await != before
                                    || (migrate_busy(&e)
                                        && started.elapsed() < BUSY_RACE_WAIT)) =>
                        {
                            tries += 1;
                            tracing::debug!(error = %e, "migrations raced another process's");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => break other,
                    }
                }
            }
            Db::Postgres(p, _) => POSTGRES_MIGRATOR.run(p).await,
        };
        result.map_err(|e| StoreError::Database(sqlx::Error::Migrate(Box::new(e))))?;
        self.start_lpr_chain().await
    }

    /// The build's migrations not applied to the database yet (all of them for a new one,
    /// without the table that records them).
    async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let applied: Vec<i64> = if !self.table_exists("_sqlx_migrations").await? {
            Vec::new()
        } else {
            on_pool!(self, p => sqlx::query_scalar(APPLIED_MIGRATIONS_SQL).fetch_all(p).await)?
        };
        Ok(versions(self.migrator()).into_iter().filter(|v| !applied.contains(v)).collect())
    }

    /// Takes the writer claim before migrations are applied (since 2026-12-07): a server still
    /// writing (a replacement's build started before the old one stopped) would write rows of
    /// its own schema into the new one's (a column added with a default it never sets, one
    /// made required that it leaves out), and learn nothing of it. With the claim held by
    /// another server, this waits for the migrations to be applied (a server of this build
    /// starting beside this one, migrating), up to [`BUSY_RACE_WAIT`] from the last one seen
    /// applied, and is then refused, naming what to do (a long migration outlasts it: the
    /// server is started again once it is done). Nothing pending, nothing is claimed.
    async fn claim_to_migrate(&self) -> Result<(), StoreError> {
        let mut started = std::time::Instant::now();
        let mut before: Option<Vec<i64>> = None;
        loop {
            let pending = self.pending_migrations().await?;
            if pending.is_empty() || self.try_claim_writer().await? {
                return Ok(());
            }
            // Migrations applied meanwhile: the other server is migrating; wait on.
            if before.as_ref().is_some_and(|b| b.len() > pending.len()) {
                started = std::time::Instant::now();
            }
            before = Some(pending.clone());
            if started.elapsed() >= BUSY_RACE_WAIT {
                return Err(StoreError::Claimed(format!(
                    "another server is writing to this database, and {} of this build's \
                     migrations are not applied to it (from {}): stop that server, then start \
                     this one (or run `loanledger migrate`)",
                    pending.len(),
                    pending[0]
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether this build's migrations, and only they, are applied: `Err` with what to do
    /// otherwise. For the commands that work on a database a server may be using (the token
    /// commands), which must not migrate it under that server.
    pub async fn check_migrated(&self) -> Result<(), String> {
        let build = versions(self.migrator());
        let applied: Result<Vec<i64>, sqlx::Error> =
            on_pool!(self, p => sqlx::query_scalar(APPLIED_MIGRATIONS_SQL).fetch_all(p).await);
        match applied {
            Ok(applied) if applied == build => Ok(()),
            Ok(applied) if let Some(newer) = unknown_migrations(&applied, &build) => Err(newer),
            Ok(applied) => Err(format!(
                "the database's schema is behind this build's ({} of its {} migrations \
                 applied): stop the servers and run `loanledger migrate` first",
                applied.len(),
                build.len()
            )),
            Err(e) => Err(format!(
                "the database is not set up ({e}): start `loanledger serve` or run \
                 `loanledger migrate` first"
            )),
        }
    }

    /// SQLite: whether the background checkpoint task asked for a WAL restart
    /// ([`Db::restart_wal_if_due`] makes it). PostgreSQL: never.
    pub fn wal_restart_wanted(&self) -> bool {
        match self {
            Db::Sqlite(_, _, restart_wanted, _) => restart_wanted.load(Ordering::Relaxed),
            Db::Postgres(..) => false,
        }
    }

    /// SQLite: restarts the WAL if the background checkpoint task asked for it, on the writer's
    /// connection between two groups (the writer calls this after answering a group). The
    /// PASSIVE checkpoints have copied nearly all of the WAL by then; this copies the rest once
    /// the readers of older snapshots are done, and the next group writes from the start of the
    /// file again. PostgreSQL: nothing to do.
    pub async fn restart_wal_if_due(&self) {
        let Db::Sqlite(_, write, restart_wanted, _) = self else { return };
        let mut w = write.lock().await;
        // A group left its transaction open: the next group rolls it back first; try then.
        // A server without the writer claim leaves the restart to the one with it, whose
        // writes it would hold up.
        if w.unsure || !w.claimed || !restart_wanted.swap(false, Ordering::Relaxed) {
            return;
        }
        let Ok(conn) = w.get() else { return };
        // Readers of older snapshots are waited for a little, not for the 5 s busy timeout:
        // the writer and every queued command wait meanwhile. Put off, the restart is asked
        // for again by the next PASSIVE checkpoint.
        let restart = async {
            conn.execute("pragma busy_timeout = 20").await?;
            let result = sqlx::query_as::<_, (i64, i64, i64)>("pragma wal_checkpoint(restart)")
                .fetch_one(&mut *conn)
                .await;
            conn.execute(BUSY_TIMEOUT_PRAGMA).await?;
            result
        };
        let restart = restart.await;
        if let Err(e) = size_write_cache(conn).await {
            tracing::warn!(error = %e, "sizing the writer's page cache failed");
        }
        match restart {
            Ok((0, _, _)) => {}
            Ok((_, frames, copied)) => {
                tracing::debug!(frames, copied, "WAL restart put off: a reader is still on it")
            }
            Err(e) => tracing::warn!(error = %e, "WAL restart failed"),
        }
    }

    /// Takes the writer claim now if no other process holds it (`serve`, as it starts):
    /// `false` if another does, whose writes this server's then wait for ([`CLAIM_WAIT`] a
    /// group, answered `UNAVAILABLE` after it) until it stops. Held until [`Db::close`].
    pub async fn try_claim_writer(&self) -> Result<bool, StoreError> {
        match self {
            Db::Sqlite(_, write, ..) => write.lock().await.claim_now().await,
            Db::Postgres(_, write) => write.lock().await.claim_now().await,
        }
    }

    /// Lets the writer claim go (the writer stopped, its queue drained): another server, or
    /// another writer of this process, may take it.
    pub async fn let_go_writer_claim(&self) {
        match self {
            Db::Sqlite(_, write, ..) => write.lock().await.let_go().await,
            Db::Postgres(_, write) => write.lock().await.let_go().await,
        }
    }

    /// The SQLite database's file (none for PostgreSQL or an in-memory database).
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        let Db::Sqlite(pool, ..) = self else { return None };
        scan::sqlite_file(pool).ok()
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(..) => "sqlite",
            Db::Postgres(..) => "postgres",
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(read, write, _, readers) => {
                write.lock().await.close().await;
                if let Some(r) = readers {
                    r.close();
                }
                read.close().await;
            }
            Db::Postgres(read, write) => {
                write.lock().await.close().await;
                read.close().await;
            }
        }
    }
}

/// A new SQLite database in a temporary directory (removed when the directory is dropped),
/// not migrated yet.
#[cfg(test)]
pub(crate) async fn fresh_sqlite() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let db = Db::connect(&url).await.unwrap();
    (dir, db)
}

/// A PostgreSQL database of a unit test's own ([`fresh_postgres`]): dropped with this value,
/// also when the test fails (the name is unique: the process and the clock's nanoseconds).
#[cfg(test)]
pub(crate) struct ScratchPg {
    pub db: Db,
    admin: PgConnectOptions,
    name: String,
}

#[cfg(test)]
impl Drop for ScratchPg {
    fn drop(&mut self) {
        drop_database(&self.admin, &self.name);
    }
}

/// Drops a test's database on a runtime of its own, on a thread of its own: `Drop` cannot
/// await, and may run while the test's own runtime unwinds a panic.
#[cfg(test)]
fn drop_database(admin: &PgConnectOptions, name: &str) {
    let (admin, statement) =
        (admin.clone(), format!("drop database if exists {name} with (force)"));
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let mut conn = PgConnection::connect_with(&admin).await?;
            conn.execute(sqlx::AssertSqlSafe(statement)).await?;
            conn.close().await
        })?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })
    .join();
    if !matches!(dropped, Ok(Ok(()))) {
        eprintln!("could not drop the test database {name}: {dropped:?}");
    }
}

/// A new PostgreSQL database (not migrated, never analysed) on the cluster named by
/// `LOANLEDGER_TEST_PG_URL` (`scripts/test.sh` starts one); `None` (the test skips) without
/// that variable, except under `CI=true`, where the PostgreSQL half must run.
#[cfg(test)]
pub(crate) async fn fresh_postgres() -> Option<ScratchPg> {
    const VAR: &str = "LOANLEDGER_TEST_PG_URL";
    let Some(url) = std::env::var(VAR).ok().filter(|u| !u.trim().is_empty()) else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{VAR} must be set under CI=true");
        eprintln!("SKIPPED (PostgreSQL): {VAR} is not set; scripts/test.sh sets it");
        return None;
    };
    let admin = PgConnectOptions::from_str(&url).unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("ll_unit_{}_{nanos:09}", std::process::id());
    let mut conn = PgConnection::connect_with(&admin).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("create database {name}"))).await.unwrap();
    conn.close().await.unwrap();
    let url = admin.clone().database(&name).to_url_lossy().to_string();
    match Db::connect(&url).await {
        Ok(db) => Some(ScratchPg { db, admin, name }),
        Err(e) => {
            drop_database(&admin, &name);
            panic!("connecting to the test database {name}: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    /// The migrations shipped, as sqlx checks them: the first 64 bits of each one's SHA-384
    /// (the checksum a database records when it runs it). sqlx refuses to start on a database
    /// whose recorded checksum differs ("previously applied but has been modified"), so a
    /// migration, once committed, is never edited, not even its comments or its line endings
    /// (`.gitattributes` keeps them as written): a change is a new migration, appended here.
    const SHIPPED: [(&str, &[(i64, &str)]); 2] = [
        (
            "sqlite",
            &[
                (1, "ee2289de1a0458f9"),
                (2, "84821a4b593f4954"),
                (3, "fb1180e20840d2c5"),
                (4, "2c8f210ed1da896d"),
                (5, "a6dcc601ff3ef678"),
                (6, "8e194ad83d794014"),
                (7, "04c8dd9a807d5a23"),
                (8, "60a8a9d8ddd21acc"),
                (9, "287421431d12f48d"),
                (10, "2478df7f981fe6b8"),
                (11, "7d59648bee6b3f53"),
                (12, "79918ae7dc62fe4d"),
                (13, "d155ebdaf91d159e"),
                (14, "11cb82df924cc36c"),
                (15, "55090b7a0a942b80"),
                (16, "34fcf5ce7846a523"),
                (17, "018f464fe29189dc"),
                (18, "480cf1da805b5a38"),
                (19, "3ea1a4cbb62fd88c"),
                (20, "dceead4a6ed4f3be"),
                (21, "dbaeb92cf192e007"),
                (22, "78f59385a4173a8c"),
                (23, "d2e477842aba6629"),
                (24, "8c1e54a3a670ff08"),
            ],
        ),
        (
            "postgres",
            &[
                (1, "ece97403c8e8dd6a"),
                (2, "84821a4b593f4954"),
                (3, "122b0c3517809bcb"),
                (4, "e127890be579df69"),
                (5, "cc04ceda36c033df"),
                (6, "56e3f572720f920d"),
                (7, "c404f401d25b9f9b"),
                (8, "a6dcc601ff3ef678"),
                (9, "30f2ad623e56d0b2"),
                (10, "04c8dd9a807d5a23"),
                (11, "60a8a9d8ddd21acc"),
                (12, "77a34c73a79051b4"),
                (13, "f3eb25705b3f37a2"),
                (14, "654db8cb471d8222"),
                (15, "de62224eff7f401f"),
                (16, "d155ebdaf91d159e"),
                (17, "435bc659cccaef51"),
                (18, "27fac618bace03e3"),
                (19, "ae0d7db411b28570"),
                (20, "f910ec273b68a667"),
                (21, "c662e1f64288fb46"),
                (22, "8c702f655682ecf7"),
                (23, "b7c32a970492d21d"),
                (24, "1f033addf3e8e7da"),
                (25, "dbaeb92cf192e007"),
                (26, "d2d18c506e134a9e"),
                (27, "881a62aba4f70ba7"),
                (28, "5150a5b890e0af6f"),
            ],
        ),
    ];

    #[test]
    fn shipped_migrations_are_never_edited() {
        use std::fmt::Write;
        for (backend, shipped) in SHIPPED {
            let migrator = if backend == "sqlite" {
                &super::SQLITE_MIGRATOR
            } else {
                &super::POSTGRES_MIGRATOR
            };
            let built: Vec<(i64, String)> = migrator
                .iter()
                .map(|m| {
                    let mut hex = String::new();
                    for byte in &m.checksum[..8] {
                        write!(hex, "{byte:02x}").unwrap();
                    }
                    (m.version, hex)
                })
                .collect();
            for (i, (version, checksum)) in shipped.iter().enumerate() {
                assert_eq!(
                    built.get(i).map(|(v, c)| (*v, c.as_str())),
                    Some((*version, *checksum)),
                    "{backend} migration {version} was edited after it shipped (or removed): \
                     databases that ran it will not start; put the change in a new migration"
                );
            }
            assert!(built.len() >= shipped.len(), "{backend}: a migration shipped is missing");
        }
    }

    /// The database away, busy or out of room is retryable on both backends alike; a refusal
    /// of the data is not.
    #[test]
    fn database_away_is_retryable_on_both_backends() {
        for code in [
            "08006", "57P01", "57P02", "57P03", "57P05", "53100", "40001", "40P01", "40003",
            "55P03", "57014", "25006",
        ] {
            assert!(retryable(code, true, false), "{code}");
        }
        for code in ["23505", "22P02", "57P04", "42P01", "LL001"] {
            assert!(!retryable(code, true, false), "{code}");
        }
        // SQLite, by the primary code of the extended one: BUSY_SNAPSHOT, LOCKED, NOMEM,
        // READONLY, IOERR_WRITE, FULL, CANTOPEN, PROTOCOL; not CONSTRAINT_PRIMARYKEY, CORRUPT,
        // MISMATCH.
        for code in ["517", "6", "7", "8", "778", "13", "14", "15"] {
            assert!(retryable(code, false, true), "{code}");
        }
        for code in ["1555", "11", "20"] {
            assert!(!retryable(code, false, true), "{code}");
        }
        // rusqlite's errors (the writer's own statements) read the same.
        let read_only = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(8), None);
        assert!(StoreError::Rusqlite(read_only).is_unavailable());
        let constraint = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(1555), None);
        assert!(!StoreError::Rusqlite(constraint).is_unavailable());
    }

    use super::*;

    /// The writer's SQLite connection opens the database through the WAL VFS and has its
    /// rollback hook, as first opened and as opened again after it broke.
    #[tokio::test]
    async fn the_writer_uses_the_wal_vfs_and_watches_its_rollbacks() {
        let (_dir, db) = fresh_sqlite().await;
        db.migrate().await.unwrap();
        let Db::Sqlite(_, write, ..) = &db else { unreachable!() };
        for reopened in [false, true] {
            let mut w = write.lock().await;
            if reopened {
                w.forget();
            }
            w.ensure_open().await.unwrap();
            let conn = w.get().unwrap();
            conn.execute("create table if not exists probe (x)").await.unwrap();
            let mut handle = conn.lock_handle().await.unwrap();
            let raw = handle.as_raw_handle().as_ptr();
            // SAFETY: an open connection, used by this thread alone while the handle is locked.
            assert!(unsafe { wal_vfs::wal_is_wrapped(raw) }, "the WAL VFS (reopened: {reopened})");
            // SAFETY: asks SQLite for the hook's argument by replacing the hook with none (the
            // connection is not used again before the next round opens it anew or the test ends).
            let previous =
                unsafe { rusqlite::ffi::sqlite3_rollback_hook(raw, None, std::ptr::null_mut()) };
            assert!(!previous.is_null(), "a rollback hook is installed (reopened: {reopened})");
        }
        db.close().await;
    }

    #[test]
    fn write_cache_grows_past_the_lock_page() {
        // 4 KiB pages: the lock page is 262,145.
        assert_eq!(write_cache_kib(1, 4096), WRITE_CACHE_SMALL_KIB);
        assert_eq!(write_cache_kib(262_145, 4096), WRITE_CACHE_SMALL_KIB);
        assert_eq!(write_cache_kib(262_146, 4096), WRITE_CACHE_KIB);
        // 64 KiB pages: the lock page is 16,385.
        assert_eq!(write_cache_kib(16_385, 65_536), WRITE_CACHE_SMALL_KIB);
        assert_eq!(write_cache_kib(16_386, 65_536), WRITE_CACHE_KIB);
    }

    /// A write that loses to another connection's commit in WAL mode fails with
    /// SQLITE_BUSY_SNAPSHOT (517, an extended code of SQLITE_BUSY): retryable, as BUSY is.
    #[tokio::test]
    async fn sqlite_busy_in_its_extended_codes_is_unavailable() {
        use sqlx::{Connection, Executor};
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteConnectOptions::new()
            .filename(dir.path().join("busy.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::ZERO);
        let mut a = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        let mut b = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        a.execute("create table t (x integer)").await.unwrap();
        a.execute("begin").await.unwrap();
        a.execute("select count(*) from t").await.unwrap();
        b.execute("insert into t values (1)").await.unwrap();
        let e = a.execute("insert into t values (2)").await.unwrap_err();
        let sqlx::Error::Database(db) = &e else { panic!("{e:?}") };
        assert_eq!(db.code().as_deref(), Some("517"), "{e:?}");
        assert!(StoreError::from(e).is_unavailable());
    }

    /// PostgreSQL starting up (57P03) or short of resources (53xxx: too many connections, disk
    /// full, out of memory) is retryable: the writer connects without the pool's retries; so is
    /// a statement cancelled past an operator's `statement_timeout` (57014, since 2026-12-06).
    /// Another error is not.
    #[tokio::test]
    async fn postgres_starting_up_or_short_of_resources_is_unavailable() {
        let Some(scratch) = fresh_postgres().await else { return };
        let Db::Postgres(pool, _) = &scratch.db else { unreachable!() };
        for (code, unavailable) in [
            ("57P03", true),
            ("53300", true),
            ("53100", true),
            ("57014", true),
            ("22012", false),
            ("42P01", false),
        ] {
            let raise = format!("do $$ begin raise exception using errcode = '{code}'; end $$");
            let e = sqlx::raw_sql(sqlx::AssertSqlSafe(raise)).execute(pool).await.unwrap_err();
            assert_eq!(StoreError::from(e).is_unavailable(), unavailable, "{code}");
        }
    }
}

#[cfg(test)]
mod url_tests {
    use super::{missing_sqlite_file, shown_url};

    /// A client key's passphrase in the URL is refused, naming the parameter, not its value,
    /// before anything is connected to (sqlx would ignore it and log it whole).
    #[tokio::test]
    async fn a_urls_sslpassword_is_refused() {
        let url = "postgres://ledger@127.0.0.1:1/books?sslmode=require&sslpassword=k3y";
        let Err(e) = super::Db::connect(url).await else { panic!("connected") };
        let text = e.to_string();
        assert!(text.contains("sslpassword is not supported") && !text.contains("k3y"), "{text}");
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        let shown = shown_url("postgres://ledger:s3cr@t@db.example:5432/books?sslmode=require");
        assert_eq!(shown, "postgres://ledger:***@db.example:5432/books?sslmode=require");
        let shown = shown_url("postgres://ledger@db/books?password=s3cr&t&sslmode=require");
        assert_eq!(shown, "postgres://ledger@db/books?password=***&t&sslmode=require");
        // A password holding an unescaped `/` (the URL unparseable, shown in the error), and
        // the client key's `sslpassword` (since 2026-12-07: both were shown).
        let shown = shown_url("postgres://ledger:pa/ss@db/books?sslpassword=k3y&sslmode=require");
        assert_eq!(shown, "postgres://ledger:***@db/books?sslpassword=***&sslmode=require");
        for password in ["pa?ss", "pa#ss", "p@/s?s"] {
            let shown = shown_url(&format!("postgres://ledger:{password}@db/books"));
            assert_eq!(shown, "postgres://ledger:***@db/books", "{password}");
        }
        for url in ["postgres://ledger@db/books", "postgres://db/x@y", "sqlite://loanledger.db"] {
            assert_eq!(shown_url(url), url);
        }
    }

    #[test]
    fn a_missing_sqlite_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.db");
        let url = format!("sqlite://{}", path.display());
        assert_eq!(missing_sqlite_file(&url), Some(path.clone()));
        std::fs::write(&path, b"").unwrap();
        assert_eq!(missing_sqlite_file(&url), None);
        assert_eq!(missing_sqlite_file("sqlite::memory:"), None);
        assert_eq!(missing_sqlite_file("postgres://db/books"), None);
    }
}
