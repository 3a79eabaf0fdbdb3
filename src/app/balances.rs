//! Account balances as of a date, for auditors (DESIGN.md: "balances as of any date"), summed
//! from the journal alone.
//!
//! The stored balances (`account_balance`) are the balances now; a date's are not kept. They
//! are summed here from each transaction's postings, as `verify` sums them, over one scan of
//! the ledger's journal ([`crate::store::scan`]): every transaction value-dated on or before
//! the date counts, whenever it was recorded (a settlement run recorded late counts on its
//! settlement day), and one value-dated after it does not. Without a date every transaction
//! recorded counts: the balances now, from the journal rather than the read model `verify`
//! compares them with.
//!
//! The scan reads the journal to its end in pages, each in a snapshot of its own; the journal
//! only grows and commits in `seq` order, so what is summed is one prefix of it, through the
//! last transaction read (`through_seq`). A caller may give that seq back: the scan then stops
//! there, and the answer is the one given before, whatever has been recorded since (a
//! transaction dated back changes the balances as of a date it precedes).
//!
//! A transaction dated on or before the date whose postings cannot be read, or one whose value
//! date is stored as another type (SQLite), ends the sum with an error: a balance that leaves
//! it out or counts it on the wrong day would be wrong without saying so (`verify` reports
//! where the journal breaks). One dated after the date is not read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::StopOnDrop;
use super::error::{AppError, journal_broken};
use crate::collections::HashMap;
use crate::domain::date::{BusinessDate, format_date};
use crate::ledger::posting::{Posting, add_up, unpack_into};
use crate::store::Db;
use crate::store::scan::{JournalVisitor, TxnRef};

/// A ledger's balances through a transaction of its journal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Balances {
    /// The last transaction read (0: the journal is empty).
    pub through_seq: u64,
    /// By account name (bytewise order), debit positive.
    pub accounts: Vec<(String, i64)>,
}

/// The balances of `ledger_id`'s accounts whose name starts with `prefix`, summed from the
/// transactions value-dated on or before `as_of` (`None`: every transaction) and recorded up
/// to `through_seq` (`None`: to the journal's head), so that an answer given once can be given
/// again whatever was recorded, dated back, since.
pub async fn balances_as_of(
    db: &Db,
    ledger_id: &str,
    as_of: Option<BusinessDate>,
    prefix: &str,
    through_seq: Option<u64>,
) -> Result<Balances, AppError> {
    // The scan runs on a thread of its own on SQLite: should the caller go away, the guard
    // stops it rather than let it run to the journal's end unseen, out of the turn the call
    // held (since 2026-12-07: scans of calls given up piled up).
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let summing = Summing {
        as_of: as_of.map(format_date),
        prefix: prefix.to_string(),
        stop,
        ..Summing::default()
    };
    let through = through_seq.map_or(i64::MAX, |seq| i64::try_from(seq).unwrap_or(i64::MAX));
    let summed = db.scan_journal_through(ledger_id, through, summing).await?;
    summed.balances(ledger_id)
}

/// The scan's visitor: the sums so far.
#[derive(Default)]
struct Summing {
    /// `YYYY-MM-DD`, as value dates are stored (text in that form orders as the dates do).
    as_of: Option<String>,
    prefix: String,
    /// By account ([`add_up`]).
    sums: HashMap<String, i128>,
    through_seq: u64,
    /// The transaction being read's postings (kept to reuse their allocations).
    postings: Vec<Posting>,
    /// What stopped the sum: the seq, and what its transaction does.
    failed: Option<(u64, String)>,
    /// Set when the call is given up.
    stop: Arc<AtomicBool>,
}

impl JournalVisitor for Summing {
    fn txn(&mut self, t: TxnRef<'_>) {
        let seq = u64::try_from(t.seq).unwrap_or_default();
        self.through_seq = seq;
        // On SQLite a value date stored as another type reads as empty text, which would count
        // at every date.
        if let Some((column @ "value_date", what)) = t.mistyped {
            self.failed = Some((seq, format!("has its {column} stored as {what}")));
            return;
        }
        // A value date not in the stored form (another column's type named first, so that its
        // own went unnamed, or text stored by hand) would compare with the date asked for as
        // text, and count on the wrong day.
        if self.as_of.is_some() && !stored_date(t.value_date) {
            let shown = t.value_date;
            self.failed = Some((seq, format!("has a value_date, {shown:?}, that is not a date")));
            return;
        }
        if self.as_of.as_deref().is_some_and(|as_of| t.value_date > as_of) {
            return;
        }
        if let Err(e) = unpack_into(t.postings, &mut self.postings) {
            self.failed = Some((seq, format!("has postings that cannot be read: {e}")));
            return;
        }
        let prefix = &self.prefix;
        add_up(&mut self.sums, self.postings.iter().filter(|p| p.account.starts_with(prefix)));
    }

    fn stopped(&self) -> bool {
        self.failed.is_some() || self.stop.load(Ordering::Relaxed)
    }
}

/// Whether `text` has the form value dates are stored in, `YYYY-MM-DD` (the form the dates'
/// text order rests on; the date itself was checked when written).
fn stored_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b.iter()
            .enumerate()
            .all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
}

impl Summing {
    /// The balances of `ledger_id`'s accounts summed.
    fn balances(self, ledger_id: &str) -> Result<Balances, AppError> {
        if let Some((seq, what)) = self.failed {
            return Err(journal_broken(
                ledger_id,
                seq,
                &what,
                "the balances are not summed over it",
            ));
        }
        let mut sums: Vec<(String, i128)> = self.sums.into_iter().collect();
        // Names are unique: by name alone, bytewise (the first past 64 bits is then named).
        sums.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let accounts = sums
            .into_iter()
            .map(|(account, sum)| match i64::try_from(sum) {
                Ok(balance) => Ok((account, balance)),
                Err(_) => Err(AppError::Internal(format!(
                    "the balance of {account} is past 64 bits: {sum} fen"
                ))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Balances { through_seq: self.through_seq, accounts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn<'a>(seq: i64, value_date: &'a str, postings: &'a str) -> TxnRef<'a> {
        TxnRef {
            seq,
            kind: "loan.repaid",
            value_date,
            recorded_at_us: 0,
            actor: "bank:B1",
            request_id: "r",
            command_json: "{}",
            prev_hash: "",
            hash: "",
            postings,
            mistyped: None,
        }
    }

    fn summed(as_of: Option<&str>, prefix: &str, txns: &[TxnRef<'_>]) -> Result<Balances, String> {
        let mut s = Summing {
            as_of: as_of.map(str::to_string),
            prefix: prefix.to_string(),
            ..Summing::default()
        };
        for t in txns {
            if s.stopped() {
                break;
            }
            s.txn(*t);
        }
        s.balances("450121").map_err(|e| e.to_string())
    }

    fn owned(list: &[(&str, i64)]) -> Vec<(String, i64)> {
        list.iter().map(|(a, b)| (a.to_string(), *b)).collect()
    }

    /// Transactions count by value date, not by when they were recorded; the prefix picks the
    /// accounts; every account touched is listed, one netting to zero too.
    #[test]
    fn balances_by_value_date_and_prefix() {
        let txns = [
            txn(1, "2021-01-25", "[]"),
            txn(2, "2021-01-25", r#"[["loan/L/principal",500],["bank/B/cash",-500]]"#),
            // Recorded after the next one, dated before it.
            txn(3, "2021-03-20", r#"[["loan/L/interest",7],["bank/B/interest_income",-7]]"#),
            txn(4, "2021-03-01", r#"[["bank/B/cash",100],["loan/L/principal",-100]]"#),
            txn(5, "2021-03-21", r#"[["bank/B/cash",7],["loan/L/interest",-7]]"#),
        ];
        let all = owned(&[
            ("bank/B/cash", -393),
            ("bank/B/interest_income", -7),
            ("loan/L/interest", 0),
            ("loan/L/principal", 400),
        ]);
        assert_eq!(summed(None, "", &txns), Ok(Balances { through_seq: 5, accounts: all }));
        let on_20th = owned(&[
            ("bank/B/cash", -400),
            ("bank/B/interest_income", -7),
            ("loan/L/interest", 7),
            ("loan/L/principal", 400),
        ]);
        assert_eq!(
            summed(Some("2021-03-20"), "", &txns),
            Ok(Balances { through_seq: 5, accounts: on_20th })
        );
        let before = owned(&[("loan/L/principal", 500)]);
        assert_eq!(
            summed(Some("2021-02-28"), "loan/", &txns),
            Ok(Balances { through_seq: 5, accounts: before })
        );
        assert_eq!(
            summed(Some("2021-01-24"), "", &txns),
            Ok(Balances { through_seq: 5, accounts: vec![] })
        );
        assert_eq!(summed(None, "", &[]), Ok(Balances::default()));
    }

    /// Postings that cannot be read end the sum with an error naming the transaction; a
    /// balance past 64 bits is an error too.
    #[test]
    fn what_cannot_be_summed_is_an_error() {
        let unreadable = [txn(1, "2021-01-25", "[[\"a\",1],"), txn(2, "2021-01-25", "[]")];
        let error = summed(None, "", &unreadable).unwrap_err();
        assert!(error.contains("JOURNAL_BROKEN: the transaction at seq 1 of ledger 450121 has postings that cannot be read"), "{error}");
        let max = i64::MAX;
        let big = format!(r#"[["a",{max}],["b",-{max}]]"#);
        let past = [txn(1, "2021-01-25", &big), txn(2, "2021-01-25", &big)];
        let error = summed(None, "", &past).unwrap_err();
        assert!(error.contains("the balance of a is past 64 bits"), "{error}");
        let mut mistyped = txn(1, "", r#"[["a",1],["b",-1]]"#);
        mistyped.mistyped = Some(("value_date", "another type"));
        let error = summed(Some("2021-01-25"), "", &[mistyped]).unwrap_err();
        assert!(
            error.contains("seq 1 of ledger 450121 has its value_date stored as another type"),
            "{error}"
        );
        // Another column named first, the value date read as empty text: not counted on
        // every date, an error; so is one stored by hand in another form.
        for date in ["", "2021-1-25", "21-01-2021"] {
            let mut unnamed = txn(1, date, r#"[["a",1],["b",-1]]"#);
            unnamed.mistyped = Some(("kind", "another type"));
            let error = summed(Some("2021-01-25"), "", &[unnamed]).unwrap_err();
            assert!(
                error.contains(&format!("has a value_date, {date:?}, that is not a date")),
                "{error}"
            );
        }
        // Dated after the date asked for, it is not read at all.
        let after = [txn(1, "2021-01-26", "not postings")];
        assert_eq!(
            summed(Some("2021-01-25"), "", &after),
            Ok(Balances { through_seq: 1, accounts: vec![] })
        );
    }
}
