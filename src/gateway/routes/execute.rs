//! `POST /execute` at the gateway: the worker's own checks (token, content type, size, validation) answer at once;
//! then the request takes a place in the fleet's line (an idle worker at once, if it is its turn), and its stream
//! carries `queued` events until a worker takes it, then the worker's events byte for byte — ending, on every path,
//! with one terminal event.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;

use crate::gateway::{
    driver::{Driver, Head, JobSpec, REQUEST_KEPT_AFTER_TIMEOUT},
    journal::{Journal, LEASE_TTL},
    relay,
    state::Gateway,
    store::JobRecord,
};
use crate::{auth, error::ApiError, http::body, request};

#[utoipa::path(post, path = "/execute", tag = "gateway",
    request_body(content = crate::request::RawRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "`queued` events (no id) while the job waits, then the worker's event stream as it sent it; exactly one terminal event, last",
            content_type = "text/event-stream", body = crate::sse_wire::schema::SseEvent),
        (status = 400, description = "Not JSON, or a wrong JSON type (`invalid_json`)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 413, description = "Body larger than MAX_BODY_BYTES", body = crate::error::ErrorBody),
        (status = 408, description = "The body did not arrive within BODY_TIMEOUT_SECONDS (`body_timeout`)", body = crate::error::ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = crate::error::ErrorBody),
        (status = 422, description = "A field is missing, unknown or invalid; `field` names it", body = crate::error::ErrorBody),
        (status = 409, description = "The jobId is taken by a job that waits, runs or ended within GATEWAY_JOB_MEMORY_SECONDS, anywhere in the fleet (`job_exists`, with its `state`): follow it with GET /jobs/{jobId}/events", body = crate::error::ErrorBody),
        (status = 503, description = "The fleet's store cannot be reached (`store_unavailable`): nothing was taken; retry after Retry-After", body = crate::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 429, description = "The line is full (GATEWAY_QUEUE_MAX); retry after Retry-After", body = crate::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
    ),
    security((), ("bearer" = [])))]
pub async fn execute(
    req: HttpRequest,
    payload: web::Payload,
    gw: web::Data<Arc<Gateway>>,
) -> Result<HttpResponse, ApiError> {
    let settings = &gw.settings.common;
    auth::require_token(&req, settings)?;
    body::require_json(&req)?;
    let raw = body::read(&req, payload, settings.max_body_bytes).await?;
    let parsed = request::parse(&raw, settings)?;
    let job = JobSpec {
        body: with_job_id(&raw, &parsed.job_id),
        stop_with_client: parsed.cancel_on_disconnect,
        provider: parsed.provider.as_str().to_string(),
        id: parsed.job_id.into(),
    };
    // The store decides whether the id is free, fleet-wide; a store that cannot answer takes nothing new.
    let record = JobRecord::queued(&job.id, &job.provider);
    match gw.store.create(&record).await {
        Ok(Ok(())) => {}
        Ok(Err(existing)) => {
            return Err(ApiError::JobExists {
                job_id: job.id,
                state: existing.state.as_str(),
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable; request refused");
            return Err(ApiError::StoreUnavailable {
                retry_after_seconds: settings.retry_after_seconds,
            });
        }
    }
    // From here the job is this gateway's: its journal writes it to the store, and holds its lease so that another
    // gateway sees it if this one dies. A job that goes no further is forgotten through the journal too.
    let journal = Journal::start(gw.store.clone(), job.id.clone(), gw.settings.log_max_bytes);
    if let Err(e) = gw.store.lease(&job.id, &gw.owner, LEASE_TTL).await {
        tracing::warn!(job_id = %job.id, error = %e, "could not take the job's lease yet");
    }
    journal.hold_lease(&gw.owner);
    let Ok(cancel) = gw.jobs.open(&job.id) else {
        // Only a store that lost the record while this gateway still runs the job gets here.
        journal.forget();
        return Err(ApiError::JobExists {
            job_id: job.id,
            state: "running",
        });
    };
    // Into the fleet's line, whose bound counts only jobs that wait: as many as there are idle workers start now.
    let max = gw.settings.queue_max.saturating_add(gw.fleet.idle());
    let kept = gw.settings.queue_timeout + REQUEST_KEPT_AFTER_TIMEOUT;
    let line = match gw.store.enqueue(&job.id, &job.body, max, kept).await {
        Ok(Some(line)) => line,
        refused => {
            gw.jobs.forget(&job.id);
            journal.forget();
            if let Err(e) = refused {
                tracing::warn!(error = %e, "store unavailable; request refused");
                return Err(ApiError::StoreUnavailable {
                    retry_after_seconds: settings.retry_after_seconds,
                });
            }
            gw.metrics.queue_full.inc();
            return Err(ApiError::Busy {
                phase: crate::error::Phase::Busy,
                retry_after_seconds: settings.retry_after_seconds,
            });
        }
    };
    let ticket = gw.fleet.admit(&job.id, job.body.clone(), line);
    journal.watch_cancel(cancel.clone());
    let (head, body) = Driver::start(gw.get_ref().clone(), job, record, journal, cancel, ticket);
    match head.await {
        Ok(Head::Stream) => Ok(relay::sse_response(body)),
        Ok(Head::Refused(rejection)) => Ok(rejection.into_response()),
        Err(_) => Err(ApiError::Internal),
    }
}

/// The gateway names every job before it waits, so that it can be followed and cancelled while in line: a body
/// without `jobId` gets the id validation chose, spliced in so that every other byte is the client's.
fn with_job_id(raw: &Bytes, job_id: &str) -> Bytes {
    let value: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
    if value.get("jobId").is_some() {
        return raw.clone();
    }
    // Validation accepted the body, so it is an object: its first non-blank byte is `{`.
    let Some(open) = raw.iter().position(|b| *b == b'{') else {
        return raw.clone();
    };
    let mut out = Vec::with_capacity(raw.len() + job_id.len() + 12);
    out.extend_from_slice(&raw[..=open]);
    out.extend_from_slice(b"\"jobId\":");
    out.extend_from_slice(serde_json::to_string(job_id).unwrap_or_default().as_bytes());
    out.push(b',');
    out.extend_from_slice(&raw[open + 1..]);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_job_id_is_spliced_in_and_everything_else_kept() {
        let raw = Bytes::from_static(b" {\"userRequest\":\"x\",\"codingAssistantProvider\":\"cursor\"}");
        let out = with_job_id(&raw, "j-1");
        assert_eq!(
            &out[..],
            &b" {\"jobId\":\"j-1\",\"userRequest\":\"x\",\"codingAssistantProvider\":\"cursor\"}"[..]
        );
        let given = Bytes::from_static(b"{\"jobId\":\"mine\",\"userRequest\":\"x\"}");
        assert_eq!(with_job_id(&given, "other"), given);
    }
}
