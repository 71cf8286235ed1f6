//! The retry loop of every HTTP effect: bounded attempts, exponential backoff, a timeout per
//! attempt and a deadline over all of them.
//!
//! It is generic over how one attempt is sent: the production runner ([`crate::http`],
//! reqwest) and the simulator's rail effect (turmoil TCP) pass their own `send` and share
//! the loop, so both retry, time out and give up alike. The limits are the effect's
//! [`EffectLimits`]: `attempts_max` attempts at most, each cut off after `timeout_ms`, none
//! started (and no backoff slept) past `deadline_ms` from the first, waiting
//! [`backoff_ms`] between two.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::EffectLimits;
use crate::effect::{Failed, Performed};
use crate::evidence::{bounded, Cost, EffectRecord, TARGET_BYTES_MAX};

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx answer with its body: the run succeeded.
    Done { status: u16, output: Vec<u8> },
    /// A failure another attempt may fix (connection errors, 5xx, 408, 425, 429).
    Retry {
        reason: String,
        output: Option<Vec<u8>>,
    },
    /// A failure repeating cannot fix (other 4xx, an unusable response): stop at once.
    Stop {
        reason: String,
        output: Option<Vec<u8>>,
    },
}

/// Bytes received over the attempts of one run. The send adds to it as a response
/// arrives, so an attempt cut off by its timeout still counts what it read.
#[derive(Debug, Default)]
pub struct Received(AtomicU64);

impl Received {
    pub fn add(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Wait before retry number `attempt` (1-based): `backoff_ms * 2^(attempt-1)`, capped.
pub fn backoff_ms(limits: &EffectLimits, attempt: u32) -> u64 {
    let factor = 1u64 << attempt.saturating_sub(1).min(32);
    limits
        .backoff_ms
        .saturating_mul(factor)
        .min(limits.backoff_ms_max)
}

fn record(target: &str, result: String) -> EffectRecord {
    EffectRecord {
        kind: "http_post".into(),
        target: bounded(target.to_owned(), TARGET_BYTES_MAX),
        result,
    }
}

/// Sends a request of `body_bytes` to `target` with `send(attempt)` (1-based) until an
/// attempt is [`Attempt::Done`] or [`Attempt::Stop`], the attempts run out or the deadline
/// comes. Answers what the successful attempt returned, or the failure with every attempt
/// in it. `received` is what the sends counted (a fresh one per run).
pub async fn with_retries<F, Fut>(
    target: &str,
    body_bytes: u64,
    limits: &EffectLimits,
    received: &Received,
    mut send: F,
) -> Result<Performed, Failed>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempt>,
{
    let started = Instant::now();
    let deadline = started + Duration::from_millis(limits.deadline_ms);
    let mut effects = Vec::new();
    let mut cost = Cost::default();
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
        cost.bytes_out += body_bytes;
        let outcome = tokio::time::timeout(timeout, send(attempt))
            .await
            .unwrap_or_else(|_| Attempt::Retry {
                reason: format!("timed out after {} ms", timeout.as_millis()),
                output: None,
            });
        let (reason, retry) = match outcome {
            Attempt::Done { status, output } => {
                effects.push(record(target, format!("status {status}")));
                cost.bytes_in = received.get();
                return Ok(Performed {
                    output,
                    effects,
                    cost,
                });
            }
            Attempt::Retry { reason, output } => {
                last_output = output.or(last_output);
                (reason, true)
            }
            Attempt::Stop { reason, output } => {
                last_output = output.or(last_output);
                (reason, false)
            }
        };
        effects.push(record(target, reason.clone()));
        last_reason = reason;
        if !retry {
            break;
        }
        if attempt < limits.attempts_max {
            let backoff = Duration::from_millis(backoff_ms(limits, attempt));
            if Instant::now() + backoff >= deadline {
                last_reason = format!(
                    "deadline of {} ms reached: {last_reason}",
                    limits.deadline_ms
                );
                break;
            }
            tokio::time::sleep(backoff).await;
        } else {
            last_reason = format!("{attempt} attempts failed, last: {last_reason}");
        }
    }
    cost.bytes_in = received.get();
    Err(Failed {
        reason: last_reason,
        output: last_output,
        effects,
        cost,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    fn limits(attempts_max: u32, timeout_ms: u64, deadline_ms: u64) -> EffectLimits {
        EffectLimits {
            attempts_max,
            timeout_ms,
            deadline_ms,
            backoff_ms: 1,
            backoff_ms_max: 2,
            ..EffectLimits::default()
        }
    }

    fn retry(reason: &str) -> Attempt {
        Attempt::Retry {
            reason: reason.into(),
            output: None,
        }
    }

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

    #[tokio::test]
    async fn retryable_failures_stop_after_attempts_max() {
        let sent = AtomicU32::new(0);
        let received = Received::default();
        let failed = with_retries("t", 10, &limits(3, 1_000, 60_000), &received, |attempt| {
            sent.fetch_add(1, Ordering::Relaxed);
            received.add(5);
            async move { retry(&format!("try {attempt}")) }
        })
        .await
        .expect_err("every attempt fails");
        assert_eq!(
            sent.load(Ordering::Relaxed),
            3,
            "exactly attempts_max sends"
        );
        assert_eq!(failed.cost.attempts, 3);
        assert_eq!(failed.cost.bytes_out, 30);
        assert_eq!(failed.cost.bytes_in, 15);
        assert_eq!(failed.effects.len(), 3, "one record per attempt");
        assert_eq!(failed.reason, "3 attempts failed, last: try 3");
    }

    #[tokio::test]
    async fn a_stop_answer_ends_the_run_at_once() {
        let sent = AtomicU32::new(0);
        let failed = with_retries(
            "t",
            1,
            &limits(5, 1_000, 60_000),
            &Received::default(),
            |_| {
                sent.fetch_add(1, Ordering::Relaxed);
                async {
                    Attempt::Stop {
                        reason: "status 400".into(),
                        output: Some(b"bad".to_vec()),
                    }
                }
            },
        )
        .await
        .expect_err("refused");
        assert_eq!(sent.load(Ordering::Relaxed), 1, "no retry after a stop");
        assert_eq!(failed.reason, "status 400");
        assert_eq!(failed.output, Some(b"bad".to_vec()));
    }

    #[tokio::test]
    async fn success_after_a_retry_keeps_both_records() {
        let performed = with_retries(
            "t",
            1,
            &limits(5, 1_000, 60_000),
            &Received::default(),
            |attempt| async move {
                if attempt == 1 {
                    retry("status 503")
                } else {
                    Attempt::Done {
                        status: 201,
                        output: b"ok".to_vec(),
                    }
                }
            },
        )
        .await
        .expect("second attempt succeeds");
        assert_eq!(performed.output, b"ok".to_vec());
        assert_eq!(performed.cost.attempts, 2);
        let results: Vec<&str> = performed
            .effects
            .iter()
            .map(|e| e.result.as_str())
            .collect();
        assert_eq!(results, vec!["status 503", "status 201"]);
    }

    #[tokio::test]
    async fn slow_attempts_time_out_and_the_deadline_ends_the_run() {
        // Each attempt hangs; it is cut off at 20 ms, and no attempt starts after 70 ms, so
        // a run allowed 1000 attempts makes only a few.
        let sent = AtomicU32::new(0);
        let started = std::time::Instant::now();
        let failed = with_retries("t", 1, &limits(1_000, 20, 70), &Received::default(), |_| {
            sent.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<Attempt>()
        })
        .await
        .expect_err("every attempt hangs");
        let elapsed = started.elapsed();
        let sent = sent.load(Ordering::Relaxed);
        assert!(
            (1..=6).contains(&sent),
            "{sent} attempts in a 70 ms deadline"
        );
        assert!(
            failed
                .reason
                .starts_with("deadline of 70 ms reached: timed out after"),
            "{}",
            failed.reason
        );
        assert!(
            elapsed < Duration::from_millis(1_000),
            "the deadline bounds the run, took {elapsed:?}"
        );
    }
}
