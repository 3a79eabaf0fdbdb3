//! AuditService: loan histories, the journal, verification, balances as of a date, signed
//! checkpoints and their proofs ([`crate::app::checkpoints`]).

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::journal_to_pb;
use super::error::status;
use super::pb::audit_service_server::AuditService;
use super::{Api, parse, pb};
use crate::app::balances::balances_as_of;
use crate::app::checkpoints;
use crate::app::verify::{VerifyOptions, verify_ledger_with};
use crate::ledger::hash::to_hex;

/// Balances a `GetBalances` message carries at most.
pub const BALANCES_CHUNK: usize = 1_000;

/// Transactions per database read while streaming the journal.
pub const JOURNAL_PAGE_TXNS: u32 = 1_000;

/// The largest seq (a positive 64-bit signed integer), and so the largest tree size.
const SEQ_MAX: u64 = crate::ledger::merkle::SIZE_MAX;

/// Messages buffered per stream: the reader stays at most this far ahead of a slow client.
const STREAM_BUFFER: usize = 256;

type TxnStream = ReceiverStream<Result<pb::JournalTransaction, Status>>;

/// A server stream fed by `produce` on a task of its own, which sends each message (or the
/// error that ends the stream) and returns when done or when the client has gone (a send
/// fails). Should that task panic, the stream ends with INTERNAL, not as if the answer ended
/// there: a reader taking a cut stream for the whole answer would miss what came after the
/// cut. `what` names the answer in the log.
pub fn spawned_stream<T, F, Fut>(what: String, produce: F) -> ReceiverStream<Result<T, Status>>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let on_panic = tx.clone();
    let producing = tokio::spawn(produce(tx));
    tokio::spawn(async move {
        if let Err(e) = producing.await
            && e.is_panic()
        {
            tracing::error!(answer = %what, error = %e, "the task reading a stream's answer panicked");
            let internal = Status::internal(crate::app::error::INTERNAL_TEXT);
            let _ = on_panic.send(Err(internal)).await;
        }
    });
    ReceiverStream::new(rx)
}

#[tonic::async_trait]
impl AuditService for Api {
    type GetLoanHistoryStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<pb::JournalTransaction, Status>>>;
    type ReadJournalStream = TxnStream;
    type GetBalancesStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<pb::BalancesChunk, Status>>>;

    async fn get_loan_history(
        &self,
        request: Request<pb::GetLoanHistoryRequest>,
    ) -> Result<Response<Self::GetLoanHistoryStream>, Status> {
        let actor = self.principal(&request).await?;
        let pb::GetLoanHistoryRequest { loan_id, through_seq } = request.into_inner();
        let loan_id = parse::loan_id("loan_id", &loan_id)?;
        let through_seq = parse::through_seq("through_seq", through_seq)?;
        // A loan's history is tens of entries over its life: read it at once (with who owns the
        // loan, in the same statement), check access, stream it out.
        let history = self.readable_history(&actor, &loan_id).await?;
        let mut entries = history.entries().map_err(|e| status(e.into()))?;
        // Through a seq: the entries a checkpoint of that size holds (the loan's are all of its
        // ledger's journal).
        if let Some(seq) = through_seq {
            entries.retain(|e| u64::try_from(e.row.seq).is_ok_and(|s| s <= seq));
            if entries.is_empty() {
                return Err(super::error::no_contract_by(&loan_id, None, seq));
            }
        }
        // Converted at once and streamed from memory: no task or channel for so few messages.
        let messages: Vec<_> = entries.iter().map(|e| Ok(journal_to_pb(e))).collect();
        Ok(Response::new(tokio_stream::iter(messages)))
    }

    async fn read_journal(
        &self,
        request: Request<pb::ReadJournalRequest>,
    ) -> Result<Response<Self::ReadJournalStream>, Status> {
        let (actor, credential) = self.credential(&request).await?;
        let pb::ReadJournalRequest { ledger_id, from_seq, to_seq } = request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        self.check_reads_books(&actor, &ledger_id, "the journal").await?;
        // A seq is a positive 64-bit signed integer: each bound past it is named.
        for (field, seq) in [("from_seq", from_seq), ("to_seq", to_seq)] {
            if seq > SEQ_MAX {
                return Err(super::error::invalid(field, format!("must be at most {SEQ_MAX}")));
            }
        }
        let from = from_seq.max(1);
        let to = if to_seq == 0 { SEQ_MAX } else { to_seq };
        if to < from {
            return Err(super::error::invalid("to_seq", "must not be below from_seq"));
        }
        let db = self.db.clone();
        let what = format!("the journal of ledger {ledger_id}");
        let stream = spawned_stream(what, move |tx: mpsc::Sender<_>| async move {
            let mut next = from;
            while next <= to {
                if next > from
                    && let Err(e) = credential.still_valid().await
                {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                let page = match db.journal_range(&ledger_id, next, to, JOURNAL_PAGE_TXNS).await {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(status(e.into()))).await;
                        return;
                    }
                };
                let full = page.len() == JOURNAL_PAGE_TXNS as usize;
                for e in &page {
                    next = u64::try_from(e.row.seq).unwrap_or(u64::MAX - 1) + 1;
                    if tx.send(Ok(journal_to_pb(e))).await.is_err() {
                        return;
                    }
                }
                if !full {
                    break;
                }
            }
        });
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all)]
    async fn get_balances(
        &self,
        request: Request<pb::GetBalancesRequest>,
    ) -> Result<Response<Self::GetBalancesStream>, Status> {
        let actor = self.principal(&request).await?;
        let pb::GetBalancesRequest { ledger_id, as_of, account_prefix, through_seq } =
            request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        let as_of = parse::optional_date("as_of", &as_of)?;
        let through_seq = parse::through_seq("through_seq", through_seq)?;
        // Checked as free text, but not trimmed: a prefix is matched as sent.
        crate::domain::ids::check_text(&account_prefix, false)
            .map_err(|m| super::error::invalid("account_prefix", m))?;
        self.check_reads_books(&actor, &ledger_id, "the balances").await?;
        // A scan of the whole journal, as a verify's: one at a time with them.
        let _turn = self.whole_journal_turn().await?;
        let balances = balances_as_of(&self.db, &ledger_id, as_of, &account_prefix, through_seq)
            .await
            .map_err(status)?;
        let through_seq = balances.through_seq;
        let mut chunks: Vec<Result<pb::BalancesChunk, Status>> = balances
            .accounts
            .chunks(BALANCES_CHUNK)
            .map(|chunk| {
                Ok(pb::BalancesChunk {
                    through_seq,
                    balances: chunk
                        .iter()
                        .map(|(account, balance_fen)| pb::AccountBalance {
                            account: account.clone(),
                            balance_fen: *balance_fen,
                        })
                        .collect(),
                })
            })
            .collect();
        // No account: one empty chunk still says through which transaction.
        if chunks.is_empty() {
            chunks.push(Ok(pb::BalancesChunk { through_seq, balances: Vec::new() }));
        }
        Ok(Response::new(tokio_stream::iter(chunks)))
    }

    #[tracing::instrument(skip_all)]
    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let actor = self.principal(&request).await?;
        let pb::VerifyRequest { ledger_id, recheck_claims, recheck_answers } = request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        if !actor.reads_books(&ledger_id) {
            return Err(Status::permission_denied(format!(
                "{} may not verify ledger {ledger_id}",
                actor.actor()
            )));
        }
        // A ledger whose row is gone or damaged but whose journal is there is verified (and
        // the row reported), not NOT_FOUND.
        if !self.db.ledger_exists(&ledger_id).await.map_err(|e| status(e.into()))? {
            return Err(Status::not_found(format!("ledger {ledger_id} not found")));
        }
        let _turn = self.whole_journal_turn().await?;
        let options = VerifyOptions { recheck_claims, recheck_answers };
        let r = verify_ledger_with(&self.db, &ledger_id, options).await.map_err(status)?;
        if !r.ok {
            tracing::warn!(
                ledger_id,
                first_break_seq = r.first_break_seq,
                problems = r.problems.len(),
                "verify found problems"
            );
        }
        Ok(Response::new(pb::VerifyResponse {
            ok: r.ok,
            transactions_checked: r.transactions_checked,
            head_seq: r.head_seq,
            head_hash: r.head_hash,
            first_break_seq: r.first_break_seq,
            problems: r.problems,
            claim_lines_rechecked: r.claim_lines_rechecked,
            answers_rechecked: r.answers_rechecked,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        let actor = self.principal(&request).await?;
        let pb::GetCheckpointRequest { ledger_id, tree_size } = request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        self.check_reads_books(&actor, &ledger_id, "the checkpoints").await?;
        let tree_size = parse::through_seq("tree_size", tree_size)?;
        let turn = self.whole_journal_turn_owned().await?;
        let key = &self.signing_key;
        let signed = checkpoints::checkpoint(&self.db, key, &ledger_id, tree_size, turn)
            .await
            .map_err(status)?;
        Ok(Response::new(signed_to_pb(&signed)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let actor = self.principal(&request).await?;
        let pb::GetInclusionProofRequest { ledger_id, seq, tree_size } = request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        self.check_reads_books(&actor, &ledger_id, "the checkpoints").await?;
        let tree_size = parse::through_seq("tree_size", tree_size)?;
        // Refused before it waits for its turn (the app checks it too, against the journal).
        if seq == 0 {
            return Err(super::error::invalid("seq", "must be at least 1"));
        }
        let turn = self.whole_journal_turn_owned().await?;
        let key = &self.signing_key;
        let (signed, leaf, path) =
            checkpoints::inclusion(&self.db, key, &ledger_id, seq, tree_size, turn)
                .await
                .map_err(status)?;
        Ok(Response::new(pb::InclusionProof {
            checkpoint: Some(signed_to_pb(&signed)),
            seq,
            transaction_hash: to_hex(&leaf),
            audit_path: path.iter().map(to_hex).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let actor = self.principal(&request).await?;
        let pb::GetConsistencyProofRequest { ledger_id, from_size, to_size } = request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        self.check_reads_books(&actor, &ledger_id, "the checkpoints").await?;
        let to_size = parse::through_seq("to_size", to_size)?;
        if from_size == 0 {
            return Err(super::error::invalid("from_size", "must be at least 1"));
        }
        let turn = self.whole_journal_turn_owned().await?;
        let key = &self.signing_key;
        let (from, to, path) =
            checkpoints::consistency(&self.db, key, &ledger_id, from_size, to_size, turn)
                .await
                .map_err(status)?;
        Ok(Response::new(pb::ConsistencyProof {
            from: Some(signed_to_pb(&from)),
            to: Some(signed_to_pb(&to)),
            path: path.iter().map(to_hex).collect(),
        }))
    }
}

fn signed_to_pb(s: &checkpoints::Signed) -> pb::SignedCheckpoint {
    let c = &s.checkpoint;
    pb::SignedCheckpoint {
        ledger_id: c.ledger_id.clone(),
        tree_size: c.tree_size,
        root_hash: to_hex(&c.root),
        head_hash: to_hex(&c.head),
        signature: hex::encode(s.signature),
        public_key: hex::encode(s.public_key),
        signed_text: c.signed_text(),
    }
}

impl Api {
    /// Refuses a caller who may not read `what` of ledger `ledger_id` (`PERMISSION_DENIED`:
    /// banks and the operator, another ledger's office or auditor), then a ledger that does not
    /// exist (`NOT_FOUND`; the LPR table's chain has no ledger row and always exists). A ledger
    /// whose row is gone or damaged but whose journal is there exists, as for `Verify`: its
    /// journal is read, summed and signed (it was `NOT_FOUND`, or `INTERNAL` for a name that is
    /// not text, so that the auditor told of the damage by verify could read none of it).
    async fn check_reads_books(
        &self,
        actor: &crate::app::auth::Principal,
        ledger_id: &str,
        what: &str,
    ) -> Result<(), Status> {
        if !actor.reads_books(ledger_id) {
            return Err(Status::permission_denied(format!(
                "{} may not read {what} of ledger {ledger_id}",
                actor.actor()
            )));
        }
        if !self.db.ledger_exists(ledger_id).await.map_err(|e| status(e.into()))? {
            return Err(Status::not_found(format!("ledger {ledger_id} not found")));
        }
        Ok(())
    }

    /// The turn of a call that reads a whole journal (`Verify`, `GetBalances`, the checkpoints
    /// and proofs, a pool rebuilt through a seq) or rebuilds many loans (`GetRiskFund`,
    /// `ListLoans` as of a past day): one at a time.
    pub(super) async fn whole_journal_turn(
        &self,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, Status> {
        self.verify_turn
            .acquire()
            .await
            .map_err(|_| Status::unavailable("the service is shutting down"))
    }

    /// As [`Api::whole_journal_turn`], a permit of its own, for work that outlives the call (a
    /// blocking thread goes on when its caller goes away).
    pub(super) async fn whole_journal_turn_owned(
        &self,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.verify_turn
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("the service is shutting down"))
    }
}
