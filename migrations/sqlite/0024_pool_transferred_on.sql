-- From this version on, every member loan of a pool whose household handed the pool's partner
-- some of its money carries the day of its last such transfer (`pool_transferred_on` in
-- loan.servicing_json, domain::servicing::Servicing), and no event of it but a settlement is
-- dated before that day: the transfer was held within the principal the loan had outstanding
-- then. The loans transferred before this version get it here, from the journal's
-- `pool.transferred` entries, so that their stored state is what Verify's replay rebuilds.
with transferred as (
    -- As text, so that the lookup below can use it (an expression's result has no type
    -- affinity).
    select ledger_id, cast(json_extract(command_json, '$.loan_id') as text) as loan_id,
           max(value_date) as transferred_on
    from journal_txn
    where kind = 'pool.transferred'
    group by ledger_id, json_extract(command_json, '$.loan_id')
)
update loan
set servicing_json = json_set(
    servicing_json,
    '$.pool_transferred_on',
    (select t.transferred_on
     from transferred t
     where t.ledger_id = loan.ledger_id and t.loan_id = loan.loan_id)
)
where loan_id in (select loan_id from transferred);
