//! Signed checkpoints and their proofs, checked as an auditor checks them: the Merkle root
//! recomputed here from the journal's hashes (themselves recomputed from the transactions'
//! content), the signature checked with the public key, the proofs with RFC 6962's rules; a
//! journal rewritten behind the service's back no longer agrees with a checkpoint held from
//! before. Each scenario runs on SQLite and on PostgreSQL.

use ed25519_dalek::{Signature, VerifyingKey};
use loanledger::api::pb;
use loanledger::app::auth::Role;
use loanledger::ledger::merkle::{consistency_holds, inclusion_holds};
use sha2::{Digest, Sha256};
use tonic::Code;

use super::with_disbursed_loan;
use crate::common::*;

on_both_backends!(
    checkpoints_cover_the_journal_and_prove_it,
    checkpoint_calls_refuse_what_they_cannot_answer,
    a_journal_rewritten_contradicts_the_checkpoint_held,
    nothing_is_signed_over_a_broken_chain,
    a_key_signs_no_journal_shorter_than_it_signed,
    an_auditor_checks_the_answers_offline,
);

type Hash = [u8; 32];

fn hash(text: &str) -> Hash {
    hex::decode(text).expect("hex").try_into().expect("32 bytes")
}

/// RFC 6962's Merkle tree hash by its recursive definition, written here apart from the
/// server's code.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest(b"").into(),
        1 => Sha256::new().chain_update([0u8]).chain_update(leaves[0]).finalize().into(),
        n => {
            let k = n.next_power_of_two() / 2;
            let (l, r) = (mth(&leaves[..k]), mth(&leaves[k..]));
            Sha256::new().chain_update([1u8]).chain_update(l).chain_update(r).finalize().into()
        }
    }
}

/// Checks `c` as an auditor does: signed by `key` over the text the proto documents, of the
/// journal `journal` through its size (root and head recomputed here).
#[track_caller]
fn check_checkpoint(
    c: &pb::SignedCheckpoint,
    key: &VerifyingKey,
    journal: &[pb::JournalTransaction],
) {
    let size = c.tree_size as usize;
    assert!(size >= 1 && size <= journal.len(), "{c:?}");
    let text = format!(
        "loanledger checkpoint v1\nledger {}\nsize {}\nroot {}\nhead {}\n",
        c.ledger_id, c.tree_size, c.root_hash, c.head_hash
    );
    assert_eq!(c.signed_text, text);
    let signature =
        Signature::from_slice(&hex::decode(&c.signature).expect("hex")).expect("64 bytes");
    key.verify_strict(text.as_bytes(), &signature).expect("signed by the pinned key");
    assert_eq!(c.public_key, hex::encode(key.as_bytes()));
    let leaves: Vec<Hash> = journal[..size].iter().map(|e| hash(&e.hash)).collect();
    assert_eq!(c.root_hash, hex::encode(mth(&leaves)), "the root of seq 1 to {size}");
    assert_eq!(c.head_hash, journal[size - 1].hash);
}

fn checkpoint_of(
    app: &TestApp,
    token: &str,
    ledger_id: &str,
    tree_size: u64,
) -> impl std::future::Future<Output = Result<tonic::Response<pb::SignedCheckpoint>, tonic::Status>>
{
    let mut audit = app.audit(token);
    let request = pb::GetCheckpointRequest { ledger_id: ledger_id.into(), tree_size };
    async move { audit.get_checkpoint(request).await }
}

async fn checkpoint(app: &TestApp, token: &str, tree_size: u64) -> pb::SignedCheckpoint {
    checkpoint_of(app, token, LEDGER, tree_size).await.expect("GetCheckpoint").into_inner()
}

async fn inclusion(
    app: &TestApp,
    token: &str,
    seq: u64,
    tree_size: u64,
) -> Result<tonic::Response<pb::InclusionProof>, tonic::Status> {
    let request = pb::GetInclusionProofRequest { ledger_id: LEDGER.into(), seq, tree_size };
    app.audit(token).get_inclusion_proof(request).await
}

async fn consistency(
    app: &TestApp,
    token: &str,
    from_size: u64,
    to_size: u64,
) -> Result<tonic::Response<pb::ConsistencyProof>, tonic::Status> {
    let request = pb::GetConsistencyProofRequest { ledger_id: LEDGER.into(), from_size, to_size };
    app.audit(token).get_consistency_proof(request).await
}

/// A checkpoint's JSON as grpcurl prints it (proto3 JSON: lowerCamelCase, 64-bit integers as
/// strings).
fn checkpoint_json(c: &pb::SignedCheckpoint) -> serde_json::Value {
    serde_json::json!({
        "ledgerId": c.ledger_id,
        "treeSize": c.tree_size.to_string(),
        "rootHash": c.root_hash,
        "headHash": c.head_hash,
        "signature": c.signature,
        "publicKey": c.public_key,
        "signedText": c.signed_text,
    })
}

/// grpcurl's JSON leaves an empty list out.
fn with_list(mut v: serde_json::Value, name: &str, list: &[String]) -> serde_json::Value {
    if !list.is_empty() {
        v[name] = serde_json::json!(list);
    }
    v
}

fn inclusion_json(p: &pb::InclusionProof) -> serde_json::Value {
    let v = serde_json::json!({
        "checkpoint": checkpoint_json(p.checkpoint.as_ref().expect("its checkpoint")),
        "seq": p.seq.to_string(),
        "transactionHash": p.transaction_hash,
    });
    with_list(v, "auditPath", &p.audit_path)
}

fn consistency_json(p: &pb::ConsistencyProof) -> serde_json::Value {
    let v = serde_json::json!({
        "from": checkpoint_json(p.from.as_ref().expect("from")),
        "to": checkpoint_json(p.to.as_ref().expect("to")),
    });
    with_list(v, "path", &p.path)
}

/// `loanledger check` on `answer` with `args`: its exit status and output.
fn check_offline(answer: &serde_json::Value, args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("answer.json");
    std::fs::write(&file, answer.to_string()).expect("the answer written");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
        .arg("check")
        .args(args)
        .arg(&file)
        .output()
        .expect("loanledger check runs");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A checkpoint saved as JSON, for `check --held`.
fn saved(dir: &tempfile::TempDir, c: &pb::SignedCheckpoint) -> String {
    let file = dir.path().join(format!("held-{}.json", c.tree_size));
    std::fs::write(&file, checkpoint_json(c).to_string()).expect("the checkpoint saved");
    file.to_str().expect("a UTF-8 path").to_string()
}

fn path(hashes: &[String]) -> Vec<Hash> {
    hashes.iter().map(|h| hash(h)).collect()
}

/// The key every checkpoint of this server is signed with, as an auditor pins it once (here:
/// from the first answer; every later one must carry the same).
fn pinned(c: &pb::SignedCheckpoint) -> VerifyingKey {
    let bytes: [u8; 32] = hex::decode(&c.public_key).expect("hex").try_into().expect("32 bytes");
    VerifyingKey::from_bytes(&bytes).expect("a public key")
}

/// A checkpoint at the head and at any earlier size covers exactly that prefix of the journal
/// and is signed; asked again it is the same, signature and all. Every transaction is proved in
/// it, and an earlier checkpoint proved a prefix of a later one after more writes; the finance
/// office gets the same answers as the auditor, and the LPR table's chain has checkpoints too.
async fn checkpoints_cover_the_journal_and_prove_it(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 100_000).await;
    let journal = app.journal(&t.auditor, LEDGER).await;
    check_chain(&journal);
    let n = journal.len() as u64;

    let head = checkpoint(&app, &t.auditor, 0).await;
    let key = pinned(&head);
    assert_eq!((head.ledger_id.as_str(), head.tree_size), (LEDGER, n));
    check_checkpoint(&head, &key, &journal);
    assert_eq!(checkpoint(&app, &t.auditor, n).await, head, "the head's, by its size");
    assert_eq!(checkpoint(&app, &t.finance, 0).await, head, "the finance office's too");
    let early = checkpoint(&app, &t.auditor, 2).await;
    check_checkpoint(&early, &key, &journal);
    assert_eq!(checkpoint(&app, &t.auditor, 2).await, early, "deterministic");

    // Each transaction is in the head's checkpoint, at its own seq alone.
    for e in &journal {
        let proof = inclusion(&app, &t.auditor, e.seq, 0).await.expect("GetInclusionProof");
        let proof = proof.into_inner();
        assert_eq!(proof.checkpoint.as_ref(), Some(&head));
        assert_eq!((proof.seq, proof.transaction_hash.as_str()), (e.seq, e.hash.as_str()));
        let (root, leaf, audit_path) =
            (hash(&head.root_hash), hash(&e.hash), path(&proof.audit_path));
        assert!(inclusion_holds(&root, n, e.seq, &leaf, &audit_path), "seq {}", e.seq);
        let elsewhere = e.seq % n + 1;
        assert!(!inclusion_holds(&root, n, elsewhere, &leaf, &audit_path), "seq {}", e.seq);
    }
    // And in an earlier checkpoint.
    let proof = inclusion(&app, &t.auditor, 1, 2).await.expect("GetInclusionProof").into_inner();
    assert_eq!(proof.checkpoint.as_ref(), Some(&early));
    let root = hash(&early.root_hash);
    assert!(inclusion_holds(&root, 2, 1, &hash(&journal[0].hash), &path(&proof.audit_path)));

    // Written on: the checkpoint held is a prefix of the new head's.
    app.repay(&t.bank, &id, "2021-06-20", 100_000).await;
    app.repay(&t.bank, &id, "2021-09-20", 100_000).await;
    let journal = app.journal(&t.auditor, LEDGER).await;
    let later = checkpoint(&app, &t.auditor, 0).await;
    assert_eq!(later.tree_size, n + 2);
    check_checkpoint(&later, &key, &journal);
    for (held, held_size) in [(&head, n), (&early, 2)] {
        let proof = consistency(&app, &t.auditor, held_size, 0).await.expect("GetConsistencyProof");
        let proof = proof.into_inner();
        assert_eq!(proof.from.as_ref(), Some(held), "the checkpoint held, as it was signed");
        assert_eq!(proof.to.as_ref(), Some(&later));
        let steps = path(&proof.path);
        let (old, new) = (hash(&held.root_hash), hash(&later.root_hash));
        assert!(consistency_holds(held_size, &old, n + 2, &new, &steps), "from {held_size}");
        assert!(!consistency_holds(held_size, &new, n + 2, &new, &steps));
    }
    let same = consistency(&app, &t.auditor, n + 2, n + 2).await.expect("equal sizes").into_inner();
    assert!(same.path.is_empty());
    assert_eq!((same.from.as_ref(), same.to.as_ref()), (Some(&later), Some(&later)));

    // The LPR table's chain: its checkpoint, signed with the same key.
    let lpr = app.journal(&t.auditor, "lpr").await;
    let c = checkpoint_of(&app, &t.auditor, "lpr", 0).await.expect("the lpr chain's").into_inner();
    check_checkpoint(&c, &key, &lpr);
    app.finish().await;
}

/// Sizes and seqs outside the journal are refused naming the field; who may not read a
/// ledger's books gets PERMISSION_DENIED (banks, the operator, another ledger's auditor), an
/// unknown ledger NOT_FOUND.
async fn checkpoint_calls_refuse_what_they_cannot_answer(backend: Backend) {
    let Some((app, t, _)) = with_disbursed_loan(backend).await else {
        return;
    };
    let n = app.journal(&t.auditor, LEDGER).await.len() as u64;
    let status = expect_invalid(checkpoint_of(&app, &t.auditor, LEDGER, n + 1).await, "tree_size");
    assert!(
        status.message().contains(&format!("beyond the journal's head, seq {n}")),
        "{status:?}"
    );
    expect_invalid(checkpoint_of(&app, &t.auditor, LEDGER, u64::MAX).await, "tree_size");
    expect_invalid(checkpoint_of(&app, &t.auditor, "", 0).await, "ledger_id");
    expect_invalid(inclusion(&app, &t.auditor, 0, 0).await, "seq");
    expect_invalid(inclusion(&app, &t.auditor, n + 1, 0).await, "seq");
    expect_invalid(inclusion(&app, &t.auditor, 3, 2).await, "seq");
    expect_invalid(inclusion(&app, &t.auditor, 1, n + 1).await, "tree_size");
    expect_invalid(consistency(&app, &t.auditor, 0, 0).await, "from_size");
    expect_invalid(consistency(&app, &t.auditor, 3, 2).await, "from_size");
    expect_invalid(consistency(&app, &t.auditor, n + 1, 0).await, "from_size");
    expect_invalid(consistency(&app, &t.auditor, 1, n + 1).await, "to_size");

    let elsewhere = app.token(Role::Auditor, "450122").await;
    for token in [&t.bank, &t.operator, &elsewhere] {
        expect_code(checkpoint_of(&app, token, LEDGER, 0).await, Code::PermissionDenied);
        expect_code(inclusion(&app, token, 1, 0).await, Code::PermissionDenied);
        expect_code(consistency(&app, token, 1, 0).await, Code::PermissionDenied);
    }
    let everywhere = app.token(Role::Auditor, "*").await;
    expect_code(checkpoint_of(&app, &everywhere, "999999", 0).await, Code::NotFound);
    expect_code(checkpoint_of(&app, &t.bank, "lpr", 0).await, Code::PermissionDenied);
    app.finish().await;
}

/// A forger with the database's keys rewrites a repayment (its recorded time) and rehashes the
/// chain after it, so that the chain holds together again and `Verify` finds nothing wrong:
/// the key that signed the checkpoint an auditor held signs nothing of it (since 2026-12-07;
/// before, it signed the checkpoint of the held size with another root), and another key's
/// checkpoint of it does not agree with the held one (another root, no proof linking the held
/// one to the new head). A hash changed without the chain rehashed is a broken link, and
/// nothing is signed over it.
async fn a_journal_rewritten_contradicts_the_checkpoint_held(backend: Backend) {
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 100_000).await;
    let held = checkpoint(&app, &t.auditor, 0).await;
    let key = pinned(&held);
    app.repay(&t.bank, &id, "2021-06-20", 100_000).await;

    let mut journal = app.journal(&t.auditor, LEDGER).await;
    let at = journal.iter().position(|e| e.kind == "loan.repaid").expect("the first repayment");
    let seq = journal[at].seq;
    assert!(seq <= held.tree_size);
    // Its recorded time a minute earlier: nothing but the hash checks it.
    let at_time = journal[at].recorded_at.as_mut().expect("recorded_at");
    at_time.seconds -= 60;
    let mut sql = format!(
        "update journal_txn set recorded_at_us = recorded_at_us - 60000000 \
         where ledger_id = '{LEDGER}' and seq = {seq};"
    );
    let before = app.journal(&t.auditor, LEDGER).await;
    sql.push_str(&rehash_from(&journal, at));
    app.behind_the_back("journal_txn", &sql).await.expect("the rows rewritten");
    let forged = app.journal(&t.auditor, LEDGER).await;
    check_chain(&forged);
    // The answers stored for the transactions rehashed still name the hashes they were given:
    // the recheck of the stored answers finds them, until the forger stamps them anew.
    let stale = stale_answers(&before, &forged);
    assert_eq!(stale.len(), 2, "the first repayment and the one after it");
    let v = app.verify(&t.auditor).await;
    assert_eq!((v.ok, v.first_break_seq, v.problems.clone()), (false, 0, stale), "{v:?}");
    let restamped = app.behind_the_back("idempotency", &restamp_answers(&before, &forged)).await;
    assert_eq!(restamped.expect("the answers rewritten"), 2);
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "Verify finds the rewritten chain whole: {v:?}");

    // The key that signed the held checkpoint signs nothing of the rewritten journal (since
    // 2026-12-07): not the size it signed, nor the head, nor a proof from the held size.
    for (tree_size, what) in [(held.tree_size, "checkpoint"), (0, "head")] {
        let status = checkpoint_of(&app, &t.auditor, LEDGER, tree_size).await;
        let status = expect_refused(status, "JOURNAL_BROKEN");
        let signed = Some(held.tree_size.to_string());
        assert_eq!(metadata(&status, "signed_size"), signed, "{what}: {status:?}");
        assert!(status.message().contains("its root differs"), "{status:?}");
    }
    let refused = consistency(&app, &t.auditor, held.tree_size, 0).await;
    expect_refused(refused, "JOURNAL_BROKEN");
    // A server with another key (restarted: the tests' keys are the run's) signs what it holds
    // now: the same size, another root, under a key the auditor did not pin.
    app.restart().await;
    let now = checkpoint(&app, &t.auditor, held.tree_size).await;
    let other_key = pinned(&now);
    assert_ne!(other_key, key);
    check_checkpoint(&now, &other_key, &forged);
    assert_ne!(now.root_hash, held.root_hash);
    // The proof from the held size starts at the new root, not the held one.
    let proof =
        consistency(&app, &t.auditor, held.tree_size, 0).await.expect("a proof").into_inner();
    let to = proof.to.expect("the head's checkpoint");
    let (old, new) = (hash(&held.root_hash), hash(&to.root_hash));
    assert!(!consistency_holds(held.tree_size, &old, to.tree_size, &new, &path(&proof.path)));
    // Nor is the rewritten repayment in the checkpoint held.
    let proof =
        inclusion(&app, &t.auditor, seq, held.tree_size).await.expect("a proof").into_inner();
    let leaf = hash(&forged[at].hash);
    assert!(!inclusion_holds(&old, held.tree_size, seq, &leaf, &path(&proof.audit_path)));
    // The auditor's offline check says so: the proof is not signed by the key pinned, and with
    // the key it is signed by, it does not start at the checkpoint held.
    let dir = tempfile::tempdir().expect("a directory");
    let held_file = saved(&dir, &held);
    let proof = consistency(&app, &t.auditor, held.tree_size, 0).await.expect("a proof");
    let public_key = held.public_key.as_str();
    let args = ["--public-key", public_key, "--held", held_file.as_str()];
    let (ok, out) = check_offline(&consistency_json(proof.get_ref()), &args);
    assert!(!ok && out.contains("not the pinned"), "{out}");
    let other_hex = now.public_key.as_str();
    let (ok, _) = check_offline(&consistency_json(proof.get_ref()), &["--public-key", other_hex]);
    assert!(ok, "the proof holds under the key that signed it");
    // Nor can the held checkpoint be passed off as the earlier one of the rewritten journal.
    let mut replayed = consistency_json(proof.get_ref());
    replayed["from"] = checkpoint_json(&held);
    let (ok, out) = check_offline(&replayed, &args);
    assert!(!ok, "{out}");

    // A hash changed alone breaks the chain's link: refused, naming the seq after it, and a
    // checkpoint before the break too while the key has signed past it (the head, above).
    let sql = format!(
        "update journal_txn set hash = '{}' where ledger_id = '{LEDGER}' and seq = {seq}",
        "ab".repeat(32)
    );
    app.behind_the_back("journal_txn", &sql).await.expect("the hash changed");
    for tree_size in [0, seq - 1] {
        let status = checkpoint_of(&app, &t.auditor, LEDGER, tree_size).await;
        let status = expect_refused(status, "JOURNAL_BROKEN");
        assert_eq!(metadata(&status, "seq"), Some((seq + 1).to_string()), "{status:?}");
    }
    // A key that has not signed past it gives the checkpoint before the break.
    app.restart().await;
    let before = checkpoint(&app, &t.auditor, seq - 1).await;
    check_checkpoint(&before, &pinned(&before), &forged);
    app.finish().await;
}

/// What a key signed is kept beside its file (since 2026-12-07): a server with a key file signs
/// the head; the journal's last transaction taken away (as a restore of an older copy leaves
/// it), it refuses to sign, naming the size it signed, and so does the next server started with
/// that file; a new key (`--new-signing-key`, a new file) signs the journal as it is.
async fn a_key_signs_no_journal_shorter_than_it_signed(backend: Backend) {
    use loanledger::api::pb::audit_service_client::AuditServiceClient;
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 100_000).await;
    let dir = tempfile::tempdir().expect("a directory for the key");
    let with_key = |file: &str| loanledger::startup::Settings {
        signing_key: Some(loanledger::startup::SigningKeyFile {
            path: dir.path().join(file),
            new_for_ledgers: true,
        }),
        ..serve_settings(&app.database_url, "127.0.0.1:0".parse().expect("an address"))
    };
    let ask = async |server: &Beside, tree_size: u64| {
        let mut audit =
            AuditServiceClient::with_interceptor(server.channel(), Bearer::new(&t.auditor));
        audit.get_checkpoint(pb::GetCheckpointRequest { ledger_id: LEDGER.into(), tree_size }).await
    };
    let server = Beside::start(with_key("signing.key")).await;
    let head = ask(&server, 0).await.expect("the head signed").into_inner();
    let marks: Vec<String> = std::fs::read_dir(dir.path())
        .expect("the key's directory")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".signed"))
        .collect();
    assert_eq!(marks, [format!("signing.key.{}.signed", &head.public_key[..16])]);

    let last = head.tree_size;
    let cut = format!("delete from journal_txn where ledger_id = '{LEDGER}' and seq = {last}");
    assert_eq!(app.behind_the_back("journal_txn", &cut).await.expect("cut short"), 1);
    let refused = async |server: &Beside| {
        let status = expect_refused(ask(server, 0).await, "JOURNAL_BROKEN");
        assert_eq!(metadata(&status, "signed_size"), Some(last.to_string()), "{status:?}");
        assert!(status.message().contains(&format!("ends at seq {}", last - 1)), "{status:?}");
        let status = expect_refused(ask(server, last - 1).await, "JOURNAL_BROKEN");
        assert_eq!(metadata(&status, "signed_size"), Some(last.to_string()), "{status:?}");
    };
    refused(&server).await;
    server.stop().await;
    let again = Beside::start(with_key("signing.key")).await;
    refused(&again).await;
    // The whole journal taken away (its ledger row left): refused alike, not a ledger without
    // a journal (until 2026-12-07 NOT_FOUND "has no journal"), and the rows put back after.
    let rows = format!("select cast(seq as text) from journal_txn where ledger_id = '{LEDGER}'");
    let kept = app.db.query_texts(&rows).await.expect("the rows").len();
    let save = format!(
        "create table journal_kept as select * from journal_txn where ledger_id = '{LEDGER}'"
    );
    app.db.execute_raw(&save).await.expect("kept aside");
    let all = format!("delete from journal_txn where ledger_id = '{LEDGER}'");
    assert_eq!(app.behind_the_back("journal_txn", &all).await.expect("emptied"), kept as u64);
    let status = expect_refused(ask(&again, 0).await, "JOURNAL_BROKEN");
    assert_eq!(metadata(&status, "signed_size"), Some(last.to_string()), "{status:?}");
    assert!(status.message().contains("ends at seq 0"), "{status:?}");
    let back = "insert into journal_txn select * from journal_kept";
    assert_eq!(app.behind_the_back("journal_txn", back).await.expect("put back"), kept as u64);
    app.db.execute_raw("drop table journal_kept").await.expect("dropped");
    refused(&again).await;
    again.stop().await;

    let renewed = Beside::start(with_key("new-signing.key")).await;
    let signed = ask(&renewed, 0).await.expect("signed by a new key").into_inner();
    assert_eq!(signed.tree_size, last - 1);
    assert_ne!(signed.public_key, head.public_key);
    renewed.stop().await;
    app.finish().await;
}

/// Each kind of break in the stored chain is refused JOURNAL_BROKEN at its seq: a hash not in
/// the service's form (upper-case hex), a seq moved far past the head (a head of 10^12, which
/// the server must not size anything by), and a transaction gone (on SQLite: its seq made
/// text, which sorts after every number; there too a seq made a real number, a hash stored as a
/// blob, which is read as its text, and one that is not UTF-8, a break). A checkpoint before
/// the break is refused too while the key has signed past it (since 2026-12-07: the journal
/// through the size it signed is not the one it signed), and given by a key that has not (a
/// server restarted: the tests' keys are the run's own).
async fn nothing_is_signed_over_a_broken_chain(backend: Backend) {
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    for date in ["2021-03-20", "2021-06-20", "2021-09-20"] {
        app.repay(&t.bank, &id, date, 100_000).await;
    }
    let journal = app.journal(&t.auditor, LEDGER).await;
    let n = journal.len() as u64;
    assert!(n >= 6, "{n} transactions");
    async fn refused_at(app: &TestApp, token: &str, tree_size: u64, seq: u64, what: &str) {
        let status =
            expect_refused(checkpoint_of(app, token, LEDGER, tree_size).await, "JOURNAL_BROKEN");
        assert_eq!(metadata(&status, "seq"), Some(seq.to_string()), "{status:?}");
        assert!(status.message().contains(what), "{status:?}");
    }
    async fn run(app: &TestApp, sql: String) {
        app.behind_the_back("journal_txn", &sql).await.expect(&sql);
    }
    // A checkpoint through `size`, given by a key that has signed nothing past it.
    async fn given_anew(
        app: &mut TestApp,
        token: &str,
        size: u64,
        journal: &[pb::JournalTransaction],
    ) {
        app.restart().await;
        let c = checkpoint(app, token, size).await;
        check_checkpoint(&c, &pinned(&c), journal);
    }
    let signed = checkpoint(&app, &t.auditor, 0).await;
    check_checkpoint(&signed, &pinned(&signed), &journal);

    run(
        &app,
        format!(
            "update journal_txn set hash = upper(hash) where ledger_id = '{LEDGER}' and seq = {n}"
        ),
    )
    .await;
    let not_hex = "has a hash that is not 64 lowercase hex digits";
    refused_at(&app, &t.auditor, 0, n, not_hex).await;
    // The key signed through n: nothing before it either, naming the break.
    refused_at(&app, &t.auditor, n - 1, n, not_hex).await;
    given_anew(&mut app, &t.auditor, n - 1, &journal).await;

    let moved = n - 2;
    run(&app, format!(
        "update journal_txn set seq = 1000000000000 where ledger_id = '{LEDGER}' and seq = {moved}"
    ))
    .await;
    refused_at(&app, &t.auditor, 0, moved, "is missing").await;
    refused_at(&app, &t.auditor, n, moved, "is missing").await;
    given_anew(&mut app, &t.auditor, moved - 1, &journal).await;
    let status = expect_invalid(
        checkpoint_of(&app, &t.auditor, LEDGER, 1_000_000_000_001).await,
        "tree_size",
    );
    assert!(status.message().contains("seq 1000000000000"), "{status:?}");

    if backend == Backend::Sqlite {
        // A hash stored as a blob, a seq as a real number: breaks, not failed reads.
        run(&app, format!("update journal_txn set hash = cast(hash as blob) where ledger_id = '{LEDGER}' and seq = 3")).await;
        given_anew(&mut app, &t.auditor, 3, &journal).await;
        // Bytes that are not UTF-8 (before 2026-12-04: a failed read, INTERNAL).
        run(
            &app,
            format!(
                "update journal_txn set hash = x'ff00fe' where ledger_id = '{LEDGER}' and seq = 3"
            ),
        )
        .await;
        refused_at(&app, &t.auditor, 3, 3, not_hex).await;
        run(
            &app,
            format!("update journal_txn set seq = 2.5 where ledger_id = '{LEDGER}' and seq = 3"),
        )
        .await;
        refused_at(&app, &t.auditor, 0, 3, "a seq that is not a whole number").await;
        given_anew(&mut app, &t.auditor, 2, &journal).await;
    }
    let gone = match backend {
        Backend::Sqlite => "update journal_txn set seq = 'two'",
        Backend::Postgres => "delete from journal_txn",
    };
    run(&app, format!("{gone} where ledger_id = '{LEDGER}' and seq = 2")).await;
    refused_at(&app, &t.auditor, 0, 2, "is missing").await;
    given_anew(&mut app, &t.auditor, 1, &journal).await;
    app.finish().await;
}

/// `loanledger check`, offline, with the pinned key: a checkpoint, an inclusion proof of a
/// transaction whose hash the auditor recomputed, and a consistency proof from the checkpoint
/// held all hold; a proof with one hash changed, another key, or another transaction does not.
async fn an_auditor_checks_the_answers_offline(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let held = checkpoint(&app, &t.auditor, 0).await;
    app.repay(&t.bank, &id, "2021-03-20", 100_000).await;
    let journal = app.journal(&t.auditor, LEDGER).await;
    let dir = tempfile::tempdir().expect("a directory");
    let held_file = saved(&dir, &held);
    let key = held.public_key.as_str();

    let head = checkpoint(&app, &t.auditor, 0).await;
    let (ok, out) = check_offline(&checkpoint_json(&head), &["--public-key", key]);
    assert!(ok && out.contains("is signed by the pinned key"), "{out}");
    let other =
        hex::encode(ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key().as_bytes());
    let (ok, out) = check_offline(&checkpoint_json(&head), &["--public-key", &other]);
    assert!(!ok && out.contains("not the pinned"), "{out}");
    // A plain checkpoint, even the one held, is not the consistency proof asked for.
    let asked = ["--public-key", key, "--held", &held_file, "--expect", "consistency"];
    let (ok, out) = check_offline(&checkpoint_json(&held), &asked);
    assert!(!ok && out.contains("not a consistency proof as asked"), "{out}");
    // Another ledger's checkpoint (the LPR table's, signed by the same key), handed back for
    // this ledger's head: it holds as a checkpoint, not as the one asked about.
    let lpr = app
        .audit(&t.auditor)
        .get_checkpoint(pb::GetCheckpointRequest { ledger_id: "lpr".into(), tree_size: 0 })
        .await
        .expect("the LPR table's checkpoint")
        .into_inner();
    let (ok, _) = check_offline(&checkpoint_json(&lpr), &["--public-key", key]);
    assert!(ok, "signed, it holds when nothing is asked of it");
    let (ok, out) =
        check_offline(&checkpoint_json(&lpr), &["--public-key", key, "--ledger", LEDGER]);
    assert!(!ok && out.contains(&format!("is not of ledger {LEDGER} as asked")), "{out}");
    let size = head.tree_size.to_string();
    let asked = ["--public-key", key, "--ledger", LEDGER, "--size", size.as_str()];
    let (ok, out) = check_offline(&checkpoint_json(&head), &asked);
    assert!(ok && out.contains("is the checkpoint asked for"), "{out}");
    let (ok, out) = check_offline(&checkpoint_json(&held), &asked);
    assert!(!ok && out.contains(&format!("is not of size {size} as asked")), "{out}");

    let seq = journal.len() as u64;
    let recomputed =
        hex::encode(chain_hash(&hash(&journal[seq as usize - 2].hash), &journal[seq as usize - 1]));
    let proof = inclusion(&app, &t.auditor, seq, 0).await.expect("a proof").into_inner();
    let answer = inclusion_json(&proof);
    let (ok, out) =
        check_offline(&answer, &["--public-key", key, "--transaction-hash", &recomputed]);
    assert!(
        ok && out.contains(&format!("seq {seq} ({recomputed}) is in ledger {LEDGER}")),
        "{out}"
    );
    let (ok, out) =
        check_offline(&answer, &["--public-key", key, "--transaction-hash", &journal[0].hash]);
    assert!(!ok && out.contains("the proof is of transaction hash"), "{out}");
    let mut changed = answer.clone();
    let first = changed["auditPath"][0].as_str().expect("a hash").to_string();
    let flipped = match first.strip_prefix('0') {
        Some(rest) => format!("1{rest}"),
        None => format!("0{}", &first[1..]),
    };
    changed["auditPath"][0] = serde_json::json!(flipped);
    let (ok, out) = check_offline(&changed, &["--public-key", key]);
    assert!(!ok && out.contains("does not lead"), "{out}");

    // The first transaction in the tree of one: an empty audit path, left out of the JSON.
    let proof = inclusion(&app, &t.auditor, 1, 1).await.expect("a proof").into_inner();
    assert!(proof.audit_path.is_empty());
    let args = ["--public-key", key, "--transaction-hash", journal[0].hash.as_str()];
    let (ok, out) = check_offline(&inclusion_json(&proof), &args);
    assert!(ok && out.contains("seq 1 ("), "{out}");
    // A hash to prove, given with an answer that proves none, fails the check.
    let (ok, out) = check_offline(&checkpoint_json(&head), &args);
    assert!(!ok && out.contains("is for an inclusion proof"), "{out}");

    let proof =
        consistency(&app, &t.auditor, held.tree_size, 0).await.expect("a proof").into_inner();
    let args = ["--public-key", key, "--held", held_file.as_str()];
    let (ok, out) = check_offline(&consistency_json(&proof), &args);
    assert!(
        ok && out.contains("is the checkpoint held") && out.contains("is a prefix of"),
        "{out}"
    );
    app.finish().await;
}

/// The key changed on purpose (`rotate-signing-key`): a new key in a new file, and a handover
/// statement signed by both keys. An auditor who pinned the old key checks a checkpoint
/// signed by the new one with the statement (`check --handover`), and a checkpoint held from
/// before, signed by the old one, alongside; without the statement, or with one altered, the
/// check fails. The command refuses to write over an existing key or statement.
#[test]
fn a_rotated_key_is_followed_from_the_pinned_one() {
    use loanledger::ledger::checkpoint::Checkpoint;
    let dir = tempfile::tempdir().expect("a directory");
    let old_file = dir.path().join("old.key");
    let old = ed25519_dalek::SigningKey::from_bytes(&[21; 32]);
    std::fs::write(&old_file, format!("{}\n", hex::encode(old.to_bytes()))).expect("written");
    let new_file = dir.path().join("new.key");
    let statement = dir.path().join("handover.json");
    let rotate = |new_file: &std::path::Path, statement: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
            .args(["rotate-signing-key", "--signing-key"])
            .arg(&old_file)
            .arg("--new-key-file")
            .arg(new_file)
            .arg("--handover")
            .arg(statement)
            .output()
            .expect("loanledger rotate-signing-key runs")
    };
    // What the old key has signed: the new key takes it over (since 2026-12-07 it started with
    // nothing, and signed a journal rewritten behind the old key's refusals).
    let marks_of = |file: &std::path::Path, key: &ed25519_dalek::SigningKey| {
        loanledger::app::signed_marks::marks_file(
            file,
            &hex::encode(key.verifying_key().as_bytes()),
        )
    };
    let signed_by_old = serde_json::json!({LEDGER: {"size": 7, "root": "ab".repeat(32)}});
    std::fs::write(marks_of(&old_file, &old), signed_by_old.to_string()).expect("old marks");
    let out = rotate(&new_file, &statement);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seed = std::fs::read_to_string(&new_file).expect("the new key");
    let seed: [u8; 32] = hex::decode(seed.trim()).expect("hex").try_into().expect("32 bytes");
    let new = ed25519_dalek::SigningKey::from_bytes(&seed);
    assert_ne!(new.to_bytes(), old.to_bytes());
    let carried = std::fs::read_to_string(marks_of(&new_file, &new)).expect("the new key's marks");
    let carried: serde_json::Value = serde_json::from_str(&carried).expect("JSON");
    assert_eq!(carried, signed_by_old);
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON printed");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&statement).expect("the statement"))
            .expect("JSON written");
    assert_eq!(printed, written);
    assert_eq!(written["to_public_key"], hex::encode(new.verifying_key().as_bytes()));
    // The old key moved aside: a server restarted on the old path finds no key.
    assert!(!old_file.exists());
    let retired = dir.path().join("old.key.handed-over");
    assert_eq!(
        std::fs::read_to_string(&retired).expect("kept aside").trim(),
        hex::encode(old.to_bytes())
    );
    // Refused, leaving nothing behind: the key handed over not destroyed yet, a statement's
    // file that exists. Neither file is written over.
    std::fs::write(&old_file, format!("{}\n", hex::encode(old.to_bytes()))).expect("written");
    let (third, other) = (dir.path().join("third.key"), dir.path().join("other.json"));
    let again = rotate(&third, &other);
    assert!(
        !again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("destroy it first")
    );
    std::fs::remove_file(&retired).expect("destroyed");
    let again = rotate(&third, &statement);
    assert!(!again.status.success());
    let again = rotate(&new_file, &other);
    assert!(!again.status.success());
    assert!(!third.exists() && !other.exists() && old_file.exists() && !retired.exists());

    let signed = |key: &ed25519_dalek::SigningKey, size: u64| {
        let c = Checkpoint {
            ledger_id: LEDGER.into(),
            tree_size: size,
            root: [size as u8; 32],
            head: [0xee; 32],
        };
        serde_json::json!({
            "ledgerId": c.ledger_id,
            "treeSize": size.to_string(),
            "rootHash": hex::encode(c.root),
            "headHash": hex::encode(c.head),
            "signature": hex::encode(c.sign(key)),
            "publicKey": hex::encode(key.verifying_key().as_bytes()),
        })
    };
    let pinned = hex::encode(old.verifying_key().as_bytes());
    let handover = statement.to_str().expect("a UTF-8 path");
    let held = dir.path().join("held.json");
    std::fs::write(&held, signed(&old, 5).to_string()).expect("the held checkpoint");
    let held = held.to_str().expect("a UTF-8 path");
    let answer = signed(&new, 5);
    let (ok, out) = check_offline(&answer, &["--public-key", &pinned]);
    assert!(!ok && out.contains("not the pinned"), "{out}");
    let (ok, out) =
        check_offline(&answer, &["--public-key", &pinned, "--handover", handover, "--held", held]);
    assert!(ok, "{out}");
    assert!(out.contains("hands over to") && out.contains("signed by both"), "{out}");
    assert!(out.contains("is the checkpoint held"), "{out}");
    // A held checkpoint of the old key's whose signature is damaged: told so, by the key it
    // names (until 2026-12-07 told as signed with another key than the new one).
    let mut damaged = signed(&old, 5);
    let signature = damaged["signature"].as_str().expect("hex").to_string();
    let flipped = if signature.starts_with('0') { "1" } else { "0" };
    damaged["signature"] = serde_json::json!(format!("{flipped}{}", &signature[1..]));
    let damaged_file = dir.path().join("damaged.json");
    std::fs::write(&damaged_file, damaged.to_string()).expect("written");
    let damaged_file = damaged_file.to_str().expect("a UTF-8 path");
    let (ok, out) = check_offline(
        &answer,
        &["--public-key", &pinned, "--handover", handover, "--held", damaged_file],
    );
    assert!(!ok && out.contains("the signature of") && out.contains("is not"), "{out}");
    // A statement altered: not followed.
    let mut altered = written.clone();
    altered["at"] = serde_json::json!("2020-01-01T00:00:00Z");
    let altered_file = dir.path().join("altered.json");
    std::fs::write(&altered_file, altered.to_string()).expect("written");
    let altered_file = altered_file.to_str().expect("a UTF-8 path");
    let (ok, out) = check_offline(&answer, &["--public-key", &pinned, "--handover", altered_file]);
    assert!(!ok && out.contains("handover 1"), "{out}");
}
