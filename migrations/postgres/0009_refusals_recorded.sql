-- From this version on, a refusal is recorded under its request id in `idempotency` (an
-- answer of the kind `refused`, under no ledger and seq 0), and a finished settlement run's
-- summary under `<request_id> (summary)` (`settlement_run_summary`), which versions before it
-- cannot read: a retry of such a request would fail there as an internal error. This migration
-- changes nothing: it is recorded in _sqlx_migrations so that such a version refuses the
-- database at its start (an applied migration it does not know), as 0008 does.
select 1;
