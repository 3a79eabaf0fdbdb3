//! The gRPC API: tonic services that parse requests into domain values, authorise the caller,
//! call `app`, and map the answer (or the error) back to proto. Generated code lives in [`pb`].

pub mod audit;
pub mod auth_first;
pub mod codec;
pub mod connection;
pub mod convert;
pub mod error;
pub mod loans;
pub mod metrics;
pub mod panics;
pub mod parse;
pub mod pools;
pub mod registry;
pub mod risk_fund;
pub mod subsidy;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::RwLock;
use tonic::Request;

use crate::app::auth::{Principal, Role, authenticate, hash_token, token_id_of};
use crate::app::writer::WriterHandle;
use crate::store::Db;

/// The generated messages, clients and servers of `loanledger.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("loanledger.v1");
}

/// The encoded file descriptor set of every loanledger proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/loanledger_descriptor.bin"));

/// The API's messages and services, read once from [`FILE_DESCRIPTOR_SET`]: the CLI's client
/// reads and writes messages through them, the codec names a oneof's members by them. An
/// error is the build's (the set is written by `build.rs`).
pub fn descriptors() -> Result<&'static prost_reflect::DescriptorPool, String> {
    static POOL: std::sync::OnceLock<Result<prost_reflect::DescriptorPool, String>> =
        std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    });
    pool.as_ref().map_err(Clone::clone)
}

/// A checked token ([`Api::principal`]'s cache): its principal, when it was read, its id, and when it expires (`None`:
/// never), which each use compares with the clock (an expired token is refused at once, not
/// when its entry is next read).
type CheckedToken = (Principal, Instant, String, Option<i64>);

/// Whether a token expiring at `expires_at_us` is still valid now.
fn unexpired(expires_at_us: Option<i64>) -> bool {
    expires_at_us.is_none()
        || !crate::app::auth::expired(expires_at_us, chrono::Utc::now().timestamp_micros())
}

/// What every service handler shares.
#[derive(Clone)]
pub struct Api {
    pub db: Db,
    pub writer: WriterHandle,
    /// Principals by token hash, with the time each was read: a token is read again once its
    /// entry is older than `token_cache_ttl` (by one caller while the others use the entry), so
    /// that a revoked one is refused from then on; and the token's id, which `RevokeToken`
    /// drops its entry by.
    tokens: Arc<RwLock<HashMap<String, CheckedToken>>>,
    /// Bumped, under the cache's lock, by each `RevokeToken` this server answers: a re-read
    /// begun before it does not put back what it dropped (the read may have seen the token
    /// before its revocation committed).
    revocations: Arc<std::sync::atomic::AtomicU64>,
    token_cache_ttl: Duration,
    /// One `Verify` at a time: each keeps both cores busy for as long as it runs (two threads
    /// and the read-model reads), so concurrent ones would only slow each other and everything
    /// else; the next waits its turn (and gives it up if its caller goes away). `GetBalances`,
    /// which reads the whole journal too, takes its turn with them.
    verify_turn: Arc<tokio::sync::Semaphore>,
    /// The offset from UTC of the business day ([`crate::startup::Settings`]).
    business_utc_offset: chrono::FixedOffset,
    /// The key that signs checkpoints ([`crate::app::checkpoints`]).
    signing_key: Arc<crate::app::checkpoints::CheckpointKey>,
    /// The calls counted by the server's [`metrics::MetricsLayer`] (`GetMetrics`).
    pub metrics: Arc<metrics::CallMetrics>,
    /// Where `Backup` writes; `None`: this server takes no backups.
    backups: Option<Arc<Backups>>,
}

/// A server's backups: where they go, and the URL of the database they copy.
#[derive(Debug)]
pub struct Backups {
    pub settings: crate::app::backup::BackupSettings,
    pub url: String,
}

/// A listing's page size (`ListTokens`, `ListBackups`, `ListCompensations`, `ListPools`,
/// `ListSubsidyClaims`) when none is asked, and the largest.
const PAGE_DEFAULT: u32 = 100;
const PAGE_MAX: u32 = 1_000;

/// The page size asked, or the default; at most [`PAGE_MAX`].
fn page_size_or_default(asked: u32) -> u32 {
    match asked {
        0 => PAGE_DEFAULT,
        n => n.min(PAGE_MAX),
    }
}

/// A page of `items`, a short listing read whole in the order of their `key`s (which sort as
/// text): those after the key the page token names, at most `page_size` (0: [`PAGE_MAX`]), and
/// the next page's token, bound to the listing `query` (as the stored listings' tokens).
fn page_in_memory<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    (page_size, page_token): (u32, &str),
    query: &str,
) -> Result<(Vec<T>, String), tonic::Status> {
    let after = after_page_token(page_token, query)?;
    let page_size = if page_size == 0 { PAGE_MAX } else { page_size.min(PAGE_MAX) } as usize;
    let page: Vec<T> = items
        .into_iter()
        .filter(|t| after.is_empty() || *key(t) > *after)
        .take(page_size)
        .collect();
    let last = (page.len() == page_size).then(|| page.last()).flatten().map(&key);
    let next = crate::app::listing::page_token_after(last.as_deref(), query);
    Ok((page, next))
}

/// The id a page token of the listing `query` resumes after ("" for the first page), or
/// `INVALID_ARGUMENT` naming `page_token`.
fn after_page_token<'t>(page_token: &'t str, query: &str) -> Result<&'t str, tonic::Status> {
    match page_token {
        "" => Ok(""),
        token => crate::app::listing::token_after_id(token, query)
            .map_err(|why| error::invalid("page_token", why)),
    }
}

/// Refuses a caller whose role may never make `call` (README's role table: an auditor writes
/// nothing, the operator only sets the service up, a bank writes only loans), before the writer
/// sees the command: such a refusal depends on nothing stored, so it is not recorded under the
/// request id (a read-only token cannot fill the append-only idempotency table with refusals).
pub fn require_role(actor: &Principal, roles: &[Role], call: &str) -> Result<(), tonic::Status> {
    if roles.contains(&actor.role) {
        return Ok(());
    }
    let may: Vec<&str> = roles
        .iter()
        .map(|r| match r {
            Role::Bank => "a bank",
            Role::Finance => "a finance office",
            Role::Auditor => "an auditor",
            Role::Operator => "the operator",
        })
        .collect();
    Err(tonic::Status::permission_denied(format!(
        "{} may not call {call}: only {} may",
        actor.actor(),
        may.join(" or ")
    )))
}

impl Api {
    pub fn new(
        db: Db,
        writer: WriterHandle,
        business_utc_offset: chrono::FixedOffset,
        token_cache_ttl: Duration,
        signing_key: crate::app::checkpoints::CheckpointKey,
        backups: Option<Backups>,
    ) -> Self {
        Api {
            backups: backups.map(Arc::new),
            signing_key: Arc::new(signing_key),
            db,
            writer,
            tokens: Arc::default(),
            revocations: Arc::default(),
            token_cache_ttl,
            verify_turn: Arc::new(tokio::sync::Semaphore::new(1)),
            business_utc_offset,
            metrics: Arc::default(),
        }
    }

    /// Today's date where the programme does business (UTC+08:00 by default): at 07:30 in
    /// Beijing it is already the day that UTC reaches only at 08:00.
    pub fn today(&self) -> crate::domain::date::BusinessDate {
        crate::domain::date::business_date(chrono::Utc::now(), self.business_utc_offset)
    }

    /// The caller, from `authorization: Bearer <token>` (the scheme's name in any case, as HTTP
    /// reads it: some clients send `bearer`).
    pub async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, tonic::Status> {
        // Checked already from the headers, before the body was read (`auth_first`): that
        // check's principal, its token not hashed and looked up twice.
        if let Some(auth_first::Authenticated(principal)) = request.extensions().get() {
            return Ok(principal.clone());
        }
        self.principal_of(bearer_secret(request)?).await
    }

    /// The caller and a [`Credential`] to check it again by while a long answer streams: a
    /// token revoked, or expired, meanwhile ends the stream (since 2026-12-07: a stream begun
    /// went on to its end, a whole journal with identity numbers in full).
    pub async fn credential<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(Principal, Credential), tonic::Status> {
        let secret = bearer_secret(request)?;
        let principal = self.principal_of(secret).await?;
        Ok((principal, Credential { api: self.clone(), secret: secret.to_string() }))
    }

    /// The caller whose valid token the `authorization` header of `headers` names, judged as
    /// the handlers judge it ([`Self::principal`]), for [`auth_first::AuthFirstLayer`], before
    /// the request's body is read.
    pub(crate) async fn check_authorization(
        &self,
        headers: &tonic::codegen::http::HeaderMap,
    ) -> Result<Principal, tonic::Status> {
        let header = headers.get("authorization").map(|v| v.to_str().ok());
        self.principal_of(bearer_in(header)?).await
    }

    /// The principal of the token `secret`, from the cache while its entry is fresh.
    async fn principal_of(&self, secret: &str) -> Result<Principal, tonic::Status> {
        let key = hash_token(secret);
        if let Some((p, read_at, _, expires)) = self.tokens.read().await.get(&key)
            && read_at.elapsed() < self.token_cache_ttl
            && unexpired(*expires)
        {
            return Ok(p.clone());
        }
        // Timed from before the read: a token revoked while it runs is refused at most
        // `token_cache_ttl` after the read ends (callers meanwhile are answered from the entry
        // as it was; so are they while a read hangs on the database, whose calls hang too).
        let checked = Instant::now();
        {
            // A stale entry is re-read by the first caller to find it so; stamped now, it
            // serves the others meanwhile, rather than all of a busy token's callers reading
            // it at once through the readers' pool.
            let mut tokens = self.tokens.write().await;
            if let Some((p, read_at, _, expires)) = tokens.get_mut(&key) {
                if read_at.elapsed() < self.token_cache_ttl && unexpired(*expires) {
                    return Ok(p.clone());
                }
                *read_at = checked;
            }
        }
        // The read and what it leaves in the cache run on a task of their own, to the end
        // even if this call is dropped (its client gone, its deadline passed): dropped half-way
        // it left the entry stamped fresh with the principal of before, so that a revoked
        // token whose every re-read was cancelled went on working.
        let (db, tokens, secret) = (self.db.clone(), self.tokens.clone(), secret.to_string());
        let revocations = self.revocations.clone();
        let before = revocations.load(std::sync::atomic::Ordering::SeqCst);
        let read = tokio::spawn(async move {
            let read = authenticate(&db, &secret).await;
            let mut tokens = tokens.write().await;
            match &read {
                // Not kept when this server revoked a token since the read began: it may be
                // this one, read before the revocation committed.
                Ok((principal, expires))
                    if revocations.load(std::sync::atomic::Ordering::SeqCst) == before =>
                {
                    let token_id = token_id_of(&secret).unwrap_or_default();
                    tokens.insert(key, (principal.clone(), checked, token_id, *expires));
                }
                _ => {
                    tokens.remove(&key);
                }
            };
            read.map(|(principal, _)| principal)
        });
        match read.await {
            Ok(read) => read.map_err(error::status),
            Err(e) => Err(error::status(crate::app::error::AppError::Internal(format!(
                "a token's read failed: {e}"
            )))),
        }
    }
}

impl Api {
    /// Drops the token `token_id` from this server's cache of checked tokens (`RevokeToken`):
    /// refused here from now on, by the other servers on the database once their caches let
    /// it go.
    pub(crate) async fn forget_token(&self, token_id: &str) {
        let mut tokens = self.tokens.write().await;
        self.revocations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokens.retain(|_, (_, _, id, _)| id != token_id);
    }
}

/// A streaming call's token, checked again before each page of its answer
/// ([`Api::credential`]), as a new call's would be (from this server's cache while its entry
/// is fresh: a token revoked here is refused at once, on another server once the cache lets it
/// go; an expired one at once).
pub struct Credential {
    api: Api,
    secret: String,
}

impl Credential {
    /// `Ok` while the token still stands; the status a new call would be answered otherwise.
    pub async fn still_valid(&self) -> Result<(), tonic::Status> {
        self.api.principal_of(&self.secret).await.map(|_| ())
    }
}

/// The token of a request's `authorization: Bearer <token>` (the scheme's name in any case).
fn bearer_secret<T>(request: &Request<T>) -> Result<&str, tonic::Status> {
    let header = request.metadata().get("authorization").map(|v| v.to_str().ok());
    bearer_in(header)
}

/// The token of an `authorization` header (`None`: no header; `Some(None)`: one that is not
/// text).
fn bearer_in(header: Option<Option<&str>>) -> Result<&str, tonic::Status> {
    let header = header
        .ok_or_else(|| tonic::Status::unauthenticated("missing authorization: Bearer <token>"))?;
    header
        .and_then(bearer_credentials)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| tonic::Status::unauthenticated("authorization must be \"Bearer <token>\""))
}

/// The credentials of an `authorization` value of the `Bearer` scheme, whose name HTTP reads in
/// any case (RFC 9110, 11.1): `None` for another scheme.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(credentials)
}
