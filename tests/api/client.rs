//! `loanledger client`, the CLI's calls of the API, run as a process against a real server:
//! a request given as JSON, each answer printed as one line of JSON (a stream's in turn), a
//! refusal on stderr with its code, field or reason and exit status 1, a call that cannot be
//! made exit status 2, a server away 3, an answer that cannot be written out 4; and a checkpoint it prints checked offline by
//! `loanledger check`. Each scenario runs on SQLite and on PostgreSQL.

use loanledger::api::pb;

use super::with_disbursed_loan;
use crate::common::*;

on_both_backends!(the_cli_client_calls_the_api, the_cli_client_reads_a_large_batch_answer);

/// The client's settings from the environment, left out of every run here.
const CLIENT_ENV: [&str; 5] = [
    "LOANLEDGER_SERVER",
    "LOANLEDGER_TOKEN",
    "LOANLEDGER_CA_CERT",
    "LOANLEDGER_CLIENT_CERT",
    "LOANLEDGER_CLIENT_KEY",
];

/// What `loanledger client` printed and how it ended.
pub(super) struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// `loanledger client` against `app` as the holder of `token` (none: no token), with `args`
/// after `client`.
fn client(app: &TestApp, token: Option<&str>, args: &[&str]) -> Run {
    client_reading(app, token, args, "")
}

/// [`client`], `input` on its standard input.
fn client_reading(app: &TestApp, token: Option<&str>, args: &[&str], input: &str) -> Run {
    run_client(&format!("http://127.0.0.1:{}", app.port), token, args, input)
}

/// `loanledger client --server SERVER` with `args`, none of its environment variables set,
/// `input` on its standard input.
pub(super) fn run_client(server: &str, token: Option<&str>, args: &[&str], input: &str) -> Run {
    use std::process::{Command, Stdio};
    let mut command = Command::new(env!("CARGO_BIN_EXE_loanledger"));
    command.arg("client").arg("--server").arg(server);
    for set in CLIENT_ENV {
        command.env_remove(set);
    }
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("loanledger client runs");
    let mut stdin = child.stdin.take().expect("its input");
    std::io::Write::write_all(&mut stdin, input.as_bytes()).expect("its input written");
    drop(stdin);
    let out = child.wait_with_output().expect("it ends");
    Run {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Each line printed, read as JSON.
fn lines(run: &Run) -> Vec<serde_json::Value> {
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let read = |line: &str| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    run.stdout.lines().map(read).collect()
}

/// A bank's engineer reads its loan and its history from the shell, and records a repayment
/// with a request of its own, once whatever the retries; a refusal names its field or reason
/// and exits 1; an unknown method or a request of another shape exits 2 naming it, a server
/// away 3; an auditor takes a checkpoint that `loanledger check` holds to the pinned key.
async fn the_cli_client_calls_the_api(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let methods = client(&app, None, &["methods"]);
    assert_eq!(methods.status, Some(0), "{}", methods.stderr);
    assert!(
        methods.stdout.lines().any(|l| l == "LoanService/GetLoan(GetLoanRequest) returns Loan")
    );

    // The loan, as proto3's JSON gives it: 64-bit integers as strings, zeros given too.
    let get = format!(r#"{{"loanId": "{id}"}}"#);
    let loan = lines(&client(&app, Some(&t.bank), &["call", "LoanService/GetLoan", &get]));
    assert_eq!(loan.len(), 1);
    assert_eq!(loan[0]["loanId"], id.as_str());
    assert_eq!(loan[0]["principalOutstandingFen"], STANDARD_PRINCIPAL_FEN.to_string());
    assert_eq!(loan[0]["principalRepaidFen"], "0");

    // A repayment, sent twice with its request id: posted once, the same answer again.
    let repay = format!(
        r#"{{"requestId": "cli-1", "loanId": "{id}", "valueDate": "2021-03-20", "amountFen": 1029410}}"#
    );
    let repaid =
        lines(&client(&app, Some(&t.bank), &["call", "LoanService/RecordRepayment", &repay]));
    let again =
        lines(&client(&app, Some(&t.bank), &["call", "LoanService/RecordRepayment", &repay]));
    assert_eq!(repaid, again);
    let outstanding = repaid[0]["loan"]["principalOutstandingFen"].clone();
    assert_eq!(outstanding, (STANDARD_PRINCIPAL_FEN - 1_000_000).to_string());
    // The request read from standard input, a stream's answers a line each.
    let history = format!(r#"{{"loan_id": "{id}"}}"#);
    let args = ["call", "AuditService/GetLoanHistory", "-"];
    let history = client_reading(&app, Some(&t.bank), &args, &history);
    let kinds: Vec<String> =
        lines(&history).iter().map(|e| e["kind"].as_str().expect("a kind").to_string()).collect();
    assert_eq!(kinds, ["loan.created", "loan.disbursed", "loan.repaid"]);
    let via_grpc = app.history(&t.bank, &id).await;
    assert_eq!(via_grpc.len(), kinds.len());

    // Refused by the service: exit 1, the code and the field or reason on stderr.
    let bad_date = repay.replace("2021-03-20", "2021-02-30").replace("cli-1", "cli-2");
    let refused = client(&app, Some(&t.bank), &["call", "LoanService/RecordRepayment", &bad_date]);
    assert_eq!(refused.status, Some(1), "{}", refused.stderr);
    assert!(refused.stderr.starts_with("InvalidArgument: "), "{}", refused.stderr);
    assert!(refused.stderr.contains("\n  field value_date: "), "{}", refused.stderr);
    let early = repay.replace("2021-03-20", "2021-01-01").replace("cli-1", "cli-3");
    let refused = client(&app, Some(&t.bank), &["call", "LoanService/RecordRepayment", &early]);
    assert_eq!(refused.status, Some(1), "{}", refused.stderr);
    assert!(refused.stderr.starts_with("FailedPrecondition: "), "{}", refused.stderr);
    assert!(refused.stderr.contains("\n  reason VALUE_DATE_OUT_OF_RANGE\n"), "{}", refused.stderr);
    let anonymous = client(&app, None, &["call", "LoanService/GetLoan", &get]);
    assert_eq!(anonymous.status, Some(1));
    assert!(anonymous.stderr.starts_with("Unauthenticated: "), "{}", anonymous.stderr);
    // Not made: exit 2, naming what is wrong; nothing sent.
    let unknown = client(&app, Some(&t.bank), &["call", "LoanService/Repay", &repay]);
    assert_eq!(unknown.status, Some(2));
    assert!(unknown.stderr.contains("no method \"LoanService/Repay\""), "{}", unknown.stderr);
    let misshapen = r#"{"loanId": 7}"#;
    let misshapen = client(&app, Some(&t.bank), &["call", "LoanService/GetLoan", misshapen]);
    assert_eq!(misshapen.status, Some(2));
    assert!(
        misshapen.stderr.starts_with("the request is not the JSON of a GetLoanRequest: "),
        "{}",
        misshapen.stderr
    );
    // TLS files for a plain server (the token would go in the clear), or a TLS server without
    // the CA its certificate chains to: not sent.
    let ca = ["--ca-cert", "/nonexistent/ca.pem"];
    let unread =
        client(&app, Some(&t.bank), &[&ca[..], &["call", "LoanService/GetLoan", &get]].concat());
    assert_eq!(unread.status, Some(2));
    assert!(unread.stderr.starts_with("cannot read /nonexistent/ca.pem: "), "{}", unread.stderr);
    let dir = tempfile::tempdir().expect("a directory");
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, "not read: the server is not TLS").expect("a file");
    let pem = pem.to_str().expect("a UTF-8 path");
    let plain =
        client(&app, Some(&t.bank), &["--ca-cert", pem, "call", "LoanService/GetLoan", &get]);
    assert_eq!(plain.status, Some(2));
    assert!(plain.stderr.contains("are for an https:// server"), "{}", plain.stderr);
    let https = format!("https://127.0.0.1:{}", app.port);
    let no_ca = run_client(&https, None, &["call", "LoanService/GetLoan", &get], "");
    assert_eq!(no_ca.status, Some(2));
    assert!(no_ca.stderr.contains("needs --ca-cert"));
    // A server named without its scheme, as grpcurl takes it: not sent (since 2026-12-07 late
    // night; it read as a server not reached, exit 3).
    let bare = format!("127.0.0.1:{}", app.port);
    let bare = run_client(&bare, Some(&t.bank), &["call", "LoanService/GetLoan", &get], "");
    assert_eq!(bare.status, Some(2), "{}", bare.stderr);
    assert!(
        bare.stderr.contains("is not a server's URL: it begins with http://"),
        "{}",
        bare.stderr
    );
    // With JSON logs asked for, a refusal's text is one JSON line on stderr, its exit status
    // in it (since 2026-12-07 late night: the text alone, which a collector reading JSON drops).
    let json = ["--log-format", "json", "call", "LoanService/GetLoan", &get];
    let logged = client(&app, None, &json);
    assert_eq!(logged.status, Some(1), "{}", logged.stderr);
    let line: serde_json::Value =
        serde_json::from_str(logged.stderr.trim()).expect("one JSON line");
    assert_eq!(line["level"], "ERROR", "{line}");
    assert_eq!(line["fields"]["exit_status"], 1, "{line}");
    let error = line["fields"]["error"].as_str().expect("the error");
    assert!(error.starts_with("Unauthenticated: "), "{line}");
    let journal = app.journal(&t.auditor, LEDGER).await;
    assert_eq!(journal.iter().filter(|e| e.kind == "loan.repaid").count(), 1);
    // A server away: exit 3, naming it.
    let mut away =
        run_client("http://127.0.0.1:1", None, &["call", "LoanService/GetLoan", &get], "");
    away.stderr.truncate(200);
    assert_eq!(away.status, Some(3), "{}", away.stderr);
    assert!(away.stderr.starts_with("cannot reach http://127.0.0.1:1: "));
    // A token to a server not on this machine over http://: said on stderr (since 2026-12-07).
    // (0.0.0.0 is no loopback address, and Linux connects it to this machine: refused at once.)
    let clear =
        run_client("http://0.0.0.0:1", Some(&t.bank), &["call", "LoanService/GetLoan", &get], "");
    assert_eq!(clear.status, Some(3), "{}", clear.stderr);
    assert!(clear.stderr.starts_with("warning: the token goes to http://0.0.0.0:1 in the clear"));
    // With JSON logs asked for, the warning is one of them (since 2026-12-08: its text).
    let clear = run_client("http://0.0.0.0:1", Some(&t.bank), &json, "");
    let logged: Vec<serde_json::Value> = clear
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(logged.len(), 2, "{}", clear.stderr);
    assert_eq!(logged[0]["level"], "WARN", "{}", clear.stderr);
    let said = logged[0]["fields"]["message"].as_str().expect("its message");
    assert!(said.starts_with("the token goes to http://0.0.0.0:1 in the clear"), "{said}");
    for server in ["http://127.0.0.1:1", "http://[::1]:1", "http://localhost:1"] {
        let near = run_client(server, Some(&t.bank), &["call", "LoanService/GetLoan", &get], "");
        assert_eq!(near.status, Some(3), "{}", near.stderr);
        assert!(!near.stderr.contains("warning"), "a loopback server: {}", near.stderr);
    }
    // A connection lost once the call was on its way (a proxy to the server that passes the
    // client's health check, then hangs up when the call's headers come): exit 5, saying a
    // write may have been posted (since 2026-12-07: exit 3, "cannot reach", which a script
    // could take for nothing sent).
    let port = hang_up_at_the_call(app.port);
    let server = format!("http://127.0.0.1:{port}");
    let cut = run_client(&server, None, &["call", "LoanService/GetLoan", &get], "");
    assert_eq!(cut.status, Some(5), "{}", cut.stderr);
    let said = format!("the connection to {server} failed during the call (a write may have");
    assert!(cut.stderr.starts_with(&said), "{}", cut.stderr);
    // An answer that cannot be written out (a full disk, here `/dev/full`): exit 4, naming it.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"));
    command.args(["client", "--server", &format!("http://127.0.0.1:{}", app.port)]);
    for set in CLIENT_ENV {
        command.env_remove(set);
    }
    command.args(["--token", &t.bank, "call", "LoanService/GetLoan", &get]).stdout(full);
    let unwritten = command.output().expect("loanledger client runs");
    let stderr = String::from_utf8_lossy(&unwritten.stderr);
    assert_eq!(unwritten.status.code(), Some(4), "{stderr}");
    assert!(stderr.starts_with("the answer could not be written: "), "{stderr}");

    // An auditor's checkpoint, printed by the client, held offline to the pinned key.
    let ledger = format!(r#"{{"ledgerId": "{LEDGER}"}}"#);
    let checkpoint =
        client(&app, Some(&t.auditor), &["call", "AuditService/GetCheckpoint", &ledger]);
    let checkpoint = lines(&checkpoint).remove(0);
    let pinned = checkpoint["publicKey"].as_str().expect("its key").to_string();
    let request = pb::GetCheckpointRequest { ledger_id: LEDGER.into(), tree_size: 0 };
    let via_grpc = app.audit(&t.auditor).get_checkpoint(request).await.expect("GetCheckpoint");
    assert_eq!(checkpoint["rootHash"], via_grpc.get_ref().root_hash.as_str());
    assert_eq!(pinned, via_grpc.get_ref().public_key);
    let file = dir.path().join("checkpoint.json");
    std::fs::write(&file, checkpoint.to_string()).expect("written");
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
        .args(["check", "--public-key", &pinned, "--expect", "checkpoint"])
        .arg(&file)
        .output()
        .expect("loanledger check runs");
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));

    // A transaction read from the journal and its inclusion proof, both printed by the client:
    // `check --transaction` recomputes its hash from its content and prev_hash (since
    // 2026-12-07; before, the auditor encoded it by hand), and the proof must be of it.
    let read = format!(r#"{{"ledgerId": "{LEDGER}"}}"#);
    let journal =
        lines(&client(&app, Some(&t.auditor), &["call", "AuditService/ReadJournal", &read]));
    // The loan's payout, a transaction with postings (the first is the ledger's, a memo).
    let at = journal.iter().position(|e| e["kind"] == "loan.disbursed").expect("the payout");
    assert!(at > 0, "a transaction before it");
    let (last, entry, seq) = (journal.len(), journal[at].clone(), at + 1);
    assert_eq!(entry["seq"], seq.to_string());
    let ask = format!(r#"{{"ledgerId": "{LEDGER}", "seq": "{seq}", "treeSize": "{last}"}}"#);
    let proof =
        lines(&client(&app, Some(&t.auditor), &["call", "AuditService/GetInclusionProof", &ask]));
    let (proof_file, entry_file) = (dir.path().join("proof.json"), dir.path().join("entry.json"));
    std::fs::write(&proof_file, proof[0].to_string()).expect("written");
    let check_entry = |entry: &serde_json::Value, extra: &[&str]| {
        std::fs::write(&entry_file, entry.to_string()).expect("written");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
            .args(["check", "--public-key", &pinned, "--ledger", LEDGER, "--transaction"])
            .arg(&entry_file)
            .args(extra)
            .arg(&proof_file)
            .output()
            .expect("loanledger check runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, out) = check_entry(&entry, &[]);
    let hash = entry["hash"].as_str().expect("its hash");
    assert!(ok, "{out}");
    let recomputed =
        format!("seq {seq} of ledger {LEDGER}: its content and prev_hash give its hash, {hash}");
    assert!(out.contains(&recomputed), "{out}");
    assert!(out.contains(&format!("seq {seq} ({hash}) is in ledger {LEDGER}")), "{out}");
    assert!(!out.contains("not checked against one of yours"), "{out}");
    // Its content changed: the hash it states is not what it gives.
    let mut changed = entry.clone();
    let amount = changed["postings"][0]["amountFen"].as_str().expect("an amount").to_string();
    changed["postings"][0]["amountFen"] = serde_json::json!(format!("{amount}0"));
    let (ok, out) = check_entry(&changed, &[]);
    assert!(
        !ok && out.contains("gives its hash as") && out.contains("content and prev_hash give"),
        "{out}"
    );
    // Restated with the hash its new content gives: not the transaction the proof is of.
    let (_, _, forged) = loanledger::offline::transaction_hash(&{
        let mut c = changed.clone();
        c.as_object_mut().expect("an object").remove("hash");
        c
    })
    .expect("a hash");
    changed["hash"] = serde_json::json!(hex::encode(forged));
    let (ok, out) = check_entry(&changed, &[]);
    assert!(!ok && out.contains("the proof is of transaction hash"), "{out}");
    // Another seq's transaction, or the seq asked otherwise.
    let (ok, out) = check_entry(&journal[0], &[]);
    assert!(!ok && out.contains(&format!("the proof is of seq {seq}, not 1 as asked")), "{out}");
    let other = (seq + 1).to_string();
    let (ok, out) = check_entry(&entry, &["--seq", &other]);
    let asked = format!("the transaction is seq {seq}, not {other} as asked");
    assert!(!ok && out.contains(&asked), "{out}");
    // With an answer that is no inclusion proof: named by the flag given.
    std::fs::write(&entry_file, entry.to_string()).expect("written");
    let not_a_proof = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
        .args(["check", "--public-key", &pinned, "--transaction"])
        .arg(&entry_file)
        .arg(&file)
        .output()
        .expect("loanledger check runs");
    let said = String::from_utf8_lossy(&not_a_proof.stderr);
    assert!(!not_a_proof.status.success(), "{said}");
    assert!(said.contains("--transaction is for an inclusion proof"), "{said}");
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// A proxy on a port of its own (returned) to the server on `port`, for one connection: it
/// passes the HTTP/2 frames both ways until the client opens its second stream (stream 3: the
/// call, after the client's health check on stream 1), then closes both sides. Gives up after
/// 10 s.
fn hang_up_at_the_call(port: u16) -> u16 {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let own = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        listener.set_nonblocking(true).expect("non-blocking");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let client = loop {
            match listener.accept() {
                Ok((client, _)) => break client,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(_) => return,
            }
        };
        client.set_nonblocking(false).expect("blocking");
        let timeout = Some(std::time::Duration::from_secs(10));
        client.set_read_timeout(timeout).expect("a timeout");
        let server = TcpStream::connect(("127.0.0.1", port)).expect("the server");
        let (mut from_server, mut to_client) =
            (server.try_clone().expect("a clone"), client.try_clone().expect("a clone"));
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_server, &mut to_client);
        });
        let (mut from_client, mut to_server) = (client, server);
        // The client's preface (24 bytes), then frames: 9 bytes of header (length, type,
        // flags, stream id), then the payload.
        let mut preface = [0u8; 24];
        if from_client.read_exact(&mut preface).is_err() || to_server.write_all(&preface).is_err() {
            return;
        }
        loop {
            let mut header = [0u8; 9];
            if from_client.read_exact(&mut header).is_err() {
                return;
            }
            let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let stream =
                u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
            if header[3] == 1 && stream == 3 {
                let _ = from_client.shutdown(Shutdown::Both);
                let _ = to_server.shutdown(Shutdown::Both);
                return;
            }
            let mut payload = vec![0u8; length];
            if from_client.read_exact(&mut payload).is_err()
                || to_server.write_all(&header).is_err()
                || to_server.write_all(&payload).is_err()
            {
                return;
            }
        }
    });
    own
}

/// A `SubmitBatch` answer above the 4 MiB gRPC clients read by default (10,000 items with
/// request ids of the longest allowed, all but the first held back behind its date in the
/// future: about 5 MB) is read whole by `loanledger client` (since 2026-12-07: it failed after
/// the call, where items may have been posted). Nothing is posted here.
async fn the_cli_client_reads_a_large_batch_answer(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let head = app.journal(&t.auditor, LEDGER).await.len();
    let items: Vec<serde_json::Value> = (0..10_000)
        .map(|i| {
            let date = if i == 0 { "2099-01-01" } else { "2021-03-20" };
            serde_json::json!({
                "requestId": format!("{i:0>128}"),
                "repayment": {"loanId": id, "valueDate": date, "amountFen": "100"},
            })
        })
        .collect();
    let input = serde_json::json!({ "items": items }).to_string();
    let run =
        client_reading(&app, Some(&t.bank), &["call", "LoanService/SubmitBatch", "-"], &input);
    assert!(run.stdout.len() > 4 << 20, "{} bytes: {}", run.stdout.len(), run.stderr);
    let answer = lines(&run);
    let results = answer[0]["results"].as_array().expect("the results");
    assert_eq!(results.len(), 10_000);
    assert_eq!(results[0]["code"], "INVALID_ARGUMENT", "{:?}", results[0]);
    assert!(results[1..].iter().all(|r| r["reason"] == "HELD_BACK"), "{:?}", results[1]);
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), head, "nothing posted");
    app.finish().await;
}
