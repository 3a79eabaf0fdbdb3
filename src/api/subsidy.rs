//! SubsidyService: subsidy registers, a loan's and a ledger's, recomputed
//! ([`crate::app::subsidy`]).

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::audit::spawned_stream;
use super::error::{invalid, status};
use super::pb::subsidy_service_server::SubsidyService;
use super::{Api, parse, pb};
use crate::app::auth::Principal;
use crate::app::error::AppError;
use crate::app::subsidy::{LedgerRegisters, LoanSubsidy, loan_subsidy};
use crate::domain::date::{BusinessDate, format_date};
use crate::domain::money::Fen;
use crate::domain::subsidy::PeriodSubsidy;
use crate::domain::subsidy_register::{LineStanding, RegisterLine};

#[tonic::async_trait]
impl SubsidyService for Api {
    async fn get_loan_subsidy(
        &self,
        request: Request<pb::GetLoanSubsidyRequest>,
    ) -> Result<Response<pb::LoanSubsidy>, Status> {
        let actor = self.principal(&request).await?;
        let pb::GetLoanSubsidyRequest { loan_id, as_of } = request.into_inner();
        let loan_id = parse::loan_id("loan_id", &loan_id)?;
        let as_of = parse::optional_date("as_of", &as_of)?.unwrap_or_else(|| self.today());
        let history = self.readable_history(&actor, &loan_id).await?;
        let s = loan_subsidy(&self.db, &loan_id, history, as_of).await.map_err(status)?;
        Ok(Response::new(subsidy_to_pb(&s, as_of)))
    }

    type ListSubsidyRegisterStream = ReceiverStream<Result<pb::LoanSubsidy, Status>>;

    async fn list_subsidy_register(
        &self,
        request: Request<pb::ListSubsidyRegisterRequest>,
    ) -> Result<Response<Self::ListSubsidyRegisterStream>, Status> {
        let actor = self.principal(&request).await?;
        let pb::ListSubsidyRegisterRequest { ledger_id, bank_id, due_from, due_to, as_of } =
            request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        let bank_id = parse::optional_id("bank_id", &bank_id)?;
        let due_from = parse::date("due_from", &due_from)?;
        let due_to = parse::date("due_to", &due_to)?;
        if due_to < due_from {
            return Err(invalid("due_to", "must not be before due_from"));
        }
        let as_of = parse::optional_date("as_of", &as_of)?.unwrap_or_else(|| self.today());
        self.check_bank_scope(
            &actor,
            &ledger_id,
            bank_id.as_deref(),
            Principal::reads_ledger,
            ("reads only its own loans' subsidy register", "read the subsidy register of ledger"),
        )
        .await?;
        let db = self.db.clone();
        let what = format!("the subsidy register of ledger {ledger_id}");
        let stream = spawned_stream(what, move |tx| async move {
            let read = async {
                let due = due_from..=due_to;
                let mut registers =
                    LedgerRegisters::open(&db, &ledger_id, bank_id.as_deref(), due, as_of).await?;
                while let Some(page) = registers.next_page(&db).await? {
                    for s in &page {
                        if tx.send(Ok(subsidy_to_pb(s, as_of))).await.is_err() {
                            return Ok(()); // the client has gone
                        }
                    }
                }
                Ok::<(), AppError>(())
            };
            if let Err(e) = read.await {
                let _ = tx.send(Err(status(e))).await;
            }
        });
        Ok(Response::new(stream))
    }
}

/// A register as answered: its lines, and their sums.
fn subsidy_to_pb(s: &LoanSubsidy, as_of: BusinessDate) -> pb::LoanSubsidy {
    let sum = |f: fn(&RegisterLine) -> i64| s.lines.iter().map(f).fold(0i64, i64::saturating_add);
    pb::LoanSubsidy {
        loan_id: s.terms.loan_id.clone(),
        ledger_id: s.terms.ledger_id.clone(),
        bank_id: s.terms.bank_id.clone(),
        household_id: s.terms.household_id.clone(),
        township: s.township.clone(),
        village: s.village.clone(),
        principal_fen: s.terms.principal_fen.0,
        as_of: format_date(as_of),
        annual_rate: s.terms.annual_rate.to_string(),
        household_cap_fen: s.policy.household_cap.0,
        cap_rate: s.policy.cap_rate.normalize().to_string(),
        grace_days: s.terms.grace_days,
        misused: s.misused,
        interest_settled_fen: sum(|l| l.settled_fen.0),
        interest_paid_fen: sum(|l| l.paid_on_time_fen.0.saturating_add(l.paid_late_fen.0)),
        subsidy_fen: sum(|l| l.subsidy_fen().0),
        lines: s.lines.iter().map(line_to_pb).collect(),
    }
}

fn line_to_pb(l: &RegisterLine) -> pb::SubsidyLine {
    let standing = match l.standing {
        LineStanding::OnTime => pb::SubsidyStanding::OnTime,
        LineStanding::PaidLate => pb::SubsidyStanding::PaidLate,
        LineStanding::Overdue => pb::SubsidyStanding::Overdue,
        LineStanding::WrittenOff => pb::SubsidyStanding::WrittenOff,
        LineStanding::NotYetDue => pb::SubsidyStanding::NotYetDue,
        LineStanding::Misuse => pb::SubsidyStanding::Misuse,
    };
    pb::SubsidyLine {
        period_start: format_date(l.start),
        period_end: format_date(l.end_inclusive),
        due_date: format_date(l.due_date),
        deadline: format_date(l.deadline),
        interest_settled_fen: l.settled_fen.0,
        interest_paid_on_time_fen: l.paid_on_time_fen.0,
        interest_paid_late_fen: l.paid_late_fen.0,
        interest_written_off_fen: l.written_off_fen.0,
        interest_unpaid_fen: l.unpaid_fen().0,
        last_paid_on: l.last_paid_on.map(format_date).unwrap_or_default(),
        standing: standing.into(),
        working: l.working.as_ref().map(working_to_pb),
        recorded: l.recorded,
    }
}

fn working_to_pb(w: &PeriodSubsidy) -> pb::SubsidyWorking {
    // 积数 within 64 bits: a principal under the policy bound for a century of days.
    let fen_days = |x: i128| i64::try_from(x).unwrap_or(i64::MAX);
    let fen = |f: Fen| f.0;
    pb::SubsidyWorking {
        days: w.days,
        jishu: fen_days(w.jishu),
        jishu_within_cap: fen_days(w.jishu_within_cap),
        rate_within_cap: w.rate_within_cap.normalize().to_string(),
        interest_paid_fen: fen(w.interest_paid),
        subsidisable_unrounded_fen: w.subsidisable_unrounded_fen.normalize().to_string(),
        subsidisable_fen: fen(w.subsidisable),
        parts: w
            .segments
            .iter()
            .map(|s| pb::SubsidyRatioPart {
                from: format_date(s.from),
                to: format_date(s.to_inclusive),
                days: s.days,
                ratio: s.ratio.normalize().to_string(),
                jishu_within_cap: fen_days(s.jishu_within_cap),
                subsidy_unrounded_fen: s.subsidy_unrounded_fen.normalize().to_string(),
            })
            .collect(),
        subsidy_unrounded_fen: w.subsidy_unrounded_fen.normalize().to_string(),
        subsidy_fen: fen(w.subsidy),
    }
}
