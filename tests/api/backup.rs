//! The operator's backups (`RegistryService.Backup`): a copy of one instant, taken while the
//! service writes, that restores into a server serving the books as they were, with a manifest
//! whose hash and chain heads check against the copy and the checkpoints. Each scenario runs on
//! SQLite and on PostgreSQL (restored there with `pg_restore`).

use loanledger::api::pb;
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic_types::StatusExt;

use super::with_disbursed_loan;
use crate::common::*;

on_both_backends!(
    a_backup_restores_the_books_as_they_were,
    a_backup_taken_during_writes_is_of_one_instant,
    backup_refusals,
    the_backup_command,
    listed_backups_and_their_copies_checked,
    a_backup_directory_that_cannot_be_read_stops_no_other_write,
    a_backups_manifest_names_every_chain_of_the_journal,
);

fn backup_request(name: &str, request_id: &str) -> pb::BackupRequest {
    pb::BackupRequest { request_id: request_id.into(), name: name.into() }
}

/// The extension of a backup's copy on `backend`.
fn copy_ext(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "db",
        Backend::Postgres => "dump",
    }
}

async fn try_backup(
    app: &TestApp,
    token: &str,
    name: &str,
    request_id: &str,
) -> Result<tonic::Response<pb::BackupResponse>, tonic::Status> {
    app.registry(token).backup(backup_request(name, request_id)).await
}

async fn backup(app: &TestApp, token: &str, name: &str, request_id: &str) -> pb::BackupManifest {
    try_backup(app, token, name, request_id)
        .await
        .unwrap_or_else(|e| panic!("Backup {name}: {e:?}"))
        .into_inner()
        .backup
        .expect("Backup answers its manifest")
}

fn head_of<'a>(manifest: &'a pb::BackupManifest, ledger_id: &str) -> &'a pb::ChainHead {
    manifest
        .heads
        .iter()
        .find(|h| h.ledger_id == ledger_id)
        .unwrap_or_else(|| panic!("no head of {ledger_id} in {manifest:?}"))
}

/// A backup answers a manifest that checks against its copy (size, SHA-256), the journal (the
/// heads) and a checkpoint; writes after it are not in it; a retry copies nothing; restored,
/// it serves the books as they were and verifies.
async fn a_backup_restores_the_books_as_they_were(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 300_000).await;
    let before = app.get_loan(&t.bank, &id).await;
    let journal = app.journal(&t.auditor, LEDGER).await;
    let last = journal.last().expect("the seeded journal");

    let manifest = backup(&app, &t.operator, "nightly-2026-12-05", "backup-1").await;
    let expected_ext = copy_ext(backend);
    assert_eq!(manifest.name, "nightly-2026-12-05");
    assert_eq!(manifest.request_id, "backup-1");
    assert_eq!(manifest.backend, backend.name());
    let path = std::path::PathBuf::from(&manifest.path);
    assert_eq!(path, app.backups.path().join(format!("nightly-2026-12-05.{expected_ext}")));
    let bytes = std::fs::read(&path).expect("the copy is where the manifest says");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("the copy").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the copy is its owner's alone");
    }
    assert_eq!(manifest.size_bytes, bytes.len() as u64);
    assert_eq!(manifest.sha256, hex::encode(Sha256::digest(&bytes)));
    assert!(manifest.taken_at.is_some());
    // The manifest is kept beside the copy.
    let kept = std::fs::read_to_string(app.backups.path().join("nightly-2026-12-05.json"))
        .expect("the manifest file");
    assert!(kept.contains(&manifest.sha256), "{kept}");
    // The ledger's chain ends where the journal did, and the LPR table's chain is in it too.
    let head = head_of(&manifest, LEDGER);
    assert_eq!((head.seq as u64, head.hash.as_str()), (last.seq, last.hash.as_str()));
    assert!(head_of(&manifest, "lpr").seq >= 1);
    let ledgers: Vec<&str> = manifest.heads.iter().map(|h| h.ledger_id.as_str()).collect();
    assert_eq!(ledgers, ["450121", "lpr"], "in ledger id order");
    // A checkpoint of that seq signs the same head.
    let checkpoint = app
        .audit(&t.auditor)
        .get_checkpoint(pb::GetCheckpointRequest { ledger_id: LEDGER.into(), tree_size: last.seq })
        .await
        .expect("GetCheckpoint")
        .into_inner();
    assert_eq!(checkpoint.head_hash, head.hash);

    // Written after the backup: not in it.
    app.repay(&t.bank, &id, "2021-04-20", 100_000).await;
    let after = app.get_loan(&t.bank, &id).await;
    assert_ne!(after.principal_outstanding_fen, before.principal_outstanding_fen);

    // A retry answers the same manifest and copies nothing; the name taken by another request
    // is ALREADY_EXISTS, and the copy is left as it was.
    let again = backup(&app, &t.operator, "nightly-2026-12-05", "backup-1").await;
    assert_eq!(again, manifest);
    let taken = expect_code(
        try_backup(&app, &t.operator, "nightly-2026-12-05", "backup-2").await,
        Code::AlreadyExists,
    );
    assert!(taken.message().contains("backup nightly-2026-12-05"), "{taken:?}");
    assert_eq!(taken.get_details_error_info().expect("ErrorInfo").reason, "BACKUP_EXISTS");
    assert_eq!(std::fs::read(&path).expect("the copy"), bytes);
    // The request id of that backup, for another name: ALREADY_EXISTS, REQUEST_ID_REUSED.
    let reused = expect_code(
        try_backup(&app, &t.operator, "another-name", "backup-1").await,
        Code::AlreadyExists,
    );
    assert_eq!(reused.get_details_error_info().expect("ErrorInfo").reason, "REQUEST_ID_REUSED");
    // An operator's request id is the operator's whatever the call: used by one kind of write,
    // it is REQUEST_ID_REUSED for every other (since 2026-12-07 each kind kept its own, and an
    // id of one ran another), and nothing is made.
    let mut registry = app.registry(&t.operator);
    let token = |request_id: &str| pb::CreateTokenRequest {
        request_id: request_id.into(),
        role: pb::TokenRole::Auditor as i32,
        org: LEDGER.into(),
        valid_days: 0,
    };
    let ledger = |request_id: &str| pb::CreateLedgerRequest {
        request_id: request_id.into(),
        ledger_id: "450199".into(),
        name: "another county".into(),
    };
    let reused_by = |s: Result<tonic::Response<()>, tonic::Status>| {
        let s = expect_code(s, Code::AlreadyExists);
        assert_eq!(s.get_details_error_info().expect("ErrorInfo").reason, "REQUEST_ID_REUSED");
    };
    let tokens_before = registry.list_tokens(pb::ListTokensRequest::default()).await;
    let tokens_before = tokens_before.expect("ListTokens").into_inner().tokens.len();
    reused_by(registry.create_token(token("backup-1")).await.map(|r| r.map(|_| ())));
    reused_by(registry.create_ledger(ledger("backup-1")).await.map(|r| r.map(|_| ())));
    let made = registry.create_token(token("op-token")).await.expect("a token").into_inner();
    let made_id = made.token.expect("the token").token_id;
    reused_by(
        try_backup(&app, &t.operator, "by-a-token-id", "op-token").await.map(|r| r.map(|_| ())),
    );
    let revoke = |request_id: &str| pb::RevokeTokenRequest {
        request_id: request_id.into(),
        token_id: made_id.clone(),
    };
    reused_by(registry.revoke_token(revoke("op-token")).await.map(|r| r.map(|_| ())));
    reused_by(registry.create_ledger(ledger("op-token")).await.map(|r| r.map(|_| ())));
    registry.create_ledger(ledger("op-ledger")).await.expect("a ledger");
    reused_by(registry.create_token(token("op-ledger")).await.map(|r| r.map(|_| ())));
    reused_by(registry.revoke_token(revoke("op-ledger")).await.map(|r| r.map(|_| ())));
    registry.revoke_token(revoke("op-revoke")).await.expect("revoked");
    reused_by(registry.create_token(token("op-revoke")).await.map(|r| r.map(|_| ())));
    let tokens_after = registry.list_tokens(pb::ListTokensRequest::default()).await;
    let tokens_after = tokens_after.expect("ListTokens").into_inner().tokens.len();
    assert_eq!(tokens_after, tokens_before + 1, "one token made");
    let mut files: Vec<String> = std::fs::read_dir(app.backups.path())
        .expect("the backup directory")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            ".loanledger-backup.lock".to_string(),
            format!("nightly-2026-12-05.{expected_ext}"),
            "nightly-2026-12-05.json".to_string()
        ],
        "the copy and its manifest, nothing half-written"
    );

    // Restored: the books as they were at the backup, verified, the head the manifest's.
    let restored = app.restore(&manifest.path).await;
    assert_eq!(restored.get_loan(&t.bank, &id).await, before);
    let verified = restored.verify(&t.auditor).await;
    assert!(verified.ok, "{:?}", verified.problems);
    assert_eq!((verified.head_seq, verified.head_hash.as_str()), (last.seq, head.hash.as_str()));
    // The restored server takes the later repayment as a new one and goes on from there.
    restored.repay(&t.bank, &id, "2021-04-20", 100_000).await;
    assert_eq!(
        restored.get_loan(&t.bank, &id).await.principal_outstanding_fen,
        after.principal_outstanding_fen
    );
    assert!(restored.verify(&t.auditor).await.ok);
    restored.finish().await;
    // The original still verifies after its backup.
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// Households registered by four clients while a backup is taken: the restored copy holds
/// exactly those whose transaction is at or before the manifest's head, and verifies.
async fn a_backup_taken_during_writes_is_of_one_instant(backend: Backend) {
    const CLIENTS: usize = 4;
    const EACH: usize = 25;
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let seeded = app.journal(&t.auditor, LEDGER).await.len();
    let mut writers = Vec::new();
    for c in 0..CLIENTS {
        let mut registry = app.registry(&t.finance);
        writers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let household = format!("HB{c}{i:02}");
                let answer = registry
                    .register_household(household_request(&household, "19800517"))
                    .await
                    .expect("RegisterHousehold")
                    .into_inner();
                seqs.push((household, answer.entry.expect("its journal entry").seq));
            }
            seqs
        }));
    }
    // Once some of them are written.
    while app.journal(&t.auditor, LEDGER).await.len() < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let manifest = backup(&app, &t.operator, "during-writes", "backup-during").await;
    let mut registered = Vec::new();
    for w in writers {
        registered.extend(w.await.expect("a writer"));
    }
    let head = head_of(&manifest, LEDGER).clone();
    let restored = app.restore(&manifest.path).await;
    let verified = restored.verify(&t.auditor).await;
    assert!(verified.ok, "{:?}", verified.problems);
    assert_eq!(
        (verified.head_seq as i64, verified.head_hash.as_str()),
        (head.seq, head.hash.as_str())
    );
    let mut registry = restored.registry(&t.finance);
    let (mut inside, mut outside) = (0, 0);
    for (household, seq) in &registered {
        let found = registry
            .get_household(pb::GetHouseholdRequest { household_id: household.clone() })
            .await;
        if (*seq as i64) <= head.seq {
            found.unwrap_or_else(|e| panic!("{household} (seq {seq}) missing: {e:?}"));
            inside += 1;
        } else {
            expect_code(found, Code::NotFound);
            outside += 1;
        }
    }
    assert_eq!(inside + outside, CLIENTS * EACH);
    assert!(inside >= 20 - seeded, "taken after 20 transactions: {inside} inside");
    restored.finish().await;
    app.finish().await;
}

/// Only the operator takes backups; a name must name a file of the backup directory; a
/// request needs its id; a server started without a backup directory says so.
async fn backup_refusals(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    for token in [&t.bank, &t.finance, &t.auditor] {
        let denied = expect_code(
            try_backup(&app, token, "mine", &rid("backup")).await,
            Code::PermissionDenied,
        );
        assert!(denied.message().contains("only the operator may"), "{denied:?}");
    }
    for name in ["", "../escape", "a/b", ".hidden", "two words", &"x".repeat(65)] {
        let bad = expect_code(
            try_backup(&app, &t.operator, name, &rid("backup")).await,
            Code::InvalidArgument,
        );
        assert!(bad.message().starts_with("name "), "{name:?}: {bad:?}");
    }
    let no_id = expect_code(try_backup(&app, &t.operator, "fine", "").await, Code::InvalidArgument);
    assert!(no_id.message().contains("request_id"), "{no_id:?}");
    let files = std::fs::read_dir(app.backups.path()).expect("the backup directory").count();
    assert_eq!(files, 0, "nothing written by a refused backup");
    // A file where the copy would go, without a manifest, is never replaced: with the backup
    // directory the database's own, a backup named after the database would be the database.
    let ext = copy_ext(backend);
    let precious = app.backups.path().join(format!("precious.{ext}"));
    std::fs::write(&precious, b"not a backup").expect("a file");
    let kept = expect_code(
        try_backup(&app, &t.operator, "precious", &rid("backup")).await,
        Code::AlreadyExists,
    );
    assert!(kept.message().contains(&precious.display().to_string()), "{kept:?}");
    assert_eq!(kept.get_details_error_info().expect("ErrorInfo").reason, "FILE_EXISTS");
    assert_eq!(std::fs::read(&precious).expect("the file"), b"not a backup");
    assert!(!app.backups.path().join("precious.json").exists());
    // Nor is a NAME.json that is not a manifest (another program's).
    std::fs::write(app.backups.path().join("package.json"), b"{}").expect("a file");
    let kept = expect_code(
        try_backup(&app, &t.operator, "package", &rid("backup")).await,
        Code::AlreadyExists,
    );
    assert!(kept.message().contains("package.json"), "{kept:?}");
    // A copy in place whose manifest still waits beside it, describing it (a backup stopped
    // between its two renames): the retry of that request finishes it and answers it; a
    // file the waiting manifest does not describe is not touched.
    let stopped = app.backups.path().join(format!("stopped.{ext}"));
    std::fs::write(&stopped, b"half").expect("a copy");
    let waiting = |sha256: &str| {
        serde_json::json!({
            "name": "stopped", "request_id": "r-0", "backend": "x",
            "file": format!("stopped.{ext}"), "taken_at_us": 0, "size_bytes": 4,
            "sha256": sha256, "heads": []
        })
        .to_string()
    };
    let pending = app.backups.path().join("stopped.json.partial");
    std::fs::write(&pending, waiting("00")).expect("a stale manifest waiting");
    let foreign =
        expect_code(try_backup(&app, &t.operator, "stopped", "r-0").await, Code::AlreadyExists);
    assert!(foreign.message().contains(&stopped.display().to_string()), "{foreign:?}");
    assert_eq!(std::fs::read(&stopped).expect("the file"), b"half");
    std::fs::write(&pending, waiting(&hex::encode(Sha256::digest(b"half"))))
        .expect("its manifest waiting");
    let finished = backup(&app, &t.operator, "stopped", "r-0").await;
    assert_eq!((finished.request_id.as_str(), finished.size_bytes), ("r-0", 4));
    assert!(!pending.exists() && app.backups.path().join("stopped.json").exists());
    let again =
        expect_code(try_backup(&app, &t.operator, "stopped", "r-1").await, Code::AlreadyExists);
    assert!(again.message().contains("backup stopped"), "{again:?}");

    // Another backup under way in the directory (another process's: its lock held): this one
    // waits for it, then goes ahead; waiting too long, it answers UNAVAILABLE to retry.
    let lock = std::fs::File::create(app.backups.path().join(".loanledger-backup.lock"))
        .expect("the lock file");
    lock.lock().expect("the lock");
    let mut registry = app.registry(&t.operator);
    let waiter =
        tokio::spawn(async move { registry.backup(backup_request("waited", "w-1")).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "it waits for the backup under way");
    lock.unlock().expect("released");
    waiter.await.expect("the call").expect("the backup, once the other is done");
    lock.lock().expect("the lock again");
    let busy = expect_code(try_backup(&app, &t.operator, "busy", "b-1").await, Code::Unavailable);
    assert!(busy.message().contains("another backup is being taken"), "{busy:?}");
    drop(lock);

    // A server without a backup directory (the bench's) refuses with a reason.
    let any_port = "127.0.0.1:0".parse().expect("an address");
    let bare = Beside::start(serve_settings(&app.database_url, any_port)).await;
    let mut registry = pb::registry_service_client::RegistryServiceClient::with_interceptor(
        bare.channel(),
        Bearer::new(&t.operator),
    );
    expect_refused(
        registry.backup(backup_request("fine", &rid("backup"))).await,
        "BACKUP_NOT_CONFIGURED",
    );
    bare.stop().await;

    // A copy that fails (here pg_dump, a program that fails at once) leaves nothing in the
    // directory but its lock file: no half-made copy keeping the space taken (since
    // 2026-12-07). On SQLite the copy is SQLite's own `VACUUM INTO`, which a test cannot make
    // fail half-way.
    if backend == Backend::Postgres {
        let dir = tempfile::tempdir().expect("a backup directory");
        let settings = loanledger::startup::Settings {
            backups: Some(loanledger::app::backup::BackupSettings {
                dir: dir.path().to_path_buf(),
                pg_dump: "/bin/false".into(),
            }),
            ..serve_settings(&app.database_url, any_port)
        };
        let failing = Beside::start(settings).await;
        let mut registry = pb::registry_service_client::RegistryServiceClient::with_interceptor(
            failing.channel(),
            Bearer::new(&t.operator),
        );
        let failed = registry.backup(backup_request("nightly", &rid("backup"))).await;
        expect_code(failed, Code::Internal);
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("the backup directory")
            .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, [".loanledger-backup.lock"], "nothing of the failed copy is left");
        failing.stop().await;
    }
    app.finish().await;
}

/// `loanledger backup NAME` takes the same backup beside the running server, prints its
/// manifest, and run again prints the same one.
async fn the_backup_command(backend: Backend) {
    let Some((app, t, _)) = with_disbursed_loan(backend).await else {
        return;
    };
    let last = app.journal(&t.auditor, LEDGER).await.pop().expect("the seeded journal");
    let dir = tempfile::tempdir().expect("a directory");
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
            .args(["backup", "from-the-cli", "--backup-dir"])
            .arg(dir.path())
            .arg("--pg-dump")
            .arg(pg_program("pg_dump"))
            .args(["--database-url", &app.database_url])
            .output()
            .expect("the binary runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("the manifest's JSON")
    };
    let manifest = run();
    let file = dir.path().join(manifest["file"].as_str().expect("file"));
    let bytes = std::fs::read(&file).expect("the copy");
    assert_eq!(manifest["sha256"], hex::encode(Sha256::digest(&bytes)));
    let heads = manifest["heads"].as_array().expect("heads");
    assert!(
        heads.iter().any(|h| h["ledger_id"] == LEDGER
            && h["seq"] == last.seq
            && h["hash"] == last.hash.as_str()),
        "{manifest}"
    );
    assert_eq!(run(), manifest, "run again, the backup taken before");
    let restored = app.restore(file.to_str().expect("a UTF-8 path")).await;
    assert!(restored.verify(&t.auditor).await.ok);
    restored.finish().await;
    app.finish().await;
}

async fn list_backups(
    app: &TestApp,
    token: &str,
    page_size: u32,
    page_token: &str,
    check_copies: bool,
) -> pb::ListBackupsResponse {
    app.registry(token)
        .list_backups(pb::ListBackupsRequest {
            page_size,
            page_token: page_token.into(),
            check_copies,
        })
        .await
        .expect("ListBackups")
        .into_inner()
}

fn states(listed: &pb::ListBackupsResponse) -> Vec<(String, pb::BackupCopyState)> {
    listed.backups.iter().map(|b| (b.name.clone(), b.copy_state())).collect()
}

/// ListBackups pages through the backups by name with their manifests; checked, it tells an
/// intact copy from one changed since, one missing and a manifest that is not one.
async fn listed_backups_and_their_copies_checked(backend: Backend) {
    use pb::BackupCopyState::{Altered, Intact, ManifestUnreadable, Missing, Unspecified};
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    // Nothing yet (the directory not even made).
    std::fs::remove_dir(app.backups.path()).expect("the empty backup directory");
    assert!(list_backups(&app, &t.operator, 0, "", true).await.backups.is_empty());
    // The same request twice at once: one copy, both answered it.
    let (one, two) = tokio::join!(
        backup(&app, &t.operator, "c-third", "backup-c"),
        backup(&app, &t.operator, "c-third", "backup-c")
    );
    assert_eq!(one, two);
    let mut taken = vec![one];
    for name in ["a-first", "b-second"] {
        taken.push(backup(&app, &t.operator, name, &rid("backup")).await);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(app.backups.path()).expect("made").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "a backup directory made is its owner's alone");
    }
    let all = list_backups(&app, &t.operator, 0, "", false).await;
    assert_eq!(
        states(&all),
        [
            ("a-first".into(), Unspecified),
            ("b-second".into(), Unspecified),
            ("c-third".into(), Unspecified)
        ]
    );
    assert_eq!(all.backups[0].manifest.as_ref(), Some(&taken[1]));
    assert!(all.next_page_token.is_empty());
    // A page at a time.
    let first = list_backups(&app, &t.operator, 2, "", false).await;
    assert_eq!(first.backups.len(), 2);
    let rest = list_backups(&app, &t.operator, 2, &first.next_page_token, false).await;
    assert_eq!(states(&rest), [("c-third".into(), Unspecified)]);
    assert!(rest.next_page_token.is_empty());
    // A page token of another listing (ListTokens'), or one made up, is refused naming
    // page_token.
    let tokens = app
        .registry(&t.operator)
        .list_tokens(pb::ListTokensRequest { page_size: 1, page_token: String::new() })
        .await
        .expect("ListTokens")
        .into_inner();
    for page_token in [tokens.next_page_token.as_str(), "made-up"] {
        let refused = expect_code(
            app.registry(&t.operator)
                .list_backups(pb::ListBackupsRequest {
                    page_size: 2,
                    page_token: page_token.into(),
                    check_copies: false,
                })
                .await,
            Code::InvalidArgument,
        );
        assert!(refused.message().starts_with("page_token "), "{refused:?}");
    }

    // Checked: all intact; then one copy changed, one removed, one manifest garbled.
    let checked = list_backups(&app, &t.operator, 0, "", true).await;
    assert!(checked.backups.iter().all(|b| b.copy_state() == Intact), "{checked:?}");
    let path_of = |name: &str| {
        let b = taken.iter().find(|b| b.name == name).expect("taken");
        std::path::PathBuf::from(&b.path)
    };
    let mut bytes = std::fs::read(path_of("a-first")).expect("the copy");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(path_of("a-first"), &bytes).expect("a byte changed");
    std::fs::remove_file(path_of("b-second")).expect("a copy removed");
    std::fs::write(app.backups.path().join("c-third.json"), b"{ not a manifest")
        .expect("a manifest garbled");
    let checked = list_backups(&app, &t.operator, 0, "", true).await;
    assert_eq!(
        states(&checked),
        [
            ("a-first".into(), Altered),
            ("b-second".into(), Missing),
            ("c-third".into(), ManifestUnreadable)
        ]
    );
    assert!(checked.backups[2].manifest.is_none());
    // A copy that cannot be read (a directory in its place, which even root cannot read as a
    // file) is marked, the others listed (until 2026-12-07 the whole page was INTERNAL).
    std::fs::create_dir(path_of("b-second")).expect("a directory in the copy's place");
    let checked = list_backups(&app, &t.operator, 0, "", true).await;
    assert_eq!(
        states(&checked),
        [
            ("a-first".into(), Altered),
            ("b-second".into(), pb::BackupCopyState::Unreadable),
            ("c-third".into(), ManifestUnreadable)
        ]
    );
    // Only the operator lists them.
    expect_code(
        app.registry(&t.auditor)
            .list_backups(pb::ListBackupsRequest {
                page_size: 0,
                page_token: String::new(),
                check_copies: false,
            })
            .await,
        Code::PermissionDenied,
    );
    app.finish().await;
}

/// A backup directory that cannot be read (a file in its place) fails the backups, but not the
/// operator's other writes, whose request ids are checked against the backups' too: a leaked
/// token is revoked whatever the backup directory's state (until 2026-12-07 `CreateToken`,
/// `RevokeToken`, `CreateLedger`, `RegisterBank` and `SetLpr` were all `INTERNAL` then).
async fn a_backup_directory_that_cannot_be_read_stops_no_other_write(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    std::fs::remove_dir(app.backups.path()).expect("the empty backup directory");
    std::fs::write(app.backups.path(), b"not a directory").expect("a file in its place");
    let mut registry = app.registry(&t.operator);
    let made = registry
        .create_token(pb::CreateTokenRequest {
            request_id: rid("t"),
            role: pb::TokenRole::Bank as i32,
            org: BANK.into(),
            valid_days: 0,
        })
        .await
        .expect("CreateToken")
        .into_inner();
    let token_id = made.token.expect("the token").token_id;
    let revoking = pb::RevokeTokenRequest { request_id: rid("r"), token_id };
    let revoked = registry.revoke_token(revoking).await.expect("RevokeToken").into_inner();
    assert!(revoked.token.expect("the token").revoked_at.is_some());
    app.register_bank(&t.operator, "B9").await;
    let refused = try_backup(&app, &t.operator, "nightly", &rid("backup")).await;
    assert!(refused.is_err(), "a backup into a file: {refused:?}");
    std::fs::remove_file(app.backups.path()).expect("the file");
    app.finish().await;
}

/// The manifest's heads are the journal's chains, a ledger whose row is gone included (its
/// journal is still served and verified: a restored copy is tied to its auditors' checkpoints
/// by these heads). Until 2026-12-07 they came from the `ledger` table, and such a chain was
/// left out.
async fn a_backups_manifest_names_every_chain_of_the_journal(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    app.create_ledger(&t.operator, "450188", "Another county").await;
    // (Its policy versions refer to the row: they go first.)
    let versions = "delete from policy_version where ledger_id = '450188'";
    app.behind_the_back("policy_version", versions).await.expect("its versions deleted");
    app.db.execute_raw("delete from ledger where ledger_id = '450188'").await.expect("deleted");
    let left = app.db.query_texts("select ledger_id from ledger order by ledger_id").await;
    assert_eq!(left.expect("the ledgers"), [LEDGER], "its row is gone");
    let manifest = backup(&app, &t.operator, "nightly", &rid("backup")).await;
    let chains: Vec<&str> = manifest.heads.iter().map(|h| h.ledger_id.as_str()).collect();
    assert_eq!(chains, ["450121", "450188", "lpr"], "{manifest:?}");
    assert_eq!(head_of(&manifest, "450188").seq, 1);
    app.finish().await;
}
