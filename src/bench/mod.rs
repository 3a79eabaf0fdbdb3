//! `loanledger bench`: a load generator that drives a real server through the real gRPC client,
//! and measures the database's own ceiling for the same rows in the same run.
//!
//! Scenarios (each prints throughput and latency p50 / p99 / max):
//! - `single`: repayments from N concurrent clients, one request at a time each;
//! - `batch`: repayments in `SubmitBatch` calls of B items;
//! - `settle`: a `SettleLoans` run over M live loans;
//! - `history`: `GetLoanHistory` latency while single writes go on;
//! - `verify`: `Verify` over the whole journal, in entries per second.
//!
//! The server runs in this process on a fresh database (a temporary SQLite file, or a new
//! database on the given PostgreSQL server) and is called over loopback TCP like any client.
//! Data (ledger, bank, households, loans) is prepared through the same API with concurrent
//! clients. The ceiling ([`ceiling`]) writes the rows each command makes (journal row with its
//! hash, postings, loan link, idempotency row, loan update, balance upserts), built beforehand,
//! with the store's own statements into a fresh database of the same backend, with the same
//! durability settings: for the single and the batched repayments, and for the settlement run.
//! The bench ends each ceiling with the ratio of the service's figure to it, and the run with
//! the targets judged from its own figures ([`targets`]).

pub mod ceiling;
pub mod load;
pub mod targets;

use std::time::Duration;

/// Latency summary of a set of samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    pub fn of(samples: &mut [Duration]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Latency { p50: at(0.50), p99: at(0.99), max: samples[samples.len() - 1] }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )
    }
}
