//! A consistent copy of the whole database into a file, taken while the service keeps writing
//! ([`crate::app::backup`] names, hashes and records it).
//!
//! - SQLite: `VACUUM INTO` on a read connection: one read transaction, so the copy is the
//!   database as of one commit, compacted; the writer goes on meanwhile (WAL). The copy is then
//!   put in WAL mode, as the service opens every database, so that opening it later (to verify
//!   it, or to serve it after a restore) changes no byte of it, and the chains' heads are read
//!   from the copy itself.
//! - PostgreSQL: `pg_dump --format=custom` under a snapshot exported by a read-only repeatable
//!   read transaction, in which the chains' heads are read too: the dump and the heads are of
//!   the same instant. The password of the URL, if any (`user:password@` or `password=`), goes
//!   to `pg_dump` in `PGPASSWORD`, not on its command line; the rest of the URL must be one
//!   libpq reads (sqlx's own parameters are not).

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection};

use super::rows::journal_ledgers_cte;
use super::{Db, StoreError};
use crate::domain::lpr::LPR_LEDGER;

/// The last transaction of one chain: the journal a backup holds ends there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChainHead {
    pub ledger_id: String,
    pub seq: i64,
    pub hash: String,
}

/// How long `pg_dump` waits for a table's lock (a migration's) before it gives up, in ms.
const PG_DUMP_LOCK_WAIT_MS: u32 = 60_000;

/// Every chain's head (the ledgers' and the LPR table's), in ledger id order; chains without a
/// transaction are left out. The chains are the journal's own ledger ids, found one step of
/// its key a ledger ([`journal_ledgers_cte`], as verify's `REQUESTS_SQL`): a journal whose
/// `ledger` row is gone is still a chain, which `Verify` and the audit reads serve (until
/// 2026-12-07 the ids came from the `ledger` table, and the manifest left such a chain out).
const HEADS_SQL: &str = concat!(
    journal_ledgers_cte!(),
    "select ledger_id, \
       (select seq from journal_txn j where j.ledger_id = c.ledger_id order by seq desc limit 1), \
       (select hash from journal_txn j where j.ledger_id = c.ledger_id order by seq desc limit 1) \
     from (select l as ledger_id from chained where l is not null union select $1) c \
     order by ledger_id"
);

fn heads_of(rows: Vec<(String, Option<i64>, Option<String>)>) -> Vec<ChainHead> {
    rows.into_iter()
        .filter_map(|(ledger_id, seq, hash)| Some(ChainHead { ledger_id, seq: seq?, hash: hash? }))
        .collect()
}

impl Db {
    /// Writes a copy of the whole database to `path` (which must not exist) and answers the
    /// heads of the chains it holds. `url` is the database's own URL and `pg_dump` the program
    /// that dumps a PostgreSQL database (unused on SQLite).
    pub async fn backup_to(
        &self,
        path: &Path,
        url: &str,
        pg_dump: &Path,
    ) -> Result<Vec<ChainHead>, StoreError> {
        let text = path
            .to_str()
            .ok_or_else(|| StoreError::Corrupt(format!("{} is not UTF-8", path.display())))?;
        match self {
            Db::Sqlite(pool, ..) => {
                let mut conn = pool.acquire().await?;
                // Into the empty file made for it (its mode the caller's). A failure here is
                // the copy's (its disk full, its directory gone), not the database's.
                let copied = sqlx::query("vacuum into $1").bind(text).execute(&mut *conn).await;
                drop(conn);
                copied.map_err(|e| StoreError::Backup(format!("VACUUM INTO {text}: {e}")))?;
                let heads = async {
                    let mut copy = SqliteConnectOptions::new()
                        .filename(path)
                        .journal_mode(SqliteJournalMode::Wal)
                        .connect()
                        .await?;
                    let rows =
                        sqlx::query_as(HEADS_SQL).bind(LPR_LEDGER).fetch_all(&mut copy).await?;
                    copy.close().await?;
                    Ok::<_, sqlx::Error>(heads_of(rows))
                };
                heads.await.map_err(|e| StoreError::Backup(format!("the copy {text}: {e}")))
            }
            Db::Postgres(pool, _) => {
                let mut tx = pool.begin().await?;
                sqlx::query("set transaction isolation level repeatable read, read only")
                    .execute(&mut *tx)
                    .await?;
                // The transaction idles while pg_dump runs: a timeout an operator set on idle
                // transactions would end the snapshot under it.
                sqlx::query("set local idle_in_transaction_session_timeout = 0")
                    .execute(&mut *tx)
                    .await?;
                let snapshot: String =
                    sqlx::query_scalar("select pg_export_snapshot()").fetch_one(&mut *tx).await?;
                let rows = sqlx::query_as(HEADS_SQL).bind(LPR_LEDGER).fetch_all(&mut *tx).await?;
                let (url, password) = without_password(url);
                let mut dump = tokio::process::Command::new(pg_dump);
                dump.arg("--format=custom")
                    .arg(format!("--snapshot={snapshot}"))
                    // A table locked by a migration: fail rather than wait without end.
                    .arg(format!("--lock-wait-timeout={PG_DUMP_LOCK_WAIT_MS}"))
                    .arg("--no-password")
                    .arg("--file")
                    .arg(path)
                    .arg("--dbname")
                    .arg(&url)
                    .kill_on_drop(true);
                if let Some(password) = password {
                    dump.env("PGPASSWORD", password);
                }
                let out = dump.output().await.map_err(|e| {
                    StoreError::Backup(format!("{} could not be run: {e}", pg_dump.display()))
                })?;
                // The snapshot had to stay open until pg_dump had taken it up; once it is
                // done, the transaction's end changes nothing of the dump.
                let _ = tx.rollback().await;
                if !out.status.success() {
                    return Err(StoreError::Backup(format!(
                        "{} failed ({}): {}",
                        pg_dump.display(),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                Ok(heads_of(rows))
            }
        }
    }
}

/// `url` without its password (the user's `user:password@`, or a `password=` parameter), and
/// the password (decoded), for a program that would otherwise show it on its command line.
fn without_password(url: &str) -> (String, Option<String>) {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_string(), None);
    };
    let decode = |p: &str| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned();
    let mut password = parsed.password().map(decode);
    if password.is_some() && parsed.set_password(None).is_err() {
        return (url.to_string(), None);
    }
    // The other parameters kept as written: re-encoding them would change what libpq reads
    // (a space written %20 would become +, which libpq does not decode).
    if let Some(query) = parsed.query().map(str::to_string) {
        let (given, kept): (Vec<&str>, Vec<&str>) =
            query.split('&').partition(|part| part.starts_with("password="));
        if let Some(given) = given.last() {
            password = password.or(Some(decode(&given["password=".len()..])));
            parsed.set_query((!kept.is_empty()).then(|| kept.join("&")).as_deref());
        }
    }
    (parsed.to_string(), password)
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn a_password_leaves_the_url_for_the_environment() {
        assert_eq!(
            without_password("postgres://app:s%40cret@db.example:5432/books?sslmode=require"),
            (
                "postgres://app@db.example:5432/books?sslmode=require".to_string(),
                Some("s@cret".to_string())
            )
        );
        assert_eq!(
            without_password("postgres://app@db/books?password=s%26x&sslmode=require"),
            ("postgres://app@db/books?sslmode=require".to_string(), Some("s&x".to_string()))
        );
        assert_eq!(
            without_password("postgres://app@db/books?options=-c%20x%3Dy&password=p"),
            ("postgres://app@db/books?options=-c%20x%3Dy".to_string(), Some("p".to_string()))
        );
        assert_eq!(
            without_password("postgres://app@db/books?password=p"),
            ("postgres://app@db/books".to_string(), Some("p".to_string()))
        );
        assert_eq!(
            without_password("postgres://postgres@127.0.0.1:55432/t"),
            ("postgres://postgres@127.0.0.1:55432/t".to_string(), None)
        );
    }
}
