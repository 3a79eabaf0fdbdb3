//! A panic in a call's handler answered as `INTERNAL`, not a reset stream.
//!
//! hyper runs each call's handler as a task of its own: a panic in it (a bug, or a stored row
//! altered into figures the domain's arithmetic does not expect) ends that task, and the
//! client saw its call cut (`CANCELLED`, "h2 protocol error") with nothing in the service's
//! log but the panic's line on stderr. [`CatchPanicLayer`] wraps every call's future: a panic
//! while it is polled is logged as an error, with the call's path, and answered with the
//! status every internal error gets ([`crate::app::error::INTERNAL_TEXT`]). It covers a call
//! until its handler returns its response: a server stream's messages, and the encoding of
//! any answer, are made after that, in the body hyper polls, where a panic still cuts the
//! call. `ReadJournal`'s reading task has a guard of its own (`api::audit`).
//!
//! The writer does not panic through here: a command's plan that panics is that command's
//! `INTERNAL` (`app::writer`), and the writer ending while serving ends `serve`
//! ([`crate::startup`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::Service;
use tonic::codegen::http;

/// Wraps a service in [`CatchPanic`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchPanicLayer;

impl<S> tower_layer::Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic(inner)
    }
}

/// A service whose calls' panics are answered `INTERNAL` ([`CatchPanicLayer`]).
#[derive(Debug, Clone)]
pub struct CatchPanic<S>(S);

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for CatchPanic<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Unpin,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Caught<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // (A parsed request's URI shares the request's bytes: kept, it costs no copy.)
        let uri = request.uri().clone();
        Caught { inner: self.0.call(request), uri }
    }
}

/// A call's future, a panic while it is polled answered `INTERNAL`.
pub struct Caught<F> {
    inner: F,
    uri: http::Uri,
}

impl<F, ResBody, E> Future for Caught<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>> + Unpin,
    ResBody: Default,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The services' futures are boxed already (tonic's routes): no pinning of our own.
        let this = self.get_mut();
        match crate::app::error::caught(|| Pin::new(&mut this.inner).poll(cx)) {
            Ok(poll) => poll,
            Err(why) => {
                let path = this.uri.path();
                tracing::error!(path, panic = %why, "a call's handler panicked");
                let status = tonic::Status::internal(crate::app::error::INTERNAL_TEXT);
                Poll::Ready(Ok(status.into_http()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service whose calls panic while polled (or answer, as `panics` says).
    #[derive(Clone)]
    struct Handler {
        panics: bool,
    }

    impl Service<http::Request<()>> for Handler {
        type Response = http::Response<String>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<http::Response<String>, Self::Error>>>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let panics = self.panics;
            Box::pin(async move {
                tokio::task::yield_now().await;
                assert!(!panics, "Addition overflowed");
                Ok(http::Response::new("answered".to_string()))
            })
        }
    }

    async fn answer(panics: bool) -> http::Response<String> {
        use tower_layer::Layer;
        let mut service = CatchPanicLayer.layer(Handler { panics });
        let request = http::Request::builder().uri("/loanledger.v1.LoanService/GetLoan");
        service.call(request.body(()).unwrap()).await.unwrap()
    }

    /// A handler that panics is answered `INTERNAL` (grpc-status 13) with the internal
    /// errors' text; one that does not is answered as it answers.
    #[tokio::test]
    async fn a_panicking_handler_is_answered_internal() {
        let answered = answer(true).await;
        let header = |name: &str| answered.headers().get(name).map(|v| v.to_str().unwrap());
        assert_eq!(header("grpc-status"), Some("13"));
        let message = header("grpc-message").unwrap().replace("%20", " ");
        assert_eq!(message, crate::app::error::INTERNAL_TEXT);
        assert_eq!(header("content-type"), Some("application/grpc"));
        assert_eq!(answer(false).await.into_body(), "answered");
    }
}
