-- From this version on, a loan the risk fund compensated keeps the compensation's day in its
-- servicing (`compensated_on` in loan.servicing_json, domain::servicing::Servicing) and takes
-- no event but a settlement dated before it. The loans compensated before this version get it
-- here, from their compensation, so that their stored state is what Verify's replay rebuilds.
-- A version before this one would take a payment dated before a compensation: as a migration
-- it does not know, this one makes it refuse the database at its start (PostgreSQL's 0014
-- does the same there).
update loan
set servicing_json = json_set(
    servicing_json,
    '$.compensated_on',
    (select json_extract(c.compensation_json, '$.compensated_on')
     from risk_compensation c
     where c.loan_id = loan.loan_id)
)
where loan_id in (select loan_id from risk_compensation);

-- From this version on, a loan's history also holds its risk fund's compensation and returns
-- (journal_loan links them, JournalEvent::loan_ids): those recorded before it are linked here.
insert into journal_loan (loan_id, ledger_id, seq)
select json_extract(command_json, '$.compensation.loan_id'), ledger_id, seq
from journal_txn
where kind = 'risk_fund.compensated'
union all
select json_extract(command_json, '$.loan_id'), ledger_id, seq
from journal_txn
where kind = 'risk_fund.returned';
