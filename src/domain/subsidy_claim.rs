//! Subsidy claims (贴息申报): a bank's list of the loan-periods whose interest subsidy it asks
//! the finance office for, each line checked against the service's own register
//! ([`super::subsidy_register`]), recomputed when the claim is submitted.
//!
//! The model.
//! - **A claim** is named `<bank_id>-<claim_number>` (the bank's own number, as a contract
//!   names a loan), is of one bank and its ledger, and covers a period: every line's due date
//!   is within `due_from..=due_to`.
//! - **A claimed line** names a loan-period by the loan and the period's due date, with the
//!   interest the bank says was paid for it and the subsidy it asks for, and, as the bank's
//!   list states them, the loan's principal and rate and the period's days and 积数 (each
//!   optional: a figure not stated is not compared).
//! - **Checking a line** ([`check_line`]) against the register's line of that loan-period, as of
//!   the submission date, gives the recomputed figures and the differences, each a stable code:
//!   - `NotInRegister`: the bank has no such loan, or the loan no period due that day (another
//!     bank's loan is answered so too: a bank never learns whether it exists);
//!   - `NotOnTime`: the period is not paid in full on time (paid late, overdue, written off, not
//!     yet due, or the loan misused): it earns nothing;
//!   - `InterestDiffers`: the interest claimed as paid is not the interest paid on time;
//!   - `SubsidyDiffers`: the subsidy claimed is not the one recomputed;
//!   - `PrincipalDiffers`, `RateDiffers`: the principal or rate stated is not the contract's
//!     ([`check_terms`]);
//!   - `DaysDiffers`, `JishuDiffers`, `PeriodStartDiffers`: the days, 积数 or first day
//!     stated are not the working's;
//!   - `HouseholdDiffers`, `TownshipDiffers`, `VillageDiffers`: the household or place stated
//!     is not the loan's household's as recorded (a place the registry does not record is not
//!     compared) ([`check_terms`]);
//!   - `HouseholdNotEligible`: the loan's household was not one the policy lends to on the
//!     contract date, by its status series as recorded when the claim is checked (a status
//!     dated back over the contract; since 2026-12-07): the loan was falsely obtained, and its
//!     subsidy is not paid whatever else the line says (the application's check);
//!   - `AlreadyClaimed`: the loan-period is held by another claim (named on the line), submitted
//!     before. A loan-period is claimed once, whatever the retries: a line that checks out with
//!     no other difference holds its loan-period for its claim ([`ClaimLine::holds_period`]),
//!     and the writer, which takes claims one at a time, decides which claim is first. A line
//!     that differs holds nothing: the bank may claim the loan-period again, corrected, or once
//!     it is paid on time (a line not in the register when claimed).
//! - **Payable** is the recomputed subsidy of the lines without differences: what the finance
//!   office may approve without a correction. The claimed and recomputed totals stand beside it.
//!
//! - **Review** ([`Claim::review`], the ledger's finance office for the bureau): each line is
//!   approved or rejected with a reason. A line that differs cannot be approved: it is rejected,
//!   with the bureau's reason or else one naming its differences; every other line not
//!   rejected is approved. A rejected line releases its loan-period (it may be claimed again).
//!   The review opens the public notice (公示) of the approved list: 7 to 10 days by default
//!   (the policy's `notice_days_min` and `notice_days_max` in force on the review's day), from
//!   the review's day or later. The claim is then `Noticed`.
//! - **Objections** ([`Claim::object`]) are recorded while the notice runs (its first to its
//!   last day), with the text and, when one names a line and is upheld, that line rejected
//!   (its loan-period released).
//! - **Payment** ([`Claim::pay`]): after the notice's last day, the finance office records the
//!   payment voucher of the approved lines' subsidy and its payee ([`Payee`]): the bank (直补:
//!   the household paid the bank the net interest, the bank netting the subsidy at repayment:
//!   [`super::loan`]), or the households (先缴后补: each paid the bank in full and is refunded,
//!   into its 一卡通 account). The claim is `Paid`. Its transaction moves the money:
//!   `bank/<bank_id>/cash` Dr the amount, with the part of each approved line the bank netted
//!   (and, since 2026-12-07, of each it did not, which the bank then holds for its household)
//!   moved from `bank/<bank_id>/subsidy_due` to `household/<household_id>/subsidy` (直补); or each approved
//!   line's `household/<household_id>/subsidy` Dr its part (先缴后补); the ledger's
//!   `finance/<ledger_id>/subsidy` Cr ([`crate::ledger::claim_postings`]). A claim with an
//!   approved line whose subsidy the bank netted (its recomputed `netted_fen`) is paid to the
//!   bank: to the households it is `INVALID_ARGUMENT` naming `payee` (they would be paid twice).
//! - **Clawback** ([`Claim::claw_back`]): a paid line whose loan is marked misused (the writer
//!   checks the mark, dated on or before the clawback) has its subsidy clawed back by a
//!   reversing entry that names the claim and the line: `finance/<ledger_id>/subsidy` Dr, the
//!   payee's account (the bank's cash, or the household's subsidy) Cr (DESIGN.md: what was paid on a misused loan is clawed back). Once
//!   a line; nothing else of a paid claim changes.
//!
//! Each step is a journal transaction: `subsidy_claim.submitted`, whose command holds the whole
//! claim; `subsidy_claim.reviewed`, `.objected` and `.paid`, which hold the decisions
//! ([`ClaimEvent`]) and are applied to the claim by the same functions here, when the writer
//! records them and when verify replays them. The submitted transaction moves no
//! money: its command holds the whole claim, claimed and recomputed figures alike, so that the
//! journal alone says what was asked for and what the service found, whatever is recorded
//! later (a back-dated repayment changes a register, not a submitted claim). Its read models
//! (`subsidy_claim`, and `subsidy_claim_period`: each loan-period's holding claim) are rebuilt
//! from the journal by verify.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::date::{iso, iso_opt};
use super::error::{DomainError, Reason};
use super::money::Fen;
use super::policy::{PolicyVersion, in_force};
use super::rate::AnnualRate;
use super::subsidy_register::{LineStanding, RegisterLine};

/// The most lines a claim may have: a county's quarter is about 9,000.
pub const MAX_CLAIM_LINES: usize = 20_000;

/// A loan-period as the bank claims it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedLine {
    pub loan_id: String,
    #[serde(with = "iso")]
    pub due_date: NaiveDate,
    pub interest_paid_fen: Fen,
    pub subsidy_fen: Fen,
    /// The loan's principal, its annual rate, and the period's days and 积数 (Σ of each day's
    /// principal, fen), as the bank's list states them; not compared when not stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_fen: Option<Fen>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annual_rate: Option<AnnualRate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jishu: Option<i64>,
    /// The household, its township and village, and the period's first day, as the bank's
    /// list states them (DESIGN.md's claim line; since 2026-12-06, left out when not stated,
    /// so a claim submitted before keeps its bytes); not compared when not stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub township: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub village: Option<String>,
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub period_start: Option<NaiveDate>,
}

impl ClaimedLine {
    /// A line claiming `subsidy` of a loan-period paid `interest_paid`, stating nothing more.
    pub fn of(loan_id: &str, due_date: NaiveDate, interest_paid: Fen, subsidy: Fen) -> Self {
        ClaimedLine {
            loan_id: loan_id.to_string(),
            due_date,
            interest_paid_fen: interest_paid,
            subsidy_fen: subsidy,
            principal_fen: None,
            annual_rate: None,
            days: None,
            jishu: None,
            household_id: None,
            township: None,
            village: None,
            period_start: None,
        }
    }
}

/// Why a claimed line is not payable as claimed (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Difference {
    NotInRegister,
    NotOnTime,
    InterestDiffers,
    SubsidyDiffers,
    AlreadyClaimed,
    PrincipalDiffers,
    RateDiffers,
    DaysDiffers,
    JishuDiffers,
    HouseholdDiffers,
    TownshipDiffers,
    VillageDiffers,
    PeriodStartDiffers,
    /// The loan's household was not one the policy lends to on the contract date, by its
    /// status series as recorded when the claim is checked (a status dated back over the
    /// contract: falsely obtained, DESIGN.md's "not subsidised"; since 2026-12-07).
    HouseholdNotEligible,
}

impl Difference {
    pub fn as_str(self) -> &'static str {
        match self {
            Difference::NotInRegister => "NOT_IN_REGISTER",
            Difference::NotOnTime => "NOT_ON_TIME",
            Difference::InterestDiffers => "INTEREST_DIFFERS",
            Difference::SubsidyDiffers => "SUBSIDY_DIFFERS",
            Difference::AlreadyClaimed => "ALREADY_CLAIMED",
            Difference::PrincipalDiffers => "PRINCIPAL_DIFFERS",
            Difference::RateDiffers => "RATE_DIFFERS",
            Difference::DaysDiffers => "DAYS_DIFFERS",
            Difference::JishuDiffers => "JISHU_DIFFERS",
            Difference::HouseholdDiffers => "HOUSEHOLD_DIFFERS",
            Difference::TownshipDiffers => "TOWNSHIP_DIFFERS",
            Difference::VillageDiffers => "VILLAGE_DIFFERS",
            Difference::PeriodStartDiffers => "PERIOD_START_DIFFERS",
            Difference::HouseholdNotEligible => "HOUSEHOLD_NOT_ELIGIBLE",
        }
    }
}

/// The register's figures of a claimed loan-period, when it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recomputed {
    #[serde(with = "iso")]
    pub start: NaiveDate,
    #[serde(with = "iso")]
    pub end_inclusive: NaiveDate,
    pub settled_fen: Fen,
    pub paid_on_time_fen: Fen,
    pub subsidy_fen: Fen,
    pub standing: LineStanding,
    /// The working's days and 积数 (Σ of each day's principal, fen), when the line is due.
    pub days: u32,
    pub jishu: i64,
    /// Of the interest paid, the subsidy the bank netted (直补; since 2026-12-06, left out
    /// when zero so that a claim submitted before keeps its bytes).
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub netted_fen: Fen,
}

/// A line of a submitted claim: as claimed, as recomputed, and where they differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimLine {
    pub claimed: ClaimedLine,
    /// The loan's household, its township and village, and the contract's principal: empty
    /// (zero) when the line is not in the register.
    pub household_id: String,
    pub township: String,
    pub village: String,
    pub principal_fen: Fen,
    pub recomputed: Option<Recomputed>,
    pub differences: Vec<Difference>,
    /// With `AlreadyClaimed`: the claim that holds the loan-period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    /// The review's decision, once reviewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Its paid subsidy clawed back, once paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clawback: Option<Clawback>,
}

/// A paid line's subsidy clawed back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clawback {
    #[serde(with = "iso")]
    pub clawed_back_on: NaiveDate,
    pub reason: String,
    pub amount_fen: Fen,
}

/// A line's decision: approved, or rejected with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Approved,
    Rejected { reason: String },
}

impl ClaimLine {
    /// Whether the line holds its loan-period for its claim: it checked out with no difference
    /// (the writer marks a held one `AlreadyClaimed` first).
    pub fn holds_period(&self) -> bool {
        self.differences.is_empty() && !matches!(self.decision, Some(Decision::Rejected { .. }))
    }

    /// The subsidy the bank netted of this line's interest at repayment (直补), as recomputed;
    /// zero for a line not in the register.
    pub fn netted_fen(&self) -> Fen {
        self.recomputed.as_ref().map_or(Fen::ZERO, |r| r.netted_fen)
    }

    /// The subsidy approved for this line: its payable subsidy once approved, else zero.
    pub fn approved_fen(&self) -> Fen {
        match self.decision {
            Some(Decision::Approved) => self.payable_fen(),
            _ => Fen::ZERO,
        }
    }

    /// The subsidy this line may be paid as it stands: the recomputed one, when nothing differs.
    pub fn payable_fen(&self) -> Fen {
        match &self.recomputed {
            Some(r) if self.differences.is_empty() => r.subsidy_fen,
            _ => Fen::ZERO,
        }
    }
}

/// Where a claim stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    /// Submitted and checked; awaiting the bureau's review.
    Submitted,
    /// Reviewed: its approved list under public notice, then awaiting payment.
    Noticed,
    /// The approved subsidy paid to its payee.
    Paid,
}

impl ClaimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Submitted => "submitted",
            ClaimStatus::Noticed => "noticed",
            ClaimStatus::Paid => "paid",
        }
    }
}

/// A subsidy claim (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub claim_id: String,
    pub ledger_id: String,
    pub bank_id: String,
    #[serde(with = "iso")]
    pub due_from: NaiveDate,
    #[serde(with = "iso")]
    pub due_to: NaiveDate,
    /// The day it was submitted: the registers' date.
    #[serde(with = "iso")]
    pub submitted_on: NaiveDate,
    pub status: ClaimStatus,
    pub lines: Vec<ClaimLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objections: Vec<Objection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<Payment>,
}

/// The review's day and the public notice it opened (both days included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    #[serde(with = "iso")]
    pub reviewed_on: NaiveDate,
    #[serde(with = "iso")]
    pub notice_from: NaiveDate,
    #[serde(with = "iso")]
    pub notice_to: NaiveDate,
}

/// An objection raised during the notice, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objection {
    #[serde(with = "iso")]
    pub objected_on: NaiveDate,
    /// The line objected to (its index in the claim), if one.
    pub line: Option<u32>,
    pub text: String,
    /// Upheld: the line is rejected.
    pub upheld: bool,
}

/// The payment of a claim's approved subsidy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    #[serde(with = "iso")]
    pub paid_on: NaiveDate,
    /// The finance office's payment voucher (凭证) number.
    pub voucher: String,
    pub amount_fen: Fen,
    pub payee: Payee,
    /// Paid to the bank, the lines it did not net at repayment are its households' too: the
    /// bank holds their part for them (`subsidy_due` Cr) ([`ClaimEvent::Paid`]'s; left out when
    /// false, as for every payment recorded before 2026-12-07).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub owes_households: bool,
}

/// Who a claim's subsidy is paid to (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payee {
    /// 直补: the bank. The bank's cash takes the amount; a line whose subsidy the bank netted
    /// at repayment (its recomputed `netted_fen`) has its part moved from the bank's
    /// `subsidy_due` to its household, and so, since 2026-12-07, has a line it did not net,
    /// the bank holding it for the household ([`crate::ledger::claim_postings`]).
    #[default]
    Bank,
    /// 先缴后补: each approved line's household.
    Households,
}

/// A line the review rejects, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub line: u32,
    pub reason: String,
}

/// The steps of a claim after its submission, as their journal transactions hold them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClaimEvent {
    Reviewed {
        claim_id: String,
        #[serde(with = "iso")]
        reviewed_on: NaiveDate,
        #[serde(with = "iso")]
        notice_from: NaiveDate,
        #[serde(with = "iso")]
        notice_to: NaiveDate,
        rejections: Vec<Rejection>,
    },
    Objected {
        claim_id: String,
        #[serde(with = "iso")]
        objected_on: NaiveDate,
        line: Option<u32>,
        text: String,
        upheld: bool,
    },
    Paid {
        claim_id: String,
        #[serde(with = "iso")]
        paid_on: NaiveDate,
        voucher: String,
        amount_fen: Fen,
        payee: Payee,
        /// Approved lines withheld at payment, rejected with the reason: the writer's, for
        /// lines whose loan was marked misused after the review.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        withheld: Vec<Rejection>,
        /// Paid to the bank, each approved line the bank did not net at repayment (its
        /// household paid the interest in full) credits its household's subsidy too, the bank
        /// owing it (`bank/<bank_id>/subsidy_due` Cr), as a netted line's does: the writer's,
        /// on every payment to the bank since 2026-12-07 (left out when false: those recorded
        /// before moved nothing for such a line, and the bank's cash kept it unrecorded).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        owes_households: bool,
    },
    ClawedBack {
        claim_id: String,
        #[serde(with = "iso")]
        clawed_back_on: NaiveDate,
        line: u32,
        reason: String,
        amount_fen: Fen,
        /// The line's loan, which the writer names (the caller does not), so that the loan's
        /// history shows the clawback ([`crate::domain::event::JournalEvent::loan_ids`]); left
        /// out by clawbacks recorded before 2026-12-06, which their loans' histories do not show.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loan_id: Option<String>,
    },
}

impl ClaimEvent {
    pub fn claim_id(&self) -> &str {
        match self {
            ClaimEvent::Reviewed { claim_id, .. }
            | ClaimEvent::Objected { claim_id, .. }
            | ClaimEvent::Paid { claim_id, .. }
            | ClaimEvent::ClawedBack { claim_id, .. } => claim_id,
        }
    }

    pub fn date(&self) -> NaiveDate {
        match self {
            ClaimEvent::Reviewed { reviewed_on, .. } => *reviewed_on,
            ClaimEvent::Objected { objected_on, .. } => *objected_on,
            ClaimEvent::Paid { paid_on, .. } => *paid_on,
            ClaimEvent::ClawedBack { clawed_back_on, .. } => *clawed_back_on,
        }
    }
}

/// A claim without its lines, with their sums and count: what a list of claims shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimSummary {
    pub claim: Claim,
    pub lines: u64,
    pub totals: ClaimTotals,
}

impl ClaimSummary {
    pub fn of(claim: &Claim) -> ClaimSummary {
        let without = Claim {
            claim_id: claim.claim_id.clone(),
            ledger_id: claim.ledger_id.clone(),
            bank_id: claim.bank_id.clone(),
            due_from: claim.due_from,
            due_to: claim.due_to,
            submitted_on: claim.submitted_on,
            status: claim.status,
            lines: Vec::new(),
            review: claim.review.clone(),
            objections: claim.objections.clone(),
            payment: claim.payment.clone(),
        };
        ClaimSummary { lines: claim.lines.len() as u64, totals: claim.totals(), claim: without }
    }
}

/// A claim's sums over its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClaimTotals {
    pub claimed_fen: i64,
    pub recomputed_fen: i64,
    pub payable_fen: i64,
    /// Lines with at least one difference.
    pub differing_lines: u64,
    /// The subsidy of the approved lines (zero before the review).
    pub approved_fen: i64,
    /// The subsidy clawed back from paid lines.
    pub clawed_back_fen: i64,
    /// The subsidy the bank netted of the lines' interest at repayment (直补), as recomputed.
    pub netted_fen: i64,
}

/// What a review's request alone decides, checked as the request is read (unrecorded, so the
/// review put right goes under the same id) and by the writer again: a notice that does not
/// open before the review, and each line rejected once, for a reason.
pub fn check_review_request(
    reviewed_on: NaiveDate,
    notice_from: NaiveDate,
    rejections: &[Rejection],
) -> Result<(), DomainError> {
    if notice_from < reviewed_on {
        return Err(DomainError::invalid("notice_from", "must not be before the review"));
    }
    let mut rejected = std::collections::HashSet::with_capacity(rejections.len());
    for (i, r) in rejections.iter().enumerate() {
        if r.reason.trim().is_empty() {
            return Err(DomainError::invalid(format!("rejections[{i}].reason"), "is required"));
        }
        if !rejected.insert(r.line) {
            let message = format!("rejects line {} again", r.line);
            return Err(DomainError::invalid(format!("rejections[{i}].line"), message));
        }
    }
    Ok(())
}

impl Claim {
    /// Applies a step recorded after the submission (the event's claim is this one), checking
    /// it against the claim's state and the ledger's policy `versions` (a review's notice: the
    /// version in force on the review's day): the loan-periods it releases,
    /// `(loan_id, due_date)`.
    pub fn apply(
        &mut self,
        event: &ClaimEvent,
        versions: &[PolicyVersion],
    ) -> Result<Vec<(String, NaiveDate)>, DomainError> {
        match event {
            ClaimEvent::Reviewed { reviewed_on, notice_from, notice_to, rejections, .. } => {
                let policy = in_force(versions, *reviewed_on).map(|v| v.params);
                let notice = policy.unwrap_or_default().notice_days();
                self.review(*reviewed_on, *notice_from, *notice_to, rejections, notice)
            }
            ClaimEvent::Objected { objected_on, line, text, upheld, .. } => {
                self.object(*objected_on, *line, text, *upheld)
            }
            ClaimEvent::Paid {
                paid_on,
                voucher,
                amount_fen,
                payee,
                withheld,
                owes_households,
                ..
            } => {
                let (amount, released) = self.pay(*paid_on, voucher, *payee, withheld)?;
                if let Some(payment) = &mut self.payment {
                    payment.owes_households = *owes_households;
                }
                if amount != *amount_fen {
                    return Err(DomainError::invalid(
                        "amount_fen",
                        format!(
                            "{} fen paid, but the claim's approved lines come to {} fen{}",
                            amount_fen.0,
                            amount.0,
                            if withheld.is_empty() {
                                ""
                            } else {
                                " (lines of misused or falsely obtained loans withheld)"
                            }
                        ),
                    ));
                }
                Ok(released)
            }
            ClaimEvent::ClawedBack {
                clawed_back_on, line, reason, amount_fen, loan_id, ..
            } => {
                let amount = self.claw_back(*clawed_back_on, *line, reason)?;
                let line_loan = self.lines.get(*line as usize).map(|l| &l.claimed.loan_id);
                if let Some(named) = loan_id
                    && line_loan != Some(named)
                {
                    return Err(DomainError::invalid(
                        "loan_id",
                        format!("the clawback names loan {named}, but line {line} is not its"),
                    ));
                }
                if amount != *amount_fen {
                    return Err(DomainError::invalid(
                        "amount_fen",
                        format!(
                            "{} fen clawed back, but line {line} was paid {} fen",
                            amount_fen.0, amount.0
                        ),
                    ));
                }
                Ok(Vec::new())
            }
        }
    }

    fn expect_status(&self, status: ClaimStatus, call: &str) -> Result<(), DomainError> {
        if self.status == status {
            return Ok(());
        }
        Err(DomainError::refused(
            Reason::ClaimStatusMismatch,
            format!(
                "claim {} is {}; {call} needs it {}",
                self.claim_id,
                self.status.as_str(),
                status.as_str()
            ),
        )
        .with("status", self.status.as_str()))
    }

    fn line_index(&self, field: &str, line: u32) -> Result<usize, DomainError> {
        let index = line as usize;
        if index >= self.lines.len() {
            return Err(DomainError::invalid(
                field,
                format!("names line {line}; the claim has {} lines", self.lines.len()),
            ));
        }
        Ok(index)
    }

    /// The review (see the module doc): the released loan-periods.
    pub fn review(
        &mut self,
        reviewed_on: NaiveDate,
        notice_from: NaiveDate,
        notice_to: NaiveDate,
        rejections: &[Rejection],
        notice: std::ops::RangeInclusive<u32>,
    ) -> Result<Vec<(String, NaiveDate)>, DomainError> {
        self.expect_status(ClaimStatus::Submitted, "a review")?;
        if reviewed_on < self.submitted_on {
            let message = format!("is before the claim's submission on {}", self.submitted_on);
            return Err(DomainError::invalid("reviewed_on", message));
        }
        check_review_request(reviewed_on, notice_from, rejections)?;
        let days = (notice_to - notice_from).num_days() + 1;
        let (min, max) = (i64::from(*notice.start()), i64::from(*notice.end()));
        if !(min..=max).contains(&days) {
            let message = format!(
                "makes a notice of {days} days; a public notice runs {min} to {max} days (the \
                 policy in force on the review's day)"
            );
            return Err(DomainError::invalid("notice_to", message));
        }
        let mut reasons: Vec<Option<&str>> = vec![None; self.lines.len()];
        for (i, r) in rejections.iter().enumerate() {
            let index = self.line_index(&format!("rejections[{i}].line"), r.line)?;
            reasons[index] = Some(&r.reason);
        }
        let mut released = Vec::new();
        for (line, reason) in self.lines.iter_mut().zip(reasons) {
            let differs = (!line.differences.is_empty()).then(|| {
                let codes: Vec<&str> = line.differences.iter().map(|d| d.as_str()).collect();
                format!("differs from the register: {}", codes.join(", "))
            });
            line.decision = Some(match reason.map(str::to_string).or(differs) {
                Some(reason) => {
                    if line.holds_period() {
                        released.push((line.claimed.loan_id.clone(), line.claimed.due_date));
                    }
                    Decision::Rejected { reason }
                }
                None => Decision::Approved,
            });
        }
        self.review = Some(Review { reviewed_on, notice_from, notice_to });
        self.status = ClaimStatus::Noticed;
        Ok(released)
    }

    /// An objection during the notice (see the module doc): the released loan-period.
    pub fn object(
        &mut self,
        objected_on: NaiveDate,
        line: Option<u32>,
        text: &str,
        upheld: bool,
    ) -> Result<Vec<(String, NaiveDate)>, DomainError> {
        self.expect_status(ClaimStatus::Noticed, "an objection")?;
        let Some(review) = &self.review else {
            return Err(DomainError::refused(Reason::ClaimStatusMismatch, "no review recorded"));
        };
        if !(review.notice_from..=review.notice_to).contains(&objected_on) {
            return Err(DomainError::refused(
                Reason::NoticeClosed,
                format!(
                    "the notice of claim {} runs from {} to {}; an objection of {objected_on} is outside it",
                    self.claim_id, review.notice_from, review.notice_to
                ),
            ));
        }
        if text.trim().is_empty() {
            return Err(DomainError::invalid("text", "is required"));
        }
        let mut released = Vec::new();
        if let Some(n) = line {
            let index = self.line_index("line", n)?;
            let target = &mut self.lines[index];
            if upheld {
                if target.decision != Some(Decision::Approved) {
                    return Err(DomainError::invalid(
                        "upheld",
                        format!("line {n} is rejected already"),
                    ));
                }
                released.push((target.claimed.loan_id.clone(), target.claimed.due_date));
                target.decision = Some(Decision::Rejected {
                    reason: format!("objection upheld: {}", text.trim()),
                });
            }
        } else if upheld {
            return Err(DomainError::invalid(
                "upheld",
                "an objection upheld names the line it rejects",
            ));
        }
        self.objections.push(Objection {
            objected_on,
            line,
            text: text.trim().to_string(),
            upheld,
        });
        Ok(released)
    }

    /// The payment (see the module doc): the amount paid, the approved lines' subsidy.
    /// `withheld`: approved lines rejected first (their periods released, returned).
    pub fn pay(
        &mut self,
        paid_on: NaiveDate,
        voucher: &str,
        payee: Payee,
        withheld: &[Rejection],
    ) -> Result<(Fen, Vec<(String, NaiveDate)>), DomainError> {
        self.expect_status(ClaimStatus::Noticed, "a payment")?;
        let Some(review) = &self.review else {
            return Err(DomainError::refused(Reason::ClaimStatusMismatch, "no review recorded"));
        };
        if paid_on <= review.notice_to {
            return Err(DomainError::refused(
                Reason::NoticeNotOver,
                format!(
                    "the notice of claim {} runs to {}; it may be paid from the day after",
                    self.claim_id, review.notice_to
                ),
            )
            .with("notice_to", review.notice_to));
        }
        if voucher.trim().is_empty() {
            return Err(DomainError::invalid("voucher", "is required"));
        }
        // The lines withheld, each named checked before anything changes.
        let mut is_withheld = vec![false; self.lines.len()];
        for (i, w) in withheld.iter().enumerate() {
            is_withheld[self.line_index(&format!("withheld[{i}].line"), w.line)?] = true;
        }
        if payee == Payee::Households {
            let netted: Vec<String> = (self.lines.iter().enumerate())
                .filter(|(i, l)| l.decision == Some(Decision::Approved) && !is_withheld[*i])
                .filter(|(_, l)| l.netted_fen() > Fen::ZERO)
                .map(|(i, _)| i.to_string())
                .collect();
            if !netted.is_empty() {
                return Err(DomainError::invalid(
                    "payee",
                    format!(
                        "the bank netted the subsidy of line(s) {} at repayment (直补): their households paid the net interest, so the claim is paid to the bank",
                        netted.join(", ")
                    ),
                ));
            }
        }
        let mut released = Vec::new();
        for w in withheld {
            let line = &mut self.lines[w.line as usize];
            if line.decision == Some(Decision::Approved) {
                released.push((line.claimed.loan_id.clone(), line.claimed.due_date));
                line.decision = Some(Decision::Rejected { reason: w.reason.clone() });
            }
        }
        let amount = Fen(self.totals().approved_fen);
        let voucher = voucher.trim().to_string();
        let owes_households = false; // the event's, set by `apply`
        self.payment =
            Some(Payment { paid_on, voucher, amount_fen: amount, payee, owes_households });
        self.status = ClaimStatus::Paid;
        Ok((amount, released))
    }

    /// A paid line's subsidy clawed back (see the module doc; the loan's misuse is the
    /// writer's check): the amount.
    pub fn claw_back(
        &mut self,
        clawed_back_on: NaiveDate,
        line: u32,
        reason: &str,
    ) -> Result<Fen, DomainError> {
        self.expect_status(ClaimStatus::Paid, "a clawback")?;
        let index = self.line_index("line", line)?;
        if let Some(payment) = &self.payment
            && clawed_back_on < payment.paid_on
        {
            return Err(DomainError::invalid(
                "clawed_back_on",
                format!("is before the claim's payment on {}", payment.paid_on),
            ));
        }
        if reason.trim().is_empty() {
            return Err(DomainError::invalid("reason", "is required"));
        }
        let target = &mut self.lines[index];
        let amount = target.approved_fen();
        if amount == Fen::ZERO {
            return Err(DomainError::invalid("line", format!("line {line} was paid no subsidy")));
        }
        if let Some(done) = &target.clawback {
            return Err(DomainError::refused(
                Reason::SubsidyAlreadyClawedBack,
                format!(
                    "the subsidy of line {line} of claim {} was clawed back on {}",
                    self.claim_id, done.clawed_back_on
                ),
            ));
        }
        target.clawback = Some(Clawback {
            clawed_back_on,
            reason: reason.trim().to_string(),
            amount_fen: amount,
        });
        Ok(amount)
    }

    pub fn totals(&self) -> ClaimTotals {
        let mut t = ClaimTotals::default();
        for line in &self.lines {
            t.claimed_fen = t.claimed_fen.saturating_add(line.claimed.subsidy_fen.0);
            let recomputed = line.recomputed.as_ref().map_or(0, |r| r.subsidy_fen.0);
            t.recomputed_fen = t.recomputed_fen.saturating_add(recomputed);
            t.payable_fen = t.payable_fen.saturating_add(line.payable_fen().0);
            t.differing_lines += u64::from(!line.differences.is_empty());
            t.approved_fen = t.approved_fen.saturating_add(line.approved_fen().0);
            let clawed_back = line.clawback.as_ref().map_or(0, |c| c.amount_fen.0);
            t.clawed_back_fen = t.clawed_back_fen.saturating_add(clawed_back);
            t.netted_fen = t.netted_fen.saturating_add(line.netted_fen().0);
        }
        t
    }
}

/// A claimed line against the register's line of its loan-period (`None`: the register has
/// none), before the claimed-once check ([`hold`]).
pub fn check_line(claimed: &ClaimedLine, line: Option<&RegisterLine>) -> ClaimLine {
    let Some(line) = line else {
        return ClaimLine {
            claimed: claimed.clone(),
            household_id: String::new(),
            township: String::new(),
            village: String::new(),
            principal_fen: Fen::ZERO,
            recomputed: None,
            differences: vec![Difference::NotInRegister],
            claimed_by: None,
            decision: None,
            clawback: None,
        };
    };
    let recomputed = Recomputed {
        start: line.start,
        end_inclusive: line.end_inclusive,
        settled_fen: line.settled_fen,
        paid_on_time_fen: line.paid_on_time_fen,
        subsidy_fen: line.subsidy_fen(),
        standing: line.standing,
        days: line.working.as_ref().map_or(0, |w| w.days),
        jishu: line.working.as_ref().map_or(0, |w| i64::try_from(w.jishu).unwrap_or(i64::MAX)),
        netted_fen: line.netted_fen,
    };
    let mut differences = Vec::new();
    if line.standing != LineStanding::OnTime {
        differences.push(Difference::NotOnTime);
    }
    if claimed.interest_paid_fen != recomputed.paid_on_time_fen {
        differences.push(Difference::InterestDiffers);
    }
    if claimed.subsidy_fen != recomputed.subsidy_fen {
        differences.push(Difference::SubsidyDiffers);
    }
    if claimed.days.is_some_and(|days| days != recomputed.days) {
        differences.push(Difference::DaysDiffers);
    }
    if claimed.jishu.is_some_and(|jishu| jishu != recomputed.jishu) {
        differences.push(Difference::JishuDiffers);
    }
    if claimed.period_start.is_some_and(|start| start != recomputed.start) {
        differences.push(Difference::PeriodStartDiffers);
    }
    ClaimLine {
        claimed: claimed.clone(),
        household_id: String::new(),
        township: String::new(),
        village: String::new(),
        principal_fen: Fen::ZERO,
        recomputed: Some(recomputed),
        differences,
        claimed_by: None,
        decision: None,
        clawback: None,
    }
}

/// Marks the differences of the loan's principal and rate the line states from the contract's
/// (`principal`, `rate`), and of the household, township and village it states from the
/// loan's household as recorded (the line's `household_id`, `township` and `village`, set
/// first), for a line in the register. Each text is compared as stated (the service keeps a
/// household's place trimmed, and the claim's lines are trimmed alike); a township or village
/// the registry does not record (registered without it) is not compared: the registry cannot
/// say the bank's is wrong.
pub fn check_terms(line: &mut ClaimLine, principal: Fen, rate: AnnualRate) {
    if line.claimed.principal_fen.is_some_and(|p| p != principal) {
        line.differences.push(Difference::PrincipalDiffers);
    }
    if line.claimed.annual_rate.is_some_and(|r| r.value() != rate.value()) {
        line.differences.push(Difference::RateDiffers);
    }
    let stated = [
        (&line.claimed.household_id, &line.household_id, Difference::HouseholdDiffers),
        (&line.claimed.township, &line.township, Difference::TownshipDiffers),
        (&line.claimed.village, &line.village, Difference::VillageDiffers),
    ];
    for (stated, recorded, difference) in stated {
        if !recorded.is_empty() && stated.as_ref().is_some_and(|s| s != recorded) {
            line.differences.push(difference);
        }
    }
}

/// Marks the line held by another claim (`holder`), if any: it is then not payable here.
pub fn hold(line: &mut ClaimLine, holder: Option<&str>) {
    if let Some(holder) = holder {
        line.differences.push(Difference::AlreadyClaimed);
        line.claimed_by = Some(holder.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn register_line(standing: LineStanding, paid: i64, subsidy: Option<i64>) -> RegisterLine {
        use crate::domain::subsidy::PeriodSubsidy;
        RegisterLine {
            start: d("2021-01-25"),
            end_inclusive: d("2021-03-20"),
            due_date: d("2021-03-20"),
            deadline: d("2021-03-20"),
            settled_fen: Fen(29_410),
            paid_on_time_fen: Fen(paid),
            paid_late_fen: Fen::ZERO,
            written_off_fen: Fen::ZERO,
            netted_fen: Fen::ZERO,
            last_paid_on: Some(d("2021-03-20")),
            standing,
            subsidy_if_paid_on_time: None,
            working: subsidy.map(|s| PeriodSubsidy {
                start: d("2021-01-25"),
                end_inclusive: d("2021-03-20"),
                days: 55,
                jishu: 275_000_000,
                jishu_within_cap: 275_000_000,
                rate: crate::domain::rate::AnnualRate::parse("0.0385").unwrap(),
                rate_within_cap: rust_decimal::Decimal::new(385, 4),
                interest_paid: Fen(paid),
                excluded: None,
                subsidisable_unrounded_fen: s.into(),
                subsidisable: Fen(s),
                segments: Vec::new(),
                subsidy_unrounded_fen: s.into(),
                subsidy: Fen(s),
            }),
            recorded: true,
        }
    }

    fn claimed(paid: i64, subsidy: i64) -> ClaimedLine {
        ClaimedLine::of("BB-C001", d("2021-03-20"), Fen(paid), Fen(subsidy))
    }

    #[test]
    fn a_line_as_the_register_has_it_is_payable() {
        let line = check_line(
            &claimed(29_410, 29_410),
            Some(&register_line(LineStanding::OnTime, 29_410, Some(29_410))),
        );
        assert!(line.differences.is_empty());
        assert_eq!(line.payable_fen(), Fen(29_410));
    }

    /// The principal, rate, days and 积数 a line states are compared when stated: with the
    /// working's days and 积数, and the contract's principal and rate.
    #[test]
    fn the_figures_a_line_states_are_compared_when_stated() {
        let on_time = register_line(LineStanding::OnTime, 29_410, Some(29_410));
        let rate = |r: &str| crate::domain::rate::AnnualRate::parse(r).unwrap();
        let stated = |principal: i64, r: &str, days: u32, jishu: i64| ClaimedLine {
            principal_fen: Some(Fen(principal)),
            annual_rate: Some(rate(r)),
            days: Some(days),
            jishu: Some(jishu),
            ..claimed(29_410, 29_410)
        };
        let mut right = check_line(&stated(5_000_000, "0.0385", 55, 275_000_000), Some(&on_time));
        check_terms(&mut right, Fen(5_000_000), rate("0.038500"));
        assert!(right.differences.is_empty(), "{:?}", right.differences);
        assert_eq!(right.payable_fen(), Fen(29_410));
        let mut wrong = check_line(&stated(4_999_999, "0.04", 54, 274_999_999), Some(&on_time));
        check_terms(&mut wrong, Fen(5_000_000), rate("0.0385"));
        assert_eq!(
            wrong.differences,
            [
                Difference::DaysDiffers,
                Difference::JishuDiffers,
                Difference::PrincipalDiffers,
                Difference::RateDiffers
            ]
        );
        assert_eq!(wrong.payable_fen(), Fen::ZERO);
        // Not stated: not compared.
        let mut silent = check_line(&claimed(29_410, 29_410), Some(&on_time));
        check_terms(&mut silent, Fen(1), rate("0.01"));
        assert!(silent.differences.is_empty());
    }

    /// The household, township, village and period start a line states are compared when
    /// stated: with the loan's household as recorded and the working's first day.
    #[test]
    fn the_household_and_the_period_a_line_states_are_compared_when_stated() {
        let on_time = register_line(LineStanding::OnTime, 29_410, Some(29_410));
        let rate = crate::domain::rate::AnnualRate::parse("0.0385").unwrap();
        let stated = |household: &str, township: &str, village: &str, start: &str| ClaimedLine {
            household_id: Some(household.into()),
            township: Some(township.into()),
            village: Some(village.into()),
            period_start: Some(d(start)),
            ..claimed(29_410, 29_410)
        };
        let checked = |claimed: &ClaimedLine| {
            let mut line = check_line(claimed, Some(&on_time));
            line.household_id = "H001".into();
            (line.township, line.village) = ("城厢镇".into(), "东风村".into());
            check_terms(&mut line, Fen(5_000_000), rate);
            line
        };
        let right = checked(&stated("H001", "城厢镇", "东风村", "2021-01-25"));
        assert!(right.differences.is_empty(), "{:?}", right.differences);
        assert_eq!(right.payable_fen(), Fen(29_410));
        let wrong = checked(&stated("H002", "城关镇", "西风村", "2021-01-26"));
        assert_eq!(
            wrong.differences,
            [
                Difference::PeriodStartDiffers,
                Difference::HouseholdDiffers,
                Difference::TownshipDiffers,
                Difference::VillageDiffers
            ]
        );
        assert_eq!(wrong.payable_fen(), Fen::ZERO);
        let codes: Vec<&str> = wrong.differences.iter().map(|d| d.as_str()).collect();
        assert_eq!(
            codes,
            ["PERIOD_START_DIFFERS", "HOUSEHOLD_DIFFERS", "TOWNSHIP_DIFFERS", "VILLAGE_DIFFERS"]
        );
        // One stated wrong, the others not stated: that one alone.
        let village_only =
            ClaimedLine { village: Some("西风村".into()), ..claimed(29_410, 29_410) };
        assert_eq!(checked(&village_only).differences, [Difference::VillageDiffers]);
        // A place the registry does not record is not compared; a household always is.
        let mut unplaced = check_line(&wrong.claimed, Some(&on_time));
        unplaced.household_id = "H001".into();
        check_terms(&mut unplaced, Fen(5_000_000), rate);
        let expected = [Difference::PeriodStartDiffers, Difference::HouseholdDiffers];
        assert_eq!(unplaced.differences, expected);
    }

    /// A claim's line as submitted before these were stated reads as stating none of them,
    /// and one stating none keeps those bytes.
    #[test]
    fn a_line_stating_nothing_more_keeps_its_bytes() {
        let before = r#"{"loan_id":"BB-C001","due_date":"2021-03-20","interest_paid_fen":29410,"subsidy_fen":29410}"#;
        let read: ClaimedLine = serde_json::from_str(before).expect("a line");
        assert_eq!(read, claimed(29_410, 29_410));
        assert_eq!(serde_json::to_string(&read).expect("written"), before);
    }

    #[test]
    fn each_difference_has_its_code_and_nothing_differing_is_payable() {
        let missing = check_line(&claimed(1, 1), None);
        assert_eq!(missing.differences, [Difference::NotInRegister]);
        let late = check_line(
            &claimed(29_410, 29_410),
            Some(&register_line(LineStanding::PaidLate, 0, None)),
        );
        assert_eq!(
            late.differences,
            [Difference::NotOnTime, Difference::InterestDiffers, Difference::SubsidyDiffers]
        );
        let more = check_line(
            &claimed(29_410, 30_000),
            Some(&register_line(LineStanding::OnTime, 29_410, Some(29_410))),
        );
        assert_eq!(more.differences, [Difference::SubsidyDiffers]);
        let mut held = check_line(
            &claimed(29_410, 29_410),
            Some(&register_line(LineStanding::OnTime, 29_410, Some(29_410))),
        );
        hold(&mut held, Some("BB-Q1"));
        assert_eq!(held.differences, [Difference::AlreadyClaimed]);
        assert_eq!(held.claimed_by.as_deref(), Some("BB-Q1"));
        for line in [missing, late, more, held] {
            assert_eq!(line.payable_fen(), Fen::ZERO, "{line:?}");
        }
    }

    /// A submitted claim whose lines are payable (29,410 fen each) or differ, by `clean`.
    fn submitted(clean: &[bool]) -> Claim {
        let lines = clean
            .iter()
            .enumerate()
            .map(|(i, &clean)| {
                let mut asked = claimed(29_410, 29_410);
                asked.loan_id = format!("BB-C{i:03}");
                let register = register_line(LineStanding::OnTime, 29_410, Some(29_410));
                check_line(&asked, clean.then_some(&register))
            })
            .collect();
        Claim {
            claim_id: "BB-Q".into(),
            ledger_id: "450121".into(),
            bank_id: "BB".into(),
            due_from: d("2021-01-01"),
            due_to: d("2021-03-31"),
            submitted_on: d("2021-04-01"),
            status: ClaimStatus::Submitted,
            lines,
            review: None,
            objections: Vec::new(),
            payment: None,
        }
    }

    fn reviewed(on: &str, from: &str, to: &str, rejections: Vec<Rejection>) -> ClaimEvent {
        ClaimEvent::Reviewed {
            claim_id: "BB-Q".into(),
            reviewed_on: d(on),
            notice_from: d(from),
            notice_to: d(to),
            rejections,
        }
    }

    fn refusal(e: DomainError) -> String {
        match e {
            DomainError::Refused { reason, .. } => reason.code().to_string(),
            DomainError::Invalid { field, .. } => field,
            other => format!("{other:?}"),
        }
    }

    /// The course of a claim step by step: what each step refuses, the notice's length from 7
    /// to 10 days, a payment only after the notice and only of the approved amount, nothing
    /// after the payment.
    #[test]
    fn a_claim_goes_through_its_steps_in_order() {
        let mut claim = submitted(&[true, true, false]);
        let pay = |on: &str, fen| ClaimEvent::Paid {
            claim_id: "BB-Q".into(),
            paid_on: d(on),
            voucher: "V1".into(),
            amount_fen: Fen(fen),
            payee: Payee::Bank,
            withheld: Vec::new(),
            owes_households: true,
        };
        let object = |on: &str, line, upheld| ClaimEvent::Objected {
            claim_id: "BB-Q".into(),
            objected_on: d(on),
            line,
            text: "objection".into(),
            upheld,
        };
        let mut copy = claim.clone();
        let e = copy.apply(&pay("2021-05-01", 0), &[]).unwrap_err();
        assert_eq!(refusal(e), "CLAIM_STATUS_MISMATCH");
        for (to, ok) in [
            ("2021-04-15", false),
            ("2021-04-16", true),
            ("2021-04-19", true),
            ("2021-04-20", false),
        ] {
            let mut copy = claim.clone();
            let result = copy.apply(&reviewed("2021-04-10", "2021-04-10", to, vec![]), &[]);
            assert_eq!(result.is_ok(), ok, "a notice to {to}");
        }
        // A finance office's version of 2021-04-01 notices for 5 days exactly; one from the
        // day after the review is not yet in force.
        let version = |from: &str, days| crate::domain::policy::PolicyVersion {
            effective_date: d(from),
            params: crate::domain::policy::PolicyParams {
                notice_days_min: days,
                notice_days_max: days,
                ..Default::default()
            },
        };
        let own = [version("2021-04-01", 5), version("2021-04-11", 20)];
        for (to, ok) in [("2021-04-14", true), ("2021-04-16", false), ("2021-04-29", false)] {
            let result =
                claim.clone().apply(&reviewed("2021-04-10", "2021-04-10", to, vec![]), &own);
            assert_eq!(result.is_ok(), ok, "a notice to {to} under the office's 5 days");
        }
        let refused = claim
            .clone()
            .apply(&reviewed("2021-04-10", "2021-04-10", "2021-04-16", vec![]), &own)
            .unwrap_err();
        assert!(refused.to_string().contains("runs 5 to 5 days"), "{refused}");
        let released =
            claim.apply(&reviewed("2021-04-10", "2021-04-10", "2021-04-16", vec![]), &[]).unwrap();
        assert!(released.is_empty());
        assert_eq!(claim.totals().approved_fen, 58_820);
        assert_eq!(
            refusal(claim.clone().apply(&object("2021-04-17", None, false), &[]).unwrap_err()),
            "NOTICE_CLOSED"
        );
        assert_eq!(
            refusal(claim.clone().apply(&object("2021-04-09", None, false), &[]).unwrap_err()),
            "NOTICE_CLOSED"
        );
        // The differing line is rejected already: an objection to it cannot be upheld.
        assert_eq!(
            refusal(claim.clone().apply(&object("2021-04-12", Some(2), true), &[]).unwrap_err()),
            "upheld"
        );
        let released = claim.apply(&object("2021-04-12", Some(0), true), &[]).unwrap();
        assert_eq!(released, [("BB-C000".to_string(), d("2021-03-20"))]);
        assert_eq!(
            refusal(claim.clone().apply(&pay("2021-04-16", 29_410), &[]).unwrap_err()),
            "NOTICE_NOT_OVER"
        );
        assert_eq!(
            refusal(claim.clone().apply(&pay("2021-04-17", 58_820), &[]).unwrap_err()),
            "amount_fen"
        );
        claim.apply(&pay("2021-04-17", 29_410), &[]).unwrap();
        assert_eq!(claim.status, ClaimStatus::Paid);
        assert!(claim.payment.as_ref().is_some_and(|p| p.owes_households), "the event's");
        assert_eq!(
            refusal(claim.clone().apply(&pay("2021-04-18", 29_410), &[]).unwrap_err()),
            "CLAIM_STATUS_MISMATCH"
        );
        assert_eq!(
            refusal(claim.clone().apply(&object("2021-04-13", None, false), &[]).unwrap_err()),
            "CLAIM_STATUS_MISMATCH"
        );
        // A paid line's subsidy clawed back once, not before the payment, not a line paid
        // nothing (line 0, rejected on objection).
        let claw_naming = |on: &str, line, fen, loan: Option<&str>| ClaimEvent::ClawedBack {
            claim_id: "BB-Q".into(),
            clawed_back_on: d(on),
            line,
            reason: "misused".into(),
            amount_fen: Fen(fen),
            loan_id: loan.map(Into::into),
        };
        let claw = |on: &str, line, fen| claw_naming(on, line, fen, None);
        let refused = |claim: &Claim, event| refusal(claim.clone().apply(&event, &[]).unwrap_err());
        assert_eq!(refused(&claim, claw("2021-04-16", 1, 29_410)), "clawed_back_on");
        assert_eq!(refused(&claim, claw("2021-05-01", 0, 29_410)), "line");
        assert_eq!(refused(&claim, claw("2021-05-01", 1, 100)), "amount_fen");
        // The loan it names (the writer names the line's) must be the line's.
        let naming = |loan: &str| claw_naming("2021-05-01", 1, 29_410, Some(loan));
        let loan_of_line = claim.lines[1].claimed.loan_id.clone();
        let other_line = claim.lines[0].claimed.loan_id.clone();
        assert_ne!(loan_of_line, other_line);
        assert_eq!(refused(&claim, naming(&other_line)), "loan_id");
        claim.apply(&naming(&loan_of_line), &[]).unwrap();
        assert_eq!(claim.totals().clawed_back_fen, 29_410);
        assert_eq!(refused(&claim, claw("2021-05-02", 1, 29_410)), "SUBSIDY_ALREADY_CLAWED_BACK");
    }

    proptest! {
        /// Whatever lines differ and whatever the review rejects: every line is decided; a line
        /// is approved exactly when it does not differ and is not rejected; the periods released
        /// are those held before and rejected now; what holds a period afterwards is approved;
        /// the approved amount is the approved lines' subsidy; an objection upheld takes its
        /// line's subsidy off and releases its period alone.
        #[test]
        fn a_review_decides_every_line(
            lines in proptest::collection::vec((any::<bool>(), any::<bool>()), 1..12),
            objected in any::<proptest::sample::Index>(),
        ) {
            let clean: Vec<bool> = lines.iter().map(|&(clean, _)| clean).collect();
            let mut claim = submitted(&clean);
            let rejections: Vec<Rejection> = lines
                .iter()
                .enumerate()
                .filter(|(_, (_, rejected))| *rejected)
                .map(|(i, _)| Rejection { line: i as u32, reason: "the bureau's".into() })
                .collect();
            let held_before: Vec<bool> = claim.lines.iter().map(ClaimLine::holds_period).collect();
            let released = claim.apply(&reviewed("2021-04-10", "2021-04-11", "2021-04-20", rejections), &[]).unwrap();
            let mut expected_released = Vec::new();
            let mut approved = 0;
            for (i, (line, &(clean, rejected))) in claim.lines.iter().zip(&lines).enumerate() {
                let approve = clean && !rejected;
                prop_assert_eq!(line.decision == Some(Decision::Approved), approve);
                prop_assert!(line.decision.is_some());
                prop_assert_eq!(line.holds_period(), approve);
                if held_before[i] && !approve {
                    expected_released.push((line.claimed.loan_id.clone(), line.claimed.due_date));
                }
                approved += if approve { 29_410 } else { 0 };
            }
            prop_assert_eq!(released, expected_released);
            prop_assert_eq!(claim.totals().approved_fen, approved);
            let line = objected.index(claim.lines.len());
            let was_approved = claim.lines[line].decision == Some(Decision::Approved);
            let objection = ClaimEvent::Objected {
                claim_id: "BB-Q".into(),
                objected_on: d("2021-04-15"),
                line: Some(line as u32),
                text: "objection".into(),
                upheld: true,
            };
            match claim.apply(&objection, &[]) {
                Ok(released) => {
                    prop_assert!(was_approved);
                    prop_assert_eq!(released.len(), 1);
                    prop_assert_eq!(claim.totals().approved_fen, approved - 29_410);
                }
                Err(_) => prop_assert!(!was_approved),
            }
        }
    }

    fn standing() -> impl Strategy<Value = LineStanding> {
        prop_oneof![
            Just(LineStanding::OnTime),
            Just(LineStanding::PaidLate),
            Just(LineStanding::Overdue),
            Just(LineStanding::WrittenOff),
            Just(LineStanding::NotYetDue),
            Just(LineStanding::Misuse),
        ]
    }

    proptest! {
        /// A line is payable exactly when it is on time, claimed as recomputed and held by no
        /// other claim; the totals are the sums of the lines; a claim survives its JSON.
        #[test]
        fn payable_only_as_recomputed(
            lines in proptest::collection::vec(
                (standing(), 0i64..50_000, 0i64..50_000, 0i64..50_000, any::<bool>(), any::<bool>()),
                0..20,
            ),
        ) {
            let mut claim = Claim {
                claim_id: "BB-Q".into(),
                ledger_id: "450121".into(),
                bank_id: "BB".into(),
                due_from: d("2021-01-01"),
                due_to: d("2021-03-31"),
                submitted_on: d("2021-04-01"),
                status: ClaimStatus::Submitted,
                lines: Vec::new(),
                review: None,
                objections: Vec::new(),
                payment: None,
            };
            let mut sums = ClaimTotals::default();
            for (standing, paid, claimed_paid, subsidy, missing, held) in lines {
                let on_time = standing == LineStanding::OnTime;
                let register = register_line(standing, paid, on_time.then_some(paid));
                // Half the claims ask exactly what the register has.
                let asked = if subsidy % 2 == 0 { claimed(paid, paid) } else { claimed(claimed_paid, subsidy) };
                let mut line = check_line(&asked, (!missing).then_some(&register));
                hold(&mut line, held.then_some("BB-OTHER"));
                let expected = !missing && !held && on_time
                    && asked.interest_paid_fen.0 == paid && asked.subsidy_fen.0 == paid;
                prop_assert_eq!(line.differences.is_empty(), expected);
                prop_assert_eq!(line.payable_fen(), Fen(if expected { paid } else { 0 }));
                sums.claimed_fen += asked.subsidy_fen.0;
                sums.recomputed_fen += if missing || !on_time { 0 } else { paid };
                sums.payable_fen += line.payable_fen().0;
                sums.differing_lines += u64::from(!expected);
                claim.lines.push(line);
            }
            prop_assert_eq!(claim.totals(), sums);
            let json = serde_json::to_string(&claim).unwrap();
            prop_assert_eq!(serde_json::from_str::<Claim>(&json).unwrap(), claim);
        }

        /// Of the household, township, village and first day a line may state: each stated as
        /// recorded adds nothing, each stated otherwise adds its own difference (a place the
        /// registry does not record, none), in one order; the line then pays nothing, and
        /// survives its JSON.
        #[test]
        fn each_stated_field_differs_alone(
            // For each field: not stated, stated as recorded, or stated otherwise.
            stated in proptest::collection::vec(0u8..3, 4),
            recorded_place in proptest::collection::vec(any::<bool>(), 2),
        ) {
            let on_time = register_line(LineStanding::OnTime, 29_410, Some(29_410));
            let rate = crate::domain::rate::AnnualRate::parse("0.0385").unwrap();
            let (household, township, village) = ("H001", "城厢镇", "东风村");
            let recorded = [
                household.to_string(),
                if recorded_place[0] { township.to_string() } else { String::new() },
                if recorded_place[1] { village.to_string() } else { String::new() },
            ];
            let text = |how: u8, as_recorded: &str| match how {
                0 => None,
                1 => Some(as_recorded.to_string()),
                _ => Some(format!("{as_recorded}X")),
            };
            let start = match stated[3] {
                0 => None,
                1 => Some(on_time.start),
                _ => on_time.start.succ_opt(),
            };
            let asked = ClaimedLine {
                household_id: text(stated[0], household),
                township: text(stated[1], township),
                village: text(stated[2], village),
                period_start: start,
                ..claimed(29_410, 29_410)
            };
            let mut line = check_line(&asked, Some(&on_time));
            line.household_id = recorded[0].clone();
            (line.township, line.village) = (recorded[1].clone(), recorded[2].clone());
            check_terms(&mut line, Fen(5_000_000), rate);
            let mut expected = Vec::new();
            if stated[3] == 2 {
                expected.push(Difference::PeriodStartDiffers);
            }
            let texts = [
                (Difference::HouseholdDiffers, true),
                (Difference::TownshipDiffers, recorded_place[0]),
                (Difference::VillageDiffers, recorded_place[1]),
            ];
            for (i, (difference, is_recorded)) in texts.into_iter().enumerate() {
                if stated[i] == 2 && is_recorded {
                    expected.push(difference);
                }
            }
            prop_assert_eq!(&line.differences, &expected);
            prop_assert_eq!(line.payable_fen(), Fen(if expected.is_empty() { 29_410 } else { 0 }));
            let json = serde_json::to_string(&asked).unwrap();
            prop_assert_eq!(serde_json::from_str::<ClaimedLine>(&json).unwrap(), asked);
        }
    }
}
