//! Writes submitted at followers reach the leader and are recorded; linearizable reads at
//! another follower see them at once; batches answer one result per proposal, in order;
//! resubmitting a recorded proposal appends nothing.

mod common;

use std::time::Instant;

use common::{client, deposit, formed_cluster, ledger_id, phase, status};
use docket_core::{Decision, ProposalStatus};
use docket_node::api::SERVED_BY_HEADER;
use docket_node::wire::Consistency;
use docket_service::ReadIndexResponse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_writes_are_forwarded_and_reads_are_linearizable() {
    let start = Instant::now();
    let (_dir, cluster) = formed_cluster("fwd", 3, &[]).await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let followers: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != leader)
        .collect();
    let (writer, reader) = (followers[0], followers[1]);
    phase(
        start,
        &format!("formed; leader {leader}, writing at follower {writer}, reading at {reader}"),
    );
    assert_eq!(status(&cluster, writer).await.role, "follower");
    let before = status(&cluster, leader).await.ledger_length;

    phase(
        start,
        "a single proposal submitted at a follower is forwarded and recorded",
    );
    let proposal = deposit(&ledger, "alice", "fwd-1", 1_000);
    let response = client(&cluster.node(writer).url())
        .submit(&proposal)
        .await
        .expect("submit at follower");
    assert_eq!(response.id, proposal.id());
    assert!(!response.duplicate);
    assert_eq!(response.appended, 1);
    assert_eq!(
        response.entry.index.0, before,
        "appended at the end of the ledger"
    );
    let record = response.entry.decision_record().expect("a decision entry");
    assert_eq!(record.id, proposal.id());
    assert_eq!(
        record.decision,
        Decision::Admit,
        "alice may confirm a deposit"
    );

    phase(
        start,
        "a linearizable read at the other follower sees the write immediately",
    );
    let reader_client = client(&cluster.node(reader).url());
    let view = reader_client
        .proposal(proposal.id())
        .await
        .expect("linearizable proposal read at follower");
    assert_eq!(view.status, ProposalStatus::Admitted);
    assert_eq!(view.entries.len(), 1);
    assert_eq!(view.entries[0].hash, response.entry.hash);
    let subject = reader_client
        .state("settlement", "fwd-1", Consistency::Linearizable)
        .await
        .expect("linearizable state read at follower");
    assert!(
        subject.as_of_length > response.entry.index.0,
        "the read reflects the write: as_of_length {} after entry {}",
        subject.as_of_length,
        response.entry.index
    );
    let state = subject
        .state
        .expect("the subject has a state after the deposit");
    assert_eq!(
        state.fields.get("balance").map(|v| v.to_string()),
        Some("1000".into())
    );

    phase(
        start,
        "the follower served that read itself, after the leader's read index",
    );
    let http = reqwest::Client::new();
    let served = http
        .get(format!(
            "{}/v1/state/settlement/fwd-1",
            cluster.node(reader).url()
        ))
        .send()
        .await
        .expect("state read");
    assert_eq!(served.status(), 200);
    assert_eq!(
        served
            .headers()
            .get(SERVED_BY_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some(reader.to_string().as_str()),
        "a linearizable read at a follower is answered from the follower's state"
    );
    let index: ReadIndexResponse = http
        .get(format!(
            "{}/v1/internal/read-index",
            cluster.node(leader).url()
        ))
        .send()
        .await
        .expect("read index")
        .json()
        .await
        .expect("read index body");
    assert!(
        index.read_index.is_some_and(|i| i > 0),
        "the leader answers its read index: {index:?}"
    );
    let refused = http
        .get(format!(
            "{}/v1/internal/read-index",
            cluster.node(reader).url()
        ))
        .send()
        .await
        .expect("read index at a follower");
    assert_eq!(
        refused.status(),
        503,
        "only the leader hands out read indexes"
    );

    phase(
        start,
        "a batch at a follower answers one result per proposal, in order",
    );
    let batch = vec![
        deposit(&ledger, "alice", "fwd-b1", 10),
        deposit(&ledger, "mallory", "fwd-b2", 20),
        deposit(&ledger, "bob", "fwd-b3", 30),
    ];
    let results = client(&cluster.node(reader).url())
        .submit_batch(&batch)
        .await
        .expect("batch at follower")
        .results;
    assert_eq!(results.len(), batch.len());
    for (i, (result, sent)) in results.iter().zip(&batch).enumerate() {
        assert_eq!(result.id, sent.id(), "result {i} answers proposal {i}");
        assert!(!result.duplicate);
        assert_eq!(result.entry.proposal_id(), Some(sent.id()));
        if i > 0 {
            assert!(
                result.entry.index > results[i - 1].entry.index,
                "results are in ledger order"
            );
        }
    }
    let decisions: Vec<bool> = results
        .iter()
        .map(|r| {
            r.entry
                .decision_record()
                .is_some_and(|d| d.decision == Decision::Admit)
        })
        .collect();
    assert_eq!(decisions, [true, false, true], "mallory is not a treasurer");

    phase(
        start,
        "resubmitting a recorded proposal is a duplicate and appends nothing",
    );
    let length = cluster.converged().await.expect("converged")[0].ledger_length;
    let again = client(&cluster.node(writer).url())
        .submit(&proposal)
        .await
        .expect("resubmit at follower");
    assert!(again.duplicate);
    assert_eq!(again.appended, 0);
    assert_eq!(
        again.entry.index, response.entry.index,
        "the original entry"
    );
    assert_eq!(again.entry.hash, response.entry.hash);
    let batch_again = client(&cluster.node(leader).url())
        .submit_batch(&batch[1..])
        .await
        .expect("resubmit batch at leader")
        .results;
    assert!(batch_again.iter().all(|r| r.duplicate && r.appended == 0));
    assert_eq!(batch_again[0].entry.hash, results[1].entry.hash);
    assert_eq!(batch_again[1].entry.hash, results[2].entry.hash);
    let statuses = cluster.converged().await.expect("converged");
    for s in &statuses {
        assert_eq!(
            s.ledger_length, length,
            "node {}: duplicates appended entries",
            s.node_id
        );
    }
    phase(start, "done");
}
