//! The journal: transactions, postings, accounts and the hash chain. Pure: no I/O.
//!
//! Every accepted command becomes one journal transaction in its ledger's chain. A transaction
//! that moves money carries two or more postings in integer fen that sum to zero (debits
//! positive, credits negative); registry and contract records (a household registered, a
//! contract signed, a policy version) are memo transactions with no postings, kept in the chain
//! so that the facts every later rule depends on are tamper-evident too.

pub mod account;
pub mod checkpoint;
pub mod claim_postings;
pub mod fund_postings;
pub mod hash;
pub mod loan_postings;
pub mod merkle;
pub mod pool_postings;
pub mod posting;
