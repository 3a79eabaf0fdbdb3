-- From this version on, every member loan of a pool carries the day of its pool's last
-- collective repayment (`pool_repaid_on` in loan.servicing_json, domain::servicing::Servicing),
-- and no event of it but a settlement is dated before that day: the repayment was split by what
-- each member owed then. The members of pools repaid before this version get it here, from the
-- journal's `pool.repaid` entries, so that their stored state is what Verify's replay rebuilds.
with repaid as (
    -- As text, so that the join below can look it up (an expression's result has no type
    -- affinity, and SQLite then scanned every repaid pool of the ledger for each member).
    select ledger_id, cast(json_extract(command_json, '$.pool_id') as text) as pool_id,
           max(value_date) as repaid_on
    from journal_txn
    where kind = 'pool.repaid'
    group by ledger_id, json_extract(command_json, '$.pool_id')
)
update loan
set servicing_json = json_set(
    servicing_json,
    '$.pool_repaid_on',
    (select r.repaid_on
     from pool_member m
     join repaid r on r.ledger_id = m.ledger_id and r.pool_id = m.pool_id
     where m.loan_id = loan.loan_id)
)
where loan_id in (
    select m.loan_id
    from pool_member m
    join repaid r on r.ledger_id = m.ledger_id and r.pool_id = m.pool_id
);
