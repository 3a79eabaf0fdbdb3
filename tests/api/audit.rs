//! The auditor's side: the journal append-only in the database itself, verify finding every
//! kind of tampering (rows, hashes, postings, read models, history links, idempotency records,
//! weakened guards) and what it cannot read, the journal's scan in pages, verifies taking turns
//! and running beside writes. Each scenario runs on SQLite and on PostgreSQL.

use loanledger::api::pb;
use loanledger::app::auth::Role;
use loanledger::domain::money::Fen;
use loanledger::ledger::posting::{Posting, pack};
use tonic::Code;

use super::{disbursed_loans, entry, with_disbursed_loan, with_two_disbursed_loans};
use crate::common::*;

on_both_backends!(
    journal_is_append_only,
    tampering_is_reported,
    a_loan_stored_whole_by_an_earlier_version,
    postings_text_is_checked_as_postings,
    a_head_stored_far_ahead_is_reported,
    a_damaged_row_is_missing_to_who_may_not_read_it,
    a_broken_journal_is_named_to_a_reader_of_the_past,
    a_register_that_cannot_be_computed_ends_the_list_after_the_loans_before_it,
    verify_lists_every_kind_of_problem_it_finds,
    a_loan_history_through_a_seq,
    an_uplift_altered_out_of_bounds_is_an_unreadable_row,
    rows_before_the_chain_are_reported,
    mistyped_journal_columns_are_reported,
    journal_scan_pages,
    concurrent_verifies_take_turns,
    tampered_read_models_are_reported,
    tampered_history_links_are_reported,
    tampered_idempotency_records_are_reported,
    tampered_stored_answers_are_reported,
    weakened_guards_are_reported,
    verify_while_writing,
    a_value_date_rewritten_with_the_hashes_is_reported,
    the_lpr_table_has_a_chain_of_its_own,
    a_ledger_called_lpr_is_refused_at_start,
);

/// The tables whose rows are never changed nor removed once written.
const APPEND_ONLY_TABLES: [&str; 6] =
    ["journal_txn", "journal_loan", "household_status", "policy_version", "lpr", "idempotency"];

/// The database itself refuses UPDATE and DELETE on journal rows (their postings in them), an
/// upsert, and on SQLite a REPLACE, of the append-only tables' rows; postings cannot be written
/// on their own: `posting` is a view of the journal's.
async fn journal_is_append_only(backend: Backend) {
    let Some((app, t, _)) = with_disbursed_loan(backend).await else {
        return;
    };
    let before = app.journal(&t.auditor, LEDGER).await;

    let attempts = [
        "update journal_txn set kind = 'forged' where ledger_id = '450121'",
        "update journal_txn set hash = prev_hash where ledger_id = '450121'",
        "delete from journal_txn where ledger_id = '450121'",
        "update journal_txn set postings = '[]' where ledger_id = '450121'",
        "update household_status set status = 'removed'",
        "delete from idempotency",
    ];
    for sql in attempts {
        let err =
            app.db.execute_raw(sql).await.expect_err(&format!("the database must refuse: {sql}"));
        assert!(
            err.to_string().contains("append-only"),
            "refused by the append-only trigger: {sql}: {err}"
        );
    }
    // An upsert is an update: refused on both backends.
    let upsert = "insert into idempotency (scope, request_id, fingerprint, result_json, \
                  ledger_id, seq) select scope, request_id, fingerprint, 'forged', ledger_id, seq \
                  from idempotency where ledger_id = '450121' \
                  on conflict (scope, request_id) do update set result_json = 'forged'";
    let err = app.db.execute_raw(upsert).await.expect_err("the database must refuse the upsert");
    assert!(err.to_string().contains("append-only"), "refused by a trigger: {err}");
    if backend == Backend::Sqlite {
        // SQLite's REPLACE deletes the row in its way without firing delete triggers: each
        // append-only table refuses a row under a stored key, or a stored rowid.
        let mut replaces: Vec<String> = APPEND_ONLY_TABLES
            .iter()
            .map(|table| format!("insert or replace into {table} select * from {table}"))
            .collect();
        replaces.push(
            "replace into idempotency select scope, request_id, fingerprint, 'forged', \
             ledger_id, seq from idempotency"
                .into(),
        );
        replaces.push(
            "insert or replace into journal_txn (rowid, ledger_id, seq, kind, value_date, \
             recorded_at_us, actor, request_id, command_json, prev_hash, hash, postings) \
             select rowid, 'ELSEWHERE', seq, kind, value_date, recorded_at_us, actor, \
             request_id, command_json, prev_hash, hash, postings from journal_txn"
                .into(),
        );
        for sql in &replaces {
            let err = app.db.execute_raw(sql).await.expect_err(&format!("refused: {sql}"));
            assert!(err.to_string().contains("append-only"), "refused by a trigger: {sql}: {err}");
        }
    }
    if backend == Backend::Postgres {
        for table in APPEND_ONLY_TABLES {
            let sql = format!("truncate {table} cascade");
            let err = app
                .db
                .execute_raw(&sql)
                .await
                .expect_err(&format!("the database must refuse: {sql}"));
            assert!(err.to_string().contains("append-only"), "refused by a trigger: {sql}: {err}");
        }
    }
    for sql in [
        "update posting set amount_fen = amount_fen + 100 where ledger_id = '450121'",
        "delete from posting where ledger_id = '450121'",
        "insert into posting (ledger_id, seq, idx, account, amount_fen) \
         values ('450121', 99, 0, 'bank/B1/cash', 500)",
    ] {
        let err = app.db.execute_raw(sql).await.expect_err(&format!("refused: {sql}"));
        assert!(err.to_string().contains("view"), "refused as a view: {sql}: {err}");
    }
    // The view shows, row by row, the postings the API shows.
    let legs: usize = before.iter().map(|e| e.postings.len()).sum();
    let counted = app
        .db
        .execute_raw(&format!(
            "update ledger set name = name where ledger_id = '450121' and \
             (select count(*) from posting where ledger_id = '450121') = {legs} and \
             (select sum(amount_fen) from posting where ledger_id = '450121') = 0"
        ))
        .await
        .expect("the view reads");
    assert_eq!(counted, 1, "the view has the {legs} postings of the journal, summing to zero");
    assert_eq!(app.journal(&t.auditor, LEDGER).await, before);
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// With the triggers dropped behind the service's back, one changed amount breaks the chain at
/// exactly that transaction.
async fn tampering_is_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let repaid = app.repay(&t.bank, &id, "2021-03-20", 1_029_410).await;
    app.repay(&t.bank, &id, "2021-06-20", 500_000).await;
    let target = entry(&repaid).seq;
    assert!(app.verify(&t.auditor).await.ok);

    // The target's interest income 100 yuan less (and its cash with it, so that the postings
    // still balance: only the chain can tell).
    let stored = &app.journal(&t.auditor, LEDGER).await[target as usize - 1];
    assert_eq!(stored.seq, target);
    let legs: Vec<Posting> = stored
        .postings
        .iter()
        .map(|p| {
            let less = match p.account.as_str() {
                "bank/B1/interest_income" => 10_000,
                a if a.ends_with("/cash") => -10_000,
                _ => 0,
            };
            Posting { account: p.account.clone(), amount: Fen(p.amount_fen + less) }
        })
        .collect();
    assert!(legs.iter().zip(&stored.postings).any(|(l, p)| l.amount.0 != p.amount_fen));
    let changed = app
        .behind_the_back("journal_txn", &format!(
            "update journal_txn set postings = '{}' where ledger_id = '450121' and seq = {target}",
            pack(&legs)
        ))
        .await
        .expect("with the triggers gone the update goes through");
    assert_eq!(changed, 1);

    let v = app.verify(&t.auditor).await;
    assert!(!v.ok, "verify must notice: {v:?}");
    assert_eq!(v.first_break_seq, target, "{v:?}");
    assert!(!v.problems.is_empty());

    // Sixty repayments more, then every transaction's postings removed: more problems than a
    // report lists (each transaction's hash and postings); its last line says how many more.
    for _ in 0..60 {
        app.repay(&t.bank, &id, "2021-06-20", 100).await;
    }
    app.behind_the_back(
        "journal_txn",
        "update journal_txn set postings = '[]' where ledger_id = '450121'",
    )
    .await
    .expect("with the triggers gone the update goes through");
    let v = app.verify(&t.auditor).await;
    assert_eq!(v.problems.len(), loanledger::app::verify::PROBLEMS_MAX + 1, "{v:?}");
    let last = v.problems.last().expect("a last line");
    assert!(last.starts_with("... and ") && last.ends_with(" more problems"), "{last}");
    app.finish().await;
}

/// Verify sizes its lists from the stored head: a head `seq` changed by hand to the largest
/// there is (no list that size can be had) is reported as the gap before it, not an error.
async fn a_head_stored_far_ahead_is_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let head = entry(&app.repay(&t.bank, &id, "2021-03-20", 100_000).await).seq;
    assert!(app.verify(&t.auditor).await.ok);
    let moved = app
        .behind_the_back(
            "journal_txn",
            &format!(
                "update journal_txn set seq = {} where ledger_id = '450121' and seq = {head}",
                i64::MAX
            ),
        )
        .await
        .expect("with the triggers gone the update goes through");
    assert_eq!(moved, 1);
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok);
    assert_eq!(v.first_break_seq, head, "{v:?}");
    assert_eq!(v.problems[0], format!("seq {head} is missing (next stored is {})", i64::MAX));
    assert_eq!(v.head_seq, i64::MAX as u64);
    app.finish().await;
}

/// A read of the past over a broken journal is refused naming the break, FAILED_PRECONDITION
/// JOURNAL_BROKEN with the seq, as a checkpoint over it is (since 2026-12-07: INTERNAL, which
/// said nothing an auditor could act on): a loan rebuilt as of a date over a repayment whose
/// recorded figures do not recompute, and the balances as of a date over postings that cannot
/// be read.
async fn a_broken_journal_is_named_to_a_reader_of_the_past(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let march = entry(&app.repay(&t.bank, &id, "2021-03-20", 100_000).await).seq;
    let june = entry(&app.repay(&t.bank, &id, "2021-06-20", 100_000).await).seq;
    let altered = format!(
        "update journal_txn set command_json = replace(command_json, '\"amount_fen\":100000', \
         '\"amount_fen\":100001') where ledger_id = '{LEDGER}' and seq = {march}"
    );
    assert_eq!(app.behind_the_back("journal_txn", &altered).await.expect("altered"), 1);
    let request =
        pb::GetLoanRequest { loan_id: id.clone(), as_of: "2021-04-01".into(), through_seq: 0 };
    let broken = expect_refused(app.loans(&t.auditor).get_loan(request).await, "JOURNAL_BROKEN");
    assert_eq!(metadata(&broken, "seq"), Some(march.to_string()));
    assert!(
        broken.message().contains(&format!("does not replay as loan {id}'s event")),
        "{broken:?}"
    );

    let unreadable = format!(
        "update journal_txn set postings = 'not postings' where ledger_id = '{LEDGER}' and seq = {june}"
    );
    assert_eq!(app.behind_the_back("journal_txn", &unreadable).await.expect("altered"), 1);
    let request = pb::GetBalancesRequest {
        ledger_id: LEDGER.into(),
        as_of: "2021-12-31".into(),
        account_prefix: String::new(),
        through_seq: 0,
    };
    let balances = match app.audit(&t.auditor).get_balances(request).await {
        Ok(stream) => collect(stream.into_inner()).await.map(|_| ()),
        Err(status) => Err(status),
    };
    let broken = expect_refused(balances.map(tonic::Response::new), "JOURNAL_BROKEN");
    assert_eq!(metadata(&broken, "seq"), Some(june.to_string()));
    app.finish().await;
}

/// The subsidy register's list is whole or ends in an error after the loans before the one that
/// fails (since 2026-12-07: the loans before it on its page of 500 were not given): C002's March
/// repayment altered, the register of March as of 2021-04-01 (C002 rebuilt, a later event of it
/// after the date) gives C001's register, then JOURNAL_BROKEN at the altered seq.
async fn a_register_that_cannot_be_computed_ends_the_list_after_the_loans_before_it(
    backend: Backend,
) {
    let Some((app, t, first, second)) = with_two_disbursed_loans(backend).await else {
        return;
    };
    app.repay(&t.bank, &first, "2021-03-20", 100_000).await;
    let march = entry(&app.repay(&t.bank, &second, "2021-03-20", 100_000).await).seq;
    app.repay(&t.bank, &second, "2021-06-20", 100_000).await;
    let request = pb::ListSubsidyRegisterRequest {
        ledger_id: LEDGER.into(),
        bank_id: String::new(),
        due_from: "2021-03-01".into(),
        due_to: "2021-03-31".into(),
        as_of: "2021-04-01".into(),
        through_seq: 0,
    };
    let listed = async || {
        let stream = app.subsidy(&t.auditor).list_subsidy_register(request.clone()).await;
        let mut stream = stream.expect("ListSubsidyRegister").into_inner();
        let mut given = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(register)) => given.push(Ok(register.loan_id)),
                Ok(None) => return given,
                Err(status) => {
                    given.push(Err(status));
                    return given;
                }
            }
        }
    };
    let whole: Vec<String> = listed().await.into_iter().map(|r| r.expect("a register")).collect();
    assert_eq!(whole, [first.clone(), second.clone()]);

    let altered = format!(
        "update journal_txn set command_json = replace(command_json, '\"amount_fen\":100000', \
         '\"amount_fen\":100001') where ledger_id = '{LEDGER}' and seq = {march}"
    );
    assert_eq!(app.behind_the_back("journal_txn", &altered).await.expect("altered"), 1);
    let mut given = listed().await;
    assert_eq!(given.len(), 2, "{given:?}");
    let broken = given.pop().expect("the error").expect_err("C002's register fails");
    assert_eq!(given.pop().expect("C001").expect("C001's register"), first);
    let broken = expect_refused(Err::<tonic::Response<()>, _>(broken), "JOURNAL_BROKEN");
    assert_eq!(metadata(&broken, "seq"), Some(march.to_string()));
    app.finish().await;
}

/// Verify's list of 100 problems is shared between the kinds it finds: with every one of 110
/// repayments' hashes altered (a hundred-odd journal problems), a balance altered too is still
/// listed, not only counted (since 2026-12-07: the journal's came first under the one cap).
async fn verify_lists_every_kind_of_problem_it_finds(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let items = (0..110).map(|i| repayment_item(&rid("r"), &id, "2021-03-20", 100 + i)).collect();
    let posted = app.loans(&t.bank).submit_batch(pb::SubmitBatchRequest { items }).await;
    assert_eq!(posted.expect("SubmitBatch").into_inner().posted, 110);
    let hashes = format!(
        "update journal_txn set hash = replace(hash, substr(hash, 1, 1), 'x') \
         where ledger_id = '{LEDGER}' and kind = 'loan.repaid'"
    );
    assert_eq!(app.behind_the_back("journal_txn", &hashes).await.expect("altered"), 110);
    let principal = format!("loan/{id}/principal");
    let balance = format!(
        "update account_balance set balance_fen = balance_fen + 7 where account = '{principal}'"
    );
    assert_eq!(app.db.execute_raw(&balance).await.expect("altered"), 1);
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok);
    assert_eq!(v.problems.len(), 101, "{:?}", v.problems);
    let named = format!("balance of {principal}: stored");
    assert!(v.problems.iter().any(|p| p.starts_with(&named)), "{:?}", v.problems);
    assert!(v.problems[100].starts_with("... and "), "{:?}", v.problems[100]);
    app.finish().await;
}

/// GetLoanHistory through a seq (since 2026-12-07) gives the loan's transactions a checkpoint
/// of that size holds: the repayment recorded after it is left out, a seq before the contract
/// is NOT_FOUND, one past the journal's range INVALID_ARGUMENT naming the field.
async fn a_loan_history_through_a_seq(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let whole = app.history(&t.auditor, &id).await;
    let paid = entry(&app.repay(&t.bank, &id, "2021-03-20", 100_000).await).seq;
    let history = |through_seq: u64| {
        let mut audit = app.audit(&t.auditor);
        let loan_id = id.clone();
        async move {
            let request = pb::GetLoanHistoryRequest { loan_id, through_seq };
            let stream = audit.get_loan_history(request).await?;
            collect(stream.into_inner()).await.map(tonic::Response::new)
        }
    };
    let before = history(paid - 1).await.expect("through the seq before").into_inner();
    assert_eq!(before, whole, "the repayment left out");
    let through = history(paid).await.expect("through the repayment").into_inner();
    assert_eq!(through.len(), whole.len() + 1);
    assert_eq!(through.last().map(|e| (e.seq, e.kind.as_str())), Some((paid, "loan.repaid")));
    assert_eq!(history(0).await.expect("all").into_inner(), through);
    let contract = whole.first().expect("the contract").seq;
    let none = expect_code(history(contract - 1).await, Code::NotFound);
    assert!(none.message().contains(&format!("recorded by seq {}", contract - 1)), "{none:?}");
    expect_invalid(history(u64::MAX).await, "through_seq");
    app.finish().await;
}

/// A loan whose stored row cannot be decoded (its servicing state altered by hand) is a fault
/// to its own bank, INTERNAL, but to another bank a missing loan, as any of its loans is: who
/// may read a loan is checked before its row is decoded. So on SQLite with a column holding a
/// value of another type (read apart from the owner's columns), with its history (a journal
/// row of the loan that cannot be read is INTERNAL to its bank and the auditor, NOT_FOUND to
/// another) and with a household whose status or row cannot be (NOT_FOUND to another ledger's
/// finance office, INTERNAL to its own).
async fn a_damaged_row_is_missing_to_who_may_not_read_it(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.register_bank(&t.operator, "B2").await;
    let b2 = app.bank_token("B2").await;
    let seq = entry(&app.repay(&t.bank, &id, "2021-03-20", 100_000).await).seq;
    let damaged = app
        .db
        .execute_raw(&format!("update loan set servicing_json = 'not json' where loan_id = '{id}'"))
        .await
        .expect("the loan's row altered");
    assert_eq!(damaged, 1);
    let get = |token: &str| {
        let mut loans = app.loans(token);
        let loan_id = id.clone();
        async move {
            loans
                .get_loan(pb::GetLoanRequest { loan_id, as_of: String::new(), through_seq: 0 })
                .await
        }
    };
    let status = expect_code(get(&b2).await, Code::NotFound);
    assert_eq!(status.message(), format!("loan {id} not found"));
    expect_code(get(&t.bank).await, Code::Internal);
    if backend == Backend::Sqlite {
        let sql = format!("update loan set principal_fen = 'many' where loan_id = '{id}'");
        assert_eq!(app.db.execute_raw(&sql).await.expect("the loan's row altered"), 1);
        let status = expect_code(get(&b2).await, Code::NotFound);
        assert_eq!(status.message(), format!("loan {id} not found"));
        expect_code(get(&t.bank).await, Code::Internal);
    }
    // A journal row of the loan that cannot be read: on SQLite a column of another type, on
    // PostgreSQL (whose columns hold their own type) postings that are not postings.
    let assignment = match backend {
        Backend::Sqlite => "recorded_at_us = 'yesterday'",
        Backend::Postgres => "postings = 'not postings'",
    };
    let sql =
        format!("update journal_txn set {assignment} where ledger_id = '{LEDGER}' and seq = {seq}");
    assert_eq!(app.behind_the_back("journal_txn", &sql).await.expect("the row altered"), 1);
    let history = |token: &str| {
        let mut audit = app.audit(token);
        let loan_id = id.clone();
        async move {
            let stream = audit
                .get_loan_history(pb::GetLoanHistoryRequest { loan_id, through_seq: 0 })
                .await?;
            collect(stream.into_inner()).await.map(tonic::Response::new)
        }
    };
    let status = expect_code(history(&b2).await, Code::NotFound);
    assert_eq!(status.message(), format!("loan {id} not found"));
    expect_code(history(&t.bank).await, Code::Internal);
    expect_code(history(&t.auditor).await, Code::Internal);

    // A household: a status that is no status, and on SQLite a name that is no text.
    app.create_ledger(&t.operator, "450122", "another county").await;
    let elsewhere = app.token(Role::Finance, "450122").await;
    let household = |token: &str| {
        let mut registry = app.registry(token);
        let household_id = HOUSEHOLD.to_string();
        async move { registry.get_household(pb::GetHouseholdRequest { household_id }).await }
    };
    // A status that is no status; on SQLite also a status's date that is no text, then a
    // name that is no text (each put back before the next).
    let mut damages = vec![("household_status", "status = 'lucky'", "status = 'registered_poor'")];
    if backend == Backend::Sqlite {
        damages.push((
            "household_status",
            "effective_date = x'00'",
            "effective_date = '2016-01-01'",
        ));
        damages.push(("household", "head_name = x'00'", "head_name = 'x'"));
    }
    for (table, damage, repair) in damages {
        let sql =
            |set: &str| format!("update {table} set {set} where household_id = '{HOUSEHOLD}'");
        let altered = match table {
            "household" => app.db.execute_raw(&sql(damage)).await,
            _ => app.behind_the_back(table, &sql(damage)).await,
        };
        assert_eq!(altered.expect("the household altered"), 1, "{damage}");
        let status = expect_code(household(&elsewhere).await, Code::NotFound);
        assert_eq!(status.message(), format!("household {HOUSEHOLD} not found"), "{damage}");
        expect_code(household(&t.finance).await, Code::Internal);
        let repaired = match table {
            "household" => app.db.execute_raw(&sql(repair)).await,
            _ => app.behind_the_back(table, &sql(repair)).await,
        };
        assert_eq!(repaired.expect("the household put back"), 1, "{repair}");
    }
    app.finish().await;
}

/// SQLite stores a value of any type in any column: a journal column changed by hand to a value
/// of another type, or to text that is not UTF-8, is reported at its seq, where the chain
/// breaks, instead of ending verify with an error. PostgreSQL's columns hold their own type
/// only.
async fn mistyped_journal_columns_are_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let head = entry(&app.repay(&t.bank, &id, "2021-03-20", 100_000).await).seq;
    let set =
        async |assignment: &str| {
            app.behind_the_back("journal_txn", &format!(
                "update journal_txn set {assignment} where ledger_id = '450121' and seq = {head}"
            ))
            .await
        };
    if backend == Backend::Postgres {
        // (A value of another type is converted to the column's, or refused.)
        assert!(set("recorded_at_us = 'yesterday'").await.is_err());
        assert!(app.verify(&t.auditor).await.ok);
        app.finish().await;
        return;
    }
    let reported = async |column: &str, what: &str| {
        let v = app.verify(&t.auditor).await;
        assert_eq!(v.first_break_seq, head, "{v:?}");
        assert_eq!(v.problems[0], format!("seq {head}: its {column} is stored as {what}"));
        assert!(v.problems[1].starts_with(&format!("seq {head}: stored hash differs")), "{v:?}");
    };
    // The kind's own bytes, as a blob: the type alone differs.
    assert_eq!(set("kind = cast(kind as blob)").await.expect("a blob"), 1);
    reported("kind", "another type").await;
    assert_eq!(set("kind = cast(kind as text)").await.expect("text again"), 1);
    assert!(app.verify(&t.auditor).await.ok);
    // Text that is not UTF-8 (a blob of other bytes, made text).
    assert_eq!(set("kind = cast(x'ff' as text)").await.expect("text"), 1);
    let v = app.verify(&t.auditor).await;
    assert_eq!(v.problems[0], format!("seq {head}: its kind is stored as text that is not UTF-8"));
    assert_eq!(set("kind = 'loan.repaid'").await.expect("the kind again"), 1);
    assert!(app.verify(&t.auditor).await.ok);
    // A value date as a blob: reported by verify, and GetBalances refuses to sum it rather than
    // count it at every date (it reads as empty text), naming the break (JOURNAL_BROKEN, since
    // 2026-12-07; INTERNAL before).
    assert_eq!(set("value_date = cast(value_date as blob)").await.expect("a blob"), 1);
    reported("value_date", "another type").await;
    let balances = pb::GetBalancesRequest {
        ledger_id: LEDGER.into(),
        as_of: "2021-01-01".into(),
        account_prefix: String::new(),
        through_seq: 0,
    };
    let mut audit = app.audit(&t.auditor);
    let summed = match audit.get_balances(balances.clone()).await {
        Ok(stream) => collect(stream.into_inner()).await.map(|_| ()),
        Err(e) => Err(e),
    };
    let broken = expect_refused(summed.map(tonic::Response::new), "JOURNAL_BROKEN");
    assert_eq!(metadata(&broken, "seq"), Some(head.to_string()));
    assert_eq!(set("value_date = cast(value_date as text)").await.expect("text again"), 1);
    assert!(app.verify(&t.auditor).await.ok);
    let chunks = collect(audit.get_balances(balances).await.expect("summed").into_inner()).await;
    assert!(chunks.expect("summed").iter().all(|c| c.balances.is_empty()), "nothing by 2021-01-01");
    assert_eq!(set("recorded_at_us = 'yesterday'").await.expect("text"), 1);
    reported("recorded_at_us", "another type").await;
    // The head's seq a real: read at the integer below it, and reported.
    assert_eq!(set(&format!("seq = {head}.5")).await.expect("a real"), 1);
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok && v.head_seq == head, "{v:?}");
    assert!(
        v.problems
            .contains(&format!("seq {head}: its seq is stored as a number that is not an integer")),
        "{v:?}"
    );
    // The head's seq text: the row has no place in the chain, which ends before it (its
    // effects on the read models, and its idempotency record, are reported too).
    let moved = app
        .behind_the_back(
            "journal_txn",
            &format!(
                "update journal_txn set seq = 'last' where ledger_id = '450121' and seq = {head}.5"
            ),
        )
        .await
        .expect("text");
    assert_eq!(moved, 1);
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok && v.head_seq == head - 1, "{v:?}");
    assert!(
        v.problems.contains(&
            "a journal row of ledger 450121 has the text \"last\" as its seq: no place in the chain"
                .to_string()
        ),
        "{v:?}"
    );
    app.finish().await;
}

/// A journal row stored by hand under seq 0 or below (the triggers let a new row in) has no
/// place in the chain, which starts at 1: neither scanned nor read by any call, it would still
/// count in the `posting` view's sums. It is reported.
async fn rows_before_the_chain_are_reported(backend: Backend) {
    let Some((app, t, _)) = with_disbursed_loan(backend).await else {
        return;
    };
    let disbursed = app
        .journal(&t.auditor, LEDGER)
        .await
        .into_iter()
        .find(|txn| txn.kind == "loan.disbursed")
        .expect("the disbursement")
        .seq;
    for seq in [0, -3] {
        let inserted = app
            .db
            .execute_raw(&format!(
                "insert into journal_txn (ledger_id, seq, kind, value_date, recorded_at_us, actor, \
                 request_id, command_json, prev_hash, hash, postings) \
                 select ledger_id, {seq}, kind, value_date, recorded_at_us, actor, request_id, \
                 command_json, prev_hash, hash, postings from journal_txn \
                 where ledger_id = '{LEDGER}' and seq = {disbursed}"
            ))
            .await
            .expect("a new row is let in");
        assert_eq!(inserted, 1);
    }
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok, "{v:?}");
    for seq in [-3, 0] {
        let text = format!(
            "a journal row of ledger {LEDGER} has the number {seq} as its seq: no place in the chain"
        );
        assert!(v.problems.contains(&text), "{text}: {v:?}");
    }
    app.finish().await;
}

/// The hash covers a transaction's postings, not their stored text: the same postings spaced
/// otherwise still verify, and the history shows them as before. Text that does not read as
/// postings is reported at its seq, and the history's reader refuses it as an internal error.
async fn postings_text_is_checked_as_postings(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let head = entry(&app.repay(&t.bank, &id, "2021-03-20", 1_029_410).await).seq;
    let before = app.history(&t.bank, &id).await;
    let respaced = app
        .behind_the_back(
            "journal_txn",
            &format!(
                "update journal_txn set postings = replace(postings, ',', ' , ') \
             where ledger_id = '450121' and seq = {head}"
            ),
        )
        .await
        .expect("with the triggers gone the update goes through");
    assert_eq!(respaced, 1);
    assert!(app.verify(&t.auditor).await.ok);
    assert_eq!(app.history(&t.bank, &id).await, before);

    // The head's postings stored as `value` (SQL): reported at the head as unreadable.
    let unreadable = async |value: &str| {
        app.behind_the_back(
            "journal_txn",
            &format!(
                "update journal_txn set postings = {value} \
                 where ledger_id = '450121' and seq = {head}"
            ),
        )
        .await
        .expect("with the triggers gone the update goes through");
        let v = app.verify(&t.auditor).await;
        assert_eq!(v.first_break_seq, head, "{v:?}");
        assert!(
            v.problems[0].starts_with(&format!("seq {head}: its postings cannot be read: ")),
            "{v:?}"
        );
    };
    // SQLite stores any type in any column: a blob is reported the same way.
    if backend == Backend::Sqlite {
        unreadable("x'5b5d00'").await;
    }
    unreadable("'not postings'").await;
    // The transaction before it gone too: the first break is the gap, before the unreadable
    // postings.
    let removed = app
        .behind_the_back(
            "journal_txn",
            &format!("delete from journal_txn where ledger_id = '450121' and seq = {}", head - 1),
        )
        .await
        .expect("with the triggers gone the delete goes through");
    assert_eq!(removed, 1);
    let v = app.verify(&t.auditor).await;
    assert_eq!(v.first_break_seq, head - 1, "{v:?}");
    assert_eq!(v.problems[0], format!("seq {} is missing (next stored is {head})", head - 1));
    let refused = match app
        .audit(&t.bank)
        .get_loan_history(pb::GetLoanHistoryRequest { loan_id: id.clone(), through_seq: 0 })
        .await
    {
        Err(status) => status,
        Ok(stream) => collect(stream.into_inner()).await.expect_err("unreadable postings"),
    };
    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    app.finish().await;
}

/// What Verify's journal scan saw, as text: each transaction's seq and postings.
#[derive(Default)]
struct ScanLog(Vec<String>);

impl loanledger::store::scan::JournalVisitor for ScanLog {
    fn txn(&mut self, txn: loanledger::store::scan::TxnRef<'_>) {
        let postings = loanledger::ledger::posting::unpack(txn.postings).expect("postings");
        let legs: Vec<String> =
            postings.iter().map(|p| format!("{}={}", p.account, p.amount.0)).collect();
        self.0.push(format!("{} {}", txn.seq, legs.join(" ")));
    }
}

/// Verify's journal scan reads in pages, each page in one snapshot: whatever the page size (one
/// transaction, pages that end exactly at the head, pages longer than the journal), every
/// transaction comes once, in order, with its own postings.
async fn journal_scan_pages(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 1_029_410).await;
    let head = entry(&app.repay(&t.bank, &id, "2021-06-20", 500_000).await).seq as i64;

    let whole = app
        .db
        .scan_journal_in_pages(LEDGER, 10_000, i64::MAX, ScanLog::default())
        .await
        .expect("scan")
        .0;
    assert_eq!(whole.len() as i64, head, "{whole:#?}");
    for (i, line) in whole.iter().enumerate() {
        assert!(
            line.starts_with(&format!("{} ", i + 1)),
            "transaction {} in order: {whole:#?}",
            i + 1
        );
    }
    assert!(
        whole.iter().any(|l| l.contains("bank/B1/interest_income=")),
        "postings come with their transactions: {whole:#?}"
    );
    for page in [1, 2, 3, head - 1, head, head + 1] {
        let paged = app
            .db
            .scan_journal_in_pages(LEDGER, page, i64::MAX, ScanLog::default())
            .await
            .expect("scan")
            .0;
        assert_eq!(paged, whole, "pages of {page}");
    }
    // SQLite: a row stored by hand with a real seq after 2 (read as 2) is read once whatever
    // the page size, also when a page ends at 2.
    if backend == Backend::Sqlite {
        let inserted = app
            .db
            .execute_raw(
                "insert into journal_txn select ledger_id, 2.5, kind, value_date, recorded_at_us, \
                 actor, request_id || '.5', command_json, prev_hash, hash, postings \
                 from journal_txn where ledger_id = '450121' and seq = 2",
            )
            .await
            .expect("an insert is not refused");
        assert_eq!(inserted, 1);
        let scan = async |page| {
            app.db.scan_journal_in_pages(LEDGER, page, i64::MAX, ScanLog::default()).await
        };
        let whole = scan(10_000).await.expect("scan").0;
        assert_eq!(whole.len() as i64, head + 1);
        assert_eq!(whole[1], whole[2]);
        for page in [1, 2, 3] {
            assert_eq!(scan(page).await.expect("scan").0, whole, "pages of {page}");
        }
    }
    app.finish().await;
}

/// Verify calls at once take turns (one runs at a time) and each gets the whole answer.
async fn concurrent_verifies_take_turns(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = loan_id("C001");
    app.create_loan(&t.bank, standard_loan("C001", HOUSEHOLD)).await;
    let head = entry(&app.disburse(&t.bank, &id, "2021-01-25").await).seq;
    let all = verify_at_once(&app, &t.auditor, 4);
    let answers = tokio::time::timeout(std::time::Duration::from_secs(60), all)
        .await
        .expect("every verify gets its turn");
    assert_eq!(answers.len(), 4);
    for v in &answers {
        assert!(v.ok, "{v:?}");
        assert_eq!(v.head_seq, head);
        assert_eq!(v.head_hash, answers[0].head_hash);
    }
    app.finish().await;
}

/// `n` Verify calls sent at once.
async fn verify_at_once(app: &TestApp, token: &str, n: usize) -> Vec<pb::VerifyResponse> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let mut client = app.audit(token);
            tokio::spawn(async move {
                client
                    .verify(pb::VerifyRequest {
                        ledger_id: LEDGER.into(),
                        recheck_claims: false,
                        recheck_answers: false,
                    })
                    .await
                    .expect("Verify")
                    .into_inner()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.expect("the call's task"));
    }
    answers
}

/// The read models are rebuilt from the journal alone: a loan's outstanding principal, a
/// household record, an account balance (changed, then deleted) and a loan row (deleted) behind
/// the service's back (these tables are not append-only: they are read models) are each
/// reported by Verify, while the chain itself still holds.
async fn tampered_read_models_are_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    assert!(app.verify(&t.auditor).await.ok);
    // Runs `sql` behind the service's back (one row changed); Verify then reports one problem,
    // containing `expected`, and the chain still holds.
    let reports = async |sql: String, expected: String| {
        let changed = app.db.execute_raw(&sql).await.expect(&sql);
        assert_eq!(changed, 1, "{sql}");
        let v = app.verify(&t.auditor).await;
        assert!(!v.ok, "after {sql}: {v:?}");
        assert_eq!(v.first_break_seq, 0, "the chain holds after {sql}: {v:?}");
        assert!(
            v.problems.len() == 1 && v.problems[0].contains(&expected),
            "after {sql}, expected {expected}: {v:?}"
        );
    };
    // Puts back what `reports` changed: Verify passes again.
    let restores = async |sql: String| {
        app.db.execute_raw(&sql).await.expect(&sql);
        assert!(app.verify(&t.auditor).await.ok, "after {sql}");
    };

    let outstanding = |delta: &str| {
        format!(
            "update loan set principal_outstanding_fen = principal_outstanding_fen {delta} \
             where loan_id = '{id}'"
        )
    };
    reports(outstanding("- 1"), format!("loan {id}: stored state differs from the journal")).await;
    restores(outstanding("+ 1")).await;
    // A value no loan has: reported at its loan, not a failed verify (INTERNAL).
    let servicing =
        |json: &str| format!("update loan set servicing_json = {json} where loan_id = '{id}'");
    let stored: Vec<String> = app
        .db
        .query_texts(&format!("select servicing_json from loan where loan_id = '{id}'"))
        .await
        .expect("the loan's servicing");
    reports(servicing("'{'"), format!("loan {id}: its stored row cannot be read as a loan")).await;
    restores(servicing(&format!("'{}'", stored[0].replace('\'', "''")))).await;
    // SQLite: a balance stored as text by hand is reported, and so is the balance it leaves
    // missing, rather than failing the verify.
    if backend == Backend::Sqlite {
        let account = format!("loan/{id}/principal");
        let set = |value: &str| {
            format!("update account_balance set balance_fen = {value} where account = '{account}'")
        };
        app.db.execute_raw(&set("'lots'")).await.expect("a balance as text");
        let v = app.verify(&t.auditor).await;
        assert!(!v.ok && v.first_break_seq == 0, "{v:?}");
        assert!(v.problems[0].starts_with("a row of account_balance cannot be read"), "{v:?}");
        assert!(v.problems[1].starts_with(&format!("balance of {account}: missing")), "{v:?}");
        restores(set("5000000")).await;
    }

    let ledger_name =
        |name: &str| format!("update ledger set name = '{name}' where ledger_id = '{LEDGER}'");
    reports(ledger_name("forged"), format!("the name of ledger {LEDGER} differs")).await;
    restores(ledger_name("武鸣区 Wuming")).await;

    // The ledger's row gone (on SQLite, its name made a blob instead: the service's
    // connections keep the foreign keys): verify still runs, and reports it, where it answered
    // NOT_FOUND (or INTERNAL, the name not text).
    let (damage, repair) = match backend {
        Backend::Sqlite => (
            format!("update ledger set name = cast(name as blob) where ledger_id = '{LEDGER}'"),
            format!("update ledger set name = cast(name as text) where ledger_id = '{LEDGER}'"),
        ),
        Backend::Postgres => (
            format!(
                "begin; set local session_replication_role = replica; \
                 delete from ledger where ledger_id = '{LEDGER}'; commit"
            ),
            format!(
                "begin; set local session_replication_role = replica; \
                 insert into ledger (ledger_id, name) values ('{LEDGER}', '武鸣区 Wuming'); commit"
            ),
        ),
    };
    app.db.execute_raw(&damage).await.expect("the ledger's row damaged");
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok && v.first_break_seq == 0, "{v:?}");
    let named = format!(
        "the name of ledger {LEDGER} differs from the journal (stored none, journal \"武鸣区 Wuming\")"
    );
    assert!(v.problems.contains(&named), "{v:?}");
    // Its journal is still read, summed and signed for the auditor (it was NOT_FOUND, or
    // INTERNAL for the name that is no text).
    assert!(!app.journal(&t.auditor, LEDGER).await.is_empty());
    app.audit(&t.auditor)
        .get_balances(pb::GetBalancesRequest { ledger_id: LEDGER.into(), ..Default::default() })
        .await
        .expect("the damaged ledger's balances");
    app.audit(&t.auditor)
        .get_checkpoint(pb::GetCheckpointRequest { ledger_id: LEDGER.into(), tree_size: 0 })
        .await
        .expect("the damaged ledger's checkpoint");
    restores(repair).await;

    // A loan, a bank and a household inserted by hand under a ledger of their own, with no
    // journal: no ledger's verify read them, yet the service does (the loan is found by its id,
    // in its bank's listing, against its household's cap). Every verify reports them.
    let forge = format!(
        "insert into ledger (ledger_id, name) values ('ZZ', 'forged'); \
         insert into bank (bank_id, ledger_id, name) values ('ZB', 'ZZ', 'forged'); \
         insert into household (household_id, ledger_id, head_name, head_id_number, township, \
         village) values ('ZH', 'ZZ', 'x', 'x', '', ''); \
         create temporary table forged as select * from loan where loan_id = '{id}'; \
         update forged set loan_id = 'ZZ-1', ledger_id = 'ZZ'; \
         insert into loan select * from forged; drop table forged"
    );
    app.db.execute_raw(&forge).await.expect("the rows forged");
    let strays: Vec<String> = ["bank", "household", "loan"]
        .iter()
        .map(|t| format!("{t} rows are stored under ledger \"ZZ\", which has no journal"))
        .collect();
    verify_reports(&app, &t.auditor, &strays).await;
    restores(
        "delete from loan where ledger_id = 'ZZ'; delete from household where ledger_id = 'ZZ'; \
         delete from bank where ledger_id = 'ZZ'; delete from ledger where ledger_id = 'ZZ'"
            .into(),
    )
    .await;
    if backend == Backend::Sqlite {
        // Under a ledger id of bytes that are not UTF-8 (a blob): reported, shown lossily, not
        // the end of verify (it was INTERNAL, for every ledger).
        let forge = "insert into ledger (ledger_id, name) values (x'ff', 'forged'); \
                     insert into bank (bank_id, ledger_id, name) values ('ZB', x'ff', 'forged')";
        app.db.execute_raw(forge).await.expect("the rows forged");
        let odd = "bank rows are stored under ledger \"\u{fffd}\", which has no journal";
        verify_reports(&app, &t.auditor, &[odd.to_string()]).await;
        restores(
            "delete from bank where bank_id = 'ZB'; delete from ledger where name = 'forged'"
                .into(),
        )
        .await;
    }

    // A policy version inserted by hand whose parameters cannot be read (the guards refuse
    // updates and deletes, not inserts): reported and left out, on PostgreSQL too, not a failed
    // verify (INTERNAL).
    reports(
        format!(
            "insert into policy_version (ledger_id, effective_date, params_json, seq) \
             values ('{LEDGER}', '2099-01-01', 'x', 1)"
        ),
        "a row of policy_version cannot be read".into(),
    )
    .await;
    let gone = app
        .behind_the_back("policy_version", "delete from policy_version where params_json = 'x'")
        .await
        .expect("the row deleted");
    assert_eq!(gone, 1);
    assert!(app.verify(&t.auditor).await.ok);

    let head_name = |name: &str| {
        format!("update household set head_name = '{name}' where household_id = '{HOUSEHOLD}'")
    };
    reports(head_name("someone else"), format!("the households of ledger {LEDGER} differ")).await;
    restores(head_name(&format!("户主{HOUSEHOLD}"))).await;

    // A balance changed, then the same balance gone, then the loan's row gone: each named with
    // the figure the journal gives.
    let principal = format!("loan/{id}/principal");
    let journal_gives = balances(&app.journal(&t.auditor, LEDGER).await)[&principal];
    assert!(journal_gives > 0);
    reports(
        format!(
            "update account_balance set balance_fen = balance_fen + 7 where account = '{principal}'"
        ),
        format!(
            "balance of {principal}: stored {} fen, journal gives {journal_gives} fen",
            journal_gives + 7
        ),
    )
    .await;
    reports(
        format!("delete from account_balance where account = '{principal}'"),
        format!("balance of {principal}: missing, journal gives {journal_gives} fen"),
    )
    .await;
    restores(format!(
        "insert into account_balance (ledger_id, account, balance_fen) \
         values ('{LEDGER}', '{principal}', {journal_gives})"
    ))
    .await;
    reports(
        format!("delete from loan where loan_id = '{id}'"),
        format!("loan {id} is in the journal but missing from the read model"),
    )
    .await;
    app.finish().await;
}

/// A loan's servicing state as versions before change 78 stored it, every zero figure and empty
/// list written out: the loan reads, verifies and is serviced as before, and its next event
/// stores it without them.
async fn a_loan_stored_whole_by_an_earlier_version(backend: Backend) {
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let before = app.get_loan(&t.bank, &id).await;
    let whole = format!(
        "update loan set servicing_json = replace(servicing_json, '{{\"maturity_date\"', \
         '{{\"interest_segments\":[],\"penalty_segments\":[],\"compound_segments\":[],\
         \"interest_due\":[],\"interest_settled_fen\":0,\"penalty_fen\":0,\
         \"compound_fen\":0,\"misuse_since\":null,\"extensions\":0,\"penalty_settled_fen\":0,\
         \"compound_settled_fen\":0,\"penalty_paid_fen\":0,\"compound_paid_fen\":0,\
         \"written_off_fen\":0,\"maturity_date\"') \
         where loan_id = '{id}' and servicing_json not like '%penalty_fen%'"
    );
    assert_eq!(app.db.execute_raw(&whole).await.expect(&whole), 1, "{whole}");
    // Read back by a new server (the writer's cache holds no loan).
    app.restart().await;
    assert_eq!(app.get_loan(&t.bank, &id).await, before);
    assert!(app.verify(&t.auditor).await.ok);
    let repaid = app.repay(&t.bank, &id, "2021-02-01", 100).await;
    let loan = repaid.loan.expect("the loan");
    assert_eq!(loan.principal_outstanding_fen, before.principal_outstanding_fen - 100);
    assert!(app.verify(&t.auditor).await.ok);
    let compact = format!(
        "update loan set last_seq = last_seq where loan_id = '{id}' \
         and servicing_json not like '%penalty_fen%' and servicing_json not like '%extensions%'"
    );
    assert_eq!(app.db.execute_raw(&compact).await.expect(&compact), 1, "stored compact again");
    app.finish().await;
}

/// Verify reports exactly `expected`, read-model problems: the chain itself holds.
async fn verify_reports(app: &TestApp, auditor: &str, expected: &[String]) {
    let v = app.verify(auditor).await;
    assert!(!v.ok, "{v:?}");
    assert_eq!(v.first_break_seq, 0, "the chain holds: {v:?}");
    assert_eq!(v.problems, expected, "{v:?}");
}

/// Verify rebuilds the loan history links (`journal_loan`, which a loan's history is read
/// through) from the journal and compares them with the stored ones: a link slipped in that puts
/// another loan's transaction into this loan's history, a link naming a loan that does not
/// exist, and a link removed are each reported with their loan and seq; the chain still holds.
async fn tampered_history_links_are_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.register_household(&t.finance, "H002", "19800517").await;
    let other = loan_id("C002");
    app.create_loan(&t.bank, standard_loan("C002", "H002")).await;
    let foreign = entry(&app.disburse(&t.bank, &other, "2021-01-25").await).seq;
    let repaid = entry(&app.repay(&t.bank, &id, "2021-03-20", 1_029_410).await).seq;
    let before = app.history(&t.bank, &id).await;
    assert!(app.verify(&t.auditor).await.ok);
    let link = |loan: &str, seq: u64| link_sql(loan, LEDGER, seq);
    // Each step's problems, and the chain still holds.
    let reports = async |expected: &[String]| verify_reports(&app, &t.auditor, expected).await;

    // The other loan's disbursement slipped into this loan's history: a bank would see it there.
    let inserted = app.db.execute_raw(&link(&id, foreign)).await.expect("inserting is not refused");
    assert_eq!(inserted, 1);
    let shown = app.history(&t.bank, &id).await;
    assert_eq!(shown.len(), before.len() + 1, "the forged link shows in the history");
    let lists_foreign =
        format!("loan {id}: its history lists seq {foreign}, which is not one of its transactions");
    reports(std::slice::from_ref(&lists_foreign)).await;

    // A link naming no loan at all.
    app.db.execute_raw(&link("B1-GHOST", repaid)).await.expect("inserting is not refused");
    let lists_ghost = format!(
        "loan B1-GHOST: its history lists seq {repaid}, which is not one of its transactions"
    );
    reports(&[lists_foreign.clone(), lists_ghost.clone()]).await;

    // One of this loan's own links removed (behind the trigger's back): the repayment is gone
    // from its history.
    let removed = app
        .behind_the_back(
            "journal_loan",
            &format!("delete from journal_loan where loan_id = '{id}' and seq = {repaid}"),
        )
        .await
        .expect("with the trigger gone the delete goes through");
    assert_eq!(removed, 1);
    assert_eq!(app.history(&t.bank, &id).await.len(), before.len());
    let lacks = format!("loan {id}: its history lacks seq {repaid}, one of its transactions");
    reports(&[lists_foreign, lacks, lists_ghost]).await;
    app.finish().await;
}

/// Verify checks the idempotency records against the journal: every transaction's request has
/// the record that names its seq. A record removed (a retry of its request is then written
/// again: the reason it matters), a record moved to another transaction, and one naming a seq
/// the journal does not have are each reported; the chain still holds. So are a record of a
/// journaled write's kind stored under no ledger (a request sent under its id is answered as
/// recorded and not written) and one under a ledger id with no journal.
async fn tampered_idempotency_records_are_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let first =
        entry(&app.repay_as(&t.bank, "pay-1", &id, "2021-03-20", 1_029_410).await.unwrap()).seq;
    let second = entry(&app.repay_as(&t.bank, "pay-2", &id, "2021-04-20", 500).await.unwrap()).seq;
    // Another ledger's records are its verify's: none of this one's concern.
    app.create_ledger(&t.operator, "450122", "another county").await;
    assert!(app.verify(&t.auditor).await.ok);
    let reports = async |expected: &[String]| verify_reports(&app, &t.auditor, expected).await;

    // A record stored by hand under no ledger, where only the answers of writes without a
    // journal transaction are kept (refusals, settlement runs), no chain's records: the first
    // repayment's answer under a request id not sent yet, and a record under a ledger id with
    // no journal. A repayment sent under that id, as the first one, is then answered with the
    // first one's entry and not written: the bank is told it was recorded.
    let ghost = "insert into idempotency (scope, request_id, fingerprint, result_json, \
                 ledger_id, seq) select scope, 'pay-3', fingerprint, result_json, '', 0 \
                 from idempotency where request_id = 'pay-1'; \
                 insert into idempotency (scope, request_id, fingerprint, result_json, \
                 ledger_id, seq) values ('bank:B1', 'elsewhere', 'f', '{}', 'ZZ', 1)";
    app.db.execute_raw(ghost).await.expect("inserting is not refused");
    let journal = app.journal(&t.auditor, LEDGER).await.len();
    let ghosted = app.repay_as(&t.bank, "pay-3", &id, "2021-03-20", 1_029_410).await.unwrap();
    assert_eq!(entry(&ghosted).seq, first, "answered with the first repayment's entry");
    assert_eq!(app.journal(&t.auditor, LEDGER).await.len(), journal, "nothing written");
    reports(&[
        "idempotency rows are stored under ledger \"ZZ\", which has no journal".to_string(),
        "the answer stored for request \"pay-3\" of bank:B1 under no ledger is a loan_ref \
         answer, given only with a journal transaction: a retry of that request would be \
         answered with it and nothing written"
            .to_string(),
    ])
    .await;
    // A refusal kept there is what such a record may be.
    let refused =
        r#"{"outcome":"refused","refusal":{"code":"failed_precondition","message":"no"}}"#;
    let kept = format!(
        "delete from idempotency where ledger_id = 'ZZ'; \
         update idempotency set result_json = '{refused}' where request_id = 'pay-3'"
    );
    app.behind_the_back("idempotency", &kept).await.expect("the records changed");
    assert!(app.verify(&t.auditor).await.ok);
    app.behind_the_back("idempotency", "delete from idempotency where request_id = 'pay-3'")
        .await
        .expect("the record removed");

    // Records naming a seq past the head, and seq 0 (where the records of commands outside any
    // chain are kept, but under no ledger).
    let inserted = app
        .behind_the_back("idempotency", &format!(
            "insert into idempotency (scope, request_id, fingerprint, result_json, ledger_id, seq) \
             values ('bank:B1', 'forged', 'f', '{{}}', '{LEDGER}', {}), \
             ('bank:B1', 'forged-0', 'f', '{{}}', '{LEDGER}', 0)",
            second + 100
        ))
        .await
        .expect("inserting is not refused");
    assert_eq!(inserted, 2);
    let unjournaled =
        |seq: u64| format!("an idempotency record names seq {seq}, which is not in the journal");
    let (at_0, past_head) = (unjournaled(0), unjournaled(second + 100));
    reports(&[at_0.clone(), past_head.clone()]).await;

    // The first repayment's record moved onto the second's transaction.
    let moved = app
        .behind_the_back(
            "idempotency",
            &format!("update idempotency set seq = {second} where request_id = 'pay-1'"),
        )
        .await
        .expect("with the triggers gone the update goes through");
    assert_eq!(moved, 1);
    let no_record = |seq: u64| {
        format!("seq {seq}: its request has no idempotency record: a retry would be written again")
    };
    let another = format!("seq {second}: an idempotency record of another request names it");
    // Its answer, read through its request's own transaction, is the first repayment's: the
    // recheck of the stored answers finds nothing wrong with it.
    reports(&[at_0.clone(), no_record(first), another.clone(), past_head.clone()]).await;

    // The second repayment's record removed: its retry is written again, a second repayment.
    let removed = app
        .behind_the_back("idempotency", "delete from idempotency where request_id = 'pay-2'")
        .await
        .expect("with the triggers gone the delete goes through");
    assert_eq!(removed, 1);
    reports(&[at_0, no_record(first), another, no_record(second), past_head]).await;
    let again = app.repay_as(&t.bank, "pay-2", &id, "2021-04-20", 500).await;
    let again = entry(&again.expect("the retry is taken as new")).seq;
    assert!(again > second, "written again at seq {again}");
    app.finish().await;
}

/// Verify's recheck of the stored answers (`recheck_answers`) checks each transaction's stored
/// answer, which a retry of its request is given, against the journal. A batch item's brief
/// answer whose principal outstanding was changed behind the service's back is given to the
/// retry as changed (why it matters), and the recheck names it with the journal's figure; a
/// loan's answer turned into a refusal (its retry then refused), one that cannot be read, one
/// of another kind of transaction naming the right entry, (SQLite) bytes that are not UTF-8 and
/// a bank's and a household's registrations naming another and a ledger's answer giving
/// another name than its event's are each reported. Verify without the
/// recheck does not read the answers.
async fn tampered_stored_answers_are_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let batch = || pb::SubmitBatchRequest {
        items: vec![repayment_item("batch-1", &id, "2021-03-20", 1_029_410)],
    };
    let submit = async || {
        let answer = app.loans(&t.bank).submit_batch(batch()).await.expect("SubmitBatch");
        answer.into_inner().results.remove(0)
    };
    let first = submit().await;
    assert!(first.ok, "{first:?}");
    assert_eq!(first.principal_outstanding_fen, 4_000_000);
    let pay_2 = app.repay_as(&t.bank, "pay-2", &id, "2021-04-20", 500).await.unwrap();
    let (repaid, repaid_hash) = (entry(&pay_2).seq, entry(&pay_2).hash.clone());
    let journal = app.journal(&t.auditor, LEDGER).await;
    let v = app.verify(&t.auditor).await;
    assert!(v.ok, "{v:?}");
    assert_eq!(v.answers_rechecked, journal.len() as u64, "one answer a transaction");

    let changed = app
        .behind_the_back(
            "idempotency",
            "update idempotency set result_json = replace(result_json, \
             '\"principal_outstanding_fen\":4000000', '\"principal_outstanding_fen\":3000000') \
             where request_id = 'batch-1'",
        )
        .await
        .expect("with the triggers gone the update goes through");
    assert_eq!(changed, 1);
    let again = submit().await;
    assert_eq!((again.entry, again.principal_outstanding_fen), (first.entry.clone(), 3_000_000));
    let seq = first.entry.as_ref().expect("entry").seq;
    let batch_answer = format!(
        "seq {seq}: the stored answer to bank:B1's request batch-1 gives loan {id} 3000000 fen of \
         principal outstanding; the journal gives 4000000"
    );
    verify_reports(&app, &t.auditor, std::slice::from_ref(&batch_answer)).await;
    let plain = pb::VerifyRequest { ledger_id: LEDGER.into(), ..Default::default() };
    let v = app.audit(&t.auditor).verify(plain.clone()).await.expect("Verify").into_inner();
    assert!(v.ok && v.answers_rechecked == 0, "not read unless asked: {v:?}");

    // The second repayment's answer replaced: a refusal, then text that is no answer.
    let replace = async |json: &str| {
        let sql =
            format!("update idempotency set result_json = '{json}' where request_id = 'pay-2'");
        app.behind_the_back("idempotency", &sql).await.expect("the answer replaced")
    };
    let refusal =
        r#"{"outcome":"refused","refusal":{"code":"failed_precondition","message":"no"}}"#;
    assert_eq!(replace(refusal).await, 1);
    let v = app.verify(&t.auditor).await;
    let pay_2 = format!("seq {repaid}: the stored answer to bank:B1's request pay-2");
    let no_answer = |v: &pb::VerifyResponse| {
        assert_eq!(v.problems.len(), 2, "{v:?}");
        assert_eq!(v.problems[0], batch_answer);
        v.problems[1].clone()
    };
    assert_eq!(
        no_answer(&v),
        format!("{pay_2} is a refusal, which no transaction is answered with")
    );
    // Its retry is refused, though the repayment was posted.
    let retry = app.repay_as(&t.bank, "pay-2", &id, "2021-04-20", 500).await.unwrap_err();
    assert_eq!((retry.code(), retry.message()), (tonic::Code::FailedPrecondition, "no"));
    assert_eq!(replace("forged").await, 1);
    let v = app.verify(&t.auditor).await;
    assert!(no_answer(&v).starts_with(&format!("{pay_2} cannot be read (")), "{v:?}");
    // An answer of another kind of transaction, naming the repayment's own entry.
    let ledger_answer = format!(
        r#"{{"outcome":"ledger","ledger_id":"{LEDGER}","name":"x","entry":{{"ledger_id":"{LEDGER}","seq":{repaid},"hash":"{repaid_hash}"}}}}"#
    );
    assert_eq!(replace(&ledger_answer).await, 1);
    let v = app.verify(&t.auditor).await;
    assert_eq!(
        no_answer(&v),
        format!("{pay_2} is a ledger answer; its transaction is loan.repaid")
    );
    if backend == Backend::Sqlite {
        // Bytes that are not UTF-8 (SQLite's text takes them): reported, not a failed verify.
        let sql = "update idempotency set result_json = cast(x'7bff7d' as text) \
                   where request_id = 'pay-2'";
        assert_eq!(app.behind_the_back("idempotency", sql).await.expect("the bytes"), 1);
        let v = app.verify(&t.auditor).await;
        assert!(no_answer(&v).starts_with(&format!("{pay_2} is not UTF-8 text (")), "{v:?}");
    }
    // A bank's and a household's registrations answered with another's id.
    let rename = async |kind: &str, field: &str, from: &str, to: &str| {
        let registered = journal.iter().find(|e| e.kind == kind).expect("registered");
        let sql = format!(
            "update idempotency set result_json = replace(result_json, \
             '\"{field}\":\"{from}\"', '\"{field}\":\"{to}\"') \
             where request_id = (select request_id from journal_txn \
             where ledger_id = '{LEDGER}' and seq = {})",
            registered.seq
        );
        assert_eq!(app.behind_the_back("idempotency", &sql).await.expect("renamed"), 1);
        registered.seq
    };
    let bank_seq = rename("bank.registered", "bank_id", BANK, "B9").await;
    let household_seq = rename("household.registered", "household_id", HOUSEHOLD, "H999").await;
    // And a figure a registry answer gives again from its event: the ledger's name.
    let ledger = pb::GetLedgerRequest { ledger_id: LEDGER.into() };
    let ledger = app.registry(&t.finance).get_ledger(ledger).await.expect("GetLedger");
    let name = ledger.into_inner().name;
    let ledger_seq = rename("ledger.created", "name", &name, "Forged").await;
    let v = app.verify(&t.auditor).await;
    assert_eq!(v.problems.len(), 5, "{v:?}");
    let renamed = [
        (ledger_seq, format!("gives the name \"Forged\"; the journal gives {name:?}")),
        (bank_seq, format!("names bank B9; its transaction is of bank {BANK}")),
        (
            household_seq,
            format!("names household H999; its transaction is of household {HOUSEHOLD}"),
        ),
    ];
    for (problem, (seq, renamed)) in v.problems.iter().zip(renamed) {
        assert!(problem.starts_with(&format!("seq {seq}: ")), "{v:?}");
        assert!(problem.ends_with(&renamed), "{v:?}");
    }
    app.finish().await;
}

/// Verify checks the database's own guards against the migrations: a guard of the journal
/// dropped, disabled or weakened (so that a row can be changed again), a trigger added that
/// could rewrite a read model, and (PostgreSQL) a table replaced by a view are each reported,
/// while the chain and the read models still hold; put back, Verify passes again. An index of
/// the operator's own is not a problem.
async fn weakened_guards_are_reported(backend: Backend) {
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 1_029_410).await;
    let run = async |sql: &str| {
        app.execute_ddl(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    };
    run("create index my_report on loan (status)").await;
    assert!(app.verify(&t.auditor).await.ok);
    let reports = async |expected: &[&str]| {
        let expected: Vec<String> = expected.iter().map(|p| p.to_string()).collect();
        verify_reports(&app, &t.auditor, &expected).await;
    };
    let passes = async || assert!(app.verify(&t.auditor).await.ok);
    let added = "schema: trigger rewrite on loan is not the migrations'";
    match backend {
        Backend::Sqlite => {
            let guard: Vec<String> = app
                .db
                .query_texts("select sql from sqlite_master where name = 'journal_txn_no_update'")
                .await
                .expect("the guard");
            run("drop trigger journal_txn_no_update").await;
            reports(&["schema: trigger journal_txn_no_update on journal_txn is missing"]).await;
            // Put back with a condition that never holds: it refuses nothing.
            run(&guard[0].replace("begin", "when 0 begin")).await;
            reports(&[
                "schema: trigger journal_txn_no_update on journal_txn is not defined as the migrations define it",
            ])
            .await;
            run("drop trigger journal_txn_no_update").await;
            run(&guard[0]).await;
            passes().await;
            run("create trigger rewrite after update on loan begin select 1; end").await;
            reports(&[added]).await;
            run("drop trigger rewrite").await;
            // A trigger under the name of sqlx's table (triggers and tables have names of their
            // own): it was left out of the comparison with the table.
            run("create trigger _sqlx_migrations after update on api_token begin select 1; end")
                .await;
            reports(&["schema: trigger _sqlx_migrations on api_token is not the migrations'"])
                .await;
            run("drop trigger _sqlx_migrations").await;
            // A unique index of the operator's own: INSERT OR REPLACE meeting it deletes the
            // row it conflicts with, firing no trigger (since 2026-12-07 reported).
            run("create unique index sneaky on idempotency (ledger_id, seq)").await;
            reports(&["schema: index sneaky on idempotency is not the migrations'"]).await;
            run("drop index sneaky").await;
            passes().await;
        }
        Backend::Postgres => {
            run("alter table journal_txn disable trigger journal_txn_append_only").await;
            reports(&["schema: trigger journal_txn_append_only on journal_txn is disabled"]).await;
            // Enabled, but not always: a replicating session would pass it (since 2026-12-07).
            run("alter table journal_txn enable trigger journal_txn_append_only").await;
            reports(&[
                "schema: trigger journal_txn_append_only on journal_txn does not fire in a \
                 session whose session_replication_role is replica (enabled, not always)",
            ])
            .await;
            run("alter table journal_txn enable always trigger journal_txn_append_only").await;
            passes().await;
            let body = "begin return old; end";
            run(&format!(
                "create or replace function refuse_change() returns trigger language plpgsql \
                 as $${body}$$"
            ))
            .await;
            reports(&[
                "schema: function refuse_change() is not defined as the migrations define it",
            ])
            .await;
            run("create or replace function refuse_change() returns trigger language plpgsql as $$
begin
    raise exception '% is append-only', tg_table_name using errcode = 'P0001';
end;
$$")
            .await;
            passes().await;
            run("create function rewrite() returns trigger language plpgsql \
                 as $$begin return new; end$$; \
                 create trigger rewrite before update on loan for each row \
                 execute function rewrite()")
            .await;
            reports(&[added]).await;
            run("drop trigger rewrite on loan; drop function rewrite()").await;
            // The balances read through a view of a table under another name.
            run("alter table account_balance rename to balance_kept; \
                 create view account_balance as select * from balance_kept")
            .await;
            reports(&["schema: account_balance is a view, the migrations make it a table"]).await;
            run("drop view account_balance; alter table balance_kept rename to account_balance")
                .await;
            // A rule, row-level security and a policy: none of them the migrations'.
            run("create rule keep as on insert to lpr do instead nothing").await;
            reports(&["schema: rule keep on lpr is not the migrations'"]).await;
            run("drop rule keep on lpr").await;
            run("alter table loan enable row level security; \
                 create policy hide on loan using (status <> 'written_off')")
            .await;
            reports(&[
                "schema: policy hide on loan is not the migrations'",
                "schema: row-level security is on for loan: the migrations leave it off",
            ])
            .await;
            run("drop policy hide on loan; alter table loan disable row level security").await;
            // On the tables of later migrations too (since 2026-12-08: a policy there hid a
            // claim's period or a pool from verify's scan, unreported).
            for table in ["subsidy_claim_period", "pool"] {
                run(&format!(
                    "alter table {table} enable row level security; \
                     create policy hide on {table} using (true)"
                ))
                .await;
                let policy = format!("schema: policy hide on {table} is not the migrations'");
                let security = format!(
                    "schema: row-level security is on for {table}: the migrations leave it off"
                );
                reports(&[&policy, &security]).await;
                run(&format!(
                    "drop policy hide on {table}; alter table {table} disable row level security"
                ))
                .await;
            }
        }
    }
    passes().await;
    if backend == Backend::Postgres {
        // Every new session of the database replicating: the guards fire all the same (they
        // fire always since migration 0024; before, they read as enabled but fired in no such
        // session, and verify reported the setting). A server started after it has its
        // connections so.
        let database = app.db.query_texts("select current_database()::text").await;
        let database = database.expect("the database's name").concat();
        let set = format!("alter database {database} set session_replication_role = replica");
        app.execute_ddl(&set).await.expect("set on the database");
        app.restart().await;
        assert!(app.verify(&t.auditor).await.ok);
        // One implicit transaction, rolled back on the refusal: no pooled connection is left
        // inside an aborted one.
        let rewrite = "select set_config('session_replication_role', 'replica', true); \
                       update journal_txn set kind = kind";
        let refused = app.db.execute_raw(rewrite).await.expect_err("a replica's update");
        assert!(refused.to_string().contains("append-only"), "{refused}");
        let reset = format!("alter database {database} reset session_replication_role");
        app.execute_ddl(&reset).await.expect("reset on the database");
        app.restart().await;
        assert!(app.verify(&t.auditor).await.ok);
    }
    app.finish().await;
}

/// A contract's overdue uplift altered behind the service's back to one no policy may set
/// (10^28: the penalty rate's arithmetic overflows a decimal, a panic of the writer that left
/// every later write UNAVAILABLE, or of verify's replay, INTERNAL, whatever else the journal
/// showed) is a row that cannot be read: INTERNAL to its bank's read and write of that loan,
/// while the writer goes on serving the others; verify reports the loan's row. In the journal's
/// contract, verify reports the event as unreadable at its seq (the chain's hash too).
async fn an_uplift_altered_out_of_bounds_is_an_unreadable_row(backend: Backend) {
    let Some((mut app, t, id, other)) = with_two_disbursed_loans(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 100_000).await;
    let huge = "79228162514264337593543950335";
    let (uplift, altered) = (r#""overdue_uplift":"0.5""#, format!(r#""overdue_uplift":"{huge}""#));
    let policy_sql = format!("select policy_json from loan where loan_id = '{id}'");
    let policy = app.db.query_texts(&policy_sql).await.expect("the loan's policy").concat();
    assert!(policy.contains(uplift), "{policy}");
    let set_policy =
        |json: &str| format!("update loan set policy_json = '{json}' where loan_id = '{id}'");
    let damaged = set_policy(&policy.replacen(uplift, &altered, 1));
    assert_eq!(app.db.execute_raw(&damaged).await.expect("the loan's row altered"), 1);
    // (The writer keeps the loans it committed: started afresh, it reads the row.)
    app.restart().await;

    let status = expect_code(
        app.loans(&t.bank)
            .get_loan(pb::GetLoanRequest {
                loan_id: id.clone(),
                as_of: String::new(),
                through_seq: 0,
            })
            .await,
        Code::Internal,
    );
    assert_eq!(status.message(), "internal error; the detail is in the server log");
    let repaid = app.repay_as(&t.bank, &rid("altered"), &id, "2021-06-20", 100_000).await;
    expect_code(repaid.map(tonic::Response::new), Code::Internal);
    // The writer serves on: the other loan's repayment, and this loan's read, once restored.
    let answer = app.repay(&t.bank, &other, "2021-06-20", 100_000).await;
    assert!(answer.loan.expect("the loan").principal_outstanding_fen < 5_000_000);
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok && v.first_break_seq == 0, "{v:?}");
    let unreadable = format!("loan {id}: its stored row cannot be read as a loan (");
    assert!(v.problems.iter().any(|p| p.starts_with(&unreadable)), "{v:?}");
    app.db.execute_raw(&set_policy(&policy)).await.expect("the loan's row restored");
    assert!(app.verify(&t.auditor).await.ok);
    app.repay(&t.bank, &id, "2021-06-21", 100_000).await;

    // The contract in the journal: its event no longer reads, reported at its seq.
    let created = app
        .db
        .query_texts(&format!(
            "select cast(seq as text) from journal_txn where ledger_id = '{LEDGER}' \
             and kind = 'loan.created' and command_json like '%\"loan_id\":\"{id}\"%'"
        ))
        .await
        .expect("the contract's seq");
    assert_eq!(created.len(), 1, "{created:?}");
    let seq: u64 = created[0].parse().expect("a seq");
    let forge = format!(
        "update journal_txn set command_json = replace(command_json, '{uplift}', '{altered}') \
         where ledger_id = '{LEDGER}' and seq = {seq}"
    );
    assert_eq!(app.behind_the_back("journal_txn", &forge).await.expect("the event altered"), 1);
    let v = app.verify(&t.auditor).await;
    assert!(!v.ok && v.first_break_seq == seq, "{v:?}");
    assert!(
        v.problems.iter().any(|p| p.starts_with(&format!("seq {seq}: ")) && p.contains("uplift")),
        "{v:?}"
    );
    app.finish().await;
}

/// Verify while repayments keep committing from four clients: the stored read models are read
/// in one snapshot and the journal scanned up to its head, so the untouched ledger verifies
/// clean each time (before, each read model was read in a snapshot of its own, beside the scan,
/// and a write committed between them was reported as a difference).
async fn verify_while_writing(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let ids = disbursed_loans(&app, &t, "VW", 8).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4usize {
        let (mut loans, ids, stop) = (app.loans(&t.bank), ids.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                loans
                    .record_repayment(pb::RecordRepaymentRequest {
                        request_id: format!("vw-{w}-{n}"),
                        loan_id: ids[(w + n) % ids.len()].clone(),
                        value_date: "2021-02-01".into(),
                        amount_fen: 100,
                        subsidy_netted_fen: 0,
                    })
                    .await
                    .expect("a repayment");
                n += 1;
            }
            n
        }));
    }
    let mut heads = Vec::new();
    for _ in 0..8 {
        let v = app.verify(&t.auditor).await;
        assert!(v.ok && v.problems.is_empty(), "verify under writes: {v:?}");
        heads.push(v.head_seq);
    }
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.expect("a writer");
    }
    assert!(written > 0);
    heads.dedup();
    assert!(heads.len() > 1, "the journal grew between the verifies: {heads:?}");
    let last = app.verify(&t.auditor).await;
    assert!(last.ok, "{last:?}");
    app.finish().await;
}

/// A journal row's value date changed by hand, the chain's hashes made again from it to the
/// head (the guards dropped for it): the chain holds, and the date is hashed, not derived, so
/// only the event it should be the date of tells. Verify reports it at its seq.
async fn a_value_date_rewritten_with_the_hashes_is_reported(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.repay(&t.bank, &id, "2021-03-20", 100_000).await;
    let mut journal = app.journal(&t.auditor, LEDGER).await;
    let at = journal.iter().position(|e| e.kind == "loan.disbursed").expect("the disbursement");
    let seq = journal[at].seq;
    assert_eq!(journal[at].value_date, "2021-01-25");
    journal[at].value_date = "2021-01-26".into();
    let mut sql = format!(
        "update journal_txn set value_date = '2021-01-26' where ledger_id = '{LEDGER}' and seq = {seq};"
    );
    let before = app.journal(&t.auditor, LEDGER).await;
    sql.push_str(&rehash_from(&journal, at));
    app.behind_the_back("journal_txn", &sql).await.expect("the rows rewritten");
    let after = app.journal(&t.auditor, LEDGER).await;
    check_chain(&after);
    let v = app.verify(&t.auditor).await;
    let problem =
        format!("seq {seq}: its value date \"2021-01-26\" is not its event's, 2021-01-25");
    // The answers stored for the transactions rehashed name the hashes they were given.
    let problems: Vec<String> = [vec![problem], stale_answers(&before, &after)].concat();
    assert_eq!(problems.len(), 1 + (before.len() - at), "every hash from it on changed");
    assert_eq!((v.ok, v.first_break_seq, v.problems.clone()), (false, seq, problems), "{v:?}");
    app.finish().await;
}

/// The LPR table's entries are the chain of ledger `lpr`: SetLpr answers its transaction (a
/// retry the same one), every auditor and finance office reads and verifies that chain (no bank
/// nor the operator), and verify rebuilds the table from the seeded entries and the chain's: a
/// row slipped into the table, or a seeded rate changed behind the triggers, is reported. No
/// region's ledger may take the name.
async fn the_lpr_table_has_a_chain_of_its_own(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let verify_lpr = async |token: &str| {
        app.audit(token)
            .verify(pb::VerifyRequest {
                ledger_id: "lpr".into(),
                recheck_claims: false,
                recheck_answers: true,
            })
            .await
            .expect("Verify lpr")
            .into_inner()
    };
    // Started when the database was migrated, with the table as seeded.
    let fresh = verify_lpr(&t.auditor).await;
    assert!(fresh.ok && fresh.head_seq == 1 && fresh.transactions_checked == 1, "{fresh:?}");

    let set = |request_id: &str, date: &str, rate: &str| pb::SetLprRequest {
        request_id: request_id.into(),
        entry: Some(pb::LprEntry {
            effective_date: date.into(),
            tenor: pb::LprTenor::FiveYear as i32,
            rate: rate.into(),
        }),
    };
    let mut registry = app.registry(&t.operator);
    // An entry dated ahead is refused, naming its date (since 2026-12-07): never changed once
    // set, 2062 typed for 2026 would name the rate of every contract from then.
    let ahead = registry.set_lpr(set("lpr-ahead", "2062-10-20", "0.034")).await;
    expect_invalid(ahead, "entry.effective_date");
    let first = registry.set_lpr(set("lpr-1", "2026-10-20", "0.034")).await.expect("SetLpr");
    let first = first.into_inner();
    let entry = first.journal_entry.clone().expect("the entry's transaction");
    assert_eq!((entry.ledger_id.as_str(), entry.seq), ("lpr", 2), "{first:?}");
    let again = registry.set_lpr(set("lpr-1", "2026-10-20", "0.034")).await.expect("retry");
    assert_eq!(again.into_inner(), first, "a retry is answered with the same transaction");
    let second = registry.set_lpr(set("lpr-2", "2026-11-20", "0.0335")).await.expect("SetLpr");
    assert_eq!(second.into_inner().journal_entry.map(|e| e.seq), Some(3));

    // Read and verified by auditors and finance offices, any ledger's.
    let journal = app.journal(&t.finance, "lpr").await;
    let described: Vec<(u64, &str, &str, &str, usize)> = journal
        .iter()
        .map(|e| {
            (e.seq, e.kind.as_str(), e.value_date.as_str(), e.actor.as_str(), e.postings.len())
        })
        .collect();
    let today = journal[0].value_date.clone();
    assert_eq!(
        described,
        [
            (1, "lpr.chain_started", today.as_str(), "system:migration", 0),
            (2, "lpr.set", "2026-10-20", "operator:*", 0),
            (3, "lpr.set", "2026-11-20", "operator:*", 0)
        ]
    );
    let seeded = r#"{"effective_date":"2015-10-24","tenor":"1y","rate":"0.0435"}"#;
    let start = format!(r#"{{"entries":[{seeded},"#);
    assert!(journal[0].command_json.starts_with(&start), "{journal:?}");
    assert_eq!(journal[1].hash, entry.hash);
    assert_eq!(
        journal[1].command_json,
        r#"{"effective_date":"2026-10-20","tenor":"5y","rate":"0.034"}"#
    );
    for token in [&t.auditor, &t.finance] {
        let v = verify_lpr(token).await;
        assert!(v.ok && v.head_seq == 3 && v.transactions_checked == 3, "{v:?}");
        assert_eq!(v.answers_rechecked, 3, "the chain's start's answer too");
    }
    for token in [&t.bank, &t.operator] {
        let lpr = || pb::VerifyRequest {
            ledger_id: "lpr".into(),
            recheck_claims: false,
            recheck_answers: false,
        };
        expect_code(app.audit(token).verify(lpr()).await, Code::PermissionDenied);
        let read = pb::ReadJournalRequest { ledger_id: "lpr".into(), from_seq: 0, to_seq: 0 };
        expect_code(app.audit(token).read_journal(read).await, Code::PermissionDenied);
    }
    // The region's ledger holds none of it.
    assert!(app.journal(&t.auditor, LEDGER).await.iter().all(|e| e.kind != "lpr.set"));
    assert!(app.verify(&t.auditor).await.ok);

    // No region's ledger may be called so.
    expect_invalid(
        app.registry(&t.operator)
            .create_ledger(pb::CreateLedgerRequest {
                request_id: rid("l"),
                ledger_id: "lpr".into(),
                name: "not a county".into(),
            })
            .await,
        "ledger_id",
    );

    // A row slipped into the table (its guards refuse changes, not inserts): a cap moved.
    let inserted = app
        .db
        .execute_raw(
            "insert into lpr (effective_date, tenor, rate) values ('2027-01-20', '1y', '0.09')",
        )
        .await
        .expect("inserting is not refused");
    assert_eq!(inserted, 1);
    let v = verify_lpr(&t.auditor).await;
    assert!(!v.ok && v.first_break_seq == 0, "{v:?}");
    assert_eq!(v.problems, ["LPR entry 2027-01-20 1y (rate 0.09) is not in the journal"]);

    // A seeded rate changed, the table's guard dropped first (which verify reports too).
    let unguard = match backend {
        Backend::Sqlite => "drop trigger lpr_no_update",
        Backend::Postgres => "drop trigger lpr_append_only on lpr",
    };
    app.db.execute_raw(unguard).await.expect(unguard);
    let changed = app
        .db
        .execute_raw(
            "update lpr set rate = '0.06' where effective_date = '2015-10-24' and tenor = '1y'",
        )
        .await
        .expect("the seeded row changed");
    assert_eq!(changed, 1);
    let v = verify_lpr(&t.auditor).await;
    assert!(!v.ok, "{v:?}");
    let expected = "LPR entry 2015-10-24 1y: stored rate 0.06, the journal gives 0.0435";
    assert!(v.problems.iter().any(|p| p == expected), "{v:?}");
    app.finish().await;
}

/// A database in which a region's ledger is called `lpr` (made before the name was reserved,
/// here by hand) is refused at start: served, that region's books would be read as the LPR
/// table's chain.
async fn a_ledger_called_lpr_is_refused_at_start(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    app.stop().await;
    let sql = "insert into ledger (ledger_id, name) values ('lpr', 'a county')";
    assert_eq!(app.db.execute_raw(sql).await.expect(sql), 1);
    let built = loanledger::startup::Application::build(loanledger::startup::Settings {
        listen: "127.0.0.1:0".parse().expect("a socket address"),
        database_url: app.database_url.clone(),
        business_utc_offset: loanledger::startup::business_utc_offset_default(),
        token_cache_ttl: loanledger::startup::TOKEN_CACHE_TTL,
        drain_timeout: DRAIN_TIMEOUT,
        signing_key: None,
        backups: None,
        tls: None,
    })
    .await;
    let Err(e) = built else { panic!("a server started on a ledger called lpr") };
    assert!(format!("{e:#}").contains("reserves the name for the LPR table's chain"), "{e:#}");
    app.finish().await;
}
