//! Development principals: deterministic, publicly known keys for the default constitution,
//! the examples, the demo and the tests.
//!
//! **Insecure by design.** Anyone can derive these secret keys from their names. A real
//! deployment writes its own constitution with its own principals' public keys.

use std::cell::RefCell;
use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;

use crate::id::PublicKey;
use crate::proposal::public_key;

/// The principals named in the default constitution, with the roles it gives them.
pub const PRINCIPALS: &[(&str, &[&str])] = &[
    ("alice", &["petitioner", "treasurer"]),
    ("bob", &["treasurer"]),
    ("grace", &["governor"]),
    ("heidi", &["governor"]),
    ("ivan", &["governor"]),
    ("exec", &["executor"]),
    ("olivia", &["auctioneer"]),
    ("bianca", &["bidder"]),
    ("boris", &["bidder"]),
    ("petra", &["procurer"]),
    ("sam", &["supplier"]),
    ("sofia", &["supplier"]),
    ("oscar", &["operator"]),
    ("mallory", &[]),
];

/// The development principal holding role `operator` (cluster administration) in the
/// default constitution: local clusters, the demo, the tests and the simulator sign their
/// cluster operations as this principal.
pub const OPERATOR: &str = "oscar";

/// Names whose derived keys a thread keeps (see [`signing_key`]); past this many, the
/// cache starts over.
pub const KEY_CACHE_MAX: usize = 256;

thread_local! {
    /// Keys derived on this thread: a derivation costs a base-point multiplication, as
    /// much as a signature, and [`proposal`] needs the key twice per proposal.
    static KEYS: RefCell<BTreeMap<String, SigningKey>> = const { RefCell::new(BTreeMap::new()) };
}

/// The development signing key of `name`: BLAKE3 key derivation from the name.
pub fn signing_key(name: &str) -> SigningKey {
    KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        if let Some(key) = keys.get(name) {
            return key.clone();
        }
        if keys.len() >= KEY_CACHE_MAX {
            keys.clear();
        }
        let key = SigningKey::from_bytes(&blake3::derive_key(
            "docket dev principal key v1",
            name.as_bytes(),
        ));
        keys.insert(name.to_owned(), key.clone());
        key
    })
}

pub fn key(name: &str) -> PublicKey {
    public_key(&signing_key(name))
}

/// Builds and signs a proposal by the development principal `author`. The domain is the
/// action's prefix in lower case (`SETTLEMENT.X` belongs to `settlement`).
pub fn proposal(
    ledger: &crate::LedgerId,
    author: &str,
    action: &str,
    subject: &str,
    payload: crate::Value,
    dependencies: Vec<crate::ProposalId>,
    nonce: u64,
) -> crate::SignedProposal {
    let domain = action
        .split('.')
        .next()
        .unwrap_or(action)
        .to_ascii_lowercase();
    let mut proposal = crate::Proposal {
        format: crate::ProposalFormat::CURRENT,
        ledger_id: ledger.clone(),
        domain,
        action: action.to_owned(),
        subject: subject.to_owned(),
        payload,
        dependencies,
        author: key(author),
        nonce,
    };
    proposal.normalize();
    proposal.sign(&signing_key(author))
}

/// `signed` in another format, signed again by the development principal `author`: how
/// the golden transcripts keep proving that format-`v1` ledgers replay bit for bit.
pub fn reformat(
    signed: crate::SignedProposal,
    format: crate::ProposalFormat,
    author: &str,
) -> crate::SignedProposal {
    let mut proposal = signed.proposal;
    proposal.format = format;
    proposal.sign(&signing_key(author))
}

/// Signs development proposals for one ledger with increasing nonces, so the demo, the
/// examples and the tests never repeat an id by accident.
#[derive(Debug, Clone)]
pub struct Proposer {
    pub ledger: crate::LedgerId,
    pub nonce: u64,
}

impl Proposer {
    /// Nonces start after `nonce` (use a clock reading to stay distinct across runs).
    pub fn new(ledger: crate::LedgerId, nonce: u64) -> Proposer {
        Proposer { ledger, nonce }
    }

    /// A proposal by `author` with the next nonce (see [`proposal`]).
    pub fn make(
        &mut self,
        author: &str,
        action: &str,
        subject: &str,
        payload: crate::Value,
        dependencies: Vec<crate::ProposalId>,
    ) -> crate::SignedProposal {
        self.nonce += 1;
        proposal(
            &self.ledger,
            author,
            action,
            subject,
            payload,
            dependencies,
            self.nonce,
        )
    }
}

/// A hash chain of `n` entries for storage tests: linked and sealed, but not a governable
/// ledger (every record is a genesis record), so only stores that check neither chain nor
/// records take it. `salt` makes two chains' hashes differ.
pub fn entry_chain(n: u64, salt: &str) -> Vec<crate::LedgerEntry> {
    use crate::{ConstitutionVersion, EntryHash, LedgerEntry, LedgerId, LedgerIndex, LedgerTime};
    let ledger_id = LedgerId::new("chain").expect("invariant: a valid ledger id");
    let mut prev = EntryHash::ZERO;
    (0..n)
        .map(|i| {
            let entry = LedgerEntry::seal(
                LedgerIndex(i),
                LedgerTime(i),
                ConstitutionVersion([1; 32]),
                prev,
                crate::Record::Genesis {
                    ledger_id: ledger_id.clone(),
                    document: format!("{salt} {i}"),
                },
            );
            prev = entry.hash;
            entry
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derived(name: &str) -> [u8; 32] {
        blake3::derive_key("docket dev principal key v1", name.as_bytes())
    }

    #[test]
    fn cached_keys_are_the_derived_keys_before_and_after_the_cache_starts_over() {
        assert_eq!(signing_key("alice").to_bytes(), derived("alice"));
        assert_eq!(signing_key("alice").to_bytes(), derived("alice"));
        for i in 0..KEY_CACHE_MAX + 5 {
            let name = format!("p{i}");
            assert_eq!(signing_key(&name).to_bytes(), derived(&name));
        }
        assert_eq!(signing_key("alice").to_bytes(), derived("alice"));
        assert_eq!(
            key("alice"),
            public_key(&SigningKey::from_bytes(&derived("alice")))
        );
    }
}
