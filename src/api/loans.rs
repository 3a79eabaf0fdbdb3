//! LoanService: contracts, disbursements, repayments, and reading loans.

use tonic::{Request, Response, Status};

use super::convert::*;
use super::error::{invalid, status};
use super::pb::loan_service_server::LoanService;
use super::{Api, parse, pb};
use crate::app::auth::{Principal, Role};
use crate::app::command::{Command, Outcome};
use crate::domain::date::add_months;
use crate::domain::identity::IdNumber;
use crate::domain::ids::loan_id;
use crate::domain::loan::{LoanState, LoanTerms};
use crate::store::read::LoanFilter;

/// Loans in one page, at most; larger requests are served this many (AIP-158).
pub const PAGE_SIZE_MAX: u32 = 1_000;
pub const PAGE_SIZE_DEFAULT: u32 = 100;

fn loan_response(outcome: Outcome, full_ids: bool) -> Result<Response<pb::LoanResponse>, Status> {
    match outcome {
        Outcome::Loan { loan, entry } => Ok(Response::new(pb::LoanResponse {
            loan: Some(loan_to_pb(&loan, full_ids)),
            entry: Some(journal_ref(&entry)),
        })),
        _ => Err(status(crate::app::error::AppError::Internal(
            "writer answered a loan command with another outcome".into(),
        ))),
    }
}

/// Whether `actor` may read `loan`; other banks' loans are PERMISSION_DENIED.
pub fn check_read(actor: &Principal, loan: &LoanState) -> Result<(), Status> {
    if actor.reads_loan(&loan.terms.bank_id, &loan.terms.ledger_id) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "{} may not read loan {}",
            actor.actor(),
            loan.terms.loan_id
        )))
    }
}

#[tonic::async_trait]
impl LoanService for Api {
    #[tracing::instrument(skip_all, fields(request_id, loan_id))]
    async fn create_loan(
        &self,
        request: Request<pb::CreateLoanRequest>,
    ) -> Result<Response<pb::LoanResponse>, Status> {
        let actor = self.principal(&request).await?;
        let pb::CreateLoanRequest {
            request_id,
            bank_id,
            contract_number,
            household_id,
            borrower_name,
            borrower_id_number,
            principal_fen,
            annual_rate,
            contract_date,
            term_months,
            repayment_method,
            settlement_frequency,
            purpose,
            collateral_free,
            guarantee_free,
        } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        let bank_id = parse::id("bank_id", &bank_id)?;
        let contract_number = parse::id("contract_number", &contract_number)?;
        let loan_id = loan_id(&bank_id, &contract_number);
        tracing::Span::current()
            .record("request_id", &request_id)
            .record("loan_id", &loan_id);
        let id_number =
            IdNumber::parse(&borrower_id_number).map_err(|e| invalid("borrower_id_number", e))?;
        let contract_date = parse::date("contract_date", &contract_date)?;
        if term_months == 0 {
            return Err(invalid("term_months", "must be at least 1"));
        }
        // A sanity bound on input; the programme's own limit is policy (36 months by default)
        // and refused as TERM_TOO_LONG.
        if term_months > crate::domain::policy::TERM_MONTHS_MAX_BOUND {
            return Err(invalid("term_months", "must be at most 120"));
        }
        let maturity_date = add_months(contract_date, term_months)
            .ok_or_else(|| invalid("term_months", "moves maturity out of range"))?;
        let terms = LoanTerms {
            loan_id,
            ledger_id: String::new(),
            bank_id,
            contract_number,
            household_id: parse::id("household_id", &household_id)?,
            borrower_name: parse::text("borrower_name", &borrower_name, true)?,
            borrower_id_number: id_number.as_str().to_string(),
            borrower_birth_date: id_number.birth_date(),
            principal_fen: parse::positive_fen("principal_fen", principal_fen)?,
            annual_rate: parse::rate("annual_rate", &annual_rate)?,
            contract_date,
            term_months,
            maturity_date,
            repayment_method: method_from_pb("repayment_method", repayment_method)?,
            settlement_frequency: frequency_from_pb("settlement_frequency", settlement_frequency)?,
            purpose: parse::text("purpose", &purpose, true)?,
            collateral_free,
            guarantee_free,
        };
        let outcome = self
            .writer
            .submit(actor, request_id, Command::CreateLoan { terms })
            .await
            .map_err(status)?;
        loan_response(outcome, true)
    }

    #[tracing::instrument(skip_all, fields(request_id, loan_id))]
    async fn disburse(
        &self,
        request: Request<pb::DisburseRequest>,
    ) -> Result<Response<pb::LoanResponse>, Status> {
        let actor = self.principal(&request).await?;
        let full_ids = actor.sees_full_ids() || actor.role == Role::Bank;
        let pb::DisburseRequest {
            request_id,
            loan_id,
            value_date,
            amount_fen,
        } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        let loan_id = parse::id("loan_id", &loan_id)?;
        tracing::Span::current()
            .record("request_id", &request_id)
            .record("loan_id", &loan_id);
        let amount_fen = match amount_fen {
            0 => None,
            n => Some(parse::positive_fen("amount_fen", n)?),
        };
        let command = Command::Disburse {
            loan_id,
            value_date: parse::date("value_date", &value_date)?,
            amount_fen,
        };
        let outcome = self
            .writer
            .submit(actor, request_id, command)
            .await
            .map_err(status)?;
        loan_response(outcome, full_ids)
    }

    #[tracing::instrument(skip_all, fields(request_id, loan_id))]
    async fn record_repayment(
        &self,
        request: Request<pb::RecordRepaymentRequest>,
    ) -> Result<Response<pb::LoanResponse>, Status> {
        let actor = self.principal(&request).await?;
        let full_ids = actor.sees_full_ids() || actor.role == Role::Bank;
        let pb::RecordRepaymentRequest {
            request_id,
            loan_id,
            value_date,
            principal_fen,
            interest_fen,
        } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        let loan_id = parse::id("loan_id", &loan_id)?;
        tracing::Span::current()
            .record("request_id", &request_id)
            .record("loan_id", &loan_id);
        let principal_fen = parse::non_negative_fen("principal_fen", principal_fen)?;
        let interest_fen = parse::non_negative_fen("interest_fen", interest_fen)?;
        if principal_fen.0 == 0 && interest_fen.0 == 0 {
            return Err(invalid(
                "principal_fen",
                "and interest_fen are both zero: a repayment must pay something",
            ));
        }
        let command = Command::RecordRepayment {
            loan_id,
            value_date: parse::date("value_date", &value_date)?,
            principal_fen,
            interest_fen,
        };
        let outcome = self
            .writer
            .submit(actor, request_id, command)
            .await
            .map_err(status)?;
        loan_response(outcome, full_ids)
    }

    async fn get_loan(
        &self,
        request: Request<pb::GetLoanRequest>,
    ) -> Result<Response<pb::Loan>, Status> {
        let actor = self.principal(&request).await?;
        let pb::GetLoanRequest { loan_id } = request.into_inner();
        let loan_id = parse::id("loan_id", &loan_id)?;
        let loan = self
            .db
            .get_loan(&loan_id)
            .await
            .map_err(|e| status(e.into()))?
            .ok_or_else(|| Status::not_found(format!("loan {loan_id} not found")))?;
        check_read(&actor, &loan)?;
        Ok(Response::new(loan_to_pb(&loan, true)))
    }

    async fn list_loans(
        &self,
        request: Request<pb::ListLoansRequest>,
    ) -> Result<Response<pb::ListLoansResponse>, Status> {
        let actor = self.principal(&request).await?;
        let pb::ListLoansRequest {
            ledger_id,
            bank_id,
            household_id,
            status: loan_status,
            page_size,
            page_token,
        } = request.into_inner();
        let opt_id = |field: &str, v: String| -> Result<Option<String>, Status> {
            if v.is_empty() {
                Ok(None)
            } else {
                parse::id(field, &v).map(Some)
            }
        };
        let mut filter = LoanFilter {
            ledger_id: opt_id("ledger_id", ledger_id)?,
            bank_id: opt_id("bank_id", bank_id)?,
            household_id: opt_id("household_id", household_id)?,
            status: loan_status_from_pb("status", loan_status)?.map(|s| s.as_str().to_string()),
            after_loan_id: if page_token.is_empty() {
                None
            } else {
                Some(
                    page_token
                        .strip_prefix("after:")
                        .filter(|id| crate::domain::ids::check_id(id).is_ok())
                        .ok_or_else(|| invalid("page_token", "is not a token this service issued"))?
                        .to_string(),
                )
            },
        };
        match actor.role {
            Role::Bank => match &filter.bank_id {
                Some(b) if *b != actor.org => {
                    return Err(Status::permission_denied(format!(
                        "a bank may list only its own loans, not bank {b}'s"
                    )));
                }
                _ => filter.bank_id = Some(actor.org.clone()),
            },
            Role::Finance | Role::Auditor if actor.org != "*" => match &filter.ledger_id {
                Some(l) if *l != actor.org => {
                    return Err(Status::permission_denied(format!(
                        "{} may not read ledger {l}",
                        actor.actor()
                    )));
                }
                _ => filter.ledger_id = Some(actor.org.clone()),
            },
            _ => {}
        }
        let page_size = match page_size {
            0 => PAGE_SIZE_DEFAULT,
            n => n.min(PAGE_SIZE_MAX),
        };
        let mut loans = self
            .db
            .list_loans(&filter, page_size + 1)
            .await
            .map_err(|e| status(e.into()))?;
        let next_page_token = if loans.len() > page_size as usize {
            loans.truncate(page_size as usize);
            loans
                .last()
                .map(|l| format!("after:{}", l.terms.loan_id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListLoansResponse {
            loans: loans.iter().map(|l| loan_to_pb(l, true)).collect(),
            next_page_token,
        }))
    }
}
