//! The built-in effects: the payment rail, KES deployment files, `FILE.WRITE` files and
//! webhooks.

pub mod file_write;
pub mod kes_deploy;
pub mod rail;
pub mod webhook;

use std::sync::Arc;

pub use file_write::FileWriteEffect;
pub use kes_deploy::KesDeployEffect;
pub use rail::RailEffect;
pub use webhook::WebhookEffect;

use crate::config::{ConfigError, ExecutionConfig};
use crate::effect::Effect;

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
