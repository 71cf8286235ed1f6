//! A cluster of real `docket serve` processes on loopback, for `docket demo`, `docket
//! bench` and the integration tests: start, initialize, add members, SIGKILL, restart,
//! wait for convergence, clean up. Each node has its own data directory and ports.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

use crate::client::Client;
use crate::wire::{AddMemberRequest, StatusView};

/// The key local clusters sign cluster operations with: the default constitution's
/// development operator (`docket_core::dev::OPERATOR`), which anyone can derive.
pub fn operator_key() -> ed25519_dalek::SigningKey {
    docket_core::dev::signing_key(docket_core::dev::OPERATOR)
}

/// How long a node may take to start answering its API.
pub const NODE_START_TIMEOUT_MS: u64 = 20_000;

/// Starts of one node tried when its port was taken between choosing it and binding it
/// (another process on the machine, e.g. a parallel test, took it meanwhile), or when a
/// node that never ran exits during its first start (each such exit is reported on stderr
/// with the node's log; a deterministic cause, a bad configuration say, fails every try).
pub const START_ATTEMPTS_MAX: u32 = 3;
/// How long the cluster may take to elect a leader or converge after a fault.
pub const CONVERGE_TIMEOUT_MS: u64 = 30_000;

/// One `docket serve` child process and where it listens.
#[derive(Debug)]
pub struct LocalNode {
    pub id: u64,
    pub raft_addr: String,
    pub api_addr: String,
    pub data_dir: PathBuf,
    child: Option<Child>,
    /// It has answered once: its addresses may be in a cluster's membership now.
    started: bool,
    /// The cluster's HTTPS client (trusting its CA, presenting its client certificate),
    /// when it runs TLS.
    https: Option<reqwest::Client>,
}

impl LocalNode {
    /// The request that adds this node as a voter (`member add` with its addresses).
    pub fn add_request(&self) -> AddMemberRequest {
        AddMemberRequest {
            id: self.id,
            raft_addr: self.raft_addr.clone(),
            api_addr: self.api_addr.clone(),
            learner: false,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.https.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.api_addr)
    }

    pub fn client(&self) -> Client {
        match &self.https {
            Some(http) => Client::with_http(
                &self.url(),
                std::time::Duration::from_millis(crate::client::REQUEST_TIMEOUT_MS_DEFAULT),
                http.clone(),
            ),
            None => Client::new(&self.url()),
        }
        .expect("invariant: a loopback URL is valid")
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The running process's id (for `/proc` figures: memory in `docket bench --mode grow`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|child| child.id())
    }

    /// Where the node's stderr (its log) goes; a restart appends to it.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }
}

/// A set of local nodes sharing a cluster id.
#[derive(Debug)]
pub struct LocalCluster {
    pub cluster_id: String,
    pub root: PathBuf,
    pub nodes: Vec<LocalNode>,
    binary: PathBuf,
    /// Extra `docket serve` arguments (e.g. raft timing for tests).
    extra_args: Vec<String>,
    /// `DOCKET_*` variables (or any others) set for every node, on top of the parent's
    /// environment with its `DOCKET_*` configuration variables removed.
    extra_env: Vec<(String, String)>,
    /// TOML written to each node's config file (`--config`), e.g. an `[execution]` section;
    /// `{node}` is replaced with the node id.
    config_toml: Option<String>,
    /// TLS for every node and client, when [`LocalCluster::with_tls`] was called.
    tls: Option<LocalTls>,
}

/// A local cluster's certificates: `docket tls init`'s files in `dir`.
#[derive(Debug, Clone)]
pub struct LocalTls {
    pub dir: PathBuf,
    /// `tls.reload_poll_ms` of every node.
    pub reload_poll_ms: u64,
    /// `tls.require_client_cert` of every node.
    pub require_client_cert: bool,
    /// Trusts the cluster CA and presents `client.pem`.
    pub http: reqwest::Client,
    /// What `http` was built from, for clients that want a connection pool of their own.
    pub client: crate::tls::ClientTls,
}

impl LocalTls {
    pub fn ca(&self) -> PathBuf {
        self.dir.join(crate::tls::certs::CA_CERT_FILE)
    }

    /// Node `id`'s certificate and key files.
    pub fn node_files(&self, id: u64) -> (PathBuf, PathBuf) {
        let stem = crate::tls::certs::node_stem(id);
        (
            self.dir.join(format!("{stem}.pem")),
            self.dir.join(format!("{stem}.key")),
        )
    }

    /// The `[tls]` section of node `id`'s configuration.
    fn section(&self, id: u64) -> String {
        let (cert, key) = self.node_files(id);
        format!(
            "\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\nreload_poll_ms = {}\n\
             require_client_cert = {}\n",
            self.ca().display().to_string(),
            cert.display().to_string(),
            key.display().to_string(),
            self.reload_poll_ms,
            self.require_client_cert
        )
    }

    /// Issues node `id`'s certificate unless it exists.
    fn ensure_node(&self, id: u64) -> anyhow::Result<()> {
        let (cert, _) = self.node_files(id);
        if cert.exists() {
            return Ok(());
        }
        let ca = crate::tls::certs::Ca::load(&self.dir)?;
        let (from, to) = crate::tls::certs::validity(crate::tls::certs::LEAF_VALIDITY_DAYS_DEFAULT);
        let issued = ca.issue_node(id, &[], from, to)?;
        crate::tls::certs::write_pair(&self.dir, &crate::tls::certs::node_stem(id), &issued)?;
        Ok(())
    }
}

/// How many of a node's last log lines a start failure quotes.
const START_LOG_TAIL_LINES: usize = 20;

/// The last `lines` lines of the log at `path` (or why it cannot be read), so a start
/// failure names its cause even where the log is gone by the time anyone looks (CI).
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(unreadable: {e})"),
    }
}

/// Ports this process has handed out: never handed out twice.
static PORTS_GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Tries of [`free_port`] before it gives up (each a port the OS offered that this process
/// had already handed out).
const FREE_PORT_TRIES_MAX: usize = 1_000;

/// A port the OS considers free right now, and one this process has not handed out before.
/// The OS may offer a port again as soon as the probe that found it is closed: the API and
/// Raft ports of one node were once the same port (the node refused to start, "api_addr
/// collides with raft_addr"). Another process could still take the port before the node
/// binds it; a node that exits during its first start is started again with fresh ports
/// ([`START_ATTEMPTS_MAX`]).
fn free_port() -> anyhow::Result<u16> {
    let mut given = PORTS_GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..FREE_PORT_TRIES_MAX {
        let port = StdListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if given.insert(port) {
            return Ok(port);
        }
    }
    anyhow::bail!("no loopback port this process has not used in {FREE_PORT_TRIES_MAX} tries")
}

impl LocalCluster {
    /// Prepares `count` nodes under `root` (their processes are not started yet).
    pub fn new(
        binary: PathBuf,
        root: &Path,
        cluster_id: &str,
        count: u64,
    ) -> anyhow::Result<LocalCluster> {
        // `--dir` may name a folder that does not exist yet, as `demo --dir` may.
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating the cluster's folder {}", root.display()))?;
        let mut cluster = LocalCluster {
            cluster_id: cluster_id.to_owned(),
            root: root.to_owned(),
            nodes: Vec::new(),
            binary,
            extra_args: Vec::new(),
            extra_env: Vec::new(),
            config_toml: None,
            tls: None,
        };
        for _ in 0..count {
            cluster.add_slot()?;
        }
        Ok(cluster)
    }

    pub fn with_args(mut self, args: &[&str]) -> LocalCluster {
        self.extra_args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// Environment variables for every node started from now on, e.g.
    /// `("DOCKET_RAFT_SNAPSHOT_LOGS_SINCE_LAST", "50")`.
    pub fn with_env(mut self, vars: &[(&str, &str)]) -> LocalCluster {
        self.extra_env = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self
    }

    /// Runs every node with TLS under a fresh cluster CA in `<root>/tls` (the files of
    /// `docket tls init`), nodes polling their files every `reload_poll_ms`; every client
    /// of this cluster trusts that CA and presents its client certificate.
    pub fn with_tls(mut self, reload_poll_ms: u64) -> anyhow::Result<LocalCluster> {
        use crate::tls::certs;
        let dir = self.root.join("tls");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca = certs::Ca::generate(&self.cluster_id)?;
        certs::write_atomic(&dir.join(certs::CA_KEY_FILE), &ca.key_pem(), true)?;
        certs::write_atomic(&dir.join(certs::CA_CERT_FILE), &ca.cert_pem(), false)?;
        let (from, to) = certs::validity(certs::LEAF_VALIDITY_DAYS_DEFAULT);
        let client = ca.issue_client("client", from, to)?;
        let (cert, key) = certs::write_pair(&dir, "client", &client)?;
        let client_tls = crate::tls::ClientTls {
            ca: dir.join(certs::CA_CERT_FILE),
            identity: Some((cert, key)),
        };
        let http = client_tls.reqwest_builder()?.build()?;
        let client_tls = client_tls.clone();
        let tls = LocalTls {
            dir,
            reload_poll_ms,
            require_client_cert: false,
            http: http.clone(),
            client: client_tls,
        };
        for node in &mut self.nodes {
            tls.ensure_node(node.id)?;
            node.https = Some(http.clone());
        }
        self.tls = Some(tls);
        Ok(self)
    }

    /// With TLS, every node refuses API clients without a certificate of the CA
    /// (`tls.require_client_cert`); this cluster's own clients present one.
    pub fn requiring_client_certs(mut self) -> LocalCluster {
        if let Some(tls) = self.tls.as_mut() {
            tls.require_client_cert = true;
        }
        self
    }

    /// The cluster's TLS files and client, when it runs TLS.
    pub fn tls(&self) -> Option<&LocalTls> {
        self.tls.as_ref()
    }

    /// A configuration file for every node (see `config_toml`).
    pub fn with_config(mut self, toml: &str) -> LocalCluster {
        self.config_toml = Some(toml.to_owned());
        self
    }

    /// Prepares one more node (the next id, fresh ports and data directory) without
    /// starting it or adding it to the cluster; returns its id. `start` it, then add it
    /// with `docket member add` (or `Client::add_member`).
    pub fn add_slot(&mut self) -> anyhow::Result<u64> {
        let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        self.nodes.push(LocalNode {
            id,
            raft_addr: format!("127.0.0.1:{}", free_port()?),
            api_addr: format!("127.0.0.1:{}", free_port()?),
            data_dir: self.root.join(format!("node-{id}")),
            child: None,
            started: false,
            https: self.tls.as_ref().map(|tls| tls.http.clone()),
        });
        if let Some(tls) = &self.tls {
            tls.ensure_node(id)?;
        }
        Ok(id)
    }

    pub fn node(&self, id: u64) -> &LocalNode {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("invariant: callers name a node of this cluster")
    }

    fn node_mut(&mut self, id: u64) -> &mut LocalNode {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("invariant: callers name a node of this cluster")
    }

    /// Starts (or restarts) node `id` and waits until its API answers. A port chosen free
    /// can be taken by another process before the node binds it: a node that never ran gets
    /// fresh ports, a restarted one (whose addresses are in the membership) the same ports
    /// a moment later, up to [`START_ATTEMPTS_MAX`] starts.
    pub async fn start(&mut self, id: u64) -> anyhow::Result<()> {
        let mut attempt = 1;
        loop {
            let log_before = std::fs::metadata(self.node(id).log_path()).map_or(0, |m| m.len());
            let result = self.start_once(id).await;
            let bind_failed = result.is_err() && {
                let log = std::fs::read(self.node(id).log_path()).unwrap_or_default();
                let fresh = log.get(log_before as usize..).unwrap_or_default();
                String::from_utf8_lossy(fresh).contains("binding ")
            };
            let exited_on_first_start = result.is_err()
                && !self.node(id).started
                && self
                    .node_mut(id)
                    .child
                    .as_mut()
                    .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
            if let (Err(e), true) = (&result, exited_on_first_start && !bind_failed) {
                eprintln!("start of node {id}, attempt {attempt}/{START_ATTEMPTS_MAX}: {e:#}");
            }
            let retry = bind_failed || exited_on_first_start;
            if result.is_ok() || !retry || attempt >= START_ATTEMPTS_MAX {
                if result.is_ok() {
                    self.node_mut(id).started = true;
                }
                return result;
            }
            attempt += 1;
            let node = self.node_mut(id);
            if node.started {
                tokio::time::sleep(Duration::from_millis(200)).await;
            } else {
                node.raft_addr = format!("127.0.0.1:{}", free_port()?);
                node.api_addr = format!("127.0.0.1:{}", free_port()?);
            }
        }
    }

    async fn start_once(&mut self, id: u64) -> anyhow::Result<()> {
        let (binary, cluster_id, extra, extra_env) = (
            self.binary.clone(),
            self.cluster_id.clone(),
            self.extra_args.clone(),
            self.extra_env.clone(),
        );
        let mut config_toml = self.config_toml.clone();
        if let Some(tls) = &self.tls {
            config_toml = Some(config_toml.unwrap_or_default() + &tls.section(id));
        }
        let node = self.node_mut(id);
        let config_path = node.data_dir.with_extension("toml");
        if let Some(toml) = config_toml {
            std::fs::write(&config_path, toml.replace("{node}", &id.to_string()))
                .with_context(|| format!("writing {}", config_path.display()))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log_path())
            .with_context(|| format!("creating log file for node {id}"))?;
        let mut command = Command::new(&binary);
        // The nodes are configured by this cluster alone: a `DOCKET_*` variable left in the
        // operator's shell for a hand-run node (`DOCKET_DATA_DIR`, `DOCKET_RAFT_*`, a typo
        // that `serve` refuses) would otherwise reach every child. `DOCKET_LOG` is kept.
        for (name, _) in std::env::vars_os() {
            let docket = name
                .to_str()
                .is_some_and(|n| n.starts_with("DOCKET_") && n != "DOCKET_LOG");
            if docket {
                command.env_remove(&name);
            }
        }
        let child = command
            .arg("serve")
            .args(["--node-id", &id.to_string()])
            .args(["--cluster-id", &cluster_id])
            .args(["--raft-addr", &node.raft_addr])
            .args(["--api-addr", &node.api_addr])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(&extra)
            .args(if config_path.exists() {
                vec!["--config".to_owned(), config_path.display().to_string()]
            } else {
                vec![]
            })
            .envs(extra_env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {} serve", binary.display()))?;
        node.child = Some(child);
        let client = node.client();
        let deadline = Instant::now() + Duration::from_millis(NODE_START_TIMEOUT_MS);
        loop {
            if client.status().await.is_ok() {
                return Ok(());
            }
            if let Some(child) = self.node_mut(id).child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    let path = self.node(id).log_path();
                    bail!(
                        "node {id} exited during start ({status}); the end of {}:\n{}",
                        path.display(),
                        log_tail(&path, START_LOG_TAIL_LINES)
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("node {id} did not answer within {NODE_START_TIMEOUT_MS} ms");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            self.start(id).await?;
        }
        Ok(())
    }

    /// Initializes the cluster at node 1 and adds every other node as a voter, signing as
    /// the default constitution's development operator ([`operator_key`]).
    pub async fn form(&mut self) -> anyhow::Result<()> {
        let first = self.nodes[0].client();
        let operator = operator_key();
        first
            .init_as(None, &operator)
            .await
            .context("cluster init")?;
        for node in &self.nodes[1..] {
            let request = node.add_request();
            first
                .add_member_as(request, &operator)
                .await
                .with_context(|| format!("adding node {}", node.id))?;
        }
        Ok(())
    }

    /// SIGKILL: no shutdown, no flush. What was not durable is lost.
    pub async fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(mut child) = self.node_mut(id).child.take() {
            child.start_kill().context("sending SIGKILL")?;
            child.wait().await?;
        }
        Ok(())
    }

    pub async fn kill_all(&mut self) {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            let _ = self.kill(id).await;
        }
    }

    /// The running node that reports it leads, waiting up to the convergence timeout.
    pub async fn leader(&self) -> anyhow::Result<u64> {
        let deadline = Instant::now() + Duration::from_millis(CONVERGE_TIMEOUT_MS);
        loop {
            // Only a node's own word counts: a follower's `leader_id` can name a node that
            // does not lead (after a whole-cluster restart, followers keep their committed
            // vote for the old leader, which is campaigning again).
            for node in self.nodes.iter().filter(|n| n.is_running()) {
                if let Ok(status) = node.client().status().await {
                    if status.role == "leader" {
                        return Ok(status.node_id);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("no leader elected within {CONVERGE_TIMEOUT_MS} ms");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first node of the cluster that is not `id` (a follower, given the leader's id).
    pub fn other_than(&self, id: u64) -> Option<u64> {
        self.nodes.iter().map(|n| n.id).find(|other| *other != id)
    }

    /// Statuses of every running node.
    pub async fn statuses(&self) -> Vec<StatusView> {
        let mut out = Vec::new();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            if let Ok(status) = node.client().status().await {
                out.push(status);
            }
        }
        out
    }

    /// Waits until every running node reports the same ledger length and state hash.
    pub async fn converged(&self) -> anyhow::Result<Vec<StatusView>> {
        let deadline = Instant::now() + Duration::from_millis(CONVERGE_TIMEOUT_MS);
        loop {
            let statuses = self.statuses().await;
            let running = self.nodes.iter().filter(|n| n.is_running()).count();
            let agree = statuses.len() == running
                && statuses.windows(2).all(|w| {
                    w[0].ledger_length == w[1].ledger_length
                        && w[0].state_hash == w[1].state_hash
                        && w[0].ledger_root == w[1].ledger_root
                });
            if agree && statuses.first().is_some_and(|s| s.ledger_length > 0) {
                return Ok(statuses);
            }
            if Instant::now() > deadline {
                let summary: Vec<String> = statuses
                    .iter()
                    .map(|s| {
                        format!(
                            "node {}: length {} hash {:?} root {:?}",
                            s.node_id,
                            s.ledger_length,
                            s.state_hash.map(|h| h.short()),
                            s.ledger_root.as_deref().map(|r| &r[..16.min(r.len())])
                        )
                    })
                    .collect();
                bail!(
                    "nodes did not converge within {CONVERGE_TIMEOUT_MS} ms: {}",
                    summary.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}
