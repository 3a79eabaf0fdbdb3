-- From this version on, a loan whose bank's claim on the risk fund is neither paid nor
-- rejected yet carries `claim_pending` in its servicing (loan.servicing_json,
-- domain::servicing::Servicing): what its contract has not paid out keeps its room under the
-- fund's leverage limit until the claim is paid, since a rejected claim lets the loan pay it
-- out. The loans with such a claim when this version starts get it here, from their
-- compensation, so that their stored state is what Verify's replay rebuilds.
update loan l
set servicing_json = (l.servicing_json::jsonb || jsonb_build_object('claim_pending', true))::text
from risk_compensation c
where c.loan_id = l.loan_id
  and (c.compensation_json::jsonb ->> 'pending') = 'true';
