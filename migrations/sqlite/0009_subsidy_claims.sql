-- Subsidy claims (src/domain/subsidy_claim.rs): read models of the journal's
-- subsidy_claim.* transactions, rebuilt from it by verify.
-- A claim as it stands: claim_json is the whole claim (lines claimed and recomputed),
-- summary_json the same without its lines (ClaimSummary).
create table subsidy_claim (
    claim_id   text primary key,
    ledger_id  text not null references ledger (ledger_id),
    bank_id    text not null,
    status     text not null,
    claim_json text not null,
    -- The claim without its lines, with its sums and its lines' count: what a list reads.
    summary_json text not null,
    last_seq   integer not null
);
create index subsidy_claim_ledger on subsidy_claim (ledger_id, bank_id, claim_id);
-- Each loan-period claimed, and the claim that holds it: a loan-period is claimed once.
create table subsidy_claim_period (
    loan_id   text not null,
    due_date  text not null,
    claim_id  text not null references subsidy_claim (claim_id),
    ledger_id text not null,
    primary key (loan_id, due_date)
) without rowid;
