//! Stage 2 of verify, on a thread of its own: the replay. Every event is decoded and applied
//! through the domain rules to rebuild the loans and the registry from the journal alone, and
//! each loan event's postings are recomputed and compared with the stored ones. The loan
//! history links are rebuilt as the writer makes them ([`JournalEvent::loan_ids`]).

use crate::collections::HashMap;
use std::collections::hash_map::Entry;

use super::Problems;
use crate::domain::date::format_date;
use crate::domain::event::JournalEvent;
use crate::domain::loan::{LoanEvent, LoanState};
use crate::domain::policy::default_versions;
use crate::ledger::loan_postings::loan_postings;
use crate::ledger::posting::{Posting, PostingError, Postings};
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
    /// The seqs of each loan's history, ascending: the transactions whose event touches it.
    pub links: HashMap<String, Vec<u64>>,
    pub problems: Problems,
}

impl Replay {
    /// Room for `loans` loans in the rebuilt loans and links, if it can be had (the count is
    /// the stored one: a hint).
    pub fn expect_loans(&mut self, loans: usize) {
        let _ = self.loans.try_reserve(loans);
        let _ = self.links.try_reserve(loans);
    }

    pub fn apply(&mut self, t: Replayed) {
        let seq = t.seq;
        let event = JournalEvent::from_parts(&t.kind, &t.command_json);
        if let Some(loan_id) = event.as_ref().ok().and_then(JournalEvent::loan_ids) {
            match self.links.get_mut(loan_id) {
                Some(seqs) => seqs.push(seq),
                None => {
                    self.links.insert(loan_id.to_string(), vec![seq]);
                }
            }
        }
        match event {
            Ok(JournalEvent::Loan(event)) => match self.replay_loan(event, seq) {
                Some(Ok(expected)) if expected.as_slice() == t.postings.as_slice() => {}
                Some(Ok(_)) => self
                    .problems
                    .add(seq, format!("seq {seq}: postings differ from those the event implies")),
                Some(Err(e)) => self.problems.add(seq, format!("seq {seq}: {e}")),
                None => {}
            },
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

    /// Recomputes the postings of `event` with its loan's bank and applies it to the loan
    /// (`None`: an event on an unknown loan). A new loan's terms move into its state.
    fn replay_loan(
        &mut self,
        event: LoanEvent,
        seq: u64,
    ) -> Option<Result<Postings, PostingError>> {
        let bank_id = match &event {
            LoanEvent::Created { terms } => &terms.bank_id,
            other => match self.loans.get(other.loan_id()) {
                Some(loan) => &loan.terms.bank_id,
                None => {
                    self.problems
                        .add(seq, format!("seq {seq}: event for unknown loan {}", other.loan_id()));
                    return None;
                }
            },
        };
        let postings = loan_postings(&event, bank_id);
        match event {
            LoanEvent::Created { terms } => match self.loans.entry(terms.loan_id.clone()) {
                Entry::Occupied(mut loan) => {
                    self.problems
                        .add(seq, format!("seq {seq}: loan {} contracted twice", loan.key()));
                    loan.insert(LoanState::new(terms, seq));
                }
                Entry::Vacant(loan) => {
                    loan.insert(LoanState::new(terms, seq));
                }
            },
            other => {
                if let Some(state) = self.loans.get_mut(other.loan_id())
                    && let Err(e) = state.apply(&other, seq)
                {
                    self.problems.add(
                        seq,
                        format!("seq {seq}: cannot apply to loan {}: {e}", other.loan_id()),
                    );
                }
            }
        }
        Some(postings)
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
        JournalEvent::LedgerCreated { name, .. } => {
            r.ledger_name = Some(name);
            r.policies.extend(default_versions());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::tests::LOAN_EVENTS;
    use crate::domain::money::Fen;

    /// The stored form of the sample event `i` at `seq`, with the postings the event implies.
    fn stored(i: usize, seq: u64) -> Replayed {
        let (kind, json) = LOAN_EVENTS[i];
        let Ok(JournalEvent::Loan(event)) = JournalEvent::from_parts(kind, json) else {
            panic!("{kind} decodes");
        };
        let postings = loan_postings(&event, "BB").expect("postings").as_slice().to_vec();
        Replayed { seq, kind: kind.into(), command_json: json.into(), postings }
    }

    fn texts(replay: &Replay) -> Vec<&str> {
        replay.problems.list.iter().map(|(_, text)| text.as_str()).collect()
    }

    #[test]
    fn a_loan_rebuilt_from_its_events() {
        let mut replay = Replay::default();
        replay.apply(stored(0, 1));
        replay.apply(stored(1, 2));
        replay.apply(stored(2, 3));
        assert!(texts(&replay).is_empty(), "{:?}", texts(&replay));
        let loan = &replay.loans["BB-0000000"];
        assert_eq!(
            (loan.disbursed_fen, loan.principal_outstanding_fen),
            (Fen(5_000_000), Fen(4_999_900))
        );
        assert_eq!(loan.last_seq, 3);
        assert_eq!(replay.links["BB-0000000"], [1, 2, 3]);
    }

    #[test]
    fn what_does_not_replay_is_reported_at_its_seq() {
        let mut replay = Replay::default();
        // An event before its loan's contract.
        replay.apply(stored(1, 1));
        replay.apply(stored(0, 2));
        // Postings other than those the event implies (one posting's amount moved to another).
        let mut disbursed = stored(1, 3);
        assert!(disbursed.postings.len() >= 2);
        disbursed.postings[0].amount.0 += 1;
        disbursed.postings[1].amount.0 -= 1;
        replay.apply(disbursed);
        // The same contract again.
        replay.apply(stored(0, 4));
        assert_eq!(
            texts(&replay),
            [
                "seq 1: event for unknown loan BB-0000000",
                "seq 3: postings differ from those the event implies",
                "seq 4: loan BB-0000000 contracted twice",
            ]
        );
        assert_eq!(replay.problems.first_break_seq, 1);
        // The second contract replaced the first: the loan starts again from it.
        assert_eq!(replay.loans["BB-0000000"].last_seq, 4);
    }
}
