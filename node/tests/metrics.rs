//! `GET /metrics` on real `docket serve` processes: the series move as the cluster works
//! (proposals by decision and code on every replica, admission, group commit, signature
//! checks, read-index rounds, HTTP requests by route template, leader changes after the
//! leader is killed), `--log-format json` lines parse and name their node, and `/metrics`
//! follows the constitution's read policy (with a client certificate also accepted).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{binary, converged_at, deposit, ledger_id, phase, wait_for};
use docket_core::{dev, Decision, Record, RejectCode};
use docket_node::client::Client;
use docket_node::local_cluster::{operator_key, LocalCluster};

/// One sample of the text format: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses Prometheus's text format (the subset the exporter writes: no timestamps, label
/// values without escaped quotes). Panics on a line it cannot read: that is a test failure.
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value on {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value on {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels on {line:?}"));
                let mut labels = BTreeMap::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (key, after) = rest
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label on {line:?}"));
                    let (value, after) = after
                        .split_once('"')
                        .unwrap_or_else(|| panic!("unclosed label value on {line:?}"));
                    labels.insert(key.to_owned(), value.to_owned());
                    rest = after.strip_prefix(',').unwrap_or(after);
                }
                (name.to_owned(), labels)
            }
        };
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

/// A scrape, parsed, with its text for failure messages.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The sum over every series of `name` whose labels include `labels`; `None` if there
    /// is none.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// Like [`Scrape::get`], 0 when absent (a counter not yet incremented).
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Like [`Scrape::get`], and the series must exist.
    fn must(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in:\n{}", self.text))
    }
}

async fn scrape(client: &Client) -> Scrape {
    let text = client.metrics().await.expect("GET /metrics");
    let samples = parse(&text);
    assert!(!samples.is_empty(), "an empty scrape");
    Scrape { text, samples }
}

/// The change of a counter between two scrapes.
fn delta(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.count(name, labels) - before.count(name, labels)
}

const ADMIT: &[(&str, &str)] = &[("decision", "admit"), ("code", "none")];
const UNAUTHORIZED: &[(&str, &str)] = &[("decision", "reject"), ("code", "UNAUTHORIZED")];
const SUBMITS: &[(&str, &str)] = &[
    ("route", "/v1/proposals"),
    ("method", "POST"),
    ("status", "200"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_the_cluster_and_json_logs_name_their_node() {
    let start = Instant::now();
    phase(start, "a 3-node cluster started with --log-format json");
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut cluster = LocalCluster::new(binary(), dir.path(), "metrics", 3)
        .expect("prepare cluster")
        .with_args(&["--log-format", "json"]);
    cluster.start_all().await.expect("start nodes");
    cluster.form().await.expect("form cluster");
    let leader = cluster.leader().await.expect("leader elected");
    cluster.converged().await.expect("converged after forming");
    let follower = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let (lc, fc) = (
        cluster.node(leader).client(),
        cluster.node(follower).client(),
    );
    let ledger = ledger_id(&cluster);

    phase(start, "scrape the leader and a follower before the load");
    let (l0, f0) = (scrape(&lc).await, scrape(&fc).await);
    assert!(
        l0.text.contains("# TYPE docket_proposals_total counter"),
        "{}",
        l0.text
    );

    phase(
        start,
        "two deposits admitted and one by mallory rejected UNAUTHORIZED, all at the leader",
    );
    let mut ids = Vec::new();
    for (author, subject) in [("alice", "m-1"), ("alice", "m-2"), ("mallory", "m-3")] {
        let signed = deposit(&ledger, author, subject, 5);
        let response = lc.submit(&signed).await.expect("submit");
        let Record::Decision(record) = &response.entry.record else {
            panic!("a decision entry: {:?}", response.entry);
        };
        match author {
            "mallory" => assert!(
                matches!(&record.decision, Decision::Reject(r) if r.code == RejectCode::Unauthorized),
                "{:?}",
                record.decision
            ),
            _ => assert_eq!(record.decision, Decision::Admit),
        }
        ids.push(signed.id());
    }
    let length = lc.status().await.expect("status").ledger_length;
    converged_at(&cluster, length).await;

    phase(
        start,
        "a linearizable read at the follower: a read-index round there and at the leader",
    );
    fc.proposal(ids[0]).await.expect("read at the follower");

    phase(start, "scrape both again and compare");
    let (l1, f1) = (scrape(&lc).await, scrape(&fc).await);
    for (who, before, after) in [("leader", &l0, &l1), ("follower", &f0, &f1)] {
        // Every replica counts the decisions it applies.
        assert_eq!(
            delta(before, after, "docket_proposals_total", ADMIT),
            2.0,
            "{who}: admitted\n{}",
            after.text
        );
        assert_eq!(
            delta(before, after, "docket_proposals_total", UNAUTHORIZED),
            1.0,
            "{who}: rejected\n{}",
            after.text
        );
        assert!(after.must("docket_raft_term", &[]) >= 1.0, "{who}");
        assert_eq!(
            after.must("docket_raft_leader_id", &[]),
            leader as f64,
            "{who}"
        );
        assert!(
            after.must("docket_raft_leader_changes_total", &[]) >= 1.0,
            "{who}: it saw the first leader"
        );
        assert_eq!(
            after.must("docket_ledger_entries", &[]),
            length as f64,
            "{who}"
        );
        let applied = after.must("docket_raft_applied_index", &[]);
        assert!(applied >= 1.0, "{who}");
        assert!(
            after.must("docket_raft_last_log_index", &[]) >= applied,
            "{who}"
        );
        assert!(
            after.must("docket_raft_committed_index", &[]) >= 1.0,
            "{who}"
        );
        assert_eq!(
            after.must("docket_raft_members", &[("role", "voter")]),
            3.0,
            "{who}"
        );
        assert!(
            after.must("docket_storage_size_bytes", &[]) > 0.0,
            "{who}: the store has files"
        );
        // fjall (the default engine) counts its memory: the writes since the last scrape
        // are in its memtables, whatever it flushed, and the cache is within its budget.
        assert!(
            after.must("docket_storage_write_buffer_bytes", &[]) > 0.0,
            "{who}: recent writes are in memtables"
        );
        let cache = after.must("docket_storage_cache_bytes", &[]);
        assert!(
            (0.0..=(128 * 1024 * 1024) as f64).contains(&cache),
            "{who}: block cache {cache} within the default budget"
        );
        let rss = after.must("docket_process_resident_memory_bytes", &[]);
        assert!(
            rss > after.must("docket_storage_write_buffer_bytes", &[]),
            "{who}: resident memory {rss} holds the memtables"
        );
        let pinned = after.must("docket_storage_pinned_bytes", &[]);
        assert!(
            (0.0..rss).contains(&pinned),
            "{who}: pinned blocks {pinned} within resident memory {rss}"
        );
        assert!(
            after.must("docket_storage_flush_duration_seconds_count", &[]) > 0.0,
            "{who}: appends are flushed"
        );
        assert!(
            after.must("docket_raft_log_append_duration_seconds_count", &[]) > 0.0,
            "{who}: Raft log appends are timed"
        );
        assert!(
            delta(before, after, "docket_signature_checks_total", &[]) >= 3.0,
            "{who}: every applied proposal's signature is checked"
        );
    }
    assert_eq!(l1.must("docket_raft_is_leader", &[]), 1.0);
    assert_eq!(f1.must("docket_raft_is_leader", &[]), 0.0);
    // The leader checked each signature at its front door and again on apply; the memo
    // answered the second check, so it verified each once. The follower saw them first on
    // apply.
    assert_eq!(
        delta(&l0, &l1, "docket_signature_checks_total", &[]),
        6.0,
        "{}",
        l1.text
    );
    assert_eq!(
        delta(&l0, &l1, "docket_signature_verifications_total", &[]),
        3.0,
        "{}",
        l1.text
    );
    assert_eq!(
        delta(&f0, &f1, "docket_signature_verifications_total", &[]),
        3.0
    );
    // Admission and group commit happen on the leader only.
    assert_eq!(
        delta(
            &l0,
            &l1,
            "docket_admission_duration_seconds_count",
            &[("result", "ok")]
        ),
        3.0,
        "{}",
        l1.text
    );
    assert_eq!(
        delta(&l0, &l1, "docket_group_commit_proposals_sum", &[]),
        3.0,
        "{}",
        l1.text
    );
    assert_eq!(
        delta(&f0, &f1, "docket_group_commit_proposals_count", &[]),
        0.0,
        "a follower writes no groups"
    );
    // Replication lag is the leader's view of each follower.
    for id in [1, 2, 3].into_iter().filter(|id| *id != leader) {
        let lag = l1.must(
            "docket_raft_replication_lag_entries",
            &[("follower", &id.to_string())],
        );
        assert!(lag >= 0.0, "follower {id}: {lag}");
    }
    assert_eq!(
        f1.get("docket_raft_replication_lag_entries", &[]),
        None,
        "a follower replicates to no one"
    );
    // HTTP requests by route template, never the raw path.
    assert_eq!(
        delta(&l0, &l1, "docket_http_requests_total", SUBMITS),
        3.0,
        "{}",
        l1.text
    );
    assert!(
        f1.must(
            "docket_http_requests_total",
            &[
                ("route", "/v1/proposals/{id}"),
                ("method", "GET"),
                ("status", "200")
            ],
        ) >= 1.0
    );
    let hex = ids[0].to_hex();
    assert!(
        !f1.text.contains(&hex),
        "a raw path leaked into a label: {}",
        f1.text
    );
    assert!(
        delta(
            &f0,
            &f1,
            "docket_read_index_rounds_total",
            &[("role", "follower")]
        ) >= 1.0,
        "{}",
        f1.text
    );
    assert!(
        delta(
            &l0,
            &l1,
            "docket_read_index_rounds_total",
            &[("role", "leader_for_followers")]
        ) >= 1.0,
        "{}",
        l1.text
    );
    assert!(
        l1.must(
            "docket_http_requests_total",
            &[("route", "/metrics"), ("method", "GET")]
        ) >= 1.0,
        "the first scrape is counted by the second"
    );

    phase(
        start,
        "SIGKILL the leader: a survivor counts the leader change",
    );
    cluster.kill(leader).await.expect("kill the leader");
    let new_leader = wait_for("a new leader", common::WAIT_TIMEOUT_MS, || {
        let fc = fc.clone();
        async move {
            fc.status()
                .await
                .ok()
                .and_then(|s| s.leader_id)
                .filter(|id| *id != leader)
                .ok_or_else(|| "no new leader yet".to_owned())
        }
    })
    .await;
    let f2 = scrape(&fc).await;
    assert!(
        delta(&f1, &f2, "docket_raft_leader_changes_total", &[]) >= 1.0,
        "{}",
        f2.text
    );
    assert!(f2.must("docket_raft_term", &[]) > f1.must("docket_raft_term", &[]));
    assert_eq!(f2.must("docket_raft_leader_id", &[]), new_leader as f64);

    phase(
        start,
        "every node's log lines are JSON objects naming that node",
    );
    let mut recorded_operations = 0;
    for id in [1, 2, 3] {
        let path = cluster.node(id).log_path();
        let log = std::fs::read_to_string(&path).expect("node log");
        let mut lines = 0;
        let mut started = false;
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("node {id}: not JSON ({e}): {line}"));
            assert_eq!(value["node_id"], id, "node {id}: {line}");
            assert!(value["level"].is_string(), "{line}");
            assert!(value["timestamp"].is_string(), "{line}");
            started |= value["message"] == "node started";
            if value["message"] == "cluster operation recorded" {
                // Forming the cluster recorded its operations: the line says which
                // proposal, at which index, in which term.
                assert!(value["proposal_id"].is_string(), "{line}");
                assert!(value["index"].is_string(), "{line}");
                assert!(value["term"].as_u64().is_some_and(|t| t >= 1), "{line}");
                recorded_operations += 1;
            }
            lines += 1;
        }
        assert!(lines > 0, "node {id} logged nothing");
        assert!(
            started,
            "node {id}: no `node started` line in {}",
            path.display()
        );
    }
    assert!(
        recorded_operations >= 2,
        "forming 3 nodes records their additions: {recorded_operations} lines"
    );
}

/// A one-node TLS cluster whose constitution says `read = "roles"`: every read must be
/// signed by a listed role, which Prometheus cannot do, so `/metrics` also takes a client
/// certificate of the cluster CA; without either it is refused like any read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_read_policy_and_take_a_client_certificate() {
    let start = Instant::now();
    phase(start, "one TLS node, read = roles (governor)");
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut cluster = LocalCluster::new(binary(), dir.path(), "metrics-reads", 1)
        .expect("prepare cluster")
        .with_tls(5_000)
        .expect("certificates");
    cluster.start_all().await.expect("start");
    let with_certificate = cluster.node(1).client();
    let document = docket_core::constitution::DEFAULT_DOCUMENT.replace(
        "[access]\nread = \"anyone\"\n",
        "[access]\nread = \"roles\"\nread_roles = [\"governor\"]\n",
    );
    assert_ne!(document, docket_core::constitution::DEFAULT_DOCUMENT);
    with_certificate
        .init_as(Some(document), &operator_key())
        .await
        .expect("init");

    phase(
        start,
        "with the CLI's client certificate: /metrics answers, other reads still need a signature",
    );
    let text = with_certificate
        .metrics()
        .await
        .expect("scrape with a certificate");
    assert!(text.contains("docket_raft_term"), "{text}");
    let refused = with_certificate
        .status()
        .await
        .expect_err("status needs a signature");
    assert_eq!(refused.code(), Some("SIGNATURE_REQUIRED"));

    phase(
        start,
        "without a certificate: refused unless signed by a reader role",
    );
    let tls = cluster.tls().expect("tls").clone();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls.ca()).expect("ca"))
        .expect("ca certificate");
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .expect("https client without a certificate");
    let anonymous = Client::with_http(
        &cluster.node(1).url(),
        Duration::from_millis(common::REQUEST_TIMEOUT_MS),
        http,
    )
    .expect("client");
    let code = |result: Result<String, docket_node::client::ClientError>| {
        result.err().and_then(|e| e.code().map(str::to_owned))
    };
    assert_eq!(
        code(anonymous.metrics().await).as_deref(),
        Some("SIGNATURE_REQUIRED")
    );
    let alice = anonymous.clone().with_read_key(dev::signing_key("alice"));
    assert_eq!(code(alice.metrics().await).as_deref(), Some("UNAUTHORIZED"));
    let grace = anonymous.clone().with_read_key(dev::signing_key("grace"));
    let text = grace.metrics().await.expect("a governor's signed scrape");
    assert!(text.contains("docket_raft_term"), "{text}");
}

/// The leader verifies the signatures of everything its group-commit writer groups as one
/// batch: a forged submission grouped with honest ones is refused alone, and each honest
/// one is recorded. Forty submissions sent at once queue behind the first write, so the
/// writer groups them (checked on its histogram: fewer groups than submissions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_submission_grouped_with_honest_ones_is_refused_alone() {
    let start = Instant::now();
    let (_dir, cluster) = common::formed_cluster("grouped", 3, &[]).await;
    let leader = cluster.leader().await.expect("leader elected");
    let lc = cluster.node(leader).client();
    let ledger = ledger_id(&cluster);
    let before = scrape(&lc).await;

    phase(start, "40 submissions at once, every fourth forged");
    let submissions: Vec<(bool, docket_core::SignedProposal)> = (0..40)
        .map(|n| {
            let mut signed = deposit(&ledger, "alice", &format!("g-{n}"), 5);
            let forged = n % 4 == 1;
            if forged {
                signed.signature.0[40] ^= 0x01;
            }
            (forged, signed)
        })
        .collect();
    let answers = futures::future::join_all(
        submissions
            .iter()
            .map(|(_, signed)| async { lc.submit(signed).await }),
    )
    .await;
    for ((forged, signed), answer) in submissions.iter().zip(answers) {
        match (forged, answer) {
            (true, Err(error)) => assert_eq!(error.code(), Some("BAD_SIGNATURE"), "{error}"),
            (false, Ok(response)) => {
                let Record::Decision(record) = &response.entry.record else {
                    panic!("a decision entry: {:?}", response.entry);
                };
                assert_eq!(record.decision, Decision::Admit, "{}", signed.id());
            }
            (forged, answer) => panic!(
                "proposal {} (forged: {forged}) answered {:?}",
                signed.id(),
                answer.map(|r| r.entry.index)
            ),
        }
    }
    let after = scrape(&lc).await;
    let groups = delta(&before, &after, "docket_group_commit_proposals_count", &[]);
    let grouped = delta(&before, &after, "docket_group_commit_proposals_sum", &[]);
    assert_eq!(
        grouped, 30.0,
        "only the honest proposals were written\n{}",
        after.text
    );
    assert!(
        groups < 30.0,
        "the writer grouped submissions ({groups} groups for 30)"
    );
}

/// Log entries the joining node below must fetch: separate entries (one writer, one
/// proposal a request), many times the backlog a follower may hold.
const ENTRIES_TO_CATCH_UP: usize = 400;

/// A fresh node catching up appends faster than it applies (appends are writes; applies
/// adjudicate, write rows and fold the state map): its entries appended and not applied
/// stay under the pacing bound (`docket_raft::pacing`) while it catches up, and it counts
/// the appends it held back. Without pacing, openraft queues every committed range for
/// the state machine, decoded, and the backlog grows with what the node lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catching_up_node_holds_a_bounded_backlog_of_unapplied_entries() {
    use docket_node::wire::AddMemberRequest;
    // A small bound, so a debug build's applies lag it.
    const APPLY_BACKLOG_MAX: u64 = 4;

    let start = Instant::now();
    let (_dir, mut cluster) = common::formed_cluster(
        "pacing",
        3,
        &[(
            "DOCKET_RAFT_APPLY_BACKLOG_MAX",
            &APPLY_BACKLOG_MAX.to_string(),
        )],
    )
    .await;
    let leader = cluster.leader().await.expect("leader elected");
    let lc = cluster.node(leader).client();
    let ledger = ledger_id(&cluster);

    phase(
        start,
        &format!("{ENTRIES_TO_CATCH_UP} proposals, one at a time"),
    );
    for n in 0..ENTRIES_TO_CATCH_UP {
        let p = deposit(&ledger, "alice", &format!("pace-{n}"), 1);
        lc.submit(&p).await.expect("write");
    }
    let last = scrape(&lc).await.must("docket_raft_last_log_index", &[]);
    assert!(
        last >= ENTRIES_TO_CATCH_UP as f64,
        "one log entry a proposal: {last}"
    );

    phase(start, "adding node 4 as a learner; watching its backlog");
    let new = cluster.add_slot().expect("slot for node 4");
    cluster.start(new).await.expect("start node 4");
    let nc = cluster.node(new).client();
    let request = AddMemberRequest {
        id: new,
        raft_addr: cluster.node(new).raft_addr.clone(),
        api_addr: cluster.node(new).api_addr.clone(),
        learner: true,
    };
    let adding = {
        let lc = lc.clone();
        tokio::spawn(async move { lc.add_member_as(request, &operator_key()).await })
    };
    let mut backlog_max = 0.0f64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let paced = loop {
        assert!(Instant::now() < deadline, "node 4 did not catch up");
        let Ok(text) = nc.metrics().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let s = Scrape {
            samples: parse(&text),
            text,
        };
        let (Some(appended), Some(applied)) = (
            s.get("docket_raft_last_log_index", &[]),
            s.get("docket_raft_applied_index", &[]),
        ) else {
            continue;
        };
        backlog_max = backlog_max.max(appended - applied);
        if applied >= last {
            break s.count("docket_raft_appends_paced_total", &[]);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    adding
        .await
        .expect("add task")
        .expect("node 4 added as a learner");
    // The bound, plus one append's entries that the metrics may show before the apply
    // that made room for them.
    let bound = (APPLY_BACKLOG_MAX + docket_node::server::APPEND_ENTRIES_MAX) as f64;
    assert!(
        backlog_max <= bound,
        "node 4 held {backlog_max} entries appended and not applied (bound {bound})"
    );
    assert!(
        paced > 0.0,
        "node 4's applies lagged its appends, so it held some appends back \
         (backlog seen: {backlog_max})"
    );
}
