//! Journal events: what each accepted command records, as the canonical JSON the hash covers.
//!
//! The journal row's `kind` names the event (`loan.disbursed`) and `command_json` holds its
//! payload. Serialisation is serde_json of these types: field order is the declaration order,
//! so the text is deterministic. Renaming a field or a kind breaks old chains: don't.

use serde::{Deserialize, Serialize};

use super::date::BusinessDate;
use super::household::StatusEntry;
use super::loan::LoanEvent;
use super::lpr::{LprEntry, tenor_text};
use super::policy::PolicyVersion;
use super::pool::{PoolEvent, PoolLoanIds};
use super::risk_fund::FundEvent;
use super::subsidy_claim::{Claim, ClaimEvent};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseholdRecord {
    pub household_id: String,
    pub ledger_id: String,
    pub head_name: String,
    pub head_id_number: String,
    pub township: String,
    pub village: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalEvent {
    LedgerCreated {
        ledger_id: String,
        name: String,
    },
    BankRegistered {
        bank_id: String,
        ledger_id: String,
        name: String,
    },
    HouseholdRegistered {
        household: HouseholdRecord,
        status: StatusEntry,
    },
    HouseholdStatusSet {
        household_id: String,
        entry: StatusEntry,
    },
    PolicySet {
        ledger_id: String,
        version: PolicyVersion,
    },
    /// An entry of the national LPR table, in its own chain ([`super::lpr::LPR_LEDGER`]).
    LprSet {
        entry: LprEntry,
    },
    /// The start of the LPR table's chain, its first transaction: the table as it stood then
    /// (the seeded entries, and on a database older than the chain those set before it), by
    /// date then tenor.
    LprChainStarted {
        entries: Vec<LprEntry>,
    },
    Loan(LoanEvent),
    /// A bank's subsidy claim, checked against the registers when submitted (its command is
    /// the whole claim: [`super::subsidy_claim`]).
    SubsidyClaimSubmitted {
        claim: Box<Claim>,
    },
    /// A step of a claim after its submission: its review, an objection, its payment.
    SubsidyClaim(ClaimEvent),
    /// An event of a ledger's risk-compensation fund ([`super::risk_fund`]).
    RiskFund(FundEvent),
    /// An event of a pooled-loan arrangement ([`super::pool`]).
    Pool(PoolEvent),
}

impl LoanEvent {
    /// The journal's kind of the event (`loan.repaid`): the row's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            LoanEvent::Created { .. } => "loan.created",
            LoanEvent::Disbursed { .. } => "loan.disbursed",
            LoanEvent::Repaid { .. } => "loan.repaid",
            LoanEvent::Settled { .. } => "loan.settled",
            LoanEvent::MisuseMarked { .. } => "loan.misuse_marked",
            LoanEvent::Extended { .. } => "loan.extended",
            LoanEvent::WrittenOff { .. } => "loan.written_off",
            LoanEvent::Recovered { .. } => "loan.recovered",
            LoanEvent::Reversed { .. } => "loan.reversed",
        }
    }
}

/// The loans a journal entry touches ([`JournalEvent::loan_ids`]), without a list of their own.
pub enum LoanIds<'a> {
    One(Option<&'a str>),
    Pool(PoolLoanIds<'a>),
}

impl<'a> Iterator for LoanIds<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            LoanIds::One(id) => id.take(),
            LoanIds::Pool(ids) => ids.next(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct LedgerCreated {
    ledger_id: String,
    name: String,
}
#[derive(Serialize, Deserialize)]
struct BankRegistered {
    bank_id: String,
    ledger_id: String,
    name: String,
}
#[derive(Serialize, Deserialize)]
struct HouseholdRegistered {
    household: HouseholdRecord,
    status: StatusEntry,
}
#[derive(Serialize, Deserialize)]
struct HouseholdStatusSet {
    household_id: String,
    entry: StatusEntry,
}
#[derive(Serialize, Deserialize)]
struct PolicySet {
    ledger_id: String,
    version: PolicyVersion,
}

#[derive(Serialize, Deserialize)]
struct LprChainStarted {
    entries: Vec<LprSet>,
}

#[derive(Serialize, Deserialize)]
struct LprSet {
    #[serde(with = "super::date::iso")]
    effective_date: BusinessDate,
    #[serde(with = "tenor_text")]
    tenor: super::lpr::TenorBucket,
    rate: super::rate::AnnualRate,
}

impl From<&LprEntry> for LprSet {
    fn from(e: &LprEntry) -> Self {
        LprSet { effective_date: e.effective_from, tenor: e.bucket, rate: e.rate }
    }
}

impl From<LprSet> for LprEntry {
    fn from(e: LprSet) -> Self {
        LprEntry { effective_from: e.effective_date, bucket: e.tenor, rate: e.rate }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    #[error("unknown journal kind {0}")]
    UnknownKind(String),
    #[error("payload does not match kind {kind}: {source}")]
    Payload { kind: String, source: serde_json::Error },
}

impl JournalEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            JournalEvent::LedgerCreated { .. } => "ledger.created",
            JournalEvent::BankRegistered { .. } => "bank.registered",
            JournalEvent::HouseholdRegistered { .. } => "household.registered",
            JournalEvent::HouseholdStatusSet { .. } => "household.status_set",
            JournalEvent::PolicySet { .. } => "policy.set",
            JournalEvent::LprSet { .. } => "lpr.set",
            JournalEvent::LprChainStarted { .. } => "lpr.chain_started",
            JournalEvent::Loan(e) => e.kind(),
            JournalEvent::SubsidyClaimSubmitted { .. } => "subsidy_claim.submitted",
            JournalEvent::SubsidyClaim(ClaimEvent::Reviewed { .. }) => "subsidy_claim.reviewed",
            JournalEvent::SubsidyClaim(ClaimEvent::Objected { .. }) => "subsidy_claim.objected",
            JournalEvent::SubsidyClaim(ClaimEvent::Paid { .. }) => "subsidy_claim.paid",
            JournalEvent::SubsidyClaim(ClaimEvent::ClawedBack { .. }) => {
                "subsidy_claim.clawed_back"
            }
            JournalEvent::RiskFund(FundEvent::Opened { .. }) => "risk_fund.opened",
            JournalEvent::RiskFund(FundEvent::Deposited { .. }) => "risk_fund.deposited",
            JournalEvent::RiskFund(FundEvent::Compensated { .. }) => "risk_fund.compensated",
            JournalEvent::RiskFund(FundEvent::Claimed { .. }) => "risk_fund.claimed",
            JournalEvent::RiskFund(FundEvent::Paid { .. }) => "risk_fund.paid",
            JournalEvent::RiskFund(FundEvent::Rejected { .. }) => "risk_fund.rejected",
            JournalEvent::RiskFund(FundEvent::Returned { .. }) => "risk_fund.returned",
            JournalEvent::Pool(PoolEvent::Agreed { .. }) => "pool.agreed",
            JournalEvent::Pool(PoolEvent::Transferred { .. }) => "pool.transferred",
            JournalEvent::Pool(PoolEvent::ReturnPaid { .. }) => "pool.return_paid",
            JournalEvent::Pool(PoolEvent::Participated { .. }) => "pool.participated",
            JournalEvent::Pool(PoolEvent::Repaid { .. }) => "pool.repaid",
            JournalEvent::Pool(PoolEvent::Settled { .. }) => "pool.settled",
        }
    }

    /// The loans this event touches (for loan histories): its loan's, if a loan event; the
    /// loan a risk fund's compensation or return is about; the member loans a pool's event is
    /// about ([`PoolEvent::loan_ids`]); the loan whose subsidy a clawback reverses (named since
    /// 2026-12-06). A loan's history shows them all beside its own events;
    /// its replays take its own events alone, and its part of a pool's collective repayment
    /// ([`JournalEvent::loan_event_of`]).
    pub fn loan_ids(&self) -> LoanIds<'_> {
        match self {
            JournalEvent::Loan(e) => LoanIds::One(Some(e.loan_id())),
            JournalEvent::RiskFund(e) => LoanIds::One(e.loan_id()),
            JournalEvent::Pool(e) => LoanIds::Pool(e.loan_ids()),
            JournalEvent::SubsidyClaim(ClaimEvent::ClawedBack { loan_id, .. }) => {
                LoanIds::One(loan_id.as_deref())
            }
            _ => LoanIds::One(None),
        }
    }

    /// The event of loan `loan_id` this entry records, if any: the entry's own loan event, or
    /// the loan's part of a pool's collective repayment.
    pub fn loan_event_of(&self, loan_id: &str) -> Option<&LoanEvent> {
        match self {
            JournalEvent::Loan(e) if e.loan_id() == loan_id => Some(e),
            JournalEvent::Pool(e) => e.part_of(loan_id),
            _ => None,
        }
    }

    pub fn to_json(&self) -> String {
        let json = match self {
            JournalEvent::LedgerCreated { ledger_id, name } => {
                serde_json::to_string(&LedgerCreated {
                    ledger_id: ledger_id.clone(),
                    name: name.clone(),
                })
            }
            JournalEvent::BankRegistered { bank_id, ledger_id, name } => {
                serde_json::to_string(&BankRegistered {
                    bank_id: bank_id.clone(),
                    ledger_id: ledger_id.clone(),
                    name: name.clone(),
                })
            }
            JournalEvent::HouseholdRegistered { household, status } => {
                serde_json::to_string(&HouseholdRegistered {
                    household: household.clone(),
                    status: status.clone(),
                })
            }
            JournalEvent::HouseholdStatusSet { household_id, entry } => {
                serde_json::to_string(&HouseholdStatusSet {
                    household_id: household_id.clone(),
                    entry: entry.clone(),
                })
            }
            JournalEvent::PolicySet { ledger_id, version } => serde_json::to_string(&PolicySet {
                ledger_id: ledger_id.clone(),
                version: version.clone(),
            }),
            JournalEvent::LprSet { entry } => serde_json::to_string(&LprSet::from(entry)),
            JournalEvent::LprChainStarted { entries } => serde_json::to_string(&LprChainStarted {
                entries: entries.iter().map(LprSet::from).collect(),
            }),
            // The loan events (nearly every entry) are serialised in place, not cloned first.
            JournalEvent::Loan(e) => serde_json::to_string(e),
            JournalEvent::SubsidyClaimSubmitted { claim } => serde_json::to_string(claim),
            JournalEvent::SubsidyClaim(e) => serde_json::to_string(e),
            JournalEvent::RiskFund(e) => serde_json::to_string(e),
            JournalEvent::Pool(e) => serde_json::to_string(e),
        };
        // Serialising these plain structs to a string cannot fail: no maps with non-string keys,
        // no custom serialisers that error.
        json.unwrap_or_default()
    }

    pub fn from_parts(kind: &str, json: &str) -> Result<Self, EventDecodeError> {
        let payload = |source| EventDecodeError::Payload { kind: kind.to_string(), source };
        Ok(match kind {
            "ledger.created" => {
                let e: LedgerCreated = serde_json::from_str(json).map_err(payload)?;
                JournalEvent::LedgerCreated { ledger_id: e.ledger_id, name: e.name }
            }
            "bank.registered" => {
                let e: BankRegistered = serde_json::from_str(json).map_err(payload)?;
                JournalEvent::BankRegistered {
                    bank_id: e.bank_id,
                    ledger_id: e.ledger_id,
                    name: e.name,
                }
            }
            "household.registered" => {
                let e: HouseholdRegistered = serde_json::from_str(json).map_err(payload)?;
                JournalEvent::HouseholdRegistered { household: e.household, status: e.status }
            }
            "household.status_set" => {
                let e: HouseholdStatusSet = serde_json::from_str(json).map_err(payload)?;
                JournalEvent::HouseholdStatusSet { household_id: e.household_id, entry: e.entry }
            }
            "policy.set" => {
                let e: PolicySet = serde_json::from_str(json).map_err(payload)?;
                JournalEvent::PolicySet { ledger_id: e.ledger_id, version: e.version }
            }
            "lpr.set" => {
                let e: LprSet = serde_json::from_str(json).map_err(payload)?;
                JournalEvent::LprSet { entry: e.into() }
            }
            "lpr.chain_started" => {
                let e: LprChainStarted = serde_json::from_str(json).map_err(payload)?;
                JournalEvent::LprChainStarted {
                    entries: e.entries.into_iter().map(Into::into).collect(),
                }
            }
            "loan.created" | "loan.disbursed" | "loan.repaid" | "loan.settled"
            | "loan.misuse_marked" | "loan.extended" | "loan.written_off" | "loan.recovered"
            | "loan.reversed" => {
                let e = match loan_wire::decode(kind, json) {
                    Some(decoded) => decoded,
                    None => serde_json::from_str::<LoanEvent>(json),
                };
                let event = JournalEvent::Loan(e.map_err(payload)?);
                if event.kind() != kind {
                    return Err(EventDecodeError::UnknownKind(kind.to_string()));
                }
                event
            }
            "subsidy_claim.submitted" => {
                let claim: Claim = serde_json::from_str(json).map_err(payload)?;
                JournalEvent::SubsidyClaimSubmitted { claim: Box::new(claim) }
            }
            "subsidy_claim.reviewed"
            | "subsidy_claim.objected"
            | "subsidy_claim.paid"
            | "subsidy_claim.clawed_back" => {
                let event =
                    JournalEvent::SubsidyClaim(serde_json::from_str(json).map_err(payload)?);
                if event.kind() != kind {
                    return Err(EventDecodeError::UnknownKind(kind.to_string()));
                }
                event
            }
            "risk_fund.opened"
            | "risk_fund.deposited"
            | "risk_fund.compensated"
            | "risk_fund.claimed"
            | "risk_fund.paid"
            | "risk_fund.rejected"
            | "risk_fund.returned" => {
                let event = JournalEvent::RiskFund(serde_json::from_str(json).map_err(payload)?);
                if event.kind() != kind {
                    return Err(EventDecodeError::UnknownKind(kind.to_string()));
                }
                event
            }
            "pool.agreed" | "pool.transferred" | "pool.return_paid" | "pool.participated"
            | "pool.repaid" | "pool.settled" => {
                let event = JournalEvent::Pool(serde_json::from_str(json).map_err(payload)?);
                if event.kind() != kind {
                    return Err(EventDecodeError::UnknownKind(kind.to_string()));
                }
                event
            }
            other => return Err(EventDecodeError::UnknownKind(other.to_string())),
        })
    }

    /// The business date of the event: its own ([`JournalEvent::own_date`]), or the day it was
    /// recorded on.
    pub fn value_date(&self, recorded_on: BusinessDate) -> BusinessDate {
        self.own_date().unwrap_or(recorded_on)
    }

    /// The date the event carries, its journal row's value date; none for a ledger created, a
    /// bank registered or the LPR table's chain started, dated the day they were recorded.
    pub fn own_date(&self) -> Option<BusinessDate> {
        match self {
            JournalEvent::HouseholdRegistered { status, .. } => Some(status.effective_date),
            JournalEvent::HouseholdStatusSet { entry, .. } => Some(entry.effective_date),
            JournalEvent::PolicySet { version, .. } => Some(version.effective_date),
            JournalEvent::LprSet { entry } => Some(entry.effective_from),
            JournalEvent::Loan(e) => Some(e.value_date()),
            JournalEvent::SubsidyClaimSubmitted { claim } => Some(claim.submitted_on),
            JournalEvent::SubsidyClaim(e) => Some(e.date()),
            JournalEvent::RiskFund(e) => Some(e.date()),
            JournalEvent::Pool(e) => Some(e.date()),
            JournalEvent::LedgerCreated { .. }
            | JournalEvent::BankRegistered { .. }
            | JournalEvent::LprChainStarted { .. } => None,
        }
    }
}

/// Loan events decoded straight into their variant, the row's `kind` naming it.
///
/// `LoanEvent` is an internally tagged enum (`{"type":"repaid",...}`): serde's derived decoder
/// for those reads the whole object into an intermediate tree first, to find the tag, and then
/// decodes the variant from that tree. Loan events are nearly every journal entry, and verify
/// decodes all of them: that detour was about a fifth of its replay. The writer always puts the
/// tag first (serde writes it before the fields), so when the text starts with the tag the
/// `kind` implies, the fields are decoded directly into the variant's own struct (which reads
/// the tag as one of its fields and ignores it: its value is the prefix just checked). Any other
/// text goes through the derived decoder, which is the reference: both accept the same events.
mod loan_wire {
    use serde::Deserialize;
    use serde::de::IgnoredAny;

    use crate::domain::date::{BusinessDate, iso, iso_opt};
    use crate::domain::loan::{LoanEvent, LoanTerms};
    use crate::domain::money::Fen;
    use crate::domain::servicing::{Allocation, Repayment, SettlementPoint};

    /// The event in `json`, if it starts with the tag of `kind`; `None`: decode it the general
    /// way.
    pub(super) fn decode(kind: &str, json: &str) -> Option<serde_json::Result<LoanEvent>> {
        let tag = kind.strip_prefix("loan.")?;
        let rest = json.strip_prefix(r#"{"type":""#)?.strip_prefix(tag)?;
        if !rest.starts_with(r#"","#) {
            return None;
        }
        Some(match tag {
            "created" => serde_json::from_str(json)
                .map(|Created { _tag, terms }| LoanEvent::Created { terms }),
            "disbursed" => serde_json::from_str(json).map(
                |Disbursed { _tag, loan_id, value_date, amount_fen, settlements }| {
                    LoanEvent::Disbursed { loan_id, value_date, amount_fen, settlements }
                },
            ),
            "settled" => serde_json::from_str(json).map(
                |Dated { _tag, loan_id, value_date, settlements, .. }| LoanEvent::Settled {
                    loan_id,
                    value_date,
                    settlements,
                },
            ),
            "repaid" => serde_json::from_str(json).map(
                |Repaid {
                     _tag,
                     loan_id,
                     value_date,
                     amount_fen,
                     settlements,
                     repayment,
                     subsidy_netted_fen,
                 }| LoanEvent::Repaid {
                    loan_id,
                    value_date,
                    amount_fen,
                    settlements,
                    repayment,
                    subsidy_netted_fen,
                },
            ),
            "misuse_marked" => serde_json::from_str(json).map(
                |Dated { _tag, loan_id, value_date, settlements, falsely_obtained }| {
                    LoanEvent::MisuseMarked { loan_id, value_date, settlements, falsely_obtained }
                },
            ),
            "extended" => serde_json::from_str(json).map(
                |Extended { _tag, loan_id, value_date, new_maturity, settlements }| {
                    LoanEvent::Extended { loan_id, value_date, new_maturity, settlements }
                },
            ),
            "written_off" => serde_json::from_str(json).map(
                |WrittenOff {
                     _tag,
                     loan_id,
                     value_date,
                     settlements,
                     charges,
                     allocation,
                     overdue_since,
                 }| LoanEvent::WrittenOff {
                    loan_id,
                    value_date,
                    settlements,
                    charges,
                    allocation,
                    overdue_since,
                },
            ),
            "recovered" => serde_json::from_str(json).map(
                |Recovered { _tag, loan_id, value_date, amount_fen, principal_fen }| {
                    LoanEvent::Recovered { loan_id, value_date, amount_fen, principal_fen }
                },
            ),
            "reversed" => serde_json::from_str(json).map(
                |Reversed { _tag, loan_id, value_date, reversed_seq, reason }| {
                    LoanEvent::Reversed { loan_id, value_date, reversed_seq, reason }
                },
            ),
            _ => return None,
        })
    }

    // One struct per variant (two variants with the same fields share one), its fields those of
    // the variant (the conversions above name every field, so a field added to or removed from a
    // variant fails to compile here), plus the tag: required, and refused when repeated, as the
    // derived decoder does.
    #[derive(Deserialize)]
    struct Created {
        #[serde(rename = "type")]
        _tag: IgnoredAny,
        terms: LoanTerms,
    }
    #[derive(Deserialize)]
    struct Disbursed {
        #[serde(rename = "type")]
        _tag: IgnoredAny,
        loan_id: String,
        #[serde(deserialize_with = "iso::deserialize")]
        value_date: BusinessDate,
        amount_fen: Fen,
        settlements: Vec<SettlementPoint>,
    }
    /// `Settled` and `MisuseMarked`: the same fields, but a mark's flag (a settlement's text
    /// never holds it; were it there, both decoders would ignore it).
    #[derive(Deserialize)]
    struct Dated {
        #[serde(rename = "type")]
        _tag: IgnoredAny,
        loan_id: String,
        #[serde(deserialize_with = "iso::deserialize")]
        value_date: BusinessDate,
        settlements: Vec<SettlementPoint>,
        #[serde(default)]
        falsely_obtained: bool,
    }
    #[derive(Deserialize)]
    struct Repaid {
        #[serde(rename = "type")]
        _tag: IgnoredAny,
        loan_id: String,
        #[serde(deserialize_with = "iso::deserialize")]
        value_date: BusinessDate,
        amount_fen: Fen,
        settlements: Vec<SettlementPoint>,
        repayment: Repayment,
        #[serde(default)]
        subsidy_netted_fen: Fen,
    }
    #[derive(Deserialize)]
    struct Extended {
        #[serde(rename = "type")]
        _tag: IgnoredAny,
        loan_id: String,
        #[serde(deserialize_with = "iso::deserialize")]
        value_date: BusinessDate,
        #[serde(deserialize_with = "iso::deserialize")]
        new_maturity: BusinessDate,
        settlements: Vec<SettlementPoint>,
    }
    #[derive(Deserialize)]
    struct WrittenOff {
        #[serde(rename = "type")]
        _tag: IgnoredAny,
        loan_id: String,
        #[serde(deserialize_with = "iso::deserialize")]
        value_date: BusinessDate,
        settlements: Vec<SettlementPoint>,
        charges: SettlementPoint,
        allocation: Allocation,
        #[serde(default, deserialize_with = "iso_opt::deserialize")]
        overdue_since: Option<BusinessDate>,
    }
    #[derive(Deserialize)]
    struct Recovered {
        #[serde(rename = "type")]
        _tag: IgnoredAny,
        loan_id: String,
        #[serde(deserialize_with = "iso::deserialize")]
        value_date: BusinessDate,
        amount_fen: Fen,
        principal_fen: Fen,
    }
    #[derive(Deserialize)]
    struct Reversed {
        #[serde(rename = "type")]
        _tag: IgnoredAny,
        loan_id: String,
        #[serde(deserialize_with = "iso::deserialize")]
        value_date: BusinessDate,
        reversed_seq: u64,
        reason: String,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One event of each loan kind as the writer stores it (the first four taken from a bench
    /// database), in an order a loan can take, then a misuse mark that says falsely obtained
    /// and a recovery after the write-off (another loan's, not in that order), and a
    /// repayment whose bank netted the subsidy.
    pub(crate) const LOAN_EVENTS: [(&str, &str); 11] = [
        (
            "loan.created",
            r#"{"type":"created","terms":{"loan_id":"BB-0000000","ledger_id":"BENCH","bank_id":"BB","contract_number":"0000000","household_id":"H0000000","borrower_name":"bench","borrower_id_number":"450121198001010006","borrower_birth_date":"1980-01-01","principal_fen":5000000,"annual_rate":"0.0385","contract_date":"2021-01-25","term_months":12,"maturity_date":"2022-01-25","repayment_method":"bullet","settlement_frequency":"quarterly","purpose":"bench","collateral_free":true,"guarantee_free":true,"renews_loan_id":null,"overdue_uplift":"0.5","misuse_uplift":"1","grace_days":0,"rounding":"half_up","extension_months_max":12}}"#,
        ),
        (
            "loan.disbursed",
            r#"{"type":"disbursed","loan_id":"BB-0000000","value_date":"2021-01-25","amount_fen":5000000,"settlements":[]}"#,
        ),
        (
            "loan.repaid",
            r#"{"type":"repaid","loan_id":"BB-0000000","value_date":"2021-02-01","amount_fen":100,"settlements":[],"repayment":{"charges":{"date":"2021-02-01","interest":null,"penalty":null,"compound":null},"allocation":{"penalty_fen":0,"compound_fen":0,"overdue_interest_fen":0,"current_interest_fen":0,"principal_fen":100},"payoff":false}}"#,
        ),
        (
            "loan.settled",
            r#"{"type":"settled","loan_id":"BB-0000000","value_date":"2021-03-20","settlements":[{"date":"2021-03-20","interest":{"segments":[{"from":"2021-01-25","to_inclusive":"2021-01-31","days":7,"base_fen":5000000,"annual_rate":"0.0385","jishu":35000000},{"from":"2021-02-01","to_inclusive":"2021-03-20","days":48,"base_fen":4999500,"annual_rate":"0.0385","jishu":239976000}],"unrounded_fen":"29407.155555555555555555555556","rounding":"half_up","amount_fen":29407},"penalty":null,"compound":null}]}"#,
        ),
        (
            "loan.misuse_marked",
            r#"{"type":"misuse_marked","loan_id":"BB-0000000","value_date":"2021-03-01","settlements":[]}"#,
        ),
        (
            "loan.extended",
            r#"{"type":"extended","loan_id":"BB-0000000","value_date":"2022-01-20","new_maturity":"2023-01-25","settlements":[]}"#,
        ),
        (
            "loan.written_off",
            r#"{"type":"written_off","loan_id":"BB-0000000","value_date":"2023-06-01","settlements":[],"charges":{"date":"2023-06-01","interest":null,"penalty":null,"compound":null},"allocation":{"penalty_fen":0,"compound_fen":0,"overdue_interest_fen":0,"current_interest_fen":0,"principal_fen":5000000}}"#,
        ),
        // A mark that says falsely obtained (since 2026-12-06): the field after the others.
        (
            "loan.misuse_marked",
            r#"{"type":"misuse_marked","loan_id":"BB-0000000","value_date":"2021-03-01","settlements":[],"falsely_obtained":true}"#,
        ),
        // A recovery after the write-off (since 2026-12-06).
        (
            "loan.recovered",
            r#"{"type":"recovered","loan_id":"BB-0000000","value_date":"2023-09-01","amount_fen":300000,"principal_fen":300000}"#,
        ),
        // A repayment of a period's interest whose subsidy the bank netted (直补, since
        // 2026-12-06): the field after the others.
        (
            "loan.repaid",
            r#"{"type":"repaid","loan_id":"BB-0000000","value_date":"2021-03-20","amount_fen":29407,"settlements":[],"repayment":{"charges":{"date":"2021-03-20","interest":null,"penalty":null,"compound":null},"allocation":{"penalty_fen":0,"compound_fen":0,"overdue_interest_fen":0,"current_interest_fen":29407,"principal_fen":0},"payoff":false},"subsidy_netted_fen":29407}"#,
        ),
        // The reversal of a repayment recorded in error (since 2026-12-07), dated the
        // repayment's day.
        (
            "loan.reversed",
            r#"{"type":"reversed","loan_id":"BB-0000000","value_date":"2021-02-01","reversed_seq":3,"reason":"keyed twice"}"#,
        ),
    ];

    /// One event of each registry kind as the writer stores it (the first three taken from a
    /// bench database, the policy version one a ledger is seeded with). Their text is hashed
    /// into the chain: an encoding that changed (a field renamed, added or moved) would break
    /// the verification of every journal written before it.
    pub(crate) const REGISTRY_EVENTS: [(&str, &str); 7] = [
        ("ledger.created", r#"{"ledger_id":"BENCH","name":"bench"}"#),
        ("bank.registered", r#"{"bank_id":"BB","ledger_id":"BENCH","name":"bench bank"}"#),
        (
            "household.registered",
            r#"{"household":{"household_id":"H0000000","ledger_id":"BENCH","head_name":"bench","head_id_number":"450121197001010001","township":"","village":""},"status":{"status":"registered_poor","effective_date":"2016-01-01","reason":""}}"#,
        ),
        (
            "household.status_set",
            r#"{"household_id":"H001","entry":{"status":"exited","effective_date":"2021-06-30","reason":"脱贫 (exited poverty)"}}"#,
        ),
        (
            "policy.set",
            r#"{"ledger_id":"450121","version":{"effective_date":"2024-01-01","params":{"household_principal_cap_fen":5000000,"term_months_max":36,"borrower_age_min":18,"borrower_age_max":65,"overdue_penalty_uplift":"0.5","misuse_penalty_uplift":"1","subsidy_ratio":"0.7","subsidy_cap_rate":null,"grace_days":0,"rounding":"half_up","eligible_statuses":["registered_poor","exited","monitored","edge"],"extension_months_max":12}}}"#,
        ),
        ("lpr.set", r#"{"effective_date":"2025-06-20","tenor":"5y","rate":"0.035"}"#),
        (
            "lpr.chain_started",
            r#"{"entries":[{"effective_date":"2015-10-24","tenor":"1y","rate":"0.0435"},{"effective_date":"2015-10-24","tenor":"5y","rate":"0.0475"}]}"#,
        ),
    ];

    /// Each registry event reads back as what it is and writes out as the text it was read
    /// from, byte for byte; dated as the writer dates its row.
    #[test]
    fn registry_events_read_back_as_stored() {
        let dates: Vec<Option<String>> = REGISTRY_EVENTS
            .iter()
            .map(|(kind, json)| {
                let event = JournalEvent::from_parts(kind, json).expect(kind);
                assert_eq!(event.kind(), *kind);
                assert_eq!(event.to_json(), *json, "{kind}");
                assert_eq!(event.loan_ids().next(), None, "{kind}");
                event.own_date().map(crate::domain::date::format_date)
            })
            .collect();
        let dated = |d: &str| Some(d.to_string());
        assert_eq!(
            dates,
            [
                None,
                None,
                dated("2016-01-01"),
                dated("2021-06-30"),
                dated("2024-01-01"),
                dated("2025-06-20"),
                None
            ]
        );
        // The seeded version is the one pinned: the seeding writes no event, but a ledger's
        // `policy.set` of the same version must read as it.
        let Ok(JournalEvent::PolicySet { version, .. }) =
            JournalEvent::from_parts(REGISTRY_EVENTS[4].0, REGISTRY_EVENTS[4].1)
        else {
            panic!("policy.set decodes");
        };
        let from_2024 = crate::domain::policy::default_versions()
            .into_iter()
            .find(|v| crate::domain::date::format_date(v.effective_date) == "2024-01-01");
        assert_eq!(Some(version), from_2024);
    }

    /// The text with its `"type"` member moved to the end: the same event, not in the writer's
    /// order.
    fn tag_last(json: &str) -> String {
        let (tag, rest) = json[1..].split_once(',').expect("a member after the tag");
        format!("{{{},{tag}}}", &rest[..rest.len() - 1])
    }

    #[test]
    fn loan_events_decode_directly_as_the_derived_decoder_does() {
        for (kind, json) in LOAN_EVENTS {
            let reference: LoanEvent = serde_json::from_str(json).expect(kind);
            let direct = loan_wire::decode(kind, json).expect(kind).expect(kind);
            assert_eq!(direct, reference, "{kind}");
            let event = JournalEvent::from_parts(kind, json).expect(kind);
            assert_eq!(event, JournalEvent::Loan(reference.clone()), "{kind}");
            assert_eq!(event.kind(), kind);
            // The stored text is the canonical one: what the hash covers reads back unchanged.
            assert_eq!(event.to_json(), json, "{kind}");
            // Not in the writer's order: the derived decoder takes it, to the same event.
            let moved = tag_last(json);
            assert!(loan_wire::decode(kind, &moved).is_none(), "{kind}");
            assert_eq!(
                JournalEvent::from_parts(kind, &moved).expect(kind),
                JournalEvent::Loan(reference),
                "{kind}"
            );
        }
    }

    #[test]
    fn loan_events_that_do_not_match_their_kind_are_refused() {
        let (_, repaid) = LOAN_EVENTS[2];
        let (_, settled) = LOAN_EVENTS[3];
        // The tag of another kind, first or last.
        for json in [settled.to_string(), tag_last(settled)] {
            assert!(matches!(
                JournalEvent::from_parts("loan.repaid", &json),
                Err(EventDecodeError::UnknownKind(_))
            ));
        }
        // The tag twice, even with the right value first.
        let twice = format!("{},\"type\":\"settled\"}}", &repaid[..repaid.len() - 1]);
        assert!(matches!(
            JournalEvent::from_parts("loan.repaid", &twice),
            Err(EventDecodeError::Payload { .. })
        ));
        assert!(serde_json::from_str::<LoanEvent>(&twice).is_err());
        // A field missing, or of the wrong type.
        for broken in [
            repaid.replace(r#""amount_fen":100,"#, ""),
            repaid.replace(r#""amount_fen":100"#, r#""amount_fen":"100""#),
        ] {
            assert!(matches!(
                JournalEvent::from_parts("loan.repaid", &broken),
                Err(EventDecodeError::Payload { .. })
            ));
            assert!(serde_json::from_str::<LoanEvent>(&broken).is_err());
        }
        // An unknown loan kind.
        assert!(matches!(
            JournalEvent::from_parts("loan.frozen", r#"{"type":"frozen","loan_id":"x"}"#),
            Err(EventDecodeError::UnknownKind(_))
        ));
    }
}
