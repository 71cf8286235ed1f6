//! `docket status`: the node's view, every member's progress, and whether their state
//! hashes agree.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::{bail, Context as _};
use docket_core::StateHash;
use serde::Serialize;

use super::{optional, print_json, ClientArgs, OutputFormat};
use crate::client::{Client, REQUEST_TIMEOUT_MS_DEFAULT};
use crate::wire::{MemberView, StatusView};

/// One member as `docket status` saw it.
#[derive(Debug, Serialize)]
struct MemberProbe {
    id: u64,
    api_addr: String,
    voter: bool,
    /// Log entries behind the leader, from the leader's view.
    lag: Option<u64>,
    status: Option<StatusView>,
    error: Option<String>,
}

/// What `docket status --output json` prints.
#[derive(Debug, Serialize)]
struct ClusterStatus {
    node: StatusView,
    members: Vec<MemberProbe>,
    /// False when two nodes at the same ledger length report different state hashes.
    state_hashes_agree: bool,
}

/// Runs `docket status`.
pub(super) async fn run(args: &ClientArgs) -> anyhow::Result<()> {
    status(&args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?, args.output).await
}

async fn status(client: &Client, output: OutputFormat) -> anyhow::Result<()> {
    let node = client
        .status()
        .await
        .context("cannot read the node's status")?;
    let probes = futures::future::join_all(node.members.iter().map(|member| async move {
        let result = match client.at(&member.api_addr) {
            Ok(member_client) => member_client.status().await,
            Err(error) => Err(error),
        };
        (member.clone(), result)
    }))
    .await;

    // Lag as the leader sees it: from whichever answer came from the leader.
    let leader_members: Vec<MemberView> = std::iter::once(&node)
        .chain(probes.iter().filter_map(|(_, r)| r.as_ref().ok()))
        .find(|s| s.role == "leader")
        .map(|s| s.members.clone())
        .unwrap_or_default();
    let members: Vec<MemberProbe> = probes
        .into_iter()
        .map(|(member, result)| {
            let lag = leader_members
                .iter()
                .find(|m| m.id == member.id)
                .and_then(|m| m.lag);
            let (status, error) = match result {
                Ok(status) => (Some(status), None),
                Err(error) => (None, Some(error.to_string())),
            };
            MemberProbe {
                id: member.id,
                api_addr: member.api_addr,
                voter: member.voter,
                lag,
                status,
                error,
            }
        })
        .collect();
    let agreement = Agreement::of(members.iter().filter_map(|m| {
        let status = m.status.as_ref()?;
        Some((m.id, status.ledger_length, status.state_hash?))
    }));

    // Alarms the nodes raised themselves (the leader's checkpoints), from every answer.
    let alarms: Vec<String> = std::iter::once(&node)
        .chain(members.iter().filter_map(|m| m.status.as_ref()))
        .flat_map(|s| {
            s.divergence.iter().map(move |a| {
                format!(
                    "node {} reports that node {} refused its checkpoint at size {} (its ledger \
                     or state differs there; this node's state there is {})",
                    s.node_id, a.node, a.size, a.state
                )
            })
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if output == OutputFormat::Json {
        print_json(&ClusterStatus {
            node,
            members,
            state_hashes_agree: agreement.agrees(),
        })?;
    } else {
        print_status(&node, &members, &agreement)?;
    }
    let mut problems: Vec<String> = agreement.divergence().into_iter().collect();
    if !alarms.is_empty() {
        problems.push(format!("divergence alarm: {}", alarms.join("; ")));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

fn print_status(
    node: &StatusView,
    members: &[MemberProbe],
    agreement: &Agreement,
) -> anyhow::Result<()> {
    say!(
        "node {} of ledger {}: {}, term {}",
        node.node_id,
        node.cluster_id,
        node.role,
        node.term
    );
    if !node.initialized {
        say!("not initialized: run `docket cluster init` on one node, then `docket member add`");
        return Ok(());
    }
    match (node.leader_id, &node.leader_api_addr) {
        (Some(id), Some(addr)) => say!("leader  node {id} at {addr}"),
        (Some(id), None) => say!("leader  node {id}"),
        (None, _) => say!("leader  none known (election in progress, or no quorum)"),
    }
    say!(
        "log     last index {}, applied {}",
        optional(node.last_log_index),
        optional(node.applied_index)
    );
    say!(
        "ledger  {} entries, state {}, constitution {}, {} deferred",
        node.ledger_length,
        node.state_hash
            .map_or_else(|| "-".to_owned(), |h| h.short()),
        node.constitution_version
            .map_or_else(|| "-".to_owned(), |v| v.short()),
        node.deferred
    );
    say!("");
    say!(
        "{:<4} {:<10} {:<8} {:>8} {:>8} {:>6}  {}",
        "ID",
        "ROLE",
        "KIND",
        "APPLIED",
        "LEDGER",
        "LAG",
        "STATE HASH"
    );
    for member in members {
        let kind = if member.voter { "voter" } else { "learner" };
        match (&member.status, &member.error) {
            (Some(s), _) => say!(
                "{:<4} {:<10} {:<8} {:>8} {:>8} {:>6}  {}",
                member.id,
                s.role,
                kind,
                optional(s.applied_index),
                s.ledger_length,
                optional(member.lag),
                s.state_hash.map_or_else(|| "-".to_owned(), |h| h.short())
            ),
            (None, error) => say!(
                "{:<4} {:<10} {:<8} unreachable at {}: {}",
                member.id,
                "?",
                kind,
                member.api_addr,
                error.as_deref().unwrap_or("no answer")
            ),
        }
    }
    say!("");
    say!("{}", agreement.summary());
    Ok(())
}

/// Whether the nodes that answered agree on the state hash at each ledger length.
#[derive(Debug, Default)]
struct Agreement {
    /// ledger length -> state hash -> node ids reporting it.
    by_length: BTreeMap<u64, BTreeMap<StateHash, Vec<u64>>>,
}

impl Agreement {
    fn of(reports: impl IntoIterator<Item = (u64, u64, StateHash)>) -> Agreement {
        let mut agreement = Agreement::default();
        for (id, length, hash) in reports {
            agreement
                .by_length
                .entry(length)
                .or_default()
                .entry(hash)
                .or_default()
                .push(id);
        }
        agreement
    }

    fn agrees(&self) -> bool {
        self.by_length.values().all(|hashes| hashes.len() <= 1)
    }

    /// The first ledger length at which nodes disagree, described.
    fn divergence(&self) -> Option<String> {
        let (length, hashes) = self.by_length.iter().find(|(_, h)| h.len() > 1)?;
        let sides: Vec<String> = hashes
            .iter()
            .map(|(hash, ids)| format!("{} on {}", hash.short(), node_list(ids)))
            .collect();
        Some(format!(
            "STATE HASHES DISAGREE at ledger length {length}: {} — the replicas diverged; stop \
             writes and compare their ledgers with `docket ledger verify --node URL`",
            sides.join(" vs ")
        ))
    }

    fn summary(&self) -> String {
        if let Some(divergence) = self.divergence() {
            return divergence;
        }
        match self.by_length.len() {
            0 => "no node reported a state hash".to_owned(),
            1 => {
                let (length, hashes) = self.by_length.iter().next().expect("invariant: one length");
                let (hash, ids) = hashes.iter().next().expect("invariant: one hash");
                format!(
                    "state hashes agree: {} at ledger length {length}, state {}",
                    node_list(ids),
                    hash.short()
                )
            }
            _ => {
                let groups: Vec<String> = self
                    .by_length
                    .iter()
                    .rev()
                    .map(|(length, hashes)| {
                        let ids: Vec<u64> = hashes.values().flatten().copied().collect();
                        format!("{} at length {length}", node_list(&ids))
                    })
                    .collect();
                format!(
                    "state hashes agree at every shared ledger length; some nodes are catching \
                     up ({})",
                    groups.join("; ")
                )
            }
        }
    }
}

fn node_list(ids: &[u64]) -> String {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    let noun = if ids.len() == 1 { "node" } else { "nodes" };
    format!("{noun} {}", ids.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_hash_agreement() {
        let (a, b) = (StateHash([1; 32]), StateHash([2; 32]));
        let agree = Agreement::of([(1, 40, a), (2, 40, a), (3, 38, b)]);
        assert!(agree.agrees());
        assert!(agree.divergence().is_none());
        assert!(agree
            .summary()
            .contains("nodes 1, 2 at length 40; node 3 at length 38"));

        let all = Agreement::of([(1, 40, a), (2, 40, a)]);
        assert!(all
            .summary()
            .starts_with("state hashes agree: nodes 1, 2 at ledger length 40"));

        let diverged = Agreement::of([(1, 40, a), (2, 40, b), (3, 40, a)]);
        assert!(!diverged.agrees());
        let text = diverged.divergence().expect("divergence");
        assert!(text.contains("DISAGREE at ledger length 40"), "{text}");
        assert!(text.contains("on nodes 1, 3"), "{text}");
        assert!(text.contains("on node 2"), "{text}");
    }
}
