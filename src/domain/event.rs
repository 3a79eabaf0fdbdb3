//! Journal events: what each accepted command records, as the canonical JSON the hash covers.
//!
//! The journal row's `kind` names the event (`loan.disbursed`) and `command_json` holds its
//! payload. Serialisation is serde_json of these types: field order is the declaration order,
//! so the text is deterministic. Renaming a field or a kind breaks old chains: don't.

use serde::{Deserialize, Serialize};

use super::date::BusinessDate;
use super::household::StatusEntry;
use super::loan::LoanEvent;
use super::policy::PolicyVersion;

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
    LedgerCreated { ledger_id: String, name: String },
    BankRegistered { bank_id: String, ledger_id: String, name: String },
    HouseholdRegistered { household: HouseholdRecord, status: StatusEntry },
    HouseholdStatusSet { household_id: String, entry: StatusEntry },
    PolicySet { ledger_id: String, version: PolicyVersion },
    Loan(LoanEvent),
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
            JournalEvent::Loan(LoanEvent::Created { .. }) => "loan.created",
            JournalEvent::Loan(LoanEvent::Disbursed { .. }) => "loan.disbursed",
            JournalEvent::Loan(LoanEvent::Repaid { .. }) => "loan.repaid",
            JournalEvent::Loan(LoanEvent::Settled { .. }) => "loan.settled",
            JournalEvent::Loan(LoanEvent::MisuseMarked { .. }) => "loan.misuse_marked",
            JournalEvent::Loan(LoanEvent::Extended { .. }) => "loan.extended",
            JournalEvent::Loan(LoanEvent::WrittenOff { .. }) => "loan.written_off",
        }
    }

    /// The loans this event touches (for loan histories).
    pub fn loan_ids(&self) -> Vec<&str> {
        match self {
            JournalEvent::Loan(e) => vec![e.loan_id()],
            _ => Vec::new(),
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
            // The loan events (nearly every entry) are serialised in place, not cloned first.
            JournalEvent::Loan(e) => serde_json::to_string(e),
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
            "loan.created" | "loan.disbursed" | "loan.repaid" | "loan.settled"
            | "loan.misuse_marked" | "loan.extended" | "loan.written_off" => {
                let e: LoanEvent = serde_json::from_str(json).map_err(payload)?;
                let event = JournalEvent::Loan(e);
                if event.kind() != kind {
                    return Err(EventDecodeError::UnknownKind(kind.to_string()));
                }
                event
            }
            other => return Err(EventDecodeError::UnknownKind(other.to_string())),
        })
    }

    /// The business date of the event.
    pub fn value_date(&self, recorded_on: BusinessDate) -> BusinessDate {
        match self {
            JournalEvent::HouseholdRegistered { status, .. } => status.effective_date,
            JournalEvent::HouseholdStatusSet { entry, .. } => entry.effective_date,
            JournalEvent::PolicySet { version, .. } => version.effective_date,
            JournalEvent::Loan(e) => e.value_date(),
            JournalEvent::LedgerCreated { .. } | JournalEvent::BankRegistered { .. } => recorded_on,
        }
    }
}
