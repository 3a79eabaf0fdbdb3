//! Subsidy queries: a loan's subsidy register (贴息台账), recomputed from its journal and its
//! ledger's policy versions. [`crate::domain::subsidy_register`] has the model; this reads its
//! inputs:
//! - the loan's events, from its contract on, as the journal holds them;
//! - the policy: the household cap and the cap rate of the version in force on the contract
//!   date (a version without a cap rate caps at the LPR of the loan's tenor bucket, which
//!   origination held the contract rate within: the contract's rate is then the cap), and the
//!   subsidy ratio of every version, each from its effective date on (by accrual date).
//!
//! Nothing is recorded. The answer is what the journal and the policy versions hold when asked:
//! an event recorded later (value-dated on or before `as_of`: a back-dated payment), or a
//! policy version set later with an earlier effective date, changes it. Each answer says what
//! it was read through ([`LoanSubsidy::through_seq`]: the ledger's journal head when asked,
//! read before anything else); asked through that seq again, the events and the policy
//! versions recorded after it are left out and the answer is the same, whatever was recorded
//! since. A snapshot read holds a prefix of the ledger's journal (the writer commits in seq
//! order), so a history read after the head holds every event of the loan up to it.

use std::ops::RangeInclusive;

use rust_decimal::Decimal;

use super::error::AppError;
use super::error::unpanicked;
use super::servicing::{loan_events, read_through, replay};
use crate::collections::HashMap;
use crate::domain::date::BusinessDate;
use crate::domain::error::{DomainError, Reason};
use crate::domain::household::{StatusEntry, never_lent_to_on};
use crate::domain::loan::{LoanEvent, LoanState, LoanTerms};
use crate::domain::money::Fen;
use crate::domain::policy::{PolicyVersion, in_force, ratio_steps};
use crate::domain::rate::AnnualRate;
use crate::domain::servicing::ServicingError;
use crate::domain::subsidy::{RatioTable, SubsidyPolicy};
use crate::domain::subsidy_claim::{ClaimLine, ClaimedLine, Difference, check_line, check_terms};
use crate::domain::subsidy_register::{RegisterLine, register};
use crate::store::Db;
use crate::store::read::{LoanFilter, LoanHistory};
use crate::store::rows::BankRow;

/// A loan's register and what it was computed under.
#[derive(Debug)]
pub struct LoanSubsidy {
    pub terms: LoanTerms,
    /// The household's township and village, as registered.
    pub township: String,
    pub village: String,
    pub policy: SubsidyPolicy,
    pub misused: bool,
    pub lines: Vec<RegisterLine>,
    /// The seq of the loan's last event in the history the register was computed from.
    pub last_seq: u64,
    /// What the register was read through: the events and policy versions recorded up to it.
    pub through_seq: u64,
}

/// Loans read per page of a ledger's register.
pub const REGISTER_PAGE_LOANS: u32 = 500;

/// The registers of a ledger's loans (of one bank's, if given), in loan id order, each with
/// only its lines due within a range (loans with none left out), read a page of loans at a
/// time (their histories and their households' places in one statement each): memory stays
/// bounded whatever the size of the ledger.
pub struct LedgerRegisters {
    versions: Vec<PolicyVersion>,
    filter: LoanFilter,
    due: RangeInclusive<BusinessDate>,
    as_of: BusinessDate,
    through_seq: u64,
    done: bool,
    /// A loan's register that could not be computed: the loans before it on its page are
    /// given first, then this ends the list.
    failed: Option<AppError>,
}

impl LedgerRegisters {
    pub async fn open(
        db: &Db,
        ledger_id: &str,
        bank_id: Option<&str>,
        due: RangeInclusive<BusinessDate>,
        as_of: BusinessDate,
        through_seq: Option<u64>,
    ) -> Result<Self, AppError> {
        let filter = LoanFilter {
            ledger_id: Some(ledger_id.to_string()),
            bank_id: bank_id.map(str::to_string),
            ..LoanFilter::default()
        };
        let through_seq = read_through(db, ledger_id, through_seq).await?;
        let versions = db.list_policies(ledger_id, Some(through_seq)).await?;
        Ok(LedgerRegisters { versions, filter, due, as_of, through_seq, done: false, failed: None })
    }

    /// What every register is read through ([`LoanSubsidy::through_seq`]).
    pub fn through_seq(&self) -> u64 {
        self.through_seq
    }

    /// The registers of the next page of loans (perhaps none of them with a line in range),
    /// or `None` once every loan has been read. A loan whose register cannot be computed ends
    /// its page there, and the next call answers its error (since 2026-12-07; before, the
    /// loans before it on its page were not given).
    pub async fn next_page(&mut self, db: &Db) -> Result<Option<Vec<LoanSubsidy>>, AppError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.done {
            return Ok(None);
        }
        let page = db.list_loans(&self.filter, REGISTER_PAGE_LOANS).await?;
        self.done = page.len() < REGISTER_PAGE_LOANS as usize;
        self.filter.after_loan_id = page.last().map(|l| l.terms.loan_id.clone());
        // A loan contracted after the date has no line by then.
        let as_of = self.as_of;
        let loans: Vec<LoanState> =
            page.into_iter().filter(|l| l.terms.contract_date <= as_of).collect();
        let households: Vec<&str> = loans.iter().map(|l| l.terms.household_id.as_str()).collect();
        let places = db.household_places(&households).await?;
        let ids: Vec<&str> = loans.iter().map(|l| l.terms.loan_id.as_str()).collect();
        let histories: HashMap<String, LoanHistory> =
            db.loan_histories(&ids).await?.into_iter().collect();
        // The page's replays and registers (25–50 ms of CPU for 500 loans) on a blocking thread,
        // as the risk fund's and the pool report's are, not on one of the runtime's (since
        // 2026-12-07).
        let (versions, due, through_seq) =
            (self.versions.clone(), self.due.clone(), self.through_seq);
        let worked = tokio::task::spawn_blocking(move || {
            register_page(loans, histories, places, &versions, &due, (as_of, through_seq))
        })
        .await
        .map_err(|e| AppError::Internal(format!("a page of registers failed: {e}")))??;
        let (registers, failed) = worked;
        if let Some(e) = failed {
            (self.failed, self.done) = (Some(e), true);
        }
        Ok(Some(registers))
    }
}

/// The registers of a page of `loans` with their `histories` and their households' `places`,
/// each with its lines `due` (loans with none left out), as of a date through a seq; and the
/// error of the first loan whose register cannot be computed, which ends the page there.
fn register_page(
    loans: Vec<LoanState>,
    mut histories: HashMap<String, LoanHistory>,
    places: HashMap<String, (String, String)>,
    versions: &[PolicyVersion],
    due: &RangeInclusive<BusinessDate>,
    (as_of, through_seq): (BusinessDate, u64),
) -> Result<(Vec<LoanSubsidy>, Option<AppError>), AppError> {
    let mut registers = Vec::new();
    for loan in &loans {
        let loan_id = &loan.terms.loan_id;
        // Listed a moment ago, every loan has the entry that created it.
        let Some(history) = histories.remove(loan_id) else {
            return Err(AppError::Internal(format!("loan {loan_id} has no journal entries")));
        };
        let computed = compute(loan_id, history, Some(loan), versions, (as_of, Some(through_seq)));
        let computed = match computed {
            Ok(computed) => computed,
            Err(e) => return Ok((registers, Some(e))),
        };
        // (A loan contracted after the seq, listed as it stands now, has no register then.)
        let Some(mut register) = computed else { continue };
        register.lines.retain(|l| due.contains(&l.due_date));
        if !register.lines.is_empty() {
            // (A household may have several loans on the page: each takes a copy.)
            let place = places.get(&register.terms.household_id).cloned();
            if place.is_none() {
                let household = &register.terms.household_id;
                tracing::warn!(%loan_id, %household, "a loan's household has no row");
            }
            (register.township, register.village) = place.unwrap_or_default();
            registers.push(register);
        }
    }
    Ok((registers, None))
}

/// The register of loan `loan_id` of ledger `ledger_id` (whose caller the API has let read it),
/// as of `as_of`, through `through_seq` if given (`None`: no contract was recorded by then).
/// The ledger's head is read first, then the loan's history and the policy versions.
pub async fn loan_subsidy(
    db: &Db,
    (loan_id, ledger_id): (&str, &str),
    as_of: BusinessDate,
    through_seq: Option<u64>,
) -> Result<Option<LoanSubsidy>, AppError> {
    let through_seq = read_through(db, ledger_id, through_seq).await?;
    let Some(history) = db.loan_history(loan_id).await? else { return Ok(None) };
    let versions = db.list_policies(ledger_id, Some(through_seq)).await?;
    let computed = compute(loan_id, history, None, &versions, (as_of, Some(through_seq)))?;
    let Some(mut register) = computed else { return Ok(None) };
    let household = register.terms.household_id.as_str();
    let place = db.household_places(&[household]).await?.remove(household);
    (register.township, register.village) = place.unwrap_or_default();
    Ok(Some(register))
}

/// A claim's lines as [`check_claim`] found them, and what it read them from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimCheck {
    pub lines: Vec<ClaimLine>,
    /// Each loan checked, by id, with the seq of its last event then; 0 for a claimed loan
    /// that had none (not contracted yet).
    pub seen: Vec<(String, u64)>,
    /// The ledger's policy versions the registers were worked out under.
    pub policies: Vec<PolicyVersion>,
    /// Each checked loan's household, by id, with the seq of its last status then: the
    /// writer tells whether one has been recorded since (`HouseholdNotEligible`).
    pub households_seen: Vec<(String, u64)>,
}

/// The lines of a bank's subsidy claim checked against its loans' registers as of `as_of`
/// ([`check_line`]), through a seq if given (verify's recheck of a recorded claim), in the claim's order, with each loan's household, township, village and
/// principal: the claimed-once check is the writer's. A loan the bank does not hold (another
/// bank's, or none) has no register line: `NotInRegister`. With the lines, the seq of each
/// checked loan's last event as read ([`ClaimCheck::seen`]), and the policy versions read, for
/// the writer to tell whether one has changed before it records the claim: the claim's lines
/// are then those of the registers through the seq before its own entry's.
pub async fn check_claim(
    db: &Db,
    bank: &BankRow,
    lines: &[ClaimedLine],
    (as_of, through_seq): (BusinessDate, Option<u64>),
) -> Result<ClaimCheck, AppError> {
    let versions = db.list_policies(&bank.ledger_id, through_seq).await?;
    let mut loan_ids: Vec<&str> = lines.iter().map(|l| l.loan_id.as_str()).collect();
    loan_ids.sort_unstable();
    loan_ids.dedup();
    let mut registers: HashMap<String, LoanSubsidy> = HashMap::default();
    // Each loan's contract seq: the statuses recorded before it are those its contract knew.
    let mut contracted_at: HashMap<String, u64> = HashMap::default();
    // A claimed loan with no journal yet: should it be contracted before the writer takes the
    // claim, its line would be in the register then (seen at seq 0, the writer tells).
    let mut missing: Vec<(String, u64)> = Vec::new();
    for ids in loan_ids.chunks(REGISTER_PAGE_LOANS as usize) {
        let histories = db.loan_histories(ids).await?;
        let read: std::collections::HashSet<&str> =
            histories.iter().map(|(id, _)| id.as_str()).collect();
        missing.extend(ids.iter().filter(|id| !read.contains(*id)).map(|id| (id.to_string(), 0)));
        for (loan_id, history) in histories {
            // Another bank's loan is not read at all (its ledger's policies are not these), and
            // stays another bank's whatever happens to it.
            if history.bank_id != bank.bank_id || history.ledger_id != bank.ledger_id {
                continue;
            }
            let first = history.rows().first().and_then(|r| r.row().ok()).map(|r| r.seq);
            let computed = compute(&loan_id, history, None, &versions, (as_of, through_seq))?;
            if let Some(register) = computed {
                contracted_at.insert(loan_id.clone(), first.map_or(0, |s| s as u64));
                registers.insert(loan_id, register);
            }
        }
    }
    let households: Vec<&str> = registers.values().map(|r| r.terms.household_id.as_str()).collect();
    let places = db.household_places(&households).await?;
    // Their status series as recorded by then: a status dated back over a contract makes its
    // loan falsely obtained, and no line of it payable (since 2026-12-07).
    let statuses = db.household_statuses(&households, through_seq).await?;
    let mut households_seen: Vec<(String, u64)> = households
        .iter()
        .map(|h| {
            let last = statuses.get(*h).and_then(|s| s.last()).map_or(0, |(seq, _)| *seq);
            (h.to_string(), last)
        })
        .collect();
    households_seen.sort_unstable();
    households_seen.dedup();
    let mut seen: Vec<(String, u64)> =
        registers.iter().map(|(id, r)| (id.clone(), r.last_seq)).chain(missing).collect();
    seen.sort_unstable();
    let lines = lines
        .iter()
        .map(|claimed| {
            let register = registers.get(&claimed.loan_id);
            let line =
                register.and_then(|r| r.lines.iter().find(|l| l.due_date == claimed.due_date));
            let mut checked = check_line(claimed, line);
            if let (Some(register), Some(_)) = (register, line) {
                let terms = &register.terms;
                checked.household_id = terms.household_id.clone();
                (checked.township, checked.village) =
                    places.get(&terms.household_id).cloned().unwrap_or_default();
                checked.principal_fen = terms.principal_fen;
                check_terms(&mut checked, terms.principal_fen, terms.annual_rate);
                let series = statuses.get(&terms.household_id).map_or(&[][..], Vec::as_slice);
                let contract_seq = contracted_at.get(&claimed.loan_id).copied().unwrap_or(0);
                if found_ineligible(series, contract_seq, terms.contract_date) {
                    checked.differences.push(Difference::HouseholdNotEligible);
                }
            }
            checked
        })
        .collect();
    Ok(ClaimCheck { lines, seen, policies: versions, households_seen })
}

/// Whether a household's status `series` (each entry with its seq) says, as it is now, that
/// the household was one the programme never lends to (not eligible, removed, moved out) on
/// `contract_date`, where the statuses recorded before the contract (`contract_seq`) did not:
/// found since, a status dated back over the contract, the loan falsely obtained. Judged by the
/// statuses alone, whatever policy versions were set since (a narrower version dated back does
/// not make a contract false).
fn found_ineligible(
    series: &[(u64, StatusEntry)],
    contract_seq: u64,
    contract_date: BusinessDate,
) -> bool {
    let entries = |before: Option<u64>| -> Vec<StatusEntry> {
        series
            .iter()
            .filter(|(seq, _)| before.is_none_or(|b| *seq < b))
            .map(|(_, e)| e.clone())
            .collect()
    };
    never_lent_to_on(&entries(None), contract_date).is_some()
        && never_lent_to_on(&entries(Some(contract_seq)), contract_date).is_none()
}

/// The register of a loan as of a date, from its events recorded through a seq if given (the
/// seq it is read through: `None` for the journal as read), its ledger's policy versions read
/// (its household's place left empty); `None` if no event of the loan was recorded by then.
/// `stored` is the loan's state as its read model holds it, if read: when it is the state after
/// the history's last event (read apart, a write may come between them) and no event is after
/// `as_of`, it is the state a replay of the history would give, and spares it.
fn compute(
    loan_id: &str,
    history: LoanHistory,
    stored: Option<&LoanState>,
    versions: &[PolicyVersion],
    (as_of, through_seq): (BusinessDate, Option<u64>),
) -> Result<Option<LoanSubsidy>, AppError> {
    let ledger_id = history.ledger_id.clone();
    let events = loan_events(loan_id, history, through_seq)?;
    let history_seq = events.last().map_or(0, |&(_, seq)| seq);
    let through_seq = through_seq.unwrap_or(history_seq);
    if events.is_empty() {
        return Ok(None);
    }
    let Some((LoanEvent::Created { terms }, _)) = events.first() else {
        return Err(AppError::Internal(format!(
            "journal of loan {loan_id} starts without a contract"
        )));
    };
    let terms = terms.clone();
    let policy = subsidy_policy(versions, terms.contract_date, terms.annual_rate).map_err(|e| {
        AppError::Internal(format!("policy of ledger {ledger_id} for loan {loan_id}: {e}"))
    })?;
    let by_then = || events.iter().filter(|(e, _)| e.value_date() <= as_of);
    let misused = by_then().any(|(e, _)| matches!(e, LoanEvent::MisuseMarked { .. }));
    // Asked as of a date before its contract, the loan has no line yet.
    if by_then().next().is_none() {
        return Ok(Some(LoanSubsidy {
            terms,
            township: String::new(),
            village: String::new(),
            policy,
            misused,
            lines: Vec::new(),
            last_seq: history_seq,
            through_seq,
        }));
    }
    // The points the date has passed that no event by then settled, settled on a copy as
    // servicing would settle them on the date (as a payoff quote does).
    let mut servicing = match stored {
        Some(state) if state.last_seq == history_seq && state.last_value_date <= as_of => {
            state.servicing.clone()
        }
        _ => {
            replay(loan_id, by_then().map(|(e, seq)| (e, *seq)))?
                .ok_or_else(|| AppError::Internal(format!("loan {loan_id} has no contract")))?
                .servicing
        }
    };
    let servicing_terms = terms.servicing_terms();
    let pending = unpanicked("a loan's pending settlement", || {
        servicing.settle_through(&servicing_terms, as_of)
    })?
    .map_err(|e| match e {
        // A date further ahead than a loan's figures can be worked out to, as `GetLoan` has it.
        ServicingError::TooManyPoints | ServicingError::DateOutOfRange => {
            let why = format!("loan {loan_id} cannot be settled through {as_of}: {e}");
            AppError::Domain(DomainError::refused(Reason::ValueDateOutOfRange, why))
        }
        _ => AppError::Internal(format!("loan {loan_id} as of {as_of}: {e}")),
    })?;
    let recorded = by_then().map(|(e, _)| e);
    let lines = register(recorded, &pending, terms.annual_rate, terms.grace_days, &policy, as_of)
        .map_err(|e| AppError::Internal(format!("journal of loan {loan_id}: {e}")))?;
    Ok(Some(LoanSubsidy {
        terms,
        township: String::new(),
        village: String::new(),
        policy,
        misused,
        lines,
        last_seq: history_seq,
        through_seq,
    }))
}

/// The subsidy figures of a loan contracted on `contract_date` at `rate` (see the module doc).
pub fn subsidy_policy(
    versions: &[PolicyVersion],
    contract_date: BusinessDate,
    rate: AnnualRate,
) -> Result<SubsidyPolicy, String> {
    let at_contract = in_force(versions, contract_date)
        .ok_or_else(|| format!("no version is in force on the contract date {contract_date}"))?;
    let steps = ratio_steps(versions);
    let cap_rate: Decimal =
        at_contract.params.subsidy_cap_rate.map_or(rate.value(), |cap| cap.value());
    Ok(SubsidyPolicy {
        household_cap: Fen(at_contract.params.household_principal_cap_fen),
        cap_rate,
        ratios: RatioTable::new(steps).map_err(|e| e.to_string())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::{PolicyParams, default_versions};

    /// Versions that change other figures are no ratio steps: a ledger with two hundred of
    /// them still has its registers (the ratio table holds a hundred steps at most). The caps
    /// are those in force on the contract date; no cap rate caps at the contract's.
    #[test]
    fn only_changes_of_the_ratio_are_steps() {
        let mut versions = default_versions();
        let base = versions[0].clone();
        for i in 0..200 {
            let mut v = base.clone();
            v.effective_date = base.effective_date + chrono::Duration::days(i + 1);
            let cap = if i >= 150 { 4_000_000 } else { base.params.household_principal_cap_fen };
            v.params = PolicyParams {
                grace_days: (i % 5) as u32,
                household_principal_cap_fen: cap,
                ..base.params.clone()
            };
            versions.push(v);
        }
        let rate = AnnualRate::parse("0.0385").unwrap();
        let on = |date| BusinessDate::from_ymd_opt(2015, 1, date).unwrap();
        let policy = subsidy_policy(&versions, on(1), rate).unwrap();
        let steps: Vec<(BusinessDate, Decimal)> =
            policy.ratios.steps().iter().map(|s| (s.effective_from, s.ratio)).collect();
        let from_2024 = BusinessDate::from_ymd_opt(2024, 1, 1).unwrap();
        assert_eq!(steps, [(base.effective_date, Decimal::ONE), (from_2024, Decimal::new(7, 1))]);
        assert_eq!((policy.household_cap, policy.cap_rate), (Fen(5_000_000), rate.value()));
        // The versions from 2015-05-10 on lowered the cap.
        let later = BusinessDate::from_ymd_opt(2015, 6, 1).unwrap();
        assert_eq!(subsidy_policy(&versions, later, rate).unwrap().household_cap, Fen(4_000_000));
    }

    /// A status never lent to on the contract date, found since the contract (dated back over
    /// it), is found ineligible; one known before the contract (a contract an old policy let
    /// through), one dated after the contract date, or an eligible one, is not.
    #[test]
    fn a_status_found_since_the_contract_makes_it_ineligible() {
        use crate::domain::household::{HouseholdStatus as S, StatusEntry};
        let day = |s: &str| BusinessDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let entry = |seq: u64, status, date: &str| {
            (seq, StatusEntry { status, effective_date: day(date), reason: String::new() })
        };
        let contract = day("2021-01-25");
        let poor = entry(1, S::RegisteredPoor, "2020-01-01");
        let dated_back = [poor.clone(), entry(9, S::Removed, "2021-01-01")];
        assert!(super::found_ineligible(&dated_back, 5, contract));
        assert!(!super::found_ineligible(&dated_back, 10, contract), "known before");
        let after = [poor.clone(), entry(9, S::Removed, "2021-02-01")];
        assert!(!super::found_ineligible(&after, 5, contract), "removed after the contract");
        let exited = [poor.clone(), entry(9, S::Exited, "2021-01-01")];
        assert!(!super::found_ineligible(&exited, 5, contract), "still eligible");
        let restored =
            [poor, entry(9, S::Removed, "2021-01-01"), entry(11, S::Exited, "2021-01-01")];
        assert!(!super::found_ineligible(&restored, 5, contract), "corrected again");
    }
}
