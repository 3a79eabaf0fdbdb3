-- From this version on, every member loan of a pool whose household handed the pool's partner
-- some of its money carries the day of its last such transfer (`pool_transferred_on` in
-- loan.servicing_json, domain::servicing::Servicing), and no event of it but a settlement is
-- dated before that day: the transfer was held within the principal the loan had outstanding
-- then. The loans transferred before this version get it here, from the journal's
-- `pool.transferred` entries, so that their stored state is what Verify's replay rebuilds.
with transferred as (
    select ledger_id, (command_json::jsonb ->> 'loan_id') collate "C" as loan_id,
           max(value_date) as transferred_on
    from journal_txn
    where kind = 'pool.transferred'
    group by 1, 2
)
update loan l
set servicing_json = (
    l.servicing_json::jsonb || jsonb_build_object('pool_transferred_on', t.transferred_on)
)::text
from transferred t
where t.ledger_id = l.ledger_id and t.loan_id = l.loan_id;
