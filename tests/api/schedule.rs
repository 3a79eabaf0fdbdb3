//! PreviewSchedule through the real gRPC client, and server reflection.
//!
//! Every expected figure is worked by hand in the comments (and, where a schedule has many
//! instalments, recomputed here in integer arithmetic independently of the service): amounts are
//! in fen, rates in decimal fractions per year. Day-basis interest is 积数 × annual rate / 360,
//! where 积数 (jishu) = principal × days, both ends of a period inclusive; periodic interest (等额本息,
//! 等额本金) is opening principal × annual rate / periods per year. Each figure is rounded to the
//! fen once, half up unless the request says otherwise.

use tokio_stream::StreamExt;
use tonic::Code;
use tonic_reflection::pb::{v1, v1alpha};
use tonic_types::StatusExt;

use super::loan;
use crate::common::*;
use loanledger::api::pb;
use loanledger::api::pb::loan_service_client::LoanServiceClient;

on_both_backends!(
    preview_bullet_quarterly,
    preview_equal_instalment_monthly,
    preview_equal_principal_and_interest_with_principal,
    preview_rounding_options,
    preview_bad_input_roles_and_no_writes,
    reflection_lists_services_without_a_token,
    paid_as_scheduled_when_maturity_is_on_the_21st,
    a_frequency_left_out_is_the_programmes_default,
);

/// Rounds `num / den` (both non-negative) to an integer: half up, half to even, or down.
fn half_up(num: i128, den: i128) -> i64 {
    ((2 * num + den) / (2 * den)) as i64
}

fn half_even(num: i128, den: i128) -> i64 {
    let (q, r) = (num / den, num % den);
    let up = 2 * r > den || (2 * r == den && q % 2 == 1);
    (q + i128::from(up)) as i64
}

fn down(num: i128, den: i128) -> i64 {
    (num / den) as i64
}

/// Terms on the standard disbursement date 2021-01-25, half-up rounding.
fn terms(
    principal_fen: i64,
    annual_rate: &str,
    term_months: u32,
    method: pb::RepaymentMethod,
    frequency: pb::SettlementFrequency,
) -> pb::PreviewScheduleRequest {
    pb::PreviewScheduleRequest {
        principal_fen,
        annual_rate: annual_rate.into(),
        disbursement_date: CONTRACT_DATE.into(),
        term_months,
        maturity_date: String::new(),
        repayment_method: method as i32,
        settlement_frequency: frequency as i32,
        rounding: String::new(),
    }
}

/// The standard loan's terms: 5,000,000 at 3.85% for 12 months, bullet, quarterly.
fn standard_terms() -> pb::PreviewScheduleRequest {
    terms(
        STANDARD_PRINCIPAL_FEN,
        STANDARD_RATE,
        12,
        pb::RepaymentMethod::Bullet,
        pb::SettlementFrequency::Quarterly,
    )
}

async fn preview(
    app: &TestApp,
    token: &str,
    req: pb::PreviewScheduleRequest,
) -> pb::PreviewScheduleResponse {
    let what = format!("PreviewSchedule {req:?}");
    app.loans(token)
        .preview_schedule(req)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
        .into_inner()
}

fn working(i: &pb::Instalment) -> &pb::InterestWorking {
    i.working.as_ref().expect("every instalment carries its working")
}

/// Checks the sums every schedule must satisfy: totals are the sums of the instalments, each
/// instalment's total is its principal plus interest, the remaining principal falls by each
/// instalment's principal to exactly zero, and each working's interest is the instalment's.
fn check_consistent(s: &pb::PreviewScheduleResponse, principal: i64) {
    let principal_sum: i64 = s.instalments.iter().map(|i| i.principal_due_fen).sum();
    let interest_sum: i64 = s.instalments.iter().map(|i| i.interest_due_fen).sum();
    assert_eq!(principal_sum, principal, "{s:?}");
    assert_eq!(s.total_principal_fen, principal, "{s:?}");
    assert_eq!(s.total_interest_fen, interest_sum, "{s:?}");
    let mut remaining = principal;
    for (k, i) in s.instalments.iter().enumerate() {
        assert_eq!(i.number as usize, k + 1, "{i:?}");
        assert_eq!(i.total_due_fen, i.principal_due_fen + i.interest_due_fen, "{i:?}");
        remaining -= i.principal_due_fen;
        assert_eq!(i.remaining_principal_fen, remaining, "{i:?}");
        assert_eq!(working(i).interest_fen, i.interest_due_fen, "{i:?}");
    }
    assert_eq!(remaining, 0, "principal amortises to exactly zero");
}

/// DESIGN.md's worked figure as a preview: 5,000,000 at 3.85% from 2021-01-25 for 12 months,
/// bullet principal, interest settled on the 20th of March, June, September and December.
async fn preview_bullet_quarterly(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let s = preview(&app, &t.bank, standard_terms()).await;

    // Maturity: 2021-01-25 + 12 months = 2022-01-25; the last period ends the day before.
    assert_eq!(s.maturity_date, "2022-01-25");
    assert!(s.level_payment.is_none(), "a level payment is for 等额本息 only");
    // Periods (both ends inclusive) and days:
    //   2021-01-25..=2021-03-20: 7 (Jan 25-31) + 28 + 20 = 55
    //   2021-03-21..=2021-06-20: 11 + 30 + 31 + 20 = 92
    //   2021-06-21..=2021-09-20: 10 + 31 + 31 + 20 = 92
    //   2021-09-21..=2021-12-20: 10 + 31 + 30 + 20 = 91
    //   2021-12-21..=2022-01-24: 11 + 24 = 35
    // Interest = 5,000,000 × days × 0.0385 / 360:
    //   55: 275,000,000 × 0.0385 / 360 = 10,587,500 / 360 = 29,409.722… → 29,410
    //   92: 460,000,000 × 0.0385 / 360 = 17,710,000 / 360 = 49,194.444… → 49,194
    //   91: 455,000,000 × 0.0385 / 360 = 17,517,500 / 360 = 48,659.722… → 48,660
    //   35: 175,000,000 × 0.0385 / 360 =  6,737,500 / 360 = 18,715.277… → 18,715
    // Total 29,410 + 49,194 + 49,194 + 48,660 + 18,715 = 195,173.
    let expected = [
        ("2021-01-25", "2021-03-20", "2021-03-20", 55, 29_410, "29409.7222"),
        ("2021-03-21", "2021-06-20", "2021-06-20", 92, 49_194, "49194.4444"),
        ("2021-06-21", "2021-09-20", "2021-09-20", 92, 49_194, "49194.4444"),
        ("2021-09-21", "2021-12-20", "2021-12-20", 91, 48_660, "48659.7222"),
        ("2021-12-21", "2022-01-24", "2022-01-25", 35, 18_715, "18715.2777"),
    ];
    assert_eq!(s.instalments.len(), expected.len(), "{s:?}");
    for (i, &(start, end, due, days, interest, unrounded)) in s.instalments.iter().zip(&expected) {
        assert_eq!((i.period_start.as_str(), i.period_end.as_str()), (start, end), "{i:?}");
        assert_eq!(i.due_date, due, "{i:?}");
        assert_eq!(i.interest_due_fen, interest, "{i:?}");
        assert_eq!(interest, standard_interest(STANDARD_PRINCIPAL_FEN, days), "hand figure");
        assert!(!i.absorbs_rounding, "{i:?}");
        let w = working(i);
        assert_eq!(w.basis, "day_basis", "{w:?}");
        assert_eq!((w.period_start.as_str(), w.period_end.as_str()), (start, end), "{w:?}");
        assert_eq!(i64::from(w.days), days, "{w:?}");
        // 积数 = 5,000,000 fen outstanding on each of the period's days.
        assert_eq!(w.jishu, STANDARD_PRINCIPAL_FEN * days, "{w:?}");
        assert_eq!(w.annual_rate, "0.0385", "{w:?}");
        // 0.0385 / 360 = 0.000106944…
        assert!(w.daily_rate.starts_with("0.000106944"), "{w:?}");
        assert!(w.unrounded_fen.starts_with(unrounded), "{w:?}");
        assert_eq!(w.rounding, "half_up", "{w:?}");
        assert_eq!(w.interest_fen, interest, "{w:?}");
        assert_eq!((w.opening_principal_fen, w.periods_per_year), (0, 0), "{w:?}");
    }
    // Principal only at maturity.
    for i in &s.instalments[..4] {
        assert_eq!(i.principal_due_fen, 0, "{i:?}");
        assert_eq!(i.remaining_principal_fen, STANDARD_PRINCIPAL_FEN, "{i:?}");
        assert_eq!(i.total_due_fen, i.interest_due_fen, "{i:?}");
    }
    let last = s.instalments.last().unwrap();
    assert_eq!(last.principal_due_fen, 5_000_000);
    assert_eq!(last.remaining_principal_fen, 0);
    assert_eq!(last.total_due_fen, 5_000_000 + 18_715);
    assert_eq!(s.total_interest_fen, 195_173);
    assert_eq!(s.total_principal_fen, 5_000_000);
    check_consistent(&s, 5_000_000);

    // The same term given as a maturity date gives the same schedule.
    let by_date = preview(
        &app,
        &t.bank,
        pb::PreviewScheduleRequest {
            term_months: 0,
            maturity_date: "2022-01-25".into(),
            ..standard_terms()
        },
    )
    .await;
    assert_eq!(by_date, s);
    app.finish().await;
}

/// 等额本息: 5,000,000 at 4.75% over 36 monthly instalments.
async fn preview_equal_instalment_monthly(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let s = preview(
        &app,
        &t.auditor,
        terms(
            5_000_000,
            "0.0475",
            36,
            pb::RepaymentMethod::EqualInstalment,
            pb::SettlementFrequency::Monthly,
        ),
    )
    .await;
    assert_eq!(s.maturity_date, "2024-01-25");

    // r = 0.0475 / 12 = 0.00395833…; (1 + r)^36 = 1.18539…;
    // P·r·(1+r)^36 / ((1+r)^36 − 1) = 149,293.9086… → 149,294 (1,492.94 yuan, issue 3's figure).
    let level = s.level_payment.as_ref().expect("等额本息 has a level payment");
    assert_eq!(level.payment_fen, 149_294, "{level:?}");
    assert_eq!(level.periods, 36, "{level:?}");
    assert!(level.periodic_rate.starts_with("0.0039583333"), "{level:?}");
    assert!(level.unrounded_fen.starts_with("149293.908"), "{level:?}");
    assert_eq!(level.rounding, "half_up", "{level:?}");

    assert_eq!(s.instalments.len(), 36, "{s:?}");
    check_consistent(&s, 5_000_000);

    // First instalment: 5,000,000 × 0.0475 / 12 = 237,500 / 12 = 19,791.666… → 19,792;
    // principal 149,294 − 19,792 = 129,502.
    let first = &s.instalments[0];
    assert_eq!(first.interest_due_fen, 19_792, "{first:?}");
    assert_eq!(first.principal_due_fen, 129_502, "{first:?}");
    assert_eq!(first.remaining_principal_fen, 5_000_000 - 129_502, "{first:?}");
    assert_eq!(
        (first.period_start.as_str(), first.due_date.as_str()),
        ("2021-01-25", "2021-02-25")
    );
    assert_eq!(first.period_end, "2021-02-24");
    let w = working(first);
    assert_eq!(w.basis, "periodic", "{w:?}");
    assert_eq!(w.opening_principal_fen, 5_000_000, "{w:?}");
    assert_eq!(w.periods_per_year, 12, "{w:?}");
    assert!(w.periodic_rate.starts_with("0.0039583333"), "{w:?}");
    assert!(w.unrounded_fen.starts_with("19791.666"), "{w:?}");
    assert_eq!(w.interest_fen, 19_792, "{w:?}");

    // The whole schedule again, independently: interest_k = opening_k × 475 / 120,000 rounded
    // half up, principal_k = 149,294 − interest_k, the last taking what remains.
    let mut remaining: i64 = 5_000_000;
    for (k, i) in s.instalments.iter().enumerate() {
        let interest = half_up(i128::from(remaining) * 475, 120_000);
        assert_eq!(working(i).opening_principal_fen, remaining, "{i:?}");
        assert_eq!(i.interest_due_fen, interest, "instalment {}: {i:?}", k + 1);
        let principal = if k == 35 { remaining } else { 149_294 - interest };
        assert_eq!(i.principal_due_fen, principal, "instalment {}: {i:?}", k + 1);
        remaining -= principal;
        if k < 35 {
            assert_eq!(i.total_due_fen, 149_294, "instalment {}: {i:?}", k + 1);
            assert!(!i.absorbs_rounding, "{i:?}");
        }
    }
    // The last instalment (worked out to the fen with exact fractions): opening principal
    // 148,703, interest 148,703 × 0.0475 / 12 = 588.62… → 589, total 148,703 + 589 = 149,292,
    // two fen below the level payment: it absorbs the rounding of the 35 before it.
    let last = s.instalments.last().unwrap();
    assert!(last.absorbs_rounding, "{last:?}");
    assert_eq!(last.remaining_principal_fen, 0, "{last:?}");
    assert_eq!((last.principal_due_fen, last.interest_due_fen), (148_703, 589), "{last:?}");
    assert_eq!(last.total_due_fen, 149_292, "{last:?}");
    assert_eq!(last.due_date, "2024-01-25");
    // Σ interest = 35 × 149,294 + 149,292 − 5,000,000 = 374,582.
    assert_eq!(s.total_interest_fen, 35 * 149_294 + 149_292 - 5_000_000);
    assert_eq!(s.total_interest_fen, 374_582);
    app.finish().await;
}

/// 等额本金 quarterly over 12 months, and 利随本清, both 5,000,000 at 3.85% from 2021-01-25.
async fn preview_equal_principal_and_interest_with_principal(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;

    // 等额本金: 4 quarterly instalments of 5,000,000 / 4 = 1,250,000 principal, due on the 25th
    // (对日); interest = opening × 0.0385 / 4:
    //   5,000,000 × 0.009625 = 48,125
    //   3,750,000 × 0.009625 = 36,093.75 → 36,094
    //   2,500,000 × 0.009625 = 24,062.5  → 24,063 (half up)
    //   1,250,000 × 0.009625 = 12,031.25 → 12,031
    // Total 120,313.
    let s = preview(
        &app,
        &t.bank,
        terms(
            5_000_000,
            STANDARD_RATE,
            12,
            pb::RepaymentMethod::EqualPrincipal,
            pb::SettlementFrequency::Quarterly,
        ),
    )
    .await;
    assert_eq!(s.maturity_date, "2022-01-25");
    assert!(s.level_payment.is_none(), "{s:?}");
    let expected = [
        ("2021-01-25", "2021-04-24", "2021-04-25", 5_000_000, 48_125, 3_750_000),
        ("2021-04-25", "2021-07-24", "2021-07-25", 3_750_000, 36_094, 2_500_000),
        ("2021-07-25", "2021-10-24", "2021-10-25", 2_500_000, 24_063, 1_250_000),
        ("2021-10-25", "2022-01-24", "2022-01-25", 1_250_000, 12_031, 0),
    ];
    assert_eq!(s.instalments.len(), 4, "{s:?}");
    for (i, &(start, end, due, opening, interest, remaining)) in s.instalments.iter().zip(&expected)
    {
        assert_eq!(
            (i.period_start.as_str(), i.period_end.as_str(), i.due_date.as_str()),
            (start, end, due),
            "{i:?}"
        );
        assert_eq!(i.principal_due_fen, 1_250_000, "{i:?}");
        assert_eq!(i.interest_due_fen, interest, "{i:?}");
        assert_eq!(i.total_due_fen, 1_250_000 + interest, "{i:?}");
        assert_eq!(i.remaining_principal_fen, remaining, "{i:?}");
        let w = working(i);
        assert_eq!(w.basis, "periodic", "{w:?}");
        assert_eq!((w.opening_principal_fen, w.periods_per_year), (opening, 4), "{w:?}");
        assert_eq!(w.periodic_rate, "0.009625", "{w:?}");
    }
    assert_eq!(working(&s.instalments[2]).unrounded_fen, "24062.5");
    assert!(s.instalments[3].absorbs_rounding, "the last instalment takes what remains");
    assert_eq!(s.total_interest_fen, 120_313);
    check_consistent(&s, 5_000_000);

    // 利随本清: one instalment at maturity over 2021-01-25..=2022-01-24, 365 days:
    // 5,000,000 × 365 × 0.0385 / 360 = 70,262,500 / 360 = 195,173.611… → 195,174 (one rounding,
    // where the quarterly bullet rounds five times and totals 195,173).
    let s = preview(
        &app,
        &t.bank,
        terms(
            5_000_000,
            STANDARD_RATE,
            12,
            pb::RepaymentMethod::InterestWithPrincipal,
            pb::SettlementFrequency::AtMaturity,
        ),
    )
    .await;
    assert_eq!(s.maturity_date, "2022-01-25");
    assert_eq!(s.instalments.len(), 1, "{s:?}");
    let only = &s.instalments[0];
    assert_eq!(
        (only.period_start.as_str(), only.period_end.as_str(), only.due_date.as_str()),
        ("2021-01-25", "2022-01-24", "2022-01-25")
    );
    assert_eq!(only.principal_due_fen, 5_000_000, "{only:?}");
    assert_eq!(only.interest_due_fen, 195_174, "{only:?}");
    assert_eq!(only.interest_due_fen, standard_interest(5_000_000, 365));
    assert_eq!(only.total_due_fen, 5_000_000 + 195_174, "{only:?}");
    assert_eq!(only.remaining_principal_fen, 0, "{only:?}");
    let w = working(only);
    assert_eq!((w.basis.as_str(), w.days, w.jishu), ("day_basis", 365, 5_000_000 * 365), "{w:?}");
    assert!(w.unrounded_fen.starts_with("195173.611"), "{w:?}");
    assert_eq!((s.total_principal_fen, s.total_interest_fen), (5_000_000, 195_174));
    check_consistent(&s, 5_000_000);
    app.finish().await;
}

/// "half_up" (the default), "half_even" and "down", each applied to every settlement.
async fn preview_rounding_options(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let with = |req: pb::PreviewScheduleRequest, rounding: &str| pb::PreviewScheduleRequest {
        rounding: rounding.into(),
        ..req
    };
    let interests = |s: &pb::PreviewScheduleResponse| -> Vec<i64> {
        s.instalments.iter().map(|i| i.interest_due_fen).collect()
    };

    // Two ties, one below an even fen and one below an odd fen: 等额本金 of 48,000 fen at 3.85%,
    // quarterly over 12 months; interest = opening × 0.009625:
    //   48,000 → 462       36,000 → 346.5       24,000 → 231       12,000 → 115.5
    //   half_up:   462, 347, 231, 116 = 1,156
    //   half_even: 462, 346, 231, 116 = 1,155 (346.5 → 346 even; 115.5 → 116 even)
    //   down:      462, 346, 231, 115 = 1,154
    let small = terms(
        48_000,
        STANDARD_RATE,
        12,
        pb::RepaymentMethod::EqualPrincipal,
        pb::SettlementFrequency::Quarterly,
    );
    let openings: [i128; 4] = [48_000, 36_000, 24_000, 12_000];
    for (rounding, expected, total) in [
        ("", [462, 347, 231, 116], 1_156),
        ("half_up", [462, 347, 231, 116], 1_156),
        ("half_even", [462, 346, 231, 116], 1_155),
        ("down", [462, 346, 231, 115], 1_154),
    ] {
        let s = preview(&app, &t.bank, with(small.clone(), rounding)).await;
        assert_eq!(interests(&s), expected, "rounding {rounding:?}: {s:?}");
        assert_eq!(s.total_interest_fen, total, "rounding {rounding:?}");
        // The same figures in integers: opening × 385 / 40,000.
        let round = match rounding {
            "half_even" => half_even,
            "down" => down,
            _ => half_up,
        };
        let recomputed: Vec<i64> = openings.iter().map(|&o| round(o * 385, 40_000)).collect();
        assert_eq!(recomputed, expected, "hand figures for {rounding:?}");
        let shown = if rounding.is_empty() { "half_up" } else { rounding };
        for i in &s.instalments {
            assert_eq!(working(i).rounding, shown, "{i:?}");
            assert_eq!(i.principal_due_fen, 12_000, "{i:?}");
        }
        assert_eq!(working(&s.instalments[1]).unrounded_fen, "346.5");
        assert_eq!(working(&s.instalments[3]).unrounded_fen, "115.5");
        check_consistent(&s, 48_000);
    }

    // The standard 等额本金 (5,000,000): 36,093.75 and 24,062.5 and 12,031.25.
    //   half_even: 48,125, 36,094, 24,062, 12,031 = 120,312
    //   down:      48,125, 36,093, 24,062, 12,031 = 120,311
    let big = terms(
        5_000_000,
        STANDARD_RATE,
        12,
        pb::RepaymentMethod::EqualPrincipal,
        pb::SettlementFrequency::Quarterly,
    );
    let s = preview(&app, &t.bank, with(big.clone(), "half_even")).await;
    assert_eq!(interests(&s), [48_125, 36_094, 24_062, 12_031]);
    assert_eq!(s.total_interest_fen, 120_312);
    let s = preview(&app, &t.bank, with(big, "down")).await;
    assert_eq!(interests(&s), [48_125, 36_093, 24_062, 12_031]);
    assert_eq!(s.total_interest_fen, 120_311);

    // 利随本清, 195,173.611…: half up and half even 195,174; down 195,173.
    let lwp = terms(
        5_000_000,
        STANDARD_RATE,
        12,
        pb::RepaymentMethod::InterestWithPrincipal,
        pb::SettlementFrequency::AtMaturity,
    );
    for (rounding, expected) in [("half_up", 195_174), ("half_even", 195_174), ("down", 195_173)] {
        let s = preview(&app, &t.bank, with(lwp.clone(), rounding)).await;
        assert_eq!(interests(&s), [expected], "rounding {rounding}");
    }

    // The bullet's five settlements: 29,409.72…, 49,194.44…, 49,194.44…, 48,659.72…,
    // 18,715.27…; down gives 29,409 + 49,194 + 49,194 + 48,659 + 18,715 = 195,171.
    let s = preview(&app, &t.bank, with(standard_terms(), "down")).await;
    assert_eq!(interests(&s), [29_409, 49_194, 49_194, 48_659, 18_715]);
    assert_eq!(s.total_interest_fen, 195_171);

    // 等额本息 rounded down: the level payment 149,293.9086… → 149,293; first interest
    // 19,791.666… → 19,791, principal 149,293 − 19,791 = 129,502. With exact fractions the last
    // instalment then takes the remaining 148,720 plus floor(148,720 × 0.0475 / 12 = 588.68…) =
    // 588, i.e. 149,308.
    let s = preview(
        &app,
        &t.bank,
        with(
            terms(
                5_000_000,
                "0.0475",
                36,
                pb::RepaymentMethod::EqualInstalment,
                pb::SettlementFrequency::Monthly,
            ),
            "down",
        ),
    )
    .await;
    let level = s.level_payment.as_ref().expect("level payment");
    assert_eq!((level.payment_fen, level.rounding.as_str()), (149_293, "down"), "{level:?}");
    assert_eq!(
        (s.instalments[0].interest_due_fen, s.instalments[0].principal_due_fen),
        (19_791, 129_502)
    );
    let last = s.instalments.last().unwrap();
    assert_eq!((last.principal_due_fen, last.interest_due_fen), (148_720, 588), "{last:?}");
    assert_eq!(last.total_due_fen, 149_308, "{last:?}");
    check_consistent(&s, 5_000_000);

    // An unknown rounding mode is refused, naming the field.
    for bad in ["HALF_UP", "ceiling", "half-up"] {
        expect_invalid(
            app.loans(&t.bank).preview_schedule(with(standard_terms(), bad)).await,
            "rounding",
        );
    }
    app.finish().await;
}

/// Malformed terms are INVALID_ARGUMENT naming the field; a preview writes nothing; every role
/// may preview; without a token it is UNAUTHENTICATED.
async fn preview_bad_input_roles_and_no_writes(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let journal_before = app.journal(&t.auditor, LEDGER).await;

    let base = standard_terms();
    let cases: Vec<(&str, pb::PreviewScheduleRequest)> = vec![
        ("principal_fen", pb::PreviewScheduleRequest { principal_fen: 0, ..base.clone() }),
        ("principal_fen", pb::PreviewScheduleRequest { principal_fen: -1, ..base.clone() }),
        ("annual_rate", pb::PreviewScheduleRequest { annual_rate: "abc".into(), ..base.clone() }),
        ("annual_rate", pb::PreviewScheduleRequest { annual_rate: "".into(), ..base.clone() }),
        ("annual_rate", pb::PreviewScheduleRequest { annual_rate: "3.85%".into(), ..base.clone() }),
        (
            "maturity_date",
            pb::PreviewScheduleRequest {
                term_months: 12,
                maturity_date: "2022-01-25".into(),
                ..base.clone()
            },
        ),
        (
            "term_months",
            pb::PreviewScheduleRequest {
                term_months: 0,
                maturity_date: String::new(),
                ..base.clone()
            },
        ),
        (
            "settlement_frequency",
            pb::PreviewScheduleRequest {
                settlement_frequency: pb::SettlementFrequency::AtMaturity as i32,
                ..base.clone()
            },
        ),
        (
            "term_months",
            terms(
                5_000_000,
                STANDARD_RATE,
                10,
                pb::RepaymentMethod::EqualInstalment,
                pb::SettlementFrequency::Quarterly,
            ),
        ),
        ("repayment_method", pb::PreviewScheduleRequest { repayment_method: 99, ..base.clone() }),
        (
            "disbursement_date",
            pb::PreviewScheduleRequest { disbursement_date: "2021-02-30".into(), ..base.clone() },
        ),
        // Longer than 120 months (as term_months may be), given by its maturity: the maturity
        // is named.
        (
            "maturity_date",
            pb::PreviewScheduleRequest {
                term_months: 0,
                maturity_date: "2031-02-25".into(),
                ..base.clone()
            },
        ),
        (
            "maturity_date",
            pb::PreviewScheduleRequest {
                term_months: 0,
                maturity_date: "2071-02-25".into(),
                ..base.clone()
            },
        ),
        // Its periods run past the calendar's range: the date is named, not the principal.
        (
            "disbursement_date",
            pb::PreviewScheduleRequest { disbursement_date: "9999-12-01".into(), ..base.clone() },
        ),
    ];
    let mut loans = app.loans(&t.bank);
    for (field, req) in cases {
        let what = format!("{field}: {req:?}");
        let status = expect_invalid(loans.preview_schedule(req).await, field);
        assert!(!status.message().is_empty(), "{what}");
    }

    // 120 months to the day, given by its maturity, is previewed.
    let longest = pb::PreviewScheduleRequest {
        term_months: 0,
        maturity_date: "2031-01-25".into(),
        ..standard_terms()
    };
    let previewed = preview(&app, &t.bank, longest).await;
    assert_eq!(previewed.maturity_date, "2031-01-25", "{previewed:?}");

    // Every role may preview, with the same answer.
    let by_bank = preview(&app, &t.bank, standard_terms()).await;
    for token in [&t.auditor, &t.finance, &t.operator] {
        assert_eq!(preview(&app, token, standard_terms()).await, by_bank);
    }
    assert_eq!(by_bank.total_interest_fen, 195_173);

    // No token, or a token the server does not know.
    let mut anonymous = LoanServiceClient::new(app.channel());
    expect_code(anonymous.preview_schedule(standard_terms()).await, Code::Unauthenticated);
    expect_code(
        app.loans("not-a-token").preview_schedule(standard_terms()).await,
        Code::Unauthenticated,
    );

    // Nothing was written.
    let journal_after = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal_after.len(), journal_before.len());
    assert_eq!(journal_after, journal_before);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    assert_eq!(v.head_seq, journal_before.len() as u64);
    app.finish().await;
}

const SERVICES: [&str; 5] = [
    "loanledger.v1.RegistryService",
    "loanledger.v1.LoanService",
    "loanledger.v1.AuditService",
    "loanledger.v1.SubsidyService",
    "grpc.health.v1.Health",
];

/// Server reflection v1 and v1alpha answer without a token (what `grpcurl list` and Python's
/// grpcio reflection client use): the services, and the file that defines LoanService.
async fn reflection_lists_services_without_a_token(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };

    // v1
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel());
    let ask = |m: v1::server_reflection_request::MessageRequest| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let answers = client
        .server_reflection_info(tokio_stream::iter(vec![
            ask(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
            ask(v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                "loanledger.v1.LoanService".into(),
            )),
        ]))
        .await
        .expect("ServerReflectionInfo v1 without a token")
        .into_inner();
    let answers: Vec<v1::ServerReflectionResponse> =
        answers.map(|r| r.expect("a v1 reflection answer")).collect().await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    let names: Vec<String> = match answers[0].message_response.as_ref() {
        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(l)) => {
            l.service.iter().map(|s| s.name.clone()).collect()
        }
        other => panic!("v1 ListServices answered {other:?}"),
    };
    for service in SERVICES {
        assert!(names.iter().any(|n| n == service), "v1 lists {service}: {names:?}");
    }
    let files = match answers[1].message_response.as_ref() {
        Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(f)) => {
            f.file_descriptor_proto.clone()
        }
        other => panic!("v1 FileContainingSymbol answered {other:?}"),
    };
    check_defines_loan_service(&files);

    // v1alpha
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel());
    let ask = |m: v1alpha::server_reflection_request::MessageRequest| {
        v1alpha::ServerReflectionRequest { host: String::new(), message_request: Some(m) }
    };
    let answers = client
        .server_reflection_info(tokio_stream::iter(vec![
            ask(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
            ask(v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "loanledger.v1.LoanService".into(),
            )),
        ]))
        .await
        .expect("ServerReflectionInfo v1alpha without a token")
        .into_inner();
    let answers: Vec<v1alpha::ServerReflectionResponse> =
        answers.map(|r| r.expect("a v1alpha reflection answer")).collect().await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    let names: Vec<String> = match answers[0].message_response.as_ref() {
        Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(l)) => {
            l.service.iter().map(|s| s.name.clone()).collect()
        }
        other => panic!("v1alpha ListServices answered {other:?}"),
    };
    for service in SERVICES {
        assert!(names.iter().any(|n| n == service), "v1alpha lists {service}: {names:?}");
    }
    let files = match answers[1].message_response.as_ref() {
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(f)) => {
            f.file_descriptor_proto.clone()
        }
        other => panic!("v1alpha FileContainingSymbol answered {other:?}"),
    };
    check_defines_loan_service(&files);
    app.finish().await;
}

/// The descriptor bytes are non-empty, decode, and one file defines `LoanService` with
/// `PreviewSchedule` in package `loanledger.v1`.
fn check_defines_loan_service(files: &[Vec<u8>]) {
    use prost::Message as _;
    assert!(!files.is_empty(), "no file descriptor returned");
    assert!(files.iter().all(|f| !f.is_empty()), "an empty file descriptor");
    let decoded: Vec<prost_types::FileDescriptorProto> = files
        .iter()
        .map(|f| prost_types::FileDescriptorProto::decode(f.as_slice()).expect("a descriptor"))
        .collect();
    let loans = decoded
        .iter()
        .find(|f| f.service.iter().any(|s| s.name() == "LoanService"))
        .unwrap_or_else(|| {
            panic!(
                "no file defines LoanService: {:?}",
                decoded.iter().map(|f| f.name()).collect::<Vec<_>>()
            )
        });
    assert_eq!(loans.package(), "loanledger.v1");
    let service = loans.service.iter().find(|s| s.name() == "LoanService").unwrap();
    assert!(service.method.iter().any(|m| m.name() == "PreviewSchedule"), "{service:?}");
}

/// A loan maturing on the 21st (2021-03-21 for 12 months): its schedule ends the last period on
/// the 20th and settles it on the maturity day with the principal. The servicing does the same,
/// so a borrower who pays each instalment on its due date, as PreviewSchedule shows it, is never
/// overdue and the loan closes on the last payment (before the fix, the last period's interest
/// fell due on 2022-03-20 and was a day overdue when paid with the principal).
async fn paid_as_scheduled_when_maturity_is_on_the_21st(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    app.create_loan(&t.bank, standard_loan_on("T21", HOUSEHOLD, "2021-03-21")).await;
    let id = loan_id("T21");
    app.disburse(&t.bank, &id, "2021-03-21").await;
    let schedule = preview(
        &app,
        &t.bank,
        pb::PreviewScheduleRequest { disbursement_date: "2021-03-21".into(), ..standard_terms() },
    )
    .await;
    let dues: Vec<(&str, &str)> =
        schedule.instalments.iter().map(|i| (i.period_end.as_str(), i.due_date.as_str())).collect();
    assert_eq!(
        dues,
        [
            ("2021-06-20", "2021-06-20"),
            ("2021-09-20", "2021-09-20"),
            ("2021-12-20", "2021-12-20"),
            ("2022-03-20", "2022-03-21"),
        ]
    );
    for i in &schedule.instalments {
        let before = app.get_loan_as_of(&t.bank, &id, &i.due_date).await;
        assert_eq!(before.days_overdue, 0, "due {}: {before:?}", i.due_date);
        assert_eq!(before.interest_due_fen, i.interest_due_fen, "due {}: {before:?}", i.due_date);
        let paid = app.repay(&t.bank, &id, &i.due_date, i.total_due_fen).await;
        let l = loan(&paid);
        assert_eq!(l.days_overdue, 0, "paid {}: {l:?}", i.due_date);
        assert_eq!(l.principal_outstanding_fen, i.remaining_principal_fen, "{l:?}");
    }
    let closed = app.get_loan(&t.bank, &id).await;
    assert_eq!(closed.status, pb::LoanStatus::Settled as i32, "{closed:?}");
    assert_eq!(closed.interest_settled_fen, schedule.total_interest_fen, "{closed:?}");
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// A contract or preview that names no settlement frequency takes the programme's default:
/// quarterly on the 20th, or at maturity for 利随本清, which settles then only. An amortising
/// term that is not whole quarters cannot take it, and the refusal names the frequency. The
/// loan records the frequency taken, so a retry that names it is the same request.
async fn a_frequency_left_out_is_the_programmes_default(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let unspecified = pb::SettlementFrequency::Unspecified;

    // Bullet: the worked figure, quarterly.
    let defaulted =
        terms(STANDARD_PRINCIPAL_FEN, STANDARD_RATE, 12, pb::RepaymentMethod::Bullet, unspecified);
    let s = preview(&app, &t.bank, defaulted).await;
    assert_eq!(s, preview(&app, &t.bank, standard_terms()).await);
    assert_eq!(s.instalments.len(), 5, "{s:?}");
    assert_eq!(s.total_interest_fen, 195_173);

    // 利随本清: one settlement, at maturity.
    let with_principal = |frequency| {
        terms(5_000_000, STANDARD_RATE, 12, pb::RepaymentMethod::InterestWithPrincipal, frequency)
    };
    let s = preview(&app, &t.bank, with_principal(unspecified)).await;
    assert_eq!(
        s,
        preview(&app, &t.bank, with_principal(pb::SettlementFrequency::AtMaturity)).await
    );
    assert_eq!(s.instalments.len(), 1, "{s:?}");

    // 等额本金 over whole quarters: quarterly instalments.
    let equal_principal = |months, frequency| {
        terms(5_000_000, STANDARD_RATE, months, pb::RepaymentMethod::EqualPrincipal, frequency)
    };
    let s = preview(&app, &t.bank, equal_principal(12, unspecified)).await;
    assert_eq!(
        s,
        preview(&app, &t.bank, equal_principal(12, pb::SettlementFrequency::Quarterly)).await
    );
    assert_eq!(s.instalments.len(), 4, "{s:?}");
    // Ten months are not whole quarters: the default does not fit, and the frequency is named.
    let refused = expect_invalid(
        app.loans(&t.bank).preview_schedule(equal_principal(10, unspecified)).await,
        "settlement_frequency",
    );
    assert!(refused.message().contains("MONTHLY"), "{refused:?}");
    // The same term given by its maturity; a maturity that is not whole months is the date's.
    let by_maturity = |maturity: &str| pb::PreviewScheduleRequest {
        term_months: 0,
        maturity_date: maturity.into(),
        ..equal_principal(10, unspecified)
    };
    let refused = expect_invalid(
        app.loans(&t.bank).preview_schedule(by_maturity("2021-11-25")).await,
        "settlement_frequency",
    );
    assert!(refused.message().contains("MONTHLY"), "{refused:?}");
    expect_invalid(
        app.loans(&t.bank).preview_schedule(by_maturity("2021-11-26")).await,
        "maturity_date",
    );
    let monthly =
        preview(&app, &t.bank, equal_principal(10, pb::SettlementFrequency::Monthly)).await;
    assert_eq!(monthly.instalments.len(), 10, "{monthly:?}");

    // A contract: the loan shows the frequency taken, and its servicing settles on it.
    let journal_before = app.journal(&t.auditor, LEDGER).await.len();
    // (An amortising contract of ten months cannot leave it out: refused, nothing written.)
    let ten_months = pb::CreateLoanRequest {
        term_months: 10,
        repayment_method: pb::RepaymentMethod::EqualPrincipal as i32,
        settlement_frequency: unspecified as i32,
        ..standard_loan("C000", HOUSEHOLD)
    };
    expect_invalid(app.loans(&t.bank).create_loan(ten_months).await, "settlement_frequency");
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal_before);
    let mut req = standard_loan("C001", HOUSEHOLD);
    req.settlement_frequency = unspecified as i32;
    let created = app.create_loan(&t.bank, req.clone()).await;
    let l = created.loan.as_ref().expect("the loan");
    assert_eq!(l.settlement_frequency, pb::SettlementFrequency::Quarterly as i32, "{l:?}");
    let entry = created.entry.clone().expect("the contract's entry");
    // The same request naming the default is the same request: answered, not written again.
    req.settlement_frequency = pb::SettlementFrequency::Quarterly as i32;
    let retried = app.create_loan(&t.bank, req.clone()).await;
    assert_eq!(retried.entry, Some(entry), "{retried:?}");
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal_before + 1);
    // Another frequency under the same request id is another request.
    req.settlement_frequency = pb::SettlementFrequency::Monthly as i32;
    let reused = expect_code(app.loans(&t.bank).create_loan(req).await, Code::AlreadyExists);
    let reason = reused.get_details_error_info().map(|i| i.reason);
    assert_eq!(reason.as_deref(), Some("REQUEST_ID_REUSED"), "{reused:?}");

    let id = loan_id("C001");
    app.disburse(&t.bank, &id, CONTRACT_DATE).await;
    // Nothing falls due on 20 February (monthly would settle 14,438 then), the first quarter's
    // 29,410 on 20 March.
    let february = app.get_loan_as_of(&t.bank, &id, "2021-02-21").await;
    assert_eq!(february.interest_due_fen, 0, "{february:?}");
    let march = app.get_loan_as_of(&t.bank, &id, "2021-03-21").await;
    assert_eq!(march.interest_due_fen, 29_410, "{march:?}");
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}
