//! Conversions between domain values and proto messages, in one place.

use tonic::Status;

use super::error::invalid;
use super::parse;
use super::pb;
use crate::app::command::JournalRef;
use crate::domain::date::{BusinessDate, format_date};
use crate::domain::error::{DomainError, Reason};
use crate::domain::household::HouseholdStatus;
use crate::domain::identity::mask;
use crate::domain::loan::{LoanState, LoanStatus, RepaymentMethod, SettlementFrequency};
use crate::domain::lpr::TenorBucket;
use crate::domain::money::Rounding;
use crate::domain::policy::{
    CLAIM_OVERDUE_DAYS_DEFAULT, FUND_LEVERAGE_DEFAULT, NOTICE_DAYS_DEFAULT,
    NPL_LIMIT_DEFAULT_BASIS_POINTS, PolicyParams, PolicyVersion,
};
use crate::domain::servicing::Quote;
use crate::store::rows::{HouseholdView, JournalEntry};

pub fn household_status_from_pb(field: &str, value: i32) -> Result<HouseholdStatus, Status> {
    use pb::HouseholdStatus as P;
    Ok(match parse::enumeration::<P>(field, value)? {
        P::Unspecified => return Err(invalid(field, "is required")),
        P::RegisteredPoor => HouseholdStatus::RegisteredPoor,
        P::Exited => HouseholdStatus::Exited,
        P::Monitored => HouseholdStatus::Monitored,
        P::Edge => HouseholdStatus::Edge,
        P::NotEligible => HouseholdStatus::NotEligible,
        P::Removed => HouseholdStatus::Removed,
        P::MovedOut => HouseholdStatus::MovedOut,
    })
}

pub fn household_status_to_pb(s: HouseholdStatus) -> pb::HouseholdStatus {
    use pb::HouseholdStatus as P;
    match s {
        HouseholdStatus::RegisteredPoor => P::RegisteredPoor,
        HouseholdStatus::Exited => P::Exited,
        HouseholdStatus::Monitored => P::Monitored,
        HouseholdStatus::Edge => P::Edge,
        HouseholdStatus::NotEligible => P::NotEligible,
        HouseholdStatus::Removed => P::Removed,
        HouseholdStatus::MovedOut => P::MovedOut,
    }
}

pub fn method_from_pb(field: &str, value: i32) -> Result<RepaymentMethod, Status> {
    use pb::RepaymentMethod as P;
    Ok(match parse::enumeration::<P>(field, value)? {
        P::Unspecified => return Err(invalid(field, "is required")),
        P::Bullet => RepaymentMethod::Bullet,
        P::EqualInstalment => RepaymentMethod::EqualInstalment,
        P::EqualPrincipal => RepaymentMethod::EqualPrincipal,
        P::InterestWithPrincipal => RepaymentMethod::InterestWithPrincipal,
    })
}

pub fn method_to_pb(m: RepaymentMethod) -> pb::RepaymentMethod {
    use pb::RepaymentMethod as P;
    match m {
        RepaymentMethod::Bullet => P::Bullet,
        RepaymentMethod::EqualInstalment => P::EqualInstalment,
        RepaymentMethod::EqualPrincipal => P::EqualPrincipal,
        RepaymentMethod::InterestWithPrincipal => P::InterestWithPrincipal,
    }
}

/// The frequency given; `None` when left out (`UNSPECIFIED`), for the caller's default.
pub fn frequency_from_pb(field: &str, value: i32) -> Result<Option<SettlementFrequency>, Status> {
    use pb::SettlementFrequency as P;
    Ok(parse::optional_enumeration::<P>(field, value)?.and_then(|p| match p {
        P::Unspecified => None,
        P::Monthly => Some(SettlementFrequency::Monthly),
        P::Quarterly => Some(SettlementFrequency::Quarterly),
        P::Yearly => Some(SettlementFrequency::Yearly),
        P::AtMaturity => Some(SettlementFrequency::AtMaturity),
    }))
}

pub fn frequency_to_pb(f: SettlementFrequency) -> pb::SettlementFrequency {
    use pb::SettlementFrequency as P;
    match f {
        SettlementFrequency::Monthly => P::Monthly,
        SettlementFrequency::Quarterly => P::Quarterly,
        SettlementFrequency::Yearly => P::Yearly,
        SettlementFrequency::AtMaturity => P::AtMaturity,
    }
}

pub fn loan_status_from_pb(field: &str, value: i32) -> Result<Option<LoanStatus>, Status> {
    use pb::LoanStatus as P;
    Ok(parse::optional_enumeration::<P>(field, value)?.and_then(|p| match p {
        P::Unspecified => None,
        P::Contracted => Some(LoanStatus::Contracted),
        P::Active => Some(LoanStatus::Active),
        P::Overdue => Some(LoanStatus::Overdue),
        P::Overdue90 => Some(LoanStatus::Overdue90),
        P::Settled => Some(LoanStatus::Settled),
        P::WrittenOff => Some(LoanStatus::WrittenOff),
    }))
}

pub fn loan_status_to_pb(s: LoanStatus) -> pb::LoanStatus {
    use pb::LoanStatus as P;
    match s {
        LoanStatus::Contracted => P::Contracted,
        LoanStatus::Active => P::Active,
        LoanStatus::Overdue => P::Overdue,
        LoanStatus::Overdue90 => P::Overdue90,
        LoanStatus::Settled => P::Settled,
        LoanStatus::WrittenOff => P::WrittenOff,
    }
}

pub fn tenor_from_pb(field: &str, value: i32) -> Result<TenorBucket, Status> {
    use pb::LprTenor as P;
    Ok(match parse::enumeration::<P>(field, value)? {
        P::Unspecified => return Err(invalid(field, "is required")),
        P::OneYear => TenorBucket::UpToOneYear,
        P::FiveYear => TenorBucket::OverOneYear,
    })
}

pub fn tenor_to_pb(t: TenorBucket) -> pb::LprTenor {
    match t {
        TenorBucket::UpToOneYear => pb::LprTenor::OneYear,
        TenorBucket::OverOneYear => pb::LprTenor::FiveYear,
    }
}

pub fn journal_ref(r: &JournalRef) -> pb::JournalRef {
    pb::JournalRef { ledger_id: r.ledger_id.clone(), seq: r.seq, hash: r.hash.clone() }
}

/// A loan's figures as of `as_of` (on or after its last event): status, buckets with accruals
/// to that day, days overdue.
pub fn loan_to_pb(l: &LoanState, full_ids: bool, as_of: BusinessDate) -> pb::Loan {
    loan_to_pb_quoted(l, full_ids, as_of, l.quote(as_of).ok().as_ref())
}

/// [`loan_to_pb`] for a call that asks for one loan: a live loan whose figures cannot be worked
/// out on `as_of` (more settlement points to catch up than one event may) is refused with the
/// reason, not shown owing nothing.
/// `field`: the request's field that sent `as_of`, named in the refusal (`None`: today's, not
/// sent).
pub fn loan_to_pb_checked(
    l: &LoanState,
    full_ids: bool,
    as_of: BusinessDate,
    field: Option<&str>,
) -> Result<pb::Loan, Status> {
    let quote = if l.status.is_live() { Some(quote_on(l, as_of, field)?) } else { None };
    Ok(loan_to_pb_quoted(l, full_ids, as_of, quote.as_ref()))
}

/// A live loan's payoff quote on `date`; a date it cannot be worked out on (before the loan's
/// last event, or more settlement points after it than one event may catch up) is refused
/// `VALUE_DATE_OUT_OF_RANGE` naming `field`, the request's field that sent the date, if any.
pub fn quote_on(l: &LoanState, date: BusinessDate, field: Option<&str>) -> Result<Quote, Status> {
    l.quote(date).map_err(|e| {
        let too_many_points = crate::domain::servicing::ServicingError::TooManyPoints.to_string();
        let e = match (e, field) {
            // Only the two refusals that are about the date asked for name it: one before the
            // loan's last event, and one too far after it. A schedule that does not match or a
            // date past the calendar's range is about the loan, and passes through as it is.
            (
                DomainError::Refused { reason: Reason::ValueDateOutOfRange, message, metadata },
                Some(field),
            ) if date < l.last_value_date || message == too_many_points => DomainError::Refused {
                reason: Reason::ValueDateOutOfRange,
                message: if date < l.last_value_date {
                    format!(
                        "{field} {} is before the loan's last recorded event on {}",
                        format_date(date),
                        format_date(l.last_value_date)
                    )
                } else {
                    format!(
                        "{field} {}: {message} after the loan's last recorded event on {}",
                        format_date(date),
                        format_date(l.last_value_date)
                    )
                },
                metadata,
            }
            .with("field", field),
            (e, _) => e,
        };
        super::error::status(e.into())
    })
}

/// [`loan_to_pb`] with the loan's payoff quote on `as_of` already worked out.
pub fn loan_to_pb_quoted(
    l: &LoanState,
    full_ids: bool,
    as_of: BusinessDate,
    quote: Option<&Quote>,
) -> pb::Loan {
    let t = &l.terms;
    let s = &l.servicing;
    let q = |f: fn(&Quote) -> i64| quote.map_or(0, f);
    pb::Loan {
        as_of: format_date(as_of),
        current_maturity_date: format_date(s.maturity_date.unwrap_or(t.maturity_date)),
        interest_due_fen: q(|q| q.overdue_interest_fen.0 + q.current_interest_fen.0),
        penalty_fen: q(|q| q.penalty_fen.0),
        compound_fen: q(|q| q.compound_fen.0),
        accrued_interest_fen: q(|q| q.accrued_interest_fen.0),
        days_overdue: q(|q| q.days_overdue),
        // As the buckets: a point as_of has passed is counted whether a run recorded it or not.
        next_settlement_date: quote
            .map_or(s.next_point, |q| q.next_point)
            .map(format_date)
            .unwrap_or_default(),
        misuse_since: s.misuse_since.map(format_date).unwrap_or_default(),
        falsely_obtained: s.falsely_obtained,
        renews_loan_id: t.renews_loan_id.clone().unwrap_or_default(),
        interest_settled_fen: s.interest_settled_fen.0,
        penalty_paid_fen: s.penalty_paid_fen.0,
        compound_paid_fen: s.compound_paid_fen.0,
        written_off_fen: s.written_off_fen.0,
        recovered_fen: s.recovered_fen.0,
        subsidy_netted_fen: s.subsidy_netted_fen.0,
        extensions: s.extensions,
        overdue_principal_fen: q(|q| q.overdue_principal_fen.0),
        current_principal_fen: q(|q| q.current_principal_fen.0),
        loan_id: t.loan_id.clone(),
        ledger_id: t.ledger_id.clone(),
        bank_id: t.bank_id.clone(),
        contract_number: t.contract_number.clone(),
        household_id: t.household_id.clone(),
        borrower_name: t.borrower_name.clone(),
        borrower_id_number: if full_ids {
            t.borrower_id_number.clone()
        } else {
            mask(&t.borrower_id_number)
        },
        principal_fen: t.principal_fen.0,
        annual_rate: t.annual_rate.to_string(),
        contract_date: format_date(t.contract_date),
        term_months: t.term_months,
        maturity_date: format_date(t.maturity_date),
        repayment_method: method_to_pb(t.repayment_method) as i32,
        settlement_frequency: frequency_to_pb(t.settlement_frequency) as i32,
        purpose: t.purpose.clone(),
        collateral_free: t.collateral_free,
        guarantee_free: t.guarantee_free,
        // The status follows the same figures as the buckets: settlement points up to as_of
        // count even when no run has recorded them yet.
        status: loan_status_to_pb(l.status_shown(quote, as_of)) as i32,
        disbursed_fen: l.disbursed_fen.0,
        principal_outstanding_fen: l.principal_outstanding_fen.0,
        principal_repaid_fen: l.principal_repaid_fen.0,
        interest_paid_fen: l.interest_paid_fen.0,
        disbursed_on: l.disbursed_on.map(format_date).unwrap_or_default(),
        last_seq: l.last_seq,
    }
}

/// A household as answered; its status history by effective date, the entries of one date in
/// the order they were recorded ([`crate::domain::household::status_on`]'s reading: each entry
/// holds from its date until the next one's, and of one date the last holds). `statuses` come
/// in recording order, where a status recorded later may take effect earlier (a back-dated
/// correction): listed so, a reader taking each entry as holding until the next would read a
/// household eligible that the rules hold removed.
pub fn household_to_pb(
    record: &crate::domain::event::HouseholdRecord,
    statuses: &[crate::domain::household::StatusEntry],
    full_ids: bool,
) -> pb::Household {
    let mut statuses: Vec<&crate::domain::household::StatusEntry> = statuses.iter().collect();
    // Stable: one date's entries stay in recording order.
    statuses.sort_by_key(|s| s.effective_date);
    pb::Household {
        household_id: record.household_id.clone(),
        ledger_id: record.ledger_id.clone(),
        head_name: record.head_name.clone(),
        head_id_number: if full_ids {
            record.head_id_number.clone()
        } else {
            mask(&record.head_id_number)
        },
        township: record.township.clone(),
        village: record.village.clone(),
        status_history: statuses
            .iter()
            .map(|s| pb::HouseholdStatusEntry {
                status: household_status_to_pb(s.status) as i32,
                effective_date: format_date(s.effective_date),
                reason: s.reason.clone(),
            })
            .collect(),
    }
}

pub fn household_view_to_pb(view: &HouseholdView, full_ids: bool) -> pb::Household {
    let record = crate::domain::event::HouseholdRecord {
        household_id: view.row.household_id.clone(),
        ledger_id: view.row.ledger_id.clone(),
        head_name: view.row.head_name.clone(),
        head_id_number: view.row.head_id_number.clone(),
        township: view.row.township.clone(),
        village: view.row.village.clone(),
    };
    household_to_pb(&record, &view.statuses, full_ids)
}

/// An instant stored as microseconds since the Unix epoch.
pub fn timestamp_of_us(us: i64) -> prost_types::Timestamp {
    let seconds = us.div_euclid(1_000_000);
    let nanos = (us.rem_euclid(1_000_000) * 1_000) as i32;
    prost_types::Timestamp { seconds, nanos }
}

pub fn journal_to_pb(e: &JournalEntry) -> pb::JournalTransaction {
    let r = &e.row;
    pb::JournalTransaction {
        ledger_id: r.ledger_id.clone(),
        seq: u64::try_from(r.seq).unwrap_or_default(),
        kind: r.kind.clone(),
        value_date: r.value_date.clone(),
        recorded_at: Some(timestamp_of_us(r.recorded_at_us)),
        actor: r.actor.clone(),
        request_id: r.request_id.clone(),
        command_json: r.command_json.clone(),
        postings: e
            .postings
            .iter()
            .map(|p| pb::Posting { account: p.account.clone(), amount_fen: p.amount.0 })
            .collect(),
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
    }
}

/// A policy version as the API shows it, recorded by the journal transaction `recorded_seq`.
pub fn policy_to_pb(ledger_id: &str, v: &PolicyVersion, recorded_seq: u64) -> pb::PolicyVersion {
    let p = &v.params;
    pb::PolicyVersion {
        ledger_id: ledger_id.to_string(),
        recorded_seq,
        effective_date: format_date(v.effective_date),
        params: Some(pb::PolicyParams {
            household_principal_cap_fen: p.household_principal_cap_fen,
            term_months_max: p.term_months_max,
            borrower_age_min: p.borrower_age_min,
            borrower_age_max: p.borrower_age_max,
            overdue_penalty_uplift: p.overdue_penalty_uplift.to_string(),
            misuse_penalty_uplift: p.misuse_penalty_uplift.to_string(),
            subsidy_ratio: p.subsidy_ratio.to_string(),
            subsidy_cap_rate: p.subsidy_cap_rate.map(|r| r.to_string()).unwrap_or_default(),
            grace_days: p.grace_days,
            rounding: p.rounding.as_str().to_string(),
            extension_months_max: p.extension_months_max,
            enterprise_modes_refused: !p.enterprise_modes_allowed,
            fund_leverage: p.fund_leverage,
            npl_limit_basis_points: p.npl_limit_basis_points,
            claim_overdue_days: p.claim_overdue_days,
            notice_days_min: p.notice_days_min,
            notice_days_max: p.notice_days_max,
            eligible_statuses: p
                .eligible_statuses
                .iter()
                .map(|s| household_status_to_pb(*s) as i32)
                .collect(),
        }),
    }
}

fn decimal(field: &str, value: &str) -> Result<rust_decimal::Decimal, Status> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(invalid(field, "is not a non-negative decimal such as \"0.5\""));
    }
    // Normalised ("0.50" is "0.5"), so that equal policies are recorded, fingerprinted and
    // answered alike.
    use crate::domain::rate::{DecimalError, exact_decimal};
    exact_decimal(value).map(|d| d.normalize()).map_err(|e| match e {
        DecimalError::NotDecimal => invalid(field, "is not a decimal"),
        DecimalError::OutOfRange => invalid(field, "is too large for a decimal"),
        DecimalError::TooPrecise => invalid(field, "has more digits than a decimal holds (28)"),
    })
}

/// `value`, or `default` when it is 0 (proto3's field left out).
fn or_default(value: u32, default: u32) -> u32 {
    if value == 0 { default } else { value }
}

pub fn policy_params_from_pb(p: pb::PolicyParams) -> Result<PolicyParams, Status> {
    let pb::PolicyParams {
        household_principal_cap_fen,
        term_months_max,
        borrower_age_min,
        borrower_age_max,
        overdue_penalty_uplift,
        misuse_penalty_uplift,
        subsidy_ratio,
        subsidy_cap_rate,
        grace_days,
        rounding,
        eligible_statuses,
        extension_months_max,
        enterprise_modes_refused,
        fund_leverage,
        npl_limit_basis_points,
        claim_overdue_days,
        notice_days_min,
        notice_days_max,
    } = p;
    let rounding = match rounding.as_str() {
        "half_up" => Rounding::HalfUp,
        "half_even" => Rounding::HalfEven,
        "down" => Rounding::Down,
        _ => {
            return Err(invalid(
                "params.rounding",
                "must be \"half_up\", \"half_even\" or \"down\"",
            ));
        }
    };
    // A set: in one order, once each, so that equal policies are equal.
    // Each element named by its index (HOUSEHOLD_STATUS_UNSPECIFIED is no status to lend to).
    let mut eligible_statuses = eligible_statuses
        .into_iter()
        .enumerate()
        .map(|(i, s)| household_status_from_pb(&format!("params.eligible_statuses[{i}]"), s))
        .collect::<Result<Vec<_>, _>>()?;
    eligible_statuses.sort();
    eligible_statuses.dedup();
    let params = PolicyParams {
        household_principal_cap_fen,
        term_months_max,
        borrower_age_min,
        borrower_age_max,
        overdue_penalty_uplift: decimal("params.overdue_penalty_uplift", &overdue_penalty_uplift)?,
        misuse_penalty_uplift: decimal("params.misuse_penalty_uplift", &misuse_penalty_uplift)?,
        subsidy_ratio: decimal("params.subsidy_ratio", &subsidy_ratio)?,
        subsidy_cap_rate: if subsidy_cap_rate.is_empty() {
            None
        } else {
            Some(parse::rate("params.subsidy_cap_rate", &subsidy_cap_rate)?)
        },
        grace_days,
        rounding,
        extension_months_max,
        eligible_statuses,
        enterprise_modes_allowed: !enterprise_modes_refused,
        // Left out (0): the programme's, as every version before these were parameters.
        fund_leverage: or_default(fund_leverage, FUND_LEVERAGE_DEFAULT),
        npl_limit_basis_points: or_default(npl_limit_basis_points, NPL_LIMIT_DEFAULT_BASIS_POINTS),
        claim_overdue_days: or_default(claim_overdue_days, CLAIM_OVERDUE_DAYS_DEFAULT),
        notice_days_min: or_default(notice_days_min, *NOTICE_DAYS_DEFAULT.start()),
        // Left out, the programme's 10, or the minimum given when it is longer.
        notice_days_max: or_default(
            notice_days_max,
            (*NOTICE_DAYS_DEFAULT.end()).max(notice_days_min),
        ),
    };
    params.validate().map_err(|e| super::error::status(e.into()))?;
    Ok(params)
}
