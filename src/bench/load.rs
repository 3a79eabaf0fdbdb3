//! The scenarios: prepare data through the writer, then drive the server over gRPC.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use super::Latency;
use super::ceiling::Rows;
use super::targets::{Backend, Measured, judge};
use crate::api::pb;
use crate::api::pb::audit_service_client::AuditServiceClient;
use crate::api::pb::loan_service_client::LoanServiceClient;
use crate::api::pb::pool_service_client::PoolServiceClient;
use crate::api::pb::risk_fund_service_client::RiskFundServiceClient;
use crate::api::pb::subsidy_service_client::SubsidyServiceClient;
use crate::app::auth::{Principal, Role, create_token};
use crate::app::command::{Command, Outcome};
use crate::app::writer::WriterHandle;
use crate::domain::date::parse_date;
use crate::domain::event::HouseholdRecord;
use crate::domain::household::{HouseholdStatus, StatusEntry};
use crate::domain::identity::check_char;
use crate::domain::loan::{LoanState, LoanTerms, RepaymentMethod, SettlementFrequency};
use crate::domain::money::{Fen, Rounding};
use crate::domain::rate::AnnualRate;
use crate::domain::subsidy_claim::MAX_CLAIM_LINES;
use crate::startup::{Application, Settings};
use crate::store::Db;

#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// `sqlite` (a temporary file) or a PostgreSQL server URL on which fresh databases are made.
    pub target: String,
    pub clients: usize,
    pub single_requests: usize,
    pub batch_items: usize,
    pub batches: usize,
    /// Concurrent batch clients, each sending every `batch_clients`-th call.
    pub batch_clients: usize,
    pub settle_loans: usize,
    pub history_clients: usize,
    pub ceiling_txns: usize,
    /// Leave the service's database in place after the run (its URL is printed), to run the
    /// `verify` command or a profiler on it.
    pub keep_database: bool,
    /// Whether the targets are judged from this run (not in `--quick`: small numbers).
    pub judged: bool,
}

impl BenchConfig {
    /// Seconds, for CI: every scenario runs, on small numbers.
    pub fn quick(target: String) -> Self {
        BenchConfig {
            target,
            clients: 8,
            single_requests: 400,
            batch_items: 200,
            batches: 3,
            batch_clients: 2,
            settle_loans: 300,
            history_clients: 2,
            ceiling_txns: 5,
            keep_database: false,
            judged: false,
        }
    }
}

/// A fresh database for one measurement; dropped (PostgreSQL) or deleted (SQLite) afterwards.
pub struct Scratch {
    pub url: String,
    admin: Option<String>,
    name: String,
    dir: Option<tempfile_dir::TempDir>,
}

mod tempfile_dir {
    /// A directory removed on drop unless kept (the bench must not depend on dev-dependencies).
    pub struct TempDir {
        pub path: std::path::PathBuf,
        pub keep: bool,
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            if !self.keep {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }
}

impl Scratch {
    pub async fn new(target: &str, label: &str) -> anyhow::Result<Scratch> {
        let name = format!("bench_{label}_{}", std::process::id());
        if target == "sqlite" {
            let dir = std::env::temp_dir().join(&name);
            std::fs::create_dir_all(&dir).context("Failed to create the bench directory")?;
            let url = format!("sqlite://{}/bench.db", dir.display());
            let dir = tempfile_dir::TempDir { path: dir, keep: false };
            Ok(Scratch { url, admin: None, name, dir: Some(dir) })
        } else {
            let admin = Db::connect(target).await.context("Failed to connect to PostgreSQL")?;
            admin.execute_raw(&format!("drop database if exists {name}")).await?;
            admin.execute_raw(&format!("create database {name}")).await?;
            admin.close().await;
            let base = target.rsplit_once('/').map(|(b, _)| b).unwrap_or(target);
            Ok(Scratch {
                url: format!("{base}/{name}"),
                admin: Some(target.to_string()),
                name,
                dir: None,
            })
        }
    }

    /// Leaves the database in place and gives its URL.
    pub fn keep(self) -> String {
        if let Some(mut dir) = self.dir {
            dir.keep = true;
        }
        self.url
    }

    pub async fn drop_db(self) {
        if let Some(admin) = &self.admin
            && let Ok(db) = Db::connect(admin).await
        {
            let _ = db
                .execute_raw(&format!("drop database if exists {} with (force)", self.name))
                .await;
            db.close().await;
        }
    }
}

/// A valid identity number of its own for each `serial` (a head heads one household of a
/// ledger): a thousand a birth date, the dates a day apart from 1970-01-01 (a million households
/// born up to 1972-09-26; the borrowers stay of working age on the bench's contract date).
pub(crate) fn id_number(serial: u32) -> String {
    let birth = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date")
        + chrono::Days::new(u64::from(serial / 1000));
    let first17 = format!("450121{}{:03}", birth.format("%Y%m%d"), serial % 1000);
    let c = check_char(first17.as_bytes()) as char;
    format!("{first17}{c}")
}

/// Prepares a ledger, a bank, and `loans` disbursed loans (one household each) through the
/// writer, in groups of a thousand.
pub async fn prepare(writer: &WriterHandle, loans: usize) -> anyhow::Result<Vec<String>> {
    let operator = Principal { role: Role::Operator, org: "*".into() };
    let finance = Principal { role: Role::Finance, org: "BENCH".into() };
    let bank = Principal { role: Role::Bank, org: "BB".into() };
    let one = |r: Vec<Result<Outcome, crate::app::error::AppError>>| -> anyhow::Result<()> {
        for x in r {
            x.map_err(|e| anyhow::anyhow!("prepare: {e}"))?;
        }
        Ok(())
    };
    one(writer
        .submit_many(
            &operator,
            vec![(
                "p-ledger".into(),
                Command::CreateLedger { ledger_id: "BENCH".into(), name: "bench".into() },
            )],
        )
        .await)?;
    one(writer
        .submit_many(
            &operator,
            vec![(
                "p-bank".into(),
                Command::RegisterBank {
                    ledger_id: "BENCH".into(),
                    bank_id: "BB".into(),
                    name: "bench bank".into(),
                },
            )],
        )
        .await)?;
    let day = |s: &str| parse_date(s).expect("valid date");
    let mut ids = Vec::with_capacity(loans);
    for start in (0..loans).step_by(1_000) {
        let end = (start + 1_000).min(loans);
        let households = (start..end)
            .map(|i| {
                (
                    format!("p-h-{i}"),
                    Command::RegisterHousehold {
                        household: HouseholdRecord {
                            household_id: format!("H{i:07}"),
                            ledger_id: "BENCH".into(),
                            head_name: "bench".into(),
                            head_id_number: id_number(i as u32),
                            township: String::new(),
                            village: String::new(),
                        },
                        status: StatusEntry {
                            status: HouseholdStatus::RegisteredPoor,
                            effective_date: day("2016-01-01"),
                            reason: String::new(),
                        },
                    },
                )
            })
            .collect();
        one(writer.submit_many(&finance, households).await)?;
        let contracts = (start..end)
            .map(|i| {
                let id_no = id_number(i as u32);
                let mut terms = bench_terms(&id_no);
                terms.loan_id = format!("BB-{i:07}");
                terms.bank_id = "BB".into();
                terms.contract_number = format!("{i:07}");
                terms.household_id = format!("H{i:07}");
                (format!("p-c-{i}"), Command::CreateLoan { terms })
            })
            .collect();
        one(writer.submit_many(&bank, contracts).await)?;
        let disbursements = (start..end)
            .map(|i| {
                (
                    format!("p-d-{i}"),
                    Command::Disburse {
                        loan_id: format!("BB-{i:07}"),
                        value_date: day("2021-01-25"),
                        amount_fen: None,
                    },
                )
            })
            .collect();
        one(writer.submit_many(&bank, disbursements).await)?;
        ids.extend((start..end).map(|i| format!("BB-{i:07}")));
    }
    Ok(ids)
}

#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: Request<()>) -> Result<Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

async fn channel(port: u16) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://127.0.0.1:{port}"))?.connect().await?)
}

fn bearer(token: &str) -> anyhow::Result<Bearer> {
    Ok(Bearer(format!("Bearer {token}").parse()?))
}

/// One scenario's result.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub count: u64,
    pub unit: &'static str,
    pub seconds: f64,
    pub latency: Option<Latency>,
    /// CPU time (user and system) of this whole process over the same span ([`Span`]).
    pub cpu: Option<Duration>,
}

impl Figure {
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.seconds.max(1e-9)
    }

    /// The rate, unless nothing was counted (a scenario given no work): a rate of nothing is
    /// neither judged against a target nor set against a ceiling.
    pub fn counted_rate(&self) -> Option<f64> {
        (self.count > 0).then(|| self.rate())
    }
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<34} {:>10} {} in {:>7.2} s = {:>10.0} {}/s",
            self.name,
            self.count,
            self.unit,
            self.seconds,
            self.rate(),
            self.unit
        )?;
        if let Some(l) = &self.latency {
            write!(f, "  ({l})")?;
        }
        if let Some(cpu) = self.cpu {
            let each_us = cpu.as_secs_f64() * 1e6 / (self.count.max(1) as f64);
            write!(f, "  [cpu {:.2} s, {each_us:.1} µs each]", cpu.as_secs_f64())?;
        }
        Ok(())
    }
}

/// The span of a write load in which all its clients are at work: from the first answer of the
/// last of them to start until the first of them is done. The history reads are counted within
/// it only, so that their figure is of reads under the whole load (counted from the readers'
/// start, it took in reads made while the writers were still connecting, and while the last
/// ones finished alone).
struct FullLoad {
    clients: usize,
    /// Clients that had their first answer.
    answered: std::sync::atomic::AtomicUsize,
    /// Whether a client is done.
    done: std::sync::atomic::AtomicBool,
    from: std::sync::OnceLock<Instant>,
    until: std::sync::OnceLock<Instant>,
}

impl FullLoad {
    fn new(clients: usize) -> Arc<FullLoad> {
        Arc::new(FullLoad {
            clients,
            answered: Default::default(),
            done: Default::default(),
            from: Default::default(),
            until: Default::default(),
        })
    }

    fn first_answer(&self) {
        if self.answered.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1 == self.clients {
            let _ = self.from.set(Instant::now());
        }
    }

    fn client_done(&self) {
        if !self.done.swap(true, std::sync::atomic::Ordering::AcqRel) {
            let _ = self.until.set(Instant::now());
        }
    }

    /// Whether every client is at work now.
    fn is_full(&self) -> bool {
        self.answered.load(std::sync::atomic::Ordering::Acquire) >= self.clients
            && !self.done.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The span's length (0 when it never opened).
    fn seconds(&self) -> f64 {
        match (self.from.get(), self.until.get()) {
            (Some(from), Some(until)) => until.saturating_duration_since(*from).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// Single repayments from `clients` concurrent clients, `total` requests in all.
async fn singles(
    port: u16,
    token: &str,
    loans: &[String],
    clients: usize,
    total: usize,
    tag: &str,
    load: Option<&Arc<FullLoad>>,
) -> anyhow::Result<(Figure, u64)> {
    let loans = Arc::new(loans.to_vec());
    let per = total.div_ceil(clients);
    let span = Span::start();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let ch = channel(port).await?;
        let mut client = LoanServiceClient::with_interceptor(ch, bearer(token)?);
        let loans = loans.clone();
        let tag = tag.to_string();
        let load = load.cloned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            let mut failed = 0u64;
            for k in 0..per {
                let loan = &loans[(c + k * clients) % loans.len()];
                let t = Instant::now();
                let r = client
                    .record_repayment(pb::RecordRepaymentRequest {
                        request_id: format!("{tag}-{c}-{k}"),
                        loan_id: loan.clone(),
                        value_date: "2021-02-01".into(),
                        amount_fen: 100,
                        subsidy_netted_fen: 0,
                    })
                    .await;
                lat.push(t.elapsed());
                if r.is_err() {
                    failed += 1;
                }
                if k == 0
                    && let Some(load) = &load
                {
                    load.first_answer();
                }
            }
            if let Some(load) = &load {
                load.client_done();
            }
            (lat, failed)
        }));
    }
    let mut all = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await?;
        all.extend(l);
        failed += f;
    }
    let count = all.len() as u64 - failed;
    let name = format!("single repayments, {clients} clients");
    Ok((span.figure(name, count, "postings", Some(Latency::of(&mut all))), failed))
}

/// The scenarios, in order; prints each figure as it comes.
pub async fn run(cfg: &BenchConfig) -> anyhow::Result<Vec<Figure>> {
    let scratch = Scratch::new(&cfg.target, "svc").await?;
    let app = Application::build(Settings {
        listen: "127.0.0.1:0".parse()?,
        database_url: scratch.url.clone(),
        business_utc_offset: crate::startup::business_utc_offset_default(),
        token_cache_ttl: crate::startup::TOKEN_CACHE_TTL,
        drain_timeout: crate::startup::DRAIN_TIMEOUT,
        signing_key: None,
        backups: None,
        tls: None,
    })
    .await?;
    let port = app.port();
    let db = app.db().clone();
    let (durable, settings) = db.durability().await?;
    println!("durability: {settings}{}", if durable { "" } else { " (commits not durable)" });
    let writer = app.writer();
    let bank_token =
        create_token(&db, Role::Bank, "BB", 0).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let finance_token =
        create_token(&db, Role::Finance, "BENCH", 0).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let mut figures = Vec::new();
    let mut judged = Measured::default();
    judged.not_judged = if !cfg.judged {
        Some("a quick run: small numbers".into())
    } else if !durable {
        Some(format!("commits not durable ({settings})"))
    } else {
        None
    };
    // Prints a figure and keeps it; gives back its name and rate (`Figure::counted_rate`), for
    // its target and its ratio to a ceiling.
    let report = |f: Figure, figures: &mut Vec<Figure>| {
        println!("{f}");
        let named_rate = (f.name.clone(), f.counted_rate());
        figures.push(f);
        named_rate
    };

    let prep_loans = cfg.settle_loans.max(cfg.clients).max(1);
    let span = Span::start();
    let loans = prepare(&writer, prep_loans).await?;
    let name = "prepare (household, contract, disbursement)".into();
    report(span.figure(name, 3 * loans.len() as u64, "commands", None), &mut figures);

    let (f, failed) =
        singles(port, &bank_token, &loans, cfg.clients, cfg.single_requests, "s", None).await?;
    anyhow::ensure!(failed == 0, "{failed} single repayments failed");
    let p99 = f.latency.unwrap_or_default().p99;
    let (singles_name, singles_rate) = report(f, &mut figures);
    judged.singles = singles_rate.map(|rate| (cfg.clients, rate, p99));

    // History reads while single writes go on, counted while all the writers are at work.
    let load = FullLoad::new(cfg.clients);
    // The loans' ids, shared by the history readers and the batch clients.
    let shared_loans = Arc::new(loans.clone());
    let readers_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..cfg.history_clients {
        let mut client =
            AuditServiceClient::with_interceptor(channel(port).await?, bearer(&finance_token)?);
        let loans = shared_loans.clone();
        let done = readers_done.clone();
        let load = load.clone();
        readers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0u64;
            let mut k = r;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let loan = loans[k % loans.len()].clone();
                k += 7;
                let t = Instant::now();
                let under_load = load.is_full();
                let read = async {
                    let mut s = client
                        .get_loan_history(pb::GetLoanHistoryRequest {
                            loan_id: loan,
                            through_seq: 0,
                        })
                        .await?
                        .into_inner();
                    while s.message().await?.is_some() {}
                    Ok::<_, tonic::Status>(())
                };
                match read.await {
                    Ok(()) if under_load && load.is_full() => lat.push(t.elapsed()),
                    Ok(()) => {}
                    Err(_) => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    let (_, failed) =
        singles(port, &bank_token, &loans, cfg.clients, cfg.single_requests, "h", Some(&load))
            .await?;
    anyhow::ensure!(failed == 0, "{failed} single repayments failed beside the history reads");
    readers_done.store(true, std::sync::atomic::Ordering::Relaxed);
    let window = load.seconds();
    let mut lat = Vec::new();
    let mut failed = 0;
    for r in readers {
        let (l, f) = r.await?;
        lat.extend(l);
        failed += f;
    }
    // A failed read would be a short one: the latencies are of whole reads only, and any failure
    // fails the bench, as the writes' do.
    anyhow::ensure!(failed == 0, "{failed} loan history reads failed");
    let n = lat.len() as u64;
    let latency = Latency::of(&mut lat);
    if n > 0 {
        judged.history_p99 = Some((latency.p99, cfg.clients));
    }
    report(
        Figure {
            name: "loan history under write load".into(),
            count: n,
            unit: "reads",
            seconds: window,
            latency: Some(latency),
            cpu: None,
        },
        &mut figures,
    );

    let span = Span::start();
    let mut senders = Vec::new();
    for k in 0..cfg.batch_clients {
        let mut client =
            LoanServiceClient::with_interceptor(channel(port).await?, bearer(&bank_token)?)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20);
        let loans = Arc::clone(&shared_loans);
        let (items_per_call, calls, clients) = (cfg.batch_items, cfg.batches, cfg.batch_clients);
        senders.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut posted = 0u64;
            for b in (k..calls).step_by(clients) {
                let items = (0..items_per_call)
                    .map(|i| pb::BatchItem {
                        request_id: format!("b-{b}-{i}"),
                        item: Some(pb::batch_item::Item::Repayment(pb::RepaymentItem {
                            loan_id: loans[(b * items_per_call + i) % loans.len()].clone(),
                            value_date: "2021-02-01".into(),
                            amount_fen: 100,
                            subsidy_netted_fen: 0,
                        })),
                    })
                    .collect();
                let t = Instant::now();
                let r = client.submit_batch(pb::SubmitBatchRequest { items }).await?.into_inner();
                lat.push(t.elapsed());
                // An item refused is no posting, and no figure of the service's: stop, as the
                // singles and the settlement do on a failure (the rate would count the items
                // ok and say nothing).
                if let Some(refused) = r.results.iter().find(|item| !item.ok) {
                    anyhow::bail!(
                        "batch {b}: {} of its items refused, the first (item {}) {} {}: {}",
                        r.failed,
                        refused.index,
                        refused.code,
                        refused.reason,
                        refused.message
                    );
                }
                posted += u64::from(r.posted);
            }
            Ok::<_, anyhow::Error>((lat, posted))
        }));
    }
    let mut lat = Vec::new();
    let mut posted = 0u64;
    for sender in senders {
        let (l, p) = sender.await??;
        lat.extend(l);
        posted += p;
    }
    let name = match cfg.batch_clients {
        1 => format!("batched repayments, {} a call", cfg.batch_items),
        k => format!("batched repayments, {} a call, {k} clients", cfg.batch_items),
    };
    let (batches_name, batches_rate) =
        report(span.figure(name, posted, "postings", Some(Latency::of(&mut lat))), &mut figures);
    judged.batches = batches_rate.map(|rate| (cfg.batch_items, cfg.batch_clients, rate));

    let mut loan_client =
        LoanServiceClient::with_interceptor(channel(port).await?, bearer(&finance_token)?);
    let span = Span::start();
    let r = loan_client
        .settle_loans(pb::SettleLoansRequest {
            request_id: "settle-1".into(),
            ledger_id: "BENCH".into(),
            bank_id: String::new(),
            settlement_date: "2021-03-20".into(),
        })
        .await?
        .into_inner();
    anyhow::ensure!(r.failed == 0, "settlement failures: {:?}", r.failures);
    let name = format!("settlement run over {} loans", r.loans_examined);
    let f = span.figure(name, r.loans_settled, "loans", None);
    judged.settlement = Some((r.loans_examined, f.seconds));
    let (settlement_name, settlement_rate) = report(f, &mut figures);

    // The share of the settled loans that were repaid before (their settlement has two
    // interest segments), for the settlement's ceiling.
    let repaid: i64 = crate::on_pool!(&db, p => sqlx::query_scalar(
        "select count(*) from loan where ledger_id = 'BENCH' and principal_repaid_fen > 0"
    )
    .fetch_one(p)
    .await?);
    let repaid_share = repaid as f64 / (r.loans_examined.max(1)) as f64;

    let mut audit =
        AuditServiceClient::with_interceptor(channel(port).await?, bearer(&finance_token)?);
    let span = Span::start();
    let v = audit
        .verify(pb::VerifyRequest {
            ledger_id: "BENCH".into(),
            recheck_claims: false,
            recheck_answers: false,
        })
        .await?
        .into_inner();
    anyhow::ensure!(v.ok, "verify failed: {:?}", v.problems);
    let name = "verify (chain + read models)".into();
    judged.verify =
        report(span.figure(name, v.transactions_checked, "entries", None), &mut figures).1;
    // Not a target: what an auditor's checkpoint of the whole journal costs (the chain's links
    // read, the Merkle tree built, the root signed).
    let span = Span::start();
    let head = pb::GetCheckpointRequest { ledger_id: "BENCH".into(), tree_size: 0 };
    let c = audit.get_checkpoint(head).await?.into_inner();
    anyhow::ensure!(c.tree_size == v.head_seq, "checkpoint of {} entries", c.tree_size);
    let name = "signed checkpoint (whole journal)".into();
    report(span.figure(name, c.tree_size, "entries", None), &mut figures);
    // Not a target: a finance office's subsidy list of the quarter the run settled (every
    // loan's history read and its register recomputed).
    let mut subsidy =
        SubsidyServiceClient::with_interceptor(channel(port).await?, bearer(&finance_token)?);
    let span = Span::start();
    let quarter = pb::ListSubsidyRegisterRequest {
        ledger_id: "BENCH".into(),
        bank_id: String::new(),
        due_from: "2021-03-01".into(),
        due_to: "2021-03-31".into(),
        as_of: "2021-03-20".into(),
        through_seq: 0,
    };
    let mut stream = subsidy.list_subsidy_register(quarter).await?.into_inner();
    let mut loans = 0u64;
    let mut claimed = Vec::new();
    while let Some(register) = stream.message().await? {
        let Some(line) = register.lines.first() else {
            anyhow::bail!("a register without lines");
        };
        loans += 1;
        if claimed.len() < MAX_CLAIM_LINES {
            claimed.push(pb::ClaimedSubsidyLine {
                loan_id: register.loan_id.clone(),
                due_date: line.due_date.clone(),
                interest_paid_fen: line.interest_paid_on_time_fen,
                subsidy_fen: line.working.as_ref().map_or(0, |w| w.subsidy_fen),
                ..pb::ClaimedSubsidyLine::default()
            });
        }
    }
    let name = "subsidy register (a quarter, every loan)".into();
    report(span.figure(name, loans, "loans", None), &mut figures);
    // Not a target: the bank's claim of that quarter, each line checked against its loan's
    // register (every history read and replayed) and held, in one journal transaction.
    let mut claims =
        SubsidyServiceClient::with_interceptor(channel(port).await?, bearer(&bank_token)?)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
    let lines = claimed.len() as u64;
    let span = Span::start();
    let claim = pb::SubmitSubsidyClaimRequest {
        request_id: "bench-claim".into(),
        bank_id: "BB".into(),
        claim_number: "2021Q1".into(),
        due_from: "2021-03-01".into(),
        due_to: "2021-03-31".into(),
        lines: claimed,
        submitted_on: "2021-03-20".into(),
    };
    let answer = claims.submit_subsidy_claim(claim).await?.into_inner();
    let Some(claim) = answer.claim.as_ref() else {
        anyhow::bail!("a claim answered without it");
    };
    let checked = u64::from(claim.line_count);
    anyhow::ensure!(checked == lines, "a claim of {lines} lines answered with {checked}");
    let name = format!(
        "subsidy claim (a quarter, every loan's line; its answer, {} lines, {:.2} MB)",
        claim.lines.len(),
        prost::Message::encoded_len(&answer) as f64 / 1e6
    );
    report(span.figure(name, lines, "lines", None), &mut figures);
    // (Not timed.) The rest of its lines read a page at a time, each page an answer a client
    // with gRPC's usual 4 MiB limit reads.
    let (mut read, mut token) = (claim.lines.len() as u64, claim.next_lines_token.clone());
    while !token.is_empty() {
        let page = pb::GetSubsidyClaimRequest {
            claim_id: claim.claim_id.clone(),
            lines_page_size: 0,
            lines_page_token: token,
        };
        let page = claims.get_subsidy_claim(page).await?.into_inner();
        anyhow::ensure!(prost::Message::encoded_len(&page) < 4 << 20, "a page past 4 MiB");
        anyhow::ensure!(u64::from(page.first_line) == read, "a page out of order");
        read += page.lines.len() as u64;
        token = page.next_lines_token;
    }
    anyhow::ensure!(read == lines, "a claim of {lines} lines read as {read}");
    // Not a target: the county's risk fund opened, and its figures on the settlement's day, a
    // past date: the fund rebuilt from its events by then, every loan that may have been live
    // then rebuilt from its history to it and its standing that day worked out
    // ("Risk-compensation fund" in the README, `GetRiskFund`).
    let mut funds =
        RiskFundServiceClient::with_interceptor(channel(port).await?, bearer(&finance_token)?);
    let open = pb::OpenRiskFundRequest {
        request_id: "bench-fund".into(),
        ledger_id: "BENCH".into(),
        opened_on: "2021-01-01".into(),
        fund_share_percent: 80,
    };
    funds.open_risk_fund(open).await?;
    let span = Span::start();
    let figures_of = pb::GetRiskFundRequest {
        ledger_id: "BENCH".into(),
        as_of: "2021-03-20".into(),
        through_seq: 0,
    };
    let fund = funds.get_risk_fund(figures_of).await?.into_inner();
    let live = fund.exposure.map_or(0, |e| e.live_loans);
    let name = "risk fund figures as of a past day (every loan rebuilt to it)".into();
    report(span.figure(name, live, "loans", None), &mut figures);
    // Not a target: a direct pool of (at most) a thousand loans, the most a pool holds, and the
    // partner's collective repayment of 100.00 yuan a loan, allocated over them by what each
    // owes: each loan quoted and its part planned as its own repayment, in one transaction
    // ("Pooled loans" in the README).
    let members: Vec<String> =
        shared_loans.iter().take(crate::domain::pool::MEMBERS_MAX).cloned().collect();
    let mut pools = PoolServiceClient::with_interceptor(channel(port).await?, bearer(&bank_token)?);
    let agreement = pb::CreatePoolRequest {
        request_id: "bench-pool".into(),
        pool_id: "BB-POOL1".into(),
        bank_id: "BB".into(),
        mode: pb::PoolMode::Direct as i32,
        partner_id: "BENCHPARTNER".into(),
        partner_name: "bench".into(),
        agreed_on: "2021-03-20".into(),
        return_rate: String::new(),
        return_frequency: pb::ReturnFrequency::Unspecified as i32,
        loan_ids: members.clone(),
    };
    pools.create_pool(agreement).await?;
    let span = Span::start();
    let collective = pb::RepayPoolRequest {
        request_id: "bench-pool-repay".into(),
        pool_id: "BB-POOL1".into(),
        value_date: "2021-03-20".into(),
        amount_fen: 10_000 * members.len() as i64,
    };
    let parts = pools.repay_pool(collective).await?.into_inner().parts.len() as u64;
    anyhow::ensure!(parts == members.len() as u64, "{parts} parts of {} members", members.len());
    let name = "pool's collective repayment (allocated over its loans)".into();
    report(span.figure(name, parts, "loans", None), &mut figures);

    // The writer stops when its last handle is gone: drop ours before waiting for the server.
    drop(writer);
    let _ = stop.send(());
    server.await??;
    // The service's database is deleted after the ceilings: deleting gigabytes of it (a
    // million loans) slows the disk for a while, which must not fall on a ceiling.
    let service_db = scratch;

    // Ceilings, each in a fresh database of the same backend: the rows of single repayments in
    // transactions of as many as there are clients, of batched repayments in transactions of a
    // call's size (of all the clients' calls), and the settlement's in transactions of a
    // settlement page, each loan settled once. Each ratio is printed with its ceiling.
    let template = loans_template();
    let group_max = crate::app::writer::GROUP_COMMANDS_MAX;
    let page = (crate::app::servicing::SETTLEMENT_PAGE_LOANS as usize).min(prep_loans).max(1);
    let settle_txns = cfg.ceiling_txns.div_ceil(2).max(1);
    let ceilings = [
        (
            singles_name,
            singles_rate,
            Rows::Repayment,
            cfg.clients.clamp(1, group_max),
            cfg.ceiling_txns * 8,
            1_000,
        ),
        (
            batches_name,
            batches_rate,
            Rows::Repayment,
            (cfg.batch_items * cfg.batch_clients).clamp(1, group_max),
            cfg.ceiling_txns,
            1_000,
        ),
        (
            settlement_name,
            settlement_rate,
            Rows::Settlement { repaid_share },
            page,
            settle_txns,
            page * settle_txns,
        ),
    ];
    // Measured before the service's database is dropped, which happens whatever they give.
    let ceilings_measured = async {
        for (what, service_rate, rows, size, txns, over_loans) in ceilings {
            let scratch = Scratch::new(&cfg.target, "ceil").await?;
            // The scratch database is dropped whatever happens in between.
            let measured = async {
                let db = Db::connect(&scratch.url).await?;
                db.migrate().await?;
                let measured =
                    super::ceiling::measure(&db, &template, rows, over_loans, size, txns).await;
                db.close().await;
                measured
            }
            .await;
            scratch.drop_db().await;
            let (elapsed, cpu) = measured?;
            let (name, unit) = match rows {
                Rows::Repayment => (format!("ceiling, {size} postings a txn"), "postings"),
                Rows::Settlement { .. } => {
                    (format!("ceiling, settlement, {size} loans a txn"), "loans")
                }
            };
            let (name, ceiling_rate) = report(
                Figure {
                    name,
                    count: (size * txns) as u64,
                    unit,
                    seconds: elapsed.as_secs_f64(),
                    latency: None,
                    cpu: Some(cpu),
                },
                &mut figures,
            );
            // A ratio of nothing (the service's figure or the ceiling counted none) is not judged.
            let ratio = service_rate.zip(ceiling_rate).map(|(service, ceiling)| service / ceiling);
            if let Some(ratio) = ratio {
                println!("ratio, {what}: {ratio:.2} of the {name}");
            }
            judged.ratios.push((what, ratio));
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if cfg.keep_database {
        let url = service_db.keep();
        println!(
            "service database kept: {url} (loanledger verify --database-url {url} --ledger BENCH)"
        );
    } else {
        service_db.drop_db().await;
    }
    ceilings_measured?;
    match &judged.not_judged {
        None => println!("targets, judged from this run (BENCHMARKS.md):"),
        Some(why) => println!("targets, not judged from this run ({why}):"),
    }
    for verdict in judge(Backend::of_target(&cfg.target), &judged) {
        println!("{verdict}");
    }
    Ok(figures)
}

/// A scenario's span: the time from its start and the CPU time (user and system) this process
/// used over it, all its threads: the server, its SQLite (which runs inside it; PostgreSQL's
/// backends do not count) and the load generator's clients.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    wall: Instant,
    cpu: Duration,
}

impl Span {
    pub fn start() -> Span {
        Span { wall: Instant::now(), cpu: process_cpu() }
    }

    /// (time, CPU time) since [`Span::start`].
    pub fn elapsed(&self) -> (Duration, Duration) {
        (self.wall.elapsed(), process_cpu().saturating_sub(self.cpu))
    }

    /// The figure of `count` `unit`s done since [`Span::start`].
    fn figure(
        &self,
        name: String,
        count: u64,
        unit: &'static str,
        latency: Option<Latency>,
    ) -> Figure {
        let (wall, cpu) = self.elapsed();
        Figure { name, count, unit, seconds: wall.as_secs_f64(), latency, cpu: Some(cpu) }
    }
}

/// CPU time this process has used so far; zero where the clock cannot be read.
#[cfg(unix)]
fn process_cpu() -> Duration {
    let mut ts = std::mem::MaybeUninit::<libc::timespec>::uninit();
    // SAFETY: `clock_gettime` writes only the `timespec` it is given, which lives here.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, ts.as_mut_ptr()) } != 0 {
        return Duration::ZERO;
    }
    // SAFETY: it returned 0, so it wrote the whole `timespec`.
    let ts = unsafe { ts.assume_init() };
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

#[cfg(not(unix))]
fn process_cpu() -> Duration {
    Duration::ZERO
}

/// The contract every bench loan has: 50,000.00 yuan at 3.85% for 12 months from 2021-01-25,
/// bullet with quarterly interest (ids filled by the caller).
pub fn bench_terms(id_number: &str) -> LoanTerms {
    let day = |s: &str| parse_date(s).expect("valid date");
    LoanTerms {
        loan_id: String::new(),
        ledger_id: String::new(),
        bank_id: String::new(),
        contract_number: "c".into(),
        household_id: String::new(),
        borrower_name: "bench".into(),
        borrower_birth_date: crate::domain::identity::IdNumber::parse(id_number)
            .map(|n| n.birth_date())
            .unwrap_or(day("1980-01-01")),
        borrower_id_number: id_number.to_string(),
        principal_fen: Fen(5_000_000),
        annual_rate: AnnualRate::parse("0.0385").expect("valid rate"),
        contract_date: day("2021-01-25"),
        term_months: 12,
        maturity_date: day("2022-01-25"),
        repayment_method: RepaymentMethod::Bullet,
        settlement_frequency: SettlementFrequency::Quarterly,
        purpose: "bench".into(),
        collateral_free: true,
        guarantee_free: true,
        renews_loan_id: None,
        overdue_uplift: Default::default(),
        misuse_uplift: Default::default(),
        grace_days: 0,
        rounding: Rounding::HalfUp,
        extension_months_max: 12,
        claim_overdue_days: crate::domain::policy::CLAIM_OVERDUE_DAYS_DEFAULT,
    }
}

/// An active loan of 50,000 yuan disbursed, for copies with ids of their own.
pub(crate) fn loans_template() -> LoanState {
    let terms = bench_terms("11010519491231002X");
    let mut s = LoanState::new(terms, 1);
    s.status = crate::domain::loan::LoanStatus::Active;
    s.disbursed_fen = Fen(5_000_000);
    s.principal_outstanding_fen = Fen(5_000_000);
    s
}

#[cfg(test)]
mod tests {
    use super::FullLoad;

    /// The span opens with the last client's first answer and closes for good when the first
    /// client is done.
    #[test]
    fn the_full_load_is_while_every_client_works() {
        let load = FullLoad::new(3);
        load.first_answer();
        load.first_answer();
        assert!(!load.is_full(), "a client has no answer yet");
        assert_eq!(load.seconds(), 0.0);
        load.first_answer();
        assert!(load.is_full());
        load.client_done();
        assert!(!load.is_full(), "a client is done");
        let span = load.seconds();
        assert!(span >= 0.0 && load.until.get().is_some());
        load.client_done();
        assert_eq!(load.seconds(), span, "the span closes once");
    }
}
