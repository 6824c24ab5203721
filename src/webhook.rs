//! The completion webhook (docs/persistence.md): the payload built from the job's terminal event, Standard Webhooks signing,
//! and delivery with the common retry policy inside a bounded time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use bytes::Bytes;
use reqwest::{StatusCode, Url, header::CONTENT_TYPE};
use ring::hmac;
use serde_json::{Value, json};

use crate::outbound::{self, Backoff, Verdict};

/// The HMAC key. Standard Webhooks secrets look like `whsec_<base64 of the key bytes>`; such a secret is decoded,
/// any other string is used as the key bytes as it is (what most senders do with a plain secret string).
#[derive(Clone)]
pub struct SigningKey(hmac::Key);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a secret starting with whsec_ must continue with base64 (Standard Webhooks)")]
pub struct BadSecret;

impl SigningKey {
    pub fn parse(secret: &str) -> Result<Self, BadSecret> {
        let bytes = match secret.strip_prefix("whsec_") {
            Some(encoded) => BASE64.decode(encoded).map_err(|_| BadSecret)?,
            None => secret.as_bytes().to_vec(),
        };
        if bytes.is_empty() {
            return Err(BadSecret);
        }
        Ok(SigningKey(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(format!("{id}.{timestamp}.").as_bytes());
        ctx.update(body);
        format!("v1,{}", BASE64.encode(ctx.sign().as_ref()))
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([REDACTED])")
    }
}

/// The docs/persistence.md body, from the terminal event as the log encoded it (so it is redacted like every event).
/// `durationMs` is the worker's wall time from accepting the job to its terminal event, known for failures too.
pub fn payload(terminal: &[u8], duration: Duration) -> Result<Bytes, serde_json::Error> {
    let event: Value = serde_json::from_slice(terminal)?;
    let field = |name: &str| event.get(name).cloned().unwrap_or(Value::Null);
    let failed = event["type"] == "error";
    let error = if failed {
        let mut error = json!({ "code": field("code"), "message": field("message"), "retryable": field("retryable") });
        for optional in ["exitCode", "stderrTail"] {
            if let Some(v) = event.get(optional) {
                error[optional] = v.clone();
            }
        }
        error
    } else {
        Value::Null
    };
    let body = json!({
        "jobId": field("jobId"),
        "status": if failed { "error" } else { "completed" },
        "sessionId": field("sessionId"),
        "result": field("result"),
        "error": error,
        "changes": field("changes"),
        "pullRequest": field("pullRequest"),
        "durationMs": u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        "costUsd": field("costUsd"),
        "completedAt": field("ts"),
    });
    serde_json::to_vec(&body).map(Bytes::from)
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the callback answered {0}, which is not retried")]
    Refused(StatusCode),
    #[error("not delivered within {seconds}s ({attempts} attempts)")]
    TimedOut { seconds: f64, attempts: u32 },
    #[error("the request cannot be built: {0}")]
    Unbuildable(String),
}

/// POSTs `body` until the receiver accepts it, refuses it for good, or `budget` is spent. Every attempt carries
/// the same `webhook-id` (the job id, so receivers can deduplicate) and a fresh timestamp and signature, as
/// Standard Webhooks receivers reject old timestamps.
pub async fn deliver(
    client: &reqwest::Client,
    url: &Url,
    key: Option<&SigningKey>,
    job_id: &str,
    body: Bytes,
    budget: Duration,
) -> Result<u32, WebhookError> {
    let mut attempts = 0;
    let attempt_all = async {
        let mut backoff = Backoff::default();
        loop {
            attempts += 1;
            let mut request = client
                .post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(key) = key {
                let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                request = request
                    .header("webhook-id", job_id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", key.sign(job_id, timestamp, &body));
            }
            let wait = match request.send().await {
                Ok(resp) => match outbound::classify(resp.status(), resp.headers()) {
                    Verdict::Delivered => return Ok(()),
                    Verdict::Refused(status) => return Err(WebhookError::Refused(status)),
                    Verdict::Retry(after) => after,
                },
                Err(e) if outbound::transient(&e) => {
                    tracing::debug!(error = %e.without_url(), "webhook attempt failed; retrying");
                    None
                }
                Err(e) => return Err(WebhookError::Unbuildable(e.without_url().to_string())),
            };
            tokio::time::sleep(backoff.delay(wait)).await;
        }
    };
    match tokio::time::timeout(budget, attempt_all).await {
        Ok(result) => result.map(|()| attempts),
        Err(_) => Err(WebhookError::TimedOut {
            seconds: budget.as_secs_f64(),
            attempts,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn plain_secrets_are_key_bytes_and_bad_whsec_secrets_are_refused() {
        let plain = SigningKey::parse("a-plain-signing-secret").unwrap();
        let same = SigningKey::parse(&format!("whsec_{}", BASE64.encode("a-plain-signing-secret"))).unwrap();
        assert_eq!(plain.sign("j", 1, b"{}"), same.sign("j", 1, b"{}"));
        assert_ne!(plain.sign("j", 1, b"{}"), plain.sign("j", 1, b"{ }"));
        assert_eq!(SigningKey::parse("whsec_not base64!").unwrap_err(), BadSecret);
        assert!(!format!("{plain:?}").contains("plain"));
    }

    #[test]
    fn a_failure_payload_carries_the_error_and_nulls_for_what_a_failure_lacks() {
        let terminal = br#"{"type":"error","seq":4,"jobId":"j1","ts":"2026-11-20T12:00:01.123Z","code":"provider_failed","message":"boom","retryable":false,"exitCode":3,"stderrTail":"x","sessionId":"s1"}"#;
        let body: Value = serde_json::from_slice(&payload(terminal, Duration::from_millis(1500)).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"jobId":"j1","status":"error","sessionId":"s1","result":null,
                   "error":{"code":"provider_failed","message":"boom","retryable":false,"exitCode":3,"stderrTail":"x"},
                   "changes":null,"pullRequest":null,"durationMs":1500,"costUsd":null,
                   "completedAt":"2026-11-20T12:00:01.123Z"})
        );
    }

    #[test]
    fn a_success_payload_carries_the_result() {
        let terminal = br#"{"type":"completed","seq":9,"jobId":"j2","ts":"T","sessionId":"s","result":"done","durationMs":3,"numTurns":1,"costUsd":0.5,"usage":{},"changes":null,"pullRequest":{"url":"u","number":7}}"#;
        let body: Value = serde_json::from_slice(&payload(terminal, Duration::from_millis(20)).unwrap()).unwrap();
        assert_eq!(body["status"], "completed");
        assert_eq!(body["result"], "done");
        assert_eq!(body["error"], Value::Null);
        assert_eq!(body["costUsd"], 0.5);
        assert_eq!(body["pullRequest"]["number"], 7);
        assert_eq!(body["durationMs"], 20);
        assert_eq!(body["completedAt"], "T");
    }
}
