//! Loan listings filtered on a status the date alone changes.
//!
//! The stored status of a loan is the one at its last event. A live loan (active, overdue,
//! overdue 90) passing a due date with nothing paid is overdue today though no event says so,
//! and `ListLoans` shows today's status; so a filter on a live status reads the live loans in
//! loan id order, a batch at a time, computes each one's status as listed today (on a blocking
//! thread: a quote a loan), and keeps those with the status asked ([`StatusPage`]). The other
//! statuses change only by an event and are filtered in the database.

use crate::app::error::AppError;
use crate::domain::date::BusinessDate;
use crate::domain::loan::{LoanState, LoanStatus};
use crate::store::Db;
use crate::store::read::{LoanFilter, StatusFilter};

/// Loans read at a time when listing by a live status ([`loans_by_status_on`]).
pub const STATUS_SCAN_BATCH: u32 = 1_000;
/// Loans read at most for one page listed by a live status.
pub const STATUS_SCAN_MAX: usize = 10_000;

/// What a page token starts with; the loan id after it is where the next page starts after.
pub const TOKEN_PREFIX: &str = "after:";

/// The page token after the last of `loans` (none: no token).
pub fn after(loans: &[LoanState]) -> String {
    loans.last().map(|l| token_after(&l.terms.loan_id)).unwrap_or_default()
}

fn token_after(loan_id: &str) -> String {
    format!("{TOKEN_PREFIX}{loan_id}")
}

/// The date a loan is shown as of on `today`: today, or its last event's value date when that
/// is later.
pub fn as_listed_on(today: BusinessDate, loan: &LoanState) -> BusinessDate {
    today.max(loan.last_value_date)
}

/// A page of loans filtered in the process, gathered from batches read in loan id order: it
/// ends full (with a token after its last loan unless its batch was the last and nothing else
/// in it matches: no more is read to find out, so the last page may come empty), at the end of
/// the loans (no token), or once `read_max` loans were read (a token after the last loan read;
/// the page is then shorter than asked, possibly empty).
struct StatusPage {
    loans: Vec<LoanState>,
    page_size: usize,
    read: usize,
    read_max: usize,
}

impl StatusPage {
    fn new(page_size: usize, read_max: usize) -> Self {
        StatusPage { loans: Vec::new(), page_size, read: 0, read_max }
    }

    /// Takes the next batch, each loan with whether it matches (`end`: nothing follows it).
    /// `Some(token)` when the page is done.
    fn take(&mut self, batch: Vec<(LoanState, bool)>, end: bool) -> Option<String> {
        self.read += batch.len();
        let last_read = batch.last().map(|(l, _)| token_after(&l.terms.loan_id));
        for (loan, keep) in batch {
            if !keep {
                continue;
            }
            if self.loans.len() == self.page_size {
                // Another matches: the page is full and there is more.
                return Some(after(&self.loans));
            }
            self.loans.push(loan);
        }
        if self.loans.len() == self.page_size && !end {
            // Full, and loans follow that may match.
            return Some(after(&self.loans));
        }
        if end {
            Some(String::new())
        } else if self.read >= self.read_max {
            Some(last_read.unwrap_or_default())
        } else {
            None
        }
    }
}

/// A page of the loans matching `filter` whose status as listed on `today` ([`as_listed_on`])
/// is `wanted`, a live status, and the page token after it.
pub async fn loans_by_status_on(
    db: &Db,
    mut filter: LoanFilter,
    wanted: LoanStatus,
    today: BusinessDate,
    page_size: u32,
) -> Result<(Vec<LoanState>, String), AppError> {
    filter.statuses = StatusFilter::Live;
    let mut page = StatusPage::new(page_size as usize, STATUS_SCAN_MAX);
    loop {
        let batch = db.list_loans(&filter, STATUS_SCAN_BATCH).await?;
        let end = batch.len() < STATUS_SCAN_BATCH as usize;
        filter.after_loan_id = batch.last().map(|l| l.terms.loan_id.clone());
        let judged = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|l| {
                    let keep = l.status_as_of(as_listed_on(today, &l)) == wanted;
                    (l, keep)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| AppError::Internal(format!("listing by status failed: {e}")))?;
        if let Some(token) = page.take(judged, end) {
            return Ok((page.loans, token));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StatusPage;
    use crate::domain::loan::{LoanState, LoanTerms};

    /// Loans `from..to` (ids "L000", ...), each matching when `keep` says so.
    fn batch(from: usize, to: usize, keep: fn(usize) -> bool) -> Vec<(LoanState, bool)> {
        (from..to)
            .map(|i| {
                let terms = LoanTerms {
                    loan_id: format!("L{i:03}"),
                    ..crate::bench::load::bench_terms("")
                };
                (LoanState::new(terms, 1), keep(i))
            })
            .collect()
    }

    fn ids(page: &StatusPage) -> Vec<&str> {
        page.loans.iter().map(|l| l.terms.loan_id.as_str()).collect()
    }

    #[test]
    fn a_page_ends_full_at_the_end_or_at_the_reading_limit() {
        let even = |i: usize| i.is_multiple_of(2);
        // Full, another matching after it in the same batch: a token after its last loan, in
        // the last batch too.
        for end in [false, true] {
            let mut page = StatusPage::new(2, 100);
            assert_eq!(page.take(batch(0, 10, even), end), Some("after:L002".into()));
            assert_eq!(ids(&page), ["L000", "L002"]);
        }
        // Full at the end of a batch with more to read: a token, without reading on.
        let mut page = StatusPage::new(2, 100);
        assert_eq!(page.take(batch(0, 3, even), false), Some("after:L002".into()));
        // Not full: the next batch is read.
        let mut page = StatusPage::new(3, 100);
        assert_eq!(page.take(batch(0, 3, even), false), None);
        assert_eq!(page.take(batch(3, 6, even), false), Some("after:L004".into()));
        // Full exactly at the end: no token.
        let mut page = StatusPage::new(2, 100);
        assert_eq!(page.take(batch(0, 4, even), true), Some(String::new()));
        assert_eq!(ids(&page), ["L000", "L002"]);
        // The reading limit: a short page, even an empty one, with a token after the last
        // loan read.
        let mut page = StatusPage::new(5, 6);
        assert_eq!(page.take(batch(0, 3, even), false), None);
        assert_eq!(page.take(batch(3, 6, even), false), Some("after:L005".into()));
        assert_eq!(ids(&page), ["L000", "L002", "L004"]);
        let mut page = StatusPage::new(5, 4);
        assert_eq!(page.take(batch(0, 4, |_| false), false), Some("after:L003".into()));
        assert!(ids(&page).is_empty());
        // The end of the loans comes first: no token.
        let mut page = StatusPage::new(5, 4);
        assert_eq!(page.take(batch(0, 4, |_| false), true), Some(String::new()));
    }
}
