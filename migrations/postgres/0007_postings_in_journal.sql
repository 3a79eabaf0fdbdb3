-- Each journal transaction's postings in its own row (`postings`, a JSON array of
-- `[account, amount_fen]` pairs in posting order, `[]` for none; src/ledger/posting.rs `pack`),
-- instead of a row each in a `posting` table (BENCHMARKS.md, change 73).
--
-- A posting row cost a heap tuple and an index entry of its own for every leg (three for a
-- repayment: a fifth of what a posting cost the backend, change 68), and verify and the loan
-- histories read them back beside the journal and put each transaction's together again. In
-- the journal row they are written and read with it, cannot exist without their transaction,
-- and are append-only with it. The hash is unchanged: it covers the postings themselves, not
-- their text. `posting` becomes a view of the same columns, for SQL that reads postings row by
-- row. Each journal row is written once more, so the table and its key's index take about
-- twice their room until (auto)vacuum has gone over them.
--
-- Posting rows under a seq that has no transaction (verify reported them) would not be copied:
-- the migration stops instead, naming them (`posting_rows_without_a_transaction`), so that
-- the evidence is looked at before anything is dropped.

do $$
declare
    strays text;
begin
    select string_agg(distinct p.ledger_id || ' seq ' || p.seq, ', ') into strays
    from posting p
    where not exists (select 1 from journal_txn j
                      where j.ledger_id = p.ledger_id and j.seq = p.seq);
    if strays is not null then
        raise exception 'posting_rows_without_a_transaction: %', strays;
    end if;
end
$$;

alter table journal_txn disable trigger journal_txn_append_only;
alter table journal_txn add column postings text;
update journal_txn j set postings = coalesce(
    (select json_agg(json_build_array(p.account, p.amount_fen) order by p.idx)::text
     from posting p where p.ledger_id = j.ledger_id and p.seq = j.seq), '[]');
alter table journal_txn alter column postings set not null;
alter table journal_txn enable trigger journal_txn_append_only;
drop table posting;

create view posting (ledger_id, seq, idx, account, amount_fen) as
select j.ledger_id, j.seq, (e.ord - 1)::int, (e.leg ->> 0) collate "C", (e.leg ->> 1)::bigint
from journal_txn j, jsonb_array_elements(j.postings::jsonb) with ordinality as e(leg, ord);
