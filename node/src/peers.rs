//! The service's [`Peers`] seam over HTTP and TCP: what a node asks other nodes.

use std::time::Duration;

use docket_core::{EntryHash, LedgerIndex};
use docket_raft::NodeId;
use docket_service::{CosignRefusal, PeerHistory, Peers, ReadIndexResponse};
use futures::future::BoxFuture;
use futures::FutureExt;

use crate::api::{FORWARDED_HEADER, GENESIS_HEADER};
use crate::wire::LedgerPage;

/// Other nodes, asked over their HTTP APIs (and Raft ports, for reachability).
#[derive(Debug, Clone)]
pub struct HttpPeers {
    /// This node, named in the `x-docket-forwarded` header of what it asks.
    pub id: NodeId,
    pub http: reqwest::Client,
    /// `https` when the cluster runs TLS, else `http`.
    pub scheme: &'static str,
}

impl HttpPeers {
    /// POSTs `body` to `/v1/internal/{route}` of the node at `api_addr`, as this node. A
    /// non-2xx answer is an error naming the status and body, with the stable code the
    /// body carries (`(code, message)`; no code when it did not answer one).
    async fn post_internal<B: serde::Serialize>(
        &self,
        api_addr: &str,
        route: &str,
        body: &B,
        deadline: Duration,
    ) -> Result<reqwest::Response, (Option<String>, String)> {
        let response = self
            .http
            .post(format!("{}://{api_addr}/v1/internal/{route}", self.scheme))
            .header(FORWARDED_HEADER, self.id.to_string())
            .json(body)
            .timeout(deadline)
            .send()
            .await
            .map_err(|e| (None, e.to_string()))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let code = serde_json::from_str::<crate::wire::ErrorBody>(&body)
                .ok()
                .map(|b| b.code);
            return Err((code, format!("answered {status}: {body}")));
        }
        Ok(response)
    }
}

impl Peers for HttpPeers {
    fn read_index<'a>(
        &'a self,
        leader_api: &'a str,
        genesis: Option<EntryHash>,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<ReadIndexResponse, String>> {
        async move {
            let mut request = self
                .http
                .get(format!(
                    "{}://{leader_api}/v1/internal/read-index",
                    self.scheme
                ))
                .header(FORWARDED_HEADER, self.id.to_string())
                .timeout(deadline);
            if let Some(genesis) = genesis {
                request = request.header(GENESIS_HEADER, genesis.to_string());
            }
            let response = request.send().await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                return Err(format!("the leader answered {status}: {body}"));
            }
            response.json().await.map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn notify_diverged<'a>(
        &'a self,
        api_addr: &'a str,
        note: &'a str,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let body = crate::wire::DivergedRequest {
                note: note.to_owned(),
            };
            self.post_internal(api_addr, "diverged", &body, deadline)
                .await
                .map(|_| ())
                .map_err(|(_, message)| message)
        }
        .boxed()
    }

    fn cosign<'a>(
        &'a self,
        api_addr: &'a str,
        checkpoint: &'a docket_core::checkpoint::Checkpoint,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<docket_core::checkpoint::Cosignature, CosignRefusal>> {
        async move {
            let body = crate::wire::CosignRequest {
                checkpoint: checkpoint.body(),
            };
            let other = |e: String| CosignRefusal::Other(e);
            let response = self
                .post_internal(api_addr, "cosign", &body, deadline)
                .await
                .map_err(|(code, message)| {
                    if code.as_deref() == Some(docket_service::ErrorCode::CheckpointMismatch.name())
                    {
                        CosignRefusal::Mismatch(message)
                    } else {
                        CosignRefusal::Other(message)
                    }
                })?;
            let answer: crate::wire::CosignResponse =
                response.json().await.map_err(|e| other(e.to_string()))?;
            docket_core::checkpoint::Cosignature::parse_line(&answer.cosignature)
                .map_err(|e| other(e.to_string()))
        }
        .boxed()
    }

    fn raft_reachable<'a>(&'a self, raft_addr: &'a str, deadline: Duration) -> BoxFuture<'a, bool> {
        async move {
            // Retried until the deadline: a refused connect returns at once, and a node
            // just started on a loaded machine may not be accepting yet.
            let attempts = async {
                loop {
                    if tokio::net::TcpStream::connect(raft_addr).await.is_ok() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::time::timeout(deadline, attempts).await.is_ok()
        }
        .boxed()
    }

    /// Its status, then (if initialized) its genesis entry, read locally there: a former
    /// member of this cluster rejoining has no leader to ask.
    fn history<'a>(
        &'a self,
        api_addr: &'a str,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<PeerHistory, String>> {
        async move {
            let url = format!("{}://{api_addr}", self.scheme);
            let client = crate::client::Client::with_http(&url, deadline, self.http.clone())
                .map_err(|e| e.to_string())?;
            let status = client
                .status()
                .await
                .map_err(|e| format!("its status: {e}"))?;
            let mut history = PeerHistory {
                node_id: status.node_id,
                cluster_id: status.cluster_id,
                initialized: status.initialized,
                genesis: None,
                cosigner: status.cosigner_key,
            };
            if !status.initialized {
                return Ok(history);
            }
            let url = format!(
                "{}/v1/ledger?from={}&limit=1&consistency=local",
                client.base_url(),
                LedgerIndex(0)
            );
            let page: LedgerPage = async {
                let response = self.http.get(&url).timeout(deadline).send().await?;
                response.error_for_status()?.json().await
            }
            .await
            .map_err(|e: reqwest::Error| format!("its genesis entry: {e}"))?;
            history.genesis = page.entries.first().map(|entry| entry.hash);
            Ok(history)
        }
        .boxed()
    }
}
