//! The generic file effect: an admitted `file/FILE.WRITE` writes `payload.contents` to
//! `payload.path` inside a sandbox directory, reads it back, and reports an
//! `EXECUTION.OUTCOME`.
//!
//! A program does not write files; it proposes `FILE.WRITE` (`docket petition`), the
//! constitution judges it (role `petitioner`, `subject_is_path`, `path_is_relative`) and
//! records the BLAKE3 hash of the contents in the subject's `contents_hash`. This effect
//! performs it:
//!
//! * **Plan**: `path` and `contents` from the proposal's payload; the target is `path`
//!   inside the sandbox. The core's invariant already rejects absolute paths and `..`; the
//!   gate checks again with the [`Sandbox`] (lexically and on disk, where a symbolic link
//!   anywhere along the path — one planted inside the sandbox included — is refused), so a
//!   constitution without the invariant still cannot write outside. A refusal is a
//!   `refused` outcome whose evidence names the reason; nothing is written. (A link that
//!   appears between the gate and the write is refused by the write itself; the attempt
//!   had started by then, so it is reported as a `failure`, still with nothing written.)
//! * **Run**: the sandbox's atomic write (temporary file beside the target, fsync, rename;
//!   parent directories created inside the sandbox, and the path checked again after
//!   creating them). The gate caps the size at `limits.body_bytes_max`.
//! * **Verify**: the file is read back and its BLAKE3 hash compared with the hash of
//!   `contents` — the same hash the core stores as `contents_hash`. The outcome carries it
//!   (`content_hash`), with `path` and `bytes`.
//!
//! ## Idempotence and order
//!
//! The bytes depend on the ledger only, so a new leader repeating a write whose outcome it
//! cannot see rewrites identical bytes: harmless. What a repeat could do is roll a path back:
//! if a later `FILE.WRITE` of the same subject was already performed and reported
//! successful, writing an earlier one now would replace the newer contents with older
//! ones. Planning checks for that (the subject's `last_write` in committed state is another
//! proposal whose outcome is `success`) and refuses the earlier write as superseded.
//!
//! Known limit: two writes of one path whose jobs are in flight at the same time on one
//! leader are serialized (one lock per effect) but not ordered: they may land in either
//! order, leaving the older contents on disk while the ledger's `contents_hash` names the
//! newer. Programs that write one path repeatedly should make each write depend on the
//! previous one's outcome (`"after": "outcome"`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use docket_core::constitution::rules::OUTCOME_SUCCESS;
use docket_core::{ProposalId, Value};

use crate::config::{EffectLimits, FileWriteConfig, FILE_WRITE_TRIGGER, OUTCOME_DOMAIN};
use crate::effect::{
    Effect, EffectFuture, Failed, Performed, Plan, PlanContext, Reporting, Request, Target,
    Trigger, Verified,
};
use crate::evidence::content_hash;
use crate::sandbox::{Sandbox, SandboxError};

/// The `FILE.WRITE` effect.
#[derive(Debug)]
pub struct FileWriteEffect {
    sandbox: Sandbox,
    limits: EffectLimits,
    /// Held across a write and its read-back, and across verification: writers of one path
    /// share the sandbox's temporary file name, and a read-back must see this write.
    writing: Arc<Mutex<()>>,
}

impl FileWriteEffect {
    pub const NAME: &'static str = "file_write";

    /// Opens (creating) the sandbox directory.
    pub fn new(config: &FileWriteConfig) -> std::io::Result<FileWriteEffect> {
        Ok(FileWriteEffect {
            sandbox: Sandbox::open(&config.dir)?,
            limits: config.limits,
            writing: Arc::new(Mutex::new(())),
        })
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Effect for FileWriteEffect {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn triggers(&self) -> Vec<Trigger> {
        vec![Trigger::new(FILE_WRITE_TRIGGER.0, FILE_WRITE_TRIGGER.1)]
    }

    fn reporting(&self) -> Reporting {
        Reporting::Execution
    }

    fn limits(&self) -> &EffectLimits {
        &self.limits
    }

    fn plan(&self, cx: PlanContext<'_>) -> Plan {
        let refuse = |reason: String| Plan::Refuse { reason };
        let p = &cx.record.proposal.proposal;
        let Some(path) = p.payload.get("path").and_then(Value::as_str) else {
            return refuse("the payload has no string `path`".into());
        };
        let Some(contents) = p.payload.get("contents").and_then(Value::as_str) else {
            return refuse("the payload has no string `contents`".into());
        };
        let this = cx.record.id.to_hex();
        let newest = cx.ledger.subject(&p.domain, &p.subject).and_then(|s| {
            s.fields
                .get("last_write")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        if let Some(newest) = newest.filter(|newest| *newest != this) {
            let performed = cx.ledger.subject(OUTCOME_DOMAIN, &newest).is_some_and(|s| {
                s.fields.get("outcome").and_then(Value::as_str) == Some(OUTCOME_SUCCESS)
            });
            if performed {
                return refuse(format!(
                    "superseded: a later FILE.WRITE of {:?} ({}) was already written; writing \
                     this one now would roll the file back",
                    p.subject,
                    &newest[..newest.len().min(16)]
                ));
            }
        }
        // The path goes through the gate's sandbox check (lexical and on disk) before the
        // run, and through it again inside the write.
        Plan::Perform(Request {
            target: Target::File {
                root: self.sandbox.root().to_path_buf(),
                path: PathBuf::from(path),
            },
            body: contents.as_bytes().to_vec(),
        })
    }

    fn run<'a>(
        &'a self,
        request: &'a Request,
        _key: &'a ProposalId,
    ) -> EffectFuture<'a, Result<Performed, Failed>> {
        Box::pin(async move {
            let Target::File { path, .. } = &request.target else {
                return Err(Failed {
                    reason: "file_write writes files only".into(),
                    ..Failed::default()
                });
            };
            crate::effects::write_in_sandbox(
                self.sandbox.clone(),
                path.clone(),
                request.body.clone(),
                &self.limits,
                Some(self.writing.clone()),
            )
            .await
        })
    }

    fn verify<'a>(
        &'a self,
        request: &'a Request,
        _key: &'a ProposalId,
        performed: &'a Performed,
    ) -> EffectFuture<'a, Result<Verified, String>> {
        Box::pin(async move {
            let Target::File { path, .. } = &request.target else {
                return Err("not a file target".into());
            };
            let expected = content_hash(&request.body);
            let written = content_hash(&performed.output);
            if written != expected {
                return Err(format!(
                    "content hash read back after the write is {written}, expected {expected}"
                ));
            }
            let sandbox = self.sandbox.clone();
            let writing = self.writing.clone();
            let at = path.clone();
            let read_max = self.limits.body_bytes_max;
            let on_disk = tokio::task::spawn_blocking(move || {
                let _writing = writing.lock().unwrap_or_else(|p| p.into_inner());
                sandbox.read(&at, read_max)
            })
            .await
            .map_err(|e| format!("read-back task failed: {e}"))?
            .map_err(|e: SandboxError| e.to_string())?;
            let found = content_hash(&on_disk);
            if found != expected {
                return Err(format!(
                    "content hash on disk is {found}, expected {expected}"
                ));
            }
            Ok(Verified::from([
                ("content_hash".to_owned(), expected),
                ("path".to_owned(), path.display().to_string()),
                ("bytes".to_owned(), request.body.len().to_string()),
            ]))
        })
    }
}
