//! The last step of verify: the read models rebuilt from the journal ([`Rebuilt`]) against the
//! stored ones ([`StoredModels`]), once both stages and the stored reads are done.
//!
//! In two halves on two threads: the ledger's name, the registry and the balances on one; the
//! loans, their history links and the idempotency records on the other. On one thread this
//! tail took 2.0 s of a 16 s verify at a million loans (the registry's sort 0.4 s, the balances
//! 0.3, the loans 0.6, the links 0.2; BENCHMARKS-HISTORY.md, change 72), every other thread idle. Each
//! model is then freed on a thread of its own (0.4 s in all at a million loans), which the
//! report does not wait for; where no thread can be had, it is freed in place (the second half
//! itself panics then, which fails the verify as an internal error).
//!
//! Problems are listed in that order (journal rows with no place in the chain, the database's
//! guards (`store::schema`), name, registry,
//! balances, loans, links, requests), each with seq 0: they are not breaks in the journal.

use crate::collections::HashMap;

use super::Problems;
use crate::app::command::Outcome;
use crate::domain::loan::LoanState;
use crate::store::bulk::{RegistrySnapshot, StoredModels, UnchainedAnswer};

/// The read models rebuilt from the journal by stages 1 and 2.
pub(super) struct Rebuilt {
    pub registry: RegistrySnapshot,
    /// By account (stage 1).
    pub balances: HashMap<String, i128>,
    pub loans: HashMap<String, LoanState>,
    /// Each loan's transactions, ascending (stage 2).
    pub links: HashMap<String, Vec<u64>>,
    /// Each transaction's seq and request digest, by seq (stage 1).
    pub requests: Vec<(u64, u64)>,
}

/// The stored read models against the rebuilt ones.
pub(super) fn compare(ledger_id: &str, rebuilt: Rebuilt, stored: StoredModels) -> Problems {
    let Rebuilt { registry, balances, loans, links, requests } = rebuilt;
    let StoredModels {
        registry: stored_registry,
        balances: stored_balances,
        loans: stored_loans,
        links: stored_links,
        requests: stored_requests,
        unchained_answers,
        odd_seqs,
        schema,
        strays,
        unreadable_loans,
        unreadable_rows,
    } = stored;
    let (mut problems, second) = std::thread::scope(|s| {
        let second = s.spawn(move || {
            let mut problems = Problems::default();
            let mut problem = |text: String| problems.add(0, text);
            compare_loans(loans, &stored_loans, &unreadable_loans, &mut problem);
            compare_all_links(links, &stored_links.0, &mut problem);
            compare_requests(&requests, &stored_requests, &mut problem);
            free_later((stored_loans, stored_links, requests, stored_requests));
            problems
        });
        let mut problems = Problems::default();
        let mut problem = |text: String| problems.add(0, text);
        for odd in odd_seqs {
            problem(format!(
                "a journal row of ledger {ledger_id} has {odd} as its seq: no place in the chain"
            ));
        }
        for text in schema.into_iter().chain(strays).chain(unreadable_rows) {
            problem(text);
        }
        check_unchained_answers(&unchained_answers, &mut problem);
        compare_registry(ledger_id, registry, &stored_registry, &mut problem);
        compare_balances(balances, &stored_balances, &mut problem);
        free_later((stored_registry, stored_balances));
        (problems, second.join())
    });
    match second {
        Ok(second) => problems.append(second),
        // A panic of either half fails the verify as a whole (an internal error), not the ledger.
        Err(panic) => std::panic::resume_unwind(panic),
    }
    problems
}

/// Drops `t` on a thread of its own, or here when no thread can be had.
fn free_later<T: Send + 'static>(t: T) {
    // A thread that cannot be started gives its closure, and `t` with it, back to be dropped.
    let _ = std::thread::Builder::new().spawn(move || drop(t));
}

/// The ledger's name and its registry. The stored registry is read in the order of its keys'
/// bytes (`store::bulk`: PostgreSQL's key columns collate "C" since migration 0005); the
/// rebuilt one, in journal order, is put in that order.
fn compare_registry(
    ledger_id: &str,
    mut registry: RegistrySnapshot,
    stored: &RegistrySnapshot,
    problem: &mut impl FnMut(String),
) {
    registry.sort();
    if stored.ledger_name != registry.ledger_name {
        // (`None`: no row, or one that cannot be read, reported as such beside this.)
        let named =
            |name: &Option<String>| name.as_ref().map_or("none".into(), |n| format!("{n:?}"));
        problem(format!(
            "the name of ledger {ledger_id} differs from the journal (stored {}, journal {})",
            named(&stored.ledger_name),
            named(&registry.ledger_name)
        ));
    }
    for (what, same) in [
        ("banks", stored.banks == registry.banks),
        ("households", stored.households == registry.households),
        ("household statuses", stored.statuses == registry.statuses),
        ("policy versions", stored.policies == registry.policies),
        ("policy versions' seqs", stored.policy_seqs == registry.policy_seqs),
        ("subsidy claims", stored.claims == registry.claims),
        ("claimed loan-periods", stored.claim_periods == registry.claim_periods),
        ("risk fund", stored.risk_fund == registry.risk_fund),
        ("risk compensations", stored.compensations == registry.compensations),
        ("pools", stored.pools == registry.pools),
        ("pool members", stored.pool_members == registry.pool_members),
    ] {
        if !same {
            problem(format!("the {what} of ledger {ledger_id} differ from the journal"));
        }
    }
    compare_lpr(&registry.lpr, &stored.lpr, problem);
    free_later(registry);
}

/// The LPR table against its chain's entries (and the seeded ones), entry by entry: both
/// lists by date then tenor.
fn compare_lpr(
    rebuilt: &[(String, String, String)],
    stored: &[(String, String, String)],
    problem: &mut impl FnMut(String),
) {
    use std::cmp::Ordering;
    let (mut r, mut s) = (rebuilt.iter().peekable(), stored.iter().peekable());
    loop {
        let order = match (r.peek(), s.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => (&a.0, &a.1).cmp(&(&b.0, &b.1)),
        };
        match order {
            Ordering::Less => {
                if let Some((date, tenor, rate)) = r.next() {
                    problem(format!("LPR entry {date} {tenor}: missing, the journal gives {rate}"));
                }
            }
            Ordering::Greater => {
                if let Some((date, tenor, rate)) = s.next() {
                    problem(format!(
                        "LPR entry {date} {tenor} (rate {rate}) is not in the journal"
                    ));
                }
            }
            Ordering::Equal => {
                if let (Some((date, tenor, rebuilt)), Some((_, _, stored))) = (r.next(), s.next())
                    && rebuilt != stored
                {
                    problem(format!(
                        "LPR entry {date} {tenor}: stored rate {stored}, the journal gives {rebuilt}"
                    ));
                }
            }
        }
    }
}

/// Each stored balance takes its rebuilt one out of the map; what is left was never stored.
fn compare_balances(
    mut balances: HashMap<String, i128>,
    stored: &[(String, crate::domain::money::Fen)],
    problem: &mut impl FnMut(String),
) {
    for (account, stored) in stored {
        let rebuilt = balances.remove(account.as_str()).unwrap_or(0);
        if rebuilt != i128::from(stored.0) {
            problem(format!(
                "balance of {account}: stored {} fen, journal gives {rebuilt} fen",
                stored.0
            ));
        }
    }
    let mut unstored: Vec<(&String, &i128)> = balances.iter().filter(|(_, b)| **b != 0).collect();
    unstored.sort();
    for (account, rebuilt) in unstored {
        problem(format!("balance of {account}: missing, journal gives {rebuilt} fen"));
    }
    free_later(balances);
}

/// Each stored loan (by loan id) against its rebuilt state, taken out of the map; what is left
/// was never stored.
fn compare_loans(
    mut loans: HashMap<String, LoanState>,
    stored: &[LoanState],
    unreadable: &[(String, String)],
    problem: &mut impl FnMut(String),
) {
    for (loan_id, why) in unreadable {
        problem(format!("loan {loan_id}: its stored row cannot be read as a loan ({why})"));
        loans.remove(loan_id.as_str());
    }
    for stored in stored {
        match loans.remove(&stored.terms.loan_id) {
            None => problem(format!(
                "loan {} is stored but has no contract in the journal",
                stored.terms.loan_id
            )),
            Some(rebuilt) if rebuilt != *stored => problem(format!(
                "loan {}: stored state differs from the journal in its {} (stored {} outstanding {} fen, journal {} outstanding {} fen)",
                stored.terms.loan_id,
                loan_differences(stored, &rebuilt).join(", "),
                stored.status.as_str(),
                stored.principal_outstanding_fen.0,
                rebuilt.status.as_str(),
                rebuilt.principal_outstanding_fen.0
            )),
            Some(_) => {}
        }
    }
    let mut missing: Vec<&String> = loans.keys().collect();
    missing.sort();
    for id in missing {
        problem(format!("loan {id} is in the journal but missing from the read model"));
    }
    free_later(loans);
}

/// Each loan's stored links take its rebuilt ones out of the map; what is left was never
/// stored.
fn compare_all_links(
    mut links: HashMap<String, Vec<u64>>,
    stored: &[(String, Vec<i64>)],
    problem: &mut impl FnMut(String),
) {
    for (loan_id, stored) in stored {
        let rebuilt = links.remove(loan_id.as_str()).unwrap_or_default();
        compare_links(loan_id, stored, &rebuilt, problem);
    }
    let mut unlinked: Vec<(String, Vec<u64>)> = links.into_iter().collect();
    unlinked.sort_unstable();
    for (loan_id, rebuilt) in &unlinked {
        compare_links(loan_id, &[], rebuilt, problem);
    }
    free_later(unlinked);
}

/// Reports each seq in one of a loan's two lists of history links only, both ascending: `stored`
/// (`journal_loan`) and `rebuilt` (the transactions whose event touches the loan).
fn compare_links(loan_id: &str, stored: &[i64], rebuilt: &[u64], problem: &mut impl FnMut(String)) {
    // A list's end reads as a seq after every other (both kinds of seq fit in an i128).
    fn at<T: Copy + Into<i128>>(seqs: &[T], i: usize) -> i128 {
        seqs.get(i).map_or(i128::MAX, |&seq| seq.into())
    }
    let (mut i, mut j) = (0, 0);
    while i < stored.len() || j < rebuilt.len() {
        let (a, b) = (at(stored, i), at(rebuilt, j));
        if a == b {
            (i, j) = (i + 1, j + 1);
        } else if a < b {
            i += 1;
            problem(format!(
                "loan {loan_id}: its history lists seq {a}, which is not one of its transactions"
            ));
        } else {
            j += 1;
            problem(format!("loan {loan_id}: its history lacks seq {b}, one of its transactions"));
        }
    }
}

/// Reports each transaction in `journal` (seq, request digest) without an idempotency record of
/// its own request in `stored` (seq, request digest; both by seq), each stored record naming it
/// for another request, and each stored record naming a seq the journal does not have.
fn compare_requests(
    journal: &[(u64, u64)],
    stored: &[(i64, u64)],
    problem: &mut impl FnMut(String),
) {
    let mut stored = stored.iter().map(|&(seq, digest)| (i128::from(seq), digest)).peekable();
    let unjournaled =
        |seq: i128| format!("an idempotency record names seq {seq}, which is not in the journal");
    for &(seq, digest) in journal {
        let seq = i128::from(seq);
        let mut own = false;
        while let Some((at, other)) = stored.next_if(|&(at, _)| at <= seq) {
            if at < seq {
                problem(unjournaled(at));
            } else if other == digest && !own {
                own = true;
            } else {
                problem(format!("seq {seq}: an idempotency record of another request names it"));
            }
        }
        if !own {
            problem(format!(
                "seq {seq}: its request has no idempotency record: a retry would be written again"
            ));
        }
    }
    for (at, _) in stored {
        problem(unjournaled(at));
    }
}

/// Reports each answer stored under no ledger that is not of a write without a journal
/// transaction (a refusal, a settlement run or its summary, an LPR entry answered before the
/// LPR table had its chain). Such an answer is given to a retry of its request as stored, and
/// nothing is written: one naming a journal entry, stored there by hand, would tell a bank
/// that its repayment was recorded when it never was, and no chain's verify would see it.
/// Every ledger's verify reports them, as it does the strays.
fn check_unchained_answers(answers: &[UnchainedAnswer], problem: &mut impl FnMut(String)) {
    for UnchainedAnswer { scope, request_id, result_json } in answers {
        let stored =
            format!("the answer stored for request {request_id:?} of {scope} under no ledger");
        let outcome = match serde_json::from_str::<Outcome>(result_json) {
            Ok(outcome) => outcome,
            Err(e) => {
                problem(format!("{stored} cannot be read: {e}"));
                continue;
            }
        };
        match outcome {
            Outcome::Refused { .. }
            | Outcome::SettlementRun { .. }
            | Outcome::SettlementRunSummary { .. }
            | Outcome::Lpr { entry: None, .. } => {}
            other => {
                // Its kind as stored, the tag (worked out for a problem only).
                let kind = serde_json::to_value(&other)
                    .ok()
                    .and_then(|v| v.get("outcome").and_then(|k| k.as_str()).map(str::to_string));
                let kind = kind.unwrap_or_default();
                problem(format!(
                    "{stored} is a {kind} answer, given only with a journal transaction: a retry \
                     of that request would be answered with it and nothing written"
                ));
            }
        }
    }
}

/// The parts of a loan's state in which `stored` and `rebuilt` differ, named for the auditor.
fn loan_differences(stored: &LoanState, rebuilt: &LoanState) -> Vec<&'static str> {
    let parts: [(&'static str, bool); 10] = [
        ("terms", stored.terms != rebuilt.terms),
        ("status", stored.status != rebuilt.status),
        ("amount paid out", stored.disbursed_fen != rebuilt.disbursed_fen),
        (
            "principal outstanding",
            stored.principal_outstanding_fen != rebuilt.principal_outstanding_fen,
        ),
        ("principal repaid", stored.principal_repaid_fen != rebuilt.principal_repaid_fen),
        ("interest paid", stored.interest_paid_fen != rebuilt.interest_paid_fen),
        ("payout date", stored.disbursed_on != rebuilt.disbursed_on),
        ("last value date", stored.last_value_date != rebuilt.last_value_date),
        ("last seq", stored.last_seq != rebuilt.last_seq),
        ("servicing", stored.servicing != rebuilt.servicing),
    ];
    parts.into_iter().filter(|(_, differs)| *differs).map(|(part, _)| part).collect()
}

#[cfg(test)]
mod tests {
    use super::{compare_links, compare_lpr, compare_requests};

    /// Each entry in one list only, or at another rate, is reported once, by date then tenor.
    #[test]
    fn lpr_entries_that_differ_are_reported() {
        let e = |d: &str, t: &str, r: &str| (d.to_string(), t.to_string(), r.to_string());
        let lpr = |rebuilt: &[(String, String, String)], stored: &[(String, String, String)]| {
            let mut problems = Vec::new();
            compare_lpr(rebuilt, stored, &mut |text| problems.push(text));
            problems
        };
        let rebuilt = [
            e("2024-01-01", "1y", "0.03"),
            e("2024-01-01", "5y", "0.04"),
            e("2025-01-01", "1y", "0.02"),
        ];
        assert!(lpr(&rebuilt, &rebuilt).is_empty());
        let stored = [
            e("2023-01-01", "1y", "0.01"),
            e("2024-01-01", "5y", "0.041"),
            e("2025-01-01", "1y", "0.02"),
            e("2026-01-01", "5y", "0.05"),
        ];
        assert_eq!(
            lpr(&rebuilt, &stored),
            [
                "LPR entry 2023-01-01 1y (rate 0.01) is not in the journal",
                "LPR entry 2024-01-01 1y: missing, the journal gives 0.03",
                "LPR entry 2024-01-01 5y: stored rate 0.041, the journal gives 0.04",
                "LPR entry 2026-01-01 5y (rate 0.05) is not in the journal",
            ]
        );
    }

    fn compared(stored: &[i64], rebuilt: &[u64]) -> Vec<String> {
        let mut problems = Vec::new();
        compare_links("L", stored, rebuilt, &mut |text| problems.push(text));
        problems
    }

    /// Each seq in one list only is reported once, in seq order; the same lists, nothing.
    #[test]
    fn links_in_one_list_only_are_reported() {
        assert!(compared(&[1, 3, 5], &[1, 3, 5]).is_empty());
        assert!(compared(&[], &[]).is_empty());
        assert_eq!(
            compared(&[1, 3, 5, 9], &[1, 2, 5, 7]),
            [
                "loan L: its history lacks seq 2, one of its transactions",
                "loan L: its history lists seq 3, which is not one of its transactions",
                "loan L: its history lacks seq 7, one of its transactions",
                "loan L: its history lists seq 9, which is not one of its transactions",
            ]
        );
        // A negative seq (only a forged row can have one) is listed like any other.
        assert_eq!(
            compared(&[-1], &[4]),
            [
                "loan L: its history lists seq -1, which is not one of its transactions",
                "loan L: its history lacks seq 4, one of its transactions",
            ]
        );
    }

    fn requests(journal: &[(u64, u64)], stored: &[(i64, u64)]) -> Vec<String> {
        let mut problems = Vec::new();
        compare_requests(journal, stored, &mut |text| problems.push(text));
        problems
    }

    /// A transaction needs the record of its own request; every other record naming it, or
    /// naming no transaction, is reported, in seq order.
    #[test]
    fn idempotency_records_match_their_transactions() {
        let journal = [(1, 10), (2, 20), (3, 30)];
        assert!(requests(&journal, &[(1, 10), (2, 20), (3, 30)]).is_empty());
        let none = |seq| {
            format!(
                "seq {seq}: its request has no idempotency record: a retry would be written again"
            )
        };
        let other = |seq| format!("seq {seq}: an idempotency record of another request names it");
        let unjournaled =
            |seq| format!("an idempotency record names seq {seq}, which is not in the journal");
        assert_eq!(
            requests(&journal, &[(0, 5), (2, 20), (2, 20), (2, 99), (3, 10), (7, 70)]),
            [unjournaled(0), none(1), other(2), other(2), other(3), none(3), unjournaled(7)]
        );
        assert_eq!(requests(&[], &[(1, 10)]), [unjournaled(1)]);
        assert_eq!(requests(&journal[..1], &[]), [none(1)]);
    }
}
