//! Stage 2 of verify, on a thread of its own: the replay. Every event is decoded and applied
//! through the domain rules to rebuild the loans and the registry from the journal alone, and
//! each loan event's postings are recomputed and compared with the stored ones. The loan
//! history links are rebuilt as the writer makes them ([`JournalEvent::loan_ids`]).

use crate::collections::HashMap;
use std::collections::BTreeMap;
use std::collections::hash_map::Entry;

use super::Problems;
use super::answers::{LoanAfter, Touching};
use crate::app::command::{RepaidPart, SettledTotals};
use crate::app::error::caught;
use crate::domain::date::{BusinessDate, format_date, parse_date};
use crate::domain::event::JournalEvent;
use crate::domain::household::{StatusEntry, never_lent_to_on};
use crate::domain::loan::{LoanEvent, LoanState, check_reversible};
use crate::domain::lpr::{LPR_LEDGER, LprEntry, SEEDED};
use crate::domain::policy::{PolicyVersion, default_versions, in_force_by_date};
use crate::domain::pool::{Pool, PoolEvent, PoolStatus};
use crate::domain::risk_fund::{Compensation, Fund, FundEvent};
use crate::domain::subsidy_claim::{Claim, ClaimEvent, Difference};
use crate::ledger::claim_postings::claim_postings;
use crate::ledger::fund_postings::fund_postings;
use crate::ledger::loan_postings::{loan_postings, reversal_postings};
use crate::ledger::pool_postings::pool_postings;
use crate::ledger::posting::{Posting, PostingError, Postings, is_packed, unpack};
use crate::store::bulk::RegistrySnapshot;
use crate::store::rows::StatusRow;
use crate::store::rows::{claim_texts, fund_text};

/// Transactions as stage 1 hands them on: their texts one after the other in one buffer, so
/// that a chunk is two allocations rather than several a transaction, each made on the scan's
/// thread and freed on this one. Stage 2 hands each chunk back emptied, to be filled again.
#[derive(Default)]
pub(super) struct Chunk {
    text: String,
    /// Each transaction's seq and where its kind, command, postings and value date end in
    /// `text`.
    txns: Vec<(u64, [usize; 4])>,
}

/// A transaction of a [`Chunk`].
pub(super) struct TxnText<'a> {
    pub seq: u64,
    pub kind: &'a str,
    pub command_json: &'a str,
    /// As stored ([`crate::ledger::posting::pack`]'s form, any JSON spacing).
    pub postings: &'a str,
    /// As stored (`YYYY-MM-DD`).
    pub value_date: &'a str,
}

impl Chunk {
    pub fn with_capacity(txns: usize) -> Chunk {
        Chunk { text: String::with_capacity(txns * 512), txns: Vec::with_capacity(txns) }
    }

    pub fn push(&mut self, t: TxnText<'_>) {
        let mut ends = [0; 4];
        for (end, text) in ends.iter_mut().zip([t.kind, t.command_json, t.postings, t.value_date]) {
            self.text.push_str(text);
            *end = self.text.len();
        }
        self.txns.push((t.seq, ends));
    }

    pub fn len(&self) -> usize {
        self.txns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.txns.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = TxnText<'_>> {
        let mut start = 0;
        self.txns.iter().map(move |&(seq, [kind, command_json, postings, value_date])| {
            let t = TxnText {
                seq,
                kind: &self.text[start..kind],
                command_json: &self.text[kind..command_json],
                postings: &self.text[command_json..postings],
                value_date: &self.text[postings..value_date],
            };
            start = value_date;
            t
        })
    }
}

/// A subsidy claim rebuilt from the journal, with the seqs of its submission and of its last
/// event.
#[derive(Debug)]
pub(super) struct ReplayedClaim {
    pub claim: Claim,
    pub submitted_seq: u64,
    pub last_seq: u64,
}

#[derive(Default)]
pub(super) struct Replay {
    pub loans: HashMap<String, LoanState>,
    pub registry: RegistrySnapshot,
    /// The seqs of each loan's history, ascending: the transactions whose event touches it.
    pub links: HashMap<String, Vec<u64>>,
    pub problems: Problems,
    /// The subsidy claims rebuilt, by claim id.
    pub claims: BTreeMap<String, ReplayedClaim>,
    /// The claim holding each loan-period, as the writer's `subsidy_claim_period` rows: a
    /// submitted line that holds its period (`ClaimLine::holds_period`) takes it if no claim
    /// does, and a step's released periods are let go.
    held_periods: HashMap<(String, BusinessDate), String>,
    /// The ledger's risk fund rebuilt, with the seq of its last event.
    pub fund: Option<(Fund, u64)>,
    /// Its events replayed, in journal order (the fund as of a date is rebuilt from them).
    fund_events: Vec<FundEvent>,
    /// Its compensations rebuilt, each with the seq of its last event, by loan id.
    pub compensations: BTreeMap<String, (Compensation, u64)>,
    /// Whether a claim or a payment of a compensation was replayed: the service records
    /// compensations in two steps from then on, and a one-step entry after it is forged.
    pub fund_claims_seen: bool,
    /// Its pools rebuilt, each with the seq of its last event, by pool id.
    pub pools: BTreeMap<String, (Pool, u64)>,
    /// The pool of each member loan.
    pub pool_of_loan: BTreeMap<String, String>,
    /// What each transaction touched, handed on to the recheck of the stored answers as it is
    /// replayed: only when asked ([`Replay::touching`]).
    touching: Option<Touching>,
    /// Whether the ledger replayed is the LPR table's chain ([`LPR_LEDGER`]), whose events are
    /// `lpr.set` alone; a region's ledger has none.
    lpr_chain: bool,
    /// The seqs the journal's reversals reverse, each with its reversal's seq, read before the
    /// replay ([`Replay::expect_reversals`]).
    reversed: HashMap<u64, u64>,
    /// The loan each reversed event met and the event, kept from the event to its reversal,
    /// which restores the loan so ([`crate::app::writer`]'s reversal stores the loan replayed
    /// without the event, the same state).
    kept: HashMap<u64, (LoanState, LoanEvent)>,
    /// The seqs of the journal's reversals.
    reversals: crate::collections::HashSet<u64>,
    /// The policy versions in force by date ([`in_force_by_date`]) for the count of versions
    /// recorded when they were worked out (versions are only added): a contract's figures are
    /// checked against them without sorting the versions again a contract.
    by_date: (usize, Vec<PolicyVersion>),
}

impl Replay {
    /// The replay of ledger `ledger_id` (the LPR table's chain, or a region's).
    pub fn of(ledger_id: &str) -> Replay {
        Replay { lpr_chain: ledger_id == LPR_LEDGER, ..Replay::default() }
    }

    /// Hands on what each transaction touched through `touching` (`None`: nothing is).
    pub fn touching(mut self, touching: Option<Touching>) -> Replay {
        self.touching = touching;
        self
    }

    /// The replay is done (or stopped): what was touched is all handed on.
    pub fn finish(&mut self) {
        if let Some(touching) = &mut self.touching {
            touching.finish();
        }
    }

    /// The LPR table's chain started at `seq` with `entries`: the rebuilt table is them. The
    /// chain starts once, at seq 1, and keeps the seeded entries as seeded.
    fn lpr_chain_started(&mut self, entries: Vec<LprEntry>, seq: u64) {
        if seq != 1 || !self.registry.lpr.is_empty() {
            self.problems.add(seq, format!("seq {seq}: the LPR table's chain starts again"));
        }
        let entries: Vec<(String, String, String)> = entries.iter().map(lpr_row).collect();
        for (date, tenor, rate) in SEEDED {
            match entries.iter().find(|e| (e.0.as_str(), e.1.as_str()) == (*date, *tenor)) {
                None => self.problems.add(
                    seq,
                    format!("seq {seq}: the LPR table's start lacks the seeded entry {date} {tenor}"),
                ),
                Some(e) if e.2 != *rate => self.problems.add(
                    seq,
                    format!(
                        "seq {seq}: the LPR table's start gives {date} {tenor} at {}, seeded at {rate}",
                        e.2
                    ),
                ),
                Some(_) => {}
            }
        }
        self.registry.lpr = entries;
    }

    /// An entry set in the LPR table's chain: one a date and tenor, after the chain's start.
    fn lpr_set(&mut self, entry: LprEntry, seq: u64) {
        if seq == 1 {
            self.problems
                .add(seq, "seq 1: the LPR table's chain does not start with the table".into());
        }
        let (date, tenor) = (format_date(entry.effective_from), entry.bucket.as_str());
        if let Some(set) = self.registry.lpr.iter().find(|e| (&e.0, e.1.as_str()) == (&date, tenor))
        {
            self.problems.add(
                seq,
                format!(
                    "seq {seq}: sets the LPR entry {date} {tenor} again (rate {}, was {})",
                    entry.rate, set.2
                ),
            );
        }
        self.registry.lpr.push(lpr_row(&entry));
    }

    /// Reports `what`, a record that moves no money, stored with postings.
    fn memo(&mut self, seq: u64, postings: &str, what: &str) {
        if !stored_as(&[], postings) {
            self.problems.add(seq, format!("seq {seq}: {what} carries postings"));
        }
    }

    /// Room for `loans` loans in all in the rebuilt loans and links, if it can be had (the
    /// count is the stored one: a hint).
    pub fn expect_loans(&mut self, loans: usize) {
        let _ = self.loans.try_reserve(loans.saturating_sub(self.loans.len()));
        let _ = self.links.try_reserve(loans.saturating_sub(self.links.len()));
    }

    /// The journal's reversals (each one's seq and the seq it reverses), before any
    /// transaction is replayed.
    pub fn expect_reversals(&mut self, reversals: Vec<(u64, u64)>) {
        self.reversals = reversals.iter().map(|&(seq, _)| seq).collect();
        self.reversed = reversals.into_iter().map(|(seq, reversed)| (reversed, seq)).collect();
    }

    /// Replays the reversal at `seq` of the event at `reversed_seq`: the loan is restored to
    /// what it was before that event, which must have been its latest, a repayment, dated the
    /// reversal's day; the postings expected are that event's, negated.
    fn replay_reversal(
        &mut self,
        event: &LoanEvent,
        seq: u64,
    ) -> Option<Result<Postings, PostingError>> {
        let LoanEvent::Reversed { loan_id, reversed_seq, value_date, .. } = event else {
            return None;
        };
        let mut problem = |what: String| {
            self.problems.add(seq, format!("seq {seq}: reverses entry {reversed_seq}: {what}"));
            None
        };
        if self.reversed.get(reversed_seq) != Some(&seq) {
            return problem("the journal's index of reversals does not list it".into());
        }
        let Some((before, reversed)) = self.kept.remove(reversed_seq) else {
            return problem(format!("not an event of loan {loan_id}"));
        };
        if reversed.loan_id() != loan_id {
            return problem(format!("an event of loan {}, not {loan_id}", reversed.loan_id()));
        }
        let Some(after) = self.loans.get(loan_id.as_str()) else {
            return problem(format!("loan {loan_id} is unknown"));
        };
        if let Err(e) = check_reversible(&reversed, *reversed_seq, after) {
            return problem(e.to_string());
        }
        if reversed.value_date() != *value_date {
            return problem(format!(
                "dated {}, the repayment {}",
                format_date(*value_date),
                format_date(reversed.value_date())
            ));
        }
        // Its latest entry standing, as the writer finds it: of every entry naming the loan
        // (its links, this reversal's last), the reversals and what they reversed aside.
        let links = self.links.get(loan_id.as_str()).map_or(&[][..], Vec::as_slice);
        let latest = links
            .iter()
            .rev()
            .copied()
            .filter(|s| *s < seq && !self.reversals.contains(s))
            .find(|s| self.reversed.get(s).is_none_or(|by| *by >= seq))
            .unwrap_or(0);
        if latest != *reversed_seq {
            return problem(format!("loan {loan_id}'s latest entry is {latest}, after it"));
        }
        if let Some(pool_id) = self.pool_of_loan.get(loan_id.as_str())
            && let Some((_, last)) = self.pools.get(pool_id)
            && *last > *reversed_seq
        {
            return problem(format!("entry {last} of loan {loan_id}'s pool {pool_id} is after it"));
        }
        // As the writer refuses it: a period a claim holds that the repayment may have paid on
        // time.
        let since = before.periods_payable_on_time_by(reversed.value_date());
        if let Some(((_, due), claim)) =
            self.held_periods.iter().find(|((id, due), _)| id == loan_id && *due >= since)
        {
            let due = format_date(*due);
            return problem(format!("claim {claim} holds loan {loan_id}'s period due {due}"));
        }
        let postings = reversal_postings(&reversed, &before.terms.bank_id);
        // (Known: `after` above is its current state.)
        if let Some(state) = self.loans.get_mut(loan_id.as_str()) {
            *state = before;
            if let Err(e) = state.apply(event, seq) {
                return problem(e.to_string());
            }
        }
        Some(postings)
    }

    pub fn apply(&mut self, t: TxnText<'_>) {
        let seq = t.seq;
        let event = JournalEvent::from_parts(t.kind, t.command_json);
        if let Some(touching) = &mut self.touching {
            touching.start(seq, event.as_ref().ok());
        }
        // The row's value date is hashed, not derived: changed with the chain's hashes made
        // again from it, only the event it should be the date of tells.
        if let Some(date) = event.as_ref().ok().and_then(JournalEvent::own_date)
            && parse_date(t.value_date) != Some(date)
        {
            self.problems.add(
                seq,
                format!(
                    "seq {seq}: its value date {:?} is not its event's, {}",
                    t.value_date,
                    format_date(date)
                ),
            );
        }
        if let Ok(event) = event.as_ref() {
            for loan_id in event.loan_ids() {
                match self.links.get_mut(loan_id) {
                    Some(seqs) => seqs.push(seq),
                    None => {
                        self.links.insert(loan_id.to_string(), vec![seq]);
                    }
                }
            }
        }
        // Each chain holds its own events: the LPR table's only its start and its entries.
        let of_lpr = |e: &JournalEvent| {
            matches!(e, JournalEvent::LprSet { .. } | JournalEvent::LprChainStarted { .. })
        };
        if let Ok(e) = &event
            && self.lpr_chain != of_lpr(e)
        {
            let kind = e.kind();
            let text = if self.lpr_chain {
                format!("seq {seq}: a {kind} event in the LPR table's chain")
            } else {
                format!("seq {seq}: a {kind} event outside the LPR table's chain")
            };
            self.problems.add(seq, text);
        }
        match event {
            // A panic in the domain's arithmetic (a bug, or an event altered into figures it
            // does not expect that decoding let through) is this event's break, not the end
            // of the verify: the auditor learns where the journal stops making sense.
            Ok(JournalEvent::Loan(event)) => match caught(|| {
                // A loan's own event a reversal names: the loan it met is kept for it (a
                // pool's collective repayment is the pool's, and not kept).
                if self.reversed.contains_key(&seq)
                    && let Some(loan) = self.loans.get(event.loan_id())
                {
                    self.kept.insert(seq, (loan.clone(), event.clone()));
                }
                self.replay_loan(event, seq)
            }) {
                Ok(Some(Ok(expected))) if stored_as(expected.as_slice(), t.postings) => {}
                Ok(Some(Ok(_))) => self
                    .problems
                    .add(seq, format!("seq {seq}: postings differ from those the event implies")),
                Ok(Some(Err(e))) => self.problems.add(seq, format!("seq {seq}: {e}")),
                Ok(None) => {}
                Err(why) => {
                    self.problems.add(seq, format!("seq {seq}: the event does not replay ({why})"))
                }
            },
            // (Outside the LPR table's chain, reported above and not rebuilt.)
            Ok(JournalEvent::LprChainStarted { entries }) => {
                if self.lpr_chain {
                    self.lpr_chain_started(entries, seq);
                    self.memo(seq, t.postings, "the LPR table");
                }
            }
            Ok(JournalEvent::LprSet { entry }) => {
                if self.lpr_chain {
                    self.lpr_set(entry, seq);
                    self.memo(seq, t.postings, "an LPR entry");
                }
            }
            Ok(JournalEvent::SubsidyClaimSubmitted { claim }) => {
                self.memo(seq, t.postings, "a subsidy claim");
                self.check_held_periods(&claim, seq);
                let claim_id = claim.claim_id.clone();
                let replayed = ReplayedClaim { claim: *claim, submitted_seq: seq, last_seq: seq };
                if self.claims.insert(claim_id.clone(), replayed).is_some() {
                    self.problems.add(seq, format!("seq {seq}: claim {claim_id} submitted twice"));
                }
            }
            Ok(JournalEvent::SubsidyClaim(event)) => self.replay_claim(&event, seq, t.postings),
            Ok(JournalEvent::RiskFund(event)) => {
                if let Err(why) = caught(|| self.replay_fund(&event, seq, t.postings)) {
                    self.problems.add(seq, format!("seq {seq}: the event does not replay ({why})"))
                }
            }
            Ok(JournalEvent::Pool(event)) => {
                if let Err(why) = caught(|| self.replay_pool(event, seq, t.postings)) {
                    self.problems.add(seq, format!("seq {seq}: the event does not replay ({why})"))
                }
            }
            Ok(other) => {
                replay_registry(&mut self.registry, other, seq);
                self.memo(seq, t.postings, "a registry record");
            }
            Err(e) => self.problems.add(seq, format!("seq {seq}: {e}")),
        }
        if let Some(touching) = &mut self.touching {
            touching.end();
        }
    }

    /// Checks a claim's marks of the loan-periods held by earlier claims, as the writer made
    /// them at its submission: a line that would hold its period (no other difference) is
    /// marked `ALREADY_CLAIMED` naming the claim that holds it if one does, and is not marked
    /// if none does. A mark made by hand (a period row forged in `subsidy_claim_period` while
    /// the claim was submitted, then removed) left a line unpaid that no read model shows; a
    /// mark missing, a period claimed twice. Then records the claim's lines as the claims of
    /// their periods.
    fn check_held_periods(&mut self, claim: &Claim, seq: u64) {
        for (index, line) in claim.lines.iter().enumerate() {
            let period = (line.claimed.loan_id.clone(), line.claimed.due_date);
            let would_hold = line.decision.is_none()
                && line.differences.iter().all(|d| *d == Difference::AlreadyClaimed);
            if would_hold {
                let holder = self.held_periods.get(&period).map(String::as_str);
                let marked = line
                    .differences
                    .contains(&Difference::AlreadyClaimed)
                    .then(|| line.claimed_by.as_deref().unwrap_or_default());
                if marked != holder {
                    let shown = |c: Option<&str>| c.map_or("none".into(), |c| format!("{c:?}"));
                    self.problems.add(
                        seq,
                        format!(
                            "seq {seq}: claim {} line {index} (loan {}, due {}): marked held by \
                             {}, but the period is held by {} as the journal stands",
                            claim.claim_id,
                            line.claimed.loan_id,
                            format_date(line.claimed.due_date),
                            shown(marked),
                            shown(holder)
                        ),
                    );
                }
            }
            if line.holds_period() {
                self.held_periods.entry(period).or_insert_with(|| claim.claim_id.clone());
            }
        }
    }

    /// Applies a step of a claim to the claim rebuilt so far, as the writer applied it, and
    /// checks its postings (`stored`).
    fn replay_claim(&mut self, event: &ClaimEvent, seq: u64, stored: &str) {
        let claim_id = event.claim_id();
        let Some(ReplayedClaim { claim, last_seq: last, .. }) = self.claims.get_mut(claim_id)
        else {
            self.problems.add(seq, format!("seq {seq}: event for unknown claim {claim_id}"));
            return;
        };
        match claim_postings(event, claim) {
            Ok(expected) if stored_as(expected.as_slice(), stored) => {}
            Ok(_) => self
                .problems
                .add(seq, format!("seq {seq}: postings differ from those the event implies")),
            Err(e) => self.problems.add(seq, format!("seq {seq}: {e}")),
        }
        for what in unfounded_decisions(event, claim, &self.loans, &self.registry.statuses) {
            self.problems.add(seq, format!("seq {seq}: {what}"));
        }
        match claim.apply(event, &self.registry.policies) {
            Ok(released) => {
                *last = seq;
                for period in released {
                    if self.held_periods.get(&period).is_some_and(|holder| holder == claim_id) {
                        self.held_periods.remove(&period);
                    }
                }
            }
            Err(e) => {
                self.problems.add(seq, format!("seq {seq}: cannot apply to claim {claim_id}: {e}"))
            }
        }
    }

    /// Applies an event of the ledger's risk fund as the writer did, after planning a
    /// compensation or a return again from the loan replayed so far (the state the writer
    /// planned it from) and comparing, and checks its postings (`stored`).
    fn replay_fund(&mut self, event: &FundEvent, seq: u64, stored: &str) {
        match fund_postings(event) {
            Ok(expected) if stored_as(expected.as_slice(), stored) => {}
            Ok(_) => self
                .problems
                .add(seq, format!("seq {seq}: postings differ from those the event implies")),
            Err(e) => self.problems.add(seq, format!("seq {seq}: {e}")),
        }
        if let FundEvent::Opened { ledger_id, opened_on, fund_share_percent } = event {
            // Planned again: a share the service never accepts (not 80 or 70) is reported.
            if let Err(e) = Fund::open(ledger_id, *opened_on, *fund_share_percent) {
                self.problems.add(seq, format!("seq {seq}: {e}"));
            }
            match (Fund::opened(event), &self.fund) {
                (_, Some(_)) => {
                    self.problems.add(seq, format!("seq {seq}: the risk fund is opened again"))
                }
                (Some(opened), None) => {
                    if let Some(touching) = &mut self.touching {
                        touching.fund(&opened, None);
                    }
                    self.fund = Some((opened, seq));
                    // The fund of a day is rebuilt from its opening (`pay_as_recorded`).
                    self.fund_events.push(event.clone());
                }
                (None, None) => {}
            }
            return;
        }
        let Some((fund, last)) = self.fund.as_mut() else {
            self.problems.add(seq, format!("seq {seq}: a risk fund event before its opening"));
            return;
        };
        match event {
            FundEvent::Claimed { .. } | FundEvent::Paid { .. } | FundEvent::Rejected { .. } => {
                self.fund_claims_seen = true
            }
            FundEvent::Compensated { .. } if self.fund_claims_seen => self.problems.add(
                seq,
                format!("seq {seq}: a compensation in one step after claims and payments were two"),
            ),
            _ => {}
        }
        let compensation = event.loan_id().and_then(|id| self.compensations.get(id)).map(|c| &c.0);
        // Each event planned again as the writer planned it, from the fund and the loan
        // replayed so far, and compared.
        let (planned, what) = match event {
            FundEvent::Deposited { value_date, source, amount_fen, voucher, .. } => (
                fund.deposit(*value_date, *source, *amount_fen, voucher).map_err(|e| e.to_string()),
                "the fund implies".to_string(),
            ),
            _ => {
                let loan_id = event.loan_id().unwrap_or_default();
                let planned = match (self.loans.get(loan_id), event, compensation) {
                    (None, ..) => Err(format!("loan {loan_id} unknown")),
                    (Some(loan), FundEvent::Compensated { .. }, c) => {
                        fund.compensate(loan, event.date(), c).map_err(|e| e.to_string())
                    }
                    (Some(loan), FundEvent::Claimed { .. }, c) => {
                        fund.claim(loan, event.date(), c).map_err(|e| e.to_string())
                    }
                    (Some(_), FundEvent::Paid { value_date, voucher, .. }, Some(c)) => fund
                        .pay_as_recorded(&self.fund_events, c, *value_date, voucher)
                        .map_err(|e| e.to_string()),
                    (Some(_), FundEvent::Rejected { value_date, reason, .. }, Some(c)) => {
                        fund.reject(c, *value_date, reason).map_err(|e| e.to_string())
                    }
                    (Some(loan), FundEvent::Returned { .. }, Some(c)) => {
                        fund.plan_return(c, loan, event.date()).map_err(|e| e.to_string())
                    }
                    (Some(_), ..) => Err(format!("loan {loan_id} has no compensation")),
                };
                (planned, format!("loan {loan_id} and the fund imply"))
            }
        };
        match planned {
            Ok(planned) if &planned == event => {}
            Ok(_) => self.problems.add(seq, format!("seq {seq}: differs from what {what}")),
            Err(e) => self.problems.add(seq, format!("seq {seq}: {e}")),
        }
        match fund.apply(event, compensation) {
            Ok(changed) => {
                *last = seq;
                self.fund_events.push(event.clone());
                if let Some(touching) = &mut self.touching {
                    touching.fund(fund, changed.as_ref());
                }
                if let Some(c) = changed {
                    // The loan compensated is marked as the writer marked it: no event but a
                    // settlement dated before the compensation replays after it.
                    match (event, self.loans.get_mut(&c.loan_id)) {
                        (FundEvent::Compensated { .. } | FundEvent::Claimed { .. }, Some(loan)) => {
                            *loan = loan.compensated(c.compensated_on, c.pending);
                        }
                        (FundEvent::Paid { .. }, Some(loan)) => *loan = loan.claim_paid(),
                        (FundEvent::Rejected { .. }, Some(loan)) => *loan = loan.claim_rejected(),
                        _ => {}
                    }
                    self.compensations.insert(c.loan_id.clone(), (c, seq));
                }
            }
            Err(e) => {
                self.problems.add(seq, format!("seq {seq}: cannot apply to the risk fund: {e}"))
            }
        }
    }

    /// Applies an event of a pool as the writer did, after planning it again from the pool and
    /// the loans replayed so far (the states the writer planned it from) and comparing, and
    /// checks its postings (`stored`). A collective repayment's parts are applied to their
    /// loans as their own repayments are.
    fn replay_pool(&mut self, event: PoolEvent, seq: u64, stored: &str) {
        match pool_postings(&event) {
            Ok(expected) if stored_as(expected.as_slice(), stored) => {}
            Ok(_) => self
                .problems
                .add(seq, format!("seq {seq}: postings differ from those the event implies")),
            Err(e) => self.problems.add(seq, format!("seq {seq}: {e}")),
        }
        let pool_id = event.pool_id().to_string();
        let members: Vec<String> = match (&event, self.pools.get(&pool_id)) {
            (PoolEvent::Agreed { members, .. }, _) => {
                members.iter().map(|m| m.loan_id.clone()).collect()
            }
            (_, Some((pool, _))) => pool.members.iter().map(|m| m.loan_id.clone()).collect(),
            (_, None) => {
                self.problems.add(seq, format!("seq {seq}: an event of unknown pool {pool_id}"));
                return;
            }
        };
        let loans: Vec<&LoanState> = members.iter().filter_map(|id| self.loans.get(id)).collect();
        if loans.len() != members.len() {
            self.problems.add(seq, format!("seq {seq}: pool {pool_id} names an unknown loan"));
            return;
        }
        let loan_of = |id: &str| loans.iter().copied().find(|l| l.terms.loan_id == id);
        let planned = match (&event, self.pools.get(&pool_id)) {
            (PoolEvent::Agreed { terms, .. }, existing) => {
                if existing.is_some() {
                    self.problems.add(seq, format!("seq {seq}: pool {pool_id} agreed twice"));
                }
                if let Some((loan_id, other)) =
                    members.iter().find_map(|id| self.pool_of_loan.get(id).map(|other| (id, other)))
                {
                    self.problems
                        .add(seq, format!("seq {seq}: loan {loan_id} is already in pool {other}"));
                }
                Pool::agree(terms, &loans, &self.registry.policies).map_err(|e| e.to_string())
            }
            (_, None) => Err(format!("pool {pool_id} unknown")),
            (PoolEvent::Transferred { loan_id, value_date, amount_fen, .. }, Some((pool, _))) => {
                match loan_of(loan_id) {
                    Some(loan) => pool.transfer(loan, *value_date, *amount_fen),
                    None => pool.member(loan_id).map(|_| event.clone()),
                }
                .map_err(|e| e.to_string())
            }
            (PoolEvent::ReturnPaid { loan_id, value_date, amount_fen, .. }, Some((pool, _))) => {
                pool.pay_return(loan_id, *value_date, *amount_fen).map_err(|e| e.to_string())
            }
            (PoolEvent::Participated { loan_id, value_date, kind, note, .. }, Some((pool, _))) => {
                pool.participate(loan_id, *value_date, *kind, note).map_err(|e| e.to_string())
            }
            (PoolEvent::Repaid { value_date, amount_fen, .. }, Some((pool, _))) => pool
                .plan_repayment(&loans, *value_date, *amount_fen)
                .map(|(planned, _)| planned)
                .map_err(|e| e.to_string()),
            // A settlement an earlier build recorded handed a written-off member's holding
            // back too ([`Pool::settle_as_recorded`]); not one after a write-off this build
            // recorded (which records the day the loan fell overdue): this build's rule.
            (PoolEvent::Settled { value_date, .. }, Some((pool, _))) => {
                let by_this_build = loans.iter().any(|l| {
                    l.status == crate::domain::loan::LoanStatus::WrittenOff
                        && l.servicing.written_off_overdue_since.is_some()
                });
                pool.settle(&loans, *value_date)
                    .and_then(|planned| {
                        if planned == event || by_this_build {
                            Ok(planned)
                        } else {
                            pool.settle_as_recorded(&loans, *value_date)
                        }
                    })
                    .map_err(|e| e.to_string())
            }
        };
        match planned {
            Ok(planned) if planned == event => {}
            Ok(_) => self.problems.add(
                seq,
                format!("seq {seq}: differs from what pool {pool_id} and its loans imply"),
            ),
            Err(e) => self.problems.add(seq, format!("seq {seq}: {e}")),
        }
        // The loans' parts, applied to them as their own repayments are.
        if let PoolEvent::Repaid { parts, .. } = &event {
            // Kept for the recheck of the stored answers: the parts' loans before.
            let before: HashMap<&str, LoanState> = match self.touching {
                Some(_) => parts
                    .iter()
                    .filter_map(|p| Some((p.loan_id(), self.loans.get(p.loan_id())?.clone())))
                    .collect(),
                None => HashMap::default(),
            };
            for part in parts {
                if let Some(Err(e)) = self.replay_loan(part.clone(), seq) {
                    self.problems.add(seq, format!("seq {seq}: {e}"));
                }
            }
            // Every member takes the repayment's day, as the writer marks them
            // (`Servicing::pool_repaid_on`).
            if let (Some((pool, _)), PoolEvent::Repaid { value_date, .. }) =
                (self.pools.get(&pool_id), &event)
            {
                for member in &pool.members {
                    if let Some(loan) = self.loans.get_mut(&member.loan_id) {
                        *loan = loan.pool_repaid(*value_date);
                    }
                }
            }
            if let Some(touching) = &mut self.touching {
                let (loans, before) = (&self.loans, &before);
                let repaid = RepaidPart::of_repayment(
                    &event,
                    |id: &str| before.get(id),
                    |id: &str| loans.get(id),
                );
                touching.parts(repaid);
            }
        }
        // The loan takes the transfer's day, as the writer marks it
        // (`Servicing::pool_transferred_on`).
        if let PoolEvent::Transferred { loan_id, value_date, .. } = &event
            && self.pools.contains_key(&pool_id)
            && let Some(loan) = self.loans.get_mut(loan_id)
            && loan.servicing.pool_transferred_on.is_none_or(|on| on < *value_date)
        {
            *loan = loan.pool_transferred(*value_date);
        }
        match &event {
            // A pool agreed twice (reported above) keeps its first agreement, and an event that
            // does not apply leaves the pool as it was, not changed in part (since 2026-12-07:
            // either left knock-on problems at later events hiding the first).
            PoolEvent::Agreed { .. } => {
                if let Some(pool) = Pool::agreed(&event)
                    && !self.pools.contains_key(&pool_id)
                {
                    for id in &members {
                        self.pool_of_loan.entry(id.clone()).or_insert_with(|| pool_id.clone());
                    }
                    self.pools.insert(pool_id, (pool, seq));
                }
            }
            _ => {
                if let Some((pool, last)) = self.pools.get_mut(&pool_id) {
                    // Only a collective repayment and a settlement can fail part way through
                    // (`Pool::apply`): they are applied to a copy; the others change nothing
                    // before they fail.
                    let applied = match &event {
                        PoolEvent::Repaid { .. } | PoolEvent::Settled { .. } => {
                            let mut next = pool.clone();
                            next.apply(&event).map(|()| *pool = next)
                        }
                        _ => pool.apply(&event),
                    };
                    match applied {
                        Ok(()) => *last = seq,
                        Err(e) => self
                            .problems
                            .add(seq, format!("seq {seq}: cannot apply to pool {pool_id}: {e}")),
                    }
                }
            }
        }
    }

    /// Recomputes the postings of `event` with its loan's bank and applies it to the loan
    /// (`None`: an event on an unknown loan). A new loan's terms move into its state.
    fn replay_loan(
        &mut self,
        event: LoanEvent,
        seq: u64,
    ) -> Option<Result<Postings, PostingError>> {
        if let LoanEvent::Reversed { .. } = &event {
            let postings = self.replay_reversal(&event, seq);
            self.touched_loan(&event);
            return postings;
        }
        let bank_id = match &event {
            LoanEvent::Created { terms } => &terms.bank_id,
            other => match self.loans.get(other.loan_id()) {
                Some(loan) => &loan.terms.bank_id,
                None => {
                    self.problems
                        .add(seq, format!("seq {seq}: event for unknown loan {}", other.loan_id()));
                    return None;
                }
            },
        };
        let postings = loan_postings(&event, bank_id);
        let settled = self.touching.is_some().then(|| SettledTotals::of(event.settlements()));
        let loan_id = self.touching.is_some().then(|| event.loan_id().to_string());
        match event {
            LoanEvent::Created { terms } => {
                // The policy's figures the contract carries for its life are those of the
                // version in force on its date, as recorded by then (since 2026-12-07: a
                // version row forged for one contract, then taken away, left it serviced with
                // its own penalty rates, grace and claim days, unseen).
                // (The LPR table's chain holds no contract: one there is reported as such.)
                let policies = &self.registry.policies;
                if self.by_date.0 != policies.len() {
                    self.by_date = (policies.len(), in_force_by_date(policies));
                }
                if !self.lpr_chain
                    && let Some(problem) = policy_figures_differ(&terms, &self.by_date.1, policies)
                {
                    self.problems.add(
                        seq,
                        format!("seq {seq}: loan {}'s contract {problem}", terms.loan_id),
                    );
                }
                match self.loans.entry(terms.loan_id.clone()) {
                    Entry::Occupied(mut loan) => {
                        self.problems
                            .add(seq, format!("seq {seq}: loan {} contracted twice", loan.key()));
                        loan.insert(LoanState::new(terms, seq));
                    }
                    Entry::Vacant(loan) => {
                        loan.insert(LoanState::new(terms, seq));
                    }
                }
            }
            other => {
                // A contract its pool's settlement took as closed (never paid out by its
                // maturity) is not paid out since: the writer refuses it from 2026-12-06, and
                // earlier builds took it, leaving a live loan in a settled pool.
                if matches!(other, LoanEvent::Disbursed { .. })
                    && let Some(pool_id) = self.pool_of_loan.get(other.loan_id())
                    && self.pools.get(pool_id).is_some_and(|(p, _)| p.status == PoolStatus::Settled)
                {
                    self.problems.add(
                        seq,
                        format!(
                            "seq {seq}: loan {} paid out after its pool {pool_id} was settled",
                            other.loan_id()
                        ),
                    );
                }
                if let Some(state) = self.loans.get_mut(other.loan_id())
                    && let Err(e) = state.apply(&other, seq)
                {
                    self.problems.add(
                        seq,
                        format!("seq {seq}: cannot apply to loan {}: {e}", other.loan_id()),
                    );
                }
            }
        }
        if let (Some(touching), Some(settled), Some(loan_id)) =
            (&mut self.touching, settled, loan_id)
            && let Some(loan) = self.loans.get(&loan_id)
        {
            let principal_outstanding_fen = loan.principal_outstanding_fen;
            touching.loan(&loan_id, LoanAfter { settled, principal_outstanding_fen });
        }
        Some(postings)
    }

    /// Hands on the loan `event` left, when the stored answers are rechecked (a reversal
    /// settles nothing).
    fn touched_loan(&mut self, event: &LoanEvent) {
        if let Some(touching) = &mut self.touching
            && let Some(loan) = self.loans.get(event.loan_id())
        {
            let principal_outstanding_fen = loan.principal_outstanding_fen;
            let settled = SettledTotals::of(event.settlements());
            touching.loan(event.loan_id(), LoanAfter { settled, principal_outstanding_fen });
        }
    }
}

/// What of a claim step's decisions taken from the loans and households the replay finds
/// unfounded (since 2026-12-07 evening): a line withheld at payment, or a line clawed back,
/// whose loan is neither marked misused (a clawback's by its day) nor found falsely obtained by
/// the household statuses recorded so far (its status on the contract date one the programme
/// never lends to). Every build's writer held to this much (the rules only widened); the other
/// way, a line of such a loan paid, is not judged (README, "What `Verify` does not judge
/// again": builds before the rules paid them).
fn unfounded_decisions(
    event: &ClaimEvent,
    claim: &Claim,
    loans: &HashMap<String, LoanState>,
    statuses: &[(String, i64, String, String, String)],
) -> Vec<String> {
    // The lines judged, each with the day a misuse mark must be by (none: any).
    let (judged, verdict): (Vec<(u32, Option<BusinessDate>)>, &str) = match event {
        ClaimEvent::Paid { withheld, .. } => {
            (withheld.iter().map(|r| (r.line, None)).collect(), "withheld at payment")
        }
        ClaimEvent::ClawedBack { line, clawed_back_on, .. } => {
            (vec![(*line, Some(*clawed_back_on))], "clawed back")
        }
        _ => return Vec::new(),
    };
    let loan_of = |line: u32| -> Result<(&String, &LoanState), String> {
        let Some(loan_id) = claim.lines.get(line as usize).map(|l| &l.claimed.loan_id) else {
            return Err(format!("line {line} of claim {} does not exist", claim.claim_id));
        };
        let Some(loan) = loans.get(loan_id.as_str()) else {
            return Err(format!("line {line}'s loan {loan_id} is unknown"));
        };
        Ok((loan_id, loan))
    };
    let marked = |loan: &LoanState, by: Option<BusinessDate>| {
        loan.servicing.misuse_marked_on().is_some_and(|on| by.is_none_or(|by| on <= by))
    };
    // The status series of the households of the loans not marked, read in one pass over the
    // ledger's status rows (in recording order, as `never_lent_to_on` reads them).
    let mut series: HashMap<&str, Vec<StatusEntry>> = judged
        .iter()
        .filter_map(|&(line, by)| loan_of(line).ok().filter(|(_, loan)| !marked(loan, by)))
        .map(|(_, loan)| (loan.terms.household_id.as_str(), Vec::new()))
        .collect();
    if !series.is_empty() {
        for (household_id, _, date, status, reason) in statuses {
            if let Some(entries) = series.get_mut(household_id.as_str()) {
                let (effective_date, status, reason) =
                    (date.clone(), status.clone(), reason.clone());
                entries.extend(StatusRow { effective_date, status, reason }.into_entry().ok());
            }
        }
    }
    let found = |line: u32, by: Option<BusinessDate>| -> Result<(), String> {
        let (loan_id, loan) = loan_of(line)?;
        if marked(loan, by) {
            return Ok(());
        }
        let t = &loan.terms;
        let entries = series.get(t.household_id.as_str()).map_or(&[][..], Vec::as_slice);
        if never_lent_to_on(entries, t.contract_date).is_some() {
            Ok(())
        } else {
            Err(format!(
                "line {line}'s loan {loan_id} is neither marked misused{} nor found falsely obtained",
                by.map(|by| format!(" by {}", format_date(by))).unwrap_or_default()
            ))
        }
    };
    judged
        .into_iter()
        .filter_map(|(line, by)| found(line, by).err())
        .map(|why| format!("{verdict}, but {why}"))
        .collect()
}

/// Whether `text`, a transaction's stored postings, holds `postings`: most often it is their
/// own [`pack`](crate::ledger::posting::pack)ed text, compared as it would be written (spaced
/// otherwise, it is read and compared). Text that cannot be read holds none (stage 1 reports
/// it).
fn stored_as(postings: &[Posting], text: &str) -> bool {
    is_packed(postings, text) || unpack(text).unwrap_or_default() == postings
}

/// The risk fund and its compensations rebuilt into the registry's rows, as the writer stores
/// them.
pub(super) fn fund_rows(
    registry: &mut RegistrySnapshot,
    fund: Option<(Fund, u64)>,
    compensations: BTreeMap<String, (Compensation, u64)>,
) {
    let seq_of = |seq: u64| i64::try_from(seq).unwrap_or(i64::MAX);
    if let Some((fund, seq)) = fund {
        let json = fund_text(&fund).unwrap_or_default();
        registry.risk_fund.push((json, fund.balance_fen.0, seq_of(seq)));
    }
    for (loan_id, (c, seq)) in compensations {
        let json = fund_text(&c).unwrap_or_default();
        registry.compensations.push((loan_id, c.bank_id, json, seq_of(seq)));
    }
}

/// The pools and their members rebuilt into the registry's rows, as the writer stores them.
pub(super) fn pool_rows(
    registry: &mut RegistrySnapshot,
    pools: BTreeMap<String, (Pool, u64)>,
    pool_of_loan: BTreeMap<String, String>,
) {
    let seq_of = |seq: u64| i64::try_from(seq).unwrap_or(i64::MAX);
    for (pool_id, (pool, seq)) in pools {
        let json = fund_text(&pool).unwrap_or_default();
        let status = pool.status.as_str().to_string();
        registry.pools.push((pool_id, pool.terms.bank_id, status, json, seq_of(seq)));
    }
    registry.pool_members.extend(pool_of_loan);
}

/// The claims rebuilt into the registry's rows, as the writer stores them: each claim's JSON
/// and the loan-periods its lines hold.
pub(super) fn claim_rows(registry: &mut RegistrySnapshot, claims: BTreeMap<String, ReplayedClaim>) {
    for (claim_id, ReplayedClaim { claim, submitted_seq, last_seq: seq }) in claims {
        let submitted = i64::try_from(submitted_seq).unwrap_or(i64::MAX);
        for line in claim.lines.iter().filter(|l| l.holds_period()) {
            let due_date = format_date(line.claimed.due_date);
            registry.claim_periods.push((line.claimed.loan_id.clone(), due_date, claim_id.clone()));
        }
        let (json, summary) = claim_texts(&claim).unwrap_or_default();
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let status = claim.status.as_str().to_string();
        registry.claims.push((claim_id, claim.bank_id, status, json, summary, seq, submitted));
    }
}

/// An LPR entry as the table stores it: (effective date, tenor, rate).
fn lpr_row(e: &LprEntry) -> (String, String, String) {
    (format_date(e.effective_from), e.bucket.as_str().to_string(), e.rate.to_string())
}

/// How a contract's policy figures (its penalty uplifts, grace days, rounding, longest
/// extension and claim days, fixed for its life) differ from those of the version in force on
/// its contract date among `by_date` (the versions recorded before it, in force by date:
/// [`in_force_by_date`]), if they do: the writer copies them from that version
/// (`plan_origination`, through [`crate::domain::policy::in_force`]), and refuses a contract
/// under none.
///
/// A contract recorded by a build before 2026-12-01 (4bec94f) took the latest-dated version
/// whole, a seeded step of the subsidy ratio included (it did not carry the version before it
/// on): its figures are those of that version, also accepted.
fn policy_figures_differ(
    terms: &crate::domain::loan::LoanTerms,
    by_date: &[PolicyVersion],
    recorded: &[PolicyVersion],
) -> Option<String> {
    let date = terms.contract_date;
    let in_force = by_date.iter().take_while(|v| v.effective_date <= date).last();
    let Some(version) = in_force else {
        return Some(format!(
            "is dated {}, when no policy version was in force as recorded by then",
            format_date(date)
        ));
    };
    let differing = |p: &crate::domain::policy::PolicyParams| -> Vec<&'static str> {
        let differ = [
            ("overdue uplift", terms.overdue_uplift != p.overdue_penalty_uplift),
            ("misuse uplift", terms.misuse_uplift != p.misuse_penalty_uplift),
            ("grace days", terms.grace_days != p.grace_days),
            ("rounding", terms.rounding != p.rounding),
            ("longest extension", terms.extension_months_max != p.extension_months_max),
            ("claim days", terms.claim_overdue_days != p.claim_overdue_days),
        ];
        differ.iter().filter(|(_, d)| *d).map(|(name, _)| *name).collect()
    };
    let names = differing(&version.params);
    if names.is_empty() {
        return None;
    }
    // (`max_by_key` gives the last of equal dates: the one recorded last, as the old rule.)
    let taken_whole =
        recorded.iter().filter(|v| v.effective_date <= date).max_by_key(|v| v.effective_date);
    if taken_whole.is_some_and(|v| differing(&v.params).is_empty()) {
        return None;
    }
    Some(format!(
        "carries policy figures ({}) other than those of the version in force on its date, {}, \
         as recorded by then",
        names.join(", "),
        format_date(version.effective_date)
    ))
}

/// Rebuilds the registry read model from a registry event (a new ledger starts with the default
/// policy versions, as the writer seeds them).
fn replay_registry(r: &mut RegistrySnapshot, event: JournalEvent, seq: u64) {
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    let status_row = |id: String, e: &crate::domain::household::StatusEntry| {
        (id, seq, format_date(e.effective_date), e.status.as_str().to_string(), e.reason.clone())
    };
    match event {
        JournalEvent::LedgerCreated { name, .. } => {
            r.ledger_name = Some(name);
            let defaults = default_versions();
            r.policy_seqs.extend(defaults.iter().map(|_| seq));
            r.policies.extend(defaults);
        }
        JournalEvent::BankRegistered { bank_id, name, .. } => r.banks.push((bank_id, name)),
        JournalEvent::HouseholdRegistered { household, status } => {
            r.statuses.push(status_row(household.household_id.clone(), &status));
            r.households.push((
                household.household_id,
                household.head_name,
                household.head_id_number,
                household.township,
                household.village,
            ));
        }
        JournalEvent::HouseholdStatusSet { household_id, entry } => {
            r.statuses.push(status_row(household_id, &entry));
        }
        JournalEvent::PolicySet { version, .. } => {
            r.policies.push(version);
            r.policy_seqs.push(seq);
        }
        JournalEvent::SubsidyClaimSubmitted { .. }
        | JournalEvent::SubsidyClaim(_)
        | JournalEvent::RiskFund(_)
        | JournalEvent::Pool(_)
        | JournalEvent::LprSet { .. }
        | JournalEvent::LprChainStarted { .. }
        | JournalEvent::Loan(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replay of a ledger created before its transactions: the default policy versions
    /// recorded, as `LedgerCreated` seeds them (its contracts carry their figures).
    fn seeded() -> Replay {
        let mut replay = Replay::default();
        replay.registry.policies.extend(default_versions());
        replay
    }
    use crate::domain::event::tests::LOAN_EVENTS;
    use crate::domain::money::Fen;
    use crate::ledger::posting::pack;

    /// The sample event `i` at `seq` with the postings the event implies, as stored.
    fn stored(i: usize, seq: u64) -> (u64, &'static str, &'static str, Vec<Posting>) {
        let (kind, json) = LOAN_EVENTS[i];
        let Ok(JournalEvent::Loan(event)) = JournalEvent::from_parts(kind, json) else {
            panic!("{kind} decodes");
        };
        let postings = loan_postings(&event, "BB").expect("postings").as_slice().to_vec();
        (seq, kind, json, postings)
    }

    /// The value date the writer gives an event's row (its own date; none decoded, none).
    fn value_date_of(kind: &str, command_json: &str) -> String {
        let event = JournalEvent::from_parts(kind, command_json).ok();
        event.and_then(|e| e.own_date()).map(format_date).unwrap_or_default()
    }

    /// Applies `txns` handed over in one chunk, their postings stored as `pack` writes them and
    /// dated as the writer dates them.
    fn apply(replay: &mut Replay, txns: &[(u64, &str, &str, Vec<Posting>)]) {
        let mut chunk = Chunk::default();
        for (seq, kind, command_json, postings) in txns {
            let postings = &pack(postings);
            let value_date = &value_date_of(kind, command_json);
            chunk.push(TxnText { seq: *seq, kind, command_json, postings, value_date });
        }
        assert_eq!(chunk.len(), txns.len());
        for t in chunk.iter() {
            replay.apply(t);
        }
    }

    /// A repayment (seq 3) and its reversal (seq 4, the sample reversal), their postings as
    /// stored, the reversal's the repayment's negated.
    fn repaid_and_reversed() -> Vec<(u64, &'static str, &'static str, Vec<Posting>)> {
        let repaid = stored(2, 3);
        let negated = repaid
            .3
            .iter()
            .map(|p| Posting { account: p.account.clone(), amount: Fen(-p.amount.0) });
        let (kind, json) = LOAN_EVENTS[10];
        vec![stored(0, 1), stored(1, 2), repaid.clone(), (4, kind, json, negated.collect())]
    }

    /// A reversal the journal's index lists, of the loan's latest entry, a repayment, with its
    /// postings negated: the loan is as its payout left it, its last seq the reversal's. Not
    /// listed by the index, or of a period a claim holds, or of a payout, it is reported.
    #[test]
    fn a_reversal_restores_the_loan_and_is_checked() {
        let mut replay = seeded();
        replay.expect_reversals(vec![(4, 3)]);
        apply(&mut replay, &repaid_and_reversed()[..2]);
        let paid_out = replay.loans["BB-0000000"].clone();
        apply(&mut replay, &repaid_and_reversed()[2..]);
        assert!(texts(&replay).is_empty(), "{:?}", texts(&replay));
        let mut expected = paid_out;
        expected.last_seq = 4;
        assert_eq!(replay.loans["BB-0000000"], expected);

        let mut unlisted = seeded();
        apply(&mut unlisted, &repaid_and_reversed());
        let problems = texts(&unlisted);
        assert!(problems[0].contains("index of reversals does not list it"), "{problems:?}");

        let mut claimed = seeded();
        claimed.expect_reversals(vec![(4, 3)]);
        let due = parse_date("2021-03-20").unwrap();
        claimed.held_periods.insert(("BB-0000000".into(), due), "BB-2021Q1".into());
        apply(&mut claimed, &repaid_and_reversed());
        let problems = texts(&claimed);
        assert!(problems[0].contains("claim BB-2021Q1 holds"), "{problems:?}");

        // The payout (seq 2) named instead, the reversal right after it.
        let mut payout = seeded();
        payout.expect_reversals(vec![(3, 2)]);
        let json = LOAN_EVENTS[10].1.replace(r#""reversed_seq":3"#, r#""reversed_seq":2"#);
        let json: &'static str = Box::leak(json.into_boxed_str());
        let mut txns = repaid_and_reversed();
        txns.remove(2);
        txns[2].0 = 3;
        txns[2].2 = json;
        apply(&mut payout, &txns);
        let problems = texts(&payout);
        assert!(problems.iter().any(|p| p.contains("only a repayment")), "{problems:?}");
    }

    /// A chunk gives back the texts pushed into it, and is empty once cleared.
    #[test]
    fn a_chunk_keeps_each_transactions_texts() {
        let mut chunk = Chunk::with_capacity(2);
        let texts = [
            (7, "a", "{}", "[]", "2021-01-25"),
            (8, "", "{\"x\":1}", "", ""),
            (9, "loan.repaid", "", "[[\"é\",1]]", "x"),
        ];
        for (seq, kind, command_json, postings, value_date) in texts {
            chunk.push(TxnText { seq, kind, command_json, postings, value_date });
        }
        let back: Vec<_> = chunk
            .iter()
            .map(|t| (t.seq, t.kind, t.command_json, t.postings, t.value_date))
            .collect();
        assert_eq!(back, texts);
        chunk.clear();
        assert!(chunk.is_empty() && chunk.iter().next().is_none());
    }

    /// Postings stored spaced otherwise are the same postings; unreadable text holds none.
    #[test]
    fn stored_postings_are_compared_as_postings() {
        let legs = stored(1, 2).3;
        assert!(stored_as(&legs, &pack(&legs)));
        assert!(stored_as(&legs, &pack(&legs).replace(',', " , ")));
        assert!(!stored_as(&legs[..1], &pack(&legs)));
        assert!(stored_as(&[], "not postings") && stored_as(&[], "[]"));
        assert!(!stored_as(&legs, "not postings"));
    }

    fn texts(replay: &Replay) -> Vec<&str> {
        replay.problems.list.iter().map(|(_, text)| text.as_str()).collect()
    }

    /// A payment an earlier build recorded dated before a deposit recorded ahead of it (before
    /// the rule of 2026-12-05 evening) is taken as recorded when the fund of its date held the
    /// fund's share, and reported otherwise: the fund of that date is rebuilt from its opening
    /// on (until 2026-12-07 the opening was left out of what it was rebuilt from, and every
    /// such payment was reported).
    #[test]
    fn a_payment_dated_before_a_later_deposit_is_judged_by_the_fund_of_its_date() {
        use crate::domain::loan::LoanCommand;
        use crate::domain::risk_fund::DepositSource;
        let d = |s: &str| parse_date(s).unwrap();
        let replayed = |first: i64, later: i64| {
            let mut terms = crate::bench::load::bench_terms("110101198001011234");
            (terms.loan_id, terms.ledger_id, terms.bank_id) = ("L1".into(), "L".into(), "B".into());
            let disburse = LoanCommand::Disburse { date: d("2021-01-25"), amount: None };
            let (_, loan) = LoanState::new(terms, 1).plan(&disburse).unwrap();
            let opened = Fund::open("L", d("2021-01-01"), 80).unwrap();
            let mut fund = Fund::opened(&opened).unwrap();
            let deposit =
                fund.deposit(d("2021-01-10"), DepositSource::Deposit, Fen(first), "V-1").unwrap();
            fund.apply(&deposit, None).unwrap();
            let claim = fund.claim(&loan, d("2021-06-20"), None).unwrap();
            let claimed = fund.apply(&claim, None).unwrap().unwrap();
            let more =
                fund.deposit(d("2021-07-01"), DepositSource::Deposit, Fen(later), "V-2").unwrap();
            fund.apply(&more, None).unwrap();
            // The payment as the builds before the rule recorded it, dated 06-25.
            let paid = FundEvent::Paid {
                ledger_id: "L".into(),
                loan_id: "L1".into(),
                bank_id: "B".into(),
                value_date: d("2021-06-25"),
                amount_fen: claimed.fund_fen,
                voucher: "P-1".into(),
            };

            let mut replay = seeded();
            replay.loans.insert("L1".into(), loan);
            for (seq, event) in [opened, deposit, claim, more, paid].iter().enumerate() {
                let postings = pack(fund_postings(event).unwrap().as_slice());
                replay.replay_fund(event, 10 + seq as u64, &postings);
            }
            texts(&replay).iter().map(|t| t.to_string()).collect::<Vec<_>>()
        };
        // 5,000,000 by 06-25 covers the fund's 4,000,000: the payment verifies.
        assert_eq!(replayed(5_000_000, 1_000_000), Vec::<String>::new());
        // 3,000,000 by 06-25 does not (the fund of that day would read -1,000,000): reported
        // at the payment, with the rule's reason.
        let short = replayed(3_000_000, 2_000_000);
        assert_eq!(short.len(), 1, "{short:?}");
        assert!(
            short[0].starts_with("seq 14: ") && short[0].contains("received money on 2021-07-01")
        );
    }

    /// A contract's policy figures are the version's in force on its date as recorded by then:
    /// the grace days of a version forged for it, then taken away, are reported at the contract
    /// (as the other figures would be); so is a contract under no version at all.
    #[test]
    fn a_contracts_policy_figures_are_its_dates_versions() {
        let (_, kind, json, _) = stored(0, 1);
        let grace = r#""grace_days":0"#;
        assert!(json.contains(grace), "{json}");
        let forged = json.replace(grace, r#""grace_days":30"#);
        let mut replay = seeded();
        apply(&mut replay, &[(1, kind, &forged, vec![])]);
        let expected = "seq 1: loan BB-0000000's contract carries policy figures (grace days) \
                        other than those of the version in force on its date, 2014-12-10, as \
                        recorded by then";
        assert_eq!(texts(&replay), [expected]);
        let mut replay = seeded();
        apply(&mut replay, &[stored(0, 1)]);
        assert!(texts(&replay).is_empty(), "{:?}", texts(&replay));
        // A ledger's own version of 2022 (grace 5 days) and a contract of 2024-03-01, after the
        // seeded ratio step of 2024-01-01: this build carries the 2022 figures on (grace 5);
        // a build before 2026-12-01 took the step whole (grace 0). Both are accepted, another
        // figure is not.
        let own = PolicyVersion {
            effective_date: parse_date("2022-01-01").unwrap(),
            params: crate::domain::policy::PolicyParams {
                grace_days: 5,
                ..crate::domain::policy::PolicyParams::default()
            },
        };
        let of_2024 = json.replace("2021-01-25", "2024-03-01");
        for (days, accepted) in [(0, true), (5, true), (7, false)] {
            let mut replay = seeded();
            replay.registry.policies.push(own.clone());
            let contract = of_2024.replace(grace, &format!(r#""grace_days":{days}"#));
            apply(&mut replay, &[(1, kind, &contract, vec![])]);
            let problems = texts(&replay);
            let about_figures = problems.iter().any(|p| p.contains("carries policy figures"));
            assert_eq!(about_figures, !accepted, "grace {days}: {problems:?}");
        }
        let mut unpoliced = Replay::default();
        apply(&mut unpoliced, &[stored(0, 1)]);
        assert_eq!(
            texts(&unpoliced),
            ["seq 1: loan BB-0000000's contract is dated 2021-01-25, when no policy version was \
              in force as recorded by then"]
        );
    }

    /// A row's value date that is not its event's is reported (it is hashed, not derived: made
    /// again with the chain's hashes, only the event tells); as the event's, it is not.
    #[test]
    fn a_value_date_not_the_events_is_reported() {
        let mut replay = seeded();
        let mut chunk = Chunk::default();
        for (i, seq) in [(0, 1), (1, 2)] {
            let (_, kind, command_json, postings) = stored(i, seq);
            let value_date =
                if seq == 2 { "2021-01-26".to_string() } else { value_date_of(kind, command_json) };
            let postings = &pack(&postings);
            chunk.push(TxnText { seq, kind, command_json, postings, value_date: &value_date });
        }
        for t in chunk.iter() {
            replay.apply(t);
        }
        let disbursed_on = value_date_of(LOAN_EVENTS[1].0, LOAN_EVENTS[1].1);
        assert_ne!(disbursed_on, "2021-01-26");
        let expected =
            format!("seq 2: its value date \"2021-01-26\" is not its event's, {disbursed_on}");
        assert_eq!(texts(&replay), [expected.as_str()]);
    }

    /// A contract never paid out, member of a direct pool settled at the contract's maturity,
    /// then paid out dated back (as builds before 2026-12-06 took it): reported at its seq.
    #[test]
    fn a_payout_into_a_settled_pool_is_reported() {
        use crate::domain::pool::{PoolMode, PoolTerms};
        let mut replay = seeded();
        let contract = stored(0, 1);
        apply(&mut replay, std::slice::from_ref(&contract));
        let loan = replay.loans["BB-0000000"].clone();
        let terms = PoolTerms {
            pool_id: "BB-P1".into(),
            ledger_id: loan.terms.ledger_id.clone(),
            bank_id: "BB".into(),
            mode: PoolMode::Direct,
            partner_id: "91450121MA5L000001".into(),
            partner_name: "合作社".into(),
            agreed_on: loan.terms.contract_date,
            return_rate: None,
            return_frequency: None,
        };
        let agreed = Pool::agree(&terms, &[&loan], &[]).expect("agreed");
        let mut pool = Pool::agreed(&agreed).expect("a pool");
        let maturity = loan.terms.maturity_date;
        let settled = pool.settle(&[&loan], maturity).expect("settled at the maturity");
        pool.apply(&settled).expect("applied");
        let text = |e: &PoolEvent| {
            let event = JournalEvent::Pool(e.clone());
            let postings = pool_postings(e).expect("postings").as_slice().to_vec();
            (event.kind(), event.to_json(), postings)
        };
        let (agreed_kind, agreed_json, agreed_postings) = text(&agreed);
        let (settled_kind, settled_json, settled_postings) = text(&settled);
        // The contract's own payout, dated on its contract date, before the maturity.
        let payout = stored(1, 4);
        apply(
            &mut replay,
            &[
                (2, agreed_kind, agreed_json.as_str(), agreed_postings),
                (3, settled_kind, settled_json.as_str(), settled_postings),
                payout,
            ],
        );
        assert_eq!(
            texts(&replay),
            ["seq 4: loan BB-0000000 paid out after its pool BB-P1 was settled"]
        );
    }

    #[test]
    fn a_loan_rebuilt_from_its_events() {
        let mut replay = seeded();
        apply(&mut replay, &[stored(0, 1), stored(1, 2), stored(2, 3)]);
        assert!(texts(&replay).is_empty(), "{:?}", texts(&replay));
        let loan = &replay.loans["BB-0000000"];
        assert_eq!(
            (loan.disbursed_fen, loan.principal_outstanding_fen),
            (Fen(5_000_000), Fen(4_999_900))
        );
        assert_eq!(loan.last_seq, 3);
        assert_eq!(replay.links["BB-0000000"], [1, 2, 3]);
    }

    #[test]
    fn what_does_not_replay_is_reported_at_its_seq() {
        let mut replay = seeded();
        // An event before its loan's contract.
        // Postings other than those the event implies (one posting's amount moved to another).
        let mut disbursed = stored(1, 3);
        assert!(disbursed.3.len() >= 2);
        disbursed.3[0].amount.0 += 1;
        disbursed.3[1].amount.0 -= 1;
        // The same contract again.
        apply(&mut replay, &[stored(1, 1), stored(0, 2), disbursed, stored(0, 4)]);
        assert_eq!(
            texts(&replay),
            [
                "seq 1: event for unknown loan BB-0000000",
                "seq 3: postings differ from those the event implies",
                "seq 4: loan BB-0000000 contracted twice",
            ]
        );
        assert_eq!(replay.problems.first_break_seq, 1);
        // The second contract replaced the first: the loan starts again from it.
        assert_eq!(replay.loans["BB-0000000"].last_seq, 4);
    }

    /// The LPR table's chain starts with the table (the seeded entries as seeded) and then
    /// holds `lpr.set` alone; a start that alters or lacks a seeded entry, a second start, an
    /// entry set twice, an event of another kind in it, or an entry in a region's ledger is
    /// reported.
    #[test]
    fn the_lpr_chain_rebuilds_the_table() {
        let entry = |date: &str, rate: &str| {
            format!(r#"{{"effective_date":"{date}","tenor":"1y","rate":"{rate}"}}"#)
        };
        let seeded: Vec<String> = SEEDED
            .iter()
            .map(|(d, t, r)| format!(r#"{{"effective_date":"{d}","tenor":"{t}","rate":"{r}"}}"#))
            .collect();
        let start = |entries: &[String]| format!(r#"{{"entries":[{}]}}"#, entries.join(","));
        let mut with_one_more = seeded.clone();
        with_one_more.push(entry("2025-06-20", "0.029"));
        let (first, again) = (entry("2026-11-20", "0.029"), entry("2026-11-20", "0.028"));
        let mut lpr = Replay::of(LPR_LEDGER);
        assert!(lpr.registry.lpr.is_empty());
        apply(
            &mut lpr,
            &[
                (1, "lpr.chain_started", &start(&with_one_more), vec![]),
                (2, "lpr.set", &first, vec![]),
                (3, "lpr.set", &again, vec![]),
                stored(0, 4),
            ],
        );
        assert_eq!(
            texts(&lpr),
            [
                "seq 3: sets the LPR entry 2026-11-20 1y again (rate 0.028, was 0.029)",
                "seq 4: a loan.created event in the LPR table's chain",
            ]
        );
        let rates: Vec<&str> =
            lpr.registry.lpr[SEEDED.len()..].iter().map(|e| e.2.as_str()).collect();
        assert_eq!(rates, ["0.029", "0.029", "0.028"]);

        // A start that alters a seeded rate and lacks another, started again; an entry first.
        let mut altered = seeded[1..].to_vec();
        altered[0] = altered[0].replace("0.0475", "0.05");
        let mut lpr = Replay::of(LPR_LEDGER);
        apply(
            &mut lpr,
            &[(1, "lpr.set", &first, vec![]), (2, "lpr.chain_started", &start(&altered), vec![])],
        );
        assert_eq!(
            texts(&lpr),
            [
                "seq 1: the LPR table's chain does not start with the table",
                "seq 2: the LPR table's chain starts again",
                "seq 2: the LPR table's start lacks the seeded entry 2015-10-24 1y",
                "seq 2: the LPR table's start gives 2015-10-24 5y at 0.05, seeded at 0.0475",
            ]
        );

        let mut region = Replay::of("450121");
        region.registry.policies.extend(default_versions());
        assert!(region.registry.lpr.is_empty());
        apply(&mut region, &[stored(0, 1), (2, "lpr.set", &first, vec![])]);
        assert_eq!(texts(&region), ["seq 2: a lpr.set event outside the LPR table's chain"]);
        assert!(region.registry.lpr.is_empty(), "not rebuilt: reported once");
    }
}
