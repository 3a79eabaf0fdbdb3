//! loanledger: the books of a poverty-alleviation microcredit programme, as an append-only,
//! double-entry, tamper-evident journal served over gRPC.
//!
//! Dependencies point inward: [`api`] (tonic) parses requests and calls [`app`]; [`app`] runs
//! commands through the single writer, using the pure rules of [`domain`] and [`ledger`] and the
//! storage of [`store`].

pub mod api;
pub mod app;
pub mod bench;
pub mod client;
pub mod collections;
pub mod domain;
pub mod ledger;
pub mod offline;
pub mod startup;
pub mod store;
pub mod telemetry;
