//! The single writer: every change goes through one task, which groups the commands waiting at
//! that moment into one database transaction (group commit) and answers each caller.
//!
//! For each command of a group, in arrival order: check the request id (a retry gets the first
//! answer; another command under the same id is refused), load the state it needs (the group's
//! own changes first, then the database), let the pure domain rules check it and plan the event
//! and postings, then stage the journal transaction with its sequence number and chained hash.
//! The request ids of a group of servicing commands are checked by the idempotency table's key
//! as the rows are written rather than looked up first ([`Lookup`]).
//! A refused command posts nothing and does not affect the others; its refusal is recorded
//! under its request id, as any answer. At the end the staged rows
//! are written with a few multi-row statements and the transaction commits; only then is any
//! caller answered. If the database fails the group, each command is retried alone, so that one
//! command that trips the database does not fail its neighbours.
//!
//! The writes and the commit run on a task of their own ([`InFlight`]); meanwhile the writer
//! plans the next group from what arrives ([`Writer::pipeline`]), a pipeline one group deep:
//!
//! - Only parts of several servicing commands (batch parts, settlement pages; see
//!   [`PLAN_AHEAD_PART_MIN`]) may join. Their loans come from the committing group's staged
//!   rows or the cache, else through the readers' pool (the committing group changes no loan
//!   outside its rows).
//!   They need no statement before their own commit, and are executed against a
//!   [`WriteTx::Detached`], which fails any statement.
//! - A planned group closes once it holds a part's worth of commands and the last part of a
//!   caller's submission ([`PART_COMMANDS_MAX`]).
//! - Their request ids are read through the readers' pool, which sees every group committed
//!   before the one in flight; a request id of the group in flight is not taken (the command
//!   waits for the commit and is then answered from the database).
//! - The loan states and chain heads are the committing group's: its heads join the cache at
//!   once (forgotten should the commit fail), its changed loans are read from its staged rows
//!   until it has landed.
//! - Nobody is answered before their own group has committed, and groups commit in order.
//!   Should a commit fail, the group planned on top of it is thrown away and its commands run
//!   again after the failed group's, as an ordinary group.
//!
//! The chain heads are cached in memory: the writer is the only writer of the database. A
//! second process writing the same ledger would collide on the journal's primary key and fail its
//! group rather than fork the chain.
//!
//! Its parts: [`queue`], how commands reach the writer and how their answers go back; this
//! module, the groups, their pipeline and commits, and each command's staging (sequence number,
//! hash, idempotency record); [`plan`], each command checked against the domain rules and
//! planned; [`rules`], the registry rules over a group's view of the loans.

use std::borrow::Cow;
use std::time::Duration;

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::JoinHandle;

use super::command::{Command, JournalRef, Outcome, SettledTotals};
use super::error::AppError;
use super::servicing::loan_through;
use crate::collections::{HashMap, HashSet};
use crate::domain::date::{BusinessDate, format_date};
use crate::domain::error::DomainError;
use crate::domain::event::JournalEvent;
use crate::domain::household::StatusEntry;
use crate::domain::loan::LoanState;
use crate::domain::lpr::LprEntry;
use crate::domain::policy::PolicyVersion;
use crate::ledger::hash::{GENESIS, Hash, TxnContent, from_hex, to_hex};
use crate::ledger::posting::{Postings, pack};
use crate::store::rows::{BankRow, HouseholdRow, HouseholdView, JournalRow};
use crate::store::write::{Staged, StagedTxn, StoredAnswer, WriteTx, add_deltas};
use crate::store::{Db, StoreError};

mod fund;
mod plan;
mod pool;
mod queue;
mod reversal;
mod rules;

use queue::{Answers, Queue, Submission, held_back, key_set, keys_of};
pub use queue::{Envelope, Pending, RequestKey, WriterHandle};
use rules::{latest_contract_date, paid_out_dated_back};

/// Commands waiting for the writer or in its hands, at most. More makes callers wait
/// (backpressure) rather than grow memory without bound; 16,384 is about a second of peak load.
pub const QUEUE_DEPTH_MAX: usize = 16_384;

/// Commands in one group commit, at most: large enough to amortise the commit (fsync) over a
/// bank's daily file, small enough that one group's transaction stays well under a second.
pub const GROUP_COMMANDS_MAX: usize = 2_000;

/// A submission of many commands (a batch, a settlement page) is cut into parts of at most this
/// many, and a part is never split across groups. A group formed while nothing commits takes at
/// most this many too, and the parts behind it are planned while it commits
/// ([`Writer::pipeline`]), into groups of up to [`GROUP_COMMANDS_MAX`]: so a batch of 1,000 from
/// one client starts committing after 500 commands are planned instead of 1,000, and the other
/// 500 are planned meanwhile. Measured against whole batches in one group (BENCHMARKS-HISTORY.md, change
/// 29): batches of 1,000 from one client 10–19% faster; parts of 250 gained less (a commit of
/// fewer rows costs more per row).
///
/// A planned group closes once it holds this many commands and the last part of a caller's
/// submission (31): without that, two clients' batches met in one group, both callers were
/// answered at once and sent their next batches at once, and the group that held them committed
/// with nothing planned beside it (two clients 20–35% slower). Closed there, one client's batch is
/// planned while the other's commits.
pub const PART_COMMANDS_MAX: usize = 500;

/// Submissions of fewer commands than this (single requests) are not planned while a group
/// commits: they wait for the commit and form the next group then. Measured under 64 clients of
/// single requests, planning them ahead made the groups smaller (about 25 commands against 31:
/// a group closes when the previous commit ends rather than after the next group's lookup) at
/// nearly the same commit cost, and singles 8% slower on SQLite, no faster on PostgreSQL
/// (BENCHMARKS-HISTORY.md, change 27). Batch parts and settlement pages gain from it.
pub const PLAN_AHEAD_PART_MIN: usize = 2;

/// Starts the writer task. It stops when every [`WriterHandle`] is dropped or one is closed
/// ([`WriterHandle::close`]), after answering all commands already queued.
///
/// It runs on the shared runtime. A thread of its own (a single-threaded runtime) was tried: no
/// faster under 64 clients once a group made two hand-offs to SQLite's thread, and half as fast
/// for commands that read one row at a time (registry commands), since that thread parked
/// between every two statements where the shared runtime's workers were still awake.
///
/// `business_utc_offset` gives the business date of a transaction recorded now: the value date
/// of records that have none of their own (a ledger created, a bank registered).
pub fn spawn(db: Db, business_utc_offset: chrono::FixedOffset) -> (WriterHandle, JoinHandle<()>) {
    let (handle, rx) = queue::channel();
    let writer = Writer {
        db,
        heads: HashMap::default(),
        loans: HashMap::default(),
        business_utc_offset,
        disposal: Disposal::start(),
        exposures: Default::default(),
    };
    (handle, tokio::spawn(writer.run(rx)))
}

/// The attempts of a group failing for a retryable reason ([`Writer::try_group`]); a group's
/// first attempt in the writer's loop comes before them.
pub const GROUP_ATTEMPTS: u64 = 3;

struct Writer {
    db: Db,
    /// Committed chain heads: ledger -> (seq, hash).
    heads: HashMap<String, (u64, Hash)>,
    /// Committed loan states, so that a busy loan is not read back for every group. The writer
    /// is the only writer, so what it committed is what the database holds.
    loans: HashMap<String, LoanState>,
    business_utc_offset: chrono::FixedOffset,
    disposal: Disposal,
    /// The exposures of ledgers with a risk fund that contracts have needed
    /// ([`fund::ExposureCache`]): behind a lock only because planning borrows the writer
    /// shared; the writer's task alone takes it.
    exposures: std::sync::Mutex<fund::ExposureCache>,
}

/// What a landed group leaves behind once its callers are answered and its loans cached: its
/// commands, its journal rows and its request-id keys, tens of thousands of small allocations
/// for a large group.
struct Leftovers {
    group: Vec<Envelope>,
    _staged: Staged,
    _keys: HashSet<RequestKey>,
}

/// Groups of at least this many commands leave their [`Leftovers`] to the disposal thread;
/// smaller ones (single requests) are freed in place, where waking another thread would cost
/// more than their frees.
const DISPOSE_AWAY_MIN: usize = 256;

/// A thread that frees large groups' [`Leftovers`], off the writer's path from one group's
/// planning to the next: in a settlement run, freeing a page of 2,000 commands and their rows
/// took about a millisecond of the writer's time between two commits (BENCHMARKS-HISTORY.md, 77).
struct Disposal(Option<std::sync::mpsc::SyncSender<Leftovers>>);

impl Disposal {
    /// Starts the thread; without it (it could not be started), leftovers are freed in place.
    fn start() -> Disposal {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Leftovers>(2);
        let thread = std::thread::Builder::new()
            .name("writer-disposal".into())
            .spawn(move || rx.into_iter().for_each(drop));
        Disposal(thread.ok().map(|_| tx))
    }

    /// Frees `leftovers` on the disposal thread if it takes them now, else in place.
    fn dispose(&self, leftovers: Leftovers) {
        if leftovers.group.len() >= DISPOSE_AWAY_MIN
            && let Some(tx) = &self.0
        {
            // Full or gone: the leftovers come back in the error and are freed here.
            let _ = tx.try_send(leftovers);
        }
    }
}

/// Loan states the writer keeps, at most; past this the cache starts again empty. At about 2 KB
/// a state, 100,000 loans (a busy county many times over) stay well under a quarter of a GiB.
pub const LOAN_CACHE_MAX: usize = 100_000;

/// The state of one group in progress.
#[derive(Default)]
struct Group {
    /// Loans held back for the rest of their call, (the call, the loan), with why (as
    /// [`Call`](queue::Call)): by a command of it this plan refused as sent, unrecorded (its request id
    /// reused), and, for a group planned while another commits, by that group's answers
    /// ([`Group::hold_as`]: they reach the [`Call`](queue::Call) only once that group has landed, after this
    /// one was planned). Kept with the plan, so that a plan thrown away (planned again, or each
    /// command alone) forgets them; the [`Call`](queue::Call) learns them once the answers are given
    /// ([`answer`]).
    held_in_call: HashMap<(usize, String), bool>,
    heads: HashMap<String, (u64, Hash)>,
    loans: HashMap<String, LoanState>,
    /// Answers by (scope, request id): read from the database (stored form, JSON) or given in
    /// this group (by position: uncommitted rows cannot rebuild them).
    idempotency: HashMap<RequestKey, (String, Answer)>,
    /// Loans the group changed (their states are in `loans` until they are staged).
    changed: std::collections::BTreeSet<String>,
    /// Loans the group looked up (in its transaction, or through the readers' pool when planned
    /// ahead) and did not find: their commands are refused without another statement, unless
    /// the group itself creates them (its own states come first).
    missing: HashSet<String>,
    /// Registry rows read for the group's commands ([`Registry`]).
    registry: Registry,
    /// The households that the group's contracts, registrations and status changes name, read
    /// at its start with their status series (`None`: not registered then), two statements for
    /// all where each command read its own. What the group registers or records of them is
    /// kept here (its rows are staged, and written at its commit), so its later commands see it.
    /// The database does not hold those rows until then, so a household is read from here
    /// only ([`Writer::prefetch`] names each command's; one it did not is a fault that fails
    /// the group rather than a read that would miss what the group did to it).
    households: HashMap<String, Option<HouseholdView>>,
    /// The households each identity number of the group's registrations' heads and contracts'
    /// borrowers heads, by (ledger, identity number), in household id order: read at the
    /// group's start, with the group's own registrations added as they are planned, so that a
    /// second registration of one head in a ledger is refused within a group as across groups
    /// (registrations and contracts are never planned ahead of a commit:
    /// [`Writer::may_speculate`]). More than one only for a person registered twice before the
    /// rule, who may borrow for either.
    headed: HashMap<(String, String), Vec<String>>,
    /// The open programme loans of the borrowers that the group's contracts and first
    /// disbursements of expired contracts name, with those closed after the earliest of their
    /// contract and value dates (open on that date: the borrower rule counts them, as the cap
    /// does, and so does such a disbursement), by identity number, as stored at its start (the group's
    /// own loans are put on top:
    /// [`borrower_loans`](rules::borrower_loans)); with [`Group::headed`], which also holds the households those
    /// borrowers head, what a contract's borrower rule reads.
    borrowers: HashMap<String, Vec<LoanState>>,
    /// The open loans of the households that the group's contracts and first disbursements of
    /// expired contracts name, as stored at its start, with those closed after the earliest of
    /// their contract and value dates (open on that date: a contract counts them, and so does
    /// such a disbursement); the group's own loans are written only at its commit, so a read
    /// later in the transaction would find the same rows (a contract puts the group's changes
    /// on top).
    open_loans: HashMap<String, Vec<LoanState>>,
    staged: Staged,
    /// What the group's contracts read of their ledgers' risk funds ([`fund::FundLimits`]).
    funds: fund::FundLimits,
    recorded_at_us: i64,
    /// The business date at `recorded_at_us`.
    recorded_on: BusinessDate,
}

/// Registry rows that many commands of a group read, read from the database once per group: a
/// group of 1,000 contracts read their bank, the ledger's policy versions and the LPR table
/// 1,000 times each, a statement each (a round trip on PostgreSQL, a hand-off to sqlx's thread
/// on SQLite). Ledgers and banks are only ever added, so one known stays known; a ledger's
/// policy versions and the LPR table are dropped from here when the group writes to them, so
/// that its next command reads them again with the group's own row. Kept for one group only:
/// a group that fails is rolled back and its commands run again in new groups. Like the chain
/// heads and the loan cache, this relies on the writer being the database's only writer (see
/// the module's doc): a row another process committed in the middle of a group is seen from the
/// next group on.
#[derive(Default)]
struct Registry {
    ledgers: HashSet<String>,
    banks: HashMap<String, BankRow>,
    policies: HashMap<String, Arc<Vec<PolicyVersion>>>,
    lpr: Option<Arc<Vec<LprEntry>>>,
}

impl Registry {
    async fn ledger_exists(
        &mut self,
        tx: &mut WriteTx,
        ledger_id: &str,
    ) -> Result<bool, StoreError> {
        if self.ledgers.contains(ledger_id) {
            return Ok(true);
        }
        let exists = tx.ledger_exists(ledger_id).await?;
        if exists {
            self.ledgers.insert(ledger_id.to_string());
        }
        Ok(exists)
    }

    async fn bank(
        &mut self,
        tx: &mut WriteTx,
        bank_id: &str,
    ) -> Result<Option<BankRow>, StoreError> {
        if let Some(bank) = self.banks.get(bank_id) {
            return Ok(Some(bank.clone()));
        }
        let bank = tx.bank(bank_id).await?;
        if let Some(row) = &bank {
            self.banks.insert(bank_id.to_string(), row.clone());
        }
        Ok(bank)
    }

    async fn policies(
        &mut self,
        tx: &mut WriteTx,
        ledger_id: &str,
    ) -> Result<Arc<Vec<PolicyVersion>>, StoreError> {
        if let Some(versions) = self.policies.get(ledger_id) {
            return Ok(versions.clone());
        }
        let versions = Arc::new(tx.policies(ledger_id).await?);
        self.policies.insert(ledger_id.to_string(), versions.clone());
        Ok(versions)
    }

    async fn lpr(&mut self, tx: &mut WriteTx) -> Result<Arc<Vec<LprEntry>>, StoreError> {
        if let Some(lpr) = &self.lpr {
            return Ok(lpr.clone());
        }
        let lpr = Arc::new(tx.lpr().await?);
        self.lpr = Some(lpr.clone());
        Ok(lpr)
    }
}

impl Group {
    /// An empty group, its transactions recorded now, on the business date at `offset`.
    fn new(offset: chrono::FixedOffset) -> Group {
        let now = chrono::Utc::now();
        Group {
            recorded_at_us: now.timestamp_micros(),
            recorded_on: crate::domain::date::business_date(now, offset),
            ..Group::default()
        }
    }

    /// Answers stored by earlier groups under the group's request ids.
    fn remember_answers(&mut self, rows: Vec<crate::store::rows::IdempotencyKeyRow>) {
        for row in rows {
            self.idempotency.insert(
                (row.scope, row.request_id),
                (row.fingerprint, Answer::Stored(row.result_json)),
            );
        }
    }

    /// Takes a loan's new state and answers with it (a copy), or `brief`ly without it.
    fn changed_loan(
        &mut self,
        after: LoanState,
        entry: &JournalRef,
        settled: SettledTotals,
        brief: bool,
    ) -> Outcome {
        let loan_id = after.terms.loan_id.clone();
        self.changed.insert(loan_id.clone());
        let outcome = if brief {
            Outcome::loan_ref(&after, entry.clone(), settled)
        } else {
            Outcome::Loan { loan: Box::new(after.clone()), entry: entry.clone(), settled }
        };
        self.loans.insert(loan_id, after);
        outcome
    }

    /// Holds back, for this plan, the loans that the answers `results` of `group` (a group
    /// committing while this one is planned) hold back for the rest of their calls, as
    /// [`answer`] will tell the calls once that group lands: a part of a batch planned while
    /// the part before it commits is held back by what that part refused as sent.
    fn hold_as(&mut self, group: &[Envelope], results: &[Result<Outcome, AppError>]) {
        for (env, result) in group.iter().zip(results) {
            if let (Some(refused), Some(key)) = (Envelope::holds_with(result), env.call_loan()) {
                self.held_in_call.entry(key).or_insert(refused);
            }
        }
    }

    /// Notes the loans of `ids` that a lookup did not find (see [`Group::missing`]).
    fn note_missing<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            if !self.loans.contains_key(id) {
                self.missing.insert(id.to_string());
            }
        }
    }

    /// Moves (not copies) the changed loans into what is written; after the commit every loan
    /// the group holds goes back to the writer's cache.
    fn stage_loans(&mut self) {
        for id in std::mem::take(&mut self.changed) {
            if let Some(loan) = self.loans.remove(&id) {
                self.staged.loans.insert(id, loan);
            }
        }
    }
}

#[derive(Clone)]
enum Answer {
    Stored(String),
    /// The answer of the group's command at this position.
    Given(usize),
}

/// What `execute` gives back: a new answer, or the answer of an earlier command of the group
/// (a retry inside the same group), so that outcomes are not copied for the rare duplicate.
// Returned by value and moved straight into the group's answers: boxing the large variant would
// cost an allocation per command to save a copy.
#[allow(clippy::large_enum_variant)]
enum Answered {
    New(Outcome),
    SameAs(usize),
    /// This command alone failed, on nothing of the group's transaction (a read through the
    /// readers' pool to answer it again): its caller gets the error, the group goes on.
    Failed(AppError),
}

/// Records a command's refusal under its request id ([`crate::app::error::Refusal`]): staged
/// to be written with the group, no journal transaction, and kept as the group's answer for the
/// id. A request id used for another command answers no command of its own and is not recorded.
fn record_refusal(
    g: &mut Group,
    env: &Envelope,
    refusal: &AppError,
    index: usize,
) -> Result<(), AppError> {
    let Some(refusal) = refusal.refusal() else {
        return Ok(());
    };
    let fingerprint = env.command.fingerprint();
    let result_json = serde_json::to_string(&Outcome::Refused { refusal })
        .map_err(|e| AppError::Internal(format!("a refusal's record: {e}")))?;
    g.idempotency.insert(env.key().clone(), (fingerprint.clone(), Answer::Given(index)));
    let (scope, request_id) = (env.actor_name().to_string(), env.request_id().to_string());
    g.staged.answers.push((scope, request_id, StoredAnswer { fingerprint, result_json }));
    Ok(())
}

/// What a command changes besides the journal: applied after its transaction is staged.
enum Effect {
    Ledger {
        ledger_id: String,
        name: String,
    },
    Bank(BankRow),
    Household(HouseholdRow, StatusEntry),
    HouseholdStatus {
        household_id: String,
        entry: StatusEntry,
    },
    Policy {
        ledger_id: String,
        version: crate::domain::policy::PolicyVersion,
        /// Its place among its date's versions: 1 for one over a seeded step, else 0.
        ordinal: i32,
    },
    Lpr(crate::domain::lpr::LprEntry),
    /// A new loan (its `Created` event carries the terms).
    NewLoan(Box<crate::domain::loan::LoanTerms>),
    /// The state of an existing loan after the event.
    Loan(Box<LoanState>, SettledTotals),
    /// Nothing to record (a settlement with no point due).
    Unchanged(Box<LoanState>),
    /// A subsidy claim submitted.
    Claim(Box<crate::domain::subsidy_claim::Claim>),
    /// A claim after a step, the loan-periods the step released, and the seq of the claim's
    /// submission.
    ClaimStep(
        Box<crate::domain::subsidy_claim::Claim>,
        Vec<(String, crate::domain::date::BusinessDate)>,
        u64,
    ),
    /// A ledger's risk fund after an event (`opened`: its first), the compensation the event
    /// made or changed, and the loan a compensation marks ([`Servicing::compensated_on`]: its
    /// state otherwise, and its last seq, as they were).
    ///
    /// [`Servicing::compensated_on`]: crate::domain::servicing::Servicing::compensated_on
    Fund {
        fund: Box<crate::domain::risk_fund::Fund>,
        opened: bool,
        compensation: Option<Box<crate::domain::risk_fund::Compensation>>,
        compensated: Option<Box<LoanState>>,
    },
    /// A pool after an event (`created`: its agreement), and the member loans a collective
    /// repayment changed (their last seq set to the event's when applied), and those it only
    /// marked with its day (`Servicing::pool_repaid_on`; their last seq their own).
    Pool {
        pool: Box<crate::domain::pool::Pool>,
        created: bool,
        loans: Vec<LoanState>,
        marked: Vec<LoanState>,
        /// Each loan's part of a collective repayment, for its caller.
        parts: Vec<crate::app::command::RepaidPart>,
    },
}

/// A group planned in its transaction, its rows staged, not yet committed.
struct Prepared {
    tx: WriteTx,
    g: Group,
    results: Vec<Result<Outcome, AppError>>,
}

/// When a group's request ids are checked against the stored ones.
///
/// Looking them up first is a statement before any planning: on SQLite a hand-off to the
/// connection's thread carrying the group's `BEGIN IMMEDIATE`, on PostgreSQL a round trip, on
/// the writer's serial path either way, for an answer that is nearly always "new". So a group
/// of servicing commands (each names an existing loan; its idempotency row is staged with its
/// journal transaction) is planned as if every request were new, and the idempotency table's
/// primary key checks the ids when the rows are written:
///
/// - a retry whose command is planned again as a posting collides with its stored row: the
///   statement fails ([`StoreError::RequestSeen`]), nothing is written, and the group is
///   planned again with [`Lookup::First`];
/// - a retry whose command now changes nothing (a settlement with nothing left to settle)
///   would write no row to collide with, and one refused (again, or now that its loan moved
///   on) would collide only at the commit, with its refusal's row: so before a group planned at
///   commit is committed, the request ids of those commands are looked up, and any one found
///   has the group planned again with [`Lookup::First`] (in the same transaction, since
///   nothing was written).
///
/// Measured (BENCHMARKS-HISTORY.md, change 37), single repayments from 64 clients, medians of seven
/// alternating pairs: 9% faster on SQLite, 24% on PostgreSQL (p99 12.4 against 16.0 ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lookup {
    /// Looked up before planning (one statement for the group): a retry is answered from its
    /// stored record, another command under a stored id refused.
    First,
    /// Checked by the key when the rows are written, and looked up for the answers that store
    /// nothing (above).
    AtCommit,
}

impl Lookup {
    /// `AtCommit` only for a group of servicing commands ([`Command::loan_id`]): any other
    /// command (registry rows, LPR entries, new loans, fund, pool and claim commands, even those
    /// naming a loan) has its request ids looked up first.
    fn for_group(group: &[Envelope]) -> Lookup {
        if group.iter().all(|env| env.command.loan_id().is_some()) {
            Lookup::AtCommit
        } else {
            Lookup::First
        }
    }
}

/// A group from a first submission and whatever else waits, up to [`PART_COMMANDS_MAX`]
/// commands (a part is never split): its commands, their answer channels, and the submission
/// that did not fit.
fn form_group(
    first: Submission,
    rx: &mut Queue,
) -> (Vec<Envelope>, Vec<Reply>, Option<Submission>) {
    let mut commands = first.jobs.len();
    let mut parts = vec![first];
    let mut carried = None;
    while commands < PART_COMMANDS_MAX {
        match rx.try_recv() {
            Ok(s) if commands + s.jobs.len() > PART_COMMANDS_MAX => {
                carried = Some(s);
                break;
            }
            Ok(s) => {
                commands += s.jobs.len();
                parts.push(s);
            }
            Err(_) => break,
        }
    }
    let mut group = Vec::with_capacity(commands);
    let mut replies = Vec::with_capacity(parts.len());
    add_parts(parts, &mut group, &mut replies);
    (group, replies, carried)
}

/// Adds parts to a group: their commands to its commands, their answer channels to its replies.
fn add_parts(parts: Vec<Submission>, group: &mut Vec<Envelope>, replies: &mut Vec<Reply>) {
    for part in parts {
        replies.push((part.jobs.len(), part.reply, part._permit));
        group.extend(part.jobs);
    }
}

struct Planned {
    ledger_id: String,
    event: JournalEvent,
    postings: Postings,
    effect: Effect,
}

/// Answer channels of a group's parts: how many commands each has, where its answers go, and
/// its share of the queue's permits.
type Reply = (usize, oneshot::Sender<Answers>, OwnedSemaphorePermit);

/// A group whose rows are being written and committed by a task of its own while the writer
/// plans the next group (see [`Writer::pipeline`]). Nobody has been answered yet.
struct InFlight {
    commit: JoinHandle<Result<(), crate::store::StoreError>>,
    /// What it writes: its changed loans are where the next group's commands start from.
    staged: Arc<Staged>,
    group: Vec<Envelope>,
    results: Vec<Result<Outcome, AppError>>,
    replies: Vec<Reply>,
    /// Its (scope, request id) keys: a command of the next group under one of them waits for
    /// the commit and is then answered from the database.
    keys: HashSet<RequestKey>,
}

/// A group planned while the group before it commits.
#[derive(Default)]
struct Speculation {
    g: Group,
    group: Vec<Envelope>,
    results: Vec<Result<Outcome, AppError>>,
    replies: Vec<Reply>,
    /// It cannot be planned ahead after all (a read through the pool failed, a command needed
    /// a statement): its commands run again once the group in flight is done, as an ordinary
    /// group.
    abandoned: bool,
    /// Its request-id keys, once it takes no more parts ([`Speculation::seal`]).
    keys: Option<HashSet<RequestKey>>,
}

impl Speculation {
    /// Readies a planned group that takes no more parts for its commit (its changed loans
    /// staged, its request-id keys gathered): called as the writer starts waiting for the
    /// group before it to commit, so that this is done while that one commits rather than
    /// between the two commits; else (the group before landed while this one still took parts)
    /// when its commit starts ([`Writer::start_planned`]). Nothing is added to it afterwards.
    fn seal(&mut self) {
        if self.keys.is_none() {
            self.g.stage_loans();
            self.keys = Some(key_set(&self.group));
        }
    }
}

/// The group in flight finished committing (or its task failed).
type Committed = Result<Result<(), StoreError>, tokio::task::JoinError>;

/// What the writer waits for while a group commits.
enum Next {
    Committed(Committed),
    Submitted(Option<Submission>),
}

/// Logs that a group is planned again because one of its request ids was stored already (a
/// retry that raced its first attempt): found by the key at the commit (`error`, the
/// database's refusal) or by the lookup while planning.
fn replanned(error: Option<&crate::store::RequestSeen>) {
    tracing::info!(
        error = error.map(tracing::field::display),
        "a request id was stored already: group planned again"
    );
}

/// Sends each part of `group` its answers, `results`, in order; a command left unanswered holds
/// its loan back for the rest of its call ([`Call`](queue::Call)).
fn answer(group: &[Envelope], replies: Vec<Reply>, results: Vec<Result<Outcome, AppError>>) {
    for (env, result) in group.iter().zip(&results) {
        env.note(result);
    }
    let mut results = results.into_iter();
    for (count, reply, permit) in replies {
        // The caller may have gone away (cancelled request); the write stands.
        let _ = reply.send(results.by_ref().take(count).collect());
        drop(permit);
    }
}

impl Writer {
    /// The writer's loop: forms a group from what waits, plans it and hands its commit to a
    /// task; while that commits, plans the next group from what arrives (see
    /// [`Writer::pipeline`]).
    async fn run(mut self, mut rx: Queue) {
        tracing::info!("writer started");
        let mut carried: Option<Submission> = None;
        let mut inflight: Option<InFlight> = None;
        loop {
            let first = match carried.take() {
                Some(s) => s,
                None => {
                    let next = match inflight.as_mut() {
                        None => Next::Submitted(rx.recv().await),
                        Some(f) => tokio::select! {
                            biased;
                            done = &mut f.commit => Next::Committed(done),
                            s = rx.recv() => Next::Submitted(s),
                        },
                    };
                    match next {
                        Next::Committed(done) => {
                            if let Some(f) = inflight.take() {
                                self.finish(f, done, None).await;
                            }
                            continue;
                        }
                        Next::Submitted(Some(s)) => s,
                        Next::Submitted(None) => break,
                    }
                }
            };
            if let Some(f) = inflight.take() {
                let (next, rest, closed) = self.pipeline(&mut rx, first, f).await;
                inflight = next;
                carried = rest;
                if closed && carried.is_none() {
                    break;
                }
                continue;
            }
            let (group, replies, rest) = form_group(first, &mut rx);
            carried = rest;
            match self.prepare(&group, Lookup::for_group(&group)).await {
                Ok(p) => {
                    let keys = key_set(&group);
                    inflight = Some(self.start(p, group, replies, keys));
                }
                Err(e) => {
                    let results = self.recover(&group, e).await;
                    answer(&group, replies, results);
                    self.db.restart_wal_if_due().await;
                }
            }
        }
        if let Some(mut f) = inflight.take() {
            let done = (&mut f.commit).await;
            self.finish(f, done, None).await;
        }
        self.db.let_go_writer_claim().await;
        tracing::info!("writer stopped: queue closed and drained");
    }

    /// While `f` commits, plans a group of what arrives meanwhile, against the states and
    /// chain heads `f` leaves and the request ids it holds. Only parts of several servicing
    /// commands join it ([`Writer::may_speculate`]; they need no statement until their own
    /// commit); the first submission that cannot join ends it and is given back, and a part that
    /// ends a caller's submission closes it once it holds [`PART_COMMANDS_MAX`]. When `f` has
    /// committed, the planned group's commit starts and then `f`'s callers are answered (in the
    /// other order when the WAL is due for a restart, which needs the writer's connection between
    /// two commits). Should `f` fail, the planned group is thrown away and its commands run again
    /// after `f`'s, as an ordinary group.
    ///
    /// Returns the group now in flight, the submission given back, and whether the queue
    /// closed.
    async fn pipeline(
        &mut self,
        rx: &mut Queue,
        first: Submission,
        mut f: InFlight,
    ) -> (Option<InFlight>, Option<Submission>, bool) {
        let mut spec =
            Speculation { g: Group::new(self.business_utc_offset), ..Speculation::default() };
        let mut next = Some(first);
        let mut carried = None;
        let mut closed = false;
        // Whether the planned group takes no more parts.
        let mut full = false;
        let done = loop {
            if let Some(s) = next.take() {
                let mut parts = Vec::new();
                let mut commands = spec.group.len();
                let mut candidate = Some(s);
                while let Some(s) = candidate.take() {
                    if s.jobs.len() < PLAN_AHEAD_PART_MIN
                        || commands + s.jobs.len() > GROUP_COMMANDS_MAX
                        || !s.jobs.iter().all(|env| self.may_speculate(env, &f, &spec.g))
                    {
                        carried = Some(s);
                        break;
                    }
                    commands += s.jobs.len();
                    // A group that answers a caller and holds a part's worth of commands
                    // closes: what waits behind it is planned while it commits.
                    full = s.ends_call && commands >= PART_COMMANDS_MAX;
                    parts.push(s);
                    if full {
                        break;
                    }
                    candidate = rx.try_recv().ok();
                }
                if !parts.is_empty() {
                    self.plan_ahead(&mut spec, parts, &f).await;
                }
            }
            if carried.is_some() || closed || full || spec.abandoned {
                if !spec.abandoned {
                    spec.seal();
                }
                break (&mut f.commit).await;
            }
            let waited = tokio::select! {
                biased;
                done = &mut f.commit => Next::Committed(done),
                s = rx.recv() => Next::Submitted(s),
            };
            match waited {
                Next::Committed(done) => break done,
                Next::Submitted(Some(s)) => next = Some(s),
                Next::Submitted(None) => closed = true,
            }
        };
        // `f` landed and a group was planned on it: that group's commit starts first and `f`'s
        // callers are answered while it runs, off the path from one commit to the next. Not
        // when the WAL is to be restarted: that needs the writer's connection between two
        // commits, so `f` is finished first as below.
        if matches!(done, Ok(Ok(())))
            && !spec.abandoned
            && !spec.group.is_empty()
            && !self.db.wal_restart_wanted()
        {
            // On failure, tried again below once `f`'s callers are answered.
            if let Some(tx) = self.begin_planned().await {
                let next = self.start_planned(spec, tx);
                self.landed(f, Some(&next.staged));
                return (Some(next), carried, closed);
            }
        }
        // `f`'s states of the loans the planned group changes again must not go into the cache:
        // they are older than the planned group's (a later group failing on a stored request id
        // runs again on the cache). Should the planned group not start after all, those loans
        // are read again.
        let newer = if spec.abandoned {
            None
        } else {
            spec.seal();
            Some(&spec.g.staged)
        };
        let committed = self.finish(f, done, newer).await;
        if spec.group.is_empty() {
            return (None, carried, closed);
        }
        if committed
            && !spec.abandoned
            && let Some(tx) = self.begin_planned().await
        {
            return (Some(self.start_planned(spec, tx)), carried, closed);
        }
        // Planned on states that did not land (or not planned at all): run as an ordinary group.
        let results = self.run_group(&spec.group, Lookup::for_group(&spec.group)).await;
        answer(&spec.group, spec.replies, results);
        self.db.restart_wal_if_due().await;
        (None, carried, closed)
    }

    /// Whether a command may be planned while the group `f` commits: a servicing command under a
    /// request id `f` does not hold. A loan the writer holds (in this group, `f`'s rows or its
    /// cache) must be of a ledger whose chain head it knows; any other loan is read by
    /// [`Writer::plan_ahead`] (and a chain head it does not know ends the planning when its
    /// command runs).
    fn may_speculate(&self, env: &Envelope, f: &InFlight, g: &Group) -> bool {
        let Some(loan_id) = env.command.loan_id() else {
            return false;
        };
        // A reversal reads the loan's history, which the group in flight may still add to.
        if matches!(env.command, Command::ReverseRepayment { .. }) {
            return false;
        }
        if f.keys.contains(env.key()) {
            return false;
        }
        let held = g
            .loans
            .get(loan_id)
            .or_else(|| f.staged.loans.get(loan_id))
            .or_else(|| self.loans.get(loan_id));
        held.is_none_or(|loan| {
            let ledger_id = &loan.terms.ledger_id;
            g.heads.contains_key(ledger_id) || self.heads.contains_key(ledger_id)
        })
    }

    /// Plans parts that [`Writer::may_speculate`] accepted into the group planned ahead, every
    /// command executed without a connection. Their request ids are read through the readers'
    /// pool. Their loans come from `f`'s staged states or the cache, else through the readers'
    /// pool. `f` does not change a loan outside its staged rows, so for those what is committed
    /// is what counts.
    async fn plan_ahead(&mut self, spec: &mut Speculation, parts: Vec<Submission>, f: &InFlight) {
        let from = spec.group.len();
        add_parts(parts, &mut spec.group, &mut spec.replies);
        if spec.abandoned {
            return;
        }
        if from == 0 {
            spec.g.hold_as(&f.group, &f.results);
        }
        match self.db.idempotency_read(&keys_of(&spec.group[from..])).await {
            Ok(rows) => spec.g.remember_answers(rows),
            Err(e) => {
                tracing::warn!(error = %e, "request-id lookup failed while a group committed");
                spec.abandoned = true;
                return;
            }
        }
        let mut unread: HashSet<&str> = HashSet::default();
        for env in &spec.group[from..] {
            let Some(id) = env.command.loan_id() else { continue };
            if spec.g.loans.contains_key(id) || spec.g.missing.contains(id) {
                continue;
            }
            match f.staged.loans.get(id).cloned().or_else(|| self.loans.remove(id)) {
                Some(state) => {
                    spec.g.loans.insert(id.to_string(), state);
                }
                None => {
                    unread.insert(id);
                }
            }
        }
        if !unread.is_empty() {
            let ids: Vec<&str> = unread.into_iter().collect();
            match self.db.loans_read(&ids).await {
                Ok(loans) => {
                    for loan in loans {
                        spec.g.loans.insert(loan.terms.loan_id.clone(), loan);
                    }
                    spec.g.note_missing(ids);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "loan read failed while a group committed");
                    spec.abandoned = true;
                    return;
                }
            }
        }
        let mut detached = WriteTx::Detached;
        let jobs = &spec.group[from..];
        let planned = self.execute_all(&mut detached, &mut spec.g, jobs, &mut spec.results).await;
        if planned.is_err() {
            spec.abandoned = true;
        }
    }

    /// The transaction of a planned group's commit; `None` (logged) if it cannot begin, and the
    /// group is then run as an ordinary one.
    async fn begin_planned(&self) -> Option<WriteTx> {
        self.db
            .begin_write()
            .await
            .inspect_err(
                |e| tracing::warn!(error = %e, "could not begin the planned group's commit"),
            )
            .ok()
    }

    /// Starts the commit of a group planned while the one before it committed ([`Self::start`]).
    fn start_planned(&mut self, mut spec: Speculation, tx: WriteTx) -> InFlight {
        spec.seal();
        let Speculation { g, group, results, replies, keys, .. } = spec;
        #[cfg(test)]
        tests::PLANNED_AHEAD.set(tests::PLANNED_AHEAD.get() + 1);
        self.start(Prepared { tx, g, results }, group, replies, keys.unwrap_or_default())
    }

    /// Hands a planned group's commit to a task of its own. The writer's cache takes the
    /// group's chain heads and unchanged loans at once (cleared should the commit fail); its
    /// changed loans stay with the staged rows until the commit has landed.
    fn start(
        &mut self,
        p: Prepared,
        group: Vec<Envelope>,
        replies: Vec<Reply>,
        keys: HashSet<RequestKey>,
    ) -> InFlight {
        let Prepared { tx, g, results } = p;
        self.heads.extend(g.heads);
        self.keep_loans(g.loans);
        let staged = Arc::new(g.staged);
        let writing = Arc::clone(&staged);
        let commit = tokio::spawn(async move { tx.commit_with(&writing).await });
        InFlight { commit, staged, group, results, replies, keys }
    }

    /// Ends a group in flight: on success its callers are answered and its changed loans join
    /// the cache, but those `newer` (the rows of a group planned on it) changes again
    /// ([`Writer::landed`]); on failure the cache is forgotten (the commit may still have
    /// landed) and its commands run again as ordinary groups. Returns whether the commit
    /// succeeded.
    async fn finish(&mut self, f: InFlight, done: Committed, newer: Option<&Staged>) -> bool {
        let committed = match done {
            Ok(Err(StoreError::RequestSeen(e))) => {
                // Nothing was written. The chain heads the group left (taken into the cache as
                // it started) are forgotten; the cached loans are all committed states (the
                // group's changed loans were never put back), so they stay.
                replanned(Some(&e));
                self.heads.clear();
                let results = self.run_group(&f.group, Lookup::First).await;
                answer(&f.group, f.replies, results);
                self.db.restart_wal_if_due().await;
                return false;
            }
            Ok(Err(e @ StoreError::Corrupt(_))) => {
                // The database does not hold what the writer does (a loan row missing): a
                // fault in the data, not a passing failure; its commands still run again alone.
                tracing::error!(error = %e, "a group's commit found the stored data inconsistent");
                Err(AppError::from(e))
            }
            Ok(result) => result.map_err(AppError::from),
            Err(e) => Err(AppError::Internal(format!("the commit's task failed: {e}"))),
        };
        let ok = committed.is_ok();
        match committed {
            Ok(()) => self.landed(f, newer),
            Err(e) => {
                tracing::warn!(error = %e, "a group's commit failed");
                self.forget();
                let results = self.recover(&f.group, e).await;
                answer(&f.group, f.replies, results);
            }
        }
        self.db.restart_wal_if_due().await;
        ok
    }

    /// Ends a group whose commit landed: its callers are answered, then its changed loans join
    /// the cache, and what is left of it is freed ([`Disposal`]). With `newer`, the rows of the
    /// group planned on it (committing now, or about to): a loan it changes again is left out of
    /// the cache (its newer state comes back when that group ends).
    fn landed(&mut self, f: InFlight, newer: Option<&Staged>) {
        let InFlight { staged, group, results, replies, keys, .. } = f;
        answer(&group, replies, results);
        let mut staged = Arc::try_unwrap(staged)
            .unwrap_or_else(|shared| Staged { loans: shared.loans.clone(), ..Staged::default() });
        let mut loans = std::mem::take(&mut staged.loans);
        if let Some(newer) = newer {
            loans.retain(|id, _| !newer.loans.contains_key(id));
        }
        self.keep_loans(loans);
        self.disposal.dispose(Leftovers { group, _staged: staged, _keys: keys });
    }

    /// Loan states whose rows are committed (or were only read) go back to the cache, which
    /// starts again empty past [`LOAN_CACHE_MAX`].
    /// The exposures kept for the risk funds' limits are told of them ([`fund::ExposureCache`]).
    fn keep_loans(&mut self, loans: impl IntoIterator<Item = (String, LoanState)>) {
        let loans = loans.into_iter();
        if self.loans.len() + loans.size_hint().0 > LOAN_CACHE_MAX {
            self.loans.clear();
        }
        let exposures = self.exposures.get_mut().unwrap_or_else(|e| e.into_inner());
        if exposures.is_empty() {
            self.loans.extend(loans);
        } else {
            let loans: Vec<(String, LoanState)> = loans.collect();
            exposures.landed(loans.iter().map(|(_, loan)| loan));
            self.loans.extend(loans);
        }
    }

    #[tracing::instrument(skip_all, fields(commands = group.len()))]
    async fn run_group(
        &mut self,
        group: &[Envelope],
        lookup: Lookup,
    ) -> Vec<Result<Outcome, AppError>> {
        match self.try_group(group, lookup).await {
            Ok(results) => results,
            Err(e) => self.after_failure(group, e).await,
        }
    }

    /// A group planned or committed apart from [`Writer::try_group`] failed with `e` (nobody
    /// answered, nothing committed): a retryable failure gets the group's retries, any other
    /// the run of each command alone.
    async fn recover(&mut self, group: &[Envelope], e: AppError) -> Vec<Result<Outcome, AppError>> {
        match e {
            AppError::Unavailable(_) => self.run_group(group, Lookup::for_group(group)).await,
            e => self.after_failure(group, e).await,
        }
    }

    /// A group failed with `e` (nobody answered, nothing committed): each command is run
    /// again alone, so that one command that trips the database does not fail its neighbours;
    /// unless the database is away, when each is answered so at once.
    async fn after_failure(
        &mut self,
        group: &[Envelope],
        e: AppError,
    ) -> Vec<Result<Outcome, AppError>> {
        if group.len() == 1 {
            return vec![Err(e)];
        }
        // The database is away (the group's own retries are spent): so it is for each of its
        // commands, whose callers get UNAVAILABLE now rather than after a run of each alone
        // with retries of its own (with a 500-command group, minutes of waiting for a lock or
        // a connection that is not coming).
        if let AppError::Unavailable(m) = &e {
            return group.iter().map(|_| Err(AppError::Unavailable(m.clone()))).collect();
        }
        tracing::warn!(error = %e, "group failed; retrying its commands one by one");
        let mut results = Vec::with_capacity(group.len());
        let mut away: Option<String> = None;
        for env in group {
            // The database went away meanwhile (a command's own group failed so, its retries
            // spent): the commands not yet run are answered so at once, as above, rather than
            // each after retries of its own.
            if let Some(m) = &away {
                results.push(Err(AppError::Unavailable(m.clone())));
                continue;
            }
            let one = self.try_group(std::slice::from_ref(env), Lookup::First).await;
            let result = match one {
                Ok(mut r) => {
                    r.pop().unwrap_or_else(|| Err(AppError::Internal("empty group result".into())))
                }
                Err(AppError::Unavailable(m)) => {
                    away = Some(m.clone());
                    Err(AppError::Unavailable(m))
                }
                Err(e) => Err(e),
            };
            // At once: a later command of its call on the same loan in this group is then
            // held back too.
            env.note(&result);
            results.push(result);
        }
        results
    }

    async fn try_group(
        &mut self,
        group: &[Envelope],
        lookup: Lookup,
    ) -> Result<Vec<Result<Outcome, AppError>>, AppError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            #[cfg(test)]
            tests::GROUP_ATTEMPTS.set(tests::GROUP_ATTEMPTS.get() + 1);
            match self.group_once(group, lookup).await {
                // PostgreSQL-compatible distributed databases abort transactions with 40001
                // under contention; the whole group is safe to run again since nothing was
                // committed and nobody was answered.
                Err(AppError::Unavailable(msg)) if attempt < GROUP_ATTEMPTS => {
                    tracing::warn!(attempt, msg, "group hit a retryable database error");
                    tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Plans and commits a group, waiting for its commit. Planned with [`Lookup::AtCommit`]
    /// and refused by the idempotency key, it is planned again with [`Lookup::First`].
    async fn group_once(
        &mut self,
        group: &[Envelope],
        mut lookup: Lookup,
    ) -> Result<Vec<Result<Outcome, AppError>>, AppError> {
        loop {
            let Prepared { tx, g, results } = self.prepare(group, lookup).await?;
            match tx.commit_with(&g.staged).await {
                Ok(()) => {
                    self.heads.extend(g.heads);
                    self.keep_loans(g.loans.into_iter().chain(g.staged.loans));
                    return Ok(results);
                }
                // Nothing was written, and the group's heads and loans are not in the cache.
                Err(StoreError::RequestSeen(e)) if lookup == Lookup::AtCommit => {
                    replanned(Some(&e));
                    lookup = Lookup::First;
                }
                Err(e) => {
                    // A failed commit may still have landed: forget what we believe is
                    // committed and read it again next time.
                    self.forget();
                    return Err(e.into());
                }
            }
        }
    }

    /// Plans a group in its transaction: every command checked and its rows staged, nothing
    /// committed. On an error the transaction is rolled back and the cache forgotten.
    async fn prepare(
        &mut self,
        group: &[Envelope],
        mut lookup: Lookup,
    ) -> Result<Prepared, AppError> {
        #[cfg(test)]
        if group.len() > 1 && tests::FAIL_GROUPS.get() {
            return Err(AppError::Internal("a group failed (test)".into()));
        }
        #[cfg(test)]
        if let Some(prefix) = tests::AWAY_FOR.get()
            && group.iter().any(|e| e.request_id().starts_with(prefix))
        {
            return Err(AppError::Unavailable("the database is away (test)".into()));
        }
        let mut tx = self.db.begin_write().await?;
        // Planned again at most once: with `Lookup::First` a group is always planned.
        let planned = loop {
            match self.plan_group(&mut tx, group, lookup).await {
                Ok(Some(planned)) => break Ok(planned),
                Ok(None) => {
                    replanned(None);
                    lookup = Lookup::First;
                }
                Err(e) => break Err(e),
            }
        };
        match planned {
            Ok((g, results)) => Ok(Prepared { tx, g, results }),
            Err(e) => {
                let _ = tx.rollback().await;
                self.forget();
                Err(e)
            }
        }
    }

    /// Plans a group into `tx`. `None` if, planned with [`Lookup::AtCommit`], a command whose
    /// answer stores nothing (a refusal, an unchanged loan) turns out to be a retry: the group
    /// must then be planned again with [`Lookup::First`]; nothing of it was written.
    async fn plan_group(
        &mut self,
        tx: &mut WriteTx,
        group: &[Envelope],
        lookup: Lookup,
    ) -> Result<Option<(Group, Answers)>, AppError> {
        let mut g = Group::new(self.business_utc_offset);
        self.prefetch(tx, &mut g, group, lookup).await?;
        let mut results = Vec::with_capacity(group.len());
        if let Err((e, request_id)) = self.execute_all(tx, &mut g, group, &mut results).await {
            tracing::error!(error = %e, request_id, "command failed the group");
            return Err(e);
        }
        if lookup == Lookup::AtCommit {
            // Planned without the lookups, every answer given is in `g.idempotency`: those that
            // stored no row, and the refusals (their staged `answers`), whose rows would collide
            // only at the commit (a retry refused again, or refused now that its loan moved on),
            // are looked up now.
            let refused = g.staged.answers.iter().map(|(scope, id, _)| (scope.clone(), id.clone()));
            let unstored: Vec<RequestKey> = group
                .iter()
                .map(Envelope::key)
                .filter(|k| !g.idempotency.contains_key(*k))
                .cloned()
                .chain(refused)
                .collect();
            if !unstored.is_empty() && !tx.idempotency_many(&unstored).await?.is_empty() {
                return Ok(None);
            }
        }
        g.stage_loans();
        Ok(Some((g, results)))
    }

    /// Executes commands into the group in order, appending their answers to `results` (the
    /// group's answers so far, which a repeated request id within the group refers to). A
    /// refusal is an answer; a failure of the database or of the writer (`Internal`,
    /// `Unavailable`) stops at once and is returned with the command's request id.
    async fn execute_all<'e>(
        &self,
        tx: &mut WriteTx,
        g: &mut Group,
        jobs: &'e [Envelope],
        results: &mut Vec<Result<Outcome, AppError>>,
    ) -> Result<(), (AppError, &'e str)> {
        for env in jobs {
            match self.execute(tx, g, env, results.len()).await {
                Ok(Answered::New(outcome)) => results.push(Ok(outcome)),
                Ok(Answered::Failed(e)) => results.push(Err(e)),
                Ok(Answered::SameAs(earlier)) => {
                    let again = match results.get(earlier) {
                        // A brief answer repeated to a caller who wants the loan: the loan as
                        // the group holds it, if nothing changed it since.
                        Some(Ok(Outcome::LoanRef { loan_id, entry, settled, .. }))
                            if !env.brief =>
                        {
                            match g.loans.get(loan_id) {
                                Some(loan) if loan.last_seq == entry.seq => Ok(Outcome::Loan {
                                    loan: Box::new(loan.clone()),
                                    entry: entry.clone(),
                                    settled: settled.clone(),
                                }),
                                _ => Err(AppError::Unavailable(format!(
                                    "request {} was answered in this group without its loan: \
                                     ask again",
                                    env.request_id()
                                ))),
                            }
                        }
                        // A full answer repeated to a caller who asked for brief ones: its
                        // stored form.
                        Some(Ok(outcome)) if env.brief => Ok(outcome.stored().into_owned()),
                        Some(Ok(outcome)) => Ok(outcome.clone()),
                        // A refusal given earlier in the group: the same refusal.
                        Some(Err(e)) => Err(e.refusal().map_or_else(
                            || AppError::Internal("a given answer was no refusal".into()),
                            AppError::Refused,
                        )),
                        None => Err(AppError::Internal("a given answer went missing".into())),
                    };
                    results.push(again);
                }
                Err(e @ (AppError::Internal(_) | AppError::Unavailable(_))) => {
                    return Err((e, env.request_id()));
                }
                Err(refusal) => {
                    record_refusal(g, env, &refusal, results.len())
                        .map_err(|e| (e, env.request_id()))?;
                    // At once, for this plan: a later command of its call on the same loan in
                    // this group is held back if this refusal is not recorded.
                    if let (AppError::RequestIdReused(_), Some(key)) = (&refusal, env.call_loan()) {
                        g.held_in_call.insert(key, true);
                    }
                    results.push(Err(refusal));
                }
            }
        }
        Ok(())
    }

    /// Forgets the cached chain heads and loan states: after a failure, what the writer
    /// believes committed may not be, so it reads them again.
    fn forget(&mut self) {
        self.heads.clear();
        self.loans.clear();
        self.exposures.get_mut().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Reads what a group's commands will look up, with one statement per kind instead of one
    /// per command: their request ids (with [`Lookup::First`]), the loans they name or their
    /// contracts create or renew, the households they name with the loans of those they
    /// contract for or pay out an expired contract of ([`Writer::prefetch_households`]), and
    /// the households and loans of the persons they register as heads or name as borrowers.
    async fn prefetch(
        &mut self,
        tx: &mut WriteTx,
        g: &mut Group,
        group: &[Envelope],
        lookup: Lookup,
    ) -> Result<(), AppError> {
        if lookup == Lookup::First {
            g.remember_answers(tx.idempotency_many(&keys_of(group)).await?);
        }
        // The loans the commands name, and those a contract creates or renews (found, it is
        // refused as existing; missing, it is not looked up again).
        let mut loan_ids: Vec<String> = Vec::new();
        let (mut households, mut contracted): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        // The earliest contract date (and value date of a first disbursement of an expired
        // contract, below): the loans of the contracts' households and borrowers closed after it
        // are read with their open ones.
        let mut since = latest_contract_date(g);
        // Identity numbers: the heads of registrations and the borrowers of contracts (a person
        // belongs to one household of a ledger, see `Group::headed` and `Group::borrowers`).
        let (mut heads, mut borrowers): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        for e in group {
            loan_ids.extend(e.command.loan_id().map(String::from));
            match &e.command {
                Command::CreateLoan { terms } => {
                    loan_ids.push(terms.loan_id.clone());
                    loan_ids.extend(terms.renews_loan_id.clone());
                    households.push(&terms.household_id);
                    contracted.push(&terms.household_id);
                    since = since.min(terms.contract_date);
                    heads.push(&terms.borrower_id_number);
                    borrowers.push(&terms.borrower_id_number);
                }
                Command::RegisterHousehold { household, .. } => {
                    households.push(&household.household_id);
                    heads.push(&household.head_id_number);
                    // A head who owes loans of another household on the day it is registered
                    // belongs to it (`Group::borrowers`).
                    borrowers.push(&household.head_id_number);
                    since = since.min(g.recorded_on);
                }
                Command::SetHouseholdStatus { household_id, .. } => households.push(household_id),
                _ => {}
            }
        }
        loan_ids.sort_unstable();
        loan_ids.dedup();
        // Cached states move into the group (and come back after its commit).
        loan_ids.retain(|id| match self.loans.remove(id) {
            Some(cached) => {
                g.loans.insert(id.clone(), cached);
                false
            }
            None => true,
        });
        if !loan_ids.is_empty() {
            for loan in tx.loans_many(&loan_ids).await? {
                g.loans.insert(loan.terms.loan_id.clone(), loan);
            }
            g.note_missing(loan_ids.iter().map(String::as_str));
        }
        // The first disbursements of contracts whose maturity a contract of today may have
        // passed check the loans of their households, and those of their borrowers in any
        // household, contracted since that maturity, open or closed (`Command::Disburse`): read
        // with the contracts' (the same rows, those closed after the earliest of the contracts'
        // dates and the disbursements' value dates, which come before those maturities).
        let mut expired: Vec<(String, String)> = Vec::new();
        for e in group {
            if let Command::Disburse { loan_id, value_date, .. } = &e.command
                && let Some(l) = g.loans.get(loan_id)
                && paid_out_dated_back(l, *value_date, latest_contract_date(g))
            {
                expired.push((l.terms.household_id.clone(), l.terms.borrower_id_number.clone()));
                since = since.min(*value_date);
            }
        }
        contracted.extend(expired.iter().map(|(household, _)| household.as_str()));
        borrowers.extend(expired.iter().map(|(_, borrower)| borrower.as_str()));
        // And whether they head another household now (registered since the contract stopped
        // counting: `Group::headed`).
        heads.extend(expired.iter().map(|(_, borrower)| borrower.as_str()));
        self.prefetch_households(tx, g, households, contracted, since).await?;
        if !heads.is_empty() {
            heads.sort_unstable();
            heads.dedup();
            for (ledger_id, head, household_id) in tx.households_headed_by(&heads).await? {
                g.headed.entry((ledger_id, head)).or_default().push(household_id);
            }
        }
        if !borrowers.is_empty() {
            borrowers.sort_unstable();
            borrowers.dedup();
            g.borrowers = borrowers.iter().map(|id| (id.to_string(), Vec::new())).collect();
            for loan in tx.open_loans_of_borrowers(&borrowers, since).await? {
                g.borrowers.entry(loan.terms.borrower_id_number.clone()).or_default().push(loan);
            }
        }
        Ok(())
    }

    /// [`Group::households`] for `households`, and [`Group::open_loans`] for `contracted`, the
    /// households of the group's contracts and of its first disbursements of expired contracts:
    /// their open loans and those closed after `since`, the earliest of the contracts' dates and
    /// those disbursements' value dates.
    async fn prefetch_households(
        &self,
        tx: &mut WriteTx,
        g: &mut Group,
        mut households: Vec<&str>,
        mut contracted: Vec<&str>,
        since: BusinessDate,
    ) -> Result<(), AppError> {
        for ids in [&mut households, &mut contracted] {
            ids.sort_unstable();
            ids.dedup();
        }
        if !households.is_empty() {
            g.households = households.iter().map(|id| (id.to_string(), None)).collect();
            for view in tx.households_many(&households).await? {
                g.households.insert(view.row.household_id.clone(), Some(view));
            }
        }
        if !contracted.is_empty() {
            g.open_loans = contracted.iter().map(|id| (id.to_string(), Vec::new())).collect();
            for loan in tx.open_loans_many(&contracted, since).await? {
                g.open_loans.entry(loan.terms.household_id.clone()).or_default().push(loan);
            }
        }
        Ok(())
    }

    /// A household as the group sees it (`households`: [`Group::households`]): as read at its
    /// start, with what the group did to it since. The transaction holds none of the group's staged
    /// households and statuses, so a household [`Writer::prefetch`] did not read is not read
    /// here either: that would be a fault of the writer, which fails the group.
    fn household<'g>(
        households: &'g HashMap<String, Option<HouseholdView>>,
        household_id: &str,
    ) -> Result<Option<&'g HouseholdView>, AppError> {
        match households.get(household_id) {
            Some(read) => Ok(read.as_ref()),
            None => Err(AppError::Internal(format!(
                "household {household_id} was not read for its group"
            ))),
        }
    }

    async fn head(
        &self,
        tx: &mut WriteTx,
        g: &Group,
        ledger_id: &str,
    ) -> Result<(u64, Hash), AppError> {
        if let Some(h) = g.heads.get(ledger_id).or_else(|| self.heads.get(ledger_id)) {
            return Ok(*h);
        }
        Ok(match tx.head(ledger_id).await? {
            None => (0, GENESIS),
            Some((seq, hash)) => (
                u64::try_from(seq).map_err(|_| AppError::Internal("negative seq".into()))?,
                from_hex(&hash)
                    .ok_or_else(|| AppError::Internal(format!("bad head hash in {ledger_id}")))?,
            ),
        })
    }

    /// A loan as the group sees it: its own state if it holds one (borrowed), else read.
    async fn loan<'g>(
        &self,
        tx: &mut WriteTx,
        g: &'g Group,
        loan_id: &str,
    ) -> Result<Cow<'g, LoanState>, AppError> {
        if let Some(l) = g.loans.get(loan_id) {
            return Ok(Cow::Borrowed(l));
        }
        if g.missing.contains(loan_id) {
            return Err(DomainError::NotFound { what: "loan", id: loan_id.to_string() }.into());
        }
        tx.loan(loan_id)
            .await?
            .map(Cow::Owned)
            .ok_or_else(|| DomainError::NotFound { what: "loan", id: loan_id.to_string() }.into())
    }

    // A debug-level span: at the default level it costs nothing per command on the writer's
    // serial path (the group's span and any warning or error still name the request).
    #[tracing::instrument(level = "debug", skip_all, fields(command = env.command.name(), request_id = env.request_id(), actor = env.actor_name()))]
    async fn execute(
        &self,
        tx: &mut WriteTx,
        g: &mut Group,
        env: &Envelope,
        index: usize,
    ) -> Result<Answered, AppError> {
        let key = env.key().clone();
        let fingerprint = env.command.fingerprint();
        // Every answer given in the group is recorded here, and, planned with `Lookup::First`,
        // every request id stored before: absent means new. Planned with `Lookup::AtCommit`,
        // absent means new unless the idempotency key says otherwise (see `Lookup`).
        let earlier = g.idempotency.get(&key).cloned();
        if let Some((earlier_fp, answer)) = earlier {
            if earlier_fp != fingerprint {
                return Err(AppError::RequestIdReused(env.request_id().to_string()));
            }
            tracing::debug!("replayed an earlier answer");
            let result_json = match answer {
                Answer::Given(earlier) => return Ok(Answered::SameAs(earlier)),
                Answer::Stored(json) => json,
            };
            let stored: Outcome = serde_json::from_str(&result_json)
                .map_err(|e| AppError::Internal(format!("stored answer unreadable: {e}")))?;
            return match stored {
                brief @ Outcome::LoanRef { principal_outstanding_fen: Some(_), .. }
                    if env.brief =>
                {
                    Ok(Answered::New(brief))
                }
                Outcome::LoanRef { loan_id, entry, settled, .. } => {
                    // Read through the readers' pool, not the group's transaction: should the
                    // read fail (the pool's connections all busy, say), this command fails
                    // alone and is not worth failing its group for.
                    let loan = match loan_through(&self.db, &loan_id, None, Some(entry.seq)).await {
                        Ok(Some(loan)) => loan,
                        Ok(None) => {
                            return Err(AppError::Internal(format!(
                                "answer of {loan_id} refers to a missing journal entry"
                            )));
                        }
                        // A journal broken under the answer is the service's fault here, not
                        // a refusal of the request: a FAILED_PRECONDITION would tell the
                        // client its write was refused and wants a new request id, and it was
                        // posted (`app::error::journal_broken` is for reads).
                        Err(AppError::Refused(r)) => {
                            let why =
                                format!("the answer of {loan_id} cannot be rebuilt: {}", r.message);
                            return Ok(Answered::Failed(AppError::Internal(why)));
                        }
                        Err(e) => return Ok(Answered::Failed(e)),
                    };
                    Ok(Answered::New(if env.brief {
                        Outcome::loan_ref(&loan, entry, settled)
                    } else {
                        Outcome::Loan { loan: Box::new(loan), entry, settled }
                    }))
                }
                Outcome::Refused { refusal } => Ok(Answered::Failed(AppError::Refused(refusal))),
                other => Ok(Answered::New(other)),
            };
        }
        // A new command held back by its call, not run (an answered one is answered the same,
        // above; planned with `Lookup::AtCommit`, one answered before is found at the commit
        // and the group planned again).
        if let Some(refused) = env.held_back(&g.held_in_call) {
            return Ok(Answered::Failed(held_back(env, refused)));
        }

        // Commands outside any ledger's chain: only their answer is recorded, under their
        // request id.
        let unjournaled = match &env.command {
            // A settlement run's parameters: its loans are commands of their own.
            Command::SettlementRun { ledger_id, bank_id, date } => Some(Outcome::SettlementRun {
                ledger_id: ledger_id.clone(),
                bank_id: bank_id.clone(),
                date: *date,
            }),
            Command::SettlementRunSummary { summary } => {
                Some(Outcome::SettlementRunSummary { summary: summary.clone() })
            }
            _ => None,
        };
        if let Some(outcome) = unjournaled {
            let json =
                serde_json::to_string(&outcome).map_err(|e| AppError::Internal(e.to_string()))?;
            tx.insert_idempotency(env.actor_name(), env.request_id(), &fingerprint, &json).await?;
            g.idempotency.insert(key, (fingerprint, Answer::Given(index)));
            return Ok(Answered::New(outcome));
        }

        let planned = self.plan(tx, g, env).await?;
        if let Effect::Unchanged(loan) = planned.effect {
            // Nothing to post: answer with the loan as it stands, record nothing, so that a
            // retry recomputes (and again finds nothing to do).
            return Ok(Answered::New(Outcome::LoanUnchanged { loan }));
        }
        let (prev_seq, prev_hash) = self.head(tx, g, &planned.ledger_id).await?;
        let seq = prev_seq + 1;
        let value_date = format_date(planned.event.value_date(g.recorded_on));
        let command_json = planned.event.to_json();
        let actor = env.actor_name().to_string();
        let content = TxnContent {
            ledger_id: &planned.ledger_id,
            seq,
            kind: planned.event.kind(),
            value_date: &value_date,
            recorded_at_us: g.recorded_at_us,
            actor: &actor,
            request_id: env.request_id(),
            command_json: &command_json,
            postings: planned.postings.as_slice(),
        };
        let hash = content.chain_hash(&prev_hash);
        let entry = JournalRef { ledger_id: planned.ledger_id.clone(), seq, hash: to_hex(&hash) };

        let outcome = self.apply(tx, g, planned.effect, seq, &entry, env.brief).await?;
        // The group keeps the whole answer (a duplicate in the same group cannot rebuild it from
        // uncommitted rows; a brief one is completed from the group's loan, see `execute_all`);
        // the database keeps the compact form.
        let stored_json = serde_json::to_string(&outcome.stored())
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let seq_i64 = i64::try_from(seq).map_err(|_| AppError::Internal("seq overflow".into()))?;
        add_deltas(&mut g.staged.balance_deltas, &planned.ledger_id, planned.postings.as_slice())?;
        g.staged.txns.push(StagedTxn {
            row: JournalRow {
                ledger_id: planned.ledger_id.clone(),
                seq: seq_i64,
                kind: planned.event.kind().to_string(),
                value_date,
                recorded_at_us: g.recorded_at_us,
                actor,
                request_id: env.request_id().to_string(),
                command_json,
                prev_hash: to_hex(&prev_hash),
                hash: entry.hash.clone(),
                postings: pack(planned.postings.as_slice()),
            },
            loan_ids: planned.event.loan_ids().map(String::from).collect(),
            idempotency: StoredAnswer {
                fingerprint: fingerprint.clone(),
                result_json: stored_json,
            },
        });
        g.heads.insert(planned.ledger_id, (seq, hash));
        g.idempotency.insert(key, (fingerprint, Answer::Given(index)));
        Ok(Answered::New(outcome))
    }
}

#[cfg(test)]
mod tests;
