//! PoolService: pooled-loan arrangements ([`crate::domain::pool`]): their writes through the
//! writer, their figures read and reported on the read pool.

use tonic::{Request, Response, Status};

use super::convert::{journal_ref, loan_status_to_pb};
use super::error::{invalid, status, unexpected};
use super::pb::pool_service_server::PoolService;
use super::{Api, parse, pb};
use crate::app::auth::{Principal, Role};
use crate::app::command::{Command, Outcome, RepaidPart};
use crate::app::error::AppError;
use crate::app::listing;
use crate::app::servicing::{loans_as_of, read_through};
use crate::domain::date::format_date;
use crate::domain::loan::LoanState;
use crate::domain::pool::{
    ParticipationKind, Pool, PoolMode, PoolTerms, ReturnFrequency, check_member_count,
};
use crate::store::read::LoanFilter;

#[tonic::async_trait]
impl PoolService for Api {
    async fn create_pool(
        &self,
        request: Request<pb::CreatePoolRequest>,
    ) -> Result<Response<pb::PoolResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "CreatePool")?;
        let pb::CreatePoolRequest {
            request_id,
            pool_id,
            bank_id,
            mode,
            partner_id,
            partner_name,
            agreed_on,
            return_rate,
            return_frequency,
            loan_ids,
        } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let mode = match parse::enumeration::<pb::PoolMode>("mode", mode)? {
            pb::PoolMode::Direct => PoolMode::Direct,
            pb::PoolMode::Entrusted => PoolMode::Entrusted,
            pb::PoolMode::Shareholding => PoolMode::Shareholding,
            pb::PoolMode::Unspecified => return Err(invalid("mode", "is required")),
        };
        // Unspecified is no frequency (a direct pool's), not a field left out.
        let return_frequency = match return_frequency {
            0 => None,
            value => match parse::enumeration::<pb::ReturnFrequency>("return_frequency", value)? {
                pb::ReturnFrequency::Quarterly => Some(ReturnFrequency::Quarterly),
                pb::ReturnFrequency::Yearly => Some(ReturnFrequency::Yearly),
                pb::ReturnFrequency::Unspecified => None,
            },
        };
        let return_rate = match return_rate.as_str() {
            "" => None,
            rate => Some(parse::rate("return_rate", rate)?),
        };
        check_member_count(loan_ids.len()).map_err(|e| status(AppError::Domain(e)))?;
        let loan_ids = loan_ids
            .iter()
            .enumerate()
            .map(|(i, id)| parse::loan_id(&format!("loan_ids[{i}]"), id))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::HashSet::with_capacity(loan_ids.len());
        if let Some(twice) = loan_ids.iter().find(|id| !seen.insert(id.as_str())) {
            return Err(invalid("loan_ids", format!("names loan {twice} twice")));
        }
        let bank_id = parse::id("bank_id", &bank_id)?;
        // A bank agrees pools in its own name only. Nothing stored decides it, so it is refused
        // here, unrecorded, as CreateLoan's bank_id is: the request id stays free for the
        // corrected request (since 2026-12-07; the writer's refusal was recorded under it).
        if bank_id != actor.org {
            return Err(Status::permission_denied(format!(
                "{} may not agree pools for bank {bank_id}",
                actor.actor()
            )));
        }
        let pool_id = parse::id("pool_id", &pool_id)?;
        // A bank's pools are named under its id, as its loans and claims are: no bank learns
        // another's pool ids from a collision.
        if !pool_id
            .strip_prefix(bank_id.as_str())
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('-'))
        {
            return Err(invalid(
                "pool_id",
                format!("must be {bank_id}-<the bank's own number>, beginning with its bank's id"),
            ));
        }
        let terms = PoolTerms {
            pool_id,
            // The bank's ledger, filled in by the writer.
            ledger_id: String::new(),
            bank_id,
            mode,
            partner_id: parse::id("partner_id", &partner_id)?,
            partner_name: parse::text("partner_name", &partner_name, true)?,
            agreed_on: parse::value_date("agreed_on", &agreed_on, self.today())?,
            return_rate,
            return_frequency,
        };
        // The terms' own rules (a return rate and frequency for the modes that pool money, none
        // for a direct pool) are the request's alone: refused here, unrecorded, so that the
        // request put right goes under the same id (since 2026-12-07; the writer checks them
        // again).
        terms.check().map_err(|e| status(AppError::Domain(e)))?;
        self.pool_write(actor, request_id, Command::CreatePool { terms, loan_ids }).await
    }

    async fn transfer_to_partner(
        &self,
        request: Request<pb::TransferToPartnerRequest>,
    ) -> Result<Response<pb::PoolResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "TransferToPartner")?;
        let pb::TransferToPartnerRequest { request_id, pool_id, loan_id, value_date, amount_fen } =
            request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let command = Command::TransferToPartner {
            pool_id: parse::id("pool_id", &pool_id)?,
            loan_id: parse::loan_id("loan_id", &loan_id)?,
            value_date: parse::value_date("value_date", &value_date, self.today())?,
            amount_fen: parse::positive_fen("amount_fen", amount_fen)?,
        };
        self.pool_write(actor, request_id, command).await
    }

    async fn record_pool_return(
        &self,
        request: Request<pb::RecordPoolReturnRequest>,
    ) -> Result<Response<pb::PoolResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank, Role::Finance], "RecordPoolReturn")?;
        let pb::RecordPoolReturnRequest { request_id, pool_id, loan_id, value_date, amount_fen } =
            request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let command = Command::RecordPoolReturn {
            pool_id: parse::id("pool_id", &pool_id)?,
            loan_id: parse::loan_id("loan_id", &loan_id)?,
            value_date: parse::value_date("value_date", &value_date, self.today())?,
            amount_fen: parse::positive_fen("amount_fen", amount_fen)?,
        };
        self.pool_write(actor, request_id, command).await
    }

    async fn record_participation(
        &self,
        request: Request<pb::RecordParticipationRequest>,
    ) -> Result<Response<pb::PoolResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank, Role::Finance], "RecordParticipation")?;
        let pb::RecordParticipationRequest { request_id, pool_id, loan_id, value_date, kind, note } =
            request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let kind = match parse::enumeration::<pb::ParticipationKind>("kind", kind)? {
            pb::ParticipationKind::Work => ParticipationKind::Work,
            pb::ParticipationKind::Training => ParticipationKind::Training,
            pb::ParticipationKind::ProduceSold => ParticipationKind::ProduceSold,
            pb::ParticipationKind::Other => ParticipationKind::Other,
            pb::ParticipationKind::Unspecified => return Err(invalid("kind", "is required")),
        };
        let command = Command::RecordParticipation {
            pool_id: parse::id("pool_id", &pool_id)?,
            loan_id: parse::loan_id("loan_id", &loan_id)?,
            value_date: parse::value_date("value_date", &value_date, self.today())?,
            kind,
            note: parse::text("note", &note, false)?,
        };
        self.pool_write(actor, request_id, command).await
    }

    async fn repay_pool(
        &self,
        request: Request<pb::RepayPoolRequest>,
    ) -> Result<Response<pb::PoolResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "RepayPool")?;
        let pb::RepayPoolRequest { request_id, pool_id, value_date, amount_fen } =
            request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let command = Command::RepayPool {
            pool_id: parse::id("pool_id", &pool_id)?,
            value_date: parse::value_date("value_date", &value_date, self.today())?,
            amount_fen: parse::positive_fen("amount_fen", amount_fen)?,
        };
        self.pool_write(actor, request_id, command).await
    }

    async fn settle_pool(
        &self,
        request: Request<pb::SettlePoolRequest>,
    ) -> Result<Response<pb::PoolResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "SettlePool")?;
        let pb::SettlePoolRequest { request_id, pool_id, value_date } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let command = Command::SettlePool {
            pool_id: parse::id("pool_id", &pool_id)?,
            value_date: parse::value_date("value_date", &value_date, self.today())?,
        };
        self.pool_write(actor, request_id, command).await
    }

    async fn get_pool(
        &self,
        request: Request<pb::GetPoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let actor = self.principal(&request).await?;
        let pool_id = parse::id("pool_id", &request.into_inner().pool_id)?;
        let pool = self.readable_pool(&actor, &pool_id).await?;
        Ok(Response::new(pool_to_pb(&pool)))
    }

    async fn list_pools(
        &self,
        request: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let actor = self.principal(&request).await?;
        let pb::ListPoolsRequest { ledger_id, bank_id, page_size, page_token } =
            request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        let bank_id = parse::optional_id("bank_id", &bank_id)?;
        self.check_bank_scope(
            &actor,
            &ledger_id,
            bank_id.as_deref(),
            Principal::reads_ledger,
            ("lists only its own pools", "list the pools of ledger"),
        )
        .await?;
        let filter = LoanFilter {
            ledger_id: Some(ledger_id.clone()),
            bank_id: bank_id.clone(),
            ..LoanFilter::default()
        };
        let query = listing::query_key(&format!("{}\npools", actor.actor()), &filter, None);
        let after = super::after_page_token(&page_token, &query)?;
        let page_size = super::page_size_or_default(page_size);
        let bank = bank_id.as_deref().unwrap_or_default();
        let page = self.db.list_pools(&ledger_id, bank, after, page_size).await;
        let page = page.map_err(|e| status(e.into()))?;
        let last = (page.len() == page_size as usize).then(|| page.last()).flatten();
        let next_page_token =
            listing::page_token_after(last.map(|p| p.terms.pool_id.as_str()), &query);
        let pools = page.iter().map(pool_to_pb).collect();
        Ok(Response::new(pb::ListPoolsResponse { pools, next_page_token }))
    }

    async fn get_pool_report(
        &self,
        request: Request<pb::GetPoolReportRequest>,
    ) -> Result<Response<pb::PoolReport>, Status> {
        let actor = self.principal(&request).await?;
        let pb::GetPoolReportRequest { pool_id, as_of, through_seq } = request.into_inner();
        let pool_id = parse::id("pool_id", &pool_id)?;
        // A report of what happened: the returns due to a date to come are not owed yet, and
        // its loans' figures not known.
        let as_of = parse::as_of(&as_of, self.today())?;
        let through_seq = parse::through_seq("through_seq", through_seq)?;
        let store = |e: crate::store::StoreError| status(e.into());
        let pool = self.readable_pool(&actor, &pool_id).await?;
        // Everything below is read as the ledger's journal through this seq had it (read
        // first): the pool, its loans and its activity of one state, whatever is written
        // meanwhile, and given again with the seq.
        let through = read_through(&self.db, &pool.terms.ledger_id, through_seq);
        let through = through.await.map_err(status)?;
        // The pool read after the seq is the one through it unless an event of it was
        // recorded after the seq (its last seq read after it: then it is rebuilt from its
        // events).
        let now = self.db.pool(&pool_id).await.map_err(store)?;
        let last_seq = self.db.pool_last_seq(&pool_id).await.map_err(store)?;
        let pool = match (now, last_seq.and_then(|seq| u64::try_from(seq).ok())) {
            (Some(now), Some(seq)) if seq <= through => now,
            _ => {
                // A scan of the ledger's journal from the pool's agreement to the seq: in the
                // turn of the whole-journal reads, one at a time (since 2026-12-07).
                let _turn = self.whole_journal_turn().await?;
                let ledger_id = &pool.terms.ledger_id;
                let events = self.db.pool_events_through(ledger_id, &pool_id, through).await;
                // The journal's own events that do not replay: corrupt, as a row that does not
                // decode.
                let rebuilt = Pool::rebuilt(&events.map_err(store)?).map_err(|e| {
                    let why = format!("pool {pool_id}'s events do not replay: {e}");
                    store(crate::store::StoreError::Corrupt(why))
                })?;
                rebuilt.ok_or_else(|| {
                    Status::not_found(format!("pool {pool_id} was not agreed by seq {through}"))
                })?
            }
        };
        let loans = self.db.loans_of_pool(&pool_id).await.map_err(store)?;
        // The members' loans as they stood on the report's date, not as they stand.
        let loans = loans_as_of(&self.db, loans, as_of, Some(through)).await.map_err(status)?;
        let activity = self.db.pool_activity(&pool_id, through).await.map_err(store)?;
        let refs: Vec<&LoanState> = loans.iter().collect();
        let members: Vec<pb::MemberStanding> = pool
            .report(&refs, as_of, &activity)
            .into_iter()
            .map(|m| pb::MemberStanding {
                loan_id: m.loan_id,
                household_id: m.household_id,
                loan_status: m
                    .loan_status
                    .map(|s| loan_status_to_pb(s).as_str_name().to_string())
                    .unwrap_or_default(),
                days_overdue: m.days_overdue,
                principal_outstanding_fen: m.principal_outstanding_fen.0,
                held_fen: m.held_fen.0,
                returns_due_fen: m.returns_due_fen.0,
                returns_paid_fen: m.returns_paid_fen.0,
                returns_short_fen: m.returns_short_fen.0,
                late_return_points: m.late_return_points,
                last_return_on: m.last_return_on.map(format_date).unwrap_or_default(),
                participations: m.participations,
                repaid_fen: m.repaid_fen.0,
                flags: m.flags.iter().map(|f| f.code().to_string()).collect(),
            })
            .collect();
        let flagged_members =
            u32::try_from(members.iter().filter(|m| !m.flags.is_empty()).count()).unwrap_or(0);
        Ok(Response::new(pb::PoolReport {
            through_seq: through,
            pool: Some(pool_to_pb(&pool)),
            as_of: format_date(as_of),
            members,
            flagged_members,
        }))
    }
}

impl Api {
    /// A pool's write through the writer, answered with the pool after it.
    async fn pool_write(
        &self,
        actor: Principal,
        request_id: String,
        command: Command,
    ) -> Result<Response<pb::PoolResponse>, Status> {
        let what = command.name();
        let (pool, parts, entry) =
            match self.writer.submit(actor, request_id, command).await.map_err(status)? {
                Outcome::Pool { pool, parts, entry } => (*pool, parts, entry),
                // A retry: the pool as it stands.
                Outcome::PoolRef { pool_id, parts, entry } => {
                    let pool = self.db.pool(&pool_id).await.map_err(|e| status(e.into()))?;
                    let pool = pool.ok_or_else(|| {
                        status(AppError::Internal(format!("pool {pool_id} answered, not found")))
                    })?;
                    (pool, parts, entry)
                }
                _ => return Err(unexpected(what)),
            };
        Ok(Response::new(pb::PoolResponse {
            pool: Some(pool_to_pb(&pool)),
            parts: parts.iter().map(part_to_pb).collect(),
            entry: Some(journal_ref(&entry)),
        }))
    }

    /// The pool, if it exists and `actor` may read it: its bank, its ledger's finance office and
    /// auditors. NOT_FOUND for a pool outside the caller's books, as a missing one.
    async fn readable_pool(&self, actor: &Principal, pool_id: &str) -> Result<Pool, Status> {
        let pool = self.db.pool(pool_id).await.map_err(|e| status(e.into()))?;
        pool.filter(|p| actor.reads_loan(&p.terms.bank_id, &p.terms.ledger_id))
            .ok_or_else(|| Status::not_found(format!("pool {pool_id} not found")))
    }
}

fn mode_to_pb(mode: PoolMode) -> pb::PoolMode {
    match mode {
        PoolMode::Direct => pb::PoolMode::Direct,
        PoolMode::Entrusted => pb::PoolMode::Entrusted,
        PoolMode::Shareholding => pb::PoolMode::Shareholding,
    }
}

fn pool_to_pb(p: &Pool) -> pb::Pool {
    let t = &p.terms;
    pb::Pool {
        pool_id: t.pool_id.clone(),
        ledger_id: t.ledger_id.clone(),
        bank_id: t.bank_id.clone(),
        mode: mode_to_pb(t.mode) as i32,
        partner_id: t.partner_id.clone(),
        partner_name: t.partner_name.clone(),
        agreed_on: format_date(t.agreed_on),
        return_rate: t.return_rate.map(|r| r.to_string()).unwrap_or_default(),
        return_frequency: match t.return_frequency {
            None => pb::ReturnFrequency::Unspecified,
            Some(ReturnFrequency::Quarterly) => pb::ReturnFrequency::Quarterly,
            Some(ReturnFrequency::Yearly) => pb::ReturnFrequency::Yearly,
        } as i32,
        status: p.status.as_str().to_string(),
        settled_on: p.settled_on.map(format_date).unwrap_or_default(),
        repaid_fen: p.repaid_fen.0,
        repayments: p.repayments,
        members: p
            .members
            .iter()
            .map(|m| pb::PoolMember {
                loan_id: m.loan_id.clone(),
                household_id: m.household_id.clone(),
                transferred_fen: m.transferred_fen.0,
                handed_back_fen: m.handed_back_fen.0,
                held_fen: m.held_fen().0,
                returns_paid_fen: m.returns_paid_fen.0,
                last_return_on: m.last_return_on.map(format_date).unwrap_or_default(),
                participations: m.participations,
                repaid_fen: m.repaid_fen.0,
            })
            .collect(),
    }
}

fn part_to_pb(p: &RepaidPart) -> pb::RepaidPart {
    pb::RepaidPart {
        loan_id: p.loan_id.clone(),
        amount_fen: p.amount_fen.0,
        principal_fen: p.principal_fen.0,
        principal_outstanding_fen: p.principal_outstanding_fen.0,
    }
}
