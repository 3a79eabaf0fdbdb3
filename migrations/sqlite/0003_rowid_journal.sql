-- The journal and the idempotency records as rowid tables, their primary keys as separate
-- indexes (BENCHMARKS.md, change 42).
--
-- A WITHOUT ROWID table is a B-tree of whole rows, interior pages included, which SQLite advises
-- only for rows under about a twentieth of a page. A journal row is about 540 bytes and an
-- idempotency row about 350: their interior pages held seven to eleven rows each (2,651 interior
-- pages for 15,683 leaves in the bench's journal), every leaf split was a rebalancing of three
-- siblings and their parent, and each group's commit wrote those pages again. As rowid tables
-- the rows are appended (a new page at the right, nothing rebalanced) and only the short keys
-- go into the indexes: single repayments, batches and verify were each faster by about a
-- tenth to a quarter. Columns, keys, constraint names and triggers are unchanged; the rows are
-- copied in key order, so the rowids follow each ledger's seq.

drop trigger journal_txn_no_update;
drop trigger journal_txn_no_delete;
drop trigger idempotency_no_update;
drop trigger idempotency_no_delete;

create table journal_txn_rowid (
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
    constraint journal_txn_pkey primary key (ledger_id, seq)
);
insert into journal_txn_rowid (ledger_id, seq, kind, value_date, recorded_at_us, actor,
                               request_id, command_json, prev_hash, hash)
select ledger_id, seq, kind, value_date, recorded_at_us, actor, request_id, command_json,
       prev_hash, hash
from journal_txn order by ledger_id, seq;
drop table journal_txn;
alter table journal_txn_rowid rename to journal_txn;

create table idempotency_rowid (
    scope       text not null,
    request_id  text not null,
    fingerprint text not null,
    result_json text not null,
    ledger_id   text not null,
    seq         integer not null,
    constraint idempotency_pkey primary key (scope, request_id)
);
insert into idempotency_rowid (scope, request_id, fingerprint, result_json, ledger_id, seq)
select scope, request_id, fingerprint, result_json, ledger_id, seq
from idempotency order by scope, request_id;
drop table idempotency;
alter table idempotency_rowid rename to idempotency;

create trigger journal_txn_no_update before update on journal_txn
begin select raise(abort, 'journal_txn is append-only'); end;
create trigger journal_txn_no_delete before delete on journal_txn
begin select raise(abort, 'journal_txn is append-only'); end;
create trigger idempotency_no_update before update on idempotency
begin select raise(abort, 'idempotency is append-only'); end;
create trigger idempotency_no_delete before delete on idempotency
begin select raise(abort, 'idempotency is append-only'); end;
