//! TLS on real multi-process clusters on loopback: a TLS cluster works end to end (the CLI
//! included), every connection that is not a proper peer or client of the cluster CA is
//! refused with nothing changed on any node, certificates rotate under load with no
//! acknowledged proposal lost, and `serve` refuses plain text beyond loopback.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    assert_all_present, deposit, docket, formed_tls_cluster, ledger_id, local_proposal, phase,
    positions, wait_for, REQUEST_TIMEOUT_MS, WAIT_TIMEOUT_MS,
};
use docket_core::{LedgerEntry, ProposalId};
use docket_node::local_cluster::LocalCluster;
use docket_node::tls::certs::{validity, write_pair, Ca};
use docket_node::tls::ClientTls;
use docket_raft::network::{RefusalCode, RequestFrame, ResponseFrame, Rpc};
use openraft::raft::VoteRequest;
use openraft::{CommittedLeaderId, LogId, Vote};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A term far above anything the test cluster reaches: a vote request carrying it that a
/// node acted on would move that node's term there, which the checks would see.
const HOSTILE_TERM: u64 = 1_000;

/// What must not move on any node while hostile connections are refused: per node its
/// id, ledger length, state hash and term, and the membership as each node sees it.
type Fingerprint = (
    Vec<(u64, u64, Option<docket_core::StateHash>, u64)>,
    Vec<Vec<(u64, String, String, bool)>>,
);

async fn fingerprint(cluster: &LocalCluster) -> Fingerprint {
    let mut members = Vec::new();
    for node in &cluster.nodes {
        let view = node.client().members().await.expect("members");
        let mut seen: Vec<_> = view
            .members
            .into_iter()
            .map(|m| (m.id, m.raft_addr, m.api_addr, m.voter))
            .collect();
        seen.sort();
        members.push(seen);
    }
    (fingerprint_positions(cluster).await, members)
}

async fn fingerprint_positions(
    cluster: &LocalCluster,
) -> Vec<(u64, u64, Option<docket_core::StateHash>, u64)> {
    let statuses = cluster.converged().await.expect("converged");
    let terms: Vec<u64> = statuses.iter().map(|s| s.term).collect();
    positions(&statuses)
        .into_iter()
        .map(|(id, length, hash)| {
            let term = statuses
                .iter()
                .find(|s| s.node_id == id)
                .map_or(0, |s| s.term);
            assert!(terms.iter().all(|t| *t < HOSTILE_TERM));
            (id, length, hash, term)
        })
        .collect()
}

/// A vote request to `target` claiming to come from `from`, at [`HOSTILE_TERM`].
fn vote_frame(cluster_id: &str, target: u64, from: u64) -> Vec<u8> {
    let frame = RequestFrame {
        cluster_id: cluster_id.to_owned(),
        target,
        from,
        genesis: None,
        rpc: Rpc::Vote(VoteRequest {
            vote: Vote::new(HOSTILE_TERM, from),
            last_log_id: Some(LogId::new(
                CommittedLeaderId::new(HOSTILE_TERM, from),
                1_000_000,
            )),
        }),
    };
    docket_raft::codec::encode(&frame).expect("frame encodes")
}

/// Writes one length-prefixed frame and reads the answer; `Err` when the connection ends
/// (or fails) without one.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    payload: &[u8],
) -> Result<ResponseFrame, String> {
    let length = u32::try_from(payload.len()).expect("small frame");
    stream
        .write_all(&length.to_be_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream
        .write_all(payload)
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream.flush().await.map_err(|e| format!("flush: {e}"))?;
    let mut header = [0u8; 4];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let length = u32::from_be_bytes(header) as usize;
    if length > 1024 * 1024 {
        return Err(format!("not a raft answer (length {length})"));
    }
    let mut reply = vec![0u8; length];
    stream
        .read_exact(&mut reply)
        .await
        .map_err(|e| format!("cut answer: {e}"))?;
    docket_raft::codec::decode::<ResponseFrame>(&reply).map_err(|e| format!("not a frame: {e}"))
}

/// A TLS connection to a Raft port presenting `identity` (certificate and key files), and
/// one frame over it.
async fn tls_raft_exchange(
    addr: &str,
    ca: &Path,
    identity: (&Path, &Path),
    payload: &[u8],
) -> Result<ResponseFrame, String> {
    let tls = ClientTls {
        ca: ca.to_owned(),
        identity: Some((identity.0.to_owned(), identity.1.to_owned())),
    };
    let config = Arc::new(tls.rustls_config().expect("client config"));
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from("127.0.0.1").expect("an IP name");
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        exchange(&mut stream, payload).await
    };
    tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), attempt)
        .await
        .unwrap_or_else(|_| Err("no answer in time".to_owned()))
}

/// The certificate a TLS server at `addr` presents, connecting with `identity`.
async fn served_cert(addr: &str, ca: &Path, identity: (&Path, &Path)) -> Result<Vec<u8>, String> {
    let tls = ClientTls {
        ca: ca.to_owned(),
        identity: Some((identity.0.to_owned(), identity.1.to_owned())),
    };
    let config = Arc::new(tls.rustls_config().map_err(|e| e.to_string())?);
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("127.0.0.1").expect("an IP name");
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .ok_or("no certificate")?;
    Ok(certs[0].as_ref().to_vec())
}

fn cert_file_der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path)
        .expect("a PEM certificate")
        .as_ref()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_elects_takes_proposals_from_the_cli_and_replicates() {
    let start = Instant::now();
    phase(
        start,
        "three nodes with mutual TLS under one CA: formed, elected",
    );
    let (dir, cluster) = formed_tls_cluster("tls-basic", 3, 5_000, false).await;
    let tls = cluster.tls().expect("tls").clone();
    let before = cluster.converged().await.expect("converged");
    assert!(cluster.node(1).url().starts_with("https://"));

    phase(
        start,
        "docket propose over HTTPS with the CA and a client certificate",
    );
    let key = dir.path().join("alice.key");
    docket_node::cli::write_key_file(&key, &docket_core::dev::signing_key("alice"), true)
        .expect("key file");
    let ca = tls.ca().display().to_string();
    let client_cert = tls.dir.join("client.pem").display().to_string();
    let client_key = tls.dir.join("client.key").display().to_string();
    // A follower's address without a scheme: --ca makes it https, and the write is forwarded
    // to the leader over mutual TLS.
    let leader = cluster.leader().await.expect("leader");
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader)
        .expect("a follower");
    let (ok, stdout, stderr) = docket(&[
        "--ca",
        &ca,
        "--client-cert",
        &client_cert,
        "--client-key",
        &client_key,
        "--node",
        &follower.api_addr,
        "--output",
        "json",
        "propose",
        "--key",
        &key.display().to_string(),
        "--action",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "--subject",
        "tls-0001",
        "--payload",
        r#"{"amount": 125000, "currency": "EUR"}"#,
    ])
    .await;
    assert!(ok, "propose failed: {stdout}\n{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).expect("JSON answer");
    assert_eq!(
        answer["entry"]["record"]["decision"]["decision"], "admit",
        "{stdout}"
    );

    phase(
        start,
        "the same command without --ca cannot talk to the TLS node",
    );
    let (ok, stdout, stderr) = docket(&["--node", &follower.api_addr, "status"]).await;
    assert!(!ok, "plain status against a TLS node succeeded: {stdout}");
    assert!(!stderr.is_empty());

    phase(start, "every node holds the entry");
    let after = common::converged_at(&cluster, before[0].ledger_length + 1).await;
    assert_eq!(after.len(), 3);
    let (ok, stdout, stderr) =
        docket(&["--ca", &ca, "--node", &cluster.node(1).url(), "status"]).await;
    assert!(ok, "status over https: {stdout}\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_are_not_the_clusters_are_refused_and_change_nothing() {
    let start = Instant::now();
    let (dir, cluster) = formed_tls_cluster("tls-hostile", 3, 5_000, true).await;
    let tls = cluster.tls().expect("tls").clone();
    let ledger = ledger_id(&cluster);
    let good = deposit(&ledger, "alice", "hostile-0", 1);
    cluster
        .node(1)
        .client()
        .submit(&good)
        .await
        .expect("one good write over TLS");
    let before = fingerprint(&cluster).await;
    phase(
        start,
        &format!("baseline (node, length, hash, term): {before:?}"),
    );

    // Material an attacker might hold: another CA's certificates, expired certificates of
    // this CA, a genuine node certificate (node 3's) and the client certificate.
    let other = dir.path().join("other-ca");
    std::fs::create_dir_all(&other).expect("dir");
    let other_ca = Ca::generate("someone-else").expect("other CA");
    let (from, to) = validity(30);
    let (other_client, other_client_key) = write_pair(
        &other,
        "client",
        &other_ca.issue_client("x", from, to).expect("issue"),
    )
    .expect("write");
    let (other_node2, other_node2_key) = write_pair(
        &other,
        "node-2",
        &other_ca.issue_node(2, &[], from, to).expect("issue"),
    )
    .expect("write");
    let ca = Ca::load(&tls.dir).expect("cluster CA");
    let now = time::OffsetDateTime::now_utc();
    let (expired_from, expired_to) = (
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    );
    let expired_dir = dir.path().join("expired");
    std::fs::create_dir_all(&expired_dir).expect("dir");
    let (expired_client, expired_client_key) = write_pair(
        &expired_dir,
        "client",
        &ca.issue_client("old", expired_from, expired_to)
            .expect("issue"),
    )
    .expect("write");
    let (expired_node2, expired_node2_key) = write_pair(
        &expired_dir,
        "node-2",
        &ca.issue_node(2, &[], expired_from, expired_to)
            .expect("issue"),
    )
    .expect("write");
    let (node3_cert, node3_key) = tls.node_files(3);
    let (client_cert, client_key) = (tls.dir.join("client.pem"), tls.dir.join("client.key"));
    let ca_file = tls.ca();

    let mut hostile = Vec::new();
    for node in &cluster.nodes {
        let id = node.id;
        phase(start, &format!("node {id}: plain HTTP to the TLS API port"));
        let proposal = deposit(&ledger, "alice", &format!("hostile-plain-{id}"), 1);
        let plain = reqwest::Client::new()
            .post(format!("http://{}/v1/proposals", node.api_addr))
            .json(&proposal)
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .send()
            .await;
        assert!(
            plain.is_err(),
            "node {id}: plain HTTP was answered: {plain:?}"
        );
        hostile.push(proposal.id());

        phase(
            start,
            &format!("node {id}: no client certificate (the nodes require one)"),
        );
        let anonymous = ClientTls {
            ca: ca_file.clone(),
            identity: None,
        }
        .reqwest_builder()
        .expect("client")
        .build()
        .expect("client");
        let proposal = deposit(&ledger, "alice", &format!("hostile-anon-{id}"), 1);
        let answer = anonymous
            .post(format!("{}/v1/proposals", node.url()))
            .json(&proposal)
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .send()
            .await;
        assert!(
            answer.is_err(),
            "node {id}: a client without a certificate was served: {answer:?}"
        );
        hostile.push(proposal.id());

        phase(
            start,
            &format!("node {id}: a client certificate from another CA"),
        );
        for (what, cert, key) in [
            (
                "another CA's client certificate",
                &other_client,
                &other_client_key,
            ),
            (
                "an expired client certificate",
                &expired_client,
                &expired_client_key,
            ),
        ] {
            let http = ClientTls {
                ca: ca_file.clone(),
                identity: Some((cert.clone(), key.clone())),
            }
            .reqwest_builder()
            .expect("client")
            .build()
            .expect("client");
            let proposal = deposit(
                &ledger,
                "alice",
                &format!("hostile-{id}-{}", hostile.len()),
                1,
            );
            let answer = http
                .post(format!("{}/v1/proposals", node.url()))
                .json(&proposal)
                .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
                .send()
                .await;
            assert!(answer.is_err(), "node {id}: {what} was served: {answer:?}");
            hostile.push(proposal.id());
        }

        phase(
            start,
            &format!("node {id}: internal routes with a client (not node) certificate"),
        );
        let answer = tls
            .http
            .get(format!("{}/v1/internal/read-index", node.url()))
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .send()
            .await
            .expect("the API answers a client of the CA");
        assert_eq!(answer.status().as_u16(), 403);
        let body = answer.text().await.expect("body");
        assert!(body.contains("PEER_NOT_AUTHENTICATED"), "{body}");
        let proposal = deposit(&ledger, "alice", &format!("hostile-fwd-{id}"), 1);
        let answer = tls
            .http
            .post(format!("{}/v1/proposals", node.url()))
            .header("x-docket-forwarded", "2")
            .json(&proposal)
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .send()
            .await
            .expect("answered");
        assert_eq!(
            answer.status().as_u16(),
            403,
            "a client posing as a forwarding node"
        );
        hostile.push(proposal.id());

        if id != 3 {
            phase(
                start,
                &format!("node {id}: node 3's certificate claiming to forward for node 2"),
            );
            let node3 = ClientTls {
                ca: ca_file.clone(),
                identity: Some((node3_cert.clone(), node3_key.clone())),
            }
            .reqwest_builder()
            .expect("client")
            .build()
            .expect("client");
            // Control: node 3's certificate is a node's, so the internal route serves it.
            let answer = node3
                .get(format!("{}/v1/internal/read-index", node.url()))
                .header("x-docket-forwarded", "3")
                .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
                .send()
                .await
                .expect("answered");
            assert_ne!(answer.status().as_u16(), 403, "node 3 as itself is a node");
            let proposal = deposit(&ledger, "alice", &format!("hostile-fwd3-{id}"), 1);
            let answer = node3
                .post(format!("{}/v1/proposals", node.url()))
                .header("x-docket-forwarded", "2")
                .json(&proposal)
                .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
                .send()
                .await
                .expect("answered");
            assert_eq!(answer.status().as_u16(), 403, "node 3 posing as node 2");
            let body = answer.text().await.expect("body");
            assert!(body.contains("PEER_NOT_AUTHENTICATED"), "{body}");
            hostile.push(proposal.id());
        }

        // The Raft port. The frames claim node 2 (node 1 for node 2 itself), at a term far
        // above the cluster's: acted on, they would move the term.
        let claimed = if id == 2 { 1 } else { 2 };
        let frame = vote_frame(&cluster.cluster_id, id, claimed);

        phase(
            start,
            &format!("node {id}: a plain (non-TLS) raft frame to the TLS raft port"),
        );
        let mut tcp = tokio::net::TcpStream::connect(&node.raft_addr)
            .await
            .expect("connect");
        let plain = tokio::time::timeout(
            Duration::from_millis(REQUEST_TIMEOUT_MS),
            exchange(&mut tcp, &frame),
        )
        .await
        .expect("the port closes a plain connection in time");
        assert!(
            plain.is_err(),
            "node {id}: a plain frame got an answer: {plain:?}"
        );

        for (what, cert, key) in [
            (
                "another CA's node certificate",
                &other_node2,
                &other_node2_key,
            ),
            (
                "an expired node certificate",
                &expired_node2,
                &expired_node2_key,
            ),
            (
                "the client certificate (no node id)",
                &client_cert,
                &client_key,
            ),
        ] {
            phase(start, &format!("node {id}: raft over TLS with {what}"));
            let answer = tls_raft_exchange(&node.raft_addr, &ca_file, (cert, key), &frame).await;
            assert!(
                answer.is_err(),
                "node {id}: {what} got an answer: {answer:?}"
            );
        }

        if id != 3 {
            phase(
                start,
                &format!("node {id}: node 3's genuine certificate, claiming node {claimed}"),
            );
            let answer =
                tls_raft_exchange(&node.raft_addr, &ca_file, (&node3_cert, &node3_key), &frame)
                    .await;
            match answer {
                Ok(ResponseFrame::Refused { code, message }) => {
                    assert_eq!(code, RefusalCode::WrongPeer, "{message}")
                }
                other => panic!("node {id}: a peer posing as node {claimed} got {other:?}"),
            }
            // The same connection setup reaches the frame checks when the claim is honest:
            // a frame for another cluster is refused for that, not for its certificate.
            let honest = vote_frame("another-cluster", id, 3);
            let answer = tls_raft_exchange(
                &node.raft_addr,
                &ca_file,
                (&node3_cert, &node3_key),
                &honest,
            )
            .await;
            assert!(
                matches!(
                    answer,
                    Ok(ResponseFrame::Refused {
                        code: RefusalCode::WrongCluster,
                        ..
                    })
                ),
                "node {id}: {answer:?}"
            );
        }
    }

    phase(
        start,
        "nothing changed on any node, and no hostile proposal is recorded",
    );
    let after = fingerprint(&cluster).await;
    assert_eq!(before, after);
    let http = tls.http.clone();
    for node in &cluster.nodes {
        for id in &hostile {
            let held = local_proposal(&http, &node.url(), *id).await.expect("read");
            assert!(
                held.is_none(),
                "node {}: hostile proposal {} recorded",
                node.id,
                id.short()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_writes_without_losing_an_acknowledged_proposal() {
    let start = Instant::now();
    let (_dir, cluster) = formed_tls_cluster("tls-rotate", 3, 300, false).await;
    let tls = cluster.tls().expect("tls").clone();
    let ledger = ledger_id(&cluster);
    let clients: Vec<_> = cluster.nodes.iter().map(|n| n.client()).collect();

    phase(start, "writing through every node");
    let acked: Arc<Mutex<Vec<(ProposalId, LedgerEntry)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (acked, stop, ledger) = (acked.clone(), stop.clone(), ledger.clone());
        async move {
            let mut n = 0usize;
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let proposal = deposit(&ledger, "alice", &format!("rotate-{n}"), 1);
                match clients[n % clients.len()].submit(&proposal).await {
                    Ok(response) => acked
                        .lock()
                        .expect("lock")
                        .push((response.id, response.entry)),
                    Err(error) => failures.push(error.to_string()),
                }
                n += 1;
            }
            failures
        }
    });
    wait_for(
        "some writes before the rotation",
        WAIT_TIMEOUT_MS,
        || async {
            let count = acked.lock().expect("lock").len();
            if count >= 20 {
                Ok(())
            } else {
                Err(format!("{count} acknowledged"))
            }
        },
    )
    .await;

    phase(
        start,
        "replacing every node's certificate and key while writes go on",
    );
    let old: Vec<Vec<u8>> = cluster
        .nodes
        .iter()
        .map(|n| cert_file_der(&tls.node_files(n.id).0))
        .collect();
    let ca = Ca::load(&tls.dir).expect("CA");
    let (from, to) = validity(30);
    for node in &cluster.nodes {
        let issued = ca.issue_node(node.id, &[], from, to).expect("issue");
        write_pair(&tls.dir, &format!("node-{}", node.id), &issued).expect("write");
    }
    let acked_at_rotation = acked.lock().expect("lock").len();

    phase(
        start,
        "new connections to each API and Raft port get the new certificate",
    );
    let (client_cert, client_key) = (tls.dir.join("client.pem"), tls.dir.join("client.key"));
    let (node1_cert, node1_key) = tls.node_files(1);
    for (index, node) in cluster.nodes.iter().enumerate() {
        let new = cert_file_der(&tls.node_files(node.id).0);
        assert_ne!(new, old[index]);
        for (port, identity) in [
            (
                &node.api_addr,
                (client_cert.as_path(), client_key.as_path()),
            ),
            (&node.raft_addr, (node1_cert.as_path(), node1_key.as_path())),
        ] {
            wait_for(
                &format!("node {} serving its new certificate on {port}", node.id),
                WAIT_TIMEOUT_MS,
                || async {
                    let served = served_cert(port, &tls.ca(), identity).await?;
                    if served == new {
                        Ok(())
                    } else {
                        Err("still the old certificate".to_owned())
                    }
                },
            )
            .await;
        }
    }

    phase(start, "writes go on after the rotation");
    wait_for("writes after the rotation", WAIT_TIMEOUT_MS, || async {
        let count = acked.lock().expect("lock").len();
        if count >= acked_at_rotation + 20 {
            Ok(())
        } else {
            Err(format!("{count} acknowledged"))
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let failures = writer.await.expect("writer");
    let acked = acked.lock().expect("lock").clone();
    phase(
        start,
        &format!(
            "{} acknowledged, {} failed: {failures:?}",
            acked.len(),
            failures.len()
        ),
    );

    phase(
        start,
        "a follower restarted on the new files rejoins over mutual TLS",
    );
    let mut cluster = cluster;
    let leader = cluster.leader().await.expect("leader");
    let follower = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader)
        .expect("follower");
    cluster.kill(follower).await.expect("kill");
    cluster.start(follower).await.expect("restart");
    cluster
        .converged()
        .await
        .expect("converged after the restart");

    phase(start, "every acknowledged proposal is on every node");
    assert_all_present(&cluster, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_plain_text_beyond_loopback() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data").display().to_string();
    for (api, raft, exposed) in [
        ("0.0.0.0:0", "127.0.0.1:0", "api_addr 0.0.0.0:0"),
        ("127.0.0.1:0", "0.0.0.0:0", "raft_addr 0.0.0.0:0"),
    ] {
        let (ok, stdout, stderr) = docket(&[
            "serve",
            "--node-id",
            "1",
            "--api-addr",
            api,
            "--raft-addr",
            raft,
            "--data-dir",
            &data,
        ])
        .await;
        assert!(!ok, "serve without TLS on {api} / {raft} started: {stdout}");
        assert!(stderr.contains(exposed), "{stderr}");
        assert!(
            stderr.contains("--insecure-plaintext-non-loopback"),
            "{stderr}"
        );
        assert!(stderr.contains("[tls]"), "{stderr}");
    }
    assert!(
        !Path::new(&data).exists(),
        "a refused node opened no storage"
    );

    // With the flag, the operator's choice is honoured: the node starts.
    let mut child = tokio::process::Command::new(common::binary())
        .args([
            "serve",
            "--node-id",
            "1",
            "--api-addr",
            "0.0.0.0:0",
            "--raft-addr",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--insecure-plaintext-non-loopback",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut line = vec![0u8; 256];
    let read = tokio::time::timeout(
        Duration::from_millis(WAIT_TIMEOUT_MS),
        stdout.read(&mut line),
    )
    .await
    .expect("the node says it serves")
    .expect("read");
    let line = String::from_utf8_lossy(&line[..read]);
    assert!(line.contains("serving"), "{line}");
    child.start_kill().expect("kill");
    let _ = child.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificates_at_once() {
    let start = Instant::now();
    // Polling once an hour: only the signal can explain a reload within the test.
    let (_dir, cluster) = formed_tls_cluster("tls-sighup", 1, 3_600_000, false).await;
    let tls = cluster.tls().expect("tls").clone();
    let node = cluster.node(1);
    let (client_cert, client_key) = (tls.dir.join("client.pem"), tls.dir.join("client.key"));
    let identity = (client_cert.as_path(), client_key.as_path());
    let old = served_cert(&node.api_addr, &tls.ca(), identity)
        .await
        .expect("served");

    phase(
        start,
        "new files for node 1: not picked up without a signal",
    );
    let ca = Ca::load(&tls.dir).expect("CA");
    let (from, to) = validity(30);
    write_pair(
        &tls.dir,
        "node-1",
        &ca.issue_node(1, &[], from, to).expect("issue"),
    )
    .expect("write");
    let new = cert_file_der(&tls.node_files(1).0);
    assert_ne!(old, new);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let served = served_cert(&node.api_addr, &tls.ca(), identity)
        .await
        .expect("served");
    assert_eq!(served, old, "reloaded without a signal or a poll");

    phase(
        start,
        "SIGHUP: the next connection gets the new certificate",
    );
    let pid = node.pid().expect("running").to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await
        .expect("kill -HUP");
    assert!(status.success());
    wait_for(
        "the new certificate after SIGHUP",
        WAIT_TIMEOUT_MS,
        || async {
            let served = served_cert(&node.api_addr, &tls.ca(), identity).await?;
            if served == new {
                Ok(())
            } else {
                Err("still the old certificate".to_owned())
            }
        },
    )
    .await;
    node.client().status().await.expect("the node still serves");
}
