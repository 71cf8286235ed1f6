//! How adjudication checks signatures: [`SignatureCheck`], with the plain strict check
//! ([`Strict`]) and a bounded memo of checks that already passed ([`VerifiedMemo`]).
//!
//! A node verifies each proposal's signature at its front door (so unsigned junk never
//! reaches the log) and again when its replica applies the committed entry (authorization
//! is replayable state, not a gateway filter). On the node that received the request
//! those are the same check of the same bytes, and a deferred proposal is checked again
//! when a wave releases it. Strict ed25519 verification is a pure function of (author key,
//! proposal id, signature), so its result can be remembered: [`VerifiedMemo`] keeps a
//! digest of each (id, author key, signature) triple that verified, and answers a repeat
//! without the curve arithmetic. A miss verifies in full. Failures are never
//! remembered, so the memo can only skip work, never change an answer: every replica and
//! every audit still reaches the same decision, memo or not (`tests/properties.rs` runs
//! the same commands through both).
//!
//! The memo is bounded ([`VerifiedMemo::CAPACITY`]) and forgets oldest-first; it also
//! keeps the decompressed public keys of authors whose signatures verified
//! ([`VerifiedMemo::KEYS_MAX`]), which saves a point decompression on every miss by a
//! known author.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ed25519_dalek::VerifyingKey;

use crate::id::{ProposalId, PublicKey};
use crate::proposal::{SignatureError, SignedProposal};

/// Checks a proposal's signature over its id. Implementations must answer exactly as
/// [`SignedProposal::verify`] does; they may only differ in how much work they repeat.
pub trait SignatureCheck: Send + Sync {
    fn check(&self, signed: &SignedProposal, id: &ProposalId) -> Result<(), SignatureError>;
}

/// Verifies every time: [`SignedProposal::verify`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Strict;

impl SignatureCheck for Strict {
    fn check(&self, signed: &SignedProposal, id: &ProposalId) -> Result<(), SignatureError> {
        signed.verify(id)
    }
}

/// BLAKE3 of (proposal id, author key, signature) under a domain tag: names exactly one
/// (key, message, signature) triple, whatever id a caller passes (the author is in the
/// key, not inferred from the id), in 32 bytes.
type Verified = [u8; 32];

fn verified_key(signed: &SignedProposal, id: &ProposalId) -> Verified {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"docket/signature-memo/v1");
    hasher.update(id.as_bytes());
    hasher.update(signed.proposal.author.as_bytes());
    hasher.update(signed.signature.as_bytes());
    *hasher.finalize().as_bytes()
}

#[derive(Debug, Default)]
struct Memo {
    verified: BTreeSet<Verified>,
    order: VecDeque<Verified>,
    keys: BTreeMap<[u8; 32], VerifyingKey>,
}

/// A bounded memo of signatures that passed strict verification, shared by a node's
/// front door and its replica. See the module docs for why this cannot change a decision.
#[derive(Debug, Default)]
pub struct VerifiedMemo {
    memo: Mutex<Memo>,
    /// Checks asked of the memo, and strict verifications it ran for them (the rest were
    /// answered from the memo, or refused a malformed key): counts for the node's metrics.
    checks: AtomicU64,
    verifications: AtomicU64,
}

impl VerifiedMemo {
    /// Remembered checks (a 32-byte digest kept in a set and a queue: about 10 MiB at
    /// the bound): comfortably more than the proposals a node has in flight between its
    /// front door and its apply, or deferred until a wave releases them.
    pub const CAPACITY: usize = 131_072;
    /// Remembered decompressed author keys, only of authors whose signature verified;
    /// cleared when full (the principals of a constitution are far fewer).
    pub const KEYS_MAX: usize = 4_096;

    pub fn new() -> VerifiedMemo {
        VerifiedMemo::default()
    }

    /// Signature checks asked of the memo since it was made.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// Strict ed25519 verifications the memo ran (checks it could not answer itself).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Pairs remembered now.
    pub fn len(&self) -> usize {
        self.lock().verified.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memo> {
        // The memo holds no invariant a panic elsewhere could break half-way: a poisoned
        // lock still guards a usable set.
        self.memo
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The author's decompressed key: remembered, or decompressed now (and remembered by
    /// [`VerifiedMemo::remember`] only once a signature by it verified, so junk with fresh
    /// valid points cannot push the principals' keys out).
    fn key(&self, author: &PublicKey) -> Result<VerifyingKey, SignatureError> {
        if let Some(key) = self.lock().keys.get(author.as_bytes()) {
            return Ok(*key);
        }
        VerifyingKey::from_bytes(author.as_bytes()).map_err(|_| SignatureError::MalformedKey)
    }

    fn remember(&self, verified: Verified, key: VerifyingKey) {
        let mut memo = self.lock();
        if memo.verified.insert(verified) {
            memo.order.push_back(verified);
            while memo.order.len() > Self::CAPACITY {
                let oldest = memo.order.pop_front().expect("invariant: non-empty");
                memo.verified.remove(&oldest);
            }
        }
        if !memo.keys.contains_key(key.as_bytes()) {
            if memo.keys.len() >= Self::KEYS_MAX {
                memo.keys.clear();
            }
            memo.keys.insert(*key.as_bytes(), key);
        }
    }
}

impl SignatureCheck for VerifiedMemo {
    fn check(&self, signed: &SignedProposal, id: &ProposalId) -> Result<(), SignatureError> {
        self.checks.fetch_add(1, Ordering::Relaxed);
        let verified = verified_key(signed, id);
        if self.lock().verified.contains(&verified) {
            return Ok(());
        }
        // Verified outside the lock: concurrent misses verify in parallel.
        let key = self.key(&signed.proposal.author)?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        crate::proposal::verify_with_key(&key, signed, id)?;
        self.remember(verified, key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev;

    fn signed(nonce: u64) -> SignedProposal {
        let ledger = crate::LedgerId::new("memo-test").expect("valid");
        let payload = crate::Value::map([("amount", crate::Value::Int(5))]);
        dev::proposal(
            &ledger,
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "stl-1",
            payload,
            vec![],
            nonce,
        )
    }

    #[test]
    fn the_memo_answers_as_strict_does_and_remembers_only_successes() {
        let memo = VerifiedMemo::new();
        let good = signed(1);
        let id = good.id();
        assert_eq!(memo.check(&good, &id), Strict.check(&good, &id));
        assert_eq!(memo.len(), 1);
        assert_eq!(memo.check(&good, &id), Ok(()));
        assert_eq!(memo.len(), 1, "a repeat is answered from the memo");
        assert_eq!(
            (memo.checks(), memo.verifications()),
            (2, 1),
            "the repeat was not verified again"
        );

        // Same id, another signature: a miss, and a failure that is not remembered.
        let mut forged = good.clone();
        forged.signature = signed(2).signature;
        assert_eq!(memo.check(&forged, &id), Err(SignatureError::Invalid));
        assert_eq!(memo.check(&forged, &id), Strict.check(&forged, &id));
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn the_memo_keys_on_the_author_too_not_only_on_the_id_it_is_given() {
        let memo = VerifiedMemo::new();
        let alice = signed(1);
        let id = alice.id();
        memo.check(&alice, &id).expect("verifies");
        // Another author's body presented with alice's id and signature (an id that is
        // not its body's hash, as a corrupt state could hold): strict verification fails,
        // and so must the memo.
        let mut mallory = alice.clone();
        mallory.proposal.author = crate::dev::key("mallory");
        assert_eq!(Strict.check(&mallory, &id), Err(SignatureError::Invalid));
        assert_eq!(memo.check(&mallory, &id), Err(SignatureError::Invalid));
    }

    #[test]
    fn the_memo_is_bounded_and_forgets_oldest_first() {
        let memo = VerifiedMemo::new();
        let first = signed(1);
        memo.check(&first, &first.id()).expect("verifies");
        {
            // Fill to the bound with synthetic digests (verifying 131k signatures would
            // only slow the test down; the eviction path is what is under test).
            let mut inner = memo.lock();
            for n in 0..VerifiedMemo::CAPACITY as u64 {
                let mut synthetic = [0xff; 32];
                synthetic[..8].copy_from_slice(&n.to_le_bytes());
                inner.verified.insert(synthetic);
                inner.order.push_back(synthetic);
            }
        }
        let second = signed(2);
        memo.check(&second, &second.id()).expect("verifies");
        assert_eq!(memo.len(), VerifiedMemo::CAPACITY);
        let inner = memo.lock();
        assert!(!inner.verified.contains(&verified_key(&first, &first.id())));
        assert!(inner
            .verified
            .contains(&verified_key(&second, &second.id())));
    }
}
