//! Verification of a ledger: recompute its hash chain from the stored rows, check that every
//! transaction balances, rebuild the read models (loan states, account balances) from the journal
//! alone, and compare them with what is stored.

use std::collections::{BTreeMap, HashMap};

use super::error::AppError;
use crate::domain::date::format_date;
use crate::domain::event::JournalEvent;
use crate::domain::loan::{LoanEvent, LoanState};
use crate::domain::policy::default_versions;
use crate::ledger::hash::{GENESIS, Hash, TxnContent, from_hex, is_hex_of};
use crate::ledger::loan_postings::loan_postings;
use crate::ledger::posting::Postings;
use crate::store::Db;
use crate::store::read::RegistrySnapshot;

/// Journal transactions read per query while verifying: large enough that the round trips do not
/// dominate, small enough to keep memory flat on a ledger of millions of entries.
pub const VERIFY_PAGE_TXNS: u32 = 10_000;

/// Problems listed in one report, at most; the first break is what matters, the rest are context.
pub const PROBLEMS_MAX: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub ok: bool,
    pub transactions_checked: u64,
    pub head_seq: u64,
    pub head_hash: String,
    /// 0 when the chain holds.
    pub first_break_seq: u64,
    pub problems: Vec<String>,
}

impl VerifyReport {
    fn problem(&mut self, seq: u64, text: String) {
        if self.first_break_seq == 0 && seq > 0 {
            self.first_break_seq = seq;
        }
        if self.problems.len() < PROBLEMS_MAX {
            self.problems.push(text);
        }
    }
}

#[tracing::instrument(skip(db))]
pub async fn verify_ledger(db: &Db, ledger_id: &str) -> Result<VerifyReport, AppError> {
    let mut report = VerifyReport::default();
    let mut prev: Hash = GENESIS;
    let mut expected_seq = 1u64;
    let mut loans: BTreeMap<String, LoanState> = BTreeMap::new();
    let mut balances: HashMap<String, i64> = HashMap::new();
    let mut registry = RegistrySnapshot::default();
    // The next pages are read while this one is checked: reading (the database driver's thread)
    // and checking (this task) run side by side.
    let (pages_tx, mut pages) = tokio::sync::mpsc::channel(2);
    let reader_db = db.clone();
    let reader_ledger = ledger_id.to_string();
    let reader = tokio::spawn(async move {
        let mut next = 1u64;
        loop {
            let page = reader_db
                .journal_range(&reader_ledger, next, u64::MAX >> 1, VERIFY_PAGE_TXNS)
                .await;
            let more = match &page {
                Ok(p) => match p.last() {
                    Some(last) if p.len() == VERIFY_PAGE_TXNS as usize => {
                        next = u64::try_from(last.row.seq).unwrap_or(u64::MAX >> 1) + 1;
                        true
                    }
                    _ => false,
                },
                Err(_) => false,
            };
            if pages_tx.send(page).await.is_err() || !more {
                return;
            }
        }
    });
    while let Some(page) = pages.recv().await {
        let page = page?;
        for entry in &page {
            let r = &entry.row;
            let seq = u64::try_from(r.seq).unwrap_or_default();
            report.transactions_checked += 1;
            if seq != expected_seq {
                report.problem(
                    expected_seq,
                    format!("seq {expected_seq} is missing (next stored is {seq})"),
                );
            }
            expected_seq = seq + 1;
            if !is_hex_of(&r.prev_hash, &prev) {
                report.problem(
                    seq,
                    format!("seq {seq}: prev_hash does not match the hash of seq {}", seq - 1),
                );
            }
            let content = TxnContent {
                ledger_id: &r.ledger_id,
                seq,
                kind: &r.kind,
                value_date: &r.value_date,
                recorded_at_us: r.recorded_at_us,
                actor: &r.actor,
                request_id: &r.request_id,
                command_json: &r.command_json,
                postings: &entry.postings,
            };
            let hash = content.chain_hash(&prev);
            // Continue the chain from the stored hash, so that one changed row is reported once
            // and the rest of the chain is still checked against itself (decoded only when it
            // differs: the recomputed hash is the stored one otherwise).
            prev = if is_hex_of(&r.hash, &hash) {
                hash
            } else {
                report.problem(seq, format!("seq {seq}: stored hash differs from the recomputed hash: the row or its postings were changed"));
                from_hex(&r.hash).unwrap_or(hash)
            };
            if let Err(e) = Postings::check(&entry.postings) {
                report.problem(seq, format!("seq {seq}: {e}"));
            }
            for p in &entry.postings {
                match balances.get_mut(&p.account) {
                    Some(b) => *b += p.amount.0,
                    None => {
                        balances.insert(p.account.clone(), p.amount.0);
                    }
                }
            }
            match JournalEvent::from_parts(&r.kind, &r.command_json) {
                Ok(JournalEvent::Loan(event)) => {
                    replay_loan(&mut loans, &event, seq, &mut report);
                    if let Some(loan) = loans.get(event.loan_id()) {
                        match loan_postings(&event, &loan.terms.bank_id) {
                            Ok(expected) if expected.as_slice() == entry.postings.as_slice() => {}
                            Ok(_) => report.problem(
                                seq,
                                format!("seq {seq}: postings differ from those the event implies"),
                            ),
                            Err(e) => report.problem(seq, format!("seq {seq}: {e}")),
                        }
                    }
                }
                Ok(other) => {
                    replay_registry(&mut registry, other, seq);
                    if !entry.postings.is_empty() {
                        report
                            .problem(seq, format!("seq {seq}: a registry record carries postings"));
                    }
                }
                Err(e) => report.problem(seq, format!("seq {seq}: {e}")),
            }
            report.head_seq = seq;
        }
        if let Some(last) = page.last() {
            report.head_hash = last.row.hash.clone();
        }
    }
    reader.await.map_err(|e| AppError::Internal(format!("journal reader failed: {e}")))?;

    // Read models against the journal.
    let stored = db.registry_snapshot(ledger_id).await?;
    registry.banks.sort();
    registry.households.sort();
    registry.statuses.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    registry.policies.sort_by_key(|v| v.effective_date);
    for (what, same) in [
        ("banks", stored.banks == registry.banks),
        ("households", stored.households == registry.households),
        ("household statuses", stored.statuses == registry.statuses),
        ("policy versions", stored.policies == registry.policies),
    ] {
        if !same {
            report.problem(0, format!("the {what} of ledger {ledger_id} differ from the journal"));
        }
    }

    let stored_balances = db.ledger_balances(ledger_id).await?;
    let mut seen = std::collections::HashSet::new();
    for (account, stored) in &stored_balances {
        seen.insert(account.clone());
        let rebuilt = balances.get(account).copied().unwrap_or(0);
        if rebuilt != stored.0 {
            report.problem(
                0,
                format!(
                    "balance of {account}: stored {} fen, journal gives {rebuilt} fen",
                    stored.0
                ),
            );
        }
    }
    for (account, rebuilt) in &balances {
        if *rebuilt != 0 && !seen.contains(account) {
            report
                .problem(0, format!("balance of {account}: missing, journal gives {rebuilt} fen"));
        }
    }
    let stored_loans = db.ledger_loans(ledger_id).await?;
    let mut stored_ids = std::collections::HashSet::new();
    for stored in &stored_loans {
        stored_ids.insert(stored.terms.loan_id.clone());
        match loans.get(&stored.terms.loan_id) {
            None => report.problem(0, format!("loan {} is stored but has no contract in the journal", stored.terms.loan_id)),
            Some(rebuilt) if rebuilt != stored => report.problem(
                0,
                format!(
                    "loan {}: stored state differs from the journal (stored {} outstanding {} fen, journal {} outstanding {} fen)",
                    stored.terms.loan_id,
                    stored.status.as_str(),
                    stored.principal_outstanding_fen.0,
                    rebuilt.status.as_str(),
                    rebuilt.principal_outstanding_fen.0
                ),
            ),
            Some(_) => {}
        }
    }
    for id in loans.keys() {
        if !stored_ids.contains(id) {
            report
                .problem(0, format!("loan {id} is in the journal but missing from the read model"));
        }
    }
    report.ok = report.problems.is_empty();
    Ok(report)
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

fn replay_loan(
    loans: &mut BTreeMap<String, LoanState>,
    event: &LoanEvent,
    seq: u64,
    report: &mut VerifyReport,
) {
    match event {
        LoanEvent::Created { terms } => {
            if loans.insert(terms.loan_id.clone(), LoanState::new(terms.clone(), seq)).is_some() {
                report.problem(seq, format!("seq {seq}: loan {} contracted twice", terms.loan_id));
            }
        }
        other => match loans.get_mut(other.loan_id()) {
            Some(state) => {
                if let Err(e) = state.apply(other, seq) {
                    report.problem(
                        seq,
                        format!("seq {seq}: cannot apply to loan {}: {e}", other.loan_id()),
                    );
                }
            }
            None => report
                .problem(seq, format!("seq {seq}: event for unknown loan {}", other.loan_id())),
        },
    }
}
