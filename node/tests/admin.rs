//! Governed administration on a real TLS cluster: cluster init and membership changes are
//! signed requests the constitution must authorize. Every unauthorized request — no
//! signature, a bad signature, a principal without the role, another cluster's id, a stale
//! or replayed request, one sent to the wrong route — is refused with its stable code and
//! changes nothing on any node (ledger length, state hash, term, membership); authorized
//! ones are recorded in the ledger (principal, role, rule) and applied.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{api_error, binary, ledger_id, phase};
use docket_core::{dev, Decision, LedgerEntry, LedgerId, SignedProposal, StateHash};
use docket_node::client::Client;
use docket_node::local_cluster::{operator_key, LocalCluster};
use docket_node::wire::InitRequest;
use docket_service::admin::{constitution_version, AdminOp, ADMIN_REQUEST_AGE_MAX_MS};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

fn sign(ledger: &LedgerId, op: &AdminOp, who: &str, issued_ms: u64, nonce: u64) -> SignedProposal {
    op.sign(ledger, issued_ms, nonce, &dev::signing_key(who))
}

/// What a refused request must leave exactly as it was, on every node.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    ledger_length: u64,
    state_hash: Option<StateHash>,
    term: u64,
    voters: Vec<u64>,
    learners: Vec<u64>,
}

async fn fingerprints(cluster: &LocalCluster, ids: &[u64]) -> Vec<Fingerprint> {
    let mut out = Vec::new();
    for id in ids {
        let s = cluster.node(*id).client().status().await.expect("status");
        let members = cluster
            .node(*id)
            .client()
            .members()
            .await
            .map(|m| m.members)
            .unwrap_or_default();
        out.push(Fingerprint {
            ledger_length: s.ledger_length,
            state_hash: s.state_hash,
            term: s.term,
            voters: members.iter().filter(|m| m.voter).map(|m| m.id).collect(),
            learners: members.iter().filter(|m| !m.voter).map(|m| m.id).collect(),
        });
    }
    out
}

async fn entry(client: &Client, index: u64) -> LedgerEntry {
    client
        .ledger(index, 1)
        .await
        .expect("ledger page")
        .entries
        .into_iter()
        .next()
        .expect("the entry exists")
}

/// The entry's action, decision, principal and role.
fn describe(entry: &LedgerEntry) -> (String, Decision, Option<String>, Option<String>) {
    let record = entry.decision_record().expect("a decision record");
    (
        record.proposal.proposal.action.clone(),
        record.decision.clone(),
        record.access.principal.clone(),
        record.access.role.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_init_is_governed_by_the_genesis_constitution() {
    let start = std::time::Instant::now();
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut cluster = LocalCluster::new(binary(), dir.path(), "admin-init", 1)
        .expect("prepare cluster")
        .with_tls(5_000)
        .expect("certificates");
    cluster.start_all().await.expect("start");
    let node = cluster.node(1).client();
    let ledger = LedgerId::new("admin-init").expect("valid");
    let default_version =
        constitution_version(docket_core::constitution::DEFAULT_DOCUMENT).expect("parses");
    let cosigner = node
        .status()
        .await
        .expect("status")
        .cosigner_key
        .expect("the node shows its checkpoint key");
    let init = AdminOp::Init {
        constitution: default_version.clone(),
        node: 1,
        cosigner,
    };
    let request = |authority: Option<SignedProposal>| InitRequest {
        constitution: None,
        authority,
    };

    phase(start, "refused init requests leave the node uninitialized");
    let mut tampered = sign(&ledger, &init, dev::OPERATOR, now_ms(), 1);
    tampered.signature = sign(&ledger, &init, dev::OPERATOR, now_ms(), 2).signature;
    let other_document = docket_core::constitution::DEFAULT_DOCUMENT
        .replace("deferred_max = 10000", "deferred_max = 9999");
    let other_version = AdminOp::Init {
        constitution: constitution_version(&other_document).expect("parses"),
        node: 1,
        cosigner,
    };
    let other_cosigner = AdminOp::Init {
        constitution: default_version.clone(),
        node: 1,
        cosigner: dev::key("alice"),
    };
    let stale = now_ms() - ADMIN_REQUEST_AGE_MAX_MS - 60_000;
    let cases: Vec<(&str, Option<SignedProposal>, &str)> = vec![
        ("no signature", None, "SIGNATURE_REQUIRED"),
        ("bad signature", Some(tampered), "BAD_SIGNATURE"),
        (
            "a principal without the operator role",
            Some(sign(&ledger, &init, "mallory", now_ms(), 3)),
            "UNAUTHORIZED",
        ),
        (
            "a treasurer",
            Some(sign(&ledger, &init, "alice", now_ms(), 4)),
            "UNAUTHORIZED",
        ),
        (
            "another cluster id",
            Some(sign(
                &LedgerId::new("another-cluster").expect("valid"),
                &init,
                dev::OPERATOR,
                now_ms(),
                5,
            )),
            "WRONG_LEDGER",
        ),
        (
            "signed for another constitution",
            Some(sign(&ledger, &other_version, dev::OPERATOR, now_ms(), 6)),
            "MALFORMED_REQUEST",
        ),
        (
            "stale",
            Some(sign(&ledger, &init, dev::OPERATOR, stale, 7)),
            "STALE_REQUEST",
        ),
        (
            "declaring another node's checkpoint key",
            Some(sign(&ledger, &other_cosigner, dev::OPERATOR, now_ms(), 10)),
            "MALFORMED_REQUEST",
        ),
    ];
    for (what, authority, code) in cases {
        let (_, body) = api_error(node.init(request(authority)).await, code);
        assert_eq!(body.code, code, "{what}: {}", body.message);
        let status = node.status().await.expect("status");
        assert!(!status.initialized, "{what} initialized the node");
        assert_eq!(status.ledger_length, 0, "{what}");
    }

    phase(
        start,
        "the operator's init writes genesis, then records itself",
    );
    let signed = sign(&ledger, &init, dev::OPERATOR, now_ms(), 8);
    let status = node
        .init(request(Some(signed.clone())))
        .await
        .expect("init");
    assert!(status.initialized);
    assert_eq!(
        status.ledger_length, 2,
        "genesis and the CLUSTER.INIT record"
    );
    let (action, decision, principal, role) = describe(&entry(&node, 1).await);
    assert_eq!(action, "CLUSTER.INIT");
    assert_eq!(decision, Decision::Admit);
    assert_eq!(principal.as_deref(), Some("oscar"));
    assert_eq!(role.as_deref(), Some("operator"));

    phase(start, "replaying it changes nothing");
    let (_, body) = api_error(
        node.init(request(Some(signed))).await,
        "ALREADY_INITIALIZED",
    );
    assert_eq!(body.code, "ALREADY_INITIALIZED");
    assert_eq!(node.status().await.expect("status").ledger_length, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_are_governed_and_recorded() {
    let start = std::time::Instant::now();
    let (_dir, mut cluster) = common::formed_tls_cluster("admin-members", 3, 5_000, false).await;
    let ledger = ledger_id(&cluster);
    let members = [1, 2, 3];
    let leader = cluster.leader().await.expect("leader");
    let new = cluster.add_slot().expect("slot for node 4");
    cluster.start(new).await.expect("start node 4");
    let add = AdminOp::MemberAdd {
        node: new,
        raft_addr: cluster.node(new).raft_addr.clone(),
        api_addr: cluster.node(new).api_addr.clone(),
        learner: false,
        cosigner: cluster
            .node(new)
            .client()
            .status()
            .await
            .expect("status of node 4")
            .cosigner_key
            .expect("its checkpoint key"),
    };
    // Sent to a follower: admin requests are forwarded to the leader like writes.
    let via = members
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    let c = cluster.node(via).client();
    let before = fingerprints(&cluster, &members).await;

    phase(
        start,
        "unauthorized membership requests are refused; nothing changes",
    );
    let mut tampered = sign(&ledger, &add, dev::OPERATOR, now_ms(), 1);
    tampered.signature = sign(&ledger, &add, "alice", now_ms(), 1).signature;
    let stale = now_ms() - ADMIN_REQUEST_AGE_MAX_MS - 60_000;
    let future = now_ms() + ADMIN_REQUEST_AGE_MAX_MS + 60_000;
    let cases: Vec<(&str, Option<SignedProposal>, &str)> = vec![
        ("no signature", None, "SIGNATURE_REQUIRED"),
        ("a tampered signature", Some(tampered), "BAD_SIGNATURE"),
        (
            "mallory (no role)",
            Some(sign(&ledger, &add, "mallory", now_ms(), 2)),
            "UNAUTHORIZED",
        ),
        (
            "alice (treasurer, not operator)",
            Some(sign(&ledger, &add, "alice", now_ms(), 3)),
            "UNAUTHORIZED",
        ),
        (
            "another cluster id",
            Some(sign(
                &LedgerId::new("another-cluster").expect("valid"),
                &add,
                dev::OPERATOR,
                now_ms(),
                4,
            )),
            "WRONG_LEDGER",
        ),
        (
            "issued too long ago",
            Some(sign(&ledger, &add, dev::OPERATOR, stale, 5)),
            "STALE_REQUEST",
        ),
        (
            "issued in the future",
            Some(sign(&ledger, &add, dev::OPERATOR, future, 6)),
            "STALE_REQUEST",
        ),
        (
            "declaring a checkpoint key that is not node 4's",
            Some(sign(
                &ledger,
                &match add.clone() {
                    AdminOp::MemberAdd {
                        node,
                        raft_addr,
                        api_addr,
                        learner,
                        ..
                    } => AdminOp::MemberAdd {
                        node,
                        raft_addr,
                        api_addr,
                        learner,
                        cosigner: dev::key("alice"),
                    },
                    other => other,
                },
                dev::OPERATOR,
                now_ms(),
                11,
            )),
            "MALFORMED_REQUEST",
        ),
        (
            "a removal sent to the add route",
            Some(sign(
                &ledger,
                &AdminOp::MemberRemove { node: 3 },
                dev::OPERATOR,
                now_ms(),
                7,
            )),
            "MALFORMED_REQUEST",
        ),
    ];
    for (what, authority, code) in cases {
        let (_, body) = api_error(c.add_member(authority).await, code);
        assert_eq!(body.code, code, "{what}: {}", body.message);
        assert_eq!(
            fingerprints(&cluster, &members).await,
            before,
            "{what} changed the cluster"
        );
    }
    // The right request on the wrong route, and the wrong node on the right route.
    let remove_3 = sign(
        &ledger,
        &AdminOp::MemberRemove { node: 3 },
        dev::OPERATOR,
        now_ms(),
        8,
    );
    let (_, body) = api_error(
        c.remove_member(2, Some(remove_3.clone())).await,
        "MALFORMED_REQUEST",
    );
    assert_eq!(body.code, "MALFORMED_REQUEST", "{}", body.message);
    let (_, body) = api_error(c.submit(&remove_3).await, "ADMIN_ROUTE_REQUIRED");
    assert_eq!(body.code, "ADMIN_ROUTE_REQUIRED", "{}", body.message);
    let (_, body) = api_error(
        c.remove_member(
            3,
            Some(sign(
                &ledger,
                &AdminOp::MemberRemove { node: 3 },
                "grace",
                now_ms(),
                9,
            )),
        )
        .await,
        "UNAUTHORIZED",
    );
    assert!(body.message.contains("grace"), "{}", body.message);
    assert_eq!(fingerprints(&cluster, &members).await, before);

    // A client that pinned the three voters before the change.
    let config = tempfile::tempdir().expect("config dir");
    std::env::set_var("DOCKET_CONFIG_DIR", config.path());
    docket_client::verify::verified_checkpoint(&c)
        .await
        .expect("first contact pins the voters");
    let pinned_file = config
        .path()
        .join("clusters")
        .join(format!("{}.cosigners.json", ledger.as_str()));
    let pinned_voters = || -> Vec<u64> {
        docket_client::verify::read_cosigners(&pinned_file)
            .expect("pinned")
            .iter()
            .map(|c| c.node)
            .collect()
    };
    assert_eq!(pinned_voters(), vec![1, 2, 3]);

    phase(start, "the operator adds node 4: recorded, then applied");
    let signed = sign(&ledger, &add, dev::OPERATOR, now_ms(), 10);
    let added = c
        .add_member(Some(signed.clone()))
        .await
        .expect("add node 4");
    let recorded = added.recorded.expect("the add names its entry");
    assert_eq!(recorded.id, signed.id());
    assert_eq!(recorded.index.0, before[0].ledger_length);
    assert!(added.members.iter().any(|m| m.id == new && m.voter));
    let (action, decision, principal, role) = describe(&entry(&c, recorded.index.0).await);
    assert_eq!(
        (
            action.as_str(),
            decision,
            principal.as_deref(),
            role.as_deref()
        ),
        (
            "CLUSTER.MEMBER_ADD",
            Decision::Admit,
            Some("oscar"),
            Some("operator")
        )
    );
    let state = c
        .state(
            "cluster",
            "node-4",
            docket_node::wire::Consistency::Linearizable,
        )
        .await
        .expect("cluster/node-4");
    assert_eq!(state.state.map(|s| s.state).as_deref(), Some("member"));

    phase(
        start,
        "replaying the recorded request is refused; nothing changes",
    );
    let all = [1, 2, 3, new];
    let after_add = {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let f = fingerprints(&cluster, &all).await;
            if f.windows(2).all(|w| w[0] == w[1]) || std::time::Instant::now() > deadline {
                break f;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (_, body) = api_error(c.add_member(Some(signed)).await, "REPLAYED_REQUEST");
    assert_eq!(body.code, "REPLAYED_REQUEST", "{}", body.message);
    assert_eq!(fingerprints(&cluster, &all).await, after_add);

    phase(
        start,
        "a client follows the voters through the ledger's proved cluster records",
    );
    docket_client::verify::verified_checkpoint(&c)
        .await
        .expect("the new voter set is followed");
    assert_eq!(pinned_voters(), vec![1, 2, 3, 4]);
    let pinned = docket_client::verify::read_cosigners(&pinned_file).expect("pinned");
    // Voters the ledger does not vouch for are not followed: a key no record declares, and
    // a voter dropped without a removal.
    let mut forged = pinned.clone();
    forged.push(docket_api::wire::Cosigner {
        node: 9,
        name: docket_core::checkpoint::cosigner_name(ledger.as_str(), 9),
        key: Some(dev::key("mallory")),
    });
    let error = docket_client::state_proof::follow_voters(&c, &pinned, &forged)
        .await
        .expect_err("node 9 is not a member");
    assert!(format!("{error:#}").contains("node 9"), "{error:#}");
    let mut rekeyed = pinned.clone();
    rekeyed[3].key = Some(dev::key("mallory"));
    let error = docket_client::state_proof::follow_voters(&c, &pinned, &rekeyed)
        .await
        .expect_err("node 4 declared another key");
    assert!(format!("{error:#}").contains("node 4"), "{error:#}");
    let dropped: Vec<_> = pinned.iter().filter(|c| c.node != 2).cloned().collect();
    let error = docket_client::state_proof::follow_voters(&c, &pinned, &dropped)
        .await
        .expect_err("node 2 was not removed");
    assert!(format!("{error:#}").contains("node 2"), "{error:#}");

    phase(
        start,
        "the operator removes node 4 through the same guardrails, recorded",
    );
    let removed = c
        .remove_member_as(new, &operator_key())
        .await
        .expect("remove node 4");
    let recorded = removed.recorded.expect("the removal names its entry");
    let (action, ..) = describe(&entry(&c, recorded.index.0).await);
    assert_eq!(action, "CLUSTER.MEMBER_REMOVE");
    assert!(!removed.members.iter().any(|m| m.id == new));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match docket_client::verify::verified_checkpoint(&c).await {
            Ok(_) if pinned_voters() == vec![1, 2, 3] => break,
            outcome if std::time::Instant::now() > deadline => {
                panic!(
                    "the removal was not followed: {outcome:?}, pinned {:?}",
                    pinned_voters()
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A one-node TLS cluster initialized (by the operator) with the default constitution,
/// its read policy replaced by `access`.
async fn cluster_reading(name: &str, access: &str) -> (tempfile::TempDir, LocalCluster, Client) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut cluster = LocalCluster::new(binary(), dir.path(), name, 1)
        .expect("prepare cluster")
        .with_tls(5_000)
        .expect("certificates");
    cluster.start_all().await.expect("start");
    let node = cluster.node(1).client();
    let document = docket_core::constitution::DEFAULT_DOCUMENT
        .replace("[access]\nread = \"anyone\"\n", access);
    assert_ne!(document, docket_core::constitution::DEFAULT_DOCUMENT);
    node.init_as(Some(document), &operator_key())
        .await
        .expect("init");
    (dir, cluster, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_follow_the_constitution_read_policy() {
    let start = std::time::Instant::now();
    phase(start, "read = roles: only signed reads by a listed role");
    let (_dir, cluster, anonymous) = cluster_reading(
        "admin-reads",
        "[access]\nread = \"roles\"\nread_roles = [\"governor\"]\n",
    )
    .await;
    let as_who = |who: &str| anonymous.clone().with_read_key(dev::signing_key(who));
    let code_of = |error: docket_node::client::ClientError| error.code().map(str::to_owned);
    for (who, expected) in [
        (None, Some("SIGNATURE_REQUIRED")),
        (Some("mallory"), Some("UNAUTHORIZED")),
        (Some("alice"), Some("UNAUTHORIZED")),
        (Some("grace"), None),
    ] {
        let c = who.map_or_else(|| anonymous.clone(), as_who);
        let results = [
            c.status().await.err().map(code_of),
            c.ledger(0, 10).await.err().map(code_of),
            c.members().await.err().map(code_of),
            c.constitution().await.err().map(code_of),
            c.state(
                "settlement",
                "stl-1",
                docket_node::wire::Consistency::Linearizable,
            )
            .await
            .err()
            .map(code_of),
            // An explanation is a read: refused before its handler, which would answer
            // NOT_FOUND for this id.
            c.explain(docket_core::ProposalId([1; 32]))
                .await
                .err()
                .map(code_of)
                .filter(|code| code.as_deref() != Some("NOT_FOUND")),
        ];
        for (route, result) in [
            "status",
            "ledger",
            "members",
            "constitution",
            "state",
            "explain",
        ]
        .iter()
        .zip(results)
        {
            assert_eq!(
                result.flatten().as_deref(),
                expected,
                "{who:?} reading {route}"
            );
        }
    }
    anonymous.health().await.expect("health stays open");
    // A dry run answers from the state: it is a read too. So is HEAD.
    let probe = docket_core::dev::proposal(
        &LedgerId::new("admin-reads").expect("valid"),
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "probe",
        docket_core::Value::map([
            ("amount", docket_core::Value::Int(1)),
            ("currency", "EUR".into()),
        ]),
        vec![],
        1,
    );
    assert_eq!(
        anonymous
            .dry_run(&probe)
            .await
            .err()
            .and_then(code_of)
            .as_deref(),
        Some("SIGNATURE_REQUIRED")
    );
    as_who("grace")
        .dry_run(&probe)
        .await
        .expect("grace may dry-run");
    let head = cluster
        .tls()
        .expect("tls")
        .http
        .head(format!("{}/v1/status", cluster.node(1).url()))
        .send()
        .await
        .expect("answered");
    assert_eq!(head.status().as_u16(), 401, "HEAD follows the read policy");
    let ledger = as_who("grace").ledger(0, 10).await.expect("grace reads");
    assert_eq!(ledger.entries.len(), 2, "genesis and CLUSTER.INIT");

    phase(start, "a stale or misdirected read signature is refused");
    let tls = cluster.tls().expect("tls");
    let url = format!("{}/v1/status", cluster.node(1).url());
    let grace = dev::signing_key("grace");
    let send = |signed: docket_service::read_access::SignedRead| {
        let mut request = tls.http.get(&url);
        for (name, value) in signed.headers() {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.expect("answered");
            let status = response.status().as_u16();
            let body: docket_node::wire::ErrorBody = response.json().await.expect("error body");
            (status, body.code)
        }
    };
    let stale = now_ms() - docket_service::read_access::READ_SIGNATURE_AGE_MAX_MS - 60_000;
    assert_eq!(
        send(docket_service::read_access::SignedRead::sign(
            &grace,
            "GET",
            "/v1/status",
            stale
        ))
        .await,
        (401, "STALE_REQUEST".to_owned())
    );
    assert_eq!(
        send(docket_service::read_access::SignedRead::sign(
            &grace,
            "GET",
            "/v1/ledger",
            now_ms()
        ))
        .await,
        (400, "BAD_SIGNATURE".to_owned())
    );

    phase(
        start,
        "read = certificate: a client certificate of the cluster CA",
    );
    let (_dir2, cluster2, with_certificate) =
        cluster_reading("admin-reads-cert", "[access]\nread = \"certificate\"\n").await;
    with_certificate
        .ledger(0, 10)
        .await
        .expect("a client certificate reads");
    let tls2 = cluster2.tls().expect("tls");
    let no_certificate = docket_node::tls::ClientTls {
        ca: tls2.ca(),
        identity: None,
    }
    .reqwest_builder()
    .expect("client")
    .build()
    .expect("client");
    let without = Client::with_http(
        &cluster2.node(1).url(),
        Duration::from_secs(10),
        no_certificate,
    )
    .expect("client");
    assert_eq!(
        without
            .ledger(0, 10)
            .await
            .err()
            .and_then(|e| e.code().map(str::to_owned))
            .as_deref(),
        Some("UNAUTHORIZED")
    );
    without.health().await.expect("health stays open");
}
