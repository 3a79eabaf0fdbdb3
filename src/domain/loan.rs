//! Programme loans: origination rules, disbursement, repayment, and the loan's state.
//!
//! Model: a [`LoanState`] is the loan's contract ([`LoanTerms`]) plus its balances and status. Every
//! change is a [`LoanEvent`]; [`LoanState::apply`] is the only place a state changes, used both
//! when a command is accepted and when `verify` rebuilds the read model from the journal. The
//! `plan_*` functions check a command against the state and the policy in force and return the
//! event to record, or the first broken rule; they never change anything.
//!
//! Status: `Contracted` (nothing paid out) -> `Active` (principal outstanding, nothing overdue)
//! -> `Overdue` (something unpaid past its due date) -> `Overdue90` (more than 90 days) ->
//! `Settled` (everything repaid) or `WrittenOff`. What a disbursed loan owes is computed by
//! [`super::servicing`]; every servicing event records its figures and [`LoanState::apply`]
//! recomputes them, so a replay of the journal checks every settled amount. An amortising loan
//! (等额本息, 等额本金) is scheduled at its first disbursement, to the contract's maturity; a
//! second disbursement and an extension of it are refused (see [`super::servicing`]).
//!
//! **Recoveries after a write-off** (账销案存: written off the books, the claim kept): what the
//! bank collects of a written-off loan later ([`LoanCommand::Recover`], event
//! [`LoanEvent::Recovered`]), at most what was written off less what was recovered before
//! (`REPAYMENT_EXCEEDS_OWED`, `metadata.recoverable_fen`), on a written-off loan only
//! (`LOAN_NOT_WRITTEN_OFF`), not dated before its last event. It goes to the principal written
//! off first (that part counted in `principal_repaid_fen`, so that the risk fund's share of it
//! is returned as any recovery's is: [`super::risk_fund::recovered_since`]), then to the
//! interest and charges written off; the loan stays written off. Postings: `bank/<id>/cash` Dr,
//! `bank/<id>/loan_loss` Cr, the loss reduced by what came back.
//!
//! **Subsidy netted at repayment** (直补: the household pays the net amount, DESIGN.md). A bank
//! paid the subsidy directly takes it off the interest a household pays and claims it from the
//! finance office later. A repayment says how much of its amount is that subsidy
//! (`LoanCommand::Repay::netted`, the request's `subsidy_netted_fen`): the loan is repaid the
//! whole amount, allocated as any repayment's, and the netted part is owed to the bank by the
//! finance office. It is at most the current (on-time) interest the repayment pays
//! (`SUBSIDY_NETTED_EXCEEDS_INTEREST`, `metadata.current_interest_fen`): penalty, compound and
//! overdue interest are never subsidised. A loan marked misused earns no subsidy to net
//! (`MISUSE_ALREADY_MARKED`). Nothing else is judged at repayment (the ratio, the household's
//! 50,000 cap, the cap rate): the claim's review recomputes every line, and what the bank
//! netted beyond what is paid stays visible in its `subsidy_due` account. Postings:
//! `bank/<id>/cash` Dr the amount less the netted part, `bank/<id>/subsidy_due` Dr the netted
//! part; the claim paid to the bank moves each approved line's subsidy from
//! `bank/<id>/subsidy_due` to its household: of a line the bank netted, what it advanced; of
//! one it did not (since 2026-12-07), what it then holds for the household
//! ([`crate::ledger::claim_postings`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use rust_decimal::Decimal;

use super::cap::{self, CapLoan};
use super::date::{BusinessDate, add_months, age_on, format_date, iso, iso_opt};
use super::error::{DomainError, EARLIEST_DATE, LATEST_DATE, Reason};
use super::household::{StatusEntry, status_on};
use super::money::{Fen, Rounding};
use super::policy::PolicyParams;
use super::rate::AnnualRate;
use super::servicing::{
    Allocation, Quote, RepayError, Repayment, Servicing, ServicingError, ServicingTerms,
    SettlementPoint,
};

pub use super::calendar::SettlementFrequency;
pub use super::schedule::RepaymentMethod;
use super::schedule::{ScheduleTerms, Term, build_schedule_paid_out};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoanStatus {
    Contracted,
    Active,
    Overdue,
    Overdue90,
    Settled,
    WrittenOff,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(<$ty>::$variant => $text),+ }
            }
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(<$ty>::$variant),)+ _ => None }
            }
        }
    };
}

impl LoanStatus {
    /// The statuses of a disbursed loan that owes something, which the date alone moves between
    /// (a due date passing with nothing paid); the others change only by an event.
    pub const LIVE: [LoanStatus; 3] =
        [LoanStatus::Active, LoanStatus::Overdue, LoanStatus::Overdue90];

    pub fn is_live(self) -> bool {
        Self::LIVE.contains(&self)
    }
}

text_enum!(RepaymentMethod {
    Bullet => "bullet",
    EqualInstalment => "equal_instalment",
    EqualPrincipal => "equal_principal",
    InterestWithPrincipal => "interest_with_principal",
});
text_enum!(SettlementFrequency {
    Monthly => "monthly",
    Quarterly => "quarterly",
    Yearly => "yearly",
    AtMaturity => "at_maturity",
});
text_enum!(LoanStatus {
    Contracted => "contracted",
    Active => "active",
    Overdue => "overdue",
    Overdue90 => "overdue_90",
    Settled => "settled",
    WrittenOff => "written_off",
});

impl LoanStatus {
    /// Whether the loan's contract principal still counts against the household cap.
    pub fn is_open(self) -> bool {
        !matches!(self, LoanStatus::Settled | LoanStatus::WrittenOff)
    }
}

/// The contract, as recorded. Built from a checked request; `plan_origination` applies the
/// programme rules and fixes the policy figures the loan is serviced with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoanTerms {
    pub loan_id: String,
    pub ledger_id: String,
    pub bank_id: String,
    pub contract_number: String,
    pub household_id: String,
    pub borrower_name: String,
    pub borrower_id_number: String,
    pub borrower_birth_date: BusinessDate,
    pub principal_fen: Fen,
    pub annual_rate: AnnualRate,
    pub contract_date: BusinessDate,
    pub term_months: u32,
    pub maturity_date: BusinessDate,
    pub repayment_method: RepaymentMethod,
    pub settlement_frequency: SettlementFrequency,
    pub purpose: String,
    pub collateral_free: bool,
    pub guarantee_free: bool,
    /// The loan this one renews (续贷), if any.
    pub renews_loan_id: Option<String>,
    /// Policy figures in force on the contract date, fixed for the life of the loan (read back
    /// within the bounds policies are checked to: a recorded contract outside them is refused
    /// as unreadable, not serviced).
    #[serde(deserialize_with = "super::rate::recorded_uplift")]
    pub overdue_uplift: Decimal,
    #[serde(deserialize_with = "super::rate::recorded_uplift")]
    pub misuse_uplift: Decimal,
    #[serde(deserialize_with = "super::policy::recorded_grace_days")]
    pub grace_days: u32,
    pub rounding: Rounding,
    pub extension_months_max: u32,
    /// Days overdue after which the loan may be claimed against the risk fund, is
    /// `OVERDUE_90` and non-performing, and may be written off: the policy's
    /// [`crate::domain::policy::PolicyParams::claim_overdue_days`] on the contract date (90 by
    /// default). Stored only when it is not 90: the contracts recorded before it was a
    /// parameter read back as the 90 they were serviced with.
    #[serde(
        default = "super::policy::claim_overdue_days_default",
        skip_serializing_if = "super::policy::is_claim_overdue_days_default",
        deserialize_with = "super::policy::recorded_claim_overdue_days"
    )]
    pub claim_overdue_days: u32,
}

impl LoanTerms {
    pub fn servicing_terms(&self) -> ServicingTerms {
        ServicingTerms {
            rate: self.annual_rate,
            method: self.repayment_method,
            frequency: self.settlement_frequency,
            overdue_uplift: self.overdue_uplift,
            misuse_uplift: self.misuse_uplift,
            grace_days: self.grace_days,
            rounding: self.rounding,
        }
    }
}

/// A loan's contract, balances and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoanState {
    /// Shared, not copied, by the states planned from this one: a contract never changes.
    pub terms: Arc<LoanTerms>,
    pub status: LoanStatus,
    pub disbursed_fen: Fen,
    pub principal_outstanding_fen: Fen,
    pub principal_repaid_fen: Fen,
    pub interest_paid_fen: Fen,
    pub disbursed_on: Option<BusinessDate>,
    /// Latest value date of any event; value dates of a loan never go backwards.
    pub last_value_date: BusinessDate,
    /// Journal sequence number of the last event applied.
    pub last_seq: u64,
    pub servicing: Servicing,
}

/// What a caller asks of an existing loan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoanCommand {
    /// `amount` `None` pays out all that is left of the principal.
    Disburse {
        date: BusinessDate,
        amount: Option<Fen>,
    },
    Settle {
        date: BusinessDate,
    },
    Repay {
        date: BusinessDate,
        amount: Fen,
        /// Of `amount`, the subsidy the bank took off the household's interest (直补; see the
        /// module doc).
        netted: Fen,
    },
    MarkMisuse {
        date: BusinessDate,
        /// Falsely obtained (骗贷) rather than used against its purpose: the same effects.
        falsely_obtained: bool,
    },
    Extend {
        date: BusinessDate,
        new_maturity: BusinessDate,
    },
    WriteOff {
        date: BusinessDate,
    },
    /// Money collected of a written-off loan.
    Recover {
        date: BusinessDate,
        amount: Fen,
    },
}

/// What happened to a loan. The journal's `command_json` of a loan transaction is one of these.
/// `settlements` are the settlement points the event passed and settled first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LoanEvent {
    Created {
        terms: LoanTerms,
    },
    Disbursed {
        loan_id: String,
        #[serde(with = "iso")]
        value_date: BusinessDate,
        amount_fen: Fen,
        settlements: Vec<SettlementPoint>,
    },
    Settled {
        loan_id: String,
        #[serde(with = "iso")]
        value_date: BusinessDate,
        settlements: Vec<SettlementPoint>,
    },
    Repaid {
        loan_id: String,
        #[serde(with = "iso")]
        value_date: BusinessDate,
        amount_fen: Fen,
        settlements: Vec<SettlementPoint>,
        repayment: Repayment,
        /// Of `amount_fen`, the subsidy netted by the bank (since 2026-12-06; left out when
        /// zero, so a repayment recorded before keeps its bytes).
        #[serde(default, skip_serializing_if = "Fen::is_zero")]
        subsidy_netted_fen: Fen,
    },
    MisuseMarked {
        loan_id: String,
        #[serde(with = "iso")]
        value_date: BusinessDate,
        settlements: Vec<SettlementPoint>,
        /// The mark says the loan was falsely obtained (since 2026-12-06; left out when false,
        /// so a mark recorded before keeps its bytes).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        falsely_obtained: bool,
    },
    Extended {
        loan_id: String,
        #[serde(with = "iso")]
        value_date: BusinessDate,
        #[serde(with = "iso")]
        new_maturity: BusinessDate,
        settlements: Vec<SettlementPoint>,
    },
    WrittenOff {
        loan_id: String,
        #[serde(with = "iso")]
        value_date: BusinessDate,
        settlements: Vec<SettlementPoint>,
        charges: SettlementPoint,
        allocation: Allocation,
        /// The day the loan fell overdue, from which the risk fund counts its days overdue
        /// when it is claimed after the write-off (since 2026-12-07; left out of a write-off
        /// recorded before, which keeps its bytes and replays without it).
        #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
        overdue_since: Option<BusinessDate>,
    },
    /// Money collected of a written-off loan (since 2026-12-06): `principal_fen` of it the
    /// principal written off, the rest its interest and charges.
    Recovered {
        loan_id: String,
        #[serde(with = "iso")]
        value_date: BusinessDate,
        amount_fen: Fen,
        principal_fen: Fen,
    },
    /// A repayment recorded in error taken back (since 2026-12-07, DESIGN.md: "a correction is
    /// a new transaction that reverses an earlier one and names it"): `reversed_seq` names the
    /// repayment, which was the loan's latest entry; `value_date` is the repayment's, so that
    /// the two cancel in every figure as of any date. Its postings are the repayment's,
    /// negated ([`crate::ledger::loan_postings::reversal_postings`]). The loan is as if the
    /// repayment had never been recorded: its events replay without the pair
    /// ([`remove_reversed`]), and the reversal itself only moves the loan's last seq.
    Reversed {
        loan_id: String,
        #[serde(with = "iso")]
        value_date: BusinessDate,
        reversed_seq: u64,
        /// Why, in the bank's words (required, for the auditors).
        reason: String,
    },
}

/// Takes out of a loan's events, in journal order with their seqs, each event a reversal
/// names, leaving the reversals (which move only the loan's last seq: [`LoanState::apply`]).
/// What remains is the loan's history as if the reversed events had never been recorded. A
/// reversal that names no earlier event of the list takes nothing out (the writer records none
/// such; verify reports one).
pub fn remove_reversed<E: std::borrow::Borrow<LoanEvent>>(events: &mut Vec<(E, u64)>) {
    let reversed: Vec<u64> = events
        .iter()
        .filter_map(|(e, _)| match e.borrow() {
            LoanEvent::Reversed { reversed_seq, .. } => Some(*reversed_seq),
            _ => None,
        })
        .collect();
    if reversed.is_empty() {
        return;
    }
    events.retain(|(e, seq)| {
        matches!(e.borrow(), LoanEvent::Reversed { .. }) || !reversed.contains(seq)
    });
}

/// Whether `event`, recorded at `seq` as its loan's latest entry, may be reversed, `after`
/// the loan it left: a repayment may (a settlement, a payout or a mark is not a bank's keying
/// error to take back here; a pool's collective repayment is its pool's), but not a payoff:
/// from its day the loan counted as closed for the contracts made since (the household cap, a
/// renewal's payout, the one-household rule). The writer and verify both ask it.
pub fn check_reversible(event: &LoanEvent, seq: u64, after: &LoanState) -> Result<(), DomainError> {
    match event {
        LoanEvent::Repaid { loan_id, .. } if after.status == LoanStatus::Settled => {
            Err(DomainError::refused(
                Reason::NotReversible,
                format!(
                    "entry {seq} paid loan {loan_id} off: contracts since may have counted the \
                     loan closed; it is not reversed"
                ),
            )
            .with("status", after.status.as_str()))
        }
        LoanEvent::Repaid { .. } => Ok(()),
        other => Err(DomainError::refused(
            Reason::NotReversible,
            format!(
                "entry {seq} of loan {} is a {} ({}): only a repayment is reversed",
                other.loan_id(),
                event_kind(other),
                other.kind()
            ),
        )
        .with("reversed_kind", other.kind())),
    }
}

impl LoanEvent {
    pub fn loan_id(&self) -> &str {
        match self {
            LoanEvent::Created { terms } => &terms.loan_id,
            LoanEvent::Disbursed { loan_id, .. }
            | LoanEvent::Settled { loan_id, .. }
            | LoanEvent::Repaid { loan_id, .. }
            | LoanEvent::MisuseMarked { loan_id, .. }
            | LoanEvent::Extended { loan_id, .. }
            | LoanEvent::WrittenOff { loan_id, .. }
            | LoanEvent::Recovered { loan_id, .. }
            | LoanEvent::Reversed { loan_id, .. } => loan_id,
        }
    }

    pub fn value_date(&self) -> BusinessDate {
        match self {
            LoanEvent::Created { terms } => terms.contract_date,
            LoanEvent::Disbursed { value_date, .. }
            | LoanEvent::Settled { value_date, .. }
            | LoanEvent::Repaid { value_date, .. }
            | LoanEvent::MisuseMarked { value_date, .. }
            | LoanEvent::Extended { value_date, .. }
            | LoanEvent::WrittenOff { value_date, .. }
            | LoanEvent::Recovered { value_date, .. }
            | LoanEvent::Reversed { value_date, .. } => *value_date,
        }
    }

    pub fn settlements(&self) -> &[SettlementPoint] {
        match self {
            LoanEvent::Created { .. }
            | LoanEvent::Recovered { .. }
            | LoanEvent::Reversed { .. } => &[],
            LoanEvent::Disbursed { settlements, .. }
            | LoanEvent::Settled { settlements, .. }
            | LoanEvent::Repaid { settlements, .. }
            | LoanEvent::MisuseMarked { settlements, .. }
            | LoanEvent::Extended { settlements, .. }
            | LoanEvent::WrittenOff { settlements, .. } => settlements,
        }
    }

    /// The command that produced this event (for recomputation on replay).
    fn command(&self) -> Option<LoanCommand> {
        Some(match self {
            LoanEvent::Created { .. } | LoanEvent::Reversed { .. } => return None,
            LoanEvent::Disbursed { value_date, amount_fen, .. } => {
                LoanCommand::Disburse { date: *value_date, amount: Some(*amount_fen) }
            }
            LoanEvent::Settled { value_date, .. } => LoanCommand::Settle { date: *value_date },
            LoanEvent::Repaid { value_date, amount_fen, subsidy_netted_fen, .. } => {
                LoanCommand::Repay {
                    date: *value_date,
                    amount: *amount_fen,
                    netted: *subsidy_netted_fen,
                }
            }
            LoanEvent::MisuseMarked { value_date, falsely_obtained, .. } => {
                LoanCommand::MarkMisuse { date: *value_date, falsely_obtained: *falsely_obtained }
            }
            LoanEvent::Extended { value_date, new_maturity, .. } => {
                LoanCommand::Extend { date: *value_date, new_maturity: *new_maturity }
            }
            LoanEvent::WrittenOff { value_date, .. } => LoanCommand::WriteOff { date: *value_date },
            LoanEvent::Recovered { value_date, amount_fen, .. } => {
                LoanCommand::Recover { date: *value_date, amount: *amount_fen }
            }
        })
    }
}

fn servicing_error(e: ServicingError) -> DomainError {
    match e {
        ServicingError::Overflow => DomainError::Overflow { field: "amount_fen".into() },
        ServicingError::TooManyPoints
        | ServicingError::DateOutOfRange
        | ServicingError::ScheduleMismatch => {
            DomainError::refused(Reason::ValueDateOutOfRange, e.to_string())
        }
    }
}

impl LoanState {
    /// Whether this is a contract never paid out whose maturity has come by `date`: from then
    /// on it is not paid out on a value date (one at or after the maturity is refused), nor
    /// repaid or closed, so it lends nothing and the household cap does not count it for
    /// contracts dated from then on. Dated back before its maturity, it is still paid out unless
    /// its household, or its borrower for another household, has contracted a loan since (the
    /// writer's `Command::Disburse`).
    pub fn is_expired_contract(&self, date: BusinessDate) -> bool {
        self.status == LoanStatus::Contracted
            && date >= self.servicing.maturity_date.unwrap_or(self.terms.maturity_date)
    }

    /// What was written off and not recovered since (zero for a loan never written off).
    pub fn unrecovered_fen(&self) -> Fen {
        let s = &self.servicing;
        Fen(s.written_off_fen.0.saturating_sub(s.recovered_fen.0))
    }

    /// Whether what is left of the contract is never paid out, on any date, for good: once an
    /// amortising loan's one payout fixed its schedule, once it was marked misused, once the
    /// risk fund paid its bank's claim on it (each further payout `LOAN_NOT_DISBURSABLE`; none
    /// is undone). Not while the claim is pending ([`Servicing::claim_pending`]): a claim the
    /// finance office rejects lets the loan pay out again. The household cap counts only what
    /// was paid out then ([`LoanState::cap_principal`]), and the risk fund's exposure no
    /// undrawn rest ([`crate::domain::risk_fund::Exposure::of_loan`]).
    pub fn pays_out_no_more(&self) -> bool {
        (self.terms.repayment_method.is_amortising() && self.disbursed_fen.is_positive())
            || self.servicing.misuse_since.is_some()
            || (self.servicing.compensated_on.is_some() && !self.servicing.claim_pending)
    }

    /// The principal the loan counts against its household's cap while it counts: the
    /// contract's, or, once the rest is never paid out ([`LoanState::pays_out_no_more`]), what
    /// was paid out (since 2026-12-07 evening: the whole contract counted, and the rest, which
    /// nothing could lend, held the household's room to the loan's maturity; a loan whose claim
    /// on the risk fund was paid, since 2026-12-07 night).
    pub fn cap_principal(&self) -> Fen {
        if self.pays_out_no_more() { self.disbursed_fen } else { self.terms.principal_fen }
    }

    /// The day from which the contract pays out nothing more: its maturity, which an extension
    /// does not move (an extension gives the household longer to repay what it was lent, not
    /// the bank longer to lend; since 2026-12-07).
    pub fn payable_until(&self) -> BusinessDate {
        let extended = self.servicing.maturity_date.unwrap_or(self.terms.maturity_date);
        self.terms.maturity_date.min(extended)
    }

    /// The first due date of a subsidy period a repayment of the loan dated `paid_on` may pay
    /// on time: that date less its grace days (a period due on or after it; one due before has
    /// its deadline before the payment, which paid it late if at all, and a claim holds only
    /// lines paid in full on time). A reversal of the repayment is refused while a claim holds
    /// such a period (the writer's and verify's rule). Until 2026-12-07 it was the loan's value
    /// date before the repayment, which refused the reversal of a repayment dated after a held
    /// period's deadline, one it could not have paid on time.
    pub fn periods_payable_on_time_by(&self, paid_on: BusinessDate) -> BusinessDate {
        paid_on - chrono::Duration::days(i64::from(self.terms.grace_days))
    }

    /// The state a `Created` event starts.
    pub fn new(terms: LoanTerms, seq: u64) -> Self {
        LoanState {
            last_value_date: terms.contract_date,
            terms: Arc::new(terms),
            status: LoanStatus::Contracted,
            disbursed_fen: Fen::ZERO,
            principal_outstanding_fen: Fen::ZERO,
            principal_repaid_fen: Fen::ZERO,
            interest_paid_fen: Fen::ZERO,
            disbursed_on: None,
            last_seq: seq,
            servicing: Servicing::default(),
        }
    }

    /// The principal paid out and not repaid, at least zero (a written-off loan's recoveries
    /// count as repaid: what is left of its principal written off); `None` past 64 bits.
    pub fn principal_not_repaid(&self) -> Option<Fen> {
        Some(self.disbursed_fen.checked_sub(self.principal_repaid_fen)?.max(Fen::ZERO))
    }

    /// The last day the loan lent: its last event's date, but a closed loan's closing date once
    /// a later event (a recovery, a misuse mark) dates its last event after it. Neither lends
    /// anything: the rules that ask whether a loan was open on a day read this, not
    /// [`LoanState::last_value_date`], which orders the loan's own events.
    pub fn lent_until(&self) -> BusinessDate {
        self.servicing.closed_on.unwrap_or(self.last_value_date)
    }

    /// Whether the loan is paid out and owes something (its status one of [`LoanStatus::LIVE`]).
    pub fn is_live(&self) -> bool {
        self.status.is_live()
    }

    /// The status shown on `date` with the loan's payoff `quote` on that date, if it has one:
    /// from the quote's days overdue (settlement points up to `date` count even when no run has
    /// recorded them yet), else from the state.
    pub fn status_shown(&self, quote: Option<&Quote>, date: BusinessDate) -> LoanStatus {
        match quote {
            Some(q) => self.status_for_days_overdue(q.days_overdue),
            None => self.status_on(date),
        }
    }

    /// The status on `date`, from the state as it stands (no event after it is known).
    pub fn status_on(&self, date: BusinessDate) -> LoanStatus {
        let days = self.servicing.days_overdue(&self.terms.servicing_terms(), date);
        self.status_for_days_overdue(days)
    }

    /// The status of a live loan with something `days` overdue (terminal states stay).
    pub fn status_for_days_overdue(&self, days: i64) -> LoanStatus {
        if !self.is_live() {
            return self.status;
        }
        if days > i64::from(self.terms.claim_overdue_days) {
            LoanStatus::Overdue90
        } else if days > 0 {
            LoanStatus::Overdue
        } else {
            LoanStatus::Active
        }
    }

    /// The loan once the finance office rejected its bank's claim on the risk fund: no longer
    /// marked compensated ([`Servicing::compensated_on`]), its figures as they were.
    pub fn claim_rejected(&self) -> LoanState {
        let mut after = self.clone();
        after.servicing.compensated_on = None;
        after.servicing.claim_pending = false;
        after
    }

    /// The loan once its bank claimed it on the risk fund for `date` (`pending`: a claim the
    /// finance office pays or rejects later, [`Servicing::claim_pending`]) or the fund
    /// compensated it in one step (not pending: recorded before claims had two steps), marked
    /// compensated on `date` ([`Servicing::compensated_on`]): its figures, status and last
    /// event as they were.
    pub fn compensated(&self, date: BusinessDate, pending: bool) -> LoanState {
        let mut after = self.clone();
        after.servicing.compensated_on = Some(date);
        after.servicing.claim_pending = pending;
        after
    }

    /// The loan once its pool's collective repayment was dated `date`
    /// ([`Servicing::pool_repaid_on`]), whether it took a part or not: its figures, status and
    /// last event as they were.
    pub fn pool_repaid(&self, date: BusinessDate) -> LoanState {
        let mut after = self.clone();
        after.servicing.pool_repaid_on =
            Some(self.servicing.pool_repaid_on.map_or(date, |d| d.max(date)));
        after
    }

    /// The loan once its household handed its pool's partner some of its money on `date`
    /// ([`Servicing::pool_transferred_on`]): its figures, status and last event as they were.
    pub fn pool_transferred(&self, date: BusinessDate) -> LoanState {
        let mut after = self.clone();
        after.servicing.pool_transferred_on =
            Some(self.servicing.pool_transferred_on.map_or(date, |d| d.max(date)));
        after
    }

    /// The loan once the finance office paid its bank's claim: no longer pending
    /// ([`Servicing::claim_pending`]), still marked compensated; its figures as they were.
    pub fn claim_paid(&self) -> LoanState {
        let mut after = self.clone();
        after.servicing.claim_pending = false;
        after
    }

    /// The longest extension of the loan's maturity, in months: the policy's
    /// `extension_months_max`, and never more than 贷款通则 (article 12) allows: a short-term
    /// loan's (a term of a year or less) its original term, a medium-term loan's (over a year,
    /// up to five) half its term, rounded down to whole months, a long-term loan's three years
    /// (since 2026-12-07; before, every loan its whole term, which the extensions recorded then
    /// are replayed under).
    fn extension_months_allowed(&self, rules: Rules) -> u32 {
        let term = self.terms.term_months;
        let by_law = match rules {
            Rules::Now if term > 60 => 36,
            Rules::Now if term > 12 => term / 2,
            Rules::Now | Rules::AsRecorded => term,
        };
        self.terms.extension_months_max.min(by_law)
    }

    /// What paying the loan off on `date` would take.
    pub fn quote(&self, date: BusinessDate) -> Result<Quote, DomainError> {
        if !self.is_live() {
            return Err(DomainError::refused(
                Reason::LoanNotRepayable,
                format!("loan {} is {} and owes nothing", self.terms.loan_id, self.status.as_str()),
            )
            .with("status", self.status.as_str()));
        }
        if date < self.last_value_date {
            return Err(value_date_before(self, date));
        }
        self.servicing.quote(&self.terms.servicing_terms(), date).map_err(servicing_error)
    }

    /// Checks a command and computes its event and the state after it. Changes nothing.
    pub fn plan(&self, command: &LoanCommand) -> Result<(LoanEvent, LoanState), DomainError> {
        self.plan_as(command, Rules::Now)
    }

    /// [`LoanState::plan`] under `rules`.
    fn plan_as(
        &self,
        command: &LoanCommand,
        rules: Rules,
    ) -> Result<(LoanEvent, LoanState), DomainError> {
        let mut next = self.clone();
        let t = self.terms.servicing_terms();
        let loan_id = self.terms.loan_id.clone();
        check_compensation_date(self, command)?;
        // Not judged again on replay: builds before the rule recorded such events.
        if rules == Rules::Now {
            check_pool_date(self, command)?;
        }
        let event = match *command {
            LoanCommand::Disburse { date, amount } => {
                if !matches!(self.status, LoanStatus::Contracted | LoanStatus::Active) {
                    return Err(DomainError::refused(
                        Reason::LoanNotDisbursable,
                        format!(
                            "loan {loan_id} is {} and cannot be disbursed",
                            self.status.as_str()
                        ),
                    ));
                }
                check_value_date(self, date)?;
                // A loan found misused or falsely obtained is lent no more (since 2026-12-07:
                // a tranche paid out after the mark bore the misuse penalty from its first day).
                if rules == Rules::Now
                    && let Some(since) = self.servicing.misuse_since
                {
                    return Err(DomainError::refused(
                        Reason::LoanNotDisbursable,
                        format!(
                            "loan {loan_id} was marked {} on {} and cannot be disbursed",
                            self.servicing.misuse_label(),
                            format_date(self.servicing.misuse_marked_on().unwrap_or(since))
                        ),
                    )
                    .with("misuse_since", format_date(since)));
                }
                // The contract's maturity bounds its payouts: an extension moves when the loan
                // is repaid, not how long it lends (since 2026-12-07; recorded before, the
                // extended maturity did).
                let maturity = match rules {
                    Rules::Now => self.payable_until(),
                    Rules::AsRecorded => {
                        self.servicing.maturity_date.unwrap_or(self.terms.maturity_date)
                    }
                };
                if date >= maturity {
                    let extended = match self.servicing.maturity_date {
                        Some(extended) if extended > maturity && self.servicing.extensions > 0 => {
                            format!(
                                " (the contract's: its extension to {} moves its repayment, not its payouts)",
                                format_date(extended)
                            )
                        }
                        _ => String::new(),
                    };
                    let refusal = DomainError::refused(
                        Reason::ValueDateOutOfRange,
                        format!(
                            "value date {} is not before the maturity date {}{extended}",
                            format_date(date),
                            format_date(maturity)
                        ),
                    );
                    // The day before maturity, unless the loan's last event is later: then no
                    // date is taken, and none is named.
                    let latest = maturity.pred_opt().filter(|l| *l >= self.last_value_date);
                    return Err(refusal.with_date(LATEST_DATE, latest));
                }
                let left = self
                    .terms
                    .principal_fen
                    .checked_sub(self.disbursed_fen)
                    .ok_or_else(|| DomainError::Overflow { field: "amount_fen".into() })?;
                let amount = amount.unwrap_or(left);
                if amount > left || left == Fen::ZERO {
                    return Err(DomainError::refused(
                        Reason::OverDisbursement,
                        format!("only {left} yuan of the contract principal is left to disburse"),
                    )
                    .with("undisbursed_fen", left.0));
                }
                let amortising = self.terms.repayment_method.is_amortising();
                let settlements = match self.disbursed_on {
                    None if amortising => {
                        next.servicing = self.start_instalments(date, amount)?;
                        // Its pool's marks are not of its own events: kept.
                        next.servicing.pool_repaid_on = self.servicing.pool_repaid_on;
                        next.servicing.pool_transferred_on = self.servicing.pool_transferred_on;
                        Vec::new()
                    }
                    None => {
                        next.servicing =
                            Servicing::start(&t, date, self.terms.maturity_date, amount);
                        next.servicing.pool_repaid_on = self.servicing.pool_repaid_on;
                        next.servicing.pool_transferred_on = self.servicing.pool_transferred_on;
                        Vec::new()
                    }
                    Some(first) if amortising => {
                        return Err(DomainError::refused(
                            Reason::LoanNotDisbursable,
                            format!(
                                "loan {loan_id} repays by instalments ({}) and was disbursed on {}: its schedule is fixed by that single disbursement, so the undisbursed {left} yuan cannot be paid out",
                                self.terms.repayment_method.as_str(),
                                format_date(first)
                            ),
                        )
                        .with("undisbursed_fen", left.0));
                    }
                    Some(_) => {
                        // The points through the date, a 20th's included: its point is settled
                        // on the principal as the day began, and the tranche bears the day in the
                        // next period (`Servicing::add_principal`), as it does when the day's run
                        // came first.
                        let points =
                            next.servicing.settle_through(&t, date).map_err(servicing_error)?;
                        // Overdue on the tranche's date, whatever the status the loan's last
                        // event left (interest settled and not paid since is overdue now).
                        if let Some(since) = next.servicing.overdue_since(&t)
                            && since <= date
                        {
                            return Err(DomainError::refused(
                                Reason::LoanNotDisbursable,
                                format!(
                                    "loan {loan_id} is overdue since {} and cannot be disbursed",
                                    format_date(since)
                                ),
                            ));
                        }
                        next.servicing.add_principal(&t, date, amount).map_err(servicing_error)?;
                        points
                    }
                };
                next.disbursed_fen = self
                    .disbursed_fen
                    .checked_add(amount)
                    .ok_or_else(|| servicing_error(ServicingError::Overflow))?;
                next.disbursed_on.get_or_insert(date);
                LoanEvent::Disbursed { loan_id, value_date: date, amount_fen: amount, settlements }
            }
            LoanCommand::Settle { date } => {
                self.require_live()?;
                // A run dated before the loan's last event (a quarter-end run made the next
                // morning, after that day's payments): every event settles the points up to its
                // own date, so nothing is left to settle through the run's, which is no failure.
                if date < self.last_value_date && self.servicing.next_point.is_none_or(|p| p > date)
                {
                    let settlements = Vec::new();
                    return Ok((
                        LoanEvent::Settled { loan_id, value_date: date, settlements },
                        next,
                    ));
                }
                check_value_date(self, date)?;
                let settlements =
                    next.servicing.settle_through(&t, date).map_err(servicing_error)?;
                LoanEvent::Settled { loan_id, value_date: date, settlements }
            }
            LoanCommand::Repay { date, amount, netted } => {
                self.require_live()?;
                check_value_date(self, date)?;
                if netted < Fen::ZERO || netted > amount {
                    return Err(DomainError::invalid(
                        "subsidy_netted_fen",
                        format!("must be between 0 and the amount paid ({amount} yuan)"),
                    ));
                }
                // (A repayment is dated on or after the loan's last event, so after any mark.)
                if netted > Fen::ZERO
                    && let Some(since) = self.servicing.misuse_since
                {
                    return Err(DomainError::refused(
                        Reason::MisuseAlreadyMarked,
                        format!(
                            "the loan was marked {} on {}: it earns no subsidy to net",
                            self.servicing.misuse_label(),
                            format_date(since)
                        ),
                    )
                    .with("misuse_since", format_date(since)));
                }
                let settlements =
                    next.servicing.settle_through(&t, date).map_err(servicing_error)?;
                let repayment = next.servicing.repay(&t, date, amount).map_err(|e| match e {
                    RepayError::ExceedsPayoff { payoff } => DomainError::refused(
                        Reason::RepaymentExceedsOwed,
                        format!("the payment of {amount} exceeds the {payoff} yuan owed on {}", format_date(date)),
                    )
                    .with("owed_fen", payoff.0),
                    RepayError::PayoffRequired { payoff } => DomainError::refused(
                        Reason::PayoffRequired,
                        format!(
                            "the payment of {amount} would repay all principal but not the {payoff} yuan owed on {}: pay the payoff amount to close the loan",
                            format_date(date)
                        ),
                    )
                    .with("payoff_fen", payoff.0),
                    RepayError::Servicing(e) => servicing_error(e),
                })?;
                let a = &repayment.allocation;
                // Checked: the totals so far are read back from the loan's row.
                let overflow = || servicing_error(ServicingError::Overflow);
                next.principal_repaid_fen =
                    self.principal_repaid_fen.checked_add(a.principal_fen).ok_or_else(overflow)?;
                next.interest_paid_fen = Fen::checked_sum([
                    self.interest_paid_fen,
                    a.overdue_interest_fen,
                    a.current_interest_fen,
                ])
                .ok_or_else(overflow)?;
                if netted > a.current_interest_fen {
                    return Err(DomainError::refused(
                        Reason::SubsidyNettedExceedsInterest,
                        format!(
                            "the subsidy netted ({netted} yuan) exceeds the current interest the payment pays ({} yuan): penalty, compound and overdue interest are never subsidised",
                            a.current_interest_fen
                        ),
                    )
                    .with("current_interest_fen", a.current_interest_fen.0));
                }
                next.servicing.subsidy_netted_fen =
                    self.servicing.subsidy_netted_fen.checked_add(netted).ok_or_else(overflow)?;
                LoanEvent::Repaid {
                    loan_id,
                    value_date: date,
                    amount_fen: amount,
                    settlements,
                    repayment,
                    subsidy_netted_fen: netted,
                }
            }
            LoanCommand::MarkMisuse { date, falsely_obtained } => {
                // A loan repaid or written off before it was found misused or falsely obtained
                // is marked too: it accrues nothing more, but what was paid of its subsidy is
                // clawed back (DESIGN.md), and its lines still in a claim are not paid.
                let closed = !self.status.is_open();
                if !closed {
                    self.require_live()?;
                }
                check_value_date(self, date)?;
                if self.servicing.misuse_since.is_some() {
                    let how = self.servicing.misuse_label();
                    return Err(DomainError::refused(
                        Reason::MisuseAlreadyMarked,
                        format!("loan {loan_id} is already marked as {how}"),
                    ));
                }
                // The points through the date, a 20th's included, as the day's run would settle
                // it: misuse marked on a 20th takes the misuse rate from the 21st, whether the
                // run came first or not.
                let settlements = if closed {
                    next.servicing.misuse_since = Some(date);
                    next.servicing.closed_on = Some(self.lent_until());
                    Vec::new()
                } else {
                    let settlements =
                        next.servicing.settle_through(&t, date).map_err(servicing_error)?;
                    next.servicing.mark_misuse(&t, date).map_err(servicing_error)?;
                    settlements
                };
                next.servicing.falsely_obtained = falsely_obtained;
                LoanEvent::MisuseMarked { loan_id, value_date: date, settlements, falsely_obtained }
            }
            LoanCommand::Extend { date, new_maturity } => {
                self.require_live()?;
                check_value_date(self, date)?;
                let maturity = self.servicing.maturity_date.unwrap_or(self.terms.maturity_date);
                let months = self.extension_months_allowed(rules);
                let limit = add_months(self.terms.maturity_date, months)
                    .unwrap_or(self.terms.maturity_date);
                let refuse =
                    |why: String| Err(DomainError::refused(Reason::ExtensionNotAllowed, why));
                if self.terms.repayment_method.is_amortising() {
                    return refuse(format!(
                        "loan {loan_id} repays by instalments ({}); its schedule is not extended",
                        self.terms.repayment_method.as_str()
                    ));
                }
                if self.servicing.extensions > 0 {
                    return refuse(format!(
                        "loan {loan_id} was extended already; a loan is extended once"
                    ));
                }
                if date > maturity {
                    return refuse(format!(
                        "an extension must be recorded by the maturity date {}",
                        format_date(maturity)
                    ));
                }
                if new_maturity <= maturity || new_maturity > limit {
                    return refuse(format!(
                        "the new maturity must be after {} and no later than {} (an extension \
                         of {months} months at most: the policy's limit, and 贷款通则's for a \
                         loan of its term)",
                        format_date(maturity),
                        format_date(limit)
                    ))
                    .map_err(|e: DomainError| e.with("latest_maturity", format_date(limit)));
                }
                // The points before its date; on the maturity day, the maturity's too (its
                // period ended the day before, on the contract's terms), as that day's run
                // would: the two orders agree. (Until 2026-12-02 an extension recorded before
                // the day's run left the last period's interest to the next 20th, a quarter
                // later.)
                let through = if date == maturity { date } else { date.pred_opt().unwrap_or(date) };
                let settlements =
                    next.servicing.settle_through(&t, through).map_err(servicing_error)?;
                next.servicing.extend(&t, date, new_maturity).map_err(servicing_error)?;
                LoanEvent::Extended { loan_id, value_date: date, new_maturity, settlements }
            }
            LoanCommand::WriteOff { date } => {
                self.require_live()?;
                check_value_date(self, date)?;
                let settlements =
                    next.servicing.settle_through(&t, date).map_err(servicing_error)?;
                // DESIGN.md: after 90 days overdue (the contract's policy) a loan can be
                // claimed against the risk-compensation fund; it can later be written off. So
                // not before.
                let days = next.servicing.days_overdue(&t, date);
                let claim_days = self.terms.claim_overdue_days;
                if days <= i64::from(claim_days) {
                    return Err(DomainError::refused(
                        Reason::LoanNotOverdue,
                        format!(
                            "loan {loan_id} is {days} days overdue on {}; only a loan overdue more than {claim_days} days is written off",
                            format_date(date),
                        ),
                    )
                    .with("days_overdue", days));
                }
                let overdue_since = next.servicing.overdue_since(&t);
                let (charges, allocation) =
                    next.servicing.write_off(&t, date).map_err(servicing_error)?;
                next.servicing.written_off_overdue_since = overdue_since;
                LoanEvent::WrittenOff {
                    loan_id,
                    value_date: date,
                    settlements,
                    charges,
                    allocation,
                    overdue_since,
                }
            }
            LoanCommand::Recover { date, amount } => {
                if self.status != LoanStatus::WrittenOff {
                    return Err(DomainError::refused(
                        Reason::LoanNotWrittenOff,
                        format!(
                            "loan {loan_id} is {}: a recovery is recorded of a written-off loan \
                             (a live loan's payments are repayments)",
                            self.status.as_str()
                        ),
                    )
                    .with("status", self.status.as_str()));
                }
                check_value_date(self, date)?;
                if !amount.is_positive() {
                    return Err(DomainError::invalid("amount_fen", "must be positive"));
                }
                let overflow = || servicing_error(ServicingError::Overflow);
                let s = &self.servicing;
                let recoverable =
                    s.written_off_fen.checked_sub(s.recovered_fen).ok_or_else(overflow)?;
                if amount > recoverable {
                    return Err(DomainError::refused(
                        Reason::RepaymentExceedsOwed,
                        format!(
                            "the recovery of {amount} exceeds the {recoverable} yuan written off \
                             and not recovered yet"
                        ),
                    )
                    .with("recoverable_fen", recoverable.0));
                }
                // The principal written off is what was paid out and not repaid (recoveries of
                // it counted as repaid).
                let principal_left = self.principal_not_repaid().ok_or_else(overflow)?;
                let principal = amount.min(principal_left);
                next.principal_repaid_fen =
                    self.principal_repaid_fen.checked_add(principal).ok_or_else(overflow)?;
                next.servicing.recovered_fen =
                    s.recovered_fen.checked_add(amount).ok_or_else(overflow)?;
                // The loan stopped lending at its write-off, whatever comes back later.
                next.servicing.closed_on = Some(self.lent_until());
                LoanEvent::Recovered {
                    loan_id,
                    value_date: date,
                    amount_fen: amount,
                    principal_fen: principal,
                }
            }
        };
        next.principal_outstanding_fen = next.servicing.principal_fen;
        next.last_value_date = event.value_date();
        next.status = match &event {
            LoanEvent::WrittenOff { .. } | LoanEvent::Recovered { .. } => LoanStatus::WrittenOff,
            // A closed loan's mark leaves it closed.
            LoanEvent::MisuseMarked { .. } if !self.status.is_open() => self.status,
            LoanEvent::Repaid { repayment, .. } if repayment.payoff => LoanStatus::Settled,
            _ => {
                next.status = LoanStatus::Active;
                next.status_on(event.value_date())
            }
        };
        Ok((event, next))
    }

    /// The servicing of an amortising loan disbursed in full on `date`: its schedule for
    /// `amount` to the contract's maturity, its instalments 对日 the contract date, those after
    /// `date` (a loan paid out late has fewer, the first a broken period:
    /// [`build_schedule_paid_out`]). Until 2026-12-06 the schedule ran the contract's whole
    /// term from the payout, past the contract's maturity.
    fn start_instalments(&self, date: BusinessDate, amount: Fen) -> Result<Servicing, DomainError> {
        let t = &self.terms;
        let contract = ScheduleTerms {
            principal: amount,
            rate: t.annual_rate,
            disbursed: t.contract_date,
            term: Term::Months(t.term_months),
            method: t.repayment_method,
            frequency: t.settlement_frequency,
            rounding: t.rounding,
        };
        let schedule = build_schedule_paid_out(&contract, date).map_err(|e| {
            DomainError::refused(
                Reason::LoanNotDisbursable,
                format!("loan {} cannot be scheduled from {}: {e}", t.loan_id, format_date(date)),
            )
        })?;
        Servicing::start_instalments(&t.servicing_terms(), date, amount, &schedule)
            .map_err(servicing_error)
    }

    fn require_live(&self) -> Result<(), DomainError> {
        if self.is_live() {
            Ok(())
        } else {
            let written_off = if self.status == LoanStatus::WrittenOff {
                ": what comes back of it is recorded by RecordRecovery"
            } else {
                ""
            };
            Err(DomainError::refused(
                Reason::LoanNotRepayable,
                format!("loan {} is {}{written_off}", self.terms.loan_id, self.status.as_str()),
            )
            .with("status", self.status.as_str()))
        }
    }

    /// Applies a recorded event: recomputes it from the state and the command it records, and
    /// refuses it if any figure differs (a journal that does not recompute is corrupt).
    ///
    /// A reversal moves only the last seq: the event it reverses is taken out of the loan's
    /// events before they are replayed ([`remove_reversed`]; verify restores the state it
    /// kept from before that event), so the state it meets is already the one it restores.
    pub fn apply(&mut self, event: &LoanEvent, seq: u64) -> Result<(), DomainError> {
        if let LoanEvent::Reversed { .. } = event {
            self.last_seq = seq;
            return Ok(());
        }
        let Some(command) = event.command() else {
            return Err(DomainError::Exists { what: "loan", id: self.terms.loan_id.clone() });
        };
        let (mut recomputed, mut next) = self.plan_as(&command, Rules::AsRecorded)?;
        // A write-off recorded before 2026-12-07 did not record the day its loan fell overdue:
        // replayed, its loan does not know it either (as its stored state).
        if let (
            LoanEvent::WrittenOff { overdue_since: None, .. },
            LoanEvent::WrittenOff { overdue_since, .. },
        ) = (event, &mut recomputed)
        {
            *overdue_since = None;
            next.servicing.written_off_overdue_since = None;
        }
        if &recomputed != event {
            return Err(DomainError::invalid(
                "journal",
                format!(
                    "the recorded {} figures of loan {} differ from their recomputation",
                    event_kind(event),
                    self.terms.loan_id
                ),
            ));
        }
        next.last_seq = seq;
        *self = next;
        Ok(())
    }
}

fn event_kind(e: &LoanEvent) -> &'static str {
    match e {
        LoanEvent::Created { .. } => "contract",
        LoanEvent::Disbursed { .. } => "disbursement",
        LoanEvent::Settled { .. } => "settlement",
        LoanEvent::Repaid { .. } => "repayment",
        LoanEvent::MisuseMarked { .. } => "misuse",
        LoanEvent::Extended { .. } => "extension",
        LoanEvent::WrittenOff { .. } => "write-off",
        LoanEvent::Recovered { .. } => "recovery",
        LoanEvent::Reversed { .. } => "reversal",
    }
}

/// Which rules a command is checked under: today's, for a command now; those of the build that
/// recorded it, for an event replayed ([`LoanState::apply`]), where a rule tightened since
/// keeps what was recorded before it (the rules are not versioned: README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    Now,
    AsRecorded,
}

/// What origination needs to know besides the terms.
#[derive(Debug, Clone)]
pub struct OriginationContext<'a> {
    pub bank_ledger_id: &'a str,
    pub household_ledger_id: &'a str,
    /// The household's status series, in recording order.
    pub household_statuses: &'a [StatusEntry],
    /// The policy version in force on the contract date, if any.
    pub policy: Option<&'a PolicyParams>,
    /// The LPR of the contract's tenor bucket in force on the contract date, if any.
    pub lpr_cap: Option<AnnualRate>,
    /// The household's open programme loans (the contract's own aside), as the cap counts them
    /// ([`super::cap`]: a renewal counts once with the loan it renews).
    pub household_open_loans: &'a [CapLoan<'a>],
}

/// Checks a new contract against the programme rules in force on its contract date.
pub fn plan_origination(
    terms: &LoanTerms,
    ctx: &OriginationContext<'_>,
) -> Result<LoanEvent, DomainError> {
    let date = format_date(terms.contract_date);
    if ctx.bank_ledger_id != ctx.household_ledger_id {
        return Err(DomainError::refused(
            Reason::LedgerMismatch,
            format!(
                "bank {} keeps books in ledger {} but household {} is registered in ledger {}",
                terms.bank_id, ctx.bank_ledger_id, terms.household_id, ctx.household_ledger_id
            ),
        ));
    }
    if !terms.collateral_free || !terms.guarantee_free {
        return Err(DomainError::refused(
            Reason::NotCollateralFree,
            "a programme loan must be collateral-free and guarantee-free",
        ));
    }
    let policy = ctx.policy.ok_or_else(|| {
        DomainError::refused(
            Reason::PolicyNotInForce,
            format!("no programme policy is in force in ledger {} on {date}", ctx.bank_ledger_id),
        )
    })?;
    if terms.term_months > policy.term_months_max {
        return Err(DomainError::refused(
            Reason::TermTooLong,
            format!(
                "term of {} months exceeds the policy maximum of {} months",
                terms.term_months, policy.term_months_max
            ),
        )
        .with("term_months_max", policy.term_months_max));
    }
    let age = age_on(terms.borrower_birth_date, terms.contract_date);
    if age < policy.borrower_age_min as i32 || age > policy.borrower_age_max as i32 {
        return Err(DomainError::refused(
            Reason::BorrowerAgeOutOfRange,
            format!(
                "borrower is {age} on {date}; the policy allows {} to {}",
                policy.borrower_age_min, policy.borrower_age_max
            ),
        )
        .with("age", age));
    }
    match status_on(ctx.household_statuses, terms.contract_date) {
        status if policy.lends_to(status) => {}
        status => {
            let shown = status.map_or("unregistered", |s| s.as_str());
            return Err(DomainError::refused(
                Reason::HouseholdNotEligible,
                format!(
                    "household {} is {shown} on {date}, which the policy does not lend to",
                    terms.household_id
                ),
            )
            .with("household_status", shown));
        }
    }
    let cap = ctx.lpr_cap.ok_or_else(|| {
        DomainError::refused(
            Reason::LprNotInForce,
            format!("no LPR for a {}-month term is in force on {date}", terms.term_months),
        )
    })?;
    if terms.annual_rate > cap {
        return Err(DomainError::refused(
            Reason::RateAboveLprCap,
            format!("rate {} exceeds the LPR cap {cap} in force on {date}", terms.annual_rate),
        )
        .with("lpr_cap", cap));
    }
    let overflow = || DomainError::Overflow { field: "principal_fen".into() };
    let contract = CapLoan {
        loan_id: &terms.loan_id,
        renews: terms.renews_loan_id.as_deref(),
        principal: terms.principal_fen,
    };
    let after = cap::counted_with(ctx.household_open_loans, contract).ok_or_else(overflow)?;
    let household_cap = policy.household_cap();
    if after > household_cap {
        let before = cap::counted(ctx.household_open_loans).ok_or_else(overflow)?;
        let room = cap::room(ctx.household_open_loans, contract, household_cap);
        return Err(DomainError::refused(
            Reason::HouseholdCapExceeded,
            format!(
                "household {} would owe {after} yuan of programme principal, over the cap of {household_cap}; this contract may lend at most {room}",
                terms.household_id
            ),
        )
        .with("household_open_principal_fen", before.0)
        .with("available_fen", room.0));
    }
    Ok(LoanEvent::Created {
        terms: LoanTerms {
            overdue_uplift: policy.overdue_penalty_uplift,
            misuse_uplift: policy.misuse_penalty_uplift,
            grace_days: policy.grace_days,
            rounding: policy.rounding,
            extension_months_max: policy.extension_months_max,
            claim_overdue_days: policy.claim_overdue_days,
            ..terms.clone()
        },
    })
}

fn value_date_before(state: &LoanState, date: BusinessDate) -> DomainError {
    DomainError::refused(
        Reason::ValueDateOutOfRange,
        format!(
            "value date {} is before the loan's last recorded event on {}",
            format_date(date),
            format_date(state.last_value_date)
        ),
    )
    .with("last_value_date", format_date(state.last_value_date))
    .with(EARLIEST_DATE, format_date(state.last_value_date))
}

/// Refuses a command dated before the loan's compensation by the risk fund, if it has one
/// ([`Servicing::compensated_on`]), but a settlement: settling the interest of the points due
/// by then changes neither the principal nor the days overdue the compensation counted (its
/// quote counted those points already).
fn check_compensation_date(state: &LoanState, command: &LoanCommand) -> Result<(), DomainError> {
    let Some(date) = unsettling_date(command) else { return Ok(()) };
    match state.servicing.compensated_on {
        // The fund shared the loss of what was paid out by then; a tranche paid out after it
        // would be lending the fund never shared, its repayments taken for recoveries.
        Some(on) if matches!(command, LoanCommand::Disburse { .. }) => Err(DomainError::refused(
            Reason::LoanNotDisbursable,
            format!(
                "loan {} was compensated by the risk fund on {}: the rest of its contract is not \
                 paid out",
                state.terms.loan_id,
                format_date(on)
            ),
        )
        .with("compensated_on", format_date(on))),
        Some(on) if date < on => Err(DomainError::refused(
            Reason::ValueDateOutOfRange,
            format!(
                "value date {} is before the loan's compensation by the risk fund on {}: what \
                 the compensation counted stands, and what the household pays is recovered \
                 from then on",
                format_date(date),
                format_date(on)
            ),
        )
        .with("compensated_on", format_date(on))
        .with(EARLIEST_DATE, format_date(on))),
        _ => Ok(()),
    }
}

/// The value date of a command but a settlement's (none for a settlement).
fn unsettling_date(command: &LoanCommand) -> Option<BusinessDate> {
    match *command {
        LoanCommand::Settle { .. } => None,
        LoanCommand::Disburse { date, .. }
        | LoanCommand::Repay { date, .. }
        | LoanCommand::MarkMisuse { date, .. }
        | LoanCommand::Extend { date, .. }
        | LoanCommand::WriteOff { date }
        | LoanCommand::Recover { date, .. } => Some(date),
    }
}

/// Refuses a command dated before the loan's pool's last collective repayment
/// ([`Servicing::pool_repaid_on`]) or before the last transfer of its money to the pool's
/// partner ([`Servicing::pool_transferred_on`]; since 2026-12-07 late night), but a settlement
/// (which changes neither the principal nor what the loan owed that day, its interest accrued
/// counted either way) and a recovery (of a loan written off: one written off before the repayment had
/// no part in it, one written off after takes nothing dated before its write-off): the
/// repayment was split by what each member owed on its day, and the transfer held within the
/// principal the loan had outstanding on its day. The later of the two marks is named. Left to
/// the loan's own checks for a loan closed (its own rules) and where the loan's last event is
/// as late as the mark (they refuse a date before it, naming it): the date named is the latest
/// that blocks, so that a retry dated on it is not refused again for an earlier one (since
/// 2026-12-08: a transfer, not an event of the loan, named after its last event, was named
/// only on the retry dated on that event).
fn check_pool_date(state: &LoanState, command: &LoanCommand) -> Result<(), DomainError> {
    let Some(date) = unsettling_date(command) else {
        return Ok(());
    };
    if !state.status.is_open() || matches!(command, LoanCommand::Recover { .. }) {
        return Ok(());
    }
    // Each mark: its day, its metadata key, what it was, and why no event goes before it.
    let s = &state.servicing;
    let marks = [
        (
            s.pool_repaid_on,
            "pool_repaid_on",
            "pool's collective repayment",
            "split by what each member owed that day",
        ),
        (
            s.pool_transferred_on,
            "pool_transferred_on",
            "transfer to its pool's partner",
            "held within the principal it had outstanding that day",
        ),
    ];
    let later = marks
        .into_iter()
        .filter_map(|(on, field, what, why)| Some((on?, field, what, why)))
        .max_by_key(|(on, ..)| *on);
    let Some((on, field, what, why)) =
        later.filter(|(on, ..)| date < *on && *on > state.last_value_date)
    else {
        return Ok(());
    };
    Err(DomainError::refused(
        Reason::ValueDateOutOfRange,
        format!(
            "value date {} is before loan {}'s {what} on {}, {why}",
            format_date(date),
            state.terms.loan_id,
            format_date(on)
        ),
    )
    .with(field, format_date(on))
    .with(EARLIEST_DATE, format_date(on)))
}

fn check_value_date(state: &LoanState, date: BusinessDate) -> Result<(), DomainError> {
    if date < state.last_value_date {
        return Err(value_date_before(state, date));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 贷款通则 article 12: a short-term loan is extended by its term at most, a medium-term one
    /// by half of it (whole months), a long-term one by three years; the policy's limit under
    /// it; a recorded extension by the rule of its day, the whole term.
    #[test]
    fn extensions_are_bounded_by_the_term() {
        let allowed = |term: u32, policy: u32, rules: Rules| {
            let mut terms = crate::bench::load::bench_terms("450121198001010014");
            (terms.term_months, terms.extension_months_max) = (term, policy);
            LoanState::new(terms, 1).extension_months_allowed(rules)
        };
        let now = |term: u32, policy: u32| allowed(term, policy, Rules::Now);
        assert_eq!([now(6, 12), now(12, 12), now(12, 3)], [6, 12, 3]);
        assert_eq!([now(13, 12), now(18, 12), now(36, 12), now(36, 24)], [6, 9, 12, 18]);
        // A long-term loan (over five years) three years, whatever its term (61 months: not
        // half of it, 30, until 2026-12-07).
        assert_eq!([now(60, 120), now(61, 120), now(96, 120), now(120, 12)], [30, 36, 36, 12]);
        assert_eq!(allowed(36, 24, Rules::AsRecorded), 24);
        assert_eq!(allowed(96, 120, Rules::AsRecorded), 96);
    }

    /// A contract of 50,000.00 yuan for a month (to 2021-02-25), 20,000.00 paid out, extended
    /// to 2021-03-15: the rest is paid out no more from the contract's maturity (and the risk
    /// fund's exposure holds no room for it from then), but a payout recorded before that rule
    /// is replayed as it was recorded; a loan marked misused is paid out no more, but as
    /// recorded.
    #[test]
    fn payouts_end_at_the_contracts_maturity_and_at_a_misuse_mark() {
        let d = |s: &str| crate::domain::date::parse_date(s).unwrap();
        let mut terms = crate::bench::load::bench_terms("450121198001010014");
        (terms.term_months, terms.maturity_date) = (1, d("2021-02-25"));
        let disburse = |date: &str| LoanCommand::Disburse { date: d(date), amount: Some(Fen(1)) };
        let (_, paid) = LoanState::new(terms, 1)
            .plan(&LoanCommand::Disburse { date: d("2021-01-25"), amount: Some(Fen(2_000_000)) })
            .unwrap();
        let extend = LoanCommand::Extend { date: d("2021-02-01"), new_maturity: d("2021-03-15") };
        let (_, extended) = paid.plan(&extend).unwrap();
        assert_eq!(extended.payable_until(), d("2021-02-25"));
        assert!(extended.plan(&disburse("2021-02-24")).is_ok());
        let refused = extended.plan(&disburse("2021-02-25")).unwrap_err();
        assert!(refused.to_string().contains("extension to 2021-03-15"), "{refused}");
        assert!(matches!(
            refused,
            DomainError::Refused { reason: Reason::ValueDateOutOfRange, .. }
        ));
        let (recorded, _) = extended.plan_as(&disburse("2021-03-01"), Rules::AsRecorded).unwrap();
        extended.clone().apply(&recorded, 3).expect("replayed as recorded");
        let undrawn = |date: &str| {
            crate::domain::risk_fund::Exposure::of_loan(&extended, d(date)).undrawn_fen
        };
        assert_eq!((undrawn("2021-02-24"), undrawn("2021-02-25")), (Fen(3_000_000), Fen::ZERO));

        let mark = LoanCommand::MarkMisuse { date: d("2021-02-01"), falsely_obtained: false };
        let (_, marked) = paid.plan(&mark).unwrap();
        let refused = marked.plan(&disburse("2021-02-02")).unwrap_err();
        let reason = |e: &DomainError| match e {
            DomainError::Refused { reason, .. } => Some(*reason),
            _ => None,
        };
        assert_eq!(reason(&refused), Some(Reason::LoanNotDisbursable), "{refused}");
        let (recorded, _) = marked.plan_as(&disburse("2021-02-02"), Rules::AsRecorded).unwrap();
        marked.clone().apply(&recorded, 3).expect("replayed as recorded");
        let undrawn = crate::domain::risk_fund::Exposure::of_loan(&marked, d("2021-02-02"));
        assert_eq!(undrawn.undrawn_fen, Fen::ZERO, "no room held for a payout refused");
    }

    /// A reversal takes its event out of the loan's events and stays where it was recorded; a
    /// reversal naming no event of the list takes nothing out; no reversal, nothing moves.
    #[test]
    fn a_reversal_takes_out_the_event_it_names() {
        let date = crate::domain::date::parse_date("2021-02-10").unwrap();
        let settled = |seq: u64| {
            (LoanEvent::Settled { loan_id: "L".into(), value_date: date, settlements: vec![] }, seq)
        };
        let reversal = |seq: u64, reversed_seq: u64| {
            let reason = "keyed twice".to_string();
            (
                LoanEvent::Reversed { loan_id: "L".into(), value_date: date, reversed_seq, reason },
                seq,
            )
        };
        let seqs = |events: &[(LoanEvent, u64)]| events.iter().map(|e| e.1).collect::<Vec<_>>();
        let mut events = vec![settled(2), settled(5), reversal(7, 5), settled(9)];
        remove_reversed(&mut events);
        assert_eq!(seqs(&events), [2, 7, 9]);
        let mut events = vec![settled(2), reversal(7, 4), settled(9)];
        remove_reversed(&mut events);
        assert_eq!(seqs(&events), [2, 7, 9]);
        let mut events = vec![settled(2), settled(9)];
        remove_reversed(&mut events);
        assert_eq!(seqs(&events), [2, 9]);
    }
}
