//! A Merkle tree of the RFC 6962 shape (RFC 9162 §2.1): pure, no I/O.
//!
//! leaf hash = SHA-256(0x00 || leaf bytes), node hash = SHA-256(0x01 || left || right); a tree of
//! n > 1 leaves splits at k, the largest power of two below n. The ledger's leaf bytes are the
//! 32 raw bytes of an event's chain hash (docs/AUDIT.md). Functions here take leaf *hashes*.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: usize) -> usize {
    debug_assert!(n > 1);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]) over leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]): the audit path of leaf `index` (0-based). `None` when out of range.
pub fn inclusion_path(index: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    path_into(index, leaves, &mut path);
    Some(path)
}

fn path_into(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path_into(m, &leaves[..k], out);
        out.push(root(&leaves[k..]));
    } else {
        path_into(m - k, &leaves[k..], out);
        out.push(root(&leaves[..k]));
    }
}

/// PROOF(m, D[n]): the consistency proof from the first `old_size` leaves to all of them.
/// `None` when `old_size` exceeds the tree.
pub fn consistency_proof(old_size: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    if old_size > leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    if old_size > 0 {
        subproof(old_size, leaves, true, &mut proof);
    }
    Some(proof)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root(&leaves[..k]));
    }
}

/// RFC 9162 §2.1.3.2: does `path` prove leaf hash `leaf` at `index` in a tree of `size` with `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `old_size` with `old_root` is a prefix
/// of the tree of `new_size` with `new_root`?
pub fn verify_consistency(old_size: u64, new_size: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty() && *old_root == empty_root();
    }
    let mut nodes: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        nodes.push(*old_root);
    }
    nodes.extend_from_slice(proof);
    let Some((first, rest)) = nodes.split_first() else { return false };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *old_root && sr == *new_root && snode == 0
}

/// The compact range of a growing tree: the roots of its perfect subtrees, largest first,
/// O(log n) hashes, enough to give the root at the current size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// A frontier from stored peaks; `None` unless their count fits `size` (one per set bit).
    pub fn from_parts(size: u64, peaks: Vec<Hash>) -> Option<Self> {
        (size.count_ones() as usize == peaks.len()).then_some(Self { size, peaks })
    }

    pub fn push(&mut self, leaf: Hash) {
        self.peaks.push(leaf);
        let mut s = self.size;
        while s & 1 == 1 {
            let right = self.peaks.pop().expect("a peak per set bit");
            let left = self.peaks.pop().expect("a peak per set bit");
            self.peaks.push(node_hash(&left, &right));
            s >>= 1;
        }
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else { return empty_root() };
        peaks.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Hex of a hash.
pub fn to_hex(hash: &Hash) -> String {
    hex::encode(hash)
}

/// A hash from 64 hex digits.
pub fn from_hex(text: &str) -> Option<Hash> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaves of Certificate Transparency's reference tests (merkle_tree_test.cc).
    fn ct_leaves() -> Vec<Hash> {
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
            .iter()
            .map(|h| leaf_hash(&hex::decode(h).unwrap()))
            .collect()
    }

    fn h(text: &str) -> Hash {
        from_hex(text).unwrap()
    }

    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn roots_match_the_reference_vectors() {
        let leaves = ct_leaves();
        assert_eq!(to_hex(&root(&[])), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        for (n, expected) in CT_ROOTS.iter().enumerate() {
            assert_eq!(to_hex(&root(&leaves[..=n])), *expected, "size {}", n + 1);
        }
    }

    #[test]
    fn frontier_gives_the_root_at_every_size() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut frontier = Frontier::default();
        assert_eq!(frontier.root(), empty_root());
        for n in 1..=leaves.len() {
            frontier.push(leaves[n - 1]);
            assert_eq!(frontier.root(), root(&leaves[..n]), "size {n}");
            assert!(frontier.peaks().len() <= 7);
            let again = Frontier::from_parts(frontier.size(), frontier.peaks().to_vec()).unwrap();
            assert_eq!(again, frontier);
        }
        assert!(Frontier::from_parts(3, vec![empty_root()]).is_none());
    }

    #[test]
    fn inclusion_paths_match_the_reference_vectors() {
        let leaves = ct_leaves();
        let path = inclusion_path(0, &leaves).unwrap();
        let expected = [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ];
        assert_eq!(path, expected.map(h).to_vec());
        assert!(inclusion_path(8, &leaves).is_none());
    }

    #[test]
    fn consistency_proofs_match_the_reference_vectors() {
        let leaves = ct_leaves();
        let cases: [(usize, &[&str]); 3] = [
            (
                1,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (m, expected) in cases {
            let n = if m == 2 { 5 } else { 8 };
            let proof = consistency_proof(m, &leaves[..n]).unwrap();
            assert_eq!(proof, expected.iter().map(|e| h(e)).collect::<Vec<_>>(), "{m} -> {n}");
        }
    }

    /// Every inclusion and consistency proof of trees up to 40 leaves checks, and each one
    /// refuses a changed sibling, a wrong index and a wrong root (the sizes are pinned by
    /// the signed checkpoints, see the note below).
    #[test]
    fn every_proof_checks_and_every_forgery_is_refused() {
        let leaves: Vec<Hash> = (0u32..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let bogus = leaf_hash(b"forged");
        for n in 1..=leaves.len() {
            let tree = &leaves[..n];
            let r = root(tree);
            for i in 0..n {
                let path = inclusion_path(i, tree).unwrap();
                assert!(verify_inclusion(i as u64, n as u64, &tree[i], &path, &r), "{i} in {n}");
                assert!(!verify_inclusion(i as u64, n as u64, &bogus, &path, &r));
                assert!(!verify_inclusion(i as u64, n as u64, &tree[i], &path, &bogus));
                // (A path alone does not pin the tree size: 0 in 3 also checks as 0 in 4 against the
                // same root. The size is pinned by the signed checkpoint: `check::check_proof`.)
                if n > 1 {
                    assert!(!verify_inclusion(((i + 1) % n) as u64, n as u64, &tree[i], &path, &r));
                    for s in 0..path.len() {
                        let mut wrong = path.clone();
                        wrong[s] = bogus;
                        assert!(!verify_inclusion(i as u64, n as u64, &tree[i], &wrong, &r), "sibling {s}");
                    }
                }
            }
            for m in 0..=n {
                let old = root(&leaves[..m]);
                let proof = consistency_proof(m, tree).unwrap();
                assert!(verify_consistency(m as u64, n as u64, &old, &r, &proof), "{m} -> {n}");
                assert!(!verify_consistency(m as u64, n as u64, &bogus, &r, &proof) || m == 0);
                // Every tree extends the empty one.
                assert!(!verify_consistency(m as u64, n as u64, &old, &bogus, &proof) || m == 0);
                if m > 0 && m < n {
                    for s in 0..proof.len() {
                        let mut wrong = proof.clone();
                        wrong[s] = bogus;
                        assert!(!verify_consistency(m as u64, n as u64, &old, &r, &wrong), "node {s} of {m} -> {n}");
                    }
                }
            }
        }
    }
}
