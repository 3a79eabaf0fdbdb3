//! LoanService: contracts, disbursements, repayments, and reading loans.

use tonic::{Request, Response, Status};

use super::convert::*;
use super::error::{invalid, no_contract_by, status};
use super::pb::loan_service_server::LoanService;
use super::{Api, parse, pb};
use crate::app::auth::{Principal, Role};
use crate::app::command::{Command, Outcome};
use crate::app::listing;
use crate::app::servicing::{loan_through, run_settlement};
use crate::collections::HashSet;
use crate::domain::calendar::CalendarError;
use crate::domain::date::add_months;
use crate::domain::date::{BusinessDate, format_date};
use crate::domain::interest::InterestError;
use crate::domain::loan::{LoanState, LoanTerms, RepaymentMethod, SettlementFrequency};
use crate::domain::money::Rounding;
use crate::domain::schedule::{
    InterestWorking, Schedule, ScheduleError, ScheduleTerms, Term, build_schedule, check_frequency,
    default_frequency,
};
use crate::store::read::{LoanFilter, StatusFilter};
use rust_decimal::Decimal;

/// Items in one batch, at most: a county bank's daily repayment file fits several times over,
/// and one batch's answers stay a few megabytes.
pub const BATCH_ITEMS_MAX: usize = 10_000;

/// Loans in one page, at most; larger requests are served this many (AIP-158).
pub const PAGE_SIZE_MAX: u32 = 1_000;
pub const PAGE_SIZE_DEFAULT: u32 = 100;

impl Api {
    /// Today ([`Api::today`]), or a loan's last value date if that is later (test data and
    /// back-office files may be dated ahead of the server's clock).
    fn today_for(&self, loan: &LoanState) -> BusinessDate {
        listing::as_listed_on(self.today(), loan)
    }

    /// A loan write's answer. Everyone who may change a loan may see its borrower's full
    /// identity number (its bank, the finance office).
    fn loan_response(&self, outcome: Outcome) -> Result<Response<pb::LoanResponse>, Status> {
        match outcome {
            Outcome::Loan { loan, entry, .. } => Ok(Response::new(pb::LoanResponse {
                loan: Some(loan_to_pb(&loan, true, loan.last_value_date)),
                entry: Some(journal_ref(&entry)),
            })),
            Outcome::LoanUnchanged { loan } => Ok(Response::new(pb::LoanResponse {
                loan: Some(loan_to_pb(&loan, true, self.today_for(&loan))),
                entry: None,
            })),
            _ => Err(status(crate::app::error::AppError::Internal(
                "writer answered a loan command with another outcome".into(),
            ))),
        }
    }
}

impl Api {
    /// Whether `actor` may act on the loans of `ledger_id`, or of its bank `bank_id`: a bank
    /// only on its own, naming itself (left out: INVALID_ARGUMENT naming `bank_id`; another
    /// bank: PERMISSION_DENIED); anyone else as `may` says. Then [`Api::check_ledger_bank`].
    /// `(bank_does, to_do)` word the refusals: "a bank {bank_does}", "{actor} may not {to_do}
    /// {ledger_id}".
    pub async fn check_bank_scope(
        &self,
        actor: &Principal,
        ledger_id: &str,
        bank_id: Option<&str>,
        may: fn(&Principal, &str) -> bool,
        (bank_does, to_do): (&str, &str),
    ) -> Result<(), Status> {
        match actor.role {
            // A field left out, not a right lacking: named as such.
            Role::Bank if bank_id.is_none() => {
                return Err(invalid(
                    "bank_id",
                    format!("is required of a bank: a bank {bank_does} (set it to your bank's id)"),
                ));
            }
            Role::Bank if bank_id != Some(actor.org.as_str()) => {
                return Err(Status::permission_denied(format!(
                    "a bank {bank_does}: set bank_id to your bank"
                )));
            }
            Role::Bank => {}
            _ if may(actor, ledger_id) => {}
            _ => {
                return Err(Status::permission_denied(format!(
                    "{} may not {to_do} {ledger_id}",
                    actor.actor()
                )));
            }
        }
        self.check_ledger_bank(actor, ledger_id, bank_id).await
    }

    /// Whether `ledger_id` exists (NOT_FOUND), and `bank_id`, if given, names one of its banks
    /// (a bank that does not exist: NOT_FOUND; another ledger's: INVALID_ARGUMENT, naming
    /// `ledger_id` for a bank naming itself, else `bank_id`).
    pub async fn check_ledger_bank(
        &self,
        actor: &Principal,
        ledger_id: &str,
        bank_id: Option<&str>,
    ) -> Result<(), Status> {
        if self.db.get_ledger(ledger_id).await.map_err(|e| status(e.into()))?.is_none() {
            return Err(Status::not_found(format!("ledger {ledger_id} not found")));
        }
        // A call over one bank's loans names a bank of the ledger (a call over none is a
        // mistake).
        if let Some(bank_id) = bank_id {
            match self.db.get_bank(bank_id).await.map_err(|e| status(e.into()))? {
                None => return Err(Status::not_found(format!("bank {bank_id} not found"))),
                // The bank's own ledger named only to a caller who reads it: a county's office
                // does not learn where another county's banks lend.
                // A bank naming its own id with another ledger: the ledger is what is wrong.
                Some(bank) if bank.ledger_id != ledger_id && actor.role == Role::Bank => {
                    return Err(invalid(
                        "ledger_id",
                        format!("is not bank {bank_id}'s ledger ({})", bank.ledger_id),
                    ));
                }
                Some(bank) if bank.ledger_id != ledger_id => {
                    let whose = if actor.reads_ledger(&bank.ledger_id) {
                        format!("names a bank of ledger {}, not of {ledger_id}", bank.ledger_id)
                    } else {
                        format!("names no bank of ledger {ledger_id}")
                    };
                    return Err(invalid("bank_id", whose));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The loan's journal entries (undecoded), if it exists and `actor` may read it: as
    /// [`Api::readable_loan`] answers, NOT_FOUND for a loan outside the caller's books.
    pub async fn readable_history(
        &self,
        actor: &Principal,
        loan_id: &str,
    ) -> Result<crate::store::read::LoanHistory, Status> {
        let history = self.db.loan_history(loan_id);
        readable(actor, loan_id, history, |h| (&h.bank_id, &h.ledger_id)).await
    }

    /// The ledger of the loan, if it exists and `actor` may read it (as [`Api::readable_loan`]
    /// answers it), read alone: a read that needs the ledger's head before the loan's history.
    pub async fn readable_loan_ledger(
        &self,
        actor: &Principal,
        loan_id: &str,
    ) -> Result<String, Status> {
        let owner = self.db.loan_owner(loan_id);
        let (_, ledger_id) = readable(actor, loan_id, owner, |(b, l)| (b, l)).await?;
        Ok(ledger_id)
    }

    /// The loan, if it exists and `actor` may read it: NOT_FOUND otherwise, also for a loan
    /// outside the caller's books, as a missing one; PERMISSION_DENIED for the operator,
    /// whether the loan exists or not ([`readable`]).
    pub async fn readable_loan(
        &self,
        actor: &Principal,
        loan_id: &str,
    ) -> Result<LoanState, Status> {
        let loan = self.db.get_loan(loan_id);
        // Who may read it, before its row is read by type and decoded: a row that cannot be is
        // a fault for those who may, and a missing loan for those who may not.
        let owned = readable(actor, loan_id, loan, |o| (&o.bank_id, &o.ledger_id)).await?;
        owned.row.and_then(|row| row.into_state()).map_err(|e| status(e.into()))
    }

    /// A servicing command on one loan, sent to the writer and answered with the loan: its
    /// request id and loan id are checked first, in that order (a client learns of the first
    /// bad field), then `command` builds the rest from the loan id.
    async fn submit_on_loan(
        &self,
        actor: Principal,
        request_id: &str,
        loan_id: &str,
        command: impl FnOnce(String, BusinessDate) -> Result<Command, Status>,
    ) -> Result<Response<pb::LoanResponse>, Status> {
        let request_id = parse::request_id(request_id)?;
        let loan_id = parse::loan_id("loan_id", loan_id)?;
        tracing::Span::current().record("request_id", &request_id).record("loan_id", &loan_id);
        let command = command(loan_id, self.today())?;
        let outcome = self.writer.submit(actor, request_id, command).await.map_err(status)?;
        self.loan_response(outcome)
    }
}

/// What `read` finds of one loan, if it exists and `actor` may read it. The operator, which
/// reads no loan, is PERMISSION_DENIED before the read, whether the loan exists or not (it
/// cannot learn which loan ids exist). A loan
/// outside the caller's books (another bank's to a bank, another ledger's to a finance office
/// or an auditor: by the bank and ledger `owner` names of what was read) is NOT_FOUND to it, as
/// a missing one: nobody learns whether a loan outside their books exists.
async fn readable<T>(
    actor: &Principal,
    loan_id: &str,
    read: impl Future<Output = Result<Option<T>, crate::store::StoreError>>,
    owner: impl FnOnce(&T) -> (&String, &String),
) -> Result<T, Status> {
    if actor.is_operator() {
        let who = actor.actor();
        return Err(Status::permission_denied(format!("{who} may not read loan {loan_id}")));
    }
    let not_found = || Status::not_found(format!("loan {loan_id} not found"));
    let found = read.await.map_err(|e| status(e.into()))?.ok_or_else(not_found)?;
    let (bank_id, ledger_id) = owner(&found);
    if !actor.reads_loan(bank_id, ledger_id) {
        return Err(not_found());
    }
    Ok(found)
}

/// A batch item's result when it failed with `s`: its code, and what the status's details say
/// (the field a `BadRequest` names, the reason and figures of an `ErrorInfo`), as a unary call
/// would have answered.
fn failed_item(r: &mut pb::BatchResult, s: &Status) {
    let details = tonic_types::StatusExt::get_error_details(s);
    r.code = code_name(s.code()).into();
    r.message = s.message().to_string();
    if let Some(info) = details.error_info() {
        r.reason = info.reason.clone();
        r.metadata = info.metadata.clone().into_iter().collect();
    }
    if let Some(bad) = details.bad_request() {
        r.field = bad.field_violations.first().map(|v| v.field.clone()).unwrap_or_default();
    }
}

/// The canonical name of a gRPC code, as clients see it in other tools (`NOT_FOUND`).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Why an amortising term that is not whole quarters cannot leave its frequency out.
const QUARTERLY_BY_DEFAULT: &str = "left out is quarterly, which needs a term of whole quarters: give SETTLEMENT_FREQUENCY_MONTHLY";

/// The settlement frequency given, or left out the method's default
/// ([`default_frequency`]: quarterly, at maturity for 利随本清), and whether it was left out; it
/// must fit the method, and an amortising term of months must be whole periods of it. A term of
/// months that is not whole quarters makes an amortising contract that names no frequency
/// `INVALID_ARGUMENT` on `settlement_frequency` (the default does not fit: monthly must be asked
/// for), on `term_months` when quarterly was asked for. (A preview's term given by its maturity
/// is checked by its schedule: [`LoanService::preview_schedule`].)
fn frequency_for(
    method: RepaymentMethod,
    settlement_frequency: i32,
    term_months: u32,
) -> Result<(SettlementFrequency, bool), Status> {
    let given = frequency_from_pb("settlement_frequency", settlement_frequency)?;
    let frequency = given.unwrap_or_else(|| default_frequency(method));
    check_frequency(method, frequency).map_err(|e| invalid("settlement_frequency", e))?;
    let amortising =
        matches!(method, RepaymentMethod::EqualInstalment | RepaymentMethod::EqualPrincipal);
    if amortising && frequency == SettlementFrequency::Quarterly && !term_months.is_multiple_of(3) {
        return Err(match given {
            Some(_) => invalid("term_months", "must be a multiple of 3 for quarterly instalments"),
            None => invalid("settlement_frequency", QUARTERLY_BY_DEFAULT),
        });
    }
    Ok((frequency, given.is_none()))
}

fn rounding_from_pb(field: &str, value: &str) -> Result<Rounding, Status> {
    match value {
        "" | "half_up" => Ok(Rounding::HalfUp),
        "half_even" => Ok(Rounding::HalfEven),
        "down" => Ok(Rounding::Down),
        _ => Err(invalid(field, "must be \"half_up\", \"half_even\" or \"down\"")),
    }
}

fn working_to_pb(w: &InterestWorking) -> pb::InterestWorking {
    match w {
        InterestWorking::DayBasis(p) => pb::InterestWorking {
            basis: "day_basis".into(),
            period_start: format_date(p.start),
            period_end: format_date(p.end_inclusive),
            days: p.days,
            jishu: p.jishu,
            annual_rate: p.annual_rate.to_string(),
            daily_rate: p.daily_rate.normalize().to_string(),
            opening_principal_fen: 0,
            periods_per_year: 0,
            periodic_rate: String::new(),
            unrounded_fen: p.unrounded_fen.normalize().to_string(),
            rounding: p.rounding.as_str().into(),
            interest_fen: p.interest.0,
        },
        InterestWorking::Periodic(p) => pb::InterestWorking {
            basis: "periodic".into(),
            period_start: String::new(),
            period_end: String::new(),
            days: 0,
            jishu: 0,
            annual_rate: p.annual_rate.to_string(),
            daily_rate: String::new(),
            opening_principal_fen: p.opening_principal.0,
            periods_per_year: p.periods_per_year,
            periodic_rate: p.periodic_rate.normalize().to_string(),
            unrounded_fen: p.unrounded_fen.normalize().to_string(),
            rounding: p.rounding.as_str().into(),
            interest_fen: p.interest.0,
        },
    }
}

fn schedule_to_pb(s: &Schedule) -> Result<pb::PreviewScheduleResponse, Status> {
    let overflow = || invalid("principal_fen", "makes the schedule's totals overflow 64-bit fen");
    Ok(pb::PreviewScheduleResponse {
        maturity_date: format_date(s.maturity),
        level_payment: s.level_payment.as_ref().map(|l| pb::LevelPayment {
            periodic_rate: l.periodic_rate.normalize().to_string(),
            periods: l.periods,
            unrounded_fen: l.unrounded_fen.normalize().to_string(),
            rounding: l.rounding.as_str().into(),
            payment_fen: l.payment.0,
        }),
        instalments: s
            .instalments
            .iter()
            .map(|i| pb::Instalment {
                number: i.number,
                period_start: format_date(i.period_start),
                period_end: format_date(i.period_end_inclusive),
                due_date: format_date(i.due_date),
                principal_due_fen: i.principal_due.0,
                interest_due_fen: i.interest_due.0,
                total_due_fen: i.total_due.0,
                remaining_principal_fen: i.remaining_principal.0,
                working: Some(working_to_pb(&i.interest)),
                absorbs_rounding: i.absorbs_rounding,
            })
            .collect(),
        total_principal_fen: s.total_principal().ok_or_else(overflow)?.0,
        total_interest_fen: s.total_interest().ok_or_else(overflow)?.0,
    })
}

#[tonic::async_trait]
impl LoanService for Api {
    async fn preview_schedule(
        &self,
        request: Request<pb::PreviewScheduleRequest>,
    ) -> Result<Response<pb::PreviewScheduleResponse>, Status> {
        let _actor = self.principal(&request).await?;
        let pb::PreviewScheduleRequest {
            principal_fen,
            annual_rate,
            disbursement_date,
            term_months,
            maturity_date,
            repayment_method,
            settlement_frequency,
            rounding,
        } = request.into_inner();
        let term = match (term_months, maturity_date.is_empty()) {
            (0, true) => return Err(invalid("term_months", "or maturity_date is required")),
            (n, true) => {
                if n > crate::domain::policy::TERM_MONTHS_MAX_BOUND {
                    return Err(invalid("term_months", "must be at most 120"));
                }
                Term::Months(n)
            }
            (0, false) => Term::Maturity(parse::date("maturity_date", &maturity_date)?),
            (_, false) => {
                return Err(invalid("maturity_date", "and term_months are exclusive: give one"));
            }
        };
        let method = method_from_pb("repayment_method", repayment_method)?;
        let (frequency, defaulted) = frequency_for(method, settlement_frequency, term_months)?;
        let terms = ScheduleTerms {
            principal: parse::positive_fen("principal_fen", principal_fen)?,
            rate: parse::rate("annual_rate", &annual_rate)?,
            disbursed: parse::date("disbursement_date", &disbursement_date)?,
            term,
            method,
            frequency,
            rounding: rounding_from_pb("rounding", &rounding)?,
        };
        // A term given by its maturity is held to the same 120 months as one given in months,
        // which CreateLoan takes at most.
        if let Term::Maturity(maturity) = terms.term
            && crate::domain::date::add_months(
                terms.disbursed,
                crate::domain::policy::TERM_MONTHS_MAX_BOUND,
            )
            .is_some_and(|latest| maturity > latest)
        {
            return Err(invalid(
                "maturity_date",
                "must be at most 120 months after disbursement_date",
            ));
        }
        // The field that gave the term: its calendar errors are that field's.
        let term_field = if term_months == 0 { "maturity_date" } else { "term_months" };
        let schedule = build_schedule(&terms).map_err(|e| match e {
            ScheduleError::NoTerm { .. } => invalid("maturity_date", e),
            // A maturity that is whole months but not whole quarters, the frequency left out:
            // the default does not fit, as with a term of months.
            ScheduleError::NotWholePeriods
                if defaulted
                    && build_schedule(&ScheduleTerms {
                        frequency: SettlementFrequency::Monthly,
                        ..terms
                    })
                    .is_ok() =>
            {
                invalid("settlement_frequency", QUARTERLY_BY_DEFAULT)
            }
            ScheduleError::NotWholePeriods => invalid("maturity_date", e),
            ScheduleError::TermTooLong => invalid(term_field, e),
            ScheduleError::FrequencyNotAllowed { .. } => invalid("settlement_frequency", e),
            ScheduleError::NonPositivePrincipal => invalid("principal_fen", e),
            ScheduleError::Calendar(CalendarError::DateOutOfRange)
            | ScheduleError::Interest(InterestError::Calendar(CalendarError::DateOutOfRange)) => {
                invalid("disbursement_date", format!("cannot be scheduled: {e}"))
            }
            ScheduleError::Calendar(_) | ScheduleError::Interest(InterestError::Calendar(_)) => {
                invalid(term_field, format!("cannot be scheduled: {e}"))
            }
            // Amounts out of range: the principal's (a rate is below 1).
            ScheduleError::Overflow | ScheduleError::Interest(_) => {
                invalid("principal_fen", format!("cannot be scheduled: {e}"))
            }
        })?;
        // Dates are answered as YYYY-MM-DD: a schedule past year 9999 has none to show.
        if chrono::Datelike::year(&schedule.maturity) > 9999 {
            return Err(invalid("disbursement_date", "gives a schedule past 9999-12-31"));
        }
        Ok(Response::new(schedule_to_pb(&schedule)?))
    }

    #[tracing::instrument(skip_all, fields(request_id, loan_id))]
    async fn create_loan(
        &self,
        request: Request<pb::CreateLoanRequest>,
    ) -> Result<Response<pb::LoanResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "CreateLoan")?;
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
            renews_loan_id,
        } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        let bank_id = parse::id("bank_id", &bank_id)?;
        // A bank contracts in its own name only. Nothing stored decides it, so it is refused
        // here, unrecorded, as SettleLoans' bank_id is: the request id stays free for the
        // corrected request.
        if bank_id != actor.org {
            return Err(Status::permission_denied(format!(
                "{} may not contract loans for bank {bank_id}",
                actor.actor()
            )));
        }
        let contract_number = parse::id("contract_number", &contract_number)?;
        let loan_id = parse::new_loan_id(&bank_id, &contract_number)?;
        tracing::Span::current().record("request_id", &request_id).record("loan_id", &loan_id);
        let id_number = parse::id_number("borrower_id_number", &borrower_id_number, self.today())?;
        let contract_date = parse::value_date("contract_date", &contract_date, self.today())?;
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
        let repayment_method = method_from_pb("repayment_method", repayment_method)?;
        let settlement_frequency =
            frequency_for(repayment_method, settlement_frequency, term_months)?.0;
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
            repayment_method,
            settlement_frequency,
            purpose: parse::text("purpose", &purpose, true)?,
            collateral_free,
            guarantee_free,
            renews_loan_id: if renews_loan_id.is_empty() {
                None
            } else {
                Some(parse::loan_id("renews_loan_id", &renews_loan_id)?)
            },
            // Fixed by the writer from the policy in force on the contract date.
            overdue_uplift: Decimal::ZERO,
            misuse_uplift: Decimal::ZERO,
            grace_days: 0,
            rounding: Rounding::HalfUp,
            extension_months_max: 0,
            // The programme's, which the terms' JSON leaves out: the command's canonical JSON,
            // which its fingerprint hashes, stays as it was before the field, so that a contract
            // sent before an upgrade and retried after it is the same request.
            claim_overdue_days: crate::domain::policy::CLAIM_OVERDUE_DAYS_DEFAULT,
        };
        let outcome = self
            .writer
            .submit(actor, request_id, Command::CreateLoan { terms })
            .await
            .map_err(status)?;
        self.loan_response(outcome)
    }

    #[tracing::instrument(skip_all, fields(request_id, loan_id))]
    async fn disburse(
        &self,
        request: Request<pb::DisburseRequest>,
    ) -> Result<Response<pb::LoanResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "Disburse")?;
        let pb::DisburseRequest { request_id, loan_id, value_date, amount_fen } =
            request.into_inner();
        self.submit_on_loan(actor, &request_id, &loan_id, |loan_id, today| {
            disbursement(loan_id, &value_date, amount_fen, today)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(request_id, loan_id))]
    async fn record_repayment(
        &self,
        request: Request<pb::RecordRepaymentRequest>,
    ) -> Result<Response<pb::LoanResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "RecordRepayment")?;
        let pb::RecordRepaymentRequest {
            request_id,
            loan_id,
            value_date,
            amount_fen,
            subsidy_netted_fen,
        } = request.into_inner();
        self.submit_on_loan(actor, &request_id, &loan_id, |loan_id, today| {
            repayment(loan_id, &value_date, amount_fen, subsidy_netted_fen, today)
        })
        .await
    }

    async fn get_loan(
        &self,
        request: Request<pb::GetLoanRequest>,
    ) -> Result<Response<pb::Loan>, Status> {
        let actor = self.principal(&request).await?;
        let pb::GetLoanRequest { loan_id, as_of, through_seq } = request.into_inner();
        let loan_id = parse::loan_id("loan_id", &loan_id)?;
        let as_of = parse::optional_date("as_of", &as_of)?;
        let through_seq = parse::through_seq("through_seq", through_seq)?;
        let loan = self.readable_loan(&actor, &loan_id).await?;
        if as_of.is_none() && through_seq.is_none() {
            return Ok(Response::new(loan_to_pb_checked(
                &loan,
                true,
                self.today_for(&loan),
                None,
            )?));
        }
        let past = loan_through(&self.db, &loan_id, as_of, through_seq)
            .await
            .map_err(status)?
            .ok_or_else(|| match (as_of, through_seq) {
                (_, Some(seq)) => no_contract_by(&loan_id, as_of, seq),
                (date, None) => Status::not_found(format!(
                    "loan {loan_id} was not contracted by {}",
                    date.map(format_date).unwrap_or_default()
                )),
            })?;
        // With a seq alone, the figures as of the day of the loan's last event by then (as a
        // write's answer has them): the same answer whenever it is asked.
        let (date, field) = match as_of {
            Some(date) => (date, Some("as_of")),
            None => (past.last_value_date, None),
        };
        Ok(Response::new(loan_to_pb_checked(&past, true, date, field)?))
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
            as_of,
        } = request.into_inner();
        let today = self.today();
        let given = !as_of.is_empty();
        let as_of = parse::as_of(&as_of, today)?;
        // Empty: today's listing, as before the field (its page tokens unchanged), which shows
        // a loan with an entry dated tomorrow (a write may be) as of that entry. A day given,
        // today's too, is that day's end (since 2026-12-07 evening, today given was today's
        // listing: a loan paid off tomorrow shown settled, a contract of tomorrow listed, and
        // its page tokens of no day).
        let past = given.then_some(as_of);
        let opt_id = |field: &str, v: String| -> Result<Option<String>, Status> {
            if v.is_empty() { Ok(None) } else { parse::id(field, &v).map(Some) }
        };
        let wanted = loan_status_from_pb("status", loan_status)?;
        let mut filter = LoanFilter {
            ledger_id: opt_id("ledger_id", ledger_id)?,
            bank_id: opt_id("bank_id", bank_id)?,
            household_id: opt_id("household_id", household_id)?,
            statuses: StatusFilter::Any,
            after_loan_id: None,
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
            Role::Operator => {
                return Err(Status::permission_denied(format!(
                    "{} may not read loans: an operator reads health and metrics only",
                    actor.actor()
                )));
            }
            // An auditor of every ledger lists any; a finance office its own ledger only.
            Role::Auditor if actor.org == "*" => {}
            Role::Finance | Role::Auditor => match &filter.ledger_id {
                Some(l) if *l != actor.org => {
                    return Err(Status::permission_denied(format!(
                        "{} may not read ledger {l}",
                        actor.actor()
                    )));
                }
                _ => filter.ledger_id = Some(actor.org.clone()),
            },
        }
        // A ledger named is one that exists, and a bank named (a bank's own, for a bank) is one
        // of it, as the other lists have it (`check_ledger_bank`; since 2026-12-07 a bank of
        // another ledger, and since 2026-12-07 evening a ledger that does not exist or is not
        // the bank's, gave an empty page). Without a ledger (an auditor of every ledger), a bank
        // named must exist (a bank's own does: its token was made for it).
        match (&filter.ledger_id, &filter.bank_id) {
            (Some(ledger_id), bank_id) => {
                self.check_ledger_bank(&actor, ledger_id, bank_id.as_deref()).await?;
            }
            (None, Some(bank_id)) if actor.role != Role::Bank => {
                if self.db.get_bank(bank_id).await.map_err(|e| status(e.into()))?.is_none() {
                    return Err(Status::not_found(format!("bank {bank_id} not found")));
                }
            }
            (None, _) => {}
        }
        // The token is of the query as the caller's role narrowed it, and of its day.
        let caller = match past {
            Some(date) => format!("{}\nas of {}", actor.actor(), format_date(date)),
            None => actor.actor(),
        };
        let query = listing::query_key(&caller, &filter, wanted);
        if !page_token.is_empty() {
            let after = listing::token_after_id(&page_token, &query)
                .map_err(|why| invalid("page_token", why))?;
            filter.after_loan_id = Some(after.to_string());
        }
        let page_size = match page_size {
            0 => PAGE_SIZE_DEFAULT,
            n => n.min(PAGE_SIZE_MAX),
        };
        // One date for the whole page: what is filtered on is what is shown.
        let page = match past {
            // Up to 10,000 loans read and most rebuilt from their histories (about 50 µs
            // each): one such page at a time, in the turn of the whole-journal reads (since
            // 2026-12-07 a bank could run as many at once as it liked).
            Some(date) if date < today => {
                let _turn = self.whole_journal_turn().await?;
                listing::loans_page_as_of(&self.db, filter, wanted, date, page_size).await
            }
            // Today given: rebuilds only the loans with an entry dated tomorrow, without the
            // turn (a caller that always sends today's date does not wait for a `Verify`).
            Some(date) => {
                listing::loans_page_as_of(&self.db, filter, wanted, date, page_size).await
            }
            None => listing::loans_page(&self.db, filter, wanted, today, page_size).await,
        };
        let (loans, next_page_token) = page.map_err(status)?;
        let next_page_token = listing::bound_token(next_page_token, &query);
        Ok(Response::new(pb::ListLoansResponse {
            loans: loans
                .iter()
                .map(|l| loan_to_pb_quoted(&l.loan, true, l.as_of, l.quote.as_ref()))
                .collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(items))]
    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "SubmitBatch")?;
        let pb::SubmitBatchRequest { items } = request.into_inner();
        tracing::Span::current().record("items", items.len());
        if items.is_empty() {
            return Err(invalid("items", "is empty"));
        }
        if items.len() > BATCH_ITEMS_MAX {
            return Err(invalid(
                "items",
                format!("has {} items; at most {BATCH_ITEMS_MAX} per batch", items.len()),
            ));
        }
        let today = self.today();
        let mut results: Vec<pb::BatchResult> = Vec::with_capacity(items.len());
        let mut commands = Vec::with_capacity(items.len());
        let mut positions = Vec::with_capacity(items.len());
        // The loans (as sent) of items refused here: the file's later items on them are held
        // back (`WriterHandle::submit_file`), as after an item left unanswered.
        let mut refused_loans: HashSet<String> = HashSet::default();
        for (index, item) in items.into_iter().enumerate() {
            let pb::BatchItem { request_id, item } = item;
            let mut result = pb::BatchResult {
                index: index as u32,
                request_id: request_id.clone(),
                ..Default::default()
            };
            let parsed = (|| -> Result<(String, Command), Status> {
                let request_id = parse::request_id(&request_id)?;
                let command = match item
                    .as_ref()
                    .ok_or_else(|| invalid("item", "is required: disbursement or repayment"))?
                {
                    pb::batch_item::Item::Disbursement(pb::DisburseItem {
                        loan_id,
                        value_date,
                        amount_fen,
                    }) => {
                        let loan_id = parse::loan_id("loan_id", loan_id)?;
                        disbursement(loan_id, value_date, *amount_fen, today)?
                    }
                    pb::batch_item::Item::Repayment(pb::RepaymentItem {
                        loan_id,
                        value_date,
                        amount_fen,
                        subsidy_netted_fen,
                    }) => {
                        let loan_id = parse::loan_id("loan_id", loan_id)?;
                        repayment(loan_id, value_date, *amount_fen, *subsidy_netted_fen, today)?
                    }
                };
                Ok((request_id, command))
            })();
            match parsed {
                Ok((request_id, command)) => {
                    let after_refused = !refused_loans.is_empty()
                        && command.loan_id().is_some_and(|id| refused_loans.contains(id));
                    positions.push(results.len());
                    commands.push((request_id, command, after_refused));
                }
                Err(e) => {
                    failed_item(&mut result, &e);
                    let sent_loan = match &item {
                        Some(pb::batch_item::Item::Disbursement(d)) => d.loan_id.trim(),
                        Some(pb::batch_item::Item::Repayment(r)) => r.loan_id.trim(),
                        None => "",
                    };
                    if !sent_loan.is_empty() {
                        refused_loans.insert(sent_loan.to_string());
                    }
                }
            }
            results.push(result);
        }
        // Each item's answer is its loan's id, entry and principal outstanding: asked for briefly
        // (no copy of each loan's state), and a retried batch is answered from what was stored.
        let answers = self.writer.submit_file(&actor, commands).await;
        for (pos, answer) in positions.into_iter().zip(answers) {
            let r = &mut results[pos];
            match answer {
                Ok(Outcome::LoanRef {
                    loan_id,
                    entry,
                    principal_outstanding_fen: Some(principal),
                    ..
                }) => {
                    r.ok = true;
                    r.loan_id = loan_id;
                    r.entry = Some(journal_ref(&entry));
                    r.principal_outstanding_fen = principal.0;
                }
                Ok(Outcome::LoanUnchanged { loan }) => {
                    r.ok = true;
                    r.loan_id = loan.terms.loan_id.clone();
                    r.principal_outstanding_fen = loan.principal_outstanding_fen.0;
                }
                Ok(Outcome::LoanRef { principal_outstanding_fen: None, .. }) => {
                    r.code = "INTERNAL".into();
                    r.message = "answered without the loan's principal outstanding".into();
                }
                Ok(_) => {
                    r.code = "INTERNAL".into();
                    r.message = "unexpected answer".into();
                }
                Err(e) => failed_item(r, &status(e)),
            }
        }
        let posted = results.iter().filter(|r| r.ok).count() as u32;
        let failed = results.len() as u32 - posted;
        Ok(Response::new(pb::SubmitBatchResponse { results, posted, failed }))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn settle_loans(
        &self,
        request: Request<pb::SettleLoansRequest>,
    ) -> Result<Response<pb::SettleLoansResponse>, Status> {
        let actor = self.principal(&request).await?;
        let pb::SettleLoansRequest { request_id, ledger_id, bank_id, settlement_date } =
            request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        let bank_id = parse::optional_id("bank_id", &bank_id)?;
        let today = self.today();
        let date = parse::value_date("settlement_date", &settlement_date, today)?;
        // A run settles the points the business day has reached: one dated ahead (the day of
        // leeway other writes have) would date every loan's last event ahead of today, and the
        // day's own payments, sent after it, would be refused as dated before it. Named before
        // the ledger is looked at, as a date further ahead is (since 2026-12-07: tomorrow's
        // came after the ledger's and the bank's checks).
        if date > today {
            return Err(invalid(
                "settlement_date",
                format!(
                    "{} is after today ({}): a run settles the points the day has reached; run \
                     it on the day",
                    format_date(date),
                    format_date(today)
                ),
            ));
        }
        self.check_bank_scope(
            &actor,
            &ledger_id,
            bank_id.as_deref(),
            Principal::administers_ledger,
            ("settles only its own loans", "settle ledger"),
        )
        .await?;
        let s = run_settlement(
            &self.db,
            &self.writer,
            &actor,
            &request_id,
            &ledger_id,
            bank_id.as_deref(),
            date,
        )
        .await
        .map_err(status)?;
        Ok(Response::new(pb::SettleLoansResponse {
            loans_examined: s.loans_examined,
            loans_settled: s.loans_settled,
            settlement_points: s.settlement_points,
            interest_fen: s.interest_fen,
            penalty_fen: s.penalty_fen,
            compound_fen: s.compound_fen,
            failed: s.failed,
            failures: s.failures,
            loans_no_longer_live: s.loans_no_longer_live,
            failed_loans: s
                .failed_loans
                .into_iter()
                .map(|f| pb::SettlementFailure {
                    loan_id: f.loan_id,
                    code: f.code,
                    reason: f.reason,
                    field: f.field,
                    message: f.message,
                })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id, loan_id))]
    async fn mark_misuse(
        &self,
        request: Request<pb::MarkMisuseRequest>,
    ) -> Result<Response<pb::LoanResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank, Role::Finance], "MarkMisuse")?;
        let pb::MarkMisuseRequest { request_id, loan_id, value_date, falsely_obtained } =
            request.into_inner();
        self.submit_on_loan(actor, &request_id, &loan_id, |loan_id, today| {
            Ok(Command::MarkMisuse {
                loan_id,
                value_date: parse::value_date("value_date", &value_date, today)?,
                falsely_obtained,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(request_id, loan_id))]
    async fn extend_loan(
        &self,
        request: Request<pb::ExtendLoanRequest>,
    ) -> Result<Response<pb::LoanResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "ExtendLoan")?;
        let pb::ExtendLoanRequest { request_id, loan_id, value_date, new_maturity_date } =
            request.into_inner();
        self.submit_on_loan(actor, &request_id, &loan_id, |loan_id, today| {
            Ok(Command::ExtendLoan {
                loan_id,
                value_date: parse::value_date("value_date", &value_date, today)?,
                new_maturity: parse::date("new_maturity_date", &new_maturity_date)?,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(request_id, loan_id))]
    async fn write_off_loan(
        &self,
        request: Request<pb::WriteOffLoanRequest>,
    ) -> Result<Response<pb::LoanResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "WriteOffLoan")?;
        let pb::WriteOffLoanRequest { request_id, loan_id, value_date } = request.into_inner();
        self.submit_on_loan(actor, &request_id, &loan_id, |loan_id, today| {
            Ok(Command::WriteOffLoan {
                loan_id,
                value_date: parse::value_date("value_date", &value_date, today)?,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(request_id, loan_id))]
    async fn record_recovery(
        &self,
        request: Request<pb::RecordRecoveryRequest>,
    ) -> Result<Response<pb::LoanResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "RecordRecovery")?;
        let pb::RecordRecoveryRequest { request_id, loan_id, value_date, amount_fen } =
            request.into_inner();
        self.submit_on_loan(actor, &request_id, &loan_id, |loan_id, today| {
            Ok(Command::RecordRecovery {
                loan_id,
                value_date: parse::value_date("value_date", &value_date, today)?,
                amount_fen: parse::positive_fen("amount_fen", amount_fen)?,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(request_id, loan_id))]
    async fn reverse_repayment(
        &self,
        request: Request<pb::ReverseRepaymentRequest>,
    ) -> Result<Response<pb::LoanResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "ReverseRepayment")?;
        let pb::ReverseRepaymentRequest { request_id, loan_id, reversed_seq, reason } =
            request.into_inner();
        self.submit_on_loan(actor, &request_id, &loan_id, |loan_id, _| {
            let Some(reversed_seq) = parse::through_seq("reversed_seq", reversed_seq)? else {
                return Err(invalid("reversed_seq", "is required: the repayment's seq"));
            };
            Ok(Command::ReverseRepayment {
                loan_id,
                reversed_seq,
                reason: parse::text("reason", &reason, true)?,
            })
        })
        .await
    }

    async fn get_payoff_quote(
        &self,
        request: Request<pb::GetPayoffQuoteRequest>,
    ) -> Result<Response<pb::PayoffQuote>, Status> {
        let actor = self.principal(&request).await?;
        let pb::GetPayoffQuoteRequest { loan_id, as_of, through_seq } = request.into_inner();
        let loan_id = parse::loan_id("loan_id", &loan_id)?;
        let date = parse::date("as_of", &as_of)?;
        let through_seq = parse::through_seq("through_seq", through_seq)?;
        let mut loan = self.readable_loan(&actor, &loan_id).await?;
        // Through a seq: the loan as the journal stood then (its events dated after as_of
        // included: the quote is for as_of from its last event, as the current loan's is).
        if let Some(seq) = through_seq {
            loan = loan_through(&self.db, &loan_id, None, Some(seq))
                .await
                .map_err(status)?
                .ok_or_else(|| no_contract_by(&loan_id, None, seq))?;
        }
        let q = crate::api::convert::quote_on(&loan, date, Some("as_of"))?;
        let total = q.total().ok_or_else(|| invalid("as_of", "makes the quote overflow"))?;
        Ok(Response::new(pb::PayoffQuote {
            loan_id,
            as_of: format_date(date),
            penalty_fen: q.penalty_fen.0,
            compound_fen: q.compound_fen.0,
            overdue_interest_fen: q.overdue_interest_fen.0,
            current_interest_fen: q.current_interest_fen.0,
            accrued_interest_fen: q.accrued_interest_fen.0,
            principal_fen: q.principal_fen.0,
            total_fen: total.0,
            days_overdue: q.days_overdue,
            overdue_principal_fen: q.overdue_principal_fen.0,
            current_principal_fen: q.current_principal_fen.0,
            last_seq: loan.last_seq,
        }))
    }
}

/// A disbursement as a call or a batch item sends it (its loan id read already), its fields
/// read in the same order for both (the value date, then the amount; 0 pays out what is left).
fn disbursement(
    loan_id: String,
    value_date: &str,
    amount_fen: i64,
    today: BusinessDate,
) -> Result<Command, Status> {
    let value_date = parse::value_date("value_date", value_date, today)?;
    let amount_fen = match amount_fen {
        0 => None,
        n => Some(parse::positive_fen("amount_fen", n)?),
    };
    Ok(Command::Disburse { loan_id, value_date, amount_fen })
}

/// A repayment as a call or a batch item sends it (its loan id read already), its fields read
/// in the same order for both.
fn repayment(
    loan_id: String,
    value_date: &str,
    amount_fen: i64,
    subsidy_netted_fen: i64,
    today: BusinessDate,
) -> Result<Command, Status> {
    let value_date = parse::value_date("value_date", value_date, today)?;
    let amount_fen = parse::positive_fen("amount_fen", amount_fen)?;
    Ok(Command::RecordRepayment {
        loan_id,
        value_date,
        amount_fen,
        subsidy_netted_fen: parse::netted_fen(subsidy_netted_fen, amount_fen)?,
    })
}
