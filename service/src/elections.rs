//! When this node campaigns: openraft's election timer, plus a trigger that keeps a
//! failover from waiting for a penalty meant for another election.
//!
//! openraft 0.9 lets a follower campaign once its leader has been silent for the leader
//! lease (`election_timeout_max`) plus its own election timeout. But a node that once lost
//! a vote to a longer log adds `2 × election_timeout_max` to that wait, and the flag is only
//! cleared when the node itself next campaigns: so it lingers from one failover into the
//! next, long after the leader it was meant to favour has been elected (measured: a leader
//! kill took 1.5 s to the first write instead of about 0.7 s, on most kills after the
//! first two). The trigger here campaigns on openraft's own schedule, lease plus timeout
//! after the last append this node accepted, without the lingering penalty. A node whose
//! log is shorter than a survivor's still loses that vote, which costs one more timeout at
//! worst; it never costs safety (the vote rules are openraft's).
//!
//! A removed node campaigns never: the network learns it (voters refuse its vote as a
//! non-member) and elections stop at once; they start again once a leader replicates to
//! it (it was added back).
//!
//! A node taking a snapshot from its leader does not campaign either, while it does and
//! for one lease after (`SnapshotsReceiving`): the leader sends it nothing else until the
//! install is done, and that silence is the leader waiting on it, not a dead leader.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;

use crate::service::Service;

/// How often the trigger looks at the silence, as a fraction of the heartbeat interval:
/// fine enough that it fires within a few milliseconds of its deadline.
const POLLS_PER_HEARTBEAT: u32 = 2;

/// Runs until the service stops: turns openraft's elections off for a removed node, and
/// campaigns when a follower voter's leader has been silent for lease plus timeout. The
/// silence starts at the later of the last append this node accepted and the last change
/// of its vote, as openraft's own timer does.
pub(crate) async fn elections(service: Arc<Service>) {
    let config = service.raft.config().clone();
    let lease = Duration::from_millis(config.election_timeout_max);
    let poll = Duration::from_millis(config.heartbeat_interval) / POLLS_PER_HEARTBEAT;
    let mut seen_vote = None;
    let mut vote_changed_at = tokio::time::Instant::now();
    let mut removed = service.removed.watch();
    // The start of the silence this node last campaigned in, so it campaigns once per
    // silence; openraft's own timer retries a lost campaign.
    let mut campaigned_in: Option<tokio::time::Instant> = None;
    let mut electing = None;
    loop {
        let is_removed = *removed.borrow_and_update();
        let receiving = service.snapshots.hold_elections(lease);
        let now_electing = !is_removed && !receiving;
        if electing != Some(now_electing) {
            if is_removed {
                tracing::warn!("this node was removed from its cluster: elections stopped");
            } else if receiving {
                tracing::info!("taking a snapshot from the leader: elections held back");
            } else if electing.is_some() {
                tracing::info!("elections resumed");
            }
            service.raft.runtime_config().elect(now_electing);
            electing = Some(now_electing);
        }
        let due = tokio::time::Instant::now() + poll;
        tokio::select! {
            changed = removed.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            () = tokio::time::sleep_until(due) => {}
        }
        if !now_electing {
            continue;
        }
        let Some((term, vote)) = campaign_due(&service) else {
            continue;
        };
        // openraft restarts its own timer whenever the vote changes (a vote granted, a new
        // leader's first append); so does this one, or it would depose a leader this node
        // has just elected before its first append arrives.
        let now = tokio::time::Instant::now();
        if seen_vote.as_ref() != Some(&vote) {
            seen_vote = Some(vote);
            vote_changed_at = now;
        }
        let silence_began = service
            .leader_heard
            .last()
            .map_or(vote_changed_at, |heard| heard.max(vote_changed_at));
        if campaigned_in == Some(silence_began) {
            continue;
        }
        let silent = now.saturating_duration_since(silence_began);
        if silent < lease + timeout(service.id, term, &config) {
            continue;
        }
        campaigned_in = Some(silence_began);
        // How late this check ran: a large figure means this node's own runtime was held
        // up (its workers blocked or starved), and the silence may be partly its own.
        let late = now.saturating_duration_since(due);
        tracing::info!(
            term,
            silent_ms = silent.as_millis() as u64,
            check_late_ms = late.as_millis() as u64,
            "leader silent past lease and election timeout: campaigning"
        );
        if let Err(error) = service.raft.trigger().elect().await {
            tracing::debug!(%error, "election trigger not taken: raft has stopped");
        }
    }
}

/// The current term and vote when this node is a follower voter of a multi-voter cluster
/// (the only case the trigger acts in: a single voter elects itself at once, a
/// candidate's retries are openraft's, a learner never campaigns).
fn campaign_due(service: &Service) -> Option<(u64, docket_raft::Vote)> {
    let metrics = service.raft.metrics();
    let metrics = metrics.borrow();
    if metrics.state != ServerState::Follower {
        return None;
    }
    let membership = metrics.membership_config.membership();
    let mut voters = membership.voter_ids();
    let is_voter = membership.voter_ids().any(|v| v == service.id);
    (is_voter && voters.nth(1).is_some()).then_some((metrics.current_term, metrics.vote))
}

/// This node's election timeout in `term`: in `[min, max)`, different per node and per
/// term, and a pure function of both so the simulator replays it (openraft draws its own
/// from the runtime's generator; this one needs no generator at all).
fn timeout(id: u64, term: u64, config: &openraft::Config) -> Duration {
    let spread = config
        .election_timeout_max
        .saturating_sub(config.election_timeout_min)
        .max(1);
    let draw = docket_raft::runtime::splitmix64(id.rotate_left(32) ^ term) % spread;
    Duration::from_millis(config.election_timeout_min + draw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_stay_in_range_and_differ_between_nodes() {
        let config = openraft::Config {
            election_timeout_min: 200,
            election_timeout_max: 400,
            ..openraft::Config::default()
        };
        let mut differs = 0;
        for term in 0..200 {
            let a = timeout(1, term, &config);
            let b = timeout(2, term, &config);
            for t in [a, b] {
                assert!((200..400).contains(&(t.as_millis() as u64)), "{t:?}");
            }
            differs += usize::from(a != b);
        }
        assert!(
            differs > 190,
            "node timeouts coincide too often: {differs}/200 differ"
        );
    }
}
