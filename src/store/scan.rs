//! A ledger's whole journal read in order, for `verify`.
//!
//! The scan walks two ordered ranges side by side, `journal_txn` by `seq` and `posting` by
//! `(seq, idx)` (both primary keys, so both are plain index range scans), and hands each
//! transaction with its postings to a [`JournalVisitor`] on a thread of its own. Posting rows
//! whose `seq` has no transaction are reported too ([`JournalVisitor::orphan_postings`]): a
//! per-transaction lookup of postings would never see them.
//!
//! - **SQLite**: one read transaction (one snapshot) on a connection of the scan's own, through
//!   rusqlite, whose cursor lends each value in place. sqlx's SQLite driver copies every value of
//!   every row and passes each row from its thread to the caller's; on a journal of millions of
//!   entries that was most of verify's time (BENCHMARKS.md, change 18).
//! - **PostgreSQL**: pages of [`SCAN_PAGE_TXNS`] transactions and the postings of the same `seq`
//!   range through sqlx, read by a task while the visitor's thread checks the previous page.
//!
//! The visitor sees the same things in the same order on both backends.

use std::iter::Peekable;
use std::path::PathBuf;

use super::rows::{JournalRow, journal_columns};
use super::{BUSY_TIMEOUT, Db, StoreError};
use crate::domain::money::Fen;
use crate::ledger::posting::Posting;
use crate::on_pool;

/// PostgreSQL: journal transactions per page of the scan; large enough that round trips do not
/// dominate, small enough to keep memory flat on a ledger of millions of entries.
pub const SCAN_PAGE_TXNS: i64 = 10_000;

/// One journal transaction as stored, its text lent by the scan.
#[derive(Debug, Clone, Copy)]
pub struct TxnRef<'a> {
    pub seq: i64,
    pub kind: &'a str,
    pub value_date: &'a str,
    pub recorded_at_us: i64,
    pub actor: &'a str,
    pub request_id: &'a str,
    pub command_json: &'a str,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

/// What a journal scan calls, in `seq` order, on the scan's thread.
pub trait JournalVisitor: Send + 'static {
    /// A transaction with its posting rows in `idx` order.
    fn txn(&mut self, txn: TxnRef<'_>, postings: Vec<Posting>);
    /// Posting rows stored under `seq`, for which there is no transaction (called once per such
    /// `seq`, in order among the transactions).
    fn orphan_postings(&mut self, seq: i64);
}

impl Db {
    /// Walks the journal of `ledger_id` in order, calling `visitor` on a blocking thread, and
    /// gives the visitor back at the end.
    pub async fn scan_journal<V: JournalVisitor>(
        &self,
        ledger_id: &str,
        visitor: V,
    ) -> Result<V, StoreError> {
        match self {
            Db::Sqlite(pool, ..) => {
                let path = pool.connect_options().get_filename().to_path_buf();
                let ledger_id = ledger_id.to_string();
                tokio::task::spawn_blocking(move || scan_sqlite(path, &ledger_id, visitor))
                    .await
                    .map_err(|e| StoreError::Corrupt(format!("journal scan failed: {e}")))?
            }
            Db::Postgres(..) => self.scan_postgres(ledger_id, visitor).await,
        }
    }

    async fn scan_postgres<V: JournalVisitor>(
        &self,
        ledger_id: &str,
        mut visitor: V,
    ) -> Result<V, StoreError> {
        type Page = Result<(Vec<JournalRow>, Vec<PostingRow>), StoreError>;
        let (pages_tx, mut pages) = tokio::sync::mpsc::channel::<Page>(2);
        let checker = tokio::task::spawn_blocking(move || -> Result<V, StoreError> {
            while let Some(page) = pages.blocking_recv() {
                let (txns, postings) = page?;
                let mut merge = PostingMerge::new(postings.into_iter().map(Ok));
                for t in &txns {
                    let postings = merge.take(t.seq, &mut visitor)?;
                    visitor.txn(t.as_ref(), postings);
                }
                merge.finish(&mut visitor)?;
            }
            Ok(visitor)
        });
        let txn_sql = concat!(
            "select ",
            journal_columns!(),
            " from journal_txn where ledger_id = $1 and seq >= $2 order by seq limit $3"
        );
        let posting_sql = "select seq, account, amount_fen from posting \
                           where ledger_id = $1 and seq >= $2 and seq <= $3 order by seq, idx";
        let mut next = 1i64;
        loop {
            let page: Page = async {
                let txns: Vec<JournalRow> = on_pool!(self, p => sqlx::query_as(txn_sql)
                    .bind(ledger_id).bind(next).bind(SCAN_PAGE_TXNS)
                    .fetch_all(p).await?);
                // The last page takes every posting row after it, so that orphans past the
                // last transaction are seen too.
                let last = match txns.last() {
                    Some(t) if txns.len() as i64 == SCAN_PAGE_TXNS => t.seq,
                    _ => i64::MAX,
                };
                let postings: Vec<PostingRow> = on_pool!(self, p => sqlx::query_as(posting_sql)
                    .bind(ledger_id).bind(next).bind(last)
                    .fetch_all(p).await?);
                Ok((txns, postings))
            }
            .await;
            let more = match &page {
                Ok((txns, _)) => match txns.last() {
                    Some(t) if txns.len() as i64 == SCAN_PAGE_TXNS => {
                        next = t.seq + 1;
                        true
                    }
                    _ => false,
                },
                Err(_) => false,
            };
            if pages_tx.send(page).await.is_err() || !more {
                break;
            }
        }
        drop(pages_tx);
        checker.await.map_err(|e| StoreError::Corrupt(format!("journal scan failed: {e}")))?
    }
}

/// `(seq, account, amount_fen)`, in `(seq, idx)` order.
type PostingRow = (i64, String, i64);

impl JournalRow {
    fn as_ref(&self) -> TxnRef<'_> {
        TxnRef {
            seq: self.seq,
            kind: &self.kind,
            value_date: &self.value_date,
            recorded_at_us: self.recorded_at_us,
            actor: &self.actor,
            request_id: &self.request_id,
            command_json: &self.command_json,
            prev_hash: &self.prev_hash,
            hash: &self.hash,
        }
    }
}

fn scan_sqlite<V: JournalVisitor>(
    path: PathBuf,
    ledger_id: &str,
    mut visitor: V,
) -> Result<V, StoreError> {
    use rusqlite::{Connection, OpenFlags};
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // The database file is read through a memory map rather than a copy per page (each page is
    // read once: a third less system time, measured, BENCHMARKS.md change 20). One read
    // transaction: both cursors see the same snapshot.
    conn.execute_batch("pragma mmap_size = 1099511627776; begin")?;
    let mut txns = conn.prepare(
        "select seq, kind, value_date, recorded_at_us, actor, request_id, command_json, \
         prev_hash, hash from journal_txn where ledger_id = ?1 order by seq",
    )?;
    let mut postings = conn.prepare(
        "select seq, account, amount_fen from posting where ledger_id = ?1 order by seq, idx",
    )?;
    let posting_rows = postings.query_map([ledger_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
    })?;
    let mut merge = PostingMerge::new(posting_rows.map(|r| r.map_err(StoreError::from)));
    let mut rows = txns.query([ledger_id])?;
    while let Some(r) = rows.next()? {
        let text = |i: usize| -> Result<&str, StoreError> {
            r.get_ref(i)?
                .as_str()
                .map_err(|e| StoreError::Corrupt(format!("journal column {i}: {e}")))
        };
        let seq: i64 = r.get(0)?;
        let txn = TxnRef {
            seq,
            kind: text(1)?,
            value_date: text(2)?,
            recorded_at_us: r.get(3)?,
            actor: text(4)?,
            request_id: text(5)?,
            command_json: text(6)?,
            prev_hash: text(7)?,
            hash: text(8)?,
        };
        let legs = merge.take(seq, &mut visitor)?;
        visitor.txn(txn, legs);
    }
    merge.finish(&mut visitor)?;
    Ok(visitor)
}

/// Posting rows in `(seq, idx)` order, handed out per transaction.
struct PostingMerge<I: Iterator<Item = Result<PostingRow, StoreError>>> {
    rows: Peekable<I>,
    /// The last `seq` reported as orphaned, so that each is reported once.
    orphan: Option<i64>,
}

impl<I: Iterator<Item = Result<PostingRow, StoreError>>> PostingMerge<I> {
    fn new(rows: I) -> Self {
        PostingMerge { rows: rows.peekable(), orphan: None }
    }

    /// The postings of transaction `seq`; rows of lower `seq`s not yet taken are orphans.
    fn take(
        &mut self,
        seq: i64,
        visitor: &mut impl JournalVisitor,
    ) -> Result<Vec<Posting>, StoreError> {
        let mut legs = Vec::with_capacity(4);
        while let Some(row) = self.rows.next_if(|r| r.as_ref().map_or(true, |(s, ..)| *s <= seq)) {
            let (s, account, amount) = row?;
            if s == seq {
                legs.push(Posting { account, amount: Fen(amount) });
            } else {
                self.orphaned(s, visitor);
            }
        }
        Ok(legs)
    }

    /// Every row left is an orphan.
    fn finish(&mut self, visitor: &mut impl JournalVisitor) -> Result<(), StoreError> {
        while let Some(row) = self.rows.next() {
            let (s, ..) = row?;
            self.orphaned(s, visitor);
        }
        Ok(())
    }

    fn orphaned(&mut self, seq: i64, visitor: &mut impl JournalVisitor) {
        if self.orphan != Some(seq) {
            self.orphan = Some(seq);
            visitor.orphan_postings(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen(Vec<String>);
    impl JournalVisitor for Seen {
        fn txn(&mut self, txn: TxnRef<'_>, postings: Vec<Posting>) {
            let legs: Vec<String> = postings.iter().map(|p| p.account.clone()).collect();
            self.0.push(format!("{}:{}", txn.seq, legs.join(",")));
        }
        fn orphan_postings(&mut self, seq: i64) {
            self.0.push(format!("orphan {seq}"));
        }
    }

    fn txn(seq: i64) -> TxnRef<'static> {
        TxnRef {
            seq,
            kind: "",
            value_date: "",
            recorded_at_us: 0,
            actor: "",
            request_id: "",
            command_json: "",
            prev_hash: "",
            hash: "",
        }
    }

    #[test]
    fn postings_go_with_their_transaction_and_orphans_are_reported_once() {
        let rows: Vec<PostingRow> =
            [(1, "a"), (1, "b"), (2, "x"), (2, "y"), (3, "c"), (5, "z"), (5, "w")]
                .into_iter()
                .map(|(s, a)| (s, a.to_string(), 1))
                .collect();
        let mut seen = Seen::default();
        let mut merge = PostingMerge::new(rows.into_iter().map(Ok));
        for seq in [1, 3, 4] {
            let legs = merge.take(seq, &mut seen).unwrap();
            seen.txn(txn(seq), legs);
        }
        merge.finish(&mut seen).unwrap();
        assert_eq!(seen.0, ["1:a,b", "orphan 2", "3:c", "4:", "orphan 5"]);
    }
}
