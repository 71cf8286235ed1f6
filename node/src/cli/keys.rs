//! `docket keygen` and the key files it writes: an ed25519 secret seed in hex, mode 0600,
//! refused when group or others can read it.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use docket_core::id::decode_hex;
use docket_core::proposal::public_key;
use ed25519_dalek::SigningKey;
use serde::Serialize;

use super::{print_json, read_limited, ClientArgs, OutputFormat};
use crate::wire::KeyFile;

/// Largest key file read. A key file is two hex strings in JSON: anything bigger is not one.
pub const KEY_FILE_BYTES_MAX: u64 = 4 * 1024;

#[derive(Clone, Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key file (created with mode 0600).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,
    /// Replace an existing file. The key it held is lost.
    #[arg(long)]
    pub force: bool,
    /// Write the development key of this principal of the default constitution (e.g.
    /// `oscar`, the operator; `alice`, a treasurer) instead of a new one. INSECURE: anyone
    /// can derive these keys; for local and test clusters only.
    #[arg(long, value_name = "NAME")]
    pub dev: Option<String>,
}

/// Runs `docket keygen`. It talks to no node.
pub(super) fn run(args: &ClientArgs, keygen: &KeygenArgs) -> anyhow::Result<()> {
    run_keygen(keygen, args.output)
}

fn run_keygen(args: &KeygenArgs, output: OutputFormat) -> anyhow::Result<()> {
    let key = match &args.dev {
        None => generate_signing_key()?,
        Some(name) => {
            let Some((_, roles)) = docket_core::dev::PRINCIPALS.iter().find(|(n, _)| n == name)
            else {
                let names: Vec<&str> = docket_core::dev::PRINCIPALS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect();
                bail!(
                    "no development principal {name:?}; the default constitution has {}",
                    names.join(", ")
                );
            };
            eprintln!(
                "warning: {name:?} is a development principal (roles: {}): anyone can derive \
                 its secret key. Use it on local and test clusters only",
                if roles.is_empty() {
                    "none".to_owned()
                } else {
                    roles.join(", ")
                }
            );
            docket_core::dev::signing_key(name)
        }
    };
    write_key_file(&args.out, &key, args.force)?;
    let public = public_key(&key);
    if output == OutputFormat::Json {
        #[derive(Serialize)]
        struct Keygen<'a> {
            path: &'a Path,
            public_key: docket_core::PublicKey,
        }
        return print_json(&Keygen {
            path: &args.out,
            public_key: public,
        });
    }
    say!("wrote {} (mode 0600); keep it secret", args.out.display());
    say!("public key {public}");
    Ok(())
}

/// A fresh ed25519 signing key from the operating system's random source.
pub fn generate_signing_key() -> anyhow::Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).context("cannot read the operating system's randomness")?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    Ok(key)
}

/// The key file form of `key`.
pub fn key_file(key: &SigningKey) -> KeyFile {
    KeyFile {
        public_key: public_key(key),
        secret_key: hex::encode(key.to_bytes()),
    }
}

/// Writes `key` to `path` with mode 0600. Refuses to replace an existing file unless `force`;
/// with `force` the new file is written beside it and renamed over it, so a crash leaves the
/// old key or the new one, never half of one.
pub fn write_key_file(path: &Path, key: &SigningKey, force: bool) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(&key_file(key)).context("cannot encode key")?;
    text.push('\n');
    let write = |target: &Path| -> std::io::Result<()> {
        let mut file = create_private(target)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    };
    if !force {
        return write(path).map_err(|error| {
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow!(
                    "{} already exists: refusing to overwrite a key file (pass --force to \
                     replace it; the key it holds is lost)",
                    path.display()
                )
            } else {
                anyhow!("cannot write key file {}: {error}", path.display())
            }
        });
    }
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(".tmp");
    let temporary = path.with_file_name(temporary_name);
    let _ = fs::remove_file(&temporary); // A leftover from an interrupted run.
    write(&temporary)
        .and_then(|()| fs::rename(&temporary, path))
        .map_err(|error| {
            let _ = fs::remove_file(&temporary);
            anyhow!("cannot write key file {}: {error}", path.display())
        })
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Reads a key file written by [`write_key_file`]. Refuses a file that group or others can
/// access, one that is not a key file, and one whose public key does not match its secret.
pub fn read_key_file(path: &Path) -> anyhow::Result<SigningKey> {
    check_private(path)?;
    let text = read_limited(path, KEY_FILE_BYTES_MAX, "key file")?;
    let file: KeyFile = serde_json::from_str(&text).map_err(|error| {
        anyhow!(
            "{} is not a docket key file ({error}); create one with `docket keygen --out FILE`",
            path.display()
        )
    })?;
    let seed = decode_hex::<32>(&file.secret_key).map_err(|_| {
        anyhow!(
            "key file {}: secret_key must be 64 lowercase hex characters",
            path.display()
        )
    })?;
    let key = SigningKey::from_bytes(&seed);
    if public_key(&key) != file.public_key {
        bail!(
            "key file {}: public_key does not match secret_key (the file was edited or damaged)",
            path.display()
        );
    }
    Ok(key)
}

#[cfg(unix)]
fn check_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata =
        fs::metadata(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "key file {} is accessible by other users (mode {mode:04o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_round_trips_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alice.key");
        let key = generate_signing_key().expect("randomness");
        write_key_file(&path, &key, false).expect("writes");
        let read = read_key_file(&path).expect("reads");
        assert_eq!(read.to_bytes(), key.to_bytes());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let other = generate_signing_key().expect("randomness");
        assert_ne!(other.to_bytes(), key.to_bytes(), "fresh randomness");
        let error = write_key_file(&path, &other, false).expect_err("exists");
        let text = format!("{error:#}");
        assert!(text.contains("already exists"), "{text}");
        assert!(text.contains("--force"), "{text}");
        assert_eq!(
            read_key_file(&path).expect("reads").to_bytes(),
            key.to_bytes(),
            "the old key is untouched"
        );

        write_key_file(&path, &other, true).expect("--force replaces it");
        assert_eq!(
            read_key_file(&path).expect("reads").to_bytes(),
            other.to_bytes()
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[cfg(unix)]
    #[test]
    fn key_files_readable_by_others_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        write_key_file(&path, &docket_core::dev::signing_key("alice"), false).expect("writes");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let text = format!("{:#}", read_key_file(&path).expect_err("too open"));
        assert!(
            text.contains("accessible by other users (mode 0644)"),
            "{text}"
        );
        assert!(text.contains("chmod 600"), "{text}");
    }

    #[test]
    fn malformed_key_files_are_refused_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        let write = |text: &str| {
            let _ = fs::remove_file(&path);
            let mut file = create_private(&path).expect("create");
            file.write_all(text.as_bytes()).expect("write");
        };
        let good = key_file(&docket_core::dev::signing_key("alice"));
        let public = good.public_key.to_hex();

        write(&format!(
            r#"{{"public_key":"{public}","secret_key":"zz{}"}}"#,
            "0".repeat(62)
        ));
        let text = format!("{:#}", read_key_file(&path).expect_err("bad hex"));
        assert!(
            text.contains("secret_key must be 64 lowercase hex characters"),
            "{text}"
        );

        write(&format!(
            r#"{{"public_key":"{public}","secret_key":"{}"}}"#,
            "ab".repeat(32)
        ));
        let text = format!("{:#}", read_key_file(&path).expect_err("mismatch"));
        assert!(text.contains("does not match"), "{text}");

        write("not json");
        let text = format!("{:#}", read_key_file(&path).expect_err("not json"));
        assert!(text.contains("is not a docket key file"), "{text}");
        assert!(text.contains("docket keygen"), "{text}");

        let missing = dir.path().join("missing.key");
        let text = format!("{:#}", read_key_file(&missing).expect_err("missing"));
        assert!(text.contains("cannot read key file"), "{text}");
        assert!(text.contains("missing.key"), "{text}");
    }
}
