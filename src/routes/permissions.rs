//! `POST /jobs/{jobId}/permissions/{requestId}`: a client's answer to the agent's permission request (docs/approvals.md).

use std::sync::Arc;

use crate::{
    auth,
    error::ApiError,
    http::jobs::{PermissionAnswer, PermissionAnswered, read_answer},
    worker::Worker,
};
use actix_web::{HttpRequest, HttpResponse, web};

#[utoipa::path(post, path = "/jobs/{jobId}/permissions/{requestId}", tag = "jobs",
    params(
        ("jobId" = String, Path, description = "The job's id"),
        ("requestId" = String, Path, description = "The `requestId` of the `permission_request` event"),
    ),
    request_body(content = PermissionAnswer, content_type = "application/json"),
    responses(
        (status = 200, description = "Taken; a `permission_resolved` event (`by`: `client`) follows", body = PermissionAnswered),
        (status = 400, description = "The body is not JSON (`invalid_json`)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job here (`job_not_found`) or no such request (`permission_not_found`)", body = crate::error::ErrorBody),
        (status = 409, description = "Already answered, timed out or withdrawn (`already_answered`)", body = crate::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::error::ErrorBody),
        (status = 408, description = "The body did not arrive within BODY_TIMEOUT_SECONDS (`body_timeout`)", body = crate::error::ErrorBody),
        (status = 415, description = "Not `application/json`", body = crate::error::ErrorBody),
        (status = 422, description = "`optionId` missing or not one of the request's options", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn answer(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    worker: web::Data<Arc<Worker>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &worker.settings)?;
    let (job_id, request_id) = path.into_inner();
    let job = worker.job_named(&job_id)?;
    let answer = read_answer(&req, payload).await?;
    job.approvals.answer(&request_id, &answer.option_id)?;
    tracing::info!(job_id = %job.id, %request_id, option_id = %answer.option_id, "permission answered");
    Ok(HttpResponse::Ok().json(PermissionAnswered {
        request_id,
        option_id: answer.option_id,
    }))
}
