//! What a household's status means for the loans already signed (DESIGN.md: a status dated
//! back over a signed contract does not undo it; its loans are named for review).
//!
//! [`contracts_made_ineligible`] is worked out when a `SetHouseholdStatus` is answered (also a
//! retry's, from its first answer's statuses), after the writer recorded the status: the
//! household's loans read through the read pool, the policy versions recorded by the status's
//! seq, the rule itself [`PolicyParams::made_ineligible`](crate::domain::policy::PolicyParams::made_ineligible).

use super::error::AppError;
use crate::domain::event::HouseholdRecord;
use crate::domain::household::StatusEntry;
use crate::domain::policy::in_force;
use crate::store::Db;
use crate::store::read::LoanFilter;

/// The household's loans whose contract the status just set (the last of `statuses`, in
/// recording order, recorded at `seq`) makes one the policy would have refused: contracts
/// recorded before it, eligible on their contract date by the statuses before, not by them
/// with it. Sorted by loan id. From the statuses as the status left them and the policy
/// versions recorded by then: a contract recorded since is not named, and a version set since
/// changes nothing, so that a retry answers as the first answer did.
pub async fn contracts_made_ineligible(
    db: &Db,
    household: &HouseholdRecord,
    statuses: &[StatusEntry],
    seq: u64,
) -> Result<Vec<String>, AppError> {
    if statuses.len() < 2 {
        // A first status has none before it: nothing was eligible by them.
        return Ok(Vec::new());
    }
    let filter = LoanFilter {
        ledger_id: Some(household.ledger_id.clone()),
        household_id: Some(household.household_id.clone()),
        ..LoanFilter::default()
    };
    let loans = db.list_loans(&filter, u32::MAX).await?;
    if loans.is_empty() {
        return Ok(Vec::new());
    }
    let versions = db.list_policies(&household.ledger_id, Some(seq)).await?;
    let (mut before_it, mut unsure) = (Vec::new(), Vec::new());
    for l in &loans {
        let date = l.terms.contract_date;
        let Some(policy) = in_force(&versions, date) else { continue };
        if !policy.params.made_ineligible(statuses, date) {
            continue;
        }
        // Its last transaction before the status: contracted before it too. Else its history
        // says when it was contracted.
        if l.last_seq < seq {
            before_it.push(l.terms.loan_id.clone());
        } else {
            unsure.push(l.terms.loan_id.as_str());
        }
    }
    // Recorded before the status: a contract's first journal transaction is its contract.
    let histories = if unsure.is_empty() { Vec::new() } else { db.loan_histories(&unsure).await? };
    for (loan_id, history) in histories {
        let contracted = history.rows().first().map(|row| row.row().map(|r| r.seq));
        if contracted.transpose()?.is_some_and(|at| u64::try_from(at).is_ok_and(|at| at < seq)) {
            before_it.push(loan_id);
        }
    }
    before_it.sort_unstable();
    Ok(before_it)
}
