//! The Merkle tree of a ledger's journal prefix, as Certificate Transparency's log (RFC 6962
//! §2.1), with its two proofs. Pure: no I/O.
//!
//! - The leaves are the journal's transactions in `seq` order: leaf `i` (from 0) is the stored
//!   hash of the transaction at seq `i + 1`, its 32 raw bytes ([`super::hash`]). A tree of size
//!   `n` is the journal through seq `n`.
//! - Leaf hash `SHA-256(0x00 || txn hash)`, node hash `SHA-256(0x01 || left || right)`, the
//!   split at the largest power of two below the size; the root of the empty tree is
//!   `SHA-256("")`.
//! - An **inclusion proof** (RFC 6962 §2.1.1, the audit path) shows that a transaction is leaf
//!   `seq - 1` of the tree with a given root; a **consistency proof** (§2.1.2) that the tree of
//!   an earlier size is a prefix of a later one: nothing before it was changed, only appended.
//!
//! Anyone can check both with the transaction's hash, the roots and the proof alone, with
//! [`inclusion_holds`] and [`consistency_holds`] (ct-merkle's verification) or any RFC 6962
//! implementation: the roots come signed ([`super::checkpoint`]), so the checker need not trust
//! the server that answered.
//!
//! The tree and its proofs are made here, by the RFC's own recursive definitions (MTH, PATH,
//! SUBPROOF) over the leaves' hashes: about three SHA-256 a transaction for a root and a
//! proof. ct-merkle's tree, built leaf by leaf, hashes each new leaf's whole path again, about
//! `log2(n)` hashes a leaf (17 at 140,000 transactions), which made a checkpoint slower than a
//! verify; its proofs are compared with these for every size up to 70 by a test.

use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use sha2::{Digest, Sha256};

use super::hash::Hash;

/// The largest tree a journal can have: a seq is a positive 64-bit signed integer.
pub const SIZE_MAX: u64 = i64::MAX as u64;

/// A journal prefix's Merkle tree: the transactions' hashes and their leaf hashes.
pub struct Tree {
    hashes: Vec<Hash>,
    leaves: Vec<Hash>,
}

impl Tree {
    /// The tree whose leaves are `hashes`, the transactions' hashes in seq order from seq 1.
    pub fn of(hashes: impl IntoIterator<Item = Hash>) -> Tree {
        let hashes: Vec<Hash> = hashes.into_iter().collect();
        let leaves = hashes.iter().map(leaf_hash).collect();
        Tree { hashes, leaves }
    }

    /// The hash of the transaction at `seq` (1 to [`Tree::size`]).
    pub fn leaf(&self, seq: u64) -> Option<Hash> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.hashes.get(index).copied()
    }

    /// The tree of its first `size` leaves (all of them if it has fewer).
    pub fn truncated(mut self, size: u64) -> Tree {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        self.hashes.truncate(size);
        self.leaves.truncate(size);
        self
    }

    /// The number of leaves: the seq of the last transaction.
    pub fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// The Merkle tree hash (MTH) of the whole tree.
    pub fn root(&self) -> Hash {
        mth(&self.leaves)
    }

    /// The root of the tree of the first `size` leaves (at most [`Tree::size`]).
    pub fn root_of_prefix(&self, size: u64) -> Option<Hash> {
        let size = usize::try_from(size).ok().filter(|&s| s <= self.leaves.len())?;
        Some(mth(&self.leaves[..size]))
    }

    /// The audit path of the transaction at `seq` (1 to [`Tree::size`]), leaf to root; `None`
    /// for a seq outside the tree.
    pub fn inclusion(&self, seq: u64) -> Option<Vec<Hash>> {
        if seq == 0 || seq > self.size() {
            return None;
        }
        let mut path = Vec::new();
        audit_path(usize::try_from(seq - 1).ok()?, &self.leaves, &mut path);
        Some(path)
    }

    /// The proof that the tree of `old_size` leaves (1 to [`Tree::size`]) is a prefix of this
    /// one; `None` for a size outside that range (the empty tree is a prefix of every tree,
    /// with nothing to prove). Empty when the sizes are equal.
    pub fn consistency(&self, old_size: u64) -> Option<Vec<Hash>> {
        if old_size == 0 || old_size > self.size() {
            return None;
        }
        let mut proof = Vec::new();
        subproof(usize::try_from(old_size).ok()?, &self.leaves, true, &mut proof);
        Some(proof)
    }
}

fn leaf_hash(h: &Hash) -> Hash {
    Sha256::new().chain_update([0u8]).chain_update(h).finalize().into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new().chain_update([1u8]).chain_update(left).chain_update(right).finalize().into()
}

/// The largest power of two below `n` (`n` at least 2): where RFC 6962 splits a tree.
fn split(n: usize) -> usize {
    n.next_power_of_two() / 2
}

/// MTH over leaves already hashed (RFC 6962 §2.1).
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest(b"").into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]) (§2.1.1), appended to `out` leaf to root.
fn audit_path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        audit_path(m, &leaves[..k], out);
        out.push(mth(&leaves[k..]));
    } else {
        audit_path(m - k, &leaves[k..], out);
        out.push(mth(&leaves[..k]));
    }
}

/// SUBPROOF(m, D[n], b) (§2.1.2), appended to `out`.
fn subproof(m: usize, leaves: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            out.push(mth(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], whole, out);
        out.push(mth(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(mth(&leaves[..k]));
    }
}

/// Whether `path` proves that `leaf`, a transaction's hash, is the transaction at `seq` in the
/// tree of `size` leaves whose root is `root`. Never panics, whatever it is given.
pub fn inclusion_holds(root: &Hash, size: u64, seq: u64, leaf: &Hash, path: &[Hash]) -> bool {
    // (A seq is a positive i64: larger sizes are no journal's, and ct-merkle's index arithmetic
    // panics on some of them.)
    if seq == 0 || seq > size || size > SIZE_MAX {
        return false;
    }
    let root = RootHash::<Sha256>::new((*root).into(), size);
    let proof = InclusionProof::<Sha256>::from_bytes(path.concat());
    root.verify_inclusion(leaf, seq - 1, &proof).is_ok()
}

/// Whether `path` proves that the tree of `old_size` leaves with root `old_root` is a prefix
/// of the tree of `new_size` leaves with root `new_root`. Equal sizes hold with an empty path
/// and equal roots. Never panics, whatever it is given.
pub fn consistency_holds(
    old_size: u64,
    old_root: &Hash,
    new_size: u64,
    new_root: &Hash,
    path: &[Hash],
) -> bool {
    if old_size == 0 || old_size > new_size || new_size > SIZE_MAX {
        return false;
    }
    if old_size == new_size {
        return path.is_empty() && old_root == new_root;
    }
    let old = RootHash::<Sha256>::new((*old_root).into(), old_size);
    let new = RootHash::<Sha256>::new((*new_root).into(), new_size);
    let proof = ConsistencyProof::<Sha256>::from_digests(path.iter().map(|h| h.into()));
    new.verify_consistency(&old, &proof).is_ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    use super::*;

    /// RFC 6962's MTH by its recursive definition, to check the tree against.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Sha256::digest(b"").into(),
            1 => Sha256::new().chain_update([0u8]).chain_update(leaves[0]).finalize().into(),
            n => {
                let k = n.next_power_of_two() / 2;
                let (l, r) = (mth(&leaves[..k]), mth(&leaves[k..]));
                Sha256::new().chain_update([1u8]).chain_update(l).chain_update(r).finalize().into()
            }
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| Sha256::digest(i.to_be_bytes()).into()).collect()
    }

    /// Pinned: the root of three leaves 0x00.., 0x01.., 0x02.. (32 bytes each), so that a
    /// change of the tree's hashing fails here, not only in the comparison with `mth`.
    #[test]
    fn a_root_is_pinned() {
        let tree = Tree::of((0u8..3).map(|b| [b; 32]));
        assert_eq!(hex::encode(tree.root()), hex::encode(mth(&[[0; 32], [1; 32], [2; 32]])),);
        assert_eq!(
            hex::encode(Tree::of([]).root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(tree.root()),
            "ba8d94b7fbcecae7b81c4c80574fe24734a6917bf9c1ecd66ff3e0c34ead4620"
        );
    }

    #[test]
    fn proofs_outside_the_tree_are_none_and_never_hold() {
        let tree = Tree::of(leaves(5));
        assert_eq!(tree.inclusion(0), None);
        assert_eq!(tree.inclusion(6), None);
        assert_eq!(tree.consistency(0), None);
        assert_eq!(tree.consistency(6), None);
        assert_eq!(tree.consistency(5), Some(Vec::new()));
        let (root, leaf) = (tree.root(), leaves(5)[0]);
        assert!(!inclusion_holds(&root, 5, 0, &leaf, &[]));
        assert!(!inclusion_holds(&root, 5, 6, &leaf, &[]));
        assert!(!inclusion_holds(&root, 0, 1, &leaf, &[]));
        assert!(!consistency_holds(0, &root, 5, &root, &[]));
        assert!(!consistency_holds(6, &root, 5, &root, &[]));
        assert!(consistency_holds(5, &root, 5, &root, &[]));
        assert!(!consistency_holds(5, &root, 5, &leaf, &[]));
        assert!(!consistency_holds(5, &root, 5, &root, &[leaf]));
        for size in [SIZE_MAX + 1, u64::MAX / 2 + 2, u64::MAX - 1, u64::MAX] {
            assert!(!inclusion_holds(&root, size, size, &leaf, &[leaf; 64]));
            assert!(!inclusion_holds(&root, size, 1, &leaf, &[]));
            assert!(!consistency_holds(1, &root, size, &root, &[leaf; 64]));
            assert!(!consistency_holds(size, &root, size, &root, &[]));
        }
        // The largest sizes a journal can have do not panic either, with paths of the length
        // those sizes take (so that the check reaches its hashing).
        for (size, seq) in [(SIZE_MAX, SIZE_MAX), (SIZE_MAX, 1), (SIZE_MAX - 1, SIZE_MAX / 2)] {
            let length = ct_merkle::indices_for_inclusion_proof(size, seq - 1).len();
            assert!(!inclusion_holds(&root, size, seq, &leaf, &vec![leaf; length]));
        }
        for (old, new) in [(SIZE_MAX - 1, SIZE_MAX), (1, SIZE_MAX), (SIZE_MAX / 2, SIZE_MAX)] {
            let length = ct_merkle::indices_for_consistency_proof(old, new - old).len();
            assert!(!consistency_holds(old, &root, new, &root, &vec![leaf; length]));
        }
    }

    /// The proofs made here are ct-merkle's, for every tree size to 70 and every seq and
    /// earlier size in it.
    #[test]
    fn the_proofs_are_ct_merkles() {
        use ct_merkle::mem_backed_tree::MemoryBackedTree;
        let mut theirs = MemoryBackedTree::<Sha256, Hash>::new();
        for n in 1..70u64 {
            theirs.push(leaves(n)[n as usize - 1]);
            let ours = Tree::of(leaves(n));
            assert_eq!(ours.root(), <[u8; 32]>::from(*theirs.root().as_bytes()), "size {n}");
            for seq in 1..=n {
                let expected = theirs.prove_inclusion(seq as usize - 1);
                assert_eq!(
                    ours.inclusion(seq).unwrap().concat(),
                    expected.as_bytes(),
                    "{seq} of {n}"
                );
            }
            for old in 1..n {
                let expected = theirs.prove_consistency((n - old) as usize);
                assert_eq!(
                    ours.consistency(old).unwrap().concat(),
                    expected.as_bytes(),
                    "{old} to {n}"
                );
                assert_eq!(ours.root_of_prefix(old), Some(mth(&leaves(n)[..old as usize])));
            }
        }
    }

    proptest! {
        #[test]
        fn the_root_is_rfc_6962s(n in 0u64..70) {
            prop_assert_eq!(Tree::of(leaves(n)).root(), mth(&leaves(n)));
        }

        /// Every leaf's audit path leads to the root, and to no other: not for another leaf,
        /// another seq, another size, or a path with one hash changed.
        #[test]
        fn an_inclusion_proof_holds_for_its_leaf_alone(n in 1u64..70, pick in 0u64..70, flip in 0usize..8) {
            let all = leaves(n);
            let tree = Tree::of(all.clone());
            let seq = pick % n + 1;
            let path = tree.inclusion(seq).unwrap();
            let (root, leaf) = (tree.root(), all[(seq - 1) as usize]);
            prop_assert!(inclusion_holds(&root, n, seq, &leaf, &path));
            let other: Hash = Sha256::digest(b"other").into();
            prop_assert!(!inclusion_holds(&root, n, seq, &other, &path));
            prop_assert!(!inclusion_holds(&other, n, seq, &leaf, &path));
            if n > 1 {
                let next = seq % n + 1;
                prop_assert!(!inclusion_holds(&root, n, next, &leaf, &path));
            }
            if !path.is_empty() {
                let mut bad = path.clone();
                let i = flip % bad.len();
                bad[i][0] ^= 1;
                prop_assert!(!inclusion_holds(&root, n, seq, &leaf, &bad));
                prop_assert!(!inclusion_holds(&root, n, seq, &leaf, &path[1..]));
            }
        }

        /// The proof from any earlier size holds between the two roots, and fails when the
        /// earlier tree had one transaction changed or the proof one hash.
        #[test]
        fn a_consistency_proof_holds_for_a_prefix_alone(n in 1u64..70, pick in 0u64..70, at in 0u64..70) {
            let all = leaves(n);
            let tree = Tree::of(all.clone());
            let old = pick % n + 1;
            let old_root = mth(&all[..old as usize]);
            let path = tree.consistency(old).unwrap();
            prop_assert!(consistency_holds(old, &old_root, n, &tree.root(), &path));
            let mut changed = all[..old as usize].to_vec();
            changed[(at % old) as usize][0] ^= 1;
            prop_assert!(!consistency_holds(old, &mth(&changed), n, &tree.root(), &path));
            if !path.is_empty() {
                let mut bad = path.clone();
                let i = (at as usize) % bad.len();
                bad[i][31] ^= 1;
                prop_assert!(!consistency_holds(old, &old_root, n, &tree.root(), &bad));
            }
        }
    }
}
