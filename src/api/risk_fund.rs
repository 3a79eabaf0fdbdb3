//! RiskFundService: a ledger's risk-compensation fund ([`crate::domain::risk_fund`]): its
//! writes through the writer, its figures read and computed on the read pool.

use tonic::{Request, Response, Status};

use super::convert::journal_ref;
use super::error::{invalid, status, unexpected};
use super::pb::risk_fund_service_server::RiskFundService;
use super::{Api, parse, pb};
use crate::app::auth::{Principal, Role};
use crate::app::command::{Command, Outcome};
use crate::app::error::AppError;
use crate::app::{listing, servicing};
use crate::domain::date::{BusinessDate, format_date};
use crate::domain::event::JournalEvent;
use crate::domain::policy::LendingLimits;
use crate::domain::risk_fund::{
    Compensation, DepositSource, Exposure, Fund, FundEvent, check_share, recovery_standing,
};
use crate::store::read::{CompensationStanding, LoanFilter};

#[tonic::async_trait]
impl RiskFundService for Api {
    async fn open_risk_fund(
        &self,
        request: Request<pb::OpenRiskFundRequest>,
    ) -> Result<Response<pb::RiskFundResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Finance], "OpenRiskFund")?;
        let pb::OpenRiskFundRequest { request_id, ledger_id, opened_on, fund_share_percent } =
            request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let command = Command::OpenRiskFund {
            ledger_id: parse::id("ledger_id", &ledger_id)?,
            opened_on: parse::value_date("opened_on", &opened_on, self.today())?,
            // The request's own fault: refused here, unrecorded (since 2026-12-07).
            fund_share_percent: check_share(fund_share_percent)
                .map_err(|e| status(AppError::Domain(e)))?,
        };
        self.fund_write(actor, request_id, command).await
    }

    async fn deposit_risk_fund(
        &self,
        request: Request<pb::DepositRiskFundRequest>,
    ) -> Result<Response<pb::RiskFundResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Finance], "DepositRiskFund")?;
        let pb::DepositRiskFundRequest {
            request_id,
            ledger_id,
            value_date,
            source,
            amount_fen,
            voucher,
        } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let source = match parse::enumeration::<pb::DepositSource>("source", source)? {
            pb::DepositSource::Deposit => DepositSource::Deposit,
            pb::DepositSource::Interest => DepositSource::Interest,
            pb::DepositSource::Unspecified => return Err(invalid("source", "is required")),
        };
        let command = Command::DepositRiskFund {
            ledger_id: parse::id("ledger_id", &ledger_id)?,
            value_date: parse::value_date("value_date", &value_date, self.today())?,
            source,
            amount_fen: parse::positive_fen("amount_fen", amount_fen)?,
            voucher: parse::text("voucher", &voucher, true)?,
        };
        self.fund_write(actor, request_id, command).await
    }

    async fn compensate_loan(
        &self,
        request: Request<pb::CompensateLoanRequest>,
    ) -> Result<Response<pb::RiskFundResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "CompensateLoan")?;
        let pb::CompensateLoanRequest { request_id, loan_id, value_date } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let command = Command::CompensateLoan {
            loan_id: parse::loan_id("loan_id", &loan_id)?,
            value_date: parse::value_date("value_date", &value_date, self.today())?,
        };
        self.fund_write(actor, request_id, command).await
    }

    async fn pay_compensation(
        &self,
        request: Request<pb::PayCompensationRequest>,
    ) -> Result<Response<pb::RiskFundResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Finance], "PayCompensation")?;
        let pb::PayCompensationRequest { request_id, loan_id, value_date, voucher } =
            request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let command = Command::PayCompensation {
            loan_id: parse::loan_id("loan_id", &loan_id)?,
            value_date: parse::value_date("value_date", &value_date, self.today())?,
            voucher: parse::text("voucher", &voucher, true)?,
        };
        self.fund_write(actor, request_id, command).await
    }

    async fn reject_compensation(
        &self,
        request: Request<pb::RejectCompensationRequest>,
    ) -> Result<Response<pb::RiskFundResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Finance], "RejectCompensation")?;
        let pb::RejectCompensationRequest { request_id, loan_id, value_date, reason } =
            request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let command = Command::RejectCompensation {
            loan_id: parse::loan_id("loan_id", &loan_id)?,
            value_date: parse::value_date("value_date", &value_date, self.today())?,
            reason: parse::text("reason", &reason, true)?,
        };
        self.fund_write(actor, request_id, command).await
    }

    async fn return_recovery(
        &self,
        request: Request<pb::ReturnRecoveryRequest>,
    ) -> Result<Response<pb::RiskFundResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "ReturnRecovery")?;
        let pb::ReturnRecoveryRequest { request_id, loan_id, value_date } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let command = Command::ReturnRecovery {
            loan_id: parse::loan_id("loan_id", &loan_id)?,
            value_date: parse::value_date("value_date", &value_date, self.today())?,
        };
        self.fund_write(actor, request_id, command).await
    }

    async fn get_risk_fund(
        &self,
        request: Request<pb::GetRiskFundRequest>,
    ) -> Result<Response<pb::GetRiskFundResponse>, Status> {
        let actor = self.principal(&request).await?;
        let pb::GetRiskFundRequest { ledger_id, as_of, through_seq } = request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        let as_of = parse::optional_date("as_of", &as_of)?.unwrap_or_else(|| self.today());
        let through_seq = parse::through_seq("through_seq", through_seq)?;
        if !self.reads_fund(&actor, &ledger_id).await? {
            return Err(Status::permission_denied(format!(
                "{} may not read the risk fund of ledger {ledger_id}",
                actor.actor()
            )));
        }
        // Every live loan of the ledger read and quoted (about 17 µs a loan, seconds at a
        // province's scale): one such read at a time, in the turn of the calls that read a whole
        // journal, held to the end of its work (since 2026-12-07: any caller allowed to read
        // the fund, the banks lending in the ledger included, could run as many at once as it
        // liked).
        let turn = self.whole_journal_turn_owned().await?;
        // Everything below is read as the journal through this seq had it (read first).
        let through = servicing::read_through(&self.db, &ledger_id, through_seq);
        let through = through.await.map_err(status)?;
        let fund = self.db.risk_fund_seq(&ledger_id).await.map_err(|e| status(e.into()))?;
        let (fund, fund_seq) =
            fund.ok_or_else(|| Status::not_found(format!("ledger {ledger_id} has no risk fund")))?;
        // Before today the fund is rebuilt to the day; from today on it is the fund as it
        // stands, unless an entry of it is dated after the day (tomorrow's, the most a value
        // date runs ahead) or recorded after the seq: then it is rebuilt too. The loans are
        // rebuilt to the day (and the seq) whenever an event of theirs is dated (or recorded)
        // after it.
        let rebuilt = as_of < self.today() || fund_seq > through || {
            let compensations = self.db.list_compensations(&ledger_id, "", "", u32::MAX).await;
            let compensations: Vec<Compensation> = compensations
                .map_err(|e| status(e.into()))?
                .into_iter()
                .map(|s| s.compensation)
                .collect();
            fund.moved_after(&compensations, as_of)
        };
        let events = self.fund_events(&ledger_id, through).await?;
        let fund = if rebuilt { fund_as_of(&ledger_id, &events, as_of, through)? } else { fund };
        let loans = self.db.loans_of_ledger_on(&ledger_id, &format_date(as_of), through).await;
        let loans = loans.map_err(|e| status(e.into()))?;
        let loans = servicing::loans_as_of(&self.db, loans, as_of, Some(through));
        let mut loans = loans.await.map_err(status)?;
        // Each loan marked compensated as the fund's claims, payments and rejections dated by
        // then (and recorded by the seq) had it, its claim pending or paid: a loan's stored
        // state carries its mark as it stands now,
        // and a loan rebuilt from its own events none (since 2026-12-07: a claim made after the
        // day took the loan's undrawn rest out of that day's exposure, and a loan rebuilt
        // lost its mark).
        let marks = FundEvent::compensation_marks(&events, as_of);
        for loan in &mut loans {
            let mark = marks.get(loan.terms.loan_id.as_str());
            loan.servicing.compensated_on = mark.map(|&(on, _)| on);
            loan.servicing.claim_pending = mark.is_some_and(|&(_, pending)| pending);
        }
        // (Every loan quoted on its date: CPU work, on a blocking thread as the replay's.)
        let exposure = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            Exposure::of(&loans, as_of)
        })
        .await
        .map_err(|e| status(AppError::Internal(format!("a fund's exposure failed: {e}"))))?;
        let versions = self.db.list_policies(&ledger_id, Some(through)).await;
        let versions = versions.map_err(|e| status(e.into()))?;
        let limits = LendingLimits::on(&versions, as_of);
        let limit = fund.lending_limit(limits);
        Ok(Response::new(pb::GetRiskFundResponse {
            through_seq: through,
            fund: Some(fund_to_pb(&fund)),
            exposure: Some(pb::FundExposure {
                as_of: format_date(as_of),
                outstanding_fen: exposure.outstanding_fen.0,
                non_performing_fen: exposure.non_performing_fen.0,
                live_loans: exposure.live_loans,
                non_performing_loans: exposure.non_performing_loans,
                npl_basis_points: exposure.npl_basis_points(),
                undrawn_fen: exposure.undrawn_fen.0,
                lending_limit_fen: limit.0,
                room_fen: fund.room(&exposure, limits).0,
                lending_suspended: exposure.lending_suspended(limits),
                leverage: limits.leverage,
                npl_limit_basis_points: limits.npl_limit_basis_points,
                renewal_overlap_fen: exposure.renewal_overlap_fen.0,
            }),
        }))
    }

    async fn get_compensation(
        &self,
        request: Request<pb::GetCompensationRequest>,
    ) -> Result<Response<pb::Compensation>, Status> {
        let actor = self.principal(&request).await?;
        let loan_id = parse::loan_id("loan_id", &request.into_inner().loan_id)?;
        let not_found = || Status::not_found(format!("loan {loan_id} has no compensation"));
        let compensation = self.db.compensation(&loan_id).await.map_err(|e| status(e.into()))?;
        // Another bank's loan, or another ledger's, is answered as one without: nobody learns
        // of a loan outside their books.
        let standing = compensation
            .filter(|s| actor.reads_loan(&s.compensation.bank_id, &s.compensation.ledger_id))
            .ok_or_else(not_found)?;
        let percent = self.fund_share_percent(&standing.compensation.ledger_id).await?;
        Ok(Response::new(standing_to_pb(&standing, percent)?))
    }

    async fn list_compensations(
        &self,
        request: Request<pb::ListCompensationsRequest>,
    ) -> Result<Response<pb::ListCompensationsResponse>, Status> {
        let actor = self.principal(&request).await?;
        let pb::ListCompensationsRequest { ledger_id, bank_id, page_size, page_token } =
            request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        let bank_id = parse::optional_id("bank_id", &bank_id)?;
        self.check_bank_scope(
            &actor,
            &ledger_id,
            bank_id.as_deref(),
            Principal::reads_ledger,
            ("lists only its own compensations", "list the compensations of ledger"),
        )
        .await?;
        let filter = LoanFilter {
            ledger_id: Some(ledger_id.clone()),
            bank_id: bank_id.clone(),
            ..LoanFilter::default()
        };
        let query = listing::query_key(&format!("{}\ncompensations", actor.actor()), &filter, None);
        let after = super::after_page_token(&page_token, &query)?;
        let page_size = super::page_size_or_default(page_size);
        let bank = bank_id.as_deref().unwrap_or_default();
        let page = self.db.list_compensations(&ledger_id, bank, after, page_size).await;
        let page = page.map_err(|e| status(e.into()))?;
        let last = (page.len() == page_size as usize).then(|| page.last()).flatten();
        let next_page_token =
            listing::page_token_after(last.map(|s| s.compensation.loan_id.as_str()), &query);
        // A ledger without a fund has no compensations: an empty page, its fund not read.
        let compensations = if page.is_empty() {
            Vec::new()
        } else {
            let percent = self.fund_share_percent(&ledger_id).await?;
            page.iter().map(|s| standing_to_pb(s, percent)).collect::<Result<_, _>>()?
        };
        Ok(Response::new(pb::ListCompensationsResponse { compensations, next_page_token }))
    }
}

impl Api {
    /// A fund write through the writer, answered with the fund and the compensation after it.
    async fn fund_write(
        &self,
        actor: Principal,
        request_id: String,
        command: Command,
    ) -> Result<Response<pb::RiskFundResponse>, Status> {
        let what = command.name();
        match self.writer.submit(actor, request_id, command).await.map_err(status)? {
            Outcome::RiskFund { fund, compensation, entry } => {
                Ok(Response::new(pb::RiskFundResponse {
                    fund: Some(fund_to_pb(&fund)),
                    compensation: compensation.as_deref().map(compensation_to_pb),
                    entry: Some(journal_ref(&entry)),
                }))
            }
            _ => Err(unexpected(what)),
        }
    }

    /// The fund's share of a loss in `ledger_id` (its compensations': what they owe back of a
    /// recovery); a ledger with compensations has a fund.
    async fn fund_share_percent(&self, ledger_id: &str) -> Result<u8, Status> {
        let fund = self.db.risk_fund(ledger_id).await.map_err(|e| status(e.into()))?;
        let fund = fund.ok_or_else(|| {
            status(AppError::Internal(format!(
                "ledger {ledger_id} has compensations but no risk fund"
            )))
        })?;
        Ok(fund.fund_share_percent)
    }

    /// The fund's events of `ledger_id` recorded through `through_seq`, in journal order.
    async fn fund_events(
        &self,
        ledger_id: &str,
        through_seq: u64,
    ) -> Result<Vec<FundEvent>, Status> {
        let rows = self.db.fund_events(ledger_id, through_seq).await;
        let rows = rows.map_err(|e| status(e.into()))?;
        let mut events = Vec::with_capacity(rows.len());
        for (kind, json) in rows {
            match JournalEvent::from_parts(&kind, &json) {
                Ok(JournalEvent::RiskFund(event)) => events.push(event),
                Ok(_) | Err(_) => {
                    let why =
                        format!("a risk fund event of ledger {ledger_id} ({kind}) is unreadable");
                    return Err(status(AppError::Internal(why)));
                }
            }
        }
        Ok(events)
    }

    /// Whether `actor` may read the fund of `ledger_id`: its finance office and auditors, and
    /// the banks that lend in it (whose contracts its limits hold).
    async fn reads_fund(&self, actor: &Principal, ledger_id: &str) -> Result<bool, Status> {
        if actor.role != Role::Bank {
            return Ok(actor.reads_ledger(ledger_id));
        }
        let bank = self.db.get_bank(&actor.org).await.map_err(|e| status(e.into()))?;
        Ok(bank.is_some_and(|b| b.ledger_id == ledger_id))
    }
}

fn fund_to_pb(f: &Fund) -> pb::RiskFund {
    pb::RiskFund {
        ledger_id: f.ledger_id.clone(),
        opened_on: format_date(f.opened_on),
        fund_share_percent: u32::from(f.fund_share_percent),
        balance_fen: f.balance_fen.0,
        deposited_fen: f.deposited_fen.0,
        interest_fen: f.interest_fen.0,
        compensated_fen: f.compensated_fen.0,
        returned_fen: f.returned_fen.0,
        compensations: f.compensations,
        pending_fen: f.pending_fen.0,
    }
}

/// A compensation as it stands, with what was recovered since and what is owed back of it
/// ([`recovery_standing`]).
fn standing_to_pb(s: &CompensationStanding, percent: u8) -> Result<pb::Compensation, Status> {
    let (recovered, due) = recovery_standing(&s.compensation, s.principal_repaid_fen, percent)
        .map_err(|e| status(AppError::Internal(format!("loan {}: {e}", s.compensation.loan_id))))?;
    Ok(pb::Compensation {
        recovered_to_date_fen: recovered.0,
        return_due_fen: due.0,
        ..compensation_to_pb(&s.compensation)
    })
}

fn compensation_to_pb(c: &Compensation) -> pb::Compensation {
    pb::Compensation {
        loan_id: c.loan_id.clone(),
        bank_id: c.bank_id.clone(),
        ledger_id: c.ledger_id.clone(),
        compensated_on: format_date(c.compensated_on),
        days_overdue: c.days_overdue,
        loss_fen: c.loss_fen.0,
        fund_fen: c.fund_fen.0,
        bank_fen: c.bank_fen.0,
        repaid_before_fen: c.repaid_before_fen.0,
        recovered_fen: c.recovered_fen.0,
        returned_fen: c.returned_fen.0,
        status: c.status().to_string(),
        paid_on: c.paid().map(format_date).unwrap_or_default(),
        voucher: c.voucher.clone(),
        rejected_on: c.rejected_on.map(format_date).unwrap_or_default(),
        rejection_reason: c.rejection_reason.clone(),
        recovered_to_date_fen: 0,
        return_due_fen: 0,
    }
}

/// The fund of `ledger_id` as it stood at the end of `date`, rebuilt from its `events` dated by
/// then and recorded up to `through_seq` ([`Fund::as_of`]). `NOT_FOUND` when it was not open
/// yet.
fn fund_as_of(
    ledger_id: &str,
    events: &[FundEvent],
    date: BusinessDate,
    through_seq: u64,
) -> Result<Fund, Status> {
    let fund = Fund::as_of(events, date).map_err(|e| {
        status(AppError::Internal(format!(
            "the risk fund of ledger {ledger_id} does not replay to {}: {e}",
            format_date(date)
        )))
    })?;
    fund.ok_or_else(|| {
        Status::not_found(format!(
            "ledger {ledger_id} had no risk fund on {} (as recorded by seq {through_seq})",
            format_date(date)
        ))
    })
}
