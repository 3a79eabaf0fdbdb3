//! Signed checkpoints of a ledger's journal and the proofs against them (DESIGN.md: auditors get
//! signed checkpoints, a Merkle root over the journal prefix signed with Ed25519, and inclusion
//! and consistency proofs that they check offline, without trusting the server).
//!
//! - **Checkpoint** of ledger `L` at size `n`: the Merkle root of `L`'s journal through seq `n`
//!   ([`crate::ledger::merkle`]) and the hash of the transaction at seq `n`, signed with the
//!   service's key ([`crate::ledger::checkpoint`], [`super::signing_key`]). The journal is
//!   append-only, so the prefix through `n`, its root and (Ed25519 being deterministic) its
//!   signature never change: any two checkpoints of one size that differ prove a change.
//! - **Inclusion proof** of the transaction at seq `s` in the checkpoint of size `n` (`s <= n`):
//!   its hash and audit path, with that checkpoint signed. With the transaction's hash
//!   recomputed from its content ([`crate::ledger::hash`]; `ReadJournal` gives the content), an
//!   auditor knows the transaction is the one the checkpoint covers.
//! - **Consistency proof** from size `m` to size `n` (`m <= n`): both checkpoints signed and the
//!   path between their roots. An auditor who holds the checkpoint of size `m` checks that its
//!   root is the one proved, and then that the journal through `m` is unchanged in the later one.
//!
//! Before it signs, the service checks the stored chain's links through `n`: seqs dense from 1,
//! each `prev_hash` the hash before it (32 zero bytes before seq 1), every hash 64 lowercase hex
//! digits. A
//! break is refused `FAILED_PRECONDITION` with reason `JOURNAL_BROKEN` and the seq in its
//! metadata, and nothing is signed. It does not recompute each hash from its transaction's
//! content: that is `Verify`'s (run it on the journal before the first checkpoint an auditor
//! keeps; from then on, the checkpoints pin what was verified).
//!
//! Nor does it sign a journal that is not an extension of what its key signed before (since
//! 2026-12-07; [`super::signed_marks`]): the prefix through the largest size it signed of the
//! ledger must have the root it signed, and the journal must reach that size. Refused
//! `FAILED_PRECONDITION` `JOURNAL_BROKEN` with `metadata.signed_size`: the journal was changed
//! under the chain's links, or an older copy was restored (and perhaps written on); nothing is
//! signed. Such a journal is signed only under another key (README, "A restore is a fork of the
//! chain").
//!
//! Refused as `INVALID_ARGUMENT` naming the field, before the journal is read: a `tree_size` or
//! `to_size` beyond the journal's head, a `seq` of 0 or beyond the tree, a `from_size` of 0 or
//! beyond the later size.
//!
//! Cost: every call reads the prefix's `(seq, prev_hash, hash)` in pages and hashes its tree on
//! a blocking thread (about three SHA-256 a transaction for a root and a proof; 64 bytes a
//! transaction in memory while it lasts). Calls take their turn with the other whole-journal reads (`Verify`,
//! `GetBalances`).

use std::sync::Arc;

use ed25519_dalek::SigningKey;

use super::error::{AppError, Refusal, RefusalCode, journal_broken};
use super::signed_marks::SignedMarks;
use crate::domain::error::DomainError;
use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::hash::{GENESIS, Hash, from_hex, is_hex_of};
use crate::ledger::merkle::Tree;
use crate::store::Db;

/// Chain links read a statement.
const LINKS_PAGE: u32 = 10_000;

/// The key that signs checkpoints, and what it has signed.
pub struct CheckpointKey {
    pub key: SigningKey,
    pub marks: SignedMarks,
}

/// A checkpoint with the service's signature and the public key it verifies with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub checkpoint: Checkpoint,
    pub signature: [u8; 64],
    pub public_key: [u8; 32],
}

/// The checkpoint of `ledger_id`'s journal through `tree_size` (`None`: its head). `turn` is
/// held until the tree is hashed (the caller's turn among whole-journal reads: a call dropped by
/// its client still holds it while its blocking work runs).
pub async fn checkpoint(
    db: &Db,
    key: &Arc<CheckpointKey>,
    ledger_id: &str,
    tree_size: Option<u64>,
    turn: impl Send + 'static,
) -> Result<Signed, AppError> {
    let asked = ("tree_size", tree_size);
    on_tree(db, key, ledger_id, asked, None, turn, |signer, tree| signer.sign(tree, tree.size()))
        .await
}

/// An inclusion proof: the transaction at `seq` in the checkpoint through `tree_size` (`None`:
/// the head), with its hash and its audit path. `turn` as for [`checkpoint`].
pub async fn inclusion(
    db: &Db,
    key: &Arc<CheckpointKey>,
    ledger_id: &str,
    seq: u64,
    tree_size: Option<u64>,
    turn: impl Send + 'static,
) -> Result<(Signed, Hash, Vec<Hash>), AppError> {
    if seq == 0 {
        return Err(DomainError::invalid("seq", "must be at least 1").into());
    }
    let (asked, within) = (("tree_size", tree_size), Some(("seq", seq)));
    on_tree(db, key, ledger_id, asked, within, turn, move |signer, tree| {
        let missing = || AppError::Internal(format!("seq {seq} outside {} leaves", tree.size()));
        let path = tree.inclusion(seq).ok_or_else(missing)?;
        let leaf = tree.leaf(seq).ok_or_else(missing)?;
        Ok((signer.sign(tree, tree.size())?, leaf, path))
    })
    .await
}

/// A consistency proof: the checkpoints through `from_size` and through `to_size` (`None`: the
/// head), and the path that shows the first a prefix of the second. `turn` as for
/// [`checkpoint`].
pub async fn consistency(
    db: &Db,
    key: &Arc<CheckpointKey>,
    ledger_id: &str,
    from_size: u64,
    to_size: Option<u64>,
    turn: impl Send + 'static,
) -> Result<(Signed, Signed, Vec<Hash>), AppError> {
    if from_size == 0 {
        return Err(DomainError::invalid("from_size", "must be at least 1").into());
    }
    let (asked, within) = (("to_size", to_size), Some(("from_size", from_size)));
    on_tree(db, key, ledger_id, asked, within, turn, move |signer, to| {
        let path = to.consistency(from_size).ok_or_else(|| {
            AppError::Internal(format!("size {from_size} outside {} leaves", to.size()))
        })?;
        Ok((signer.sign(to, from_size)?, signer.sign(to, to.size())?, path))
    })
    .await
}

/// Signs checkpoints of one ledger with one key.
struct Signer {
    key: Arc<CheckpointKey>,
    ledger_id: String,
}

impl Signer {
    /// The checkpoint of the first `size` leaves of `tree`, signed.
    fn sign(&self, tree: &Tree, size: u64) -> Result<Signed, AppError> {
        let missing =
            || AppError::Internal(format!("a checkpoint of {size} of {} leaves", tree.size()));
        let head = tree.leaf(size).ok_or_else(missing)?;
        let root = tree.root_of_prefix(size).ok_or_else(missing)?;
        // Kept before the signature is given.
        self.key.marks.record(&self.ledger_id, size, &root)?;
        let checkpoint =
            Checkpoint { ledger_id: self.ledger_id.clone(), tree_size: size, root, head };
        let signature = checkpoint.sign(&self.key.key);
        let public_key = self.key.key.verifying_key().to_bytes();
        Ok(Signed { checkpoint, signature, public_key })
    }
}

/// Reads the prefix a call asks ([`prefix`]), then runs `f` on its tree on a blocking thread
/// (CPU-bound), holding `turn` until it ends.
async fn on_tree<T: Send + 'static>(
    db: &Db,
    key: &Arc<CheckpointKey>,
    ledger_id: &str,
    asked: (&str, Option<u64>),
    within: Option<(&str, u64)>,
    turn: impl Send + 'static,
    f: impl FnOnce(&Signer, &Tree) -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    let signed = key.marks.of(ledger_id)?;
    let (hashes, size) = prefix(db, ledger_id, asked, within, signed.map(|(m, _)| m)).await?;
    let signer = Signer { key: key.clone(), ledger_id: ledger_id.to_string() };
    tokio::task::spawn_blocking(move || {
        let tree = Tree::of(hashes);
        let result = match signed {
            Some((signed_size, root)) if tree.root_of_prefix(signed_size) != Some(root) => {
                let what = format!(
                    "through seq {signed_size} is not the journal this key signed a checkpoint \
                     of (its root differs): changed under its links since, or an older copy \
                     restored and written on"
                );
                Err(not_as_signed(&signer.ledger_id, signed_size, &what))
            }
            _ => f(&signer, &tree.truncated(size)),
        };
        drop(turn);
        result
    })
    .await
    .map_err(|e| AppError::Internal(format!("building a Merkle tree failed: {e}")))?
}

/// The hashes of `ledger_id`'s transactions from seq 1 through the size `asked` (its field in
/// the request, and the size; the head's when none), their links checked (the module's doc);
/// `within`, a seq or size the call proves in that tree (named as in the request), is refused
/// first if it is beyond the tree.
async fn prefix(
    db: &Db,
    ledger_id: &str,
    asked: (&str, Option<u64>),
    within: Option<(&str, u64)>,
    signed_size: Option<u64>,
) -> Result<(Vec<Hash>, u64), AppError> {
    let (size_field, asked_size) = asked;
    let head = db.head_seq(ledger_id).await?;
    // A journal shorter than what the key signed, none at all included (since 2026-12-07: a
    // journal emptied under a signed checkpoint was `NOT_FOUND` "has no journal").
    if let Some(signed_size) = signed_size.filter(|&m| m > head) {
        let what = format!(
            "ends at seq {head}, before the end of the journal this key signed a checkpoint of: \
             an older copy restored, or its last transactions taken away"
        );
        return Err(not_as_signed(ledger_id, signed_size, &what));
    }
    if head == 0 {
        return Err(AppError::Refused(Refusal {
            code: RefusalCode::NotFound,
            message: format!("ledger {ledger_id} has no journal"),
            reason: None,
            metadata: Vec::new(),
            field: None,
        }));
    }
    let beyond_head = |field: &str, n: u64| -> AppError {
        DomainError::invalid(field, format!("{n} is beyond the journal's head, seq {head}")).into()
    };
    let size = match asked_size {
        Some(size) if size > head => return Err(beyond_head(size_field, size)),
        Some(size) => size,
        None => head,
    };
    match (within, asked_size) {
        (Some((field, n)), Some(size)) if n > size => {
            return Err(
                DomainError::invalid(field, format!("{n} is beyond {size_field}, {size}")).into()
            );
        }
        (Some((field, n)), None) if n > head => return Err(beyond_head(field, n)),
        _ => {}
    }
    // Read through the size signed too, to check it (a smaller size asked).
    let asked_size = size;
    let size = signed_size.map_or(size, |m| m.max(size));
    // The head is the largest seq stored, which a row written by hand can put anywhere: room
    // for a page, and more as the rows come.
    let mut hashes: Vec<Hash> = Vec::with_capacity(size.min(u64::from(LINKS_PAGE)) as usize);
    let mut prev = GENESIS;
    while (hashes.len() as u64) < size {
        let from = hashes.len() as u64 + 1;
        let links = db.chain_links(ledger_id, from, size, LINKS_PAGE).await?;
        if links.is_empty() {
            return Err(broken(ledger_id, from, "is missing"));
        }
        for (seq, prev_text, hash_text) in links {
            let expected = hashes.len() as u64 + 1;
            if seq < 0 {
                let what = "is missing (a row there has a seq that is not a whole number)";
                return Err(broken(ledger_id, expected, what));
            }
            if u64::try_from(seq).ok() != Some(expected) {
                return Err(broken(ledger_id, expected, "is missing"));
            }
            // As stored by the service: lowercase hex, the form the journal's readers compare.
            if !is_hex_of(&prev_text, &prev) {
                return Err(broken(ledger_id, expected, "does not link to the hash before it"));
            }
            let Some(hash) = from_hex(&hash_text).filter(|h| is_hex_of(&hash_text, h)) else {
                return Err(broken(
                    ledger_id,
                    expected,
                    "has a hash that is not 64 lowercase hex digits",
                ));
            };
            hashes.push(hash);
            prev = hash;
        }
    }
    Ok((hashes, asked_size))
}

/// The refusal of a journal that is not an extension of what the key signed of it, through
/// `signed_size`.
fn not_as_signed(ledger_id: &str, signed_size: u64, what: &str) -> AppError {
    tracing::warn!(ledger_id, signed_size, what, "a journal not as its checkpoints signed it");
    AppError::Refused(Refusal {
        code: RefusalCode::FailedPrecondition,
        message: format!(
            "JOURNAL_BROKEN: ledger {ledger_id}'s journal {what}; nothing is signed over it \
             with this key (a checkpoint of {signed_size} transactions was)"
        ),
        reason: Some("JOURNAL_BROKEN".into()),
        metadata: vec![("signed_size".into(), signed_size.to_string())],
        field: None,
    })
}

fn broken(ledger_id: &str, seq: u64, what: &str) -> AppError {
    journal_broken(ledger_id, seq, what, "nothing is signed over a broken chain")
}
