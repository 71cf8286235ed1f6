//! A local payment-rail endpoint for `docket demo` and the tests: it accepts payout
//! POSTs, honours `Idempotency-Key` (a repeated key gets the first answer back and moves no
//! more money), and counts every request per key so a test can prove "exactly once".

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// What the rail saw for one idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payout {
    /// Requests received with this key (retries and re-sends included).
    pub requests: u32,
    pub rail_ref: String,
    pub amount: Option<i64>,
}

#[derive(Clone, Debug, Default)]
struct Ledger {
    payouts: Arc<Mutex<BTreeMap<String, Payout>>>,
}

/// A running rail endpoint.
#[derive(Debug)]
pub struct Rail {
    pub addr: SocketAddr,
    ledger: Ledger,
    task: tokio::task::JoinHandle<()>,
}

impl Rail {
    /// Starts the rail on 127.0.0.1 with an OS-chosen port.
    pub async fn start() -> anyhow::Result<Rail> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let ledger = Ledger::default();
        let app = Router::new()
            .route("/payouts", post(payout))
            .with_state(ledger.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Rail { addr, ledger, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}/payouts", self.addr)
    }

    /// Every idempotency key seen, with what was done for it.
    pub fn payouts(&self) -> BTreeMap<String, Payout> {
        self.ledger
            .payouts
            .lock()
            .expect("invariant: the rail lock is never poisoned")
            .clone()
    }
}

impl Drop for Rail {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn payout(
    State(ledger): State<Ledger>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "Idempotency-Key header required"})),
        );
    };
    let mut payouts = ledger
        .payouts
        .lock()
        .expect("invariant: the rail lock is never poisoned");
    let next = payouts.len() + 1;
    let entry = payouts.entry(key.clone()).or_insert_with(|| Payout {
        requests: 0,
        rail_ref: format!("rail-{next:04}"),
        amount: body.get("amount").and_then(Value::as_i64),
    });
    entry.requests += 1;
    (
        StatusCode::OK,
        Json(json!({"rail_ref": entry.rail_ref, "idempotency_key": key})),
    )
}
