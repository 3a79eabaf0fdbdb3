use proptest::prelude::*;

use super::*;
use crate::domain::date::parse_date;
use crate::domain::policy::{PolicyParams, default_versions};

fn d(s: &str) -> NaiveDate {
    parse_date(s).unwrap()
}

/// The bench's contract (50,000.00 yuan at 3.85%, 2021-01-25 to 2022-01-25, bullet, interest
/// quarterly on the 20th) of bank B in ledger L, paid out in full on its contract date.
fn loan(loan_id: &str, household_id: &str) -> LoanState {
    let mut terms = crate::bench::load::bench_terms("110101198001011234");
    terms.loan_id = loan_id.into();
    terms.ledger_id = "L".into();
    terms.bank_id = "B".into();
    terms.household_id = household_id.into();
    let (_, state) = LoanState::new(terms, 1)
        .plan(&LoanCommand::Disburse { date: d("2021-01-25"), amount: None })
        .unwrap();
    state
}

fn terms(mode: PoolMode) -> PoolTerms {
    let pools = mode.pools_money();
    PoolTerms {
        pool_id: "P1".into(),
        ledger_id: "L".into(),
        bank_id: "B".into(),
        mode,
        partner_id: "91450100MA5KXXXX1X".into(),
        partner_name: "合作社".into(),
        agreed_on: d("2021-02-01"),
        return_rate: pools.then(|| AnnualRate::parse("0.08").unwrap()),
        return_frequency: pools.then_some(ReturnFrequency::Quarterly),
    }
}

/// Whether `e` is a refusal naming the policy version of `date`.
fn refused_since(e: &DomainError, date: &str) -> bool {
    matches!(e, DomainError::Refused { metadata, .. }
        if metadata.contains(&("policy_effective_date".to_string(), date.to_string())))
}

fn code(e: DomainError) -> String {
    match e {
        DomainError::Refused { reason, .. } => reason.code().into(),
        DomainError::Invalid { field, .. } => format!("INVALID {field}"),
        DomainError::NotFound { .. } => "NOT_FOUND".into(),
        DomainError::Exists { .. } => "EXISTS".into(),
        DomainError::Overflow { .. } => "OVERFLOW".into(),
    }
}

/// An entrusted pool of loans A (household HA) and B (HB), agreed on 2021-02-01.
fn entrusted(loans: &[&LoanState]) -> Pool {
    let event = Pool::agree(&terms(PoolMode::Entrusted), loans, &default_versions()).unwrap();
    Pool::agreed(&event).unwrap()
}

fn applied(
    pool: &mut Pool,
    plan: impl FnOnce(&Pool) -> Result<PoolEvent, DomainError>,
) -> PoolEvent {
    let event = plan(pool).unwrap();
    pool.apply(&event).unwrap();
    event
}

#[test]
fn an_agreement_takes_open_loans_of_its_bank_and_the_modes_policy_allows() {
    let (a, b) = (loan("A", "HA"), loan("B", "HB"));
    let versions = default_versions();
    let event = Pool::agree(&terms(PoolMode::Entrusted), &[&b, &a], &versions).unwrap();
    let PoolEvent::Agreed { members, .. } = &event else { panic!("{event:?}") };
    let ids: Vec<&str> = members.iter().map(|m| m.loan_id.as_str()).collect();
    assert_eq!(ids, ["A", "B"], "in loan id order");
    assert_eq!(
        code(Pool::agree(&terms(PoolMode::Direct), &[&a, &a], &versions).unwrap_err()),
        "INVALID loan_ids"
    );
    assert_eq!(
        code(Pool::agree(&terms(PoolMode::Direct), &[], &versions).unwrap_err()),
        "INVALID loan_ids"
    );
    let no_rate = PoolTerms { return_rate: None, ..terms(PoolMode::Shareholding) };
    assert_eq!(code(Pool::agree(&no_rate, &[&a], &versions).unwrap_err()), "INVALID return_rate");
    let direct_rate = PoolTerms {
        return_rate: Some(AnnualRate::parse("0.06").unwrap()),
        ..terms(PoolMode::Direct)
    };
    assert_eq!(
        code(Pool::agree(&direct_rate, &[&a], &versions).unwrap_err()),
        "INVALID return_rate"
    );
    let early = PoolTerms { agreed_on: d("2021-01-24"), ..terms(PoolMode::Direct) };
    assert_eq!(code(Pool::agree(&early, &[&a], &versions).unwrap_err()), "VALUE_DATE_OUT_OF_RANGE");
    let other_bank = PoolTerms { bank_id: "C".into(), ..terms(PoolMode::Direct) };
    assert_eq!(code(Pool::agree(&other_bank, &[&a], &versions).unwrap_err()), "NOT_FOUND");
    let owed = a.quote(d("2021-02-01")).unwrap().total().unwrap();
    let paid_off = a
        .plan(&LoanCommand::Repay { date: d("2021-02-01"), amount: owed, netted: Fen::ZERO })
        .unwrap()
        .1;
    let closed = Pool::agree(&terms(PoolMode::Direct), &[&paid_off], &versions).unwrap_err();
    let DomainError::Refused { metadata, .. } = &closed else { panic!("{closed:?}") };
    assert_eq!(metadata, &[("status".to_string(), "settled".to_string())]);
    assert_eq!(code(closed), "LOAN_NOT_REPAYABLE");

    // A version from 2021-01-01 refusing the enterprise modes: loans contracted under it may
    // be pooled directly, not handed to a partner.
    let mut refusing = versions.clone();
    refusing.push(PolicyVersion {
        effective_date: d("2021-01-01"),
        params: PolicyParams { enterprise_modes_allowed: false, ..PolicyParams::default() },
    });
    let refused = Pool::agree(&terms(PoolMode::Shareholding), &[&a], &refusing).unwrap_err();
    assert!(refused.to_string().contains("refusing the shareholding mode since 2021-01-01"));
    assert!(refused_since(&refused, "2021-01-01"), "{refused:?}");
    assert_eq!(code(refused), "POOL_MODE_NOT_ALLOWED");
    assert!(Pool::agree(&terms(PoolMode::Direct), &[&a], &refusing).is_ok());
    // A loan contracted in 2024: the version in force is the seeded step of the subsidy ratio
    // (2024-01-01), which carries the refusal on; the refusal names the version that set it.
    let mut late = a.clone();
    std::sync::Arc::make_mut(&mut late.terms).contract_date = d("2024-03-01");
    let agreed_late = PoolTerms { agreed_on: d("2024-03-02"), ..terms(PoolMode::Entrusted) };
    let refused = Pool::agree(&agreed_late, &[&late], &refusing).unwrap_err();
    assert!(refused_since(&refused, "2021-01-01"), "{refused:?}");
}

#[test]
fn a_policy_that_refuses_the_modes_is_stored_so_and_older_ones_read_back_allowing_them() {
    let refusing = PolicyParams { enterprise_modes_allowed: false, ..PolicyParams::default() };
    let text = serde_json::to_string(&refusing).unwrap();
    assert!(text.contains("\"enterprise_modes_allowed\":false"), "{text}");
    let allowing = serde_json::to_string(&PolicyParams::default()).unwrap();
    assert!(!allowing.contains("enterprise_modes_allowed"), "{allowing}");
    let read: PolicyParams = serde_json::from_str(&allowing).unwrap();
    assert!(read.enterprise_modes_allowed);
}

/// A pool rebuilt from its events is the pool they built, through each prefix; no events, no
/// pool; events not starting with the agreement, or one that does not follow, refused.
#[test]
fn a_pool_is_rebuilt_from_its_events() {
    let (a, b) = (loan("A", "HA"), loan("B", "HB"));
    let agreement = Pool::agree(&terms(PoolMode::Entrusted), &[&a, &b], &default_versions());
    let agreement = agreement.unwrap();
    let mut pool = Pool::agreed(&agreement).unwrap();
    let mut events = vec![agreement];
    assert_eq!(Pool::rebuilt(&events).unwrap(), Some(pool.clone()));
    events.push(applied(&mut pool, |p| p.transfer(&a, d("2021-02-01"), Fen(3_000_000))));
    events.push(applied(&mut pool, |p| p.pay_return("A", d("2021-03-22"), Fen(39_778))));
    assert_eq!(Pool::rebuilt(&events).unwrap(), Some(pool));
    assert_eq!(Pool::rebuilt(&[]).unwrap(), None);
    assert!(Pool::rebuilt(&events[1..]).is_err(), "no agreement first");
    let twice = [events[0].clone(), events[0].clone()];
    assert!(Pool::rebuilt(&twice).is_err(), "agreed twice");
}

#[test]
fn transfers_returns_and_participation() {
    let (a, b) = (loan("A", "HA"), loan("B", "HB"));
    let mut pool = entrusted(&[&a, &b]);
    let over = pool.transfer(&a, d("2021-02-01"), Fen(5_000_001)).unwrap_err();
    assert_eq!(code(over), "POOL_TRANSFER_EXCEEDS_LOAN");
    applied(&mut pool, |p| p.transfer(&a, d("2021-02-01"), Fen(3_000_000)));
    let over = pool.transfer(&a, d("2021-02-02"), Fen(2_000_001)).unwrap_err();
    assert_eq!(code(over), "POOL_TRANSFER_EXCEEDS_LOAN");
    let back = pool.transfer(&a, d("2021-01-31"), Fen(1)).unwrap_err();
    assert_eq!(code(back), "VALUE_DATE_OUT_OF_RANGE");
    applied(&mut pool, |p| p.transfer(&a, d("2021-03-01"), Fen(2_000_000)));
    assert_eq!(pool.member("A").unwrap().held_fen(), Fen(5_000_000));
    // Dated before both the loan's last event and the last change of what the partner holds,
    // the later is named, with its reason: a retry dated on the earlier would be refused
    // again (it was named until 2026-12-08).
    let mut moved = a.clone();
    moved.last_value_date = d("2021-02-15");
    for date in ["2021-02-10", "2021-02-15"] {
        let barred = pool.transfer(&moved, d(date), Fen(1)).unwrap_err();
        let earliest = ("earliest_date".to_string(), "2021-03-01".to_string());
        assert!(
            matches!(&barred, DomainError::Refused { metadata, message, .. }
                if metadata.contains(&earliest)
                    && message.contains("before the last change of what the partner holds")),
            "{date}: {barred:?}"
        );
    }
    moved.last_value_date = d("2021-03-05");
    let barred = pool.transfer(&moved, d("2021-03-02"), Fen(1)).unwrap_err();
    assert!(barred.to_string().contains("loan A's last event"), "{barred}");
    // The household repaid 10,000.00 of principal itself since: the partner holds more than is
    // outstanding, and nothing is left to hand over (not a negative amount).
    let mut repaid = a.clone();
    repaid.principal_outstanding_fen = Fen(4_000_000);
    let none_left = pool.transfer(&repaid, d("2021-03-02"), Fen(1)).unwrap_err();
    assert!(
        matches!(&none_left, DomainError::Refused { metadata, message, .. }
            if metadata.contains(&("available_fen".to_string(), "0".to_string()))
                && message.ends_with(": 0 fen is left to hand over")),
        "{none_left:?}"
    );
    assert_eq!(
        code(pool.transfer(&loan("C", "HC"), d("2021-03-01"), Fen(1)).unwrap_err()),
        "NOT_FOUND"
    );

    // Due on 2021-03-20: 3,000,000 × 47 days + 2,000,000 × 19 days at 8% / 360
    // = (141,000,000 + 38,000,000) × 0.08 / 360 = 39,777.78 → 39,778 fen.
    let m = pool.member("A").unwrap().clone();
    assert_eq!(pool.returns_due(&m, d("2021-03-19")), Fen::ZERO, "no point passed yet");
    assert_eq!(pool.returns_due(&m, d("2021-03-20")), Fen(39_778));
    assert_eq!(pool.returns_due(&m, d("2021-06-19")), Fen(39_778), "until the next point");
    // Through 2021-06-20: 92 more days on 5,000,000: + 102,222.22 → 142,000 fen.
    assert_eq!(pool.returns_due(&m, d("2021-06-20")), Fen(142_000));

    // No return is owed for B, which transferred nothing, nor before its first transfer.
    let none = pool.pay_return("B", d("2021-03-22"), Fen(1)).unwrap_err();
    assert!(none.to_string().contains("transferred nothing"), "{none}");
    assert_eq!(code(none), "VALUE_DATE_OUT_OF_RANGE");
    let mut b_later = pool.clone();
    applied(&mut b_later, |p| p.transfer(&b, d("2021-03-10"), Fen(1_000_000)));
    let early = b_later.pay_return("B", d("2021-03-09"), Fen(1)).unwrap_err();
    assert!(early.to_string().contains("before loan B's first transfer"), "{early}");
    assert_eq!(code(early), "VALUE_DATE_OUT_OF_RANGE");
    assert!(b_later.pay_return("B", d("2021-03-10"), Fen(1)).is_ok(), "from the transfer's day");
    // The members' returns go to the pool's one account: together within 64 bits, each
    // member's alone within them too.
    let mut huge = b_later.clone();
    applied(&mut huge, |p| p.pay_return("A", d("2021-03-10"), Fen(i64::MAX - 1)));
    let over = huge.pay_return("B", d("2021-03-10"), Fen(2)).unwrap_err();
    assert!(matches!(&over, DomainError::Overflow { field } if field == "amount_fen"), "{over}");
    assert!(huge.pay_return("B", d("2021-03-10"), Fen(1)).is_ok(), "up to the limit");

    let mut activity = Vec::new();
    // Due on 2021-03-20: not short that day (paid then, it is on time), short the day after.
    let report = pool.report(&[&a, &b], d("2021-03-20"), &activity);
    assert_eq!(report[0].returns_short_fen, Fen::ZERO);
    assert!(!report[0].flags.contains(&PoolFlag::ReturnShort), "{:?}", report[0].flags);
    let report = pool.report(&[&a, &b], d("2021-03-21"), &activity);
    assert_eq!(report[0].returns_short_fen, Fen(39_778));
    assert!(report[0].flags.contains(&PoolFlag::ReturnShort));
    activity.push(applied(&mut pool, |p| p.pay_return("A", d("2021-03-22"), Fen(39_778))));
    let report = pool.report(&[&a, &b], d("2021-03-22"), &activity);
    assert_eq!(report[0].returns_short_fen, Fen::ZERO);
    // Paid two days after its point: late; a simple dividend; and A's March interest is
    // unpaid while the partner holds its money.
    assert_eq!(
        report[0].flags,
        [
            PoolFlag::ReturnLate,
            PoolFlag::OverdueWhilePartnerHolds,
            PoolFlag::ReturnsWithoutParticipation
        ]
    );
    assert_eq!((report[0].late_return_points, report[0].days_overdue), (1, 2));
    // As of the day before, the return was not paid yet: short, not late.
    let before = &pool.report(&[&a, &b], d("2021-03-21"), &activity)[0];
    assert_eq!((before.returns_paid_fen, before.returns_short_fen), (Fen::ZERO, Fen(39_778)));
    assert_eq!((before.late_return_points, before.last_return_on), (0, None));
    assert_eq!(before.flags[0], PoolFlag::ReturnShort);
    // What the partner held on a date: the second transfer (03-01) not yet on 02-15.
    assert_eq!(pool.report(&[&a, &b], d("2021-02-15"), &activity)[0].held_fen, Fen(3_000_000));
    activity.push(applied(&mut pool, |p| {
        p.participate("A", d("2021-04-01"), ParticipationKind::Work, "养殖场务工")
    }));
    let report = pool.report(&[&a, &b], d("2021-04-01"), &activity);
    assert_eq!(report[0].flags, [PoolFlag::ReturnLate, PoolFlag::OverdueWhilePartnerHolds]);
    assert_eq!(report[0].participations, 1);
    let earlier = &pool.report(&[&a, &b], d("2021-03-31"), &activity)[0];
    assert_eq!(earlier.participations, 0, "recorded on 04-01");
    assert!(earlier.flags.contains(&PoolFlag::ReturnsWithoutParticipation));
    // Judged return by return, a year either side: the work of 2021-04-01 covers a return
    // paid on 2022-04-01, not one paid on 2022-04-02; work recorded within a year after that
    // one does (one participation, whenever, cleared every return, years apart).
    let mut years = activity.clone();
    let mut later = pool.clone();
    years.push(applied(&mut later, |p| p.pay_return("A", d("2022-04-01"), Fen(100))));
    let covered = &later.report(&[&a, &b], d("2022-04-01"), &years)[0];
    assert!(!covered.flags.contains(&PoolFlag::ReturnsWithoutParticipation), "{covered:?}");
    years.push(applied(&mut later, |p| p.pay_return("A", d("2022-04-02"), Fen(100))));
    let flagged = &later.report(&[&a, &b], d("2022-04-02"), &years)[0];
    assert!(flagged.flags.contains(&PoolFlag::ReturnsWithoutParticipation), "{flagged:?}");
    years.push(applied(&mut later, |p| {
        p.participate("A", d("2023-04-02"), ParticipationKind::Work, "养殖场务工")
    }));
    let covered = &later.report(&[&a, &b], d("2023-04-02"), &years)[0];
    assert!(!covered.flags.contains(&PoolFlag::ReturnsWithoutParticipation), "{covered:?}");
    // Another pool's events are not this one's.
    let mut other = activity[0].clone();
    let PoolEvent::ReturnPaid { pool_id, .. } = &mut other else { panic!("{other:?}") };
    *pool_id = "P2".into();
    let report = pool.report(&[&a, &b], d("2021-04-01"), &[other]);
    assert_eq!(report[0].returns_paid_fen, Fen::ZERO);
    // B handed nothing: nothing due, nothing flagged but its overdue interest while the
    // partner holds nothing of it (not flagged).
    assert_eq!(pool.report(&[&a, &b], d("2021-06-20"), &activity)[1].returns_due_fen, Fen::ZERO);
    // A written off while the partner still holds its money: flagged, as overdue is (the loan
    // takes no quote, so no days overdue are shown).
    let a_written_off = LoanState { status: LoanStatus::WrittenOff, ..a.clone() };
    let report = pool.report(&[&a_written_off, &b], d("2021-04-01"), &activity);
    assert_eq!(report[0].days_overdue, 0);
    assert!(report[0].flags.contains(&PoolFlag::OverdueWhilePartnerHolds), "{:?}", report[0]);

    let direct =
        Pool::agreed(&Pool::agree(&terms(PoolMode::Direct), &[&a], &default_versions()).unwrap())
            .unwrap();
    assert_eq!(
        code(direct.transfer(&a, d("2021-02-01"), Fen(1)).unwrap_err()),
        "POOL_MODE_MISMATCH"
    );
    assert_eq!(
        code(direct.pay_return("A", d("2021-02-01"), Fen(1)).unwrap_err()),
        "POOL_MODE_MISMATCH"
    );
    assert!(direct.participate("A", d("2021-02-01"), ParticipationKind::Training, "").is_ok());
}

#[test]
fn a_collective_repayment_is_allocated_over_what_each_member_owes() {
    let a = loan("A", "HA");
    // B repaid 10,000.00 yuan of principal on 2021-02-01: it owes less.
    let b = loan("B", "HB")
        .plan(&LoanCommand::Repay {
            date: d("2021-02-01"),
            amount: Fen(1_000_000),
            netted: Fen::ZERO,
        })
        .unwrap()
        .1;
    let mut pool = entrusted(&[&a, &b]);
    applied(&mut pool, |p| p.transfer(&a, d("2021-02-01"), Fen(5_000_000)));
    let date = d("2021-06-20");
    let owed = |l: &LoanState| l.quote(date).unwrap().total().unwrap();
    let all = Fen(owed(&a).0 + owed(&b).0);
    let over = pool.plan_repayment(&[&a, &b], date, Fen(all.0 + 1)).unwrap_err();
    assert_eq!(code(over), "REPAYMENT_EXCEEDS_OWED");

    let amount = Fen(3_000_000);
    let (event, after) = pool.plan_repayment(&[&b, &a], date, amount).unwrap();
    let PoolEvent::Repaid { parts, handed_back, .. } = &event else { panic!("{event:?}") };
    let paid: Vec<(String, i64)> = parts
        .iter()
        .map(|p| match p {
            LoanEvent::Repaid { loan_id, amount_fen, .. } => (loan_id.clone(), amount_fen.0),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(paid.iter().map(|(_, a)| a).sum::<i64>(), amount.0, "to the fen");
    let expected = allocate(amount, &[owed(&a), owed(&b)]);
    assert_eq!(paid, [("A".to_string(), expected[0].0), ("B".to_string(), expected[1].0)]);
    assert!(paid[0].1 > paid[1].1, "A owes more");
    // Each part repays its loan as a payment of its own would: interest first.
    assert_eq!(
        after[0],
        a.plan(&LoanCommand::Repay { date, amount: expected[0], netted: Fen::ZERO }).unwrap().1
    );
    // The principal A repaid is money the partner held, handed back; B's partner held none.
    let a_principal = Fen(after[0].principal_repaid_fen.0 - a.principal_repaid_fen.0);
    assert!(a_principal.is_positive());
    assert_eq!(
        handed_back,
        &[HandBack { loan_id: "A".into(), household_id: "HA".into(), amount_fen: a_principal }]
    );
    pool.apply(&event).unwrap();
    assert_eq!(pool.member("A").unwrap().held_fen(), Fen(5_000_000 - a_principal.0));
    assert_eq!((pool.repaid_fen, pool.repayments), (amount, 1));

    // Dated before a member's last event, the whole is refused: B repaid in part after it, or
    // paid off after it (closed, B still owed on the date: left out, the split would have
    // given A all of it).
    let later = d("2021-06-25");
    let b_later =
        b.plan(&LoanCommand::Repay { date: later, amount: Fen(100), netted: Fen::ZERO }).unwrap().1;
    let payoff = b.quote(later).unwrap().total().unwrap();
    let b_closed =
        b.plan(&LoanCommand::Repay { date: later, amount: payoff, netted: Fen::ZERO }).unwrap().1;
    assert_eq!(b_closed.status, LoanStatus::Settled);
    for b_since in [&b_later, &b_closed] {
        let refused = pool.plan_repayment(&[&after[0], b_since], date, Fen(1_000)).unwrap_err();
        assert!(refused.to_string().contains("before loan B's last event"), "{refused}");
        assert_eq!(code(refused), "VALUE_DATE_OUT_OF_RANGE");
    }
}

#[test]
fn a_pool_is_settled_once_its_loans_are_closed_and_then_takes_nothing() {
    let a = loan("A", "HA");
    let mut pool = entrusted(&[&a]);
    applied(&mut pool, |p| p.transfer(&a, d("2021-02-01"), Fen(5_000_000)));
    let open = pool.settle(&[&a], d("2022-01-25")).unwrap_err();
    assert_eq!(code(open), "POOL_MEMBERS_OPEN");
    let owed = a.quote(d("2022-01-25")).unwrap().total().unwrap();
    let (event, after) = pool.plan_repayment(&[&a], d("2022-01-25"), owed).unwrap();
    pool.apply(&event).unwrap();
    assert_eq!(after[0].status, LoanStatus::Settled);
    assert_eq!(
        pool.member("A").unwrap().held_fen(),
        Fen::ZERO,
        "all principal repaid by the partner"
    );
    let settled = applied(&mut pool, |p| p.settle(&[&after[0]], d("2022-01-25")));
    let PoolEvent::Settled { handed_back, .. } = &settled else { panic!() };
    assert!(handed_back.is_empty(), "nothing left held");
    assert_eq!(pool.status, PoolStatus::Settled);
    let late = pool.participate("A", d("2022-02-01"), ParticipationKind::Other, "").unwrap_err();
    assert_eq!(code(late), "POOL_SETTLED");
    let moved = pool.transfer(&after[0], d("2022-02-01"), Fen(1)).unwrap_err();
    assert_eq!(code(moved), "POOL_SETTLED");
    // Taking part while the pool was open, recorded after its settlement, still counts.
    applied(&mut pool, |p| p.participate("A", d("2022-01-20"), ParticipationKind::Work, ""));
    // The settlement is the last due point: the stub since 2021-12-20 (36 days on 5,000,000
    // at 8% / 360 = 40,000 fen) falls due on it, and nothing after it.
    let m = pool.member("A").unwrap().clone();
    let by_december = pool.returns_due(&m, d("2021-12-20"));
    let by_settlement = pool.returns_due(&m, d("2022-01-25"));
    assert_eq!(Fen(by_settlement.0 - by_december.0), Fen(40_000));
    assert_eq!(pool.returns_due(&m, d("2023-06-20")), by_settlement);
    let points: Vec<NaiveDate> =
        pool.returns_schedule(&m, d("2023-06-20")).iter().map(|p| p.0).collect();
    assert_eq!(points.last(), Some(&d("2022-01-25")));
    assert_eq!(points.len(), 5, "four quarters of 2021 and the settlement: {points:?}");
    // The returns it owed are paid after the settlement too.
    applied(&mut pool, |p| p.pay_return("A", d("2022-02-10"), by_settlement));
    assert_eq!(pool.member("A").unwrap().returns_paid_fen, by_settlement);
}

/// At the settlement a written-off member's holding is not handed back: it stays owed on the
/// partner's account (since 2026-12-07); builds before handed it back, as
/// [`Pool::settle_as_recorded`] still plans it for verify's replay of their settlements.
#[test]
fn a_written_off_members_holding_is_not_handed_back_at_the_settlement() {
    let (a, b) = (loan("A", "HA"), loan("B", "HB"));
    let mut pool = entrusted(&[&a, &b]);
    applied(&mut pool, |p| p.transfer(&a, d("2021-02-01"), Fen(5_000_000)));
    applied(&mut pool, |p| p.transfer(&b, d("2021-02-01"), Fen(3_000_000)));
    let owed = a.quote(d("2021-06-25")).unwrap().total().unwrap();
    let repay = LoanCommand::Repay { date: d("2021-06-25"), amount: owed, netted: Fen::ZERO };
    let a = a.plan(&repay).unwrap().1;
    let b = b.plan(&LoanCommand::WriteOff { date: d("2021-07-01") }).unwrap().1;
    let back = |e: &PoolEvent| match e {
        PoolEvent::Settled { handed_back, .. } => {
            handed_back.iter().map(|h| (h.loan_id.clone(), h.amount_fen)).collect::<Vec<_>>()
        }
        _ => panic!("{e:?}"),
    };
    let now = pool.settle(&[&a, &b], d("2021-07-02")).unwrap();
    assert_eq!(back(&now), [("A".to_string(), Fen(5_000_000))]);
    let then = pool.settle_as_recorded(&[&a, &b], d("2021-07-02")).unwrap();
    assert_eq!(back(&then), [("A".to_string(), Fen(5_000_000)), ("B".to_string(), Fen(3_000_000))]);
    // Its principal recovered in full, the loan was repaid after all: handed back.
    let recover = LoanCommand::Recover { date: d("2021-07-01"), amount: Fen(5_000_000) };
    let recovered = b.plan(&recover).unwrap().1;
    let repaid = pool.settle(&[&a, &recovered], d("2021-07-02")).unwrap();
    assert_eq!(back(&repaid), back(&then));
    pool.apply(&now).unwrap();
    assert_eq!(pool.member("B").unwrap().held_fen(), Fen(3_000_000));
    assert_eq!(pool.status, PoolStatus::Settled);
}

/// A repayment or settlement dated before the last transfer, or a transfer dated before the
/// loan's last event, is refused; a contract never paid out by its maturity cannot join a pool
/// and does not keep one from being settled.
#[test]
fn pool_events_keep_their_dates_in_order() {
    let a = loan("A", "HA");
    let mut pool = entrusted(&[&a]);
    applied(&mut pool, |p| p.transfer(&a, d("2021-06-01"), Fen(1_000_000)));
    let back = pool.plan_repayment(&[&a], d("2021-05-01"), Fen(100)).unwrap_err();
    assert_eq!(code(back), "VALUE_DATE_OUT_OF_RANGE");
    assert_eq!(code(pool.settle(&[&a], d("2021-05-01")).unwrap_err()), "VALUE_DATE_OUT_OF_RANGE");
    let later = a
        .plan(&LoanCommand::Repay { date: d("2021-07-01"), amount: Fen(100), netted: Fen::ZERO })
        .unwrap()
        .1;
    assert_eq!(
        code(pool.transfer(&later, d("2021-06-15"), Fen(1)).unwrap_err()),
        "VALUE_DATE_OUT_OF_RANGE"
    );

    let mut terms_c = crate::bench::load::bench_terms("110101198001011234");
    terms_c.loan_id = "C".into();
    terms_c.ledger_id = "L".into();
    terms_c.bank_id = "B".into();
    let contract = LoanState::new(terms_c, 1);
    let late = PoolTerms { agreed_on: d("2022-02-01"), ..terms(PoolMode::Direct) };
    let expired = Pool::agree(&late, &[&contract], &default_versions()).unwrap_err();
    let message = expired.to_string();
    assert!(message.contains("expired on 2022-01-25 with nothing paid out"), "{message}");
    assert_eq!(code(expired), "LOAN_NOT_REPAYABLE");
    let event = Pool::agree(&terms(PoolMode::Direct), &[&contract], &default_versions()).unwrap();
    let direct = Pool::agreed(&event).unwrap();
    assert_eq!(
        code(direct.settle(&[&contract], d("2021-06-01")).unwrap_err()),
        "POOL_MEMBERS_OPEN"
    );
    assert!(direct.settle(&[&contract], d("2022-01-25")).is_ok(), "expired unpaid: closed");
}

#[test]
fn an_altered_event_does_not_apply() {
    let a = loan("A", "HA");
    let mut pool = entrusted(&[&a]);
    let other = PoolEvent::Transferred {
        pool_id: "P2".into(),
        ledger_id: "L".into(),
        loan_id: "A".into(),
        household_id: "HA".into(),
        value_date: d("2021-02-01"),
        amount_fen: Fen(1),
    };
    assert_eq!(code(pool.apply(&other).unwrap_err()), "LEDGER_MISMATCH");
    let too_much = PoolEvent::Settled {
        pool_id: "P1".into(),
        ledger_id: "L".into(),
        value_date: d("2022-01-25"),
        handed_back: vec![HandBack {
            loan_id: "A".into(),
            household_id: "HA".into(),
            amount_fen: Fen(1),
        }],
    };
    assert_eq!(code(pool.apply(&too_much).unwrap_err()), "POOL_TRANSFER_EXCEEDS_LOAN");
}

#[test]
fn due_points_fall_on_the_20th() {
    let q = ReturnFrequency::Quarterly;
    assert_eq!(q.last_point(d("2021-03-20")), Some(d("2021-03-20")));
    assert_eq!(q.last_point(d("2021-03-19")), Some(d("2020-12-20")));
    assert_eq!(q.last_point(d("2021-12-31")), Some(d("2021-12-20")));
    assert_eq!(ReturnFrequency::Yearly.last_point(d("2021-12-19")), Some(d("2020-12-20")));
}

/// Loans owing each (owed, accrued): one accruing less than it owes has principal left.
fn owing_of(loans: &[(i64, i64)]) -> Vec<Owing> {
    loans
        .iter()
        .map(|&(owed, accrued)| Owing::new(Fen(owed), Fen(accrued), accrued < owed))
        .collect()
}

proptest! {
    /// Returns paid on each due point, each the point's increase of the returns due, are
    /// neither late nor short; paid `delay` days after each point, every point with returns due
    /// is late once the payments are in (and the last one short until its own is).
    #[test]
    fn returns_paid_on_their_points_are_on_time_and_later_ones_late(
        held in 1i64..=5_000_000,
        delay in 1i64..80,
    ) {
        let a = loan("A", "HA");
        let mut pool = entrusted(&[&a]);
        applied(&mut pool, |p| p.transfer(&a, d("2021-02-01"), Fen(held)));
        let points = ["2021-03-20", "2021-06-20", "2021-09-20", "2021-12-20"].map(d);
        let member = pool.member("A").unwrap().clone();
        let mut before = Fen::ZERO;
        let (mut on_time, mut late) = (Vec::new(), Vec::new());
        let mut last_positive = false;
        for point in points {
            let due = pool.returns_due(&member, point);
            let amount = Fen(due.0 - before.0);
            before = due;
            last_positive = amount.is_positive();
            if !last_positive {
                continue;
            }
            let paid = |date| PoolEvent::ReturnPaid {
                pool_id: "P1".into(),
                ledger_id: "L".into(),
                loan_id: "A".into(),
                household_id: "HA".into(),
                value_date: date,
                amount_fen: amount,
            };
            on_time.push(paid(point));
            late.push(paid(point + chrono::Days::new(delay as u64)));
        }
        let positive = u32::try_from(late.len()).unwrap();
        let last = d("2021-12-20");
        let report = pool.report(&[&a], last, &on_time).remove(0);
        prop_assert_eq!(report.returns_short_fen, Fen::ZERO);
        prop_assert_eq!(report.late_return_points, 0);
        prop_assert!(!report.flags.contains(&PoolFlag::ReturnLate));
        let after = last + chrono::Days::new(delay as u64);
        let report = pool.report(&[&a], after, &late).remove(0);
        prop_assert_eq!(report.late_return_points, positive);
        prop_assert_eq!(report.returns_short_fen, Fen::ZERO);
        let on_last = pool.report(&[&a], last, &late).remove(0);
        // On the last point its own return is due that day, not paid yet: neither late nor
        // short (paid that day it is on time); the day after, short until it is paid.
        prop_assert_eq!(on_last.late_return_points, positive - u32::from(last_positive));
        prop_assert!(!on_last.flags.contains(&PoolFlag::ReturnShort));
        let next_day = pool.report(&[&a], last + chrono::Days::new(1), &late).remove(0);
        prop_assert_eq!(next_day.flags.contains(&PoolFlag::ReturnShort), last_positive && delay > 1);
    }

    /// Whatever the partner took and handed back, and when, the returns due never fall from
    /// one due point to the next, never rise between two, and are the sum of each period's
    /// return rounded half up: Σ over periods of (Σ over its days of what was held) × rate /
    /// 360, counted here day by day.
    #[test]
    fn returns_due_grow_point_by_point_and_round_each_period(
        changes in proptest::collection::vec((0i64..400, 1i64..=3_000_000, any::<bool>()), 1..6),
        rate_bp in 1u32..=1_500,
        day in 0i64..800,
    ) {
        let a = loan("A", "HA");
        let mut pool = entrusted(&[&a]);
        pool.terms.return_rate = Some(AnnualRate::new(Decimal::new(i64::from(rate_bp), 4)).unwrap());
        let start = d("2021-02-01");
        let mut held: i64 = 0;
        let mut changes: Vec<(i64, i64, bool)> = changes;
        changes.sort_by_key(|c| c.0);
        for (offset, amount, back) in changes {
            let date = start + chrono::Duration::days(offset);
            let delta = if back { -amount.min(held) } else { amount };
            if delta == 0 {
                continue;
            }
            held += delta;
            pool.members[0].held_changes.push(HeldChange { date, delta_fen: Fen(delta) });
        }
        let m = pool.members[0].clone();
        let date = start + chrono::Duration::days(day);
        let due = pool.returns_due(&m, date);
        let point = ReturnFrequency::Quarterly.last_point(date).unwrap();
        prop_assert_eq!(due, pool.returns_due(&m, point), "constant between points");
        let next = ReturnFrequency::Quarterly
            .last_point(point + chrono::Duration::days(92))
            .unwrap();
        prop_assert!(pool.returns_due(&m, next) >= due, "never falls");
        // Day by day: what was held at the end of each day, summed over each quarter.
        let held_on = |day: NaiveDate| -> i64 {
            m.held_changes.iter().filter(|c| c.date <= day).map(|c| c.delta_fen.0).sum()
        };
        let mut expected = Decimal::ZERO;
        let mut period = Decimal::ZERO;
        let mut day = start;
        while day < point {
            period += Decimal::from(held_on(day));
            day = day.succ_opt().unwrap();
            if ReturnFrequency::Quarterly.last_point(day) == Some(day) {
                let exact = period * Decimal::new(i64::from(rate_bp), 4) / Decimal::from(360);
                expected += exact
                    .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
                period = Decimal::ZERO;
            }
        }
        prop_assert_eq!(Decimal::from(due.0), expected);
    }

    /// Any payment up to all that is owed, over loans each with or without a range of parts it
    /// refuses: split, the parts sum to it, none above its loan's payoff, none in a refused
    /// range, and the plain proportional split whenever that one is refused nowhere; all owed
    /// always splits (every loan paid off), and so does any payment that leaves a loan without
    /// a refused range short.
    #[test]
    fn payments_split_around_the_parts_loans_refuse(
        loans in proptest::collection::vec((1i64..=6_000_000, 0i64..=40_000), 1..10),
        numerator in 0u32..=1_000,
        short in 0i64..=5,
    ) {
        let owing = owing_of(&loans);
        let total: i64 = owing.iter().map(|o| o.owed.0).sum();
        for amount in [total * i64::from(numerator) / 1_000, (total - short).max(0), total] {
            let split = split_payment(Fen(amount), &owing);
            let plain = allocate(Fen(amount), &owing.iter().map(|o| o.owed).collect::<Vec<_>>());
            let plain_fits = owing.iter().zip(&plain).all(|(o, s)| !o.refuses(*s));
            let absorbs = |o: &Owing| o.principal_covered_from.is_none() && o.owed.0 >= short;
            if amount == total || plain_fits || amount == total - short && owing.iter().any(absorbs) {
                prop_assert!(split.is_some(), "{amount} over {owing:?}");
            }
            let Some(shares) = split else { continue };
            prop_assert_eq!(shares.iter().map(|s| s.0).sum::<i64>(), amount);
            for (share, o) in shares.iter().zip(&owing) {
                prop_assert!(share.0 >= 0 && *share <= o.owed, "{share:?} of {o:?}");
                prop_assert!(!o.refuses(*share), "{share:?} refused by {o:?}");
            }
            if plain_fits {
                prop_assert_eq!(shares, plain);
            }
        }
    }

    /// Loans owing a few fen: a payment of any amount up to all they owe splits exactly when
    /// some choice of parts, tried one by one, has none a loan refuses.
    #[test]
    fn small_payments_split_whenever_some_split_fits(
        loans in proptest::collection::vec((1i64..=12, 0i64..=12), 1..=4),
    ) {
        let owing = owing_of(&loans);
        fn fits(owing: &[Owing], amount: i64) -> bool {
            match owing.split_first() {
                None => amount == 0,
                Some((o, rest)) => (0..=o.owed.0.min(amount))
                    .any(|share| !o.refuses(Fen(share)) && fits(rest, amount - share)),
            }
        }
        let total: i64 = owing.iter().map(|o| o.owed.0).sum();
        for amount in 0..=total {
            prop_assert_eq!(
                split_payment(Fen(amount), &owing).is_some(),
                fits(&owing, amount),
                "{} over {:?}",
                amount,
                owing
            );
        }
    }

    /// Any amount over any weights: the shares sum to it, to the fen, each within a fen of its
    /// exact share, none above its weight when the amount is at most their sum.
    #[test]
    fn allocations_add_up_and_stay_within_a_fen(
        weights in proptest::collection::vec(0i64..=10_000_000, 1..12),
        numerator in 0u32..=1_000,
    ) {
        let weights: Vec<Fen> = weights.into_iter().map(Fen).collect();
        let total: i64 = weights.iter().map(|w| w.0).sum();
        let amount = Fen(total * i64::from(numerator) / 1_000);
        let shares = allocate(amount, &weights);
        prop_assert_eq!(shares.len(), weights.len());
        if total > 0 {
            prop_assert_eq!(shares.iter().map(|s| s.0).sum::<i64>(), amount.0);
        }
        for (share, weight) in shares.iter().zip(&weights) {
            prop_assert!(share.0 >= 0 && share.0 <= weight.0);
            if total > 0 {
                let exact = i128::from(amount.0) * i128::from(weight.0);
                let ours = i128::from(share.0) * i128::from(total);
                prop_assert!((ours - exact).abs() < i128::from(total));
            }
        }
    }

    /// Any collective repayment of a pool of three loans: its parts sum to the amount, each
    /// posts balanced, and the pool's and the loans' figures move by it.
    #[test]
    fn a_collective_repayment_moves_the_figures_by_its_amount(
        permille in 1i64..=1_000,
        paid_before in 0i64..=4_000_000,
    ) {
        let a = loan("A", "HA");
        let b = loan("B", "HB");
        let c = if paid_before > 0 {
            loan("C", "HC").plan(&LoanCommand::Repay { date: d("2021-02-01"), amount: Fen(paid_before), netted: Fen::ZERO }).unwrap().1
        } else {
            loan("C", "HC")
        };
        let event = Pool::agree(&terms(PoolMode::Direct), &[&a, &b, &c], &default_versions()).unwrap();
        let mut pool = Pool::agreed(&event).unwrap();
        let date = d("2021-09-20");
        let owed: i64 = [&a, &b, &c].iter().map(|l| l.quote(date).unwrap().total().unwrap().0).sum();
        let amount = Fen((owed * permille / 1_000).max(1));
        let (event, after) = pool.plan_repayment(&[&a, &b, &c], date, amount).unwrap();
        let postings = crate::ledger::pool_postings::pool_postings(&event).unwrap();
        prop_assert!(!postings.as_slice().is_empty());
        let PoolEvent::Repaid { parts, .. } = &event else { panic!() };
        let sum: i64 = parts.iter().map(|p| match p { LoanEvent::Repaid { amount_fen, .. } => amount_fen.0, _ => 0 }).sum();
        prop_assert_eq!(sum, amount.0);
        // Everything a loan has been paid: principal, interest, penalty and compound interest.
        let paid = |l: &LoanState| {
            l.principal_repaid_fen.0 + l.interest_paid_fen.0
                + l.servicing.penalty_paid_fen.0 + l.servicing.compound_paid_fen.0
        };
        let repaid_before: i64 = [&a, &b, &c].iter().map(|l| paid(l)).sum();
        let repaid_after: i64 = after.iter().map(paid).sum::<i64>()
            + [&a, &b, &c].iter().filter(|l| !after.iter().any(|x| x.terms.loan_id == l.terms.loan_id)).map(|l| paid(l)).sum::<i64>();
        prop_assert_eq!(repaid_after - repaid_before, amount.0, "the loans took all of it");
        pool.apply(&event).unwrap();
        prop_assert_eq!(pool.repaid_fen, amount);
    }
}

/// A late return is counted at its own due point only: a point that had nothing of its own due
/// (the partner held nothing in its period) is not a second late return while the one before
/// it is unpaid. A point with its own return, paid late, counts.
#[test]
fn a_point_with_nothing_of_its_own_due_is_no_late_return() {
    let march = (d("2021-03-20"), Fen(52_222));
    let june = (d("2021-06-20"), Fen(52_222));
    let paid_july =
        Activity { returns: vec![(d("2021-07-01"), Fen(52_222))], ..Activity::default() };
    assert_eq!(late_points(&[march, june], &paid_july, d("2021-07-01")), 1);
    // Something due in June too, all paid in July: two late returns.
    let june = (d("2021-06-20"), Fen(100_000));
    let paid_july =
        Activity { returns: vec![(d("2021-07-01"), Fen(100_000))], ..Activity::default() };
    assert_eq!(late_points(&[march, june], &paid_july, d("2021-07-01")), 2);
    // Paid on time in March: June's alone is late.
    let both =
        Activity { returns: vec![march, (d("2021-07-01"), Fen(47_778))], ..Activity::default() };
    assert_eq!(late_points(&[march, june], &both, d("2021-07-01")), 1);
}

/// A member marked with its pool's collective repayment's day takes no event dated before it
/// but a settlement (`Servicing::pool_repaid_on`), and its first payout keeps the mark; the
/// mark moves only forward. Replayed as recorded (an earlier build's event), it is not judged.
#[test]
fn a_member_takes_nothing_dated_before_its_pools_repayment_but_a_settlement() {
    let member = loan("L1", "H1");
    let marked = member.pool_repaid(d("2021-06-20"));
    assert_eq!(marked.pool_repaid(d("2021-05-01")).servicing.pool_repaid_on, Some(d("2021-06-20")));
    assert_eq!(marked.last_value_date, member.last_value_date, "no event of the loan");
    for command in [
        LoanCommand::Repay { date: d("2021-06-19"), amount: Fen(100_000), netted: Fen::ZERO },
        LoanCommand::MarkMisuse { date: d("2021-06-01"), falsely_obtained: false },
        LoanCommand::WriteOff { date: d("2021-06-19") },
        LoanCommand::Extend { date: d("2021-06-19"), new_maturity: d("2022-07-25") },
    ] {
        let refused = marked.plan(&command).unwrap_err();
        let text = refused.to_string();
        assert!(text.contains("collective repayment on 2021-06-20"), "{command:?}: {text}");
        let (event, _) = member.plan(&command).expect("unmarked, taken");
        let mut replayed = marked.clone();
        assert!(replayed.apply(&event, 9).is_ok(), "{command:?}: replayed as recorded");
    }
    let (_, settled) = marked.plan(&LoanCommand::Settle { date: d("2021-03-20") }).unwrap();
    assert_eq!(settled.servicing.pool_repaid_on, Some(d("2021-06-20")), "kept");
    let repay = LoanCommand::Repay { date: d("2021-06-20"), amount: Fen(1), netted: Fen::ZERO };
    assert!(settled.plan(&repay).is_ok(), "on the day");
    // A date before the loan's own last event is the loan's own refusal, naming that event.
    let (_, later) = settled
        .plan(&LoanCommand::Repay { date: d("2021-07-10"), amount: Fen(1), netted: Fen::ZERO })
        .unwrap();
    let early = LoanCommand::Repay { date: d("2021-06-01"), amount: Fen(1), netted: Fen::ZERO };
    let own = later.plan(&early).unwrap_err().to_string();
    assert!(!own.contains("collective repayment"), "{own}");
    assert!(own.contains("2021-07-10"), "{own}");
    // A contract marked before its first payout keeps the mark through it.
    let mut terms = crate::bench::load::bench_terms("110101198001011234");
    terms.loan_id = "L2".into();
    let contract = LoanState::new(terms, 1).pool_repaid(d("2021-06-20"));
    let early = LoanCommand::Disburse { date: d("2021-03-01"), amount: None };
    let early = contract.plan(&early).unwrap_err().to_string();
    assert!(early.contains("collective repayment on 2021-06-20"), "{early}");
    let (_, paid) =
        contract.plan(&LoanCommand::Disburse { date: d("2021-06-20"), amount: None }).unwrap();
    assert_eq!(paid.servicing.pool_repaid_on, Some(d("2021-06-20")), "kept by the payout");
}

/// A member marked with the day its household handed the partner some of its money takes no
/// event dated before it but a settlement (`Servicing::pool_transferred_on`), the mark moving
/// only forward and kept through a settlement; of two marks, the later is named. Replayed as
/// recorded (an earlier build's event), it is not judged.
#[test]
fn a_member_takes_nothing_dated_before_its_transfer_but_a_settlement() {
    let member = loan("L1", "H1");
    let marked = member.pool_transferred(d("2021-06-20"));
    let kept = marked.pool_transferred(d("2021-05-01")).servicing.pool_transferred_on;
    assert_eq!(kept, Some(d("2021-06-20")));
    assert_eq!(marked.last_value_date, member.last_value_date, "no event of the loan");
    for command in [
        LoanCommand::Repay { date: d("2021-06-19"), amount: Fen(100_000), netted: Fen::ZERO },
        LoanCommand::WriteOff { date: d("2021-06-19") },
    ] {
        let refused = marked.plan(&command).unwrap_err();
        let text = refused.to_string();
        assert!(
            text.contains("transfer to its pool's partner on 2021-06-20"),
            "{command:?}: {text}"
        );
        let (event, _) = member.plan(&command).expect("unmarked, taken");
        let mut replayed = marked.clone();
        assert!(replayed.apply(&event, 9).is_ok(), "{command:?}: replayed as recorded");
    }
    // Dated before the loan's own last event (its payout) too, the transfer's later day is
    // named: a retry dated on the payout would be refused again.
    let before = LoanCommand::Repay { date: d("2021-01-20"), amount: Fen(1), netted: Fen::ZERO };
    let refused = marked.plan(&before).unwrap_err().to_string();
    assert!(refused.contains("transfer to its pool's partner on 2021-06-20"), "{refused}");
    let (_, settled) = marked.plan(&LoanCommand::Settle { date: d("2021-03-20") }).unwrap();
    assert_eq!(settled.servicing.pool_transferred_on, Some(d("2021-06-20")), "kept");
    let repay = LoanCommand::Repay { date: d("2021-06-20"), amount: Fen(1), netted: Fen::ZERO };
    assert!(settled.plan(&repay).is_ok(), "on the day");
    // Repaid collectively later, the repayment's day is named; repaid earlier, the transfer's.
    let early = LoanCommand::Repay { date: d("2021-06-01"), amount: Fen(1), netted: Fen::ZERO };
    let later = settled.pool_repaid(d("2021-06-25")).plan(&early).unwrap_err().to_string();
    assert!(later.contains("collective repayment on 2021-06-25"), "{later}");
    let earlier = settled.pool_repaid(d("2021-06-10")).plan(&early).unwrap_err().to_string();
    assert!(earlier.contains("transfer to its pool's partner on 2021-06-20"), "{earlier}");
}
