//! The test harness: starts the real server on port 0 over a fresh database of either backend,
//! hands out typed gRPC clients that carry a bearer token, and seeds the registry the scenarios
//! share (ledger "450121", bank "B1", a registered-poor household, a standard loan).
//!
//! SQLite tests get a temporary database file (never `sqlite::memory:`, which gives every pooled
//! connection its own database). PostgreSQL tests get a fresh database `t_<random hex>` on the
//! cluster named by `LOANLEDGER_TEST_PG_URL`; `scripts/test.sh` starts a throwaway cluster and
//! sets it. Without that variable the PostgreSQL half is skipped with a message, except under
//! `CI=true`, where a PostgreSQL half that cannot run is a failure.

// One test binary uses this module, but not every scenario uses every helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use loanledger::api::pb;
use loanledger::api::pb::audit_service_client::AuditServiceClient;
use loanledger::api::pb::loan_service_client::LoanServiceClient;
use loanledger::api::pb::pool_service_client::PoolServiceClient;
use loanledger::api::pb::registry_service_client::RegistryServiceClient;
use loanledger::api::pb::risk_fund_service_client::RiskFundServiceClient;
use loanledger::api::pb::subsidy_service_client::SubsidyServiceClient;
use loanledger::app::auth::{Role, create_token};
use loanledger::app::backup::BackupSettings;
use loanledger::startup::{Application, Settings, TOKEN_CACHE_TTL};
use loanledger::store::{Db, StoreError};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

pub const PG_URL_VAR: &str = "LOANLEDGER_TEST_PG_URL";
/// The directory of the test cluster's own PostgreSQL programs (`scripts/test.sh` sets it):
/// the backups' `pg_dump` and the restores' `pg_restore` are of the cluster's version, not
/// whichever client package is newest on the PATH.
pub const PG_BIN_VAR: &str = "LOANLEDGER_TEST_PG_BIN";

/// The PostgreSQL program `name` of the test cluster's version ([`PG_BIN_VAR`]), or as found on
/// the PATH.
pub fn pg_program(name: &str) -> std::path::PathBuf {
    match std::env::var(PG_BIN_VAR) {
        Ok(dir) if !dir.trim().is_empty() => std::path::Path::new(&dir).join(name),
        _ => name.into(),
    }
}
pub const LEDGER: &str = "450121";
pub const BANK: &str = "B1";
pub const HOUSEHOLD: &str = "H001";
/// The standard loan: 50,000.00 yuan at the 1-year LPR of its contract date (DESIGN.md's worked
/// figure), contracted 2021-01-25 for 12 months, bullet principal, quarterly interest.
pub const STANDARD_PRINCIPAL_FEN: i64 = 5_000_000;
pub const STANDARD_RATE: &str = "0.0385";
pub const CONTRACT_DATE: &str = "2021-01-25";
/// How long a server may take to stop; a hang here is a shutdown bug, not a slow machine.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a test's server waits for its open requests when it stops (well below
/// [`SHUTDOWN_TIMEOUT`]).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Adds `authorization: Bearer <token>` to every call of a channel.
#[derive(Clone)]
pub struct Bearer(AsciiMetadataValue);

impl Bearer {
    pub fn new(token: &str) -> Self {
        Bearer(
            MetadataValue::try_from(format!("Bearer {token}")).expect("a token is printable ASCII"),
        )
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;
pub type Registry = RegistryServiceClient<Authed>;
pub type Loans = LoanServiceClient<Authed>;
pub type Audit = AuditServiceClient<Authed>;
pub type Subsidy = SubsidyServiceClient<Authed>;
pub type RiskFunds = RiskFundServiceClient<Authed>;
pub type Pools = PoolServiceClient<Authed>;

struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// A PostgreSQL database made for one test, dropped by [`TestApp::finish`].
struct PgDatabase {
    admin_url: String,
    name: String,
}

pub struct TestApp {
    pub backend: Backend,
    pub database_url: String,
    pub port: u16,
    /// The test's own pool on the server's database: for tokens and raw SQL. It stays open
    /// across restarts (the server closes its own pool when it stops).
    pub db: Db,
    /// The operator token the server created on its first start over the empty database.
    pub operator: String,
    running: Option<Running>,
    pg: Option<PgDatabase>,
    // Removed (with the SQLite file) when the TestApp is dropped.
    _dir: Option<tempfile::TempDir>,
    /// The server's backup directory (`serve --backup-dir`), kept across restarts and removed
    /// when the TestApp is dropped.
    pub backups: tempfile::TempDir,
}

/// Tokens for the seeded organisations.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub operator: String,
    /// Finance office of ledger 450121.
    pub finance: String,
    /// Bank B1.
    pub bank: String,
    /// Auditor of ledger 450121.
    pub auditor: String,
}

impl TestApp {
    /// The URL of a new database with nothing in it, not migrated: a SQLite file in a
    /// temporary directory (kept as long as the returned one), or a PostgreSQL database of the
    /// test's cluster (left to the throwaway cluster). `None` where the backend is not tested.
    pub async fn new_database(backend: Backend) -> Option<(String, Option<tempfile::TempDir>)> {
        Some(match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("Failed to create a temporary directory");
                (format!("sqlite://{}", dir.path().join("new.db").display()), Some(dir))
            }
            Backend::Postgres => (create_pg_database(&postgres_admin_url()?, None).await.0, None),
        })
    }

    /// Starts a server over a fresh database; `None` when the PostgreSQL half is skipped.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        TestApp::spawn_collated(backend, None).await
    }

    /// As [`TestApp::spawn`]; on PostgreSQL, the database's default collation is the ICU locale
    /// `icu_locale` when given (production clusters are often made with a locale such as
    /// en_US.UTF-8, whose order of text is not that of its bytes).
    pub async fn spawn_collated(backend: Backend, icu_locale: Option<&str>) -> Option<TestApp> {
        let (database_url, pg, dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("Failed to create a temporary directory");
                let url = format!("sqlite://{}", dir.path().join("loanledger.db").display());
                (url, None, Some(dir))
            }
            Backend::Postgres => {
                let (url, pg) = create_pg_database(&postgres_admin_url()?, icu_locale).await;
                (url, Some(pg), None)
            }
        };
        Some(TestApp::launch(backend, database_url, pg, dir, None).await)
    }

    /// A server started over `database_url` (its files in `dir`, its PostgreSQL database
    /// `pg`), with a backup directory of its own. `operator`: the token of a database that has
    /// one already (the server must make none); `None`: the token the server makes on the
    /// empty database.
    async fn launch(
        backend: Backend,
        database_url: String,
        pg: Option<PgDatabase>,
        dir: Option<tempfile::TempDir>,
        operator: Option<String>,
    ) -> TestApp {
        let offset = loanledger::startup::business_utc_offset_default();
        let backups = tempfile::tempdir().expect("Failed to create a backup directory");
        let (port, running, made) =
            start(&database_url, backups.path(), offset, TOKEN_CACHE_TTL).await;
        let operator = match operator {
            None => made.expect("a server on an empty database creates an operator token"),
            Some(operator) => {
                assert_eq!(made, None, "a database with tokens gets no new operator token");
                operator
            }
        };
        let db = Db::connect(&database_url).await.expect("Failed to open the test's own pool");
        TestApp {
            backend,
            database_url,
            port,
            db,
            operator,
            running: Some(running),
            pg,
            _dir: dir,
            backups,
        }
    }

    /// Stops the server (letting it finish what is in flight) and starts a new one on the same
    /// database, on a new port. Clients made before the restart point at the old port.
    pub async fn restart(&mut self) {
        self.restart_with(loanledger::startup::business_utc_offset_default(), TOKEN_CACHE_TTL)
            .await;
    }

    /// As [`TestApp::restart`], the new server's business day at `offset` from UTC and its
    /// cache of checked tokens kept `token_cache_ttl` (`serve`'s: [`TOKEN_CACHE_TTL`]).
    pub async fn restart_with(&mut self, offset: chrono::FixedOffset, token_cache_ttl: Duration) {
        self.stop().await;
        let (port, running, operator) =
            start(&self.database_url, self.backups.path(), offset, token_cache_ttl).await;
        assert_eq!(operator, None, "a restarted server must not create another operator token");
        self.port = port;
        self.running = Some(running);
    }

    /// Stops the server and waits until it has shut down cleanly.
    pub async fn stop(&mut self) {
        let Some(Running { shutdown, task }) = self.running.take() else {
            return;
        };
        let _ = shutdown.send(());
        tokio::time::timeout(SHUTDOWN_TIMEOUT, task)
            .await
            .expect("the server did not shut down in time")
            .expect("the server task panicked")
            .expect("the server returned an error");
    }

    /// A server of its own over a restore of the backup at `path` (the `Backup` answer's path),
    /// as README's "Backups" restores one: SQLite's copy is copied to a fresh directory and
    /// served; PostgreSQL's dump is restored into a fresh database with `pg_restore`. Its
    /// operator token is this app's (the tokens are in the backup).
    pub async fn restore(&self, path: &str) -> TestApp {
        let (database_url, pg, dir) = match self.backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("Failed to create a temporary directory");
                let file = dir.path().join("restored.db");
                std::fs::copy(path, &file).expect("Failed to copy the backup");
                (format!("sqlite://{}", file.display()), None, Some(dir))
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url().expect("a PostgreSQL test has its cluster");
                let (url, pg) = create_pg_database(&admin_url, None).await;
                let out = tokio::process::Command::new(pg_program("pg_restore"))
                    .args(["--no-owner", "--exit-on-error", "--dbname", &url, path])
                    .output()
                    .await
                    .expect("Failed to run pg_restore");
                assert!(
                    out.status.success(),
                    "pg_restore: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                (url, Some(pg), None)
            }
        };
        // A restored database has its operator tokens.
        TestApp::launch(self.backend, database_url, pg, dir, Some(self.operator.clone())).await
    }

    /// PostgreSQL: the test's database refusing new connections, every open one ended (the
    /// database away, as its server sees it), or (`allow`) taking them again.
    pub async fn allow_connections(&self, allow: bool) {
        let pg = self.pg.as_ref().expect("a PostgreSQL test's database");
        let admin = Db::connect(&pg.admin_url).await.expect("the cluster");
        let alter = format!("alter database {} allow_connections {allow}", pg.name);
        admin.execute_raw(&alter).await.expect("alter database");
        if !allow {
            let kill = format!(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = '{}'",
                pg.name
            );
            admin.execute_raw(&kill).await.expect("terminate its sessions");
        }
        admin.close().await;
    }

    /// Stops the server, closes the test's pool and drops a PostgreSQL test database.
    pub async fn finish(mut self) {
        self.stop().await;
        self.db.close().await;
        // Best effort: a leftover database goes with the throwaway cluster.
        if let Some(pg) = self.pg.take()
            && let Ok(admin) = Db::connect(&pg.admin_url).await
        {
            let _ = admin
                .execute_raw(&format!("drop database if exists {} with (force)", pg.name))
                .await;
            admin.close().await;
        }
    }

    pub fn channel(&self) -> Channel {
        self.endpoint().connect_lazy()
    }

    /// A unary call of `path` (`/loanledger.v1.Service/Method`) whose message is `body`, its
    /// bytes sent as they are (a client whose encoder is broken), by the holder of `token`.
    pub async fn raw_call(
        &self,
        token: &str,
        path: &'static str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel());
        grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let mut request = tonic::Request::new(body);
        let bearer = MetadataValue::try_from(format!("Bearer {token}")).expect("printable");
        request.metadata_mut().insert("authorization", bearer);
        let path = http::uri::PathAndQuery::from_static(path);
        grpc.unary(request, path, loanledger::client::Bytes).await.map(tonic::Response::into_inner)
    }

    /// The server's address, for a client of the test's own settings.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port))
            .expect("a valid endpoint")
            .connect_timeout(Duration::from_secs(5))
    }

    pub fn registry(&self, token: &str) -> Registry {
        RegistryServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn loans(&self, token: &str) -> Loans {
        LoanServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn audit(&self, token: &str) -> Audit {
        AuditServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn subsidy(&self, token: &str) -> Subsidy {
        SubsidyServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn risk_fund(&self, token: &str) -> RiskFunds {
        RiskFundServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn pools(&self, token: &str) -> Pools {
        PoolServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    /// The balance of `account` in the test's ledger today, as `token` reads it (streamed by
    /// `GetBalances`; 0 for an account without postings).
    pub async fn balance(&self, token: &str, account: &str) -> i64 {
        let request = pb::GetBalancesRequest {
            ledger_id: LEDGER.into(),
            as_of: String::new(),
            account_prefix: account.into(),
            through_seq: 0,
        };
        let stream = self.audit(token).get_balances(request).await.expect("GetBalances");
        let chunks = collect(stream.into_inner()).await.expect("the balances");
        chunks
            .iter()
            .flat_map(|c| &c.balances)
            .filter(|b| b.account == account)
            .map(|b| b.balance_fen)
            .sum()
    }

    /// GetLoanSubsidy as of `as_of`, expected to answer.
    pub async fn loan_subsidy(&self, token: &str, loan_id: &str, as_of: &str) -> pb::LoanSubsidy {
        self.subsidy(token)
            .get_loan_subsidy(pb::GetLoanSubsidyRequest {
                loan_id: loan_id.into(),
                as_of: as_of.into(),
                through_seq: 0,
            })
            .await
            .unwrap_or_else(|e| panic!("GetLoanSubsidy {loan_id} as of {as_of}: {e:?}"))
            .into_inner()
    }

    pub async fn token(&self, role: Role, org: &str) -> String {
        create_token(&self.db, role, org, 0)
            .await
            .unwrap_or_else(|e| panic!("Failed to create a {role:?} token for {org}: {e}"))
    }

    pub async fn bank_token(&self, bank_id: &str) -> String {
        self.token(Role::Bank, bank_id).await
    }

    pub async fn finance_token(&self) -> String {
        self.token(Role::Finance, LEDGER).await
    }

    pub async fn auditor_token(&self) -> String {
        self.token(Role::Auditor, LEDGER).await
    }

    /// Ledger 450121, bank B1 and household H001 (registered poor since 2016-01-01), with a
    /// token for each role.
    pub async fn seed(&self) -> Tokens {
        let tokens = Tokens {
            operator: self.operator.clone(),
            finance: self.finance_token().await,
            bank: self.bank_token(BANK).await,
            auditor: self.auditor_token().await,
        };
        self.create_ledger(&tokens.operator, LEDGER, "武鸣区 Wuming").await;
        self.register_bank(&tokens.operator, BANK).await;
        self.register_household(&tokens.finance, HOUSEHOLD, "19800517").await;
        tokens
    }

    pub async fn create_ledger(
        &self,
        token: &str,
        ledger_id: &str,
        name: &str,
    ) -> pb::CreateLedgerResponse {
        self.registry(token)
            .create_ledger(pb::CreateLedgerRequest {
                request_id: rid("ledger"),
                ledger_id: ledger_id.into(),
                name: name.into(),
            })
            .await
            .expect("CreateLedger")
            .into_inner()
    }

    pub async fn register_bank(&self, token: &str, bank_id: &str) -> pb::RegisterBankResponse {
        self.registry(token)
            .register_bank(pb::RegisterBankRequest {
                request_id: rid("bank"),
                ledger_id: LEDGER.into(),
                bank_id: bank_id.into(),
                name: format!("Rural Credit Cooperative {bank_id}"),
            })
            .await
            .expect("RegisterBank")
            .into_inner()
    }

    /// Registers a household, registered poor since 2016-01-01, whose head was born on
    /// `head_birth` (YYYYMMDD).
    pub async fn register_household(
        &self,
        token: &str,
        household_id: &str,
        head_birth: &str,
    ) -> pb::RegisterHouseholdResponse {
        self.registry(token)
            .register_household(household_request(household_id, head_birth))
            .await
            .unwrap_or_else(|e| panic!("RegisterHousehold {household_id}: {e:?}"))
            .into_inner()
    }

    pub async fn create_loan(&self, token: &str, req: pb::CreateLoanRequest) -> pb::LoanResponse {
        let what = format!("CreateLoan {}", req.contract_number);
        self.loans(token)
            .create_loan(req)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"))
            .into_inner()
    }

    pub async fn disburse(&self, token: &str, loan_id: &str, value_date: &str) -> pb::LoanResponse {
        self.loans(token)
            .disburse(pb::DisburseRequest {
                request_id: rid("disburse"),
                loan_id: loan_id.into(),
                value_date: value_date.into(),
                amount_fen: 0,
            })
            .await
            .unwrap_or_else(|e| panic!("Disburse {loan_id}: {e:?}"))
            .into_inner()
    }

    /// Records a repayment of `amount_fen`, which the service allocates (penalty, compound,
    /// overdue interest, current interest, then principal).
    pub async fn repay(
        &self,
        token: &str,
        loan_id: &str,
        value_date: &str,
        amount_fen: i64,
    ) -> pb::LoanResponse {
        self.repay_as(token, &rid("repay"), loan_id, value_date, amount_fen)
            .await
            .unwrap_or_else(|e| panic!("RecordRepayment {loan_id}: {e:?}"))
    }

    /// RecordRepayment under the caller's own request id, answered as the client sees it.
    pub async fn repay_as(
        &self,
        token: &str,
        request_id: &str,
        loan_id: &str,
        value_date: &str,
        amount_fen: i64,
    ) -> Result<pb::LoanResponse, tonic::Status> {
        self.loans(token)
            .record_repayment(pb::RecordRepaymentRequest {
                request_id: request_id.into(),
                loan_id: loan_id.into(),
                value_date: value_date.into(),
                amount_fen,
                subsidy_netted_fen: 0,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// ReverseRepayment of entry `reversed_seq` of `loan_id` under `request_id`, answered as
    /// the client sees it.
    pub async fn reverse_as(
        &self,
        token: &str,
        request_id: &str,
        loan_id: &str,
        reversed_seq: u64,
        reason: &str,
    ) -> Result<tonic::Response<pb::LoanResponse>, tonic::Status> {
        let request = pb::ReverseRepaymentRequest {
            request_id: request_id.into(),
            loan_id: loan_id.into(),
            reversed_seq,
            reason: reason.into(),
        };
        self.loans(token).reverse_repayment(request).await
    }

    pub async fn payoff_quote(&self, token: &str, loan_id: &str, as_of: &str) -> pb::PayoffQuote {
        self.loans(token)
            .get_payoff_quote(pb::GetPayoffQuoteRequest {
                loan_id: loan_id.into(),
                as_of: as_of.into(),
                through_seq: 0,
            })
            .await
            .unwrap_or_else(|e| panic!("GetPayoffQuote {loan_id} {as_of}: {e:?}"))
            .into_inner()
    }

    /// The parameters of the seeded ledger's policy in force on `as_of`.
    pub async fn policy_on(&self, token: &str, as_of: &str) -> pb::PolicyParams {
        let request =
            pb::GetPolicyRequest { ledger_id: LEDGER.into(), as_of: as_of.into(), through_seq: 0 };
        let version = self.registry(token).get_policy(request).await.expect("GetPolicy");
        version.into_inner().params.expect("its parameters")
    }

    /// Pays a loan off on `value_date` with the amount its payoff quote names.
    pub async fn pay_off(&self, token: &str, loan_id: &str, value_date: &str) -> pb::LoanResponse {
        let quote = self.payoff_quote(token, loan_id, value_date).await;
        self.repay(token, loan_id, value_date, quote.total_fen).await
    }

    /// The whole journal of a ledger, oldest first.
    pub async fn journal(&self, token: &str, ledger_id: &str) -> Vec<pb::JournalTransaction> {
        let stream = self
            .audit(token)
            .read_journal(pb::ReadJournalRequest {
                ledger_id: ledger_id.into(),
                from_seq: 0,
                to_seq: 0,
            })
            .await
            .expect("ReadJournal");
        collect(stream.into_inner()).await.expect("ReadJournal stream")
    }

    pub async fn history(&self, token: &str, loan_id: &str) -> Vec<pb::JournalTransaction> {
        let stream = self
            .audit(token)
            .get_loan_history(pb::GetLoanHistoryRequest { loan_id: loan_id.into(), through_seq: 0 })
            .await
            .expect("GetLoanHistory");
        collect(stream.into_inner()).await.expect("GetLoanHistory stream")
    }

    /// Verify, its claims' lines worked out again too (every scenario that records a claim
    /// checks that its recorded figures are the registers' through the seq before it).
    pub async fn verify(&self, token: &str) -> pb::VerifyResponse {
        self.audit(token)
            .verify(pb::VerifyRequest {
                ledger_id: LEDGER.into(),
                recheck_claims: true,
                recheck_answers: true,
            })
            .await
            .expect("Verify")
            .into_inner()
    }

    /// The loan as it stands today (figures and status as of today).
    pub async fn get_loan(&self, token: &str, loan_id: &str) -> pb::Loan {
        self.loans(token)
            .get_loan(pb::GetLoanRequest {
                loan_id: loan_id.into(),
                as_of: String::new(),
                through_seq: 0,
            })
            .await
            .unwrap_or_else(|e| panic!("GetLoan {loan_id}: {e:?}"))
            .into_inner()
    }

    /// The loan as it stood at the end of `as_of`, rebuilt from the journal.
    pub async fn get_loan_as_of(&self, token: &str, loan_id: &str, as_of: &str) -> pb::Loan {
        self.loans(token)
            .get_loan(pb::GetLoanRequest {
                loan_id: loan_id.into(),
                as_of: as_of.into(),
                through_seq: 0,
            })
            .await
            .unwrap_or_else(|e| panic!("GetLoan {loan_id} as of {as_of}: {e:?}"))
            .into_inner()
    }

    /// The stored answer of the one idempotency record `where_sql` selects replaced by `answer`
    /// behind the service's back; what `auditor`'s verify then finds.
    pub async fn forge_answer(
        &self,
        auditor: &str,
        where_sql: &str,
        answer: &serde_json::Value,
    ) -> Vec<String> {
        let sql = format!("update idempotency set result_json = '{answer}' where {where_sql}");
        assert_eq!(self.behind_the_back("idempotency", &sql).await.expect("changed"), 1);
        self.verify(auditor).await.problems
    }

    /// Runs `sql` on `table` behind the service's back, as someone holding the database's keys
    /// would: the triggers that keep the table append-only are dropped for the statement and
    /// put back as they were (with them gone, verify reports the guards too:
    /// `weakened_guards_are_reported`).
    pub async fn behind_the_back(&self, table: &str, sql: &str) -> Result<u64, StoreError> {
        let (drops, creates) = match self.backend {
            Backend::Sqlite => (
                format!(
                    "select 'drop trigger ' || name || ';' from sqlite_master \
                     where type = 'trigger' and tbl_name = '{table}'"
                ),
                format!(
                    "select sql || ';' from sqlite_master \
                     where type = 'trigger' and tbl_name = '{table}'"
                ),
            ),
            Backend::Postgres => (
                format!(
                    "select format('drop trigger %I on %I;', tgname, '{table}') from pg_trigger \
                     where tgrelid = '{table}'::regclass and not tgisinternal"
                ),
                // Put back as they were: firing always (migration 0024) too.
                format!(
                    "select pg_get_triggerdef(oid) || ';' || case tgenabled when 'A' then \
                     format(' alter table %I enable always trigger %I;', '{table}', tgname) \
                     else '' end from pg_trigger \
                     where tgrelid = '{table}'::regclass and not tgisinternal"
                ),
            ),
        };
        let read = async |sql: &str| {
            self.db.query_texts(sql).await.expect("the table's triggers read").concat()
        };
        let (drops, creates) = (read(&drops).await, read(&creates).await);
        assert!(!drops.is_empty(), "{table} has no triggers to go behind");
        self.execute_ddl(&drops).await.expect("the triggers dropped");
        let done = self.db.execute_raw(sql).await;
        self.execute_ddl(&creates).await.expect("the triggers put back");
        done
    }

    /// Runs `sql`, statements that change the schema, outside the writer. On SQLite a pooled
    /// connection checks its cached schema when a statement runs, not when a `create` is
    /// prepared ("trigger … already exists" for one another connection dropped): a read of the
    /// schema first brings it up to date.
    pub async fn execute_ddl(&self, sql: &str) -> Result<u64, StoreError> {
        match self.backend {
            Backend::Sqlite => {
                self.db.execute_raw(&format!("select count(*) from sqlite_master; {sql}")).await
            }
            Backend::Postgres => self.db.execute_raw(sql).await,
        }
    }

    /// A migration run again over a database where `undo` (a column dropped) took away what it
    /// made: its backfill then rebuilds it from the journal. `migration` is the SQL of its
    /// SQLite and its PostgreSQL file.
    pub async fn rerun_migration(&self, undo: &str, migration: (&str, &str)) {
        // On PostgreSQL the migrations that set a guard aside enable it again as they were
        // written, before migration 0024 made the guards fire always: 0024 is run after them.
        let (migration, after) = match self.backend {
            Backend::Sqlite => (migration.0, ""),
            Backend::Postgres => {
                (migration.1, include_str!("../../migrations/postgres/0024_guards_fire_always.sql"))
            }
        };
        let sql = format!("{undo}; {migration}; {after}");
        self.execute_ddl(&sql).await.expect("the migration run again");
    }
}

async fn start(
    database_url: &str,
    backup_dir: &std::path::Path,
    business_utc_offset: chrono::FixedOffset,
    token_cache_ttl: Duration,
) -> (u16, Running, Option<String>) {
    let app = Application::build(Settings {
        listen: "127.0.0.1:0".parse().expect("a socket address"),
        database_url: database_url.to_string(),
        business_utc_offset,
        token_cache_ttl,
        drain_timeout: DRAIN_TIMEOUT,
        signing_key: None,
        backups: Some(BackupSettings {
            dir: backup_dir.to_path_buf(),
            pg_dump: pg_program("pg_dump"),
        }),
        tls: None,
    })
    .await
    .unwrap_or_else(|e| panic!("Failed to build the application: {e:?}"));
    let port = app.port();
    let operator = app.initial_operator_token();
    (port, run(app), operator)
}

/// A fresh database `t_<random hex>` on the cluster at `admin_url` (its default collation the
/// ICU locale `icu_locale` when given): its URL, and what drops it.
async fn create_pg_database(admin_url: &str, icu_locale: Option<&str>) -> (String, PgDatabase) {
    let name = format!("t_{}", hex::encode(rand::random::<[u8; 8]>()));
    let admin = Db::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("Failed to connect to {PG_URL_VAR}={admin_url}: {e}"));
    let create = match icu_locale {
        None => format!("create database {name}"),
        Some(icu) => format!(
            "create database {name} template template0 encoding 'UTF8' locale 'C' \
             locale_provider icu icu_locale '{icu}'"
        ),
    };
    admin
        .execute_raw(&create)
        .await
        .unwrap_or_else(|e| panic!("Failed to create database {name}: {e}"));
    admin.close().await;
    let url = with_database(admin_url, &name);
    (url, PgDatabase { admin_url: admin_url.to_string(), name })
}

/// A server of the test's own settings beside a [`TestApp`]'s (on its database, say), until
/// [`Beside::stop`].
pub struct Beside {
    pub port: u16,
    running: Running,
}

impl Beside {
    pub async fn start(settings: Settings) -> Beside {
        let app = Application::build(settings).await.expect("a server beside the test's");
        let port = app.port();
        Beside { port, running: run(app) }
    }

    pub fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port))
            .expect("an endpoint")
            .connect_lazy()
    }

    /// Stops it and waits until it has stopped cleanly.
    pub async fn stop(self) {
        let Running { shutdown, task } = self.running;
        let _ = shutdown.send(());
        task.await.expect("the server task").expect("the server stops cleanly");
    }
}

/// Serves `app` until its [`Running::shutdown`] is sent.
fn run(app: Application) -> Running {
    let (shutdown, signal) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = signal.await;
    }));
    Running { shutdown, task }
}

impl Backend {
    /// As `GetMetrics` names it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// `LOANLEDGER_TEST_PG_URL`, or `None` (skip) when it is missing outside CI.
fn postgres_admin_url() -> Option<String> {
    match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "{PG_URL_VAR} is not set but CI=true: the PostgreSQL half of the suite must \
                     run in CI (use scripts/test.sh, which starts a throwaway cluster)"
                );
            }
            eprintln!(
                "SKIPPED (PostgreSQL half): {PG_URL_VAR} is not set; run scripts/test.sh to \
                 start a throwaway PostgreSQL cluster, or set it to postgres://user@host:port/db"
            );
            None
        }
    }
}

/// The same server URL with another database name (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

pub async fn collect<T>(mut stream: tonic::Streaming<T>) -> Result<Vec<T>, Status> {
    let mut out = Vec::new();
    while let Some(item) = stream.message().await? {
        out.push(item);
    }
    Ok(out)
}

/// A fresh request id.
pub fn rid(prefix: &str) -> String {
    format!("{prefix}-{}", hex::encode(rand::random::<[u8; 8]>()))
}

/// A valid 18-character resident identity number (GB 11643) of region `region` (6 digits) for a
/// person born on `birth` (YYYYMMDD), with sequence number `serial` (0..=999).
pub fn id_number_in(region: &str, birth: &str, serial: u32) -> String {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let first17 = format!("{region}{birth}{:03}", serial % 1000);
    assert_eq!(first17.len(), 17, "region must have 6 digits and birth 8");
    let sum: u32 = first17.bytes().zip(WEIGHTS).map(|(b, w)| u32::from(b - b'0') * w).sum();
    format!("{first17}{}", CHECK[(sum % 11) as usize] as char)
}

/// A valid identity number for a person born on `birth` (YYYYMMDD), none given twice by one
/// test process (a head heads one household of a ledger, so two households' heads must differ):
/// the ledger's county for the first thousand, then its neighbours' codes.
pub fn id_number(birth: &str) -> String {
    static GIVEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = GIVEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let county: u32 = LEDGER[3..].parse().expect("the ledger is a county code");
    let region = format!("{}{:03}", &LEDGER[..3], (county + n / 1000) % 1000);
    id_number_in(&region, birth, n % 1000)
}

pub fn household_request(household_id: &str, head_birth: &str) -> pb::RegisterHouseholdRequest {
    pb::RegisterHouseholdRequest {
        request_id: rid("household"),
        ledger_id: LEDGER.into(),
        household_id: household_id.into(),
        head_name: format!("户主{household_id}"),
        head_id_number: id_number(head_birth),
        township: "城厢镇".into(),
        village: "东风村".into(),
        status: pb::HouseholdStatus::RegisteredPoor as i32,
        status_effective_date: "2016-01-01".into(),
    }
}

/// Simple interest of `principal_fen` over `days` at the standard rate 3.85% on the 360-day
/// basis, rounded half up to the fen: the independent check of one settlement's figure.
pub fn standard_interest(principal_fen: i64, days: i64) -> i64 {
    // fen × days × 0.0385 / 360 = fen × days × 385 / 3,600,000.
    let numerator = i128::from(principal_fen) * i128::from(days) * 385;
    ((numerator + 1_800_000) / 3_600_000) as i64
}

/// The standard loan of B1 to `household_id` (borrower born 1980-05-17, so 40 on the contract
/// date): 5,000,000 fen at "0.0385", contracted 2021-01-25 for 12 months, bullet, quarterly.
pub fn standard_loan(contract_number: &str, household_id: &str) -> pb::CreateLoanRequest {
    pb::CreateLoanRequest {
        request_id: rid("loan"),
        bank_id: BANK.into(),
        contract_number: contract_number.into(),
        household_id: household_id.into(),
        borrower_name: format!("户主{household_id}"),
        borrower_id_number: id_number("19800517"),
        principal_fen: STANDARD_PRINCIPAL_FEN,
        annual_rate: STANDARD_RATE.into(),
        contract_date: CONTRACT_DATE.into(),
        term_months: 12,
        repayment_method: pb::RepaymentMethod::Bullet as i32,
        settlement_frequency: pb::SettlementFrequency::Quarterly as i32,
        purpose: "养殖 (livestock)".into(),
        collateral_free: true,
        guarantee_free: true,
        renews_loan_id: String::new(),
    }
}

/// A version of the seeded ledger's policy from `effective_date` with `params`, under a fresh
/// request id.
pub fn policy_from(effective_date: &str, params: pb::PolicyParams) -> pb::SetPolicyRequest {
    pb::SetPolicyRequest {
        request_id: rid("policy"),
        ledger_id: LEDGER.into(),
        effective_date: effective_date.into(),
        params: Some(params),
    }
}

/// [`standard_loan`] contracted on `contract_date`.
pub fn standard_loan_on(
    contract_number: &str,
    household_id: &str,
    contract_date: &str,
) -> pb::CreateLoanRequest {
    pb::CreateLoanRequest {
        contract_date: contract_date.into(),
        ..standard_loan(contract_number, household_id)
    }
}

/// A row of `journal_loan` inserted behind the service's back.
pub fn link_sql(loan_id: &str, ledger_id: &str, seq: u64) -> String {
    format!(
        "insert into journal_loan (loan_id, ledger_id, seq) values ('{loan_id}', '{ledger_id}', {seq})"
    )
}

pub fn loan_id(contract_number: &str) -> String {
    format!("{BANK}-{contract_number}")
}

/// Sums the postings of `entries` per account.
pub fn balances(entries: &[pb::JournalTransaction]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for e in entries {
        for p in &e.postings {
            *out.entry(p.account.clone()).or_insert(0) += p.amount_fen;
        }
    }
    out
}

/// Recomputes the hash chain of a whole ledger journal (as streamed by ReadJournal) from the
/// canonical encoding documented in src/ledger/hash.rs, independently of the server's code, and
/// checks the sequence is dense from 1 and every transaction's postings sum to zero.
pub fn check_chain(entries: &[pb::JournalTransaction]) {
    let mut prev = [0u8; 32];
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "journal sequence must be dense from 1");
        assert_eq!(e.prev_hash, hex::encode(prev), "prev_hash of seq {}", e.seq);
        let sum: i64 = e.postings.iter().map(|p| p.amount_fen).sum();
        assert_eq!(sum, 0, "postings of seq {} must sum to zero", e.seq);
        let hash = chain_hash(&prev, e);
        assert_eq!(
            e.hash,
            hex::encode(hash),
            "hash of seq {} recomputed from its canonical bytes",
            e.seq
        );
        prev = hash;
    }
}

/// The statements that make the hash chain whole again from `journal[at]` on, as a forger with
/// the database's keys would, once a field of `journal[at]` has been changed (in `journal`, and
/// by the caller's own statement in the database): each transaction's `prev_hash` and `hash`
/// from there, recomputed.
pub fn rehash_from(journal: &[pb::JournalTransaction], at: usize) -> String {
    let mut prev: [u8; 32] =
        hex::decode(&journal[at].prev_hash).expect("hex").try_into().expect("32 bytes");
    let mut sql = String::new();
    for e in &journal[at..] {
        let hash = chain_hash(&prev, e);
        sql.push_str(&format!(
            "update journal_txn set prev_hash = '{}', hash = '{}' where ledger_id = '{}' and seq = {};",
            hex::encode(prev),
            hex::encode(hash),
            e.ledger_id,
            e.seq
        ));
        prev = hash;
    }
    sql
}

/// What Verify's recheck of the stored answers reports of each transaction whose hash a
/// rewrite changed (`before` the journal as read before it, `after` as read after): its stored
/// answer names the hash it was answered with.
pub fn stale_answers(
    before: &[pb::JournalTransaction],
    after: &[pb::JournalTransaction],
) -> Vec<String> {
    let changed = before.iter().zip(after).filter(|(b, a)| b.hash != a.hash);
    changed
        .map(|(b, a)| {
            format!(
                "seq {seq}: the stored answer to {}'s request {} names {ledger} seq {seq} (hash {}), \
                 not its own transaction ({ledger} seq {seq}, hash {})",
                a.actor,
                a.request_id,
                b.hash,
                a.hash,
                seq = a.seq,
                ledger = a.ledger_id,
            )
        })
        .collect()
}

/// The SQL that stamps the stored answers of the transactions whose hash a rewrite changed with
/// their new hashes: what a forger who rewrote the chain would do next.
pub fn restamp_answers(
    before: &[pb::JournalTransaction],
    after: &[pb::JournalTransaction],
) -> String {
    let changed = before.iter().zip(after).filter(|(b, a)| b.hash != a.hash);
    changed
        .map(|(b, a)| {
            format!(
                "update idempotency set result_json = replace(result_json, '{}', '{}') \
                 where ledger_id = '{}' and seq = {};",
                b.hash, a.hash, a.ledger_id, a.seq
            )
        })
        .collect()
}

/// `e`'s hash chained from `prev`, from the canonical encoding documented in
/// src/ledger/hash.rs, computed here independently of the server's code.
pub fn chain_hash(prev: &[u8; 32], e: &pb::JournalTransaction) -> [u8; 32] {
    let at = e.recorded_at.as_ref().expect("recorded_at is set");
    let recorded_at_us = at.seconds * 1_000_000 + i64::from(at.nanos / 1_000);
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"LLJ1");
    put_str(&mut bytes, &e.ledger_id);
    bytes.extend_from_slice(&e.seq.to_be_bytes());
    put_str(&mut bytes, &e.kind);
    put_str(&mut bytes, &e.value_date);
    bytes.extend_from_slice(&recorded_at_us.to_be_bytes());
    put_str(&mut bytes, &e.actor);
    put_str(&mut bytes, &e.request_id);
    put_str(&mut bytes, &e.command_json);
    bytes.extend_from_slice(&(e.postings.len() as u32).to_be_bytes());
    for p in &e.postings {
        put_str(&mut bytes, &p.account);
        bytes.extend_from_slice(&p.amount_fen.to_be_bytes());
    }
    let mut h = Sha256::new();
    h.update(prev);
    h.update(&bytes);
    h.finalize().into()
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Asserts a call failed with `code`, and returns the status.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    code: Code,
) -> Status {
    match result {
        Ok(r) => panic!("expected {code:?}, got an answer: {:?}", r.get_ref()),
        Err(s) => {
            assert_eq!(s.code(), code, "unexpected status: {s:?}");
            s
        }
    }
}

/// `code` with a google.rpc.ErrorInfo of `reason`: the status and its ErrorInfo.
#[track_caller]
fn expect_reason<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    code: Code,
    reason: &str,
) -> (Status, tonic_types::ErrorInfo) {
    let status = expect_code(result, code);
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("{code:?} without ErrorInfo: {status:?}"));
    assert_eq!(info.reason, reason, "ErrorInfo reason of {status:?}");
    (status, info)
}

/// `ALREADY_EXISTS` with its reason: `REQUEST_ID_REUSED` (the id with other content) or the
/// record's own (`LOAN_EXISTS`, `SUBSIDY_CLAIM_EXISTS`, ...), which mean different things to a
/// client.
#[track_caller]
pub fn expect_exists<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    reason: &str,
) -> Status {
    expect_reason(result, Code::AlreadyExists, reason).0
}

/// Asserts FAILED_PRECONDITION with google.rpc.ErrorInfo `reason` in domain loanledger.v1.
#[track_caller]
pub fn expect_refused<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    reason: &str,
) -> Status {
    let (status, info) = expect_reason(result, Code::FailedPrecondition, reason);
    assert_eq!(info.domain, "loanledger.v1", "ErrorInfo domain of {status:?}");
    status
}

/// A refusal's ErrorInfo metadata under `key`.
pub fn metadata(status: &Status, key: &str) -> Option<String> {
    status.get_details_error_info().and_then(|i| i.metadata.get(key).cloned())
}

/// Asserts INVALID_ARGUMENT with a google.rpc.BadRequest field violation naming `field`.
#[track_caller]
pub fn expect_invalid<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    field: &str,
) -> Status {
    let status = expect_code(result, Code::InvalidArgument);
    let bad = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("INVALID_ARGUMENT without BadRequest: {status:?}"));
    let fields: Vec<&str> = bad.field_violations.iter().map(|v| v.field.as_str()).collect();
    assert!(
        fields.contains(&field),
        "BadRequest should name {field:?}, names {fields:?} ({status:?})"
    );
    status
}

/// A repayment item of a SubmitBatch call.
pub fn repayment_item(
    request_id: &str,
    loan_id: &str,
    value_date: &str,
    amount_fen: i64,
) -> pb::BatchItem {
    pb::BatchItem {
        request_id: request_id.into(),
        item: Some(pb::batch_item::Item::Repayment(pb::RepaymentItem {
            loan_id: loan_id.into(),
            value_date: value_date.into(),
            amount_fen,
            subsidy_netted_fen: 0,
        })),
    }
}

/// A `SetHouseholdStatus` request of a fresh request id, with no reason.
pub fn status_request(
    household_id: &str,
    status: pb::HouseholdStatus,
    effective_date: &str,
) -> pb::SetHouseholdStatusRequest {
    pb::SetHouseholdStatusRequest {
        request_id: rid("status"),
        household_id: household_id.into(),
        status: status as i32,
        effective_date: effective_date.into(),
        reason: String::new(),
    }
}

/// `serve`'s settings by default for `database_url`, listening on `listen`.
pub fn serve_settings(
    database_url: &str,
    listen: std::net::SocketAddr,
) -> loanledger::startup::Settings {
    loanledger::startup::Settings {
        listen,
        database_url: database_url.to_string(),
        business_utc_offset: loanledger::startup::business_utc_offset_default(),
        token_cache_ttl: loanledger::startup::TOKEN_CACHE_TTL,
        drain_timeout: loanledger::startup::DRAIN_TIMEOUT,
        signing_key: None,
        backups: None,
        tls: None,
    }
}

/// Runs the server binary with `args`, which must stop it at its start: its stderr. A server
/// that starts instead is killed after 30 s and the test fails (rather than wait for it).
pub fn refused_start(args: &[&str]) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the server binary runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("its status").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("its output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    stderr
}
