//! TLS for both listeners and every client in the binary: rustls (ring provider, no
//! OpenSSL), one cluster CA, mutual TLS between peers, hot reload.
//!
//! # The identity in a certificate
//!
//! A node's certificate carries the URI subject alternative name `docket://node/<id>`
//! ([`node_uri`]); nothing else in it names a node. A client certificate (`docket tls init`
//! writes one for the CLI) carries none, so it can talk to the API but can neither open a
//! Raft connection nor call the internal routes (`/v1/internal/*`), which need a node.
//!
//! # Who checks what
//!
//! * **Raft port** ([`transport`]): the server demands a certificate of the cluster CA
//!   (otherwise the handshake fails) that names a node (otherwise the connection is closed
//!   before a frame is read), and refuses every frame whose sender is not that node
//!   (`RefusalCode::WrongPeer`). The connecting side checks that the server's certificate is
//!   the CA's and names the node it meant to reach before it sends anything.
//! * **API** ([`listener`]): HTTPS; a client certificate, when presented, must be the CA's
//!   (with `require_client_cert`, one must be presented). The internal routes and forwarded
//!   requests must come from a node certificate, and a forwarded request's
//!   `x-docket-forwarded` must name that node (`crate::api`).
//! * **HTTP clients** (forwarding, peers, CLI, local clusters) trust the cluster CA and
//!   nothing else, check the host name against the certificate as HTTPS does, and present
//!   their certificate.
//!
//! # Hot reload
//!
//! [`NodeTls`] holds the loaded files behind a lock; every handshake asks it for the
//! current certificate and trust, so replacing the files (checked every
//! `tls.reload_poll_ms`, or at once on SIGHUP) changes what new connections use without a
//! restart. Connections already open keep the session they negotiated. A set of files that
//! does not load (half written, a key that does not match, a certificate for another node)
//! is logged and the previous one kept: a botched rotation never leaves a node without TLS.

pub mod certs;
pub mod listener;
pub mod transport;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use docket_config::TlsConfig;
use docket_raft::NodeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

/// Largest certificate or key file read. A PEM chain is a few KiB; anything this large is
/// the wrong file.
pub const PEM_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// The URI scheme and prefix of a node identity in a certificate.
pub const NODE_URI_PREFIX: &str = "docket://node/";

/// `docket://node/<id>`: the subject alternative name that makes a certificate node `id`'s.
pub fn node_uri(id: NodeId) -> String {
    format!("{NODE_URI_PREFIX}{id}")
}

/// The node a certificate names (its `docket://node/<id>` URI SAN), if exactly one. A
/// certificate naming two nodes names none: it is refused as a peer.
pub fn node_id_of(cert: &CertificateDer<'_>) -> Option<NodeId> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    let mut ids = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => {
                uri.strip_prefix(NODE_URI_PREFIX)?.parse::<NodeId>().ok()
            }
            _ => None,
        });
    let first = ids.next()?;
    match ids.next() {
        None => Some(first),
        Some(_) => None,
    }
}

/// The crypto provider every config here is built with (ring: no OpenSSL, no C++ build).
// rustls 0.23.48 deprecates ring's provider only because it has no post-quantum key
// exchange; aws-lc-rs has one but needs cmake and a C++ toolchain. A later change may move.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the {what} file {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(PEM_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    if bytes.len() as u64 > PEM_FILE_BYTES_MAX {
        bail!(
            "the {what} file {} is larger than {PEM_FILE_BYTES_MAX} bytes: not a PEM file",
            path.display()
        );
    }
    Ok(bytes)
}

/// Every certificate in a PEM file, in order; at least one.
pub fn read_certs(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = read_pem(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the {what} file {} is not PEM", path.display()))?;
    if certs.is_empty() {
        bail!("the {what} file {} holds no certificate", path.display());
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let bytes = read_pem(path, "key")?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .with_context(|| format!("the key file {} holds no PEM private key", path.display()))
}

/// The cluster CA as a root store.
pub fn read_roots(path: &Path) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, "CA certificate")? {
        roots
            .add(cert)
            .with_context(|| format!("the CA file {} is not a usable CA", path.display()))?;
    }
    Ok(Arc::new(roots))
}

/// A certificate chain and its key, checked to belong together.
pub fn certified_key(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = read_certs(cert, "certificate")?;
    let key_der = read_key(key)?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .with_context(|| format!("the key in {} is not usable", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().with_context(|| {
        format!(
            "the key {} does not belong to the certificate {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(Arc::new(certified))
}

/// One loaded set of files.
#[derive(Debug)]
struct Material {
    key: Arc<CertifiedKey>,
    roots: Arc<RootCertStore>,
    server_verifier: Arc<WebPkiServerVerifier>,
    client_verifier: Arc<dyn ClientCertVerifier>,
}

/// Modification time and length of each file: what the poller compares.
type Stamps = Vec<Option<(SystemTime, u64)>>;

/// A node's TLS: the files of `[tls]`, loaded, and reloaded when they change.
#[derive(Debug)]
pub struct NodeTls {
    node_id: NodeId,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    require_client_cert: bool,
    reload_poll: Duration,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
    stamps: Mutex<Stamps>,
}

impl NodeTls {
    /// Loads the files for node `node_id`; fails if they do not load or the certificate is
    /// not this node's.
    pub fn load(node_id: NodeId, config: &TlsConfig) -> anyhow::Result<Arc<NodeTls>> {
        let provider = provider();
        let files = [config.ca.clone(), config.cert.clone(), config.key.clone()];
        let stamps = stamps(&files);
        let material = load_material(&provider, node_id, config)?;
        Ok(Arc::new(NodeTls {
            node_id,
            ca: config.ca.clone(),
            cert: config.cert.clone(),
            key: config.key.clone(),
            require_client_cert: config.require_client_cert,
            reload_poll: Duration::from_millis(config.reload_poll_ms),
            provider,
            current: RwLock::new(Arc::new(material)),
            stamps: Mutex::new(stamps),
        }))
    }

    fn config(&self) -> TlsConfig {
        TlsConfig {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            require_client_cert: self.require_client_cert,
            reload_poll_ms: u64::try_from(self.reload_poll.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn material(&self) -> Arc<Material> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the files now. On failure the previous certificates stay in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let files = [self.ca.clone(), self.cert.clone(), self.key.clone()];
        let before = stamps(&files);
        let material = load_material(&self.provider, self.node_id, &self.config())?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(material);
        *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) = before;
        tracing::info!(cert = %self.cert.display(), "tls certificates reloaded: new connections use them");
        Ok(())
    }

    /// Reloads if any file's modification time or length changed since the last load.
    pub fn reload_if_changed(&self) {
        let files = [self.ca.clone(), self.cert.clone(), self.key.clone()];
        let now = stamps(&files);
        let changed = *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) != now;
        if changed {
            if let Err(error) = self.reload() {
                tracing::error!(error = %format!("{error:#}"),
                    "tls files changed but do not load; keeping the previous certificates");
            }
        }
    }

    /// Reloads on SIGHUP and whenever the files change, until `shutdown` resolves.
    pub async fn watch(self: Arc<NodeTls>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hangup.as_mut() {
                    Some(hangup) => {
                        hangup.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = std::future::pending::<()>();
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.reload_poll) => self.reload_if_changed(),
                _ = signalled => {
                    tracing::info!("SIGHUP: reloading tls certificates");
                    if let Err(error) = self.reload() {
                        tracing::error!(error = %format!("{error:#}"),
                            "tls files do not load; keeping the previous certificates");
                    }
                }
            }
        }
    }

    /// The server side of the Raft port: a node certificate of the CA is mandatory.
    pub fn raft_server_config(self: &Arc<NodeTls>) -> Arc<ServerConfig> {
        self.server_config(true)
    }

    /// The server side of the API: a client certificate is mandatory only with
    /// `require_client_cert`; one that is presented must be the CA's.
    pub fn api_server_config(self: &Arc<NodeTls>) -> Arc<ServerConfig> {
        self.server_config(self.require_client_cert)
    }

    fn server_config(self: &Arc<NodeTls>, mandatory: bool) -> Arc<ServerConfig> {
        let verifier = Arc::new(CurrentClientVerifier {
            tls: self.clone(),
            mandatory,
        });
        let config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("invariant: ring supports the default protocol versions")
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(CurrentKey(self.clone())));
        Arc::new(config)
    }

    /// The client side of Raft connections: the server must hold a certificate of the CA
    /// (its node id is checked after the handshake, by the transport); host names are not
    /// checked, node ids are.
    pub fn raft_client_config(self: &Arc<NodeTls>) -> Arc<ClientConfig> {
        Arc::new(self.client_config(false))
    }

    /// The client side of HTTPS between nodes: the CA, the host name, and this node's
    /// certificate presented.
    pub fn http_client_config(self: &Arc<NodeTls>) -> ClientConfig {
        self.client_config(true)
    }

    fn client_config(self: &Arc<NodeTls>, check_host: bool) -> ClientConfig {
        let verifier = Arc::new(CurrentServerVerifier {
            tls: self.clone(),
            check_host,
        });
        ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("invariant: ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(CurrentKey(self.clone())))
    }

    /// The node's current certificate (tests and logs).
    pub fn current_cert(&self) -> CertificateDer<'static> {
        self.material().key.cert[0].clone()
    }
}

fn stamps(files: &[PathBuf]) -> Stamps {
    files
        .iter()
        .map(|path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        })
        .collect()
}

fn load_material(
    provider: &Arc<CryptoProvider>,
    node_id: NodeId,
    config: &TlsConfig,
) -> anyhow::Result<Material> {
    let roots = read_roots(&config.ca)?;
    let key = certified_key(provider, &config.cert, &config.key)?;
    match node_id_of(&key.cert[0]) {
        Some(id) if id == node_id => {}
        Some(id) => bail!(
            "the certificate {} is node {id}'s, and this is node {node_id}: give each node its \
             own node-<id>.pem (`docket tls init` writes one per node)",
            config.cert.display()
        ),
        None => bail!(
            "the certificate {} names no node (no {NODE_URI_PREFIX}<id> subject alternative \
             name): a node needs its node certificate, not a client certificate",
            config.cert.display()
        ),
    }
    let server_verifier =
        WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .context("the CA cannot verify servers")?;
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .context("the CA cannot verify clients")?;
    Ok(Material {
        key,
        roots,
        server_verifier,
        client_verifier,
    })
}

/// The node's current certificate, for both sides of a handshake.
#[derive(Debug)]
struct CurrentKey(Arc<NodeTls>);

impl ResolvesServerCert for CurrentKey {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }
}

impl ResolvesClientCert for CurrentKey {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies a client's certificate against the current CA.
#[derive(Debug)]
struct CurrentClientVerifier {
    tls: Arc<NodeTls>,
    mandatory: bool,
}

impl ClientCertVerifier for CurrentClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: docket's clients present their one certificate whatever is hinted.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.tls
            .material()
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.tls.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.tls.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.tls
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Verifies a server's certificate against the current CA, with or without its host name.
#[derive(Debug)]
struct CurrentServerVerifier {
    tls: Arc<NodeTls>,
    check_host: bool,
}

impl ServerCertVerifier for CurrentServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let material = self.tls.material();
        if self.check_host {
            return material.server_verifier.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &material.roots,
            intermediates,
            now,
            self.tls.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.tls.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.tls.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.tls
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// TLS of a client that is not a node (the CLI, tests, local clusters): the CA to trust
/// and, optionally, a client certificate to present.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca: PathBuf,
    /// Certificate and key files.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    /// A rustls client config: the CA alone as trust, host names checked.
    pub fn rustls_config(&self) -> anyhow::Result<ClientConfig> {
        let provider = provider();
        let roots = read_roots(&self.ca)?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("tls protocol versions")?
            .with_root_certificates(roots);
        Ok(match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read_certs(cert, "client certificate")?;
                let key = read_key(key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("the client certificate and key do not belong together")?
            }
        })
    }

    /// A reqwest client over [`ClientTls::rustls_config`].
    pub fn reqwest_builder(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        Ok(reqwest::Client::builder().use_preconfigured_tls(self.rustls_config()?))
    }
}

#[cfg(test)]
mod tests {
    use super::certs::{validity, Ca};
    use super::*;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM")
    }

    #[test]
    fn a_node_certificate_names_its_node_and_a_client_certificate_none() {
        let ca = Ca::generate("test").expect("CA");
        let (from, to) = validity(1);
        let node = ca
            .issue_node(
                7,
                &["10.0.0.7".to_owned(), "db7.example".to_owned()],
                from,
                to,
            )
            .expect("node");
        assert_eq!(node_id_of(&der(&node.cert_pem)), Some(7));
        let client = ca.issue_client("ops", from, to).expect("client");
        assert_eq!(node_id_of(&der(&client.cert_pem)), None);
        assert_eq!(node_id_of(&der(&ca.cert_pem())), None);
        assert_eq!(node_id_of(&CertificateDer::from(vec![1, 2, 3])), None);
    }

    #[test]
    fn a_ca_loaded_from_its_files_issues_certificates_the_original_verifies() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = Ca::generate("test").expect("CA");
        certs::write_atomic(&dir.path().join(certs::CA_CERT_FILE), &ca.cert_pem(), false)
            .expect("write");
        certs::write_atomic(&dir.path().join(certs::CA_KEY_FILE), &ca.key_pem(), true)
            .expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(certs::CA_KEY_FILE))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "keys are private");
        }
        let loaded = Ca::load(dir.path()).expect("load");
        let (from, to) = validity(1);
        let issued = loaded.issue_node(2, &[], from, to).expect("issue");
        let roots = read_roots(&dir.path().join(certs::CA_CERT_FILE)).expect("roots");
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .expect("verifier");
        verifier
            .verify_client_cert(&der(&issued.cert_pem), &[], UnixTime::now())
            .expect("the original CA verifies what the reloaded one issued");
        let stranger = Ca::generate("other").expect("CA");
        let foreign = stranger.issue_node(2, &[], from, to).expect("issue");
        assert!(verifier
            .verify_client_cert(&der(&foreign.cert_pem), &[], UnixTime::now())
            .is_err());
    }

    #[test]
    fn a_node_refuses_another_nodes_certificate_and_keeps_its_own_on_a_bad_reload() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = Ca::generate("test").expect("CA");
        let (from, to) = validity(1);
        let ca_path = dir.path().join("ca.pem");
        certs::write_atomic(&ca_path, &ca.cert_pem(), false).expect("write");
        let (cert, key) = certs::write_pair(
            dir.path(),
            "node-1",
            &ca.issue_node(1, &[], from, to).expect("x"),
        )
        .expect("write");
        let config = TlsConfig {
            ca: ca_path,
            cert: cert.clone(),
            key: key.clone(),
            require_client_cert: false,
            reload_poll_ms: 1_000,
        };
        let error = NodeTls::load(2, &config).expect_err("node 1's certificate on node 2");
        assert!(error.to_string().contains("node 1's"), "{error:#}");
        let tls = NodeTls::load(1, &config).expect("node 1");
        let before = tls.current_cert();
        // A key that does not belong to the certificate: refused, the old pair stays.
        let other = ca.issue_node(1, &[], from, to).expect("x");
        certs::write_atomic(&key, &other.key_pem, true).expect("write");
        tls.reload_if_changed();
        assert_eq!(tls.current_cert(), before);
        // The certificate follows: the new pair is taken.
        certs::write_atomic(&cert, &other.cert_pem, false).expect("write");
        tls.reload().expect("reload");
        assert_eq!(tls.current_cert(), der(&other.cert_pem));
    }
}
