//! The leader's group-commit writer and its ticker.

use std::sync::Arc;

use docket_core::{Decision, LedgerIndex};
use docket_raft::{Command, CommandResponse, IndexRange, Outcome, ProposalOutcome};
use tokio::sync::{mpsc, Semaphore};

use crate::error::{ErrorCode, ServiceError};
use crate::service::{Pending, Service, GROUP_COMMIT_PROPOSALS_MAX, WRITES_INFLIGHT_MAX};

/// Group commit: takes the first queued submission, then everything else already queued
/// (up to [`GROUP_COMMIT_PROPOSALS_MAX`] proposals), verifies their signatures as one
/// batch, and writes the submissions whose signatures verified as one Raft entry, stamped
/// with the leader's clock. Up to [`WRITES_INFLIGHT_MAX`] writes overlap; at low
/// load each submission is written alone, with no added wait.
pub(crate) async fn writer(service: Arc<Service>, mut rx: mpsc::Receiver<Pending>) {
    let permits = Arc::new(Semaphore::new(WRITES_INFLIGHT_MAX));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut group = vec![first];
        let mut count = group[0].proposals.len();
        while count < GROUP_COMMIT_PROPOSALS_MAX {
            match rx.try_recv() {
                Ok(more) => {
                    count += more.proposals.len();
                    group.push(more);
                }
                Err(_) => break,
            }
        }
        let service = service.clone();
        crate::spawn(async move {
            write_group(&service, group).await;
            drop(permit);
        });
    }
}

async fn write_group(service: &Service, group: Vec<Pending>) {
    let group = refuse_bad_signatures(service, group);
    if group.is_empty() {
        return;
    }
    let sizes: Vec<usize> = group.iter().map(|p| p.proposals.len()).collect();
    let mut replies = Vec::with_capacity(group.len());
    let mut proposals = Vec::with_capacity(sizes.iter().sum());
    for pending in group {
        proposals.extend(pending.proposals);
        replies.push(pending.reply);
    }
    if service.faults.ack_before_commit {
        return acknowledge_before_commit(service, proposals, replies, sizes);
    }
    metrics::histogram!(crate::telemetry::GROUP_COMMIT_PROPOSALS).record(proposals.len() as f64);
    let command = Command::Submit {
        proposals,
        time: service.now(),
    };
    let result = match service.client_write(command).await {
        Ok(CommandResponse::Submitted { outcomes, .. }) => Ok(outcomes),
        Ok(CommandResponse::Refused(error)) => Err(ServiceError::new(
            if error.code() == "NOT_INITIALIZED" {
                ErrorCode::NotInitialized
            } else {
                ErrorCode::Internal
            },
            error.to_string(),
        )),
        Ok(other) => Err(ServiceError::internal(format!(
            "unexpected response {other:?}"
        ))),
        Err(error) => Err(error),
    };
    match result {
        Ok(outcomes) => {
            assert_eq!(
                outcomes.len(),
                sizes.iter().sum::<usize>(),
                "invariant: one outcome per proposal"
            );
            let mut outcomes = outcomes.into_iter();
            for (reply, size) in replies.into_iter().zip(sizes) {
                let _ = reply.send(Ok(outcomes.by_ref().take(size).collect()));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// The front door's signature check, done here for the whole group at once
/// ([`Service::check_signatures`]: one ZIP-215 batch for the `v2` proposals of every
/// submission grouped): a submission with a bad signature is answered `BAD_SIGNATURE` and
/// left out, so nothing unsigned reaches the log, and the rest go on.
fn refuse_bad_signatures(service: &Service, group: Vec<Pending>) -> Vec<Pending> {
    let submissions: Vec<&[docket_core::SignedProposal]> =
        group.iter().map(|p| &p.proposals[..]).collect();
    let answers = service.check_signatures(&submissions);
    group
        .into_iter()
        .zip(answers)
        .filter_map(|(pending, answer)| match answer {
            Ok(()) => Some(pending),
            Err(error) => {
                let _ = pending.reply.send(Err(error));
                None
            }
        })
        .collect()
}

/// The negative control of the writer: hands the group to Raft without waiting and
/// answers every proposal as admitted at the index it would get if nothing went wrong.
fn acknowledge_before_commit(
    service: &Service,
    proposals: Vec<docket_core::SignedProposal>,
    replies: Vec<tokio::sync::oneshot::Sender<Result<Vec<ProposalOutcome>, ServiceError>>>,
    sizes: Vec<usize>,
) {
    let next = service.replica.ledger_len();
    let mut outcomes = proposals
        .iter()
        .enumerate()
        .map(|(i, signed)| {
            let index = LedgerIndex(next + i as u64);
            ProposalOutcome {
                id: signed.id(),
                outcome: Outcome::Recorded {
                    appended: IndexRange {
                        start: index,
                        end: LedgerIndex(index.0 + 1),
                    },
                    index,
                    decision: Decision::Admit,
                },
            }
        })
        .collect::<Vec<_>>()
        .into_iter();
    let raft = service.raft.clone();
    let command = Command::Submit {
        proposals,
        time: service.now(),
    };
    crate::spawn(async move {
        let _ = raft.client_write(command).await;
    });
    for (reply, size) in replies.into_iter().zip(sizes) {
        let _ = reply.send(Ok(outcomes.by_ref().take(size).collect()));
    }
}

/// On the leader, files a `Tick` whenever a deferred proposal's expiry has passed, so
/// deferrals expire on an idle ledger too. Followers do nothing.
pub(crate) async fn ticker(service: Arc<Service>) {
    let mut interval = tokio::time::interval(service.timing.tick_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if !service.is_leader() {
            continue;
        }
        let now = service.now();
        let due = service.replica.with_state(|state| {
            state.is_some_and(|s| s.deferred().values().any(|d| d.expires_at <= now))
        });
        if due {
            if let Err(e) = service.client_write(Command::Tick { time: now }).await {
                tracing::debug!(error = %e, "tick not written");
            }
        }
    }
}
