//! Stage 1 of verify, on the journal scan's thread: the chain. For each transaction in order:
//! `seq` is dense, `prev_hash` is the previous transaction's hash, `hash` is recomputed from the
//! stored row and its postings, and the postings balance; account balances are summed from the
//! postings; each transaction's request key is kept as its digest, for the idempotency records'.
//! Each transaction then goes on to stage 2 ([`super::replay`]) in chunks.

use crate::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

use tokio::sync::oneshot::error::TryRecvError;

use super::Problems;
use super::replay::{Chunk, TxnText};
use crate::ledger::hash::{GENESIS, Hash, TxnContent, from_hex, is_hex_of};
use crate::ledger::posting::{Posting, Postings, add_up, unpack_into};
use crate::store::bulk::{request_digest, size, sized};
use crate::store::scan::{JournalVisitor, TxnRef};

/// Transactions handed to stage 2 at a time.
const CHUNK: usize = 1_024;

/// What stage 1 hands stage 2: the transactions in chunks, and among them, once it has come
/// (the scan does not wait for it), the number of loans stored.
pub(super) enum Handed {
    Loans(usize),
    /// Before the first transaction: the journal's reversals, each one's seq and the seq it
    /// reverses ([`crate::store::Db::reversals`]).
    Reversals(Vec<(u64, u64)>),
    Txns(Chunk),
}

pub(super) struct Chain {
    ledger_id: String,
    prev: Hash,
    expected_seq: u64,
    pub checked: u64,
    pub head_seq: u64,
    /// The stored hash of the last transaction.
    pub head_hash: String,
    /// Summed from the postings, by account (i128: a sum of stored i64 amounts cannot overflow
    /// it, whatever was stored).
    pub balances: HashMap<String, i128>,
    pub problems: Problems,
    /// Each transaction's seq and the [`request_digest`] of its request key (actor, request id)
    /// under `keys`, in seq order.
    pub requests: Vec<(u64, u64)>,
    keys: std::hash::RandomState,
    /// The canonical bytes of the transaction being hashed (kept to reuse its allocation).
    bytes: Vec<u8>,
    /// The postings of the transaction being checked (kept to reuse their allocations).
    postings: Vec<Posting>,
    chunk: Chunk,
    replay: Option<SyncSender<Handed>>,
    /// The chunks stage 2 has emptied, to be filled again.
    emptied: Receiver<Chunk>,
    /// Where the number of loans stored comes, until it has come.
    loans: Option<tokio::sync::oneshot::Receiver<i64>>,
    /// Set when the verify was dropped (its caller went away) or stage 2 is gone: the scan stops.
    stop: Arc<AtomicBool>,
}

impl Chain {
    pub fn new(
        ledger_id: &str,
        replay: SyncSender<Handed>,
        emptied: Receiver<Chunk>,
        stop: Arc<AtomicBool>,
        keys: std::hash::RandomState,
    ) -> Self {
        Chain {
            ledger_id: ledger_id.to_string(),
            prev: GENESIS,
            expected_seq: 1,
            checked: 0,
            head_seq: 0,
            head_hash: String::new(),
            balances: HashMap::default(),
            problems: Problems::default(),
            requests: Vec::new(),
            keys,
            bytes: Vec::with_capacity(4096),
            postings: Vec::new(),
            chunk: Chunk::with_capacity(CHUNK),
            replay: Some(replay),
            emptied,
            loans: None,
            stop,
        }
    }

    /// Sizes this stage's lists for the journal up to `head` (before the scan), and, once the
    /// number of loans comes on `loans`, its balances and stage 2's loans and links
    /// ([`size`]).
    pub fn expect(&mut self, head: i64, loans: tokio::sync::oneshot::Receiver<i64>) {
        self.requests = sized(size(head));
        self.loans = Some(loans);
    }

    /// Hands stage 2 the journal's reversals, before any transaction.
    pub fn reversals(&mut self, reversals: Vec<(u64, u64)>) {
        self.hand(Handed::Reversals(reversals));
    }

    /// Takes the number of loans if it has come (asked at each chunk: the scan does not wait
    /// for it).
    fn take_loans(&mut self) {
        let Some(count) = &mut self.loans else {
            return;
        };
        let loans = match count.try_recv() {
            Ok(loans) => size(loans),
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Closed) => 0,
        };
        self.loans = None;
        // Each loan has an account of its own at least (its principal, once disbursed).
        let _ = self.balances.try_reserve(loans.saturating_sub(self.balances.len()));
        self.hand(Handed::Loans(loans));
    }

    fn send(&mut self) {
        self.take_loans();
        if !self.chunk.is_empty() {
            let next = self.emptied.try_recv().unwrap_or_else(|_| Chunk::with_capacity(CHUNK));
            let chunk = std::mem::replace(&mut self.chunk, next);
            self.hand(Handed::Txns(chunk));
        }
    }

    fn hand(&mut self, handed: Handed) {
        if let Some(to) = &self.replay
            && to.send(handed).is_err()
        {
            // Stage 2 is gone (it can only have panicked; its join reports that): stop.
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

impl JournalVisitor for Chain {
    fn txn(&mut self, t: TxnRef<'_>) {
        let seq = u64::try_from(t.seq).unwrap_or_default();
        self.checked += 1;
        if seq != self.expected_seq {
            let expected = self.expected_seq;
            self.problems
                .add(expected, format!("seq {expected} is missing (next stored is {seq})"));
        }
        self.expected_seq = seq + 1;
        if let Some((column, what)) = t.mistyped {
            self.problems.add(seq, format!("seq {seq}: its {column} is stored as {what}"));
        }
        // Unreadable postings are reported, and checked as none (a transaction that moved money
        // then breaks the chain too). After the gap before this seq: the first problem added
        // names the first break.
        if let Err(e) = unpack_into(t.postings, &mut self.postings) {
            self.problems.add(seq, format!("seq {seq}: its postings cannot be read: {e}"));
        }
        if !is_hex_of(t.prev_hash, &self.prev) {
            self.problems.add(
                seq,
                format!(
                    "seq {seq}: prev_hash does not match the hash of seq {}",
                    seq.saturating_sub(1)
                ),
            );
        }
        let content = TxnContent {
            ledger_id: &self.ledger_id,
            seq,
            kind: t.kind,
            value_date: t.value_date,
            recorded_at_us: t.recorded_at_us,
            actor: t.actor,
            request_id: t.request_id,
            command_json: t.command_json,
            postings: &self.postings,
        };
        let hash = content.chain_hash_with(&self.prev, &mut self.bytes);
        // Continue the chain from the stored hash, so that one changed row is reported once and
        // the rest of the chain is still checked against itself (decoded only when it differs:
        // the recomputed hash is the stored one otherwise).
        self.prev = if is_hex_of(t.hash, &hash) {
            hash
        } else {
            self.problems.add(seq, format!("seq {seq}: stored hash differs from the recomputed hash: the row or its postings were changed"));
            from_hex(t.hash).unwrap_or(hash)
        };
        if let Err(e) = Postings::check(&self.postings) {
            self.problems.add(seq, format!("seq {seq}: {e}"));
        }
        add_up(&mut self.balances, &self.postings);
        self.requests.push((seq, request_digest(&self.keys, t.actor, t.request_id)));
        self.head_seq = seq;
        self.head_hash.clear();
        self.head_hash.push_str(t.hash);
        self.chunk.push(TxnText {
            seq,
            kind: t.kind,
            command_json: t.command_json,
            postings: t.postings,
            value_date: t.value_date,
        });
        if self.chunk.len() == CHUNK {
            self.send();
        }
    }

    /// Hands the last chunk to stage 2 and tells it that nothing more comes.
    fn end(&mut self) {
        // Every ledger's journal starts with its `ledger.created`: none at all is a break at 1
        // (a ledger whose rows were removed, or one that never was); the LPR table's chain with
        // its `lpr.chain_started`, written when the database is migrated.
        if self.checked == 0 {
            self.problems.add(1, "seq 1 is missing: the journal is empty".to_string());
        }
        self.send();
        self.replay = None;
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty journal breaks at seq 1: every ledger's starts with its `ledger.created`.
    #[test]
    fn an_empty_journal_breaks_at_seq_1() {
        let (to_replay, _chunks) = std::sync::mpsc::sync_channel(1);
        let (_, emptied) = std::sync::mpsc::channel();
        let mut chain = Chain::new(
            "L",
            to_replay,
            emptied,
            Arc::new(AtomicBool::new(false)),
            Default::default(),
        );
        chain.end();
        assert_eq!(chain.problems.first_break_seq, 1);
        assert_eq!(chain.problems.list, [(1, "seq 1 is missing: the journal is empty".into())]);
    }
}
