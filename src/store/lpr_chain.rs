//! The start of the LPR table's chain ([`crate::domain::lpr::LPR_LEDGER`]), written when the
//! database is migrated ([`Db::migrate`]): while the chain has no transaction, one
//! `lpr.chain_started` is appended as its seq 1, holding the table as the service made it: the
//! seeded entries as seeded and, on a database older than the chain, the entries an earlier
//! build's `SetLpr` set and answered (its answer is kept under no ledger and seq 0). Not read
//! from the table: a row inserted or changed there by hand stays outside the chain, for verify
//! to report. From then on
//! each `SetLpr` appends an `lpr.set` through the writer, and verify rebuilds the table from
//! the chain alone.
//!
//! The name is the chain's alone: a database in which a region's ledger is called `lpr` is
//! refused before any migration is recorded ([`Db::check_lpr_name_free`]).
//!
//! Written once: the chain is append-only, so a later migration finds it started and writes
//! nothing, and a row slipped into the table afterwards is never taken into it. Should two
//! processes migrate at once, the second's seq 1 is refused by the journal's primary key, and
//! the second finds the chain started by the first.

use sha2::Digest;

use super::write::{Staged, StagedTxn, StoredAnswer};
use super::{Db, StoreError};
use crate::domain::date::format_date;
use crate::domain::event::JournalEvent;
use crate::domain::lpr::{LPR_LEDGER, LprEntry, TenorBucket, seeded_entries};
use crate::domain::rate::AnnualRate;
use crate::ledger::hash::{GENESIS, TxnContent, to_hex};
use crate::store::rows::JournalRow;

/// The chain's first transaction's actor and request id (a migration, not a caller's request:
/// no principal has this name, so no call finds its idempotency record).
pub const STARTED_BY: &str = "system:migration";
pub const STARTED_REQUEST: &str = "lpr-chain-started";

/// An earlier build's stored answer to `SetLpr` (`Outcome::Lpr`, under no ledger and seq 0),
/// as much of it as names the entry.
#[derive(serde::Deserialize)]
struct AnsweredBefore {
    outcome: String,
    effective_from: crate::domain::date::BusinessDate,
    tenor: TenorBucket,
    rate: AnnualRate,
}

/// The answers an earlier build's `SetLpr` recorded, outside any ledger (among settlement runs'
/// and refusals), as text whatever was stored.
const ANSWERS_BEFORE_SQL: &str = "select cast(result_json as text) from idempotency \
     where ledger_id = '' and seq = 0 and cast(result_json as text) like '%\"outcome\":\"lpr\"%'";

impl Db {
    /// Refuses a database in which a region's ledger is called `lpr`, the name this build
    /// gives the LPR table's chain ([`crate::domain::lpr::LPR_LEDGER`]): its ledger row, or a
    /// journal row there of another kind than `lpr.set`. Served, that region's books would be
    /// read as reference data and its chain mixed with the LPR entries. A database without
    /// those tables yet (new) is free; should the read fail otherwise, the migrations that
    /// follow meet the same failure and report it.
    pub(super) async fn check_lpr_name_free(&self) -> Result<(), StoreError> {
        const SQL: &str = "select count(*) from (select 1 from ledger where ledger_id = 'lpr' \
                           union all select 1 from journal_txn where ledger_id = 'lpr' \
                           and kind not in ('lpr.chain_started', 'lpr.set')) x";
        let taken: Result<i64, sqlx::Error> =
            crate::on_pool!(self, p => sqlx::query_scalar(SQL).fetch_one(p).await);
        if taken.is_ok_and(|taken| taken > 0) {
            return Err(StoreError::Corrupt(
                "a ledger called lpr is stored, and this build reserves the name for the LPR \
                 table's chain: serve it with the build that created it"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Appends the LPR table's `lpr.chain_started` unless the chain has begun (looked up first
    /// through the readers, so that a start on a database whose chain has begun takes no lock).
    pub(super) async fn start_lpr_chain(&self) -> Result<(), StoreError> {
        const BEGUN: &str =
            "select count(*) from (select 1 from journal_txn where ledger_id = 'lpr' limit 1) x";
        let begun: i64 = crate::on_pool!(self, p => sqlx::query_scalar(BEGUN).fetch_one(p).await?);
        if begun > 0 {
            return Ok(());
        }
        let mut tx = match self.begin_write().await {
            Ok(tx) => tx,
            // Another server holds the writer claim: started on the same database at the same
            // time, it began the chain as it migrated (or will: it migrates before it writes).
            Err(StoreError::Claimed(why)) => {
                let begun: i64 =
                    crate::on_pool!(self, p => sqlx::query_scalar(BEGUN).fetch_one(p).await?);
                return if begun > 0 { Ok(()) } else { Err(StoreError::Claimed(why)) };
            }
            Err(e) => return Err(e),
        };
        if tx.head(LPR_LEDGER).await?.is_some() {
            return tx.rollback().await;
        }
        // The seeded entries as seeded, and those an earlier build's SetLpr answered, by date
        // then tenor: not the table's rows, so that a row inserted or changed by hand stays
        // outside the chain, for verify to report (and the table to be mended).
        let mut entries = seeded_entries();
        for json in tx.scalars(ANSWERS_BEFORE_SQL).await? {
            let Ok(a) = serde_json::from_str::<AnsweredBefore>(&json) else { continue };
            let entry =
                LprEntry { effective_from: a.effective_from, bucket: a.tenor, rate: a.rate };
            let key = |e: &LprEntry| (e.effective_from, e.bucket.as_str());
            if a.outcome == "lpr" && !entries.iter().any(|e| key(e) == key(&entry)) {
                entries.push(entry);
            }
        }
        entries.sort_by_key(|e| (e.effective_from, e.bucket.as_str()));
        let event = JournalEvent::LprChainStarted { entries };
        let now = chrono::Utc::now();
        let value_date = format_date(now.date_naive());
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
            // Otherwise, or should the look fail, the commit's own error.
            Err(e) => match self.begin_write().await {
                Ok(tx) => match tx.head_then_rollback(LPR_LEDGER).await {
                    Ok(Some(_)) => Ok(()),
                    _ => Err(e),
                },
                Err(_) => Err(e),
            },
        }
    }
}
