//! The reversal of a repayment recorded in error ([`Command::ReverseRepayment`]).
//!
//! DESIGN.md: nothing in the journal is changed; "a correction is a new transaction that
//! reverses an earlier one and names it". The model:
//!
//! - **Event** `loan.reversed` ([`LoanEvent::Reversed`]): the loan, the repayment's seq, the
//!   bank's reason, dated the repayment's value date, so that the pair cancels in every figure
//!   as of any date (a balance as of a date sums both or neither).
//! - **Postings**: the repayment's, each leg negated
//!   ([`crate::ledger::loan_postings::reversal_postings`]): cash, the buckets it paid, the
//!   interest its settlement points accrued, the subsidy the bank netted, all back.
//! - **The loan after it**: as if the repayment had never been recorded. Its events are
//!   replayed without the repayment ([`crate::domain::loan::remove_reversed`]), and the state
//!   so rebuilt is stored with the reversal's seq as its last seq. Its last value date is the
//!   one before the repayment: the right payment may be recorded next, dated as it was made.
//!   Every replay (as of a date or a seq, registers, verify) takes reversed repayments out the
//!   same way.
//! - **Refused** (`FAILED_PRECONDITION`, `NOT_REVERSIBLE`):
//!   - an entry that is not the loan's latest standing (`metadata.latest_seq`; the reversals and
//!     the entries they reversed aside, so that a file keyed twice is taken back a repayment at
//!     a time, the latest first), in its committed history and among the entries of the
//!     writer's group staged before it: what came after it was worked out from the loan as the
//!     repayment left it (a settlement's interest, a claim's days overdue), and would be wrong
//!     without it; also one before any entry of the loan's pool (`metadata.pool_id`): a
//!     collective repayment is split over every member by what each owes, also where a
//!     member's part comes to nothing and the entry does not name it; one already reversed
//!     (`metadata.reversed_by`);
//!   - an entry that is not a repayment of the loan itself (`metadata.reversed_kind`; a pool's
//!     collective repayment is the pool's);
//!   - a payoff (`metadata.status` `settled`): from its day the loan counted as closed for the
//!     contracts made since (the household cap, a renewal's payout, the one-household rule);
//!   - a repayment whose loan has a period held by a subsidy claim due on or after the
//!     repayment's own date less the loan's grace days (`metadata.claim_id`,
//!     `metadata.due_date`): the claim's line was worked out with it; once the line is
//!     rejected (the period released), the repayment can be reversed.
//!   - `NOT_FOUND` for a seq that is no entry of the loan's.
//!
//! A reversal is a loan command of the loan's bank, idempotent by request id like any other.
//! It reads the loan's history in the writer's transaction, with the group's staged entries,
//! and is never planned ahead of the group in flight (`Writer::may_speculate`). Verify checks
//! the same rules at each reversal (`crate::app::verify::replay`).

use super::{Effect, Group, Planned, Writer, plan::check_bank};
use crate::app::auth::Principal;
use crate::app::command::SettledTotals;
use crate::app::error::AppError;
use crate::app::servicing::{loan_events_of, replay};
use crate::domain::date::format_date;
use crate::domain::error::{DomainError, Reason};
use crate::domain::event::JournalEvent;
use crate::domain::loan::{LoanEvent, check_reversible};
use crate::ledger::loan_postings::reversal_postings;
use crate::store::write::WriteTx;

impl Writer {
    /// Plans the reversal of the repayment at `reversed_seq` of `loan_id` (see the module doc).
    pub(super) async fn plan_reversal(
        &self,
        tx: &mut WriteTx,
        g: &mut Group,
        actor: &Principal,
        (loan_id, reversed_seq, reason): (&str, u64, &str),
    ) -> Result<Planned, AppError> {
        let loan = self.loan(tx, g, loan_id).await?;
        check_bank(actor, &loan)?;
        let not_latest = |latest: u64| {
            AppError::from(
                DomainError::refused(
                    Reason::NotReversible,
                    format!(
                        "entry {reversed_seq} is not loan {loan_id}'s latest (entry {latest} is): \
                         only the latest entry of a loan is reversed"
                    ),
                )
                .with("latest_seq", latest),
            )
        };
        let loan = loan.into_owned();
        // Its history: as committed (the entries of its risk fund and pool that name it too),
        // read in the group's transaction, then the entries of this group that name it, staged
        // and not yet committed.
        // (None committed of a loan this group contracted.)
        let mut entries: Vec<(JournalEvent, u64)> = Vec::new();
        for (seq, kind, command_json) in tx.loan_entries(loan_id, &loan.terms.ledger_id).await? {
            let event = JournalEvent::from_parts(&kind, &command_json).map_err(|e| {
                AppError::Internal(format!("entry {seq} of loan {loan_id}'s history: {e}"))
            })?;
            entries.push((event, u64::try_from(seq).unwrap_or(0)));
        }
        for staged in g.staged.txns.iter().filter(|t| t.loan_ids.iter().any(|l| l == loan_id)) {
            let event = JournalEvent::from_parts(&staged.row.kind, &staged.row.command_json)
                .map_err(|e| AppError::Internal(format!("a staged entry: {e}")))?;
            entries.push((event, u64::try_from(staged.row.seq).unwrap_or(0)));
        }
        let Some((event, _)) = entries.iter().find(|(_, seq)| *seq == reversed_seq) else {
            return Err(DomainError::NotFound {
                what: "journal entry",
                id: format!("{reversed_seq} of loan {loan_id}"),
            }
            .into());
        };
        // Its latest entry, the reversals and the entries they reversed aside: a file keyed
        // twice is taken back a repayment at a time, the latest first.
        let mut standing: Vec<u64> = Vec::new();
        for (entry, seq) in &entries {
            match entry {
                JournalEvent::Loan(LoanEvent::Reversed { reversed_seq: earlier, .. }) => {
                    if *earlier == reversed_seq {
                        return Err(DomainError::refused(
                            Reason::NotReversible,
                            format!(
                                "entry {reversed_seq} of loan {loan_id} was reversed by entry {seq}"
                            ),
                        )
                        .with("reversed_by", seq)
                        .into());
                    }
                    standing.retain(|seq| seq != earlier);
                }
                _ => standing.push(*seq),
            }
        }
        let latest = standing.last().copied().unwrap_or(loan.last_seq);
        if latest != reversed_seq {
            return Err(not_latest(latest));
        }
        // Nor after a collective repayment of its pool: one is split over every member by
        // what each owed, also where a member's part came to nothing (its entry then does not
        // name the member).
        if let Some((_, pool_id)) = tx.pools_of_loans(&[loan_id]).await?.into_iter().next()
            && let Some(pool_seq) = tx.pool_last_seq(&pool_id).await?
            && pool_seq > reversed_seq
        {
            return Err(DomainError::refused(
                Reason::NotReversible,
                format!(
                    "entry {reversed_seq} of loan {loan_id} came before entry {pool_seq} of its \
                     pool {pool_id}, worked out with it: only the latest entry of a loan is \
                     reversed"
                ),
            )
            .with("latest_seq", pool_seq)
            .with("pool_id", pool_id)
            .into());
        }
        let reversed = match event {
            JournalEvent::Loan(e) => e.clone(),
            other => {
                return Err(DomainError::refused(
                    Reason::NotReversible,
                    format!(
                        "entry {reversed_seq} of loan {loan_id} is a {}: only a repayment of \
                         the loan itself is reversed",
                        other.kind()
                    ),
                )
                .with("reversed_kind", other.kind())
                .into());
            }
        };
        check_reversible(&reversed, reversed_seq, &loan)?;
        // The loan without it: its events replayed, the repayment taken out.
        let mut events = loan_events_of(loan_id, entries.iter().map(|(e, seq)| (e, *seq)), None);
        events.retain(|&(_, seq)| seq != reversed_seq);
        // A history that does not replay is the service's fault here, not a refusal of the
        // request to record under its id (as a retry's answer over a broken journal).
        let before =
            replay(loan_id, events.iter().map(|(e, seq)| (e, *seq))).map_err(|e| match e {
                AppError::Refused(r) => AppError::Internal(format!(
                    "loan {loan_id}'s history does not replay: {}",
                    r.message
                )),
                e => e,
            })?;
        let mut before =
            before.ok_or_else(|| AppError::Internal(format!("loan {loan_id} has no contract")))?;
        // Its risk fund's mark is not of its own events: as the fund's entries, all before the
        // repayment, left it.
        before.servicing.compensated_on = loan.servicing.compensated_on;
        before.servicing.claim_pending = loan.servicing.claim_pending;
        before.servicing.pool_repaid_on = loan.servicing.pool_repaid_on;
        before.servicing.pool_transferred_on = loan.servicing.pool_transferred_on;
        // A period the repayment may have paid on time.
        let since = format_date(before.periods_payable_on_time_by(reversed.value_date()));
        if let Some((due_date, claim_id)) = tx
            .claimed_periods(loan_id)
            .await?
            .into_iter()
            .filter(|(due_date, _)| *due_date >= since)
            .min()
        {
            return Err(DomainError::refused(
                Reason::NotReversible,
                format!(
                    "claim {claim_id} holds loan {loan_id}'s period due {due_date}, worked out \
                     with the repayment: the claim is rejected before the repayment is reversed"
                ),
            )
            .with("claim_id", claim_id)
            .with("due_date", due_date)
            .into());
        }
        let postings = reversal_postings(&reversed, &loan.terms.bank_id)
            .map_err(|e| AppError::Internal(format!("unbalanced reversal: {e}")))?;
        Ok(Planned {
            ledger_id: loan.terms.ledger_id.clone(),
            event: JournalEvent::Loan(LoanEvent::Reversed {
                loan_id: loan_id.to_string(),
                value_date: reversed.value_date(),
                reversed_seq,
                reason: reason.to_string(),
            }),
            postings,
            effect: Effect::Loan(Box::new(before), SettledTotals::default()),
        })
    }
}
