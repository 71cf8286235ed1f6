//! A test-only HTTP proxy in front of one node that answers every request verbatim except
//! inclusion proofs, in which it flips one hash: the explorer loaded through it must show
//! the red warning. (No production route ever returns wrong data.)

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

#[derive(Clone)]
struct Upstream {
    url: String,
    http: reqwest::Client,
}

/// Serves on a loopback port until the test ends; answers the proxy's base URL.
pub async fn tampering_proxy(upstream: &str) -> String {
    let state = Upstream {
        url: upstream.trim_end_matches('/').to_owned(),
        http: reqwest::Client::new(),
    };
    let app = axum::Router::new().fallback(relay).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let address = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("proxy serves");
    });
    format!("http://{address}")
}

/// Flips the last hex digit of the first hash of an inclusion proof's audit path.
pub fn tamper(proof: &mut Value) {
    let first = proof["proof"][0]
        .as_str()
        .expect("an audit path with at least one hash")
        .to_owned();
    let (head, last) = first.split_at(first.len() - 1);
    let flipped = if last == "0" { "1" } else { "0" };
    proof["proof"][0] = Value::String(format!("{head}{flipped}"));
}

async fn relay(State(upstream): State<Upstream>, request: Request) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let answer = upstream
        .http
        .get(format!("{}{target}", upstream.url))
        .send()
        .await
        .expect("the node answers the proxy");
    let status = StatusCode::from_u16(answer.status().as_u16()).expect("status");
    let headers = answer.headers().clone();
    let mut body = answer.bytes().await.expect("body").to_vec();
    if request.uri().path() == "/v1/proofs/inclusion" && status.is_success() {
        let mut proof: Value = serde_json::from_slice(&body).expect("a proof");
        tamper(&mut proof);
        body = serde_json::to_vec(&proof).expect("JSON");
    }
    let mut response = Response::builder().status(status);
    for name in ["content-type", "content-security-policy"] {
        if let Some(value) = headers.get(name) {
            response = response.header(name, value.as_bytes());
        }
    }
    response.body(Body::from(body)).expect("response")
}
