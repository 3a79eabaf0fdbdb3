//! The canonical encoding of a journal transaction and the per-ledger hash chain.
//!
//! `hash = SHA-256(prev_hash || canonical_bytes)`, where `prev_hash` is the 32 raw bytes of the
//! previous transaction's hash in the same ledger (32 zero bytes before the first), and the
//! canonical bytes of a transaction are, in this order:
//!
//! ```text
//! "LLJ1"                          4 bytes, format tag and version
//! str(ledger_id)
//! u64(seq)
//! str(kind)
//! str(value_date)                 YYYY-MM-DD
//! i64(recorded_at_us)             microseconds since 1970-01-01T00:00:00Z
//! str(actor)
//! str(request_id)
//! str(command_json)               exactly the stored text
//! u32(number of postings)
//! for each posting, in order: str(account) i64(amount_fen)
//! ```
//!
//! where `str(s)` is `u32(byte length)` followed by the UTF-8 bytes, and `u32`, `u64`, `i64` are
//! big-endian (two's complement for `i64`). Lengths make the encoding unambiguous: no two
//! different transactions have the same bytes. The test vectors below pin it; changing the
//! encoding needs a new tag.

use sha2::{Digest, Sha256};

use super::posting::Posting;

pub type Hash = [u8; 32];

/// The hash before the first transaction of a ledger.
pub const GENESIS: Hash = [0u8; 32];

/// The hashed fields of one journal transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnContent<'a> {
    pub ledger_id: &'a str,
    pub seq: u64,
    pub kind: &'a str,
    pub value_date: &'a str,
    pub recorded_at_us: i64,
    pub actor: &'a str,
    pub request_id: &'a str,
    pub command_json: &'a str,
    pub postings: &'a [Posting],
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Every field is bounded far below 4 GiB by the API's limits; saturate rather than wrap.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl TxnContent<'_> {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.write_canonical(&mut out);
        out
    }

    /// About the length of the canonical bytes, to size a buffer for them once.
    fn encoded_len_hint(&self) -> usize {
        128 + self.command_json.len() + 48 * self.postings.len()
    }

    /// Appends the canonical bytes to `out`.
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"LLJ1");
        put_str(out, self.ledger_id);
        out.extend_from_slice(&self.seq.to_be_bytes());
        put_str(out, self.kind);
        put_str(out, self.value_date);
        out.extend_from_slice(&self.recorded_at_us.to_be_bytes());
        put_str(out, self.actor);
        put_str(out, self.request_id);
        put_str(out, self.command_json);
        let n = u32::try_from(self.postings.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for p in self.postings {
            put_str(out, &p.account);
            out.extend_from_slice(&p.amount.0.to_be_bytes());
        }
    }

    /// `SHA-256(prev || canonical_bytes)`.
    pub fn chain_hash(&self, prev: &Hash) -> Hash {
        let mut buf = Vec::with_capacity(prev.len() + self.encoded_len_hint());
        self.chain_hash_with(prev, &mut buf)
    }

    /// [`Self::chain_hash`], encoding into `buf` (cleared first) so that a caller hashing many
    /// transactions reuses one allocation.
    pub fn chain_hash_with(&self, prev: &Hash, buf: &mut Vec<u8>) -> Hash {
        buf.clear();
        buf.extend_from_slice(prev);
        self.write_canonical(buf);
        Sha256::digest(buf.as_slice()).into()
    }
}

/// The stored form of a hash: 64 lowercase hex digits, in one allocation of their size
/// (`hex::encode` grows its string a digit at a time; three hashes a command on the write
/// path, BENCHMARKS-HISTORY.md 60).
pub fn to_hex(hash: &Hash) -> String {
    let mut buf = [0u8; 64];
    // Cannot fail: 32 bytes are 64 digits, and hex digits are ASCII.
    let encoded = hex::encode_to_slice(hash, &mut buf);
    debug_assert!(encoded.is_ok());
    std::str::from_utf8(&buf).map(str::to_owned).unwrap_or_default()
}

/// Whether `text` is exactly the stored form (lowercase hex) of `hash`, without allocating.
pub fn is_hex_of(text: &str, hash: &Hash) -> bool {
    let mut buf = [0u8; 64];
    hex::encode_to_slice(hash, &mut buf).is_ok() && text.as_bytes() == buf
}

pub fn from_hex(text: &str) -> Option<Hash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Fen;

    fn sample_postings() -> Vec<Posting> {
        vec![
            Posting { account: "loan/B1-C1/principal".into(), amount: Fen(5_000_000) },
            Posting { account: "bank/B1/cash".into(), amount: Fen(-5_000_000) },
        ]
    }

    fn sample(postings: &[Posting]) -> TxnContent<'_> {
        TxnContent {
            ledger_id: "450121",
            seq: 7,
            kind: "loan.disbursed",
            value_date: "2021-01-25",
            recorded_at_us: 1_611_532_800_000_000,
            actor: "bank:B1",
            request_id: "r-1",
            command_json: r#"{"type":"disbursed","loan_id":"B1-C1","value_date":"2021-01-25","amount_fen":5000000}"#,
            postings,
        }
    }

    /// Pins the canonical encoding and the chain hash (the figures were computed independently
    /// with Python's hashlib from the byte layout in the module doc). If this test fails, the encoding changed:
    /// every stored chain would stop verifying. Do not update the vector; add a new format tag.
    #[test]
    fn test_vector() {
        let postings = sample_postings();
        let txn = sample(&postings);
        let bytes = txn.canonical_bytes();
        assert_eq!(&bytes[..4], b"LLJ1");
        assert_eq!(&bytes[4..14], b"\0\0\0\x06450121");
        assert_eq!(&bytes[14..22], &7u64.to_be_bytes());
        assert_eq!(bytes.len(), 229);
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            "e07229b0ceb3c0722bb4ef24b2049a1764f349ae8b1b31b6ca7173ba0188a2c3"
        );
        assert_eq!(
            to_hex(&txn.chain_hash(&GENESIS)),
            "fb2a57964425791fca04ba40d80291caaad19b428f05f26cc75823aff23004bc"
        );
    }

    /// A second vector, also computed with Python's hashlib: a memo transaction (no
    /// postings) whose texts are Chinese (lengths are of the UTF-8 bytes, not of the
    /// characters), chained from the first vector's hash.
    #[test]
    fn test_vector_of_a_memo_in_chinese() {
        let command_json = r#"{"type":"household_registered","household_id":"H001","head_name":"韦小宝","village":"那马村"}"#;
        let txn = TxnContent {
            ledger_id: "450121",
            seq: 3,
            kind: "household.registered",
            value_date: "2016-01-01",
            recorded_at_us: 1_611_532_800_000_123,
            actor: "finance:450121",
            request_id: "注册-1",
            command_json,
            postings: &[],
        };
        let bytes = txn.canonical_bytes();
        assert_eq!(bytes.len(), 205);
        assert_eq!(&bytes[bytes.len() - 4..], &0u32.to_be_bytes(), "no postings");
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            "cd439d01d254178c3d505ffbb8b141c013b3f59da1798676373fe1e4dcbf90f5"
        );
        let prev = from_hex("fb2a57964425791fca04ba40d80291caaad19b428f05f26cc75823aff23004bc")
            .expect("the first vector's hash");
        assert_eq!(
            to_hex(&txn.chain_hash(&prev)),
            "3beb37c3c95ca352c140de933900c3417d8db5e88dab5340b65785073d3dfc33"
        );
    }

    #[test]
    fn every_field_changes_the_hash() {
        let postings = sample_postings();
        let base = sample(&postings).chain_hash(&GENESIS);
        let mut other = postings.clone();
        other[0].amount = Fen(5_000_001);
        other[1].amount = Fen(-5_000_001);
        assert_ne!(sample(&other).chain_hash(&GENESIS), base);
        let mut t = sample(&postings);
        t.seq = 8;
        assert_ne!(t.chain_hash(&GENESIS), base);
        let t = sample(&postings);
        assert_ne!(t.chain_hash(&[1u8; 32]), base);
        // Each other field, changed alone.
        let changed: [fn(&mut TxnContent<'_>); 7] = [
            |t| t.ledger_id = "450122",
            |t| t.kind = "loan.repaid",
            |t| t.value_date = "2021-01-26",
            |t| t.recorded_at_us += 1,
            |t| t.actor = "bank:B2",
            |t| t.request_id = "r-2",
            |t| t.command_json = r#"{"type":"disbursed","loan_id":"B1-C2"}"#,
        ];
        for (i, change) in changed.iter().enumerate() {
            let mut t = sample(&postings);
            change(&mut t);
            assert_ne!(t.chain_hash(&GENESIS), base, "field {i}");
        }
        let mut renamed = postings.clone();
        renamed[0].account = "bank/B1/cash2".into();
        assert_ne!(sample(&renamed).chain_hash(&GENESIS), base, "an account's name");
        // Moving bytes between adjacent fields must change the encoding.
        let mut a = sample(&postings);
        a.actor = "bank:B1r";
        a.request_id = "-1";
        assert_ne!(a.chain_hash(&GENESIS), base);
    }

    proptest::proptest! {
        /// The stored form is `hex::encode`'s, and reads back as the same hash.
        #[test]
        fn stored_form_is_lowercase_hex(bytes in proptest::array::uniform32(proptest::num::u8::ANY)) {
            let text = to_hex(&bytes);
            proptest::prop_assert_eq!(&text, &hex::encode(bytes));
            proptest::prop_assert!(is_hex_of(&text, &bytes));
            proptest::prop_assert_eq!(from_hex(&text), Some(bytes));
        }
    }
}
