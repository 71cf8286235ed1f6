//! Checkpoints and proofs on a real TLS cluster: every voter cosigns the checkpoint with
//! the key the ledger declares for it; an entry's bundle verifies offline against pinned
//! keys, and any flipped byte makes it fail; consistency proofs link two checkpoints; the
//! cosigning route is for nodes only; a checkpoint needs a quorum of live voters.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::{api_error, deposit, formed_tls_cluster, ledger_id, phase};
use docket_client::state_proof::{verified_status, verified_subject, verify_state_bundle};
use docket_core::checkpoint::SignedCheckpoint;
use docket_core::PublicKey;
use docket_node::cli::{prove, verified_checkpoint, verified_entry, verify_bundle};
use docket_service::checkpoints::Cosigner;

fn hashes(hex_list: &[String]) -> Vec<[u8; 32]> {
    hex_list
        .iter()
        .map(|h| docket_core::id::decode_hex::<32>(h).expect("hex"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_cosigned_by_a_quorum_and_proofs_verify_offline() {
    let start = Instant::now();
    let (_dir, mut cluster) = formed_tls_cluster("checkpoints", 3, 5_000, false).await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let c = cluster.node(leader).client();
    for n in 0..5 {
        c.submit(&deposit(&ledger, "alice", &format!("cp-{n}"), 10 + n))
            .await
            .expect("deposit");
    }

    phase(
        start,
        "a checkpoint carries a valid cosignature of every voter",
    );
    // The keys each node shows, pinned before asking for a checkpoint.
    let mut pinned = Vec::new();
    for id in [1, 2, 3] {
        let status = cluster.node(id).client().status().await.expect("status");
        pinned.push(Cosigner {
            node: id,
            name: docket_core::checkpoint::cosigner_name(ledger.as_str(), id),
            key: status.cosigner_key,
        });
    }
    // Any node gathers; ask a follower.
    let follower = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    let view = cluster
        .node(follower)
        .client()
        .checkpoint()
        .await
        .expect("checkpoint");
    assert_eq!(
        view.cosigners, pinned,
        "the ledger declares the keys the nodes hold"
    );
    assert_eq!(view.quorum, 2);
    let signed = SignedCheckpoint::parse_note(&view.note).expect("a C2SP note");
    assert_eq!(signed.checkpoint.size, view.size);
    assert!(
        view.size >= 9,
        "genesis, init, two adds, five deposits: {}",
        view.size
    );
    let keys: BTreeMap<String, PublicKey> = pinned
        .iter()
        .map(|c| (c.name.clone(), c.key.expect("declared")))
        .collect();
    assert_eq!(signed.verify(&keys, 3), Ok(3));
    let status = c.status().await.expect("status");
    if status.ledger_length == view.size {
        assert_eq!(Some(view.state), status.state_hash);
        assert_eq!(Some(view.root.clone()), status.ledger_root);
    }

    phase(
        start,
        "an entry's bundle verifies offline; a flipped byte fails it",
    );
    let bundle = prove(&c, 4).await.expect("bundle");
    let source = "pinned".to_owned();
    let verified = verify_bundle(&bundle, Some((&pinned, source.clone()))).expect("verifies");
    assert_eq!(verified.index, 4);
    assert_eq!(verified.cosigned_by.len(), 3);
    let mut tampered_entry = bundle.clone();
    tampered_entry.entry.time.0 += 1;
    let mut tampered_proof = bundle.clone();
    let mut bytes = hex::decode(&tampered_proof.proof[0]).expect("hex");
    bytes[0] ^= 1;
    tampered_proof.proof[0] = hex::encode(bytes);
    let mut tampered_note = bundle.clone();
    tampered_note.checkpoint = tampered_note.checkpoint.replacen(
        &format!("\n{}\n", view.size),
        &format!("\n{}\n", view.size + 1),
        1,
    );
    // Keys that are not the voters': with two of three wrong, no majority signed.
    let mut other_keys = pinned.clone();
    other_keys[0].key = Some(docket_core::dev::key("alice"));
    other_keys[1].key = Some(docket_core::dev::key("bob"));
    for (what, bundle, keys) in [
        ("an altered entry", &tampered_entry, &pinned),
        ("a flipped proof byte", &tampered_proof, &pinned),
        ("another tree size", &tampered_note, &pinned),
        ("keys that are not nodes 1 and 2's", &bundle, &other_keys),
    ] {
        assert!(
            verify_bundle(bundle, Some((keys, source.clone()))).is_err(),
            "{what} verified"
        );
    }

    phase(start, "a later checkpoint extends the earlier one");
    for n in 5..8 {
        c.submit(&deposit(&ledger, "alice", &format!("cp-{n}"), 10 + n))
            .await
            .expect("deposit");
    }
    let later = c.checkpoint().await.expect("later checkpoint");
    let later_signed = SignedCheckpoint::parse_note(&later.note).expect("note");
    assert!(later.size > view.size);
    let consistency = c
        .consistency_proof(view.size, later.size)
        .await
        .expect("consistency proof");
    later_signed
        .checkpoint
        .verify_extends(&signed.checkpoint, &hashes(&consistency.proof))
        .expect("the later checkpoint extends the earlier");
    let mut forged = signed.checkpoint.clone();
    forged.root[0] ^= 1;
    assert!(later_signed
        .checkpoint
        .verify_extends(&forged, &hashes(&consistency.proof))
        .is_err());
    // The earlier final checkpoint is kept by the node that gathered it.
    let again = cluster
        .node(follower)
        .client()
        .checkpoint_at(view.size)
        .await
        .expect("kept");
    assert_eq!(again.note, view.note);

    phase(
        start,
        "the client remembers what it verified and refuses a fork or a rollback",
    );
    let config = tempfile::tempdir().expect("config dir");
    std::env::set_var("DOCKET_CONFIG_DIR", config.path());
    let first = verified_checkpoint(&c)
        .await
        .expect("first contact pins the voters");
    let remembered = config
        .path()
        .join("clusters")
        .join(format!("{}.checkpoint", ledger.as_str()));
    assert_eq!(
        std::fs::read_to_string(&remembered).expect("remembered"),
        first.to_note()
    );
    let next_deposit = c
        .submit(&deposit(&ledger, "alice", "cp-next", 1))
        .await
        .expect("deposit");
    let next = verified_checkpoint(&c)
        .await
        .expect("a consistent newer checkpoint");
    assert!(next.checkpoint.size > first.checkpoint.size);
    // As if this client had verified another history before: the node's does not extend it.
    let mut other = next.clone();
    other.checkpoint.root[0] ^= 1;
    std::fs::write(&remembered, other.to_note()).expect("write");
    let error = verified_checkpoint(&c).await.expect_err("a fork");
    assert!(format!("{error:#}").contains("FORK"), "{error:#}");
    // ... or a longer history than the node can show.
    let mut longer = next.clone();
    longer.checkpoint.size += 1_000;
    std::fs::write(&remembered, longer.to_note()).expect("write");
    let error = verified_checkpoint(&c).await.expect_err("a rollback");
    assert!(format!("{error:#}").contains("ROLLBACK"), "{error:#}");
    let (entry, _) = {
        std::fs::write(&remembered, next.to_note()).expect("write");
        verified_entry(&c, 3).await.expect("a verified entry")
    };
    assert_eq!(entry.index.0, 3);
    let (proposal, _) = docket_client::state_proof::verified_proposal(&c, next_deposit.id)
        .await
        .expect("a verified proposal");
    assert_eq!(proposal.entries.len(), 1);
    assert_eq!(proposal.entries[0].index, next_deposit.entry.index);
    assert_eq!(proposal.status, docket_core::ProposalStatus::Admitted);

    phase(
        start,
        "state rows are proved under the cosigned state-map root, through any node",
    );
    // Past the first anchor (1,024 entries), in batches.
    let grow: Vec<_> = (0..1_100)
        .map(|n| deposit(&ledger, "alice", &format!("grow-{n}"), 1))
        .collect();
    for chunk in grow.chunks(100) {
        c.submit_batch(chunk).await.expect("batch");
    }
    let (state, row) = verified_subject(&c, "settlement", "cp-1")
        .await
        .expect("a verified subject");
    let state = state.expect("cp-1 was deposited into");
    let said = c
        .state(
            "settlement",
            "cp-1",
            docket_api::wire::Consistency::Linearizable,
        )
        .await
        .expect("state")
        .state
        .expect("a state");
    assert_eq!(state.state, said.state);
    assert_eq!(state.last_index, said.last_index);
    assert!(row.anchor.size >= 1_024, "anchor {}", row.anchor.size);
    assert!(row.anchor.size <= row.checkpoint.checkpoint.size);
    let (absent, _) = verified_subject(&c, "settlement", "never-filed")
        .await
        .expect("a proved absence");
    assert_eq!(absent, None);
    // A row changed just now, read through a follower: it needs an anchor, which only the
    // leader can file, so the follower forwards.
    let fresh = c
        .submit(&deposit(&ledger, "alice", "fresh-after-anchor", 7))
        .await
        .expect("deposit");
    let (fresh_state, fresh_row) = verified_subject(
        &cluster.node(follower).client(),
        "settlement",
        "fresh-after-anchor",
    )
    .await
    .expect("a verified subject through a follower");
    assert_eq!(
        fresh_state.expect("deposited").last_index,
        fresh.entry.index
    );
    assert!(fresh_row.anchor.size > fresh.entry.index.0);
    let (status, _) = verified_status(&c, fresh.id)
        .await
        .expect("a verified status");
    assert_eq!(
        status.expect("recorded").status,
        docket_core::ProposalStatus::Admitted
    );

    phase(
        start,
        "a state proof verifies offline; any altered part fails it",
    );
    let document = fresh_row.document.clone();
    let verified = verify_state_bundle(&document, Some((&pinned, source.clone())))
        .expect("the document verifies offline");
    assert_eq!(verified.cosigned_by.len(), 3);
    let flip_hex = |hex: &str| {
        let mut bytes = hex::decode(hex).expect("hex");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        hex::encode(bytes)
    };
    let mut altered_value = document.clone();
    altered_value.value = altered_value.value.as_deref().map(flip_hex);
    let mut altered_level = document.clone();
    altered_level.levels[0][1] = flip_hex(&altered_level.levels[0][1]);
    let mut altered_leaf = document.clone();
    altered_leaf.leaf = altered_leaf.leaf.map(|[k, v]| [k, flip_hex(&v)]);
    let mut other_key = document.clone();
    other_key.key = hex::encode(docket_core::rows::subject_key("settlement", "cp-1"));
    let mut absent_claim = document.clone();
    absent_claim.value = None;
    let mut other_map = document.clone();
    other_map.checkpoint = other_map.checkpoint.replacen("\nmap ", "\nmap 1", 1);
    for (what, doc) in [
        ("an altered row", &altered_value),
        ("an altered sibling hash", &altered_level),
        ("an altered leaf", &altered_leaf),
        ("another row's key", &other_key),
        ("a claim of absence", &absent_claim),
        ("another map line", &other_map),
    ] {
        assert!(
            verify_state_bundle(doc, Some((&pinned, source.clone()))).is_err(),
            "{what} verified"
        );
    }

    phase(
        start,
        "witness mode finds the three nodes' checkpoints consistent",
    );
    let tls = cluster.tls().expect("tls");
    // The CLI, with the cluster's CA and client certificate; each call must succeed.
    let docket = |args: &[&str]| {
        let output = std::process::Command::new(common::binary())
            .args(args)
            .arg("--ca")
            .arg(tls.ca())
            .arg("--client-cert")
            .arg(tls.dir.join("client.pem"))
            .arg("--client-key")
            .arg(tls.dir.join("client.key"))
            .env("DOCKET_CONFIG_DIR", config.path())
            .output()
            .expect("docket");
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "docket {args:?}: {out}{err}");
        (out, err)
    };
    let urls: Vec<String> = [1, 2, 3].iter().map(|id| cluster.node(*id).url()).collect();
    let (stdout, _) = docket(&["verify", "--witness", &urls.join(",")]);
    assert!(
        stdout.contains("consistent: 3 final checkpoints"),
        "{stdout}"
    );
    // The CLI: a verified state read that keeps its proof, then the proof checked offline
    // against the keys the client pinned.
    let proof_file = config.path().join("cp-1.json");
    let proof_path = proof_file.to_str().expect("utf-8 path");
    let (out, err) = docket(&[
        "state",
        "get",
        "settlement",
        "cp-1",
        "--node",
        &urls[0],
        "--proof-out",
        proof_path,
    ]);
    assert!(out.contains("settlement/cp-1: funded"), "{out}");
    assert!(err.contains("verified"), "{err}");
    let pinned_file = config
        .path()
        .join("clusters")
        .join(format!("{}.cosigners.json", ledger.as_str()));
    let (out, _) = docket(&[
        "verify",
        proof_path,
        "--cosigners",
        pinned_file.to_str().expect("utf-8 path"),
    ]);
    assert!(out.contains("verified: state row"), "{out}");
    assert!(out.contains("\"state\":\"funded\""), "{out}");

    phase(
        start,
        "a restarted node of an idle cluster gathers a checkpoint at once",
    );
    let restarted = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    cluster.kill(restarted).await.expect("kill");
    cluster.start(restarted).await.expect("restart");
    cluster.converged().await.expect("converged");
    let after_restart = cluster
        .node(restarted)
        .client()
        .checkpoint()
        .await
        .expect("a checkpoint right after a restart, with no new command applied");
    assert_eq!(
        after_restart.size,
        c.status().await.expect("status").ledger_length
    );

    phase(start, "only nodes may ask for a cosignature");
    let url = format!("{}/v1/internal/cosign", cluster.node(leader).url());
    let response = cluster
        .tls()
        .expect("tls")
        .http
        .post(&url)
        .json(&docket_node::wire::CosignRequest {
            checkpoint: signed.checkpoint.body(),
        })
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 403);
    assert!(response
        .text()
        .await
        .expect("body")
        .contains("PEER_NOT_AUTHENTICATED"));

    phase(
        start,
        "with one voter down there is still a quorum; with two, none",
    );
    let down = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    cluster.kill(down).await.expect("kill");
    let two = c.checkpoint().await.expect("checkpoint with two voters");
    let signed_two = SignedCheckpoint::parse_note(&two.note).expect("note");
    assert_eq!(signed_two.verify(&keys, 2), Ok(2));
    let other = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader && *id != down)
        .expect("the other follower");
    cluster.kill(other).await.expect("kill");
    let (status, body) = api_error(c.checkpoint().await, "NO_QUORUM");
    assert_eq!(
        (status, body.code.as_str()),
        (503, "NO_QUORUM"),
        "{}",
        body.message
    );
}
