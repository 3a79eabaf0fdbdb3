//! Verification of a ledger: recompute its hash chain from the stored rows, check that every
//! transaction balances, rebuild the read models (loan states, account balances, the registry)
//! from the journal alone, and compare them with what is stored.
//!
//! Two stages run side by side on two threads:
//!
//! 1. [`chain`], on the journal scan's thread ([`crate::store::scan`]): seq, hashes, balanced
//!    postings, balances by account;
//! 2. [`replay`], on a thread of its own: every event decoded and applied through the domain
//!    rules, every loan event's postings recomputed.
//!
//! The stored read models are read meanwhile in one snapshot, and the journal is scanned up to
//! the head in that snapshot ([`crate::store::Db::stored_models`]): the comparison is of one
//! journal prefix with its own read models, also while writes go on (a transaction committed
//! after that head is neither scanned nor in the stored models read).
//!
//! Then the rebuilt read models are compared with the stored ones: the registry, the balances,
//! the loans, and the loan history links (`journal_loan`, which loan histories are read through:
//! a link added, changed or removed would show a bank a transaction of another loan, or hide
//! one of its own), and the idempotency records' keys (each transaction's request must have the
//! record that names its seq: without it a retry of the request would be written again; a
//! record of another request naming it would answer that request's retry with this
//! transaction). Each stage lists its own
//! problems; the report has them in `seq` order (stage 1's first on the same `seq`), then the
//! read models' (seq 0).

mod chain;
mod replay;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinHandle;

use super::error::AppError;
use crate::store::bulk::StoredModels;
use crate::store::scan::JournalVisitor;
use crate::store::{Db, StoreError};

/// Problems listed in one report, at most; the first break is what matters, the rest are context.
pub const PROBLEMS_MAX: usize = 100;

/// Chunks of transactions in flight between the two stages.
const CHUNKS_IN_FLIGHT: usize = 4;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub ok: bool,
    pub transactions_checked: u64,
    pub head_seq: u64,
    pub head_hash: String,
    /// The first seq at which the journal itself is wrong (a missing seq, a hash or prev_hash
    /// that does not match, postings that do not balance, stray posting rows, an event that does
    /// not replay); 0 when there is none. Read-model differences are in `problems` only.
    pub first_break_seq: u64,
    pub problems: Vec<String>,
}

/// One stage's problems: the first [`PROBLEMS_MAX`] with their seq (0: not tied to one), and
/// the first seq at which anything was wrong.
#[derive(Debug, Default)]
struct Problems {
    list: Vec<(u64, String)>,
    first_break_seq: u64,
    /// All problems found, listed or not.
    total: u64,
}

impl Problems {
    fn add(&mut self, seq: u64, text: String) {
        self.total += 1;
        if self.first_break_seq == 0 && seq > 0 {
            self.first_break_seq = seq;
        }
        if self.list.len() < PROBLEMS_MAX {
            self.list.push((seq, text));
        }
    }

    /// Both stages' problems in seq order (this stage's first on the same seq).
    fn merge(mut self, other: Problems) -> Problems {
        self.first_break_seq = match (self.first_break_seq, other.first_break_seq) {
            (0, b) | (b, 0) => b,
            (a, b) => a.min(b),
        };
        self.total += other.total;
        self.list.extend(other.list);
        self.list.sort_by_key(|(seq, _)| *seq);
        self.list.truncate(PROBLEMS_MAX);
        self
    }
}

/// Sets the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Aborts the tasks when dropped (a finished task is not affected).
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// `read(db, ledger_id)` as a task of its own.
fn spawn_read<T, F, Fut>(db: &Db, ledger_id: &str, read: F) -> JoinHandle<Result<T, StoreError>>
where
    T: Send + 'static,
    F: FnOnce(Db, String) -> Fut,
    Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    tokio::spawn(read(db.clone(), ledger_id.to_string()))
}

/// A read task's result (a task that panicked is an internal error).
async fn joined<T>(task: JoinHandle<Result<T, StoreError>>) -> Result<T, AppError> {
    match task.await {
        Ok(result) => Ok(result?),
        Err(e) => Err(AppError::Internal(format!("a read of verify failed: {e}"))),
    }
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

#[tracing::instrument(skip(db))]
pub async fn verify_ledger(db: &Db, ledger_id: &str) -> Result<VerifyReport, AppError> {
    // Both stages run on threads of their own; should this future be dropped (the caller went
    // away), the guard tells them to stop instead of running to the end unseen.
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let (to_replay, chunks) = std::sync::mpsc::sync_channel(CHUNKS_IN_FLIGHT);
    let replay_stop = stop.clone();
    let replaying = tokio::task::spawn_blocking(move || {
        let mut replay = replay::Replay::default();
        for chunk in chunks {
            if replay_stop.load(Ordering::Relaxed) {
                break;
            }
            for t in chunk {
                replay.apply(t);
            }
        }
        replay
    });
    // The journal scan and the reads of the stored read models run as tasks of their own, so
    // that the runtime's workers take them in parallel (joined in this task, the four took
    // turns on one worker, which received every row of PostgreSQL's copies) and so that their
    // many wake-ups do not each enter this function's tracing span. Should the scan fail, the
    // chain (and with it the channel) is dropped and stage 2 ends; should this future be
    // dropped, the tasks are aborted.
    // The stored read models are read in one snapshot, whose journal head the scan stops at:
    // the two then describe the same journal while writes go on.
    // The request keys are compared as digests keyed afresh for this verify.
    let keys = std::hash::RandomState::new();
    let chain = chain::Chain::new(ledger_id, to_replay, stop, keys.clone());
    let (head_tx, head) = tokio::sync::oneshot::channel();
    let stored =
        spawn_read(
            db,
            ledger_id,
            |db, id| async move { db.stored_models(&id, head_tx, keys).await },
        );
    let scan = spawn_read(db, ledger_id, |db, id| async move {
        match head.await {
            Ok(through) => db.scan_journal_through(&id, through, chain).await,
            // The read of the stored models failed before the head: its error is reported.
            Err(_) => {
                let mut chain = chain;
                chain.end();
                Ok(chain)
            }
        }
    });
    let _abort_on_drop = AbortOnDrop(vec![scan.abort_handle(), stored.abort_handle()]);
    let (scanned, stored) = tokio::join!(joined(scan), joined(stored));
    let StoredModels {
        registry: stored,
        balances: stored_balances,
        loans: stored_loans,
        links: stored_links,
        requests: stored_requests,
    } = stored?;
    let mut chain = scanned?;
    let replay::Replay { mut loans, mut registry, mut links, problems: replay_problems } =
        replaying.await.map_err(|e| AppError::Internal(format!("journal replay failed: {e}")))?;
    // The journal's problems in seq order, then the read models' (seq 0: not a break, listed
    // after them).
    let mut problems = std::mem::take(&mut chain.problems).merge(replay_problems);
    let mut balances = chain.balances;
    let mut problem = |text: String| problems.add(0, text);

    // Read models against the journal. The stored registry is read in the order of its keys'
    // bytes (`store::bulk`: PostgreSQL's key columns collate "C" since migration 0005); the
    // rebuilt one, in journal order, is put in that order.
    registry.sort();
    if stored.ledger_name != registry.ledger_name {
        problem(format!(
            "the name of ledger {ledger_id} differs from the journal (stored {:?}, journal {:?})",
            stored.ledger_name.as_deref().unwrap_or_default(),
            registry.ledger_name.as_deref().unwrap_or_default()
        ));
    }
    for (what, same) in [
        ("banks", stored.banks == registry.banks),
        ("households", stored.households == registry.households),
        ("household statuses", stored.statuses == registry.statuses),
        ("policy versions", stored.policies == registry.policies),
    ] {
        if !same {
            problem(format!("the {what} of ledger {ledger_id} differ from the journal"));
        }
    }

    // Each stored figure takes its rebuilt one out of the map; what is left was never stored.
    for (account, stored) in &stored_balances {
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
    for stored in &stored_loans {
        match loans.remove(&stored.terms.loan_id) {
            None => problem(format!(
                "loan {} is stored but has no contract in the journal",
                stored.terms.loan_id
            )),
            Some(rebuilt) if rebuilt != *stored => problem(format!(
                "loan {}: stored state differs from the journal (stored {} outstanding {} fen, journal {} outstanding {} fen)",
                stored.terms.loan_id,
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
    // Each loan's stored links take its rebuilt ones out of the map; what is left was never
    // stored.
    for (loan_id, stored) in &stored_links.0 {
        let rebuilt = links.remove(loan_id.as_str()).unwrap_or_default();
        compare_links(loan_id, stored, &rebuilt, &mut problem);
    }
    let mut unlinked: Vec<(String, Vec<u64>)> = links.into_iter().collect();
    unlinked.sort_unstable();
    for (loan_id, rebuilt) in &unlinked {
        compare_links(loan_id, &[], rebuilt, &mut problem);
    }
    compare_requests(&chain.requests, &stored_requests, &mut problem);
    let unlisted = problems.total - problems.list.len() as u64;
    let mut listed: Vec<String> = problems.list.into_iter().map(|(_, text)| text).collect();
    if unlisted > 0 {
        listed.push(format!("... and {unlisted} more problems"));
    }
    Ok(VerifyReport {
        ok: listed.is_empty(),
        transactions_checked: chain.checked,
        head_seq: chain.head_seq,
        head_hash: std::mem::take(&mut chain.head_hash),
        first_break_seq: problems.first_break_seq,
        problems: listed,
    })
}

#[cfg(test)]
mod tests {
    use super::{compare_links, compare_requests};

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
