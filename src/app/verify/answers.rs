//! Verify's recheck of the stored answers (`Verify(recheck_answers)`, `loanledger verify
//! --answers`): an auditor's deeper check, off by default.
//!
//! Each transaction's idempotency record keeps the answer its request is given again when
//! retried (the compact form, [`Outcome::stored`]). The append-only guards keep it as written;
//! with them dropped, an answer changed behind the service's back would be given to the retry
//! as it is: another seq, whose loan a retry then rebuilds, or another principal outstanding in
//! a batch's brief answer. Verify's default checks compare the records' keys with the journal
//! ([`super::compare`]); this one reads, for every transaction through the verified head, in seq
//! order, the record of its request (its actor and request id: the one a retry is answered
//! from), with the transaction's stored hash (which the chain checks), and checks its answer
//! against the journal as the replay rebuilds it. It runs beside the replay: for each
//! transaction, the replay hands on what it touched ([`Touched`]: each loan as the event left
//! it, what its event is of, a collective repayment's parts, the figures a registry or fund
//! answer gives again), in batches through a bounded channel, and the recheck takes them in
//! step with the answers it reads (a page at a time), so that nothing is kept for the whole
//! journal but each household's record and statuses. Its checks:
//!
//! - it is UTF-8 text (SQLite's columns take any bytes) and reads as an answer, of a kind a
//!   transaction is answered with (refusals and settlement runs' answers are stored under no
//!   seq; a loan left unchanged is not stored), and of its transaction's family of kinds (a
//!   loan's answer to a `loan.*` transaction, a pool's to a `pool.*`, and so on);
//! - the transaction it names (`entry`: ledger, seq and hash) is its record's own, and the
//!   ledger a registry or fund answer names is that transaction's;
//! - a loan's answer (`LoanRef`) names a loan its transaction changed, with what the event
//!   settled there (points, interest, penalty, compound) and the principal outstanding after it
//!   as the replay rebuilt them; a pool's (`PoolRef`) names the pool of its transaction's event,
//!   with a collective repayment's parts as the replay rebuilt them
//!   ([`RepaidPart::of_repayment`], as the writer answered them); a claim's (`SubsidyClaimRef`),
//!   a household's and a bank's name the claim, household or bank their transaction's event is
//!   of ([`subject`]), and a fund's compensation the loan of its event;
//! - a registry answer's figures are the journal's after its transaction ([`given_figures`]):
//!   a ledger's or bank's name, a policy version, an LPR entry as its event records them; a
//!   household's record and all its statuses, in the order recorded, as of its registration
//!   or status change (the recheck keeps each household's series as it goes); a fund answer's
//!   fund as its event left it, and the compensation the event changed, field by field.
//!
//! A fund answer's fields are compared as read, a field left out as its default (the service
//! leaves a default value out), but for those added after fund answers were first stored
//! ([`FUND_FIELDS_ADDED`]), not compared where left out. Not compared: the request
//! fingerprints, which need the request. Each problem names the seq and the request
//! (its scope and id); they are listed with the read models' (seq 0: the journal holds), in
//! seq order.

use super::Problems;
use crate::app::command::{JournalRef, Outcome, RepaidPart, SettledTotals};
use crate::app::error::AppError;
use crate::domain::date::format_date;
use crate::domain::event::HouseholdRecord;
use crate::domain::event::JournalEvent;
use crate::domain::household::StatusEntry;
use crate::domain::lpr::LPR_LEDGER;
use crate::domain::money::Fen;
use crate::domain::risk_fund::{Compensation, Fund};
use crate::store::Db;
use crate::store::lpr_chain::{STARTED_BY, STARTED_REQUEST};
use crate::store::read::StoredAnswer;
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

/// What a loan's answer says of it after an event, rebuilt: what the event settled and the
/// principal outstanding after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LoanAfter {
    pub settled: SettledTotals,
    pub principal_outstanding_fen: Fen,
}

/// What the replay of one transaction touched, as its answer would name it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Touched {
    pub seq: u64,
    /// Each loan its event changed, as the event left it, in the order changed.
    pub loans: Vec<(String, LoanAfter)>,
    /// What its event is of, as its answer names it ([`subject`]).
    pub of: Option<(&'static str, String)>,
    /// A collective repayment's parts, as its answer gives them.
    pub parts: Vec<RepaidPart>,
    /// The figures its answer gives again, as the journal gives them ([`Figures`]).
    pub figures: Option<Figures>,
}

/// What a registry or fund answer gives again, as the journal gives it after the answer's
/// transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Figures {
    /// A ledger's or a bank's name, a policy version, an LPR entry: its event's
    /// ([`recorded_figures`]).
    Recorded(Box<JournalEvent>),
    /// A household's record and all its statuses, in order, after its registration or a
    /// status change.
    /// (`None`: a status change of a household the journal has not registered by then.)
    Household(Option<Box<HouseholdRecord>>, Vec<StatusEntry>),
    /// The ledger's risk fund after a fund event, and the compensation the event changed
    /// (as the writer answers: the one [`Fund::apply`] gives).
    Fund(Box<Fund>, Option<Box<Compensation>>),
}

/// The figures a registry event's answer gives again from the event itself (a ledger's or a
/// bank's name, a policy version, an LPR entry); a household's are its series'
/// ([`Touching::start`]).
fn recorded_figures(event: &JournalEvent) -> Option<Figures> {
    match event {
        JournalEvent::LedgerCreated { .. }
        | JournalEvent::BankRegistered { .. }
        | JournalEvent::PolicySet { .. }
        | JournalEvent::LprSet { .. } => Some(Figures::Recorded(Box::new(event.clone()))),
        _ => None,
    }
}

/// What an event is of, as its answer names it: a claim, a pool, a household, a bank, or a
/// fund event's loan (its compensation's), with its id.
pub(super) fn subject(event: &JournalEvent) -> Option<(&'static str, &str)> {
    Some(match event {
        JournalEvent::SubsidyClaimSubmitted { claim } => ("claim", &claim.claim_id),
        JournalEvent::SubsidyClaim(event) => ("claim", event.claim_id()),
        JournalEvent::Pool(event) => ("pool", event.pool_id()),
        JournalEvent::HouseholdRegistered { household, .. } => {
            ("household", &household.household_id)
        }
        JournalEvent::HouseholdStatusSet { household_id, .. } => ("household", household_id),
        JournalEvent::BankRegistered { bank_id, .. } => ("bank", bank_id),
        JournalEvent::RiskFund(event) => ("loan", event.loan_id()?),
        _ => return None,
    })
}

/// Transactions touched a batch: the replay sends them on every [`Touching::BATCH`].
type Batch = Vec<Touched>;

/// The replay's side of the channel: what each transaction touched, sent on in batches.
#[derive(Debug)]
pub(super) struct Touching {
    now: Option<Touched>,
    batch: Batch,
    /// The loans and parts in the batch.
    items: usize,
    /// Gone once the recheck has gone (ended or failed): nothing more is sent.
    to: Option<mpsc::Sender<Batch>>,
    /// Each household registered so far, with its statuses: what its answers give again.
    households: HashMap<String, (HouseholdRecord, Vec<StatusEntry>)>,
}

impl Touching {
    /// Transactions a batch, at most.
    const BATCH: usize = 1024;
    /// Loans and parts a batch, at most (a pool's repayment has one of each a member).
    const BATCH_ITEMS: usize = 8 * 1024;

    /// A channel of batches, `in_flight` at most unread, and its replay's side.
    pub fn channel(in_flight: usize) -> (Touching, mpsc::Receiver<Batch>) {
        let (to, from) = mpsc::channel(in_flight);
        (
            Touching {
                now: None,
                batch: Vec::with_capacity(Self::BATCH),
                items: 0,
                to: Some(to),
                households: HashMap::new(),
            },
            from,
        )
    }

    /// The transaction at `seq`, of `event` (`None`: it does not decode), is replayed next.
    /// A household's registration or status change is applied to the households kept here
    /// (the replay's registry keeps rows, not series), as the registry applies it.
    pub fn start(&mut self, seq: u64, event: Option<&JournalEvent>) {
        let of = event.and_then(subject).map(|(what, id)| (what, id.to_string()));
        let figures = match event {
            // Registered twice (a journal the writer never wrote: the registry's comparison
            // reports it), the first registration stands, as the registry's row does.
            Some(JournalEvent::HouseholdRegistered { household, status }) => {
                let id = household.household_id.clone();
                let series = self
                    .households
                    .entry(id)
                    .or_insert_with(|| (household.clone(), vec![status.clone()]));
                Some(Figures::Household(Some(Box::new(series.0.clone())), series.1.clone()))
            }
            Some(JournalEvent::HouseholdStatusSet { household_id, entry }) => {
                Some(match self.households.get_mut(household_id) {
                    Some((household, statuses)) => {
                        statuses.push(entry.clone());
                        Figures::Household(Some(Box::new(household.clone())), statuses.clone())
                    }
                    None => Figures::Household(None, vec![entry.clone()]),
                })
            }
            Some(event) => recorded_figures(event),
            None => None,
        };
        self.now = Some(Touched { seq, of, figures, ..Touched::default() });
    }

    /// Its event left the ledger's fund as `fund`, and changed `compensation`.
    pub fn fund(&mut self, fund: &Fund, compensation: Option<&Compensation>) {
        if let Some(now) = &mut self.now {
            let compensation = compensation.map(|c| Box::new(c.clone()));
            now.figures = Some(Figures::Fund(Box::new(fund.clone()), compensation));
        }
    }

    /// Its event, a collective repayment, has these parts.
    pub fn parts(&mut self, parts: Vec<RepaidPart>) {
        if let Some(now) = &mut self.now {
            now.parts = parts;
        }
    }

    /// Its event left `loan_id` as `after`.
    pub fn loan(&mut self, loan_id: &str, after: LoanAfter) {
        if let Some(now) = &mut self.now {
            now.loans.push((loan_id.to_string(), after));
        }
    }

    /// The transaction is replayed: what it touched goes into the batch (a transaction that
    /// touched nothing an answer names is left out).
    pub fn end(&mut self) {
        let Some(now) = self.now.take() else { return };
        if now.loans.is_empty() && now.of.is_none() && now.figures.is_none() {
            return;
        }
        self.items += now.loans.len() + now.parts.len();
        self.batch.push(now);
        if self.batch.len() >= Self::BATCH || self.items >= Self::BATCH_ITEMS {
            self.send();
        }
    }

    /// The replay is done (or stopped): the last batch is sent and the channel closed.
    pub fn finish(&mut self) {
        self.send();
        self.to = None;
    }

    /// Sends the batch, waiting while the recheck is `in_flight` batches behind (called on the
    /// replay's own thread, outside the runtime).
    fn send(&mut self) {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(Self::BATCH));
        self.items = 0;
        if batch.is_empty() {
            return;
        }
        if let Some(to) = &self.to
            && to.blocking_send(batch).is_err()
        {
            self.to = None;
        }
    }
}

/// The recheck's side: the transactions touched, taken in seq order as the answers are.
struct InStep {
    from: mpsc::Receiver<Batch>,
    batch: std::vec::IntoIter<Touched>,
    next: Option<Touched>,
}

impl InStep {
    fn new(from: mpsc::Receiver<Batch>) -> InStep {
        InStep { from, batch: Vec::new().into_iter(), next: None }
    }

    /// What the transaction at `seq` touched (`None`: nothing an answer names, or the replay
    /// stopped before it). The seqs asked for ascend.
    async fn at(&mut self, seq: u64) -> Option<&Touched> {
        while self.next.as_ref().is_none_or(|t| t.seq < seq) {
            if let Some(t) = self.batch.next() {
                self.next = Some(t);
                continue;
            }
            match self.from.recv().await {
                Some(batch) => self.batch = batch.into_iter(),
                // The replay is done: nothing more was touched.
                None => {
                    self.next = None;
                    break;
                }
            }
        }
        self.next.as_ref().filter(|t| t.seq == seq)
    }
}

/// A page of answers being read, its task aborted should the recheck be dropped before it is
/// taken (verify's caller gone: verify's tasks are aborted, and this one with them).
struct Reading(tokio::task::JoinHandle<Result<Vec<StoredAnswer>, crate::store::StoreError>>);

impl Drop for Reading {
    fn drop(&mut self) {
        // (A task done is not affected.)
        self.0.abort();
    }
}

/// Stored answers read a statement.
const ANSWERS_PAGE: u32 = 10_000;

#[derive(Debug, Default)]
pub(super) struct Rechecked {
    /// The answers read and checked.
    pub answers: u64,
    pub problems: Problems,
}

/// Rechecks the stored answers of `ledger_id` through the head `head` gives (nothing if it
/// is not given: the read that sends it failed, and its error is reported), in step with
/// what the replay touched.
pub(super) async fn recheck(
    db: Db,
    ledger_id: String,
    head: oneshot::Receiver<i64>,
    touched: mpsc::Receiver<Batch>,
) -> Result<Rechecked, AppError> {
    let Ok(head_seq) = head.await else {
        return Ok(Rechecked::default());
    };
    let head_seq = u64::try_from(head_seq).unwrap_or_default();
    // In seq order, as read: listed after the journal's, as the read models' are, under the
    // one cap (all counted).
    let mut problems = Problems::default();
    let mut answers = 0;
    let mut touched = InStep::new(touched);
    // Each page is read whole (no statement stays open while the replay is waited for), the
    // next one while this one is checked.
    let page_after = |after: u64| {
        let (db, ledger_id) = (db.clone(), ledger_id.clone());
        Reading(tokio::spawn(async move {
            db.stored_answers(&ledger_id, after, head_seq, ANSWERS_PAGE).await
        }))
    };
    let mut next = Some(page_after(0));
    while let Some(mut reading) = next.take() {
        let failed =
            |e: tokio::task::JoinError| AppError::Internal(format!("a page of answers: {e}"));
        let page = (&mut reading.0).await.map_err(failed)??;
        // A full page may have more after it.
        if let Some(last) = page.last().filter(|_| page.len() == ANSWERS_PAGE as usize) {
            next = Some(page_after(u64::try_from(last.seq).unwrap_or_default()));
        }
        for answer in page {
            answers += 1;
            let seq = u64::try_from(answer.seq).unwrap_or_default();
            let here = touched.at(seq).await;
            let StoredAnswer { scope, request_id, .. } = &answer;
            for why in (Against { ledger_id: &ledger_id, touched: here }).check(&answer) {
                let text =
                    format!("seq {seq}: the stored answer to {scope}'s request {request_id} {why}");
                problems.add(0, text);
            }
        }
    }
    Ok(Rechecked { answers, problems })
}

/// What an answer is checked against: its ledger, and what its transaction touched.
struct Against<'a> {
    ledger_id: &'a str,
    touched: Option<&'a Touched>,
}

impl Against<'_> {
    /// How a transaction's stored answer differs from the journal, each as the end of a
    /// sentence.
    fn check(&self, stored: &StoredAnswer) -> Vec<String> {
        let StoredAnswer { seq, kind, scope, request_id, answer, hash } = stored;
        let seq = u64::try_from(*seq).unwrap_or_default();
        let json = match answer {
            Ok(json) => json.as_str(),
            Err(e) => return vec![format!("is not UTF-8 text ({e})")],
        };
        // The LPR table's chain's start, recorded at migration, answers nobody: `{}`.
        let start = (LPR_LEDGER, 1, STARTED_BY, STARTED_REQUEST);
        if (self.ledger_id, seq, scope.as_str(), request_id.as_str()) == start {
            return match json {
                "{}" => Vec::new(),
                _ => vec!["is not the chain's start's, {}".to_string()],
            };
        }
        match serde_json::from_str::<Outcome>(json) {
            Ok(answer) => self.differences(&answer, json, seq, kind, hash),
            Err(e) => vec![format!("cannot be read ({e})")],
        }
    }

    /// How `answer` (stored as `json`) for the transaction at `seq` (of kind `kind`, whose
    /// stored hash is `hash`) differs from the journal, each as the end of a sentence.
    fn differences(
        &self,
        answer: &Outcome,
        json: &str,
        seq: u64,
        kind: &str,
        hash: &str,
    ) -> Vec<String> {
        let mut why = Vec::new();
        // The answer's entry, and the family of transaction kinds (`loan` of `loan.repaid`)
        // answered with it.
        let (entry, family) = match answer {
            Outcome::Ledger { entry, .. } => (entry, "ledger"),
            Outcome::Bank { entry, .. } => (entry, "bank"),
            Outcome::Household { entry, .. } => (entry, "household"),
            Outcome::Policy { entry, .. } => (entry, "policy"),
            Outcome::Lpr { entry: Some(entry), .. } => (entry, "lpr"),
            Outcome::SubsidyClaim { entry, .. } | Outcome::SubsidyClaimRef { entry, .. } => {
                (entry, "subsidy_claim")
            }
            Outcome::RiskFund { entry, .. } => (entry, "risk_fund"),
            Outcome::Pool { entry, .. } | Outcome::PoolRef { entry, .. } => (entry, "pool"),
            Outcome::Loan { entry, .. } | Outcome::LoanRef { entry, .. } => (entry, "loan"),
            Outcome::Lpr { entry: None, .. } => {
                return vec!["is an LPR entry's answer naming no transaction".to_string()];
            }
            Outcome::SettlementRunSummary { .. }
            | Outcome::SettlementRun { .. }
            | Outcome::LoanUnchanged { .. }
            | Outcome::Refused { .. } => {
                return vec![format!("is {}, which no transaction is answered with", what(answer))];
            }
        };
        let of_its_kind = kind.split_once('.').map(|(f, _)| f) == Some(family);
        if !of_its_kind {
            why.push(format!("is a {family} answer; its transaction is {kind}"));
        }
        let JournalRef { ledger_id, seq: named, hash: named_hash } = entry;
        if (ledger_id.as_str(), *named, named_hash.as_str()) != (self.ledger_id, seq, hash) {
            why.push(format!(
                "names {ledger_id} seq {named} (hash {named_hash}), not its own transaction \
                 ({} seq {seq}, hash {hash})",
                self.ledger_id
            ));
        }
        let answered_ledger = match answer {
            Outcome::Ledger { ledger_id, .. }
            | Outcome::Bank { ledger_id, .. }
            | Outcome::Policy { ledger_id, .. } => Some(ledger_id.as_str()),
            Outcome::Household { household, .. } => Some(household.ledger_id.as_str()),
            Outcome::RiskFund { fund, .. } => Some(fund.ledger_id.as_str()),
            _ => None,
        };
        if let Some(other) = answered_ledger.filter(|l| *l != self.ledger_id) {
            why.push(format!("is of ledger {other}"));
        }
        // An answer of another kind names nothing its transaction has: said once, above.
        if !of_its_kind {
            return why;
        }
        if let Some(figures) = self.touched.and_then(|t| t.figures.as_ref()) {
            given_figures(&mut why, answer, json, figures);
        }
        match answer {
            Outcome::LoanRef { loan_id, settled, principal_outstanding_fen, .. } => {
                self.loan(&mut why, loan_id, settled, *principal_outstanding_fen);
            }
            Outcome::Loan { loan, settled, .. } => {
                let outstanding = Some(loan.principal_outstanding_fen);
                self.loan(&mut why, &loan.terms.loan_id, settled, outstanding);
            }
            Outcome::PoolRef { pool_id, parts, .. } => self.pool(&mut why, pool_id, parts),
            Outcome::Pool { pool, parts, .. } => {
                self.pool(&mut why, &pool.terms.pool_id, parts);
            }
            Outcome::SubsidyClaimRef { claim_id, .. } => self.names(&mut why, "claim", claim_id),
            Outcome::SubsidyClaim { claim, .. } => {
                self.names(&mut why, "claim", &claim.claim_id);
            }
            Outcome::Household { household, .. } => {
                self.names(&mut why, "household", &household.household_id);
            }
            Outcome::Bank { bank_id, .. } => self.names(&mut why, "bank", bank_id),
            // (Its compensation, where it gives one: the one of its event's loan.)
            Outcome::RiskFund { compensation: Some(compensation), .. } => {
                self.names(&mut why, "loan", &compensation.loan_id);
            }
            _ => {}
        }
        why
    }

    /// An answer naming `what` `id` checked against what its transaction is of.
    fn names(&self, why: &mut Vec<String>, what: &'static str, id: &str) {
        let own = self.touched.and_then(|t| t.of.as_ref()).filter(|(of, _)| *of == what);
        let own = own.map(|(_, own)| own.as_str());
        if own != Some(id) {
            let of = match own {
                Some(own) => format!("is of {what} {own}"),
                None => format!("is of no {what}"),
            };
            why.push(format!("names {what} {id}; its transaction {of}"));
        }
    }

    /// A pool's answer checked against its transaction's pool, and its parts against the
    /// parts the replay rebuilt (which loans, in order, each one's amount, principal and
    /// principal outstanding after it).
    fn pool(&self, why: &mut Vec<String>, pool_id: &str, parts: &[RepaidPart]) {
        self.names(why, "pool", pool_id);
        let rebuilt = self.touched.map(|t| t.parts.as_slice()).unwrap_or_default();
        if parts != rebuilt {
            why.push(format!(
                "gives its parts as {}; the journal gives {}",
                described(parts),
                described(rebuilt)
            ));
        }
    }

    /// The loan `loan_id` as the answer's transaction left it (`None`: it did not change it).
    fn after(&self, loan_id: &str) -> Option<&LoanAfter> {
        let loans = self.touched.map(|t| t.loans.as_slice()).unwrap_or_default();
        loans.iter().find(|(id, _)| id == loan_id).map(|(_, after)| after)
    }

    /// A loan's answer checked against the loan as its transaction left it.
    fn loan(
        &self,
        why: &mut Vec<String>,
        loan_id: &str,
        settled: &SettledTotals,
        outstanding: Option<Fen>,
    ) {
        let Some(after) = self.after(loan_id) else {
            why.push(format!("names loan {loan_id}, which its transaction does not change"));
            return;
        };
        if *settled != after.settled {
            why.push(format!(
                "says the event settled {} on loan {loan_id}; the journal gives {}",
                totals(settled),
                totals(&after.settled)
            ));
        }
        // Absent from answers stored before it was recorded: the loan rebuilt gives it then.
        if let Some(outstanding) = outstanding
            && outstanding != after.principal_outstanding_fen
        {
            why.push(format!(
                "gives loan {loan_id} {} fen of principal outstanding; the journal gives {}",
                outstanding.0, after.principal_outstanding_fen.0
            ));
        }
    }
}

/// A registry or fund answer's figures against the journal's after its transaction: what a
/// ledger's, bank's, policy's or LPR entry's event records, a household's record and its
/// statuses, the fund and the compensation the event changed.
fn given_figures(why: &mut Vec<String>, answer: &Outcome, json: &str, figures: &Figures) {
    let mut differs = |what: &str, given: String, recorded: String| {
        if given != recorded {
            why.push(format!("gives {what} {given}; the journal gives {recorded}"));
        }
    };
    let event = match figures {
        Figures::Recorded(event) => event,
        Figures::Household(recorded, series) => {
            if let Outcome::Household { household, statuses, .. } = answer {
                match recorded {
                    // (Another household's id is named above, in its own words.)
                    Some(recorded) if household.household_id == recorded.household_id => {
                        differs("the household", json_of(household), json_of(recorded));
                    }
                    Some(_) => {}
                    None => differs(
                        "household",
                        household.household_id.clone(),
                        "none registered by then".to_string(),
                    ),
                }
                differs("the statuses", json_of(statuses), json_of(series));
            }
            return;
        }
        Figures::Fund(rebuilt, changed) => {
            if let Outcome::RiskFund { fund, compensation, .. } = answer {
                fund_differs(why, json, fund, compensation.as_deref(), rebuilt, changed.as_deref());
            }
            return;
        }
    };
    match (answer, event.as_ref()) {
        (Outcome::Ledger { name, .. }, JournalEvent::LedgerCreated { name: recorded, .. })
        | (Outcome::Bank { name, .. }, JournalEvent::BankRegistered { name: recorded, .. }) => {
            differs("the name", format!("{name:?}"), format!("{recorded:?}"));
        }
        (Outcome::Policy { version, .. }, JournalEvent::PolicySet { version: recorded, .. }) => {
            differs("the policy version", json_of(version), json_of(recorded));
        }
        (Outcome::Lpr { effective_from, tenor, rate, .. }, JournalEvent::LprSet { entry }) => {
            let text =
                |date, tenor: &crate::domain::lpr::TenorBucket, rate: &dyn std::fmt::Display| {
                    format!("{} {} at {rate}", format_date(date), tenor.as_str())
                };
            let given = text(*effective_from, tenor, rate);
            differs("the LPR entry", given, text(entry.effective_from, &entry.bucket, &entry.rate));
        }
        _ => {}
    }
}

/// The fund's fields added after fund answers were first stored (6a66a8c, 2026-12-05):
/// `pending_fen` in 41a18e8, after claims had become two steps, and `last_inflow_on` in
/// 4379d4e. An answer that lacks one may be older than it, and it is not compared then (a
/// pending claim's own `pending` flag is).
const FUND_FIELDS_ADDED: [&str; 2] = ["pending_fen", "last_inflow_on"];

/// A fund answer (stored as `json`) against the fund its event left and the compensation it
/// changed, field by field ([`fields_differ`]).
fn fund_differs(
    why: &mut Vec<String>,
    json: &str,
    fund: &Fund,
    compensation: Option<&Compensation>,
    rebuilt: &Fund,
    changed: Option<&Compensation>,
) {
    // Field by field only where they differ (the stored JSON read again for the fields added).
    if fund != rebuilt {
        let stored: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        let added = (stored.get("fund"), FUND_FIELDS_ADDED.as_slice());
        fields_differ(why, "the fund's", fund, rebuilt, added);
    }
    match (compensation, changed) {
        (Some(given), Some(changed)) if given != changed => {
            fields_differ(why, "the compensation's", given, changed, (None, &[]));
        }
        (Some(_), Some(_)) => {}
        (None, Some(changed)) => {
            why.push(format!("gives no compensation; the journal gives loan {}'s", changed.loan_id))
        }
        // (One its event changed none of is named above, as of no loan or another.)
        (Some(_), None) | (None, None) => {}
    }
}

/// Each field of `given` against `rebuilt`'s, as read (a field left out reads as its default,
/// on both sides), named for a problem as `whose` field; but a field of `added` (fields added
/// later) that the stored answer (`added.0`, an object) lacks.
fn fields_differ<T: serde::Serialize>(
    why: &mut Vec<String>,
    whose: &str,
    given: &T,
    rebuilt: &T,
    added: (Option<&serde_json::Value>, &[&str]),
) {
    let as_object = |value: &T| match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(object)) => Some(object),
        _ => None,
    };
    let (Some(given), Some(rebuilt)) = (as_object(given), as_object(rebuilt)) else {
        return;
    };
    let (stored, added) = added;
    let lacks = |field: &str| stored.is_none_or(|stored| stored.get(field).is_none());
    let shown = |value: Option<&serde_json::Value>| match value {
        Some(value) => value.to_string(),
        None => "none".to_string(),
    };
    let mut fields: Vec<&String> = given.keys().chain(rebuilt.keys()).collect();
    fields.sort_unstable();
    fields.dedup();
    for field in fields {
        if added.contains(&field.as_str()) && lacks(field) {
            continue;
        }
        let (given, rebuilt) = (given.get(field), rebuilt.get(field));
        if given != rebuilt {
            why.push(format!(
                "gives {whose} {field} {}; the journal gives {}",
                shown(given),
                shown(rebuilt)
            ));
        }
    }
}

/// A value as its JSON, named for a problem.
fn json_of<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("({e})"))
}

/// A collective repayment's parts, named for a problem.
fn described(parts: &[RepaidPart]) -> String {
    if parts.is_empty() {
        return "none".to_string();
    }
    let part = |p: &RepaidPart| {
        format!(
            "loan {} {} fen (principal {} fen, {} fen outstanding after it)",
            p.loan_id, p.amount_fen.0, p.principal_fen.0, p.principal_outstanding_fen.0
        )
    };
    parts.iter().map(part).collect::<Vec<_>>().join("; ")
}

fn totals(t: &SettledTotals) -> String {
    format!(
        "{} point(s), interest {} fen, penalty {} fen, compound {} fen",
        t.points, t.interest_fen, t.penalty_fen, t.compound_fen
    )
}

/// What an answer no transaction has is, named for a problem.
fn what(answer: &Outcome) -> &'static str {
    match answer {
        Outcome::SettlementRunSummary { .. } => "a settlement run's summary",
        Outcome::SettlementRun { .. } => "a settlement run's record",
        Outcome::LoanUnchanged { .. } => "a loan left unchanged",
        Outcome::Refused { .. } => "a refusal",
        _ => "an answer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(seq: u64) -> LoanAfter {
        let principal_outstanding_fen = Fen(i64::try_from(seq).expect("small"));
        LoanAfter { settled: SettledTotals::default(), principal_outstanding_fen }
    }

    /// The replay's transactions, a loan touched every third, handed on in batches through a
    /// channel of one: the recheck finds each transaction's by its seq, skipping what it does
    /// not ask for, and none past the replay's end.
    #[tokio::test]
    async fn the_recheck_takes_what_was_touched_in_step() {
        let (mut touching, from) = Touching::channel(1);
        let replay = tokio::task::spawn_blocking(move || {
            let bank = JournalEvent::BankRegistered {
                bank_id: "B1".into(),
                ledger_id: "L".into(),
                name: "A bank".into(),
            };
            for seq in 1..=3_000 {
                touching.start(seq, (seq == 2_500).then_some(&bank));
                if seq % 3 == 0 {
                    touching.loan(&format!("L{seq}"), after(seq));
                }
                touching.end();
            }
            touching.finish();
        });
        let mut in_step = InStep::new(from);
        assert_eq!(in_step.at(1).await, None, "nothing touched");
        let three = Touched { seq: 3, loans: vec![("L3".into(), after(3))], ..Touched::default() };
        assert_eq!(in_step.at(3).await, Some(&three));
        assert_eq!(in_step.at(3).await, Some(&three), "asked again");
        let of = in_step.at(2_500).await.and_then(|t| t.of.clone());
        assert_eq!(of, Some(("bank", "B1".to_string())));
        assert_eq!(in_step.at(2_999).await, None);
        assert_eq!(in_step.at(3_000).await.map(|t| t.loans.len()), Some(1));
        assert_eq!(in_step.at(3_001).await, None, "past the end");
        replay.await.expect("the replay ends");
    }

    /// Every transaction touching a loan, five batches' worth through a channel of one (the
    /// replay waiting on the recheck): each seq is found across the batches' bounds.
    #[tokio::test]
    async fn seqs_are_found_across_batches() {
        let (mut touching, from) = Touching::channel(1);
        let last = 5 * Touching::BATCH as u64;
        let replay = tokio::task::spawn_blocking(move || {
            for seq in 1..=last {
                touching.start(seq, None);
                touching.loan("L1", after(seq));
                touching.end();
            }
            touching.finish();
        });
        let mut in_step = InStep::new(from);
        for seq in [1, 1_023, 1_024, 1_025, 2_048, 2_049, last] {
            let found = in_step.at(seq).await.map(|t| (t.seq, t.loans[0].1.clone()));
            assert_eq!(found, Some((seq, after(seq))));
        }
        replay.await.expect("the replay ends");
    }

    /// A household registered twice (a journal the writer never wrote) keeps its first
    /// registration's series, as the registry's row does; a status of a household never
    /// registered is reported against its answer, which names it.
    #[tokio::test]
    async fn a_households_series_is_its_first_registrations() {
        use crate::domain::household::HouseholdStatus;
        let record = |id: &str, name: &str| HouseholdRecord {
            household_id: id.into(),
            ledger_id: "L".into(),
            head_name: name.into(),
            head_id_number: "450121198005170007".into(),
            township: String::new(),
            village: String::new(),
        };
        let status = |status, date: &str| StatusEntry {
            status,
            effective_date: date.parse().expect("a date"),
            reason: String::new(),
        };
        let poor = status(HouseholdStatus::RegisteredPoor, "2016-01-01");
        let exited = status(HouseholdStatus::Exited, "2021-01-01");
        let (mut touching, mut from) = Touching::channel(4);
        let registered =
            |household, status| JournalEvent::HouseholdRegistered { household, status };
        let events = [
            registered(record("H1", "Wei"), poor.clone()),
            registered(record("H1", "Forged"), exited.clone()),
            JournalEvent::HouseholdStatusSet { household_id: "H1".into(), entry: exited.clone() },
            JournalEvent::HouseholdStatusSet { household_id: "H9".into(), entry: exited.clone() },
        ];
        let replay = tokio::task::spawn_blocking(move || {
            for (seq, event) in (1..).zip(&events) {
                touching.start(seq, Some(event));
                touching.end();
            }
            touching.finish();
        });
        let batch = from.recv().await.expect("a batch");
        replay.await.expect("the replay ends");
        let figures: Vec<Option<Figures>> = batch.into_iter().map(|t| t.figures).collect();
        let wei = Some(Box::new(record("H1", "Wei")));
        assert_eq!(figures[1], Some(Figures::Household(wei.clone(), vec![poor.clone()])));
        let series = vec![poor.clone(), exited.clone()];
        assert_eq!(figures[2], Some(Figures::Household(wei, series)));
        assert_eq!(figures[3], Some(Figures::Household(None, vec![exited.clone()])));
        // The unregistered household's answer, as a writer never gave it: reported.
        let entry = JournalRef { ledger_id: "L".into(), seq: 4, hash: String::new() };
        let answer = Outcome::Household {
            household: record("H9", "Nobody"),
            statuses: vec![exited.clone()],
            entry,
        };
        let mut why = Vec::new();
        let json = serde_json::to_string(&answer).expect("its JSON");
        given_figures(&mut why, &answer, &json, figures[3].as_ref().expect("figures"));
        assert_eq!(why, ["gives household H9; the journal gives none registered by then"]);
    }

    /// A page read that the recheck, dropped, never takes is aborted, not left to run.
    #[tokio::test]
    async fn a_page_read_dropped_is_aborted() {
        let (held, released) = oneshot::channel::<()>();
        let reading = Reading(tokio::spawn(async move {
            let _held = held;
            std::future::pending().await
        }));
        drop(reading);
        // The task's future, dropped on its abort, releases what it held (a guard against a
        // hang, not a measure of time).
        let released = tokio::time::timeout(std::time::Duration::from_secs(30), released).await;
        assert!(matches!(released, Ok(Err(_))), "{released:?}");
    }

    /// A pool's repayment of many members fills a batch by its loans and parts, not by its
    /// transactions.
    #[tokio::test]
    async fn a_batch_is_bounded_by_what_it_holds() {
        let (mut touching, mut from) = Touching::channel(4);
        let replay = tokio::task::spawn_blocking(move || {
            for seq in 1..=3 {
                touching.start(seq, None);
                for member in 0..Touching::BATCH_ITEMS / 2 {
                    touching.loan(&format!("L{member}"), after(seq));
                }
                touching.end();
            }
            touching.finish();
        });
        let mut sizes = Vec::new();
        while let Some(batch) = from.recv().await {
            sizes.push(batch.len());
        }
        replay.await.expect("the replay ends");
        assert_eq!(sizes, [2, 1]);
    }

    /// A recheck gone (failed, or done with fewer answers) does not hold the replay up, also
    /// when it goes while the replay waits on a full channel.
    #[tokio::test]
    async fn the_replay_goes_on_without_the_recheck() {
        for read_first in [false, true] {
            let (mut touching, from) = Touching::channel(1);
            let replay = tokio::task::spawn_blocking(move || {
                for seq in 1..=10 * Touching::BATCH as u64 {
                    touching.start(seq, None);
                    touching.loan("L1", after(seq));
                    touching.end();
                }
                touching.finish();
            });
            let mut in_step = InStep::new(from);
            if read_first {
                assert!(in_step.at(1).await.is_some());
            }
            // Let the replay fill the channel and wait on it.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            drop(in_step);
            replay.await.expect("the replay ends");
        }
    }
}
