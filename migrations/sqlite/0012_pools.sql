-- Pooled-loan arrangements (分贷统还, src/domain/pool.rs): read models of the journal's pool.*
-- transactions, rebuilt from it by verify.
-- A pool as it stands: its terms, members and figures as JSON.
create table pool (
    pool_id   text primary key,
    ledger_id text not null references ledger (ledger_id),
    bank_id   text not null,
    status    text not null,
    pool_json text not null,
    last_seq  integer not null
);
create index pool_ledger on pool (ledger_id, pool_id);
-- Each member loan's pool: a loan is in one pool at most in its life.
create table pool_member (
    loan_id   text primary key,
    pool_id   text not null,
    ledger_id text not null references ledger (ledger_id)
);
create index pool_member_ledger on pool_member (ledger_id, loan_id);
