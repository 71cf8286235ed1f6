//! An async HTTP client for one node's API: the CLI, the demo and the bench talk to docket
//! through it.
//!
//! Every method is one request with a deadline ([`REQUEST_TIMEOUT_MS_DEFAULT`] unless
//! configured) and answers the wire type of its route. Failures are split by what the
//! operator must do about them ([`ClientError`]): the node answered with an error (`Api`:
//! nothing was recorded, read the code), the node could not be reached (`Unreachable`: is it
//! running, is the address right), it did not answer in time (`Timeout`: a write may or may
//! not have been recorded), or it answered something that is not docket's API (`Decode`).
//!
//! The client does not follow a 503's leader hint on its own: whether retrying at another
//! node is right is the caller's decision ([`ClientError::leader_hint`] gives the address).

use std::fmt;
use std::time::Duration;

use docket_api::admin::AdminOp;
use docket_api::read_access::SignedRead;
use docket_core::{LedgerId, ProposalId, SignedProposal};
use ed25519_dalek::SigningKey;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use docket_api::wire::{
    AddMemberRequest, AdminRequest, BatchResponse, CheckpointView, Consistency,
    ConsistencyProofView, ConstitutionView, DryRunView, EntryProofView, ErrorBody, ExecutionView,
    ExplainView, HealthView, InclusionProofView, InitRequest, LedgerPage, MembersView,
    PlanDryRunView, PlanResponse, ProposalView, StatusView, SubjectView, SubmitResponse,
};

/// Deadline of one request, connection included, when the caller sets none. Long enough for
/// a write that waits for a quorum and an fsync on a loaded machine; short enough that an
/// operator is not left staring at a hung command.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Largest response body read. A full ledger page of large proposals stays well below it;
/// anything bigger is not an answer from docket, and the client must not buffer it blindly.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Longest piece of an unexpected (non-docket) response body quoted in an error.
const QUOTED_BODY_CHARS_MAX: usize = 200;

/// The default API address of node 1 on one machine.
pub const NODE_URL_DEFAULT: &str = "http://127.0.0.1:8001";

/// Why a request failed, split by what the operator must do about it.
///
/// Each message is one line that names the root cause and the next step, so
/// [`std::error::Error::source`] is `None`: `anyhow`'s `{:#}` would otherwise repeat the cause
/// through reqwest's layers. The transport error stays available in `Unreachable::source`.
#[derive(Debug)]
pub enum ClientError {
    /// The node answered with an error: nothing was recorded (4xx), or it could not serve
    /// the request right now (5xx; a 503 with `leader` says where to go instead).
    Api { status: u16, body: ErrorBody },
    /// No connection could be made (refused, unresolvable): the request was not sent.
    Unreachable { url: String, source: reqwest::Error },
    /// The connection broke after the request was sent and before the whole answer
    /// arrived. A write may or may not have been recorded.
    Interrupted { url: String, source: reqwest::Error },
    /// No complete answer within the deadline. A write may or may not have been recorded.
    Timeout { url: String, timeout_ms: u64 },
    /// The answer is not what docket's API sends: another service, or another version.
    Decode { url: String, message: String },
    /// The node URL itself is unusable.
    InvalidUrl { url: String, message: String },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ClientError::Api { status, body } => {
                write!(
                    f,
                    "docket refused the request (HTTP {status} {}): {}",
                    body.code, body.message
                )?;
                match (&body.leader, status) {
                    (Some(leader), _) => {
                        let url = with_scheme(leader);
                        write!(f, " — the leader is at {url}; retry with --node {url}")
                    }
                    (None, 503) => f.write_str(" — retry shortly"),
                    _ => Ok(()),
                }
            }
            ClientError::Unreachable { url, source } => write!(
                f,
                "cannot reach docket at {url}: {} — is `docket serve` running there, and is \
                 the address right (--node or DOCKET_NODE)?{}",
                root_cause(source),
                tls_hint(url, source)
            ),
            ClientError::Interrupted { url, source } => write!(
                f,
                "the connection to docket at {url} broke before its answer arrived: {} — a \
                 write may or may not have been recorded{}",
                root_cause(source),
                tls_hint(url, source)
            ),
            ClientError::Timeout { url, timeout_ms } => write!(
                f,
                "docket at {url} did not answer within {timeout_ms} ms — the node may be \
                 overloaded or partitioned; a write may or may not have been recorded (raise \
                 --timeout-ms, or check with `docket status`)"
            ),
            ClientError::Decode { url, message } => write!(
                f,
                "unexpected answer from {url}: {message} — is this address a docket node of \
                 the same version as this CLI?"
            ),
            ClientError::InvalidUrl { url, message } => {
                write!(
                    f,
                    "invalid node URL {url:?}: {message} — use http://HOST:PORT"
                )
            }
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The leader's API address a node pointed to when it refused a request (503 with
    /// `NOT_LEADER`), as a URL this client can be built from.
    pub fn leader_hint(&self) -> Option<String> {
        match self {
            ClientError::Api { body, .. } => body.leader.as_deref().map(with_scheme),
            _ => None,
        }
    }

    /// The leader's API address as the node gave it (with `https://` added when this client
    /// speaks HTTPS), for [`Client::at`].
    pub fn leader_address(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => body.leader.as_deref(),
            _ => None,
        }
    }

    /// What kind of failure this is, in a word: the API error code when the node answered
    /// with one (`NO_LEADER`, `TIMEOUT`, ...), else `unreachable`, `interrupted`,
    /// `client_timeout`, `decode` or `invalid_url`. For counting failures by kind.
    pub fn kind(&self) -> &str {
        match self {
            ClientError::Api { body, .. } => &body.code,
            ClientError::Unreachable { .. } => "unreachable",
            ClientError::Interrupted { .. } => "interrupted",
            ClientError::Timeout { .. } => "client_timeout",
            ClientError::Decode { .. } => "decode",
            ClientError::InvalidUrl { .. } => "invalid_url",
        }
    }

    /// The API error code, when the node answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => Some(&body.code),
            _ => None,
        }
    }

    /// True when a write may have been recorded although no answer arrived: a timeout or a
    /// broken connection on the way, the node's own deadline (`TIMEOUT`), or a node that
    /// lost its forwarded request's answer (`OUTCOME_UNKNOWN`). Resubmitting the identical
    /// signed proposal is safe: a duplicate appends nothing.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ClientError::Timeout { .. } | ClientError::Interrupted { .. } => true,
            ClientError::Api { body, .. } => {
                body.code == "TIMEOUT" || body.code == "OUTCOME_UNKNOWN"
            }
            _ => false,
        }
    }
}

/// The innermost error's message: for a refused connection that is the OS's "Connection
/// refused", not reqwest's "error sending request for url".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// A hint when a failure looks like the two ends disagreeing about TLS: plain HTTP
/// answered by a TLS node (its alert is no HTTP), or HTTPS to a plain node or with a
/// certificate the node refused.
fn tls_hint(url: &str, error: &(dyn std::error::Error + 'static)) -> &'static str {
    let cause = root_cause(error);
    if url.starts_with("http://") && cause.contains("invalid HTTP version") {
        " (the node may speak TLS: use https:// and give the cluster CA with --ca)"
    } else if url.starts_with("https://")
        && [
            "certificate",
            "tls",
            "TLS",
            "alert",
            "corrupt message",
            "InvalidContentType",
        ]
        .iter()
        .any(|needle| cause.contains(needle))
    {
        " (a TLS failure: is --ca the cluster's CA, does the node require a client \
         certificate (--client-cert, --client-key), and does it speak TLS at all?)"
    } else {
        ""
    }
}

/// `127.0.0.1:8001` → `http://127.0.0.1:8001`; URLs with a scheme are kept as they are.
fn with_scheme(address: &str) -> String {
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

/// Submissions of one proposal by [`Client::submit_settled`], at most.
pub const SETTLE_ATTEMPTS_MAX: u32 = 20;
/// Pause after the first failed attempt; it doubles up to [`SETTLE_PAUSE_MS_MAX`].
pub const SETTLE_PAUSE_MS_MIN: u64 = 100;
pub const SETTLE_PAUSE_MS_MAX: u64 = 2_000;

/// Why [`Client::submit_settled`] gave up, and whether the proposal may have been recorded
/// anyway (some attempt's outcome was unknown).
#[derive(Debug)]
pub struct SettleFailure {
    pub last: ClientError,
    pub outcome_unknown: bool,
    pub attempts: u32,
}

impl fmt::Display for SettleFailure {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.attempts {
            1 => write!(f, "{}", self.last),
            n => write!(f, "{} (after {n} attempts)", self.last),
        }
    }
}

impl std::error::Error for SettleFailure {}

/// A client for one node's API. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    base: Url,
    http: reqwest::Client,
    timeout: Duration,
    /// Signs every request (`docket_service::read_access`), for a constitution whose read
    /// policy is `roles`.
    read_key: Option<std::sync::Arc<SigningKey>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Client {
    /// A client for the node at `base_url` (`http://127.0.0.1:8001`, or `127.0.0.1:8001` as
    /// members report their addresses) with the default request deadline.
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        Client::with_timeout(base_url, Duration::from_millis(REQUEST_TIMEOUT_MS_DEFAULT))
    }

    /// A client whose every request must complete within `timeout`.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .build()
            .map_err(|error| ClientError::InvalidUrl {
                url: base_url.to_owned(),
                message: format!("cannot set up an HTTP client: {}", root_cause(&error)),
            })?;
        Client::with_http(base_url, timeout, http)
    }

    /// A client over an existing `reqwest::Client`, to share one connection pool among
    /// clients of several nodes (the bench, `docket status`).
    pub fn with_http(
        base_url: &str,
        timeout: Duration,
        http: reqwest::Client,
    ) -> Result<Client, ClientError> {
        let invalid = |message: String| ClientError::InvalidUrl {
            url: base_url.to_owned(),
            message,
        };
        let base = Url::parse(&with_scheme(base_url.trim())).map_err(|e| invalid(e.to_string()))?;
        if base.scheme() != "http" && base.scheme() != "https" {
            return Err(invalid(format!("scheme {:?} is not http", base.scheme())));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("no host".to_owned()));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("a node URL has no query or fragment".to_owned()));
        }
        Ok(Client {
            base,
            http,
            timeout,
            read_key: None,
        })
    }

    /// This client, signing every request as `key` (a reader the constitution names).
    pub fn with_read_key(mut self, key: SigningKey) -> Client {
        self.read_key = Some(std::sync::Arc::new(key));
        self
    }

    /// The node's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A client for another node with the same deadline, sharing the connection pool.
    /// An address without a scheme (as members report theirs) gets this client's scheme,
    /// so a client of a TLS cluster reaches the other members over TLS too.
    pub fn at(&self, base_url: &str) -> Result<Client, ClientError> {
        if base_url.contains("://") {
            return Client::with_http(base_url, self.timeout, self.http.clone())
                .map(|c| c.reading_as(self));
        }
        let url = format!("{}://{}", self.base.scheme(), base_url.trim());
        Client::with_http(&url, self.timeout, self.http.clone()).map(|c| c.reading_as(self))
    }

    fn reading_as(mut self, other: &Client) -> Client {
        self.read_key = other.read_key.clone();
        self
    }

    /// The same node with another request deadline (sharing the connection pool).
    pub fn clone_with_timeout(&self, timeout: Duration) -> Client {
        Client {
            timeout,
            ..self.clone()
        }
    }

    /// `POST /v1/proposals`: submits one signed proposal and answers its recorded entry.
    pub async fn submit(&self, proposal: &SignedProposal) -> Result<SubmitResponse, ClientError> {
        let url = self.url(&["v1", "proposals"], &[]);
        self.call(Method::POST, url, Some(proposal)).await
    }

    /// Submits one signed proposal until its outcome is known: recorded (the entry, from
    /// this node or, as a duplicate, from a resubmission), or refused for certain. The
    /// same signed bytes are resent after an unknown outcome (a timeout, a broken
    /// connection, `TIMEOUT`, `OUTCOME_UNKNOWN`) or while no leader can take them
    /// (unreachable node, `NO_LEADER`, `NOT_LEADER`, `OVERLOADED`), rotating over this node,
    /// the leader a refusal names, and `others` (the cluster's other API addresses), at
    /// most [`SETTLE_ATTEMPTS_MAX`] times within `deadline`. Resending is safe: a proposal's
    /// id is its content, and a duplicate appends nothing. It never re-signs: a new nonce
    /// would make a second proposal.
    pub async fn submit_settled(
        &self,
        proposal: &SignedProposal,
        others: &[String],
        deadline: Duration,
    ) -> Result<SubmitResponse, SettleFailure> {
        let started = tokio::time::Instant::now();
        let mut targets: Vec<Client> = vec![self.clone()];
        for address in others {
            if let Ok(client) = self.at(address) {
                if targets.iter().all(|t| t.base_url() != client.base_url()) {
                    targets.push(client);
                }
            }
        }
        let mut outcome_unknown = false;
        let mut next = 0usize;
        let mut pause = Duration::from_millis(SETTLE_PAUSE_MS_MIN);
        for attempt in 1..=SETTLE_ATTEMPTS_MAX {
            let target = targets[next % targets.len()].clone();
            let error = match target.submit(proposal).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            outcome_unknown |= error.outcome_unknown();
            let retryable = error.outcome_unknown()
                || matches!(error, ClientError::Unreachable { .. })
                || matches!(
                    error.code(),
                    Some("NO_LEADER" | "NOT_LEADER" | "OVERLOADED")
                );
            if !retryable || attempt == SETTLE_ATTEMPTS_MAX || started.elapsed() + pause > deadline
            {
                return Err(SettleFailure {
                    last: error,
                    outcome_unknown,
                    attempts: attempt,
                });
            }
            // Go where the refusal points, else on to the next member.
            match error.leader_address().and_then(|hint| self.at(hint).ok()) {
                Some(leader) => {
                    next = targets
                        .iter()
                        .position(|t| t.base_url() == leader.base_url())
                        .unwrap_or_else(|| {
                            targets.push(leader);
                            targets.len() - 1
                        });
                }
                None => next += 1,
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(SETTLE_PAUSE_MS_MAX));
        }
        unreachable!("invariant: the last attempt returns")
    }

    /// `GET /v1/execution/{id}`: this node's execution evidence for a proposal.
    /// `J` is the job record's type: `serde_json::Value`, or the execution agent's own
    /// (`docket_service::wire::ExecutionView` names it).
    /// `GET /v1/execution?after=&limit=`: a page of this node's execution jobs.
    pub async fn execution_list<J: DeserializeOwned>(
        &self,
        after: Option<ProposalId>,
        limit: u64,
    ) -> Result<docket_api::wire::ExecutionList<J>, ClientError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_hex()));
        }
        let url = self.url(&["v1", "execution"], &query);
        self.call(Method::GET, url, None::<&()>).await
    }

    pub async fn execution<J: DeserializeOwned>(
        &self,
        id: ProposalId,
    ) -> Result<ExecutionView<J>, ClientError> {
        let url = self.url(&["v1", "execution", &id.to_hex()], &[]);
        self.call::<(), _>(Method::GET, url, None).await
    }

    /// `POST /v1/batches`: submits proposals as one log entry; one result per proposal.
    pub async fn submit_batch(
        &self,
        proposals: &[SignedProposal],
    ) -> Result<BatchResponse, ClientError> {
        let url = self.url(&["v1", "batches"], &[]);
        self.call(Method::POST, url, Some(&BatchRequestRef { proposals }))
            .await
    }

    /// `POST /v1/plans`: records a plan in one entry, in the order its set decides.
    pub async fn submit_plan(
        &self,
        proposals: &[SignedProposal],
    ) -> Result<PlanResponse, ClientError> {
        let url = self.url(&["v1", "plans"], &[]);
        self.call(Method::POST, url, Some(&BatchRequestRef { proposals }))
            .await
    }

    /// `POST /v1/plans/dry-run`: what recording the plan now would decide, recording
    /// nothing.
    pub async fn dry_run_plan(
        &self,
        proposals: &[SignedProposal],
    ) -> Result<PlanDryRunView, ClientError> {
        let url = self.url(&["v1", "plans", "dry-run"], &[]);
        self.call(Method::POST, url, Some(&BatchRequestRef { proposals }))
            .await
    }

    /// `GET /v1/proposals/{id}`: every entry recorded for the id.
    pub async fn proposal(&self, id: ProposalId) -> Result<ProposalView, ClientError> {
        let url = self.url(&["v1", "proposals", &id.to_hex()], &[]);
        self.call(Method::GET, url, None::<&()>).await
    }

    /// `GET /v1/proposals/{id}/explain`: why the proposal stands where it does — the failed
    /// check and the data it read, the dependency tree of a deferral, or the admission —
    /// with the answering node's execution record in brief.
    pub async fn explain(&self, id: ProposalId) -> Result<ExplainView, ClientError> {
        let url = self.url(&["v1", "proposals", &id.to_hex(), "explain"], &[]);
        self.call(Method::GET, url, None::<&()>).await
    }

    /// `GET /v1/ledger?from=&limit=`: up to `limit` entries from index `from`.
    pub async fn ledger(&self, from: u64, limit: u64) -> Result<LedgerPage, ClientError> {
        let url = self.url(
            &["v1", "ledger"],
            &[("from", from.to_string()), ("limit", limit.to_string())],
        );
        self.call(Method::GET, url, None::<&()>).await
    }

    /// `GET /v1/state/{domain}/{subject}?consistency=`.
    pub async fn state(
        &self,
        domain: &str,
        subject: &str,
        consistency: Consistency,
    ) -> Result<SubjectView, ClientError> {
        let consistency = match consistency {
            Consistency::Linearizable => "linearizable",
            Consistency::Local => "local",
        };
        let url = self.url(
            &["v1", "state", domain, subject],
            &[("consistency", consistency.to_owned())],
        );
        self.call(Method::GET, url, None::<&()>).await
    }

    /// `GET /v1/constitution`.
    pub async fn constitution(&self) -> Result<ConstitutionView, ClientError> {
        let url = self.url(&["v1", "constitution"], &[]);
        self.call(Method::GET, url, None::<&()>).await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusView, ClientError> {
        let url = self.url(&["v1", "status"], &[]);
        self.call(Method::GET, url, None::<&()>).await
    }

    /// `GET /metrics`: the node's metrics in Prometheus's text format. A read like the
    /// others (the constitution's read policy applies; see README "Metrics and logs").
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let url = self.url(&["metrics"], &[]);
        let (_, bytes) = self
            .call_bytes(Method::GET, url.clone(), None::<&()>)
            .await?;
        String::from_utf8(bytes).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            message: format!("the metrics are not UTF-8: {e}"),
        })
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<HealthView, ClientError> {
        let url = self.url(&["v1", "health"], &[]);
        self.call(Method::GET, url, None::<&()>).await
    }

    /// `POST /v1/cluster/init`: writes the genesis entry.
    pub async fn init(&self, request: InitRequest) -> Result<StatusView, ClientError> {
        let url = self.url(&["v1", "cluster", "init"], &[]);
        self.call(Method::POST, url, Some(&request)).await
    }

    /// `POST /v1/cluster/init` with `constitution` (the node's genesis document when
    /// absent: its `--genesis-constitution`, else the built-in default), signed as `key`.
    pub async fn init_as(
        &self,
        constitution: Option<String>,
        key: &SigningKey,
    ) -> Result<StatusView, ClientError> {
        let document = constitution
            .as_deref()
            .unwrap_or(docket_core::constitution::DEFAULT_DOCUMENT);
        let version = docket_api::admin::constitution_version(document).map_err(|message| {
            ClientError::Decode {
                url: self.base.to_string(),
                message,
            }
        })?;
        let status = self.status().await?;
        let op = AdminOp::Init {
            constitution: version,
            node: status.node_id,
            cosigner: self.cosigner_key(&status)?,
        };
        let authority = self.sign_admin_for(&status, &op, key)?;
        self.init(InitRequest {
            constitution,
            authority: Some(authority),
        })
        .await
    }

    /// Signs `op` as `key` for this node's cluster (its cluster id is the ledger id),
    /// issued now by this machine's clock.
    pub async fn sign_admin(
        &self,
        op: &AdminOp,
        key: &SigningKey,
    ) -> Result<SignedProposal, ClientError> {
        let status = self.status().await?;
        self.sign_admin_for(&status, op, key)
    }

    /// [`Client::sign_admin`] with this node's status already read.
    fn sign_admin_for(
        &self,
        status: &StatusView,
        op: &AdminOp,
        key: &SigningKey,
    ) -> Result<SignedProposal, ClientError> {
        let ledger = LedgerId::new(status.cluster_id.clone()).map_err(|e| ClientError::Decode {
            url: self.base.to_string(),
            message: format!("the node reports an invalid cluster id: {e}"),
        })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let nonce = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        let issued_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        Ok(op.sign(&ledger, issued_ms, nonce, key))
    }

    /// The checkpoint key a node's status shows.
    fn cosigner_key(&self, status: &StatusView) -> Result<docket_core::PublicKey, ClientError> {
        status.cosigner_key.ok_or_else(|| ClientError::Decode {
            url: self.base.to_string(),
            message: "the node's status shows no cosigner key (is it an older docket?)".into(),
        })
    }

    /// `POST /v1/proposals/dry-run`: the decision the constitution would record now.
    pub async fn dry_run(&self, proposal: &SignedProposal) -> Result<DryRunView, ClientError> {
        let url = self.url(&["v1", "proposals", "dry-run"], &[]);
        self.call(Method::POST, url, Some(proposal)).await
    }

    /// `GET /v1/checkpoint`: a final checkpoint of the node's newest ledger size.
    pub async fn checkpoint(&self) -> Result<CheckpointView, ClientError> {
        let url = self.url(&["v1", "checkpoint"], &[]);
        self.call(Method::GET, url, None::<&()>).await
    }

    /// `GET /v1/checkpoint/{size}`: a final checkpoint the node gathered before.
    pub async fn checkpoint_at(&self, size: u64) -> Result<CheckpointView, ClientError> {
        let url = self.url(&["v1", "checkpoint", &size.to_string()], &[]);
        self.call(Method::GET, url, None::<&()>).await
    }

    /// `GET /v1/proofs/inclusion?index=I&size=N`.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<InclusionProofView, ClientError> {
        let url = self.url(
            &["v1", "proofs", "inclusion"],
            &[("index", index.to_string()), ("size", size.to_string())],
        );
        self.call(Method::GET, url, None::<&()>).await
    }

    /// `GET /v1/proofs/entry?index=I&size=N`: the entry and its audit path, one request.
    pub async fn entry_proof(&self, index: u64, size: u64) -> Result<EntryProofView, ClientError> {
        let url = self.url(
            &["v1", "proofs", "entry"],
            &[("index", index.to_string()), ("size", size.to_string())],
        );
        self.call(Method::GET, url, None::<&()>).await
    }

    /// `GET /v1/proofs/consistency?from=M&to=N`.
    /// `GET /v1/proofs/state` with `params` (`domain` and `subject`, or `proposal`): a
    /// state row and its proof, unchecked ([`state_proof::verified_row`] checks it).
    pub async fn state_proof(
        &self,
        params: &[(&str, String)],
    ) -> Result<docket_api::wire::StateProofView, ClientError> {
        let url = self.url(&["v1", "proofs", "state"], params);
        self.call(Method::GET, url, None::<&()>).await
    }

    pub async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProofView, ClientError> {
        let url = self.url(
            &["v1", "proofs", "consistency"],
            &[("from", from.to_string()), ("to", to.to_string())],
        );
        self.call(Method::GET, url, None::<&()>).await
    }

    /// `GET /v1/cluster/members`.
    pub async fn members(&self) -> Result<MembersView, ClientError> {
        let url = self.url(&["v1", "cluster", "members"], &[]);
        self.call(Method::GET, url, None::<&()>).await
    }

    /// `POST /v1/cluster/members` with a signed `CLUSTER.MEMBER_ADD` (`authority`): adds
    /// a node as a learner, and promotes it to voter once caught up unless the request
    /// asks for a learner.
    pub async fn add_member(
        &self,
        authority: Option<SignedProposal>,
    ) -> Result<MembersView, ClientError> {
        let url = self.url(&["v1", "cluster", "members"], &[]);
        self.call(Method::POST, url, Some(&AdminRequest { authority }))
            .await
    }

    /// [`Client::add_member`], signed as `key`. The new node's cosigner key is read from
    /// its status (at `request.api_addr`) and declared in the request.
    pub async fn add_member_as(
        &self,
        request: AddMemberRequest,
        key: &SigningKey,
    ) -> Result<MembersView, ClientError> {
        let new = self.at(&request.api_addr)?;
        let status = new.status().await?;
        if status.node_id != request.id {
            return Err(ClientError::Decode {
                url: new.base.to_string(),
                message: format!(
                    "the node at {} is node {}, not node {}",
                    request.api_addr, status.node_id, request.id
                ),
            });
        }
        let cosigner = new.cosigner_key(&status)?;
        let op = AdminOp::MemberAdd {
            node: request.id,
            raft_addr: request.raft_addr,
            api_addr: request.api_addr,
            learner: request.learner,
            cosigner,
        };
        let authority = self.sign_admin(&op, key).await?;
        self.add_member(Some(authority)).await
    }

    /// `POST /v1/cluster/members/{id}/promote` with a signed `CLUSTER.MEMBER_PROMOTE`.
    pub async fn promote(
        &self,
        id: u64,
        authority: Option<SignedProposal>,
    ) -> Result<MembersView, ClientError> {
        let url = self.url(
            &["v1", "cluster", "members", &id.to_string(), "promote"],
            &[],
        );
        self.call(Method::POST, url, Some(&AdminRequest { authority }))
            .await
    }

    /// [`Client::promote`], signed as `key`.
    pub async fn promote_as(&self, id: u64, key: &SigningKey) -> Result<MembersView, ClientError> {
        let authority = self
            .sign_admin(&AdminOp::MemberPromote { node: id }, key)
            .await?;
        self.promote(id, Some(authority)).await
    }

    /// `DELETE /v1/cluster/members/{id}` with a signed `CLUSTER.MEMBER_REMOVE`.
    pub async fn remove_member(
        &self,
        id: u64,
        authority: Option<SignedProposal>,
    ) -> Result<MembersView, ClientError> {
        let url = self.url(&["v1", "cluster", "members", &id.to_string()], &[]);
        self.call(Method::DELETE, url, Some(&AdminRequest { authority }))
            .await
    }

    /// [`Client::remove_member`], signed as `key`.
    pub async fn remove_member_as(
        &self,
        id: u64,
        key: &SigningKey,
    ) -> Result<MembersView, ClientError> {
        let authority = self
            .sign_admin(&AdminOp::MemberRemove { node: id }, key)
            .await?;
        self.remove_member(id, Some(authority)).await
    }

    /// The base URL with `segments` appended (each percent-encoded, so a subject containing
    /// `/` or `?` stays one segment) and `query` set.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .expect("invariant: the base URL was checked to be a base");
            path.pop_if_empty();
            path.extend(segments);
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
        }
        url
    }

    /// A request to `url`, signed for reads when the client has a read key (no deadline yet).
    fn request(&self, method: &Method, url: &Url) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(key) = &self.read_key {
            let target = match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let time_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
            let signed = SignedRead::sign(key, method.as_str(), &target, time_ms);
            for (name, value) in signed.headers() {
                request = request.header(name, value);
            }
        }
        request
    }

    /// `GET /v1/ledger/watch?from=`: the change feed, from `from` (or, with `None`, from the
    /// node's current length). The stream has no overall deadline; [`Watch::next_entry`]
    /// gives up after [`WATCH_IDLE_MS`] without a line (the node sends a keep-alive line
    /// more often than that), so the caller can reconnect from where it was.
    pub async fn watch(&self, from: Option<u64>) -> Result<Watch, ClientError> {
        let query: Vec<(&str, String)> =
            from.map(|f| ("from", f.to_string())).into_iter().collect();
        let url = self.url(&["v1", "ledger", "watch"], &query);
        let send = self.request(&Method::GET, &url).send();
        let mut response = tokio::time::timeout(self.timeout, send)
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.to_string(),
                timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            })?
            .map_err(|e| self.transport_error(&url, e))?;
        let status = response.status();
        if !status.is_success() {
            let bytes = read_body(&mut response).await.unwrap_or_default();
            return Err(ClientError::Api {
                status: status.as_u16(),
                body: error_body(status, &bytes),
            });
        }
        Ok(Watch {
            url: url.to_string(),
            response,
            buffer: Vec::new(),
        })
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.call_bytes(method, url.clone(), body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            message: format!("HTTP {status} with a body that does not parse: {e}"),
        })
    }

    /// [`Client::call`] up to the body of a successful answer, unparsed.
    async fn call_bytes<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), ClientError> {
        let mut request = self.request(&method, &url).timeout(self.timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| self.transport_error(&url, e))?;
        let status = response.status();
        let bytes = read_body(&mut response)
            .await
            .map_err(|error| match error {
                BodyError::Transport(e) => self.transport_error(&url, e),
                BodyError::TooLarge => ClientError::Decode {
                    url: url.to_string(),
                    message: format!("the response is larger than {RESPONSE_BYTES_MAX} bytes"),
                },
            })?;
        if status.is_success() {
            Ok((status, bytes))
        } else {
            let mut body = error_body(status, &bytes);
            // Nodes name the leader by address; over HTTPS the hint must say https, or
            // following it would speak plain HTTP to a TLS port.
            if let Some(leader) = body.leader.as_mut() {
                if !leader.contains("://") && self.base.scheme() == "https" {
                    *leader = format!("https://{leader}");
                }
            }
            Err(ClientError::Api {
                status: status.as_u16(),
                body,
            })
        }
    }

    fn transport_error(&self, url: &Url, error: reqwest::Error) -> ClientError {
        if error.is_timeout() {
            ClientError::Timeout {
                url: url.to_string(),
                timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            }
        } else if !error.is_connect() {
            ClientError::Interrupted {
                url: url.to_string(),
                source: error,
            }
        } else {
            ClientError::Unreachable {
                url: self.base_url().to_owned(),
                source: error,
            }
        }
    }
}

/// How long [`Watch::next_entry`] waits for a line (an entry or the node's keep-alive)
/// before it calls the stream dead.
pub const WATCH_IDLE_MS: u64 = 30_000;
/// Longest line of a change feed: one entry's JSON.
pub const WATCH_LINE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// An open change feed ([`Client::watch`]).
#[derive(Debug)]
pub struct Watch {
    url: String,
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl Watch {
    /// The next committed entry, in index order; `None` when the node closed the stream.
    pub async fn next_entry(&mut self) -> Result<Option<docket_core::LedgerEntry>, ClientError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue; // keep-alive
                }
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|e| ClientError::Decode {
                        url: self.url.clone(),
                        message: format!("a change-feed line does not parse: {e}"),
                    });
            }
            if self.buffer.len() > WATCH_LINE_BYTES_MAX {
                return Err(ClientError::Decode {
                    url: self.url.clone(),
                    message: format!("a change-feed line is over {WATCH_LINE_BYTES_MAX} bytes"),
                });
            }
            let idle = std::time::Duration::from_millis(WATCH_IDLE_MS);
            match tokio::time::timeout(idle, self.response.chunk()).await {
                Err(_) => {
                    return Err(ClientError::Timeout {
                        url: self.url.clone(),
                        timeout_ms: WATCH_IDLE_MS,
                    })
                }
                Ok(Err(e)) => {
                    return Err(ClientError::Interrupted {
                        url: self.url.clone(),
                        source: e,
                    })
                }
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(chunk))) => self.buffer.extend_from_slice(&chunk),
            }
        }
    }
}

/// [`BatchRequest`](docket_api::wire::BatchRequest) by reference, so a batch is serialized without
/// cloning its proposals.
/// `batch_request_ref_has_the_wire_shape` holds the two together.
#[derive(Serialize)]
struct BatchRequestRef<'a> {
    proposals: &'a [SignedProposal],
}

enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

async fn read_body(response: &mut reqwest::Response) -> Result<Vec<u8>, BodyError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if bytes.len() + chunk.len() > RESPONSE_BYTES_MAX {
            return Err(BodyError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The node's `{code, message}`, or one made up for an error that did not come from
/// docket's handlers (a proxy, a route this version does not know).
fn error_body(status: StatusCode, bytes: &[u8]) -> ErrorBody {
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(bytes) {
        return body;
    }
    let text: String = String::from_utf8_lossy(bytes)
        .trim()
        .chars()
        .take(QUOTED_BODY_CHARS_MAX)
        .collect();
    let message = if text.is_empty() {
        format!(
            "{} with no docket error body (is this a docket node of the same version?)",
            status.canonical_reason().unwrap_or("error")
        )
    } else {
        text
    };
    ErrorBody {
        code: format!("HTTP_{}", status.as_u16()),
        message,
        leader: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use docket_api::wire::BatchRequest;

    fn client(base: &str) -> Client {
        Client::new(base).expect("valid base URL")
    }

    #[test]
    fn urls_are_built_with_encoded_segments_and_queries() {
        let c = client("http://127.0.0.1:8001");
        assert_eq!(c.base_url(), "http://127.0.0.1:8001");
        assert_eq!(
            c.url(
                &["v1", "state", "settlement", "stl/1 ?x"],
                &[("consistency", "local".into())]
            )
            .as_str(),
            "http://127.0.0.1:8001/v1/state/settlement/stl%2F1%20%3Fx?consistency=local"
        );
        assert_eq!(
            c.url(
                &["v1", "ledger"],
                &[("from", "5".into()), ("limit", "100".into())]
            )
            .as_str(),
            "http://127.0.0.1:8001/v1/ledger?from=5&limit=100"
        );
        // A member's bare address and a base with a path prefix both work.
        assert_eq!(
            client("127.0.0.1:8002/")
                .url(&["v1", "status"], &[])
                .as_str(),
            "http://127.0.0.1:8002/v1/status"
        );
        assert_eq!(
            client("http://proxy/docket/")
                .url(&["v1", "status"], &[])
                .as_str(),
            "http://proxy/docket/v1/status"
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for bad in ["", "ftp://host", "http://host/?q=1", "http://"] {
            let error = Client::new(bad).expect_err(bad);
            assert!(
                matches!(error, ClientError::InvalidUrl { .. }),
                "{bad}: {error}"
            );
            assert!(error.to_string().contains("http://HOST:PORT"), "{error}");
        }
    }

    #[test]
    fn api_errors_carry_the_leader_hint() {
        let error = ClientError::Api {
            status: 503,
            body: ErrorBody {
                code: "NOT_LEADER".into(),
                message: "node 2 is not the leader".into(),
                leader: Some("127.0.0.1:8001".into()),
            },
        };
        let text = error.to_string();
        assert!(text.contains("HTTP 503 NOT_LEADER"), "{text}");
        assert!(
            text.contains("retry with --node http://127.0.0.1:8001"),
            "{text}"
        );
        assert_eq!(
            error.leader_hint().as_deref(),
            Some("http://127.0.0.1:8001")
        );
        assert_eq!(error.code(), Some("NOT_LEADER"));
        assert!(!error.outcome_unknown());
    }

    #[test]
    fn non_docket_error_bodies_are_described() {
        let body = error_body(StatusCode::NOT_FOUND, b"");
        assert_eq!(body.code, "HTTP_404");
        assert!(body.message.contains("Not Found"), "{}", body.message);
        let body = error_body(StatusCode::PAYLOAD_TOO_LARGE, b"length limit exceeded");
        assert_eq!(body.message, "length limit exceeded");
        let json = br#"{"code":"BAD_SIGNATURE","message":"nope"}"#;
        assert_eq!(
            error_body(StatusCode::BAD_REQUEST, json).code,
            "BAD_SIGNATURE"
        );
    }

    #[test]
    fn batch_request_ref_has_the_wire_shape() {
        let key = docket_core::dev::signing_key("alice");
        let ledger = docket_core::LedgerId::new("test").expect("valid");
        let proposal = docket_core::dev::proposal(
            &ledger,
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "stl-1",
            docket_core::Value::map([("amount", docket_core::Value::Int(1))]),
            vec![],
            1,
        );
        assert_eq!(
            proposal.proposal.author,
            docket_core::proposal::public_key(&key)
        );
        let proposals = vec![proposal];
        let by_ref = serde_json::to_value(BatchRequestRef {
            proposals: &proposals,
        })
        .expect("serializes");
        let owned = serde_json::to_value(BatchRequest { proposals }).expect("serializes");
        assert_eq!(by_ref, owned);
        serde_json::from_value::<BatchRequest>(by_ref).expect("the server's type parses it");
    }

    #[tokio::test]
    async fn a_refused_connection_says_what_to_do() {
        // Bind and drop a listener to find a port with nothing on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("ephemeral port")
            .port();
        let c = client(&format!("http://127.0.0.1:{port}"));
        let error = c.status().await.expect_err("nothing listens");
        let text = error.to_string();
        assert!(matches!(error, ClientError::Unreachable { .. }), "{text}");
        assert!(text.starts_with(&format!("cannot reach docket at http://127.0.0.1:{port}: ")));
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(text.contains("is `docket serve` running"), "{text}");
    }

    #[tokio::test]
    async fn a_connection_broken_after_the_request_is_an_unknown_outcome() {
        // A listener that reads the request, then closes the connection without answering:
        // the request reached the server, so a write may have been recorded.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer).await;
            drop(stream);
        });
        let c = client(&format!("http://127.0.0.1:{port}"));
        let error = c.status().await.expect_err("no answer");
        let text = error.to_string();
        assert!(matches!(error, ClientError::Interrupted { .. }), "{text}");
        assert!(error.outcome_unknown(), "{text}");
        assert!(text.contains("may or may not have been recorded"), "{text}");
        server.await.expect("server task");
    }

    /// A listener that reads each request and drops the connection without answering.
    async fn black_hole(connections: usize) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            for _ in 0..connections {
                let (mut stream, _) = listener.accept().await.expect("accept");
                let mut buffer = [0u8; 8192];
                let _ = stream.read(&mut buffer).await;
            }
        });
        (url, task)
    }

    #[tokio::test]
    async fn settling_resends_the_same_proposal_and_remembers_an_unknown_outcome() {
        // First target: the request arrives and the answer is lost. Second: nothing
        // listens. The loop rotates between them and gives up within its deadline, saying
        // the proposal may have been recorded (the first attempt's outcome is unknown).
        let (lossy, server) = black_hole(1).await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("ephemeral port")
            .port();
        let dead = format!("http://127.0.0.1:{port}");
        let ledger = docket_core::LedgerId::new("settle").expect("ledger id");
        let proposal = docket_core::dev::proposal(
            &ledger,
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "settle-1",
            docket_core::Value::map([("amount", docket_core::Value::Int(5))]),
            vec![],
            1,
        );
        let c = client(&lossy);
        let failure = c
            .submit_settled(
                &proposal,
                std::slice::from_ref(&dead),
                Duration::from_millis(1_000),
            )
            .await
            .expect_err("no node can answer");
        assert!(failure.outcome_unknown, "{failure}");
        assert!(failure.attempts >= 2, "{failure}");
        assert!(
            matches!(failure.last, ClientError::Unreachable { .. }),
            "the second target is tried: {failure}"
        );
        server.await.expect("server task");
    }

    #[tokio::test]
    async fn a_silent_node_times_out() {
        // A listener that accepts (the kernel backlog does) but never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let c = Client::with_timeout(&format!("127.0.0.1:{port}"), Duration::from_millis(200))
            .expect("client");
        let error = c.health().await.expect_err("no answer");
        assert!(
            matches!(
                error,
                ClientError::Timeout {
                    timeout_ms: 200,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.outcome_unknown());
        assert!(error.to_string().contains("within 200 ms"), "{error}");
        drop(listener);
    }
}

pub mod amendment;
pub mod state_proof;
pub mod verify;
