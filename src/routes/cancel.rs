//! `POST /cancel` and `POST /jobs/{jobId}/cancel`: stop the running job; it ends with a terminal `error` of code
//! `cancelled`.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::{
    auth,
    error::ApiError,
    worker::{CancelReason, JobHandle, Worker},
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    /// Guards against cancelling a newer job than the one the client meant.
    job_id: Option<String>,
}

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
    HttpResponse::Accepted().json(json!({ "status": "cancelling", "jobId": job.id }))
}
