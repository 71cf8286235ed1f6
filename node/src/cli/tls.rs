//! `docket tls init` and `docket tls issue`: the cluster CA and the certificates a TLS
//! cluster runs on, written as PEM files (keys mode 0600).

use std::fs;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::ClientArgs;
use crate::tls::certs::{
    node_stem, refuse_overwrite, validity, write_atomic, write_pair, Ca, CA_CERT_FILE, CA_KEY_FILE,
    LEAF_VALIDITY_DAYS_DEFAULT,
};

/// Name of the client certificate `tls init` writes (`client.pem`, `client.key`).
pub const CLIENT_STEM: &str = "client";

#[derive(Clone, Debug, Subcommand)]
pub enum TlsCommand {
    /// Create a cluster CA, a certificate for each node and one client certificate.
    #[command(after_help = "Examples:\n  \
        docket tls init --dir tls --nodes 1,2,3\n  \
        docket tls init --dir tls --nodes 1,2,3 --hosts 10.0.0.1,10.0.0.2,10.0.0.3,db1.example\n\n\
        Writes into DIR:\n  \
        ca.pem, ca.key          the cluster CA (ca.key signs certificates: keep it off the nodes)\n  \
        node-N.pem, node-N.key  node N's certificate and key (SANs: localhost, 127.0.0.1, ::1,\n                          \
        every --hosts entry, and docket://node/N, the identity peers check)\n  \
        client.pem, client.key  a client certificate for the CLI (--client-cert, --client-key)\n\n\
        Keys are written mode 0600. Give node N ca.pem, node-N.pem and node-N.key, and set in\n\
        its config:\n  \
        [tls]\n  \
        ca = \"ca.pem\"\n  \
        cert = \"node-N.pem\"\n  \
        key = \"node-N.key\"\n\n\
        Then talk to it with: docket --ca tls/ca.pem status --node https://HOST:8001\n\
        Renew a certificate later with `docket tls issue`; running nodes reload it on SIGHUP or\n\
        within tls.reload_poll_ms, no restart.")]
    Init(InitArgs),

    /// Issue (or renew) one node's or one client's certificate with the CA in DIR.
    #[command(after_help = "Examples:\n  \
        docket tls issue --dir tls --node 2 --hosts 10.0.0.2   # renew node 2's certificate\n  \
        docket tls issue --dir tls --client ops                # tls/ops.pem and tls/ops.key\n\n\
        Files are replaced atomically (key first, then certificate): a node watching them picks\n\
        up the new pair on SIGHUP or within tls.reload_poll_ms and keeps the old one until both\n\
        have been written.")]
    Issue(IssueArgs),
}

#[derive(Clone, Debug, Args)]
pub struct InitArgs {
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Node ids to issue certificates for, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        value_name = "ID[,ID...]"
    )]
    pub nodes: Vec<u64>,
    /// Extra host names or IP addresses every node certificate is valid for (the addresses
    /// clients and peers use to reach the nodes), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "HOST[,HOST...]")]
    pub hosts: Vec<String>,
    /// Cluster id, written into the CA's name.
    #[arg(long, default_value = "docket-local")]
    pub cluster_id: String,
    /// Validity of node and client certificates, in days (the CA: ten years).
    #[arg(long, default_value_t = LEAF_VALIDITY_DAYS_DEFAULT, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Replace existing files (a new CA: certificates of the old one stop being trusted).
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Debug, Args)]
#[command(group = clap::ArgGroup::new("whom").required(true).args(["node", "client"]))]
pub struct IssueArgs {
    /// Directory holding ca.pem and ca.key; the new files are written there too.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Issue node ID's certificate (node-ID.pem, node-ID.key).
    #[arg(long, value_name = "ID")]
    pub node: Option<u64>,
    /// Issue a client certificate named NAME (NAME.pem, NAME.key).
    #[arg(long, value_name = "NAME")]
    pub client: Option<String>,
    /// Extra host names or IP addresses (node certificates only), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "HOST[,HOST...]")]
    pub hosts: Vec<String>,
    /// Validity in days.
    #[arg(long, default_value_t = LEAF_VALIDITY_DAYS_DEFAULT, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
}

pub(super) fn run(_args: &ClientArgs, command: TlsCommand) -> anyhow::Result<()> {
    match command {
        TlsCommand::Init(init) => run_init(&init),
        TlsCommand::Issue(issue) => run_issue(&issue),
    }
}

fn run_init(args: &InitArgs) -> anyhow::Result<()> {
    if args.nodes.contains(&0) {
        anyhow::bail!("node ids start at 1");
    }
    fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut paths = vec![args.dir.join(CA_CERT_FILE), args.dir.join(CA_KEY_FILE)];
    for stem in args
        .nodes
        .iter()
        .map(|id| node_stem(*id))
        .chain([CLIENT_STEM.to_owned()])
    {
        paths.push(args.dir.join(format!("{stem}.pem")));
        paths.push(args.dir.join(format!("{stem}.key")));
    }
    refuse_overwrite(&paths, args.force)?;
    let ca = Ca::generate(&args.cluster_id)?;
    write_atomic(&args.dir.join(CA_KEY_FILE), &ca.key_pem(), true)?;
    write_atomic(&args.dir.join(CA_CERT_FILE), &ca.cert_pem(), false)?;
    let (not_before, not_after) = validity(args.days);
    for id in &args.nodes {
        let issued = ca.issue_node(*id, &args.hosts, not_before, not_after)?;
        write_pair(&args.dir, &node_stem(*id), &issued)?;
    }
    let issued = ca.issue_client(CLIENT_STEM, not_before, not_after)?;
    write_pair(&args.dir, CLIENT_STEM, &issued)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "wrote the cluster CA and certificates to {}:",
        args.dir.display()
    )?;
    writeln!(out, "  ca.pem ca.key (keep ca.key off the nodes)")?;
    for id in &args.nodes {
        writeln!(out, "  node-{id}.pem node-{id}.key")?;
    }
    writeln!(out, "  client.pem client.key")?;
    writeln!(
        out,
        "node and client certificates are valid for {} days; keys are mode 0600",
        args.days
    )?;
    Ok(())
}

fn run_issue(args: &IssueArgs) -> anyhow::Result<()> {
    let ca = Ca::load(&args.dir)?;
    let (not_before, not_after) = validity(args.days);
    let (issued, stem) = match (&args.node, &args.client) {
        (Some(id), _) => (
            ca.issue_node(*id, &args.hosts, not_before, not_after)?,
            node_stem(*id),
        ),
        (None, Some(name)) => (ca.issue_client(name, not_before, not_after)?, name.clone()),
        (None, None) => anyhow::bail!("give --node ID or --client NAME"),
    };
    let (cert, key) = write_pair(&args.dir, &stem, &issued)?;
    writeln!(
        std::io::stdout().lock(),
        "wrote {} and {} (valid for {} days)",
        cert.display(),
        key.display(),
        args.days
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{node_id_of, read_certs};

    #[test]
    fn init_writes_a_ca_and_certificates_with_private_keys_and_issue_renews_one() {
        let dir = tempfile::tempdir().expect("dir");
        let init = InitArgs {
            dir: dir.path().join("tls"),
            nodes: vec![1, 2, 3],
            hosts: vec!["10.0.0.1".to_owned(), "db.example".to_owned()],
            cluster_id: "test".to_owned(),
            days: 30,
            force: false,
        };
        run_init(&init).expect("init");
        for stem in ["ca", "node-1", "node-2", "node-3", "client"] {
            let key = init.dir.join(format!("{stem}.key"));
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = fs::metadata(&key).expect("key").permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", key.display());
            }
            assert!(init.dir.join(format!("{stem}.pem")).exists());
        }
        let node2 = read_certs(&init.dir.join("node-2.pem"), "cert").expect("cert");
        assert_eq!(node_id_of(&node2[0]), Some(2));
        let client = read_certs(&init.dir.join("client.pem"), "cert").expect("cert");
        assert_eq!(node_id_of(&client[0]), None);

        let again = run_init(&init).expect_err("a second init would replace the CA");
        assert!(again.to_string().contains("--force"), "{again}");

        let ca_before = fs::read(init.dir.join("ca.pem")).expect("ca");
        let issue = IssueArgs {
            dir: init.dir.clone(),
            node: Some(2),
            client: None,
            hosts: vec![],
            days: 10,
        };
        run_issue(&issue).expect("issue");
        let renewed = read_certs(&init.dir.join("node-2.pem"), "cert").expect("cert");
        assert_ne!(renewed[0], node2[0]);
        assert_eq!(node_id_of(&renewed[0]), Some(2));
        assert_eq!(fs::read(init.dir.join("ca.pem")).expect("ca"), ca_before);
    }
}
