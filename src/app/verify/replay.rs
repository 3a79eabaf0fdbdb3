//! Stage 2 of verify, on a thread of its own: the replay. Every event is decoded and applied
//! through the domain rules to rebuild the loans and the registry from the journal alone, and
//! each loan event's postings are recomputed and compared with the stored ones.

use std::collections::HashMap;

use super::Problems;
use crate::domain::date::format_date;
use crate::domain::event::JournalEvent;
use crate::domain::loan::{LoanEvent, LoanState};
use crate::domain::policy::default_versions;
use crate::ledger::loan_postings::loan_postings;
use crate::ledger::posting::Posting;
use crate::store::bulk::RegistrySnapshot;

/// A transaction as stage 1 passes it on.
pub(super) struct Replayed {
    pub seq: u64,
    pub kind: String,
    pub command_json: String,
    pub postings: Vec<Posting>,
}

#[derive(Default)]
pub(super) struct Replay {
    pub loans: HashMap<String, LoanState>,
    pub registry: RegistrySnapshot,
    pub problems: Problems,
}

impl Replay {
    pub fn apply(&mut self, t: Replayed) {
        let seq = t.seq;
        match JournalEvent::from_parts(&t.kind, &t.command_json) {
            Ok(JournalEvent::Loan(event)) => {
                self.replay_loan(&event, seq);
                if let Some(loan) = self.loans.get(event.loan_id()) {
                    match loan_postings(&event, &loan.terms.bank_id) {
                        Ok(expected) if expected.as_slice() == t.postings.as_slice() => {}
                        Ok(_) => self.problems.add(
                            seq,
                            format!("seq {seq}: postings differ from those the event implies"),
                        ),
                        Err(e) => self.problems.add(seq, format!("seq {seq}: {e}")),
                    }
                }
            }
            Ok(other) => {
                replay_registry(&mut self.registry, other, seq);
                if !t.postings.is_empty() {
                    self.problems
                        .add(seq, format!("seq {seq}: a registry record carries postings"));
                }
            }
            Err(e) => self.problems.add(seq, format!("seq {seq}: {e}")),
        }
    }

    fn replay_loan(&mut self, event: &LoanEvent, seq: u64) {
        match event {
            LoanEvent::Created { terms } => {
                if self
                    .loans
                    .insert(terms.loan_id.clone(), LoanState::new(terms.clone(), seq))
                    .is_some()
                {
                    self.problems
                        .add(seq, format!("seq {seq}: loan {} contracted twice", terms.loan_id));
                }
            }
            other => match self.loans.get_mut(other.loan_id()) {
                Some(state) => {
                    if let Err(e) = state.apply(other, seq) {
                        self.problems.add(
                            seq,
                            format!("seq {seq}: cannot apply to loan {}: {e}", other.loan_id()),
                        );
                    }
                }
                None => self
                    .problems
                    .add(seq, format!("seq {seq}: event for unknown loan {}", other.loan_id())),
            },
        }
    }
}

/// Rebuilds the registry read model from a registry event (a new ledger starts with the default
/// policy versions, as the writer seeds them).
fn replay_registry(r: &mut RegistrySnapshot, event: JournalEvent, seq: u64) {
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    let status_row = |id: String, e: &crate::domain::household::StatusEntry| {
        (id, seq, format_date(e.effective_date), e.status.as_str().to_string(), e.reason.clone())
    };
    match event {
        JournalEvent::LedgerCreated { .. } => r.policies.extend(default_versions()),
        JournalEvent::BankRegistered { bank_id, name, .. } => r.banks.push((bank_id, name)),
        JournalEvent::HouseholdRegistered { household, status } => {
            r.statuses.push(status_row(household.household_id.clone(), &status));
            r.households.push((
                household.household_id,
                household.head_name,
                household.head_id_number,
                household.township,
                household.village,
            ));
        }
        JournalEvent::HouseholdStatusSet { household_id, entry } => {
            r.statuses.push(status_row(household_id, &entry));
        }
        JournalEvent::PolicySet { version, .. } => r.policies.push(version),
        JournalEvent::Loan(_) => {}
    }
}
