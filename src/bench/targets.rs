//! The benchmark targets (issue 5; BENCHMARKS.md, "Where the targets stand"), judged from one
//! run's figures. The bench prints them last, so that a run on any machine says which targets
//! it meets there: on this project's 2-core machine the figures move with the host by a factor
//! of two or more from one day to the next (BENCHMARKS.md, "Machine").
//!
//! A target is judged only from a figure that measures it: the settlement target is for a run
//! over 1,000,000 live loans and the singles' and the history reads' for a write load of 64
//! clients, so other runs' figures are shown but not judged, and so is a figure of nothing (a
//! scenario given no work, a ceiling that measured none). A run's verdicts are not asserted
//! anywhere (the test suite's `bench --quick` runs on small numbers and a debug build); they
//! are for the reader.

use std::time::Duration;

/// The database a run wrote to: the rate targets differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend of the bench's `--target`: `sqlite`, or else a PostgreSQL server's URL (as
    /// the bench's scratch databases take it).
    pub fn of_target(target: &str) -> Backend {
        if target == "sqlite" { Backend::Sqlite } else { Backend::Postgres }
    }

    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// Batched postings a second.
    fn batches_min(self) -> f64 {
        match self {
            Backend::Sqlite => 50_000.0,
            Backend::Postgres => 40_000.0,
        }
    }

    /// Single postings a second from 64 clients.
    fn singles_min(self) -> f64 {
        match self {
            Backend::Sqlite => 15_000.0,
            Backend::Postgres => 10_000.0,
        }
    }
}

/// The singles' target is for this many concurrent clients, and the history reads' for the
/// write load they make.
const SINGLES_CLIENTS: usize = 64;
/// The singles' p99, and the loan history reads' under write load.
const SINGLES_P99_MAX: Duration = Duration::from_millis(10);
const HISTORY_P99_MAX: Duration = Duration::from_millis(5);
/// The settlement target: this many live loans in at most [`SETTLEMENT_SECONDS_MAX`].
const SETTLEMENT_LOANS: u64 = 1_000_000;
const SETTLEMENT_SECONDS_MAX: f64 = 60.0;
const VERIFY_MIN: f64 = 1_000_000.0;
/// The batches' target is for calls of this many items.
const BATCH_ITEMS: usize = 1_000;
/// Every write figure against its ceiling.
const RATIO_MIN: f64 = 0.5;

/// What one run measured, as far as the targets judge it (`None`: not measured, or nothing
/// counted).
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Single repayments: the clients that sent them, postings a second and the p99.
    pub singles: Option<(usize, f64, Duration)>,
    /// Batched repayments: items a call, concurrent clients, postings a second.
    pub batches: Option<(usize, usize, f64)>,
    /// The settlement run: loans examined and the seconds it took.
    pub settlement: Option<(u64, f64)>,
    /// The loan history reads' p99, and the clients writing meanwhile.
    pub history_p99: Option<(Duration, usize)>,
    /// Verify, entries a second.
    pub verify: Option<f64>,
    /// Each write figure's name and its ratio to its ceiling (`None`: the figure or its
    /// ceiling counted nothing).
    pub ratios: Vec<(String, Option<f64>)>,
    /// Why no target is judged from this run (`--quick`; commits not durable), if so.
    pub not_judged: Option<String>,
}

/// One target: what it asks, what the run measured, and whether that meets it (`None`: the run
/// measured nothing that can be judged against it).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let met = match self.met {
            Some(true) => "met",
            Some(false) => "not met",
            None => "not judged",
        };
        let measured = if self.measured.is_empty() { "not measured" } else { &self.measured };
        write!(f, "  {met:<10} {}: {measured}", self.target)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `n` with thousands separated by commas (rates are whole numbers here).
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The targets of `backend`, each judged from `m`, in the order.
pub fn judge(backend: Backend, m: &Measured) -> Vec<Verdict> {
    let db = backend.name();
    let mut out = Vec::new();
    let min = backend.batches_min();
    out.push(Verdict {
        target: format!(
            "batched postings ≥ {}/s, {} a call ({db})",
            thousands(min),
            thousands(BATCH_ITEMS as f64)
        ),
        measured: m
            .batches
            .map(|(items, clients, r)| {
                format!("{} a call from {clients}: {}/s", thousands(items as f64), thousands(r))
            })
            .unwrap_or_default(),
        met: m.batches.filter(|&(items, ..)| items == BATCH_ITEMS).map(|(.., r)| r >= min),
    });
    let min = backend.singles_min();
    out.push(Verdict {
        target: format!(
            "single postings from {SINGLES_CLIENTS} clients ≥ {}/s, p99 ≤ {} ({db})",
            thousands(min),
            ms(SINGLES_P99_MAX)
        ),
        measured: m
            .singles
            .map(|(clients, r, p99)| {
                format!("{} clients: {}/s, p99 {}", clients, thousands(r), ms(p99))
            })
            .unwrap_or_default(),
        met: m
            .singles
            .filter(|&(clients, ..)| clients == SINGLES_CLIENTS)
            .map(|(_, r, p99)| r >= min && p99 <= SINGLES_P99_MAX),
    });
    out.push(Verdict {
        target: format!(
            "settlement of {} live loans ≤ {SETTLEMENT_SECONDS_MAX:.0} s",
            thousands(SETTLEMENT_LOANS as f64)
        ),
        measured: m
            .settlement
            .map(|(loans, s)| format!("{} loans in {s:.2} s", thousands(loans as f64)))
            .unwrap_or_default(),
        met: m
            .settlement
            .filter(|&(loans, _)| loans >= SETTLEMENT_LOANS)
            .map(|(_, s)| s <= SETTLEMENT_SECONDS_MAX),
    });
    out.push(Verdict {
        target: format!(
            "loan history p99 ≤ {} under writes from {SINGLES_CLIENTS} clients",
            ms(HISTORY_P99_MAX)
        ),
        measured: m
            .history_p99
            .map(|(p99, writers)| format!("{writers} clients: {}", ms(p99)))
            .unwrap_or_default(),
        met: m
            .history_p99
            .filter(|&(_, writers)| writers == SINGLES_CLIENTS)
            .map(|(p99, _)| p99 <= HISTORY_P99_MAX),
    });
    out.push(Verdict {
        target: format!("verify ≥ {} entries/s", thousands(VERIFY_MIN)),
        measured: m.verify.map(|r| format!("{}/s", thousands(r))).unwrap_or_default(),
        met: m.verify.map(|r| r >= VERIFY_MIN),
    });
    for (what, ratio) in &m.ratios {
        out.push(Verdict {
            target: format!("{what}, ratio to its ceiling ≥ {RATIO_MIN}"),
            measured: ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
            met: ratio.map(|r| r >= RATIO_MIN),
        });
    }
    if m.not_judged.is_some() {
        for verdict in &mut out {
            verdict.met = None;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured() -> Measured {
        Measured {
            singles: Some((64, 15_000.0, Duration::from_millis(10))),
            batches: Some((1_000, 1, 49_999.0)),
            settlement: Some((20_000, 0.5)),
            history_p99: Some((Duration::from_micros(5_001), 64)),
            verify: Some(1_000_000.0),
            ratios: vec![("singles".into(), Some(0.5)), ("batches".into(), Some(0.49))],
            not_judged: None,
        }
    }

    fn met(verdicts: &[Verdict]) -> Vec<Option<bool>> {
        verdicts.iter().map(|v| v.met).collect()
    }

    /// A figure exactly at its target meets it, one just short does not; a settlement over
    /// fewer than a million loans is not judged; the rate targets are the backend's.
    #[test]
    fn each_target_is_judged_at_its_bound() {
        let m = measured();
        let sqlite = judge(Backend::Sqlite, &m);
        assert_eq!(
            met(&sqlite),
            [Some(false), Some(true), None, Some(false), Some(true), Some(true), Some(false)]
        );
        assert_eq!(sqlite[0].target, "batched postings ≥ 50,000/s, 1,000 a call (SQLite)");
        assert_eq!(sqlite[0].measured, "1,000 a call from 1: 49,999/s");
        assert_eq!(sqlite[2].measured, "20,000 loans in 0.50 s");
        let postgres = judge(Backend::Postgres, &m);
        assert_eq!(met(&postgres)[0], Some(true), "40,000/s on PostgreSQL");
        let mut at = m.clone();
        at.batches = Some((1_000, 1, 50_000.0));
        at.history_p99 = Some((Duration::from_millis(5), 64));
        assert_eq!(
            met(&judge(Backend::Sqlite, &at))[..4],
            [Some(true), Some(true), None, Some(true)]
        );
        at.batches = Some((1_000, 2, 39_999.0));
        assert_eq!(met(&judge(Backend::Postgres, &at))[0], Some(false));
        assert_eq!(
            postgres[1].target,
            "single postings from 64 clients ≥ 10,000/s, p99 ≤ 10.00 ms (PostgreSQL)"
        );
    }

    /// The singles need both their rate and their p99, from 64 clients (other counts are not
    /// judged); the million-loan settlement its 60 s.
    #[test]
    fn the_singles_need_their_p99_and_the_settlement_its_million_loans() {
        let mut m = measured();
        m.singles = Some((8, 20_000.0, Duration::from_millis(1)));
        assert_eq!(met(&judge(Backend::Sqlite, &m))[1], None);
        assert_eq!(judge(Backend::Sqlite, &m)[1].measured, "8 clients: 20,000/s, p99 1.00 ms");
        m.singles = Some((64, 20_000.0, Duration::from_micros(10_001)));
        m.settlement = Some((1_000_000, 60.0));
        assert_eq!(met(&judge(Backend::Sqlite, &m))[1..3], [Some(false), Some(true)]);
        m.settlement = Some((1_000_000, 60.1));
        assert_eq!(met(&judge(Backend::Sqlite, &m))[2], Some(false));
    }

    /// What a run did not measure is listed, not judged; so are the history reads under
    /// another write load than the target's, and a ratio of nothing.
    #[test]
    fn what_was_not_measured_is_not_judged() {
        let verdicts = judge(Backend::Postgres, &Measured::default());
        assert_eq!(verdicts.len(), 5);
        assert!(verdicts.iter().all(|v| v.met.is_none() && v.measured.is_empty()));
        let mut m = measured();
        m.history_p99 = Some((Duration::from_millis(1), 8));
        m.ratios[1].1 = None;
        let verdicts = judge(Backend::Sqlite, &m);
        assert_eq!((verdicts[3].met, verdicts[3].measured.as_str()), (None, "8 clients: 1.00 ms"));
        assert_eq!(
            verdicts[6].to_string(),
            "  not judged batches, ratio to its ceiling ≥ 0.5: not measured"
        );
    }

    /// A verdict reads as a line: the verdict, the target, what was measured.
    #[test]
    fn a_verdict_is_one_line() {
        let verdicts = judge(Backend::Sqlite, &measured());
        assert_eq!(
            verdicts[0].to_string(),
            "  not met    batched postings ≥ 50,000/s, 1,000 a call (SQLite): 1,000 a call from 1: \
             49,999/s"
        );
        assert_eq!(
            verdicts[2].to_string(),
            "  not judged settlement of 1,000,000 live loans ≤ 60 s: 20,000 loans in 0.50 s"
        );
        let none = judge(Backend::Sqlite, &Measured::default());
        assert_eq!(none[4].to_string(), "  not judged verify ≥ 1,000,000 entries/s: not measured");
        assert_eq!(
            verdicts[5].to_string(),
            "  met        singles, ratio to its ceiling ≥ 0.5: 0.50"
        );
    }

    /// Batches of another size are shown, not judged; a run whose commits are not durable (or
    /// a quick one) judges nothing.
    #[test]
    fn batches_of_another_size_and_runs_not_durable_are_not_judged() {
        let mut m = measured();
        m.batches = Some((5_000, 1, 90_000.0));
        assert_eq!(met(&judge(Backend::Sqlite, &m))[0], None);
        let m = Measured { not_judged: Some("fsync=off".into()), ..measured() };
        assert!(judge(Backend::Sqlite, &m).iter().all(|v| v.met.is_none()));
        assert_eq!(judge(Backend::Sqlite, &m)[0].measured, "1,000 a call from 1: 49,999/s");
    }

    #[test]
    fn rates_read_with_thousands_separated() {
        let cases = [(0.0, "0"), (999.4, "999"), (1_000.0, "1,000"), (1_234_567.0, "1,234,567")];
        for (n, text) in cases {
            assert_eq!(thousands(n), text);
        }
        assert_eq!(Backend::of_target("postgres://u@h:1/d"), Backend::Postgres);
        assert_eq!(Backend::of_target("postgresql://u@h/d"), Backend::Postgres);
        assert_eq!(Backend::of_target("sqlite"), Backend::Sqlite);
    }
}
