//! The write path: one database transaction per group of commands, used only by the writer.
//!
//! Reads inside the transaction see what the group wrote before them. Rare registry rows
//! (ledgers, banks, policy versions, LPR entries) are inserted as their command is accepted;
//! the rows a group may hold thousands of (journal with its postings, loan links, idempotency
//! records, loan read models, balance deltas, households and their statuses) are collected in
//! a [`Staged`] set and written at the end of the group with a few statements, since on SQLite
//! the number of statements, not rows, is what a write costs (../shared/STACK.md). The writer
//! reads the households a group names once at its start and keeps what the group registers or
//! changes of them itself, so no read needs their staged rows.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::{Executor, PgConnection, QueryBuilder, SqliteConnection};

use super::rows::*;
use super::{Db, StoreError, WriteConn};
use crate::collections::{HashMap, HashSet};
use crate::domain::date::{BusinessDate, format_date};
use crate::domain::household::StatusEntry;
use crate::domain::loan::LoanState;
use crate::domain::lpr::LprEntry;
use crate::domain::money::Fen;
use crate::domain::policy::PolicyVersion;
use crate::domain::pool::Pool;
use crate::domain::risk_fund::{Compensation, Fund};
use crate::domain::subsidy_claim::Claim;
use crate::ledger::posting::Posting;

pub enum WriteTx {
    Sqlite(SqliteTx),
    Postgres(PgTx),
    /// No connection: a group planned while the group before it commits (the writer's
    /// pipeline), whose commands the writer checked need no statement until their own commit.
    /// Any statement on it fails with [`StoreError::Detached`], and it cannot commit.
    Detached,
}

/// A group's transaction on the writer's SQLite connection. `BEGIN IMMEDIATE` travels with the
/// group's first read (its request-id lookup) and `COMMIT` with its writes. IMMEDIATE: the group
/// takes the write lock before it reads, so that it waits (busy timeout) for another connection
/// holding that lock instead of failing with SQLITE_BUSY when it upgrades a read to a write.
/// Every statement sqlx runs is a hand-off to the connection's thread and back, and on two busy
/// cores each hand-off waited about half a millisecond for that thread to be scheduled
/// (measured per phase: a group of single requests spent more time in its `BEGIN` than in its
/// request-id lookup); a group pays two hand-offs instead of five.
pub type SqliteTx = GroupTx<SqliteConnection>;

/// A group's transaction on the writer's PostgreSQL connection. `BEGIN` is sent only when the
/// group first needs a transaction (a registry row, a locked read); a group of repayments whose
/// loans the writer holds reads its request ids and writes all its rows with one statement, in
/// the database's own implicit transaction: two round trips instead of nine.
pub type PgTx = GroupTx<PgConnection>;

/// A group's transaction on the writer's connection ([`WriteConn`]), begun lazily.
pub struct GroupTx<C: super::WriterSetup> {
    conn: tokio::sync::OwnedMutexGuard<WriteConn<C>>,
    /// `BEGIN` has been sent.
    begun: bool,
    /// Neither committed nor rolled back yet. The writer rolls a failed group back at once; a
    /// transaction dropped open all the same (a cancelled future) marks the connection so that
    /// the next group rolls back first.
    open: bool,
}

/// SQLite's answer to a `ROLLBACK` with no transaction open ("cannot rollback - no transaction
/// is active").
const NO_TRANSACTION: &str = "no transaction is active";

/// How each backend begins a group's transaction.
pub trait BeginText {
    const BEGIN: &'static str;
}

impl BeginText for SqliteConnection {
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
}

impl BeginText for PgConnection {
    const BEGIN: &'static str = "BEGIN";
}

impl<C> GroupTx<C>
where
    C: super::WriterSetup + BeginText,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
{
    async fn open(write: &Arc<tokio::sync::Mutex<WriteConn<C>>>) -> Result<Self, StoreError> {
        let mut conn = write.clone().lock_owned().await;
        conn.ensure_open().await?;
        Ok(GroupTx { conn, begun: false, open: true })
    }

    fn conn(&mut self) -> Result<&mut C, StoreError> {
        self.conn.get()
    }

    /// Sends `BEGIN` alone, for the statements that cannot carry it.
    async fn ensure_begun(&mut self) -> Result<(), StoreError> {
        if !self.begun {
            // Marked first: should the BEGIN go through and this future go away before it
            // answers, the transaction is still known to be (perhaps) open.
            self.begun = true;
            self.conn()?.execute(C::BEGIN).await?;
        }
        Ok(())
    }

    /// `result` of a statement that may have been sent with no transaction begun (PostgreSQL's
    /// request-id lookup, or a group's one statement that is its own transaction): should it
    /// have failed so, as the database being away does, the connection may be gone, and nothing
    /// else would find out (there is no transaction to roll back), so the next group rolls back
    /// first, which opens a new connection should it be gone. (Within a transaction its rollback
    /// finds out; other failures, such as the implicit transaction refused by the request-id
    /// key, only replan the group.)
    fn unbegun<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if !self.begun
            && let Err(e) = &result
            && e.is_unavailable()
        {
            self.conn.unsure = true;
        }
        result
    }

    async fn rollback(mut self) -> Result<(), StoreError> {
        if self.begun {
            match self.conn()?.execute("ROLLBACK").await {
                Ok(_) => {}
                // SQLite ended the transaction itself: a row broke a constraint under `OR
                // ROLLBACK` ([`super::sqlite_commit`]), or a write failed for want of disk or memory.
                Err(sqlx::Error::Database(e)) if e.message().contains(NO_TRANSACTION) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.open = false;
        Ok(())
    }
}

impl GroupTx<SqliteConnection> {
    /// `BEGIN IMMEDIATE;` if the transaction has not begun, to lead the next statement of a
    /// script (which then must be sent); empty otherwise. (PostgreSQL prepares one statement at
    /// a time: its `BEGIN` goes alone.)
    fn begin_prefix(&mut self) -> &'static str {
        if self.claim_begin() { "BEGIN IMMEDIATE;\n" } else { "" }
    }

    /// Whether the next statement must begin the transaction; it is counted as begun from now.
    fn claim_begin(&mut self) -> bool {
        !std::mem::replace(&mut self.begun, true)
    }
}

impl<C: super::WriterSetup> Drop for GroupTx<C> {
    fn drop(&mut self) {
        if self.open && self.begun {
            self.conn.unsure = true;
        }
    }
}

/// Runs the same code on whichever transaction `$tx` holds; `$c` is bound to the connection.
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            WriteTx::Sqlite(t) => {
                t.ensure_begun().await?;
                let $c = t.conn()?;
                $body
            }
            WriteTx::Postgres(t) => {
                t.ensure_begun().await?;
                let $c = t.conn()?;
                $body
            }
            WriteTx::Detached => return Err(StoreError::Detached),
        }
    };
}

/// As [`on_tx!`], for a read built with a `QueryBuilder` (`$q`, begun for the backend): on
/// SQLite the group's `BEGIN IMMEDIATE`, if not sent yet, leads the read's text, so that the
/// two travel in one hand-off to the connection's thread instead of two (a group whose loans
/// the writer does not hold begins with that read). PostgreSQL prepares one statement at a
/// time: its `BEGIN` goes alone.
macro_rules! on_tx_built {
    ($tx:expr, $q:ident, $c:ident => $body:expr) => {
        match $tx {
            WriteTx::Sqlite(t) => {
                let mut $q = QueryBuilder::new(t.begin_prefix());
                let $c = t.conn()?;
                $body
            }
            WriteTx::Postgres(t) => {
                t.ensure_begun().await?;
                let mut $q = QueryBuilder::new("");
                let $c = t.conn()?;
                $body
            }
            WriteTx::Detached => return Err(StoreError::Detached),
        }
    };
}

/// A journal transaction ready to be written.
#[derive(Debug, Clone)]
pub struct StagedTxn {
    pub row: JournalRow,
    pub loan_ids: Vec<String>,
    pub idempotency: StoredAnswer,
}

/// A transaction's idempotency row, beside what its journal row already holds: the row's
/// scope and request id are the journal row's actor and request id (the writer's key for the
/// request: the caller's name and its request id), written from there rather than copied.
#[derive(Debug, Clone)]
pub struct StoredAnswer {
    /// The command's fingerprint (`Command::fingerprint`).
    pub fingerprint: String,
    /// The answer's compact stored form, as JSON.
    pub result_json: String,
}

/// An idempotency row: (scope, request id, fingerprint, answer as JSON, ledger, seq).
pub type IdempotencyRowRef<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, i64);

/// What a group writes at its end.
#[derive(Debug, Default)]
pub struct Staged {
    pub txns: Vec<StagedTxn>,
    /// The final state of each loan the group changed.
    pub loans: BTreeMap<String, LoanState>,
    /// Those of `loans` the group created: written whole; the others only have their changing
    /// columns updated (the contract columns never change).
    pub new_loans: HashSet<String>,
    /// Net balance change per (ledger, account).
    pub balance_deltas: HashMap<(String, String), i64>,
    /// Households the group registered (their first status is in `statuses`).
    pub households: Vec<HouseholdRow>,
    /// Status entries the group recorded, in order: (household, its transaction's seq, entry).
    pub statuses: Vec<(String, i64, StatusEntry)>,
    /// Answers recorded without a journal transaction (refusals): (scope, request id, answer),
    /// stored under no ledger and seq 0.
    pub answers: Vec<(String, String, StoredAnswer)>,
    /// `loans` as rows, built ahead ([`Staged::build_loan_rows`]); else the commit builds them.
    pub built_loan_rows: Option<(Vec<LoanRow>, Vec<LoanChangeRow>)>,
}

/// The rows of a staged group, flattened table by table, as both backends write them.
impl Staged {
    /// No row to write.
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
            && self.loans.is_empty()
            && self.balance_deltas.is_empty()
            && self.households.is_empty()
            && self.statuses.is_empty()
            && self.answers.is_empty()
    }

    /// (household, seq, effective date, status, reason) of each status entry.
    pub(super) fn status_rows(&self) -> Vec<(&str, i64, String, &str, &str)> {
        self.statuses
            .iter()
            .map(|(household_id, seq, e)| {
                (
                    household_id.as_str(),
                    *seq,
                    format_date(e.effective_date),
                    e.status.as_str(),
                    e.reason.as_str(),
                )
            })
            .collect()
    }

    /// (loan, ledger, seq) of every loan a transaction touches.
    pub(super) fn link_rows(&self) -> Vec<(&str, &str, i64)> {
        self.txns
            .iter()
            .flat_map(|t| {
                t.loan_ids.iter().map(move |l| (l.as_str(), t.row.ledger_id.as_str(), t.row.seq))
            })
            .collect()
    }

    pub(super) fn idempotency_rows(&self) -> Vec<IdempotencyRowRef<'_>> {
        let journaled = self.txns.iter().map(|t| {
            let (r, answer) = (&t.row, &t.idempotency);
            (
                r.actor.as_str(),
                r.request_id.as_str(),
                answer.fingerprint.as_str(),
                answer.result_json.as_str(),
                r.ledger_id.as_str(),
                r.seq,
            )
        });
        let unjournaled = self.answers.iter().map(|(scope, request_id, answer)| {
            (
                scope.as_str(),
                request_id.as_str(),
                answer.fingerprint.as_str(),
                answer.result_json.as_str(),
                "",
                0,
            )
        });
        journaled.chain(unjournaled).collect()
    }

    /// The loans the group created (written whole) and those it changed (changing columns):
    /// built now (their servicing state as JSON, their dates as text), unless built ahead.
    pub(super) fn loan_rows(&self) -> (Cow<'_, [LoanRow]>, Cow<'_, [LoanChangeRow]>) {
        if let Some((new, changed)) = &self.built_loan_rows {
            return (Cow::Borrowed(new), Cow::Borrowed(changed));
        }
        let (new, changed) = self.build_rows();
        (Cow::Owned(new), Cow::Owned(changed))
    }

    fn build_rows(&self) -> (Vec<LoanRow>, Vec<LoanChangeRow>) {
        let (new, changed): (Vec<&LoanState>, Vec<&LoanState>) =
            self.loans.values().partition(|l| self.new_loans.contains(&l.terms.loan_id));
        (
            new.into_iter().map(LoanRow::from_state).collect(),
            changed.into_iter().map(LoanChangeRow::from_state).collect(),
        )
    }

    /// Builds the loans' rows ahead of the commit (the benchmark's ceiling: a plain program
    /// has its rows ready before its clock starts; the writer builds them in its commit task).
    pub fn build_loan_rows(&mut self) {
        self.built_loan_rows = Some(self.build_rows());
    }

    /// Non-zero balance changes, in a fixed order so that two writers (should there ever be
    /// two) cannot deadlock.
    pub(super) fn delta_rows(&self) -> Vec<(&str, &str, i64)> {
        let mut deltas: Vec<(&str, &str, i64)> = self
            .balance_deltas
            .iter()
            .filter(|(_, d)| **d != 0)
            .map(|((l, a), d)| (l.as_str(), a.as_str(), *d))
            .collect();
        deltas.sort_unstable();
        deltas
    }
}

/// Largest number of bind parameters in one statement: below SQLite's default limit of 32,766
/// and PostgreSQL's 65,535.
const BINDS_MAX: usize = 30_000;

fn chunk_rows(columns: usize) -> usize {
    BINDS_MAX / columns
}

impl Db {
    pub async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        Ok(match self {
            Db::Sqlite(_, write, ..) => WriteTx::Sqlite(SqliteTx::open(write).await?),
            Db::Postgres(_, write) => WriteTx::Postgres(PgTx::open(write).await?),
        })
    }

    /// The stored answers of these (scope, request id) keys, read through the readers' pool
    /// rather than the writer's connection: for a group the writer plans while the group
    /// before it commits. It sees every group committed before the one in flight (each
    /// statement reads the latest commit); the one in flight the writer checks itself.
    pub async fn idempotency_read(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<IdempotencyKeyRow>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(chunk_rows(2)) {
            crate::on_pool_keyed!(self, pool => {
                let mut q = QueryBuilder::new("");
                push_key_lookup(&mut q, chunk);
                found.extend(q.build_query_as().fetch_all(pool).await?);
            });
        }
        Ok(found)
    }

    /// These loans as committed, through the readers' pool (as [`Db::idempotency_read`], for
    /// a group planned while another commits; the writer asks only for loans the group in
    /// flight does not change). On SQLite through rusqlite on a reading connection, one
    /// prepared lookup by key a loan, each column taken by its index: through sqlx's driver
    /// (each column found by name and copied into a value of its own) a million-loan
    /// settlement run, whose pages the writer reads here, took a fifth longer (BENCHMARKS-HISTORY.md 64).
    pub async fn loans_read(&self, loan_ids: &[&str]) -> Result<Vec<LoanState>, StoreError> {
        if let Some(readers) = self.sqlite_readers() {
            let ids: Vec<String> = loan_ids.iter().map(|id| id.to_string()).collect();
            return super::read::read_blocking(readers, move |conn| {
                let mut lookup = conn.prepare_cached(super::read::LOAN_BY_ID)?;
                let mut found = Vec::with_capacity(ids.len());
                for id in &ids {
                    let mut rows = lookup.query([id])?;
                    if let Some(row) = rows.next()? {
                        found.push(super::bulk::loan_row(row)?.into_state()?);
                    }
                }
                Ok(found)
            })
            .await;
        }
        let mut found = Vec::with_capacity(loan_ids.len());
        for chunk in loan_ids.chunks(chunk_rows(1)) {
            crate::on_pool_keyed!(self, pool => {
                let mut q = QueryBuilder::new("");
                push_loans(&mut q, chunk, false);
                for r in q.build_query_as::<LoanRow>().fetch_all(pool).await? {
                    found.push(r.into_state()?);
                }
            });
        }
        Ok(found)
    }
}

impl WriteTx {
    /// Writes a group's staged rows and commits. PostgreSQL: one statement per table, each
    /// column bound as one array and expanded by `unnest`. SQLite: a single-row statement per
    /// table, prepared once, stepped for each row on the writer's own handle, then `COMMIT`
    /// ([`super::sqlite_commit`]).
    pub async fn commit_with(mut self, staged: &Staged) -> Result<(), StoreError> {
        let written = match &mut self {
            WriteTx::Sqlite(t) => {
                let begin = t.claim_begin();
                t.conn.write_group(begin, staged).await
            }
            // Nothing to write and no transaction: nothing to send.
            WriteTx::Postgres(t) if !t.begun && staged.is_empty() => Ok(()),
            // Households first, in a transaction (their rows go before the loans that name them).
            WriteTx::Postgres(t)
                if !staged.households.is_empty() || !staged.statuses.is_empty() =>
            {
                async {
                    t.ensure_begun().await?;
                    flush_households(t.conn()?, staged).await?;
                    flush_unnest(t.conn()?, staged).await?;
                    t.conn()?.execute("COMMIT").await?;
                    Ok(())
                }
                .await
            }
            // Not begun: the one statement is the transaction.
            WriteTx::Postgres(t) => match flush_unnest(t.conn()?, staged).await {
                Ok(()) if t.begun => {
                    t.conn()?.execute("COMMIT").await.map(|_| ()).map_err(Into::into)
                }
                other => t.unbegun(other),
            },
            WriteTx::Detached => Err(StoreError::Detached),
        };
        match written {
            Ok(()) => {
                match &mut self {
                    WriteTx::Sqlite(t) => t.open = false,
                    WriteTx::Postgres(t) => t.open = false,
                    WriteTx::Detached => {}
                }
                Ok(())
            }
            // The database stopped at the failed statement with the transaction still open:
            // end it now rather than hold its locks until the next group (should the rollback
            // fail too, the next group rolls back first).
            Err(e) => {
                let _ = self.rollback().await;
                Err(e)
            }
        }
    }

    /// Whether the writer's SQLite connection comes with the lock on its handle kept from the
    /// last commit ([`super::sqlite_commit::Kept`]).
    #[cfg(test)]
    pub(super) fn kept_lock(&self) -> bool {
        matches!(self, WriteTx::Sqlite(t) if t.conn.kept.is_locked())
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.rollback().await,
            WriteTx::Postgres(t) => t.rollback().await,
            WriteTx::Detached => Ok(()),
        }
    }

    /// The text of a one-column query without parameters, in this transaction.
    pub async fn scalars(&mut self, sql: &'static str) -> Result<Vec<String>, StoreError> {
        Ok(on_tx!(self, c => sqlx::query_scalar(sql).fetch_all(c).await?))
    }

    /// [`WriteTx::head`], the transaction then ended.
    pub async fn head_then_rollback(
        mut self,
        ledger_id: &str,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let head = self.head(ledger_id).await;
        self.rollback().await?;
        head
    }

    /// The last (seq, hash) of a ledger's chain.
    pub async fn head(&mut self, ledger_id: &str) -> Result<Option<(i64, String)>, StoreError> {
        let sql =
            "select seq, hash from journal_txn where ledger_id = $1 order by seq desc limit 1";
        Ok(on_tx!(self, c => sqlx::query_as(sql).bind(ledger_id).fetch_optional(c).await?))
    }

    pub async fn idempotency_many(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<Vec<IdempotencyKeyRow>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(chunk_rows(2)) {
            match self {
                WriteTx::Sqlite(t) => {
                    // The group's BEGIN travels with its first lookup.
                    let mut q = QueryBuilder::new(t.begin_prefix());
                    push_key_lookup(&mut q, chunk);
                    found.extend(q.build_query_as().fetch_all(t.conn()?).await?);
                }
                WriteTx::Postgres(t) => {
                    // Outside the transaction: under READ COMMITTED a lookup inside it would
                    // see nothing more, and a group that needs no other read or registry row
                    // then writes with one statement and no BEGIN.
                    let mut q = QueryBuilder::new("");
                    push_key_lookup(&mut q, chunk);
                    let rows = q.build_query_as().fetch_all(t.conn()?).await.map_err(Into::into);
                    found.extend(t.unbegun(rows)?);
                }
                WriteTx::Detached => return Err(StoreError::Detached),
            }
        }
        Ok(found)
    }

    /// Many loans at once (those a group's commands name): one statement per chunk.
    pub async fn loans_many(&mut self, loan_ids: &[String]) -> Result<Vec<LoanState>, StoreError> {
        let mut found = Vec::new();
        let lock = matches!(self, WriteTx::Postgres(_));
        for chunk in loan_ids.chunks(chunk_rows(1)) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            on_tx_built!(self, q, c => {
                push_loans(&mut q, &chunk, lock);
                let rows = q.build_query_as::<LoanRow>().fetch_all(c).await?;
                for r in rows {
                    found.push(r.into_state()?);
                }
            });
        }
        Ok(found)
    }

    /// The seq of each of these loans' last event, as stored: one statement a chunk, the
    /// loans' state not read.
    pub async fn loan_seqs(&mut self, loan_ids: &[&str]) -> Result<Vec<(String, i64)>, StoreError> {
        let mut found = Vec::new();
        for chunk in loan_ids.chunks(chunk_rows(1)) {
            let rows: Vec<(String, i64)> = on_tx_built!(self, q, c => {
                q.push("select loan_id, last_seq from loan where loan_id in (");
                push_list(&mut q, chunk);
                q.push(")");
                q.build_query_as().fetch_all(c).await?
            });
            found.extend(rows);
        }
        Ok(found)
    }

    /// The seq of each of these households' last status recorded, by household id (those with
    /// none left out).
    pub async fn household_status_seqs(
        &mut self,
        household_ids: &[&str],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut found = Vec::new();
        for chunk in household_ids.chunks(chunk_rows(1)) {
            let rows: Vec<(String, i64)> = on_tx_built!(self, q, c => {
                q.push("select household_id, max(seq) from household_status where household_id in (");
                push_list(&mut q, chunk);
                q.push(") group by household_id");
                q.build_query_as().fetch_all(c).await?
            });
            found.extend(rows);
        }
        Ok(found)
    }

    pub async fn ledger_exists(&mut self, ledger_id: &str) -> Result<bool, StoreError> {
        let sql = "select ledger_id, name from ledger where ledger_id = $1";
        let row: Option<LedgerRow> =
            on_tx!(self, c => sqlx::query_as(sql).bind(ledger_id).fetch_optional(c).await?);
        Ok(row.is_some())
    }

    pub async fn bank(&mut self, bank_id: &str) -> Result<Option<BankRow>, StoreError> {
        let sql = "select bank_id, ledger_id, name from bank where bank_id = $1";
        Ok(on_tx!(self, c => sqlx::query_as(sql).bind(bank_id).fetch_optional(c).await?))
    }

    /// Many households at once with their status series in recording order (those a group's
    /// commands name): two statements a chunk, where one household at a time took two each
    /// (a round trip each on PostgreSQL, a hand-off each to sqlx's thread on SQLite). A
    /// household not registered is absent.
    pub async fn households_many(
        &mut self,
        household_ids: &[&str],
    ) -> Result<Vec<HouseholdView>, StoreError> {
        let mut found = Vec::new();
        for chunk in household_ids.chunks(chunk_rows(1)) {
            let rows: Vec<HouseholdRow> = on_tx_built!(self, q, c => {
                q.push(concat!(
                    "select ",
                    household_columns!(),
                    " from household where household_id in ("
                ));
                push_list(&mut q, chunk);
                q.push(")");
                q.build_query_as().fetch_all(c).await?
            });
            if rows.is_empty() {
                continue;
            }
            let statuses: Vec<(String, String, String, String)> = on_tx_built!(self, q, c => {
                q.push(
                    "select household_id, effective_date, status, reason from household_status \
                     where household_id in (",
                );
                push_list(&mut q, chunk);
                q.push(") order by household_id, seq");
                q.build_query_as().fetch_all(c).await?
            });
            let mut series: HashMap<String, Vec<StatusEntry>> = HashMap::default();
            for (household_id, effective_date, status, reason) in statuses {
                let entry = StatusRow { effective_date, status, reason }.into_entry()?;
                series.entry(household_id).or_default().push(entry);
            }
            for row in rows {
                let statuses = series.remove(&row.household_id).unwrap_or_default();
                found.push(HouseholdView { row, statuses });
            }
        }
        Ok(found)
    }

    /// The households headed by any of `head_id_numbers` (as stored: upper case), in any ledger:
    /// (ledger_id, head_id_number, household_id) in household id order (a head's households are
    /// in one chunk), through `household_head_idx`. A statement a chunk, for the heads of all
    /// the registrations of a group and the borrowers of its contracts.
    pub async fn households_headed_by(
        &mut self,
        head_id_numbers: &[&str],
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut found = Vec::new();
        for chunk in head_id_numbers.chunks(chunk_rows(1)) {
            let rows: Vec<(String, String, String)> = on_tx_built!(self, q, c => {
                q.push(
                    "select ledger_id, head_id_number, household_id from household \
                     where head_id_number in (",
                );
                push_list(&mut q, chunk);
                q.push(") order by household_id");
                q.build_query_as().fetch_all(c).await?
            });
            found.extend(rows);
        }
        Ok(found)
    }

    pub async fn policies(&mut self, ledger_id: &str) -> Result<Vec<PolicyVersion>, StoreError> {
        let rows: Vec<PolicyRow> =
            on_tx!(self, c => sqlx::query_as(POLICIES_SQL).bind(ledger_id).fetch_all(c).await?);
        rows.into_iter().map(PolicyRow::into_version).collect()
    }

    pub async fn lpr(&mut self) -> Result<Vec<LprEntry>, StoreError> {
        let sql = "select effective_date, tenor, rate from lpr order by effective_date, tenor";
        let rows: Vec<LprRow> = on_tx!(self, c => sqlx::query_as(sql).fetch_all(c).await?);
        rows.into_iter().map(LprRow::into_entry).collect()
    }

    pub async fn loan(&mut self, loan_id: &str) -> Result<Option<LoanState>, StoreError> {
        // On PostgreSQL the row is locked for the rest of the group, so that another process
        // writing the same database (which the single writer does not expect) waits instead of
        // interleaving.
        let sql = match self {
            WriteTx::Sqlite(_) => {
                concat!("select ", loan_columns!(), " from loan where loan_id = $1")
            }
            WriteTx::Postgres(_) => {
                concat!("select ", loan_columns!(), " from loan where loan_id = $1 for update")
            }
            WriteTx::Detached => return Err(StoreError::Detached),
        };
        let row: Option<LoanRow> =
            on_tx!(self, c => sqlx::query_as(sql).bind(loan_id).fetch_optional(c).await?);
        row.map(LoanRow::into_state).transpose()
    }

    /// The programme loans of these households as stored (the caller merges the group's
    /// changes) that are open, or were open after `since`: closed by an event dated after it
    /// (a loan's last event is the one that closed it), so that a contract dated `since` counts
    /// a loan that was open on its date. One statement a chunk.
    pub async fn open_loans_many(
        &mut self,
        household_ids: &[&str],
        since: BusinessDate,
    ) -> Result<Vec<LoanState>, StoreError> {
        self.open_loans_since(") and household_id in (", household_ids, since).await
    }

    /// The programme loans of these borrowers (identity numbers as stored) as stored, in any
    /// ledger (the caller merges the group's changes), that are open or were open after
    /// `since`, as [`WriteTx::open_loans_many`] reads a household's: one statement a chunk,
    /// through `loan_borrower_idx`.
    pub async fn open_loans_of_borrowers(
        &mut self,
        id_numbers: &[&str],
        since: BusinessDate,
    ) -> Result<Vec<LoanState>, StoreError> {
        self.open_loans_since(") and borrower_id_number in (", id_numbers, since).await
    }

    /// The loans open, or closed by an event dated after `since`, whose column that `key_list`
    /// opens (`") and <column> in ("`) is one of `keys`: one statement a chunk of `keys`.
    async fn open_loans_since(
        &mut self,
        key_list: &'static str,
        keys: &[&str],
        since: BusinessDate,
    ) -> Result<Vec<LoanState>, StoreError> {
        const SQL: &str = concat!(
            "select ",
            loan_columns!(),
            " from loan where (status not in ('settled', 'written_off') or last_value_date > "
        );
        let since = format_date(since);
        let mut found = Vec::new();
        for chunk in keys.chunks(chunk_rows(1)) {
            let rows: Vec<LoanRow> = on_tx_built!(self, q, c => {
                q.push(SQL).push_bind(since.as_str()).push(key_list);
                push_list(&mut q, chunk);
                q.push(")");
                q.build_query_as().fetch_all(c).await?
            });
            for r in rows {
                found.push(r.into_state()?);
            }
        }
        Ok(found)
    }

    pub async fn insert_ledger(&mut self, ledger_id: &str, name: &str) -> Result<(), StoreError> {
        let sql = "insert into ledger (ledger_id, name) values ($1, $2)";
        on_tx!(self, c => sqlx::query(sql).bind(ledger_id).bind(name).execute(c).await.map(|_| ())?);
        Ok(())
    }

    pub async fn insert_bank(&mut self, row: &BankRow) -> Result<(), StoreError> {
        let sql = "insert into bank (bank_id, ledger_id, name) values ($1, $2, $3)";
        on_tx!(self, c => sqlx::query(sql).bind(&row.bank_id).bind(&row.ledger_id).bind(&row.name).execute(c).await.map(|_| ())?);
        Ok(())
    }

    /// Stores `version` as the `ordinal`th of its date (0 the first), recorded by the journal
    /// transaction `seq`.
    pub async fn insert_policy(
        &mut self,
        ledger_id: &str,
        version: &PolicyVersion,
        ordinal: i32,
        seq: i64,
    ) -> Result<(), StoreError> {
        let sql = "insert into policy_version (ledger_id, effective_date, ordinal, params_json, \
                   seq) values ($1, $2, $3, $4, $5)";
        let params = serde_json::to_string(&version.params)
            .map_err(|e| StoreError::Corrupt(format!("policy params: {e}")))?;
        on_tx!(self, c => sqlx::query(sql)
            .bind(ledger_id).bind(format_date(version.effective_date)).bind(ordinal).bind(params)
            .bind(seq).execute(c).await.map(|_| ())?);
        Ok(())
    }

    pub async fn claim_exists(&mut self, claim_id: &str) -> Result<bool, StoreError> {
        let sql = "select 1 from subsidy_claim where claim_id = $1";
        let found: Option<i32> =
            on_tx!(self, c => sqlx::query_scalar(sql).bind(claim_id).fetch_optional(c).await?);
        Ok(found.is_some())
    }

    /// The journal entries of a loan's history in its ledger, in seq order, as (seq, kind,
    /// command), read in the writer's transaction (the readers' pool may be busy: a read there
    /// that fails would fail the writer's group).
    pub async fn loan_entries(
        &mut self,
        loan_id: &str,
        ledger_id: &str,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        let sql = "select j.seq, j.kind, j.command_json \
                   from journal_loan l cross join journal_txn j \
                   where l.loan_id = $1 and l.ledger_id = $2 \
                   and j.ledger_id = l.ledger_id and j.seq = l.seq order by l.seq";
        Ok(on_tx!(self, c => sqlx::query_as(sql).bind(loan_id).bind(ledger_id).fetch_all(c).await?))
    }

    /// A period of `ledger_id` held by a claim and due on or after `date` (`YYYY-MM-DD`), if
    /// any: (claim id, loan id, due date), the earliest due.
    pub async fn claimed_period_due_from(
        &mut self,
        ledger_id: &str,
        date: &str,
    ) -> Result<Option<(String, String, String)>, StoreError> {
        let sql = "select claim_id, loan_id, due_date from subsidy_claim_period \
                   where ledger_id = $1 and due_date >= $2 order by due_date, loan_id limit 1";
        Ok(
            on_tx!(self, c => sqlx::query_as(sql).bind(ledger_id).bind(date).fetch_optional(c).await?),
        )
    }

    /// The claims holding a loan's claimed periods, by due date (`YYYY-MM-DD`).
    pub async fn claimed_periods(
        &mut self,
        loan_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "select due_date, claim_id from subsidy_claim_period where loan_id = $1";
        Ok(on_tx!(self, c => sqlx::query_as(sql).bind(loan_id).fetch_all(c).await?))
    }

    /// A subsidy claim as it stands, with the seq of its submission (`None`: no such claim).
    pub async fn claim(&mut self, claim_id: &str) -> Result<Option<(Claim, u64)>, StoreError> {
        let row: Option<(String, i64)> =
            on_tx!(self, c => sqlx::query_as(CLAIM_SQL).bind(claim_id).fetch_optional(c).await?);
        row.map(|row| claim_with_seq(claim_id, row)).transpose()
    }

    /// A claim's row after a step, and the loan-periods the step released.
    pub async fn update_claim(
        &mut self,
        claim: &Claim,
        seq: i64,
        released: &[(String, BusinessDate)],
    ) -> Result<(), StoreError> {
        let (json, summary) = claim_texts(claim)?;
        let sql = "update subsidy_claim set status = $1, claim_json = $2, summary_json = $3, last_seq = $4 \
                   where claim_id = $5";
        on_tx!(self, c => sqlx::query(sql)
            .bind(claim.status.as_str()).bind(json).bind(summary).bind(seq).bind(&claim.claim_id)
            .execute(c).await.map(|_| ())?);
        let sql = "delete from subsidy_claim_period where loan_id = $1 and due_date = $2 and claim_id = $3";
        for (loan_id, due_date) in released {
            on_tx!(self, c => sqlx::query(sql)
                .bind(loan_id).bind(format_date(*due_date)).bind(&claim.claim_id)
                .execute(c).await.map(|_| ())?);
        }
        Ok(())
    }

    /// A new subsidy claim's row, and a row for each loan-period it holds.
    pub async fn insert_claim(&mut self, claim: &Claim, seq: i64) -> Result<(), StoreError> {
        let (json, summary) = claim_texts(claim)?;
        let sql = "insert into subsidy_claim (claim_id, ledger_id, bank_id, status, claim_json, summary_json, last_seq, \
                   submitted_seq) values ($1, $2, $3, $4, $5, $6, $7, $7)";
        on_tx!(self, c => sqlx::query(sql)
            .bind(&claim.claim_id).bind(&claim.ledger_id).bind(&claim.bank_id)
            .bind(claim.status.as_str()).bind(json).bind(summary).bind(seq)
            .execute(c).await.map(|_| ())?);
        let sql = "insert into subsidy_claim_period (loan_id, due_date, claim_id, ledger_id) \
                   values ($1, $2, $3, $4)";
        for line in claim.lines.iter().filter(|l| l.holds_period()) {
            let due_date = format_date(line.claimed.due_date);
            on_tx!(self, c => sqlx::query(sql)
                .bind(&line.claimed.loan_id).bind(due_date).bind(&claim.claim_id).bind(&claim.ledger_id)
                .execute(c).await.map(|_| ())?);
        }
        Ok(())
    }

    /// A ledger's risk fund as it stands (`None`: none opened).
    pub async fn risk_fund(&mut self, ledger_id: &str) -> Result<Option<Fund>, StoreError> {
        let sql = FUND_JSON_SQL;
        let json: Option<String> =
            on_tx!(self, c => sqlx::query_scalar(sql).bind(ledger_id).fetch_optional(c).await?);
        json.map(|json| fund_from_json(ledger_id, &json)).transpose()
    }

    /// A loan's compensation by the risk fund (`None`: not compensated).
    pub async fn compensation(
        &mut self,
        loan_id: &str,
    ) -> Result<Option<Compensation>, StoreError> {
        let sql = COMPENSATION_JSON_SQL;
        let json: Option<String> =
            on_tx!(self, c => sqlx::query_scalar(sql).bind(loan_id).fetch_optional(c).await?);
        json.map(|json| compensation_from_json(loan_id, &json)).transpose()
    }

    /// A ledger's fund after an event (`opened`: its first row), and the compensation the
    /// event made or changed.
    pub async fn put_fund(
        &mut self,
        fund: &Fund,
        opened: bool,
        compensation: Option<&Compensation>,
        seq: i64,
    ) -> Result<(), StoreError> {
        let json = fund_text(fund)?;
        let sql = if opened {
            "insert into risk_fund (fund_json, balance_fen, last_seq, ledger_id) values ($1, $2, $3, $4)"
        } else {
            "update risk_fund set fund_json = $1, balance_fen = $2, last_seq = $3 where ledger_id = $4"
        };
        on_tx!(self, c => sqlx::query(sql)
            .bind(json).bind(fund.balance_fen.0).bind(seq).bind(&fund.ledger_id)
            .execute(c).await.map(|_| ())?);
        if let Some(comp) = compensation {
            let json = fund_text(comp)?;
            // A compensation's first event inserts its row, a return updates it.
            let sql = "insert into risk_compensation \
                       (loan_id, ledger_id, bank_id, compensation_json, last_seq) values ($1, $2, $3, $4, $5) \
                       on conflict (loan_id) do update set compensation_json = excluded.compensation_json, \
                       last_seq = excluded.last_seq";
            on_tx!(self, c => sqlx::query(sql)
                .bind(&comp.loan_id).bind(&comp.ledger_id).bind(&comp.bank_id).bind(json).bind(seq)
                .execute(c).await.map(|_| ())?);
        }
        Ok(())
    }

    /// A pool as it stands (`None`: there is none of that id).
    pub async fn pool(&mut self, pool_id: &str) -> Result<Option<Pool>, StoreError> {
        let sql = POOL_JSON_SQL;
        let json: Option<String> =
            on_tx!(self, c => sqlx::query_scalar(sql).bind(pool_id).fetch_optional(c).await?);
        json.map(|json| pool_from_json(pool_id, &json)).transpose()
    }

    /// The seq of a pool's last entry (`None`: no such pool).
    pub async fn pool_last_seq(&mut self, pool_id: &str) -> Result<Option<u64>, StoreError> {
        let sql = "select last_seq from pool where pool_id = $1";
        let seq: Option<i64> =
            on_tx!(self, c => sqlx::query_scalar(sql).bind(pool_id).fetch_optional(c).await?);
        Ok(seq.map(|seq| u64::try_from(seq).unwrap_or(0)))
    }

    /// The pools these loans are members of, as (loan id, pool id): those in none left out.
    pub async fn pools_of_loans(
        &mut self,
        loan_ids: &[&str],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut found = Vec::new();
        for chunk in loan_ids.chunks(chunk_rows(1)) {
            let rows: Vec<(String, String)> = on_tx_built!(self, q, c => {
                q.push("select loan_id, pool_id from pool_member where loan_id in (");
                push_list(&mut q, chunk);
                q.push(")");
                q.build_query_as().fetch_all(c).await?
            });
            found.extend(rows);
        }
        Ok(found)
    }

    /// A pool after an event (`created`: its agreement, which also records its members).
    pub async fn put_pool(
        &mut self,
        pool: &Pool,
        created: bool,
        seq: i64,
    ) -> Result<(), StoreError> {
        let json = fund_text(pool)?;
        let t = &pool.terms;
        let status = pool.status.as_str();
        if created {
            let sql = "insert into pool (pool_id, ledger_id, bank_id, status, pool_json, last_seq) \
                       values ($1, $2, $3, $4, $5, $6)";
            on_tx!(self, c => sqlx::query(sql)
                .bind(&t.pool_id).bind(&t.ledger_id).bind(&t.bank_id).bind(status).bind(json).bind(seq)
                .execute(c).await.map(|_| ())?);
            // Up to a thousand members: a statement a chunk, not one a member.
            for chunk in pool.members.chunks(chunk_rows(3)) {
                on_tx_built!(self, q, c => {
                    q.push("insert into pool_member (loan_id, pool_id, ledger_id) ");
                    q.push_values(chunk, |mut row, m| {
                        row.push_bind(&m.loan_id).push_bind(&t.pool_id).push_bind(&t.ledger_id);
                    });
                    q.build().execute(c).await?;
                });
            }
        } else {
            let sql =
                "update pool set status = $1, pool_json = $2, last_seq = $3 where pool_id = $4";
            on_tx!(self, c => sqlx::query(sql)
                .bind(status).bind(json).bind(seq).bind(&t.pool_id)
                .execute(c).await.map(|_| ())?);
        }
        Ok(())
    }

    /// The live programme loans of a ledger as stored (contracted, active or overdue), for its
    /// risk fund's lending limits: read once a write that contracts in a ledger with a fund.
    pub async fn live_loans_of_ledger(
        &mut self,
        ledger_id: &str,
    ) -> Result<Vec<LoanState>, StoreError> {
        let sql = LIVE_LOANS_OF_LEDGER_SQL;
        let rows: Vec<LoanRow> =
            on_tx!(self, c => sqlx::query_as(sql).bind(ledger_id).fetch_all(c).await?);
        rows.into_iter().map(LoanRow::into_state).collect()
    }

    pub async fn lpr_exists(&mut self, entry: &LprEntry) -> Result<Option<String>, StoreError> {
        let sql = "select rate from lpr where effective_date = $1 and tenor = $2";
        Ok(on_tx!(self, c => sqlx::query_scalar(sql)
            .bind(format_date(entry.effective_from)).bind(entry.bucket.as_str())
            .fetch_optional(c).await?))
    }

    pub async fn insert_lpr(&mut self, entry: &LprEntry) -> Result<(), StoreError> {
        let sql = "insert into lpr (effective_date, tenor, rate) values ($1, $2, $3)";
        on_tx!(self, c => sqlx::query(sql)
            .bind(format_date(entry.effective_from)).bind(entry.bucket.as_str()).bind(entry.rate.to_string())
            .execute(c).await.map(|_| ())?);
        Ok(())
    }

    /// Records an idempotency entry for a write that has no journal transaction (settlement
    /// runs and their summaries), under no ledger and seq 0.
    pub async fn insert_idempotency(
        &mut self,
        scope: &str,
        request_id: &str,
        fingerprint: &str,
        result_json: &str,
    ) -> Result<(), StoreError> {
        let sql = "insert into idempotency (scope, request_id, fingerprint, result_json, ledger_id, seq) \
                   values ($1, $2, $3, $4, '', 0)";
        on_tx!(self, c => sqlx::query(sql).bind(scope).bind(request_id).bind(fingerprint).bind(result_json).execute(c).await.map(|_| ())?);
        Ok(())
    }
}

/// `select` of these loans (`lock`: PostgreSQL's `for update`, in loan_id order, so that two
/// writers, which the single writer does not expect, cannot deadlock on the same loans).
fn push_loans<DB: sqlx::Database>(q: &mut QueryBuilder<DB>, loan_ids: &[&str], lock: bool)
where
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push(concat!("select ", loan_columns!(), " from loan where loan_id in ("));
    push_list(q, loan_ids);
    q.push(if lock { ") order by loan_id for update" } else { ")" });
}

/// `values` bound one after the other, separated by commas (the inside of an `in (...)`).
pub(super) fn push_list<DB: sqlx::Database>(q: &mut QueryBuilder<DB>, values: &[&str])
where
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut list = q.separated(", ");
    for value in values {
        list.push_bind(*value);
    }
}

/// `select` of the stored answers of these (scope, request id) keys.
fn push_key_lookup<DB: sqlx::Database>(q: &mut QueryBuilder<DB>, keys: &[(String, String)])
where
    for<'a> &'a String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push(
        "select scope, request_id, fingerprint, result_json from idempotency \
         where (scope, request_id) in (values ",
    );
    let mut list = q.separated(", ");
    for (scope, request_id) in keys {
        list.push("(");
        list.push_bind_unseparated(scope);
        list.push_unseparated(", ");
        list.push_bind_unseparated(request_id);
        list.push_unseparated(")");
    }
    q.push(")");
}

/// Adds a transaction's postings to the group's balance deltas; a sum past 64-bit fen (only
/// contracts far over any cap, as old policies allowed, can reach one) is an error naming the
/// account (the command fails `INTERNAL`: no input the service now accepts can reach it), the
/// deltas left as they were.
pub fn add_deltas(
    deltas: &mut HashMap<(String, String), i64>,
    ledger_id: &str,
    postings: &[Posting],
) -> Result<(), StoreError> {
    for (i, p) in postings.iter().enumerate() {
        let delta = deltas.entry((ledger_id.to_string(), p.account.clone())).or_insert(0);
        match delta.checked_add(p.amount.0) {
            Some(sum) => *delta = sum,
            None => {
                // The postings added before this one taken off again (each sum was in range).
                for q in &postings[..i] {
                    *deltas.entry((ledger_id.to_string(), q.account.clone())).or_insert(0) -=
                        q.amount.0;
                }
                return Err(StoreError::Corrupt(format!(
                    "the group's postings to {} pass 64-bit fen",
                    p.account
                )));
            }
        }
    }
    Ok(())
}

/// The balance a group leaves on an account, for checks that must see the group's own changes.
pub fn delta_of(deltas: &HashMap<(String, String), i64>, ledger_id: &str, account: &str) -> Fen {
    Fen(deltas.get(&(ledger_id.to_string(), account.to_string())).copied().unwrap_or(0))
}

/// A group's households and status entries on PostgreSQL: one statement, each column bound
/// as one array and expanded by `unnest`, sent only for a group that registers households or
/// records statuses (which has begun its transaction: it read its households first), before
/// [`flush_unnest`]'s, whose new loans may name them.
async fn flush_households(c: &mut PgConnection, staged: &Staged) -> Result<(), StoreError> {
    let h = &staged.households;
    let s = staged.status_rows();
    sqlx::query(concat!(
        "with h as (insert into household (",
        household_columns!(),
        ") select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::text[])) insert into household_status (",
        status_columns!(),
        ") select * from unnest($7::text[], $8::int8[], $9::text[], $10::text[], $11::text[])"
    ))
    .bind(h.iter().map(|h| h.household_id.as_str()).collect::<Vec<_>>())
    .bind(h.iter().map(|h| h.ledger_id.as_str()).collect::<Vec<_>>())
    .bind(h.iter().map(|h| h.head_name.as_str()).collect::<Vec<_>>())
    .bind(h.iter().map(|h| h.head_id_number.as_str()).collect::<Vec<_>>())
    .bind(h.iter().map(|h| h.township.as_str()).collect::<Vec<_>>())
    .bind(h.iter().map(|h| h.village.as_str()).collect::<Vec<_>>())
    .bind(s.iter().map(|s| s.0).collect::<Vec<_>>())
    .bind(s.iter().map(|s| s.1).collect::<Vec<_>>())
    .bind(s.iter().map(|s| s.2.as_str()).collect::<Vec<_>>())
    .bind(s.iter().map(|s| s.3).collect::<Vec<_>>())
    .bind(s.iter().map(|s| s.4).collect::<Vec<_>>())
    .execute(c)
    .await?;
    Ok(())
}

/// PostgreSQL: every row of the group in one statement (but its households and status entries,
/// [`flush_households`], written first when it has any), a data-modifying `WITH` part per table,
/// each column bound as one array and expanded by `unnest` (a fixed statement text whatever the
/// group size, so it is prepared once; `unnest` measured 2.8x faster than multi-row `VALUES` in
/// ../shared/STACK.md). One round trip instead of one per table; a table with no rows gets empty
/// arrays. Its parts run against one snapshot, which suits them: each table is written once,
/// new loans are inserted and existing ones updated (never both for one loan), and foreign keys
/// are checked at the end of the statement. The statement requires of itself that every
/// changed loan had a stored row to update (`loanledger_require`, migration 0004): otherwise it
/// fails as a whole ([`StoreError::Corrupt`], naming every such loan), as SQLite's commit does
/// (which names the first).
async fn flush_unnest(c: &mut PgConnection, staged: &Staged) -> Result<(), StoreError> {
    let t = &staged.txns;
    let links = staged.link_rows();
    let idem = staged.idempotency_rows();
    let (new, changed) = staged.loan_rows();
    let deltas = staged.delta_rows();
    sqlx::query(concat!(
        "with j as (insert into journal_txn (",
        journal_columns!(),
        ") select * from unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])), \
         l as (insert into journal_loan (loan_id, ledger_id, seq) \
         select * from unnest($12::text[], $13::text[], $14::int8[])), \
         i as (insert into idempotency \
         (scope, request_id, fingerprint, result_json, ledger_id, seq) \
         select * from unnest($15::text[], $16::text[], $17::text[], $18::text[], $19::text[], \
         $20::int8[])), \
         n as (insert into loan (",
        loan_columns!(),
        ") select * from unnest(\
         $21::text[], $22::text[], $23::text[], $24::text[], $25::text[], $26::text[], \
         $27::text[], $28::int8[], $29::text[], $30::text[], $31::int4[], $32::text[], \
         $33::text[], $34::text[], $35::text[], $36::bool[], $37::bool[], $38::text[], \
         $39::int8[], $40::int8[], $41::int8[], $42::int8[], $43::text[], $44::text[], \
         $45::text[], $46::text[], $47::text[], $48::int8[])), \
         u as (update loan set status = v.status, disbursed_fen = v.disbursed_fen, \
         principal_outstanding_fen = v.principal_outstanding_fen, \
         principal_repaid_fen = v.principal_repaid_fen, \
         interest_paid_fen = v.interest_paid_fen, disbursed_on = v.disbursed_on, \
         last_value_date = v.last_value_date, servicing_json = v.servicing_json, \
         last_seq = v.last_seq \
         from unnest($49::text[], $50::text[], $51::int8[], $52::int8[], $53::int8[], \
         $54::int8[], $55::text[], $56::text[], $57::text[], $58::int8[]) \
         as v(loan_id, status, disbursed_fen, principal_outstanding_fen, \
         principal_repaid_fen, interest_paid_fen, disbursed_on, last_value_date, \
         servicing_json, last_seq) \
         where loan.loan_id = v.loan_id returning loan.loan_id), \
         b as (insert into account_balance (ledger_id, account, balance_fen) \
         select * from unnest($59::text[], $60::text[], $61::int8[]) \
         on conflict (ledger_id, account) do update \
         set balance_fen = account_balance.balance_fen + excluded.balance_fen) \
         select case when (select count(*) from u) = cardinality($49::text[]) then true \
         else loanledger_require(false, coalesce('loan ' || (select string_agg(m, ', ' \
         order by m) from unnest($49::text[]) m where m not in (select loan_id from u)) \
         || ': no stored row to update', 'a loan updated twice in one group')) end"
    ))
    .bind(t.iter().map(|t| t.row.ledger_id.as_str()).collect::<Vec<_>>())
    .bind(t.iter().map(|t| t.row.seq).collect::<Vec<_>>())
    .bind(t.iter().map(|t| t.row.kind.as_str()).collect::<Vec<_>>())
    .bind(t.iter().map(|t| t.row.value_date.as_str()).collect::<Vec<_>>())
    .bind(t.iter().map(|t| t.row.recorded_at_us).collect::<Vec<_>>())
    .bind(t.iter().map(|t| t.row.actor.as_str()).collect::<Vec<_>>())
    .bind(t.iter().map(|t| t.row.request_id.as_str()).collect::<Vec<_>>())
    .bind(t.iter().map(|t| t.row.command_json.as_str()).collect::<Vec<_>>())
    .bind(t.iter().map(|t| t.row.prev_hash.as_str()).collect::<Vec<_>>())
    .bind(t.iter().map(|t| t.row.hash.as_str()).collect::<Vec<_>>())
    .bind(t.iter().map(|t| t.row.postings.as_str()).collect::<Vec<_>>())
    .bind(links.iter().map(|l| l.0).collect::<Vec<_>>())
    .bind(links.iter().map(|l| l.1).collect::<Vec<_>>())
    .bind(links.iter().map(|l| l.2).collect::<Vec<_>>())
    .bind(idem.iter().map(|i| i.0).collect::<Vec<_>>())
    .bind(idem.iter().map(|i| i.1).collect::<Vec<_>>())
    .bind(idem.iter().map(|i| i.2).collect::<Vec<_>>())
    .bind(idem.iter().map(|i| i.3).collect::<Vec<_>>())
    .bind(idem.iter().map(|i| i.4).collect::<Vec<_>>())
    .bind(idem.iter().map(|i| i.5).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.loan_id.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.ledger_id.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.bank_id.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.contract_number.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.household_id.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.borrower_name.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.borrower_id_number.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.principal_fen).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.annual_rate.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.contract_date.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.term_months).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.maturity_date.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.repayment_method.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.settlement_frequency.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.purpose.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.collateral_free).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.guarantee_free).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.disbursed_fen).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.principal_outstanding_fen).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.principal_repaid_fen).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.interest_paid_fen).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.disbursed_on.as_deref()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.last_value_date.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.renews_loan_id.as_deref()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.policy_json.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.servicing_json.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.last_seq).collect::<Vec<_>>())
    .bind(changed.iter().map(|r| r.loan_id.as_str()).collect::<Vec<_>>())
    .bind(changed.iter().map(|r| r.status).collect::<Vec<_>>())
    .bind(changed.iter().map(|r| r.disbursed_fen).collect::<Vec<_>>())
    .bind(changed.iter().map(|r| r.principal_outstanding_fen).collect::<Vec<_>>())
    .bind(changed.iter().map(|r| r.principal_repaid_fen).collect::<Vec<_>>())
    .bind(changed.iter().map(|r| r.interest_paid_fen).collect::<Vec<_>>())
    .bind(changed.iter().map(|r| r.disbursed_on.as_deref()).collect::<Vec<_>>())
    .bind(changed.iter().map(|r| r.last_value_date.as_str()).collect::<Vec<_>>())
    .bind(changed.iter().map(|r| r.servicing_json.as_str()).collect::<Vec<_>>())
    .bind(changed.iter().map(|r| r.last_seq).collect::<Vec<_>>())
    .bind(deltas.iter().map(|d| d.0).collect::<Vec<_>>())
    .bind(deltas.iter().map(|d| d.1).collect::<Vec<_>>())
    .bind(deltas.iter().map(|d| d.2).collect::<Vec<_>>())
    .execute(c)
    .await?;
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::fresh_sqlite;
    use super::*;
    use crate::ledger::posting::{pack, unpack};

    /// A transaction's postings whose sum on an account would pass 64-bit fen are refused
    /// naming the account, and the deltas are left as they were; the others add up.
    #[test]
    fn deltas_past_64_bits_are_refused_whole() {
        let posting =
            |account: &str, fen: i64| Posting { account: account.into(), amount: Fen(fen) };
        let mut deltas = HashMap::default();
        add_deltas(&mut deltas, "L", &[posting("a", 5), posting("b", -5)]).unwrap();
        add_deltas(&mut deltas, "L", &[posting("a", i64::MAX - 5), posting("b", 5 - i64::MAX)])
            .unwrap();
        let before = deltas.clone();
        let e = add_deltas(&mut deltas, "L", &[posting("b", -1), posting("a", 1)]).unwrap_err();
        assert_eq!(e.to_string(), "stored data corrupt: the group's postings to a pass 64-bit fen");
        assert_eq!(deltas, before);
        assert_eq!(delta_of(&deltas, "L", "a"), Fen(i64::MAX));
    }

    /// A group of one journal transaction (a balanced pair of postings) with its request id.
    pub(in crate::store) fn txn(seq: i64, request_id: &str) -> StagedTxn {
        StagedTxn {
            row: JournalRow {
                ledger_id: "L".into(),
                seq,
                kind: "test".into(),
                value_date: "2021-02-01".into(),
                recorded_at_us: 0,
                actor: "bank:B".into(),
                request_id: request_id.into(),
                command_json: "{}".into(),
                prev_hash: String::new(),
                hash: format!("h{seq}"),
                postings: pack(&legs()),
            },
            loan_ids: vec!["LN".into()],
            idempotency: StoredAnswer { fingerprint: "f".into(), result_json: "{}".into() },
        }
    }

    /// The postings of every [`txn`].
    fn legs() -> [Posting; 2] {
        [
            Posting { account: "cash".into(), amount: Fen(100) },
            Posting { account: "loan".into(), amount: Fen(-100) },
        ]
    }

    pub(in crate::store) fn group(txns: Vec<StagedTxn>) -> Staged {
        let mut staged = Staged::default();
        for t in &txns {
            add_deltas(&mut staged.balance_deltas, "L", &unpack(&t.row.postings).unwrap()).unwrap();
        }
        staged.txns = txns;
        staged
    }

    /// A group whose last row repeats a stored request id: SQLite rolls it back whole at that
    /// statement (`OR ROLLBACK`), the rows of the statements before it are gone too, the
    /// caller's own `ROLLBACK` finds no transaction and is content with that (the connection
    /// is not left to be rolled back again), and the next group commits.
    #[tokio::test]
    async fn a_group_refused_by_a_stored_request_id_leaves_nothing() {
        let (_dir, db) = fresh_sqlite().await;
        db.migrate().await.unwrap();
        db.begin_write().await.unwrap().commit_with(&group(vec![txn(1, "r1")])).await.unwrap();

        let refused = db
            .begin_write()
            .await
            .unwrap()
            .commit_with(&group(vec![txn(2, "r2"), txn(3, "r1")]))
            .await;
        assert!(matches!(refused, Err(StoreError::RequestSeen(_))), "{refused:?}");
        let Db::Sqlite(pool, write, ..) = &db else { unreachable!() };
        assert!(!write.lock().await.unsure, "the connection was left to be rolled back");
        // (Not the LPR table's chain's start, written at migration.)
        let counts = "select (select count(*) from journal_txn where ledger_id <> 'lpr'), \
                      (select count(*) from posting), (select count(*) from journal_loan), \
                      (select count(*) from idempotency where ledger_id <> 'lpr'), \
                      (select balance_fen from account_balance where account = 'cash')";
        let after: (i64, i64, i64, i64, i64) =
            sqlx::query_as(counts).fetch_one(pool).await.unwrap();
        assert_eq!(after, (1, 2, 1, 1, 100));

        db.begin_write().await.unwrap().commit_with(&group(vec![txn(2, "r2")])).await.unwrap();
        let after: (i64, i64, i64, i64, i64) =
            sqlx::query_as(counts).fetch_one(pool).await.unwrap();
        assert_eq!(after, (2, 4, 2, 2, 200));
        db.close().await;
    }

    /// PostgreSQL's one-statement group refuses, as SQLite's commit does, to change a loan
    /// with no stored row (a fault: the writer changes only loans it has read): the statement
    /// fails as a whole, names the missing loans, and leaves nothing, not even the update of
    /// the loan that has a row; the next group commits.
    #[tokio::test]
    async fn postgres_a_changed_loan_without_its_row_fails_the_group_and_leaves_nothing() {
        let Some(scratch) = super::super::fresh_postgres().await else { return };
        let db = &scratch.db;
        db.migrate().await.unwrap();
        for sql in [
            "insert into ledger (ledger_id, name) values ('L', 'l')",
            "insert into bank (bank_id, ledger_id, name) values ('B', 'L', 'b')",
            "insert into household (household_id, ledger_id, head_name, head_id_number, \
             township, village) values ('H', 'L', 'h', '11010519491231002X', '', '')",
        ] {
            db.execute_raw(sql).await.unwrap();
        }
        let template = crate::bench::load::loans_template();
        let loan = |id: &str| {
            let mut state = template.clone();
            let terms = std::sync::Arc::make_mut(&mut state.terms);
            (terms.loan_id, terms.ledger_id, terms.bank_id) = (id.into(), "L".into(), "B".into());
            terms.household_id = "H".into();
            state
        };
        let mut first = group(vec![txn(1, "r1")]);
        first.loans.insert("LA".into(), loan("LA"));
        first.new_loans.insert("LA".into());
        db.begin_write().await.unwrap().commit_with(&first).await.unwrap();

        let mut staged = group(vec![txn(2, "r2")]);
        let mut changed = loan("LA");
        changed.principal_outstanding_fen = Fen(1);
        staged.loans.insert("LA".into(), changed);
        staged.loans.insert("LN".into(), loan("LN"));
        staged.loans.insert("LM".into(), loan("LM"));
        let refused = db.begin_write().await.unwrap().commit_with(&staged).await;
        assert!(
            matches!(&refused, Err(StoreError::Corrupt(m)) if m == "loan LM, LN: no stored row to update"),
            "{refused:?}"
        );
        let Db::Postgres(pool, _) = db else { unreachable!() };
        let counts = "select (select count(*) from journal_txn where ledger_id <> 'lpr'), \
                      (select count(*) from idempotency where ledger_id <> 'lpr'), \
                      (select balance_fen from account_balance where account = 'cash'), \
                      (select principal_outstanding_fen from loan where loan_id = 'LA')";
        let after: (i64, i64, i64, i64) = sqlx::query_as(counts).fetch_one(pool).await.unwrap();
        assert_eq!(after, (1, 1, 100, 5_000_000));
        // The same in a transaction the group began (a registry row written first): the whole
        // transaction is rolled back, the registry row with it.
        let mut tx = db.begin_write().await.unwrap();
        tx.insert_ledger("L2", "l2").await.unwrap();
        let refused = tx.commit_with(&staged).await;
        assert!(
            matches!(&refused, Err(StoreError::Corrupt(m)) if m == "loan LM, LN: no stored row to update"),
            "{refused:?}"
        );
        let ledgers: (i64,) = sqlx::query_as("select count(*) from ledger where ledger_id = 'L2'")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(ledgers, (0,));
        let after: (i64, i64, i64, i64) = sqlx::query_as(counts).fetch_one(pool).await.unwrap();
        assert_eq!(after, (1, 1, 100, 5_000_000));
        db.begin_write().await.unwrap().commit_with(&group(vec![txn(2, "r2")])).await.unwrap();
        let after: (i64, i64, i64, i64) = sqlx::query_as(counts).fetch_one(pool).await.unwrap();
        assert_eq!(after, (2, 2, 200, 5_000_000));
        db.close().await;
    }

    /// Every column the journal had before SQLite's 0004 and PostgreSQL's 0007.
    type OldJournalRow = (String, i64, String, String, i64, String, String, String, String, String);

    /// The journal (its columns before 0004) and the idempotency records, which SQLite's
    /// migrations 0003 and 0004 rebuild (0003 both, 0004 the journal), in key order.
    async fn journal_and_keys(db: &Db) -> (Vec<OldJournalRow>, Vec<(String, String, String, i64)>) {
        // (Not the LPR table's chain, which the migration starts.)
        let journal = "select ledger_id, seq, kind, value_date, recorded_at_us, actor, \
                       request_id, command_json, prev_hash, hash from journal_txn \
                       where ledger_id <> 'lpr' order by ledger_id, seq";
        let keys = "select scope, request_id, result_json, seq from idempotency \
                    where ledger_id <> 'lpr' order by scope, request_id";
        let journal = crate::on_pool!(db, p => sqlx::query_as(journal).fetch_all(p).await.unwrap());
        let keys = crate::on_pool!(db, p => sqlx::query_as(keys).fetch_all(p).await.unwrap());
        (journal, keys)
    }

    /// [`txn`]'s rows in ledger `ledger` as the schema before the postings moved into the
    /// journal row held them (SQLite 0001–0003, PostgreSQL 0001–0006): a journal row, a posting
    /// row a leg of `legs` (inserted last leg first), the idempotency row.
    fn old_rows_sql(ledger: &str, seq: i64, request_id: &str, legs: &[Posting]) -> String {
        let t = txn(seq, request_id);
        let r = &t.row;
        let legs: Vec<String> = legs
            .iter()
            .enumerate()
            .rev()
            .map(|(i, p)| format!("('{ledger}', {seq}, {i}, '{}', {})", p.account, p.amount.0))
            .collect();
        let postings = if legs.is_empty() {
            String::new()
        } else {
            format!(
                "insert into posting (ledger_id, seq, idx, account, amount_fen) values {};",
                legs.join(", ")
            )
        };
        format!(
            "insert into journal_txn (ledger_id, seq, kind, value_date, recorded_at_us, actor, \
             request_id, command_json, prev_hash, hash) values ('{ledger}', {seq}, '{}', '{}', \
             {seq}0, '{}', '{request_id}', '{}', 'p{seq}', '{}'); {postings} \
             insert into idempotency (scope, request_id, fingerprint, result_json, ledger_id, \
             seq) values ('{}', '{request_id}', 'f', '{{}}', '{ledger}', {seq});",
            r.kind, r.value_date, r.actor, r.command_json, r.hash, r.actor
        )
    }

    /// The migrations of `db`'s backend up to and including version `version`.
    async fn migrate_to(db: &Db, version: i64) {
        match db {
            Db::Sqlite(pool, ..) => {
                crate::store::SQLITE_MIGRATOR.run_to(version, pool).await.unwrap()
            }
            Db::Postgres(pool, _) => {
                crate::store::POSTGRES_MIGRATOR.run_to(version, pool).await.unwrap()
            }
        }
    }

    /// The migrations from `before` on, over a database whose journal was written by the
    /// schema before it: every journal row and request id kept, each row's postings moved into
    /// it as `pack` writes them (0004 on SQLite, 0007 on PostgreSQL, the view `posting` showing
    /// them row by row), the journal still append-only, a stored request id still refused and a
    /// new group written.
    async fn migrations_keep_the_journal_and_its_request_ids(db: &Db, before: i64) {
        migrate_to(db, before).await;
        // Three legs in ledger L (inserted in reverse), a memo (no postings), and another
        // ledger whose seqs are L's with legs of its own.
        let three = [
            Posting { account: "cash".into(), amount: Fen(100) },
            Posting { account: "loan".into(), amount: Fen(-70) },
            Posting { account: "interest".into(), amount: Fen(-30) },
        ];
        let old = [
            old_rows_sql("L", 1, "r1", &legs()),
            old_rows_sql("L", 2, "r2", &[]),
            old_rows_sql("L", 3, "r0", &three),
            old_rows_sql("M", 1, "m1", &three[..2]),
        ];
        db.execute_raw(&old.concat()).await.unwrap();
        // An LPR entry an earlier build's SetLpr wrote and answered, outside any chain, and two
        // rows inserted by hand.
        let answer = crate::app::command::Outcome::Lpr {
            effective_from: crate::domain::date::parse_date("2025-06-20").unwrap(),
            tenor: crate::domain::lpr::TenorBucket::UpToOneYear,
            rate: crate::domain::rate::AnnualRate::parse("0.029").unwrap(),
            entry: None,
        };
        let answer = serde_json::to_string(&answer).unwrap();
        assert!(!answer.contains("entry"), "as an earlier build stored it: {answer}");
        let set_before = format!(
            "insert into lpr (effective_date, tenor, rate) values ('2025-06-20', '1y', '0.029'), \
             ('2025-07-21', '5y', '0.02'), ('2025-08-20', '1y', 'abc'); insert into idempotency (scope, request_id, \
             fingerprint, result_json, ledger_id, seq) values ('operator:*', 'lpr-old', 'f', \
             '{answer}', '', 0)"
        );
        db.execute_raw(&set_before).await.unwrap();
        let kept = journal_and_keys(db).await;
        assert_eq!(kept.0.len(), 4);

        db.migrate().await.unwrap();
        assert_eq!(journal_and_keys(db).await, kept);
        // The migration started the LPR table's chain beside them, with the table as it stood:
        // the seeded entries and the one set before, by date then tenor.
        let started = "select kind, command_json from journal_txn where ledger_id = 'lpr'";
        let started: Vec<(String, String)> =
            crate::on_pool!(db, p => sqlx::query_as(started).fetch_all(p).await.unwrap());
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].0, "lpr.chain_started");
        let Ok(crate::domain::event::JournalEvent::LprChainStarted { entries }) =
            crate::domain::event::JournalEvent::from_parts(&started[0].0, &started[0].1)
        else {
            panic!("the chain's start reads back: {started:?}");
        };
        let rows: Vec<String> = entries
            .iter()
            .map(|e| format!("{} {} {}", format_date(e.effective_from), e.bucket.as_str(), e.rate))
            .collect();
        let mut expected: Vec<String> =
            crate::domain::lpr::SEEDED.iter().map(|(d, t, r)| format!("{d} {t} {r}")).collect();
        expected.push("2025-06-20 1y 0.029".into());
        expected.sort();
        assert_eq!(rows, expected);
        // The rows inserted by hand were left out (one not even an entry), and the migration
        // went through: verify reports them, and only them.
        let report = crate::app::verify::verify_ledger(db, "lpr").await.unwrap();
        assert_eq!(report.head_seq, 1);
        assert_eq!(
            report.problems,
            [
                "LPR entry 2025-07-21 5y (rate 0.02) is not in the journal",
                "LPR entry 2025-08-20 1y (rate abc) is not in the journal"
            ],
            "{report:?}"
        );
        // Migrated again, the chain is not started again.
        db.migrate().await.unwrap();
        let again = crate::app::verify::verify_ledger(db, "lpr").await.unwrap();
        assert_eq!(again, report);
        let packed = "select postings from journal_txn where ledger_id <> 'lpr' \
                      order by ledger_id, seq";
        let packed: Vec<String> =
            crate::on_pool!(db, p => sqlx::query_scalar(packed).fetch_all(p).await.unwrap());
        let expected = [&legs()[..], &[], &three, &three[..2]];
        for (text, legs) in packed.iter().zip(expected) {
            assert_eq!(unpack(text).unwrap(), legs, "{text}");
        }
        if let Db::Sqlite(..) = db {
            assert_eq!(packed[2], pack(&three), "SQLite's json_array writes as `pack` does");
        }
        let view = "select ledger_id, seq, idx, account, amount_fen from posting \
                    order by ledger_id, seq, idx";
        let view: Vec<(String, i64, i32, String, i64)> =
            crate::on_pool!(db, p => sqlx::query_as(view).fetch_all(p).await.unwrap());
        assert_eq!(view.len(), 7);
        assert_eq!(view[2], ("L".to_string(), 3, 0, "cash".to_string(), 100));
        assert_eq!(view[4], ("L".to_string(), 3, 2, "interest".to_string(), -30));
        assert_eq!(view[6], ("M".to_string(), 1, 1, "loan".to_string(), -70));
        for change in [
            "update journal_txn set kind = 'x'",
            "delete from journal_txn",
            "delete from idempotency",
        ] {
            let refused = db.execute_raw(change).await.unwrap_err();
            assert!(refused.to_string().contains("append-only"), "{change}: {refused}");
        }
        let refused = db.begin_write().await.unwrap().commit_with(&group(vec![txn(4, "r2")])).await;
        assert!(matches!(refused, Err(StoreError::RequestSeen(_))), "{refused:?}");
        // A new transaction whose accounts need escaping in JSON: the view reads them as
        // `unpack` does.
        let mut odd = txn(4, "r4");
        let odd_legs = [
            Posting { account: "a \"quoted\" \\ 账户".into(), amount: Fen(5) },
            Posting { account: "tab\there".into(), amount: Fen(-5) },
        ];
        odd.row.postings = pack(&odd_legs);
        let mut staged = group(vec![odd]);
        staged.balance_deltas.clear();
        db.begin_write().await.unwrap().commit_with(&staged).await.unwrap();
        assert_eq!(journal_and_keys(db).await.0.len(), 5);
        let view = "select account, amount_fen from posting where ledger_id = 'L' and seq = 4 \
                    order by idx";
        let view: Vec<(String, i64)> =
            crate::on_pool!(db, p => sqlx::query_as(view).fetch_all(p).await.unwrap());
        let read: Vec<(String, i64)> =
            odd_legs.iter().map(|p| (p.account.clone(), p.amount.0)).collect();
        assert_eq!(view, read);
    }

    /// A posting row of no journal transaction (verify reported these before the postings
    /// moved into the journal rows) stops the migration: dropping it would remove the evidence.
    async fn migrations_refuse_stray_posting_rows(db: &Db, before: i64) {
        migrate_to(db, before).await;
        db.execute_raw(&old_rows_sql("L", 1, "r1", &legs())).await.unwrap();
        let stray = "insert into posting (ledger_id, seq, idx, account, amount_fen) \
                     values ('L', 7, 0, 'cash', 1)";
        db.execute_raw(stray).await.unwrap();
        let refused = db.migrate().await.expect_err("the migration stops");
        assert!(refused.to_string().contains("posting_rows_without_a_transaction"), "{refused}");
        // Nothing of it was applied: the posting rows are all there.
        let rows = "select count(*) from posting";
        let rows: i64 =
            crate::on_pool!(db, p => sqlx::query_scalar(rows).fetch_one(p).await.unwrap());
        assert_eq!(rows, 3);
    }

    /// SQLite's migrations 0003 and 0004 on a database written under 0001–0002: the journal and
    /// the idempotency records become rowid tables with every row, key, constraint and trigger
    /// kept, the postings in the journal rows.
    #[tokio::test]
    async fn sqlite_migrations_keep_the_journal_and_its_request_ids() {
        let (_dir, db) = fresh_sqlite().await;
        migrations_keep_the_journal_and_its_request_ids(&db, 2).await;
        let Db::Sqlite(pool, ..) = &db else { unreachable!() };
        let tables: Vec<(String,)> = sqlx::query_as(
            "select sql from sqlite_schema where name in ('journal_txn', 'idempotency')",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(tables.len(), 2);
        for (sql,) in &tables {
            assert!(!sql.to_lowercase().contains("without rowid"), "{sql}");
        }
        db.close().await;
    }

    /// PostgreSQL's migration 0007 on a database written under 0001–0006.
    #[tokio::test]
    async fn postgres_migrations_keep_the_journal_and_its_request_ids() {
        let Some(scratch) = super::super::fresh_postgres().await else { return };
        migrations_keep_the_journal_and_its_request_ids(&scratch.db, 6).await;
        scratch.db.close().await;
    }

    /// A database in which a region's ledger is called `lpr` (the LPR table's chain's name
    /// since 2026-12-04) is refused before any migration is recorded: the build that made it
    /// still serves it, and the new one's marker (0008, PostgreSQL 0011) is not applied.
    async fn a_ledger_called_lpr_is_refused_before_any_migration(db: &Db, before: i64) {
        migrate_to(db, before).await;
        let sql = "insert into ledger (ledger_id, name) values ('lpr', 'a county')";
        db.execute_raw(sql).await.unwrap();
        let refused = db.migrate().await;
        assert!(
            matches!(&refused, Err(StoreError::Corrupt(m)) if m.contains("reserves the name")),
            "{refused:?}"
        );
        let applied: Vec<i64> = crate::on_pool!(db, p => {
            sqlx::query_scalar(crate::store::APPLIED_MIGRATIONS_SQL).fetch_all(p).await.unwrap()
        });
        assert_eq!(applied.last(), Some(&before));
    }

    #[tokio::test]
    async fn sqlite_refuses_a_ledger_called_lpr_before_migrating() {
        let (_dir, db) = fresh_sqlite().await;
        a_ledger_called_lpr_is_refused_before_any_migration(&db, 7).await;
        db.close().await;
    }

    #[tokio::test]
    async fn postgres_refuses_a_ledger_called_lpr_before_migrating() {
        let Some(scratch) = super::super::fresh_postgres().await else { return };
        a_ledger_called_lpr_is_refused_before_any_migration(&scratch.db, 10).await;
        scratch.db.close().await;
    }

    #[tokio::test]
    async fn sqlite_migrations_refuse_stray_posting_rows() {
        let (_dir, db) = fresh_sqlite().await;
        migrations_refuse_stray_posting_rows(&db, 3).await;
        db.close().await;
    }

    #[tokio::test]
    async fn postgres_migrations_refuse_stray_posting_rows() {
        let Some(scratch) = super::super::fresh_postgres().await else { return };
        migrations_refuse_stray_posting_rows(&scratch.db, 6).await;
        scratch.db.close().await;
    }

    /// A group's transaction dropped while open (its future cancelled after `BEGIN IMMEDIATE`
    /// went out): the connection is marked, and the next group rolls the transaction back
    /// before it begins its own, so that it neither fails on a transaction within a
    /// transaction nor commits what the dropped group left.
    #[tokio::test]
    async fn a_transaction_dropped_open_is_rolled_back_before_the_next_group() {
        let (_dir, db) = fresh_sqlite().await;
        db.migrate().await.unwrap();
        let Db::Sqlite(pool, write, ..) = &db else { unreachable!() };
        let mut dropped = db.begin_write().await.unwrap();
        assert!(dropped.loans_many(&["LN".to_string()]).await.unwrap().is_empty());
        sqlx::query(
            "insert into ledger (ledger_id, name) values ('X', 'left by the dropped group')",
        )
        .execute(match &mut dropped {
            WriteTx::Sqlite(t) => t.conn().unwrap(),
            _ => unreachable!(),
        })
        .await
        .unwrap();
        drop(dropped);
        assert!(write.lock().await.unsure);

        db.begin_write().await.unwrap().commit_with(&group(vec![txn(1, "r1")])).await.unwrap();
        assert!(!write.lock().await.unsure);
        let (journal, ledgers): (i64, i64) = sqlx::query_as(
            "select (select count(*) from journal_txn where ledger_id <> 'lpr'), \
             (select count(*) from ledger)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!((journal, ledgers), (1, 0));
        db.close().await;
    }
}
