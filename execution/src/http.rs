//! One HTTP POST with bounded retries, exponential backoff, a per-request timeout, an
//! overall deadline (the loop is [`crate::retry`]'s), and a bounded read of the response.
//!
//! Every request carries `Idempotency-Key: <proposal id>`, so a target that honours it sees
//! one effect however many times the request arrives (retries here, a re-run by the next
//! leader after a crash). Retried: connection errors, timeouts, 5xx, 408, 425 and 429.
//! Not retried: other 4xx (the request itself is wrong; repeating it cannot help).
//! Redirects are not followed (the client is built with redirects off), so a target cannot
//! bounce a request outside the allowlist.

use std::time::Duration;

use docket_core::ProposalId;
use reqwest::{StatusCode, Url};

use crate::config::EffectLimits;
use crate::effect::{Failed, Performed, Request, Target};
use crate::evidence::bounded;
use crate::retry::{self, Attempt, Received};

/// The header carrying the idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// Which attempt of this execution a request is (1-based), for the target's logs.
pub const ATTEMPT_HEADER: &str = "Docket-Attempt";
/// Connect timeout: a target that cannot accept a connection in two seconds is down.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;

/// The HTTP client effects share: no redirects, no proxies from the environment (an
/// `HTTP_PROXY` would send effects somewhere the allowlist never saw), a connect timeout.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    client_trusting(&[])
}

/// [`client`], trusting the CA certificates in `ca_pems` (PEM) for HTTPS targets. reqwest
/// is built with rustls and no bundled roots: an HTTPS target is trusted only if one of
/// these issued its certificate (the node passes its cluster CA).
pub fn client_trusting(ca_pems: &[&[u8]]) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
    for pem in ca_pems {
        for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build()
}

/// POSTs a planned request: the run step of every HTTP effect. `effect` names the effect
/// in the failure reason when a plan targets something other than a URL.
pub async fn post_request(
    client: &reqwest::Client,
    effect: &str,
    request: &Request,
    key: &ProposalId,
    limits: &EffectLimits,
) -> Result<Performed, Failed> {
    let Target::Http(url) = &request.target else {
        return Err(Failed {
            reason: format!("{effect} only speaks HTTP"),
            ..Failed::default()
        });
    };
    post(client, url, &request.body, key, limits).await
}

/// POSTs `body` (JSON) to `url`, retrying as the limits allow ([`retry::with_retries`]).
/// Answers the 2xx response, or the failure with everything tried.
pub async fn post(
    client: &reqwest::Client,
    url: &Url,
    body: &[u8],
    key: &ProposalId,
    limits: &EffectLimits,
) -> Result<Performed, Failed> {
    let received = Received::default();
    let target = url.to_string();
    retry::with_retries(&target, body.len() as u64, limits, &received, |attempt| {
        once(client, url, body, key, attempt, limits, &received)
    })
    .await
}

async fn once(
    client: &reqwest::Client,
    url: &Url,
    body: &[u8],
    key: &ProposalId,
    attempt: u32,
    limits: &EffectLimits,
    received: &Received,
) -> Attempt {
    let response = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(IDEMPOTENCY_KEY_HEADER, key.to_hex())
        .header(ATTEMPT_HEADER, attempt.to_string())
        .body(body.to_vec())
        .send()
        .await;
    let mut response = match response {
        Ok(response) => response,
        Err(error) => {
            return Attempt::Retry {
                reason: describe(&error),
                output: None,
            }
        }
    };
    let status = response.status();
    let mut output = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                received.add(chunk.len() as u64);
                if output.len() + chunk.len() > limits.response_bytes_max {
                    return Attempt::Stop {
                        reason: format!(
                            "status {}: response exceeds response_bytes_max {}",
                            status.as_u16(),
                            limits.response_bytes_max
                        ),
                        output: None,
                    };
                }
                output.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(error) => {
                return Attempt::Retry {
                    reason: format!(
                        "status {}: reading the response: {}",
                        status.as_u16(),
                        describe(&error)
                    ),
                    output: None,
                }
            }
        }
    }
    if status.is_success() {
        return Attempt::Done {
            status: status.as_u16(),
            output,
        };
    }
    let reason = format!("status {}", status.as_u16());
    let retryable = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_EARLY
        || status == StatusCode::TOO_MANY_REQUESTS;
    if retryable {
        Attempt::Retry {
            reason,
            output: Some(output),
        }
    } else {
        Attempt::Stop {
            reason,
            output: Some(output),
        }
    }
}

fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    // The source chain says why (refused, reset, ...); keep it short.
    let mut detail = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        bounded(format!("{kind}: {detail}"), 200)
    }
}
