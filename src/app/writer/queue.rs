//! How commands reach the writer: callers queue them through a [`WriterHandle`] (one command,
//! or many cut into parts of [`PART_COMMANDS_MAX`]), each with its
//! request-id key ([`RequestKey`]) and, for a call of several, what the call's commands share
//! ([`Call`]: the loans held back after an unanswered or refused-as-sent command); the writer
//! takes them from its [`Queue`] and answers each part through its channel ([`Pending`]).

use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::{PART_COMMANDS_MAX, QUEUE_DEPTH_MAX};
use crate::app::auth::Principal;
use crate::app::command::{Command, Outcome};
use crate::app::error::AppError;
use crate::collections::{HashMap, HashSet};

/// A request's idempotency key: (scope, request id). The scope is the caller's name
/// (`bank:B1`), so that two callers' request ids never meet.
pub type RequestKey = (String, String);

/// One command as the writer works on it.
pub struct Envelope {
    pub actor: Principal,
    /// Built once, when the command is queued: the writer looks it up, checks it against the
    /// group in flight, records it and writes its scope as the journal's actor.
    key: RequestKey,
    pub command: Command,
    /// The caller keeps only the loan's principal outstanding and what a loan command settled (a
    /// batch, a settlement run): it is answered with [`Outcome::LoanRef`], without a copy of the
    /// loan's state, and a stored answer is given back as stored, without rebuilding the loan
    /// from its journal (unless stored without the principal outstanding, by an older version). A
    /// command with nothing to do still answers with the loan ([`Outcome::LoanUnchanged`]: the
    /// state it was planned on, moved, not copied).
    pub brief: bool,
    /// The call it came in, when that sent several commands at once (a batch; a settlement
    /// run sends each page as a call of its own, one command a loan): see [`Call`].
    call: Option<Arc<Call>>,
    /// An earlier item of its call on the same loan was refused before it reached the writer
    /// (malformed as sent, [`WriterHandle::submit_file`]): held back as after an unanswered one,
    /// so that the file sent again, that item corrected, runs in its order.
    after_refused: bool,
}

/// What the commands of one call (sent at once, cut into parts, answered together) share: the
/// loans of those among them that went unanswered (UNAVAILABLE, INTERNAL: not run, or run
/// without an answer that can be given again). A later command of the call on one of those
/// loans is not run but answered UNAVAILABLE too, nothing recorded: run, it would be applied
/// out of the call's order (a repayment before the disbursement that went unanswered), and a
/// refusal it then got would be recorded for good, given again when the caller sends the whole
/// call once more. The call is to be sent again; what of it was answered is answered the same.
///
/// So with a command refused as sent whose refusal is not recorded (a request id reused for
/// another command): sent again corrected, it runs, and what came after it on its loan must not
/// have run ahead of it.
#[derive(Default)]
pub(super) struct Call {
    /// Whether `loans` holds any, read before taking the lock.
    any: std::sync::atomic::AtomicBool,
    /// The loans held back, each with why: `true` if a command on it was refused as sent
    /// (unrecorded), `false` if one went unanswered.
    loans: std::sync::Mutex<HashMap<String, bool>>,
}

impl Call {
    /// Whether the loan is held back, and if so whether for a command refused as sent.
    pub(super) fn holds_back(&self, loan_id: &str) -> Option<bool> {
        use std::sync::atomic::Ordering;
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.loans.lock().ok().and_then(|loans| loans.get(loan_id).copied())
    }

    pub(super) fn hold(&self, loan_id: &str, refused: bool) {
        use std::sync::atomic::Ordering;
        if let Ok(mut loans) = self.loans.lock() {
            loans.entry(loan_id.to_string()).or_insert(refused);
            self.any.store(true, Ordering::Release);
        }
    }
}

impl Envelope {
    pub fn new(actor: Principal, request_id: String, command: Command, brief: bool) -> Envelope {
        let key = (actor.actor(), request_id);
        Envelope { actor, key, command, brief, call: None, after_refused: false }
    }

    /// The loan the command is on: the one it names, or the one a contract creates.
    pub(super) fn loan(&self) -> Option<&str> {
        match &self.command {
            Command::CreateLoan { terms } => Some(&terms.loan_id),
            command => command.loan_id(),
        }
    }

    /// Whether an earlier command of its call on the same loan went unanswered or was refused
    /// as sent ([`Call`]; in the plan under way and the group committing before it,
    /// `held_in_plan`: [`Group::held_in_call`](super::Group::held_in_call)), or an earlier item of it was refused before
    /// the writer ([`Envelope::after_refused`]); if so, whether it was refused as sent.
    pub(super) fn held_back(&self, held_in_plan: &HashMap<(usize, String), bool>) -> Option<bool> {
        if self.after_refused {
            return Some(true);
        }
        if !held_in_plan.is_empty()
            && let Some(refused) = self.call_loan().and_then(|key| held_in_plan.get(&key))
        {
            return Some(*refused);
        }
        match (&self.call, self.loan()) {
            (Some(call), Some(loan)) => call.holds_back(loan),
            _ => None,
        }
    }

    /// Its call and loan, as [`Group::held_in_call`](super::Group::held_in_call) keys them.
    pub(super) fn call_loan(&self) -> Option<(usize, String)> {
        match (&self.call, self.loan()) {
            (Some(call), Some(loan)) => Some((Arc::as_ptr(call) as usize, loan.to_string())),
            _ => None,
        }
    }

    /// Whether `result` holds the command's loan back for the rest of its call ([`Call`]): no
    /// answer (`false`), or a refusal of the command as sent that is not recorded, its request
    /// id reused (`true`).
    pub(super) fn holds_with(result: &Result<Outcome, AppError>) -> Option<bool> {
        match result {
            Err(AppError::Unavailable(_) | AppError::Internal(_)) => Some(false),
            Err(AppError::RequestIdReused(_)) => Some(true),
            Err(AppError::HeldBack { refused_as_sent, .. }) => Some(*refused_as_sent),
            _ => None,
        }
    }

    /// Notes, if `result` holds the command's loan back ([`Envelope::holds_with`]), that it
    /// does for the rest of its call ([`Call`]).
    pub(super) fn note(&self, result: &Result<Outcome, AppError>) {
        if let (Some(refused), Some(call), Some(loan)) =
            (Self::holds_with(result), &self.call, self.loan())
        {
            call.hold(loan, refused);
        }
    }

    /// Its idempotency key: (scope, request id).
    pub(super) fn key(&self) -> &RequestKey {
        &self.key
    }

    pub(super) fn request_id(&self) -> &str {
        &self.key.1
    }

    /// The caller's name as the journal records it (the key's scope).
    pub(super) fn actor_name(&self) -> &str {
        &self.key.0
    }
}

/// Its request-id keys, one per command.
pub(super) fn keys_of(jobs: &[Envelope]) -> Vec<RequestKey> {
    jobs.iter().map(|env| env.key().clone()).collect()
}

/// The request-id keys of a group, as a group in flight holds them ([`InFlight::keys`](super::InFlight::keys)).
pub(super) fn key_set(group: &[Envelope]) -> HashSet<RequestKey> {
    group.iter().map(|env| env.key().clone()).collect()
}

/// The answers to a part, in the order of its commands.
pub(super) type Answers = Vec<Result<Outcome, AppError>>;

/// What callers queue: one command, or a part of a batch, with one answer channel for all.
pub(super) struct Submission {
    pub(super) jobs: Vec<Envelope>,
    /// The last part of what a caller sent at once (a single request, a whole batch): its
    /// caller is answered once this part has committed.
    pub(super) ends_call: bool,
    pub(super) reply: oneshot::Sender<Answers>,
    /// Held until the answers are sent: the commands' share of [`QUEUE_DEPTH_MAX`].
    pub(super) _permit: OwnedSemaphorePermit,
}

/// A cheap, cloneable way to submit commands to the writer.
#[derive(Clone, Debug)]
pub struct WriterHandle {
    queue: mpsc::Sender<Submission>,
    permits: Arc<Semaphore>,
    /// Told by [`WriterHandle::close`]; the writer's [`Queue`] waits for it.
    closing: Arc<Notify>,
}

impl WriterHandle {
    /// Closes the queue, whatever handles remain (a server that stops waiting for its
    /// connections leaves their handles behind): what is queued is still committed and
    /// answered, what comes later is refused UNAVAILABLE, and the writer stops once the queue is
    /// empty.
    pub fn close(&self) {
        self.permits.close();
        self.closing.notify_one();
    }
}

/// A new queue: the callers' end and the writer's, for [`QUEUE_DEPTH_MAX`] commands.
pub(super) fn channel() -> (WriterHandle, Queue) {
    let (queue, rx) = mpsc::channel(QUEUE_DEPTH_MAX);
    let closing = Arc::new(Notify::new());
    let permits = Arc::new(Semaphore::new(QUEUE_DEPTH_MAX));
    (WriterHandle { queue, permits, closing: closing.clone() }, Queue { rx, closing })
}

/// The writer's end of its queue: the submissions, until [`WriterHandle::close`] or the last
/// handle's drop closes it.
pub(super) struct Queue {
    rx: mpsc::Receiver<Submission>,
    closing: Arc<Notify>,
}

impl Queue {
    /// The next submission; `None` once the queue is closed and empty.
    pub(super) async fn recv(&mut self) -> Option<Submission> {
        if !self.rx.is_closed() {
            tokio::select! {
                biased;
                s = self.rx.recv() => return s,
                () = self.closing.notified() => self.rx.close(),
            }
        }
        self.rx.recv().await
    }

    pub(super) fn try_recv(&mut self) -> Result<Submission, mpsc::error::TryRecvError> {
        self.rx.try_recv()
    }
}

pub(super) fn shutting_down() -> AppError {
    AppError::Unavailable("the service is shutting down".into())
}

pub(super) fn writer_stopped() -> AppError {
    AppError::Unavailable("the writer stopped before answering".into())
}

impl WriterHandle {
    /// Submits a command and waits for its answer.
    pub async fn submit(
        &self,
        actor: Principal,
        request_id: String,
        command: Command,
    ) -> Result<Outcome, AppError> {
        let answer =
            self.queue_part(vec![Envelope::new(actor, request_id, command, false)], true).await?;
        answer.await.map_err(|_| writer_stopped())?.pop().unwrap_or_else(|| Err(writer_stopped()))
    }

    /// Submits many commands at once, so that the writer can group them, and waits for every
    /// answer, in order.
    pub async fn submit_many(
        &self,
        actor: &Principal,
        commands: Vec<(String, Command)>,
    ) -> Vec<Result<Outcome, AppError>> {
        self.queue_many(actor, commands, false).await.wait().await
    }

    /// As [`WriterHandle::submit_many`], answered briefly (see [`Envelope::brief`]).
    pub async fn submit_many_brief(
        &self,
        actor: &Principal,
        commands: Vec<(String, Command)>,
    ) -> Vec<Result<Outcome, AppError>> {
        self.queue_many(actor, commands, true).await.wait().await
    }

    /// Queues many commands and returns without waiting for the answers, so that a caller can
    /// prepare its next commands while the writer works; `brief`: answered briefly (see
    /// [`Envelope::brief`]).
    pub async fn queue_many(
        &self,
        actor: &Principal,
        commands: Vec<(String, Command)>,
        brief: bool,
    ) -> Pending {
        let commands = commands.into_iter().map(|(id, command)| (id, command, false)).collect();
        self.queue_file(actor, commands, brief).await
    }

    /// A bank's file (`SubmitBatch`): its items that reached the writer, in order, each marked
    /// `true` when an earlier item of the file on the same loan was refused as sent (it is then
    /// held back, [`Envelope::after_refused`], unless answered before); answered briefly.
    pub async fn submit_file(
        &self,
        actor: &Principal,
        commands: Vec<(String, Command, bool)>,
    ) -> Vec<Result<Outcome, AppError>> {
        self.queue_file(actor, commands, true).await.wait().await
    }

    pub(super) async fn queue_file(
        &self,
        actor: &Principal,
        commands: Vec<(String, Command, bool)>,
        brief: bool,
    ) -> Pending {
        let mut parts = Vec::with_capacity(commands.len().div_ceil(PART_COMMANDS_MAX));
        let call = (commands.len() > 1).then(Arc::<Call>::default);
        let mut commands = commands.into_iter().peekable();
        while commands.peek().is_some() {
            let jobs: Vec<Envelope> = commands
                .by_ref()
                .take(PART_COMMANDS_MAX)
                .map(|(request_id, command, after_refused)| Envelope {
                    call: call.clone(),
                    after_refused,
                    ..Envelope::new(actor.clone(), request_id, command, brief)
                })
                .collect();
            let count = jobs.len();
            let ends_call = commands.peek().is_none();
            parts.push((count, self.queue_part(jobs, ends_call).await.ok()));
        }
        Pending { parts }
    }

    pub(super) async fn queue_part(
        &self,
        jobs: Vec<Envelope>,
        ends_call: bool,
    ) -> Result<oneshot::Receiver<Answers>, AppError> {
        let count = u32::try_from(jobs.len()).unwrap_or(u32::MAX);
        let permit =
            self.permits.clone().acquire_many_owned(count).await.map_err(|_| shutting_down())?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Submission { jobs, ends_call, reply, _permit: permit })
            .await
            .map_err(|_| shutting_down())?;
        Ok(answer)
    }
}

/// Answers still to come, in the order the commands were sent.
pub struct Pending {
    parts: Vec<(usize, Option<oneshot::Receiver<Answers>>)>,
}

impl Pending {
    pub async fn wait(self) -> Vec<Result<Outcome, AppError>> {
        let mut results = Vec::new();
        for (count, answer) in self.parts {
            let answers = match answer {
                None => Err(shutting_down as fn() -> AppError),
                Some(rx) => rx.await.map_err(|_| writer_stopped as fn() -> AppError),
            };
            match answers {
                Ok(answers) if answers.len() == count => results.extend(answers),
                Ok(_) => results.extend((0..count).map(|_| {
                    Err(AppError::Internal("the writer answered a part incompletely".into()))
                })),
                Err(error) => results.extend((0..count).map(|_| Err(error()))),
            }
        }
        results
    }
}

/// The answer of a command held back by its call ([`Call`]); `refused`: for an earlier command
/// refused as sent.
pub(super) fn held_back(env: &Envelope, refused: bool) -> AppError {
    let loan = env.loan().unwrap_or_default();
    let not_run = "this one was not run (nothing recorded); send the call again";
    let message = if refused {
        format!(
            "an earlier item of this call on loan {loan} was refused as sent: {not_run} once \
             that item is corrected (or its date has come); an item sent before and refused by \
             a rule is answered by its recorded refusal: corrected, it needs a new request id"
        )
    } else {
        format!("an earlier command of this call on loan {loan} went unanswered: {not_run}")
    };
    AppError::HeldBack { loan_id: loan.to_string(), refused_as_sent: refused, message }
}
