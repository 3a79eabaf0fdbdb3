//! The service through its life and its failures: restarts, a killed server keeping what it
//! acknowledged, the drain at shutdown and a second signal, database connections killed under
//! it, failed writes leaving nothing and not failing their neighbours, rows locked elsewhere,
//! the checkpoint signing key kept across restarts, health following the database and the shutdown,
//! the process's transparent huge pages. Each scenario runs on SQLite and on PostgreSQL
//! (connections killed: PostgreSQL only; huge pages: SQLite, the database not in question).

use std::collections::BTreeMap;
use std::time::Duration;

use loanledger::api::pb;
use tonic::Code;

use super::{disbursed_loans, entry, with_disbursed_loan, with_two_disbursed_loans};
use crate::common::*;

on_both_backends!(
    shutdown_finishes_writes_in_flight,
    survives_restart,
    killed_server_keeps_what_it_acknowledged,
    a_second_signal_ends_the_drain,
    failed_write_leaves_nothing,
    failed_groups_beside_others,
    a_stalled_reader_does_not_hold_up_shutdown,
    a_row_locked_elsewhere_is_unavailable,
    the_signing_key_outlives_a_restart,
    a_start_without_an_operator_token_that_logs_in_warns,
    a_missing_signing_key_stops_a_database_with_the_lpr_tables_journal,
    a_failed_start_is_logged_as_json,
    backup_settings_that_would_fail_are_warned_at_start,
    health_follows_the_database_and_the_shutdown,
    one_server_at_a_time_writes,
    a_database_is_not_migrated_under_a_server_writing_to_it,
    a_database_of_a_newer_build_is_refused_as_such,
    the_sqlite_database_is_its_owners_alone,
    postgres_sessions_are_kept_alive,
);

/// Stopping the server while clients are writing: every acknowledged write is in the journal
/// after a restart, nothing is half-written or doubled, and the chain verifies.
async fn shutdown_finishes_writes_in_flight(backend: Backend) {
    const CLIENTS: usize = 30;
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let ids = disbursed_loans(&app, &t, "S", CLIENTS).await;

    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let first_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(first_tx)));
    let mut tasks = Vec::new();
    for id in &ids {
        let mut loans = app.loans(&t.bank);
        let first_tx = first_tx.clone();
        let req = pb::RecordRepaymentRequest {
            request_id: rid("repay"),
            loan_id: id.clone(),
            value_date: "2021-03-20".into(),
            amount_fen: 250_000,
            subsidy_netted_fen: 0,
        };
        tasks.push(tokio::spawn(async move {
            let result = loans.record_repayment(req.clone()).await;
            if let Some(tx) = first_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            (req, result.map(|r| r.into_inner()))
        }));
    }
    // Stop as soon as the first write is answered, with the others in flight or queued.
    let _ = first_rx.await;
    app.restart().await;

    let mut acknowledged = Vec::new();
    let mut failed = Vec::new();
    let mut sent = Vec::new();
    for task in tasks {
        let (req, result) = task.await.expect("client task");
        match result {
            Ok(answer) => acknowledged.push((req.request_id.clone(), entry(&answer).clone())),
            Err(status) => failed.push((req.request_id.clone(), status)),
        }
        sent.push(req);
    }
    assert!(!acknowledged.is_empty());
    let journal = app.journal(&t.auditor, LEDGER).await;
    check_chain(&journal);
    for (request_id, r) in &acknowledged {
        let found: Vec<_> = journal.iter().filter(|e| &e.request_id == request_id).collect();
        assert_eq!(found.len(), 1, "acknowledged {request_id} is in the journal once");
        assert_eq!((found[0].seq, &found[0].hash), (r.seq, &r.hash));
    }
    // The drain answers every write the writer took: one that failed was refused before it,
    // and posted nothing.
    for (request_id, status) in &failed {
        let n = journal.iter().filter(|e| &e.request_id == request_id).count();
        assert_eq!(n, 0, "{request_id} failed ({status:?}) but was posted");
    }
    for req in &sent {
        let n = journal.iter().filter(|e| e.request_id == req.request_id).count();
        assert!(n <= 1, "{} posted {n} times", req.request_id);
        let l = app.get_loan_as_of(&t.bank, &req.loan_id, "2021-03-20").await;
        let interest = standard_interest(1_000_000, 55);
        let expected = if n == 1 { 1_000_000 - (250_000 - interest) } else { 1_000_000 };
        assert_eq!(l.principal_outstanding_fen, expected, "{}", req.loan_id);
    }
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// Everything written is there after a restart, and the chain continues from its head.
async fn survives_restart(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = loan_id("C001");
    app.create_loan(&t.bank, standard_loan("C001", HOUSEHOLD)).await;
    let disbursed = app.disburse(&t.bank, &id, "2021-01-25").await;
    let before_loan = app.get_loan(&t.bank, &id).await;
    let before_journal = app.journal(&t.auditor, LEDGER).await;
    let before_verify = app.verify(&t.auditor).await;
    assert!(before_verify.ok);

    app.restart().await;

    assert_eq!(app.get_loan(&t.bank, &id).await, before_loan);
    assert_eq!(app.journal(&t.auditor, LEDGER).await, before_journal);
    let household = app
        .registry(&t.finance)
        .get_household(pb::GetHouseholdRequest { household_id: HOUSEHOLD.into() })
        .await
        .expect("GetHousehold after restart")
        .into_inner();
    assert_eq!(household.status_history.len(), 1);
    let v = app.verify(&t.auditor).await;
    assert_eq!(v, before_verify);

    let repaid = app.repay(&t.bank, &id, "2021-03-20", 29_410).await;
    assert_eq!(entry(&repaid).seq, entry(&disbursed).seq + 1);
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.last().unwrap().prev_hash, entry(&disbursed).hash);
    check_chain(&journal);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    assert_eq!(v.head_hash, entry(&repaid).hash);
    app.finish().await;
}

/// The server process killed (SIGKILL) while eight clients write: after a restart every
/// repayment it acknowledged is in the journal at the place and with the hash it was
/// acknowledged with, a retry of it is answered with the same entry, and the journal verifies.
/// On SQLite this is also the crash test of the writer's WAL writes (`store::wal_vfs`): the
/// process dies with a commit's frames half written.
async fn killed_server_keeps_what_it_acknowledged(backend: Backend) {
    const CLIENTS: usize = 8;
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.stop().await;
    let mut server = ServerProcess::start(&app.database_url);
    app.port = server.port;

    // The first answer says the process is serving.
    let started = std::time::Instant::now();
    let mut acknowledged = vec![loop {
        match app.repay_as(&t.bank, "crash-first", &id, "2021-03-20", 100).await {
            Ok(r) => break ("crash-first".to_string(), entry(&r).clone()),
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                assert!(started.elapsed() < Duration::from_secs(30), "the server did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }];

    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let mut loans = app.loans(&t.bank);
        let (id, answered, killed) = (id.clone(), answered.clone(), killed.clone());
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for k in 0..5_000 {
                let request_id = format!("crash-{c}-{k}");
                let req = pb::RecordRepaymentRequest {
                    request_id: request_id.clone(),
                    loan_id: id.clone(),
                    value_date: "2021-03-20".into(),
                    amount_fen: 100,
                    subsidy_netted_fen: 0,
                };
                match loans.record_repayment(req).await {
                    Ok(r) => acked.push((request_id, entry(&r.into_inner()).clone())),
                    // The process is gone; before the kill, any error is a failure.
                    Err(s) => {
                        let killed = killed.load(std::sync::atomic::Ordering::SeqCst);
                        assert!(killed, "{request_id} failed before the kill: {s:?}");
                        break;
                    }
                }
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            acked
        }));
    }
    let writing = std::time::Instant::now();
    while answered.load(std::sync::atomic::Ordering::Relaxed) < 400 {
        assert!(
            writing.elapsed() < Duration::from_secs(60) && !clients.iter().all(|c| c.is_finished()),
            "the server stopped answering before 400 repayments"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    server.kill();
    for client in clients {
        let acked = client.await.expect("a client task");
        assert!(acked.len() < 5_000, "a client outlived the server");
        acknowledged.extend(acked);
    }
    assert!(acknowledged.len() > 400, "{} acknowledged", acknowledged.len());

    app.restart().await;
    let journal = app.journal(&t.auditor, LEDGER).await;
    let by_seq: BTreeMap<u64, &pb::JournalTransaction> =
        journal.iter().map(|e| (e.seq, e)).collect();
    for (request_id, acked) in &acknowledged {
        let kept = by_seq.get(&acked.seq).unwrap_or_else(|| {
            panic!("acknowledged {request_id} (seq {}) is not in the journal", acked.seq)
        });
        assert_eq!(&kept.request_id, request_id);
        assert_eq!(kept.hash, acked.hash, "{request_id} was kept as it was acknowledged");
    }
    check_chain(&journal);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    for (request_id, acked) in acknowledged.iter().rev().take(20) {
        let again = app
            .repay_as(&t.bank, request_id, &id, "2021-03-20", 100)
            .await
            .expect("a retry of an acknowledged repayment");
        assert_eq!(entry(&again), acked, "{request_id} is answered as before, not posted again");
    }
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal.len(), "nothing posted twice");
    app.finish().await;
}

/// `serve` says at its start when no operator token can log in (since 2026-12-07 evening, when
/// only a database without any token was warned of): none while the seed's operator token
/// stands; once the command line's `token revoke` (which keeps none) took it, a warning that
/// names `token create`.
async fn a_start_without_an_operator_token_that_logs_in_warns(backend: Backend) {
    let Some((mut app, t, _)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.stop().await;
    let warning = "the database has no operator token that can log in";
    let started = |app: &TestApp| {
        let dir = tempfile::tempdir().expect("a directory for the key");
        let key = dir.path().join("signing.key");
        let key = key.to_str().expect("a UTF-8 path").to_string();
        let server = ServerProcess::start_with(
            &app.database_url,
            &["--signing-key", &key, "--new-signing-key"],
        );
        server.wait_for_log("serving", Duration::from_secs(10));
        let log = server.log.lock().expect("the log").join("\n");
        (server, log, dir)
    };
    let (mut server, log, _dir) = started(&app);
    server.kill();
    assert!(!log.contains(warning), "{log}");
    let revoked = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
        .args(["token", "revoke", "--secret", &t.operator, "--database-url", &app.database_url])
        .output()
        .expect("the binary runs");
    assert!(revoked.status.success(), "{revoked:?}");
    let (mut server, log, _dir) = started(&app);
    server.kill();
    let line = log.lines().find(|l| l.contains(warning)).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("WARN") && line.contains("token create --role operator"), "{line}");
}

/// `serve --signing-key FILE` makes the key file on its first start (owner-only, its public key
/// logged, printed by `public-key`) and signs with the same key after a restart: a checkpoint
/// asked again is the same, signature and all. A key file that cannot be read stops the start,
/// naming the file; so does a missing one for a database that has ledgers, unless
/// `--new-signing-key` asks for a new key.
async fn the_signing_key_outlives_a_restart(backend: Backend) {
    let Some((mut app, t, _)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.stop().await;
    let dir = tempfile::tempdir().expect("a directory for the key");
    let key_file = dir.path().join("signing.key");
    let key_arg = key_file.to_str().expect("a UTF-8 path");
    let args = ["--signing-key", key_arg];
    async fn checkpoint(app: &TestApp, token: &str) -> pb::SignedCheckpoint {
        let request = pb::GetCheckpointRequest { ledger_id: LEDGER.into(), tree_size: 0 };
        app.audit(token).get_checkpoint(request).await.expect("GetCheckpoint").into_inner()
    }

    // The database has ledgers and the file is missing: the start is refused, naming the file
    // and the way to a new key (until 2026-12-06 a new key was made with a warning, and
    // checkpoints signed under it, which no auditor held), before the database is migrated
    // (since 2026-12-07): a database a build before this one left (here: the record of its
    // last migration set aside) stays as it was, which that build still serves.
    let count = "select cast(count(*) as text) from _sqlx_migrations";
    let applied = app.db.query_texts(count).await.expect("the migrations applied");
    set_aside_last_migration(&app).await;
    let stderr = refused_for_a_missing_key(&app.database_url, &key_file);
    assert!(stderr.contains(key_arg) && stderr.contains("--new-signing-key"), "{stderr}");
    let after = app.db.query_texts(count).await.expect("the migrations applied");
    assert_eq!(
        after[0].parse::<i64>().expect("a count") + 1,
        applied[0].parse::<i64>().expect("a count"),
        "not migrated"
    );
    put_back_last_migration(&app).await;
    let mut server = ServerProcess::start_with(
        &app.database_url,
        &["--signing-key", key_arg, "--new-signing-key"],
    );
    // Asked for, a key made for it is a warning.
    let warning = "checkpoint signing key created for a database that has journals";
    server.wait_for_log(warning, Duration::from_secs(10));
    assert!(
        server
            .log
            .lock()
            .expect("the log")
            .iter()
            .any(|l| l.contains(warning) && l.contains("WARN"))
    );
    app.port = server.port;
    let first = checkpoint(&app, &t.auditor).await;
    server.kill();
    let seed: [u8; 32] =
        hex::decode(std::fs::read_to_string(&key_file).expect("the key file").trim())
            .expect("hex")
            .try_into()
            .expect("32 bytes");
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    assert_eq!(first.public_key, hex::encode(public.as_bytes()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).expect("the key file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "readable by its owner alone");
    }
    assert!(server.log.lock().expect("the log").iter().any(|l| l.contains(&first.public_key)));
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
        .args(["public-key", "--signing-key", key_arg])
        .output()
        .expect("public-key runs");
    assert!(printed.status.success(), "{printed:?}");
    assert_eq!(String::from_utf8_lossy(&printed.stdout).trim(), first.public_key);

    let mut server = ServerProcess::start_with(&app.database_url, &args);
    app.port = server.port;
    assert_eq!(checkpoint(&app, &t.auditor).await, first, "the same key after a restart");
    server.kill();
    let lost = "the checkpoint signing key has no signed marks file beside it";
    assert!(!server.log.lock().expect("the log").iter().any(|l| l.contains(lost)));
    // The key moved without its marks file: warned (since 2026-12-07 it went unsaid).
    let moved = dir.path().join("moved.key");
    std::fs::copy(&key_file, &moved).expect("the key copied");
    let moved_arg = moved.to_str().expect("a UTF-8 path");
    let mut server = ServerProcess::start_with(&app.database_url, &["--signing-key", moved_arg]);
    server.wait_for_log(lost, Duration::from_secs(10));
    server.kill();

    std::fs::write(&key_file, "not a key\n").expect("the key file overwritten");
    // Run with a deadline: should it start after all, the test fails instead of waiting on it.
    let serve = ["serve", "--database-url", &app.database_url, "--listen", "127.0.0.1:0"];
    let stderr = refused_start(&[&serve[..], &args].concat());
    assert!(stderr.contains("Failed to read the checkpoint signing key file"), "{stderr}");
    assert!(stderr.contains(key_arg), "{stderr}");
    app.finish().await;
}

/// The `loanledger serve` binary on a database, as a process of its own on a port it chose
/// itself (read from its "serving" log line); killed (SIGKILL) by [`ServerProcess::kill`] or
/// when dropped, and by the kernel should the test process die first (a test run interrupted
/// or killed: no server left holding the database and its port). Its log is kept and printed
/// should the test fail.
struct ServerProcess {
    child: std::process::Child,
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Where its checkpoint signing key is made, unless its arguments name one: not in the
    /// working directory, the crate's.
    _key_dir: Option<tempfile::TempDir>,
}

impl ServerProcess {
    fn start(database_url: &str) -> ServerProcess {
        ServerProcess::start_with(database_url, &[])
    }

    /// As [`ServerProcess::start`], with more arguments to `serve`.
    fn start_with(database_url: &str, serve_args: &[&str]) -> ServerProcess {
        ServerProcess::start_with_env(database_url, serve_args, &[])
    }

    /// As [`ServerProcess::start_with`], with these environment variables set (and
    /// `MIMALLOC_ALLOW_THP` unset unless among them).
    fn start_with_env(
        database_url: &str,
        serve_args: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        use std::io::BufRead;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"));
        command.env_remove("MIMALLOC_ALLOW_THP").envs(env.iter().copied());
        command
            .args(["serve", "--database-url", database_url, "--listen", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(serve_args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // Linux: SIGKILL to the child when the thread that started it ends (the test's own
        // thread, which outlives the server in every test). Between fork and exec only
        // async-signal-safe calls are allowed: prctl and getppid are.
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            let parent = std::process::id();
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the call: then nobody would signal us.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("the test process is gone"));
                }
                Ok(())
            });
        }
        // (A new key for the database, whether it has ledgers or not.)
        let key_dir = (!serve_args.contains(&"--signing-key")).then(|| {
            let dir = tempfile::tempdir().expect("a directory for the signing key");
            command.arg("--signing-key").arg(dir.path().join("signing.key"));
            command.arg("--new-signing-key");
            dir
        });
        let mut child = command.spawn().expect("the server binary starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("the server's stderr");
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if event["fields"]["message"] == "serving"
                    && let Some(port) = event["fields"]["addr"]
                        .as_str()
                        .and_then(|a| a.rsplit(':').next())
                        .and_then(|p| p.parse::<u16>().ok())
                {
                    let _ = port_tx.send(port);
                }
                kept.lock().expect("the log").push(line);
            }
        });
        let started = std::time::Instant::now();
        let port = loop {
            if let Ok(port) = port_rx.recv_timeout(Duration::from_millis(100)) {
                break port;
            }
            let exited = child.try_wait().expect("the server's status");
            let log = log.lock().expect("the log").join("\n");
            assert!(exited.is_none(), "the server exited ({exited:?}):\n{log}");
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the server did not start:\n{log}"
            );
        };
        ServerProcess { child, port, log, _key_dir: key_dir }
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("the killed server is reaped");
    }

    /// Sends the server `signal`.
    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
    }

    /// Waits up to `within` for a log line holding `text`.
    fn wait_for_log(&self, text: &str, within: Duration) {
        let started = std::time::Instant::now();
        while !self.log.lock().expect("the log").iter().any(|line| line.contains(text)) {
            let log = self.log.lock().expect("the log").join("\n");
            assert!(started.elapsed() < within, "no log line with {text:?}:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking()
            && let Ok(log) = self.log.lock()
        {
            eprintln!("the server process's log:\n{}", log.join("\n"));
        }
    }
}

/// A stopping server waits for the requests in flight (here a journal stream its client has
/// stopped reading) up to its drain timeout; a second SIGTERM or SIGINT meanwhile ends it at
/// once, with status 128 + the signal's number and a warning, and what it had committed is
/// kept: the journal verifies after a restart.
async fn a_second_signal_ends_the_drain(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    // Enough journal that its stream outgrows a client's HTTP/2 window of 64 KiB: unread, the
    // server's sending waits.
    disbursed_loans(&app, &t, "D", 60).await;
    let journal = app.journal(&t.auditor, LEDGER).await;
    let journal_len = journal.len();
    // The premise: the stream holds more than its window (the connection's is larger, hyper's
    // default), so that the server cannot send it all.
    let encoded: usize = journal.iter().map(prost::Message::encoded_len).sum();
    assert!(encoded > 65_535 + 16_384, "a journal of {encoded} bytes");
    app.stop().await;
    for (first, second, status) in [
        (libc::SIGTERM, libc::SIGTERM, 128 + libc::SIGTERM),
        (libc::SIGTERM, libc::SIGINT, 128 + libc::SIGINT),
    ] {
        let mut server =
            ServerProcess::start_with(&app.database_url, &["--drain-timeout-secs", "600"]);
        app.port = server.port;
        let narrow = app.endpoint().initial_stream_window_size(65_535).connect_lazy();
        let mut stream = pb::audit_service_client::AuditServiceClient::with_interceptor(
            narrow,
            Bearer::new(&t.auditor),
        )
        .read_journal(pb::ReadJournalRequest { ledger_id: LEDGER.into(), ..Default::default() })
        .await
        .expect("the journal's stream")
        .into_inner();
        assert_eq!(stream.message().await.expect("a first entry").map(|e| e.seq), Some(1));
        server.signal(first);
        server.wait_for_log("SIGTERM received", Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(500));
        assert!(server.child.try_wait().expect("its status").is_none(), "it drains");
        server.signal(second);
        let started = std::time::Instant::now();
        let exited = loop {
            if let Some(exited) = server.child.try_wait().expect("its status") {
                break exited;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "it did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(exited.code(), Some(status), "{exited:?}");
        server.wait_for_log("received while stopping: exiting now", Duration::from_secs(5));
        drop(stream);
    }
    app.restart().await;
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal_len);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

/// Linux: the server runs with transparent huge pages off for its process
/// (`PR_SET_THP_DISABLE`, README "Configuration"), and with them as the host has them when
/// `MIMALLOC_ALLOW_THP=1` is set: the kernel's `THP_enabled` in the process's status.
#[cfg(target_os = "linux")]
#[test]
fn the_server_keeps_off_huge_pages_unless_told() {
    let status_of = |pid: u32| -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("THP_enabled:"))?;
        Some(line["THP_enabled:".len()..].trim().to_string())
    };
    // A kernel that does not show it (before 5.0), or this test's own process already without
    // huge pages, has nothing to compare.
    if status_of(std::process::id()).as_deref() != Some("1") {
        eprintln!("THP_enabled not shown, or 0 for the test itself: nothing to check");
        return;
    }
    let dir = tempfile::tempdir().expect("a directory");
    let url = format!("sqlite://{}", dir.path().join("thp.db").display());
    let server = ServerProcess::start(&url);
    assert_eq!(status_of(server.child.id()).as_deref(), Some("0"));
    drop(server);
    let server = ServerProcess::start_with_env(&url, &[], &[("MIMALLOC_ALLOW_THP", "1")]);
    assert_eq!(status_of(server.child.id()).as_deref(), Some("1"));
}

/// PostgreSQL: every connection of the service killed under it (as a database restart or a
/// firewall dropping connections would). A pooled connection idle for a while is pinged before
/// it is handed out, so after a pause the reads succeed at once; one killed while in use a
/// moment ago fails its next read with UNAVAILABLE (retryable), never INTERNAL, and is
/// replaced. The writer opens its connection again; a repayment retried under the same request
/// id posts once, and verify holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_killed_under_the_service() {
    let Some((app, t, id)) = with_disbursed_loan(Backend::Postgres).await else {
        return;
    };
    let before = app.history(&t.auditor, &id).await;
    let journal_before = app.journal(&t.auditor, LEDGER).await.len();

    // After a pause: the idle connections are pinged, the dead ones replaced unseen.
    warm_readers(&app, &t.auditor, &id).await;
    kill_service_sessions(&app).await;
    tokio::time::sleep(loanledger::store::PING_IF_IDLE_FOR + Duration::from_millis(200)).await;
    for _ in 0..6 {
        assert_eq!(app.history(&t.auditor, &id).await, before);
    }

    // At once: a read may meet a dead connection, and is answered UNAVAILABLE.
    warm_readers(&app, &t.auditor, &id).await;
    kill_service_sessions(&app).await;
    let mut unavailable = 0;
    let history = loop {
        let answer = app
            .audit(&t.auditor)
            .get_loan_history(pb::GetLoanHistoryRequest { loan_id: id.clone(), through_seq: 0 })
            .await;
        match answer {
            Ok(stream) => break collect(stream.into_inner()).await.expect("the history's stream"),
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "a dead connection: {s:?}");
                unavailable += 1;
                assert!(unavailable <= 10, "the pool keeps handing out dead connections");
            }
        }
    };
    assert_eq!(history, before);

    let mut attempts = 0;
    let repaid = loop {
        attempts += 1;
        match app.repay_as(&t.bank, "after-kill", &id, "2021-03-20", 1_000).await {
            Ok(r) => break r,
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "the writer's dead connection: {s:?}");
                assert!(attempts <= 10, "the writer does not open its connection again");
            }
        }
    };
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), journal_before + 1, "posted once");
    assert_eq!(journal.last().map(|e| e.seq), Some(entry(&repaid).seq));

    // A group whose first statement meets the dead connection before any BEGIN (a registry
    // command reads its request id first) gets a new connection too.
    kill_service_sessions(&app).await;
    let mut attempts = 0;
    let request_id = rid("bank-after-kill");
    loop {
        attempts += 1;
        let answer = app
            .registry(&t.operator)
            .register_bank(pb::RegisterBankRequest {
                request_id: request_id.clone(),
                ledger_id: LEDGER.into(),
                bank_id: "B7".into(),
                name: "after the kill".into(),
            })
            .await;
        match answer {
            Ok(_) => break,
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "the writer's dead connection: {s:?}");
                assert!(attempts <= 10, "the writer keeps its dead connection");
            }
        }
    }
    // (The readers' connections were killed too: after a pause they are pinged and replaced.)
    tokio::time::sleep(loanledger::store::PING_IF_IDLE_FOR + Duration::from_millis(200)).await;
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), journal_before + 2, "posted once");
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// Four history reads at once, so that the readers' pool holds several connections.
async fn warm_readers(app: &TestApp, token: &str, loan_id: &str) {
    tokio::join!(
        app.history(token, loan_id),
        app.history(token, loan_id),
        app.history(token, loan_id),
        app.history(token, loan_id),
    );
}

/// Terminates every other session on the test's database: the service's pool and writer.
async fn kill_service_sessions(app: &TestApp) {
    let killed = app
        .db
        .execute_raw(
            "select pg_terminate_backend(pid) from pg_stat_activity \
             where datname = current_database() and pid <> pg_backend_pid()",
        )
        .await
        .expect("terminate the service's sessions");
    assert!(killed >= 2, "the service's sessions were killed: {killed}");
}

/// A trigger that fails every insert of an idempotency record whose request id starts with
/// `poison`: the database failing a group's writes.
async fn poison_idempotency(app: &TestApp, backend: Backend) {
    let poison = match backend {
        Backend::Sqlite => {
            "create trigger poison before insert on idempotency \
             when new.request_id like 'poison%' begin select raise(abort, 'poisoned'); end"
        }
        Backend::Postgres => {
            "create function poison() returns trigger language plpgsql as $$ \
             begin if new.request_id like 'poison%' then raise exception 'poisoned'; end if; \
             return new; end $$; \
             create trigger poison before insert on idempotency \
             for each row execute function poison()"
        }
    };
    app.db.execute_raw(poison).await.expect("the test's trigger");
}

/// Verify with the test's poison trigger in place: the chain and the read models hold, and the
/// trigger, not one of the migrations', is the one problem reported.
async fn verifies_beside_the_poison(app: &TestApp, auditor: &str) {
    let v = app.verify(auditor).await;
    assert_eq!(
        v.problems,
        ["schema: trigger poison on idempotency is not the migrations'"],
        "{v:?}"
    );
    assert_eq!(v.first_break_seq, 0, "{v:?}");
}

/// Groups failing among others on the same loan: the groups the writer planned while a failing
/// one committed, on the states it would have left, are thrown away and run again, so every
/// answered repayment counts once and the stored loan is the journal's.
async fn failed_groups_beside_others(backend: Backend) {
    const ROUNDS: usize = 16;
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    poison_idempotency(&app, backend).await;
    let before = app.journal(&t.auditor, LEDGER).await.len();

    let mut batches = Vec::new();
    let mut beside = Vec::new();
    for i in 0..ROUNDS {
        let mut loans = app.loans(&t.bank);
        let items = vec![
            repayment_item(&rid("side"), &id, "2021-03-20", 10),
            repayment_item(&format!("poison-{i}"), &id, "2021-03-20", 10),
        ];
        batches.push(tokio::spawn(async move {
            loans.submit_batch(pb::SubmitBatchRequest { items }).await.map(|r| r.into_inner())
        }));
        let mut loans = app.loans(&t.bank);
        let items = vec![
            repayment_item(&rid("beside"), &id, "2021-03-20", 10),
            repayment_item(&rid("beside"), &id, "2021-03-20", 10),
        ];
        beside.push(tokio::spawn(async move {
            loans.submit_batch(pb::SubmitBatchRequest { items }).await.map(|r| r.into_inner())
        }));
    }
    for task in batches {
        let answer = task.await.expect("batch task").expect("SubmitBatch");
        assert_eq!((answer.posted, answer.failed), (1, 1), "{answer:?}");
        assert_eq!(answer.results[1].code, "INTERNAL", "{answer:?}");
    }
    for task in beside {
        let answer = task.await.expect("batch task").expect("SubmitBatch beside a failing group");
        assert_eq!((answer.posted, answer.failed), (2, 0), "{answer:?}");
    }
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), before + 3 * ROUNDS);
    check_chain(&journal);
    let l = app.get_loan(&t.bank, &id).await;
    assert_eq!(l.interest_paid_fen + l.principal_repaid_fen, 3 * ROUNDS as i64 * 10, "{l:?}");
    let b = balances(&journal);
    assert_eq!(b.get(&format!("loan/{id}/principal")).copied(), Some(l.principal_outstanding_fen));
    verifies_beside_the_poison(&app, &t.auditor).await;
    app.finish().await;
}

/// A group whose writes fail part-way leaves nothing behind. A trigger refuses the idempotency
/// row of one request (written after the group's journal rows, postings and loan links): the
/// writer takes the group apart, posts the other commands, answers the refused one INTERNAL,
/// and the chain goes on without a gap. A later item of the batch on the same loan is held
/// back (UNAVAILABLE, not run, nothing recorded: run, it would come before the one it follows
/// in the file); one on another loan is posted. Sent again once the trigger is gone, the batch
/// runs in its order: what was answered is answered the same, the rest is posted. Verify
/// holds throughout.
async fn failed_write_leaves_nothing(backend: Backend) {
    let Some((app, t, id, other)) = with_two_disbursed_loans(backend).await else {
        return;
    };
    poison_idempotency(&app, backend).await;
    let before = app.journal(&t.auditor, LEDGER).await;
    let head = before.last().expect("seeded journal").seq;

    let items = vec![
        repayment_item(&rid("first"), &id, "2021-03-20", 100),
        repayment_item("poison-1", &id, "2021-03-20", 100),
        repayment_item(&rid("third"), &id, "2021-03-20", 100),
        repayment_item(&rid("other"), &other, "2021-03-20", 100),
    ];
    let batch = pb::SubmitBatchRequest { items };
    let answer =
        app.loans(&t.bank).submit_batch(batch.clone()).await.expect("SubmitBatch").into_inner();
    let r = &answer.results;
    assert_eq!((answer.posted, answer.failed), (2, 2), "{answer:?}");
    assert!(r[0].ok && !r[1].ok && !r[2].ok && r[3].ok, "{answer:?}");
    assert_eq!(r[1].code, "INTERNAL", "{answer:?}");
    assert_eq!((r[2].code.as_str(), r[2].reason.as_str()), ("UNAVAILABLE", "HELD_BACK"));
    assert!(r[2].message.contains("went unanswered"), "{answer:?}");
    assert_eq!(r[2].metadata.get("refused_as_sent").map(String::as_str), Some("false"));
    let seqs: Vec<u64> = [&r[0], &r[3]].iter().map(|x| x.entry.as_ref().unwrap().seq).collect();
    assert_eq!(seqs, [head + 1, head + 2], "{answer:?}");

    // Alone, the refused request fails the same way and posts nothing.
    let err = app
        .repay_as(&t.bank, "poison-2", &id, "2021-03-20", 100)
        .await
        .expect_err("the trigger refuses it");
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.len(), before.len() + 2);
    assert!(journal.windows(2).all(|w| w[1].seq == w[0].seq + 1), "no gap in the chain");
    assert!(journal.iter().all(|e| !e.request_id.starts_with("poison")), "{journal:?}");
    verifies_beside_the_poison(&app, &t.auditor).await;

    // With the trigger gone the batch is sent again: nothing of the refused or held-back items
    // was kept, so they are posted now, in the file's order.
    let drop = match backend {
        Backend::Sqlite => "drop trigger poison",
        Backend::Postgres => "drop trigger poison on idempotency; drop function poison()",
    };
    app.db.execute_raw(drop).await.expect("drop the test's trigger");
    let again = app.loans(&t.bank).submit_batch(batch).await.expect("SubmitBatch").into_inner();
    let r2 = &again.results;
    assert_eq!((again.posted, again.failed), (4, 0), "{again:?}");
    let seqs: Vec<u64> = r2.iter().map(|x| x.entry.as_ref().unwrap().seq).collect();
    assert_eq!(seqs, [head + 1, head + 3, head + 4, head + 2], "{again:?}");
    let l = app.get_loan(&t.bank, &id).await;
    assert_eq!(l.interest_paid_fen, 300, "three repayments of 100 fen, no more: {l:?}");
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// A client that opens a journal stream and stops reading keeps its request open for good: a
/// stopping server waits for it [`DRAIN_TIMEOUT`] at most (it used to wait for ever), then the
/// writer commits what it has queued and the server stops. The writes made before the stop are
/// all there when it starts again, and the journal verifies.
async fn a_stalled_reader_does_not_hold_up_shutdown(backend: Backend) {
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let mut head = 0;
    for _ in 0..20 {
        head = entry(&app.repay(&t.bank, &id, "2021-03-20", 100).await).seq;
    }
    // The smallest flow-control window: the server can send the client a kilobyte before the
    // client reads, and the journal is over ten.
    let channel =
        app.endpoint().initial_stream_window_size(1024).connect().await.expect("a connection");
    let mut audit = pb::audit_service_client::AuditServiceClient::with_interceptor(
        channel,
        Bearer::new(&t.auditor),
    );
    let request = pb::ReadJournalRequest { ledger_id: LEDGER.into(), from_seq: 0, to_seq: 0 };
    let mut stream = audit.read_journal(request).await.expect("ReadJournal").into_inner();
    let first = stream.message().await.expect("the stream").expect("a first entry");
    assert_eq!(first.seq, 1);
    // Stopped within SHUTDOWN_TIMEOUT, or the test fails.
    app.stop().await;
    app.restart().await;
    let v = app.verify(&t.auditor).await;
    assert!(v.ok && v.head_seq == head, "{v:?}");
    drop(stream);
    app.finish().await;
}

/// A loan's row held by another session past the `lock_timeout` an operator set on PostgreSQL
/// (SQLSTATE 55P03), or past its `statement_timeout` (57014, query canceled: since 2026-12-06),
/// is a busy database, as SQLite's BUSY is: the write is answered UNAVAILABLE (it was INTERNAL,
/// not to be retried), nothing is posted, and sent again once the row is let go it posts once.
/// (SQLite's writer holds the only write lock: no row is held elsewhere.)
async fn a_row_locked_elsewhere_is_unavailable(backend: Backend) {
    use sqlx::Connection;
    if backend != Backend::Postgres {
        return;
    }
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let set = |setting: &str, value: &str| {
        format!(
            "do $$ begin execute format('alter database %I reset all', current_database()); \
             execute format('alter database %I set {setting} = %L', current_database(), \
             '{value}'); end $$"
        )
    };
    for (setting, value, request_id, date) in [
        ("lock_timeout", "200ms", "while-held", "2021-03-01"),
        ("statement_timeout", "1s", "while-held-long", "2021-03-02"),
    ] {
        app.db.execute_raw(&set(setting, value)).await.expect("the operator's setting");
        app.restart().await;
        let mut holder = sqlx::PgConnection::connect(&app.database_url).await.expect("a session");
        sqlx::query("begin").execute(&mut holder).await.expect("begin");
        sqlx::query("select 1 from loan where loan_id = $1 for update")
            .bind(&id)
            .execute(&mut holder)
            .await
            .expect("the loan's row held");
        let busy = app.repay_as(&t.bank, request_id, &id, date, 100).await;
        let status = busy.expect_err("the loan's row is held elsewhere");
        assert_eq!(status.code(), Code::Unavailable, "{setting}: {status:?}");
        // Nothing posted while refused (the retry below would answer a posting's own answer).
        let before = app.journal(&t.auditor, LEDGER).await;
        assert!(before.iter().all(|e| e.request_id != request_id), "{setting}: posted");
        sqlx::query("rollback").execute(&mut holder).await.expect("the row let go");
        app.repay_as(&t.bank, request_id, &id, date, 100).await.expect("posted when sent again");
        let journal = app.journal(&t.auditor, LEDGER).await;
        assert_eq!(journal.iter().filter(|e| e.request_id == request_id).count(), 1);
    }
    app.db.execute_raw(&set("statement_timeout", "60s")).await.expect("a longer timeout");
    app.restart().await;
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    app.finish().await;
}

async fn health_of(app: &TestApp, service: &str) -> Result<i32, tonic::Status> {
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel());
    let request = tonic_health::pb::HealthCheckRequest { service: service.into() };
    Ok(health.check(request).await?.into_inner().status)
}

/// Polls the overall health until it is `status` (30 s at most: the probe runs every 2 s and
/// says NOT_SERVING at the third miss in a row).
async fn health_becomes(
    app: &TestApp,
    status: tonic_health::pb::health_check_response::ServingStatus,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = health_of(app, "").await.expect("Health/Check");
        if now == status as i32 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "health still {now}, not {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `grpc.health.v1` follows the database: SERVING while it answers, NOT_SERVING while it does
/// not (PostgreSQL refusing connections, every call UNAVAILABLE), SERVING again once it does;
/// and NOT_SERVING from the moment the server stops taking requests, told to a watcher.
async fn health_follows_the_database_and_the_shutdown(backend: Backend) {
    use tonic_health::pb::health_check_response::ServingStatus;
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let serving = ServingStatus::Serving as i32;
    assert_eq!(health_of(&app, "").await.expect("overall"), serving);
    for service in ["loanledger.v1.LoanService", "loanledger.v1.RegistryService"] {
        assert_eq!(health_of(&app, service).await.expect(service), serving);
    }
    expect_code(
        health_of(&app, "loanledger.v1.NoSuchService").await.map(tonic::Response::new),
        Code::NotFound,
    );

    if backend == Backend::Postgres {
        app.allow_connections(false).await;
        health_becomes(&app, ServingStatus::NotServing).await;
        let refused = app
            .registry(&t.finance)
            .get_ledger(pb::GetLedgerRequest { ledger_id: LEDGER.into() })
            .await;
        expect_code(refused, Code::Unavailable);
        app.allow_connections(true).await;
        health_becomes(&app, ServingStatus::Serving).await;
        app.registry(&t.finance)
            .get_ledger(pb::GetLedgerRequest { ledger_id: LEDGER.into() })
            .await
            .expect("served again");
    }

    // A watcher is told NOT_SERVING once the server stops taking requests.
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel());
    let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
    let mut watch = health.watch(request).await.expect("Health/Watch").into_inner();
    let first = watch.message().await.expect("a status").expect("the first status");
    assert_eq!(first.status, serving);
    let told = tokio::spawn(async move {
        let next = watch.message().await;
        // Then the watch ends: it does not hold its connection, and the drain, open (a watch
        // left open outlives the test's server, which stops waiting at its drain timeout).
        let end = tokio::time::timeout(Duration::from_secs(20), watch.message()).await;
        (next, end.expect("the watch did not end with the server's stop"))
    });
    app.stop().await;
    let (next, then) = told.await.expect("the watcher");
    let next = next.expect("a status").expect("told before the end");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    assert!(matches!(then, Ok(None)), "the watch ends with the server's stop: {then:?}");
    app.finish().await;
}

/// A database a newer build migrated (here: a migration of a later number recorded) is refused
/// by `migrate` and `serve`, saying so and what to do (since 2026-12-07 sqlx's words: "migration
/// N was previously applied but is missing in the resolved migrations"); nothing is applied.
async fn a_database_of_a_newer_build_is_refused_as_such(backend: Backend) {
    let Some((mut app, _t, _id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.stop().await;
    app.execute_ddl(
        "insert into _sqlx_migrations (version, description, installed_on, success, checksum, \
         execution_time) select 99999, description, installed_on, success, checksum, \
         execution_time from _sqlx_migrations where version = \
         (select max(version) from _sqlx_migrations)",
    )
    .await
    .expect("a newer build's migration recorded");
    let url = app.database_url.clone();
    let dir = tempfile::tempdir().expect("a directory for a key");
    let key = dir.path().join("k.key");
    let key = key.to_str().expect("a UTF-8 path");
    let serve = ["serve", "--database-url", &url, "--listen", "127.0.0.1:0", "--signing-key", key];
    let serve = [&serve[..], &["--new-signing-key"]].concat();
    for command in [&["migrate", "--database-url", &url][..], &serve[..]] {
        let stderr = refused_start(command);
        assert!(
            stderr.contains("the database has migrations this build does not know (up to 99999")
                && stderr.contains("use the build that migrated it"),
            "{command:?}: {stderr}"
        );
    }
    app.execute_ddl("delete from _sqlx_migrations where version = 99999")
        .await
        .expect("the record taken away");
    app.finish().await;
}

/// A server whose build has migrations the database lacks does not apply them while another
/// server writes to it (a replacement of a newer build started before the old one stopped,
/// since 2026-12-07: it migrated the schema under the old server's writes): the start is
/// refused after a wait, naming what to do, and the migration is not applied; the first server
/// still writes. Once it has stopped (and the record is put back), the same start serves.
async fn a_database_is_not_migrated_under_a_server_writing_to_it(backend: Backend) {
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    // As a database of the build before this one: the record of its last migration set aside.
    let count = "select cast(count(*) as text) from _sqlx_migrations";
    let applied = app.db.query_texts(count).await.expect("the migrations applied");
    set_aside_last_migration(&app).await;
    let any_port = "127.0.0.1:0".parse().expect("an address");
    let started = std::time::Instant::now();
    let refused =
        loanledger::startup::Application::build(serve_settings(&app.database_url, any_port))
            .await
            .err()
            .expect("a start that would migrate under the writing server is refused");
    let message = format!("{refused:#}");
    assert!(message.contains("another server is writing to this database"), "{message}");
    assert!(message.contains("1 of this build's migrations are not applied"), "{message}");
    assert!(started.elapsed() >= Duration::from_secs(9), "it waited for a migrating server");
    let after = app.db.query_texts(count).await.expect("the migrations applied");
    assert_eq!(
        after[0].parse::<i64>().expect("a count") + 1,
        applied[0].parse::<i64>().expect("a count"),
        "not migrated"
    );
    // The first server still writes.
    app.repay(&t.bank, &id, "2021-02-01", 100_000).await;

    // Stopped, the database is this build's again (the record put back, as its migration
    // would have made it), and the same start serves.
    app.stop().await;
    put_back_last_migration(&app).await;
    let second = Beside::start(serve_settings(&app.database_url, any_port)).await;
    let mut loans = pb::loan_service_client::LoanServiceClient::with_interceptor(
        second.channel(),
        Bearer::new(&t.bank),
    );
    let read = loans
        .get_loan(pb::GetLoanRequest { loan_id: id.clone(), ..Default::default() })
        .await
        .expect("GetLoan");
    assert!(read.get_ref().principal_repaid_fen > 0 || read.get_ref().interest_paid_fen > 0);
    drop(loans);
    second.stop().await;
    app.finish().await;
}

/// Two servers on one database (a replacement started before the old one stopped, or a second
/// replica): the first writes; the second serves reads, and its writes wait for the first and
/// are answered `UNAVAILABLE`, naming why, with nothing posted, while the first runs (each
/// keeps loans and chain heads it read, which the other's writes would leave stale). Once the
/// first stops, the second takes the writes over: the same request posted once, the journal
/// verifying (since 2026-12-07).
async fn one_server_at_a_time_writes(backend: Backend) {
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let any_port = "127.0.0.1:0".parse().expect("an address");
    let second = Beside::start(serve_settings(&app.database_url, any_port)).await;
    let mut loans = pb::loan_service_client::LoanServiceClient::with_interceptor(
        second.channel(),
        Bearer::new(&t.bank),
    );
    let repay = |request_id: &str, value_date: &str| pb::RecordRepaymentRequest {
        request_id: request_id.into(),
        loan_id: id.clone(),
        value_date: value_date.into(),
        amount_fen: 100_000,
        subsidy_netted_fen: 0,
    };
    // Reads are served.
    let read = loans
        .get_loan(pb::GetLoanRequest { loan_id: id.clone(), ..Default::default() })
        .await
        .expect("GetLoan");
    assert_eq!(read.get_ref().principal_outstanding_fen, STANDARD_PRINCIPAL_FEN);
    let refused = loans.record_repayment(repay("second-1", "2021-02-01")).await;
    let status = refused.expect_err("a write through the second server");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("another server is writing"), "{status:?}");
    // The first still writes, and nothing of the second's request was posted.
    let first = app.repay(&t.bank, &id, "2021-02-02", 100_000).await;
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.last().map(|e| e.seq), entry(&first).seq.into());
    assert_eq!(journal.iter().filter(|e| e.kind == "loan.repaid").count(), 1);

    // The first stops: the second writes, its retry posted once. On PostgreSQL the second's
    // connections are cut first (a session timeout, a restart of the database): its writer's,
    // kept idle since its start without the claim, is opened again to take it.
    app.stop().await;
    if backend == Backend::Postgres {
        let cut = "select count(pg_terminate_backend(pid)) from pg_stat_activity \
                   where datname = current_database() and pid <> pg_backend_pid()";
        app.db.execute_raw(cut).await.expect("the second server's connections cut");
    }
    let taken = loans.record_repayment(repay("second-1", "2021-02-03")).await;
    let taken = taken.expect("the second server writes once the first has stopped").into_inner();
    let again = loans.record_repayment(repay("second-1", "2021-02-03")).await;
    assert_eq!(again.expect("the retry").into_inner(), taken);
    assert_eq!(entry(&taken).seq, entry(&first).seq + 1);
    let mut audit = pb::audit_service_client::AuditServiceClient::with_interceptor(
        second.channel(),
        Bearer::new(&t.auditor),
    );
    let request = pb::VerifyRequest { ledger_id: LEDGER.into(), ..Default::default() };
    // A read on a pool connection cut a moment ago is UNAVAILABLE, to be retried: each dead
    // connection of the pool may be handed out once (`connections_killed_under_the_service`).
    let mut verified = audit.verify(request.clone()).await;
    for _ in 0..10 {
        if !verified.as_ref().is_err_and(|s| s.code() == Code::Unavailable) {
            break;
        }
        verified = audit.verify(request.clone()).await;
    }
    assert!(verified.expect("Verify").get_ref().ok);
    second.stop().await;
    app.finish().await;
}

/// The SQLite database file, which holds every household's and borrower's name and ID number,
/// and its WAL are made readable and writable by their owner alone (0600), whatever the umask
/// (since 2026-12-07: SQLite made them as the umask left them, 0644 by default).
async fn the_sqlite_database_is_its_owners_alone(backend: Backend) {
    use std::os::unix::fs::PermissionsExt;
    if backend != Backend::Sqlite {
        return;
    }
    let Some((app, _t, _id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let path = app.database_url.trim_start_matches("sqlite://").to_string();
    for file in [path.clone(), format!("{path}-wal")] {
        let mode = std::fs::metadata(&file).expect(&file).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}: {mode:o}");
    }
    app.finish().await;
}

/// A database with no ledger but the LPR table's journal beyond its start (an operator's
/// SetLpr, whose checkpoints auditors may hold) is refused a start without its signing key
/// file, as one with ledgers is (since 2026-12-07: it counted ledgers only, and a new key was
/// made for it at info level).
async fn a_missing_signing_key_stops_a_database_with_the_lpr_tables_journal(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let entry = pb::LprEntry {
        effective_date: "2026-10-20".into(),
        tenor: pb::LprTenor::FiveYear as i32,
        rate: "0.034".into(),
    };
    let set = pb::SetLprRequest { request_id: rid("lpr"), entry: Some(entry) };
    app.registry(&app.operator).set_lpr(set).await.expect("SetLpr");
    app.stop().await;
    let dir = tempfile::tempdir().expect("a directory for the key");
    refused_for_a_missing_key(&app.database_url, &dir.path().join("signing.key"));
    app.finish().await;
}

/// `serve` on `url` with its signing key file `key_file` missing: refused, saying the database
/// has journals, and no key made. Its stderr.
fn refused_for_a_missing_key(url: &str, key_file: &std::path::Path) -> String {
    let key_arg = key_file.to_str().expect("a UTF-8 path");
    let listen = ["--listen", "127.0.0.1:0", "--signing-key", key_arg];
    let stderr = refused_start(&[&["serve", "--database-url", url][..], &listen].concat());
    assert!(stderr.contains("does not exist, and the database has journals"), "{stderr}");
    assert!(!key_file.exists(), "no key made");
    stderr
}

/// With `--log-format json`, a start that fails says why in a JSON line of the log, as an
/// error, and nothing else on stderr (since 2026-12-07: Rust printed `Error: …` as text beside
/// the log, which a collector reading JSON lines drops). A URL of another database is said to
/// be one (it read "stored data corrupt").
async fn a_failed_start_is_logged_as_json(backend: Backend) {
    if backend != Backend::Sqlite {
        return;
    }
    let args = ["--log-format", "json", "serve", "--database-url", "mysql://db/books"];
    let stderr = refused_start(&[&args[..], &["--listen", "127.0.0.1:0"]].concat());
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let last = lines.last().expect("a line");
    assert_eq!(last["level"], "ERROR", "{stderr}");
    let error = last["fields"]["error"].as_str().expect("the error");
    assert!(error.contains("must start with sqlite: or postgres:, got mysql"), "{error}");
    assert!(!error.contains("corrupt"), "{error}");
    // So is an argument that cannot be read (since 2026-12-07 clap's text), exit status 2.
    // And a command missing its subcommand (since 2026-12-08 as JSON: clap's help as text).
    for (args, said) in [
        (
            &["--log-format", "json", "serve", "--utc-offset", "8"][..],
            "invalid value '8' for '--utc-offset",
        ),
        (&["--log-format", "json", "token"][..], "Usage: loanledger token"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
            .args(args)
            .output()
            .expect("the binary runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line: serde_json::Value = serde_json::from_str(stderr.trim()).expect("one JSON line");
        assert_eq!(line["level"], "ERROR", "{stderr}");
        let error = line["fields"]["error"].as_str().expect("the error");
        assert!(error.contains(said), "{error}");
    }
}

/// Backup settings that would make every backup fail are warned about when the server starts
/// (since 2026-12-07: the first backup, a night later, found them, as INTERNAL): a backup
/// directory that cannot be written (`/proc`, not even by root), and on PostgreSQL a `pg_dump`
/// that cannot be run. The server serves all the same.
async fn backup_settings_that_would_fail_are_warned_at_start(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    app.stop().await;
    let args = ["--backup-dir", "/proc", "--pg-dump", "/nonexistent/pg_dump"];
    let server = ServerProcess::start_with(&app.database_url, &args);
    server.wait_for_log("the backup directory /proc cannot be written", Duration::from_secs(10));
    let pg_dump = "pg_dump /nonexistent/pg_dump cannot be run";
    if backend == Backend::Postgres {
        server.wait_for_log(pg_dump, Duration::from_secs(10));
    } else {
        let log = server.log.lock().expect("the log").join("\n");
        assert!(!log.contains(pg_dump), "SQLite's backups need no pg_dump: {log}");
    }
    drop(server);
    app.finish().await;
}

/// The service's PostgreSQL sessions ask the server for TCP keepalives (a probe after 60 s
/// idle, every 10 s, 6 unanswered end the session): a session whose client is gone is ended
/// within about two minutes, and the writer claim it held (an advisory lock) with it, where
/// the operating system's two hours left every write `UNAVAILABLE` (since 2026-12-07).
async fn postgres_sessions_are_kept_alive(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    if let loanledger::store::Db::Postgres(pool, _) = &app.db {
        let set: (String, String, String, String, bool) = sqlx::query_as(
            "select current_setting('tcp_keepalives_idle'), \
             current_setting('tcp_keepalives_interval'), current_setting('tcp_keepalives_count'), \
             current_setting('tcp_user_timeout'), inet_client_addr() is null",
        )
        .fetch_one(pool)
        .await
        .expect("the settings");
        // (Over a Unix socket PostgreSQL shows 0: it has no TCP to keep alive.)
        if !set.4 {
            let expected = ("60".into(), "10".into(), "6".into(), "120000".into(), false);
            assert_eq!(set, expected);
        }
    }
    app.finish().await;
}

/// The record of the database's last migration set aside, as a database of the build before
/// this one would be ([`put_back_last_migration`] undoes it).
async fn set_aside_last_migration(app: &TestApp) {
    app.execute_ddl(
        "create table saved_migration as select * from _sqlx_migrations \
         where version = (select max(version) from _sqlx_migrations); \
         delete from _sqlx_migrations where version = (select version from saved_migration)",
    )
    .await
    .expect("the last migration's record set aside");
}

/// The record [`set_aside_last_migration`] set aside, put back.
async fn put_back_last_migration(app: &TestApp) {
    app.execute_ddl(
        "insert into _sqlx_migrations select * from saved_migration; drop table saved_migration",
    )
    .await
    .expect("the record put back");
}
