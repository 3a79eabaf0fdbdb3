//! The database's own ceiling: the rows one posting makes, written by a plain program (no gRPC,
//! no parsing, no rules, no reads) with the store's multi-row statements, into a fresh database
//! of the same backend with the same durability settings.
//!
//! One posting here is what a command writes ([`Rows`]): for a repayment of principal (the
//! single and batched repayments) or a quarter's interest settlement (the settlement run), one
//! journal row (SHA-256 chained) carrying the event with its working, its postings, its loan
//! link, its idempotency row with the compact stored answer, the loan's read model and the
//! balance deltas of its accounts, in transactions of `postings_per_txn`. The event and the
//! answer go through the service's own serialisers, so the rows have the sizes the service
//! writes (a ceiling with smaller rows would flatter the database, not measure it).

use std::time::{Duration, Instant};

use crate::app::command::{JournalRef, Outcome, SettledTotals};
use crate::domain::date::{format_date, parse_date};
use crate::domain::error::DomainError;
use crate::domain::event::JournalEvent;
use crate::domain::loan::{LoanCommand, LoanEvent, LoanState};
use crate::domain::money::Fen;
use crate::domain::servicing::{Allocation, Repayment, SettlementPoint};
use crate::ledger::account;
use crate::ledger::hash::{GENESIS, Hash, TxnContent, to_hex};
use crate::ledger::loan_postings::loan_postings;
use crate::ledger::posting::Posting;
use crate::store::Db;
use crate::store::rows::JournalRow;
use crate::store::write::{Staged, StagedTxn, add_deltas};

/// The rows each posting of a ceiling writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// A repayment of 1.00 yuan of principal on 2021-02-01, as the bench's repayments.
    Repayment,
    /// The interest settlement of 2021-03-20 of a loan disbursed on 2021-01-25 and repaid by
    /// 1.00 yuan on 2021-02-01, as the bench's settlement run: the event with its two interest
    /// segments, the interest postings, the loan's servicing state after it.
    Settlement,
}

/// The settlement event and the state after it, planned by the domain rules from `template`'s
/// contract: disbursed on 2021-01-25, 1.00 yuan repaid on 2021-02-01, settled on 2021-03-20.
fn settled_template(template: &LoanState) -> Result<(LoanEvent, LoanState), DomainError> {
    let day = |s: &str| parse_date(s).unwrap_or_default();
    let mut loan = LoanState::new((*template.terms).clone(), 1);
    for command in [
        LoanCommand::Disburse { date: day("2021-01-25"), amount: None },
        LoanCommand::Repay { date: day("2021-02-01"), amount: Fen(100) },
    ] {
        loan = loan.plan(&command)?.1;
    }
    loan.plan(&LoanCommand::Settle { date: day("2021-03-20") })
}

/// Writes `txns` transactions of `postings_per_txn` postings of `rows` over `loans` (templates
/// cloned with fresh ids) and returns postings per second.
pub async fn measure(
    db: &Db,
    template: &LoanState,
    rows: Rows,
    loans: usize,
    postings_per_txn: usize,
    txns: usize,
) -> anyhow::Result<(f64, Duration)> {
    let settled = match rows {
        Rows::Repayment => None,
        Rows::Settlement => Some(settled_template(template)?),
    };
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
            let loan_id = loan.terms.loan_id.clone();
            // The rows have the service's shapes and sizes: the event with its working, and
            // the compact stored answer, through the same serialisers.
            let (event, postings, settled_totals) = match &settled {
                None => {
                    loan.principal_outstanding_fen = Fen(loan.principal_outstanding_fen.0 - 100);
                    let postings = vec![
                        Posting { account: account::bank_cash("CB"), amount: Fen(100) },
                        Posting { account: account::loan_principal(&loan_id), amount: Fen(-100) },
                    ];
                    let event = LoanEvent::Repaid {
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
                            allocation: Allocation {
                                principal_fen: Fen(100),
                                ..Allocation::default()
                            },
                            payoff: false,
                        },
                    };
                    (event, postings, SettledTotals::default())
                }
                Some((template_event, after)) => {
                    let mut event = template_event.clone();
                    let LoanEvent::Settled { loan_id: id, settlements, .. } = &mut event else {
                        anyhow::bail!("the settlement template is not a settlement");
                    };
                    id.clone_from(&loan_id);
                    let totals = SettledTotals::of(settlements);
                    let postings = loan_postings(&event, "CB")?.into_vec();
                    loan.servicing.clone_from(&after.servicing);
                    loan.principal_outstanding_fen = after.principal_outstanding_fen;
                    (event, postings, totals)
                }
            };
            loan.last_seq = seq;
            let value_date_text = format_date(event.value_date());
            let event = JournalEvent::Loan(event);
            let kind = event.kind();
            let command_json = event.to_json();
            let request_id = format!("c-{seq}");
            let content = TxnContent {
                ledger_id: ledger,
                seq,
                kind,
                value_date: &value_date_text,
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
                settled: settled_totals,
            })
            .unwrap_or_default();
            add_deltas(&mut staged.balance_deltas, ledger, &postings);
            staged.txns.push(StagedTxn {
                row: JournalRow {
                    ledger_id: ledger.into(),
                    seq: seq as i64,
                    kind: kind.into(),
                    value_date: value_date_text,
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
