-- Every append-only table refuses TRUNCATE, as journal_txn and posting have since 0001: the
-- row triggers of 0001 do not fire on TRUNCATE, which would otherwise empty the loan links, the
-- household statuses, the policy versions, the LPR table or the idempotency records (after
-- which a retried request would post again).
create trigger journal_loan_no_truncate before truncate on journal_loan
    for each statement execute function refuse_change();
create trigger household_status_no_truncate before truncate on household_status
    for each statement execute function refuse_change();
create trigger policy_version_no_truncate before truncate on policy_version
    for each statement execute function refuse_change();
create trigger lpr_no_truncate before truncate on lpr
    for each statement execute function refuse_change();
create trigger idempotency_no_truncate before truncate on idempotency
    for each statement execute function refuse_change();
