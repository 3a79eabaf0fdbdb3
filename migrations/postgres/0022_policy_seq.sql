-- Each policy version keeps the seq of the journal transaction that recorded it: the
-- `policy.set` that set it, or, for the programme's default versions a ledger starts with, the
-- ledger's `ledger.created`. A subsidy register or a policy asked through a seq (`through_seq`)
-- reads only the versions recorded by then, so that an answer given once is given again
-- whatever version was set since, dated back.
--
-- Rows stored before this migration take their seq from the journal: on a date, the versions
-- `policy.set` recorded are that date's last rows, in the order they were set (`ordinal`); any
-- row before them is a default version (on a seeded date: 2014-12-10, 2024-01-01), recorded
-- with the ledger. A row the journal does not explain (none should be) takes 0, and `verify`
-- reports it, as it reports the row itself.
-- The table's guard is set aside for the backfill only, as in 0007.
alter table policy_version add column seq bigint;
alter table policy_version disable trigger policy_version_append_only;
with sets as (
    select ledger_id, seq, command_json::jsonb -> 'version' ->> 'effective_date' as effective_date
    from journal_txn where kind = 'policy.set'
), numbered as (
    select ledger_id, seq, effective_date,
           row_number() over (partition by ledger_id, effective_date order by seq) - 1 as n
    from sets
), dates as (
    select q.ledger_id, q.effective_date, count(*) - (
               select count(*) from sets s
               where s.ledger_id = q.ledger_id and s.effective_date = q.effective_date) as defaults
    from policy_version q group by q.ledger_id, q.effective_date
)
update policy_version p set seq = coalesce(
    case when p.ordinal < d.defaults and p.effective_date in ('2014-12-10', '2024-01-01')
    then (select j.seq from journal_txn j where j.ledger_id = p.ledger_id
          and j.kind = 'ledger.created' order by j.seq limit 1)
    else (select s.seq from numbered s where s.ledger_id = p.ledger_id
          and s.effective_date = p.effective_date and s.n = p.ordinal - d.defaults)
    end, 0)
from dates d
where d.ledger_id = p.ledger_id and d.effective_date = p.effective_date;
alter table policy_version alter column seq set not null;
alter table policy_version enable trigger policy_version_append_only;
