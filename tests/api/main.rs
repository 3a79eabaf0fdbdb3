//! The service as its users see it: every scenario starts the real server on port 0 over a fresh
//! database and talks to it through the generated gRPC clients, once on SQLite and once on
//! PostgreSQL (`<scenario>::sqlite`, `<scenario>::postgres`). The servicing scenarios (settlement
//! runs, repayment allocation, arrears, extension, renewal, write-off, batches, as-of) are in
//! `servicing.rs`.

#[path = "../common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::*;
use loanledger::api::pb;
use loanledger::api::pb::registry_service_client::RegistryServiceClient;
use loanledger::app::auth::Role;
use loanledger::domain::money::Fen;
use loanledger::ledger::posting::{Posting, pack};
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

mod schedule;
mod servicing;

on_both_backends!(
    full_flow,
    origination_refusals,
    status_history_by_effective_date,
    disbursement_and_repayment_refusals,
    malformed_input,
    idempotent_replay,
    concurrent_clients,
    bad_and_duplicate_commands_in_one_group,
    same_loans_from_many_clients,
    large_batch_on_loans_not_held,
    shutdown_finishes_writes_in_flight,
    list_loans_pages,
    survives_restart,
    killed_server_keeps_what_it_acknowledged,
    a_second_signal_ends_the_drain,
    journal_is_append_only,
    tampering_is_reported,
    a_loan_stored_whole_by_an_earlier_version,
    postings_text_is_checked_as_postings,
    a_head_stored_far_ahead_is_reported,
    a_person_heads_one_household_of_a_ledger,
    a_person_borrows_for_one_household_of_a_ledger,
    a_damaged_row_is_missing_to_who_may_not_read_it,
    an_uplift_altered_out_of_bounds_is_an_unreadable_row,
    rows_before_the_chain_are_reported,
    mistyped_journal_columns_are_reported,
    journal_scan_pages,
    concurrent_verifies_take_turns,
    tampered_read_models_are_reported,
    tampered_history_links_are_reported,
    tampered_idempotency_records_are_reported,
    weakened_guards_are_reported,
    bytewise_ids_whatever_the_collation,
    authentication_and_roles,
    what_is_outside_the_callers_books_is_missing_to_it,
    failed_write_leaves_nothing,
    failed_groups_beside_others,
    today_is_the_business_day,
    value_dates_in_the_future_are_refused,
    lpr_table,
    revoked_token_is_refused,
    first_operator_token_and_token_commands,
    a_cancelled_token_read_still_revokes,
    verify_while_writing,
    history_keeps_to_the_loans_ledger,
    a_stalled_reader_does_not_hold_up_shutdown,
    loans_made_before_the_id_limit_are_still_named,
    a_reused_request_id_holds_back_its_loan,
    a_row_locked_elsewhere_is_unavailable,
    servers_started_together_make_one_first_token,
    a_value_date_rewritten_with_the_hashes_is_reported,
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
        .get_policy(pb::GetPolicyRequest { ledger_id: LEDGER.into(), as_of: CONTRACT_DATE.into() })
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
    set(Removed, "2020-06-01").await;
    // Exited from 2019-12-31, recorded after the removal of 2020-06-01: the removal holds on
    // the contract date 2021-01-25, and is listed last.
    let answered = set(Exited, "2019-12-31").await;
    let expected = vec![
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
    assert!(quote.total_fen > 3_000_000, "{quote:?}");
    let refused = expect_refused(
        loans
            .record_repayment(pb::RecordRepaymentRequest {
                request_id: rid("repay"),
                loan_id: id.clone(),
                value_date: "2021-03-20".into(),
                amount_fen: quote.total_fen + 1,
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
            .get_loan(pb::GetLoanRequest { loan_id: "B1-NO-SUCH".into(), as_of: String::new() })
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
    let h2 = app
        .registry(&t.finance)
        .register_household(household.clone())
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(h1, h2);

    let create = standard_loan("C001", HOUSEHOLD);
    let c1 = loans.create_loan(create.clone()).await.unwrap().into_inner();
    let c2 = loans.create_loan(create.clone()).await.unwrap().into_inner();
    assert_eq!(c1, c2, "a replayed CreateLoan answers as the first time");

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

    // Same id, other content.
    let mut other = repay.clone();
    other.amount_fen = 2_000_000;
    expect_code(loans.record_repayment(other.clone()).await, Code::AlreadyExists);
    let mut other_create = create.clone();
    other_create.principal_fen = 4_000_000;
    expect_code(loans.create_loan(other_create.clone()).await, Code::AlreadyExists);
    let mut other_household = household.clone();
    other_household.village = "西岭村".into();
    expect_code(
        app.registry(&t.finance).register_household(other_household.clone()).await,
        Code::AlreadyExists,
    );
    // The same contract or household under another request id: the record exists, and the
    // reason says which (not REQUEST_ID_REUSED).
    let reason = |s: tonic::Status| s.get_details_error_info().map(|i| i.reason);
    let again = pb::CreateLoanRequest { request_id: rid("loan"), ..create.clone() };
    let exists = expect_code(loans.create_loan(again).await, Code::AlreadyExists);
    assert_eq!(reason(exists).as_deref(), Some("LOAN_EXISTS"));
    let again = pb::RegisterHouseholdRequest { request_id: rid("household"), ..household.clone() };
    let exists =
        expect_code(app.registry(&t.finance).register_household(again).await, Code::AlreadyExists);
    assert_eq!(reason(exists).as_deref(), Some("HOUSEHOLD_EXISTS"));
    let reused = expect_code(loans.create_loan(other_create.clone()).await, Code::AlreadyExists);
    assert_eq!(reason(reused).as_deref(), Some("REQUEST_ID_REUSED"));
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
    };
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut loans = app.loans(&t.bank);
        let req = pb::RecordRepaymentRequest {
            request_id: rid("repay"),
            loan_id: id.clone(),
            value_date: "2021-03-20".into(),
            amount_fen: if i % 2 == 0 { 400_000 } else { 2_000_000 },
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

/// Stopping the server while clients are writing: every acknowledged write is in the journal
/// after a restart, nothing is half-written or doubled, and the chain verifies.
async fn shutdown_finishes_writes_in_flight(backend: Backend) {
    const CLIENTS: usize = 30;
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let ids = disbursed_loans(&app, &t, "S", CLIENTS).await;

    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let first_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(first_tx)));
    let mut tasks = Vec::new();
    for id in &ids {
        let mut loans = app.loans(&t.bank);
        let first_tx = first_tx.clone();
        let req = pb::RecordRepaymentRequest {
            request_id: rid("repay"),
            loan_id: id.clone(),
            value_date: "2021-03-20".into(),
            amount_fen: 250_000,
        };
        tasks.push(tokio::spawn(async move {
            let result = loans.record_repayment(req.clone()).await;
            if let Some(tx) = first_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            (req, result.map(|r| r.into_inner()))
        }));
    }
    // Stop as soon as the first write is answered, with the others in flight or queued.
    let _ = first_rx.await;
    app.restart().await;

    let mut acknowledged = Vec::new();
    let mut sent = Vec::new();
    for task in tasks {
        let (req, result) = task.await.expect("client task");
        if let Ok(answer) = result {
            acknowledged.push((req.request_id.clone(), entry(&answer).clone()));
        }
        sent.push(req);
    }
    assert!(!acknowledged.is_empty());
    let journal = app.journal(&t.auditor, LEDGER).await;
    check_chain(&journal);
    for (request_id, r) in &acknowledged {
        let found: Vec<_> = journal.iter().filter(|e| &e.request_id == request_id).collect();
        assert_eq!(found.len(), 1, "acknowledged {request_id} is in the journal once");
        assert_eq!((found[0].seq, &found[0].hash), (r.seq, &r.hash));
    }
    for req in &sent {
        let n = journal.iter().filter(|e| e.request_id == req.request_id).count();
        assert!(n <= 1, "{} posted {n} times", req.request_id);
        let l = app.get_loan_as_of(&t.bank, &req.loan_id, "2021-03-20").await;
        let interest = standard_interest(1_000_000, 55);
        let expected = if n == 1 { 1_000_000 - (250_000 - interest) } else { 1_000_000 };
        assert_eq!(l.principal_outstanding_fen, expected, "{}", req.loan_id);
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

/// Everything written is there after a restart, and the chain continues from its head.
async fn survives_restart(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = loan_id("C001");
    app.create_loan(&t.bank, standard_loan("C001", HOUSEHOLD)).await;
    let disbursed = app.disburse(&t.bank, &id, "2021-01-25").await;
    let before_loan = app.get_loan(&t.bank, &id).await;
    let before_journal = app.journal(&t.auditor, LEDGER).await;
    let before_verify = app.verify(&t.auditor).await;
    assert!(before_verify.ok);

    app.restart().await;

    assert_eq!(app.get_loan(&t.bank, &id).await, before_loan);
    assert_eq!(app.journal(&t.auditor, LEDGER).await, before_journal);
    let household = app
        .registry(&t.finance)
        .get_household(pb::GetHouseholdRequest { household_id: HOUSEHOLD.into() })
        .await
        .expect("GetHousehold after restart")
        .into_inner();
    assert_eq!(household.status_history.len(), 1);
    let v = app.verify(&t.auditor).await;
    assert_eq!(v, before_verify);

    let repaid = app.repay(&t.bank, &id, "2021-03-20", 29_410).await;
    assert_eq!(entry(&repaid).seq, entry(&disbursed).seq + 1);
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.last().unwrap().prev_hash, entry(&disbursed).hash);
    check_chain(&journal);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    assert_eq!(v.head_hash, entry(&repaid).hash);
    app.finish().await;
}

/// The server process killed (SIGKILL) while eight clients write: after a restart every
/// repayment it acknowledged is in the journal at the place and with the hash it was
/// acknowledged with, a retry of it is answered with the same entry, and the journal verifies.
/// On SQLite this is also the crash test of the writer's WAL writes (`store::wal_vfs`): the
/// process dies with a commit's frames half written.
async fn killed_server_keeps_what_it_acknowledged(backend: Backend) {
    const CLIENTS: usize = 8;
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.stop().await;
    let mut server = ServerProcess::start(&app.database_url);
    app.port = server.port;

    // The first answer says the process is serving.
    let started = std::time::Instant::now();
    let mut acknowledged = vec![loop {
        match app.repay_as(&t.bank, "crash-first", &id, "2021-03-20", 100).await {
            Ok(r) => break ("crash-first".to_string(), entry(&r).clone()),
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                assert!(started.elapsed() < Duration::from_secs(30), "the server did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }];

    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let mut loans = app.loans(&t.bank);
        let (id, answered, killed) = (id.clone(), answered.clone(), killed.clone());
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for k in 0..5_000 {
                let request_id = format!("crash-{c}-{k}");
                let req = pb::RecordRepaymentRequest {
                    request_id: request_id.clone(),
                    loan_id: id.clone(),
                    value_date: "2021-03-20".into(),
                    amount_fen: 100,
                };
                match loans.record_repayment(req).await {
                    Ok(r) => acked.push((request_id, entry(&r.into_inner()).clone())),
                    // The process is gone; before the kill, any error is a failure.
                    Err(s) => {
                        let killed = killed.load(std::sync::atomic::Ordering::SeqCst);
                        assert!(killed, "{request_id} failed before the kill: {s:?}");
                        break;
                    }
                }
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            acked
        }));
    }
    let writing = std::time::Instant::now();
    while answered.load(std::sync::atomic::Ordering::Relaxed) < 400 {
        assert!(
            writing.elapsed() < Duration::from_secs(60) && !clients.iter().all(|c| c.is_finished()),
            "the server stopped answering before 400 repayments"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    server.kill();
    for client in clients {
        let acked = client.await.expect("a client task");
        assert!(acked.len() < 5_000, "a client outlived the server");
        acknowledged.extend(acked);
    }
    assert!(acknowledged.len() > 400, "{} acknowledged", acknowledged.len());

    app.restart().await;
    let journal = app.journal(&t.auditor, LEDGER).await;
    let by_seq: BTreeMap<u64, &pb::JournalTransaction> =
        journal.iter().map(|e| (e.seq, e)).collect();
    for (request_id, acked) in &acknowledged {
        let kept = by_seq.get(&acked.seq).unwrap_or_else(|| {
            panic!("acknowledged {request_id} (seq {}) is not in the journal", acked.seq)
        });
        assert_eq!(&kept.request_id, request_id);
        assert_eq!(kept.hash, acked.hash, "{request_id} was kept as it was acknowledged");
    }
    check_chain(&journal);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    for (request_id, acked) in acknowledged.iter().rev().take(20) {
        let again = app
            .repay_as(&t.bank, request_id, &id, "2021-03-20", 100)
            .await
            .expect("a retry of an acknowledged repayment");
        assert_eq!(entry(&again), acked, "{request_id} is answered as before, not posted again");
    }
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal.len(), "nothing posted twice");
    app.finish().await;
}

/// The `loanledger serve` binary on a database, as a process of its own on a port it chose
/// itself (read from its "serving" log line); killed (SIGKILL) by [`ServerProcess::kill`] or
/// when dropped, and by the kernel should the test process die first (a test run interrupted
/// or killed: no server left holding the database and its port). Its log is kept and printed
/// should the test fail.
struct ServerProcess {
    child: std::process::Child,
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    fn start(database_url: &str) -> ServerProcess {
        ServerProcess::start_with(database_url, &[])
    }

    /// As [`ServerProcess::start`], with more arguments to `serve`.
    fn start_with(database_url: &str, serve_args: &[&str]) -> ServerProcess {
        use std::io::BufRead;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"));
        command
            .args(["serve", "--database-url", database_url, "--listen", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(serve_args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // Linux: SIGKILL to the child when the thread that started it ends (the test's own
        // thread, which outlives the server in every test). Between fork and exec only
        // async-signal-safe calls are allowed: prctl and getppid are.
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            let parent = std::process::id();
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the call: then nobody would signal us.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("the test process is gone"));
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("the server binary starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("the server's stderr");
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if event["fields"]["message"] == "serving"
                    && let Some(port) = event["fields"]["addr"]
                        .as_str()
                        .and_then(|a| a.rsplit(':').next())
                        .and_then(|p| p.parse::<u16>().ok())
                {
                    let _ = port_tx.send(port);
                }
                kept.lock().expect("the log").push(line);
            }
        });
        let started = std::time::Instant::now();
        let port = loop {
            if let Ok(port) = port_rx.recv_timeout(Duration::from_millis(100)) {
                break port;
            }
            let exited = child.try_wait().expect("the server's status");
            let log = log.lock().expect("the log").join("\n");
            assert!(exited.is_none(), "the server exited ({exited:?}):\n{log}");
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the server did not start:\n{log}"
            );
        };
        ServerProcess { child, port, log }
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("the killed server is reaped");
    }

    /// Sends the server `signal`.
    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
    }

    /// Waits up to `within` for a log line holding `text`.
    fn wait_for_log(&self, text: &str, within: Duration) {
        let started = std::time::Instant::now();
        while !self.log.lock().expect("the log").iter().any(|line| line.contains(text)) {
            let log = self.log.lock().expect("the log").join("\n");
            assert!(started.elapsed() < within, "no log line with {text:?}:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking()
            && let Ok(log) = self.log.lock()
        {
            eprintln!("the server process's log:\n{}", log.join("\n"));
        }
    }
}

/// A stopping server waits for the requests in flight (here a journal stream its client has
/// stopped reading) up to its drain timeout; a second SIGTERM or SIGINT meanwhile ends it at
/// once, with status 128 + the signal's number and a warning, and what it had committed is
/// kept: the journal verifies after a restart.
async fn a_second_signal_ends_the_drain(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    // Enough journal that its stream outgrows a client's HTTP/2 window of 64 KiB: unread, the
    // server's sending waits.
    disbursed_loans(&app, &t, "D", 60).await;
    let journal = app.journal(&t.auditor, LEDGER).await;
    let journal_len = journal.len();
    // The premise: the stream holds more than its window (the connection's is larger, hyper's
    // default), so that the server cannot send it all.
    let encoded: usize = journal.iter().map(prost::Message::encoded_len).sum();
    assert!(encoded > 65_535 + 16_384, "a journal of {encoded} bytes");
    app.stop().await;
    for (first, second, status) in [
        (libc::SIGTERM, libc::SIGTERM, 128 + libc::SIGTERM),
        (libc::SIGTERM, libc::SIGINT, 128 + libc::SIGINT),
    ] {
        let mut server =
            ServerProcess::start_with(&app.database_url, &["--drain-timeout-secs", "600"]);
        app.port = server.port;
        let narrow = app.endpoint().initial_stream_window_size(65_535).connect_lazy();
        let mut stream = pb::audit_service_client::AuditServiceClient::with_interceptor(
            narrow,
            Bearer::new(&t.auditor),
        )
        .read_journal(pb::ReadJournalRequest { ledger_id: LEDGER.into(), ..Default::default() })
        .await
        .expect("the journal's stream")
        .into_inner();
        assert_eq!(stream.message().await.expect("a first entry").map(|e| e.seq), Some(1));
        server.signal(first);
        server.wait_for_log("SIGTERM received", Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(500));
        assert!(server.child.try_wait().expect("its status").is_none(), "it drains");
        server.signal(second);
        let started = std::time::Instant::now();
        let exited = loop {
            if let Some(exited) = server.child.try_wait().expect("its status") {
                break exited;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "it did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(exited.code(), Some(status), "{exited:?}");
        server.wait_for_log("received while stopping: exiting now", Duration::from_secs(5));
        drop(stream);
    }
    app.restart().await;
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal_len);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// The tables whose rows are never changed nor removed once written.
const APPEND_ONLY_TABLES: [&str; 6] =
    ["journal_txn", "journal_loan", "household_status", "policy_version", "lpr", "idempotency"];

/// The database itself refuses UPDATE and DELETE on journal rows (their postings in them), an
/// upsert, and on SQLite a REPLACE, of the append-only tables' rows; postings cannot be written
/// on their own: `posting` is a view of the journal's.
async fn journal_is_append_only(backend: Backend) {
    let Some((app, t, _)) = with_disbursed_loan(backend).await else {
        return;
    };
    let before = app.journal(&t.auditor, LEDGER).await;

    let attempts = [
        "update journal_txn set kind = 'forged' where ledger_id = '450121'",
        "update journal_txn set hash = prev_hash where ledger_id = '450121'",
        "delete from journal_txn where ledger_id = '450121'",
        "update journal_txn set postings = '[]' where ledger_id = '450121'",
        "update household_status set status = 'removed'",
        "delete from idempotency",
    ];
    for sql in attempts {
        let err =
            app.db.execute_raw(sql).await.expect_err(&format!("the database must refuse: {sql}"));
        assert!(
            err.to_string().contains("append-only"),
            "refused by the append-only trigger: {sql}: {err}"
        );
    }
    // An upsert is an update: refused on both backends.
    let upsert = "insert into idempotency (scope, request_id, fingerprint, result_json, \
                  ledger_id, seq) select scope, request_id, fingerprint, 'forged', ledger_id, seq \
                  from idempotency where ledger_id = '450121' \
                  on conflict (scope, request_id) do update set result_json = 'forged'";
    let err = app.db.execute_raw(upsert).await.expect_err("the database must refuse the upsert");
    assert!(err.to_string().contains("append-only"), "refused by a trigger: {err}");
    if backend == Backend::Sqlite {
        // SQLite's REPLACE deletes the row in its way without firing delete triggers: each
        // append-only table refuses a row under a stored key, or a stored rowid.
        let mut replaces: Vec<String> = APPEND_ONLY_TABLES
            .iter()
            .map(|table| format!("insert or replace into {table} select * from {table}"))
            .collect();
        replaces.push(
            "replace into idempotency select scope, request_id, fingerprint, 'forged', \
             ledger_id, seq from idempotency"
                .into(),
        );
        replaces.push(
            "insert or replace into journal_txn (rowid, ledger_id, seq, kind, value_date, \
             recorded_at_us, actor, request_id, command_json, prev_hash, hash, postings) \
             select rowid, 'ELSEWHERE', seq, kind, value_date, recorded_at_us, actor, \
             request_id, command_json, prev_hash, hash, postings from journal_txn"
                .into(),
        );
        for sql in &replaces {
            let err = app.db.execute_raw(sql).await.expect_err(&format!("refused: {sql}"));
            assert!(err.to_string().contains("append-only"), "refused by a trigger: {sql}: {err}");
        }
    }
    if backend == Backend::Postgres {
        for table in APPEND_ONLY_TABLES {
            let sql = format!("truncate {table} cascade");
            let err = app
                .db
                .execute_raw(&sql)
                .await
                .expect_err(&format!("the database must refuse: {sql}"));
            assert!(err.to_string().contains("append-only"), "refused by a trigger: {sql}: {err}");
        }
    }
    for sql in [
        "update posting set amount_fen = amount_fen + 100 where ledger_id = '450121'",
        "delete from posting where ledger_id = '450121'",
        "insert into posting (ledger_id, seq, idx, account, amount_fen) \
         values ('450121', 99, 0, 'bank/B1/cash', 500)",
    ] {
        let err = app.db.execute_raw(sql).await.expect_err(&format!("refused: {sql}"));
        assert!(err.to_string().contains("view"), "refused as a view: {sql}: {err}");
    }
    // The view shows, row by row, the postings the API shows.
    let legs: usize = before.iter().map(|e| e.postings.len()).sum();
    let counted = app
        .db
        .execute_raw(&format!(
            "update ledger set name = name where ledger_id = '450121' and \
             (select count(*) from posting where ledger_id = '450121') = {legs} and \
             (select sum(amount_fen) from posting where ledger_id = '450121') = 0"
        ))
        .await
        .expect("the view reads");
    assert_eq!(counted, 1, "the view has the {legs} postings of the journal, summing to zero");
    assert_eq!(app.journal(&t.auditor, LEDGER).await, before);
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// With the triggers dropped behind the service's back, one changed amount breaks the chain at
/// exactly that transaction.
async fn tampering_is_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let repaid = app.repay(&t.bank, &id, "2021-03-20", 1_029_410).await;
    app.repay(&t.bank, &id, "2021-06-20", 500_000).await;
    let target = entry(&repaid).seq;
    assert!(app.verify(&t.auditor).await.ok);

    // The target's interest income 100 yuan less (and its cash with it, so that the postings
    // still balance: only the chain can tell).
    let stored = &app.journal(&t.auditor, LEDGER).await[target as usize - 1];
    assert_eq!(stored.seq, target);
    let legs: Vec<Posting> = stored
        .postings
        .iter()
        .map(|p| {
            let less = match p.account.as_str() {
                "bank/B1/interest_income" => 10_000,
                a if a.ends_with("/cash") => -10_000,
                _ => 0,
            };
            Posting { account: p.account.clone(), amount: Fen(p.amount_fen + less) }
        })
        .collect();
    assert!(legs.iter().zip(&stored.postings).any(|(l, p)| l.amount.0 != p.amount_fen));
    let changed = app
        .behind_the_back("journal_txn", &format!(
            "update journal_txn set postings = '{}' where ledger_id = '450121' and seq = {target}",
            pack(&legs)
        ))
        .await
        .expect("with the triggers gone the update goes through");
    assert_eq!(changed, 1);

    let v = app.verify(&t.auditor).await;
    assert!(!v.ok, "verify must notice: {v:?}");
    assert_eq!(v.first_break_seq, target, "{v:?}");
    assert!(!v.problems.is_empty());

    // Sixty repayments more, then every transaction's postings removed: more problems than a
    // report lists (each transaction's hash and postings); its last line says how many more.
    for _ in 0..60 {
        app.repay(&t.bank, &id, "2021-06-20", 100).await;
    }
    app.behind_the_back(
        "journal_txn",
        "update journal_txn set postings = '[]' where ledger_id = '450121'",
    )
    .await
    .expect("with the triggers gone the update goes through");
    let v = app.verify(&t.auditor).await;
    assert_eq!(v.problems.len(), loanledger::app::verify::PROBLEMS_MAX + 1, "{v:?}");
    let last = v.problems.last().expect("a last line");
    assert!(last.starts_with("... and ") && last.ends_with(" more problems"), "{last}");
    app.finish().await;
}

/// Verify sizes its lists from the stored head: a head `seq` changed by hand to the largest
/// there is (no list that size can be had) is reported as the gap before it, not an error.
async fn a_head_stored_far_ahead_is_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let head = entry(&app.repay(&t.bank, &id, "2021-03-20", 100_000).await).seq;
    assert!(app.verify(&t.auditor).await.ok);
    let moved = app
        .behind_the_back(
            "journal_txn",
            &format!(
                "update journal_txn set seq = {} where ledger_id = '450121' and seq = {head}",
                i64::MAX
            ),
        )
        .await
        .expect("with the triggers gone the update goes through");
    assert_eq!(moved, 1);
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok);
    assert_eq!(v.first_break_seq, head, "{v:?}");
    assert_eq!(v.problems[0], format!("seq {head} is missing (next stored is {})", i64::MAX));
    assert_eq!(v.head_seq, i64::MAX as u64);
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
    // A member of H001 (heading none) borrows for it, and again; then for H002: refused.
    let member = id_number("19850301");
    app.create_loan(&t.bank, loan_to("C2", HOUSEHOLD, &member)).await;
    app.create_loan(&t.bank, loan_to("C3", HOUSEHOLD, &member)).await;
    let req = loan_to("C4", "H002", &member);
    refused_for(expect_code(loans.create_loan(req).await, Code::FailedPrecondition), HOUSEHOLD);
    // H002's own head borrows for it.
    app.create_loan(&t.bank, loan_to("C5", "H002", &head_of_h2)).await;
    expect_code(
        loans.get_loan(pb::GetLoanRequest { loan_id: loan_id("C4"), as_of: String::new() }).await,
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

/// A loan whose stored row cannot be decoded (its servicing state altered by hand) is a fault
/// to its own bank, INTERNAL, but to another bank a missing loan, as any of its loans is: who
/// may read a loan is checked before its row is decoded. So on SQLite with a column holding a
/// value of another type (read apart from the owner's columns), with its history (a journal
/// row of the loan that cannot be read is INTERNAL to its bank and the auditor, NOT_FOUND to
/// another) and with a household whose status or row cannot be (NOT_FOUND to another ledger's
/// finance office, INTERNAL to its own).
async fn a_damaged_row_is_missing_to_who_may_not_read_it(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.register_bank(&t.operator, "B2").await;
    let b2 = app.bank_token("B2").await;
    let seq = entry(&app.repay(&t.bank, &id, "2021-03-20", 100_000).await).seq;
    let damaged = app
        .db
        .execute_raw(&format!("update loan set servicing_json = 'not json' where loan_id = '{id}'"))
        .await
        .expect("the loan's row altered");
    assert_eq!(damaged, 1);
    let get = |token: &str| {
        let mut loans = app.loans(token);
        let loan_id = id.clone();
        async move { loans.get_loan(pb::GetLoanRequest { loan_id, as_of: String::new() }).await }
    };
    let status = expect_code(get(&b2).await, Code::NotFound);
    assert_eq!(status.message(), format!("loan {id} not found"));
    expect_code(get(&t.bank).await, Code::Internal);
    if backend == Backend::Sqlite {
        let sql = format!("update loan set principal_fen = 'many' where loan_id = '{id}'");
        assert_eq!(app.db.execute_raw(&sql).await.expect("the loan's row altered"), 1);
        let status = expect_code(get(&b2).await, Code::NotFound);
        assert_eq!(status.message(), format!("loan {id} not found"));
        expect_code(get(&t.bank).await, Code::Internal);
    }
    // A journal row of the loan that cannot be read: on SQLite a column of another type, on
    // PostgreSQL (whose columns hold their own type) postings that are not postings.
    let assignment = match backend {
        Backend::Sqlite => "recorded_at_us = 'yesterday'",
        Backend::Postgres => "postings = 'not postings'",
    };
    let sql =
        format!("update journal_txn set {assignment} where ledger_id = '{LEDGER}' and seq = {seq}");
    assert_eq!(app.behind_the_back("journal_txn", &sql).await.expect("the row altered"), 1);
    let history = |token: &str| {
        let mut audit = app.audit(token);
        let loan_id = id.clone();
        async move {
            let stream = audit.get_loan_history(pb::GetLoanHistoryRequest { loan_id }).await?;
            collect(stream.into_inner()).await.map(tonic::Response::new)
        }
    };
    let status = expect_code(history(&b2).await, Code::NotFound);
    assert_eq!(status.message(), format!("loan {id} not found"));
    expect_code(history(&t.bank).await, Code::Internal);
    expect_code(history(&t.auditor).await, Code::Internal);

    // A household: a status that is no status, and on SQLite a name that is no text.
    app.create_ledger(&t.operator, "450122", "another county").await;
    let elsewhere = app.token(Role::Finance, "450122").await;
    let household = |token: &str| {
        let mut registry = app.registry(token);
        let household_id = HOUSEHOLD.to_string();
        async move { registry.get_household(pb::GetHouseholdRequest { household_id }).await }
    };
    // A status that is no status; on SQLite also a status's date that is no text, then a
    // name that is no text (each put back before the next).
    let mut damages = vec![("household_status", "status = 'lucky'", "status = 'registered_poor'")];
    if backend == Backend::Sqlite {
        damages.push((
            "household_status",
            "effective_date = x'00'",
            "effective_date = '2016-01-01'",
        ));
        damages.push(("household", "head_name = x'00'", "head_name = 'x'"));
    }
    for (table, damage, repair) in damages {
        let sql =
            |set: &str| format!("update {table} set {set} where household_id = '{HOUSEHOLD}'");
        let altered = match table {
            "household" => app.db.execute_raw(&sql(damage)).await,
            _ => app.behind_the_back(table, &sql(damage)).await,
        };
        assert_eq!(altered.expect("the household altered"), 1, "{damage}");
        let status = expect_code(household(&elsewhere).await, Code::NotFound);
        assert_eq!(status.message(), format!("household {HOUSEHOLD} not found"), "{damage}");
        expect_code(household(&t.finance).await, Code::Internal);
        let repaired = match table {
            "household" => app.db.execute_raw(&sql(repair)).await,
            _ => app.behind_the_back(table, &sql(repair)).await,
        };
        assert_eq!(repaired.expect("the household put back"), 1, "{repair}");
    }
    app.finish().await;
}

/// SQLite stores a value of any type in any column: a journal column changed by hand to a value
/// of another type, or to text that is not UTF-8, is reported at its seq, where the chain
/// breaks, instead of ending verify with an error. PostgreSQL's columns hold their own type
/// only.
async fn mistyped_journal_columns_are_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let head = entry(&app.repay(&t.bank, &id, "2021-03-20", 100_000).await).seq;
    let set =
        async |assignment: &str| {
            app.behind_the_back("journal_txn", &format!(
                "update journal_txn set {assignment} where ledger_id = '450121' and seq = {head}"
            ))
            .await
        };
    if backend == Backend::Postgres {
        // (A value of another type is converted to the column's, or refused.)
        assert!(set("recorded_at_us = 'yesterday'").await.is_err());
        assert!(app.verify(&t.auditor).await.ok);
        app.finish().await;
        return;
    }
    let reported = async |column: &str, what: &str| {
        let v = app.verify(&t.auditor).await;
        assert_eq!(v.first_break_seq, head, "{v:?}");
        assert_eq!(v.problems[0], format!("seq {head}: its {column} is stored as {what}"));
        assert!(v.problems[1].starts_with(&format!("seq {head}: stored hash differs")), "{v:?}");
    };
    // The kind's own bytes, as a blob: the type alone differs.
    assert_eq!(set("kind = cast(kind as blob)").await.expect("a blob"), 1);
    reported("kind", "another type").await;
    assert_eq!(set("kind = cast(kind as text)").await.expect("text again"), 1);
    assert!(app.verify(&t.auditor).await.ok);
    // Text that is not UTF-8 (a blob of other bytes, made text).
    assert_eq!(set("kind = cast(x'ff' as text)").await.expect("text"), 1);
    let v = app.verify(&t.auditor).await;
    assert_eq!(v.problems[0], format!("seq {head}: its kind is stored as text that is not UTF-8"));
    assert_eq!(set("kind = 'loan.repaid'").await.expect("the kind again"), 1);
    assert!(app.verify(&t.auditor).await.ok);
    // A value date as a blob: reported by verify, and GetBalances refuses to sum it rather than
    // count it at every date (it reads as empty text).
    assert_eq!(set("value_date = cast(value_date as blob)").await.expect("a blob"), 1);
    reported("value_date", "another type").await;
    let balances = pb::GetBalancesRequest {
        ledger_id: LEDGER.into(),
        as_of: "2021-01-01".into(),
        account_prefix: String::new(),
    };
    let mut audit = app.audit(&t.auditor);
    let summed = match audit.get_balances(balances.clone()).await {
        Ok(stream) => collect(stream.into_inner()).await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert_eq!(summed.expect_err("not summed").code(), Code::Internal);
    assert_eq!(set("value_date = cast(value_date as text)").await.expect("text again"), 1);
    assert!(app.verify(&t.auditor).await.ok);
    let chunks = collect(audit.get_balances(balances).await.expect("summed").into_inner()).await;
    assert!(chunks.expect("summed").iter().all(|c| c.balances.is_empty()), "nothing by 2021-01-01");
    assert_eq!(set("recorded_at_us = 'yesterday'").await.expect("text"), 1);
    reported("recorded_at_us", "another type").await;
    // The head's seq a real: read at the integer below it, and reported.
    assert_eq!(set(&format!("seq = {head}.5")).await.expect("a real"), 1);
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok && v.head_seq == head, "{v:?}");
    assert!(
        v.problems
            .contains(&format!("seq {head}: its seq is stored as a number that is not an integer")),
        "{v:?}"
    );
    // The head's seq text: the row has no place in the chain, which ends before it (its
    // effects on the read models, and its idempotency record, are reported too).
    let moved = app
        .behind_the_back(
            "journal_txn",
            &format!(
                "update journal_txn set seq = 'last' where ledger_id = '450121' and seq = {head}.5"
            ),
        )
        .await
        .expect("text");
    assert_eq!(moved, 1);
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok && v.head_seq == head - 1, "{v:?}");
    assert!(
        v.problems.contains(&
            "a journal row of ledger 450121 has the text \"last\" as its seq: no place in the chain"
                .to_string()
        ),
        "{v:?}"
    );
    app.finish().await;
}

/// A journal row stored by hand under seq 0 or below (the triggers let a new row in) has no
/// place in the chain, which starts at 1: neither scanned nor read by any call, it would still
/// count in the `posting` view's sums. It is reported.
async fn rows_before_the_chain_are_reported(backend: Backend) {
    let Some((app, t, _)) = with_disbursed_loan(backend).await else {
        return;
    };
    let disbursed = app
        .journal(&t.auditor, LEDGER)
        .await
        .into_iter()
        .find(|txn| txn.kind == "loan.disbursed")
        .expect("the disbursement")
        .seq;
    for seq in [0, -3] {
        let inserted = app
            .db
            .execute_raw(&format!(
                "insert into journal_txn (ledger_id, seq, kind, value_date, recorded_at_us, actor, \
                 request_id, command_json, prev_hash, hash, postings) \
                 select ledger_id, {seq}, kind, value_date, recorded_at_us, actor, request_id, \
                 command_json, prev_hash, hash, postings from journal_txn \
                 where ledger_id = '{LEDGER}' and seq = {disbursed}"
            ))
            .await
            .expect("a new row is let in");
        assert_eq!(inserted, 1);
    }
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok, "{v:?}");
    for seq in [-3, 0] {
        let text = format!(
            "a journal row of ledger {LEDGER} has the number {seq} as its seq: no place in the chain"
        );
        assert!(v.problems.contains(&text), "{text}: {v:?}");
    }
    app.finish().await;
}

/// The hash covers a transaction's postings, not their stored text: the same postings spaced
/// otherwise still verify, and the history shows them as before. Text that does not read as
/// postings is reported at its seq, and the history's reader refuses it as an internal error.
async fn postings_text_is_checked_as_postings(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let head = entry(&app.repay(&t.bank, &id, "2021-03-20", 1_029_410).await).seq;
    let before = app.history(&t.bank, &id).await;
    let respaced = app
        .behind_the_back(
            "journal_txn",
            &format!(
                "update journal_txn set postings = replace(postings, ',', ' , ') \
             where ledger_id = '450121' and seq = {head}"
            ),
        )
        .await
        .expect("with the triggers gone the update goes through");
    assert_eq!(respaced, 1);
    assert!(app.verify(&t.auditor).await.ok);
    assert_eq!(app.history(&t.bank, &id).await, before);

    // The head's postings stored as `value` (SQL): reported at the head as unreadable.
    let unreadable = async |value: &str| {
        app.behind_the_back(
            "journal_txn",
            &format!(
                "update journal_txn set postings = {value} \
                 where ledger_id = '450121' and seq = {head}"
            ),
        )
        .await
        .expect("with the triggers gone the update goes through");
        let v = app.verify(&t.auditor).await;
        assert_eq!(v.first_break_seq, head, "{v:?}");
        assert!(
            v.problems[0].starts_with(&format!("seq {head}: its postings cannot be read: ")),
            "{v:?}"
        );
    };
    // SQLite stores any type in any column: a blob is reported the same way.
    if backend == Backend::Sqlite {
        unreadable("x'5b5d00'").await;
    }
    unreadable("'not postings'").await;
    // The transaction before it gone too: the first break is the gap, before the unreadable
    // postings.
    let removed = app
        .behind_the_back(
            "journal_txn",
            &format!("delete from journal_txn where ledger_id = '450121' and seq = {}", head - 1),
        )
        .await
        .expect("with the triggers gone the delete goes through");
    assert_eq!(removed, 1);
    let v = app.verify(&t.auditor).await;
    assert_eq!(v.first_break_seq, head - 1, "{v:?}");
    assert_eq!(v.problems[0], format!("seq {} is missing (next stored is {head})", head - 1));
    let refused = match app
        .audit(&t.bank)
        .get_loan_history(pb::GetLoanHistoryRequest { loan_id: id.clone() })
        .await
    {
        Err(status) => status,
        Ok(stream) => collect(stream.into_inner()).await.expect_err("unreadable postings"),
    };
    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    app.finish().await;
}

/// What Verify's journal scan saw, as text: each transaction's seq and postings.
#[derive(Default)]
struct ScanLog(Vec<String>);

impl loanledger::store::scan::JournalVisitor for ScanLog {
    fn txn(&mut self, txn: loanledger::store::scan::TxnRef<'_>) {
        let postings = loanledger::ledger::posting::unpack(txn.postings).expect("postings");
        let legs: Vec<String> =
            postings.iter().map(|p| format!("{}={}", p.account, p.amount.0)).collect();
        self.0.push(format!("{} {}", txn.seq, legs.join(" ")));
    }
}

/// Verify's journal scan reads in pages, each page in one snapshot: whatever the page size (one
/// transaction, pages that end exactly at the head, pages longer than the journal), every
/// transaction comes once, in order, with its own postings.
async fn journal_scan_pages(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 1_029_410).await;
    let head = entry(&app.repay(&t.bank, &id, "2021-06-20", 500_000).await).seq as i64;

    let whole = app
        .db
        .scan_journal_in_pages(LEDGER, 10_000, i64::MAX, ScanLog::default())
        .await
        .expect("scan")
        .0;
    assert_eq!(whole.len() as i64, head, "{whole:#?}");
    for (i, line) in whole.iter().enumerate() {
        assert!(
            line.starts_with(&format!("{} ", i + 1)),
            "transaction {} in order: {whole:#?}",
            i + 1
        );
    }
    assert!(
        whole.iter().any(|l| l.contains("bank/B1/interest_income=")),
        "postings come with their transactions: {whole:#?}"
    );
    for page in [1, 2, 3, head - 1, head, head + 1] {
        let paged = app
            .db
            .scan_journal_in_pages(LEDGER, page, i64::MAX, ScanLog::default())
            .await
            .expect("scan")
            .0;
        assert_eq!(paged, whole, "pages of {page}");
    }
    // SQLite: a row stored by hand with a real seq after 2 (read as 2) is read once whatever
    // the page size, also when a page ends at 2.
    if backend == Backend::Sqlite {
        let inserted = app
            .db
            .execute_raw(
                "insert into journal_txn select ledger_id, 2.5, kind, value_date, recorded_at_us, \
                 actor, request_id || '.5', command_json, prev_hash, hash, postings \
                 from journal_txn where ledger_id = '450121' and seq = 2",
            )
            .await
            .expect("an insert is not refused");
        assert_eq!(inserted, 1);
        let scan = async |page| {
            app.db.scan_journal_in_pages(LEDGER, page, i64::MAX, ScanLog::default()).await
        };
        let whole = scan(10_000).await.expect("scan").0;
        assert_eq!(whole.len() as i64, head + 1);
        assert_eq!(whole[1], whole[2]);
        for page in [1, 2, 3] {
            assert_eq!(scan(page).await.expect("scan").0, whole, "pages of {page}");
        }
    }
    app.finish().await;
}

/// Verify calls at once take turns (one runs at a time) and each gets the whole answer.
async fn concurrent_verifies_take_turns(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = loan_id("C001");
    app.create_loan(&t.bank, standard_loan("C001", HOUSEHOLD)).await;
    let head = entry(&app.disburse(&t.bank, &id, "2021-01-25").await).seq;
    let all = verify_at_once(&app, &t.auditor, 4);
    let answers = tokio::time::timeout(std::time::Duration::from_secs(60), all)
        .await
        .expect("every verify gets its turn");
    assert_eq!(answers.len(), 4);
    for v in &answers {
        assert!(v.ok, "{v:?}");
        assert_eq!(v.head_seq, head);
        assert_eq!(v.head_hash, answers[0].head_hash);
    }
    app.finish().await;
}

/// `n` Verify calls sent at once.
async fn verify_at_once(app: &TestApp, token: &str, n: usize) -> Vec<pb::VerifyResponse> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let mut client = app.audit(token);
            tokio::spawn(async move {
                client
                    .verify(pb::VerifyRequest { ledger_id: LEDGER.into() })
                    .await
                    .expect("Verify")
                    .into_inner()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.expect("the call's task"));
    }
    answers
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

/// The read models are rebuilt from the journal alone: a loan's outstanding principal, a
/// household record, an account balance (changed, then deleted) and a loan row (deleted) behind
/// the service's back (these tables are not append-only: they are read models) are each
/// reported by Verify, while the chain itself still holds.
async fn tampered_read_models_are_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    assert!(app.verify(&t.auditor).await.ok);
    // Runs `sql` behind the service's back (one row changed); Verify then reports one problem,
    // containing `expected`, and the chain still holds.
    let reports = async |sql: String, expected: String| {
        let changed = app.db.execute_raw(&sql).await.expect(&sql);
        assert_eq!(changed, 1, "{sql}");
        let v = app.verify(&t.auditor).await;
        assert!(!v.ok, "after {sql}: {v:?}");
        assert_eq!(v.first_break_seq, 0, "the chain holds after {sql}: {v:?}");
        assert!(
            v.problems.len() == 1 && v.problems[0].contains(&expected),
            "after {sql}, expected {expected}: {v:?}"
        );
    };
    // Puts back what `reports` changed: Verify passes again.
    let restores = async |sql: String| {
        app.db.execute_raw(&sql).await.expect(&sql);
        assert!(app.verify(&t.auditor).await.ok, "after {sql}");
    };

    let outstanding = |delta: &str| {
        format!(
            "update loan set principal_outstanding_fen = principal_outstanding_fen {delta} \
             where loan_id = '{id}'"
        )
    };
    reports(outstanding("- 1"), format!("loan {id}: stored state differs from the journal")).await;
    restores(outstanding("+ 1")).await;
    // A value no loan has: reported at its loan, not a failed verify (INTERNAL).
    let servicing =
        |json: &str| format!("update loan set servicing_json = {json} where loan_id = '{id}'");
    let stored: Vec<String> = app
        .db
        .query_texts(&format!("select servicing_json from loan where loan_id = '{id}'"))
        .await
        .expect("the loan's servicing");
    reports(servicing("'{'"), format!("loan {id}: its stored row cannot be read as a loan")).await;
    restores(servicing(&format!("'{}'", stored[0].replace('\'', "''")))).await;
    // SQLite: a balance stored as text by hand is reported, and so is the balance it leaves
    // missing, rather than failing the verify.
    if backend == Backend::Sqlite {
        let account = format!("loan/{id}/principal");
        let set = |value: &str| {
            format!("update account_balance set balance_fen = {value} where account = '{account}'")
        };
        app.db.execute_raw(&set("'lots'")).await.expect("a balance as text");
        let v = app.verify(&t.auditor).await;
        assert!(!v.ok && v.first_break_seq == 0, "{v:?}");
        assert!(v.problems[0].starts_with("a row of account_balance cannot be read"), "{v:?}");
        assert!(v.problems[1].starts_with(&format!("balance of {account}: missing")), "{v:?}");
        restores(set("5000000")).await;
    }

    let ledger_name =
        |name: &str| format!("update ledger set name = '{name}' where ledger_id = '{LEDGER}'");
    reports(ledger_name("forged"), format!("the name of ledger {LEDGER} differs")).await;
    restores(ledger_name("武鸣区 Wuming")).await;

    // The ledger's row gone (on SQLite, its name made a blob instead: the service's
    // connections keep the foreign keys): verify still runs, and reports it, where it answered
    // NOT_FOUND (or INTERNAL, the name not text).
    let (damage, repair) = match backend {
        Backend::Sqlite => (
            format!("update ledger set name = cast(name as blob) where ledger_id = '{LEDGER}'"),
            format!("update ledger set name = cast(name as text) where ledger_id = '{LEDGER}'"),
        ),
        Backend::Postgres => (
            format!(
                "begin; set local session_replication_role = replica; \
                 delete from ledger where ledger_id = '{LEDGER}'; commit"
            ),
            format!(
                "begin; set local session_replication_role = replica; \
                 insert into ledger (ledger_id, name) values ('{LEDGER}', '武鸣区 Wuming'); commit"
            ),
        ),
    };
    app.db.execute_raw(&damage).await.expect("the ledger's row damaged");
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok && v.first_break_seq == 0, "{v:?}");
    let named = format!(
        "the name of ledger {LEDGER} differs from the journal (stored none, journal \"武鸣区 Wuming\")"
    );
    assert!(v.problems.contains(&named), "{v:?}");
    restores(repair).await;

    // A loan, a bank and a household inserted by hand under a ledger of their own, with no
    // journal: no ledger's verify read them, yet the service does (the loan is found by its id,
    // in its bank's listing, against its household's cap). Every verify reports them.
    let forge = format!(
        "insert into ledger (ledger_id, name) values ('ZZ', 'forged'); \
         insert into bank (bank_id, ledger_id, name) values ('ZB', 'ZZ', 'forged'); \
         insert into household (household_id, ledger_id, head_name, head_id_number, township, \
         village) values ('ZH', 'ZZ', 'x', 'x', '', ''); \
         create temporary table forged as select * from loan where loan_id = '{id}'; \
         update forged set loan_id = 'ZZ-1', ledger_id = 'ZZ'; \
         insert into loan select * from forged; drop table forged"
    );
    app.db.execute_raw(&forge).await.expect("the rows forged");
    let strays: Vec<String> = ["bank", "household", "loan"]
        .iter()
        .map(|t| format!("{t} rows are stored under ledger \"ZZ\", which has no journal"))
        .collect();
    verify_reports(&app, &t.auditor, &strays).await;
    restores(
        "delete from loan where ledger_id = 'ZZ'; delete from household where ledger_id = 'ZZ'; \
         delete from bank where ledger_id = 'ZZ'; delete from ledger where ledger_id = 'ZZ'"
            .into(),
    )
    .await;
    if backend == Backend::Sqlite {
        // Under a ledger id of bytes that are not UTF-8 (a blob): reported, shown lossily, not
        // the end of verify (it was INTERNAL, for every ledger).
        let forge = "insert into ledger (ledger_id, name) values (x'ff', 'forged'); \
                     insert into bank (bank_id, ledger_id, name) values ('ZB', x'ff', 'forged')";
        app.db.execute_raw(forge).await.expect("the rows forged");
        let odd = "bank rows are stored under ledger \"\u{fffd}\", which has no journal";
        verify_reports(&app, &t.auditor, &[odd.to_string()]).await;
        restores(
            "delete from bank where bank_id = 'ZB'; delete from ledger where name = 'forged'"
                .into(),
        )
        .await;
    }

    // A policy version inserted by hand whose parameters cannot be read (the guards refuse
    // updates and deletes, not inserts): reported and left out, on PostgreSQL too, not a failed
    // verify (INTERNAL).
    reports(
        format!(
            "insert into policy_version (ledger_id, effective_date, params_json) \
             values ('{LEDGER}', '2099-01-01', 'x')"
        ),
        "a row of policy_version cannot be read".into(),
    )
    .await;
    let gone = app
        .behind_the_back("policy_version", "delete from policy_version where params_json = 'x'")
        .await
        .expect("the row deleted");
    assert_eq!(gone, 1);
    assert!(app.verify(&t.auditor).await.ok);

    let head_name = |name: &str| {
        format!("update household set head_name = '{name}' where household_id = '{HOUSEHOLD}'")
    };
    reports(head_name("someone else"), format!("the households of ledger {LEDGER} differ")).await;
    restores(head_name(&format!("户主{HOUSEHOLD}"))).await;

    // A balance changed, then the same balance gone, then the loan's row gone: each named with
    // the figure the journal gives.
    let principal = format!("loan/{id}/principal");
    let journal_gives = balances(&app.journal(&t.auditor, LEDGER).await)[&principal];
    assert!(journal_gives > 0);
    reports(
        format!(
            "update account_balance set balance_fen = balance_fen + 7 where account = '{principal}'"
        ),
        format!(
            "balance of {principal}: stored {} fen, journal gives {journal_gives} fen",
            journal_gives + 7
        ),
    )
    .await;
    reports(
        format!("delete from account_balance where account = '{principal}'"),
        format!("balance of {principal}: missing, journal gives {journal_gives} fen"),
    )
    .await;
    restores(format!(
        "insert into account_balance (ledger_id, account, balance_fen) \
         values ('{LEDGER}', '{principal}', {journal_gives})"
    ))
    .await;
    reports(
        format!("delete from loan where loan_id = '{id}'"),
        format!("loan {id} is in the journal but missing from the read model"),
    )
    .await;
    app.finish().await;
}

/// A loan's servicing state as versions before change 78 stored it, every zero figure and empty
/// list written out: the loan reads, verifies and is serviced as before, and its next event
/// stores it without them.
async fn a_loan_stored_whole_by_an_earlier_version(backend: Backend) {
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let before = app.get_loan(&t.bank, &id).await;
    let whole = format!(
        "update loan set servicing_json = replace(servicing_json, '{{\"maturity_date\"', \
         '{{\"interest_segments\":[],\"penalty_segments\":[],\"compound_segments\":[],\
         \"interest_due\":[],\"interest_settled_fen\":0,\"penalty_fen\":0,\
         \"compound_fen\":0,\"misuse_since\":null,\"extensions\":0,\"penalty_settled_fen\":0,\
         \"compound_settled_fen\":0,\"penalty_paid_fen\":0,\"compound_paid_fen\":0,\
         \"written_off_fen\":0,\"maturity_date\"') \
         where loan_id = '{id}' and servicing_json not like '%penalty_fen%'"
    );
    assert_eq!(app.db.execute_raw(&whole).await.expect(&whole), 1, "{whole}");
    // Read back by a new server (the writer's cache holds no loan).
    app.restart().await;
    assert_eq!(app.get_loan(&t.bank, &id).await, before);
    assert!(app.verify(&t.auditor).await.ok);
    let repaid = app.repay(&t.bank, &id, "2021-02-01", 100).await;
    let loan = repaid.loan.expect("the loan");
    assert_eq!(loan.principal_outstanding_fen, before.principal_outstanding_fen - 100);
    assert!(app.verify(&t.auditor).await.ok);
    let compact = format!(
        "update loan set last_seq = last_seq where loan_id = '{id}' \
         and servicing_json not like '%penalty_fen%' and servicing_json not like '%extensions%'"
    );
    assert_eq!(app.db.execute_raw(&compact).await.expect(&compact), 1, "stored compact again");
    app.finish().await;
}

/// Verify reports exactly `expected`, read-model problems: the chain itself holds.
async fn verify_reports(app: &TestApp, auditor: &str, expected: &[String]) {
    let v = app.verify(auditor).await;
    assert!(!v.ok, "{v:?}");
    assert_eq!(v.first_break_seq, 0, "the chain holds: {v:?}");
    assert_eq!(v.problems, expected, "{v:?}");
}

/// Verify rebuilds the loan history links (`journal_loan`, which a loan's history is read
/// through) from the journal and compares them with the stored ones: a link slipped in that puts
/// another loan's transaction into this loan's history, a link naming a loan that does not
/// exist, and a link removed are each reported with their loan and seq; the chain still holds.
async fn tampered_history_links_are_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.register_household(&t.finance, "H002", "19800517").await;
    let other = loan_id("C002");
    app.create_loan(&t.bank, standard_loan("C002", "H002")).await;
    let foreign = entry(&app.disburse(&t.bank, &other, "2021-01-25").await).seq;
    let repaid = entry(&app.repay(&t.bank, &id, "2021-03-20", 1_029_410).await).seq;
    let before = app.history(&t.bank, &id).await;
    assert!(app.verify(&t.auditor).await.ok);
    let link = |loan: &str, seq: u64| link_sql(loan, LEDGER, seq);
    // Each step's problems, and the chain still holds.
    let reports = async |expected: &[String]| verify_reports(&app, &t.auditor, expected).await;

    // The other loan's disbursement slipped into this loan's history: a bank would see it there.
    let inserted = app.db.execute_raw(&link(&id, foreign)).await.expect("inserting is not refused");
    assert_eq!(inserted, 1);
    let shown = app.history(&t.bank, &id).await;
    assert_eq!(shown.len(), before.len() + 1, "the forged link shows in the history");
    let lists_foreign =
        format!("loan {id}: its history lists seq {foreign}, which is not one of its transactions");
    reports(std::slice::from_ref(&lists_foreign)).await;

    // A link naming no loan at all.
    app.db.execute_raw(&link("B1-GHOST", repaid)).await.expect("inserting is not refused");
    let lists_ghost = format!(
        "loan B1-GHOST: its history lists seq {repaid}, which is not one of its transactions"
    );
    reports(&[lists_foreign.clone(), lists_ghost.clone()]).await;

    // One of this loan's own links removed (behind the trigger's back): the repayment is gone
    // from its history.
    let removed = app
        .behind_the_back(
            "journal_loan",
            &format!("delete from journal_loan where loan_id = '{id}' and seq = {repaid}"),
        )
        .await
        .expect("with the trigger gone the delete goes through");
    assert_eq!(removed, 1);
    assert_eq!(app.history(&t.bank, &id).await.len(), before.len());
    let lacks = format!("loan {id}: its history lacks seq {repaid}, one of its transactions");
    reports(&[lists_foreign, lacks, lists_ghost]).await;
    app.finish().await;
}

/// Verify checks the idempotency records against the journal: every transaction's request has
/// the record that names its seq. A record removed (a retry of its request is then written
/// again: the reason it matters), a record moved to another transaction, and one naming a seq
/// the journal does not have are each reported; the chain still holds.
async fn tampered_idempotency_records_are_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let first =
        entry(&app.repay_as(&t.bank, "pay-1", &id, "2021-03-20", 1_029_410).await.unwrap()).seq;
    let second = entry(&app.repay_as(&t.bank, "pay-2", &id, "2021-04-20", 500).await.unwrap()).seq;
    assert!(app.verify(&t.auditor).await.ok);
    let reports = async |expected: &[String]| verify_reports(&app, &t.auditor, expected).await;

    // Records naming a seq past the head, and seq 0 (where the records of commands outside any
    // chain are kept, but under no ledger).
    let inserted = app
        .behind_the_back("idempotency", &format!(
            "insert into idempotency (scope, request_id, fingerprint, result_json, ledger_id, seq) \
             values ('bank:B1', 'forged', 'f', '{{}}', '{LEDGER}', {}), \
             ('bank:B1', 'forged-0', 'f', '{{}}', '{LEDGER}', 0)",
            second + 100
        ))
        .await
        .expect("inserting is not refused");
    assert_eq!(inserted, 2);
    let unjournaled =
        |seq: u64| format!("an idempotency record names seq {seq}, which is not in the journal");
    let (at_0, past_head) = (unjournaled(0), unjournaled(second + 100));
    reports(&[at_0.clone(), past_head.clone()]).await;

    // The first repayment's record moved onto the second's transaction.
    let moved = app
        .behind_the_back(
            "idempotency",
            &format!("update idempotency set seq = {second} where request_id = 'pay-1'"),
        )
        .await
        .expect("with the triggers gone the update goes through");
    assert_eq!(moved, 1);
    let no_record = |seq: u64| {
        format!("seq {seq}: its request has no idempotency record: a retry would be written again")
    };
    let another = format!("seq {second}: an idempotency record of another request names it");
    reports(&[at_0.clone(), no_record(first), another.clone(), past_head.clone()]).await;

    // The second repayment's record removed: its retry is written again, a second repayment.
    let removed = app
        .behind_the_back("idempotency", "delete from idempotency where request_id = 'pay-2'")
        .await
        .expect("with the triggers gone the delete goes through");
    assert_eq!(removed, 1);
    reports(&[at_0, no_record(first), another, no_record(second), past_head]).await;
    let again = app.repay_as(&t.bank, "pay-2", &id, "2021-04-20", 500).await;
    let again = entry(&again.expect("the retry is taken as new")).seq;
    assert!(again > second, "written again at seq {again}");
    app.finish().await;
}

/// Verify checks the database's own guards against the migrations: a guard of the journal
/// dropped, disabled or weakened (so that a row can be changed again), a trigger added that
/// could rewrite a read model, and (PostgreSQL) a table replaced by a view are each reported,
/// while the chain and the read models still hold; put back, Verify passes again. An index of
/// the operator's own is not a problem.
async fn weakened_guards_are_reported(backend: Backend) {
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 1_029_410).await;
    let run = async |sql: &str| {
        app.execute_ddl(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    };
    run("create index my_report on loan (status)").await;
    assert!(app.verify(&t.auditor).await.ok);
    let reports = async |expected: &[&str]| {
        let expected: Vec<String> = expected.iter().map(|p| p.to_string()).collect();
        verify_reports(&app, &t.auditor, &expected).await;
    };
    let passes = async || assert!(app.verify(&t.auditor).await.ok);
    let added = "schema: trigger rewrite on loan is not the migrations'";
    match backend {
        Backend::Sqlite => {
            let guard: Vec<String> = app
                .db
                .query_texts("select sql from sqlite_master where name = 'journal_txn_no_update'")
                .await
                .expect("the guard");
            run("drop trigger journal_txn_no_update").await;
            reports(&["schema: trigger journal_txn_no_update on journal_txn is missing"]).await;
            // Put back with a condition that never holds: it refuses nothing.
            run(&guard[0].replace("begin", "when 0 begin")).await;
            reports(&[
                "schema: trigger journal_txn_no_update on journal_txn is not defined as the migrations define it",
            ])
            .await;
            run("drop trigger journal_txn_no_update").await;
            run(&guard[0]).await;
            passes().await;
            run("create trigger rewrite after update on loan begin select 1; end").await;
            reports(&[added]).await;
            run("drop trigger rewrite").await;
            // A trigger under the name of sqlx's table (triggers and tables have names of their
            // own): it was left out of the comparison with the table.
            run("create trigger _sqlx_migrations after update on api_token begin select 1; end")
                .await;
            reports(&["schema: trigger _sqlx_migrations on api_token is not the migrations'"])
                .await;
            run("drop trigger _sqlx_migrations").await;
        }
        Backend::Postgres => {
            run("alter table journal_txn disable trigger journal_txn_append_only").await;
            reports(&["schema: trigger journal_txn_append_only on journal_txn is disabled"]).await;
            run("alter table journal_txn enable trigger journal_txn_append_only").await;
            passes().await;
            let body = "begin return old; end";
            run(&format!(
                "create or replace function refuse_change() returns trigger language plpgsql \
                 as $${body}$$"
            ))
            .await;
            reports(&[
                "schema: function refuse_change() is not defined as the migrations define it",
            ])
            .await;
            run("create or replace function refuse_change() returns trigger language plpgsql as $$
begin
    raise exception '% is append-only', tg_table_name using errcode = 'P0001';
end;
$$")
            .await;
            passes().await;
            run("create function rewrite() returns trigger language plpgsql \
                 as $$begin return new; end$$; \
                 create trigger rewrite before update on loan for each row \
                 execute function rewrite()")
            .await;
            reports(&[added]).await;
            run("drop trigger rewrite on loan; drop function rewrite()").await;
            // The balances read through a view of a table under another name.
            run("alter table account_balance rename to balance_kept; \
                 create view account_balance as select * from balance_kept")
            .await;
            reports(&["schema: account_balance is a view, the migrations make it a table"]).await;
            run("drop view account_balance; alter table balance_kept rename to account_balance")
                .await;
            // A rule, row-level security and a policy: none of them the migrations'.
            run("create rule keep as on insert to lpr do instead nothing").await;
            reports(&["schema: rule keep on lpr is not the migrations'"]).await;
            run("drop rule keep on lpr").await;
            run("alter table loan enable row level security; \
                 create policy hide on loan using (status <> 'written_off')")
            .await;
            reports(&[
                "schema: policy hide on loan is not the migrations'",
                "schema: row-level security is on for loan: the migrations leave it off",
            ])
            .await;
            run("drop policy hide on loan; alter table loan disable row level security").await;
        }
    }
    passes().await;
    if backend == Backend::Postgres {
        // The guards switched off for every new session of the database: they read as enabled
        // but fire in none. (A server started after it has its connections so.)
        let database = app.db.query_texts("select current_database()::text").await;
        let database = database.expect("the database's name").concat();
        let set = format!("alter database {database} set session_replication_role = replica");
        app.execute_ddl(&set).await.expect("set on the database");
        app.restart().await;
        let expected = "schema: session_replication_role is replica in the service's sessions \
                        (set on its database or role): the guards do not fire";
        verify_reports(&app, &t.auditor, &[expected.to_string()]).await;
        let reset = format!("alter database {database} reset session_replication_role");
        app.execute_ddl(&reset).await.expect("reset on the database");
        app.restart().await;
        assert!(app.verify(&t.auditor).await.ok);
    }
    app.finish().await;
}

/// Bearer tokens and roles: a bank reaches only its own loans, an auditor only reads, nothing
/// but health works without a token.
async fn authentication_and_roles(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = loan_id("C001");
    app.create_loan(&t.bank, standard_loan("C001", HOUSEHOLD)).await;
    app.register_bank(&t.operator, "B2").await;
    let b2 = app.bank_token("B2").await;
    let mut other = app.loans(&b2);

    // Another bank's loan is NOT_FOUND to a bank, read or written, as a missing one: a bank
    // never learns whether another bank's loan exists, nor whose it is.
    let missing = expect_code(
        other.get_loan(pb::GetLoanRequest { loan_id: id.clone(), as_of: String::new() }).await,
        Code::NotFound,
    );
    assert_eq!(missing.message(), format!("loan {id} not found"));
    let absent = expect_code(
        other
            .get_loan(pb::GetLoanRequest { loan_id: "B1-NONE".into(), as_of: String::new() })
            .await,
        Code::NotFound,
    );
    assert_eq!(absent.message(), "loan B1-NONE not found");
    expect_code(
        other
            .disburse(pb::DisburseRequest {
                request_id: rid("disburse"),
                loan_id: id.clone(),
                value_date: "2021-01-25".into(),
                amount_fen: 0,
            })
            .await,
        Code::NotFound,
    );
    expect_code(
        other
            .record_repayment(pb::RecordRepaymentRequest {
                request_id: rid("repay"),
                loan_id: id.clone(),
                value_date: "2021-01-25".into(),
                amount_fen: 100,
            })
            .await,
        Code::NotFound,
    );
    // B2 contracting in B1's name is refused and not recorded: the same request id, its bank
    // corrected, is decided afresh (here over the household's cap, which B1's loan fills),
    // where it used to be REQUEST_ID_REUSED.
    let mut in_b1s_name = standard_loan("C-B2", HOUSEHOLD);
    expect_code(other.create_loan(in_b1s_name.clone()).await, Code::PermissionDenied);
    in_b1s_name.bank_id = "B2".into();
    expect_refused(other.create_loan(in_b1s_name).await, "HOUSEHOLD_CAP_EXCEEDED");
    let history =
        app.audit(&b2).get_loan_history(pb::GetLoanHistoryRequest { loan_id: id.clone() }).await;
    match history {
        Err(s) => assert_eq!(s.code(), Code::NotFound, "{s:?}"),
        Ok(stream) => {
            let got = collect(stream.into_inner()).await;
            assert_eq!(
                got.map_err(|s| s.code()),
                Err(Code::NotFound),
                "another bank's loan history"
            );
        }
    }
    let unknown = app
        .audit(&b2)
        .get_loan_history(pb::GetLoanHistoryRequest { loan_id: "NO-SUCH-LOAN".into() })
        .await;
    assert_eq!(unknown.err().map(|s| s.code()), Some(Code::NotFound), "an unknown loan's history");
    match other.list_loans(pb::ListLoansRequest::default()).await {
        Ok(list) => assert!(
            list.get_ref().loans.iter().all(|l| l.bank_id == "B2"),
            "a bank lists only its own loans: {:?}",
            list.get_ref()
        ),
        Err(s) => assert_eq!(s.code(), Code::PermissionDenied, "{s:?}"),
    }
    expect_code(
        other.list_loans(pb::ListLoansRequest { bank_id: BANK.into(), ..Default::default() }).await,
        Code::PermissionDenied,
    );
    // A bank does not read a ledger's journal.
    expect_code(
        app.audit(&t.bank).verify(pb::VerifyRequest { ledger_id: LEDGER.into() }).await,
        Code::PermissionDenied,
    );
    // Banks see household identity numbers masked.
    if let Ok(h) = app
        .registry(&t.bank)
        .get_household(pb::GetHouseholdRequest { household_id: HOUSEHOLD.into() })
        .await
    {
        assert!(h.get_ref().head_id_number.contains('*'), "masked for banks: {:?}", h.get_ref());
    }
    // The loan is untouched.
    let l = app.get_loan(&t.bank, &id).await;
    assert_eq!(l.status, pb::LoanStatus::Contracted as i32);

    // An auditor reads but never writes.
    assert_eq!(app.get_loan(&t.auditor, &id).await, l);
    let mut auditor_loans = app.loans(&t.auditor);
    expect_code(
        auditor_loans.create_loan(standard_loan("C-AUD", HOUSEHOLD)).await,
        Code::PermissionDenied,
    );
    expect_code(
        auditor_loans
            .disburse(pb::DisburseRequest {
                request_id: rid("disburse"),
                loan_id: id.clone(),
                value_date: "2021-01-25".into(),
                amount_fen: 0,
            })
            .await,
        Code::PermissionDenied,
    );
    let mut auditor_registry = app.registry(&t.auditor);
    expect_code(
        auditor_registry.register_household(household_request("H-AUD", "19800517")).await,
        Code::PermissionDenied,
    );
    expect_code(
        auditor_registry
            .create_ledger(pb::CreateLedgerRequest {
                request_id: rid("ledger"),
                ledger_id: "450122".into(),
                name: "x".into(),
            })
            .await,
        Code::PermissionDenied,
    );
    // A bank neither opens ledgers nor registers households.
    expect_code(
        app.registry(&t.bank).register_household(household_request("H-BANK", "19800517")).await,
        Code::PermissionDenied,
    );
    // A finance office of another ledger does not administer this one.
    let elsewhere = app.token(Role::Finance, "450122").await;
    expect_code(
        app.registry(&elsewhere).register_household(household_request("H-ELSE", "19800517")).await,
        Code::PermissionDenied,
    );
    // A household of a ledger the bank does not lend in is answered as a missing one: the bank
    // does not learn whether it exists.
    app.create_ledger(&t.operator, "450122", "another county").await;
    let mut other = household_request("H-ELSE", "19800517");
    other.ledger_id = "450122".into();
    app.registry(&elsewhere).register_household(other).await.expect("its own ledger's household");
    for household_id in ["H-ELSE", "NO-SUCH-HOUSEHOLD"] {
        let status = expect_code(
            app.registry(&t.bank)
                .get_household(pb::GetHouseholdRequest { household_id: household_id.into() })
                .await,
            Code::NotFound,
        );
        assert_eq!(status.message(), format!("household {household_id} not found"));
    }

    // The operator sets the service up (ledgers, banks, the LPR table; tokens on the command
    // line) and reads health (DESIGN.md's role table): it neither writes a ledger's registry,
    // policy or loans nor reads its households, loans or journal.
    let mut operator_registry = app.registry(&t.operator);
    expect_code(
        operator_registry.register_household(household_request("H-OP", "19800517")).await,
        Code::PermissionDenied,
    );
    expect_code(
        operator_registry
            .set_household_status(status_request(
                HOUSEHOLD,
                pb::HouseholdStatus::Exited,
                "2021-06-01",
            ))
            .await,
        Code::PermissionDenied,
    );
    for household_id in [HOUSEHOLD, "NO-SUCH-HOUSEHOLD"] {
        // Alike whether the household exists or not: the operator learns nothing of either.
        expect_code(
            operator_registry
                .get_household(pb::GetHouseholdRequest { household_id: household_id.into() })
                .await,
            Code::PermissionDenied,
        );
    }
    let policy = operator_registry
        .get_policy(pb::GetPolicyRequest { ledger_id: LEDGER.into(), as_of: String::new() })
        .await
        .expect("the policy in force is configuration, readable by the operator")
        .into_inner();
    expect_code(
        operator_registry
            .set_policy(pb::SetPolicyRequest {
                request_id: rid("policy"),
                ledger_id: LEDGER.into(),
                effective_date: "2022-01-01".into(),
                params: policy.params,
            })
            .await,
        Code::PermissionDenied,
    );
    let mut operator_loans = app.loans(&t.operator);
    expect_code(
        operator_loans
            .get_loan(pb::GetLoanRequest { loan_id: id.clone(), as_of: String::new() })
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        operator_loans.list_loans(pb::ListLoansRequest::default()).await,
        Code::PermissionDenied,
    );
    expect_code(
        operator_loans
            .settle_loans(pb::SettleLoansRequest {
                request_id: rid("settle"),
                ledger_id: LEDGER.into(),
                bank_id: String::new(),
                settlement_date: "2021-03-20".into(),
            })
            .await,
        Code::PermissionDenied,
    );
    let mut operator_audit = app.audit(&t.operator);
    let history =
        operator_audit.get_loan_history(pb::GetLoanHistoryRequest { loan_id: id.clone() }).await;
    assert_eq!(history.err().map(|s| s.code()), Some(Code::PermissionDenied), "a loan's history");
    // A loan that does not exist is refused alike: the operator cannot learn which loans do.
    let missing = loan_id("NOSUCH");
    expect_code(
        operator_loans
            .get_loan(pb::GetLoanRequest { loan_id: missing.clone(), as_of: String::new() })
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        operator_loans
            .get_payoff_quote(pb::GetPayoffQuoteRequest {
                loan_id: missing.clone(),
                as_of: "2021-03-01".into(),
            })
            .await,
        Code::PermissionDenied,
    );
    let history =
        operator_audit.get_loan_history(pb::GetLoanHistoryRequest { loan_id: missing }).await;
    assert_eq!(
        history.err().map(|s| s.code()),
        Some(Code::PermissionDenied),
        "a missing loan's history"
    );
    let journal = operator_audit
        .read_journal(pb::ReadJournalRequest { ledger_id: LEDGER.into(), from_seq: 0, to_seq: 0 })
        .await;
    assert_eq!(journal.err().map(|s| s.code()), Some(Code::PermissionDenied), "the journal");
    expect_code(
        operator_audit.verify(pb::VerifyRequest { ledger_id: LEDGER.into() }).await,
        Code::PermissionDenied,
    );

    // A role that may never make a call is refused before the writer, and nothing is recorded
    // under the request id (an auditor cannot fill the append-only idempotency table); a bank
    // refused for another bank's loan (NOT_FOUND, as a missing one) is answered from the stored
    // loan, and that refusal is recorded, to be given again.
    let recorded = |request_id: String| {
        let db = app.db.clone();
        async move {
            let sql = format!(
                "update ledger set name = name where ledger_id = '{LEDGER}' and \
                 exists (select 1 from idempotency where request_id = '{request_id}')"
            );
            db.execute_raw(&sql).await.expect("the idempotency table reads") == 1
        }
    };
    let item = |request_id: &str| pb::BatchItem {
        request_id: request_id.into(),
        item: Some(pb::batch_item::Item::Repayment(pb::RepaymentItem {
            loan_id: id.clone(),
            value_date: "2021-02-01".into(),
            amount_fen: 100,
        })),
    };
    let by_auditor = rid("auditor-batch");
    let refused = expect_code(
        app.loans(&t.auditor)
            .submit_batch(pb::SubmitBatchRequest { items: vec![item(&by_auditor)] })
            .await,
        Code::PermissionDenied,
    );
    assert!(refused.message().contains("only a bank may"), "{refused:?}");
    assert!(!recorded(by_auditor).await, "an auditor's refused batch item is not recorded");
    let by_operator = rid("operator-household");
    let household = pb::RegisterHouseholdRequest {
        request_id: by_operator.clone(),
        ..household_request("H-OP2", "19800517")
    };
    expect_code(
        app.registry(&t.operator).register_household(household).await,
        Code::PermissionDenied,
    );
    assert!(!recorded(by_operator).await, "the operator's refused registration is not recorded");
    let by_other_bank = rid("other-bank");
    let repayment = pb::RecordRepaymentRequest {
        request_id: by_other_bank.clone(),
        loan_id: id.clone(),
        value_date: "2021-02-01".into(),
        amount_fen: 100,
    };
    expect_code(app.loans(&b2).record_repayment(repayment).await, Code::NotFound);
    assert!(recorded(by_other_bank).await, "a bank's refusal on a stored loan is recorded");

    // A finance office's token bound to "*" (made before that was refused) is no credential.
    let secret = format!("ll_{}", "ab".repeat(32));
    let hash = loanledger::app::auth::hash_token(&secret);
    app.db.insert_token("tok_every_ledger", &hash, "finance", "*", 0).await.expect("stored");
    expect_code(
        app.registry(&secret)
            .get_household(pb::GetHouseholdRequest { household_id: HOUSEHOLD.into() })
            .await,
        Code::Unauthenticated,
    );

    // The scheme's name in any case, as HTTP reads it; another scheme, or none, is no credential.
    for (value, code) in [
        (format!("bearer {}", t.auditor), None),
        (format!("BEARER  {}", t.auditor), None),
        (format!("Basic {}", t.auditor), Some(Code::Unauthenticated)),
        (t.auditor.clone(), Some(Code::Unauthenticated)),
        ("Bearer".to_string(), Some(Code::Unauthenticated)),
    ] {
        let mut request = tonic::Request::new(pb::GetLedgerRequest { ledger_id: LEDGER.into() });
        request.metadata_mut().insert("authorization", value.parse().expect("ASCII"));
        let answer = RegistryServiceClient::new(app.channel()).get_ledger(request).await;
        match code {
            None => assert!(answer.is_ok(), "{value:?}: {answer:?}"),
            Some(code) => {
                expect_code(answer, code);
            }
        }
    }

    // No token, or an unknown one.
    let mut anonymous = RegistryServiceClient::new(app.channel());
    expect_code(
        anonymous.get_ledger(pb::GetLedgerRequest { ledger_id: LEDGER.into() }).await,
        Code::Unauthenticated,
    );
    expect_code(
        anonymous
            .create_ledger(pb::CreateLedgerRequest {
                request_id: rid("ledger"),
                ledger_id: "450123".into(),
                name: "x".into(),
            })
            .await,
        Code::Unauthenticated,
    );
    let mut anonymous_loans =
        loanledger::api::pb::loan_service_client::LoanServiceClient::new(app.channel());
    expect_code(
        anonymous_loans
            .get_loan(pb::GetLoanRequest { loan_id: id.clone(), as_of: String::new() })
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        app.loans("ll_0000000000000000000000000000000000000000000000000000000000000000")
            .get_loan(pb::GetLoanRequest { loan_id: id.clone(), as_of: String::new() })
            .await,
        Code::Unauthenticated,
    );
    let mut anonymous_audit =
        loanledger::api::pb::audit_service_client::AuditServiceClient::new(app.channel());
    expect_code(
        anonymous_audit.verify(pb::VerifyRequest { ledger_id: LEDGER.into() }).await,
        Code::Unauthenticated,
    );

    // Health needs no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel());
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .expect("health without a token")
        .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest { service: "loanledger.v1.LoanService".into() })
        .await
        .expect("health of the loan service")
        .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Nothing above wrote anything but the seed, the loan and bank B2.
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// What lies outside a caller's books is answered as missing, read or written: a finance office
/// or an auditor of another ledger gets NOT_FOUND for a loan or a household of this one, with
/// the message of one that does not exist (it used to be PERMISSION_DENIED for an existing one,
/// which told it the id was taken and, for a write, whose loan it was), and a bank contracting
/// for a household of another ledger is told the household is missing, as `GetHousehold`
/// tells it (it used to be LEDGER_MISMATCH, naming the ledger).
async fn what_is_outside_the_callers_books_is_missing_to_it(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = loan_id("C001");
    let before = app.create_loan(&t.bank, standard_loan("C001", HOUSEHOLD)).await.loan.unwrap();
    app.create_ledger(&t.operator, "450122", "another county").await;
    let finance = app.token(Role::Finance, "450122").await;
    let auditor = app.token(Role::Auditor, "450122").await;
    let mut other = household_request("H-ELSE", "19800517");
    other.ledger_id = "450122".into();
    app.registry(&finance).register_household(other).await.expect("its own ledger's household");
    let missing = loan_id("NOSUCH");
    let not_found = |what: &str, id: &str| format!("{what} {id} not found");

    for token in [&finance, &auditor] {
        let mut loans = app.loans(token);
        let mut audit = app.audit(token);
        for loan in [&id, &missing] {
            let s = expect_code(
                loans
                    .get_loan(pb::GetLoanRequest { loan_id: loan.clone(), as_of: String::new() })
                    .await,
                Code::NotFound,
            );
            assert_eq!(s.message(), not_found("loan", loan));
            let s = expect_code(
                loans
                    .get_payoff_quote(pb::GetPayoffQuoteRequest {
                        loan_id: loan.clone(),
                        as_of: "2021-03-01".into(),
                    })
                    .await,
                Code::NotFound,
            );
            assert_eq!(s.message(), not_found("loan", loan));
            let s = audit
                .get_loan_history(pb::GetLoanHistoryRequest { loan_id: loan.clone() })
                .await
                .expect_err("a loan outside the books has no history to read");
            assert_eq!((s.code(), s.message()), (Code::NotFound, not_found("loan", loan).as_str()));
        }
        for household_id in [HOUSEHOLD, "NO-SUCH-HOUSEHOLD"] {
            let s = expect_code(
                app.registry(token)
                    .get_household(pb::GetHouseholdRequest { household_id: household_id.into() })
                    .await,
                Code::NotFound,
            );
            assert_eq!(s.message(), not_found("household", household_id));
        }
    }

    // Written: the other ledger's finance office marks misuse and sets a household's status in
    // this ledger, and is answered as for a missing loan or household; nothing is posted.
    let mut registry = app.registry(&finance);
    for loan in [&id, &missing] {
        let s = expect_code(
            app.loans(&finance)
                .mark_misuse(pb::MarkMisuseRequest {
                    request_id: rid("misuse"),
                    loan_id: loan.clone(),
                    value_date: "2021-02-01".into(),
                })
                .await,
            Code::NotFound,
        );
        assert_eq!(s.message(), not_found("loan", loan), "{s:?}");
    }
    for household_id in [HOUSEHOLD, "NO-SUCH-HOUSEHOLD"] {
        let s = expect_code(
            registry
                .set_household_status(status_request(
                    household_id,
                    pb::HouseholdStatus::Removed,
                    "2021-06-01",
                ))
                .await,
            Code::NotFound,
        );
        assert_eq!(s.message(), not_found("household", household_id));
    }
    // This ledger's own finance office reads the loan and the household, unchanged.
    let stored = app.get_loan(&t.finance, &id).await;
    assert_eq!((stored.misuse_since.as_str(), stored.last_seq), ("", before.last_seq));
    let household = app
        .registry(&t.finance)
        .get_household(pb::GetHouseholdRequest { household_id: HOUSEHOLD.into() })
        .await
        .expect("its own ledger's household")
        .into_inner();
    assert_eq!(household.status_history.len(), 1, "{household:?}");

    // A bank contracting for a household of another ledger, or for none.
    for household_id in ["H-ELSE", "NO-SUCH-HOUSEHOLD"] {
        let s = expect_code(
            app.loans(&t.bank).create_loan(standard_loan("C-ELSE", household_id)).await,
            Code::NotFound,
        );
        assert_eq!(s.message(), not_found("household", household_id));
    }
}

/// PostgreSQL: every connection of the service killed under it (as a database restart or a
/// firewall dropping connections would). A pooled connection idle for a while is pinged before
/// it is handed out, so after a pause the reads succeed at once; one killed while in use a
/// moment ago fails its next read with UNAVAILABLE (retryable), never INTERNAL, and is
/// replaced. The writer opens its connection again; a repayment retried under the same request
/// id posts once, and verify holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_killed_under_the_service() {
    let Some((app, t, id)) = with_disbursed_loan(Backend::Postgres).await else {
        return;
    };
    let before = app.history(&t.auditor, &id).await;
    let journal_before = app.journal(&t.auditor, LEDGER).await.len();

    // After a pause: the idle connections are pinged, the dead ones replaced unseen.
    warm_readers(&app, &t.auditor, &id).await;
    kill_service_sessions(&app).await;
    tokio::time::sleep(loanledger::store::PING_IF_IDLE_FOR + Duration::from_millis(200)).await;
    for _ in 0..6 {
        assert_eq!(app.history(&t.auditor, &id).await, before);
    }

    // At once: a read may meet a dead connection, and is answered UNAVAILABLE.
    warm_readers(&app, &t.auditor, &id).await;
    kill_service_sessions(&app).await;
    let mut unavailable = 0;
    let history = loop {
        let answer = app
            .audit(&t.auditor)
            .get_loan_history(pb::GetLoanHistoryRequest { loan_id: id.clone() })
            .await;
        match answer {
            Ok(stream) => break collect(stream.into_inner()).await.expect("the history's stream"),
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "a dead connection: {s:?}");
                unavailable += 1;
                assert!(unavailable <= 10, "the pool keeps handing out dead connections");
            }
        }
    };
    assert_eq!(history, before);

    let mut attempts = 0;
    let repaid = loop {
        attempts += 1;
        match app.repay_as(&t.bank, "after-kill", &id, "2021-03-20", 1_000).await {
            Ok(r) => break r,
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "the writer's dead connection: {s:?}");
                assert!(attempts <= 10, "the writer does not open its connection again");
            }
        }
    };
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), journal_before + 1, "posted once");
    assert_eq!(journal.last().map(|e| e.seq), Some(entry(&repaid).seq));

    // A group whose first statement meets the dead connection before any BEGIN (a registry
    // command reads its request id first) gets a new connection too.
    kill_service_sessions(&app).await;
    let mut attempts = 0;
    let request_id = rid("bank-after-kill");
    loop {
        attempts += 1;
        let answer = app
            .registry(&t.operator)
            .register_bank(pb::RegisterBankRequest {
                request_id: request_id.clone(),
                ledger_id: LEDGER.into(),
                bank_id: "B7".into(),
                name: "after the kill".into(),
            })
            .await;
        match answer {
            Ok(_) => break,
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "the writer's dead connection: {s:?}");
                assert!(attempts <= 10, "the writer keeps its dead connection");
            }
        }
    }
    // (The readers' connections were killed too: after a pause they are pinged and replaced.)
    tokio::time::sleep(loanledger::store::PING_IF_IDLE_FOR + Duration::from_millis(200)).await;
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), journal_before + 2, "posted once");
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// Four history reads at once, so that the readers' pool holds several connections.
async fn warm_readers(app: &TestApp, token: &str, loan_id: &str) {
    tokio::join!(
        app.history(token, loan_id),
        app.history(token, loan_id),
        app.history(token, loan_id),
        app.history(token, loan_id),
    );
}

/// Terminates every other session on the test's database: the service's pool and writer.
async fn kill_service_sessions(app: &TestApp) {
    let killed = app
        .db
        .execute_raw(
            "select pg_terminate_backend(pid) from pg_stat_activity \
             where datname = current_database() and pid <> pg_backend_pid()",
        )
        .await
        .expect("terminate the service's sessions");
    assert!(killed >= 2, "the service's sessions were killed: {killed}");
}

/// The identity-number helper agrees with the example of GB 11643-1999 itself.
#[test]
fn id_number_helper_matches_the_standard() {
    assert_eq!(id_number_in("110105", "19491231", 2), "11010519491231002X");
    let id = id_number("19800517");
    assert_eq!(id.len(), 18);
    assert_eq!(&id[6..14], "19800517");
}

/// A contract's overdue uplift altered behind the service's back to one no policy may set
/// (10^28: the penalty rate's arithmetic overflows a decimal, a panic of the writer that left
/// every later write UNAVAILABLE, or of verify's replay, INTERNAL, whatever else the journal
/// showed) is a row that cannot be read: INTERNAL to its bank's read and write of that loan,
/// while the writer goes on serving the others; verify reports the loan's row. In the journal's
/// contract, verify reports the event as unreadable at its seq (the chain's hash too).
async fn an_uplift_altered_out_of_bounds_is_an_unreadable_row(backend: Backend) {
    let Some((mut app, t, id, other)) = with_two_disbursed_loans(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 100_000).await;
    let huge = "79228162514264337593543950335";
    let (uplift, altered) = (r#""overdue_uplift":"0.5""#, format!(r#""overdue_uplift":"{huge}""#));
    let policy_sql = format!("select policy_json from loan where loan_id = '{id}'");
    let policy = app.db.query_texts(&policy_sql).await.expect("the loan's policy").concat();
    assert!(policy.contains(uplift), "{policy}");
    let set_policy =
        |json: &str| format!("update loan set policy_json = '{json}' where loan_id = '{id}'");
    let damaged = set_policy(&policy.replacen(uplift, &altered, 1));
    assert_eq!(app.db.execute_raw(&damaged).await.expect("the loan's row altered"), 1);
    // (The writer keeps the loans it committed: started afresh, it reads the row.)
    app.restart().await;

    let status = expect_code(
        app.loans(&t.bank)
            .get_loan(pb::GetLoanRequest { loan_id: id.clone(), as_of: String::new() })
            .await,
        Code::Internal,
    );
    assert_eq!(status.message(), "internal error; the detail is in the server log");
    let repaid = app.repay_as(&t.bank, &rid("altered"), &id, "2021-06-20", 100_000).await;
    expect_code(repaid.map(tonic::Response::new), Code::Internal);
    // The writer serves on: the other loan's repayment, and this loan's read, once restored.
    let answer = app.repay(&t.bank, &other, "2021-06-20", 100_000).await;
    assert!(answer.loan.expect("the loan").principal_outstanding_fen < 5_000_000);
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok && v.first_break_seq == 0, "{v:?}");
    let unreadable = format!("loan {id}: its stored row cannot be read as a loan (");
    assert!(v.problems.iter().any(|p| p.starts_with(&unreadable)), "{v:?}");
    app.db.execute_raw(&set_policy(&policy)).await.expect("the loan's row restored");
    assert!(app.verify(&t.auditor).await.ok);
    app.repay(&t.bank, &id, "2021-06-21", 100_000).await;

    // The contract in the journal: its event no longer reads, reported at its seq.
    let created = app
        .db
        .query_texts(&format!(
            "select cast(seq as text) from journal_txn where ledger_id = '{LEDGER}' \
             and kind = 'loan.created' and command_json like '%\"loan_id\":\"{id}\"%'"
        ))
        .await
        .expect("the contract's seq");
    assert_eq!(created.len(), 1, "{created:?}");
    let seq: u64 = created[0].parse().expect("a seq");
    let forge = format!(
        "update journal_txn set command_json = replace(command_json, '{uplift}', '{altered}') \
         where ledger_id = '{LEDGER}' and seq = {seq}"
    );
    assert_eq!(app.behind_the_back("journal_txn", &forge).await.expect("the event altered"), 1);
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok && v.first_break_seq == seq, "{v:?}");
    assert!(
        v.problems.iter().any(|p| p.starts_with(&format!("seq {seq}: ")) && p.contains("uplift")),
        "{v:?}"
    );
    app.finish().await;
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

/// As [`with_disbursed_loan`], and a second loan, C002 of household H002, disbursed the same day.
async fn with_two_disbursed_loans(backend: Backend) -> Option<(TestApp, Tokens, String, String)> {
    let (app, t, id) = with_disbursed_loan(backend).await?;
    app.register_household(&t.finance, "H002", "19800517").await;
    let other = loan_id("C002");
    app.create_loan(&t.bank, standard_loan("C002", "H002")).await;
    app.disburse(&t.bank, &other, "2021-01-25").await;
    Some((app, t, id, other))
}

/// A trigger that fails every insert of an idempotency record whose request id starts with
/// `poison`: the database failing a group's writes.
async fn poison_idempotency(app: &TestApp, backend: Backend) {
    let poison = match backend {
        Backend::Sqlite => {
            "create trigger poison before insert on idempotency \
             when new.request_id like 'poison%' begin select raise(abort, 'poisoned'); end"
        }
        Backend::Postgres => {
            "create function poison() returns trigger language plpgsql as $$ \
             begin if new.request_id like 'poison%' then raise exception 'poisoned'; end if; \
             return new; end $$; \
             create trigger poison before insert on idempotency \
             for each row execute function poison()"
        }
    };
    app.db.execute_raw(poison).await.expect("the test's trigger");
}

/// Verify with the test's poison trigger in place: the chain and the read models hold, and the
/// trigger, not one of the migrations', is the one problem reported.
async fn verifies_beside_the_poison(app: &TestApp, auditor: &str) {
    let v = app.verify(auditor).await;
    assert_eq!(
        v.problems,
        ["schema: trigger poison on idempotency is not the migrations'"],
        "{v:?}"
    );
    assert_eq!(v.first_break_seq, 0, "{v:?}");
}

/// Groups failing among others on the same loan: the groups the writer planned while a failing
/// one committed, on the states it would have left, are thrown away and run again, so every
/// answered repayment counts once and the stored loan is the journal's.
async fn failed_groups_beside_others(backend: Backend) {
    const ROUNDS: usize = 16;
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    poison_idempotency(&app, backend).await;
    let before = app.journal(&t.auditor, LEDGER).await.len();

    let mut batches = Vec::new();
    let mut beside = Vec::new();
    for i in 0..ROUNDS {
        let mut loans = app.loans(&t.bank);
        let items = vec![
            repayment_item(&rid("side"), &id, "2021-03-20", 10),
            repayment_item(&format!("poison-{i}"), &id, "2021-03-20", 10),
        ];
        batches.push(tokio::spawn(async move {
            loans.submit_batch(pb::SubmitBatchRequest { items }).await.map(|r| r.into_inner())
        }));
        let mut loans = app.loans(&t.bank);
        let items = vec![
            repayment_item(&rid("beside"), &id, "2021-03-20", 10),
            repayment_item(&rid("beside"), &id, "2021-03-20", 10),
        ];
        beside.push(tokio::spawn(async move {
            loans.submit_batch(pb::SubmitBatchRequest { items }).await.map(|r| r.into_inner())
        }));
    }
    for task in batches {
        let answer = task.await.expect("batch task").expect("SubmitBatch");
        assert_eq!((answer.posted, answer.failed), (1, 1), "{answer:?}");
        assert_eq!(answer.results[1].code, "INTERNAL", "{answer:?}");
    }
    for task in beside {
        let answer = task.await.expect("batch task").expect("SubmitBatch beside a failing group");
        assert_eq!((answer.posted, answer.failed), (2, 0), "{answer:?}");
    }
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), before + 3 * ROUNDS);
    check_chain(&journal);
    let l = app.get_loan(&t.bank, &id).await;
    assert_eq!(l.interest_paid_fen + l.principal_repaid_fen, 3 * ROUNDS as i64 * 10, "{l:?}");
    let b = balances(&journal);
    assert_eq!(b.get(&format!("loan/{id}/principal")).copied(), Some(l.principal_outstanding_fen));
    verifies_beside_the_poison(&app, &t.auditor).await;
    app.finish().await;
}

/// A group whose writes fail part-way leaves nothing behind. A trigger refuses the idempotency
/// row of one request (written after the group's journal rows, postings and loan links): the
/// writer takes the group apart, posts the other commands, answers the refused one INTERNAL,
/// and the chain goes on without a gap. A later item of the batch on the same loan is held
/// back (UNAVAILABLE, not run, nothing recorded: run, it would come before the one it follows
/// in the file); one on another loan is posted. Sent again once the trigger is gone, the batch
/// runs in its order: what was answered is answered the same, the rest is posted. Verify
/// holds throughout.
async fn failed_write_leaves_nothing(backend: Backend) {
    let Some((app, t, id, other)) = with_two_disbursed_loans(backend).await else {
        return;
    };
    poison_idempotency(&app, backend).await;
    let before = app.journal(&t.auditor, LEDGER).await;
    let head = before.last().expect("seeded journal").seq;

    let items = vec![
        repayment_item(&rid("first"), &id, "2021-03-20", 100),
        repayment_item("poison-1", &id, "2021-03-20", 100),
        repayment_item(&rid("third"), &id, "2021-03-20", 100),
        repayment_item(&rid("other"), &other, "2021-03-20", 100),
    ];
    let batch = pb::SubmitBatchRequest { items };
    let answer =
        app.loans(&t.bank).submit_batch(batch.clone()).await.expect("SubmitBatch").into_inner();
    let r = &answer.results;
    assert_eq!((answer.posted, answer.failed), (2, 2), "{answer:?}");
    assert!(r[0].ok && !r[1].ok && !r[2].ok && r[3].ok, "{answer:?}");
    assert_eq!(r[1].code, "INTERNAL", "{answer:?}");
    assert_eq!(r[2].code, "UNAVAILABLE", "{answer:?}");
    assert!(r[2].message.contains("went unanswered"), "{answer:?}");
    let seqs: Vec<u64> = [&r[0], &r[3]].iter().map(|x| x.entry.as_ref().unwrap().seq).collect();
    assert_eq!(seqs, [head + 1, head + 2], "{answer:?}");

    // Alone, the refused request fails the same way and posts nothing.
    let err = app
        .repay_as(&t.bank, "poison-2", &id, "2021-03-20", 100)
        .await
        .expect_err("the trigger refuses it");
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), before.len() + 2);
    assert!(journal.windows(2).all(|w| w[1].seq == w[0].seq + 1), "no gap in the chain");
    assert!(journal.iter().all(|e| !e.request_id.starts_with("poison")), "{journal:?}");
    verifies_beside_the_poison(&app, &t.auditor).await;

    // With the trigger gone the batch is sent again: nothing of the refused or held-back items
    // was kept, so they are posted now, in the file's order.
    let drop = match backend {
        Backend::Sqlite => "drop trigger poison",
        Backend::Postgres => "drop trigger poison on idempotency; drop function poison()",
    };
    app.db.execute_raw(drop).await.expect("drop the test's trigger");
    let again = app.loans(&t.bank).submit_batch(batch).await.expect("SubmitBatch").into_inner();
    let r2 = &again.results;
    assert_eq!((again.posted, again.failed), (4, 0), "{again:?}");
    let seqs: Vec<u64> = r2.iter().map(|x| x.entry.as_ref().unwrap().seq).collect();
    assert_eq!(seqs, [head + 1, head + 3, head + 4, head + 2], "{again:?}");
    let l = app.get_loan(&t.bank, &id).await;
    assert_eq!(l.interest_paid_fen, 300, "three repayments of 100 fen, no more: {l:?}");
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
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
    let item = pb::BatchItem {
        request_id: rid("future"),
        item: Some(pb::batch_item::Item::Repayment(pb::RepaymentItem {
            loan_id: id.clone(),
            value_date: future.clone(),
            amount_fen: 100,
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
    let far = pb::GetLoanRequest { loan_id: id.clone(), as_of: "2131-03-20".into() };
    let refused = expect_refused(loans.get_loan(far).await, "VALUE_DATE_OUT_OF_RANGE");
    let named = format!(
        "VALUE_DATE_OUT_OF_RANGE: as_of 2131-03-20: more than 240 settlement points to catch up after the loan's last \
         recorded event on {today}"
    );
    assert_eq!(refused.message(), named);
    assert_eq!(metadata(&refused, "field").as_deref(), Some("as_of"), "{refused:?}");
    let quote =
        |as_of: &str| pb::GetPayoffQuoteRequest { loan_id: id.clone(), as_of: as_of.into() };
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
    let set = registry.set_lpr(req("l1", "0.029")).await.expect("SetLpr").into_inner();
    assert_eq!(set.entry, Some(entry("0.029")));
    let again = registry.set_lpr(req("l1", "0.0290")).await.expect("SetLpr again").into_inner();
    assert_eq!(again, set, "the same entry, the rate written otherwise");
    let exists = expect_code(registry.set_lpr(req(&rid("l"), "0.028")).await, Code::AlreadyExists);
    let reason = exists.get_details_error_info().map(|i| i.reason);
    assert_eq!(reason.as_deref(), Some("LPR_ENTRY_EXISTS"), "{exists:?}");
    let listed =
        app.registry(&t.bank).list_lpr(pb::ListLprRequest {}).await.expect("ListLpr").into_inner();
    assert_eq!(listed.entries.last(), Some(&entry("0.029")), "{listed:?}");
    assert!(listed.entries.len() > 1, "the seeded entries are listed too");

    // A one-year contract from 2026-11-25 may charge at most 2.9%.
    let mut contract = standard_loan_on("L29", HOUSEHOLD, "2026-11-25");
    contract.annual_rate = "0.0295".into();
    expect_refused(app.loans(&t.bank).create_loan(contract.clone()).await, "RATE_ABOVE_LPR_CAP");
    // The refusal is its request id's answer: the corrected contract goes under another id.
    contract.annual_rate = "0.029".into();
    expect_code(app.loans(&t.bank).create_loan(contract.clone()).await, Code::AlreadyExists);
    contract.request_id = rid("c");
    app.create_loan(&t.bank, contract).await;
    app.finish().await;
}

/// The first operator token is made for a fresh database only, and only by a server that
/// listens: one whose port is taken stores none (it would never be printed), and a database
/// with ledgers whose tokens are all gone gets none at a restart. The token commands work on
/// a database this build's migrations set up, and refuse, rather than migrate, one they did not.
/// A `RUST_LOG` the commands cannot read is said so.
async fn first_operator_token_and_token_commands(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    app.seed().await;
    app.db.execute_raw("delete from api_token").await.expect("the tokens gone");
    // (restart asserts that no operator token is made.)
    app.restart().await;
    assert_eq!(app.db.count_tokens().await.expect("tokens"), 0);
    let token_list = |database_url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
            .args(["token", "list", "--database-url", database_url])
            .output()
            .expect("the binary runs")
    };
    let listed = token_list(&app.database_url);
    assert!(listed.status.success(), "{listed:?}");
    app.finish().await;
    if backend != Backend::Sqlite {
        return;
    }

    // A fresh SQLite file, its server's port taken.
    let dir = tempfile::tempdir().expect("a directory");
    let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let settings = serve_settings(&url, taken.local_addr().expect("its address"));
    assert!(loanledger::startup::Application::build(settings).await.is_err(), "the port is taken");
    let db = loanledger::store::Db::connect(&url).await.expect("the database");
    assert_eq!(db.count_tokens().await.expect("migrated, no token"), 0);
    // A file that does not exist (a path mistyped, or relative to another directory): the
    // token commands and verify refuse it and do not create it.
    let path = dir.path().join("bare.db");
    let bare = format!("sqlite://{}", path.display());
    for args in [&["token", "list"][..], &["verify", "--ledger", LEDGER]] {
        let refused = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
            .args(args)
            .args(["--database-url", &bare])
            .output()
            .expect("the binary runs");
        assert!(!refused.status.success(), "{refused:?}");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains(&format!("no database at {}", path.display())), "{said}");
        assert!(!path.exists(), "{args:?} created the file");
    }
    // A RUST_LOG that cannot be read is said so, not ignored.
    let unread = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
        .args(["verify", "--ledger", LEDGER, "--database-url", &bare])
        .env("RUST_LOG", "loanledger=loud")
        .output()
        .expect("the binary runs");
    let said = String::from_utf8_lossy(&unread.stderr);
    assert!(said.contains("RUST_LOG cannot be read") && said.contains("logging at info"), "{said}");
    // Not migrated: the token commands refuse it and leave it so.
    let bare_db = loanledger::store::Db::connect(&bare).await.expect("the file");
    let refused = token_list(&bare);
    assert!(!refused.status.success(), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("not set up"), "{said}");
    assert!(bare_db.check_migrated().await.is_err());
}

/// A disbursed loan on a server that keeps a checked token `ttl`, and a bank token that read
/// the loan (so that the server has it checked) and was then revoked: (the app, its tokens, the
/// loan's id, the revoked token, its id).
async fn a_revoked_token(
    backend: Backend,
    ttl: Duration,
) -> Option<(TestApp, Tokens, String, String, String)> {
    let (mut app, t, id) = with_disbursed_loan(backend).await?;
    app.restart_with(loanledger::startup::business_utc_offset_default(), ttl).await;
    let leaked = app.bank_token(BANK).await;
    assert_eq!(app.get_loan(&leaked, &id).await.loan_id, id);
    let token_id = loanledger::app::auth::token_id_of(&leaked).expect("a token's id");
    assert!(loanledger::app::auth::revoke_token(&app.db, &token_id).await.expect("revoke"));
    Some((app, t, id, leaked, token_id))
}

/// A revoked token (`token revoke`) is refused, UNAUTHENTICATED, once the server's cache of
/// checked tokens has let it go (`serve`: 30 s; this test's server: 300 ms). The bank's other
/// tokens go on working, and `token list` shows it revoked.
async fn revoked_token_is_refused(backend: Backend) {
    const TOKEN_CACHE_TTL: Duration = Duration::from_millis(300);
    let Some((app, t, id, leaked, token_id)) = a_revoked_token(backend, TOKEN_CACHE_TTL).await
    else {
        return;
    };
    assert!(
        !loanledger::app::auth::revoke_token(&app.db, &token_id).await.expect("revoke again"),
        "revoked once"
    );
    tokio::time::sleep(TOKEN_CACHE_TTL + Duration::from_millis(200)).await;
    let request = || pb::GetLoanRequest { loan_id: id.clone(), as_of: String::new() };
    expect_code(app.loans(&leaked).get_loan(request()).await, Code::Unauthenticated);
    expect_code(app.loans(&leaked).get_loan(request()).await, Code::Unauthenticated);
    assert_eq!(app.get_loan(&t.bank, &id).await.loan_id, id);
    let listed = app.db.list_tokens().await.expect("the tokens");
    let revoked: Vec<&str> =
        listed.iter().filter(|t| t.revoked_at_us.is_some()).map(|t| t.token_id.as_str()).collect();
    assert_eq!(revoked, [token_id.as_str()]);
    app.finish().await;
}

/// A token's re-read runs to the end even when the call that started it is dropped (its
/// deadline passed while the database was slow): the revoked token is then refused at once, not
/// served from the entry as it was for another cache period, which a client that let every
/// re-read time out kept alive for ever. PostgreSQL: its table lock holds the read back (SQLite
/// readers are never held back by a writer).
async fn a_cancelled_token_read_still_revokes(backend: Backend) {
    const TOKEN_CACHE_TTL: Duration = Duration::from_millis(1_000);
    if backend != Backend::Postgres {
        return;
    }
    let Some((app, _, id, leaked, _)) = a_revoked_token(backend, TOKEN_CACHE_TTL).await else {
        return;
    };
    tokio::time::sleep(TOKEN_CACHE_TTL + Duration::from_millis(100)).await;

    use sqlx::Connection;
    let mut lock = sqlx::PgConnection::connect(&app.database_url).await.expect("a connection");
    let mut held = lock.begin().await.expect("a transaction");
    sqlx::query("lock table api_token in access exclusive mode")
        .execute(&mut *held)
        .await
        .expect("the lock");
    let mut request =
        tonic::Request::new(pb::GetLoanRequest { loan_id: id.clone(), as_of: String::new() });
    request.set_timeout(Duration::from_millis(150));
    let timed_out = app.loans(&leaked).get_loan(request).await.expect_err("held back, timed out");
    assert!(matches!(timed_out.code(), Code::DeadlineExceeded | Code::Cancelled), "{timed_out:?}");
    held.commit().await.expect("the lock released");
    // The re-read goes on once the lock is gone (a few milliseconds); long before the cache
    // period ends, the token is refused.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let request = || pb::GetLoanRequest { loan_id: id.clone(), as_of: String::new() };
    expect_code(app.loans(&leaked).get_loan(request()).await, Code::Unauthenticated);
    app.finish().await;
}

/// Verify while repayments keep committing from four clients: the stored read models are read
/// in one snapshot and the journal scanned up to its head, so the untouched ledger verifies
/// clean each time (before, each read model was read in a snapshot of its own, beside the scan,
/// and a write committed between them was reported as a difference).
async fn verify_while_writing(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let ids = disbursed_loans(&app, &t, "VW", 8).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4usize {
        let (mut loans, ids, stop) = (app.loans(&t.bank), ids.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                loans
                    .record_repayment(pb::RecordRepaymentRequest {
                        request_id: format!("vw-{w}-{n}"),
                        loan_id: ids[(w + n) % ids.len()].clone(),
                        value_date: "2021-02-01".into(),
                        amount_fen: 100,
                    })
                    .await
                    .expect("a repayment");
                n += 1;
            }
            n
        }));
    }
    let mut heads = Vec::new();
    for _ in 0..8 {
        let v = app.verify(&t.auditor).await;
        assert!(v.ok && v.problems.is_empty(), "verify under writes: {v:?}");
        heads.push(v.head_seq);
    }
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.expect("a writer");
    }
    assert!(written > 0);
    heads.dedup();
    assert!(heads.len() > 1, "the journal grew between the verifies: {heads:?}");
    let last = app.verify(&t.auditor).await;
    assert!(last.ok, "{last:?}");
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

/// A client that opens a journal stream and stops reading keeps its request open for good: a
/// stopping server waits for it [`DRAIN_TIMEOUT`] at most (it used to wait for ever), then the
/// writer commits what it has queued and the server stops. The writes made before the stop are
/// all there when it starts again, and the journal verifies.
async fn a_stalled_reader_does_not_hold_up_shutdown(backend: Backend) {
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let mut head = 0;
    for _ in 0..20 {
        head = entry(&app.repay(&t.bank, &id, "2021-03-20", 100).await).seq;
    }
    // The smallest flow-control window: the server can send the client a kilobyte before the
    // client reads, and the journal is over ten.
    let channel =
        app.endpoint().initial_stream_window_size(1024).connect().await.expect("a connection");
    let mut audit = pb::audit_service_client::AuditServiceClient::with_interceptor(
        channel,
        Bearer::new(&t.auditor),
    );
    let request = pb::ReadJournalRequest { ledger_id: LEDGER.into(), from_seq: 0, to_seq: 0 };
    let mut stream = audit.read_journal(request).await.expect("ReadJournal").into_inner();
    let first = stream.message().await.expect("the stream").expect("a first entry");
    assert_eq!(first.seq, 1);
    // Stopped within SHUTDOWN_TIMEOUT, or the test fails.
    app.stop().await;
    app.restart().await;
    let v = app.verify(&t.auditor).await;
    assert!(v.ok && v.head_seq == head, "{v:?}");
    drop(stream);
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
        .get_loan(pb::GetLoanRequest { loan_id: id.clone(), as_of: String::new() })
        .await
        .expect("GetLoan")
        .into_inner();
    assert_eq!(loan.principal_outstanding_fen, 800_000);
    let quote = app
        .loans(&bank)
        .get_payoff_quote(pb::GetPayoffQuoteRequest {
            loan_id: id.clone(),
            as_of: "2021-02-03".into(),
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
            .get_loan(pb::GetLoanRequest { loan_id: longer, as_of: String::new() })
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
    assert_eq!(r[1].code, "UNAVAILABLE", "{answer:?}");
    assert!(r[1].message.contains("was refused as sent"), "{answer:?}");
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

/// A loan's row held by another session past the `lock_timeout` an operator set on PostgreSQL
/// (SQLSTATE 55P03) is a busy database, as SQLite's BUSY is: the write is answered UNAVAILABLE
/// (it was INTERNAL, not to be retried), nothing is posted, and sent again once the row is let
/// go it posts once. (SQLite's writer holds the only write lock: no row is held elsewhere.)
async fn a_row_locked_elsewhere_is_unavailable(backend: Backend) {
    use sqlx::Connection;
    if backend != Backend::Postgres {
        return;
    }
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.db
        .execute_raw(
            "do $$ begin execute format('alter database %I set lock_timeout = %L', \
             current_database(), '200ms'); end $$",
        )
        .await
        .expect("lock_timeout set");
    app.restart().await;
    let mut holder = sqlx::PgConnection::connect(&app.database_url).await.expect("a session");
    sqlx::query("begin").execute(&mut holder).await.expect("begin");
    sqlx::query("select 1 from loan where loan_id = $1 for update")
        .bind(&id)
        .execute(&mut holder)
        .await
        .expect("the loan's row held");
    let busy = app.repay_as(&t.bank, "while-held", &id, "2021-03-01", 100).await;
    let status = busy.expect_err("the loan's row is held elsewhere");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    sqlx::query("rollback").execute(&mut holder).await.expect("the row let go");
    app.repay_as(&t.bank, "while-held", &id, "2021-03-01", 100)
        .await
        .expect("posted when sent again");
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.iter().filter(|e| e.request_id == "while-held").count(), 1);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// Servers started together on a fresh database (replicas of one deployment) store one first
/// operator token between them, printed by one of them: each checked for a token and then
/// stored its own, so that each printed one.
async fn servers_started_together_make_one_first_token(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    app.stop().await;
    app.db.execute_raw("delete from api_token").await.expect("the first token gone");
    let any_port = "127.0.0.1:0".parse().expect("an address");
    let build =
        || loanledger::startup::Application::build(serve_settings(&app.database_url, any_port));
    let (a, b, c, d) = tokio::join!(build(), build(), build(), build());
    let printed = [a, b, c, d]
        .into_iter()
        .filter_map(|built| built.expect("a server").initial_operator_token())
        .count();
    assert_eq!(printed, 1, "one first token printed");
    assert_eq!(app.db.count_tokens().await.expect("the tokens"), 1, "one stored");
}

/// A journal row's value date changed by hand, the chain's hashes made again from it to the
/// head (the guards dropped for it): the chain holds, and the date is hashed, not derived, so
/// only the event it should be the date of tells. Verify reports it at its seq.
async fn a_value_date_rewritten_with_the_hashes_is_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 100_000).await;
    let mut journal = app.journal(&t.auditor, LEDGER).await;
    let at = journal.iter().position(|e| e.kind == "loan.disbursed").expect("the disbursement");
    let seq = journal[at].seq;
    assert_eq!(journal[at].value_date, "2021-01-25");
    journal[at].value_date = "2021-01-26".into();
    let mut prev: [u8; 32] =
        hex::decode(&journal[at].prev_hash).expect("hex").try_into().expect("32 bytes");
    let mut sql = format!(
        "update journal_txn set value_date = '2021-01-26' where ledger_id = '{LEDGER}' and seq = {seq};"
    );
    for e in &journal[at..] {
        let hash = chain_hash(&prev, e);
        sql.push_str(&format!(
            "update journal_txn set prev_hash = '{}', hash = '{}' where ledger_id = '{LEDGER}' and seq = {};",
            hex::encode(prev),
            hex::encode(hash),
            e.seq
        ));
        prev = hash;
    }
    app.behind_the_back("journal_txn", &sql).await.expect("the rows rewritten");
    check_chain(&app.journal(&t.auditor, LEDGER).await);
    let v = app.verify(&t.auditor).await;
    let problem =
        format!("seq {seq}: its value date \"2021-01-26\" is not its event's, 2021-01-25");
    assert_eq!((v.ok, v.first_break_seq, v.problems.clone()), (false, seq, vec![problem]), "{v:?}");
    app.finish().await;
}
