//! SQLite's half of a group's commit: the staged rows ([`Staged`]) and the `COMMIT`, written
//! through the writer connection's own SQLite handle with statements prepared once, on the
//! thread that runs the commit.
//!
//! # Model
//!
//! - **Statements.** One single-row statement per table, prepared the first time a group needs
//!   it and kept for the connection's life ([`Statements`]: a rusqlite `Connection` over the
//!   handle sqlx opened, which does not own it, with rusqlite's statement cache): each new
//!   household and each status entry (first: new loans may name them), the journal row (its
//!   postings in it), each loan link, each idempotency row, each new loan (whole), each changed
//!   loan (its changing columns, by key), each balance delta (an upsert adding the delta). A
//!   row is bound straight from the staged group and stepped; nothing is copied into an
//!   argument buffer first, and no statement text is built or parsed per group.
//! - **Why not sqlx.** Until BENCHMARKS-HISTORY.md change 44 the rows went through sqlx's driver as a
//!   script of multi-row `VALUES` statements. Its handling of bound values (every value copied
//!   into the driver's own argument list, then bound with a second copy, then the lists
//!   dropped and the bindings cleared) was about half of SQLite's thread under batches, and
//!   every group's script was a hand-off to the driver's thread and back.
//! - **Where it runs.** On the thread that polls the commit (the commit's own task in the
//!   writer's pipeline, a runtime worker): the worker is blocked for the commit, `fsync`
//!   included. Measured against the alternatives (BENCHMARKS-HISTORY.md, 44): handing the work to a
//!   blocking thread (`spawn_blocking`) or moving the worker's queue away first
//!   (`block_in_place`) made batches 30–55% slower than running it where it is, since on two
//!   cores every hand-off waits for a thread to be scheduled. The other worker serves gRPC and
//!   plans the next group meanwhile, as it did while sqlx's thread committed. Should another
//!   connection hold SQLite's write lock (only migrations and other processes ever take it:
//!   checkpoints do not, and the WAL restart is the writer's own), `BEGIN IMMEDIATE` waits for
//!   it up to the busy timeout (5 s) on that worker too, where it used to wait on sqlx's
//!   thread: a bounded stall, not a deadlock, since nothing in the commit needs the runtime.
//! - **Errors.** A constraint broken by a row rolls the whole group back at once (`OR
//!   ROLLBACK`, as the script did: no statement journal, change 41); a request id stored
//!   already becomes [`StoreError::RequestSeen`], anything else [`StoreError::Rusqlite`] (busy
//!   and locked are retryable). On any other failure the transaction stays open and the caller
//!   rolls it back through sqlx, as before.
//! - **The lock.** sqlx's thread owns the handle; the writer takes it with
//!   [`SqliteConnection::lock_handle`], a hand-off to that thread (it must wake up to let go),
//!   about 0.3 ms of a single repayments' commit of 1 ms (timed, BENCHMARKS-HISTORY.md 45). The lock is therefore kept
//!   from one commit to the next ([`Kept`]) and given back only when the writer needs the
//!   connection through sqlx (a group's reads, a registry row, a rollback, a WAL restart):
//!   groups of single repayments on loans the writer holds take it once, not once a group.
//!
//! # Safety
//!
//! - [`Statements`] touches the handle only while the lock is held, with one exception:
//!   dropping it finalises its statements. [`super::WriteConn`] drops it before it drops or
//!   replaces the sqlx connection (sqlx closes the handle with `sqlite3_close`, which fails
//!   while statements remain, and sqlx then panics; the test
//!   `statements_are_kept_with_their_connection_and_go_before_it` shows both). Should that
//!   happen without the lock, the writer's connection is opened serialized
//!   (`SQLITE_OPEN_FULLMUTEX`): SQLite takes the connection's mutex in every call, so sqlx's
//!   thread (a statement of a cancelled future) and this one cannot run in it at once.
//! - The kept lock borrows the connection beyond what the compiler can see ([`Kept::locked`]).
//!   In sqlx 0.9 it points into the worker's shared state (an `Arc` both the connection and
//!   sqlx's thread hold), not into the connection itself; the connection is boxed all the same,
//!   so that nothing the lock may borrow moves, and `WriteConn` releases the lock before it hands
//!   the connection out, empties it before it takes the connection away, and declares it first
//!   so that it is dropped first. Using the connection through sqlx with the lock kept would
//!   not be unsound but would wait for ever (sqlx's thread waits for the lock), which is why
//!   `WriteConn::get` releases it.

use rusqlite::{CachedStatement, params};
use sqlx::SqliteConnection;
use sqlx::sqlite::LockedSqliteHandle;

use super::rows::{household_columns, journal_columns, loan_columns, status_columns};
use super::write::Staged;
use super::{RequestSeen, StoreError, WriteConn};

const JOURNAL: &str = concat!(
    "insert or rollback into journal_txn (",
    journal_columns!(),
    ") values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
);
const LINK: &str =
    "insert or rollback into journal_loan (loan_id, ledger_id, seq) values (?1, ?2, ?3)";
const IDEMPOTENCY: &str = "insert or rollback into idempotency \
                           (scope, request_id, fingerprint, result_json, ledger_id, seq) \
                           values (?1, ?2, ?3, ?4, ?5, ?6)";
const NEW_LOAN: &str = concat!(
    "insert or rollback into loan (",
    loan_columns!(),
    ") values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
     ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)"
);
const CHANGED_LOAN: &str = "update or rollback loan set status = ?2, disbursed_fen = ?3, \
                            principal_outstanding_fen = ?4, principal_repaid_fen = ?5, \
                            interest_paid_fen = ?6, disbursed_on = ?7, last_value_date = ?8, \
                            servicing_json = ?9, last_seq = ?10 where loan_id = ?1";
const HOUSEHOLD: &str = concat!(
    "insert or rollback into household (",
    household_columns!(),
    ") values (?1, ?2, ?3, ?4, ?5, ?6)"
);
const STATUS: &str = concat!(
    "insert or rollback into household_status (",
    status_columns!(),
    ") values (?1, ?2, ?3, ?4, ?5)"
);
const BALANCE: &str = "insert or rollback into account_balance (ledger_id, account, balance_fen) \
                       values (?1, ?2, ?3) on conflict (ledger_id, account) do update \
                       set balance_fen = account_balance.balance_fen + excluded.balance_fen";

/// The writer connection's prepared statements (module docs): a rusqlite `Connection` over
/// sqlx's handle, not owning it.
pub struct Statements {
    conn: rusqlite::Connection,
    handle: *mut rusqlite::ffi::sqlite3,
}

// SAFETY: the handle is used only under sqlx's lock or SQLite's own mutex (module docs); a
// rusqlite `Connection` is `Send`, and the pointer is only compared.
unsafe impl Send for Statements {}

impl std::fmt::Debug for Statements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statements").field("handle", &self.handle).finish_non_exhaustive()
    }
}

impl Statements {
    /// # Safety
    /// `handle` is open, locked by the caller, and outlives the result (module docs).
    unsafe fn over(handle: *mut rusqlite::ffi::sqlite3) -> rusqlite::Result<Self> {
        // SAFETY: as the caller promises; `from_handle` does not take ownership.
        let conn = unsafe { rusqlite::Connection::from_handle(handle) }?;
        Ok(Statements { conn, handle })
    }

    fn prepared(&self, sql: &str) -> rusqlite::Result<CachedStatement<'_>> {
        self.conn.prepare_cached(sql)
    }

    /// Every staged row, then `COMMIT`; `BEGIN IMMEDIATE` first when `begin`.
    fn write(&self, begin: bool, staged: &Staged) -> Result<(), Failed> {
        if begin {
            self.prepared("BEGIN IMMEDIATE")?.execute([])?;
        }
        // Households before the loans that name them.
        if !staged.households.is_empty() {
            let mut household = self.prepared(HOUSEHOLD)?;
            for h in &staged.households {
                household.execute(params![
                    h.household_id,
                    h.ledger_id,
                    h.head_name,
                    h.head_id_number,
                    h.township,
                    h.village
                ])?;
            }
        }
        if !staged.statuses.is_empty() {
            let mut status = self.prepared(STATUS)?;
            for s in staged.status_rows() {
                status.execute(params![s.0, s.1, s.2, s.3, s.4])?;
            }
        }
        if !staged.txns.is_empty() {
            let mut journal = self.prepared(JOURNAL)?;
            for t in &staged.txns {
                let r = &t.row;
                journal.execute(params![
                    r.ledger_id,
                    r.seq,
                    r.kind,
                    r.value_date,
                    r.recorded_at_us,
                    r.actor,
                    r.request_id,
                    r.command_json,
                    r.prev_hash,
                    r.hash,
                    r.postings
                ])?;
            }
            let mut link = self.prepared(LINK)?;
            for l in staged.link_rows() {
                link.execute(params![l.0, l.1, l.2])?;
            }
        }
        if !staged.txns.is_empty() || !staged.answers.is_empty() {
            let mut idempotency = self.prepared(IDEMPOTENCY)?;
            for i in staged.idempotency_rows() {
                idempotency.execute(params![i.0, i.1, i.2, i.3, i.4, i.5])?;
            }
        }
        let (new, changed) = staged.loan_rows();
        if !new.is_empty() {
            let mut insert = self.prepared(NEW_LOAN)?;
            for r in new.iter() {
                insert.execute(params![
                    r.loan_id,
                    r.ledger_id,
                    r.bank_id,
                    r.contract_number,
                    r.household_id,
                    r.borrower_name,
                    r.borrower_id_number,
                    r.principal_fen,
                    r.annual_rate,
                    r.contract_date,
                    r.term_months,
                    r.maturity_date,
                    r.repayment_method,
                    r.settlement_frequency,
                    r.purpose,
                    r.collateral_free,
                    r.guarantee_free,
                    r.status,
                    r.disbursed_fen,
                    r.principal_outstanding_fen,
                    r.principal_repaid_fen,
                    r.interest_paid_fen,
                    r.disbursed_on,
                    r.last_value_date,
                    r.renews_loan_id,
                    r.policy_json,
                    r.servicing_json,
                    r.last_seq
                ])?;
            }
        }
        if !changed.is_empty() {
            let mut update = self.prepared(CHANGED_LOAN)?;
            for r in changed.iter() {
                let n = update.execute(params![
                    r.loan_id,
                    r.status,
                    r.disbursed_fen,
                    r.principal_outstanding_fen,
                    r.principal_repaid_fen,
                    r.interest_paid_fen,
                    r.disbursed_on,
                    r.last_value_date,
                    r.servicing_json,
                    r.last_seq
                ])?;
                if n != 1 {
                    // The writer changes only loans it read: a missing row is a fault, and the
                    // group must not commit without its loan's read model.
                    return Err(Failed::NoLoanRow(r.loan_id.clone()));
                }
            }
        }
        let deltas = staged.delta_rows();
        if !deltas.is_empty() {
            let mut balance = self.prepared(BALANCE)?;
            for d in deltas {
                balance.execute(params![d.0, d.1, d.2])?;
            }
        }
        self.prepared("COMMIT")?.execute([])?;
        Ok(())
    }
}

/// What the writer keeps beside its SQLite connection ([`WriteConn`]): the prepared
/// statements, and the lock on the connection's handle, held from one commit to the next
/// (module docs, "The lock"). Whatever uses the connection through sqlx releases the lock
/// first ([`Kept::unlock`], called by `WriteConn::get`; `WriteConn::ensure_open`, which every
/// group calls first, keeps it unless it must roll back through sqlx).
#[derive(Default)]
pub struct Kept {
    /// Dropped first (field order): its statements are finalised while the lock is held.
    statements: Option<Statements>,
    /// The lock on the handle of the `WriteConn`'s connection, its lifetime widened: the
    /// connection is boxed (its address does not change while the lock is held), and the lock
    /// is dropped before the connection is used or goes (`WriteConn`: `kept` is released before
    /// `conn` is handed out, emptied before it is taken, and declared before it).
    locked: Option<LockedSqliteHandle<'static>>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("statements", &self.statements)
            .field("locked", &self.locked.is_some())
            .finish()
    }
}

impl Kept {
    /// Lets sqlx's thread have the handle again (the statements stay prepared).
    pub fn unlock(&mut self) {
        self.locked = None;
    }

    #[cfg(test)]
    pub(super) fn is_locked(&self) -> bool {
        self.locked.is_some()
    }
}

impl WriteConn<SqliteConnection> {
    /// Writes a group's rows and commits, `BEGIN IMMEDIATE` first when `begin`, with the
    /// statements kept beside the connection (prepared on first use), on the handle locked
    /// since the previous commit or locked now.
    pub(super) async fn write_group(
        &mut self,
        begin: bool,
        staged: &Staged,
    ) -> Result<(), StoreError> {
        let Kept { statements, locked } = &mut self.kept;
        let locked = match locked {
            Some(l) => l,
            None => {
                let conn: &mut SqliteConnection = self
                    .conn
                    .as_deref_mut()
                    .ok_or(StoreError::Unavailable(sqlx::Error::PoolClosed))?;
                let lock = conn.lock_handle().await?;
                // SAFETY: the lock borrows the boxed connection, which stays at its address
                // and outlives the lock: `WriteConn` drops or releases `kept` before it uses,
                // takes or drops `conn` (see `Kept::locked`).
                let lock = unsafe {
                    std::mem::transmute::<LockedSqliteHandle<'_>, LockedSqliteHandle<'static>>(lock)
                };
                locked.insert(lock)
            }
        };
        let handle = locked.as_raw_handle().as_ptr();
        let statements = match statements {
            Some(s) if s.handle == handle => s,
            // A connection keeps its handle, and `WriteConn::forget` empties `kept` with the
            // connection: a mismatch would be a fault in this module's callers.
            Some(_) => {
                return Err(StoreError::Corrupt(
                    "the writer's statements outlived their connection".into(),
                ));
            }
            // SAFETY: the handle is open and locked, and the statements go before the
            // connection does (module docs).
            none @ None => none.insert(unsafe { Statements::over(handle) }?),
        };
        statements.write(begin, staged).map_err(StoreError::from)
    }
}

/// Why a group's rows were not written.
enum Failed {
    Sqlite(rusqlite::Error),
    /// A changed loan has no row to update.
    NoLoanRow(String),
}

impl From<rusqlite::Error> for Failed {
    fn from(e: rusqlite::Error) -> Self {
        Failed::Sqlite(e)
    }
}

impl From<Failed> for StoreError {
    /// A request id stored already ([`super::sqlite_request_seen`]) is
    /// [`StoreError::RequestSeen`].
    fn from(f: Failed) -> Self {
        match f {
            Failed::Sqlite(e @ rusqlite::Error::SqliteFailure(..)) if is_request_seen(&e) => {
                StoreError::RequestSeen(RequestSeen::Sqlite(e))
            }
            Failed::Sqlite(e) => StoreError::Rusqlite(e),
            Failed::NoLoanRow(loan_id) => {
                StoreError::Corrupt(format!("loan {loan_id}: no stored row to update"))
            }
        }
    }
}

/// A row refused for a request id stored already ([`super::sqlite_request_seen`]).
fn is_request_seen(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, Some(message))
        if super::sqlite_request_seen(f.extended_code, message))
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use sqlx::{Connection, Executor};

    use super::super::write::tests::{group, txn};
    use super::super::{Db, fresh_sqlite};
    use super::*;

    /// How many statements prepared on `handle` have this text.
    ///
    /// # Safety
    /// `handle` is open and locked by the caller.
    unsafe fn prepared_count(handle: *mut rusqlite::ffi::sqlite3, sql: &str) -> usize {
        let mut n = 0;
        // SAFETY: as the caller promises; SQLite's list of the connection's statements.
        unsafe {
            let mut stmt = rusqlite::ffi::sqlite3_next_stmt(handle, std::ptr::null_mut());
            while !stmt.is_null() {
                if CStr::from_ptr(rusqlite::ffi::sqlite3_sql(stmt)).to_str() == Ok(sql) {
                    n += 1;
                }
                stmt = rusqlite::ffi::sqlite3_next_stmt(handle, stmt);
            }
        }
        n
    }

    /// The writer's statements for `conn`'s handle: how many journal statements are prepared
    /// on it, and whether the kept statements are for this handle.
    async fn kept_for(w: &mut WriteConn<SqliteConnection>) -> (usize, bool) {
        let conn = w.get().unwrap();
        let mut locked = conn.lock_handle().await.unwrap();
        let handle = locked.as_raw_handle().as_ptr();
        // SAFETY: open and locked until `locked` drops.
        let count = unsafe { prepared_count(handle, JOURNAL) };
        drop(locked);
        (count, w.kept.statements.as_ref().is_some_and(|s| s.handle == handle))
    }

    /// Two groups share one prepared statement per table, kept beside the connection. Letting
    /// the connection go drops them first, so that sqlx can close its handle (it fails to close
    /// one with statements left, and panics), and the next connection prepares its own.
    #[tokio::test]
    async fn statements_are_kept_with_their_connection_and_go_before_it() {
        let (_dir, db) = fresh_sqlite().await;
        db.migrate().await.unwrap();
        let Db::Sqlite(pool, write, ..) = &db else { unreachable!() };
        for seq in 1..=2 {
            let staged = group(vec![txn(seq, &format!("r{seq}"))]);
            db.begin_write().await.unwrap().commit_with(&staged).await.unwrap();
            // The next group opens its transaction on the connection with the lock still kept.
            let next = db.begin_write().await.unwrap();
            assert!(next.kept_lock(), "the next group finds the lock kept (after group {seq})");
            next.rollback().await.unwrap();
            let mut w = write.lock().await;
            assert!(w.kept.locked.is_some(), "the lock is kept after the commit (group {seq})");
            // Given back by `get`, and sqlx runs statements on the connection again (had the
            // lock been kept, sqlx would wait for it for ever, blocking this thread).
            w.get().unwrap();
            assert!(w.kept.locked.is_none(), "`get` gave the lock back (group {seq})");
            w.get().unwrap().execute("select 1").await.unwrap();
            assert_eq!(kept_for(&mut w).await, (1, true), "after group {seq}");
        }

        let old = write.lock().await.forget().unwrap();
        old.close().await.expect("sqlx closes the old handle: no statement of ours is left on it");

        let mut w = write.lock().await;
        w.ensure_open().await.unwrap();
        assert_eq!(kept_for(&mut w).await, (0, false), "a new connection, nothing prepared yet");
        drop(w);
        db.begin_write().await.unwrap().commit_with(&group(vec![txn(3, "r3")])).await.unwrap();
        assert_eq!(kept_for(&mut *write.lock().await).await, (1, true), "prepared anew");
        let seqs: Vec<(i64,)> =
            sqlx::query_as("select seq from journal_txn where ledger_id <> 'lpr' order by seq")
                .fetch_all(pool)
                .await
                .unwrap();
        assert_eq!(seqs, [(1,), (2,), (3,)]);
        db.close().await;
    }

    /// A group that changes a loan with no stored row (a fault: the writer changes only loans
    /// it has read) is refused, names the loan, and leaves nothing: its journal rows, written
    /// before the loan's update, are rolled back with it.
    #[tokio::test]
    async fn a_changed_loan_without_its_row_fails_the_group_and_leaves_nothing() {
        let (_dir, db) = fresh_sqlite().await;
        db.migrate().await.unwrap();
        let mut staged = group(vec![txn(1, "r1")]);
        let mut loan = crate::bench::load::loans_template();
        std::sync::Arc::make_mut(&mut loan.terms).loan_id = "LN".into();
        staged.loans.insert("LN".into(), loan);

        let refused = db.begin_write().await.unwrap().commit_with(&staged).await;
        assert!(
            matches!(&refused, Err(StoreError::Corrupt(m)) if m.contains("loan LN")),
            "{refused:?}"
        );
        let Db::Sqlite(pool, write, ..) = &db else { unreachable!() };
        assert!(!write.lock().await.unsure, "the failed group was rolled back at once");
        let rows: (i64, i64, i64) = sqlx::query_as(
            "select (select count(*) from journal_txn where ledger_id <> 'lpr'), \
             (select count(*) from idempotency where ledger_id <> 'lpr'), \
             (select count(*) from account_balance)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(rows, (0, 0, 0));
        db.begin_write().await.unwrap().commit_with(&group(vec![txn(1, "r1")])).await.unwrap();
        db.close().await;
    }
}
