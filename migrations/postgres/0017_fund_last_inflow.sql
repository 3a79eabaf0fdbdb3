-- From this version on, a risk fund keeps the latest value date of the money it received
-- (`last_inflow_on` in risk_fund.fund_json, domain::risk_fund::Fund): a compensation's payment
-- is not dated before it, so that the balance it is judged against is the fund's on its date
-- and after. The funds stored before this version get it here, from their deposits and returns
-- in the journal, so that their stored rows are what Verify's replay rebuilds (SQLite's 0014
-- does the same there). Verify compares the row's text with the service's own serialisation,
-- whose last field this is: the field is appended to the text (jsonb would reorder the keys).
update risk_fund f
set fund_json = left(f.fund_json, -1) || ',"last_inflow_on":"' || i.last_inflow_on || '"}'
from (
    select ledger_id, max(value_date) as last_inflow_on
    from journal_txn
    where kind in ('risk_fund.deposited', 'risk_fund.returned')
    group by ledger_id
) i
where i.ledger_id = f.ledger_id and right(f.fund_json, 1) = '}';
