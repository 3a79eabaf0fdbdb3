-- From this version on, a risk fund keeps the latest value date of the money it received
-- (`last_inflow_on` in risk_fund.fund_json, domain::risk_fund::Fund): a compensation's payment
-- is not dated before it, so that the balance it is judged against is the fund's on its date
-- and after. The funds stored before this version get it here, from their deposits and returns
-- in the journal, so that their stored rows are what Verify's replay rebuilds.
update risk_fund
set fund_json = json_set(
    fund_json,
    '$.last_inflow_on',
    (select max(j.value_date) from journal_txn j
     where j.ledger_id = risk_fund.ledger_id
       and j.kind in ('risk_fund.deposited', 'risk_fund.returned'))
)
where exists (
    select 1 from journal_txn j
    where j.ledger_id = risk_fund.ledger_id
      and j.kind in ('risk_fund.deposited', 'risk_fund.returned')
);
