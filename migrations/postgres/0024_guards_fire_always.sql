-- The append-only guards fire in every session, also one whose `session_replication_role` is
-- `replica` (a logical-replication apply worker, `pg_restore --disable-triggers`' sessions, or
-- a role or database set so), where a trigger left in the default state (`ENABLE`, `O`) does
-- not: such a session could rewrite the journal and its idempotency records unrefused.
-- `verify` reports a guard in any other state.
alter table journal_txn enable always trigger journal_txn_append_only;
alter table journal_txn enable always trigger journal_txn_no_truncate;
alter table journal_loan enable always trigger journal_loan_append_only;
alter table journal_loan enable always trigger journal_loan_no_truncate;
alter table household_status enable always trigger household_status_append_only;
alter table household_status enable always trigger household_status_no_truncate;
alter table policy_version enable always trigger policy_version_append_only;
alter table policy_version enable always trigger policy_version_no_truncate;
alter table lpr enable always trigger lpr_append_only;
alter table lpr enable always trigger lpr_no_truncate;
alter table idempotency enable always trigger idempotency_append_only;
alter table idempotency enable always trigger idempotency_no_truncate;
