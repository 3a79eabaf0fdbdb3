//! Pure domain rules: money, rates, dates, identities, households, policy, loans, subsidy, risk fund.
//!
//! Nothing in here does I/O or knows about tokio, sqlx or tonic. Each rule takes state and a
//! command and returns either what to record or the first rule it breaks ([`error::DomainError`]),
//! so that the writer can validate a whole command before it writes anything.

pub mod calendar;
pub mod cap;
pub mod date;
pub mod error;
pub mod event;
pub mod household;
pub mod identity;
pub mod ids;
pub mod interest;
pub mod loan;
pub mod lpr;
pub mod money;
pub mod policy;
pub mod pool;
pub mod rate;
pub mod risk_fund;
pub mod schedule;
pub mod servicing;
pub mod subsidy;
pub mod subsidy_claim;
pub mod subsidy_register;
