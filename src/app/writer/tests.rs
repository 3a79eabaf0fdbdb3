//! The writer's reading of the loans it does not hold, on both backends: a writer started
//! afresh (an empty cache) settles loans repaid through another writer at their committed
//! state, whether the group is planned in its own transaction or ahead, while another group
//! commits (counted by [`PLANNED_AHEAD`]). The settlement run sends only its pages' loan ids,
//! so whatever the writer does not hold it reads itself, in either path.
//!
//! Also: the registry rows a group reads once for all its commands ([`super::Registry`]) are read
//! again after the group writes to them, and the households it reads at its start
//! ([`super::Group::households`]) are kept with what it registers or records of them; brief answers
//! ([`super::Envelope::brief`]); a loan changed by a group and again by the group planned while
//! that one commits; a settlement run over more loans than a page holds, and the same run retried.

use super::rules::still_lends;
use super::{Envelope, PART_COMMANDS_MAX, WriterHandle, spawn};
use crate::app::auth::{Principal, Role};
use crate::app::command::{Command, Outcome};
use crate::app::error::{AppError, unpanicked};
use crate::app::verify::verify_ledger;
use crate::bench::load::id_number;
use crate::domain::date::{BusinessDate, parse_date};
use crate::domain::event::HouseholdRecord;
use crate::domain::household::{HouseholdStatus, StatusEntry};
use crate::domain::loan::{LoanEvent, LoanState};
use crate::domain::money::Fen;
use crate::store::Db;

const LEDGER: &str = "T";
const BANK: &str = "BB";
/// 50,000.00 yuan at 3.85% (the bench's contract), disbursed on 2021-01-25.
const PRINCIPAL_FEN: i64 = 5_000_000;
/// Repaid on 2021-02-01.
const REPAID_FEN: i64 = 1_000_000;
/// Interest settled on 2021-03-20 on the principal as repaid: 5,000,000 fen for the 7 days of
/// 2021-01-25..31 and 4,000,000 for the 48 days of 2021-02-01..03-20, at 3.85% over 360 days:
/// (35,000,000 + 192,000,000) × 0.0385 / 360 = 24,276.39 fen. From a state before the
/// repayment (5,000,000 for all 55 days) it would be 29,409.72.
const INTEREST_AS_REPAID_FEN: i64 = 24_276;

/// The writer on `db`, its business day China's.
fn spawn_writer(db: &Db) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    spawn(db.clone(), crate::startup::business_utc_offset_default())
}

fn day(text: &str) -> BusinessDate {
    parse_date(text).expect("a valid date")
}

fn operator() -> Principal {
    Principal { role: Role::Operator, org: "*".into() }
}

fn finance() -> Principal {
    Principal { role: Role::Finance, org: LEDGER.into() }
}

fn bank() -> Principal {
    Principal { role: Role::Bank, org: BANK.into() }
}

fn loan_id(n: u32) -> String {
    format!("{BANK}-{n:07}")
}

async fn submit(w: &WriterHandle, actor: Principal, request_id: &str, command: Command) -> Outcome {
    match w.submit(actor, request_id.into(), command).await {
        Ok(outcome) => outcome,
        Err(e) => panic!("{request_id}: {e}"),
    }
}

/// The answers of calls queued together (one group when queued before the writer runs), in
/// order.
async fn answers_of(calls: Vec<super::Pending>) -> Vec<Result<Outcome, AppError>> {
    let mut results = Vec::new();
    for call in calls {
        results.extend(call.wait().await);
    }
    results
}

fn all_ok(results: Vec<Result<Outcome, AppError>>) {
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        panic!("{e}");
    }
}

fn loan_of(result: Result<Outcome, AppError>) -> (Box<LoanState>, i64) {
    match result {
        Ok(Outcome::Loan { loan, settled, .. }) => (loan, settled.interest_fen),
        other => panic!("a loan outcome, got {other:?}"),
    }
}

/// Migrates `db` and starts a writer on it holding a ledger with `loans` loans of
/// [`PRINCIPAL_FEN`], one household each, disbursed on 2021-01-25.
async fn disbursed_loans(db: &Db, loans: u32) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    db.migrate().await.unwrap();
    let (w, task) = spawn_writer(db);
    register_all(&w, loans).await;
    let contracts = (1..=loans).map(|n| contract(n, PRINCIPAL_FEN, "0.0385")).collect();
    all_ok(w.submit_many(&bank(), contracts).await);
    let disbursements = (1..=loans)
        .map(|n| {
            let command = Command::Disburse {
                loan_id: loan_id(n),
                value_date: day("2021-01-25"),
                amount_fen: None,
            };
            (format!("d{n}"), command)
        })
        .collect();
    all_ok(w.submit_many_brief(&bank(), disbursements).await);
    (w, task)
}

/// A ledger with `loans` disbursed loans, one household each, each repaid by [`REPAID_FEN`],
/// through a writer that is then stopped: the next writer holds none of them.
async fn repaid_loans(db: &Db, loans: u32) {
    let (w, task) = disbursed_loans(db, loans).await;
    for n in 1..=loans {
        let command = Command::RecordRepayment {
            loan_id: loan_id(n),
            value_date: day("2021-02-01"),
            amount_fen: Fen(REPAID_FEN),
            subsidy_netted_fen: Fen::ZERO,
        };
        submit(&w, bank(), &format!("r{n}"), command).await;
    }
    drop(w);
    task.await.unwrap();
}

thread_local! {
    /// Groups planned ahead whose commit started, on this thread: the writer of these tests
    /// runs on the test's own thread (a current-thread runtime), so each test counts its own.
    pub(super) static PLANNED_AHEAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Attempts at a group (or at one of its commands alone) after the pipeline's first, on
    /// this thread.
    pub(super) static GROUP_ATTEMPTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Whether every group of more than one command fails before it is planned (an internal
    /// error: its commands are then run one by one), on this thread.
    pub(super) static FAIL_GROUPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Groups holding a command whose request id starts with this fail as if the database
    /// were away (UNAVAILABLE), every attempt, on this thread.
    pub(super) static AWAY_FOR: std::cell::Cell<Option<&'static str>> =
        const { std::cell::Cell::new(None) };
}

fn settle(n: u32) -> (String, Command) {
    let command = Command::SettleLoan { loan_id: loan_id(n), date: day("2021-03-20") };
    (format!("settle/{}", loan_id(n)), command)
}

/// The settlement as it must be: on the principal as repaid, and the journal verifies.
async fn check_settled(db: &Db, results: Vec<Result<Outcome, AppError>>) {
    for result in results {
        let (loan, interest_fen) = loan_of(result);
        let id = &loan.terms.loan_id;
        assert_eq!(loan.principal_outstanding_fen, Fen(PRINCIPAL_FEN - REPAID_FEN), "loan {id}");
        assert_eq!(loan.principal_repaid_fen, Fen(REPAID_FEN), "loan {id}");
        assert_eq!(interest_fen, INTEREST_AS_REPAID_FEN, "loan {id}");
    }
    let report = verify_ledger(db, LEDGER).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
}

/// A full group: loan `n` settled [`super::PART_COMMANDS_MAX`] times in one call (once, then
/// with nothing due), so that a call queued behind it is planned while it commits.
fn full_group(n: u32) -> Vec<(String, Command)> {
    (0..PART_COMMANDS_MAX)
        .map(|i| {
            let command = Command::SettleLoan { loan_id: loan_id(n), date: day("2021-03-20") };
            (format!("fill/{i}"), command)
        })
        .collect()
}

/// Loans repaid through another writer are settled at their committed state by a writer that
/// holds none of them: loan 1 alone (the group is planned in its own transaction), then loans
/// 2 and 3 in a call queued behind a full group (settling loan 4 over and over: once, then
/// nothing due), so that they are planned while that group commits.
async fn loans_not_held_are_read_at_their_committed_state(db: &Db) {
    repaid_loans(db, 4).await;
    let (w, task) = spawn_writer(db);
    let alone = w.queue_many(&bank(), vec![settle(1)], false).await;
    check_settled(db, alone.wait().await).await;
    PLANNED_AHEAD.set(0);
    let first = w.queue_many(&bank(), full_group(4), false).await;
    let second = w.queue_many(&bank(), vec![settle(2), settle(3)], false).await;
    all_ok(first.wait().await);
    check_settled(db, second.wait().await).await;
    assert_eq!(PLANNED_AHEAD.get(), 1, "loans 2 and 3 were planned while the full group committed");
    drop(w);
    task.await.unwrap();
}

/// A settlement run over more loans than a page holds (a full page, then one loan), by a
/// writer that holds none of them: the run reads the ids a page at a time after the last one
/// (`live_loan_ids`), the writer reads the loans, and every loan is settled once, at 5,000,000
/// fen for the 55 days from 2021-01-25 (29,410 fen). The same run again under its request id
/// answers the same and posts nothing: the journal verifies and holds one settlement a loan.
async fn a_settlement_run_over_pages(db: &Db) {
    let loans = crate::app::servicing::SETTLEMENT_PAGE_LOANS + 1;
    let (w, task) = disbursed_loans(db, loans).await;
    drop(w);
    task.await.unwrap();

    let (w, task) = spawn_writer(db);
    PLANNED_AHEAD.set(0);
    let actor = bank();
    let run = || {
        crate::app::servicing::run_settlement(
            db,
            &w,
            &actor,
            "q1",
            LEDGER,
            Some(BANK),
            day("2021-03-20"),
        )
    };
    let first = run().await.unwrap();
    assert_eq!(
        (first.loans_examined, first.loans_settled, first.failed),
        (u64::from(loans), u64::from(loans), 0),
        "{:?}",
        first.failures
    );
    assert_eq!(first.interest_fen, i64::from(loans) * 29_410);
    assert!(PLANNED_AHEAD.get() >= 1, "part of the run was planned while a page committed");
    let again = run().await.unwrap();
    assert_eq!(again, first, "a retried run answers as the first did");
    drop(w);
    task.await.unwrap();
    let report = verify_ledger(db, LEDGER).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    // Per loan: its contract, its disbursement and one settlement; and the ledger's and the
    // bank's registrations, and each household's.
    let expected = 3 * u64::from(loans) + 2 + u64::from(loans);
    assert_eq!(report.transactions_checked, expected);
}

/// A contract of the bench's terms (12 months from 2021-01-25, bullet) for household `n`
/// (registered by [`registry_groups`]).
fn contract(n: u32, principal_fen: i64, rate: &str) -> (String, Command) {
    let mut terms = crate::bench::load::bench_terms(&id_number(n));
    terms.loan_id = loan_id(n);
    terms.contract_number = n.to_string();
    terms.bank_id = BANK.into();
    terms.household_id = format!("H{n}");
    terms.ledger_id = LEDGER.into();
    terms.principal_fen = Fen(principal_fen);
    terms.annual_rate = crate::domain::rate::AnnualRate::parse(rate).unwrap();
    (format!("c{n}"), Command::CreateLoan { terms })
}

/// Household `n` registered, as poor from 2016-03-01 (its head's ID number [`id_number`]`(n)`).
fn register(n: u32) -> (String, Command) {
    let household = HouseholdRecord {
        household_id: format!("H{n}"),
        ledger_id: LEDGER.into(),
        head_name: "h".into(),
        head_id_number: id_number(n),
        township: String::new(),
        village: String::new(),
    };
    let status = StatusEntry {
        status: HouseholdStatus::RegisteredPoor,
        effective_date: day("2016-03-01"),
        reason: String::new(),
    };
    (format!("h{n}"), Command::RegisterHousehold { household, status })
}

/// The ledger and its bank, the operator's (configuration), then households 1 to `households`
/// (one a loan: a household may owe at most one contract's principal), the finance office's:
/// two submissions.
fn registry_groups(households: u32) -> [(Principal, Vec<(String, Command)>); 2] {
    let setup = vec![
        ("l".to_string(), Command::CreateLedger { ledger_id: LEDGER.into(), name: "t".into() }),
        (
            "b".to_string(),
            Command::RegisterBank {
                ledger_id: LEDGER.into(),
                bank_id: BANK.into(),
                name: "b".into(),
            },
        ),
    ];
    [(operator(), setup), (finance(), (1..=households).map(register).collect())]
}

/// Submits [`registry_groups`], one after the other.
async fn register_all(w: &WriterHandle, households: u32) {
    for (actor, group) in registry_groups(households) {
        all_ok(w.submit_many(&actor, group).await);
    }
}

/// The groups that committed journal rows so far (a group's rows share its recorded time).
/// (The writer's: not the LPR table's chain's start, written at migration.)
async fn groups_committed(db: &Db) -> i64 {
    crate::on_pool!(db, p => {
        sqlx::query_scalar(
            "select count(distinct recorded_at_us) from journal_txn where kind <> 'lpr.chain_started'",
        )
            .fetch_one(p)
            .await
            .unwrap()
    })
}

/// One group, its commands queued before the writer runs (the test's runtime has one thread):
/// the ledger, bank and households; a contract (which reads the bank, the policy versions and
/// the LPR table); a policy version capping a household at 30,000 yuan; a contract of 50,000,
/// refused by it; a 1-year LPR of 3.00% from 2021-01-20; a contract at 3.85%, refused by it; a
/// contract at 3.00% within both, accepted. Had the group kept the policy versions or the LPR
/// table it read first, the two refused contracts would have been accepted.
async fn a_group_reads_its_own_registry_writes(db: &Db) {
    use crate::domain::lpr::{LprEntry, TenorBucket};
    use crate::domain::policy::{PolicyParams, PolicyVersion};
    db.migrate().await.unwrap();
    let (w, task) = spawn_writer(db);
    let version = PolicyVersion {
        effective_date: day("2021-01-01"),
        params: PolicyParams { household_principal_cap_fen: 3_000_000, ..PolicyParams::default() },
    };
    let policy = Command::SetPolicy { ledger_id: LEDGER.into(), version };
    let lpr = LprEntry {
        effective_from: day("2021-01-20"),
        bucket: TenorBucket::UpToOneYear,
        rate: crate::domain::rate::AnnualRate::parse("0.0300").unwrap(),
    };
    let [(op, setup), (office, households)] = registry_groups(4);
    let calls = vec![
        w.queue_many(&op, setup, false).await,
        w.queue_many(&office, households, false).await,
        w.queue_many(&bank(), vec![contract(1, PRINCIPAL_FEN, "0.0385")], false).await,
        w.queue_many(&office, vec![("p".into(), policy)], false).await,
        w.queue_many(&bank(), vec![contract(2, PRINCIPAL_FEN, "0.0385")], false).await,
        w.queue_many(&op, vec![("r".into(), Command::SetLpr { entry: lpr })], false).await,
        w.queue_many(&bank(), vec![contract(3, 2_000_000, "0.0385")], false).await,
        w.queue_many(&bank(), vec![contract(4, 2_000_000, "0.0300")], false).await,
    ];
    let results = answers_of(calls).await;
    let texts: Vec<String> = results
        .iter()
        .map(|r| match r {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        })
        .collect();
    let (registry, rest) = texts.split_at(6);
    assert!(registry.iter().all(|t| t == "ok"), "{registry:?}");
    assert_eq!(rest[0], "ok", "the first contract");
    assert_eq!(rest[1], "ok", "the policy version");
    assert!(rest[2].contains("over the cap of 30000.00"), "{}", rest[2]);
    assert_eq!(rest[3], "ok", "the LPR entry");
    assert!(rest[4].contains("exceeds the LPR cap 0.03 in force"), "{}", rest[4]);
    assert_eq!(rest[5], "ok", "the contract within both");
    let groups = groups_committed(db).await;
    assert_eq!(groups, 1, "the commands were one group");
    let report = verify_ledger(db, LEDGER).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    drop(w);
    task.await.unwrap();
}

/// The households, open loans and loan ids that a group's contracts, registrations and status
/// changes name are read once at the group's start ([`super::Group::households`],
/// [`super::Group::open_loans`]), and what the group itself registers, records or contracts
/// (staged, written at its commit) is seen by its later commands. After two groups (households 1, 2
/// and 7, loans 1 and 7 of households 1 and 7), one group: loan 1 again (exists, as stored); loan 8
/// of household 7 (over the cap with its stored loan 7, which no command of the group names);
/// household 1 again (exists, as stored); household 3 registered, then a loan of it (accepted: the
/// group keeps what it registers), another (over the cap with the group's own loan) and loan 3
/// again (exists, the group's own); household 2 set not eligible from 2016-06-01, then a loan of it
/// (refused: the group keeps the status it records), and the status change's answer with both
/// entries; a loan of household 4, never registered (not found); households 9 and 10 headed by
/// the heads of household 3 (the group's own) and household 7 (stored), both refused
/// ([`super::Group::headed`]). Had the group seen only what it read at its start, household 3's
/// loan would be refused as unregistered, household 2's accepted and household 9 registered; had
/// it not put the stored and its own loans under the cap, the loans over it would be accepted.
async fn a_group_reads_households_once_and_sees_its_own_changes(db: &Db) {
    db.migrate().await.unwrap();
    let (w, task) = spawn_writer(db);
    let [(op, setup), (office, mut households)] = registry_groups(2);
    households.push(register(7));
    all_ok(w.submit_many(&op, setup).await);
    all_ok(w.submit_many(&office, households).await);
    let contracts =
        vec![contract(1, PRINCIPAL_FEN, "0.0385"), contract(7, PRINCIPAL_FEN, "0.0385")];
    all_ok(w.submit_many(&bank(), contracts).await);
    let again = |(request_id, command): (String, Command)| (format!("{request_id}-again"), command);
    // Loan `n` of household `household` (its borrower the household's head).
    let loan_of = |n: u32, household: u32, request_id: &str| {
        let (_, mut command) = contract(household, PRINCIPAL_FEN, "0.0385");
        if let Command::CreateLoan { terms } = &mut command {
            terms.loan_id = loan_id(n);
            terms.contract_number = n.to_string();
        }
        (request_id.to_string(), command)
    };
    // Household `n` registered with household `head_of`'s head.
    let headed_by = |n: u32, head_of: u32| {
        let (_, mut command) = register(n);
        if let Command::RegisterHousehold { household, .. } = &mut command {
            household.head_id_number = id_number(head_of);
        }
        (format!("h{n}"), command)
    };
    let not_eligible = Command::SetHouseholdStatus {
        household_id: "H2".into(),
        entry: StatusEntry {
            status: HouseholdStatus::NotEligible,
            effective_date: day("2016-06-01"),
            reason: "audit".into(),
        },
    };
    let calls = vec![
        w.queue_many(&bank(), vec![again(contract(1, PRINCIPAL_FEN, "0.0385"))], false).await,
        w.queue_many(&bank(), vec![loan_of(8, 7, "c8")], false).await,
        w.queue_many(&office, vec![again(register(1))], false).await,
        w.queue_many(&office, vec![register(3)], false).await,
        w.queue_many(&bank(), vec![contract(3, PRINCIPAL_FEN, "0.0385")], false).await,
        w.queue_many(&bank(), vec![loan_of(6, 3, "c6")], false).await,
        w.queue_many(&bank(), vec![again(contract(3, PRINCIPAL_FEN, "0.0385"))], false).await,
        w.queue_many(&office, vec![("s2".into(), not_eligible)], false).await,
        w.queue_many(&bank(), vec![contract(2, PRINCIPAL_FEN, "0.0385")], false).await,
        w.queue_many(&bank(), vec![contract(4, PRINCIPAL_FEN, "0.0385")], false).await,
        w.queue_many(&office, vec![headed_by(9, 3)], false).await,
        w.queue_many(&office, vec![headed_by(10, 7)], false).await,
    ];
    let mut texts = Vec::new();
    for call in calls {
        texts.extend(call.wait().await.into_iter().map(|r| match r {
            // The status change answers with the household's series, its new entry last.
            Ok(Outcome::Household { household, statuses, .. })
                if household.household_id == "H2" =>
            {
                let series: Vec<&str> = statuses.iter().map(|s| s.status.as_str()).collect();
                format!("H2 {series:?}")
            }
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        }));
    }
    let expected = [
        "loan BB-0000001 already exists",
        "over the cap",
        "household H1 already exists",
        "ok",
        "ok",
        "over the cap",
        "loan BB-0000003 already exists",
        "H2 [\"registered_poor\", \"not_eligible\"]",
        "household H2 is not_eligible on 2021-01-25",
        "household H4 not found",
        "head_id_number already heads household H3 of ledger T",
        "head_id_number already heads household H7 of ledger T",
    ];
    assert_eq!(texts.len(), expected.len(), "{texts:?}");
    for (i, (text, expected)) in texts.iter().zip(expected).enumerate() {
        let right = if expected == "ok" { text == "ok" } else { text.contains(expected) };
        assert!(right, "command {i}: {text:?}, expected {expected:?}");
    }
    let groups = groups_committed(db).await;
    assert_eq!(
        groups, 4,
        "the ledger and bank, the households, the first loans, then the commands above as one group"
    );
    let report = verify_ledger(db, LEDGER).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    drop(w);
    task.await.unwrap();
}

/// A borrower belongs to one household of a ledger, within one group as across groups
/// ([`super::Group::borrowers`], [`super::Group::headed`]). One group, after the registry's two:
/// a loan of household 1 to a person who heads no household (accepted); a loan of household 2 to
/// the same person (refused: the group's own open loan puts them in household 1); a loan of
/// household 2 to household 3's head (refused: stored); a loan of household 2 to its own head
/// (accepted); a loan of household 1 to the first person again (accepted: the same household).
/// Then a loan to a person who heads two households, one stored before the rule.
async fn a_borrower_belongs_to_one_household(db: &Db) {
    db.migrate().await.unwrap();
    let (w, task) = spawn_writer(db);
    register_all(&w, 3).await;
    // Loan `n` of household `household` to the person of identity number `id`.
    let loan_to = |n: u32, household: u32, id: String| {
        let (_, mut command) = contract(household, 1_000_000, "0.0385");
        if let Command::CreateLoan { terms } = &mut command {
            terms.loan_id = loan_id(n);
            terms.contract_number = n.to_string();
            terms.borrower_id_number = id;
        }
        (format!("c{n}"), command)
    };
    let member = id_number(100);
    let calls = vec![
        w.queue_many(&bank(), vec![loan_to(21, 1, member.clone())], false).await,
        w.queue_many(&bank(), vec![loan_to(22, 2, member.clone())], false).await,
        w.queue_many(&bank(), vec![loan_to(23, 2, id_number(3))], false).await,
        w.queue_many(&bank(), vec![loan_to(24, 2, id_number(2))], false).await,
        w.queue_many(&bank(), vec![loan_to(25, 1, member)], false).await,
    ];
    let mut texts = Vec::new();
    for call in calls {
        texts.extend(call.wait().await.into_iter().map(|r| match r {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        }));
    }
    let expected = [
        "ok",
        "borrower_id_number belongs to household H1 of ledger T",
        "borrower_id_number belongs to household H3 of ledger T",
        "ok",
        "ok",
    ];
    assert_eq!(texts.len(), expected.len(), "{texts:?}");
    for (i, (text, expected)) in texts.iter().zip(expected).enumerate() {
        let right = if expected == "ok" { text == "ok" } else { text.contains(expected) };
        assert!(right, "command {i}: {text:?}, expected {expected:?}");
    }
    assert_eq!(groups_committed(db).await, 3, "the registry's two groups, then the contracts");
    let report = verify_ledger(db, LEDGER).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);

    // A person who heads two households, registered before the rule (stored by hand here), may
    // borrow for either, the one whose id sorts last too.
    db.execute_raw(&format!(
        "insert into household (household_id, ledger_id, head_name, head_id_number, township, \
         village) values ('H4', '{LEDGER}', 'h', '{}', '', '')",
        id_number(3)
    ))
    .await
    .unwrap();
    db.execute_raw(
        "insert into household_status (household_id, seq, effective_date, status, reason) \
         values ('H4', 1, '2016-03-01', 'registered_poor', '')",
    )
    .await
    .unwrap();
    let results = w.submit_many(&bank(), vec![loan_to(26, 4, id_number(3))]).await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    drop(w);
    task.await.unwrap();
}

/// Answers without the loan's state ([`super::Envelope::brief`]), as a settlement run and a
/// batch ask for them, in one part (so one group) with answers that want the state: a brief
/// settlement, then the same request again wanting the state, which is the loan as the group
/// holds it; a brief settlement, a repayment of its loan, and the settlement's request again
/// wanting the state, which the group no longer holds (asked again later, it is rebuilt from
/// the journal); a settlement wanting the state, then the same request briefly, which gets the
/// stored form. Retried in later groups, a brief answer is given back as stored (not rebuilt:
/// a stored principal outstanding altered on purpose comes back as it is), and one stored
/// without the principal outstanding (by an older version) is completed from the loan rebuilt.
async fn brief_answers(db: &Db) {
    repaid_loans(db, 3).await;
    let (w, task) = spawn_writer(db);
    let settle = |n: u32, brief: bool| {
        let command = Command::SettleLoan { loan_id: loan_id(n), date: day("2021-03-20") };
        Envelope::new(bank(), format!("s{n}"), command, brief)
    };
    let repay = Command::RecordRepayment {
        loan_id: loan_id(2),
        value_date: day("2021-03-21"),
        amount_fen: Fen(REPAID_FEN),
        subsidy_netted_fen: Fen::ZERO,
    };
    let jobs = vec![
        settle(1, true),
        settle(1, false),
        settle(2, true),
        Envelope::new(bank(), "r".into(), repay, false),
        settle(2, false),
        settle(3, false),
        settle(3, true),
    ];
    let answers = w.queue_part(jobs, true).await.unwrap().await.unwrap();
    let [brief_1, full_1, brief_2, repaid, again_2, full_3, brief_3] =
        <[_; 7]>::try_from(answers).unwrap();
    let Ok(Outcome::LoanRef { loan_id: id, entry, settled, principal_outstanding_fen }) = brief_1
    else {
        panic!("a brief answer, got {brief_1:?}");
    };
    assert_eq!((id.as_str(), settled.interest_fen), (loan_id(1).as_str(), INTEREST_AS_REPAID_FEN));
    assert_eq!(principal_outstanding_fen, Some(Fen(PRINCIPAL_FEN - REPAID_FEN)));
    let Ok(Outcome::Loan { loan, entry: full_entry, settled: full_settled }) = full_1 else {
        panic!("the loan, got {full_1:?}");
    };
    assert_eq!((full_entry.seq, full_settled.interest_fen), (entry.seq, INTEREST_AS_REPAID_FEN));
    assert_eq!(loan.last_seq, entry.seq);
    assert_eq!(loan.servicing.interest_settled_fen, Fen(INTEREST_AS_REPAID_FEN));
    let Ok(Outcome::LoanRef { entry: brief_2_entry, .. }) = brief_2 else {
        panic!("a brief answer, got {brief_2:?}");
    };
    let (repaid, _) = loan_of(repaid);
    // The repayment pays the interest settled the day before first, then principal.
    let principal_paid = REPAID_FEN - INTEREST_AS_REPAID_FEN;
    assert_eq!(repaid.principal_outstanding_fen, Fen(PRINCIPAL_FEN - REPAID_FEN - principal_paid));
    match again_2 {
        Err(AppError::Unavailable(m)) => {
            assert!(m.contains("s2") && m.contains("ask again"), "{m}")
        }
        other => panic!("the loan changed since the brief answer: {other:?}"),
    }
    let (loan_3, _) = loan_of(full_3);
    let Ok(Outcome::LoanRef { loan_id: id, entry, principal_outstanding_fen, .. }) = brief_3 else {
        panic!("the full answer's stored form, got {brief_3:?}");
    };
    assert_eq!((id, entry.seq), (loan_id(3), loan_3.last_seq));
    assert_eq!(principal_outstanding_fen, Some(loan_3.principal_outstanding_fen));

    // Retried: briefly as stored, or with the loan as it stood after the settlement.
    let actor = bank();
    let retry = |brief: bool| {
        let command = Command::SettleLoan { loan_id: loan_id(2), date: day("2021-03-20") };
        w.queue_many(&actor, vec![("s2".into(), command)], brief)
    };
    let [brief_again] = <[_; 1]>::try_from(retry(true).await.wait().await).unwrap();
    let Ok(Outcome::LoanRef { entry: entry_2, settled, principal_outstanding_fen, .. }) =
        brief_again
    else {
        panic!("the stored brief answer, got {brief_again:?}");
    };
    assert_eq!(principal_outstanding_fen, Some(Fen(PRINCIPAL_FEN - REPAID_FEN)), "as settled");
    assert_eq!((entry_2.seq, settled.interest_fen), (brief_2_entry.seq, INTEREST_AS_REPAID_FEN));
    let [full_again] = <[_; 1]>::try_from(retry(false).await.wait().await).unwrap();
    let Ok(Outcome::Loan { loan, entry, .. }) = full_again else {
        panic!("the loan rebuilt, got {full_again:?}");
    };
    assert_eq!((entry.seq, loan.last_seq), (entry_2.seq, entry_2.seq));
    assert_eq!(loan.principal_outstanding_fen, Fen(PRINCIPAL_FEN - REPAID_FEN), "before 03-21");

    // A stored answer is given back as stored: its principal outstanding altered on purpose
    // comes back altered.
    store_altered(db, "s2", "altered-s2", Some(1)).await;
    let command = Command::SettleLoan { loan_id: loan_id(2), date: day("2021-03-20") };
    let altered = w.queue_many(&actor, vec![("altered-s2".into(), command)], true);
    let [altered] = <[_; 1]>::try_from(altered.await.wait().await).unwrap();
    assert!(
        matches!(altered, Ok(Outcome::LoanRef { principal_outstanding_fen: Some(Fen(1)), .. })),
        "{altered:?}"
    );
    // An answer stored without the principal outstanding (by an older version): a brief retry
    // is completed from the loan rebuilt from its journal as the settlement left it.
    store_altered(db, "s2", "old-s2", None).await;
    let command = Command::SettleLoan { loan_id: loan_id(2), date: day("2021-03-20") };
    let old = w.queue_many(&actor, vec![("old-s2".into(), command)], true);
    let [old] = <[_; 1]>::try_from(old.await.wait().await).unwrap();
    let Ok(Outcome::LoanRef { entry, principal_outstanding_fen, .. }) = old else {
        panic!("a brief answer, got {old:?}");
    };
    assert_eq!(entry.seq, entry_2.seq);
    assert_eq!(principal_outstanding_fen, Some(Fen(PRINCIPAL_FEN - REPAID_FEN)), "rebuilt");
    // The two answers stored by hand under requests the journal does not have are what verify
    // reports, and nothing else.
    let report = verify_ledger(db, LEDGER).await.unwrap();
    let forged = format!("seq {}: an idempotency record of another request names it", entry_2.seq);
    assert_eq!(report.problems, [forged.clone(), forged], "{:?}", report.problems);
    drop(w);
    task.await.unwrap();
}

/// Stores the answer to request `from` again under request `to`, with its principal outstanding
/// replaced (`None`: without one, as an older version stored it).
async fn store_altered(db: &Db, from: &str, to: &str, principal_fen: Option<i64>) {
    let select = "select scope, fingerprint, result_json, ledger_id, seq from idempotency \
                  where request_id = $1";
    let row: Result<(String, String, String, String, i64), sqlx::Error> =
        crate::on_pool!(db, p => sqlx::query_as(select).bind(from).fetch_one(p).await);
    let (scope, fingerprint, json, ledger_id, seq) = row.unwrap();
    let mut answer: serde_json::Value = serde_json::from_str(&json).unwrap();
    let brief = answer.as_object_mut().expect("an object");
    assert_eq!(brief.get("outcome").and_then(|o| o.as_str()), Some("loan_ref"), "{json}");
    assert!(brief.remove("principal_outstanding_fen").is_some(), "stored with it: {json}");
    if let Some(fen) = principal_fen {
        brief.insert("principal_outstanding_fen".into(), fen.into());
    }
    let insert = "insert into idempotency (scope, request_id, fingerprint, result_json, ledger_id, \
                  seq) values ($1, $2, $3, $4, $5, $6)";
    let answer = answer.to_string();
    let inserted = crate::on_pool!(db, p => sqlx::query(insert)
        .bind(&scope)
        .bind(to)
        .bind(&fingerprint)
        .bind(&answer)
        .bind(&ledger_id)
        .bind(seq)
        .execute(p)
        .await
        .map(drop));
    inserted.unwrap();
}

/// Two groups changing the same loan, the second planned while the first commits (a full
/// group settling loan 1, then two repayments of it): the second's commit starts as the first
/// lands, and a third command sees both groups' changes. 1,000.00 yuan repaid on 2021-03-21
/// pays the 24,276 fen of interest settled the day before first and 75,724 of principal; the
/// next two pay principal only.
async fn a_loan_changed_again_by_the_group_planned_ahead(db: &Db) {
    repaid_loans(db, 1).await;
    let (w, task) = spawn_writer(db);
    PLANNED_AHEAD.set(0);
    let repay = |i: u32| {
        let command = Command::RecordRepayment {
            loan_id: loan_id(1),
            value_date: day("2021-03-21"),
            amount_fen: Fen(100_000),
            subsidy_netted_fen: Fen::ZERO,
        };
        (format!("repay/{i}"), command)
    };
    let first = w.queue_many(&bank(), full_group(1), false).await;
    let second = w.queue_many(&bank(), vec![repay(1), repay(2)], false).await;
    let settled: i64 = first
        .wait()
        .await
        .into_iter()
        .map(|r| match r {
            Ok(Outcome::Loan { settled, .. }) => settled.interest_fen,
            Ok(Outcome::LoanUnchanged { .. }) => 0,
            other => panic!("a settlement, got {other:?}"),
        })
        .sum();
    assert_eq!(settled, INTEREST_AS_REPAID_FEN, "settled once");
    let outstanding: Vec<i64> =
        second.wait().await.into_iter().map(|r| loan_of(r).0.principal_outstanding_fen.0).collect();
    let after_first = PRINCIPAL_FEN - REPAID_FEN - (100_000 - INTEREST_AS_REPAID_FEN);
    assert_eq!(outstanding, [after_first, after_first - 100_000]);
    assert_eq!(
        PLANNED_AHEAD.get(),
        1,
        "the repayments were planned while the settlement committed"
    );
    let (third, _) = loan_of(Ok(submit(&w, bank(), "repay/3", repay(3).1).await));
    assert_eq!(third.principal_outstanding_fen, Fen(after_first - 200_000));
    let report = verify_ledger(db, LEDGER).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    drop(w);
    task.await.unwrap();
}

/// A repayment of [`REPAID_FEN`] on 2021-02-01 of each of loans 1 to 3 (request ids
/// `<prefix>/<n>`).
fn three_repayments(prefix: &str) -> Vec<(String, Command)> {
    (1..=3)
        .map(|n| {
            let command = Command::RecordRepayment {
                loan_id: loan_id(n),
                value_date: day("2021-02-01"),
                amount_fen: Fen(REPAID_FEN),
                subsidy_netted_fen: Fen::ZERO,
            };
            (format!("{prefix}/{n}"), command)
        })
        .collect()
}

/// Three answers, each UNAVAILABLE.
fn all_unavailable(results: Vec<Result<Outcome, AppError>>) {
    assert_eq!(results.len(), 3);
    for r in &results {
        assert!(matches!(r, Err(AppError::Unavailable(_))), "{r:?}");
    }
}

/// With the database away, a group's commands are answered UNAVAILABLE after the group's own
/// retries, not run again one by one with retries each.
async fn a_group_with_the_database_away(db: &Db) {
    let (w, task) = disbursed_loans(db, 3).await;
    db.close().await;
    GROUP_ATTEMPTS.set(0);
    all_unavailable(w.submit_many(&bank(), three_repayments("away")).await);
    // Counted: the attempts after the first (the writer's pipeline plans a group once before
    // it fails over to them), 12 when each command was then run alone with three of its own.
    assert_eq!(GROUP_ATTEMPTS.get(), 3, "the group's three more attempts, and no more");
    drop(w);
    task.await.unwrap();
}

/// A group that failed otherwise is run one command at a time; once one of them finds the
/// database away (its own retries spent), the commands after it are answered UNAVAILABLE at
/// once, not each after retries of its own.
async fn commands_run_one_by_one_stop_when_the_database_is_away(db: &Db) {
    let (w, task) = disbursed_loans(db, 3).await;
    db.close().await;
    FAIL_GROUPS.set(true);
    GROUP_ATTEMPTS.set(0);
    let results = w.submit_many(&bank(), three_repayments("one-by-one")).await;
    FAIL_GROUPS.set(false);
    all_unavailable(results);
    // The first command's three attempts alone; nine when the others were run too.
    assert_eq!(GROUP_ATTEMPTS.get(), 3, "the first command's attempts, and no more");
    drop(w);
    task.await.unwrap();
}

/// A call cut into parts whose first part goes unanswered (the database away for it): a later
/// part's command on a loan of that part is held back, answered UNAVAILABLE and not run or
/// recorded (run, it would come before the commands it follows in the call, and a refusal it
/// got would be given again when the call is sent again), while one on another loan is run.
/// Sent again, the call runs in its order.
async fn a_call_holds_back_the_loans_of_an_unanswered_part(db: &Db) {
    let (w, task) = disbursed_loans(db, 3).await;
    let repay = |prefix: &str, i: usize, n: u32| {
        let command = Command::RecordRepayment {
            loan_id: loan_id(n),
            value_date: day("2021-02-01"),
            amount_fen: Fen(1),
            subsidy_netted_fen: Fen::ZERO,
        };
        (format!("{prefix}/{i}"), command)
    };
    // The first part: 500 repayments on loans 1 and 2; the second: one on loan 1, one on 3.
    let mut call: Vec<(String, Command)> =
        (0..PART_COMMANDS_MAX).map(|i| repay("away", i, 1 + (i % 2) as u32)).collect();
    call.push(repay("later", 0, 1));
    call.push(repay("later", 1, 3));
    AWAY_FOR.set(Some("away"));
    let results = w.submit_many(&bank(), call.clone()).await;
    AWAY_FOR.set(None);
    assert_eq!(results.len(), PART_COMMANDS_MAX + 2);
    for r in &results[..PART_COMMANDS_MAX] {
        assert!(matches!(r, Err(AppError::Unavailable(_))), "{r:?}");
    }
    let held = &results[PART_COMMANDS_MAX];
    // (Neither of the first part's loans was changed: loan 3's repayment is the one posted.)
    assert!(
        matches!(held, Err(AppError::HeldBack { message, refused_as_sent: false, .. })
            if message.contains("went unanswered")),
        "{held:?}"
    );
    assert!(results[PART_COMMANDS_MAX + 1].is_ok(), "{:?}", results[PART_COMMANDS_MAX + 1]);
    // Nothing was recorded for the held-back command: sent again, the call runs whole, the
    // last command answered as before.
    let again = w.submit_many(&bank(), call).await;
    all_ok(again);
    drop(w);
    task.await.unwrap();
}

/// A run that stopped part-way (its summary not recorded: the database went away, or the
/// server) is sent again after a loan it settled was paid off: no longer live, that loan is
/// still the run's, answered from its record, and the retry's summary counts it as the first
/// attempt did (it counted the live loans only, and its figures came out short, recorded so).
async fn a_retried_run_counts_the_loans_it_settled_before(db: &Db) {
    use crate::app::servicing::{loan_request_id, run_settlement};
    let (w, task) = disbursed_loans(db, 3).await;
    let actor = bank();
    let date = day("2021-03-20");
    // What the first attempt left: the run's record and loan 1's settlement.
    let run = Command::SettlementRun { ledger_id: LEDGER.into(), bank_id: Some(BANK.into()), date };
    submit(&w, actor.clone(), "q1", run).await;
    let settle_1 = Command::SettleLoan { loan_id: loan_id(1), date };
    all_ok(w.submit_many_brief(&actor, vec![(loan_request_id("q1", &loan_id(1)), settle_1)]).await);
    // Loan 1 paid off since: principal and the interest of 2021-01-25 ..= 03-20.
    let payoff = Command::RecordRepayment {
        loan_id: loan_id(1),
        value_date: date,
        amount_fen: Fen(PRINCIPAL_FEN + 29_410),
        subsidy_netted_fen: Fen::ZERO,
    };
    submit(&w, actor.clone(), "payoff-1", payoff).await;
    let summary = run_settlement(db, &w, &actor, "q1", LEDGER, Some(BANK), date).await.unwrap();
    assert_eq!(
        (summary.loans_examined, summary.loans_settled, summary.failed),
        (3, 3, 0),
        "{summary:?}"
    );
    assert_eq!(summary.interest_fen, 3 * 29_410);
    assert_eq!(summary.loans_no_longer_live, 0);
    drop(w);
    task.await.unwrap();
}

/// A closed queue ([`WriterHandle::close`]: a server that stopped waiting for its connections,
/// whose handles remain) answers what it holds, refuses what comes after, and the writer stops
/// with handles still alive.
async fn a_closed_queue_answers_what_it_holds_and_stops(db: &Db) {
    let (w, task) = disbursed_loans(db, 2).await;
    let kept = w.clone();
    let repay = |n: u32, i: usize| {
        let command = Command::RecordRepayment {
            loan_id: loan_id(n),
            value_date: day("2021-02-01"),
            amount_fen: Fen(1),
            subsidy_netted_fen: Fen::ZERO,
        };
        (format!("c{n}/{i}"), command, false)
    };
    let commands = (0..10).map(|i| repay(1 + i as u32 % 2, i)).collect();
    let queued = w.queue_file(&bank(), commands, false).await;
    w.close();
    let answers = queued.wait().await;
    assert_eq!(answers.len(), 10);
    all_ok(answers);
    let later = Command::RecordRepayment {
        loan_id: loan_id(1),
        value_date: day("2021-02-01"),
        amount_fen: Fen(1),
        subsidy_netted_fen: Fen::ZERO,
    };
    let refused = kept.submit(bank(), "after".into(), later).await;
    assert!(
        matches!(&refused, Err(AppError::Unavailable(m)) if m.contains("shutting down")),
        "{refused:?}"
    );
    // (A hang guard, not a speed check: without the close the writer waits for ever.)
    tokio::time::timeout(std::time::Duration::from_secs(60), task)
        .await
        .expect("the writer stops with handles alive")
        .unwrap();
    let report = verify_ledger(db, LEDGER).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    drop((w, kept));
}

/// Runs each `scenario(&Db)` above as two tests, `scenario::sqlite` and `scenario::postgres`
/// (the latter skipped without `LOANLEDGER_TEST_PG_URL`, a failure under `CI=true`), each on a
/// current-thread runtime: the writer then runs on the test's own thread, which
/// [`PLANNED_AHEAD`] and the one-group test rely on.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "current_thread")]
            async fn sqlite() {
                let (_dir, db) = crate::store::fresh_sqlite().await;
                super::$scenario(&db).await;
            }

            #[tokio::test(flavor = "current_thread")]
            async fn postgres() {
                if let Some(pg) = crate::store::fresh_postgres().await {
                    super::$scenario(&pg.db).await;
                    pg.db.close().await;
                }
            }
        }
    )*};
}

on_both_backends!(
    loans_not_held_are_read_at_their_committed_state,
    a_settlement_run_over_pages,
    a_group_reads_its_own_registry_writes,
    a_group_reads_households_once_and_sees_its_own_changes,
    a_borrower_belongs_to_one_household,
    brief_answers,
    a_loan_changed_again_by_the_group_planned_ahead,
    a_group_with_the_database_away,
    commands_run_one_by_one_stop_when_the_database_is_away,
    a_call_holds_back_the_loans_of_an_unanswered_part,
    a_retried_run_counts_the_loans_it_settled_before,
    a_closed_queue_answers_what_it_holds_and_stops,
    a_claim_checked_over_a_loan_changed_since_is_not_recorded,
    a_claim_checked_before_its_loan_was_contracted_is_checked_again,
    fund_commands_in_one_group_see_each_other,
    a_renewal_and_other_contracts_in_one_group_count_once,
    pool_commands_in_one_group_see_each_other,
    reversals_in_one_group_see_its_entries,
);

/// A repayment of loan 1 (committed), then in one group another repayment of it and the
/// reversal of the first: the reversal is refused (NOT_REVERSIBLE: the group's repayment is the
/// loan's latest entry, not yet in its committed history), and the loan keeps both payments.
/// Then both reversed in one group, the latest first: each sees the group's entries before it.
async fn reversals_in_one_group_see_its_entries(db: &Db) {
    let (w, task) = disbursed_loans(db, 1).await;
    let repay = |date: &str, amount: i64| Command::RecordRepayment {
        loan_id: loan_id(1),
        value_date: day(date),
        amount_fen: Fen(amount),
        subsidy_netted_fen: Fen::ZERO,
    };
    let (first, _) = loan_of(Ok(submit(&w, bank(), "r1", repay("2021-02-01", 100_000)).await));
    let groups_before = groups_committed(db).await;
    let reverse = Command::ReverseRepayment {
        loan_id: loan_id(1),
        reversed_seq: first.last_seq,
        reason: "keyed twice".into(),
    };
    let calls = vec![
        w.queue_many(&bank(), vec![("r2".into(), repay("2021-02-02", 50_000))], false).await,
        w.queue_many(&bank(), vec![("rev".into(), reverse)], false).await,
    ];
    let results = answers_of(calls).await;
    let answers: Vec<String> = results.iter().map(answered).collect();
    assert_eq!(answers, ["ok", "NOT_REVERSIBLE"]);
    assert_eq!(groups_committed(db).await, groups_before + 1, "the commands were one group");
    let stored = db.get_loan(&loan_id(1)).await.unwrap().expect("the loan");
    let stored = stored.row.unwrap().into_state().unwrap();
    assert_eq!(stored.principal_outstanding_fen, Fen(PRINCIPAL_FEN - 150_000));
    // Both reversed in one group, the latest first: the second sees the first's reversal,
    // staged, and the loan comes back to what its payout left.
    let Ok(Outcome::Loan { loan: second, .. }) = &results[0] else { panic!("{results:?}") };
    let reverse = |id: &str, seq: u64| {
        let reason = "keyed twice".to_string();
        let command = Command::ReverseRepayment { loan_id: loan_id(1), reversed_seq: seq, reason };
        vec![(id.to_string(), command)]
    };
    let calls = vec![
        w.queue_many(&bank(), reverse("rev2", second.last_seq), false).await,
        w.queue_many(&bank(), reverse("rev1", first.last_seq), false).await,
    ];
    let results = answers_of(calls).await;
    let answers: Vec<String> = results.iter().map(answered).collect();
    assert_eq!(answers, ["ok", "ok"]);
    assert_eq!(groups_committed(db).await, groups_before + 2, "the reversals were one group");
    // A loan contracted in the group has no entry committed: a seq named is none of its.
    all_ok(w.submit_many(&finance(), vec![register(2)]).await);
    let groups_before = groups_committed(db).await;
    let calls = vec![
        w.queue_many(&bank(), vec![contract(2, PRINCIPAL_FEN, "0.0385")], false).await,
        w.queue_many(
            &bank(),
            {
                let reason = "x".to_string();
                let command =
                    Command::ReverseRepayment { loan_id: loan_id(2), reversed_seq: 1, reason };
                vec![("rev-new".to_string(), command)]
            },
            false,
        )
        .await,
    ];
    let results = answers_of(calls).await;
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(groups_committed(db).await, groups_before + 1, "the two were one group");
    let refused = results[1].as_ref().expect_err("refused");
    assert!(refused.to_string().contains("journal entry 1 of loan"), "{refused}");
    let stored = db.get_loan(&loan_id(1)).await.unwrap().expect("the loan");
    let stored = stored.row.unwrap().into_state().unwrap();
    assert_eq!(stored.principal_outstanding_fen, Fen(PRINCIPAL_FEN));
    let report = verify_ledger(db, LEDGER).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    drop(w);
    task.await.unwrap();
}

/// A pool's commands and its loans' own, in one group (queued before the writer runs): each
/// sees what those before it wrote. Loans 1 and 2 (50,000.00 yuan, paid out on 2021-01-25);
/// a direct pool of both; another pool of loan 2, refused (the group's own pool holds it);
/// loan 1's March interest, 294.10 yuan, paid by its household on 2021-03-20; then the
/// partner's 294.10 for both on that day, allocated by what each owes then: loan 1 its
/// principal, 5,000,000, loan 2 its principal and interest, 5,029,410, so 146.62 and 147.48
/// (had the allocation not seen the household's payment, 147.05 each); a payment of loan 2
/// dated 03-19, refused (its last event is the group's collective repayment); the settlement,
/// refused (both loans open).
async fn pool_commands_in_one_group_see_each_other(db: &Db) {
    use crate::domain::pool::{PoolMode, PoolTerms};
    let (w, _task) = disbursed_loans(db, 2).await;
    let groups_before = groups_committed(db).await;
    let terms = |pool_id: &str| PoolTerms {
        pool_id: pool_id.into(),
        ledger_id: String::new(),
        bank_id: BANK.into(),
        mode: PoolMode::Direct,
        partner_id: "P".into(),
        partner_name: "p".into(),
        agreed_on: day("2021-02-01"),
        return_rate: None,
        return_frequency: None,
    };
    let create = |pool_id: &str, loans: &[u32]| {
        let loan_ids = loans.iter().map(|n| loan_id(*n)).collect();
        vec![(format!("create/{pool_id}"), Command::CreatePool { terms: terms(pool_id), loan_ids })]
    };
    let pay = |id: &str, n: u32, date: &str, amount: i64| {
        let command = Command::RecordRepayment {
            loan_id: loan_id(n),
            value_date: day(date),
            amount_fen: Fen(amount),
            subsidy_netted_fen: Fen::ZERO,
        };
        vec![(id.to_string(), command)]
    };
    let repay = Command::RepayPool {
        pool_id: "P1".into(),
        value_date: day("2021-03-20"),
        amount_fen: Fen(29_410),
    };
    let settle = Command::SettlePool { pool_id: "P1".into(), value_date: day("2021-03-20") };
    let calls = vec![
        w.queue_many(&bank(), create("P1", &[1, 2]), false).await,
        w.queue_many(&bank(), create("P2", &[2]), false).await,
        w.queue_many(&bank(), pay("pay1", 1, "2021-03-20", 29_410), false).await,
        w.queue_many(&bank(), vec![("repay".into(), repay)], false).await,
        w.queue_many(&bank(), pay("pay2", 2, "2021-03-19", 100), false).await,
        w.queue_many(&bank(), vec![("settle".into(), settle)], false).await,
    ];
    let results = answers_of(calls).await;
    let answers: Vec<String> = results.iter().map(answered).collect();
    assert_eq!(
        answers,
        ["ok", "POOL_MEMBER_TAKEN", "ok", "ok", "VALUE_DATE_OUT_OF_RANGE", "POOL_MEMBERS_OPEN"]
    );
    assert_eq!(groups_committed(db).await, groups_before + 1, "the commands were one group");
    let Ok(Outcome::Pool { parts, .. }) = &results[3] else {
        panic!("a collective repayment: {:?}", results[3]);
    };
    let amounts: Vec<(String, i64)> =
        parts.iter().map(|p| (p.loan_id.clone(), p.amount_fen.0)).collect();
    assert_eq!(amounts, [(loan_id(1), 14_662), (loan_id(2), 14_748)]);
    let stored = db.get_loan(&loan_id(2)).await.unwrap().expect("the loan");
    let stored = stored.row.unwrap().into_state().unwrap();
    assert_eq!(stored.interest_paid_fen, Fen(14_748), "its part, stored");
    // Read together, the two loans' histories share the collective repayment's row (read and
    // decoded once, not once a member), and each takes its own part of it.
    let (one, two) = (loan_id(1), loan_id(2));
    let histories = db.loan_histories(&[&two, &one]).await.unwrap();
    let ids: Vec<&str> = histories.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [one.as_str(), two.as_str()], "in loan id order");
    let repaid = |h: &crate::store::read::LoanHistory| {
        let rows = h.rows().iter();
        rows.filter(|r| r.row().unwrap().kind == "pool.repaid").cloned().collect::<Vec<_>>()
    };
    let (first, second) = (repaid(&histories[0].1), repaid(&histories[1].1));
    assert_eq!((first.len(), second.len()), (1, 1));
    assert!(std::sync::Arc::ptr_eq(&first[0], &second[0]), "one row, shared");
    for ((id, history), paid) in histories.into_iter().zip([14_662, 14_748]) {
        let events = crate::app::servicing::loan_events(&id, history, None).unwrap();
        let last = &events.last().expect("its events").0;
        let LoanEvent::Repaid { amount_fen, .. } = last else { panic!("{last:?}") };
        assert_eq!(*amount_fen, Fen(paid), "loan {id}'s own part");
    }
    let report = verify_ledger(db, LEDGER).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
}

/// What a command's caller gets, in short: `ok`, a refusal's reason code, or the error.
fn answered(result: &Result<Outcome, AppError>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => e.refusal().and_then(|r| r.reason).unwrap_or_else(|| e.to_string()),
    }
}

/// The risk fund's commands, and the contracts and payments it bears on, in one group (queued
/// before the writer runs): each sees what those before it in the group wrote. Loans 1 and 2
/// (50,000.00 yuan each) contracted on 2021-01-25, not paid out (they count as lending from
/// their contracts on; paid out and left unpaid, they would suspend lending today, whatever a
/// contract's date); then the fund opened, empty: a contract of 10,000.00 is refused (nothing
/// to lend on); 11,000.00 deposited: the same contract goes through (110,000.00 contracted,
/// 10 times the balance), and another is refused (the group's own contract counted); loan 1
/// paid out, 40,000.00 more deposited, and loan 1's compensation (80% of its 50,000.00)
/// claimed on 2021-06-20: once, the second claim refused as compensated, a payment on it dated
/// before the claim refused; the finance office's payment of the claim dated before it refused,
/// on 2021-06-25 paid, and again refused. Had a command seen the fund or the loans as stored at the
/// group's start, the answers would differ.
async fn fund_commands_in_one_group_see_each_other(db: &Db) {
    use crate::domain::risk_fund::DepositSource;
    db.migrate().await.unwrap();
    let (w, task) = spawn_writer(db);
    register_all(&w, 4).await;
    let contracts = (1..=2).map(|n| contract(n, PRINCIPAL_FEN, "0.0385")).collect();
    all_ok(w.submit_many(&bank(), contracts).await);
    let groups_before = groups_committed(db).await;

    let deposit = |id: &str, date: &str, amount: i64| {
        let command = Command::DepositRiskFund {
            ledger_id: LEDGER.into(),
            value_date: day(date),
            source: DepositSource::Deposit,
            amount_fen: Fen(amount),
            voucher: "V".into(),
        };
        vec![(id.to_string(), command)]
    };
    let small = |id: &str, n: u32| vec![(id.to_string(), contract(n, 1_000_000, "0.0385").1)];
    let open = Command::OpenRiskFund {
        ledger_id: LEDGER.into(),
        opened_on: day("2021-01-01"),
        fund_share_percent: 80,
    };
    let compensate = |id: &str, date: &str| {
        vec![(
            id.to_string(),
            Command::CompensateLoan { loan_id: loan_id(1), value_date: day(date) },
        )]
    };
    let pay = |id: &str, date: &str| {
        let command = Command::PayCompensation {
            loan_id: loan_id(1),
            value_date: day(date),
            voucher: "P-1".into(),
        };
        vec![(id.to_string(), command)]
    };
    let payout =
        Command::Disburse { loan_id: loan_id(1), value_date: day("2021-01-25"), amount_fen: None };
    let pay_before = Command::RecordRepayment {
        loan_id: loan_id(1),
        value_date: day("2021-06-10"),
        amount_fen: Fen(100_000),
        subsidy_netted_fen: Fen::ZERO,
    };
    let calls = vec![
        w.queue_many(&finance(), vec![("open".into(), open)], false).await,
        w.queue_many(&bank(), small("c3-empty", 3), false).await,
        w.queue_many(&finance(), deposit("dep1", "2021-01-05", 1_100_000), false).await,
        w.queue_many(&bank(), small("c3", 3), false).await,
        w.queue_many(&bank(), small("c4", 4), false).await,
        w.queue_many(&bank(), vec![("d1".into(), payout)], false).await,
        w.queue_many(&finance(), deposit("dep2", "2021-06-01", 4_000_000), false).await,
        w.queue_many(&bank(), compensate("comp", "2021-06-20"), false).await,
        w.queue_many(&bank(), compensate("comp-again", "2021-06-21"), false).await,
        w.queue_many(&bank(), vec![("pay-before".into(), pay_before)], false).await,
        w.queue_many(&finance(), pay("paid-before", "2021-06-19"), false).await,
        w.queue_many(&finance(), pay("paid", "2021-06-25"), false).await,
        w.queue_many(&finance(), pay("paid-again", "2021-06-26"), false).await,
    ];
    let results = answers_of(calls).await;
    let answers: Vec<String> = results.iter().map(answered).collect();
    assert_eq!(
        answers,
        [
            "ok",
            "FUND_LEVERAGE_EXCEEDED",
            "ok",
            "ok",
            "FUND_LEVERAGE_EXCEEDED",
            "ok",
            "ok",
            "ok",
            "LOAN_ALREADY_COMPENSATED",
            "VALUE_DATE_OUT_OF_RANGE",
            "VALUE_DATE_OUT_OF_RANGE",
            "ok",
            "CLAIM_STATUS_MISMATCH",
        ]
    );
    assert_eq!(groups_committed(db).await, groups_before + 1, "the commands were one group");
    // Claimed, nothing moves; paid, the fund's share.
    let Ok(Outcome::RiskFund { fund, compensation, .. }) = &results[7] else {
        panic!("a claim: {:?}", results[7]);
    };
    assert_eq!(fund.balance_fen, Fen(5_100_000));
    let c = compensation.as_ref().expect("the compensation");
    assert_eq!((c.fund_fen, c.pending), (Fen(4_000_000), true));
    let Ok(Outcome::RiskFund { fund, compensation, .. }) = &results[11] else {
        panic!("a payment: {:?}", results[11]);
    };
    assert_eq!(fund.balance_fen, Fen(1_100_000));
    let c = compensation.as_ref().expect("the compensation");
    assert_eq!((c.pending, c.paid(), c.voucher.as_str()), (false, Some(day("2021-06-25")), "P-1"));
    // The loan's mark is stored: read back, it refuses the payment dated before.
    let stored = db.get_loan(&loan_id(1)).await.unwrap().expect("the loan");
    let stored = stored.row.unwrap().into_state().unwrap();
    assert_eq!(stored.servicing.compensated_on, Some(day("2021-06-20")));
    let report = verify_ledger(db, LEDGER).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    drop(w);
    task.await.unwrap();
}

/// A renewal and other contracts in one group: the group's own renewal, not paid out yet,
/// and the loan it renews count once for the contracts after it. The fund of 10,000.00 yuan
/// allows 100,000.00; loan 1 (50,000.00, paid out) takes half; in one group, its renewal (loan
/// 4, 50,000.00) adds nothing, loan 2 (50,000.00) takes the other half, and loan 3 (10,000.00)
/// finds no room. (A policy version from 2020 suspends lending above 100% only: loan 1 unpaid
/// makes all the principal non-performing today, which a contract dated back is judged on.)
async fn a_renewal_and_other_contracts_in_one_group_count_once(db: &Db) {
    use crate::domain::policy::{PolicyParams, PolicyVersion};
    use crate::domain::risk_fund::DepositSource;
    db.migrate().await.unwrap();
    let (w, task) = spawn_writer(db);
    register_all(&w, 3).await;
    let version = PolicyVersion {
        effective_date: day("2020-01-01"),
        params: PolicyParams { npl_limit_basis_points: 10_000, ..PolicyParams::default() },
    };
    let setup = vec![
        ("p".to_string(), Command::SetPolicy { ledger_id: LEDGER.into(), version }),
        (
            "open".to_string(),
            Command::OpenRiskFund {
                ledger_id: LEDGER.into(),
                opened_on: day("2021-01-01"),
                fund_share_percent: 80,
            },
        ),
        (
            "dep".to_string(),
            Command::DepositRiskFund {
                ledger_id: LEDGER.into(),
                value_date: day("2021-01-05"),
                source: DepositSource::Deposit,
                amount_fen: Fen(1_000_000),
                voucher: "V".into(),
            },
        ),
    ];
    all_ok(w.submit_many(&finance(), setup).await);
    all_ok(w.submit_many(&bank(), vec![contract(1, PRINCIPAL_FEN, "0.0385")]).await);
    let payout =
        Command::Disburse { loan_id: loan_id(1), value_date: day("2021-01-25"), amount_fen: None };
    all_ok(w.submit_many(&bank(), vec![("d1".into(), payout)]).await);
    let groups_before = groups_committed(db).await;

    // Loan 4 renews loan 1: household 1's, its head the borrower.
    let (_, renewal) = contract(1, PRINCIPAL_FEN, "0.0385");
    let Command::CreateLoan { mut terms } = renewal else { unreachable!() };
    terms.loan_id = loan_id(4);
    terms.contract_number = "4".into();
    terms.renews_loan_id = Some(loan_id(1));
    let calls = vec![
        w.queue_many(&bank(), vec![("c4".into(), Command::CreateLoan { terms })], false).await,
        w.queue_many(&bank(), vec![contract(2, PRINCIPAL_FEN, "0.0385")], false).await,
        w.queue_many(&bank(), vec![contract(3, 1_000_000, "0.0385")], false).await,
    ];
    let results = answers_of(calls).await;
    let answers: Vec<String> = results.iter().map(answered).collect();
    assert_eq!(answers, ["ok", "ok", "FUND_LEVERAGE_EXCEEDED"]);
    assert_eq!(groups_committed(db).await, groups_before + 1, "the commands were one group");
    let report = verify_ledger(db, LEDGER).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    drop(w);
    task.await.unwrap();
}

/// Loan `n`'s March 2021 period claimed as paid on time (294.10 yuan, all of it subsidy).
fn march_line(n: u32) -> crate::domain::subsidy_claim::ClaimedLine {
    let march = day("2021-03-20");
    crate::domain::subsidy_claim::ClaimedLine::of(&loan_id(n), march, Fen(29_410), Fen(29_410))
}

/// The bank's first-quarter claim of `lines` submitted on 2021-04-01, `checked` as given.
fn q1_claim(
    lines: &[crate::domain::subsidy_claim::ClaimedLine],
    checked: crate::app::subsidy::ClaimCheck,
) -> Command {
    Command::SubmitSubsidyClaim {
        claim_id: format!("{BANK}-Q1"),
        bank_id: BANK.into(),
        due_from: day("2021-01-01"),
        due_to: day("2021-03-31"),
        submitted_on: day("2021-04-01"),
        lines: lines.to_vec(),
        checked,
    }
}

/// A claim's lines are checked on the read pool before the writer takes it: a payment recorded
/// on one of its loans in between, or a policy version set in between (its subsidy ratio dated
/// back over the claimed period), would leave the check out of date. The writer then records
/// nothing and says the claim is stale (the API checks it again); the same request, checked
/// again, is recorded.
async fn a_claim_checked_over_a_loan_changed_since_is_not_recorded(db: &Db) {
    let (w, _task) = disbursed_loans(db, 1).await;
    let bank_row = db.get_bank(BANK).await.unwrap().expect("the bank");
    let lines = vec![march_line(1)];
    let check =
        || crate::app::subsidy::check_claim(db, &bank_row, &lines, (day("2021-04-01"), None));
    let claim = |checked| q1_claim(&lines, checked);
    let before = check().await.unwrap();
    assert_eq!(before.seen.len(), 1);
    let seen_before = before.seen[0].1;
    let repay = Command::RecordRepayment {
        loan_id: loan_id(1),
        value_date: day("2021-03-20"),
        amount_fen: Fen(29_410),
        subsidy_netted_fen: Fen::ZERO,
    };
    submit(&w, bank(), "pay", repay).await;
    match w.submit(bank(), "claim".into(), claim(before)).await {
        Err(AppError::Stale(why)) => assert!(why.contains(&loan_id(1)), "{why}"),
        other => panic!("a stale check, got {other:?}"),
    }
    let after = check().await.unwrap();
    assert!(after.seen[0].1 > seen_before, "the check sees the payment");
    let half = crate::domain::policy::PolicyVersion {
        effective_date: day("2020-01-01"),
        params: crate::domain::policy::PolicyParams {
            subsidy_ratio: rust_decimal::Decimal::new(5, 1),
            ..crate::domain::policy::PolicyParams::default()
        },
    };
    submit(&w, finance(), "policy", Command::SetPolicy { ledger_id: LEDGER.into(), version: half })
        .await;
    match w.submit(bank(), "claim".into(), claim(after)).await {
        Err(AppError::Stale(why)) => assert!(why.contains("the policy of ledger"), "{why}"),
        other => panic!("a stale check, got {other:?}"),
    }
    // And a household's status set in between (found removed from before the contract: its
    // line HOUSEHOLD_NOT_ELIGIBLE once checked again; since 2026-12-07).
    let checked = check().await.unwrap();
    assert_eq!(checked.households_seen.len(), 1);
    let removed = Command::SetHouseholdStatus {
        household_id: "H1".into(),
        entry: StatusEntry {
            status: HouseholdStatus::Removed,
            effective_date: day("2020-01-01"),
            reason: "audit".into(),
        },
    };
    submit(&w, finance(), "status", removed).await;
    match w.submit(bank(), "claim".into(), claim(checked)).await {
        Err(AppError::Stale(why)) => assert!(why.contains("household H1's status"), "{why}"),
        other => panic!("a stale check, got {other:?}"),
    }
    let last = check().await.unwrap();
    let Outcome::SubsidyClaim { claim, .. } = submit(&w, bank(), "claim", claim(last)).await else {
        panic!("a claim");
    };
    // Paid on time, at half of it since the version set in between; not payable.
    let line = &claim.lines[0];
    assert_eq!(line.recomputed.as_ref().map(|r| r.subsidy_fen), Some(Fen(14_705)), "{line:?}");
    let not_eligible = crate::domain::subsidy_claim::Difference::HouseholdNotEligible;
    assert!(line.differences.contains(&not_eligible), "{line:?}");
}

/// A claimed loan not contracted when the claim is checked (not in the register) and contracted
/// before the writer takes the claim would be in the register then: the claim is stale, and
/// checked again. A loan still without a journal is not.
async fn a_claim_checked_before_its_loan_was_contracted_is_checked_again(db: &Db) {
    db.migrate().await.unwrap();
    let (w, _task) = spawn_writer(db);
    register_all(&w, 2).await;
    all_ok(w.submit_many(&bank(), vec![contract(1, PRINCIPAL_FEN, "0.0385")]).await);
    let bank_row = db.get_bank(BANK).await.unwrap().expect("the bank");
    let lines = vec![march_line(1), march_line(2), march_line(3)];
    let check =
        || crate::app::subsidy::check_claim(db, &bank_row, &lines, (day("2021-04-01"), None));
    let claim = |checked| q1_claim(&lines, checked);
    let before = check().await.unwrap();
    assert!(before.seen.contains(&(loan_id(2), 0)), "{:?}", before.seen);
    let (request_id, contract) = contract(2, PRINCIPAL_FEN, "0.0385");
    submit(&w, bank(), &request_id, contract).await;
    match w.submit(bank(), "claim".into(), claim(before)).await {
        Err(AppError::Stale(why)) => assert!(why.contains(&loan_id(2)), "{why}"),
        other => panic!("a stale check, got {other:?}"),
    }
    // Loan 3 has no journal still: the check again is recorded.
    let Outcome::SubsidyClaim { claim, .. } =
        submit(&w, bank(), "claim", claim(check().await.unwrap())).await
    else {
        panic!("a claim");
    };
    assert_eq!(claim.lines.len(), 3);
}

/// A loan still lends, and a renewal of it is not paid out, while it owes principal or may
/// still pay some out: a contract never paid out lends until its maturity, not from then on;
/// a loan repaid or closed lends until its last event's date.
#[test]
fn a_loan_still_lends_until_repaid_or_past_paying_out() {
    let day = |s: &str| parse_date(s).unwrap();
    let contract = LoanState::new(crate::bench::load::bench_terms(&id_number(1)), 1);
    let today = day("2021-06-01");
    assert_eq!(still_lends(&contract, today).as_deref(), Some("may still be paid out"));
    assert_eq!(still_lends(&contract, day("2022-01-25")), None, "its maturity has come");
    let mut lent = contract.clone();
    lent.status = crate::domain::loan::LoanStatus::Active;
    (lent.disbursed_fen, lent.principal_outstanding_fen) = (Fen(5_000_000), Fen(1_000_000));
    let owes = still_lends(&lent, today);
    assert_eq!(owes.as_deref(), Some("still owes 10000.00 of principal"));
    lent.principal_outstanding_fen = Fen(0);
    assert_eq!(still_lends(&lent, today), None, "repaid, nothing left to pay out");
    lent.status = crate::domain::loan::LoanStatus::Settled;
    lent.principal_outstanding_fen = Fen(1);
    assert_eq!(still_lends(&lent, today), None, "closed");
    lent.last_value_date = day("2021-06-02");
    let until = still_lends(&lent, today);
    assert_eq!(until.as_deref(), Some("lent until 2021-06-02, after 2021-06-01"));
    assert_eq!(still_lends(&lent, day("2021-06-02")), None, "closed that day");
    // Written off: it lends while what was written off is not all recovered.
    lent.status = crate::domain::loan::LoanStatus::WrittenOff;
    (lent.servicing.written_off_fen, lent.servicing.recovered_fen) = (Fen(500_000), Fen(200_000));
    let bad = still_lends(&lent, day("2021-06-02"));
    assert_eq!(bad.as_deref(), Some("was written off with 3000.00 not recovered"));
    lent.servicing.recovered_fen = Fen(500_000);
    assert_eq!(still_lends(&lent, day("2021-06-02")), None, "all of it recovered");
}

/// A panic in a command's plan is that command's `Internal` failure, with the panic's text,
/// not the end of the writer; a plan that returns is passed through as it is.
#[test]
fn a_plan_that_panics_is_an_internal_failure() {
    let failed = unpanicked("a loan's plan", || -> u32 { panic!("Addition overflowed") });
    match failed {
        Err(AppError::Internal(m)) => assert_eq!(m, "a loan's plan panicked: Addition overflowed"),
        other => panic!("{other:?}"),
    }
    let formatted = unpanicked("a plan", || -> u32 { panic!("{} over", 7) });
    assert!(matches!(formatted, Err(AppError::Internal(m)) if m == "a plan panicked: 7 over"));
    assert!(matches!(unpanicked("a plan", || 7), Ok(7)));
}
