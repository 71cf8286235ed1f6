//! The simulated payment rail: the execution target of the simulation, a turmoil host
//! ([`RAIL_HOST`]) that takes payout POSTs over turmoil TCP and answers like a payment
//! rail, honouring `Idempotency-Key`.
//!
//! * The money moves when a request arrives: the first accepted request with a key is a
//!   **payment** (a new `rail_ref`); every later request with that key gets the first
//!   answer back and moves nothing (the rail's dedupe). The answer is sent after a delay
//!   drawn from the seed (up to [`RAIL_DELAY_MS_MAX`]), so crashes and partitions often land
//!   between the payment and its acknowledgement.
//! * Beneficiary [`BENEFICIARY_BLOCKED`] is declined (`422`, no payment, not retried by
//!   the agent: a rail error). The first request of a key for beneficiary
//!   [`BENEFICIARY_FLAKY`] gets `503` (no payment; the agent retries).
//! * Every request is recorded as an [`Arrival`] — who sent it, its key, which try of
//!   which run it was, what its sender knew — and traced. The effects checker
//!   ([`crate::check::effects`]) reads these records.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use docket_raft::NodeId;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::json;

use crate::config::{rng, salt};
use crate::http::{self, Message};
use crate::world::{now, World};

/// turmoil host name of the rail.
pub const RAIL_HOST: &str = "rail";
pub const RAIL_PORT: u16 = 9100;
pub const RAIL_PATH: &str = "/payouts";
/// Longest delay between a payment and its answer. Below the agent's per-request timeout
/// ([`crate::execution::RAIL_TIMEOUT_MS`]), so only faults make an answer late.
pub const RAIL_DELAY_MS_MAX: u64 = 150;
/// A connection is served within this or dropped (a stalled stream never finishes).
pub const RAIL_CONNECTION_DEADLINE: Duration = Duration::from_secs(2);
/// Largest request body the rail reads.
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;

/// A beneficiary the rail declines.
pub const BENEFICIARY_BLOCKED: &str = "blocked";
/// A beneficiary whose first request per key the rail answers `503`.
pub const BENEFICIARY_FLAKY: &str = "flaky";

/// Simulator-only header: which run of an effect a request belongs to
/// (`n<node>.b<boot>.<run>`); the tries of one run share it.
pub const RUN_HEADER: &str = "Sim-Run";
/// Simulator-only header: how many ledger entries the sending node had applied when its
/// agent planned this attempt (a lower bound of what the agent knew when it decided to
/// send).
pub const KNOWN_LEDGER_HEADER: &str = "Sim-Known-Ledger-Len";

/// The rail's URL, as the agents are configured with it.
pub fn url() -> String {
    format!("http://{RAIL_HOST}:{RAIL_PORT}{RAIL_PATH}")
}

/// What the rail answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A new payment.
    Paid { rail_ref: String },
    /// A repeat of a key already paid: the first answer again, no money moved.
    Replayed { rail_ref: String },
    /// Declined (`422`): the beneficiary is blocked. No money moved.
    Declined,
    /// Temporarily unavailable (`503`). No money moved.
    Unavailable,
    /// A request the rail could not use (`400`).
    BadRequest(String),
}

/// One request as the rail received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub at_ns: u128,
    /// The node that sent it (from the connection's source address).
    pub from: Option<NodeId>,
    pub key: Option<String>,
    /// `Docket-Attempt`: the try within one run (1-based).
    pub try_number: Option<u32>,
    /// [`RUN_HEADER`].
    pub run: Option<String>,
    /// [`KNOWN_LEDGER_HEADER`].
    pub known_ledger_len: Option<u64>,
    pub amount: Option<i64>,
    pub subject: Option<String>,
    pub beneficiary: Option<String>,
    pub answer: Answer,
}

/// Money the rail moved: at most one per key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub key: String,
    pub rail_ref: String,
    pub amount: Option<i64>,
    pub subject: Option<String>,
    pub at_ns: u128,
}

/// Everything the rail saw and did in a run.
#[derive(Debug)]
pub struct Rail {
    pub arrivals: Vec<Arrival>,
    /// In the order made.
    pub payments: Vec<Payment>,
    /// Key → index into `payments`.
    paid: BTreeMap<String, usize>,
    rng: StdRng,
}

impl Rail {
    pub fn new(seed: u64) -> Rail {
        Rail {
            arrivals: Vec::new(),
            payments: Vec::new(),
            paid: BTreeMap::new(),
            rng: rng(seed, salt::RAIL),
        }
    }

    /// The payment made for `key`, if any.
    pub fn payment(&self, key: &str) -> Option<&Payment> {
        self.paid.get(key).map(|i| &self.payments[*i])
    }

    /// Handles one request from `from` at `at_ns`: records it, pays if it must, and answers
    /// `(status, reason, body, delay before answering)`.
    pub fn receive(
        &mut self,
        at_ns: u128,
        from: Option<NodeId>,
        request: &Message,
    ) -> (u16, &'static str, Vec<u8>, Duration) {
        let key = request.header("idempotency-key").map(str::to_owned);
        let body: Option<serde_json::Value> = serde_json::from_slice(&request.body).ok();
        let field = |name: &str| body.as_ref().and_then(|b| b.get(name));
        let mut arrival = Arrival {
            at_ns,
            from,
            key: key.clone(),
            try_number: request
                .header("docket-attempt")
                .and_then(|t| t.parse().ok()),
            run: request.header(RUN_HEADER).map(str::to_owned),
            known_ledger_len: request
                .header(KNOWN_LEDGER_HEADER)
                .and_then(|t| t.parse().ok()),
            amount: field("amount").and_then(serde_json::Value::as_i64),
            subject: field("subject")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            beneficiary: field("beneficiary")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            answer: Answer::Unavailable,
        };
        let seen_before = key
            .as_ref()
            .is_some_and(|k| self.arrivals.iter().any(|a| a.key.as_ref() == Some(k)));
        let (status, reason, answer_body) = match (&key, &body) {
            (None, _) => {
                arrival.answer = Answer::BadRequest("no Idempotency-Key".into());
                (
                    400,
                    "Bad Request",
                    json!({"error": "Idempotency-Key required"}),
                )
            }
            (Some(_), None) => {
                arrival.answer = Answer::BadRequest("body is not JSON".into());
                (400, "Bad Request", json!({"error": "body is not JSON"}))
            }
            (Some(key), Some(_)) => {
                if let Some(payment) = self.payment(key) {
                    let rail_ref = payment.rail_ref.clone();
                    arrival.answer = Answer::Replayed {
                        rail_ref: rail_ref.clone(),
                    };
                    (
                        200,
                        "OK",
                        json!({"rail_ref": rail_ref, "idempotency_key": key}),
                    )
                } else if arrival.beneficiary.as_deref() == Some(BENEFICIARY_BLOCKED) {
                    arrival.answer = Answer::Declined;
                    (
                        422,
                        "Unprocessable Entity",
                        json!({"error": "beneficiary blocked"}),
                    )
                } else if arrival.beneficiary.as_deref() == Some(BENEFICIARY_FLAKY) && !seen_before
                {
                    arrival.answer = Answer::Unavailable;
                    (503, "Service Unavailable", json!({"error": "try again"}))
                } else {
                    let rail_ref = format!("rail-{:04}", self.payments.len() + 1);
                    self.paid.insert(key.clone(), self.payments.len());
                    self.payments.push(Payment {
                        key: key.clone(),
                        rail_ref: rail_ref.clone(),
                        amount: arrival.amount,
                        subject: arrival.subject.clone(),
                        at_ns,
                    });
                    arrival.answer = Answer::Paid {
                        rail_ref: rail_ref.clone(),
                    };
                    (
                        200,
                        "OK",
                        json!({"rail_ref": rail_ref, "idempotency_key": key}),
                    )
                }
            }
        };
        self.arrivals.push(arrival);
        let delay = Duration::from_millis(self.rng.gen_range(0..=RAIL_DELAY_MS_MAX));
        let bytes = serde_json::to_vec(&answer_body).expect("invariant: JSON values serialize");
        (status, reason, bytes, delay)
    }
}

/// The node a source address belongs to (`n<id>`), if any.
fn node_of(peer: SocketAddr) -> Option<NodeId> {
    turmoil::reverse_lookup(peer.ip())?
        .strip_prefix('n')?
        .parse()
        .ok()
}

/// The rail host: serves connections until the simulation ends.
pub async fn run(world: World) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", RAIL_PORT)).await?;
    loop {
        let (stream, peer) = listener.accept().await?;
        let world = world.clone();
        tokio::task::spawn_local(async move {
            let _ =
                tokio::time::timeout(RAIL_CONNECTION_DEADLINE, serve(stream, peer, world)).await;
        });
    }
}

async fn serve(
    mut stream: turmoil::net::TcpStream,
    peer: SocketAddr,
    world: World,
) -> std::io::Result<()> {
    let request = http::read_message(&mut stream, REQUEST_BYTES_MAX).await?;
    let from = node_of(peer);
    let (status, reason, body, delay) = {
        let mut w = world.borrow_mut();
        let at = now().as_nanos();
        let answer = w.rail.receive(at, from, &request);
        let arrival = w.rail.arrivals.last().expect("invariant: just recorded");
        let line = format!(
            "rail <- {} key {} try {} run {} known {} -> {} {:?}",
            from.map_or("?".to_owned(), |n| format!("n{n}")),
            arrival
                .key
                .as_deref()
                .map_or("-", |k| &k[..k.len().min(16)]),
            arrival.try_number.unwrap_or(0),
            arrival.run.as_deref().unwrap_or("-"),
            arrival
                .known_ledger_len
                .map_or("-".to_owned(), |l| l.to_string()),
            answer.0,
            arrival.answer,
        );
        w.trace_now(line);
        answer
    };
    tokio::time::sleep(delay).await;
    http::write_all(&mut stream, &http::response_bytes(status, reason, &body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: Option<&str>, beneficiary: &str) -> Message {
        let mut headers = BTreeMap::new();
        if let Some(key) = key {
            headers.insert("idempotency-key".to_owned(), key.to_owned());
        }
        headers.insert("docket-attempt".to_owned(), "1".to_owned());
        Message {
            start: "POST /payouts HTTP/1.1".into(),
            headers,
            body: serde_json::to_vec(&json!({"amount": 5, "beneficiary": beneficiary}))
                .expect("json"),
        }
    }

    #[test]
    fn one_payment_per_key_and_declines_move_nothing() {
        let mut rail = Rail::new(1);
        assert_eq!(
            rail.receive(1, Some(1), &request(Some("k1"), "acme")).0,
            200
        );
        assert_eq!(
            rail.receive(2, Some(2), &request(Some("k1"), "acme")).0,
            200
        );
        assert_eq!(rail.payments.len(), 1, "the repeat is deduped");
        assert_eq!(
            rail.arrivals[1].answer,
            Answer::Replayed {
                rail_ref: "rail-0001".into()
            }
        );
        assert_eq!(
            rail.receive(3, Some(1), &request(Some("k2"), BENEFICIARY_BLOCKED))
                .0,
            422
        );
        assert_eq!(
            rail.receive(4, Some(1), &request(Some("k3"), BENEFICIARY_FLAKY))
                .0,
            503
        );
        assert_eq!(
            rail.receive(5, Some(1), &request(Some("k3"), BENEFICIARY_FLAKY))
                .0,
            200
        );
        assert_eq!(rail.receive(6, Some(1), &request(None, "acme")).0, 400);
        assert_eq!(rail.payments.len(), 2);
        assert!(rail.payment("k2").is_none());
        assert_eq!(
            rail.payment("k3").map(|p| p.rail_ref.as_str()),
            Some("rail-0002")
        );
        assert_eq!(rail.arrivals.len(), 6);
    }
}
