//! Verify's recheck of subsidy claims (`Verify(recheck_claims)`, `loanledger verify --claims`):
//! an auditor's deeper check, off by default.
//!
//! A claim records, with each line the bank claimed, what the service recomputed when it was
//! submitted: the loan's household, township, village and principal, the register's figures
//! for the period (`Recomputed`) and the differences found. The hash chain proves those bytes
//! were not changed since; it does not prove they were right. The recheck works each line out
//! again, as the submission did ([`check_claim`]): against the loan's register as of the claim's
//! `submitted_on`, from the loan's events and the ledger's policy versions recorded up to the
//! seq before the claim's own entry (what the submission's check read: the writer refuses a
//! claim whose loans or policy changed after it was checked). A line whose recorded figures are
//! not the ones worked out again is a problem, named by claim, line, loan and period, with both
//! figures.
//!
//! `AlreadyClaimed` is the writer's, from the claims before (verify's replay checks that a
//! loan-period is held once), and is left out of the comparison; so are the review's decisions
//! and clawbacks, which come later. A claim recorded by a build whose rules worked a figure out
//! otherwise differs in it: the recheck reports what today's rules make of the same journal.
//!
//! A claim that cannot be worked out again (a loan's journal that does not decode or replay,
//! which the replay reports where it breaks; a database error) is a problem of its own, and the
//! recheck goes on with the next. The registers are read a claim at a time, the histories of
//! its loans a page at a time ([`check_claim`]): a county's quarterly claim of 9,000 lines
//! reads up to 9,000 histories, each in full, and a loan claimed in several claims is read for
//! each. An auditor's long read: it runs within the verify's turn on the journal.

use std::collections::BTreeMap;

use crate::app::error::AppError;
use crate::app::subsidy::check_claim;
use crate::collections::HashMap;
use crate::domain::date::format_date;
use crate::domain::subsidy_claim::{ClaimLine, ClaimedLine, Difference};
use crate::store::Db;

use super::Problems;
use super::replay::ReplayedClaim;

/// What the recheck found: the lines worked out again, and each line that differs (the first
/// [`super::PROBLEMS_MAX`] listed, all counted; seq 0: not a break of the journal).
#[derive(Debug, Default)]
pub(super) struct Rechecked {
    pub lines: u64,
    pub problems: Problems,
}

/// Rechecks every claim of `claims` (rebuilt from the journal, by claim id), each against the
/// registers through the seq before its submission.
pub(super) async fn recheck(
    db: &Db,
    claims: &BTreeMap<String, ReplayedClaim>,
) -> Result<Rechecked, AppError> {
    let mut found = Rechecked::default();
    // A ledger has a few banks and many claims: each bank is read once.
    let mut banks: HashMap<String, Option<crate::store::rows::BankRow>> = HashMap::default();
    for (claim_id, ReplayedClaim { claim, submitted_seq: seq, .. }) in claims {
        let seq = *seq;
        if !banks.contains_key(&claim.bank_id) {
            banks.insert(claim.bank_id.clone(), db.get_bank(&claim.bank_id).await?);
        }
        let Some(Some(bank)) = banks.get(&claim.bank_id) else {
            found.problems.add(
                0,
                format!(
                    "subsidy claim {claim_id} (seq {seq}): its bank {} is not registered",
                    claim.bank_id
                ),
            );
            continue;
        };
        let claimed: Vec<ClaimedLine> = claim.lines.iter().map(|l| l.claimed.clone()).collect();
        let through = seq.saturating_sub(1);
        let again = check_claim(db, bank, &claimed, (claim.submitted_on, Some(through))).await;
        let again = match again {
            Ok(again) => again,
            // The database gone is the verify's end, as for its other reads.
            Err(e @ AppError::Unavailable(_)) => return Err(e),
            Err(e) => {
                let why =
                    format!("subsidy claim {claim_id} (seq {seq}) cannot be worked out again: {e}");
                found.problems.add(0, why);
                continue;
            }
        };
        found.lines += claim.lines.len() as u64;
        for (i, (recorded, worked_out)) in claim.lines.iter().zip(&again.lines).enumerate() {
            let differing = differing(recorded, worked_out);
            if differing.is_empty() {
                continue;
            }
            let line = &recorded.claimed;
            found.problems.add(
                0,
                format!(
                    "subsidy claim {claim_id} (seq {seq}) line {i} (loan {}, due {}): its {} as \
                 recorded differ from the register through seq {through}: recorded {}, worked \
                 out again {}",
                    line.loan_id,
                    format_date(line.due_date),
                    differing.join(", "),
                    figures(recorded),
                    figures(worked_out)
                ),
            );
        }
    }
    Ok(found)
}

/// The parts of a line recorded at submission that differ from the line worked out again.
fn differing(recorded: &ClaimLine, again: &ClaimLine) -> Vec<&'static str> {
    let own = |l: &ClaimLine| -> Vec<Difference> {
        l.differences.iter().copied().filter(|d| *d != Difference::AlreadyClaimed).collect()
    };
    let mut differing = Vec::new();
    if recorded.recomputed != again.recomputed {
        differing.push("recomputed figures");
    }
    if own(recorded) != own(again) {
        differing.push("differences");
    }
    if (&recorded.household_id, &recorded.township, &recorded.village)
        != (&again.household_id, &again.township, &again.village)
    {
        differing.push("household and place");
    }
    if recorded.principal_fen != again.principal_fen {
        differing.push("principal");
    }
    differing
}

/// A line's figures, shortly: its standing, interest paid on time and subsidy, its days and
/// 积数, what was netted, its differences.
fn figures(line: &ClaimLine) -> String {
    let codes: Vec<&str> = line.differences.iter().map(|d| d.as_str()).collect();
    let recomputed = match &line.recomputed {
        None => "not in the register".to_string(),
        Some(r) => format!(
            "{:?}, paid on time {}, subsidy {}, {} days, jishu {}, netted {}",
            r.standing, r.paid_on_time_fen.0, r.subsidy_fen.0, r.days, r.jishu, r.netted_fen.0
        ),
    };
    format!(
        "[{recomputed}; household {} {}/{}; principal {}; differences {}]",
        line.household_id,
        line.township,
        line.village,
        line.principal_fen.0,
        if codes.is_empty() { "none".to_string() } else { codes.join(" ") }
    )
}
