-- The journal's reversals (`loan.reversed`, since 2026-12-07) in an index of their own:
-- verify reads them before it replays the journal, so that it keeps each reversed repayment's
-- loan as it stood before it (src/app/verify/replay.rs), without a scan of the whole journal
-- for them. A partial index: no other entry is in it, and writing one costs nothing more.
create index journal_txn_reversals on journal_txn (ledger_id, seq) where kind = 'loan.reversed';
