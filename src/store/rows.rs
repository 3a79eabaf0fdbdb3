//! Rows as stored, and their conversion to domain values.

use crate::domain::date::{format_date, parse_date};
use crate::domain::household::{HouseholdStatus, StatusEntry};
use crate::domain::identity::IdNumber;
use crate::domain::loan::{LoanState, LoanStatus, LoanTerms, RepaymentMethod, SettlementFrequency};
use crate::domain::lpr::{LprEntry, TenorBucket};
use crate::domain::money::Fen;
use crate::domain::policy::{PolicyParams, PolicyVersion};
use crate::domain::pool::Pool;
use crate::domain::rate::AnnualRate;
use crate::domain::risk_fund::{Compensation, Fund};
use crate::domain::subsidy_claim::{Claim, ClaimSummary};
use crate::ledger::posting::{Posting, unpack};

use super::StoreError;

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: {value:?}"))
}

pub(crate) fn date(what: &str, text: &str) -> Result<chrono::NaiveDate, StoreError> {
    parse_date(text).ok_or_else(|| corrupt(what, text))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LedgerRow {
    pub ledger_id: String,
    pub name: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BankRow {
    pub bank_id: String,
    pub ledger_id: String,
    pub name: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HouseholdRow {
    pub household_id: String,
    pub ledger_id: String,
    pub head_name: String,
    pub head_id_number: String,
    pub township: String,
    pub village: String,
}

/// The `household` table's columns, in [`HouseholdRow`]'s order (for `concat!`).
macro_rules! household_columns {
    () => {
        "household_id, ledger_id, head_name, head_id_number, township, village"
    };
}
pub(crate) use household_columns;

/// A recursive CTE `chained(l)`: the journal's ledger ids, found one step of its key a ledger
/// (a loose index scan; `l` null at its end), for `concat!` (verify's idempotency read, a
/// backup's chain heads).
macro_rules! journal_ledgers_cte {
    () => {
        "with recursive chained(l) as (\
           select min(ledger_id) from journal_txn \
           union all \
           select (select min(ledger_id) from journal_txn where ledger_id > l) from chained \
           where l is not null) "
    };
}
pub(crate) use journal_ledgers_cte;

/// The `household_status` table's columns, in [`super::write::Staged::status_rows`]' order.
macro_rules! status_columns {
    () => {
        "household_id, seq, effective_date, status, reason"
    };
}
pub(crate) use status_columns;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StatusRow {
    pub effective_date: String,
    pub status: String,
    pub reason: String,
}

impl StatusRow {
    pub fn into_entry(self) -> Result<StatusEntry, StoreError> {
        Ok(StatusEntry {
            status: HouseholdStatus::parse(&self.status)
                .ok_or_else(|| corrupt("household status", &self.status))?,
            effective_date: date("status date", &self.effective_date)?,
            reason: self.reason,
        })
    }
}

/// A household with its status series in recording order.
#[derive(Debug, Clone)]
pub struct HouseholdView {
    pub row: HouseholdRow,
    pub statuses: Vec<StatusEntry>,
}

/// A ledger's subsidy claims by claim id (one parameter: the ledger id), as
/// [`super::bulk::ClaimRow`]s.
pub const CLAIMS_SQL: &str = "select claim_id, bank_id, status, claim_json, summary_json, last_seq, \
     submitted_seq from subsidy_claim where ledger_id = $1 order by claim_id";

/// A ledger's risk fund (one parameter: the ledger id): (fund_json, balance_fen, last_seq).
pub const RISK_FUND_SQL: &str =
    "select fund_json, balance_fen, last_seq from risk_fund where ledger_id = $1";

/// A ledger's fund's JSON (one parameter: the ledger id).
pub const FUND_JSON_SQL: &str = "select fund_json from risk_fund where ledger_id = $1";

/// A loan's compensation's JSON (one parameter: the loan id).
pub const COMPENSATION_JSON_SQL: &str =
    "select compensation_json from risk_compensation where loan_id = $1";

/// A ledger's compensations by loan id (one parameter: the ledger id).
pub const COMPENSATIONS_SQL: &str = "select loan_id, bank_id, compensation_json, last_seq \
     from risk_compensation where ledger_id = $1 order by loan_id";

/// A pool's JSON (one parameter: the pool id).
pub const POOL_JSON_SQL: &str = "select pool_json from pool where pool_id = $1";

/// A ledger's pools by pool id (one parameter: the ledger id): (pool_id, bank_id, status,
/// pool_json, last_seq).
pub const POOLS_SQL: &str = "select pool_id, bank_id, status, pool_json, last_seq \
     from pool where ledger_id = $1 order by pool_id";

/// A ledger's pool members by loan id (one parameter: the ledger id): (loan_id, pool_id).
pub const POOL_MEMBERS_SQL: &str =
    "select loan_id, pool_id from pool_member where ledger_id = $1 order by loan_id";

/// The loan-periods claimed in a ledger by loan then due date (one parameter: the ledger id).
pub const CLAIM_PERIODS_SQL: &str = "select loan_id, due_date, claim_id \
     from subsidy_claim_period where ledger_id = $1 order by loan_id, due_date";

/// A ledger's policy versions by date, those of one date in the order they were set (one
/// parameter: the ledger id), as [`PolicyRow`]s.
pub const POLICIES_SQL: &str = "select effective_date, params_json, seq from policy_version \
     where ledger_id = $1 order by effective_date, ordinal";

/// [`POLICIES_SQL`] of the versions recorded up to a seq (the second parameter).
pub const POLICIES_THROUGH_SQL: &str = "select effective_date, params_json, seq \
     from policy_version where ledger_id = $1 and seq <= $2 order by effective_date, ordinal";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PolicyRow {
    pub effective_date: String,
    pub params_json: String,
    /// The journal transaction that recorded the version (`policy.set`, or `ledger.created`
    /// for the defaults a ledger starts with).
    pub seq: i64,
}

impl PolicyRow {
    pub fn into_version(self) -> Result<PolicyVersion, StoreError> {
        let params: PolicyParams = serde_json::from_str(&self.params_json)
            .map_err(|e| StoreError::Corrupt(format!("policy params: {e}")))?;
        Ok(PolicyVersion { effective_date: date("policy date", &self.effective_date)?, params })
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LprRow {
    pub effective_date: String,
    pub tenor: String,
    pub rate: String,
}

impl LprRow {
    pub fn into_entry(self) -> Result<LprEntry, StoreError> {
        Ok(LprEntry {
            effective_from: date("lpr date", &self.effective_date)?,
            bucket: TenorBucket::parse(&self.tenor)
                .ok_or_else(|| corrupt("lpr tenor", &self.tenor))?,
            rate: AnnualRate::parse(&self.rate).map_err(|_| corrupt("lpr rate", &self.rate))?,
        })
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LoanRow {
    pub loan_id: String,
    pub ledger_id: String,
    pub bank_id: String,
    pub contract_number: String,
    pub household_id: String,
    pub borrower_name: String,
    pub borrower_id_number: String,
    pub principal_fen: i64,
    pub annual_rate: String,
    pub contract_date: String,
    pub term_months: i32,
    pub maturity_date: String,
    pub repayment_method: String,
    pub settlement_frequency: String,
    pub purpose: String,
    pub collateral_free: bool,
    pub guarantee_free: bool,
    pub status: String,
    pub disbursed_fen: i64,
    pub principal_outstanding_fen: i64,
    pub principal_repaid_fen: i64,
    pub interest_paid_fen: i64,
    pub disbursed_on: Option<String>,
    pub last_value_date: String,
    pub renews_loan_id: Option<String>,
    pub policy_json: String,
    pub servicing_json: String,
    pub last_seq: i64,
}

/// The policy figures a loan keeps from its contract date.
#[derive(serde::Serialize, serde::Deserialize)]
struct LoanPolicy {
    #[serde(deserialize_with = "crate::domain::rate::recorded_uplift")]
    overdue_uplift: rust_decimal::Decimal,
    #[serde(deserialize_with = "crate::domain::rate::recorded_uplift")]
    misuse_uplift: rust_decimal::Decimal,
    #[serde(deserialize_with = "crate::domain::policy::recorded_grace_days")]
    grace_days: u32,
    rounding: crate::domain::money::Rounding,
    extension_months_max: u32,
    /// Left out when 90, as in the rows stored before it was kept.
    #[serde(
        default = "crate::domain::policy::claim_overdue_days_default",
        skip_serializing_if = "crate::domain::policy::is_claim_overdue_days_default",
        deserialize_with = "crate::domain::policy::recorded_claim_overdue_days"
    )]
    claim_overdue_days: u32,
}

/// The column list of `loan`, in `LoanRow` order (a macro so that `concat!` can build static SQL).
macro_rules! loan_columns {
    () => {
        "loan_id, ledger_id, bank_id, contract_number, household_id, \
    borrower_name, borrower_id_number, principal_fen, annual_rate, contract_date, term_months, \
    maturity_date, repayment_method, settlement_frequency, purpose, collateral_free, \
    guarantee_free, status, disbursed_fen, principal_outstanding_fen, principal_repaid_fen, \
    interest_paid_fen, disbursed_on, last_value_date, renews_loan_id, policy_json, \
         servicing_json, last_seq"
    };
}
pub(crate) use loan_columns;

impl LoanRow {
    pub fn into_state(self) -> Result<LoanState, StoreError> {
        let id = IdNumber::parse(&self.borrower_id_number)
            .map_err(|_| corrupt("borrower id number", &self.loan_id))?;
        let policy: LoanPolicy = serde_json::from_str(&self.policy_json)
            .map_err(|e| StoreError::Corrupt(format!("loan policy: {e}")))?;
        let servicing = serde_json::from_str(&self.servicing_json)
            .map_err(|e| StoreError::Corrupt(format!("loan servicing: {e}")))?;
        let terms = LoanTerms {
            renews_loan_id: self.renews_loan_id,
            overdue_uplift: policy.overdue_uplift,
            misuse_uplift: policy.misuse_uplift,
            grace_days: policy.grace_days,
            rounding: policy.rounding,
            extension_months_max: policy.extension_months_max,
            claim_overdue_days: policy.claim_overdue_days,
            loan_id: self.loan_id,
            ledger_id: self.ledger_id,
            bank_id: self.bank_id,
            contract_number: self.contract_number,
            household_id: self.household_id,
            borrower_name: self.borrower_name,
            borrower_id_number: self.borrower_id_number,
            borrower_birth_date: id.birth_date(),
            principal_fen: Fen(self.principal_fen),
            annual_rate: AnnualRate::parse(&self.annual_rate)
                .map_err(|_| corrupt("loan rate", &self.annual_rate))?,
            contract_date: date("contract date", &self.contract_date)?,
            term_months: u32::try_from(self.term_months)
                .map_err(|_| corrupt("term months", &self.term_months.to_string()))?,
            maturity_date: date("maturity date", &self.maturity_date)?,
            repayment_method: RepaymentMethod::parse(&self.repayment_method)
                .ok_or_else(|| corrupt("repayment method", &self.repayment_method))?,
            settlement_frequency: SettlementFrequency::parse(&self.settlement_frequency)
                .ok_or_else(|| corrupt("settlement frequency", &self.settlement_frequency))?,
            purpose: self.purpose,
            collateral_free: self.collateral_free,
            guarantee_free: self.guarantee_free,
        };
        Ok(LoanState {
            terms: std::sync::Arc::new(terms),
            status: LoanStatus::parse(&self.status)
                .ok_or_else(|| corrupt("loan status", &self.status))?,
            disbursed_fen: Fen(self.disbursed_fen),
            principal_outstanding_fen: Fen(self.principal_outstanding_fen),
            principal_repaid_fen: Fen(self.principal_repaid_fen),
            interest_paid_fen: Fen(self.interest_paid_fen),
            disbursed_on: self
                .disbursed_on
                .as_deref()
                .map(|d| date("disbursed on", d))
                .transpose()?,
            last_value_date: date("last value date", &self.last_value_date)?,
            last_seq: u64::try_from(self.last_seq).map_err(|_| corrupt("last seq", "negative"))?,
            servicing,
        })
    }

    pub fn from_state(s: &LoanState) -> LoanRow {
        let t = &s.terms;
        let LoanChangeRow {
            loan_id,
            status,
            disbursed_fen,
            principal_outstanding_fen,
            principal_repaid_fen,
            interest_paid_fen,
            disbursed_on,
            last_value_date,
            servicing_json,
            last_seq,
        } = LoanChangeRow::from_state(s);
        LoanRow {
            loan_id,
            ledger_id: t.ledger_id.clone(),
            bank_id: t.bank_id.clone(),
            contract_number: t.contract_number.clone(),
            household_id: t.household_id.clone(),
            borrower_name: t.borrower_name.clone(),
            borrower_id_number: t.borrower_id_number.clone(),
            principal_fen: t.principal_fen.0,
            annual_rate: t.annual_rate.to_string(),
            contract_date: format_date(t.contract_date),
            term_months: i32::try_from(t.term_months).unwrap_or(i32::MAX),
            maturity_date: format_date(t.maturity_date),
            repayment_method: t.repayment_method.as_str().to_string(),
            settlement_frequency: t.settlement_frequency.as_str().to_string(),
            purpose: t.purpose.clone(),
            collateral_free: t.collateral_free,
            guarantee_free: t.guarantee_free,
            status: status.to_string(),
            disbursed_fen,
            principal_outstanding_fen,
            principal_repaid_fen,
            interest_paid_fen,
            disbursed_on,
            last_value_date,
            renews_loan_id: t.renews_loan_id.clone(),
            policy_json: serde_json::to_string(&LoanPolicy {
                overdue_uplift: t.overdue_uplift,
                misuse_uplift: t.misuse_uplift,
                grace_days: t.grace_days,
                rounding: t.rounding,
                extension_months_max: t.extension_months_max,
                claim_overdue_days: t.claim_overdue_days,
            })
            .unwrap_or_default(),
            servicing_json,
            last_seq,
        }
    }
}

/// The columns of a loan's read model that change after its contract.
#[derive(Debug, Clone)]
pub struct LoanChangeRow {
    pub loan_id: String,
    pub status: &'static str,
    pub disbursed_fen: i64,
    pub principal_outstanding_fen: i64,
    pub principal_repaid_fen: i64,
    pub interest_paid_fen: i64,
    pub disbursed_on: Option<String>,
    pub last_value_date: String,
    pub servicing_json: String,
    pub last_seq: i64,
}

impl LoanChangeRow {
    pub fn from_state(s: &LoanState) -> LoanChangeRow {
        LoanChangeRow {
            loan_id: s.terms.loan_id.clone(),
            status: s.status.as_str(),
            disbursed_fen: s.disbursed_fen.0,
            principal_outstanding_fen: s.principal_outstanding_fen.0,
            principal_repaid_fen: s.principal_repaid_fen.0,
            interest_paid_fen: s.interest_paid_fen.0,
            disbursed_on: s.disbursed_on.map(format_date),
            last_value_date: format_date(s.last_value_date),
            servicing_json: serde_json::to_string(&s.servicing).unwrap_or_default(),
            last_seq: i64::try_from(s.last_seq).unwrap_or(i64::MAX),
        }
    }
}

/// A journal row as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JournalRow {
    pub ledger_id: String,
    pub seq: i64,
    pub kind: String,
    pub value_date: String,
    pub recorded_at_us: i64,
    pub actor: String,
    pub request_id: String,
    pub command_json: String,
    pub prev_hash: String,
    pub hash: String,
    /// The postings, packed ([`crate::ledger::posting::pack`]): one row per transaction, not one
    /// per posting (migration 0004 on SQLite, 0007 on PostgreSQL).
    pub postings: String,
}

macro_rules! journal_columns {
    () => {
        "ledger_id, seq, kind, value_date, recorded_at_us, actor, \
         request_id, command_json, prev_hash, hash, postings"
    };
}
pub(crate) use journal_columns;
impl JournalRow {
    /// The row with its postings read from their text.
    pub fn into_entry(self) -> Result<JournalEntry, StoreError> {
        let postings = unpack(&self.postings).map_err(|e| {
            StoreError::Corrupt(format!("postings of {} seq {}: {e}", self.ledger_id, self.seq))
        })?;
        Ok(JournalEntry { row: self, postings })
    }
}

/// A journal transaction with its postings.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub row: JournalRow,
    pub postings: Vec<Posting>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IdempotencyKeyRow {
    pub scope: String,
    pub request_id: String,
    pub fingerprint: String,
    pub result_json: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub token_id: String,
    pub role: String,
    pub org: String,
    pub expires_at_us: Option<i64>,
}

/// A token as `token list` shows it (never its secret, which is not stored).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenListRow {
    pub token_id: String,
    pub role: String,
    pub org: String,
    pub created_at_us: i64,
    pub revoked_at_us: Option<i64>,
    /// `None`: it does not expire.
    pub expires_at_us: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BalanceRow {
    pub account: String,
    pub balance_fen: i64,
}

/// A claim's row texts: the claim, and its summary ([`ClaimSummary`]), as JSON.
pub fn claim_texts(claim: &Claim) -> Result<(String, String), StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("subsidy claim: {e}"));
    let json = serde_json::to_string(claim).map_err(corrupt)?;
    let summary = serde_json::to_string(&ClaimSummary::of(claim)).map_err(corrupt)?;
    Ok((json, summary))
}

/// A claim as its row's `claim_json` holds it.
pub fn claim_from_json(claim_id: &str, json: &str) -> Result<Claim, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("subsidy claim {claim_id}: {e}")))
}

/// A risk fund as its row's `fund_json` holds it.
/// A subsidy claim's row (one parameter: the claim id): its JSON and the seq of its submission,
/// as [`claim_with_seq`] reads them.
pub const CLAIM_SQL: &str =
    "select claim_json, submitted_seq from subsidy_claim where claim_id = $1";

/// A row of [`CLAIM_SQL`]: the claim and the seq of its submission.
pub fn claim_with_seq(
    claim_id: &str,
    (json, seq): (String, i64),
) -> Result<(Claim, u64), StoreError> {
    Ok((claim_from_json(claim_id, &json)?, u64::try_from(seq).unwrap_or_default()))
}

pub fn fund_from_json(ledger_id: &str, json: &str) -> Result<Fund, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("risk fund of {ledger_id}: {e}")))
}

/// A compensation as its row's `compensation_json` holds it.
pub fn compensation_from_json(loan_id: &str, json: &str) -> Result<Compensation, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("compensation of loan {loan_id}: {e}")))
}

/// A pool as its row's `pool_json` holds it.
pub fn pool_from_json(pool_id: &str, json: &str) -> Result<Pool, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("pool {pool_id}: {e}")))
}

/// A fund's or a compensation's row text.
pub fn fund_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("risk fund: {e}")))
}

/// The member loans of a pool (one parameter: the pool id).
pub const LOANS_OF_POOL_SQL: &str = concat!(
    "select ",
    loan_columns!(),
    " from loan where loan_id in (select loan_id from pool_member where pool_id = $1)"
);

/// A ledger's loans that may have been live, or contracted, at the end of a date (`$2`): those
/// contracted by then that are live now, or were closed after it.
pub const LOANS_OF_LEDGER_ON_SQL: &str = concat!(
    "select ",
    loan_columns!(),
    " from loan where ledger_id = $1 and contract_date <= $2 \
     and (status not in ('settled', 'written_off') or last_value_date > $2 or last_seq > $3)"
);

/// The live programme loans of a ledger (contracted, active or overdue), for its risk fund's
/// limits and figures (one parameter: the ledger id).
pub const LIVE_LOANS_OF_LEDGER_SQL: &str = concat!(
    "select ",
    loan_columns!(),
    " from loan where ledger_id = $1 and status not in ('settled', 'written_off')"
);
