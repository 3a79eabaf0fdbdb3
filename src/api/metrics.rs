//! The service's calls counted by method and status since it started, for the operator
//! (`RegistryService.GetMetrics`; DESIGN's role table: the operator reads health and metrics).
//!
//! [`MetricsLayer`] wraps every call (outside [`super::panics::CatchPanicLayer`], so that a
//! panic answered `INTERNAL` is counted so): when the handler returns its response, the call
//! is counted under its path and status (an error is answered with its `grpc-status` in the
//! response's headers, a trailers-only response; a response without one is `OK`: a server
//! stream that fails after its first message is counted `OK`) with the time it took. One
//! uncontended mutex a call; a method's entry is made once. A path the server does not serve
//! (answered `UNIMPLEMENTED`, before any token is checked) is counted under
//! [`UNSERVED_PATHS`], not under its own: the caller chooses it, and an entry for each one
//! grew the counts without bound (and the operator's `GetMetrics` answer with them).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::codegen::Service;
use tonic::codegen::http;

/// The counts, shared by the layer and the API.
#[derive(Debug)]
pub struct CallMetrics {
    started: Instant,
    methods: Mutex<HashMap<String, MethodCalls>>,
}

/// One method's calls.
#[derive(Debug, Default, Clone)]
pub struct MethodCalls {
    /// Calls by gRPC status code (0 `OK` to 16 `UNAUTHENTICATED`; another code counted as 2,
    /// `UNKNOWN`).
    pub by_code: [u64; 17],
    /// The calls' time to their response, in all.
    pub total: Duration,
}

impl Default for CallMetrics {
    fn default() -> Self {
        CallMetrics { started: Instant::now(), methods: Mutex::default() }
    }
}

/// Where the calls of a path the server does not serve are counted, all together.
pub const UNSERVED_PATHS: &str = "(paths not served)";

/// Whether the server serves `path`: a method of the loanledger services, health or
/// reflection (v1 and v1alpha).
pub(crate) fn served(path: &str) -> bool {
    static SERVED: OnceLock<HashSet<String>> = OnceLock::new();
    SERVED
        .get_or_init(|| {
            let mut served: HashSet<String> = [
                "/grpc.health.v1.Health/Check",
                "/grpc.health.v1.Health/Watch",
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            ]
            .into_iter()
            .map(String::from)
            .collect();
            // (The descriptors are compiled in: decoded once, they cannot fail.)
            for service in super::descriptors().into_iter().flat_map(|pool| pool.services()) {
                for method in service.methods() {
                    served.insert(format!("/{}/{}", service.full_name(), method.name()));
                }
            }
            served
        })
        .contains(path)
}

impl CallMetrics {
    /// Counts a call of `path` answered `code` after `elapsed` (a path not served under
    /// [`UNSERVED_PATHS`]).
    pub fn record(&self, path: &str, code: i32, elapsed: Duration) {
        let code = usize::try_from(code).ok().filter(|c| *c < 17).unwrap_or(2);
        // A poisoned lock (a panic while counting, which cannot happen) still counts.
        let mut methods = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        // A path has an entry of its own only if served: one found is; one not found yet is
        // looked up among those served (once a path, or at each call of one not served).
        let calls = match methods.get_mut(path) {
            Some(calls) => calls,
            None => {
                let key = if served(path) { path } else { UNSERVED_PATHS };
                methods.entry(key.to_string()).or_default()
            }
        };
        calls.by_code[code] += 1;
        calls.total += elapsed;
    }

    /// The time since the service started, and each method's calls, by path.
    pub fn snapshot(&self) -> (Duration, Vec<(String, MethodCalls)>) {
        let methods = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        let mut calls: Vec<(String, MethodCalls)> =
            methods.iter().map(|(path, calls)| (path.clone(), calls.clone())).collect();
        calls.sort_by(|a, b| a.0.cmp(&b.0));
        (self.started.elapsed(), calls)
    }
}

/// Wraps a service in [`Counted`].
#[derive(Debug, Clone)]
pub struct MetricsLayer(pub Arc<CallMetrics>);

impl<S> tower_layer::Layer<S> for MetricsLayer {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted { inner, metrics: self.0.clone() }
    }
}

/// A service whose calls are counted ([`MetricsLayer`]).
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: Arc<CallMetrics>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Counted<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Unpin,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let uri = request.uri().clone();
        Timed {
            inner: self.inner.call(request),
            uri,
            started: Instant::now(),
            metrics: self.metrics.clone(),
        }
    }
}

/// A call's future, counted when it resolves.
pub struct Timed<F> {
    inner: F,
    uri: http::Uri,
    started: Instant,
    metrics: Arc<CallMetrics>,
}

impl<F, ResBody, E> Future for Timed<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let answered = Pin::new(&mut this.inner).poll(cx);
        if let Poll::Ready(result) = &answered {
            let code = match result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0),
                // The transport's own failure: no gRPC answer at all.
                Err(_) => 14,
            };
            this.metrics.record(this.uri.path(), code, this.started.elapsed());
        }
        answered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls are counted by path and code, each path's entry made once.
    #[test]
    fn calls_are_counted_by_method_and_code() {
        let metrics = CallMetrics::default();
        let get = "/loanledger.v1.LoanService/GetLoan";
        metrics.record(get, 0, Duration::from_millis(2));
        metrics.record(get, 5, Duration::from_millis(1));
        metrics.record(get, 0, Duration::from_millis(3));
        metrics.record(get, 99, Duration::ZERO);
        metrics.record("/grpc.health.v1.Health/Check", 0, Duration::ZERO);
        let (_, calls) = metrics.snapshot();
        assert_eq!(calls.len(), 2);
        let (path, health) = &calls[0];
        assert_eq!((path.as_str(), health.by_code[0]), ("/grpc.health.v1.Health/Check", 1));
        let (path, loan) = &calls[1];
        assert_eq!(path, get);
        assert_eq!(
            (loan.by_code[0], loan.by_code[5], loan.total),
            (2, 1, Duration::from_millis(6))
        );
        assert_eq!(loan.by_code[2], 1, "an unknown code counted UNKNOWN");
    }

    /// Paths the server does not serve are counted together, however many: one entry.
    #[test]
    fn paths_not_served_are_counted_together() {
        let metrics = CallMetrics::default();
        for i in 0..1000 {
            metrics.record(&format!("/x{i}.S/M"), 12, Duration::ZERO);
        }
        metrics.record("/loanledger.v1.LoanService/NoSuchMethod", 12, Duration::ZERO);
        let (_, calls) = metrics.snapshot();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!((calls[0].0.as_str(), calls[0].1.by_code[12]), (UNSERVED_PATHS, 1001));
    }
}
