//! The `loanledger` command: serve, migrate, verify, and token administration.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use std::io::Write as _;

use clap::{Parser, Subcommand};
use loanledger::app::auth::{Role, create_token, revoke_token, token_id_of};
use loanledger::app::backup::{BACKUP_DIR_DEFAULT, BackupSettings, take as take_backup};
use loanledger::ledger::checkpoint::Handover;
use loanledger::startup::{
    Application, BUSINESS_UTC_OFFSET_DEFAULT, DRAIN_TIMEOUT, Settings, SigningKeyFile,
    TOKEN_CACHE_TTL, TlsSettings, parse_utc_offset,
};
use loanledger::store::{Db, missing_sqlite_file, shown_url};
use loanledger::telemetry::{self, LogFormat};

/// mimalloc instead of glibc's malloc: the write path allocates many small, short-lived values
/// per command and glibc's consolidation showed up as a fifth of the profile (BENCHMARKS-HISTORY.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "loanledger",
    version,
    about = "Books of a poverty-alleviation microcredit programme, over gRPC"
)]
struct Cli {
    /// Database URL: sqlite://FILE (created if missing by serve and migrate; the other
    /// commands refuse a missing file) or postgres://USER@HOST:PORT/DB.
    #[arg(
        long,
        env = "LOANLEDGER_DATABASE_URL",
        default_value = "sqlite://loanledger.db",
        // `--help` shows no password from the environment (since 2026-12-07 it printed the URL
        // whole).
        hide_env_values = true,
        global = true
    )]
    database_url: String,
    /// Log format.
    #[arg(long, env = "LOANLEDGER_LOG_FORMAT", value_enum, default_value = "human", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Cmd>,
}

/// Where backups go (`serve`'s `Backup` call and the `backup` command).
#[derive(clap::Args)]
struct BackupArgs {
    /// Directory of the backups (made at the first backup if missing).
    #[arg(long, env = "LOANLEDGER_BACKUP_DIR", default_value = BACKUP_DIR_DEFAULT)]
    backup_dir: std::path::PathBuf,
    /// The pg_dump program that backs up a PostgreSQL database (its major version the
    /// server's or later); unused on SQLite.
    #[arg(long, env = "LOANLEDGER_PG_DUMP", default_value = "pg_dump")]
    pg_dump: std::path::PathBuf,
}

impl BackupArgs {
    fn settings(self) -> BackupSettings {
        BackupSettings { dir: self.backup_dir, pg_dump: self.pg_dump }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the gRPC API (the default command).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "LOANLEDGER_LISTEN", default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Offset from UTC of the programme's business day ("today" where a call gives no
        /// date): China Standard Time by default.
        #[arg(long, env = "LOANLEDGER_UTC_OFFSET", default_value = BUSINESS_UTC_OFFSET_DEFAULT,
              value_parser = parse_utc_offset, allow_hyphen_values = true)]
        utc_offset: chrono::FixedOffset,
        /// Seconds a stopping server (SIGTERM, Ctrl-C) waits for the requests in flight before
        /// it stops waiting; what the writer has queued is committed and answered either way.
        #[arg(long, env = "LOANLEDGER_DRAIN_TIMEOUT_SECS", default_value_t = DRAIN_TIMEOUT.as_secs())]
        drain_timeout_secs: u64,
        /// File of the Ed25519 key that signs checkpoints (64 hex digits), made on the first
        /// start, readable by its owner alone; keep it outside the database's reach and back it
        /// up. Its public key is logged at every start: give it to the auditors.
        #[arg(long, env = "LOANLEDGER_SIGNING_KEY", default_value = "loanledger-signing.key")]
        signing_key: std::path::PathBuf,
        /// Make the signing key file when it is missing though the database has ledgers (a
        /// start without it is then refused: their auditors hold checkpoints signed with a key
        /// that is not here). Tell the auditors the new public key.
        #[arg(long, env = "LOANLEDGER_NEW_SIGNING_KEY")]
        new_signing_key: bool,
        #[command(flatten)]
        backups: BackupArgs,
        /// Serve TLS with this certificate (PEM: the server's certificate, then the
        /// intermediates); with --tls-key. Without it, plain HTTP/2.
        #[arg(long, env = "LOANLEDGER_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        /// The private key of --tls-cert (PEM).
        #[arg(long, env = "LOANLEDGER_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
        /// Mutual TLS: only clients whose certificate chains to these CA certificates (PEM)
        /// connect; their bearer token is asked for all the same. With --tls-cert.
        #[arg(long, env = "LOANLEDGER_TLS_CLIENT_CA", requires = "tls_cert")]
        tls_client_ca: Option<std::path::PathBuf>,
    },
    /// Take a backup of the database as the operator's `Backup` call does, beside a running
    /// server or without one: NAME.db (SQLite) or NAME.dump (PostgreSQL, pg_dump's custom
    /// format) and its manifest NAME.json in the backup directory; prints the manifest. Run
    /// again with the same name, it prints the backup taken before and copies nothing.
    Backup {
        /// The backup's name (1 to 64 of A-Z a-z 0-9 . _ -, beginning with a letter or digit).
        name: String,
        #[command(flatten)]
        backups: BackupArgs,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Check a signed checkpoint or proof offline, with the public key pinned: the JSON of a
    /// GetCheckpoint, GetInclusionProof or GetConsistencyProof answer (as grpcurl prints it).
    /// No server, no database. Exit status 1 when anything does not hold.
    Check {
        /// The service's public key as pinned (64 hex digits; `public-key` prints it).
        #[arg(long)]
        public_key: String,
        /// A checkpoint kept from before (its JSON): a consistency proof's earlier checkpoint,
        /// or an inclusion proof's checkpoint, must be it.
        #[arg(long)]
        held: Option<std::path::PathBuf>,
        /// The transaction's hash recomputed from its content: an inclusion proof must be of it.
        #[arg(long, conflicts_with = "transaction")]
        transaction_hash: Option<String>,
        /// The transaction itself, as `ReadJournal` answers it (its JSON, one message of the
        /// stream): its hash recomputed from its content and prev_hash (which must give the
        /// hash it states), and the inclusion proof must be of that hash, seq and ledger.
        #[arg(long)]
        transaction: Option<std::path::PathBuf>,
        /// The key the held checkpoint was signed with, when the service's key has changed
        /// since (64 hex digits; --public-key otherwise).
        #[arg(long, requires = "held")]
        held_public_key: Option<String>,
        /// The kind of answer asked for (checkpoint, inclusion or consistency): another kind
        /// does not hold.
        #[arg(long)]
        expect: Option<String>,
        /// A handover statement of `rotate-signing-key` (its JSON), repeated for each since
        /// the pinned key, oldest first: the answer is checked with the key they lead to, a
        /// held checkpoint with it or any key before it.
        #[arg(long)]
        handover: Vec<std::path::PathBuf>,
        /// The ledger asked about: the answer's checkpoints must be of it.
        #[arg(long)]
        ledger: Option<String>,
        /// The size asked about: the answer's checkpoint (a consistency proof's later one)
        /// must be of it (`GetCheckpoint`'s `tree_size` left at 0 asks for the head, of no
        /// size known before).
        #[arg(long)]
        size: Option<u64>,
        /// The seq asked about: the inclusion proof must be of it.
        #[arg(long)]
        seq: Option<u64>,
        /// The answer's JSON file (`-`: standard input).
        file: std::path::PathBuf,
    },
    /// Change the checkpoint signing key: make a new key in a new file, and write the handover
    /// statement from the old key to it, signed by both (JSON, also printed), which auditors
    /// who pinned the old key follow (`check --handover`). Then restart `serve` with
    /// `--signing-key` the new file, and retire the old one. No database.
    RotateSigningKey {
        /// The key file `serve` signs with now.
        #[arg(long, env = "LOANLEDGER_SIGNING_KEY", default_value = "loanledger-signing.key")]
        signing_key: std::path::PathBuf,
        /// The new key's file (made now; an existing file is refused).
        #[arg(long)]
        new_key_file: std::path::PathBuf,
        /// Where to write the handover statement (a new file) for the auditors.
        #[arg(long)]
        handover: std::path::PathBuf,
    },
    /// Print the public key of a checkpoint signing key file (64 hex digits): the one to give
    /// auditors. Reads the file only (no database; never makes a key).
    PublicKey {
        /// The key file, as given to `serve --signing-key`.
        #[arg(long, env = "LOANLEDGER_SIGNING_KEY", default_value = "loanledger-signing.key")]
        signing_key: std::path::PathBuf,
    },
    /// Verify a ledger's hash chain and read models directly on the database.
    Verify {
        /// Ledger (region code) to verify.
        #[arg(long)]
        ledger: String,
        /// Also work every subsidy claim's lines out again against the registers its
        /// submission checked them against, and report each line that differs.
        #[arg(long)]
        claims: bool,
        /// Also check every transaction's stored answer (what a retry of its request is given)
        /// against the journal, and report each that differs.
        #[arg(long)]
        answers: bool,
    },
    /// Measure the service through gRPC against the database's own ceiling (BENCHMARKS.md).
    Bench {
        /// `sqlite` (a temporary file), or a PostgreSQL server URL on which fresh databases are
        /// created and dropped.
        #[arg(long, default_value = "sqlite")]
        target: String,
        /// Seconds instead of minutes: every scenario on small numbers (CI runs this).
        #[arg(long)]
        quick: bool,
        /// Concurrent clients sending single repayments.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Single repayments in all.
        #[arg(long, default_value_t = 64_000)]
        single_requests: usize,
        /// Items per SubmitBatch call.
        #[arg(long, default_value_t = 1_000)]
        batch_items: usize,
        /// SubmitBatch calls.
        #[arg(long, default_value_t = 50)]
        batches: usize,
        /// Concurrent clients sending the SubmitBatch calls (each waits for its answer before
        /// its next call).
        #[arg(long, default_value_t = 1)]
        batch_clients: usize,
        /// Live loans prepared (and settled by the settlement run).
        #[arg(long, default_value_t = 1_000_000)]
        loans: usize,
        /// Concurrent loan-history readers during the write load.
        #[arg(long, default_value_t = 8)]
        history_clients: usize,
        /// Keep the service's database after the run and print its URL (to run `verify` or a
        /// profiler on it); by default it is deleted (SQLite) or dropped (PostgreSQL).
        #[arg(long)]
        keep_database: bool,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
    /// Call the API from the shell: `methods` lists them, `call` sends a request given as JSON
    /// and prints each answer as one line of JSON (protobuf's JSON mapping, as grpcurl's). No
    /// database, no proto files. Exit status 1 when the service refuses the call (its code,
    /// message, field or reason on stderr), 2 when the call cannot be made as asked, 3 when the
    /// server cannot be reached (nothing sent), 4 when its answer cannot be read or written
    /// out, 5 when the connection failed once the call was sent (a write may have been posted).
    Client {
        /// The server: http://HOST:PORT, or https://HOST:PORT for one serving TLS.
        #[arg(long, env = "LOANLEDGER_SERVER", default_value = "http://127.0.0.1:50051")]
        server: String,
        /// The bearer token (`token create` makes one).
        #[arg(long, env = "LOANLEDGER_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The CA certificates (PEM) the server's certificate chains to (https://).
        #[arg(long, env = "LOANLEDGER_CA_CERT")]
        ca_cert: Option<std::path::PathBuf>,
        /// The client's certificate (PEM), for a server asking for mutual TLS; with
        /// --client-key.
        #[arg(long, env = "LOANLEDGER_CLIENT_CERT", requires = "client_key")]
        client_cert: Option<std::path::PathBuf>,
        /// The private key of --client-cert (PEM).
        #[arg(long, env = "LOANLEDGER_CLIENT_KEY", requires = "client_cert")]
        client_key: Option<std::path::PathBuf>,
        #[command(subcommand)]
        command: ClientCmd,
    },
}

#[derive(Subcommand)]
enum ClientCmd {
    /// List every method: `Service/Method(Request) returns [stream ]Answer`.
    Methods,
    /// Call a method with a request given as JSON and print each answer (a stream's each in
    /// turn) as one line of JSON.
    Call {
        /// `Service/Method`, e.g. `LoanService/GetLoan` (the package may lead:
        /// `loanledger.v1.LoanService/GetLoan`).
        method: String,
        /// The request as JSON, e.g. '{"loanId": "B1-C-001"}' (`-`: standard input); `{}` when
        /// left out.
        request: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token and print it (it is shown only once; only its hash is stored); its id
    /// goes to stderr.
    Create {
        /// bank, finance, auditor or operator.
        #[arg(long)]
        role: String,
        /// Bank id for a bank, ledger id for finance or auditor, "*" for an operator or an
        /// auditor of every ledger (a finance office's token is never "*").
        #[arg(long)]
        org: String,
        /// The token's term in days (at most 3,660); 0, the default: it does not expire.
        #[arg(long, default_value_t = 0)]
        valid_days: u32,
    },
    /// List the tokens: id, role, organisation, when created, when it expires, and when revoked
    /// (never a secret).
    List,
    /// Revoke a token, by its id or its secret: servers refuse it within 30 s (they re-read a
    /// token they trust at least that often). Revoking a revoked token succeeds again.
    Revoke {
        /// The token's id (`tok_...`, from `token list` or `token create`).
        #[arg(long, required_unless_present = "secret", conflicts_with = "secret")]
        id: Option<String>,
        /// The token's secret (`ll_...`), when its id is not at hand; `-` reads it from
        /// standard input (so that it is not in the shell's history or the process list).
        #[arg(long)]
        secret: Option<String>,
    },
}

/// The database at `url`, migrated first if `migrate` (a SQLite file is then created if
/// missing).
async fn open_db(url: &str, migrate: bool) -> anyhow::Result<Db> {
    let db = Db::connect(url)
        .await
        .with_context(|| format!("Failed to connect to the database {}", shown_url(url)))?;
    if migrate {
        db.migrate().await.context("Failed to migrate")?;
    }
    Ok(db)
}

/// The database at `url` for a command that reads an existing one (`verify`, the token
/// commands): a SQLite file that does not exist is refused, not created empty (a path mistyped,
/// or relative to another directory).
async fn open_existing_db(url: &str) -> anyhow::Result<Db> {
    if let Some(path) = missing_sqlite_file(url) {
        anyhow::bail!(
            "no database at {} (--database-url or LOANLEDGER_DATABASE_URL; `serve` or `migrate` \
             creates one)",
            path.display()
        );
    }
    open_db(url, false).await
}

/// The database at `url` for a command that runs beside servers (the token commands): not
/// migrated, which would change the schema under a running server of an older build, but
/// refused unless this build's migrations, and only they, are applied.
async fn open_served_db(url: &str) -> anyhow::Result<Db> {
    let db = open_existing_db(url).await?;
    db.check_migrated().await.map_err(|why| anyhow::anyhow!("{why}"))?;
    Ok(db)
}

fn main() -> anyhow::Result<()> {
    let huge_pages = heap_without_huge_pages();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let ran = runtime.block_on(run(huge_pages));
    // Work on blocking threads that outlived its caller (a backup's copy hashed, a scan whose
    // call went away) is not waited for without end once the command is done (since
    // 2026-12-07 the runtime's drop waited for it).
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    ran
}

/// Transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`, which the kernel
/// checks at each page fault, so that only memory touched before the call keeps them), unless
/// `MIMALLOC_ALLOW_THP` is set (mimalloc's own option then decides). mimalloc asks for huge
/// pages for its arenas (`madvise`), so that the first touch of fresh heap zeroes 2 MiB at a
/// time. On the host of 2026-12-06 the server's verify ran 35–70% faster without them (its
/// rebuilt and stored read models are fresh memory) and its batches faster with a shorter
/// tail, while the single repayments took about 4% more CPU; earlier hosts gained nothing or
/// lost a little (BENCHMARKS-HISTORY.md, change 90). The call's error, if any, for the log.
fn heap_without_huge_pages() -> Option<std::io::Error> {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        use libc::c_ulong;
        // SAFETY: PR_SET_THP_DISABLE's arguments are integers; the call reads or writes no memory
        // of ours. It fails on kernels before 3.15 or under a filter that forbids it: the
        // process then keeps its huge pages.
        let set = unsafe {
            libc::prctl(
                libc::PR_SET_THP_DISABLE,
                1 as c_ulong,
                0 as c_ulong,
                0 as c_ulong,
                0 as c_ulong,
            )
        };
        if set != 0 {
            return Some(std::io::Error::last_os_error());
        }
    }
    None
}

/// The command line read, or the process ended: with help or the version asked for, printed
/// as clap prints them; with arguments that cannot be read, clap's error, as one JSON `ERROR`
/// line when JSON logs are asked for (`--log-format json` or `LOANLEDGER_LOG_FORMAT=json`;
/// since 2026-12-07 it was text whatever the format, which a collector reading JSON drops), and
/// exit status 2 either way. A command given without its subcommand (`token`, `client`) is
/// such an error, its help the text (since 2026-12-08 as JSON too: clap printed its help).
fn parsed(args: Vec<std::ffi::OsString>) -> Cli {
    use clap::error::ErrorKind;
    let e = match Cli::try_parse_from(&args) {
        Ok(cli) => return cli,
        Err(e) => e,
    };
    let asked = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    let json_arg = args.windows(2).any(|w| w[0] == "--log-format" && w[1] == "json")
        || args.iter().any(|a| a == "--log-format=json");
    let json_env = std::env::var("LOANLEDGER_LOG_FORMAT").is_ok_and(|f| f == "json");
    if asked || !(json_arg || json_env) {
        e.exit();
    }
    telemetry::init(LogFormat::Json);
    let text = e.render().to_string();
    tracing::error!(error = text.trim_end(), "the command line cannot be read");
    std::process::exit(2);
}

async fn run(huge_pages: Option<std::io::Error>) -> anyhow::Result<()> {
    // No command is `serve`, parsed as such so that its flags' environment variables apply.
    let cli = match parsed(std::env::args_os().collect()) {
        cli if cli.command.is_some() => cli,
        _ => {
            // `serve` right after the program's name (the global flags may follow it).
            let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
            args.insert(args.len().min(1), "serve".into());
            parsed(args)
        }
    };
    telemetry::init(cli.log_format);
    telemetry::log_panics();
    let format = cli.log_format;
    let result = run_command(cli, huge_pages).await;
    // With JSON lines asked for, a failed command's error is one of them (since 2026-12-07:
    // Rust printed `Error: …` as text beside the log, which a collector reading JSON drops:
    // the one line saying why the service did not start). Human logs keep that text.
    // Under a RUST_LOG that turns errors off, the text is printed as before rather than lost.
    if let (Err(e), LogFormat::Json) = (&result, format)
        && tracing::enabled!(tracing::Level::ERROR)
    {
        tracing::error!(error = format!("{e:#}"), "the command failed");
        std::process::exit(1);
    }
    result
}

async fn run_command(cli: Cli, huge_pages: Option<std::io::Error>) -> anyhow::Result<()> {
    let json_log = matches!(cli.log_format, LogFormat::Json);
    if let Some(error) = huge_pages {
        tracing::debug!(%error, "transparent huge pages left on (prctl PR_SET_THP_DISABLE failed)");
    }
    let Some(command) = cli.command else {
        anyhow::bail!("no command; `serve` is the default");
    };
    match command {
        Cmd::Serve {
            listen,
            utc_offset,
            drain_timeout_secs,
            signing_key,
            new_signing_key,
            backups,
            tls_cert,
            tls_key,
            tls_client_ca,
        } => {
            let tls = tls_cert.zip(tls_key).map(|(cert, key)| TlsSettings {
                cert,
                key,
                client_ca: tls_client_ca,
            });
            let app = Application::build(Settings {
                listen,
                database_url: cli.database_url.clone(),
                business_utc_offset: utc_offset,
                token_cache_ttl: TOKEN_CACHE_TTL,
                drain_timeout: Duration::from_secs(drain_timeout_secs),
                signing_key: Some(SigningKeyFile {
                    path: signing_key,
                    new_for_ledgers: new_signing_key,
                }),
                backups: Some(backups.settings()),
                tls,
            })
            .await?;
            if let Some(token) = app.initial_operator_token() {
                // Printed once, to stdout, so that a new user can start from the first command.
                println!(
                    "First start: created an operator token. Keep it; it is not shown again:\n{token}"
                );
            }
            app.run_until(shutdown_signal()).await
        }
        Cmd::Client { server, token, ca_cert, client_cert, client_key, command } => {
            use loanledger::client::ClientError;
            let called = async {
                let read = |path: &std::path::Path| {
                    std::fs::read(path).map_err(|e| {
                        ClientError::Usage(format!("cannot read {}: {e}", path.display()))
                    })
                };
                let target = loanledger::client::Target {
                    server,
                    token,
                    ca_cert: ca_cert.as_deref().map(read).transpose()?,
                    identity: match (client_cert, client_key) {
                        (Some(cert), Some(key)) => Some((read(&cert)?, read(&key)?)),
                        _ => None,
                    },
                    json_log,
                };
                match command {
                    ClientCmd::Methods => {
                        let mut out = std::io::stdout().lock();
                        for m in loanledger::client::methods()? {
                            writeln!(out, "{m}").map_err(ClientError::Output)?;
                        }
                        Ok(())
                    }
                    ClientCmd::Call { method, request } => {
                        let request = match request.as_deref() {
                            None => "{}".to_string(),
                            Some("-") => {
                                std::io::read_to_string(std::io::stdin()).map_err(|e| {
                                    ClientError::Usage(format!("cannot read standard input: {e}"))
                                })?
                            }
                            Some(json) => json.to_string(),
                        };
                        let mut out = std::io::stdout().lock();
                        let print = |line: String| writeln!(out, "{line}");
                        loanledger::client::call(&target, &method, &request, print).await
                    }
                }
            };
            match called.await {
                Ok(()) => Ok(()),
                // The reader went away (`| head -1`): nothing more to say.
                Err(ClientError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => {
                    let status = match e {
                        ClientError::Status(_) => 1,
                        ClientError::Usage(_) => 2,
                        ClientError::Transport { .. } => 3,
                        ClientError::Answer(_) | ClientError::Output(_) => 4,
                        ClientError::Cut { .. } => 5,
                    };
                    // With JSON lines asked for, the error is one of them, as any command's
                    // (since 2026-12-07 late night: the client printed its text alone).
                    if json_log && tracing::enabled!(tracing::Level::ERROR) {
                        tracing::error!(error = %e, exit_status = status, "the command failed");
                    } else {
                        eprintln!("{e}");
                    }
                    std::process::exit(status);
                }
            }
        }
        Cmd::Check {
            public_key,
            held,
            transaction_hash,
            transaction,
            held_public_key,
            expect,
            handover,
            ledger,
            size,
            seq,
            file,
        } => {
            use loanledger::offline::{
                Asked, Expected, Options, check_with, follow_handovers, parse_hash,
            };
            let pinned = loanledger::ledger::checkpoint::public_key_from_hex(&public_key)
                .context("--public-key is not an Ed25519 public key (64 hex digits)")?;
            let held_key = held_public_key
                .map(|k| {
                    loanledger::ledger::checkpoint::public_key_from_hex(&k)
                        .context("--held-public-key is not an Ed25519 public key (64 hex digits)")
                })
                .transpose()?;
            let expect = expect
                .map(|e| {
                    Expected::parse(&e)
                        .context("--expect must be checkpoint, inclusion or consistency")
                })
                .transpose()?;
            let read = |path: &std::path::Path| -> anyhow::Result<serde_json::Value> {
                let text = if path.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())?
                } else {
                    std::fs::read_to_string(path)
                        .with_context(|| format!("Failed to read {}", path.display()))?
                };
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", path.display()))
            };
            if file.as_os_str() == "-" && held.as_deref().is_some_and(|h| h.as_os_str() == "-") {
                anyhow::bail!("the answer and --held cannot both be read from stdin (-)");
            }
            let answer = read(&file)?;
            let held = held.as_deref().map(read).transpose()?;
            if handover.iter().any(|h| h.as_os_str() == "-") {
                anyhow::bail!("--handover is a file, not standard input (-)");
            }
            let handovers =
                handover.iter().map(|path| read(path)).collect::<anyhow::Result<Vec<_>>>()?;
            let (earlier_keys, key, followed) = follow_handovers(&pinned, &handovers)
                .map_err(|e| anyhow::anyhow!("does not hold: {e}"))?;
            let mut transaction_hash = transaction_hash
                .map(|h| parse_hash(&h).context("--transaction-hash is not 64 hex digits"))
                .transpose()?;
            // The transaction given: its hash recomputed here, and the proof asked of its
            // ledger and seq (which must agree with --ledger and --seq when given).
            let (mut ledger, mut seq, mut recomputed) = (ledger, seq, None);
            if let Some(path) = &transaction {
                if path.as_os_str() == "-" {
                    anyhow::bail!("--transaction is a file, not standard input (-)");
                }
                let (its_ledger, its_seq, hash) =
                    loanledger::offline::transaction_hash(&read(path)?)
                        .map_err(|e| anyhow::anyhow!("does not hold: {e}"))?;
                if ledger.as_deref().is_some_and(|l| l != its_ledger) {
                    anyhow::bail!(
                        "does not hold: the transaction is of ledger {its_ledger}, not {} as asked",
                        ledger.unwrap_or_default()
                    );
                }
                if seq.is_some_and(|s| s != its_seq) {
                    anyhow::bail!(
                        "does not hold: the transaction is seq {its_seq}, not {} as asked",
                        seq.unwrap_or_default()
                    );
                }
                recomputed = Some(format!(
                    "seq {its_seq} of ledger {its_ledger}: its content and prev_hash give its \
                     hash, {}",
                    hex::encode(hash)
                ));
                (ledger, seq, transaction_hash) = (Some(its_ledger), Some(its_seq), Some(hash));
            }
            let options = Options {
                held: held.as_ref(),
                held_key: held_key.as_ref(),
                earlier_keys: &earlier_keys,
                transaction_hash: transaction_hash.as_ref(),
                expect,
                asked: Asked { ledger: ledger.as_deref(), size, seq },
            };
            match check_with(&key, &answer, options) {
                Ok(found) => {
                    for line in recomputed.into_iter().chain(found).chain(followed) {
                        println!("ok: {line}");
                    }
                    if !handovers.is_empty() {
                        println!(
                            "the service's key is now {}: pin it in place of {}",
                            hex::encode(key.as_bytes()),
                            hex::encode(pinned.as_bytes())
                        );
                    }
                    Ok(())
                }
                // The hash and the seq to prove came from --transaction: named so.
                Err(e) if transaction.is_some() => anyhow::bail!(
                    "does not hold: {}",
                    e.replace("--transaction-hash is for", "--transaction is for")
                        .replace("--seq is for", "--transaction is for")
                ),
                Err(e) => anyhow::bail!("does not hold: {e}"),
            }
        }
        Cmd::RotateSigningKey { signing_key, new_key_file, handover } => {
            let at = chrono::Utc::now().format(Handover::AT_FORMAT).to_string();
            let text =
                loanledger::app::signing_key::rotate(&signing_key, &new_key_file, &handover, at)?;
            print!("{text}");
            eprintln!(
                "new key in {new}; the old one moved to {old}. Restart every server with \
                 --signing-key {new} (LOANLEDGER_SIGNING_KEY), give the auditors {statement}, \
                 then destroy {old} and its copies in backups",
                new = new_key_file.display(),
                old = loanledger::app::signing_key::handed_over(&signing_key).display(),
                statement = handover.display(),
            );
            Ok(())
        }
        Cmd::PublicKey { signing_key } => {
            let key = loanledger::app::signing_key::load(&signing_key)?;
            println!("{}", loanledger::app::signing_key::public_hex(&key));
            Ok(())
        }
        Cmd::Backup { name, backups } => {
            // Not migrated, and any build's schema: the backup taken before an upgrade is the
            // one that matters.
            let db = open_existing_db(&cli.database_url).await?;
            let settings = backups.settings();
            // A rerun of the same command answers the backup it took.
            let request_id = format!("cli-backup-{name}");
            let manifest = take_backup(&db, &cli.database_url, &settings, &name, &request_id)
                .await
                .map_err(|e| anyhow::anyhow!("backup {name} failed: {e}"))?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
            Ok(())
        }
        Cmd::Migrate => {
            let db = open_db(&cli.database_url, true).await?;
            println!("migrated {} database", db.backend());
            Ok(())
        }
        Cmd::Verify { ledger, claims, answers } => {
            let db = open_existing_db(&cli.database_url).await?;
            if !db.ledger_exists(&ledger).await.context("Failed to read the ledger")? {
                anyhow::bail!("ledger {ledger} not found");
            }
            let options = loanledger::app::verify::VerifyOptions {
                recheck_claims: claims,
                recheck_answers: answers,
            };
            let r = loanledger::app::verify::verify_ledger_with(&db, &ledger, options)
                .await
                .map_err(|e| anyhow::anyhow!("verify failed: {e}"))?;
            println!(
                "ledger {ledger}: {} transactions checked, head seq {} hash {}",
                r.transactions_checked, r.head_seq, r.head_hash
            );
            if claims {
                println!("{} subsidy claim lines worked out again", r.claim_lines_rechecked);
            }
            if answers {
                println!("{} stored answers checked", r.answers_rechecked);
            }
            for p in &r.problems {
                println!("problem: {p}");
            }
            if r.ok {
                println!("OK");
                Ok(())
            } else {
                match r.first_break_seq {
                    0 => anyhow::bail!(
                        "ledger {ledger} does not verify: its chain holds, but other checks \
                         found problems (above)"
                    ),
                    seq => {
                        anyhow::bail!("ledger {ledger} does not verify; first break at seq {seq}")
                    }
                }
            }
        }
        Cmd::Bench {
            target,
            quick,
            clients,
            single_requests,
            batch_items,
            batches,
            batch_clients,
            loans,
            history_clients,
            keep_database,
        } => {
            let cfg = if quick {
                loanledger::bench::load::BenchConfig {
                    keep_database,
                    ..loanledger::bench::load::BenchConfig::quick(target)
                }
            } else {
                loanledger::bench::load::BenchConfig {
                    target,
                    clients,
                    single_requests,
                    batch_items,
                    batches,
                    batch_clients: batch_clients.max(1),
                    settle_loans: loans,
                    history_clients,
                    ceiling_txns: 20,
                    keep_database,
                    judged: true,
                }
            };
            loanledger::bench::load::run(&cfg).await?;
            Ok(())
        }
        Cmd::Token { command: TokenCmd::Create { role, org, valid_days } } => {
            let role =
                Role::parse(&role).context("--role must be bank, finance, auditor or operator")?;
            loanledger::app::auth::check_org(role, &org)
                .map_err(|m| anyhow::anyhow!("--org: {m} (an id: letters, digits, _ . -)"))?;
            // Checked before the database is opened, as create_token checks it.
            loanledger::app::auth::expiry(0, valid_days).map_err(|e| match e {
                loanledger::domain::error::DomainError::Invalid { message, .. } => {
                    anyhow::anyhow!("--valid-days {message}")
                }
                other => anyhow::anyhow!("--valid-days: {other}"),
            })?;
            let db = open_served_db(&cli.database_url).await?;
            loanledger::app::auth::check_org_exists(&db, role, &org).await.map_err(|e| {
                anyhow::anyhow!("--org: {e} (register the bank, or create the ledger, first)")
            })?;
            let token = create_token(&db, role, &org, valid_days)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(id) = token_id_of(&token) {
                eprintln!("token id: {id}");
            }
            println!("{token}");
            Ok(())
        }
        Cmd::Token { command: TokenCmd::List } => {
            let db = open_served_db(&cli.database_url).await?;
            let time = loanledger::app::auth::utc_text;
            let now_us = chrono::Utc::now().timestamp_micros();
            for t in db.list_tokens().await.context("Failed to list the tokens")? {
                let state = match (t.revoked_at_us, t.expires_at_us) {
                    (Some(us), _) => format!("revoked {}", time(us)),
                    (None, Some(us)) if loanledger::app::auth::expired(Some(us), now_us) => {
                        format!("expired {}", time(us))
                    }
                    (None, Some(us)) => format!("in use, expires {}", time(us)),
                    (None, None) => "in use".to_string(),
                };
                println!(
                    "{}\t{}\t{}\tcreated {}\t{state}",
                    t.token_id,
                    t.role,
                    t.org,
                    time(t.created_at_us),
                );
            }
            Ok(())
        }
        Cmd::Token { command: TokenCmd::Revoke { id, secret } } => {
            // clap requires one of the two.
            let id = match id {
                Some(id) => id,
                None => {
                    let mut secret = secret.unwrap_or_default();
                    if secret == "-" {
                        secret.clear();
                        std::io::stdin()
                            .read_line(&mut secret)
                            .context("Failed to read the secret from standard input")?;
                    }
                    token_id_of(secret.trim())
                        .context("--secret is not a token's secret (ll_ and 64 hex digits)")?
                }
            };
            let db = open_served_db(&cli.database_url).await?;
            if revoke_token(&db, &id).await.map_err(|e| anyhow::anyhow!("{e}"))? {
                println!("revoked {id}: servers refuse it within {} s", TOKEN_CACHE_TTL.as_secs());
                return Ok(());
            }
            let tokens = db.list_tokens().await.context("Failed to list the tokens")?;
            match tokens.iter().find(|t| t.token_id == id) {
                Some(t) if t.revoked_at_us.is_some() => {
                    println!("{id} was revoked already");
                    Ok(())
                }
                _ => anyhow::bail!("no token {id} (see `token list`)"),
            }
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. On unix, a second one while the server drains ends
/// the process at once (exit status 128 + the signal's number, as a shell reports a process the
/// signal killed): what was committed is kept; a request not yet answered may have been
/// committed or not, and sent again under its request id it gets the stored answer or is made.
/// Elsewhere Ctrl-C does the same (a second one exits with status 130).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        // Both listeners made once, for both signals: none is missed between the two. One that
        // cannot be made leaves the other.
        let listen = |kind: SignalKind, name: &str| {
            signal(kind).inspect_err(|e| tracing::warn!("cannot listen for {name} ({e})")).ok()
        };
        let (mut int, mut term) =
            (listen(SignalKind::interrupt(), "SIGINT"), listen(SignalKind::terminate(), "SIGTERM"));
        if int.is_none() && term.is_none() {
            tracing::warn!("no stopping signal is heard: stop the server with SIGKILL");
            return std::future::pending().await;
        }
        async fn recv(signal: &mut Option<Signal>) {
            // A listener whose stream ended (the runtime going away) hears nothing more.
            if let Some(s) = signal
                && s.recv().await.is_some()
            {
                return;
            }
            std::future::pending().await
        }
        let mut next = async move || {
            tokio::select! {
                _ = recv(&mut int) => ("SIGINT", libc::SIGINT),
                _ = recv(&mut term) => ("SIGTERM", libc::SIGTERM),
            }
        };
        let (first, _) = next().await;
        tracing::info!("{first} received");
        tokio::spawn(async move {
            let (second, number) = next().await;
            tracing::warn!(
                "{second} received while stopping: exiting now, without waiting for the \
                 requests in flight or the writer's queue (nothing committed is lost; a request \
                 not answered may be sent again under its request id)"
            );
            std::process::exit(128 + number);
        });
    }
    #[cfg(not(unix))]
    {
        // As on unix: the first Ctrl-C drains, a second one ends the process at once. One
        // listener, made before the first wait, so that none is missed between the two.
        let mut ctrl_c = match tokio::signal::windows::ctrl_c() {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!("cannot listen for Ctrl-C ({e}): stop the server by killing it");
                return std::future::pending().await;
            }
        };
        ctrl_c.recv().await;
        tracing::info!("Ctrl-C received");
        tokio::spawn(async move {
            ctrl_c.recv().await;
            tracing::warn!(
                "Ctrl-C received while stopping: exiting now, without waiting for the requests \
                 in flight or the writer's queue (nothing committed is lost; a request not \
                 answered may be sent again under its request id)"
            );
            std::process::exit(130);
        });
    }
}
