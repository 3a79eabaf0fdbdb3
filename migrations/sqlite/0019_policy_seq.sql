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
-- SQLite cannot add a column that must be set on every row: the table is made again, its rows
-- copied with their seqs and its guards made again as they were (as in 0016).
create temp table policy_set_seq as
    select ledger_id, seq, effective_date,
           row_number() over (partition by ledger_id, effective_date order by seq) - 1 as n
    from (select ledger_id, seq,
                 json_extract(command_json, '$.version.effective_date') as effective_date
          from journal_txn where kind = 'policy.set');

create table policy_version_seq (
    ledger_id      text    not null references ledger (ledger_id),
    effective_date text    not null,
    ordinal        integer not null default 0,
    params_json    text    not null,
    seq            integer not null,
    constraint policy_version_pkey primary key (ledger_id, effective_date, ordinal)
);
insert into policy_version_seq (ledger_id, effective_date, ordinal, params_json, seq)
select p.ledger_id, p.effective_date, p.ordinal, p.params_json, coalesce(
    case when p.ordinal < d.defaults and p.effective_date in ('2014-12-10', '2024-01-01')
    then (select j.seq from journal_txn j where j.ledger_id = p.ledger_id
          and j.kind = 'ledger.created' order by j.seq limit 1)
    else (select s.seq from policy_set_seq s where s.ledger_id = p.ledger_id
          and s.effective_date = p.effective_date and s.n = p.ordinal - d.defaults)
    end, 0)
from policy_version p
join (select q.ledger_id, q.effective_date, count(*) - (
          select count(*) from policy_set_seq s
          where s.ledger_id = q.ledger_id and s.effective_date = q.effective_date) as defaults
      from policy_version q group by q.ledger_id, q.effective_date) d
    on d.ledger_id = p.ledger_id and d.effective_date = p.effective_date
order by p.ledger_id, p.effective_date, p.ordinal;
drop table policy_set_seq;
drop table policy_version;
alter table policy_version_seq rename to policy_version;

create trigger policy_version_no_update before update on policy_version
begin select raise(abort, 'policy_version is append-only'); end;
create trigger policy_version_no_delete before delete on policy_version
begin select raise(abort, 'policy_version is append-only'); end;
create trigger policy_version_no_replace before insert on policy_version
when exists (select 1 from policy_version where ledger_id = new.ledger_id and effective_date = new.effective_date and ordinal = new.ordinal)
    or exists (select 1 from policy_version where rowid = new.rowid)
begin select raise(rollback, 'policy_version is append-only: a row with this key or rowid is stored already (policy_version.ledger_id, policy_version.effective_date, policy_version.ordinal)'); end;
