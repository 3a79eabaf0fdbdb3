//! The service as its users see it: every scenario starts the real server on port 0 over a fresh
//! database and talks to it through the generated gRPC clients, once on SQLite and once on
//! PostgreSQL (`<scenario>::sqlite`, `<scenario>::postgres`). This file: the registry, contracts,
//! disbursements and repayments with their refusals, malformed input, idempotency, concurrent
//! clients and batches, listings. The others: `servicing.rs` (settlement runs, repayment
//! allocation, arrears, extension, renewal, write-off, batches, as-of, balances), `schedule.rs`
//! (PreviewSchedule, reflection), `audit.rs` (verify and tampering, the journal's scan), `checkpoints.rs` (signed
//! checkpoints and their proofs), `subsidy.rs` (subsidy registers), `auth.rs`
//! (tokens and roles), `lifecycle.rs` (restarts, kills, shutdown, failed writes), `backup.rs`
//! (backups taken, checked and restored), `tls.rs` (TLS and mutual TLS).

#[path = "../common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashSet};

use common::*;
use loanledger::api::pb;
use loanledger::app::auth::Role;
use loanledger::domain::money::Fen;
use tonic::Code;
use tonic_types::StatusExt;

/// Runs each scenario `async fn name(Backend)` as two tests, `name::sqlite` and `name::postgres`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

mod audit;
mod auth;
mod backup;
mod checkpoints;
mod claims;
mod client;
mod lifecycle;
mod pools;
mod risk_fund;
mod schedule;
mod servicing;
mod subsidy;
mod tls;

on_both_backends!(
    full_flow,
    origination_refusals,
    status_history_by_effective_date,
    a_status_dated_back_over_a_signed_contract_names_it,
    disbursement_and_repayment_refusals,
    malformed_input,
    idempotent_replay,
    concurrent_clients,
    bad_and_duplicate_commands_in_one_group,
    same_loans_from_many_clients,
    large_batch_on_loans_not_held,
    list_loans_pages,
    a_person_heads_one_household_of_a_ledger,
    a_borrower_heads_no_other_household_while_owing,
    a_person_borrows_for_one_household_of_a_ledger,
    bytewise_ids_whatever_the_collation,
    today_is_the_business_day,
    value_dates_in_the_future_are_refused,
    records_made_twice_and_contracts_before_the_rules_are_refused,
    lpr_table,
    history_keeps_to_the_loans_ledger,
    loans_made_before_the_id_limit_are_still_named,
    a_reused_request_id_holds_back_its_loan,
);

const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn entry(r: &pb::LoanResponse) -> &pb::JournalRef {
    r.entry.as_ref().expect("a write answers with its journal entry")
}

fn loan(r: &pb::LoanResponse) -> &pb::Loan {
    r.loan.as_ref().expect("a loan write answers with the loan")
}

fn sorted(postings: &[pb::Posting]) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> =
        postings.iter().map(|p| (p.account.clone(), p.amount_fen)).collect();
    v.sort();
    v
}

/// The postings that move money (a netted leg of zero moves nothing).
fn nonzero(postings: &[pb::Posting]) -> Vec<pb::Posting> {
    postings.iter().filter(|p| p.amount_fen != 0).cloned().collect()
}

fn postings(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = list.iter().map(|(a, f)| (a.to_string(), *f)).collect();
    v.sort();
    v
}

/// Ledger, bank, household, loan, disbursement, two repayments; balances to the fen; the loan's
/// history in order with postings and hashes; the journal's chain recomputed; verify.
async fn full_flow(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let operator = app.operator.clone();
    let finance = app.finance_token().await;
    let bank = app.bank_token(BANK).await;
    let auditor = app.auditor_token().await;

    let ledger = app.create_ledger(&operator, LEDGER, "武鸣区").await;
    assert_eq!(ledger.ledger.as_ref().unwrap().ledger_id, LEDGER);
    let ledger_ref = ledger.entry.clone().expect("CreateLedger answers with its entry");
    assert_eq!(ledger_ref.ledger_id, LEDGER);

    // A new ledger carries the default programme policy from 2014-12-10.
    let policy = app
        .registry(&auditor)
        .get_policy(pb::GetPolicyRequest {
            ledger_id: LEDGER.into(),
            as_of: CONTRACT_DATE.into(),
            through_seq: 0,
        })
        .await
        .expect("GetPolicy")
        .into_inner();
    assert_eq!(policy.effective_date, "2014-12-10");
    let params = policy.params.expect("policy params");
    assert_eq!(params.household_principal_cap_fen, 5_000_000);
    assert_eq!(params.term_months_max, 36);
    assert_eq!((params.borrower_age_min, params.borrower_age_max), (18, 65));

    let bank_reg = app.register_bank(&operator, BANK).await;
    let household = app.register_household(&finance, HOUSEHOLD, "19800517").await;
    let hh = household.household.as_ref().unwrap();
    assert_eq!(hh.status_history.len(), 1);
    assert_eq!(hh.status_history[0].status, pb::HouseholdStatus::RegisteredPoor as i32);

    let create_req = standard_loan("C001", HOUSEHOLD);
    let created = app.create_loan(&bank, create_req.clone()).await;
    let id = loan_id("C001");
    let l = loan(&created);
    assert_eq!(l.loan_id, id);
    assert_eq!(l.ledger_id, LEDGER);
    assert_eq!(l.bank_id, BANK);
    assert_eq!(l.household_id, HOUSEHOLD);
    assert_eq!(l.principal_fen, 5_000_000);
    assert_eq!(l.annual_rate, "0.0385");
    assert_eq!(l.contract_date, "2021-01-25");
    assert_eq!(l.maturity_date, "2022-01-25");
    assert_eq!(l.term_months, 12);
    assert_eq!(l.repayment_method, pb::RepaymentMethod::Bullet as i32);
    assert_eq!(l.settlement_frequency, pb::SettlementFrequency::Quarterly as i32);
    assert!(l.collateral_free && l.guarantee_free);
    assert_eq!(l.status, pb::LoanStatus::Contracted as i32);
    assert_eq!(
        (l.disbursed_fen, l.principal_outstanding_fen, l.principal_repaid_fen, l.interest_paid_fen),
        (0, 0, 0, 0)
    );
    assert_eq!(l.disbursed_on, "");
    // A bank sees its own borrower's identity number in full.
    assert_eq!(l.borrower_id_number, create_req.borrower_id_number);

    let disbursed = app.disburse(&bank, &id, "2021-01-25").await;
    let l = loan(&disbursed);
    assert_eq!(l.status, pb::LoanStatus::Active as i32);
    assert_eq!(l.disbursed_fen, 5_000_000);
    assert_eq!(l.principal_outstanding_fen, 5_000_000);
    assert_eq!(l.disbursed_on, "2021-01-25");

    // DESIGN.md's worked figure: 50,000.00 yuan from 2021-01-25 to 2022-01-25 at 3.85%, settled
    // quarterly on the 20th and rounded half up per settlement: 294.10 + 491.94 + 491.94 +
    // 486.60 + 187.15 = 1,951.73 yuan. The independent recomputation agrees with it.
    let points = [
        standard_interest(5_000_000, 55), // 2021-01-25 ..= 2021-03-20
        standard_interest(5_000_000, 92), // 2021-03-21 ..= 2021-06-20
        standard_interest(5_000_000, 92), // 2021-06-21 ..= 2021-09-20
        standard_interest(5_000_000, 91), // 2021-09-21 ..= 2021-12-20
        standard_interest(5_000_000, 35), // 2021-12-21 ..= 2022-01-24
    ];
    assert_eq!(points, [29_410, 49_194, 49_194, 48_660, 18_715]);
    let total_interest: i64 = points.iter().sum();
    assert_eq!(total_interest, 195_173);

    // The interest of each quarter, paid on its settlement day (a day later it would be overdue
    // and compound): each payment settles its quarter and pays exactly that.
    let mut interest_payments = Vec::new();
    let mut paid = 0;
    for (date, interest) in [
        ("2021-03-20", points[0]),
        ("2021-06-20", points[1]),
        ("2021-09-20", points[2]),
        ("2021-12-20", points[3]),
    ] {
        let answer = app.repay(&bank, &id, date, interest).await;
        paid += interest;
        let l = loan(&answer);
        assert_eq!(l.status, pb::LoanStatus::Active as i32, "{l:?}");
        assert_eq!(l.principal_outstanding_fen, 5_000_000, "{l:?}");
        assert_eq!(l.principal_repaid_fen, 0, "{l:?}");
        assert_eq!(l.interest_settled_fen, paid, "{l:?}");
        assert_eq!(l.interest_paid_fen, paid, "{l:?}");
        assert_eq!((l.interest_due_fen, l.compound_fen, l.penalty_fen), (0, 0, 0), "{l:?}");
        assert_eq!(l.as_of, date);
        interest_payments.push(answer);
    }
    let first_amount = points[0];

    // The payoff at maturity: the last (short) period's interest and the principal.
    let quote = app.payoff_quote(&bank, &id, "2022-01-25").await;
    let payoff = 5_000_000 + points[4];
    assert_eq!(quote.principal_fen, 5_000_000, "{quote:?}");
    assert_eq!(quote.total_fen, payoff, "{quote:?}");
    assert_eq!((quote.penalty_fen, quote.compound_fen), (0, 0), "{quote:?}");
    expect_refused(
        app.loans(&bank)
            .record_repayment(pb::RecordRepaymentRequest {
                request_id: rid("repay"),
                loan_id: id.clone(),
                value_date: "2022-01-25".into(),
                amount_fen: payoff + 1,
                subsidy_netted_fen: 0,
            })
            .await,
        "REPAYMENT_EXCEEDS_OWED",
    );
    let repaid2 = app.repay(&bank, &id, "2022-01-25", payoff).await;
    let l = loan(&repaid2);
    assert_eq!(l.status, pb::LoanStatus::Settled as i32);
    assert_eq!(l.principal_outstanding_fen, 0);
    assert_eq!(l.principal_repaid_fen, 5_000_000);
    assert_eq!(l.interest_paid_fen, total_interest);
    assert_eq!(l.interest_settled_fen, total_interest);
    assert_eq!((l.interest_due_fen, l.penalty_fen, l.compound_fen), (0, 0, 0));
    assert_eq!(l.disbursed_fen, 5_000_000);

    // Entries of successive writes climb the same chain.
    let refs = [
        ledger_ref.clone(),
        bank_reg.entry.clone().unwrap(),
        household.entry.clone().unwrap(),
        entry(&created).clone(),
        entry(&disbursed).clone(),
        entry(&interest_payments[0]).clone(),
        entry(&interest_payments[1]).clone(),
        entry(&interest_payments[2]).clone(),
        entry(&interest_payments[3]).clone(),
        entry(&repaid2).clone(),
    ];
    for w in refs.windows(2) {
        assert!(w[0].seq < w[1].seq, "seqs climb: {refs:?}");
        assert_eq!(w[1].ledger_id, LEDGER);
    }
    let last = refs.last().unwrap().clone();

    let got = app.get_loan_as_of(&bank, &id, "2022-01-25").await;
    assert_eq!(&got, loan(&repaid2), "GetLoan as of the payoff agrees with its answer");
    assert_eq!(got.last_seq, last.seq);
    let today = app.get_loan(&bank, &id).await;
    assert_eq!(
        pb::Loan { as_of: got.as_of.clone(), ..today.clone() },
        got,
        "a settled loan stays as it was"
    );
    // As of an earlier date the loan is rebuilt as it stood then.
    let back = app.get_loan_as_of(&bank, &id, "2021-03-20").await;
    assert_eq!(back.principal_outstanding_fen, 5_000_000);
    assert_eq!(back.interest_paid_fen, first_amount);
    assert_eq!(back.status, pb::LoanStatus::Active as i32);

    // The loan's history: its seven transactions, oldest first, with postings and hashes.
    let history = app.history(&auditor, &id).await;
    let kinds: Vec<&str> = history.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(history.len(), 7, "history kinds: {kinds:?}");
    let loan_refs = &refs[3..];
    for (t, r) in history.iter().zip(loan_refs) {
        assert_eq!(t.seq, r.seq);
        assert_eq!(t.hash, r.hash);
        assert_eq!(t.ledger_id, LEDGER);
        assert_eq!(t.actor, "bank:B1");
        assert_eq!(t.hash.len(), 64);
        assert_eq!(t.prev_hash.len(), 64);
        assert!(t.recorded_at.is_some());
        assert!(!t.command_json.is_empty());
    }
    assert_eq!(history[0].request_id, create_req.request_id);
    assert_eq!(history[0].value_date, "2021-01-25");
    assert!(history[0].postings.is_empty(), "a contract posts nothing");
    assert_eq!(history[1].value_date, "2021-01-25");
    assert_eq!(
        sorted(&history[1].postings),
        postings(&[("loan/B1-C001/principal", 5_000_000), ("bank/B1/cash", -5_000_000)])
    );
    // A repayment posts the interest it settles (loan/interest Dr, interest_income Cr) and
    // the cash it receives (bank/cash Dr, buckets Cr); legs to one account are netted.
    for (i, date) in ["2021-03-20", "2021-06-20", "2021-09-20", "2021-12-20"].iter().enumerate() {
        let t = &history[2 + i];
        assert_eq!(&t.value_date, date);
        assert_eq!(
            sorted(&nonzero(&t.postings)),
            postings(&[("bank/B1/cash", points[i]), ("bank/B1/interest_income", -points[i])])
        );
    }
    assert_eq!(history[6].value_date, "2022-01-25");
    assert_eq!(
        sorted(&nonzero(&history[6].postings)),
        postings(&[
            ("bank/B1/cash", payoff),
            ("loan/B1-C001/principal", -5_000_000),
            ("bank/B1/interest_income", -(payoff - 5_000_000)),
        ])
    );
    // The bank reads its own loan's history too.
    assert_eq!(app.history(&bank, &id).await, history);

    // The ledger's journal: dense, chained from zero, every hash recomputed independently.
    let journal = app.journal(&auditor, LEDGER).await;
    assert_eq!(journal.first().unwrap().prev_hash, ZERO_HASH);
    check_chain(&journal);
    assert_eq!(journal.last().unwrap().seq, last.seq);
    assert_eq!(journal.last().unwrap().hash, last.hash);
    for r in &refs {
        assert_eq!(journal[(r.seq - 1) as usize].hash, r.hash);
    }
    let mut b = balances(&journal);
    b.retain(|_, v| *v != 0);
    let expected: BTreeMap<String, i64> =
        [("bank/B1/cash", total_interest), ("bank/B1/interest_income", -total_interest)]
            .into_iter()
            .map(|(a, f)| (a.to_string(), f))
            .collect();
    assert_eq!(b, expected, "balances recomputed from the journal: every other account is zero");

    // A sequence range reads just that slice.
    let slice = collect(
        app.audit(&auditor)
            .read_journal(pb::ReadJournalRequest {
                ledger_id: LEDGER.into(),
                from_seq: 2,
                to_seq: 3,
            })
            .await
            .expect("ReadJournal range")
            .into_inner(),
    )
    .await
    .unwrap();
    assert_eq!(slice.iter().map(|t| t.seq).collect::<Vec<_>>(), vec![2, 3]);
    // Bounds past a seq's range, or the wrong way round, are refused naming the field.
    for (from_seq, to_seq, field) in
        [(u64::MAX, 0, "from_seq"), (1, u64::MAX, "to_seq"), (3, 2, "to_seq")]
    {
        let request = pb::ReadJournalRequest { ledger_id: LEDGER.into(), from_seq, to_seq };
        expect_invalid(app.audit(&auditor).read_journal(request).await, field);
    }
    // A ledger that does not exist is NOT_FOUND, as for Verify (not an empty journal).
    let every = app.token(Role::Auditor, "*").await;
    let request = pb::ReadJournalRequest { ledger_id: "NOSUCH".into(), from_seq: 0, to_seq: 0 };
    expect_code(app.audit(&every).read_journal(request).await, Code::NotFound);

    let v = app.verify(&auditor).await;
    assert!(v.ok, "verify: {v:?}");
    assert_eq!(v.first_break_seq, 0);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.head_seq, last.seq);
    assert_eq!(v.head_hash, last.hash);
    assert_eq!(v.transactions_checked, last.seq);

    let list = app
        .loans(&bank)
        .list_loans(pb::ListLoansRequest { bank_id: BANK.into(), ..Default::default() })
        .await
        .expect("ListLoans")
        .into_inner();
    assert_eq!(
        list.loans.iter().map(|l| l.loan_id.as_str()).collect::<Vec<_>>(),
        vec![id.as_str()]
    );
    assert_eq!(list.next_page_token, "");
    let settled = app
        .loans(&auditor)
        .list_loans(pb::ListLoansRequest {
            ledger_id: LEDGER.into(),
            status: pb::LoanStatus::Active as i32,
            ..Default::default()
        })
        .await
        .expect("ListLoans by status")
        .into_inner();
    assert!(settled.loans.is_empty(), "no loan is active any more");
    app.finish().await;
}

/// A status dated back over a signed contract (the household removed from before the loan's
/// contract date, recorded after it) names the contract it makes one the policy would have
/// refused; the contract stands (nothing undone, the loan still repaid). A status that leaves
/// the contract eligible, or dated after it, names none; the retry answers alike, and names no
/// contract recorded after its status, whatever policy version was set since.
async fn a_status_dated_back_over_a_signed_contract_names_it(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    use pb::HouseholdStatus::{Exited, NotEligible, RegisteredPoor, Removed};
    let mut registry = app.registry(&t.finance);
    // A status dated ahead (2062 typed for 2026) is refused, naming the date, as a
    // registration's is (since 2026-12-07): the household would be unlendable until then.
    let ahead = status_request(HOUSEHOLD, Removed, "2062-03-01");
    expect_invalid(registry.set_household_status(ahead).await, "effective_date");
    let removed = status_request(HOUSEHOLD, Removed, "2021-01-01");
    let answer = registry.set_household_status(removed.clone()).await.expect("SetHouseholdStatus");
    assert_eq!(answer.into_inner().contracts_made_ineligible, vec![id.clone()]);
    let again = registry.set_household_status(removed.clone()).await.expect("the retry");
    assert_eq!(again.into_inner().contracts_made_ineligible, vec![id.clone()]);
    // A version set since, dated back, that lends to registered poor households no more (the
    // contract would not have been eligible before the removal either): the retry is worked
    // out under the versions recorded by its status, and answers as before.
    let narrower = pb::PolicyParams {
        eligible_statuses: vec![Exited as i32, pb::HouseholdStatus::Monitored as i32],
        ..app.policy_on(&t.finance, CONTRACT_DATE).await
    };
    registry.set_policy(policy_from("2020-01-01", narrower)).await.expect("SetPolicy");
    let again = registry.set_household_status(removed).await.expect("the retry").into_inner();
    assert_eq!(again.contracts_made_ineligible, vec![id.clone()]);
    // Earlier than the removal, which still covers the contract date: nothing changes.
    let earlier = status_request(HOUSEHOLD, RegisteredPoor, "2020-12-31");
    let earlier_request = earlier.request_id.clone();
    let answer = registry.set_household_status(earlier).await.expect("SetHouseholdStatus");
    assert!(answer.into_inner().contracts_made_ineligible.is_empty());
    // Eligible again from before the contract: none made ineligible.
    let exited = status_request(HOUSEHOLD, Exited, "2021-01-10");
    let answer = registry.set_household_status(exited).await.expect("SetHouseholdStatus");
    assert!(answer.into_inner().contracts_made_ineligible.is_empty());
    // After the contract date: none.
    let later = status_request(HOUSEHOLD, NotEligible, "2021-02-01");
    let answer = registry.set_household_status(later).await.expect("SetHouseholdStatus");
    assert!(answer.into_inner().contracts_made_ineligible.is_empty());
    // The contract stands.
    app.repay(&t.bank, &id, "2021-03-20", 29_410).await;
    // A retry names what its status made ineligible when recorded, not a contract recorded
    // since under a later status: removed from 2021-01-01, exited (eligible) from 2021-01-05,
    // a loan contracted on 2021-01-10, then the removal retried.
    let other = "H-RETRY";
    app.register_household(&t.finance, other, "19750203").await;
    let removed = status_request(other, Removed, "2021-01-01");
    let answer = registry.set_household_status(removed.clone()).await.expect("SetHouseholdStatus");
    assert!(answer.into_inner().contracts_made_ineligible.is_empty());
    let again = status_request(other, Exited, "2021-01-05");
    registry.set_household_status(again).await.expect("SetHouseholdStatus");
    app.create_loan(&t.bank, standard_loan_on("C-RETRY", other, "2021-01-10")).await;
    let retried = registry.set_household_status(removed).await.expect("the retry").into_inner();
    assert!(retried.contracts_made_ineligible.is_empty(), "{retried:?}");
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    // The stored answer to the status dated 2020-12-31, which its retry is given, changed
    // behind the service's back: the household's record and its earlier statuses in it are
    // the journal's as of that status, as its last status is.
    let of_earlier = format!("request_id = '{earlier_request}'");
    let sql = format!("select result_json from idempotency where {of_earlier}");
    let stored = app.db.query_texts(&sql).await.expect("the answer read").concat();
    let stored: serde_json::Value = serde_json::from_str(&stored).expect("an answer");
    let statuses: Vec<&str> = stored["statuses"]
        .as_array()
        .expect("the statuses")
        .iter()
        .map(|s| s["effective_date"].as_str().expect("a date"))
        .collect();
    assert_eq!(statuses[1..], ["2021-01-01", "2020-12-31"], "in the order recorded");
    let forge =
        async |answer: &serde_json::Value| app.forge_answer(&t.auditor, &of_earlier, answer).await;
    let mut forged = stored.clone();
    forged["household"]["village"] = "Elsewhere".into();
    forged["statuses"][1]["effective_date"] = "2021-01-02".into();
    let problems = forge(&forged).await;
    assert_eq!(problems.len(), 2, "{problems:?}");
    let seq = stored["entry"]["seq"].as_u64().expect("its seq");
    let prefix = format!(
        "seq {seq}: the stored answer to finance:{LEDGER}'s request {earlier_request} gives"
    );
    // Each as given, then as the journal gives it.
    let sides = |problem: &str, what: &str| {
        let given = problem.strip_prefix(&format!("{prefix} {what} ")).expect(what);
        let (given, recorded) = given.split_once("; the journal gives ").expect("both sides");
        (given.to_string(), recorded.to_string())
    };
    let (given, recorded) = sides(&problems[0], "the household");
    assert!(given.contains("\"village\":\"Elsewhere\"") && !recorded.contains("Elsewhere"));
    let (given, recorded) = sides(&problems[1], "the statuses");
    assert!(given.contains("\"2021-01-02\"") && !given.contains("\"2021-01-01\""));
    assert!(recorded.contains("\"2021-01-01\"") && !recorded.contains("\"2021-01-02\""));
    assert_eq!(forge(&stored).await, Vec::<String>::new(), "put back");
    app.finish().await;
}

/// A household's status history is answered by effective date, one date's entries in the
/// order recorded, so that each entry holds until the next, as the eligibility rule reads it:
/// a status recorded later with an earlier date (a back-dated correction) takes its date's place.
async fn status_history_by_effective_date(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = "H-BACKDATED";
    app.register_household(&t.finance, id, "19800517").await;
    let set = |status: pb::HouseholdStatus, date: &str| {
        let mut registry = app.registry(&t.finance);
        let request = pb::SetHouseholdStatusRequest {
            request_id: rid("status"),
            household_id: id.into(),
            status: status as i32,
            effective_date: date.into(),
            reason: "review".into(),
        };
        async move {
            let answer = registry.set_household_status(request).await.expect("SetHouseholdStatus");
            answer.into_inner().household.expect("the household")
        }
    };
    let listed = |household: &pb::Household| -> Vec<(pb::HouseholdStatus, String)> {
        household.status_history.iter().map(|e| (e.status(), e.effective_date.clone())).collect()
    };
    let got = |app: &TestApp| {
        let mut registry = app.registry(&t.auditor);
        async move {
            let request = pb::GetHouseholdRequest { household_id: id.into() };
            registry.get_household(request).await.expect("GetHousehold").into_inner()
        }
    };
    use pb::HouseholdStatus::{Exited, Monitored, RegisteredPoor, Removed};
    // A contract dated before the household's first status (2016-01-01) is refused as
    // unregistered; a status dated before the first (the registration's date typed late) puts
    // it right (until 2026-12-06 that status was refused, STATUS_DATE_BEFORE_REGISTRATION).
    let early = standard_loan_on("C-BACKDATED-0", id, "2015-12-01");
    expect_refused(app.loans(&t.bank).create_loan(early.clone()).await, "HOUSEHOLD_NOT_ELIGIBLE");
    set(RegisteredPoor, "2015-11-01").await;
    app.create_loan(&t.bank, pb::CreateLoanRequest { request_id: rid("loan"), ..early }).await;
    set(Removed, "2020-06-01").await;
    // Exited from 2019-12-31, recorded after the removal of 2020-06-01: the removal holds on
    // the contract date 2021-01-25, and is listed last.
    let answered = set(Exited, "2019-12-31").await;
    let expected = vec![
        (RegisteredPoor, "2015-11-01".to_string()),
        (RegisteredPoor, "2016-01-01".to_string()),
        (Exited, "2019-12-31".to_string()),
        (Removed, "2020-06-01".to_string()),
    ];
    assert_eq!(listed(&answered), expected);
    assert_eq!(listed(&got(&app).await), expected);
    expect_refused(
        app.loans(&t.bank).create_loan(standard_loan("C-BACKDATED-1", id)).await,
        "HOUSEHOLD_NOT_ELIGIBLE",
    );
    // Monitored from the removal's date, recorded after it: of one date the last recorded holds,
    // and is listed after the other.
    let answered = set(Monitored, "2020-06-01").await;
    let mut expected = expected;
    expected.push((Monitored, "2020-06-01".to_string()));
    assert_eq!(listed(&answered), expected);
    assert_eq!(listed(&got(&app).await), expected);
    app.create_loan(&t.bank, standard_loan("C-BACKDATED-2", id)).await;
}

/// Every origination rule, refused with FAILED_PRECONDITION and its reason; the boundaries pass.
async fn origination_refusals(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let journal_before = app.journal(&t.auditor, LEDGER).await.len();
    let mut accepted = 0;
    let mut loans = app.loans(&t.bank);

    // Not eligible on the contract date: removed on 2020-06-01, before 2021-01-25.
    app.register_household(&t.finance, "H-REMOVED", "19800517").await;
    app.registry(&t.finance)
        .set_household_status(pb::SetHouseholdStatusRequest {
            request_id: rid("status"),
            household_id: "H-REMOVED".into(),
            status: pb::HouseholdStatus::Removed as i32,
            effective_date: "2020-06-01".into(),
            reason: "清退 after review".into(),
        })
        .await
        .expect("SetHouseholdStatus");
    accepted += 2;
    expect_refused(
        loans.create_loan(standard_loan("C-REMOVED", "H-REMOVED")).await,
        "HOUSEHOLD_NOT_ELIGIBLE",
    );
    // The same household was eligible on a contract date before its removal (the 1-year LPR of
    // 2020-02-20 is 4.05%).
    let mut before = standard_loan("C-BEFORE", "H-REMOVED");
    before.contract_date = "2020-03-02".into();
    app.create_loan(&t.bank, before).await;
    accepted += 1;

    // The household cap: 30,000 + 25,000 yuan is over 50,000; 30,000 + 20,000 is exactly on it.
    app.register_household(&t.finance, "H-CAP", "19800517").await;
    accepted += 1;
    let mut first = standard_loan("C-CAP-1", "H-CAP");
    first.principal_fen = 3_000_000;
    app.create_loan(&t.bank, first).await;
    accepted += 1;
    let mut second = standard_loan("C-CAP-2", "H-CAP");
    second.principal_fen = 2_500_000;
    expect_refused(loans.create_loan(second).await, "HOUSEHOLD_CAP_EXCEEDED");
    let mut fits = standard_loan("C-CAP-3", "H-CAP");
    fits.principal_fen = 2_000_000;
    app.create_loan(&t.bank, fits).await;
    accepted += 1;
    let mut one_more = standard_loan("C-CAP-4", "H-CAP");
    one_more.principal_fen = 1;
    expect_refused(loans.create_loan(one_more).await, "HOUSEHOLD_CAP_EXCEEDED");

    // Term: 37 months refused, 36 accepted (over a year: the 5-year LPR, 4.65%).
    let mut long = standard_loan("C-TERM-37", HOUSEHOLD);
    long.term_months = 37;
    long.annual_rate = "0.0465".into();
    expect_refused(loans.create_loan(long).await, "TERM_TOO_LONG");

    // Rate: over the 1-year LPR for 12 months; over the 5-year LPR for 24 months.
    let mut high = standard_loan("C-RATE-12", HOUSEHOLD);
    high.annual_rate = "0.0386".into();
    expect_refused(loans.create_loan(high).await, "RATE_ABOVE_LPR_CAP");
    let mut high24 = standard_loan("C-RATE-24", HOUSEHOLD);
    high24.term_months = 24;
    high24.annual_rate = "0.0466".into();
    expect_refused(loans.create_loan(high24).await, "RATE_ABOVE_LPR_CAP");
    let mut mid24 = standard_loan("C-RATE-24-OK", HOUSEHOLD);
    mid24.term_months = 24;
    mid24.annual_rate = "0.0465".into();
    mid24.principal_fen = 1_000_000;
    app.create_loan(&t.bank, mid24).await;
    accepted += 1;

    // Collateral-free and guarantee-free by definition.
    let mut secured = standard_loan("C-SECURED", HOUSEHOLD);
    secured.collateral_free = false;
    expect_refused(loans.create_loan(secured).await, "NOT_COLLATERAL_FREE");
    let mut guaranteed = standard_loan("C-GUARANTEED", HOUSEHOLD);
    guaranteed.guarantee_free = false;
    expect_refused(loans.create_loan(guaranteed).await, "NOT_COLLATERAL_FREE");

    // Age on the contract date 2021-01-25: 17 and 66 refused; 18 today and 65 accepted.
    for (birth, contract) in [("20030601", "C-AGE-17"), ("19540601", "C-AGE-66")] {
        let mut req = standard_loan(contract, HOUSEHOLD);
        req.borrower_id_number = id_number(birth);
        expect_refused(loans.create_loan(req).await, "BORROWER_AGE_OUT_OF_RANGE");
    }
    for (birth, contract, household) in
        [("20030125", "C-AGE-18", "H-AGE-18"), ("19550126", "C-AGE-65", "H-AGE-65")]
    {
        app.register_household(&t.finance, household, "19800517").await;
        let mut req = standard_loan(contract, household);
        req.borrower_id_number = id_number(birth);
        app.create_loan(&t.bank, req).await;
        accepted += 2;
    }

    // Refusals post nothing.
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), journal_before + accepted);
    check_chain(&journal);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// Disbursing more than contracted, repaying more than is outstanding, repaying a loan with
/// nothing paid out, and value dates that go back in time.
async fn disbursement_and_repayment_refusals(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = loan_id("C001");
    app.create_loan(&t.bank, standard_loan("C001", HOUSEHOLD)).await;
    let mut loans = app.loans(&t.bank);

    expect_refused(
        loans
            .record_repayment(pb::RecordRepaymentRequest {
                request_id: rid("repay"),
                loan_id: id.clone(),
                value_date: "2021-02-01".into(),
                amount_fen: 100,
                subsidy_netted_fen: 0,
            })
            .await,
        "LOAN_NOT_REPAYABLE",
    );
    expect_refused(
        loans
            .disburse(pb::DisburseRequest {
                request_id: rid("disburse"),
                loan_id: id.clone(),
                value_date: "2021-01-25".into(),
                amount_fen: 5_000_001,
            })
            .await,
        "OVER_DISBURSEMENT",
    );
    let part = loans
        .disburse(pb::DisburseRequest {
            request_id: rid("disburse"),
            loan_id: id.clone(),
            value_date: "2021-01-26".into(),
            amount_fen: 3_000_000,
        })
        .await
        .expect("partial disbursement")
        .into_inner();
    assert_eq!(loan(&part).principal_outstanding_fen, 3_000_000);
    expect_refused(
        loans
            .disburse(pb::DisburseRequest {
                request_id: rid("disburse"),
                loan_id: id.clone(),
                value_date: "2021-01-27".into(),
                amount_fen: 2_000_001,
            })
            .await,
        "OVER_DISBURSEMENT",
    );
    expect_refused(
        loans
            .disburse(pb::DisburseRequest {
                request_id: rid("disburse"),
                loan_id: id.clone(),
                value_date: "2021-01-20".into(),
                amount_fen: 1_000,
            })
            .await,
        "VALUE_DATE_OUT_OF_RANGE",
    );
    // Paying more than is owed is refused, naming what is owed: the payoff amount.
    let quote = app.payoff_quote(&t.bank, &id, "2021-03-20").await;
    assert_eq!(quote.principal_fen, 3_000_000, "{quote:?}");
    // 01-26 ..= 03-20, 54 days at 3.85%: 3,000,000 × 54 × 0.0385 / 360 = 17,325 exactly.
    assert_eq!(quote.total_fen, 3_000_000 + standard_interest(3_000_000, 54), "{quote:?}");
    assert_eq!(quote.total_fen, 3_017_325, "{quote:?}");
    let refused = expect_refused(
        loans
            .record_repayment(pb::RecordRepaymentRequest {
                request_id: rid("repay"),
                loan_id: id.clone(),
                value_date: "2021-03-20".into(),
                amount_fen: quote.total_fen + 1,
                subsidy_netted_fen: 0,
            })
            .await,
        "REPAYMENT_EXCEEDS_OWED",
    );
    let info = refused.get_details_error_info().unwrap();
    assert_eq!(
        info.metadata.get("owed_fen").map(String::as_str),
        Some(quote.total_fen.to_string().as_str()),
        "{info:?}"
    );
    // The quarter's interest settled on 2021-03-20 and not paid: overdue from 03-21, so no
    // more of the principal is paid out, though the loan's last event (the settlement) left it
    // active.
    let run = pb::SettleLoansRequest {
        request_id: rid("settle"),
        ledger_id: LEDGER.into(),
        bank_id: String::new(),
        settlement_date: "2021-03-20".into(),
    };
    app.loans(&t.finance).settle_loans(run).await.expect("the quarter's settlement");
    let tranche = |value_date: &str| pb::DisburseRequest {
        request_id: rid("disburse"),
        loan_id: id.clone(),
        value_date: value_date.into(),
        amount_fen: 1_000_000,
    };
    let refused =
        expect_refused(loans.disburse(tranche("2021-05-01")).await, "LOAN_NOT_DISBURSABLE");
    assert!(refused.message().contains("overdue since 2021-03-21"), "{refused:?}");
    let after = app.get_loan(&t.bank, &id).await;
    assert_eq!(after.principal_outstanding_fen, 3_000_000);
    assert_eq!(after.disbursed_fen, 3_000_000);
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// Malformed input is INVALID_ARGUMENT naming the field; unknown ids are NOT_FOUND; nothing is
/// posted.
async fn malformed_input(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let journal_before = app.journal(&t.auditor, LEDGER).await.len();
    let mut loans = app.loans(&t.bank);

    type Change = Box<dyn Fn(&mut pb::CreateLoanRequest)>;
    let cases: Vec<(&str, Change)> = vec![
        ("principal_fen", Box::new(|r: &mut pb::CreateLoanRequest| r.principal_fen = 0)),
        ("principal_fen", Box::new(|r: &mut pb::CreateLoanRequest| r.principal_fen = -100)),
        (
            "contract_date",
            Box::new(|r: &mut pb::CreateLoanRequest| r.contract_date = "2021-02-30".into()),
        ),
        (
            "contract_date",
            Box::new(|r: &mut pb::CreateLoanRequest| r.contract_date = "25/01/2021".into()),
        ),
        (
            "contract_date",
            Box::new(|r: &mut pb::CreateLoanRequest| r.contract_date = String::new()),
        ),
        ("repayment_method", Box::new(|r: &mut pb::CreateLoanRequest| r.repayment_method = 99)),
        ("repayment_method", Box::new(|r: &mut pb::CreateLoanRequest| r.repayment_method = 0)),
        (
            "settlement_frequency",
            Box::new(|r: &mut pb::CreateLoanRequest| r.settlement_frequency = 99),
        ),
        ("annual_rate", Box::new(|r: &mut pb::CreateLoanRequest| r.annual_rate = "abc".into())),
        (
            "annual_rate",
            Box::new(|r: &mut pb::CreateLoanRequest| r.annual_rate = "0.0385.0".into()),
        ),
        ("annual_rate", Box::new(|r: &mut pb::CreateLoanRequest| r.annual_rate = String::new())),
        ("annual_rate", Box::new(|r: &mut pb::CreateLoanRequest| r.annual_rate = "-0.01".into())),
        // A minus sign is a negative rate, even on zero.
        ("annual_rate", Box::new(|r: &mut pb::CreateLoanRequest| r.annual_rate = "-0".into())),
        // Past the 28 decimal places a decimal holds: refused, not rounded to 0.0385 or to 0.
        (
            "annual_rate",
            Box::new(|r: &mut pb::CreateLoanRequest| {
                r.annual_rate = "0.03850000000000000000000000000001".into()
            }),
        ),
        (
            "annual_rate",
            Box::new(|r: &mut pb::CreateLoanRequest| {
                r.annual_rate = "-0.00000000000000000000000000001".into()
            }),
        ),
        // A whole line of a file sent as a date: named, not echoed whole (the answer's trailers
        // would pass what clients take, and the client would see the call fail otherwise).
        (
            "contract_date",
            Box::new(|r: &mut pb::CreateLoanRequest| r.contract_date = "2021-01-25;".repeat(2_000)),
        ),
        (
            "borrower_id_number",
            Box::new(|r: &mut pb::CreateLoanRequest| {
                r.borrower_id_number = "450121198005170000".into()
            }),
        ),
        (
            "borrower_id_number",
            Box::new(|r: &mut pb::CreateLoanRequest| r.borrower_id_number = "12345".into()),
        ),
        // Well formed, its check digit right, born in years to come: no real person's.
        (
            "borrower_id_number",
            Box::new(|r: &mut pb::CreateLoanRequest| r.borrower_id_number = id_number("20990101")),
        ),
    ];
    for (i, (field, change)) in cases.iter().enumerate() {
        let mut req = standard_loan(&format!("C-BAD-{i}"), HOUSEHOLD);
        change(&mut req);
        expect_invalid(loans.create_loan(req).await, field);
    }

    let unknown = standard_loan("C-NOHH", "NO-SUCH-HOUSEHOLD");
    expect_code(loans.create_loan(unknown).await, Code::NotFound);

    expect_code(
        loans
            .disburse(pb::DisburseRequest {
                request_id: rid("disburse"),
                loan_id: "B1-NO-SUCH".into(),
                value_date: "2021-01-25".into(),
                amount_fen: 0,
            })
            .await,
        Code::NotFound,
    );
    expect_code(
        loans
            .get_loan(pb::GetLoanRequest {
                loan_id: "B1-NO-SUCH".into(),
                as_of: String::new(),
                through_seq: 0,
            })
            .await,
        Code::NotFound,
    );

    let id = loan_id("C001");
    app.create_loan(&t.bank, standard_loan("C001", HOUSEHOLD)).await;
    expect_invalid(
        loans
            .disburse(pb::DisburseRequest {
                request_id: rid("disburse"),
                loan_id: id.clone(),
                value_date: "2021-13-01".into(),
                amount_fen: 0,
            })
            .await,
        "value_date",
    );
    expect_invalid(
        loans
            .disburse(pb::DisburseRequest {
                request_id: rid("disburse"),
                loan_id: id.clone(),
                value_date: "2021-01-25".into(),
                amount_fen: -1,
            })
            .await,
        "amount_fen",
    );
    app.disburse(&t.bank, &id, "2021-01-25").await;
    expect_invalid(
        loans
            .record_repayment(pb::RecordRepaymentRequest {
                request_id: rid("repay"),
                loan_id: id.clone(),
                value_date: "2021-03-20".into(),
                amount_fen: -1,
                subsidy_netted_fen: 0,
            })
            .await,
        "amount_fen",
    );
    expect_invalid(
        loans
            .record_repayment(pb::RecordRepaymentRequest {
                request_id: rid("repay"),
                loan_id: id.clone(),
                value_date: "2021-03-20".into(),
                amount_fen: 0,
                subsidy_netted_fen: 0,
            })
            .await,
        "amount_fen",
    );
    expect_invalid(
        loans
            .record_repayment(pb::RecordRepaymentRequest {
                request_id: String::new(),
                loan_id: id.clone(),
                value_date: "2021-03-20".into(),
                amount_fen: 1,
                subsidy_netted_fen: 0,
            })
            .await,
        "request_id",
    );
    // A file's name and line with a space: the message says what is wrong with it.
    let spaced = expect_invalid(
        loans
            .record_repayment(pb::RecordRepaymentRequest {
                request_id: "B1 20210320.csv:17".into(),
                loan_id: id.clone(),
                value_date: "2021-03-20".into(),
                amount_fen: 1,
                subsidy_netted_fen: 0,
            })
            .await,
        "request_id",
    );
    assert!(spaced.message().contains("without spaces"), "{}", spaced.message());

    let mut registry = app.registry(&t.finance);
    let mut bad_status = household_request("H-BAD", "19800517");
    bad_status.status = 99;
    expect_invalid(registry.register_household(bad_status).await, "status");
    // A name that would show reversed on an auditor's screen.
    let mut turned = household_request("H-BAD", "19800517");
    turned.head_name = "韦\u{202E}宝小".into();
    let refused = expect_invalid(registry.register_household(turned).await, "head_name");
    assert!(refused.message().contains("direction-changing"), "{}", refused.message());
    // Padding is not counted: 200 characters and a fixed-width file's blanks are taken, trimmed.
    let mut padded = household_request("H-PADDED", "19850312");
    padded.head_name = format!("{}{}", "韦".repeat(200), " ".repeat(10));
    let registered = registry.register_household(padded).await.expect("a padded name").into_inner();
    assert_eq!(registered.household.expect("the household").head_name, "韦".repeat(200));
    let mut long = household_request("H-TOO-LONG", "19850313");
    long.head_name = format!(" {}", "韦".repeat(201));
    expect_invalid(registry.register_household(long).await, "head_name");
    let mut bad_id = household_request("H-BAD", "19800517");
    bad_id.head_id_number = "45012119800517123".into();
    expect_invalid(registry.register_household(bad_id).await, "head_id_number");
    let unborn = household_request("H-BAD", "20990101");
    expect_invalid(registry.register_household(unborn).await, "head_id_number");
    // Check digits right by chance: a number of no province's region, one born before 1900.
    for (region, birth) in [("000000", "19800517"), ("191234", "19800517"), ("450121", "18991231")]
    {
        let mut odd = household_request("H-BAD", "19800517");
        odd.head_id_number = id_number_in(region, birth, 1);
        let refused = expect_invalid(registry.register_household(odd).await, "head_id_number");
        let why = if region == "450121" { "before 1900" } else { "the code of no province" };
        assert!(refused.message().contains(why), "{refused:?}");
    }
    // A head's name of a joiner alone (kept between letters, for the scripts that need it)
    // shows blank: refused as no name.
    let mut blank = household_request("H-BAD", "19800517");
    blank.head_name = "\u{200D}".into();
    let refused = expect_invalid(registry.register_household(blank).await, "head_name");
    assert!(refused.message().contains("no letter or digit"), "{refused:?}");
    let mut bad_date = household_request("H-BAD", "19800517");
    bad_date.status_effective_date = "2016-00-01".into();
    expect_invalid(registry.register_household(bad_date).await, "status_effective_date");
    expect_code(
        registry
            .set_household_status(pb::SetHouseholdStatusRequest {
                request_id: rid("status"),
                household_id: "NO-SUCH-HOUSEHOLD".into(),
                status: pb::HouseholdStatus::Exited as i32,
                effective_date: "2020-01-01".into(),
                reason: String::new(),
            })
            .await,
        Code::NotFound,
    );
    expect_code(
        app.registry(&t.operator)
            .register_bank(pb::RegisterBankRequest {
                request_id: rid("bank"),
                ledger_id: "999999".into(),
                bank_id: "B9".into(),
                name: "nowhere".into(),
            })
            .await,
        Code::NotFound,
    );
    // A bank id with '-' would make loan ids ambiguous: "B1-2021" + "001" = "B1" + "2021-001".
    expect_invalid(
        app.registry(&t.operator)
            .register_bank(pb::RegisterBankRequest {
                request_id: rid("bank"),
                ledger_id: LEDGER.into(),
                bank_id: "B1-2021".into(),
                name: "hyphenated".into(),
            })
            .await,
        "bank_id",
    );
    // A loan id is at most 64 characters, like every identifier a call names it by: "B1-" and
    // 61 more is the longest a contract of B1 can have (for a household with room under its cap).
    app.register_household(&t.finance, "H-LONG", "19800517").await;
    expect_invalid(
        loans.create_loan(standard_loan(&"C".repeat(62), "H-LONG")).await,
        "contract_number",
    );

    // A message that is not a protobuf message of its type at all (a client's encoder broken):
    // INVALID_ARGUMENT naming the field prost stopped at, from the message's top (a oneof's
    // member by its own name), never INTERNAL; nothing is posted.
    let batch = pb::SubmitBatchRequest {
        items: vec![repayment_item("raw-1", "B1-NOT-UTF8", "2021-03-20", 100)],
    };
    let mut body = prost::Message::encode_to_vec(&batch);
    let at = body.windows(8).position(|w| w == b"NOT-UTF8").expect("the loan id's bytes");
    body[at] = 0xff;
    let submit = "/loanledger.v1.LoanService/SubmitBatch";
    let refused = app.raw_call(&t.bank, submit, body).await.map(tonic::Response::new);
    let refused = expect_invalid(refused, "items.repayment.loan_id");
    assert_eq!(
        refused.message(),
        "items.repayment.loan_id cannot be decoded as protobuf: invalid string value: data is \
         not UTF-8 encoded"
    );
    // A field of a wire type no protobuf message has (7): the message as a whole.
    let get = "/loanledger.v1.LoanService/GetLoan";
    let refused = app.raw_call(&t.bank, get, vec![0x0f]).await.map(tonic::Response::new);
    let refused = expect_code(refused, Code::InvalidArgument);
    assert!(
        refused.message().starts_with("the message cannot be decoded as protobuf: "),
        "{refused:?}"
    );
    // The same call well formed reaches the service.
    let well_formed = prost::Message::encode_to_vec(&pb::GetLoanRequest {
        loan_id: "B1-NONE".into(),
        ..Default::default()
    });
    let missing = app.raw_call(&t.bank, get, well_formed).await.map(tonic::Response::new);
    expect_code(missing, Code::NotFound);

    // Only the contract, its disbursement and the two households were posted.
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), journal_before + 4);
    assert!(app.verify(&t.auditor).await.ok);

    // The longest loan id is created and named by the calls that follow.
    let longest = app.create_loan(&t.bank, standard_loan(&"C".repeat(61), "H-LONG")).await;
    let longest = loan(&longest).loan_id.clone();
    assert_eq!(longest.len(), 64);
    app.disburse(&t.bank, &longest, "2021-01-25").await;
    assert_eq!(app.get_loan(&t.bank, &longest).await.loan_id, longest);
    app.finish().await;
}

/// The same request twice gets the same answer and posts once; the same id with other content is
/// ALREADY_EXISTS; both hold across a restart.
async fn idempotent_replay(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = loan_id("C001");
    let mut loans = app.loans(&t.bank);

    let household = household_request("H-IDEM", "19800517");
    let h1 = app
        .registry(&t.finance)
        .register_household(household.clone())
        .await
        .expect("first")
        .into_inner();
    let len_after_household = app.journal(&t.auditor, LEDGER).await.len();
    let h2 = app
        .registry(&t.finance)
        .register_household(household.clone())
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(h1, h2);
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), len_after_household);

    let create = standard_loan("C001", HOUSEHOLD);
    let c1 = loans.create_loan(create.clone()).await.unwrap().into_inner();
    let len_after_contract = app.journal(&t.auditor, LEDGER).await.len();
    assert_eq!(len_after_contract, len_after_household + 1);
    let c2 = loans.create_loan(create.clone()).await.unwrap().into_inner();
    assert_eq!(c1, c2, "a replayed CreateLoan answers as the first time");
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), len_after_contract);

    let disburse = pb::DisburseRequest {
        request_id: rid("disburse"),
        loan_id: id.clone(),
        value_date: "2021-01-25".into(),
        amount_fen: 0,
    };
    let d1 = loans.disburse(disburse.clone()).await.unwrap().into_inner();
    let len_after_disburse = app.journal(&t.auditor, LEDGER).await.len();
    let d2 = loans.disburse(disburse.clone()).await.unwrap().into_inner();
    assert_eq!(entry(&d1), entry(&d2));
    assert_eq!(d1, d2);
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), len_after_disburse);

    let repay = pb::RecordRepaymentRequest {
        request_id: rid("repay"),
        loan_id: id.clone(),
        value_date: "2021-03-20".into(),
        amount_fen: 1_029_410,
        subsidy_netted_fen: 0,
    };
    let r1 = loans.record_repayment(repay.clone()).await.unwrap().into_inner();
    let r2 = loans.record_repayment(repay.clone()).await.unwrap().into_inner();
    assert_eq!(entry(&r1), entry(&r2));
    assert_eq!(r1, r2);
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), len_after_disburse + 1, "the replay posted nothing");
    let once = loan(&r1).principal_outstanding_fen;
    assert!(once < 5_000_000, "{r1:?}");
    let loan_now = app.get_loan_as_of(&t.bank, &id, "2021-03-20").await;
    assert_eq!(loan_now.principal_outstanding_fen, once, "repaid once");
    assert_eq!(loan_now.principal_repaid_fen + loan_now.interest_paid_fen, 1_029_410);

    // Same id, other content: REQUEST_ID_REUSED.
    let mut other = repay.clone();
    other.amount_fen = 2_000_000;
    expect_exists(loans.record_repayment(other.clone()).await, "REQUEST_ID_REUSED");
    let mut other_create = create.clone();
    other_create.principal_fen = 4_000_000;
    expect_exists(loans.create_loan(other_create.clone()).await, "REQUEST_ID_REUSED");
    let mut other_household = household.clone();
    other_household.village = "西岭村".into();
    let other_registration =
        app.registry(&t.finance).register_household(other_household.clone()).await;
    expect_exists(other_registration, "REQUEST_ID_REUSED");
    // The same contract or household under another request id: the record exists, and the
    // reason says which (not REQUEST_ID_REUSED).
    let again = pb::CreateLoanRequest { request_id: rid("loan"), ..create.clone() };
    expect_exists(loans.create_loan(again).await, "LOAN_EXISTS");
    let again = pb::RegisterHouseholdRequest { request_id: rid("household"), ..household.clone() };
    expect_exists(app.registry(&t.finance).register_household(again).await, "HOUSEHOLD_EXISTS");
    expect_exists(loans.create_loan(other_create.clone()).await, "REQUEST_ID_REUSED");
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal.len());

    // Across a restart.
    drop(loans);
    app.restart().await;
    let mut loans = app.loans(&t.bank);
    let r3 = loans.record_repayment(repay.clone()).await.unwrap().into_inner();
    assert_eq!(entry(&r1), entry(&r3));
    assert_eq!(r1, r3);
    let d3 = loans.disburse(disburse.clone()).await.unwrap().into_inner();
    assert_eq!(d1, d3);
    let c3 = loans.create_loan(create.clone()).await.unwrap().into_inner();
    assert_eq!(c1, c3);
    expect_code(loans.record_repayment(other).await, Code::AlreadyExists);
    expect_code(loans.create_loan(other_create).await, Code::AlreadyExists);
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal.len());
    assert_eq!(
        app.get_loan_as_of(&t.bank, &id, "2021-03-20").await.principal_outstanding_fen,
        once
    );
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// 50 clients, each on its own connection, each registering a household, contracting,
/// disbursing and repaying at once: every write lands exactly once and the chain verifies.
async fn concurrent_clients(backend: Backend) {
    const CLIENTS: usize = 50;
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let base = app.journal(&t.auditor, LEDGER).await.len();

    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let mut registry = app.registry(&t.finance);
        let mut loans = app.loans(&t.bank);
        tasks.push(tokio::spawn(async move {
            let household = format!("H-C{i:03}");
            let contract = format!("CC{i:03}");
            let loan_id = loan_id(&contract);
            let mut ids = Vec::new();
            let mut refs = Vec::new();
            let req = household_request(&household, "19800517");
            ids.push(req.request_id.clone());
            let h = registry.register_household(req).await?.into_inner();
            refs.push(h.entry.unwrap());
            let mut req = standard_loan(&contract, &household);
            req.principal_fen = 1_000_000 + i as i64;
            ids.push(req.request_id.clone());
            refs.push(loans.create_loan(req).await?.into_inner().entry.unwrap());
            let req = pb::DisburseRequest {
                request_id: rid("disburse"),
                loan_id: loan_id.clone(),
                value_date: "2021-02-01".into(),
                amount_fen: 0,
            };
            ids.push(req.request_id.clone());
            refs.push(loans.disburse(req).await?.into_inner().entry.unwrap());
            let req = pb::RecordRepaymentRequest {
                request_id: rid("repay"),
                loan_id: loan_id.clone(),
                value_date: "2021-03-20".into(),
                amount_fen: 500_000 + i as i64,
                subsidy_netted_fen: 0,
            };
            ids.push(req.request_id.clone());
            let last = loans.record_repayment(req).await?.into_inner();
            refs.push(last.entry.clone().unwrap());
            Ok::<_, tonic::Status>((ids, refs, last.loan.unwrap()))
        }));
    }
    let mut request_ids = Vec::new();
    let mut seqs = HashSet::new();
    let mut loans_seen = Vec::new();
    for task in tasks {
        let (ids, refs, loan) = task.await.expect("client task").expect("every write succeeds");
        for w in refs.windows(2) {
            assert!(w[0].seq < w[1].seq, "one client's writes are ordered");
        }
        for r in refs {
            assert!(seqs.insert(r.seq), "seq {} answered twice", r.seq);
        }
        request_ids.extend(ids);
        loans_seen.push(loan);
    }
    assert_eq!(seqs.len(), CLIENTS * 4);

    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), base + CLIENTS * 4, "every write landed exactly once");
    check_chain(&journal);
    let in_journal: Vec<&str> = journal.iter().map(|t| t.request_id.as_str()).collect();
    for id in &request_ids {
        assert_eq!(
            in_journal.iter().filter(|r| *r == id).count(),
            1,
            "request {id} in the journal exactly once"
        );
    }
    // Each repayment first pays the interest settled on 2021-03-20 (2021-02-01 ..= 2021-03-20,
    // 48 days), recomputed here independently, then principal.
    let b = balances(&journal);
    let mut interest_total = 0;
    let mut disbursed_total = 0;
    let mut paid_total = 0;
    for (i, l) in loans_seen.iter().enumerate() {
        let principal = 1_000_000 + i as i64;
        let paid = 500_000 + i as i64;
        let interest = standard_interest(principal, 48);
        assert_eq!(l.interest_paid_fen, interest, "{l:?}");
        assert_eq!(l.principal_repaid_fen, paid - interest, "{l:?}");
        assert_eq!(l.principal_outstanding_fen, principal - (paid - interest), "{l:?}");
        assert_eq!(
            b.get(&format!("loan/{}/principal", l.loan_id)).copied(),
            Some(l.principal_outstanding_fen)
        );
        interest_total += interest;
        disbursed_total += principal;
        paid_total += paid;
    }
    assert_eq!(b["bank/B1/cash"], -disbursed_total + paid_total);
    assert_eq!(b["bank/B1/interest_income"], -interest_total);

    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    assert_eq!(v.head_seq as usize, journal.len());
    assert_eq!(v.head_hash, journal.last().unwrap().hash);
    app.finish().await;
}

/// Creates and disburses `n` loans of 1,000,000 fen for households `H-<prefix><i>`, each
/// loan's writes in order but the loans side by side (sequential setup would cost a durable
/// commit per write), and returns their ids in order.
async fn disbursed_loans(app: &TestApp, t: &Tokens, prefix: &str, n: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut registry = app.registry(&t.finance);
        let mut loans = app.loans(&t.bank);
        let household = format!("H-{prefix}{i:03}");
        let contract = format!("{prefix}{i:03}");
        tasks.push(tokio::spawn(async move {
            registry.register_household(household_request(&household, "19800517")).await?;
            let mut req = standard_loan(&contract, &household);
            req.principal_fen = 1_000_000;
            loans.create_loan(req).await?;
            let id = loan_id(&contract);
            loans
                .disburse(pb::DisburseRequest {
                    request_id: rid("disburse"),
                    loan_id: id.clone(),
                    value_date: "2021-01-25".into(),
                    amount_fen: 0,
                })
                .await?;
            Ok::<_, tonic::Status>(id)
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("setup task").expect("setup write"));
    }
    ids
}

/// Commands that arrive together are committed together, but a refused one does not fail the
/// others, and the same request sent several times at once is posted once.
async fn bad_and_duplicate_commands_in_one_group(backend: Backend) {
    const LOANS: usize = 20;
    const DUPLICATES: usize = 10;
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let ids = disbursed_loans(&app, &t, "G", LOANS).await;
    let base = app.journal(&t.auditor, LEDGER).await.len();

    // Even loans get a valid repayment, odd ones one that exceeds what is owed, and the first
    // loan also gets one more payment sent ten times at once. Each loan owes 55 days of interest
    // on 2021-03-20 (2021-01-25 ..= 2021-03-20), which a payment settles and pays first.
    let interest = standard_interest(1_000_000, 55);
    let duplicate = pb::RecordRepaymentRequest {
        request_id: rid("dup"),
        loan_id: ids[0].clone(),
        value_date: "2021-03-20".into(),
        amount_fen: 12_345,
        subsidy_netted_fen: 0,
    };
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut loans = app.loans(&t.bank);
        let req = pb::RecordRepaymentRequest {
            request_id: rid("repay"),
            loan_id: id.clone(),
            value_date: "2021-03-20".into(),
            amount_fen: if i % 2 == 0 { 400_000 } else { 2_000_000 },
            subsidy_netted_fen: 0,
        };
        tasks.push(tokio::spawn(async move {
            (i, loans.record_repayment(req).await.map(|r| r.into_inner()))
        }));
    }
    let mut dup_tasks = Vec::new();
    for _ in 0..DUPLICATES {
        let mut loans = app.loans(&t.bank);
        let req = duplicate.clone();
        dup_tasks.push(tokio::spawn(async move {
            loans.record_repayment(req).await.map(|r| r.into_inner())
        }));
    }
    for task in tasks {
        let (i, result) = task.await.expect("client task");
        if i % 2 == 0 {
            let answer = result.unwrap_or_else(|s| panic!("valid repayment {i} failed: {s:?}"));
            if i != 0 {
                assert_eq!(loan(&answer).principal_outstanding_fen, 600_000 + interest);
            }
        } else {
            expect_refused(result.map(tonic::Response::new), "REPAYMENT_EXCEEDS_OWED");
        }
    }
    let mut answers = Vec::new();
    for task in dup_tasks {
        answers.push(
            task.await
                .expect("client task")
                .expect("a duplicate of an accepted request gets the first answer"),
        );
    }
    for a in &answers {
        assert_eq!(entry(a), entry(&answers[0]), "every duplicate gets the same entry");
    }

    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), base + LOANS / 2 + 1);
    assert_eq!(journal.iter().filter(|e| e.request_id == duplicate.request_id).count(), 1);
    check_chain(&journal);
    for (i, id) in ids.iter().enumerate() {
        let l = app.get_loan_as_of(&t.bank, id, "2021-03-20").await;
        let (outstanding, interest_paid) = match i {
            0 => (1_000_000 - (400_000 + 12_345 - interest), interest),
            _ if i % 2 == 0 => (600_000 + interest, interest),
            _ => (1_000_000, 0),
        };
        assert_eq!(l.principal_outstanding_fen, outstanding, "{id}");
        assert_eq!(l.interest_paid_fen, interest_paid, "{id}");
    }
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// A loan of [`disbursed_loans`] that was paid `paid` fen in all on 2021-03-20: the 55 days of
/// interest it owed then settled first, the rest principal, and its principal account in the
/// journal's balances `b` is the stored loan's outstanding principal.
async fn assert_paid_on_quarter_day(
    app: &TestApp,
    t: &Tokens,
    b: &BTreeMap<String, i64>,
    id: &str,
    paid: i64,
) {
    let interest = standard_interest(1_000_000, 55);
    let l = app.get_loan(&t.bank, id).await;
    assert_eq!(l.interest_paid_fen, interest, "{id}");
    assert_eq!(l.principal_repaid_fen, paid - interest, "{id}");
    assert_eq!(l.principal_outstanding_fen, 1_000_000 - (paid - interest), "{id}");
    assert_eq!(
        b.get(&format!("loan/{id}/principal")).copied(),
        Some(l.principal_outstanding_fen),
        "{id}"
    );
}

/// Many clients repay the same few loans at once in batches of two, each batch also sent twice at
/// the same time and once more after its answer, while households are registered beside them:
/// the writer plans each group of batch parts on the states the group before it leaves while that
/// one commits, so a loan changed by one group is changed again by the next before the first has
/// landed. Every payment counts
/// once, to the fen, in the journal and in the stored loans, and the journal verifies.
async fn same_loans_from_many_clients(backend: Backend) {
    const LOANS: usize = 4;
    const CLIENTS: usize = 24;
    const PAYMENTS: usize = 8;
    const AMOUNT: i64 = 1_000;
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let ids = disbursed_loans(&app, &t, "M", LOANS).await;
    let base = app.journal(&t.auditor, LEDGER).await.len();

    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let loan_id = ids[c % LOANS].clone();
        let mut first = app.loans(&t.bank);
        let mut twin = first.clone();
        tasks.push(tokio::spawn(async move {
            let mut request_ids = Vec::new();
            for _ in 0..PAYMENTS {
                let items: Vec<pb::BatchItem> = (0..2)
                    .map(|_| repayment_item(&rid("same"), &loan_id, "2021-03-20", AMOUNT))
                    .collect();
                let req = pb::SubmitBatchRequest { items };
                let (a, b) =
                    tokio::join!(first.submit_batch(req.clone()), twin.submit_batch(req.clone()));
                let (a, b) = (a?.into_inner(), b?.into_inner());
                let again = first.submit_batch(req.clone()).await?.into_inner();
                assert_eq!((a.posted, a.failed), (2, 0), "{a:?}");
                for ((x, y), z) in a.results.iter().zip(&b.results).zip(&again.results) {
                    assert!(x.ok, "{x:?}");
                    assert_eq!(x.entry, y.entry, "sent twice at once: one answer");
                    assert_eq!(x.entry, z.entry, "sent again later: the same answer");
                    assert_eq!(
                        (x.principal_outstanding_fen, x.principal_outstanding_fen),
                        (y.principal_outstanding_fen, z.principal_outstanding_fen),
                        "the same principal outstanding in each answer"
                    );
                    assert!(x.principal_outstanding_fen > 0, "{x:?}");
                }
                request_ids.extend(req.items.iter().map(|i| i.request_id.clone()));
            }
            Ok::<_, tonic::Status>(request_ids)
        }));
    }
    let mut registrations = Vec::new();
    for i in 0..LOANS {
        let mut registry = app.registry(&t.finance);
        registrations.push(tokio::spawn(async move {
            for j in 0..PAYMENTS {
                let household = format!("H-R{i}{j}");
                registry.register_household(household_request(&household, "19800517")).await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    let mut request_ids = Vec::new();
    for task in tasks {
        request_ids.extend(task.await.expect("client task").expect("every repayment succeeds"));
    }
    for task in registrations {
        task.await.expect("registry task").expect("every registration succeeds");
    }

    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), base + CLIENTS * PAYMENTS * 2 + LOANS * PAYMENTS);
    check_chain(&journal);
    let mut posted: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &journal[base..] {
        *posted.entry(e.request_id.as_str()).or_default() += 1;
    }
    for id in &request_ids {
        assert_eq!(posted.get(id.as_str()), Some(&1), "request {id} posted once");
    }
    let paid = (CLIENTS / LOANS * PAYMENTS * 2) as i64 * AMOUNT;
    let b = balances(&journal);
    for id in &ids {
        assert_paid_on_quarter_day(&app, &t, &b, id, paid).await;
    }
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// One batch larger than a part (the writer cuts it into parts of 500 and plans the later parts
/// while the first commits), on loans the writer does not hold (the server was restarted), so
/// the planned parts read their loans through the readers' pool. Among the items: a loan that
/// does not exist, a request id of the first part sent again in the last, and an item sent twice
/// within the last part. Each item gets its own answer, every payment counts once, to the fen,
/// and the journal verifies.
async fn large_batch_on_loans_not_held(backend: Backend) {
    const LOANS: usize = 12;
    const ITEMS: usize = 1_200;
    const AMOUNT: i64 = 1_000;
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let ids = disbursed_loans(&app, &t, "P", LOANS).await;
    let base = app.journal(&t.auditor, LEDGER).await.len();
    app.restart().await;

    // The first part pays the first half of the loans; the later parts mostly the other half,
    // which the writer holds only once it has read them, and every tenth item the first half.
    let half = LOANS / 2;
    let loan_of = |i: usize| match i {
        _ if i < 500 || i.is_multiple_of(10) => &ids[i % half],
        _ => &ids[half + i % half],
    };
    let mut items: Vec<pb::BatchItem> = (0..ITEMS)
        .map(|i| repayment_item(&format!("big-{i}"), loan_of(i), "2021-03-20", AMOUNT))
        .collect();
    let unknown = 1_150;
    items[unknown] = repayment_item("big-unknown", &loan_id("NOPE999"), "2021-03-20", AMOUNT);
    // Item 20 (first part) again as item 1,100 (third part): the same request.
    items[1_100] = items[20].clone();
    // Item 1,190 twice within the third part.
    items[1_199] = items[1_190].clone();
    let answer = app
        .loans(&t.bank)
        .submit_batch(pb::SubmitBatchRequest { items: items.clone() })
        .await
        .expect("SubmitBatch")
        .into_inner();
    assert_eq!((answer.posted as usize, answer.failed), (ITEMS - 1, 1), "{:?}", answer.failed);
    assert_eq!(answer.results.len(), ITEMS);
    for (i, r) in answer.results.iter().enumerate() {
        assert_eq!(r.index as usize, i);
        assert_eq!(r.request_id, items[i].request_id);
        if i == unknown {
            assert!(!r.ok);
            assert_eq!(r.code, "NOT_FOUND", "{r:?}");
        } else {
            assert!(r.ok, "item {i}: {r:?}");
        }
    }
    assert_eq!(answer.results[1_100].entry, answer.results[20].entry, "sent again: one entry");
    assert_eq!(answer.results[1_199].entry, answer.results[1_190].entry, "sent twice: one entry");

    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), base + ITEMS - 3);
    check_chain(&journal);
    let mut payments: BTreeMap<&str, i64> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(pb::batch_item::Item::Repayment(r)) = &item.item
            && i != unknown
            && seen.insert(item.request_id.as_str())
        {
            *payments.entry(r.loan_id.as_str()).or_default() += 1;
        }
    }
    let b = balances(&journal);
    for id in &ids {
        assert_paid_on_quarter_day(&app, &t, &b, id, payments[id.as_str()] * AMOUNT).await;
    }
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// ListLoans pages through loans in loan_id order and filters by household and status.
async fn list_loans_pages(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let ids = disbursed_loans(&app, &t, "P", 5).await;
    let mut loans = app.loans(&t.bank);
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = loans
            .list_loans(pb::ListLoansRequest {
                bank_id: BANK.into(),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("ListLoans page")
            .into_inner();
        assert!(page.loans.len() <= 2);
        seen.extend(page.loans.into_iter().map(|l| l.loan_id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ids, "every loan once, in loan_id order");
    let by_household = loans
        .list_loans(pb::ListLoansRequest {
            bank_id: BANK.into(),
            household_id: "H-P002".into(),
            ..Default::default()
        })
        .await
        .expect("ListLoans by household")
        .into_inner();
    assert_eq!(
        by_household.loans.iter().map(|l| l.loan_id.as_str()).collect::<Vec<_>>(),
        vec![ids[2].as_str()]
    );
    let paid_off = app.pay_off(&t.bank, &ids[1], "2021-03-20").await;
    assert_eq!(loan(&paid_off).status, pb::LoanStatus::Settled as i32);
    let settled = app
        .loans(&t.auditor)
        .list_loans(pb::ListLoansRequest {
            ledger_id: LEDGER.into(),
            status: pb::LoanStatus::Settled as i32,
            ..Default::default()
        })
        .await
        .expect("ListLoans by status")
        .into_inner();
    assert_eq!(
        settled.loans.iter().map(|l| l.loan_id.as_str()).collect::<Vec<_>>(),
        vec![ids[1].as_str()]
    );

    // A live status is the one today, as listed, not the one at the loan's last event: the other
    // four, disbursed in 2021 and never repaid, are 90 days overdue now though their last event
    // left them active; a loan contracted and disbursed today is active.
    let today = chrono::Utc::now()
        .with_timezone(&loanledger::startup::business_utc_offset_default())
        .date_naive()
        .to_string();
    app.register_household(&t.finance, "H-P900", "19800517").await;
    let fresh = pb::CreateLoanRequest {
        annual_rate: "0.02".into(),
        ..standard_loan_on("P900", "H-P900", &today)
    };
    app.create_loan(&t.bank, fresh).await;
    app.disburse(&t.bank, &loan_id("P900"), &today).await;
    let by_status = |wanted: pb::LoanStatus, page_size: u32| {
        let mut loans = app.loans(&t.bank);
        async move {
            let (mut listed, mut token, mut pages) = (Vec::new(), String::new(), 0);
            loop {
                let page = loans
                    .list_loans(pb::ListLoansRequest {
                        bank_id: BANK.into(),
                        status: wanted as i32,
                        page_size,
                        page_token: token,
                        ..Default::default()
                    })
                    .await
                    .expect("ListLoans by status")
                    .into_inner();
                pages += 1;
                assert!(page.loans.len() <= page_size as usize);
                for l in page.loans {
                    assert_eq!(l.status, wanted as i32, "{} listed as {:?}", l.loan_id, l.status);
                    listed.push(l.loan_id);
                }
                token = page.next_page_token;
                if token.is_empty() {
                    return (listed, pages);
                }
            }
        }
    };
    let overdue: Vec<String> = [0, 2, 3, 4].iter().map(|&i| ids[i].clone()).collect();
    assert_eq!(by_status(pb::LoanStatus::Overdue90, 2).await, (overdue, 2));
    assert_eq!(by_status(pb::LoanStatus::Active, 2).await, (vec![loan_id("P900")], 1));
    assert_eq!(by_status(pb::LoanStatus::Overdue, 100).await, (Vec::new(), 1));
    expect_invalid(
        loans
            .list_loans(pb::ListLoansRequest {
                bank_id: BANK.into(),
                page_token: "not-a-token".into(),
                ..Default::default()
            })
            .await,
        "page_token",
    );

    // A token goes on with the query it was issued for (AIP-158), whatever the page size; with
    // other filters, or from another caller, it is refused rather than start that listing
    // part-way and skip what comes before it.
    let first = pb::ListLoansRequest { page_size: 1, ..Default::default() };
    let token = loans.list_loans(first.clone()).await.expect("a page").into_inner().next_page_token;
    assert!(!token.is_empty());
    let next = pb::ListLoansRequest { page_size: 3, page_token: token.clone(), ..first.clone() };
    let page = loans.list_loans(next.clone()).await.expect("the next page").into_inner();
    let listed: Vec<&str> = page.loans.iter().map(|l| l.loan_id.as_str()).collect();
    assert_eq!(listed, ids[1..4].iter().map(String::as_str).collect::<Vec<_>>());
    let other_query = pb::ListLoansRequest { household_id: "H-P004".into(), ..next.clone() };
    let refused = loans.list_loans(other_query).await;
    let refused = expect_invalid(refused, "page_token");
    assert!(refused.message().contains("another query"), "{refused:?}");
    let other_status =
        pb::ListLoansRequest { status: pb::LoanStatus::Settled as i32, ..next.clone() };
    expect_invalid(loans.list_loans(other_status).await, "page_token");
    let auditor = app.loans(&t.auditor).list_loans(next.clone()).await;
    expect_invalid(auditor, "page_token");
    // The bare form of earlier builds names no query.
    let bare = token.split('@').next().expect("the page part").to_string();
    assert!(bare.starts_with("after:"), "{token}");
    let bare = pb::ListLoansRequest { page_token: bare, ..next };
    expect_invalid(loans.list_loans(bare).await, "page_token");
    app.finish().await;
}

/// A head's identity number heads one household of a ledger: a second household under it would
/// double the household cap, which counts all members' loans together. The refusal names the
/// household the person heads, is recorded (a retry gets it again, nothing is registered), and
/// holds within one group as across groups; another ledger may register the same person.
async fn a_person_heads_one_household_of_a_ledger(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let mut registry = app.registry(&t.finance);
    let head = registry
        .get_household(pb::GetHouseholdRequest { household_id: HOUSEHOLD.into() })
        .await
        .expect("the seeded household")
        .into_inner()
        .head_id_number;
    assert!(!head.contains('*'), "in full to the finance office: {head}");
    let before = app.verify(&t.auditor).await.head_seq;

    // The same person again, sent with spaces around it (read as the same number).
    let mut again = household_request("H-TWICE", "19800517");
    again.head_id_number = format!(" {head} ");
    for _ in 0..2 {
        let status = expect_refused(
            registry.register_household(again.clone()).await,
            "HEAD_ALREADY_REGISTERED",
        );
        assert!(
            status.message().starts_with(
                "HEAD_ALREADY_REGISTERED: head_id_number already heads household H001 of ledger 450121"
            ),
            "{status:?}"
        );
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.metadata.get("household_id").map(String::as_str), Some(HOUSEHOLD));
    }
    expect_code(
        registry.get_household(pb::GetHouseholdRequest { household_id: "H-TWICE".into() }).await,
        Code::NotFound,
    );
    // Recorded: its request id, sent again with other content, is a reused one.
    let mut other = again.clone();
    other.household_id = "H-OTHER".into();
    let reused = registry.register_household(other).await;
    assert_eq!(reused.expect_err("reused").code(), Code::AlreadyExists);
    // A new request for the same person in another household is refused alike.
    again.request_id = rid("household");
    again.household_id = "H-THRICE".into();
    expect_refused(registry.register_household(again).await, "HEAD_ALREADY_REGISTERED");
    // A number whose check character is X, sent in lower case, is the same person.
    let mut x = household_request("H-X", "19491231");
    x.head_id_number = id_number_in("110105", "19491231", 2);
    assert!(x.head_id_number.ends_with('X'));
    registry.register_household(x.clone()).await.expect("H-X");
    x.request_id = rid("household");
    x.household_id = "H-X2".into();
    x.head_id_number = x.head_id_number.to_lowercase();
    expect_refused(registry.register_household(x).await, "HEAD_ALREADY_REGISTERED");

    // Two registrations of one new head at once: one household is registered, whichever
    // group or order they meet in, and the other is refused naming it.
    let person = id_number("19750101");
    let mut first = household_request("H-A", "19750101");
    first.head_id_number = person.clone();
    let mut second = household_request("H-B", "19750101");
    second.head_id_number = person.clone();
    let (mut r1, mut r2) = (app.registry(&t.finance), app.registry(&t.finance));
    let (a, b) = tokio::join!(r1.register_household(first), r2.register_household(second));
    let (registered, refused) = match (a, b) {
        (Ok(_), Err(e)) => ("H-A", Err::<(), _>(e)),
        (Err(e), Ok(_)) => ("H-B", Err(e)),
        other => panic!("one of the two is registered: {other:?}"),
    };
    let status = expect_refused(refused.map(tonic::Response::new), "HEAD_ALREADY_REGISTERED");
    assert_eq!(
        status.get_details_error_info().expect("ErrorInfo").metadata.get("household_id"),
        Some(&registered.to_string())
    );

    // Another ledger registers the same person: the rule is a ledger's.
    app.create_ledger(&t.operator, "450122", "another county").await;
    let elsewhere = app.token(Role::Finance, "450122").await;
    let mut other = household_request("H-ELSE", "19800517");
    other.ledger_id = "450122".into();
    other.head_id_number = head.clone();
    app.registry(&elsewhere).register_household(other).await.expect("another ledger's household");

    // Only the two households went into the journal, and it verifies.
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    assert_eq!(v.head_seq, before + 2, "two registrations in this ledger");
    app.finish().await;
}

/// A borrower belongs to one household of a ledger: the one they head, or the one they owed a
/// loan for on the contract's date (counted as the cap counts it). Otherwise a person could borrow up to the cap
/// for each of two households. The refusal names the household, is recorded, and lifts once the
/// person's loans of that household no longer count (here: contracts never paid out whose
/// maturity has come).
async fn a_person_borrows_for_one_household_of_a_ledger(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let head_of_h2 = id_number("19700101");
    let mut h2 = household_request("H002", "19700101");
    h2.head_id_number = head_of_h2.clone();
    app.registry(&t.finance).register_household(h2).await.expect("H002");
    let mut loans = app.loans(&t.bank);
    let loan_to = |contract: &str, household: &str, borrower: &str| {
        let mut req = standard_loan(contract, household);
        req.borrower_id_number = borrower.to_string();
        req.principal_fen = 1_000_000;
        req
    };
    let refused_for = |status: tonic::Status, household: &str| {
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "BORROWER_OF_ANOTHER_HOUSEHOLD", "{status:?}");
        assert_eq!(info.metadata.get("household_id").map(String::as_str), Some(household));
        assert!(status.message().contains(&format!("belongs to household {household}")));
    };

    // H002's head borrows for H001: refused, naming H002, and again when retried.
    let req = loan_to("C1", HOUSEHOLD, &head_of_h2);
    for _ in 0..2 {
        refused_for(
            expect_code(loans.create_loan(req.clone()).await, Code::FailedPrecondition),
            "H002",
        );
    }
    // Recorded: its request id, sent again with other content, is a reused one.
    let other = pb::CreateLoanRequest { principal_fen: 900_000, ..req.clone() };
    let reused = loans.create_loan(other).await;
    assert_eq!(reused.expect_err("reused").code(), Code::AlreadyExists);
    // A member of H001 (heading none) borrows for it, and again; then for H002: refused.
    let member = id_number("19850301");
    app.create_loan(&t.bank, loan_to("C2", HOUSEHOLD, &member)).await;
    app.create_loan(&t.bank, loan_to("C3", HOUSEHOLD, &member)).await;
    let req = loan_to("C4", "H002", &member);
    refused_for(expect_code(loans.create_loan(req).await, Code::FailedPrecondition), HOUSEHOLD);
    // H002's own head borrows for it.
    app.create_loan(&t.bank, loan_to("C5", "H002", &head_of_h2)).await;
    expect_code(
        loans
            .get_loan(pb::GetLoanRequest {
                loan_id: loan_id("C4"),
                as_of: String::new(),
                through_seq: 0,
            })
            .await,
        Code::NotFound,
    );

    // A year on, C2 and C3 (never paid out, matured 2022-01-25) no longer count: the member may
    // borrow for H002, here from another bank.
    app.register_bank(&t.operator, "A2").await;
    let a2 = app.bank_token("A2").await;
    let in_2022 = |contract: &str, date: &str| {
        let mut later = loan_to(contract, "H002", &member);
        later.contract_date = date.into();
        later.annual_rate = "0.037".into(); // the 1-year LPR then
        later
    };
    let mut c6 = in_2022("C6", "2022-03-01");
    c6.bank_id = "A2".into();
    app.create_loan(&a2, c6).await;
    // Nor may C2 be paid out now, back-dated before its maturity: the person would owe loans of
    // both households. The refusal names neither A2's loan nor its date: a bank never learns
    // whether another bank's loan exists.
    let disburse_c2 = || pb::DisburseRequest {
        request_id: rid("disburse"),
        loan_id: loan_id("C2"),
        value_date: "2021-06-01".into(),
        amount_fen: 1_000_000,
    };
    let status = expect_refused(loans.disburse(disburse_c2()).await, "LOAN_NOT_DISBURSABLE");
    assert!(
        status.message().contains(
            "and its borrower, for household H002, has contracted a loan with another bank since \
             without this contract counting against the cap"
        ),
        "{status:?}"
    );
    assert!(!status.message().contains("A2") && !status.message().contains("2022-03-01"));
    // With a later loan of the bank's own as well, that one is named, though A2's sorts first.
    app.create_loan(&t.bank, in_2022("C7", "2022-03-02")).await;
    let status = expect_refused(loans.disburse(disburse_c2()).await, "LOAN_NOT_DISBURSABLE");
    assert!(
        status.message().contains(
            "and its borrower, for household H002, has contracted loan B1-C7 since (2022-03-02)"
        ),
        "{status:?}"
    );

    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// Identifiers whose order as bytes is not their order in the database's collation (upper
/// case before lower case as bytes, not in en-US): loans are listed in the order of their bytes
/// on both backends, and the ledger verifies as on any other database.
async fn bytewise_ids_whatever_the_collation(backend: Backend) {
    let Some(app) = TestApp::spawn_collated(backend, Some("en-US")).await else {
        return;
    };
    let t = app.seed().await;
    if backend == Backend::Postgres {
        // The database's own collation puts lower case first.
        let loanledger::store::Db::Postgres(pool, _) = &app.db else { unreachable!() };
        let lower_first: bool =
            sqlx::query_scalar("select 'abc' < 'ABD'").fetch_one(pool).await.expect("a compare");
        assert!(lower_first, "the database's collation orders as the bytes do");
    }
    for bank in ["ABD", "abc", "Ab_1", "a.b"] {
        app.register_bank(&t.operator, bank).await;
    }
    let households = [("HH2", "19800517"), ("hh1", "19790203"), ("Hh-3", "19810911")];
    for (household, birth) in households {
        app.register_household(&t.finance, household, birth).await;
    }
    for (contract, (household, _)) in ["abc", "ABD", "Ab-1"].into_iter().zip(households) {
        app.create_loan(&t.bank, standard_loan(contract, household)).await;
    }
    let listed = app
        .loans(&t.bank)
        .list_loans(pb::ListLoansRequest { bank_id: BANK.into(), ..Default::default() })
        .await
        .expect("ListLoans")
        .into_inner();
    let ids: Vec<&str> = listed.loans.iter().map(|l| l.loan_id.as_str()).collect();
    assert_eq!(ids, [loan_id("ABD"), loan_id("Ab-1"), loan_id("abc")], "in the order of bytes");
    let v = app.verify(&t.auditor).await;
    assert!(v.ok && v.problems.is_empty(), "{v:?}");
    app.finish().await;
}

/// The identity-number helper agrees with the example of GB 11643-1999 itself.
#[test]
fn id_number_helper_matches_the_standard() {
    assert_eq!(id_number_in("110105", "19491231", 2), "11010519491231002X");
    let id = id_number("19800517");
    assert_eq!(id.len(), 18);
    assert_eq!(&id[6..14], "19800517");
}

/// A server over a fresh seeded database with loan C001 contracted and paid out on 2021-01-25:
/// the server, the seed's tokens and the loan's id (`None` where the backend is not available).
async fn with_disbursed_loan(backend: Backend) -> Option<(TestApp, Tokens, String)> {
    let app = TestApp::spawn(backend).await?;
    let t = app.seed().await;
    let id = loan_id("C001");
    app.create_loan(&t.bank, standard_loan("C001", HOUSEHOLD)).await;
    app.disburse(&t.bank, &id, "2021-01-25").await;
    Some((app, t, id))
}

/// A person who owes a loan of a household (its borrower, not its head) is not registered as
/// the head of another household of the ledger while the loan is open
/// (`BORROWER_OF_ANOTHER_HOUSEHOLD`, naming it): the two caps would count the family twice, as
/// a contract of that person for another household would be refused. Once the loan is closed,
/// the household is registered (a split, 分户), with its status history from whenever it
/// started, before the loan's close too. A contract never paid out by its maturity does not
/// count, so its borrower may head a household; then it is not paid out, dated back. A
/// registration dated ahead (2062 typed for 2026) is
/// refused, naming the field: the household would be unregistered, unlendable, until then (both
/// since 2026-12-06).
async fn a_borrower_heads_no_other_household_while_owing(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let borrower = app.get_loan(&t.bank, &id).await.borrower_id_number;
    assert!(!borrower.contains('*'), "{borrower}");
    let mut registry = app.registry(&t.finance);
    let split = |date: &str| pb::RegisterHouseholdRequest {
        request_id: rid("household"),
        head_id_number: borrower.clone(),
        status_effective_date: date.into(),
        ..household_request("H-SPLIT", "19800517")
    };
    let journal = app.journal(&t.auditor, LEDGER).await;
    let owing = expect_refused(
        registry.register_household(split("2021-02-01")).await,
        "BORROWER_OF_ANOTHER_HOUSEHOLD",
    );
    let info = owing.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.metadata.get("household_id").map(String::as_str), Some(HOUSEHOLD));
    let ahead = expect_invalid(
        registry.register_household(split("2062-03-01")).await,
        "status_effective_date",
    );
    assert!(ahead.message().contains("is in the future"), "{ahead:?}");
    assert_eq!(app.journal(&t.auditor, LEDGER).await, journal, "nothing recorded");
    // Paid off on 2021-03-20: the household is registered, registered poor from 2021-02-01.
    app.pay_off(&t.bank, &id, "2021-03-20").await;
    registry.register_household(split("2021-02-01")).await.expect("a split once it closed");

    // A contract of H001 never paid out by its maturity (2022-03-20) counts no more: its
    // borrower may head a household of their own. Then it is not paid out, dated back before
    // that maturity: the person would owe loans of two households.
    let mut contract = standard_loan_on("C002", HOUSEHOLD, "2021-03-20");
    let borrower = contract.borrower_id_number.clone();
    contract.borrower_name = "成员C002".into();
    app.create_loan(&t.bank, contract).await;
    let own = pb::RegisterHouseholdRequest {
        request_id: rid("household"),
        head_id_number: borrower,
        ..household_request("H-SPLIT2", "19800517")
    };
    registry.register_household(own).await.expect("the expired contract does not count");
    let paid_out = app
        .loans(&t.bank)
        .disburse(pb::DisburseRequest {
            request_id: rid("disburse"),
            loan_id: loan_id("C002"),
            value_date: "2021-06-01".into(),
            amount_fen: 0,
        })
        .await;
    let refused = expect_refused(paid_out, "BORROWER_OF_ANOTHER_HOUSEHOLD");
    let info = refused.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.metadata.get("household_id").map(String::as_str), Some("H-SPLIT2"));
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// As [`with_disbursed_loan`], and a second loan, C002 of household H002, disbursed the same day.
async fn with_two_disbursed_loans(backend: Backend) -> Option<(TestApp, Tokens, String, String)> {
    let (app, t, id) = with_disbursed_loan(backend).await?;
    app.register_household(&t.finance, "H002", "19800517").await;
    let other = loan_id("C002");
    app.create_loan(&t.bank, standard_loan("C002", "H002")).await;
    app.disburse(&t.bank, &other, "2021-01-25").await;
    Some((app, t, id, other))
}

/// "Today", where a call gives no date, is the date at the server's business offset from UTC
/// (`serve --utc-offset`, China's +08:00 by default), not UTC's: a loan read without `as_of`
/// is shown as of that date (its last event being older). The offset is chosen to put that
/// date a day away from UTC's at the time of the test (-20:00 in UTC's morning, +20:00 after).
async fn today_is_the_business_day(backend: Backend) {
    use chrono::Timelike;
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    // -23:00 puts the date a day before UTC's from 00:00 to 23:00 UTC, +23:00 a day after from
    // 01:00 to 24:00: a service using UTC's date fails the checks below, unless UTC's midnight
    // comes during the test (no one offset gives another date on both sides of it).
    let hours = if chrono::Utc::now().hour() < 12 { -23 } else { 23 };
    let offset = chrono::FixedOffset::east_opt(hours * 3600).expect("an offset");
    app.restart_with(offset, loanledger::startup::TOKEN_CACHE_TTL).await;
    let dates = || {
        let now = chrono::Utc::now();
        (now.with_timezone(&offset).date_naive().to_string(), now.date_naive().to_string())
    };
    let (before, utc_before) = dates();
    let shown = app.get_loan(&t.bank, &id).await.as_of;
    let (after, utc_after) = dates();
    assert!(
        shown == before || shown == after,
        "as of {shown}: the date there was {before}, then {after} (UTC's {utc_before}, {utc_after})"
    );

    // A record without a date of its own (a bank registered) bears the business date too.
    let (before, _) = dates();
    let registered = app.register_bank(&t.operator, "B2").await;
    let (after, _) = dates();
    let seq = registered.entry.expect("an entry").seq;
    let journal = app.journal(&t.auditor, LEDGER).await;
    let value_date =
        &journal.iter().find(|txn| txn.seq == seq).expect("the bank's record").value_date;
    assert!(
        *value_date == before || *value_date == after,
        "value date {value_date}: the date there was {before}, then {after}"
    );
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// A loan write dated more than a day after the business date is refused, naming its date
/// field, and nothing is recorded: "2031-03-20" typed for "2021-03-20" would otherwise settle or
/// write off loans years ahead, irreversibly. Today's date is taken.
/// A record made again under another request id is `ALREADY_EXISTS` with the record's own
/// reason (a ledger, a bank, a household, a contract), not the reused id's, and nothing more
/// is journaled; a contract dated before any policy version is `POLICY_NOT_IN_FORCE`, and one
/// dated under the seeded policy (2014-12-10) but before the first LPR (2015-10-24) is
/// `LPR_NOT_IN_FORCE`, for a household eligible then.
async fn records_made_twice_and_contracts_before_the_rules_are_refused(backend: Backend) {
    let Some((app, t, _id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let before = app.journal(&t.auditor, LEDGER).await.len();
    let ledger = pb::CreateLedgerRequest {
        request_id: rid("ledger"),
        ledger_id: LEDGER.into(),
        name: "again".into(),
    };
    expect_exists(app.registry(&t.operator).create_ledger(ledger).await, "LEDGER_EXISTS");
    let bank = pb::RegisterBankRequest {
        request_id: rid("bank"),
        ledger_id: LEDGER.into(),
        bank_id: BANK.into(),
        name: "again".into(),
    };
    expect_exists(app.registry(&t.operator).register_bank(bank).await, "BANK_EXISTS");
    let household = household_request(HOUSEHOLD, "19800517");
    let household = app.registry(&t.finance).register_household(household).await;
    expect_exists(household, "HOUSEHOLD_EXISTS");
    let contract = standard_loan("C001", HOUSEHOLD);
    expect_exists(app.loans(&t.bank).create_loan(contract).await, "LOAN_EXISTS");
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), before, "nothing journaled");

    // Registered poor since 2014-01-01, eligible on either contract date below.
    let early = pb::RegisterHouseholdRequest {
        status_effective_date: "2014-01-01".into(),
        ..household_request("H-2014", "19800517")
    };
    app.registry(&t.finance).register_household(early).await.expect("a household of 2014");
    let unpoliced = standard_loan_on("C2014", "H-2014", "2014-06-01");
    let unpoliced = app.loans(&t.bank).create_loan(unpoliced).await;
    expect_refused(unpoliced, "POLICY_NOT_IN_FORCE");
    let before_lpr = standard_loan_on("C2015", "H-2014", "2015-01-05");
    expect_refused(app.loans(&t.bank).create_loan(before_lpr).await, "LPR_NOT_IN_FORCE");
    app.finish().await;
}

async fn value_dates_in_the_future_are_refused(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    // Five days after UTC's date: past the business date (UTC+08:00) and its day of leeway.
    let future = (chrono::Utc::now() + chrono::Duration::days(5)).date_naive().to_string();
    let journal_before = app.journal(&t.auditor, LEDGER).await.len();
    let mut loans = app.loans(&t.bank);
    let repayment = pb::RecordRepaymentRequest {
        request_id: rid("future"),
        loan_id: id.clone(),
        value_date: future.clone(),
        amount_fen: 100,
        subsidy_netted_fen: 0,
    };
    let refused = expect_invalid(loans.record_repayment(repayment.clone()).await, "value_date");
    assert!(refused.message().contains("is in the future"), "{refused:?}");
    let (request_id, loan_id, value_date) = (rid("future"), id.clone(), future.clone());
    let other_writes = [
        loans
            .disburse(pb::DisburseRequest {
                request_id: request_id.clone(),
                loan_id: loan_id.clone(),
                value_date: value_date.clone(),
                amount_fen: 0,
            })
            .await,
        loans
            .write_off_loan(pb::WriteOffLoanRequest {
                request_id: request_id.clone(),
                loan_id: loan_id.clone(),
                value_date: value_date.clone(),
            })
            .await,
        loans
            .mark_misuse(pb::MarkMisuseRequest {
                request_id: request_id.clone(),
                loan_id: loan_id.clone(),
                value_date: value_date.clone(),
                falsely_obtained: false,
            })
            .await,
        loans
            .extend_loan(pb::ExtendLoanRequest {
                request_id,
                loan_id,
                value_date,
                new_maturity_date: "2040-01-25".into(),
            })
            .await,
    ];
    for refused in other_writes {
        expect_invalid(refused, "value_date");
    }
    let contract = pb::CreateLoanRequest {
        contract_date: future.clone(),
        ..standard_loan("C-FUTURE", HOUSEHOLD)
    };
    expect_invalid(loans.create_loan(contract).await, "contract_date");
    let settle = pb::SettleLoansRequest {
        request_id: rid("future"),
        ledger_id: LEDGER.into(),
        bank_id: String::new(),
        settlement_date: future.clone(),
    };
    expect_invalid(app.loans(&t.finance).settle_loans(settle).await, "settlement_date");
    // A run is not dated even a day ahead (other writes may be): it would date every loan's
    // last event ahead of today, and the day's own payments would be refused as dated before
    // it (until 2026-12-06 it was taken).
    let business_day = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00"))
        .date_naive();
    let ahead = pb::SettleLoansRequest {
        request_id: rid("ahead"),
        ledger_id: LEDGER.into(),
        bank_id: String::new(),
        settlement_date: (business_day + chrono::Days::new(1)).to_string(),
    };
    let nowhere = pb::SettleLoansRequest { ledger_id: "NOPE".into(), ..ahead.clone() };
    let ahead = expect_invalid(app.loans(&t.finance).settle_loans(ahead).await, "settlement_date");
    assert!(ahead.message().contains("is after today"), "{ahead:?}");
    // Named before the ledger is looked at (a ledger that does not exist was NOT_FOUND).
    let nowhere = app.loans(&t.finance).settle_loans(nowhere).await;
    let nowhere = expect_invalid(nowhere, "settlement_date");
    assert!(nowhere.message().contains("is after today"), "{nowhere:?}");
    let item = pb::BatchItem {
        request_id: rid("future"),
        item: Some(pb::batch_item::Item::Repayment(pb::RepaymentItem {
            loan_id: id.clone(),
            value_date: future.clone(),
            amount_fen: 100,
            subsidy_netted_fen: 0,
        })),
    };
    let batch = loans
        .submit_batch(pb::SubmitBatchRequest { items: vec![item] })
        .await
        .expect("SubmitBatch")
        .into_inner();
    let result = &batch.results[0];
    assert_eq!(result.code, "INVALID_ARGUMENT", "{result:?}");
    assert!(result.message.starts_with("value_date ") && result.message.contains("future"));
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal_before, "nothing recorded");

    // Today (by UTC+08:00, or a day before when UTC's midnight passes meanwhile) is taken, on
    // a loan paid out in 2021: the penalty of its overdue years comes first.
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive().to_string();
    let repaid = app.repay(&t.bank, &id, &today, 100).await;
    assert_eq!(entry(&repaid).seq as usize, journal_before + 1);
    // Reads may look ahead; a date past what the loan's figures can be worked out to (a century
    // of quarterly points to catch up) is refused, not shown owing nothing.
    let ahead = app.get_loan_as_of(&t.bank, &id, "2031-03-20").await;
    assert!(ahead.penalty_fen > 0 && ahead.days_overdue > 0, "{ahead:?}");
    // The refusal names the field, the date and the loan's last event.
    let far =
        pb::GetLoanRequest { loan_id: id.clone(), as_of: "2131-03-20".into(), through_seq: 0 };
    let refused = expect_refused(loans.get_loan(far).await, "VALUE_DATE_OUT_OF_RANGE");
    let named = format!(
        "VALUE_DATE_OUT_OF_RANGE: as_of 2131-03-20: more than 240 settlement points to catch up after the loan's last \
         recorded event on {today}"
    );
    assert_eq!(refused.message(), named);
    assert_eq!(metadata(&refused, "field").as_deref(), Some("as_of"), "{refused:?}");
    let quote = |as_of: &str| pb::GetPayoffQuoteRequest {
        loan_id: id.clone(),
        as_of: as_of.into(),
        through_seq: 0,
    };
    let refused = expect_refused(
        loans.get_payoff_quote(quote("2131-03-20")).await,
        "VALUE_DATE_OUT_OF_RANGE",
    );
    assert_eq!(refused.message(), named);
    // A quote is of a date on or after the last event (GetLoan's as_of shows earlier dates).
    let refused = expect_refused(
        loans.get_payoff_quote(quote("2021-03-20")).await,
        "VALUE_DATE_OUT_OF_RANGE",
    );
    assert_eq!(
        refused.message(),
        format!(
            "VALUE_DATE_OUT_OF_RANGE: as_of 2021-03-20 is before the loan's last recorded event \
             on {today}"
        )
    );
    assert_eq!(metadata(&refused, "field").as_deref(), Some("as_of"), "{refused:?}");
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// SetLpr and ListLpr: the operator adds an LPR entry, listed with the seeded ones and used as
/// the rate cap of contracts from its date; a retry (the rate written otherwise too) is the
/// same request; an entry that exists is ALREADY_EXISTS; only an operator sets the table.
/// ListLpr and ListPolicies page, their tokens bound to the listing and the caller.
async fn lpr_table(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let entry = |rate: &str| pb::LprEntry {
        effective_date: "2026-11-20".into(),
        tenor: pb::LprTenor::OneYear as i32,
        rate: rate.into(),
    };
    let req = |request_id: &str, rate: &str| pb::SetLprRequest {
        request_id: request_id.into(),
        entry: Some(entry(rate)),
    };
    expect_code(app.registry(&t.finance).set_lpr(req("l1", "0.029")).await, Code::PermissionDenied);
    let mut registry = app.registry(&t.operator);
    expect_invalid(registry.set_lpr(req(&rid("l"), "2.9%")).await, "entry.rate");
    // A typing error ("0.29" for "0.029"), or none at all: an entry is never changed once set.
    for typo in ["0.29", "0"] {
        let refused = expect_invalid(registry.set_lpr(req(&rid("l"), typo)).await, "entry.rate");
        assert!(refused.message().contains("at most 0.2"), "{refused:?}");
    }
    let set = registry.set_lpr(req("l1", "0.029")).await.expect("SetLpr").into_inner();
    assert_eq!(set.entry, Some(entry("0.029")));
    let again = registry.set_lpr(req("l1", "0.0290")).await.expect("SetLpr again").into_inner();
    assert_eq!(again, set, "the same entry, the rate written otherwise");
    let exists = expect_code(registry.set_lpr(req(&rid("l"), "0.028")).await, Code::AlreadyExists);
    let reason = exists.get_details_error_info().map(|i| i.reason);
    assert_eq!(reason.as_deref(), Some("LPR_ENTRY_EXISTS"), "{exists:?}");
    let listed = app
        .registry(&t.bank)
        .list_lpr(pb::ListLprRequest::default())
        .await
        .expect("ListLpr")
        .into_inner();
    assert_eq!(listed.entries.last(), Some(&entry("0.029")), "{listed:?}");
    assert!(listed.entries.len() > 1, "the seeded entries are listed too");
    assert_eq!(listed.next_page_token, "", "one page by default");
    // Paged (since 2026-12-07), three at a time: the same entries, each once, in order; the
    // last full page's token reads an empty page.
    let mut paged = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let ask = pb::ListLprRequest { page_size: 3, page_token: page_token.clone() };
        let page = app.registry(&t.bank).list_lpr(ask).await.expect("a page").into_inner();
        assert!(page.entries.len() <= 3);
        paged.extend(page.entries);
        pages += 1;
        assert!(pages <= listed.entries.len() + 1, "the pages end");
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(paged, listed.entries);
    assert_eq!(pages, listed.entries.len() / 3 + 1);
    // A token of another listing, or of another caller, is refused naming it.
    let first = pb::ListLprRequest { page_size: 1, page_token: String::new() };
    let token = app.registry(&t.bank).list_lpr(first).await.unwrap().into_inner().next_page_token;
    let by_other = pb::ListLprRequest { page_size: 1, page_token: token.clone() };
    expect_invalid(app.registry(&t.finance).list_lpr(by_other).await, "page_token");
    let policies = pb::ListPoliciesRequest {
        ledger_id: LEDGER.into(),
        page_token: token,
        ..Default::default()
    };
    expect_invalid(app.registry(&t.bank).list_policies(policies).await, "page_token");
    let forged = pb::ListLprRequest { page_size: 1, page_token: "after:x".into() };
    expect_invalid(app.registry(&t.bank).list_lpr(forged).await, "page_token");
    // A ledger's policy versions a page of one at a time: as in one page.
    let all = pb::ListPoliciesRequest { ledger_id: LEDGER.into(), ..Default::default() };
    let all = app.registry(&t.bank).list_policies(all).await.unwrap().into_inner();
    assert!(all.versions.len() > 1 && all.next_page_token.is_empty(), "{all:?}");
    let mut versions = Vec::new();
    let mut page_token = String::new();
    loop {
        let ask = pb::ListPoliciesRequest {
            ledger_id: LEDGER.into(),
            page_size: 1,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = app.registry(&t.bank).list_policies(ask).await.unwrap().into_inner();
        versions.extend(page.versions);
        assert!(versions.len() <= all.versions.len(), "the pages end");
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(versions, all.versions);

    // A one-year contract from 2026-11-25 may charge at most 2.9%.
    let mut contract = standard_loan_on("L29", HOUSEHOLD, "2026-11-25");
    contract.annual_rate = "0.0295".into();
    expect_refused(app.loans(&t.bank).create_loan(contract.clone()).await, "RATE_ABOVE_LPR_CAP");
    // The refusal is its request id's answer: the corrected contract goes under another id.
    contract.annual_rate = "0.029".into();
    expect_exists(app.loans(&t.bank).create_loan(contract.clone()).await, "REQUEST_ID_REUSED");
    contract.request_id = rid("c");
    app.create_loan(&t.bank, contract).await;
    app.finish().await;
}

/// A loan's history reads the loan's links in the loan's own ledger: a link row slipped in
/// (the triggers refuse changes, not inserts) naming a transaction of another ledger does not
/// bring that ledger's transaction into the history (a bank would have seen another region's
/// records).
async fn history_keeps_to_the_loans_ledger(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let before = app.history(&t.bank, &id).await;
    app.create_ledger(&t.operator, "450122", "another county").await;
    let inserted =
        app.db.execute_raw(&link_sql(&id, "450122", 1)).await.expect("inserting is not refused");
    assert_eq!(inserted, 1);
    assert_eq!(app.history(&t.bank, &id).await, before);
    app.finish().await;
}

/// Loans made before new loan ids were held to 64 characters (2026-12-01): its bank's id and its
/// contract number 64 characters each, a loan id of 129, written here as such a build wrote
/// them, through the writer. Every call that names such a loan takes its id (they refused it
/// as longer than an identifier, so that only a settlement run reached it); a character more is
/// still refused.
async fn loans_made_before_the_id_limit_are_still_named(backend: Backend) {
    use loanledger::app::auth::Principal;
    use loanledger::app::command::Command;
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let bank_id = "B".repeat(64);
    app.register_bank(&t.operator, &bank_id).await;
    let bank = app.bank_token(&bank_id).await;
    let ids: Vec<String> =
        ["C", "D"].iter().map(|c| format!("{bank_id}-{}", c.repeat(64))).collect();
    assert!(ids.iter().all(|id| id.len() == 129));
    // Refused as a new contract today.
    let mut today = standard_loan(&"C".repeat(64), HOUSEHOLD);
    today.bank_id = bank_id.clone();
    expect_code(app.loans(&bank).create_loan(today).await, Code::InvalidArgument);
    // Written as an older build did, the server stopped.
    app.stop().await;
    let offset = loanledger::startup::business_utc_offset_default();
    let (writer, task) = loanledger::app::writer::spawn(app.db.clone(), offset);
    for id in &ids {
        let mut terms = loanledger::bench::load::bench_terms(&id_number("19800517"));
        terms.loan_id = id.clone();
        terms.ledger_id = LEDGER.into();
        terms.bank_id = bank_id.clone();
        terms.contract_number = id[65..].to_string();
        terms.household_id = HOUSEHOLD.into();
        terms.principal_fen = Fen(1_000_000);
        let actor = Principal { role: Role::Bank, org: bank_id.clone() };
        let created = writer.submit(actor, format!("legacy {id}"), Command::CreateLoan { terms });
        created.await.expect("a loan as an older build made it");
    }
    drop(writer);
    task.await.expect("the writer stopped");
    app.restart().await;

    let (id, other) = (&ids[0], &ids[1]);
    app.disburse(&bank, id, "2021-01-25").await;
    app.disburse(&bank, other, "2021-01-25").await;
    app.repay(&bank, id, "2021-02-01", 100_000).await;
    let item = repayment_item("legacy-batch", id, "2021-02-02", 100_000);
    let batch = app.loans(&bank).submit_batch(pb::SubmitBatchRequest { items: vec![item] }).await;
    let batch = batch.expect("SubmitBatch").into_inner();
    assert_eq!((batch.posted, batch.failed), (1, 0), "{batch:?}");
    let loan = app
        .loans(&bank)
        .get_loan(pb::GetLoanRequest { loan_id: id.clone(), as_of: String::new(), through_seq: 0 })
        .await
        .expect("GetLoan")
        .into_inner();
    assert_eq!(loan.principal_outstanding_fen, 800_000);
    let quote = app
        .loans(&bank)
        .get_payoff_quote(pb::GetPayoffQuoteRequest {
            loan_id: id.clone(),
            as_of: "2021-02-03".into(),
            through_seq: 0,
        })
        .await
        .expect("GetPayoffQuote")
        .into_inner();
    assert_eq!(quote.principal_fen, 800_000);
    let history = app.history(&t.auditor, id).await;
    assert_eq!(
        history.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["loan.created", "loan.disbursed", "loan.repaid", "loan.repaid"]
    );
    // A page of one, and the next after it: the page token names the first loan.
    let page = |page_token: String| {
        let mut loans = app.loans(&bank);
        let bank_id = bank_id.clone();
        async move {
            let request =
                pb::ListLoansRequest { bank_id, page_size: 1, page_token, ..Default::default() };
            loans.list_loans(request).await.expect("ListLoans").into_inner()
        }
    };
    let first = page(String::new()).await;
    assert_eq!(first.loans.iter().map(|l| &l.loan_id).collect::<Vec<_>>(), [id]);
    let second = page(first.next_page_token).await;
    assert_eq!(second.loans.iter().map(|l| &l.loan_id).collect::<Vec<_>>(), [other]);
    // The bank's settlement run, and the same run sent again (answered from its record).
    let run = pb::SettleLoansRequest {
        request_id: "legacy-run".into(),
        ledger_id: LEDGER.into(),
        bank_id: bank_id.clone(),
        settlement_date: "2021-03-20".into(),
    };
    for _ in 0..2 {
        let settled = app.loans(&bank).settle_loans(run.clone()).await.expect("SettleLoans");
        let settled = settled.into_inner();
        assert_eq!((settled.loans_settled, settled.failed), (2, 0), "{settled:?}");
    }
    // One character more is refused, naming the field.
    let longer = format!("{id}X");
    let status = expect_code(
        app.loans(&bank)
            .get_loan(pb::GetLoanRequest { loan_id: longer, as_of: String::new(), through_seq: 0 })
            .await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("loan_id"), "{status:?}");
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// A batch item refused because its request id was used before for another command
/// (REQUEST_ID_REUSED, nothing recorded) holds back the file's later items on its loan, as an
/// unanswered item does: posted ahead of it, they would put the corrected item, sent again,
/// after them (VALUE_DATE_OUT_OF_RANGE for good, its date being earlier). Sent again with the
/// id corrected, the file posts in its order. An item on another loan is posted at once.
async fn a_reused_request_id_holds_back_its_loan(backend: Backend) {
    let Some((app, t, id, other)) = with_two_disbursed_loans(backend).await else {
        return;
    };
    app.repay_as(&t.bank, "line-1", &id, "2021-03-10", 100_000).await.expect("a repayment");
    let mut items = vec![
        repayment_item("line-1", &id, "2021-03-15", 200_000),
        repayment_item("line-2", &id, "2021-03-18", 300_000),
        repayment_item("line-3", &other, "2021-03-18", 400_000),
    ];
    let send = |items: Vec<pb::BatchItem>| {
        let mut loans = app.loans(&t.bank);
        async move {
            let batch = pb::SubmitBatchRequest { items };
            loans.submit_batch(batch).await.expect("SubmitBatch").into_inner()
        }
    };
    let answer = send(items.clone()).await;
    let r = &answer.results;
    assert_eq!((answer.posted, answer.failed), (1, 2), "{answer:?}");
    assert_eq!((r[0].code.as_str(), r[0].reason.as_str()), ("ALREADY_EXISTS", "REQUEST_ID_REUSED"));
    assert_eq!((r[1].code.as_str(), r[1].reason.as_str()), ("UNAVAILABLE", "HELD_BACK"));
    assert!(r[1].message.contains("was refused as sent"), "{answer:?}");
    assert_eq!(r[1].metadata.len(), 2, "{:?}", r[1]);
    assert_eq!(r[1].metadata.get("refused_as_sent").map(String::as_str), Some("true"));
    assert_eq!(r[1].metadata.get("loan_id"), Some(&id), "{:?}", r[1]);
    assert!(r[2].ok, "{answer:?}");
    // The first line's id corrected, the file sent again: posted in its order, the other
    // loan's line answered as before.
    items[0].request_id = "line-1b".into();
    let again = send(items).await;
    assert_eq!((again.posted, again.failed), (3, 0), "{again:?}");
    assert_eq!(again.results[2].entry, answer.results[2].entry);
    let repaid: Vec<String> = app
        .history(&t.auditor, &id)
        .await
        .iter()
        .filter(|e| e.kind == "loan.repaid")
        .map(|e| e.value_date.clone())
        .collect();
    assert_eq!(repaid, ["2021-03-10", "2021-03-15", "2021-03-18"]);

    // Across the parts a file is cut into (500 commands a part): the reused id in the first
    // part, the loan's next line in the second, planned while the first commits. The first
    // part also repeats a line refused before, so that it is planned again with its request
    // ids looked up first and the reused id is found as it is planned, not at its commit.
    let over = repayment_item("over-1", &other, "2021-03-25", 1_000_000_000);
    let refused = send(vec![over.clone()]).await;
    assert_eq!(refused.results[0].code, "FAILED_PRECONDITION", "{refused:?}");
    let fill = |i: usize| repayment_item(&format!("fill-{i}"), &other, "2021-03-25", 1);
    let mut items: Vec<pb::BatchItem> = (0..502).map(fill).collect();
    items[0] = over;
    items[1] = repayment_item("line-1", &id, "2021-03-25", 500);
    items[501] = repayment_item("line-4", &id, "2021-03-26", 600);
    let answer = send(items.clone()).await;
    let r = &answer.results;
    assert_eq!((answer.posted, answer.failed), (499, 3), "{:?}", &r[501]);
    assert_eq!(r[1].reason, "REQUEST_ID_REUSED", "{:?}", r[1]);
    assert_eq!(r[501].code, "UNAVAILABLE", "{:?}", r[501]);
    assert!(r[501].message.contains("was refused as sent"), "{:?}", r[501]);
    items[1].request_id = "line-1c".into();
    let again = send(items).await;
    assert_eq!((again.posted, again.failed), (501, 1), "{:?}", &again.results[501]);
    let repaid: Vec<String> = app
        .history(&t.auditor, &id)
        .await
        .iter()
        .filter(|e| e.kind == "loan.repaid")
        .map(|e| e.value_date.clone())
        .collect();
    assert_eq!(repaid, ["2021-03-10", "2021-03-15", "2021-03-18", "2021-03-25", "2021-03-26"]);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}
