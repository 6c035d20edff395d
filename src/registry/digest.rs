//! Keyed 128-bit digests of usernames and e-mail addresses, so that the writer's registry index
//! answers "is this name taken?" and "did this address change?" without holding the strings
//! (issue 7: at 200,000 users the strings and their maps were 95 MiB of the writer's heap).
//!
//! A digest is the first 16 bytes of SHA-256 over a key drawn at random once per process and
//! the text. The index is built anew from the registry tables at every start (it is not in the
//! snapshot), so a per-process key is enough, and a client cannot choose two texts that collide
//! without knowing it. Two different texts collide by chance with probability about n² / 2¹²⁹
//! for n texts: for 10⁷ users below 10⁻²³, far below the chance of a disk or memory error
//! deciding the answer instead. A collision could only make a name or an address look taken
//! (a false refusal), never let two live users share one.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The keyed digest of one text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TextDigest([u8; 16]);

impl std::fmt::Debug for TextDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextDigest({})", hex::encode(self.0))
    }
}

/// SHA-256 with the process's key absorbed: one 64-byte block, so a short text costs one more
/// compression.
fn keyed() -> &'static Sha256 {
    static KEYED: OnceLock<Sha256> = OnceLock::new();
    KEYED.get_or_init(|| {
        let mut key = [0u8; 64];
        getrandom::getrandom(&mut key).expect("the operating system's random source");
        let mut hasher = Sha256::new();
        hasher.update(key);
        hasher
    })
}

impl TextDigest {
    /// 64 bits of the digest, as a hash table's hash: the digest is uniformly random already.
    pub fn hash64(&self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().expect("eight of sixteen bytes"))
    }

    /// The digest of `text` exactly as given.
    pub fn of(text: &str) -> Self {
        let mut hasher = keyed().clone();
        hasher.update(text.as_bytes());
        let full = hasher.finalize();
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&full[..16]);
        Self(digest)
    }

    /// The digest of an e-mail address as its uniqueness is judged: ignoring case. `None` for
    /// the empty address, which is never taken.
    pub fn of_email_key(email: &str) -> Option<Self> {
        (!email.is_empty()).then(|| Self::of(&email.to_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // given two texts, when digested, then equal texts give equal digests and different texts
    // (also differing only in case) different ones; the e-mail key ignores case.
    #[test]
    fn digests_tell_texts_apart_and_the_email_key_ignores_case() {
        assert_eq!(TextDigest::of("anna"), TextDigest::of("anna"));
        assert_ne!(TextDigest::of("anna"), TextDigest::of("Anna"));
        assert_ne!(TextDigest::of("anna"), TextDigest::of("anna "));
        assert_eq!(TextDigest::of_email_key("Anna@Example.org"), TextDigest::of_email_key("anna@example.ORG"));
        assert_ne!(TextDigest::of_email_key("anna@example.org"), TextDigest::of_email_key("bert@example.org"));
        assert_eq!(TextDigest::of_email_key(""), None);
    }
}
