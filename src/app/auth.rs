//! Principals and tokens.
//!
//! A token is `ll_<32 random bytes, hex>`; only its SHA-256 is stored. Each token is bound to a
//! role and an organisation: a bank (its bank id), a finance office (its ledger id), an auditor
//! (a ledger id, or `*` for all) or an operator (`*`).

use rand::RngCore;
use sha2::{Digest, Sha256};

use super::error::AppError;
use crate::domain::error::{DomainError, Reason};
use crate::store::Db;
use crate::store::rows::TokenListRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Bank,
    Finance,
    Auditor,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bank => "bank",
            Role::Finance => "finance",
            Role::Auditor => "auditor",
            Role::Operator => "operator",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "bank" => Some(Role::Bank),
            "finance" => Some(Role::Finance),
            "auditor" => Some(Role::Auditor),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub role: Role,
    /// Bank id for banks, ledger id for finance offices and auditors, `*` for all.
    pub org: String,
}

impl Principal {
    /// `role:org`, as recorded in the journal's `actor` and used to scope request ids.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.org)
    }

    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// Whether this principal may read the books of a ledger: its finance office and its
    /// auditors (banks only through their own loans). The operator reads none: DESIGN.md's role
    /// table gives it health and metrics, so that the service's IT staff see no household's
    /// identity number and no loan.
    pub fn reads_ledger(&self, ledger_id: &str) -> bool {
        match self.role {
            Role::Auditor => self.org == "*" || self.org == ledger_id,
            // A finance office is its ledger's (a token for "*" is refused at its creation and,
            // stored by an earlier build, at authentication: `check_org`).
            Role::Finance => self.org == ledger_id,
            Role::Bank | Role::Operator => false,
        }
    }

    /// Whether this principal may write a ledger's registry and policy, and settle and mark its
    /// loans: its finance office alone (separation of duties: not the operator).
    pub fn administers_ledger(&self, ledger_id: &str) -> bool {
        self.role == Role::Finance && self.org == ledger_id
    }

    /// Whether this principal may read a ledger's journal and balances and verify it: its own
    /// ([`Principal::reads_ledger`]), and the LPR table's chain (reference data, no household in
    /// it), which is every auditor's and every finance office's. Not for its loans or
    /// households: none is ever in that chain, and one inserted there by hand is nobody's.
    pub fn reads_books(&self, ledger_id: &str) -> bool {
        if ledger_id == crate::domain::lpr::LPR_LEDGER {
            return matches!(self.role, Role::Auditor | Role::Finance);
        }
        self.reads_ledger(ledger_id)
    }

    /// Whether this principal may register a bank in a ledger: its finance office, or the
    /// operator setting the service up (configuration, as creating the ledger is).
    pub fn configures_ledger(&self, ledger_id: &str) -> bool {
        self.is_operator() || self.administers_ledger(ledger_id)
    }

    /// Whether this principal may see full identity numbers of households (a bank sees its own
    /// borrowers' in full, through their loans).
    pub fn sees_full_ids(&self) -> bool {
        matches!(self.role, Role::Finance | Role::Auditor)
    }

    /// Whether this principal may read a loan of `bank_id` in `ledger_id`.
    pub fn reads_loan(&self, bank_id: &str, ledger_id: &str) -> bool {
        match self.role {
            Role::Bank => self.org == bank_id,
            _ => self.reads_ledger(ledger_id),
        }
    }
}

pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The id of the token whose secret is `secret` (`tok_` and 16 hex digits of the SHA-256 of
/// the secret's random bytes); `None` for text that is no secret of ours.
pub fn token_id_of(secret: &str) -> Option<String> {
    let bytes = hex::decode(secret.strip_prefix("ll_")?).ok()?;
    (bytes.len() == 32).then(|| token_id_of_bytes(&bytes))
}

/// The id of the token whose secret's random bytes are `bytes`.
fn token_id_of_bytes(bytes: &[u8]) -> String {
    format!("tok_{}", &hex::encode(Sha256::digest(bytes))[..16])
}

/// Whether `org` is an organisation a token of `role` may be bound to: a bank's id, a finance
/// office's ledger id, an auditor's ledger id or `*` (every ledger), the operator's `*`.
pub fn check_org(role: Role, org: &str) -> Result<(), String> {
    let id = crate::domain::ids::check_id(org).is_ok();
    let fits = match role {
        Role::Bank | Role::Finance => id,
        Role::Auditor => id || org == "*",
        Role::Operator => org == "*",
    };
    if fits {
        Ok(())
    } else {
        Err(match role {
            Role::Bank => "a bank's token is bound to its bank id".into(),
            Role::Finance => {
                "a finance office's token is bound to its ledger id, not to \"*\"".into()
            }
            Role::Auditor => {
                "an auditor's token is bound to a ledger id, or \"*\" for every ledger".into()
            }
            Role::Operator => "an operator's token is bound to \"*\"".into(),
        })
    }
}

/// A new secret and its token's id.
fn new_secret() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    (format!("ll_{}", hex::encode(bytes)), token_id_of_bytes(&bytes))
}

/// Refuses a token for an organisation not registered yet (`NOT_FOUND`): a bank's token for a
/// bank no ledger has registered (a bank id is the service's: registered later by another
/// ledger's finance office, the token would act in that ledger), a finance office's or a
/// ledger's auditor's for a ledger not created. The operator's `CreateToken` and the CLI's
/// `token create` check it; [`create_token`] itself does not (the bench makes its tokens
/// before it prepares its ledger).
pub async fn check_org_exists(db: &Db, role: Role, org: &str) -> Result<(), AppError> {
    let missing = match role {
        Role::Bank => db.get_bank(org).await?.is_none().then_some("bank"),
        Role::Finance => db.get_ledger(org).await?.is_none().then_some("ledger"),
        Role::Auditor if org != "*" => db.get_ledger(org).await?.is_none().then_some("ledger"),
        Role::Auditor | Role::Operator => None,
    };
    match missing {
        Some(what) => Err(DomainError::NotFound { what, id: org.to_string() }.into()),
        None => Ok(()),
    }
}

/// The longest term a token may be given: ten years of days.
pub const VALID_DAYS_MAX: u32 = 3_660;

/// A day in microseconds, as token times are kept.
const DAY_US: i64 = 86_400_000_000;

/// Whether a token expiring at `expires_at_us` (`None`: never) has expired by `now_us`.
pub fn expired(expires_at_us: Option<i64>, now_us: i64) -> bool {
    expires_at_us.is_some_and(|at| now_us >= at)
}

/// A time in microseconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC), as token times are
/// shown.
pub fn utc_text(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format(crate::ledger::checkpoint::Handover::AT_FORMAT).to_string())
        .unwrap_or_default()
}

/// When a token made at `now_us` for `valid_days` (0: no term) expires, in microseconds;
/// a term over [`VALID_DAYS_MAX`] is `INVALID_ARGUMENT` naming `valid_days`.
pub fn expiry(now_us: i64, valid_days: u32) -> Result<Option<i64>, DomainError> {
    if valid_days > VALID_DAYS_MAX {
        return Err(DomainError::invalid(
            "valid_days",
            format!("must be at most {VALID_DAYS_MAX} (ten years); 0 for a token without a term"),
        ));
    }
    Ok((valid_days > 0).then(|| now_us + i64::from(valid_days) * DAY_US))
}

/// Creates a token for `role` and `org` ([`check_org`]), valid for `valid_days` (0: without a
/// term, [`expiry`]), stores its hash, and returns the secret (shown once).
pub async fn create_token(
    db: &Db,
    role: Role,
    org: &str,
    valid_days: u32,
) -> Result<String, AppError> {
    check_org(role, org).map_err(|m| DomainError::invalid("org", m))?;
    let (secret, token_id) = new_secret();
    let now_us = chrono::Utc::now().timestamp_micros();
    let expires = expiry(now_us, valid_days)?;
    db.insert_token(&token_id, &hash_token(&secret), role.as_str(), org, now_us, expires).await?;
    tracing::info!(token_id, role = role.as_str(), org, valid_days, "token created");
    Ok(secret)
}

/// Creates a token for `role` and `org` under the operator's `request_id` (`CreateToken`):
/// the token and its secret; a retry (the id used before for the same role and organisation)
/// finds the token its first call made, and no secret: only its hash is stored, so a secret is
/// shown once, and an operator who lost it revokes the token and makes another. The id used
/// before for another role or organisation is `ALREADY_EXISTS`. An organisation not registered
/// is `NOT_FOUND` ([`check_org_exists`]). `valid_days`: the token's term ([`expiry`]), a
/// retry's compared with the first call's.
pub async fn create_token_for_request(
    db: &Db,
    role: Role,
    org: &str,
    valid_days: u32,
    request_id: &str,
) -> Result<(TokenListRow, Option<String>), AppError> {
    check_org(role, org).map_err(|m| DomainError::invalid("org", m))?;
    let now_us = chrono::Utc::now().timestamp_micros();
    let expires = expiry(now_us, valid_days)?;
    // A retry finds its token; the id used before for another token is refused as such before
    // the organisation is looked up (since 2026-12-07: one naming an organisation not
    // registered was `NOT_FOUND`).
    let made_before = |row: TokenListRow| {
        let term = row.expires_at_us.map_or(0, |at| (at - row.created_at_us) / DAY_US);
        if row.role != role.as_str() || row.org != org || term != i64::from(valid_days) {
            return Err(AppError::RequestIdReused(request_id.to_string()));
        }
        Ok((row, None))
    };
    if let Some(row) = db.token_for_request(request_id).await? {
        return made_before(row);
    }
    check_org_exists(db, role, org).await?;
    let (secret, token_id) = new_secret();
    let hash = hash_token(&secret);
    let (row, made) = db
        .insert_token_for_request(&token_id, &hash, role.as_str(), org, now_us, expires, request_id)
        .await?;
    if !made {
        return made_before(row);
    }
    tracing::info!(token_id, role = role.as_str(), org, valid_days, request_id, "token created");
    Ok((row, Some(secret)))
}

/// Creates the first operator token of a fresh database (no token and no ledger yet) and
/// returns its secret; `None` if the database is not fresh. Stored by one statement that
/// checks it is ([`Db::insert_first_token`]), so that servers started together on a fresh
/// database store one between them.
pub async fn create_first_operator_token(db: &Db) -> Result<Option<String>, AppError> {
    let (secret, token_id) = new_secret();
    let now_us = chrono::Utc::now().timestamp_micros();
    let role = Role::Operator.as_str();
    if !db.insert_first_token(&token_id, &hash_token(&secret), role, "*", now_us).await? {
        return Ok(None);
    }
    tracing::info!(token_id, role, org = "*", "first operator token created");
    Ok(Some(secret))
}

/// The principal a bearer secret stands for, a token neither revoked nor expired, and when
/// the token expires (`None`: never).
pub async fn authenticate(db: &Db, secret: &str) -> Result<(Principal, Option<i64>), AppError> {
    let row = db.find_token(&hash_token(secret)).await?.ok_or(AppError::Unauthenticated)?;
    if let Some(at) = row.expires_at_us
        && expired(Some(at), chrono::Utc::now().timestamp_micros())
    {
        return Err(AppError::TokenExpired(utc_text(at)));
    }
    let role = Role::parse(&row.role)
        .ok_or_else(|| AppError::Internal(format!("token {} has unknown role", row.token_id)))?;
    // A token stored for an organisation its role cannot have (a finance office's for "*",
    // made before `check_org` refused it) is no credential: it would read every ledger.
    if let Err(why) = check_org(role, &row.org) {
        tracing::warn!(
            token_id = row.token_id,
            why,
            "a token bound to no organisation of its role"
        );
        return Err(AppError::Unauthenticated);
    }
    Ok((Principal { role, org: row.org }, row.expires_at_us))
}

/// Whether `text` has the form of a token's id (`tok_` and 16 lowercase hex digits).
pub fn is_token_id(text: &str) -> bool {
    text.strip_prefix("tok_").is_some_and(|hex| {
        hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Revokes the token `token_id` for the operator's `RevokeToken` under `request_id`, and
/// answers it as it is then: revoked now, or before (answered again); `NOT_FOUND` for no such
/// token. The last operator token not revoked nor expired is kept (`LAST_OPERATOR_TOKEN`): without it no
/// one could make a token but through the CLI, on the database's machine. The request id is
/// recorded with the token it names: sent again for another token, `ALREADY_EXISTS`
/// (`REQUEST_ID_REUSED`), nothing revoked.
pub async fn revoke_token_but_last_operator(
    db: &Db,
    token_id: &str,
    request_id: &str,
) -> Result<TokenListRow, AppError> {
    let at_us = chrono::Utc::now().timestamp_micros();
    // The id used before for another token is refused as such, whether or not this one exists
    // (since 2026-12-07: one naming no token was `NOT_FOUND`).
    if db.token_revocation(request_id).await?.is_some_and(|(recorded, _)| recorded != token_id) {
        return Err(AppError::RequestIdReused(request_id.to_string()));
    }
    if db.get_token(token_id).await?.is_none() {
        return Err(DomainError::NotFound { what: "token", id: token_id.to_string() }.into());
    }
    let last_operator = || -> AppError {
        DomainError::refused(
            Reason::LastOperatorToken,
            format!(
                "{token_id} is the last operator token neither revoked nor expired: make another \
                 operator token first"
            ),
        )
        .into()
    };
    let (recorded, refused) = db.record_token_revocation(request_id, token_id, at_us).await?;
    if recorded != token_id {
        return Err(AppError::RequestIdReused(request_id.to_string()));
    }
    // Refused before: refused again, though another operator token may have been made since
    // (a late retry would otherwise revoke the token its operator chose to keep).
    if refused.is_some() {
        return Err(last_operator());
    }
    if db.revoke_token_but_last_operator(token_id, at_us).await? {
        tracing::info!(token_id, "token revoked");
    }
    let row = db
        .get_token(token_id)
        .await?
        .ok_or_else(|| DomainError::NotFound { what: "token", id: token_id.to_string() })?;
    if row.revoked_at_us.is_none() {
        db.refuse_token_revocation(request_id, Reason::LastOperatorToken.code()).await?;
        return Err(last_operator());
    }
    Ok(row)
}

/// Revokes the token `token_id`: a server refuses it once its cache of tokens has let it go
/// (at most [`crate::startup::TOKEN_CACHE_TTL`] later). `false` if there is no such token or
/// it was revoked already.
pub async fn revoke_token(db: &Db, token_id: &str) -> Result<bool, AppError> {
    let done = db.revoke_token(token_id, chrono::Utc::now().timestamp_micros()).await?;
    if done {
        tracing::info!(token_id, "token revoked");
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_an_organisation_that_fits_their_role() {
        assert!(check_org(Role::Finance, "450121").is_ok());
        assert!(check_org(Role::Finance, "*").is_err());
        assert!(check_org(Role::Bank, "*").is_err());
        assert!(
            check_org(Role::Auditor, "*").is_ok() && check_org(Role::Auditor, "450121").is_ok()
        );
        assert!(check_org(Role::Operator, "*").is_ok());
        assert!(check_org(Role::Operator, "450121").is_err());
        assert!(check_org(Role::Bank, "B 1").is_err());
    }

    /// A finance office reads its own ledger only; a token stored for "*" (before its creation
    /// was refused) reads none.
    #[test]
    fn a_finance_office_reads_its_own_ledger() {
        let office = Principal { role: Role::Finance, org: "450121".into() };
        assert!(office.reads_ledger("450121") && !office.reads_ledger("450122"));
        let every = Principal { role: Role::Finance, org: "*".into() };
        assert!(!every.reads_ledger("450121"));
        let auditor = Principal { role: Role::Auditor, org: "*".into() };
        assert!(auditor.reads_ledger("450121"));
        // The LPR table's chain's books: every auditor's and finance office's, no bank's or
        // operator's; its loans (none but by hand) nobody's but a "*" auditor's.
        assert!([&office, &every, &auditor].iter().all(|p| p.reads_books("lpr")));
        assert!(!office.reads_ledger("lpr") && !office.reads_loan("B1", "lpr"));
        let bank = Principal { role: Role::Bank, org: "B1".into() };
        let operator = Principal { role: Role::Operator, org: "*".into() };
        assert!(!bank.reads_books("lpr") && !operator.reads_books("lpr"));
        assert!(office.reads_books("450121") && !office.reads_books("450122"));
    }
}
