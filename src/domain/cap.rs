//! What a household's open programme loans count against its principal cap (DESIGN.md,
//! "Origination": at most 50,000.00 yuan; extensions and renewals link to their parent and are
//! not counted twice).
//!
//! A renewal (续贷) replaces its parent: while both are open, the two count once. Not as the
//! renewal alone, which would let a renewal of 1 fen free its parent's whole principal for
//! another loan: a loan and the open loans that renew it count as the larger of its own
//! principal and what its renewals count together ([`counted`]). So a chain (a loan renewed,
//! the renewal renewed again) counts as its largest contract, and two renewals of one loan add
//! up, each being lent in full. An extension is an event of the same loan and changes nothing
//! here.
//!
//! A chain of three open loans would so count as one while all three are lent: the writer
//! refuses a renewal of a renewal whose own parent is still open (`RENEWAL_MISMATCH`), so an
//! open chain is two loans at most when it is made. It also leaves out a contract never paid
//! out once its maturity has come ([`crate::domain::loan::LoanState::is_expired_contract`]).
//!
//! Contract principal counts (not what is outstanding): the cap is on what is lent.

use std::collections::HashMap;

use super::money::Fen;

/// An open programme loan of a household, as the cap counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapLoan<'a> {
    pub loan_id: &'a str,
    /// The loan it renews, if any (open or not: a renewal of a loan no longer open counts by
    /// itself).
    pub renews: Option<&'a str>,
    pub principal: Fen,
}

/// The principal `loans` (each open, each once) count against the cap: each loan that renews
/// no other of them counts with its open renewals as the larger of its own principal and what
/// they count together. `None`: an overflow.
pub fn counted(loans: &[CapLoan<'_>]) -> Option<Fen> {
    let index: HashMap<&str, usize> =
        loans.iter().enumerate().map(|(i, l)| (l.loan_id, i)).collect();
    let parent = |l: &CapLoan<'_>| {
        l.renews.and_then(|p| index.get(p).copied()).filter(|&p| loans[p].loan_id != l.loan_id)
    };
    let mut renewals: Vec<Vec<usize>> = vec![Vec::new(); loans.len()];
    for (i, l) in loans.iter().enumerate() {
        if let Some(p) = parent(l) {
            renewals[p].push(i);
        }
    }
    // Each tree from its root, its renewals before it (an explicit stack: no recursion on data).
    let mut count: Vec<Option<Fen>> = vec![None; loans.len()];
    let mut total = Fen::ZERO;
    for root in (0..loans.len()).filter(|&i| parent(&loans[i]).is_none()) {
        let mut stack = vec![(root, false)];
        while let Some((i, expanded)) = stack.pop() {
            if expanded {
                let renewed =
                    Fen::checked_sum(renewals[i].iter().map(|&r| count[r].unwrap_or(Fen::ZERO)))?;
                count[i] = Some(loans[i].principal.max(renewed));
            } else {
                stack.push((i, true));
                stack.extend(renewals[i].iter().map(|&r| (r, false)));
            }
        }
        total = total.checked_add(count[root].unwrap_or(Fen::ZERO))?;
    }
    // Loans no root reaches (renewals in a circle, which the writer cannot make): each by
    // itself, so that nothing counts less than it should.
    let unreached = loans.iter().zip(&count).filter(|(_, c)| c.is_none()).map(|(l, _)| l.principal);
    total.checked_add(Fen::checked_sum(unreached)?)
}

/// [`counted`] of `open` with `new` among them.
pub fn counted_with(open: &[CapLoan<'_>], new: CapLoan<'_>) -> Option<Fen> {
    let mut all = open.to_vec();
    all.push(new);
    counted(&all)
}

/// The largest principal a new loan `new` (its principal aside) may have beside `open` and stay
/// within `cap`; zero when none may. What the new loan adds never falls as its principal rises,
/// so this is found by halving the range.
pub fn room(open: &[CapLoan<'_>], new: CapLoan<'_>, cap: Fen) -> Fen {
    let fits =
        |p: i64| counted_with(open, CapLoan { principal: Fen(p), ..new }).is_some_and(|c| c <= cap);
    if !fits(0) {
        return Fen::ZERO;
    }
    // fits(low) holds, fits(high) does not (or high is past the cap, which no loan may exceed).
    let (mut low, mut high) = (0i64, cap.0.saturating_add(1));
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if fits(mid) {
            low = mid;
        } else {
            high = mid;
        }
    }
    Fen(low)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn loan<'a>(loan_id: &'a str, renews: Option<&'a str>, principal: i64) -> CapLoan<'a> {
        CapLoan { loan_id, renews, principal: Fen(principal) }
    }

    const CAP: Fen = Fen(5_000_000);

    #[test]
    fn loans_without_renewals_add_up() {
        assert_eq!(counted(&[]), Some(Fen::ZERO));
        assert_eq!(counted(&[loan("A", None, 100), loan("B", None, 250)]), Some(Fen(350)));
        // A renewal of a loan no longer open counts by itself.
        assert_eq!(counted(&[loan("R", Some("GONE"), 300)]), Some(Fen(300)));
        assert_eq!(counted(&[loan("A", None, i64::MAX), loan("B", None, 1)]), None);
    }

    #[test]
    fn a_renewal_counts_once_with_its_parent_at_the_larger() {
        let parent = loan("P", None, 5_000_000);
        assert_eq!(counted(&[parent, loan("R", Some("P"), 5_000_000)]), Some(Fen(5_000_000)));
        // A small renewal does not free its parent's principal.
        assert_eq!(counted(&[parent, loan("R", Some("P"), 1)]), Some(Fen(5_000_000)));
        assert_eq!(
            counted_with(&[parent, loan("R", Some("P"), 1)], loan("N", None, 4_999_999)),
            Some(Fen(9_999_999))
        );
        // Two renewals of one loan add up; a chain counts as its largest.
        let two = [parent, loan("R1", Some("P"), 3_000_000), loan("R2", Some("P"), 2_500_000)];
        assert_eq!(counted(&two), Some(Fen(5_500_000)));
        let chain = [
            loan("A", None, 1_000_000),
            loan("B", Some("A"), 4_000_000),
            loan("C", Some("B"), 2_000_000),
        ];
        assert_eq!(counted(&chain), Some(Fen(4_000_000)));
        // Renewals in a circle (not made by the writer) each count by themselves.
        assert_eq!(counted(&[loan("X", Some("Y"), 7), loan("Y", Some("X"), 5)]), Some(Fen(12)));
        assert_eq!(counted(&[loan("S", Some("S"), 9)]), Some(Fen(9)));
    }

    #[test]
    fn room_is_what_a_new_loan_may_lend() {
        let parent = loan("P", None, 5_000_000);
        // At the cap: nothing more, but a renewal of the parent may be as large as it.
        assert_eq!(room(&[parent], loan("N", None, 0), CAP), Fen::ZERO);
        assert_eq!(room(&[parent], loan("R", Some("P"), 0), CAP), Fen(5_000_000));
        // A first renewal of 1 fen leaves 4,999,999 for a second, nothing for a new loan.
        let renewed = [parent, loan("R1", Some("P"), 1)];
        assert_eq!(room(&renewed, loan("R2", Some("P"), 0), CAP), Fen(4_999_999));
        assert_eq!(room(&renewed, loan("N", None, 0), CAP), Fen::ZERO);
        assert_eq!(room(&[loan("A", None, 1_200_000)], loan("N", None, 0), CAP), Fen(3_800_000));
        // Over the cap already (stored before a lower cap): none.
        assert_eq!(room(&[loan("A", None, 6_000_000)], loan("R", Some("A"), 0), CAP), Fen::ZERO);
    }

    /// Up to six open loans, each renewing an earlier one (by index) or none.
    fn households() -> impl Strategy<Value = Vec<(Option<usize>, i64)>> {
        prop::collection::vec((prop::option::of(0usize..6), 0i64..=5_000_000), 0..6)
    }

    fn loans_of<'a>(spec: &[(Option<usize>, i64)], ids: &'a [String]) -> Vec<CapLoan<'a>> {
        spec.iter()
            .enumerate()
            .map(|(i, &(renews, principal))| CapLoan {
                loan_id: &ids[i],
                renews: renews.filter(|&r| r < i).map(|r| ids[r].as_str()),
                principal: Fen(principal),
            })
            .collect()
    }

    proptest! {
        /// What loans count lies between the largest of them and their sum; a new loan never
        /// lowers it and counts at least its own principal; the room fits and is the most that
        /// does.
        #[test]
        fn counting_is_bounded_monotone_and_room_is_exact(
            spec in households(),
            renews in prop::option::of(0usize..6),
            principal in 0i64..=5_000_000,
        ) {
            let ids: Vec<String> = (0..=spec.len()).map(|i| format!("L{i}")).collect();
            let open = loans_of(&spec, &ids);
            let total = counted(&open).expect("no overflow");
            let sum: i64 = open.iter().map(|l| l.principal.0).sum();
            let largest = open.iter().map(|l| l.principal.0).max().unwrap_or(0);
            prop_assert!(largest <= total.0 && total.0 <= sum);
            let renews = renews.filter(|&r| r < open.len()).map(|r| open[r].loan_id);
            let new = CapLoan { loan_id: "NEW", renews, principal: Fen(principal) };
            let with = counted_with(&open, new).expect("no overflow");
            prop_assert!(with >= total && with.0 >= principal);
            let more = counted_with(&open, CapLoan { principal: Fen(principal + 1), ..new })
                .expect("no overflow");
            prop_assert!(more >= with);
            let r = room(&open, new, CAP);
            let at = |p: i64| counted_with(&open, CapLoan { principal: Fen(p), ..new }).expect("sum");
            let (at_room, past_room, at_zero) = (at(r.0), at(r.0 + 1), at(0));
            prop_assert!(at_room <= CAP || (r == Fen::ZERO && at_zero > CAP));
            prop_assert!(r == CAP || past_room > CAP);
        }
    }
}
