//! A ledger's stored read models in full, for `verify` to compare with the ones it rebuilds from
//! the journal: loans, account balances, and the registry (banks, households, their statuses,
//! policy versions).
//!
//! Each query is the same text on both backends. On SQLite they run through rusqlite on a
//! blocking thread, like the journal scan ([`super::scan`]), and loans are decoded there too:
//! through sqlx's driver, which copies every value of every row on its thread and hands each row
//! over to the caller's, reading a million loans took 25.7 s and a million household statuses
//! 18.7 s of a 36.8 s verify (BENCHMARKS.md, change 21). On PostgreSQL the loans are read as a
//! binary `COPY` ([`super::pgcopy`], as the journal is), the rest through sqlx.

use sqlx::{PgPool, SqlitePool};

use super::pgcopy::{CopyReader, LEDGER_SETTING, copy_out, scan_settings};
use super::rows::{BalanceRow, LoanRow, loan_columns};
use super::scan::{open_sqlite_reader, panicked, sqlite_file};
use super::{Db, StoreError};
use crate::domain::loan::LoanState;
use crate::domain::money::Fen;
use crate::domain::policy::PolicyVersion;

/// No `order by`: PostgreSQL sorted the loans (wide rows, and a table half empty since migration
/// 0003) in two parallel workers spilling to disk, 84 ms at 20,000 loans against 16 ms for the
/// plain scan; [`Db::ledger_loans`] sorts them itself.
const LOANS_SQL: &str = concat!("select ", loan_columns!(), " from loan where ledger_id = $1");
const BALANCES_SQL: &str =
    "select account, balance_fen from account_balance where ledger_id = $1 order by account";
const BANKS_SQL: &str = "select bank_id, name from bank where ledger_id = $1 order by bank_id";
const HOUSEHOLDS_SQL: &str = "select household_id, head_name, head_id_number, township, village \
                              from household where ledger_id = $1 order by household_id";
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
}

impl RegistrySnapshot {
    /// Puts every list in the order the stored registry is read in: identifiers as bytes (both
    /// backends' key columns compare as bytes: SQLite's always, PostgreSQL's since migration
    /// 0005), statuses by household then seq, policy versions by date.
    pub fn sort(&mut self) {
        self.banks.sort();
        self.households.sort();
        self.statuses.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        self.policies.sort_by_key(|v| v.effective_date);
    }
}

type Household = (String, String, String, String, String);
type Status = (String, i64, String, String, String);

impl Db {
    /// All loans of a ledger, by loan id.
    pub async fn ledger_loans(&self, ledger_id: &str) -> Result<Vec<LoanState>, StoreError> {
        let mut loans = match self {
            Db::Sqlite(pool, ..) => {
                sqlite_rows(pool, LOANS_SQL, ledger_id, |r| loan_row(r)?.into_state()).await?
            }
            Db::Postgres(pool, _) => postgres_loans(pool, ledger_id).await?,
        };
        loans
            .sort_unstable_by(|a: &LoanState, b: &LoanState| a.terms.loan_id.cmp(&b.terms.loan_id));
        Ok(loans)
    }

    /// All account balances of a ledger, by account.
    pub async fn ledger_balances(&self, ledger_id: &str) -> Result<Vec<(String, Fen)>, StoreError> {
        match self {
            Db::Sqlite(pool, ..) => {
                sqlite_rows(pool, BALANCES_SQL, ledger_id, |r| Ok((r.get(0)?, Fen(r.get(1)?))))
                    .await
            }
            Db::Postgres(pool, _) => {
                let rows: Vec<BalanceRow> =
                    sqlx::query_as(BALANCES_SQL).bind(ledger_id).fetch_all(pool).await?;
                Ok(rows.into_iter().map(|r| (r.account, Fen(r.balance_fen))).collect())
            }
        }
    }

    pub async fn registry_snapshot(&self, ledger_id: &str) -> Result<RegistrySnapshot, StoreError> {
        let (banks, households, statuses) = match self {
            Db::Sqlite(pool, ..) => {
                let banks = sqlite_rows(pool, BANKS_SQL, ledger_id, |r| Ok((r.get(0)?, r.get(1)?)));
                let households = sqlite_rows(pool, HOUSEHOLDS_SQL, ledger_id, |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                });
                let statuses = sqlite_rows(pool, STATUSES_SQL, ledger_id, |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                });
                (banks.await?, households.await?, statuses.await?)
            }
            Db::Postgres(pool, _) => {
                let banks: Vec<(String, String)> =
                    sqlx::query_as(BANKS_SQL).bind(ledger_id).fetch_all(pool).await?;
                let households: Vec<Household> =
                    sqlx::query_as(HOUSEHOLDS_SQL).bind(ledger_id).fetch_all(pool).await?;
                let statuses: Vec<Status> =
                    sqlx::query_as(STATUSES_SQL).bind(ledger_id).fetch_all(pool).await?;
                (banks, households, statuses)
            }
        };
        let policies = self.list_policies(ledger_id).await?;
        Ok(RegistrySnapshot { banks, households, statuses, policies })
    }
}

/// The loans of `ledger_id` on PostgreSQL, as a binary `COPY` read in place
/// ([`super::pgcopy`]): through sqlx's rows each of the 28 columns of every loan was decoded
/// into a value of its own, found by its column name.
async fn postgres_loans(pool: &PgPool, ledger_id: &str) -> Result<Vec<LoanState>, StoreError> {
    let mut tx = pool.begin().await?;
    scan_settings(&mut tx, ledger_id).await?;
    let statement = format!(
        "copy (select {} from loan where ledger_id = current_setting('{LEDGER_SETTING}')) \
         to stdout (format binary)",
        loan_columns!()
    );
    let data = copy_out(&mut tx, &statement, Vec::new(), 0).await?;
    tx.rollback().await?;
    let mut r = CopyReader::new(&data)?;
    let mut loans = Vec::new();
    while r.row(LOAN_COLUMNS)? {
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
        loans.push(row.into_state()?);
    }
    Ok(loans)
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

/// Runs `sql` (one parameter: the ledger id) on a read-only rusqlite connection of its own on a
/// blocking thread, mapping each row there.
async fn sqlite_rows<T, F>(
    pool: &SqlitePool,
    sql: &'static str,
    ledger_id: &str,
    map: F,
) -> Result<Vec<T>, StoreError>
where
    T: Send + 'static,
    F: Fn(&rusqlite::Row<'_>) -> Result<T, StoreError> + Send + 'static,
{
    let path = sqlite_file(pool)?;
    let ledger_id = ledger_id.to_string();
    tokio::task::spawn_blocking(move || {
        let conn = open_sqlite_reader(&path)?;
        let mut stmt = conn.prepare(sql)?;
        stmt.query_and_then([&ledger_id], map)?.collect()
    })
    .await
    .map_err(panicked)?
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
            policies,
        };
        snapshot.sort();
        assert_eq!(snapshot.banks[0].0, "ABD");
        assert_eq!(snapshot.households[0].0, "HH2");
        let order: Vec<(&str, i64)> =
            snapshot.statuses.iter().map(|s| (s.0.as_str(), s.1)).collect();
        assert_eq!(order, [("HH2", 1), ("hh1", 9), ("hh1", 10)]);
        assert_eq!(snapshot.policies, default_versions());
    }
}
