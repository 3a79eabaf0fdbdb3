//! The hash maps and sets of the write path and of `verify`, keyed by the service's own ids
//! (loan and ledger ids, accounts, request keys): std's maps with foldhash instead of std's
//! SipHash-1-3.
//!
//! Each map is seeded at random, as std's are; foldhash resists less deliberate collision
//! than SipHash, which is acceptable here because every key comes from an authenticated
//! caller (a bank or the finance office) and a collision attack would slow only its own
//! requests' group. SipHash was about 3% of the CPU of a settlement run (BENCHMARKS-HISTORY.md 59).

/// A `std::collections::HashMap` with foldhash; build one with `default()`.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A `std::collections::HashSet` with foldhash; build one with `default()`.
pub type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
