//! Evidence: what one execution attempt did, kept in the journal (never in the ledger).
//!
//! One [`Evidence`] record per attempt: a refusal by the gate, or a run of the effect with
//! its retries. Its hash (BLAKE3 over [`TAG_EVIDENCE`] and the record's canonical bytes, the
//! core's encoding) is the `evidence_hash` of the outcome record filed about it, so the
//! ledger commits to the evidence a node keeps: anyone holding the JSON can decode it into
//! an [`Evidence`] and recompute the hash.

use docket_core::encoding;
use docket_core::{LedgerIndex, ProposalId, PublicKey};
use serde::{Deserialize, Serialize};

/// Domain separation of the evidence hash.
pub const TAG_EVIDENCE: &[u8] = b"docket/evidence/v1\0";

/// Longest reason recorded (the same bound the core puts on rejection details). Reasons are
/// for people; the outcome is for machines.
pub const REASON_BYTES_MAX: usize = 512;

/// Longest target recorded (a URL or a path).
pub const TARGET_BYTES_MAX: usize = 2048;

/// How an attempt ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// The effect ran and was verified.
    Success,
    /// The effect was attempted and did not succeed (or could not be verified, or its
    /// result is unknown).
    Failure,
    /// The gate refused it; nothing was sent or written.
    Refused,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Success => "success",
            OutcomeKind::Failure => "failure",
            OutcomeKind::Refused => "refused",
        }
    }
}

/// One interaction with the outside: a request sent or a file written.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EffectRecord {
    /// `http_post` or `file_write`.
    pub kind: String,
    /// The URL or the path inside the sandbox.
    pub target: String,
    /// What came back: `status 200`, `timeout`, `connection refused`, `written 412 bytes`.
    pub result: String,
}

/// Abstract cost attributes of one attempt (not billing).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Cost {
    /// Wall time of the attempt, gate to verification, in milliseconds.
    pub wall_ms: u64,
    /// Time spent waiting for the rate limit, in milliseconds (part of `wall_ms`).
    pub throttled_ms: u64,
    /// Bytes sent or written, over all requests.
    pub bytes_out: u64,
    /// Bytes received or read back, over all requests.
    pub bytes_in: u64,
    /// Requests or writes made (retries included); 0 for a refusal.
    pub attempts: u32,
}

/// What one execution attempt did.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Evidence {
    /// The command: the action of the admitted entry, e.g. `SETTLEMENT.PAYOUT_REQUESTED`.
    pub command: String,
    /// The effect that handled it: `rail`, `kes_deploy`, `file_write`, `webhook/<name>`.
    pub effect: String,
    /// The instance: the proposal id, also the idempotency key given to the target.
    pub instance: ProposalId,
    /// 1-based number of this attempt in this node's journal.
    pub attempt: u32,
    /// The ledger index of the entry reacted to.
    pub ledger_index: LedgerIndex,
    /// The Raft term the agent was leading in.
    pub term: u64,
    /// The executor key that signs the outcome.
    pub executor: PublicKey,
    /// BLAKE3 (hex) of what was sent or written; for a refusal before a request was built,
    /// of the proposal's canonical bytes.
    pub inputs_hash: String,
    /// BLAKE3 (hex) of what came back (response body, or the bytes read back); `None` when
    /// nothing came back.
    pub outputs_hash: Option<String>,
    /// Every interaction performed, in order (empty for a refusal).
    pub effects: Vec<EffectRecord>,
    pub cost: Cost,
    pub outcome: OutcomeKind,
    /// Why, for failures and refusals.
    pub reason: Option<String>,
    /// Wall-clock time the attempt started, Unix milliseconds (informative only).
    pub started_at_ms: u64,
}

impl Evidence {
    /// BLAKE3 over [`TAG_EVIDENCE`] and the canonical bytes of the record.
    pub fn hash(&self) -> [u8; 32] {
        encoding::tagged_hash(TAG_EVIDENCE, self)
    }

    /// [`Evidence::hash`] in lowercase hex, as outcome records carry it.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash())
    }
}

/// BLAKE3 of `bytes` in lowercase hex: the inputs and outputs hashes, and file content hashes.
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Evidence {
        Evidence {
            command: "SETTLEMENT.PAYOUT_REQUESTED".into(),
            effect: "rail".into(),
            instance: ProposalId([7; 32]),
            attempt: 1,
            ledger_index: LedgerIndex(4),
            term: 2,
            executor: PublicKey([1; 32]),
            inputs_hash: content_hash(b"in"),
            outputs_hash: Some(content_hash(b"out")),
            effects: vec![EffectRecord {
                kind: "http_post".into(),
                target: "http://127.0.0.1/pay".into(),
                result: "status 200".into(),
            }],
            cost: Cost {
                wall_ms: 3,
                throttled_ms: 0,
                bytes_out: 2,
                bytes_in: 3,
                attempts: 1,
            },
            outcome: OutcomeKind::Success,
            reason: None,
            started_at_ms: 1_000,
        }
    }

    #[test]
    fn hash_survives_a_json_round_trip_and_covers_every_field() {
        let evidence = sample();
        let json = serde_json::to_string(&evidence).expect("serializes");
        let back: Evidence = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back.hash(), evidence.hash());
        let mut changed = evidence.clone();
        changed.cost.attempts = 2;
        assert_ne!(changed.hash(), evidence.hash());
        assert!(json.contains("\"outcome\":\"success\""), "{json}");
    }

    #[test]
    fn bounded_cuts_on_a_char_boundary() {
        assert_eq!(bounded("héllo".into(), 2), "h");
        assert_eq!(bounded("abc".into(), 10), "abc");
    }
}
