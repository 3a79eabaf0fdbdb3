//! Pooled-loan arrangements (分贷统还: borrowed by each household, repaid together): the
//! agreement that links member loans of one bank to a partner (an enterprise, a cooperative or
//! a capable farmer), the loan money a household hands to the partner, the fixed returns or
//! dividends the partner pays the households, the households' recorded participation, the
//! partner's collective repayments to the bank allocated over the member loans, and the
//! settlement at maturity.
//!
//! The model.
//! - **A pool** ([`Pool`]) is one agreement, named by the bank's `pool_id`, in one of three
//!   **modes** ([`PoolMode`]): **direct** (户贷户用: each household uses its money; the partner
//!   supports it, and no money is pooled), **entrusted** (委托帮扶: the household hands its loan
//!   money to the partner, which pays a fixed return) and **shareholding** (股份合作: the money
//!   becomes the household's shares, on which the partner pays dividends). Entrusted and
//!   shareholding pools carry the annual **return rate** the partner owes on the money it holds
//!   and how often it is due ([`ReturnFrequency`], on the 20th as the loans' settlements); a
//!   direct pool has neither. The household always stays the borrower of record: its loan is
//!   not changed by the agreement.
//! - **Members** ([`Member`]): loans of the pool's bank, in its ledger, open (contracted or
//!   live), contracted on or before the agreement's date, each in one pool at most in its life
//!   (`POOL_MEMBER_TAKEN`, checked by the caller, which holds the other pools). **Policy**
//!   decides from which date the entrusted and shareholding modes are refused
//!   ([`crate::domain::policy::PolicyParams::enterprise_modes_allowed`], judged by the version
//!   in force on each member loan's contract date: `POOL_MODE_NOT_ALLOWED` naming the loan).
//! - **Transfers** ([`Pool::transfer`]): a household hands the partner part or all of its loan
//!   money, paid out by then (`POOL_TRANSFER_EXCEEDS_LOAN` beyond the loan's principal
//!   outstanding less what the partner holds of it); entrusted and shareholding pools only
//!   (`POOL_MODE_MISMATCH`).
//! - **Returns and dividends** ([`Pool::pay_return`]): what the partner paid a household. What
//!   it owed by a date ([`Pool::returns_due`]) is the sum of the returns of each due point on or
//!   before the date ([`Pool::returns_schedule`]): each on what it held of the household's
//!   money day by day since the point before, at the return rate over 360 days, rounded half up
//!   to the fen (the figure a partner paying each period works out). The settlement's day is
//!   the last point; returns owed are taken after it too. Not refused when short or late:
//!   reported.
//! - **Participation** ([`Pool::participate`]): the household's work, training or produce sold
//!   to the partner, dated; a return paid to a household with none recorded is the "simple
//!   dividend" (简单分红) policy forbids: reported.
//! - **Collective repayments** ([`Pool::plan_repayment`]): the partner pays the bank one amount
//!   on a date; it is **allocated over the member loans** that owe anything that day in
//!   proportion to what each owes (its payoff figure: charges, interest and principal), to the
//!   fen by the largest remainders ([`allocate`]); a part that would repay all of a loan's
//!   principal but not its accrued interest (which the loan refuses) is raised to the loan's
//!   payoff, or loans are paid off whole ([`split_payment`]); each loan's part is a repayment of that
//!   loan as the loan's own rules take it (charges and interest first, then principal). More
//!   than all the members owe is refused (`REPAYMENT_EXCEEDS_OWED`); a part a loan refuses
//!   refuses the whole payment, naming the loan. Of each part, the principal repaid is money
//!   the partner held handed back to the household (up to what it held).
//! - **Settlement** ([`Pool::settle`]): once every member loan is closed (settled or written
//!   off; `POOL_MEMBERS_OPEN` otherwise), the pool is settled and what the partner still held
//!   is handed back. A settled pool takes no transfer or collective repayment more, nor a
//!   participation dated after its settlement (`POOL_SETTLED`); the returns it owed are still
//!   recorded.
//! - **The report** ([`Pool::report`]), for auditors: by member as of a date, the loan's
//!   standing, what the partner held, the returns due and paid (from the journal's dated
//!   returns and participations), and four flags: returns short (late or missing), returns
//!   paid late (after their due point, made up since), the loan overdue while the partner holds
//!   its money, returns paid with no participation.
//!
//! Events ([`PoolEvent`]), each one journal transaction of the pool's ledger: `pool.agreed`
//! and `pool.participated` (memo), `pool.transferred`, `pool.return_paid`, `pool.repaid` (the
//! member loans' repayments, each a loan event of its loan, with the hand-backs) and
//! `pool.settled` (postings: [`crate::ledger::pool_postings`]). Verify plans each again from
//! the pool and the loans as replayed, compares, and applies it with [`Pool::apply`].

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use super::date::{format_date, iso, iso_opt};
use super::error::{DomainError, EARLIEST_DATE, Reason};
use super::loan::{LoanCommand, LoanEvent, LoanState, LoanStatus};
use super::money::Fen;
use super::policy::{PolicyVersion, in_force, in_force_since};
use super::rate::AnnualRate;
use crate::collections::HashMap;

/// Member loans a pool holds at most.
pub const MEMBERS_MAX: usize = 1_000;

/// How the partner uses the members' loans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// 户贷户用: the household uses its money; the partner supports it. No money is pooled.
    Direct,
    /// 委托帮扶: the household hands its money to the partner for a fixed return.
    Entrusted,
    /// 股份合作: the money becomes the household's shares; the partner pays dividends.
    Shareholding,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Direct => "direct",
            PoolMode::Entrusted => "entrusted",
            PoolMode::Shareholding => "shareholding",
        }
    }

    /// Whether the partner takes the households' money (and owes returns on it).
    pub fn pools_money(self) -> bool {
        self != PoolMode::Direct
    }
}

/// When returns or dividends fall due: on the 20th of each quarter's last month, or on 20
/// December.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnFrequency {
    Quarterly,
    Yearly,
}

impl ReturnFrequency {
    /// The last due point on or before `date`.
    pub fn last_point(self, date: NaiveDate) -> Option<NaiveDate> {
        let this_year = self
            .months()
            .iter()
            .rev()
            .filter_map(|&m| NaiveDate::from_ymd_opt(date.year(), m, 20))
            .find(|p| *p <= date);
        this_year.or_else(|| NaiveDate::from_ymd_opt(date.year() - 1, 12, 20))
    }

    /// The first due point after `date`.
    pub fn next_point(self, date: NaiveDate) -> Option<NaiveDate> {
        (date.year()..=date.year().saturating_add(1))
            .flat_map(|year| {
                self.months().iter().filter_map(move |&m| NaiveDate::from_ymd_opt(year, m, 20))
            })
            .find(|p| *p > date)
    }

    /// The months whose 20th is a due point.
    fn months(self) -> &'static [u32] {
        match self {
            ReturnFrequency::Quarterly => &[3, 6, 9, 12],
            ReturnFrequency::Yearly => &[12],
        }
    }
}

/// What a household did for the partner, as its participation is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipationKind {
    Work,
    Training,
    ProduceSold,
    Other,
}

/// The agreement as the bank records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTerms {
    pub pool_id: String,
    pub ledger_id: String,
    pub bank_id: String,
    pub mode: PoolMode,
    /// The partner's unified social credit code, or a capable farmer's identity number.
    pub partner_id: String,
    pub partner_name: String,
    #[serde(with = "iso")]
    pub agreed_on: NaiveDate,
    /// The annual return or dividend rate on the money the partner holds (entrusted and
    /// shareholding pools; none for a direct one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_rate: Option<AnnualRate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_frequency: Option<ReturnFrequency>,
}

/// A member loan as the agreement names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRef {
    pub loan_id: String,
    pub household_id: String,
}

/// A dated change of what the partner holds of a household's money: a transfer (positive) or a
/// hand-back (negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldChange {
    #[serde(with = "iso")]
    pub date: NaiveDate,
    pub delta_fen: Fen,
}

/// Money the partner hands back to a household: the principal it repaid of the household's
/// loan, or what it still held at the settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandBack {
    pub loan_id: String,
    pub household_id: String,
    pub amount_fen: Fen,
}

/// A member loan's figures in its pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub loan_id: String,
    pub household_id: String,
    /// The household's loan money handed to the partner, in all.
    pub transferred_fen: Fen,
    /// Handed back since: principal the partner repaid of the loan, and what it still held at
    /// the settlement.
    pub handed_back_fen: Fen,
    /// What the partner held, change by change, oldest first (the returns due are worked out
    /// from it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_changes: Vec<HeldChange>,
    pub returns_paid_fen: Fen,
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub last_return_on: Option<NaiveDate>,
    pub participations: u32,
    /// The partner's collective repayments allocated to the loan, in all.
    pub repaid_fen: Fen,
}

impl Member {
    /// What the partner holds of the household's money.
    pub fn held_fen(&self) -> Fen {
        Fen(self.transferred_fen.0.saturating_sub(self.handed_back_fen.0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolStatus {
    Active,
    Settled,
}

impl PoolStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolStatus::Active => "active",
            PoolStatus::Settled => "settled",
        }
    }
}

/// A pool as its events left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub terms: PoolTerms,
    /// In loan id order.
    pub members: Vec<Member>,
    pub status: PoolStatus,
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub settled_on: Option<NaiveDate>,
    /// Collective repayments, in all.
    pub repaid_fen: Fen,
    pub repayments: u32,
}

/// What a pool's journal transactions hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PoolEvent {
    Agreed {
        terms: PoolTerms,
        /// In loan id order.
        members: Vec<MemberRef>,
    },
    Transferred {
        pool_id: String,
        ledger_id: String,
        loan_id: String,
        household_id: String,
        #[serde(with = "iso")]
        value_date: NaiveDate,
        amount_fen: Fen,
    },
    ReturnPaid {
        pool_id: String,
        ledger_id: String,
        loan_id: String,
        household_id: String,
        #[serde(with = "iso")]
        value_date: NaiveDate,
        amount_fen: Fen,
    },
    Participated {
        pool_id: String,
        ledger_id: String,
        loan_id: String,
        #[serde(with = "iso")]
        value_date: NaiveDate,
        kind: ParticipationKind,
        note: String,
    },
    /// A collective repayment: each member loan's part as that loan's repayment event, in loan
    /// id order, and the money the partner handed back with it.
    Repaid {
        pool_id: String,
        ledger_id: String,
        bank_id: String,
        #[serde(with = "iso")]
        value_date: NaiveDate,
        amount_fen: Fen,
        parts: Vec<LoanEvent>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        handed_back: Vec<HandBack>,
    },
    Settled {
        pool_id: String,
        ledger_id: String,
        #[serde(with = "iso")]
        value_date: NaiveDate,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        handed_back: Vec<HandBack>,
    },
}

impl PoolEvent {
    pub fn pool_id(&self) -> &str {
        match self {
            PoolEvent::Agreed { terms, .. } => &terms.pool_id,
            PoolEvent::Transferred { pool_id, .. }
            | PoolEvent::ReturnPaid { pool_id, .. }
            | PoolEvent::Participated { pool_id, .. }
            | PoolEvent::Repaid { pool_id, .. }
            | PoolEvent::Settled { pool_id, .. } => pool_id,
        }
    }

    pub fn ledger_id(&self) -> &str {
        match self {
            PoolEvent::Agreed { terms, .. } => &terms.ledger_id,
            PoolEvent::Transferred { ledger_id, .. }
            | PoolEvent::ReturnPaid { ledger_id, .. }
            | PoolEvent::Participated { ledger_id, .. }
            | PoolEvent::Repaid { ledger_id, .. }
            | PoolEvent::Settled { ledger_id, .. } => ledger_id,
        }
    }

    pub fn date(&self) -> NaiveDate {
        match self {
            PoolEvent::Agreed { terms, .. } => terms.agreed_on,
            PoolEvent::Transferred { value_date, .. }
            | PoolEvent::ReturnPaid { value_date, .. }
            | PoolEvent::Participated { value_date, .. }
            | PoolEvent::Repaid { value_date, .. }
            | PoolEvent::Settled { value_date, .. } => *value_date,
        }
    }

    /// The member loan the event is about, if it is about one.
    pub fn loan_id(&self) -> Option<&str> {
        match self {
            PoolEvent::Transferred { loan_id, .. }
            | PoolEvent::ReturnPaid { loan_id, .. }
            | PoolEvent::Participated { loan_id, .. } => Some(loan_id),
            _ => None,
        }
    }

    /// The loans the event touches: the members an agreement names, the loans a collective
    /// repayment repays, the member another event is about (a settlement: none).
    pub fn loan_ids(&self) -> PoolLoanIds<'_> {
        match self {
            PoolEvent::Agreed { members, .. } => PoolLoanIds::Members(members.iter()),
            PoolEvent::Repaid { parts, .. } => PoolLoanIds::Parts(parts.iter()),
            other => PoolLoanIds::One(other.loan_id()),
        }
    }

    /// `loan_id`'s own event in a collective repayment, if it has a part in it.
    pub fn part_of(&self, loan_id: &str) -> Option<&LoanEvent> {
        match self {
            PoolEvent::Repaid { parts, .. } => parts.iter().find(|p| p.loan_id() == loan_id),
            _ => None,
        }
    }
}

/// The loan ids of a [`PoolEvent`] ([`PoolEvent::loan_ids`]), without a list of their own.
pub enum PoolLoanIds<'a> {
    One(Option<&'a str>),
    Members(std::slice::Iter<'a, MemberRef>),
    Parts(std::slice::Iter<'a, LoanEvent>),
}

impl<'a> Iterator for PoolLoanIds<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            PoolLoanIds::One(id) => id.take(),
            PoolLoanIds::Members(m) => m.next().map(|m| m.loan_id.as_str()),
            PoolLoanIds::Parts(p) => p.next().map(LoanEvent::loan_id),
        }
    }
}

/// `amount` split over `weights` in proportion, to the fen: each share rounded down, then the
/// fen left given one each to the largest remainders (the first of equal ones first). The
/// shares sum to `amount`; with `amount` at most the weights' sum, none is above its weight.
/// All zero when the weights are.
pub fn allocate(amount: Fen, weights: &[Fen]) -> Vec<Fen> {
    let total: i128 = weights.iter().map(|w| i128::from(w.0.max(0))).sum();
    if total == 0 || amount.0 <= 0 {
        return vec![Fen::ZERO; weights.len()];
    }
    let amount = i128::from(amount.0);
    let mut shares = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (i, w) in weights.iter().enumerate() {
        let product = amount * i128::from(w.0.max(0));
        shares.push(product / total);
        remainders.push((product % total, i));
    }
    let left = amount - shares.iter().sum::<i128>();
    // Largest remainder first; the first of equal ones first.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take(usize::try_from(left).unwrap_or(0)) {
        shares[i] += 1;
    }
    shares.into_iter().map(|s| Fen(i64::try_from(s).unwrap_or(i64::MAX))).collect()
}

/// What a member loan owes on a collective repayment's date, as its share is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owing {
    /// Its payoff figure: charges, interest (accrued to the day before included) and principal.
    pub owed: Fen,
    /// The share from which a part would repay all its principal, short of `owed` (the
    /// interest accrued in the running period is taken after the principal): a part from here
    /// up to `owed`, not included, is refused (`PAYOFF_REQUIRED`). None when there is no such
    /// range (no interest accrued, or no principal).
    pub principal_covered_from: Option<Fen>,
}

impl Owing {
    /// A loan owing `owed` (its payoff figure), of which `accrued` is interest of the running
    /// period, its principal not yet all repaid or (`has_principal` false) repaid.
    pub fn new(owed: Fen, accrued: Fen, has_principal: bool) -> Owing {
        let principal_covered_from =
            (accrued.is_positive() && has_principal).then(|| Fen(owed.0 - accrued.0));
        Owing { owed, principal_covered_from }
    }

    /// Whether a part of `share` would repay all principal but not all owed.
    fn refuses(&self, share: Fen) -> bool {
        self.principal_covered_from.is_some_and(|from| share >= from && share < self.owed)
    }

    /// The largest part below the refused range (`owed` if there is none).
    fn below_range(&self) -> Fen {
        self.principal_covered_from.map_or(self.owed, |from| Fen((from.0 - 1).max(0)))
    }
}

/// A collective payment of `amount` (at most what `owing` owe together) split over the loans
/// owing, none of its parts in the range a loan refuses ([`Owing::refuses`]):
/// 1. in proportion to what each owes ([`allocate`]), if no part falls in a refused range;
/// 2. else those parts raised to their loan's payoff, the fen that takes lowered from the parts
///    below their ranges, in proportion to them, if they hold enough;
/// 3. else some loans left short ([`left_short`]), what is left after paying off the others
///    whole split over them in proportion to the part each takes below its range.
///
/// None when none of these fits (a payment a few fen short of all owed, each loan with
/// interest accrued: one would be left owing its interest alone); for a pool of up to
/// [`SHORT_SEARCHED_MAX`] loans with a refused range, exactly when no split fits at all.
pub fn split_payment(amount: Fen, owing: &[Owing]) -> Option<Vec<Fen>> {
    let weights: Vec<Fen> = owing.iter().map(|o| o.owed).collect();
    let mut shares = allocate(amount, &weights);
    let refused: Vec<bool> = owing.iter().zip(&shares).map(|(o, s)| o.refuses(*s)).collect();
    if !refused.contains(&true) {
        return Some(shares);
    }
    let below: Vec<usize> = (0..owing.len())
        .filter(|&i| {
            !refused[i] && shares[i] <= owing[i].below_range() && shares[i] < owing[i].owed
        })
        .collect();
    let raise: i128 = (0..owing.len())
        .filter(|&i| refused[i])
        .map(|i| i128::from(owing[i].owed.0) - i128::from(shares[i].0))
        .sum();
    let held: i128 = below.iter().map(|&i| i128::from(shares[i].0)).sum();
    if raise <= held {
        let weights: Vec<Fen> = below.iter().map(|&i| shares[i]).collect();
        let lowered = allocate(Fen(i64::try_from(held - raise).ok()?), &weights);
        for (&i, share) in below.iter().zip(lowered) {
            shares[i] = share;
        }
        for i in (0..owing.len()).filter(|&i| refused[i]) {
            shares[i] = owing[i].owed;
        }
        return Some(shares);
    }
    let total: i128 = owing.iter().map(|o| i128::from(o.owed.0)).sum();
    let short = left_short(owing, total - i128::from(amount.0))?;
    let left = i128::from(amount.0)
        - (0..owing.len())
            .filter(|i| short.binary_search(i).is_err())
            .map(|i| i128::from(owing[i].owed.0))
            .sum::<i128>();
    let left = Fen(i64::try_from(left).ok().filter(|l| *l >= 0)?);
    let mut shares: Vec<Fen> = owing.iter().map(|o| o.owed).collect();
    let caps: Vec<Fen> = short.iter().map(|&i| owing[i].below_range()).collect();
    for (&i, share) in short.iter().zip(allocate(left, &caps)) {
        shares[i] = share;
    }
    Some(shares)
}

/// Pools this small have every choice of the loans left short tried ([`left_short`]).
const SHORT_SEARCHED_MAX: usize = 12;

/// The loans a payment `shortfall` fen short of all `owing` owe leaves short (the others paid
/// off), in index order: every loan without a refused range, and loans with one whose gaps
/// (the fen each must stay below its payoff: its accrued interest and a fen) fit in the
/// shortfall together, while all of them owe at least the shortfall. Such a set exists exactly
/// when some split of the payment has no part a loan refuses. Among the loans with a range
/// that fit: for up to [`SHORT_SEARCHED_MAX`] of them every choice, the fewest loans first;
/// beyond, the one owing most alone, else as many as fit, the most owed a fen of gap first,
/// then the smallest gaps first. None when no set is found.
fn left_short(owing: &[Owing], shortfall: i128) -> Option<Vec<usize>> {
    let gap = |i: usize| i128::from(owing[i].owed.0) - i128::from(owing[i].below_range().0);
    let owed = |i: usize| i128::from(owing[i].owed.0);
    let free: Vec<usize> = (0..owing.len()).filter(|&i| gap(i) == 0).collect();
    let need = shortfall - free.iter().map(|&i| owed(i)).sum::<i128>();
    let with = |mut chosen: Vec<usize>| {
        chosen.extend(&free);
        chosen.sort_unstable();
        chosen
    };
    if need <= 0 {
        return Some(with(Vec::new()));
    }
    let ranged: Vec<usize> =
        (0..owing.len()).filter(|&i| gap(i) > 0 && gap(i) <= shortfall).collect();
    let fits = |set: &[usize]| {
        set.iter().map(|&i| gap(i)).sum::<i128>() <= shortfall
            && set.iter().map(|&i| owed(i)).sum::<i128>() >= need
    };
    if ranged.len() <= SHORT_SEARCHED_MAX {
        let mut masks: Vec<u32> = (1..1u32 << ranged.len()).collect();
        masks.sort_by_key(|m| (m.count_ones(), *m));
        return masks.into_iter().find_map(|mask| {
            let set: Vec<usize> =
                (0..ranged.len()).filter(|b| mask & (1 << b) != 0).map(|b| ranged[b]).collect();
            fits(&set).then(|| with(set))
        });
    }
    let most = ranged.iter().max_by_key(|&&i| (owed(i), std::cmp::Reverse(i)));
    if let Some(&one) = most.filter(|&&one| fits(&[one])) {
        return Some(with(vec![one]));
    }
    let greedy = |mut order: Vec<usize>| {
        let (mut set, mut gaps) = (Vec::new(), 0);
        for i in order.drain(..) {
            if gaps + gap(i) <= shortfall {
                gaps += gap(i);
                set.push(i);
            }
        }
        set
    };
    let mut by_yield = ranged.clone();
    by_yield.sort_by(|&a, &b| (owed(b) * gap(a)).cmp(&(owed(a) * gap(b))).then(a.cmp(&b)));
    let mut by_gap = ranged;
    by_gap.sort_by_key(|&i| (gap(i), i));
    [greedy(by_yield), greedy(by_gap)].into_iter().find(|set| fits(set)).map(with)
}

fn refused(reason: Reason, message: String) -> DomainError {
    DomainError::refused(reason, message)
}

fn add(a: Fen, b: Fen, field: &str) -> Result<Fen, DomainError> {
    a.checked_add(b).ok_or_else(|| DomainError::Overflow { field: field.to_string() })
}

/// A pool's number of member loans: one at least, [`MEMBERS_MAX`] at most (the API checks it
/// as the request is read, the writer again).
pub fn check_member_count(loans: usize) -> Result<(), DomainError> {
    if loans == 0 {
        return Err(DomainError::invalid("loan_ids", "must name at least one loan"));
    }
    if loans > MEMBERS_MAX {
        let message = format!("may name at most {MEMBERS_MAX} loans");
        return Err(DomainError::invalid("loan_ids", message));
    }
    Ok(())
}

impl PoolTerms {
    /// The terms' own rules: a partner named, a return rate and frequency for the modes that
    /// pool money and none for a direct pool.
    pub fn check(&self) -> Result<(), DomainError> {
        if self.partner_id.trim().is_empty() {
            return Err(DomainError::invalid("partner_id", "is required"));
        }
        if self.partner_name.trim().is_empty() {
            return Err(DomainError::invalid("partner_name", "is required"));
        }
        match (self.mode.pools_money(), self.return_rate, self.return_frequency) {
            (true, Some(rate), Some(_)) if rate.value() > Decimal::ZERO => Ok(()),
            (true, Some(_), Some(_)) => {
                Err(DomainError::invalid("return_rate", "must be positive for this mode"))
            }
            (true, None, _) => Err(DomainError::invalid(
                "return_rate",
                format!("is required for a {} pool", self.mode.as_str()),
            )),
            (true, _, None) => Err(DomainError::invalid(
                "return_frequency",
                format!("is required for a {} pool", self.mode.as_str()),
            )),
            (false, None, None) => Ok(()),
            (false, Some(_), _) => Err(DomainError::invalid(
                "return_rate",
                "must be empty for a direct pool: no money is pooled",
            )),
            (false, None, Some(_)) => Err(DomainError::invalid(
                "return_frequency",
                "must be empty for a direct pool: no money is pooled",
            )),
        }
    }
}

/// Refuses `date` before a member loan's last event that lent (`loans`: the members' states,
/// live or closed; a closed one's closing day, not a later recovery or mark:
/// [`LoanState::lent_until`]): a collective repayment or a settlement dated before it would
/// count the loan as it stood after it.
fn check_after_members_events(loans: &[&LoanState], date: NaiveDate) -> Result<(), DomainError> {
    // The latest such event: the date a retry would be taken from.
    match loans.iter().filter(|l| l.lent_until() > date).max_by_key(|l| l.lent_until()) {
        Some(late) => Err(refused(
            Reason::ValueDateOutOfRange,
            format!(
                "{} is before loan {}'s last event that lent ({})",
                format_date(date),
                late.terms.loan_id,
                format_date(late.lent_until())
            ),
        )
        .with(EARLIEST_DATE, format_date(late.lent_until()))),
        None => Ok(()),
    }
}

impl Pool {
    /// Plans the agreement of `terms` over `loans` (the member loans, each named once; the
    /// caller has checked that none is in another pool), `versions` the ledger's policy.
    pub fn agree(
        terms: &PoolTerms,
        loans: &[&LoanState],
        versions: &[PolicyVersion],
    ) -> Result<PoolEvent, DomainError> {
        terms.check()?;
        check_member_count(loans.len())?;
        let mut members: Vec<MemberRef> = Vec::with_capacity(loans.len());
        for loan in loans {
            let t = &loan.terms;
            if t.bank_id != terms.bank_id {
                return Err(DomainError::NotFound { what: "loan", id: t.loan_id.clone() });
            }
            if t.ledger_id != terms.ledger_id {
                return Err(refused(
                    Reason::LedgerMismatch,
                    format!("loan {} is of ledger {}", t.loan_id, t.ledger_id),
                ));
            }
            if !loan.status.is_open() || loan.is_expired_contract(terms.agreed_on) {
                // A contract never paid out by its maturity lends nothing more: closed for this
                // (its status still says contracted).
                let expired = if loan.status.is_open() {
                    format!(
                        ", its contract expired on {} with nothing paid out",
                        format_date(t.maturity_date)
                    )
                } else {
                    String::new()
                };
                return Err(refused(
                    Reason::LoanNotRepayable,
                    format!(
                        "loan {} is {}{expired}: a pool takes open loans",
                        t.loan_id,
                        loan.status.as_str()
                    ),
                )
                .with("status", loan.status.as_str()));
            }
            if terms.agreed_on < t.contract_date {
                // The latest contract of the bank's loans named: the date a retry is taken from
                // (another bank's loan, refused as missing, names none of its dates).
                let latest = loans
                    .iter()
                    .map(|l| &l.terms)
                    .filter(|other| other.bank_id == terms.bank_id)
                    .map(|other| other.contract_date)
                    .max()
                    .unwrap_or(t.contract_date);
                return Err(refused(
                    Reason::ValueDateOutOfRange,
                    format!(
                        "agreed_on {} is before loan {}'s contract ({})",
                        format_date(terms.agreed_on),
                        t.loan_id,
                        format_date(t.contract_date)
                    ),
                )
                .with(EARLIEST_DATE, format_date(latest)));
            }
            if terms.mode.pools_money() {
                let version = in_force(versions, t.contract_date).ok_or_else(|| {
                    refused(
                        Reason::PolicyNotInForce,
                        format!("no policy in force on {}", format_date(t.contract_date)),
                    )
                })?;
                if !version.params.enterprise_modes_allowed {
                    // The version that refused it, not a seeded step carrying it on.
                    let since =
                        in_force_since(versions, t.contract_date, |p| !p.enterprise_modes_allowed)
                            .unwrap_or(version.effective_date);
                    return Err(refused(
                        Reason::PoolModeNotAllowed,
                        format!(
                            "loan {} was contracted on {}, under the policy refusing the {} \
                             mode since {}: its money may not be handed to a partner",
                            t.loan_id,
                            format_date(t.contract_date),
                            terms.mode.as_str(),
                            format_date(since)
                        ),
                    )
                    .with("loan_id", &t.loan_id)
                    .with("policy_effective_date", format_date(since)));
                }
            }
            members.push(MemberRef {
                loan_id: t.loan_id.clone(),
                household_id: t.household_id.clone(),
            });
        }
        members.sort_by(|a, b| a.loan_id.cmp(&b.loan_id));
        if let Some(w) = members.windows(2).find(|w| w[0].loan_id == w[1].loan_id) {
            return Err(DomainError::invalid(
                "loan_ids",
                format!("names loan {} twice", w[0].loan_id),
            ));
        }
        Ok(PoolEvent::Agreed { terms: terms.clone(), members })
    }

    /// The pool its `events` (its agreement first, then its other events, in journal order)
    /// leave, as the writer built it (`None`: no events). Events that do not follow are
    /// refused, naming their place.
    pub fn rebuilt(events: &[PoolEvent]) -> Result<Option<Pool>, DomainError> {
        let Some((first, rest)) = events.split_first() else { return Ok(None) };
        let mut pool = Pool::agreed(first).ok_or_else(|| {
            refused(Reason::LedgerMismatch, "a pool's first event is not its agreement".into())
        })?;
        for event in rest {
            pool.apply(event)?;
        }
        Ok(Some(pool))
    }

    /// The pool an [`PoolEvent::Agreed`] starts.
    pub fn agreed(event: &PoolEvent) -> Option<Pool> {
        match event {
            PoolEvent::Agreed { terms, members } => Some(Pool {
                terms: terms.clone(),
                members: members
                    .iter()
                    .map(|m| Member {
                        loan_id: m.loan_id.clone(),
                        household_id: m.household_id.clone(),
                        transferred_fen: Fen::ZERO,
                        handed_back_fen: Fen::ZERO,
                        held_changes: Vec::new(),
                        returns_paid_fen: Fen::ZERO,
                        last_return_on: None,
                        participations: 0,
                        repaid_fen: Fen::ZERO,
                    })
                    .collect(),
                status: PoolStatus::Active,
                settled_on: None,
                repaid_fen: Fen::ZERO,
                repayments: 0,
            }),
            _ => None,
        }
    }

    /// The member of `loan_id`.
    pub fn member(&self, loan_id: &str) -> Result<&Member, DomainError> {
        self.members
            .binary_search_by(|m| m.loan_id.as_str().cmp(loan_id))
            .map(|i| &self.members[i])
            .map_err(|_| DomainError::NotFound {
                what: "member loan of the pool",
                id: loan_id.to_string(),
            })
    }

    /// Refuses a write to a settled pool, or dated before the agreement.
    fn check_open(&self, date: NaiveDate) -> Result<(), DomainError> {
        if self.status == PoolStatus::Settled {
            return Err(self.settled());
        }
        self.check_agreed(date)
    }

    /// `POOL_SETTLED`, naming the date.
    fn settled(&self) -> DomainError {
        refused(
            Reason::PoolSettled,
            format!(
                "pool {} was settled on {}",
                self.terms.pool_id,
                self.settled_on.map(format_date).unwrap_or_default()
            ),
        )
    }

    /// Refuses a date before the agreement's.
    fn check_agreed(&self, date: NaiveDate) -> Result<(), DomainError> {
        if date < self.terms.agreed_on {
            return Err(refused(
                Reason::ValueDateOutOfRange,
                format!(
                    "{} is before pool {}'s agreement ({})",
                    format_date(date),
                    self.terms.pool_id,
                    format_date(self.terms.agreed_on)
                ),
            )
            .with(EARLIEST_DATE, format_date(self.terms.agreed_on)));
        }
        Ok(())
    }

    /// Refuses a collective repayment or a settlement dated before the last change of what the
    /// partner holds of any member's money: its hand-backs would be dated before the transfers
    /// they hand back, and the returns due understated.
    fn check_after_held_changes(&self, date: NaiveDate) -> Result<(), DomainError> {
        let last = self.members.iter().filter_map(|m| m.held_changes.last()).map(|c| c.date).max();
        match last {
            Some(last) if date < last => Err(refused(
                Reason::ValueDateOutOfRange,
                format!(
                    "{} is before the last change of what pool {}'s partner holds ({})",
                    format_date(date),
                    self.terms.pool_id,
                    format_date(last)
                ),
            )
            .with(EARLIEST_DATE, format_date(last))),
            _ => Ok(()),
        }
    }

    fn check_pools_money(&self, what: &str) -> Result<(), DomainError> {
        if self.terms.mode.pools_money() {
            return Ok(());
        }
        Err(refused(
            Reason::PoolModeMismatch,
            format!(
                "pool {} is direct (户贷户用): no money is pooled, so it records no {what}",
                self.terms.pool_id
            ),
        ))
    }

    /// Plans the transfer of `amount` of `loan`'s money to the partner on `date`.
    pub fn transfer(
        &self,
        loan: &LoanState,
        date: NaiveDate,
        amount: Fen,
    ) -> Result<PoolEvent, DomainError> {
        self.check_open(date)?;
        self.check_pools_money("transfer")?;
        let loan_id = &loan.terms.loan_id;
        let member = self.member(loan_id)?;
        if !amount.is_positive() {
            return Err(DomainError::invalid("amount_fen", "must be positive"));
        }
        if !loan.status.is_live() {
            return Err(refused(
                Reason::LoanNotRepayable,
                format!("loan {loan_id} is {}: it has no money to hand over", loan.status.as_str()),
            )
            .with("status", loan.status.as_str()));
        }
        // The latest of the days that bar an earlier transfer is named, with its reason (since
        // 2026-12-08: the first barred was named, and a retry dated on it refused again for a
        // later one, the payout's day then the last change of holdings).
        let Some(paid) = loan.disbursed_on else {
            return Err(refused(
                Reason::ValueDateOutOfRange,
                format!("loan {loan_id} was not paid out by {}", format_date(date)),
            ));
        };
        let last_held = member.held_changes.last().map(|change| change.date);
        let last_event = loan.last_value_date.max(paid);
        let earliest = last_held.map_or(last_event, |held| held.max(last_event));
        if date < earliest {
            let why = if last_held.is_some_and(|held| held > last_event) {
                format!("the last change of what the partner holds of loan {loan_id}")
            } else if date < paid {
                format!("loan {loan_id}'s payout: nothing of it was paid out by then")
            } else {
                format!(
                    "loan {loan_id}'s last event: a transfer hands over what the loan had paid \
                     out by its date"
                )
            };
            return Err(refused(
                Reason::ValueDateOutOfRange,
                format!("{} is before {why} ({})", format_date(date), format_date(earliest)),
            )
            .with(EARLIEST_DATE, format_date(earliest)));
        }
        // What the household still owes of the loan, less what the partner holds of it: the
        // principal it repaid itself is no longer its to hand over (what the loan paid out
        // less what was transferred counted it, so that the partner was taken to hold, and
        // owe returns on, money the household had repaid).
        let held = member.held_fen();
        // (None left when the partner holds more than is outstanding: the household repaid
        // principal itself since it handed it over; since 2026-12-07 said as nothing left, not
        // as a negative amount.)
        let available = Fen(loan.principal_outstanding_fen.0.saturating_sub(held.0).max(0));
        if amount > available {
            return Err(refused(
                Reason::PoolTransferExceedsLoan,
                format!(
                    "loan {loan_id} has {} fen of principal outstanding, of which the partner \
                     holds {} fen: {} fen is left to hand over",
                    loan.principal_outstanding_fen.0, held.0, available.0
                ),
            )
            .with("available_fen", available.0));
        }
        Ok(PoolEvent::Transferred {
            pool_id: self.terms.pool_id.clone(),
            ledger_id: self.terms.ledger_id.clone(),
            loan_id: loan_id.clone(),
            household_id: member.household_id.clone(),
            value_date: date,
            amount_fen: amount,
        })
    }

    /// Plans a return or dividend of `amount` the partner paid the household of `loan_id` on
    /// `date`.
    pub fn pay_return(
        &self,
        loan_id: &str,
        date: NaiveDate,
        amount: Fen,
    ) -> Result<PoolEvent, DomainError> {
        // Returns owed for the time the partner held the money are paid after the settlement
        // too: the settlement's own stub falls due on its day.
        self.check_agreed(date)?;
        self.check_pools_money("return or dividend")?;
        let member = self.member(loan_id)?;
        if !amount.is_positive() {
            return Err(DomainError::invalid("amount_fen", "must be positive"));
        }
        // A return is for the time the partner held the household's money: none is owed before
        // its first transfer (counted toward the next due point, one paid earlier would hide a
        // late or missing return from the report).
        let first = member.held_changes.first().map(|c| c.date);
        if first.is_none_or(|first| date < first) {
            let refusal = refused(
                Reason::ValueDateOutOfRange,
                match first {
                    Some(first) => format!(
                        "{} is before loan {loan_id}'s first transfer to pool {}'s partner ({}): \
                         a return is for the time the partner held the money",
                        format_date(date),
                        self.terms.pool_id,
                        format_date(first)
                    ),
                    None => format!(
                        "loan {loan_id}'s household has transferred nothing to pool {}'s \
                         partner: a return is for the time the partner held the money",
                        self.terms.pool_id
                    ),
                },
            );
            return Err(refusal.with_date(EARLIEST_DATE, first));
        }
        // Every member's returns are credited to the pool's one `returns` account: its balance
        // must stay within 64 bits (since 2026-12-07; it was `INTERNAL` at the commit), and with
        // it each member's own total, none of them negative.
        let pool_returns = self
            .members
            .iter()
            .try_fold(Fen::ZERO, |sum, m| add(sum, m.returns_paid_fen, "amount_fen"))?;
        add(pool_returns, amount, "amount_fen")?;
        Ok(PoolEvent::ReturnPaid {
            pool_id: self.terms.pool_id.clone(),
            ledger_id: self.terms.ledger_id.clone(),
            loan_id: loan_id.to_string(),
            household_id: member.household_id.clone(),
            value_date: date,
            amount_fen: amount,
        })
    }

    /// Plans the record of the household of `loan_id` taking part on `date`.
    pub fn participate(
        &self,
        loan_id: &str,
        date: NaiveDate,
        kind: ParticipationKind,
        note: &str,
    ) -> Result<PoolEvent, DomainError> {
        // Recorded late, taking part while the pool was open still counts.
        match self.settled_on {
            Some(settled_on) if date > settled_on => return Err(self.settled()),
            _ => self.check_agreed(date)?,
        }
        self.member(loan_id)?;
        Ok(PoolEvent::Participated {
            pool_id: self.terms.pool_id.clone(),
            ledger_id: self.terms.ledger_id.clone(),
            loan_id: loan_id.to_string(),
            value_date: date,
            kind,
            note: note.to_string(),
        })
    }

    /// Plans a collective repayment of `amount` on `date` over the member loans (`loans`, every
    /// member's state, in any order), and gives the states of the loans it repays after it.
    pub fn plan_repayment(
        &self,
        loans: &[&LoanState],
        date: NaiveDate,
        amount: Fen,
    ) -> Result<(PoolEvent, Vec<LoanState>), DomainError> {
        self.check_open(date)?;
        self.check_after_held_changes(date)?;
        if !amount.is_positive() {
            return Err(DomainError::invalid("amount_fen", "must be positive"));
        }
        // Every member's, closed ones too: one paid off after `date` owed on it, and would be
        // left out of the split.
        check_after_members_events(loans, date)?;
        let mut owing: Vec<(&LoanState, Owing)> = Vec::new();
        for member in &self.members {
            let loan =
                loans.iter().find(|l| l.terms.loan_id == member.loan_id).ok_or_else(|| {
                    DomainError::NotFound { what: "loan", id: member.loan_id.clone() }
                })?;
            if !loan.is_live() {
                continue;
            }
            let quote = loan.quote(date).map_err(|e| about_loan(e, &member.loan_id))?;
            let owed =
                quote.total().ok_or_else(|| DomainError::Overflow { field: "owed".into() })?;
            if owed.is_positive() {
                let has_principal = quote.principal_fen.is_positive();
                owing.push((loan, Owing::new(owed, quote.accrued_interest_fen, has_principal)));
            }
        }
        let total = Fen::checked_sum(owing.iter().map(|(_, o)| o.owed))
            .ok_or_else(|| DomainError::Overflow { field: "owed".into() })?;
        if amount > total {
            return Err(refused(
                Reason::RepaymentExceedsOwed,
                format!(
                    "the payment of {} fen exceeds the {} fen pool {}'s member loans owe on {}",
                    amount.0,
                    total.0,
                    self.terms.pool_id,
                    format_date(date)
                ),
            )
            .with("owed_fen", total.0));
        }
        let each: Vec<Owing> = owing.iter().map(|(_, o)| *o).collect();
        let shares = split_payment(amount, &each).ok_or_else(|| {
            refused(
                Reason::PayoffRequired,
                format!(
                    "the payment of {} fen cannot be split over pool {}'s member loans without one repaying all its principal but not its interest: pay the {} fen they owe on {}, or enough less that each loan's part leaves it principal to repay",
                    amount.0,
                    self.terms.pool_id,
                    total.0,
                    format_date(date)
                ),
            )
            .with("payoff_fen", total.0)
        })?;
        let mut parts = Vec::new();
        let mut after = Vec::new();
        let mut handed_back = Vec::new();
        for ((loan, _), share) in owing.iter().zip(shares) {
            if !share.is_positive() {
                continue;
            }
            let loan_id = &loan.terms.loan_id;
            let (event, next) = loan
                .plan(&LoanCommand::Repay { date, amount: share, netted: Fen::ZERO })
                .map_err(|e| about_loan(e, loan_id))?;
            let member = self.member(loan_id)?;
            let principal = Fen(next.principal_repaid_fen.0 - loan.principal_repaid_fen.0);
            let back = principal.min(member.held_fen());
            if back.is_positive() {
                handed_back.push(HandBack {
                    loan_id: loan_id.clone(),
                    household_id: member.household_id.clone(),
                    amount_fen: back,
                });
            }
            parts.push(event);
            after.push(next);
        }
        let event = PoolEvent::Repaid {
            pool_id: self.terms.pool_id.clone(),
            ledger_id: self.terms.ledger_id.clone(),
            bank_id: self.terms.bank_id.clone(),
            value_date: date,
            amount_fen: amount,
            parts,
            handed_back,
        };
        Ok((event, after))
    }

    /// Plans the settlement of the pool on `date` (`loans`: every member's state): what the
    /// partner holds of each member is handed back to its household, but a written-off
    /// member's whose principal was not all recovered (since 2026-12-07), which stays on the
    /// partner's account, owed: its loan was not repaid, and nothing records that the partner
    /// gave the money back.
    pub fn settle(&self, loans: &[&LoanState], date: NaiveDate) -> Result<PoolEvent, DomainError> {
        self.settle_handing_back(loans, date, false)
    }

    /// The settlement as builds before 2026-12-07 planned it, a written-off member's holding
    /// handed back too: for verify's replay of the settlements they recorded.
    pub fn settle_as_recorded(
        &self,
        loans: &[&LoanState],
        date: NaiveDate,
    ) -> Result<PoolEvent, DomainError> {
        self.settle_handing_back(loans, date, true)
    }

    fn settle_handing_back(
        &self,
        loans: &[&LoanState],
        date: NaiveDate,
        written_off_too: bool,
    ) -> Result<PoolEvent, DomainError> {
        self.check_open(date)?;
        self.check_after_held_changes(date)?;
        let open: Vec<&str> = self
            .members
            .iter()
            .filter(|m| {
                loans
                    .iter()
                    .find(|l| l.terms.loan_id == m.loan_id)
                    // A contract never paid out by its maturity lends nothing: closed for this.
                    .is_none_or(|l| l.status.is_open() && !l.is_expired_contract(date))
            })
            .map(|m| m.loan_id.as_str())
            .collect();
        if let Some(first) = open.first() {
            return Err(refused(
                Reason::PoolMembersOpen,
                format!(
                    "{} of pool {}'s member loans are still open (loan {first} among them): a \
                     pool is settled once every member loan is closed",
                    open.len(),
                    self.terms.pool_id
                ),
            )
            .with("open_loans", open.len())
            .with("loan_id", first));
        }
        check_after_members_events(loans, date)?;
        // Written off and not recovered in full (a loan whose principal came back in full was
        // repaid after all: its holding is taken as handed back, as a repaid member's is).
        let written_off = |m: &&Member| {
            let loan = loans.iter().find(|l| l.terms.loan_id == m.loan_id);
            loan.is_some_and(|l| {
                l.status == LoanStatus::WrittenOff
                    && l.principal_not_repaid().is_some_and(Fen::is_positive)
            })
        };
        let handed_back = self
            .members
            .iter()
            .filter(|m| m.held_fen().is_positive() && (written_off_too || !written_off(m)))
            .map(|m| HandBack {
                loan_id: m.loan_id.clone(),
                household_id: m.household_id.clone(),
                amount_fen: m.held_fen(),
            })
            .collect();
        Ok(PoolEvent::Settled {
            pool_id: self.terms.pool_id.clone(),
            ledger_id: self.terms.ledger_id.clone(),
            value_date: date,
            handed_back,
        })
    }

    /// Applies `event` to the pool. Refuses what would leave it inconsistent, for verify's
    /// replay of an altered journal.
    pub fn apply(&mut self, event: &PoolEvent) -> Result<(), DomainError> {
        if event.pool_id() != self.terms.pool_id || event.ledger_id() != self.terms.ledger_id {
            return Err(refused(
                Reason::LedgerMismatch,
                format!("an event of pool {} for pool {}", event.pool_id(), self.terms.pool_id),
            ));
        }
        let index = |pool: &Pool, loan_id: &str| {
            pool.members.binary_search_by(|m| m.loan_id.as_str().cmp(loan_id)).map_err(|_| {
                DomainError::NotFound { what: "member loan of the pool", id: loan_id.to_string() }
            })
        };
        match event {
            PoolEvent::Agreed { .. } => {
                return Err(DomainError::Exists { what: "pool", id: self.terms.pool_id.clone() });
            }
            PoolEvent::Transferred { loan_id, value_date, amount_fen, .. } => {
                let i = index(self, loan_id)?;
                let m = &mut self.members[i];
                m.transferred_fen = add(m.transferred_fen, *amount_fen, "transferred")?;
                m.held_changes.push(HeldChange { date: *value_date, delta_fen: *amount_fen });
            }
            PoolEvent::ReturnPaid { loan_id, value_date, amount_fen, .. } => {
                let i = index(self, loan_id)?;
                let m = &mut self.members[i];
                m.returns_paid_fen = add(m.returns_paid_fen, *amount_fen, "returns")?;
                m.last_return_on =
                    Some(m.last_return_on.map_or(*value_date, |d| d.max(*value_date)));
            }
            PoolEvent::Participated { loan_id, .. } => {
                let i = index(self, loan_id)?;
                self.members[i].participations += 1;
            }
            PoolEvent::Repaid { value_date, amount_fen, parts, handed_back, .. } => {
                for part in parts {
                    let i = index(self, part.loan_id())?;
                    let LoanEvent::Repaid { amount_fen, .. } = part else {
                        return Err(DomainError::invalid(
                            "journal",
                            "a collective repayment's part is no repayment",
                        ));
                    };
                    let m = &mut self.members[i];
                    m.repaid_fen = add(m.repaid_fen, *amount_fen, "repaid")?;
                }
                self.hand_back(handed_back, *value_date)?;
                self.repaid_fen = add(self.repaid_fen, *amount_fen, "repaid")?;
                self.repayments += 1;
            }
            PoolEvent::Settled { value_date, handed_back, .. } => {
                self.hand_back(handed_back, *value_date)?;
                self.status = PoolStatus::Settled;
                self.settled_on = Some(*value_date);
            }
        }
        Ok(())
    }

    fn hand_back(&mut self, handed_back: &[HandBack], date: NaiveDate) -> Result<(), DomainError> {
        for back in handed_back {
            let i = self
                .members
                .binary_search_by(|m| m.loan_id.as_str().cmp(&back.loan_id))
                .map_err(|_| DomainError::NotFound {
                    what: "member loan of the pool",
                    id: back.loan_id.clone(),
                })?;
            let m = &mut self.members[i];
            if !back.amount_fen.is_positive() || back.amount_fen > m.held_fen() {
                return Err(refused(
                    Reason::PoolTransferExceedsLoan,
                    format!(
                        "{} fen handed back of loan {}, whose partner holds {} fen",
                        back.amount_fen.0,
                        back.loan_id,
                        m.held_fen().0
                    ),
                ));
            }
            m.handed_back_fen = add(m.handed_back_fen, back.amount_fen, "handed back")?;
            let delta = back.amount_fen.checked_neg().unwrap_or(Fen::ZERO);
            m.held_changes.push(HeldChange { date, delta_fen: delta });
        }
        Ok(())
    }

    /// The returns the partner owed the household of `member` by `date`: those of every due
    /// point on or before it ([`Pool::returns_schedule`]). Zero for a direct pool.
    pub fn returns_due(&self, member: &Member, date: NaiveDate) -> Fen {
        self.returns_schedule(member, date).last().map_or(Fen::ZERO, |&(_, due)| due)
    }

    /// The due points of the returns owed the household of `member`, through `date`, each with
    /// the returns due through it. A point's own return is on what the partner held day by day
    /// since the point before (from each change's date, not counting the point's own day), at
    /// the return rate over 360 days, rounded half up to the fen: the figure a partner paying
    /// each period works out. The settlement's day is the last point (its stub falls due on
    /// it). Empty for a direct pool, and before the first transfer's first point.
    pub fn returns_schedule(&self, member: &Member, date: NaiveDate) -> Vec<(NaiveDate, Fen)> {
        let (Some(rate), Some(frequency)) = (self.terms.return_rate, self.terms.return_frequency)
        else {
            return Vec::new();
        };
        let Some(first) = member.held_changes.first().map(|c| c.date) else {
            return Vec::new();
        };
        let settled = self.settled_on.filter(|s| *s <= date);
        let end = settled.unwrap_or(date);
        let mut points = Vec::new();
        let mut next = frequency.next_point(first);
        while let Some(point) = next.filter(|p| *p <= end) {
            points.push(point);
            next = frequency.next_point(point);
        }
        if let Some(s) = settled.filter(|s| *s > first && points.last() != Some(s)) {
            points.push(s);
        }
        // Σ held × days to `point`, exactly: each change counts from its date.
        let fen_days = |point: NaiveDate| -> i128 {
            member
                .held_changes
                .iter()
                .filter(|c| c.date < point)
                .map(|c| i128::from(c.delta_fen.0) * i128::from((point - c.date).num_days()))
                .sum()
        };
        let mut before = 0i128;
        let mut due = Fen::ZERO;
        points
            .into_iter()
            .map(|point| {
                let through = fen_days(point);
                let period = through - before;
                before = through;
                due = Fen(due.0.saturating_add(period_return(period, rate)));
                (point, due)
            })
            .collect()
    }

    /// Each member's standing on `as_of`, for auditors. `loans`: the members' states as they
    /// stood on `as_of` (one not contracted by then left out: reported without its loan's
    /// figures); `activity`: the pool's returns paid and participations as the journal records
    /// them ([`PoolEvent::ReturnPaid`], [`PoolEvent::Participated`]; other events and other
    /// pools' are left out), of which those dated by `as_of` count. What the partner held is
    /// its changes dated by `as_of`; the returns due are worked out to `as_of`; each due point
    /// by then whose returns were paid only after it is a late one. What the partner repaid is
    /// as this pool holds it (as it stands, or rebuilt through a seq).
    pub fn report(
        &self,
        loans: &[&LoanState],
        as_of: NaiveDate,
        activity: &[PoolEvent],
    ) -> Vec<MemberReport> {
        let mut dated: HashMap<&str, Activity> = HashMap::default();
        for event in activity.iter().filter(|e| e.pool_id() == self.terms.pool_id) {
            match event {
                PoolEvent::ReturnPaid { loan_id, value_date, amount_fen, .. }
                    if *value_date <= as_of =>
                {
                    dated.entry(loan_id).or_default().returns.push((*value_date, *amount_fen));
                }
                PoolEvent::Participated { loan_id, value_date, .. } if *value_date <= as_of => {
                    dated.entry(loan_id).or_default().participated_on.push(*value_date);
                }
                _ => {}
            }
        }
        let none = Activity::default();
        self.members
            .iter()
            .map(|m| {
                let activity = dated.get(m.loan_id.as_str()).unwrap_or(&none);
                let loan = loans.iter().find(|l| l.terms.loan_id == m.loan_id);
                let quote = loan.and_then(|l| l.quote(as_of).ok());
                let status = loan.map(|l| l.status_shown(quote.as_ref(), as_of));
                let days_overdue = quote.as_ref().map_or(0, |q| q.days_overdue);
                let held: i64 = m
                    .held_changes
                    .iter()
                    .filter(|c| c.date <= as_of)
                    .fold(0, |held, c| held.saturating_add(c.delta_fen.0));
                let held = Fen(held.max(0));
                let paid = activity.paid_by(as_of);
                let schedule = self.returns_schedule(m, as_of);
                // Short: due by a point before `as_of` and not paid (late or missing). A return
                // due on `as_of` itself is on time if paid that day, as a loan's interest is
                // overdue only the day after its settlement (since 2026-12-07: it was counted
                // short on its own day).
                let due = schedule.last().map_or(Fen::ZERO, |&(_, due)| due);
                let late_due = schedule.iter().rev().find(|(point, _)| *point < as_of);
                let late_due = late_due.map_or(Fen::ZERO, |&(_, due)| due);
                let short = Fen(late_due.0.saturating_sub(paid.0).max(0));
                let late_points = late_points(&schedule, activity, as_of);
                let mut flags = Vec::new();
                if short.is_positive() {
                    flags.push(PoolFlag::ReturnShort);
                }
                if late_points > 0 {
                    flags.push(PoolFlag::ReturnLate);
                }
                // Written off (by `as_of`) is the worst of overdue: the loan takes no quote, but
                // the partner may still hold its money.
                let written_off = loan.is_some_and(|l| l.status == LoanStatus::WrittenOff);
                if (days_overdue > 0 || written_off) && held.is_positive() {
                    flags.push(PoolFlag::OverdueWhilePartnerHolds);
                }
                if activity.paid_without_participation() {
                    flags.push(PoolFlag::ReturnsWithoutParticipation);
                }
                MemberReport {
                    loan_id: m.loan_id.clone(),
                    household_id: m.household_id.clone(),
                    loan_status: status,
                    days_overdue,
                    principal_outstanding_fen: loan
                        .map_or(Fen::ZERO, |l| l.principal_outstanding_fen),
                    held_fen: held,
                    returns_due_fen: due,
                    returns_paid_fen: paid,
                    returns_short_fen: short,
                    late_return_points: late_points,
                    last_return_on: activity.returns.iter().map(|&(date, _)| date).max(),
                    participations: u32::try_from(activity.participated_on.len())
                        .unwrap_or(u32::MAX),
                    repaid_fen: m.repaid_fen,
                    flags,
                }
            })
            .collect()
    }
}

/// The due points of `schedule` (a member's [`Pool::returns_schedule`] through `as_of`: each
/// point with the returns due through it) whose returns were paid after the point, but by
/// `as_of`: the returns paid by the point fell short of those due through it, and those paid
/// by `as_of` did not (a point still short is [`PoolFlag::ReturnShort`]'s). A point that had
/// nothing of its own due (the partner held nothing in its period) is no late return, even
/// while one before it was unpaid: that one is counted once.
fn late_points(schedule: &[(NaiveDate, Fen)], activity: &Activity, as_of: NaiveDate) -> u32 {
    let paid_now = activity.paid_by(as_of);
    let mut before = Fen::ZERO;
    let mut late = 0u32;
    for &(point, due) in schedule {
        let own = due > before;
        before = due;
        if own && activity.paid_by(point) < due && paid_now >= due {
            late = late.saturating_add(1);
        }
    }
    late
}

/// One period's return on `fen_days` (Σ held × days) at `rate` over 360 days, rounded half up
/// to the fen; none on none.
fn period_return(fen_days: i128, rate: AnnualRate) -> i64 {
    if fen_days <= 0 {
        return 0;
    }
    // At most i64::MAX fen over some 36,500 days: within a decimal's 96 bits.
    let Ok(fen_days) = Decimal::try_from_i128_with_scale(fen_days, 0) else {
        return i64::MAX;
    };
    let exact = fen_days * rate.value() / Decimal::from(AnnualRate::DAYS_PER_YEAR);
    let rounded =
        exact.round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    rounded.to_i64().unwrap_or(i64::MAX)
}

/// A member's returns paid (dated) and participations by a report's date.
#[derive(Debug, Default)]
struct Activity {
    returns: Vec<(NaiveDate, Fen)>,
    /// The participations' dates.
    participated_on: Vec<NaiveDate>,
}

impl Activity {
    fn paid_by(&self, date: NaiveDate) -> Fen {
        let paid = self.returns.iter().filter(|(d, _)| *d <= date);
        Fen(paid.fold(0i64, |sum, (_, fen)| sum.saturating_add(fen.0)))
    }

    /// Whether a return was paid with no participation recorded within a year of its payment,
    /// before or after it: the "simple dividend" policy forbids, judged return by return
    /// (since 2026-12-07: one participation, whenever, cleared every return, years apart). A
    /// year either side: a return paid late, or after the pool's settlement (which refuses
    /// later participations), is covered by the work of the year it pays for.
    fn paid_without_participation(&self) -> bool {
        self.returns.iter().any(|(paid, fen)| {
            let from = paid.checked_sub_months(chrono::Months::new(12)).unwrap_or(*paid);
            let to = paid.checked_add_months(chrono::Months::new(12)).unwrap_or(*paid);
            fen.is_positive() && !self.participated_on.iter().any(|d| (from..=to).contains(d))
        })
    }
}

/// A refusal of a member loan's own rule, naming the loan.
fn about_loan(e: DomainError, loan_id: &str) -> DomainError {
    match e {
        DomainError::Refused { reason, message, metadata } => {
            DomainError::Refused { reason, message: format!("loan {loan_id}: {message}"), metadata }
                .with("loan_id", loan_id)
        }
        other => other,
    }
}

/// What an auditor is told to look at in a member's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolFlag {
    /// The returns paid are short of those due (late or missing).
    ReturnShort,
    /// Returns paid after their due point (made up since).
    ReturnLate,
    /// The loan is overdue (or written off) while the partner holds its money.
    OverdueWhilePartnerHolds,
    /// Returns paid to a household with no participation recorded (简单分红).
    ReturnsWithoutParticipation,
}

impl PoolFlag {
    pub fn code(self) -> &'static str {
        match self {
            PoolFlag::ReturnShort => "RETURN_SHORT",
            PoolFlag::ReturnLate => "RETURN_LATE",
            PoolFlag::OverdueWhilePartnerHolds => "OVERDUE_WHILE_PARTNER_HOLDS",
            PoolFlag::ReturnsWithoutParticipation => "RETURNS_WITHOUT_PARTICIPATION",
        }
    }
}

/// A member's standing on a date ([`Pool::report`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberReport {
    pub loan_id: String,
    pub household_id: String,
    /// `None`: the loan was not found.
    pub loan_status: Option<LoanStatus>,
    pub days_overdue: i64,
    pub principal_outstanding_fen: Fen,
    pub held_fen: Fen,
    pub returns_due_fen: Fen,
    pub returns_paid_fen: Fen,
    pub returns_short_fen: Fen,
    /// Due points whose returns were paid after the point ([`PoolFlag::ReturnLate`]).
    pub late_return_points: u32,
    pub last_return_on: Option<NaiveDate>,
    pub participations: u32,
    pub repaid_fen: Fen,
    pub flags: Vec<PoolFlag>,
}

#[cfg(test)]
mod tests;
