-- From this version on, every member loan of a pool carries the day of its pool's last
-- collective repayment (`pool_repaid_on` in loan.servicing_json, domain::servicing::Servicing),
-- and no event of it but a settlement is dated before that day: the repayment was split by what
-- each member owed then. The members of pools repaid before this version get it here, from the
-- journal's `pool.repaid` entries, so that their stored state is what Verify's replay rebuilds.
with repaid as (
    select ledger_id, (command_json::jsonb ->> 'pool_id') collate "C" as pool_id,
           max(value_date) as repaid_on
    from journal_txn
    where kind = 'pool.repaid'
    group by 1, 2
)
update loan l
set servicing_json = (
    l.servicing_json::jsonb || jsonb_build_object('pool_repaid_on', r.repaid_on)
)::text
from pool_member m
join repaid r on r.ledger_id = m.ledger_id and r.pool_id = m.pool_id
where m.loan_id = l.loan_id;
