-- Each subsidy claim keeps the seq of its submission (`subsidy_claim.submitted`): its lines
-- were checked against the registers as of its submitted_on through the seq before it
-- (`GetLoanSubsidy(…, through_seq)` gives them again), and `GetSubsidyClaim` and
-- `ListSubsidyClaims` answer it. Claims stored before this migration take it from the journal
-- (one scan of the submissions); `verify` compares it with the journal's.
alter table subsidy_claim add column submitted_seq integer not null default 0;
create temp table claim_submitted_seq as
    select ledger_id, seq, json_extract(command_json, '$.claim_id') as claim_id
    from journal_txn where kind = 'subsidy_claim.submitted';
update subsidy_claim set submitted_seq = coalesce((
    select s.seq from claim_submitted_seq s
    where s.ledger_id = subsidy_claim.ledger_id and s.claim_id = subsidy_claim.claim_id), 0);
drop table claim_submitted_seq;
