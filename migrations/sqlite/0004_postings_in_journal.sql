-- Each journal transaction's postings in its own row (`postings`, a JSON array of
-- `[account, amount_fen]` pairs in posting order, `[]` for none; src/ledger/posting.rs `pack`),
-- instead of a row each in a `posting` table (BENCHMARKS.md, change 73).
--
-- A posting row cost a B-tree entry of its own for every leg (three for a repayment) on the
-- write path, and verify and the loan histories read them back beside the journal and put each
-- transaction's together again. In the journal row they are written and read with it, cannot
-- exist without their transaction, and are append-only with it. The hash is unchanged: it
-- covers the postings themselves, not their text.
--
-- The table is rebuilt (SQLite adds a NOT NULL column only with a default, which would let a
-- row be written without its postings), its rows copied in key order as in 0003. `posting`
-- becomes a view of the same columns, for SQL that reads postings row by row.
--
-- Posting rows under a seq that has no transaction (verify reported them) would not be copied:
-- the migration stops instead, naming the check `posting_rows_without_a_transaction`, so that
-- the evidence is looked at before anything is dropped.

create temp table postings_migration_check (
    strays integer not null,
    constraint posting_rows_without_a_transaction check (strays = 0)
);
insert into postings_migration_check (strays)
select count(*) from posting p
where not exists (select 1 from journal_txn j where j.ledger_id = p.ledger_id and j.seq = p.seq);
drop table postings_migration_check;

drop trigger journal_txn_no_update;
drop trigger journal_txn_no_delete;

create table journal_txn_postings (
    ledger_id      text    not null,
    seq            integer not null,
    kind           text    not null,
    value_date     text    not null,
    recorded_at_us integer not null,
    actor          text    not null,
    request_id     text    not null,
    command_json   text    not null,
    prev_hash      text    not null,
    hash           text    not null,
    postings       text    not null,
    constraint journal_txn_pkey primary key (ledger_id, seq)
);
insert into journal_txn_postings (ledger_id, seq, kind, value_date, recorded_at_us, actor,
                                  request_id, command_json, prev_hash, hash, postings)
select j.ledger_id, j.seq, j.kind, j.value_date, j.recorded_at_us, j.actor, j.request_id,
       j.command_json, j.prev_hash, j.hash,
       (select json_group_array(json_array(p.account, p.amount_fen) order by p.idx)
        from posting p where p.ledger_id = j.ledger_id and p.seq = j.seq)
from journal_txn j order by j.ledger_id, j.seq;
drop table journal_txn;
alter table journal_txn_postings rename to journal_txn;
drop table posting;

create trigger journal_txn_no_update before update on journal_txn
begin select raise(abort, 'journal_txn is append-only'); end;
create trigger journal_txn_no_delete before delete on journal_txn
begin select raise(abort, 'journal_txn is append-only'); end;

create view posting (ledger_id, seq, idx, account, amount_fen) as
select j.ledger_id, j.seq, cast(e.key as integer), e.value ->> 0, e.value ->> 1
from journal_txn j, json_each(j.postings) e;
