-- The spine of loanledger: the journal (append-only, hash-chained per ledger), its postings,
-- the registry, policy and LPR reference data, the loan read model, idempotency records and API
-- tokens. Money is integer fen; rates are canonical decimal text (the same text that enters the
-- hash, so it round-trips exactly); business dates are 'YYYY-MM-DD' text, which sorts as dates.

-- A region's books (a county, identified by its division code). Each ledger has its own chain.
create table ledger (
    ledger_id text primary key,
    name      text not null
);

-- The journal: one row per accepted command. seq is dense from 1 within a ledger;
-- hash = SHA-256(prev_hash || canonical bytes), see src/ledger/hash.rs.
create table journal_txn (
    ledger_id      text    not null,
    seq            integer not null,
    kind           text    not null,
    value_date     text    not null,
    recorded_at_us integer not null,
    actor          text    not null,
    request_id     text    not null,
    command_json   text    not null,
    prev_hash      text    not null,
    hash           text    not null,
    constraint journal_txn_pkey primary key (ledger_id, seq)
) without rowid;

-- The legs of each journal transaction; they sum to zero per transaction.
create table posting (
    ledger_id  text    not null,
    seq        integer not null,
    idx        integer not null,
    account    text    not null,
    amount_fen integer not null,
    constraint posting_pkey primary key (ledger_id, seq, idx)
) without rowid;

-- Which journal transactions touch which loan, for loan histories.
create table journal_loan (
    loan_id   text    not null,
    ledger_id text    not null,
    seq       integer not null,
    constraint journal_loan_pkey primary key (loan_id, seq)
) without rowid;

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

-- The household's registry status as a dated series: the entry with the latest effective_date
-- on or before a date (and, on the same date, the latest seq) is the status on that date.
create table household_status (
    household_id   text    not null references household (household_id),
    seq            integer not null,
    effective_date text    not null,
    status         text    not null,
    reason         text    not null,
    constraint household_status_pkey primary key (household_id, seq)
);

-- Programme parameters per ledger, versioned by effective date (src/domain/policy.rs).
create table policy_version (
    ledger_id      text not null references ledger (ledger_id),
    effective_date text not null,
    params_json    text not null,
    constraint policy_version_pkey primary key (ledger_id, effective_date)
);

-- National loan prime rates (and the PBoC benchmark before the 2019 reform), by tenor bucket.
create table lpr (
    effective_date text not null,
    tenor          text not null,
    rate           text not null,
    constraint lpr_pkey primary key (effective_date, tenor)
);

-- Loan read model: rebuilt by `verify` from the journal and compared.
create table loan (
    loan_id                   text primary key,
    ledger_id                 text    not null references ledger (ledger_id),
    bank_id                   text    not null references bank (bank_id),
    contract_number           text    not null,
    household_id              text    not null references household (household_id),
    borrower_name             text    not null,
    borrower_id_number        text    not null,
    principal_fen             integer not null,
    annual_rate               text    not null,
    contract_date             text    not null,
    term_months               integer not null,
    maturity_date             text    not null,
    repayment_method          text    not null,
    settlement_frequency      text    not null,
    purpose                   text    not null,
    collateral_free           integer not null,
    guarantee_free            integer not null,
    status                    text    not null,
    disbursed_fen             integer not null,
    principal_outstanding_fen integer not null,
    principal_repaid_fen      integer not null,
    interest_paid_fen         integer not null,
    disbursed_on              text,
    last_value_date           text    not null,
    -- The loan this one renews (续贷), if any.
    renews_loan_id            text,
    -- Policy figures fixed at origination (uplifts, grace days, rounding, extension limit).
    policy_json               text    not null,
    -- Servicing state: accruals, unpaid interest items, penalty and compound buckets.
    servicing_json            text    not null,
    last_seq                  integer not null
);
create index loan_bank_idx on loan (bank_id, loan_id);
create index loan_household_idx on loan (household_id);
create index loan_ledger_idx on loan (ledger_id, loan_id);

-- Account balances read model (sum of postings per account).
create table account_balance (
    ledger_id   text    not null,
    account     text    not null,
    balance_fen integer not null,
    constraint account_balance_pkey primary key (ledger_id, account)
) without rowid;

-- The first answer to each request id, per acting principal; a retry gets it back.
create table idempotency (
    scope       text not null,
    request_id  text not null,
    fingerprint text not null,
    result_json text not null,
    ledger_id   text not null,
    seq         integer not null,
    constraint idempotency_pkey primary key (scope, request_id)
) without rowid;

-- Bearer tokens, stored as SHA-256 of the secret.
create table api_token (
    token_id     text primary key,
    token_hash   text not null unique,
    role         text not null,
    org          text not null,
    created_at_us integer not null,
    revoked_at_us integer
);

-- The journal and the dated reference data are append-only: the database itself refuses
-- changes. A correction is a new transaction that reverses an earlier one.
create trigger journal_txn_no_update before update on journal_txn
begin select raise(abort, 'journal_txn is append-only'); end;
create trigger journal_txn_no_delete before delete on journal_txn
begin select raise(abort, 'journal_txn is append-only'); end;
create trigger posting_no_update before update on posting
begin select raise(abort, 'posting is append-only'); end;
create trigger posting_no_delete before delete on posting
begin select raise(abort, 'posting is append-only'); end;
create trigger journal_loan_no_update before update on journal_loan
begin select raise(abort, 'journal_loan is append-only'); end;
create trigger journal_loan_no_delete before delete on journal_loan
begin select raise(abort, 'journal_loan is append-only'); end;
create trigger household_status_no_update before update on household_status
begin select raise(abort, 'household_status is append-only'); end;
create trigger household_status_no_delete before delete on household_status
begin select raise(abort, 'household_status is append-only'); end;
create trigger policy_version_no_update before update on policy_version
begin select raise(abort, 'policy_version is append-only'); end;
create trigger policy_version_no_delete before delete on policy_version
begin select raise(abort, 'policy_version is append-only'); end;
create trigger lpr_no_update before update on lpr
begin select raise(abort, 'lpr is append-only'); end;
create trigger lpr_no_delete before delete on lpr
begin select raise(abort, 'lpr is append-only'); end;
create trigger idempotency_no_update before update on idempotency
begin select raise(abort, 'idempotency is append-only'); end;
create trigger idempotency_no_delete before delete on idempotency
begin select raise(abort, 'idempotency is append-only'); end;
