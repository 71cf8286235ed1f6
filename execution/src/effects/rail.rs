//! The payment-rail adapter: `SETTLEMENT.PAYOUT_REQUESTED` → HTTP POST to the rail.
//!
//! Request body (JSON): `idempotency_key` (the payout request's proposal id, also sent as
//! the `Idempotency-Key` header), `ledger_id`, `subject` (the settlement), `amount`,
//! `currency` (the settlement's, from committed state; omitted if none), `beneficiary`.
//! The rail answers 2xx with `{"rail_ref": "..."}` (and may echo `idempotency_key`, which
//! must then match). Verified → `SETTLEMENT.PAYOUT_EXECUTED` with that `rail_ref`; a failure
//! after the bounded retries, a refusal or an unverifiable answer → `SETTLEMENT.RAIL_ERROR`.

use docket_core::{ProposalId, Value};
use reqwest::Url;

use crate::config::{parse_url, ConfigError, EffectLimits, RailConfig, RAIL_TRIGGER};
use crate::effect::{
    Effect, EffectFuture, Failed, Performed, Plan, PlanContext, Reporting, Request, Target,
    Trigger, Verified,
};

/// Longest `rail_ref` accepted from a rail: it goes into the ledger.
pub const RAIL_REF_BYTES_MAX: usize = 256;

/// The payment-rail effect.
#[derive(Debug)]
pub struct RailEffect {
    url: Url,
    amount_max: i64,
    limits: EffectLimits,
    client: reqwest::Client,
}

impl RailEffect {
    pub const NAME: &'static str = "rail";

    pub fn new(config: &RailConfig, client: reqwest::Client) -> Result<RailEffect, ConfigError> {
        let url = parse_url(&config.url).map_err(|message| ConfigError {
            field: "execution.rail.url".into(),
            message,
        })?;
        Ok(RailEffect {
            url,
            amount_max: config.amount_max,
            limits: config.limits,
            client,
        })
    }
}

impl Effect for RailEffect {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn triggers(&self) -> Vec<Trigger> {
        vec![Trigger::new(RAIL_TRIGGER.0, RAIL_TRIGGER.1)]
    }

    fn reporting(&self) -> Reporting {
        Reporting::Settlement
    }

    fn limits(&self) -> &EffectLimits {
        &self.limits
    }

    fn plan(&self, cx: PlanContext<'_>) -> Plan {
        let p = &cx.record.proposal.proposal;
        let Some(amount) = p.payload.get("amount").and_then(Value::as_int) else {
            return Plan::Refuse {
                reason: "payout request has no integer amount".into(),
            };
        };
        let Some(beneficiary) = p.payload.get("beneficiary").and_then(Value::as_str) else {
            return Plan::Refuse {
                reason: "payout request has no beneficiary".into(),
            };
        };
        if amount < 1 || amount > self.amount_max {
            return Plan::Refuse {
                reason: format!(
                    "amount {amount} is outside the rail's limit 1..={}",
                    self.amount_max
                ),
            };
        }
        let currency = cx.ledger.subject(&p.domain, &p.subject).and_then(|s| {
            s.fields
                .get("currency")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        let mut body = serde_json::json!({
            "idempotency_key": cx.record.id.to_hex(),
            "ledger_id": p.ledger_id.as_str(),
            "subject": p.subject,
            "amount": amount,
            "beneficiary": beneficiary,
        });
        if let Some(currency) = currency {
            body["currency"] = currency.into();
        }
        Plan::Perform(Request {
            target: Target::Http(self.url.clone()),
            body: serde_json::to_vec(&body).expect("invariant: JSON values serialize"),
        })
    }

    fn run<'a>(
        &'a self,
        request: &'a Request,
        key: &'a ProposalId,
    ) -> EffectFuture<'a, Result<Performed, Failed>> {
        Box::pin(crate::http::post_request(
            &self.client,
            "the rail",
            request,
            key,
            &self.limits,
        ))
    }

    fn verify<'a>(
        &'a self,
        _request: &'a Request,
        key: &'a ProposalId,
        performed: &'a Performed,
    ) -> EffectFuture<'a, Result<Verified, String>> {
        Box::pin(async move { verify_answer(&performed.output, key) })
    }
}

/// Checks a rail's 2xx answer and extracts its `rail_ref`.
pub fn verify_answer(output: &[u8], key: &ProposalId) -> Result<Verified, String> {
    let answer: serde_json::Value = serde_json::from_slice(output)
        .map_err(|e| format!("the rail's answer is not JSON: {e}"))?;
    if let Some(echo) = answer.get("idempotency_key") {
        if echo.as_str() != Some(key.to_hex().as_str()) {
            return Err("the rail echoed another idempotency key".into());
        }
    }
    let rail_ref = answer
        .get("rail_ref")
        .and_then(serde_json::Value::as_str)
        .ok_or("the rail's answer has no rail_ref string")?;
    if rail_ref.is_empty()
        || rail_ref.len() > RAIL_REF_BYTES_MAX
        || rail_ref.chars().any(char::is_control)
    {
        return Err(format!(
            "rail_ref must be 1 to {RAIL_REF_BYTES_MAX} bytes without control characters"
        ));
    }
    Ok(Verified::from([(
        "rail_ref".to_owned(),
        rail_ref.to_owned(),
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_verified() {
        let key = ProposalId([9; 32]);
        let ok = verify_answer(br#"{"rail_ref":"r-1"}"#, &key).expect("ok");
        assert_eq!(ok["rail_ref"], "r-1");
        let echo = format!(
            r#"{{"rail_ref":"r-1","idempotency_key":"{}"}}"#,
            key.to_hex()
        );
        verify_answer(echo.as_bytes(), &key).expect("matching echo");
        assert!(verify_answer(br#"{"rail_ref":"r-1","idempotency_key":"00"}"#, &key).is_err());
        assert!(verify_answer(b"not json", &key).is_err());
        assert!(verify_answer(br#"{"rail_ref":""}"#, &key).is_err());
        assert!(verify_answer(br#"{"ref":"x"}"#, &key).is_err());
        assert!(verify_answer(br#"{"rail_ref":"a\nb"}"#, &key).is_err());
    }
}
