-- Each subsidy claim keeps the seq of its submission (`subsidy_claim.submitted`): its lines
-- were checked against the registers as of its submitted_on through the seq before it
-- (`GetLoanSubsidy(…, through_seq)` gives them again), and `GetSubsidyClaim` and
-- `ListSubsidyClaims` answer it. Claims stored before this migration take it from the journal
-- (one scan of the submissions); `verify` compares it with the journal's.
alter table subsidy_claim add column submitted_seq bigint not null default 0;
update subsidy_claim c set submitted_seq = s.seq
from (select ledger_id, seq, command_json::jsonb ->> 'claim_id' as claim_id
      from journal_txn where kind = 'subsidy_claim.submitted') s
where s.ledger_id = c.ledger_id and s.claim_id = c.claim_id;
