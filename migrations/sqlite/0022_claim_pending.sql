-- From this version on, a loan whose bank's claim on the risk fund is neither paid nor
-- rejected yet carries `claim_pending` in its servicing (loan.servicing_json,
-- domain::servicing::Servicing): what its contract has not paid out keeps its room under the
-- fund's leverage limit until the claim is paid, since a rejected claim lets the loan pay it
-- out. The loans with such a claim when this version starts get it here, from their
-- compensation, so that their stored state is what Verify's replay rebuilds.
update loan
set servicing_json = json_set(servicing_json, '$.claim_pending', json('true'))
where loan_id in (
    select loan_id from risk_compensation
    where json_extract(compensation_json, '$.pending') = 1
);
