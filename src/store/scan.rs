//! A ledger's whole journal read in order, for `verify`.
//!
//! The scan reads pages of [`SCAN_PAGE_TXNS`] transactions by `seq` (the primary key: a plain
//! index range scan), each page in one read snapshot. Each transaction, its postings in its own
//! row (as packed text, [`TxnRef::postings`]), goes to a [`JournalVisitor`] on a thread of its
//! own. Only `seq` above 0 is read on both backends (the chain starts at 1).
//!
//! A snapshot per page, not one for the whole scan: no snapshot is held for long (on SQLite a
//! long-lived reader would keep the WAL from being restarted, see
//! [`super::WAL_RESTART_FRAMES`]).
//!
//! - **SQLite**: a read-only connection of the scan's own, through rusqlite, whose cursor lends
//!   each value in place. sqlx's SQLite driver copies every value of every row and passes each
//!   row from its thread to the caller's; on a journal of millions of entries that was most of
//!   verify's time (BENCHMARKS-HISTORY.md, change 18). The file is read through a memory map.
//! - **PostgreSQL**: each page in a `REPEATABLE READ` read-only transaction, read while the
//!   visitor's thread checks the previous page, as binary `COPY` output whose text is lent in
//!   place ([`super::pgcopy`]): through sqlx's rows every value became a `String` of its own,
//!   found by its column name.
//!
//! The visitor sees the same things in the same order on both backends, and can stop the scan
//! ([`JournalVisitor::stopped`]).

use std::path::{Path, PathBuf};

use sqlx::{PgPool, SqlitePool};

use super::pgcopy::{CopyReader, LEDGER_SETTING, READ_ONLY, binary_copy, copy_out, scan_settings};
use super::{BUSY_TIMEOUT_PRAGMA, Db, StoreError};

/// Journal transactions per page (one read snapshot) of the scan: large enough that the round
/// trips do not dominate, small enough to keep memory flat and snapshots short.
pub const SCAN_PAGE_TXNS: i64 = 10_000;

/// One journal transaction as stored, its text lent by the scan.
#[derive(Debug, Clone, Copy)]
pub struct TxnRef<'a> {
    pub seq: i64,
    pub kind: &'a str,
    pub value_date: &'a str,
    pub recorded_at_us: i64,
    pub actor: &'a str,
    pub request_id: &'a str,
    pub command_json: &'a str,
    pub prev_hash: &'a str,
    pub hash: &'a str,
    /// The postings as stored, packed ([`crate::ledger::posting::unpack`] reads them).
    pub postings: &'a str,
    /// The first column (other than `postings`) whose stored value is not of the
    /// column's type or is text that is not UTF-8, read as empty text or 0: the column's name
    /// and what it holds ("another type", "text that is not UTF-8"). Only on SQLite, whose
    /// columns take a value of any type (one stored by hand); PostgreSQL's hold their own.
    pub mistyped: Option<(&'static str, &'static str)>,
}

/// What a journal scan calls, in `seq` order, on the scan's thread.
pub trait JournalVisitor: Send + 'static {
    /// A transaction.
    fn txn(&mut self, txn: TxnRef<'_>);
    /// After the last transaction, on the scan's thread.
    fn end(&mut self) {}
    /// Whether the scan should stop early (asked before each transaction).
    fn stopped(&self) -> bool {
        false
    }
}

impl Db {
    /// Walks the journal of `ledger_id` in order up to `through` (inclusive), calling `visitor`
    /// on a blocking thread, and gives the visitor back at the end. The transactions after
    /// `through`, committed since the head `verify` compares the read models at, are not read.
    pub async fn scan_journal_through<V: JournalVisitor>(
        &self,
        ledger_id: &str,
        through: i64,
        visitor: V,
    ) -> Result<V, StoreError> {
        self.scan_journal_in_pages(ledger_id, SCAN_PAGE_TXNS, through, visitor).await
    }

    /// [`Self::scan_journal_through`] with pages of `page_txns` transactions (at least 1): the
    /// visitor sees the same whatever the page size (tests check the page boundaries with
    /// small pages).
    pub async fn scan_journal_in_pages<V: JournalVisitor>(
        &self,
        ledger_id: &str,
        page_txns: i64,
        through: i64,
        visitor: V,
    ) -> Result<V, StoreError> {
        let page_txns = page_txns.max(1);
        match self {
            Db::Sqlite(pool, ..) => {
                let path = sqlite_file(pool)?;
                let ledger_id = ledger_id.to_string();
                tokio::task::spawn_blocking(move || {
                    scan_sqlite(path, &ledger_id, page_txns, through, visitor)
                })
                .await
                .map_err(panicked)?
            }
            Db::Postgres(pool, _) => {
                scan_postgres(pool, ledger_id, page_txns, through, visitor).await
            }
        }
    }
}

/// The file of a SQLite database, for a connection of verify's own ([`open_sqlite_reader`]).
/// `sqlite::memory:` and `mode=memory` name none.
pub(super) fn sqlite_file(pool: &SqlitePool) -> Result<PathBuf, StoreError> {
    database_file(pool.connect_options().get_filename()).ok_or_else(|| {
        StoreError::Database(sqlx::Error::Configuration(
            "verify reads the database file; an in-memory SQLite database cannot be verified"
                .into(),
        ))
    })
}

/// The database file at `path`, or `None` for an in-memory database (which exists once per
/// connection, so a connection of our own would see another, empty one).
pub(super) fn database_file(path: &Path) -> Option<PathBuf> {
    let name = path.to_string_lossy();
    if name.is_empty() || name.starts_with("file:") || name == ":memory:" {
        return None;
    }
    Some(path.to_path_buf())
}

/// A read-only rusqlite connection to a SQLite database file, with `setup` run on it (pragmas).
pub(super) fn open_read_only(path: &Path, setup: &str) -> Result<rusqlite::Connection, StoreError> {
    use rusqlite::{Connection, OpenFlags};
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(setup)?;
    Ok(conn)
}

/// Column `i` of a rusqlite row as text, lent; `what` names it when it is not text.
pub(super) fn row_text<'r>(
    r: &'r rusqlite::Row<'_>,
    i: usize,
    what: impl std::fmt::Display,
) -> Result<&'r str, StoreError> {
    r.get_ref(i)?.as_str().map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A read-only rusqlite connection for verify, reading the file through a memory map rather
/// than a copy per page: verify reads each page once (a third less system time, measured,
/// BENCHMARKS-HISTORY.md change 20). The bundled SQLite's cap on the map is raised in
/// .cargo/config.toml. A failing disk then ends the process (SIGBUS) instead of failing the
/// read; it would fail every other read as well.
pub(super) fn open_sqlite_reader(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    open_read_only(path, &format!("{BUSY_TIMEOUT_PRAGMA}; pragma mmap_size = 1099511627776"))
}

pub(super) fn panicked(e: tokio::task::JoinError) -> StoreError {
    StoreError::Panicked(format!("a blocking read: {e}"))
}

/// The `seq` after a page of `count` transactions out of `page_txns` ending at `last`; `None`
/// when the page was the last one.
fn next_page(page_txns: i64, count: i64, last: i64) -> Option<i64> {
    if count < page_txns { None } else { last.checked_add(1) }
}

async fn scan_postgres<V: JournalVisitor>(
    pool: &PgPool,
    ledger_id: &str,
    page_txns: i64,
    through: i64,
    mut visitor: V,
) -> Result<V, StoreError> {
    /// A page: the binary copy of its transactions.
    type Page = Result<Vec<u8>, StoreError>;
    let (pages_tx, mut pages) = tokio::sync::mpsc::channel::<Page>(2);
    // The checked pages' buffers, handed back to be filled again.
    let (spent_tx, mut spent) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let checker = tokio::task::spawn_blocking(move || -> Result<V, StoreError> {
        while let Some(page) = pages.blocking_recv() {
            let txns = page?;
            check_copied_page(&txns, &mut visitor)?;
            if visitor.stopped() {
                return Ok(visitor);
            }
            // The reader may have ended (the last page read): the buffer is then dropped.
            let _ = spent_tx.send(txns);
        }
        visitor.end();
        Ok(visitor)
    });
    let mut next = 1i64;
    // The size of the previous page's copy, the next page's first guess.
    let mut size = 0usize;
    loop {
        let page: Result<(Vec<u8>, Option<i64>), StoreError> = async {
            let mut tx = pool.begin().await?;
            sqlx::query(READ_ONLY).execute(&mut *tx).await?;
            scan_settings(&mut tx, ledger_id).await?;
            let txns = spent.try_recv().unwrap_or_default();
            let txns =
                copy_out(&mut tx, &txn_copy_sql(next, page_txns, through), txns, size).await?;
            tx.rollback().await?;
            let (count, last) = page_extent(&txns)?;
            Ok((txns, last.and_then(|last| next_page(page_txns, count, last))))
        }
        .await;
        let (page, following) = match page {
            Ok((copy, following)) => {
                // A little more than the last page's, so that a page as large does not double.
                size = copy.len() + copy.len() / 8;
                (Ok(copy), following)
            }
            Err(e) => (Err(e), None),
        };
        // The checker is gone only if it stopped (or failed): its result says which.
        if pages_tx.send(page).await.is_err() {
            break;
        }
        match following {
            Some(n) => next = n,
            None => break,
        }
    }
    drop(pages_tx);
    checker.await.map_err(panicked)?
}

/// Hands a page's transactions, read from their copy, to `visitor`, up to the end of the page or
/// until the visitor stops.
fn check_copied_page<V: JournalVisitor>(txns: &[u8], visitor: &mut V) -> Result<(), StoreError> {
    let mut rows = CopyReader::new(txns)?;
    while rows.row(TXN_COPY_FIELDS)? {
        if visitor.stopped() {
            return Ok(());
        }
        visitor.txn(copied_txn(&mut rows)?);
    }
    Ok(())
}

/// The fields of [`txn_copy_sql`]'s rows.
const TXN_COPY_FIELDS: usize = 10;

/// The columns a scan reads, in [`TxnRef`]'s order.
const SCAN_COLUMNS: &str = "seq, kind, value_date, recorded_at_us, actor, request_id, \
                            command_json, prev_hash, hash, postings";

/// A page of transactions from `from`, none after `through`, as a binary copy (the ledger from
/// [`LEDGER_SETTING`]).
fn txn_copy_sql(from: i64, page_txns: i64, through: i64) -> String {
    binary_copy(&txn_page_sql(from, page_txns, through))
}

/// The query of [`txn_copy_sql`].
fn txn_page_sql(from: i64, page_txns: i64, through: i64) -> String {
    format!(
        "select {SCAN_COLUMNS} from journal_txn \
         where ledger_id = current_setting('{LEDGER_SETTING}') and seq >= {from} \
         and seq <= {through} order by seq limit {page_txns}"
    )
}

/// The next transaction of a copy, its text lent from the copy.
fn copied_txn<'a>(r: &mut CopyReader<'a>) -> Result<TxnRef<'a>, StoreError> {
    Ok(TxnRef {
        seq: r.int8()?,
        kind: r.text()?,
        value_date: r.text()?,
        recorded_at_us: r.int8()?,
        actor: r.text()?,
        request_id: r.text()?,
        command_json: r.text()?,
        prev_hash: r.text()?,
        hash: r.text()?,
        postings: r.text()?,
        mistyped: None,
    })
}

/// How many transactions a page's copy holds, and the last one's `seq`.
fn page_extent(txns: &[u8]) -> Result<(i64, Option<i64>), StoreError> {
    let mut rows = CopyReader::new(txns)?;
    let (mut count, mut last) = (0i64, None);
    while rows.row(TXN_COPY_FIELDS)? {
        last = Some(rows.int8()?);
        rows.skip(TXN_COPY_FIELDS - 1)?;
        count += 1;
    }
    Ok((count, last))
}

fn scan_sqlite<V: JournalVisitor>(
    path: PathBuf,
    ledger_id: &str,
    page_txns: i64,
    through: i64,
    mut visitor: V,
) -> Result<V, StoreError> {
    use rusqlite::params;
    let conn = open_sqlite_reader(&path)?;
    // One statement a page: its read is one snapshot.
    // Each page starts after the last `seq` of the one before as stored: a real stored there by
    // hand (read at the integer below it) is neither read twice nor passed over.
    let mut txns = conn.prepare(&format!(
        "select {SCAN_COLUMNS} from journal_txn where ledger_id = ?1 and seq > ?2 \
         and seq <= ?4 order by seq limit ?3"
    ))?;
    let mut after = rusqlite::types::Value::Integer(0);
    loop {
        let mut rows = txns.query(params![ledger_id, after, page_txns, through])?;
        let mut count = 0i64;
        while let Some(r) = rows.next()? {
            if visitor.stopped() {
                return Ok(visitor);
            }
            // A value of another type (stored by hand) is read as empty text or 0 and named,
            // for verify to report at this seq rather than end the scan.
            let mistyped = std::cell::Cell::new(None);
            let note = |column, what| {
                if mistyped.get().is_none() {
                    mistyped.set(Some((column, what)));
                }
            };
            let text = |i: usize, column: &'static str| {
                Ok::<_, StoreError>(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                        .unwrap_or_else(|_| {
                            note(column, "text that is not UTF-8");
                            ""
                        }),
                    _ => {
                        note(column, "another type");
                        ""
                    }
                })
            };
            // Only numbers fall in the page's range: a real is read at the integer below it.
            let seq = match r.get_ref(0)? {
                rusqlite::types::ValueRef::Integer(seq) => {
                    after = rusqlite::types::Value::Integer(seq);
                    seq
                }
                rusqlite::types::ValueRef::Real(seq) => {
                    after = rusqlite::types::Value::Real(seq);
                    note("seq", "a number that is not an integer");
                    seq as i64
                }
                _ => {
                    note("seq", "another type");
                    0
                }
            };
            let (kind, value_date) = (text(1, "kind")?, text(2, "value_date")?);
            let recorded_at_us = match r.get_ref(3)? {
                rusqlite::types::ValueRef::Integer(us) => us,
                _ => {
                    note("recorded_at_us", "another type");
                    0
                }
            };
            let (actor, request_id) = (text(4, "actor")?, text(5, "request_id")?);
            let command_json = text(6, "command_json")?;
            let (prev_hash, hash) = (text(7, "prev_hash")?, text(8, "hash")?);
            visitor.txn(TxnRef {
                seq,
                kind,
                value_date,
                recorded_at_us,
                actor,
                request_id,
                command_json,
                prev_hash,
                hash,
                // Not text: read as no text, which verify reports at this seq as postings that
                // cannot be read.
                postings: r.get_ref(9)?.as_str().unwrap_or(""),
                mistyped: mistyped.get(),
            });
            count += 1;
        }
        if count < page_txns {
            break;
        }
    }
    visitor.end();
    Ok(visitor)
}

#[cfg(test)]
mod tests {
    use super::super::fresh_postgres;
    use super::super::write::tests::{group, txn as staged_txn};
    use super::*;

    /// On a PostgreSQL database never analysed, a journal page is read along the key's index
    /// in key order: no sort. (Without the scan's settings the planner sorted every row from
    /// the page's start onwards, on disk, for each page; verify ran at a third of its speed.)
    #[tokio::test]
    async fn postgres_journal_pages_follow_the_index_without_statistics() {
        let Some(scratch) = fresh_postgres().await else { return };
        let db = &scratch.db;
        db.migrate().await.unwrap();
        let staged = group((1..=3000).map(|seq| staged_txn(seq, &format!("r{seq}"))).collect());
        db.begin_write().await.unwrap().commit_with(&staged).await.unwrap();
        let Db::Postgres(pool, _) = &db else { unreachable!() };
        let mut tx = pool.begin().await.unwrap();
        scan_settings(&mut tx, "L").await.unwrap();
        let plan: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "explain {}",
            txn_page_sql(1001, 10_000, i64::MAX)
        )))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        let plan: Vec<String> = plan.into_iter().map(|(line,)| line).collect();
        assert!(!plan.iter().any(|l| l.contains("Sort")), "{plan:#?}");
        assert!(plan.iter().any(|l| l.contains("Index Scan using journal_txn_pkey")), "{plan:#?}");
        // The page itself: the 2,000 transactions from 1,001, in order.
        let copy =
            copy_out(&mut tx, &txn_copy_sql(1001, 10_000, i64::MAX), Vec::new(), 0).await.unwrap();
        assert_eq!(page_extent(&copy).unwrap(), (2000, Some(3000)));
        tx.rollback().await.unwrap();
        db.close().await;
    }

    /// A visitor that asks the scan to stop once it has seen `stop_after` transactions (as
    /// verify's chain does when the verify is dropped), and notes whether `end` came.
    struct Stopping {
        stop_after: usize,
        seqs: Vec<i64>,
        ended: bool,
    }

    impl JournalVisitor for Stopping {
        fn txn(&mut self, txn: TxnRef<'_>) {
            self.seqs.push(txn.seq);
        }
        fn end(&mut self) {
            self.ended = true;
        }
        fn stopped(&self) -> bool {
            self.seqs.len() >= self.stop_after
        }
    }

    /// A scan whose visitor stops stops there, within a page: the transactions before are seen
    /// in order, none after, and `end` does not come.
    async fn a_stopped_scan_reads_no_further(db: &Db) {
        db.migrate().await.unwrap();
        let staged = group((1..=3000).map(|seq| staged_txn(seq, &format!("r{seq}"))).collect());
        db.begin_write().await.unwrap().commit_with(&staged).await.unwrap();
        let visitor = Stopping { stop_after: 250, seqs: Vec::new(), ended: false };
        let stopped = db.scan_journal_in_pages("L", 100, i64::MAX, visitor).await.unwrap();
        let seen = |v: &Stopping| (v.seqs.len(), v.seqs.first().copied(), v.seqs.last().copied());
        assert!(stopped.seqs.iter().copied().eq(1..=250), "saw {:?}", seen(&stopped));
        assert!(!stopped.ended);
        // The same scan to the end: every transaction, then `end`.
        let visitor = Stopping { stop_after: usize::MAX, seqs: Vec::new(), ended: false };
        let whole = db.scan_journal_in_pages("L", 100, i64::MAX, visitor).await.unwrap();
        assert_eq!((seen(&whole), whole.ended), ((3000, Some(1), Some(3000)), true));
        db.close().await;
    }

    #[tokio::test]
    async fn sqlite_a_stopped_scan_reads_no_further() {
        let (_dir, db) = super::super::fresh_sqlite().await;
        a_stopped_scan_reads_no_further(&db).await;
    }

    #[tokio::test]
    async fn postgres_a_stopped_scan_reads_no_further() {
        let Some(scratch) = fresh_postgres().await else { return };
        a_stopped_scan_reads_no_further(&scratch.db).await;
    }

    /// .cargo/config.toml sets these when libsqlite3-sys compiles SQLite; a build that missed
    /// them (an overriding LIBSQLITE3_FLAGS, a build from outside the crate's directory) would
    /// be slower without saying so.
    #[test]
    fn bundled_sqlite_has_the_compile_options_of_cargo_config() {
        let conn = rusqlite::Connection::open_in_memory().expect("an in-memory database");
        let mut stmt = conn.prepare("pragma compile_options").expect("compile_options");
        let options: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .expect("compile_options")
            .collect::<Result<_, _>>()
            .expect("compile_options");
        assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "{options:?}");
        assert!(options.iter().any(|o| o == "MAX_MMAP_SIZE=1099511627776"), "{options:?}");
    }
}
