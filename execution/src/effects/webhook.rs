//! Webhooks: POST of an admitted entry's JSON (the ledger entry as the API shows it) to a
//! configured URL, or to a URL taken from a payload field (checked against the allowlist
//! by the gate like any other target). Verified by a 2xx answer. Reported with
//! `EXECUTION.OUTCOME`.

use docket_core::{ProposalId, Value};
use reqwest::Url;

use crate::config::{parse_url, ConfigError, EffectLimits, WebhookConfig};
use crate::effect::{
    Effect, EffectFuture, Failed, Performed, Plan, PlanContext, Reporting, Request, Target,
    Trigger, Verified,
};

/// A configured webhook.
#[derive(Debug)]
pub struct WebhookEffect {
    name: String,
    url: Url,
    url_field: Option<String>,
    triggers: Vec<Trigger>,
    limits: EffectLimits,
    client: reqwest::Client,
}

impl WebhookEffect {
    /// Evidence names webhooks `webhook/<name>`.
    pub const PREFIX: &'static str = "webhook/";

    pub fn new(
        index: usize,
        config: &WebhookConfig,
        client: reqwest::Client,
    ) -> Result<WebhookEffect, ConfigError> {
        let url = parse_url(&config.url).map_err(|message| ConfigError {
            field: format!("execution.webhooks[{index}].url"),
            message,
        })?;
        Ok(WebhookEffect {
            name: format!("{}{}", Self::PREFIX, config.name),
            url,
            url_field: config.url_field.clone(),
            triggers: config
                .on
                .iter()
                .map(|t| Trigger::new(&t.domain, &t.action))
                .collect(),
            limits: config.limits,
            client,
        })
    }
}

impl Effect for WebhookEffect {
    fn name(&self) -> &str {
        &self.name
    }

    fn triggers(&self) -> Vec<Trigger> {
        self.triggers.clone()
    }

    fn reporting(&self) -> Reporting {
        Reporting::Execution
    }

    fn limits(&self) -> &EffectLimits {
        &self.limits
    }

    fn plan(&self, cx: PlanContext<'_>) -> Plan {
        let payload = &cx.record.proposal.proposal.payload;
        let url = match self
            .url_field
            .as_deref()
            .and_then(|f| payload.get(f).map(|v| (f, v)))
        {
            None => self.url.clone(),
            Some((field, Value::Str(text))) => match parse_url(text) {
                Ok(url) => url,
                Err(message) => {
                    return Plan::Refuse {
                        reason: format!("payload field {field:?}: {message}"),
                    }
                }
            },
            Some((field, _)) => {
                return Plan::Refuse {
                    reason: format!("payload field {field:?} is not a string URL"),
                }
            }
        };
        Plan::Perform(Request {
            target: Target::Http(url),
            body: serde_json::to_vec(cx.entry).expect("invariant: ledger entries serialize"),
        })
    }

    fn run<'a>(
        &'a self,
        request: &'a Request,
        key: &'a ProposalId,
    ) -> EffectFuture<'a, Result<Performed, Failed>> {
        Box::pin(crate::http::post_request(
            &self.client,
            "a webhook",
            request,
            key,
            &self.limits,
        ))
    }

    fn verify<'a>(
        &'a self,
        _request: &'a Request,
        _key: &'a ProposalId,
        performed: &'a Performed,
    ) -> EffectFuture<'a, Result<Verified, String>> {
        // `run` answers Ok only for a 2xx response; the status is the acknowledgement.
        Box::pin(async move {
            match performed.effects.last() {
                Some(last) if last.result.starts_with("status 2") => Ok(Verified::new()),
                other => Err(format!(
                    "no 2xx acknowledgement (last result: {})",
                    other.map_or("none", |r| r.result.as_str())
                )),
            }
        })
    }
}
