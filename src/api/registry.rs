//! RegistryService: ledgers, banks, households, policy and the LPR table.

use tonic::{Request, Response, Status};

use super::convert::*;
use super::error::unexpected;
use super::error::{invalid, status};
use super::pb::registry_service_server::RegistryService;
use super::{Api, parse, pb};
use crate::app::auth::{self, Role};
use crate::app::backup;
use crate::app::command::{Command, Outcome};
use crate::app::error::AppError;
use crate::app::{households, listing};
use crate::domain::date::format_date;
use crate::domain::event::HouseholdRecord;
use crate::domain::household::StatusEntry;
use crate::domain::lpr::{LPR_LEDGER, LprEntry};
use crate::domain::policy::{PolicyVersion, in_force_by_date_recorded};
use crate::domain::rate::AnnualRate;
use crate::store::read::LoanFilter;
use crate::store::rows::TokenListRow;
use rust_decimal::Decimal;

/// The query key of an operator's listing (`what`: tokens, backups) that its page tokens are
/// bound to.
fn list_query(actor: &auth::Principal, what: &str) -> String {
    listing::query_key(&format!("{}\n{what}", actor.actor()), &LoanFilter::default(), None)
}

/// A backup's manifest, its copy's path in the backup directory `dir`.
fn manifest_to_pb(m: &backup::Manifest, dir: &std::path::Path) -> pb::BackupManifest {
    pb::BackupManifest {
        name: m.name.clone(),
        request_id: m.request_id.clone(),
        backend: m.backend.clone(),
        path: dir.join(&m.file).display().to_string(),
        taken_at: Some(timestamp_of_us(m.taken_at_us)),
        size_bytes: m.size_bytes,
        sha256: m.sha256.clone(),
        heads: m
            .heads
            .iter()
            .map(|h| pb::ChainHead {
                ledger_id: h.ledger_id.clone(),
                seq: h.seq,
                hash: h.hash.clone(),
            })
            .collect(),
    }
}

/// A token as the operator sees it (never its secret or hash).
fn token_to_pb(t: &TokenListRow) -> pb::ApiToken {
    let role = match Role::parse(&t.role) {
        Some(Role::Bank) => pb::TokenRole::Bank,
        Some(Role::Finance) => pb::TokenRole::Finance,
        Some(Role::Auditor) => pb::TokenRole::Auditor,
        Some(Role::Operator) => pb::TokenRole::Operator,
        None => pb::TokenRole::Unspecified,
    };
    pb::ApiToken {
        token_id: t.token_id.clone(),
        role: role as i32,
        org: t.org.clone(),
        created_at: Some(timestamp_of_us(t.created_at_us)),
        revoked_at: t.revoked_at_us.map(timestamp_of_us),
        expires_at: t.expires_at_us.map(timestamp_of_us),
    }
}

fn deny(message: &str) -> Status {
    Status::permission_denied(message.to_string())
}

impl Api {
    /// [`in_force_by_date_recorded`] of the ledger's versions recorded up to `through_seq`
    /// (`None`: all). Every ledger is created with its default versions: none, no such ledger
    /// (as `GetLedger` answers it), or none recorded by the seq.
    async fn policies_by_date(
        &self,
        ledger_id: &str,
        through_seq: Option<u64>,
    ) -> Result<Vec<(PolicyVersion, u64)>, Status> {
        let recorded = self.db.policies_through(ledger_id, through_seq).await;
        let recorded = recorded.map_err(|e| status(e.into()))?;
        if recorded.is_empty() {
            let exists = match through_seq {
                Some(_) => self.db.ledger_exists(ledger_id).await.map_err(|e| status(e.into()))?,
                None => false,
            };
            return Err(match through_seq {
                Some(seq) if exists => {
                    Status::not_found(format!("ledger {ledger_id} had no policy by seq {seq}"))
                }
                _ => Status::not_found(format!("ledger {ledger_id} not found")),
            });
        }
        Ok(in_force_by_date_recorded(&recorded))
    }
}

/// The operator's writes, by where each keeps its request ids: the journal's idempotency
/// records (`CreateLedger`, `RegisterBank`, `SetLpr`), the tokens made (`CreateToken`), the
/// revocations (`RevokeToken`) and the backups' manifests (`Backup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OperatorWrite {
    Journal,
    Token,
    Revocation,
    Backup,
}

impl Api {
    /// Refuses an operator's `request_id` that a write of another kind has used: a request id
    /// is one caller's, whatever the call (DESIGN.md: same id, other content, `ALREADY_EXISTS`
    /// `REQUEST_ID_REUSED`). Since 2026-12-07: each store saw its own kind of call only, and
    /// an id of `CreateLedger` sent again with `CreateToken` made a token. Other roles' writes
    /// all go through the journal's records.
    async fn operator_request_free(
        &self,
        actor: &crate::app::auth::Principal,
        request_id: &str,
        own: OperatorWrite,
    ) -> Result<(), Status> {
        if actor.role != Role::Operator {
            return Ok(());
        }
        let reused = || Err(status(AppError::RequestIdReused(request_id.to_string())));
        let key = [(actor.actor(), request_id.to_string())];
        if own != OperatorWrite::Journal
            && !self.db.idempotency_read(&key).await.map_err(|e| status(e.into()))?.is_empty()
        {
            return reused();
        }
        let (made, revoked) =
            self.db.token_requests_used(request_id).await.map_err(|e| status(e.into()))?;
        if (made && own != OperatorWrite::Token) || (revoked && own != OperatorWrite::Revocation) {
            return reused();
        }
        // A backup directory that cannot be read (a file in its place, a mount gone) takes no
        // backups, and so holds no request id to keep: it does not stop the operator's other
        // writes (since 2026-12-07 they were all `INTERNAL`, `RevokeToken` of a leaked token
        // too). A `Backup` under such an id then finds it used by the write.
        if own != OperatorWrite::Backup
            && let Some(backups) = &self.backups
        {
            match backup::request_used(&backups.settings, request_id).await {
                Ok(true) => return reused(),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    dir = %backups.settings.dir.display(),
                    error = %e,
                    "the backup directory cannot be read: its request ids are not checked"
                ),
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl RegistryService for Api {
    #[tracing::instrument(skip_all, fields(request_id))]
    async fn create_ledger(
        &self,
        request: Request<pb::CreateLedgerRequest>,
    ) -> Result<Response<pb::CreateLedgerResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Operator], "CreateLedger")?;
        let pb::CreateLedgerRequest { request_id, ledger_id, name } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        if ledger_id == LPR_LEDGER {
            return Err(invalid("ledger_id", "lpr is reserved: it names the LPR table's chain"));
        }
        let command = Command::CreateLedger { ledger_id, name: parse::text("name", &name, true)? };
        self.operator_request_free(&actor, &request_id, OperatorWrite::Journal).await?;
        match self.writer.submit(actor, request_id, command).await.map_err(status)? {
            Outcome::Ledger { ledger_id, name, entry } => {
                Ok(Response::new(pb::CreateLedgerResponse {
                    ledger: Some(pb::Ledger { ledger_id, name }),
                    entry: Some(journal_ref(&entry)),
                }))
            }
            _ => Err(unexpected("create_ledger")),
        }
    }

    async fn get_ledger(
        &self,
        request: Request<pb::GetLedgerRequest>,
    ) -> Result<Response<pb::Ledger>, Status> {
        let _actor = self.principal(&request).await?;
        let pb::GetLedgerRequest { ledger_id } = request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        let row = self
            .db
            .get_ledger(&ledger_id)
            .await
            .map_err(|e| status(e.into()))?
            .ok_or_else(|| Status::not_found(format!("ledger {ledger_id} not found")))?;
        Ok(Response::new(pb::Ledger { ledger_id: row.ledger_id, name: row.name }))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn register_bank(
        &self,
        request: Request<pb::RegisterBankRequest>,
    ) -> Result<Response<pb::RegisterBankResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Operator, Role::Finance], "RegisterBank")?;
        let pb::RegisterBankRequest { request_id, ledger_id, bank_id, name } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let command = Command::RegisterBank {
            ledger_id: parse::id("ledger_id", &ledger_id)?,
            bank_id: parse::bank_id("bank_id", &bank_id)?,
            name: parse::text("name", &name, true)?,
        };
        self.operator_request_free(&actor, &request_id, OperatorWrite::Journal).await?;
        match self.writer.submit(actor, request_id, command).await.map_err(status)? {
            Outcome::Bank { bank_id, ledger_id, name, entry } => {
                Ok(Response::new(pb::RegisterBankResponse {
                    bank: Some(pb::Bank { bank_id, ledger_id, name }),
                    entry: Some(journal_ref(&entry)),
                }))
            }
            _ => Err(unexpected("register_bank")),
        }
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn register_household(
        &self,
        request: Request<pb::RegisterHouseholdRequest>,
    ) -> Result<Response<pb::RegisterHouseholdResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Finance], "RegisterHousehold")?;
        let full_ids = actor.sees_full_ids();
        let pb::RegisterHouseholdRequest {
            request_id,
            ledger_id,
            household_id,
            head_name,
            head_id_number,
            township,
            village,
            status: household_status,
            status_effective_date,
        } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let id_number = parse::id_number("head_id_number", &head_id_number, self.today())?;
        let command = Command::RegisterHousehold {
            household: HouseholdRecord {
                household_id: parse::id("household_id", &household_id)?,
                ledger_id: parse::id("ledger_id", &ledger_id)?,
                head_name: parse::text("head_name", &head_name, true)?,
                head_id_number: id_number.as_str().to_string(),
                township: parse::text("township", &township, false)?,
                village: parse::text("village", &village, false)?,
            },
            status: StatusEntry {
                status: household_status_from_pb("status", household_status)?,
                // Not ahead, as a loan's value date: a household registered from years ahead
                // (2062 typed for 2026) is unregistered, unlendable, until then.
                effective_date: parse::value_date(
                    "status_effective_date",
                    &status_effective_date,
                    self.today(),
                )?,
                reason: String::new(),
            },
        };
        match self.writer.submit(actor, request_id, command).await.map_err(status)? {
            Outcome::Household { household, statuses, entry } => {
                Ok(Response::new(pb::RegisterHouseholdResponse {
                    household: Some(household_to_pb(&household, &statuses, full_ids)),
                    entry: Some(journal_ref(&entry)),
                }))
            }
            _ => Err(unexpected("register_household")),
        }
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn set_household_status(
        &self,
        request: Request<pb::SetHouseholdStatusRequest>,
    ) -> Result<Response<pb::SetHouseholdStatusResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Finance], "SetHouseholdStatus")?;
        let full_ids = actor.sees_full_ids();
        let pb::SetHouseholdStatusRequest {
            request_id,
            household_id,
            status: household_status,
            effective_date,
            reason,
        } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let command = Command::SetHouseholdStatus {
            household_id: parse::id("household_id", &household_id)?,
            entry: StatusEntry {
                status: household_status_from_pb("status", household_status)?,
                // As a registration's status date: 2062 typed for 2026 would make the
                // household unlendable until then (since 2026-12-07).
                effective_date: parse::value_date("effective_date", &effective_date, self.today())?,
                reason: parse::text("reason", &reason, false)?,
            },
        };
        match self.writer.submit(actor, request_id, command).await.map_err(status)? {
            Outcome::Household { household, statuses, entry } => {
                let made_ineligible = households::contracts_made_ineligible(
                    &self.db, &household, &statuses, entry.seq,
                )
                .await
                .map_err(status)?;
                Ok(Response::new(pb::SetHouseholdStatusResponse {
                    household: Some(household_to_pb(&household, &statuses, full_ids)),
                    entry: Some(journal_ref(&entry)),
                    contracts_made_ineligible: made_ineligible,
                }))
            }
            _ => Err(unexpected("set_household_status")),
        }
    }

    async fn get_household(
        &self,
        request: Request<pb::GetHouseholdRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let actor = self.principal(&request).await?;
        let pb::GetHouseholdRequest { household_id } = request.into_inner();
        let household_id = parse::id("household_id", &household_id)?;
        // The operator reads no household: refused before the lookup, so that its answer is the
        // same whether the household exists or not.
        if actor.role == Role::Operator {
            return Err(deny("the operator reads no household"));
        }
        let stored = self
            .db
            .get_household(&household_id)
            .await
            .map_err(|e| status(e.into()))?
            .ok_or_else(|| Status::not_found(format!("household {household_id} not found")))?;
        // Banks look households up to check eligibility before they contract; they see the
        // household of any ledger in which they lend, with the identity number masked.
        let allowed = match actor.role {
            Role::Bank => match self.db.get_bank(&actor.org).await.map_err(|e| status(e.into()))? {
                Some(bank) => bank.ledger_id == stored.ledger_id,
                None => false,
            },
            _ => actor.reads_ledger(&stored.ledger_id),
        };
        if !allowed {
            // As a missing one: a bank does not learn whether a household outside the ledger
            // it lends in exists, nor a finance office or an auditor one outside theirs (as a
            // loan outside the caller's books is answered). The operator was refused above.
            return Err(Status::not_found(format!("household {household_id} not found")));
        }
        // Decoded once the caller may read it: a row that cannot be is a fault for those who
        // may, and a missing household for those who may not (above).
        let view = stored.row.map_err(|e| status(e.into()))?;
        Ok(Response::new(household_view_to_pb(&view, actor.sees_full_ids())))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn set_policy(
        &self,
        request: Request<pb::SetPolicyRequest>,
    ) -> Result<Response<pb::SetPolicyResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Finance], "SetPolicy")?;
        let pb::SetPolicyRequest { request_id, ledger_id, effective_date, params } =
            request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let params = params.ok_or_else(|| invalid("params", "is required"))?;
        let command = Command::SetPolicy {
            ledger_id: parse::id("ledger_id", &ledger_id)?,
            version: PolicyVersion {
                effective_date: parse::date("effective_date", &effective_date)?,
                params: policy_params_from_pb(params)?,
            },
        };
        match self.writer.submit(actor, request_id, command).await.map_err(status)? {
            Outcome::Policy { ledger_id, version, entry } => {
                Ok(Response::new(pb::SetPolicyResponse {
                    policy: Some(policy_to_pb(&ledger_id, &version, entry.seq)),
                    entry: Some(journal_ref(&entry)),
                }))
            }
            _ => Err(unexpected("set_policy")),
        }
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::PolicyVersion>, Status> {
        let _actor = self.principal(&request).await?;
        let pb::GetPolicyRequest { ledger_id, as_of, through_seq } = request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        let as_of = parse::optional_date("as_of", &as_of)?.unwrap_or_else(|| self.today());
        let through_seq = parse::through_seq("through_seq", through_seq)?;
        let by_date = self.policies_by_date(&ledger_id, through_seq).await?;
        let (version, seq) = by_date
            .into_iter()
            .take_while(|(v, _)| v.effective_date <= as_of)
            .last()
            .ok_or_else(|| {
                Status::not_found(format!("no policy of ledger {ledger_id} is in force on {as_of}"))
            })?;
        Ok(Response::new(policy_to_pb(&ledger_id, &version, seq)))
    }

    async fn list_policies(
        &self,
        request: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let actor = self.principal(&request).await?;
        let pb::ListPoliciesRequest { ledger_id, through_seq, page_size, page_token } =
            request.into_inner();
        let ledger_id = parse::id("ledger_id", &ledger_id)?;
        let through_seq = parse::through_seq("through_seq", through_seq)?;
        let by_date = self.policies_by_date(&ledger_id, through_seq).await?;
        // One version a date: its date is its key.
        let query = list_query(&actor, &format!("policies\n{ledger_id}\n{through_seq:?}"));
        let date = |(v, _): &(PolicyVersion, u64)| format_date(v.effective_date);
        let (page, next_page_token) =
            super::page_in_memory(by_date, date, (page_size, &page_token), &query)?;
        Ok(Response::new(pb::ListPoliciesResponse {
            versions: page.iter().map(|(v, seq)| policy_to_pb(&ledger_id, v, *seq)).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn set_lpr(
        &self,
        request: Request<pb::SetLprRequest>,
    ) -> Result<Response<pb::SetLprResponse>, Status> {
        let actor = self.principal(&request).await?;
        if !actor.is_operator() {
            return Err(deny("only an operator may change the LPR table"));
        }
        let pb::SetLprRequest { request_id, entry } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let pb::LprEntry { effective_date, tenor, rate } =
            entry.ok_or_else(|| invalid("entry", "is required"))?;
        let command = Command::SetLpr {
            entry: LprEntry {
                // An entry is never changed once set: one dated years ahead by a typing error
                // would name the rate of every contract from then (since 2026-12-07).
                effective_from: parse::value_date(
                    "entry.effective_date",
                    &effective_date,
                    self.today(),
                )?,
                bucket: tenor_from_pb("entry.tenor", tenor)?,
                rate: lpr_rate(&rate)?,
            },
        };
        self.operator_request_free(&actor, &request_id, OperatorWrite::Journal).await?;
        match self.writer.submit(actor, request_id, command).await.map_err(status)? {
            Outcome::Lpr { effective_from, tenor, rate, entry } => {
                Ok(Response::new(pb::SetLprResponse {
                    entry: Some(pb::LprEntry {
                        effective_date: crate::domain::date::format_date(effective_from),
                        tenor: tenor_to_pb(tenor) as i32,
                        rate: rate.to_string(),
                    }),
                    journal_entry: entry.as_ref().map(journal_ref),
                }))
            }
            _ => Err(unexpected("set_lpr")),
        }
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Operator], "CreateToken")?;
        let pb::CreateTokenRequest { request_id, role, org, valid_days } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        let role = match parse::enumeration::<pb::TokenRole>("role", role)? {
            pb::TokenRole::Bank => Role::Bank,
            pb::TokenRole::Finance => Role::Finance,
            pb::TokenRole::Auditor => Role::Auditor,
            pb::TokenRole::Operator => Role::Operator,
            pb::TokenRole::Unspecified => return Err(invalid("role", "is required")),
        };
        self.operator_request_free(&actor, &request_id, OperatorWrite::Token).await?;
        let (row, secret) =
            auth::create_token_for_request(&self.db, role, &org, valid_days, &request_id)
                .await
                .map_err(status)?;
        Ok(Response::new(pb::CreateTokenResponse {
            token: Some(token_to_pb(&row)),
            secret: secret.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Operator], "RevokeToken")?;
        let pb::RevokeTokenRequest { request_id, token_id } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        if !auth::is_token_id(&token_id) {
            return Err(invalid("token_id", "is not a token's id (tok_ and 16 hex digits)"));
        }
        self.operator_request_free(&actor, &request_id, OperatorWrite::Revocation).await?;
        // In a task of its own, so that a call cut off after the revocation commits (its
        // client's deadline, a reset stream) still drops the token from this server's cache:
        // refused here at once, as the README says (until 2026-12-07 it was dropped by the
        // handler's future after the commit and its re-read, and a call cut off between the
        // two left the token usable here until the cache let it go). Dropped also when the
        // revocation fails: a cached entry is read again, no harm.
        let api = self.clone();
        let revoking = tokio::spawn(async move {
            let revoked =
                auth::revoke_token_but_last_operator(&api.db, &token_id, &request_id).await;
            api.forget_token(&token_id).await;
            revoked
        });
        let revoked = revoking
            .await
            .map_err(|e| status(AppError::Internal(format!("a revocation failed: {e}"))))?
            .map_err(status)?;
        Ok(Response::new(pb::RevokeTokenResponse { token: Some(token_to_pb(&revoked)) }))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let actor = self.principal(&request).await?;
        // The operator issues every token, of every role (DESIGN.md: tokens are its business),
        // so an auditor of every ledger reads which tokens exist, for whom, since and until
        // when, and which were revoked: no secret and no hash. A ledger's auditor does not:
        // the list names every ledger's banks and offices.
        super::require_role(&actor, &[Role::Operator, Role::Auditor], "ListTokens")?;
        if actor.role == Role::Auditor && actor.org != "*" {
            return Err(Status::permission_denied(format!(
                "{} may not call ListTokens: only the operator and an auditor of every ledger \
                 (`*`) may",
                actor.actor()
            )));
        }
        let pb::ListTokensRequest { page_size, page_token } = request.into_inner();
        let query = list_query(&actor, "tokens");
        let after = super::after_page_token(&page_token, &query)?;
        let page_size = super::page_size_or_default(page_size);
        let page = self.db.list_tokens_after(after, i64::from(page_size)).await;
        let page = page.map_err(|e| status(e.into()))?;
        let last = (page.len() == page_size as usize).then(|| page.last()).flatten();
        let next_page_token = listing::page_token_after(last.map(|t| t.token_id.as_str()), &query);
        let tokens = page.iter().map(token_to_pb).collect();
        Ok(Response::new(pb::ListTokensResponse { tokens, next_page_token }))
    }

    async fn list_backups(
        &self,
        request: Request<pb::ListBackupsRequest>,
    ) -> Result<Response<pb::ListBackupsResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Operator], "ListBackups")?;
        let pb::ListBackupsRequest { page_size, page_token, check_copies } = request.into_inner();
        let query = list_query(&actor, "backups");
        let after = super::after_page_token(&page_token, &query)?;
        let Some(backups) = self.backups.clone() else {
            return Err(status(backup::not_configured().into()));
        };
        let page_size = super::page_size_or_default(page_size);
        let page = backup::list(&backups.settings, after, page_size as usize, check_copies)
            .await
            .map_err(status)?;
        let dir = std::path::absolute(&backups.settings.dir).unwrap_or_default();
        let last = (page.len() == page_size as usize).then(|| page.last()).flatten();
        let next_page_token = listing::page_token_after(last.map(|b| b.name.as_str()), &query);
        let backups = page
            .iter()
            .map(|b| pb::ListedBackup {
                name: b.name.clone(),
                manifest: b.manifest.as_ref().map(|m| manifest_to_pb(m, &dir)),
                copy_state: match b.state {
                    backup::CopyState::Unchecked => pb::BackupCopyState::Unspecified,
                    backup::CopyState::Intact => pb::BackupCopyState::Intact,
                    backup::CopyState::Missing => pb::BackupCopyState::Missing,
                    backup::CopyState::Altered => pb::BackupCopyState::Altered,
                    backup::CopyState::ManifestUnreadable => {
                        pb::BackupCopyState::ManifestUnreadable
                    }
                    backup::CopyState::Unreadable => pb::BackupCopyState::Unreadable,
                } as i32,
            })
            .collect();
        Ok(Response::new(pb::ListBackupsResponse { backups, next_page_token }))
    }

    #[tracing::instrument(skip_all, fields(request_id))]
    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupResponse>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Operator], "Backup")?;
        let pb::BackupRequest { request_id, name } = request.into_inner();
        let request_id = parse::request_id(&request_id)?;
        tracing::Span::current().record("request_id", &request_id);
        backup::check_name(&name).map_err(|e| status(e.into()))?;
        let Some(backups) = self.backups.clone() else {
            return Err(status(backup::not_configured().into()));
        };
        self.operator_request_free(&actor, &request_id, OperatorWrite::Backup).await?;
        let db = self.db.clone();
        let dir = std::path::absolute(&backups.settings.dir).unwrap_or_default();
        // On a task of its own: a caller that goes away leaves a backup that finishes (its
        // retry then finds the manifest), not a copy cut off half-way.
        let taken = tokio::spawn(async move {
            backup::take(&db, &backups.url, &backups.settings, &name, &request_id).await
        })
        .await
        .map_err(|e| status(AppError::Internal(format!("backup task: {e}"))))?
        .map_err(status)?;
        Ok(Response::new(pb::BackupResponse { backup: Some(manifest_to_pb(&taken, &dir)) }))
    }

    async fn get_metrics(
        &self,
        request: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::Metrics>, Status> {
        let actor = self.principal(&request).await?;
        super::require_role(&actor, &[Role::Operator], "GetMetrics")?;
        let (uptime, calls) = self.metrics.snapshot();
        let methods = calls
            .into_iter()
            .map(|(method, c)| {
                let total: u64 = c.by_code.iter().sum();
                let statuses = c
                    .by_code
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(code, n)| pb::StatusCount { code: code_name(code), count: *n })
                    .collect();
                let mean = c.total.as_micros() / u128::from(total.max(1));
                pb::MethodMetrics {
                    method,
                    calls: total,
                    statuses,
                    mean_latency_us: u64::try_from(mean).unwrap_or(u64::MAX),
                }
            })
            .collect();
        Ok(Response::new(pb::Metrics {
            uptime_seconds: uptime.as_secs(),
            backend: self.db.backend().to_string(),
            methods,
        }))
    }

    async fn list_lpr(
        &self,
        request: Request<pb::ListLprRequest>,
    ) -> Result<Response<pb::ListLprResponse>, Status> {
        let actor = self.principal(&request).await?;
        let pb::ListLprRequest { page_size, page_token } = request.into_inner();
        let entries = self.db.list_lpr().await.map_err(|e| status(e.into()))?;
        // By date, then tenor: one entry a date and tenor.
        let key = |e: &LprEntry| format!("{}.{}", format_date(e.effective_from), e.bucket.as_str());
        let query = list_query(&actor, "lpr");
        let (page, next_page_token) =
            super::page_in_memory(entries, key, (page_size, &page_token), &query)?;
        Ok(Response::new(pb::ListLprResponse {
            entries: page
                .into_iter()
                .map(|e| pb::LprEntry {
                    effective_date: format_date(e.effective_from),
                    tenor: tenor_to_pb(e.bucket) as i32,
                    rate: e.rate.to_string(),
                })
                .collect(),
            next_page_token,
        }))
    }
}

/// A gRPC status code's name ("OK", "INVALID_ARGUMENT", …).
fn code_name(code: usize) -> String {
    let code = tonic::Code::from(i32::try_from(code).unwrap_or(2));
    let name = match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    };
    name.to_string()
}

/// The highest LPR `SetLpr` takes: above it a rate is a typing error ("0.35" for "0.035"; the
/// published LPRs since 2019 and the benchmark rates seeded before them are under 5%). An
/// entry is never changed once set, so such an error capped every contract of its date and
/// tenor at it, and their subsidies with it, for good.
pub const LPR_RATE_MAX: Decimal = Decimal::from_parts(2, 0, 0, false, 1);

/// `SetLpr`'s rate: above 0 and at most [`LPR_RATE_MAX`]. Checked where the request is read:
/// entries recorded before are read as they were.
fn lpr_rate(value: &str) -> Result<AnnualRate, Status> {
    let rate = parse::rate("entry.rate", value)?;
    if rate.value().is_zero() || rate.value() > LPR_RATE_MAX {
        return Err(invalid(
            "entry.rate",
            format!("must be above 0 and at most {LPR_RATE_MAX} (20%): an LPR, as a fraction"),
        ));
    }
    Ok(rate)
}
