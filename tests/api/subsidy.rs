//! Subsidy registers (`GetLoanSubsidy`), as a finance office and an auditor read them: each
//! settled interest period with its payments, its standing and its subsidy, recomputed here
//! apart from the server (simple interest on the 360-day basis, the 2024 ratio step by day).
//! Each scenario runs on SQLite and on PostgreSQL.

use loanledger::api::pb;
use loanledger::app::auth::Role;
use tonic::Code;

use super::{with_disbursed_loan, with_two_disbursed_loans};
use crate::common::*;

on_both_backends!(
    the_worked_loan_paid_on_time_is_subsidised_in_full,
    a_step_carrying_the_national_figures_stands_from_the_version_it_carries,
    late_unpaid_and_the_2024_ratio_step,
    a_countys_own_version_on_the_2024_step_replaces_it,
    misuse_refusals_and_who_may_read,
    a_falsely_obtained_loan_is_marked_so,
    a_ledger_register_lists_a_quarter_line_by_line,
    tranches_paid_out_on_one_20th,
    an_early_payoff_settles_its_own_period,
    a_ratio_change_past_the_hundredth_is_refused,
    a_register_is_given_again_through_its_seq,
    policy_versions_take_their_seqs_from_the_journal,
);

use pb::SubsidyStanding as S;

fn standings(s: &pb::LoanSubsidy) -> Vec<S> {
    s.lines.iter().map(|l| l.standing()).collect()
}

fn subsidies(s: &pb::LoanSubsidy) -> Vec<i64> {
    s.lines.iter().map(|l| l.working.as_ref().map_or(-1, |w| w.subsidy_fen)).collect()
}

/// `ListPolicies` through `through_seq` (0: all): each date's version with the seq that
/// recorded it.
async fn recorded_versions(app: &TestApp, token: &str, through_seq: u64) -> Vec<(String, u64)> {
    let request =
        pb::ListPoliciesRequest { ledger_id: LEDGER.into(), through_seq, ..Default::default() };
    let listed = app.registry(token).list_policies(request).await.expect("ListPolicies");
    let versions = listed.into_inner().versions;
    versions.into_iter().map(|v| (v.effective_date, v.recorded_seq)).collect()
}

/// `fen × days × rate / 360`, the rate in basis points, rounded half up.
fn interest_bp(fen: i64, days: i64, bp: i64) -> i64 {
    let numerator = i128::from(fen) * i128::from(days) * i128::from(bp);
    ((numerator + 1_800_000) / 3_600_000) as i64
}

/// A server over a fresh seeded database with loan C101 of H001, 50,000.00 yuan at 3.45%,
/// contracted and paid out on 2023-09-25: its quarters cross the 2024 ratio step.
async fn with_a_loan_across_2024(backend: Backend) -> Option<(TestApp, Tokens, String)> {
    let app = TestApp::spawn(backend).await?;
    let t = app.seed().await;
    let id = loan_id("C101");
    let contract = pb::CreateLoanRequest {
        annual_rate: "0.0345".into(),
        ..standard_loan_on("C101", HOUSEHOLD, "2023-09-25")
    };
    app.create_loan(&t.bank, contract).await;
    app.disburse(&t.bank, &id, "2023-09-25").await;
    Some((app, t, id))
}

/// The programme's worked figure, paid on each settlement day and paid off at maturity: five
/// periods on time, each subsidised in full (ratio 100% before 2024, no cap below the contract
/// rate): 294.10 + 491.94 + 491.94 + 486.60 + 187.15 = 1,951.73 yuan, with each period's days
/// and 积数. The register as of an earlier date lists the periods settled by then; the bank,
/// the finance office and the auditor read the same.
async fn the_worked_loan_paid_on_time_is_subsidised_in_full(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let quarters = [("2021-03-20", 55), ("2021-06-20", 92), ("2021-09-20", 92), ("2021-12-20", 91)];
    for (date, days) in quarters {
        app.repay(&t.bank, &id, date, standard_interest(STANDARD_PRINCIPAL_FEN, days)).await;
    }
    app.pay_off(&t.bank, &id, "2022-01-25").await;

    let s = app.loan_subsidy(&t.finance, &id, "2022-01-25").await;
    assert_eq!(s.loan_id, id);
    assert_eq!((s.ledger_id.as_str(), s.bank_id.as_str()), (LEDGER, BANK));
    assert_eq!(s.household_id, HOUSEHOLD);
    assert_eq!((s.annual_rate.as_str(), s.cap_rate.as_str()), ("0.0385", "0.0385"));
    assert_eq!(s.household_cap_fen, 5_000_000);
    assert!(!s.misused);
    assert_eq!(standings(&s), [S::OnTime; 5]);
    assert_eq!(subsidies(&s), [29_410, 49_194, 49_194, 48_660, 18_715]);
    assert_eq!(
        (s.interest_settled_fen, s.interest_paid_fen, s.subsidy_fen),
        (195_173, 195_173, 195_173)
    );
    let periods = [
        ("2021-01-25", "2021-03-20", "2021-03-20", 55),
        ("2021-03-21", "2021-06-20", "2021-06-20", 92),
        ("2021-06-21", "2021-09-20", "2021-09-20", 92),
        ("2021-09-21", "2021-12-20", "2021-12-20", 91),
        ("2021-12-21", "2022-01-24", "2022-01-25", 35),
    ];
    for (line, (start, end, due, days)) in s.lines.iter().zip(periods) {
        let what = format!("{line:?}");
        assert_eq!((line.period_start.as_str(), line.period_end.as_str()), (start, end), "{what}");
        assert_eq!((line.due_date.as_str(), line.deadline.as_str()), (due, due), "{what}");
        let interest = standard_interest(STANDARD_PRINCIPAL_FEN, days);
        assert_eq!(line.interest_settled_fen, interest, "{what}");
        assert_eq!(line.interest_paid_on_time_fen, interest, "{what}");
        assert_eq!(
            (line.interest_paid_late_fen, line.interest_written_off_fen, line.interest_unpaid_fen),
            (0, 0, 0),
            "{what}"
        );
        assert_eq!(line.last_paid_on, due, "{what}");
        let w = line.working.as_ref().expect("a line paid has its working");
        assert_eq!(w.days, days as u32, "{what}");
        assert_eq!(w.jishu, STANDARD_PRINCIPAL_FEN * days, "{what}");
        assert_eq!(w.jishu_within_cap, w.jishu, "{what}");
        assert_eq!(
            (w.interest_paid_fen, w.subsidisable_fen, w.subsidy_fen),
            (interest, interest, interest)
        );
        assert_eq!(w.parts.len(), 1, "{what}");
        assert_eq!((w.parts[0].ratio.as_str(), w.parts[0].days), ("1", days as u32), "{what}");
        assert_eq!(w.subsidy_unrounded_fen, interest.to_string(), "{what}");
    }

    let earlier = app.loan_subsidy(&t.bank, &id, "2021-06-19").await;
    assert_eq!(standings(&earlier), [S::OnTime]);
    assert_eq!(earlier.subsidy_fen, 29_410);
    let before_any = app.loan_subsidy(&t.auditor, &id, "2021-03-19").await;
    assert!(before_any.lines.is_empty(), "{before_any:?}");
    assert_eq!(before_any.subsidy_fen, 0);
    // Before its contract, the loan has no line (before 2026-12-04 this was INTERNAL).
    let before_contract = app.loan_subsidy(&t.auditor, &id, "2021-01-01").await;
    assert!(before_contract.lines.is_empty() && !before_contract.misused, "{before_contract:?}");
    assert_eq!(before_contract.loan_id, id);
    assert_eq!(app.loan_subsidy(&t.auditor, &id, "2022-01-25").await, s);
    assert_eq!(app.loan_subsidy(&t.bank, &id, "2022-01-25").await, s);
    app.finish().await;
}

/// A 3.45% loan of 2023-09-25 (the one-year LPR then): its December 2023 quarter paid on time
/// earns it all; its March 2024 quarter, 11 days of 2023 and 80 of 2024, paid on time, earns
/// 100% of the first and 70% of the rest, rounded once; its June quarter, paid the next day,
/// earns nothing; its September quarter, settled by the finance office's run and unpaid, is
/// not yet due on its 20th and overdue from the 21st. A period no recorded event has settled
/// by the date is settled by the register itself, and says so.
async fn late_unpaid_and_the_2024_ratio_step(backend: Backend) {
    let Some((app, t, id)) = with_a_loan_across_2024(backend).await else {
        return;
    };
    let december = interest_bp(STANDARD_PRINCIPAL_FEN, 87, 345);
    let march = interest_bp(STANDARD_PRINCIPAL_FEN, 91, 345);
    let june = interest_bp(STANDARD_PRINCIPAL_FEN, 92, 345);
    assert_eq!((december, march, june), (41_688, 43_604, 44_083));
    app.repay(&t.bank, &id, "2023-12-20", december).await;
    app.repay(&t.bank, &id, "2024-03-20", march).await;
    // A day late, with some principal: the unpaid interest is paid first.
    app.repay(&t.bank, &id, "2024-06-21", 50_000).await;
    app.loans(&t.finance)
        .settle_loans(pb::SettleLoansRequest {
            request_id: rid("run"),
            ledger_id: LEDGER.into(),
            bank_id: String::new(),
            settlement_date: "2024-09-20".into(),
        })
        .await
        .expect("SettleLoans");
    let principal =
        app.get_loan_as_of(&t.auditor, &id, "2024-09-20").await.principal_outstanding_fen;
    assert!(principal < STANDARD_PRINCIPAL_FEN && principal > 4_990_000, "{principal}");
    let september = interest_bp(principal, 92, 345);

    let on_the_20th = app.loan_subsidy(&t.finance, &id, "2024-09-20").await;
    assert_eq!(standings(&on_the_20th), [S::OnTime, S::OnTime, S::PaidLate, S::NotYetDue]);
    // 43,604 × (11 × 1 + 80 × 0.7) / 91 = 32,104.04 fen.
    let split = (march * 670 + 455) / 910;
    assert_eq!(split, 32_104);
    assert_eq!(subsidies(&on_the_20th), [december, split, 0, -1]);
    assert_eq!(on_the_20th.subsidy_fen, december + split);
    assert_eq!(on_the_20th.interest_settled_fen, december + march + june + september);
    assert_eq!(on_the_20th.interest_paid_fen, december + march + june);

    let step = on_the_20th.lines[1].working.as_ref().unwrap();
    let parts: Vec<(&str, &str, u32, &str)> = step
        .parts
        .iter()
        .map(|p| (p.from.as_str(), p.to.as_str(), p.days, p.ratio.as_str()))
        .collect();
    assert_eq!(
        parts,
        [("2023-12-21", "2023-12-31", 11, "1"), ("2024-01-01", "2024-03-20", 80, "0.7")]
    );
    assert_eq!(step.subsidisable_fen, march);

    let late = &on_the_20th.lines[2];
    assert_eq!((late.interest_paid_on_time_fen, late.interest_paid_late_fen), (0, june));
    assert_eq!(late.last_paid_on, "2024-06-21");
    let w = late.working.as_ref().unwrap();
    assert_eq!((w.interest_paid_fen, w.subsidisable_fen, w.subsidy_fen), (june, 0, 0));

    let unpaid = &on_the_20th.lines[3];
    assert_eq!(
        (unpaid.period_start.as_str(), unpaid.period_end.as_str()),
        ("2024-06-21", "2024-09-20")
    );
    assert_eq!((unpaid.interest_settled_fen, unpaid.interest_unpaid_fen), (september, september));
    assert!(unpaid.working.is_none() && unpaid.last_paid_on.is_empty(), "{unpaid:?}");

    let next_day = app.loan_subsidy(&t.finance, &id, "2024-09-21").await;
    assert_eq!(standings(&next_day), [S::OnTime, S::OnTime, S::PaidLate, S::Overdue]);
    let w = next_day.lines[3].working.as_ref().expect("an overdue line has its working");
    assert_eq!((w.interest_paid_fen, w.subsidy_fen), (0, 0));
    assert_eq!(w.jishu, principal * 92);
    // As of the June quarter's 20th no event had settled it (the late payment of the 21st
    // did): the register settles it as servicing would, not recorded, with the same figures.
    let in_june = app.loan_subsidy(&t.finance, &id, "2024-06-20").await;
    assert_eq!(standings(&in_june), [S::OnTime, S::OnTime, S::NotYetDue]);
    assert_eq!(in_june.lines.iter().map(|l| l.recorded).collect::<Vec<_>>(), [true, true, false]);
    assert_eq!(in_june.lines[2].interest_settled_fen, june);
    assert!(next_day.lines.iter().all(|l| l.recorded), "{next_day:?}");
    // Without the run, the September quarter is overdue all the same (settled here).
    let later = app.loan_subsidy(&t.finance, &id, "2024-12-21").await;
    assert_eq!(
        standings(&later),
        [S::OnTime, S::OnTime, S::PaidLate, S::Overdue, S::Overdue],
        "{later:?}"
    );
    assert_eq!(later.lines.iter().filter(|l| !l.recorded).count(), 1);
    app.finish().await;
}

/// A county that keeps subsidising in full from 2024 sets its own version dated 2024-01-01, the
/// day of the seeded national step to 70%: it replaces the step from that day, so the quarter
/// 2023-12-21 ..= 2024-03-20 is subsidised at 100% on every day. Until 2026-12-06 the version was
/// refused (`ALREADY_EXISTS`: a date holds one version) and the earliest a county could set was
/// 2024-01-02, leaving 2024-01-01 at 70% (144 fen short on this loan). A date takes one such
/// version: a second is `ALREADY_EXISTS`, as is one on the first seeded date; a retry is answered
/// as before. `GetPolicy` and `ListPolicies` answer the county's version for the date (listed
/// once); the journal verifies.
async fn a_countys_own_version_on_the_2024_step_replaces_it(backend: Backend) {
    let Some((app, t, id)) = with_a_loan_across_2024(backend).await else {
        return;
    };
    let (december, march) = (
        interest_bp(STANDARD_PRINCIPAL_FEN, 87, 345),
        interest_bp(STANDARD_PRINCIPAL_FEN, 91, 345),
    );
    app.repay(&t.bank, &id, "2023-12-20", december).await;
    app.repay(&t.bank, &id, "2024-03-20", march).await;
    let national = app.loan_subsidy(&t.finance, &id, "2024-03-20").await;
    assert_eq!(subsidies(&national), [december, 32_104]);

    let full = pb::PolicyParams {
        subsidy_ratio: "1".into(),
        ..app.policy_on(&t.finance, "2023-12-31").await
    };
    let request = policy_from("2024-01-01", full.clone());
    let mut registry = app.registry(&t.finance);
    let set = registry.set_policy(request.clone()).await.expect("a version on the step's date");
    let set = set.into_inner();
    assert_eq!(set.policy.as_ref().and_then(|p| p.params.as_ref()), Some(&full));
    // A retry is answered as before, recording nothing.
    let journal = app.journal(&t.auditor, LEDGER).await;
    let again = registry.set_policy(request).await.expect("a retry").into_inner();
    assert_eq!(again.entry, set.entry);
    // One version over the step, and none over the first seeded date.
    let half = pb::PolicyParams { subsidy_ratio: "0.5".into(), ..full.clone() };
    let second = registry.set_policy(policy_from("2024-01-01", half.clone())).await;
    expect_exists(second, "POLICY_VERSION_EXISTS");
    let first = registry.set_policy(policy_from("2014-12-10", half)).await;
    expect_exists(first, "POLICY_VERSION_EXISTS");
    assert_eq!(app.journal(&t.auditor, LEDGER).await, journal, "nothing recorded");

    // 43,604 at 100% on each of its 91 days.
    let county = app.loan_subsidy(&t.finance, &id, "2024-03-20").await;
    assert_eq!(subsidies(&county), [december, march]);
    let w = county.lines[1].working.as_ref().unwrap();
    let ratios: Vec<(&str, &str)> =
        w.parts.iter().map(|p| (p.from.as_str(), p.ratio.as_str())).collect();
    assert_eq!(ratios, [("2023-12-21", "1")], "{w:?}");
    assert_eq!(app.policy_on(&t.auditor, "2024-01-01").await, full);
    assert_eq!(app.policy_on(&t.auditor, "2025-06-30").await, full);
    let listed = registry
        .list_policies(pb::ListPoliciesRequest { ledger_id: LEDGER.into(), ..Default::default() })
        .await
        .expect("ListPolicies")
        .into_inner()
        .versions;
    let dates: Vec<&str> = listed.iter().map(|v| v.effective_date.as_str()).collect();
    assert_eq!(dates, ["2014-12-10", "2024-01-01"]);
    assert_eq!(listed[1].params.as_ref(), Some(&full));
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// A loan marked misused earns nothing for any period, also one paid on time before the mark
/// (as of the day before, it still did). Refusals: a malformed loan id or date names the field;
/// a loan that does not exist, or is another bank's, is NOT_FOUND; a date too far ahead is
/// INVALID_ARGUMENT naming `as_of`; the operator is
/// PERMISSION_DENIED, a caller without a token UNAUTHENTICATED. Reading writes nothing.
async fn misuse_refusals_and_who_may_read(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 29_410).await;
    app.loans(&t.finance)
        .mark_misuse(pb::MarkMisuseRequest {
            request_id: rid("misuse"),
            loan_id: id.clone(),
            value_date: "2021-04-01".into(),
            falsely_obtained: false,
        })
        .await
        .expect("MarkMisuse");
    let before = app.loan_subsidy(&t.auditor, &id, "2021-03-31").await;
    assert_eq!(
        (standings(&before), before.subsidy_fen, before.misused),
        (vec![S::OnTime], 29_410, false)
    );
    let after = app.loan_subsidy(&t.auditor, &id, "2021-04-01").await;
    assert_eq!((standings(&after), after.subsidy_fen, after.misused), (vec![S::Misuse], 0, true));
    assert_eq!(after.lines[0].interest_paid_on_time_fen, 29_410);
    assert_eq!(subsidies(&after), [0]);

    let journal = app.journal(&t.auditor, LEDGER).await;
    let ask = |token: &str, loan_id: &str, as_of: &str| {
        let mut client = app.subsidy(token);
        let request = pb::GetLoanSubsidyRequest {
            loan_id: loan_id.into(),
            as_of: as_of.into(),
            through_seq: 0,
        };
        async move { client.get_loan_subsidy(request).await }
    };
    expect_invalid(ask(&t.auditor, "", "2021-04-01").await, "loan_id");
    expect_invalid(ask(&t.auditor, &id, "2021-02-30").await, "as_of");
    expect_code(ask(&t.auditor, "B1-NOPE", "2021-04-01").await, Code::NotFound);
    let other_bank = app.token(Role::Bank, "B2").await;
    expect_code(ask(&other_bank, &id, "2021-04-01").await, Code::NotFound);
    expect_code(ask(&t.operator, &id, "2021-04-01").await, Code::PermissionDenied);
    expect_code(ask("not-a-token", &id, "2021-04-01").await, Code::Unauthenticated);
    // A date to come: the subsidy as of it is not known yet (since 2026-12-07; one further
    // ahead than the loan's points can be worked out to was VALUE_DATE_OUT_OF_RANGE).
    expect_invalid(ask(&t.auditor, &id, "2199-01-01").await, "as_of");
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%d").to_string();
    expect_invalid(ask(&t.auditor, &id, &tomorrow).await, "as_of");
    // Without a date: as of the service's business day, long after the loan matured unpaid.
    let today = app.loan_subsidy(&t.bank, &id, "").await;
    assert!(today.as_of.as_str() > "2026-01-01", "{}", today.as_of);
    assert!(today.misused);

    assert_eq!(app.journal(&t.auditor, LEDGER).await, journal);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// DESIGN.md: "misused or falsely obtained loans" earn no subsidy. A loan falsely obtained (骗贷)
/// is marked with `MarkMisuse`'s `falsely_obtained`: recorded and shown as such (in the loan, its
/// history and a second mark's refusal), with a misuse mark's effects (no subsidy; the breach
/// rate). A retry is answered as before; the same request id for a plain misuse mark is another
/// request (`ALREADY_EXISTS`). Verify replays the mark with its flag.
async fn a_falsely_obtained_loan_is_marked_so(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 29_410).await;
    let mark = |request_id: &str, falsely_obtained: bool| pb::MarkMisuseRequest {
        request_id: request_id.into(),
        loan_id: id.clone(),
        value_date: "2021-04-01".into(),
        falsely_obtained,
    };
    let mut loans = app.loans(&t.finance);
    let marked = loans.mark_misuse(mark("false-1", true)).await.expect("MarkMisuse").into_inner();
    let l = marked.loan.as_ref().expect("the loan");
    assert_eq!((l.misuse_since.as_str(), l.falsely_obtained), ("2021-04-01", true));
    let again = loans.mark_misuse(mark("false-1", true)).await.expect("a retry").into_inner();
    assert_eq!(again.entry, marked.entry);
    expect_code(loans.mark_misuse(mark("false-1", false)).await, Code::AlreadyExists);
    let second =
        expect_refused(loans.mark_misuse(mark("false-2", false)).await, "MISUSE_ALREADY_MARKED");
    assert!(second.message().contains("already marked as falsely obtained"), "{second:?}");
    assert!(app.get_loan(&t.bank, &id).await.falsely_obtained);
    assert!(!app.get_loan_as_of(&t.bank, &id, "2021-03-31").await.falsely_obtained, "not yet");
    let history = app.history(&t.auditor, &id).await;
    let json = &history.last().expect("the mark").command_json;
    assert!(json.ends_with(r#""falsely_obtained":true}"#), "{json}");
    // The breach rate, the contract's doubled (7.7%), on the principal from the mark's day:
    // 5,000,000 × 81 days (04-01 ..= 06-20) × 7.7% / 360 = 86,625.00 by the June point.
    let june = app.get_loan_as_of(&t.bank, &id, "2021-06-20").await;
    assert_eq!(june.penalty_fen, 86_625, "{june:?}");
    // No subsidy, also for the quarter paid on time before the mark.
    let register = app.loan_subsidy(&t.auditor, &id, "2021-04-01").await;
    assert_eq!(
        (standings(&register), register.subsidy_fen, register.misused),
        (vec![S::Misuse], 0, true)
    );
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// `ListSubsidyRegister`: the lines due in March 2021 of the ledger's three loans (two of B1,
/// one of B2), one message a loan in loan id order, with township and village: paid on time,
/// paid late, unpaid. The June lines are outside the window; a loan's message is its
/// `GetLoanSubsidy` with only the lines in the window. A bank lists its own loans, naming
/// itself; refusals name the field or the rule.
async fn a_ledger_register_lists_a_quarter_line_by_line(backend: Backend) {
    let Some((app, t, first, second)) = with_two_disbursed_loans(backend).await else {
        return;
    };
    app.register_bank(&t.operator, "B2").await;
    app.register_household(&t.finance, "H003", "19800517").await;
    let b2 = app.token(Role::Bank, "B2").await;
    let third = "B2-C003".to_string();
    let contract = pb::CreateLoanRequest { bank_id: "B2".into(), ..standard_loan("C003", "H003") };
    app.create_loan(&b2, contract).await;
    app.disburse(&b2, &third, "2021-01-25").await;
    for (id, date) in [("q1", "2021-03-20"), ("q2", "2021-06-20")] {
        app.loans(&t.finance)
            .settle_loans(pb::SettleLoansRequest {
                request_id: rid(id),
                ledger_id: LEDGER.into(),
                bank_id: String::new(),
                settlement_date: date.into(),
            })
            .await
            .expect("SettleLoans");
        if date == "2021-03-20" {
            app.repay(&t.bank, &first, "2021-03-20", 29_410).await;
            app.repay(&t.bank, &second, "2021-03-25", 40_000).await;
        }
    }
    let list_as_of = async |token: &str, bank_id: &str, from: &str, to: &str, as_of: &str| {
        let request = pb::ListSubsidyRegisterRequest {
            ledger_id: LEDGER.into(),
            bank_id: bank_id.into(),
            due_from: from.into(),
            due_to: to.into(),
            as_of: as_of.into(),
            through_seq: 0,
        };
        match app.subsidy(token).list_subsidy_register(request).await {
            Ok(stream) => collect(stream.into_inner()).await.map(tonic::Response::new),
            Err(e) => Err(e),
        }
    };
    let list = async |token: &str, bank_id: &str, from: &str, to: &str| {
        list_as_of(token, bank_id, from, to, "2021-06-20").await
    };
    let march =
        list(&t.finance, "", "2021-03-01", "2021-03-31").await.expect("the register").into_inner();
    let ids: Vec<&str> = march.iter().map(|s| s.loan_id.as_str()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str(), third.as_str()]);
    let standings: Vec<Vec<S>> = march.iter().map(standings).collect();
    assert_eq!(standings, [vec![S::OnTime], vec![S::PaidLate], vec![S::Overdue]]);
    for s in &march {
        assert_eq!((s.township.as_str(), s.village.as_str()), ("城厢镇", "东风村"), "{s:?}");
        assert_eq!((s.principal_fen, s.as_of.as_str()), (STANDARD_PRINCIPAL_FEN, "2021-06-20"));
        assert_eq!(s.lines[0].due_date, "2021-03-20");
        assert_eq!(s.interest_settled_fen, 29_410);
    }
    assert_eq!(march.iter().map(|s| s.subsidy_fen).collect::<Vec<_>>(), [29_410, 0, 0]);
    assert_eq!(march[2].household_id, "H003");
    // A loan's message is its own register with the lines in the window.
    let mut whole = app.loan_subsidy(&t.auditor, &first, "2021-06-20").await;
    assert_eq!(whole.lines.len(), 2);
    whole.lines.truncate(1);
    whole.interest_settled_fen = 29_410;
    whole.interest_paid_fen = 29_410;
    assert_eq!(march[0], whole);
    let half_year = list(&t.auditor, "", "2021-01-01", "2021-06-30").await.unwrap().into_inner();
    assert_eq!(half_year.iter().map(|s| s.lines.len()).collect::<Vec<_>>(), [2, 2, 2]);
    assert!(
        list(&t.finance, "", "2021-04-01", "2021-06-19").await.unwrap().into_inner().is_empty()
    );
    // A list computes its loans from their stored states (every event is before the date), a
    // single loan by replaying its history: the same registers, the September point (not yet
    // settled by a run) settled on the date by both.
    let year = list_as_of(&t.finance, "", "2021-01-01", "2021-12-31", "2021-09-30").await;
    let year = year.expect("the year's register").into_inner();
    assert_eq!(year.iter().map(|s| s.lines.len()).collect::<Vec<_>>(), [3, 3, 3]);
    for s in &year {
        assert!(!s.lines[2].recorded && s.lines[1].recorded, "{s:?}");
        assert_eq!(s, &app.loan_subsidy(&t.auditor, &s.loan_id, "2021-09-30").await);
    }

    let own = list(&t.bank, BANK, "2021-03-01", "2021-03-31").await.unwrap().into_inner();
    assert_eq!(
        own.iter().map(|s| s.loan_id.as_str()).collect::<Vec<_>>(),
        [first.as_str(), second.as_str()]
    );
    let only_b2 = list(&t.finance, "B2", "2021-03-01", "2021-03-31").await.unwrap().into_inner();
    assert_eq!(only_b2.len(), 1);
    expect_invalid(list(&t.bank, "", "2021-03-01", "2021-03-31").await, "bank_id");
    expect_code(list(&t.bank, "B2", "2021-03-01", "2021-03-31").await, Code::PermissionDenied);
    expect_code(list(&t.operator, "", "2021-03-01", "2021-03-31").await, Code::PermissionDenied);
    expect_code(list(&t.finance, "B9", "2021-03-01", "2021-03-31").await, Code::NotFound);
    expect_invalid(list(&t.finance, "", "", "2021-03-31").await, "due_from");
    expect_invalid(list(&t.finance, "", "2021-03-01", "2021-02-28").await, "due_to");
    let mut elsewhere = app.subsidy(&t.finance);
    let request = pb::ListSubsidyRegisterRequest {
        ledger_id: LEDGER.into(),
        due_from: "2021-03-01".into(),
        due_to: "2021-03-31".into(),
        as_of: "not a date".into(),
        ..Default::default()
    };
    expect_invalid(elsewhere.list_subsidy_register(request).await, "as_of");
    let other_ledger = app.token(Role::Finance, "450122").await;
    expect_code(list(&other_ledger, "", "2021-03-01", "2021-03-31").await, Code::PermissionDenied);
    app.finish().await;
}

/// Two tranches paid out on one settlement 20th leave two one-day interest segments on it
/// (before 2026-12-04 the register refused such a journal, INTERNAL): the June period starts
/// on that 20th, which also ended the March period, its days weighted by the principal on each,
/// 积数 recomputed here.
async fn tranches_paid_out_on_one_20th(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = loan_id("C201");
    app.create_loan(&t.bank, standard_loan("C201", HOUSEHOLD)).await;
    for (date, amount) in
        [("2021-01-25", 2_000_000), ("2021-03-20", 1_000_000), ("2021-03-20", 2_000_000)]
    {
        app.loans(&t.bank)
            .disburse(pb::DisburseRequest {
                request_id: rid("tranche"),
                loan_id: id.clone(),
                value_date: date.into(),
                amount_fen: amount,
            })
            .await
            .expect("Disburse");
    }
    let march = standard_interest(2_000_000, 55);
    app.repay(&t.bank, &id, "2021-03-20", march).await;
    // The 20th of March ends the first period on 2,000,000; the two tranches of that day bear
    // it in the next: 3,000,000 on the 20th, then 5,000,000 for 92 days.
    let jishu = 3_000_000 + 5_000_000 * 92;
    let june = (i128::from(jishu) * 385 + 1_800_000) as i64 / 3_600_000;
    let s = app.loan_subsidy(&t.auditor, &id, "2021-06-21").await;
    assert_eq!(standings(&s), [S::OnTime, S::Overdue]);
    let line = &s.lines[1];
    assert_eq!(
        (line.period_start.as_str(), line.period_end.as_str()),
        ("2021-03-20", "2021-06-20")
    );
    let w = line.working.as_ref().unwrap();
    assert_eq!((w.days, w.jishu), (93, jishu));
    assert!(
        (line.interest_settled_fen - june).abs() <= 1,
        "{} vs {june}",
        line.interest_settled_fen
    );
    assert_eq!(s.lines[0].interest_settled_fen, march);
    app.finish().await;
}

/// Paid off on 2021-05-01, the loan's interest from 2021-03-21 through 2021-04-30 is settled
/// by the payoff and paid with it: a period of its own, due that day, on time.
async fn an_early_payoff_settles_its_own_period(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 29_410).await;
    app.pay_off(&t.bank, &id, "2021-05-01").await;
    let s = app.loan_subsidy(&t.finance, &id, "2021-12-31").await;
    assert_eq!(standings(&s), [S::OnTime, S::OnTime]);
    let early = &s.lines[1];
    assert_eq!(
        (early.period_start.as_str(), early.period_end.as_str()),
        ("2021-03-21", "2021-04-30")
    );
    assert_eq!(
        (early.due_date.as_str(), early.last_paid_on.as_str()),
        ("2021-05-01", "2021-05-01")
    );
    let interest = standard_interest(STANDARD_PRINCIPAL_FEN, 41);
    assert_eq!((early.interest_settled_fen, early.interest_paid_on_time_fen), (interest, interest));
    assert!(early.recorded);
    assert_eq!(s.subsidy_fen, 29_410 + interest);
    app.finish().await;
}

/// The subsidy ratio table holds a hundred steps: `SetPolicy` refuses the version that would make
/// the hundred-and-first, naming `params.subsidy_ratio`, and every register stays answerable
/// (before 2026-12-06 the version was recorded, and every `GetLoanSubsidy` of the ledger was
/// `INTERNAL` from then on). A version that changes another figure only is no step and is taken.
async fn a_ratio_change_past_the_hundredth_is_refused(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 29_410).await;
    let current = app.policy_on(&t.finance, "2021-01-25").await;
    let mut registry = app.registry(&t.finance);
    let version = |day: u32, ratio: &str| {
        let date = chrono::NaiveDate::from_ymd_opt(2015, 1, 1).unwrap()
            + chrono::Days::new(u64::from(day));
        let params = pb::PolicyParams { subsidy_ratio: ratio.into(), ..current.clone() };
        policy_from(&date.format("%Y-%m-%d").to_string(), params)
    };
    // The seeded ledger has two steps (100% from 2014-12-10, 70% from 2024-01-01); 98 versions
    // alternating 90% and 100% make the hundred, each a step.
    for day in 0..98 {
        let ratio = if day % 2 == 0 { "0.9" } else { "1" };
        registry.set_policy(version(day, ratio)).await.expect("SetPolicy");
    }
    let journal = app.journal(&t.auditor, LEDGER).await;
    let refused =
        expect_invalid(registry.set_policy(version(98, "0.9")).await, "params.subsidy_ratio");
    assert!(refused.message().contains("101 steps"), "{refused:?}");
    assert_eq!(app.journal(&t.auditor, LEDGER).await, journal, "nothing recorded");
    // The same ratio as the version before it is no step.
    registry.set_policy(version(98, "1")).await.expect("no step");
    // The last version before the loan is at 100% (day 97): the March quarter in full.
    let register = app.loan_subsidy(&t.finance, &id, "2021-03-20").await;
    assert_eq!((standings(&register), register.subsidy_fen), (vec![S::OnTime], 29_410));
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// An auditor reproduces a register: `GetLoanSubsidy` answers the seq it was read through (the
/// journal's head), and asked through it again gives the same answer after a county's version
/// dated back over the period (100% from 2024-01-01), a loan contracted since and the loan's
/// misuse mark: the policy versions and events recorded after the seq are left out. So do `ListSubsidyRegister` (the
/// later loan left out), `GetPolicy` and `ListPolicies`, whose versions name the seq that
/// recorded them (the defaults: the ledger's creation). A seq past the head is the head; a
/// loan not contracted by the seq is NOT_FOUND, naming it.
async fn a_register_is_given_again_through_its_seq(backend: Backend) {
    let Some((app, t, id)) = with_a_loan_across_2024(backend).await else {
        return;
    };
    let (december, march) = (
        interest_bp(STANDARD_PRINCIPAL_FEN, 87, 345),
        interest_bp(STANDARD_PRINCIPAL_FEN, 91, 345),
    );
    app.repay(&t.bank, &id, "2023-12-20", december).await;
    app.repay(&t.bank, &id, "2024-03-20", march).await;
    let journal = app.journal(&t.auditor, LEDGER).await;
    let head = journal.last().expect("entries").seq;
    let created = journal.iter().find(|e| e.kind == "ledger.created").expect("created").seq;
    let get = async |loan_id: &str, through_seq: u64| {
        let request = pb::GetLoanSubsidyRequest {
            loan_id: loan_id.into(),
            as_of: "2024-03-20".into(),
            through_seq,
        };
        app.subsidy(&t.auditor).get_loan_subsidy(request).await
    };
    let before = get(&id, 0).await.expect("the register").into_inner();
    assert_eq!(subsidies(&before), [december, 32_104]);
    assert_eq!(before.through_seq, head);
    let policy = async |as_of: &str, through_seq: u64| {
        let request =
            pb::GetPolicyRequest { ledger_id: LEDGER.into(), as_of: as_of.into(), through_seq };
        app.registry(&t.auditor).get_policy(request).await.expect("GetPolicy").into_inner()
    };
    let national = policy("2024-03-20", 0).await;
    assert_eq!(national.recorded_seq, created);
    let national_ratio = national.params.as_ref().expect("params").subsidy_ratio.clone();
    assert_eq!(national_ratio, "0.7");

    // Dated back over the March period: 100% from the national step's day.
    let full = pb::PolicyParams { subsidy_ratio: "1".into(), ..national.params.clone().unwrap() };
    let mut registry = app.registry(&t.finance);
    let set = registry.set_policy(policy_from("2024-01-01", full.clone())).await;
    let set_seq = set.expect("SetPolicy").into_inner().entry.expect("its entry").seq;
    app.register_household(&t.finance, "H002", "19750301").await;
    let later_id = loan_id("C102");
    let contract = pb::CreateLoanRequest {
        annual_rate: "0.0345".into(),
        ..standard_loan_on("C102", "H002", "2023-12-25")
    };
    app.create_loan(&t.bank, contract).await;
    app.disburse(&t.bank, &later_id, "2023-12-25").await;

    let now = get(&id, 0).await.expect("the register").into_inner();
    assert_eq!(subsidies(&now), [december, march], "the county's 100% from 2024-01-01");
    let mark = pb::MarkMisuseRequest {
        request_id: rid("misuse"),
        loan_id: id.clone(),
        value_date: "2024-03-20".into(),
        falsely_obtained: false,
    };
    app.loans(&t.bank).mark_misuse(mark).await.expect("MarkMisuse");
    let now = get(&id, 0).await.expect("the register").into_inner();
    assert!(now.misused && now.subsidy_fen == 0, "{now:?}");
    assert!(now.through_seq > set_seq, "{} after {set_seq}", now.through_seq);
    let again = get(&id, head).await.expect("the register through its seq").into_inner();
    assert_eq!(again, before);
    let past_the_head = get(&id, now.through_seq + 1_000).await.expect("the register");
    assert_eq!(past_the_head.into_inner(), now);
    let not_yet = expect_code(get(&later_id, head).await, Code::NotFound);
    assert!(not_yet.message().contains(&format!("seq {head}")), "{not_yet:?}");

    // The policy known then, and now.
    let then = policy("2024-03-20", head).await;
    assert_eq!(then, national);
    let county = policy("2024-03-20", 0).await;
    assert_eq!((county.params, county.recorded_seq), (Some(full.clone()), set_seq));
    assert_eq!(policy("2024-03-20", set_seq).await.recorded_seq, set_seq, "its own seq counts");
    assert_eq!(policy("2024-03-20", set_seq - 1).await, national);
    let list = async |through_seq: u64| recorded_versions(&app, &t.auditor, through_seq).await;
    let at = |date: &str, seq: u64| (date.to_string(), seq);
    assert_eq!(list(head).await, [at("2014-12-10", created), at("2024-01-01", created)]);
    assert_eq!(list(0).await, [at("2014-12-10", created), at("2024-01-01", set_seq)]);

    // The ledger's register of March 2024: the later loan's line is listed now, not through
    // the seq, and the first loan's is the one given before.
    let register_of = async |due_to: &str, through_seq: u64| {
        let request = pb::ListSubsidyRegisterRequest {
            ledger_id: LEDGER.into(),
            bank_id: String::new(),
            due_from: "2024-03-01".into(),
            due_to: due_to.into(),
            as_of: "2024-03-20".into(),
            through_seq,
        };
        let stream = app.subsidy(&t.auditor).list_subsidy_register(request).await;
        let stream = stream.expect("ListSubsidyRegister");
        let header = stream.metadata().get("loanledger-through-seq").expect("the header");
        let header: u64 = header.to_str().expect("ASCII").parse().expect("a seq");
        (header, collect(stream.into_inner()).await.expect("registers"))
    };
    let register = async |through_seq: u64| {
        let (header, registers) = register_of("2024-03-31", through_seq).await;
        assert!(registers.iter().all(|r| r.through_seq == header), "{header}: {registers:?}");
        registers
    };
    // No line due in the window: the seq read through is in the header alone.
    let (header, none) = register_of("2024-03-02", 0).await;
    assert!(none.is_empty() && header == now.through_seq, "{header}: {none:?}");
    assert_eq!(register_of("2024-03-02", head).await.0, head);
    let listed_now = register(0).await;
    let loans: Vec<&str> = listed_now.iter().map(|s| s.loan_id.as_str()).collect();
    assert_eq!(loans, [id.as_str(), later_id.as_str()]);
    assert_eq!(listed_now[0].through_seq, now.through_seq);
    let listed_then = register(head).await;
    let expected = pb::LoanSubsidy {
        lines: before.lines[1..].to_vec(),
        interest_settled_fen: march,
        interest_paid_fen: march,
        subsidy_fen: 32_104,
        ..before.clone()
    };
    assert_eq!(listed_then, [expected]);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// A database migrated before policy versions kept their seqs takes them from the journal: the
/// column taken away and the migration run again, the versions name the same seqs (the defaults
/// the ledger's creation, the county's own its `policy.set`) and the journal verifies. A seq
/// changed behind the service's back is reported by verify.
async fn policy_versions_take_their_seqs_from_the_journal(backend: Backend) {
    let Some((app, t, _id)) = with_a_loan_across_2024(backend).await else {
        return;
    };
    let national = app.policy_on(&t.finance, "2024-03-20").await;
    let mut registry = app.registry(&t.finance);
    for (date, ratio) in [("2024-01-01", "1"), ("2019-07-01", "0.9"), ("2025-01-01", "0.5")] {
        let params = pb::PolicyParams { subsidy_ratio: ratio.into(), ..national.clone() };
        registry.set_policy(policy_from(date, params)).await.expect("SetPolicy");
    }
    let list = async || recorded_versions(&app, &t.auditor, 0).await;
    let recorded = list().await;
    let seqs: Vec<u64> = recorded.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(seqs.len(), 4, "{recorded:?}");
    assert!(seqs[0] < seqs[2] && seqs[2] < seqs[1] && seqs[1] < seqs[3], "{recorded:?}");

    let migration = (
        include_str!("../../migrations/sqlite/0019_policy_seq.sql"),
        include_str!("../../migrations/postgres/0022_policy_seq.sql"),
    );
    app.rerun_migration("alter table policy_version drop column seq", migration).await;
    assert_eq!(list().await, recorded);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");

    let moved = "update policy_version set seq = seq + 1 where effective_date = '2025-01-01'";
    app.behind_the_back("policy_version", moved).await.expect("a seq changed");
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok);
    let problem = format!("the policy versions' seqs of ledger {LEDGER} differ from the journal");
    assert!(v.problems.iter().any(|p| p.contains(&problem)), "{v:?}");
    app.finish().await;
}

/// The county sets a version from 2018 with five days of grace, then one from 2020 with the
/// national figures again. The 2024 step carries the 2020 version on, its figures then the
/// step's own: it still stands from the 2020 version's seq, as known at each seq (until
/// 2026-12-07 late night it was answered from the ledger's creation, figures being compared).
async fn a_step_carrying_the_national_figures_stands_from_the_version_it_carries(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let policy = async |as_of: &str, through_seq: u64| {
        let request =
            pb::GetPolicyRequest { ledger_id: LEDGER.into(), as_of: as_of.into(), through_seq };
        app.registry(&t.auditor).get_policy(request).await.expect("GetPolicy").into_inner()
    };
    let national = policy("2017-01-01", 0).await.params.expect("the national figures");
    let graced = pb::PolicyParams { grace_days: 5, ..national.clone() };
    let mut registry = app.registry(&t.finance);
    let set = registry.set_policy(policy_from("2018-01-01", graced)).await.expect("SetPolicy");
    let graced_seq = set.into_inner().entry.expect("its entry").seq;
    let set = registry.set_policy(policy_from("2020-01-01", national.clone())).await;
    let national_seq = set.expect("SetPolicy").into_inner().entry.expect("its entry").seq;

    let step = policy("2024-06-01", 0).await;
    assert_eq!(step.effective_date, "2024-01-01");
    let params = step.params.clone().expect("params");
    assert_eq!((params.grace_days, params.subsidy_ratio.as_str()), (national.grace_days, "0.7"));
    assert_eq!(step.recorded_seq, national_seq, "from the version it carries");
    let then = policy("2024-06-01", graced_seq).await;
    assert_eq!((then.params.expect("params").grace_days, then.recorded_seq), (5, graced_seq));
    let at = |date: &str, seq: u64| (date.to_string(), seq);
    let listed = recorded_versions(&app, &t.auditor, 0).await;
    assert_eq!(
        listed[1..],
        [
            at("2018-01-01", graced_seq),
            at("2020-01-01", national_seq),
            at("2024-01-01", national_seq)
        ]
    );
    app.finish().await;
}
