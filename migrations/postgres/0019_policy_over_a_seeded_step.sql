-- A ledger's own policy version may stand on the date of a seeded step of the subsidy ratio
-- (2024-01-01), after it: the county's version then replaces the national step from that day
-- (src/domain/policy.rs, `in_force`). Versions on one date are kept in the order they were set,
-- `ordinal` 0 the first; only a seeded step can have one after it (the writer refuses others).
-- A column with a constant default is added without rewriting a row (no guard fires).
alter table policy_version add column ordinal integer not null default 0;
alter table policy_version drop constraint policy_version_pkey,
    add constraint policy_version_pkey primary key (ledger_id, effective_date, ordinal);
