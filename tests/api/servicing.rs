//! Loan servicing through the API, with every figure to the fen: settlement runs, a year of
//! quarterly settlements and repayments, arrears with penalty and compound interest, extension,
//! renewal, early payoff, a bank's daily file with bad items, misuse, write-off, loans as of
//! past dates, and 等额本息 loans whose instalments fall due on their due dates. Each scenario runs on SQLite and on PostgreSQL and ends with Verify, which replays
//! the journal and recomputes every event's figures and postings.
//!
//! The expected figures are computed by hand in the comments and again, independently of the
//! service, by [`accrual`]: Σ 积数 × annual rate / 360 over a settlement's segments, rounded half
//! up once. The defaults are the standard loan of `common`: 5,000,000 fen at 3.85% from
//! 2021-01-25 for 12 months, bullet, quarterly (points 03-20, 06-20, 09-20, 12-20, and maturity
//! 2022-01-25, whose period ends the day before). The penalty rate is 3.85% × 1.5 = 5.775% once
//! overdue and 3.85% × 2 = 7.7% for misuse; unpaid interest compounds from its due date at the
//! contract rate until maturity and at the penalty rate after.

use chrono::NaiveDate;
use serde_json::Value;
use tonic::Code;
use tonic_types::StatusExt;

use super::{disbursed_loans, entry, loan, nonzero, postings, sorted};
use crate::common::*;
use loanledger::api::pb;

on_both_backends!(
    balances_as_of_a_date,
    a_loan_first_paid_out_on_a_20th_owes_that_day_then,
    an_answer_as_of_a_date_is_given_again_through_its_seq,
    settlement_run,
    year_of_quarterly_settlements,
    overdue_penalty_and_recovery,
    extension,
    an_extension_does_not_extend_the_payouts,
    a_batch_item_is_read_as_its_unary_call,
    a_renewed_contract_is_not_paid_out_after_its_renewal,
    loans_are_listed_as_they_stood_on_a_day,
    renewal,
    a_contract_dated_before_a_loan_closed_counts_it,
    a_borrower_dated_back_belongs_to_the_household_they_owed_for,
    a_renewal_is_paid_out_from_the_day_its_parent_closed,
    a_small_renewal_keeps_its_parent_counted,
    a_loan_that_pays_out_no_more_counts_what_it_lent,
    an_expired_contract_frees_the_cap,
    an_expired_contract_stays_unpaid_once_the_later_loan_is_closed,
    an_expired_contract_and_a_later_one_sent_together,
    an_extension_on_the_maturity_day_settles_it_first,
    an_extension_on_a_maturity_twentieth_bears_the_day_in_the_next_quarter,
    a_penalty_rate_is_stored_as_computed,
    a_twentieths_events_do_not_depend_on_its_run,
    a_run_made_the_next_morning,
    a_run_dated_after_its_point,
    early_payoff,
    batch_with_bad_items,
    misuse,
    write_off,
    loan_as_of_dates,
    equal_instalments_on_due_dates,
    instalment_paid_late,
    settlement_after_restart,
    loan_paid_off_during_a_run,
    a_settlement_run_is_one_request,
    a_run_lists_a_loan_it_cannot_settle_with_its_code,
    payoff_on_a_settlement_day,
    policy_versions,
    a_repayment_recorded_in_error_is_reversed,
    a_file_keyed_twice_is_reversed_a_repayment_at_a_time,
);

/// Annual rates in units of 0.00001.
const CONTRACT_RATE: i128 = 3_850; // 3.85%
const PENALTY_RATE: i128 = 5_775; // 3.85% × 1.5
const MISUSE_RATE: i128 = 7_700; // 3.85% × 2

/// One settlement: Σ base × days × rate / 360 over its segments `(base_fen, days, rate)`, rounded
/// half up once at the end.
fn accrual(segments: &[(i64, i64, i128)]) -> i64 {
    let numerator: i128 =
        segments.iter().map(|&(base, days, rate)| i128::from(base) * i128::from(days) * rate).sum();
    let denominator: i128 = 100_000 * 360;
    i64::try_from((2 * numerator + denominator) / (2 * denominator)).expect("fits in i64")
}

/// Contract-rate interest on `base` for `days`.
fn interest(base: i64, days: i64) -> i64 {
    accrual(&[(base, days, CONTRACT_RATE)])
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("a test date")
}

/// Days from `from` to `to`, both inclusive.
fn days(from: &str, to: &str) -> i64 {
    (date(to) - date(from)).num_days() + 1
}

fn status_of(l: &pb::Loan) -> pb::LoanStatus {
    pb::LoanStatus::try_from(l.status).expect("a known loan status")
}

fn settle_request(
    request_id: &str,
    bank_id: &str,
    settlement_date: &str,
) -> pb::SettleLoansRequest {
    pb::SettleLoansRequest {
        request_id: request_id.into(),
        ledger_id: LEDGER.into(),
        bank_id: bank_id.into(),
        settlement_date: settlement_date.into(),
    }
}

/// A settlement run of the ledger (or of `bank_id`'s loans) up to `settlement_date`.
async fn settle(
    app: &TestApp,
    token: &str,
    bank_id: &str,
    settlement_date: &str,
) -> pb::SettleLoansResponse {
    app.loans(token)
        .settle_loans(settle_request(&rid("settle"), bank_id, settlement_date))
        .await
        .unwrap_or_else(|e| panic!("SettleLoans {settlement_date}: {e:?}"))
        .into_inner()
}

/// GetBalances: a ledger's balances summed from its journal as of each date, by value date, equal
/// to the sums of the streamed journal's postings dated on or before it; by account prefix;
/// refused to banks, for a missing ledger and for malformed dates and prefixes.
async fn balances_as_of_a_date(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = contract(&app, &t, "BAL", HOUSEHOLD, 5_000_000).await;
    app.disburse(&t.bank, &id, "2021-01-25").await;
    app.repay(&t.bank, &id, "2021-02-01", 100_000).await;
    app.loans(&t.finance)
        .settle_loans(settle_request(&rid("settle"), "", "2021-03-20"))
        .await
        .expect("SettleLoans");
    app.repay(&t.bank, &id, "2021-03-25", 20_000).await;
    let journal = app.journal(&t.auditor, LEDGER).await;
    let head = journal.last().expect("a journal").seq;
    let get = |token: &str, as_of: &str, prefix: &str| {
        let mut audit = app.audit(token);
        let request = pb::GetBalancesRequest {
            ledger_id: LEDGER.into(),
            as_of: as_of.into(),
            account_prefix: prefix.into(),
            through_seq: 0,
        };
        async move {
            let chunks = collect(audit.get_balances(request).await?.into_inner()).await?;
            Ok::<_, tonic::Status>(tonic::Response::new(chunks))
        }
    };
    let summed = |as_of: &str, prefix: &str| {
        let dated: Vec<pb::JournalTransaction> = journal
            .iter()
            .filter(|e| as_of.is_empty() || e.value_date.as_str() <= as_of)
            .cloned()
            .collect();
        let mut all = balances(&dated);
        all.retain(|account, _| account.starts_with(prefix));
        all
    };
    for as_of in
        ["", "2021-01-24", "2021-01-25", "2021-02-01", "2021-03-19", "2021-03-20", "2021-03-25"]
    {
        for prefix in ["", &format!("loan/{id}/"), "bank/"] {
            let chunks = get(&t.auditor, as_of, prefix).await.expect("GetBalances").into_inner();
            assert!(!chunks.is_empty(), "at least one chunk, with the seq read through");
            assert!(chunks.iter().all(|c| c.through_seq == head), "{chunks:?}");
            let answered: Vec<(String, i64)> = chunks
                .iter()
                .flat_map(|c| c.balances.iter().map(|b| (b.account.clone(), b.balance_fen)))
                .collect();
            let expected: Vec<(String, i64)> = summed(as_of, prefix).into_iter().collect();
            assert_eq!(answered, expected, "as of {as_of:?}, accounts {prefix:?}");
            if prefix.is_empty() {
                let total: i64 = answered.iter().map(|(_, b)| b).sum();
                assert_eq!(total, 0, "double entry as of {as_of:?}");
            }
        }
    }
    // The figures a bank would check: the principal after each day's repayment, the quarter's
    // interest settled on the 20th (one rounding for the period's 积数) and still owed on the
    // 24th.
    let principal = format!("loan/{id}/principal");
    let interest = format!("loan/{id}/interest");
    let balance_of = |as_of: &'static str, account: String| {
        let get = &get;
        let token = t.finance.clone();
        async move {
            let chunks = get(&token, as_of, &account).await.expect("GetBalances").into_inner();
            chunks.iter().flat_map(|c| c.balances.clone()).find(|b| b.account == account)
        }
    };
    assert_eq!(balance_of("2021-01-24", principal.clone()).await, None);
    assert_eq!(
        balance_of("2021-01-25", principal.clone()).await.map(|b| b.balance_fen),
        Some(5_000_000)
    );
    assert_eq!(
        balance_of("2021-02-01", principal.clone()).await.map(|b| b.balance_fen),
        Some(4_900_000)
    );
    // 5,000,000 fen for 7 days and 4,900,000 for 48 at 3.85% / 360: 28,896.39 fen.
    let settled = (5_000_000 * 7 + 4_900_000 * 48) * 385 / 3_600_000;
    assert_eq!(settled, 28_896);
    let settled_on_20th = balance_of("2021-03-20", interest.clone()).await.expect("interest");
    assert_eq!(settled_on_20th.balance_fen, settled);
    // Unpaid until the 25th: the 24th's balance is the 20th's.
    let unpaid = balance_of("2021-03-24", interest.clone()).await.expect("interest");
    assert_eq!(unpaid.balance_fen, settled);

    // Who may not, what does not exist, what is malformed.
    expect_code(get(&t.bank, "", "").await, Code::PermissionDenied);
    expect_code(get(&t.operator, "", "").await, Code::PermissionDenied);
    let request = pb::GetBalancesRequest { ledger_id: "NO-SUCH".into(), ..Default::default() };
    expect_code(app.audit(&t.auditor).get_balances(request.clone()).await, Code::PermissionDenied);
    let every = app.token(loanledger::app::auth::Role::Auditor, "*").await;
    expect_code(app.audit(&every).get_balances(request).await, Code::NotFound);
    expect_invalid(get(&t.auditor, "2021-13-01", "").await, "as_of");
    expect_invalid(get(&t.auditor, "", "loan/\n").await, "account_prefix");
    app.finish().await;
}

/// Contracts a standard loan of B1 of `principal_fen` to `household` (registered first unless it
/// is the seeded H001) and returns its id.
async fn contract(
    app: &TestApp,
    t: &Tokens,
    contract_number: &str,
    household: &str,
    principal_fen: i64,
) -> String {
    if household != HOUSEHOLD {
        app.register_household(&t.finance, household, "19800517").await;
    }
    let mut req = standard_loan(contract_number, household);
    req.principal_fen = principal_fen;
    app.create_loan(&t.bank, req).await;
    loan_id(contract_number)
}

/// Contracts and disburses a standard loan of B1 on `value_date`.
async fn disbursed(
    app: &TestApp,
    t: &Tokens,
    contract_number: &str,
    household: &str,
    principal_fen: i64,
    value_date: &str,
) -> String {
    let id = contract(app, t, contract_number, household, principal_fen).await;
    app.disburse(&t.bank, &id, value_date).await;
    id
}

/// Registers bank B2 and gives it a disbursed loan of `principal_fen` to a new household.
async fn bank_b2_loan(
    app: &TestApp,
    t: &Tokens,
    household: &str,
    principal_fen: i64,
) -> (String, String) {
    app.register_bank(&t.operator, "B2").await;
    let b2 = app.bank_token("B2").await;
    app.register_household(&t.finance, household, "19800517").await;
    let mut req = standard_loan("X001", household);
    req.bank_id = "B2".into();
    req.principal_fen = principal_fen;
    app.create_loan(&b2, req).await;
    let id = "B2-X001".to_string();
    app.disburse(&b2, &id, "2021-01-25").await;
    (b2, id)
}

async fn repayment(
    app: &TestApp,
    token: &str,
    loan_id: &str,
    value_date: &str,
    amount_fen: i64,
) -> Result<tonic::Response<pb::LoanResponse>, tonic::Status> {
    app.loans(token)
        .record_repayment(pb::RecordRepaymentRequest {
            request_id: rid("repay"),
            loan_id: loan_id.into(),
            value_date: value_date.into(),
            amount_fen,
            subsidy_netted_fen: 0,
        })
        .await
}

fn event_json(t: &pb::JournalTransaction) -> Value {
    serde_json::from_str(&t.command_json)
        .unwrap_or_else(|e| panic!("command_json of seq {} is JSON: {e}", t.seq))
}

/// `(days, jishu, annual_rate)` of each segment of an accrual in a command's JSON.
fn segments(accrual: &Value) -> Vec<(i64, i64, String)> {
    accrual["segments"]
        .as_array()
        .unwrap_or_else(|| panic!("an accrual has segments: {accrual}"))
        .iter()
        .map(|s| {
            (
                s["days"].as_i64().unwrap(),
                s["jishu"].as_i64().unwrap(),
                s["annual_rate"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn assert_verifies(app: &TestApp, t: &Tokens) {
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "verify: {v:?}");
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    check_chain(&app.journal(&t.auditor, LEDGER).await);
}

/// A settlement run over several loans of two banks posts each loan's interest once whatever the
/// retries; banks settle only their own loans; the history keeps the working.
async fn settlement_run(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    // B1: 50,000, 30,000 and 10,000 yuan; B2: 20,000 yuan; all disbursed 2021-01-25.
    let l1 = disbursed(&app, &t, "R1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let l2 = disbursed(&app, &t, "R2", "H-R2", 3_000_000, "2021-01-25").await;
    let l3 = disbursed(&app, &t, "R3", "H-R3", 1_000_000, "2021-01-25").await;
    let (b2, l4) = bank_b2_loan(&app, &t, "H-R4", 2_000_000).await;

    // 2021-01-25 ..= 2021-03-20 is 55 days:
    //   5,000,000 × 55 × 0.0385 / 360 = 29,409.72 -> 29,410
    //   3,000,000 × 55 × 0.0385 / 360 = 17,645.83 -> 17,646
    //   1,000,000 × 55 × 0.0385 / 360 =  5,881.94 ->  5,882
    //   2,000,000 × 55 × 0.0385 / 360 = 11,763.89 -> 11,764
    // Sum 64,702.
    assert_eq!(days("2021-01-25", "2021-03-20"), 55);
    let q1 = [29_410, 17_646, 5_882, 11_764];
    assert_eq!(
        q1,
        [
            interest(5_000_000, 55),
            interest(3_000_000, 55),
            interest(1_000_000, 55),
            interest(2_000_000, 55)
        ]
    );
    assert_eq!(q1.iter().sum::<i64>(), 64_702);

    // A bank settles only its own loans, and must say so: its bank id left out is a field
    // missing, another bank's a right lacking.
    let mut b1_loans = app.loans(&t.bank);
    expect_invalid(
        b1_loans.settle_loans(settle_request(&rid("settle"), "", "2021-03-20")).await,
        "bank_id",
    );
    expect_code(
        b1_loans.settle_loans(settle_request(&rid("settle"), "B2", "2021-03-20")).await,
        Code::PermissionDenied,
    );
    expect_code(
        app.loans(&b2).settle_loans(settle_request(&rid("settle"), BANK, "2021-03-20")).await,
        Code::PermissionDenied,
    );
    // An auditor reads, never settles.
    expect_code(
        app.loans(&t.auditor).settle_loans(settle_request(&rid("settle"), "", "2021-03-20")).await,
        Code::PermissionDenied,
    );

    let before = app.journal(&t.auditor, LEDGER).await.len();
    let first_id = rid("settle-q1");
    let run = app
        .loans(&t.finance)
        .settle_loans(settle_request(&first_id, "", "2021-03-20"))
        .await
        .expect("SettleLoans as finance")
        .into_inner();
    assert_eq!(run.loans_examined, 4, "{run:?}");
    assert_eq!(run.loans_settled, 4, "{run:?}");
    assert_eq!(run.settlement_points, 4, "{run:?}");
    assert_eq!(run.interest_fen, 64_702, "{run:?}");
    assert_eq!((run.penalty_fen, run.compound_fen), (0, 0), "{run:?}");
    assert_eq!((run.failed, run.loans_no_longer_live), (0, 0), "{run:?}");
    assert!(run.failures.is_empty(), "{run:?}");
    let after_first = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(after_first.len(), before + 4, "one settlement transaction per loan");

    // The same date again under another request id: nothing is due, nothing is posted.
    let again = settle(&app, &t.finance, "", "2021-03-20").await;
    assert_eq!(again.loans_examined, 4, "{again:?}");
    assert_eq!(again.loans_settled, 0, "{again:?}");
    assert_eq!(again.settlement_points, 0, "{again:?}");
    assert_eq!(again.interest_fen, 0, "{again:?}");
    // An earlier date than the last settlement: nothing either.
    let earlier = settle(&app, &t.finance, "", "2021-03-01").await;
    assert_eq!((earlier.loans_settled, earlier.interest_fen), (0, 0), "{earlier:?}");
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), after_first.len());

    // GetLoan shows the settled interest as due on the settlement day.
    for (id, token, due) in
        [(&l1, &t.bank, q1[0]), (&l2, &t.bank, q1[1]), (&l3, &t.bank, q1[2]), (&l4, &b2, q1[3])]
    {
        let l = app.get_loan_as_of(token, id, "2021-03-20").await;
        assert_eq!(l.interest_due_fen, due, "{l:?}");
        assert_eq!(l.interest_settled_fen, due, "{l:?}");
        assert_eq!(l.accrued_interest_fen, 0, "{l:?}");
        assert_eq!((l.penalty_fen, l.compound_fen, l.days_overdue), (0, 0, 0), "{l:?}");
        assert_eq!(status_of(&l), pb::LoanStatus::Active, "{l:?}");
        assert_eq!(l.next_settlement_date, "2021-06-20", "{l:?}");
    }

    // The history of the 50,000-yuan loan shows the settlement with its working.
    let history = app.history(&t.auditor, &l1).await;
    let kinds: Vec<&str> = history.iter().map(|h| h.kind.as_str()).collect();
    assert_eq!(kinds, ["loan.created", "loan.disbursed", "loan.settled"]);
    let settled = &history[2];
    assert_eq!(settled.value_date, "2021-03-20");
    assert_eq!(settled.actor, format!("finance:{LEDGER}"));
    assert_eq!(settled.request_id, format!("{first_id} {l1}"), "one request id per loan");
    assert_eq!(
        sorted(&nonzero(&settled.postings)),
        postings(&[("loan/B1-R1/interest", 29_410), ("bank/B1/interest_income", -29_410)])
    );
    let json = event_json(settled);
    let points = json["settlements"].as_array().expect("settlements");
    assert_eq!(points.len(), 1, "{json}");
    assert_eq!(points[0]["date"], "2021-03-20");
    let working = &points[0]["interest"];
    // 5,000,000 fen × 55 days = 275,000,000 fen-days; × 0.0385 / 360 = 29,409.722… -> 29,410.
    assert_eq!(segments(working), vec![(55, 275_000_000, "0.0385".to_string())], "{json}");
    assert_eq!(working["segments"][0]["from"], "2021-01-25");
    assert_eq!(working["segments"][0]["to_inclusive"], "2021-03-20");
    assert_eq!(working["segments"][0]["base_fen"], 5_000_000);
    assert!(
        working["unrounded_fen"].as_str().is_some_and(|u| u.starts_with("29409.7222")),
        "{json}"
    );
    assert_eq!(working["amount_fen"], 29_410, "{json}");
    assert!(points[0]["penalty"].is_null() && points[0]["compound"].is_null(), "{json}");

    // B1 settles its own loans at 2021-06-20 (92 days). Nothing was paid on 03-20, so each
    // loan's first interest compounds from 03-21 to 06-20 (92 days) at the contract rate:
    //   interest 5,000,000 × 92 × 0.0385 / 360 = 49,194.44 -> 49,194; compound 29,410 × 92 ×
    //            0.0385 / 360 = 289.36 -> 289
    //   interest 3,000,000 × 92: 29,516.67 -> 29,517; compound 17,646 × 92: 173.62 -> 174
    //   interest 1,000,000 × 92:  9,838.89 ->  9,839; compound  5,882 × 92:  57.87 ->  58
    // Interest 88,550, compound 521.
    let q2 = [(49_194, 289), (29_517, 174), (9_839, 58)];
    assert_eq!(
        q2,
        [
            (interest(5_000_000, 92), interest(29_410, 92)),
            (interest(3_000_000, 92), interest(17_646, 92)),
            (interest(1_000_000, 92), interest(5_882, 92)),
        ]
    );
    let own = b1_loans
        .settle_loans(settle_request(&rid("settle"), BANK, "2021-06-20"))
        .await
        .expect("a bank settles its own loans")
        .into_inner();
    assert_eq!(own.loans_examined, 3, "{own:?}");
    assert_eq!(own.loans_settled, 3, "{own:?}");
    assert_eq!(own.settlement_points, 3, "{own:?}");
    assert_eq!(own.interest_fen, 88_550, "{own:?}");
    assert_eq!(own.compound_fen, 521, "{own:?}");
    assert_eq!(own.penalty_fen, 0, "{own:?}");
    // B2's loan was not touched.
    assert_eq!(app.history(&b2, &l4).await.len(), 3, "B2's loan: created, disbursed, settled");
    let b2_loan = app.get_loan_as_of(&b2, &l4, "2021-06-20").await;
    assert_eq!(b2_loan.interest_settled_fen, q1[3], "{b2_loan:?}");
    // Its 06-20 interest is shown due all the same (a point the date has passed counts whether
    // a run recorded it or not), and the next point is the one after.
    assert_eq!(b2_loan.interest_due_fen - q1[3], interest(2_000_000, 92), "{b2_loan:?}");
    assert_eq!(b2_loan.next_settlement_date, "2021-09-20", "{b2_loan:?}");

    // The bank's settlement of the first loan shows the compound working too.
    let history = app.history(&t.bank, &l1).await;
    assert_eq!(history.len(), 4);
    assert_eq!(history[3].actor, "bank:B1");
    let json = event_json(&history[3]);
    let point = &json["settlements"][0];
    assert_eq!(segments(&point["interest"]), vec![(92, 460_000_000, "0.0385".to_string())]);
    assert_eq!(point["interest"]["amount_fen"], 49_194);
    // 29,410 fen × 92 days = 2,705,720 fen-days.
    assert_eq!(segments(&point["compound"]), vec![(92, 2_705_720, "0.0385".to_string())]);
    assert_eq!(point["compound"]["amount_fen"], 289);
    assert_eq!(
        sorted(&nonzero(&history[3].postings)),
        postings(&[
            ("loan/B1-R1/interest", 49_194),
            ("bank/B1/interest_income", -49_194),
            ("loan/B1-R1/compound", 289),
            ("bank/B1/compound_income", -289),
        ])
    );

    // The finance office's run at 06-20 now settles only B2's loan: 2,000,000 × 92 × 0.0385 /
    // 360 = 19,677.78 -> 19,678 and compound 11,764 × 92 × 0.0385 / 360 = 115.74 -> 116.
    let rest = settle(&app, &t.finance, "", "2021-06-20").await;
    assert_eq!(rest.loans_examined, 4, "{rest:?}");
    assert_eq!(rest.loans_settled, 1, "{rest:?}");
    assert_eq!(rest.settlement_points, 1, "{rest:?}");
    assert_eq!((rest.interest_fen, rest.compound_fen), (19_678, 116), "{rest:?}");
    assert_eq!((interest(2_000_000, 92), interest(11_764, 92)), (19_678, 116));

    assert_verifies(&app, &t).await;

    // The very first run replayed under its own request id: every loan's settlement is
    // answered from the first time and nothing is posted, so the run gives its first answer
    // again (same id, same answer), while a new run above reported 0.
    let journal_len = app.journal(&t.auditor, LEDGER).await.len();
    let replay = app
        .loans(&t.finance)
        .settle_loans(settle_request(&first_id, "", "2021-03-20"))
        .await
        .expect("a replayed run")
        .into_inner();
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal_len, "the replay posted");
    assert_eq!(replay.failed, 0, "{replay:?}");
    assert_eq!(
        (replay.loans_settled, replay.settlement_points, replay.interest_fen),
        (4, 4, 29_410 + 17_646 + 5_882 + 11_764),
        "a retried run answers as the first time: {replay:?}"
    );
    app.finish().await;
}

/// Settlement at each quarter end, the exact interest paid on each settlement day, payoff at
/// maturity: DESIGN.md's worked figure, 1,951.73 yuan.
async fn year_of_quarterly_settlements(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = disbursed(&app, &t, "Y1", HOUSEHOLD, 5_000_000, "2021-01-25").await;

    // 294.10 (55 days) + 491.94 (92) + 491.94 (92) + 486.60 (91) + 187.15 (35, to 2022-01-24).
    let quarters = [
        ("2021-03-20", "2021-01-25", 29_410),
        ("2021-06-20", "2021-03-21", 49_194),
        ("2021-09-20", "2021-06-21", 49_194),
        ("2021-12-20", "2021-09-21", 48_660),
    ];
    let mut settled = 0;
    for (point, from, amount) in quarters {
        assert_eq!(interest(5_000_000, days(from, point)), amount);
        let run = settle(&app, &t.finance, "", point).await;
        assert_eq!(
            (run.loans_settled, run.settlement_points, run.interest_fen),
            (1, 1, amount),
            "{point}: {run:?}"
        );
        assert_eq!((run.penalty_fen, run.compound_fen), (0, 0), "{point}: {run:?}");
        settled += amount;
        let paid = app.repay(&t.bank, &id, point, amount).await;
        let l = loan(&paid);
        assert_eq!(status_of(l), pb::LoanStatus::Active, "{l:?}");
        assert_eq!(l.interest_paid_fen, settled, "{l:?}");
        assert_eq!(l.interest_settled_fen, settled, "{l:?}");
        assert_eq!((l.interest_due_fen, l.penalty_fen, l.compound_fen), (0, 0, 0), "{l:?}");
        assert_eq!(l.principal_outstanding_fen, 5_000_000, "{l:?}");
        // The run posted the interest; the repayment only receives it.
        let history = app.history(&t.auditor, &id).await;
        let last = history.last().unwrap();
        assert_eq!(last.kind, "loan.repaid");
        assert_eq!(
            sorted(&nonzero(&last.postings)),
            postings(&[("bank/B1/cash", amount), ("loan/B1-Y1/interest", -amount)])
        );
    }
    // Maturity: 2021-12-21 ..= 2022-01-24, 35 days: 18,714.58 -> 18,715.
    assert_eq!(days("2021-12-21", "2022-01-24"), 35);
    assert_eq!(interest(5_000_000, 35), 18_715);
    let run = settle(&app, &t.finance, "", "2022-01-25").await;
    assert_eq!((run.loans_settled, run.interest_fen), (1, 18_715), "{run:?}");
    let quote = app.payoff_quote(&t.bank, &id, "2022-01-25").await;
    assert_eq!(quote.current_interest_fen, 18_715, "{quote:?}");
    assert_eq!(quote.total_fen, 5_018_715, "{quote:?}");
    // The principal is due on the maturity day: current, not overdue.
    assert_eq!((quote.current_principal_fen, quote.overdue_principal_fen), (5_000_000, 0));
    let paid = app.repay(&t.bank, &id, "2022-01-25", 5_018_715).await;
    let l = loan(&paid);
    assert_eq!(status_of(l), pb::LoanStatus::Settled, "{l:?}");
    assert_eq!(l.interest_settled_fen, 195_173, "{l:?}");
    assert_eq!(l.interest_paid_fen, 195_173, "{l:?}");
    assert_eq!(l.principal_repaid_fen, 5_000_000, "{l:?}");
    assert_eq!(l.principal_outstanding_fen, 0, "{l:?}");
    assert_eq!((l.penalty_paid_fen, l.compound_paid_fen), (0, 0), "{l:?}");
    // A settled loan is not live: a later run does not even look at it.
    let after = settle(&app, &t.finance, "", "2022-03-20").await;
    assert_eq!((after.loans_examined, after.loans_settled), (0, 0), "{after:?}");
    let b = balances(&app.journal(&t.auditor, LEDGER).await);
    assert_eq!(b["bank/B1/interest_income"], -195_173);
    assert_eq!(b["bank/B1/cash"], 195_173);
    assert_eq!(b["loan/B1-Y1/principal"], 0);
    assert_eq!(b["loan/B1-Y1/interest"], 0);
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// Nothing paid for a year: interest items fall overdue and compound, principal bears penalty
/// after maturity; a partial payment goes to penalty, compound, then the oldest interest; paying
/// the quote closes the loan. A loan a few days overdue is OVERDUE, not OVERDUE_90.
async fn overdue_penalty_and_recovery(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = disbursed(&app, &t, "O1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let small = disbursed(&app, &t, "O2", "H-O2", 1_000_000, "2021-01-25").await;

    // Before any settlement is recorded: the small loan's 03-20 interest is unpaid on 03-25.
    let unsettled_view = app.get_loan_as_of(&t.bank, &small, "2021-03-25").await;

    let run = settle(&app, &t.finance, "", "2021-03-20").await;
    // 29,410 + 5,881.94 -> 5,882.
    assert_eq!((run.loans_settled, run.interest_fen), (2, 29_410 + 5_882), "{run:?}");

    // Five days after the interest was due (overdue from 03-21): OVERDUE, not OVERDUE_90.
    let l = app.get_loan_as_of(&t.bank, &small, "2021-03-25").await;
    assert_eq!(status_of(&l), pb::LoanStatus::Overdue, "{l:?}");
    assert_eq!(l.days_overdue, 5, "{l:?}");
    assert_eq!(l.interest_due_fen, 5_882, "{l:?}");
    // Compound 03-21 ..= 03-24 (4 days): 5,882 × 4 × 0.0385 / 360 = 2.52 -> 3; interest of the
    // running period to the day before: 1,000,000 × 4 × 0.0385 / 360 = 427.78 -> 428.
    assert_eq!((l.compound_fen, l.accrued_interest_fen), (3, 428), "{l:?}");
    assert_eq!((interest(5_882, 4), interest(1_000_000, 4)), (3, 428));
    // Paid off on 03-26: 5,882 + compound 5 days (3.15 -> 3) + interest 5 days (534.72 -> 535)
    // + 1,000,000 = 1,006,420.
    let quote = app.payoff_quote(&t.bank, &small, "2021-03-26").await;
    assert_eq!(quote.overdue_interest_fen, 5_882, "{quote:?}");
    assert_eq!(quote.compound_fen, interest(5_882, 5), "{quote:?}");
    assert_eq!(quote.accrued_interest_fen, interest(1_000_000, 5), "{quote:?}");
    assert_eq!(quote.days_overdue, 6, "{quote:?}");
    assert_eq!(quote.total_fen, 1_006_420, "{quote:?}");
    let paid = app.repay(&t.bank, &small, "2021-03-26", 1_006_420).await;
    assert_eq!(status_of(loan(&paid)), pb::LoanStatus::Settled);
    assert_eq!(loan(&paid).compound_paid_fen, 3);

    // The big loan: 90 days overdue on 2021-06-18 (03-21 ..= 06-18), more than 90 on 06-19.
    assert_eq!(days("2021-03-21", "2021-06-18"), 90);
    let l = app.get_loan_as_of(&t.bank, &id, "2021-06-18").await;
    assert_eq!((status_of(&l), l.days_overdue), (pb::LoanStatus::Overdue, 90), "{l:?}");
    let l = app.get_loan_as_of(&t.bank, &id, "2021-06-19").await;
    assert_eq!((status_of(&l), l.days_overdue), (pb::LoanStatus::Overdue90, 91), "{l:?}");

    // Settle through maturity. Unpaid interest items: I1 29,410 (due 2021-03-20), I2 49,194
    // (06-20), I3 49,194 (09-20), I4 48,660 (12-20), I5 18,715 (2022-01-25). Compound at the
    // contract rate, one rounding per point:
    //   06-20: 29,410 × 92 days (03-21 ..= 06-20) = 2,705,720 × 0.0385 / 360 = 289.36 -> 289
    //   09-20: 78,604 × 92 (06-21 ..= 09-20) = 7,231,568 -> 773.38 -> 773
    //   12-20: 127,798 × 91 (09-21 ..= 12-20) = 11,629,618 -> 1,243.72 -> 1,244
    //   01-25: 176,458 × 35 (12-21 ..= 01-24) = 6,176,030 -> 660.49 -> 660
    // Compound settled: 2,966.
    let compound_points = [
        interest(29_410, 92),
        interest(29_410 + 49_194, 92),
        interest(29_410 + 49_194 + 49_194, 91),
        interest(29_410 + 49_194 + 49_194 + 48_660, 35),
    ];
    assert_eq!(compound_points, [289, 773, 1_244, 660]);
    let run = settle(&app, &t.finance, "", "2022-01-25").await;
    assert_eq!(run.loans_examined, 1, "the small loan is settled: {run:?}");
    assert_eq!(run.loans_settled, 1, "{run:?}");
    assert_eq!(run.settlement_points, 4, "{run:?}");
    assert_eq!(run.interest_fen, 49_194 + 49_194 + 48_660 + 18_715, "{run:?}");
    assert_eq!(run.compound_fen, 2_966, "{run:?}");
    assert_eq!(run.penalty_fen, 0, "no penalty before maturity: {run:?}");

    // 30 days after maturity (2022-01-25 ..= 2022-02-23):
    //   penalty 5,000,000 × 30 × 0.05775 / 360 = 24,062.5 -> 24,063
    //   compound 195,173 × 30 × 0.05775 / 360 = 939.27 -> 939, on top of the 2,966 settled
    //   days overdue: the interest due 2021-03-20 is overdue since 2021-03-21: 341 days.
    assert_eq!(accrual(&[(5_000_000, 30, PENALTY_RATE)]), 24_063);
    assert_eq!(accrual(&[(195_173, 30, PENALTY_RATE)]), 939);
    assert_eq!(days("2021-03-21", "2022-02-24"), 341);
    let quote = app.payoff_quote(&t.bank, &id, "2022-02-24").await;
    assert_eq!(quote.penalty_fen, 24_063, "{quote:?}");
    assert_eq!(quote.compound_fen, 2_966 + 939, "{quote:?}");
    assert_eq!(quote.overdue_interest_fen, 195_173, "{quote:?}");
    assert_eq!((quote.current_interest_fen, quote.accrued_interest_fen), (0, 0), "{quote:?}");
    assert_eq!(quote.principal_fen, 5_000_000, "{quote:?}");
    // Past the maturity all of it is overdue (until 2026-12-06 a bullet loan's showed none).
    assert_eq!((quote.overdue_principal_fen, quote.current_principal_fen), (5_000_000, 0));
    assert_eq!(quote.days_overdue, 341, "{quote:?}");
    assert_eq!(quote.total_fen, 24_063 + 3_905 + 195_173 + 5_000_000, "{quote:?}");
    assert_eq!(quote.total_fen, 5_223_141);
    let l = app.get_loan_as_of(&t.bank, &id, "2022-02-24").await;
    assert_eq!(status_of(&l), pb::LoanStatus::Overdue90, "{l:?}");
    assert_eq!(l.days_overdue, 341, "{l:?}");
    assert_eq!((l.penalty_fen, l.compound_fen, l.interest_due_fen), (24_063, 3_905, 195_173));
    assert_eq!(l.overdue_principal_fen, 5_000_000, "{l:?}");

    // A partial payment of 1,000.00 yuan: penalty 24,063, compound 3,905, then 72,032 of the
    // overdue interest, oldest first (I1 29,410 in full, 42,622 of I2, leaving 6,572 of it).
    let partial = app.repay(&t.bank, &id, "2022-02-24", 100_000).await;
    let l = loan(&partial);
    assert_eq!((l.penalty_fen, l.compound_fen), (0, 0), "{l:?}");
    assert_eq!((l.penalty_paid_fen, l.compound_paid_fen), (24_063, 3_905), "{l:?}");
    assert_eq!(l.interest_paid_fen, 72_032, "{l:?}");
    assert_eq!(l.interest_due_fen, 195_173 - 72_032, "{l:?}");
    assert_eq!(l.principal_outstanding_fen, 5_000_000, "{l:?}");
    assert_eq!(l.principal_repaid_fen, 0, "{l:?}");
    // The oldest unpaid amount is now the rest of I2, overdue since 2021-06-21.
    assert_eq!(l.days_overdue, days("2021-06-21", "2022-02-24"), "{l:?}");
    assert_eq!(l.days_overdue, 249, "{l:?}");
    assert_eq!(status_of(l), pb::LoanStatus::Overdue90, "{l:?}");
    // The repayment settles the 30 days' penalty and compound, then takes the cash.
    let history = app.history(&t.auditor, &id).await;
    let repaid = history.last().unwrap();
    assert_eq!(repaid.seq, entry(&partial).seq);
    assert_eq!(
        sorted(&nonzero(&repaid.postings)),
        postings(&[
            ("bank/B1/cash", 100_000),
            ("bank/B1/penalty_income", -24_063),
            ("bank/B1/compound_income", -939),
            ("loan/B1-O1/compound", 939 - 3_905),
            ("loan/B1-O1/interest", -72_032),
        ])
    );
    let json = event_json(repaid);
    let alloc = &json["repayment"]["allocation"];
    assert_eq!(
        [
            &alloc["penalty_fen"],
            &alloc["compound_fen"],
            &alloc["overdue_interest_fen"],
            &alloc["current_interest_fen"],
            &alloc["principal_fen"],
        ],
        [24_063, 3_905, 72_032, 0, 0],
        "{json}"
    );
    let charges = &json["repayment"]["charges"];
    assert_eq!(segments(&charges["penalty"]), vec![(30, 150_000_000, "0.05775".to_string())]);
    assert_eq!(segments(&charges["compound"]), vec![(30, 5_855_190, "0.05775".to_string())]);

    // Paying the rest on 2022-03-10: 14 more days (02-24 ..= 03-09) at the penalty rate:
    //   penalty 5,000,000 × 14 × 0.05775 / 360 = 11,229.17 -> 11,229
    //   compound 123,141 × 14 × 0.05775 / 360 = 276.55 -> 277
    // Total 11,229 + 277 + 123,141 + 5,000,000 = 5,134,647.
    assert_eq!(accrual(&[(5_000_000, 14, PENALTY_RATE)]), 11_229);
    assert_eq!(accrual(&[(123_141, 14, PENALTY_RATE)]), 277);
    let quote = app.payoff_quote(&t.bank, &id, "2022-03-10").await;
    assert_eq!((quote.penalty_fen, quote.compound_fen), (11_229, 277), "{quote:?}");
    assert_eq!(quote.overdue_interest_fen, 123_141, "{quote:?}");
    assert_eq!(quote.total_fen, 5_134_647, "{quote:?}");
    let done = app.repay(&t.bank, &id, "2022-03-10", quote.total_fen).await;
    let l = loan(&done);
    assert_eq!(status_of(l), pb::LoanStatus::Settled, "{l:?}");
    assert_eq!(l.penalty_paid_fen, 24_063 + 11_229, "{l:?}");
    assert_eq!(l.compound_paid_fen, 3_905 + 277, "{l:?}");
    assert_eq!(l.interest_paid_fen, 195_173, "{l:?}");
    assert_eq!(l.interest_settled_fen, 195_173, "{l:?}");
    assert_eq!((l.principal_outstanding_fen, l.days_overdue), (0, 0), "{l:?}");
    assert_verifies(&app, &t).await;

    // Kept for last so that the figures above are checked whatever this finds: before any
    // settlement was recorded, the small loan's as-of view computes the 03-20 interest as
    // overdue (days_overdue 5), and its status, "as of this date too", must say so.
    assert_eq!(unsettled_view.days_overdue, 5, "{unsettled_view:?}");
    assert_eq!(unsettled_view.interest_due_fen, 5_882, "{unsettled_view:?}");
    assert_eq!(
        status_of(&unsettled_view),
        pb::LoanStatus::Overdue,
        "status disagrees with days_overdue when no settlement is recorded yet: {unsettled_view:?}"
    );
    app.finish().await;
}

/// An extension moves when the loan is repaid, not how long the bank may lend: a contract of
/// 5,000,000 paid out 2,000,000 on 2021-01-25 and extended to 2022-07-25 is paid out no more
/// from its own maturity, 2022-01-25 (`VALUE_DATE_OUT_OF_RANGE` naming it and the extension,
/// `latest_date` the day before), and is paid out the day before (since 2026-12-07: the rest
/// went out up to the extended maturity, at a rate capped for the contract's tenor).
async fn an_extension_does_not_extend_the_payouts(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = contract(&app, &t, "X1", HOUSEHOLD, 5_000_000).await;
    let tranche = |value_date: &str, amount_fen: i64| pb::DisburseRequest {
        request_id: rid("tranche"),
        loan_id: id.clone(),
        value_date: value_date.into(),
        amount_fen,
    };
    let mut loans = app.loans(&t.bank);
    loans.disburse(tranche("2021-01-25", 2_000_000)).await.expect("the first tranche");
    for (point, days) in
        [("2021-03-20", 55), ("2021-06-20", 92), ("2021-09-20", 92), ("2021-12-20", 91)]
    {
        app.repay(&t.bank, &id, point, interest(2_000_000, days)).await;
    }
    let extend = pb::ExtendLoanRequest {
        request_id: rid("extend"),
        loan_id: id.clone(),
        value_date: "2022-01-10".into(),
        new_maturity_date: "2022-07-25".into(),
    };
    loans.extend_loan(extend).await.expect("the extension");
    let journal = app.journal(&t.auditor, LEDGER).await.len();
    let refused = loans.disburse(tranche("2022-02-01", 1_000_000)).await;
    let refused = expect_refused(refused, "VALUE_DATE_OUT_OF_RANGE");
    assert!(
        refused.message().contains(
            "not before the maturity date 2022-01-25 (the contract's: its extension to 2022-07-25"
        ),
        "{refused:?}"
    );
    assert_eq!(metadata(&refused, "latest_date").as_deref(), Some("2022-01-24"), "{refused:?}");
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal, "nothing posted");
    let paid = loans.disburse(tranche("2022-01-24", 1_000_000)).await.expect("before maturity");
    assert_eq!(loan(&paid.into_inner()).principal_outstanding_fen, 3_000_000);
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// An extension (展期) within the policy limit, once; after the original maturity the loan
/// accrues interest at the contract rate, not penalty, until the new maturity.
async fn extension(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = disbursed(&app, &t, "E1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let late = disbursed(&app, &t, "E2", "H-E2", 1_000_000, "2021-01-25").await;
    for (point, amount) in [
        ("2021-03-20", 29_410),
        ("2021-06-20", 49_194),
        ("2021-09-20", 49_194),
        ("2021-12-20", 48_660),
    ] {
        app.repay(&t.bank, &id, point, amount).await;
    }
    let mut loans = app.loans(&t.bank);
    let extend = |loan_id: &str, value_date: &str, new_maturity: &str| pb::ExtendLoanRequest {
        request_id: rid("extend"),
        loan_id: loan_id.into(),
        value_date: value_date.into(),
        new_maturity_date: new_maturity.into(),
    };

    // The policy allows 12 months (no more than the term): latest maturity 2023-01-25.
    let beyond = expect_refused(
        loans.extend_loan(extend(&id, "2022-01-10", "2023-01-26")).await,
        "EXTENSION_NOT_ALLOWED",
    );
    assert_eq!(metadata(&beyond, "latest_maturity").as_deref(), Some("2023-01-25"), "{beyond:?}");
    expect_refused(
        loans.extend_loan(extend(&id, "2022-01-10", "2022-01-25")).await,
        "EXTENSION_NOT_ALLOWED",
    );
    // An extension is recorded by the maturity date.
    expect_refused(
        loans.extend_loan(extend(&late, "2022-01-26", "2022-07-25")).await,
        "EXTENSION_NOT_ALLOWED",
    );
    // Only the lending bank extends.
    expect_code(
        app.loans(&t.finance).extend_loan(extend(&id, "2022-01-10", "2022-07-25")).await,
        Code::PermissionDenied,
    );

    // A medium-term loan (a term over a year) is extended by half its term at most (贷款通则,
    // article 12; since 2026-12-07, when every loan might be extended by its whole term): 18
    // months by 9, to 2023-04-25, under the policy's 12.
    app.register_household(&t.finance, "H-E3", "19800517").await;
    let mut medium = standard_loan("E3", "H-E3");
    (medium.term_months, medium.principal_fen) = (18, 1_000_000);
    app.create_loan(&t.bank, medium).await;
    let medium = loan_id("E3");
    app.disburse(&t.bank, &medium, "2021-01-25").await;
    let beyond = expect_refused(
        loans.extend_loan(extend(&medium, "2021-02-01", "2023-04-26")).await,
        "EXTENSION_NOT_ALLOWED",
    );
    assert_eq!(metadata(&beyond, "latest_maturity").as_deref(), Some("2023-04-25"), "{beyond:?}");
    let half = loans.extend_loan(extend(&medium, "2021-02-01", "2023-04-25")).await;
    let half = half.expect("an extension by half the term").into_inner();
    assert_eq!(loan(&half).current_maturity_date, "2023-04-25");

    let extended = loans
        .extend_loan(extend(&id, "2022-01-10", "2022-07-25"))
        .await
        .expect("an extension of 6 months")
        .into_inner();
    let l = loan(&extended);
    assert_eq!(l.maturity_date, "2022-01-25", "the contract's maturity stays: {l:?}");
    assert_eq!(l.current_maturity_date, "2022-07-25", "{l:?}");
    assert_eq!(l.extensions, 1, "{l:?}");
    assert_eq!(l.next_settlement_date, "2022-03-20", "{l:?}");
    assert_eq!(status_of(l), pb::LoanStatus::Active, "{l:?}");
    assert!(entry(&extended).seq > 0);
    let again = expect_refused(
        loans.extend_loan(extend(&id, "2022-01-20", "2022-08-25")).await,
        "EXTENSION_NOT_ALLOWED",
    );
    assert!(again.message().contains("once"), "{again:?}");

    // A month after the original maturity nothing is overdue: interest of 2021-12-21 ..=
    // 2022-02-23 (65 days) at 3.85%: 34,756.94 -> 34,757; no penalty.
    assert_eq!(days("2021-12-21", "2022-02-23"), 65);
    let quote = app.payoff_quote(&t.bank, &id, "2022-02-24").await;
    assert_eq!((quote.penalty_fen, quote.compound_fen, quote.days_overdue), (0, 0, 0));
    assert_eq!(quote.accrued_interest_fen, interest(5_000_000, 65), "{quote:?}");
    assert_eq!(quote.accrued_interest_fen, 34_757, "{quote:?}");
    assert_eq!(quote.total_fen, 5_034_757, "{quote:?}");
    let l = app.get_loan_as_of(&t.bank, &id, "2022-02-24").await;
    assert_eq!(status_of(&l), pb::LoanStatus::Active, "{l:?}");
    assert_eq!(l.current_maturity_date, "2022-07-25", "{l:?}");

    // 2022-03-20 settles one period 2021-12-21 ..= 2022-03-20, 90 days at the contract rate:
    // 5,000,000 × 90 × 0.0385 / 360 = 48,125 exactly.
    assert_eq!(days("2021-12-21", "2022-03-20"), 90);
    let paid = app.repay(&t.bank, &id, "2022-03-20", 48_125).await;
    let l = loan(&paid);
    assert_eq!(l.interest_due_fen, 0, "{l:?}");
    assert_eq!(l.interest_paid_fen, 176_458 + 48_125, "{l:?}");
    assert_eq!((l.penalty_fen, l.penalty_paid_fen), (0, 0), "{l:?}");
    let history = app.history(&t.auditor, &id).await;
    let json = event_json(history.last().unwrap());
    let point = &json["settlements"][0];
    assert_eq!(point["date"], "2022-03-20");
    let segs = segments(&point["interest"]);
    assert!(segs.iter().all(|(_, _, rate)| rate == "0.0385"), "{json}");
    assert_eq!(segs.iter().map(|s| s.0).sum::<i64>(), 90, "{json}");
    assert_eq!(segs.iter().map(|s| s.1).sum::<i64>(), 450_000_000, "{json}");
    assert_eq!(point["interest"]["amount_fen"], 48_125);
    assert!(point["penalty"].is_null(), "no penalty within the extended term: {json}");

    // 06-20 by a run, paid the same day; then the new maturity: 2022-06-21 ..= 2022-07-24 (34
    // days): 18,180.56 -> 18,181.
    let run = settle(&app, &t.finance, "", "2022-06-20").await;
    assert!(run.loans_settled >= 1, "{run:?}");
    app.repay(&t.bank, &id, "2022-06-20", 49_194).await;
    assert_eq!(interest(5_000_000, days("2022-06-21", "2022-07-24")), 18_181);
    let quote = app.payoff_quote(&t.bank, &id, "2022-07-25").await;
    assert_eq!(quote.total_fen, 5_018_181, "{quote:?}");
    assert_eq!(quote.penalty_fen, 0, "{quote:?}");
    let done = app.repay(&t.bank, &id, "2022-07-25", 5_018_181).await;
    let l = loan(&done);
    assert_eq!(status_of(l), pb::LoanStatus::Settled, "{l:?}");
    // 1,764.58 yuan of the first four quarters, then 481.25 + 491.94 + 181.81.
    assert_eq!(l.interest_settled_fen, 176_458 + 48_125 + 49_194 + 18_181, "{l:?}");
    assert_eq!(l.interest_settled_fen, 291_958, "{l:?}");
    assert_eq!((l.penalty_paid_fen, l.compound_paid_fen), (0, 0), "{l:?}");
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// An extension recorded on the maturity day settles the maturity's interest first, as that
/// day's settlement run would: recorded before the run or after it, the loan is the same (the
/// last period's interest is due at the old maturity, and overdue the day after), not a quarter
/// later with the next period's. Reviewed with a maturity on the 21st, checked here on the 25th.
async fn an_extension_on_the_maturity_day_settles_it_first(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let first = disbursed(&app, &t, "X1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let second = disbursed(&app, &t, "X2", "H-X2", 5_000_000, "2021-01-25").await;
    for id in [&first, &second] {
        for (point, amount) in [
            ("2021-03-20", 29_410),
            ("2021-06-20", 49_194),
            ("2021-09-20", 49_194),
            ("2021-12-20", 48_660),
        ] {
            app.repay(&t.bank, id, point, amount).await;
        }
    }
    let extend = async |loan_id: &str| {
        app.loans(&t.bank)
            .extend_loan(pb::ExtendLoanRequest {
                request_id: rid("extend"),
                loan_id: loan_id.into(),
                value_date: "2022-01-25".into(),
                new_maturity_date: "2022-07-25".into(),
            })
            .await
            .expect("an extension on the maturity day")
            .into_inner()
    };
    // The first extended before the day's run, the second after it.
    let extended = extend(&first).await;
    let run = settle(&app, &t.finance, "", "2022-01-25").await;
    assert_eq!(run.loans_settled, 1, "the second only: {run:?}");
    extend(&second).await;
    // 2021-12-21 ..= 2022-01-24, 35 days: 18,715, due 2022-01-25 (the worked figure's 187.15).
    assert_eq!(interest(5_000_000, days("2021-12-21", "2022-01-24")), 18_715);
    let json = event_json(app.history(&t.auditor, &first).await.last().expect("the extension"));
    assert_eq!(json["settlements"][0]["date"], "2022-01-25", "{json}");
    assert_eq!(json["settlements"][0]["interest"]["amount_fen"], 18_715, "{json}");
    assert_eq!(loan(&extended).interest_due_fen, 18_715);
    for as_of in ["2022-01-25", "2022-01-26", "2022-03-21"] {
        let (a, b) = (
            app.get_loan_as_of(&t.bank, &first, as_of).await,
            app.get_loan_as_of(&t.bank, &second, as_of).await,
        );
        let figures = |l: &pb::Loan| {
            (
                l.interest_due_fen,
                l.interest_settled_fen,
                l.compound_fen,
                l.days_overdue,
                l.status,
                l.next_settlement_date.clone(),
            )
        };
        assert_eq!(figures(&a), figures(&b), "as of {as_of}: {a:?} {b:?}");
        if as_of == "2022-01-26" {
            assert_eq!((a.interest_due_fen, a.days_overdue), (18_715, 1), "{a:?}");
        }
    }
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A loan maturing on a settlement 20th, extended that day after its maturity's interest was
/// settled and paid: the maturity day bears interest in the next quarter's period (2022-03-20 ..=
/// 06-20), not in a one-day period of its own due the day it was extended, which left a borrower
/// who paid all they were asked overdue from the next day and 92 days overdue, claimable on the
/// risk fund, by the next quarter's run (helper review of 2026-12-06).
async fn an_extension_on_a_maturity_twentieth_bears_the_day_in_the_next_quarter(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let mut req = standard_loan_on("XT", HOUSEHOLD, "2021-03-20");
    req.principal_fen = 5_000_000;
    app.create_loan(&t.bank, req).await;
    let id = loan_id("XT");
    // Paid out after the 20th (one paid out on the 20th owes that day in a period of its own).
    app.disburse(&t.bank, &id, "2021-03-22").await;
    // 03-22 ..= 06-20 (91 days), 06-21 ..= 09-20 (92), 09-21 ..= 12-20 (91), and the maturity's
    // 12-21 ..= 2022-03-19 (89, its day not counted): 48,660, 49,194, 48,660 and 47,590.
    for (point, from, to, amount) in [
        ("2021-06-20", "2021-03-22", "2021-06-20", 48_660),
        ("2021-09-20", "2021-06-21", "2021-09-20", 49_194),
        ("2021-12-20", "2021-09-21", "2021-12-20", 48_660),
        ("2022-03-20", "2021-12-21", "2022-03-19", 47_590),
    ] {
        assert_eq!(interest(5_000_000, days(from, to)), amount, "{point}");
        app.repay(&t.bank, &id, point, amount).await;
    }
    let extended = app
        .loans(&t.bank)
        .extend_loan(pb::ExtendLoanRequest {
            request_id: rid("extend"),
            loan_id: id.clone(),
            value_date: "2022-03-20".into(),
            new_maturity_date: "2022-09-20".into(),
        })
        .await
        .expect("an extension on the maturity day")
        .into_inner();
    let l = loan(&extended);
    assert_eq!(l.next_settlement_date, "2022-06-20", "{l:?}");
    assert_eq!((l.interest_due_fen, l.days_overdue), (0, 0), "{l:?}");
    for as_of in ["2022-03-21", "2022-06-19"] {
        let l = app.get_loan_as_of(&t.bank, &id, as_of).await;
        assert_eq!((l.interest_due_fen, l.days_overdue), (0, 0), "as of {as_of}: {l:?}");
        assert_eq!(status_of(&l), pb::LoanStatus::Active, "as of {as_of}: {l:?}");
    }
    // The quarter's run settles 2022-03-20 ..= 06-20, 93 days, due that day and paid then.
    let run = settle(&app, &t.finance, "", "2022-06-20").await;
    assert_eq!(run.loans_settled, 1, "{run:?}");
    let l = app.get_loan_as_of(&t.bank, &id, "2022-06-20").await;
    assert_eq!((l.interest_due_fen, l.days_overdue), (49_729, 0), "{l:?}");
    app.repay(&t.bank, &id, "2022-06-20", 49_729).await;
    let l = app.get_loan_as_of(&t.bank, &id, "2022-06-21").await;
    assert_eq!((l.interest_due_fen, l.days_overdue), (0, 0), "{l:?}");
    assert_eq!(status_of(&l), pb::LoanStatus::Active, "{l:?}");
    // Paid off at the new maturity: 06-21 ..= 09-19, 91 days, 48,660.
    let quote = app.payoff_quote(&t.bank, &id, "2022-09-20").await;
    assert_eq!(quote.total_fen, 5_000_000 + interest(5_000_000, days("2022-06-21", "2022-09-19")));
    assert_eq!(quote.total_fen, 5_048_660, "{quote:?}");
    let done = app.repay(&t.bank, &id, "2022-09-20", 5_048_660).await;
    let l = loan(&done);
    assert_eq!(status_of(l), pb::LoanStatus::Settled, "{l:?}");
    assert_eq!(l.interest_settled_fen, 48_660 + 49_194 + 48_660 + 47_590 + 49_729 + 48_660);
    assert_eq!((l.interest_paid_fen, l.compound_paid_fen, l.penalty_paid_fen), (292_493, 0, 0));
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A standard loan of H001 contracted on 2022-01-25, its first loan's maturity, at the 1-year
/// LPR from 2022-01-20 (3.70%), renewing `renews` (none if empty).
fn renewal_request(contract_number: &str, renews: &str) -> pb::CreateLoanRequest {
    pb::CreateLoanRequest {
        contract_date: "2022-01-25".into(),
        annual_rate: "0.037".into(),
        renews_loan_id: renews.into(),
        ..standard_loan(contract_number, HOUSEHOLD)
    }
}

/// A renewal (续贷) links to its parent and does not count twice against the household cap.
async fn renewal(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let parent = disbursed(&app, &t, "N1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let other = disbursed(&app, &t, "N-OTHER", "H-N2", 1_000_000, "2021-01-25").await;
    let mut loans = app.loans(&t.bank);

    // H001 is at the 50,000-yuan cap with the parent.
    let capped = expect_refused(
        loans.create_loan(renewal_request("N2", "")).await,
        "HOUSEHOLD_CAP_EXCEEDED",
    );
    assert_eq!(metadata(&capped, "available_fen").as_deref(), Some("0"), "{capped:?}");
    assert_eq!(
        metadata(&capped, "household_open_principal_fen").as_deref(),
        Some("5000000"),
        "{capped:?}"
    );
    // Another household's loan is not this household's to renew.
    expect_refused(loans.create_loan(renewal_request("N2", &other)).await, "RENEWAL_MISMATCH");
    let missing =
        expect_code(loans.create_loan(renewal_request("N2", "B1-NO-SUCH")).await, Code::NotFound);
    // Another bank's loan is answered as a missing one, naming neither its bank nor its household.
    let (_, b2_loan) = bank_b2_loan(&app, &t, "H-B2", 1_000_000).await;
    let hidden =
        expect_code(loans.create_loan(renewal_request("N2", &b2_loan)).await, Code::NotFound);
    assert_eq!(
        hidden.message(),
        missing.message().replace("B1-NO-SUCH", &b2_loan),
        "{hidden:?} against {missing:?}"
    );

    let renewed = app.create_loan(&t.bank, renewal_request("N2", &parent)).await;
    let l = loan(&renewed);
    assert_eq!(l.renews_loan_id, parent, "{l:?}");
    assert_eq!(l.principal_fen, 5_000_000, "{l:?}");
    assert_eq!(status_of(l), pb::LoanStatus::Contracted, "{l:?}");
    let got = app.get_loan(&t.bank, &loan_id("N2")).await;
    assert_eq!(got.renews_loan_id, parent);
    // The parent counts once: a second renewal of it, or any other loan, is over the cap.
    expect_refused(
        loans.create_loan(renewal_request("N3", &parent)).await,
        "HOUSEHOLD_CAP_EXCEEDED",
    );
    let mut one_fen = standard_loan("N4", HOUSEHOLD);
    one_fen.principal_fen = 1;
    expect_refused(loans.create_loan(one_fen).await, "HOUSEHOLD_CAP_EXCEEDED");

    // Not paid out while the parent still lends: the household would owe both, twice the cap.
    let disburse = |request_id: &str, value_date: &str| pb::DisburseRequest {
        request_id: request_id.into(),
        loan_id: loan_id("N2"),
        value_date: value_date.into(),
        amount_fen: 0,
    };
    let early = expect_refused(
        loans.disburse(disburse("n2-early", "2022-01-25")).await,
        "LOAN_NOT_DISBURSABLE",
    );
    assert!(early.message().contains("still owes 50000.00 of principal"), "{early:?}");
    assert_eq!(
        metadata(&early, "renewed_principal_outstanding_fen").as_deref(),
        Some("5000000"),
        "{early:?}"
    );
    let still = app.get_loan(&t.bank, &loan_id("N2")).await;
    assert_eq!((status_of(&still), still.disbursed_fen), (pb::LoanStatus::Contracted, 0));

    // The parent is paid off at maturity and the renewal paid out the same day.
    let paid = app.pay_off(&t.bank, &parent, "2022-01-25").await;
    assert_eq!(status_of(loan(&paid)), pb::LoanStatus::Settled);
    assert_eq!(loan(&paid).interest_settled_fen, 195_173);
    let out = app.disburse(&t.bank, &loan_id("N2"), "2022-01-25").await;
    let l = loan(&out);
    assert_eq!(status_of(l), pb::LoanStatus::Active, "{l:?}");
    assert_eq!(l.principal_outstanding_fen, 5_000_000, "{l:?}");
    assert_eq!(l.current_maturity_date, "2023-01-25", "{l:?}");
    let list = loans
        .list_loans(pb::ListLoansRequest {
            bank_id: BANK.into(),
            household_id: HOUSEHOLD.into(),
            ..Default::default()
        })
        .await
        .expect("ListLoans")
        .into_inner();
    assert_eq!(
        list.loans
            .iter()
            .map(|l| (l.loan_id.clone(), l.renews_loan_id.clone()))
            .collect::<Vec<_>>(),
        vec![(parent.clone(), String::new()), (loan_id("N2"), parent.clone())]
    );
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A contract recorded late and dated back counts the household's loans that were open on its
/// date and have closed since: dated the day before a loan of the household was repaid, it is
/// over the cap with it (it used to count open loans only, and so lent twice the cap for those
/// days); dated the day it was repaid, it is not (the loan bore no interest that day).
async fn a_contract_dated_before_a_loan_closed_counts_it(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let first = disbursed(&app, &t, "A1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let paid = app.pay_off(&t.bank, &first, "2021-06-01").await;
    assert_eq!(status_of(loan(&paid)), pb::LoanStatus::Settled);
    let mut loans = app.loans(&t.bank);
    let mut early = standard_loan("A2", HOUSEHOLD);
    early.contract_date = "2021-05-31".into();
    let refused = expect_refused(loans.create_loan(early).await, "HOUSEHOLD_CAP_EXCEEDED");
    assert_eq!(metadata(&refused, "available_fen").as_deref(), Some("0"), "{refused:?}");
    let mut on_the_day = standard_loan("A3", HOUSEHOLD);
    on_the_day.contract_date = "2021-06-01".into();
    let made = app.create_loan(&t.bank, on_the_day).await;
    assert_eq!(loan(&made).contract_date, "2021-06-01");
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// The borrower rule counts a loan as the cap does: a contract dated back (recorded late) for
/// another household is refused while its borrower owed a loan of their own household on its
/// date, though that loan has been repaid since; dated the day it was repaid, it is made.
async fn a_borrower_dated_back_belongs_to_the_household_they_owed_for(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let member = id_number("19850301");
    let mut req = standard_loan("M1", HOUSEHOLD);
    req.borrower_id_number = member.clone();
    app.create_loan(&t.bank, req).await;
    let first = loan_id("M1");
    app.disburse(&t.bank, &first, "2021-01-25").await;
    let paid = app.pay_off(&t.bank, &first, "2021-06-01").await;
    assert_eq!(status_of(loan(&paid)), pb::LoanStatus::Settled);
    app.register_household(&t.finance, "H002", "19700101").await;
    let for_h002 = |contract: &str, date: &str| {
        let mut req = standard_loan(contract, "H002");
        req.borrower_id_number = member.clone();
        req.principal_fen = 1_000_000;
        req.contract_date = date.into();
        req
    };
    let mut loans = app.loans(&t.bank);
    let refused = expect_refused(
        loans.create_loan(for_h002("M2", "2021-05-31")).await,
        "BORROWER_OF_ANOTHER_HOUSEHOLD",
    );
    assert_eq!(metadata(&refused, "household_id").as_deref(), Some(HOUSEHOLD), "{refused:?}");
    let made = app.create_loan(&t.bank, for_h002("M3", "2021-06-01")).await;
    assert_eq!(loan(&made).household_id, "H002");
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A renewal contracted before its parent is repaid is paid out from the day the parent closed,
/// not dated before it once the parent is closed: the household would have owed both loans
/// for the days between, up to twice the cap.
async fn a_renewal_is_paid_out_from_the_day_its_parent_closed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let parent = disbursed(&app, &t, "P1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let mut early = renewal_request("R1", &parent);
    early.contract_date = "2022-01-10".into();
    app.create_loan(&t.bank, early).await;
    let paid = app.pay_off(&t.bank, &parent, "2022-01-25").await;
    assert_eq!(status_of(loan(&paid)), pb::LoanStatus::Settled);
    let disburse = |value_date: &str| pb::DisburseRequest {
        request_id: rid("r1"),
        loan_id: loan_id("R1"),
        value_date: value_date.into(),
        amount_fen: 0,
    };
    let mut loans = app.loans(&t.bank);
    let before =
        expect_refused(loans.disburse(disburse("2022-01-20")).await, "LOAN_NOT_DISBURSABLE");
    assert!(before.message().contains("lent until 2022-01-25, after 2022-01-20"), "{before:?}");
    let out = loans.disburse(disburse("2022-01-25")).await.expect("paid out the day it closed");
    let l = out.into_inner().loan.expect("the loan");
    assert_eq!((l.disbursed_fen, l.disbursed_on.as_str()), (5_000_000, "2022-01-25"));
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A contract never paid out, renewed before its maturity by a renewal paid out after it, is
/// not paid out dated back before its maturity: `LOAN_NOT_DISBURSABLE` naming the renewal
/// (`metadata.renewal_loan_id`), nothing posted (since 2026-12-07: the household owed both,
/// 100,000.00 yuan against the cap of 50,000.00, the cap having counted them once).
async fn a_renewed_contract_is_not_paid_out_after_its_renewal(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let parent = contract(&app, &t, "P2", HOUSEHOLD, 5_000_000).await;
    let mut renewal = renewal_request("R2", &parent);
    renewal.contract_date = "2022-01-10".into();
    app.create_loan(&t.bank, renewal).await;
    let disburse = |loan_id: &str, value_date: &str| pb::DisburseRequest {
        request_id: rid("payout"),
        loan_id: loan_id.into(),
        value_date: value_date.into(),
        amount_fen: 0,
    };
    let mut loans = app.loans(&t.bank);
    let renewal_id = loan_id("R2");
    let out = loans.disburse(disburse(&renewal_id, "2022-01-26")).await;
    out.expect("the renewal paid out after its parent's maturity");
    let journal = app.journal(&t.auditor, LEDGER).await.len();
    let refused = loans.disburse(disburse(&parent, "2022-01-20")).await;
    let refused = expect_refused(refused, "LOAN_NOT_DISBURSABLE");
    assert_eq!(metadata(&refused, "renewal_loan_id"), Some(renewal_id.clone()), "{refused:?}");
    assert!(refused.message().contains("paid out on 2022-01-26"), "{refused:?}");
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal, "nothing posted");
    assert_eq!(app.get_loan(&t.bank, &parent).await.disbursed_fen, 0);
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// `ListLoans` as of a past day: the loans contracted by then, each as it stood then. At the
/// quarter-end 2021-03-31, A (paid nothing, paid off since, on 04-10) was overdue 11 days, B
/// (its March interest paid on its day) active, and C (contracted on 2021-05-01) not yet a
/// loan; the status filter is judged as of the day; a page token is of its day (since
/// 2026-12-07: a listing showed today's loans only).
async fn loans_are_listed_as_they_stood_on_a_day(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let a = disbursed(&app, &t, "LA", HOUSEHOLD, 1_000_000, "2021-01-25").await;
    let b = disbursed(&app, &t, "LB", "H-LB", 1_000_000, "2021-01-25").await;
    app.register_household(&t.finance, "H-LC", "19800517").await;
    app.create_loan(&t.bank, standard_loan_on("LC", "H-LC", "2021-05-01")).await;
    let c = loan_id("LC");
    app.repay(&t.bank, &b, "2021-03-20", interest(1_000_000, 55)).await;
    app.pay_off(&t.bank, &a, "2021-04-10").await;
    let list = |as_of: &str, status: pb::LoanStatus, page_token: &str| pb::ListLoansRequest {
        bank_id: BANK.into(),
        status: status as i32,
        as_of: as_of.into(),
        page_token: page_token.into(),
        ..Default::default()
    };
    let mut loans = app.loans(&t.auditor);
    let listed = |r: Result<tonic::Response<pb::ListLoansResponse>, tonic::Status>| {
        let page = r.expect("ListLoans").into_inner();
        let shown: Vec<(String, pb::LoanStatus, i64, String)> = page
            .loans
            .iter()
            .map(|l| (l.loan_id.clone(), l.status(), l.days_overdue, l.as_of.clone()))
            .collect();
        (shown, page.next_page_token)
    };
    let quarter_end = "2021-03-31".to_string();
    let (all, token) =
        listed(loans.list_loans(list(&quarter_end, pb::LoanStatus::Unspecified, "")).await);
    assert_eq!(
        all,
        [
            (a.clone(), pb::LoanStatus::Overdue, 11, quarter_end.clone()),
            (b.clone(), pb::LoanStatus::Active, 0, quarter_end.clone())
        ]
    );
    assert!(token.is_empty());
    let (overdue, _) =
        listed(loans.list_loans(list(&quarter_end, pb::LoanStatus::Overdue, "")).await);
    assert_eq!(overdue.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(), [a.as_str()]);
    let (settled, _) =
        listed(loans.list_loans(list(&quarter_end, pb::LoanStatus::Settled, "")).await);
    assert!(settled.is_empty(), "{settled:?}");
    let (today, _) = listed(loans.list_loans(list("", pb::LoanStatus::Settled, "")).await);
    assert_eq!(today.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(), [a.as_str()]);
    // A page at a time; its token is of its day.
    let first = pb::ListLoansRequest {
        page_size: 1,
        ..list(&quarter_end, pb::LoanStatus::Unspecified, "")
    };
    let (page, token) = listed(loans.list_loans(first).await);
    assert_eq!((page.len(), page[0].0.as_str()), (1, a.as_str()));
    let (next, _) =
        listed(loans.list_loans(list(&quarter_end, pb::LoanStatus::Unspecified, &token)).await);
    assert_eq!(next.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(), [b.as_str()]);
    let other_day = loans.list_loans(list("2021-03-30", pb::LoanStatus::Unspecified, &token)).await;
    expect_invalid(other_day, "page_token");
    expect_invalid(
        loans.list_loans(list("2031-03-31", pb::LoanStatus::Unspecified, "")).await,
        "as_of",
    );
    // A contract dated tomorrow (the most a date runs ahead) is listed today without a date,
    // as of its own day, but not as of today given (since 2026-12-07 evening, when today given
    // was the listing without a date).
    let offset = loanledger::startup::business_utc_offset_default();
    let today = loanledger::domain::date::business_date(chrono::Utc::now(), offset);
    let (today, tomorrow) = (today.to_string(), (today + chrono::Days::new(1)).to_string());
    app.register_household(&t.finance, "H-LD", "19800517").await;
    let at_todays_lpr = pb::CreateLoanRequest {
        annual_rate: "0.029".into(),
        ..standard_loan_on("LD", "H-LD", &tomorrow)
    };
    app.create_loan(&t.bank, at_todays_lpr).await;
    let (without, _) = listed(loans.list_loans(list("", pb::LoanStatus::Unspecified, "")).await);
    let shown: Vec<(&str, &str)> = without.iter().map(|l| (l.0.as_str(), l.3.as_str())).collect();
    let d = loan_id("LD");
    assert_eq!(
        shown,
        [(a.as_str(), today.as_str()), (b.as_str(), &today), (&c, &today), (&d, &tomorrow)]
    );
    let (given, _) = listed(loans.list_loans(list(&today, pb::LoanStatus::Unspecified, "")).await);
    let shown: Vec<(&str, &str)> = given.iter().map(|l| (l.0.as_str(), l.3.as_str())).collect();
    assert_eq!(shown, [(a.as_str(), today.as_str()), (b.as_str(), &today), (&c, &today)]);
    app.finish().await;
}

/// A renewal counts once with its parent, at the larger of the two: a renewal of 1 fen does not
/// free the parent's principal for a new loan while the parent is open. Two renewals of one
/// loan add up, each lent in full.
async fn a_small_renewal_keeps_its_parent_counted(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let parent = disbursed(&app, &t, "S1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let mut loans = app.loans(&t.bank);
    let contract = |contract_number: &str, renews: &str, principal_fen: i64| {
        pb::CreateLoanRequest { principal_fen, ..renewal_request(contract_number, renews) }
    };
    let refused = |answer: Result<tonic::Response<pb::LoanResponse>, tonic::Status>,
                   open: &str,
                   available: &str| {
        let refused = expect_refused(answer, "HOUSEHOLD_CAP_EXCEEDED");
        assert_eq!(
            metadata(&refused, "household_open_principal_fen").as_deref(),
            Some(open),
            "{refused:?}"
        );
        assert_eq!(metadata(&refused, "available_fen").as_deref(), Some(available), "{refused:?}");
    };

    let small = app.create_loan(&t.bank, contract("S2", &parent, 1)).await;
    assert_eq!(loan(&small).renews_loan_id, parent);
    // The household still owes the parent's 50,000 yuan against its cap.
    refused(loans.create_loan(contract("S3", "", 4_999_999)).await, "5000000", "0");
    // A second renewal of the parent may lend what the first left of it.
    refused(loans.create_loan(contract("S3", &parent, 5_000_000)).await, "5000000", "4999999");
    app.create_loan(&t.bank, contract("S3", &parent, 4_999_999)).await;
    refused(loans.create_loan(contract("S4", &parent, 1)).await, "5000000", "0");

    // A renewal of a renewal whose parent is still open would make three loans count as one:
    // refused, however small, and nothing recorded but the refusal.
    let small = loan(&small).loan_id.clone();
    let chained =
        expect_refused(loans.create_loan(contract("S4", &small, 1)).await, "RENEWAL_MISMATCH");
    assert!(chained.message().contains("is still open"), "{chained:?}");

    // Paid off, the parent counts no more: its renewals count by themselves, and may be
    // renewed in turn.
    app.pay_off(&t.bank, &parent, "2022-01-25").await;
    refused(loans.create_loan(contract("S4", "", 2)).await, "5000000", "0");
    let renewed = app.create_loan(&t.bank, contract("S4", &small, 1)).await;
    assert_eq!(loan(&renewed).renews_loan_id, small);
    refused(loans.create_loan(contract("S5", "", 1)).await, "5000000", "0");
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A loan whose rest is never paid out counts against the household cap what it paid out
/// (since 2026-12-07 evening; it held the whole contract to its maturity): an instalment loan
/// of 50,000.00 yuan paid out 30,000.00 (its schedule fixed, a second payout refused) leaves
/// the household 20,000.00; a bullet loan of those 20,000.00 paid out 10,000.00 and then marked
/// misused (lent no more) leaves it 10,000.00 again. Verify holds.
async fn a_loan_that_pays_out_no_more_counts_what_it_lent(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let mut loans = app.loans(&t.bank);
    let payout = |loan_id: &str, value_date: &str, amount_fen: i64| pb::DisburseRequest {
        request_id: rid("d"),
        loan_id: loan_id.into(),
        value_date: value_date.into(),
        amount_fen,
    };
    let refused = |answer: Result<tonic::Response<pb::LoanResponse>, tonic::Status>,
                   open: &str,
                   available: &str| {
        let refused = expect_refused(answer, "HOUSEHOLD_CAP_EXCEEDED");
        let figures =
            ["household_open_principal_fen", "available_fen"].map(|k| metadata(&refused, k));
        assert_eq!(figures, [Some(open.into()), Some(available.into())], "{refused:?}");
    };
    let on =
        |contract_number: &str, contract_date: &str, principal_fen: i64| pb::CreateLoanRequest {
            contract_date: contract_date.into(),
            principal_fen,
            ..standard_loan(contract_number, HOUSEHOLD)
        };

    app.create_loan(&t.bank, instalment_loan("P1", HOUSEHOLD)).await;
    let first = loan_id("P1");
    loans.disburse(payout(&first, "2021-01-25", 3_000_000)).await.expect("the payout");
    let again = loans.disburse(payout(&first, "2021-02-01", 1)).await;
    expect_refused(again, "LOAN_NOT_DISBURSABLE");
    refused(loans.create_loan(on("P2", "2021-02-01", 2_000_001)).await, "3000000", "2000000");
    app.create_loan(&t.bank, on("P2", "2021-02-01", 2_000_000)).await;
    refused(loans.create_loan(on("P3", "2021-02-01", 1)).await, "5000000", "0");

    let second = loan_id("P2");
    loans.disburse(payout(&second, "2021-02-01", 1_000_000)).await.expect("the payout");
    let mark = pb::MarkMisuseRequest {
        request_id: rid("misuse"),
        loan_id: second.clone(),
        value_date: "2021-02-10".into(),
        falsely_obtained: false,
    };
    app.loans(&t.finance).mark_misuse(mark).await.expect("the mark");
    expect_refused(loans.disburse(payout(&second, "2021-02-10", 1)).await, "LOAN_NOT_DISBURSABLE");
    refused(loans.create_loan(on("P3", "2021-02-10", 1_000_001)).await, "4000000", "1000000");
    app.create_loan(&t.bank, on("P3", "2021-02-10", 1_000_000)).await;
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A contract never paid out counts against the household cap until its maturity; a contract of
/// the household dated from then on may take the whole cap, and the old one is then not paid
/// out, not even back-dated before its maturity (it would lend past the cap).
async fn an_expired_contract_frees_the_cap(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let unpaid = app.create_loan(&t.bank, standard_loan("E1", HOUSEHOLD)).await;
    let unpaid = loan(&unpaid).loan_id.clone();
    let mut loans = app.loans(&t.bank);
    let on = |contract_number: &str, contract_date: &str| pb::CreateLoanRequest {
        contract_date: contract_date.into(),
        annual_rate: "0.037".into(),
        ..standard_loan(contract_number, HOUSEHOLD)
    };
    // The day before its maturity (2022-01-25) it could still be paid out: it counts.
    let refused =
        expect_refused(loans.create_loan(on("E2", "2022-01-24")).await, "HOUSEHOLD_CAP_EXCEEDED");
    assert_eq!(metadata(&refused, "available_fen").as_deref(), Some("0"), "{refused:?}");
    let disburse = |request_id: &str, value_date: &str| pb::DisburseRequest {
        request_id: request_id.into(),
        loan_id: unpaid.clone(),
        value_date: value_date.into(),
        amount_fen: 0,
    };
    expect_refused(loans.disburse(disburse("late", "2022-01-25")).await, "VALUE_DATE_OUT_OF_RANGE");
    // From its maturity on it cannot: a new loan may take the whole cap.
    let fresh = app.create_loan(&t.bank, on("E2", "2022-01-25")).await;
    assert_eq!(loan(&fresh).principal_fen, STANDARD_PRINCIPAL_FEN);
    // Then the old contract is not paid out, not even dated before its maturity.
    let back = expect_refused(
        loans.disburse(disburse("back-dated", "2022-01-24")).await,
        "LOAN_NOT_DISBURSABLE",
    );
    assert!(
        back.message().contains(
            "its household has contracted loan B1-E2 since (2022-01-25) without this contract \
             counting against the cap: the contract has expired"
        ),
        "{back:?}"
    );
    assert_eq!(app.get_loan(&t.bank, &unpaid).await.status, pb::LoanStatus::Contracted as i32);
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A contract never paid out by its maturity is not paid out, dated before it, once a loan
/// contracted since without it counting has been repaid and closed either: that loan was owed on
/// days the contract, paid out on the earlier date, would have been owed too. Both ways a loan
/// is contracted since: by the contract's household, and by its borrower for another household.
async fn an_expired_contract_stays_unpaid_once_the_later_loan_is_closed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let member = id_number("19850301");
    app.register_household(&t.finance, "H002", "19700101").await;
    app.register_household(&t.finance, "H003", "19750101").await;
    // E1 for the household; F1 for H002, its borrower a member who is no head. Both mature on
    // 2022-01-25 unpaid.
    app.create_loan(&t.bank, standard_loan("E1", HOUSEHOLD)).await;
    let mut f1 = standard_loan("F1", "H002");
    f1.borrower_id_number = member.clone();
    app.create_loan(&t.bank, f1).await;
    // From their maturity on they no longer count: the household contracts E2 for the whole cap,
    // the member F2 for H003; both are paid out and repaid within the week.
    let later = |contract_number: &str, household: &str, borrower: &str| pb::CreateLoanRequest {
        annual_rate: "0.037".into(),
        borrower_id_number: borrower.into(),
        ..standard_loan_on(contract_number, household, "2022-01-25")
    };
    let head = standard_loan("E2", HOUSEHOLD).borrower_id_number;
    for (contract_number, household, borrower) in
        [("E2", HOUSEHOLD, head.as_str()), ("F2", "H003", member.as_str())]
    {
        app.create_loan(&t.bank, later(contract_number, household, borrower)).await;
        let id = loan_id(contract_number);
        app.disburse(&t.bank, &id, "2022-01-25").await;
        let paid = app.pay_off(&t.bank, &id, "2022-02-01").await;
        assert_eq!(status_of(loan(&paid)), pb::LoanStatus::Settled, "{contract_number}");
    }
    let mut loans = app.loans(&t.bank);
    let disburse = |contract_number: &str| pb::DisburseRequest {
        request_id: rid("back-dated"),
        loan_id: loan_id(contract_number),
        value_date: "2022-01-24".into(),
        amount_fen: 0,
    };
    for (contract_number, who) in [
        ("E1", "its household has contracted loan B1-E2 since (2022-01-25)"),
        ("F1", "its borrower, for household H003, has contracted loan B1-F2 since (2022-01-25)"),
    ] {
        let refused =
            expect_refused(loans.disburse(disburse(contract_number)).await, "LOAN_NOT_DISBURSABLE");
        assert!(refused.message().contains(who), "{contract_number}: {refused:?}");
        let l = app.get_loan(&t.bank, &loan_id(contract_number)).await;
        assert_eq!((l.status, l.disbursed_fen), (pb::LoanStatus::Contracted as i32, 0));
        // On its maturity or after it, or before its contract date, a contract is refused for
        // its date, whatever was contracted since (the reason does not depend on the later
        // loans).
        // The metadata names the latest or the earliest date it would be taken on.
        for (value_date, why, bound) in [
            (
                "2022-01-25",
                "is not before the maturity date 2022-01-25",
                ("latest_date", "2022-01-24"),
            ),
            (
                "2022-01-26",
                "is not before the maturity date 2022-01-25",
                ("latest_date", "2022-01-24"),
            ),
            (
                "2021-01-24",
                "is before the loan's last recorded event on 2021-01-25",
                ("earliest_date", "2021-01-25"),
            ),
        ] {
            let refused = expect_refused(
                loans
                    .disburse(pb::DisburseRequest {
                        value_date: value_date.into(),
                        ..disburse(contract_number)
                    })
                    .await,
                "VALUE_DATE_OUT_OF_RANGE",
            );
            assert!(refused.message().contains(why), "{contract_number} {value_date}: {refused:?}");
            assert_eq!(metadata(&refused, bound.0).as_deref(), Some(bound.1), "{refused:?}");
        }
    }
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// An expired contract paid out, dated back, at the same moment as its household contracts a
/// loan for the whole cap after its maturity: the writer may take the two in one group, in
/// either order, and exactly one of them is made (the later contract, or the payout, which
/// then counts against the cap). Several households, so that some pairs share a group.
async fn an_expired_contract_and_a_later_one_sent_together(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    for n in 2..=6 {
        let household = format!("H00{n}");
        let birth = format!("1970010{n}");
        app.register_household(&t.finance, &household, &birth).await;
        let head = id_number(&birth);
        let (early, late) = (format!("X{n}"), format!("Y{n}"));
        let mut contract = standard_loan(&early, &household);
        contract.borrower_id_number = head.clone();
        app.create_loan(&t.bank, contract).await;
        let mut later = standard_loan_on(&late, &household, "2022-01-25");
        later.annual_rate = "0.037".into();
        later.borrower_id_number = head;
        let (mut a, mut b) = (app.loans(&t.bank), app.loans(&t.bank));
        let (made, paid) = tokio::join!(
            a.create_loan(later),
            b.disburse(pb::DisburseRequest {
                request_id: rid("back-dated"),
                loan_id: loan_id(&early),
                value_date: "2022-01-24".into(),
                amount_fen: 0,
            })
        );
        let (early_paid_out, late_exists) = match (made, paid) {
            (Ok(_), paid) => {
                let refused = expect_refused(paid, "LOAN_NOT_DISBURSABLE");
                assert!(refused.message().contains(&loan_id(&late)), "{refused:?}");
                (false, true)
            }
            (made, Ok(_)) => {
                expect_refused(made, "HOUSEHOLD_CAP_EXCEEDED");
                (true, false)
            }
            (Err(made), Err(paid)) => panic!("one of the two is made: {made:?}, {paid:?}"),
        };
        let l = app.get_loan(&t.bank, &loan_id(&early)).await;
        assert_eq!(l.disbursed_fen > 0, early_paid_out, "{household}: {l:?}");
        let found = app
            .loans(&t.bank)
            .get_loan(pb::GetLoanRequest {
                loan_id: loan_id(&late),
                as_of: String::new(),
                through_seq: 0,
            })
            .await;
        assert_eq!(found.is_ok(), late_exists, "{household}: {found:?}");
    }
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// Early full repayment settles interest to the day before; more is refused with what is owed,
/// all the principal without the interest is refused.
/// A penalty rate is the contract rate × (1 + the policy's uplift), exactly: with a contract
/// rate of eight decimals and the uplift of 0.5 it has nine (0.03849999 × 1.5 = 0.057749985),
/// more than a client may send. The settlement that records it is read back as recorded: the
/// loan, its past states and Verify, not a journal that can no longer be read.
async fn a_penalty_rate_is_stored_as_computed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let mut req = standard_loan("PR1", HOUSEHOLD);
    req.annual_rate = "0.03849999".into();
    app.create_loan(&t.bank, req).await;
    let id = loan_id("PR1");
    app.disburse(&t.bank, &id, "2021-01-25").await;
    // Nothing paid through maturity, then 30 days of penalty (2022-01-25 ..= 2022-02-23).
    settle(&app, &t.finance, "", "2022-01-25").await;
    let before = app.get_loan_as_of(&t.bank, &id, "2022-02-01").await;
    let view = app.get_loan_as_of(&t.bank, &id, "2022-02-24").await;
    assert_eq!(status_of(&view), pb::LoanStatus::Overdue90, "{view:?}");
    // 5,000,000 × 30 × 0.057749985 / 360 = 24,062.49375 -> 24,062 (at 0.05775: 24,063).
    assert_eq!(view.penalty_fen, 24_062, "{view:?}");
    // A repayment settles the 30 days' penalty and compound, each segment with its rate.
    let paid = app.repay(&t.bank, &id, "2022-02-24", 100_000).await;
    assert_eq!(loan(&paid).penalty_paid_fen, 24_062, "{paid:?}");
    let history = app.history(&t.auditor, &id).await;
    let repaid = history.last().expect("the repayment");
    assert_eq!(repaid.seq, entry(&paid).seq);
    let charges = &event_json(repaid)["repayment"]["charges"];
    assert_eq!(segments(&charges["penalty"]), [(30, 150_000_000, "0.057749985".to_string())]);
    assert_eq!(segments(&charges["compound"])[0].2, "0.057749985");
    // The loan and its past states are read by replaying its events, the repayment's too.
    let now = app.get_loan(&t.bank, &id).await;
    assert_eq!(now.penalty_paid_fen, 24_062, "{now:?}");
    assert_eq!(app.get_loan_as_of(&t.bank, &id, "2022-02-01").await, before);
    let later = app.get_loan_as_of(&t.bank, &id, "2022-03-01").await;
    assert_eq!(later.penalty_paid_fen, 24_062, "{later:?}");
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A tranche paid out, or misuse marked, on a settlement 20th gives the same figures whether
/// the day's run came before it or after. The 20th's point is settled first, on the loan as the
/// day began, in either order: the tranche bears its first day (算头) in the next period, and
/// misuse takes the misuse rate from the 21st.
async fn a_twentieths_events_do_not_depend_on_its_run(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let tranche = |id: &str| pb::DisburseRequest {
        request_id: rid("tranche"),
        loan_id: id.into(),
        value_date: "2021-03-20".into(),
        amount_fen: 2_000_000,
    };
    let misuse = |id: &str| pb::MarkMisuseRequest {
        request_id: rid("misuse"),
        loan_id: id.into(),
        value_date: "2021-03-20".into(),
        falsely_obtained: false,
    };
    // T1, T2, B1 and B2 paid out 3,000,000 of 5,000,000 on 01-25; M1 and M2 all of it. B1 and
    // B2 are marked misused on the 20th after its run, B2 given its second tranche first: B1's,
    // asked after its mark, is refused (since 2026-12-07: a loan found misused is lent no more;
    // it was paid out, and bore the misuse penalty from the 21st).
    let mut ids = Vec::new();
    for contract_number in ["T1", "T2", "B1", "B2"] {
        let household = format!("H-{contract_number}");
        let id = contract(&app, &t, contract_number, &household, 5_000_000).await;
        let first = pb::DisburseRequest {
            value_date: "2021-01-25".into(),
            amount_fen: 3_000_000,
            ..tranche(&id)
        };
        app.loans(&t.bank).disburse(first).await.expect("the first tranche");
        ids.push(id);
    }
    let [t1, t2, b1, b2] = <[String; 4]>::try_from(ids).expect("four loans");
    let m1 = disbursed(&app, &t, "M1", "H-M1", 5_000_000, "2021-01-25").await;
    let m2 = disbursed(&app, &t, "M2", "H-M2", 5_000_000, "2021-01-25").await;
    // Before the 03-20 run: T2's second tranche and M2's misuse; after it, T1's and M1's.
    app.loans(&t.bank).disburse(tranche(&t2)).await.expect("T2's tranche before the run");
    app.loans(&t.finance).mark_misuse(misuse(&m2)).await.expect("M2 marked before the run");
    settle(&app, &t.finance, "", "2021-03-20").await;
    app.loans(&t.bank).disburse(tranche(&t1)).await.expect("T1's tranche after the run");
    app.loans(&t.finance).mark_misuse(misuse(&m1)).await.expect("M1 marked after the run");
    app.loans(&t.finance).mark_misuse(misuse(&b1)).await.expect("B1 marked");
    let refused = app.loans(&t.bank).disburse(tranche(&b1)).await;
    let refused = expect_refused(refused, "LOAN_NOT_DISBURSABLE");
    assert!(refused.message().contains("marked misused on 2021-03-20"), "{refused:?}");
    assert_eq!(metadata(&refused, "misuse_since").as_deref(), Some("2021-03-21"));
    app.loans(&t.bank).disburse(tranche(&b2)).await.expect("B2's tranche");
    app.loans(&t.finance).mark_misuse(misuse(&b2)).await.expect("B2 marked after its tranche");
    settle(&app, &t.finance, "", "2021-06-20").await;

    // The tranches: 03-20 on 3,000,000 for 55 days (01-25 ..= 03-20): 17,645.83 -> 17,646;
    // 06-20 on 2,000,000 for 03-20 and 5,000,000 for 92 days (03-21 ..= 06-20): 49,408.33 ->
    // 49,408. Without the tranche's first day the second would be 49,194.
    assert_eq!(interest(3_000_000, 55), 17_646);
    assert_eq!(accrual(&[(2_000_000, 1, CONTRACT_RATE), (5_000_000, 92, CONTRACT_RATE)]), 49_408);
    // The misused loans: 03-20 interest for 55 days, 29,410; 06-20 penalty at 7.7% for 92 days:
    // 98,388.89 -> 98,389, and no interest.
    assert_eq!(accrual(&[(5_000_000, 92, MISUSE_RATE)]), 98_389);
    let expected = [(&t1, 17_646, 17_646 + 49_408, 0), (&t2, 17_646, 17_646 + 49_408, 0)];
    // B2: the tranche's 03-20 as interest, 2,000,000 × 0.0385 / 360 = 213.89 -> 214, then the
    // misuse penalty from 03-21; B1, without it: the penalty on 3,000,000 for 92 days at 7.7%,
    // 59,033.33 -> 59,033.
    assert_eq!(accrual(&[(2_000_000, 1, CONTRACT_RATE)]), 214);
    assert_eq!(accrual(&[(3_000_000, 92, MISUSE_RATE)]), 59_033);
    let misused = [(&m1, 29_410, 29_410, 98_389), (&m2, 29_410, 29_410, 98_389)];
    let both = [(&b1, 17_646, 17_646, 59_033), (&b2, 17_646, 17_646 + 214, 98_389)];
    for (id, first, settled, penalty) in expected.into_iter().chain(misused).chain(both) {
        let l = app.get_loan_as_of(&t.bank, id, "2021-06-20").await;
        assert_eq!((l.interest_settled_fen, l.penalty_fen), (settled, penalty), "{id}: {l:?}");
        // Marked on the 20th, misused from the 21st, the first day the accrual had not passed.
        let since = if penalty == 0 { "" } else { "2021-03-21" };
        assert_eq!(l.misuse_since, since, "{id}: {l:?}");
        // Each settlement as recorded: the 03-20 point's figure, then the 06-20 point's.
        let points: Vec<(String, i64, i64)> = app
            .history(&t.auditor, id)
            .await
            .iter()
            .flat_map(|e| event_json(e)["settlements"].as_array().cloned().unwrap_or_default())
            .map(|p| {
                let amount = |bucket: &str| p[bucket]["amount_fen"].as_i64().unwrap_or(0);
                (p["date"].as_str().unwrap().to_string(), amount("interest"), amount("penalty"))
            })
            .collect();
        assert_eq!(
            points,
            [
                ("2021-03-20".to_string(), first, 0),
                ("2021-06-20".to_string(), settled - first, penalty)
            ],
            "{id}"
        );
    }
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A quarter-end run made the next morning, after that day's payments and disbursements: the
/// loans with an event after the run's date have nothing left to settle through it (each event
/// settled the points up to its own date), and are neither settled nor failed.
async fn a_run_made_the_next_morning(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let paid = disbursed(&app, &t, "N1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let new = contract(&app, &t, "N2", "H-N2", 1_000_000).await;
    let left = disbursed(&app, &t, "N3", "H-N3", 1_000_000, "2021-01-25").await;
    // 03-21: N1 pays its 03-20 interest (the repayment settles the point first); N2 is paid out.
    let r = app.repay(&t.bank, &paid, "2021-03-21", 29_410).await;
    assert_eq!(loan(&r).interest_paid_fen, 29_410, "{r:?}");
    app.disburse(&t.bank, &new, "2021-03-21").await;
    let journal = app.journal(&t.auditor, LEDGER).await.len();
    let run = settle(&app, &t.finance, "", "2021-03-20").await;
    assert_eq!((run.loans_examined, run.loans_settled, run.failed), (3, 1, 0), "{run:?}");
    assert!(run.failures.is_empty(), "{run:?}");
    // Only N3's 03-20 interest: 1,000,000 × 55 × 0.0385 / 360 = 5,881.94 -> 5,882.
    assert_eq!(run.interest_fen, 5_882, "{run:?}");
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal + 1);
    assert_eq!(app.get_loan(&t.bank, &left).await.interest_settled_fen, 5_882);
    // A loan command dated before its loan's last event is still refused.
    expect_refused(
        repayment(&app, &t.bank, &paid, "2021-03-20", 100).await,
        "VALUE_DATE_OUT_OF_RANGE",
    );
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A quarter-end run dated after its 20th (the 20th a Saturday, the run made on the Monday,
/// 2021-03-22) settles the 03-20 point, with the same figures, dated the point: the bank's
/// payments of the 20th and the 21st, sent after the run, are still taken (dated the run's day,
/// the settlement refused them as before the loan's last event, and the interest paid on time
/// would have shown overdue).
async fn a_run_dated_after_its_point(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = disbursed(&app, &t, "M1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let run = settle(&app, &t.finance, "", "2021-03-22").await;
    // 5,000,000 × 55 × 0.0385 / 360 = 29,409.72 -> 29,410: through the 20th, not the 22nd.
    assert_eq!((run.loans_settled, run.settlement_points, run.interest_fen), (1, 1, 29_410));
    let history = app.history(&t.auditor, &id).await;
    let last = history.last().expect("the settlement");
    assert_eq!((last.kind.as_str(), last.value_date.as_str()), ("loan.settled", "2021-03-20"));
    // The bank's payments of the 20th (the interest due that day) and of the 21st.
    let r = app.repay(&t.bank, &id, "2021-03-20", 29_410).await;
    assert_eq!(loan(&r).interest_paid_fen, 29_410, "{r:?}");
    assert_eq!(loan(&r).interest_due_fen, 0, "{r:?}");
    let r = app.repay(&t.bank, &id, "2021-03-21", 100_000).await;
    assert_eq!(loan(&r).principal_outstanding_fen, 4_900_000, "{r:?}");
    // The run sent again under another id: nothing more to settle through the 22nd.
    let again = settle(&app, &t.finance, "", "2021-03-22").await;
    assert_eq!((again.loans_settled, again.failed), (0, 0), "{again:?}");
    assert_verifies(&app, &t).await;
    app.finish().await;
}

async fn early_payoff(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = disbursed(&app, &t, "P1", HOUSEHOLD, 5_000_000, "2021-01-25").await;

    // 2021-01-25 ..= 2021-02-14: 21 days: 5,000,000 × 21 × 0.0385 / 360 = 11,229.17 -> 11,229.
    assert_eq!(days("2021-01-25", "2021-02-14"), 21);
    assert_eq!(interest(5_000_000, 21), 11_229);
    let quote = app.payoff_quote(&t.bank, &id, "2021-02-15").await;
    assert_eq!(quote.accrued_interest_fen, 11_229, "{quote:?}");
    assert_eq!(quote.principal_fen, 5_000_000, "{quote:?}");
    assert_eq!(quote.total_fen, 5_011_229, "{quote:?}");
    assert_eq!(
        (quote.penalty_fen, quote.compound_fen, quote.overdue_interest_fen, quote.days_overdue),
        (0, 0, 0, 0)
    );
    let before = app.journal(&t.auditor, LEDGER).await.len();

    let over = expect_refused(
        repayment(&app, &t.bank, &id, "2021-02-15", 5_011_230).await,
        "REPAYMENT_EXCEEDS_OWED",
    );
    assert_eq!(metadata(&over, "owed_fen").as_deref(), Some("5011229"), "{over:?}");
    let principal_only = expect_refused(
        repayment(&app, &t.bank, &id, "2021-02-15", 5_000_000).await,
        "PAYOFF_REQUIRED",
    );
    assert_eq!(metadata(&principal_only, "payoff_fen").as_deref(), Some("5011229"));
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), before, "refusals post nothing");

    let paid =
        app.repay_as(&t.bank, "payoff-1", &id, "2021-02-15", 5_011_229).await.expect("the payoff");
    let l = loan(&paid);
    assert_eq!(status_of(l), pb::LoanStatus::Settled, "{l:?}");
    assert_eq!(l.interest_settled_fen, 11_229, "{l:?}");
    assert_eq!(l.interest_paid_fen, 11_229, "{l:?}");
    assert_eq!(l.principal_repaid_fen, 5_000_000, "{l:?}");
    assert_eq!(l.principal_outstanding_fen, 0, "{l:?}");
    assert_eq!(l.next_settlement_date, "", "{l:?}");
    let history = app.history(&t.auditor, &id).await;
    let repaid = history.last().unwrap();
    assert_eq!(repaid.kind, "loan.repaid");
    assert_eq!(
        sorted(&nonzero(&repaid.postings)),
        postings(&[
            ("bank/B1/cash", 5_011_229),
            ("loan/B1-P1/principal", -5_000_000),
            ("bank/B1/interest_income", -11_229),
        ])
    );
    let json = event_json(repaid);
    let early = &json["repayment"]["charges"]["interest"];
    assert_eq!(segments(early), vec![(21, 105_000_000, "0.0385".to_string())], "{json}");
    assert_eq!(early["amount_fen"], 11_229);
    assert_eq!(json["repayment"]["payoff"], true);
    // A settled loan takes no more money.
    expect_refused(repayment(&app, &t.bank, &id, "2021-02-16", 1).await, "LOAN_NOT_REPAYABLE");
    // But the payoff sent again (its answer lost on the way) is answered as the first time,
    // not refused as a repayment of a settled loan, and posts nothing.
    let journal = app.journal(&t.auditor, LEDGER).await.len();
    let again = app
        .repay_as(&t.bank, "payoff-1", &id, "2021-02-15", 5_011_229)
        .await
        .expect("the payoff again");
    assert_eq!(again, paid);
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal, "posted once");
    assert_verifies(&app, &t).await;
    app.finish().await;
}

fn disbursement_item(request_id: &str, loan_id: &str, value_date: &str) -> pb::BatchItem {
    pb::BatchItem {
        request_id: request_id.into(),
        item: Some(pb::batch_item::Item::Disbursement(pb::DisburseItem {
            loan_id: loan_id.into(),
            value_date: value_date.into(),
            amount_fen: 0,
        })),
    }
}

/// A disbursement with two bad fields names the same one, the value date, as a `Disburse`
/// call and as a batch's item (since 2026-12-07: the call named the amount).
async fn a_batch_item_is_read_as_its_unary_call(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = contract(&app, &t, "BU", HOUSEHOLD, 1_000_000).await;
    let mut loans = app.loans(&t.bank);
    let call = pb::DisburseRequest {
        request_id: rid("bad"),
        loan_id: id.clone(),
        value_date: "2021/01/25".into(),
        amount_fen: -5,
    };
    let refused = expect_invalid(loans.disburse(call).await, "value_date");
    let mut item = disbursement_item(&rid("bad"), &id, "2021/01/25");
    if let Some(pb::batch_item::Item::Disbursement(d)) = &mut item.item {
        d.amount_fen = -5;
    }
    let answer = loans.submit_batch(pb::SubmitBatchRequest { items: vec![item] }).await;
    let result = &answer.expect("SubmitBatch").into_inner().results[0];
    assert!(!result.ok, "{result:?}");
    assert_eq!((result.code.as_str(), result.field.as_str()), ("INVALID_ARGUMENT", "value_date"));
    assert_eq!(result.message, refused.message(), "{result:?}");
    app.finish().await;
}

/// A bank's daily file of 23 items, some bad: one result per item, the good ones posted once,
/// the whole file again posts nothing; an item refused as sent holds back the file's later
/// items on its loan, which run in their order once the file is sent again with it corrected;
/// too many items or none is INVALID_ARGUMENT.
async fn batch_with_bad_items(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    // Five loans to repay (disbursed 2021-01-25), five to pay out, one never paid out, and a
    // loan of bank B2; 1,000,000 fen each.
    let paying = disbursed_loans(&app, &t, "BP", 5).await;
    let mut payout = Vec::new();
    for i in 0..5 {
        payout.push(contract(&app, &t, &format!("BD{i}"), &format!("H-BD{i}"), 1_000_000).await);
    }
    let idle = contract(&app, &t, "BN0", "H-BN0", 1_000_000).await;
    let (_b2, foreign) = bank_b2_loan(&app, &t, "H-BX", 1_000_000).await;

    // Each paying loan owes 55 days of interest on 2021-03-20: 5,881.94 -> 5,882; 100,000 pays it
    // and 94,118 of principal, leaving 905,882. (Paying loan 0 again on 06-20, item 17, is held
    // back behind item 11: its figures are below, where the file is sent again.) The first
    // paid-out loan repaid 10,000 on 03-20: 5,882 of interest, leaving 995,882.
    assert_eq!(interest(1_000_000, 55), 5_882);
    let mut items = Vec::new();
    for (i, id) in payout.iter().enumerate() {
        items.push(disbursement_item(&rid(&format!("d{i}")), id, "2021-01-25")); // 0..=4
    }
    for (i, id) in paying.iter().enumerate() {
        items.push(repayment_item(&rid(&format!("r{i}")), id, "2021-03-20", 100_000)); // 5..=9
    }
    items.push(repayment_item(&rid("unknown"), "B1-NO-SUCH", "2021-03-20", 100)); // 10
    items.push(repayment_item(&rid("bad-date"), &paying[0], "2021-02-30", 100)); // 11
    items.push(repayment_item(&rid("over"), &paying[1], "2021-03-20", 2_000_000)); // 12
    items.push(repayment_item(&rid("foreign"), &foreign, "2021-03-20", 100)); // 13
    items.push(repayment_item(&rid("idle"), &idle, "2021-03-20", 100)); // 14
    items.push(pb::BatchItem { request_id: rid("empty"), item: None }); // 15
    items.push(repayment_item("", &paying[3], "2021-03-20", 100)); // 16
    items.push(repayment_item(&rid("again"), &paying[0], "2021-06-20", 50_000)); // 17
    items.push(repayment_item(&rid("new"), &payout[0], "2021-03-20", 10_000)); // 18
    items.push(items[5].clone()); // 19: the same request twice in one file
    let mut reused = items[6].clone(); // 20: a request id reused for another amount
    if let Some(pb::batch_item::Item::Repayment(r)) = &mut reused.item {
        r.amount_fen = 99_999;
    }
    items.push(reused);
    // 21: refused; 22: its request id again for another amount, refused as reused (the refusal
    // is the id's answer, not a free id).
    items.push(repayment_item(&rid("over-2"), &paying[2], "2021-03-20", 2_000_000));
    let mut reused = items[21].clone();
    if let Some(pb::batch_item::Item::Repayment(r)) = &mut reused.item {
        r.amount_fen = 100;
    }
    items.push(reused);
    assert_eq!(items.len(), 23);

    let before = app.journal(&t.auditor, LEDGER).await.len();
    let mut loans = app.loans(&t.bank);
    let answer = loans
        .submit_batch(pb::SubmitBatchRequest { items: items.clone() })
        .await
        .expect("SubmitBatch")
        .into_inner();
    let results = &answer.results;
    assert_eq!(results.len(), 23, "{answer:?}");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.index as usize, i, "{r:?}");
        assert_eq!(r.request_id, items[i].request_id, "{r:?}");
    }
    let ok: Vec<usize> = results.iter().filter(|r| r.ok).map(|r| r.index as usize).collect();
    assert_eq!(ok, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 18, 19], "{answer:?}");
    assert_eq!((answer.posted, answer.failed), (12, 11), "{answer:?}");
    for i in 0..5 {
        assert_eq!(results[i].loan_id, payout[i]);
        assert_eq!(results[i].principal_outstanding_fen, 1_000_000, "{:?}", results[i]);
        assert!(results[i].entry.is_some(), "{:?}", results[i]);
    }
    for i in 5..10 {
        assert_eq!(results[i].loan_id, paying[i - 5]);
        assert_eq!(results[i].principal_outstanding_fen, 905_882, "{:?}", results[i]);
    }
    // Item 17 follows item 11, refused as sent, on the same loan: held back, not run.
    assert!(
        results[17]
            .message
            .contains("send the call again once that item is corrected (or its date has come)"),
        "{:?}",
        results[17]
    );
    assert!(
        results[17].message.contains(&format!(
            "an earlier item of this call on loan {} was refused as sent",
            paying[0]
        )),
        "{:?}",
        results[17]
    );
    assert!(results[17].entry.is_none(), "{:?}", results[17]);
    assert_eq!(results[18].principal_outstanding_fen, 995_882, "{:?}", results[18]);
    assert_eq!(results[19].entry, results[5].entry, "the same request is posted once");
    assert_eq!(results[19].principal_outstanding_fen, 905_882);
    // Refusals carry their reason; nothing else about them is posted.
    assert_eq!(results[12].reason, "REPAYMENT_EXCEEDS_OWED", "{:?}", results[12]);
    // What is owed on 03-20 after the item-6 payment, in yuan: 905,882 fen.
    assert!(results[12].message.contains("9058.82"), "{:?}", results[12]);
    // With the figures a unary call's ErrorInfo carries, and a bad field named.
    let owed = results[12].metadata.get("owed_fen").map(String::as_str);
    assert_eq!(owed, Some("905882"), "{:?}", results[12]);
    assert_eq!(results[11].field, "value_date", "{:?}", results[11]);
    assert_eq!(results[16].field, "request_id", "{:?}", results[16]);
    assert_eq!((results[12].field.as_str(), results[5].field.as_str()), ("", ""));
    assert_eq!(results[14].reason, "LOAN_NOT_REPAYABLE", "{:?}", results[14]);
    assert_eq!(results[20].reason, "REQUEST_ID_REUSED", "{:?}", results[20]);
    assert_eq!(results[21].reason, "REPAYMENT_EXCEEDS_OWED", "{:?}", results[21]);
    assert_eq!(results[22].reason, "REQUEST_ID_REUSED", "{:?}", results[22]);
    for i in [10, 11, 13, 15, 16] {
        assert_eq!(results[i].reason, "", "{:?}", results[i]);
        assert!(!results[i].message.is_empty(), "{:?}", results[i]);
        assert!(results[i].entry.is_none(), "{:?}", results[i]);
    }
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), before + 11, "12 good items, one of them twice");
    let l = app.get_loan_as_of(&t.bank, &paying[0], "2021-06-20").await;
    assert_eq!(l.principal_outstanding_fen, 905_882, "item 17 was held back: {l:?}");
    assert_eq!(l.interest_paid_fen, 5_882, "{l:?}");
    let l = app.get_loan_as_of(&t.bank, &paying[1], "2021-03-20").await;
    assert_eq!(l.principal_outstanding_fen, 905_882, "the over-payment changed nothing: {l:?}");

    // The whole file again, after the idle loan was paid out: the same answers, the idle loan's
    // repayment refused again (its refusal is its request id's answer), nothing posted.
    app.disburse(&t.bank, &idle, "2021-01-25").await;
    let journal = app.journal(&t.auditor, LEDGER).await;
    let again = loans
        .submit_batch(pb::SubmitBatchRequest { items: items.clone() })
        .await
        .expect("SubmitBatch again")
        .into_inner();
    assert_eq!(again, answer, "a resubmitted file gets the same answers");
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal.len());

    // Sent again with item 11 corrected (its refusal was not recorded): it posts, then item 17
    // after it. 100 fen of principal on 03-20 (the day's interest paid by item 5) leaves
    // 905,782; on 06-20 905,782 × 92 days × 0.0385 / 360 = 8,911.89 -> 8,912 of interest, and
    // 41,088 of principal, leaving 864,694.
    assert_eq!(interest(905_782, 92), 8_912);
    let mut corrected = items.clone();
    corrected[11] = repayment_item(&items[11].request_id, &paying[0], "2021-03-20", 100);
    let fixed = loans
        .submit_batch(pb::SubmitBatchRequest { items: corrected })
        .await
        .expect("SubmitBatch corrected")
        .into_inner();
    assert!(fixed.results[11].ok && fixed.results[17].ok, "{fixed:?}");
    assert_eq!(fixed.results[11].principal_outstanding_fen, 905_782);
    assert_eq!(fixed.results[17].principal_outstanding_fen, 864_694);
    let journal_before = journal.len();
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), journal_before + 2, "items 11 and 17, nothing else again");

    // Too many items, or none.
    let too_many: Vec<pb::BatchItem> = (0..10_001)
        .map(|i| repayment_item(&format!("big-{i}"), &paying[3], "2021-06-20", 1))
        .collect();
    expect_invalid(loans.submit_batch(pb::SubmitBatchRequest { items: too_many }).await, "items");
    expect_invalid(loans.submit_batch(pb::SubmitBatchRequest { items: Vec::new() }).await, "items");
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal.len());
    assert_verifies(&app, &t).await;

    // The per-item code is the gRPC code name, as the proto documents (e.g. FAILED_PRECONDITION).
    let codes: Vec<(usize, &str)> =
        results.iter().filter(|r| !r.ok).map(|r| (r.index as usize, r.code.as_str())).collect();
    assert_eq!(
        codes,
        [
            (10, "NOT_FOUND"),
            (11, "INVALID_ARGUMENT"),
            (12, "FAILED_PRECONDITION"),
            // Another bank's loan, as a missing one.
            (13, "NOT_FOUND"),
            (14, "FAILED_PRECONDITION"),
            (15, "INVALID_ARGUMENT"),
            (16, "INVALID_ARGUMENT"),
            (17, "UNAVAILABLE"),
            (20, "ALREADY_EXISTS"),
            (21, "FAILED_PRECONDITION"),
            (22, "ALREADY_EXISTS"),
        ],
        "{answer:?}"
    );
    for r in results.iter().filter(|r| r.ok) {
        assert_eq!(r.code, "", "{r:?}");
    }
    app.finish().await;
}

/// Misuse marked by the finance office: principal bears the misuse penalty (7.7%) from the
/// marked date instead of interest; it is marked once; its penalty left unpaid is overdue.
async fn misuse(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = disbursed(&app, &t, "M1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let mark = |value_date: &str| pb::MarkMisuseRequest {
        request_id: rid("misuse"),
        loan_id: id.clone(),
        value_date: value_date.into(),
        falsely_obtained: false,
    };
    expect_code(
        app.loans(&t.auditor).mark_misuse(mark("2021-03-01")).await,
        Code::PermissionDenied,
    );
    let marked = app
        .loans(&t.finance)
        .mark_misuse(mark("2021-03-01"))
        .await
        .expect("MarkMisuse as finance")
        .into_inner();
    let l = loan(&marked);
    assert_eq!(l.misuse_since, "2021-03-01", "{l:?}");
    assert!(entry(&marked).seq > 0);
    expect_refused(
        app.loans(&t.finance).mark_misuse(mark("2021-03-05")).await,
        "MISUSE_ALREADY_MARKED",
    );
    expect_refused(
        app.loans(&t.bank).mark_misuse(mark("2021-03-05")).await,
        "MISUSE_ALREADY_MARKED",
    );

    // At 03-20: interest 2021-01-25 ..= 2021-02-28 (35 days) at 3.85%: 18,715.28 -> 18,715;
    // penalty 2021-03-01 ..= 2021-03-20 (20 days) at 7.7%: 21,388.89 -> 21,389.
    assert_eq!(days("2021-01-25", "2021-02-28"), 35);
    assert_eq!(interest(5_000_000, 35), 18_715);
    assert_eq!(accrual(&[(5_000_000, 20, MISUSE_RATE)]), 21_389);
    let run = settle(&app, &t.finance, "", "2021-03-20").await;
    assert_eq!(run.loans_settled, 1, "{run:?}");
    assert_eq!(run.interest_fen, 18_715, "{run:?}");
    assert_eq!(run.penalty_fen, 21_389, "{run:?}");
    assert_eq!(run.compound_fen, 0, "{run:?}");
    let l = app.get_loan_as_of(&t.bank, &id, "2021-03-20").await;
    assert_eq!(l.misuse_since, "2021-03-01", "{l:?}");
    assert_eq!((l.interest_due_fen, l.penalty_fen), (18_715, 21_389), "{l:?}");
    let history = app.history(&t.auditor, &id).await;
    let kinds: Vec<&str> = history.iter().map(|h| h.kind.as_str()).collect();
    assert_eq!(kinds, ["loan.created", "loan.disbursed", "loan.misuse_marked", "loan.settled"]);
    assert_eq!(history[2].actor, format!("finance:{LEDGER}"));
    assert_eq!(history[2].value_date, "2021-03-01");
    let json = event_json(&history[3]);
    let point = &json["settlements"][0];
    assert_eq!(segments(&point["interest"]), vec![(35, 175_000_000, "0.0385".to_string())]);
    assert_eq!(segments(&point["penalty"]), vec![(20, 100_000_000, "0.077".to_string())]);
    assert_eq!(
        (point["interest"]["amount_fen"].as_i64(), point["penalty"]["amount_fen"].as_i64()),
        (Some(18_715), Some(21_389))
    );
    assert_eq!(
        sorted(&nonzero(&history[3].postings)),
        postings(&[
            ("loan/B1-M1/interest", 18_715),
            ("bank/B1/interest_income", -18_715),
            ("loan/B1-M1/penalty", 21_389),
            ("bank/B1/penalty_income", -21_389),
        ])
    );

    // Paying both on 03-20 pays the penalty first.
    let paid = app.repay(&t.bank, &id, "2021-03-20", 21_389 + 18_715).await;
    let l = loan(&paid);
    assert_eq!(l.penalty_paid_fen, 21_389, "{l:?}");
    assert_eq!(l.interest_paid_fen, 18_715, "{l:?}");
    assert_eq!((l.penalty_fen, l.interest_due_fen, l.principal_repaid_fen), (0, 0, 0), "{l:?}");
    // From then on principal bears only the misuse penalty: 03-21 ..= 06-20 (92 days) at 7.7%:
    // 98,388.89 -> 98,389, no interest.
    let run = settle(&app, &t.finance, "", "2021-06-20").await;
    assert_eq!((run.interest_fen, run.penalty_fen), (0, 98_389), "{run:?}");
    assert_eq!(accrual(&[(5_000_000, 92, MISUSE_RATE)]), 98_389);

    // A second loan, misused the same way, whose interest of 03-20 is left unpaid: it
    // compounds at the contract rate within the term (DESIGN.md), not at the misuse rate:
    // 18,715 fen for 03-21 ..= 06-20 (92 days) at 3.85%: 184.14 -> 184 (at 7.7%, 368).
    let m2 = disbursed(&app, &t, "M2", "H-M2", 5_000_000, "2021-01-25").await;
    let mut marked = mark("2021-03-01");
    marked.loan_id = m2.clone();
    app.loans(&t.finance).mark_misuse(marked).await.expect("MarkMisuse of M2");
    let run = settle(&app, &t.finance, "", "2021-03-20").await;
    assert_eq!((run.loans_settled, run.interest_fen), (1, 18_715), "{run:?}");
    assert_eq!(interest(18_715, 92), 184);
    let run = settle(&app, &t.finance, "", "2021-06-20").await;
    assert_eq!((run.loans_settled, run.compound_fen), (1, 184), "{run:?}");

    // M1's penalty of 06-20, left unpaid, is overdue from 06-21 (DESIGN.md: unpaid amounts
    // are overdue from the day after their due date), though M1 owes no interest and its
    // principal is not yet due; more than 90 days on, it may be written off.
    let status = async |as_of: &str| {
        let l = app.get_loan_as_of(&t.bank, &id, as_of).await;
        (pb::LoanStatus::try_from(l.status).expect("a status"), l.days_overdue)
    };
    assert_eq!(status("2021-06-20").await, (pb::LoanStatus::Active, 0));
    assert_eq!(status("2021-06-21").await, (pb::LoanStatus::Overdue, 1));
    assert_eq!(status("2021-09-18").await, (pb::LoanStatus::Overdue, 90));
    assert_eq!(status("2021-09-19").await, (pb::LoanStatus::Overdue90, 91));
    let written_off = app
        .loans(&t.bank)
        .write_off_loan(pb::WriteOffLoanRequest {
            request_id: rid("write-off"),
            loan_id: id.clone(),
            value_date: "2021-09-19".into(),
        })
        .await
        .expect("WriteOffLoan of a loan whose penalty is 91 days overdue")
        .into_inner();
    assert_eq!(loan(&written_off).status, pb::LoanStatus::WrittenOff as i32);
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// Writing off an overdue loan clears every bucket to the bank's loan-loss account; a loan with
/// nothing overdue is not written off.
async fn write_off(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = disbursed(&app, &t, "W1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let healthy = disbursed(&app, &t, "W2", "H-W2", 1_000_000, "2021-02-01").await;
    let mut loans = app.loans(&t.bank);
    let req = |loan_id: &str, value_date: &str| pb::WriteOffLoanRequest {
        request_id: rid("write-off"),
        loan_id: loan_id.into(),
        value_date: value_date.into(),
    };

    expect_refused(loans.write_off_loan(req(&healthy, "2021-03-01")).await, "LOAN_NOT_OVERDUE");
    // W1's interest of 2021-03-20 is never paid: overdue from 03-21, 90 days on 06-18. Only a
    // loan overdue more than 90 days (claimable against the risk fund) is written off.
    for (date, days) in [("2021-03-21", "1"), ("2021-06-18", "90")] {
        let early = expect_refused(loans.write_off_loan(req(&id, date)).await, "LOAN_NOT_OVERDUE");
        assert_eq!(metadata(&early, "days_overdue").as_deref(), Some(days), "{early:?}");
    }
    expect_code(
        app.loans(&t.finance).write_off_loan(req(&id, "2022-02-24")).await,
        Code::PermissionDenied,
    );

    // Nothing paid: on 2022-02-24 the loan owes (see overdue_penalty_and_recovery) penalty
    // 24,063, compound 2,966 + 939 = 3,905, interest 195,173 and principal 5,000,000:
    // 5,223,141 in all.
    let quote = app.payoff_quote(&t.bank, &id, "2022-02-24").await;
    assert_eq!(quote.total_fen, 5_223_141, "{quote:?}");
    let written =
        loans.write_off_loan(req(&id, "2022-02-24")).await.expect("WriteOffLoan").into_inner();
    let l = loan(&written);
    assert_eq!(status_of(l), pb::LoanStatus::WrittenOff, "{l:?}");
    assert_eq!(l.written_off_fen, quote.total_fen, "{l:?}");
    assert_eq!(l.principal_outstanding_fen, 0, "{l:?}");
    assert_eq!((l.interest_due_fen, l.penalty_fen, l.compound_fen), (0, 0, 0), "{l:?}");
    assert_eq!(l.interest_settled_fen, 195_173, "{l:?}");
    let history = app.history(&t.auditor, &id).await;
    let last = history.last().unwrap();
    assert_eq!(last.kind, "loan.written_off");
    assert_eq!(last.seq, entry(&written).seq);
    // The five settlement points and the 30 days' charges are posted, then every bucket is
    // cleared against the loss account.
    assert_eq!(
        sorted(&nonzero(&last.postings)),
        postings(&[
            ("bank/B1/loan_loss", 5_223_141),
            ("loan/B1-W1/principal", -5_000_000),
            ("bank/B1/interest_income", -195_173),
            ("bank/B1/compound_income", -3_905),
            ("bank/B1/penalty_income", -24_063),
        ])
    );
    let json = event_json(last);
    assert_eq!(json["settlements"].as_array().map(Vec::len), Some(5), "{json}");
    assert_eq!(json["allocation"]["principal_fen"], 5_000_000);
    assert_eq!(json["allocation"]["penalty_fen"], 24_063);
    let b = balances(&app.journal(&t.auditor, LEDGER).await);
    for bucket in ["principal", "interest", "penalty", "compound"] {
        assert_eq!(b.get(&format!("loan/B1-W1/{bucket}")).copied().unwrap_or(0), 0, "{bucket}");
    }

    // A written-off loan takes nothing more.
    expect_refused(repayment(&app, &t.bank, &id, "2022-03-01", 100).await, "LOAN_NOT_REPAYABLE");
    let quote = expect_refused(
        loans
            .get_payoff_quote(pb::GetPayoffQuoteRequest {
                loan_id: id.clone(),
                as_of: "2022-03-01".into(),
                through_seq: 0,
            })
            .await,
        "LOAN_NOT_REPAYABLE",
    );
    assert_eq!(metadata(&quote, "status").as_deref(), Some("written_off"), "{quote:?}");
    expect_refused(loans.write_off_loan(req(&id, "2022-03-01")).await, "LOAN_NOT_REPAYABLE");
    let listed = app
        .loans(&t.auditor)
        .list_loans(pb::ListLoansRequest {
            ledger_id: LEDGER.into(),
            status: pb::LoanStatus::WrittenOff as i32,
            ..Default::default()
        })
        .await
        .expect("ListLoans written off")
        .into_inner();
    assert_eq!(listed.loans.iter().map(|l| l.loan_id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    // A renewal of it is not paid out while what was written off is not all recovered: it would
    // roll the bad debt over (since 2026-12-07 the write-off let it be paid out). Recovered in
    // full, the household owes nothing of it, and the renewal is paid out.
    app.create_loan(&t.bank, renewal_request("W3", &id)).await;
    let payout = |value_date: &str| pb::DisburseRequest {
        request_id: rid("w3"),
        loan_id: loan_id("W3"),
        value_date: value_date.into(),
        amount_fen: 0,
    };
    let rolled = expect_refused(loans.disburse(payout("2022-03-01")).await, "LOAN_NOT_DISBURSABLE");
    assert!(rolled.message().contains("was written off with 52231.41 not recovered"), "{rolled:?}");
    assert_eq!(metadata(&rolled, "written_off_unrecovered_fen").as_deref(), Some("5223141"));
    loans
        .record_recovery(pb::RecordRecoveryRequest {
            request_id: rid("recover"),
            loan_id: id.clone(),
            value_date: "2022-03-02".into(),
            amount_fen: 5_223_141,
        })
        .await
        .expect("RecordRecovery");
    let out = loans.disburse(payout("2022-03-02")).await.expect("paid out").into_inner();
    assert_eq!(status_of(loan(&out)), pb::LoanStatus::Active);
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// GetLoan as of past dates, rebuilt from the journal, agrees with what each write answered on
/// its date and with the settlements posted.
async fn loan_as_of_dates(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    // Contracted 2021-01-25, paid out 2021-02-01.
    let id = contract(&app, &t, "A1", HOUSEHOLD, 5_000_000).await;
    app.disburse(&t.bank, &id, "2021-02-01").await;

    // The day before its contract the loan did not exist, and is said so.
    let before = expect_code(
        app.loans(&t.bank)
            .get_loan(pb::GetLoanRequest {
                loan_id: id.clone(),
                as_of: "2021-01-24".into(),
                through_seq: 0,
            })
            .await,
        Code::NotFound,
    );
    assert_eq!(before.message(), format!("loan {id} was not contracted by 2021-01-24"));
    expect_invalid(
        app.loans(&t.bank)
            .get_loan(pb::GetLoanRequest {
                loan_id: id.clone(),
                as_of: "2021-13-01".into(),
                through_seq: 0,
            })
            .await,
        "as_of",
    );
    for d in ["2021-01-25", "2021-01-31"] {
        let l = app.get_loan_as_of(&t.bank, &id, d).await;
        assert_eq!(status_of(&l), pb::LoanStatus::Contracted, "{d}: {l:?}");
        assert_eq!(
            (l.disbursed_fen, l.principal_outstanding_fen, l.accrued_interest_fen),
            (0, 0, 0)
        );
        assert_eq!(l.as_of, d);
    }
    // Mid-quarter: 02-01 ..= 02-14 (14 days): 7,486.11 -> 7,486.
    let l = app.get_loan_as_of(&t.bank, &id, "2021-02-15").await;
    assert_eq!(status_of(&l), pb::LoanStatus::Active, "{l:?}");
    assert_eq!(l.principal_outstanding_fen, 5_000_000, "{l:?}");
    assert_eq!(l.accrued_interest_fen, interest(5_000_000, 14), "{l:?}");
    assert_eq!(l.accrued_interest_fen, 7_486, "{l:?}");
    assert_eq!(l.next_settlement_date, "2021-03-20", "{l:?}");

    // 03-20: 10,000.00 yuan paid: interest 02-01 ..= 03-20 (48 days) 25,666.67 -> 25,667, the
    // rest 974,333 to principal, leaving 4,025,667.
    assert_eq!(interest(5_000_000, days("2021-02-01", "2021-03-20")), 25_667);
    let r1 = app.repay(&t.bank, &id, "2021-03-20", 1_000_000).await;
    assert_eq!(loan(&r1).principal_outstanding_fen, 4_025_667);
    assert_eq!(&app.get_loan_as_of(&t.bank, &id, "2021-03-20").await, loan(&r1));

    // 06-19, before the quarter's settlement: 03-21 ..= 06-18 (90 days) on 4,025,667:
    // 38,747.05 -> 38,747.
    let l = app.get_loan_as_of(&t.bank, &id, "2021-06-19").await;
    assert_eq!(l.accrued_interest_fen, interest(4_025_667, 90), "{l:?}");
    assert_eq!(l.accrued_interest_fen, 38_747, "{l:?}");
    assert_eq!(l.interest_due_fen, 0, "{l:?}");
    assert_eq!(l.next_settlement_date, "2021-06-20", "{l:?}");
    // 06-21, before a run has recorded the 06-20 point: its interest is shown due, and the next
    // point is the one after it, as once the run has recorded it (below).
    let unrecorded = app.get_loan_as_of(&t.bank, &id, "2021-06-21").await;
    assert_eq!(unrecorded.interest_due_fen, 39_608, "{unrecorded:?}");
    assert_eq!(unrecorded.next_settlement_date, "2021-09-20", "{unrecorded:?}");

    // The 06-20 run: 4,025,667 × 92 × 0.0385 / 360 = 39,608.09 -> 39,608.
    let run = settle(&app, &t.finance, "", "2021-06-20").await;
    assert_eq!(run.interest_fen, 39_608, "{run:?}");
    assert_eq!(interest(4_025_667, 92), 39_608);
    let l = app.get_loan_as_of(&t.bank, &id, "2021-06-20").await;
    assert_eq!(l.interest_due_fen, 39_608, "{l:?}");
    assert_eq!(l.interest_settled_fen, 25_667 + 39_608, "{l:?}");
    assert_eq!((l.accrued_interest_fen, l.days_overdue), (0, 0), "{l:?}");
    assert_eq!(l.next_settlement_date, "2021-09-20", "{l:?}");
    let recorded = app.get_loan_as_of(&t.bank, &id, "2021-06-21").await;
    assert_eq!(
        (recorded.interest_due_fen, &recorded.next_settlement_date, recorded.status),
        (unrecorded.interest_due_fen, &unrecorded.next_settlement_date, unrecorded.status)
    );
    let history = app.history(&t.auditor, &id).await;
    let posted = history.last().unwrap();
    assert_eq!((posted.kind.as_str(), posted.value_date.as_str()), ("loan.settled", "2021-06-20"));
    assert_eq!(l.last_seq, posted.seq);
    assert_eq!(event_json(posted)["settlements"][0]["interest"]["amount_fen"], l.interest_due_fen);

    // 07-09, unpaid for 19 days (06-21 ..= 07-09): overdue; compound 06-21 ..= 07-08 (18 days)
    // 39,608 × 18 × 0.0385 / 360 = 76.25 -> 76; accrued 18 days on 4,025,667: 7,749.41 -> 7,749.
    let l = app.get_loan_as_of(&t.bank, &id, "2021-07-09").await;
    assert_eq!(status_of(&l), pb::LoanStatus::Overdue, "{l:?}");
    assert_eq!(l.days_overdue, 19, "{l:?}");
    assert_eq!((l.compound_fen, l.accrued_interest_fen), (76, 7_749), "{l:?}");
    assert_eq!((interest(39_608, 18), interest(4_025_667, 18)), (76, 7_749));

    // 07-10: 1,000.00 yuan: compound 19 days (80.48 -> 80), the overdue 39,608, then 60,312 of
    // principal, leaving 3,965,355.
    assert_eq!(interest(39_608, 19), 80);
    let r2 = app.repay(&t.bank, &id, "2021-07-10", 100_000).await;
    let l2 = loan(&r2);
    assert_eq!(l2.compound_paid_fen, 80, "{l2:?}");
    assert_eq!(l2.principal_outstanding_fen, 3_965_355, "{l2:?}");
    assert_eq!(status_of(l2), pb::LoanStatus::Active, "{l2:?}");
    assert_eq!(&app.get_loan_as_of(&t.bank, &id, "2021-07-10").await, l2);

    // The 09-20 run: 4,025,667 × 19 (06-21 ..= 07-09) + 3,965,355 × 73 (07-10 ..= 09-20) =
    // 76,487,673 + 289,470,915 = 365,958,588 fen-days; × 0.0385 / 360 = 39,137.24 -> 39,137.
    let expected = accrual(&[(4_025_667, 19, CONTRACT_RATE), (3_965_355, 73, CONTRACT_RATE)]);
    assert_eq!(expected, 39_137);
    let run = settle(&app, &t.finance, "", "2021-09-20").await;
    assert_eq!((run.interest_fen, run.compound_fen), (39_137, 0), "{run:?}");
    let l = app.get_loan_as_of(&t.bank, &id, "2021-09-20").await;
    assert_eq!(l.interest_due_fen, 39_137, "{l:?}");
    let history = app.history(&t.auditor, &id).await;
    let working = &event_json(history.last().unwrap())["settlements"][0]["interest"];
    assert_eq!(
        segments(working),
        vec![(19, 76_487_673, "0.0385".to_string()), (73, 289_470_915, "0.0385".to_string())]
    );

    // Paid off on 10-15: overdue 39,137; compound 09-21 ..= 10-14 (24 days) 100.45 -> 100;
    // interest 24 days on 3,965,355: 10,177.74 -> 10,178; 4,014,770 in all.
    let quote = app.payoff_quote(&t.bank, &id, "2021-10-15").await;
    assert_eq!(
        (quote.overdue_interest_fen, quote.compound_fen, quote.accrued_interest_fen),
        (39_137, interest(39_137, 24), interest(3_965_355, 24)),
        "{quote:?}"
    );
    assert_eq!(quote.total_fen, 4_014_770, "{quote:?}");
    let r3 = app.repay(&t.bank, &id, "2021-10-15", quote.total_fen).await;
    assert_eq!(status_of(loan(&r3)), pb::LoanStatus::Settled);
    assert_eq!(&app.get_loan_as_of(&t.bank, &id, "2021-10-15").await, loan(&r3));
    let l = app.get_loan_as_of(&t.bank, &id, "2021-12-31").await;
    assert_eq!(status_of(&l), pb::LoanStatus::Settled, "{l:?}");
    assert_eq!(l.principal_outstanding_fen, 0, "{l:?}");
    assert_eq!(l.interest_paid_fen, 25_667 + 39_608 + 39_137 + 10_178, "{l:?}");
    assert_eq!(l.interest_settled_fen, l.interest_paid_fen, "{l:?}");
    assert_eq!(l.compound_paid_fen, 80 + 100, "{l:?}");
    // Earlier dates are still what they were.
    let back = app.get_loan_as_of(&t.bank, &id, "2021-06-20").await;
    assert_eq!(back.interest_due_fen, 39_608, "{back:?}");
    assert_eq!(back.principal_outstanding_fen, 4_025_667, "{back:?}");
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// The instalment loan of the scenarios below: the standard loan as 等额本息, 12 monthly
/// instalments due on the 25th (对日 the disbursement of 2021-01-25), at 3.85%.
fn instalment_loan(contract_number: &str, household: &str) -> pb::CreateLoanRequest {
    pb::CreateLoanRequest {
        repayment_method: pb::RepaymentMethod::EqualInstalment as i32,
        settlement_frequency: pb::SettlementFrequency::Monthly as i32,
        ..standard_loan(contract_number, household)
    }
}

/// PreviewSchedule of [`instalment_loan`]: level payment 425,407 (P·r·(1+r)^n / ((1+r)^n − 1)
/// with r = 0.0385 / 12, n = 12: 425,406.93); first interest 5,000,000 × 0.0385 / 12 =
/// 16,041.67 → 16,042, first principal 409,365.
async fn instalment_preview(app: &TestApp, token: &str) -> Vec<pb::Instalment> {
    let schedule = app
        .loans(token)
        .preview_schedule(pb::PreviewScheduleRequest {
            principal_fen: STANDARD_PRINCIPAL_FEN,
            annual_rate: STANDARD_RATE.into(),
            disbursement_date: CONTRACT_DATE.into(),
            term_months: 12,
            maturity_date: String::new(),
            repayment_method: pb::RepaymentMethod::EqualInstalment as i32,
            settlement_frequency: pb::SettlementFrequency::Monthly as i32,
            rounding: String::new(),
        })
        .await
        .expect("PreviewSchedule")
        .into_inner();
    let first = &schedule.instalments[0];
    assert_eq!(
        (first.due_date.as_str(), first.interest_due_fen, first.principal_due_fen),
        ("2021-02-25", 16_042, 409_365)
    );
    assert_eq!(first.total_due_fen, 425_407);
    assert_eq!(schedule.instalments.len(), 12);
    schedule.instalments
}

/// An 等额本息 loan settled by SettleLoans runs on its due dates and paid by RecordRepayment on
/// the same days: every settled interest, principal part and remaining principal is
/// PreviewSchedule's; principal falling due posts nothing; the loan ends settled, each
/// instalment's interest subsidised in full.
async fn equal_instalments_on_due_dates(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let schedule = instalment_preview(&app, &t.bank).await;
    app.create_loan(&t.bank, instalment_loan("I1", HOUSEHOLD)).await;
    let id = loan_id("I1");
    let disbursed = app.disburse(&t.bank, &id, "2021-01-25").await;
    assert_eq!(loan(&disbursed).next_settlement_date, "2021-02-25");
    assert_eq!(loan(&disbursed).current_maturity_date, "2022-01-25");

    // A settlement run on the 20th settles nothing of an instalment loan.
    let run = settle(&app, &t.finance, "", "2021-02-20").await;
    assert_eq!((run.settlement_points, run.interest_fen), (0, 0), "{run:?}");

    for i in &schedule {
        let run = settle(&app, &t.finance, "", &i.due_date).await;
        assert_eq!((run.settlement_points, run.interest_fen), (1, i.interest_due_fen), "{run:?}");
        // Principal falling due is not a money movement: only the interest is posted.
        let history = app.history(&t.auditor, &id).await;
        let posted = history.last().unwrap();
        assert_eq!(
            (posted.kind.as_str(), posted.value_date.as_str()),
            ("loan.settled", i.due_date.as_str())
        );
        assert_eq!(
            sorted(&posted.postings),
            postings(&[
                (&format!("loan/{id}/interest"), i.interest_due_fen),
                ("bank/B1/interest_income", -i.interest_due_fen),
            ])
        );
        let point = &event_json(posted)["settlements"][0];
        assert_eq!(point["principal"]["instalment"], i.number, "{point}");
        assert_eq!(point["principal"]["amount_fen"], i.principal_due_fen, "{point}");
        assert_eq!(point["interest"]["periodic"]["periods_per_year"], 12, "{point}");

        let l = app.get_loan_as_of(&t.bank, &id, &i.due_date).await;
        assert_eq!((l.interest_due_fen, l.days_overdue), (i.interest_due_fen, 0), "{l:?}");
        assert_eq!(status_of(&l), pb::LoanStatus::Active, "{l:?}");
        let quote = app.payoff_quote(&t.bank, &id, &i.due_date).await;
        assert_eq!(quote.total_fen, i.total_due_fen + i.remaining_principal_fen, "{quote:?}");

        let r = app.repay(&t.bank, &id, &i.due_date, i.total_due_fen).await;
        let l = loan(&r);
        assert_eq!(l.principal_outstanding_fen, i.remaining_principal_fen, "{l:?}");
        assert_eq!((l.interest_due_fen, l.penalty_fen, l.compound_fen), (0, 0, 0), "{l:?}");
        if i.remaining_principal_fen > 0 {
            assert_eq!(status_of(l), pb::LoanStatus::Active, "{l:?}");
        }
    }
    let l = app.get_loan(&t.bank, &id).await;
    assert_eq!(status_of(&l), pb::LoanStatus::Settled, "{l:?}");
    let interest: i64 = schedule.iter().map(|i| i.interest_due_fen).sum();
    assert_eq!((l.interest_paid_fen, l.interest_settled_fen), (interest, interest), "{l:?}");
    assert_eq!(l.principal_repaid_fen, STANDARD_PRINCIPAL_FEN, "{l:?}");
    assert_eq!((l.penalty_paid_fen, l.compound_paid_fen), (0, 0), "{l:?}");
    let b = balances(&app.journal(&t.auditor, LEDGER).await);
    for bucket in ["principal", "interest", "penalty", "compound"] {
        assert_eq!(b.get(&format!("loan/{id}/{bucket}")).copied().unwrap_or(0), 0, "{b:?}");
    }
    assert_eq!(b.get("bank/B1/interest_income").copied(), Some(-interest), "{b:?}");
    // Its subsidy register: each instalment's period and interest as scheduled, paid on its
    // due date, subsidised in full (the periodic basis is a fraction of what was paid).
    let register = app.loan_subsidy(&t.auditor, &id, "2022-01-25").await;
    assert_eq!(register.lines.len(), schedule.len(), "{register:?}");
    for (line, i) in register.lines.iter().zip(&schedule) {
        let what = format!("{line:?}");
        assert_eq!(line.standing(), pb::SubsidyStanding::OnTime, "{what}");
        assert_eq!((&line.period_start, &line.period_end), (&i.period_start, &i.period_end));
        assert_eq!(
            (line.due_date.as_str(), line.interest_settled_fen),
            (i.due_date.as_str(), i.interest_due_fen)
        );
        let w = line.working.as_ref().expect("working");
        assert_eq!(w.subsidy_fen, i.interest_due_fen, "{what}");
    }
    assert_eq!((register.interest_paid_fen, register.subsidy_fen), (interest, interest));
    // The same run again posts nothing.
    let again = settle(&app, &t.finance, "", "2022-01-25").await;
    assert_eq!(again.settlement_points, 0, "{again:?}");
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// The first instalment of an 等额本息 loan paid 10 days late: its principal part bears penalty
/// and its interest compounds from the due date; the next instalment is the schedule's; an
/// instalment loan is not extended; paid off early between due dates.
async fn instalment_paid_late(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let schedule = instalment_preview(&app, &t.bank).await;
    app.create_loan(&t.bank, instalment_loan("I2", HOUSEHOLD)).await;
    let id = loan_id("I2");
    app.disburse(&t.bank, &id, "2021-01-25").await;
    let run = settle(&app, &t.finance, "", "2021-02-25").await;
    assert_eq!(run.interest_fen, 16_042, "{run:?}");
    let l = app.get_loan_as_of(&t.bank, &id, "2021-02-26").await;
    assert_eq!((status_of(&l), l.days_overdue), (pb::LoanStatus::Overdue, 1), "{l:?}");

    // 2021-03-07, unpaid since 02-25 (02-25 ..= 03-06, 10 days):
    //   penalty 409,365 × 10 × 0.05775 / 360 = 656.69 -> 657 (the principal part);
    //   compound 16,042 × 10 × 0.0385 / 360 = 17.16 -> 17;
    //   accrued, on the principal not yet due, at the periodic rate for 10 of the period's
    //   28 days (02-25 ..= 03-24): 4,590,635 × 10 × 0.0385 / (12 × 28) = 5,260.10 -> 5,260.
    assert_eq!(accrual(&[(409_365, 10, PENALTY_RATE)]), 657);
    assert_eq!(interest(16_042, 10), 17);
    let l = app.get_loan_as_of(&t.bank, &id, "2021-03-07").await;
    assert_eq!((status_of(&l), l.days_overdue), (pb::LoanStatus::Overdue, 10), "{l:?}");
    assert_eq!((l.penalty_fen, l.compound_fen, l.interest_due_fen), (657, 17, 16_042), "{l:?}");
    let quote = app.payoff_quote(&t.bank, &id, "2021-03-07").await;
    assert_eq!(
        (quote.accrued_interest_fen, quote.principal_fen, quote.total_fen),
        (5_260, 5_000_000, 657 + 17 + 16_042 + 5_260 + 5_000_000),
        "{quote:?}"
    );

    // The instalment and its charges: 425,407 + 657 + 17 = 426,081.
    let r = app.repay(&t.bank, &id, "2021-03-07", 426_081).await;
    let l = loan(&r);
    assert_eq!((status_of(l), l.days_overdue), (pb::LoanStatus::Active, 0), "{l:?}");
    assert_eq!((l.penalty_paid_fen, l.compound_paid_fen), (657, 17), "{l:?}");
    assert_eq!(l.principal_outstanding_fen, schedule[0].remaining_principal_fen, "{l:?}");
    let history = app.history(&t.auditor, &id).await;
    let repaid = event_json(history.last().unwrap());
    let allocation = &repaid["repayment"]["allocation"];
    assert_eq!(allocation["principal_fen"], 409_365, "{allocation}");
    assert_eq!(allocation["due_principal_fen"], 409_365, "{allocation}");
    assert_eq!(allocation["overdue_interest_fen"], 16_042, "{allocation}");
    assert_eq!(
        segments(&repaid["repayment"]["charges"]["penalty"]),
        vec![(10, 4_093_650, "0.05775".to_string())]
    );
    assert_eq!(
        sorted(&history.last().unwrap().postings),
        postings(&[
            ("bank/B1/cash", 426_081),
            ("bank/B1/compound_income", -17),
            ("bank/B1/penalty_income", -657),
            (&format!("loan/{id}/interest"), -16_042),
            (&format!("loan/{id}/principal"), -409_365),
        ])
    );

    // An instalment loan disbursed in part is scheduled for what was paid out, once: a second
    // disbursement is refused. Paid out on 03-01, after its contract (01-25), it keeps the
    // contract's maturity (2022-01-25) and due dates: 11 instalments from 03-25, the first a
    // broken period of 24 of its 28 days (until 2026-12-06 it ran twelve months from 03-01, to
    // 2022-03-01, an extension nobody recorded).
    app.register_household(&t.finance, "H-I3", "19800517").await;
    app.create_loan(
        &t.bank,
        pb::CreateLoanRequest { principal_fen: 1_200_000, ..instalment_loan("I3", "H-I3") },
    )
    .await;
    let part = app
        .loans(&t.bank)
        .disburse(pb::DisburseRequest {
            request_id: rid("disburse"),
            loan_id: loan_id("I3"),
            value_date: "2021-03-01".into(),
            amount_fen: 600_000,
        })
        .await
        .expect("Disburse part");
    assert_eq!(loan(part.get_ref()).next_settlement_date, "2021-03-25");
    assert_eq!(loan(part.get_ref()).current_maturity_date, "2022-01-25");
    let refused = expect_refused(
        app.loans(&t.bank)
            .disburse(pb::DisburseRequest {
                request_id: rid("disburse"),
                loan_id: loan_id("I3"),
                value_date: "2021-03-10".into(),
                amount_fen: 0,
            })
            .await,
        "LOAN_NOT_DISBURSABLE",
    );
    assert_eq!(metadata(&refused, "undisbursed_fen").as_deref(), Some("600000"), "{refused:?}");

    // An instalment loan keeps its schedule: no extension.
    expect_refused(
        app.loans(&t.bank)
            .extend_loan(pb::ExtendLoanRequest {
                request_id: rid("extend"),
                loan_id: id.clone(),
                value_date: "2021-03-10".into(),
                new_maturity_date: "2022-07-25".into(),
            })
            .await,
        "EXTENSION_NOT_ALLOWED",
    );

    // The second instalment is the schedule's, paid on time. The run settles I3's first too:
    // 600,000 × 24 × 0.0385 / (12 × 28) = 1,650.00 of interest, and of principal the level
    // payment over 11 instalments (55,601.06 -> 55,601) less a whole period's interest
    // (600,000 × 0.0385 / 12 = 1,925): 53,676.
    let run = settle(&app, &t.finance, "", "2021-03-25").await;
    let broken = 1_650;
    assert_eq!(
        (run.interest_fen, run.penalty_fen),
        (schedule[1].interest_due_fen + broken, 0),
        "{run:?}"
    );
    let as_of =
        pb::GetLoanRequest { loan_id: loan_id("I3"), as_of: "2021-03-25".into(), through_seq: 0 };
    let i3 = app.loans(&t.bank).get_loan(as_of).await.expect("GetLoan").into_inner();
    assert_eq!((i3.interest_due_fen, i3.current_principal_fen), (broken, 53_676), "{i3:?}");
    assert_eq!(i3.next_settlement_date, "2021-04-25", "{i3:?}");
    let r = app.repay(&t.bank, &id, "2021-03-25", schedule[1].total_due_fen).await;
    assert_eq!(loan(&r).principal_outstanding_fen, schedule[1].remaining_principal_fen);

    // Paid off on 04-10: 16 of the 31 days of 03-25 ..= 04-24 on 4,179,956:
    // 4,179,956 × 16 × 0.0385 / (12 × 31) = 6,921.65 -> 6,922.
    let quote = app.payoff_quote(&t.bank, &id, "2021-04-10").await;
    assert_eq!((quote.accrued_interest_fen, quote.principal_fen), (6_922, 4_179_956), "{quote:?}");
    assert_eq!(quote.total_fen, 4_179_956 + 6_922, "{quote:?}");
    let r = app.pay_off(&t.bank, &id, "2021-04-10").await;
    assert_eq!(status_of(loan(&r)), pb::LoanStatus::Settled);
    assert_eq!(loan(&r).interest_paid_fen, 16_042 + schedule[1].interest_due_fen + 6_922);
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A settlement run on a server just restarted, whose writer holds no loan: it reads each loan
/// itself (the run sends only the ids) and settles it at its committed state, the repayment
/// made before the restart included.
async fn settlement_after_restart(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let repaid = disbursed(&app, &t, "RST1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let untouched = disbursed(&app, &t, "RST2", "H002", 5_000_000, "2021-01-25").await;
    app.repay(&t.bank, &repaid, "2021-02-01", 1_000_000).await;
    app.restart().await;

    let run = settle(&app, &t.finance, "", "2021-03-20").await;
    let as_repaid = accrual(&[(5_000_000, 7, CONTRACT_RATE), (4_000_000, 48, CONTRACT_RATE)]);
    assert_eq!(as_repaid, 24_276);
    assert_eq!((run.loans_examined, run.loans_settled, run.failed), (2, 2, 0), "{run:?}");
    assert_eq!(run.interest_fen, as_repaid + interest(5_000_000, 55), "{run:?}");
    for (id, due) in [(&repaid, as_repaid), (&untouched, interest(5_000_000, 55))] {
        let l = app.get_loan_as_of(&t.bank, id, "2021-03-20").await;
        assert_eq!(l.interest_settled_fen, due, "{l:?}");
    }
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A loan paid off after a settlement run read its page, and before its turn, owes no
/// settlement: the run counts it in `loans_no_longer_live`, not as a failure. The interleaving
/// is arranged through the writer's queue: a large batch keeps the writer busy, the payoff
/// queues behind it, and the run reads its page meanwhile (the payoff not yet committed) and
/// queues its settlements behind the payoff. Should the machine not keep that order (the payoff
/// committed before the run read its page, or queued after the run's settlements), the attempt
/// is made again on two new loans; in every attempt nothing fails.
async fn loan_paid_off_during_a_run(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let mut seen = false;
    for attempt in 0..5 {
        let paid = disbursed(
            &app,
            &t,
            &format!("P{attempt}"),
            &format!("H-P{attempt}"),
            1_000_000,
            "2021-01-25",
        )
        .await;
        let other = disbursed(
            &app,
            &t,
            &format!("Q{attempt}"),
            &format!("H-Q{attempt}"),
            1_000_000,
            "2021-01-25",
        )
        .await;
        let total = app.payoff_quote(&t.bank, &paid, "2021-03-20").await.total_fen;
        let busy: Vec<pb::BatchItem> =
            (0..10_000).map(|_| repayment_item(&rid("busy"), &other, "2021-02-01", 1)).collect();
        let mut loans = app.loans(&t.bank);
        let batch = tokio::spawn(async move {
            loans.submit_batch(pb::SubmitBatchRequest { items: busy }).await.map(|r| r.into_inner())
        });
        // The batch is with the writer once its first part has landed; its other parts wait
        // in the writer's queue, ahead of anything sent from now on.
        while app.get_loan(&t.bank, &other).await.principal_repaid_fen == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        // The payoff is sent first; the run a moment later.
        let payoff_id = rid("payoff");
        let (payoff, run) =
            tokio::join!(app.repay_as(&t.bank, &payoff_id, &paid, "2021-03-20", total), async {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                settle(&app, &t.finance, "", "2021-03-20").await
            });
        let batch = batch.await.expect("the batch's task").expect("SubmitBatch");
        assert_eq!((batch.posted, batch.failed), (10_000, 0));
        // Whatever the order, no loan failed.
        assert_eq!(run.failed, 0, "{run:?}");
        assert!(run.failures.is_empty(), "{run:?}");
        if run.loans_no_longer_live == 1 {
            payoff.expect("the payoff");
            assert_eq!(status_of(&app.get_loan(&t.bank, &paid).await), pb::LoanStatus::Settled);
            // The paid-off loan was examined and skipped; the others were settled. Earlier
            // attempts' loans were settled or paid off by the runs before.
            assert!(run.loans_examined >= 2, "{run:?}");
            assert_eq!(run.loans_examined, run.loans_settled + 1, "{run:?}");
            let history = app.history(&t.auditor, &paid).await;
            let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
            assert!(!kinds.contains(&"loan.settled"), "{kinds:?}");
            seen = true;
            break;
        }
        // Not interleaved: the payoff (quoted before the run) may then fall short of a day's
        // interest or exceed what is owed; either way the next attempt starts afresh.
        assert_eq!(run.loans_no_longer_live, 0, "{run:?}");
    }
    assert!(seen, "the payoff never fell between the run's page and its turn in five attempts");
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// A settlement run's request id names one run: retried with another date or another bank it is
/// refused (ALREADY_EXISTS) and settles nothing; retried as it was, it answers as the first
/// time. Its loans' own request ids cannot be taken by the caller's other requests, nor the
/// run's by theirs.
async fn a_settlement_run_is_one_request(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = disbursed(&app, &t, "Q1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let mut loans = app.loans(&t.bank);
    let run = loans
        .settle_loans(settle_request("q1", BANK, "2021-03-20"))
        .await
        .expect("the bank's run")
        .into_inner();
    assert_eq!((run.loans_settled, run.interest_fen), (1, 29_410), "{run:?}");
    let journal = app.journal(&t.auditor, LEDGER).await.len();

    // Another date under the same id: refused, nothing settled.
    let status = expect_code(
        loans.settle_loans(settle_request("q1", BANK, "2021-06-20")).await,
        Code::AlreadyExists,
    );
    let reason = status.get_details_error_info().map(|i| i.reason);
    assert_eq!(reason.as_deref(), Some("REQUEST_ID_REUSED"), "{status:?}");
    // A run over one bank names a bank of the ledger: an unknown bank is NOT_FOUND, another
    // ledger's bank INVALID_ARGUMENT naming bank_id.
    let mut finance = app.loans(&t.finance);
    expect_code(
        finance.settle_loans(settle_request(&rid("f"), "NOSUCH", "2021-03-20")).await,
        Code::NotFound,
    );
    app.create_ledger(&t.operator, "450122", "another county").await;
    let elsewhere = pb::RegisterBankRequest {
        request_id: rid("bank"),
        ledger_id: "450122".into(),
        bank_id: "B9".into(),
        name: "another county's bank".into(),
    };
    app.registry(&t.operator).register_bank(elsewhere).await.expect("RegisterBank");
    expect_invalid(
        finance.settle_loans(settle_request(&rid("f"), "B9", "2021-03-20")).await,
        "bank_id",
    );
    // The finance office's run of the whole ledger (nothing left to settle), then of one bank
    // under the same id: refused.
    let whole = finance
        .settle_loans(settle_request("f1", "", "2021-03-20"))
        .await
        .expect("the ledger's run")
        .into_inner();
    assert_eq!((whole.loans_examined, whole.loans_settled), (1, 0), "{whole:?}");
    expect_code(
        finance.settle_loans(settle_request("f1", BANK, "2021-03-20")).await,
        Code::AlreadyExists,
    );
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal, "nothing was settled");
    assert_eq!(app.get_loan(&t.bank, &id).await.interest_settled_fen, 29_410);

    // As it was: the first answer again.
    let again = loans
        .settle_loans(settle_request("q1", BANK, "2021-03-20"))
        .await
        .expect("the run retried")
        .into_inner();
    assert_eq!(again, run);
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal);
    // A loan paid out since, back-dated into the run's quarter: the finished run, retried, is
    // still the first answer and settles nothing of it; a run of its own does.
    let late = disbursed(&app, &t, "Q2", "H-Q2", 1_000_000, "2021-01-25").await;
    let journal = app.journal(&t.auditor, LEDGER).await.len();
    let again = loans
        .settle_loans(settle_request("q1", BANK, "2021-03-20"))
        .await
        .expect("the run retried")
        .into_inner();
    assert_eq!(again, run);
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal, "nothing settled");
    let own = loans
        .settle_loans(settle_request("q1-late", BANK, "2021-03-20"))
        .await
        .expect("a run of its own")
        .into_inner();
    assert_eq!((own.loans_settled, own.interest_fen), (1, 5_882), "{own:?}");
    assert_eq!(app.get_loan(&t.bank, &late).await.interest_settled_fen, 5_882);
    let journal = app.journal(&t.auditor, LEDGER).await.len();

    // The run's loan was settled under "q1 B1-Q1"; the bank's own request "q1/B1-Q1" (the form
    // such ids had before) is a request of its own.
    let paid = app
        .repay_as(&t.bank, &format!("q1/{id}"), &id, "2021-03-20", 29_410)
        .await
        .expect("a repayment whose id looks like a run's loan's");
    assert_eq!(loan(&paid).interest_due_fen, 0);
    // An id the bank used for a repayment does not name a run.
    expect_code(
        loans.settle_loans(settle_request(&format!("q1/{id}"), BANK, "2021-06-20")).await,
        Code::AlreadyExists,
    );
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal + 1);
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A repayment on a settlement 20th, a payoff too, first settles that day's point, whose
/// period ends on the 20th inclusive, on the principal as the day began: a payoff quoted on the
/// day owes the same whether that day's settlement run came before the payment or not (50,000.00
/// from 2021-01-25 on 2021-03-20: 55 days, 294.10), so a quote taken before the run is still
/// the payoff after it.
async fn payoff_on_a_settlement_day(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = disbursed(&app, &t, "P20", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    assert_eq!(interest(5_000_000, 55), 29_410);
    let before_run = app.payoff_quote(&t.bank, &id, "2021-03-20").await;
    assert_eq!(
        (before_run.current_interest_fen, before_run.accrued_interest_fen, before_run.total_fen),
        (29_410, 0, 5_029_410),
        "{before_run:?}"
    );
    let run = settle(&app, &t.finance, "", "2021-03-20").await;
    assert_eq!((run.loans_settled, run.interest_fen), (1, 29_410), "{run:?}");
    let after_run = app.payoff_quote(&t.bank, &id, "2021-03-20").await;
    // (Made from the run's event: its last_seq is the run's.)
    assert!(after_run.last_seq > before_run.last_seq, "{after_run:?}");
    let figures = pb::PayoffQuote { last_seq: before_run.last_seq, ..after_run.clone() };
    assert_eq!(figures, before_run, "the run changed the day's payoff");
    let paid = app.repay(&t.bank, &id, "2021-03-20", before_run.total_fen).await;
    let l = loan(&paid);
    assert_eq!(status_of(l), pb::LoanStatus::Settled, "{l:?}");
    assert_eq!((l.interest_settled_fen, l.interest_paid_fen), (29_410, 29_410), "{l:?}");

    // Without a run first: the same payoff closes the loan.
    let other = disbursed(&app, &t, "P21", "H-P21", 5_000_000, "2021-01-25").await;
    let quote = app.payoff_quote(&t.bank, &other, "2021-03-20").await;
    let last_seq = quote.last_seq;
    assert_eq!(quote, pb::PayoffQuote { loan_id: other.clone(), last_seq, ..before_run });
    let paid = app.repay(&t.bank, &other, "2021-03-20", quote.total_fen).await;
    assert_eq!(status_of(loan(&paid)), pb::LoanStatus::Settled);
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// SetPolicy: a new version from a date, read back by GetPolicy and ListPolicies. Equal
/// policies written differently ("0.50" for "0.5", statuses in another order or twice) are the
/// same request; a bad parameter is named; a bank may not set policy. A loan contracted under
/// the new version has its grace days: its interest is overdue only after them.
async fn policy_versions(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let poor = pb::HouseholdStatus::RegisteredPoor as i32;
    let exited = pb::HouseholdStatus::Exited as i32;
    let monitored = pb::HouseholdStatus::Monitored as i32;
    let params = |overdue: &str, statuses: Vec<i32>, grace_days: u32| pb::PolicyParams {
        household_principal_cap_fen: 5_000_000,
        term_months_max: 36,
        borrower_age_min: 18,
        borrower_age_max: 65,
        overdue_penalty_uplift: overdue.into(),
        misuse_penalty_uplift: "1".into(),
        subsidy_ratio: "0.7".into(),
        subsidy_cap_rate: String::new(),
        grace_days,
        rounding: "half_up".into(),
        eligible_statuses: statuses,
        extension_months_max: 12,
        enterprise_modes_refused: false,
        fund_leverage: 10,
        npl_limit_basis_points: 300,
        claim_overdue_days: 90,
        notice_days_min: 7,
        notice_days_max: 10,
    };
    let req = |request_id: &str, params: pb::PolicyParams| pb::SetPolicyRequest {
        request_id: request_id.into(),
        ledger_id: LEDGER.into(),
        effective_date: "2022-01-01".into(),
        params: Some(params),
    };
    expect_code(
        app.registry(&t.bank).set_policy(req("p1", params("0.5", vec![poor], 5))).await,
        Code::PermissionDenied,
    );
    let mut registry = app.registry(&t.finance);
    expect_invalid(
        registry.set_policy(req(&rid("p"), params("0.5", vec![poor], 91))).await,
        "params.grace_days",
    );
    expect_invalid(
        registry.set_policy(req(&rid("p"), params("-0.5", vec![poor], 5))).await,
        "params.overdue_penalty_uplift",
    );
    // A minimum age left out reads as 0 (proto3): refused, not "any age".
    let mut any_age = params("0.5", vec![poor], 5);
    any_age.borrower_age_min = 0;
    expect_invalid(registry.set_policy(req(&rid("p"), any_age)).await, "params.borrower_age_min");
    // Not eligible, removed and moved out are the statuses the programme does not lend to
    // (DESIGN.md): a policy may not list them (until 2026-12-06 it could).
    let removed = pb::HouseholdStatus::Removed as i32;
    let lends_to_removed =
        registry.set_policy(req(&rid("p"), params("0.5", vec![poor, removed], 5)));
    let refused = expect_invalid(lends_to_removed.await, "params.eligible_statuses");
    assert!(refused.message().contains("removed is a status"), "{refused:?}");
    // A bad element of the statuses is named by its index.
    expect_invalid(
        registry.set_policy(req(&rid("p"), params("0.5", vec![poor, 0], 5))).await,
        "params.eligible_statuses[1]",
    );
    expect_invalid(
        registry.set_policy(req(&rid("p"), params("0.5", vec![99], 5))).await,
        "params.eligible_statuses[0]",
    );
    // A cap past the bound (100,000,000 yuan) would let a loan be contracted whose
    // settlements overflow 64-bit fen.
    let mut huge = params("0.5", vec![poor], 5);
    huge.household_principal_cap_fen = 10_000_000_001;
    expect_invalid(
        registry.set_policy(req(&rid("p"), huge)).await,
        "params.household_principal_cap_fen",
    );
    // The risk fund's limits: a leverage of 1 to 100, a non-performing limit of 1 to 10000
    // basis points.
    let mut levered = params("0.5", vec![poor], 5);
    levered.fund_leverage = 101;
    expect_invalid(registry.set_policy(req(&rid("p"), levered)).await, "params.fund_leverage");
    let mut npl = params("0.5", vec![poor], 5);
    npl.npl_limit_basis_points = 10_001;
    expect_invalid(registry.set_policy(req(&rid("p"), npl)).await, "params.npl_limit_basis_points");
    let set = registry
        .set_policy(req("p1", params("0.50", vec![monitored, poor, exited, poor], 5)))
        .await
        .expect("SetPolicy")
        .into_inner();
    let version = set.policy.clone().expect("the version");
    let p = version.params.clone().expect("its parameters");
    assert_eq!((p.overdue_penalty_uplift.as_str(), p.grace_days), ("0.5", 5), "{p:?}");
    assert_eq!(p.eligible_statuses, [poor, exited, monitored], "{p:?}");
    // The same policy written otherwise: the same request, answered as the first time.
    let again = registry
        .set_policy(req("p1", params("0.5", vec![poor, exited, monitored], 5)))
        .await
        .expect("the same policy again")
        .into_inner();
    assert_eq!(again, set);
    // The fund's limits and claim days left out (0, a client built before they were
    // parameters) are the
    // programme's: the same policy again.
    let mut left_out = params("0.5", vec![poor, exited, monitored], 5);
    (left_out.fund_leverage, left_out.npl_limit_basis_points, left_out.claim_overdue_days) =
        (0, 0, 0);
    (left_out.notice_days_min, left_out.notice_days_max) = (0, 0);
    let again = registry.set_policy(req("p1", left_out)).await.expect("left out").into_inner();
    assert_eq!(again, set);
    expect_code(
        registry.set_policy(req("p1", params("0.6", vec![poor, exited, monitored], 5))).await,
        Code::AlreadyExists,
    );
    let get = |as_of: &str| pb::GetPolicyRequest {
        ledger_id: LEDGER.into(),
        as_of: as_of.into(),
        through_seq: 0,
    };
    let later = registry.get_policy(get("2022-06-01")).await.expect("GetPolicy").into_inner();
    assert_eq!(later, version);
    let earlier = registry.get_policy(get("2021-06-01")).await.expect("GetPolicy").into_inner();
    assert_eq!(earlier.params.expect("parameters").grace_days, 0, "the default before 2022");
    let listed = registry
        .list_policies(pb::ListPoliciesRequest { ledger_id: LEDGER.into(), ..Default::default() })
        .await
        .expect("ListPolicies")
        .into_inner();
    let unknown = pb::ListPoliciesRequest { ledger_id: "NO-SUCH".into(), ..Default::default() };
    let missing = expect_code(registry.list_policies(unknown).await, Code::NotFound);
    assert_eq!(missing.message(), "ledger NO-SUCH not found");
    // GetPolicy answers a ledger that does not exist as ListPolicies does, at any date.
    let unknown =
        pb::GetPolicyRequest { ledger_id: "NO-SUCH".into(), as_of: String::new(), through_seq: 0 };
    let missing = expect_code(registry.get_policy(unknown).await, Code::NotFound);
    assert_eq!(missing.message(), "ledger NO-SUCH not found");
    // A ledger's policy before its first version is not in force, and said so.
    let before = expect_code(registry.get_policy(get("2014-12-09")).await, Code::NotFound);
    assert!(before.message().contains("is in force on 2014-12-09"), "{}", before.message());
    let dates: Vec<&str> = listed.versions.iter().map(|v| v.effective_date.as_str()).collect();
    assert_eq!(dates, ["2014-12-10", "2022-01-01", "2024-01-01"], "the defaults and this one");
    assert_eq!(listed.versions[1], version);
    // The seeded step of 2024 changes the subsidy ratio alone: the office's own grace days and
    // eligible statuses stay in force past it, listed and answered alike.
    let stepped = registry.get_policy(get("2024-06-01")).await.expect("GetPolicy").into_inner();
    assert_eq!(stepped.effective_date, "2024-01-01");
    assert_eq!(
        stepped.params,
        Some(pb::PolicyParams {
            subsidy_ratio: "0.7".into(),
            ..params("0.5", vec![poor, exited, monitored], 5)
        })
    );
    assert_eq!(listed.versions[2], stepped);

    // Contracted under it (the 1-year LPR from 2022-01-20 is 3.70%): the interest settled on
    // 2022-03-20 is overdue from 03-26, after five days of grace.
    let contract = pb::CreateLoanRequest {
        annual_rate: "0.037".into(),
        ..standard_loan_on("G1", HOUSEHOLD, "2022-01-25")
    };
    let id = loan(&app.create_loan(&t.bank, contract).await).loan_id.clone();
    app.disburse(&t.bank, &id, "2022-01-25").await;
    let on = |date: &'static str| app.get_loan_as_of(&t.bank, &id, date);
    assert_eq!(on("2022-03-25").await.days_overdue, 0);
    assert_eq!(on("2022-03-26").await.days_overdue, 1);
    // Unpaid, that interest (5,000,000 × 55 days × 0.037 / 360 = 28,263.89 → 282.64 yuan)
    // compounds from 03-26 too: paid off on 03-28, two days, 28,264 × 2 × 0.037 / 360 = 5.81
    // → 6 fen (three days, 9 fen, when the grace counted from the due date).
    let quote = |as_of: &'static str| {
        let mut loans = app.loans(&t.bank);
        let loan_id = id.clone();
        async move {
            let request =
                pb::GetPayoffQuoteRequest { loan_id, as_of: as_of.into(), through_seq: 0 };
            loans.get_payoff_quote(request).await.expect("GetPayoffQuote").into_inner()
        }
    };
    let q = quote("2022-03-25").await;
    assert_eq!((q.overdue_interest_fen, q.current_interest_fen), (0, 28_264), "{q:?}");
    let q = quote("2022-03-26").await;
    assert_eq!((q.overdue_interest_fen, q.compound_fen, q.days_overdue), (28_264, 0, 1), "{q:?}");
    let q = quote("2022-03-28").await;
    assert_eq!((q.overdue_interest_fen, q.compound_fen), (28_264, 6), "{q:?}");
    // Contracted in 2024 (the 1-year LPR from 2023-08-21 is 3.45%): the same five days of grace.
    let contract = pb::CreateLoanRequest {
        annual_rate: "0.0345".into(),
        ..standard_loan_on("G2", "H-G2", "2024-01-25")
    };
    app.register_household(&t.finance, "H-G2", "19800517").await;
    let id = loan(&app.create_loan(&t.bank, contract).await).loan_id.clone();
    app.disburse(&t.bank, &id, "2024-01-25").await;
    let on = |date: &'static str| app.get_loan_as_of(&t.bank, &id, date);
    assert_eq!(on("2024-03-25").await.days_overdue, 0);
    assert_eq!(on("2024-03-26").await.days_overdue, 1);
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// An auditor's answer as of a date, given again: a repayment recorded later, dated back before
/// the date (a bank's late file), changes the balances and the loan as of that date, but
/// `GetBalances` and `GetLoan` with the first answer's seq (`through_seq`, the loan's
/// `last_seq`) answer as the first time; `GetLoan` with a seq alone shows the loan as that seq
/// left it. A seq past what a journal can hold is `INVALID_ARGUMENT` naming it.
async fn an_answer_as_of_a_date_is_given_again_through_its_seq(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = contract(&app, &t, "SEQ", HOUSEHOLD, 5_000_000).await;
    app.disburse(&t.bank, &id, "2021-01-25").await;
    app.loans(&t.finance)
        .settle_loans(settle_request(&rid("settle"), "", "2021-03-20"))
        .await
        .expect("SettleLoans");
    let balances = |through_seq: u64| {
        let mut audit = app.audit(&t.auditor);
        let request = pb::GetBalancesRequest {
            ledger_id: LEDGER.into(),
            as_of: "2021-03-31".into(),
            account_prefix: format!("bank/{BANK}/cash"),
            through_seq,
        };
        async move { collect(audit.get_balances(request).await?.into_inner()).await }
    };
    let loan = |as_of: &str, through_seq: u64| {
        let mut loans = app.loans(&t.auditor);
        let request = pb::GetLoanRequest { loan_id: id.clone(), as_of: as_of.into(), through_seq };
        async move { loans.get_loan(request).await.map(|r| r.into_inner()) }
    };
    let cash = |chunks: &[pb::BalancesChunk]| -> Vec<i64> {
        chunks.iter().flat_map(|c| c.balances.iter().map(|b| b.balance_fen)).collect()
    };
    let first = balances(0).await.expect("GetBalances");
    let seq = first[0].through_seq;
    assert_eq!(cash(&first), [-5_000_000]);
    let first_loan = loan("2021-03-31", 0).await.expect("GetLoan");
    // The quarter's 29,410 fen settled and unpaid, overdue since the 21st.
    assert_eq!((first_loan.interest_paid_fen, first_loan.interest_settled_fen), (0, 29_410));
    assert!(first_loan.days_overdue > 0, "{first_loan:?}");
    let quote = |through_seq: u64| {
        let mut loans = app.loans(&t.bank);
        let request = pb::GetPayoffQuoteRequest {
            loan_id: id.clone(),
            as_of: "2021-04-01".into(),
            through_seq,
        };
        async move { loans.get_payoff_quote(request).await.map(|r| r.into_inner()) }
    };
    let first_quote = quote(0).await.expect("GetPayoffQuote");
    assert_eq!(first_quote.last_seq, first_loan.last_seq, "{first_quote:?}");
    assert_eq!(
        (first_quote.principal_fen, first_quote.overdue_interest_fen),
        (5_000_000, 29_410),
        "{first_quote:?}"
    );

    // The bank's file of 2021-03-22, recorded late.
    app.repay(&t.bank, &id, "2021-03-22", 40_000).await;
    // The quote now: the overdue interest paid (and a day's compound interest on it), the rest
    // of the 40,000 fen repaid principal; through the first quote's seq, the first quote again.
    let now_quote = quote(0).await.expect("GetPayoffQuote");
    assert!(now_quote.last_seq > first_quote.last_seq, "{now_quote:?}");
    let repaid = loan("2021-04-01", 0).await.expect("GetLoan").principal_repaid_fen;
    assert!(repaid > 0 && repaid < 40_000 - 29_410 + 1, "{repaid}");
    assert_eq!(
        (now_quote.principal_fen, now_quote.overdue_interest_fen),
        (5_000_000 - repaid, 0),
        "{now_quote:?}"
    );
    assert_eq!(
        quote(first_quote.last_seq).await.expect("GetPayoffQuote through its seq"),
        first_quote
    );
    // Before the contract was recorded: NOT_FOUND; past what a journal holds: the field named.
    expect_code(quote(1).await.map(tonic::Response::new), Code::NotFound);
    let past_max = u64::try_from(i64::MAX).unwrap() + 1;
    expect_invalid(quote(past_max).await.map(tonic::Response::new), "through_seq");
    let now = balances(0).await.expect("GetBalances");
    assert_eq!((cash(&now), now[0].through_seq > seq), (vec![-5_000_000 + 40_000], true));
    assert_eq!(loan("2021-03-31", 0).await.expect("GetLoan").interest_paid_fen, 29_410);

    let again = balances(seq).await.expect("GetBalances through the first answer's seq");
    assert_eq!(again, first);
    let again = loan("2021-03-31", first_loan.last_seq).await.expect("GetLoan through its seq");
    assert_eq!(again, first_loan);
    // A seq alone: the loan as that seq left it, its figures as of today.
    let then = loan("", first_loan.last_seq).await.expect("GetLoan through a seq");
    assert_eq!((then.last_seq, then.interest_paid_fen), (first_loan.last_seq, 0));
    // Its figures as of the day of its last event by then: the 20th's run.
    assert_eq!((then.as_of.as_str(), then.interest_due_fen), ("2021-03-20", 29_410));
    // Before its contract was recorded: NOT_FOUND, naming the seq.
    let none = expect_code(loan("2021-03-31", 1).await.map(tonic::Response::new), Code::NotFound);
    assert!(none.message().contains("by seq 1"), "{}", none.message());
    assert_eq!(loan("", 0).await.expect("GetLoan").interest_paid_fen, 29_410);
    let past = u64::try_from(i64::MAX).unwrap() + 1;
    expect_invalid(balances(past).await.map(tonic::Response::new), "through_seq");
    expect_invalid(loan("", past).await.map(tonic::Response::new), "through_seq");
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// A run over a loan whose stored row cannot be read (changed behind the service's back) lists
/// it with its code, as that loan's own call is answered (INTERNAL, its detail in the log), and
/// settles the others; not recorded, its retry runs again; the row put back, the retry
/// settles it.
async fn a_run_lists_a_loan_it_cannot_settle_with_its_code(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let first = disbursed(&app, &t, "R1", HOUSEHOLD, 2_000_000, "2021-01-25").await;
    let second = disbursed(&app, &t, "R2", "H-R2", 2_000_000, "2021-01-25").await;
    let read = format!("select servicing_json from loan where loan_id = '{second}'");
    let stored = app.db.query_texts(&read).await.expect("the loan's row").concat();
    let servicing = |json: &str| {
        format!("update loan set servicing_json = '{json}' where loan_id = '{second}'")
    };
    app.db.execute_raw(&servicing("{")).await.expect("the row damaged");
    // (Restarted, the writer reads the row again rather than keeping the loan it wrote.)
    app.restart().await;

    let mut finance = app.loans(&t.finance);
    let request = settle_request("run-1", "", "2021-03-20");
    let run = finance.settle_loans(request.clone()).await.expect("the run").into_inner();
    assert_eq!((run.loans_examined, run.loans_settled, run.failed), (2, 1, 1), "{run:?}");
    let internal = "internal error; the detail is in the server log";
    assert_eq!(
        run.failed_loans,
        [pb::SettlementFailure {
            loan_id: second.clone(),
            code: "INTERNAL".into(),
            message: internal.into(),
            ..Default::default()
        }]
    );
    assert_eq!(run.failures, [format!("{second}: {internal}")]);
    // The first loan settled: 55 days of 2,000,000 fen at 3.85% / 360.
    assert_eq!(run.interest_fen, 11_764);
    assert_eq!(
        app.history(&t.bank, &first).await.last().map(|e| e.kind.as_str()),
        Some("loan.settled")
    );
    // A run with a fault of the service is not recorded: its retry runs again, the first
    // loan answered as the first time (nothing posted twice), the second listed again.
    let again = finance.settle_loans(request.clone()).await.expect("the retry").into_inner();
    assert_eq!(again, run);
    let settled = |journal: Vec<pb::JournalTransaction>| {
        journal.iter().filter(|e| e.kind == "loan.settled").count()
    };
    assert_eq!(settled(app.journal(&t.auditor, LEDGER).await), 1);
    // The row put back, the retry settles the second loan.
    let put_back = servicing(&stored.replace('\'', "''"));
    app.db.execute_raw(&put_back).await.expect("the row put back");
    let next = finance.settle_loans(request).await.expect("the retry").into_inner();
    // (Its summary is the whole run's: the first loan answered again, as settled.)
    assert_eq!((next.loans_settled, next.failed, next.interest_fen), (2, 0, 23_528), "{next:?}");
    assert!(next.failed_loans.is_empty() && next.failures.is_empty());
    assert_eq!(settled(app.journal(&t.auditor, LEDGER).await), 2);
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// ReverseRepayment of a loan's latest repayment (keyed 1,000,000 for 100,000 on 2021-02-10):
/// a `loan.reversed` entry naming it, dated its day, its postings negated; the loan as if it
/// had never been recorded, so that the right payment dated earlier (02-05) is taken next and
/// the quarter's interest runs on 5,000,000 then 4,900,000. Refused: a reversal of a payout
/// (NOT_REVERSIBLE, reversed_kind), of an entry that is not the latest (latest_seq), of an
/// entry of no loan's, of a payoff, without a reason or a seq; a retry posts nothing twice;
/// verify replays it.
async fn a_repayment_recorded_in_error_is_reversed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = disbursed(&app, &t, "V1", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let reverse = |request_id: &'static str, seq: u64, reason: &'static str| {
        app.reverse_as(&t.bank, request_id, &id, seq, reason)
    };
    let payout = app.history(&t.auditor, &id).await.last().unwrap().seq;
    let refused = expect_refused(reverse("rev-payout", payout, "wrong").await, "NOT_REVERSIBLE");
    assert_eq!(metadata(&refused, "reversed_kind").as_deref(), Some("loan.disbursed"));
    expect_invalid(reverse("rev-0", 0, "keyed twice").await, "reversed_seq");
    expect_invalid(reverse("rev-no-reason", payout, "  ").await, "reason");

    let wrong = repayment(&app, &t.bank, &id, "2021-02-10", 1_000_000).await.unwrap();
    let wrong = loan(wrong.get_ref()).clone();
    assert_eq!(wrong.principal_outstanding_fen, 4_000_000);
    let wrong_entry = app.history(&t.auditor, &id).await.last().unwrap().clone();
    assert_eq!(wrong_entry.kind, "loan.repaid");
    assert_eq!(app.balance(&t.auditor, "bank/B1/cash").await, -4_000_000);
    // An entry of the ledger that is not the loan's (the bank's registration) is no entry of it.
    let other = expect_code(reverse("rev-other", 2, "keyed twice").await, Code::NotFound);
    assert!(other.message().contains("journal entry 2 of loan B1-V1"), "{other:?}");
    let journal = app.journal(&t.auditor, LEDGER).await.len();

    let answer = reverse("rev-1", wrong_entry.seq, "keyed 1,000,000 for 100,000").await.unwrap();
    let reversed = loan(answer.get_ref()).clone();
    assert_eq!(reversed.principal_outstanding_fen, 5_000_000, "{reversed:?}");
    assert_eq!(reversed.principal_repaid_fen, 0, "{reversed:?}");
    let history = app.history(&t.auditor, &id).await;
    let reversal = history.last().unwrap();
    assert_eq!(reversal.kind, "loan.reversed");
    assert_eq!(reversal.value_date, "2021-02-10");
    assert_eq!(reversed.last_seq, reversal.seq);
    let json = event_json(reversal);
    assert_eq!(json["reversed_seq"], wrong_entry.seq, "{json}");
    assert_eq!(json["reason"], "keyed 1,000,000 for 100,000", "{json}");
    assert_eq!(
        sorted(&nonzero(&reversal.postings)),
        postings(&[("bank/B1/cash", -1_000_000), ("loan/B1-V1/principal", 1_000_000)])
    );
    assert_eq!(app.balance(&t.auditor, "bank/B1/cash").await, -5_000_000);
    assert_eq!(app.balance(&t.auditor, "loan/B1-V1/principal").await, 5_000_000);
    // Sent again (its answer lost), it is answered as the first time and posts nothing; the
    // same request id with another reason is another request.
    let again = reverse("rev-1", wrong_entry.seq, "keyed 1,000,000 for 100,000").await.unwrap();
    assert_eq!(loan(again.get_ref()), &reversed);
    expect_code(reverse("rev-1", wrong_entry.seq, "another reason").await, Code::AlreadyExists);
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal + 1, "posted once");
    // Through the wrong payment's seq, the loan is as the journal then had it.
    let then = app
        .loans(&t.bank)
        .get_loan(pb::GetLoanRequest {
            loan_id: id.clone(),
            as_of: String::new(),
            through_seq: wrong_entry.seq,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(then.principal_outstanding_fen, 4_000_000, "{then:?}");
    // Only the loan's bank reverses its repayments: another bank does not see the loan, the
    // finance office and the auditor may not.
    let (b2, _) = bank_b2_loan(&app, &t, "H-V2", 1_000_000).await;
    let other = app.reverse_as(&b2, &rid("rev"), &id, wrong_entry.seq, "x").await;
    expect_code(other, Code::NotFound);
    for token in [&t.finance, &t.auditor] {
        let denied = app.reverse_as(token, &rid("rev"), &id, wrong_entry.seq, "x").await;
        expect_code(denied, Code::PermissionDenied);
    }
    // Reversed once, it is not reversed again.
    let twice = expect_refused(
        reverse("rev-2", wrong_entry.seq, "keyed 1,000,000 for 100,000").await,
        "NOT_REVERSIBLE",
    );
    assert_eq!(metadata(&twice, "reversed_by"), Some(reversal.seq.to_string()));
    // Its reversal is no repayment.
    let of_reversal = expect_refused(reverse("rev-r", reversal.seq, "x").await, "NOT_REVERSIBLE");
    assert_eq!(metadata(&of_reversal, "latest_seq"), Some(payout.to_string()));

    // The right payment, made on 02-05, before the day of the one reversed.
    let right = repayment(&app, &t.bank, &id, "2021-02-05", 100_000).await.unwrap().into_inner();
    assert_eq!(loan(&right).principal_outstanding_fen, 4_900_000);
    for day in ["2021-02-07", "2021-02-12"] {
        let then = app.get_loan_as_of(&t.bank, &id, day).await;
        assert_eq!(then.principal_outstanding_fen, 4_900_000, "as of {day}: {then:?}");
    }
    let before = app.get_loan_as_of(&t.bank, &id, "2021-02-04").await;
    assert_eq!(before.principal_outstanding_fen, 5_000_000, "{before:?}");
    // The quarter's interest: 01-25 ..= 02-04 on 5,000,000, 02-05 ..= 03-20 on 4,900,000.
    assert_eq!((days("2021-01-25", "2021-02-04"), days("2021-02-05", "2021-03-20")), (11, 44));
    let expected = accrual(&[(5_000_000, 11, CONTRACT_RATE), (4_900_000, 44, CONTRACT_RATE)]);
    settle(&app, &t.finance, "", "2021-03-20").await;
    let settled = app.get_loan(&t.bank, &id).await;
    assert_eq!(settled.interest_settled_fen, expected, "{settled:?}");
    // The right payment is no longer the latest either.
    let paid_seq = loan(&right).last_seq;
    let refused = expect_refused(reverse("rev-3", paid_seq, "no").await, "NOT_REVERSIBLE");
    assert_eq!(metadata(&refused, "latest_seq"), Some(settled.last_seq.to_string()));
    // A payoff is not reversed: contracts since may have counted the loan closed.
    let payoff = app.pay_off(&t.bank, &id, "2021-03-25").await;
    let refused = expect_refused(
        reverse("rev-4", loan(&payoff).last_seq, "paid off in error").await,
        "NOT_REVERSIBLE",
    );
    assert_eq!(metadata(&refused, "status").as_deref(), Some("settled"), "{refused:?}");
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// A day's file keyed twice: 1,000.00 yuan on 2021-03-20 with the quarter's 294.10 yuan of
/// interest netted as subsidy (直补; the repayment settles that day's point), then the same
/// amount again. The second is reversed, then the first (the latest standing once the second
/// is taken back): every account is back where the payout left it, the interest its point
/// accrued and the subsidy netted too, and the right payment, 500.00 that day, settles the
/// point again. Verify replays them all.
async fn a_file_keyed_twice_is_reversed_a_repayment_at_a_time(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = disbursed(&app, &t, "V2", HOUSEHOLD, 5_000_000, "2021-01-25").await;
    let accounts = ["bank/B1/cash", "bank/B1/subsidy_due", "bank/B1/interest_income"];
    let principal = "loan/B1-V2/principal";
    let mut figures = Vec::new();
    for account in accounts.iter().copied().chain([principal]) {
        figures.push(app.balance(&t.auditor, account).await);
    }
    assert_eq!(figures, [-5_000_000, 0, 0, 5_000_000]);
    let balances = || async {
        let mut out = Vec::new();
        for account in accounts.iter().copied().chain([principal]) {
            out.push(app.balance(&t.auditor, account).await);
        }
        out
    };
    // 01-25 ..= 03-20: 55 days on 5,000,000 at 3.85%: 29,409.72 -> 29,410.
    assert_eq!(days("2021-01-25", "2021-03-20"), 55);
    assert_eq!(interest(5_000_000, 55), 29_410);
    let netted = pb::RecordRepaymentRequest {
        request_id: rid("file-1"),
        loan_id: id.clone(),
        value_date: "2021-03-20".into(),
        amount_fen: 100_000,
        subsidy_netted_fen: 29_410,
    };
    let first = app.loans(&t.bank).record_repayment(netted).await.expect("the first").into_inner();
    let first_seq = loan(&first).last_seq;
    assert_eq!(balances().await, [-4_929_410, 29_410, -29_410, 4_929_410]);
    let second = repayment(&app, &t.bank, &id, "2021-03-20", 100_000).await.unwrap().into_inner();
    let second_seq = loan(&second).last_seq;
    assert_eq!(balances().await, [-4_829_410, 29_410, -29_410, 4_829_410]);
    let (on, bank, loan_id) = (&app, &t.bank, &id);
    let reverse = move |seq: u64| async move {
        on.reverse_as(bank, &rid("rev"), loan_id, seq, "the day's file keyed twice").await
    };
    // The first is not the latest while the second stands.
    let early = expect_refused(reverse(first_seq).await, "NOT_REVERSIBLE");
    assert_eq!(metadata(&early, "latest_seq"), Some(second_seq.to_string()));
    reverse(second_seq).await.expect("the second reversed");
    assert_eq!(balances().await, [-4_929_410, 29_410, -29_410, 4_929_410]);
    let back = reverse(first_seq).await.expect("the first reversed").into_inner();
    assert_eq!(balances().await, [-5_000_000, 0, 0, 5_000_000]);
    let l = loan(&back);
    assert_eq!((l.interest_settled_fen, l.interest_paid_fen), (0, 0), "{l:?}");
    assert_eq!(l.principal_outstanding_fen, 5_000_000, "{l:?}");
    let history = app.history(&t.auditor, &id).await;
    let kinds: Vec<&str> = history.iter().rev().take(4).map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["loan.reversed", "loan.reversed", "loan.repaid", "loan.repaid"]);
    // The right payment, the same day: the point settled again, its interest paid first.
    let right = repayment(&app, &t.bank, &id, "2021-03-20", 50_000).await.unwrap().into_inner();
    let l = loan(&right);
    assert_eq!((l.interest_settled_fen, l.interest_paid_fen), (29_410, 29_410), "{l:?}");
    assert_eq!(balances().await, [-4_950_000, 0, -29_410, 4_979_410]);
    assert_verifies(&app, &t).await;
    app.finish().await;
}

/// The rules as written (README, "Interest and schedules"): the standard loan first paid out on
/// the settlement 20th 2021-03-20 has that one day as its first period (its disbursement day
/// counted, the period ending on the 20th inclusive): 5,000,000 × 3.85% / 360 = 534.72, so
/// 535 fen due that day; unpaid, with no grace days, the loan is overdue from the 21st. The next
/// period, 03-21 to 06-20, is 92 days: 5,000,000 × 92 × 3.85% / 360 = 49,194.44, so 49,194.
async fn a_loan_first_paid_out_on_a_20th_owes_that_day_then(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = loan_id("C001");
    app.create_loan(&t.bank, standard_loan("C001", HOUSEHOLD)).await;
    app.disburse(&t.bank, &id, "2021-03-20").await;
    let that_day = app.get_loan_as_of(&t.bank, &id, "2021-03-20").await;
    assert_eq!((that_day.interest_due_fen, that_day.days_overdue), (535, 0), "{that_day:?}");
    assert_eq!(that_day.status, pb::LoanStatus::Active as i32);
    let next_day = app.get_loan_as_of(&t.bank, &id, "2021-03-21").await;
    assert_eq!((next_day.interest_due_fen, next_day.days_overdue), (535, 1), "{next_day:?}");
    assert_eq!(next_day.status, pb::LoanStatus::Overdue as i32);
    app.repay(&t.bank, &id, "2021-03-20", 535).await;
    let june = app.get_loan_as_of(&t.bank, &id, "2021-06-20").await;
    assert_eq!((june.interest_due_fen, june.days_overdue), (49_194, 0), "{june:?}");
    assert_eq!(june.status, pb::LoanStatus::Active as i32);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{:?}", v.problems);
    app.finish().await;
}
