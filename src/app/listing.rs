//! Loan listings filtered on a status the date alone changes.
//!
//! The stored status of a loan is the one at its last event. A live loan (active, overdue,
//! overdue 90) passing a due date with nothing paid is overdue today though no event says so,
//! and `ListLoans` shows today's status; so a filter on a live status reads the live loans in
//! loan id order, a batch at a time, computes each one's status as listed today (on a blocking
//! thread: a quote a loan), and keeps those with the status asked ([`StatusPage`]). The other
//! statuses change only by an event and are filtered in the database.
//!
//! Every loan listed comes with its payoff quote on the date it is shown as of ([`Listed`]):
//! the status is worked out from it, and the listing shows its figures.
//!
//! A listing as of a past day ([`loans_page_as_of`], since 2026-12-07) reads every loan of the
//! filters a batch at a time too, each rebuilt from its events dated by then when it has later
//! ones ([`crate::app::servicing::loans_as_of`], as `GetLoan`'s `as_of`), leaves out those
//! contracted after the day, and keeps those with the status asked as of the day: an
//! auditor's list of the loans overdue at a quarter-end, months later.

use crate::app::error::AppError;
use crate::domain::date::BusinessDate;
use crate::domain::loan::{LoanState, LoanStatus};
use crate::domain::servicing::Quote;
use crate::store::Db;
use crate::store::read::{LoanFilter, StatusFilter};

/// Loans read at a time when listing by a live status ([`loans_page`]).
pub const STATUS_SCAN_BATCH: u32 = 1_000;
/// Loans read at most for one page listed by a live status.
pub const STATUS_SCAN_MAX: usize = 10_000;

/// What a page token starts with; the loan id after it is where the next page starts after.
const TOKEN_PREFIX: &str = "after:";

/// The loan id a page token issued by [`loans_page`] names (`None`: not such a token).
fn after_id(token: &str) -> Option<&str> {
    token.strip_prefix(TOKEN_PREFIX).filter(|id| crate::domain::ids::check_loan_ref(id).is_ok())
}

/// The query a page is of, as its page token carries it: a digest of the caller and the
/// filters, so that a token given with another query, another ledger's or another caller's, is
/// refused rather than start that listing part-way and skip what comes before it (AIP-158).
/// A check, not a secret: the loans a caller may see are filtered again on every page.
pub fn query_key(caller: &str, filter: &LoanFilter, wanted: Option<LoanStatus>) -> String {
    use sha2::{Digest, Sha256};
    let query = format!(
        "{caller}\n{:?}\n{:?}\n{:?}\n{:?}",
        filter.ledger_id,
        filter.bank_id,
        filter.household_id,
        wanted.map(LoanStatus::as_str)
    );
    let digest = Sha256::digest(query.as_bytes());
    digest[..QUERY_KEY_BYTES].iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of [`query_key`]'s digest a token carries (in hex, twice as many characters).
const QUERY_KEY_BYTES: usize = 8;

/// The page token after `last_id` (none: the last page, no token), bound to the query `key`
/// names: for listings by id other than loans' (a claim's).
pub fn page_token_after(last_id: Option<&str>, key: &str) -> String {
    bound_token(last_id.map(token_after).unwrap_or_default(), key)
}

/// `token` (from [`loans_page`]) bound to the query `key` names; empty stays empty.
pub fn bound_token(token: String, key: &str) -> String {
    if token.is_empty() { token } else { format!("{token}@{key}") }
}

/// The loan id a page token bound to `key` ([`bound_token`]) names, or why it is refused.
pub fn token_after_id<'t>(token: &'t str, key: &str) -> Result<&'t str, &'static str> {
    let not_ours = "is not a token this service issued";
    let (page, issued_for) = token.rsplit_once('@').ok_or(not_ours)?;
    let id = after_id(page).ok_or(not_ours)?;
    if issued_for.len() != 2 * QUERY_KEY_BYTES {
        return Err(not_ours);
    }
    if issued_for != key {
        return Err("was issued for another query (other filters or another caller): \
                    start again without it");
    }
    Ok(id)
}

fn token_after(loan_id: &str) -> String {
    format!("{TOKEN_PREFIX}{loan_id}")
}

/// The page token after the last of `loans` (none: no token).
fn after(loans: &[Listed]) -> String {
    loans.last().map(|l| token_after(&l.loan.terms.loan_id)).unwrap_or_default()
}

/// The date a loan is shown as of on `today`: today, or its last event's value date when that
/// is later.
pub fn as_listed_on(today: BusinessDate, loan: &LoanState) -> BusinessDate {
    today.max(loan.last_value_date)
}

/// A page of the loans matching `filter` as they stood at the end of `date`, and, if given,
/// with the status `wanted` as of then; the page token after it (empty on the last page).
pub async fn loans_page_as_of(
    db: &Db,
    mut filter: LoanFilter,
    wanted: Option<LoanStatus>,
    date: BusinessDate,
    page_size: u32,
) -> Result<(Vec<Listed>, String), AppError> {
    filter.statuses = StatusFilter::Any;
    let mut page = StatusPage::new(page_size as usize, STATUS_SCAN_MAX);
    loop {
        let batch = db.list_loans(&filter, STATUS_SCAN_BATCH).await?;
        let end = batch.len() < STATUS_SCAN_BATCH as usize;
        filter.after_loan_id = batch.last().map(|l| l.terms.loan_id.clone());
        // (A contract of a later date is not read back: it is not listed.)
        let then: Vec<LoanState> =
            batch.iter().filter(|l| l.terms.contract_date <= date).cloned().collect();
        let rebuilt = crate::app::servicing::loans_as_of(db, then, date, None).await?;
        let mut rebuilt: crate::collections::HashMap<String, LoanState> =
            rebuilt.into_iter().map(|l| (l.terms.loan_id.clone(), l)).collect();
        // In the order read, each with whether it is listed: a loan not contracted by then is
        // not (kept, unquoted, for the page token after the last loan read).
        let judged = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|read| match rebuilt.remove(&read.terms.loan_id) {
                    Some(then) => {
                        let listed = Listed::on(date, then);
                        let keep = wanted.is_none_or(|w| listed.status() == w);
                        (listed, keep)
                    }
                    None => (Listed { loan: read, as_of: date, quote: None }, false),
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| AppError::Internal(format!("listing loans as of a day failed: {e}")))?;
        if let Some(token) = page.take(judged, end) {
            return Ok((page.loans, token));
        }
    }
}

/// A loan as listed on a day: shown as of `as_of` ([`as_listed_on`]), with its payoff quote on
/// that date (none for a loan that owes nothing).
pub struct Listed {
    pub loan: LoanState,
    pub as_of: BusinessDate,
    pub quote: Option<Quote>,
}

impl Listed {
    fn on(today: BusinessDate, loan: LoanState) -> Listed {
        let as_of = as_listed_on(today, &loan);
        let quote = loan.quote(as_of).ok();
        Listed { loan, as_of, quote }
    }

    /// The status shown.
    pub fn status(&self) -> LoanStatus {
        self.loan.status_shown(self.quote.as_ref(), self.as_of)
    }
}

/// `loans` as listed on `today`, quoted on a blocking thread.
async fn listed_on(today: BusinessDate, loans: Vec<LoanState>) -> Result<Vec<Listed>, AppError> {
    tokio::task::spawn_blocking(move || loans.into_iter().map(|l| Listed::on(today, l)).collect())
        .await
        .map_err(|e| AppError::Internal(format!("listing loans failed: {e}")))
}

/// A page of the loans matching `filter` and, if given, `wanted` as listed on `today`, and the
/// page token after it (empty on the last page).
pub async fn loans_page(
    db: &Db,
    mut filter: LoanFilter,
    wanted: Option<LoanStatus>,
    today: BusinessDate,
    page_size: u32,
) -> Result<(Vec<Listed>, String), AppError> {
    let live = match wanted {
        Some(status) if status.is_live() => status,
        _ => {
            filter.statuses = wanted.map_or(StatusFilter::Any, StatusFilter::Is);
            let mut loans = db.list_loans(&filter, page_size + 1).await?;
            let more = loans.len() > page_size as usize;
            loans.truncate(page_size as usize);
            let listed = listed_on(today, loans).await?;
            let token = if more { after(&listed) } else { String::new() };
            return Ok((listed, token));
        }
    };
    filter.statuses = StatusFilter::Live;
    let mut page = StatusPage::new(page_size as usize, STATUS_SCAN_MAX);
    loop {
        let batch = db.list_loans(&filter, STATUS_SCAN_BATCH).await?;
        let end = batch.len() < STATUS_SCAN_BATCH as usize;
        filter.after_loan_id = batch.last().map(|l| l.terms.loan_id.clone());
        let judged = listed_on(today, batch)
            .await?
            .into_iter()
            .map(|l| {
                let keep = l.status() == live;
                (l, keep)
            })
            .collect();
        if let Some(token) = page.take(judged, end) {
            return Ok((page.loans, token));
        }
    }
}

/// A page of loans filtered in the process, gathered from batches read in loan id order: it
/// ends full (with a token after its last loan unless its batch was the last and nothing else
/// in it matches: no more is read to find out, so the last page may come empty), at the end of
/// the loans (no token), or once `read_max` loans were read (a token after the last loan read;
/// the page is then shorter than asked, possibly empty).
struct StatusPage {
    loans: Vec<Listed>,
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
    fn take(&mut self, batch: Vec<(Listed, bool)>, end: bool) -> Option<String> {
        self.read += batch.len();
        let last_read = batch.last().map(|(l, _)| token_after(&l.loan.terms.loan_id));
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
        if end {
            Some(String::new())
        } else if self.loans.len() == self.page_size {
            // Full, and loans follow that may match.
            Some(after(&self.loans))
        } else if self.read >= self.read_max {
            Some(last_read.unwrap_or_default())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Listed, StatusPage};
    use crate::domain::loan::{LoanState, LoanTerms};

    /// Loans `from..to` (ids "L000", ...), each matching when `keep` says so.
    fn batch(from: usize, to: usize, keep: fn(usize) -> bool) -> Vec<(Listed, bool)> {
        (from..to)
            .map(|i| {
                let terms = LoanTerms {
                    loan_id: format!("L{i:03}"),
                    ..crate::bench::load::bench_terms("")
                };
                let loan = LoanState::new(terms, 1);
                let as_of = loan.last_value_date;
                (Listed { loan, as_of, quote: None }, keep(i))
            })
            .collect()
    }

    fn ids(page: &StatusPage) -> Vec<&str> {
        page.loans.iter().map(|l| l.loan.terms.loan_id.as_str()).collect()
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
