//! How adjudication checks signatures: [`SignatureCheck`], with the plain check
//! ([`Strict`]: verify every time, under the proposal format's rule) and a bounded memo of
//! checks that already passed ([`VerifiedMemo`]), which also verifies a group commit's
//! `v2` signatures as one batch ([`VerifiedMemo::check_batch`]).
//!
//! A node verifies each proposal's signature at its front door (so unsigned junk never
//! reaches the log) and again when its replica applies the committed entry (authorization
//! is replayable state, not a gateway filter). On the node that received the request
//! those are the same check of the same bytes, and a deferred proposal is checked again
//! when a wave releases it. Verification under either format's rule is a pure function of
//! (author key, proposal id, signature), the id covering the format, so its result can be
//! remembered: [`VerifiedMemo`] keeps a
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
//!
//! A follower's apply is where the memo misses: the proposals arrive in a committed group
//! and were verified only by the leader's front door. The replica hands the whole group to
//! [`VerifiedMemo::verify_ahead`] first, which verifies the `v2` signatures together (the
//! batch equation costs a fraction of one verification per signature, less the fewer
//! authors a group has) and remembers them, so adjudication's per-proposal checks are
//! memo hits. A failed batch is redone one signature at a time, which gives each proposal
//! the answer a single check gives it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::id::{ProposalId, PublicKey};
use crate::proposal::{verify_with_key, AuthorKey, ProposalFormat, SignatureError, SignedProposal};

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
/// key, not inferred from the id), in 32 bytes. The rule the signature was verified under
/// is the proposal's format, which the id covers.
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
    keys: BTreeMap<[u8; 32], AuthorKey>,
}

/// A bounded memo of signatures that passed verification, shared by a node's front door
/// and its replica. See the module docs for why this cannot change a decision.
#[derive(Debug, Default)]
pub struct VerifiedMemo {
    memo: Mutex<Memo>,
    /// Checks asked of the memo, and verifications it ran for them (the rest were
    /// answered from the memo, or refused a malformed key): counts for the node's metrics.
    checks: AtomicU64,
    verifications: AtomicU64,
}

impl VerifiedMemo {
    /// Remembered checks (a 32-byte digest kept in a set and a queue: about 5 MiB at the
    /// bound): eight times the most proposals a node has between its front door and its
    /// apply (`docket_service`'s submission queue, 4,096, and two group commits of 2,048),
    /// and a follower verifies each committed group just before applying it. A check the
    /// memo has forgotten is verified again, which costs time, never an answer. (At
    /// 131,072, with its queue doubling past the bound, it held 14-16 MiB of a node's heap
    /// under load.)
    pub const CAPACITY: usize = 65_536;
    /// Remembered decompressed author keys, only of authors whose signature verified;
    /// cleared when full (the principals of a constitution are far fewer).
    pub const KEYS_MAX: usize = 4_096;
    /// Signatures verified as one batch at most ([`VerifiedMemo::check_batch`] splits a
    /// longer list). The batch equation's cost per signature falls with its size (a
    /// multiscalar multiplication of n + keys + 1 points) and flattens by a few hundred,
    /// while a failed batch is redone one signature at a time, so the bound also bounds
    /// the work a forged signature can waste.
    pub const BATCH_MAX: usize = 256;

    pub fn new() -> VerifiedMemo {
        VerifiedMemo::default()
    }

    /// Signature checks asked of the memo since it was made.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// Signature verifications the memo ran (checks it could not answer itself; a batch
    /// counts each of its signatures).
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
    fn key(&self, author: &PublicKey) -> Result<AuthorKey, SignatureError> {
        if let Some(key) = self.lock().keys.get(author.as_bytes()) {
            return Ok(*key);
        }
        AuthorKey::decompress(author)
    }

    fn remember(&self, verified: impl IntoIterator<Item = (Verified, AuthorKey)>) {
        let mut memo = self.lock();
        for (verified, key) in verified {
            if memo.verified.insert(verified) {
                // Room first, then the new digest: the queue never holds more than the
                // bound, so its buffer never grows past it (a power of two).
                while memo.order.len() >= Self::CAPACITY {
                    let oldest = memo.order.pop_front().expect("invariant: non-empty");
                    memo.verified.remove(&oldest);
                }
                memo.order.push_back(verified);
            }
            let bytes = key.bytes();
            if !memo.keys.contains_key(&bytes) {
                if memo.keys.len() >= Self::KEYS_MAX {
                    memo.keys.clear();
                }
                memo.keys.insert(bytes, key);
            }
        }
    }

    /// [`SignatureCheck::check`] of each proposal, in order, with the same answers, but the
    /// `v2` signatures the memo does not remember verified together, in batches of at most
    /// [`VerifiedMemo::BATCH_MAX`]: ZIP-215 makes a batch pass exactly when each of its
    /// signatures would pass alone (up to the batch equation's 2^-128 chance of a false
    /// accept, which its coefficients, a hash of the whole batch (`Transcript`), keep out
    /// of an attacker's reach), and a batch that fails is redone one signature at a time
    /// to find which. Everything that verified is remembered, so a later `check` of it is
    /// a memo hit. The leader's group-commit writer calls this on the submissions it
    /// groups; a replica's apply calls [`VerifiedMemo::verify_ahead`].
    pub fn check_batch(
        &self,
        proposals: &[(&SignedProposal, ProposalId)],
    ) -> Vec<Result<(), SignatureError>> {
        self.checks
            .fetch_add(proposals.len() as u64, Ordering::Relaxed);
        self.verify_batch(proposals)
    }

    /// [`VerifiedMemo::check_batch`] ahead of the checks that decide, which it does not
    /// count as checks (a replica's apply: adjudication then checks each proposal, a memo
    /// hit for each that verified here). Verifications are counted.
    pub fn verify_ahead(&self, proposals: &[(&SignedProposal, ProposalId)]) {
        self.verify_batch(proposals);
    }

    fn verify_batch(
        &self,
        proposals: &[(&SignedProposal, ProposalId)],
    ) -> Vec<Result<(), SignatureError>> {
        let mut answers = vec![Ok(()); proposals.len()];
        let misses: Vec<(usize, Verified)> = {
            let memo = self.lock();
            proposals
                .iter()
                .enumerate()
                .map(|(i, (signed, id))| (i, verified_key(signed, id)))
                .filter(|(_, verified)| !memo.verified.contains(verified))
                .collect()
        };
        // (position, memo digest, key) of the v2 signatures still to verify.
        let mut queued: Vec<(usize, Verified, AuthorKey)> = Vec::new();
        let mut passed: Vec<(Verified, AuthorKey)> = Vec::new();
        for (i, verified) in misses {
            let (signed, id) = &proposals[i];
            let key = match self.key(&signed.proposal.author) {
                Ok(key) => key,
                Err(error) => {
                    answers[i] = Err(error);
                    continue;
                }
            };
            match signed.proposal.format {
                ProposalFormat::V2 => queued.push((i, verified, key)),
                ProposalFormat::V1 => {
                    self.verifications.fetch_add(1, Ordering::Relaxed);
                    answers[i] = verify_with_key(&key, signed, id);
                    if answers[i].is_ok() {
                        passed.push((verified, key));
                    }
                }
            }
        }
        for batch in queued.chunks(Self::BATCH_MAX) {
            self.verifications
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            if batch.len() > 1 && verify_together(proposals, batch) {
                passed.extend(batch.iter().map(|&(_, verified, key)| (verified, key)));
                continue;
            }
            for &(i, verified, key) in batch {
                let (signed, id) = &proposals[i];
                answers[i] = verify_with_key(&key, signed, id);
                if answers[i].is_ok() {
                    passed.push((verified, key));
                }
            }
        }
        self.remember(passed);
        answers
    }
}

/// One ZIP-215 batch equation over the queued `v2` signatures: true when all verify.
fn verify_together(
    proposals: &[(&SignedProposal, ProposalId)],
    batch: &[(usize, Verified, AuthorKey)],
) -> bool {
    let mut verifier = ed25519_zebra::batch::Verifier::new();
    for &(i, _, key) in batch {
        let (signed, id) = &proposals[i];
        verifier.queue((
            ed25519_zebra::VerificationKeyBytes::from(key.bytes()),
            ed25519_zebra::Signature::from_bytes(signed.signature.as_bytes()),
            id.as_bytes(),
        ));
    }
    verifier.verify(Transcript::of(proposals, batch)).is_ok()
}

/// The batch equation's coefficients, drawn from BLAKE3's extendable output over the whole
/// batch (every key, id and signature, in order) under a domain tag: a Fiat-Shamir
/// derivation, so they are fixed only once every signature is, and a forger who wants
/// two bad signatures to cancel must find inputs whose hash makes them cancel (a 2^-128
/// chance per try). No RNG, so the core stays a pure function. The stream is the same on
/// every replica, but ed25519-zebra hands its values to the signatures in the order of its
/// hash map of keys, which is seeded per process: replicas may pair them differently.
/// Only the equation's chance of a false accept depends on that pairing: 2^-128 per
/// batch, the bound of any randomized batch verification, and the one a false accept
/// (remembered, then found by adjudication as a hit) would have to beat.
struct Transcript(blake3::OutputReader);

impl Transcript {
    fn of(
        proposals: &[(&SignedProposal, ProposalId)],
        batch: &[(usize, Verified, AuthorKey)],
    ) -> Transcript {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"docket/zip215-batch/v1");
        hasher.update(&(batch.len() as u64).to_le_bytes());
        for &(i, _, _) in batch {
            let (signed, id) = &proposals[i];
            hasher.update(signed.proposal.author.as_bytes());
            hasher.update(id.as_bytes());
            hasher.update(signed.signature.as_bytes());
        }
        Transcript(hasher.finalize_xof())
    }
}

impl rand_core::RngCore for Transcript {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0; 4];
        self.0.fill(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        self.0.fill(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for Transcript {}

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
        verify_with_key(&key, signed, id)?;
        self.remember([(verified, key)]);
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
            // Fill to the bound with synthetic digests (verifying 65k signatures would
            // only slow the test down; the eviction path is what is under test).
            let mut inner = memo.lock();
            for n in 0..VerifiedMemo::CAPACITY as u64 - 1 {
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
        // The oldest went before the new one came: the queue never held more than the
        // bound, so its buffer did not grow past it (pushed one past, it doubles).
        assert!(
            inner.order.capacity() < 2 * VerifiedMemo::CAPACITY,
            "the queue's buffer grew to {}",
            inner.order.capacity()
        );
        assert!(!inner.verified.contains(&verified_key(&first, &first.id())));
        assert!(inner
            .verified
            .contains(&verified_key(&second, &second.id())));
    }
}
