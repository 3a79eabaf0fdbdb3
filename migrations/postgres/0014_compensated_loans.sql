-- From this version on, a loan the risk fund compensated keeps the compensation's day in its
-- servicing (`compensated_on` in loan.servicing_json, domain::servicing::Servicing) and takes
-- no event but a settlement dated before it. The loans compensated before this version get it
-- here, from their compensation, so that their stored state is what Verify's replay rebuilds.
-- A version before this one would take a payment dated before a compensation: as a migration
-- it does not know, this one makes it refuse the database at its start (SQLite's 0011 does
-- the same there).
update loan l
set servicing_json = (
    l.servicing_json::jsonb
    || jsonb_build_object('compensated_on', c.compensation_json::jsonb ->> 'compensated_on')
)::text
from risk_compensation c
where c.loan_id = l.loan_id;

-- From this version on, a loan's history also holds its risk fund's compensation and returns
-- (journal_loan links them, JournalEvent::loan_ids): those recorded before it are linked here.
insert into journal_loan (loan_id, ledger_id, seq)
select command_json::jsonb -> 'compensation' ->> 'loan_id', ledger_id, seq
from journal_txn
where kind = 'risk_fund.compensated'
union all
select command_json::jsonb ->> 'loan_id', ledger_id, seq
from journal_txn
where kind = 'risk_fund.returned';
