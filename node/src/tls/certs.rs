//! Certificates for a cluster (rcgen): the cluster CA, node certificates that carry
//! `docket://node/<id>`, client certificates, and PEM files written with safe modes.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use docket_raft::NodeId;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::node_uri;

/// The CA's validity: ten years. It signs node and client certificates only; rotating it
/// means re-issuing every certificate, which an operator should not have to do yearly.
pub const CA_VALIDITY_DAYS: u32 = 3_650;
/// Node and client certificates' default validity: one year, renewed with `docket tls
/// issue` (hot reload picks the new files up).
pub const LEAF_VALIDITY_DAYS_DEFAULT: u32 = 365;
/// Certificates start an hour in the past, so a peer whose clock lags a little does not
/// refuse a certificate issued a moment ago.
pub const CLOCK_SKEW_ALLOWANCE_MINUTES: i64 = 60;

/// File names in a `docket tls init` directory.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";

/// `node-<id>` (`.pem` and `.key`).
pub fn node_stem(id: NodeId) -> String {
    format!("node-{id}")
}

/// A certificate and its private key, both PEM.
#[derive(Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster CA: its certificate (as rcgen needs it to sign) and key.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("Ca(..)")
    }
}

impl Ca {
    /// A new CA, named after the cluster.
    pub fn generate(cluster: &str) -> anyhow::Result<Ca> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "docket");
        name.push(DnType::CommonName, format!("docket cluster CA ({cluster})"));
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(CLOCK_SKEW_ALLOWANCE_MINUTES);
        params.not_after = now + Duration::days(i64::from(CA_VALIDITY_DAYS));
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    /// The CA of a `docket tls init` directory (`ca.pem`, `ca.key`).
    pub fn load(dir: &Path) -> anyhow::Result<Ca> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = fs::read_to_string(&cert_path)
            .with_context(|| format!("cannot read the CA certificate {}", cert_path.display()))?;
        let key_pem = fs::read_to_string(&key_path)
            .with_context(|| format!("cannot read the CA key {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("{} is not a PEM private key", key_path.display()))?;
        let params = CertificateParams::from_ca_cert_pem(&cert_pem)
            .with_context(|| format!("{} is not a CA certificate", cert_path.display()))?;
        // Re-signing the parsed parameters with the same key yields an issuer with the
        // same name and key identifier: certificates it signs verify against the original.
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A certificate for node `id`: `docket://node/<id>`, `localhost`, `127.0.0.1`, `::1`
    /// and `hosts` (IP addresses or DNS names), for server and client authentication.
    pub fn issue_node(
        &self,
        id: NodeId,
        hosts: &[String],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> anyhow::Result<Issued> {
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        for host in hosts {
            if !names.contains(host) {
                names.push(host.clone());
            }
        }
        let mut params = CertificateParams::new(names)
            .with_context(|| format!("a host in {hosts:?} is not a valid DNS name or IP"))?;
        params
            .subject_alt_names
            .push(SanType::URI(node_uri(id).try_into()?));
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "docket");
        name.push(DnType::CommonName, format!("docket node {id}"));
        params.distinguished_name = name;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params, not_before, not_after)
    }

    /// A client certificate (no node identity): the CLI's, for an API that requires one.
    pub fn issue_client(
        &self,
        name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "docket");
        dn.push(DnType::CommonName, format!("docket client {name}"));
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, not_before, not_after)
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> anyhow::Result<Issued> {
        params.not_before = not_before;
        params.not_after = not_after;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Validity from now (less the clock-skew allowance) for `days`.
pub fn validity(days: u32) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (
        now - Duration::minutes(CLOCK_SKEW_ALLOWANCE_MINUTES),
        now + Duration::days(i64::from(days)),
    )
}

/// Writes `contents` to `path` through a temporary file in the same directory and a
/// rename, so a node reloading its files never reads half of one; `private` files get mode
/// 0600 from their creation on.
pub fn write_atomic(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = if private { 0o600 } else { 0o644 };
        fs::set_permissions(temp.path(), fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", temp.path().display()))?;
    }
    #[cfg(not(unix))]
    let _ = private;
    temp.write_all(contents.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    temp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes `<stem>.key` (0600) then `<stem>.pem` (0644) into `dir`; returns both paths.
/// The key first: a node polling mid-rotation sees a key that does not match its old
/// certificate, refuses the pair and keeps its old one until the certificate follows.
pub fn write_pair(dir: &Path, stem: &str, issued: &Issued) -> anyhow::Result<(PathBuf, PathBuf)> {
    let key = dir.join(format!("{stem}.key"));
    let cert = dir.join(format!("{stem}.pem"));
    write_atomic(&key, &issued.key_pem, true)?;
    write_atomic(&cert, &issued.cert_pem, false)?;
    Ok((cert, key))
}

/// Refuses to overwrite any of `paths` unless `force`.
pub fn refuse_overwrite(paths: &[PathBuf], force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        bail!(
            "{} already exists; pass --force to replace it (certificates signed by the old CA \
             stop being trusted when the CA is replaced)",
            existing.display()
        );
    }
    Ok(())
}
