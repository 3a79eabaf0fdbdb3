-- The spine of loanledger: the journal (append-only, hash-chained per ledger), its postings,
-- the registry, policy and LPR reference data, the loan read model, idempotency records and API
-- tokens. Money is bigint fen; rates are canonical decimal text (the same text that enters the
-- hash, so it round-trips exactly and both backends read it the same way); business dates are
-- 'YYYY-MM-DD' text, which sorts as dates. The schema mirrors migrations/sqlite.

create table ledger (
    ledger_id text primary key,
    name      text not null
);

create table journal_txn (
    ledger_id      text   not null,
    seq            bigint not null,
    kind           text   not null,
    value_date     text   not null,
    recorded_at_us bigint not null,
    actor          text   not null,
    request_id     text   not null,
    command_json   text   not null,
    prev_hash      text   not null,
    hash           text   not null,
    constraint journal_txn_pkey primary key (ledger_id, seq)
);

create table posting (
    ledger_id  text    not null,
    seq        bigint  not null,
    idx        integer not null,
    account    text    not null,
    amount_fen bigint  not null,
    constraint posting_pkey primary key (ledger_id, seq, idx)
);

create table journal_loan (
    loan_id   text   not null,
    ledger_id text   not null,
    seq       bigint not null,
    constraint journal_loan_pkey primary key (loan_id, seq)
);

create table bank (
    bank_id   text primary key,
    ledger_id text not null references ledger (ledger_id),
    name      text not null
);

create table household (
    household_id   text primary key,
    ledger_id      text not null references ledger (ledger_id),
    head_name      text not null,
    head_id_number text not null,
    township       text not null,
    village        text not null
);

create table household_status (
    household_id   text   not null references household (household_id),
    seq            bigint not null,
    effective_date text   not null,
    status         text   not null,
    reason         text   not null,
    constraint household_status_pkey primary key (household_id, seq)
);

create table policy_version (
    ledger_id      text not null references ledger (ledger_id),
    effective_date text not null,
    params_json    text not null,
    constraint policy_version_pkey primary key (ledger_id, effective_date)
);

create table lpr (
    effective_date text not null,
    tenor          text not null,
    rate           text not null,
    constraint lpr_pkey primary key (effective_date, tenor)
);

create table loan (
    loan_id                   text primary key,
    ledger_id                 text    not null references ledger (ledger_id),
    bank_id                   text    not null references bank (bank_id),
    contract_number           text    not null,
    household_id              text    not null references household (household_id),
    borrower_name             text    not null,
    borrower_id_number        text    not null,
    principal_fen             bigint  not null,
    annual_rate               text    not null,
    contract_date             text    not null,
    term_months               integer not null,
    maturity_date             text    not null,
    repayment_method          text    not null,
    settlement_frequency      text    not null,
    purpose                   text    not null,
    collateral_free           boolean not null,
    guarantee_free            boolean not null,
    status                    text    not null,
    disbursed_fen             bigint  not null,
    principal_outstanding_fen bigint  not null,
    principal_repaid_fen      bigint  not null,
    interest_paid_fen         bigint  not null,
    disbursed_on              text,
    last_value_date           text    not null,
    -- The loan this one renews (续贷), if any.
    renews_loan_id            text,
    -- Policy figures fixed at origination (uplifts, grace days, rounding, extension limit).
    policy_json               text    not null,
    -- Servicing state: accruals, unpaid interest items, penalty and compound buckets.
    servicing_json            text    not null,
    last_seq                  bigint  not null
);
create index loan_bank_idx on loan (bank_id, loan_id);
create index loan_household_idx on loan (household_id);
create index loan_ledger_idx on loan (ledger_id, loan_id);

create table account_balance (
    ledger_id   text   not null,
    account     text   not null,
    balance_fen bigint not null,
    constraint account_balance_pkey primary key (ledger_id, account)
);

create table idempotency (
    scope       text   not null,
    request_id  text   not null,
    fingerprint text   not null,
    result_json text   not null,
    ledger_id   text   not null,
    seq         bigint not null,
    constraint idempotency_pkey primary key (scope, request_id)
);

create table api_token (
    token_id      text primary key,
    token_hash    text   not null unique,
    role          text   not null,
    org           text   not null,
    created_at_us bigint not null,
    revoked_at_us bigint
);

-- The journal and the dated reference data are append-only: the database itself refuses
-- changes, TRUNCATE included. A correction is a new transaction that reverses an earlier one.
create function refuse_change() returns trigger language plpgsql as $$
begin
    raise exception '% is append-only', tg_table_name using errcode = 'P0001';
end;
$$;

create trigger journal_txn_append_only before update or delete on journal_txn
    for each row execute function refuse_change();
create trigger journal_txn_no_truncate before truncate on journal_txn
    for each statement execute function refuse_change();
create trigger posting_append_only before update or delete on posting
    for each row execute function refuse_change();
create trigger posting_no_truncate before truncate on posting
    for each statement execute function refuse_change();
create trigger journal_loan_append_only before update or delete on journal_loan
    for each row execute function refuse_change();
create trigger household_status_append_only before update or delete on household_status
    for each row execute function refuse_change();
create trigger policy_version_append_only before update or delete on policy_version
    for each row execute function refuse_change();
create trigger lpr_append_only before update or delete on lpr
    for each row execute function refuse_change();
create trigger idempotency_append_only before update or delete on idempotency
    for each row execute function refuse_change();
