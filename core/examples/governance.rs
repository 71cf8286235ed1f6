//! A governance flow through the core, end to end: every built-in domain, rejections with
//! their codes, a deferral released by a wave, an expiry, a constitutional amendment, a
//! duplicate, then chain verification, a full audit, and the final state hash.
//!
//! Run with `cargo run --release --example governance`.

use docket_core::constitution::DEFAULT_DOCUMENT;
use docket_core::{
    audit, dev, replay, verify_chain, LedgerEntry, LedgerId, LedgerTime, ProposalId,
};
use docket_core::{SignedProposal, State, Submission, Value};

struct Run {
    state: State,
    ledger: Vec<LedgerEntry>,
    ledger_id: LedgerId,
    time: u64,
    nonce: u64,
}

impl Run {
    /// Files a proposal `step_ms` after the previous one and prints what was recorded.
    fn file(&mut self, signed: SignedProposal, step_ms: u64) -> ProposalId {
        self.time += step_ms;
        let id = signed.id();
        match self.state.submit(signed, LedgerTime(self.time)) {
            Submission::Recorded(entries) => {
                for entry in entries {
                    println!("{entry}");
                    self.ledger.push(entry);
                }
            }
            Submission::Duplicate { index, status } => {
                println!("      duplicate of entry #{index} ({status:?}): nothing appended");
            }
        }
        id
    }

    fn propose(
        &mut self,
        author: &str,
        action: &str,
        subject: &str,
        payload: Value,
        deps: Vec<ProposalId>,
    ) -> SignedProposal {
        self.nonce += 1;
        dev::proposal(
            &self.ledger_id,
            author,
            action,
            subject,
            payload,
            deps,
            self.nonce,
        )
    }

    fn go(
        &mut self,
        author: &str,
        action: &str,
        subject: &str,
        payload: Value,
        deps: Vec<ProposalId>,
    ) -> ProposalId {
        let signed = self.propose(author, action, subject, payload, deps);
        self.file(signed, 1_000)
    }
}

fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::map(pairs)
}

fn main() {
    let ledger_id = LedgerId::new("docket-example").expect("valid ledger id");
    let start = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let (state, genesis) = State::genesis(ledger_id.clone(), DEFAULT_DOCUMENT, LedgerTime(start))
        .expect("default constitution");
    println!("docket governance example — ledger {ledger_id}\n");
    println!("{genesis}");
    let mut run = Run {
        state,
        ledger: vec![genesis],
        ledger_id,
        time: start,
        nonce: 0,
    };
    let hex = |k: &str| Value::Str(dev::key(k).to_hex());

    println!("\n-- settlement: deposit, an over-balance payout, a payout and its execution");
    run.go(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-0001",
        map([("amount", 125_000.into()), ("currency", "EUR".into())]),
        vec![],
    );
    run.go(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "stl-0001",
        map([("amount", 200_000.into()), ("beneficiary", "acme".into())]),
        vec![],
    );
    let payout = run.go(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "stl-0001",
        map([("amount", 100_000.into()), ("beneficiary", "acme".into())]),
        vec![],
    );
    run.go(
        "exec",
        "SETTLEMENT.PAYOUT_EXECUTED",
        "stl-0001",
        map([
            ("reports_on", payout.to_hex().into()),
            ("rail_ref", "sepa-1".into()),
        ]),
        vec![payout],
    );
    run.go(
        "mallory",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-0001",
        map([("amount", 1.into()), ("currency", "EUR".into())]),
        vec![],
    );
    run.go(
        "exec",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-0001",
        map([("amount", 1.into()), ("currency", "EUR".into())]),
        vec![],
    );

    println!("\n-- deferral: an outcome filed before the payout it reports on, released by a wave");
    let second = run.propose(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "stl-0001",
        map([("amount", 20_000.into()), ("beneficiary", "acme".into())]),
        vec![],
    );
    let second_id = second.id();
    run.go(
        "exec",
        "EXECUTION.OUTCOME",
        &second_id.to_hex(),
        map([
            ("reports_on", second_id.to_hex().into()),
            ("outcome", "success".into()),
            ("evidence_hash", Value::Str("ab".repeat(32))),
        ]),
        vec![second_id],
    );
    run.file(second, 1_000);

    println!("\n-- kes: version chain and a two-governor ratification");
    let v1 = map([
        ("version", "v1".into()),
        ("version_hash", Value::Str("11".repeat(32))),
        ("commitments", Value::List(vec!["c1".into()])),
        ("parent", Value::Null),
    ]);
    run.go("grace", "KES.VERSION_PROPOSED", "kes-main", v1, vec![]);
    let ratify = map([
        ("version", "v1".into()),
        ("version_hash", Value::Str("11".repeat(32))),
    ]);
    run.go(
        "grace",
        "KES.VERSION_RATIFIED",
        "kes-main",
        ratify.clone(),
        vec![],
    );
    run.go(
        "grace",
        "KES.VERSION_RATIFIED",
        "kes-main",
        ratify.clone(),
        vec![],
    );
    run.go("heidi", "KES.VERSION_RATIFIED", "kes-main", ratify, vec![]);
    let v2_bad = map([
        ("version", "v2".into()),
        ("version_hash", Value::Str("22".repeat(32))),
        ("commitments", Value::List(vec![])),
        ("parent", "v0".into()),
    ]);
    run.go("ivan", "KES.VERSION_PROPOSED", "kes-main", v2_bad, vec![]);

    println!("\n-- auction: bids must beat the highest");
    run.go(
        "olivia",
        "AUCTION.OPENED",
        "auc-7",
        map([("reserve", 50.into()), ("item", "lot 7".into())]),
        vec![],
    );
    run.go(
        "bianca",
        "AUCTION.BID",
        "auc-7",
        map([("amount", 100.into())]),
        vec![],
    );
    run.go(
        "boris",
        "AUCTION.BID",
        "auc-7",
        map([("amount", 90.into())]),
        vec![],
    );
    run.go(
        "boris",
        "AUCTION.BID",
        "auc-7",
        map([("amount", 150.into())]),
        vec![],
    );
    run.go("olivia", "AUCTION.CLOSED", "auc-7", map([]), vec![]);
    run.go(
        "olivia",
        "AUCTION.AWARDED",
        "auc-7",
        map([("winner", hex("boris"))]),
        vec![],
    );

    println!("\n-- tender: submissions before a ledger-time deadline");
    let deadline = run.time + 10_000;
    run.go(
        "petra",
        "TENDER.PUBLISHED",
        "tnd-3",
        map([
            ("deadline_ms", (deadline as i64).into()),
            ("title", "bridge".into()),
        ]),
        vec![],
    );
    run.go(
        "sam",
        "TENDER.SUBMISSION",
        "tnd-3",
        map([("offer_hash", Value::Str("33".repeat(32)))]),
        vec![],
    );
    run.time = deadline;
    run.go(
        "sofia",
        "TENDER.SUBMISSION",
        "tnd-3",
        map([("offer_hash", Value::Str("44".repeat(32)))]),
        vec![],
    );
    run.go("petra", "TENDER.EVALUATED", "tnd-3", map([]), vec![]);
    run.go(
        "petra",
        "TENDER.AWARDED",
        "tnd-3",
        map([("winner", hex("sam"))]),
        vec![],
    );

    println!("\n-- constitution: an amendment adopted by two governors");
    let amended =
        DEFAULT_DOCUMENT.replace("payload_bytes_max = 65536", "payload_bytes_max = 32768");
    let parent = run.state.constitution_version().to_hex();
    run.go(
        "grace",
        "CONSTITUTION.AMEND",
        "amend-1",
        map([("document", amended.into()), ("parent", parent.into())]),
        vec![],
    );
    run.go("heidi", "CONSTITUTION.APPROVE", "amend-1", map([]), vec![]);
    run.go("ivan", "CONSTITUTION.APPROVE", "amend-1", map([]), vec![]);
    println!(
        "      active constitution is now {}",
        run.state.constitution_version().short()
    );

    println!("\n-- bad input: wrong ledger, forged signature, a duplicate, an expiry");
    let foreign = dev::proposal(
        &LedgerId::new("another-ledger").expect("valid"),
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-0002",
        map([("amount", 5.into()), ("currency", "EUR".into())]),
        vec![],
        99,
    );
    run.file(foreign, 1_000);
    let mut forged = run.propose(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-0002",
        map([("amount", 5.into()), ("currency", "EUR".into())]),
        vec![],
    );
    forged.proposal.payload = map([("amount", 5_000_000.into()), ("currency", "EUR".into())]);
    run.file(forged, 1_000);
    let again = run.propose(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-0002",
        map([("amount", 5.into()), ("currency", "EUR".into())]),
        vec![],
    );
    run.file(again.clone(), 1_000);
    run.file(again, 1_000);
    let never = ProposalId([0x5a; 32]);
    run.go(
        "alice",
        "SETTLEMENT.RECOVERY",
        "stl-0009",
        map([("reason", "waits forever".into())]),
        vec![never],
    );
    run.time += 600_000;
    for entry in run.state.tick(LedgerTime(run.time)) {
        println!("{entry}");
        run.ledger.push(entry);
    }

    println!("\n-- verification");
    verify_chain(&run.ledger).expect("the chain verifies");
    println!("verify_chain: {} entries, chain intact", run.ledger.len());
    let (audited, report) = audit(&run.ledger).expect("the audit re-derives every decision");
    println!(
        "audit: {} entries from {} commands re-adjudicated, all decisions reproduced",
        report.entries, report.commands
    );
    let replayed = replay(&run.ledger).expect("replays");
    assert_eq!(
        replayed.hash(),
        run.state.hash(),
        "replay reproduces the state"
    );
    assert_eq!(
        audited.hash(),
        run.state.hash(),
        "audit reproduces the state"
    );
    let balance = run
        .state
        .subject("settlement", "stl-0001")
        .and_then(|s| s.fields.get("balance").cloned());
    println!(
        "settlement stl-0001 balance: {}",
        balance.unwrap_or_default()
    );
    println!(
        "kes-main active version: {}",
        run.state
            .subject("kes", "kes-main")
            .and_then(|s| s.fields.get("active_version").cloned())
            .unwrap_or_default()
    );
    println!("final state hash: {}", run.state.hash());
}
