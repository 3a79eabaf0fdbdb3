//! Programme policy as data: parameters per ledger, versioned by effective date.
//!
//! The version in force on a date is the one with the latest effective date on or before it.
//! Eligibility, caps and the rate cap follow the contract date; subsidy ratios follow the accrual
//! date. A new ledger is seeded with [`default_versions`]: the national defaults of the 2014
//! guideline (国开办发〔2014〕78号) and the ratio step of 2024. That step is a change of the
//! subsidy ratio alone: in force, it keeps every other parameter of the version before it
//! ([`in_force`]), so that a finance office's own version from before 2024 is not undone on
//! 2024-01-01 by the national defaults the step was recorded with.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::date::BusinessDate;
use super::error::DomainError;
use super::household::{HouseholdStatus, StatusEntry, status_on};
use super::money::{Fen, Rounding};
use super::rate::AnnualRate;
use super::subsidy::RatioStep;

/// The most grace days a policy version may set: after 90 days overdue a loan is claimed
/// against the risk-compensation fund, so a longer grace on interest would make no sense.
pub const GRACE_DAYS_MAX: u32 = 90;

/// The most grace days a policy version or contract recorded by any build may hold: builds
/// before 2026-12-01 let a policy set up to 366, and what they recorded must read back.
pub const GRACE_DAYS_RECORDED_MAX: u32 = 366;

/// Grace days as recorded (a contract's terms in the journal or in a loan's row, a policy
/// version): at most [`GRACE_DAYS_RECORDED_MAX`]; more is refused as unreadable.
pub fn recorded_grace_days<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let days = <u32 as serde::Deserialize>::deserialize(d)?;
    if days > GRACE_DAYS_RECORDED_MAX {
        return Err(serde::de::Error::custom(format!(
            "{days} grace days: more than {GRACE_DAYS_RECORDED_MAX}"
        )));
    }
    Ok(days)
}

/// Every parameter of the programme. All fields are required in a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyParams {
    /// Cap on a household's active programme principal, all members together.
    pub household_principal_cap_fen: i64,
    pub term_months_max: u32,
    pub borrower_age_min: u32,
    pub borrower_age_max: u32,
    /// Penalty rate = contract rate × (1 + uplift). Read back (the journal, the policy rows)
    /// within the bounds [`PolicyParams::validate`] checks, as are the grace days: the loans
    /// contracted under a version take both into their terms.
    #[serde(deserialize_with = "super::rate::recorded_uplift")]
    pub overdue_penalty_uplift: Decimal,
    #[serde(deserialize_with = "super::rate::recorded_uplift")]
    pub misuse_penalty_uplift: Decimal,
    /// Share of subsidisable interest paid by the finance office, by accrual date.
    pub subsidy_ratio: Decimal,
    /// Highest subsidised rate; `None` means the LPR cap of the loan's tenor bucket.
    pub subsidy_cap_rate: Option<AnnualRate>,
    /// Days after a settlement before unpaid interest is overdue.
    #[serde(deserialize_with = "recorded_grace_days")]
    pub grace_days: u32,
    pub rounding: Rounding,
    pub eligible_statuses: Vec<HouseholdStatus>,
    /// Longest extension (展期) of a loan's maturity, in months; never more than 贷款通则
    /// (article 12) allows: a short-term loan's original term, half a medium-term loan's
    /// (`LoanState::extension_months_allowed`).
    pub extension_months_max: u32,
    /// Whether loans contracted under this version may be pooled in the entrusted (委托帮扶)
    /// and shareholding (股份合作) modes, their money handed to a partner
    /// ([`crate::domain::pool`]). A finance office refuses them from a date with a version of
    /// that date saying no (Guangxi stopped them in December 2017; the 2021 national notice
    /// forbids handing loans to firms). Stored only when false: the versions stored before it
    /// was a parameter read back as allowing them, as they did.
    #[serde(default = "allowed", skip_serializing_if = "is_allowed")]
    pub enterprise_modes_allowed: bool,
    /// The risk fund's leverage ([`crate::domain::risk_fund`]): the ledger's programme loans
    /// (outstanding, and contracted not paid out yet) at most this many times the fund's
    /// balance free of unpaid claims, judged on a contract's date. Stored only when it is not
    /// the default's 10, as are the next: the versions stored before they were parameters read
    /// back as the national defaults they applied.
    #[serde(default = "leverage", skip_serializing_if = "is_leverage")]
    pub fund_leverage: u32,
    /// The non-performing ratio above which the risk fund suspends new lending, in basis points
    /// (1/100 of a percent; the default 300 is 3%): principal more than 90 days overdue over all
    /// principal outstanding, judged on a contract's date and on the day it is recorded.
    #[serde(default = "npl_limit", skip_serializing_if = "is_npl_limit")]
    pub npl_limit_basis_points: u32,
    /// Days overdue after which a loan may be claimed against the risk fund, counts as
    /// non-performing (`OVERDUE_90`) and may be written off (90 by default). A loan takes the
    /// figure of its contract date's version into its terms, as it takes the grace days.
    #[serde(
        default = "claim_overdue_days_default",
        skip_serializing_if = "is_claim_overdue_days_default",
        deserialize_with = "recorded_claim_overdue_days"
    )]
    pub claim_overdue_days: u32,
    /// The shortest and the longest public notice (公示) of a subsidy claim's approved list, in
    /// days, both ends included (7 and 10 by default), judged with the version in force on the
    /// review's day.
    #[serde(default = "notice_min", skip_serializing_if = "is_notice_min")]
    pub notice_days_min: u32,
    #[serde(default = "notice_max", skip_serializing_if = "is_notice_max")]
    pub notice_days_max: u32,
}

/// The programme's public notice: 7 to 10 days.
pub const NOTICE_DAYS_DEFAULT: std::ops::RangeInclusive<u32> = 7..=10;

/// The longest notice any policy may set, a sanity bound on data entry.
pub const NOTICE_DAYS_BOUND: u32 = 60;

fn notice_min() -> u32 {
    *NOTICE_DAYS_DEFAULT.start()
}

fn is_notice_min(days: &u32) -> bool {
    *days == notice_min()
}

fn notice_max() -> u32 {
    *NOTICE_DAYS_DEFAULT.end()
}

fn is_notice_max(days: &u32) -> bool {
    *days == notice_max()
}

/// The programme's days overdue before a claim on the risk fund: 90.
pub const CLAIM_OVERDUE_DAYS_DEFAULT: u32 = 90;

/// The range of days overdue before a claim any policy may set: at least a month, at most a
/// year.
pub const CLAIM_OVERDUE_DAYS_BOUNDS: std::ops::RangeInclusive<u32> = 30..=365;

/// Reads back claim days (a policy's, a loan's terms, a loan row's) within
/// [`CLAIM_OVERDUE_DAYS_BOUNDS`], which every build has checked them to: one outside is
/// refused as unreadable rather than servicing a loan with, say, every overdue day claimable.
pub(crate) fn recorded_claim_overdue_days<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<u32, D::Error> {
    let days = <u32 as Deserialize>::deserialize(d)?;
    if !CLAIM_OVERDUE_DAYS_BOUNDS.contains(&days) {
        return Err(serde::de::Error::custom(format!(
            "{days} claim days: outside {}..={}",
            CLAIM_OVERDUE_DAYS_BOUNDS.start(),
            CLAIM_OVERDUE_DAYS_BOUNDS.end()
        )));
    }
    Ok(days)
}

pub(crate) fn claim_overdue_days_default() -> u32 {
    CLAIM_OVERDUE_DAYS_DEFAULT
}

pub(crate) fn is_claim_overdue_days_default(days: &u32) -> bool {
    *days == CLAIM_OVERDUE_DAYS_DEFAULT
}

/// The programme's leverage of a risk fund: loans at most 10 times its balance.
pub const FUND_LEVERAGE_DEFAULT: u32 = 10;

/// Highest leverage any policy may set, a sanity bound on data entry.
pub const FUND_LEVERAGE_BOUND: u32 = 100;

/// The programme's non-performing limit: 3%.
pub const NPL_LIMIT_DEFAULT_BASIS_POINTS: u32 = 300;

fn leverage() -> u32 {
    FUND_LEVERAGE_DEFAULT
}

fn is_leverage(leverage: &u32) -> bool {
    *leverage == FUND_LEVERAGE_DEFAULT
}

fn npl_limit() -> u32 {
    NPL_LIMIT_DEFAULT_BASIS_POINTS
}

fn is_npl_limit(limit: &u32) -> bool {
    *limit == NPL_LIMIT_DEFAULT_BASIS_POINTS
}

fn allowed() -> bool {
    true
}

fn is_allowed(allowed: &bool) -> bool {
    *allowed
}

/// Longest term any policy may allow, a sanity bound on data entry: the programme's loans are
/// short-term production credit (36 months by default); 120 leaves room for a policy change.
pub const TERM_MONTHS_MAX_BOUND: u32 = 120;

/// Highest household cap any policy may set, a sanity bound on data entry: 100,000,000 yuan,
/// two thousand times the programme's 50,000. It also keeps a loan's arithmetic in range: a
/// century of penalty and compound interest on a principal under it, at the highest rate and
/// uplifts a policy allows, stays far inside 64-bit fen (a cap of 9e18 fen let a bank contract
/// a loan whose settlements could not be computed; the service answered them INVALID_ARGUMENT
/// naming an `amount_fen` the settlement run does not have).
pub const HOUSEHOLD_CAP_FEN_BOUND: i64 = 10_000_000_000;

impl Default for PolicyParams {
    fn default() -> Self {
        PolicyParams {
            household_principal_cap_fen: 5_000_000,
            term_months_max: 36,
            borrower_age_min: 18,
            borrower_age_max: 65,
            overdue_penalty_uplift: Decimal::new(5, 1),
            misuse_penalty_uplift: Decimal::ONE,
            subsidy_ratio: Decimal::ONE,
            subsidy_cap_rate: None,
            grace_days: 0,
            rounding: Rounding::HalfUp,
            eligible_statuses: vec![
                HouseholdStatus::RegisteredPoor,
                HouseholdStatus::Exited,
                HouseholdStatus::Monitored,
                HouseholdStatus::Edge,
            ],
            extension_months_max: 12,
            enterprise_modes_allowed: true,
            fund_leverage: FUND_LEVERAGE_DEFAULT,
            npl_limit_basis_points: NPL_LIMIT_DEFAULT_BASIS_POINTS,
            claim_overdue_days: CLAIM_OVERDUE_DAYS_DEFAULT,
            notice_days_min: notice_min(),
            notice_days_max: notice_max(),
        }
    }
}

/// The lowest `borrower_age_min` a policy may set: the age from which the Civil Code gives one
/// who lives on their own labour full capacity to contract (art. 18).
pub const BORROWER_AGE_MIN_BOUND: u32 = 16;

impl PolicyParams {
    /// Whether the programme lends to a household of `status` on a contract date (`None`:
    /// unregistered then): never to one not eligible, removed or moved out, even under a
    /// version that names it, as an earlier build let a version do (since 2026-12-07;
    /// [`PolicyParams::validate`] refuses such a version since 2026-12-06).
    pub fn lends_to(&self, status: Option<HouseholdStatus>) -> bool {
        status.is_some_and(|s| s.may_be_eligible() && self.eligible_statuses.contains(&s))
    }

    /// Whether the last of `statuses` (a household's series in recording order) makes a
    /// contract dated `contract_date` one these parameters would have refused: eligible on that
    /// date by the statuses before it, not by them with it (a status dated back over a signed
    /// contract). A contract that was not eligible before it is not made so by it.
    pub fn made_ineligible(&self, statuses: &[StatusEntry], contract_date: BusinessDate) -> bool {
        let Some((_, before)) = statuses.split_last() else { return false };
        let eligible = |entries: &[StatusEntry]| self.lends_to(status_on(entries, contract_date));
        eligible(before) && !eligible(statuses)
    }

    /// Checks the parameters for consistency; errors name the `params.` field.
    pub fn validate(&self) -> Result<(), DomainError> {
        let bad =
            |field: &str, msg: &str| Err(DomainError::invalid(format!("params.{field}"), msg));
        if self.household_principal_cap_fen <= 0
            || self.household_principal_cap_fen > HOUSEHOLD_CAP_FEN_BOUND
        {
            return bad(
                "household_principal_cap_fen",
                &format!("must be positive and at most {HOUSEHOLD_CAP_FEN_BOUND} fen"),
            );
        }
        if self.term_months_max == 0 || self.term_months_max > TERM_MONTHS_MAX_BOUND {
            return bad("term_months_max", "must be between 1 and 120");
        }
        // proto3 cannot tell a minimum left out from 0: one under the age at which a borrower
        // can contract on their own (the Civil Code: 18, or 16 for one living on their own
        // labour) is refused rather than read as "any age".
        if self.borrower_age_min < BORROWER_AGE_MIN_BOUND {
            let min = BORROWER_AGE_MIN_BOUND;
            return bad("borrower_age_min", &format!("must be at least {min}"));
        }
        if self.borrower_age_min > self.borrower_age_max || self.borrower_age_max > 120 {
            return bad("borrower_age_max", "must be at least borrower_age_min and at most 120");
        }
        for (field, uplift) in [
            ("overdue_penalty_uplift", self.overdue_penalty_uplift),
            ("misuse_penalty_uplift", self.misuse_penalty_uplift),
        ] {
            if uplift.is_sign_negative() || uplift > super::rate::UPLIFT_MAX {
                return bad(field, "must be between 0 and 10");
            }
        }
        if self.subsidy_ratio.is_sign_negative() || self.subsidy_ratio > Decimal::ONE {
            return bad("subsidy_ratio", "must be between 0 and 1");
        }
        // After 90 days overdue a loan is claimed against the risk fund: a longer grace on
        // interest would keep a loan from being overdue past that point.
        if self.grace_days > GRACE_DAYS_MAX {
            return bad("grace_days", &format!("must be at most {GRACE_DAYS_MAX}"));
        }
        if self.extension_months_max > TERM_MONTHS_MAX_BOUND {
            return bad("extension_months_max", "must be at most 120");
        }
        if self.eligible_statuses.is_empty() {
            return bad("eligible_statuses", "must name at least one status");
        }
        // DESIGN.md: not eligible (不享受政策), removed (清退) and moved out of the county are the
        // statuses of households the programme does not lend to; a policy may narrow the
        // eligible ones, not lend to those.
        if let Some(never) = self.eligible_statuses.iter().find(|s| !s.may_be_eligible()) {
            return bad(
                "eligible_statuses",
                &format!("{} is a status the programme does not lend to", never.as_str()),
            );
        }
        if self.fund_leverage == 0 || self.fund_leverage > FUND_LEVERAGE_BOUND {
            return bad("fund_leverage", &format!("must be between 1 and {FUND_LEVERAGE_BOUND}"));
        }
        // 0 would suspend lending at the first fen more than 90 days overdue: a limit, not a
        // ban, is what the fund's ratio is.
        if self.npl_limit_basis_points == 0 || self.npl_limit_basis_points > 10_000 {
            return bad("npl_limit_basis_points", "must be between 1 and 10000 (100%)");
        }
        if !CLAIM_OVERDUE_DAYS_BOUNDS.contains(&self.claim_overdue_days) {
            let (min, max) = (CLAIM_OVERDUE_DAYS_BOUNDS.start(), CLAIM_OVERDUE_DAYS_BOUNDS.end());
            return bad("claim_overdue_days", &format!("must be between {min} and {max}"));
        }
        // A grace longer than the claim days would keep a loan's unpaid interest from being
        // overdue until after the loan could be claimed on.
        if self.grace_days > self.claim_overdue_days {
            return bad("grace_days", "must be at most claim_overdue_days");
        }
        // Named itself when too long (since 2026-12-07 the refusal named notice_days_max, which
        // a caller leaving it out takes from the minimum).
        if self.notice_days_min == 0 || self.notice_days_min > NOTICE_DAYS_BOUND {
            return bad("notice_days_min", &format!("must be between 1 and {NOTICE_DAYS_BOUND}"));
        }
        if self.notice_days_max < self.notice_days_min || self.notice_days_max > NOTICE_DAYS_BOUND {
            return bad(
                "notice_days_max",
                &format!("must be at least notice_days_min and at most {NOTICE_DAYS_BOUND}"),
            );
        }
        Ok(())
    }

    pub fn household_cap(&self) -> Fen {
        Fen(self.household_principal_cap_fen)
    }

    /// The public notice's length, in days, both ends included.
    pub fn notice_days(&self) -> std::ops::RangeInclusive<u32> {
        self.notice_days_min..=self.notice_days_max
    }

    /// The limits a risk fund puts on lending under this version.
    pub fn lending_limits(&self) -> LendingLimits {
        LendingLimits {
            leverage: self.fund_leverage,
            npl_limit_basis_points: self.npl_limit_basis_points,
        }
    }
}

/// A risk fund's limits on new lending ([`crate::domain::risk_fund::check_lending`]), as the
/// policy in force on the day judged sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LendingLimits {
    /// Loans at most this many times the fund's free balance.
    pub leverage: u32,
    /// Lending suspended above this non-performing ratio, in basis points.
    pub npl_limit_basis_points: u32,
}

impl Default for LendingLimits {
    /// The programme's: 10 times the balance, 3%.
    fn default() -> Self {
        LendingLimits {
            leverage: FUND_LEVERAGE_DEFAULT,
            npl_limit_basis_points: NPL_LIMIT_DEFAULT_BASIS_POINTS,
        }
    }
}

impl LendingLimits {
    /// The limits of the version of `versions` in force on `date` ([`in_force`]; the
    /// programme's before the first).
    pub fn on(versions: &[PolicyVersion], date: BusinessDate) -> LendingLimits {
        in_force(versions, date).map(|v| v.params.lending_limits()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub effective_date: BusinessDate,
    pub params: PolicyParams,
}

/// The versions a new ledger starts with: the defaults from the 2014 guideline, and the subsidy
/// ratio of 70% from 2024-01-01.
pub fn default_versions() -> Vec<PolicyVersion> {
    let from_2014 = BusinessDate::from_ymd_opt(2014, 12, 10).expect("valid date");
    let from_2024 = BusinessDate::from_ymd_opt(2024, 1, 1).expect("valid date");
    vec![
        PolicyVersion { effective_date: from_2014, params: PolicyParams::default() },
        PolicyVersion {
            effective_date: from_2024,
            params: PolicyParams { subsidy_ratio: Decimal::new(7, 1), ..PolicyParams::default() },
        },
    ]
}

/// The seeded versions after the first ([`default_versions`]): changes of the subsidy ratio.
static RATIO_STEPS: std::sync::LazyLock<Vec<PolicyVersion>> =
    std::sync::LazyLock::new(|| default_versions().split_off(1));

/// Whether `version` is equal to a seeded step of the subsidy ratio (one of [`default_versions`]
/// after the first). Stored first on its date, it is that step ([`in_force`]).
pub fn is_seeded_step(version: &PolicyVersion) -> bool {
    RATIO_STEPS.contains(version)
}

/// The version in force from each date of `versions`, in date order: the date's version, but a
/// seeded step of the subsidy ratio (the first version of its date equal to one,
/// [`is_seeded_step`]) changes only the ratio of the version in force before it. Versions of one
/// date count in the order they were set (`versions` in that order within a date; the sort is
/// stable): every ledger is seeded when it is created, and a ledger's own version on a seeded
/// step's date, the one version a date can have after another (`SetPolicy`), replaces the step
/// from that day, whatever its figures (also the step's own: then taken whole).
pub fn in_force_by_date(versions: &[PolicyVersion]) -> Vec<PolicyVersion> {
    let mut sorted: Vec<&PolicyVersion> = versions.iter().collect();
    sorted.sort_by_key(|v| v.effective_date);
    let mut by_date: Vec<PolicyVersion> = Vec::new();
    for v in sorted {
        let same_date = by_date.last().is_some_and(|last| last.effective_date == v.effective_date);
        let version = match by_date.last() {
            Some(before) if !same_date && is_seeded_step(v) => PolicyVersion {
                effective_date: v.effective_date,
                params: PolicyParams {
                    subsidy_ratio: v.params.subsidy_ratio,
                    ..before.params.clone()
                },
            },
            _ => v.clone(),
        };
        if same_date {
            by_date.pop();
        }
        by_date.push(version);
    }
    by_date
}

/// [`in_force_by_date`] of versions each recorded at a seq (in recording order within a date),
/// each date's version with the seq from which it stood so: its date's last version's, or, for a
/// seeded step that keeps the parameters of the version before it, the later of the two.
pub fn in_force_by_date_recorded(recorded: &[(PolicyVersion, u64)]) -> Vec<(PolicyVersion, u64)> {
    let versions: Vec<PolicyVersion> = recorded.iter().map(|(v, _)| v.clone()).collect();
    let mut before: Option<u64> = None;
    in_force_by_date(&versions)
        .into_iter()
        .map(|version| {
            let of_date =
                || recorded.iter().filter(|(v, _)| v.effective_date == version.effective_date);
            let own = of_date().map(|&(_, seq)| seq).max().unwrap_or_default();
            // A step carries the version before it when it is its date's only version and one
            // came before ([`in_force_by_date`]): told so, not by comparing figures (a county's
            // version with the national figures, carried, equals the step; since 2026-12-07
            // late night, when that stood from the step's seq).
            let carried = of_date().count() == 1 && of_date().all(|(v, _)| is_seeded_step(v));
            let seq = match before {
                Some(before) if carried => own.max(before),
                _ => own,
            };
            before = Some(seq);
            (version, seq)
        })
        .collect()
}

/// The version in force on `date`: of [`in_force_by_date`], the latest dated on or before it.
pub fn in_force(versions: &[PolicyVersion], date: BusinessDate) -> Option<PolicyVersion> {
    in_force_by_date(versions).into_iter().take_while(|v| v.effective_date <= date).last()
}

/// Since when `holds` has held of the version in force on `date` without a break: the date of
/// the earliest of [`in_force_by_date`]'s versions through `date` from which each holds it, or
/// `None` when the version in force on `date` does not (or there is none). A seeded step
/// carries the version before it on, so the rule it carries is dated from where it was set.
pub fn in_force_since(
    versions: &[PolicyVersion],
    date: BusinessDate,
    holds: impl Fn(&PolicyParams) -> bool,
) -> Option<BusinessDate> {
    let mut since = None;
    for v in in_force_by_date(versions).into_iter().take_while(|v| v.effective_date <= date) {
        since = if holds(&v.params) { since.or(Some(v.effective_date)) } else { None };
    }
    since
}

/// The subsidy ratio's steps over `versions`: a step where the ratio in force changes, the first
/// version's ratio the first step. Versions that change other figures (a ledger may have any
/// number) are no steps of the ratio table, which holds [`super::subsidy::RATIO_STEPS_MAX`] at
/// most: `SetPolicy` refuses a version that would make more.
pub fn ratio_steps(versions: &[PolicyVersion]) -> Vec<RatioStep> {
    let mut steps: Vec<RatioStep> = Vec::new();
    for version in in_force_by_date(versions) {
        let ratio = version.params.subsidy_ratio;
        if steps.last().is_none_or(|last| last.ratio != ratio) {
            steps.push(RatioStep { effective_from: version.effective_date, ratio });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grace days as recorded read back up to 366 (what builds before 2026-12-01 let a policy
    /// set), beyond which the record is unreadable; a version sets at most 90.
    #[test]
    fn recorded_grace_days_read_back_within_their_bound() {
        let with = |days: u32| {
            let mut json = serde_json::to_value(PolicyParams::default()).unwrap();
            json["grace_days"] = days.into();
            serde_json::from_value::<PolicyParams>(json)
        };
        assert_eq!(with(GRACE_DAYS_RECORDED_MAX).unwrap().grace_days, 366);
        let beyond = with(GRACE_DAYS_RECORDED_MAX + 1).unwrap_err().to_string();
        assert!(beyond.contains("367 grace days: more than 366"), "{beyond}");
        let set = PolicyParams { grace_days: GRACE_DAYS_MAX + 1, ..PolicyParams::default() };
        assert!(set.validate().is_err());
        let set = PolicyParams { grace_days: GRACE_DAYS_MAX, ..PolicyParams::default() };
        assert!(set.validate().is_ok());
    }

    fn status(status: HouseholdStatus, date: &str) -> StatusEntry {
        let effective_date = BusinessDate::parse_from_str(date, "%Y-%m-%d").unwrap();
        StatusEntry { status, effective_date, reason: String::new() }
    }

    /// A version stored by an earlier build naming a status the programme never lends to lends
    /// to it no more; to the others it names, as before.
    #[test]
    fn a_stored_version_naming_a_status_never_lent_to_does_not_lend_to_it() {
        let stored = PolicyParams {
            eligible_statuses: vec![HouseholdStatus::RegisteredPoor, HouseholdStatus::Removed],
            ..PolicyParams::default()
        };
        assert!(stored.validate().is_err(), "refused as set since 2026-12-06");
        assert!(!stored.lends_to(Some(HouseholdStatus::Removed)));
        assert!(stored.lends_to(Some(HouseholdStatus::RegisteredPoor)));
        assert!(!stored.lends_to(Some(HouseholdStatus::Exited)), "not named");
        assert!(!stored.lends_to(None));
    }

    /// A status dated back over a contract's date makes it ineligible; one dated after it, or
    /// over a contract that was not eligible already, does not; nor does a first status.
    #[test]
    fn a_status_dated_back_over_a_contract_makes_it_ineligible() {
        let params = PolicyParams::default();
        let day = |s: &str| BusinessDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let poor = status(HouseholdStatus::RegisteredPoor, "2019-01-01");
        let removed_back = status(HouseholdStatus::Removed, "2020-01-01");
        let series = [poor.clone(), removed_back.clone()];
        assert!(params.made_ineligible(&series, day("2020-03-01")));
        assert!(!params.made_ineligible(&series, day("2019-12-31")), "contracted before it");
        assert!(
            !params.made_ineligible(std::slice::from_ref(&poor), day("2020-03-01")),
            "its first status"
        );
        assert!(!params.made_ineligible(&[], day("2020-03-01")));
        let moved = status(HouseholdStatus::MovedOut, "2019-06-01");
        let after_moving = [moved, removed_back.clone()];
        assert!(!params.made_ineligible(&after_moving, day("2020-03-01")), "ineligible before");
        // A later status of the same date stands over an earlier one: recording order.
        let restored = status(HouseholdStatus::Exited, "2020-01-01");
        let series = [poor.clone(), removed_back, restored.clone()];
        assert!(!params.made_ineligible(&series, day("2020-03-01")));
        // Which statuses are lent to is the policy's.
        let narrower = PolicyParams {
            eligible_statuses: vec![HouseholdStatus::RegisteredPoor],
            ..PolicyParams::default()
        };
        let exited_back = [poor, restored];
        assert!(!params.made_ineligible(&exited_back, day("2020-03-01")));
        assert!(narrower.made_ineligible(&exited_back, day("2020-03-01")), "exited not lent to");
    }

    proptest::proptest! {
        /// Only the last status can make a contract ineligible, and only by being what the
        /// household is on the contract date: a last status dated after the contract, or one
        /// the policy lends to, never does; one that does is the status on that date.
        ///
        /// As an if and only if, worked out here from the series' indices alone: the contract
        /// is made ineligible exactly when the last entry stands on the date (dated on or
        /// before it, and no earlier-recorded entry dated after it and on or before the date:
        /// a tie goes to the one recorded last), its status is not lent to, and the status
        /// the entries before it give that date is (the default lends to the first four of
        /// `HouseholdStatus::ALL`, the narrow policy to the first alone).
        #[test]
        fn only_the_last_status_in_force_on_the_date_makes_a_contract_ineligible(
            series in proptest::collection::vec((0usize..7, 0u64..60), 0..6),
            on in 0u64..60,
            narrow in proptest::bool::ANY,
        ) {
            let base = BusinessDate::parse_from_str("2020-01-01", "%Y-%m-%d").unwrap();
            let statuses: Vec<StatusEntry> = series
                .iter()
                .map(|(s, d)| StatusEntry {
                    status: HouseholdStatus::ALL[*s],
                    effective_date: base + chrono::Days::new(*d),
                    reason: String::new(),
                })
                .collect();
            let mut params = PolicyParams::default();
            if narrow {
                params.eligible_statuses = vec![HouseholdStatus::RegisteredPoor];
            }
            let date = base + chrono::Days::new(on);
            let made = params.made_ineligible(&statuses, date);
            let lent_to = |i: usize| if narrow { i == 0 } else { i < 4 };
            // The (status, day) in force on day `on` among `entries`: the latest day on or
            // before it, the one recorded last among those of that day.
            let in_force = |entries: &[(usize, u64)]| {
                let mut found: Option<(usize, u64)> = None;
                for &(s, d) in entries {
                    if d <= on && found.is_none_or(|(_, f)| d >= f) {
                        found = Some((s, d));
                    }
                }
                found
            };
            let expected = match series.split_last() {
                None => false,
                Some((&(last, last_day), before)) => {
                    let stands = last_day <= on
                        && before.iter().all(|&(_, d)| d <= last_day || d > on);
                    let before_lent_to = in_force(before).is_some_and(|(s, _)| lent_to(s));
                    stands && !lent_to(last) && before_lent_to
                }
            };
            proptest::prop_assert_eq!(made, expected, "{:?} on {}", series, on);
            match statuses.last() {
                None => proptest::prop_assert!(!made),
                Some(last) => {
                    if last.effective_date > date || params.lends_to(Some(last.status)) {
                        proptest::prop_assert!(!made);
                    }
                    if made {
                        proptest::prop_assert_eq!(status_on(&statuses, date), Some(last.status));
                        let before = &statuses[..statuses.len() - 1];
                        proptest::prop_assert!(params.lends_to(status_on(before, date)));
                    }
                }
            }
        }
    }

    /// Each date's version in force names the seq from which it stood so: a seeded step that
    /// carries a county's earlier version on stands from the later of the two; a county's own
    /// version on the step's date, from its own seq.
    #[test]
    fn a_version_in_force_stands_from_the_later_seq_it_is_made_of() {
        let day = |s: &str| BusinessDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let mut recorded: Vec<(PolicyVersion, u64)> =
            default_versions().into_iter().map(|v| (v, 1)).collect();
        let seqs = |r: &[(PolicyVersion, u64)]| -> Vec<(BusinessDate, u64)> {
            in_force_by_date_recorded(r).iter().map(|(v, seq)| (v.effective_date, *seq)).collect()
        };
        let (first, step) = (day("2014-12-10"), day("2024-01-01"));
        assert_eq!(seqs(&recorded), [(first, 1), (step, 1)]);
        let county = PolicyParams { grace_days: 5, ..PolicyParams::default() };
        let from_2020 = PolicyVersion { effective_date: day("2020-01-01"), params: county };
        recorded.push((from_2020, 5));
        let by_date = in_force_by_date_recorded(&recorded);
        assert_eq!(by_date[2].0.params.grace_days, 5, "the step keeps the county's grace days");
        assert_eq!(seqs(&recorded), [(first, 1), (day("2020-01-01"), 5), (step, 5)]);
        let own = PolicyVersion { effective_date: step, params: PolicyParams::default() };
        recorded.push((own, 9));
        assert_eq!(seqs(&recorded), [(first, 1), (day("2020-01-01"), 5), (step, 9)]);

        // A county's version with the national figures, carried by the step, equals the step:
        // still the later seq of the two.
        let mut recorded: Vec<(PolicyVersion, u64)> =
            default_versions().into_iter().map(|v| (v, 1)).collect();
        let county = PolicyParams { grace_days: 5, ..PolicyParams::default() };
        recorded.push((PolicyVersion { effective_date: day("2018-01-01"), params: county }, 10));
        let national = PolicyParams::default();
        recorded.push((PolicyVersion { effective_date: day("2020-01-01"), params: national }, 20));
        let by_date = in_force_by_date_recorded(&recorded);
        assert!(is_seeded_step(&by_date[3].0), "carried, it equals the step");
        assert_eq!(
            seqs(&recorded),
            [(first, 1), (day("2018-01-01"), 10), (day("2020-01-01"), 20), (step, 20)]
        );
    }

    #[test]
    fn a_rule_is_dated_from_the_version_that_set_it_not_a_step_carrying_it() {
        let day = |s: &str| BusinessDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let mut versions = default_versions();
        let refusing = PolicyParams { enterprise_modes_allowed: false, ..PolicyParams::default() };
        versions.push(PolicyVersion { effective_date: day("2021-01-01"), params: refusing });
        let refuses = |p: &PolicyParams| !p.enterprise_modes_allowed;
        assert_eq!(in_force_since(&versions, day("2020-12-31"), refuses), None);
        assert_eq!(in_force_since(&versions, day("2021-06-01"), refuses), Some(day("2021-01-01")));
        // The 2024 step carries the refusal on: still dated 2021.
        assert_eq!(
            in_force(&versions, day("2024-06-01")).unwrap().effective_date,
            day("2024-01-01")
        );
        assert_eq!(in_force_since(&versions, day("2024-06-01"), refuses), Some(day("2021-01-01")));
        // Allowed again from 2025, refused again from 2026: dated 2026.
        let allowing = PolicyParams::default();
        versions.push(PolicyVersion { effective_date: day("2025-01-01"), params: allowing });
        let refusing = PolicyParams { enterprise_modes_allowed: false, ..PolicyParams::default() };
        versions.push(PolicyVersion { effective_date: day("2026-01-01"), params: refusing });
        assert_eq!(in_force_since(&versions, day("2025-06-01"), refuses), None);
        assert_eq!(in_force_since(&versions, day("2026-06-01"), refuses), Some(day("2026-01-01")));
    }

    #[test]
    fn the_programmes_lending_limits_are_the_default_policys() {
        assert_eq!(LendingLimits::default(), PolicyParams::default().lending_limits());
    }
    use crate::domain::date::parse_date;

    #[test]
    fn defaults_are_valid_and_dated() {
        let versions = default_versions();
        for v in &versions {
            v.params.validate().unwrap();
        }
        let on = |d| in_force(&versions, parse_date(d).unwrap()).map(|v| v.params.subsidy_ratio);
        assert_eq!(on("2014-12-09"), None);
        assert_eq!(on("2023-12-31"), Some(Decimal::ONE));
        assert_eq!(on("2024-01-01"), Some(Decimal::new(7, 1)));
    }

    /// The ratio step of 2024 keeps a finance office's own parameters from before it; a version
    /// after it is taken whole.
    #[test]
    fn the_ratio_step_changes_the_ratio_alone() {
        let day = |d| parse_date(d).unwrap();
        let local = PolicyParams {
            household_principal_cap_fen: 3_000_000,
            grace_days: 5,
            subsidy_ratio: Decimal::new(9, 1),
            ..PolicyParams::default()
        };
        let mut versions = default_versions();
        versions.push(PolicyVersion { effective_date: day("2022-01-01"), params: local.clone() });
        let in_2024 = in_force(&versions, day("2024-06-01")).unwrap();
        assert_eq!(in_2024.effective_date, day("2024-01-01"));
        assert_eq!(in_2024.params, PolicyParams { subsidy_ratio: Decimal::new(7, 1), ..local });
        assert_eq!(in_force(&versions, day("2023-12-31")).unwrap().params.grace_days, 5);
        let later = PolicyParams { grace_days: 2, ..PolicyParams::default() };
        versions.push(PolicyVersion { effective_date: day("2024-03-01"), params: later.clone() });
        assert_eq!(in_force(&versions, day("2024-06-01")).unwrap().params, later);
        // Without a version of the office's own, the step is the seeded version as stored.
        assert_eq!(
            in_force(&default_versions(), day("2024-06-01")).as_ref(),
            default_versions().get(1)
        );
    }

    /// A ledger's own version on the step's date, after the step, replaces it from that day, and
    /// the ratio table follows; with the step's own figures too.
    #[test]
    fn an_own_version_on_the_steps_date_replaces_it() {
        let day = |d| parse_date(d).unwrap();
        let full = PolicyParams { grace_days: 3, ..PolicyParams::default() };
        let own = PolicyVersion { effective_date: day("2024-01-01"), params: full.clone() };
        let mut versions = default_versions();
        versions.push(own.clone());
        assert!(is_seeded_step(&versions[1]) && !is_seeded_step(&own));
        assert_eq!(in_force(&versions, day("2024-01-01")), Some(own.clone()));
        assert_eq!(in_force(&versions, day("2030-01-01")), Some(own.clone()));
        assert_eq!(ratio_steps(&versions).len(), 1, "100% throughout");
        // An own version with the step's very figures, after an own version with other ones:
        // taken whole (it is not the first of its date), not as a step keeping them.
        let mut versions = default_versions();
        versions.push(PolicyVersion { effective_date: day("2020-01-01"), params: full.clone() });
        let national = default_versions()[1].clone();
        versions.push(national.clone());
        assert!(is_seeded_step(&national));
        assert_eq!(in_force(&versions, day("2023-12-31")).unwrap().params.grace_days, 3);
        assert_eq!(in_force(&versions, day("2024-01-01")), Some(national.clone()));
        let listed = in_force_by_date(&versions);
        let dates: Vec<_> = listed.iter().map(|v| v.effective_date).collect();
        assert_eq!(dates, [day("2014-12-10"), day("2020-01-01"), day("2024-01-01")]);
        assert_eq!(listed[2], national);
    }

    /// Claim days are read back within the bounds every build checked them to, and as the
    /// programme's 90 when left out.
    #[test]
    fn claim_days_are_read_back_within_their_bounds() {
        let read = |json: &str| serde_json::from_str::<PolicyParams>(json);
        let mut json = serde_json::to_value(PolicyParams::default()).unwrap();
        assert_eq!(read(&json.to_string()).unwrap().claim_overdue_days, 90);
        json["claim_overdue_days"] = 60.into();
        assert_eq!(read(&json.to_string()).unwrap().claim_overdue_days, 60);
        json["claim_overdue_days"] = 0.into();
        let e = read(&json.to_string()).unwrap_err().to_string();
        assert!(e.contains("0 claim days: outside 30..=365"), "{e}");
    }

    #[test]
    fn params_round_trip_as_json_with_decimal_strings() {
        let json = serde_json::to_string(&PolicyParams::default()).unwrap();
        assert!(json.contains("\"overdue_penalty_uplift\":\"0.5\""), "{json}");
        let back: PolicyParams = serde_json::from_str(&json).unwrap();
        assert_eq!(back, PolicyParams::default());
    }
}
