//! The bearer token checked before a request's body is read.
//!
//! tonic decodes a unary request whole before its handler runs, and the handler checks the
//! token ([`super::Api::principal`]): a request of 4 MiB (the largest taken) of empty repeated
//! entries, two bytes each on the wire, decoded to some 200 bytes each in memory (a
//! `SubmitSubsidyClaim` of 2 million empty lines: about 436 MB), was held in full before anyone
//! was asked who sent it, so a caller with no token could make the server take gigabytes with a
//! few calls at once (a review of 2026-12-07 late night). [`AuthFirstLayer`] answers a call of a
//! loanledger method whose token is missing, malformed, unknown, revoked or expired
//! `UNAUTHENTICATED` from its headers alone, as the handler would, the body never read; the
//! handler takes the principal found ([`Authenticated`], in the request's extensions, which
//! only the server sets), the token not looked up twice. Health, reflection and paths the
//! server does not serve (`UNIMPLEMENTED`, before any token) are let through as before. A caller with a valid token is the programme's own
//! (a bank, an office, an auditor, the operator): the server's limits on streams a connection
//! ([`crate::startup`]) bound what one connection holds.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http;

use super::Api;

/// The caller of a request whose token [`AuthFirst`] checked, for its handler
/// ([`super::Api::principal`]).
#[derive(Clone)]
pub struct Authenticated(pub crate::app::auth::Principal);

/// Wraps a service in [`AuthFirst`].
#[derive(Clone)]
pub struct AuthFirstLayer(pub Api);

impl<S> tower_layer::Layer<S> for AuthFirstLayer {
    type Service = AuthFirst<S>;

    fn layer(&self, inner: S) -> AuthFirst<S> {
        AuthFirst { inner, api: self.0.clone() }
    }
}

/// A service whose loanledger calls are refused before their body is read unless their token
/// is valid ([`AuthFirstLayer`]).
#[derive(Clone)]
pub struct AuthFirst<S> {
    inner: S,
    api: Api,
}

/// Whether a call of `path` is checked here: a method of the loanledger services that the
/// server serves.
fn checked(path: &str) -> bool {
    path.starts_with("/loanledger.v1.") && super::metrics::served(path)
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for AuthFirst<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The service made ready above goes with this call; its clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !checked(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        let api = self.api.clone();
        Box::pin(async move {
            match api.check_authorization(request.headers()).await {
                Ok(principal) => {
                    request.extensions_mut().insert(Authenticated(principal));
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}
