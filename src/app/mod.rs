//! Commands and queries: the writer that commits, and the read side.

pub mod auth;
pub mod backup;
pub mod balances;
pub mod checkpoints;
pub mod command;
pub mod error;
pub mod households;
pub mod listing;
pub mod servicing;
pub mod signing_key;
pub mod subsidy;
pub mod verify;
pub mod writer;
