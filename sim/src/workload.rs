//! The workload: simulated clients running governed flows against the cluster.
//!
//! Each client runs settlement, KES, auction and tender flows (the default constitution's
//! domains), sometimes filing a flow's proposals in reverse so that dependents are deferred
//! and later released in a wave; resubmits proposals it already filed (duplicates); files
//! unauthorized and malformed proposals; and reads subjects at every node. All of it goes
//! through a random node's client API, which forwards to the leader as a real node does.
//! Every choice comes from the client's own generator, derived from the seed.
//!
//! With execution on ([`crate::SimConfig::execution`]), settlement payouts are paid by the
//! nodes' execution agents through the simulated rail, which report them
//! (`SETTLEMENT.PAYOUT_EXECUTED` / `SETTLEMENT.RAIL_ERROR`); the payouts vary so that every
//! outcome happens: most are plain, some go to a beneficiary the rail declines
//! ([`BENEFICIARY_BLOCKED`]) or answers `503` first ([`BENEFICIARY_FLAKY`]), some exceed the
//! agents' amount cap ([`RAIL_AMOUNT_MAX`], refused before the rail). Without execution
//! the workload files the executor's report itself.
//!
//! Some flows ([`PLAN_FLOW_CHANCE`]) are **plans** ([`Flows::plan_flow`]), filed through the
//! service's `submit_plan` as one submission: funded payouts, some to the beneficiary the
//! rail declines, with dependents that list a payout and its outcome reference
//! (`ProposalId::outcome_of`), printed in a shuffled order. The dependents wait for the
//! payouts' outcome records and are admitted after a payment, rejected
//! `DEPENDENCY_FAILED` after a decline; the checkers [`crate::check::plans`] and
//! [`crate::check::outcome_deps`] hold the ledger to that.

use std::collections::VecDeque;
use std::time::Duration;

use docket_core::{dev, LedgerId, ProposalId, SignedProposal, Value};
use docket_raft::NodeId;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use docket_service::ErrorCode;

use crate::api::{self, Envelope, Request, Response, LEDGER_EPOCH_MS};
use crate::config::{rng, salt, FILL_BATCH};
use crate::execution::RAIL_AMOUNT_MAX;
use crate::history::{OpKind, OpResult, PlanAck};
use crate::rail::{BENEFICIARY_BLOCKED, BENEFICIARY_FLAKY};
use crate::world::{host_name, now, World, API_PORT, CLUSTER_ID};

/// A client's deadline for one call. Longer than an election, so a request that lands
/// during one usually gets an answer; an expired call is an indeterminate outcome.
pub const CLIENT_DEADLINE: Duration = Duration::from_millis(2_500);

/// Attempts at one submission (each is its own operation in the history).
pub const SUBMIT_ATTEMPTS_MAX: u32 = 4;

/// The subject every client deposits to, so that reads see other clients' writes.
pub const HOT_SUBJECT: &str = "stl-hot";

/// Chance that a client's next flow is a plan ([`Flows::plan_flow`]).
pub const PLAN_FLOW_CHANCE: f64 = 0.2;

/// Payouts in one plan: enough for a plan to mix a declined payout with a paid one, few
/// enough that a plan stays one small submission (the service allows 100 proposals).
pub const PLAN_PAYOUTS_MAX: usize = 3;

/// Chance that a plan's payout goes to the beneficiary the rail declines
/// ([`BENEFICIARY_BLOCKED`]): its dependents are then rejected `DEPENDENCY_FAILED`.
pub const PLAN_DECLINED_CHANCE: f64 = 0.35;

/// Chance that a plan's payout asks for more than its deposit: governance rejects it
/// (`INVARIANT`), and its dependents are rejected `DEPENDENCY_REJECTED`.
pub const PLAN_OVERDRAWN_CHANCE: f64 = 0.1;

/// What a client files in one call.
#[derive(Clone, Debug)]
enum Filing {
    One(Box<SignedProposal>),
    /// A plan, its members in the order the client printed them.
    Plan(Vec<SignedProposal>),
}

/// A filing waiting its turn.
#[derive(Clone, Debug)]
struct Queued {
    filing: Filing,
    /// Not before this much simulated time (tender evaluation waits for the deadline).
    not_before: Duration,
}

/// One client's generator of proposals.
#[derive(Debug)]
pub struct Flows {
    client: u32,
    /// Execution agents pay the payouts (see the module docs).
    execution: bool,
    ledger: LedgerId,
    nonce: u64,
    flows: u64,
    kes_version: u64,
    queue: VecDeque<Queued>,
    filed: Vec<SignedProposal>,
    /// Plans acknowledged, resubmitted whole now and then (every member a duplicate).
    filed_plans: Vec<Vec<SignedProposal>>,
}

fn hex32(rng: &mut StdRng) -> String {
    let bytes: [u8; 32] = rng.gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Flows {
    pub fn new(client: u32, execution: bool) -> Flows {
        Flows {
            client,
            execution,
            ledger: LedgerId::new(CLUSTER_ID).expect("invariant: valid ledger id"),
            nonce: 0,
            flows: 0,
            kes_version: 0,
            queue: VecDeque::new(),
            filed: Vec::new(),
            filed_plans: Vec::new(),
        }
    }

    fn propose(
        &mut self,
        author: &str,
        action: &str,
        subject: &str,
        payload: Value,
        deps: Vec<docket_core::ProposalId>,
    ) -> SignedProposal {
        self.nonce += 1;
        dev::proposal(
            &self.ledger,
            author,
            action,
            subject,
            payload,
            deps,
            (u64::from(self.client) << 40) | self.nonce,
        )
    }

    /// A settlement's deposit of `deposit` EUR and a payout of `amount` to `beneficiary`
    /// that depends on it.
    fn deposit_and_payout(
        &mut self,
        subject: &str,
        deposit: i64,
        amount: i64,
        beneficiary: &str,
    ) -> (SignedProposal, SignedProposal) {
        let deposit = self.propose(
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            subject,
            Value::map([("amount", Value::Int(deposit)), ("currency", "EUR".into())]),
            vec![],
        );
        let payout = self.propose(
            "alice",
            "SETTLEMENT.PAYOUT_REQUESTED",
            subject,
            Value::map([
                ("amount", Value::Int(amount)),
                ("beneficiary", beneficiary.into()),
            ]),
            vec![deposit.id()],
        );
        (deposit, payout)
    }

    /// Queues a flow's proposals to be filed one by one.
    fn queue_flow(&mut self, mut proposals: Vec<SignedProposal>, reverse: bool) {
        if reverse {
            proposals.reverse();
        }
        self.queue
            .extend(proposals.into_iter().map(|proposal| Queued {
                filing: Filing::One(Box::new(proposal)),
                not_before: Duration::ZERO,
            }));
    }

    /// Queues a plan: up to [`PLAN_PAYOUTS_MAX`] funded payouts on fresh settlement
    /// subjects (deposit, then the payout depending on it), some to the beneficiary the
    /// rail declines, a few over their deposit (rejected), and for each a dependent that lists the payout and its outcome
    /// reference ([`docket_core::ProposalId::outcome_of`]) — a second payout from the same
    /// subject, or a deposit to another one — and sometimes one dependent waiting on every
    /// payout's outcome. The members are printed in a shuffled order; the service records
    /// them in the plan's order (waves, then ids). A dependent is deferred until its
    /// payout's outcome is recorded, then admitted if it was paid and rejected
    /// `DEPENDENCY_FAILED` if not (`DEPENDENCY_REJECTED` at once if the payout was
    /// rejected). Without execution agents the plan carries the
    /// executor's reports too.
    fn plan_flow(&mut self, rng: &mut StdRng) {
        let (c, k) = (self.client, self.flows);
        let payouts = rng.gen_range(1..=PLAN_PAYOUTS_MAX);
        let mut members = Vec::new();
        let mut watched = Vec::new();
        for i in 0..payouts {
            let subject = format!("stl-c{c}-{k}-{i}");
            let declined = rng.gen_bool(PLAN_DECLINED_CHANCE);
            let beneficiary = match (declined, rng.gen_range(0..10)) {
                (true, _) => BENEFICIARY_BLOCKED,
                (false, 0) if self.execution => BENEFICIARY_FLAKY,
                _ => "acme",
            };
            let mut amount = rng.gen_range(1..=RAIL_AMOUNT_MAX / 2);
            let second = rng.gen_range(1..=RAIL_AMOUNT_MAX / 2);
            let funds = amount + second + rng.gen_range(0..1_000);
            if rng.gen_bool(PLAN_OVERDRAWN_CHANCE) {
                amount = funds + rng.gen_range(1..1_000);
            }
            let (deposit, payout) = self.deposit_and_payout(&subject, funds, amount, beneficiary);
            let after = vec![payout.id(), payout.id().outcome_of()];
            let dependent = if rng.gen_bool(0.5) {
                self.propose(
                    "alice",
                    "SETTLEMENT.PAYOUT_REQUESTED",
                    &subject,
                    Value::map([
                        ("amount", Value::Int(second)),
                        ("beneficiary", "acme".into()),
                    ]),
                    after,
                )
            } else {
                self.propose(
                    "alice",
                    "SETTLEMENT.DEPOSIT_CONFIRMED",
                    &format!("{subject}-after"),
                    Value::map([("amount", Value::Int(second)), ("currency", "EUR".into())]),
                    after,
                )
            };
            if !self.execution {
                members.push(self.report(&subject, &payout, !declined, rng));
            }
            watched.push(payout.id());
            members.extend([deposit, payout, dependent]);
        }
        if watched.len() > 1 && rng.gen_bool(0.5) {
            let after = watched
                .iter()
                .flat_map(|id| [*id, id.outcome_of()])
                .collect();
            let all = self.propose(
                "bob",
                "SETTLEMENT.DEPOSIT_CONFIRMED",
                &format!("stl-c{c}-{k}-all"),
                Value::map([("amount", Value::Int(1)), ("currency", "EUR".into())]),
                after,
            );
            members.push(all);
        }
        members.shuffle(rng);
        self.queue.push_back(Queued {
            filing: Filing::Plan(members),
            not_before: Duration::ZERO,
        });
    }

    /// The executor's settlement report on `payout`, filed by the workload itself when no
    /// agents run.
    fn report(
        &mut self,
        subject: &str,
        payout: &SignedProposal,
        paid: bool,
        rng: &mut StdRng,
    ) -> SignedProposal {
        let reports_on = payout.id().to_hex();
        let (action, payload) = if paid {
            (
                "SETTLEMENT.PAYOUT_EXECUTED",
                Value::map([
                    ("reports_on", reports_on.into()),
                    ("rail_ref", format!("rail-{}", hex32(rng)).into()),
                ]),
            )
        } else {
            (
                "SETTLEMENT.RAIL_ERROR",
                Value::map([
                    ("reports_on", reports_on.into()),
                    ("reason", "beneficiary blocked".into()),
                    ("evidence_hash", hex32(rng).into()),
                ]),
            )
        };
        self.propose("exec", action, subject, payload, vec![payout.id()])
    }

    /// Queues the next flow.
    fn start_flow(&mut self, rng: &mut StdRng) {
        self.flows += 1;
        if rng.gen_bool(PLAN_FLOW_CHANCE) {
            self.plan_flow(rng);
            return;
        }
        let k = self.flows;
        let c = self.client;
        let reverse = rng.gen_bool(0.3);
        match rng.gen_range(0..5) {
            0 | 1 if self.execution => {
                let subject = format!("stl-c{c}-{k}");
                let (deposit, amount, beneficiary) = match rng.gen_range(0..10) {
                    0 => {
                        let deposit = rng.gen_range(RAIL_AMOUNT_MAX + 1_000..2 * RAIL_AMOUNT_MAX);
                        (
                            deposit,
                            rng.gen_range(RAIL_AMOUNT_MAX + 1..=deposit),
                            "acme",
                        )
                    }
                    1 => (10_000, rng.gen_range(1..=10_000), BENEFICIARY_BLOCKED),
                    2 => (10_000, rng.gen_range(1..=10_000), BENEFICIARY_FLAKY),
                    _ => {
                        let deposit = rng.gen_range(1_000..RAIL_AMOUNT_MAX);
                        (deposit, rng.gen_range(1..=deposit), "acme")
                    }
                };
                let (deposit, payout) =
                    self.deposit_and_payout(&subject, deposit, amount, beneficiary);
                let mut flow = vec![deposit];
                // The agents file the settlement outcome; a client may still file the
                // execution-domain report about the payout (it does not settle it).
                if rng.gen_bool(0.3) {
                    let report = self.propose(
                        "exec",
                        "EXECUTION.OUTCOME",
                        &payout.id().to_hex(),
                        Value::map([
                            ("reports_on", payout.id().to_hex().into()),
                            ("outcome", "success".into()),
                            ("evidence_hash", hex32(rng).into()),
                        ]),
                        vec![payout.id()],
                    );
                    flow.push(payout);
                    flow.push(report);
                } else {
                    flow.push(payout);
                }
                self.queue_flow(flow, reverse);
            }
            0 | 1 => {
                let subject = format!("stl-c{c}-{k}");
                let amount = rng.gen_range(1_000..100_000);
                let payout_amount = rng.gen_range(1..=amount);
                let (deposit, payout) =
                    self.deposit_and_payout(&subject, amount, payout_amount, "acme");
                let report = if rng.gen_bool(0.5) {
                    self.propose(
                        "exec",
                        "SETTLEMENT.PAYOUT_EXECUTED",
                        &subject,
                        Value::map([
                            ("reports_on", payout.id().to_hex().into()),
                            ("rail_ref", format!("rail-{c}-{k}").into()),
                        ]),
                        vec![payout.id()],
                    )
                } else {
                    self.propose(
                        "exec",
                        "EXECUTION.OUTCOME",
                        &payout.id().to_hex(),
                        Value::map([
                            ("reports_on", payout.id().to_hex().into()),
                            ("outcome", "success".into()),
                            ("evidence_hash", hex32(rng).into()),
                        ]),
                        vec![payout.id()],
                    )
                };
                self.queue_flow(vec![deposit, payout, report], reverse);
            }
            2 => {
                let subject = format!("kes-c{c}");
                let parent = match self.kes_version {
                    0 => Value::Null,
                    v => format!("v{v}").into(),
                };
                self.kes_version += 1;
                let version = format!("v{}", self.kes_version);
                let version_hash = hex32(rng);
                let proposed = self.propose(
                    "grace",
                    "KES.VERSION_PROPOSED",
                    &subject,
                    Value::map([
                        ("version", version.clone().into()),
                        ("version_hash", version_hash.clone().into()),
                        ("commitments", Value::List(vec![format!("c-{k}").into()])),
                        ("parent", parent),
                    ]),
                    vec![],
                );
                let ratify = Value::map([
                    ("version", version.into()),
                    ("version_hash", version_hash.into()),
                ]);
                let first = self.propose(
                    "grace",
                    "KES.VERSION_RATIFIED",
                    &subject,
                    ratify.clone(),
                    vec![proposed.id()],
                );
                let second = self.propose(
                    "heidi",
                    "KES.VERSION_RATIFIED",
                    &subject,
                    ratify,
                    vec![proposed.id()],
                );
                self.queue_flow(vec![proposed, first, second], reverse);
            }
            3 => {
                let subject = format!("auc-c{c}-{k}");
                let opened = self.propose(
                    "olivia",
                    "AUCTION.OPENED",
                    &subject,
                    Value::map([("reserve", Value::Int(100)), ("item", "lot".into())]),
                    vec![],
                );
                let low = rng.gen_range(101..1_000);
                let bid_a = self.propose(
                    "bianca",
                    "AUCTION.BID",
                    &subject,
                    Value::map([("amount", Value::Int(low))]),
                    vec![opened.id()],
                );
                let bid_b = self.propose(
                    "boris",
                    "AUCTION.BID",
                    &subject,
                    Value::map([("amount", Value::Int(low + rng.gen_range(1..500)))]),
                    vec![bid_a.id()],
                );
                let closed = self.propose(
                    "olivia",
                    "AUCTION.CLOSED",
                    &subject,
                    Value::map::<&str>([]),
                    vec![bid_b.id()],
                );
                let awarded = self.propose(
                    "olivia",
                    "AUCTION.AWARDED",
                    &subject,
                    Value::map([("winner", dev::key("boris").to_hex().into())]),
                    vec![closed.id()],
                );
                self.queue_flow(vec![opened, bid_a, bid_b, closed, awarded], reverse);
            }
            _ => {
                let subject = format!("tnd-c{c}-{k}");
                let window_ms = rng.gen_range(200..600u64);
                let deadline = LEDGER_EPOCH_MS + now().as_millis() as u64 + window_ms;
                let published = self.propose(
                    "petra",
                    "TENDER.PUBLISHED",
                    &subject,
                    Value::map([
                        ("deadline_ms", Value::Int(deadline as i64)),
                        ("title", "pipes".into()),
                    ]),
                    vec![],
                );
                let offer = self.propose(
                    "sam",
                    "TENDER.SUBMISSION",
                    &subject,
                    Value::map([("offer_hash", hex32(rng).into())]),
                    vec![published.id()],
                );
                let evaluated = self.propose(
                    "petra",
                    "TENDER.EVALUATED",
                    &subject,
                    Value::map::<&str>([]),
                    vec![offer.id()],
                );
                let awarded = self.propose(
                    "petra",
                    "TENDER.AWARDED",
                    &subject,
                    Value::map([("winner", dev::key("sam").to_hex().into())]),
                    vec![evaluated.id()],
                );
                self.queue_flow(vec![published, offer], false);
                let after = now() + Duration::from_millis(window_ms + 50);
                for proposal in [evaluated, awarded] {
                    self.queue.push_back(Queued {
                        filing: Filing::One(Box::new(proposal)),
                        not_before: after,
                    });
                }
            }
        }
    }

    /// A proposal no one may file, or one that is malformed; the core must reject it the
    /// same way on every replica.
    fn bad(&mut self, rng: &mut StdRng) -> SignedProposal {
        let c = self.client;
        let n = self.nonce;
        match rng.gen_range(0..6) {
            0 => self.propose(
                "mallory",
                "SETTLEMENT.DEPOSIT_CONFIRMED",
                HOT_SUBJECT,
                Value::map([
                    ("amount", Value::Int(1_000_000)),
                    ("currency", "EUR".into()),
                ]),
                vec![],
            ),
            1 => self.propose(
                "boris",
                "AUCTION.OPENED",
                &format!("auc-c{c}-rogue-{n}"),
                Value::map([("reserve", Value::Int(1)), ("item", "x".into())]),
                vec![],
            ),
            2 => self.propose(
                "alice",
                "SETTLEMENT.DEPOSIT_CONFIRMED",
                HOT_SUBJECT,
                Value::map([("amount", Value::Int(5))]),
                vec![],
            ),
            3 => self.propose(
                "alice",
                "SETTLEMENT.TELEPORT",
                HOT_SUBJECT,
                Value::map::<&str>([]),
                vec![],
            ),
            4 => {
                let mut forged = self.propose(
                    "alice",
                    "SETTLEMENT.DEPOSIT_CONFIRMED",
                    HOT_SUBJECT,
                    Value::map([("amount", Value::Int(7)), ("currency", "EUR".into())]),
                    vec![],
                );
                forged.signature.0[0] ^= 0x55;
                forged
            }
            _ => {
                self.nonce += 1;
                dev::proposal(
                    &LedgerId::new("elsewhere").expect("invariant: valid ledger id"),
                    "alice",
                    "SETTLEMENT.DEPOSIT_CONFIRMED",
                    HOT_SUBJECT,
                    Value::map([("amount", Value::Int(9)), ("currency", "EUR".into())]),
                    vec![],
                    (u64::from(c) << 40) | self.nonce,
                )
            }
        }
    }

    fn hot_deposit(&mut self, rng: &mut StdRng) -> SignedProposal {
        let author = if rng.gen_bool(0.5) { "alice" } else { "bob" };
        self.propose(
            author,
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            HOT_SUBJECT,
            Value::map([
                ("amount", Value::Int(rng.gen_range(1..1_000))),
                ("currency", "EUR".into()),
            ]),
            vec![],
        )
    }
}

/// What the client does next.
enum Action {
    Submit(Box<SignedProposal>),
    /// A plan; `fresh` the first time it is sent (a resubmission is all duplicates).
    Plan {
        members: Vec<SignedProposal>,
        fresh: bool,
    },
    Read(String, String),
}

fn next_action(flows: &mut Flows, rng: &mut StdRng, world: &World) -> Option<Action> {
    let roll = rng.gen_range(0..100);
    if roll < 30 {
        let subjects = world.borrow().subjects.clone();
        if let Some((domain, subject)) = subjects.choose(rng) {
            return Some(Action::Read(domain.clone(), subject.clone()));
        }
    }
    if roll < 38 {
        if roll == 30 {
            if let Some(old) = flows.filed_plans.choose(rng) {
                return Some(Action::Plan {
                    members: old.clone(),
                    fresh: false,
                });
            }
        }
        if let Some(old) = flows.filed.choose(rng) {
            return Some(Action::Submit(Box::new(old.clone())));
        }
    }
    if roll < 46 {
        return Some(Action::Submit(Box::new(flows.bad(rng))));
    }
    if roll < 60 {
        return Some(Action::Submit(Box::new(flows.hot_deposit(rng))));
    }
    if flows.queue.is_empty() {
        flows.start_flow(rng);
    }
    let ready = flows.queue.front().is_some_and(|p| p.not_before <= now());
    if !ready {
        return Some(Action::Submit(Box::new(flows.hot_deposit(rng))));
    }
    flows.queue.pop_front().map(|queued| match queued.filing {
        Filing::One(proposal) => Action::Submit(proposal),
        Filing::Plan(members) => Action::Plan {
            members,
            fresh: true,
        },
    })
}

fn pick_node(rng: &mut StdRng, nodes: u64) -> NodeId {
    rng.gen_range(1..=nodes)
}

fn api_addr(node: NodeId) -> String {
    format!("{}:{API_PORT}", host_name(node))
}

/// Submits one proposal, retrying elsewhere on errors that say it was not attempted or
/// was refused by a non-leader; every attempt is an operation in the history.
pub async fn submit(
    world: &World,
    client: u32,
    rng: &mut StdRng,
    nodes: u64,
    proposal: &SignedProposal,
) -> Option<Response> {
    let kind = OpKind::Submit {
        id: proposal.id(),
        domain: proposal.proposal.domain.clone(),
        subject: proposal.proposal.subject.clone(),
    };
    for _ in 0..SUBMIT_ATTEMPTS_MAX {
        let node = pick_node(rng, nodes);
        let op = {
            let mut w = world.borrow_mut();
            w.trace_now(format_args!(
                "c{client} submit {} via n{node}",
                proposal.id().short()
            ));
            w.history
                .invoke(client, node, kind.clone(), now().as_nanos())
        };
        let envelope = Envelope {
            forwarded: false,
            request: Request::Submit(vec![proposal.clone()]),
        };
        let response = api::call(&api_addr(node), &envelope, CLIENT_DEADLINE).await;
        let result = match &response {
            Response::Submitted(outcomes) if outcomes.len() == 1 => {
                OpResult::Submitted(outcomes[0].clone())
            }
            Response::Error { code, .. } => OpResult::Failed(*code),
            _ => OpResult::Failed(ErrorCode::MalformedRequest),
        };
        {
            let mut w = world.borrow_mut();
            w.trace_now(format_args!(
                "c{client} submit {} -> {result:?}",
                proposal.id().short()
            ));
            w.history.complete(op, result.clone(), now().as_nanos());
        }
        match result {
            OpResult::Submitted(_) => return Some(response),
            OpResult::Failed(ErrorCode::Timeout) => return None,
            _ => tokio::time::sleep(Duration::from_millis(rng.gen_range(20..100))).await,
        }
    }
    None
}

/// Submits a plan, retrying elsewhere as [`submit`] does. Each attempt is one operation
/// per member in the history, invoked and answered together; the answers are in the
/// order the service recorded the members.
pub async fn submit_plan(
    world: &World,
    client: u32,
    rng: &mut StdRng,
    nodes: u64,
    members: &[SignedProposal],
) -> Option<Vec<PlanAck>> {
    let kinds: Vec<OpKind> = members
        .iter()
        .map(|p| OpKind::Submit {
            id: p.id(),
            domain: p.proposal.domain.clone(),
            subject: p.proposal.subject.clone(),
        })
        .collect();
    let ids: Vec<ProposalId> = members.iter().map(SignedProposal::id).collect();
    let short = ids.first().map(ProposalId::short).unwrap_or_default();
    for _ in 0..SUBMIT_ATTEMPTS_MAX {
        let node = pick_node(rng, nodes);
        let ops: Vec<usize> = {
            let mut w = world.borrow_mut();
            w.trace_now(format_args!(
                "c{client} plan {short}+{} via n{node}",
                members.len() - 1
            ));
            let at = now().as_nanos();
            kinds
                .iter()
                .map(|kind| w.history.invoke(client, node, kind.clone(), at))
                .collect()
        };
        let envelope = Envelope {
            forwarded: false,
            request: Request::Plan(members.to_vec()),
        };
        let response = api::call(&api_addr(node), &envelope, CLIENT_DEADLINE).await;
        let (results, acks) = match response {
            Response::Planned(acks) if acks.len() == members.len() => {
                let results = ids
                    .iter()
                    .map(|id| match acks.iter().find(|a| a.id == *id) {
                        Some(ack) => OpResult::Planned(ack.clone()),
                        None => OpResult::Failed(ErrorCode::MalformedRequest),
                    })
                    .collect();
                (results, Some(acks))
            }
            Response::Error { code, .. } => (vec![OpResult::Failed(code); ids.len()], None),
            _ => (
                vec![OpResult::Failed(ErrorCode::MalformedRequest); ids.len()],
                None,
            ),
        };
        let code = match results.first() {
            Some(OpResult::Failed(code)) => Some(*code),
            _ => None,
        };
        {
            let mut w = world.borrow_mut();
            match &acks {
                Some(acks) => w.trace_now(format_args!(
                    "c{client} plan {short} -> {}",
                    acks.iter()
                        .map(|a| format!("{}@{} {}", a.id.short(), a.index, a.decision.label()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                None => w.trace_now(format_args!("c{client} plan {short} -> {code:?}")),
            }
            let at = now().as_nanos();
            for (op, result) in ops.into_iter().zip(results) {
                w.history.complete(op, result, at);
            }
        }
        match code {
            None => return acks,
            Some(ErrorCode::Timeout) => return None,
            Some(_) => tokio::time::sleep(Duration::from_millis(rng.gen_range(20..100))).await,
        }
    }
    None
}

async fn read(
    world: &World,
    client: u32,
    rng: &mut StdRng,
    nodes: u64,
    domain: String,
    subject: String,
) {
    let node = pick_node(rng, nodes);
    let kind = OpKind::Read {
        domain: domain.clone(),
        subject: subject.clone(),
    };
    let op = world
        .borrow_mut()
        .history
        .invoke(client, node, kind, now().as_nanos());
    let envelope = Envelope {
        forwarded: false,
        request: Request::Read {
            domain: domain.clone(),
            subject: subject.clone(),
        },
    };
    let response = api::call(&api_addr(node), &envelope, CLIENT_DEADLINE).await;
    let result = match response {
        Response::Read {
            subject,
            served_by,
            read_index,
        } => OpResult::Read {
            subject,
            served_by,
            read_index,
        },
        Response::Error { code, .. } => OpResult::Failed(code),
        _ => OpResult::Failed(ErrorCode::MalformedRequest),
    };
    let mut w = world.borrow_mut();
    w.trace_now(format_args!(
        "c{client} read {domain}/{subject} via n{node} -> {result:?}"
    ));
    w.history.complete(op, result, now().as_nanos());
}

/// One workload client, until the harness stops the workload.
pub async fn run_client(world: World, client: u32) -> turmoil::Result {
    let (seed, nodes) = {
        let w = world.borrow();
        (w.derived.seed, w.config.nodes)
    };
    let mut rng = rng(seed ^ (u64::from(client) << 48), salt::WORKLOAD);
    let execution = world.borrow().config.execution;
    let mut flows = Flows::new(client, execution);
    // Let the cluster form and write genesis first.
    tokio::time::sleep(Duration::from_millis(1_500 + 100 * u64::from(client))).await;
    while !world.borrow().stop_workload {
        match next_action(&mut flows, &mut rng, &world) {
            Some(Action::Submit(proposal)) => {
                {
                    let mut w = world.borrow_mut();
                    let key = (
                        proposal.proposal.domain.clone(),
                        proposal.proposal.subject.clone(),
                    );
                    if !w.subjects.contains(&key) {
                        w.subjects.push(key);
                    }
                }
                let acked = submit(&world, client, &mut rng, nodes, &proposal)
                    .await
                    .is_some();
                if acked && !flows.filed.iter().any(|p| p.id() == proposal.id()) {
                    flows.filed.push((*proposal).clone());
                }
                // Read your write, at once and anywhere: the read that shows a read-index
                // round serving reads that arrived after it started (a stale read of the
                // write just acknowledged).
                if acked && rng.gen_range(0..3) == 0 {
                    let p = &proposal.proposal;
                    read(
                        &world,
                        client,
                        &mut rng,
                        nodes,
                        p.domain.clone(),
                        p.subject.clone(),
                    )
                    .await;
                }
            }
            Some(Action::Plan { members, fresh }) => {
                {
                    let mut w = world.borrow_mut();
                    for p in &members {
                        let key = (p.proposal.domain.clone(), p.proposal.subject.clone());
                        if !w.subjects.contains(&key) {
                            w.subjects.push(key);
                        }
                    }
                    if fresh {
                        w.history.plans.push(members.clone());
                    }
                }
                let acked = submit_plan(&world, client, &mut rng, nodes, &members)
                    .await
                    .is_some();
                if acked && fresh {
                    flows.filed.extend(members.iter().cloned());
                    flows.filed_plans.push(members);
                }
            }
            Some(Action::Read(domain, subject)) => {
                read(&world, client, &mut rng, nodes, domain, subject).await
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(2..40))).await;
    }
    Ok(())
}

/// The growth mode's filler ([`crate::SimConfig::prefill`]): submits deposits to fresh
/// subjects in batches of [`FILL_BATCH`] through random nodes until `prefill` of them are
/// acknowledged or the workload stops. Its proposals are not in the history (they are
/// bulk, not operations the checkers reason about one by one); the agreement, chain and
/// convergence checks cover them like every other entry.
pub async fn run_filler(world: World) -> turmoil::Result {
    let (seed, nodes, prefill) = {
        let w = world.borrow();
        (w.derived.seed, w.config.nodes, w.config.prefill)
    };
    let mut rng = rng(seed ^ (0xf111 << 48), salt::WORKLOAD);
    let ledger = LedgerId::new(CLUSTER_ID).expect("invariant: the cluster id is a ledger id");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (mut acknowledged, mut nonce) = (0u64, 0u64);
    while acknowledged < prefill && !world.borrow().stop_workload {
        let count = FILL_BATCH.min(prefill - acknowledged);
        let batch: Vec<SignedProposal> = (0..count)
            .map(|_| {
                nonce += 1;
                dev::proposal(
                    &ledger,
                    "alice",
                    "SETTLEMENT.DEPOSIT_CONFIRMED",
                    &format!("fill-{nonce}"),
                    Value::map([("amount", Value::Int(1)), ("currency", "EUR".into())]),
                    vec![],
                    nonce,
                )
            })
            .collect();
        let envelope = Envelope {
            forwarded: false,
            request: Request::Submit(batch),
        };
        let node = pick_node(&mut rng, nodes);
        match api::call(&api_addr(node), &envelope, CLIENT_DEADLINE).await {
            Response::Submitted(outcomes) => {
                acknowledged += outcomes.len() as u64;
                world.borrow_mut().trace_now(format_args!(
                    "filler: {acknowledged} of {prefill} acknowledged"
                ));
            }
            // A timeout or refusal: the batch may or may not be recorded; the next one
            // carries new nonces, so nothing is filed twice by design.
            _ => tokio::time::sleep(Duration::from_millis(rng.gen_range(50..200))).await,
        }
    }
    Ok(())
}

/// A reader beside the clients: reads a known subject at a random node every few
/// milliseconds, so read-index rounds are often in flight when a client reads its own
/// write (a read that joins such a round is stale: the coalescer's negative control).
pub async fn run_reader(world: World, client: u32) -> turmoil::Result {
    let (seed, nodes) = {
        let w = world.borrow();
        (w.derived.seed, w.config.nodes)
    };
    let mut rng = rng(
        seed ^ (u64::from(client) << 48),
        salt::WORKLOAD ^ 0x7265_6164,
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    while !world.borrow().stop_workload {
        let subjects = world.borrow().subjects.clone();
        if let Some((domain, subject)) = subjects.choose(&mut rng) {
            read(
                &world,
                client,
                &mut rng,
                nodes,
                domain.clone(),
                subject.clone(),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1..10))).await;
    }
    Ok(())
}
