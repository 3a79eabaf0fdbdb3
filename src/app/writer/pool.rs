//! Pooled-loan arrangements' commands ([`crate::domain::pool`]) planned in the writer.
//!
//! Like the fund's, they name no loan to [`Command::loan_id`] and are never planned ahead of a
//! commit: each reads its pool (and an agreement the pools of its loans) in the group's
//! transaction, where an earlier command of the group has written its own. A pool's member
//! loans are read as the group holds them (changed by an earlier command of it), else as
//! stored. A collective repayment changes its loans as their own repayments do: their states
//! go into the group with the pool's transaction as their last event.

use super::plan::check_bank;
use super::{Effect, Envelope, Group, Planned, Writer};
use crate::app::auth::Role;
use crate::app::command::{Command, RepaidPart};
use crate::app::error::{AppError, unpanicked};
use crate::collections::{HashMap, HashSet};
use crate::domain::error::{DomainError, Reason};
use crate::domain::event::JournalEvent;
use crate::domain::loan::LoanState;
use crate::domain::pool::{Pool, PoolEvent};
use crate::ledger::pool_postings::pool_postings;
use crate::store::write::WriteTx;

/// Who may write a command to a pool.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writers {
    /// The pool's bank alone.
    Bank,
    /// The pool's bank, or its ledger's finance office (which monitors the partners).
    BankOrOffice,
}

impl Writer {
    /// Plans a pool's command: [`Command::CreatePool`], [`Command::TransferToPartner`],
    /// [`Command::RecordPoolReturn`], [`Command::RecordParticipation`], [`Command::RepayPool`]
    /// or [`Command::SettlePool`].
    pub(super) async fn plan_pool(
        &self,
        tx: &mut WriteTx,
        g: &mut Group,
        env: &Envelope,
    ) -> Result<Planned, AppError> {
        let actor = &env.actor;
        if let Command::CreatePool { terms, loan_ids } = &env.command {
            if actor.role != Role::Bank || actor.org != terms.bank_id {
                return Err(AppError::denied(format!(
                    "{} may not agree pools for bank {}",
                    actor.actor(),
                    terms.bank_id
                )));
            }
            let bank =
                g.registry.bank(tx, &terms.bank_id).await?.ok_or_else(|| {
                    DomainError::NotFound { what: "bank", id: terms.bank_id.clone() }
                })?;
            if tx.pool(&terms.pool_id).await?.is_some() {
                return Err(DomainError::Exists { what: "pool", id: terms.pool_id.clone() }.into());
            }
            let loans = loans_of(tx, g, loan_ids).await?;
            for loan in &loans {
                check_bank(actor, loan)?;
            }
            let ids: Vec<&str> = loan_ids.iter().map(String::as_str).collect();
            // The first taken in the agreement's order, the same on both backends.
            let taken = tx.pools_of_loans(&ids).await?;
            let first = ids.iter().find_map(|id| taken.iter().find(|(loan, _)| loan == id));
            if let Some((loan_id, other)) = first.cloned() {
                return Err(DomainError::refused(
                    Reason::PoolMemberTaken,
                    format!("loan {loan_id} is a member of pool {other}: a loan joins one pool"),
                )
                .with("loan_id", &loan_id)
                .with("pool_id", other)
                .into());
            }
            let mut terms = terms.clone();
            terms.ledger_id = bank.ledger_id.clone();
            let policies = g.registry.policies(tx, &bank.ledger_id).await?;
            let refs: Vec<&LoanState> = loans.iter().collect();
            let event = Pool::agree(&terms, &refs, &policies)?;
            let pool = Pool::agreed(&event)
                .ok_or_else(|| AppError::Internal("an agreement agreed no pool".into()))?;
            return planned(pool, event, true, (Vec::new(), Vec::new()), Vec::new());
        }
        let (pool_id, writers) = match &env.command {
            Command::TransferToPartner { pool_id, .. }
            | Command::RepayPool { pool_id, .. }
            | Command::SettlePool { pool_id, .. } => (pool_id, Writers::Bank),
            Command::RecordPoolReturn { pool_id, .. }
            | Command::RecordParticipation { pool_id, .. } => (pool_id, Writers::BankOrOffice),
            other => {
                return Err(AppError::Internal(format!("{} is not a pool command", other.name())));
            }
        };
        let not_found = || DomainError::NotFound { what: "pool", id: pool_id.clone() };
        let pool = tx.pool(pool_id).await?.ok_or_else(not_found)?;
        let t = &pool.terms;
        let its_bank = actor.role == Role::Bank && actor.org == t.bank_id;
        let its_office = actor.administers_ledger(&t.ledger_id);
        // Another bank's pool, or another ledger's, is answered as a missing one.
        if !actor.reads_loan(&t.bank_id, &t.ledger_id) {
            return Err(not_found().into());
        }
        if !(its_bank || writers == Writers::BankOrOffice && its_office) {
            return Err(AppError::denied(format!(
                "{} may not {}: pool {pool_id} is bank {}'s",
                actor.actor(),
                env.command.name(),
                t.bank_id
            )));
        }
        let mut parts = Vec::new();
        let mut marked = Vec::new();
        let (event, loans) = match &env.command {
            Command::TransferToPartner { loan_id, value_date, amount_fen, .. } => {
                pool.member(loan_id)?;
                let loan = self.loan(tx, g, loan_id).await?;
                let event = pool.transfer(&loan, *value_date, *amount_fen)?;
                // The loan takes the transfer's day: none of its events but a settlement is
                // dated before it since (`Servicing::pool_transferred_on`). Its last seq its own.
                if loan.servicing.pool_transferred_on.is_none_or(|on| on < *value_date) {
                    marked.push(loan.pool_transferred(*value_date));
                }
                (event, Vec::new())
            }
            Command::RecordPoolReturn { loan_id, value_date, amount_fen, .. } => {
                let event = pool.pay_return(loan_id, *value_date, *amount_fen)?;
                // A return or dividend is a yield on what the household handed the partner (8%
                // or 6% a year, say): more than all of it is a figure mistyped, and such figures
                // summed over a household's pools could pass 64-bit fen in its `pool_income`
                // account, which the commit refused `INTERNAL` (since 2026-12-07; judged as the
                // return is recorded, not when the journal is replayed).
                let transferred = pool.member(loan_id)?.transferred_fen;
                if *amount_fen > transferred {
                    return Err(DomainError::invalid(
                        "amount_fen",
                        format!(
                            "a return of {amount_fen} yuan is more than the {transferred} yuan \
                             loan {loan_id}'s household handed pool {pool_id}'s partner in all"
                        ),
                    )
                    .into());
                }
                (event, Vec::new())
            }
            Command::RecordParticipation { loan_id, value_date, kind, note, .. } => {
                (pool.participate(loan_id, *value_date, *kind, note)?, Vec::new())
            }
            Command::RepayPool { value_date, amount_fen, .. } => {
                let members = self.members(tx, g, &pool).await?;
                let refs: Vec<&LoanState> = members.iter().collect();
                let (event, after) = unpanicked("a pool's repayment", || {
                    pool.plan_repayment(&refs, *value_date, *amount_fen)
                })??;
                parts = RepaidPart::of_repayment(
                    &event,
                    |id: &str| members.iter().find(|l| l.terms.loan_id == id),
                    |id: &str| after.iter().find(|l| l.terms.loan_id == id),
                );
                // Every member takes the repayment's day: none of its events but a settlement
                // is dated before it since (`Servicing::pool_repaid_on`). Those without a part
                // keep their last seq.
                let date = *value_date;
                let with_part: HashSet<&str> =
                    after.iter().map(|a| a.terms.loan_id.as_str()).collect();
                marked = members
                    .iter()
                    .filter(|m| !with_part.contains(m.terms.loan_id.as_str()))
                    .filter(|m| m.servicing.pool_repaid_on.is_none_or(|on| on < date))
                    .map(|m| m.pool_repaid(date))
                    .collect();
                (event, after.iter().map(|a| a.pool_repaid(date)).collect())
            }
            Command::SettlePool { value_date, .. } => {
                let members = self.members(tx, g, &pool).await?;
                let refs: Vec<&LoanState> = members.iter().collect();
                let event = unpanicked("a pool's settlement", || pool.settle(&refs, *value_date))??;
                (event, Vec::new())
            }
            other => {
                return Err(AppError::Internal(format!("{} is not a pool command", other.name())));
            }
        };
        let mut after = pool;
        after.apply(&event)?;
        planned(after, event, false, (loans, marked), parts)
    }

    /// The member loans of `pool`, as the group holds them or as stored.
    async fn members(
        &self,
        tx: &mut WriteTx,
        g: &Group,
        pool: &Pool,
    ) -> Result<Vec<LoanState>, AppError> {
        let ids: Vec<String> = pool.members.iter().map(|m| m.loan_id.clone()).collect();
        loans_of(tx, g, &ids).await
    }
}

/// The states of `loan_ids`, in their order: as the group holds them (changed by an earlier
/// command of it), else as stored, those read in one statement a chunk (a pool may have a
/// thousand members). `NOT_FOUND` for one that is neither.
async fn loans_of(
    tx: &mut WriteTx,
    g: &Group,
    loan_ids: &[String],
) -> Result<Vec<LoanState>, AppError> {
    let unread: Vec<String> = loan_ids
        .iter()
        .filter(|id| !g.loans.contains_key(*id) && !g.missing.contains(*id))
        .cloned()
        .collect();
    let read: HashMap<String, LoanState> = if unread.is_empty() {
        HashMap::default()
    } else {
        let stored = tx.loans_many(&unread).await?;
        stored.into_iter().map(|l| (l.terms.loan_id.clone(), l)).collect()
    };
    loan_ids
        .iter()
        .map(|id| {
            g.loans
                .get(id)
                .or_else(|| read.get(id))
                .cloned()
                .ok_or_else(|| DomainError::NotFound { what: "loan", id: id.clone() }.into())
        })
        .collect()
}

/// The plan of a pool's event: its postings, the pool after it, the loans it changed and those
/// it only marked with its day, and their parts of it.
fn planned(
    pool: Pool,
    event: PoolEvent,
    created: bool,
    (loans, marked): (Vec<LoanState>, Vec<LoanState>),
    parts: Vec<RepaidPart>,
) -> Result<Planned, AppError> {
    let postings =
        pool_postings(&event).map_err(|e| AppError::Internal(format!("unbalanced plan: {e}")))?;
    Ok(Planned {
        ledger_id: pool.terms.ledger_id.clone(),
        event: JournalEvent::Pool(event),
        postings,
        effect: Effect::Pool { pool: Box::new(pool), created, loans, marked, parts },
    })
}
