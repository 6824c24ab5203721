//! `POST /cancel` and `POST /jobs/{jobId}/cancel`: stop the running job; it ends with a terminal `error` of code
//! `cancelled`.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::{
    auth,
    error::ApiError,
    http::jobs::Cancelling,
    worker::{CancelReason, JobHandle, Worker},
};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct Query {
    /// Guards against cancelling a newer job than the one the client meant.
    job_id: Option<String>,
}

#[utoipa::path(post, path = "/cancel", tag = "worker", params(Query),
    responses(
        (status = 202, description = "The job is being cancelled; it ends with terminal `error` `cancelled`", body = Cancelling),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 409, description = "No job runs (`not_running`)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn cancel(
    req: HttpRequest,
    query: web::Query<Query>,
    worker: web::Data<Arc<Worker>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &worker.settings)?;
    let job = worker.running_job().ok_or(ApiError::NotRunning)?;
    if query.job_id.as_ref().is_some_and(|id| *id != job.id) {
        return Err(ApiError::NotRunning);
    }
    Ok(cancel_job(&job))
}

#[utoipa::path(post, path = "/jobs/{jobId}/cancel", tag = "jobs",
    params(("jobId" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "The job is being cancelled; it ends with terminal `error` `cancelled`", body = Cancelling),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job here (`job_not_found`)", body = crate::error::ErrorBody),
        (status = 409, description = "The job is not running (`not_running`)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn cancel_named(
    req: HttpRequest,
    path: web::Path<String>,
    worker: web::Data<Arc<Worker>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &worker.settings)?;
    let job = worker.job_named(&path)?;
    if worker.running_job().is_none_or(|running| running.id != job.id) {
        return Err(ApiError::NotRunning);
    }
    Ok(cancel_job(&job))
}

fn cancel_job(job: &JobHandle) -> HttpResponse {
    job.cancel(CancelReason::Requested);
    tracing::info!(job_id = %job.id, "cancel requested");
    HttpResponse::Accepted().json(Cancelling {
        status: "cancelling",
        job_id: job.id.clone(),
    })
}
