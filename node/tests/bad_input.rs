//! Bad input at the front doors — the HTTP API and the Raft port — gets its stable error
//! code and changes nothing: afterwards every node's ledger length and state hash are what
//! they were before.

mod common;

use std::time::{Duration, Instant};

use common::{client, deposit, formed_cluster, ledger_id, phase, positions, REQUEST_TIMEOUT_MS};
use docket_core::{EntryHash, LedgerId, SignedProposal};
use docket_node::local_cluster::LocalCluster;
use docket_node::wire::ErrorBody;
use docket_raft::network::{RefusalCode, RequestFrame, ResponseFrame, Rpc};
use openraft::raft::VoteRequest;
use openraft::{CommittedLeaderId, LogId, Vote};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Far above any term this test's cluster reaches by itself: a vote request carrying it, if
/// it were handled, would depose the leader and leave every node at this term or above.
const HOSTILE_TERM: u64 = 1_000;

/// POSTs `body` (raw bytes, JSON content type) and returns the status and error body.
async fn post_raw(http: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, ErrorBody) {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("response body");
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "HTTP {status} from {url} is not a docket error body ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, body)
}

fn to_json(proposal: &SignedProposal) -> Json {
    serde_json::to_value(proposal).expect("proposal serializes")
}

fn bytes(value: &Json) -> Vec<u8> {
    serde_json::to_vec(value).expect("json serializes")
}

/// Asserts the status and code of a refusal, and that the message contains `needle`.
fn expect(what: &str, got: (u16, ErrorBody), status: u16, code: &str, needle: &str) {
    let (got_status, body) = got;
    assert_eq!(
        (got_status, body.code.as_str()),
        (status, code),
        "{what}: {}",
        body.message
    );
    assert!(
        body.message.contains(needle),
        "{what}: message {:?} should mention {needle:?}",
        body.message
    );
}

/// Sends one length-delimited frame (4-byte big-endian length, as tokio-util's default
/// `LengthDelimitedCodec`) to `addr` and reads the one answer.
async fn raft_exchange(addr: &str, payload: &[u8]) -> ResponseFrame {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect raft port");
        let length = u32::try_from(payload.len()).expect("small frame");
        stream
            .write_all(&length.to_be_bytes())
            .await
            .expect("write length");
        stream.write_all(payload).await.expect("write frame");
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).await.expect("read length");
        let mut reply = vec![0u8; u32::from_be_bytes(header) as usize];
        stream.read_exact(&mut reply).await.expect("read frame");
        // The server answers a refused frame once, then closes the connection.
        let mut rest = Vec::new();
        let closed = stream.read_to_end(&mut rest).await;
        assert!(matches!(closed, Ok(0)), "connection closed after a refusal");
        docket_raft::codec::decode::<ResponseFrame>(&reply).expect("a response frame")
    };
    tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), exchange)
        .await
        .expect("raft port answered in time")
}

fn hostile_vote(cluster_id: &str, target: u64) -> Vec<u8> {
    hostile_vote_from(cluster_id, target, None)
}

/// A vote as [`hostile_vote`] makes it, from a node claiming `genesis`.
fn hostile_vote_from(cluster_id: &str, target: u64, genesis: Option<EntryHash>) -> Vec<u8> {
    let frame = RequestFrame {
        cluster_id: cluster_id.to_owned(),
        target,
        from: 99,
        genesis,
        rpc: Rpc::Vote(VoteRequest {
            vote: Vote::new(HOSTILE_TERM, 99),
            last_log_id: Some(LogId::new(
                CommittedLeaderId::new(HOSTILE_TERM, 99),
                1_000_000,
            )),
        }),
    };
    docket_raft::codec::encode(&frame).expect("frame encodes")
}

async fn positions_now(cluster: &LocalCluster) -> Vec<(u64, u64, Option<docket_core::StateHash>)> {
    positions(&cluster.converged().await.expect("converged"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_stable_codes_and_changes_nothing() {
    let start = Instant::now();
    let (_dir, cluster) = formed_cluster("bad-input", 3, &[]).await;
    let ledger = ledger_id(&cluster);
    let recorded = deposit(&ledger, "alice", "bad-0", 100);
    client(&cluster.node(2).url())
        .submit(&recorded)
        .await
        .expect("one good write");
    let before = positions_now(&cluster).await;
    let terms_before: Vec<u64> = cluster.statuses().await.iter().map(|s| s.term).collect();
    assert!(terms_before.iter().all(|t| *t < HOSTILE_TERM));
    phase(start, &format!("baseline (node, length, hash): {before:?}"));

    let http = reqwest::Client::new();
    let good = deposit(&ledger, "alice", "bad-1", 1);
    for node in &cluster.nodes {
        let proposals = format!("{}/v1/proposals", node.url());
        let batches = format!("{}/v1/batches", node.url());
        phase(start, &format!("HTTP bad input at node {}", node.id));

        let got = post_raw(
            &http,
            &proposals,
            br#"{"proposal": {"ledger_id": "#.to_vec(),
        )
        .await;
        expect("malformed JSON", got, 400, "MALFORMED_REQUEST", "");

        let mut unknown = to_json(&good);
        unknown["surprise_field"] = json!(1);
        let got = post_raw(&http, &proposals, bytes(&unknown)).await;
        expect(
            "unknown top-level field",
            got,
            400,
            "MALFORMED_REQUEST",
            "surprise_field",
        );
        let mut unknown = to_json(&good);
        unknown["proposal"]["priority"] = json!("high");
        let got = post_raw(&http, &proposals, bytes(&unknown)).await;
        expect(
            "unknown proposal field",
            got,
            400,
            "MALFORMED_REQUEST",
            "priority",
        );

        let mut float = to_json(&good);
        float["proposal"]["payload"]["amount"] = json!(1.5);
        let got = post_raw(&http, &proposals, bytes(&float)).await;
        expect("float in payload", got, 400, "MALFORMED_REQUEST", "float");
        let text = String::from_utf8(bytes(&to_json(&good))).expect("utf-8");
        assert!(text.contains(r#""amount":1"#), "{text}");
        let huge = text.replacen(r#""amount":1"#, r#""amount":18446744073709551616"#, 1);
        let got = post_raw(&http, &proposals, huge.into_bytes()).await;
        expect(
            "integer above 64 bits",
            got,
            400,
            "MALFORMED_REQUEST",
            "integer out of range",
        );

        // A record written as an array of its field values is refused at every level.
        let signed = to_json(&good);
        let as_array = json!([signed["proposal"].clone(), signed["signature"].clone()]);
        let got = post_raw(&http, &proposals, bytes(&as_array)).await;
        expect(
            "proposal as an array",
            got,
            400,
            "MALFORMED_REQUEST",
            "sequence",
        );
        // In declaration order: the shape serde's derived struct reader would take.
        let fields: Vec<Json> = [
            "format",
            "ledger_id",
            "domain",
            "action",
            "subject",
            "payload",
            "dependencies",
            "author",
            "nonce",
        ]
        .iter()
        .map(|field| signed["proposal"][*field].clone())
        .collect();
        let nested = json!({ "proposal": fields, "signature": signed["signature"].clone() });
        let got = post_raw(&http, &proposals, bytes(&nested)).await;
        expect(
            "proposal body as an array",
            got,
            400,
            "MALFORMED_REQUEST",
            "sequence",
        );
        let batch = json!({ "proposals": [as_array] });
        let got = post_raw(&http, &batches, bytes(&batch)).await;
        expect("batch of arrays", got, 400, "MALFORMED_REQUEST", "sequence");

        let mut unsigned = to_json(&good);
        unsigned
            .as_object_mut()
            .expect("object")
            .remove("signature");
        let got = post_raw(&http, &proposals, bytes(&unsigned)).await;
        expect(
            "missing signature",
            got,
            400,
            "MALFORMED_REQUEST",
            "signature",
        );

        // Mallory signs a proposal, then claims alice wrote it.
        let mut forged = to_json(&deposit(&ledger, "mallory", "bad-forged", 1_000_000));
        forged["proposal"]["author"] = to_json(&good)["proposal"]["author"].clone();
        let forged_id = serde_json::from_value::<SignedProposal>(forged.clone())
            .expect("well-formed")
            .id();
        let got = post_raw(&http, &proposals, bytes(&forged)).await;
        expect("forged signature", got, 400, "BAD_SIGNATURE", "");
        let batch = json!({ "proposals": [to_json(&good), forged.clone()] });
        let got = post_raw(&http, &batches, bytes(&batch)).await;
        expect(
            "batch with a forged signature",
            got,
            400,
            "BAD_SIGNATURE",
            "",
        );

        let other = LedgerId::new("another-ledger").expect("valid id");
        let foreign = deposit(&other, "alice", "bad-foreign", 1);
        let got = post_raw(&http, &proposals, bytes(&to_json(&foreign))).await;
        expect("wrong ledger", got, 400, "WRONG_LEDGER", "another-ledger");

        let mut huge = to_json(&good);
        huge["proposal"]["subject"] = json!("x".repeat(2 * 1024 * 1024));
        let got = post_raw(&http, &proposals, bytes(&huge)).await;
        expect(
            "2 MiB body",
            got,
            413,
            "BODY_TOO_LARGE",
            "request_body_bytes_max",
        );

        let over: Vec<Json> = (0..1_001).map(|_| to_json(&good)).collect();
        let got = post_raw(&http, &batches, bytes(&json!({ "proposals": over }))).await;
        expect("batch over the limit", got, 400, "LIMIT_EXCEEDED", "1001");
        let got = post_raw(&http, &batches, bytes(&json!({ "proposals": [] }))).await;
        expect(
            "empty batch",
            got,
            400,
            "LIMIT_EXCEEDED",
            "batch_proposals_max",
        );

        let response = http
            .get(format!("{}/v1/no-such-endpoint", node.url()))
            .send()
            .await
            .expect("GET unknown endpoint");
        let status = response.status().as_u16();
        let body: ErrorBody = response.json().await.expect("error body");
        expect("unknown endpoint", (status, body), 404, "NOT_FOUND", "");

        let (status, body) =
            common::api_error(client(&node.url()).proposal(forged_id).await, "NOT_FOUND");
        expect("the forged proposal", (status, body), 404, "NOT_FOUND", "");

        // A node of another history asking for a read index is refused (every node
        // checks the asker's genesis before anything else).
        let response = http
            .get(format!("{}/v1/internal/read-index", node.url()))
            .header("x-docket-forwarded", "9")
            .header("x-docket-genesis", "ab".repeat(32))
            .send()
            .await
            .expect("GET read index");
        let status = response.status().as_u16();
        let body: ErrorBody = response.json().await.expect("error body");
        expect(
            "read index for another genesis",
            (status, body),
            409,
            "MEMBER_HAS_OTHER_HISTORY",
            &"ab".repeat(32),
        );
    }

    phase(
        start,
        "raft frames for another cluster, another node, another genesis, and garbage",
    );
    for node in &cluster.nodes {
        let refusal =
            raft_exchange(&node.raft_addr, &hostile_vote("another-cluster", node.id)).await;
        let ResponseFrame::Refused { code, message } = refusal else {
            panic!(
                "node {}: a frame for another cluster was not refused: {refusal:?}",
                node.id
            );
        };
        assert_eq!(code, RefusalCode::WrongCluster, "{message}");
        assert!(message.contains("another-cluster"), "{message}");

        let wrong_target = node.id % 3 + 1;
        let refusal = raft_exchange(
            &node.raft_addr,
            &hostile_vote(&cluster.cluster_id, wrong_target),
        )
        .await;
        let ResponseFrame::Refused { code, message } = refusal else {
            panic!(
                "node {}: a frame for node {wrong_target} was not refused: {refusal:?}",
                node.id
            );
        };
        assert_eq!(code, RefusalCode::WrongNode, "{message}");

        // Right cluster, right node, another history: a node initialized on its own.
        let other_genesis: EntryHash = "ab".repeat(32).parse().expect("a hash");
        let refusal = raft_exchange(
            &node.raft_addr,
            &hostile_vote_from(&cluster.cluster_id, node.id, Some(other_genesis)),
        )
        .await;
        let ResponseFrame::Refused { code, message } = refusal else {
            panic!(
                "node {}: a frame from another genesis was not refused: {refusal:?}",
                node.id
            );
        };
        assert_eq!(code, RefusalCode::WrongGenesis, "{message}");
        assert!(message.contains(&"ab".repeat(32)), "{message}");

        let refusal = raft_exchange(&node.raft_addr, b"\xffnot bincode").await;
        let ResponseFrame::Refused { code, .. } = refusal else {
            panic!("node {}: garbage was not refused: {refusal:?}", node.id);
        };
        assert_eq!(code, RefusalCode::Malformed);
    }

    phase(
        start,
        "every ledger is unchanged, and no hostile vote was counted",
    );
    let after = positions_now(&cluster).await;
    assert_eq!(after, before, "(node, ledger length, state hash) changed");
    for s in cluster.statuses().await {
        assert!(
            s.term < HOSTILE_TERM,
            "node {} adopted a term from a refused frame: {}",
            s.node_id,
            s.term
        );
    }
    let page = client(&cluster.node(1).url())
        .ledger(0, 100)
        .await
        .expect("ledger page");
    assert_eq!(page.entries.len() as u64, before[0].1);
    assert_eq!(
        page.entries.last().and_then(|e| e.proposal_id()),
        Some(recorded.id())
    );
    phase(start, "done");
}
