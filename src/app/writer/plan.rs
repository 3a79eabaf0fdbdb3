//! Planning one command: check it against the domain rules and the state the group sees, and
//! plan its event, postings and effect ([`Writer::plan`]); apply a staged effect to the group
//! ([`Writer::apply`]).

use super::rules::{
    borrower_loans, borrowers_other_household, counts_on, draws_past_its_count,
    expired_contract_refused, heads_other_household, household_loans, latest_contract_date,
    owes_for_other_household, paid_out_dated_back, still_lends,
};
use super::{Effect, Envelope, Group, Planned, Writer};
use crate::app::auth::{Principal, Role};
use crate::app::command::{Command, JournalRef, Outcome, SettledTotals};
use crate::app::error::{AppError, unpanicked};
use crate::collections::{HashMap, HashSet};
use crate::domain::cap::CapLoan;
use crate::domain::date::{BusinessDate, format_date};
use crate::domain::error::{DomainError, Reason};
use crate::domain::event::JournalEvent;
use crate::domain::household::{HouseholdStatus, StatusEntry, never_lent_to_on, status_on};
use crate::domain::loan::{
    LoanCommand, LoanEvent, LoanState, OriginationContext, plan_origination,
};
use crate::domain::lpr::{LPR_LEDGER, TenorBucket, lpr_on};
use crate::domain::money::Fen;
use crate::domain::policy::{PolicyVersion, is_seeded_step, ratio_steps};
use crate::domain::policy::{default_versions, in_force};
use crate::domain::pool::PoolStatus;
use crate::domain::subsidy::RATIO_STEPS_MAX;
use crate::domain::subsidy_claim::{
    Claim, ClaimEvent, ClaimStatus, Decision, Payee, Rejection, hold,
};
use crate::ledger::claim_postings::claim_postings;
use crate::ledger::loan_postings::loan_postings;
use crate::ledger::posting::Postings;
use crate::store::rows::{BankRow, HouseholdRow, HouseholdView};
use crate::store::write::WriteTx;

impl Writer {
    /// Checks a command and plans its event, postings and effect. Reads only (the registry rows
    /// it reads are kept in `g.registry` for the group's other commands).
    pub(super) async fn plan(
        &self,
        tx: &mut WriteTx,
        g: &mut Group,
        env: &Envelope,
    ) -> Result<Planned, AppError> {
        let actor = &env.actor;
        let deny_ledger = |ledger_id: &str| {
            AppError::denied(format!(
                "{} may not change the registry of ledger {ledger_id}",
                actor.actor()
            ))
        };
        Ok(match &env.command {
            Command::CreateLedger { ledger_id, name } => {
                if !actor.is_operator() {
                    return Err(AppError::denied("only an operator may create a ledger"));
                }
                // Refused by the API before (naming `ledger_id`); held here too.
                if ledger_id == LPR_LEDGER {
                    return Err(DomainError::Invalid {
                        field: "ledger_id".into(),
                        message: "lpr is reserved: it names the LPR table's chain".into(),
                    }
                    .into());
                }
                if g.registry.ledger_exists(tx, ledger_id).await? {
                    return Err(
                        DomainError::Exists { what: "ledger", id: ledger_id.clone() }.into()
                    );
                }
                Planned {
                    ledger_id: ledger_id.clone(),
                    event: JournalEvent::LedgerCreated {
                        ledger_id: ledger_id.clone(),
                        name: name.clone(),
                    },
                    postings: Postings::memo(),
                    effect: Effect::Ledger { ledger_id: ledger_id.clone(), name: name.clone() },
                }
            }
            Command::RegisterBank { ledger_id, bank_id, name } => {
                if !actor.configures_ledger(ledger_id) {
                    return Err(deny_ledger(ledger_id));
                }
                if !g.registry.ledger_exists(tx, ledger_id).await? {
                    return Err(
                        DomainError::NotFound { what: "ledger", id: ledger_id.clone() }.into()
                    );
                }
                if g.registry.bank(tx, bank_id).await?.is_some() {
                    return Err(DomainError::Exists { what: "bank", id: bank_id.clone() }.into());
                }
                Planned {
                    ledger_id: ledger_id.clone(),
                    event: JournalEvent::BankRegistered {
                        bank_id: bank_id.clone(),
                        ledger_id: ledger_id.clone(),
                        name: name.clone(),
                    },
                    postings: Postings::memo(),
                    effect: Effect::Bank(BankRow {
                        bank_id: bank_id.clone(),
                        ledger_id: ledger_id.clone(),
                        name: name.clone(),
                    }),
                }
            }
            Command::RegisterHousehold { household, status } => {
                let ledger_id = &household.ledger_id;
                if !actor.administers_ledger(ledger_id) {
                    return Err(deny_ledger(ledger_id));
                }
                if !g.registry.ledger_exists(tx, ledger_id).await? {
                    return Err(
                        DomainError::NotFound { what: "ledger", id: ledger_id.clone() }.into()
                    );
                }
                if Self::household(&g.households, &household.household_id)?.is_some() {
                    return Err(DomainError::Exists {
                        what: "household",
                        id: household.household_id.clone(),
                    }
                    .into());
                }
                let head = (ledger_id.clone(), household.head_id_number.clone());
                if let Some(other) = g.headed.get(&head).and_then(|h| h.first()) {
                    return Err(DomainError::refused(
                        Reason::HeadAlreadyRegistered,
                        format!(
                            "head_id_number already heads household {other} of ledger \
                             {ledger_id}: a person heads one household of a ledger, whose cap \
                             counts all its members' loans"
                        ),
                    )
                    .with("household_id", other)
                    .into());
                }
                // Nor one who owes a loan of another household on the day it is registered (open
                // then, as the cap counts it; its status may be dated years back, to when the
                // household was first registered poor): the person belongs to that household
                // until the loan is closed, as a contract's borrower does
                // (`borrowers_other_household`); registered, the two households' caps would
                // count the family twice.
                let head = &household.head_id_number;
                if let Some(other) =
                    owes_for_other_household(g, ledger_id, head, None, g.recorded_on)?
                {
                    return Err(DomainError::refused(
                        Reason::BorrowerOfAnotherHousehold,
                        format!(
                            "head_id_number owes a loan of household {other} of ledger \
                             {ledger_id}: a person belongs to one household of a ledger, whose \
                             cap counts all its members' loans, until those loans are closed"
                        ),
                    )
                    .with("household_id", other)
                    .into());
                }
                Planned {
                    ledger_id: ledger_id.clone(),
                    event: JournalEvent::HouseholdRegistered {
                        household: household.clone(),
                        status: status.clone(),
                    },
                    postings: Postings::memo(),
                    effect: Effect::Household(
                        HouseholdRow {
                            household_id: household.household_id.clone(),
                            ledger_id: ledger_id.clone(),
                            head_name: household.head_name.clone(),
                            head_id_number: household.head_id_number.clone(),
                            township: household.township.clone(),
                            village: household.village.clone(),
                        },
                        status.clone(),
                    ),
                }
            }
            Command::SetHouseholdStatus { household_id, entry } => {
                let household = Self::household(&g.households, household_id)?.ok_or_else(|| {
                    DomainError::NotFound { what: "household", id: household_id.clone() }
                })?;
                let ledger_id = household.row.ledger_id.clone();
                if !actor.reads_ledger(&ledger_id) {
                    // As a missing one: a finance office does not learn whether a household
                    // outside its ledger exists.
                    return Err(DomainError::NotFound {
                        what: "household",
                        id: household_id.clone(),
                    }
                    .into());
                }
                if !actor.administers_ledger(&ledger_id) {
                    return Err(deny_ledger(&ledger_id));
                }
                // A status may be dated before the household's first: its registration's date
                // may have been typed late (today's, where the household has been registered poor
                // since 2016), and the loans of those years would be refused as unregistered with
                // no way to correct it (until 2026-12-06 it was STATUS_DATE_BEFORE_REGISTRATION).
                Planned {
                    ledger_id,
                    event: JournalEvent::HouseholdStatusSet {
                        household_id: household_id.clone(),
                        entry: entry.clone(),
                    },
                    postings: Postings::memo(),
                    effect: Effect::HouseholdStatus {
                        household_id: household_id.clone(),
                        entry: entry.clone(),
                    },
                }
            }
            Command::SetPolicy { ledger_id, version } => {
                if !actor.administers_ledger(ledger_id) {
                    return Err(deny_ledger(ledger_id));
                }
                if !g.registry.ledger_exists(tx, ledger_id).await? {
                    return Err(
                        DomainError::NotFound { what: "ledger", id: ledger_id.clone() }.into()
                    );
                }
                let versions = g.registry.policies(tx, ledger_id).await?;
                // One version a date, but for a ledger's own version on a seeded step's date
                // (2024-01-01), which replaces the national step from that day, once.
                let on_date: Vec<&PolicyVersion> = versions
                    .iter()
                    .filter(|v| v.effective_date == version.effective_date)
                    .collect();
                let over_seeded_step = matches!(on_date[..], [v] if is_seeded_step(v));
                if !on_date.is_empty() && !over_seeded_step {
                    return Err(DomainError::Exists {
                        what: "policy version",
                        id: format!("{ledger_id} {}", format_date(version.effective_date)),
                    }
                    .into());
                }
                // A version dated back that changes what a period's subsidy is worked out with
                // (the ratio, the household cap, the cap rate) is refused while a claim holds a
                // period due on or after its date: the claim was checked, noticed or paid with
                // the figures before it, and a register would then disagree with it (since
                // 2026-12-07: a ratio raised back over a paid quarter showed the periods due
                // more than was paid, and claimed: not claimable again).
                let before = in_force(&versions, version.effective_date);
                let subsidy_figures = |p: &crate::domain::policy::PolicyParams| {
                    (p.subsidy_ratio, p.household_principal_cap_fen, p.subsidy_cap_rate)
                };
                if before
                    .is_none_or(|b| subsidy_figures(&b.params) != subsidy_figures(&version.params))
                    && let Some((claim_id, loan_id, due_date)) = tx
                        .claimed_period_due_from(ledger_id, &format_date(version.effective_date))
                        .await?
                {
                    return Err(DomainError::refused(
                        Reason::PolicyChangesClaimedSubsidy,
                        format!(
                            "a version dated {} changes the subsidy ratio, the household cap or \
                             the cap rate from that day, and claim {claim_id} holds loan \
                             {loan_id}'s period due {due_date}, worked out with the figures \
                             before it: date the version after the periods claimed",
                            format_date(version.effective_date)
                        ),
                    )
                    .with("claim_id", claim_id)
                    .with("loan_id", loan_id)
                    .with("due_date", due_date)
                    .into());
                }
                // The ratio table every subsidy figure of the ledger is computed from holds a
                // hundred steps at most (the first version's ratio and 99 changes): one more
                // would leave them all unanswerable. A ledger past it (recorded by a build
                // before this check) still takes versions that add no step.
                let mut with = versions.to_vec();
                with.push(version.clone());
                let steps = ratio_steps(&with).len();
                if steps > RATIO_STEPS_MAX && steps > ratio_steps(&versions).len() {
                    return Err(DomainError::invalid(
                        "params.subsidy_ratio",
                        format!(
                            "ledger {ledger_id}'s subsidy ratio would have {steps} steps (its \
                             first version's and each change), more than {RATIO_STEPS_MAX}"
                        ),
                    )
                    .into());
                }
                Planned {
                    ledger_id: ledger_id.clone(),
                    event: JournalEvent::PolicySet {
                        ledger_id: ledger_id.clone(),
                        version: version.clone(),
                    },
                    postings: Postings::memo(),
                    effect: Effect::Policy {
                        ledger_id: ledger_id.clone(),
                        version: version.clone(),
                        ordinal: i32::from(over_seeded_step),
                    },
                }
            }
            Command::SetLpr { entry } => {
                if !actor.is_operator() {
                    return Err(AppError::denied("only an operator may change the LPR table"));
                }
                // Entries are kept as set: one a date and tenor.
                if let Some(rate) = tx.lpr_exists(entry).await? {
                    return Err(DomainError::Exists {
                        what: "LPR entry",
                        id: format!(
                            "{} {} (rate {rate})",
                            format_date(entry.effective_from),
                            entry.bucket.as_str()
                        ),
                    }
                    .into());
                }
                Planned {
                    ledger_id: LPR_LEDGER.to_string(),
                    event: JournalEvent::LprSet { entry: *entry },
                    postings: Postings::memo(),
                    effect: Effect::Lpr(*entry),
                }
            }
            Command::SubmitSubsidyClaim {
                claim_id,
                bank_id,
                due_from,
                due_to,
                checked,
                submitted_on,
                ..
            } => {
                if actor.role != Role::Bank || actor.org != *bank_id {
                    return Err(AppError::denied(format!(
                        "{} may not claim subsidies for bank {bank_id}",
                        actor.actor()
                    )));
                }
                let bank = g
                    .registry
                    .bank(tx, bank_id)
                    .await?
                    .ok_or_else(|| DomainError::NotFound { what: "bank", id: bank_id.clone() })?;
                if tx.claim_exists(claim_id).await? {
                    return Err(DomainError::Exists {
                        what: "subsidy claim",
                        id: claim_id.clone(),
                    }
                    .into());
                }
                // Checked on the read pool against each loan as it then stood: a loan changed
                // since (a payment recorded in between, in an earlier group or in this one)
                // would leave a line's findings out of date. Nothing is recorded; the caller
                // checks again.
                // (The group's own changes first: the database holds the rest, every group
                // before this one having landed, as a claim is never planned ahead.)
                let ids: Vec<&str> = checked.seen.iter().map(|(id, _)| id.as_str()).collect();
                let stored = tx.loan_seqs(&ids).await?;
                let own = ids
                    .iter()
                    .filter_map(|id| g.loans.get(*id))
                    .map(|l| (l.terms.loan_id.as_str(), l.last_seq));
                // (A loan without a journal, seen at 0, is still at 0 when it has none now.)
                if let Some(loan_id) = changed_since(&checked.seen, stored, own) {
                    return Err(AppError::Stale(format!(
                        "loan {loan_id} changed while claim {claim_id} was checked: check again"
                    )));
                }
                // So did the ledger's policy (a version set in between, dated back over the
                // claimed periods, would change a line's subsidy).
                let policies = g.registry.policies(tx, &bank.ledger_id).await?;
                if *policies != checked.policies {
                    return Err(AppError::Stale(format!(
                        "the policy of ledger {} changed while claim {claim_id} was checked: \
                         check again",
                        bank.ledger_id
                    )));
                }
                // So did a household's status (one dated back over a contract makes its lines
                // HOUSEHOLD_NOT_ELIGIBLE): the last seq of each, this group's own first.
                let households: Vec<&str> =
                    checked.households_seen.iter().map(|(id, _)| id.as_str()).collect();
                let stored = tx.household_status_seqs(&households).await?;
                let own = g
                    .staged
                    .statuses
                    .iter()
                    .map(|(id, seq, _)| (id.as_str(), u64::try_from(*seq).unwrap_or(0)));
                if let Some(household_id) = changed_since(&checked.households_seen, stored, own) {
                    return Err(AppError::Stale(format!(
                        "household {household_id}'s status changed while claim {claim_id} was \
                         checked: check again"
                    )));
                }
                // Claimed once: a loan-period held by a claim before this one (an earlier
                // group's, or this group's, written in this transaction) is held by it.
                let mut lines = checked.lines.clone();
                let mut held: HashMap<String, Vec<(String, String)>> = HashMap::default();
                for line in lines.iter_mut().filter(|l| l.holds_period()) {
                    let loan_id = &line.claimed.loan_id;
                    if !held.contains_key(loan_id) {
                        let periods = tx.claimed_periods(loan_id).await?;
                        held.insert(loan_id.clone(), periods);
                    }
                    let due = format_date(line.claimed.due_date);
                    let holder = held.get(loan_id).and_then(|periods| {
                        periods.iter().find(|(d, _)| *d == due).map(|(_, c)| c.clone())
                    });
                    hold(line, holder.as_deref());
                    // (A line repeated within the claim, which the API refuses, is held once.)
                    if line.holds_period()
                        && let Some(periods) = held.get_mut(&line.claimed.loan_id)
                    {
                        periods.push((due, claim_id.clone()));
                    }
                }
                let claim = Claim {
                    claim_id: claim_id.clone(),
                    ledger_id: bank.ledger_id.clone(),
                    bank_id: bank_id.clone(),
                    due_from: *due_from,
                    due_to: *due_to,
                    submitted_on: *submitted_on,
                    status: ClaimStatus::Submitted,
                    lines,
                    review: None,
                    objections: Vec::new(),
                    payment: None,
                };
                Planned {
                    ledger_id: bank.ledger_id,
                    event: JournalEvent::SubsidyClaimSubmitted { claim: Box::new(claim.clone()) },
                    postings: Postings::memo(),
                    effect: Effect::Claim(Box::new(claim)),
                }
            }
            Command::SubsidyClaimStep { step } => {
                let claim_id = step.claim_id();
                // A claim outside the caller's books is answered as a missing one.
                let (claim, submitted_seq) = tx
                    .claim(claim_id)
                    .await?
                    .filter(|(c, _)| actor.reads_loan(&c.bank_id, &c.ledger_id))
                    .ok_or_else(|| DomainError::NotFound {
                        what: "subsidy claim",
                        id: claim_id.to_string(),
                    })?;
                if !actor.administers_ledger(&claim.ledger_id) {
                    return Err(AppError::denied(format!(
                        "{} may not {} {claim_id}: the finance office of ledger {} reviews, \
                         notices and pays its subsidy claims",
                        actor.actor(),
                        env.command.name(),
                        claim.ledger_id
                    )));
                }
                // Misused loans are not subsidised: a line whose loan is marked misused by the
                // review or the payment is rejected then, with the reason, in the step as
                // recorded (verify replays it so): a claim dated before the mark, or reviewed
                // before it, still pays nothing on that loan.
                let mut step = step.clone();
                let versions = g.registry.policies(tx, &claim.ledger_id).await?;
                // A review as asked is refused (a claim not submitted, a line that does not
                // exist, the notice's days) before any of its loans is read; the lines of
                // misused loans it adds change none of that. A payment's figures depend on
                // them: a claim not noticed has no loan read, and its payment is refused below.
                if matches!(step, ClaimEvent::Reviewed { .. }) {
                    claim.clone().apply(&step, &versions)?;
                }
                let candidates: Vec<usize> = match &step {
                    ClaimEvent::Reviewed { rejections, .. } => {
                        let rejected: HashSet<usize> =
                            rejections.iter().map(|r| r.line as usize).collect();
                        (0..claim.lines.len())
                            .filter(|&i| {
                                claim.lines[i].differences.is_empty() && !rejected.contains(&i)
                            })
                            .collect()
                    }
                    ClaimEvent::Paid { .. } if claim.status == ClaimStatus::Noticed => {
                        (0..claim.lines.len())
                            .filter(|&i| claim.lines[i].decision == Some(Decision::Approved))
                            .collect()
                    }
                    _ => Vec::new(),
                };
                let mut misused = Vec::new();
                // (line, household, contract date) of the lines whose loans are not misused.
                let mut judged = Vec::new();
                for i in candidates {
                    let loan = self.loan(tx, g, &claim.lines[i].claimed.loan_id).await?;
                    if let Some(since) = loan.servicing.misuse_since {
                        let reason = format!(
                            "the loan is marked misused (from {}): a misused loan is not subsidised",
                            format_date(since)
                        );
                        misused.push(Rejection { line: i as u32, reason });
                    } else {
                        let t = &loan.terms;
                        judged.push((i, t.household_id.clone(), t.contract_date));
                    }
                }
                // Nor a loan falsely obtained: its household's status on the contract date, as
                // the series stands now, one the programme never lends to (a status dated back
                // since the claim's lines were checked; since 2026-12-07, when such a line was
                // approved and paid). The contract was judged eligible when recorded.
                let ineligible = self.ineligible_on_contract_dates(tx, g, &judged).await?;
                for (k, status) in ineligible {
                    let (i, household_id, contract_date) = &judged[k];
                    let reason = format!(
                        "household {household_id}'s status on the contract date ({}) is {}, one \
                         the programme never lends to: a loan falsely obtained is not subsidised",
                        format_date(*contract_date),
                        status.as_str()
                    );
                    misused.push(Rejection { line: *i as u32, reason });
                }
                misused.sort_unstable_by_key(|r| r.line);
                match &mut step {
                    ClaimEvent::Reviewed { rejections, .. } => rejections.extend(misused),
                    ClaimEvent::Paid { withheld, payee, owes_households, .. } => {
                        *withheld = misused;
                        *owes_households = *payee == Payee::Bank;
                    }
                    // The line's loan, named in the journal (its history shows the clawback).
                    ClaimEvent::ClawedBack { line, loan_id, .. } => {
                        *loan_id =
                            claim.lines.get(*line as usize).map(|l| l.claimed.loan_id.clone())
                    }
                    _ => {}
                }
                let step = &step;
                let mut after = claim.clone();
                let released = after.apply(step, &versions)?;
                // A notice runs its days in fact, not only in its dates: a payment is recorded
                // from the day after its last by the service's own date, whatever date it is
                // given (since 2026-12-07: one recorded on the last day, dated the next, shut
                // that day's objections out).
                if let ClaimEvent::Paid { .. } = step
                    && let Some(review) = &claim.review
                    && g.recorded_on <= review.notice_to
                {
                    return Err(DomainError::refused(
                        Reason::NoticeNotOver,
                        format!(
                            "the notice of claim {claim_id} runs to {} and today is {}: its \
                             payment is recorded from the day after",
                            format_date(review.notice_to),
                            format_date(g.recorded_on)
                        ),
                    )
                    .with("notice_to", format_date(review.notice_to))
                    .into());
                }
                // What a clawback reverses was paid on a loan marked misused by its date (checked
                // after the claim's own rules: a line paid nothing is named as such).
                if let ClaimEvent::ClawedBack { line, clawed_back_on, .. } = step
                    && let Some(line) = claim.lines.get(*line as usize)
                {
                    let loan_id = &line.claimed.loan_id;
                    let loan = self.loan(tx, g, loan_id).await?;
                    // Or falsely obtained: its household found, since the contract, one the
                    // programme never lends to on its date (since 2026-12-07; DESIGN.md: what
                    // was paid on a falsely obtained loan is clawed back too).
                    let t = &loan.terms;
                    let judged = [(0, t.household_id.clone(), t.contract_date)];
                    if loan.servicing.misuse_marked_on().is_none_or(|on| on > *clawed_back_on)
                        && self.ineligible_on_contract_dates(tx, g, &judged).await?.is_empty()
                    {
                        return Err(DomainError::refused(
                            Reason::LoanNotMisused,
                            format!(
                                "loan {loan_id} is not marked misused by {}, nor its household \
                                 found one the programme never lends to on its contract date: \
                                 only a misused or falsely obtained loan's subsidy is clawed back",
                                format_date(*clawed_back_on)
                            ),
                        )
                        .into());
                    }
                }
                let postings = claim_postings(step, &claim)
                    .map_err(|e| AppError::Internal(format!("claim {claim_id}: {e}")))?;
                Planned {
                    ledger_id: claim.ledger_id,
                    event: JournalEvent::SubsidyClaim(step.clone()),
                    postings,
                    effect: Effect::ClaimStep(Box::new(after), released, submitted_seq),
                }
            }
            Command::OpenRiskFund { .. }
            | Command::DepositRiskFund { .. }
            | Command::CompensateLoan { .. }
            | Command::PayCompensation { .. }
            | Command::RejectCompensation { .. }
            | Command::ReturnRecovery { .. } => self.plan_fund(tx, g, env).await?,
            Command::CreatePool { .. }
            | Command::TransferToPartner { .. }
            | Command::RecordPoolReturn { .. }
            | Command::RecordParticipation { .. }
            | Command::RepayPool { .. }
            | Command::SettlePool { .. } => self.plan_pool(tx, g, env).await?,
            Command::SettlementRun { .. } | Command::SettlementRunSummary { .. } => {
                return Err(AppError::Internal(format!(
                    "{} is not a journal command",
                    env.command.name()
                )));
            }
            Command::CreateLoan { terms } => {
                if actor.role != Role::Bank || actor.org != terms.bank_id {
                    return Err(AppError::denied(format!(
                        "{} may not contract loans for bank {}",
                        actor.actor(),
                        terms.bank_id
                    )));
                }
                let bank = g.registry.bank(tx, &terms.bank_id).await?.ok_or_else(|| {
                    DomainError::NotFound { what: "bank", id: terms.bank_id.clone() }
                })?;
                // Looked up with the group's other loans (`prefetch`): held if it exists.
                if g.loans.contains_key(&terms.loan_id)
                    || (!g.missing.contains(&terms.loan_id)
                        && tx.loan(&terms.loan_id).await?.is_some())
                {
                    return Err(
                        DomainError::Exists { what: "loan", id: terms.loan_id.clone() }.into()
                    );
                }
                // A household outside the ledger the bank lends in is answered as a missing
                // one, as `GetHousehold` answers it: the bank does not learn that it exists.
                let household = Self::household(&g.households, &terms.household_id)?
                    .filter(|h| h.row.ledger_id == bank.ledger_id)
                    .ok_or_else(|| DomainError::NotFound {
                        what: "household",
                        id: terms.household_id.clone(),
                    })?;
                let policies = g.registry.policies(tx, &bank.ledger_id).await?;
                let version = in_force(&policies, terms.contract_date);
                let policy = version.as_ref().map(|v| &v.params);
                let lpr = g.registry.lpr(tx).await?;
                let lpr_cap = lpr_on(
                    &lpr,
                    TenorBucket::for_term_months(terms.term_months),
                    terms.contract_date,
                );
                let open = household_loans(g, &terms.household_id)?;
                if let Some(parent_id) = &terms.renews_loan_id {
                    let parent = self.loan(tx, g, parent_id).await?;
                    // Another bank's loan is answered as a missing one: a bank never learns
                    // whether another bank's loan exists, nor whose it is.
                    if parent.terms.bank_id != terms.bank_id {
                        return Err(
                            DomainError::NotFound { what: "loan", id: parent_id.clone() }.into()
                        );
                    }
                    if parent.terms.household_id != terms.household_id {
                        return Err(DomainError::refused(
                            Reason::RenewalMismatch,
                            format!(
                                "loan {parent_id} belongs to household {}; a renewal must keep it",
                                parent.terms.household_id
                            ),
                        )
                        .into());
                    }
                    // A renewal replaces its parent, and the two count once against the cap
                    // while both are open (`domain::cap`). A renewal of a renewal whose own
                    // parent is still open would make three loans count as one, and so on
                    // without end: it waits until that parent is closed.
                    if let Some(grand) = parent.terms.renews_loan_id.as_deref()
                        && open.get(grand).is_some_and(|l| {
                            l.status.is_open() && !l.is_expired_contract(terms.contract_date)
                        })
                    {
                        return Err(DomainError::refused(
                            Reason::RenewalMismatch,
                            format!(
                                "loan {parent_id} renews loan {grand}, which is still open: a \
                                 renewal of {parent_id} may be contracted once {grand} is closed"
                            ),
                        )
                        .into());
                    }
                }
                // A contract never paid out whose maturity has come by the new contract's date
                // lends nothing and is not counted (nor is it paid out after this one: see
                // `Command::Disburse`).
                let contract_date = terms.contract_date;
                // A loan closed since the contract's date (a contract recorded late, dated back)
                // was open on it, and counts (`counts_on`).
                let household_open_loans: Vec<CapLoan<'_>> = open
                    .values()
                    .filter(|l| counts_on(l, contract_date))
                    .map(|l| CapLoan {
                        loan_id: &l.terms.loan_id,
                        renews: l.terms.renews_loan_id.as_deref(),
                        principal: l.cap_principal(),
                    })
                    .collect();
                let mut terms = terms.clone();
                terms.ledger_id = bank.ledger_id.clone();
                let ctx = OriginationContext {
                    bank_ledger_id: &bank.ledger_id,
                    household_ledger_id: &household.row.ledger_id,
                    household_statuses: &household.statuses,
                    policy,
                    lpr_cap,
                    household_open_loans: &household_open_loans,
                };
                let event = unpanicked("a contract's plan", || plan_origination(&terms, &ctx))??;
                let LoanEvent::Created { terms } = &event else {
                    return Err(AppError::Internal("origination planned another event".into()));
                };
                if let Some(other) = borrowers_other_household(g, &bank.ledger_id, terms)? {
                    return Err(DomainError::refused(
                        Reason::BorrowerOfAnotherHousehold,
                        format!(
                            "borrower_id_number belongs to household {other} of ledger {}: a \
                             person borrows for the one household they head or owed a loan for \
                             on this contract's date, whose cap counts all its members' loans",
                            bank.ledger_id
                        ),
                    )
                    .with("household_id", other)
                    .into());
                }
                let new_terms = Box::new(terms.clone());
                tracing::debug!(status = ?status_on(&household.statuses, terms.contract_date), "origination accepted");
                // Last: a contract the other rules refuse is refused for them, not for the fund.
                self.check_fund_limits(tx, g, &bank.ledger_id, &new_terms).await?;
                Planned {
                    ledger_id: bank.ledger_id.clone(),
                    event: JournalEvent::Loan(event.clone()),
                    postings: Postings::memo(),
                    effect: Effect::NewLoan(new_terms),
                }
            }
            Command::Disburse { loan_id, value_date, amount_fen } => {
                let loan = self.loan(tx, g, loan_id).await?;
                check_bank(actor, &loan)?;
                // A renewal replaces the loan it renews, and the two count once against the
                // household cap (`domain::cap`): it is paid out once that loan lends nothing more,
                // or the household would owe both at once, twice the cap.
                if let Some(parent_id) = &loan.terms.renews_loan_id {
                    let parent = self.loan(tx, g, parent_id).await?;
                    if let Some(why) = still_lends(&parent, *value_date) {
                        let mut refusal = DomainError::refused(
                            Reason::LoanNotDisbursable,
                            format!(
                                "loan {} renews loan {parent_id}, which {why}: a renewal is paid \
                                 out once the loan it renews is repaid",
                                loan.terms.loan_id
                            ),
                        )
                        .with(
                            "renewed_principal_outstanding_fen",
                            parent.principal_outstanding_fen.0,
                        );
                        // Written off, it owes no principal on its books: what is not recovered.
                        if parent.status == crate::domain::loan::LoanStatus::WrittenOff {
                            let unrecovered = parent.unrecovered_fen().0;
                            refusal = refusal.with("written_off_unrecovered_fen", unrecovered);
                        }
                        return Err(refusal.into());
                    }
                }
                // A contract not paid out by its maturity stopped counting against the household
                // cap for the contracts of the household dated from then on: with one of those,
                // open or closed, it is not paid out (back-dated before its maturity, it would
                // lend past the cap). A value date at or after the maturity, or before the
                // contract, is refused by the loan itself (`VALUE_DATE_OUT_OF_RANGE`), whatever
                // was contracted since.
                if paid_out_dated_back(&loan, *value_date, latest_contract_date(g)) {
                    // Contracted since without this one counting: by its household, or by its
                    // borrower for another household of the ledger, which the borrower rule let
                    // through because this contract no longer counted
                    // (`borrowers_other_household`): paid out, the person would owe loans of
                    // two households. Closed since, it counts too: contracted on or after the
                    // maturity, it was open after the value date, which is before the maturity,
                    // and this loan, paid out on that date, would have been owed beside it.
                    let counted_since = |l: &LoanState| {
                        l.terms.loan_id != loan.terms.loan_id
                            && loan.is_expired_contract(l.terms.contract_date)
                    };
                    let household = household_loans(g, &loan.terms.household_id)?;
                    // Nor once a renewal of it has been paid out, whenever contracted: the cap
                    // counted the two once, the renewal replacing it (since 2026-12-07: this
                    // payout, dated back, had the household owe both, up to twice the cap).
                    let mut renewals: Vec<&LoanState> = household
                        .values()
                        .copied()
                        .filter(|l| {
                            l.terms.renews_loan_id.as_deref() == Some(loan.terms.loan_id.as_str())
                                && l.disbursed_fen.is_positive()
                        })
                        .collect();
                    renewals.sort_unstable_by(|a, b| a.terms.loan_id.cmp(&b.terms.loan_id));
                    if let Some(renewal) = renewals.first() {
                        return Err(DomainError::refused(
                            Reason::LoanNotDisbursable,
                            format!(
                                "loan {} is renewed by loan {}, paid out on {}: the renewal \
                                 replaced it, and the two are not owed together",
                                loan.terms.loan_id,
                                renewal.terms.loan_id,
                                renewal.disbursed_on.map(format_date).unwrap_or_default()
                            ),
                        )
                        .with("renewal_loan_id", &renewal.terms.loan_id)
                        .into());
                    }
                    let borrower = borrower_loans(g, &loan.terms.borrower_id_number)?;
                    let mut since: Vec<&LoanState> = household
                        .into_values()
                        .chain(borrower.into_values().filter(|l| {
                            l.terms.ledger_id == loan.terms.ledger_id
                                && l.terms.household_id != loan.terms.household_id
                        }))
                        .filter(|l| counted_since(l))
                        .collect();
                    // The bank's own loans first: another bank's is named only when no loan of
                    // its own explains the refusal.
                    since.sort_unstable_by(|a, b| {
                        let other_bank = |l: &LoanState| l.terms.bank_id != loan.terms.bank_id;
                        (other_bank(a), &a.terms.loan_id).cmp(&(other_bank(b), &b.terms.loan_id))
                    });
                    if let Some(later) = since.first() {
                        return Err(expired_contract_refused(&loan, later));
                    }
                    // Nor to a borrower who has come to head another household of the ledger
                    // (registered while this contract did not count, as a head owing none), as
                    // `borrowers_other_household` judges a contract: a person who heads this
                    // loan's household too (two households under one head, registered before
                    // that rule) may borrow for either.
                    let t = &loan.terms;
                    if let Some(other) = heads_other_household(
                        g,
                        &t.ledger_id,
                        &t.borrower_id_number,
                        &t.household_id,
                    ) {
                        return Err(DomainError::refused(
                            Reason::BorrowerOfAnotherHousehold,
                            format!(
                                "loan {}'s borrower heads household {other} of ledger {}, \
                                 registered since the contract stopped counting at its maturity: \
                                 paid out, the person would owe loans of two households",
                                loan.terms.loan_id, loan.terms.ledger_id
                            ),
                        )
                        .with("household_id", other)
                        .into());
                    }
                    // Nor when its pool has been settled: the settlement took it as closed
                    // (a contract never paid out by its maturity lends nothing), so paid out it
                    // would be a live loan in a settled pool, which takes no collective
                    // repayment more.
                    if let Some((_, pool_id)) =
                        tx.pools_of_loans(&[t.loan_id.as_str()]).await?.into_iter().next()
                        && let Some(pool) = tx.pool(&pool_id).await?
                        && pool.status == PoolStatus::Settled
                    {
                        return Err(DomainError::refused(
                            Reason::PoolSettled,
                            format!(
                                "loan {} is a member of pool {pool_id}, settled on {} with the \
                                 contract expired unpaid: it is not paid out since",
                                t.loan_id,
                                pool.settled_on.map(format_date).unwrap_or_default()
                            ),
                        )
                        .with("pool_id", pool_id)
                        .into());
                    }
                    // Last: a payout the loan itself refuses is refused for that.
                    let planned = self.plan_loan(
                        &loan,
                        LoanCommand::Disburse { date: *value_date, amount: *amount_fen },
                    )?;
                    let left = Fen(loan.terms.principal_fen.0.saturating_sub(loan.disbursed_fen.0));
                    let amount = amount_fen.unwrap_or(left);
                    let loan = loan.into_owned();
                    self.check_payout_limits(tx, g, &loan, amount, *value_date).await?;
                    return Ok(planned);
                }
                let planned = self.plan_loan(
                    &loan,
                    LoanCommand::Disburse { date: *value_date, amount: *amount_fen },
                )?;
                // A later draw of a loan paid out in part, dated back before the maturity that
                // ended the count of its undrawn rest as lending, is new lending too (since
                // 2026-12-07: it went past the leverage limit unchecked).
                if draws_past_its_count(&loan, *value_date, latest_contract_date(g)) {
                    let left = Fen(loan.terms.principal_fen.0.saturating_sub(loan.disbursed_fen.0));
                    let amount = amount_fen.unwrap_or(left);
                    let loan = loan.into_owned();
                    self.check_payout_limits(tx, g, &loan, amount, *value_date).await?;
                }
                planned
            }
            Command::RecordRepayment { loan_id, value_date, amount_fen, subsidy_netted_fen } => {
                let loan = self.loan(tx, g, loan_id).await?;
                check_bank(actor, &loan)?;
                self.plan_loan(
                    &loan,
                    LoanCommand::Repay {
                        date: *value_date,
                        amount: *amount_fen,
                        netted: *subsidy_netted_fen,
                    },
                )?
            }
            Command::SettleLoan { loan_id, date } => {
                let loan = self.loan(tx, g, loan_id).await?;
                if !actor.administers_ledger(&loan.terms.ledger_id) {
                    check_bank(actor, &loan)?;
                }
                self.plan_settlement(&loan, *date)?
            }
            Command::MarkMisuse { loan_id, value_date, falsely_obtained } => {
                let loan = self.loan(tx, g, loan_id).await?;
                if !actor.administers_ledger(&loan.terms.ledger_id) {
                    check_bank(actor, &loan)?;
                }
                let command = LoanCommand::MarkMisuse {
                    date: *value_date,
                    falsely_obtained: *falsely_obtained,
                };
                self.plan_loan(&loan, command)?
            }
            Command::ExtendLoan { loan_id, value_date, new_maturity } => {
                let loan = self.loan(tx, g, loan_id).await?;
                check_bank(actor, &loan)?;
                self.plan_loan(
                    &loan,
                    LoanCommand::Extend { date: *value_date, new_maturity: *new_maturity },
                )?
            }
            Command::WriteOffLoan { loan_id, value_date } => {
                let loan = self.loan(tx, g, loan_id).await?;
                check_bank(actor, &loan)?;
                self.plan_loan(&loan, LoanCommand::WriteOff { date: *value_date })?
            }
            Command::RecordRecovery { loan_id, value_date, amount_fen } => {
                let loan = self.loan(tx, g, loan_id).await?;
                check_bank(actor, &loan)?;
                self.plan_loan(
                    &loan,
                    LoanCommand::Recover { date: *value_date, amount: *amount_fen },
                )?
            }
            Command::ReverseRepayment { loan_id, reversed_seq, reason } => {
                self.plan_reversal(tx, g, actor, (loan_id, *reversed_seq, reason)).await?
            }
        })
    }

    /// Plans a settlement of `loan` through `date`, dated the last point it settles: a run dated
    /// after its points (a quarter-end 20th on a Saturday, run on the Monday) would otherwise
    /// date the loan's last event after them, and the banks' payments of the days between, sent
    /// after the run, would be refused as dated before the loan's last event. The same points
    /// and figures, dated the point (a run dated a point, the usual case, is planned once); a
    /// settlement that would come out otherwise keeps the run's date.
    pub(super) fn plan_settlement(
        &self,
        loan: &LoanState,
        date: BusinessDate,
    ) -> Result<Planned, AppError> {
        let planned = self.plan_loan(loan, LoanCommand::Settle { date })?;
        fn points(p: &Planned) -> Option<&[crate::domain::servicing::SettlementPoint]> {
            match &p.event {
                JournalEvent::Loan(LoanEvent::Settled { settlements, .. }) => Some(settlements),
                _ => None,
            }
        }
        let last = points(&planned).and_then(|s| s.last()).map(|p| p.date);
        let Some(point) = last.filter(|point| *point < date) else { return Ok(planned) };
        let at_point = self.plan_loan(loan, LoanCommand::Settle { date: point })?;
        Ok(if points(&at_point) == points(&planned) { at_point } else { planned })
    }

    /// Plans a command on an existing loan: the event, its postings and the state after it.
    pub(super) fn plan_loan(
        &self,
        loan: &LoanState,
        command: LoanCommand,
    ) -> Result<Planned, AppError> {
        let (event, after) = unpanicked("a loan's plan", || loan.plan(&command))??;
        if let LoanEvent::Settled { settlements, .. } = &event
            && settlements.is_empty()
        {
            return Ok(Planned {
                ledger_id: loan.terms.ledger_id.clone(),
                event: JournalEvent::Loan(event),
                postings: Postings::memo(),
                effect: Effect::Unchanged(Box::new(loan.clone())),
            });
        }
        let settled = SettledTotals::of(event.settlements());
        let postings = loan_postings(&event, &loan.terms.bank_id)
            .map_err(|e| AppError::Internal(format!("unbalanced plan: {e}")))?;
        Ok(Planned {
            ledger_id: loan.terms.ledger_id.clone(),
            event: JournalEvent::Loan(event),
            postings,
            effect: Effect::Loan(Box::new(after), settled),
        })
    }

    /// Applies a planned effect (ledgers, banks and policy versions written now; households,
    /// their statuses and loan states into the group) and builds the answer.
    pub(super) async fn apply(
        &self,
        tx: &mut WriteTx,
        g: &mut Group,
        effect: Effect,
        seq: u64,
        entry: &JournalRef,
        brief: bool,
    ) -> Result<Outcome, AppError> {
        let seq_i64 = i64::try_from(seq).map_err(|_| AppError::Internal("seq overflow".into()))?;
        Ok(match effect {
            Effect::Ledger { ledger_id, name } => {
                tx.insert_ledger(&ledger_id, &name).await?;
                // A new ledger starts with the programme's default policy versions, so that it can
                // lend from the first day; the finance office adds its own versions later.
                for version in default_versions() {
                    tx.insert_policy(&ledger_id, &version, 0, seq_i64).await?;
                }
                g.registry.ledgers.insert(ledger_id.clone());
                // Nothing can have read this ledger's versions yet (they are read only for a
                // ledger known to exist); dropped all the same, should that ever change.
                g.registry.policies.remove(&ledger_id);
                Outcome::Ledger { ledger_id, name, entry: entry.clone() }
            }
            Effect::Bank(row) => {
                tx.insert_bank(&row).await?;
                g.registry.banks.insert(row.bank_id.clone(), row.clone());
                Outcome::Bank {
                    bank_id: row.bank_id,
                    ledger_id: row.ledger_id,
                    name: row.name,
                    entry: entry.clone(),
                }
            }
            Effect::Household(row, status) => {
                g.staged.households.push(row.clone());
                g.staged.statuses.push((row.household_id.clone(), seq_i64, status.clone()));
                let view = HouseholdView { row: row.clone(), statuses: vec![status.clone()] };
                g.households.insert(row.household_id.clone(), Some(view));
                g.headed
                    .entry((row.ledger_id.clone(), row.head_id_number.clone()))
                    .or_default()
                    .push(row.household_id.clone());
                Outcome::Household {
                    household: crate::domain::event::HouseholdRecord {
                        household_id: row.household_id,
                        ledger_id: row.ledger_id,
                        head_name: row.head_name,
                        head_id_number: row.head_id_number,
                        township: row.township,
                        village: row.village,
                    },
                    statuses: vec![status],
                    entry: entry.clone(),
                }
            }
            Effect::HouseholdStatus { household_id, entry: status } => {
                // Read for the group at its start (`prefetch`), and kept with its changes.
                let Some(Some(view)) = g.households.get_mut(&household_id) else {
                    return Err(AppError::Internal(format!(
                        "household {household_id} was not read for its group"
                    )));
                };
                view.statuses.push(status.clone());
                let view = view.clone();
                g.staged.statuses.push((household_id, seq_i64, status));
                Outcome::Household {
                    household: crate::domain::event::HouseholdRecord {
                        household_id: view.row.household_id,
                        ledger_id: view.row.ledger_id,
                        head_name: view.row.head_name,
                        head_id_number: view.row.head_id_number,
                        township: view.row.township,
                        village: view.row.village,
                    },
                    statuses: view.statuses,
                    entry: entry.clone(),
                }
            }
            Effect::Policy { ledger_id, version, ordinal } => {
                tx.insert_policy(&ledger_id, &version, ordinal, seq_i64).await?;
                g.registry.policies.remove(&ledger_id);
                Outcome::Policy { ledger_id, version, entry: entry.clone() }
            }
            Effect::Lpr(lpr) => {
                tx.insert_lpr(&lpr).await?;
                g.registry.lpr = None;
                Outcome::Lpr {
                    effective_from: lpr.effective_from,
                    tenor: lpr.bucket,
                    rate: lpr.rate,
                    entry: Some(entry.clone()),
                }
            }
            Effect::Claim(claim) => {
                tx.insert_claim(&claim, seq_i64).await?;
                Outcome::SubsidyClaim { claim, entry: entry.clone(), submitted_seq: seq }
            }
            Effect::ClaimStep(claim, released, submitted_seq) => {
                tx.update_claim(&claim, seq_i64, &released).await?;
                Outcome::SubsidyClaim { claim, entry: entry.clone(), submitted_seq }
            }
            Effect::Fund { fund, opened, compensation, compensated } => {
                tx.put_fund(&fund, opened, compensation.as_deref(), seq_i64).await?;
                g.funds.forget(&fund.ledger_id);
                if let Some(loan) = compensated {
                    // Written with the group's loans; its last seq stays its own last event's.
                    g.changed.insert(loan.terms.loan_id.clone());
                    g.loans.insert(loan.terms.loan_id.clone(), *loan);
                }
                Outcome::RiskFund { fund, compensation, entry: entry.clone() }
            }
            Effect::Pool { pool, created, loans, marked, parts } => {
                tx.put_pool(&pool, created, seq_i64).await?;
                for mut loan in loans {
                    loan.last_seq = seq;
                    g.changed.insert(loan.terms.loan_id.clone());
                    g.loans.insert(loan.terms.loan_id.clone(), loan);
                }
                for loan in marked {
                    g.changed.insert(loan.terms.loan_id.clone());
                    g.loans.insert(loan.terms.loan_id.clone(), loan);
                }
                Outcome::Pool { pool, parts, entry: entry.clone() }
            }
            Effect::Unchanged(_) => {
                return Err(AppError::Internal("an unchanged loan reached apply".into()));
            }
            Effect::NewLoan(terms) => {
                let after = LoanState::new(*terms, seq);
                g.staged.new_loans.insert(after.terms.loan_id.clone());
                g.changed_loan(after, entry, SettledTotals::default(), brief)
            }
            Effect::Loan(state, settled) => {
                let mut after = *state;
                after.last_seq = seq;
                g.changed_loan(after, entry, settled, brief)
            }
        })
    }

    /// Of `judged` (a claim's line, its loan's household and contract date), those whose
    /// household's status on the contract date, as its series stands now (the group's own
    /// changes on top), is one the programme never lends to, by their place in `judged`, with
    /// that status: the loan falsely obtained. The households the group has not read, read in
    /// one go.
    async fn ineligible_on_contract_dates(
        &self,
        tx: &mut WriteTx,
        g: &Group,
        judged: &[(usize, String, BusinessDate)],
    ) -> Result<Vec<(usize, HouseholdStatus)>, AppError> {
        if judged.is_empty() {
            return Ok(Vec::new());
        }
        let mut unread: Vec<&str> = judged
            .iter()
            .map(|(_, h, _)| h.as_str())
            .filter(|h| !g.households.contains_key(*h))
            .collect();
        unread.sort_unstable();
        unread.dedup();
        let read: HashMap<String, Vec<StatusEntry>> = tx
            .households_many(&unread)
            .await?
            .into_iter()
            .map(|v| (v.row.household_id, v.statuses))
            .collect();
        let mut found = Vec::new();
        for (k, (_, household_id, contract_date)) in judged.iter().enumerate() {
            let series = match g.households.get(household_id) {
                Some(view) => view.as_ref().map(|v| v.statuses.as_slice()),
                None => read.get(household_id).map(Vec::as_slice),
            };
            if let Some(status) = series.and_then(|s| never_lent_to_on(s, *contract_date)) {
                found.push((k, status));
            }
        }
        Ok(found)
    }
}

/// Whether `actor` may change `loan` as its bank. A loan the actor may not read is answered as
/// a missing one (another bank's to a bank, another ledger's to a finance office): nobody
/// learns whether a loan outside their books exists, nor whose it is (as a renewal of it is
/// answered). A loan the actor reads but may not change as its bank is PERMISSION_DENIED.
pub(super) fn check_bank(actor: &Principal, loan: &LoanState) -> Result<(), AppError> {
    if actor.role == Role::Bank && actor.org == loan.terms.bank_id {
        Ok(())
    } else if !actor.reads_loan(&loan.terms.bank_id, &loan.terms.ledger_id) {
        Err(DomainError::NotFound { what: "loan", id: loan.terms.loan_id.clone() }.into())
    } else {
        Err(AppError::denied(format!(
            "{} may not change loan {}: it belongs to bank {}",
            actor.actor(),
            loan.terms.loan_id,
            loan.terms.bank_id
        )))
    }
}

/// The first of `seen` (ids, each with the seq it had when a claim was checked) whose seq is
/// another now, if any: now, the `stored` seq of each, or the group's `own` later one (its
/// changes not in the database yet); 0 for one with none.
fn changed_since<'s, 'o>(
    seen: &'s [(String, u64)],
    stored: Vec<(String, i64)>,
    own: impl IntoIterator<Item = (&'o str, u64)>,
) -> Option<&'s str> {
    let mut now: HashMap<String, u64> =
        stored.into_iter().map(|(id, seq)| (id, u64::try_from(seq).unwrap_or(0))).collect();
    for (id, seq) in own {
        let at = now.entry(id.to_string()).or_insert(0);
        *at = (*at).max(seq);
    }
    seen.iter()
        .find(|(id, seen)| now.get(id).copied().unwrap_or(0) != *seen)
        .map(|(id, _)| id.as_str())
}
