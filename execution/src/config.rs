//! `[execution]`: which effects a node's agent performs, where they may go, and their limits.
//!
//! Execution is **off unless configured**: the default section has `enabled = false` and no
//! effects, so a node that says nothing about execution performs nothing. Every limit has a
//! `*_DEFAULT` and a `*_CEILING` constant; [`ExecutionConfig::validate`] refuses values
//! outside `1..=CEILING` with an error naming the dotted field.
//!
//! ```toml
//! [execution]
//! enabled = true
//! key_file = "exec.key"                       # the executor's signing key (role `executor`)
//! allowed_urls = ["http://127.0.0.1:9100/"]   # every HTTP effect's target must match one
//!
//! [execution.rail]                            # SETTLEMENT.PAYOUT_REQUESTED -> payment rail
//! url = "http://127.0.0.1:9100/payouts"
//! amount_max = 1000000
//! limits = { attempts_max = 5, timeout_ms = 2000, quota_max = 1000 }
//!
//! [execution.kes_deploy]                      # KES.VERSION_RATIFIED -> deployment file
//! dir = "deploy"
//!
//! [execution.file_write]                      # FILE.WRITE -> <dir>/<payload.path>
//! dir = "files"
//! limits = { body_bytes_max = 65536 }         # the largest file written
//!
//! [[execution.webhooks]]                      # any other admitted action -> POST of the entry
//! name = "awards"
//! url = "http://127.0.0.1:9100/hooks/awards"
//! on = [{ domain = "auction", action = "AUCTION.AWARDED" }]
//! ```
//!
//! This module depends on nothing in the workspace (serde, std and URL parsing only), so
//! the node's configuration crate can embed [`ExecutionConfig`] as its `[execution]`
//! section without learning about the core.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use reqwest::Url;
use serde::{Deserialize, Serialize};

/// The payment rail reacts to this action of this domain.
pub const RAIL_TRIGGER: (&str, &str) = ("settlement", "SETTLEMENT.PAYOUT_REQUESTED");
/// KES deployment reacts to this action of this domain (only to the entry that completes
/// the ratification quorum).
pub const KES_TRIGGER: (&str, &str) = ("kes", "KES.VERSION_RATIFIED");
/// The generic file write reacts to this action of this domain.
pub const FILE_WRITE_TRIGGER: (&str, &str) = ("file", "FILE.WRITE");
/// Outcome records live in this domain; no effect may react to it, or every outcome would
/// trigger another outcome forever.
pub const OUTCOME_DOMAIN: &str = "execution";

/// Jobs one agent runs at once. Eight overlaps the round trips of a few slow targets; the
/// ledger itself is the queue, so nothing waits in memory beyond this.
pub const JOBS_INFLIGHT_MAX_DEFAULT: usize = 8;
/// Each job holds an HTTP connection or a file handle and a consensus round trip; beyond
/// 256 the agent starves the node it runs on.
pub const JOBS_INFLIGHT_MAX_CEILING: usize = 256;

/// Per-attempt timeout of an HTTP request or file write. Two seconds is generous on a LAN.
pub const TIMEOUT_MS_DEFAULT: u64 = 2_000;
/// A target slower than a minute per attempt is down.
pub const TIMEOUT_MS_CEILING: u64 = 60_000;
/// The time cap of one execution attempt, retries and backoff included.
pub const DEADLINE_MS_DEFAULT: u64 = 20_000;
/// Ten minutes: an agent holding one job longer delays everything behind it.
pub const DEADLINE_MS_CEILING: u64 = 600_000;
/// Requests per execution attempt (the first one plus retries).
pub const ATTEMPTS_MAX_DEFAULT: u32 = 4;
/// Twenty requests is already a hammering; the idempotency key makes each one safe, not free.
pub const ATTEMPTS_MAX_CEILING: u32 = 20;
/// Wait before the first retry; doubles for each further retry up to `backoff_ms_max`.
pub const BACKOFF_MS_DEFAULT: u64 = 100;
pub const BACKOFF_MS_MAX_DEFAULT: u64 = 2_000;
/// A backoff longer than a minute is a deadline in disguise.
pub const BACKOFF_MS_CEILING: u64 = 60_000;
/// Size cap of what one effect sends or writes. An entry's JSON is at most a few times the
/// constitution's 64 KiB payload cap.
pub const BODY_BYTES_MAX_DEFAULT: usize = 256 * 1024;
/// Bodies are built and held in memory whole.
pub const BODY_BYTES_MAX_CEILING: usize = 16 * 1024 * 1024;
/// Response bytes read back from a target (more are not read; the response is refused).
pub const RESPONSE_BYTES_MAX_DEFAULT: usize = 64 * 1024;
pub const RESPONSE_BYTES_MAX_CEILING: usize = 16 * 1024 * 1024;
/// Effects of one kind per quota window. The quota is a circuit breaker against a runaway
/// ledger, not a business limit; ten thousand a day is far above a demo and a small bank.
pub const QUOTA_MAX_DEFAULT: u64 = 10_000;
pub const QUOTA_MAX_CEILING: u64 = 1_000_000_000;
/// Quota window, in ledger time: one day.
pub const QUOTA_WINDOW_MS_DEFAULT: u64 = 86_400_000;
/// A window longer than a year never resets in practice.
pub const QUOTA_WINDOW_MS_CEILING: u64 = 366 * 86_400_000;
/// Effects of one kind started per second (token bucket; the burst is the same number).
/// Above the rate the agent waits: pacing, not refusal.
pub const RATE_PER_SECOND_DEFAULT: u32 = 100;
pub const RATE_PER_SECOND_CEILING: u32 = 100_000;
/// Largest payout the rail adapter sends, in the settlement's minor units.
pub const AMOUNT_MAX_DEFAULT: i64 = i64::MAX;
/// Webhooks per node: each is a rule matched against every admitted entry.
pub const WEBHOOKS_MAX: usize = 64;
/// Actions one webhook reacts to.
pub const WEBHOOK_TRIGGERS_MAX: usize = 64;
/// URL prefixes in the allowlist.
pub const ALLOWED_URLS_MAX: usize = 256;
/// A webhook's name is recorded in every piece of evidence it produces.
pub const NAME_BYTES_MAX: usize = 64;
/// Longest URL accepted anywhere (configuration or payload).
pub const URL_BYTES_MAX: usize = 2048;
/// Whether this build can speak TLS. The workspace builds reqwest without a TLS backend, so
/// an `https` target would validate and then fail on every attempt; it is refused up front.
pub const HTTPS_SUPPORTED: bool = false;

const _: () = assert!(TIMEOUT_MS_DEFAULT <= DEADLINE_MS_DEFAULT);
const _: () = assert!(DEADLINE_MS_DEFAULT <= DEADLINE_MS_CEILING);
const _: () = assert!(ATTEMPTS_MAX_DEFAULT <= ATTEMPTS_MAX_CEILING);
const _: () = assert!(BACKOFF_MS_DEFAULT <= BACKOFF_MS_MAX_DEFAULT);
const _: () = assert!(BACKOFF_MS_MAX_DEFAULT <= BACKOFF_MS_CEILING);
const _: () = assert!(BODY_BYTES_MAX_DEFAULT <= BODY_BYTES_MAX_CEILING);
const _: () = assert!(RESPONSE_BYTES_MAX_DEFAULT <= RESPONSE_BYTES_MAX_CEILING);
const _: () = assert!(QUOTA_MAX_DEFAULT <= QUOTA_MAX_CEILING);
const _: () = assert!(QUOTA_WINDOW_MS_DEFAULT <= QUOTA_WINDOW_MS_CEILING);
const _: () = assert!(RATE_PER_SECOND_DEFAULT <= RATE_PER_SECOND_CEILING);
const _: () = assert!(JOBS_INFLIGHT_MAX_DEFAULT <= JOBS_INFLIGHT_MAX_CEILING);

/// The `[execution]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutionConfig {
    /// Master switch. `false` (the default): the node runs no agent at all.
    pub enabled: bool,
    /// The executor's key file (read by the node; its key must hold role `executor` in the
    /// constitution, or every outcome it files is rejected as unauthorized). Required when
    /// `enabled`.
    pub key_file: Option<PathBuf>,
    /// Directory of the execution journal (a sled database of its own). `None`: the node
    /// picks `<data_dir>/execution`.
    pub journal_dir: Option<PathBuf>,
    /// URL prefixes HTTP effects may reach: same scheme, host and port, and a path that
    /// starts with the prefix's path at a segment boundary. Checked by the gate before every
    /// request, whether the URL came from configuration or from a payload.
    pub allowed_urls: Vec<String>,
    /// Jobs run concurrently.
    pub jobs_inflight_max: usize,
    /// Payment rail for `SETTLEMENT.PAYOUT_REQUESTED`.
    pub rail: Option<RailConfig>,
    /// Deployment files for ratified KES versions.
    pub kes_deploy: Option<KesDeployConfig>,
    /// Files written for admitted `FILE.WRITE` proposals.
    pub file_write: Option<FileWriteConfig>,
    /// Webhooks: POST of the admitted entry's JSON.
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            enabled: false,
            key_file: None,
            journal_dir: None,
            allowed_urls: Vec::new(),
            jobs_inflight_max: JOBS_INFLIGHT_MAX_DEFAULT,
            rail: None,
            kes_deploy: None,
            file_write: None,
            webhooks: Vec::new(),
        }
    }
}

/// `[execution.rail]`: the payment-rail adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RailConfig {
    /// Where payouts are POSTed. Must be in `allowed_urls`.
    pub url: String,
    /// Largest payout amount sent; a larger one is refused (and reported as a rail error).
    #[serde(default = "amount_max_default")]
    pub amount_max: i64,
    #[serde(default)]
    pub limits: EffectLimits,
}

fn amount_max_default() -> i64 {
    AMOUNT_MAX_DEFAULT
}

/// `[execution.kes_deploy]`: the sandboxed file write of KES deployments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KesDeployConfig {
    /// The sandbox: deployment files are written to `<dir>/<kes subject>/<version>.json` and
    /// nowhere else. Created if missing.
    pub dir: PathBuf,
    #[serde(default)]
    pub limits: EffectLimits,
}

/// `[execution.file_write]`: the sandboxed file write of admitted `FILE.WRITE` proposals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWriteConfig {
    /// The sandbox: `payload.contents` is written to `<dir>/<payload.path>` and nowhere
    /// else (no absolute paths, `..` or symbolic links). Created if missing.
    pub dir: PathBuf,
    /// `body_bytes_max` caps the size of a file written (and read back).
    #[serde(default)]
    pub limits: EffectLimits,
}

/// `[[execution.webhooks]]`: POST of admitted entries to a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the webhook in evidence (`webhook/<name>`): `[a-z0-9_-]`, 1-64 bytes, unique.
    pub name: String,
    /// Where entries are POSTed. Must be in `allowed_urls`.
    pub url: String,
    /// If set, a string field of the proposal's payload that, when present, replaces `url`
    /// (e.g. a callback URL chosen by the proposer). The gate checks it against
    /// `allowed_urls` on every entry.
    #[serde(default)]
    pub url_field: Option<String>,
    /// The admitted actions this webhook reacts to.
    pub on: Vec<TriggerConfig>,
    #[serde(default)]
    pub limits: EffectLimits,
}

/// A domain and one of its actions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    pub domain: String,
    pub action: String,
}

/// Limits of one effect. Every field has a default; a table may set any subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EffectLimits {
    /// Timeout of one request or write, in milliseconds.
    pub timeout_ms: u64,
    /// Time cap of one execution attempt, retries and backoff included, in milliseconds.
    pub deadline_ms: u64,
    /// Requests per execution attempt, the first included.
    pub attempts_max: u32,
    /// Wait before the first retry, in milliseconds; doubles per retry.
    pub backoff_ms: u64,
    /// Longest wait between two retries, in milliseconds.
    pub backoff_ms_max: u64,
    /// Size cap of the body sent or the file written, in bytes.
    pub body_bytes_max: usize,
    /// Size cap of a response read back, in bytes.
    pub response_bytes_max: usize,
    /// Effects of this kind per quota window; beyond it the gate refuses.
    pub quota_max: u64,
    /// Quota window in ledger-time milliseconds (windows are aligned to ledger time 0).
    pub quota_window_ms: u64,
    /// Effects of this kind started per second (and burst); beyond it the agent waits.
    pub rate_per_second: u32,
}

impl Default for EffectLimits {
    fn default() -> Self {
        EffectLimits {
            timeout_ms: TIMEOUT_MS_DEFAULT,
            deadline_ms: DEADLINE_MS_DEFAULT,
            attempts_max: ATTEMPTS_MAX_DEFAULT,
            backoff_ms: BACKOFF_MS_DEFAULT,
            backoff_ms_max: BACKOFF_MS_MAX_DEFAULT,
            body_bytes_max: BODY_BYTES_MAX_DEFAULT,
            response_bytes_max: RESPONSE_BYTES_MAX_DEFAULT,
            quota_max: QUOTA_MAX_DEFAULT,
            quota_window_ms: QUOTA_WINDOW_MS_DEFAULT,
            rate_per_second: RATE_PER_SECOND_DEFAULT,
        }
    }
}

/// A configuration value that is well-typed but not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `execution.webhooks[1].url`.
    pub field: String,
    /// What is wrong and, where it is not obvious, why the rule exists.
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl ExecutionConfig {
    /// Checks every rule; the first error names its field (`execution.…`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && self.key_file.is_none() {
            return Err(ConfigError::new(
                "execution.key_file",
                "required when execution.enabled = true: outcome records are signed with \
                 the executor's key",
            ));
        }
        in_range(
            "execution.jobs_inflight_max",
            self.jobs_inflight_max as u64,
            1,
            JOBS_INFLIGHT_MAX_CEILING as u64,
        )?;
        if self.allowed_urls.len() > ALLOWED_URLS_MAX {
            return Err(ConfigError::new(
                "execution.allowed_urls",
                format!("at most {ALLOWED_URLS_MAX} prefixes"),
            ));
        }
        for (i, prefix) in self.allowed_urls.iter().enumerate() {
            parse_url(prefix)
                .map_err(|m| ConfigError::new(format!("execution.allowed_urls[{i}]"), m))?;
        }
        let allowlist = self.allowlist()?;
        // One effect per action: each proposal gets exactly one outcome record.
        let mut claimed: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut claim = |field: String, domain: &str, action: &str| {
            let key = (domain.to_owned(), action.to_owned());
            if let Some(previous) = claimed.get(&key) {
                return Err(ConfigError::new(
                    field,
                    format!(
                        "{domain}/{action} is already handled by {previous}: one effect per \
                         action, because each proposal gets exactly one outcome record"
                    ),
                ));
            }
            claimed.insert(key, field);
            Ok(())
        };
        if let Some(rail) = &self.rail {
            let url =
                parse_url(&rail.url).map_err(|m| ConfigError::new("execution.rail.url", m))?;
            if !allowlist.allows(&url) {
                return Err(not_allowed("execution.rail.url", &rail.url));
            }
            if rail.amount_max < 1 {
                return Err(ConfigError::new(
                    "execution.rail.amount_max",
                    format!("must be at least 1, found {}", rail.amount_max),
                ));
            }
            rail.limits.validate("execution.rail.limits")?;
            claim("execution.rail".into(), RAIL_TRIGGER.0, RAIL_TRIGGER.1)?;
        }
        if let Some(kes) = &self.kes_deploy {
            if kes.dir.as_os_str().is_empty() {
                return Err(ConfigError::new(
                    "execution.kes_deploy.dir",
                    "must not be empty",
                ));
            }
            kes.limits.validate("execution.kes_deploy.limits")?;
            claim("execution.kes_deploy".into(), KES_TRIGGER.0, KES_TRIGGER.1)?;
        }
        if let Some(files) = &self.file_write {
            if files.dir.as_os_str().is_empty() {
                return Err(ConfigError::new(
                    "execution.file_write.dir",
                    "must not be empty",
                ));
            }
            files.limits.validate("execution.file_write.limits")?;
            claim(
                "execution.file_write".into(),
                FILE_WRITE_TRIGGER.0,
                FILE_WRITE_TRIGGER.1,
            )?;
        }
        if self.webhooks.len() > WEBHOOKS_MAX {
            return Err(ConfigError::new(
                "execution.webhooks",
                format!("at most {WEBHOOKS_MAX} webhooks"),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, hook) in self.webhooks.iter().enumerate() {
            let field = |name: &str| format!("execution.webhooks[{i}].{name}");
            check_name(&hook.name).map_err(|m| ConfigError::new(field("name"), m))?;
            if !names.insert(hook.name.as_str()) {
                return Err(ConfigError::new(
                    field("name"),
                    format!("webhook name {:?} is used twice", hook.name),
                ));
            }
            let url = parse_url(&hook.url).map_err(|m| ConfigError::new(field("url"), m))?;
            if !allowlist.allows(&url) {
                return Err(not_allowed(&field("url"), &hook.url));
            }
            if hook.url_field.as_deref().is_some_and(str::is_empty) {
                return Err(ConfigError::new(field("url_field"), "must not be empty"));
            }
            if hook.on.is_empty() || hook.on.len() > WEBHOOK_TRIGGERS_MAX {
                return Err(ConfigError::new(
                    field("on"),
                    format!("list 1 to {WEBHOOK_TRIGGERS_MAX} actions"),
                ));
            }
            for (j, trigger) in hook.on.iter().enumerate() {
                let at = format!("execution.webhooks[{i}].on[{j}]");
                if trigger.domain.is_empty() || trigger.action.is_empty() {
                    return Err(ConfigError::new(at, "domain and action must not be empty"));
                }
                if trigger.domain == OUTCOME_DOMAIN {
                    return Err(ConfigError::new(
                        at,
                        format!(
                            "the {OUTCOME_DOMAIN} domain holds outcome records; an effect on \
                             them would file an outcome about an outcome, forever"
                        ),
                    ));
                }
                claim(at, &trigger.domain, &trigger.action)?;
            }
            hook.limits
                .validate(&format!("execution.webhooks[{i}].limits"))?;
        }
        Ok(())
    }

    /// The parsed allowlist.
    pub fn allowlist(&self) -> Result<Allowlist, ConfigError> {
        let mut prefixes = Vec::with_capacity(self.allowed_urls.len());
        for (i, prefix) in self.allowed_urls.iter().enumerate() {
            prefixes.push(
                parse_url(prefix)
                    .map_err(|m| ConfigError::new(format!("execution.allowed_urls[{i}]"), m))?,
            );
        }
        Ok(Allowlist { prefixes })
    }
}

impl EffectLimits {
    /// Checks every limit; errors name `<at>.<field>`.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let f = |name: &str| format!("{at}.{name}");
        in_range(&f("timeout_ms"), self.timeout_ms, 1, TIMEOUT_MS_CEILING)?;
        in_range(&f("deadline_ms"), self.deadline_ms, 1, DEADLINE_MS_CEILING)?;
        if self.deadline_ms < self.timeout_ms {
            return Err(ConfigError::new(
                f("deadline_ms"),
                format!(
                    "{} is shorter than timeout_ms {}: not even one attempt would fit",
                    self.deadline_ms, self.timeout_ms
                ),
            ));
        }
        in_range(
            &f("attempts_max"),
            u64::from(self.attempts_max),
            1,
            u64::from(ATTEMPTS_MAX_CEILING),
        )?;
        in_range(&f("backoff_ms"), self.backoff_ms, 1, BACKOFF_MS_CEILING)?;
        in_range(
            &f("backoff_ms_max"),
            self.backoff_ms_max,
            1,
            BACKOFF_MS_CEILING,
        )?;
        if self.backoff_ms_max < self.backoff_ms {
            return Err(ConfigError::new(
                f("backoff_ms_max"),
                format!(
                    "{} is less than backoff_ms {}",
                    self.backoff_ms_max, self.backoff_ms
                ),
            ));
        }
        in_range(
            &f("body_bytes_max"),
            self.body_bytes_max as u64,
            1,
            BODY_BYTES_MAX_CEILING as u64,
        )?;
        in_range(
            &f("response_bytes_max"),
            self.response_bytes_max as u64,
            1,
            RESPONSE_BYTES_MAX_CEILING as u64,
        )?;
        in_range(&f("quota_max"), self.quota_max, 1, QUOTA_MAX_CEILING)?;
        in_range(
            &f("quota_window_ms"),
            self.quota_window_ms,
            1,
            QUOTA_WINDOW_MS_CEILING,
        )?;
        in_range(
            &f("rate_per_second"),
            u64::from(self.rate_per_second),
            1,
            u64::from(RATE_PER_SECOND_CEILING),
        )?;
        Ok(())
    }
}

fn in_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::new(
            field,
            format!("must be between {min} and {max}, found {value}"),
        ));
    }
    Ok(())
}

fn not_allowed(field: &str, url: &str) -> ConfigError {
    ConfigError::new(
        field,
        format!("{url} is not under any prefix of execution.allowed_urls"),
    )
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be 1 to {NAME_BYTES_MAX} characters of [a-z0-9_-]"
        ))
    }
}

/// Parses an effect target or allowlist prefix: `http` (or `https` in a TLS build), a host,
/// no credentials, no fragment.
pub fn parse_url(text: &str) -> Result<Url, String> {
    if text.len() > URL_BYTES_MAX {
        return Err(format!("URL is longer than {URL_BYTES_MAX} bytes"));
    }
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    match url.scheme() {
        "http" => {}
        "https" if HTTPS_SUPPORTED => {}
        "https" => {
            return Err(format!(
                "{text}: https is not supported by this build (no TLS client is compiled in)"
            ))
        }
        other => return Err(format!("{text}: scheme {other:?} is not http")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text}: has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{text}: credentials in URLs are refused"));
    }
    if url.fragment().is_some() {
        return Err(format!("{text}: a fragment is meaningless to a server"));
    }
    Ok(url)
}

/// Parsed `allowed_urls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    prefixes: Vec<Url>,
}

impl Allowlist {
    pub fn new(prefixes: Vec<Url>) -> Allowlist {
        Allowlist { prefixes }
    }

    /// Whether `url` is under one of the prefixes: the same scheme, host and port, and a
    /// path equal to the prefix's path or below it at a `/` boundary. A prefix with a query
    /// allows exactly that query.
    pub fn allows(&self, url: &Url) -> bool {
        self.prefixes.iter().any(|prefix| {
            prefix.scheme() == url.scheme()
                && prefix.host_str() == url.host_str()
                && prefix.port_or_known_default() == url.port_or_known_default()
                && url.username().is_empty()
                && url.password().is_none()
                && path_under(prefix.path(), url.path())
                && (prefix.query().is_none() || prefix.query() == url.query())
        })
    }
}

fn path_under(prefix: &str, path: &str) -> bool {
    if prefix == "/" || prefix == path {
        return true;
    }
    let Some(rest) = path.strip_prefix(prefix) else {
        return false;
    };
    // Url normalizes `..` and `.` segments away, so a matching prefix cannot be climbed out of.
    prefix.ends_with('/') || rest.starts_with('/')
}

impl fmt::Display for Allowlist {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let list: Vec<&str> = self.prefixes.iter().map(Url::as_str).collect();
        write!(f, "[{}]", list.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> ExecutionConfig {
        ExecutionConfig {
            enabled: true,
            key_file: Some("exec.key".into()),
            allowed_urls: vec!["http://127.0.0.1:9100/".into()],
            ..ExecutionConfig::default()
        }
    }

    #[test]
    fn default_is_disabled_and_valid() {
        let config = ExecutionConfig::default();
        assert!(!config.enabled);
        assert!(config.rail.is_none() && config.kes_deploy.is_none());
        assert!(config.file_write.is_none());
        assert!(config.webhooks.is_empty());
        config.validate().expect("defaults are valid");
        let parsed: ExecutionConfig = toml::from_str("").expect("an empty section parses");
        assert_eq!(parsed, config);
    }

    #[test]
    fn full_example_parses_and_validates() {
        let text = r#"
            enabled = true
            key_file = "exec.key"
            allowed_urls = ["http://127.0.0.1:9100/"]
            [rail]
            url = "http://127.0.0.1:9100/payouts"
            amount_max = 1000000
            limits = { attempts_max = 5, timeout_ms = 2000, quota_max = 1000 }
            [kes_deploy]
            dir = "deploy"
            [file_write]
            dir = "files"
            limits = { body_bytes_max = 65536 }
            [[webhooks]]
            name = "awards"
            url = "http://127.0.0.1:9100/hooks/awards"
            on = [{ domain = "auction", action = "AUCTION.AWARDED" }]
        "#;
        let config: ExecutionConfig = toml::from_str(text).expect("parses");
        config.validate().expect("valid");
        let rail = config.rail.as_ref().expect("rail");
        assert_eq!(rail.limits.attempts_max, 5);
        assert_eq!(
            rail.limits.backoff_ms, BACKOFF_MS_DEFAULT,
            "unset limits take defaults"
        );
        let files = config.file_write.as_ref().expect("file_write");
        assert_eq!(files.dir, PathBuf::from("files"));
        assert_eq!(files.limits.body_bytes_max, 65536);
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let error = toml::from_str::<ExecutionConfig>("enabeld = true").expect_err("typo");
        assert!(error.to_string().contains("enabeld"), "{error}");
        let error = toml::from_str::<ExecutionConfig>("[rail]\nurl = \"http://a/\"\nretries = 3")
            .expect_err("typo");
        assert!(error.to_string().contains("retries"), "{error}");
        let error = toml::from_str::<ExecutionConfig>(
            "[rail]\nurl = \"http://a/\"\nlimits = { timeout = 3 }",
        )
        .expect_err("typo");
        assert!(error.to_string().contains("timeout"), "{error}");
    }

    #[test]
    fn errors_name_the_field() {
        let mut config = ExecutionConfig {
            key_file: None,
            ..enabled()
        };
        assert_eq!(
            config.validate().expect_err("no key").field,
            "execution.key_file"
        );

        config = enabled();
        config.rail = Some(RailConfig {
            url: "http://10.0.0.1/pay".into(),
            amount_max: 10,
            limits: EffectLimits::default(),
        });
        assert_eq!(
            config.validate().expect_err("not allowed").field,
            "execution.rail.url"
        );

        config = enabled();
        config.rail = Some(RailConfig {
            url: "http://127.0.0.1:9100/pay".into(),
            amount_max: 10,
            limits: EffectLimits {
                attempts_max: 0,
                ..EffectLimits::default()
            },
        });
        assert_eq!(
            config.validate().expect_err("zero attempts").field,
            "execution.rail.limits.attempts_max"
        );

        config = enabled();
        config.kes_deploy = Some(KesDeployConfig {
            dir: "deploy".into(),
            limits: EffectLimits {
                timeout_ms: 5_000,
                deadline_ms: 1_000,
                ..EffectLimits::default()
            },
        });
        assert_eq!(
            config.validate().expect_err("deadline < timeout").field,
            "execution.kes_deploy.limits.deadline_ms"
        );

        config = enabled();
        config.file_write = Some(FileWriteConfig {
            dir: "".into(),
            limits: EffectLimits::default(),
        });
        assert_eq!(
            config.validate().expect_err("empty dir").field,
            "execution.file_write.dir"
        );
        config.file_write = Some(FileWriteConfig {
            dir: "files".into(),
            limits: EffectLimits {
                body_bytes_max: BODY_BYTES_MAX_CEILING + 1,
                ..EffectLimits::default()
            },
        });
        assert_eq!(
            config.validate().expect_err("over the ceiling").field,
            "execution.file_write.limits.body_bytes_max"
        );

        config = enabled();
        config.allowed_urls.push("ftp://example/".into());
        assert_eq!(
            config.validate().expect_err("ftp").field,
            "execution.allowed_urls[1]"
        );

        config = enabled();
        config.allowed_urls.push("https://example/".into());
        let error = config.validate().expect_err("no TLS");
        assert!(error.message.contains("https"), "{error}");
    }

    #[test]
    fn one_effect_per_action_and_none_on_outcomes() {
        let hook = |name: &str, domain: &str, action: &str| WebhookConfig {
            name: name.into(),
            url: "http://127.0.0.1:9100/hook".into(),
            url_field: None,
            on: vec![TriggerConfig {
                domain: domain.into(),
                action: action.into(),
            }],
            limits: EffectLimits::default(),
        };
        let mut config = enabled();
        config.webhooks = vec![
            hook("a", "auction", "AUCTION.AWARDED"),
            hook("b", "auction", "AUCTION.AWARDED"),
        ];
        let error = config.validate().expect_err("claimed twice");
        assert_eq!(error.field, "execution.webhooks[1].on[0]");

        // The file write claims file/FILE.WRITE: a webhook on it is a second effect.
        config.file_write = Some(FileWriteConfig {
            dir: "files".into(),
            limits: EffectLimits::default(),
        });
        config.webhooks = vec![hook("a", "file", "FILE.WRITE")];
        let error = config.validate().expect_err("claimed by file_write");
        assert_eq!(error.field, "execution.webhooks[0].on[0]");
        assert!(error.message.contains("execution.file_write"), "{error}");
        config.file_write = None;

        config.webhooks = vec![hook("a", "execution", "EXECUTION.OUTCOME")];
        assert_eq!(
            config.validate().expect_err("loop").field,
            "execution.webhooks[0].on[0]"
        );

        config.webhooks = vec![
            hook("a", "auction", "AUCTION.AWARDED"),
            hook("a", "tender", "X"),
        ];
        assert_eq!(
            config.validate().expect_err("name twice").field,
            "execution.webhooks[1].name"
        );

        config.webhooks = vec![hook("Bad Name", "auction", "AUCTION.AWARDED")];
        assert_eq!(
            config.validate().expect_err("bad name").field,
            "execution.webhooks[0].name"
        );
    }

    #[test]
    fn allowlist_matches_scheme_host_port_and_path_segments() {
        let list = Allowlist::new(vec![
            parse_url("http://127.0.0.1:9100/hooks").expect("url"),
            parse_url("http://rail.local/").expect("url"),
        ]);
        let allows = |u: &str| list.allows(&Url::parse(u).expect("url"));
        assert!(allows("http://127.0.0.1:9100/hooks"));
        assert!(allows("http://127.0.0.1:9100/hooks/a/b"));
        assert!(!allows("http://127.0.0.1:9100/hooksmith"));
        assert!(!allows("http://127.0.0.1:9101/hooks"));
        assert!(!allows("http://127.0.0.2:9100/hooks"));
        assert!(!allows("http://127.0.0.1:9100/hooks/../admin"));
        assert!(!allows("http://user:pw@127.0.0.1:9100/hooks"));
        assert!(allows("http://rail.local:80/anything"));
        assert!(!allows("http://rail.local.evil/"));
    }
}
