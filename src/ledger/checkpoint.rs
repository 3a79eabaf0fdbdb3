//! Signed checkpoints: the service's Ed25519 signature over a ledger's journal prefix. Pure: no
//! I/O.
//!
//! A checkpoint names a ledger, a tree size `n` (the journal through seq `n`), the Merkle root
//! of that prefix ([`super::merkle`]) and the hash of its last transaction (the hash chain's
//! head at seq `n`). The signed bytes are this text, UTF-8, each line ending in `\n`:
//!
//! ```text
//! loanledger checkpoint v1
//! ledger <ledger id>
//! size <n, decimal>
//! root <Merkle root, 64 lowercase hex digits>
//! head <hash of the transaction at seq n, 64 lowercase hex digits>
//! ```
//!
//! An identifier never holds a line break, so no two checkpoints have the same text. The
//! signature is Ed25519 (RFC 8032) over it, by the service's signing key, whose public half an
//! auditor pins once (from the operator, or the log line of the server's first start). An auditor
//! who keeps a checkpoint can later prove, offline, that any transaction was in that prefix
//! (an inclusion proof) and that a later checkpoint extends it unchanged (a consistency proof):
//! whoever changes a transaction already checkpointed, even rehashing the chain after it, can
//! no longer show a signed checkpoint consistent with the one the auditor holds.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::hash::{Hash, to_hex};

/// A journal prefix as a checkpoint states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub ledger_id: String,
    pub tree_size: u64,
    pub root: Hash,
    pub head: Hash,
}

impl Checkpoint {
    /// The bytes signed (the module's text).
    pub fn signed_text(&self) -> String {
        format!(
            "loanledger checkpoint v1\nledger {}\nsize {}\nroot {}\nhead {}\n",
            self.ledger_id,
            self.tree_size,
            to_hex(&self.root),
            to_hex(&self.head)
        )
    }

    /// The signature of this checkpoint by `key`.
    pub fn sign(&self, key: &SigningKey) -> [u8; 64] {
        key.sign(self.signed_text().as_bytes()).to_bytes()
    }

    /// Whether `signature` is `key`'s over this checkpoint (strict verification: no malleable
    /// encodings). Never panics, whatever it is given.
    pub fn signed_by(&self, key: &VerifyingKey, signature: &[u8]) -> bool {
        verified(key, &self.signed_text(), signature)
    }
}

/// Whether `signature` is `key`'s over `text`, verified strictly (no malleable encodings, no
/// weak keys). Never panics, whatever it is given.
fn verified(key: &VerifyingKey, text: &str, signature: &[u8]) -> bool {
    Signature::from_slice(signature).is_ok_and(|s| key.verify_strict(text.as_bytes(), &s).is_ok())
}

/// A change of the service's checkpoint signing key, vouched for by both keys (`loanledger
/// rotate-signing-key`): the old key's signature says it hands over to the new one, the new
/// key's that whoever made the statement holds it. An auditor who pinned the old key follows
/// the statement to the new one (`loanledger check --handover`) and needs no new key from
/// anyone. The signed bytes are this text, UTF-8, each line ending in `\n`:
///
/// ```text
/// loanledger key handover v1
/// from <the old public key, 64 lowercase hex digits>
/// to <the new public key, 64 lowercase hex digits>
/// at <when, UTC: YYYY-MM-DDTHH:MM:SSZ>
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    pub from: VerifyingKey,
    pub to: VerifyingKey,
    /// When, as the text has it ([`Handover::AT_FORMAT`]).
    pub at: String,
}

impl Handover {
    /// The form of `at`, UTC: `YYYY-MM-DDTHH:MM:SSZ`.
    pub const AT_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

    /// The bytes signed (the type's text).
    pub fn signed_text(&self) -> String {
        format!(
            "loanledger key handover v1\nfrom {}\nto {}\nat {}\n",
            to_hex(self.from.as_bytes()),
            to_hex(self.to.as_bytes()),
            self.at
        )
    }

    /// The handover from `old` to `new` at `at`, and its two signatures (the old key's, the
    /// new key's).
    pub fn sign(old: &SigningKey, new: &SigningKey, at: String) -> (Self, [u8; 64], [u8; 64]) {
        let h = Handover { from: old.verifying_key(), to: new.verifying_key(), at };
        let text = h.signed_text();
        let (by_old, by_new) = (old.sign(text.as_bytes()), new.sign(text.as_bytes()));
        (h, by_old.to_bytes(), by_new.to_bytes())
    }

    /// Whether `from_signature` is the old key's and `to_signature` the new key's over the text
    /// (strict verification). Never panics, whatever it is given.
    pub fn holds(&self, from_signature: &[u8], to_signature: &[u8]) -> bool {
        let text = self.signed_text();
        self.from != self.to
            && verified(&self.from, &text, from_signature)
            && verified(&self.to, &text, to_signature)
    }
}

/// The public key of hex `text` (64 digits), if it is one.
pub fn public_key_from_hex(text: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handover holds with both keys' signatures over its text, and with nothing else: not
    /// one key's signature twice, not another time or key, not a key handed over to itself.
    #[test]
    fn a_handover_is_vouched_for_by_both_keys() {
        let old = SigningKey::from_bytes(&[1; 32]);
        let new = SigningKey::from_bytes(&[2; 32]);
        let (h, by_old, by_new) = Handover::sign(&old, &new, "2026-12-06T08:00:00Z".into());
        assert!(h.signed_text().starts_with("loanledger key handover v1\nfrom "));
        assert!(h.signed_text().ends_with("\nat 2026-12-06T08:00:00Z\n"));
        assert!(h.holds(&by_old, &by_new));
        assert!(!h.holds(&by_new, &by_old) && !h.holds(&by_old, &by_old));
        let later = Handover { at: "2026-12-07T08:00:00Z".into(), ..h.clone() };
        assert!(!later.holds(&by_old, &by_new));
        let other = Handover { to: SigningKey::from_bytes(&[3; 32]).verifying_key(), ..h.clone() };
        assert!(!other.holds(&by_old, &by_new));
        let (itself, a, b) = Handover::sign(&old, &old, "2026-12-06T08:00:00Z".into());
        assert!(!itself.holds(&a, &b));
        assert!(!h.holds(&[0; 3], &by_new));
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint { ledger_id: "430124".into(), tree_size: 3, root: [0xab; 32], head: [0x01; 32] }
    }

    /// The signed text and a signature by a fixed key, pinned: RFC 8032 signatures are
    /// deterministic, so a change of either fails here.
    #[test]
    fn the_signed_text_and_signature_are_pinned() {
        let c = checkpoint();
        assert_eq!(
            c.signed_text(),
            format!(
                "loanledger checkpoint v1\nledger 430124\nsize 3\nroot {}\nhead {}\n",
                "ab".repeat(32),
                "01".repeat(32)
            )
        );
        let key = SigningKey::from_bytes(&[7; 32]);
        let signature = c.sign(&key);
        assert_eq!(hex::encode(signature), PINNED_SIGNATURE);
        assert!(c.signed_by(&key.verifying_key(), &signature));
    }

    const PINNED_SIGNATURE: &str = "49424838d3bbf2a9af3c230ff5a673acc6a9bda80f26e91dc1a3e1f7485bb48aca5f7461aceb9cb21c0abf69d0e49339a5e181b46d62da3bce5ee72086ae1401";

    #[test]
    fn a_signature_holds_for_its_checkpoint_and_key_alone() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key();
        let c = checkpoint();
        let signature = c.sign(&key);
        for changed in [
            Checkpoint { ledger_id: "430125".into(), ..c.clone() },
            Checkpoint { tree_size: 4, ..c.clone() },
            Checkpoint { root: [0xac; 32], ..c.clone() },
            Checkpoint { head: [0x02; 32], ..c.clone() },
        ] {
            assert!(!changed.signed_by(&public, &signature), "{changed:?}");
        }
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(!c.signed_by(&other, &signature));
        assert!(!c.signed_by(&public, &signature[..63]));
        assert!(!c.signed_by(&public, b""));
        let mut flipped = signature;
        flipped[10] ^= 1;
        assert!(!c.signed_by(&public, &flipped));
    }

    #[test]
    fn a_public_key_reads_from_hex() {
        let public = SigningKey::from_bytes(&[7; 32]).verifying_key();
        assert_eq!(public_key_from_hex(&hex::encode(public.as_bytes())), Some(public));
        assert_eq!(public_key_from_hex("ab"), None);
        assert_eq!(public_key_from_hex("zz"), None);
    }
}
