-- Identifiers and keys compare as bytes, as SQLite compares them, whatever the database's
-- default collation. A cluster made with a locale such as en_US.UTF-8 orders `abc` before `ABD`
-- and compares every key through the C library's locale-aware `strcoll`; with the "C" collation
-- the order is the same on both backends (lists, pages of a settlement run) and comparing a key
-- is a `memcmp`. The indexes on these columns are rebuilt; the rows are not rewritten.
-- New identifier columns are declared `collate "C"` too.
alter table ledger alter column ledger_id type text collate "C";
alter table journal_txn alter column ledger_id type text collate "C";
alter table posting alter column ledger_id type text collate "C";
alter table posting alter column account type text collate "C";
alter table journal_loan alter column loan_id type text collate "C",
                         alter column ledger_id type text collate "C";
alter table bank alter column bank_id type text collate "C",
                 alter column ledger_id type text collate "C";
alter table household alter column household_id type text collate "C",
                      alter column ledger_id type text collate "C";
alter table household_status alter column household_id type text collate "C";
alter table policy_version alter column ledger_id type text collate "C",
                           alter column effective_date type text collate "C";
alter table lpr alter column effective_date type text collate "C",
                alter column tenor type text collate "C";
alter table loan alter column loan_id type text collate "C",
                 alter column ledger_id type text collate "C",
                 alter column bank_id type text collate "C",
                 alter column household_id type text collate "C",
                 alter column renews_loan_id type text collate "C";
alter table account_balance alter column ledger_id type text collate "C",
                            alter column account type text collate "C";
alter table idempotency alter column scope type text collate "C",
                        alter column request_id type text collate "C",
                        alter column ledger_id type text collate "C";
alter table api_token alter column token_id type text collate "C",
                      alter column token_hash type text collate "C";
