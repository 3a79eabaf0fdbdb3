//! A ledger's stored read models in full, for `verify` to compare with the ones it rebuilds from
//! the journal: loans, account balances, loan history links (`journal_loan`), the idempotency
//! records' keys, and the registry (banks, households, their statuses, policy versions).
//!
//! Each query is the same text on both backends. On SQLite they run through rusqlite on a
//! blocking thread, like the journal scan ([`super::scan`]), and loans are decoded there too:
//! through sqlx's driver, which copies every value of every row on its thread and hands each row
//! over to the caller's, reading a million loans took 25.7 s and a million household statuses
//! 18.7 s of a 36.8 s verify (BENCHMARKS-HISTORY.md, change 21). On PostgreSQL the loans, the links and
//! the idempotency records' keys are read as a binary `COPY` ([`super::pgcopy`], as the journal
//! is), the rest through sqlx.

use sqlx::PgPool;

use super::pgcopy::{CopyReader, LEDGER_SETTING, READ_ONLY, binary_copy, copy_out, scan_settings};
use super::rows::{
    BalanceRow, CLAIM_PERIODS_SQL, CLAIMS_SQL, COMPENSATIONS_SQL, LoanRow, POLICIES_SQL,
    POOL_MEMBERS_SQL, POOLS_SQL, PolicyRow, RISK_FUND_SQL, journal_ledgers_cte, loan_columns,
};
use super::scan::{open_sqlite_reader, panicked, row_text, sqlite_file};
use super::schema;
use super::{Db, StoreError};
use crate::domain::loan::LoanState;
use crate::domain::money::Fen;
use crate::domain::policy::PolicyVersion;

/// No `order by`: PostgreSQL sorted the loans (wide rows, and a table half empty since migration
/// 0003) in two parallel workers spilling to disk, 84 ms at 20,000 loans against 16 ms for the
/// plain scan; [`Db::stored_models`] sorts them itself.
const LOANS_SQL: &str = concat!("select ", loan_columns!(), " from loan where ledger_id = $1");
const BALANCES_SQL: &str =
    "select account, balance_fen from account_balance where ledger_id = $1 order by account";
const BANKS_SQL: &str = "select bank_id, name from bank where ledger_id = $1 order by bank_id";
const HOUSEHOLDS_SQL: &str = "select household_id, head_name, head_id_number, township, village \
                              from household where ledger_id = $1 order by household_id";
/// In the primary key's order: each loan's links together, their seqs ascending.
const LINKS_SQL: &str =
    "select loan_id, seq from journal_loan where ledger_id = $1 order by loan_id, seq";
/// The idempotency records a ledger's verify reads, in one read of the table (which has no
/// index by ledger: any filter on it reads it whole): the ledger's own (the fourth column null),
/// with their key and seq; those stored under no ledger (`''`), with their answer (the fifth
/// column): the answers recorded outside every chain, of settlement runs, their summaries,
/// refusals and LPR entries answered before the LPR table had its chain, which a retry is given
/// as stored; and those stored under a ledger id that has no journal (strays, as
/// [`STRAYS_SQL`]'s), with that id. The ledgers with a journal are found first, one step of
/// the journal's key a ledger (`chained`, a loose index scan): a `not exists` on the journal
/// a record was planned by PostgreSQL as a hash of the whole journal's keys, read in full
/// whenever the database holds another ledger.
const REQUESTS_SQL: &str = concat!(
    journal_ledgers_cte!(),
    "select scope, request_id, seq, \
     case when ledger_id = $1 then null else ledger_id end, \
     case when ledger_id = '' then result_json end \
     from idempotency where ledger_id = $1 or ledger_id = '' \
     or ledger_id not in (select l from chained where l is not null)"
);

/// An idempotency record stored under no ledger, with its answer ([`REQUESTS_SQL`]): a retry of
/// its request is given that answer, and nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnchainedAnswer {
    pub scope: String,
    pub request_id: String,
    pub result_json: String,
}

/// The idempotency records [`REQUESTS_SQL`] reads, sorted out as they are read.
#[derive(Debug, Default)]
struct Requests {
    /// The ledger's own, as [`StoredModels::requests`].
    own: Vec<(i64, u64)>,
    unchained: Vec<UnchainedAnswer>,
    /// The ledger ids without a journal that records are stored under.
    stray_ledgers: std::collections::BTreeSet<String>,
}

impl Requests {
    fn push(
        &mut self,
        keys: &std::hash::RandomState,
        (scope, request_id, seq): (&str, &str, i64),
        ledger_id: Option<&str>,
        result_json: Option<&str>,
    ) {
        match ledger_id {
            None => self.own.push((seq, request_digest(keys, scope, request_id))),
            Some("") => self.unchained.push(UnchainedAnswer {
                scope: scope.to_string(),
                request_id: request_id.to_string(),
                result_json: result_json.unwrap_or_default().to_string(),
            }),
            Some(other) => {
                if !self.stray_ledgers.contains(other) {
                    self.stray_ledgers.insert(other.to_string());
                }
            }
        }
    }

    /// The stray records as rows of [`STRAYS_SQL`], for [`strays_described`].
    fn strays(&self) -> impl Iterator<Item = (String, Option<String>)> + '_ {
        self.stray_ledgers.iter().map(|l| ("idempotency".to_string(), Some(l.clone())))
    }
}
const STATUSES_SQL: &str = "select s.household_id, s.seq, s.effective_date, s.status, s.reason \
                            from household_status s join household h \
                            on h.household_id = s.household_id \
                            where h.ledger_id = $1 order by s.household_id, s.seq";

/// A ledger's registry as stored, for `verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrySnapshot {
    /// (bank_id, name)
    pub banks: Vec<(String, String)>,
    /// (household_id, head_name, head_id_number, township, village)
    pub households: Vec<(String, String, String, String, String)>,
    /// (household_id, seq, effective_date, status, reason), by household then seq.
    pub statuses: Vec<(String, i64, String, String, String)>,
    pub policies: Vec<PolicyVersion>,
    /// The seq that recorded each of `policies`, in their order.
    pub policy_seqs: Vec<i64>,
    /// The ledger's name (`None`: no ledger row, or no `ledger.created` in the journal).
    pub ledger_name: Option<String>,
    /// The LPR table's rows (effective_date, tenor, rate), by date then tenor: those of the
    /// LPR table's chain ([`crate::domain::lpr::LPR_LEDGER`]), none for a region's ledger.
    pub lpr: Vec<(String, String, String)>,
    /// Subsidy claims (claim_id, bank_id, status, claim_json, summary_json, last_seq,
    /// submitted_seq), by claim id.
    pub claims: Vec<ClaimRow>,
    /// The loan-periods claimed (loan_id, due_date, claim_id), by loan id then due date.
    pub claim_periods: Vec<(String, String, String)>,
    /// The ledger's risk fund (fund_json, balance_fen, last_seq): none or one.
    pub risk_fund: Vec<(String, i64, i64)>,
    /// Its compensations (loan_id, bank_id, compensation_json, last_seq), by loan id.
    pub compensations: Vec<(String, String, String, i64)>,
    /// Its pools (pool_id, bank_id, status, pool_json, last_seq), by pool id.
    pub pools: Vec<(String, String, String, String, i64)>,
    /// Its pools' member loans (loan_id, pool_id), by loan id.
    pub pool_members: Vec<(String, String)>,
}

/// A subsidy claim's row: (claim_id, bank_id, status, claim_json, summary_json, last_seq,
/// submitted_seq).
pub type ClaimRow = (String, String, String, String, String, i64, i64);

impl RegistrySnapshot {
    /// Puts every list in the order the stored registry is read in: identifiers as bytes (both
    /// backends' key columns compare as bytes: SQLite's always, PostgreSQL's since migration
    /// 0005), statuses by household then seq, policy versions by date.
    pub fn sort(&mut self) {
        self.banks.sort();
        self.households.sort();
        self.statuses.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        // Those of one date in the order they were recorded, as their ordinals keep them.
        let mut policies: Vec<(PolicyVersion, i64)> = std::mem::take(&mut self.policies)
            .into_iter()
            .zip(std::mem::take(&mut self.policy_seqs))
            .collect();
        policies.sort_by_key(|(v, seq)| (v.effective_date, *seq));
        (self.policies, self.policy_seqs) = policies.into_iter().unzip();
        self.lpr.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        self.claims.sort_by(|a, b| a.0.cmp(&b.0));
        self.claim_periods.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        self.compensations.sort_by(|a, b| a.0.cmp(&b.0));
        self.pools.sort_by(|a, b| a.0.cmp(&b.0));
        self.pool_members.sort();
    }
}

type Household = (String, String, String, String, String);
type Status = (String, i64, String, String, String);

/// A ledger's read models as stored, all read in one snapshot: those of the journal up to the
/// head in that snapshot ([`Db::stored_models`]).
#[derive(Debug, Default)]
pub struct StoredModels {
    pub registry: RegistrySnapshot,
    /// By account.
    pub balances: Vec<(String, Fen)>,
    /// By loan id.
    pub loans: Vec<LoanState>,
    pub links: StoredLinks,
    /// The idempotency records of the ledger's transactions as (seq, [`request_digest`] of
    /// their key), by seq.
    pub requests: Vec<(i64, u64)>,
    /// The idempotency records stored under no ledger, with their answers ([`REQUESTS_SQL`]),
    /// for verify to check that each is of a write that has no journal transaction.
    pub unchained_answers: Vec<UnchainedAnswer>,
    /// Journal rows whose `seq` has no place in the chain, described: past every integer (text,
    /// a blob or a real that large, stored by hand on SQLite, whose columns take any type), or
    /// below 1 (the chain starts at 1), so that neither the head nor the scan reaches them. The
    /// first ten ([`ODD_SEQS_SQL`], [`PG_ODD_SEQS_SQL`]).
    pub odd_seqs: Vec<String>,
    /// How the database's guards differ from the migrations' ([`super::schema`]), described.
    pub schema: Vec<String>,
    /// Rows stored under a ledger id that has no journal ([`STRAYS_SQL`]), described.
    pub strays: Vec<String>,
    /// Loan rows that cannot be read as a loan (a value changed behind the service's back into
    /// one no loan has): (loan id, why). Reported by verify, not failed on.
    pub unreadable_loans: Vec<(String, String)>,
    /// Rows of the other read models that cannot be read (SQLite, whose columns take a value of
    /// any type: a balance or a seq stored as text by hand), described; left out of the models.
    pub unreadable_rows: Vec<String>,
}

/// The digest of a request key (the writer's idempotency key: scope, that is the journal's
/// actor, and request id) under `keys`, drawn afresh for each verify: SipHash, keyed, so that
/// no stored text can be chosen to collide with another's.
pub fn request_digest(keys: &std::hash::RandomState, scope: &str, request_id: &str) -> u64 {
    use std::hash::BuildHasher;
    keys.hash_one((scope, request_id))
}

/// The loan history links as stored (`journal_loan`): by loan id, each loan's seqs ascending.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StoredLinks(pub Vec<(String, Vec<i64>)>);

impl StoredLinks {
    /// Adds a link read in key order (a loan's links follow each other).
    fn push(&mut self, loan_id: &str, seq: i64) {
        match self.0.last_mut() {
            Some((last, seqs)) if last == loan_id => seqs.push(seq),
            _ => self.0.push((loan_id.to_string(), vec![seq])),
        }
    }
}

/// A count read from the store as a size: the lists and maps a verify fills (one entry a
/// transaction, or one a loan) are sized once from the head and the number of loans
/// ([`Db::stored_models`] sends both), instead of growing by doubling: at a million loans every
/// doubling copied the entries so far into memory the kernel had to supply (and zero) afresh,
/// about a fifth of that verify's time (BENCHMARKS-HISTORY.md, change 74). A count that is not one
/// (a negative `seq` stored by hand, which verify reports) sizes nothing.
pub fn size(count: i64) -> usize {
    usize::try_from(count).unwrap_or(0)
}

/// An empty list with room for `entries` if it can be had, and otherwise left to grow as it
/// fills: the sizes come from the stored rows (a `seq` stored by hand can be any number), and a
/// size is a hint, never a reason for a verify to fail.
pub fn sized<T>(entries: usize) -> Vec<T> {
    let mut list = Vec::new();
    let _ = list.try_reserve_exact(entries);
    list
}

const HEAD_SQL: &str = "select coalesce(max(seq), 0) from journal_txn where ledger_id = $1";
/// SQLite's: the largest number (text and blobs sort after every number; a `seq` stored as
/// such by hand has no place in the chain, [`ODD_SEQS_SQL`]). Along the key, as `max` alone.
const SQLITE_HEAD_SQL: &str =
    "select max(seq) from journal_txn where ledger_id = $1 and seq <= 9223372036854775807";
/// SQLite's journal rows whose `seq` is past every integer (text, blobs, reals too large) or
/// before the chain's first (0, negative): no place in the chain. Two range searches of the
/// key (one `or` of both read the ledger's whole key: 29 ms at 300,000 rows).
const ODD_SEQS_SQL: &str = "select seq from (\
      select seq from journal_txn where ledger_id = $1 and seq < 1 \
      union all \
      select seq from journal_txn where ledger_id = $1 and seq > 9223372036854775807) \
    order by seq limit 10";
/// Loans, banks and households stored under a ledger id (another than the one verified) that
/// has no journal: no ledger's verify reads them, yet the service does (a loan is found by its
/// id, its bank's listing, its household's cap and its borrower's other loans, in any ledger;
/// banks and households by their ids), so that one row inserted by hand under a ledger id of
/// its own would change what a verified ledger's banks see and its households may borrow.
/// So too a claimed loan-period (found by its loan: a claim of that loan for that period is
/// then marked claimed before and not paid), and the claims, funds and pools. The idempotency
/// records under such a ledger id are found by [`REQUESTS_SQL`], in its read of that table.
/// Every verify reports them (a row under another ledger that has a journal is that ledger's
/// verify's to report: not in its journal). Grouped by ledger id, along `loan_ledger_idx` for
/// the loans; the ledger id as text, whatever was stored. Not sorted here: on PostgreSQL the
/// read runs where the scans turned sorts off, and a sort would cost it a JIT compilation.
const STRAYS_SQL: &str = "select t, cast(l as text) from (\
     select 'loan' as t, ledger_id as l from loan group by ledger_id \
     union all select 'bank', ledger_id from bank group by ledger_id \
     union all select 'household', ledger_id from household group by ledger_id \
     union all select 'subsidy_claim', ledger_id from subsidy_claim group by ledger_id \
     union all select 'subsidy_claim_period', ledger_id from subsidy_claim_period \
       group by ledger_id \
     union all select 'risk_fund', ledger_id from risk_fund group by ledger_id \
     union all select 'risk_compensation', ledger_id from risk_compensation group by ledger_id \
     union all select 'pool', ledger_id from pool group by ledger_id \
     union all select 'pool_member', ledger_id from pool_member group by ledger_id) x \
     where l <> $1 and not exists (select 1 from journal_txn j where j.ledger_id = x.l)";

/// The rows of [`STRAYS_SQL`], described, by table and ledger id.
fn strays_described(mut rows: Vec<(String, Option<String>)>) -> Vec<String> {
    rows.sort();
    rows.iter()
        .map(|(table, ledger_id)| {
            let ledger = ledger_id.as_ref().map_or("null".into(), |l| format!("{l:?}"));
            format!("{table} rows are stored under ledger {ledger}, which has no journal")
        })
        .collect()
}

/// PostgreSQL's journal rows before the chain's first seq (its `seq` is a bigint: none past it).
const PG_ODD_SEQS_SQL: &str =
    "select seq from journal_txn where ledger_id = $1 and seq < 1 order by seq limit 10";
/// Sent after the head, so that the scan does not wait for it: on PostgreSQL, whose `loan`
/// pages are seldom all visible (every posting updates a loan), it read 0.2–0.7 s of rows at a
/// million loans (30 ms on SQLite).
const LOAN_COUNT_SQL: &str = "select count(*) from loan where ledger_id = $1";
const LEDGER_NAME_SQL: &str = "select name from ledger where ledger_id = $1";
/// The LPR table, the read model of the LPR table's chain: read for that ledger only.
const LPR_SQL: &str = "select effective_date, tenor, rate from lpr where $1 = 'lpr' \
                       order by effective_date, tenor";

impl Db {
    /// The read models of `ledger_id` as stored, read in one read transaction, so that they
    /// are those of the journal up to the head in its snapshot, whose `seq` is sent on `head`
    /// as soon as it is read (0 for an empty journal), then the number of loans on `loans`
    /// ([`size`]): `verify` scans the journal up to there
    /// meanwhile, and compares like with like while writes go on (each read in a snapshot of
    /// its own, a write committed between two of them was reported as a difference).
    /// The idempotency records' keys are read as their digests under `keys`
    /// ([`request_digest`]).
    pub async fn stored_models(
        &self,
        ledger_id: &str,
        head: tokio::sync::oneshot::Sender<i64>,
        loans: tokio::sync::oneshot::Sender<i64>,
        keys: std::hash::RandomState,
    ) -> Result<StoredModels, StoreError> {
        let counts = (head, loans);
        let mut models = match self {
            Db::Sqlite(pool, ..) => {
                let path = sqlite_file(pool)?;
                let ledger_id = ledger_id.to_string();
                tokio::task::spawn_blocking(move || sqlite_models(&path, &ledger_id, counts, &keys))
                    .await
                    .map_err(panicked)??
            }
            Db::Postgres(pool, _) => postgres_models(pool, ledger_id, counts, &keys).await?,
        };
        models
            .loans
            .sort_unstable_by(|a: &LoanState, b: &LoanState| a.terms.loan_id.cmp(&b.terms.loan_id));
        models.requests.sort_unstable();
        Ok(models)
    }
}

/// Where [`Db::stored_models`] sends the journal's head and then the number of loans.
type Counts = (tokio::sync::oneshot::Sender<i64>, tokio::sync::oneshot::Sender<i64>);

/// [`Db::stored_models`] on SQLite: one read-only rusqlite connection and one read transaction
/// (its snapshot taken by the first read, the head).
fn sqlite_models(
    path: &std::path::Path,
    ledger_id: &str,
    (head, loans): Counts,
    keys: &std::hash::RandomState,
) -> Result<StoredModels, StoreError> {
    let conn = open_sqlite_reader(path)?;
    conn.execute_batch("begin")?;
    // A real (stored by hand) is rounded up, for the scan to reach it and report it.
    let seq = conn.query_row(SQLITE_HEAD_SQL, [ledger_id], |r| {
        Ok(match r.get_ref(0)? {
            rusqlite::types::ValueRef::Integer(seq) => seq,
            rusqlite::types::ValueRef::Real(seq) => seq.ceil() as i64,
            _ => 0,
        })
    })?;
    // The scan waits for it; should it have gone away (verify dropped), the reads go on to no
    // purpose but end soon.
    let _ = head.send(seq);
    let odd_seqs = sqlite_rows(&conn, ODD_SEQS_SQL, ledger_id, |r| {
        Ok(match r.get_ref(0)? {
            rusqlite::types::ValueRef::Text(text) => {
                format!("the text {:?}", String::from_utf8_lossy(text))
            }
            rusqlite::types::ValueRef::Blob(blob) => format!("a blob of {} bytes", blob.len()),
            rusqlite::types::ValueRef::Real(number) => format!("the number {number}"),
            rusqlite::types::ValueRef::Integer(number) => format!("the number {number}"),
            other => format!("{other:?}"),
        })
    })?;
    let schema = schema::sqlite_problems(&conn)?;
    // A ledger id of bytes that are not UTF-8 (a blob stored by hand) is shown lossily.
    let mut strays = sqlite_rows(&conn, STRAYS_SQL, ledger_id, |r| {
        let ledger_id = match r.get_ref(1)? {
            rusqlite::types::ValueRef::Text(text) => {
                Some(String::from_utf8_lossy(text).into_owned())
            }
            _ => None,
        };
        Ok((r.get(0)?, ledger_id))
    })?;
    let loan_count: i64 = conn.query_row(LOAN_COUNT_SQL, [ledger_id], |r| r.get(0))?;
    let _ = loans.send(loan_count);
    let (transactions, loan_count) = (size(seq), size(loan_count));
    // A row that cannot be read is reported and left out, not the end of verify.
    let mut unreadable_rows = Vec::new();
    let mut lenient = Lenient(&mut unreadable_rows);
    let banks =
        lenient.rows(&conn, BANKS_SQL, ledger_id, "bank", |r| Ok((r.get(0)?, r.get(1)?)))?;
    let households = lenient.rows(&conn, HOUSEHOLDS_SQL, ledger_id, "household", |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })?;
    let statuses = lenient.rows(&conn, STATUSES_SQL, ledger_id, "household_status", |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })?;
    let policies = lenient.rows(&conn, POLICIES_SQL, ledger_id, "policy_version", |r| {
        let seq = r.get(2)?;
        Ok((
            PolicyRow { effective_date: r.get(0)?, params_json: r.get(1)?, seq }.into_version()?,
            seq,
        ))
    })?;
    let (policies, policy_seqs) = policies.into_iter().unzip();
    let ledger_name =
        lenient.rows(&conn, LEDGER_NAME_SQL, ledger_id, "ledger", |r| Ok(r.get(0)?))?.pop();
    let lpr = lenient
        .rows(&conn, LPR_SQL, ledger_id, "lpr", |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let claims = lenient.rows(&conn, CLAIMS_SQL, ledger_id, "subsidy_claim", |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
    })?;
    let claim_periods =
        lenient.rows(&conn, CLAIM_PERIODS_SQL, ledger_id, "subsidy_claim_period", |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let risk_fund = lenient.rows(&conn, RISK_FUND_SQL, ledger_id, "risk_fund", |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    let compensations =
        lenient.rows(&conn, COMPENSATIONS_SQL, ledger_id, "risk_compensation", |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
    let pools = lenient.rows(&conn, POOLS_SQL, ledger_id, "pool", |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })?;
    let pool_members = lenient
        .rows(&conn, POOL_MEMBERS_SQL, ledger_id, "pool_member", |r| Ok((r.get(0)?, r.get(1)?)))?;
    let balances = lenient.rows(&conn, BALANCES_SQL, ledger_id, "account_balance", |r| {
        Ok((r.get(0)?, Fen(r.get(1)?)))
    })?;
    let mut loans = sized(loan_count);
    let mut unreadable_loans = Vec::new();
    sqlite_each(&conn, LOANS_SQL, ledger_id, |r| {
        match loan_row(r).and_then(LoanRow::into_state) {
            Ok(loan) => loans.push(loan),
            Err(e) => {
                let loan_id = match r.get_ref(0)? {
                    rusqlite::types::ValueRef::Text(id) => String::from_utf8_lossy(id).into_owned(),
                    other => format!("{other:?}"),
                };
                unreadable_loans.push((loan_id, e.to_string()));
            }
        }
        Ok(())
    })?;
    let mut links = StoredLinks(sized(loan_count));
    lenient.each(&conn, LINKS_SQL, ledger_id, "journal_loan", |r| {
        links.push(key_text(r, 0, "journal_loan")?, r.get(1)?);
        Ok(())
    })?;
    let mut requests = Requests { own: sized(transactions), ..Requests::default() };
    lenient.each(&conn, REQUESTS_SQL, ledger_id, "idempotency", |r| {
        let (scope, request_id) = (key_text(r, 0, "idempotency")?, key_text(r, 1, "idempotency")?);
        let ledger = match r.get_ref(3)? {
            rusqlite::types::ValueRef::Null => None,
            _ => Some(key_text(r, 3, "idempotency")?),
        };
        let answer = match r.get_ref(4)? {
            rusqlite::types::ValueRef::Null => None,
            _ => Some(row_text(r, 4, "idempotency: an answer that is not text")?),
        };
        requests.push(keys, (scope, request_id, r.get(2)?), ledger, answer);
        Ok(())
    })?;
    conn.execute_batch("commit")?;
    strays.extend(requests.strays());
    let strays = strays_described(strays);
    Ok(StoredModels {
        registry: RegistrySnapshot {
            banks,
            households,
            statuses,
            policies,
            policy_seqs,
            ledger_name,
            lpr,
            claims,
            claim_periods,
            risk_fund,
            compensations,
            pools,
            pool_members,
        },
        balances,
        loans,
        links,
        requests: requests.own,
        unchained_answers: requests.unchained,
        odd_seqs,
        schema,
        strays,
        unreadable_loans,
        unreadable_rows,
    })
}

/// [`Db::stored_models`] on PostgreSQL: one `REPEATABLE READ` read-only transaction (its
/// snapshot taken by the first read, the head), whose snapshot two more connections import
/// (`pg_export_snapshot`) to read the loans, and the balances and links, beside the registry and
/// the idempotency records: read one after the other on one connection, verify took a tenth
/// longer.
async fn postgres_models(
    pool: &PgPool,
    ledger_id: &str,
    (head, loans): Counts,
    keys: &std::hash::RandomState,
) -> Result<StoredModels, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(READ_ONLY).execute(&mut *tx).await?;
    // The first read takes the transaction's snapshot; the export names that snapshot.
    let seq: i64 = sqlx::query_scalar(HEAD_SQL).bind(ledger_id).fetch_one(&mut *tx).await?;
    let snapshot: String =
        sqlx::query_scalar("select pg_export_snapshot()").fetch_one(&mut *tx).await?;
    let _ = head.send(seq);
    let loan_count: i64 =
        sqlx::query_scalar(LOAN_COUNT_SQL).bind(ledger_id).fetch_one(&mut *tx).await?;
    let _ = loans.send(loan_count);
    let (transactions, loan_count) = (size(seq), size(loan_count));
    // The loans, and the balances and links, on connections of their own, in the same snapshot.
    let import = format!("set transaction snapshot '{}'", snapshot.replace('\'', ""));
    let in_snapshot = || async {
        let mut t = pool.begin().await?;
        sqlx::query(READ_ONLY).execute(&mut *t).await?;
        // The snapshot's id is PostgreSQL's own text (hex digits and dashes).
        sqlx::raw_sql(sqlx::AssertSqlSafe(import.clone())).execute(&mut *t).await?;
        Ok::<_, StoreError>(t)
    };
    let loans = async {
        let mut t = in_snapshot().await?;
        let loans = postgres_loans(&mut t, ledger_id, loan_count).await?;
        t.rollback().await?;
        Ok::<_, StoreError>(loans)
    };
    let balances_links = async {
        let mut t = in_snapshot().await?;
        let rows: Vec<BalanceRow> =
            sqlx::query_as(BALANCES_SQL).bind(ledger_id).fetch_all(&mut *t).await?;
        let balances = rows.into_iter().map(|r| (r.account, Fen(r.balance_fen))).collect();
        let links = postgres_links(&mut t, ledger_id, loan_count).await?;
        t.rollback().await?;
        Ok::<_, StoreError>((balances, links))
    };
    let registry = async {
        let banks: Vec<(String, String)> =
            sqlx::query_as(BANKS_SQL).bind(ledger_id).fetch_all(&mut *tx).await?;
        let households: Vec<Household> =
            sqlx::query_as(HOUSEHOLDS_SQL).bind(ledger_id).fetch_all(&mut *tx).await?;
        let statuses: Vec<Status> =
            sqlx::query_as(STATUSES_SQL).bind(ledger_id).fetch_all(&mut *tx).await?;
        let policies: Vec<PolicyRow> =
            sqlx::query_as(POLICIES_SQL).bind(ledger_id).fetch_all(&mut *tx).await?;
        // A policy row whose parameters cannot be read (a row inserted by hand: PostgreSQL's
        // guards refuse updates and deletes, not inserts) is reported and left out, as on
        // SQLite, not the end of verify.
        let mut unreadable_rows = Vec::new();
        let mut policies_read = Vec::with_capacity(policies.len());
        let mut policy_seqs = Vec::with_capacity(policies.len());
        for row in policies {
            let seq = row.seq;
            match row.into_version() {
                Ok(version) => {
                    policies_read.push(version);
                    policy_seqs.push(seq);
                }
                Err(e) if unreadable_row(&e) => {
                    unreadable_rows.push(format!("a row of policy_version cannot be read: {e}"));
                }
                Err(e) => return Err(e),
            }
        }
        let policies = policies_read;
        let ledger_name: Option<String> =
            sqlx::query_scalar(LEDGER_NAME_SQL).bind(ledger_id).fetch_optional(&mut *tx).await?;
        let lpr: Vec<(String, String, String)> =
            sqlx::query_as(LPR_SQL).bind(ledger_id).fetch_all(&mut *tx).await?;
        // The idempotency records on this connection: on a fourth, no faster (measured).
        let requests = postgres_requests(&mut tx, ledger_id, keys, transactions).await?;
        let odd: Vec<i64> =
            sqlx::query_scalar(PG_ODD_SEQS_SQL).bind(ledger_id).fetch_all(&mut *tx).await?;
        let odd_seqs = odd.into_iter().map(|seq| format!("the number {seq}")).collect();
        let mut strays: Vec<(String, Option<String>)> =
            sqlx::query_as(STRAYS_SQL).bind(ledger_id).fetch_all(&mut *tx).await?;
        strays.extend(requests.strays());
        let strays = strays_described(strays);
        let claims: Vec<ClaimRow> =
            sqlx::query_as(CLAIMS_SQL).bind(ledger_id).fetch_all(&mut *tx).await?;
        let claim_periods: Vec<(String, String, String)> =
            sqlx::query_as(CLAIM_PERIODS_SQL).bind(ledger_id).fetch_all(&mut *tx).await?;
        let risk_fund: Vec<(String, i64, i64)> =
            sqlx::query_as(RISK_FUND_SQL).bind(ledger_id).fetch_all(&mut *tx).await?;
        let compensations: Vec<(String, String, String, i64)> =
            sqlx::query_as(COMPENSATIONS_SQL).bind(ledger_id).fetch_all(&mut *tx).await?;
        let pools: Vec<(String, String, String, String, i64)> =
            sqlx::query_as(POOLS_SQL).bind(ledger_id).fetch_all(&mut *tx).await?;
        let pool_members: Vec<(String, String)> =
            sqlx::query_as(POOL_MEMBERS_SQL).bind(ledger_id).fetch_all(&mut *tx).await?;
        let registry = RegistrySnapshot {
            banks,
            households,
            statuses,
            policies,
            policy_seqs,
            ledger_name,
            lpr,
            claims,
            claim_periods,
            risk_fund,
            compensations,
            pools,
            pool_members,
        };
        Ok::<_, StoreError>((registry, requests, odd_seqs, strays, unreadable_rows))
    };
    // The exporting transaction stays open until the importing ones have read.
    let (loans, balances_links, registry) = tokio::join!(loans, balances_links, registry);
    let (
        (registry, requests, odd_seqs, strays, unreadable_rows),
        (balances, links),
        (loans, unreadable_loans),
    ) = (registry?, balances_links?, loans?);
    // The guards once the models are read: among them, each of their catalog reads would wait
    // for a turn on the task that decodes the loans.
    let schema = schema::postgres_problems(&mut tx).await?;
    tx.rollback().await?;
    Ok(StoredModels {
        registry,
        balances,
        loans,
        links,
        requests: requests.own,
        unchained_answers: requests.unchained,
        odd_seqs,
        schema,
        strays,
        unreadable_loans,
        unreadable_rows,
    })
}

/// A copy statement of `sql`, its parameter read from [`LEDGER_SETTING`].
fn copy_statement(sql: &str) -> String {
    binary_copy(&sql.replace("$1", &format!("current_setting('{LEDGER_SETTING}')")))
}

/// Runs `sql` (of `fields` columns; its one parameter `ledger_id`) as a binary `COPY` on
/// `conn`, and calls `row` with the reader at each row's first field.
async fn copy_rows(
    conn: &mut sqlx::PgConnection,
    ledger_id: &str,
    sql: &str,
    fields: usize,
    mut row: impl FnMut(&mut CopyReader<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    scan_settings(conn, ledger_id).await?;
    let data = copy_out(conn, &copy_statement(sql), Vec::new(), 0).await?;
    let mut r = CopyReader::new(&data)?;
    while r.row(fields)? {
        row(&mut r)?;
    }
    Ok(())
}

/// The idempotency records [`REQUESTS_SQL`] reads for `ledger_id`, on PostgreSQL.
async fn postgres_requests(
    conn: &mut sqlx::PgConnection,
    ledger_id: &str,
    keys: &std::hash::RandomState,
    transactions: usize,
) -> Result<Requests, StoreError> {
    let mut requests = Requests { own: sized(transactions), ..Requests::default() };
    copy_rows(conn, ledger_id, REQUESTS_SQL, 5, |r| {
        let key = (r.text()?, r.text()?, r.int8()?);
        let (ledger, answer) = (r.text_or_null()?, r.text_or_null()?);
        requests.push(keys, key, ledger, answer);
        Ok(())
    })
    .await?;
    Ok(requests)
}

/// The loan history links of `ledger_id` on PostgreSQL, in key order.
async fn postgres_links(
    conn: &mut sqlx::PgConnection,
    ledger_id: &str,
    loans: usize,
) -> Result<StoredLinks, StoreError> {
    let mut links = StoredLinks(sized(loans));
    copy_rows(conn, ledger_id, LINKS_SQL, 2, |r| {
        let loan_id = r.text()?;
        links.push(loan_id, r.int8()?);
        Ok(())
    })
    .await?;
    Ok(links)
}

/// The loans of `ledger_id` on PostgreSQL, as a binary `COPY` read in place
/// ([`super::pgcopy`]): through sqlx's rows each of the 28 columns of every loan was decoded
/// into a value of its own, found by its column name.
async fn postgres_loans(
    conn: &mut sqlx::PgConnection,
    ledger_id: &str,
    count: usize,
) -> Result<(Vec<LoanState>, Vec<(String, String)>), StoreError> {
    let mut loans = sized(count);
    let mut unreadable = Vec::new();
    copy_rows(conn, ledger_id, LOANS_SQL, LOAN_COLUMNS, |r| {
        let row = LoanRow {
            loan_id: r.text()?.to_string(),
            ledger_id: r.text()?.to_string(),
            bank_id: r.text()?.to_string(),
            contract_number: r.text()?.to_string(),
            household_id: r.text()?.to_string(),
            borrower_name: r.text()?.to_string(),
            borrower_id_number: r.text()?.to_string(),
            principal_fen: r.int8()?,
            annual_rate: r.text()?.to_string(),
            contract_date: r.text()?.to_string(),
            term_months: r.int4_field()?,
            maturity_date: r.text()?.to_string(),
            repayment_method: r.text()?.to_string(),
            settlement_frequency: r.text()?.to_string(),
            purpose: r.text()?.to_string(),
            collateral_free: r.boolean()?,
            guarantee_free: r.boolean()?,
            status: r.text()?.to_string(),
            disbursed_fen: r.int8()?,
            principal_outstanding_fen: r.int8()?,
            principal_repaid_fen: r.int8()?,
            interest_paid_fen: r.int8()?,
            disbursed_on: r.text_or_null()?.map(str::to_string),
            last_value_date: r.text()?.to_string(),
            renews_loan_id: r.text_or_null()?.map(str::to_string),
            policy_json: r.text()?.to_string(),
            servicing_json: r.text()?.to_string(),
            last_seq: r.int8()?,
        };
        let loan_id = row.loan_id.clone();
        match row.into_state() {
            Ok(loan) => loans.push(loan),
            Err(e) => unreadable.push((loan_id, e.to_string())),
        }
        Ok(())
    })
    .await?;
    Ok((loans, unreadable))
}

/// The columns of [`loan_columns!`], counted from its text.
const LOAN_COLUMNS: usize = {
    let text = loan_columns!().as_bytes();
    let (mut i, mut count) = (0, 1);
    while i < text.len() {
        if text[i] == b',' {
            count += 1;
        }
        i += 1;
    }
    count
};

/// Column `i` of a row of `table` as text, lent.
fn key_text<'r>(r: &'r rusqlite::Row<'_>, i: usize, table: &str) -> Result<&'r str, StoreError> {
    row_text(r, i, format_args!("{table}: a key that is not text"))
}

/// Whether `e` is a row's value that cannot be read as its model's (another type, text that is
/// not UTF-8, a value out of range, or one no model has), not a failure of the read.
fn unreadable_row(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Corrupt(_)
            | StoreError::Rusqlite(
                rusqlite::Error::InvalidColumnType(..)
                    | rusqlite::Error::FromSqlConversionFailure(..)
                    | rusqlite::Error::IntegralValueOutOfRange(..)
                    | rusqlite::Error::Utf8Error(..)
            )
    )
}

/// Reads of SQLite's read models that report a row that cannot be read (a value of another
/// type stored by hand: SQLite's columns take any) and go on, instead of failing the verify.
struct Lenient<'a>(&'a mut Vec<String>);

impl Lenient<'_> {
    /// As [`sqlite_each`], a row `each` cannot read noted and skipped (`table` names it).
    fn each(
        &mut self,
        conn: &rusqlite::Connection,
        sql: &str,
        ledger_id: &str,
        table: &str,
        mut each: impl FnMut(&rusqlite::Row<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let unreadable = &mut *self.0;
        sqlite_each(conn, sql, ledger_id, |r| match each(r) {
            Err(e) if unreadable_row(&e) => {
                unreadable.push(format!("a row of {table} cannot be read: {e}"));
                Ok(())
            }
            other => other,
        })
    }

    /// As [`sqlite_rows`], leniently ([`Lenient::each`]).
    fn rows<T>(
        &mut self,
        conn: &rusqlite::Connection,
        sql: &str,
        ledger_id: &str,
        table: &str,
        map: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.each(conn, sql, ledger_id, table, |r| {
            out.push(map(r)?);
            Ok(())
        })?;
        Ok(out)
    }
}

/// Runs `sql` (one parameter: the ledger id) on `conn`, calling `each` with each row.
fn sqlite_each(
    conn: &rusqlite::Connection,
    sql: &str,
    ledger_id: &str,
    mut each: impl FnMut(&rusqlite::Row<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([ledger_id])?;
    while let Some(r) = rows.next()? {
        each(r)?;
    }
    Ok(())
}

/// Runs `sql` (one parameter: the ledger id) on `conn`, mapping each row.
fn sqlite_rows<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    ledger_id: &str,
    map: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    sqlite_each(conn, sql, ledger_id, |r| {
        out.push(map(r)?);
        Ok(())
    })?;
    Ok(out)
}

/// A loan row read by rusqlite, its columns in the order of [`loan_columns!`].
pub(super) fn loan_row(r: &rusqlite::Row<'_>) -> Result<LoanRow, StoreError> {
    Ok(LoanRow {
        loan_id: r.get(0)?,
        ledger_id: r.get(1)?,
        bank_id: r.get(2)?,
        contract_number: r.get(3)?,
        household_id: r.get(4)?,
        borrower_name: r.get(5)?,
        borrower_id_number: r.get(6)?,
        principal_fen: r.get(7)?,
        annual_rate: r.get(8)?,
        contract_date: r.get(9)?,
        term_months: r.get(10)?,
        maturity_date: r.get(11)?,
        repayment_method: r.get(12)?,
        settlement_frequency: r.get(13)?,
        purpose: r.get(14)?,
        collateral_free: r.get(15)?,
        guarantee_free: r.get(16)?,
        status: r.get(17)?,
        disbursed_fen: r.get(18)?,
        principal_outstanding_fen: r.get(19)?,
        principal_repaid_fen: r.get(20)?,
        interest_paid_fen: r.get(21)?,
        disbursed_on: r.get(22)?,
        last_value_date: r.get(23)?,
        renews_loan_id: r.get(24)?,
        policy_json: r.get(25)?,
        servicing_json: r.get(26)?,
        last_seq: r.get(27)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::default_versions;

    fn text(s: &str) -> String {
        s.to_string()
    }

    /// Identifiers as bytes (upper case first), statuses by seq as a number, policy versions by
    /// date, whatever order they came in.
    #[test]
    fn a_snapshot_sorts_ids_as_bytes() {
        let status = |household: &str, seq: i64| {
            (text(household), seq, text("2016-01-01"), text("poor"), String::new())
        };
        let household = |id: &str| (text(id), text("n"), text("i"), text("t"), text("v"));
        let mut policies = default_versions();
        policies.reverse();
        let mut snapshot = RegistrySnapshot {
            banks: vec![(text("abc"), text("x")), (text("ABD"), text("y"))],
            households: vec![household("hh1"), household("HH2")],
            statuses: vec![status("hh1", 10), status("hh1", 9), status("HH2", 1)],
            policy_seqs: vec![1; 2],
            policies,
            ledger_name: None,
            lpr: vec![
                (text("2025-05-20"), text("5y"), text("0.035")),
                (text("2015-10-24"), text("5y"), text("0.0475")),
                (text("2025-05-20"), text("1y"), text("0.03")),
            ],
            claims: Vec::new(),
            claim_periods: Vec::new(),
            risk_fund: Vec::new(),
            compensations: Vec::new(),
            pools: Vec::new(),
            pool_members: Vec::new(),
        };
        snapshot.sort();
        assert_eq!(snapshot.banks[0].0, "ABD");
        assert_eq!(snapshot.households[0].0, "HH2");
        let order: Vec<(&str, i64)> =
            snapshot.statuses.iter().map(|s| (s.0.as_str(), s.1)).collect();
        assert_eq!(order, [("HH2", 1), ("hh1", 9), ("hh1", 10)]);
        assert_eq!(snapshot.policies, default_versions());
        let lpr: Vec<(&str, &str)> =
            snapshot.lpr.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
        assert_eq!(lpr, [("2015-10-24", "5y"), ("2025-05-20", "1y"), ("2025-05-20", "5y")]);
    }
}
