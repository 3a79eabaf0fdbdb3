//! Who may do what: tokens and roles, the first operator token, revoked tokens, and what lies
//! outside a caller's books answered as missing. Each scenario runs on SQLite and on PostgreSQL.

use std::time::Duration;

use loanledger::api::pb;
use loanledger::api::pb::loan_service_client::LoanServiceClient;
use loanledger::api::pb::registry_service_client::RegistryServiceClient;
use loanledger::app::auth::Role;
use tonic::Code;
use tonic_types::StatusExt;

use super::with_disbursed_loan;
use crate::common::*;

on_both_backends!(
    authentication_and_roles,
    a_call_without_a_valid_token_is_refused_before_its_body_is_read,
    what_is_outside_the_callers_books_is_missing_to_it,
    revoked_token_is_refused,
    first_operator_token_and_token_commands,
    a_cancelled_token_read_still_revokes,
    servers_started_together_make_one_first_token,
    servers_started_together_on_a_new_database_both_start,
    the_operator_reads_the_calls_counted,
    the_operator_makes_lists_and_revokes_tokens,
    a_token_expires_at_the_end_of_its_term,
    a_token_revoked_while_its_stream_runs_ends_it,
);

/// Bearer tokens and roles: a bank reaches only its own loans, an auditor only reads, nothing
/// but health works without a token.
async fn authentication_and_roles(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = loan_id("C001");
    app.create_loan(&t.bank, standard_loan("C001", HOUSEHOLD)).await;
    app.register_bank(&t.operator, "B2").await;
    let b2 = app.bank_token("B2").await;
    let mut other = app.loans(&b2);

    // Another bank's loan is NOT_FOUND to a bank, read or written, as a missing one: a bank
    // never learns whether another bank's loan exists, nor whose it is.
    let missing = expect_code(
        other
            .get_loan(pb::GetLoanRequest {
                loan_id: id.clone(),
                as_of: String::new(),
                through_seq: 0,
            })
            .await,
        Code::NotFound,
    );
    assert_eq!(missing.message(), format!("loan {id} not found"));
    let absent = expect_code(
        other
            .get_loan(pb::GetLoanRequest {
                loan_id: "B1-NONE".into(),
                as_of: String::new(),
                through_seq: 0,
            })
            .await,
        Code::NotFound,
    );
    assert_eq!(absent.message(), "loan B1-NONE not found");
    expect_code(
        other
            .disburse(pb::DisburseRequest {
                request_id: rid("disburse"),
                loan_id: id.clone(),
                value_date: "2021-01-25".into(),
                amount_fen: 0,
            })
            .await,
        Code::NotFound,
    );
    expect_code(
        other
            .record_repayment(pb::RecordRepaymentRequest {
                request_id: rid("repay"),
                loan_id: id.clone(),
                value_date: "2021-01-25".into(),
                amount_fen: 100,
                subsidy_netted_fen: 0,
            })
            .await,
        Code::NotFound,
    );
    // B2 contracting in B1's name is refused and not recorded: the same request id, its bank
    // corrected, is decided afresh (here over the household's cap, which B1's loan fills),
    // where it used to be REQUEST_ID_REUSED.
    let mut in_b1s_name = standard_loan("C-B2", HOUSEHOLD);
    expect_code(other.create_loan(in_b1s_name.clone()).await, Code::PermissionDenied);
    in_b1s_name.bank_id = "B2".into();
    expect_refused(other.create_loan(in_b1s_name).await, "HOUSEHOLD_CAP_EXCEEDED");
    let history = app
        .audit(&b2)
        .get_loan_history(pb::GetLoanHistoryRequest { loan_id: id.clone(), through_seq: 0 })
        .await;
    match history {
        Err(s) => assert_eq!(s.code(), Code::NotFound, "{s:?}"),
        Ok(stream) => {
            let got = collect(stream.into_inner()).await;
            assert_eq!(
                got.map_err(|s| s.code()),
                Err(Code::NotFound),
                "another bank's loan history"
            );
        }
    }
    let unknown = app
        .audit(&b2)
        .get_loan_history(pb::GetLoanHistoryRequest {
            loan_id: "NO-SUCH-LOAN".into(),
            through_seq: 0,
        })
        .await;
    assert_eq!(unknown.err().map(|s| s.code()), Some(Code::NotFound), "an unknown loan's history");
    match other.list_loans(pb::ListLoansRequest::default()).await {
        Ok(list) => assert!(
            list.get_ref().loans.iter().all(|l| l.bank_id == "B2"),
            "a bank lists only its own loans: {:?}",
            list.get_ref()
        ),
        Err(s) => assert_eq!(s.code(), Code::PermissionDenied, "{s:?}"),
    }
    expect_code(
        other.list_loans(pb::ListLoansRequest { bank_id: BANK.into(), ..Default::default() }).await,
        Code::PermissionDenied,
    );
    // Another ledger named by a bank is the field in error, and one that does not exist is
    // missing, not an empty page (since 2026-12-07 evening); its own ledger lists its loans.
    let in_ledger = |ledger_id: &str| pb::ListLoansRequest {
        ledger_id: ledger_id.into(),
        ..Default::default()
    };
    app.create_ledger(&t.operator, "450198", "another county").await;
    let wrong = expect_invalid(other.list_loans(in_ledger("450198")).await, "ledger_id");
    assert!(wrong.message().contains(&format!("bank B2's ledger ({LEDGER})")), "{wrong:?}");
    expect_code(other.list_loans(in_ledger("450199")).await, Code::NotFound);
    other.list_loans(in_ledger(LEDGER)).await.expect("its own ledger's");
    // A ledger that does not exist, named by a finance office of another: not its to read.
    expect_code(
        app.loans(&t.finance).list_loans(in_ledger("450199")).await,
        Code::PermissionDenied,
    );
    // A bank does not read a ledger's journal.
    expect_code(
        app.audit(&t.bank)
            .verify(pb::VerifyRequest {
                ledger_id: LEDGER.into(),
                recheck_claims: false,
                recheck_answers: false,
            })
            .await,
        Code::PermissionDenied,
    );
    // Banks see household identity numbers masked: the region and the last four, the eight
    // between (the birth date among them) starred.
    let full = app
        .registry(&t.finance)
        .get_household(pb::GetHouseholdRequest { household_id: HOUSEHOLD.into() })
        .await
        .expect("the finance office reads it")
        .into_inner()
        .head_id_number;
    let h = app
        .registry(&t.bank)
        .get_household(pb::GetHouseholdRequest { household_id: HOUSEHOLD.into() })
        .await
        .expect("a bank reads the household");
    assert_eq!(full.len(), 18, "{full}");
    let masked = format!("{}********{}", &full[..6], &full[14..]);
    assert_eq!(h.get_ref().head_id_number, masked, "masked for banks");
    // The loan is untouched.
    let l = app.get_loan(&t.bank, &id).await;
    assert_eq!(l.status, pb::LoanStatus::Contracted as i32);

    // An auditor reads but never writes.
    assert_eq!(app.get_loan(&t.auditor, &id).await, l);
    let mut auditor_loans = app.loans(&t.auditor);
    expect_code(
        auditor_loans.create_loan(standard_loan("C-AUD", HOUSEHOLD)).await,
        Code::PermissionDenied,
    );
    expect_code(
        auditor_loans
            .disburse(pb::DisburseRequest {
                request_id: rid("disburse"),
                loan_id: id.clone(),
                value_date: "2021-01-25".into(),
                amount_fen: 0,
            })
            .await,
        Code::PermissionDenied,
    );
    let mut auditor_registry = app.registry(&t.auditor);
    expect_code(
        auditor_registry.register_household(household_request("H-AUD", "19800517")).await,
        Code::PermissionDenied,
    );
    expect_code(
        auditor_registry
            .create_ledger(pb::CreateLedgerRequest {
                request_id: rid("ledger"),
                ledger_id: "450122".into(),
                name: "x".into(),
            })
            .await,
        Code::PermissionDenied,
    );
    // A bank neither opens ledgers nor registers households.
    expect_code(
        app.registry(&t.bank).register_household(household_request("H-BANK", "19800517")).await,
        Code::PermissionDenied,
    );
    // A finance office of another ledger does not administer this one.
    let elsewhere = app.token(Role::Finance, "450122").await;
    expect_code(
        app.registry(&elsewhere).register_household(household_request("H-ELSE", "19800517")).await,
        Code::PermissionDenied,
    );
    // A household of a ledger the bank does not lend in is answered as a missing one: the bank
    // does not learn whether it exists.
    app.create_ledger(&t.operator, "450122", "another county").await;
    let mut other = household_request("H-ELSE", "19800517");
    other.ledger_id = "450122".into();
    app.registry(&elsewhere).register_household(other).await.expect("its own ledger's household");
    for household_id in ["H-ELSE", "NO-SUCH-HOUSEHOLD"] {
        let status = expect_code(
            app.registry(&t.bank)
                .get_household(pb::GetHouseholdRequest { household_id: household_id.into() })
                .await,
            Code::NotFound,
        );
        assert_eq!(status.message(), format!("household {household_id} not found"));
    }

    // The operator sets the service up (ledgers, banks, the LPR table; tokens on the command
    // line) and reads health (DESIGN.md's role table): it neither writes a ledger's registry,
    // policy or loans nor reads its households, loans or journal.
    let mut operator_registry = app.registry(&t.operator);
    expect_code(
        operator_registry.register_household(household_request("H-OP", "19800517")).await,
        Code::PermissionDenied,
    );
    expect_code(
        operator_registry
            .set_household_status(status_request(
                HOUSEHOLD,
                pb::HouseholdStatus::Exited,
                "2021-06-01",
            ))
            .await,
        Code::PermissionDenied,
    );
    for household_id in [HOUSEHOLD, "NO-SUCH-HOUSEHOLD"] {
        // Alike whether the household exists or not: the operator learns nothing of either.
        expect_code(
            operator_registry
                .get_household(pb::GetHouseholdRequest { household_id: household_id.into() })
                .await,
            Code::PermissionDenied,
        );
    }
    let policy = operator_registry
        .get_policy(pb::GetPolicyRequest {
            ledger_id: LEDGER.into(),
            as_of: String::new(),
            through_seq: 0,
        })
        .await
        .expect("the policy in force is configuration, readable by the operator")
        .into_inner();
    expect_code(
        operator_registry
            .set_policy(pb::SetPolicyRequest {
                request_id: rid("policy"),
                ledger_id: LEDGER.into(),
                effective_date: "2022-01-01".into(),
                params: policy.params,
            })
            .await,
        Code::PermissionDenied,
    );
    let mut operator_loans = app.loans(&t.operator);
    expect_code(
        operator_loans
            .get_loan(pb::GetLoanRequest {
                loan_id: id.clone(),
                as_of: String::new(),
                through_seq: 0,
            })
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        operator_loans.list_loans(pb::ListLoansRequest::default()).await,
        Code::PermissionDenied,
    );
    expect_code(
        operator_loans
            .settle_loans(pb::SettleLoansRequest {
                request_id: rid("settle"),
                ledger_id: LEDGER.into(),
                bank_id: String::new(),
                settlement_date: "2021-03-20".into(),
            })
            .await,
        Code::PermissionDenied,
    );
    let mut operator_audit = app.audit(&t.operator);
    let history = operator_audit
        .get_loan_history(pb::GetLoanHistoryRequest { loan_id: id.clone(), through_seq: 0 })
        .await;
    assert_eq!(history.err().map(|s| s.code()), Some(Code::PermissionDenied), "a loan's history");
    // A loan that does not exist is refused alike: the operator cannot learn which loans do.
    let missing = loan_id("NOSUCH");
    expect_code(
        operator_loans
            .get_loan(pb::GetLoanRequest {
                loan_id: missing.clone(),
                as_of: String::new(),
                through_seq: 0,
            })
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        operator_loans
            .get_payoff_quote(pb::GetPayoffQuoteRequest {
                loan_id: missing.clone(),
                as_of: "2021-03-01".into(),
                through_seq: 0,
            })
            .await,
        Code::PermissionDenied,
    );
    let history = operator_audit
        .get_loan_history(pb::GetLoanHistoryRequest { loan_id: missing, through_seq: 0 })
        .await;
    assert_eq!(
        history.err().map(|s| s.code()),
        Some(Code::PermissionDenied),
        "a missing loan's history"
    );
    let journal = operator_audit
        .read_journal(pb::ReadJournalRequest { ledger_id: LEDGER.into(), from_seq: 0, to_seq: 0 })
        .await;
    assert_eq!(journal.err().map(|s| s.code()), Some(Code::PermissionDenied), "the journal");
    expect_code(
        operator_audit
            .verify(pb::VerifyRequest {
                ledger_id: LEDGER.into(),
                recheck_claims: false,
                recheck_answers: false,
            })
            .await,
        Code::PermissionDenied,
    );

    // A role that may never make a call is refused before the writer, and nothing is recorded
    // under the request id (an auditor cannot fill the append-only idempotency table); a bank
    // refused for another bank's loan (NOT_FOUND, as a missing one) is answered from the stored
    // loan, and that refusal is recorded, to be given again.
    let recorded = |request_id: String| {
        let db = app.db.clone();
        async move {
            let sql = format!(
                "update ledger set name = name where ledger_id = '{LEDGER}' and \
                 exists (select 1 from idempotency where request_id = '{request_id}')"
            );
            db.execute_raw(&sql).await.expect("the idempotency table reads") == 1
        }
    };
    let item = |request_id: &str| pb::BatchItem {
        request_id: request_id.into(),
        item: Some(pb::batch_item::Item::Repayment(pb::RepaymentItem {
            loan_id: id.clone(),
            value_date: "2021-02-01".into(),
            amount_fen: 100,
            subsidy_netted_fen: 0,
        })),
    };
    let by_auditor = rid("auditor-batch");
    let refused = expect_code(
        app.loans(&t.auditor)
            .submit_batch(pb::SubmitBatchRequest { items: vec![item(&by_auditor)] })
            .await,
        Code::PermissionDenied,
    );
    assert!(refused.message().contains("only a bank may"), "{refused:?}");
    assert!(!recorded(by_auditor).await, "an auditor's refused batch item is not recorded");
    let by_operator = rid("operator-household");
    let household = pb::RegisterHouseholdRequest {
        request_id: by_operator.clone(),
        ..household_request("H-OP2", "19800517")
    };
    expect_code(
        app.registry(&t.operator).register_household(household).await,
        Code::PermissionDenied,
    );
    assert!(!recorded(by_operator).await, "the operator's refused registration is not recorded");
    let by_other_bank = rid("other-bank");
    let repayment = pb::RecordRepaymentRequest {
        request_id: by_other_bank.clone(),
        loan_id: id.clone(),
        value_date: "2021-02-01".into(),
        amount_fen: 100,
        subsidy_netted_fen: 0,
    };
    expect_code(app.loans(&b2).record_repayment(repayment).await, Code::NotFound);
    assert!(recorded(by_other_bank).await, "a bank's refusal on a stored loan is recorded");

    // A finance office's token bound to "*" (made before that was refused) is no credential.
    let secret = format!("ll_{}", "ab".repeat(32));
    let hash = loanledger::app::auth::hash_token(&secret);
    app.db.insert_token("tok_every_ledger", &hash, "finance", "*", 0, None).await.expect("stored");
    expect_code(
        app.registry(&secret)
            .get_household(pb::GetHouseholdRequest { household_id: HOUSEHOLD.into() })
            .await,
        Code::Unauthenticated,
    );

    // The scheme's name in any case, as HTTP reads it; another scheme, or none, is no credential.
    for (value, code) in [
        (format!("bearer {}", t.auditor), None),
        (format!("BEARER  {}", t.auditor), None),
        (format!("Basic {}", t.auditor), Some(Code::Unauthenticated)),
        (t.auditor.clone(), Some(Code::Unauthenticated)),
        ("Bearer".to_string(), Some(Code::Unauthenticated)),
    ] {
        let mut request = tonic::Request::new(pb::GetLedgerRequest { ledger_id: LEDGER.into() });
        request.metadata_mut().insert("authorization", value.parse().expect("ASCII"));
        let answer = RegistryServiceClient::new(app.channel()).get_ledger(request).await;
        match code {
            None => assert!(answer.is_ok(), "{value:?}: {answer:?}"),
            Some(code) => {
                expect_code(answer, code);
            }
        }
    }

    // No token, or an unknown one.
    let mut anonymous = RegistryServiceClient::new(app.channel());
    expect_code(
        anonymous.get_ledger(pb::GetLedgerRequest { ledger_id: LEDGER.into() }).await,
        Code::Unauthenticated,
    );
    expect_code(
        anonymous
            .create_ledger(pb::CreateLedgerRequest {
                request_id: rid("ledger"),
                ledger_id: "450123".into(),
                name: "x".into(),
            })
            .await,
        Code::Unauthenticated,
    );
    let mut anonymous_loans =
        loanledger::api::pb::loan_service_client::LoanServiceClient::new(app.channel());
    expect_code(
        anonymous_loans
            .get_loan(pb::GetLoanRequest {
                loan_id: id.clone(),
                as_of: String::new(),
                through_seq: 0,
            })
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        app.loans("ll_0000000000000000000000000000000000000000000000000000000000000000")
            .get_loan(pb::GetLoanRequest {
                loan_id: id.clone(),
                as_of: String::new(),
                through_seq: 0,
            })
            .await,
        Code::Unauthenticated,
    );
    let mut anonymous_audit =
        loanledger::api::pb::audit_service_client::AuditServiceClient::new(app.channel());
    expect_code(
        anonymous_audit
            .verify(pb::VerifyRequest {
                ledger_id: LEDGER.into(),
                recheck_claims: false,
                recheck_answers: false,
            })
            .await,
        Code::Unauthenticated,
    );

    // Health needs no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel());
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .expect("health without a token")
        .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest { service: "loanledger.v1.LoanService".into() })
        .await
        .expect("health of the loan service")
        .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Nothing above wrote anything but the seed, the loan and bank B2.
    assert!(app.verify(&t.auditor).await.ok);
    app.finish().await;
}

/// What lies outside a caller's books is answered as missing, read or written: a finance office
/// or an auditor of another ledger gets NOT_FOUND for a loan or a household of this one, with
/// the message of one that does not exist (it used to be PERMISSION_DENIED for an existing one,
/// which told it the id was taken and, for a write, whose loan it was), and a bank contracting
/// for a household of another ledger is told the household is missing, as `GetHousehold`
/// tells it (it used to be LEDGER_MISMATCH, naming the ledger).
async fn what_is_outside_the_callers_books_is_missing_to_it(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let id = loan_id("C001");
    let before = app.create_loan(&t.bank, standard_loan("C001", HOUSEHOLD)).await.loan.unwrap();
    app.create_ledger(&t.operator, "450122", "another county").await;
    let finance = app.token(Role::Finance, "450122").await;
    let auditor = app.token(Role::Auditor, "450122").await;
    let mut other = household_request("H-ELSE", "19800517");
    other.ledger_id = "450122".into();
    app.registry(&finance).register_household(other).await.expect("its own ledger's household");
    let missing = loan_id("NOSUCH");
    let not_found = |what: &str, id: &str| format!("{what} {id} not found");
    // Its own ledger's pools of a bank of another ledger: refused, without naming the ledger
    // the bank lends in (until 2026-12-06 the refusal named it).
    let elsewhere = pb::ListPoolsRequest {
        ledger_id: "450122".into(),
        bank_id: BANK.into(),
        page_size: 0,
        page_token: String::new(),
    };
    let s = expect_invalid(app.pools(&finance).list_pools(elsewhere.clone()).await, "bank_id");
    assert!(!s.message().contains(LEDGER), "{s:?}");
    // The bank itself naming the other ledger: the ledger is what is wrong, and named.
    let own = expect_invalid(app.pools(&t.bank).list_pools(elsewhere.clone()).await, "ledger_id");
    assert!(own.message().contains(&format!("is not bank {BANK}'s ledger ({LEDGER})")), "{own:?}");
    // An auditor of every ledger reads both: told where the bank lends.
    let every = app.token(Role::Auditor, "*").await;
    let s = expect_invalid(app.pools(&every).list_pools(elsewhere).await, "bank_id");
    assert!(s.message().contains(&format!("names a bank of ledger {LEDGER}")), "{s:?}");
    // So do the loans' (until 2026-12-07 an empty page), and a bank of no ledger is not found.
    let loans_elsewhere = |ledger_id: &str, bank_id: &str| pb::ListLoansRequest {
        ledger_id: ledger_id.into(),
        bank_id: bank_id.into(),
        ..Default::default()
    };
    let s =
        expect_invalid(app.loans(&finance).list_loans(loans_elsewhere("", BANK)).await, "bank_id");
    assert!(!s.message().contains(LEDGER), "{s:?}");
    let s = app.loans(&every).list_loans(loans_elsewhere("450122", BANK)).await;
    let s = expect_invalid(s, "bank_id");
    assert!(s.message().contains(&format!("names a bank of ledger {LEDGER}")), "{s:?}");
    let s = app.loans(&finance).list_loans(loans_elsewhere("", "B404")).await;
    expect_code(s, Code::NotFound);
    let own = app.loans(&every).list_loans(loans_elsewhere(LEDGER, BANK)).await;
    assert_eq!(own.expect("its own ledger's bank").into_inner().loans.len(), 1);

    for token in [&finance, &auditor] {
        let mut loans = app.loans(token);
        let mut audit = app.audit(token);
        for loan in [&id, &missing] {
            let s = expect_code(
                loans
                    .get_loan(pb::GetLoanRequest {
                        loan_id: loan.clone(),
                        as_of: String::new(),
                        through_seq: 0,
                    })
                    .await,
                Code::NotFound,
            );
            assert_eq!(s.message(), not_found("loan", loan));
            let s = expect_code(
                loans
                    .get_payoff_quote(pb::GetPayoffQuoteRequest {
                        loan_id: loan.clone(),
                        as_of: "2021-03-01".into(),
                        through_seq: 0,
                    })
                    .await,
                Code::NotFound,
            );
            assert_eq!(s.message(), not_found("loan", loan));
            let s = audit
                .get_loan_history(pb::GetLoanHistoryRequest {
                    loan_id: loan.clone(),
                    through_seq: 0,
                })
                .await
                .expect_err("a loan outside the books has no history to read");
            assert_eq!((s.code(), s.message()), (Code::NotFound, not_found("loan", loan).as_str()));
        }
        for household_id in [HOUSEHOLD, "NO-SUCH-HOUSEHOLD"] {
            let s = expect_code(
                app.registry(token)
                    .get_household(pb::GetHouseholdRequest { household_id: household_id.into() })
                    .await,
                Code::NotFound,
            );
            assert_eq!(s.message(), not_found("household", household_id));
        }
    }

    // Written: the other ledger's finance office marks misuse and sets a household's status in
    // this ledger, and is answered as for a missing loan or household; nothing is posted.
    let mut registry = app.registry(&finance);
    for loan in [&id, &missing] {
        let s = expect_code(
            app.loans(&finance)
                .mark_misuse(pb::MarkMisuseRequest {
                    request_id: rid("misuse"),
                    loan_id: loan.clone(),
                    value_date: "2021-02-01".into(),
                    falsely_obtained: false,
                })
                .await,
            Code::NotFound,
        );
        assert_eq!(s.message(), not_found("loan", loan), "{s:?}");
    }
    for household_id in [HOUSEHOLD, "NO-SUCH-HOUSEHOLD"] {
        let s = expect_code(
            registry
                .set_household_status(status_request(
                    household_id,
                    pb::HouseholdStatus::Removed,
                    "2021-06-01",
                ))
                .await,
            Code::NotFound,
        );
        assert_eq!(s.message(), not_found("household", household_id));
    }
    // This ledger's own finance office reads the loan and the household, unchanged.
    let stored = app.get_loan(&t.finance, &id).await;
    assert_eq!((stored.misuse_since.as_str(), stored.last_seq), ("", before.last_seq));
    let household = app
        .registry(&t.finance)
        .get_household(pb::GetHouseholdRequest { household_id: HOUSEHOLD.into() })
        .await
        .expect("its own ledger's household")
        .into_inner();
    assert_eq!(household.status_history.len(), 1, "{household:?}");

    // A bank contracting for a household of another ledger, or for none.
    for household_id in ["H-ELSE", "NO-SUCH-HOUSEHOLD"] {
        let s = expect_code(
            app.loans(&t.bank).create_loan(standard_loan("C-ELSE", household_id)).await,
            Code::NotFound,
        );
        assert_eq!(s.message(), not_found("household", household_id));
    }
}

/// The first operator token is made for a fresh database only, and only by a server that
/// listens: one whose port is taken stores none (it would never be printed), and a database
/// with ledgers whose tokens are all gone gets none at a restart. The token commands work on
/// a database this build's migrations set up, and refuse, rather than migrate, one they did not.
/// A `RUST_LOG` the commands cannot read is said so.
async fn first_operator_token_and_token_commands(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    app.seed().await;
    app.db.execute_raw("delete from api_token").await.expect("the tokens gone");
    // (restart asserts that no operator token is made.)
    app.restart().await;
    assert_eq!(app.db.count_tokens().await.expect("tokens"), 0);
    let token_list = |database_url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
            .args(["token", "list", "--database-url", database_url])
            .output()
            .expect("the binary runs")
    };
    let listed = token_list(&app.database_url);
    assert!(listed.status.success(), "{listed:?}");
    // `token create` for a bank not registered: refused, no token made; for a registered one,
    // a secret on stdout.
    let token_create = |org: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
            .args(["token", "create", "--role", "bank", "--org", org])
            .args(["--database-url", &app.database_url])
            .output()
            .expect("the binary runs")
    };
    let unregistered = token_create("B9");
    assert!(!unregistered.status.success(), "{unregistered:?}");
    let said = String::from_utf8_lossy(&unregistered.stderr);
    assert!(said.contains("bank B9 not found"), "{said}");
    assert_eq!(app.db.count_tokens().await.expect("tokens"), 0);
    let made = token_create(BANK);
    assert!(made.status.success(), "{made:?}");
    let secret = String::from_utf8_lossy(&made.stdout).trim().to_string();
    assert!(secret.starts_with("ll_"), "{made:?}");
    // Revoked by its secret read from standard input (`--secret -`, since 2026-12-07: on the
    // command line it is in the shell's history and the process list): refused from then on.
    let missing = pb::GetLoanRequest { loan_id: loan_id("C404"), ..Default::default() };
    expect_code(app.loans(&secret).get_loan(missing.clone()).await, Code::NotFound);
    let mut revoke = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
        .args(["token", "revoke", "--secret", "-", "--database-url", &app.database_url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut stdin = revoke.stdin.take().expect("its input");
    std::io::Write::write_all(&mut stdin, format!("{secret}\n").as_bytes()).expect("written");
    drop(stdin);
    let revoked = revoke.wait_with_output().expect("it ends");
    assert!(revoked.status.success(), "{revoked:?}");
    assert!(String::from_utf8_lossy(&revoked.stdout).starts_with("revoked tok_"), "{revoked:?}");
    app.restart().await;
    expect_code(app.loans(&secret).get_loan(missing).await, Code::Unauthenticated);
    app.finish().await;
    if backend != Backend::Sqlite {
        return;
    }

    // A fresh SQLite file, its server's port taken: the server stops before it opens the
    // database, so no token is stored that is never printed, and (since 2026-12-07: it
    // migrated the database first, and an upgrade's migrations then kept the build before it
    // from serving it) the database is not touched: a new file is not even made.
    let dir = tempfile::tempdir().expect("a directory");
    let fresh = dir.path().join("fresh.db");
    let url = format!("sqlite://{}", fresh.display());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let settings = serve_settings(&url, taken.local_addr().expect("its address"));
    assert!(loanledger::startup::Application::build(settings).await.is_err(), "the port is taken");
    assert!(!fresh.exists(), "no database made");
    // A file that does not exist (a path mistyped, or relative to another directory): the
    // token commands and verify refuse it and do not create it.
    let path = dir.path().join("bare.db");
    let bare = format!("sqlite://{}", path.display());
    for args in [&["token", "list"][..], &["verify", "--ledger", LEDGER]] {
        let refused = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
            .args(args)
            .args(["--database-url", &bare])
            .output()
            .expect("the binary runs");
        assert!(!refused.status.success(), "{refused:?}");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains(&format!("no database at {}", path.display())), "{said}");
        assert!(!path.exists(), "{args:?} created the file");
    }
    // A RUST_LOG that cannot be read is said so, not ignored.
    let unread = std::process::Command::new(env!("CARGO_BIN_EXE_loanledger"))
        .args(["verify", "--ledger", LEDGER, "--database-url", &bare])
        .env("RUST_LOG", "loanledger=loud")
        .output()
        .expect("the binary runs");
    let said = String::from_utf8_lossy(&unread.stderr);
    assert!(said.contains("RUST_LOG cannot be read") && said.contains("logging at info"), "{said}");
    // Not migrated: the token commands refuse it and leave it so.
    let bare_db = loanledger::store::Db::connect(&bare).await.expect("the file");
    let refused = token_list(&bare);
    assert!(!refused.status.success(), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("not set up"), "{said}");
    assert!(bare_db.check_migrated().await.is_err());
}

/// A disbursed loan on a server that keeps a checked token `ttl`, and a bank token that read
/// the loan (so that the server has it checked) and was then revoked: (the app, its tokens, the
/// loan's id, the revoked token, its id).
async fn a_revoked_token(
    backend: Backend,
    ttl: Duration,
) -> Option<(TestApp, Tokens, String, String, String)> {
    let (mut app, t, id) = with_disbursed_loan(backend).await?;
    app.restart_with(loanledger::startup::business_utc_offset_default(), ttl).await;
    let leaked = app.bank_token(BANK).await;
    assert_eq!(app.get_loan(&leaked, &id).await.loan_id, id);
    let token_id = loanledger::app::auth::token_id_of(&leaked).expect("a token's id");
    assert!(loanledger::app::auth::revoke_token(&app.db, &token_id).await.expect("revoke"));
    Some((app, t, id, leaked, token_id))
}

/// A revoked token (`token revoke`) is refused, UNAUTHENTICATED, once the server's cache of
/// checked tokens has let it go (`serve`: 30 s; this test's server: 300 ms). The bank's other
/// tokens go on working, and `token list` shows it revoked.
async fn revoked_token_is_refused(backend: Backend) {
    const TOKEN_CACHE_TTL: Duration = Duration::from_millis(300);
    let Some((app, t, id, leaked, token_id)) = a_revoked_token(backend, TOKEN_CACHE_TTL).await
    else {
        return;
    };
    assert!(
        !loanledger::app::auth::revoke_token(&app.db, &token_id).await.expect("revoke again"),
        "revoked once"
    );
    tokio::time::sleep(TOKEN_CACHE_TTL + Duration::from_millis(200)).await;
    let request =
        || pb::GetLoanRequest { loan_id: id.clone(), as_of: String::new(), through_seq: 0 };
    expect_code(app.loans(&leaked).get_loan(request()).await, Code::Unauthenticated);
    expect_code(app.loans(&leaked).get_loan(request()).await, Code::Unauthenticated);
    assert_eq!(app.get_loan(&t.bank, &id).await.loan_id, id);
    let listed = app.db.list_tokens().await.expect("the tokens");
    let revoked: Vec<&str> =
        listed.iter().filter(|t| t.revoked_at_us.is_some()).map(|t| t.token_id.as_str()).collect();
    assert_eq!(revoked, [token_id.as_str()]);
    app.finish().await;
}

/// A token's re-read runs to the end even when the call that started it is dropped (its
/// deadline passed while the database was slow): the revoked token is then refused at once, not
/// served from the entry as it was for another cache period, which a client that let every
/// re-read time out kept alive for ever. PostgreSQL: its table lock holds the read back (SQLite
/// readers are never held back by a writer).
async fn a_cancelled_token_read_still_revokes(backend: Backend) {
    const TOKEN_CACHE_TTL: Duration = Duration::from_millis(1_000);
    if backend != Backend::Postgres {
        return;
    }
    let Some((app, _, id, leaked, _)) = a_revoked_token(backend, TOKEN_CACHE_TTL).await else {
        return;
    };
    tokio::time::sleep(TOKEN_CACHE_TTL + Duration::from_millis(100)).await;

    use sqlx::Connection;
    let mut lock = sqlx::PgConnection::connect(&app.database_url).await.expect("a connection");
    let mut held = lock.begin().await.expect("a transaction");
    sqlx::query("lock table api_token in access exclusive mode")
        .execute(&mut *held)
        .await
        .expect("the lock");
    let mut request = tonic::Request::new(pb::GetLoanRequest {
        loan_id: id.clone(),
        as_of: String::new(),
        through_seq: 0,
    });
    request.set_timeout(Duration::from_millis(150));
    let timed_out = app.loans(&leaked).get_loan(request).await.expect_err("held back, timed out");
    assert!(matches!(timed_out.code(), Code::DeadlineExceeded | Code::Cancelled), "{timed_out:?}");
    held.commit().await.expect("the lock released");
    // The re-read goes on once the lock is gone (a few milliseconds); long before the cache
    // period ends, the token is refused.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let request =
        || pb::GetLoanRequest { loan_id: id.clone(), as_of: String::new(), through_seq: 0 };
    expect_code(app.loans(&leaked).get_loan(request()).await, Code::Unauthenticated);
    app.finish().await;
}

/// Servers started together on a fresh database (replicas of one deployment) store one first
/// operator token between them, printed by one of them: each checked for a token and then
/// stored its own, so that each printed one.
async fn servers_started_together_make_one_first_token(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    app.stop().await;
    app.db.execute_raw("delete from api_token").await.expect("the first token gone");
    let any_port = "127.0.0.1:0".parse().expect("an address");
    let build =
        || loanledger::startup::Application::build(serve_settings(&app.database_url, any_port));
    let (a, b, c, d) = tokio::join!(build(), build(), build(), build());
    let printed = [a, b, c, d]
        .into_iter()
        .filter_map(|built| built.expect("a server").initial_operator_token())
        .count();
    assert_eq!(printed, 1, "one first token printed");
    assert_eq!(app.db.count_tokens().await.expect("the tokens"), 1, "one stored");
}

/// Servers started together on a new database (replicas of one deployment, first run) both
/// start: the migrations are applied once, the LPR table's chain is begun by one, and the other
/// (which waits for the writer claim the first took to begin it) finds it begun, rather than
/// fail to start (since 2026-12-07). One of them then writes.
async fn servers_started_together_on_a_new_database_both_start(backend: Backend) {
    let Some((url, _dir)) = TestApp::new_database(backend).await else {
        return;
    };
    let any_port = "127.0.0.1:0".parse().expect("an address");
    let build = || loanledger::startup::Application::build(serve_settings(&url, any_port));
    let (a, b) = tokio::join!(build(), build());
    let (a, b) = (a.expect("the first server"), b.expect("the second server"));
    let printed = [&a, &b].iter().filter_map(|app| app.initial_operator_token()).count();
    assert_eq!(printed, 1, "one first token printed");
    let db = loanledger::store::Db::connect(&url).await.expect("the database");
    let chain = db.query_texts("select kind from journal_txn where ledger_id = 'lpr'").await;
    assert_eq!(chain.expect("the LPR chain"), ["lpr.chain_started"]);
    db.close().await;
}

/// The operator reads the service's calls counted by method and status (`GetMetrics`); no
/// other role may.
async fn the_operator_reads_the_calls_counted(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    // A refusal of each kind, on a method of its own: a missing loan, a bad field.
    let missing =
        pb::GetLoanRequest { loan_id: loan_id("C404"), as_of: String::new(), through_seq: 0 };
    expect_code(app.loans(&t.bank).get_loan(missing).await, Code::NotFound);
    let bad = pb::GetLoanRequest { loan_id: "?".into(), as_of: String::new(), through_seq: 0 };
    expect_code(app.loans(&t.bank).get_loan(bad).await, Code::InvalidArgument);
    for token in [&t.bank, &t.finance, &t.auditor] {
        let denied = app.registry(token).get_metrics(pb::GetMetricsRequest {}).await;
        expect_code(denied, Code::PermissionDenied);
    }
    // Paths the server does not serve, without a token: counted together, not each under the
    // path its caller chose (an entry each grew the counts without bound).
    for path in ["/x.S/M", "/loanledger.v1.LoanService/NoSuchMethod"] {
        let answer = app.raw_call("", path, Vec::new()).await.map(tonic::Response::new);
        expect_code(answer, Code::Unimplemented);
    }
    let metrics = app.registry(&t.operator).get_metrics(pb::GetMetricsRequest {}).await;
    let metrics = metrics.expect("GetMetrics").into_inner();
    assert_eq!(metrics.backend, app.db.backend());
    let method = |path: &str| {
        metrics
            .methods
            .iter()
            .find(|m| m.method == path)
            .cloned()
            .unwrap_or_else(|| panic!("{path} not counted: {:?}", metrics.methods))
    };
    let statuses = |m: &pb::MethodMetrics| {
        m.statuses.iter().map(|s| (s.code.clone(), s.count)).collect::<Vec<_>>()
    };
    let get_loan = method("/loanledger.v1.LoanService/GetLoan");
    assert_eq!(get_loan.calls, 2);
    assert_eq!(
        statuses(&get_loan),
        [("INVALID_ARGUMENT".to_string(), 1), ("NOT_FOUND".to_string(), 1)]
    );
    // The seed's ledger, counted OK; the refused reads of the metrics themselves counted too.
    let created = method("/loanledger.v1.RegistryService/CreateLedger");
    assert_eq!(statuses(&created), [("OK".to_string(), created.calls)]);
    let refused = method("/loanledger.v1.RegistryService/GetMetrics");
    assert_eq!(statuses(&refused), [("PERMISSION_DENIED".to_string(), 3)]);
    let unserved = method("(paths not served)");
    assert_eq!(statuses(&unserved), [("UNIMPLEMENTED".to_string(), 2)]);
    assert!(!metrics.methods.iter().any(|m| m.method.contains("NoSuchMethod")), "{metrics:?}");
    app.finish().await;
}

/// The operator's token calls (`CreateToken`, `ListTokens`, `RevokeToken`): a bank's token made
/// over gRPC works at once, its secret answered once (a retry answers the token, no secret;
/// the request id reused for another token is ALREADY_EXISTS); the list pages through every
/// token; a revoked token is refused once the server's cache lets it go (300 ms here); the last
/// operator token is kept until another is made. No other role may make, list or revoke.
async fn the_operator_makes_lists_and_revokes_tokens(backend: Backend) {
    const TOKEN_CACHE_TTL: Duration = Duration::from_millis(300);
    let Some((mut app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    app.restart_with(loanledger::startup::business_utc_offset_default(), TOKEN_CACHE_TTL).await;
    let create = |request_id: &str, role: pb::TokenRole, org: &str| pb::CreateTokenRequest {
        request_id: request_id.into(),
        role: role as i32,
        org: org.into(),
        valid_days: 0,
    };
    for token in [&t.bank, &t.finance, &t.auditor] {
        let denied =
            app.registry(token).create_token(create(&rid("t"), pb::TokenRole::Bank, BANK)).await;
        expect_code(denied, Code::PermissionDenied);
        let listed = app.registry(token).list_tokens(pb::ListTokensRequest::default()).await;
        expect_code(listed, Code::PermissionDenied);
        let own = loanledger::app::auth::token_id_of(token).expect("its id");
        let revoking = pb::RevokeTokenRequest { request_id: rid("r"), token_id: own };
        expect_code(app.registry(token).revoke_token(revoking).await, Code::PermissionDenied);
    }
    let mut registry = app.registry(&t.operator);
    let unnamed = registry.create_token(create(&rid("t"), pb::TokenRole::Unspecified, BANK)).await;
    expect_invalid(unnamed, "role");
    let everywhere = registry.create_token(create(&rid("t"), pb::TokenRole::Finance, "*")).await;
    expect_invalid(everywhere, "org");

    let request = create(&rid("t"), pb::TokenRole::Bank, BANK);
    let made = registry.create_token(request.clone()).await.expect("CreateToken").into_inner();
    let token = made.token.clone().expect("the token");
    assert_eq!((token.role(), token.org.as_str()), (pb::TokenRole::Bank, BANK));
    assert!(token.created_at.is_some() && token.revoked_at.is_none(), "{token:?}");
    let secret = made.secret.clone();
    assert_eq!(
        loanledger::app::auth::token_id_of(&secret).as_deref(),
        Some(token.token_id.as_str())
    );
    assert_eq!(app.get_loan(&secret, &id).await.loan_id, id, "the new token works at once");
    let retried = registry.create_token(request.clone()).await.expect("the retry").into_inner();
    assert_eq!((retried.token, retried.secret.as_str()), (Some(token.clone()), ""));
    let other = create(&request.request_id, pb::TokenRole::Auditor, LEDGER);
    expect_code(registry.create_token(other).await, Code::AlreadyExists);
    // Also for an organisation not registered: the id's reuse is the error (until 2026-12-07
    // the organisation was looked up first, NOT_FOUND).
    let unregistered = create(&request.request_id, pb::TokenRole::Bank, "B8");
    let reused = expect_code(registry.create_token(unregistered).await, Code::AlreadyExists);
    assert_eq!(reused.get_details_error_info().expect("ErrorInfo").reason, "REQUEST_ID_REUSED");
    // An organisation not registered: NOT_FOUND, no token made (a bank's token made ahead, its
    // id then registered by another ledger's office, would act in that ledger).
    let before = app.db.list_tokens().await.expect("the tokens").len();
    for (role, org) in [
        (pb::TokenRole::Bank, "B9"),
        (pb::TokenRole::Finance, "450199"),
        (pb::TokenRole::Auditor, "450199"),
    ] {
        let missing = registry.create_token(create(&rid("t"), role, org)).await;
        let missing = expect_code(missing, Code::NotFound);
        assert!(missing.message().contains(org), "{missing:?}");
    }
    assert_eq!(app.db.list_tokens().await.expect("the tokens").len(), before);
    app.register_bank(&t.operator, "B9").await;
    registry.create_token(create(&rid("t"), pb::TokenRole::Bank, "B9")).await.expect("registered");
    // An auditor of every ledger, whom the operator's tokens of every role answer to.
    let everywhere = registry.create_token(create(&rid("t"), pb::TokenRole::Auditor, "*")).await;
    let everywhere = everywhere.expect("an auditor of every ledger").into_inner().secret;

    // Listed two at a time: every token once, the new one among them, never a secret.
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = registry
            .list_tokens(pb::ListTokensRequest { page_size: 2, page_token: page_token.clone() })
            .await
            .expect("ListTokens")
            .into_inner();
        listed.extend(page.tokens);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let stored = app.db.list_tokens().await.expect("the tokens").len();
    assert_eq!(listed.len(), stored);
    assert!(listed.windows(2).all(|w| w[0].token_id < w[1].token_id), "in id order, once each");
    assert!(listed.contains(&token));
    // The auditor of every ledger reads the same list (since 2026-12-07 late night: the
    // operator issues every token, of every role); it still makes and revokes none.
    let mut audited = app.registry(&everywhere);
    let read = audited.list_tokens(pb::ListTokensRequest::default()).await.expect("ListTokens");
    assert_eq!(read.into_inner().tokens, listed, "the auditor's list");
    let making = audited.create_token(create(&rid("t"), pb::TokenRole::Bank, BANK)).await;
    expect_code(making, Code::PermissionDenied);
    let own = loanledger::app::auth::token_id_of(&everywhere).expect("its id");
    let revoking = pb::RevokeTokenRequest { request_id: rid("r"), token_id: own };
    expect_code(audited.revoke_token(revoking).await, Code::PermissionDenied);
    let forged = pb::ListTokensRequest { page_size: 2, page_token: "after:tok_x@0123".into() };
    expect_invalid(registry.list_tokens(forged).await, "page_token");

    let revoke =
        |token_id: &str| pb::RevokeTokenRequest { request_id: rid("r"), token_id: token_id.into() };
    expect_invalid(registry.revoke_token(revoke("ll_secret")).await, "token_id");
    expect_code(registry.revoke_token(revoke("tok_0000000000000000")).await, Code::NotFound);
    let first = revoke(&token.token_id);
    let revoked = registry.revoke_token(first.clone()).await.expect("RevokeToken");
    let revoked = revoked.into_inner().token.expect("the token");
    assert!(revoked.revoked_at.is_some(), "{revoked:?}");
    let again = registry.revoke_token(revoke(&token.token_id)).await.expect("revoked again");
    assert_eq!(again.into_inner().token, Some(revoked.clone()), "answered as revoked then");
    let retried = registry.revoke_token(first.clone()).await.expect("the retry");
    assert_eq!(retried.into_inner().token, Some(revoked), "the same answer");
    // Its request id sent again for another token: ALREADY_EXISTS, and that token not revoked
    // (until 2026-12-06 the id was not looked at, and the other token went).
    let bank_token = loanledger::app::auth::token_id_of(&t.bank).expect("its id");
    let reused = pb::RevokeTokenRequest { token_id: bank_token, ..first.clone() };
    let reused = expect_code(registry.revoke_token(reused).await, Code::AlreadyExists);
    assert_eq!(reused.get_details_error_info().expect("ErrorInfo").reason, "REQUEST_ID_REUSED");
    // And for a token that does not exist (until 2026-12-07 NOT_FOUND).
    let reused = pb::RevokeTokenRequest { token_id: "tok_0000000000000000".into(), ..first };
    let reused = expect_code(registry.revoke_token(reused).await, Code::AlreadyExists);
    assert_eq!(reused.get_details_error_info().expect("ErrorInfo").reason, "REQUEST_ID_REUSED");
    assert_eq!(app.get_loan(&t.bank, &id).await.loan_id, id, "the bank's token still works");
    // Refused at once by the server that revoked it (it drops the token from its cache).
    let request = pb::GetLoanRequest { loan_id: id.clone(), as_of: String::new(), through_seq: 0 };
    expect_code(app.loans(&secret).get_loan(request).await, Code::Unauthenticated);

    // The operator tokens but the test's own revoked: that one is the last, and kept.
    let own = loanledger::app::auth::token_id_of(&t.operator).expect("its id");
    for other in listed.iter().filter(|k| k.role() == pb::TokenRole::Operator && k.token_id != own)
    {
        registry.revoke_token(revoke(&other.token_id)).await.expect("another operator's");
    }
    let refused_request = revoke(&own);
    let last = registry.revoke_token(refused_request.clone()).await;
    expect_refused(last, "LAST_OPERATOR_TOKEN");
    let next = registry
        .create_token(create(&rid("t"), pb::TokenRole::Operator, "*"))
        .await
        .expect("another operator token")
        .into_inner();
    // The refused request retried once another operator token exists: refused the same way,
    // the token its operator kept not revoked (a late retry would have revoked it).
    let retried = registry.revoke_token(refused_request).await;
    expect_refused(retried, "LAST_OPERATOR_TOKEN");
    let own_row = app.db.get_token(&own).await.expect("read").expect("the token");
    assert!(own_row.revoked_at_us.is_none(), "{own_row:?}");
    let handed_over = registry.revoke_token(revoke(&own)).await.expect("no longer the last");
    assert!(handed_over.into_inner().token.expect("the token").revoked_at.is_some());
    let tokens = app.registry(&next.secret).list_tokens(pb::ListTokensRequest::default()).await;
    let live: Vec<_> = tokens
        .expect("the new operator lists")
        .into_inner()
        .tokens
        .into_iter()
        .filter(|k| k.role() == pb::TokenRole::Operator && k.revoked_at.is_none())
        .map(|k| k.token_id)
        .collect();
    let next_id = next.token.expect("the token").token_id;
    assert_eq!(live, std::slice::from_ref(&next_id));
    // The last two operator tokens, each revoking the other at once: one goes, the other is
    // kept as the last (its caller then refused as the last, or, reaching the server after
    // the first revocation, as revoked itself).
    let third = app
        .registry(&next.secret)
        .create_token(create(&rid("t"), pb::TokenRole::Operator, "*"))
        .await
        .expect("a third operator token")
        .into_inner();
    let third_id = third.token.expect("the token").token_id;
    let (mut a, mut b) = (app.registry(&next.secret), app.registry(&third.secret));
    let (one, other) =
        tokio::join!(a.revoke_token(revoke(&third_id)), b.revoke_token(revoke(&next_id)));
    let kept: Vec<bool> = [one.is_ok(), other.is_ok()].into();
    assert_eq!(kept.iter().filter(|ok| **ok).count(), 1, "{one:?} {other:?}");
    let refused = if one.is_ok() { other } else { one };
    let code = refused.expect_err("one refused").code();
    assert!(matches!(code, Code::FailedPrecondition | Code::Unauthenticated), "{code:?}");
    let live = app.db.list_tokens().await.expect("the tokens");
    let live = live.iter().filter(|k| k.role == "operator" && k.revoked_at_us.is_none()).count();
    assert_eq!(live, 1, "the last operator token kept");
    app.finish().await;
}

/// A token made with a term (`valid_days`) shows when it expires and is refused from then on,
/// as a revoked one (a token stored with its term past here: no test waits a day); a term over
/// ten years is `INVALID_ARGUMENT` naming `valid_days`; a retry with another term is
/// `ALREADY_EXISTS`. The last operator token kept from revocation is the last one neither
/// revoked nor expired: an expired operator token is revoked, the one that still works is not,
/// though another expired one is there.
async fn a_token_expires_at_the_end_of_its_term(backend: Backend) {
    let Some((app, t, id)) = with_disbursed_loan(backend).await else {
        return;
    };
    let mut registry = app.registry(&t.operator);
    let create = |role: pb::TokenRole, org: &str, valid_days: u32| pb::CreateTokenRequest {
        request_id: rid("t"),
        role: role as i32,
        org: org.into(),
        valid_days,
    };
    let too_long = registry.create_token(create(pb::TokenRole::Bank, BANK, 3_661)).await;
    expect_invalid(too_long, "valid_days");
    let request = create(pb::TokenRole::Bank, BANK, 30);
    let made = registry.create_token(request.clone()).await.expect("CreateToken").into_inner();
    let token = made.token.clone().expect("the token");
    let (created, expires) =
        (token.created_at.expect("created"), token.expires_at.expect("a term"));
    assert_eq!(expires.seconds - created.seconds, 30 * 86_400, "{token:?}");
    assert_eq!(app.get_loan(&made.secret, &id).await.loan_id, id, "valid within its term");
    let retried = registry.create_token(request.clone()).await.expect("the retry").into_inner();
    assert_eq!(retried.token, Some(token));
    let longer = pb::CreateTokenRequest { valid_days: 31, ..request };
    expect_code(registry.create_token(longer).await, Code::AlreadyExists);
    let without = create(pb::TokenRole::Bank, BANK, 0);
    let without = registry.create_token(without).await.expect("no term").into_inner();
    assert_eq!(without.token.and_then(|t| t.expires_at), None);

    // Tokens whose term ended a second ago: refused, as a revoked one.
    let now_us = chrono::Utc::now().timestamp_micros();
    let stored = |n: u8, role: &'static str, org: &'static str| {
        let secret = format!("ll_{}", format!("{n:02x}").repeat(32));
        let token_id = loanledger::app::auth::token_id_of(&secret).expect("an id");
        let hash = loanledger::app::auth::hash_token(&secret);
        let db = app.db.clone();
        async move {
            db.insert_token(
                &token_id,
                &hash,
                role,
                org,
                now_us - 2_000_000,
                Some(now_us - 1_000_000),
            )
            .await
            .expect("stored");
            (secret, token_id)
        }
    };
    let (expired_bank, _) = stored(0xb1, "bank", BANK).await;
    let request = pb::GetLoanRequest { loan_id: id.clone(), as_of: String::new(), through_seq: 0 };
    let refused = expect_code(
        app.loans(&expired_bank).get_loan(request.clone()).await,
        Code::Unauthenticated,
    );
    // Told apart from an unknown token: its holder learns it must ask for a new one.
    assert!(refused.message().starts_with("the bearer token expired at 20"), "{refused:?}");
    // A token that expires while the server trusts it (its cache keeps a token 30 s): refused
    // from its expiry on, not when the server next reads it.
    let secret = format!("ll_{}", "b2".repeat(32));
    let hash = loanledger::app::auth::hash_token(&secret);
    let token_id = loanledger::app::auth::token_id_of(&secret).expect("an id");
    let now_us = chrono::Utc::now().timestamp_micros();
    app.db
        .insert_token(&token_id, &hash, "bank", BANK, now_us, Some(now_us + 1_500_000))
        .await
        .expect("stored");
    app.loans(&secret).get_loan(request.clone()).await.expect("valid for a second and a half");
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    expect_code(app.loans(&secret).get_loan(request).await, Code::Unauthenticated);
    let listed = registry.list_tokens(pb::ListTokensRequest::default()).await.expect("ListTokens");
    let expired_id = loanledger::app::auth::token_id_of(&expired_bank).expect("an id");
    let listed = listed.into_inner().tokens;
    let expired = listed.iter().find(|k| k.token_id == expired_id).expect("listed");
    assert!(expired.expires_at.is_some() && expired.revoked_at.is_none(), "{expired:?}");

    // The operator tokens: the test's own, and an expired one. The expired one is revoked; the
    // test's own, the last that works, is kept.
    let (_, expired_operator) = stored(0x0e, "operator", "*").await;
    let own = loanledger::app::auth::token_id_of(&t.operator).expect("its id");
    for other in listed.iter().filter(|k| k.role() == pb::TokenRole::Operator && k.token_id != own)
    {
        let revoke =
            pb::RevokeTokenRequest { request_id: rid("r"), token_id: other.token_id.clone() };
        registry.revoke_token(revoke).await.expect("another operator's");
    }
    let revoke =
        |token_id: &str| pb::RevokeTokenRequest { request_id: rid("r"), token_id: token_id.into() };
    let gone = registry.revoke_token(revoke(&expired_operator)).await.expect("an expired one");
    assert!(gone.into_inner().token.expect("the token").revoked_at.is_some());
    // Another expired operator token, not revoked, does not count as one left.
    stored(0x0f, "operator", "*").await;
    expect_refused(registry.revoke_token(revoke(&own)).await, "LAST_OPERATOR_TOKEN");
    app.finish().await;
}

/// A token revoked while an answer streams to it ends the stream at its next page,
/// `UNAUTHENTICATED`, as a new call is (since 2026-12-07: a `ReadJournal` begun went on to the
/// journal's end): an auditor's read of a journal of 10,000 transactions (pages of 1,000) ends
/// before the journal's end once its token is revoked after the first transaction (what the
/// server had sent ahead, up to the transport's window of about 2 MiB, still arrives).
async fn a_token_revoked_while_its_stream_runs_ends_it(backend: Backend) {
    let Some((app, t, id)) = super::with_disbursed_loan(backend).await else {
        return;
    };
    let items =
        (0..10_000).map(|i| repayment_item(&rid(&format!("r{i}")), &id, "2021-02-01", 1)).collect();
    let answer = app.loans(&t.bank).submit_batch(pb::SubmitBatchRequest { items }).await;
    let answer = answer.expect("the batch").into_inner();
    let refused = answer.results.iter().find(|r| !r.ok);
    assert_eq!(answer.posted, 10_000, "{refused:?}");
    let mut registry = app.registry(&t.operator);
    let create = pb::CreateTokenRequest {
        request_id: rid("t"),
        role: pb::TokenRole::Auditor as i32,
        org: LEDGER.into(),
        valid_days: 0,
    };
    let auditor = registry.create_token(create).await.expect("an auditor's token").into_inner();
    let whole = app.journal(&auditor.secret, LEDGER).await.len();
    assert!(whole > 10_000, "{whole}");
    let read = pb::ReadJournalRequest { ledger_id: LEDGER.into(), from_seq: 0, to_seq: 0 };
    let mut stream =
        app.audit(&auditor.secret).read_journal(read).await.expect("ReadJournal").into_inner();
    let first = stream.message().await.expect("the first transaction");
    assert!(first.is_some());
    let token_id = auditor.token.expect("the token").token_id;
    let revoke = pb::RevokeTokenRequest { request_id: rid("r"), token_id };
    registry.revoke_token(revoke).await.expect("RevokeToken");
    let mut read = 1;
    let ended = loop {
        match stream.message().await {
            Ok(Some(_)) => read += 1,
            Ok(None) => panic!("the stream ran to its end ({read} transactions)"),
            Err(e) => break e,
        }
    };
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(read < whole, "{read} transactions read of {whole}");
    app.finish().await;
}

/// A call of a loanledger method is refused from its headers when its token is missing or
/// unknown, before its body is read (`api::auth_first`, since 2026-12-07 late night): a body
/// over the 4 MiB a request may have is `UNAUTHENTICATED` then, where it was decoded first
/// and refused `OUT_OF_RANGE` for its size; with a valid token it is still `OUT_OF_RANGE`.
/// Health and reflection take no token, and a path the server does not serve is
/// `UNIMPLEMENTED` before any token, as before.
async fn a_call_without_a_valid_token_is_refused_before_its_body_is_read(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = app.seed().await;
    let huge = || pb::GetLoanRequest {
        loan_id: "x".repeat(5 << 20),
        as_of: String::new(),
        through_seq: 0,
    };
    let mut anonymous = LoanServiceClient::new(app.channel());
    let refused = expect_code(anonymous.get_loan(huge()).await, Code::Unauthenticated);
    assert!(refused.message().contains("missing authorization"), "{refused:?}");
    let unknown = format!("ll_{}", "cd".repeat(32));
    expect_code(app.loans(&unknown).get_loan(huge()).await, Code::Unauthenticated);
    let too_large = expect_code(app.loans(&t.bank).get_loan(huge()).await, Code::OutOfRange);
    assert!(too_large.message().contains("4194304"), "{too_large:?}");
    // The valid token's ordinary call, and health without a token, answered as ever.
    let missing =
        pb::GetLoanRequest { loan_id: loan_id("C404"), as_of: String::new(), through_seq: 0 };
    expect_code(app.loans(&t.bank).get_loan(missing).await, Code::NotFound);
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel());
    let check = tonic_health::pb::HealthCheckRequest { service: String::new() };
    health.check(check).await.expect("health without a token");
    let path = "/loanledger.v1.LoanService/NoSuchMethod";
    let mut grpc = tonic::client::Grpc::new(app.channel());
    grpc.ready().await.expect("ready");
    let codec = tonic_prost::ProstCodec::<pb::GetLedgerRequest, pb::Ledger>::default();
    let unserved = grpc
        .unary(
            tonic::Request::new(pb::GetLedgerRequest { ledger_id: LEDGER.into() }),
            path.parse().expect("a path"),
            codec,
        )
        .await;
    expect_code(unserved.map(|r| tonic::Response::new(r.into_inner())), Code::Unimplemented);
    app.finish().await;
}
