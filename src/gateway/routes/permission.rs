//! `POST /jobs/{jobId}/permissions/{requestId}` at the gateway: checked here, answered by the job's worker.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::{
    auth,
    error::ApiError,
    gateway::{jobs::Found, state::Gateway},
};

#[utoipa::path(post, path = "/jobs/{jobId}/permissions/{requestId}", tag = "jobs",
    params(
        ("jobId" = String, Path, description = "The job's id"),
        ("requestId" = String, Path, description = "The `requestId` of the `permission_request` event"),
    ),
    request_body(content = crate::http::jobs::PermissionAnswer, content_type = "application/json"),
    responses(
        (status = 200, description = "Taken by the job's worker; a `permission_resolved` event follows", body = crate::http::jobs::PermissionAnswered),
        (status = 400, description = "The body is not JSON (`invalid_json`)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job (`job_not_found`) or request (`permission_not_found`)", body = crate::error::ErrorBody),
        (status = 409, description = "Already answered, timed out or withdrawn (`already_answered`), or the job is not running (`not_running`)", body = crate::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::error::ErrorBody),
        (status = 408, description = "The body did not arrive within BODY_TIMEOUT_SECONDS (`body_timeout`)", body = crate::error::ErrorBody),
        (status = 415, description = "Not `application/json`", body = crate::error::ErrorBody),
        (status = 422, description = "`optionId` missing or not one of the request's options", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
/// Forwarded to the worker that runs the job; its answer (200, 404, 409, 422) is passed back as it is.
pub async fn permission(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    gw: web::Data<Arc<Gateway>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &gw.settings.common)?;
    let (job_id, request_id) = path.into_inner();
    // Checked here too, so that a bad body costs the worker nothing.
    let answer = crate::http::jobs::read_answer(&req, payload).await?;
    match gw.jobs.locate(&gw.fleet, &gw.upstream, &*gw.store, &job_id).await? {
        // A job in the line has not started, so it has asked nothing yet.
        Found::Queued => Err(ApiError::PermissionNotFound { request_id }),
        Found::Finished(_) => Err(ApiError::NotRunning),
        Found::Running(worker) => {
            let url = format!("{worker}/jobs/{job_id}/permissions/{request_id}");
            gw.upstream
                .forward(gw.upstream.client.post(url).json(&answer), job_id)
                .await
        }
    }
}
