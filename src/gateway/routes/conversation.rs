//! `POST /jobs/{jobId}/messages`, `/interrupt` and `/close` at the gateway: checked here, taken by the worker that
//! runs the conversation (docs/conversations.md).

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::{
    auth,
    error::ApiError,
    gateway::{jobs::Found, state::Gateway},
};

#[utoipa::path(post, path = "/jobs/{jobId}/messages", tag = "jobs",
    params(("jobId" = String, Path, description = "The job's id")),
    request_body(content = crate::http::jobs::ConversationMessage, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued by the job's worker: it starts turn `turn`", body = crate::http::jobs::MessageQueued),
        (status = 400, description = "The body is not JSON (`invalid_json`)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job (`job_not_found`)", body = crate::error::ErrorBody),
        (status = 408, description = "The body did not arrive within BODY_TIMEOUT_SECONDS (`body_timeout`)", body = crate::error::ErrorBody),
        (status = 409, description = "No conversation (`not_a_conversation`), ended or closing (`job_finished`), or still waiting for a worker (`not_running`)", body = crate::error::ErrorBody),
        (status = 413, description = "Body larger than MAX_BODY_BYTES", body = crate::error::ErrorBody),
        (status = 415, description = "Not `application/json`", body = crate::error::ErrorBody),
        (status = 422, description = "`text` missing or empty, or an unknown field", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
/// Forwarded to the worker that runs the job; its answer is passed back as it is.
pub async fn message(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    gw: web::Data<Arc<Gateway>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &gw.settings.common)?;
    let job_id = path.into_inner();
    // Checked here too, so that a bad body costs the worker nothing.
    let message = crate::http::jobs::read_message(&req, payload, gw.settings.common.max_body_bytes).await?;
    let worker = running_worker(&gw, &job_id).await?;
    let url = format!("{worker}/jobs/{job_id}/messages");
    gw.upstream
        .forward(gw.upstream.client.post(url).json(&message), job_id)
        .await
}

#[utoipa::path(post, path = "/jobs/{jobId}/interrupt", tag = "jobs",
    params(("jobId" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "Interrupting, by the job's worker", body = crate::http::jobs::Interrupting),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job (`job_not_found`)", body = crate::error::ErrorBody),
        (status = 409, description = "No conversation (`not_a_conversation`), ended or closing (`job_finished`), or still waiting for a worker (`not_running`)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn interrupt(
    req: HttpRequest,
    path: web::Path<String>,
    gw: web::Data<Arc<Gateway>>,
) -> Result<HttpResponse, ApiError> {
    forward_empty(req, path.into_inner(), gw, "interrupt").await
}

#[utoipa::path(post, path = "/jobs/{jobId}/close", tag = "jobs",
    params(("jobId" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "Closing, by the job's worker", body = crate::http::jobs::Closing),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job (`job_not_found`)", body = crate::error::ErrorBody),
        (status = 409, description = "No conversation (`not_a_conversation`), ended (`job_finished`), or still waiting for a worker (`not_running`)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn close(
    req: HttpRequest,
    path: web::Path<String>,
    gw: web::Data<Arc<Gateway>>,
) -> Result<HttpResponse, ApiError> {
    forward_empty(req, path.into_inner(), gw, "close").await
}

/// A bodiless request for the job, passed to its worker.
async fn forward_empty(
    req: HttpRequest,
    job_id: String,
    gw: web::Data<Arc<Gateway>>,
    action: &str,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &gw.settings.common)?;
    let worker = running_worker(&gw, &job_id).await?;
    let url = format!("{worker}/jobs/{job_id}/{action}");
    gw.upstream.forward(gw.upstream.client.post(url), job_id).await
}

/// The worker that runs the job. A job still in the line has no turn to follow yet: its first turn is the
/// request's prompt.
async fn running_worker(gw: &Gateway, job_id: &str) -> Result<String, ApiError> {
    match gw.jobs.locate(&gw.fleet, &gw.upstream, &*gw.store, job_id).await? {
        Found::Queued => Err(ApiError::NotRunning),
        Found::Finished(_) => Err(ApiError::JobFinished {
            job_id: job_id.to_string(),
        }),
        Found::Running(worker) => Ok(worker),
    }
}
