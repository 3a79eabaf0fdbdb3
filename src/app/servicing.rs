//! Servicing queries and runs: a loan as of a past date rebuilt from the journal, and the
//! settlement run over a ledger's live loans.

use std::collections::VecDeque;

use super::auth::Principal;
use super::command::{Command, Outcome};
use super::error::{AppError, journal_broken, unpanicked};
use super::writer::{Pending, WriterHandle};
use crate::domain::date::BusinessDate;
use crate::domain::error::Reason;
use crate::domain::event::JournalEvent;
use crate::domain::loan::{LoanEvent, LoanState, remove_reversed};
use crate::store::Db;
use crate::store::read::LoanHistory;

/// Loans submitted to the writer at once by a settlement run: one full group commit (measured
/// 10% faster than pages of 1,000; the page travels as four parts, planned as one group while
/// the page before it commits), few enough that a run over a million loans holds only a few
/// pages in memory.
pub const SETTLEMENT_PAGE_LOANS: u32 = 2_000;
const _: () = assert!(SETTLEMENT_PAGE_LOANS as usize <= super::writer::GROUP_COMMANDS_MAX);

/// Pages of a settlement run with the writer at once (sent, not yet answered): one commits, one
/// is planned meanwhile, one waits to be planned as soon as the first has committed. The
/// writer holds the states of those it plans, and the run the ids of four pages at most: memory
/// stays bounded whatever the size of the ledger.
const SETTLEMENT_PAGES_IN_FLIGHT: usize = 3;

/// Failures listed in a run's answer, at most.
pub const FAILURES_LISTED_MAX: usize = 100;

/// The loan as it stood at the end of `date`, if one is given (its journal events with value
/// dates up to it replayed from the contract), as its journal transactions up to `through_seq`
/// left it, if one is given: an answer that transactions recorded since, dated back, do not
/// change (`GetLoan`'s `as_of` and `through_seq`). `None` if the loan was not contracted by
/// then.
pub async fn loan_through(
    db: &Db,
    loan_id: &str,
    date: Option<BusinessDate>,
    through_seq: Option<u64>,
) -> Result<Option<LoanState>, AppError> {
    let Some(history) = db.loan_history(loan_id).await? else { return Ok(None) };
    replay_history(loan_id, history, date, through_seq)
}

/// The seq an answer as of a seq is read through: the ledger's journal head, or the seq asked
/// for if it is before the head. Read before anything the answer is made of: the journal
/// commits in seq order, so what is read after it holds every transaction up to it.
pub async fn read_through(db: &Db, ledger_id: &str, asked: Option<u64>) -> Result<u64, AppError> {
    let head = db.head_seq(ledger_id).await?;
    Ok(asked.map_or(head, |seq| seq.min(head)))
}

/// Loans whose histories [`loans_as_of`] reads in one statement, at most.
const HISTORIES_PAGE: usize = 1_000;

/// The loans as they stood at the end of `date`, as the journal through `through_seq` had them
/// (`None`: all of it): each whose journal goes on past `date` (or past the seq) rebuilt from
/// its events dated by then (and recorded by then: their histories read together,
/// [`Db::loan_histories`]), the others as they are. A loan not contracted by `date`, or whose
/// contract was recorded after the seq, is left out; the order is not kept.
pub async fn loans_as_of(
    db: &Db,
    loans: Vec<LoanState>,
    date: BusinessDate,
    through_seq: Option<u64>,
) -> Result<Vec<LoanState>, AppError> {
    let after = move |seq: u64| through_seq.is_some_and(|through| seq > through);
    let (past, mut as_of): (Vec<_>, Vec<_>) =
        loans.into_iter().partition(|l| l.last_value_date > date || after(l.last_seq));
    if past.is_empty() {
        return Ok(as_of);
    }
    // A page at a time: a ledger's loans as of a year back are nearly all of them, more ids
    // than one statement binds (SQLite 32,766, PostgreSQL 65,535), and their histories are
    // held only a page at a time.
    // Each page's replay on a blocking thread: a ledger's loans a year back are CPU work of
    // seconds at a province's scale, which on the runtime's two threads held up every call
    // (the writer's too) meanwhile.
    for page in past.chunks(HISTORIES_PAGE) {
        let ids: Vec<&str> = page.iter().map(|l| l.terms.loan_id.as_str()).collect();
        let histories = db.loan_histories(&ids).await?;
        let replayed = tokio::task::spawn_blocking(move || {
            histories
                .into_iter()
                .filter_map(|(loan_id, history)| {
                    replay_history(&loan_id, history, Some(date), through_seq).transpose()
                })
                .collect::<Result<Vec<LoanState>, AppError>>()
        })
        .await
        .map_err(|e| AppError::Internal(format!("a replay of loans as of a date failed: {e}")))?;
        as_of.extend(replayed?);
    }
    Ok(as_of)
}

/// Replays a loan's history, read, from its contract: its events recorded through
/// `through_seq` (`None`: all), the repayments reversed by then taken out with their
/// reversals' effect ([`remove_reversed`]), up to the first dated after `date` (`None`: all).
/// Taken out first: a repayment reversed is as if never recorded, whatever the date asked,
/// and a payment recorded after the reversal may be dated before the repayment it replaces.
fn replay_history(
    loan_id: &str,
    history: LoanHistory,
    date: Option<BusinessDate>,
    through_seq: Option<u64>,
) -> Result<Option<LoanState>, AppError> {
    let events = loan_events(loan_id, history, through_seq)?;
    // A reversal, dated its repayment's day, neither ends the events dated by then (a payment
    // recorded after it may be dated earlier) nor is left out for its date (it only moves the
    // last seq): it is taken while the events before it are, as the stored loan has it.
    let by_date = |e: &LoanEvent| date.is_none_or(|date| e.value_date() <= date);
    let mut ended = false;
    replay(
        loan_id,
        events.iter().map(|(e, seq)| (e, *seq)).filter(|&(e, _)| {
            if !matches!(e, LoanEvent::Reversed { .. }) {
                ended = ended || !by_date(e);
            }
            !ended
        }),
    )
}

/// The loan its events make, from its contract (`None` if there are none).
pub fn replay<'e>(
    loan_id: &str,
    events: impl IntoIterator<Item = (&'e LoanEvent, u64)>,
) -> Result<Option<LoanState>, AppError> {
    let mut state: Option<LoanState> = None;
    for (event, seq) in events {
        match (&mut state, event) {
            (None, LoanEvent::Created { terms }) => {
                state = Some(LoanState::new(terms.clone(), seq))
            }
            // A panic (a bug, or an event altered into figures the arithmetic does not expect)
            // fails this read, or the retry's answer, not the task it runs on: the writer's.
            (Some(s), e) => {
                if let Err(e) = unpanicked("a loan's replay", || s.apply(e, seq))? {
                    tracing::warn!(loan_id, seq, error = %e, "a loan's journal does not replay");
                    let what = format!("does not replay as loan {loan_id}'s event");
                    let refused = "the loan is not rebuilt over it";
                    return Err(journal_broken(&s.terms.ledger_id, seq, &what, refused));
                }
            }
            (None, _) => {
                return Err(AppError::Internal(format!(
                    "journal of loan {loan_id} starts without a contract"
                )));
            }
        }
    }
    Ok(state)
}

/// A loan's events decoded from its history, in journal order, each with its seq, those
/// recorded through `through_seq` (`None`: all): its own events, and its parts of its pool's
/// collective repayments (a repayment of the loan like any other,
/// [`JournalEvent::loan_event_of`]), without the repayments reversed by then
/// ([`remove_reversed`]: each reversal is left, where it was recorded). The entries of other
/// kinds that name the loan (its risk fund's compensation and returns, its pool's other
/// events) are left out: they change none of its figures.
pub fn loan_events(
    loan_id: &str,
    history: LoanHistory,
    through_seq: Option<u64>,
) -> Result<Vec<(LoanEvent, u64)>, AppError> {
    let mut entries = Vec::new();
    for row in history.rows() {
        let (event, seq) = row
            .event()
            .map_err(|e| AppError::Internal(format!("journal of loan {loan_id}: {e}")))?;
        entries.push((event, seq));
    }
    Ok(loan_events_of(loan_id, entries, through_seq))
}

/// [`loan_events`] of a loan's journal entries, decoded, in journal order with their seqs.
pub fn loan_events_of<'e>(
    loan_id: &str,
    entries: impl IntoIterator<Item = (&'e JournalEvent, u64)>,
    through_seq: Option<u64>,
) -> Vec<(LoanEvent, u64)> {
    let mut events = Vec::new();
    for (event, seq) in entries {
        if through_seq.is_some_and(|through| seq > through) {
            break;
        }
        let event = match event {
            JournalEvent::Loan(event) => Some(event),
            other => other.loan_event_of(loan_id),
        };
        if let Some(event) = event {
            events.push((event.clone(), seq));
        }
    }
    remove_reversed(&mut events);
    events
}

/// Adds a page's answers to the run's summary and returns how many loans failed by a fault of
/// the service; a database that went away stops the run. A loan refused as not repayable was
/// live when the run read its page and was paid off or written off before its turn: it owes no
/// settlement, which is not a failure.
fn tally(
    summary: &mut SettlementSummary,
    ids: &[String],
    results: Vec<Result<Outcome, AppError>>,
) -> Result<u64, AppError> {
    let mut faults = 0;
    for (id, result) in ids.iter().zip(results) {
        summary.loans_examined += 1;
        match result {
            // The run asks for brief answers: a settled loan answers with a LoanRef.
            Ok(Outcome::LoanRef { settled, .. }) => {
                summary.loans_settled += 1;
                summary.settlement_points += settled.points;
                summary.interest_fen = summary.interest_fen.saturating_add(settled.interest_fen);
                summary.penalty_fen = summary.penalty_fen.saturating_add(settled.penalty_fen);
                summary.compound_fen = summary.compound_fen.saturating_add(settled.compound_fen);
            }
            Ok(_) => {}
            Err(AppError::Unavailable(m)) => return Err(AppError::Unavailable(m)),
            Err(e) => {
                // Refused the first time or again from its record (a retried run): the same.
                let refusal = e.refusal();
                if refusal.as_ref().and_then(|r| r.reason.as_deref())
                    == Some(Reason::LoanNotRepayable.code())
                {
                    summary.loans_no_longer_live += 1;
                    continue;
                }
                summary.failed += 1;
                // A fault of the service is logged; the answer says only that it happened, as
                // a call's INTERNAL status does. A refusal is listed as its caller gets it.
                let failure = match (refusal, e) {
                    (Some(refusal), _) => SettlementFailure {
                        loan_id: id.clone(),
                        code: refusal.code.name().to_string(),
                        reason: refusal.reason.unwrap_or_default(),
                        field: refusal.field.unwrap_or_default(),
                        message: refusal.message,
                    },
                    (None, e) => {
                        // (As `api::error::status` answers each.)
                        let (code, reason, message) = match e {
                            AppError::Internal(detail) => {
                                faults += 1;
                                tracing::error!(loan_id = %id, detail, "a loan of a settlement run failed");
                                ("INTERNAL", "", crate::app::error::INTERNAL_TEXT.to_string())
                            }
                            e @ AppError::RequestIdReused(_) => {
                                ("ALREADY_EXISTS", "REQUEST_ID_REUSED", e.to_string())
                            }
                            e @ (AppError::Unavailable(_) | AppError::Stale(_)) => {
                                ("UNAVAILABLE", "", e.to_string())
                            }
                            e @ AppError::HeldBack { .. } => {
                                ("UNAVAILABLE", "HELD_BACK", e.to_string())
                            }
                            e @ (AppError::Unauthenticated | AppError::TokenExpired(_)) => {
                                ("UNAUTHENTICATED", "", e.to_string())
                            }
                            // (Refusals, above.)
                            e @ (AppError::Domain(_)
                            | AppError::PermissionDenied(_)
                            | AppError::Refused(_)) => ("INTERNAL", "", e.to_string()),
                        };
                        SettlementFailure {
                            loan_id: id.clone(),
                            code: code.to_string(),
                            reason: reason.to_string(),
                            message,
                            ..SettlementFailure::default()
                        }
                    }
                };
                if summary.failures.len() < FAILURES_LISTED_MAX {
                    summary.failures.push(format!("{id}: {}", failure.message));
                    summary.failed_loans.push(failure);
                }
            }
        }
    }
    Ok(faults)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SettlementSummary {
    pub loans_examined: u64,
    pub loans_settled: u64,
    /// Live when the run read their page, settled in full or written off before their turn.
    pub loans_no_longer_live: u64,
    pub settlement_points: u64,
    pub interest_fen: i64,
    pub penalty_fen: i64,
    pub compound_fen: i64,
    pub failed: u64,
    /// The first [`FAILURES_LISTED_MAX`] failures as text, `loan_id: message`.
    pub failures: Vec<String>,
    /// The same failures, each with its code (since 2026-12-06: a summary recorded before has
    /// the text only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_loans: Vec<SettlementFailure>,
}

/// A loan a run could not settle, as its own call would have been answered: the gRPC code's
/// name, its `ErrorInfo` reason where it has one (a `FAILED_PRECONDITION`'s, an
/// `ALREADY_EXISTS`'s), an `INVALID_ARGUMENT`'s field, the message (an `INTERNAL`'s detail is
/// in the server's log; an `ErrorInfo`'s figures are in the message only).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SettlementFailure {
    pub loan_id: String,
    pub code: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
    pub message: String,
}

/// The request id of a run's settlement of one loan: `<request_id> <loan_id>`. The space cannot
/// occur in a caller's request id (printable ASCII without spaces, `api::parse::request_id`),
/// so no request of a caller's can take a run's loan's id, or the reverse.
pub fn loan_request_id(request_id: &str, loan_id: &str) -> String {
    format!("{request_id} {loan_id}")
}

/// The request id under which a finished run's summary is recorded: `<request_id> (summary)`,
/// whose space no caller's request id has and whose parentheses no loan id has
/// ([`loan_request_id`]).
pub fn summary_request_id(request_id: &str) -> String {
    format!("{request_id} (summary)")
}

/// Settles the live loans of a ledger (or one bank's) up to `date`, a page at a time through the
/// writer. The run is recorded first under its request id ([`Command::SettlementRun`]). Each
/// loan's settlement is then its own command with the request id [`loan_request_id`], and a
/// loan with nothing due posts nothing, so a repeated run posts nothing twice.
#[tracing::instrument(skip(db, writer, actor))]
pub async fn run_settlement(
    db: &Db,
    writer: &WriterHandle,
    actor: &Principal,
    request_id: &str,
    ledger_id: &str,
    bank_id: Option<&str>,
    date: BusinessDate,
) -> Result<SettlementSummary, AppError> {
    // The run's request id names this run: recorded first, so that a retry with other
    // parameters (another date, ledger or bank) is refused (ALREADY_EXISTS) before anything is
    // settled, and a retry with the same ones goes on (each loan's settlement answering as the
    // first time).
    let run = Command::SettlementRun {
        ledger_id: ledger_id.to_string(),
        bank_id: bank_id.map(str::to_string),
        date,
    };
    let mut summary = SettlementSummary::default();
    // The live loans, and those answered by an earlier attempt of this run (paid off or
    // written off since, they are no longer live, but their settlements are the run's and its
    // summary counts them: a retry answers as the first attempt would have), merged in loan id
    // order.
    let (scope, prefix) = (actor.actor(), loan_request_id(request_id, ""));
    let read_page = |after: String| {
        let (scope, prefix) = (&scope, &prefix);
        async move {
            let limit = SETTLEMENT_PAGE_LOANS;
            let (live, answered) = tokio::try_join!(
                db.live_loan_ids(ledger_id, bank_id, &after, limit),
                db.answered_loan_ids(scope, prefix, &after, limit)
            )?;
            Ok::<_, crate::store::StoreError>(merged(live, answered, limit as usize))
        }
    };
    // The first page is read while the record waits its turn at the writer (nothing is
    // queued for the loans before the record is answered).
    let (recorded, first) = tokio::join!(
        writer.submit(actor.clone(), request_id.to_string(), run),
        read_page(String::new())
    );
    recorded?;
    // A finished run's summary is its answer from then on: a retry does not run again over the
    // loans live by then (a loan paid out since, back-dated, would be settled under the old
    // run's request id, and the counts would differ).
    let summary_key = (actor.actor(), summary_request_id(request_id));
    if let Some(recorded) = recorded_summary(db, &summary_key).await? {
        return Ok(recorded);
    }
    let mut faults = 0;
    let mut page = first?;
    // Pages go to the writer without waiting for the ones before them, up to
    // [`SETTLEMENT_PAGES_IN_FLIGHT`]: one commits, one is planned while it commits, and the
    // writer finds the next one queued as soon as it starts that one's commit. The next page's
    // ids are read meanwhile. The run reads ids only: the writer uses the loans it holds (in
    // the bench's runs and most quarter-end runs, all of them) and reads the others itself
    // while the page before commits (BENCHMARKS-HISTORY.md 63: until then the run read each page's
    // rows and handed them over as hints, decoded by the writer only for loans it did not
    // hold; reading ids only was 16% less CPU a loan with the loans held, and no slower
    // with 300,000 loans, most of them not held).
    let mut in_flight: VecDeque<(Vec<String>, Pending)> = VecDeque::new();
    while let Some(last) = page.last() {
        let after = last.clone();
        let last_page = page.len() < SETTLEMENT_PAGE_LOANS as usize;
        let commands = page
            .iter()
            .map(|id| {
                let command = Command::SettleLoan { loan_id: id.clone(), date };
                (loan_request_id(request_id, id), command)
            })
            .collect();
        let ids = page;
        in_flight.push_back((ids, writer.queue_many(actor, commands, true).await));
        page = if last_page { Vec::new() } else { read_page(after).await? };
        while in_flight.len() >= SETTLEMENT_PAGES_IN_FLIGHT
            && let Some((done_ids, done)) = in_flight.pop_front()
        {
            faults += tally(&mut summary, &done_ids, done.wait().await)?;
        }
    }
    for (done_ids, done) in in_flight {
        faults += tally(&mut summary, &done_ids, done.wait().await)?;
    }
    // Recorded only when every loan was answered: a fault of the service answers nothing, and a
    // retry runs again for it (the loans answered before give their recorded answers).
    if faults == 0 {
        let record = Command::SettlementRunSummary { summary: summary.clone() };
        match writer.submit(actor.clone(), summary_key.1.clone(), record).await {
            Ok(_) => {}
            // Another attempt of the same run finished first: its summary is the answer.
            Err(AppError::RequestIdReused(_)) => {
                if let Some(recorded) = recorded_summary(db, &summary_key).await? {
                    return Ok(recorded);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(summary)
}

/// Two lists of loan ids in order merged into one, each id once, at most `limit`.
fn merged(a: Vec<String>, b: Vec<String>, limit: usize) -> Vec<String> {
    if b.is_empty() {
        return a;
    }
    let mut all: Vec<String> = a.into_iter().chain(b).collect();
    all.sort_unstable();
    all.dedup();
    all.truncate(limit);
    all
}

/// The summary recorded for a finished run under `key` ([`summary_request_id`]), if any.
async fn recorded_summary(
    db: &Db,
    key: &(String, String),
) -> Result<Option<SettlementSummary>, AppError> {
    let Some(row) = db.idempotency_read(std::slice::from_ref(key)).await?.into_iter().next() else {
        return Ok(None);
    };
    match serde_json::from_str(&row.result_json) {
        Ok(Outcome::SettlementRunSummary { summary }) => Ok(Some(summary)),
        _ => Err(AppError::Internal(format!("the summary of run {} is unreadable", key.1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::command::{JournalRef, SettledTotals};
    use crate::domain::error::DomainError;

    fn settled(interest_fen: i64) -> Result<Outcome, AppError> {
        Ok(Outcome::LoanRef {
            loan_id: "L".into(),
            entry: JournalRef { ledger_id: "450121".into(), seq: 1, hash: String::new() },
            settled: SettledTotals { points: 1, interest_fen, ..SettledTotals::default() },
            principal_outstanding_fen: None,
        })
    }

    /// A run's summary recorded before failures had their codes reads with none; one recorded
    /// with them reads back the same.
    #[test]
    fn a_summary_recorded_before_reads_without_codes() {
        let before = r#"{"loans_examined":2,"loans_settled":1,"loans_no_longer_live":0,"settlement_points":1,"interest_fen":29410,"penalty_fen":0,"compound_fen":0,"failed":1,"failures":["L2: no"]}"#;
        let read: SettlementSummary = serde_json::from_str(before).expect("a summary");
        assert_eq!((read.failures.len(), read.failed_loans.len()), (1, 0));
        let failure = SettlementFailure {
            loan_id: "L2".into(),
            code: "FAILED_PRECONDITION".into(),
            reason: "VALUE_DATE_OUT_OF_RANGE".into(),
            message: "no".into(),
            ..SettlementFailure::default()
        };
        let now = SettlementSummary { failed_loans: vec![failure], ..read };
        let text = serde_json::to_string(&now).expect("written");
        assert_eq!(serde_json::from_str::<SettlementSummary>(&text).expect("read"), now);
    }

    #[test]
    fn a_loan_closed_before_its_turn_is_not_a_failure() {
        let ids: Vec<String> = ["L1", "L2", "L3", "L4"].map(String::from).to_vec();
        let results = vec![
            settled(24_276),
            Err(DomainError::refused(Reason::LoanNotRepayable, "loan L2 is settled").into()),
            Err(DomainError::refused(Reason::ValueDateOutOfRange, "too early").into()),
            settled(100),
        ];
        let mut summary = SettlementSummary::default();
        assert_eq!(tally(&mut summary, &ids, results).unwrap(), 0);
        assert_eq!(summary.loans_examined, 4);
        assert_eq!(summary.loans_settled, 2);
        assert_eq!(summary.interest_fen, 24_376);
        assert_eq!(summary.loans_no_longer_live, 1);
        assert_eq!(summary.failed, 1);
        assert_eq!(summary.failures, vec!["L3: VALUE_DATE_OUT_OF_RANGE: too early".to_string()]);
        let l3 = &summary.failed_loans[0];
        assert_eq!(
            (l3.loan_id.as_str(), l3.code.as_str(), l3.reason.as_str()),
            ("L3", "FAILED_PRECONDITION", "VALUE_DATE_OUT_OF_RANGE")
        );
        // The same refusals given again from their records count the same.
        let again: Vec<Result<Outcome, AppError>> = vec![
            Err(AppError::Refused(
                AppError::from(DomainError::refused(Reason::LoanNotRepayable, "settled"))
                    .refusal()
                    .expect("a refusal"),
            )),
            Err(AppError::Refused(
                AppError::from(DomainError::refused(Reason::ValueDateOutOfRange, "too early"))
                    .refusal()
                    .expect("a refusal"),
            )),
        ];
        let mut replayed = SettlementSummary::default();
        tally(&mut replayed, &ids[1..3], again).unwrap();
        assert_eq!((replayed.loans_no_longer_live, replayed.failed), (1, 1));
        assert_eq!(replayed.failures, summary.failures);
        assert_eq!(replayed.failed_loans, summary.failed_loans);

        // A fault of the service is listed without its detail (which goes to the log).
        let fault = vec![Err(AppError::Internal("SQLITE_CORRUPT: page 7 of loan".into()))];
        assert_eq!(tally(&mut summary, &ids[..1], fault).unwrap(), 1, "a fault counted");
        assert_eq!(summary.failed, 2);
        assert_eq!(summary.failures[1], "L1: internal error; the detail is in the server log");
        let l1 = &summary.failed_loans[1];
        assert_eq!((l1.code.as_str(), l1.reason.as_str()), ("INTERNAL", ""));
        assert_eq!(l1.message, "internal error; the detail is in the server log");

        let gone = vec![Err(AppError::Unavailable("away".into()))];
        assert!(matches!(tally(&mut summary, &ids, gone), Err(AppError::Unavailable(_))));
    }
}
