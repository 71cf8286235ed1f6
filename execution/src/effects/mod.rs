//! The built-in effects: the payment rail, KES deployment files, `FILE.WRITE` files and
//! webhooks.

pub mod file_write;
pub mod kes_deploy;
pub mod rail;
pub mod webhook;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use file_write::FileWriteEffect;
pub use kes_deploy::KesDeployEffect;
pub use rail::RailEffect;
pub use webhook::WebhookEffect;

use crate::config::{ConfigError, EffectLimits, ExecutionConfig};
use crate::effect::{Effect, Failed, Performed};
use crate::evidence::{Cost, EffectRecord};
use crate::sandbox::Sandbox;

/// The run step of the file effects (KES deployments, `FILE.WRITE`): writes `body` at
/// `path` in `sandbox` (atomically, confined, then read back) on a blocking thread within
/// `limits.timeout_ms`, and describes what happened as evidence. `serialize`, when given,
/// is held across the write and read-back, so two writes of one effect never share the
/// sandbox's temporary file.
pub(crate) async fn write_in_sandbox(
    sandbox: Sandbox,
    path: PathBuf,
    body: Vec<u8>,
    limits: &EffectLimits,
    serialize: Option<Arc<Mutex<()>>>,
) -> Result<Performed, Failed> {
    let read_max = limits.body_bytes_max;
    let shown = path.display().to_string();
    let bytes_out = body.len() as u64;
    let write = tokio::task::spawn_blocking(move || {
        let _held = serialize
            .as_ref()
            .map(|lock| lock.lock().unwrap_or_else(|p| p.into_inner()));
        sandbox.write(&path, &body, read_max)
    });
    let timeout = Duration::from_millis(limits.timeout_ms);
    let result = match tokio::time::timeout(timeout, write).await {
        Err(_) => Err(format!("write timed out after {} ms", limits.timeout_ms)),
        Ok(Err(join)) => Err(format!("write task failed: {join}")),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Ok(Ok(back))) => Ok(back),
    };
    let mut cost = Cost {
        attempts: 1,
        bytes_out,
        ..Cost::default()
    };
    match result {
        Ok(back) => {
            cost.bytes_in = back.len() as u64;
            Ok(Performed {
                effects: vec![EffectRecord {
                    kind: "file_write".into(),
                    target: shown,
                    result: format!("written {bytes_out} bytes, read back {}", back.len()),
                }],
                output: back,
                cost,
            })
        }
        Err(reason) => Err(Failed {
            effects: vec![EffectRecord {
                kind: "file_write".into(),
                target: shown,
                result: reason.clone(),
            }],
            reason,
            output: None,
            cost,
        }),
    }
}

/// Builds the effects a (validated) configuration asks for.
pub fn from_config(
    config: &ExecutionConfig,
    client: &reqwest::Client,
) -> Result<Vec<Arc<dyn Effect>>, ConfigError> {
    let mut effects: Vec<Arc<dyn Effect>> = Vec::new();
    if let Some(rail) = &config.rail {
        effects.push(Arc::new(RailEffect::new(rail, client.clone())?));
    }
    if let Some(kes) = &config.kes_deploy {
        let effect = KesDeployEffect::new(kes).map_err(|e| ConfigError {
            field: "execution.kes_deploy.dir".into(),
            message: format!("cannot create or open {}: {e}", kes.dir.display()),
        })?;
        effects.push(Arc::new(effect));
    }
    if let Some(files) = &config.file_write {
        let effect = FileWriteEffect::new(files).map_err(|e| ConfigError {
            field: "execution.file_write.dir".into(),
            message: format!("cannot create or open {}: {e}", files.dir.display()),
        })?;
        effects.push(Arc::new(effect));
    }
    for (i, hook) in config.webhooks.iter().enumerate() {
        effects.push(Arc::new(WebhookEffect::new(i, hook, client.clone())?));
    }
    Ok(effects)
}
