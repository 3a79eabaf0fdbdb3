//! The start of the LPR table's chain ([`crate::domain::lpr::LPR_LEDGER`]), written when the
//! database is migrated ([`Db::migrate`]): while the chain has no transaction, one
//! `lpr.chain_started` is appended as its seq 1, holding the table as it stands (the seeded
//! entries; on a database older than the chain, the entries set before it too). From then on
//! each `SetLpr` appends an `lpr.set` through the writer, and verify rebuilds the table from
//! the chain alone.
//!
//! Written once: the chain is append-only, so a later migration finds it started and writes
//! nothing, and a row slipped into the table afterwards is never taken into it. Should two
//! processes migrate at once, the second's seq 1 is refused by the journal's primary key, and
//! the second finds the chain started by the first.

use sha2::Digest;

use super::write::{Staged, StagedTxn, StoredAnswer};
use super::{Db, StoreError};
use crate::domain::event::JournalEvent;
use crate::domain::lpr::LPR_LEDGER;
use crate::ledger::hash::{GENESIS, TxnContent, to_hex};
use crate::store::rows::JournalRow;

/// The chain's first transaction's actor and request id (a migration, not a caller's request:
/// no principal has this name, so no call finds its idempotency record).
pub const STARTED_BY: &str = "system:migration";
pub const STARTED_REQUEST: &str = "lpr-chain-started";

impl Db {
    /// Appends the LPR table's `lpr.chain_started` unless the chain has begun.
    pub(super) async fn start_lpr_chain(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if tx.head(LPR_LEDGER).await?.is_some() {
            return tx.rollback().await;
        }
        let entries = tx.lpr().await?;
        let event = JournalEvent::LprChainStarted { entries };
        let now = chrono::Utc::now();
        let value_date = crate::domain::date::format_date(now.date_naive());
        let command_json = event.to_json();
        let content = TxnContent {
            ledger_id: LPR_LEDGER,
            seq: 1,
            kind: event.kind(),
            value_date: &value_date,
            recorded_at_us: now.timestamp_micros(),
            actor: STARTED_BY,
            request_id: STARTED_REQUEST,
            command_json: &command_json,
            postings: &[],
        };
        let (hash, recorded_at_us) =
            (to_hex(&content.chain_hash(&GENESIS)), content.recorded_at_us);
        let fingerprint = to_hex(&sha2::Sha256::digest(command_json.as_bytes()).into());
        let staged = Staged {
            txns: vec![StagedTxn {
                row: JournalRow {
                    ledger_id: LPR_LEDGER.to_string(),
                    seq: 1,
                    kind: event.kind().to_string(),
                    value_date: value_date.clone(),
                    recorded_at_us,
                    actor: STARTED_BY.to_string(),
                    request_id: STARTED_REQUEST.to_string(),
                    command_json: command_json.clone(),
                    prev_hash: to_hex(&GENESIS),
                    hash,
                    postings: crate::ledger::posting::pack(&[]),
                },
                loan_ids: Vec::new(),
                idempotency: StoredAnswer { fingerprint, result_json: "{}".to_string() },
            }],
            ..Staged::default()
        };
        match tx.commit_with(&staged).await {
            Ok(()) => Ok(()),
            // Another process started it meanwhile (its seq 1 refused this one's): started.
            Err(e) => match self.begin_write().await?.head_then_rollback(LPR_LEDGER).await? {
                Some(_) => Ok(()),
                None => Err(e),
            },
        }
    }
}
