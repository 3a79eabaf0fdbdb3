//! Verify's recheck of the stored answers (`Verify(recheck_answers)`, `loanledger verify
//! --answers`): an auditor's deeper check, off by default.
//!
//! Each transaction's idempotency record keeps the answer its request is given again when
//! retried (the compact form, [`Outcome::stored`]). The append-only guards keep it as written;
//! with them dropped, an answer changed behind the service's back would be given to the retry
//! as it is: another seq, whose loan a retry then rebuilds, or another principal outstanding in
//! a batch's brief answer. Verify's default checks compare the records' keys with the journal
//! ([`super::compare`]); this one reads, for every transaction through the verified head, in seq
//! order, the record of its request (its actor and request id: the one a retry is answered
//! from), with the transaction's stored hash (which the chain checks), and checks its answer
//! against the journal:
//!
//! - it is UTF-8 text (SQLite's columns take any bytes) and reads as an answer, of a kind a
//!   transaction is answered with (refusals and settlement runs' answers are stored under no
//!   seq; a loan left unchanged is not stored), and of its transaction's family of kinds (a
//!   loan's answer to a `loan.*` transaction, a pool's to a `pool.*`, and so on);
//! - the transaction it names (`entry`: ledger, seq and hash) is its record's own, and the
//!   ledger a registry answer names is that transaction's;
//! - a loan's answer (`LoanRef`) names a loan its transaction changed, with what the event
//!   settled there (points, interest, penalty, compound) and the principal outstanding after it
//!   as the replay rebuilt them; a pool's (`PoolRef`) names a pool of the ledger and, for each
//!   member loan's part of a collective repayment, a loan the transaction changed with its
//!   principal outstanding after it; a claim's (`SubsidyClaimRef`) names a claim of the ledger
//!   the transaction submitted or stepped (its seq between the claim's submission and its last
//!   event).
//!
//! Not compared: the registry's answers' other figures (a household's statuses, a policy
//! version, a bank's or ledger's name, an LPR entry's rate, a fund after an event), which are
//! given again as stored; and the request fingerprints, which need the request. Each problem
//! names the seq and the request (its scope and id); they are listed with the read models'
//! (seq 0: the journal holds), in seq order.

use std::collections::BTreeMap;

use super::Problems;
use super::replay::{LoanAfter, ReplayedClaim};
use crate::app::command::{JournalRef, Outcome, RepaidPart, SettledTotals};
use crate::app::error::AppError;
use crate::collections::HashMap;
use crate::domain::lpr::LPR_LEDGER;
use crate::domain::money::Fen;
use crate::domain::pool::Pool;
use crate::store::Db;
use crate::store::lpr_chain::{STARTED_BY, STARTED_REQUEST};
use crate::store::read::StoredAnswer;

/// What the journal's replay rebuilt that the answers are checked against.
pub(super) struct Rebuilt<'a> {
    pub ledger_id: &'a str,
    /// Through this seq (the verified head).
    pub head_seq: u64,
    pub loans_after: &'a HashMap<(u64, String), LoanAfter>,
    pub claims: &'a BTreeMap<String, ReplayedClaim>,
    pub pools: &'a BTreeMap<String, (Pool, u64)>,
}

#[derive(Debug, Default)]
pub(super) struct Rechecked {
    /// The answers read and checked.
    pub answers: u64,
    pub problems: Problems,
}

pub(super) async fn recheck(db: &Db, rebuilt: &Rebuilt<'_>) -> Result<Rechecked, AppError> {
    // In seq order, as read: listed after the journal's, as the read models' are, under the
    // one cap (all counted).
    let mut problems = Problems::default();
    let mut answers = 0;
    db.each_stored_answer(rebuilt.ledger_id, rebuilt.head_seq, |stored| {
        answers += 1;
        let StoredAnswer { seq, scope, request_id, .. } = &stored;
        for why in rebuilt.check(&stored) {
            let text =
                format!("seq {seq}: the stored answer to {scope}'s request {request_id} {why}");
            problems.add(0, text);
        }
    })
    .await?;
    Ok(Rechecked { answers, problems })
}

impl Rebuilt<'_> {
    /// How a transaction's stored answer differs from the journal, each as the end of a
    /// sentence.
    fn check(&self, stored: &StoredAnswer) -> Vec<String> {
        let StoredAnswer { seq, kind, scope, request_id, answer, hash } = stored;
        let seq = u64::try_from(*seq).unwrap_or_default();
        let json = match answer {
            Ok(json) => json.as_str(),
            Err(e) => return vec![format!("is not UTF-8 text ({e})")],
        };
        // The LPR table's chain's start, recorded at migration, answers nobody: `{}`.
        let start = (LPR_LEDGER, 1, STARTED_BY, STARTED_REQUEST);
        if (self.ledger_id, seq, scope.as_str(), request_id.as_str()) == start {
            return match json {
                "{}" => Vec::new(),
                _ => vec!["is not the chain's start's, {}".to_string()],
            };
        }
        match serde_json::from_str::<Outcome>(json) {
            Ok(answer) => self.differences(&answer, seq, kind, hash),
            Err(e) => vec![format!("cannot be read ({e})")],
        }
    }

    /// How `answer`, stored for the transaction at `seq` (of kind `kind`, whose stored hash is
    /// `hash`), differs from the journal, each as the end of a sentence.
    fn differences(&self, answer: &Outcome, seq: u64, kind: &str, hash: &str) -> Vec<String> {
        let mut why = Vec::new();
        // The answer's entry, and the family of transaction kinds (`loan` of `loan.repaid`)
        // answered with it.
        let (entry, family) = match answer {
            Outcome::Ledger { entry, .. } => (entry, "ledger"),
            Outcome::Bank { entry, .. } => (entry, "bank"),
            Outcome::Household { entry, .. } => (entry, "household"),
            Outcome::Policy { entry, .. } => (entry, "policy"),
            Outcome::Lpr { entry: Some(entry), .. } => (entry, "lpr"),
            Outcome::SubsidyClaim { entry, .. } | Outcome::SubsidyClaimRef { entry, .. } => {
                (entry, "subsidy_claim")
            }
            Outcome::RiskFund { entry, .. } => (entry, "risk_fund"),
            Outcome::Pool { entry, .. } | Outcome::PoolRef { entry, .. } => (entry, "pool"),
            Outcome::Loan { entry, .. } | Outcome::LoanRef { entry, .. } => (entry, "loan"),
            Outcome::Lpr { entry: None, .. } => {
                return vec!["is an LPR entry's answer naming no transaction".to_string()];
            }
            Outcome::SettlementRunSummary { .. }
            | Outcome::SettlementRun { .. }
            | Outcome::LoanUnchanged { .. }
            | Outcome::Refused { .. } => {
                return vec![format!("is {}, which no transaction is answered with", what(answer))];
            }
        };
        if kind.split_once('.').map(|(f, _)| f) != Some(family) {
            why.push(format!("is a {family} answer; its transaction is {kind}"));
        }
        let JournalRef { ledger_id, seq: named, hash: named_hash } = entry;
        if (ledger_id.as_str(), *named, named_hash.as_str()) != (self.ledger_id, seq, hash) {
            why.push(format!(
                "names {ledger_id} seq {named} (hash {named_hash}), not its own transaction \
                 ({} seq {seq}, hash {hash})",
                self.ledger_id
            ));
        }
        let answered_ledger = match answer {
            Outcome::Ledger { ledger_id, .. }
            | Outcome::Bank { ledger_id, .. }
            | Outcome::Policy { ledger_id, .. } => Some(ledger_id.as_str()),
            Outcome::Household { household, .. } => Some(household.ledger_id.as_str()),
            _ => None,
        };
        if let Some(other) = answered_ledger.filter(|l| *l != self.ledger_id) {
            why.push(format!("is of ledger {other}"));
        }
        match answer {
            Outcome::LoanRef { loan_id, settled, principal_outstanding_fen, .. } => {
                self.loan(&mut why, seq, loan_id, settled, *principal_outstanding_fen);
            }
            Outcome::Loan { loan, settled, .. } => {
                let outstanding = Some(loan.principal_outstanding_fen);
                self.loan(&mut why, seq, &loan.terms.loan_id, settled, outstanding);
            }
            Outcome::PoolRef { pool_id, parts, .. } => self.pool(&mut why, seq, pool_id, parts),
            Outcome::Pool { pool, parts, .. } => {
                self.pool(&mut why, seq, &pool.terms.pool_id, parts);
            }
            Outcome::SubsidyClaimRef { claim_id, .. } => match self.claims.get(claim_id) {
                None => why.push(format!("names claim {claim_id}, which the ledger does not have")),
                Some(c) if seq < c.submitted_seq || seq > c.last_seq => why.push(format!(
                    "names claim {claim_id}, recorded from seq {} to {}",
                    c.submitted_seq, c.last_seq
                )),
                Some(_) => {}
            },
            _ => {}
        }
        why
    }

    /// A pool's answer checked against the pools rebuilt and its parts against the loans as
    /// the event at `seq` left them.
    fn pool(&self, why: &mut Vec<String>, seq: u64, pool_id: &str, parts: &[RepaidPart]) {
        if !self.pools.contains_key(pool_id) {
            why.push(format!("names pool {pool_id}, which the ledger does not have"));
        }
        for part in parts {
            let Some(after) = self.loans_after.get(&(seq, part.loan_id.clone())) else {
                let loan_id = &part.loan_id;
                why.push(format!("names loan {loan_id}, which its transaction does not change"));
                continue;
            };
            if part.principal_outstanding_fen != after.principal_outstanding_fen {
                why.push(outstanding_differs(
                    &part.loan_id,
                    part.principal_outstanding_fen,
                    after.principal_outstanding_fen,
                ));
            }
        }
    }

    /// A loan's answer checked against the loan as the event at `seq` left it.
    fn loan(
        &self,
        why: &mut Vec<String>,
        seq: u64,
        loan_id: &str,
        settled: &SettledTotals,
        outstanding: Option<Fen>,
    ) {
        let Some(after) = self.loans_after.get(&(seq, loan_id.to_string())) else {
            why.push(format!("names loan {loan_id}, which its transaction does not change"));
            return;
        };
        if *settled != after.settled {
            why.push(format!(
                "says the event settled {} on loan {loan_id}; the journal gives {}",
                totals(settled),
                totals(&after.settled)
            ));
        }
        // Absent from answers stored before it was recorded: the loan rebuilt gives it then.
        if let Some(outstanding) = outstanding
            && outstanding != after.principal_outstanding_fen
        {
            why.push(outstanding_differs(loan_id, outstanding, after.principal_outstanding_fen));
        }
    }
}

fn outstanding_differs(loan_id: &str, stored: Fen, rebuilt: Fen) -> String {
    format!(
        "gives loan {loan_id} {} fen of principal outstanding; the journal gives {}",
        stored.0, rebuilt.0
    )
}

fn totals(t: &SettledTotals) -> String {
    format!(
        "{} point(s), interest {} fen, penalty {} fen, compound {} fen",
        t.points, t.interest_fen, t.penalty_fen, t.compound_fen
    )
}

/// What an answer no transaction has is, named for a problem.
fn what(answer: &Outcome) -> &'static str {
    match answer {
        Outcome::SettlementRunSummary { .. } => "a settlement run's summary",
        Outcome::SettlementRun { .. } => "a settlement run's record",
        Outcome::LoanUnchanged { .. } => "a loan left unchanged",
        Outcome::Refused { .. } => "a refusal",
        _ => "an answer",
    }
}
