//! The read path: queries on the pool, never inside the writer's transaction.

use super::rows::*;
use super::{Db, StoreError};
use crate::collections::HashMap;
use crate::domain::event::JournalEvent;
use crate::domain::household::StatusEntry;
use crate::domain::loan::{LoanEvent, LoanState, LoanStatus};
use crate::domain::lpr::LprEntry;
use crate::domain::money::Fen;
use crate::domain::policy::PolicyVersion;
use crate::domain::pool::{Pool, PoolEvent};
use crate::domain::risk_fund::{Compensation, Fund};
use crate::domain::subsidy_claim::{Claim, ClaimSummary};
use crate::on_pool;
use sqlx::FromRow;
use sqlx::QueryBuilder;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// The number of operator tokens that can log in at the instant bound as `$at`: bound to `*`,
/// neither revoked nor expired (a subquery). One condition for `serve`'s warning and for the
/// refusal to revoke the last of them.
macro_rules! usable_operator_tokens {
    ($at:literal) => {
        concat!(
            "(select count(*) from api_token where role = 'operator' and org = '*' \
             and revoked_at_us is null and (expires_at_us is null or expires_at_us > ",
            $at,
            "))"
        )
    };
}

const JOURNAL_RANGE_SQL: &str = concat!(
    "select ",
    journal_columns!(),
    " from journal_txn where ledger_id = $1 and seq >= $2 and seq <= $3 order by seq limit $4"
);
/// A loan's journal rows with its owner (the columns [`owned_journal_row`] reads, then the loan
/// id), up to the condition on `o.loan_id`. SQLite takes a `cross join`'s tables in the order
/// written: the loan by its id, its links by their key's prefix, each transaction by its key.
/// Joined with `join ... on`, SQLite without statistics planned the ledger's whole journal
/// scanned for each loan (a quick bench's 300 histories read in one statement: 0.47 s; 0.025 s
/// so); PostgreSQL plans either form the same.
macro_rules! loan_history_select {
    () => {
        "select o.bank_id as owner_bank_id, o.ledger_id as owner_ledger_id, \
         j.ledger_id, j.seq, j.kind, j.value_date, j.recorded_at_us, j.actor, \
         j.request_id, j.command_json, j.prev_hash, j.hash, j.postings, o.loan_id as owner_loan_id \
         from loan o cross join journal_loan l cross join journal_txn j \
         where l.loan_id = o.loan_id and l.ledger_id = o.ledger_id \
         and j.ledger_id = l.ledger_id and j.seq = l.seq and "
    };
}
const LOAN_HISTORY_SQL: &str = concat!(loan_history_select!(), "o.loan_id = $1 order by j.seq");

/// A loan's journal rows, with the bank and ledger the loan belongs to, so that access can be
/// checked before the rows are decoded: a row that cannot be read (a column altered by hand to
/// another type) is an error for the loan's readers only; to anyone else the loan is missing.
#[derive(Debug)]
pub struct LoanHistory {
    pub bank_id: String,
    pub ledger_id: String,
    rows: Vec<Arc<HistoryRow>>,
}

impl LoanHistory {
    /// The entries with their postings (a loan's history as `GetLoanHistory` shows it).
    pub fn entries(self) -> Result<Vec<JournalEntry>, StoreError> {
        let entry = |row: Arc<HistoryRow>| match Arc::try_unwrap(row) {
            Ok(row) => row.row?.into_entry(),
            Err(shared) => shared.row()?.clone().into_entry(),
        };
        self.rows.into_iter().map(entry).collect()
    }

    /// The rows, in journal order, each decoded at most once ([`HistoryRow::event`]).
    pub fn rows(&self) -> &[Arc<HistoryRow>] {
        &self.rows
    }
}

/// A journal row of a loan's history as read (or why it cannot be), with its event decoded at
/// the first call. One read of several loans' histories ([`Db::loan_histories`]) reads a row
/// they share once and decodes it once: a pool's collective repayment is in the histories of
/// all its members (up to [`crate::domain::pool::MEMBERS_MAX`]), and its parts are theirs.
#[derive(Debug)]
pub struct HistoryRow {
    row: Result<JournalRow, StoreError>,
    event: OnceLock<Result<JournalEvent, String>>,
}

impl HistoryRow {
    fn shared(row: Result<JournalRow, StoreError>) -> Arc<HistoryRow> {
        Arc::new(HistoryRow { row, event: OnceLock::new() })
    }

    /// The row as stored. A row that could not be read is an error at each call: the
    /// database's error at the first (unshared) taking by [`LoanHistory::entries`], this one
    /// here.
    pub fn row(&self) -> Result<&JournalRow, StoreError> {
        self.row.as_ref().map_err(|e| StoreError::Corrupt(format!("a journal row: {e}")))
    }

    /// The row's event with its seq, decoded once however many histories share the row.
    pub fn event(&self) -> Result<(&JournalEvent, u64), StoreError> {
        let row = self.row()?;
        let event = self.event.get_or_init(|| {
            JournalEvent::from_parts(&row.kind, &row.command_json).map_err(|e| e.to_string())
        });
        let event = event.as_ref().map_err(|e| {
            StoreError::Corrupt(format!("entry {} of ledger {}: {e}", row.seq, row.ledger_id))
        })?;
        Ok((event, u64::try_from(row.seq).unwrap_or_default()))
    }
}

/// A row of [`LOAN_HISTORY_SQL`] read by rusqlite (SQLite: [`super::readers`]): its owner, and
/// the journal row or why it cannot be read.
fn owned_journal_row(r: &rusqlite::Row<'_>) -> Result<Owned<JournalRow>, StoreError> {
    Ok(Owned { bank_id: r.get(0)?, ledger_id: r.get(1)?, row: journal_row_at(r, 2) })
}

/// The journal row in columns `first..first + 11` of `r` ([`journal_columns!`]'s order), read by
/// rusqlite.
fn journal_row_at(r: &rusqlite::Row<'_>, first: usize) -> Result<JournalRow, StoreError> {
    Ok(JournalRow {
        ledger_id: r.get(first)?,
        seq: r.get(first + 1)?,
        kind: r.get(first + 2)?,
        value_date: r.get(first + 3)?,
        recorded_at_us: r.get(first + 4)?,
        actor: r.get(first + 5)?,
        request_id: r.get(first + 6)?,
        command_json: r.get(first + 7)?,
        prev_hash: r.get(first + 8)?,
        hash: r.get(first + 9)?,
        postings: r.get(first + 10)?,
    })
}

/// A link of [`HISTORY_LINKS`]: the loan, its bank and ledger, the seq of an entry of its.
type HistoryLink = (String, String, String, i64);

/// The links of loans in a list, with each loan's owner, by loan and seq (the list, then
/// [`HISTORY_LINKS_END`]); in a `cross join`'s order, as [`loan_history_select!`] says why.
const HISTORY_LINKS: &str = "select o.loan_id, o.bank_id, o.ledger_id, l.seq \
     from loan o cross join journal_loan l \
     where l.loan_id = o.loan_id and l.ledger_id = o.ledger_id and o.loan_id in (";
const HISTORY_LINKS_END: &str = ") order by o.loan_id, l.seq";

/// The journal rows of a ledger that the links of loans in a list name, each once: the text
/// before the ledger, then [`HISTORY_ROWS_SEQS`], the ledger again, [`HISTORY_ROWS_LOANS`], the
/// list, `"))"`. The seqs are a set of integers; each row is then read by its key.
const HISTORY_ROWS: &str = "select j.ledger_id, j.seq, j.kind, j.value_date, j.recorded_at_us, \
     j.actor, j.request_id, j.command_json, j.prev_hash, j.hash, j.postings \
     from journal_txn j where j.ledger_id = ";
const HISTORY_ROWS_SEQS: &str =
    " and j.seq in (select l.seq from journal_loan l where l.ledger_id = ";
const HISTORY_ROWS_LOANS: &str = " and l.loan_id in (";

/// A row read by sqlx with the owner's columns `bank` and `ledger` read apart from it (a
/// row of [`LOAN_HISTORY_SQL`], as [`owned_journal_row`] reads it; a loan's).
fn owned_sqlx<'r, R, T>(r: &'r R, bank: &'r str, ledger: &'r str) -> Result<Owned<T>, StoreError>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    T: sqlx::FromRow<'r, R>,
{
    Ok(Owned {
        bank_id: r.try_get(bank)?,
        ledger_id: r.try_get(ledger)?,
        row: T::from_row(r).map_err(StoreError::from),
    })
}

/// A stored row with the bank and ledger of the loan it belongs to, read apart from it: who
/// may read it is checked on those before the row is decoded, so that a row that cannot be
/// answers those who may not read it as a missing one does, not as a fault.
pub struct Owned<T> {
    pub bank_id: String,
    pub ledger_id: String,
    pub row: Result<T, StoreError>,
}

/// A stored row with the ledger it belongs to, read apart from it, as [`Owned`] for rows that
/// belong to a ledger and no bank.
pub struct InLedger<T> {
    pub ledger_id: String,
    pub row: Result<T, StoreError>,
}

/// The stored statuses a loan listing takes.
#[derive(Debug, Clone, Copy, Default)]
pub enum StatusFilter {
    #[default]
    Any,
    Is(LoanStatus),
    /// Any of [`LoanStatus::LIVE`].
    Live,
}

/// The columns of a [`TokenListRow`], selected from `api_token` (the statement's head).
macro_rules! token_list_select {
    () => {
        "select token_id, role, org, created_at_us, revoked_at_us, expires_at_us from api_token"
    };
}

/// Filters of a loan listing. `None` (and [`StatusFilter::Any`]) is no filter.
#[derive(Debug, Clone, Default)]
pub struct LoanFilter {
    pub ledger_id: Option<String>,
    pub bank_id: Option<String>,
    pub household_id: Option<String>,
    pub statuses: StatusFilter,
    /// Only loans with `loan_id` greater than this (keyset paging).
    pub after_loan_id: Option<String>,
}

/// Pushes the statement of [`Db::list_loans`] for `filter` and `limit` onto `q`, with only the
/// conditions it sets. One statement for every combination, each condition written
/// `($n is null or column = $n)`, was planned once for all of them: SQLite then scanned the
/// whole table in loan id order for every filter (a bank's first page of a few hundred thousand
/// loans took a quarter of a second), where the statement of its own shape is a range of
/// `(bank_id, loan_id)`, `(ledger_id, loan_id)` or `household_id`.
fn push_list_loans<DB: sqlx::Database>(q: &mut QueryBuilder<DB>, filter: &LoanFilter, limit: u32)
where
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push(concat!("select ", loan_columns!(), " from loan where true"));
    for (column, value) in [
        ("ledger_id", &filter.ledger_id),
        ("bank_id", &filter.bank_id),
        ("household_id", &filter.household_id),
    ] {
        if let Some(value) = value {
            q.push(format_args!(" and {column} = ")).push_bind(value.as_str());
        }
    }
    let statuses: &[LoanStatus] = match &filter.statuses {
        StatusFilter::Any => &[],
        StatusFilter::Is(s) => std::slice::from_ref(s),
        StatusFilter::Live => &LoanStatus::LIVE,
    };
    if !statuses.is_empty() {
        q.push(" and status in (");
        let mut list = q.separated(", ");
        for status in statuses {
            list.push_bind(status.as_str());
        }
        q.push(")");
    }
    if let Some(after) = &filter.after_loan_id {
        q.push(" and loan_id > ").push_bind(after.as_str());
    }
    q.push(" order by loan_id limit ").push_bind(i64::from(limit));
}

/// SQLite: `read` on one of the readers' rusqlite connections ([`Db::sqlite_readers`]), on a
/// blocking thread, so that the caller's runtime worker is not held up: a settlement run's pages
/// of loan ids, and the loans the writer reads for a group planned while another commits
/// (`Db::loans_read`, BENCHMARKS-HISTORY.md change 64). (A group's request ids were tried this way too:
/// no faster than through sqlx, change 53.)
pub(super) async fn read_blocking<T, F>(
    readers: std::sync::Arc<super::readers::SqliteReaders>,
    read: F,
) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || readers.read(read)).await.map_err(super::scan::panicked)?
}

/// One loan by its key, its columns in the order of [`loan_columns!`] (through sqlx, and
/// through rusqlite in `Db::loans_read`).
pub(super) const LOAN_BY_ID: &str =
    concat!("select ", loan_columns!(), " from loan where loan_id = $1");

/// Runs `$run` with `$executor`: on SQLite the pool (a writing statement takes the write lock
/// before it reads), on PostgreSQL a transaction that first locks `api_token` against other
/// writers, so that a statement which reads the tokens to decide its write (the first token of
/// a fresh database, the last operator token) is judged alone: at READ COMMITTED two such
/// statements would each miss the other's row.
macro_rules! tokens_locked {
    ($db:expr, $executor:ident => $run:expr) => {
        match $db {
            Db::Sqlite(pool, ..) => {
                let $executor = pool;
                $run
            }
            Db::Postgres(pool, _) => {
                let mut tx = pool.begin().await?;
                sqlx::query("lock table api_token in share row exclusive mode")
                    .execute(&mut *tx)
                    .await?;
                let done = {
                    let $executor = &mut *tx;
                    $run
                };
                tx.commit().await?;
                done
            }
        }
    };
}

/// The events of pool `pool_id` among journal rows (seq, kind, command), in their order: the
/// rows of other pools' or other kinds' events left out, a row that does not decode corrupt.
fn events_of_pool(
    pool_id: &str,
    rows: Vec<(i64, String, String)>,
) -> Result<Vec<PoolEvent>, StoreError> {
    let mut events = Vec::with_capacity(rows.len());
    for (seq, kind, json) in rows {
        match JournalEvent::from_parts(&kind, &json) {
            Ok(JournalEvent::Pool(event)) if event.pool_id() == pool_id => events.push(event),
            Ok(_) => {}
            Err(e) => {
                return Err(StoreError::Corrupt(format!(
                    "entry {seq} of pool {pool_id}'s ledger: {e}"
                )));
            }
        }
    }
    Ok(events)
}

/// A transaction's stored answer with the journal's own figures it is checked against
/// ([`Db::stored_answers`]).
#[derive(Debug)]
pub struct StoredAnswer {
    pub seq: i64,
    /// The transaction's kind (`loan.repaid`, ...).
    pub kind: String,
    /// The record's scope: the transaction's actor.
    pub scope: String,
    pub request_id: String,
    /// The stored answer's text; an error holds bytes that are not UTF-8 (SQLite only).
    pub answer: Result<String, std::string::FromUtf8Error>,
    /// The transaction's stored hash.
    pub hash: String,
}

/// A compensation as the API answers it: with its loan's principal repaid as the loan stands
/// (what was recovered since the compensation is that less its `repaid_before_fen`).
#[derive(Debug, Clone)]
pub struct CompensationStanding {
    pub compensation: Compensation,
    pub principal_repaid_fen: Fen,
}

impl CompensationStanding {
    fn from_row((loan_id, json, repaid): (String, String, i64)) -> Result<Self, StoreError> {
        Ok(CompensationStanding {
            compensation: compensation_from_json(&loan_id, &json)?,
            principal_repaid_fen: Fen(repaid),
        })
    }
}

impl Db {
    /// The readers' rusqlite connections of a SQLite database in a file (none in memory, none
    /// on PostgreSQL).
    pub(super) fn sqlite_readers(&self) -> Option<std::sync::Arc<super::readers::SqliteReaders>> {
        match self {
            Db::Sqlite(.., Some(readers)) => Some(readers.clone()),
            _ => None,
        }
    }

    pub async fn get_ledger(&self, ledger_id: &str) -> Result<Option<LedgerRow>, StoreError> {
        let sql = "select ledger_id, name from ledger where ledger_id = $1";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(ledger_id).fetch_optional(p).await?))
    }

    /// Whether the database answers a read (the health probe's): the ledger table's first row,
    /// through the read pool, which connects anew when its connections were lost.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let sql = "select count(*) from (select 1 from ledger limit 1) x";
        let _: i64 = on_pool!(self, p => sqlx::query_scalar(sql).fetch_one(p).await?);
        Ok(())
    }

    /// Whether a ledger exists, for `verify`: its row, or its journal should the row be gone.
    /// Reads no column of either, so that a row damaged by hand is left to verify to report.
    /// The LPR table's chain has no ledger row: its journal, started at migration, is found.
    pub async fn ledger_exists(&self, ledger_id: &str) -> Result<bool, StoreError> {
        const SQL: [&str; 2] = [
            "select count(*) from (select 1 from ledger where ledger_id = $1 limit 1) x",
            "select count(*) from (select 1 from journal_txn where ledger_id = $1 limit 1) x",
        ];
        for sql in SQL {
            let found: i64 =
                on_pool!(self, p => sqlx::query_scalar(sql).bind(ledger_id).fetch_one(p).await?);
            if found > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn get_bank(&self, bank_id: &str) -> Result<Option<BankRow>, StoreError> {
        let sql = "select bank_id, ledger_id, name from bank where bank_id = $1";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(bank_id).fetch_optional(p).await?))
    }

    /// A household's stored row and status series with its ledger read apart from them
    /// ([`InLedger`]): the caller checks who may read it first, so that a household whose row
    /// (on SQLite a column holding a value of another type) or statuses cannot be decoded
    /// answers a caller outside its ledger as a missing one does, not as a fault.
    pub async fn get_household(
        &self,
        household_id: &str,
    ) -> Result<Option<InLedger<HouseholdView>>, StoreError> {
        let sql =
            concat!("select ", household_columns!(), " from household where household_id = $1");
        let row = on_pool!(self, p => {
            match sqlx::query(sql).bind(household_id).fetch_optional(p).await? {
                Some(r) => {
                    let ledger_id: String = sqlx::Row::try_get(&r, "ledger_id")?;
                    Some((ledger_id, sqlx::FromRow::from_row(&r).map_err(StoreError::from)))
                }
                None => None,
            }
        });
        let Some((ledger_id, row)) = row else { return Ok(None) };
        let sql = "select effective_date, status, reason from household_status \
                   where household_id = $1 order by seq";
        let statuses: Result<Vec<StatusRow>, sqlx::Error> =
            on_pool!(self, p => sqlx::query_as(sql).bind(household_id).fetch_all(p).await);
        // A status row that cannot be read as one (on SQLite a column of another type) is the
        // household's fault, kept with it; the database away is not.
        let statuses = match statuses {
            Ok(rows) => Ok(rows),
            Err(e @ (sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_))) => {
                Err(StoreError::from(e))
            }
            Err(e) => return Err(e.into()),
        };
        let view = row.and_then(|row: HouseholdRow| {
            let statuses = statuses?.into_iter().map(StatusRow::into_entry);
            Ok(HouseholdView { row, statuses: statuses.collect::<Result<_, _>>()? })
        });
        Ok(Some(InLedger { ledger_id, row: view }))
    }

    /// The status series of each of these households, in recording order, each entry with the
    /// seq that recorded it, as recorded up to `through` (`None`: all of it), by household id
    /// (one without a status recorded by then is left out): one statement.
    pub async fn household_statuses(
        &self,
        household_ids: &[&str],
        through: Option<u64>,
    ) -> Result<HashMap<String, Vec<(u64, StatusEntry)>>, StoreError> {
        let mut series: HashMap<String, Vec<(u64, StatusEntry)>> = HashMap::default();
        if household_ids.is_empty() {
            return Ok(series);
        }
        let through = through.map_or(i64::MAX, |seq| i64::try_from(seq).unwrap_or(i64::MAX));
        let rows: Vec<(String, i64, String, String, String)> = on_pool!(self, p => {
            let mut q = QueryBuilder::new(
                "select household_id, seq, effective_date, status, reason from household_status \
                 where seq <= ",
            );
            q.push_bind(through);
            q.push(" and household_id in (");
            super::write::push_list(&mut q, household_ids);
            q.push(") order by household_id, seq");
            q.build_query_as().fetch_all(p).await?
        });
        for (household_id, seq, effective_date, status, reason) in rows {
            let entry = StatusRow { effective_date, status, reason }.into_entry()?;
            let seq = u64::try_from(seq).unwrap_or_default();
            series.entry(household_id).or_default().push((seq, entry));
        }
        Ok(series)
    }

    /// The township and village of each of these households that exists, by household id:
    /// one statement.
    pub async fn household_places(
        &self,
        household_ids: &[&str],
    ) -> Result<crate::collections::HashMap<String, (String, String)>, StoreError> {
        if household_ids.is_empty() {
            return Ok(Default::default());
        }
        let rows: Vec<(String, String, String)> = on_pool!(self, p => {
            let mut q = QueryBuilder::new(
                "select household_id, township, village from household where household_id in (",
            );
            super::write::push_list(&mut q, household_ids);
            q.push(")");
            q.build_query_as().fetch_all(p).await?
        });
        Ok(rows.into_iter().map(|(id, township, village)| (id, (township, village))).collect())
    }

    /// A ledger's policy versions by date, those of one date in the order they were set: those
    /// recorded up to `through` (`None`: all of them).
    pub async fn list_policies(
        &self,
        ledger_id: &str,
        through: Option<u64>,
    ) -> Result<Vec<PolicyVersion>, StoreError> {
        let recorded = self.policies_through(ledger_id, through).await?;
        Ok(recorded.into_iter().map(|(version, _)| version).collect())
    }

    /// [`Db::list_policies`] of the versions recorded up to `through` (`None`: all of them),
    /// each with the seq that recorded it.
    pub async fn policies_through(
        &self,
        ledger_id: &str,
        through: Option<u64>,
    ) -> Result<Vec<(PolicyVersion, u64)>, StoreError> {
        let through = through.map_or(i64::MAX, |seq| i64::try_from(seq).unwrap_or(i64::MAX));
        let rows: Vec<PolicyRow> = on_pool!(self, p => sqlx::query_as(POLICIES_THROUGH_SQL)
            .bind(ledger_id).bind(through).fetch_all(p).await?);
        rows.into_iter()
            .map(|row| {
                let seq = u64::try_from(row.seq).unwrap_or_default();
                Ok((row.into_version()?, seq))
            })
            .collect()
    }

    /// A subsidy claim as it stands, with its ledger, and the seq of its submission (`None`: no
    /// such claim).
    pub async fn subsidy_claim(&self, claim_id: &str) -> Result<Option<(Claim, u64)>, StoreError> {
        let row: Option<(String, i64)> =
            on_pool!(self, p => sqlx::query_as(CLAIM_SQL).bind(claim_id).fetch_optional(p).await?);
        row.map(|row| claim_with_seq(claim_id, row)).transpose()
    }

    /// A ledger's claims in claim id order after `after_claim_id`, at most `limit`, of one bank
    /// and one status if given (`""` for none), as their summaries (not their lines), each with
    /// the seq of its submission.
    pub async fn list_claims(
        &self,
        ledger_id: &str,
        (bank_id, status): (&str, &str),
        after_claim_id: &str,
        limit: u32,
    ) -> Result<Vec<(ClaimSummary, u64)>, StoreError> {
        let sql = "select summary_json, submitted_seq from subsidy_claim where ledger_id = $1 \
                   and ($2 = '' or bank_id = $2) and ($3 = '' or status = $3) and claim_id > $4 \
                   order by claim_id limit $5";
        let rows: Vec<(String, i64)> = on_pool!(self, p => sqlx::query_as(sql)
            .bind(ledger_id).bind(bank_id).bind(status).bind(after_claim_id).bind(i64::from(limit))
            .fetch_all(p).await?);
        rows.iter()
            .map(|(json, seq)| {
                let summary = serde_json::from_str(json).map_err(|e| {
                    StoreError::Corrupt(format!("a subsidy claim of {ledger_id}: {e}"))
                })?;
                Ok((summary, u64::try_from(*seq).unwrap_or_default()))
            })
            .collect()
    }

    /// A ledger's risk fund as it stands (`None`: none opened).
    pub async fn risk_fund(&self, ledger_id: &str) -> Result<Option<Fund>, StoreError> {
        Ok(self.risk_fund_seq(ledger_id).await?.map(|(fund, _)| fund))
    }

    /// [`Db::risk_fund`] with the seq of the fund's last transaction.
    pub async fn risk_fund_seq(&self, ledger_id: &str) -> Result<Option<(Fund, u64)>, StoreError> {
        let sql = "select fund_json, last_seq from risk_fund where ledger_id = $1";
        let row: Option<(String, i64)> =
            on_pool!(self, p => sqlx::query_as(sql).bind(ledger_id).fetch_optional(p).await?);
        let fund = |(json, seq): (String, i64)| {
            Ok((fund_from_json(ledger_id, &json)?, u64::try_from(seq).unwrap_or_default()))
        };
        row.map(fund).transpose()
    }

    /// A loan's compensation by its ledger's risk fund (`None`: not compensated), with the
    /// loan's principal repaid as it stands ([`CompensationStanding`]).
    pub async fn compensation(
        &self,
        loan_id: &str,
    ) -> Result<Option<CompensationStanding>, StoreError> {
        let sql = "select c.loan_id, c.compensation_json, coalesce(l.principal_repaid_fen, 0) \
                   from risk_compensation c left join loan l on l.loan_id = c.loan_id \
                   where c.loan_id = $1";
        let row: Option<(String, String, i64)> =
            on_pool!(self, p => sqlx::query_as(sql).bind(loan_id).fetch_optional(p).await?);
        row.map(CompensationStanding::from_row).transpose()
    }

    /// A ledger's compensations in loan id order after `after_loan_id`, at most `limit`, of one
    /// bank if given (`""` for all), each with its loan's principal repaid as it stands.
    pub async fn list_compensations(
        &self,
        ledger_id: &str,
        bank_id: &str,
        after_loan_id: &str,
        limit: u32,
    ) -> Result<Vec<CompensationStanding>, StoreError> {
        let sql = "select c.loan_id, c.compensation_json, coalesce(l.principal_repaid_fen, 0) \
                   from risk_compensation c left join loan l on l.loan_id = c.loan_id \
                   where c.ledger_id = $1 and ($2 = '' or c.bank_id = $2) and c.loan_id > $3 \
                   order by c.loan_id limit $4";
        let rows: Vec<(String, String, i64)> = on_pool!(self, p => sqlx::query_as(sql)
            .bind(ledger_id).bind(bank_id).bind(after_loan_id).bind(i64::from(limit))
            .fetch_all(p).await?);
        rows.into_iter().map(CompensationStanding::from_row).collect()
    }

    /// A ledger's loans that may have been live or contracted at the end of `date`, as its
    /// journal through `through_seq` had them, as they stand now ([`LOANS_OF_LEDGER_ON_SQL`];
    /// `servicing::loans_as_of` rebuilds them as of both).
    pub async fn loans_of_ledger_on(
        &self,
        ledger_id: &str,
        date: &str,
        through_seq: u64,
    ) -> Result<Vec<LoanState>, StoreError> {
        let sql = LOANS_OF_LEDGER_ON_SQL;
        let through = i64::try_from(through_seq).unwrap_or(i64::MAX);
        let rows: Vec<LoanRow> = on_pool!(self, p => sqlx::query_as(sql)
            .bind(ledger_id).bind(date).bind(through).fetch_all(p).await?);
        rows.into_iter().map(LoanRow::into_state).collect()
    }

    /// A loan's bank and ledger (`None`: no such loan).
    pub async fn loan_owner(&self, loan_id: &str) -> Result<Option<(String, String)>, StoreError> {
        let sql = "select bank_id, ledger_id from loan where loan_id = $1";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(loan_id).fetch_optional(p).await?))
    }

    /// The transactions of `ledger_id` after `after_seq` through `through_seq`, at most
    /// `limit`, that have the idempotency record of their request (its actor and request id:
    /// the record a retry of it is answered from), in seq order: a page of verify's recheck of
    /// the stored answers, one short statement (no snapshot held across pages). The journal
    /// read by its key in order, each record found by its own key; a transaction without a
    /// record is not given (verify's check of the records' keys reports it).
    ///
    /// On SQLite, whose columns take any type, the columns are read as bytes: a stored answer
    /// that is not UTF-8 text is given as such (a problem to report, not a failed read), and
    /// the journal's own columns lossily (the journal scan reports theirs); a seq stored as
    /// another type is the scan's to report, and left out.
    pub async fn stored_answers(
        &self,
        ledger_id: &str,
        after_seq: u64,
        through_seq: u64,
        limit: u32,
    ) -> Result<Vec<StoredAnswer>, StoreError> {
        macro_rules! from {
            () => {
                " from journal_txn j join idempotency i \
                 on i.scope = j.actor and i.request_id = j.request_id \
                 where j.ledger_id = $1 and j.seq > $2 and j.seq <= $3"
            };
        }
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let through = i64::try_from(through_seq).unwrap_or(i64::MAX);
        let limit = i64::from(limit);
        const SQLITE: &str = concat!(
            "select j.seq, cast(j.kind as blob), cast(j.actor as blob), \
             cast(j.request_id as blob), cast(i.result_json as blob), cast(j.hash as blob)",
            from!(),
            " and typeof(j.seq) = 'integer' order by j.seq limit $4"
        );
        type Row = (i64, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);
        let answer = |(seq, kind, scope, request_id, answer, hash): Row| {
            let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
            StoredAnswer {
                seq,
                kind: text(kind),
                scope: text(scope),
                request_id: text(request_id),
                answer: String::from_utf8(answer),
                hash: text(hash),
            }
        };
        // SQLite's pages through the readers' rusqlite connections on a blocking thread:
        // through sqlx, each row handed over from its connection's thread, the recheck took
        // twice as long as its replay.
        if let Some(readers) = self.sqlite_readers() {
            let ledger_id = ledger_id.to_string();
            return read_blocking(readers, move |conn| {
                let mut statement = conn.prepare_cached(SQLITE)?;
                let params = rusqlite::params![ledger_id, after, through, limit];
                let rows = statement.query_map(params, |r| {
                    Ok(answer((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await;
        }
        // PostgreSQL's text is UTF-8: its bytes, so that both give one row.
        const POSTGRES: &str = concat!(
            "select j.seq, convert_to(j.kind, 'UTF8'), convert_to(j.actor, 'UTF8'), \
             convert_to(j.request_id, 'UTF8'), convert_to(i.result_json, 'UTF8'), \
             convert_to(j.hash, 'UTF8')",
            from!(),
            " order by j.seq limit $4"
        );
        let sql = match self {
            Db::Sqlite(..) => SQLITE,
            Db::Postgres(..) => POSTGRES,
        };
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(sql)
            .bind(ledger_id).bind(after).bind(through).bind(limit).fetch_all(p).await?);
        Ok(rows.into_iter().map(answer).collect())
    }

    /// A ledger's risk-fund events in journal order (`risk_fund.*`: kind and event JSON), for
    /// the fund as it stood on a date. A scan of the ledger's journal: an auditor's read.
    pub async fn fund_events(
        &self,
        ledger_id: &str,
        through_seq: u64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "select kind, command_json from journal_txn \
                   where ledger_id = $1 and kind like 'risk_fund.%' and seq <= $2 order by seq";
        let through = i64::try_from(through_seq).unwrap_or(i64::MAX);
        Ok(
            on_pool!(self, p => sqlx::query_as(sql).bind(ledger_id).bind(through).fetch_all(p).await?),
        )
    }

    /// A pool as it stands (`None`: there is none of that id).
    pub async fn pool(&self, pool_id: &str) -> Result<Option<Pool>, StoreError> {
        let sql = POOL_JSON_SQL;
        let json: Option<String> =
            on_pool!(self, p => sqlx::query_scalar(sql).bind(pool_id).fetch_optional(p).await?);
        json.map(|json| pool_from_json(pool_id, &json)).transpose()
    }

    /// The seq of a pool's last event (`None`: no such pool): a report through a seq takes the
    /// pool as it stands when it is not after the seq.
    pub async fn pool_last_seq(&self, pool_id: &str) -> Result<Option<i64>, StoreError> {
        let sql = "select last_seq from pool where pool_id = $1";
        Ok(on_pool!(self, p => sqlx::query_scalar(sql).bind(pool_id).fetch_optional(p).await?))
    }

    /// A ledger's pools in pool id order after `after_pool_id`, at most `limit`, of one bank if
    /// given (`""` for all).
    pub async fn list_pools(
        &self,
        ledger_id: &str,
        bank_id: &str,
        after_pool_id: &str,
        limit: u32,
    ) -> Result<Vec<Pool>, StoreError> {
        let sql = "select pool_id, pool_json from pool where ledger_id = $1 \
                   and ($2 = '' or bank_id = $2) and pool_id > $3 order by pool_id limit $4";
        let rows: Vec<(String, String)> = on_pool!(self, p => sqlx::query_as(sql)
            .bind(ledger_id).bind(bank_id).bind(after_pool_id).bind(i64::from(limit))
            .fetch_all(p).await?);
        rows.iter().map(|(pool_id, json)| pool_from_json(pool_id, json)).collect()
    }

    /// The member loans of a pool as they stand.
    pub async fn loans_of_pool(&self, pool_id: &str) -> Result<Vec<LoanState>, StoreError> {
        let sql = LOANS_OF_POOL_SQL;
        let rows: Vec<LoanRow> =
            on_pool!(self, p => sqlx::query_as(sql).bind(pool_id).fetch_all(p).await?);
        rows.into_iter().map(LoanRow::into_state).collect()
    }

    /// A pool's returns paid and participations as the journal through `through_seq` records
    /// them, in journal order (the events [`Pool::report`] dates its figures by): the entries
    /// of those kinds linked to its member loans.
    pub async fn pool_activity(
        &self,
        pool_id: &str,
        through_seq: u64,
    ) -> Result<Vec<PoolEvent>, StoreError> {
        let sql = "select j.seq, j.kind, j.command_json \
                   from pool_member m cross join journal_loan l cross join journal_txn j \
                   where m.pool_id = $1 and l.loan_id = m.loan_id and l.ledger_id = m.ledger_id \
                   and l.seq <= $2 and j.ledger_id = l.ledger_id and j.seq = l.seq \
                   and j.kind in ('pool.return_paid', 'pool.participated') order by j.seq";
        let through = i64::try_from(through_seq).unwrap_or(i64::MAX);
        let rows: Vec<(i64, String, String)> = on_pool!(self, p => sqlx::query_as(sql)
            .bind(pool_id).bind(through).fetch_all(p).await?);
        events_of_pool(pool_id, rows)
    }

    /// Pool `pool_id`'s events of ledger `ledger_id` recorded through `through_seq`, in journal
    /// order (none: not agreed by then), for a pool changed since ([`Pool::rebuilt`]). A scan
    /// of the ledger's pool entries from the pool's agreement (the first `pool.agreed` link of
    /// its members: an agreement links them all, a settlement none) through the seq, those
    /// whose text names the pool decoded (an id's characters are written as they are in JSON:
    /// `LIKE` with them takes in at least the pool's own; each is then told by its decoded id).
    pub async fn pool_events_through(
        &self,
        ledger_id: &str,
        pool_id: &str,
        through_seq: u64,
    ) -> Result<Vec<PoolEvent>, StoreError> {
        let sql = "select seq, kind, command_json from journal_txn \
                   where ledger_id = $1 and kind like 'pool.%' and seq <= $2 \
                   and seq >= coalesce((select min(a.seq) \
                       from pool_member m cross join journal_loan l cross join journal_txn a \
                       where m.pool_id = $3 and l.loan_id = m.loan_id \
                       and l.ledger_id = m.ledger_id and a.ledger_id = l.ledger_id \
                       and a.seq = l.seq and a.kind = 'pool.agreed'), 0) \
                   and command_json like $4 order by seq";
        let through = i64::try_from(through_seq).unwrap_or(i64::MAX);
        let named = format!("%\"pool_id\":\"{pool_id}\"%");
        let rows: Vec<(i64, String, String)> = on_pool!(self, p => sqlx::query_as(sql)
            .bind(ledger_id).bind(through).bind(pool_id).bind(named).fetch_all(p).await?);
        events_of_pool(pool_id, rows)
    }

    pub async fn list_lpr(&self) -> Result<Vec<LprEntry>, StoreError> {
        let sql = "select effective_date, tenor, rate from lpr order by effective_date, tenor";
        let rows: Vec<LprRow> = on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?);
        rows.into_iter().map(LprRow::into_entry).collect()
    }

    /// A loan's stored row with its owner, the row neither read by type nor decoded yet
    /// ([`Owned`], [`LoanRow::into_state`]): the caller checks who may read it first, so that a
    /// row that cannot be read (on SQLite a column holding a value of another type) or decoded
    /// answers another bank as a missing loan does, not as a fault.
    pub async fn get_loan(&self, loan_id: &str) -> Result<Option<Owned<LoanRow>>, StoreError> {
        Ok(on_pool!(self, p => {
            match sqlx::query(LOAN_BY_ID).bind(loan_id).fetch_optional(p).await? {
                Some(row) => Some(owned_sqlx(&row, "bank_id", "ledger_id")?),
                None => None,
            }
        }))
    }

    /// Loans matching `filter`, ordered by loan_id, at most `limit`.
    pub async fn list_loans(
        &self,
        filter: &LoanFilter,
        limit: u32,
    ) -> Result<Vec<LoanState>, StoreError> {
        let rows: Vec<LoanRow> = on_pool!(self, p => {
            let mut q = QueryBuilder::new("");
            push_list_loans(&mut q, filter, limit);
            q.build_query_as().fetch_all(p).await?
        });
        rows.into_iter().map(LoanRow::into_state).collect()
    }

    /// Journal transactions of a ledger with `from_seq <= seq <= to_seq`, at most `limit`, with
    /// their postings.
    pub async fn journal_range(
        &self,
        ledger_id: &str,
        from_seq: u64,
        to_seq: u64,
        limit: u32,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
        let to = i64::try_from(to_seq).unwrap_or(i64::MAX);
        let rows: Vec<JournalRow> = on_pool!(self, p => sqlx::query_as(JOURNAL_RANGE_SQL)
            .bind(ledger_id).bind(from).bind(to).bind(i64::from(limit))
            .fetch_all(p).await?);
        rows.into_iter().map(JournalRow::into_entry).collect()
    }

    /// The reversals in a ledger's journal through `through`, in seq order: each one's seq and
    /// the seq it reverses, read through their own index (`journal_txn_reversals`). An entry
    /// whose command does not read as a reversal is left out (the replay reports it).
    pub async fn reversals(
        &self,
        ledger_id: &str,
        through: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        // On SQLite, whose columns hold any type, read leniently (a value stored by hand of
        // another type is then a problem of the replay, not a failed read).
        const SQLITE: &str = "select cast(seq as integer), cast(command_json as text) from journal_txn \
                              where ledger_id = $1 and kind = 'loan.reversed' and seq <= $2 order by seq";
        const POSTGRES: &str = "select seq, command_json from journal_txn \
                                where ledger_id = $1 and kind = 'loan.reversed' and seq <= $2 order by seq";
        let through = i64::try_from(through).unwrap_or(i64::MAX);
        let rows: Vec<(Option<i64>, Option<String>)> = match self {
            Db::Sqlite(p, ..) => {
                sqlx::query_as(SQLITE).bind(ledger_id).bind(through).fetch_all(p).await?
            }
            Db::Postgres(p, _) => {
                sqlx::query_as(POSTGRES).bind(ledger_id).bind(through).fetch_all(p).await?
            }
        };
        Ok(rows
            .into_iter()
            .filter_map(|(seq, json)| {
                let seq = u64::try_from(seq?).ok()?;
                match JournalEvent::from_parts("loan.reversed", &json?).ok()? {
                    JournalEvent::Loan(LoanEvent::Reversed { reversed_seq, .. }) => {
                        Some((seq, reversed_seq))
                    }
                    _ => None,
                }
            })
            .collect())
    }

    /// The largest seq stored in a ledger's chain (0: no transaction).
    pub async fn head_seq(&self, ledger_id: &str) -> Result<u64, StoreError> {
        // On SQLite, numbers only (a seq stored by hand as text or a blob sorts after every
        // number, and leaves a gap in the chain, reported as such), as an integer (a real one
        // stored by hand is read as the integer below it, not refused).
        const SQLITE: &str = "select cast(coalesce(max(seq), 0) as integer) from journal_txn \
                              where ledger_id = $1 and seq <= 9223372036854775807";
        const POSTGRES: &str = "select coalesce(max(seq), 0) from journal_txn where ledger_id = $1";
        let head: i64 = match self {
            Db::Sqlite(p, ..) => sqlx::query_scalar(SQLITE).bind(ledger_id).fetch_one(p).await?,
            Db::Postgres(p, _) => sqlx::query_scalar(POSTGRES).bind(ledger_id).fetch_one(p).await?,
        };
        Ok(u64::try_from(head).unwrap_or(0))
    }

    /// The links of a ledger's hash chain from `from_seq` through `to_seq`, in seq order, at
    /// most `limit`: each transaction's (seq, prev_hash, hash) as stored. On SQLite, whose
    /// columns hold any type, a seq that is not an integer is read as -1 and the hashes as
    /// bytes, decoded lossily, whatever was stored (a number, a blob, bytes that are not
    /// UTF-8): a row written by hand is then a break, not a failed read.
    pub async fn chain_links(
        &self,
        ledger_id: &str,
        from_seq: u64,
        to_seq: u64,
        limit: u32,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        const SQLITE: &str = "select case when typeof(seq) = 'integer' then seq else -1 end, \
                              cast(prev_hash as blob), cast(hash as blob) from journal_txn \
                              where ledger_id = ?1 and seq >= ?2 and seq <= ?3 order by seq limit ?4";
        const POSTGRES: &str = "select seq, prev_hash, hash from journal_txn \
                                where ledger_id = $1 and seq >= $2 and seq <= $3 order by seq limit $4";
        let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
        let to = i64::try_from(to_seq).unwrap_or(i64::MAX);
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        // SQLite's pages through the readers' rusqlite connections on a blocking thread: read
        // through sqlx, each row handed over from its connection's thread, a checkpoint took
        // half as long again.
        if let Some(readers) = self.sqlite_readers() {
            let ledger_id = ledger_id.to_string();
            return read_blocking(readers, move |conn| {
                let mut statement = conn.prepare_cached(SQLITE)?;
                let rows = statement
                    .query_map(rusqlite::params![ledger_id, from, to, i64::from(limit)], |r| {
                        Ok((r.get(0)?, text(r.get(1)?), text(r.get(2)?)))
                    })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await;
        }
        Ok(match self {
            Db::Sqlite(p, ..) => {
                let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(SQLITE)
                    .bind(ledger_id)
                    .bind(from)
                    .bind(to)
                    .bind(i64::from(limit))
                    .fetch_all(p)
                    .await?;
                rows.into_iter().map(|(seq, prev, hash)| (seq, text(prev), text(hash))).collect()
            }
            Db::Postgres(p, _) => {
                sqlx::query_as(POSTGRES)
                    .bind(ledger_id)
                    .bind(from)
                    .bind(to)
                    .bind(i64::from(limit))
                    .fetch_all(p)
                    .await?
            }
        })
    }

    /// A loan's journal entries in order, with the loan's owner (who may read them) in the same
    /// statement; `None` if there is no such loan (every loan has the entry that created it).
    pub async fn loan_history(&self, loan_id: &str) -> Result<Option<LoanHistory>, StoreError> {
        let sql = LOAN_HISTORY_SQL;
        let rows: Vec<Owned<JournalRow>> = match self {
            Db::Sqlite(.., Some(readers)) => readers.read(|conn| {
                conn.prepare_cached(sql)?.query_and_then([loan_id], owned_journal_row)?.collect()
            })?,
            _ => on_pool!(self, p => {
                let rows = sqlx::query(sql).bind(loan_id).fetch_all(p).await?;
                let owned = |r| owned_sqlx(r, "owner_bank_id", "owner_ledger_id");
                rows.iter().map(owned).collect::<Result<_, _>>()?
            }),
        };
        let Some(first) = rows.first() else { return Ok(None) };
        let (bank_id, ledger_id) = (first.bank_id.clone(), first.ledger_id.clone());
        let rows = rows.into_iter().map(|r| HistoryRow::shared(r.row)).collect();
        Ok(Some(LoanHistory { bank_id, ledger_id, rows }))
    }

    /// The histories of these loans, as [`Db::loan_history`] reads each: by loan id, in loan id
    /// order (a loan that does not exist is left out). Two statements: the loans' links with
    /// their owners, then each journal row they link, once: a row several of them share (a
    /// pool's collective repayment, in every member's history) is read once and shared
    /// ([`HistoryRow`]), not copied into each history (a page of a thousand members of one pool
    /// would have read each of its repayments, a thousand parts each, a thousand times).
    pub async fn loan_histories(
        &self,
        loan_ids: &[&str],
    ) -> Result<Vec<(String, LoanHistory)>, StoreError> {
        if loan_ids.is_empty() {
            return Ok(Vec::new());
        }
        type Keyed = ((String, i64), Result<JournalRow, StoreError>);
        // The loans' ledgers, each with its loans (one ledger, all but always), as the links say.
        let by_ledger = |links: &[HistoryLink]| {
            let mut by_ledger: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (loan_id, _, ledger_id, _) in links {
                let loans = by_ledger.entry(ledger_id.clone()).or_default();
                if loans.last() != Some(loan_id) {
                    loans.push(loan_id.clone());
                }
            }
            by_ledger
        };
        let (links, rows): (Vec<HistoryLink>, Vec<Keyed>) = match self {
            // A page's histories are thousands of rows: read on a blocking thread.
            Db::Sqlite(.., Some(readers)) => {
                let marks = vec!["?"; loan_ids.len()].join(", ");
                let links_sql = format!("{HISTORY_LINKS}{marks}{HISTORY_LINKS_END}");
                let ids: Vec<String> = loan_ids.iter().map(|id| id.to_string()).collect();
                read_blocking(readers.clone(), move |conn| {
                    let mut statement = conn.prepare(&links_sql)?;
                    let links: Vec<HistoryLink> = statement
                        .query_and_then(rusqlite::params_from_iter(ids.iter()), |r| {
                            Ok::<_, StoreError>((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })?
                        .collect::<Result<_, _>>()?;
                    let mut rows = Vec::new();
                    for (ledger_id, loans) in by_ledger(&links) {
                        let marks = vec!["?"; loans.len()].join(", ");
                        let sql = format!(
                            "{HISTORY_ROWS}?1{HISTORY_ROWS_SEQS}?1{HISTORY_ROWS_LOANS}{marks}))"
                        );
                        let mut statement = conn.prepare(&sql)?;
                        let params = std::iter::once(&ledger_id).chain(loans.iter());
                        let read =
                            statement.query_and_then(rusqlite::params_from_iter(params), |r| {
                                Ok::<Keyed, StoreError>((
                                    (r.get(0)?, r.get(1)?),
                                    journal_row_at(r, 0),
                                ))
                            })?;
                        for row in read {
                            rows.push(row?);
                        }
                    }
                    Ok((links, rows))
                })
                .await?
            }
            _ => on_pool!(self, p => {
                let mut q = QueryBuilder::new(HISTORY_LINKS);
                super::write::push_list(&mut q, loan_ids);
                q.push(HISTORY_LINKS_END);
                let links = q.build_query_as::<HistoryLink>().fetch_all(p).await?;
                let mut keyed = Vec::new();
                for (ledger_id, loans) in by_ledger(&links) {
                    let loans: Vec<&str> = loans.iter().map(String::as_str).collect();
                    let mut q = QueryBuilder::new(HISTORY_ROWS);
                    q.push_bind(ledger_id.as_str()).push(HISTORY_ROWS_SEQS);
                    q.push_bind(ledger_id.as_str()).push(HISTORY_ROWS_LOANS);
                    super::write::push_list(&mut q, &loans);
                    q.push("))");
                    let rows = q.build().fetch_all(p).await?;
                    for r in &rows {
                        let key =
                            (sqlx::Row::try_get(r, "ledger_id")?, sqlx::Row::try_get(r, "seq")?);
                        keyed.push((key, JournalRow::from_row(r).map_err(StoreError::from)));
                    }
                }
                (links, keyed)
            }),
        };
        let shared: HashMap<(String, i64), Arc<HistoryRow>> =
            rows.into_iter().map(|(key, row)| (key, HistoryRow::shared(row))).collect();
        let mut histories: Vec<(String, LoanHistory)> = Vec::new();
        for (loan_id, bank_id, ledger_id, seq) in links {
            let key = (ledger_id, seq);
            let row = shared.get(&key).cloned().unwrap_or_else(|| {
                // Linked and not read a moment later: the journal is append-only.
                HistoryRow::shared(Err(StoreError::Corrupt(format!(
                    "entry {seq} of ledger {}, linked to loan {loan_id}, is not in the journal",
                    key.0
                ))))
            });
            match histories.last_mut() {
                Some((id, history)) if *id == loan_id => history.rows.push(row),
                _ => {
                    let history = LoanHistory { bank_id, ledger_id: key.0, rows: vec![row] };
                    histories.push((loan_id, history));
                }
            }
        }
        Ok(histories)
    }

    /// The token bound to a secret's hash, if it exists and is not revoked (expired or not:
    /// [`crate::app::auth::authenticate`] tells an expired one apart).
    pub async fn find_token(&self, token_hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let sql = "select token_id, role, org, expires_at_us from api_token \
                   where token_hash = $1 and revoked_at_us is null";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(token_hash).fetch_optional(p).await?))
    }

    /// Every token, in the order of their creation.
    pub async fn list_tokens(&self) -> Result<Vec<TokenListRow>, StoreError> {
        let sql = concat!(token_list_select!(), " order by created_at_us, token_id");
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }

    /// Revokes a token from `at_us` on; `false` if there is no such token or it was revoked
    /// already.
    pub async fn revoke_token(&self, token_id: &str, at_us: i64) -> Result<bool, StoreError> {
        let sql = "update api_token set revoked_at_us = $2 \
                   where token_id = $1 and revoked_at_us is null";
        let rows = on_pool!(self, p => sqlx::query(sql).bind(token_id).bind(at_us).execute(p).await?.rows_affected());
        Ok(rows == 1)
    }

    /// Whether a commit is durable with the database's settings as this service's connections
    /// have them, and those settings, for the benchmark's report: SQLite's `synchronous` (FULL
    /// or EXTRA: the WAL synced at each commit) and journal mode; PostgreSQL's `fsync`,
    /// `synchronous_commit` (not `off`) and `full_page_writes`.
    pub async fn durability(&self) -> Result<(bool, String), StoreError> {
        match self {
            Db::Sqlite(p, ..) => {
                let synchronous: i64 =
                    sqlx::query_scalar("pragma synchronous").fetch_one(p).await?;
                let journal: String =
                    sqlx::query_scalar("pragma journal_mode").fetch_one(p).await?;
                let name = ["off", "normal", "full", "extra"]
                    .get(usize::try_from(synchronous).unwrap_or(0))
                    .copied()
                    .unwrap_or("?");
                Ok((synchronous >= 2, format!("SQLite synchronous={name}, journal_mode={journal}")))
            }
            Db::Postgres(p, _) => {
                let show = async |name: &str| -> Result<String, StoreError> {
                    let sql = format!("show {name}");
                    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(p).await?)
                };
                let (fsync, commit, pages) = (
                    show("fsync").await?,
                    show("synchronous_commit").await?,
                    show("full_page_writes").await?,
                );
                let durable = fsync == "on" && commit != "off" && pages == "on";
                Ok((
                    durable,
                    format!(
                        "PostgreSQL fsync={fsync}, synchronous_commit={commit}, full_page_writes={pages}"
                    ),
                ))
            }
        }
    }

    /// Whether the table `name` exists (on PostgreSQL, in the current schema): a database not
    /// set up yet has none of the service's.
    pub(crate) async fn table_exists(&self, name: &str) -> Result<bool, StoreError> {
        let sql = match self {
            Db::Sqlite(..) => {
                "select count(*) from sqlite_master where type = 'table' and name = $1"
            }
            Db::Postgres(..) => {
                "select count(*) from pg_tables where tablename = $1 \
                 and schemaname = current_schema()"
            }
        };
        let tables: i64 =
            on_pool!(self, p => sqlx::query_scalar(sql).bind(name).fetch_one(p).await?);
        Ok(tables > 0)
    }

    /// Whether the database holds journal transactions an auditor may hold checkpoints of,
    /// before this build migrates it: any ledger's, or the LPR table's but its chain's start
    /// (seq 1, made by every server's first start). A database not set up yet (no journal
    /// table) holds none; any other failure is an error (since 2026-12-07: a failure read as
    /// none, and a missing signing key was made anew over journals auditors hold).
    pub async fn has_checkpointed_transactions(&self) -> Result<bool, StoreError> {
        if !self.table_exists("journal_txn").await? {
            return Ok(false);
        }
        let sql = "select count(*) from (select 1 from journal_txn \
                   where not (ledger_id = $1 and seq = 1) limit 1) x";
        let found: i64 = on_pool!(self, p => sqlx::query_scalar(sql).bind(crate::domain::lpr::LPR_LEDGER).fetch_one(p).await?);
        Ok(found > 0)
    }

    /// The number of tokens stored, revoked ones too.
    pub async fn count_tokens(&self) -> Result<i64, StoreError> {
        let sql = "select count(*) from api_token";
        Ok(on_pool!(self, p => sqlx::query_scalar(sql).fetch_one(p).await?))
    }

    /// The operator tokens that can log in at `now_us`: bound to `*`, neither revoked nor
    /// expired.
    pub async fn count_usable_operator_tokens(&self, now_us: i64) -> Result<i64, StoreError> {
        let sql = concat!("select ", usable_operator_tokens!("$1"));
        Ok(on_pool!(self, p => sqlx::query_scalar(sql).bind(now_us).fetch_one(p).await?))
    }

    /// Stores a token only if the database has no token and no ledger, in one statement (on
    /// PostgreSQL after a lock of the token table that servers starting together take in turn,
    /// so that the second sees the first's token; SQLite runs one writing statement at a
    /// time): whether it was stored.
    pub async fn insert_first_token(
        &self,
        token_id: &str,
        token_hash: &str,
        role: &str,
        org: &str,
        created_at_us: i64,
    ) -> Result<bool, StoreError> {
        let sql = "insert into api_token (token_id, token_hash, role, org, created_at_us) \
                   select $1, $2, $3, $4, $5 where not exists (select 1 from api_token) \
                   and not exists (select 1 from ledger)";
        macro_rules! insert {
            ($executor:expr) => {
                sqlx::query(sql)
                    .bind(token_id)
                    .bind(token_hash)
                    .bind(role)
                    .bind(org)
                    .bind(created_at_us)
                    .execute($executor)
                    .await?
                    .rows_affected()
            };
        }
        let stored = tokens_locked!(self, executor => insert!(executor));
        Ok(stored == 1)
    }

    pub async fn insert_token(
        &self,
        token_id: &str,
        token_hash: &str,
        role: &str,
        org: &str,
        created_at_us: i64,
        expires_at_us: Option<i64>,
    ) -> Result<(), StoreError> {
        let sql = "insert into api_token \
                   (token_id, token_hash, role, org, created_at_us, expires_at_us) \
                   values ($1, $2, $3, $4, $5, $6)";
        on_pool!(self, p => sqlx::query(sql)
            .bind(token_id).bind(token_hash).bind(role).bind(org).bind(created_at_us)
            .bind(expires_at_us)
            .execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Stores a token made by the operator's `CreateToken` under its `request_id`, unless a
    /// token is stored under that id already: that one is answered instead (`false`: not made
    /// now), whatever its role and organisation, for the caller to compare.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_token_for_request(
        &self,
        token_id: &str,
        token_hash: &str,
        role: &str,
        org: &str,
        created_at_us: i64,
        expires_at_us: Option<i64>,
        request_id: &str,
    ) -> Result<(TokenListRow, bool), StoreError> {
        let sql = "insert into api_token \
                   (token_id, token_hash, role, org, created_at_us, expires_at_us, request_id) \
                   values ($1, $2, $3, $4, $5, $6, $7) on conflict (request_id) do nothing";
        let made = on_pool!(self, p => sqlx::query(sql)
            .bind(token_id).bind(token_hash).bind(role).bind(org).bind(created_at_us)
            .bind(expires_at_us).bind(request_id)
            .execute(p).await?.rows_affected())
            == 1;
        let row = self.token_for_request(request_id).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("no token under request {request_id} after its insert"))
        })?;
        Ok((row, made))
    }

    /// The token `request_id` made (`CreateToken`), if it made one.
    pub async fn token_for_request(
        &self,
        request_id: &str,
    ) -> Result<Option<TokenListRow>, StoreError> {
        let sql = concat!(token_list_select!(), " where request_id = $1");
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(request_id).fetch_optional(p).await?))
    }

    /// Whether `request_id` made a token (`CreateToken`) and whether it revoked one
    /// (`RevokeToken`): the operator's request ids kept outside the idempotency records.
    pub async fn token_requests_used(&self, request_id: &str) -> Result<(bool, bool), StoreError> {
        let sql = "select (select count(*) from api_token where request_id = $1), \
                   (select count(*) from token_revocation where request_id = $1)";
        let (made, revoked): (i64, i64) =
            on_pool!(self, p => sqlx::query_as(sql).bind(request_id).fetch_one(p).await?);
        Ok((made > 0, revoked > 0))
    }

    /// Records that `request_id` revokes `token_id` (`RevokeToken`), unless it was recorded
    /// before, and answers the token it revokes (`token_id`, or the one it was recorded for)
    /// and the reason it was refused, if it was ([`Db::refuse_token_revocation`]).
    pub async fn record_token_revocation(
        &self,
        request_id: &str,
        token_id: &str,
        at_us: i64,
    ) -> Result<(String, Option<String>), StoreError> {
        let sql = "insert into token_revocation (request_id, token_id, recorded_at_us) \
                   values ($1, $2, $3) on conflict (request_id) do nothing";
        on_pool!(self, p => sqlx::query(sql).bind(request_id).bind(token_id).bind(at_us)
            .execute(p).await?.rows_affected());
        self.token_revocation(request_id).await?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "no revocation under request {request_id} after its insert"
            ))
        })
    }

    /// The token `request_id` revoked (`RevokeToken`) and the reason it was refused, if it
    /// was ([`Db::refuse_token_revocation`]); `None` if it revoked none.
    pub async fn token_revocation(
        &self,
        request_id: &str,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let sql = "select token_id, refused from token_revocation where request_id = $1";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(request_id).fetch_optional(p).await?))
    }

    /// Records that the revocation of `request_id` was refused for `reason`: a retry is
    /// refused the same way, whatever has changed since.
    pub async fn refuse_token_revocation(
        &self,
        request_id: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let sql = "update token_revocation set refused = $2 where request_id = $1";
        on_pool!(self, p => sqlx::query(sql).bind(request_id).bind(reason)
            .execute(p).await?.rows_affected());
        Ok(())
    }

    /// The token `token_id`, if there is one (never its secret or hash).
    pub async fn get_token(&self, token_id: &str) -> Result<Option<TokenListRow>, StoreError> {
        let sql = concat!(token_list_select!(), " where token_id = $1");
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(token_id).fetch_optional(p).await?))
    }

    /// Up to `limit` tokens after `after` in token id order (a page of `ListTokens`).
    pub async fn list_tokens_after(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<TokenListRow>, StoreError> {
        let sql = concat!(token_list_select!(), " where token_id > $1 order by token_id limit $2");
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(after).bind(limit).fetch_all(p).await?))
    }

    /// Revokes a token from `at_us` on, but the last operator token that can log in (bound to
    /// `*`, not revoked, not expired by `at_us`); `false` if nothing was revoked (no such
    /// token, revoked already, or that last one). On PostgreSQL the count and the update run under a lock on the table
    /// (as [`Db::insert_first_token`]'s): at READ COMMITTED two revocations of the last two
    /// would each count the other's token, update rows of their own, and both pass; SQLite's
    /// statement takes the write lock before it reads.
    pub async fn revoke_token_but_last_operator(
        &self,
        token_id: &str,
        at_us: i64,
    ) -> Result<bool, StoreError> {
        let sql = concat!(
            "update api_token set revoked_at_us = $2 \
             where token_id = $1 and revoked_at_us is null \
             and (role <> 'operator' or org <> '*' \
                  or (expires_at_us is not null and expires_at_us <= $2) or ",
            usable_operator_tokens!("$2"),
            " > 1)"
        );
        macro_rules! revoke {
            ($executor:expr) => {
                sqlx::query(sql)
                    .bind(token_id)
                    .bind(at_us)
                    .execute($executor)
                    .await?
                    .rows_affected()
            };
        }
        let revoked = tokens_locked!(self, executor => revoke!(executor));
        Ok(revoked == 1)
    }

    /// Runs a statement outside the writer: for tests and operators only.
    pub async fn execute_raw(&self, sql: &str) -> Result<u64, StoreError> {
        Ok(
            on_pool!(self, p => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(p).await?.rows_affected()),
        )
    }

    /// The first column of each row of a query, as text, outside the writer: for tests and
    /// operators only.
    pub async fn query_texts(&self, sql: &str) -> Result<Vec<String>, StoreError> {
        Ok(
            on_pool!(self, p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(p).await?),
        )
    }
}

impl Db {
    /// The ids of a ledger's live loans (active or overdue), optionally of one bank's, after
    /// `after` in loan_id order, at most `limit`: the pages of a settlement run.
    pub async fn live_loan_ids(
        &self,
        ledger_id: &str,
        bank_id: Option<&str>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let sql = "select loan_id from loan where ledger_id = $1 \
             and ($2 is null or bank_id = $2) \
             and status in ('active', 'overdue', 'overdue_90') and loan_id > $3 \
             order by loan_id limit $4";
        if let Some(readers) = self.sqlite_readers() {
            let (ledger_id, bank_id, after) =
                (ledger_id.to_string(), bank_id.map(str::to_string), after.to_string());
            return read_blocking(readers, move |conn| {
                let params = rusqlite::params![ledger_id, bank_id, after, i64::from(limit)];
                let mut stmt = conn.prepare_cached(sql)?;
                let ids = stmt.query_map(params, |r| r.get::<_, String>(0))?;
                Ok(ids.collect::<Result<Vec<String>, _>>()?)
            })
            .await;
        }
        Ok(on_pool!(self, p => sqlx::query_scalar(sql)
            .bind(ledger_id).bind(bank_id).bind(after).bind(i64::from(limit))
            .fetch_all(p).await?))
    }

    /// The loan ids of the answers `scope` has stored under request ids `<prefix><loan id>`
    /// (a settlement run's: [`crate::app::servicing::loan_request_id`]) after `after`, in loan
    /// id order, at most `limit`: a run sent again goes over those loans too, also when they
    /// are no longer live, and so counts them as the first attempt did. A range of the key.
    pub async fn answered_loan_ids(
        &self,
        scope: &str,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        // Past every `<prefix><id>`: the prefix ends in a space, whose next character is `!`.
        let (from, to) = (format!("{prefix}{after}"), format!("{}!", prefix.trim_end()));
        let sql = "select request_id from idempotency where scope = $1 \
             and request_id > $2 and request_id < $3 order by request_id limit $4";
        let ids: Vec<String> = on_pool!(self, p => sqlx::query_scalar(sql)
            .bind(scope).bind(&from).bind(&to).bind(i64::from(limit))
            .fetch_all(p).await?);
        // (The run's summary, `<request id> (summary)`, is in the range too; it names no loan.)
        Ok(ids
            .into_iter()
            .filter_map(|id| id.strip_prefix(prefix).map(str::to_string))
            .filter(|id| crate::domain::ids::check_loan_ref(id).is_ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each shape of `ListLoans`' filter, as a bank, a finance office, an auditor and a
    /// household's listing make it, reads a range of an index on SQLite, not the whole table
    /// (the plan SQLite chose for the one statement of every shape: `SCAN loan`). Which index
    /// where several serve is the planner's (on an empty table here, without statistics).
    #[tokio::test]
    async fn each_filter_shape_reads_a_range_of_an_index() {
        let (_dir, db) = crate::store::fresh_sqlite().await;
        db.migrate().await.unwrap();
        let Db::Sqlite(pool, ..) = &db else { unreachable!("a SQLite database") };
        let some = |s: &str| Some(s.to_string());
        let shapes = [
            (
                LoanFilter {
                    bank_id: some("B1"),
                    after_loan_id: some("B1-0001"),
                    ..LoanFilter::default()
                },
                "loan_bank_idx",
            ),
            (
                LoanFilter {
                    ledger_id: some("L"),
                    bank_id: some("B1"),
                    after_loan_id: some("B1-0001"),
                    ..LoanFilter::default()
                },
                "",
            ),
            (
                LoanFilter {
                    ledger_id: some("L"),
                    statuses: StatusFilter::Live,
                    ..LoanFilter::default()
                },
                "loan_ledger_idx",
            ),
            (
                LoanFilter { household_id: some("H1"), ..LoanFilter::default() },
                "loan_household_idx",
            ),
            (
                LoanFilter {
                    ledger_id: some("L"),
                    household_id: some("H1"),
                    statuses: StatusFilter::Is(LoanStatus::Overdue),
                    ..LoanFilter::default()
                },
                "",
            ),
        ];
        for (filter, index) in shapes {
            let mut q = QueryBuilder::<sqlx::Sqlite>::new("explain query plan ");
            push_list_loans(&mut q, &filter, 10);
            let sql = q.sql().as_str().to_string();
            let plan: Vec<String> = q
                .build_query_as::<(i64, i64, i64, String)>()
                .fetch_all(pool)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.3)
                .collect();
            assert!(
                plan.iter().any(|step| step.starts_with("SEARCH loan USING INDEX")
                    && step.contains(index)
                    && step.contains("=?")),
                "{sql}: {plan:?}"
            );
        }
    }
}
