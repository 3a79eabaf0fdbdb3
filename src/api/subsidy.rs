//! SubsidyService: subsidy registers, a loan's and a ledger's, recomputed
//! ([`crate::app::subsidy`]).

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::audit::spawned_stream;
use super::convert::journal_ref;
use super::error::{invalid, no_contract_by, status, unexpected};
use super::pb::subsidy_service_server::SubsidyService;
use super::{Api, parse, pb};
use crate::app::auth::Principal;
use crate::app::auth::Role;
use crate::app::command::{Command, Outcome};
use crate::app::error::AppError;
use crate::app::listing;
use crate::app::subsidy::{ClaimCheck, LedgerRegisters, LoanSubsidy, check_claim, loan_subsidy};
use crate::collections::HashMap;
use crate::domain::date::{BusinessDate, format_date};
use crate::domain::money::Fen;
use crate::domain::subsidy::PeriodSubsidy;
use crate::domain::subsidy_claim::{
    Claim, ClaimEvent, ClaimLine, ClaimStatus, ClaimTotals, ClaimedLine, Decision, Difference,
    MAX_CLAIM_LINES, Payee, Rejection, check_review_request,
};
use crate::domain::subsidy_register::{LineStanding, RegisterLine};
use crate::store::read::LoanFilter;

/// Days after its review a claim's public notice may open at most (`ReviewSubsidyClaim`'s
/// `notice_from`): the review opens the notice. A review is never undone, so a year mistyped
/// ("2031-04-10" for "2021-04-10") held the claim noticed, unpaid, for ten years, and its
/// approved loan-periods with it. Checked where the request is read, not by the claim's rules,
/// which verify's replay applies to reviews recorded before it.
pub const NOTICE_OPENS_DAYS_MAX: i64 = 30;

/// The response header of `ListSubsidyRegister` that carries the seq it was read through.
pub const THROUGH_SEQ_HEADER: &str = "loanledger-through-seq";

#[tonic::async_trait]
impl SubsidyService for Api {
    async fn get_loan_subsidy(
        &self,
        request: Request<pb::GetLoanSubsidyRequest>,
    ) -> Result<Response<pb::LoanSubsidy>, Status> {
        let actor = self.principal(&request).await?;
        let pb::GetLoanSubsidyRequest { loan_id, as_of, through_seq } = request.into_inner();
        let loan_id = parse::loan_id("loan_id", &loan_id)?;
        let as_of = parse::as_of(&as_of, self.today())?;
        let through_seq = parse::through_seq("through_seq", through_seq)?;
        let ledger_id = self.readable_loan_ledger(&actor, &loan_id).await?;
        let s = loan_subsidy(&self.db, (&loan_id, &ledger_id), as_of, through_seq)
            .await
            .map_err(status)?
            .ok_or_else(|| match through_seq {
                Some(seq) => no_contract_by(&loan_id, None, seq),
                None => Status::not_found(format!("loan {loan_id} not found")),
            })?;
        Ok(Response::new(subsidy_to_pb(&s, as_of)))
    }

    type ListSubsidyRegisterStream = ReceiverStream<Result<pb::LoanSubsidy, Status>>;

    async fn list_subsidy_register(
        &self,
        request: Request<pb::ListSubsidyRegisterRequest>,
    ) -> Result<Response<Self::ListSubsidyRegisterStream>, Status> {
        let (actor, credential) = self.credential(&request).await?;
        let pb::ListSubsidyRegisterRequest {
            ledger_id,
            bank_id,
            due_from,
            due_to,
            as_of,
            through_seq,
        } = request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        let bank_id = parse::optional_id("bank_id", &bank_id)?;
        let due_from = parse::date("due_from", &due_from)?;
        let due_to = parse::date("due_to", &due_to)?;
        if due_to < due_from {
            return Err(invalid("due_to", "must not be before due_from"));
        }
        let as_of = parse::as_of(&as_of, self.today())?;
        let through_seq = parse::through_seq("through_seq", through_seq)?;
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
        let due = due_from..=due_to;
        let registers =
            LedgerRegisters::open(&db, &ledger_id, bank_id.as_deref(), due, as_of, through_seq);
        let mut registers = registers.await.map_err(status)?;
        let through_seq = registers.through_seq();
        let stream = spawned_stream(what, move |tx| async move {
            let read = async {
                let mut first = true;
                loop {
                    // The token checked again before each page but the first.
                    if !std::mem::take(&mut first)
                        && let Err(e) = credential.still_valid().await
                    {
                        let _ = tx.send(Err(e)).await;
                        return Ok(());
                    }
                    let Some(page) = registers.next_page(&db).await? else { break };
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
        // Also in the headers, for an answer without a register to carry it.
        let mut response = Response::new(stream);
        response.metadata_mut().insert(THROUGH_SEQ_HEADER, through_seq.into());
        Ok(response)
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn submit_subsidy_claim(
        &self,
        request: Request<pb::SubmitSubsidyClaimRequest>,
    ) -> Result<Response<pb::SubsidyClaimResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Bank], "SubmitSubsidyClaim")?;
        let pb::SubmitSubsidyClaimRequest {
            request_id,
            bank_id,
            claim_number,
            due_from,
            due_to,
            lines,
            submitted_on,
        } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let bank_id = parse::id("bank_id", &bank_id)?;
        let claim_id = parse::new_claim_id(&bank_id, &claim_number)?;
        let due_from = parse::date("due_from", &due_from)?;
        let due_to = parse::date("due_to", &due_to)?;
        if due_to < due_from {
            return Err(invalid("due_to", "must not be before due_from"));
        }
        let lines = claimed_lines(lines, &(due_from..=due_to))?;
        let submitted_on = parse::value_date("submitted_on", &submitted_on, self.today())?;
        if actor.org != bank_id {
            return Err(Status::permission_denied(format!(
                "{} may not claim subsidies for bank {bank_id}",
                actor.actor()
            )));
        }
        // A retry is answered from its stored answer by the writer, which looks a claim's
        // request id up before anything else (its check is no part of the request's
        // fingerprint): the check of up to 20,000 lines, and what it reads, are not run again for
        // it (since 2026-12-07).
        let key = [(actor.actor(), request_id.clone())];
        let mut retry =
            !self.db.idempotency_read(&key).await.map_err(|e| status(e.into()))?.is_empty();
        let bank = self.db.get_bank(&bank_id).await.map_err(|e| status(e.into()))?;
        let bank = bank.ok_or_else(|| Status::not_found(format!("bank {bank_id} not found")))?;
        // Checked here, on the read pool; should a loan change before the writer takes the
        // claim, it says so and the claim is checked again (a few times at most).
        let mut checks = 1;
        loop {
            let checked = if retry {
                ClaimCheck::default()
            } else {
                check_claim(&self.db, &bank, &lines, (submitted_on, None)).await.map_err(status)?
            };
            let command = Command::SubmitSubsidyClaim {
                claim_id: claim_id.clone(),
                bank_id: bank_id.clone(),
                due_from,
                due_to,
                lines: lines.clone(),
                checked,
                submitted_on,
            };
            let written = self.writer.submit(actor.clone(), request_id.clone(), command).await;
            match written {
                Err(AppError::Stale(why)) if checks < CLAIM_CHECKS_MAX => {
                    // Not a retry after all (its check was wanted): checked from now on.
                    retry = false;
                    tracing::debug!(
                        why,
                        checks,
                        "a claim's loan or policy changed while it was checked"
                    );
                    checks += 1;
                }
                written => {
                    return self.claim_answer(&actor, "submit_subsidy_claim", written).await;
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn review_subsidy_claim(
        &self,
        request: Request<pb::ReviewSubsidyClaimRequest>,
    ) -> Result<Response<pb::SubsidyClaimResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Finance], "ReviewSubsidyClaim")?;
        let pb::ReviewSubsidyClaimRequest {
            request_id,
            claim_id,
            reviewed_on,
            notice_from,
            notice_to,
            rejections,
        } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let reviewed_on = parse::value_date("reviewed_on", &reviewed_on, self.today())?;
        let notice_from = parse::date("notice_from", &notice_from)?;
        if (notice_from - reviewed_on).num_days() > NOTICE_OPENS_DAYS_MAX {
            return Err(invalid(
                "notice_from",
                format!(
                    "is more than {NOTICE_OPENS_DAYS_MAX} days after the review on {}: the \
                     review opens the public notice",
                    format_date(reviewed_on)
                ),
            ));
        }
        if rejections.len() > MAX_CLAIM_LINES {
            return Err(invalid(
                "rejections",
                format!("at most {MAX_CLAIM_LINES}, a claim's most lines"),
            ));
        }
        let rejections: Vec<Rejection> = rejections
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let reason = parse::text(&format!("rejections[{i}].reason"), &r.reason, true)?;
                Ok(Rejection { line: r.line, reason })
            })
            .collect::<Result<_, Status>>()?;
        // What the request alone decides is refused here, unrecorded, so that the request put
        // right goes under the same id (since 2026-12-07: before, a notice opening before the
        // review and a line rejected twice were refused by the writer, recorded).
        check_review_request(reviewed_on, notice_from, &rejections)
            .map_err(|e| status(AppError::Domain(e)))?;
        let step = ClaimEvent::Reviewed {
            claim_id: parse::id("claim_id", &claim_id)?,
            reviewed_on,
            notice_from,
            notice_to: parse::date("notice_to", &notice_to)?,
            rejections,
        };
        self.claim_write(actor, request_id, Command::SubsidyClaimStep { step }).await
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn record_claim_objection(
        &self,
        request: Request<pb::RecordClaimObjectionRequest>,
    ) -> Result<Response<pb::SubsidyClaimResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Finance], "RecordClaimObjection")?;
        let pb::RecordClaimObjectionRequest {
            request_id,
            claim_id,
            objected_on,
            line,
            text,
            upheld,
        } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        // Wrong whatever the claim's state: refused as sent, not recorded, so that the request
        // put right goes under the same id (since 2026-12-07 the writer refused it after the
        // claim's checks and recorded the refusal).
        if upheld && line.is_none() {
            return Err(invalid("upheld", "an objection upheld names the line it rejects"));
        }
        let step = ClaimEvent::Objected {
            claim_id: parse::id("claim_id", &claim_id)?,
            objected_on: parse::value_date("objected_on", &objected_on, self.today())?,
            line,
            text: parse::text("text", &text, true)?,
            upheld,
        };
        self.claim_write(actor, request_id, Command::SubsidyClaimStep { step }).await
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn pay_subsidy_claim(
        &self,
        request: Request<pb::PaySubsidyClaimRequest>,
    ) -> Result<Response<pb::SubsidyClaimResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Finance], "PaySubsidyClaim")?;
        let pb::PaySubsidyClaimRequest {
            request_id,
            claim_id,
            paid_on,
            voucher,
            amount_fen,
            payee,
        } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let step = ClaimEvent::Paid {
            claim_id: parse::id("claim_id", &claim_id)?,
            paid_on: parse::value_date("paid_on", &paid_on, self.today())?,
            voucher: parse::text("voucher", &voucher, true)?,
            amount_fen: parse::non_negative_fen("amount_fen", amount_fen)?,
            payee: match parse::enumeration::<pb::ClaimPayee>("payee", payee)? {
                pb::ClaimPayee::Households => Payee::Households,
                _ => Payee::Bank,
            },
            // The writer's: lines whose loan is marked misused by now, and whether the bank
            // owes the households their lines' parts.
            withheld: Vec::new(),
            owes_households: false,
        };
        self.claim_write(actor, request_id, Command::SubsidyClaimStep { step }).await
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn claw_back_subsidy(
        &self,
        request: Request<pb::ClawBackSubsidyRequest>,
    ) -> Result<Response<pb::SubsidyClaimResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Finance], "ClawBackSubsidy")?;
        let pb::ClawBackSubsidyRequest {
            request_id,
            claim_id,
            line,
            clawed_back_on,
            reason,
            amount_fen,
        } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let step = ClaimEvent::ClawedBack {
            claim_id: parse::id("claim_id", &claim_id)?,
            clawed_back_on: parse::value_date("clawed_back_on", &clawed_back_on, self.today())?,
            line,
            reason: parse::text("reason", &reason, true)?,
            // A line paid nothing is never clawed back: 0 refused as sent (since 2026-12-07
            // the writer refused it after the claim's checks and recorded the refusal).
            amount_fen: parse::positive_fen("amount_fen", amount_fen)?,
            loan_id: None,
        };
        self.claim_write(actor, request_id, Command::SubsidyClaimStep { step }).await
    }

    async fn list_subsidy_claims(
        &self,
        request: Request<pb::ListSubsidyClaimsRequest>,
    ) -> Result<Response<pb::ListSubsidyClaimsResponse>, Status> {
        let actor = self.principal(&request).await?;
        let pb::ListSubsidyClaimsRequest {
            ledger_id,
            bank_id,
            status: wanted,
            page_size,
            page_token,
        } = request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        let bank_id = parse::optional_id("bank_id", &bank_id)?;
        let wanted = match pb::SubsidyClaimStatus::try_from(wanted) {
            Ok(pb::SubsidyClaimStatus::Unspecified) => "",
            Ok(pb::SubsidyClaimStatus::Submitted) => ClaimStatus::Submitted.as_str(),
            Ok(pb::SubsidyClaimStatus::Noticed) => ClaimStatus::Noticed.as_str(),
            Ok(pb::SubsidyClaimStatus::Paid) => ClaimStatus::Paid.as_str(),
            Err(_) => return Err(invalid("status", format!("{wanted} is no claim status"))),
        };
        self.check_bank_scope(
            &actor,
            &ledger_id,
            bank_id.as_deref(),
            Principal::reads_ledger,
            ("lists only its own claims", "list the subsidy claims of ledger"),
        )
        .await?;
        let filter = LoanFilter {
            ledger_id: Some(ledger_id.clone()),
            bank_id: bank_id.clone(),
            ..LoanFilter::default()
        };
        let query =
            listing::query_key(&format!("{}\nclaims\n{wanted}", actor.actor()), &filter, None);
        let after = super::after_page_token(&page_token, &query)?;
        let page_size = super::page_size_or_default(page_size);
        let bank = bank_id.as_deref().unwrap_or_default();
        let claims = self.db.list_claims(&ledger_id, (bank, wanted), after, page_size).await;
        let claims = claims.map_err(|e| status(e.into()))?;
        let last = (claims.len() == page_size as usize).then(|| claims.last()).flatten();
        let next_page_token =
            listing::page_token_after(last.map(|(c, _)| c.claim.claim_id.as_str()), &query);
        // (A listed claim's summary has no lines: none is given.)
        let no_lines = LinesPage::first(&actor, "");
        let claims = claims
            .iter()
            .map(|(c, seq)| claim_to_pb(&c.claim, &c.totals, *seq, &no_lines))
            .collect();
        Ok(Response::new(pb::ListSubsidyClaimsResponse { claims, next_page_token }))
    }

    async fn get_subsidy_claim(
        &self,
        request: Request<pb::GetSubsidyClaimRequest>,
    ) -> Result<Response<pb::SubsidyClaim>, Status> {
        let actor = self.principal(&request).await?;
        let pb::GetSubsidyClaimRequest { claim_id, lines_page_size, lines_page_token } =
            request.into_inner();
        let claim_id = parse::id("claim_id", &claim_id)?;
        let page = LinesPage::asked(&actor, &claim_id, lines_page_size, &lines_page_token)?;
        let claim = self.db.subsidy_claim(&claim_id).await.map_err(|e| status(e.into()))?;
        // A claim outside the caller's books is answered as a missing one.
        match claim {
            Some((claim, submitted_seq)) if actor.reads_loan(&claim.bank_id, &claim.ledger_id) => {
                Ok(Response::new(claim_to_pb(&claim, &claim.totals(), submitted_seq, &page)))
            }
            _ => Err(Status::not_found(format!("subsidy claim {claim_id} not found"))),
        }
    }
}

impl Api {
    /// Hands a claim's command to the writer and answers with the claim: as recorded, or as it
    /// stands for a retry (its idempotency record keeps the claim's id, not its lines).
    async fn claim_write(
        &self,
        actor: Principal,
        request_id: String,
        command: Command,
    ) -> Result<Response<pb::SubsidyClaimResponse>, Status> {
        let what = command.name();
        let written = self.writer.submit(actor.clone(), request_id, command).await;
        self.claim_answer(&actor, what, written).await
    }

    /// The answer to a claim's write: the claim as recorded, or as it stands for a retry, with
    /// its first page of lines.
    async fn claim_answer(
        &self,
        actor: &Principal,
        what: &str,
        written: Result<Outcome, AppError>,
    ) -> Result<Response<pb::SubsidyClaimResponse>, Status> {
        let missing = |claim_id: &str| {
            status(AppError::Internal(format!("claim {claim_id} answered, not found")))
        };
        let (claim, submitted_seq, entry) = match written.map_err(status)? {
            Outcome::SubsidyClaim { claim, entry, submitted_seq } => (*claim, submitted_seq, entry),
            Outcome::SubsidyClaimRef { claim_id, entry } => {
                let claim = self.db.subsidy_claim(&claim_id).await;
                let (claim, seq) =
                    claim.map_err(|e| status(e.into()))?.ok_or_else(|| missing(&claim_id))?;
                (claim, seq, entry)
            }
            _ => return Err(unexpected(what)),
        };
        let page = LinesPage::first(actor, &claim.claim_id);
        Ok(Response::new(pb::SubsidyClaimResponse {
            claim: Some(claim_to_pb(&claim, &claim.totals(), submitted_seq, &page)),
            entry: Some(journal_ref(&entry)),
        }))
    }
}

/// How many times a claim is checked against its loans, at most, when they keep changing
/// while it is.
const CLAIM_CHECKS_MAX: u32 = 3;

/// A bank's claim as submitted, its lines parsed (each field named `lines[i].<field>`).
fn claimed_lines(
    lines: Vec<pb::ClaimedSubsidyLine>,
    due: &std::ops::RangeInclusive<BusinessDate>,
) -> Result<Vec<ClaimedLine>, Status> {
    if lines.is_empty() {
        return Err(invalid("lines", "at least one line is required"));
    }
    if lines.len() > MAX_CLAIM_LINES {
        return Err(invalid("lines", format!("at most {MAX_CLAIM_LINES} lines a claim")));
    }
    let mut seen: HashMap<(String, BusinessDate), usize> = HashMap::default();
    let mut parsed = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        let field = |name: &str| format!("lines[{i}].{name}");
        let due_date = parse::date(&field("due_date"), &line.due_date)?;
        if !due.contains(&due_date) {
            let message = format!(
                "must be within the claim's period, {} to {}",
                format_date(*due.start()),
                format_date(*due.end())
            );
            return Err(invalid(&field("due_date"), &message));
        }
        let claimed = ClaimedLine {
            loan_id: parse::loan_id(&field("loan_id"), &line.loan_id)?,
            due_date,
            interest_paid_fen: parse::non_negative_fen(
                &field("interest_paid_fen"),
                line.interest_paid_fen,
            )?,
            subsidy_fen: parse::non_negative_fen(&field("subsidy_fen"), line.subsidy_fen)?,
            principal_fen: match line.principal_fen {
                0 => None,
                fen => Some(parse::positive_fen(&field("principal_fen"), fen)?),
            },
            annual_rate: match line.annual_rate.as_str() {
                "" => None,
                rate => Some(parse::rate(&field("annual_rate"), rate)?),
            },
            days: (line.days > 0).then_some(line.days),
            jishu: match line.jishu {
                0 => None,
                j if j < 0 => return Err(invalid(&field("jishu"), "must not be negative")),
                j => Some(j),
            },
            // (Trimmed, as a fixed-width file pads them.)
            household_id: parse::optional_id(&field("household_id"), line.household_id.trim())?,
            township: parse::optional_text(&field("township"), &line.township)?,
            village: parse::optional_text(&field("village"), &line.village)?,
            period_start: parse::optional_date(&field("period_start"), line.period_start.trim())?,
        };
        if let Some(first) = seen.insert((claimed.loan_id.clone(), due_date), i) {
            let message = format!("claims the loan-period of lines[{first}] again");
            return Err(invalid(&format!("lines[{i}]"), &message));
        }
        parsed.push(claimed);
    }
    Ok(parsed)
}

/// A claim's lines given at most in one answer (since 2026-12-08; every line was given, and
/// an answer of 20,000 lines stating every column the bank may state, about 230 bytes a line,
/// passed the 4 MiB that gRPC clients take by default: the claim recorded, its answer and every
/// read of it failed in the client).
pub const CLAIM_LINES_PAGE: usize = 1_000;

/// Which of a claim's lines an answer gives: from `first`, at most `size`, the next page's
/// token bound to the caller and the claim (`key`, as a listing's: another caller's or
/// another claim's token is refused).
struct LinesPage {
    first: usize,
    size: usize,
    key: String,
}

impl LinesPage {
    /// The first page, a write's answer's.
    fn first(actor: &Principal, claim_id: &str) -> Self {
        Self { first: 0, size: CLAIM_LINES_PAGE, key: lines_key(actor, claim_id) }
    }

    /// The page `GetSubsidyClaim` asks for.
    fn asked(actor: &Principal, claim_id: &str, size: u32, token: &str) -> Result<Self, Status> {
        let key = lines_key(actor, claim_id);
        let first = match token {
            "" => 0,
            token => {
                let field = "lines_page_token";
                let index =
                    listing::token_after_id(token, &key).map_err(|why| invalid(field, why))?;
                index.parse().map_err(|_| invalid(field, "is not a token this service issued"))?
            }
        };
        let size = match size as usize {
            0 => CLAIM_LINES_PAGE,
            n => n.min(CLAIM_LINES_PAGE),
        };
        Ok(Self { first, size, key })
    }

    /// The lines of a claim of `count` given, and the next page's token (empty: none follows).
    fn of(&self, count: usize) -> (std::ops::Range<usize>, String) {
        let start = self.first.min(count);
        let end = start.saturating_add(self.size).min(count);
        let next = (end < count).then(|| end.to_string());
        (start..end, listing::page_token_after(next.as_deref(), &self.key))
    }
}

/// What a claim's lines' page token is bound to: the caller and the claim.
fn lines_key(actor: &Principal, claim_id: &str) -> String {
    let query = format!("{}\nclaim lines\n{claim_id}", actor.actor());
    listing::query_key(&query, &LoanFilter::default(), None)
}

/// A claim as answered, with its sums (`totals`: its lines', which a summary's claim has not)
/// and the page of its lines `page` names.
fn claim_to_pb(
    claim: &Claim,
    totals: &ClaimTotals,
    submitted_seq: u64,
    page: &LinesPage,
) -> pb::SubsidyClaim {
    let (lines, next_lines_token) = page.of(claim.lines.len());
    let status = match claim.status {
        ClaimStatus::Submitted => pb::SubsidyClaimStatus::Submitted,
        ClaimStatus::Noticed => pb::SubsidyClaimStatus::Noticed,
        ClaimStatus::Paid => pb::SubsidyClaimStatus::Paid,
    };
    let review = claim.review.as_ref();
    let date = |d: Option<BusinessDate>| d.map(format_date).unwrap_or_default();
    pb::SubsidyClaim {
        submitted_seq,
        claim_id: claim.claim_id.clone(),
        ledger_id: claim.ledger_id.clone(),
        bank_id: claim.bank_id.clone(),
        due_from: format_date(claim.due_from),
        due_to: format_date(claim.due_to),
        submitted_on: format_date(claim.submitted_on),
        status: status.into(),
        line_count: u32::try_from(claim.lines.len()).unwrap_or(u32::MAX),
        first_line: u32::try_from(lines.start).unwrap_or(u32::MAX),
        lines: claim.lines[lines].iter().map(claim_line_to_pb).collect(),
        next_lines_token,
        claimed_fen: totals.claimed_fen,
        recomputed_fen: totals.recomputed_fen,
        payable_fen: totals.payable_fen,
        differing_lines: totals.differing_lines,
        approved_fen: totals.approved_fen,
        clawed_back_fen: totals.clawed_back_fen,
        subsidy_netted_fen: totals.netted_fen,
        reviewed_on: date(review.map(|r| r.reviewed_on)),
        notice_from: date(review.map(|r| r.notice_from)),
        notice_to: date(review.map(|r| r.notice_to)),
        objections: claim
            .objections
            .iter()
            .map(|o| pb::ClaimObjection {
                objected_on: format_date(o.objected_on),
                line: o.line,
                text: o.text.clone(),
                upheld: o.upheld,
            })
            .collect(),
        payment: claim.payment.as_ref().map(|p| pb::ClaimPayment {
            paid_on: format_date(p.paid_on),
            voucher: p.voucher.clone(),
            amount_fen: p.amount_fen.0,
            payee: match p.payee {
                Payee::Bank => pb::ClaimPayee::Bank,
                Payee::Households => pb::ClaimPayee::Households,
            }
            .into(),
        }),
    }
}

fn claim_line_to_pb(l: &ClaimLine) -> pb::SubsidyClaimLine {
    let difference = |d: &Difference| {
        let d = match d {
            Difference::NotInRegister => pb::ClaimDifference::NotInRegister,
            Difference::NotOnTime => pb::ClaimDifference::NotOnTime,
            Difference::InterestDiffers => pb::ClaimDifference::InterestDiffers,
            Difference::SubsidyDiffers => pb::ClaimDifference::SubsidyDiffers,
            Difference::AlreadyClaimed => pb::ClaimDifference::AlreadyClaimed,
            Difference::PrincipalDiffers => pb::ClaimDifference::PrincipalDiffers,
            Difference::RateDiffers => pb::ClaimDifference::RateDiffers,
            Difference::DaysDiffers => pb::ClaimDifference::DaysDiffers,
            Difference::JishuDiffers => pb::ClaimDifference::JishuDiffers,
            Difference::HouseholdDiffers => pb::ClaimDifference::HouseholdDiffers,
            Difference::TownshipDiffers => pb::ClaimDifference::TownshipDiffers,
            Difference::VillageDiffers => pb::ClaimDifference::VillageDiffers,
            Difference::PeriodStartDiffers => pb::ClaimDifference::PeriodStartDiffers,
            Difference::HouseholdNotEligible => pb::ClaimDifference::HouseholdNotEligible,
        };
        i32::from(d)
    };
    pb::SubsidyClaimLine {
        claimed: Some(pb::ClaimedSubsidyLine {
            loan_id: l.claimed.loan_id.clone(),
            due_date: format_date(l.claimed.due_date),
            interest_paid_fen: l.claimed.interest_paid_fen.0,
            subsidy_fen: l.claimed.subsidy_fen.0,
            principal_fen: l.claimed.principal_fen.map_or(0, |p| p.0),
            annual_rate: l.claimed.annual_rate.map(|r| r.to_string()).unwrap_or_default(),
            days: l.claimed.days.unwrap_or(0),
            jishu: l.claimed.jishu.unwrap_or(0),
            household_id: l.claimed.household_id.clone().unwrap_or_default(),
            township: l.claimed.township.clone().unwrap_or_default(),
            village: l.claimed.village.clone().unwrap_or_default(),
            period_start: l.claimed.period_start.map(format_date).unwrap_or_default(),
        }),
        household_id: l.household_id.clone(),
        township: l.township.clone(),
        village: l.village.clone(),
        principal_fen: l.principal_fen.0,
        recomputed: l.recomputed.as_ref().map(|r| pb::SubsidyClaimRecomputed {
            period_start: format_date(r.start),
            period_end: format_date(r.end_inclusive),
            interest_settled_fen: r.settled_fen.0,
            interest_paid_on_time_fen: r.paid_on_time_fen.0,
            subsidy_fen: r.subsidy_fen.0,
            standing: standing_to_pb(r.standing).into(),
            days: r.days,
            jishu: r.jishu,
            subsidy_netted_fen: r.netted_fen.0,
        }),
        differences: l.differences.iter().map(difference).collect(),
        claimed_by: l.claimed_by.clone().unwrap_or_default(),
        payable_fen: l.payable_fen().0,
        decision: match &l.decision {
            None => pb::ClaimLineDecision::Unspecified,
            Some(Decision::Approved) => pb::ClaimLineDecision::Approved,
            Some(Decision::Rejected { .. }) => pb::ClaimLineDecision::Rejected,
        }
        .into(),
        rejected_because: match &l.decision {
            Some(Decision::Rejected { reason }) => reason.clone(),
            _ => String::new(),
        },
        clawback: l.clawback.as_ref().map(|c| pb::ClaimClawback {
            clawed_back_on: format_date(c.clawed_back_on),
            reason: c.reason.clone(),
            amount_fen: c.amount_fen.0,
        }),
    }
}

/// A register as answered: its lines, and their sums.
fn subsidy_to_pb(s: &LoanSubsidy, as_of: BusinessDate) -> pb::LoanSubsidy {
    let sum = |f: fn(&RegisterLine) -> i64| s.lines.iter().map(f).fold(0i64, i64::saturating_add);
    pb::LoanSubsidy {
        through_seq: s.through_seq,
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
        subsidy_netted_fen: sum(|l| l.netted_fen.0),
        lines: s.lines.iter().map(line_to_pb).collect(),
    }
}

fn standing_to_pb(standing: LineStanding) -> pb::SubsidyStanding {
    match standing {
        LineStanding::OnTime => pb::SubsidyStanding::OnTime,
        LineStanding::PaidLate => pb::SubsidyStanding::PaidLate,
        LineStanding::Overdue => pb::SubsidyStanding::Overdue,
        LineStanding::WrittenOff => pb::SubsidyStanding::WrittenOff,
        LineStanding::NotYetDue => pb::SubsidyStanding::NotYetDue,
        LineStanding::Misuse => pb::SubsidyStanding::Misuse,
    }
}

fn line_to_pb(l: &RegisterLine) -> pb::SubsidyLine {
    let standing = standing_to_pb(l.standing);
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
        subsidy_netted_fen: l.netted_fen.0,
        subsidy_if_paid_on_time_fen: l.subsidy_if_paid_on_time.map_or(0, |f| f.0),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A write's answer gives a claim's first 1,000 lines and the token of the next; the pages
    /// that token starts follow on to the last, which has none; a token of another caller or
    /// claim is refused, naming the field.
    #[test]
    fn a_claims_lines_come_a_page_at_a_time() {
        let bank = Principal { role: Role::Bank, org: "B1".into() };
        let (lines, token) = LinesPage::first(&bank, "B1-Q1").of(2_500);
        assert_eq!(lines, 0..CLAIM_LINES_PAGE);
        let next = LinesPage::asked(&bank, "B1-Q1", 0, &token).expect("its token");
        let (lines, token) = next.of(2_500);
        assert_eq!(lines, 1_000..2_000);
        let last = LinesPage::asked(&bank, "B1-Q1", 5_000, &token).expect("its token");
        assert_eq!(last.of(2_500), (2_000..2_500, String::new()), "at most a page; the last");
        assert_eq!(LinesPage::first(&bank, "B1-Q1").of(3), (0..3, String::new()));
        let (lines, token) = LinesPage::asked(&bank, "B1-Q1", 1, "").expect("one line").of(3);
        assert_eq!(lines, 0..1);
        let past = LinesPage::asked(&bank, "B1-Q1", 1, &token).expect("its token").of(0);
        assert_eq!(past, (0..0, String::new()), "a claim with fewer lines than the token names");
        let finance = Principal { role: Role::Finance, org: "450121".into() };
        for (actor, claim) in [(&finance, "B1-Q1"), (&bank, "B1-Q2")] {
            let refused = LinesPage::asked(actor, claim, 0, &token).err().expect("refused");
            assert!(refused.message().contains("lines_page_token"), "{refused:?}");
        }
    }
}
