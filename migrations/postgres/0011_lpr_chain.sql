-- The LPR table's chain (ledger 'lpr', src/store/lpr_chain.rs): its first transaction,
-- lpr.chain_started, holds the table as it stands and is written by the service right after
-- the migrations, once; each SetLpr since is an lpr.set transaction there. No schema changes:
-- this migration marks the databases that have the chain, so that a build from before it
-- refuses them (its SetLpr would write entries outside the chain) instead of serving them.
select 1;
