//! PostgreSQL's binary `COPY ... TO STDOUT (FORMAT binary)` output, read in place: verify's
//! journal scan on PostgreSQL ([`super::scan`]).
//!
//! Through sqlx's rows every value of every row is decoded into a value of its own (a `String`
//! per text column, found by its column name); the journal's pages were most of a PostgreSQL
//! verify's client time. The binary copy format is a header, then per row a field count and per
//! field a length and the value's bytes (`bigint` as 8 bytes big-endian, `text` as its UTF-8
//! bytes, no escaping), then a trailer (a field count of -1). The rows are read from one buffer
//! and their text lent, as rusqlite's cursor lends it on SQLite.
//!
//! `COPY` takes no bind parameters: the statement's only text value (the ledger id) is read by
//! the query from a setting of the transaction ([`LEDGER_SETTING`], set through a bound
//! parameter), and the numbers are formatted into it.
//!
//! Reference: <https://www.postgresql.org/docs/15/sql-copy.html>, "Binary Format".

use super::StoreError;

/// Sent after `begin`: the rest of the transaction reads in one snapshot and writes nothing.
pub(super) const READ_ONLY: &str = "set transaction isolation level repeatable read, read only";

/// `query`'s rows as a binary copy to the client.
pub(super) fn binary_copy(query: &str) -> String {
    format!("copy ({query}) to stdout (format binary)")
}

/// The transaction-local setting the copy statements read the ledger id from.
pub(super) const LEDGER_SETTING: &str = "loanledger.scan_ledger";

/// For the rest of the transaction on `conn`: [`LEDGER_SETTING`] set to `ledger_id`, and no
/// sorting in plans (`enable_sort = off`), so that a page of the journal is read along its key's
/// index in key order whatever the table's statistics. On a database never analysed (a fresh
/// one, a restored dump: PostgreSQL 15 restores no statistics) the planner took the index for a
/// few hundred rows and sorted all the rows from the page's start onwards on disk for each
/// page of 10,000: verify ran at 85,000–90,000 entries/s instead of 225,000–260,000 (half the
/// bench's runs, depending on whether autovacuum had analysed the tables yet; BENCHMARKS-HISTORY.md 46).
pub(super) async fn scan_settings(
    conn: &mut sqlx::PgConnection,
    ledger_id: &str,
) -> Result<(), StoreError> {
    sqlx::query("select set_config($1, $2, true), set_config('enable_sort', 'off', true)")
        .bind(LEDGER_SETTING)
        .bind(ledger_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A text field's bytes as text.
fn utf8(bytes: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(bytes).map_err(|_| corrupt("text not UTF-8"))
}

/// The signature at the start of every binary copy.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// A cursor over one binary copy's bytes.
pub(super) struct CopyReader<'a> {
    rest: &'a [u8],
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("binary copy from PostgreSQL: {what}"))
}

impl<'a> CopyReader<'a> {
    /// The rows after the header of `data`.
    pub(super) fn new(data: &'a [u8]) -> Result<Self, StoreError> {
        let mut r = CopyReader { rest: data };
        if r.take(SIGNATURE.len())? != SIGNATURE {
            return Err(corrupt("no signature"));
        }
        let _flags = r.int4()?;
        let extension = usize::try_from(r.int4()?).map_err(|_| corrupt("header extension"))?;
        r.take(extension)?;
        Ok(r)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.rest.len() < n {
            return Err(corrupt("cut short"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn int2(&mut self) -> Result<i16, StoreError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn int4(&mut self) -> Result<i32, StoreError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Starts the next row, which must have `fields` fields; `false` at the trailer, after which
    /// nothing may follow.
    pub(super) fn row(&mut self, fields: usize) -> Result<bool, StoreError> {
        match self.int2()? {
            -1 if self.rest.is_empty() => Ok(false),
            -1 => Err(corrupt("data after the trailer")),
            n if usize::try_from(n).ok() == Some(fields) => Ok(true),
            n => Err(corrupt(&format!("a row of {n} fields, expected {fields}"))),
        }
    }

    /// The next field's bytes (the columns read are all `not null`).
    fn field(&mut self) -> Result<&'a [u8], StoreError> {
        self.field_or_null()?.ok_or_else(|| corrupt("a null value"))
    }

    /// The next field's bytes, `None` for a null.
    fn field_or_null(&mut self) -> Result<Option<&'a [u8]>, StoreError> {
        match self.int4()? {
            -1 => Ok(None),
            len => {
                let len = usize::try_from(len).map_err(|_| corrupt("a negative length"))?;
                self.take(len).map(Some)
            }
        }
    }

    /// Passes over the next `n` fields unread.
    pub(super) fn skip(&mut self, n: usize) -> Result<(), StoreError> {
        for _ in 0..n {
            self.field()?;
        }
        Ok(())
    }

    /// The next field, a `bigint`.
    pub(super) fn int8(&mut self) -> Result<i64, StoreError> {
        let b: [u8; 8] = self.field()?.try_into().map_err(|_| corrupt("a bigint not 8 bytes"))?;
        Ok(i64::from_be_bytes(b))
    }

    /// The next field, a `text`, lent from the buffer.
    pub(super) fn text(&mut self) -> Result<&'a str, StoreError> {
        utf8(self.field()?)
    }

    /// The next field, an `integer`.
    pub(super) fn int4_field(&mut self) -> Result<i32, StoreError> {
        let b: [u8; 4] = self.field()?.try_into().map_err(|_| corrupt("an integer not 4 bytes"))?;
        Ok(i32::from_be_bytes(b))
    }

    /// The next field, a `boolean`.
    pub(super) fn boolean(&mut self) -> Result<bool, StoreError> {
        match self.field()? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(corrupt("a boolean not 0 or 1")),
        }
    }

    /// The next field, a `text` that may be null.
    pub(super) fn text_or_null(&mut self) -> Result<Option<&'a str>, StoreError> {
        self.field_or_null()?.map(utf8).transpose()
    }
}

/// Runs `statement` (a `COPY ... TO STDOUT (FORMAT binary)`) and gathers its output into
/// `data` (emptied first; a buffer handed back by the page's reader, whose memory is already
/// the process's: a buffer grown by doubling from nothing touched twice its size in fresh memory
/// for every page, and copied itself on the way), with room for `capacity` bytes to begin with.
pub(super) async fn copy_out(
    conn: &mut sqlx::PgConnection,
    statement: &str,
    mut data: Vec<u8>,
    capacity: usize,
) -> Result<Vec<u8>, StoreError> {
    use tokio_stream::StreamExt;
    let mut chunks = conn.copy_out_raw(statement).await?;
    data.clear();
    data.reserve(capacity);
    while let Some(chunk) = chunks.next().await {
        data.extend_from_slice(&chunk?);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary copy of `rows`, each a list of fields (`None`: null), as PostgreSQL writes it.
    fn copy(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend(0i32.to_be_bytes());
        out.extend(4i32.to_be_bytes());
        out.extend(b"ext!");
        for row in rows {
            out.extend((row.len() as i16).to_be_bytes());
            for field in row {
                match field {
                    Some(b) => {
                        out.extend((b.len() as i32).to_be_bytes());
                        out.extend(*b);
                    }
                    None => out.extend((-1i32).to_be_bytes()),
                }
            }
        }
        out.extend((-1i16).to_be_bytes());
        out
    }

    #[test]
    fn rows_read_in_place() {
        let seq = 42i64.to_be_bytes();
        let big = (-7_000_000_000i64).to_be_bytes();
        let data = copy(&[
            vec![Some(&seq[..]), Some("loan.repaid".as_bytes()), Some(&big[..])],
            vec![Some(&big[..]), Some("".as_bytes()), Some(&seq[..])],
        ]);
        let mut r = CopyReader::new(&data).unwrap();
        assert!(r.row(3).unwrap());
        assert_eq!(
            (r.int8().unwrap(), r.text().unwrap(), r.int8().unwrap()),
            (42, "loan.repaid", -7_000_000_000)
        );
        assert!(r.row(3).unwrap());
        assert_eq!(
            (r.int8().unwrap(), r.text().unwrap(), r.int8().unwrap()),
            (-7_000_000_000, "", 42)
        );
        assert!(!r.row(3).unwrap());
        // Fields passed over unread.
        let mut r = CopyReader::new(&data).unwrap();
        assert!(r.row(3).unwrap());
        r.skip(3).unwrap();
        assert!(r.row(3).unwrap());
        r.skip(1).unwrap();
        assert_eq!(r.text().unwrap(), "");
        r.skip(1).unwrap();
        assert!(!r.row(3).unwrap());
    }

    #[test]
    fn anything_else_is_corrupt() {
        let seq = 1i64.to_be_bytes();
        let good = copy(&[vec![Some(&seq[..])]]);
        let read_all = |data: &[u8], fields: usize| -> Result<Vec<i64>, StoreError> {
            let mut r = CopyReader::new(data)?;
            let mut seqs = Vec::new();
            while r.row(fields)? {
                seqs.push(r.int8()?);
            }
            Ok(seqs)
        };
        assert_eq!(read_all(&good, 1).unwrap(), [1]);
        let mut after_trailer = good.clone();
        after_trailer.push(0);
        for (data, fields) in [
            (&b"PGCOPY\n\xff\r\n\x01"[..], 1),           // a wrong signature
            (&good[..good.len() - 1], 1),                // the trailer cut short
            (&good[..good.len() - 4], 1),                // a value cut short
            (&after_trailer[..], 1),                     // bytes after the trailer
            (&good[..], 2),                              // another number of fields
            (&copy(&[vec![None]])[..], 1),               // a null
            (&copy(&[vec![Some(&b"1234"[..])]])[..], 1), // a bigint of 4 bytes
        ] {
            assert!(matches!(read_all(data, fields), Err(StoreError::Corrupt(_))), "{data:?}");
        }
        let not_utf8 = copy(&[vec![Some(&b"\xff\xfe"[..])]]);
        let mut r = CopyReader::new(&not_utf8).unwrap();
        assert!(r.row(1).unwrap());
        assert!(matches!(r.text(), Err(StoreError::Corrupt(_))), "text not UTF-8");
    }

    #[test]
    fn integers_booleans_and_nullable_text() {
        let four = (-5i32).to_be_bytes();
        let data = copy(&[
            vec![Some(&four[..]), Some(&[1u8][..]), None],
            vec![Some(&four[..]), Some(&[0u8][..]), Some("B1-2021".as_bytes())],
        ]);
        let mut r = CopyReader::new(&data).unwrap();
        assert!(r.row(3).unwrap());
        assert_eq!(
            (r.int4_field().unwrap(), r.boolean().unwrap(), r.text_or_null().unwrap()),
            (-5, true, None)
        );
        assert!(r.row(3).unwrap());
        assert_eq!(
            (r.int4_field().unwrap(), r.boolean().unwrap(), r.text_or_null().unwrap()),
            (-5, false, Some("B1-2021"))
        );
        assert!(!r.row(3).unwrap());
        for (field, read) in [
            (&b"\x00\x00\x00\x00\x07"[..], 0), // an integer of 5 bytes
            (&b"\x02"[..], 1),                 // a boolean neither 0 nor 1
            (&b"\xff"[..], 2),                 // text not UTF-8
        ] {
            let data = copy(&[vec![Some(field)]]);
            let mut r = CopyReader::new(&data).unwrap();
            assert!(r.row(1).unwrap());
            let corrupt = match read {
                0 => r.int4_field().is_err(),
                1 => r.boolean().is_err(),
                _ => r.text_or_null().is_err(),
            };
            assert!(corrupt, "{field:?}");
        }
    }
}
