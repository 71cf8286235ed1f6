//! The gate's checks on a planned request, and the rate limiter.
//!
//! The agent runs the gate before every effect, in this order: the entry is admitted (the
//! agent only plans admitted entries), the effect's own planning checks (amount caps, a
//! usable payload), then here: the target (HTTP: allowlist; file: sandbox confinement),
//! the size cap, then the quota (in the journal, counted once per job). A failure is a
//! refusal with its reason, recorded as evidence and reported. The rate limit does not
//! refuse: above the rate the agent waits, and the wait is recorded as `throttled_ms`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Allowlist;
use crate::effect::{Effect, Request, Target};
use crate::sandbox::Sandbox;

/// Checks a request against the allowlist, the sandbox and the size cap.
pub fn check(allowlist: &Allowlist, effect: &dyn Effect, request: &Request) -> Result<(), String> {
    match &request.target {
        Target::Http(url) => {
            if !allowlist.allows(url) {
                return Err(format!("target {url} is not in the allowlist {allowlist}"));
            }
        }
        Target::File { root, path } => {
            let sandbox = Sandbox::at(root)
                .map_err(|e| format!("sandbox {} is not usable: {e}", root.display()))?;
            sandbox.resolve(path).map_err(|e| e.to_string())?;
        }
    }
    let cap = effect.limits().body_bytes_max;
    if request.body.len() > cap {
        return Err(format!(
            "body of {} bytes exceeds body_bytes_max {cap}",
            request.body.len()
        ));
    }
    Ok(())
}

/// Token buckets per effect: `rate` tokens per second, holding at most `rate` tokens.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<BTreeMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    /// Thousandths of a token, so refills need no floats.
    millitokens: u64,
    at: Instant,
}

impl RateLimiter {
    /// Takes one token for `effect`, waiting as long as needed; answers the time waited.
    pub async fn acquire(&self, effect: &str, rate_per_second: u32) -> Duration {
        let rate = u64::from(rate_per_second.max(1));
        let capacity = rate * 1_000;
        let started = Instant::now();
        loop {
            let wait_ms = {
                let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let bucket = buckets.entry(effect.to_owned()).or_insert(Bucket {
                    millitokens: capacity,
                    at: now,
                });
                let elapsed_ms =
                    u64::try_from(now.duration_since(bucket.at).as_millis()).unwrap_or(u64::MAX);
                if elapsed_ms > 0 {
                    bucket.millitokens = bucket
                        .millitokens
                        .saturating_add(elapsed_ms.saturating_mul(rate))
                        .min(capacity);
                    bucket.at = now;
                }
                if bucket.millitokens >= 1_000 {
                    bucket.millitokens -= 1_000;
                    return started.elapsed();
                }
                (1_000 - bucket.millitokens).div_ceil(rate)
            };
            tokio::time::sleep(Duration::from_millis(wait_ms.max(1))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rate_limit_paces_after_the_burst() {
        let limiter = RateLimiter::default();
        for _ in 0..5 {
            assert!(
                limiter.acquire("rail", 5).await < Duration::from_millis(50),
                "burst"
            );
        }
        let waited = limiter.acquire("rail", 5).await;
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(
            limiter.acquire("other", 5).await < Duration::from_millis(50),
            "separate buckets"
        );
    }
}
