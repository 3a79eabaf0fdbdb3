//! Verification of a ledger: recompute its hash chain from the stored rows, check that every
//! transaction balances, rebuild the read models (loan states, account balances, the registry,
//! the loan history links, the idempotency records' keys) from the journal alone, and compare
//! them with what is stored.
//!
//! Two stages run side by side on two threads (and, when asked, the recheck of the stored
//! answers beside them, below):
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
//! Then, both stages done, the rebuilt read models are compared with the stored ones
//! ([`compare`], on two threads): the registry, the balances, the loans, and the loan history links (`journal_loan`, which loan histories are read through:
//! a link added, changed or removed would show a bank a transaction of another loan, or hide
//! one of its own), and the idempotency records' keys (each transaction's request must have the
//! record that names its seq: without it a retry of the request would be written again; a
//! record of another request naming it would answer that request's retry with this
//! transaction). The LPR table's chain ([`crate::domain::lpr::LPR_LEDGER`]) is verified alike,
//! its read model the LPR table: rebuilt from its start (`lpr.chain_started`, which must hold the
//! seeded entries as seeded) and its `lpr.set` events and compared entry by entry. Each stage lists its own
//! problems; the report has them in `seq` order (stage 1's first on the same `seq`), then the
//! read models' (seq 0).
//!
//! Two deeper checks are made when asked ([`VerifyOptions`]): every subsidy claim's lines
//! worked out again after both stages ([`claims`]), and every transaction's stored answer
//! checked against the journal beside the replay, which hands on what each transaction
//! touched ([`answers`]). Their problems follow the read models'.

mod answers;
mod chain;
mod claims;
mod compare;
mod replay;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinHandle;

use super::StopOnDrop;
use super::error::AppError;
use crate::store::scan::JournalVisitor;
use crate::store::{Db, StoreError};

/// Problems listed in one report, at most; the first break is what matters, the rest are context.
pub const PROBLEMS_MAX: usize = 100;

/// Chunks of transactions in flight between the two stages.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Batches of what the replay touched in flight to the recheck of the stored answers.
const TOUCHED_IN_FLIGHT: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub ok: bool,
    pub transactions_checked: u64,
    pub head_seq: u64,
    pub head_hash: String,
    /// The first seq at which the journal itself is wrong (a missing seq, a hash or prev_hash
    /// that does not match, postings that do not balance or cannot be read, an event that does
    /// not replay); 0 when there is none. Read-model differences are in `problems` only.
    pub first_break_seq: u64,
    pub problems: Vec<String>,
    /// The claim lines worked out again ([`VerifyOptions::recheck_claims`]; 0 without it).
    pub claim_lines_rechecked: u64,
    /// The stored answers checked ([`VerifyOptions::recheck_answers`]; 0 without it).
    pub answers_rechecked: u64,
}

/// What a verify does beyond the journal and the read models.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Work every subsidy claim's lines out again against the registers they were checked
    /// against at submission ([`claims`]): an auditor's deeper check, a register a line.
    pub recheck_claims: bool,
    /// Check every transaction's stored answer, which a retry of its request is given, against
    /// the journal ([`answers`]).
    pub recheck_answers: bool,
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

    /// Appends `other`'s problems after this one's, under the one cap (for problems with no seq,
    /// which go after the journal's in any order: `first_break_seq` is this one's unless it has
    /// none).
    fn append(&mut self, other: Problems) {
        self.total += other.total;
        let room = PROBLEMS_MAX.saturating_sub(self.list.len());
        self.list.extend(other.list.into_iter().take(room));
        if self.first_break_seq == 0 {
            self.first_break_seq = other.first_break_seq;
        }
    }

    /// The report's list: the groups' problems (the journal's, then the read models', the
    /// claims' and the answers'), each group's in its order, at most [`PROBLEMS_MAX`] in all
    /// and shared out a problem at a time in turn, so that each group with problems has some
    /// listed (since 2026-12-07: the journal's came first under the one cap, and a hundred of
    /// them left a read model's altered row counted but unlisted); then how many were not
    /// listed.
    fn listed<const N: usize>(groups: [Problems; N]) -> Vec<String> {
        let mut quota = [0usize; N];
        let mut left = PROBLEMS_MAX;
        while left > 0 {
            let mut gave = false;
            for (q, g) in quota.iter_mut().zip(&groups) {
                if left > 0 && *q < g.list.len() {
                    *q += 1;
                    left -= 1;
                    gave = true;
                }
            }
            if !gave {
                break;
            }
        }
        let total: u64 = groups.iter().map(|g| g.total).sum();
        let mut listed: Vec<String> = groups
            .into_iter()
            .zip(quota)
            .flat_map(|(g, q)| g.list.into_iter().take(q).map(|(_, text)| text))
            .collect();
        let unlisted = total - listed.len() as u64;
        if unlisted > 0 {
            listed.push(format!("... and {unlisted} more problems"));
        }
        listed
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

pub async fn verify_ledger(db: &Db, ledger_id: &str) -> Result<VerifyReport, AppError> {
    verify_ledger_with(db, ledger_id, VerifyOptions::default()).await
}

#[tracing::instrument(skip(db))]
pub async fn verify_ledger_with(
    db: &Db,
    ledger_id: &str,
    options: VerifyOptions,
) -> Result<VerifyReport, AppError> {
    // Both stages run on threads of their own; should this future be dropped (the caller went
    // away), the guard tells them to stop instead of running to the end unseen.
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let (to_replay, chunks) = std::sync::mpsc::sync_channel(CHUNKS_IN_FLIGHT);
    let (to_refill, emptied) = std::sync::mpsc::channel();
    let replay_stop = stop.clone();
    // Asked, the stored answers are rechecked beside the replay, in step with what it touched
    // (`answers`): it waits while the recheck is that many batches behind.
    let (touching, touched) = match options.recheck_answers {
        true => {
            let (touching, touched) = answers::Touching::channel(TOUCHED_IN_FLIGHT);
            (Some(touching), Some(touched))
        }
        false => (None, None),
    };
    let mut replay = replay::Replay::of(ledger_id).touching(touching);
    let replaying = tokio::task::spawn_blocking(move || {
        for handed in chunks {
            if replay_stop.load(Ordering::Relaxed) {
                break;
            }
            match handed {
                chain::Handed::Loans(loans) => replay.expect_loans(loans),
                chain::Handed::Reversals(reversals) => replay.expect_reversals(reversals),
                chain::Handed::Txns(mut chunk) => {
                    for t in chunk.iter() {
                        replay.apply(t);
                    }
                    chunk.clear();
                    // Stage 1 may be done and gone: the chunk is freed here then.
                    let _ = to_refill.send(chunk);
                }
            }
        }
        replay.finish();
        replay
    });
    // The journal scan and the reads of the stored read models run as tasks of their own, so
    // that the runtime's workers take them in parallel (joined in this task, the four took
    // turns on one worker, which received every row of PostgreSQL's copies) and so that their
    // many wake-ups do not each enter this function's tracing span. Should the scan fail, the
    // chain (and with it the channel) is dropped and stage 2 ends; should this future be
    // dropped, the tasks are aborted.
    // The stored read models are read in one snapshot, whose journal head the scan stops at:
    // the two then describe the same journal while writes go on. After the head comes the
    // number of loans, which sizes what both stages fill (the scan does not wait for it).
    // The request keys are compared as digests keyed afresh for this verify.
    let keys = std::hash::RandomState::new();
    let chain = chain::Chain::new(ledger_id, to_replay, emptied, stop, keys.clone());
    let (head_tx, head) = tokio::sync::oneshot::channel();
    let (answers_head_tx, answers_head) = tokio::sync::oneshot::channel();
    let (loans_tx, loans) = tokio::sync::oneshot::channel();
    let stored = spawn_read(db, ledger_id, |db, id| async move {
        db.stored_models(&id, head_tx, loans_tx, keys).await
    });
    let scan = spawn_read(db, ledger_id, |db, id| async move {
        match head.await {
            Ok(through) => {
                // (Not asked for the answers' recheck, nobody listens.)
                let _ = answers_head_tx.send(through);
                let mut chain = chain;
                chain.expect(through, loans);
                let through_seq = u64::try_from(through).unwrap_or(0);
                chain.reversals(db.reversals(&id, through_seq).await?);
                db.scan_journal_through(&id, through, chain).await
            }
            // The read of the stored models failed before the head: its error is reported.
            Err(_) => {
                let mut chain = chain;
                chain.end();
                Ok(chain)
            }
        }
    });
    let answering = touched.map(|touched| {
        tokio::spawn(answers::recheck(db.clone(), ledger_id.to_string(), answers_head, touched))
    });
    let mut aborted = vec![scan.abort_handle(), stored.abort_handle()];
    aborted.extend(answering.as_ref().map(JoinHandle::abort_handle));
    let _abort_on_drop = AbortOnDrop(aborted);
    let (scanned, stored) = tokio::join!(joined(scan), joined(stored));
    let stored = stored?;
    let mut chain = scanned?;
    let replay::Replay {
        loans,
        mut registry,
        links,
        problems: replay_problems,
        claims,
        fund,
        compensations,
        pools,
        pool_of_loan,
        ..
    } = replaying.await.map_err(|e| AppError::Internal(format!("journal replay failed: {e}")))?;
    // The journal's problems in seq order, then the read models' (seq 0: not a break, listed
    // after them), then the claims' lines worked out again and the stored answers rechecked
    // (seq 0 too: the journal holds).
    let problems = std::mem::take(&mut chain.problems).merge(replay_problems);
    let rechecked = if options.recheck_claims {
        claims::recheck(db, &claims).await?
    } else {
        claims::Rechecked::default()
    };
    let answered = match answering {
        Some(task) => task
            .await
            .map_err(|e| AppError::Internal(format!("the answers' recheck failed: {e}")))??,
        None => answers::Rechecked::default(),
    };
    replay::claim_rows(&mut registry, claims);
    replay::fund_rows(&mut registry, fund, compensations);
    replay::pool_rows(&mut registry, pools, pool_of_loan);
    let rebuilt = compare::Rebuilt {
        registry,
        balances: std::mem::take(&mut chain.balances),
        loans,
        links,
        requests: std::mem::take(&mut chain.requests),
    };
    let ledger = ledger_id.to_string();
    let models = tokio::task::spawn_blocking(move || compare::compare(&ledger, rebuilt, stored))
        .await
        .map_err(|e| AppError::Internal(format!("comparing the read models failed: {e}")))?;
    let first_break_seq = problems.first_break_seq;
    let listed = Problems::listed([problems, models, rechecked.problems, answered.problems]);
    Ok(VerifyReport {
        ok: listed.is_empty(),
        transactions_checked: chain.checked,
        head_seq: chain.head_seq,
        head_hash: std::mem::take(&mut chain.head_hash),
        first_break_seq,
        problems: listed,
        claim_lines_rechecked: rechecked.lines,
        answers_rechecked: answered.answers,
    })
}

#[cfg(test)]
mod tests {
    use super::{PROBLEMS_MAX, Problems};

    /// Appended problems follow the ones there, all under one cap, all counted; the first break
    /// stays the journal's.
    #[test]
    fn appended_problems_share_the_cap() {
        let mut journal = Problems::default();
        journal.add(7, "seq 7".into());
        let mut models = Problems::default();
        for i in 0..PROBLEMS_MAX {
            models.add(0, format!("model {i}"));
        }
        journal.append(models);
        assert_eq!((journal.list.len(), journal.total), (PROBLEMS_MAX, PROBLEMS_MAX as u64 + 1));
        assert_eq!(journal.list[0], (7, "seq 7".to_string()));
        assert_eq!(journal.list[1], (0, "model 0".to_string()));
        assert_eq!(journal.first_break_seq, 7);
        let mut none = Problems::default();
        none.append(journal);
        assert_eq!(none.first_break_seq, 7);
    }

    /// The report's list shares the cap between the groups: 150 journal problems do not leave
    /// a read model's one unlisted; every problem is counted.
    #[test]
    fn every_group_with_problems_is_listed() {
        let mut journal = Problems::default();
        for seq in 1..=150 {
            journal.add(seq, format!("seq {seq}"));
        }
        let mut models = Problems::default();
        models.add(0, "balance of bank/B1/cash".into());
        let (claims, answers) = (Problems::default(), Problems::default());
        let listed = Problems::listed([journal, models, claims, answers]);
        assert_eq!(listed.len(), PROBLEMS_MAX + 1);
        assert_eq!(listed[0], "seq 1");
        assert_eq!(listed[PROBLEMS_MAX - 2], "seq 99");
        assert_eq!(listed[PROBLEMS_MAX - 1], "balance of bank/B1/cash");
        assert_eq!(listed[PROBLEMS_MAX], "... and 51 more problems");
        // Under the cap, all of them, in group order, and no count line.
        let mut few = Problems::default();
        few.add(3, "seq 3".into());
        let mut model = Problems::default();
        model.add(0, "loan L".into());
        let listed = Problems::listed([few, model]);
        assert_eq!(listed, ["seq 3", "loan L"]);
        assert!(Problems::listed([Problems::default()]).is_empty());
    }
}
