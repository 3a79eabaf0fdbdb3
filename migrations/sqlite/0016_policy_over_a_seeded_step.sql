-- A ledger's own policy version may stand on the date of a seeded step of the subsidy ratio
-- (2024-01-01), after it: the county's version then replaces the national step from that day
-- (src/domain/policy.rs, `in_force`). Versions on one date are kept in the order they were set,
-- `ordinal` 0 the first; only a seeded step can have one after it (the writer refuses others).
-- SQLite cannot change a primary key: the table is made again, its rows copied (ordinal 0) and
-- its guards made again as they were, the key with `ordinal`. Dropping the old table drops its
-- triggers before its rows, so that no guard refuses it.
create table policy_version_keyed (
    ledger_id      text    not null references ledger (ledger_id),
    effective_date text    not null,
    ordinal        integer not null default 0,
    params_json    text    not null,
    constraint policy_version_pkey primary key (ledger_id, effective_date, ordinal)
);
insert into policy_version_keyed (ledger_id, effective_date, ordinal, params_json)
    select ledger_id, effective_date, 0, params_json from policy_version
    order by ledger_id, effective_date;
drop table policy_version;
alter table policy_version_keyed rename to policy_version;

create trigger policy_version_no_update before update on policy_version
begin select raise(abort, 'policy_version is append-only'); end;
create trigger policy_version_no_delete before delete on policy_version
begin select raise(abort, 'policy_version is append-only'); end;
create trigger policy_version_no_replace before insert on policy_version
when exists (select 1 from policy_version where ledger_id = new.ledger_id and effective_date = new.effective_date and ordinal = new.ordinal)
    or exists (select 1 from policy_version where rowid = new.rowid)
begin select raise(rollback, 'policy_version is append-only: a row with this key or rowid is stored already (policy_version.ledger_id, policy_version.effective_date, policy_version.ordinal)'); end;
