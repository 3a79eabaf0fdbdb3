//! The database's own ceiling: the rows the service writes for a command, written by a plain
//! program (no gRPC, no parsing, no rules, no reads) with the store's own statements, into a
//! fresh database of the same backend with the same durability settings.
//!
//! A command here is what the bench's commands write ([`Rows`]): a repayment of principal (the
//! single and batched repayments) or a quarter's interest settlement (the settlement run). Each
//! is one journal row (SHA-256 chained) carrying the event with its working, its postings, its
//! loan link, its idempotency row with the compact stored answer, the loan's read model and the
//! balance deltas of its accounts, in transactions of `per_txn` commands. The events and the
//! loan states are planned by the domain rules from the bench's contract, once, and given each
//! loan's id; the answers go through the service's own serialisers: the rows have the shapes
//! and sizes the service writes (a ceiling with smaller rows would flatter the database, not
//! measure it). Every transaction's rows are built before the clock starts, so the figure is
//! the database's alone: its statements, its commits and the WAL restarts the writer also makes.

use std::time::Duration;

use crate::app::command::{JournalRef, Outcome, SettledTotals};
use crate::domain::date::{format_date, parse_date};
use crate::domain::error::DomainError;
use crate::domain::event::JournalEvent;
use crate::domain::loan::{LoanCommand, LoanEvent, LoanState};
use crate::domain::money::Fen;
use crate::ledger::hash::{GENESIS, Hash, TxnContent, to_hex};
use crate::ledger::loan_postings::loan_postings;
use crate::ledger::posting::pack;
use crate::store::Db;
use crate::store::rows::JournalRow;
use crate::store::write::{Staged, StagedTxn, StoredAnswer, add_deltas};

/// The rows each command of a ceiling writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rows {
    /// A repayment of 1.00 yuan of principal on 2021-02-01, as the bench's repayments.
    Repayment,
    /// The interest settlement of 2021-03-20 of a loan disbursed on 2021-01-25, as the bench's
    /// settlement run; `repaid_share` of the loans were repaid by 1.00 yuan on 2021-02-01 first,
    /// as that share of the service's were (their event has two interest segments, the others'
    /// one).
    Settlement { repaid_share: f64 },
}

/// The bench's contract planned by the domain rules: the loan disbursed on 2021-01-25, the
/// repayment of 1.00 yuan on 2021-02-01 with the state after it, and the settlements of
/// 2021-03-20 without and with that repayment, each with the state after it.
struct Planned {
    disbursed: LoanState,
    repaid: (LoanEvent, LoanState),
    settled: (LoanEvent, LoanState),
    settled_after_repayment: (LoanEvent, LoanState),
}

impl Planned {
    fn of(template: &LoanState) -> Result<Planned, DomainError> {
        let day = |s: &str| parse_date(s).unwrap_or_default();
        let contracted = LoanState::new((*template.terms).clone(), 1);
        let disburse = LoanCommand::Disburse { date: day("2021-01-25"), amount: None };
        let disbursed = contracted.plan(&disburse)?.1;
        let repaid = disbursed.plan(&LoanCommand::Repay {
            date: day("2021-02-01"),
            amount: Fen(100),
            netted: Fen::ZERO,
        })?;
        let settle = LoanCommand::Settle { date: day("2021-03-20") };
        let settled = disbursed.plan(&settle)?;
        let settled_after_repayment = repaid.1.plan(&settle)?;
        Ok(Planned { disbursed, repaid, settled, settled_after_repayment })
    }
}

/// Writes `txns` transactions of `per_txn` commands of `rows` over `loans` loans (the bench's
/// contract with fresh ids; the settlement's take each loan once when there are enough) and
/// returns the time the writes took and this process's CPU time over them
/// ([`super::load::Span`]); the rows are built before.
pub async fn measure(
    db: &Db,
    template: &LoanState,
    rows: Rows,
    loans: usize,
    per_txn: usize,
    txns: usize,
) -> anyhow::Result<(Duration, Duration)> {
    anyhow::ensure!(loans > 0 && per_txn > 0 && txns > 0, "a ceiling needs loans and transactions");
    let planned = Planned::of(template)?;
    let ledger = "CEILING";
    db.execute_raw(&format!(
        "insert into ledger (ledger_id, name) values ('{ledger}', 'ceiling') on conflict do nothing"
    ))
    .await?;
    db.execute_raw(&format!(
        "insert into bank (bank_id, ledger_id, name) values ('CB', '{ledger}', 'ceiling') on conflict do nothing"
    ))
    .await?;
    db.execute_raw(&format!(
        "insert into household (household_id, ledger_id, head_name, head_id_number, township, village) \
         values ('CH', '{ledger}', 'x', '11010519491231002X', '', '') on conflict do nothing"
    ))
    .await?;
    let mut states: Vec<LoanState> = (0..loans)
        .map(|i| {
            let mut s = planned.disbursed.clone();
            let terms = std::sync::Arc::make_mut(&mut s.terms);
            terms.loan_id = format!("CL-{i:08}");
            terms.ledger_id = ledger.to_string();
            terms.bank_id = "CB".into();
            terms.household_id = "CH".into();
            s
        })
        .collect();
    // The loans exist before the clock starts, as they do for the service.
    let tx = db.begin_write().await?;
    let mut staged = Staged::default();
    for s in &states {
        staged.loans.insert(s.terms.loan_id.clone(), s.clone());
        staged.new_loans.insert(s.terms.loan_id.clone());
    }
    tx.commit_with(&staged).await?;

    let repaid_loans = match rows {
        Rows::Repayment => 0,
        Rows::Settlement { repaid_share } => (repaid_share.clamp(0.0, 1.0) * loans as f64) as usize,
    };
    let mut prev: Hash = GENESIS;
    let mut seq: u64 = 0;
    let mut groups = Vec::with_capacity(txns);
    for t in 0..txns {
        let mut staged = Staged::default();
        for i in 0..per_txn {
            seq += 1;
            let n = (t * per_txn + i) % loans;
            let loan = &mut states[n];
            let loan_id = loan.terms.loan_id.clone();
            let (template_event, after, actor, request_id) = match rows {
                Rows::Repayment => {
                    let (event, after) = &planned.repaid;
                    (event, after, "bank:CB", format!("r-{seq}"))
                }
                Rows::Settlement { .. } => {
                    let (event, after) = if n < repaid_loans {
                        &planned.settled_after_repayment
                    } else {
                        &planned.settled
                    };
                    (event, after, "finance:CEILING", format!("settle-1/{loan_id}"))
                }
            };
            let mut event = template_event.clone();
            match &mut event {
                LoanEvent::Repaid { loan_id: id, .. } | LoanEvent::Settled { loan_id: id, .. } => {
                    id.clone_from(&loan_id);
                }
                other => anyhow::bail!(
                    "a ceiling template that is no repayment nor settlement: {other:?}"
                ),
            }
            let settled = SettledTotals::of(event.settlements());
            if matches!(rows, Rows::Settlement { .. }) {
                anyhow::ensure!(settled.points > 0, "the ceiling's settlement settles nothing");
            }
            let postings = loan_postings(&event, "CB")?.into_vec();
            *loan = LoanState { terms: loan.terms.clone(), last_seq: seq, ..after.clone() };
            let value_date = format_date(event.value_date());
            let event = JournalEvent::Loan(event);
            let kind = event.kind();
            let command_json = event.to_json();
            let content = TxnContent {
                ledger_id: ledger,
                seq,
                kind,
                value_date: &value_date,
                recorded_at_us: 0,
                actor,
                request_id: &request_id,
                command_json: &command_json,
                postings: &postings,
            };
            let hash = content.chain_hash(&prev);
            let entry = JournalRef { ledger_id: ledger.into(), seq, hash: to_hex(&hash) };
            let answer = serde_json::to_string(&Outcome::loan_ref(loan, entry, settled))?;
            add_deltas(&mut staged.balance_deltas, ledger, &postings)?;
            staged.txns.push(StagedTxn {
                row: JournalRow {
                    ledger_id: ledger.into(),
                    seq: i64::try_from(seq)?,
                    kind: kind.into(),
                    value_date,
                    recorded_at_us: 0,
                    actor: actor.into(),
                    request_id,
                    command_json,
                    prev_hash: to_hex(&prev),
                    hash: to_hex(&hash),
                    postings: pack(&postings),
                },
                loan_ids: vec![loan_id.clone()],
                idempotency: StoredAnswer { fingerprint: to_hex(&hash), result_json: answer },
            });
            staged.loans.insert(loan_id, loan.clone());
            prev = hash;
        }
        // The loans' rows too, as the journal's and the answers' above: a plain program has
        // them ready before its clock starts.
        staged.build_loan_rows();
        groups.push(staged);
    }

    let span = super::load::Span::start();
    for staged in &groups {
        let tx = db.begin_write().await?;
        tx.commit_with(staged).await?;
        // As the writer does between two groups.
        db.restart_wal_if_due().await;
    }
    Ok(span.elapsed())
}
