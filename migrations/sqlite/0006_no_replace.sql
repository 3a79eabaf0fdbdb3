-- The append-only tables refuse a row under a stored key (or, for a rowid table, a stored rowid).
--
-- Their update and delete triggers (0001, 0003, 0004) did not stop `INSERT OR REPLACE` (or
-- `REPLACE INTO`): SQLite's REPLACE deletes the row in the way without firing delete triggers
-- (unless a connection turns `recursive_triggers` on, which no hand edit need do), so a stored
-- journal row, history link, status, policy version, LPR entry or idempotency record could be
-- replaced row by row. Each table now checks, before a row goes in, that none is stored under
-- its key; a rowid table also that none is stored under the rowid the statement gives (without
-- one, NEW.rowid is -1 here, which no row has). The writer never inserts under a stored key but
-- for a retried request id, whose group is rolled back as a whole either way (it writes with
-- `OR ROLLBACK`; this refusal is `RAISE(ROLLBACK)`, so that the writer's statements need no
-- statement journal, BENCHMARKS-HISTORY.md change 41). The idempotency table's message names
-- its request-id column as SQLite's own key violation does, so that the writer tells a
-- retried request by either (`store::sqlite_request_seen`). PostgreSQL has no REPLACE: its
-- upsert (`ON CONFLICT DO UPDATE`) fires the update triggers, which refuse it.
--
-- From this version on, refusals and finished settlement runs' summaries are also recorded in
-- `idempotency` (answers of the kinds `refused` and `settlement_run_summary`), which versions
-- before it cannot read; as a migration they do not know, this one
-- makes them refuse the database at their start (PostgreSQL's 0009 does the same there).

create trigger journal_txn_no_replace before insert on journal_txn
when exists (select 1 from journal_txn where ledger_id = new.ledger_id and seq = new.seq)
    or exists (select 1 from journal_txn where rowid = new.rowid)
begin select raise(rollback, 'journal_txn is append-only: a row with this key or rowid is stored already (journal_txn.ledger_id, journal_txn.seq)'); end;

create trigger journal_loan_no_replace before insert on journal_loan
when exists (select 1 from journal_loan where loan_id = new.loan_id and seq = new.seq)
begin select raise(rollback, 'journal_loan is append-only: a row with this key is stored already (journal_loan.loan_id, journal_loan.seq)'); end;

create trigger household_status_no_replace before insert on household_status
when exists (select 1 from household_status where household_id = new.household_id and seq = new.seq)
    or exists (select 1 from household_status where rowid = new.rowid)
begin select raise(rollback, 'household_status is append-only: a row with this key or rowid is stored already (household_status.household_id, household_status.seq)'); end;

create trigger policy_version_no_replace before insert on policy_version
when exists (select 1 from policy_version where ledger_id = new.ledger_id and effective_date = new.effective_date)
    or exists (select 1 from policy_version where rowid = new.rowid)
begin select raise(rollback, 'policy_version is append-only: a row with this key or rowid is stored already (policy_version.ledger_id, policy_version.effective_date)'); end;

create trigger lpr_no_replace before insert on lpr
when exists (select 1 from lpr where effective_date = new.effective_date and tenor = new.tenor)
    or exists (select 1 from lpr where rowid = new.rowid)
begin select raise(rollback, 'lpr is append-only: a row with this key or rowid is stored already (lpr.effective_date, lpr.tenor)'); end;

create trigger idempotency_no_replace before insert on idempotency
when exists (select 1 from idempotency where scope = new.scope and request_id = new.request_id)
    or exists (select 1 from idempotency where rowid = new.rowid)
begin select raise(rollback, 'idempotency is append-only: a row with this key or rowid is stored already (idempotency.scope, idempotency.request_id)'); end;
