-- Risk-compensation funds (src/domain/risk_fund.rs): read models of the journal's
-- risk_fund.* transactions, rebuilt from it by verify.
-- A ledger's fund as it stands (its figures as JSON, the balance beside them).
create table risk_fund (
    ledger_id   text collate "C" primary key references ledger (ledger_id),
    balance_fen bigint not null,
    fund_json   text not null,
    last_seq    bigint not null
);
-- Each compensated loan's compensation, with what was returned of it since.
create table risk_compensation (
    loan_id           text collate "C" primary key,
    ledger_id         text collate "C" not null references ledger (ledger_id),
    bank_id           text collate "C" not null,
    compensation_json text not null,
    last_seq          bigint not null
);
create index risk_compensation_ledger on risk_compensation (ledger_id, loan_id);
