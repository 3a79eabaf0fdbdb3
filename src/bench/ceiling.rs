//! The database's own ceiling: the rows one posting makes, written by a plain program (no gRPC,
//! no parsing, no rules, no reads) with the store's multi-row statements, into a fresh database
//! of the same backend with the same durability settings.
//!
//! One posting here is what a repayment of principal writes: one journal row (SHA-256 chained)
//! carrying the repayment event with its working, its postings, its loan link, its idempotency
//! row with the compact stored answer, the loan's read model and the balance deltas of its
//! accounts, in transactions of `postings_per_txn`. The event and the answer go through the
//! service's own serialisers, so the rows have the sizes the service writes (a ceiling with
//! smaller rows would flatter the database, not measure it).

use std::time::{Duration, Instant};

use crate::app::command::{JournalRef, Outcome, SettledTotals};
use crate::domain::date::parse_date;
use crate::domain::event::JournalEvent;
use crate::domain::loan::{LoanEvent, LoanState};
use crate::domain::money::Fen;
use crate::domain::servicing::{Allocation, Repayment, SettlementPoint};
use crate::ledger::account;
use crate::ledger::hash::{GENESIS, Hash, TxnContent, to_hex};
use crate::ledger::posting::Posting;
use crate::store::rows::JournalRow;
use crate::store::write::{Staged, StagedTxn, add_deltas};
use crate::store::{Db, StoreError};

/// Writes `txns` transactions of `postings_per_txn` postings over `loans` (templates cloned with
/// fresh ids) and returns postings per second.
pub async fn measure(
    db: &Db,
    template: &LoanState,
    loans: usize,
    postings_per_txn: usize,
    txns: usize,
) -> Result<(f64, Duration), StoreError> {
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
            let mut s = template.clone();
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

    let value_date = parse_date("2021-02-01").unwrap_or_default();
    let mut prev: Hash = GENESIS;
    let mut seq: u64 = 0;
    let start = Instant::now();
    for t in 0..txns {
        let mut staged = Staged::default();
        for i in 0..postings_per_txn {
            seq += 1;
            let n = (t * postings_per_txn + i) % loans;
            let loan = &mut states[n];
            loan.principal_outstanding_fen = Fen(loan.principal_outstanding_fen.0 - 100);
            loan.last_seq = seq;
            let loan_id = loan.terms.loan_id.clone();
            let postings = vec![
                Posting { account: account::bank_cash("CB"), amount: Fen(100) },
                Posting { account: account::loan_principal(&loan_id), amount: Fen(-100) },
            ];
            // The rows have the service's shapes and sizes: the event with its working, and
            // the compact stored answer, through the same serialisers.
            let event = JournalEvent::Loan(LoanEvent::Repaid {
                loan_id: loan_id.clone(),
                value_date,
                amount_fen: Fen(100),
                settlements: Vec::new(),
                repayment: Repayment {
                    charges: SettlementPoint {
                        date: value_date,
                        interest: None,
                        penalty: None,
                        compound: None,
                        principal: None,
                    },
                    allocation: Allocation { principal_fen: Fen(100), ..Allocation::default() },
                    payoff: false,
                },
            });
            let command_json = event.to_json();
            let request_id = format!("c-{seq}");
            let content = TxnContent {
                ledger_id: ledger,
                seq,
                kind: "loan.repaid",
                value_date: "2021-02-01",
                recorded_at_us: 0,
                actor: "bank:CB",
                request_id: &request_id,
                command_json: &command_json,
                postings: &postings,
            };
            let hash = content.chain_hash(&prev);
            let answer = serde_json::to_string(&Outcome::LoanRef {
                loan_id: loan_id.clone(),
                entry: JournalRef { ledger_id: ledger.into(), seq, hash: to_hex(&hash) },
                settled: SettledTotals::default(),
            })
            .unwrap_or_default();
            add_deltas(&mut staged.balance_deltas, ledger, &postings);
            staged.txns.push(StagedTxn {
                row: JournalRow {
                    ledger_id: ledger.into(),
                    seq: seq as i64,
                    kind: "loan.repaid".into(),
                    value_date: "2021-02-01".into(),
                    recorded_at_us: 0,
                    actor: "bank:CB".into(),
                    request_id: request_id.clone(),
                    command_json,
                    prev_hash: to_hex(&prev),
                    hash: to_hex(&hash),
                },
                postings,
                loan_ids: vec![loan_id.clone()],
                idempotency: Some(("bank:CB".into(), request_id, to_hex(&hash), answer)),
            });
            staged.loans.insert(loan_id, loan.clone());
            prev = hash;
        }
        let tx = db.begin_write().await?;
        tx.commit_with(&staged).await?;
        // As the writer does between two groups.
        db.restart_wal_if_due().await;
    }
    let elapsed = start.elapsed();
    Ok(((txns * postings_per_txn) as f64 / elapsed.as_secs_f64(), elapsed))
}
