//! TLS and mutual TLS of `serve` (DESIGN.md: "TLS and mutual TLS are options of serve"): a
//! client that trusts the server's CA is served, a plain-text client and one that does not
//! trust it are not; with a client CA, only clients whose certificate chains to it connect,
//! and they still need a token; files that cannot be used stop the start, naming them. Each
//! scenario runs on SQLite and on PostgreSQL (a second server on the test's database).

use std::path::{Path, PathBuf};

use loanledger::api::pb;
use loanledger::api::pb::registry_service_client::RegistryServiceClient;
use loanledger::startup::{Application, TlsSettings};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::client::run_client;
use crate::common::*;

on_both_backends!(
    tls_serves_only_clients_that_trust_it,
    mutual_tls_serves_only_clients_with_a_certificate_of_its_ca,
    tls_files_that_cannot_be_used_stop_the_start,
    postgres_is_reached_over_verified_tls,
);

/// A certificate authority of the test's own.
fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key")).expect("a CA")
}

/// A certificate for `names` issued by `ca` for `purpose`, and its key, as PEM.
fn issued(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    purpose: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("parameters");
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().expect("a key");
    let cert = params.signed_by(&key, ca).expect("a certificate");
    (cert.pem(), key.serialize_pem())
}

/// The files of a server's TLS: its CA's certificate, its certificate and key, in `dir`.
struct ServerFiles {
    ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

fn server_files(dir: &Path, ca: &CertifiedIssuer<'static, KeyPair>) -> ServerFiles {
    let (cert_pem, key_pem) =
        issued(ca, &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert, cert_pem).expect("the certificate file");
    std::fs::write(&key, key_pem).expect("the key file");
    ServerFiles { ca_pem: ca.pem(), cert, key }
}

/// A second server on `app`'s database, with `tls`.
async fn serve_tls(app: &TestApp, tls: TlsSettings) -> Beside {
    let any_port = "127.0.0.1:0".parse().expect("an address");
    Beside::start(tls_settings(app, any_port, tls)).await
}

/// `serve`'s settings on `app`'s database with `tls`.
fn tls_settings(
    app: &TestApp,
    listen: std::net::SocketAddr,
    tls: TlsSettings,
) -> loanledger::startup::Settings {
    loanledger::startup::Settings { tls: Some(tls), ..serve_settings(&app.database_url, listen) }
}

/// `GetMetrics` as the operator over `endpoint`.
async fn metrics_over(
    endpoint: Endpoint,
    operator: &str,
) -> Result<tonic::Response<pb::Metrics>, tonic::Status> {
    RegistryServiceClient::with_interceptor(endpoint.connect_lazy(), Bearer::new(operator))
        .get_metrics(pb::GetMetricsRequest {})
        .await
}

fn https(port: u16, tls: ClientTlsConfig) -> Endpoint {
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .expect("an endpoint")
        .tls_config(tls.domain_name("localhost"))
        .expect("the client's TLS")
}

fn plain(port: u16) -> Endpoint {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}")).expect("an endpoint")
}

async fn tls_serves_only_clients_that_trust_it(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let dir = tempfile::tempdir().expect("a directory");
    let files = server_files(dir.path(), &authority("loanledger test CA"));
    let tls = TlsSettings { cert: files.cert.clone(), key: files.key.clone(), client_ca: None };
    let server = serve_tls(&app, tls).await;
    let port = server.port;
    let trusting = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&files.ca_pem));

    // Trusting the server's CA: served, and the service is the same (the seeded ledger).
    let metrics = metrics_over(https(port, trusting.clone()), &t.operator).await;
    assert_eq!(metrics.expect("GetMetrics over TLS").into_inner().backend, backend.name());
    let ledger = RegistryServiceClient::with_interceptor(
        https(port, trusting.clone()).connect_lazy(),
        Bearer::new(&t.finance),
    )
    .get_ledger(pb::GetLedgerRequest { ledger_id: LEDGER.into() })
    .await
    .expect("GetLedger over TLS");
    assert_eq!(ledger.into_inner().ledger_id, LEDGER);
    // The token is still asked for.
    let anonymous = RegistryServiceClient::new(https(port, trusting).connect_lazy())
        .get_metrics(pb::GetMetricsRequest {})
        .await;
    expect_code(anonymous, Code::Unauthenticated);
    // Plain HTTP/2 to a TLS server, and TLS trusting another CA: no call gets through.
    let refused = metrics_over(plain(port), &t.operator).await.expect_err("plain text");
    // The connection fails under the call (the server closes it; the client's code depends on
    // when it notices): no answer of the service's.
    let transport = [Code::Unavailable, Code::Unknown, Code::Cancelled];
    assert!(transport.contains(&refused.code()), "{refused:?}");
    let other = authority("another CA");
    let distrusting = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(other.pem()));
    let distrusted = metrics_over(https(port, distrusting), &t.operator)
        .await
        .expect_err("a client that does not trust the server's CA");
    assert_eq!(distrusted.code(), Code::Unavailable, "a transport failure: {distrusted:?}");

    server.stop().await;
    app.finish().await;
}

async fn mutual_tls_serves_only_clients_with_a_certificate_of_its_ca(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let dir = tempfile::tempdir().expect("a directory");
    let server_ca = authority("loanledger test CA");
    let files = server_files(dir.path(), &server_ca);
    // The banks' CA, apart from the server's.
    let clients_ca = authority("banks' CA");
    let client_ca = dir.path().join("clients-ca.pem");
    std::fs::write(&client_ca, clients_ca.pem()).expect("the client CA file");
    let tls = TlsSettings { cert: files.cert, key: files.key, client_ca: Some(client_ca) };
    let server = serve_tls(&app, tls).await;
    let port = server.port;
    let trusting = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&files.ca_pem));

    let (cert, key) = issued(&clients_ca, &["bank-b1"], ExtendedKeyUsagePurpose::ClientAuth);
    let bank = trusting.clone().identity(Identity::from_pem(&cert, &key));
    let metrics = metrics_over(https(port, bank.clone()), &t.operator).await;
    metrics.expect("GetMetrics with a client certificate of the client CA");
    // The CLI's client alike: with the server's CA and the client's certificate, served;
    // without its certificate, not connected (exit status 3).
    let file = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("a PEM file");
        path.to_str().expect("a UTF-8 path").to_string()
    };
    let (ca, cert, key) =
        (file("ca.pem", &files.ca_pem), file("bank.pem", &cert), file("bank.key", &key));
    let url = format!("https://localhost:{port}");
    let get = format!(r#"{{"ledgerId":"{LEDGER}"}}"#);
    let cli = |identity: &[&str]| {
        let args = [&["--ca-cert", &ca], identity, &["call", "RegistryService/GetLedger", &get]];
        run_client(&url, Some(&t.finance), &args.concat(), "")
    };
    let served = cli(&["--client-cert", &cert, "--client-key", &key]);
    assert!(served.status == Some(0), "{}", served.stderr);
    let ledger: serde_json::Value = serde_json::from_str(&served.stdout).expect("JSON");
    assert_eq!(ledger["ledgerId"], LEDGER);
    let unserved = cli(&[]);
    assert_eq!(unserved.status, Some(3), "{}", unserved.stderr);
    // Its certificate lets it connect; its token still decides what it may do.
    let denied = RegistryServiceClient::with_interceptor(
        https(port, bank).connect_lazy(),
        Bearer::new(&t.bank),
    )
    .get_metrics(pb::GetMetricsRequest {})
    .await;
    expect_code(denied, Code::PermissionDenied);
    // Without a certificate, or with one of another CA (the server's own): refused.
    metrics_over(https(port, trusting.clone()), &t.operator)
        .await
        .expect_err("a client without a certificate");
    let (cert, key) = issued(&server_ca, &["intruder"], ExtendedKeyUsagePurpose::ClientAuth);
    let stranger = trusting.identity(Identity::from_pem(cert, key));
    metrics_over(https(port, stranger), &t.operator)
        .await
        .expect_err("a client whose certificate is not of the client CA");

    server.stop().await;
    app.finish().await;
}

async fn tls_files_that_cannot_be_used_stop_the_start(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("a directory");
    let files = server_files(dir.path(), &authority("loanledger test CA"));
    let any_port = "127.0.0.1:0".parse().expect("an address");
    let start = |tls: TlsSettings| {
        let settings = tls_settings(&app, any_port, tls);
        async move {
            match Application::build(settings).await {
                Ok(_) => panic!("a server started with TLS files that cannot be used"),
                Err(e) => format!("{e:#}"),
            }
        }
    };
    let missing = dir.path().join("missing.key");
    let said =
        start(TlsSettings { cert: files.cert.clone(), key: missing.clone(), client_ca: None })
            .await;
    assert!(said.contains(&format!("--tls-key {}", missing.display())), "{said}");
    let garbled = dir.path().join("garbled.pem");
    std::fs::write(&garbled, "not a certificate").expect("a file");
    let said =
        start(TlsSettings { cert: garbled.clone(), key: files.key.clone(), client_ca: None }).await;
    let expected = format!("--tls-cert {} holds no certificate", garbled.display());
    assert!(said.contains(&expected), "{said}");
    // A key file holding a certificate, not a key.
    let said =
        start(TlsSettings { cert: files.cert.clone(), key: files.cert.clone(), client_ca: None })
            .await;
    let expected = format!("--tls-key {} holds no private key", files.cert.display());
    assert!(said.contains(&expected), "{said}");
    // A key that is not the certificate's.
    let (_, other_key) =
        issued(&authority("x"), &["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, other_key).expect("a file");
    let said = start(TlsSettings { cert: files.cert.clone(), key: wrong, client_ca: None }).await;
    assert!(said.contains("cannot be used"), "{said}");
    let said =
        start(TlsSettings { cert: files.cert, key: files.key, client_ca: Some(garbled.clone()) })
            .await;
    let expected = format!("--tls-client-ca {} holds no certificate", garbled.display());
    assert!(said.contains(&expected), "{said}");
    app.finish().await;
}

/// A PostgreSQL cluster of the test's own, started with TLS on (a certificate for 127.0.0.1 of
/// a test CA), stopped and removed when dropped. As root (CI), run as the `postgres` user,
/// which PostgreSQL requires.
struct TlsCluster {
    dir: tempfile::TempDir,
    port: u16,
    ca_file: PathBuf,
    as_postgres: bool,
}

impl TlsCluster {
    fn run(&self, program: &str, args: &str) -> std::process::Output {
        let line = format!("'{}' {args}", pg_program(program).display());
        let mut command = if self.as_postgres {
            let mut c = std::process::Command::new("su");
            c.args(["postgres", "-s", "/bin/sh", "-c", &line]);
            c
        } else {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", &line]);
            c
        };
        command.output().expect("a PostgreSQL program")
    }

    fn start() -> TlsCluster {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a directory for the cluster");
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let ca = authority("PostgreSQL's CA");
        let (cert_pem, key_pem) = issued(&ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("server.crt"), cert_pem).expect("the certificate");
        std::fs::write(path("server.key"), key_pem).expect("the key");
        std::fs::set_permissions(path("server.key"), std::fs::Permissions::from_mode(0o600))
            .expect("the key's mode");
        std::fs::write(path("ca.crt"), ca.pem()).expect("the CA's certificate");
        if as_postgres {
            let owned = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(owned.success(), "the cluster's directory given to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let cluster = TlsCluster { port, ca_file: path("ca.crt"), as_postgres, dir };
        let d = cluster.dir.path().display().to_string();
        let init = cluster.run("initdb", &format!("-D '{d}/data' -U postgres -A trust --no-sync"));
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        let options = format!(
            "-p {port} -k '{d}' -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on \
             -c ssl_cert_file='{d}/server.crt' -c ssl_key_file='{d}/server.key'"
        );
        let started = cluster
            .run("pg_ctl", &format!("-D '{d}/data' -l '{d}/log' -w -t 30 -o \"{options}\" start"));
        let log = std::fs::read_to_string(format!("{d}/log")).unwrap_or_default();
        assert!(started.status.success(), "pg_ctl start: {log}");
        cluster
    }

    fn url(&self, query: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?{query}", self.port)
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let d = self.dir.path().display().to_string();
        self.run("pg_ctl", &format!("-D '{d}/data' -m immediate -w stop"));
    }
}

/// PostgreSQL is reached over TLS, the server's certificate verified, when the URL asks for it
/// (`sslmode=verify-full&sslrootcert=CA`; since 2026-12-07: sqlx was built without TLS, so
/// `sslmode=require` could not connect at all and the default `prefer` sent the journal and the
/// households' ID numbers in the clear): a server starts on a cluster of its own with TLS on,
/// migrates and serves, its sessions encrypted (`pg_stat_ssl`); a URL whose CA is not the
/// cluster's stops the start.
async fn postgres_is_reached_over_verified_tls(backend: Backend) {
    // With the PostgreSQL half of the suite (the cluster's programs at hand).
    if backend != Backend::Postgres
        || std::env::var(PG_URL_VAR).is_err() && std::env::var("CI").as_deref() != Ok("true")
    {
        return;
    }
    let cluster = TlsCluster::start();
    let ca = cluster.ca_file.display().to_string();
    let url = cluster.url(&format!("sslmode=verify-full&sslrootcert={ca}"));
    let any_port = "127.0.0.1:0".parse().expect("an address");
    let server = Beside::start(serve_settings(&url, any_port)).await;
    let db = loanledger::store::Db::connect(&url).await.expect("connected over TLS");
    // Every client session (the server's and this one) is encrypted.
    let ssl = "select count(*)::text || ' ' || bool_and(s.ssl)::text from pg_stat_ssl s \
               join pg_stat_activity a using (pid) where a.backend_type = 'client backend'";
    let sessions = db.query_texts(ssl).await.expect("pg_stat_ssl");
    let (count, all) = sessions[0].split_once(' ').expect("count and flag");
    assert!(count.parse::<u32>().expect("a count") >= 2 && all == "true", "{sessions:?}");
    // Migrated: the LPR table's chain started (its first entry).
    let tables = "select count(*)::text from journal_txn";
    assert_eq!(db.query_texts(tables).await.expect("migrated"), ["1"]);
    server.stop().await;

    // Another CA's certificate, or TLS asked of a server without it: refused.
    let dir = tempfile::tempdir().expect("a directory");
    let other = dir.path().join("other.crt");
    std::fs::write(&other, authority("another CA").pem()).expect("the other CA");
    let distrusting = cluster.url(&format!("sslmode=verify-full&sslrootcert={}", other.display()));
    let refused = Application::build(serve_settings(&distrusting, any_port)).await;
    let refused = format!("{:#}", refused.err().expect("a CA not the cluster's is refused"));
    assert!(refused.contains("Failed to connect to the database"), "{refused}");
}
