//! Building and running the server: connect and migrate the database, start the writer, bind
//! the listener, serve the loanledger services with health and reflection, and shut down without
//! leaving anything half-written.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::api::connection::Coalescing;
use crate::api::pb::audit_service_server::AuditServiceServer;
use crate::api::pb::loan_service_server::LoanServiceServer;
use crate::api::pb::pool_service_server::PoolServiceServer;
use crate::api::pb::registry_service_server::RegistryServiceServer;
use crate::api::pb::risk_fund_service_server::RiskFundServiceServer;
use crate::api::pb::subsidy_service_server::SubsidyServiceServer;
use crate::api::{Api, Backups, FILE_DESCRIPTOR_SET};
use crate::app::auth::create_first_operator_token;
use crate::app::checkpoints::CheckpointKey;
use crate::app::writer;
use crate::store::Db;

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    /// The offset from UTC of the programme's business day: "today", where a call does not give
    /// a date (a loan's figures and status, the policy in force), is the date there.
    pub business_utc_offset: chrono::FixedOffset,
    /// How long a server trusts a token it has checked before it reads the token again: a
    /// token revoked in the database is refused at most this much later.
    pub token_cache_ttl: std::time::Duration,
    /// How long a stopping server waits for the requests in flight (a `ReadJournal` stream its
    /// client stopped reading never ends): then it closes the writer's queue, lets the writer
    /// commit and answer what is queued, and stops; the connections left close with the
    /// process.
    pub drain_timeout: std::time::Duration,
    /// The file of the key that signs checkpoints ([`crate::app::signing_key`]), made on the
    /// first start; `None`: a key made for this process alone (tests, the bench), whose
    /// checkpoints no later process can sign again.
    pub signing_key: Option<SigningKeyFile>,
    /// Where `Backup` writes ([`crate::app::backup`]); `None`: the server takes no backups (the
    /// bench's).
    pub backups: Option<crate::app::backup::BackupSettings>,
    /// TLS, and mutual TLS with a client CA; `None`: plain HTTP/2.
    pub tls: Option<TlsSettings>,
}

/// `serve`'s TLS (DESIGN.md: "TLS and mutual TLS are options of serve"), from PEM files read
/// at the start: a file missing or not what it should be stops the start, naming it.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The server's certificate, followed by the intermediates a client needs to reach its CA.
    pub cert: std::path::PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
    /// Mutual TLS: the CA certificates a client's certificate must chain to; a client without
    /// one is refused in the handshake. The bearer token is asked for all the same.
    pub client_ca: Option<std::path::PathBuf>,
}

/// Calls at once on one connection, at most (`max_concurrent_streams`; more wait at the client).
pub const MAX_CONCURRENT_STREAMS: u32 = 200;

/// How often an idle connection's peer is asked whether it is there (TCP keepalive and HTTP/2
/// pings).
pub const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(60);

/// How long an HTTP/2 ping may go unanswered before its connection is closed.
pub const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// How often a server checks that its database answers, for `grpc.health.v1`.
pub const HEALTH_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a health probe waits for the database's answer before it counts as none.
const HEALTH_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How many probes in a row the database must miss before health says `NOT_SERVING`: one
/// slow answer on a busy server (its read pool taken by long reads) is not the database away.
const HEALTH_PROBE_MISSES: u32 = 3;

/// The names health answers for: the overall status ("") and every loanledger service.
const HEALTH_NAMES: [&str; 7] = [
    "",
    <RegistryServiceServer<Api> as NamedService>::NAME,
    <LoanServiceServer<Api> as NamedService>::NAME,
    <AuditServiceServer<Api> as NamedService>::NAME,
    <SubsidyServiceServer<Api> as NamedService>::NAME,
    <RiskFundServiceServer<Api> as NamedService>::NAME,
    <PoolServiceServer<Api> as NamedService>::NAME,
];

/// The overall status and every loanledger service's, set to `status`.
async fn set_health(health: &HealthReporter, status: ServingStatus) {
    for name in HEALTH_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// At shutdown: every status `NOT_SERVING`, then no status at all, which ends every `Watch`
/// stream once it has told its watcher `NOT_SERVING` (a watch never ends otherwise, and would
/// hold its connection, and the drain, open until the drain timeout).
async fn stop_health(health: &HealthReporter) {
    set_health(health, ServingStatus::NotServing).await;
    let mut health = health.clone();
    for name in HEALTH_NAMES {
        health.clear_service_status(name).await;
    }
}

/// `grpc.health.v1`'s answer follows the database: `NOT_SERVING` once it has not answered a
/// read within [`HEALTH_PROBE_TIMEOUT`] [`HEALTH_PROBE_MISSES`] times in a row (PostgreSQL away
/// or refusing connections: every call would be `UNAVAILABLE`), `SERVING` again once it
/// answers; each change logged.
async fn probe_health(health: HealthReporter, db: Db) {
    let (mut serving, mut missed) = (true, 0);
    let mut every = tokio::time::interval(HEALTH_PROBE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let answered = match tokio::time::timeout(HEALTH_PROBE_TIMEOUT, db.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {HEALTH_PROBE_TIMEOUT:?}")),
        };
        match answered {
            Ok(()) => {
                missed = 0;
                if !serving {
                    tracing::info!("the database answers again: health SERVING");
                    set_health(&health, ServingStatus::Serving).await;
                    serving = true;
                }
            }
            Err(why) => {
                missed += 1;
                if serving && missed >= HEALTH_PROBE_MISSES {
                    tracing::warn!(
                        error = %why,
                        missed,
                        "the database does not answer: health NOT_SERVING"
                    );
                    set_health(&health, ServingStatus::NotServing).await;
                    serving = false;
                }
            }
        }
    }
}

/// How long a client may take over its TLS handshake before its connection is closed.
pub const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The transport's TLS of `tls`, each file read and checked on its own, a failure naming its
/// flag and file.
fn server_tls(tls: &TlsSettings) -> anyhow::Result<ServerTlsConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("Failed to read {flag} {}", path.display()))
    };
    let certificates = |flag: &str, path: &std::path::Path| -> anyhow::Result<Vec<u8>> {
        let pem = read(flag, path)?;
        let mut found = 0;
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            certificate.with_context(|| format!("{flag} {} is not PEM", path.display()))?;
            found += 1;
        }
        if found == 0 {
            anyhow::bail!(
                "{flag} {} holds no certificate (PEM: -----BEGIN CERTIFICATE-----)",
                path.display()
            );
        }
        Ok(pem)
    };
    let cert = certificates("--tls-cert", &tls.cert)?;
    let key = read("--tls-key", &tls.key)?;
    PrivateKeyDer::from_pem_slice(&key).with_context(|| {
        format!(
            "--tls-key {} holds no private key (PEM: PKCS#8, PKCS#1 or SEC1)",
            tls.key.display()
        )
    })?;
    let mut config = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .timeout(TLS_HANDSHAKE_TIMEOUT);
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(certificates("--tls-client-ca", ca)?));
    }
    // Built once here, so that what the files hold together (the key the certificate's, the
    // CA certificates' contents) stops the start too.
    Server::builder().tls_config(config.clone()).with_context(|| {
        format!(
            "--tls-cert {} with --tls-key {}{} cannot be used (is the key the certificate's?)",
            tls.cert.display(),
            tls.key.display(),
            tls.client_ca
                .as_ref()
                .map(|ca| format!(" and --tls-client-ca {}", ca.display()))
                .unwrap_or_default()
        )
    })?;
    Ok(config)
}

/// [`Settings::drain_timeout`] of `serve`: within the 30 s grace period Kubernetes gives by
/// default (systemd's `TimeoutStopSec` is 90 s), with room for the writer's last commit.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// [`Settings::token_cache_ttl`] of `serve`.
pub const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// China Standard Time, UTC+08:00: the programme's business day by default.
pub const BUSINESS_UTC_OFFSET_DEFAULT: &str = "+08:00";

/// An offset from UTC written `+HH:MM` or `-HH:MM` (up to ±23:59).
pub fn parse_utc_offset(text: &str) -> Result<chrono::FixedOffset, String> {
    let bad = || format!("not an offset from UTC such as +08:00: {text:?}");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    // Two ASCII digits each: `+-1:00` is not UTC-01:00 (since 2026-12-07: it was taken so).
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return Err(bad());
    }
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

/// [`BUSINESS_UTC_OFFSET_DEFAULT`] as an offset.
pub fn business_utc_offset_default() -> chrono::FixedOffset {
    parse_utc_offset(BUSINESS_UTC_OFFSET_DEFAULT).expect("the default offset parses")
}

pub struct Application {
    listener: TcpListener,
    port: u16,
    db: Db,
    api: Api,
    writer_task: JoinHandle<()>,
    initial_operator_token: Option<String>,
    drain_timeout: std::time::Duration,
    tls: Option<ServerTlsConfig>,
    /// "plain", "tls" or "mutual tls", for the log.
    transport: &'static str,
}

/// The operator token a fresh database starts with (no token and no ledger yet), printed once by
/// `serve`. A database with ledgers whose tokens are all gone (deleted after a leak, or
/// restored without them) gets none: a token for it comes from `token create`, by someone with
/// the database's keys, not from whoever reads the server's output.
async fn first_operator_token(db: &Db) -> anyhow::Result<Option<String>> {
    if let Some(token) = create_first_operator_token(db)
        .await
        .map_err(|e| anyhow::anyhow!("Failed to create the first operator token: {e}"))?
    {
        return Ok(Some(token));
    }
    // None at all, or none an operator can log in with (revoked on the command line, which
    // does not keep the last, or expired): said at the start (since 2026-12-07 evening, when
    // only a database without any token was).
    let now_us = chrono::Utc::now().timestamp_micros();
    let usable = db.count_usable_operator_tokens(now_us).await;
    if usable.context("Failed to count the operator tokens")? == 0 {
        let tokens = db.count_tokens().await.context("Failed to count tokens")?;
        tracing::warn!(
            tokens,
            "the database has no operator token that can log in (its tokens revoked or \
             expired, or none): none is made here; create one with \
             `loanledger token create --role operator --org '*'`"
        );
    }
    Ok(None)
}

/// `serve --signing-key FILE [--new-signing-key]`.
#[derive(Debug, Clone)]
pub struct SigningKeyFile {
    pub path: std::path::PathBuf,
    /// Make the file when it is missing though the database has ledgers (their auditors hold
    /// checkpoints signed with another key, which is not here); without it, such a start is
    /// refused.
    pub new_for_ledgers: bool,
}

/// The key that signs checkpoints: from its file, made there if there is none, or made for
/// this process alone. A file missing for a database that has ledgers stops the start unless
/// a new key is asked for (`--new-signing-key`, then warned about): a server started from
/// another directory (the default file is relative to it), or without the key's volume, would
/// otherwise sign with a key no auditor holds, which they cannot tell from a forger's.
///
/// `journaled`: whether the database holds transactions an auditor may hold checkpoints of
/// ([`Db::has_checkpointed_transactions`], read before the database is migrated, so that
/// a start this refuses leaves the database as the build that served it left it; since
/// 2026-12-07 the LPR table's journal counts too, and a ledger's journal without its row).
fn signing_key(settings: &Settings, journaled: bool) -> anyhow::Result<CheckpointKey> {
    use crate::app::signed_marks::{SignedMarks, marks_file};
    use crate::app::signing_key::{generate, load_or_create, public_hex};
    let Some(file) = &settings.signing_key else {
        return Ok(CheckpointKey { key: generate(), marks: SignedMarks::in_memory() });
    };
    let path = &file.path;
    let missing = matches!(
        std::fs::symlink_metadata(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound
    );
    if missing && !file.new_for_ledgers && journaled {
        anyhow::bail!(
            "the checkpoint signing key file {} does not exist, and the database has journals \
             (ledgers, the LPR table): their auditors hold checkpoints signed with a key that \
             is not here; nothing was changed. Start with \
             --signing-key naming its file (a relative path is taken from the working \
             directory), or with --new-signing-key to make a new key, and tell the auditors \
             (checkpoints signed before cannot be checked against it)",
            path.display()
        );
    }
    let (key, created) = load_or_create(path)?;
    let public_key = public_hex(&key);
    let marks_path = marks_file(path, &public_key);
    // A key that has served a database with journals and has no marks file: its marks were
    // lost (the key moved to another path, or copied to another host without them), and it
    // signs the journal as it finds it (since 2026-12-07 a warning; it went unsaid).
    let marks_lost = !created
        && journaled
        && matches!(
            std::fs::symlink_metadata(&marks_path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound
        );
    let marks = SignedMarks::load(&marks_path)?;
    if marks_lost {
        tracing::warn!(
            marks_file = %marks_path.display(),
            "the checkpoint signing key has no signed marks file beside it, and the database \
             has journals: if the key signed checkpoints before (from another path or host), \
             what it signed is not known here, and it signs the journal as it finds it; move \
             the marks file with the key (<key file>.<first 16 hex digits of its public key>\
             .signed)"
        );
    }
    let path = path.display();
    if !created {
        tracing::info!(%path, public_key, "checkpoint signing key");
    } else if journaled {
        tracing::warn!(
            %path,
            public_key,
            "checkpoint signing key created for a database that has journals: checkpoints signed \
             before (if any) used another key; give the auditors this one, and start every \
             server on this database with the same file"
        );
    } else {
        tracing::info!(
            %path,
            public_key,
            "checkpoint signing key created: give auditors its public key, back up the file"
        );
    }
    Ok(CheckpointKey { key, marks })
}

/// Warns when the SQLite database file may be read by others than its owner (made by a build
/// before 2026-12-07, which left it as the umask did, or copied so): it holds every household's
/// and borrower's name and ID number.
fn warn_if_others_read_the_database(path: &std::path::Path) {
    if let Some(mode) = crate::app::open_to_others(path) {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "the database file can be read by others than its owner: it holds households' \
             names and ID numbers (chmod 600 it, and its -wal and -shm files)"
        );
    }
}

impl Application {
    /// Connects, migrates, starts the writer and binds the listener (port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        // Before the database: a TLS file mistyped stops the start with nothing done.
        let tls = settings.tls.as_ref().map(server_tls).transpose()?;
        let transport = match &settings.tls {
            None => "plain",
            Some(TlsSettings { client_ca: None, .. }) => "tls",
            Some(_) => "mutual tls",
        };
        // Bound before the database is touched: a server that cannot listen (the port taken)
        // neither migrates the database (an upgrade's migrations, which the build before it
        // then refuses) nor stores a token it never prints.
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("Failed to listen on {}", settings.listen))?;
        let db = Db::connect(&settings.database_url).await.with_context(|| {
            format!(
                "Failed to connect to the database {}",
                crate::store::shown_url(&settings.database_url)
            )
        })?;
        // The signing key before the migrations, for the same reason (since 2026-12-07).
        let journaled = db
            .has_checkpointed_transactions()
            .await
            .context("Failed to read whether the database has journals")?;
        let signing_key = signing_key(&settings, journaled)?;
        db.migrate().await.context("Failed to migrate the database")?;
        if let Some(file) = db.sqlite_file() {
            warn_if_others_read_the_database(&file);
        }
        if tls.is_none() && !settings.listen.ip().is_loopback() {
            tracing::warn!(
                listen = %settings.listen,
                "serving without TLS on an address other machines reach: bearer tokens and \
                 households' ID numbers travel in the clear (give --tls-cert and --tls-key, or \
                 listen on 127.0.0.1 behind a proxy that terminates TLS)"
            );
        }
        // One server at a time writes to a database (`store::WriterSetup::try_claim`): a
        // second one serves reads, and its writes wait for the first to stop.
        if !db.try_claim_writer().await.context("Failed to claim the database's writer")? {
            tracing::warn!(
                "another server is writing to this database: this one serves reads, and its \
                 writes wait for that one to stop (answered UNAVAILABLE after about {} s)",
                (1 + writer::GROUP_ATTEMPTS) * crate::store::CLAIM_WAIT.as_secs()
            );
        }
        if let Some(backups) = &settings.backups {
            for problem in crate::app::backup::check_settings(backups, &db).await {
                tracing::warn!("{problem}");
            }
        }
        // Last of what can fail (since 2026-12-07; it came before the writer's claim): a
        // token stored is a token printed.
        let initial_operator_token = first_operator_token(&db).await?;
        let (writer, writer_task) = writer::spawn(db.clone(), settings.business_utc_offset);
        let port = listener.local_addr().context("Failed to read the bound address")?.port();
        Ok(Application {
            listener,
            port,
            api: Api::new(
                db.clone(),
                writer,
                settings.business_utc_offset,
                settings.token_cache_ttl,
                signing_key,
                settings.backups.map(|backups| Backups {
                    settings: backups,
                    url: settings.database_url.clone(),
                }),
            ),
            db,
            writer_task,
            initial_operator_token,
            drain_timeout: settings.drain_timeout,
            tls,
            transport,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The writer, for in-process callers (the benchmark prepares its data through it).
    pub fn writer(&self) -> crate::app::writer::WriterHandle {
        self.api.writer.clone()
    }

    /// The operator token created because the database had none (shown once).
    pub fn initial_operator_token(&self) -> Option<String> {
        self.initial_operator_token.clone()
    }

    /// Serves until `shutdown` resolves; then stops taking requests, lets the requests in flight
    /// finish (for [`Settings::drain_timeout`] at most), lets the writer commit and answer
    /// everything it has queued, and closes the pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener, db, api, mut writer_task, drain_timeout, tls, transport, ..
        } = self;
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::Serving).await;
        // Health follows the database (a probe every few seconds) until the server stops.
        let probe = tokio::spawn(probe_health(health.clone(), db.clone()));
        // However run_until ends (a writer that stopped included), the probe ends with it.
        let probe_ends = AbortOnDrop(probe.abort_handle());
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("Failed to build reflection v1")?;
        // Python's grpcio reflection client speaks only v1alpha.
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .context("Failed to build reflection v1alpha")?;
        tracing::info!(addr = %listener.local_addr()?, backend = db.backend(), transport, "serving");
        // Without TCP_NODELAY, small responses wait for the peer's delayed ACK (about 40 ms).
        let incoming = tokio_stream::StreamExt::map(
            tonic::transport::server::TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                // A peer gone without a word (a machine off, a NAT's entry dropped) is found
                // and its connection closed, its streams with it (since 2026-12-07 late night).
                .with_keepalive(Some(KEEPALIVE)),
            |accepted| accepted.map(Coalescing::new),
        );
        // tonic waits for every open request once told to stop; the drain timeout bounds that
        // wait from the moment `shutdown` resolves.
        let (told, stopping) = tokio::sync::oneshot::channel::<()>();
        let stopping_health = health.clone();
        let shutdown = async move {
            shutdown.await;
            // Not serving from the moment the server stops taking requests: a load balancer's
            // probe then sends the next ones elsewhere while this one drains.
            // The probe ended first, so that none of its changes lands after these.
            probe.abort();
            let _ = probe.await;
            stop_health(&stopping_health).await;
            let _ = told.send(());
        };
        let deadline = async move {
            match stopping.await {
                Ok(()) => tokio::time::sleep(drain_timeout).await,
                Err(_) => std::future::pending().await,
            }
        };
        let server = match tls {
            Some(tls) => Server::builder().tls_config(tls).context("TLS")?,
            None => Server::builder(),
        };
        let serve = server
            // At most this many calls at once on one connection (h2's default was no limit;
            // hyper's 200), and a connection whose peer answers no HTTP/2 ping within
            // KEEPALIVE_TIMEOUT closed, its streams with it: a peer gone no longer holds a
            // stream's task for ever (since 2026-12-07 late night).
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .http2_keepalive_interval(Some(KEEPALIVE))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            // Outside the panics' layer: a panic answered INTERNAL is counted so.
            .layer(crate::api::metrics::MetricsLayer(api.metrics.clone()))
            .layer(crate::api::panics::CatchPanicLayer)
            // The token before the body (`api::auth_first`), inside the metrics' layer: a call
            // refused so is counted.
            .layer(crate::api::auth_first::AuthFirstLayer(api.clone()))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(RegistryServiceServer::new(api.clone()))
            .add_service(LoanServiceServer::new(api.clone()))
            .add_service(AuditServiceServer::new(api.clone()))
            .add_service(SubsidyServiceServer::new(api.clone()))
            .add_service(RiskFundServiceServer::new(api.clone()))
            .add_service(PoolServiceServer::new(api.clone()))
            .serve_with_incoming_shutdown(incoming, shutdown);
        tokio::select! {
            served = serve => served.context("Server failed")?,
            () = deadline => tracing::warn!(
                drain_timeout_s = drain_timeout.as_secs_f64(),
                "requests still open after the drain timeout: no longer waited for"
            ),
            // The writer ends only once its queue is closed, below: ended while serving, it
            // panicked outside a command's plan (which it survives), and no write can be made
            // until the service starts again and reads its state back from the database. The
            // process ends with an error for its supervisor to restart it, rather than serve
            // reads beside writes that all fail UNAVAILABLE.
            ended = &mut writer_task => {
                let why = match ended {
                    Err(e) => e.to_string(),
                    Ok(()) => "its queue ended".to_string(),
                };
                tracing::error!(error = %why, "the writer stopped while serving: shutting down");
                // (The requests in flight hold connections: waited for the drain timeout at most.)
                probe_ends.0.abort();
                let _ = tokio::time::timeout(drain_timeout, db.close()).await;
                anyhow::bail!("the writer stopped while serving ({why}): restart the service");
            }
        }
        tracing::info!("stopped taking requests; draining the writer");
        api.writer.close();
        drop(api);
        writer_task.await.context("Writer task failed")?;
        // The writes are committed: the connections still in use (a backup's `pg_dump` or
        // `VACUUM INTO`, a long read whose caller the drain let go) are waited for the drain
        // timeout at most (since 2026-12-07 without end: a backup held the shutdown past a
        // supervisor's patience, its clean end never logged).
        if tokio::time::timeout(drain_timeout, db.close()).await.is_err() {
            tracing::warn!(
                drain_timeout_s = drain_timeout.as_secs_f64(),
                "database connections still in use after the drain timeout (a backup, a long \
                 read): no longer waited for; every write was committed"
            );
        }
        tracing::info!("shut down cleanly");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that ends while the server serves ends the server with an error (for its
    /// supervisor to restart it), rather than serving reads beside writes that all fail.
    #[tokio::test]
    async fn a_writer_ending_while_serving_stops_the_server() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut app = Application::build(Settings {
            listen: "127.0.0.1:0".parse().expect("a socket address"),
            database_url: format!("sqlite://{}", dir.path().join("w.db").display()),
            business_utc_offset: business_utc_offset_default(),
            token_cache_ttl: TOKEN_CACHE_TTL,
            drain_timeout: std::time::Duration::from_secs(2),
            signing_key: None,
            backups: None,
            tls: None,
        })
        .await
        .expect("the application builds");
        // The writer as if it had panicked outside a command's plan.
        app.writer_task = tokio::spawn(async { panic!("the writer's own bug") });
        let served = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            app.run_until(std::future::pending()),
        )
        .await
        .expect("the server stops by itself");
        let error = served.expect_err("an ended writer is the server's error").to_string();
        assert!(
            error.starts_with("the writer stopped while serving (")
                && error.contains("the writer's own bug")
                && error.ends_with("restart the service"),
            "{error}"
        );
    }

    #[test]
    fn utc_offsets() {
        let east = |secs| chrono::FixedOffset::east_opt(secs).unwrap();
        assert_eq!(parse_utc_offset("+08:00"), Ok(east(8 * 3600)));
        assert_eq!(
            parse_utc_offset(BUSINESS_UTC_OFFSET_DEFAULT),
            Ok(business_utc_offset_default())
        );
        assert_eq!(parse_utc_offset("-03:30"), Ok(east(-(3 * 3600 + 1800))));
        assert_eq!(parse_utc_offset("+00:00"), Ok(east(0)));
        for bad in [
            "08:00", "+8:00", "+24:00", "+08:60", "+0800", "", "+", "+aa:bb", "+-1:00", "-+1:00",
            "+08:-1",
        ] {
            assert!(parse_utc_offset(bad).is_err(), "{bad}");
        }
    }
}
