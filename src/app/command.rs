//! Commands (what a caller asks for, already parsed into domain values) and their outcomes.
//!
//! A command's fingerprint is the SHA-256 of its canonical JSON: a retry with the same request id
//! must carry the same fingerprint, or it is refused with `ALREADY_EXISTS`. Outcomes are stored
//! as JSON with the request id so that a retry gets the first answer back, even after a restart.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::subsidy::ClaimCheck;
use crate::domain::date::{BusinessDate, iso};
use crate::domain::event::HouseholdRecord;
use crate::domain::household::StatusEntry;
use crate::domain::loan::{LoanEvent, LoanState, LoanTerms};
use crate::domain::lpr::LprEntry;
use crate::domain::money::Fen;
use crate::domain::policy::PolicyVersion;
use crate::domain::pool::{ParticipationKind, Pool, PoolEvent, PoolTerms};
use crate::domain::rate::AnnualRate;
use crate::domain::risk_fund::{Compensation, DepositSource, Fund};
use crate::domain::subsidy_claim::{Claim, ClaimEvent, ClaimedLine};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    CreateLedger {
        ledger_id: String,
        name: String,
    },
    RegisterBank {
        ledger_id: String,
        bank_id: String,
        name: String,
    },
    RegisterHousehold {
        household: HouseholdRecord,
        status: StatusEntry,
    },
    SetHouseholdStatus {
        household_id: String,
        entry: StatusEntry,
    },
    SetPolicy {
        ledger_id: String,
        version: PolicyVersion,
    },
    SetLpr {
        #[serde(with = "lpr_entry")]
        entry: LprEntry,
    },
    /// `terms.ledger_id` and `terms.borrower_birth_date` are filled by the writer and the parser.
    CreateLoan {
        terms: LoanTerms,
    },
    Disburse {
        loan_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
        amount_fen: Option<Fen>,
    },
    /// The service allocates the amount over what is owed.
    RecordRepayment {
        loan_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
        amount_fen: Fen,
        /// Of the amount, the subsidy the bank netted (直补); left out of the fingerprint when
        /// zero, so that a repayment's fingerprint is what it was before the field.
        #[serde(skip_serializing_if = "Fen::is_zero")]
        subsidy_netted_fen: Fen,
    },
    /// Settles every settlement point of the loan up to `date`.
    SettleLoan {
        loan_id: String,
        #[serde(serialize_with = "iso::serialize")]
        date: BusinessDate,
    },
    /// A settlement run's parameters, recorded under the run's request id (an idempotency
    /// record, no journal transaction, as an LPR entry): the run's request id then names one
    /// run, and a retry with other parameters is refused before anything is settled.
    SettlementRun {
        ledger_id: String,
        bank_id: Option<String>,
        #[serde(serialize_with = "iso::serialize")]
        date: BusinessDate,
    },
    /// A finished settlement run's summary, recorded under [`crate::app::servicing::
    /// summary_request_id`] (an idempotency record, no journal transaction): a retry of the
    /// run is given it instead of running again over the loans live by then.
    SettlementRunSummary {
        summary: crate::app::servicing::SettlementSummary,
    },
    MarkMisuse {
        loan_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
        /// Left out when false: a mark's fingerprint is what it was before the field.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        falsely_obtained: bool,
    },
    ExtendLoan {
        loan_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
        #[serde(serialize_with = "iso::serialize")]
        new_maturity: BusinessDate,
    },
    WriteOffLoan {
        loan_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
    },
    /// Money the bank collected of a written-off loan (账销案存).
    RecordRecovery {
        loan_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
        amount_fen: Fen,
    },
    /// A repayment recorded in error taken back ([`LoanEvent::Reversed`]).
    ReverseRepayment {
        loan_id: String,
        reversed_seq: u64,
        reason: String,
    },
    /// A bank's subsidy claim as it submits it; `checked` holds its lines checked against the
    /// registers as of `submitted_on` by the caller (`app::subsidy::check_claim`), with the
    /// seq of each loan's last event then: the writer refuses to record them over a loan that
    /// has changed since ([`AppError::Stale`]: the caller checks again), and adds the
    /// claimed-once check. It is not part of the fingerprint: a retry is the same request
    /// whatever the registers say by then (the API sends a stored request's retry unchecked,
    /// `checked` empty, for the writer to answer from its record).
    SubmitSubsidyClaim {
        claim_id: String,
        bank_id: String,
        #[serde(serialize_with = "iso::serialize")]
        due_from: BusinessDate,
        #[serde(serialize_with = "iso::serialize")]
        due_to: BusinessDate,
        #[serde(serialize_with = "iso::serialize")]
        submitted_on: BusinessDate,
        lines: Vec<ClaimedLine>,
        #[serde(skip_serializing)]
        checked: ClaimCheck,
    },
    /// A step of a submitted claim: its review, an objection, its payment.
    SubsidyClaimStep {
        step: ClaimEvent,
    },
    /// A ledger's risk-compensation fund opened by its finance office.
    OpenRiskFund {
        ledger_id: String,
        #[serde(serialize_with = "iso::serialize")]
        opened_on: BusinessDate,
        fund_share_percent: u8,
    },
    /// Money into a ledger's fund: the finance office's deposit or the interest it earned.
    DepositRiskFund {
        ledger_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
        source: DepositSource,
        amount_fen: Fen,
        voucher: String,
    },
    /// A bank's claim on its ledger's fund for a loan more than 90 days overdue.
    CompensateLoan {
        loan_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
    },
    /// The finance office's payment of a bank's claim out of its ledger's fund.
    PayCompensation {
        loan_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
        voucher: String,
    },
    /// The finance office's rejection of a bank's pending claim on its ledger's fund.
    RejectCompensation {
        loan_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
        reason: String,
    },
    /// A bank's return to the fund of its share of what was recovered of a compensated loan.
    ReturnRecovery {
        loan_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
    },
    /// A bank's pooled-loan agreement over its member loans (the terms' ledger is the bank's,
    /// filled in by the writer).
    CreatePool {
        terms: PoolTerms,
        loan_ids: Vec<String>,
    },
    /// A household's loan money handed to its pool's partner.
    TransferToPartner {
        pool_id: String,
        loan_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
        amount_fen: Fen,
    },
    /// A return or dividend the partner paid a member household.
    RecordPoolReturn {
        pool_id: String,
        loan_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
        amount_fen: Fen,
    },
    /// A member household's participation (work, training, produce sold).
    RecordParticipation {
        pool_id: String,
        loan_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
        kind: ParticipationKind,
        note: String,
    },
    /// The partner's collective repayment to the bank, allocated over the member loans.
    RepayPool {
        pool_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
        amount_fen: Fen,
    },
    /// The pool settled once its member loans are closed.
    SettlePool {
        pool_id: String,
        #[serde(serialize_with = "iso::serialize")]
        value_date: BusinessDate,
    },
}

mod lpr_entry {
    use super::*;
    pub fn serialize<S: serde::Serializer>(e: &LprEntry, s: S) -> Result<S::Ok, S::Error> {
        (e.effective_from, e.bucket, e.rate).serialize(s)
    }
}

impl Command {
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        crate::ledger::hash::to_hex(&Sha256::digest(json.as_bytes()).into())
    }

    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateLedger { .. } => "create_ledger",
            Command::RegisterBank { .. } => "register_bank",
            Command::RegisterHousehold { .. } => "register_household",
            Command::SetHouseholdStatus { .. } => "set_household_status",
            Command::SetPolicy { .. } => "set_policy",
            Command::SetLpr { .. } => "set_lpr",
            Command::CreateLoan { .. } => "create_loan",
            Command::Disburse { .. } => "disburse",
            Command::RecordRepayment { .. } => "record_repayment",
            Command::SettleLoan { .. } => "settle_loan",
            Command::SettlementRun { .. } => "settlement_run",
            Command::SettlementRunSummary { .. } => "settlement_run_summary",
            Command::MarkMisuse { .. } => "mark_misuse",
            Command::ExtendLoan { .. } => "extend_loan",
            Command::WriteOffLoan { .. } => "write_off_loan",
            Command::RecordRecovery { .. } => "record_recovery",
            Command::ReverseRepayment { .. } => "reverse_repayment",
            Command::SubmitSubsidyClaim { .. } => "submit_subsidy_claim",
            Command::SubsidyClaimStep { step: ClaimEvent::Reviewed { .. } } => {
                "review_subsidy_claim"
            }
            Command::SubsidyClaimStep { step: ClaimEvent::Objected { .. } } => {
                "record_claim_objection"
            }
            Command::SubsidyClaimStep { step: ClaimEvent::Paid { .. } } => "pay_subsidy_claim",
            Command::SubsidyClaimStep { step: ClaimEvent::ClawedBack { .. } } => {
                "claw_back_subsidy"
            }
            Command::OpenRiskFund { .. } => "open_risk_fund",
            Command::DepositRiskFund { .. } => "deposit_risk_fund",
            Command::CompensateLoan { .. } => "compensate_loan",
            Command::PayCompensation { .. } => "pay_compensation",
            Command::RejectCompensation { .. } => "reject_compensation",
            Command::ReturnRecovery { .. } => "return_recovery",
            Command::CreatePool { .. } => "create_pool",
            Command::TransferToPartner { .. } => "transfer_to_partner",
            Command::RecordPoolReturn { .. } => "record_pool_return",
            Command::RecordParticipation { .. } => "record_participation",
            Command::RepayPool { .. } => "repay_pool",
            Command::SettlePool { .. } => "settle_pool",
        }
    }

    /// The existing loan a servicing command changes; `None` for the registry commands and
    /// for a new loan's contract.
    pub fn loan_id(&self) -> Option<&str> {
        match self {
            Command::Disburse { loan_id, .. }
            | Command::RecordRepayment { loan_id, .. }
            | Command::SettleLoan { loan_id, .. }
            | Command::MarkMisuse { loan_id, .. }
            | Command::ExtendLoan { loan_id, .. }
            | Command::WriteOffLoan { loan_id, .. }
            | Command::RecordRecovery { loan_id, .. }
            | Command::ReverseRepayment { loan_id, .. } => Some(loan_id),
            _ => None,
        }
    }
}

impl Outcome {
    /// The brief answer about `loan` after the event `entry` ([`Outcome::LoanRef`]).
    pub fn loan_ref(loan: &LoanState, entry: JournalRef, settled: SettledTotals) -> Outcome {
        Outcome::LoanRef {
            loan_id: loan.terms.loan_id.clone(),
            entry,
            settled,
            principal_outstanding_fen: Some(loan.principal_outstanding_fen),
        }
    }

    /// The form stored in the idempotency record: a loan answer as [`Outcome::LoanRef`], any
    /// other as it is (borrowed, not copied: it is only serialised).
    pub fn stored(&self) -> Cow<'_, Outcome> {
        match self {
            Outcome::Loan { loan, entry, settled } => {
                Cow::Owned(Outcome::loan_ref(loan, entry.clone(), settled.clone()))
            }
            Outcome::SubsidyClaim { claim, entry, .. } => Cow::Owned(Outcome::SubsidyClaimRef {
                claim_id: claim.claim_id.clone(),
                entry: entry.clone(),
            }),
            Outcome::Pool { pool, parts, entry } => Cow::Owned(Outcome::PoolRef {
                pool_id: pool.terms.pool_id.clone(),
                parts: parts.clone(),
                entry: entry.clone(),
            }),
            other => Cow::Borrowed(other),
        }
    }
}

/// Totals of the settlement points one event settled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledTotals {
    pub points: u64,
    pub interest_fen: i64,
    pub penalty_fen: i64,
    pub compound_fen: i64,
}

impl SettledTotals {
    pub fn of(points: &[crate::domain::servicing::SettlementPoint]) -> SettledTotals {
        let mut t = SettledTotals::default();
        for p in points {
            t.points += 1;
            t.interest_fen = t.interest_fen.saturating_add(p.interest_fen().0);
            t.penalty_fen = t.penalty_fen.saturating_add(p.penalty_fen().0);
            t.compound_fen = t.compound_fen.saturating_add(p.compound_fen().0);
        }
        t
    }
}

/// A member loan's part of a collective repayment, as its caller is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepaidPart {
    pub loan_id: String,
    pub amount_fen: Fen,
    /// Of it, principal.
    pub principal_fen: Fen,
    /// The loan's principal outstanding after it.
    pub principal_outstanding_fen: Fen,
}

impl RepaidPart {
    /// Each loan's part of the collective repayment `event`: its amount, the principal of it
    /// and the loan's principal outstanding after it (`before` and `after`: the loans' states
    /// by loan id),
    /// as the writer answers it and verify rebuilds it.
    pub fn of_repayment<'a, 'b>(
        event: &PoolEvent,
        before: impl Fn(&str) -> Option<&'a LoanState>,
        after: impl Fn(&str) -> Option<&'b LoanState>,
    ) -> Vec<RepaidPart> {
        let PoolEvent::Repaid { parts, .. } = event else { return Vec::new() };
        parts
            .iter()
            .filter_map(|part| {
                let LoanEvent::Repaid { loan_id, amount_fen, .. } = part else { return None };
                let (was, now) = (before(loan_id)?, after(loan_id)?);
                Some(RepaidPart {
                    loan_id: loan_id.clone(),
                    amount_fen: *amount_fen,
                    principal_fen: Fen(now.principal_repaid_fen.0 - was.principal_repaid_fen.0),
                    principal_outstanding_fen: now.principal_outstanding_fen,
                })
            })
            .collect()
    }
}

/// Where a write landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRef {
    pub ledger_id: String,
    pub seq: u64,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Ledger {
        ledger_id: String,
        name: String,
        entry: JournalRef,
    },
    Bank {
        bank_id: String,
        ledger_id: String,
        name: String,
        entry: JournalRef,
    },
    Household {
        household: HouseholdRecord,
        statuses: Vec<StatusEntry>,
        entry: JournalRef,
    },
    Policy {
        ledger_id: String,
        version: PolicyVersion,
        entry: JournalRef,
    },
    /// A subsidy claim just submitted, or after a step, whole, with the seq of its submission.
    /// (Never stored: its idempotency record is a [`Outcome::SubsidyClaimRef`].)
    SubsidyClaim {
        claim: Box<Claim>,
        entry: JournalRef,
        #[serde(default)]
        submitted_seq: u64,
    },
    /// A subsidy claim submitted, as its idempotency record keeps it (a claim may have
    /// thousands of lines, which its journal transaction and its row hold): a retry is answered
    /// with the claim as it stands.
    SubsidyClaimRef {
        claim_id: String,
        entry: JournalRef,
    },
    /// A ledger's risk fund after an event, with the compensation the event is about.
    RiskFund {
        fund: Box<Fund>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compensation: Option<Box<Compensation>>,
        entry: JournalRef,
    },
    /// A pool after an event, with each member loan's part of a collective repayment.
    Pool {
        pool: Box<Pool>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        parts: Vec<RepaidPart>,
        entry: JournalRef,
    },
    /// A pool's answer as its idempotency record keeps it (a pool may have a thousand members,
    /// which its row holds): a retry is answered with the pool as it stands, and the parts.
    PoolRef {
        pool_id: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        parts: Vec<RepaidPart>,
        entry: JournalRef,
    },
    Lpr {
        effective_from: BusinessDate,
        tenor: crate::domain::lpr::TenorBucket,
        rate: AnnualRate,
        /// Its transaction in the LPR table's chain (absent from answers stored before entries
        /// were journaled, 2026-12-04).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entry: Option<JournalRef>,
    },
    /// A finished settlement run's summary ([`Command::SettlementRunSummary`]).
    SettlementRunSummary {
        summary: crate::app::servicing::SettlementSummary,
    },
    /// A settlement run was recorded ([`Command::SettlementRun`]); its loans answer apart.
    SettlementRun {
        ledger_id: String,
        bank_id: Option<String>,
        date: BusinessDate,
    },
    Loan {
        loan: Box<LoanState>,
        entry: JournalRef,
        /// What the event settled (its settlement points), for run summaries.
        #[serde(default)]
        settled: SettledTotals,
    },
    /// The command had nothing to do (a settlement with no point due): nothing was posted.
    LoanUnchanged {
        loan: Box<LoanState>,
    },
    /// A refusal, as recorded under the request id (never an answer of its own: the writer
    /// gives it again as the error it was).
    Refused {
        refusal: crate::app::error::Refusal,
    },
    /// How a loan answer is stored for retries: the loan is rebuilt from its journal up to
    /// `entry.seq` when the answer is given again, so a stored answer stays a few hundred bytes
    /// instead of a whole loan state. Also the answer to a caller that asked for brief answers
    /// (a settlement run sums what was settled; a batch answers each item with its loan's
    /// principal outstanding), given as stored when asked again.
    LoanRef {
        loan_id: String,
        entry: JournalRef,
        settled: SettledTotals,
        /// The loan's principal outstanding after the event (absent from answers stored before
        /// it was recorded: a brief answer is then completed from the loan rebuilt).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        principal_outstanding_fen: Option<Fen>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::date::parse_date;

    /// A contract's command as the API builds it (the policy's figures placeholders, the claim
    /// days the programme's) leaves the claim days out of its JSON, as before they were a
    /// field: its fingerprint is unchanged by them.
    #[test]
    fn a_contracts_fingerprint_leaves_the_claim_days_out() {
        let terms = crate::bench::load::bench_terms("110101198001011234");
        let command = Command::CreateLoan { terms: terms.clone() };
        let json = serde_json::to_string(&command).unwrap();
        assert!(!json.contains("claim_overdue_days"), "{json}");
        let other = LoanTerms { claim_overdue_days: 60, ..terms };
        let json = serde_json::to_string(&Command::CreateLoan { terms: other }).unwrap();
        assert!(json.contains("\"claim_overdue_days\":60"), "{json}");
    }

    /// A fingerprint is stored with every answer and compared when a request comes again, also
    /// after an upgrade: the canonical JSON it hashes must not change. Pinned by hashes computed
    /// outside Rust (sha256 of the JSON text in the comment).
    #[test]
    fn fingerprints_are_pinned() {
        let day = |s| parse_date(s).unwrap();
        let loan_id = "B1-0000001".to_string();
        // {"command":"settle_loan","loan_id":"B1-0000001","date":"2021-03-20"}
        let settle = Command::SettleLoan { loan_id: loan_id.clone(), date: day("2021-03-20") };
        assert_eq!(
            settle.fingerprint(),
            "b4f3b2fe98e775732c6063fc873bc3f4b5d7007b978fdd6297e635223d6fde68"
        );
        // {"command":"record_repayment","loan_id":"B1-0000001","value_date":"2021-03-21",
        //  "amount_fen":100000}
        let repay = Command::RecordRepayment {
            loan_id,
            value_date: day("2021-03-21"),
            amount_fen: Fen(100_000),
            subsidy_netted_fen: Fen::ZERO,
        };
        assert_eq!(
            repay.fingerprint(),
            "a1b570b0cde2e4e22147d0d8ad9680e1f4778a473db9f4e16cc4142507364956"
        );
        // {"command":"mark_misuse","loan_id":"B1-0000001","value_date":"2021-04-01"}: a mark
        // as before the falsely-obtained flag (2026-12-06), which only a true one writes.
        let mark = |falsely_obtained| Command::MarkMisuse {
            loan_id: "B1-0000001".into(),
            value_date: day("2021-04-01"),
            falsely_obtained,
        };
        assert_eq!(
            mark(false).fingerprint(),
            "baa0da47b9da4fafe4bc23a27a1bb6838b309958aeac869a7c842dfc3b69ec46"
        );
        assert_eq!(
            mark(true).fingerprint(),
            "a6f7667afd19127fd1b66f6170258d4704599983e524338018c0c5fe43719f6c"
        );
        // {"command":"settlement_run","ledger_id":"450121","bank_id":"B1","date":"2021-03-20"}
        let run = |bank_id: Option<&str>| Command::SettlementRun {
            ledger_id: "450121".into(),
            bank_id: bank_id.map(String::from),
            date: day("2021-03-20"),
        };
        assert_eq!(
            run(Some("B1")).fingerprint(),
            "c878934cb8241f0db940fc8194948421a5f02255f416a2aec3da4ecbe9b98a53"
        );
        // The same with "bank_id":null: the whole ledger's run.
        assert_eq!(
            run(None).fingerprint(),
            "522246a504a65f269069ae06056f02ca1e5b6d4c1b132d73fa8f1d5384a667ef"
        );
    }
}
