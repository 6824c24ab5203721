//! `GET /jobs/{jobId}`: where this worker's job stands — running, or finished with its terminal event.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::Value;

use crate::{auth, error::ApiError, event::timestamp, worker::Worker};

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobState {
    pub job_id: String,
    /// `running` or `finished` on a worker; a gateway also answers `queued` (with `position`, `queueLength`,
    /// `waitMs`) and adds the worker's `address`.
    #[schema(value_type = String)]
    pub state: &'static str,
    #[schema(value_type = String)]
    pub provider: &'static str,
    /// The worker's id.
    pub worker: String,
    pub started_at: String,
    pub last_event_id: Option<u64>,
    /// The terminal event, once there is one.
    #[schema(value_type = Option<Object>)]
    pub terminal: Option<Value>,
}

#[utoipa::path(get, path = "/jobs/{jobId}", tag = "jobs",
    params(("jobId" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobState),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "This process has no such job (`job_not_found`)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn job(
    req: HttpRequest,
    path: web::Path<String>,
    worker: web::Data<Arc<Worker>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &worker.settings)?;
    let job = worker.job_named(&path)?;
    let terminal = job
        .log
        .terminal()
        .and_then(|frame| serde_json::from_slice::<Value>(&frame.json()).ok());
    Ok(HttpResponse::Ok().json(JobState {
        job_id: job.id.clone(),
        state: if terminal.is_some() { "finished" } else { "running" },
        provider: job.provider.as_str(),
        worker: worker.settings.worker_id.clone(),
        started_at: timestamp(job.started_at),
        last_event_id: job.log.last_seq(),
        terminal,
    }))
}
