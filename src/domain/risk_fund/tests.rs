use proptest::prelude::*;

use super::*;
use crate::domain::date::parse_date;
use crate::domain::loan::{LoanCommand, LoanEvent, LoanTerms};

fn d(s: &str) -> NaiveDate {
    parse_date(s).unwrap()
}

/// The bench's contract (50,000.00 yuan at 3.85%, 2021-01-25 to 2022-01-25, bullet, interest
/// quarterly on the 20th, penalty at the contract rate), paid out in full on its contract date.
fn loan(loan_id: &str) -> LoanState {
    let mut terms = crate::bench::load::bench_terms("110101198001011234");
    terms.loan_id = loan_id.into();
    terms.ledger_id = "L".into();
    terms.bank_id = "B".into();
    let (_, state) = LoanState::new(terms, 1)
        .plan(&LoanCommand::Disburse { date: d("2021-01-25"), amount: None })
        .unwrap();
    state
}

fn after(loan: &LoanState, command: LoanCommand) -> LoanState {
    loan.plan(&command).unwrap().1
}

fn opened(percent: u8) -> Fund {
    Fund::opened(&Fund::open("L", d("2021-01-01"), percent).unwrap()).unwrap()
}

fn funded(percent: u8, amount: i64) -> Fund {
    let mut fund = opened(percent);
    let deposit =
        fund.deposit(d("2021-01-10"), DepositSource::Deposit, Fen(amount), "V-1").unwrap();
    fund.apply(&deposit, None).unwrap();
    fund
}

fn code(e: DomainError) -> &'static str {
    match e {
        DomainError::Refused { reason, .. } => reason.code(),
        DomainError::Invalid { .. } => "INVALID",
        DomainError::NotFound { .. } => "NOT_FOUND",
        DomainError::Exists { .. } => "EXISTS",
        DomainError::Overflow { .. } => "OVERFLOW",
    }
}

#[test]
fn shares_round_half_up_to_the_fen() {
    assert_eq!(share_of(Fen(5_000_000), 80), Fen(4_000_000));
    assert_eq!(share_of(Fen(333), 70), Fen(233)); // 233.1
    assert_eq!(share_of(Fen(5), 70), Fen(4)); // 3.5
    assert_eq!(share_of(Fen(3), 80), Fen(2)); // 2.4
    assert_eq!(share_of(Fen(0), 80), Fen(0));
}

#[test]
fn a_fund_takes_80_or_70_percent_and_positive_deposits_from_its_opening() {
    assert_eq!(code(Fund::open("L", d("2021-01-01"), 75).unwrap_err()), "INVALID");
    let fund = opened(70);
    let early = fund.deposit(d("2020-12-31"), DepositSource::Deposit, Fen(1), "V");
    assert_eq!(code(early.unwrap_err()), "VALUE_DATE_OUT_OF_RANGE");
    let zero = fund.deposit(d("2021-01-01"), DepositSource::Interest, Fen(0), "V");
    assert_eq!(code(zero.unwrap_err()), "INVALID");

    let mut fund = funded(80, 1_000_000);
    let interest = fund.deposit(d("2021-03-21"), DepositSource::Interest, Fen(875), "I").unwrap();
    fund.apply(&interest, None).unwrap();
    assert_eq!(
        (fund.balance_fen, fund.deposited_fen, fund.interest_fen),
        (Fen(1_000_875), Fen(1_000_000), Fen(875))
    );
}

#[test]
fn a_loan_more_than_90_days_overdue_is_compensated_once_at_the_funds_share() {
    let mut fund = funded(80, 5_000_000);
    let loan = loan("L1");
    // The 2021-03-20 interest unpaid: overdue from 03-21, 41 days on 04-30, 92 on 06-20.
    let early = fund.compensate(&loan, d("2021-04-30"), None).unwrap_err();
    assert_eq!(code(early), "LOAN_NOT_OVERDUE");
    let event = fund.compensate(&loan, d("2021-06-20"), None).unwrap();
    let FundEvent::Compensated { compensation } = &event else { panic!("{event:?}") };
    assert_eq!(compensation.days_overdue, 92);
    assert_eq!(
        (compensation.loss_fen, compensation.fund_fen, compensation.bank_fen),
        (Fen(5_000_000), Fen(4_000_000), Fen(1_000_000))
    );
    let c = fund.apply(&event, None).unwrap().unwrap();
    assert_eq!(
        (fund.balance_fen, fund.compensated_fen, fund.compensations),
        (Fen(1_000_000), Fen(4_000_000), 1)
    );
    let again = fund.compensate(&loan, d("2021-06-21"), Some(&c)).unwrap_err();
    assert_eq!(code(again), "LOAN_ALREADY_COMPENSATED");
}

/// The finance office rejects a pending claim: the fund no longer holds its share as pending,
/// the claim is neither paid nor payable nor returnable, a second rejection and a rejection of
/// a paid claim are refused, and the bank may claim the loan again, the new claim replacing
/// the rejected one.
#[test]
fn a_rejected_claim_frees_the_fund_and_leaves_the_loan_to_be_claimed_again() {
    let mut fund = funded(80, 5_000_000);
    let loan = loan("L1");
    let claim = fund.claim(&loan, d("2021-06-20"), None).unwrap();
    let claimed = fund.apply(&claim, None).unwrap().unwrap();
    assert_eq!(fund.pending_fen, Fen(4_000_000));
    let early = fund.reject(&claimed, d("2021-06-19"), "not overdue").unwrap_err();
    assert_eq!(code(early), "VALUE_DATE_OUT_OF_RANGE");
    assert_eq!(code(fund.reject(&claimed, d("2021-06-22"), " ").unwrap_err()), "INVALID");
    let rejection = fund.reject(&claimed, d("2021-06-22"), "the loan was misused").unwrap();
    let rejected = fund.apply(&rejection, Some(&claimed)).unwrap().unwrap();
    assert_eq!((fund.pending_fen, fund.balance_fen), (Fen::ZERO, Fen(5_000_000)));
    assert_eq!((rejected.status(), rejected.paid()), ("rejected", None));
    assert_eq!(rejected.rejected_on, Some(d("2021-06-22")));
    assert_eq!(
        code(fund.reject(&rejected, d("2021-06-23"), "again").unwrap_err()),
        "CLAIM_STATUS_MISMATCH"
    );
    assert_eq!(
        code(fund.pay(&rejected, rejected.repaid_before_fen, d("2021-06-23"), "P-1").unwrap_err()),
        "CLAIM_STATUS_MISMATCH"
    );
    assert!(fund.clone().apply(&rejection, Some(&rejected)).is_err(), "rejected twice");
    let paying = FundEvent::Paid {
        ledger_id: "L".into(),
        loan_id: "L1".into(),
        bank_id: "B".into(),
        value_date: d("2021-06-23"),
        amount_fen: Fen(4_000_000),
        voucher: "P-1".into(),
    };
    assert!(fund.clone().apply(&paying, Some(&rejected)).is_err(), "a rejected claim paid");
    let repaid = after(
        &loan,
        LoanCommand::Repay { date: d("2021-07-01"), amount: Fen(1_000_000), netted: Fen::ZERO },
    );
    assert_eq!(
        code(fund.plan_return(&rejected, &repaid, d("2021-07-01")).unwrap_err()),
        "CLAIM_STATUS_MISMATCH"
    );

    // Claimed again, not dated before the rejection; later, a claim of its own, paid as any.
    let before = fund.claim(&loan, d("2021-06-21"), Some(&rejected)).unwrap_err();
    assert_eq!(code(before), "VALUE_DATE_OUT_OF_RANGE");
    let again = fund.claim(&loan, d("2021-07-20"), Some(&rejected)).unwrap();
    let reclaimed = fund.apply(&again, Some(&rejected)).unwrap().unwrap();
    assert_eq!((reclaimed.status(), reclaimed.compensated_on), ("claimed", d("2021-07-20")));
    assert_eq!(reclaimed.rejected_on, None);
    let payment =
        fund.pay(&reclaimed, reclaimed.repaid_before_fen, d("2021-07-21"), "P-2").unwrap();
    let paid = fund.apply(&payment, Some(&reclaimed)).unwrap().unwrap();
    let late = fund.reject(&paid, d("2021-07-22"), "too late").unwrap_err();
    assert_eq!(code(late), "CLAIM_STATUS_MISMATCH");
    assert_eq!((fund.balance_fen, fund.pending_fen), (Fen(1_000_000), Fen::ZERO));
    // The loan's mark comes and goes with the claim, pending until its payment.
    let marked = loan.compensated(d("2021-06-20"), true);
    assert!(marked.servicing.claim_pending);
    let rejected = marked.claim_rejected();
    assert_eq!(
        (rejected.servicing.compensated_on, rejected.servicing.claim_pending),
        (None, false)
    );
    let paid = marked.claim_paid();
    assert_eq!(
        (paid.servicing.compensated_on, paid.servicing.claim_pending),
        (Some(d("2021-06-20")), false)
    );
}

/// Whether the fund as it stands holds an event after a date: its opening, money received
/// (`funded`: opened 2021-01-01, a deposit 2021-01-10), a claim, its payment or its rejection.
#[test]
fn a_fund_moved_after_a_date_by_any_of_its_events() {
    assert!(opened(80).moved_after(&[], d("2020-12-31")));
    assert!(!opened(80).moved_after(&[], d("2021-01-01")));
    let mut fund = funded(80, 5_000_000);
    assert!(fund.moved_after(&[], d("2021-01-09")));
    assert!(!fund.moved_after(&[], d("2021-01-10")));
    let claim = fund.claim(&loan("L1"), d("2021-06-20"), None).unwrap();
    let claimed = fund.apply(&claim, None).unwrap().unwrap();
    assert_eq!(claimed.last_event_on(), d("2021-06-20"));
    assert!(fund.moved_after(std::slice::from_ref(&claimed), d("2021-06-19")));
    assert!(!fund.moved_after(std::slice::from_ref(&claimed), d("2021-06-20")));
    let payment = fund.pay(&claimed, claimed.repaid_before_fen, d("2021-06-25"), "P-1").unwrap();
    let paid = fund.apply(&payment, Some(&claimed)).unwrap().unwrap();
    assert_eq!(paid.last_event_on(), d("2021-06-25"));
    assert!(fund.moved_after(std::slice::from_ref(&paid), d("2021-06-24")));
    let rejected = Compensation { rejected_on: Some(d("2021-06-30")), paid_on: None, ..paid };
    assert_eq!(rejected.last_event_on(), d("2021-06-30"));
    let deposit = fund.deposit(d("2021-07-01"), DepositSource::Deposit, Fen(100), "V").unwrap();
    fund.apply(&deposit, None).unwrap();
    assert!(fund.moved_after(&[], d("2021-06-30")));
    assert!(!fund.moved_after(&[rejected], d("2021-07-01")));
}

/// The fund as of a date: its events dated by then, in journal order, a deposit recorded after
/// a payment but dated before it counted; nothing before its opening.
#[test]
fn the_fund_as_it_stood_on_a_date() {
    let mut fund = funded(80, 3_000_000);
    let mut events = vec![
        FundEvent::Opened {
            ledger_id: "L".into(),
            opened_on: d("2021-01-01"),
            fund_share_percent: 80,
        },
        fund.deposit(d("2021-01-10"), DepositSource::Deposit, Fen(3_000_000), "V-1").unwrap(),
    ];
    let loan = loan("L1");
    let claim = fund.claim(&loan, d("2021-06-20"), None).unwrap();
    let claimed = fund.apply(&claim, None).unwrap().unwrap();
    let deposit =
        fund.deposit(d("2021-06-22"), DepositSource::Deposit, Fen(1_000_000), "V-2").unwrap();
    fund.apply(&deposit, None).unwrap();
    let payment = fund.pay(&claimed, claimed.repaid_before_fen, d("2021-06-25"), "P-1").unwrap();
    fund.apply(&payment, Some(&claimed)).unwrap();
    // Recorded last, dated first.
    let late = fund.deposit(d("2021-03-01"), DepositSource::Interest, Fen(1_234), "I-1").unwrap();
    fund.apply(&late, None).unwrap();
    events.extend([claim, deposit, payment, late]);
    let on = |date| Fund::as_of(&events, d(date)).unwrap();
    assert_eq!(on("2020-12-31"), None);
    let opened = on("2021-01-05").unwrap();
    assert_eq!(opened.balance_fen, Fen::ZERO);
    let claimed_then = on("2021-06-21").unwrap();
    assert_eq!(
        (claimed_then.balance_fen, claimed_then.pending_fen),
        (Fen(3_001_234), Fen(4_000_000))
    );
    let paid = on("2021-06-25").unwrap();
    assert_eq!(
        (paid.balance_fen, paid.pending_fen, paid.compensations),
        (Fen(1_234), Fen::ZERO, 1)
    );
    assert_eq!(on("2021-12-31").unwrap(), fund, "every event counted: the fund as it stands");

    // A one-step compensation of the builds before claims, dated 06-20 but recorded after a
    // deposit dated 06-30 that it was judged against: the fund of 06-25 reads below zero, as
    // its entries make it, rather than failing.
    let mut old = funded(80, 1_000_000);
    let mut events = vec![
        FundEvent::Opened {
            ledger_id: "L".into(),
            opened_on: d("2021-01-01"),
            fund_share_percent: 80,
        },
        old.deposit(d("2021-01-10"), DepositSource::Deposit, Fen(1_000_000), "V-1").unwrap(),
    ];
    let deposit =
        old.deposit(d("2021-06-30"), DepositSource::Deposit, Fen(4_000_000), "V-2").unwrap();
    old.apply(&deposit, None).unwrap();
    let compensated = old.compensate(&loan, d("2021-06-20"), None).unwrap();
    old.apply(&compensated, None).unwrap();
    events.extend([deposit, compensated]);
    let between = Fund::as_of(&events, d("2021-06-25")).unwrap().unwrap();
    assert_eq!(between.balance_fen, Fen(-3_000_000));
    assert_eq!(Fund::as_of(&events, d("2021-07-01")).unwrap().unwrap(), old);
}

/// A payment an earlier build recorded dated before a deposit recorded ahead of it (judged then
/// against the balance as it stood, before the rule of 2026-12-05 evening): verify's replay
/// takes it as long as the fund as of its date does not read below zero with it, and refuses
/// it with the rule's reason otherwise.
#[test]
fn a_payment_recorded_before_the_date_rule_is_replayed_if_the_fund_held_it() {
    let replayed = |first: i64, later: i64| {
        let mut fund = opened(80);
        let opened = FundEvent::Opened {
            ledger_id: "L".into(),
            opened_on: d("2021-01-01"),
            fund_share_percent: 80,
        };
        let deposit =
            fund.deposit(d("2021-01-10"), DepositSource::Deposit, Fen(first), "V-1").unwrap();
        fund.apply(&deposit, None).unwrap();
        let claim = fund.claim(&loan("L1"), d("2021-06-20"), None).unwrap();
        let claimed = fund.apply(&claim, None).unwrap().unwrap();
        let later =
            fund.deposit(d("2021-07-01"), DepositSource::Deposit, Fen(later), "V-2").unwrap();
        fund.apply(&later, None).unwrap();
        let events = [opened, deposit, claim, later];
        // Today's rule refuses a payment dated before the money received on 07-01.
        let refused =
            fund.pay(&claimed, claimed.repaid_before_fen, d("2021-06-25"), "P-1").unwrap_err();
        assert!(refused.to_string().contains("received money on 2021-07-01"), "{refused}");
        fund.pay_as_recorded(&events, &claimed, d("2021-06-25"), "P-1")
    };
    // 5,000,000 by 06-25 covers the fund's 4,000,000 share: taken as recorded.
    let paid = replayed(5_000_000, 1_000_000).unwrap();
    assert!(matches!(paid, FundEvent::Paid { amount_fen: Fen(4_000_000), .. }), "{paid:?}");
    // 3,000,000 by 06-25 does not: the fund of that day would read -1,000,000.
    let short = replayed(3_000_000, 2_000_000).unwrap_err();
    assert!(short.to_string().contains("received money on 2021-07-01"), "{short}");

    // Nor one that leaves a later day below zero: 5,000,000 from 01-10, L2's 4,000,000 paid
    // dated 06-28, 3,000,000 more on 07-01, then L1's 4,000,000 recorded dated 06-25 (judged
    // then against the 4,000,000 the fund held): 06-25 reads 1,000,000, but 06-28 -3,000,000.
    let mut fund = opened(80);
    let opened_event = FundEvent::Opened {
        ledger_id: "L".into(),
        opened_on: d("2021-01-01"),
        fund_share_percent: 80,
    };
    let mut events = vec![opened_event];
    let deposit = fund.deposit(d("2021-01-10"), DepositSource::Deposit, Fen(5_000_000), "V-1");
    events.push(deposit.unwrap());
    fund.apply(&events[1], None).unwrap();
    let mut claimed = Vec::new();
    for id in ["L1", "L2"] {
        let claim = fund.claim(&loan(id), d("2021-06-20"), None).unwrap();
        claimed.push(fund.apply(&claim, None).unwrap().unwrap());
        events.push(claim);
    }
    let paid = fund.pay(&claimed[1], Fen::ZERO, d("2021-06-28"), "P-2").unwrap();
    fund.apply(&paid, Some(&claimed[1])).unwrap();
    events.push(paid);
    let later = fund.deposit(d("2021-07-01"), DepositSource::Deposit, Fen(3_000_000), "V-2");
    events.push(later.unwrap());
    fund.apply(events.last().unwrap(), None).unwrap();
    assert_eq!(fund.balance_fen, Fen(4_000_000));
    let below = fund.pay_as_recorded(&events, &claimed[0], d("2021-06-25"), "P-1").unwrap_err();
    assert!(below.to_string().contains("received money on 2021-07-01"), "{below}");
    // Dated on the deposit's day, it is taken.
    assert!(fund.pay_as_recorded(&events, &claimed[0], d("2021-07-01"), "P-1").is_ok());
}

/// The bank claims, the finance office pays: the claim assessed on its date moves nothing and
/// takes no return; the payment, not dated before the claim, pays the fund's share if the fund
/// holds it, once; then what is recovered is returned.
#[test]
fn a_claim_is_paid_by_the_finance_office_once_and_only_then_takes_returns() {
    let mut fund = funded(80, 3_000_000);
    let loan = loan("L1");
    let claim = fund.claim(&loan, d("2021-06-20"), None).unwrap();
    let FundEvent::Claimed { compensation } = &claim else { panic!("{claim:?}") };
    assert_eq!((compensation.fund_fen, compensation.pending), (Fen(4_000_000), true));
    let claimed = fund.apply(&claim, None).unwrap().unwrap();
    assert_eq!((fund.balance_fen, fund.compensations, claimed.paid()), (Fen(3_000_000), 0, None));
    // Held but owed: the claim's 40,000.00 is not lent on (10 × (30,000.00 - 40,000.00): none).
    assert_eq!(
        (fund.pending_fen, fund.lending_limit(LendingLimits::default())),
        (Fen(4_000_000), Fen::ZERO)
    );
    // A second claim, a return before the payment: refused.
    let again = fund.claim(&loan, d("2021-06-21"), Some(&claimed)).unwrap_err();
    assert_eq!(code(again), "LOAN_ALREADY_COMPENSATED");
    let repaid = after(
        &loan,
        LoanCommand::Repay { date: d("2021-07-01"), amount: Fen(1_000_000), netted: Fen::ZERO },
    );
    let early = fund.plan_return(&claimed, &repaid, d("2021-07-01")).unwrap_err();
    assert_eq!(code(early), "CLAIM_STATUS_MISMATCH");
    // The fund holds 30,000.00 of the 40,000.00: not paid until it holds it.
    let short = fund.pay(&claimed, claimed.repaid_before_fen, d("2021-06-25"), "P-1").unwrap_err();
    assert_eq!(code(short), "FUND_INSUFFICIENT");
    let deposit =
        fund.deposit(d("2021-06-22"), DepositSource::Deposit, Fen(1_000_000), "V-2").unwrap();
    fund.apply(&deposit, None).unwrap();
    let back = fund.pay(&claimed, claimed.repaid_before_fen, d("2021-06-19"), "P-1").unwrap_err();
    assert_eq!(code(back), "VALUE_DATE_OUT_OF_RANGE");
    // Nor before the deposit its balance counts: on 06-21 the fund held 30,000.00.
    assert_eq!(fund.last_inflow_on, Some(d("2021-06-22")));
    let before_deposit =
        fund.pay(&claimed, claimed.repaid_before_fen, d("2021-06-21"), "P-1").unwrap_err();
    assert!(
        before_deposit.to_string().contains("received money on 2021-06-22"),
        "{before_deposit}"
    );
    assert_eq!(code(before_deposit), "VALUE_DATE_OUT_OF_RANGE");
    let payment = fund.pay(&claimed, claimed.repaid_before_fen, d("2021-06-25"), "P-1").unwrap();
    // Replayed, a payment to another bank, or dated before the claim, does not apply, nor a
    // return on a claim not paid.
    let forge = |bank: &str, date: &str| {
        let mut forged = payment.clone();
        let FundEvent::Paid { bank_id, value_date, .. } = &mut forged else { panic!() };
        (*bank_id, *value_date) = (bank.to_string(), d(date));
        forged
    };
    assert!(fund.clone().apply(&forge("B", "2021-06-25"), Some(&claimed)).is_ok());
    for forged in [forge("B2", "2021-06-25"), forge("B", "2021-06-19")] {
        assert!(fund.clone().apply(&forged, Some(&claimed)).is_err(), "{forged:?}");
    }
    let early_return = FundEvent::Returned {
        ledger_id: "L".into(),
        loan_id: "L1".into(),
        bank_id: "B".into(),
        value_date: d("2021-07-01"),
        recovered_fen: Fen(100),
        amount_fen: Fen(80),
    };
    assert!(fund.clone().apply(&early_return, Some(&claimed)).is_err());
    let paid = fund.apply(&payment, Some(&claimed)).unwrap().unwrap();
    assert_eq!(
        (fund.balance_fen, fund.compensated_fen, fund.compensations),
        (Fen::ZERO, Fen(4_000_000), 1)
    );
    assert_eq!((paid.paid(), paid.voucher.as_str()), (Some(d("2021-06-25")), "P-1"));
    assert_eq!(fund.pending_fen, Fen::ZERO);
    let twice = fund.pay(&paid, paid.repaid_before_fen, d("2021-06-26"), "P-2").unwrap_err();
    assert_eq!(code(twice), "CLAIM_STATUS_MISMATCH");
    assert!(fund.apply(&payment, Some(&paid)).is_err(), "a payment replayed twice");
    // Recovered since the claim: the fund's share returns.
    let returned = fund.plan_return(&paid, &repaid, d("2021-07-01")).unwrap();
    assert!(matches!(returned, FundEvent::Returned { .. }), "{returned:?}");
}

#[test]
fn a_fund_short_of_its_share_pays_nothing() {
    let fund = funded(70, 3_499_999);
    let short = fund.compensate(&loan("L1"), d("2021-06-20"), None).unwrap_err();
    assert_eq!(code(short), "FUND_INSUFFICIENT");
    assert!(funded(70, 3_500_000).compensate(&loan("L1"), d("2021-06-20"), None).is_ok());
}

#[test]
fn a_closed_loan_or_a_date_before_its_last_event_is_not_compensated() {
    let fund = funded(80, 5_000_000);
    let loan = after(
        &loan("L1"),
        LoanCommand::Repay { date: d("2021-07-01"), amount: Fen(1), netted: Fen::ZERO },
    );
    let before = fund.compensate(&loan, d("2021-06-30"), None).unwrap_err();
    assert_eq!(code(before), "VALUE_DATE_OUT_OF_RANGE");
    let other = LoanState { terms: std::sync::Arc::new(LoanTerms_of("M")), ..loan.clone() };
    assert_eq!(
        code(fund.compensate(&other, d("2021-07-01"), None).unwrap_err()),
        "LEDGER_MISMATCH"
    );
    // Paid off, a loan owes nothing and is not compensated, however late its payments were.
    let l = self::loan("L2");
    let owed = l.quote(d("2021-07-01")).unwrap().total().unwrap();
    let paid_off =
        after(&l, LoanCommand::Repay { date: d("2021-07-01"), amount: owed, netted: Fen::ZERO });
    assert_eq!(paid_off.status, LoanStatus::Settled);
    let closed = fund.compensate(&paid_off, d("2021-07-01"), None).unwrap_err();
    assert_eq!(code(closed), "LOAN_NOT_REPAYABLE");
}

/// A written-off loan is claimed for the principal written off not recovered, its days
/// overdue counted from the day its write-off recorded it fell overdue, as a live loan's would
/// be (since 2026-12-07); a write-off recorded before, which did not record that day, replays
/// without it, and its loan is refused, as is one whose principal was all recovered.
#[test]
fn a_written_off_loan_is_claimed_for_the_principal_not_recovered() {
    let fund = funded(80, 5_000_000);
    let live = loan("L1");
    let days = live.quote(d("2021-07-05")).unwrap().days_overdue;
    let (event, written_off) = live.plan(&LoanCommand::WriteOff { date: d("2021-07-01") }).unwrap();
    let since = written_off.servicing.written_off_overdue_since.expect("recorded");
    assert!(matches!(event, LoanEvent::WrittenOff { overdue_since: Some(s), .. } if s == since));
    let claimed = fund.compensate(&written_off, d("2021-07-05"), None).unwrap();
    let c = fund.clone().apply(&claimed, None).unwrap().unwrap();
    assert_eq!((c.days_overdue, c.loss_fen, c.fund_fen), (days, Fen(5_000_000), Fen(4_000_000)));
    let part = after(&written_off, LoanCommand::Recover { date: d("2021-07-02"), amount: Fen(7) });
    let c = fund.clone().apply(&fund.compensate(&part, d("2021-07-05"), None).unwrap(), None);
    assert_eq!(c.unwrap().unwrap().loss_fen, Fen(5_000_000 - 7));
    let all = Fen(5_000_000);
    let recovered =
        after(&written_off, LoanCommand::Recover { date: d("2021-07-02"), amount: all });
    let none = fund.compensate(&recovered, d("2021-07-05"), None).unwrap_err();
    assert_eq!(code(none), "LOAN_NOT_REPAYABLE");

    // As an earlier build recorded it: replayed, the loan does not know the day either.
    let LoanEvent::WrittenOff { loan_id, value_date, settlements, charges, allocation, .. } = event
    else {
        panic!("{event:?}")
    };
    let old = LoanEvent::WrittenOff {
        loan_id,
        value_date,
        settlements,
        charges,
        allocation,
        overdue_since: None,
    };
    assert!(!serde_json::to_string(&old).unwrap().contains("overdue_since"));
    let mut replayed = live.clone();
    replayed.apply(&old, 9).unwrap();
    assert_eq!(replayed.servicing.written_off_overdue_since, None);
    let mut without = written_off.servicing.clone();
    without.written_off_overdue_since = None;
    assert_eq!(replayed.servicing, without);
    let refused = fund.compensate(&replayed, d("2021-07-05"), None).unwrap_err();
    assert_eq!(code(refused), "LOAN_NOT_REPAYABLE");
}

/// Once compensated on 2021-06-20, a loan takes no payment, extension, misuse or write-off
/// dated before that day (its days overdue and loss stand as the compensation counted them),
/// but a settlement through a point before it, which changes neither; from the day on, all but
/// a payout, which it takes on no day.
#[test]
fn a_compensated_loan_takes_nothing_dated_before_its_compensation_but_a_settlement() {
    let fund = funded(80, 5_000_000);
    // Left alone since its payout on 2021-01-25: the 2021-03-20 point is not recorded yet.
    let loan = loan("L1");
    let event = fund.compensate(&loan, d("2021-06-20"), None).unwrap();
    assert!(matches!(event, FundEvent::Compensated { .. }));
    let marked = loan.compensated(d("2021-06-20"), false);
    assert_eq!(marked.last_value_date, loan.last_value_date, "no event of the loan");
    assert_eq!(marked.principal_outstanding_fen, loan.principal_outstanding_fen);
    for command in [
        LoanCommand::Repay { date: d("2021-06-19"), amount: Fen(100_000), netted: Fen::ZERO },
        LoanCommand::MarkMisuse { date: d("2021-06-01"), falsely_obtained: false },
        LoanCommand::WriteOff { date: d("2021-06-19") },
        LoanCommand::Extend { date: d("2021-06-19"), new_maturity: d("2022-07-25") },
    ] {
        let refused = marked.plan(&command).unwrap_err();
        let text = refused.to_string();
        assert_eq!(code(refused), "VALUE_DATE_OUT_OF_RANGE", "{command:?}");
        assert!(text.contains("compensation by the risk fund on 2021-06-20"), "{text}");
        // Without the compensation, the loan takes it.
        assert!(loan.plan(&command).is_ok(), "{command:?}: {:?}", loan.plan(&command));
    }
    // No payout at all, whatever its date: the fund shared the loss of what was paid out.
    for date in ["2021-06-19", "2021-06-20", "2021-07-01"] {
        let more = marked.plan(&LoanCommand::Disburse { date: d(date), amount: Some(Fen(1)) });
        let more = more.unwrap_err();
        assert!(more.to_string().contains("compensated by the risk fund on 2021-06-20"), "{more}");
        assert_eq!(code(more), "LOAN_NOT_DISBURSABLE", "{date}");
    }
    let settled = after(&marked, LoanCommand::Settle { date: d("2021-03-20") });
    assert_eq!(settled.servicing.compensated_on, Some(d("2021-06-20")), "kept");
    let paid = after(
        &settled,
        LoanCommand::Repay { date: d("2021-06-20"), amount: Fen(100_000), netted: Fen::ZERO },
    );
    assert_eq!(paid.servicing.compensated_on, Some(d("2021-06-20")), "kept");
    assert!(paid.principal_repaid_fen < Fen(100_000), "arrears first");
}

#[allow(non_snake_case)]
fn LoanTerms_of(ledger_id: &str) -> crate::domain::loan::LoanTerms {
    let mut terms = crate::bench::load::bench_terms("110101198001011234");
    terms.loan_id = "X".into();
    terms.ledger_id = ledger_id.into();
    terms
}

#[test]
fn what_is_recovered_after_is_returned_at_the_funds_share() {
    let mut fund = funded(80, 5_000_000);
    let loan = loan("L1");
    let event = fund.compensate(&loan, d("2021-06-20"), None).unwrap();
    let mut c = fund.apply(&event, None).unwrap().unwrap();
    let nothing = fund.plan_return(&c, &loan, d("2021-06-21")).unwrap_err();
    assert_eq!(code(nothing), "NOTHING_TO_RETURN");

    // The household pays 20,000.00 yuan: charges and interest first, the rest principal.
    let paid = after(
        &loan,
        LoanCommand::Repay { date: d("2021-07-01"), amount: Fen(2_000_000), netted: Fen::ZERO },
    );
    let recovered = paid.principal_repaid_fen;
    assert!(recovered.is_positive() && recovered < Fen(2_000_000));
    // What the finance office reads before the return: the same figures.
    let standing = recovery_standing(&c, paid.principal_repaid_fen, 80).unwrap();
    assert_eq!(standing, (recovered, share_of(recovered, 80)));
    let event = fund.plan_return(&c, &paid, d("2021-07-02")).unwrap();
    let FundEvent::Returned { amount_fen, recovered_fen, .. } = &event else { panic!() };
    assert_eq!((*recovered_fen, *amount_fen), (recovered, share_of(recovered, 80)));
    c = fund.apply(&event, Some(&c)).unwrap().unwrap();
    assert_eq!(
        recovery_standing(&c, paid.principal_repaid_fen, 80).unwrap(),
        (recovered, Fen::ZERO)
    );
    // A claim not paid yet owes nothing back, whatever was recovered.
    let claimed = Compensation { pending: true, returned_fen: Fen::ZERO, ..c.clone() };
    assert_eq!(
        recovery_standing(&claimed, paid.principal_repaid_fen, 80).unwrap(),
        (recovered, Fen::ZERO)
    );
    assert_eq!(fund.balance_fen, Fen(1_000_000 + amount_fen.0));
    assert_eq!(c.returned_fen, *amount_fen);
    let twice = fund.plan_return(&c, &paid, d("2021-07-03")).unwrap_err();
    assert_eq!(code(twice), "NOTHING_TO_RETURN");
    let early = fund.plan_return(&c, &paid, d("2021-06-19")).unwrap_err();
    assert_eq!(code(early), "VALUE_DATE_OUT_OF_RANGE");
    // Dated before the payment it would count, it is refused.
    let more = after(
        &paid,
        LoanCommand::Repay { date: d("2021-08-01"), amount: Fen(500_000), netted: Fen::ZERO },
    );
    let before_it = fund.plan_return(&c, &more, d("2021-07-15")).unwrap_err();
    assert_eq!(code(before_it), "VALUE_DATE_OUT_OF_RANGE");
    assert!(fund.plan_return(&c, &more, d("2021-08-01")).is_ok());
}

#[test]
fn an_altered_compensation_or_return_does_not_apply() {
    let mut fund = funded(80, 5_000_000);
    let event = fund.compensate(&loan("L1"), d("2021-06-20"), None).unwrap();
    let FundEvent::Compensated { compensation } = &event else { panic!() };
    let more = FundEvent::Compensated {
        compensation: Compensation {
            fund_fen: Fen(4_500_000),
            bank_fen: Fen(500_000),
            ..compensation.clone()
        },
    };
    assert!(fund.clone().apply(&more, None).is_err());
    let c = fund.apply(&event, None).unwrap().unwrap();
    assert!(fund.clone().apply(&event, Some(&c)).is_err(), "compensated twice");
    let over = FundEvent::Returned {
        ledger_id: "L".into(),
        loan_id: "L1".into(),
        bank_id: "B".into(),
        value_date: d("2021-07-01"),
        recovered_fen: Fen(5_000_000),
        amount_fen: Fen(4_000_001),
    };
    assert!(fund.clone().apply(&over, Some(&c)).is_err());
    assert!(fund.apply(&over, None).is_err(), "a return without its compensation");
}

#[test]
fn the_npl_ratio_suspends_lending_above_3_percent_and_leverage_caps_it_at_10_times() {
    let fund = funded(80, 1_000_000);
    let at = |outstanding, npl| Exposure {
        outstanding_fen: Fen(outstanding),
        undrawn_fen: Fen::ZERO,
        non_performing_fen: Fen(npl),
        live_loans: 2,
        non_performing_loans: 1,
        renewal_overlap_fen: Fen::ZERO,
    };
    let day = d("2021-06-20");
    assert!(
        check_lending(&fund, &at(1_000_000, 30_000), Fen(1), day, None, LendingLimits::default())
            .is_ok()
    );
    let suspended =
        check_lending(&fund, &at(1_000_000, 30_001), Fen(1), day, None, LendingLimits::default());
    let suspended = suspended.unwrap_err();
    // The ratio is shown rounded up, never as the limit it is above (it read 3.00%).
    assert!(suspended.to_string().contains("is 3.001% (30001 fen of 1000000"), "{suspended}");
    assert_eq!(code(suspended), "LENDING_SUSPENDED");
    assert_eq!(at(1_000_000, 30_001).npl_basis_points(), 300);
    assert_eq!(at(0, 0).npl_basis_points(), 0);
    // Limit 10,000,000: 6,000,000 outstanding, 1,000,000 contracted and not paid out.
    let drawing = Exposure { undrawn_fen: Fen(1_000_000), ..at(6_000_000, 0) };
    assert!(
        check_lending(&fund, &drawing, Fen(3_000_000), day, None, LendingLimits::default()).is_ok()
    );
    let over = check_lending(&fund, &drawing, Fen(3_000_001), day, None, LendingLimits::default());
    let DomainError::Refused { reason, metadata, .. } = over.unwrap_err() else { panic!() };
    assert_eq!(reason, Reason::FundLeverageExceeded);
    assert!(metadata.contains(&("room_fen".into(), "3000000".into())));
    // With a claim not paid yet, the limit is 10 × the free balance, and the refusal says so,
    // its figures adding up (it named the balance alone).
    let mut claimed = fund.clone();
    claimed.pending_fen = Fen(200_000);
    let over =
        check_lending(&claimed, &drawing, Fen(1_000_001), day, None, LendingLimits::default())
            .unwrap_err();
    let text = over.to_string();
    assert!(
        text.contains("above 10 × its risk fund's free balance (800000 fen: its balance of 1000000 fen less the claims it has not paid yet, 200000 fen), 8000000 fen"),
        "{text}"
    );
    let DomainError::Refused { metadata, .. } = over else { panic!() };
    assert!(metadata.contains(&("pending_fen".into(), "200000".into())), "{metadata:?}");
    assert!(metadata.contains(&("balance_fen".into(), "1000000".into())), "{metadata:?}");
}

/// A policy's own limits: at leverage 20 the same fund lends twice as much, and at a limit of
/// 5% a ratio of 4% does not suspend lending; the refusals name the limits applied.
#[test]
fn a_policy_sets_the_leverage_and_the_npl_limit() {
    let fund = funded(80, 1_000_000);
    let own = LendingLimits { leverage: 20, npl_limit_basis_points: 500 };
    let day = d("2021-06-20");
    assert_eq!(fund.lending_limit(own), Fen(20_000_000));
    let standing = |outstanding, npl| Exposure {
        outstanding_fen: Fen(outstanding),
        non_performing_fen: Fen(npl),
        ..Exposure::default()
    };
    let four = standing(10_000_000, 400_000);
    let defaults = LendingLimits::default();
    let refused = check_lending(&fund, &four, Fen(1), day, None, defaults).unwrap_err();
    let DomainError::Refused { reason, metadata, .. } = refused else { panic!() };
    assert_eq!(reason, Reason::LendingSuspended);
    assert!(metadata.contains(&("npl_limit_basis_points".into(), "300".into())), "{metadata:?}");
    assert!(check_lending(&fund, &four, Fen(10_000_000), day, None, own).is_ok());
    let over = check_lending(&fund, &four, Fen(10_000_001), day, None, own).unwrap_err();
    assert!(over.to_string().contains("above 20 × its risk fund's free balance"), "{over}");
    assert_eq!(code(over), "FUND_LEVERAGE_EXCEEDED");
    // Exactly 5% is not above it; a fen more is.
    assert!(!standing(10_000_000, 500_000).lending_suspended(own));
    assert!(standing(10_000_000, 500_001).lending_suspended(own));
    let suspended =
        check_lending(&fund, &standing(10_000_000, 500_001), Fen(1), day, None, own).unwrap_err();
    assert!(suspended.to_string().contains("above the policy's 5.00%"), "{suspended}");
}

/// A loan's claim days are its contract's: at 60, it is `OVERDUE_90` and claimed from 61 days
/// overdue (the bench's loan pays nothing from 2021-03-21: 61 days on 2021-05-20); the same
/// loan at the programme's 90 is not. The terms keep the figure only when it is not 90, so the
/// contracts recorded before it read back as they were.
#[test]
fn a_loan_is_claimed_after_its_contracts_claim_days() {
    let fund = funded(80, 5_000_000);
    let at_90 = loan("L1");
    let mut terms = (*at_90.terms).clone();
    terms.claim_overdue_days = 60;
    let at_60 = LoanState { terms: std::sync::Arc::new(terms.clone()), ..at_90.clone() };
    let (day, before) = (d("2021-05-20"), d("2021-05-19"));
    // As a quote counts it: the settlement point of 2021-03-20 is due, recorded or not.
    let status = |l: &LoanState, on| l.status_shown(l.quote(on).ok().as_ref(), on);
    assert_eq!(status(&at_60, before), LoanStatus::Overdue);
    assert_eq!(status(&at_60, day), LoanStatus::Overdue90);
    assert_eq!(status(&at_90, day), LoanStatus::Overdue);
    assert_eq!(Exposure::of([&at_60, &at_90], day).non_performing_fen, Fen(5_000_000));
    assert_eq!(code(fund.claim(&at_60, before, None).unwrap_err()), "LOAN_NOT_OVERDUE");
    assert!(fund.claim(&at_60, day, None).is_ok());
    let refused = fund.claim(&at_90, day, None).unwrap_err();
    let DomainError::Refused { metadata, .. } = refused else { panic!() };
    assert!(metadata.contains(&("claim_overdue_days".into(), "90".into())), "{metadata:?}");

    let text = serde_json::to_string(&terms).unwrap();
    assert!(text.contains("\"claim_overdue_days\":60"), "{text}");
    let programme = serde_json::to_string(&*at_90.terms).unwrap();
    assert!(!programme.contains("claim_overdue_days"), "{programme}");
    let read: LoanTerms = serde_json::from_str(&programme).unwrap();
    assert_eq!(read.claim_overdue_days, 90);
}

/// A renewal counts for what it adds above the loan it renews (paid out once that one owes no
/// principal): a ledger at its limit renews a loan of the same principal, not a larger one, and
/// another loan is refused as before.
#[test]
fn a_renewal_is_not_counted_twice_against_the_leverage_limit() {
    // Limit 5,000,000: the parent, 5,000,000 outstanding, takes it all.
    let fund = funded(80, 500_000);
    let parent = loan("P");
    let day = d("2021-04-01");
    let exposure = Exposure::of([&parent], day);
    assert_eq!(exposure.committed_fen(), 5_000_000);
    assert!(
        check_lending(
            &fund,
            &exposure,
            Fen(5_000_000),
            day,
            Some((&parent, 0)),
            LendingLimits::default()
        )
        .is_ok()
    );
    let other =
        check_lending(&fund, &exposure, Fen(5_000_000), day, None, LendingLimits::default())
            .unwrap_err();
    assert_eq!(code(other), "FUND_LEVERAGE_EXCEEDED");
    let larger = check_lending(
        &fund,
        &exposure,
        Fen(5_000_001),
        day,
        Some((&parent, 0)),
        LendingLimits::default(),
    )
    .unwrap_err();
    assert!(larger.to_string().contains("1 fen more than that loan counts"), "{larger}");
    assert_eq!(code(larger), "FUND_LEVERAGE_EXCEEDED");
    // Half repaid, the parent counts 2,500,000: a renewal of 5,000,000 adds the other half.
    let half = after(
        &parent,
        LoanCommand::Repay { date: d("2021-03-20"), amount: Fen(2_529_410), netted: Fen::ZERO },
    );
    assert_eq!(half.principal_outstanding_fen, Fen(2_500_000));
    let exposure = Exposure::of([&half], day);
    assert!(
        check_lending(
            &fund,
            &exposure,
            Fen(5_000_000),
            day,
            Some((&half, 0)),
            LendingLimits::default()
        )
        .is_ok()
    );
}

/// A renewal contracted and not paid out yet, and the loan it renews, are one lending in the
/// ledger's exposure: counted once, as the larger of the two, for every other contract too; a
/// second renewal of the same loan counts in full what the first has taken of it.
#[test]
fn a_loan_and_its_renewal_waiting_to_be_paid_out_count_once() {
    let fund = funded(80, 1_000_000);
    let parent = loan("P");
    let renewal = {
        let mut terms = (*parent.terms).clone();
        terms.loan_id = "R".into();
        terms.renews_loan_id = Some("P".into());
        LoanState::new(terms, 2)
    };
    let day = d("2021-04-01");
    let exposure = Exposure::of([&parent, &renewal], day);
    assert_eq!((exposure.outstanding_fen, exposure.undrawn_fen), (Fen(5_000_000), Fen(5_000_000)));
    assert_eq!(exposure.renewal_overlap_fen, Fen(5_000_000));
    assert_eq!(exposure.committed_fen(), 5_000_000, "one lending, not two");
    // The limit of 10,000,000 leaves room for another loan of 5,000,000, not more.
    let limits = LendingLimits::default();
    assert_eq!(fund.room(&exposure, limits), Fen(5_000_000));
    assert!(check_lending(&fund, &exposure, Fen(5_000_000), day, None, limits).is_ok());
    assert!(check_lending(&fund, &exposure, Fen(5_000_001), day, None, limits).is_err());
    // A second renewal of P: the first has taken all P counts, so it adds its whole principal.
    let second =
        check_lending(&fund, &exposure, Fen(5_000_001), day, Some((&parent, 5_000_000)), limits);
    assert_eq!(code(second.unwrap_err()), "FUND_LEVERAGE_EXCEEDED");
    assert!(
        check_lending(&fund, &exposure, Fen(5_000_000), day, Some((&parent, 5_000_000)), limits)
            .is_ok()
    );
    // Half repaid, P counts 2,500,000: the renewal's 5,000,000 overlaps it by that much.
    let half = after(
        &parent,
        LoanCommand::Repay { date: d("2021-03-20"), amount: Fen(2_529_410), netted: Fen::ZERO },
    );
    let exposure = Exposure::of([&half, &renewal], day);
    assert_eq!(
        (exposure.renewal_overlap_fen, exposure.committed_fen()),
        (Fen(2_500_000), 5_000_000)
    );
    // A renewal of a loan not live (not in the ledger's loans) overlaps nothing.
    assert_eq!(Exposure::of([&renewal], day).committed_fen(), 5_000_000);
}

#[test]
fn exposure_counts_live_loans_on_the_date() {
    // Pays its March interest on its day: never overdue.
    let paying = {
        let l = loan("A");
        let q = l.quote(d("2021-03-20")).unwrap();
        let interest = q.current_interest_fen.checked_add(q.overdue_interest_fen).unwrap();
        assert!(interest.is_positive());
        after(&l, LoanCommand::Repay { date: d("2021-03-20"), amount: interest, netted: Fen::ZERO })
    };
    let late = loan("B");
    let paid_off = {
        let l = loan("C");
        let owed = l.quote(d("2021-02-01")).unwrap().total().unwrap();
        after(&l, LoanCommand::Repay { date: d("2021-02-01"), amount: owed, netted: Fen::ZERO })
    };
    let contracted = {
        let mut terms = crate::bench::load::bench_terms("110101198001011234");
        terms.loan_id = "D".into();
        LoanState::new(terms, 1)
    };
    let half = after(
        &contracted,
        LoanCommand::Disburse { date: d("2021-02-01"), amount: Some(Fen(2_000_000)) },
    );
    let e = Exposure::of([&paying, &late, &paid_off, &contracted], d("2021-06-20"));
    assert_eq!(e.live_loans, 2);
    assert_eq!(e.undrawn_fen, Fen(5_000_000), "a contract not paid out is drawn later");
    let e2 = Exposure::of([&half], d("2021-06-20"));
    assert_eq!((e2.outstanding_fen, e2.undrawn_fen), (Fen(2_000_000), Fen(3_000_000)));
    assert_eq!(Exposure::of([&contracted], d("2022-01-25")).undrawn_fen, Fen::ZERO, "expired");
    // The rest of a contract that can no longer be paid out holds no room: an amortising
    // loan's after its one payout, a compensated loan's.
    let amortising = {
        let mut terms = crate::bench::load::bench_terms("110101198001011234");
        terms.loan_id = "E".into();
        terms.repayment_method = crate::domain::loan::RepaymentMethod::EqualInstalment;
        terms.settlement_frequency = crate::domain::loan::SettlementFrequency::Monthly;
        let l = LoanState::new(terms, 1);
        after(&l, LoanCommand::Disburse { date: d("2021-01-25"), amount: Some(Fen(3_000_000)) })
    };
    assert!(
        amortising.plan(&LoanCommand::Disburse { date: d("2021-02-01"), amount: None }).is_err()
    );
    let fixed = Exposure::of([&amortising], d("2021-02-01"));
    assert_eq!((fixed.outstanding_fen, fixed.undrawn_fen), (Fen(3_000_000), Fen::ZERO));
    let compensated = half.compensated(d("2021-06-20"), false);
    assert_eq!(Exposure::of([&compensated], d("2021-06-20")).undrawn_fen, Fen::ZERO);
    // A claim not paid yet holds the rest's room: rejected, the loan may pay it out.
    let claimed = half.compensated(d("2021-06-20"), true);
    let held = Exposure::of([&half], d("2021-06-20")).undrawn_fen;
    assert!(held > Fen::ZERO);
    assert_eq!(Exposure::of([&claimed], d("2021-06-20")).undrawn_fen, held);
    assert_eq!(Exposure::of([&claimed.claim_paid()], d("2021-06-20")).undrawn_fen, Fen::ZERO);
    assert_eq!(e.outstanding_fen, Fen(10_000_000));
    assert_eq!((e.non_performing_loans, e.non_performing_fen), (1, Fen(5_000_000)));
    assert!(e.lending_suspended(LendingLimits::default()));
    let e = Exposure::of([&paying, &late], d("2021-06-18"));
    assert_eq!(e.non_performing_loans, 0, "90 days overdue is not yet more than 90");
}

/// `percent` of `amount` fen rounded half up to the fen, worked out here: the oracle of the
/// fund's shares (`amount` is never negative in these tests).
fn percent_half_up(amount: i64, percent: u8) -> Fen {
    let hundredths = i128::from(amount) * i128::from(percent);
    Fen(i64::try_from((hundredths + 50) / 100).unwrap())
}

proptest! {
    /// A loan of any principal from 1,000 yuan (a smaller one, 99% repaid early, might owe no
    /// interest in its first quarter and never fall overdue), part of it repaid early,
    /// compensated: the loss is the principal left after that repayment, the fund's part its share rounded half up (worked
    /// out here from the principal and the repayment, not by the fund), the bank's the rest.
    #[test]
    fn a_compensations_parts_add_up_to_the_loss(
        principal in 100_000i64..=100_000_000_000,
        repaid_percent in prop_oneof![Just(0i64), 0i64..100],
        seventy in any::<bool>(),
    ) {
        let percent = if seventy { 70 } else { 80 };
        let mut terms = crate::bench::load::bench_terms("110101198001011234");
        terms.loan_id = "P".into();
        terms.ledger_id = "L".into();
        terms.principal_fen = Fen(principal);
        let (_, mut loan) = LoanState::new(terms, 1)
            .plan(&LoanCommand::Disburse { date: d("2021-01-25"), amount: None })
            .unwrap();
        // Before the first 20th nothing but principal is owed: all of it goes to principal,
        // and the first quarter's interest, unpaid, is more than 90 days overdue on 06-20.
        let repaid = principal * repaid_percent / 100;
        if repaid > 0 {
            let (date, amount, netted) = (d("2021-02-01"), Fen(repaid), Fen::ZERO);
            loan = after(&loan, LoanCommand::Repay { date, amount, netted });
        }
        let fund = funded(percent, 100_000_000_000);
        let event = fund.compensate(&loan, d("2021-06-20"), None).unwrap();
        let FundEvent::Compensated { compensation: c } = &event else { panic!("{event:?}") };
        let loss = principal - repaid;
        let share = percent_half_up(loss, percent);
        prop_assert_eq!(c.loss_fen, Fen(loss));
        prop_assert_eq!(c.fund_fen, share);
        prop_assert_eq!(c.bank_fen, Fen(loss - share.0));
        prop_assert_eq!(c.repaid_before_fen, Fen(repaid));
    }

    #[test]
    fn the_shares_add_up_to_the_loss(loss in 0i64..=1_000_000_000_000, seventy in any::<bool>()) {
        let percent = if seventy { 70 } else { 80 };
        let fund = share_of(Fen(loss), percent);
        prop_assert_eq!(fund, percent_half_up(loss, percent));
        prop_assert!(fund.0 >= 0 && fund.0 <= loss);
        // Within half a fen of the exact share, the half rounded up.
        let exact = i128::from(loss) * i128::from(percent);
        let ours = i128::from(fund.0) * 100;
        prop_assert!(ours - exact <= 50 && exact - ours < 50);
    }

    #[test]
    fn returns_in_any_steps_add_up_to_the_share_of_the_total(
        loss in 1i64..=5_000_000,
        steps in proptest::collection::vec(0i64..=2_000_000, 1..8),
        seventy in any::<bool>(),
    ) {
        let percent = if seventy { 70 } else { 80 };
        let fund_fen = percent_half_up(loss, percent);
        let mut fund = Fund { balance_fen: fund_fen, ..opened(percent) };
        let mut c = Compensation {
            loan_id: "L1".into(),
            bank_id: "B".into(),
            ledger_id: "L".into(),
            compensated_on: d("2021-06-20"),
            days_overdue: 92,
            loss_fen: Fen(loss),
            fund_fen,
            bank_fen: Fen(loss - fund_fen.0),
            repaid_before_fen: Fen::ZERO,
            recovered_fen: Fen::ZERO,
            returned_fen: Fen::ZERO,
            pending: false,
            paid_on: None,
            voucher: String::new(),
            rejected_on: None,
            rejection_reason: String::new(),
        };
        fund.apply(&FundEvent::Compensated { compensation: c.clone() }, None).unwrap();
        let mut recovered = 0i64;
        for step in steps {
            recovered = (recovered + step).min(loss);
            let due = return_due(&c, Fen(recovered), percent);
            if due.is_positive() {
                let event = FundEvent::Returned {
                    ledger_id: "L".into(),
                    loan_id: "L1".into(),
                    bank_id: "B".into(),
                    value_date: d("2021-07-01"),
                    recovered_fen: Fen(recovered),
                    amount_fen: due,
                };
                c = fund.apply(&event, Some(&c)).unwrap().unwrap();
            }
        }
        let returned = percent_half_up(recovered, percent).min(fund_fen);
        prop_assert_eq!(c.returned_fen, returned);
        prop_assert_eq!(fund.balance_fen, returned);
        prop_assert!(c.returned_fen <= c.fund_fen);
    }
}

proptest! {
    /// 账销案存: a loan part repaid early, then left unpaid, compensated at 80% and written
    /// off, then recovered in any number of pieces. Each piece goes to the principal written
    /// off first; principal repaid never passes what was paid out; what is recovered in all
    /// never passes what was written off (a piece past it refused, nothing changed); the loan
    /// stays written off; and the fund's returns, made after each piece, add up to its share
    /// of the principal recovered since the compensation, at most what it paid: worked out
    /// here, 80% rounded half up of the principal recovered and of the principal left at the
    /// compensation.
    #[test]
    fn recoveries_after_a_write_off_go_to_principal_first_and_return_the_funds_share(
        pieces in proptest::collection::vec(1i64..3_000_000, 1..8),
        repaid_before in prop_oneof![Just(0i64), 1i64..5_000_000],
    ) {
        let mut fund = funded(80, 5_000_000);
        let mut unpaid = loan("L1");
        if repaid_before > 0 {
            let (date, amount, netted) = (d("2021-02-01"), Fen(repaid_before), Fen::ZERO);
            unpaid = after(&unpaid, LoanCommand::Repay { date, amount, netted });
        }
        let event = fund.compensate(&unpaid, d("2021-06-20"), None).unwrap();
        let mut c = fund.apply(&event, None).unwrap().unwrap();
        let compensated = unpaid.compensated(d("2021-06-20"), false);
        let mut l = after(&compensated, LoanCommand::WriteOff { date: d("2021-07-01") });
        let written_off = l.servicing.written_off_fen;
        // The principal written off: what was left at the compensation.
        let principal = Fen(5_000_000 - repaid_before);
        prop_assert_eq!(c.fund_fen, percent_half_up(principal.0, 80));
        prop_assert!(written_off > principal);
        let mut total = 0i64;
        for (i, piece) in pieces.iter().copied().enumerate() {
            let date = d("2021-08-01") + chrono::Duration::days(i as i64);
            let planned = l.plan(&LoanCommand::Recover { date, amount: Fen(piece) });
            if total + piece > written_off.0 {
                prop_assert_eq!(code(planned.unwrap_err()), "REPAYMENT_EXCEEDS_OWED");
                continue;
            }
            let (event, next) = planned.unwrap();
            let LoanEvent::Recovered { principal_fen, amount_fen, .. } = event else {
                panic!("{event:?}")
            };
            let principal_left = principal.0 - total.min(principal.0);
            prop_assert_eq!((amount_fen, principal_fen), (Fen(piece), Fen(piece.min(principal_left))));
            total += piece;
            l = next;
            let recovered = total.min(principal.0);
            prop_assert_eq!(l.principal_repaid_fen, Fen(repaid_before + recovered));
            prop_assert_eq!(l.servicing.recovered_fen, Fen(total));
            prop_assert_eq!(l.status, crate::domain::loan::LoanStatus::WrittenOff);
            match fund.plan_return(&c, &l, date) {
                Ok(returned) => c = fund.apply(&returned, Some(&c)).unwrap().unwrap(),
                Err(e) => prop_assert_eq!(code(e), "NOTHING_TO_RETURN"),
            }
            let returned = percent_half_up(recovered, 80).min(percent_half_up(principal.0, 80));
            prop_assert_eq!(c.returned_fen, returned);
        }
    }
}
