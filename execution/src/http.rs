//! One HTTP POST with bounded retries, exponential backoff, a per-request timeout, an
//! overall deadline, and a bounded read of the response.
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
use tokio::time::Instant;

use crate::config::EffectLimits;
use crate::effect::{Failed, Performed, Request, Target};
use crate::evidence::{bounded, EffectRecord, TARGET_BYTES_MAX};

/// The header carrying the idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// Which attempt of this execution a request is (1-based), for the target's logs.
pub const ATTEMPT_HEADER: &str = "Docket-Attempt";
/// Connect timeout: a target that cannot accept a connection in two seconds is down.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;

/// The HTTP client effects share: no redirects, no proxies from the environment (an
/// `HTTP_PROXY` would send effects somewhere the allowlist never saw), a connect timeout.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .build()
}

enum Try {
    Done(StatusCode, Vec<u8>),
    Retry(String, Option<Vec<u8>>),
    Stop(String, Option<Vec<u8>>),
}

/// POSTs `body` (JSON) to `url`, retrying as the limits allow. Answers the 2xx response, or
/// the failure with everything tried.
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

pub async fn post(
    client: &reqwest::Client,
    url: &Url,
    body: &[u8],
    key: &ProposalId,
    limits: &EffectLimits,
) -> Result<Performed, Failed> {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(limits.deadline_ms);
    let mut effects = Vec::new();
    let mut cost = crate::evidence::Cost::default();
    let mut last_reason = String::from("no attempt fit in the deadline");
    let mut last_output = None;
    for attempt in 1..=limits.attempts_max {
        let now = Instant::now();
        if now >= deadline {
            last_reason = format!(
                "deadline of {} ms reached: {last_reason}",
                limits.deadline_ms
            );
            break;
        }
        let timeout = Duration::from_millis(limits.timeout_ms).min(deadline - now);
        cost.attempts = attempt;
        cost.bytes_out += body.len() as u64;
        let outcome = tokio::time::timeout(
            timeout,
            once(client, url, body, key, attempt, limits, &mut cost),
        )
        .await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(_) => Try::Retry(format!("timed out after {} ms", timeout.as_millis()), None),
        };
        let (result, next) = match outcome {
            Try::Done(status, output) => {
                effects.push(record(url, format!("status {}", status.as_u16())));
                return Ok(Performed {
                    output,
                    effects,
                    cost,
                });
            }
            Try::Retry(reason, output) => {
                last_output = output.or(last_output);
                (reason, true)
            }
            Try::Stop(reason, output) => {
                last_output = output.or(last_output);
                (reason, false)
            }
        };
        effects.push(record(url, result.clone()));
        last_reason = result;
        if !next {
            break;
        }
        if attempt < limits.attempts_max {
            let backoff = backoff_ms(limits, attempt);
            let now = Instant::now();
            if now + Duration::from_millis(backoff) >= deadline {
                last_reason = format!(
                    "deadline of {} ms reached: {last_reason}",
                    limits.deadline_ms
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(backoff)).await;
        } else {
            last_reason = format!("{attempt} attempts failed, last: {last_reason}");
        }
    }
    Err(Failed {
        reason: last_reason,
        output: last_output,
        effects,
        cost,
    })
}

/// Wait before retry number `attempt` (1-based): `backoff_ms * 2^(attempt-1)`, capped.
pub fn backoff_ms(limits: &EffectLimits, attempt: u32) -> u64 {
    let factor = 1u64 << attempt.saturating_sub(1).min(32);
    limits
        .backoff_ms
        .saturating_mul(factor)
        .min(limits.backoff_ms_max)
}

fn record(url: &Url, result: String) -> EffectRecord {
    EffectRecord {
        kind: "http_post".into(),
        target: bounded(url.to_string(), TARGET_BYTES_MAX),
        result,
    }
}

async fn once(
    client: &reqwest::Client,
    url: &Url,
    body: &[u8],
    key: &ProposalId,
    attempt: u32,
    limits: &EffectLimits,
    cost: &mut crate::evidence::Cost,
) -> Try {
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
        Err(error) => return Try::Retry(describe(&error), None),
    };
    let status = response.status();
    let mut output = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                cost.bytes_in += chunk.len() as u64;
                if output.len() + chunk.len() > limits.response_bytes_max {
                    return Try::Stop(
                        format!(
                            "status {}: response exceeds response_bytes_max {}",
                            status.as_u16(),
                            limits.response_bytes_max
                        ),
                        None,
                    );
                }
                output.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(error) => {
                return Try::Retry(
                    format!(
                        "status {}: reading the response: {}",
                        status.as_u16(),
                        describe(&error)
                    ),
                    None,
                )
            }
        }
    }
    if status.is_success() {
        return Try::Done(status, output);
    }
    let reason = format!("status {}", status.as_u16());
    let retryable = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_EARLY
        || status == StatusCode::TOO_MANY_REQUESTS;
    if retryable {
        Try::Retry(reason, Some(output))
    } else {
        Try::Stop(reason, Some(output))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let limits = EffectLimits {
            backoff_ms: 100,
            backoff_ms_max: 350,
            ..EffectLimits::default()
        };
        assert_eq!(backoff_ms(&limits, 1), 100);
        assert_eq!(backoff_ms(&limits, 2), 200);
        assert_eq!(backoff_ms(&limits, 3), 350);
        assert_eq!(backoff_ms(&limits, 60), 350);
    }
}
